use std::time::Duration;

use foundation::app::Platform;
use foundation::config::{SmtpSecurity, SmtpSettings};
use foundation::health::ReadinessCheck;
use futures::future::BoxFuture;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::templates::Rendered;

/// The SMTP transport and sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server did not answer or refused temporarily.
    #[error("envoi SMTP échoué : {0}")]
    Transient(String),
    /// Not worth retrying: the address or the message is invalid.
    #[error("message refusé : {0}")]
    Permanent(String),
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<Self> {
        let builder = match settings.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)?,
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_millis(settings.timeout_ms)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from.parse()?,
        })
    }

    /// Sends one message. The outbox id becomes the Message-ID, so a message delivered twice
    /// after a crash is recognisable as the same one.
    pub async fn send(&self, id: Uuid, to: &str, message: &Rendered) -> Result<(), SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| SendError::Permanent("adresse de destination invalide".into()))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .message_id(Some(format!("<{id}@aidantsconnect.beta.gouv.fr>")))
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone())
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            _ => Err("serveur SMTP injoignable".into()),
        }
    }
}

/// Readiness: the SMTP server answers.
pub struct SmtpCheck(pub Mailer);

impl ReadinessCheck for SmtpCheck {
    fn name(&self) -> &'static str {
        "smtp"
    }
    fn check<'a>(&'a self, _platform: &'a Platform) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.ping())
    }
}
