//! The identity provider, driven by real third-party OpenID clients: openid-client (npm, through
//! `infra/idp-client/rp.mjs`) playing FranceConnect, and the Rust `openidconnect` crate.
//! FranceConnect's scenarios (no rep_scope, one, two, no overlap), code reuse, expired code, a
//! code redeemed by another client, wrong redirect URI, wrong secret, revocation of the mandate
//! in flight, key rotation during a run, end session, the journal and the usager's receipt, and
//! the aidant's journey in Chromium.

mod common;

use common::identity::*;
use common::idp::*;
use common::{TestApp, spawn_app};
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::{self, Alg};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, RedirectUrl, Scope, TokenResponse,
};
use policies::Role;
use serde_json::{Value, json};

const SECRET_CLIENT: &str = "franceconnect-integration";

async fn journal_uses(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_used'")
        .fetch_one(&app.db.admin)
        .await
        .expect("journal")
}

async fn receipts(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.outbox WHERE template = 'mandate_used' AND recipient = $1",
    )
    .bind(email)
    .fetch_one(&app.db.admin)
    .await
    .expect("outbox")
}

/// An RP configured as the `client_secret_post` client of the app.
async fn franceconnect_rp(app: &TestApp) -> Rp {
    let rp = Rp::spawn().await;
    let logout = format!("{}/logged-out", rp.origin);
    let secret = register(
        app,
        SECRET_CLIENT,
        AuthMethod::ClientSecretPost,
        &rp.callback(),
        &[&logout],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");
    rp.configure(json!({
        "issuer": app.address,
        "client_id": SECRET_CLIENT,
        "client_secret": secret,
        "auth_method": "client_secret_post",
        "alg": "ES256",
    }))
    .await;
    rp
}

#[tokio::test]
async fn franceconnect_scenarios_pass_with_openid_client() {
    let app = spawn_app(&["33"]).await;
    let angela = angela("fc-sub-angela");
    let fx = fixture(&app, &angela, &["famille", "logement"]).await;
    let rp = franceconnect_rp(&app).await;

    // 1. No rep_scope: every démarche of the mandate is offered; the aidant picks Logement.
    let (url, state) = rp.start(None).await;
    let back = choose(&fx, &app, &url, fx.usager, "logement").await;
    assert!(back.contains("code=33."), "{back}");
    let first = rp.land(&back).await;
    assert_eq!(first["error"], Value::Null, "{first}");
    let claims = &first["claims"];
    assert_eq!(claims["iss"], app.address);
    assert_eq!(claims["aud"], SECRET_CLIENT);
    assert_eq!(claims["acr"], "eidas1");
    assert_eq!(claims["amr"], json!(["mail", "otp"]));
    assert_eq!(claims["rep_scope"], json!(["Logement"]));
    assert!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat") <= 60);
    let sub = claims["sub"].as_str().expect("sub");
    assert_eq!(sub.len(), 64, "pseudonyme opaque");
    assert!(!sub.contains("fc-sub-angela"));
    let userinfo = &first["userinfo"];
    assert_eq!(userinfo["sub"], sub);
    assert_eq!(userinfo["given_name"], "Angela Claire Louise");
    assert_eq!(userinfo["family_name"], "DUBOIS");
    assert_eq!(userinfo["birthdate"], "1962-08-24");
    assert_eq!(userinfo["gender"], "female");
    assert_eq!(userinfo["birthplace"], "75107");
    assert_eq!(userinfo["birthcountry"], "99100");
    assert_eq!(userinfo["email"], "fc-sub-angela@usagers.test");

    // Code reuse: invalid_grant, and the access token of the first redemption dies.
    let replay = rp.post_json(&format!("/replay?state={state}")).await;
    assert_eq!(replay["error"], "invalid_grant", "{replay}");
    let again = rp.post_json(&format!("/userinfo?state={state}")).await;
    assert!(again["userinfo"].is_null(), "jeton révoqué : {again}");
    assert_eq!(again["status"], 401, "{again}");

    // 2. One rep_scope, in FranceConnect's label.
    let (url, _) = rp.start(Some("Famille-Scolarité")).await;
    let second = rp
        .land(&choose(&fx, &app, &url, fx.usager, "famille").await)
        .await;
    assert_eq!(
        second["claims"]["rep_scope"],
        json!(["Famille-Scolarité"]),
        "{second}"
    );
    assert_eq!(second["claims"]["sub"], sub, "même personne, même sub");

    // 3. Two, one label and one of our codes; a démarche outside the request is refused.
    let (url, _) = rp.start(Some("Logement,famille")).await;
    let (_, html) = page(&fx.aidant, &format!("{url}&ac_usager={}", fx.usager)).await;
    assert!(html.contains("categorie-logement") && html.contains("categorie-famille"));
    let third = rp
        .land(&choose(&fx, &app, &url, fx.usager, "logement").await)
        .await;
    assert_eq!(third["claims"]["rep_scope"], json!(["Logement"]), "{third}");

    // 4. No overlap: the mandate does not cover Justice — nobody to choose; the aidant gives
    // up and the service gets access_denied.
    let (url, _) = rp.start(Some("Justice")).await;
    let (status, html) = page(&fx.aidant, &url).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Aucune personne n'a de mandat en cours"),
        "{html}"
    );
    let mut fields: Vec<(String, String)> =
        serde_urlencoded::from_str(url.split_once('?').expect("query").1).expect("query");
    fields.push(("csrf".into(), csrf_of(&html)));
    fields.push(("ac_action".into(), "annuler".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = fx.aidant.post(&app.url("/oidc/choix"), &form).await;
    let denied = rp.land(&location(&resp)).await;
    assert_eq!(denied["error"], "access_denied", "{denied}");
    // …and values that are no démarche at all are refused at once.
    let (url, _) = rp.start(Some("Inconnue")).await;
    let resp = fx.aidant.get(&url).await;
    assert_eq!(resp.status(), 303);
    let denied = rp.land(&location(&resp)).await;
    assert_eq!(denied["error"], "access_denied", "{denied}");

    // Each completed use is journaled once and receipted once to the usager.
    assert_eq!(journal_uses(&app).await, 3);
    assert_eq!(receipts(&app, "fc-sub-angela@usagers.test").await, 3);
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT details FROM dep_33.journal WHERE kind = 'mandate_used' ORDER BY id",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    let first_use: Value = serde_json::from_str(&details[0]).expect("json");
    assert_eq!(first_use["category"], "logement");
    assert_eq!(first_use["client"], SECRET_CLIENT);

    // End session: the post-logout URI is checked, the aidant's session ends, state echoed.
    let (url, state) = rp.start(None).await;
    rp.land(&choose(&fx, &app, &url, fx.usager, "famille").await)
        .await;
    let logout = rp.get_json(&format!("/logout?state={state}")).await;
    let logout_url = logout["url"].as_str().expect("url");
    assert!(logout_url.starts_with(&app.url("/oidc/session/end")));
    let tampered = logout_url.replace("logged-out", "ailleurs");
    let resp = fx.aidant.get(&tampered).await;
    assert_eq!(
        resp.status(),
        400,
        "URI non enregistrée : jamais de redirection"
    );
    assert!(resp.headers().get("location").is_none());
    let resp = fx.aidant.get(logout_url).await;
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert_eq!(param(&to, "state").as_deref(), Some(state.as_str()), "{to}");
    assert!(to.starts_with(&format!("{}/logged-out", rp.origin)));
    let resp = fx.aidant.get(&app.url("/mandats")).await;
    assert_eq!(resp.status(), 303, "session de l'aidant terminée");
    assert!(location(&resp).starts_with("/connexion"));
}

#[tokio::test]
async fn private_key_jwt_and_rs256_clients_work_with_openid_client() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-pkjwt"), &["social"]).await;
    let rp = Rp::spawn().await;
    let jwks = rp.jwks().await;
    // The RS256 key is created with the first client that asks for it, as tenant-admin does.
    let pool = app.db.admin.clone();
    let cipher = foundation::auth::secrets::SeedCipher::new(
        &foundation::config::Settings::default()
            .security
            .idp_key_encryption_key,
        1,
    )
    .expect("cipher");
    assert!(
        keys::ensure(&pool, &cipher, Alg::Rs256)
            .await
            .expect("clé RS256")
    );
    assert_eq!(
        register(
            &app,
            "service-cle-privee",
            AuthMethod::PrivateKeyJwt,
            &rp.callback(),
            &[],
            Alg::Rs256,
            Some(jwks),
        )
        .await,
        None,
        "pas de secret pour private_key_jwt"
    );
    rp.configure(json!({
        "issuer": app.address,
        "client_id": "service-cle-privee",
        "auth_method": "private_key_jwt",
        "alg": "RS256",
    }))
    .await;
    let (url, _) = rp.start(Some("Social-Santé")).await;
    let result = rp
        .land(&choose(&fx, &app, &url, fx.usager, "social").await)
        .await;
    assert_eq!(result["error"], Value::Null, "{result}");
    assert_eq!(result["claims"]["rep_scope"], json!(["Social-Santé"]));
    let header = result["id_token"]
        .as_str()
        .and_then(|t| mandate_service::jws::header(t).ok())
        .expect("en-tête");
    assert_eq!(header.alg, "RS256");
    assert_eq!(result["userinfo"]["family_name"], "DUBOIS");
}

async fn send(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let request: reqwest::Request = request.try_into()?;
    let response = client.execute(request).await?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await?.to_vec();
    Ok(builder.body(body).expect("réponse"))
}

#[tokio::test]
async fn the_rust_openidconnect_client_and_every_refusal() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-rust"), &["logement", "travail"]).await;
    let redirect = "http://127.0.0.1:9/api/v2/oidc-callback";
    // openidconnect 4.1 verifies signed userinfo answers with RS256 only (its UserInfoVerifier
    // offers no other algorithm): this client asks for RS256, which the platform offers per
    // client; the ES256 default is exercised by openid-client above.
    let cipher = foundation::auth::secrets::SeedCipher::new(
        &foundation::config::Settings::default()
            .security
            .idp_key_encryption_key,
        1,
    )
    .expect("cipher");
    keys::ensure(&app.db.admin, &cipher, Alg::Rs256)
        .await
        .expect("clé RS256");
    // A key created by another process is in the JWK set within the reload period; this client
    // reads the set once, at discovery, and never again (openid-client refetches on an unknown
    // kid).
    tokio::time::sleep(keys::RELOAD_EVERY).await;
    let secret = register(
        &app,
        "fc-rust-basic",
        AuthMethod::ClientSecretBasic,
        redirect,
        &[],
        Alg::Rs256,
        None,
    )
    .await
    .expect("secret");
    let other_secret = register(
        &app,
        "autre-service",
        AuthMethod::ClientSecretPost,
        redirect,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.address.clone()).expect("issuer"),
        &send,
    )
    .await
    .expect("découverte");
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new("fc-rust-basic".into()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).expect("redirect"))
    .set_auth_type(AuthType::BasicAuth);
    let other = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new("autre-service".into()),
        Some(ClientSecret::new(other_secret)),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).expect("redirect"))
    .set_auth_type(AuthType::RequestBody);
    let authorize = |claims: Option<&str>| {
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("birth".into()))
            .add_extra_param("acr_values", "eidas1")
            .add_extra_param("prompt", "login");
        if let Some(c) = claims {
            req = req.add_extra_param("claims", c.to_owned());
        }
        let (url, state, nonce) = req.url();
        (url.to_string(), state, nonce)
    };
    let code_of = |location: &str| {
        assert!(location.starts_with(redirect), "{location}");
        AuthorizationCode::new(param(location, "code").expect("code"))
    };

    // A complete flow, verified by openidconnect: ES256 signature from the JWKS, iss, aud,
    // nonce, expiry; userinfo as a signed JWT.
    let (url, state, nonce) = authorize(None);
    let back = choose(&fx, &app, &url, fx.usager, "travail").await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss").as_deref(), Some(app.address.as_str()));
    let token = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await
        .expect("échange du code");
    assert!(
        token.refresh_token().is_none(),
        "pas de jeton de rafraîchissement"
    );
    let expires = token.expires_in().expect("expires_in");
    assert!(expires.as_secs() <= 60);
    let id_token = token.id_token().expect("id_token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("id_token valide");
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("eidas1")
    );
    let userinfo: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .expect("userinfo endpoint")
        .require_signed_response(true)
        .request_async(&send)
        .await
        .expect("userinfo signé");
    assert_eq!(
        userinfo
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("DUBOIS")
    );
    // The same usager has another sub for another client (pairwise).
    let sub_here = claims.subject().as_str().to_owned();

    // The same code again: invalid_grant; the first access token is revoked.
    let replay = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await;
    assert!(
        format!("{replay:?}").contains("invalid_grant"),
        "{replay:?}"
    );
    let after = client
        .user_info(token.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async::<openidconnect::EmptyAdditionalClaims, _, openidconnect::core::CoreGenderClaim>(&send)
        .await;
    assert!(after.is_err(), "jeton révoqué après rejeu");

    // A code redeemed by another client: invalid_grant, and the code is dead for its owner.
    let (url, _, _) = authorize(None);
    let back = choose(&fx, &app, &url, fx.usager, "logement").await;
    let stolen = other
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await;
    assert!(
        format!("{stolen:?}").contains("invalid_grant"),
        "{stolen:?}"
    );
    let owner = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await;
    assert!(owner.is_err(), "code révoqué après la tentative");

    // Wrong redirect URI at the token endpoint.
    let (url, _, _) = authorize(None);
    let back = choose(&fx, &app, &url, fx.usager, "logement").await;
    let wrong = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .set_redirect_uri(std::borrow::Cow::Owned(
            RedirectUrl::new("http://127.0.0.1:9/autre".into()).expect("url"),
        ))
        .request_async(&send)
        .await;
    assert!(format!("{wrong:?}").contains("invalid_grant"), "{wrong:?}");

    // Wrong secret: invalid_client (401), the code untouched.
    let (url, _, nonce) = authorize(None);
    let back = choose(&fx, &app, &url, fx.usager, "logement").await;
    let impostor = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new("fc-rust-basic".into()),
        Some(ClientSecret::new("pas-le-bon-secret".into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).expect("redirect"))
    .set_auth_type(AuthType::BasicAuth);
    let refused = impostor
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await;
    assert!(
        format!("{refused:?}").contains("invalid_client"),
        "{refused:?}"
    );
    let ok = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await
        .expect("le bon client échange encore le code");
    ok.id_token()
        .expect("id_token")
        .claims(&client.id_token_verifier(), &nonce)
        .expect("valide");

    // An expired code is refused: see
    // code_and_token_lifetimes_are_those_issued_and_userinfo_stops_after_61_seconds (a real wait).

    // Mandate revoked between the code and the token, then between the token and userinfo.
    let (url, _, _) = authorize(None);
    let back = choose(&fx, &app, &url, fx.usager, "logement").await;
    let (url2, _, _) = authorize(None);
    let back2 = choose(&fx, &app, &url2, fx.usager, "travail").await;
    let token2 = client
        .exchange_code(code_of(&back2))
        .expect("token endpoint")
        .request_async(&send)
        .await
        .expect("échange");
    sqlx::query("UPDATE dep_33.authorisations SET revoked_at = now() WHERE mandate_id = $1")
        .bind(fx.mandate)
        .execute(&app.db.admin)
        .await
        .expect("révocation");
    let revoked = client
        .exchange_code(code_of(&back))
        .expect("token endpoint")
        .request_async(&send)
        .await;
    assert!(
        format!("{revoked:?}").contains("invalid_grant"),
        "{revoked:?}"
    );
    let after = client
        .user_info(token2.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async::<openidconnect::EmptyAdditionalClaims, _, openidconnect::core::CoreGenderClaim>(&send)
        .await;
    assert!(after.is_err(), "plus d'identité après la révocation");
    // Nobody is offered any more.
    let (url, _, _) = authorize(None);
    let (_, html) = page(&fx.aidant, &url).await;
    assert!(!html.contains(&format!("ac_usager={}", fx.usager)));
    assert!(!sub_here.is_empty());
}

#[tokio::test]
async fn bad_authorization_requests_never_redirect_to_unregistered_places() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-bad"), &["logement"]).await;
    let redirect = "https://fc.example/api/v2/oidc-callback";
    register(
        &app,
        "fc-strict",
        AuthMethod::ClientSecretPost,
        redirect,
        &[],
        Alg::Es256,
        None,
    )
    .await;
    let base = |extra: &str| {
        format!(
            "{}?response_type=code&client_id=fc-strict&redirect_uri={}&scope=openid%20profile&state=etat-123456&nonce=nonce-123456&acr_values=eidas1{extra}",
            app.url("/oidc/authorize"),
            "https%3A%2F%2Ffc.example%2Fapi%2Fv2%2Foidc-callback"
        )
    };
    // Unknown client, unregistered redirect URI: a French page, no Location.
    for url in [
        base("").replace("client_id=fc-strict", "client_id=inconnu-123"),
        base("").replace("oidc-callback", "attaquant"),
    ] {
        let resp = fx.aidant.get(&url).await;
        assert_eq!(resp.status(), 400, "{url}");
        assert!(resp.headers().get("location").is_none());
        assert!(
            resp.text()
                .await
                .expect("page")
                .contains("Demande de connexion refusée")
        );
    }
    // Other errors: back to the client with the error and the state.
    for (url, error) in [
        (
            base("").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            base("").replace("&nonce=nonce-123456", ""),
            "invalid_request",
        ),
        (base("&claims=pas-du-json"), "invalid_request"),
        (base("&prompt=none"), "interaction_required"),
        (
            base("").replace("scope=openid%20profile", "scope=profile"),
            "invalid_scope",
        ),
    ] {
        let resp = fx.aidant.get(&url).await;
        assert_eq!(resp.status(), 303, "{url}");
        let to = location(&resp);
        assert!(to.starts_with(redirect), "{to}");
        assert_eq!(param(&to, "error").as_deref(), Some(error), "{url}");
        assert_eq!(param(&to, "state").as_deref(), Some("etat-123456"));
    }
    // No session: log in first, then back to the same request.
    let stranger = browser(&app.address);
    let resp = stranger.get(&base("")).await;
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert!(
        to.starts_with("/connexion?suite=%2Foidc%2Fauthorize%3F")
            || to.starts_with("/connexion?suite=/oidc/authorize%3F"),
        "{to}"
    );
    // Token endpoint errors are JSON, never a page.
    let resp = app
        .client
        .post(app.url("/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "33.x"),
            ("client_id", "fc-strict"),
            ("client_secret", "faux"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let resp = app
        .client
        .get(app.url("/oidc/userinfo"))
        .header("authorization", "Bearer 33.inconnu")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("en-tête")
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn key_rotation_during_a_run_fails_no_flow() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-rotation"), &["logement"]).await;
    let rp = franceconnect_rp(&app).await;
    let before: Value = app.get("/oidc/jwks").await.json().await.expect("jwks");
    let old_kid = before["keys"][0]["kid"].as_str().expect("kid").to_owned();
    let cipher = foundation::auth::secrets::SeedCipher::new(
        &foundation::config::Settings::default()
            .security
            .idp_key_encryption_key,
        1,
    )
    .expect("cipher");
    // The worst case: the shortest publication delay allowed (no shorter one is accepted); the
    // old key stays published.
    assert!(
        keys::rotate(
            &app.db.admin,
            &cipher,
            Alg::Es256,
            keys::MIN_PUBLISH_DELAY - time::Duration::seconds(1),
            time::Duration::hours(1),
        )
        .await
        .is_err()
    );
    let new_kid = keys::rotate(
        &app.db.admin,
        &cipher,
        Alg::Es256,
        keys::MIN_PUBLISH_DELAY,
        time::Duration::hours(1),
    )
    .await
    .expect("rotation");
    let mut kids = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(keys::MIN_PUBLISH_DELAY.whole_seconds() as u64 + 20);
    let mut flows = 0;
    while !kids.contains(&new_kid) {
        assert!(
            std::time::Instant::now() < deadline,
            "nouvelle clé jamais utilisée"
        );
        let (url, _) = rp.start(Some("Logement")).await;
        let result = rp
            .land(&choose(&fx, &app, &url, fx.usager, "logement").await)
            .await;
        assert_eq!(result["error"], Value::Null, "flux {flows} : {result}");
        let kid = result["id_token"]
            .as_str()
            .and_then(|t| mandate_service::jws::header(t).ok())
            .and_then(|h| h.kid)
            .expect("kid");
        kids.insert(kid);
        flows += 1;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let after: Value = app.get("/oidc/jwks").await.json().await.expect("jwks");
    let published: Vec<&str> = after["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        published.contains(&old_kid.as_str()),
        "ancienne clé encore publiée"
    );
    assert!(published.contains(&new_kid.as_str()));
    assert_eq!(journal_uses(&app).await, flows);
}

#[tokio::test]
async fn the_aidant_uses_a_mandate_in_chromium_with_the_keyboard_and_passes_axe() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-browser"), &["logement", "famille"]).await;
    let rp = franceconnect_rp(&app).await;
    let result = test_support::browser::run(
        "idp.mjs",
        &json!({
            "base": app.address,
            "rp": rp.origin,
            "rep_scope": "Logement,Famille-Scolarité",
            "email": fx.who.email,
            "code": fx.who.code(0),
            "maildev": test_support::stack_var("AC_MAILDEV_URL"),
            "usager_name": "DUBOIS Angela Claire Louise",
            "category": "famille",
        }),
    )
    .await;
    let steps = result["steps"].to_string();
    assert_eq!(
        result["identity"]["given_name"], "Angela Claire Louise",
        "étapes : {steps}"
    );
    assert_eq!(
        result["identity"]["rep_scope"], "Famille-Scolarité",
        "{steps}"
    );
    let pages = result["pages"].as_array().expect("pages");
    assert!(pages.len() >= 5, "{steps}");
    for p in pages {
        assert_eq!(p["violations"], json!([]), "{}", p["url"]);
    }
    assert_eq!(journal_uses(&app).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Security hardening (issue 13): redirect URIs, end session, JWKS, lifetimes, PKCE.

/// A redirect URI on the loopback interface that nothing listens on: the tests read the
/// Location headers and never follow them.
const CALLBACK: &str = "http://127.0.0.1:9/api/v2/oidc-callback";

fn authorize_url(app: &TestApp, client_id: &str, redirect: &str, extra: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("scope", "openid profile"),
        ("state", "etat-123456"),
        ("nonce", "nonce-123456"),
        ("acr_values", "eidas1"),
    ])
    .expect("query");
    format!("{}?{query}{extra}", app.url("/oidc/authorize"))
}

/// `POST /oidc/token` as a `client_secret_post` client: (status, JSON body).
async fn redeem(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    code: &str,
    verifier: Option<&str>,
) -> (u16, Value) {
    redeem_keyed(app, client_id, secret, code, verifier, None).await
}

/// [`redeem`], with an `Idempotency-Key` header when given.
async fn redeem_keyed(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    code: &str,
    verifier: Option<&str>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let mut request = app.client.post(app.url("/oidc/token")).form(&form);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let resp = request.send().await.expect("token");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    app.client
        .get(app.url("/oidc/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

async fn secret_client(app: &TestApp, client_id: &str) -> String {
    register(
        app,
        client_id,
        AuthMethod::ClientSecretPost,
        CALLBACK,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret")
}

#[tokio::test]
async fn registered_redirect_uris_with_userinfo_fragment_or_plain_http_are_never_used() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-uris"), &["logement"]).await;
    secret_client(&app, "fc-uris-anciennes").await;
    // Rows written before the check existed (or by hand): the authorization endpoint parses
    // the registered URI again and never sends the browser there.
    for bad in [
        "http://127.0.0.1:9@evil.example/cb",
        "https://fc.example@evil.example/cb",
        "https://user:pass@fc.example/cb",
        "http://evil.example/cb",
        "https://fc.example/cb#fragment",
        "ftp://fc.example/cb",
    ] {
        sqlx::query(
            "UPDATE platform.oidc_clients SET redirect_uris = ARRAY[$1] WHERE client_id = 'fc-uris-anciennes'",
        )
        .bind(bad)
        .execute(&app.db.admin)
        .await
        .expect("uri");
        // The registry keeps what it read for a few seconds.
        tokio::time::sleep(mandate_service::idp::clients::CACHE_FOR).await;
        for extra in ["&prompt=none", ""] {
            let url = authorize_url(&app, "fc-uris-anciennes", bad, extra);
            let resp = fx.aidant.get(&url).await;
            assert!(
                resp.headers().get("location").is_none(),
                "{bad} {extra} : {:?}",
                resp.headers().get("location")
            );
            assert_eq!(resp.status(), 400, "{bad} {extra}");
        }
    }
}

/// Whether the browser's session is alive (the mandate list answers instead of the login).
async fn alive(app: &TestApp, b: &Browser) -> bool {
    b.get(&app.url("/mandats")).await.status() == 200
}

#[tokio::test]
async fn end_session_ends_only_the_callers_own_session() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-logout"), &["logement"]).await;
    let rp = franceconnect_rp(&app).await;
    let (url, state) = rp.start(None).await;
    let result = rp
        .land(&choose(&fx, &app, &url, fx.usager, "logement").await)
        .await;
    assert_eq!(result["error"], Value::Null, "{result}");
    let logout = rp.get_json(&format!("/logout?state={state}")).await;
    let logout_url = logout["url"].as_str().expect("url").to_owned();
    assert!(alive(&app, &fx.aidant).await);

    // A forged hint (payload changed, signature kept) is refused and ends nothing.
    let hint = param(&logout_url, "id_token_hint").expect("hint");
    let mut parts: Vec<String> = hint.split('.').map(str::to_owned).collect();
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value =
            serde_json::from_slice(&b64.decode(&parts[1]).expect("b64")).expect("json");
        claims["aud"] = json!("un-autre-service");
        parts[1] = b64.encode(claims.to_string());
    }
    let forged = logout_url.replace(&hint, &parts.join("."));
    let stranger = browser(&app.address);
    let resp = stranger.get(&forged).await;
    assert_eq!(resp.status(), 400);
    assert!(
        alive(&app, &fx.aidant).await,
        "indice falsifié : rien de terminé"
    );

    // A browser without a session, then another aidant's browser, present the aidant's real
    // hint: neither ends the aidant's session (nor the other aidant's).
    let resp = stranger.get(&logout_url).await;
    assert!(resp.status() == 303 || resp.status() == 200);
    assert!(
        alive(&app, &fx.aidant).await,
        "l'indice d'un autre ne termine pas la session de l'aidant"
    );
    let bob = professional(
        &app.db.admin,
        "Bob Aidant",
        &[(Role::Aidant, fx.structure.domain(), Some("33"))],
    )
    .await;
    let bob_browser = browser(&app.address);
    assert_eq!(log_in(&bob_browser, &app, &bob, -1).await.status(), 303);
    let resp = bob_browser.get(&logout_url).await;
    assert!(resp.status() == 303 || resp.status() == 200);
    assert!(alive(&app, &fx.aidant).await, "session d'Alice intacte");
    assert!(alive(&app, &bob_browser).await, "session de Bob intacte");

    // The aidant's own browser ends the aidant's session.
    let resp = fx.aidant.get(&logout_url).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with(&format!("{}/logged-out", rp.origin)));
    assert!(
        !alive(&app, &fx.aidant).await,
        "session de l'aidant terminée"
    );
}

#[tokio::test]
async fn the_jwks_is_served_from_memory_and_a_rotation_shows_within_the_reload_period() {
    let app = spawn_app(&["33"]).await;
    let jwks = || async {
        let resp = app.get("/oidc/jwks").await;
        let status = resp.status().as_u16();
        let kids: Vec<String> = if status == 200 {
            let v: Value = resp.json().await.expect("json");
            v["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        (status, kids)
    };
    // Let whatever the process read at start age, so that the next request reads the table.
    tokio::time::sleep(keys::RELOAD_EVERY + std::time::Duration::from_millis(300)).await;
    let (status, before) = jwks().await;
    assert_eq!(status, 200);
    assert_eq!(before.len(), 1);
    // The table becomes unreadable to the application: requests within the reload period are
    // still answered, from memory (no read per request).
    let role = test_support::database::app_role();
    let unreadable = std::time::Instant::now();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REVOKE SELECT ON platform.oidc_signing_keys FROM \"{role}\""
    )))
    .execute(&app.db.admin)
    .await
    .expect("revoke");
    for _ in 0..20 {
        assert_eq!(jwks().await, (200, before.clone()));
    }
    assert!(
        unreadable.elapsed() < keys::RELOAD_EVERY,
        "trop lent pour conclure"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT SELECT ON platform.oidc_signing_keys TO \"{role}\""
    )))
    .execute(&app.db.admin)
    .await
    .expect("grant");

    // A rotation by another process (tenant-admin) is published by this one within the
    // reload period, long before the new key may sign.
    let cipher = foundation::auth::secrets::SeedCipher::new(
        &foundation::config::Settings::default()
            .security
            .idp_key_encryption_key,
        1,
    )
    .expect("cipher");
    let new_kid = keys::rotate(
        &app.db.admin,
        &cipher,
        Alg::Es256,
        time::Duration::hours(1),
        time::Duration::hours(24),
    )
    .await
    .expect("rotation");
    let rotated = std::time::Instant::now();
    loop {
        let (status, kids) = jwks().await;
        assert_eq!(status, 200);
        if kids.contains(&new_kid) {
            assert!(kids.contains(&before[0]), "l'ancienne clé reste publiée");
            break;
        }
        assert!(
            rotated.elapsed() < keys::RELOAD_EVERY + std::time::Duration::from_secs(1),
            "nouvelle clé non publiée dans le délai"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn code_in(location: &str) -> String {
    assert!(location.starts_with(CALLBACK), "{location}");
    param(location, "code").expect("code")
}

#[tokio::test]
async fn code_and_token_lifetimes_are_those_issued_and_userinfo_stops_after_61_seconds() {
    use mandate_service::idp::{ACCESS_TOKEN_SECONDS, CODE_SECONDS, ID_TOKEN_SECONDS};
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-durees"), &["logement"]).await;
    let secret = secret_client(&app, "fc-durees-de-vie").await;
    let url = authorize_url(&app, "fc-durees-de-vie", CALLBACK, "");
    let db_now = || async {
        sqlx::query_scalar::<_, time::OffsetDateTime>("SELECT now()")
            .fetch_one(&app.db.admin)
            .await
            .expect("now")
    };
    // The code: stored expiry = issue + CODE_SECONDS, issued during the aidant's choice.
    let before = db_now().await;
    let late_code = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
    let after = db_now().await;
    let (issued, code_expires): (time::OffsetDateTime, time::OffsetDateTime) = sqlx::query_as(
        "SELECT issued_at, code_expires_at FROM dep_33.oidc_grants WHERE code_hash = $1",
    )
    .bind(foundation::auth::secrets::token_hash(&late_code))
    .fetch_one(&app.db.admin)
    .await
    .expect("grant");
    assert!(before <= issued && issued <= after);
    assert_eq!(code_expires - issued, time::Duration::seconds(CODE_SECONDS));
    assert!(
        code_expires - issued <= time::Duration::seconds(30),
        "un code vit 30 s au plus"
    );

    // The access token: expires_in and the stored expiry, both from the redemption.
    let code = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
    let before = db_now().await;
    let (status, body) = redeem(&app, "fc-durees-de-vie", &secret, &code, None).await;
    let after = db_now().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], json!(ACCESS_TOKEN_SECONDS));
    assert!(
        body["expires_in"].as_i64().is_some_and(|e| e <= 60),
        "un jeton d'accès vit 60 s au plus"
    );
    let access_token = body["access_token"].as_str().expect("jeton").to_owned();
    let (redeemed, access_expires): (time::OffsetDateTime, time::OffsetDateTime) =
        sqlx::query_as(
            "SELECT redeemed_at, access_expires_at FROM dep_33.oidc_grants WHERE access_token_hash = $1",
        )
        .bind(foundation::auth::secrets::token_hash(&access_token))
        .fetch_one(&app.db.admin)
        .await
        .expect("grant");
    assert!(before <= redeemed && redeemed <= after);
    assert_eq!(
        access_expires - redeemed,
        time::Duration::seconds(ACCESS_TOKEN_SECONDS)
    );
    let id_token = mandate_service::jws::unverified_claims(body["id_token"].as_str().expect("id"))
        .expect("claims");
    assert_eq!(
        id_token["exp"].as_i64().expect("exp") - id_token["iat"].as_i64().expect("iat"),
        ID_TOKEN_SECONDS
    );
    assert_eq!(userinfo_status(&app, &access_token).await, 200);

    // A real wait: 61 s after the redemption, userinfo refuses the token and the code issued
    // before it (never redeemed) is refused too.
    let redeemed_at = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(61).saturating_sub(redeemed_at.elapsed()))
        .await;
    let resp = app
        .client
        .get(app.url("/oidc/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("en-tête")
            .contains("invalid_token")
    );
    let (status, body) = redeem(&app, "fc-durees-de-vie", &secret, &late_code, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

fn challenge_of(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

#[tokio::test]
async fn pkce_refusals_end_to_end_through_the_token_endpoint() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-pkce"), &["logement"]).await;
    let secret = secret_client(&app, "fc-pkce-strict").await;
    let verifier = "pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let with_challenge = authorize_url(
        &app,
        "fc-pkce-strict",
        CALLBACK,
        &format!(
            "&code_challenge={}&code_challenge_method=S256",
            challenge_of(verifier)
        ),
    );
    let plain = authorize_url(&app, "fc-pkce-strict", CALLBACK, "");
    let refused = |(status, body): (u16, Value)| {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    };

    // A challenge was sent, the verifier is missing: refused, and the code is dead after.
    let code = code_in(&choose(&fx, &app, &with_challenge, fx.usager, "logement").await);
    refused(redeem(&app, "fc-pkce-strict", &secret, &code, None).await);
    refused(redeem(&app, "fc-pkce-strict", &secret, &code, Some(verifier)).await);
    // A wrong verifier, and one too short to be a verifier at all.
    let code = code_in(&choose(&fx, &app, &with_challenge, fx.usager, "logement").await);
    let wrong = verifier.replace('0', "1");
    refused(redeem(&app, "fc-pkce-strict", &secret, &code, Some(&wrong)).await);
    let short = &verifier[..42];
    let short_challenge = authorize_url(
        &app,
        "fc-pkce-strict",
        CALLBACK,
        &format!(
            "&code_challenge={}&code_challenge_method=S256",
            challenge_of(short)
        ),
    );
    let code = code_in(&choose(&fx, &app, &short_challenge, fx.usager, "logement").await);
    refused(redeem(&app, "fc-pkce-strict", &secret, &code, Some(short)).await);
    // No challenge at the authorization, a verifier at the token endpoint: refused.
    let code = code_in(&choose(&fx, &app, &plain, fx.usager, "logement").await);
    refused(redeem(&app, "fc-pkce-strict", &secret, &code, Some(verifier)).await);
    // The plain method, or a challenge without a method (plain by default): refused at the
    // authorization itself, and no code is issued.
    for extra in [
        format!("&code_challenge={verifier}&code_challenge_method=plain"),
        format!("&code_challenge={}", challenge_of(verifier)),
    ] {
        let url = authorize_url(&app, "fc-pkce-strict", CALLBACK, &extra);
        let resp = fx.aidant.get(&url).await;
        assert_eq!(resp.status(), 303, "{extra}");
        let to = location(&resp);
        assert_eq!(
            param(&to, "error").as_deref(),
            Some("invalid_request"),
            "{to}"
        );
        assert_eq!(param(&to, "code"), None);
    }
    // The right verifier: the identity.
    let code = code_in(&choose(&fx, &app, &with_challenge, fx.usager, "logement").await);
    let (status, body) = redeem(&app, "fc-pkce-strict", &secret, &code, Some(verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
    assert_eq!(journal_uses(&app).await, 1);
}

#[tokio::test]
async fn a_client_asks_only_its_registered_scopes_and_receives_only_its_categories() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-perimetre"), &["famille", "logement"]).await;
    let secret = register_allowed(
        &app,
        mandate_service::idp::clients::NewClient {
            client_id: "service-logement-seul".into(),
            name: "Service du logement".into(),
            auth_method: AuthMethod::ClientSecretPost,
            jwks: None,
            redirect_uris: vec![CALLBACK.into()],
            post_logout_redirect_uris: Vec::new(),
            signing_alg: Alg::Es256,
            allowed_scopes: Vec::new(),
            allowed_categories: Vec::new(),
        },
        &["profile"],
        &["logement"],
    )
    .await
    .expect("secret");
    // A scope outside its registration: invalid_scope, back to the client with the state.
    for scope in [
        "openid%20profile%20email",
        "openid%20birth",
        "openid%20inconnu",
    ] {
        let url = authorize_url(&app, "service-logement-seul", CALLBACK, "")
            .replace("scope=openid+profile", &format!("scope={scope}"));
        let resp = fx.aidant.get(&url).await;
        assert_eq!(resp.status(), 303, "{scope}");
        let to = location(&resp);
        assert!(to.starts_with(CALLBACK), "{to}");
        assert_eq!(
            param(&to, "error").as_deref(),
            Some("invalid_scope"),
            "{scope}"
        );
        assert_eq!(param(&to, "state").as_deref(), Some("etat-123456"));
        assert_eq!(param(&to, "code"), None);
    }
    // Démarches: the claims request is restricted to the client's categories (OIDC Core §5.5:
    // the provider returns what it may); asking only for others is asking for nothing.
    let claims = |values: &str| {
        format!(
            "&claims={}",
            serde_urlencoded::to_string([(
                "c",
                format!(
                    r#"{{"id_token":{{"rep_scope":{{"essential":true,"values":[{values}]}}}}}}"#
                )
            )])
            .expect("claims")
            .trim_start_matches("c=")
        )
    };
    let famille_only = authorize_url(
        &app,
        "service-logement-seul",
        CALLBACK,
        &claims(r#""Famille-Scolarité""#),
    );
    let resp = fx.aidant.get(&famille_only).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        param(&location(&resp), "error").as_deref(),
        Some("access_denied")
    );
    // No rep_scope, or both: only Logement is offered, and Famille cannot be forced.
    for extra in [String::new(), claims(r#""Famille-Scolarité","Logement""#)] {
        let url = authorize_url(&app, "service-logement-seul", CALLBACK, &extra);
        let (status, html) = page(&fx.aidant, &format!("{url}&ac_usager={}", fx.usager)).await;
        assert_eq!(status, 200);
        assert!(
            html.contains("categorie-logement") && !html.contains("categorie-famille"),
            "{html}"
        );
        let mut fields: Vec<(String, String)> =
            serde_urlencoded::from_str(url.split_once('?').expect("query").1).expect("query");
        fields.push(("csrf".into(), csrf_of(&html)));
        fields.push(("ac_usager".into(), fx.usager.to_string()));
        fields.push(("ac_categorie".into(), "famille".into()));
        fields.push(("ac_action".into(), "choisir".into()));
        let form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = fx.aidant.post(&app.url("/oidc/choix"), &form).await;
        assert_eq!(resp.status(), 400, "famille imposée");
        assert!(resp.headers().get("location").is_none());
    }
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.oidc_grants")
        .fetch_one(&app.db.admin)
        .await
        .expect("grants");
    assert_eq!(grants, 0, "aucun code émis hors périmètre");
    // Inside its registration, the flow completes.
    let url = authorize_url(&app, "service-logement-seul", CALLBACK, "");
    let code = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
    let (status, body) = redeem(&app, "service-logement-seul", &secret, &code, None).await;
    assert_eq!(status, 200, "{body}");
    let id_token = mandate_service::jws::unverified_claims(body["id_token"].as_str().expect("id"))
        .expect("claims");
    assert_eq!(id_token["rep_scope"], json!(["Logement"]));
}

/// A deactivated structure (`structures.active = false`) acts no more: its aidants' pages are
/// refused, a code issued before is not redeemed, an access token issued before gets nothing.
#[tokio::test]
async fn a_deactivated_structure_neither_acts_nor_redeems() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-inactive"), &["logement"]).await;
    let secret = secret_client(&app, "fc-inactive").await;
    let url = authorize_url(&app, "fc-inactive", CALLBACK, "");
    let first = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
    let (status, tokens) = redeem(&app, "fc-inactive", &secret, &first, None).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("jeton").to_owned();
    assert_eq!(userinfo_status(&app, &access).await, 200);
    let pending = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);

    sqlx::query("UPDATE dep_33.structures SET active = false WHERE id = $1")
        .bind(fx.structure)
        .execute(&app.db.admin)
        .await
        .expect("désactivation");
    assert_eq!(userinfo_status(&app, &access).await, 401, "userinfo");
    let (status, body) = redeem(&app, "fc-inactive", &secret, &pending, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for path in ["/mandats", "/mandats/nouveau", "/activite"] {
        let (status, _) = page(&fx.aidant, &app.url(path)).await;
        assert_eq!(status, 403, "{path}");
    }
    let resp = fx.aidant.get(&url).await;
    assert_eq!(resp.status(), 403, "plus de choix de la personne");
}

/// Issue 21 §1: a token request sent again with its `Idempotency-Key` (its answer was lost)
/// gets the first answer within the minute — the same tokens, still valid, one journal entry,
/// one receipt — while a replay without the key, with another key or after the minute is
/// refused and revokes what the code gave, as before.
#[tokio::test]
async fn a_token_request_retried_with_its_idempotency_key_gets_the_first_answer() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-reprise"), &["logement"]).await;
    let secret = secret_client(&app, "fc-reprise").await;
    let url = authorize_url(&app, "fc-reprise", CALLBACK, "");
    let key = "reprise-0123456789abcdef";
    let code = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let (status, first) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some(key)).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some(key)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the same answer, the same tokens");
    let access = first["access_token"].as_str().expect("jeton");
    assert_eq!(userinfo_status(&app, access).await, 200, "still valid");
    let (used, receipts, stored): (i64, i64, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_used' AND mandate_id = $1),
                (SELECT count(*) FROM dep_33.outbox WHERE template = 'mandate_used'),
                (SELECT retry_response FROM dep_33.oidc_grants WHERE code_hash = $2)",
    )
    .bind(fx.mandate)
    .bind(foundation::auth::secrets::token_hash(&code))
    .fetch_one(&app.db.admin)
    .await
    .expect("état");
    assert_eq!((used, receipts), (1, 1), "journaled and receipted once");
    let stored = stored.expect("réponse gardée pour une reprise");
    assert!(
        !String::from_utf8_lossy(&stored).contains(access),
        "never a usable token in the database"
    );
    // Another key is a replay: refused, and the tokens die; the right key no longer helps.
    let (status, other) = redeem_keyed(
        &app,
        "fc-reprise",
        &secret,
        &code,
        None,
        Some("une-autre-cle-0123456789"),
    )
    .await;
    assert_eq!(
        (status, other["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(userinfo_status(&app, access).await, 401);
    let (status, _) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some(key)).await;
    assert_eq!(status, 400);

    // Without a key, a second request is a replay, as before.
    let code = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let (status, plain) = redeem(&app, "fc-reprise", &secret, &code, None).await;
    assert_eq!(status, 200, "{plain}");
    let (status, replay) = redeem(&app, "fc-reprise", &secret, &code, None).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let plain_access = plain["access_token"].as_str().expect("jeton");
    assert_eq!(userinfo_status(&app, plain_access).await, 401);

    // After the minute, the key no longer answers.
    let code = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let (status, late) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some(key)).await;
    assert_eq!(status, 200, "{late}");
    sqlx::query("UPDATE dep_33.oidc_grants SET redeemed_at = $2 WHERE code_hash = $1")
        .bind(foundation::auth::secrets::token_hash(&code))
        .bind(time::OffsetDateTime::now_utc() - time::Duration::minutes(2))
        .execute(&app.db.admin)
        .await
        .expect("une minute passe");
    let (status, _) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some(key)).await;
    assert_eq!(status, 400);

    // A malformed key: a documented error, nothing redeemed.
    let code = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let (status, bad) = redeem_keyed(&app, "fc-reprise", &secret, &code, None, Some("court")).await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = redeem(&app, "fc-reprise", &secret, &code, None).await;
    assert_eq!(
        status, 200,
        "the code was not spent by the malformed request"
    );
}

/// Issue 20 §6: the same code redeemed by several requests at once. Whatever makes the code's
/// use single (a lock held over the redemption, or the redemption's own update claiming the
/// code), one request at most gets tokens, and they die with the replays; with the same
/// idempotency key, every request gets that one answer and the use is journaled once.
#[tokio::test]
async fn one_code_redeemed_by_concurrent_requests_gives_one_answer_at_most() {
    const AT_ONCE: usize = 8;
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-en-meme-temps"), &["logement"]).await;
    let secret = secret_client(&app, "fc-en-meme-temps").await;
    let url = authorize_url(&app, "fc-en-meme-temps", CALLBACK, "");
    let uses_before = journal_uses(&app).await;
    for round in 0..4 {
        let code = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
        let answers = futures::future::join_all(
            (0..AT_ONCE).map(|_| redeem(&app, "fc-en-meme-temps", &secret, &code, None)),
        )
        .await;
        let granted: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(granted.len(), 1, "round {round}: {answers:?}");
        for (status, body) in &answers {
            if *status != 200 {
                assert_eq!(
                    (*status, body["error"].as_str()),
                    (400, Some("invalid_grant")),
                    "round {round}"
                );
            }
        }
        let access = granted[0]["access_token"].as_str().expect("jeton");
        assert_eq!(
            userinfo_status(&app, access).await,
            401,
            "round {round}: the replays revoke what the code gave"
        );
    }
    assert_eq!(
        journal_uses(&app).await - uses_before,
        4,
        "one use per code"
    );

    // With the same key at once: the first answer for everyone, one use, one receipt.
    let key = "en-meme-temps-0123456789";
    let code = code_in(&choose(&fx, &app, &url, fx.usager, "logement").await);
    let receipts_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.outbox WHERE template = 'mandate_used'")
            .fetch_one(&app.db.admin)
            .await
            .expect("outbox");
    let answers = futures::future::join_all(
        (0..AT_ONCE)
            .map(|_| redeem_keyed(&app, "fc-en-meme-temps", &secret, &code, None, Some(key))),
    )
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, &answers[0].1, "the same answer, the same tokens");
    }
    let access = answers[0].1["access_token"].as_str().expect("jeton");
    assert_eq!(userinfo_status(&app, access).await, 200, "still valid");
    assert_eq!(journal_uses(&app).await - uses_before, 5, "journaled once");
    let receipts_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.outbox WHERE template = 'mandate_used'")
            .fetch_one(&app.db.admin)
            .await
            .expect("outbox");
    assert_eq!(receipts_after - receipts_before, 1, "receipted once");
}

