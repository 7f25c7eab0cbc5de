//! The platform as a FranceConnect (v2) client, identifying the usager when a mandate is made
//! (franceconnect.md §A): authorization code flow, `client_secret_post`, id_token and signed
//! userinfo verified against FranceConnect's JWK set (cached, refetched on an unknown `kid`),
//! every claim checked, then FranceConnect logout. FranceConnect's access token is used once
//! for userinfo and never stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation::config::FranceConnectSettings;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::RwLock;

use crate::jws::{self, Jwk, JwkSet, JwsError};

/// The pivot identity FranceConnect asserted, as we keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    pub given_name: String,
    pub family_name: String,
    pub preferred_username: Option<String>,
    pub birthdate: String,
    pub gender: String,
    pub birthplace: String,
    pub birthcountry: String,
    pub email: Option<String>,
}

impl Identity {
    /// "Angela Claire Louise DUBOIS", with the usage name when there is one.
    pub fn display_name(&self) -> String {
        match &self.preferred_username {
            Some(usage) if !usage.is_empty() && usage != &self.family_name => format!(
                "{} {} (nom d'usage {})",
                self.given_name, self.family_name, usage
            ),
            _ => format!("{} {}", self.given_name, self.family_name),
        }
    }
}

/// What can go wrong; every variant has a French explanation for the aidant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FcError {
    #[error(
        "FranceConnect n'est pas configuré sur cette plateforme ; contactez l'équipe technique."
    )]
    NotConfigured,
    #[error("FranceConnect ne répond pas. Réessayez dans quelques minutes.")]
    Unavailable,
    #[error(
        "La réponse de FranceConnect n'a pas pu être vérifiée ({0}). Recommencez l'identification de la personne."
    )]
    Invalid(String),
    #[error(
        "L'identité transmise par FranceConnect est incomplète ou incorrecte ({0}). La personne doit contacter FranceConnect ; le mandat ne peut pas être créé."
    )]
    BadIdentity(String),
}

