//! Scheduled work of the mandate service, run once per period across replicas (see
//! `foundation::jobs`): reminders before long mandates expire, signed journal checkpoints, and
//! the purge of mandate drafts (they hold an identity for minutes only).

use std::collections::BTreeMap;
use std::time::Duration;

use foundation::app::Platform;
use foundation::ids::{MandateId, StructureId, UsagerId};
use foundation::jobs::{Job, each_territory};
use foundation::journal::{self, CheckpointKey, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::Territory;
use serde_json::json;

/// Days before expiry when the structure is reminded.
pub const REMINDER_DAYS: i32 = 30;

/// The e-mail addresses a structure's reminders go to: its référents, else its aidants.
async fn structure_recipients(
    platform: &Platform,
    structure: StructureId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.email FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.domain = $1 AND p.active
           AND a.role = CASE WHEN EXISTS (SELECT 1 FROM platform.role_assignments r JOIN platform.professionals q ON q.id = r.professional_id
                                          WHERE r.domain = $1 AND r.role = 'referent' AND q.active)
                             THEN 'referent' ELSE 'aidant' END
         ORDER BY 1",
    )
    .bind(format!("structure:{structure}"))
    .fetch_all(platform.platform_pool())
    .await
}

/// Queues the reminders of one territory: one message per structure and recipient, listing how
/// many of its mandates (182 or 365 days) expire within 30 days; each mandate is reminded once.
pub async fn remind_expiring(platform: &Platform, tenant: &Territory) -> anyhow::Result<u64> {
    let mut tx = tenant.begin().await?;
    let due: Vec<(MandateId, StructureId, UsagerId)> = sqlx::query_as(
        "SELECT id, structure_id, usager_id FROM mandates
         WHERE reminder_sent_at IS NULL AND ended_at IS NULL AND duration_days >= 182
           AND expires_at > now() AND expires_at <= now() + make_interval(days => $1)
           -- Judicial measures have their own alerts (judicial::alerts).
           AND NOT EXISTS (SELECT 1 FROM judicial_measures j WHERE j.mandate_id = mandates.id)
         ORDER BY expires_at FOR UPDATE SKIP LOCKED LIMIT 5000",
    )
    .bind(REMINDER_DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_structure: BTreeMap<StructureId, Vec<(MandateId, UsagerId)>> = BTreeMap::new();

    for (mandate, structure, usager) in &due {
        by_structure
            .entry(*structure)
            .or_default()
            .push((*mandate, *usager));
    }
    let origin = platform.settings.http.public_origin();
    let structures: Vec<StructureId> = by_structure.keys().copied().collect();
    let names: BTreeMap<StructureId, String> =
        sqlx::query_as("SELECT id, name FROM structures WHERE id = ANY($1)")
            .bind(&structures)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    for (structure, mandates) in &by_structure {
        let name = names.get(structure).map(String::as_str).unwrap_or_default();
        for recipient in structure_recipients(platform, *structure).await? {
            outbox::enqueue_tenant(
                &mut tx,
                &OutboxMessage {
                    channel: Channel::Email,
                    recipient,
                    template: "mandates_expiring",
                    payload: json!({
                        "structure": name,
                        "count": mandates.len().to_string(),
                        "url": format!("{origin}/mandats?etat=bientot"),
                    }),
                },
            )
            .await?;
        }
    }
    // One update and one journal statement for the whole batch: a bulk-loaded territory meets
    // thousands of reminders at once, and each exchange crosses the coordinator on Citus.
    let ids: Vec<MandateId> = due.iter().map(|(mandate, _, _)| *mandate).collect();
    sqlx::query("UPDATE mandates SET reminder_sent_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let entries: Vec<NewEntry> = by_structure
        .iter()
        .flat_map(|(structure, mandates)| {
            mandates.iter().map(|(mandate, usager)| {
                NewEntry::new(Event::MandateExpiryReminderQueued)
                    .structure(*structure)
                    .usager(*usager)
                    .mandate(*mandate)
                    .details(json!({ "days_before": REMINDER_DAYS }))
            })
        })
        .collect();
    journal::append_all(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(due.len() as u64)
}

pub fn expiry_reminders() -> Job {
    Job::new(
        "mandate_expiry_reminders",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let platform = &platform;
            each_territory(platform, |departement| async move {
                let tenant = platform.tenancy.unguarded(departement).await?;
                remind_expiring(platform, &tenant).await
            })
            .await
        },
    )
}

/// Signs a checkpoint of every territory's journal, and of the security journal, that grew
/// since its last checkpoint or whose last checkpoint is getting old.
pub fn journal_checkpoints(key: CheckpointKey) -> Job {
    Job::new(
        "journal_checkpoints",
        Duration::from_secs(600),
        move |platform: Platform| {
            let key = key.clone();
            async move {
                let mut sealed = 0;
                let mut conn = platform.platform_pool().begin().await?;
                if foundation::auth::journal::checkpoint(&mut conn, &key)
                    .await?
                    .is_some()
                {
                    sealed += 1;
                }
                conn.commit().await?;
                let (platform, key) = (&platform, &key);
                let territories = each_territory(platform, |departement| async move {
                    journal::seal_from_platform(&platform.tenancy, departement).await?;
                    let tenant = platform.tenancy.unguarded(departement).await?;
                    let mut tx = tenant.begin().await?;
                    let sealed = journal::checkpoint(&mut tx, key).await?.is_some();
                    tx.commit().await?;
                    Ok(u64::from(sealed))
                })
                .await?;
                Ok(sealed + territories)
            }
        },
    )
}

/// Deletes mandate drafts an hour after they expired or were completed, identity-provider
/// grants after a day, and expired client assertions.
pub fn purge_drafts() -> Job {
    Job::new(
        "purge_mandate_drafts",
        Duration::from_secs(900),
        |platform: Platform| async move {
            let platform = &platform;
            let territories = each_territory(platform, |departement| async move {
                let tenant = platform.tenancy.unguarded(departement).await?;
                let mut tx = tenant.begin().await?;
                let mut purged = sqlx::query(
                    "DELETE FROM mandate_drafts WHERE expires_at < now() - interval '1 hour'
                        OR completed_at < now() - interval '1 hour'",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Remote consents: 30 days after they were decided or their link expired
                // (the journal keeps what was sent, refused or cancelled).
                purged += sqlx::query(
                    "DELETE FROM remote_consents
                     WHERE coalesce(decided_at, link_expires_at) < now() - interval '30 days'",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Idempotency keys of acts: a day (a retry comes within minutes).
                purged +=
                    sqlx::query("DELETE FROM act_keys WHERE created_at < now() - interval '1 day'")
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                // Reports of measure imports: 90 days (the journal keeps each import's counts).
                purged += sqlx::query(
                    "DELETE FROM measure_imports WHERE created_at < now() - interval '90 days'",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Identity-provider grants: a day (the journal keeps each use for good).
                purged += sqlx::query(
                    "DELETE FROM oidc_grants WHERE issued_at < now() - interval '1 day'",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(purged)
            })
            .await;
            let assertions =
                sqlx::query("DELETE FROM platform.oidc_assertions WHERE expires_at < now()")
                    .execute(platform.platform_pool())
                    .await;
            Ok(territories? + assertions?.rows_affected())
        },
    )
}
