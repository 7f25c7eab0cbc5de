//! Delays of login attempts from unknown browsers, per e-mail address (its SHA-256), whether
//! or not an account has that address. They grow with each wrong code (`factors::
//! unknown_delay_after`, up to a day) and end at the next right one; they never lock the
//! factor, and never slow the professional down in a browser where they logged in before.
//! Known and unknown addresses do exactly the same reads and writes here.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::factors::unknown_delay_after;
use super::secrets::token_hash;

/// Until when attempts for `email` from unknown browsers wait, if they do now.
pub async fn blocked_until(
    conn: &mut PgConnection,
    email: &str,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let until: Option<Option<OffsetDateTime>> = sqlx::query_scalar(
        "SELECT blocked_until FROM platform.login_delays WHERE email_hash = $1 FOR UPDATE",
    )
    .bind(token_hash(email))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(until.flatten().filter(|u| *u > now))
}

/// Counts a wrong code for `email` from an unknown browser; returns the new delay's end.
pub async fn record_failure(
    conn: &mut PgConnection,
    email: &str,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let failures: i32 = sqlx::query_scalar(
        "INSERT INTO platform.login_delays (email_hash, failures) VALUES ($1, 1)
         ON CONFLICT (email_hash) DO UPDATE SET failures = login_delays.failures + 1, updated_at = now()
         RETURNING failures",
    )
    .bind(token_hash(email))
    .fetch_one(&mut *conn)
    .await?;
    let delay = unknown_delay_after(failures);
    let until = (delay > time::Duration::ZERO).then(|| now + delay);
    sqlx::query("UPDATE platform.login_delays SET blocked_until = $2 WHERE email_hash = $1")
        .bind(token_hash(email))
        .bind(until)
        .execute(&mut *conn)
        .await?;
    Ok(until)
}

/// A right code from an unknown browser ends the delays of its address.
pub async fn clear(conn: &mut PgConnection, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM platform.login_delays WHERE email_hash = $1")
        .bind(token_hash(email))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
