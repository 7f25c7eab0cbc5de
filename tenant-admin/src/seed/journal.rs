//! The seeded territories' journal: the entries their mandates' acts would have written, in
//! time order and already chained, so that what reads the journal (an aidant's activity, a
//! usager's history, the auditors' pages, the chain's verification) is measured at volume too.
//!
//! Per mandate, as the platform writes them: the usager identified through FranceConnect (or
//! their identity updated, from their second mandate on), the mandate created, its attestation
//! produced; zero to two uses through the identity provider while it was live; and, when it was
//! revoked, each démarche's authorisation revoked then the mandate. The entries are hashed as
//! the sealer chains them (`journal::entry_hash`) and written sealed by the administrator's bulk
//! load in one transaction, under the sealer's lock: the territory's roles may not write the
//! chain columns, and sealing tens of millions of entries one update at a time would take hours.
//! A territory whose journal already holds entries is left as it is, so a run stopped half-way
//! is simply run again.

use std::fmt::Write as _;

use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{Event, entry_hash};
use foundation::tenancy::Territory;
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Rng;

/// Entries per mandate, on average (three at its creation, one use, 8 % revoked with about two
/// démarches): the progress bar's estimate until a territory's are counted.
pub(super) const PER_MANDATE_ESTIMATE: u64 = 4;

/// Service providers a mandate is used with (the identity provider's clients).
const CLIENTS: [&str; 4] = [
    "caf-espace-allocataire",
    "impots-espace-particulier",
    "ameli-compte",
    "ants-titres",
];

/// Rows per `COPY` sent.
const CHUNK: usize = 50_000;

/// A seeded mandate, as read back from its territory.
#[derive(sqlx::FromRow)]
struct Mandate {
    id: Uuid,
    structure_id: Uuid,
    usager_id: Uuid,
    created_by: Uuid,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    ended_at: Option<OffsetDateTime>,
    revoked: bool,
    duration_days: i32,
    categories: Vec<String>,
}

/// One entry to write: what happened, when, to which mandate; its text is made when written.
struct Act {
    at: OffsetDateTime,
    what: What,
    mandate: u32,
}

#[derive(Clone, Copy)]
enum What {
    Identified {
        first: bool,
    },
    Created,
    Attested,
    Used {
        category: u8,
        client: u8,
        grant: u64,
    },
    AuthorisationRevoked {
        category: u8,
    },
    Revoked,
}

/// Writes the journal of a seeded territory, unless it already has entries. Returns the number
/// of entries written, `None` when the territory was left as it was.
pub(super) async fn seed(admin: &PgPool, territory: &Territory) -> anyhow::Result<Option<u64>> {
    let mut tx = territory.begin().await?;
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM journal)")
        .fetch_one(&mut *tx)
        .await?;
    if !empty {
        tx.commit().await?;
        return Ok(None);
    }
    let mandates: Vec<Mandate> = sqlx::query_as(
        "SELECT m.id, m.structure_id, m.usager_id, m.created_by, m.created_at, m.expires_at,
                m.ended_at, m.ended_reason IS NOT DISTINCT FROM 'revoked' AS revoked,
                m.duration_days,
                array_agg(a.category ORDER BY a.category) AS categories
         FROM mandates m JOIN authorisations a ON a.mandate_id = m.id
         GROUP BY m.id
         ORDER BY m.created_at, m.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let d = territory.departement();
    let mut rng = Rng(d
        .as_str()
        .bytes()
        .fold(0x70_0C_u64, |h, b| h * 131 + u64::from(b)));
    let acts = acts(&mandates, &mut rng);

    let mut conn = admin.begin().await?;
    // The sealer's own lock: no sealing of this territory until this load commits. The chain
    // columns' triggers are for the roles serving the territory: the administrator's bulk load
    // sets them aside for this transaction (on a Citus worker too).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("aidants-connect:journal-seal:{}", d.schema_name()))
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(
        "SET LOCAL citus.propagate_set_commands = 'local';
         SET LOCAL session_replication_role = replica",
    )
    .execute(&mut *conn)
    .await?;
    let statement = format!(
        "COPY {}.journal (seq, at, kind, structure_id, professional_id, usager_id, mandate_id,
                          details, prev_hash, hash) FROM STDIN",
        d.schema_name()
    );
    let mut prev = vec![0u8; 32];
    let mut data = String::new();
    let mut seq = 0i64;
    for chunk in acts.chunks(CHUNK) {
        data.clear();
        for act in chunk {
            seq += 1;
            let m = &mandates[act.mandate as usize];
            let (kind, usager_only, details) = text_of(act, m, &mut rng);
            let mandate = (!usager_only).then_some(MandateId::from_uuid(m.id));
            let hash = entry_hash(
                &prev,
                seq,
                act.at,
                kind.as_str(),
                Some(StructureId::from_uuid(m.structure_id)),
                Some(ProfessionalId::from_uuid(m.created_by)),
                Some(UsagerId::from_uuid(m.usager_id)),
                mandate,
                &details,
            );
            let at = act
                .at
                .format(&time::format_description::well_known::Rfc3339)?;
            let _ = writeln!(
                data,
                "{seq}\t{at}\t{}\t{}\t{}\t{}\t{}\t{}\t\\\\x{}\t\\\\x{}",
                kind.as_str(),
                m.structure_id,
                m.created_by,
                m.usager_id,
                mandate.map_or_else(|| "\\N".to_owned(), |m| m.as_uuid().to_string()),
                details.replace('\\', "\\\\"),
                hex::encode(&prev),
                hex::encode(hash),
            );
            prev = hash.to_vec();
        }
        let mut copy = conn.copy_in_raw(&statement).await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await?;
    }
    conn.commit().await?;
    Ok(Some(seq as u64))
}

