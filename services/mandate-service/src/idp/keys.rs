//! The identity provider's signing keys: generated here, stored encrypted (AES-256-GCM) in the
//! platform schema, published in the JWK set from their creation, used from `signs_from`, and
//! unpublished long after their successor took over. Each process keeps the decrypted keys and
//! the JWK set in memory and reads the table again when what it read is older than
//! [`RELOAD_EVERY`]; a rotation must leave at least [`MIN_PUBLISH_DELAY`] between publication
//! and first signature, so every replica publishes a key before any replica signs with it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use foundation::auth::secrets::SeedCipher;
use rsa::Generate;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::Value;
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::jws::{self, Jwk, JwkSet};

/// How often a process reads the key table again (keys to sign with and the published set).
pub const RELOAD_EVERY: StdDuration = StdDuration::from_secs(5);
/// Shortest time a rotation may leave between publishing a key and signing with it: twice the
/// reload period, so that every replica publishes the key before any replica signs with it.
pub const MIN_PUBLISH_DELAY: Duration = Duration::seconds(2 * RELOAD_EVERY.as_secs() as i64);
/// Default time between publishing a new key and signing with it: longer than any client's
/// JWK-set cache is likely to be (clients also refetch on an unknown `kid`).
pub const DEFAULT_PUBLISH_DELAY: Duration = Duration::hours(1);
/// Default time an old key stays published after its successor signs: far beyond the 60 s
/// every token it signed lives (and id_token hints presented at logout).
pub const DEFAULT_RETENTION: Duration = Duration::hours(24);

/// The signature algorithms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::Es256),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }
}

enum Private {
    Ec(jws::Es256Signer),
    Rsa(jws::Rs256Signer),
}

/// A private key ready to sign.
pub struct Signer {
    pub kid: String,
    pub alg: Alg,
    private: Private,
}

impl Signer {
    /// A compact JWS of `claims`, naming this key.
    pub fn sign(&self, claims: &Value) -> Result<String, KeyError> {
        match &self.private {
            Private::Ec(k) => k.sign(claims, &self.kid),
            Private::Rsa(k) => k.sign(claims, &self.kid),
        }
        .map_err(KeyError::Signing)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("base de données : {0}")]
    Database(#[from] sqlx::Error),
    #[error("clé de signature illisible ({0})")]
    Unreadable(String),
    #[error("signature impossible ({0})")]
    Signing(String),
    #[error("aucune clé de signature {0} en service : lancer `tenant-admin idp keys rotate`")]
    NoKey(&'static str),
    #[error(
        "délai de publication trop court : au moins {} s (chaque processus relit les clés toutes les {} s)",
        MIN_PUBLISH_DELAY.whole_seconds(),
        RELOAD_EVERY.as_secs()
    )]
    PublishDelayTooShort,
}

fn random_kid() -> String {
    let token = foundation::auth::secrets::new_token();
    token[..16].to_owned()
}

/// A new key: (private bytes to encrypt, public JWK).
fn generate(alg: Alg, kid: &str) -> Result<(Vec<u8>, Jwk), KeyError> {
    match alg {
        Alg::Es256 => loop {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                return Ok((bytes.to_vec(), jws::es256_jwk(&key, kid)));
            }
        },
        Alg::Rs256 => {
            let key = rsa::PrivateKey::generate();
            let der = key
                .to_pkcs1_der()
                .map_err(|e| KeyError::Unreadable(e.to_string()))?;
            Ok((der.as_bytes().to_vec(), jws::rs256_jwk(&key, kid)))
        }
    }
}

fn parse_private(alg: Alg, bytes: &[u8]) -> Result<Private, KeyError> {
    match alg {
        Alg::Es256 => p256::ecdsa::SigningKey::from_slice(bytes)
            .map_err(|e| e.to_string())
            .and_then(|k| jws::Es256Signer::new(&k))
            .map(Private::Ec)
            .map_err(KeyError::Unreadable),
        Alg::Rs256 => jws::Rs256Signer::from_pkcs1_der(bytes)
            .map(Private::Rsa)
            .map_err(KeyError::Unreadable),
    }
}

/// Creates a key of `alg` that signs from `now + publish_delay` (at least
/// [`MIN_PUBLISH_DELAY`]), and schedules the end of publication of every older key of that
/// algorithm `retention` after that. Returns its kid.
pub async fn rotate(
    pool: &PgPool,
    cipher: &SeedCipher,
    alg: Alg,
    publish_delay: Duration,
    retention: Duration,
) -> Result<String, KeyError> {
    if publish_delay < MIN_PUBLISH_DELAY {
        return Err(KeyError::PublishDelayTooShort);
    }
    insert_key(pool, cipher, alg, publish_delay, retention).await
}

