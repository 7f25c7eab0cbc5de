//! The registry of OpenID clients allowed to call the identity provider (FranceConnect's
//! platforms and any other), managed with tenant-admin, and how a client proves who it is at
//! the token endpoint.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine;
use foundation::auth::secrets::{constant_time_eq, new_token, token_hash};
use foundation::config::Environment;
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::SCOPES;
use super::keys::Alg;
use crate::categories;
use crate::jws::{self, JwkSet};

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretPost,
    ClientSecretBasic,
    PrivateKeyJwt,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 3] = [
        AuthMethod::ClientSecretPost,
        AuthMethod::ClientSecretBasic,
        AuthMethod::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub auth_method: AuthMethod,
    secret_hash: Option<Vec<u8>>,
    pub jwks: Option<JwkSet>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub signing_alg: Alg,
    pub active: bool,
    /// The scopes it may ask (`openid` among them).
    pub allowed_scopes: Vec<String>,
    /// The démarche categories (our codes) it may receive a mandate's use for.
    pub allowed_categories: Vec<String>,
}

#[cfg(test)]
impl Client {
    pub fn for_tests(
        client_id: &str,
        auth_method: AuthMethod,
        redirect_uris: Vec<String>,
        signing_alg: Alg,
    ) -> Self {
        Client {
            client_id: client_id.into(),
            name: "Service de test".into(),
            auth_method,
            secret_hash: None,
            jwks: None,
            redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            signing_alg,
            active: true,
            allowed_scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            allowed_categories: categories::ALL.iter().map(|c| c.code.to_owned()).collect(),
        }
    }
}

/// What a new client is registered with.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: String,
    pub name: String,
    pub auth_method: AuthMethod,
    /// Public keys, for `private_key_jwt`.
    pub jwks: Option<JwkSet>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub signing_alg: Alg,
    /// Scopes it may ask, among [`SCOPES`] (`openid` is added).
    pub allowed_scopes: Vec<String>,
    /// Démarche categories it may receive (our codes or FranceConnect's labels).
    pub allowed_categories: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("base de données : {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A redirect or logout URI, parsed as a browser parses it (WHATWG URL): absolute, `https`
/// (plain `http` only on the loopback interface — 127.0.0.0/8, `[::1]`, `localhost` — and
/// never in production), without user name, password or fragment. Checked at registration
/// and again before the provider sends a browser there; requests then compare it exactly.
pub fn check_uri(uri: &str, environment: Environment) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("URI refusée ({why}) : {uri}"));
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("espace ou caractère de contrôle");
    }
    let Ok(url) = reqwest::Url::parse(uri) else {
        return refuse("adresse absolue attendue, https://…");
    };
    if !url.username().is_empty() || url.password().is_some() || uri.contains('@') {
        return refuse("identifiant ou mot de passe dans l'adresse");
    }
    if url.fragment().is_some() || uri.contains('#') {
        return refuse("fragment interdit");
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return refuse("hôte manquant");
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback && environment != Environment::Production => Ok(()),
        _ => refuse(
            "https:// obligatoire ; http:// seulement sur 127.0.0.1, [::1] ou localhost, hors production",
        ),
    }
}

