//! Where the mandate service keeps its attestations: the vault of this process (all-in-one, the
//! default), or the document-vault-bridge's internal API over HTTP when the services run apart
//! (`documents.vault_url`, see `foundation::config::DocumentsSettings`).
//!
//! Both keep the same promise to an act: the document is written before the act's transaction,
//! and the act refers to it only if that transaction commits. In process, the document's row is
//! written in the act's own transaction and the object is removed if it rolls back. Over HTTP,
//! the bridge records the document in its own transaction first; if the act then rolls back,
//! the document stays unreferenced until its retention ends (the internal API deletes nothing).

use std::time::Duration as StdDuration;

use document_vault_bridge::vault::{Links, Retention, Upload, Vault, VaultError};
use foundation::app::Platform;
use foundation::ids::TenantId;
use foundation::journal::{self, NewEntry};
use foundation::tenancy::{TenantTx, Territory};
use secrecy::{ExposeSecret, SecretString};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Clone)]
pub enum Documents {
    /// The vault in this process (boxed: its S3 client is large, and `Shared` is cloned).
    InProcess(Box<Vault>),
    /// The bridge's internal API.
    Remote(RemoteVault),
}

/// The bridge's internal document API, and the link signer (links are served by the bridge).
#[derive(Clone)]
pub struct RemoteVault {
    client: reqwest::Client,
    /// `{vault_url}/internal/documents`.
    base: String,
    token: SecretString,
    links: Links,
}

/// A document written to the store, referred to by the act that owns it.
pub struct Stored {
    pub id: Uuid,
    pub sha256: Vec<u8>,
    /// In process: written to the object store, its row still to record in the act's
    /// transaction. Over HTTP: `None`, the bridge has recorded it.
    upload: Option<Upload>,
}

impl Documents {
    /// From the settings: remote when `documents.vault_url` is set, else the vault.
    pub async fn from_platform(platform: &Platform) -> anyhow::Result<Self> {
        let settings = &platform.settings;
        match &settings.documents.vault_url {
            Some(url) => {
                anyhow::ensure!(
                    !settings.documents.vault_token.expose_secret().is_empty(),
                    "documents.vault_url est défini sans documents.vault_token"
                );
                Ok(Self::Remote(RemoteVault {
                    client: reqwest::Client::builder()
                        .timeout(StdDuration::from_millis(settings.object_store.timeout_ms))
                        .build()?,
                    base: format!("{}/internal/documents", url.trim_end_matches('/')),
                    token: settings.documents.vault_token.clone(),
                    links: Links::new(settings.security.link_secret.clone()),
                }))
            }
            None => Ok(Self::InProcess(Box::new(
                document_vault_bridge::vault(platform).await?,
            ))),
        }
    }

    /// Writes `bytes` for `tenant` of `territory`, as a document of `kind` kept for the
    /// mandate archive period. Record it with [`Documents::record`] in the act's transaction,
    /// or [`Documents::discard`] it if the act does not happen.
    pub async fn store(
        &self,
        platform: &Platform,
        territory: &Territory,
        tenant: TenantId,

        kind: &'static str,
        bytes: &[u8],
    ) -> Result<Stored, VaultError> {
        match self {
            Self::InProcess(vault) => {
                let mut conn = platform.platform_pool().acquire().await?;
                let upload = vault.upload(&mut conn, tenant, bytes).await?;
                Ok(Stored {
                    id: upload.id,
                    sha256: upload.sha256.clone(),
                    upload: Some(upload),
                })
            }
            Self::Remote(remote) => remote.store(territory, tenant, kind, bytes).await,
        }
    }

    /// Records a stored document in the act's territory transaction (in process; the bridge
    /// already did over HTTP).
    pub async fn record(
        &self,
        tx: &mut TenantTx,
        stored: &Stored,
        kind: &'static str,
    ) -> Result<(), sqlx::Error> {
        match (self, &stored.upload) {
            (Self::InProcess(vault), Some(upload)) => {
                vault
                    .record(tx, upload, kind, Retention::MandateArchive)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// [`Documents::record`] with the act's journal entry: in one statement in process; over
    /// HTTP (the bridge has recorded the document) the entry alone.
    pub async fn record_journaled(
        &self,
        tx: &mut TenantTx,
        stored: &Stored,
        kind: &'static str,
        entry: NewEntry,
    ) -> Result<(), sqlx::Error> {
        match (self, &stored.upload) {
            (Self::InProcess(vault), Some(upload)) => {
                vault
                    .record_journaled(tx, upload, kind, Retention::MandateArchive, entry)
                    .await
            }
            _ => journal::append(tx, entry).await.map(|_| ()),
        }
    }

    /// The act did not happen: remove what [`Documents::store`] wrote, where that is possible.
    pub async fn discard(&self, stored: &Stored) {
        match (self, &stored.upload) {
            (Self::InProcess(vault), Some(upload)) => vault.discard(upload).await,
            _ => tracing::info!(
                document = %stored.id,
                "document stored by the vault service left unreferenced until its retention ends"
            ),
        }
    }

    /// Stores and records a document on its own (no act transaction to share).
    pub async fn put(
        &self,
        platform: &Platform,
        territory: &Territory,
        tenant: TenantId,

        kind: &'static str,
        bytes: &[u8],
    ) -> Result<Uuid, VaultError> {
        let stored = self.store(platform, territory, tenant, kind, bytes).await?;
        let recorded = async {
            let mut tx = territory.begin().await?;
            self.record(&mut tx, &stored, kind).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            self.discard(&stored).await;
            return Err(e.into());
        }
        Ok(stored.id)
    }

    /// A short-lived link to a document, served by the bridge.
    pub fn link(&self, departement: &str, id: Uuid, ttl: Duration, now: OffsetDateTime) -> String {
        match self {
            Self::InProcess(vault) => vault.link(departement, id, ttl, now),
            Self::Remote(remote) => remote.links.link(departement, id, ttl, now),
        }
    }
}

impl RemoteVault {
    async fn store(
        &self,
        territory: &Territory,
        tenant: TenantId,

        kind: &'static str,
        bytes: &[u8],
    ) -> Result<Stored, VaultError> {
        let url = format!(
            "{}/departements/{}/documents",
            self.base,
            territory.departement().as_str()
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .query(&[
                ("tenant", tenant.to_string().as_str()),
                ("kind", kind),
                ("retention", "mandate_archive"),
            ])
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "vault service unreachable");
                VaultError::Unavailable
            })?;
        let status = response.status().as_u16();
        match status {
            201 => {}
            413 => return Err(VaultError::TooLarge),
            400 => return Err(VaultError::UnsupportedType),
            _ => {
                // 401/403/404 here mean a deployment mistake (token, kinds, départements).
                tracing::error!(status, kind, "vault service refused to store a document");
                return Err(VaultError::Unavailable);
            }
        }
        #[derive(serde::Deserialize)]
        struct Created {
            id: Uuid,
        }
        let created: Created = response.json().await.map_err(|e| {
            tracing::error!(error = %e, "vault service answered an unreadable document");
            VaultError::Unavailable
        })?;
        use sha2::Digest;
        Ok(Stored {
            id: created.id,
            sha256: sha2::Sha256::digest(bytes).to_vec(),
            upload: None,
        })
    }
}