/// Every mandate's acts, in time order (those of the same instant in the order they happened).
fn acts(mandates: &[Mandate], rng: &mut Rng) -> Vec<Act> {
    let now = OffsetDateTime::now_utc();
    let mut seen = std::collections::HashSet::new();
    let mut acts = Vec::with_capacity(mandates.len() * PER_MANDATE_ESTIMATE as usize);
    for (i, m) in mandates.iter().enumerate() {
        let mandate = i as u32;
        let first = seen.insert(m.usager_id);
        let second = time::Duration::seconds;
        acts.push(Act {
            at: m.created_at - second(40 + rng.below(80) as i64),
            what: What::Identified { first },
            mandate,
        });
        acts.push(Act {
            at: m.created_at,
            what: What::Created,
            mandate,
        });
        acts.push(Act {
            at: m.created_at + second(1 + rng.below(3) as i64),
            what: What::Attested,
            mandate,
        });
        // Used while live: up to its end, its revocation, or now.
        let end = m.ended_at.unwrap_or(m.expires_at).min(now);
        let live = (end - m.created_at).whole_seconds();
        if live > 60 {
            for _ in 0..rng.below(3) {
                acts.push(Act {
                    at: m.created_at + second(60 + rng.below(live as u64 - 60) as i64),
                    what: What::Used {
                        category: rng.below(m.categories.len() as u64) as u8,
                        client: rng.below(CLIENTS.len() as u64) as u8,
                        grant: rng.next() >> 12,
                    },
                    mandate,
                });
            }
        }
        if let (true, Some(ended)) = (m.revoked, m.ended_at) {
            for c in 0..m.categories.len() {
                acts.push(Act {
                    at: ended,
                    what: What::AuthorisationRevoked { category: c as u8 },
                    mandate,
                });
            }
            acts.push(Act {
                at: ended,
                what: What::Revoked,
                mandate,
            });
        }
    }
    // Stable: the acts of one instant keep the order they were pushed in.
    acts.sort_by_key(|a| a.at);
    acts
}

/// The entry's kind, whether it names the usager only (no mandate), and its details as the
/// platform writes them.
fn text_of(act: &Act, m: &Mandate, rng: &mut Rng) -> (Event, bool, String) {
    let (kind, usager_only, details) = match act.what {
        What::Identified { first } => (
            if first {
                Event::UsagerIdentified
            } else {
                Event::UsagerIdentityUpdated
            },
            true,
            json!({ "source": "franceconnect" }),
        ),
        What::Created => (
            Event::MandateCreated,
            false,
            json!({
                "categories": m.categories,
                "duration_days": m.duration_days,
                "expires_at": m.expires_at.unix_timestamp(),
                "legal_text_version": "2026-11-v1",
                "renewal_of": null,
            }),
        ),
        What::Attested => {
            let digest: String = (0..4).map(|_| format!("{:016x}", rng.next())).collect();
            (
                Event::AttestationProduced,
                false,
                json!({ "kind": "mandate", "document": rng.uuid(), "sha256": digest }),
            )
        }
        What::Used {
            category,
            client,
            grant,
        } => (
            Event::MandateUsed,
            false,
            json!({
                "category": m.categories[category as usize],
                "client": CLIENTS[client as usize],
                "grant": grant,
            }),
        ),
        What::AuthorisationRevoked { category } => (
            Event::AuthorisationRevoked,
            false,
            json!({ "category": m.categories[category as usize] }),
        ),
        What::Revoked => (
            Event::MandateRevoked,
            false,
            json!({ "categories": m.categories }),
        ),
    };
    (kind, usager_only, details.to_string())
}