async fn insert_key(
    pool: &PgPool,
    cipher: &SeedCipher,
    alg: Alg,
    publish_delay: Duration,
    retention: Duration,
) -> Result<String, KeyError> {
    let kid = random_kid();
    let (private, jwk) = generate(alg, &kid)?;
    // Bound to its row: the key id is the associated data.
    let (ciphertext, nonce) = cipher.encrypt_for(&private, kid.as_bytes());
    let mut tx = pool.begin().await?;
    // One rotation at a time.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('oidc_signing_keys'))")
        .execute(&mut *tx)
        .await?;
    let signs_from: OffsetDateTime = sqlx::query_scalar(
        "INSERT INTO platform.oidc_signing_keys
             (kid, alg, public_jwk, private_key, nonce, key_version, created_at, signs_from, aad_bound)
         VALUES ($1, $2, $3, $4, $5, $6, now(), now() + make_interval(secs => $7), true)
         RETURNING signs_from",
    )
    .bind(&kid)
    .bind(alg.as_str())
    .bind(serde_json::to_value(&jwk).unwrap_or_default())
    .bind(ciphertext)
    .bind(nonce)
    .bind(cipher.version())
    .bind(publish_delay.as_seconds_f64())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE platform.oidc_signing_keys
         SET unpublished_at = $3
         WHERE alg = $1 AND kid <> $2 AND (unpublished_at IS NULL OR unpublished_at > $3)
           AND signs_from < $3",
    )
    .bind(alg.as_str())
    .bind(&kid)
    .bind(signs_from + retention)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(kid = %kid, alg = alg.as_str(), "identity provider: new signing key");
    Ok(kid)
}

/// Makes sure a key of `alg` is in service (a first start); returns whether one was created.
pub async fn ensure(pool: &PgPool, cipher: &SeedCipher, alg: Alg) -> Result<bool, KeyError> {
    let present: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.oidc_signing_keys
                        WHERE alg = $1 AND (unpublished_at IS NULL OR unpublished_at > now()))",
    )
    .bind(alg.as_str())
    .fetch_one(pool)
    .await?;
    if present {
        return Ok(false);
    }
    // The first key of an algorithm has no predecessor to sign meanwhile: it signs at once
    // (another replica may publish it up to RELOAD_EVERY later; clients refetch on an unknown
    // kid).
    insert_key(pool, cipher, alg, Duration::ZERO, DEFAULT_RETENTION).await?;
    Ok(true)
}

/// One key as listed by tenant-admin.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: OffsetDateTime,
    pub signs_from: OffsetDateTime,
    pub unpublished_at: Option<OffsetDateTime>,
}

pub async fn list(pool: &PgPool) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let rows: Vec<(
        String,
        String,
        OffsetDateTime,
        OffsetDateTime,
        Option<OffsetDateTime>,
    )> = sqlx::query_as(
        "SELECT kid, alg, created_at, signs_from, unpublished_at
             FROM platform.oidc_signing_keys ORDER BY alg, signs_from",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(kid, alg, created_at, signs_from, unpublished_at)| KeyInfo {
                kid,
                alg,
                created_at,
                signs_from,
                unpublished_at,
            },
        )
        .collect())
}

struct LoadedKey {
    alg: Alg,
    jwk: Jwk,
    signs_from: OffsetDateTime,
    unpublished_at: Option<OffsetDateTime>,
    signer: Arc<Signer>,
}

#[derive(Default)]
struct Cache {
    loaded_at: Option<Instant>,
    keys: HashMap<String, LoadedKey>,
}

/// The keys as one process sees them.
#[derive(Clone)]
pub struct KeyStore {
    pool: PgPool,
    cipher: SeedCipher,
    cache: Arc<RwLock<Cache>>,
}

type KeyRow = (
    String,
    String,
    Value,
    Vec<u8>,
    Vec<u8>,
    i32,
    OffsetDateTime,
    Option<OffsetDateTime>,
    bool,
);

