//! Aidants who stopped logging in: warned by mail once per period, so that an account nobody
//! uses does not stay open unnoticed (the desk owns aidants' accounts).

use foundation::app::Platform;
use foundation::jobs::Job;
use foundation::outbox;

/// Days without a login after which an aidant is warned (and warned again, at most as often).
pub const INACTIVE_DAYS: i32 = 90;

/// Warns, once per period, the active aidants who have not logged in for [`INACTIVE_DAYS`]
/// (or never, for accounts older than that), through the national outbox. Returns how many.
pub async fn warn_inactive_aidants(platform: &Platform) -> anyhow::Result<u64> {
    let mut tx = platform.platform_pool().begin().await?;
    let due: Vec<(foundation::ids::ProfessionalId, String, String)> = sqlx::query_as(
        "SELECT p.id, p.email, p.display_name FROM platform.professionals p
         WHERE p.active
           AND EXISTS (SELECT 1 FROM platform.role_assignments a WHERE a.professional_id = p.id AND a.role = 'aidant')
           AND coalesce(p.last_login_at, p.created_at) < now() - make_interval(days => $1)
           AND (p.inactivity_warned_at IS NULL OR p.inactivity_warned_at < now() - make_interval(days => $1))
         ORDER BY p.id FOR UPDATE SKIP LOCKED LIMIT 1000",
    )
    .bind(INACTIVE_DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let url = format!("{}/connexion", platform.settings.http.public_origin());
    for (id, email, name) in &due {
        outbox::enqueue_platform(
            &mut tx,
            &outbox::OutboxMessage {
                channel: outbox::Channel::Email,
                recipient: email.clone(),
                template: "inactive_aidant",
                payload: serde_json::json!({ "name": name, "url": url }),
            },
        )
        .await?;
        sqlx::query("UPDATE platform.professionals SET inactivity_warned_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(due.len() as u64)
}

/// The daily warning of inactive aidants.
pub fn job() -> Job {
    Job::new(
        "inactive_aidants",
        std::time::Duration::from_secs(24 * 3600),
        |platform: Platform| async move { warn_inactive_aidants(&platform).await },
    )
}