/// The scopes and categories a new client is registered with, checked and normalised (codes,
/// sorted, `openid` included).
fn allowed_lists(new: &NewClient) -> Result<(Vec<String>, Vec<String>), RegistryError> {
    let mut scopes = vec!["openid".to_owned()];
    for s in &new.allowed_scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(RegistryError::Invalid(format!(
                "scope inconnu : {s} (possibles : {})",
                SCOPES.join(", ")
            )));
        }
        scopes.push(s.clone());
    }
    scopes.sort();
    scopes.dedup();
    let mut cats = Vec::new();
    for c in &new.allowed_categories {
        let Some(category) = categories::by_fc_label_or_code(c) else {
            return Err(RegistryError::Invalid(format!(
                "catégorie de démarche inconnue : {c} (possibles : {})",
                categories::ALL
                    .iter()
                    .map(|c| c.code)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        cats.push(category.code.to_owned());
    }
    cats.sort();
    cats.dedup();
    if cats.is_empty() {
        return Err(RegistryError::Invalid(
            "au moins une catégorie de démarche est obligatoire".into(),
        ));
    }
    Ok((scopes, cats))
}

fn check_new(new: &NewClient, environment: Environment) -> Result<(), RegistryError> {
    let id_ok = (8..=100).contains(&new.client_id.len())
        && new
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !id_ok {
        return Err(RegistryError::Invalid(
            "identifiant de client refusé : 8 à 100 caractères parmi A-Z a-z 0-9 . _ -".into(),
        ));
    }
    if new.name.trim().is_empty() {
        return Err(RegistryError::Invalid("nom du client obligatoire".into()));
    }
    if new.redirect_uris.is_empty() {
        return Err(RegistryError::Invalid(
            "au moins une URI de redirection est obligatoire".into(),
        ));
    }
    for uri in new
        .redirect_uris
        .iter()
        .chain(&new.post_logout_redirect_uris)
    {
        check_uri(uri, environment).map_err(RegistryError::Invalid)?;
    }
    match (new.auth_method, &new.jwks) {
        (AuthMethod::PrivateKeyJwt, None) => Err(RegistryError::Invalid(
            "private_key_jwt : le jeu de clés publiques du client est obligatoire".into(),
        )),
        (AuthMethod::PrivateKeyJwt, Some(set)) if set.keys.is_empty() => Err(
            RegistryError::Invalid("le jeu de clés publiques du client est vide".into()),
        ),
        (AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic, Some(_)) => Err(
            RegistryError::Invalid("un jeu de clés ne sert qu'avec private_key_jwt".into()),
        ),
        _ => Ok(()),
    }
}

/// Registers a client; returns its secret (shown once, stored only as a hash) unless it
/// authenticates with `private_key_jwt`. `environment` decides whether plain-HTTP loopback
/// URIs are accepted (never in production).
pub async fn register(
    pool: &PgPool,
    new: &NewClient,
    environment: Environment,
) -> Result<Option<String>, RegistryError> {
    check_new(new, environment)?;
    let (scopes, cats) = allowed_lists(new)?;
    let secret = (new.auth_method != AuthMethod::PrivateKeyJwt).then(new_token);
    let done = sqlx::query(
        "INSERT INTO platform.oidc_clients
             (client_id, name, auth_method, secret_hash, jwks, redirect_uris,
              post_logout_redirect_uris, signing_alg, allowed_scopes, allowed_categories)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(&new.client_id)
    .bind(new.name.trim())
    .bind(new.auth_method.as_str())
    .bind(secret.as_deref().map(token_hash))
    .bind(
        new.jwks
            .as_ref()
            .map(|j| serde_json::to_value(j).unwrap_or_default()),
    )
    .bind(&new.redirect_uris)
    .bind(&new.post_logout_redirect_uris)
    .bind(new.signing_alg.as_str())
    .bind(&scopes)
    .bind(&cats)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(RegistryError::Invalid(format!(
            "le client {} existe déjà",
            new.client_id
        )));
    }
    Ok(secret)
}

/// Gives a client a new secret (the old one stops working at once); returns it.
pub async fn rotate_secret(pool: &PgPool, client_id: &str) -> Result<String, RegistryError> {
    let secret = new_token();
    let done = sqlx::query(
        "UPDATE platform.oidc_clients SET secret_hash = $2, updated_at = now()
         WHERE client_id = $1 AND auth_method <> 'private_key_jwt'",
    )
    .bind(client_id)
    .bind(token_hash(&secret))
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(RegistryError::Invalid(format!(
            "aucun client à secret nommé {client_id}"
        )));
    }
    Ok(secret)
}

/// Enables or disables a client.
pub async fn set_active(pool: &PgPool, client_id: &str, active: bool) -> Result<(), RegistryError> {
    let done = sqlx::query(
        "UPDATE platform.oidc_clients SET active = $2, updated_at = now() WHERE client_id = $1",
    )
    .bind(client_id)
    .bind(active)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(RegistryError::Invalid(format!(
            "aucun client nommé {client_id}"
        )));
    }
    Ok(())
}

type ClientRow = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<Value>,
    Vec<String>,
    Vec<String>,
    String,
    bool,
    Vec<String>,
    Vec<String>,
);

/// A read of the client registry, as one static string: its columns, then `$tail`.
macro_rules! clients_sql {
    ($tail:literal) => {
        concat!(
            "SELECT client_id, name, auth_method, secret_hash, jwks, redirect_uris,
                    post_logout_redirect_uris, signing_alg, active, allowed_scopes, allowed_categories
             FROM platform.oidc_clients ",
            $tail
        )
    };
}

