//! Retention of mandate data (product.md §12), territory by territory. A mandate that ended
//! (revoked, superseded or transferred in full, or past its term) is archived after its
//! tenant's archive period (3 years by default) and purged after the purge period that follows
//! (3 more years): its rows go (authorisations, grants, transfer records), its attestations are
//! due for deletion from the store at once (the vault's purge deletes them), and what pointed
//! at it forgets it. A usager row left with no mandate is then erased. A person may also ask to
//! be erased when they hold no live mandate ([`erase`]). The journal is never rewritten: its
//! entries hold pseudonymous ids, so the chain still verifies once the identity row is gone.
//! Every step is idempotent and journaled; [`plan`] says what a run would do, with the same
//! SQL (`mandates_due`, département migration 0021).

use foundation::app::Platform;
use foundation::ids::{MandateId, TenantId, UsagerId};
use foundation::jobs::Job;
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{TenantTx, Territory};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;

/// What retention needs beyond the territory: the platform tables (tenants' periods, the usager
/// index) and the key of the index's hashes. The service builds it from its `Platform`, the
/// operators' `tenant-admin` from its own connection and settings.
pub struct Context<'a> {
    pub pool: &'a PgPool,
    pub subject_key: &'a str,
}

impl<'a> Context<'a> {
    pub fn of(platform: &'a Platform) -> Self {
        Context {
            pool: platform.platform_pool(),
            subject_key: platform.settings.security.idp_subject_key.expose_secret(),
        }
    }
}

/// The retention periods of the territory's tenants, as the SQL function takes them.
pub struct Periods {
    tenants: Vec<TenantId>,
    archive: Vec<i32>,
    purge: Vec<i32>,
}

/// The periods of every tenant of `territory`'s département.
pub async fn periods(cx: &Context<'_>, territory: &Territory) -> Result<Periods, sqlx::Error> {
    let rows: Vec<(TenantId, i32, i32)> = sqlx::query_as(
        "SELECT id, mandate_archive_years, mandate_purge_years FROM platform.tenants
         WHERE departement_code = $1",
    )
    .bind(territory.departement().as_str())
    .fetch_all(cx.pool)
    .await?;
    Ok(Periods {
        tenants: rows.iter().map(|r| r.0).collect(),
        archive: rows.iter().map(|r| r.1).collect(),
        purge: rows.iter().map(|r| r.2).collect(),
    })
}

/// What a run would do in one territory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub to_archive: i64,
    pub to_purge: i64,
    /// Usager rows with no mandate left once the purge is done.
    pub usagers_to_erase: i64,
    /// Documents whose retention has ended (deleted by the vault's purge).
    pub documents_due: i64,
}

/// What a run did in one territory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Done {
    pub archived: u64,
    pub purged: u64,
    pub erased: u64,
}

/// The mandates due for `stage` (`archive` or `purge`) at `at`. The selection (`mandates_due`,
/// département migrations 0021 and 0027) is called alone, never inside another statement on
/// the territory's tables: on Citus such a statement runs on the territory's worker, where a
/// function reading the territory's tables again is refused (nested distributed execution).
async fn due(
    tx: &mut foundation::tenancy::TenantTx,
    p: &Periods,
    at: OffsetDateTime,
    stage: &str,
) -> Result<Vec<MandateId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM mandates_due($1, $2, $3, $4, $5)")
        .bind(&p.tenants)
        .bind(&p.archive)
        .bind(&p.purge)
        .bind(at)
        .bind(stage)
        .fetch_all(&mut **tx)
        .await
}

