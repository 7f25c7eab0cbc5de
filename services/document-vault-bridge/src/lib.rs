//! Document vault bridge: documents (attestations, court decisions, structure documents) in an
//! S3-compatible store. Today: the S3 client and its readiness probe; per-tenant encryption,
//! short-lived links and retention arrive with the documents issue.

/// The S3 client built from the settings.
pub mod store;

use std::sync::Arc;

use foundation::app::{Platform, ServiceParts};
use foundation::config::Settings;

/// The bridge's routes, readiness checks and workers.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(&platform.settings.object_store).await;
    Ok(ServiceParts {
        name: "document-vault-bridge",
        pages: Vec::new(),
        routes: Vec::new(),
        readiness: vec![Arc::new(store::StoreCheck(store))],
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
    })
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