fn to_client(row: ClientRow) -> Option<Client> {
    let (
        client_id,
        name,
        method,
        secret_hash,
        jwks,
        redirect_uris,
        logout,
        alg,
        active,
        allowed_scopes,
        allowed_categories,
    ) = row;
    Some(Client {
        client_id,
        name,
        auth_method: AuthMethod::parse(&method)?,
        secret_hash,
        jwks: jwks.and_then(|j| serde_json::from_value(j).ok()),
        redirect_uris,
        post_logout_redirect_uris: logout,
        signing_alg: Alg::parse(&alg)?,
        active,
        allowed_scopes,
        allowed_categories,
    })
}

/// Every registered client.
pub async fn list(pool: &PgPool) -> Result<Vec<Client>, sqlx::Error> {
    let rows: Vec<ClientRow> = sqlx::query_as(clients_sql!("ORDER BY client_id"))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().filter_map(to_client).collect())
}

/// How long a process trusts what it read of a client (a disabled client or a new secret takes
/// effect within this time).
pub const CACHE_FOR: StdDuration = StdDuration::from_secs(5);

/// When a client was read, and what was found.
type CachedClient = (Instant, Option<Arc<Client>>);

/// Clients as one process sees them, read again after [`CACHE_FOR`].
#[derive(Clone)]
pub struct Registry {
    pool: PgPool,
    cache: Arc<RwLock<HashMap<String, CachedClient>>>,
}

impl Registry {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
        }
    }

    /// The active client named `client_id`, if any.
    pub async fn get(&self, client_id: &str) -> Result<Option<Arc<Client>>, sqlx::Error> {
        if client_id.is_empty() || client_id.len() > 100 {
            return Ok(None);
        }
        if let Some((at, client)) = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(client_id).cloned())
            && at.elapsed() < CACHE_FOR
        {
            return Ok(client);
        }
        let row: Option<ClientRow> = sqlx::query_as(clients_sql!("WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        let client = row.and_then(to_client).filter(|c| c.active).map(Arc::new);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 1000 {
                cache.clear();
            }
            cache.insert(client_id.to_owned(), (Instant::now(), client.clone()));
        }
        Ok(client)
    }
}

/// What the token request carried to authenticate its client.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// From an `Authorization: Basic` header.
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Decodes `Authorization: Basic` (RFC 6749 §2.3.1: both parts form-urlencoded).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(&format!("v={}", s.replace('&', "%26"))).ok()?;
        pairs.into_iter().next().map(|(_, v)| v)
    };
    Some((unescape(id)?, unescape(secret)?))
}

