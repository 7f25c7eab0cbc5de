//! Mandate service: usagers, mandates, judicial measures, the FranceConnect client and identity
//! provider, attestations, the journal, usager self-service and statistics. Its routes arrive
//! with the mandates issue; today it contributes its place in the applications and its probes.

use foundation::app::{Platform, ServiceParts};
use foundation::config::Settings;

/// The mandate service's routes, readiness checks and workers.
pub async fn parts(_platform: &Platform) -> anyhow::Result<ServiceParts> {
    Ok(ServiceParts {
        name: "mandate-service",
        pages: Vec::new(),
        routes: Vec::new(),
        readiness: Vec::new(),
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
        jobs: Vec::new(),
    })
}

/// The mandate service as a standalone process.
pub struct Application;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<foundation::app::Application> {
        let platform = Platform::connect(settings).await?;
        let parts = parts(&platform).await?;
        foundation::app::Application::start(platform, vec![parts]).await
    }
}
