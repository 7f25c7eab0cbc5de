//! Notification mailer: consumes the transactional outboxes (national and per département)
//! and delivers e-mail over SMTP and SMS through an HTTP gateway; gathers letters into printable
//! batches; runs the scheduled reminders and purges.

/// Printable letter batches (PDF in the document vault).
pub mod letters;
/// The page of the batches to print (`/courriers`).
pub mod letters_page;
/// SMS delivery through an HTTP gateway.
pub mod sms;
/// SMTP delivery with lettre.
pub mod smtp;
/// Rendering messages from their templates.
pub mod templates;
/// The outbox consumer.
pub mod worker;

use std::sync::Arc;

use foundation::app::{Access, Page, Platform, ServiceParts};
use foundation::config::Settings;
use poem::EndpointExt;
use policies::Action;

/// The mailer's readiness check (SMTP answers), its outbox worker, its jobs and the letters
/// page.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let mailer = smtp::Mailer::new(&platform.settings.smtp)?;
    let worker = worker::OutboxWorker::from_platform(platform.clone())?;
    let vault = document_vault_bridge::vault(platform).await?;
    Ok(ServiceParts {
        internal: Vec::new(),
        name: "notification-mailer",
        pages: vec![Page::at("/courriers").get(
            Access::Permission(Action::LetterPrint),
            letters_page::letters.data(vault.clone()),
        )],
        routes: Vec::new(),
        readiness: vec![Arc::new(smtp::SmtpCheck(mailer))],
        workers: vec![Box::new(move |shutdown| Box::pin(worker.run(shutdown)))],
        csrf_exempt: Vec::new(),
        jobs: vec![
            worker::purge_delivered_messages(),
            letters::letter_batches(vault),
        ],
    })
}

/// The mailer as a standalone process.
pub struct Application;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<foundation::app::Application> {
        let platform = Platform::connect(settings).await?;
        let parts = parts(&platform).await?;
        foundation::app::Application::start(platform, vec![parts]).await
    }
}
