//! Drafts of structure requests that nobody finished are not kept without a purpose
//! (product.md §12): deleted with what they list, and their index entries, after
//! [`DRAFT_RETENTION_DAYS`].

use foundation::app::Platform;
use foundation::tenancy::DepartementCode;
use uuid::Uuid;

use super::RequestError;

/// Drafts untouched this long are deleted (product.md §12: nothing kept without a purpose).
pub const DRAFT_RETENTION_DAYS: i32 = 180;

/// Deletes the territory's drafts untouched for `DRAFT_RETENTION_DAYS`, with what they list,
/// and their index entries. Returns how many.
pub async fn purge_abandoned_drafts(
    platform: &Platform,
    departement: DepartementCode,
) -> Result<u64, RequestError> {
    let tenant = platform.tenancy.unguarded(departement).await?;
    let mut tx = tenant.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM structure_requests
         WHERE status = 'draft' AND updated_at < now() - make_interval(days => $1) FOR UPDATE SKIP LOCKED",
    )
    .bind(DRAFT_RETENTION_DAYS)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    for statement in [
        "DELETE FROM request_aidants WHERE request_id = ANY($1)",
        "DELETE FROM request_commitments WHERE request_id = ANY($1)",
        "DELETE FROM request_messages WHERE request_id = ANY($1)",
    ] {
        sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
    }
    let deleted = sqlx::query("DELETE FROM structure_requests WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    // The index entries go after: an entry whose request is gone is only a dead pointer.
    sqlx::query("DELETE FROM platform.request_index WHERE request_id = ANY($1)")
        .bind(&ids)
        .execute(platform.platform_pool())
        .await?;
    Ok(deleted)
}

/// The daily job purging abandoned drafts in every served territory.
pub fn draft_purge() -> foundation::jobs::Job {
    foundation::jobs::Job::new(
        "purge_abandoned_request_drafts",
        std::time::Duration::from_secs(24 * 3600),
        |platform: Platform| async move {
            let platform = &platform;
            foundation::jobs::each_territory(platform, |departement| async move {
                Ok(purge_abandoned_drafts(platform, departement).await?)
            })
            .await
        },
    )
}
