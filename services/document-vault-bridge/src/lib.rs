//! Document vault bridge: documents (attestations, court decisions, structure documents) in an
//! S3-compatible store. Today: the S3 client and its readiness probe; per-tenant encryption,
//! short-lived links and retention arrive with the documents issue.

/// Serving documents through signed links.
pub mod download;
/// The internal HTTP API of the other services.
pub mod internal;
/// The S3 client built from the settings.
pub mod store;
/// Envelope encryption, metadata, links and retention.
pub mod vault;

use std::sync::Arc;

use foundation::app::{Access, Mount, Page, Platform, ServiceParts};
use foundation::config::Settings;
use poem::EndpointExt;

/// The bridge's routes, readiness checks and workers.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(&platform.settings.object_store).await;
    let vault = vault(platform).await?;
    let vault_for_jobs = vault.clone();
    let api = poem_openapi::OpenApiService::new(
        internal::InternalDocumentsApi {
            vault: vault.clone(),
        },
        "Aidants Connect — API interne des documents",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/internal/documents");
    Ok(ServiceParts {
        name: "document-vault-bridge",
        pages: vec![
            Page::at("/documents/:departement/:id")
                .get(Access::Link, download::download.data(vault)),
        ],
        routes: Vec::new(),
        // Called by other services with their bearer token, never by browsers: served on the
        // internal listener only, which has no CSRF check and JSON errors only.
        internal: vec![Mount::openapi(
            "/internal/documents",
            Access::InternalCaller,
            api,
        )],
        readiness: vec![Arc::new(store::StoreCheck(store))],
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
        jobs: vec![retention_job(vault_for_jobs)],
    })
}

/// The vault as the other services use it (attestations, court decisions…).
pub async fn vault(platform: &Platform) -> anyhow::Result<vault::Vault> {
    vault_from_settings(&platform.settings).await
}

/// The vault from the settings alone (tools).
pub async fn vault_from_settings(settings: &Settings) -> anyhow::Result<vault::Vault> {
    let store = store::Store::new(&settings.object_store).await;
    let security = &settings.security;
    let master = foundation::auth::secrets::SeedCipher::new(
        &security.document_master_key,
        security.document_master_key_version,
    )?
    .with_previous(&security.document_master_previous_keys)?;
    Ok(vault::Vault::new(
        store,
        master,
        security.link_secret.clone(),
    ))
}

/// Deletes, every hour, the documents of every territory whose retention has ended.
fn retention_job(vault: vault::Vault) -> foundation::jobs::Job {
    foundation::jobs::Job::new(
        "document_retention",
        std::time::Duration::from_secs(3600),
        move |platform: Platform| {
            let vault = vault.clone();
            async move {
                let (platform, vault) = (&platform, &vault);
                foundation::jobs::each_territory(platform, |departement| async move {
                    let ctx = platform.tenancy.unguarded(departement).await?;
                    Ok(vault.purge(&ctx, time::OffsetDateTime::now_utc()).await?)
                })
                .await
            }
        },
    )
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
