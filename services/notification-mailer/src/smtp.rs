use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use foundation::app::Platform;
use foundation::config::{SmtpSecurity, SmtpSettings};
use foundation::health::ReadinessCheck;
use futures::future::BoxFuture;
use futures::io::{AsyncRead as _, AsyncWrite as _};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::templates::Rendered;

/// Sends through SMTP, one message or a batch per session ([`Session`]), with lettre's
/// connection API so that a failure is classified by where it happened: before the content
/// was sent (nothing accepted, safe to retry), with an SMTP reply (accepted or refused, known),
/// or while waiting for the reply to the content (uncertain: never retried automatically).
#[derive(Clone)]
pub struct Mailer {
    settings: SmtpSettings,
    from: Mailbox,
    /// The relay's TLS parameters (its name, the trusted roots with `smtp.ca_file`), built
    /// once at start when `smtp.security` encrypts: not again for every session.
    tls: Option<TlsParameters>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server was unreachable or declined for now; nothing was accepted.
    #[error("envoi SMTP échoué : {0}")]
    Transient(String),
    /// Not worth retrying: the address or the message is invalid.
    #[error("message refusé : {0}")]
    Permanent(String),
    /// The connection broke, or the server fell silent, after the content was sent and before
    /// its answer: it may have been accepted. It is not sent again automatically (never twice);
    /// operators see it among the stuck messages and re-queue it after checking.
    #[error("envoi incertain, pas de réponse du serveur après l'envoi du contenu : {0}")]
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
        let tls = match settings.security {
            SmtpSecurity::None => None,
            SmtpSecurity::Tls | SmtpSecurity::Starttls => {
                let mut builder = TlsParameters::builder(settings.host.clone());
                if let Some(authority) = extra_roots {
                    builder = builder.add_root_certificate(authority);
                }
                Some(builder.build().map_err(|e| {
                    anyhow::anyhow!("paramètres TLS du relais SMTP invalides : {e}")
                })?)
            }
        };
        Ok(Self {
            settings: settings.clone(),
            from: settings.from.parse()?,
            tls,
        })
    }

    /// How long any one exchange with the relay may take (`smtp.timeout_ms`): the connection
    /// to each of its addresses, then its greeting, encryption and login, each command, the
    /// goodbye; the answer to a message's content has `smtp.content_timeout_ms`. lettre bounds
    /// only the TCP connection, so a relay that accepted it and fell silent (hung, or a firewall
    /// dropping packets mid-session) held a lane, and the drain with it, for ever.
    fn limits(&self) -> Limits {
        Limits {
            exchange: Duration::from_millis(self.settings.timeout_ms),
            content: Duration::from_millis(self.settings.content_timeout_ms),
        }
    }

    /// A connection ready for messages: the TCP connection, then the greeting, encryption and
    /// login within [`Mailer::limits`].
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let limit = self.limits().exchange;
        let stream = tcp(&self.settings.host, self.settings.port, limit)
            .await
            .map_err(|e| SendError::Transient(format!("connexion SMTP : {e}")))?;
        within(limit, self.handshake(stream))
            .await
            .unwrap_or_else(|silent| Err(SendError::Transient(silent)))
    }

    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
    ) -> Result<AsyncSmtpConnection, SendError> {
        let lost = |e: lettre::transport::smtp::Error| known(&e);
        let s = &self.settings;
        let hello = ClientId::default();
        let tls = || {
            self.tls.clone().ok_or_else(|| {
                SendError::Transient("chiffrement demandé sans paramètres TLS".into())
            })
        };
        // Our own socket, without Nagle's delay (`tcp`), in every mode.
        let mut conn = match s.security {
            SmtpSecurity::Tls => {
                let encrypted = ImplicitTls::over(stream, tls()?).await.map_err(lost)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(encrypted), &hello)
                    .await
                    .map_err(lost)?
            }
            SmtpSecurity::None | SmtpSecurity::Starttls => {
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
                    .await
                    .map_err(lost)?
            }
        };
        if s.security == SmtpSecurity::Starttls {
            conn.starttls(tls()?, &hello).await.map_err(lost)?;
        }
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            let credentials = Credentials::new(user.clone(), password.expose_secret().to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(lost)?;
        }
        Ok(conn)
    }

    /// Sends one message on a session of its own (see [`Session`] for several).
    pub async fn send(&self, id: Uuid, to: &str, message: &Rendered) -> Result<(), SendError> {
        let mut session = self.session();
        let sent = session.send(id, to, message).await;
        session.close().await;
        sent
    }

    /// A session for several messages in turn (a batch of the outbox): one connection, its
    /// greeting, encryption and login, for all of them.
    pub fn session(&self) -> Session<'_> {
        Session {
            mailer: self,
            conn: None,
            unreachable: None,
        }
    }

    /// The message with the outbox id as its Message-ID, so that a message delivered twice
    /// (after an operator's re-queue) is recognisable as the same one.
    fn compose(
        &self,
        id: Uuid,
        to: &str,
        message: &Rendered,
    ) -> Result<(lettre::address::Envelope, Vec<u8>), SendError> {
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
        Ok((email.envelope().clone(), email.formatted()))
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self.connect().await {
            Ok(mut conn) => {
                let _ = within(self.limits().exchange, conn.quit()).await;
                Ok(())
            }
            Err(_) => Err("serveur SMTP injoignable".into()),
        }
    }
}

