//! Login under attack: limits per real client behind proxies, refused attempts counted rather
//! than journaled, login links bound to the browser that asked, factors that strangers cannot
//! lock, no mailed secret left readable in the database, no way off-site through `suite`.

mod common;

use common::identity::*;
use common::{TestApp, spawn_app, spawn_app_with};
use uuid::Uuid;

fn wrong_code(who: &TestProfessional) -> &'static str {
    if who.code(0) == "000000" || who.code(-1) == "000000" || who.code(1) == "000000" {
        "111111"
    } else {
        "000000"
    }
}

fn random_email() -> String {
    format!(
        "x-{}@example.test",
        &Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Posts the login form with extra headers (as a browser behind a proxy would arrive).
async fn attempt(
    client: &Browser,
    app: &TestApp,
    email: &str,
    code: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (_, form) = page(client, &app.url("/connexion")).await;
    let csrf = csrf_of(&form);
    let resp = client
        .post_with_headers(
            &app.url("/connexion"),
            &[("csrf", &csrf), ("email", email), ("code", code)],
            headers,
        )
        .await;
    (resp.status().as_u16(), resp.text().await.expect("corps"))
}

async fn journaled(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM platform.security_journal WHERE kind = $1")
        .bind(kind)
        .fetch_one(&app.db.admin)
        .await
        .expect("journal")
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    let db = test_support::database::TestDatabase::with_departements(&[]).await;
    let app = spawn_app_with(db, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("réseau")];
    })
    .await;
    let ana = professional(&app.db.admin, "Ana Guichet", &[]).await;
    let client = browser(&app.address);
    // 31 attempts from 31 clients, all through the one proxy address (127.0.0.1).
    for i in 0..31 {
        let forwarded = format!("203.0.113.{}", i + 1);
        let (status, _) = attempt(
            &client,
            &app,
            &random_email(),
            "123456",
            &[("x-forwarded-for", &forwarded)],
        )
        .await;
        assert_eq!(status, 422, "tentative {i} depuis {forwarded}");
    }
    // A real aidant, from yet another client behind the same proxy, logs in.
    let (status, body) = attempt(
        &client,
        &app,
        &ana.email,
        &ana.code(0),
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Consultez votre messagerie"));
    // The same client behind the proxy is still limited, whatever it writes first in the header.
    for _ in 0..30 {
        attempt(
            &client,
            &app,
            &random_email(),
            "123456",
            &[("x-forwarded-for", "192.0.2.66")],
        )
        .await;
    }
    let spoofed = attempt(
        &client,
        &app,
        &random_email(),
        "123456",
        &[("x-forwarded-for", "10.9.9.9, 192.0.2.66")],
    )
    .await;
    assert_eq!(
        spoofed.0, 429,
        "une adresse inventée à gauche ne change rien"
    );
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_the_proxy_is_trusted() {
    let app = spawn_app(&[]).await;
    let client = browser(&app.address);
    for i in 0..30 {
        let forwarded = format!("203.0.113.{}", i + 1);
        let (status, _) = attempt(
            &client,
            &app,
            &random_email(),
            "123456",
            &[
                ("x-forwarded-for", &forwarded),
                ("forwarded", &format!("for={forwarded}")),
            ],
        )
        .await;
        assert_eq!(status, 422);
    }
    let (status, body) = attempt(
        &client,
        &app,
        &random_email(),
        "123456",
        &[("x-forwarded-for", "198.51.100.99")],
    )
    .await;
    assert_eq!(status, 429, "en-têtes d'un pair non déclaré : ignorés");
    assert!(body.contains("Trop de tentatives"));
}

#[tokio::test]
async fn refused_attempts_are_counted_not_journaled_one_by_one() {
    let app = spawn_app(&[]).await;
    let client = browser(&app.address);
    for _ in 0..45 {
        attempt(&client, &app, &random_email(), "123456", &[]).await;
    }
    let hits: i32 = sqlx::query_scalar(
        "SELECT hits FROM platform.rate_limits WHERE key LIKE 'login-address:%'",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("compteur");
    assert_eq!(hits, 45, "chaque tentative est comptée");
    assert_eq!(
        journaled(&app, "rate_limited").await,
        1,
        "15 refus, une seule entrée au journal"
    );
}

#[tokio::test]
async fn a_login_link_opens_a_session_only_in_the_browser_that_asked() {
    let app = spawn_app(&[]).await;
    let bea = professional(&app.db.admin, "Bea Lien", &[]).await;
    let asking = browser(&app.address);
    let (status, _) = ask_link(&asking, &app, &bea.email, &bea.code(0)).await;
    assert_eq!(status, 200);
    let link = mailed_link(&bea.email).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();

    // Another browser (the link forwarded, or opened on another device).
    let other = browser(&app.address);
    let (_, confirm) = page(&other, &link).await;
    let resp = other
        .post(
            &app.url("/connexion/lien"),
            &[("csrf", &csrf_of(&confirm)), ("jeton", &token)],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.expect("corps");
    assert!(
        body.contains("navigateur où vous avez demandé la connexion"),
        "{body}"
    );
    assert_eq!(
        page(&other, &app.url("/compte")).await.0,
        303,
        "pas de session"
    );
    let unconsumed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.email_links WHERE professional_id = $1 AND consumed_at IS NULL",
    )
    .bind(bea.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("liens");
    assert_eq!(
        unconsumed, 1,
        "le lien reste utilisable là où il a été demandé"
    );

    // The browser that asked.
    let (_, confirm) = page(&asking, &link).await;
    let resp = asking
        .post(
            &app.url("/connexion/lien"),
            &[("csrf", &csrf_of(&confirm)), ("jeton", &token)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(page(&asking, &app.url("/compte")).await.0, 200);
}

#[tokio::test]
async fn a_stranger_who_knows_the_email_cannot_lock_the_factor() {
    let app = spawn_app(&[]).await;
    let cle = professional(&app.db.admin, "Cle Cible", &[]).await;
    let own = browser(&app.address);
    assert_eq!(log_in(&own, &app, &cle, -1).await.status(), 303);

    let attacker = browser(&app.address);
    let wrong = wrong_code(&cle);
    for _ in 0..12 {
        delays_pass(&app, &cle).await;
        assert_eq!(ask_link(&attacker, &app, &cle.email, wrong).await.0, 422);
    }
    let (locked, failures): (bool, i32) = sqlx::query_as(
        "SELECT locked, failures FROM platform.second_factors
         WHERE professional_id = $1 AND revoked_at IS NULL",
    )
    .bind(cle.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("facteur");
    assert!(!locked, "12 erreurs d'un inconnu ne verrouillent pas");
    assert_eq!(
        failures, 0,
        "le facteur ne compte pas les erreurs d'un inconnu"
    );
    let delayed: i32 = sqlx::query_scalar("SELECT failures FROM platform.login_delays")
        .fetch_one(&app.db.admin)
        .await
        .expect("délais");
    assert_eq!(
        delayed, 12,
        "comptées par adresse, pour les navigateurs inconnus"
    );
    // Without the lift, the stranger now waits: delays keep growing for unknown browsers.
    let (status, _) = ask_link(&attacker, &app, &cle.email, &cle.code(0)).await;
    assert_eq!(status, 422, "même le bon code attend la fin du délai");
    // The aidant, in their own browser, is neither locked nor delayed.
    let (status, body) = ask_link(&own, &app, &cle.email, &cle.code(1)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn wrong_codes_in_a_known_browser_or_a_session_still_lock() {
    let app = spawn_app(&[]).await;
    let dom = professional(&app.db.admin, "Dom Connu", &[]).await;
    let own = browser(&app.address);
    assert_eq!(log_in(&own, &app, &dom, -1).await.status(), 303);
    let wrong = wrong_code(&dom);
    // Within the session: the activity re-check.
    sqlx::query("UPDATE platform.sessions SET recheck_required = true WHERE professional_id = $1")
        .bind(dom.id)
        .execute(&app.db.admin)
        .await
        .expect("re-vérification");
    for _ in 0..5 {
        delays_pass(&app, &dom).await;
        let resp = post_form(
            &own,
            &app,
            "/compte/verification",
            "/compte/verification",
            &[("code", wrong), ("suite", "/compte")],
        )
        .await;
        assert_eq!(resp.status(), 422);
    }
    // Then at the login form of the same (known) browser.
    for _ in 5..10 {
        delays_pass(&app, &dom).await;
        assert_eq!(ask_link(&own, &app, &dom.email, wrong).await.0, 422);
    }
    let locked: bool = sqlx::query_scalar(
        "SELECT locked FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL",
    )
    .bind(dom.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("facteur");
    assert!(locked, "10 erreurs dans un navigateur connu verrouillent");
}

#[tokio::test]
async fn no_table_keeps_a_mailed_login_or_enrolment_token() {
    let app = spawn_app(&["33"]).await;
    let eli = professional(&app.db.admin, "Eli Jeton", &[]).await;
    let client = browser(&app.address);
    assert_eq!(
        ask_link(&client, &app, &eli.email, &eli.code(0)).await.0,
        200
    );
    let link = mailed_link(&eli.email).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    assert!(token.len() >= 40, "{token}");

    let mut tx = app.db.admin.begin().await.expect("tx");
    let email = format!(
        "nouvelle-{}@example.test",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let id = habilitation_desk::accounts::create_professional(&mut tx, &email, "Nour Nouvelle")
        .await
        .expect("compte");
    habilitation_desk::accounts::send_enrolment_link(&mut tx, &cipher(), id, &app.address)
        .await
        .expect("lien");
    tx.commit().await.expect("commit");
    let enrolment = mailed(&email, "/activation?jeton=", 0).await;
    let enrolment_token = enrolment.split("jeton=").nth(1).expect("jeton").to_owned();

    test_support::secrets::assert_nowhere_in_clear(&app.db.admin, "lien de connexion", &token)
        .await;
    test_support::secrets::assert_nowhere_in_clear(
        &app.db.admin,
        "lien d'activation",
        &enrolment_token,
    )
    .await;
    // Once sent, even the sealed value is gone.
    let sealed_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.outbox WHERE sent_at IS NOT NULL AND sealed_payload IS NOT NULL",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("outbox");
    assert_eq!(sealed_left, 0);
}

#[tokio::test]
async fn a_new_enrolment_link_kills_the_previous_one() {
    let app = spawn_app(&[]).await;
    let email = format!(
        "reenvoi-{}@example.test",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let mut tx = app.db.admin.begin().await.expect("tx");
    let id = habilitation_desk::accounts::create_professional(&mut tx, &email, "Rita Renvoi")
        .await
        .expect("compte");
    habilitation_desk::accounts::send_enrolment_link(&mut tx, &cipher(), id, &app.address)
        .await
        .expect("lien");
    tx.commit().await.expect("commit");
    let first = mailed(&email, "/activation?jeton=", 0).await;
    let mut tx = app.db.admin.begin().await.expect("tx");
    habilitation_desk::accounts::send_enrolment_link(&mut tx, &cipher(), id, &app.address)
        .await
        .expect("lien");
    tx.commit().await.expect("commit");
    let second = mailed(&email, "/activation?jeton=", 1).await;
    assert_ne!(first, second);
    // The link's button (POST) starts the enrolment: only the newest link does.
    let start = |link: String| {
        let app = &app;
        async move {
            let client = browser(&app.address);
            let (_, html) = page(&client, &link).await;
            let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
            client
                .post(
                    &app.url("/activation"),
                    &[("csrf", csrf_of(&html).as_str()), ("jeton", token.as_str())],
                )
                .await
                .status()
                .as_u16()
        }
    };
    assert_ne!(start(first).await, 200, "l'ancien lien ne sert plus");
    assert_eq!(start(second).await, 200);
}

fn hidden_suite(html: &str) -> String {
    let marker = r#"name="suite" value=""#;
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("champ suite");
    html[start..].split('"').next().expect("valeur").to_owned()
}

#[tokio::test]
async fn no_suite_leads_off_site_after_login() {
    let app = spawn_app(&[]).await;
    let fay = professional(&app.db.admin, "Fay Suite", &[]).await;
    let hostile = [
        "/%09/evil.example",
        "/\t/evil.example",
        "/\\evil.example",
        "//evil.example",
        "/%5cevil.example",
        "https://evil.example/compte",
        "/%2F%2Fevil.example",
    ];
    let client = browser(&app.address);
    // Every page that carries `suite` on: the login form, the link's page, the re-check.
    for bad in hostile {
        let encoded: String = url_encode(bad);
        for path in [
            format!("/connexion?suite={encoded}"),
            format!("/connexion/lien?jeton=x&suite={encoded}"),
        ] {
            let (status, html) = page(&client, &app.url(&path)).await;
            assert_eq!(status, 200);
            assert_eq!(hidden_suite(&html), "/compte", "{bad:?} dans {path}");
        }
    }
    // A whole login whose link's form was tampered with.
    assert_eq!(
        ask_link(&client, &app, &fay.email, &fay.code(0)).await.0,
        200
    );
    let link = mailed_link(&fay.email).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let (_, confirm) = page(&client, &link).await;
    let resp = client
        .post(
            &app.url("/connexion/lien"),
            &[
                ("csrf", csrf_of(&confirm).as_str()),
                ("jeton", &token),
                ("suite", "/\t/evil.example"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/compte");
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
