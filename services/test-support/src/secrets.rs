//! Looks for a secret in clear anywhere in the database: every column of every table of every
//! schema (platform, each dep_*, anything else but PostgreSQL's own), whatever its type.

use base64::Engine;
use sqlx::PgPool;

/// The forms a secret could be stored in without being hashed: as given, and, when it is
/// base64 of random bytes, those bytes (bytea) or their hex (text).
fn forms(secret: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut texts = vec![secret.to_owned()];
    let mut bytes = vec![secret.as_bytes().to_vec()];
    // Tokens may carry a `{département}.` prefix before their random part.
    let random = secret.rsplit('.').next().unwrap_or(secret);
    for engine in [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD,
    ] {
        if let Ok(raw) = engine.decode(random)
            && raw.len() >= 16
        {
            texts.push(hex::encode(&raw));
            bytes.push(raw);
        }
    }
    if random != secret {
        texts.push(random.to_owned());
        bytes.push(random.as_bytes().to_vec());
    }
    (texts, bytes)
}

/// Every `schema.table.column` holding `secret` in clear (see `forms`). Reads with the admin
/// connection, which sees every schema.
pub async fn places_holding(admin: &PgPool, secret: &str) -> Vec<String> {
    assert!(
        secret.len() >= 16,
        "un secret trop court ne prouve rien : {secret}"
    );
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, NULL)
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
         ORDER BY 1, 2, 3",
    )
    .fetch_all(admin)
    .await
    .expect("colonnes");
    assert!(
        columns.iter().any(|(s, ..)| s == "platform"),
        "la recherche doit couvrir le schéma platform"
    );
    let (texts, bytes) = forms(secret);
    let mut found = Vec::new();
    for (schema, table, column, kind) in columns {
        let target = format!("\"{schema}\".\"{table}\"");
        let col = format!("\"{column}\"");
        let sql = if kind == "bytea" {
            let tests: Vec<String> = (1..=bytes.len())
                .map(|i| format!("position(${i}::bytea IN {col}) > 0"))
                .collect();
            format!("SELECT count(*) FROM {target} WHERE {}", tests.join(" OR "))
        } else {
            // Every other type read as text (json, arrays, composite types included).
            let tests: Vec<String> = (1..=texts.len())
                .map(|i| format!("strpos({col}::text, ${i}) > 0"))
                .collect();
            format!("SELECT count(*) FROM {target} WHERE {}", tests.join(" OR "))
        };
        let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        if kind == "bytea" {
            for b in &bytes {
                query = query.bind(b.clone());
            }
        } else {
            for t in &texts {
                query = query.bind(t.clone());
            }
        }
        let n = query
            .fetch_one(admin)
            .await
            .unwrap_or_else(|e| panic!("{schema}.{table}.{column} : {e}"));
        if n > 0 {
            found.push(format!("{schema}.{table}.{column}"));
        }
    }
    found
}

/// Fails, naming the places, when `secret` is stored in clear anywhere.
pub async fn assert_nowhere_in_clear(admin: &PgPool, what: &str, secret: &str) {
    let places = places_holding(admin, secret).await;
    assert!(places.is_empty(), "{what} en clair dans : {places:?}");
}
