//! The territory admin's space against the real stack: a département council's and two
//! communes' tenants in one département, each seeing its own structures only, on every page
//! and export; no usager's personal data anywhere; structures edited, deactivated; the
//! administration delegated; the journey in Chromium with the keyboard alone, axe-checked.

mod common;

use common::identity::*;
use common::requests::{council, location, structure};
use common::{TestApp, spawn_app};
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use foundation::tenancy::CommuneCode;
use foundation::tenancy::tenants::{TenantKind, create_tenant};
use policies::Role;
use serde_json::json;
use uuid::Uuid;

async fn commune_tenant(app: &TestApp, code: &str, name: &str) -> TenantId {
    create_tenant(
        &app.db.admin,
        &TenantKind::Commune(CommuneCode::parse(code).expect("commune")),
        name,
    )
    .await
    .expect("tenant")
    .id
}

/// A territory admin of the tenant, signed in.
async fn admin_of(app: &TestApp, tenant: TenantId, name: &str) -> (TestProfessional, Browser) {
    let who = professional(
        &app.db.admin,
        name,
        &[(Role::TerritoryAdmin, tenant.domain(), None)],
    )
    .await;
    let b = browser(&app.address);
    assert_eq!(log_in(&b, app, &who, -1).await.status(), 303);
    (who, b)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

/// A usager with canary names and a birth date, a mandate and two uses, in the structure.
async fn canary_usager(app: &TestApp, structure: StructureId, aidant: ProfessionalId) {
    let mut identity = common::idp::angela(&format!("canari-{}", Uuid::new_v4().simple()));
    identity.given_name = "Canarienne Zéphyrine".into();
    identity.family_name = "ZZCANARI".into();
    identity.birthdate = "1931-02-03".into();
    let (usager, mandate) =
        common::idp::mandate_for(app, structure, aidant, &identity, &["social", "logement"]).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("ctx");
    let mut tx = ctx.begin().await.expect("tx");
    for category in ["social", "social", "logement"] {
        foundation::journal::append(
            &mut tx,
            foundation::journal::NewEntry::new(foundation::journal::Event::MandateUsed)
                .structure(structure)
                .professional(aidant)
                .usager(usager)
                .mandate(mandate)
                .details(json!({ "category": category, "client": "démo" })),
        )
        .await
        .expect("usage");
    }
    tx.commit().await.expect("commit");
}

/// Runs the statistics job now (chains the journal, folds it, publishes the figures).
async fn refresh_statistics(app: &TestApp) {
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    habilitation_desk::statistics::refresh(&platform)
        .await
        .expect("statistiques");
}

/// The usager's names and birth date, the date in every form a page or an export could print
/// it (the year alone is not one: "1931" turns up by chance in an export's hexadecimal hashes,
/// which failed a CI run).
const CANARIES: [&str; 7] = [
    "ZZCANARI",
    "Canarienne",
    "Zéphyrine",
    "1931-02-03",
    "03/02/1931",
    "3 février 1931",
    "19310203",
];

fn assert_no_canary(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{c} apparaît dans {what}");
    }
}

