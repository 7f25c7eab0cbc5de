//! Transfer of a mandate to another structure (product.md §6): the person moves, or a
//! structure closes. It is never done by an aidant alone: the person consents again to a new
//! mandate with the new structure (at the counter or remotely, through FranceConnect), and
//! chooses, on the recap, which of their mandates with other structures it replaces — found
//! through the usager index from the identity FranceConnect just vouched for, in any
//! département. The new mandate's transaction records what it takes over
//! (`mandate_transfers`, journaled in its territory); each old mandate then ends in its own
//! territory at the instant the new one starts (`ended_reason = 'transferred'`, journaled
//! there). A failure between the two leaves the transfer pending: the `mandate_transfers` job
//! completes it, idempotently.

use foundation::app::Platform;
use foundation::ids::{MandateId, StructureId, UsagerId};
use foundation::jobs::{Hung, Job, TerritoryFailures, bounded};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{DepartementCode, TenantTx, Territory};
use serde_json::json;
use time::OffsetDateTime;

use crate::categories;

/// A live mandate of the person with another structure, which a new mandate may replace.
#[derive(Debug, Clone)]
pub struct Transferable {
    pub departement: DepartementCode,
    pub mandate: MandateId,
    pub structure: String,
    /// The live démarches' labels.
    pub demarches: Vec<&'static str>,
    pub expires_at: OffsetDateTime,
}

impl Transferable {
    /// `33/<uuid>`: the value of the recap's checkbox.
    pub fn key(&self) -> String {
        format!("{}/{}", self.departement.as_str(), self.mandate)
    }
}

#[derive(sqlx::FromRow)]
struct LiveRow {
    id: MandateId,
    name: String,
    expires_at: OffsetDateTime,
    live: Vec<String>,
}

/// The person's live mandates with structures other than `except`, in every territory the
/// usager index names for their FranceConnect subject.
pub async fn transferable(
    platform: &Platform,
    sub: &str,
    except: StructureId,
) -> Result<Vec<Transferable>, sqlx::Error> {
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT departement_code FROM platform.usager_index WHERE subject_hash = $1
         ORDER BY departement_code",
    )
    .bind(crate::usager_space::subject_hash(platform, sub))
    .fetch_all(platform.platform_pool())
    .await?;
    let mut found = Vec::new();
    for departement in codes.iter().filter_map(|c| DepartementCode::parse(c).ok()) {
        if !platform.tenancy.served().contains(&departement) {
            continue;
        }
        // FranceConnect's identity of the person, vouched for in this request, is the
        // authority over their own mandates (as in their space).
        let Ok(territory) = platform.tenancy.unguarded(departement).await else {
            continue;
        };
        let mut tx = territory.begin().await?;
        let rows: Vec<LiveRow> = sqlx::query_as(
            "SELECT m.id, s.name, m.expires_at,
                    ARRAY(SELECT la.category FROM live_authorisations la WHERE la.mandate_id = m.id
                          ORDER BY la.category) AS live
             FROM mandates m JOIN usagers u ON u.id = m.usager_id
             JOIN structures s ON s.id = m.structure_id
             WHERE u.fc_sub = $1 AND m.structure_id <> $2
               AND EXISTS (SELECT 1 FROM live_authorisations la WHERE la.mandate_id = m.id)
             ORDER BY m.created_at",
        )
        .bind(sub)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        found.extend(rows.into_iter().map(|r| {
            Transferable {
                departement,
                mandate: r.id,
                structure: r.name,
                demarches: r
                    .live
                    .iter()
                    .filter_map(|c| categories::by_code(c).map(|c| c.label))
                    .collect(),
                expires_at: r.expires_at,
            }
        }));
    }
    Ok(found)
}

/// The mandates among `offered` whose keys were chosen (anything else is ignored).
pub fn chosen(offered: &[Transferable], keys: &[String]) -> Vec<(DepartementCode, MandateId)> {
    offered
        .iter()
        .filter(|t| keys.iter().any(|k| *k == t.key()))
        .map(|t| (t.departement, t.mandate))
        .collect()
}

