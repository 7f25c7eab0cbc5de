//! Document vault bridge: documents (attestations, court decisions, structure documents) in an
//! S3-compatible store. Today: the S3 client and its readiness probe; per-tenant encryption,
//! short-lived links and retention arrive with the documents issue.

/// Serving documents through signed links.
pub mod download;
/// The S3 client built from the settings.
pub mod store;
/// Envelope encryption, metadata, links and retention.
pub mod vault;

use std::sync::Arc;

use foundation::app::{Platform, ServiceParts};
use foundation::config::Settings;
use poem::EndpointExt;

/// The bridge's routes, readiness checks and workers.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(&platform.settings.object_store).await;
    let vault = vault(platform).await?;
    Ok(ServiceParts {
        name: "document-vault-bridge",
        pages: vec![(
            "/documents/:departement/:id",
            poem::get(download::download).data(vault).boxed(),
        )],
        routes: Vec::new(),
        readiness: vec![Arc::new(store::StoreCheck(store))],
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
    })
}

/// The vault as the other services use it (attestations, court decisions…).
pub async fn vault(platform: &Platform) -> anyhow::Result<vault::Vault> {
    let store = store::Store::new(&platform.settings.object_store).await;
    let security = &platform.settings.security;
    let master = foundation::auth::secrets::SeedCipher::new(
        &security.document_master_key,
        security.document_master_key_version,
    )?;
    Ok(vault::Vault::new(
        store,
        master,
        security.link_secret.clone(),
    ))
}

/// The bridge as a standalone process.
pub struct Application;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<foundation::app::Application> {
        let platform = Platform::connect(settings).await?;
        let parts = parts(&platform).await?;
        foundation::app::Application::start(platform, vec![parts]).await
    }
}
