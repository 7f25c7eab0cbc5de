//! Second factors in the database: enrolment, and the check of a code with its protections —
//! single use (last used step), ±1 step, growing delays after 3 failures, lock after 10.

use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::journal::{self, SecurityEvent};
use super::secrets::SeedCipher;
use super::totp::{self, TotpError};
use crate::ids::ProfessionalId;

/// Failures allowed before delays start.
pub const FREE_FAILURES: i32 = 3;
/// Failures after which the factor is locked until a référent or the national team unlocks it.
pub const LOCK_AFTER: i32 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactorError {
    #[error("aucun second facteur actif")]
    NoFactor,
    #[error("trop d'essais : réessayez après {0}")]
    Blocked(OffsetDateTime),
    #[error("second facteur verrouillé")]
    Locked,
    #[error("code incorrect")]
    Wrong,
    #[error("code déjà utilisé")]
    Replayed,
    #[error("seed illisible")]
    Cipher,
}

/// The device's time: the server's, shifted by the drift found at the last re-synchronisation.
pub fn drifted(now: OffsetDateTime, step_seconds: i32, drift_steps: i32) -> u64 {
    (now.unix_timestamp() + i64::from(drift_steps) * i64::from(step_seconds)).max(0) as u64
}

/// Delay imposed after `failures` consecutive failures (0 while under the free allowance).
pub fn delay_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        Duration::ZERO
    } else {
        let doublings = (failures - FREE_FAILURES).min(6) as u32;
        Duration::seconds(15 * 2_i64.pow(doublings))
    }
}

/// Longest delay imposed on unknown browsers.
pub const UNKNOWN_BROWSER_MAX_DELAY: Duration = Duration::hours(24);

/// Delay imposed on unknown browsers after `failures` of theirs: the same start, but it keeps
/// doubling up to a day, since these failures never lock the factor.
pub fn unknown_delay_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        Duration::ZERO
    } else {
        let doublings = (failures - FREE_FAILURES).min(20) as u32;
        Duration::seconds(15 * 2_i64.pow(doublings)).min(UNKNOWN_BROWSER_MAX_DELAY)
    }
}

/// Where a code is typed: a browser where the professional completed a login, or a session
/// (`Known`: failures count toward the lock and are journaled here), or any other browser
/// (`Unknown`: the factor records nothing of a failure — the login counts it per address in
/// `auth::delays` — so that knowing an e-mail is not enough to lock a factor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Known,
    Unknown,
}

#[derive(sqlx::FromRow)]
struct FactorRow {
    id: Uuid,
    seed_ciphertext: Vec<u8>,
    seed_nonce: Vec<u8>,
    key_version: i32,
    step_seconds: i32,
    last_used_step: i64,
    failures: i32,
    blocked_until: Option<OffsetDateTime>,
    locked: bool,
    drift_steps: i32,
    aad_bound: bool,
}

/// The professional's factor in use, read as it is, or locked until the caller's transaction
/// ends (`FACTOR_LOCKED`).
async fn factor_in_use(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    sql: &'static str,
) -> Result<FactorRow, FactorError> {
    sqlx::query_as(sql)
        .bind(professional)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|_| FactorError::NoFactor)?
        .ok_or(FactorError::NoFactor)
}

macro_rules! factor_in_use {
    ($lock:literal) => {
        concat!(
            "SELECT id, seed_ciphertext, seed_nonce, key_version, step_seconds, last_used_step,
                    failures, blocked_until, locked, drift_steps, aad_bound
             FROM platform.second_factors
             WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL",
            $lock
        )
    };
}
const FACTOR_LOCKED: &str = factor_in_use!(" FOR UPDATE");
const FACTOR_AS_IS: &str = factor_in_use!("");

/// The factor's state refuses any code (locked, or delayed until later than `now`), else the
/// code checked against its seed: the step it matches, or why it matches none.
fn verify(
    cipher: &SeedCipher,
    f: &FactorRow,
    code: &str,
    now: OffsetDateTime,
) -> Result<Result<i64, TotpError>, FactorError> {
    if f.locked {
        return Err(FactorError::Locked);
    }
    // Unknown browsers also wait out the delays of the known ones.
    if let Some(until) = f.blocked_until.filter(|u| *u > now) {
        return Err(FactorError::Blocked(until));
    }
    let seed = open_seed(
        cipher,
        f.id,
        &f.seed_ciphertext,
        &f.seed_nonce,
        f.key_version,
        f.aad_bound,
    )
    .map_err(|_| FactorError::Cipher)?;
    Ok(totp::verify(
        &seed,
        f.step_seconds as u64,
        code,
        drifted(now, f.step_seconds, f.drift_steps),
        f.last_used_step,
    ))
}

