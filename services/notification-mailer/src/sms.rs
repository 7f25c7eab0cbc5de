//! The SMS channel: one HTTP POST per message to the configured gateway. The outbox id is sent
//! as `Idempotency-Key`, and the gateway must not send twice for one key; so, unlike SMTP, an
//! answer lost after the request left is safely retried.

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

    /// Sends one SMS whose idempotency key is the outbox id.
    pub async fn send(&self, id: Uuid, to: &str, text: &str) -> Result<(), SendError> {
        if self.settings.provider == SmsProvider::None {
            return Err(SendError::Transient(
                "aucune passerelle SMS n'est configurée".into(),
            ));
        }
        let to = normalise_phone(to)
            .ok_or_else(|| SendError::Permanent("numéro de portable invalide".into()))?;
        let response = self
            .http
            .post(&self.settings.gateway_url)
            .bearer_auth(self.settings.api_token.expose_secret())
            .header("Idempotency-Key", id.to_string())
            .json(&serde_json::json!({
                "to": to,
                "text": text,
                "sender": self.settings.sender,
            }))
            .send()
            .await
            // Unreachable, or the answer was lost: retrying is safe with the same key.
            .map_err(|e| SendError::Transient(format!("passerelle SMS : {}", error_kind(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("passerelle SMS : statut {}", status.as_u16());
        match status.as_u16() {
            // The message itself is refused: sending it again would be refused too.
            400 | 413 | 422 => Err(SendError::Permanent(why)),
            // Overload, outage, or credentials being fixed: later.
            _ => Err(SendError::Transient(why)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_to_e164_mobiles() {
        assert_eq!(
            normalise_phone("06 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("07.12.34.56.78").as_deref(),
            Some("+33712345678")
        );
        assert_eq!(
            normalise_phone("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("0033612345678").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("+262 692 12 34 56").as_deref(),
            Some("+262692123456")
        );
        // Landlines, short or malformed numbers.
        assert_eq!(normalise_phone("05 56 12 34 56"), None);
        assert_eq!(normalise_phone("+33556123456"), None);
        assert_eq!(normalise_phone("0612"), None);
        assert_eq!(normalise_phone("06 12 34 56 7a"), None);
        assert_eq!(normalise_phone(""), None);
    }
}
