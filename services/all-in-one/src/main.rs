//! `aidants-connect`: the whole platform in one process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let telemetry = foundation::telemetry::init(&settings.telemetry)?;
    let public_url = settings.http.public_url.clone();
    let app = all_in_one::build(settings).await?;
    tracing::info!(port = app.port(), internal_port = app.internal_port(), url = %public_url, "aidants-connect ready");
    let result = app.run_until_stopped().await;
    telemetry.flush();
    result
}