/// Uses `step` of the factor, in one statement: only while that factor is in use, neither
/// locked nor delayed at `now`, and no code of that step or a later one was accepted. True if
/// this call used it. Two requests that read the factor before either used the step cannot
/// both pass: the second one's condition, evaluated again on the row the first one wrote,
/// fails.
pub async fn use_step(
    conn: &mut PgConnection,
    factor: Uuid,
    step: i64,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let used = sqlx::query(
        "UPDATE platform.second_factors SET last_used_step = $2, failures = 0, blocked_until = NULL
         WHERE id = $1 AND last_used_step < $2 AND NOT locked AND revoked_at IS NULL
           AND confirmed_at IS NOT NULL AND (blocked_until IS NULL OR blocked_until <= $3)",
    )
    .bind(factor)
    .bind(step)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(used == 1)
}

/// [`check_code`] where the check is a transaction of its own (the recap's and the other acts'
/// code, typed in a session: `Trust::Known`). A right code costs two lone statements: the
/// factor read without a lock, then [`use_step`]. Any other outcome (a wrong or replayed code,
/// a locked or delayed factor, the step used meanwhile by another request) is decided and
/// recorded again by [`check_code`] in a transaction, on the factor locked: what it answers and
/// journals stays the one rule for failures.
pub async fn check_code_alone(
    platform: &crate::app::Platform,
    professional: ProfessionalId,
    code: &str,
    now: OffsetDateTime,
) -> Result<Uuid, CheckError> {
    {
        let mut conn = platform.tenancy.request_connection().await?;
        if let Ok(f) = factor_in_use(&mut conn, professional, FACTOR_AS_IS).await
            && let Ok(Ok(step)) = verify(&platform.cipher, &f, code, now)
            && use_step(&mut conn, f.id, step, now).await?
        {
            return Ok(f.id);
        }
    }
    let mut tx = platform.platform_pool().begin().await?;
    let checked = check_code(
        &mut tx,
        &platform.cipher,
        professional,
        code,
        now,
        Trust::Known,
    )
    .await;
    tx.commit().await?;
    Ok(checked?)
}

/// Why [`check_code_alone`] did not accept a code: the code or the factor, or the database.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Factor(#[from] FactorError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Checks a code against the professional's factor in use, recording the outcome (and
/// journaling failures, blocks and locks) in the caller's transaction.
pub async fn check_code(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,

    code: &str,
    now: OffsetDateTime,
    trust: Trust,
) -> Result<Uuid, FactorError> {
    let f = factor_in_use(conn, professional, FACTOR_LOCKED).await?;
    match verify(cipher, &f, code, now)? {
        Ok(step) => {
            sqlx::query(
                "UPDATE platform.second_factors SET last_used_step = $2, failures = 0, blocked_until = NULL
                 WHERE id = $1",
            )
            .bind(f.id)
            .bind(step)
            .execute(&mut *conn)
            .await
            .map_err(|_| FactorError::NoFactor)?;
            Ok(f.id)
        }
        Err(e) if trust == Trust::Unknown => Err(match e {
            TotpError::Replayed => FactorError::Replayed,
            TotpError::Wrong => FactorError::Wrong,
        }),
        Err(e) => {
            let failures = f.failures + 1;
            let lock = failures >= LOCK_AFTER;
            let delay = delay_after(failures);
            let until = (delay > Duration::ZERO).then(|| now + delay);
            sqlx::query("UPDATE platform.second_factors SET failures = $2, blocked_until = $3, locked = $4 WHERE id = $1")
                .bind(f.id)
                .bind(failures)
                .bind(until)
                .bind(lock)
                .execute(&mut *conn)
                .await
                .map_err(|_| FactorError::NoFactor)?;
            let event = if lock {
                SecurityEvent::FactorLocked
            } else if until.is_some() {
                SecurityEvent::FactorBlocked
            } else {
                SecurityEvent::FactorFailed
            };
            let reason = if e == TotpError::Replayed {
                "replayed"
            } else {
                "wrong"
            };
            journal::append(
                conn,
                event,
                Some(professional),
                None,
                json!({ "factor": f.id, "failures": failures, "reason": reason }),
            )
            .await
            .map_err(|_| FactorError::NoFactor)?;
            Err(match e {
                TotpError::Replayed => FactorError::Replayed,
                TotpError::Wrong => FactorError::Wrong,
            })
        }
    }
}

