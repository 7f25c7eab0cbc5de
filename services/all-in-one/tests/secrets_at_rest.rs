//! Secrets are stored only hashed or encrypted: after each secret is handed out and used, it is
//! looked for in clear in every column of every table of every schema (platform and dep_*), by
//! `test_support::secrets`. A positive control (a value known to be stored in clear) shows each
//! search can find what is there.

mod common;

use common::identity::*;
use common::idp::*;
use common::spawn_app;
use foundation::auth::session::SESSION_COOKIE;
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::Alg;
use policies::Role;
use serde_json::Value;
use test_support::secrets::{assert_nowhere_in_clear, places_holding};

#[tokio::test]
async fn session_ids_idp_codes_access_tokens_and_client_secrets_are_nowhere_in_clear() {
    let app = spawn_app(&["33", "01"]).await;
    let fx = fixture(&app, &angela("fc-sub-secrets"), &["logement"]).await;
    // Positive control: the aidant's e-mail is stored in clear, and found.
    assert!(
        places_holding(&app.db.admin, &fx.who.email)
            .await
            .contains(&"platform.professionals.email".to_owned())
    );

    let session = fx
        .aidant
        .cookies()
        .into_iter()
        .find(|(k, _)| k == SESSION_COOKIE)
        .map(|(_, v)| v)
        .expect("cookie de session");
    assert_nowhere_in_clear(&app.db.admin, "l'identifiant de session", &session).await;

    let redirect = "http://127.0.0.1:9/callback";
    let secret = register(
        &app,
        "fc-secrets",
        AuthMethod::ClientSecretPost,
        redirect,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret du client");
    assert_nowhere_in_clear(&app.db.admin, "le secret du client", &secret).await;

    let query = serde_urlencoded::to_string([
        ("client_id", "fc-secrets"),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "etat-secrets-0123456789"),
        ("nonce", "nonce-secrets-0123456789"),
    ])
    .expect("query");
    let back = choose(
        &fx,
        &app,
        &app.url(&format!("/oidc/authorize?{query}")),
        fx.usager,
        "logement",
    )
    .await;
    let code = param(&back, "code").expect("code");
    assert_nowhere_in_clear(&app.db.admin, "le code d'autorisation", &code).await;

    let resp = app
        .client
        .post(app.url("/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", "fc-secrets"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("access_token");
    // The token works (so the search looks for a real one), and is nowhere in clear.
    let userinfo = app
        .client
        .get(app.url("/oidc/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), 200);
    assert_nowhere_in_clear(&app.db.admin, "le jeton d'accès", access).await;
    assert_nowhere_in_clear(&app.db.admin, "le code d'autorisation", &code).await;
}

#[tokio::test]
async fn the_login_link_token_is_nowhere_in_clear() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let lina = professional(
        &app.db.admin,
        "Lina Secret",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    let (status, _) = ask_link(&client, &app, &lina.email, &lina.code(-1)).await;
    assert_eq!(status, 200);
    let link = mailed_link(&lina.email).await;
    let token = param(&link, "jeton").expect("jeton");
    assert_nowhere_in_clear(&app.db.admin, "le jeton du lien de connexion", &token).await;
}

#[tokio::test]
async fn the_enrolment_link_token_is_nowhere_in_clear() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Secret",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let noe = professional(
        &app.db.admin,
        "Noe Secret",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &rita, -1).await.status(), 303);
    let resp = post_form(
        &client,
        &app,
        "/referent/aidants",
        "/referent/aidants/activation",
        &[("aidant", &noe.id.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let link = mailed(&noe.email, "/activation", 0).await;
    let token = param(&link, "jeton").expect("jeton");
    assert_nowhere_in_clear(&app.db.admin, "le jeton du lien d'activation", &token).await;
}
