//! The document vault: envelope encryption per tenant, metadata in the tenant's schema, content
//! in the object store, short-lived signed links, retention purge. Every document gets its own
//! data key (AES-256-GCM); the data key is wrapped by its tenant's key; tenant keys are wrapped
//! by the platform's master key. The store only ever sees ciphertext.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use foundation::auth::secrets::{SeedCipher, constant_time_eq};
use foundation::ids::TenantId;
use foundation::tenancy::Territory;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// Largest document accepted (a scanned court decision fits comfortably).
pub const MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("document trop volumineux : 10 Mo au plus")]
    TooLarge,
    #[error("type de document refusé : PDF, PNG ou JPEG attendu")]
    UnsupportedType,
    #[error("document introuvable")]
    NotFound,
    #[error(
        "le stockage des documents est momentanément indisponible ; réessayez dans quelques minutes"
    )]
    Unavailable,
    #[error("lien invalide ou expiré")]
    InvalidLink,
    #[error("erreur de base de données")]
    Database,
}

impl From<sqlx::Error> for VaultError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "vault: database error");
        VaultError::Database
    }
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => VaultError::NotFound,
            StoreError::Unavailable => VaultError::Unavailable,
        }
    }
}

/// How long a document is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Mandate attestations: 3 + 3 years after the mandate (product.md §12), by default.
    MandateArchive,
    /// A fixed number of days (tests, short-lived documents).
    Days(i64),
}

impl Retention {
    fn class(&self) -> String {
        match self {
            Retention::MandateArchive => "mandate_archive".into(),
            Retention::Days(d) => format!("days_{d}"),
        }
    }

    fn until(&self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Retention::MandateArchive => now + Duration::days(6 * 365 + 2),
            Retention::Days(d) => now + Duration::days(*d),
        }
    }
}

/// The type of a document, from its first bytes (never from what the sender claims).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else {
        None
    }
}

fn seal(key: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    (
        cipher.encrypt(&nonce.into(), plaintext).unwrap_or_default(),
        nonce.to_vec(),
    )
}

fn open(key: &[u8], ciphertext: &[u8], nonce: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| VaultError::NotFound)?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| VaultError::NotFound)?;
    cipher
        .decrypt(&nonce.into(), ciphertext)
        .map_err(|_| VaultError::NotFound)
}

/// Metadata of a stored document.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentMeta {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub kind: String,
    pub content_type: String,
    pub size_bytes: i64,
}

/// An encrypted document written to the store, not yet recorded.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: Uuid,
    pub tenant: TenantId,
    pub content_type: &'static str,
    pub size: i64,
    pub sha256: Vec<u8>,
    object_key: String,
    key_version: i32,
    wrapped_dek: Vec<u8>,
    dek_nonce: Vec<u8>,
    content_nonce: Vec<u8>,
}

#[derive(Clone)]
pub struct Vault {
    store: Store,
    master: SeedCipher,
    links: Links,
}

/// Signs and checks short-lived document links (HMAC-SHA-256 over département, id and expiry
/// with `security.link_secret`). A service that stores its documents through the internal API
/// still signs its links with it: the bridge, which serves them, holds the same secret.
#[derive(Clone)]
pub struct Links {
    secret: SecretString,
}

