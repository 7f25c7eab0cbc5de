//! The security journal is kept a year: entries older than that go, up to a signed checkpoint
//! whose entry stays, so what remains still verifies; the application cannot choose what goes.

use foundation::auth::journal::{self, SecurityEvent};
use foundation::ids::ProfessionalId;
use foundation::journal::{Anchor, CheckpointKey};
use serde_json::json;
use sqlx::PgConnection;
use test_support::database::TestDatabase;
use time::{Duration, OffsetDateTime};

fn key() -> CheckpointKey {
    let settings = foundation::config::Settings::default();
    CheckpointKey::from_base64(secrecy::ExposeSecret::expose_secret(
        &settings.security.journal_signing_key,
    ))
    .expect("clé")
}

/// seq, at, kind, professional, actor, details.
type EntryRow = (
    i64,
    OffsetDateTime,
    String,
    Option<ProfessionalId>,
    Option<ProfessionalId>,
    String,
);

/// Moves every entry up to `last` back two years and re-chains the whole journal, as if it
/// had been written then (the hash covers the time).
async fn age(conn: &mut PgConnection, last: i64) {
    let rows: Vec<EntryRow> =
        sqlx::query_as(
            "SELECT seq, at, kind, professional_id, actor_id, details FROM platform.security_journal ORDER BY seq",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("journal");
    let mut prev = vec![0u8; 32];
    for (seq, at, kind, professional, actor, details) in rows {
        let at = if seq <= last {
            at - Duration::days(730)
        } else {
            at
        };
        let hash = journal::entry_hash(&prev, seq, at, &kind, professional, actor, &details);
        sqlx::query(
            "UPDATE platform.security_journal SET at = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
        )
        .bind(seq)
        .bind(at)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .expect("vieillissement");
        prev = hash;
    }
}

async fn append(conn: &mut PgConnection, n: usize) {
    for _ in 0..n {
        journal::append(conn, SecurityEvent::Logout, None, None, json!({}))
            .await
            .expect("entrée");
    }
}

#[tokio::test]
async fn entries_older_than_a_year_go_up_to_a_signed_checkpoint_and_the_rest_verifies() {
    let db = TestDatabase::create().await;
    let mut conn = db.admin.acquire().await.expect("connexion");
    let key = key();
    let anchor = Anchor::default();
    // Four entries of two years ago, signed; then two recent ones, signed.
    append(&mut conn, 4).await;
    age(&mut conn, 4).await;
    assert_eq!(
        journal::checkpoint(&mut conn, &key).await.expect("scellé"),
        Some(4)
    );
    append(&mut conn, 2).await;
    assert_eq!(
        journal::checkpoint(&mut conn, &key).await.expect("scellé"),
        Some(6)
    );
    let before = journal::verify_anchored(&mut conn, Some(&key.public()), &anchor)
        .await
        .expect("vérification");
    assert!(before.intact() && before.checked == 6, "{before:?}");

    // The application's role runs the purge (it cannot delete by itself).
    let app_pool = sqlx::PgPool::connect(&db.app_url).await.expect("pool");
    let mut app_conn = app_pool.acquire().await.expect("connexion");
    let removed = journal::purge_expired(&mut app_conn).await.expect("purge");
    assert_eq!(removed, 3, "les entrées 1 à 3, l'entrée scellée n° 4 reste");
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM platform.security_journal ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .expect("journal");
    assert_eq!(seqs, [4, 5, 6]);
    let after = journal::verify_anchored(&mut conn, Some(&key.public()), &anchor)
        .await
        .expect("vérification");
    assert!(after.intact() && after.checked == 3, "{after:?}");
    // Nothing newer than a year, nor the anchor, goes on a second run.
    assert_eq!(
        journal::purge_expired(&mut app_conn).await.expect("purge"),
        0
    );

    // A journal cut without its anchor does not verify.
    sqlx::query("DELETE FROM platform.security_journal WHERE seq = 4")
        .execute(&mut *conn)
        .await
        .expect("coupe");
    let cut = journal::verify(&mut conn).await.expect("vérification");
    assert!(cut.first_broken.is_some(), "{cut:?}");
}

#[tokio::test]
async fn without_an_old_enough_checkpoint_nothing_goes() {
    let db = TestDatabase::create().await;
    let mut conn = db.admin.acquire().await.expect("connexion");
    append(&mut conn, 3).await;
    age(&mut conn, 3).await;
    // Old entries, but no checkpoint names any of them: the chain could not start anywhere.
    assert_eq!(journal::purge_expired(&mut conn).await.expect("purge"), 0);
    // A checkpoint on recent entries only does not allow it either.
    append(&mut conn, 1).await;
    journal::checkpoint(&mut conn, &key())
        .await
        .expect("scellé");
    assert_eq!(journal::purge_expired(&mut conn).await.expect("purge"), 0);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.security_journal")
        .fetch_one(&mut *conn)
        .await
        .expect("journal");
    assert_eq!(count, 4);
}