impl Credentials {
    /// The client the request names, whatever the method (they must agree).
    pub fn claimed_client(&self) -> Option<String> {
        let from_assertion = self
            .client_assertion
            .as_deref()
            .and_then(|a| jws::unverified_claims(a).ok())
            .and_then(|c| c["iss"].as_str().map(str::to_owned));
        let names: Vec<&String> = [
            self.basic.as_ref().map(|(id, _)| id),
            self.client_id.as_ref(),
            from_assertion.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let first = names.first()?;
        names.iter().all(|n| n == first).then(|| (*first).clone())
    }
}

/// Why a client was not authenticated (always answered `invalid_client`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("méthode d'authentification différente de celle enregistrée")]
    WrongMethod,
    #[error("secret incorrect")]
    BadSecret,
    #[error("assertion refusée : {0}")]
    BadAssertion(&'static str),
    #[error("assertion déjà utilisée")]
    Replayed,
}

/// Checks the credentials against the client's registered method. `audiences` are the values
/// an assertion's `aud` may hold (the token endpoint's URL and the issuer).
pub async fn authenticate(
    pool: &PgPool,
    client: &Client,
    creds: &Credentials,
    audiences: &[&str],
) -> Result<(), AuthError> {
    match client.auth_method {
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
            let presented = match client.auth_method {
                AuthMethod::ClientSecretBasic if creds.client_secret.is_none() => {
                    creds.basic.as_ref().map(|(_, s)| s.as_str())
                }
                AuthMethod::ClientSecretPost if creds.basic.is_none() => {
                    creds.client_secret.as_deref()
                }
                _ => None,
            };
            if creds.client_assertion.is_some() {
                return Err(AuthError::WrongMethod);
            }
            let presented = presented.ok_or(AuthError::WrongMethod)?;
            let expected = client.secret_hash.as_deref().ok_or(AuthError::BadSecret)?;
            let hash = hex::encode(token_hash(presented));
            if constant_time_eq(&hash, &hex::encode(expected)) {
                Ok(())
            } else {
                Err(AuthError::BadSecret)
            }
        }
        AuthMethod::PrivateKeyJwt => {
            if creds.basic.is_some() || creds.client_secret.is_some() {
                return Err(AuthError::WrongMethod);
            }
            if creds.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
                return Err(AuthError::WrongMethod);
            }
            let assertion = creds
                .client_assertion
                .as_deref()
                .ok_or(AuthError::WrongMethod)?;
            let keys = client.jwks.as_ref().ok_or(AuthError::WrongMethod)?;
            let claims = jws::verify(assertion, &keys.keys)
                .map_err(|_| AuthError::BadAssertion("signature"))?;
            let id = client.client_id.as_str();
            if claims["iss"].as_str() != Some(id) || claims["sub"].as_str() != Some(id) {
                return Err(AuthError::BadAssertion("iss/sub"));
            }
            let aud_ok = match &claims["aud"] {
                Value::String(a) => audiences.contains(&a.as_str()),
                Value::Array(list) => list
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
                _ => false,
            };
            if !aud_ok {
                return Err(AuthError::BadAssertion("aud"));
            }
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let exp = claims["exp"]
                .as_i64()
                .ok_or(AuthError::BadAssertion("exp"))?;
            // Short-lived only: the replay store keeps jti until exp.
            if exp <= now || exp > now + 600 {
                return Err(AuthError::BadAssertion("exp"));
            }
            if claims["iat"].as_i64().is_some_and(|iat| iat > now + 60) {
                return Err(AuthError::BadAssertion("iat"));
            }
            let jti = claims["jti"]
                .as_str()
                .filter(|j| !j.is_empty() && j.len() <= 200)
                .ok_or(AuthError::BadAssertion("jti"))?;
            let fresh = sqlx::query(
                "INSERT INTO platform.oidc_assertions (client_id, jti, expires_at)
                 VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(jti)
            .bind(exp as f64)
            .execute(pool)
            .await
            .map_err(|_| AuthError::BadAssertion("stockage"))?;
            if fresh.rows_affected() == 0 {
                return Err(AuthError::Replayed);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("fc%3Aclient:s%2Bcr%C3%A9t")
        );
        assert_eq!(
            parse_basic(&header),
            Some(("fc:client".into(), "s+crét".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn uris_must_be_https_or_loopback_and_without_userinfo_or_fragment() {
        let dev = Environment::Development;
        for ok in [
            "https://fc.example/api/v2/oidc-callback",
            "https://fc.example:8443/cb?x=1",
            "http://127.0.0.1:4000/cb",
            "http://127.1.2.3/cb",
            "http://[::1]:4000/cb",
            "http://localhost:4000/cb",
        ] {
            assert_eq!(check_uri(ok, dev), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.org/cb",
            "http://127.0.0.1:4000@evil.example/cb",
            "http://127.0.0.1@evil.example/cb",
            "https://fc.example@evil.example/cb",
            "https://user:pw@fc.example/cb",
            "https://fc.example\\@evil.example/cb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://a.example/cb#x",
            "https://a.example/cb#",
            "javascript:alert(1)",
            "javascript://fc.example/%0Aalert(1)",
            "data:text/html,x",
            "//fc.example/cb",
            "/cb",
            "https://fc.example/c b",
            "https://fc.example/cb\n",
            "",
        ] {
            assert!(check_uri(bad, dev).is_err(), "{bad}");
        }
        let prod = Environment::Production;
        assert!(check_uri("https://fc.example/cb", prod).is_ok());
        for bad in [
            "http://127.0.0.1:4000/cb",
            "http://localhost/cb",
            "http://[::1]/cb",
        ] {
            assert!(check_uri(bad, prod).is_err(), "{bad}");
        }
    }

    #[test]
    fn claimed_client_needs_agreement() {
        let creds = Credentials {
            basic: Some(("a".into(), "s".into())),
            client_id: Some("b".into()),
            ..Credentials::default()
        };
        assert_eq!(creds.claimed_client(), None);
        let creds = Credentials {
            client_id: Some("a".into()),
            ..Credentials::default()
        };
        assert_eq!(creds.claimed_client(), Some("a".into()));
    }
}
