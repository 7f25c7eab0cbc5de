//! Typed configuration, loaded once at start: built-in defaults, then an optional TOML file
//! (`AC_CONFIG_FILE`), then environment variables `AC_<SECTION>__<KEY>` (for example
//! `AC_DATABASE__URL`). Secrets are `SecretString`: they never print.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's laptop or a demo: preview routes, plain HTTP cookies allowed.
    Development,
    /// The test suite.
    Test,
    /// Anything real, and the default when `AC_ENVIRONMENT` is absent: every secret set
    /// explicitly and distinct, https public URL and FranceConnect issuer.
    Production,
}

impl HttpSettings {
    /// Cookies are marked Secure whenever the platform is served over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// `scheme://host[:port]` of the public URL, compared with Origin headers.
    pub fn public_origin(&self) -> String {
        let url = self.public_url.trim_end_matches('/');
        match url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => url.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub environment: Environment,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    pub object_store: ObjectStoreSettings,
    pub telemetry: TelemetrySettings,
    pub web: WebSettings,
    pub security: SecuritySettings,
    pub franceconnect: FranceConnectSettings,
    /// Where the other services keep their documents: the vault in the same process (the
    /// default), or the document-vault-bridge's internal API when the services run apart.
    #[serde(default)]
    pub documents: DocumentsSettings,
    #[serde(default)]
    pub jobs: JobsSettings,
}

/// The scheduled jobs' worker: see [`crate::jobs::JobsSettings`].
pub use crate::jobs::JobsSettings;

/// `documents.vault_url` set: attestations are stored through the document-vault-bridge's
/// internal API (`{vault_url}/internal/documents`, with `vault_token` as bearer) instead of the
/// vault in this process. Links to documents are still signed here (`security.link_secret`,
/// shared with the bridge, which serves `/documents/*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentsSettings {
    /// Base URL of the bridge's internal listener, e.g. `http://document-vault-bridge:8001`.
    pub vault_url: Option<String>,
    /// This service's token, registered with `tenant-admin internal caller add` (stored there as a
    /// SHA-256 only).
    #[serde(serialize_with = "serialize_secret")]
    pub vault_token: SecretString,
}