/// Messages sent one after the other on one SMTP connection, opened with the first and kept
/// while each is accepted. Each message is its own transaction (`MAIL`, `RCPT`, `DATA`), so
/// its outcome is classified as on a session of its own. After any failure the connection is
/// dropped and the next message opens another. A kept connection the server closed meanwhile
/// (an idle timeout, a limit of messages per session) fails before the content is sent, when
/// nothing can have been accepted: that message is sent again at once on a new connection.
pub struct Session<'a> {
    mailer: &'a Mailer,
    conn: Option<AsyncSmtpConnection>,
    /// The relay could not be reached, or fell silent, for a message of the current batch: the
    /// batch's other e-mails fail at once (retried later), instead of each waiting in turn.
    unreachable: Option<SendError>,
}

/// [`Mailer::limits`].
#[derive(Clone, Copy)]
struct Limits {
    exchange: Duration,
    content: Duration,
}

/// Where a message's transaction failed.
enum Failure {
    /// Before the content: nothing accepted.
    BeforeContent(SendError),
    /// With or after the content.
    After(SendError),
    /// The relay fell silent: before the content (transient) or after it (uncertain).
    Silent(SendError),
}

impl Session<'_> {
    /// A new batch: the relay is tried again, even if it could not be reached for the last.
    pub fn next_batch(&mut self) {
        self.unreachable = None;
    }

    pub async fn send(&mut self, id: Uuid, to: &str, message: &Rendered) -> Result<(), SendError> {
        let (envelope, bytes) = self.mailer.compose(id, to, message)?;
        if let Some(e) = &self.unreachable {
            return Err(e.clone());
        }
        let limits = self.mailer.limits();
        if let Some(conn) = self.conn.as_mut() {
            match transmit(conn, &envelope, &bytes, limits).await {
                Ok(()) => return Ok(()),
                Err(Failure::After(e)) => {
                    self.conn = None;
                    return Err(e);
                }
                Err(Failure::Silent(e)) => {
                    self.conn = None;
                    return Err(self.fell_silent(e));
                }
                // Sent again below, on a connection of its own.
                Err(Failure::BeforeContent(_)) => self.conn = None,
            }
        }
        let mut conn = match self.mailer.connect().await {
            Ok(conn) => conn,
            Err(e) => {
                self.unreachable = Some(e.clone());
                return Err(e);
            }
        };
        match transmit(&mut conn, &envelope, &bytes, limits).await {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(Failure::Silent(e)) => Err(self.fell_silent(e)),
            Err(Failure::BeforeContent(e) | Failure::After(e)) => Err(e),
        }
    }

    /// The relay fell silent during this message (its outcome `e`): the batch's other e-mails
    /// are not tried.
    fn fell_silent(&mut self, e: SendError) -> SendError {
        self.unreachable = Some(SendError::Transient(
            "le relais SMTP a cessé de répondre pendant un message précédent du lot".into(),
        ));
        e
    }

    /// Ends the session politely (`QUIT`), if one is open.
    pub async fn close(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = within(self.mailer.limits().exchange, conn.quit()).await;
        }
    }
}

