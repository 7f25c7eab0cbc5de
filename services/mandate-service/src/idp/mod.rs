//! The platform as an OpenID Connect identity provider: FranceConnect (or another registered
//! client) sends the aidant here; the aidant chooses the usager and the démarche; the client
//! receives the usager's identity — only while the structure's mandate covers that démarche.
//!
//! Flow and storage: the authorization request is validated and carried along by the pages
//! themselves (nothing is written before the aidant's choice); the choice writes one grant in
//! the territory (the code, 30 s, single use); the token request redeems it in one territory
//! transaction that also journals the use and queues the usager's receipt; userinfo only
//! reads. Codes and access tokens are `{département}.{random}` so that each request finds its
//! territory without a platform-wide lookup; only their SHA-256 is stored.

pub mod clients;
pub mod errors;
pub mod interaction;
pub mod keys;
pub mod request;
pub mod retry;
pub mod tokens;

use foundation::app::Platform;
use foundation::auth::secrets::SeedCipher;
use foundation::config::Environment;
use foundation::tenancy::DepartementCode;
use hmac::{Hmac, Mac};
use poem::web::Data;
use poem::{IntoResponse, Response, handler};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::categories::ALL;

/// Lifetimes (seconds): FranceConnect's own.
pub const CODE_SECONDS: i64 = 30;
pub const ACCESS_TOKEN_SECONDS: i64 = 60;
pub const ID_TOKEN_SECONDS: i64 = 60;

/// How the aidant authenticated: magic link by e-mail, then a TOTP code (FranceConnect's `amr`
/// values).
pub const AMR: [&str; 2] = ["mail", "otp"];

/// The scopes the provider knows; each client is registered with the part of them it may ask.
pub const SCOPES: [&str; 12] = [
    "openid",
    "profile",
    "email",
    "birth",
    "identite_pivot",
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "birthplace",
    "birthcountry",
    "preferred_username",
];

/// Identity claims a userinfo answer may hold, and the scopes that release each.
pub const IDENTITY_CLAIMS: [(&str, &[&str]); 8] = [
    ("given_name", &["profile", "given_name", "identite_pivot"]),
    ("family_name", &["profile", "family_name", "identite_pivot"]),
    ("preferred_username", &["profile", "preferred_username"]),
    (
        "birthdate",
        &["profile", "birth", "birthdate", "identite_pivot"],
    ),
    ("gender", &["profile", "gender", "identite_pivot"]),
    ("birthplace", &["birth", "birthplace", "identite_pivot"]),
    ("birthcountry", &["birth", "birthcountry", "identite_pivot"]),
    ("email", &["email"]),
];

/// What the provider's endpoints share.
#[derive(Clone)]
pub struct Provider {
    /// The issuer: the platform's public URL.
    pub issuer: String,
    pub keys: keys::KeyStore,
    pub clients: clients::Registry,
    /// Plain-HTTP redirect URIs on the loopback interface are honoured outside production only.
    pub environment: Environment,
    subject_key: std::sync::Arc<Vec<u8>>,
}

