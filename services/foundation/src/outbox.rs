//! The transactional outbox: a message is written in the same transaction as the action that
//! causes it, so it exists if and only if the action committed. notification-mailer delivers it.
//! A `pg_notify` on the `outbox` channel (sent at commit) wakes the consumer at once.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::tenancy::TenantTx;

/// Channel the consumer listens on; the payload names the schema to look at.
pub const NOTIFY_CHANNEL: &str = "outbox";
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
    sqlx::query(
        "INSERT INTO platform.outbox (id, channel, recipient, template, payload)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(message.channel.as_str())
    .bind(&message.recipient)
    .bind(message.template)
    .bind(&message.payload)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(PLATFORM_SCOPE)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// Queues a territory's message inside the caller's tenant transaction.
pub async fn enqueue_tenant(
    tx: &mut TenantTx,
    message: &OutboxMessage,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (id, channel, recipient, template, payload) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(message.channel.as_str())
    .bind(&message.recipient)
    .bind(message.template)
    .bind(&message.payload)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(tx.departement().as_str())
        .execute(&mut **tx)
        .await?;
    Ok(id)
}