/// One message's transaction on an open connection, each exchange within `limits`.
async fn transmit(
    conn: &mut AsyncSmtpConnection,
    envelope: &lettre::address::Envelope,
    bytes: &[u8],
    limits: Limits,
) -> Result<(), Failure> {
    let limit = limits.exchange;
    // Up to DATA, nothing can have been accepted.
    let before = |answer: Result<Result<_, lettre::transport::smtp::Error>, String>| match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure::BeforeContent(known(&e))),
        Err(silent) => Err(Failure::Silent(SendError::Transient(silent))),
    };
    before(
        within(
            limit,
            conn.command(Mail::new(envelope.from().cloned(), vec![])),
        )
        .await,
    )?;
    for rcpt in envelope.to() {
        before(within(limit, conn.command(Rcpt::new(rcpt.clone(), vec![]))).await)?;
    }
    before(within(limit, conn.command(Data)).await)?;
    match within(limits.content, conn.message(bytes)).await {
        Ok(Ok(_)) => Ok(()),
        // The server answered: it refused, and said so.
        Ok(Err(e)) if e.is_permanent() || e.is_transient() => Err(Failure::After(known(&e))),
        Ok(Err(e)) => Err(Failure::After(SendError::Uncertain(e.to_string()))),
        // Silent after the content: it may have been accepted.
        Err(silent) => Err(Failure::Silent(SendError::Uncertain(silent))),
    }
}

/// `exchange` within `limit`, else why not (in French, for the outbox's `last_error`).
async fn within<T>(limit: Duration, exchange: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, exchange).await.map_err(|_| {
        format!(
            "le relais SMTP n'a pas répondu dans le délai de {} ms",
            limit.as_millis()
        )
    })
}

/// A TCP connection to the relay, each of its addresses tried in turn within `limit` (one that
/// drops packets does not take the others' time), without Nagle's delay: lettre writes a
/// message's content and its final `.` in two writes, and the second, small, waited for the
/// server to acknowledge the first, which a server delays up to 40 ms (65–95 ms per message to
/// MailDev under bench-idp, 1.3 ms from a client writing both at once).
async fn tcp(host: &str, port: u16, limit: Duration) -> std::io::Result<tokio::net::TcpStream> {
    use std::io::{Error, ErrorKind};
    let addresses = tokio::time::timeout(limit, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "résolution du nom : délai dépassé"))??;
    let mut last = Error::new(ErrorKind::NotFound, "aucune adresse pour ce nom");
    for address in addresses {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = Error::new(ErrorKind::TimedOut, format!("{address} : délai dépassé")),
        }
    }
    Err(last)
}

/// TLS from the first byte (`smtp.security = tls`, port 465) on our own socket ([`tcp`]).
/// lettre's own implicit-TLS connection dials a socket of its own, with Nagle's delay: each
/// message then waited for the relay's delayed acknowledgement (22 messages/s on one session,
/// against 570–660 with STARTTLS on the same relay, `bench-outbox`). Here lettre encrypts our
/// socket with the same parameters, hence the same verification and authorities, as for
/// STARTTLS (`upgrade_tls`), and the encrypted stream is handed to lettre as its transport.
#[derive(Debug)]
#[allow(deprecated)] // lettre's network stream is public but marked as not meant to be.
struct ImplicitTls(lettre::transport::smtp::client::AsyncNetworkStream);

impl ImplicitTls {
    async fn over(
        stream: tokio::net::TcpStream,
        parameters: TlsParameters,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        #[allow(deprecated)]
        let mut net = lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(
            Box::new(stream),
        );
        net.upgrade_tls(parameters).await?;
        Ok(Self(net))
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match Pin::new(&mut self.0).poll_read(cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

/// Readiness: the SMTP server answers. Not essential: while it does not, e-mails wait in the
/// outbox and everything else is served.
pub struct SmtpCheck(pub Mailer);

impl ReadinessCheck for SmtpCheck {
    fn name(&self) -> &'static str {
        "smtp"
    }
    fn essential(&self) -> bool {
        false
    }
    fn check<'a>(&'a self, _platform: &'a Platform) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.ping())
    }
}
