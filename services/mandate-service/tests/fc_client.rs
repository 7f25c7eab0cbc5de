//! The FranceConnect client against a hostile provider: a small OpenID provider started here
//! that answers with tampered tokens (the real stand-in never would). Every tampering must be
//! refused by `FcClient::identify`; a key rotation at the provider must be followed (the key
//! set is fetched again for an unknown `kid`), and only then.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mandate_service::franceconnect::{FcClient, FcError};
use mandate_service::jws;
use p256::ecdsa::SigningKey;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, Route, get, handler, post};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    None,
    Signature,
    Audience,
    Issuer,
    Nonce,
    Expired,
    AlgNone,
    Hs256,
    UnknownKid,
    AcrTooLow,
    UserinfoOtherSub,
}

struct Provider {
    issuer: String,
    key: SigningKey,
    kid: String,
    tamper: Tamper,
    jwks_fetches: usize,
}

type Shared = Arc<Mutex<Provider>>;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[handler]
fn discovery(state: Data<&Shared>) -> Json<Value> {
    let issuer = state.lock().expect("état").issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "jwks_uri": format!("{issuer}/jwks"),
    }))
}

#[handler]
fn jwks(state: Data<&Shared>) -> Json<Value> {
    let mut s = state.lock().expect("état");
    s.jwks_fetches += 1;
    Json(json!({ "keys": [jws::es256_jwk(&s.key, &s.kid)] }))
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

#[handler]
fn token(state: Data<&Shared>) -> Json<Value> {
    let s = state.lock().expect("état");
    let mut claims = json!({
        "iss": s.issuer, "aud": "client", "sub": "sub-1", "iat": now(), "exp": now() + 60,
        "nonce": "le-nonce", "acr": "eidas1",
    });
    match s.tamper {
        Tamper::Audience => claims["aud"] = json!("autre-client"),
        Tamper::Issuer => claims["iss"] = json!("https://faux.example/api/v2"),
        Tamper::Nonce => claims["nonce"] = json!("autre-nonce"),
        Tamper::Expired => {
            claims["iat"] = json!(now() - 300);
            claims["exp"] = json!(now() - 240);
        }
        Tamper::AcrTooLow => claims["acr"] = json!("eidas0"),
        _ => {}
    }
    let id_token = match s.tamper {
        Tamper::Signature => jws::sign_es256(
            &claims,
            &SigningKey::from_slice(&[9; 32]).expect("clé"),
            &s.kid,
        ),
        Tamper::AlgNone => unsigned(json!({"alg": "none", "kid": s.kid}), &claims),
        Tamper::Hs256 => {
            // An HMAC "signed" with the public key's coordinates, the classic confusion attack.
            use hmac::Mac;
            let header = B64.encode(json!({"alg": "HS256", "kid": s.kid}).to_string());
            let payload = B64.encode(claims.to_string());
            let jwk = jws::es256_jwk(&s.key, &s.kid);
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(jwk.x.unwrap_or_default().as_bytes())
                    .expect("hmac");
            mac.update(format!("{header}.{payload}").as_bytes());
            format!(
                "{header}.{payload}.{}",
                B64.encode(mac.finalize().into_bytes())
            )
        }
        Tamper::UnknownKid => jws::sign_es256(&claims, &s.key, "cle-inconnue"),
        _ => jws::sign_es256(&claims, &s.key, &s.kid),
    };
    Json(
        json!({ "access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": id_token }),
    )
}

#[handler]
fn userinfo(state: Data<&Shared>) -> String {
    let s = state.lock().expect("état");
    let sub = if s.tamper == Tamper::UserinfoOtherSub {
        "sub-2"
    } else {
        "sub-1"
    };
    jws::sign_es256(
        &json!({
            "iss": s.issuer, "aud": "client", "sub": sub, "given_name": "Angela Claire Louise",
            "family_name": "DUBOIS", "birthdate": "1962-08-24", "gender": "female",
            "birthplace": "75107", "birthcountry": "99100",
        }),
        &s.key,
        &s.kid,
    )
}

async fn hostile_provider() -> (Shared, FcClient) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("port");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("adresse")
        .port();
    let issuer = format!("http://127.0.0.1:{port}/api/v2");
    let state: Shared = Arc::new(Mutex::new(Provider {
        issuer: issuer.clone(),
        key: SigningKey::from_slice(&[5; 32]).expect("clé"),
        kid: "k1".into(),
        tamper: Tamper::None,
        jwks_fetches: 0,
    }));
    let app = Route::new()
        .at("/api/v2/.well-known/openid-configuration", get(discovery))
        .at("/api/v2/jwks", get(jwks))
        .at("/api/v2/token", post(token))
        .at("/api/v2/userinfo", get(userinfo))
        .data(state.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let mut settings = foundation::config::Settings::default().franceconnect;
    settings.issuer = issuer;
    settings.client_id = "client".into();
    settings.client_secret = "secret".to_owned().into();
    (state, FcClient::new(&settings, "http://127.0.0.1:1"))
}

#[tokio::test]
async fn every_tampered_token_is_refused_and_an_honest_one_accepted() {
    let (state, client) = hostile_provider().await;
    let (identity, _) = client
        .identify("code", "le-nonce")
        .await
        .expect("jetons honnêtes");
    assert_eq!(identity.family_name, "DUBOIS");
    for tamper in [
        Tamper::Signature,
        Tamper::Audience,
        Tamper::Issuer,
        Tamper::Nonce,
        Tamper::Expired,
        Tamper::AlgNone,
        Tamper::Hs256,
        Tamper::UnknownKid,
        Tamper::AcrTooLow,
        Tamper::UserinfoOtherSub,
    ] {
        state.lock().expect("état").tamper = tamper;
        // Past the refetch delay, so that an unknown kid really triggers a new key set.
        if tamper == Tamper::UnknownKid {
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        }
        let outcome = client.identify("code", "le-nonce").await;
        assert!(
            matches!(outcome, Err(FcError::Invalid(_))),
            "{tamper:?} accepté : {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_key_rotation_at_franceconnect_is_followed_by_fetching_the_key_set_again() {
    let (state, client) = hostile_provider().await;
    client.identify("code", "le-nonce").await.expect("avant");
    let fetches = state.lock().expect("état").jwks_fetches;
    client.identify("code", "le-nonce").await.expect("cache");
    assert_eq!(
        state.lock().expect("état").jwks_fetches,
        fetches,
        "le jeu de clés est gardé en cache"
    );
    {
        let mut s = state.lock().expect("état");
        s.key = SigningKey::from_slice(&[6; 32]).expect("clé");
        s.kid = "k2".into();
    }
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (identity, _) = client
        .identify("code", "le-nonce")
        .await
        .expect("après rotation");
    assert_eq!(identity.sub, "sub-1");
    assert!(state.lock().expect("état").jwks_fetches > fetches);
}
