//! Statistics against the real stack: the job folds each territory's journal into aggregates
//! exactly once, the dashboards read them; the open page, its CSV and JSON withhold every
//! figure of fewer than five people (and add only what they publish); the national team sees
//! everything; the référent sees their structure; charts pass axe.

#[path = "statistics/activity.rs"]
mod activity;
mod common;

use common::identity::*;
use common::requests::{council, structure};
use common::{TestApp, spawn_app};
use foundation::ids::{MandateId, ProfessionalId, StructureId};
use foundation::tenancy::CommuneCode;
use policies::{Domain, Role};
use serde_json::{Value, json};
use uuid::Uuid;

/// `n` people helped in the structure (a mandate each, `uses` uses each), with canary names.
async fn people(
    app: &TestApp,
    departement: &str,
    structure: StructureId,
    aidant: ProfessionalId,
    n: usize,
    uses: &[&str],
) {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(departement).expect("dep"))
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
                id: MandateId::new_v7(),
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
                language: None,
                attestation: None,
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
            (Role::Referent, cenon.domain(), Some("33")),
            (Role::Aidant, cenon.domain(), Some("33")),
        ],
    )
    .await;
    let lou = professional(
        &app.db.admin,
        "Lou Landaise",
        &[(Role::Aidant, dax.domain(), Some("40"))],
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
    refresh(&app).await;
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
    // The council's monthly table says the same as its structure's daily rows.
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT sum(created)::bigint * 10000 + sum(used)::bigint * 100 + sum(people)::bigint
                 FROM dep_33.stats_tenant_months WHERE tenant_id = '{gironde}'"
            )
        )
        .await,
        61806
    );
    // More acts: the next run adds only them.
    people(&app, "33", cenon, rita.id, 1, &["argent"]).await;
    refresh(&app).await;
    assert_eq!(
        scalar(&app, "SELECT sum(used)::bigint FROM dep_33.stats_daily").await,
        19
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT sum(used)::bigint * 100 + sum(people)::bigint FROM dep_33.stats_tenant_months"
        )
        .await,
        1907
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
    assert_eq!(landes_json["mandates_live"], Value::Null);
    let gironde_json = body["territories"]
        .as_array()
        .expect("territoires")
        .iter()
        .find(|t| t["departement"] == "33")
        .expect("Gironde")
        .clone();
    assert_eq!(gironde_json["mandates_live"], 7);
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
    assert!(
        national.contains("Mandats en cours : <strong>9</strong>"),
        "{national}"
    );
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

/// The most recent Saturday before today (Paris).
fn last_saturday() -> time::Date {
    let mut d = foundation::paris::today();
    loop {
        d = d.previous_day().expect("jour");
        if d.weekday() == time::Weekday::Saturday {
            return d;
        }
    }
}

/// `days` of steady history before `day` (created, used per day), then `day`'s own figures.
async fn history(
    app: &TestApp,
    structure: StructureId,
    day: time::Date,
    steady: (i32, i32),
    today: (i32, i32, i32),
) {
    sqlx::query(
        "INSERT INTO dep_33.stats_daily (day, structure_id, category, created, used, revoked)
         SELECT $2::date - g, $1, '', $3, $4, 0 FROM generate_series(1, 28) g",
    )
    .bind(structure)
    .bind(day)
    .bind(steady.0)
    .bind(steady.1)
    .execute(&app.db.admin)
    .await
    .expect("historique");
    sqlx::query(
        "INSERT INTO dep_33.stats_daily (day, structure_id, category, created, used, revoked)
         VALUES ($2, $1, '', $3, $4, $5)",
    )
    .bind(structure)
    .bind(day)
    .bind(today.0)
    .bind(today.1)
    .bind(today.2)
    .execute(&app.db.admin)
    .await
    .expect("jour");
}

/// A use journaled at `hour`:00 Paris time on `day`.
async fn use_at(app: &TestApp, structure: StructureId, day: time::Date, hour: u8) {
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, structure_id, details)
         VALUES (($1::date + make_interval(hours => $2))::timestamp AT TIME ZONE 'Europe/Paris', 'mandate_used', $3, '{\"category\":\"social\"}')",
    )
    .bind(day)
    .bind(i32::from(hour))
    .bind(structure)
    .execute(&app.db.admin)
    .await
    .expect("usage");
}

