//! The outbox consumer. Woken at once by `pg_notify` on commit of a producer's transaction, and
//! by a periodic sweep (retries after backoff, notifications missed while disconnected). Rows
//! are claimed with `FOR UPDATE SKIP LOCKED`, so several replicas share the work safely.

use std::time::Duration;

use foundation::app::{Platform, Shutdown};
use foundation::outbox::{NOTIFY_CHANNEL, PLATFORM_SCOPE};
use foundation::tenancy::DepartementCode;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::smtp::{Mailer, SendError};
use crate::templates;

/// After this many failed attempts a message stays in the outbox as a dead letter.
pub const MAX_ATTEMPTS: i32 = 8;
const BATCH: i64 = 20;
const SWEEP_EVERY: Duration = Duration::from_secs(15);

#[derive(Clone, Copy)]
enum Scope {
    Platform,
    Departement(DepartementCode),
}

/// The claim and the two outcomes, for the national table and for a territory's own.
struct Sql {
    claim: &'static str,
    sent: &'static str,
    failed: &'static str,
}

const PLATFORM_SQL: Sql = Sql {
    claim: "SELECT id, channel, recipient, template, payload FROM platform.outbox
            WHERE sent_at IS NULL AND available_at <= now() AND attempts < $1
            ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    sent: "UPDATE platform.outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
    failed: "UPDATE platform.outbox SET attempts = CASE WHEN $3 THEN $4 ELSE attempts + 1 END,
             last_error = $2, available_at = now() + make_interval(secs => least(power(2, attempts + 1), 3600))
             WHERE id = $1",
};

const TENANT_SQL: Sql = Sql {
    claim: "SELECT id, channel, recipient, template, payload FROM outbox
            WHERE sent_at IS NULL AND available_at <= now() AND attempts < $1
            ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    sent: "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
    failed: "UPDATE outbox SET attempts = CASE WHEN $3 THEN $4 ELSE attempts + 1 END,
             last_error = $2, available_at = now() + make_interval(secs => least(power(2, attempts + 1), 3600))
             WHERE id = $1",
};

type Row = (Uuid, String, String, String, serde_json::Value);

pub struct OutboxWorker {
    platform: Platform,
    mailer: Mailer,
}

impl OutboxWorker {
    pub fn new(platform: Platform, mailer: Mailer) -> Self {
        Self { platform, mailer }
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut listener = match self.platform.listen(NOTIFY_CHANNEL).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "outbox: LISTEN impossible, balayage périodique seul");
                None
            }
        };
        self.sweep(&shutdown).await;
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.requested() => break,
                _ = sweep.tick() => self.sweep(&shutdown).await,
                notification = recv(&mut listener) => match notification {
                    Some(scope) => self.drain(scope, &shutdown).await,
                    None => tokio::time::sleep(Duration::from_millis(500)).await,
                },
            }
        }
    }

    async fn sweep(&self, shutdown: &Shutdown) {
        self.drain(Scope::Platform, shutdown).await;
        for departement in self.platform.tenancy.served() {
            if shutdown.is_requested() {
                return;
            }
            self.drain(Scope::Departement(departement), shutdown).await;
        }
    }

    /// Delivers batches until nothing is due in this scope.
    async fn drain(&self, scope: Scope, shutdown: &Shutdown) {
        while !shutdown.is_requested() {
            match self.deliver_batch(scope).await {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: lot non traité");
                    return;
                }
            }
        }
    }

    async fn deliver_batch(&self, scope: Scope) -> Result<usize, sqlx::Error> {
        match scope {
            Scope::Platform => {
                let mut tx = self.platform.platform_pool().begin().await?;
                let n = self.deliver(&mut tx, &PLATFORM_SQL).await?;
                tx.commit().await?;
                Ok(n)
            }
            Scope::Departement(departement) => {
                // A territory not served (not provisioned, failed migration) has nothing to send.
                let Ok(tenant) = self.platform.tenancy.context(departement).await else {
                    return Ok(0);
                };
                let mut tx = tenant.begin().await?;
                let n = self.deliver(&mut tx, &TENANT_SQL).await?;
                tx.commit().await?;
                Ok(n)
            }
        }
    }

    async fn deliver(&self, conn: &mut PgConnection, sql: &Sql) -> Result<usize, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(sql.claim)
            .bind(MAX_ATTEMPTS)
            .bind(BATCH)
            .fetch_all(&mut *conn)
            .await?;
        for (id, channel, recipient, template, payload) in &rows {
            let outcome = match channel.as_str() {
                "email" => match templates::render(template, payload) {
                    Ok(message) => self.mailer.send(*id, recipient, &message).await,
                    Err(e) => Err(SendError::Permanent(e.to_string())),
                },
                other => Err(SendError::Permanent(format!(
                    "canal « {other} » pas encore disponible"
                ))),
            };
            match outcome {
                Ok(()) => {
                    sqlx::query(sql.sent).bind(id).execute(&mut *conn).await?;
                }
                Err(e) => {
                    let permanent = matches!(e, SendError::Permanent(_));
                    tracing::warn!(message_id = %id, permanent, "outbox: échec d'envoi");
                    sqlx::query(sql.failed)
                        .bind(id)
                        .bind(e.to_string())
                        .bind(permanent)
                        .bind(MAX_ATTEMPTS)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(rows.len())
    }
}

async fn recv(listener: &mut Option<PgListener>) -> Option<Scope> {
    let Some(listener) = listener else {
        std::future::pending::<()>().await;
        return None;
    };
    match listener.recv().await {
        Ok(n) if n.payload() == PLATFORM_SCOPE => Some(Scope::Platform),
        Ok(n) => DepartementCode::parse(n.payload())
            .ok()
            .map(Scope::Departement),
        Err(e) => {
            tracing::warn!(error = %e, "outbox: écoute interrompue");
            None
        }
    }
}

/// Delivered messages are kept 30 days (to answer "did you send it?"), then deleted; messages
/// never delivered stay, as dead letters, for the operators.
pub fn purge_delivered_messages() -> foundation::jobs::Job {
    foundation::jobs::Job::new(
        "purge_delivered_messages",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let mut purged = sqlx::query(
                "DELETE FROM platform.outbox WHERE sent_at < now() - interval '30 days'",
            )
            .execute(platform.platform_pool())
            .await?
            .rows_affected();
            for departement in platform.tenancy.served() {
                let ctx = platform.tenancy.context(departement).await?;
                let mut tx = ctx.begin().await?;
                purged +=
                    sqlx::query("DELETE FROM outbox WHERE sent_at < now() - interval '30 days'")
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                tx.commit().await?;
            }
            Ok(purged)
        },
    )
}