impl Default for DocumentsSettings {
    fn default() -> Self {
        Self {
            vault_url: None,
            vault_token: SecretString::from(""),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecuritySettings {
    /// AES-256-GCM key encrypting TOTP seeds at rest: 32 bytes, base64.
    #[serde(serialize_with = "serialize_secret")]
    pub totp_key: SecretString,
    /// Version recorded with each encrypted seed (incremented at each key rotation).
    pub totp_key_version: i32,
    /// Earlier TOTP keys, still readable during a rotation: `version:base64key`,
    /// comma-separated (empty: none).
    #[serde(default, serialize_with = "serialize_secret")]
    pub totp_previous_keys: SecretString,
    /// AES-256-GCM master key wrapping the tenants' document keys: 32 bytes, base64.
    #[serde(serialize_with = "serialize_secret")]
    pub document_master_key: SecretString,
    pub document_master_key_version: i32,
    /// Earlier master keys, readable only (`version:base64key`, comma-separated).
    #[serde(default, serialize_with = "serialize_secret")]
    pub document_master_previous_keys: SecretString,
    /// HMAC key signing short-lived document links.
    #[serde(serialize_with = "serialize_secret")]
    pub link_secret: SecretString,
    /// ECDSA P-256 private scalar sealing the territories' journal checkpoints: 32 bytes,
    /// base64. Auditors get the public key.
    #[serde(serialize_with = "serialize_secret")]
    pub journal_signing_key: SecretString,
    /// AES-256-GCM key encrypting the identity provider's private signing keys at rest:
    /// 32 bytes, base64.
    #[serde(serialize_with = "serialize_secret")]
    pub idp_key_encryption_key: SecretString,
    /// Version recorded with each encrypted signing key.
    pub idp_key_encryption_key_version: i32,
    /// Earlier key-encryption keys, readable only (`version:base64key`, comma-separated).
    #[serde(default, serialize_with = "serialize_secret")]
    pub idp_key_encryption_previous_keys: SecretString,
    /// HMAC key deriving the pseudonymous `sub` the identity provider gives each client for a
    /// usager. Changing it changes every `sub`: it is never rotated.
    #[serde(serialize_with = "serialize_secret")]
    pub idp_subject_key: SecretString,
}

/// The platform as a FranceConnect client (identifying usagers when a mandate is made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FranceConnectSettings {
    /// Issuer, e.g. `https://fcp.integ01.dev-franceconnect.fr/api/v2`; its discovery document is
    /// at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Empty: mandate creation explains that FranceConnect is not configured.
    pub client_id: String,
    #[serde(serialize_with = "serialize_secret")]
    pub client_secret: SecretString,
    /// Every call to FranceConnect (discovery, keys, token) fails after this time.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// The internal listener (`/internal/*`, services calling each other), on the same host;
    /// never routed by the ingress. 0 picks a free port (tests).
    pub internal_port: u16,
    /// The address users reach the platform at, used in links sent by e-mail.
    pub public_url: String,
    /// Every route answers within this time or fails with 503.
    pub request_timeout_ms: u64,
    /// On SIGTERM, readiness answers 503 « draining » for this long before the listeners stop
    /// accepting (so a load balancer stops sending first); in-flight requests then have 20 s.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// The longest a client may take to send a request's head, from the connection's start or
    /// the previous response (so also how long a kept-alive connection may stay silent), then
    /// the connection is closed (`foundation::serve`). Longer than clients' and proxies' own
    /// idle limits (docs/OPERATIONS.md), or a request sent as it closes fails.
    #[serde(default = "default_head_read_timeout_ms")]
    pub head_read_timeout_ms: u64,
    /// Reverse proxies (addresses or CIDR blocks) whose `Forwarded` / `X-Forwarded-For`
    /// headers name the client. Empty (the default): those headers are ignored and the TCP
    /// peer is the client, so nobody can pick the address their attempts are counted under.
    /// In the environment: `AC_HTTP__TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// The application's login role: it owns nothing and is a member of no département role;
    /// territories are reached by logging in as their own role (see `tenant_role_secret`).
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    pub max_connections: u32,
    /// Derives the password of each département role (HMAC-SHA256 of the role's name); the
    /// migrator (`tenant-admin migrate`) and the services must have the same one.
    #[serde(serialize_with = "serialize_secret")]
    pub tenant_role_secret: SecretString,
    /// Most connections of one territory's pool (opened at first use, closed after 10 s
    /// unused).
    pub tenant_max_connections: u32,
    /// How long a request waits for a pooled connection before failing with 503.
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `none` (local relay), `starttls` or `tls`; the server's certificate is always verified.
    pub security: SmtpSecurity,
    /// A PEM file of certificate authorities trusted for the relay besides the system's (a
    /// relay certified by an internal authority).
    pub ca_file: Option<String>,
    pub username: Option<String>,
    #[serde(serialize_with = "serialize_opt_secret")]
    pub password: Option<SecretString>,
    pub from: String,
    /// The longest any one exchange with the relay may take: the connection to each of its
    /// addresses, then its greeting, encryption and login, each command, the goodbye.
    pub timeout_ms: u64,
    /// The longest the relay may take to answer a message's content (it may check the message
    /// before answering; RFC 5321 suggests waiting up to 10 minutes). A message left unanswered
    /// is uncertain, never sent again automatically (docs/MAIL.md).
    pub content_timeout_ms: u64,
    /// First retry delay after a failed delivery; it doubles at each attempt, up to an hour.
    pub retry_base_ms: u64,
    /// Most SMTP sessions the outbox consumer keeps open at once on one backlog: a second one
    /// opens while a full batch is claimed, up to this many (docs/MAIL.md); the national and
    /// the territories' outboxes each have their loop, so twice this many at most.
    pub sessions: u32,
}

/// The SMS channel: an HTTP gateway. With `provider = "none"` SMS messages wait in the outbox
/// (retried, then dead letters an operator re-queues once a gateway is configured).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmsSettings {
    pub provider: SmsProvider,
    /// Endpoint receiving one POST per message (`http_json`, see docs/MAIL.md; for `brevo`,
    /// `https://api.brevo.com/v3/transactionalSMS/send`).
    pub gateway_url: String,
    /// Sent as `Authorization: Bearer …` (`http_json`) or `api-key: …` (`brevo`).
    #[serde(serialize_with = "serialize_secret")]
    pub api_token: SecretString,
    /// Sender name shown on the phone (11 characters at most with most operators).
    pub sender: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    None,
    /// JSON `{to, text, sender}` with an `Idempotency-Key` header: the gateway must not send a
    /// message twice for the same key, which makes retries after a lost answer safe.
    HttpJson,
    /// Brevo's transactional SMS API (`POST …/v3/transactionalSMS/send`, header `api-key`,
    /// JSON `{sender, recipient, content, type}`). It has no idempotency key: a request whose
    /// answer is lost is never resent automatically (it waits for an operator, as with SMTP).
    Brevo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreSettings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    #[serde(serialize_with = "serialize_secret")]
    pub secret_access_key: SecretString,
    pub bucket: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// `tracing_subscriber` filter, e.g. `info,sqlx=warn`.
    pub log_filter: String,
    /// Base URL of an OTLP/HTTP receiver (`/v1/traces` is appended); none disables export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebSettings {
    /// The `dist` folder of the `@gouvfr/dsfr` npm package, served under `/dsfr`.
    pub dsfr_dir: PathBuf,
}

/// A list of networks, as a list or as one comma-separated string (an environment variable);
/// a bare address is a network of one.
fn networks<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(de)? {
        Raw::One(s) => s.split(',').map(str::to_owned).collect(),
        Raw::Many(v) => v,
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "http.trusted_proxies : « {s} » n'est ni une adresse IP ni un réseau CIDR"
                    ))
                })
        })
        .collect()
}