/// Bordeaux's commune tenant.
async fn bordeaux(app: &TestApp) -> foundation::ids::TenantId {
    foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Commune(
            CommuneCode::parse("33063").expect("commune"),
        ),
        "Ville de Bordeaux",
    )
    .await
    .expect("tenant")
    .id
}

#[tokio::test]
async fn anomaly_rules_fire_on_crafted_histories_and_never_on_a_steady_week() {
    let app = spawn_app(&["33"]).await;
    let bordeaux = bordeaux(&app).await;
    let steady = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let burst = structure(&app, bordeaux, "Centre social Bastide", "33063").await;
    let weekdays = structure(&app, bordeaux, "Maison de quartier", "33063").await;
    sqlx::query("UPDATE dep_33.structures SET opening_hours = 'Mo-Fr 09:00-17:00' WHERE id = $1")
        .bind(weekdays)
        .execute(&app.db.admin)
        .await
        .expect("horaires");
    let day = last_saturday();
    // A steady week (and month): 4 creations and 8 uses a day, the same on the day.
    history(&app, steady, day, (4, 8), (5, 9, 0)).await;
    // A burst: 2 a day, then 30 creations and 12 revocations on the day.
    history(&app, burst, day, (2, 2), (30, 2, 12)).await;
    // A use at 2 a.m. (the steady structure), one on Saturday morning where it is closed.
    use_at(&app, steady, day, 2).await;
    use_at(&app, weekdays, day, 10).await;
    use_at(&app, steady, day, 10).await;
    // One person with live mandates in the three structures.
    let ada = professional(
        &app.db.admin,
        "Ada Aidante",
        &[(Role::Aidant, steady.domain(), Some("33"))],
    )
    .await;
    let person = common::idp::angela(&format!("multi-{}", Uuid::new_v4().simple()));
    for s in [steady, burst, weekdays] {
        common::idp::mandate_for(&app, s, ada.id, &person, &["social"]).await;
    }
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("ctx");
    let settings = std::collections::HashMap::new();
    let found = habilitation_desk::alerts::detect_day(&ctx, &settings, day)
        .await
        .expect("détection");
    let of = |s: StructureId, rule: &str| {
        found
            .iter()
            .filter(|a| a.structure == s && a.rule == rule)
            .count()
    };
    assert_eq!(
        of(steady, "creations") + of(steady, "uses") + of(steady, "revocations"),
        0,
        "fausse alerte : {found:#?}"
    );
    assert_eq!(of(burst, "creations"), 1, "{found:#?}");
    assert_eq!(of(burst, "uses"), 0);
    assert_eq!(of(burst, "revocations"), 1);
    assert_eq!(of(steady, "closed_hours"), 1, "the use at 2 a.m. only");
    assert_eq!(
        found
            .iter()
            .find(|a| a.structure == steady && a.rule == "closed_hours")
            .map(|a| a.figure),
        Some(1)
    );
    assert_eq!(
        of(weekdays, "closed_hours"),
        1,
        "a Saturday use where it is closed"
    );
    for s in [steady, burst, weekdays] {
        assert_eq!(of(s, "usager_structures"), 1);
    }
    let burst_alert = found
        .iter()
        .find(|a| a.structure == burst && a.rule == "creations")
        .expect("rafale");
    assert_eq!((burst_alert.figure, burst_alert.expected), (30, Some(2)));
    // Raised once, journaled once, however often the job runs.
    let new = habilitation_desk::alerts::raise(&ctx, day, &found)
        .await
        .expect("alertes");
    assert_eq!(new as usize, found.len());
    assert_eq!(
        habilitation_desk::alerts::raise(&ctx, day, &found)
            .await
            .expect("alertes"),
        0
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'anomaly_detected'"
        )
        .await,
        found.len() as i64
    );
    // A stricter tenant: a higher revocation threshold silences that rule.
    let mut strict = std::collections::HashMap::new();
    strict.insert(
        bordeaux,
        habilitation_desk::alerts::Thresholds {
            revocations_per_day: 20,
            ..Default::default()
        },
    );
    let quieter = habilitation_desk::alerts::detect_day(&ctx, &strict, day)
        .await
        .expect("détection");
    assert!(!quieter.iter().any(|a| a.rule == "revocations"));

    // The territory admin: the alerts, an acknowledgement that needs a comment, thresholds.
    let bea = professional(
        &app.db.admin,
        "Béa Bordeaux",
        &[(Role::TerritoryAdmin, bordeaux.domain(), None)],
    )
    .await;
    let bb = browser(&app.address);
    assert_eq!(log_in(&bb, &app, &bea, -1).await.status(), 303);
    let alerts_page = format!("/territoire/collectivites/{bordeaux}/alertes");
    let (status, listed) = page(&bb, &app.url(&alerts_page)).await;
    assert_eq!(status, 200);
    assert!(
        listed.contains("Créations de mandats inhabituellement nombreuses")
            && listed.contains("Centre social Bastide")
    );
    assert!(listed.contains("30 ce jour-là, pour 2 par jour en moyenne"));
    let burst_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM dep_33.anomaly_alerts WHERE structure_id = $1 AND rule = 'creations'",
    )
    .bind(burst)
    .fetch_one(&app.db.admin)
    .await
    .expect("alerte");
    let ack = format!("{alerts_page}/{burst_id}/prise-en-compte");
    let resp = post_form(&bb, &app, &alerts_page, &ack, &[("comment", " ")]).await;
    assert_eq!(resp.status(), 400);
    let resp = post_form(
        &bb,
        &app,
        &alerts_page,
        &ack,
        &[(
            "comment",
            "Permanence exceptionnelle : journée portes ouvertes.",
        )],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM dep_33.anomaly_alerts WHERE id = '{burst_id}' AND acknowledged_at IS NOT NULL")).await, 1);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'anomaly_acknowledged'"
        )
        .await,
        1
    );
    let thresholds = |revocations_per_day: &'static str| {
        let (bb, app, alerts_page) = (&bb, &app, &alerts_page);
        async move {
            post_form(
                bb,
                app,
                alerts_page,
                &format!("{alerts_page}/seuils"),
                &[
                    ("volume_factor", "4,5"),
                    ("volume_minimum", "12"),
                    ("night_starts", "22"),
                    ("night_ends", "6"),
                    ("usager_structures", "4"),
                    ("revocations_per_day", revocations_per_day),
                ],
            )
            .await
        }
    };
    assert_eq!(thresholds("100000").await.status(), 400);
    assert_eq!(thresholds("15").await.status(), 303);
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM platform.alert_settings WHERE tenant_id = '{bordeaux}' AND revocations_per_day = 15 AND volume_factor = 4.5")).await, 1);

    // The référent of the burst structure: its alerts only; another's is 404 to them.
    let rita = professional(
        &app.db.admin,
        "Rita Référente",
        &[(Role::Referent, burst.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let (status, mine) = page(&rb, &app.url("/structure/alertes")).await;
    assert_eq!(status, 200);
    assert!(mine.contains("Centre social Bastide") && !mine.contains("Maison de quartier"));
    let other: Uuid = sqlx::query_scalar(
        "SELECT id FROM dep_33.anomaly_alerts WHERE structure_id = $1 AND rule = 'closed_hours'",
    )
    .bind(weekdays)
    .fetch_one(&app.db.admin)
    .await
    .expect("alerte");
    let resp = post_form(
        &rb,
        &app,
        "/structure/alertes",
        &format!("/structure/alertes/{other}/prise-en-compte"),
        &[("comment", "Pas chez nous.")],
    )
    .await;
    assert_eq!(resp.status(), 404);
    // The digest: one message to each référent and territory admin concerned.
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    assert!(
        habilitation_desk::alerts::digest(&platform)
            .await
            .expect("digest")
            >= 2
    );
    assert_eq!(
        habilitation_desk::alerts::digest(&platform)
            .await
            .expect("digest"),
        0,
        "nothing mailed twice"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !test_support::maildev::mails_to(&rita.email)
        .await
        .iter()
        .any(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("à examiner"))
        })
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pas de courriel d'alertes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let found =
        test_support::browser::axe_violations_with_cookies(&[app.url(&alerts_page)], &bb.cookies())
            .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure/alertes")],
        &rb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn the_alert_pages_read_the_open_and_recent_alerts_not_years_of_acknowledged_ones() {
    // Alerts are kept once acknowledged; the pages list the open ones and those acknowledged in
    // the last 30 days. After years, a tenant's or a structure's page must still read about
    // what it lists, not every alert ever raised.
    let app = spawn_app(&["33"]).await;
    let bordeaux = bordeaux(&app).await;
    let ccas = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let bastide = structure(&app, bordeaux, "Centre social Bastide", "33063").await;
    // Three years of daily alerts of five rules, 5,475 in all, a day in each structure in
    // turn, each acknowledged the next day but the last three days' (15 still open): the
    // tenant's page lists 155, the CCAS's 80; today's 5 are not mailed yet.
    sqlx::query(
        "INSERT INTO dep_33.anomaly_alerts
             (id, structure_id, tenant_id, rule, day, figure, created_at, acknowledged_at, comment,
              mailed_at)
         SELECT gen_random_uuid(), (ARRAY[$1, $2])[1 + d % 2], $3,
                (ARRAY['creations', 'uses', 'closed_hours', 'usager_structures', 'revocations'])[1 + r],
                (now() AT TIME ZONE 'Europe/Paris')::date - d, 10, now() - d * interval '1 day',
                CASE WHEN d < 3 THEN NULL ELSE now() - (d - 1) * interval '1 day' END,
                CASE WHEN d < 3 THEN NULL ELSE 'vu' END,
                CASE WHEN d < 1 THEN NULL ELSE now() - d * interval '1 day' END
         FROM generate_series(0, 1094) AS d, generate_series(0, 4) AS r",
    )
    .bind(ccas)
    .bind(bastide)
    .bind(bordeaux)
    .execute(&app.db.admin)
    .await
    .expect("alertes");
    let mut conn = app.db.admin.acquire().await.expect("connection");
    sqlx::raw_sql("ANALYZE dep_33.anomaly_alerts; SET search_path = dep_33, public")
        .execute(&mut *conn)
        .await
        .expect("analyze");
    let whose = [
        (
            "la collectivité",
            habilitation_desk::alert_pages::Whose::Tenant(bordeaux),
            format!("'{bordeaux}'"),
            155.0,
        ),
        (
            "la structure",
            habilitation_desk::alert_pages::Whose::Structure(ccas),
            format!("'{ccas}'"),
            80.0,
        ),
    ];
    let mut failures = Vec::new();
    for (m, mode) in ["force_custom_plan", "force_generic_plan"]
        .into_iter()
        .enumerate()
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .expect("mode");
        for (n, (what, whose, arguments, listed)) in whose.iter().enumerate() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PREPARE alerts_{m}_{n} (uuid) AS {}",
                whose.sql().0
            )))
            .execute(&mut *conn)
            .await
            .expect("prepare");
            let shown: Vec<sqlx::postgres::PgRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXECUTE alerts_{m}_{n}({arguments})"
            )))
            .fetch_all(&mut *conn)
            .await
            .expect("alertes");
            assert_eq!(shown.len() as f64, *listed, "{what}");
            let (read, plan) = common::plans::read(
                &mut conn,
                &format!("EXECUTE alerts_{m}_{n}({arguments})"),
                "anomaly_alerts",
            )
            .await;
            if read > 2.0 * listed {
                failures.push(format!("{what} ({mode}): {read} alerts read: {plan}"));
            }
        }
    }
    // The digest's job reads the alerts not mailed yet.
    let (read, plan) = common::plans::read(
        &mut conn,
        habilitation_desk::alerts::UNMAILED_SQL,
        "anomaly_alerts",
    )
    .await;
    if read > 10.0 {
        failures.push(format!(
            "le courriel des alertes : {read} alerts read: {plan}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The text plans' reader that the tests of the alert pages and of the mandate list rely on.
#[test]
fn a_text_plan_counts_the_rows_of_the_relations_scans_and_their_shards() {
    let plan: Vec<String> = [
        "Nested Loop (actual time=0.1..0.2 rows=3 loops=1)",
        "  ->  Index Scan using journal_seq on journal (actual time=0.1..0.2 rows=4 loops=2)",
        "        Filter: (kind = 'x')",
        "        Rows Removed by Filter: 5",
        "  ->  Bitmap Heap Scan on journal_102008 journal (actual time=0.1..0.2 rows=7 loops=1)",
        "        Rows Removed by Index Recheck: 1",
        "        ->  Bitmap Index Scan on journal_pkey (actual time=0.1..0.2 rows=8 loops=1)",
        "  ->  Seq Scan on journal_kinds (actual time=0.1..0.2 rows=100 loops=1)",
        "  ->  Seq Scan on journal (never executed)",
    ]
    .map(str::to_owned)
    .to_vec();
    // (4 + 5) × 2 + 7 + 1
    assert_eq!(common::plans::read_text(&plan, "journal"), 26.0);
    assert_eq!(common::plans::read_text(&plan, "journal_kinds"), 100.0);
}
