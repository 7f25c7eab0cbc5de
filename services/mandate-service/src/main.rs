//! The mandate-service as its own process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let _telemetry = foundation::telemetry::init(&settings.telemetry)?;
    let app = mandate_service::Application::build(settings).await?;
    tracing::info!(
        port = app.port(),
        internal_port = app.internal_port(),
        "mandate-service ready"
    );
    app.run_until_stopped().await
}
