//! Référent and national pages for second factors: card import with a line report, linking a
//! card, unlinking, unblocking, two-code re-synchronisation — each behind the guard, each only
//! on aidants of the référent's own structure.

mod common;

use common::identity::*;
use common::{TestApp, spawn_app};
use policies::{Domain, Role};
use uuid::Uuid;

/// A card seed the test knows, and its base32 form for the CSV.
fn card_seed() -> (Vec<u8>, String) {
    let seed = foundation::auth::totp::new_seed();
    let b32 = foundation::auth::totp::seed_base32(&seed);
    (seed, b32)
}

fn card_code(seed: &[u8], offset_steps: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    foundation::auth::totp::code_at(seed, 60, (now + offset_steps * 60) as u64)
}

async fn flash(client: &Browser, app: &TestApp, resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let (_, html) = page(client, &app.url(&location)).await;
    html
}

async fn factor_of(
    app: &TestApp,
    who: foundation::ids::ProfessionalId,
) -> Option<(String, Option<String>, bool)> {
    sqlx::query_as("SELECT kind, card_serial, locked FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL AND confirmed_at IS NOT NULL")
        .bind(who)
        .fetch_optional(&app.db.admin)
        .await
        .expect("facteur")
}

#[tokio::test]
async fn the_national_team_imports_cards_with_a_line_by_line_report() {
    let app = spawn_app(&["33"]).await;
    let nadia = professional(
        &app.db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let client = browser(&app.address);
    log_in(&client, &app, &nadia, -1).await;
    let (_, good) = card_seed();
    let serial = format!("CARTE-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let csv = format!(
        "serial,seed\n{serial},{good}\nMAUVAISE LIGNE\n{serial},{good}\nCARTE-X2,pas-une-cle\n"
    );
    let resp = post_form(
        &client,
        &app,
        "/national/cartes",
        "/national/cartes",
        &[("cartes", &csv)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("corps");
    assert!(
        html.contains("1 carte(s) importée(s), 3 ligne(s) refusée(s)"),
        "{html}"
    );
    assert!(html.contains(&format!("Ligne 2 ({serial}) : importée")));
    assert!(html.contains("Ligne 3") && html.contains("colonnes"));
    assert!(html.contains("Ligne 4") && html.contains("déjà importée"));
    assert!(html.contains("Ligne 5") && html.contains("base32"));

    // Anyone else: refused.
    let s = structure_domain(&app, "33").await;
    let ref_ = professional(
        &app.db.admin,
        "Rita Referente",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let other = browser(&app.address);
    log_in(&other, &app, &ref_, -1).await;
    assert_eq!(page(&other, &app.url("/national/cartes")).await.0, 403);
}

#[tokio::test]
async fn a_referent_links_a_card_and_the_aidant_logs_in_with_it() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let remi = professional(
        &app.db.admin,
        "Remi Referent",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let anna = professional(
        &app.db.admin,
        "Anna Carte",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let (seed, b32) = card_seed();
    let serial = format!("CARTE-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut conn = app.db.admin.acquire().await.expect("connexion");
    let settings = foundation::config::Settings::default();
    let cipher =
        foundation::auth::secrets::SeedCipher::new(&settings.security.totp_key, 1).expect("clé");
    foundation::auth::cards::import(&mut conn, &cipher, &format!("{serial},{b32}"), None)
        .await
        .expect("import");
    drop(conn);
    // Anna is logged in with her app when the card replaces it.
    let anna_before = browser(&app.address);
    assert_eq!(log_in(&anna_before, &app, &anna, -1).await.status(), 303);

    let client = browser(&app.address);
    log_in(&client, &app, &remi, -1).await;
    let (status, list) = page(&client, &app.url("/referent/aidants")).await;
    assert_eq!(status, 200);
    assert!(list.contains("Anna Carte"));
    // A wrong code links nothing.
    let wrong = if card_code(&seed, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/carte",
        &[
            ("aidant", &anna.id.to_string()),
            ("serie", &serial),
            ("code", wrong),
        ],
    )
    .await;
    assert!(flash(&client, &app, resp).await.contains("code incorrect"));
    assert_eq!(
        factor_of(&app, anna.id).await.map(|f| f.0),
        Some("app".into())
    );
    // The displayed code links it; the app factor is revoked.
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/carte",
        &[
            ("aidant", &anna.id.to_string()),
            ("serie", &serial),
            ("code", &card_code(&seed, 0)),
        ],
    )
    .await;
    assert!(
        flash(&client, &app, resp)
            .await
            .contains("La carte est associée")
    );
    assert_eq!(
        factor_of(&app, anna.id).await,
        Some(("card".into(), Some(serial.clone()), false))
    );
    // The app it replaced no longer holds a session.
    assert_eq!(page(&anna_before, &app.url("/compte")).await.0, 303);

    // Anna logs in with the card's next code (60-second steps).
    let anna_client = browser(&app.address);
    let (status, _) = ask_link(&anna_client, &app, &anna.email, &card_code(&seed, 1)).await;
    assert_eq!(status, 200);

    // Unlinking needs a reason and frees the card.
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/retirer-carte",
        &[("aidant", &anna.id.to_string()), ("motif", "carte perdue")],
    )
    .await;
    assert!(
        flash(&client, &app, resp)
            .await
            .contains("La carte est retirée")
    );
    assert_eq!(factor_of(&app, anna.id).await, None);
    let reason: String = sqlx::query_scalar(
        "SELECT revoked_reason FROM platform.second_factors WHERE card_serial = $1",
    )
    .bind(&serial)
    .fetch_one(&app.db.admin)
    .await
    .expect("motif");
    assert_eq!(reason, "carte perdue");
}

#[tokio::test]
async fn a_drifting_card_is_resynchronised_only_with_two_consecutive_codes() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let remi = professional(
        &app.db.admin,
        "Remi Resync",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let bruno = professional(
        &app.db.admin,
        "Bruno Derive",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    // Bruno's app runs 10 steps (5 minutes) ahead: a single code is refused.
    let ahead = |steps: i64| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        foundation::auth::totp::code_at(&bruno.seed, 30, (now + steps * 30) as u64)
    };
    let bruno_client = browser(&app.address);
    assert_eq!(
        ask_link(&bruno_client, &app, &bruno.email, &ahead(10))
            .await
            .0,
        422
    );

    let client = browser(&app.address);
    log_in(&client, &app, &remi, -1).await;
    // Two codes that do not follow each other: refused.
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/resynchroniser",
        &[
            ("aidant", &bruno.id.to_string()),
            ("premier", &ahead(10)),
            ("second", &ahead(12)),
        ],
    )
    .await;
    assert!(
        flash(&client, &app, resp)
            .await
            .contains("ne se suivent pas")
    );
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/resynchroniser",
        &[
            ("aidant", &bruno.id.to_string()),
            ("premier", &ahead(10)),
            ("second", &ahead(11)),
        ],
    )
    .await;
    assert!(flash(&client, &app, resp).await.contains("resynchronisé"));
    let drift: i32 = sqlx::query_scalar("SELECT drift_steps FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL")
        .bind(bruno.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("dérive");
    assert!((10..=12).contains(&drift), "{drift}");
    // Now his drifted codes work.
    sqlx::query("DELETE FROM platform.rate_limits")
        .execute(&app.db.admin)
        .await
        .expect("fenêtre");
    assert_eq!(
        ask_link(&bruno_client, &app, &bruno.email, &ahead(12))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_referent_unblocks_but_only_in_their_own_structure() {
    let app = spawn_app(&["33"]).await;
    let (mine, other) = (
        structure_domain(&app, "33").await,
        structure_domain(&app, "33").await,
    );
    let remi = professional(
        &app.db.admin,
        "Remi Local",
        &[(Role::Referent, mine.domain(), Some("33"))],
    )
    .await;
    let chloe = professional(
        &app.db.admin,
        "Chloe Bloquee",
        &[(Role::Aidant, mine.domain(), Some("33"))],
    )
    .await;
    let dora = professional(
        &app.db.admin,
        "Dora Ailleurs",
        &[(Role::Aidant, other.domain(), Some("33"))],
    )
    .await;
    sqlx::query("UPDATE platform.second_factors SET locked = true, failures = 10 WHERE professional_id = ANY($1)")
        .bind(vec![chloe.id, dora.id])
        .execute(&app.db.admin)
        .await
        .expect("verrou");
    let client = browser(&app.address);
    log_in(&client, &app, &remi, -1).await;
    let (_, list) = page(&client, &app.url("/referent/aidants")).await;
    assert!(list.contains("Chloe Bloquee") && list.contains("(bloqué)"));
    assert!(
        !list.contains("Dora Ailleurs"),
        "aidant d'une autre structure listé"
    );

    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/debloquer",
        &[("aidant", &chloe.id.to_string())],
    )
    .await;
    assert!(flash(&client, &app, resp).await.contains("débloqué"));
    assert_eq!(factor_of(&app, chloe.id).await.map(|f| f.2), Some(false));

    for action in [
        "/referent/aidants/debloquer",
        "/referent/aidants/activation",
    ] {
        let resp = post_form(
            &client,
            &app,
            "/referent/aidants",
            action,
            &[("aidant", &dora.id.to_string())],
        )
        .await;
        assert_eq!(resp.status(), 404, "{action}");
    }
    assert_eq!(factor_of(&app, dora.id).await.map(|f| f.2), Some(true));

    // An aidant is not a référent: the page is refused.
    let aidant_client = browser(&app.address);
    log_in(&aidant_client, &app, &chloe, 0).await;
    assert_eq!(
        page(&aidant_client, &app.url("/referent/aidants")).await.0,
        403
    );
}

#[tokio::test]
async fn role_changes_reach_the_running_guard_at_once() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let gil = professional(
        &app.db.admin,
        "Gil Promu",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    log_in(&client, &app, &gil, -1).await;
    assert_eq!(page(&client, &app.url("/referent/aidants")).await.0, 403);
    let mut tx = app.db.admin.begin().await.expect("tx");
    habilitation_desk::accounts::grant_role(
        &mut tx,
        gil.id,
        Role::Referent,
        s.domain(),
        Some("33"),
    )
    .await
    .expect("rôle");
    tx.commit().await.expect("commit");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if page(&client, &app.url("/referent/aidants")).await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "le rôle accordé n'a pas été pris en compte"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sqlx::query(
        "DELETE FROM platform.role_assignments WHERE professional_id = $1 AND role = 'referent'",
    )
    .bind(gil.id)
    .execute(&app.db.admin)
    .await
    .expect("retrait");
    // Withdrawing a role ends the professional's sessions at once.
    let resp = client.get(&app.url("/referent/aidants")).await;
    assert_eq!(resp.status(), 303, "le rôle retiré est resté actif");
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap_or_default()
            .starts_with("/connexion"),
        "session terminée"
    );
    let reason: Option<String> = sqlx::query_scalar(
        "SELECT end_reason FROM platform.sessions WHERE professional_id = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(gil.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("session");
    assert_eq!(reason.as_deref(), Some("role_withdrawn"));
}

#[tokio::test]
async fn pages_behind_a_session_pass_axe() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let boss = professional(
        &app.db.admin,
        "Ines Tout",
        &[
            (Role::Referent, s.domain(), Some("33")),
            (Role::Aidant, s.domain(), Some("33")),
            (Role::NationalAdmin, Domain::National, None),
        ],
    )
    .await;
    professional(
        &app.db.admin,
        "Yann Aidant",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    log_in(&client, &app, &boss, -1).await;
    let urls: Vec<String> = [
        "/compte",
        "/compte/verification",
        "/compte/second-facteur",
        "/referent/aidants",
        "/referent/aidants?message=carte-associee",
        "/referent/aidants?message=carte-refusee",
        "/national/cartes",
    ]
    .iter()
    .map(|p| app.url(p))
    .collect();
    let results =
        test_support::browser::axe_violations_with_cookies(&urls, &client.cookies()).await;
    assert_eq!(results.len(), urls.len());
    let failures: Vec<_> = results.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(failures.is_empty(), "violations axe : {failures:#?}");
    // The harness really was logged in: the référent page is not the login page.
    let (status, html) = page(&client, &app.url("/referent/aidants")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Yann Aidant"));
}

#[tokio::test]
async fn a_deactivated_structures_referent_manages_no_factor() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rose = professional(
        &app.db.admin,
        "Rose Fermee",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let theo = professional(
        &app.db.admin,
        "Theo Aidant",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    log_in(&client, &app, &rose, -1).await;
    assert_eq!(page(&client, &app.url("/referent/aidants")).await.0, 200);
    let (_, form) = page(&client, &app.url("/referent/aidants")).await;
    sqlx::query("UPDATE dep_33.structures SET active = false WHERE id = $1")
        .bind(s)
        .execute(&app.db.admin)
        .await
        .expect("désactivation");
    assert_eq!(page(&client, &app.url("/referent/aidants")).await.0, 403);
    let resp = client
        .post(
            &app.url("/referent/aidants/debloquer"),
            &[
                ("csrf", csrf_of(&form).as_str()),
                ("aidant", &theo.id.to_string()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
}
