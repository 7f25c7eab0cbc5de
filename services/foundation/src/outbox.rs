//! The transactional outbox: a message is written in the same transaction as the action that
//! causes it, so it exists if and only if the action committed. notification-mailer delivers it.
//! A `pg_notify` on the `outbox` channel (sent at commit) wakes the consumer at once.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::secrets::SeedCipher;
use crate::tenancy::TenantTx;

/// Channel the consumer listens on; the payload names the schema to look at.
pub const NOTIFY_CHANNEL: &str = "outbox";
/// After this many failed attempts a message stays in the outbox as a dead letter.
pub const MAX_ATTEMPTS: i32 = 8;
/// Notification payload for the national outbox.
pub const PLATFORM_SCOPE: &str = "platform";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    Letter,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Letter => "letter",
        }
    }
}

/// A message to deliver: a template name, its recipient and the template's parameters.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub channel: Channel,
    pub recipient: String,
    pub template: &'static str,
    pub payload: Value,
}

/// Queues a national message inside the caller's platform transaction.
pub async fn enqueue_platform(
    conn: &mut PgConnection,
    message: &OutboxMessage,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    insert_platform(conn, id, message, &message.payload, None).await?;
    Ok(id)
}

/// Queues a national message whose parameters carry a secret (a login or enrolment link):
/// `payload` keeps only the names of the parameters, their values are sealed with the message
/// id as associated data (`sealed_payload`), opened by the worker at send time and cleared once
/// the message is sent. Nothing in the table gives the link away.
pub async fn enqueue_platform_sealed(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    message: &OutboxMessage,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let names: Vec<&str> = message
        .payload
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let sealed = cipher.seal(message.payload.to_string().as_bytes(), id.as_bytes());
    let shown = serde_json::json!({ "sealed": names });
    insert_platform(conn, id, message, &shown, Some(sealed)).await?;
    Ok(id)
}

async fn insert_platform(
    conn: &mut PgConnection,
    id: Uuid,
    message: &OutboxMessage,
    payload: &Value,
    sealed: Option<Vec<u8>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO platform.outbox (id, channel, recipient, template, payload, sealed_payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(message.channel.as_str())
    .bind(&message.recipient)
    .bind(message.template)
    .bind(payload)
    .bind(sealed)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(PLATFORM_SCOPE)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The parameters of a message queued by `enqueue_platform_sealed`.
pub fn open_sealed(cipher: &SeedCipher, id: Uuid, sealed: &[u8]) -> Option<Value> {
    let plain = cipher.open(sealed, id.as_bytes())?;
    serde_json::from_slice(&plain).ok()
}

/// Queues a territory's message inside the caller's tenant transaction.
pub async fn enqueue_tenant(
    tx: &mut TenantTx,
    message: &OutboxMessage,
) -> Result<Uuid, sqlx::Error> {
    insert_tenant(tx, message, None).await
}

async fn insert_tenant(
    tx: &mut TenantTx,
    message: &OutboxMessage,
    structure: Option<Uuid>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (id, channel, recipient, template, payload, structure_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(message.channel.as_str())
    .bind(&message.recipient)
    .bind(message.template)
    .bind(&message.payload)
    .bind(structure)
    .execute(&mut **tx)
    .await?;
    // Letters wait for their structure's batch: nothing to wake.
    if message.channel != Channel::Letter {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(tx.departement().as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(id)
}

/// Days a batch of printable letters is kept in the document vault.
pub const LETTER_BATCH_RETENTION_DAYS: i64 = 90;

/// How a usager can be reached, as recorded on the usager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagerContact {
    pub email: Option<String>,
    /// E.164 mobile number.
    pub phone: Option<String>,
    pub postal_address: Option<String>,
}

impl UsagerContact {
    /// The channel a receipt takes (product.md §9): e-mail, else SMS, else a printed letter;
    /// none when the usager left no way to be reached.
    pub fn route(&self) -> Option<(Channel, &str)> {
        fn known(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        known(&self.email)
            .map(|e| (Channel::Email, e))
            .or_else(|| known(&self.phone).map(|p| (Channel::Sms, p)))
            .or_else(|| known(&self.postal_address).map(|a| (Channel::Letter, a)))
    }
}

/// A French or international mobile number in E.164 (`+33612345678`), from what a person
/// typed: spaces, dots and dashes ignored, a French `06…`/`07…` number accepted as is.
pub fn normalise_phone(typed: &str) -> Option<String> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '\u{a0}'))
        .collect();
    let e164 = if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else if digits.len() == 10 && (digits.starts_with("06") || digits.starts_with("07")) {
        format!("+33{}", &digits[1..])
    } else {
        digits
    };
    let body = e164.strip_prefix('+')?;
    let valid = (8..=15).contains(&body.len())
        && body.chars().all(|c| c.is_ascii_digit())
        && !body.starts_with('0');
    // A French number must be a mobile one: an SMS to a landline is lost.
    let french_mobile = !body.starts_with("33")
        || (body.len() == 11 && (body[2..].starts_with('6') || body[2..].starts_with('7')));
    (valid && french_mobile).then_some(e164)
}

/// Lines of a postal address a window envelope shows (French postal standard: 6 lines of 38
/// characters at most).
pub const ADDRESS_LINES: usize = 6;
pub const ADDRESS_LINE_CHARS: usize = 38;

/// A postal address from what a person typed: lines trimmed, empty lines dropped; at least two
/// lines (the name, then where), at most [`ADDRESS_LINES`] of [`ADDRESS_LINE_CHARS`].
pub fn normalise_postal_address(typed: &str) -> Option<String> {
    let lines: Vec<&str> = typed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let fits = (2..=ADDRESS_LINES).contains(&lines.len())
        && lines
            .iter()
            .all(|l| l.chars().count() <= ADDRESS_LINE_CHARS && !l.chars().any(char::is_control));
    fits.then(|| lines.join("\n"))
}

/// What is wrong with a typed contact, said to the aidant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error(
        "Le numéro de téléphone mobile n'est pas valide : saisissez un numéro de portable, par exemple 06 12 34 56 78 (un téléphone fixe ne reçoit pas de SMS)."
    )]
    Phone,
    #[error(
        "L'adresse postale n'est pas valide : de 2 à 6 lignes (nom, numéro et voie, code postal et commune), 38 caractères au plus par ligne."
    )]
    PostalAddress,
}

