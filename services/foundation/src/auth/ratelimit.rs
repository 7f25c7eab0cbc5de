//! Fixed-window rate limits kept in the platform schema, so every replica counts the same
//! attempts. Keys are hashed: no e-mail address or client address is stored in clear.

use sqlx::PgConnection;

/// One counted attempt: how many fell in the window so far, against the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub hits: i32,
    pub limit: i32,
}

impl Hit {
    /// The attempt is within the limit.
    pub fn allowed(&self) -> bool {
        self.hits <= self.limit
    }

    /// This attempt is the first refused one of its window: the one worth recording. Later
    /// refusals are only counted (the row's `hits`), so a flood of refused attempts writes
    /// nothing else and takes no shared lock.
    pub fn first_refusal(&self) -> bool {
        self.hits == self.limit + 1
    }
}

/// Counts one attempt for `key` in a window of `window_seconds`.
pub async fn hit(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    limit: i32,
    window_seconds: i64,
) -> Result<Hit, sqlx::Error> {
    let key = format!("{scope}:{}", hex::encode(super::secrets::token_hash(key)));
    let hits: i32 = sqlx::query_scalar(
        "INSERT INTO platform.rate_limits (key, window_start, hits) VALUES ($1, now(), 1)
         ON CONFLICT (key) DO UPDATE SET
             hits = CASE WHEN rate_limits.window_start < now() - make_interval(secs => $2) THEN 1
                         ELSE rate_limits.hits + 1 END,
             window_start = CASE WHEN rate_limits.window_start < now() - make_interval(secs => $2) THEN now()
                                 ELSE rate_limits.window_start END
         RETURNING hits",
    )
    .bind(key)
    .bind(window_seconds as f64)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Hit { hits, limit })
}