impl From<JwsError> for FcError {
    fn from(e: JwsError) -> Self {
        FcError::Invalid(e.to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    end_session_endpoint: String,
    jwks_uri: String,
}

struct Provider {
    meta: Discovery,
    keys: Vec<Jwk>,
    fetched_at: Instant,
}

/// How long discovery and keys are trusted before being fetched again.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the key set, at most this often.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `iat` and `exp`.
const SKEW_SECONDS: i64 = 30;

/// The FranceConnect client of one platform process.
#[derive(Clone)]
pub struct FcClient {
    settings: Arc<FranceConnectSettings>,
    redirect_uri: Arc<str>,
    post_logout_redirect_uri: Arc<str>,
    http: reqwest::Client,
    cache: Arc<RwLock<Option<Arc<Provider>>>>,
}

/// The scopes franceconnect.md §A asks for.
pub const SCOPES: &str = "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username";

impl FcClient {
    /// The client of the aidant's creation flow (`/mandats/franceconnect/…`).
    pub fn new(settings: &FranceConnectSettings, public_origin: &str) -> Self {
        Self::at(settings, public_origin, "/mandats/franceconnect")
    }

    /// The same FranceConnect client (so the same pairwise subject) returning to `base`'s
    /// `/retour` and `/deconnexion` (the usager's space uses `/mes-mandats/franceconnect`).
    pub fn at(settings: &FranceConnectSettings, public_origin: &str, base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        FcClient {
            settings: Arc::new(settings.clone()),
            redirect_uri: format!("{public_origin}{base}/retour").into(),
            post_logout_redirect_uri: format!("{public_origin}{base}/deconnexion").into(),
            http,
            cache: Default::default(),
        }
    }

    pub fn configured(&self) -> bool {
        !self.settings.client_id.is_empty()
    }

    async fn fetch_provider(&self) -> Result<Arc<Provider>, FcError> {
        let issuer = self.settings.issuer.trim_end_matches('/');
        let meta: Discovery = self
            .http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| FcError::Unavailable)?
            .json()
            .await
            .map_err(|_| FcError::Invalid("document de découverte illisible".into()))?;
        if meta.issuer != issuer {
            return Err(FcError::Invalid("émetteur inattendu".into()));
        }
        let keys: JwkSet = self
            .http
            .get(&meta.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| FcError::Unavailable)?
            .json()
            .await
            .map_err(|_| FcError::Invalid("jeu de clés illisible".into()))?;
        let provider = Arc::new(Provider {
            meta,
            keys: keys.keys,
            fetched_at: Instant::now(),
        });
        *self.cache.write().await = Some(provider.clone());
        Ok(provider)
    }

    async fn provider(&self) -> Result<Arc<Provider>, FcError> {
        if !self.configured() {
            return Err(FcError::NotConfigured);
        }
        if let Some(p) = self.cache.read().await.as_ref()
            && p.fetched_at.elapsed() < CACHE_FOR
        {
            return Ok(p.clone());
        }
        self.fetch_provider().await
    }

    /// Verifies a JWS from FranceConnect; an unknown `kid` refetches the key set once.
    async fn verify_jws(&self, token: &str) -> Result<Value, FcError> {
        let provider = self.provider().await?;
        match jws::verify(token, &provider.keys) {
            Err(JwsError::UnknownKey) if provider.fetched_at.elapsed() >= REFETCH_AT_MOST_EVERY => {
                let fresh = self.fetch_provider().await?;
                Ok(jws::verify(token, &fresh.keys)?)
            }
            other => Ok(other?),
        }
    }

    /// Where to send the browser: FranceConnect's authorize endpoint.
    pub async fn authorize_url(&self, state: &str, nonce: &str) -> Result<String, FcError> {
        let provider = self.provider().await?;
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("redirect_uri", &self.redirect_uri),
            ("scope", SCOPES),
            ("acr_values", "eidas1"),
            ("state", state),
            ("nonce", nonce),
            ("prompt", "login consent"),
        ])
        .map_err(|_| FcError::Invalid("paramètres".into()))?;
        Ok(format!("{}?{query}", provider.meta.authorization_endpoint))
    }

    /// Where to log the usager out of FranceConnect once their identity is captured.
    pub async fn logout_url(&self, id_token: &str, state: &str) -> Result<String, FcError> {
        let provider = self.provider().await?;
        let query = serde_urlencoded::to_string([
            ("id_token_hint", id_token),
            ("state", state),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
        ])
        .map_err(|_| FcError::Invalid("paramètres".into()))?;
        Ok(format!("{}?{query}", provider.meta.end_session_endpoint))
    }

    /// Redeems the code, verifies the id_token and the signed userinfo, and returns the
    /// identity with the id_token (for the logout hint only).
    pub async fn identify(
        &self,
        code: &str,
        expected_nonce: &str,
    ) -> Result<(Identity, String), FcError> {
        let provider = self.provider().await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            id_token: String,
        }
        let response = self
            .http
            .post(&provider.meta.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.expose_secret()),
            ])
            .send()
            .await
            .map_err(|_| FcError::Unavailable)?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(if status.is_server_error() {
                FcError::Unavailable
            } else {
                FcError::Invalid("code refusé ou expiré".into())
            });
        }
        let tokens: TokenResponse = response
            .json()
            .await
            .map_err(|_| FcError::Invalid("réponse du jeton illisible".into()))?;
        let id_claims = self.verify_jws(&tokens.id_token).await?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        check_id_token(
            &id_claims,
            &provider.meta.issuer,
            &self.settings.client_id,
            expected_nonce,
            now,
        )?;
        let sub = id_claims["sub"].as_str().unwrap_or_default().to_owned();

        let userinfo = self
            .http
            .get(&provider.meta.userinfo_endpoint)
            .bearer_auth(&tokens.access_token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| FcError::Unavailable)?
            .text()
            .await
            .map_err(|_| FcError::Unavailable)?;
        drop(tokens.access_token);
        let info = self.verify_jws(&userinfo).await?;
        if info["iss"] != provider.meta.issuer.as_str()
            || !audience_is(&info["aud"], &self.settings.client_id)
        {
            return Err(FcError::Invalid(
                "informations d'identité d'un autre émetteur".into(),
            ));
        }
        if info["sub"].as_str() != Some(sub.as_str()) {
            return Err(FcError::Invalid(
                "identifiant de la personne incohérent".into(),
            ));
        }
        Ok((identity_from(&info)?, tokens.id_token))
    }
}

fn audience_is(aud: &Value, client_id: &str) -> bool {
    match aud {
        Value::String(a) => a == client_id,
        Value::Array(list) => list.len() == 1 && list[0] == client_id,
        _ => false,
    }
}

/// The id_token checks of franceconnect.md §A, on verified claims.
pub fn check_id_token(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), FcError> {
    let invalid = |what: &str| Err(FcError::Invalid(what.into()));
    if claims["iss"].as_str() != Some(issuer) {
        return invalid("émetteur inattendu");
    }
    if !audience_is(&claims["aud"], client_id) {
        return invalid("jeton destiné à un autre service");
    }
    let Some(exp) = claims["exp"].as_i64() else {
        return invalid("expiration absente");
    };
    if exp + SKEW_SECONDS < now {
        return invalid("jeton expiré");
    }
    let Some(iat) = claims["iat"].as_i64() else {
        return invalid("date d'émission absente");
    };
    if iat > now + SKEW_SECONDS || iat < now - 600 {
        return invalid("date d'émission incohérente");
    }
    if claims["nonce"].as_str() != Some(nonce) {
        return invalid("nonce différent de celui de la demande");
    }
    if !matches!(claims["acr"].as_str(), Some("eidas1" | "eidas2" | "eidas3")) {
        return invalid("niveau d'authentification insuffisant");
    }
    if claims["sub"]
        .as_str()
        .is_none_or(|s| s.is_empty() || s.len() > 255)
    {
        return invalid("identifiant de la personne absent");
    }
    Ok(())
}