impl Provider {
    pub fn new(platform: &Platform) -> anyhow::Result<Self> {
        let security = &platform.settings.security;
        let cipher = SeedCipher::new(
            &security.idp_key_encryption_key,
            security.idp_key_encryption_key_version,
        )?
        .with_previous(&security.idp_key_encryption_previous_keys)?;
        Ok(Self {
            issuer: platform
                .settings
                .http
                .public_url
                .trim_end_matches('/')
                .to_owned(),
            keys: keys::KeyStore::new(platform.platform_pool().clone(), cipher),
            clients: clients::Registry::new(platform.platform_pool().clone()),
            environment: platform.settings.environment,
            subject_key: std::sync::Arc::new(
                security.idp_subject_key.expose_secret().as_bytes().to_vec(),
            ),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The usager's `sub` for a client: pairwise (two clients cannot link their users) and
    /// stable (derived from FranceConnect's own stable `sub` for the platform, the same in every
    /// territory), revealing neither.
    pub fn subject(&self, client_id: &str, fc_sub: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.subject_key)
            .expect("HMAC accepts keys of any length");
        mac.update(b"aidants-connect:sub\0");
        mac.update(client_id.as_bytes());
        mac.update(b"\0");
        mac.update(fc_sub.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A code or access token: `{département}.{grant}.{random}`, the grant's id in 32 hex digits
/// and 256 random bits. The département routes the request to its territory; the id finds the
/// grant by its primary key, so the grant's table keeps no index on the codes' and tokens'
/// hashes and the redemption's update stays in its page (`migrations/departement/0039`); the
/// random part is the secret, stored only as a SHA-256 of the whole token and compared with the
/// grant found.
pub fn grant_token(departement: DepartementCode, grant: Uuid) -> String {
    format!(
        "{}.{}.{}",
        departement.as_str(),
        grant.simple(),
        foundation::auth::secrets::new_token()
    )
}

/// The territory and the grant a code or token names, if it names them.
pub fn grant_of(token: &str) -> Option<(DepartementCode, Uuid)> {
    let (dep, rest) = token.split_once('.')?;
    let (grant, secret) = rest.split_once('.')?;
    if grant.len() != 32 || secret.len() < 40 {
        return None;
    }
    let grant = Uuid::try_parse(grant).ok()?;
    Some((DepartementCode::parse(dep).ok()?, grant))
}

/// The discovery document.
#[handler]
pub async fn discovery(provider: Data<&Provider>) -> Response {
    let p = *provider;
    let scopes: Vec<&str> = SCOPES.into();
    let mut claims: Vec<&str> = vec![
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "nonce",
        "acr",
        "amr",
        "auth_time",
        "rep_scope",
    ];
    claims.extend(IDENTITY_CLAIMS.iter().map(|(c, _)| *c));
    let rep_scope_values: Vec<&str> = ALL.iter().map(|c| c.fc_label).collect();
    let doc = json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.url("/oidc/authorize"),
        "token_endpoint": p.url("/oidc/token"),
        "userinfo_endpoint": p.url("/oidc/userinfo"),
        "jwks_uri": p.url("/oidc/jwks"),
        "end_session_endpoint": p.url("/oidc/session/end"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": clients::AuthMethod::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "claims_supported": claims,
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "acr_values_supported": ["eidas1"],
        "prompt_values_supported": ["login", "consent", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "rep_scope_values_supported": rep_scope_values,
        "ui_locales_supported": ["fr"],
    });
    cached_json(doc.to_string(), 300)
}

fn cached_json(body: String, max_age: u32) -> Response {
    Response::builder()
        .content_type("application/json")
        .header("cache-control", format!("public, max-age={max_age}"))
        .header("access-control-allow-origin", "*")
        .body(body)
}

/// The published signing keys, from the process's memory (read again from the table every
/// [`keys::RELOAD_EVERY`]).
#[handler]
pub async fn jwks(provider: Data<&Provider>) -> Response {
    match provider.keys.jwks().await {
        // Short cache: a rotation is published long before use, and clients refetch on an
        // unknown kid anyway.
        Ok(set) => cached_json(
            serde_json::to_string(&set).unwrap_or_else(|_| "{\"keys\":[]}".into()),
            300,
        ),
        Err(e) => {
            tracing::error!(error = %e, "identity provider: keys unavailable");
            poem::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_territory_and_grant_and_nothing_else_parses() {
        let dep = DepartementCode::parse("2A").expect("2A");
        let grant = Uuid::now_v7();
        let t = grant_token(dep, grant);
        assert_eq!(grant_of(&t), Some((dep, grant)));
        assert_ne!(
            t,
            grant_token(dep, grant),
            "the secret part is drawn each time"
        );
        let secret = "a".repeat(43);
        let hex = grant.simple().to_string();
        assert_eq!(grant_of(&format!("2A.{hex}.short")), None);
        assert_eq!(grant_of(&format!("zz.{hex}.{secret}")), None);
        assert_eq!(grant_of(&format!("2A.{}.{secret}", &hex[1..])), None);
        assert_eq!(grant_of(&format!("2A.{}g.{secret}", &hex[1..])), None);
        // The former form, `{département}.{random}`, names no grant.
        assert_eq!(grant_of(&format!("2A.{secret}")), None);
        assert_eq!(grant_of("no-dot"), None);
    }
}
