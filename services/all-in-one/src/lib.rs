//! The all-in-one platform: every service's routes and workers in one process — the default
//! for a laptop, a demo or a small self-hosted deployment.

use foundation::app::{Application, Platform};
use foundation::config::Settings;

/// Connects, mounts the four services and binds the port.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let platform = Platform::connect(settings).await?;
    let parts = vec![
        habilitation_desk::parts(&platform).await?,
        mandate_service::parts(&platform).await?,
        notification_mailer::parts(&platform).await?,
        document_vault_bridge::parts(&platform).await?,
    ];
    Application::start(platform, parts).await
}