impl Links {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    fn signature(&self, departement: &str, id: Uuid, expires: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{departement}|{id}|{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A link valid for `ttl`, served by the bridge (`/documents/{dep}/{id}`), which checks
    /// the signature and expiry, then decrypts. Only callers that passed the guard create one.
    pub fn link(&self, departement: &str, id: Uuid, ttl: Duration, now: OffsetDateTime) -> String {
        let expires = (now + ttl).unix_timestamp();
        format!(
            "/documents/{departement}/{id}?expire={expires}&signature={}",
            self.signature(departement, id, expires)
        )
    }

    pub fn check(
        &self,
        departement: &str,
        id: Uuid,
        expires: i64,
        signature: &str,
        now: OffsetDateTime,
    ) -> Result<(), VaultError> {
        let valid = constant_time_eq(&self.signature(departement, id, expires), signature);
        if valid && expires > now.unix_timestamp() {
            Ok(())
        } else {
            Err(VaultError::InvalidLink)
        }
    }
}

type KeyRow = (i32, Vec<u8>, Vec<u8>, i32, bool);

/// A tenant's newest key as stored (wrapped by the master key).
async fn newest_key(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, wrapped_key, nonce, master_version, aad_bound FROM platform.tenant_keys
         WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// The row a tenant key is bound to: its tenant and version.
fn key_context(tenant: TenantId, version: i32) -> Vec<u8> {
    [
        tenant.as_uuid().as_bytes().as_slice(),
        &version.to_be_bytes(),
    ]
    .concat()
}
type DocRow = (
    String,
    String,
    i32,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    TenantId,
    Vec<u8>,
);

/// A document's metadata row, up to its values ([`Vault::record`], [`Vault::record_journaled`]).
macro_rules! documents_insert {
    () => {
        "INSERT INTO documents (id, tenant_id, kind, content_type, size_bytes, sha256, object_key,
             key_version, wrapped_dek, dek_nonce, content_nonce, retention_class, retain_until)"
    };
}

/// Binds the values of [`documents_insert!`], in its order.
macro_rules! bind_document {
    ($query:expr, $upload:expr, $kind:expr, $retention:expr, $now:expr) => {
        $query
            .bind($upload.id)
            .bind($upload.tenant)
            .bind($kind)
            .bind($upload.content_type)
            .bind($upload.size)
            .bind(&$upload.sha256)
            .bind(&$upload.object_key)
            .bind($upload.key_version)
            .bind(&$upload.wrapped_dek)
            .bind(&$upload.dek_nonce)
            .bind(&$upload.content_nonce)
            .bind($retention.class())
            .bind($retention.until($now))
    };
}

impl Vault {
    pub fn new(store: Store, master: SeedCipher, link_secret: SecretString) -> Self {
        Self {
            store,
            master,
            links: Links::new(link_secret),
        }
    }

    /// The tenant's current key (created at first use), as (version, key).
    async fn tenant_key(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<(i32, Vec<u8>), VaultError> {
        // Once the tenant has a key, reading its newest takes no lock: the lock serialised
        // every document of a tenant (16 concurrent mandate creations waited 15 ms at the
        // median for it). A rotation committing meanwhile is no different from one committing
        // just after: the document is sealed with the previous version, which stays readable.
        if let Some(row) = newest_key(&mut *conn, tenant).await? {
            return self.unwrap_key(tenant, row);
        }
        let mut tx = conn.begin().await?;
        let key = self.current_or_first_key(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(key)
    }

    fn unwrap_key(&self, tenant: TenantId, row: KeyRow) -> Result<(i32, Vec<u8>), VaultError> {
        let (version, wrapped, nonce, master_version, bound) = row;
        let key = self
            .master
            .decrypt_for(
                &wrapped,
                &nonce,
                master_version,
                bound.then(|| key_context(tenant, version)).as_deref(),
            )
            .map_err(|_| VaultError::NotFound)?;
        Ok((version, key))
    }

    /// Within `tx`: takes the tenant's key lock, then reads its newest key or creates the
    /// first. The lock is transaction-level (`pg_advisory_xact_lock`) and so must run inside a
    /// transaction: on a bare connection each statement is its own transaction and the lock
    /// would be gone before the read, letting two first documents (or two rotations) of one
    /// tenant both write the same version. Held to commit, it is released even if the
    /// connection goes back to the pool mid-way (a session lock would stay with it).
    async fn current_or_first_key(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<(i32, Vec<u8>), VaultError> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('aidants-connect:tenant-key:' || $1::text))",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        if let Some(row) = newest_key(&mut *tx, tenant).await? {
            return self.unwrap_key(tenant, row);
        }
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let (wrapped, nonce) = self.master.encrypt_for(&key, &key_context(tenant, 1));
        sqlx::query(
            "INSERT INTO platform.tenant_keys (tenant_id, version, wrapped_key, nonce, master_version, aad_bound)
             VALUES ($1, 1, $2, $3, $4, true)",
        )
        .bind(tenant)
        .bind(wrapped)
        .bind(nonce)
        .bind(self.master.version())
        .execute(&mut *tx)
        .await?;
        Ok((1, key))
    }

    async fn tenant_key_version(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,

        version: i32,
    ) -> Result<Vec<u8>, VaultError> {
        let row: Option<(Vec<u8>, Vec<u8>, i32, bool)> = sqlx::query_as(
            "SELECT wrapped_key, nonce, master_version, aad_bound FROM platform.tenant_keys
             WHERE tenant_id = $1 AND version = $2",
        )
        .bind(tenant)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        let (wrapped, nonce, master_version, bound) = row.ok_or(VaultError::NotFound)?;
        self.master
            .decrypt_for(
                &wrapped,
                &nonce,
                master_version,
                bound.then(|| key_context(tenant, version)).as_deref(),
            )
            .map_err(|_| VaultError::NotFound)
    }

    /// Stores a document for `tenant` in its territory. The object is written first; if the
    /// metadata cannot be recorded the object is removed, so no reference dangles either way.
    pub async fn put(
        &self,
        territory: &Territory,
        platform_conn: &mut PgConnection,
        tenant: TenantId,

        kind: &str,
        bytes: &[u8],
        retention: Retention,
    ) -> Result<Uuid, VaultError> {
        let upload = self.upload(platform_conn, tenant, bytes).await?;
        let recorded = async {
            let mut tx = territory.begin().await?;
            self.record(&mut tx, &upload, kind, retention).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            self.discard(&upload).await;
            return Err(e.into());
        }
        Ok(upload.id)
    }

    /// First half of [`Vault::put`] for callers that record the document in a transaction of
    /// their own (with the act it belongs to): checks, encrypts and writes the object.
    pub async fn upload(
        &self,
        platform_conn: &mut PgConnection,
        tenant: TenantId,

        bytes: &[u8],
    ) -> Result<Upload, VaultError> {
        if bytes.len() > MAX_BYTES {
            return Err(VaultError::TooLarge);
        }
        let content_type = sniff(bytes).ok_or(VaultError::UnsupportedType)?;
        let (key_version, tenant_key) = self.tenant_key(platform_conn, tenant).await?;
        let mut dek = vec![0u8; 32];
        rand::rng().fill_bytes(&mut dek);
        let (ciphertext, content_nonce) = seal(&dek, bytes);
        let (wrapped_dek, dek_nonce) = seal(&tenant_key, &dek);
        let id = Uuid::now_v7();
        let object_key = format!("{tenant}/{id}");
        self.store.put(&object_key, ciphertext).await?;
        Ok(Upload {
            id,
            tenant,
            content_type,
            size: bytes.len() as i64,
            sha256: Sha256::digest(bytes).to_vec(),
            object_key,
            key_version,
            wrapped_dek,
            dek_nonce,
            content_nonce,
        })
    }

    /// Second half: the document's metadata, in the caller's territory transaction. If that
    /// transaction does not commit, call [`Vault::discard`].
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        upload: &Upload,
        kind: &str,
        retention: Retention,
    ) -> Result<(), sqlx::Error> {
        let now = OffsetDateTime::now_utc();
        let insert = concat!(
            documents_insert!(),
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        bind_document!(sqlx::query(insert), upload, kind, retention, now)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// [`Vault::record`] with the act's journal entry, in one statement (one exchange with the
    /// database instead of two): the attestation of a mandate being created.
    pub async fn record_journaled(
        &self,
        tx: &mut impl foundation::tenancy::TenantWrites,
        upload: &Upload,
        kind: &str,
        retention: Retention,
        entry: foundation::journal::NewEntry,
    ) -> Result<(), sqlx::Error> {
        let now = OffsetDateTime::now_utc();
        foundation::journal::append_with::<(i64,)>(
            tx,
            entry,
            foundation::journal_with!(
                concat!(
                    "document AS (",
                    documents_insert!(),
                    " VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20))"
                ),
                "SELECT id FROM entry"
            ),
            |q| bind_document!(q, upload, kind, retention, now),
        )
        .await?;
        Ok(())
    }

    /// Removes an uploaded object whose metadata was never recorded (best effort: an object
    /// without metadata is unreachable either way).
    pub async fn discard(&self, upload: &Upload) {
        let _ = self.store.delete(&upload.object_key).await;
    }

    /// Reads and decrypts a document of this territory; a document of another territory, or
    /// purged, is not found.
    pub async fn get(
        &self,
        territory: &Territory,
        platform_conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<(String, Vec<u8>), VaultError> {
        let mut tx = territory.begin().await?;
        let row: Option<DocRow> = sqlx::query_as(
            "SELECT content_type, object_key, key_version, wrapped_dek, dek_nonce, content_nonce, tenant_id, sha256
             FROM documents WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let (
            content_type,
            object_key,
            key_version,
            wrapped_dek,
            dek_nonce,
            content_nonce,
            tenant,
            sha,
        ) = row.ok_or(VaultError::NotFound)?;
        let tenant_key = self
            .tenant_key_version(platform_conn, tenant, key_version)
            .await?;
        let dek = open(&tenant_key, &wrapped_dek, &dek_nonce)?;
        let ciphertext = self.store.get(&object_key).await?;
        let plaintext = open(&dek, &ciphertext, &content_nonce)?;
        if Sha256::digest(&plaintext)[..] != sha[..] {
            return Err(VaultError::NotFound);
        }
        Ok((content_type, plaintext))
    }

    /// Rotates a tenant's key: a new version, and every data key of the tenant's documents in
    /// this territory re-wrapped with it (contents are not re-encrypted), in one transaction per
    /// side. Returns how many documents were re-wrapped.
    pub async fn rotate_tenant_key(
        &self,
        territory: &Territory,
        platform_conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<u64, VaultError> {
        // The lock covers reading the current version and writing the next one.
        let mut keys = platform_conn.begin().await?;
        let (old_version, _) = self.current_or_first_key(&mut keys, tenant).await?;
        let new_version = old_version + 1;
        let mut new_key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut new_key);
        let (wrapped, nonce) = self
            .master
            .encrypt_for(&new_key, &key_context(tenant, new_version));
        sqlx::query(
            "INSERT INTO platform.tenant_keys (tenant_id, version, wrapped_key, nonce, master_version, aad_bound)
             VALUES ($1, $2, $3, $4, $5, true)",
        )
        .bind(tenant)
        .bind(new_version)
        .bind(wrapped)
        .bind(nonce)
        .bind(self.master.version())
        .execute(&mut *keys)
        .await?;
        keys.commit().await?;
        let mut tx = territory.begin().await?;
        let docs: Vec<(Uuid, i32, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT id, key_version, wrapped_dek, dek_nonce FROM documents
             WHERE tenant_id = $1 AND key_version < $2 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(tenant)
        .bind(new_version)
        .fetch_all(&mut *tx)
        .await?;
        let mut rewrapped = 0;
        for (id, version, wrapped_dek, dek_nonce) in docs {
            let old_key = self
                .tenant_key_version(platform_conn, tenant, version)
                .await?;
            let dek = open(&old_key, &wrapped_dek, &dek_nonce)?;
            let (wrapped_dek, dek_nonce) = seal(&new_key, &dek);
            sqlx::query("UPDATE documents SET key_version = $2, wrapped_dek = $3, dek_nonce = $4 WHERE id = $1")
                .bind(id)
                .bind(new_version)
                .bind(wrapped_dek)
                .bind(dek_nonce)
                .execute(&mut *tx)
                .await?;
            rewrapped += 1;
        }
        tx.commit().await?;
        Ok(rewrapped)
    }

    /// See [`Links::link`].
    pub fn link(&self, departement: &str, id: Uuid, ttl: Duration, now: OffsetDateTime) -> String {
        self.links.link(departement, id, ttl, now)
    }

    /// See [`Links::check`].
    pub fn check_link(
        &self,
        departement: &str,
        id: Uuid,
        expires: i64,
        signature: &str,
        now: OffsetDateTime,
    ) -> Result<(), VaultError> {
        self.links.check(departement, id, expires, signature, now)
    }

    /// Deletes the documents whose retention has ended (object first, then the row is marked);
    /// running it again finds nothing more to do.
    pub async fn purge(
        &self,
        territory: &Territory,
        now: OffsetDateTime,
    ) -> Result<u64, VaultError> {
        let mut tx = territory.begin().await?;
        let due: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, object_key FROM documents WHERE deleted_at IS NULL AND retain_until <= $1 ORDER BY retain_until LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut purged = 0;
        for (id, key) in due {
            match self.store.delete(&key).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            let mut tx = territory.begin().await?;
            let done = sqlx::query(
                "UPDATE documents SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            purged += done.rows_affected();
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_content() {
        assert_eq!(sniff(b"%PDF-1.7 ..."), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn sealed_content_opens_only_with_its_key() {
        let (key, other) = ([1u8; 32], [2u8; 32]);
        let (ciphertext, nonce) = seal(&key, b"contenu");
        assert_eq!(
            open(&key, &ciphertext, &nonce).as_deref(),
            Ok(b"contenu".as_slice())
        );
        assert!(open(&other, &ciphertext, &nonce).is_err());
    }
}