#[tokio::test]
async fn the_usager_list_is_the_structures_own_in_name_order_and_follows_a_new_name() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-liste-dubois"), &["social"]).await;
    register(
        &app,
        "service-liste",
        AuthMethod::ClientSecretPost,
        CALLBACK,
        &[],
        Alg::Es256,
        None,
    )
    .await;
    let person = |sub: &str, family: &str| mandate_service::franceconnect::Identity {
        given_name: "Paul".into(),
        family_name: family.into(),
        ..angela(sub)
    };
    mandate_for(
        &app,
        fx.structure,
        fx.who.id,
        &person("fc-sub-liste-martin", "MARTIN"),
        &["social"],
    )
    .await;
    // Someone of another structure of the territory, whose name sorts first: never listed.
    let elsewhere = structure_domain(&app, "33").await;
    let other = professional(
        &app.db.admin,
        "Aidant Ailleurs",
        &[(Role::Aidant, elsewhere.domain(), Some("33"))],
    )
    .await;
    mandate_for(
        &app,
        elsewhere,
        other.id,
        &person("fc-sub-liste-aaron", "AARON"),
        &["social"],
    )
    .await;
    let url = authorize_url(&app, "service-liste", CALLBACK, "");
    let listed = |html: &str| {
        let mut found: Vec<(usize, &str)> = ["AARON", "ABADIE", "DUBOIS", "MARTIN"]
            .into_iter()
            .filter_map(|name| html.find(name).map(|at| (at, name)))
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect::<Vec<_>>()
    };
    let (status, html) = page(&fx.aidant, &url).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(listed(&html), ["DUBOIS", "MARTIN"], "{html}");

    // FranceConnect asserts another identity for Paul at his next mandate (name, usage name,
    // birth date corrected): the list sorts him by it and shows it.
    assert!(
        html.contains("MARTIN Paul") && html.contains("le 24/08/1962"),
        "{html}"
    );
    mandate_for(
        &app,
        fx.structure,
        fx.who.id,
        &mandate_service::franceconnect::Identity {
            preferred_username: Some("LEBLANC".into()),
            birthdate: "1961-03-02".into(),
            ..person("fc-sub-liste-martin", "ABADIE")
        },
        &["logement"],
    )
    .await;
    let (status, html) = page(&fx.aidant, &url).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(listed(&html), ["ABADIE", "DUBOIS"], "{html}");
    assert!(
        html.contains("ABADIE (LEBLANC) Paul") && html.contains("le 02/03/1961"),
        "{html}"
    );
    // Each row names the démarches the usager can be helped with (in code order).
    assert!(html.contains("Logement, Social - Santé"), "{html}");

    // A search keeps the structure's own usagers whose names hold it, whatever the case and
    // accents; never someone of another structure.
    for (q, expected) in [
        ("abad", vec!["ABADIE"]),
        ("D%C3%9BBOIS", vec!["DUBOIS"]),
        ("paul", vec!["ABADIE"]),
        ("aaron", vec![]),
    ] {
        let (status, html) = page(&fx.aidant, &format!("{url}&ac_q={q}")).await;
        assert_eq!(status, 200, "{html}");
        assert_eq!(listed(&html), expected, "recherche « {q} » : {html}");
    }
}