/// The plan of a run at `at`, without changing anything.
pub async fn plan(
    cx: &Context<'_>,
    territory: &Territory,
    at: OffsetDateTime,
) -> Result<Plan, sqlx::Error> {
    let p = periods(cx, territory).await?;
    let mut tx = territory.begin().await?;
    let (to_archive, to_purge): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM mandates_due($1, $2, $3, $4, 'archive')),
                (SELECT count(*) FROM mandates_due($1, $2, $3, $4, 'purge'))",
    )
    .bind(&p.tenants)
    .bind(&p.archive)
    .bind(&p.purge)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    let purged = due(&mut tx, &p, at, "purge").await?;
    let usagers_to_erase: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM usagers u
         WHERE NOT EXISTS (SELECT 1 FROM mandates m WHERE m.usager_id = u.id
                           AND m.id <> ALL($1))",
    )
    .bind(&purged)
    .fetch_one(&mut *tx)
    .await?;
    let documents_due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM documents WHERE deleted_at IS NULL AND retain_until <= $1",
    )
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Plan {
        to_archive,
        to_purge,
        usagers_to_erase,
        documents_due,
    })
}

/// Archives, purges and erases what is due at `at` in `territory`; journaled there.
pub async fn run(
    cx: &Context<'_>,
    territory: &Territory,
    at: OffsetDateTime,
) -> Result<Done, sqlx::Error> {
    let p = periods(cx, territory).await?;
    let mut done = Done::default();
    let mut tx = territory.begin().await?;
    let to_archive = due(&mut tx, &p, at, "archive").await?;
    let archived: Vec<MandateId> = sqlx::query_scalar(
        "UPDATE mandates SET archived_at = $2
         WHERE id = ANY($1) AND archived_at IS NULL
         RETURNING id",
    )
    .bind(&to_archive)
    .bind(at)
    .fetch_all(&mut *tx)
    .await?;
    done.archived = archived.len() as u64;
    if !archived.is_empty() {
        journal::append(
            &mut tx,
            NewEntry::new(Event::RetentionArchived).details(json!({ "mandates": archived })),
        )
        .await?;
    }
    tx.commit().await?;

    let mut tx = territory.begin().await?;
    let to_purge = due(&mut tx, &p, at, "purge").await?;
    tx.commit().await?;
    for batch in to_purge.chunks(500) {
        let mut tx = territory.begin().await?;
        // Locked, and skipped when another run (the job on another replica, an operator's
        // `retention run`) holds them: each mandate is purged and journaled once.
        let due: Vec<MandateId> = sqlx::query_scalar(
            "SELECT m.id FROM mandates m WHERE m.id = ANY($1)
             ORDER BY m.id FOR UPDATE SKIP LOCKED",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            continue;
        }
        purge(&mut tx, &due, at).await?;
        journal::append(
            &mut tx,
            NewEntry::new(Event::RetentionPurged).details(json!({ "mandates": due })),
        )
        .await?;
        tx.commit().await?;
        done.purged += due.len() as u64;
    }

    let mut tx = territory.begin().await?;
    let left: Vec<(UsagerId, String)> = sqlx::query_as(
        "SELECT u.id, u.fc_sub FROM usagers u
         WHERE NOT EXISTS (SELECT 1 FROM mandates m WHERE m.usager_id = u.id)
         FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (usager, _) in &left {
        erase_row(&mut tx, *usager, "retention").await?;
    }
    tx.commit().await?;
    forget_in_index(cx, territory, &left).await?;
    done.erased = left.len() as u64;
    Ok(done)
}

/// Deletes the purged mandates' rows; their attestations become due for deletion now.
async fn purge(
    tx: &mut TenantTx,
    mandates: &[MandateId],
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET retain_until = least(retain_until, $2)
         WHERE deleted_at IS NULL AND id IN (
             SELECT attestation_id FROM mandates WHERE id = ANY($1) AND attestation_id IS NOT NULL
             UNION
             SELECT revocation_attestation_id FROM authorisations
             WHERE mandate_id = ANY($1) AND revocation_attestation_id IS NOT NULL)",
    )
    .bind(mandates)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    for statement in [
        "UPDATE authorisations SET superseded_by = NULL WHERE superseded_by = ANY($1)",
        "UPDATE mandates SET renewal_of = NULL WHERE renewal_of = ANY($1)",
        "UPDATE mandate_drafts SET renewal_of = NULL WHERE renewal_of = ANY($1)",
        "UPDATE remote_consents SET renewal_of = NULL WHERE renewal_of = ANY($1)",
        "DELETE FROM remote_consents WHERE mandate_id = ANY($1)",
        "DELETE FROM mandate_transfers WHERE mandate_id = ANY($1)",
        "DELETE FROM judicial_alerts WHERE mandate_id = ANY($1)",
        "DELETE FROM judicial_measures WHERE mandate_id = ANY($1)",
        "DELETE FROM oidc_grants WHERE mandate_id = ANY($1)",
        "DELETE FROM authorisations WHERE mandate_id = ANY($1)",
        // The structure forgets the person's name with their last mandate there.
        "DELETE FROM structure_usagers s
         WHERE (s.structure_id, s.usager_id) IN
               (SELECT structure_id, usager_id FROM mandates WHERE id = ANY($1))
           AND NOT EXISTS (SELECT 1 FROM mandates m
                           WHERE m.structure_id = s.structure_id AND m.usager_id = s.usager_id
                             AND m.id <> ALL($1))",
        "DELETE FROM mandates WHERE id = ANY($1)",
    ] {
        sqlx::query(statement)
            .bind(mandates)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Deletes a usager's identity row (their contacts go with it) and journals the erasure.
async fn erase_row(tx: &mut TenantTx, usager: UsagerId, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM usagers WHERE id = $1")
        .bind(usager)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO usager_erasures (usager_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(usager)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    journal::append(
        tx,
        NewEntry::new(Event::UsagerErased)
            .usager(usager)
            .details(json!({ "reason": reason })),
    )
    .await?;
    Ok(())
}

/// The usager index forgets these subjects in this territory.
async fn forget_in_index(
    cx: &Context<'_>,
    territory: &Territory,
    erased: &[(UsagerId, String)],
) -> Result<(), sqlx::Error> {
    for (_, sub) in erased {
        sqlx::query(
            "DELETE FROM platform.usager_index WHERE subject_hash = $1 AND departement_code = $2",
        )
        .bind(crate::usager_space::subject_hash_with(cx.subject_key, sub))
        .bind(territory.departement().as_str())
        .execute(cx.pool)
        .await?;
    }
    Ok(())
}

/// Why an erasure the person asked for is refused.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("Aucune personne avec cet identifiant dans ce département (déjà effacée ?).")]
    Unknown,
    #[error(
        "La personne a encore {0} mandat(s) en cours : ils doivent être révoqués avant l'effacement."
    )]
    LiveMandates(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Erases a usager at their request: only when no mandate of theirs is live. Their mandates
/// keep the pseudonymous id (for the proof the law asks to keep); the identity goes.
pub async fn erase(
    cx: &Context<'_>,
    territory: &Territory,
    usager: UsagerId,
    at: OffsetDateTime,
) -> Result<(), EraseError> {
    let mut tx = territory.begin().await?;
    let sub: Option<String> =
        sqlx::query_scalar("SELECT fc_sub FROM usagers WHERE id = $1 FOR UPDATE")
            .bind(usager)
            .fetch_optional(&mut *tx)
            .await?;
    let sub = sub.ok_or(EraseError::Unknown)?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT a.mandate_id) FROM authorisations a
         WHERE a.usager_id = $1 AND a.revoked_at IS NULL AND a.superseded_at IS NULL
           AND a.expires_at > $2",
    )
    .bind(usager)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    if live > 0 {
        return Err(EraseError::LiveMandates(live));
    }
    erase_row(&mut tx, usager, "request").await?;
    tx.commit().await?;
    forget_in_index(cx, territory, &[(usager, sub)]).await?;
    Ok(())
}

/// Every day: archive, purge and erase what is due in every served territory.
pub fn job() -> Job {
    Job::new(
        "retention_mandates",
        std::time::Duration::from_secs(24 * 3600),
        |platform: Platform| async move {
            let now = OffsetDateTime::now_utc();
            let platform = &platform;
            foundation::jobs::each_territory(platform, |departement| async move {
                let territory = platform.tenancy.unguarded(departement).await?;
                let done = run(&Context::of(platform), &territory, now).await?;
                Ok(done.archived + done.purged + done.erased)
            })
            .await
        },
    )
}
