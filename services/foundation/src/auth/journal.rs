//! The national security journal (platform schema): append-only for the application role, and
//! hash-chained. Appends are serialised by a transaction-level advisory lock, so concurrent
//! writers never fork the chain. Personal data is referenced by ids only.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// What happened (stable words, used in exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    LoginLinkSent,
    LoginFailed,
    LoginSucceeded,
    Logout,
    FactorEnrolled,
    FactorFailed,
    FactorBlocked,
    FactorLocked,
    FactorRevoked,
    StructureSwitched,
    ActivityRechecked,
    ProfessionalDeactivated,
    RateLimited,
}

impl SecurityEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityEvent::LoginLinkSent => "login_link_sent",
            SecurityEvent::LoginFailed => "login_failed",
            SecurityEvent::LoginSucceeded => "login_succeeded",
            SecurityEvent::Logout => "logout",
            SecurityEvent::FactorEnrolled => "factor_enrolled",
            SecurityEvent::FactorFailed => "factor_failed",
            SecurityEvent::FactorBlocked => "factor_blocked",
            SecurityEvent::FactorLocked => "factor_locked",
            SecurityEvent::FactorRevoked => "factor_revoked",
            SecurityEvent::StructureSwitched => "structure_switched",
            SecurityEvent::ActivityRechecked => "activity_rechecked",
            SecurityEvent::ProfessionalDeactivated => "professional_deactivated",
            SecurityEvent::RateLimited => "rate_limited",
        }
    }
}

fn entry_hash(
    prev: &[u8],
    seq: i64,
    at: OffsetDateTime,
    kind: &str,
    professional: Option<Uuid>,
    actor: Option<Uuid>,
    details: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.unix_timestamp_nanos().to_be_bytes());
    for part in [
        kind.as_bytes(),
        professional
            .map(|u| *u.as_bytes())
            .unwrap_or_default()
            .as_slice(),
        actor.map(|u| *u.as_bytes()).unwrap_or_default().as_slice(),
        details.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().to_vec()
}

/// Appends one event inside the caller's transaction.
pub async fn append(
    conn: &mut PgConnection,
    kind: SecurityEvent,
    professional: Option<Uuid>,
    actor: Option<Uuid>,
    details: Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aidants-connect:security-journal'))")
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM platform.security_journal ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    // Microsecond precision: what Postgres stores, so the hash can be recomputed.
    let now = OffsetDateTime::now_utc();
    let at = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    let details = details.to_string();
    let hash = entry_hash(&prev, seq, at, kind.as_str(), professional, actor, &details);
    sqlx::query(
        "INSERT INTO platform.security_journal (seq, at, kind, professional_id, actor_id, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(at)
    .bind(kind.as_str())
    .bind(professional)
    .bind(actor)
    .bind(&details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// Outcome of a verification: entries checked, and the first broken one if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    pub first_broken: Option<i64>,
}

type Row = (
    i64,
    OffsetDateTime,
    String,
    Option<Uuid>,
    Option<Uuid>,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// Recomputes the whole chain.
pub async fn verify(conn: &mut PgConnection) -> Result<Verification, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, kind, professional_id, actor_id, details, prev_hash, hash
         FROM platform.security_journal ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut prev = vec![0u8; 32];
    let mut expected_seq = 1;
    for (checked, (seq, at, kind, professional, actor, details, prev_hash, hash)) in
        rows.into_iter().enumerate()
    {
        let recomputed = entry_hash(&prev, seq, at, &kind, professional, actor, &details);
        if seq != expected_seq || prev_hash != prev || hash != recomputed {
            return Ok(Verification {
                checked: checked as u64,
                first_broken: Some(seq),
            });
        }
        prev = hash;
        expected_seq += 1;
    }
    Ok(Verification {
        checked: (expected_seq - 1) as u64,
        first_broken: None,
    })
}