/// `count` people under a year's mandate in `structure` for `codes`, as the platform lists
/// them (`structure_usagers`); their `fc_sub` `{prefix}-{i}`, one in a hundred named
/// `hundredth`, the others DUBOIS. Statistics made, as a running territory has them.
async fn people_under_mandate(
    app: &TestApp,
    structure: foundation::ids::StructureId,
    aidant: foundation::ids::ProfessionalId,
    prefix: &str,
    count: i32,
    hundredth: &str,
    codes: &[&str],
) {
    sqlx::query(
        "INSERT INTO dep_33.usagers (id, fc_sub, given_name, family_name, birthdate, gender, birthplace, birthcountry, search_name)
         SELECT gen_random_uuid(), $1 || '-' || i, 'Marie', name || '-' || i, '1970-01-01', 'female', '33063', '99100',
                lower(name) || '-' || i || ' marie'
         FROM generate_series(1, $2) AS i,
              LATERAL (SELECT CASE WHEN i % 100 = 0 THEN $3 ELSE 'DUBOIS' END AS name) n",
    )
    .bind(prefix)
    .bind(count)
    .bind(hundredth)
    .execute(&app.db.admin)
    .await
    .expect("usagers");
    sqlx::query(
        "INSERT INTO dep_33.mandates (id, structure_id, usager_id, created_by, created_at, duration_days, expires_at, legal_text_version)
         SELECT gen_random_uuid(), $1, id, $2, now(), 365, now() + interval '365 days', '2026-11-v1'
         FROM dep_33.usagers WHERE fc_sub LIKE $3 || '-%'",
    )
    .bind(structure)
    .bind(aidant)
    .bind(prefix)
    .execute(&app.db.admin)
    .await
    .expect("mandats");
    sqlx::query(
        "INSERT INTO dep_33.authorisations (id, mandate_id, structure_id, usager_id, category, expires_at)
         SELECT gen_random_uuid(), m.id, m.structure_id, m.usager_id, c, m.expires_at
         FROM dep_33.mandates m JOIN dep_33.usagers u ON u.id = m.usager_id, unnest($2::text[]) AS c
         WHERE u.fc_sub LIKE $1 || '-%'",
    )
    .bind(prefix)
    .bind(codes)
    .execute(&app.db.admin)
    .await
    .expect("autorisations");
    sqlx::query(
        "INSERT INTO dep_33.structure_usagers (structure_id, usager_id, family_name, given_name, categories, live_until, birthdate)
         SELECT $1, id, family_name, given_name, $3, now() + interval '365 days', birthdate
         FROM dep_33.usagers WHERE fc_sub LIKE $2 || '-%'",
    )
    .bind(structure)
    .bind(prefix)
    .bind(codes)
    .execute(&app.db.admin)
    .await
    .expect("usagers de la structure");
    sqlx::raw_sql(
        "ANALYZE dep_33.usagers, dep_33.mandates, dep_33.authorisations, dep_33.structure_usagers",
    )
    .execute(&app.db.admin)
    .await
    .expect("statistiques");
}