#[tokio::test]
async fn commune_tenants_see_only_their_structures_and_nobody_sees_a_usager() {
    let app = spawn_app(&["33", "40"]).await;
    let gironde = council(&app, "33").await;
    let landes = council(&app, "40").await;
    let bordeaux = commune_tenant(&app, "33063", "Ville de Bordeaux").await;
    let pessac = commune_tenant(&app, "33318", "Ville de Pessac").await;
    let ccas_bordeaux = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let ccas_pessac = structure(&app, pessac, "CCAS de Pessac", "33318").await;
    let mds = structure(&app, gironde, "Maison des solidarités de Mérignac", "33281").await;
    let mont = structure(&app, landes, "CCAS de Mont-de-Marsan", "40192").await;
    let remi = professional(
        &app.db.admin,
        "Rémi Bordelais",
        &[
            (Role::Referent, ccas_bordeaux.domain(), Some("33")),
            (Role::Aidant, ccas_bordeaux.domain(), Some("33")),
        ],
    )
    .await;
    canary_usager(&app, ccas_bordeaux, remi.id).await;
    refresh_statistics(&app).await;
    let (_, bb) = admin_of(&app, bordeaux, "Béa Bordeaux").await;
    let (_, gb) = admin_of(&app, gironde, "Gaël Gironde").await;
    let (_, lb) = admin_of(&app, landes, "Léa Landes").await;

    // Bordeaux's admin: her commune's structure, its référent and aidant, its uses by
    // category and month; nothing of Pessac, of the council's, of the Landes.
    let (status, home) = page(&bb, &app.url("/territoire")).await;
    assert_eq!(status, 200);
    assert!(home.contains("Ville de Bordeaux") && !home.contains("Pessac"));
    let space = format!("/territoire/collectivites/{bordeaux}");
    let (status, dashboard) = page(&bb, &app.url(&space)).await;
    assert_eq!(status, 200, "{dashboard}");
    assert!(dashboard.contains("CCAS de Bordeaux") && dashboard.contains("Rémi Bordelais"));
    for other in ["CCAS de Pessac", "Mérignac", "Mont-de-Marsan"] {
        assert!(!dashboard.contains(other), "{other} visible de Bordeaux");
    }
    assert!(dashboard.contains("Social - Santé") && dashboard.contains("Logement"));
    assert!(dashboard.contains("Personnes accompagnées, par mois"));
    assert!(dashboard.contains("Mandats en cours : <strong>1</strong>"));
    // The tenant's monthly figures: Bordeaux's one mandate, three uses, one person; nothing
    // for Pessac or the council.
    let tenant_figures = |t: TenantId| {
        format!(
            "SELECT coalesce(sum(created), 0)::bigint * 10000 + coalesce(sum(used), 0)::bigint * 100
                    + coalesce(sum(people), 0)::bigint
             FROM dep_33.stats_tenant_months WHERE tenant_id = '{t}'"
        )
    };
    assert_eq!(count(&app, &tenant_figures(bordeaux)).await, 10301);
    assert_eq!(count(&app, &tenant_figures(pessac)).await, 0);
    assert_eq!(count(&app, &tenant_figures(gironde)).await, 0);
    assert!(dashboard.contains("Bordeaux") && dashboard.contains("33063"));
    assert_no_canary("l'espace de Bordeaux", &dashboard);
    let resp = post_form(&bb, &app, &space, &format!("{space}/structures.csv"), &[]).await;
    assert_eq!(resp.status(), 200);
    let csv = resp.text().await.expect("csv");
    assert!(
        csv.contains("CCAS de Bordeaux") && !csv.contains("Pessac") && !csv.contains("Mérignac")
    );
    assert_no_canary("l'export de Bordeaux", &csv);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'territory_exported'"
        )
        .await,
        1
    );
    let manage = format!("{space}/structures/{ccas_bordeaux}");
    let (status, form) = page(&bb, &app.url(&manage)).await;
    assert_eq!(status, 200);
    assert_no_canary("la fiche de la structure", &form);
    let (_, rollout) = page(&bb, &app.url("/territoire/deploiement")).await;
    assert_no_canary("le déploiement", &rollout);

    // A sibling commune, the council, another département, nonsense: 404, reads and writes.
    for path in [
        format!("/territoire/collectivites/{pessac}"),
        format!("/territoire/collectivites/{gironde}"),
        format!("/territoire/collectivites/{landes}"),
        format!("/territoire/collectivites/{}", Uuid::now_v7()),
        "/territoire/collectivites/pas-un-identifiant".to_owned(),
        format!("/territoire/collectivites/{pessac}/structures/{ccas_pessac}"),
        format!("{space}/structures/{ccas_pessac}"),
        format!("{space}/structures/{mds}"),
        format!("{space}/structures/{mont}"),
    ] {
        assert_eq!(bb.get(&app.url(&path)).await.status(), 404, "{path}");
    }
    let resp = post_form(
        &bb,
        &app,
        &space,
        &format!("/territoire/collectivites/{pessac}/structures.csv"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = post_form(
        &bb,
        &app,
        &space,
        &format!("{space}/structures/{ccas_pessac}"),
        &[("name", "Repris par Bordeaux"), ("address", "Ailleurs")],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structures WHERE name = 'Repris par Bordeaux'"
        )
        .await,
        0
    );

    // The council: its own structures; the communes' are theirs.
    let (status, council_page) = page(
        &gb,
        &app.url(&format!("/territoire/collectivites/{gironde}")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(council_page.contains("Maison des solidarités de Mérignac"));
    assert!(!council_page.contains("CCAS de Bordeaux") && !council_page.contains("CCAS de Pessac"));
    // Nor their uses.
    assert!(council_page.contains("Aucun mandat créé ni utilisé ces douze derniers mois"));
    assert_no_canary("l'espace du département", &council_page);
    assert_eq!(gb.get(&app.url(&space)).await.status(), 404);
    // The Landes admin: nothing of Gironde.
    assert_eq!(lb.get(&app.url(&space)).await.status(), 404);
    assert_eq!(
        lb.get(&app.url(&format!("/territoire/collectivites/{gironde}")))
            .await
            .status(),
        404
    );
    // An aidant has no territory space: 403.
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &remi, -1).await.status(), 303);
    assert_eq!(ab.get(&app.url("/territoire")).await.status(), 403);
    assert_eq!(ab.get(&app.url(&space)).await.status(), 403);

    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/territoire"), app.url(&space), app.url(&manage)],
        &bb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn a_territory_admin_edits_deactivates_and_delegates_and_an_auditor_writes_nothing() {
    let app = spawn_app(&["33"]).await;
    let bordeaux = commune_tenant(&app, "33063", "Ville de Bordeaux").await;
    let ccas = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let referent = professional(
        &app.db.admin,
        "Rita Référente",
        &[(Role::Referent, ccas.domain(), Some("33"))],
    )
    .await;
    let (_bea, bb) = admin_of(&app, bordeaux, "Béa Bordeaux").await;
    let space = format!("/territoire/collectivites/{bordeaux}");
    let manage = format!("{space}/structures/{ccas}");
    // Bad details: the French error on the field, what was typed kept, nothing saved.
    let resp = post_form(
        &bb,
        &app,
        &manage,
        &manage,
        &[
            ("name", "CCAS de Bordeaux"),
            ("address", "4 rue Claude Bonnier"),
            ("postal_code", "33 000"),
            ("opening_hours", "Lundi au vendredi, 9 h - 17 h"),
            ("mission", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(body.contains("5 chiffres") && body.contains("Lundi au vendredi, 9 h - 17 h"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structures WHERE address = '4 rue Claude Bonnier'"
        )
        .await,
        0
    );
    let resp = post_form(
        &bb,
        &app,
        &manage,
        &manage,
        &[
            ("name", "CCAS de Bordeaux"),
            ("address", "4 rue Claude Bonnier"),
            ("postal_code", "33000"),
            ("opening_hours", "Lundi au vendredi, 9 h - 17 h"),
            ("mission", "Accompagnement aux démarches"),
        ],
    )
    .await;
    assert_eq!(location(&resp), format!("{space}?message=modifiee"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structures WHERE address = '4 rue Claude Bonnier' AND postal_code = '33000'").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.journal WHERE kind = 'structure_details_updated' AND details LIKE '%address%'").await,
        1
    );
    // Deactivation: a reason is required; then the structure's people are refused.
    let resp = post_form(
        &bb,
        &app,
        &manage,
        &format!("{manage}/desactiver"),
        &[("reason", "  ")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Indiquez le motif")
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structures WHERE NOT active"
        )
        .await,
        0
    );
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &referent, -1).await.status(), 303);
    assert_eq!(rb.get(&app.url("/structure")).await.status(), 200);
    let resp = post_form(
        &bb,
        &app,
        &manage,
        &format!("{manage}/desactiver"),
        &[("reason", "Fusion avec le centre social")],
    )
    .await;
    assert_eq!(location(&resp), format!("{space}?message=desactivee"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structures WHERE NOT active AND deactivation_reason = 'Fusion avec le centre social'").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.journal WHERE kind = 'structure_deactivated' AND details LIKE '%territory%'").await,
        1
    );
    assert_eq!(rb.get(&app.url("/structure")).await.status(), 403);
    let resp = post_form(
        &bb,
        &app,
        &space,
        &format!("{manage}/desactiver"),
        &[("reason", "Encore")],
    )
    .await;
    assert_eq!(resp.status(), 409);
    // Delegation: a bad address is refused in French; a new colleague gets an account, the
    // role, the enrolment link and the notice.
    let resp = post_form(
        &bb,
        &app,
        &space,
        &format!("{space}/co-admins"),
        &[("email", "pas une adresse")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("corps").contains("est pas valide"));
    let colleague = format!(
        "colin-{}@bordeaux.test",
        &Uuid::new_v4().simple().to_string()[..6]
    );
    let resp = post_form(
        &bb,
        &app,
        &space,
        &format!("{space}/co-admins"),
        &[("email", &colleague), ("name", "Colin Collègue")],
    )
    .await;
    assert_eq!(location(&resp), format!("{space}?message=delegue"));
    assert_eq!(
        count(&app, &format!("SELECT count(*) FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id WHERE p.email = '{colleague}' AND a.role = 'territory_admin' AND a.domain = 'tenant:{bordeaux}'")).await,
        1
    );
    mailed(&colleague, "/activation?jeton=", 0).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.security_journal WHERE kind = 'territory_admin_delegated'").await,
        1
    );
    // An auditor of the tenant reads nothing here and writes nothing: 403.
    let audrey = professional(
        &app.db.admin,
        "Audrey Auditrice",
        &[(Role::Auditor, bordeaux.domain(), None)],
    )
    .await;
    let aub = browser(&app.address);
    assert_eq!(log_in(&aub, &app, &audrey, -1).await.status(), 303);
    assert_eq!(aub.get(&app.url(&space)).await.status(), 403);
    let resp = post_form(
        &aub,
        &app,
        "/compte",
        &manage,
        &[("name", "Audit"), ("address", "Audit")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = post_form(
        &aub,
        &app,
        "/compte",
        &format!("{space}/co-admins"),
        &[("email", "x@y.test"), ("name", "X")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structures WHERE name = 'Audit'"
        )
        .await,
        0
    );
}

/// Chains what is pending in Gironde's journal and signs a checkpoint, as the jobs do.
async fn seal_gironde(app: &TestApp) {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let d = foundation::tenancy::DepartementCode::parse("33").expect("33");
    foundation::journal::seal_from_platform(&tenancy, d)
        .await
        .expect("chaînage");
    let settings = foundation::config::Settings::default();
    let key = foundation::journal::CheckpointKey::from_base64(
        secrecy::ExposeSecret::expose_secret(&settings.security.journal_signing_key),
    )
    .expect("clé");
    let ctx = tenancy.unguarded(d).await.expect("ctx");
    let mut tx = ctx.begin().await.expect("tx");
    foundation::journal::checkpoint(&mut tx, &key)
        .await
        .expect("scellement");
    tx.commit().await.expect("commit");
}

/// Starts a verification from the auditor's page and waits for its outcome page.
async fn verified(app: &TestApp, b: &Browser, journal_page: &str, base: &str) -> String {
    let resp = post_form(b, app, journal_page, &format!("{base}/verification"), &[]).await;
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert!(to.starts_with(&format!("{base}/verification/")), "{to}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, page_text) = page(b, &app.url(&to)).await;
        assert_eq!(status, 200);
        if !page_text.contains("Actualiser l") {
            return page_text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "vérification sans fin"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_auditor_reads_filters_verifies_and_exports_only_what_their_tenant_may_see() {
    let app = spawn_app(&["33"]).await;
    let gironde = council(&app, "33").await;
    let bordeaux = commune_tenant(&app, "33063", "Ville de Bordeaux").await;
    let pessac = commune_tenant(&app, "33318", "Ville de Pessac").await;
    let ccas_bordeaux = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let ccas_pessac = structure(&app, pessac, "CCAS de Pessac", "33318").await;
    let ada = professional(
        &app.db.admin,
        "Ada Aidante",
        &[
            (Role::Aidant, ccas_bordeaux.domain(), Some("33")),
            (Role::Aidant, ccas_pessac.domain(), Some("33")),
        ],
    )
    .await;
    canary_usager(&app, ccas_bordeaux, ada.id).await;
    canary_usager(&app, ccas_pessac, ada.id).await;
    seal_gironde(&app).await;
    let audrey = professional(
        &app.db.admin,
        "Audrey Auditrice",
        &[(Role::Auditor, bordeaux.domain(), None)],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &audrey, -1).await.status(), 303);
    let (status, home) = page(&ab, &app.url("/audit")).await;
    assert_eq!(status, 200);
    assert!(home.contains("Ville de Bordeaux"));
    let base = format!("/audit/collectivites/{bordeaux}");
    let journal_page = format!("{base}/journal");
    // Bordeaux's entries only; the person by a pseudonym, the professional by name.
    let (status, entries) = page(&ab, &app.url(&journal_page)).await;
    assert_eq!(status, 200, "{entries}");
    assert!(
        entries.contains("Mandat créé") && entries.contains("Mandat utilisé pour une démarche")
    );
    assert!(
        entries.contains("CCAS de Bordeaux")
            && entries.contains("Ada Aidante")
            && entries.contains("U-")
    );
    assert!(
        !entries.contains("CCAS de Pessac"),
        "une entrée de Pessac est visible"
    );
    assert_no_canary("le journal de l'auditeur", &entries);
    // Filters: a kind; then absurd ones, refused in French.
    let (status, uses) = page(&ab, &app.url(&format!("{journal_page}?type=mandate_used"))).await;
    assert_eq!(status, 200);
    assert!(uses.contains("Mandat utilisé") && !uses.contains("<td>Mandat créé</td>"));
    for (query, error) in [
        ("du=2026-13-01", "La date de début s"),
        ("du=2026-11-30&au=2026-11-01", "commence après sa fin"),
        ("du=1990-01-01&au=2026-11-01", "dix ans"),
        ("type=pas_un_type", "type d&#39;événement n&#39;existe pas"),
    ] {
        let (status, text) = page(&ab, &app.url(&format!("{journal_page}?{query}"))).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            text.contains(error) || text.contains(&error.replace("&#39;", "'")),
            "{query} : {text}"
        );
    }
    let (status, text) = page(
        &ab,
        &app.url(&format!("{journal_page}?structure={ccas_pessac}")),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("pas de votre collectivité"));
    // Another tenant's journal: 404; the territory admin of Bordeaux has no journal: 403.
    assert_eq!(
        ab.get(&app.url(&format!("/audit/collectivites/{pessac}/journal")))
            .await
            .status(),
        404
    );
    assert_eq!(
        ab.get(&app.url(&format!("/audit/collectivites/{gironde}/journal")))
            .await
            .status(),
        404
    );
    let (_, bb) = admin_of(&app, bordeaux, "Béa Bordeaux").await;
    assert_eq!(bb.get(&app.url(&journal_page)).await.status(), 403);
    assert_eq!(bb.get(&app.url("/audit")).await.status(), 403);
    // The verification runs in the background; its page says the outcome.
    let outcome = verified(&app, &ab, &journal_page, &base).await;
    assert!(outcome.contains("Journal intact"), "{outcome}");
    // The export: Pessac's entries redacted, no canary, and it verifies offline.
    let resp = post_form(
        &ab,
        &app,
        &journal_page,
        &format!("{base}/journal/export"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let export = resp.text().await.expect("export");
    assert_no_canary("l'export de l'auditeur", &export);
    assert!(
        !export.contains(&ccas_pessac.to_string()),
        "une entrée de Pessac en clair"
    );
    assert!(export.contains(&ccas_bordeaux.to_string()));
    let settings = foundation::config::Settings::default();
    let public = foundation::journal::CheckpointKey::from_base64(
        secrecy::ExposeSecret::expose_secret(&settings.security.journal_signing_key),
    )
    .expect("clé")
    .public();
    let found = foundation::journal::offline::verify_file(
        || Ok(std::io::Cursor::new(export.clone().into_bytes())),
        &public,
        |_| {},
    )
    .expect("export lisible");
    assert!(found.verification.intact(), "{:?}", found.verification);
    assert!(found.redacted >= 4, "{}", found.redacted);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'journal_exported'"
        )
        .await,
        1
    );
    let found = test_support::browser::axe_violations_with_cookies(
        &[
            app.url("/audit"),
            app.url(&journal_page),
            app.url(&format!("{journal_page}?du=2026-13-01")),
        ],
        &ab.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    // Someone with full control of the database edits a sealed entry: the next verification
    // names it. One statement at a time, in one transaction (Citus forwards a territory's
    // statements to its worker one by one).
    let mut tx = app.db.admin.begin().await.expect("transaction");
    for statement in [
        "ALTER TABLE dep_33.journal DISABLE TRIGGER USER",
        "UPDATE dep_33.journal SET details = '{\"category\":\"justice\"}' WHERE seq = 2",
        "ALTER TABLE dep_33.journal ENABLE TRIGGER USER",
    ] {
        sqlx::raw_sql(statement)
            .execute(&mut *tx)
            .await
            .expect("altération");
    }
    tx.commit().await.expect("altération");
    let outcome = verified(&app, &ab, &journal_page, &base).await;
    assert!(
        outcome.contains("Journal altéré à partir de l&#39;entrée n° 2")
            || outcome.contains("Journal altéré à partir de l'entrée n° 2"),
        "{outcome}"
    );
    let last = format!("{base}/verification/");
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url(&journal_page)],
        &ab.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?} ({last})");
    }
}

/// A phase of `journey.mjs` in Chromium; every page it visits passes axe.
async fn keyboard(
    app: &TestApp,
    name: &str,
    b: &Browser,
    fields: serde_json::Value,
) -> serde_json::Value {
    let mut request = json!({ "phase": name, "base": app.address, "cookies": b.cookies() });
    if let (Some(into), serde_json::Value::Object(more)) = (request.as_object_mut(), fields) {
        into.extend(more);
    }
    let result = test_support::browser::run("journey.mjs", &request).await;
    assert!(
        result["error"].is_null(),
        "{name} : {} ; étapes : {}",
        result["error"],
        result["steps"]
    );
    let pages = result["pages"].as_array().expect("pages");
    assert!(pages.len() >= 4, "{name} : {pages:?}");
    for p in pages {
        assert_eq!(p["violations"], json!([]), "{name} : {}", p["url"]);
    }
    result
}

#[tokio::test]
async fn the_territory_admin_and_the_auditor_work_with_the_keyboard_alone() {
    let app = spawn_app(&["33"]).await;
    let bordeaux = commune_tenant(&app, "33063", "Ville de Bordeaux").await;
    let ccas = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let ada = professional(
        &app.db.admin,
        "Ada Aidante",
        &[(Role::Aidant, ccas.domain(), Some("33"))],
    )
    .await;
    canary_usager(&app, ccas, ada.id).await;
    seal_gironde(&app).await;
    let (_, bb) = admin_of(&app, bordeaux, "Béa Bordeaux").await;
    let hours = "Lundi, mardi et jeudi, 9 h - 12 h";
    let saved = keyboard(
        &app,
        "territory",
        &bb,
        json!({ "tenant": bordeaux, "structure": ccas, "hours": hours }),
    )
    .await;
    assert!(saved["steps"].to_string().contains("saved"));
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM dep_33.structures WHERE opening_hours = '{hours}'")
        )
        .await,
        1
    );
    let audrey = professional(
        &app.db.admin,
        "Audrey Auditrice",
        &[(Role::Auditor, bordeaux.domain(), None)],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &audrey, -1).await.status(), 303);
    let audited = keyboard(
        &app,
        "audit",
        &ab,
        json!({ "tenant": bordeaux, "kind": "mandate_used" }),
    )
    .await;
    assert!(
        audited["seen"]["outcome"]
            .as_str()
            .is_some_and(|t| t.contains("Journal intact"))
    );
}

