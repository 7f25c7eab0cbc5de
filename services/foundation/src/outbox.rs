//! The transactional outbox: a message is written in the same transaction as the action that
//! causes it, so it exists if and only if the action committed. notification-mailer delivers it.
//! A `pg_notify` on the `outbox` channel wakes the consumer at once: for the national outbox,
//! inside the producer's transaction (delivered at its commit); for a territory's, once the
//! producer's transaction has committed, by [`OutboxWake`] (see there why).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Queues a territory's message for one of its structures (a letter waits for that
/// structure's batch), inside the caller's tenant transaction.
pub async fn enqueue_for_structure(
    tx: &mut TenantTx,
    message: &OutboxMessage,
    structure: crate::ids::StructureId,
) -> Result<Uuid, sqlx::Error> {
    insert_tenant(tx, message, Some(structure)).await
}

async fn insert_tenant(
    tx: &mut TenantTx,
    message: &OutboxMessage,
    structure: Option<crate::ids::StructureId>,
) -> Result<Uuid, sqlx::Error> {
    let staged = Staged::new(tx, Some(message), structure);
    let id = staged.id;
    staged
        .bind(sqlx::query_as::<_, (i32,)>(concat!(
            crate::outbox_insert!("$1", "$2", "$3", "$4", "$5", "$6"),
            " RETURNING 1"
        )))
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

/// The insert of a territory's outbox row, its six values given as placeholders (`"$14"`…):
/// id, channel, recipient, template, payload, structure. With a null channel it writes nothing,
/// so that it can join another statement whose message is optional (`journal_with!`), its
/// values bound by [`Staged::bind`]. With `from "claim";` first, it writes once per row of the
/// statement's common table expression `claim` (none if the statement's own write did not
/// happen: `journal_with_claim!`).
#[doc(hidden)]
#[macro_export]
macro_rules! outbox_insert {
    ($id:literal, $channel:literal, $recipient:literal, $template:literal, $payload:literal,
     $structure:literal) => {
        $crate::outbox_insert!(from ""; $id, $channel, $recipient, $template, $payload, $structure)
    };
    (from $from:tt; $id:literal, $channel:literal, $recipient:literal, $template:literal,
     $payload:literal, $structure:literal) => {
        concat!(
            "INSERT INTO outbox (id, channel, recipient, template, payload, structure_id) SELECT ",
            $id,
            "::uuid, ",
            $channel,
            "::text, ",
            $recipient,
            "::text, ",
            $template,
            "::text, ",
            $payload,
            "::jsonb, ",
            $structure,
            "::uuid ",
            $crate::outbox_insert!(@from $from),
            "WHERE ",
            $channel,
            "::text IS NOT NULL"
        )
    };
    (@from "") => {
        ""
    };
    (@from $from:literal) => {
        concat!("FROM ", $from, " ")
    };
}

/// A territory's message (or none) ready to be written by [`outbox_insert!`] inside another
/// statement of the same transaction: the identity provider's redemption writes its receipt in
/// the statement that records the use of the mandate (one exchange with the database).
pub struct Staged {
    /// The message's id (a fresh one even without a message: then nothing is written).
    pub id: Uuid,
    message: Option<OutboxMessage>,
    structure: Option<crate::ids::StructureId>,
}

impl Staged {
    /// Stages `message`, and asks `tx` to wake the consumer once committed when it is one to
    /// deliver at once (letters wait for their structure's batch). If the statement that
    /// writes it fails, the transaction cannot commit, so nobody is woken for nothing.
    pub fn new(
        tx: &mut impl crate::tenancy::TenantWrites,
        message: Option<&OutboxMessage>,
        structure: Option<crate::ids::StructureId>,
    ) -> Staged {
        if message.is_some_and(|m| m.channel != Channel::Letter) {
            tx.wake_outbox_once_committed();
        }
        Staged {
            id: Uuid::now_v7(),
            message: message.cloned(),
            structure,
        }
    }

    /// Binds the six values of [`outbox_insert!`], in its order (nulls without a message).
    pub fn bind<'q, O>(
        self,
        query: crate::journal::RowsQuery<'q, O>,
    ) -> crate::journal::RowsQuery<'q, O> {
        let m = self.message;
        let channel = m.as_ref().map(|m| m.channel.as_str());
        let template = m.as_ref().map(|m| m.template);
        let (recipient, payload) = match m {
            Some(m) => (Some(m.recipient), Some(m.payload)),
            None => (None, None),
        };
        query
            .bind(self.id)
            .bind(channel)
            .bind(recipient)
            .bind(template)
            .bind(payload)
            .bind(self.structure)
    }
}

/// How long a wake-up waits for the commits that follow it before it goes out (see
/// [`OutboxWake`]).
const WAKE_GATHERING: std::time::Duration = std::time::Duration::from_millis(5);

