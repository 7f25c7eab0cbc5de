//! Fixed-window rate limits kept in the platform schema, so every replica counts the same
//! attempts. Keys are hashed: no e-mail address or client address is stored in clear.

use sqlx::PgConnection;

/// Counts one attempt for `key`; true while at most `limit` attempts fell in the window.
pub async fn hit(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    limit: i32,
    window_seconds: i64,
) -> Result<bool, sqlx::Error> {
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
    Ok(hits <= limit)
}