#[tokio::test]
async fn the_journal_pages_list_of_kinds_does_not_read_the_whole_journal() {
    // The auditor's page offers the kinds of event the territory's journal holds; it reads them
    // at each view, so it must cost one index probe per kind, not a pass over every entry (a
    // département's journal holds millions).
    let app = spawn_app(&["33"]).await;
    let gironde = council(&app, "33").await;
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, details)
         SELECT now() - i * interval '1 minute',
                (ARRAY['mandate_used', 'mandate_created', 'usager_identified', 'attestation_produced'])[1 + i % 4],
                '{}'
         FROM generate_series(1, 20000) AS i",
    )
    .execute(&app.db.admin)
    .await
    .expect("entries");
    let mut conn = app.db.admin.acquire().await.expect("connection");
    sqlx::raw_sql("ANALYZE dep_33.journal; SET search_path = dep_33, public")
        .execute(&mut *conn)
        .await
        .expect("analyze");
    let expected: Vec<String> = sqlx::query_scalar("SELECT DISTINCT kind FROM journal ORDER BY 1")
        .fetch_all(&mut *conn)
        .await
        .expect("kinds");
    let found: Vec<String> = sqlx::query_scalar(habilitation_desk::audit::KINDS_SQL)
        .fetch_all(&mut *conn)
        .await
        .expect("kinds, walked");
    assert_eq!(found, expected);
    assert!(found.len() >= 4, "{found:?}");
    let (read, plan) =
        common::plans::read(&mut conn, habilitation_desk::audit::KINDS_SQL, "journal").await;
    assert!(
        read <= 4.0 * found.len() as f64,
        "{read} entries read for {} kinds: {plan}",
        found.len()
    );
    // The page still offers them.
    let audrey = professional(
        &app.db.admin,
        "Audrey Auditrice",
        &[(Role::Auditor, gironde.domain(), None)],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &audrey, -1).await.status(), 303);
    let (status, text) = page(
        &ab,
        &app.url(&format!("/audit/collectivites/{gironde}/journal")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(">Attestation produite</option>")
            && text.contains(">Personne identifiée par FranceConnect</option>"),
        "{text}"
    );
}