/// The phone and postal address an aidant typed for a usager (each may be left empty), in the
/// form they are stored.
pub fn typed_contact(
    phone: &str,
    postal_address: &str,
) -> Result<(Option<String>, Option<String>), ContactError> {
    let phone = match phone.trim() {
        "" => None,
        p => Some(normalise_phone(p).ok_or(ContactError::Phone)?),
    };
    let address = if postal_address.trim().is_empty() {
        None
    } else {
        Some(normalise_postal_address(postal_address).ok_or(ContactError::PostalAddress)?)
    };
    Ok((phone, address))
}

/// Queues a receipt to a usager of `structure` by the channel their contact allows, inside the
/// caller's tenant transaction. Returns the message id and channel, or `None` when the usager
/// cannot be reached (nothing queued).
pub async fn enqueue_usager_receipt(
    tx: &mut TenantTx,
    structure: Uuid,
    contact: &UsagerContact,
    template: &'static str,
    payload: Value,
) -> Result<Option<(Uuid, Channel)>, sqlx::Error> {
    let Some((channel, recipient)) = contact.route() else {
        return Ok(None);
    };
    let message = OutboxMessage {
        channel,
        recipient: recipient.to_owned(),
        template,
        payload,
    };
    let id = insert_tenant(tx, &message, Some(structure)).await?;
    Ok(Some((id, channel)))
}

#[cfg(test)]
mod routing_tests {
    use super::*;

    #[test]
    fn receipts_go_by_email_else_sms_else_letter() {
        let mut contact = UsagerContact {
            email: Some("a@b.fr".into()),
            phone: Some("+33612345678".into()),
            postal_address: Some("1 rue X\n33000 Bordeaux".into()),
        };
        assert_eq!(contact.route(), Some((Channel::Email, "a@b.fr")));
        contact.email = Some("  ".into());
        assert_eq!(contact.route(), Some((Channel::Sms, "+33612345678")));
        contact.phone = None;
        assert_eq!(
            contact.route(),
            Some((Channel::Letter, "1 rue X\n33000 Bordeaux"))
        );
        contact.postal_address = None;
        assert_eq!(contact.route(), None);
    }

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

