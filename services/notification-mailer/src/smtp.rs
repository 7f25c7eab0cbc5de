use std::time::Duration;

use foundation::app::Platform;
use foundation::config::{SmtpSecurity, SmtpSettings};
use foundation::health::ReadinessCheck;
use futures::future::BoxFuture;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::templates::Rendered;

/// Sends through SMTP one message per session, with lettre's connection API so that a failure
/// is classified by where it happened: before the content was sent (nothing accepted, safe to
/// retry), with an SMTP reply (accepted or refused, known), or while waiting for the reply to
/// the content (uncertain: never retried automatically).
#[derive(Clone)]
pub struct Mailer {
    settings: SmtpSettings,
    from: Mailbox,
    /// `smtp.ca_file`, read and parsed once at start.
    extra_roots: Option<Certificate>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server was unreachable or declined for now; nothing was accepted.
    #[error("envoi SMTP échoué : {0}")]
    Transient(String),
    /// Not worth retrying: the address or the message is invalid.
    #[error("message refusé : {0}")]
    Permanent(String),
    /// The connection broke after the content was sent and before the server's answer: it may
    /// have been accepted. It is not sent again automatically (never twice); operators see it
    /// among the stuck messages and re-queue it after checking.
    #[error("envoi incertain, la connexion a été coupée après l'envoi du contenu : {0}")]
    Uncertain(String),
}

fn known(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<Self> {
        let extra_roots = match &settings.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("autorités de certification SMTP illisibles ({path}) : {e}")
                })?;
                // A key file or a DER certificate would otherwise parse as "no certificate".
                anyhow::ensure!(
                    pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"),
                    "autorités de certification SMTP : aucun certificat PEM dans {path}"
                );
                Some(Certificate::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("autorités de certification SMTP invalides ({path}) : {e}")
                })?)
            }
            None => None,
        };
        Ok(Self {
            settings: settings.clone(),
            from: settings.from.parse()?,
            extra_roots,
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let s = &self.settings;
        let timeout = Some(Duration::from_millis(s.timeout_ms));
        let hello = ClientId::default();
        let tls = || {
            let mut builder = TlsParameters::builder(s.host.clone());
            if let Some(authority) = &self.extra_roots {
                builder = builder.add_root_certificate(authority.clone());
            }
            builder.build()
        };
        let mut conn = match s.security {
            SmtpSecurity::Tls => {
                AsyncSmtpConnection::connect_tokio1(
                    (s.host.as_str(), s.port),
                    timeout,
                    &hello,
                    Some(tls()?),
                    None,
                )
                .await?
            }
            SmtpSecurity::None | SmtpSecurity::Starttls => {
                AsyncSmtpConnection::connect_tokio1(
                    (s.host.as_str(), s.port),
                    timeout,
                    &hello,
                    None,
                    None,
                )
                .await?
            }
        };
        if s.security == SmtpSecurity::Starttls {
            conn.starttls(tls()?, &hello).await?;
        }
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            let credentials = Credentials::new(user.clone(), password.expose_secret().to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await?;
        }
        Ok(conn)
    }

    /// Sends one message. The outbox id becomes the Message-ID, so a message delivered twice
    /// (after an operator's re-queue) is recognisable as the same one.
    pub async fn send(&self, id: Uuid, to: &str, message: &Rendered) -> Result<(), SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| SendError::Permanent("adresse de destination invalide".into()))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .message_id(Some(format!("<{id}@aidantsconnect.beta.gouv.fr>")))
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let envelope = email.envelope().clone();
        let bytes = email.formatted();
        let mut conn = self.connect().await.map_err(|e| known(&e))?;
        // Up to DATA, nothing can have been accepted.
        conn.command(Mail::new(envelope.from().cloned(), vec![]))
            .await
            .map_err(|e| known(&e))?;
        for rcpt in envelope.to() {
            conn.command(Rcpt::new(rcpt.clone(), vec![]))
                .await
                .map_err(|e| known(&e))?;
        }
        conn.command(Data).await.map_err(|e| known(&e))?;
        match conn.message(&bytes).await {
            Ok(_) => {
                let _ = conn.quit().await;
                Ok(())
            }
            // The server answered: it refused, and said so.
            Err(e) if e.is_permanent() || e.is_transient() => Err(known(&e)),
            Err(e) => Err(SendError::Uncertain(e.to_string())),
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self.connect().await {
            Ok(mut conn) => {
                let _ = conn.quit().await;
                Ok(())
            }
            Err(_) => Err("serveur SMTP injoignable".into()),
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
