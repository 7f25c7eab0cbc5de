//! The notification-mailer as its own process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let _telemetry = foundation::telemetry::init(&settings.telemetry)?;
    let app = notification_mailer::Application::build(settings).await?;
    tracing::info!(
        port = app.port(),
        internal_port = app.internal_port(),
        "notification-mailer ready"
    );
    app.run_until_stopped().await
}