/// The usager list without a search, prepared and bound as the authorize page does, executed
/// eight times on a connection of its own for `asked`: the plans PostgreSQL made for it, generic
/// and for the values. The connection is then closed, its prepared statement with it.
async fn list_plans(app: &TestApp, structure: uuid::Uuid, asked: &str) -> (i64, i64) {
    let sql = mandate_service::idp::interaction::usager_list_sql(false, false);
    let mut conn = app.db.admin.acquire().await.expect("connexion").detach();
    sqlx::raw_sql("SET search_path = dep_33, public")
        .execute(&mut conn)
        .await
        .expect("territoire");
    for _ in 0..8 {
        let rows = sqlx::query(sql)
            .bind(structure)
            .bind(vec![asked.to_string()])
            .fetch_all(&mut conn)
            .await
            .expect("liste");
        assert_eq!(rows.len(), 51);
    }
    let plans = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
    )
    .bind(sql)
    .fetch_one(&mut conn)
    .await
    .expect("l'instruction préparée");
    sqlx::Connection::close(conn).await.expect("fermeture");
    plans
}

#[tokio::test]
async fn the_usager_lists_search_reads_the_people_found_not_the_structure() {
    // A search of the usager list reads the structure's rows of the people it found, each by
    // the structure's key, whatever plan PostgreSQL keeps for the statement (here a generic
    // one; on Citus the worker's plan for the values the coordinator sends). 3,000 people in
    // the structure, 30 named MARTIN: the walk of the names filtered by the search, which the
    // list keeps for searches finding more than `FOUND_MAX`, reads all 3,000 for them, and the
    // test shows it reads them, so that its count can tell the two apart.
    //
    // And the list without a search is planned once per connection, in a structure of 216
    // people as in one of 3,000: after its first five executions PostgreSQL keeps the generic
    // plan instead of planning it again at every page (0.26–0.30 ms a page, more than the
    // statement's execution, in `bench-volume` on 2026-12-04: at national volume every page,
    // then, with the rows wanted no longer a parameter, on the small structure). Watched fail
    // on both: with the rows wanted as a parameter (`LIMIT $3`, 51), 8 plans for the values
    // and none generic in the large structure; with `LIMIT 51` but the démarches asked in the
    // probe's index condition (`a.category = ANY($2)`), the same in the small one.
    let app = spawn_app(&["33"]).await;
    let (small_aidant, small, _) = logged_in_aidant(&app).await;
    people_under_mandate(
        &app,
        small,
        small_aidant.id,
        "petit",
        216,
        "DUBOIS",
        &["logement", "famille"],
    )
    .await;
    let (generic, custom) = list_plans(&app, small.as_uuid(), "logement").await;
    assert!(
        generic >= 3 && custom <= 5,
        "216 personnes : plans génériques {generic}, plans pour les valeurs {custom}"
    );

    let fx = fixture(&app, &angela("fc-sub-plan-liste"), &["social"]).await;
    people_under_mandate(
        &app,
        fx.structure,
        fx.who.id,
        "plan",
        3000,
        "MARTIN",
        &["social"],
    )
    .await;
    let mut conn = app.db.admin.acquire().await.expect("connexion");
    sqlx::raw_sql("SET search_path = dep_33, public; SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .expect("plans génériques");
    use mandate_service::idp::interaction::usager_list_sql;
    let found: Vec<uuid::Uuid> = sqlx::query_scalar(mandate_service::web::list::FOUND_SQL)
        .bind("martin")
        .bind(10_001_i64)
        .fetch_all(&mut *conn)
        .await
        .expect("trouvés");
    assert_eq!(found.len(), 30);
    let ids: Vec<String> = found.iter().map(|u| format!("'{u}'")).collect();
    let structure = fx.structure.as_uuid();
    let mut listed: Option<Vec<String>> = None;
    for (name, sql, last, reads) in [
        (
            "found",
            usager_list_sql(true, true),
            format!("ARRAY[{}]::uuid[]", ids.join(",")),
            1.0..=90.0,
        ),
        (
            "walk",
            usager_list_sql(true, false),
            "'martin'".into(),
            // The structure's 3,001 (the 3,000 and the fixture's usager), and the other
            // structure's 216 where its generic plan reads the whole table.
            3_000.0..=3_217.0,
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {sql}")))
            .execute(&mut *conn)
            .await
            .expect("prepare");
        let execute = format!("EXECUTE {name}('{structure}', ARRAY['social'], {last})");
        // Both list the 30, in the same (name) order.
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(execute.clone()))
            .fetch_all(&mut *conn)
            .await
            .expect("liste");
        let names: Vec<String> = rows
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "family_name"))
            .collect();
        assert_eq!(names.len(), 30, "« {name} » : {names:?}");
        assert!(
            names.iter().all(|n| n.starts_with("MARTIN-")),
            "« {name} » : {names:?}"
        );
        if let Some(first) = &listed {
            assert_eq!(&names, first, "« {name} »");
        }
        listed = Some(names);
        let (read, plan) = common::plans::read(&mut conn, &execute, "structure_usagers").await;
        assert!(
            reads.contains(&read),
            "« {name} » : {read} lignes de structure_usagers lues : {plan}"
        );
    }

    let (generic, custom) = list_plans(&app, structure, "social").await;
    assert!(
        generic >= 3 && custom <= 5,
        "3 000 personnes : plans génériques {generic}, plans pour les valeurs {custom}"
    );
}