/// Wakes the outbox consumer for territories whose transactions committed a message
/// (`TenantTx::commit` calls [`OutboxWake::wake`] after a successful commit).
///
/// A `pg_notify` inside the producer's transaction would make that transaction take
/// PostgreSQL's notification lock (one for the whole cluster) at commit and keep it until its
/// commit record is on disk: every durable transaction that notifies then flushes alone, one
/// after the other, where concurrent commits otherwise share a flush, so that together they
/// cannot exceed one per flush time (500–1,000/s on a disk that flushes in 1–2 ms). The
/// identity provider's redemption (one receipt per use of a mandate) is such a transaction.
/// On the local stack's disk (about 0.1 ms per flush) the change measured within the noise
/// (load-tests/README.md).
///
/// Here the wake-up goes out after the commit, in one statement that is its own transaction
/// (a notification is a hint, the message itself is durable in the outbox). That transaction
/// writes no WAL record, so PostgreSQL does not wait for the disk at its commit: 2,000 of them
/// in a row made one WAL flush, 2,000 one-row inserts made 2,000 (`pg_stat_wal.wal_sync`,
/// PostgreSQL 15, load-tests/README.md). The wake-ups of close commits are coalesced: a
/// wake-up waits `WAKE_GATHERING` (5 ms) before it goes out, and while it waits or is being
/// sent, the territories of the commits that follow are gathered and go out together in the
/// next (under the identity provider's token requests, one exchange for several redemptions
/// instead of one each; the receipts leave 5 ms later). If the process stops between a commit
/// and its wake-up, the consumer's periodic sweep (15 s) finds the message; a rolled-back
/// transaction wakes nothing, as before.
pub struct OutboxWake {
    conns: crate::tenancy::KeptConnections,
    pending: std::sync::Mutex<BTreeSet<&'static str>>,
    sending: AtomicBool,
}

impl OutboxWake {
    /// Wake-ups sent through `conns` (the platform's request connections: the consumer listens
    /// on the same database).
    pub(crate) fn new(conns: crate::tenancy::KeptConnections) -> Arc<Self> {
        Arc::new(Self {
            conns,
            pending: Default::default(),
            sending: AtomicBool::new(false),
        })
    }

    /// Asks for a wake-up of `scope`'s outbox (a département code, or [`PLATFORM_SCOPE`]).
    /// Returns at once; the notification is sent by a task of its own.
    pub fn wake(self: &Arc<Self>, scope: &'static str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope);
        if !self.sending.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.send_pending().await });
        }
    }

    fn take_pending(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    /// Sends what is pending until nothing is; the only sender while `sending` is set.
    async fn send_pending(self: Arc<Self>) {
        // If this task is dropped mid-send (its runtime shutting down), the flag is cleared so
        // that a later wake-up starts a sender again.
        struct Owner<'a>(&'a AtomicBool, bool);
        impl Drop for Owner<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.store(false, Ordering::Release);
                }
            }
        }
        let mut owner = Owner(&self.sending, true);
        loop {
            // Commits of the next few milliseconds join this wake-up.
            tokio::time::sleep(WAKE_GATHERING).await;
            let scopes = self.take_pending();
            if scopes.is_empty() {
                owner.1 = false;
                self.sending.store(false, Ordering::Release);
                // A wake-up asked for between the take and the store found `sending` still
                // set and left its scope pending: send it, unless another sender took over.
                let left = !self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if left && !self.sending.swap(true, Ordering::AcqRel) {
                    owner.1 = true;
                    continue;
                }
                return;
            }
            if let Err(e) = self.notify(&scopes).await {
                tracing::warn!(error = %e, "outbox: wake-up not sent, the periodic sweep will deliver");
            }
        }
    }

    /// One exchange with the server: the statement is its own transaction.
    async fn notify(&self, scopes: &[&'static str]) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, scope) FROM unnest($2::text[]) AS scope")
            .bind(NOTIFY_CHANNEL)
            .bind(scopes)
            .execute(&mut *self.conns.platform_conn().await?)
            .await?;
        Ok(())
    }
}

/// Days a batch of printable letters is kept in the document vault.
pub const LETTER_BATCH_RETENTION_DAYS: i64 = 90;

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

#[cfg(test)]
mod phone_tests {
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
        let Ok(ctx) = tenancy.territory(departement).await else {
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
        let Ok(ctx) = tenancy.territory(departement).await else {
            continue;
        };
        let mut tx = ctx.begin().await?;
        let done = sqlx::query(REQUEUE_TENANT_SQL)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            tx.commit().await?;
            // Awaited here, after the commit, rather than left to `OutboxWake`'s background
            // task: the operator's command exits as soon as this returns, and the task would
            // die with it (the message would then wait for the consumer's sweep).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(departement.to_string())
                .execute(tenancy.platform_pool())
                .await?;
            return Ok(true);
        }
        tx.commit().await?;
    }
    Ok(false)
}
