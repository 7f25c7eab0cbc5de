//! Statistics against the real stack: the job folds each territory's journal into aggregates
//! exactly once, the dashboards read them; the open page, its CSV and JSON withhold every
//! figure of fewer than five people (and add only what they publish); the national team sees
//! everything; the référent sees their structure; charts pass axe.

mod common;

use common::identity::*;
use common::requests::council;
use common::{TestApp, spawn_app};
use foundation::tenancy::CommuneCode;
use policies::{Domain, Role};
use serde_json::{Value, json};
use uuid::Uuid;

async fn structure(app: &TestApp, tenant: Uuid, name: &str, commune: &str) -> Uuid {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .context(foundation::tenancy::DepartementCode::parse(&commune[..2]).expect("dep"))
        .await
        .expect("ctx");
    habilitation_desk::structures::create_structure(
        &ctx,
        &habilitation_desk::structures::NewStructure {
            tenant_id: tenant,
            name: name.into(),
            kind: "ccas".into(),
            commune: CommuneCode::parse(commune).expect("commune"),
            address: "1 place de la Mairie".into(),
            france_services: false,
        },
    )
    .await
    .expect("structure")
}

/// `n` people helped in the structure (a mandate each, `uses` uses each), with canary names.
async fn people(
    app: &TestApp,
    departement: &str,
    structure: Uuid,
    aidant: Uuid,
    n: usize,
    uses: &[&str],
) {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .context(foundation::tenancy::DepartementCode::parse(departement).expect("dep"))
        .await
        .expect("ctx");
    for i in 0..n {
        let mut identity = common::idp::angela(&format!("stat-{}", Uuid::new_v4().simple()));
        identity.family_name = format!("ZZCANARI{i}");
        let mut tx = ctx.begin().await.expect("tx");
        let usager =
            mandate_service::mandates::upsert_usager(&mut tx, &identity, structure, aidant)
                .await
                .expect("usager");
        let mandate = mandate_service::mandates::create(
            &mut tx,
            &mandate_service::mandates::NewMandate {
                id: Uuid::now_v7(),
                structure,
                aidant,
                usager,
                categories: vec![
                    mandate_service::categories::by_code("social").expect("social"),
                    mandate_service::categories::by_code("logement").expect("logement"),
                ],
                duration_days: 365,
                renewal_of: None,
                idempotency_key: None,
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("mandat");
        for category in uses {
            foundation::journal::append(
                &mut tx,
                foundation::journal::NewEntry::new(foundation::journal::Event::MandateUsed)
                    .structure(structure)
                    .professional(aidant)
                    .usager(usager)
                    .mandate(mandate)
                    .details(json!({ "category": category })),
            )
            .await
            .expect("usage");
        }
        tx.commit().await.expect("commit");
    }
}

async fn refresh(app: &TestApp) -> u64 {
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    habilitation_desk::statistics::refresh(&platform)
        .await
        .expect("statistiques")
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

#[tokio::test]
async fn figures_count_each_act_once_and_the_open_ones_withhold_fewer_than_five_people() {
    let app = spawn_app(&["33", "40"]).await;
    let gironde = council(&app, "33").await;
    let landes = council(&app, "40").await;
    let cenon = structure(&app, gironde, "CCAS de Cenon", "33119").await;
    let dax = structure(&app, landes, "CCAS de Dax", "40088").await;
    let rita = professional(
        &app.db.admin,
        "Rita Référente",
        &[
            (Role::Referent, Domain::Structure(cenon), Some("33")),
            (Role::Aidant, Domain::Structure(cenon), Some("33")),
        ],
    )
    .await;
    let lou = professional(
        &app.db.admin,
        "Lou Landaise",
        &[(Role::Aidant, Domain::Structure(dax), Some("40"))],
    )
    .await;
    // Gironde: 6 people, 3 uses each; Landes: 2 people (withheld in public), 1 use each.
    people(
        &app,
        "33",
        cenon,
        rita.id,
        6,
        &["social", "social", "logement"],
    )
    .await;
    people(&app, "40", dax, lou.id, 2, &["famille"]).await;
    let first = refresh(&app).await;
    assert!(first >= 6 * 4 + 2 * 2, "{first}");
    // Exactly once: a second run folds nothing more and changes nothing.
    assert_eq!(refresh(&app).await, 0);
    assert_eq!(
        scalar(&app, "SELECT sum(used)::bigint FROM dep_33.stats_daily").await,
        18
    );
    assert_eq!(
        scalar(&app, "SELECT sum(created)::bigint FROM dep_33.stats_daily").await,
        6
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM dep_33.stats_people").await,
        6
    );
    assert_eq!(
        scalar(&app, "SELECT sum(people)::bigint FROM platform.stats_territory_months WHERE departement_code = '40'").await,
        2
    );
    // More acts: the next run adds only them.
    people(&app, "33", cenon, rita.id, 1, &["argent"]).await;
    refresh(&app).await;
    assert_eq!(
        scalar(&app, "SELECT sum(used)::bigint FROM dep_33.stats_daily").await,
        19
    );

    // The open page: no login; Gironde's figures; Landes' people withheld and left out of
    // the totals.
    let anonymous = browser(&app.address);
    let (status, open) = page(&anonymous, &app.url("/statistiques")).await;
    assert_eq!(status, 200);
    assert!(open.contains("Gironde (33)") && open.contains("Landes (40)"));
    assert!(open.contains("moins de 5"));
    assert!(open.contains("<svg") && open.contains("role=\"img\""));
    assert!(!open.contains("ZZCANARI"));
    assert!(
        open.contains(
            "Personnes accompagnées (douze mois, comptées par structure) : <strong>7</strong>"
        ),
        "{open}"
    );
    let csv = anonymous
        .get(&app.url("/statistiques.csv"))
        .await
        .text()
        .await
        .expect("csv");
    assert!(csv.starts_with(
        "departement,nom,mois,mandats_crees,demarches,mandats_revoques,personnes_accompagnees"
    ));
    let landes_line = csv.lines().find(|l| l.starts_with("40,")).expect("Landes");
    assert!(landes_line.ends_with(",,,0,"), "{landes_line}");
    let gironde_line = csv.lines().find(|l| l.starts_with("33,")).expect("Gironde");
    assert!(gironde_line.ends_with(",7,19,0,7"), "{gironde_line}");
    let body: Value = anonymous
        .get(&app.url("/statistiques.json"))
        .await
        .json()
        .await
        .expect("json");
    let landes_json = body["territories"]
        .as_array()
        .expect("territoires")
        .iter()
        .find(|t| t["departement"] == "40")
        .expect("Landes")
        .clone();
    assert_eq!(landes_json["people_helped"], Value::Null);
    assert_eq!(landes_json["mandates_created"], Value::Null);
    assert_eq!(body["threshold"], 5);
    assert!(!body.to_string().contains("ZZCANARI"));

    // The national team: everything.
    let nadia = professional(
        &app.db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);
    let (status, national) = page(&nb, &app.url("/national/statistiques")).await;
    assert_eq!(status, 200);
    assert!(
        national.contains(
            "Personnes accompagnées (douze mois, comptées par structure) : <strong>9</strong>"
        ),
        "{national}"
    );
    assert!(!national.contains("moins de 5"));
    // Not for a référent; the référent's own structure instead.
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    assert_eq!(
        rb.get(&app.url("/national/statistiques")).await.status(),
        403
    );
    let (status, mine) = page(&rb, &app.url("/structure/statistiques")).await;
    assert_eq!(status, 200);
    assert!(mine.contains("CCAS de Cenon") && mine.contains("Social - Santé"));
    assert!(!mine.contains("ZZCANARI"));
    let found = test_support::browser::axe_violations(&[app.url("/statistiques")]).await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/national/statistiques")],
        &nb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure/statistiques")],
        &rb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}