/// In the new mandate's transaction: what it takes over, journaled in its territory.
pub async fn record(
    tx: &mut TenantTx,
    mandate: MandateId,
    structure: StructureId,
    usager: UsagerId,
    taken_over: &[(DepartementCode, MandateId)],
) -> Result<(), sqlx::Error> {
    for (departement, old) in taken_over {
        sqlx::query(
            "INSERT INTO mandate_transfers (mandate_id, from_departement, from_mandate)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(mandate)
        .bind(departement.as_str())
        .bind(old)
        .execute(&mut **tx)
        .await?;
    }
    let from: Vec<String> = taken_over
        .iter()
        .map(|(d, m)| format!("{}/{m}", d.as_str()))
        .collect();
    journal::append(
        tx,
        NewEntry::new(Event::MandateTransferredIn)
            .structure(structure)
            .usager(usager)
            .mandate(mandate)
            .details(json!({ "from": from })),
    )
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Pending {
    from_departement: String,
    from_mandate: MandateId,
    fc_sub: String,
    created_at: OffsetDateTime,
}

/// Ends, each in its own territory, the mandates `mandate` (of `territory`) takes over and
/// which are still pending. Returns how many transfers were completed. A territory of an old
/// mandate that fails (or failed earlier in the same run) is noted in `failed`, under its own
/// code, and its transfer stays pending while the others are completed; an error of
/// `territory` itself is the result.
pub async fn complete(
    platform: &Platform,
    territory: &Territory,
    mandate: MandateId,
    failed: &mut TerritoryFailures,
) -> anyhow::Result<u64> {
    // Each territory's steps are bounded (`jobs.territory_seconds`): one that hangs is noted
    // like one that fails.
    let reading = async {
        let mut tx = territory.begin().await?;
        let pending: Vec<Pending> = sqlx::query_as(
            "SELECT t.from_departement, t.from_mandate, u.fc_sub, m.created_at
             FROM mandate_transfers t JOIN mandates m ON m.id = t.mandate_id
             JOIN usagers u ON u.id = m.usager_id
             WHERE t.mandate_id = $1 AND t.completed_at IS NULL
             ORDER BY t.from_departement, t.from_mandate",
        )
        .bind(mandate)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pending)
    };
    let pending = bounded(platform, territory.departement(), reading).await?;
    let to = territory.departement();
    let mut done = 0;
    for p in pending {
        let Ok(from) = DepartementCode::parse(&p.from_departement) else {
            continue;
        };
        if !platform.tenancy.served().contains(&from) || failed.skips(from) {
            continue;
        }
        // The new mandate's own record names this mandate, for the same FranceConnect subject.
        let old_territory = match platform.tenancy.unguarded(from).await {
            Ok(t) => t,
            Err(e) => {
                failed.note(from, &e.into());
                continue;
            }
        };
        let ending = async { Ok(end_old(&old_territory, &p, to, mandate).await?) };
        let (outcome, ended) = match bounded(platform, from, ending).await {
            Ok(ended) => ended,
            Err(e) => {
                failed.note(from, &e);
                continue;
            }
        };
        if let Some((structure, categories)) = ended {
            // The old structure's référents learn it by e-mail (a failure is only logged:
            // the transfer itself is done and journaled; a territory that hung is noted).
            let telling = async {
                let told = tell_old_structure(
                    platform,
                    &old_territory,
                    structure,
                    p.from_mandate,
                    &categories,
                );
                Ok(told.await?)
            };
            if let Err(e) = bounded(platform, from, telling).await {
                tracing::warn!(error = %e, "old structure not told of a transfer");
                if e.is::<Hung>() {
                    failed.note(from, &e);
                }
            }
        }
        let recording = async {
            let mut tx = territory.begin().await?;
            sqlx::query(
                "UPDATE mandate_transfers SET completed_at = now(), outcome = $4
                 WHERE mandate_id = $1 AND from_departement = $2 AND from_mandate = $3
                   AND completed_at IS NULL",
            )
            .bind(mandate)
            .bind(&p.from_departement)
            .bind(p.from_mandate)
            .bind(outcome)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        };
        bounded(platform, territory.departement(), recording).await?;
        done += 1;
    }
    Ok(done)
}

#[derive(sqlx::FromRow)]
struct Old {
    structure_id: StructureId,
    usager_id: UsagerId,
    transferred_to_mandate: Option<MandateId>,
}

/// What ending an old mandate did: the outcome recorded, and (when this transfer ended it) its
/// structure and the démarches that ended.
type Ended = (&'static str, Option<(StructureId, Vec<String>)>);

/// Ends the old mandate at the instant the new one started, in its own territory; journaled
/// there. Idempotent: a mandate already ended by this transfer, or ended otherwise, is left.
async fn end_old(
    territory: &Territory,
    pending: &Pending,
    to: DepartementCode,
    new_mandate: MandateId,
) -> Result<Ended, sqlx::Error> {
    let mut tx = territory.begin().await?;
    let old: Option<Old> = sqlx::query_as(
        "SELECT m.structure_id, m.usager_id, m.transferred_to_mandate
         FROM mandates m JOIN usagers u ON u.id = m.usager_id
         WHERE m.id = $1 AND u.fc_sub = $2 FOR UPDATE OF m",
    )
    .bind(pending.from_mandate)
    .bind(&pending.fc_sub)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(old) = old else {
        tx.commit().await?;
        return Ok(("already_ended", None));
    };
    if old.transferred_to_mandate == Some(new_mandate) {
        tx.commit().await?;
        return Ok(("ended", None));
    }
    let at = pending.created_at;
    let ended: Vec<String> = sqlx::query_scalar(
        "UPDATE authorisations SET revoked_at = $2
         WHERE mandate_id = $1 AND revoked_at IS NULL AND superseded_at IS NULL AND expires_at > $2
         RETURNING category",
    )
    .bind(pending.from_mandate)
    .bind(at)
    .fetch_all(&mut *tx)
    .await?;
    if ended.is_empty() {
        tx.commit().await?;
        return Ok(("already_ended", None));
    }
    sqlx::query(
        "UPDATE mandates SET ended_at = $2, ended_reason = 'transferred',
                transferred_to_departement = $3, transferred_to_mandate = $4
         WHERE id = $1",
    )
    .bind(pending.from_mandate)
    .bind(at)
    .bind(to.as_str())
    .bind(new_mandate)
    .execute(&mut *tx)
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::MandateTransferredOut)
            .structure(old.structure_id)
            .usager(old.usager_id)
            .mandate(pending.from_mandate)
            .details(json!({
                "categories": ended,
                "to": format!("{}/{new_mandate}", to.as_str()),
                "by": "usager",
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(("ended", Some((old.structure_id, ended))))
}

/// Tells the old structure's active référents, by e-mail, that a mandate of theirs was
/// transferred (which démarches ended; nothing about where it went).
async fn tell_old_structure(
    platform: &Platform,
    territory: &Territory,
    structure: StructureId,
    mandate: MandateId,
    categories: &[String],
) -> Result<(), sqlx::Error> {
    let mut tx = territory.begin().await?;
    let name: String = sqlx::query_scalar("SELECT name FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut tx = platform.platform_pool().begin().await?;
    let referents: Vec<String> = sqlx::query_scalar(
        "SELECT p.email FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.role = 'referent' AND a.domain = $1 AND p.active ORDER BY p.email",
    )
    .bind(structure.domain().to_string())
    .fetch_all(&mut *tx)
    .await?;
    let demarches: Vec<&str> = categories.iter().map(|c| categories::label(c)).collect();
    let url = format!(
        "{}/mandats/{mandate}",
        platform.settings.http.public_origin()
    );
    for email in referents {
        foundation::outbox::enqueue_platform(
            &mut tx,
            &foundation::outbox::OutboxMessage {
                channel: foundation::outbox::Channel::Email,
                recipient: email,
                template: "mandate_transferred_out",
                payload: json!({
                    "structure": name,
                    "demarches": demarches,
                    "date": foundation::paris::date_time(OffsetDateTime::now_utc()),
                    "url": url,
                }),
            },
        )
        .await?;
    }
    tx.commit().await
}

/// Completes the transfers into `departement` left pending for 30 seconds.
async fn pending_in(
    platform: &Platform,
    departement: DepartementCode,
    failed: &mut TerritoryFailures,
) -> anyhow::Result<u64> {
    let territory = platform.tenancy.unguarded(departement).await?;
    let listing = async {
        let mut tx = territory.begin().await?;
        let mandates: Vec<MandateId> = sqlx::query_scalar(
            "SELECT DISTINCT mandate_id FROM mandate_transfers
             WHERE completed_at IS NULL AND requested_at < now() - interval '30 seconds'",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(mandates)
    };
    let mandates = bounded(platform, departement, listing).await?;
    let mut done = 0;
    for mandate in mandates {
        // Left out meanwhile (an old mandate's territory hung on the same Citus worker).
        if failed.skips(departement) {
            break;
        }
        done += complete(platform, &territory, mandate, failed).await?;
    }
    Ok(done)
}

/// Every minute: transfers a failure left pending (older than 30 seconds), completed.
pub fn job() -> Job {
    Job::new(
        "mandate_transfers",
        std::time::Duration::from_secs(60),
        |platform: Platform| async move {
            // Each failure is noted under the territory it happened in: the new mandate's, or
            // an old one's (whose transfers into every other territory then wait for the next
            // run). Not `each_territory`, which notes everything under the territory it visits.
            let mut failed = TerritoryFailures::default();
            let mut done = 0;
            for departement in platform.tenancy.served() {
                if failed.skips(departement) {
                    continue;
                }
                match pending_in(&platform, departement, &mut failed).await {
                    Ok(n) => done += n,
                    Err(e) => failed.note(departement, &e),
                }
            }
            failed.result(done)
        },
    )
}