impl KeyStore {
    pub fn new(pool: PgPool, cipher: SeedCipher) -> Self {
        Self {
            pool,
            cipher,
            cache: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn cipher(&self) -> &SeedCipher {
        &self.cipher
    }

    fn fresh(&self) -> bool {
        self.cache
            .read()
            .map(|c| c.loaded_at.is_some_and(|t| t.elapsed() < RELOAD_EVERY))
            .unwrap_or(false)
    }

    /// Reads the table again; keys already decrypted are kept as they are.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, alg, public_jwk, private_key, nonce, key_version, signs_from, unpublished_at,
                    aad_bound
             FROM platform.oidc_signing_keys
             WHERE unpublished_at IS NULL OR unpublished_at > now() - interval '1 minute'",
        )
        .fetch_all(&self.pool)
        .await?;
        // Keys already decrypted are reused as they are.
        let known: HashMap<String, Arc<Signer>> = self
            .cache
            .read()
            .map(|c| {
                c.keys
                    .iter()
                    .map(|(kid, k)| (kid.clone(), k.signer.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut keys = HashMap::new();
        for (kid, alg, jwk, private, nonce, version, signs_from, unpublished_at, bound) in rows {
            let Some(alg) = Alg::parse(&alg) else {
                continue;
            };
            let signer = match known.get(&kid) {
                Some(s) => s.clone(),
                None => {
                    let bytes = self
                        .cipher
                        .decrypt_for(&private, &nonce, version, bound.then_some(kid.as_bytes()))
                        .map_err(|e| KeyError::Unreadable(e.to_string()))?;
                    Arc::new(Signer {
                        kid: kid.clone(),
                        alg,
                        private: parse_private(alg, &bytes)?,
                    })
                }
            };
            let jwk: Jwk =
                serde_json::from_value(jwk).map_err(|e| KeyError::Unreadable(e.to_string()))?;
            keys.insert(
                kid,
                LoadedKey {
                    alg,
                    jwk,
                    signs_from,
                    unpublished_at,
                    signer,
                },
            );
        }
        if let Ok(mut cache) = self.cache.write() {
            cache.keys = keys;
            cache.loaded_at = Some(Instant::now());
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<(), KeyError> {
        if !self.fresh() {
            self.reload().await?;
        }
        Ok(())
    }

    /// The key that signs with `alg` now: the newest whose `signs_from` has come. A process
    /// that knows none reads the table again at once (a first RS256 client was just added).
    pub async fn signer(&self, alg: Alg) -> Result<Arc<Signer>, KeyError> {
        self.refresh().await?;
        match self.current(alg) {
            Err(KeyError::NoKey(_)) => {
                self.reload().await?;
                self.current(alg)
            }
            found => found,
        }
    }

    fn current(&self, alg: Alg) -> Result<Arc<Signer>, KeyError> {
        let now = OffsetDateTime::now_utc();
        let cache = self
            .cache
            .read()
            .map_err(|_| KeyError::NoKey(alg.as_str()))?;
        cache
            .keys
            .values()
            .filter(|k| k.alg == alg && k.signs_from <= now)
            .filter(|k| k.unpublished_at.is_none_or(|u| u > now))
            .max_by_key(|k| k.signs_from)
            .map(|k| k.signer.clone())
            .ok_or(KeyError::NoKey(alg.as_str()))
    }

    /// The published public keys (the JWK set), from memory: the table is read again only when
    /// what this process read is older than [`RELOAD_EVERY`], so a committed key is published
    /// by every replica within that time (and a rotation's publish delay is at least twice it).
    pub async fn jwks(&self) -> Result<JwkSet, KeyError> {
        self.refresh().await?;
        let now = OffsetDateTime::now_utc();
        let cache = self.cache.read().map_err(|_| KeyError::NoKey("ES256"))?;
        let mut keys: Vec<(&OffsetDateTime, Jwk)> = cache
            .keys
            .values()
            .filter(|k| k.unpublished_at.is_none_or(|u| u > now))
            .map(|k| (&k.signs_from, k.jwk.clone()))
            .collect();
        keys.sort_by(|a, b| b.0.cmp(a.0));
        Ok(JwkSet {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_what_their_published_key_verifies() {
        for alg in [Alg::Es256, Alg::Rs256] {
            let (private, jwk) = generate(alg, "k").expect("clé");
            let signer = Signer {
                kid: "k".into(),
                alg,
                private: parse_private(alg, &private).expect("relue"),
            };
            let token = signer
                .sign(&serde_json::json!({"sub": "s"}))
                .expect("signed");
            assert_eq!(jws::header(&token).expect("en-tête").alg, alg.as_str());
            let claims = jws::verify(&token, std::slice::from_ref(&jwk)).expect("vérifiée");
            assert_eq!(claims["sub"], "s");
        }
    }
}