/// A factor's seed: bound to the factor's id, or unbound for rows written before binding.
pub fn open_seed(
    cipher: &SeedCipher,
    factor: Uuid,
    ciphertext: &[u8],
    nonce: &[u8],
    version: i32,
    bound: bool,
) -> Result<Vec<u8>, super::secrets::CipherError> {
    cipher.decrypt_for(
        ciphertext,
        nonce,
        version,
        bound.then_some(factor.as_bytes().as_slice()),
    )
}

/// Starts enrolling an authenticator app: a new seed, stored encrypted and unconfirmed.
/// Returns the factor id and the seed (shown once, as a QR code).
pub async fn start_app_enrolment(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,
) -> Result<(Uuid, Vec<u8>), sqlx::Error> {
    sqlx::query(
        "DELETE FROM platform.second_factors WHERE professional_id = $1 AND confirmed_at IS NULL",
    )
    .bind(professional)
    .execute(&mut *conn)
    .await?;
    let seed = totp::new_seed();
    let id = Uuid::now_v7();
    let (ciphertext, nonce) = cipher.encrypt_for(&seed, id.as_bytes());
    sqlx::query(
        "INSERT INTO platform.second_factors (id, professional_id, kind, seed_ciphertext, seed_nonce, key_version, aad_bound)
         VALUES ($1, $2, 'app', $3, $4, $5, true)",
    )
    .bind(id)
    .bind(professional)
    .bind(ciphertext)
    .bind(nonce)
    .bind(cipher.version())
    .execute(&mut *conn)
    .await?;
    Ok((id, seed))
}

/// Seed ciphertext, nonce, key version, step, bound to the row.
type PendingRow = (Vec<u8>, Vec<u8>, i32, i32, bool);

/// Confirms an enrolment with a first valid code; the factor previously in use is revoked.
pub async fn confirm_enrolment(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,

    factor: Uuid,
    code: &str,
    now: OffsetDateTime,
) -> Result<(), FactorError> {
    let row: Option<PendingRow> = sqlx::query_as(
        "SELECT seed_ciphertext, seed_nonce, key_version, step_seconds, aad_bound FROM platform.second_factors
         WHERE id = $1 AND professional_id = $2 AND confirmed_at IS NULL FOR UPDATE",
    )
    .bind(factor)
    .bind(professional)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|_| FactorError::NoFactor)?;
    let (ciphertext, nonce, version, step, bound) = row.ok_or(FactorError::NoFactor)?;
    let seed = open_seed(cipher, factor, &ciphertext, &nonce, version, bound)
        .map_err(|_| FactorError::Cipher)?;
    let step = totp::verify(&seed, step as u64, code, now.unix_timestamp() as u64, 0)
        .map_err(|_| FactorError::Wrong)?;
    let db = |_| FactorError::NoFactor;
    sqlx::query(
        "UPDATE platform.second_factors SET revoked_at = now()
         WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL",
    )
    .bind(professional)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query("UPDATE platform.second_factors SET confirmed_at = now(), last_used_step = $2 WHERE id = $1")
        .bind(factor)
        .bind(step)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    journal::append(
        conn,
        SecurityEvent::FactorEnrolled,
        Some(professional),
        Some(professional),
        json!({ "factor": factor, "kind": "app" }),
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// The seed of an enrolment not yet confirmed, to show its QR code again after a wrong code.
pub async fn pending_seed(
    pool: &sqlx::PgPool,
    cipher: &SeedCipher,
    professional: ProfessionalId,

    factor: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row: Option<(Vec<u8>, Vec<u8>, i32, bool)> = sqlx::query_as(
        "SELECT seed_ciphertext, seed_nonce, key_version, aad_bound FROM platform.second_factors
         WHERE id = $1 AND professional_id = $2 AND confirmed_at IS NULL",
    )
    .bind(factor)
    .bind(professional)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(c, n, v, b)| open_seed(cipher, factor, &c, &n, v, b).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::seconds(15));
        assert_eq!(delay_after(4), Duration::seconds(30));
        assert_eq!(delay_after(5), Duration::seconds(60));
        assert_eq!(delay_after(20), Duration::seconds(960));
    }

    #[test]
    fn unknown_browsers_wait_longer_up_to_a_day() {
        assert_eq!(unknown_delay_after(2), Duration::ZERO);
        assert_eq!(unknown_delay_after(3), Duration::seconds(15));
        assert_eq!(unknown_delay_after(10), Duration::seconds(15 * 128));
        assert_eq!(unknown_delay_after(16), UNKNOWN_BROWSER_MAX_DELAY);
        assert_eq!(unknown_delay_after(1_000), UNKNOWN_BROWSER_MAX_DELAY);
    }
}