#[tokio::test]
async fn the_auditors_journal_page_reads_one_page_whatever_the_filters() {
    // A département's journal holds millions of entries; an auditor's page must read about one
    // page of them whatever the filters: a commune's few structures, one structure, a rare kind,
    // a period long past, the next page. Before, the page walked the whole journal newest first
    // and kept what matched, reading on until 51 entries were kept.
    let app = spawn_app(&["33"]).await;
    let gironde = council(&app, "33").await;
    let bordeaux = commune_tenant(&app, "33063", "Ville de Bordeaux").await;
    let ccas = structure(&app, bordeaux, "CCAS de Bordeaux", "33063").await;
    let maison = structure(
        &app,
        bordeaux,
        "Maison France Services de Bordeaux",
        "33063",
    )
    .await;
    let base: String = sqlx::query_scalar("SELECT now()::text")
        .fetch_one(&app.db.admin)
        .await
        .expect("now");
    // 40,000 entries over 400 days, in the order of their time, two by two at the same
    // instant; the commune's structures one entry in 400 each, a rare kind one in 500; the
    // rest spread over 40 other structures.
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, structure_id, details)
         SELECT $1::timestamptz - (i / 2) * interval '30 minutes',
                CASE WHEN i % 500 = 7 THEN 'attestation_produced'
                     ELSE (ARRAY['mandate_used', 'mandate_created', 'usager_identified'])[1 + i % 3] END,
                CASE i % 400 WHEN 3 THEN $2 WHEN 203 THEN $3
                     ELSE md5('autre-' || (i % 40))::uuid END,
                '{}'
         FROM generate_series(1, 40000) AS i ORDER BY i DESC",
    )
    .bind(&base)
    .bind(ccas)
    .bind(maison)
    .execute(&app.db.admin)
    .await
    .expect("entries");
    seal_gironde(&app).await;
    let mut conn = app.db.admin.acquire().await.expect("connection");
    sqlx::raw_sql("ANALYZE dep_33.journal; SET search_path = dep_33, public")
        .execute(&mut *conn)
        .await
        .expect("analyze");
    let at = |days: i64| format!("'{base}'::timestamptz - interval '{days} days'");
    let commune = format!("'{{{ccas},{maison}}}'::uuid[]");
    let one = format!("'{{{ccas}}}'::uuid[]");
    // (what, kind, structures, from, to, page): each statement's parameters as SQL literals,
    // and the same selection as plain conditions for the reference.
    struct Case {
        what: &'static str,
        kind: Option<&'static str>,
        structures: Option<String>,
        from: Option<String>,
        to: Option<String>,
        second_page: bool,
    }
    let cases = [
        Case {
            what: "le conseil, sans filtre",
            kind: None,
            structures: None,
            from: None,
            to: None,
            second_page: false,
        },
        Case {
            what: "la commune",
            kind: None,
            structures: Some(commune.clone()),
            from: None,
            to: None,
            second_page: false,
        },
        Case {
            what: "la commune, page suivante",
            kind: None,
            structures: Some(commune.clone()),
            from: None,
            to: None,
            second_page: true,
        },
        Case {
            what: "une structure",
            kind: None,
            structures: Some(one.clone()),
            from: None,
            to: None,
            second_page: false,
        },
        Case {
            what: "un type rare",
            kind: Some("attestation_produced"),
            structures: None,
            from: None,
            to: None,
            second_page: false,
        },
        Case {
            what: "un type rare, page suivante",
            kind: Some("attestation_produced"),
            structures: None,
            from: None,
            to: None,
            second_page: true,
        },
        Case {
            what: "une période ancienne",
            kind: None,
            structures: None,
            from: Some(at(380)),
            to: Some(at(300)),
            second_page: false,
        },
        Case {
            what: "la commune sur une période",
            kind: None,
            structures: Some(commune.clone()),
            from: Some(at(300)),
            to: Some(at(100)),
            second_page: false,
        },
    ];
    let null = || "NULL".to_owned();
    let mut failures = Vec::new();
    for (m, mode) in ["force_custom_plan", "force_generic_plan"]
        .into_iter()
        .enumerate()
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .expect("mode");
        for (n, case) in cases.iter().enumerate() {
            // The page plans its statements for their values (`begin_custom_plans`): a generic
            // plan for a kind, made for no kind in particular, walks the journal by time and
            // reads thousands of entries for a rare one. The other filters hold either way.
            if mode == "force_generic_plan" && case.kind.is_some() {
                continue;
            }
            let mut conditions = vec!["seq IS NOT NULL".to_owned()];
            if let Some(k) = case.kind {
                conditions.push(format!("kind = '{k}'"));
            }
            if let Some(s) = &case.structures {
                conditions.push(format!("structure_id = ANY({s})"));
            }
            if let Some(f) = &case.from {
                conditions.push(format!("at >= {f}"));
            }
            if let Some(t) = &case.to {
                conditions.push(format!("at < {t}"));
            }
            let reference: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT seq FROM journal WHERE {} ORDER BY at DESC, seq DESC LIMIT 101",
                conditions.join(" AND ")
            )))
            .fetch_all(&mut *conn)
            .await
            .expect("reference");
            assert!(reference.len() > 60, "{}: {}", case.what, reference.len());
            let (expected, before) = if case.second_page {
                (reference[50..].to_vec(), reference[49].to_string())
            } else {
                (reference[..51].to_vec(), null())
            };
            let selection = habilitation_desk::audit::Selection {
                kind: case.kind.map(str::to_owned),
                structures: case.structures.as_ref().map(|_| Vec::new()),
                from: case.from.as_ref().map(|_| time::OffsetDateTime::UNIX_EPOCH),
                to: case.to.as_ref().map(|_| time::OffsetDateTime::UNIX_EPOCH),
                before: case.second_page.then_some(0),
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PREPARE page_{m}_{n} (text, uuid[], timestamptz, timestamptz, bigint, bigint) AS {}",
                selection.sql()
            )))
            .execute(&mut *conn)
            .await
            .expect("prepare");
            let values = [
                case.kind.map(|k| format!("'{k}'")).unwrap_or_else(null),
                case.structures.clone().unwrap_or_else(null),
                case.from.clone().unwrap_or_else(null),
                case.to.clone().unwrap_or_else(null),
                before,
                "51".to_owned(),
            ];
            let arguments = values.join(", ");
            let found: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXECUTE page_{m}_{n}({arguments})"
            )))
            .fetch_all(&mut *conn)
            .await
            .expect("page")
            .iter()
            .map(|r| sqlx::Row::get::<i64, _>(r, "seq"))
            .collect();
            if found != expected {
                failures.push(format!(
                    "{} ({mode}): {found:?} instead of {expected:?}",
                    case.what
                ));
            }
            // A custom plan is the statement planned with its values: on Citus, the plan of an
            // `EXPLAIN ANALYZE EXECUTE` is the worker's with its parameters unknown, whereas the
            // page's statement is planned there with its values (seen with `auto_explain` on the
            // worker), as the statement written with them is.
            let explained = if mode == "force_custom_plan" {
                values
                    .iter()
                    .enumerate()
                    .rev()
                    .fold(selection.sql().to_owned(), |sql, (i, value)| {
                        sql.replace(&format!("${}", i + 1), &format!("({value})"))
                    })
            } else {
                format!("EXECUTE page_{m}_{n}({arguments})")
            };
            let (read, plan) = common::plans::read(&mut conn, &explained, "journal").await;
            let structures = if case.structures.as_deref() == Some(commune.as_str()) {
                2.0
            } else {
                1.0
            };
            if read > 60.0 * structures {
                failures.push(format!(
                    "{} ({mode}): {read} entries read for one page: {plan}",
                    case.what
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The commune's auditor: the page and the next one.
    let audrey = professional(
        &app.db.admin,
        "Audrey Auditrice",
        &[(Role::Auditor, bordeaux.domain(), None)],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &audrey, -1).await.status(), 303);
    let (status, text) = page(
        &ab,
        &app.url(&format!("/audit/collectivites/{bordeaux}/journal")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let next = text
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("avant="))
        .expect("page suivante")
        .replace("&amp;", "&");
    let (status, older) = page(&ab, &app.url(&next)).await;
    assert_eq!(status, 200, "{older}");
    assert!(older.contains("CCAS de Bordeaux"), "{older}");
    // The council's auditor, a period long past.
    let aude = professional(
        &app.db.admin,
        "Aude Auditrice",
        &[(Role::Auditor, gironde.domain(), None)],
    )
    .await;
    let cb = browser(&app.address);
    assert_eq!(log_in(&cb, &app, &aude, -1).await.status(), 303);
    let (status, text) = page(
        &cb,
        &app.url(&format!(
            "/audit/collectivites/{gironde}/journal?type=attestation_produced&du=2017-01-01"
        )),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("<td>Attestation produite</td>").count(), 50);
    assert!(text.contains("avant="), "{text}");
}
