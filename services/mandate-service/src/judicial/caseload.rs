//! Caseloads (issue 18 §3): each measure of a guardian service is held by one of its
//! delegates (an aidant or référent of the structure). A delegate's list shows their own
//! measures first. When a delegate leaves or is away, their measures — all, or those chosen —
//! go to another delegate in one step: one transaction, every measure journaled, nothing done
//! if one of them is no longer theirs.

use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::TenantTx;
use serde_json::json;
use sqlx::PgPool;

/// A delegate of the service.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Delegate {
    pub id: ProfessionalId,
    pub name: String,
    pub email: String,
}

/// The service's delegates, by name.
pub async fn delegates(
    platform: &PgPool,
    structure: StructureId,
) -> Result<Vec<Delegate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT p.id, p.display_name AS name, p.email FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.domain = $1 AND a.role IN ('aidant', 'referent') AND p.active
         ORDER BY 2, 3",
    )
    .bind(format!("structure:{structure}"))
    .fetch_all(platform)
    .await
}

/// Whose measures a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    All,
    Unassigned,
    Delegate(ProfessionalId),
}

/// One measure in a list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub mandate_id: MandateId,
    pub usager_id: UsagerId,
    pub case_number: Option<String>,
    pub person: String,
    pub kind: String,
    pub ends: String,
    pub renewal_date: Option<String>,
    pub delegate_id: Option<ProfessionalId>,
    pub identified_by: String,
    pub live: bool,
}

/// Measures per page.
pub const PAGE: i64 = 100;

/// A page of the service's measures: `me`'s first, then by end date; with the total.
pub async fn list(
    tx: &mut TenantTx,
    structure: StructureId,
    me: ProfessionalId,
    holder: Holder,
    page: i64,
) -> Result<(Vec<Row>, i64), sqlx::Error> {
    let (filter, who) = match holder {
        Holder::All => ("all", None),
        Holder::Unassigned => ("none", None),
        Holder::Delegate(d) => ("one", Some(d)),
    };
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM judicial_measures j
         WHERE j.structure_id = $1
           AND CASE WHEN $2 = 'all' THEN true WHEN $2 = 'none' THEN j.delegate_id IS NULL
                       ELSE j.delegate_id = $3 END",
    )
    .bind(structure)
    .bind(filter)
    .bind(who)
    .fetch_one(&mut **tx)
    .await?;
    let rows = sqlx::query_as(
        "SELECT j.mandate_id, m.usager_id, j.case_number,
                u.family_name || ' ' || u.given_name AS person, j.kind, j.ends::text AS ends,
                j.renewal_date::text AS renewal_date, j.delegate_id, j.identified_by,
                (m.ended_at IS NULL AND m.expires_at > now()) AS live
         FROM judicial_measures j JOIN mandates m ON m.id = j.mandate_id
         JOIN usagers u ON u.id = m.usager_id
         WHERE j.structure_id = $1
           AND CASE WHEN $2 = 'all' THEN true WHEN $2 = 'none' THEN j.delegate_id IS NULL
                       ELSE j.delegate_id = $3 END
         ORDER BY (j.delegate_id IS NOT DISTINCT FROM $4) DESC, j.ends, j.mandate_id
         LIMIT $5 OFFSET $6",
    )
    .bind(structure)
    .bind(filter)
    .bind(who)
    .bind(me)
    .bind(PAGE)
    .bind(page.max(0) * PAGE)
    .fetch_all(&mut **tx)
    .await?;
    Ok((rows, total))
}

/// Why a hand-over did not happen, in French.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOverError {
    #[error("Choisissez le délégué qui reprend les mesures.")]
    NoTarget,
    #[error("Le délégué choisi n'est pas un délégué de votre service.")]
    NotADelegate,
    #[error("Les mesures ne peuvent pas être confiées au délégué qui les suit déjà.")]
    SameDelegate,
    #[error("Aucune mesure à confier : choisissez-en au moins une.")]
    Nothing,
    #[error(
        "{0} des mesures choisies ne sont plus suivies par ce délégué (elles ont changé entre-temps) : rien n'a été modifié, rechargez la page."
    )]
    Moved(usize),
    #[error("Le service est momentanément indisponible.")]
    Database,
}

impl From<sqlx::Error> for HandOverError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "hand-over");
        HandOverError::Database
    }
}

/// A hand-over: from whom (`None`: unassigned measures), to whom, and which measures (`None`:
/// all of them).
pub struct HandOver<'a> {
    pub structure: StructureId,
    pub by: ProfessionalId,
    pub from: Option<ProfessionalId>,
    pub to: ProfessionalId,
    pub only: Option<&'a [MandateId]>,
}

/// Gives the measures to `to` in the caller's transaction, journaling each; `delegates` are the
/// service's. Returns how many moved.
pub async fn hand_over(
    tx: &mut TenantTx,
    delegates: &[Delegate],
    h: &HandOver<'_>,
) -> Result<usize, HandOverError> {
    if !delegates.iter().any(|d| d.id == h.to) {
        return Err(HandOverError::NotADelegate);
    }
    if h.from == Some(h.to) {
        return Err(HandOverError::SameDelegate);
    }
    if h.only.is_some_and(<[MandateId]>::is_empty) {
        return Err(HandOverError::Nothing);
    }
    let moved: Vec<(MandateId, UsagerId)> = sqlx::query_as(
        "UPDATE judicial_measures j SET delegate_id = $3
         FROM mandates m
         WHERE m.id = j.mandate_id AND j.structure_id = $1
           AND j.delegate_id IS NOT DISTINCT FROM $2
           AND ($4::uuid[] IS NULL OR j.mandate_id = ANY($4))
         RETURNING j.mandate_id, m.usager_id",
    )
    .bind(h.structure)
    .bind(h.from)
    .bind(h.to)
    .bind(h.only)
    .fetch_all(&mut **tx)
    .await?;
    if let Some(only) = h.only {
        let mut asked = only.to_vec();
        asked.sort();
        asked.dedup();
        if moved.len() != asked.len() {
            return Err(HandOverError::Moved(asked.len() - moved.len()));
        }
    }
    if moved.is_empty() {
        return Err(HandOverError::Nothing);
    }
    for (mandate, usager) in &moved {
        journal::append(
            tx,
            NewEntry::new(Event::JudicialMeasureHandedOver)
                .structure(h.structure)
                .professional(h.by)
                .usager(*usager)
                .mandate(*mandate)
                .details(json!({ "from": h.from, "to": h.to })),
        )
        .await?;
    }
    Ok(moved.len())
}