fn is_insee_commune(code: &str) -> bool {
    code.len() == 5 && foundation::tenancy::CommuneCode::parse(code).is_ok()
}

/// The identity from verified userinfo claims, checked as franceconnect.md §A describes.
pub fn identity_from(info: &Value) -> Result<Identity, FcError> {
    let text = |k: &str| info[k].as_str().map(str::trim).filter(|s| !s.is_empty());
    let missing = |k: &str| FcError::BadIdentity(format!("« {k} » manquant"));
    let sub = text("sub").ok_or_else(|| missing("sub"))?.to_owned();
    let given_name = text("given_name")
        .ok_or_else(|| missing("given_name"))?
        .to_owned();
    let family_name = text("family_name")
        .ok_or_else(|| missing("family_name"))?
        .to_owned();
    let birthdate = text("birthdate")
        .ok_or_else(|| missing("birthdate"))?
        .to_owned();
    let valid_date = {
        let b = birthdate.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && birthdate[..4]
                .parse::<u16>()
                .is_ok_and(|y| (1850..=2100).contains(&y))
            && birthdate[5..7].parse::<u8>().is_ok_and(|m| m <= 12)
            && birthdate[8..].parse::<u8>().is_ok_and(|d| d <= 31)
    };
    if !valid_date {
        return Err(FcError::BadIdentity("date de naissance invalide".into()));
    }
    let gender = text("gender").ok_or_else(|| missing("gender"))?.to_owned();
    if gender != "male" && gender != "female" {
        return Err(FcError::BadIdentity("sexe invalide".into()));
    }
    let birthcountry = text("birthcountry")
        .ok_or_else(|| missing("birthcountry"))?
        .to_owned();
    if birthcountry.len() != 5 || !birthcountry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FcError::BadIdentity("pays de naissance invalide".into()));
    }
    let birthplace = info["birthplace"].as_str().unwrap_or("").trim().to_owned();
    if birthcountry == "99100" {
        if !is_insee_commune(&birthplace) {
            return Err(FcError::BadIdentity("commune de naissance invalide".into()));
        }
    } else if !birthplace.is_empty() {
        return Err(FcError::BadIdentity(
            "commune de naissance donnée pour une naissance à l'étranger".into(),
        ));
    }
    Ok(Identity {
        sub,
        given_name,
        family_name,
        preferred_username: text("preferred_username").map(str::to_owned),
        birthdate,
        gender,
        birthplace,
        birthcountry,
        email: text("email").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(now: i64) -> Value {
        json!({"iss": "https://fc/api/v2", "aud": "client", "sub": "abc", "iat": now, "exp": now + 60,
               "nonce": "n", "acr": "eidas1"})
    }

    #[test]
    fn each_id_token_check_refuses_its_case() {
        let now = 1_800_000_000;
        let ok = claims(now);
        assert_eq!(
            check_id_token(&ok, "https://fc/api/v2", "client", "n", now),
            Ok(())
        );
        let cases: Vec<(&str, Value)> = vec![
            ("iss", json!("https://evil/api/v2")),
            ("aud", json!("other")),
            ("aud", json!(["client", "other"])),
            ("exp", json!(now - 120)),
            ("iat", json!(now + 600)),
            ("nonce", json!("m")),
            ("acr", json!("eidas0")),
            ("sub", json!("")),
        ];
        for (field, value) in cases {
            let mut c = ok.clone();
            c[field] = value.clone();
            assert!(
                check_id_token(&c, "https://fc/api/v2", "client", "n", now).is_err(),
                "{field} = {value} accepted"
            );
        }
    }

    #[test]
    fn identities_follow_franceconnect_formats() {
        let base = json!({"sub": "s", "given_name": "Elena", "family_name": "ROSSI", "birthdate": "1990-00-00",
                          "gender": "female", "birthplace": "", "birthcountry": "99127"});
        let abroad = identity_from(&base).expect("born abroad, unknown month and day");
        assert_eq!(abroad.birthplace, "");
        let mut corsica = base.clone();
        corsica["birthcountry"] = json!("99100");
        corsica["birthplace"] = json!("2A004");
        assert!(identity_from(&corsica).is_ok());
        corsica["birthplace"] = json!("99999");
        assert!(matches!(
            identity_from(&corsica),
            Err(FcError::BadIdentity(_))
        ));
        let mut missing = base.clone();
        missing.as_object_mut().map(|o| o.remove("birthdate"));
        assert!(matches!(
            identity_from(&missing),
            Err(FcError::BadIdentity(_))
        ));
        let mut gender = base;
        gender["gender"] = json!("x");
        assert!(identity_from(&gender).is_err());
    }
}
