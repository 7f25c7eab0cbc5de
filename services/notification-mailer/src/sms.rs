//! The SMS channel: one HTTP POST per message to the configured provider.
//!
//! - `http_json` (our contract, docs/MAIL.md): the outbox id is sent as `Idempotency-Key`
//!   and the gateway must not send twice for one key; so, unlike SMTP, an answer lost after the
//!   request left is safely retried.
//! - `brevo` (Brevo's transactional SMS API): no idempotency key exists, so only failures known
//!   to have sent nothing (unreachable, or refused with a status) are retried; a request whose
//!   answer is lost is *uncertain* and left to operators, as with SMTP: never sent twice.

use std::time::Duration;

use foundation::config::{SmsProvider, SmsSettings};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::smtp::SendError;

#[derive(Clone)]
pub struct SmsGateway {
    settings: SmsSettings,
    http: reqwest::Client,
}

pub use foundation::outbox::normalise_phone;

impl SmsGateway {
    pub fn new(settings: &SmsSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(3_000)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            settings: settings.clone(),
            http,
        })
    }

    /// SMS sent one after the other, for a batch of the outbox ([`SmsBatch`]).
    pub fn batch(&self) -> SmsBatch<'_> {
        SmsBatch {
            gateway: self,
            unreachable: None,
        }
    }

    /// Sends one SMS; `id` (the outbox id) is the idempotency key where the provider has one.
    /// On failure, also — when the gateway could not be reached or did not answer in time — the
    /// error for the batch's messages not tried ([`SmsBatch`]).
    async fn try_send(
        &self,
        id: Uuid,
        to: &str,
        text: &str,
    ) -> Result<(), (SendError, Option<SendError>)> {
        let alone = |e: SendError| (e, None);
        if self.settings.provider == SmsProvider::None {
            return Err(alone(SendError::Transient(
                "aucune passerelle SMS n'est configurée".into(),
            )));
        }
        let to = normalise_phone(to)
            .ok_or_else(|| alone(SendError::Permanent("numéro de portable invalide".into())))?;
        let request = match self.settings.provider {
            SmsProvider::Brevo => self
                .http
                .post(&self.settings.gateway_url)
                .header("api-key", self.settings.api_token.expose_secret())
                .json(&serde_json::json!({
                    "sender": self.settings.sender,
                    "recipient": to.trim_start_matches('+'),
                    "content": text,
                    "type": "transactional",
                    "tag": "aidants-connect",
                    "unicodeEnabled": true,
                })),
            _ => self
                .http
                .post(&self.settings.gateway_url)
                .bearer_auth(self.settings.api_token.expose_secret())
                .header("Idempotency-Key", id.to_string())
                .json(&serde_json::json!({
                    "to": to,
                    "text": text,
                    "sender": self.settings.sender,
                })),
        };
        let idempotent = self.settings.provider == SmsProvider::HttpJson;
        let response = request.send().await.map_err(|e| {
            let why = format!("passerelle SMS : {}", error_kind(&e));
            // Unreachable or silent: the batch's other messages are not tried (`SmsBatch`).
            let down =
                (e.is_connect() || e.is_timeout()).then(|| SendError::Transient(why.clone()));
            // Unreachable: nothing left. Otherwise the request may have been accepted: only an
            // idempotent gateway can be asked again.
            let this = if e.is_connect() || idempotent {
                SendError::Transient(why)
            } else {
                SendError::Uncertain(why)
            };
            (this, down)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("passerelle SMS : statut {}", status.as_u16());
        Err(alone(match status.as_u16() {
            // The message itself is refused: sending it again would be refused too.
            400 | 413 | 422 => SendError::Permanent(why),
            // An error inside the provider, which may have sent it: only an idempotent gateway
            // can be asked again.
            500 | 502 | 504 if !idempotent => SendError::Uncertain(why),
            // Overload, outage, credits or credentials being fixed: later.
            _ => SendError::Transient(why),
        }))
    }
}

/// SMS sent one after the other for a batch of the outbox. A gateway that cannot be reached, or
/// does not answer within `sms.timeout_ms`, for one of them fails the batch's others at once
/// with the same error (retried later), instead of each waiting for it in turn; a gateway that
/// answers, even with an error, is asked for each message.
pub struct SmsBatch<'a> {
    gateway: &'a SmsGateway,
    unreachable: Option<SendError>,
}

impl SmsBatch<'_> {
    pub async fn send(&mut self, id: Uuid, to: &str, text: &str) -> Result<(), SendError> {
        // A number that can never be sent to fails for good, whatever the gateway's state.
        if let (Some(e), Some(_)) = (&self.unreachable, normalise_phone(to)) {
            return Err(e.clone());
        }
        self.gateway
            .try_send(id, to, text)
            .await
            .map_err(|(e, down)| {
                if down.is_some() {
                    self.unreachable = down;
                }
                e
            })
    }
}

/// What went wrong, without the URL (which may carry a credential with some providers).
fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "délai dépassé"
    } else if e.is_connect() {
        "injoignable"
    } else {
        "réponse perdue"
    }
}