    #[test]
    fn typed_contacts_are_normalised_or_refused_in_french() {
        assert_eq!(
            typed_contact(
                " 06 12 34 56 78 ",
                "  M. Paul MARTIN \n\n 3 rue Neuve\r\n33000 Bordeaux "
            ),
            Ok((
                Some("+33612345678".into()),
                Some("M. Paul MARTIN\n3 rue Neuve\n33000 Bordeaux".into())
            ))
        );
        assert_eq!(typed_contact("", "  "), Ok((None, None)));
        assert_eq!(
            typed_contact("05 56 00 00 00", ""),
            Err(ContactError::Phone)
        );
        assert_eq!(
            typed_contact("", "Bordeaux"),
            Err(ContactError::PostalAddress)
        );
        let long = format!("M. Paul MARTIN\n{}", "x".repeat(39));
        assert_eq!(typed_contact("", &long), Err(ContactError::PostalAddress));
        let seven = "a\nb\nc\nd\ne\nf\ng";
        assert_eq!(typed_contact("", seven), Err(ContactError::PostalAddress));
        assert!(ContactError::Phone.to_string().starts_with("Le numéro"));
    }
}

/// A message that needs an operator: given up after its attempts (`dead`), or whose sending
/// started without a known outcome (`uncertain`: the worker died in between, more than 5
/// minutes ago, or the connection broke mid-session; it may have been delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckMessage {
    /// `platform` or a département code.
    pub scope: String,
    pub id: Uuid,
    pub template: String,
    pub attempts: i32,
    pub state: &'static str,
}

const STUCK_PLATFORM_SQL: &str =
    "SELECT id, template, attempts, sending_started_at IS NOT NULL FROM platform.outbox
     WHERE sent_at IS NULL AND (attempts >= $1 OR sending_started_at < now() - interval '5 minutes'
                                 OR (sending_started_at IS NOT NULL AND last_error IS NOT NULL))
     ORDER BY created_at";
const STUCK_TENANT_SQL: &str =
    "SELECT id, template, attempts, sending_started_at IS NOT NULL FROM outbox
     WHERE sent_at IS NULL AND (attempts >= $1 OR sending_started_at < now() - interval '5 minutes'
                                 OR (sending_started_at IS NOT NULL AND last_error IS NOT NULL))
     ORDER BY created_at";

/// Lists the stuck messages of the national outbox and of every served territory.
pub async fn list_stuck(
    tenancy: &crate::tenancy::Tenancy,
    max_attempts: i32,
) -> Result<Vec<StuckMessage>, sqlx::Error> {
    type StuckRow = (Uuid, String, i32, bool);
    let to_message = |scope: String| {
        move |(id, template, attempts, sending): StuckRow| StuckMessage {
            scope: scope.clone(),
            id,
            template,
            attempts,
            state: if sending { "uncertain" } else { "dead" },
        }
    };
    let rows: Vec<StuckRow> = sqlx::query_as(STUCK_PLATFORM_SQL)
        .bind(max_attempts)
        .fetch_all(tenancy.platform_pool())
        .await?;
    let mut stuck: Vec<StuckMessage> = rows
        .into_iter()
        .map(to_message(PLATFORM_SCOPE.into()))
        .collect();
    for departement in tenancy.served() {
        let Ok(ctx) = tenancy.context(departement).await else {
            continue;
        };
        let mut tx = ctx.begin().await?;
        let rows: Vec<StuckRow> = sqlx::query_as(STUCK_TENANT_SQL)
            .bind(max_attempts)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        stuck.extend(rows.into_iter().map(to_message(departement.to_string())));
    }
    Ok(stuck)
}

const REQUEUE_PLATFORM_SQL: &str = "UPDATE platform.outbox
     SET attempts = 0, sending_started_at = NULL, available_at = now(), last_error = NULL
     WHERE id = $1 AND sent_at IS NULL";
const REQUEUE_TENANT_SQL: &str = "UPDATE outbox
     SET attempts = 0, sending_started_at = NULL, available_at = now(), last_error = NULL
     WHERE id = $1 AND sent_at IS NULL";

/// Puts a stuck message back in the queue (found in the national outbox or a territory's).
pub async fn requeue(tenancy: &crate::tenancy::Tenancy, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(REQUEUE_PLATFORM_SQL)
        .bind(id)
        .execute(tenancy.platform_pool())
        .await?;
    if done.rows_affected() > 0 {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(PLATFORM_SCOPE)
            .execute(tenancy.platform_pool())
            .await?;
        return Ok(true);
    }
    for departement in tenancy.served() {
        let Ok(ctx) = tenancy.context(departement).await else {
            continue;
        };
        let mut tx = ctx.begin().await?;
        let done = sqlx::query(REQUEUE_TENANT_SQL)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(departement.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(true);
        }
        tx.commit().await?;
    }
    Ok(false)
}