fn serialize_secret<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

fn serialize_opt_secret<S: serde::Serializer>(
    s: &Option<SecretString>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// Placeholder credentials of the local stack only; refused in production.
const LOCAL_DATABASE_URL: &str = "postgres://aidants_app:aidants_app@127.0.0.1:5432/aidants";
const LOCAL_S3_SECRET: &str = "local-secret-key";
/// Development and tests only.
const LOCAL_LINK_SECRET: &str = "local-link-secret";
const LOCAL_TENANT_ROLE_SECRET: &str = "local-tenant-role-secret";
const LOCAL_JOURNAL_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const LOCAL_IDP_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const LOCAL_SUBJECT_KEY: &str = "local-subject-key";
const LOCAL_SMS_TOKEN: &str = "local-sms-token";
/// 32 zero bytes: development and tests only.
const LOCAL_TOTP_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Absent = production: forgetting the variable can never relax a check.
            environment: Environment::Production,
            http: HttpSettings {
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8000,
                internal_port: 8001,
                public_url: "http://127.0.0.1:8000".into(),
                request_timeout_ms: 10_000,
                drain_ms: default_drain_ms(),
                head_read_timeout_ms: default_head_read_timeout_ms(),
                trusted_proxies: Vec::new(),
            },
            database: DatabaseSettings {
                url: LOCAL_DATABASE_URL.into(),
                max_connections: 16,
                acquire_timeout_ms: 2_000,
                tenant_role_secret: LOCAL_TENANT_ROLE_SECRET.into(),
                tenant_max_connections: 8,
            },
            smtp: SmtpSettings {
                host: "127.0.0.1".into(),
                port: 1025,
                security: SmtpSecurity::None,
                ca_file: None,
                username: None,
                password: None,
                from: "Aidants Connect <ne-pas-repondre@aidantsconnect.beta.gouv.fr>".into(),
                timeout_ms: 10_000,
                content_timeout_ms: 60_000,
                retry_base_ms: 2_000,
                sessions: 4,
            },
            sms: SmsSettings {
                provider: SmsProvider::None,
                gateway_url: String::new(),
                api_token: LOCAL_SMS_TOKEN.into(),
                sender: "AidantsCo".into(),
                timeout_ms: 5_000,
            },
            object_store: ObjectStoreSettings {
                endpoint: "http://127.0.0.1:8333".into(),
                region: "us-east-1".into(),
                access_key_id: "local-access-key".into(),
                secret_access_key: LOCAL_S3_SECRET.into(),
                bucket: "aidants-connect".into(),
                timeout_ms: 5_000,
            },
            telemetry: TelemetrySettings {
                log_filter: "info,sqlx=warn".into(),
                otlp_endpoint: None,
                service_name: "aidants-connect".into(),
            },
            web: WebSettings {
                dsfr_dir: PathBuf::from("infra/node_modules/@gouvfr/dsfr/dist"),
            },
            security: SecuritySettings {
                totp_key: LOCAL_TOTP_KEY.into(),
                totp_key_version: 1,
                totp_previous_keys: String::new().into(),
                document_master_key: LOCAL_TOTP_KEY.into(),
                document_master_key_version: 1,
                document_master_previous_keys: String::new().into(),
                link_secret: LOCAL_LINK_SECRET.into(),
                journal_signing_key: LOCAL_JOURNAL_KEY.into(),
                idp_key_encryption_key: LOCAL_IDP_KEY.into(),
                idp_key_encryption_key_version: 1,
                idp_key_encryption_previous_keys: String::new().into(),
                idp_subject_key: LOCAL_SUBJECT_KEY.into(),
            },
            franceconnect: FranceConnectSettings {
                issuer: "http://127.0.0.1:9/api/v2".into(),
                client_id: String::new(),
                client_secret: String::new().into(),
                timeout_ms: 5_000,
            },
            documents: DocumentsSettings::default(),
            jobs: JobsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration illisible : {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("configuration refusée en production : {0} doit être défini explicitement")]
    DefaultSecretInProduction(&'static str),
    #[error("configuration refusée en production : {0} doit commencer par https://")]
    InsecureUrlInProduction(&'static str),
    #[error("configuration refusée en production : {0} et {1} doivent être des clés différentes")]
    SharedKeyInProduction(&'static str, &'static str),
}

impl Settings {
    /// Defaults, then `AC_CONFIG_FILE` if set, then `AC_*` environment variables.
    pub fn load() -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Ok(file) = std::env::var("AC_CONFIG_FILE") {
            figment = figment.merge(Toml::file_exact(file));
        }
        let settings: Settings = figment
            .merge(Env::prefixed("AC_").split("__"))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// How the département roles log in, for a process that needs nothing else of the
    /// settings (the migrator): the same sources as `load`, and in production the secret must
    /// be set.
    pub fn load_tenant_login() -> Result<crate::tenancy::TenantLogin, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Ok(file) = std::env::var("AC_CONFIG_FILE") {
            figment = figment.merge(Toml::file_exact(file));
        }
        let settings: Settings = figment
            .merge(Env::prefixed("AC_").split("__"))
            .extract()
            .map_err(Box::new)?;
        settings.check_tenant_role_secret()?;
        Ok(crate::tenancy::TenantLogin::from_settings(
            &settings.database,
        ))
    }

    fn check_tenant_role_secret(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production
            && self.database.tenant_role_secret.expose_secret() == LOCAL_TENANT_ROLE_SECRET
        {
            return Err(ConfigError::DefaultSecretInProduction(
                "AC_DATABASE__TENANT_ROLE_SECRET",
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production {
            if self.database.url.expose_secret() == LOCAL_DATABASE_URL {
                return Err(ConfigError::DefaultSecretInProduction("AC_DATABASE__URL"));
            }
            self.check_tenant_role_secret()?;
            if self.security.totp_key.expose_secret() == LOCAL_TOTP_KEY {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__TOTP_KEY",
                ));
            }
            if self.security.document_master_key.expose_secret() == LOCAL_TOTP_KEY {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__DOCUMENT_MASTER_KEY",
                ));
            }
            if self.security.link_secret.expose_secret() == LOCAL_LINK_SECRET {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__LINK_SECRET",
                ));
            }
            if self.security.journal_signing_key.expose_secret() == LOCAL_JOURNAL_KEY {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__JOURNAL_SIGNING_KEY",
                ));
            }
            if self.security.idp_key_encryption_key.expose_secret() == LOCAL_IDP_KEY {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY",
                ));
            }
            if self.security.idp_subject_key.expose_secret() == LOCAL_SUBJECT_KEY {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_SECURITY__IDP_SUBJECT_KEY",
                ));
            }
            if self.sms.provider != SmsProvider::None
                && self.sms.api_token.expose_secret() == LOCAL_SMS_TOKEN
            {
                return Err(ConfigError::DefaultSecretInProduction("AC_SMS__API_TOKEN"));
            }
            // The token travels with every message: never in clear.
            if self.sms.provider != SmsProvider::None
                && !self.sms.gateway_url.starts_with("https://")
            {
                return Err(ConfigError::InsecureUrlInProduction("AC_SMS__GATEWAY_URL"));
            }
            if self.object_store.secret_access_key.expose_secret() == LOCAL_S3_SECRET {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_OBJECT_STORE__SECRET_ACCESS_KEY",
                ));
            }
            if self.franceconnect.client_secret.expose_secret().is_empty() {
                return Err(ConfigError::DefaultSecretInProduction(
                    "AC_FRANCECONNECT__CLIENT_SECRET",
                ));
            }
            // Links in e-mails, Secure cookies and HSTS all follow from an https public URL.
            if !self.http.public_url.starts_with("https://") {
                return Err(ConfigError::InsecureUrlInProduction("AC_HTTP__PUBLIC_URL"));
            }
            // The client secret and the usager's identity travel to and from the issuer.
            if !self.franceconnect.issuer.starts_with("https://") {
                return Err(ConfigError::InsecureUrlInProduction(
                    "AC_FRANCECONNECT__ISSUER",
                ));
            }
            // One key per purpose: a key leaked or rotated for one use never opens another.
            let keys = [
                ("AC_SECURITY__TOTP_KEY", &self.security.totp_key),
                (
                    "AC_SECURITY__DOCUMENT_MASTER_KEY",
                    &self.security.document_master_key,
                ),
                ("AC_SECURITY__LINK_SECRET", &self.security.link_secret),
                (
                    "AC_SECURITY__JOURNAL_SIGNING_KEY",
                    &self.security.journal_signing_key,
                ),
                (
                    "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY",
                    &self.security.idp_key_encryption_key,
                ),
                (
                    "AC_SECURITY__IDP_SUBJECT_KEY",
                    &self.security.idp_subject_key,
                ),
            ];
            for (i, (first, a)) in keys.iter().enumerate() {
                for (second, b) in &keys[i + 1..] {
                    if a.expose_secret() == b.expose_secret() {
                        return Err(ConfigError::SharedKeyInProduction(first, second));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Two minutes: past ingress-nginx's 60 s and reqwest's 90 s.
fn default_head_read_timeout_ms() -> u64 {
    120_000
}

/// Five seconds: a Kubernetes readiness probe every 2 s notices twice before the stop.
fn default_drain_ms() -> u64 {
    5_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_the_default_tenant_role_secret() {
        let mut settings = production();
        settings.database.tenant_role_secret = Settings::default().database.tenant_role_secret;
        assert!(
            refusal(&settings).contains("AC_DATABASE__TENANT_ROLE_SECRET"),
            "{}",
            refusal(&settings)
        );
    }

    #[test]
    fn production_refuses_the_local_sms_token_and_a_plain_http_gateway() {
        let mut settings = production();
        settings.sms.provider = SmsProvider::HttpJson;
        assert!(matches!(
            settings.validate(),
            Err(ConfigError::DefaultSecretInProduction("AC_SMS__API_TOKEN"))
        ));
        settings.sms.api_token = "real".into();
        assert!(matches!(
            settings.validate(),
            Err(ConfigError::InsecureUrlInProduction("AC_SMS__GATEWAY_URL"))
        ));
        settings.sms.gateway_url = "https://api.brevo.com/v3/transactionalSMS/send".into();
        settings.sms.provider = SmsProvider::Brevo;
        assert!(settings.validate().is_ok());
    }

    /// Settings a real deployment would have: every secret its own, https everywhere.
    fn production() -> Settings {
        let mut s = Settings {
            environment: Environment::Production,
            ..Settings::default()
        };
        s.http.public_url = "https://aidantsconnect.beta.gouv.fr".into();
        s.database.url = "postgres://app:real@db/aidants".into();
        s.database.tenant_role_secret = "real-tenant-role".into();
        s.object_store.secret_access_key = "real-s3".into();
        s.security.totp_key = "dG90cA==".into();
        s.security.document_master_key = "ZG9jdW1lbnQ=".into();
        s.security.link_secret = "real-link".into();
        s.security.journal_signing_key = "am91cm5hbA==".into();
        s.security.idp_key_encryption_key = "aWRw".into();
        s.security.idp_subject_key = "real-subject".into();
        s.franceconnect.issuer = "https://oidc.franceconnect.gouv.fr/api/v2".into();
        s.franceconnect.client_id = "aidants-connect".into();
        s.franceconnect.client_secret = "real-fc".into();
        s
    }

    fn refusal(settings: &Settings) -> String {
        settings
            .validate()
            .expect_err("la production doit refuser")
            .to_string()
    }

    #[test]
    fn a_complete_production_configuration_is_accepted() {
        production().validate().expect("configuration complète");
    }

    #[test]
    fn an_absent_environment_means_production() {
        assert_eq!(Settings::default().environment, Environment::Production);
        // Loaded with nothing set, the built-in secrets are refused.
        let loaded: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .extract()
            .expect("extraction");
        assert!(loaded.validate().is_err());
    }

    #[test]
    fn production_refuses_a_plain_http_public_url() {
        let mut s = production();
        s.http.public_url = "http://aidantsconnect.beta.gouv.fr".into();
        assert!(
            refusal(&s).contains("AC_HTTP__PUBLIC_URL"),
            "{}",
            refusal(&s)
        );
    }

    #[test]
    fn production_refuses_a_plain_http_franceconnect_issuer() {
        let mut s = production();
        s.franceconnect.issuer = "http://fc.example/api/v2".into();
        assert!(
            refusal(&s).contains("AC_FRANCECONNECT__ISSUER"),
            "{}",
            refusal(&s)
        );
    }

    #[test]
    fn production_refuses_an_unset_franceconnect_secret() {
        let mut s = production();
        s.franceconnect.client_secret = String::new().into();
        assert!(
            refusal(&s).contains("AC_FRANCECONNECT__CLIENT_SECRET"),
            "{}",
            refusal(&s)
        );
    }

    #[test]
    fn production_refuses_each_built_in_secret() {
        let local = Settings::default();
        type Reset = fn(&mut Settings, &Settings);
        let cases: [(&str, Reset); 8] = [
            ("AC_DATABASE__URL", |s, l| {
                s.database.url = l.database.url.clone()
            }),
            ("AC_OBJECT_STORE__SECRET_ACCESS_KEY", |s, l| {
                s.object_store.secret_access_key = l.object_store.secret_access_key.clone()
            }),
            ("AC_SECURITY__TOTP_KEY", |s, l| {
                s.security.totp_key = l.security.totp_key.clone()
            }),
            ("AC_SECURITY__DOCUMENT_MASTER_KEY", |s, l| {
                s.security.document_master_key = l.security.document_master_key.clone()
            }),
            ("AC_SECURITY__LINK_SECRET", |s, l| {
                s.security.link_secret = l.security.link_secret.clone()
            }),
            ("AC_SECURITY__JOURNAL_SIGNING_KEY", |s, l| {
                s.security.journal_signing_key = l.security.journal_signing_key.clone()
            }),
            ("AC_SECURITY__IDP_KEY_ENCRYPTION_KEY", |s, l| {
                s.security.idp_key_encryption_key = l.security.idp_key_encryption_key.clone()
            }),
            ("AC_SECURITY__IDP_SUBJECT_KEY", |s, l| {
                s.security.idp_subject_key = l.security.idp_subject_key.clone()
            }),
        ];
        for (name, reset) in cases {
            let mut s = production();
            reset(&mut s, &local);
            assert!(refusal(&s).contains(name), "{name}: {}", refusal(&s));
        }
    }

    #[test]
    fn production_refuses_one_key_used_for_two_purposes() {
        let mut s = production();
        s.security.document_master_key = s.security.totp_key.clone();
        let refused = refusal(&s);
        assert!(
            refused.contains("AC_SECURITY__TOTP_KEY")
                && refused.contains("AC_SECURITY__DOCUMENT_MASTER_KEY"),
            "{refused}"
        );
        let mut s = production();
        s.security.idp_subject_key = s.security.link_secret.clone();
        let refused = refusal(&s);
        assert!(
            refused.contains("AC_SECURITY__LINK_SECRET")
                && refused.contains("AC_SECURITY__IDP_SUBJECT_KEY"),
            "{refused}"
        );
    }

    #[test]
    fn trusted_proxies_read_as_a_list_or_a_comma_separated_string() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "networks")]
            n: Vec<ipnet::IpNet>,
        }
        let from_env: T =
            serde_json::from_str(r#"{"n": "10.0.0.0/8, 192.0.2.7"}"#).expect("chaîne");
        assert_eq!(
            from_env.n,
            vec![
                "10.0.0.0/8".parse::<ipnet::IpNet>().expect("réseau"),
                "192.0.2.7/32".parse().expect("réseau")
            ]
        );
        let from_file: T = serde_json::from_str(r#"{"n": ["2001:db8::/32"]}"#).expect("liste");
        assert_eq!(from_file.n.len(), 1);
        assert!(serde_json::from_str::<T>(r#"{"n": "ingress"}"#).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings::default();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("aidants_app:aidants_app"), "{printed}");
        assert!(!printed.contains(LOCAL_S3_SECRET));
    }
}
