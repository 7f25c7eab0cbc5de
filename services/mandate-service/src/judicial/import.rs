//! Applying a guardian service's CSV of measures (issue 18 §2): each line read (`csv`) becomes
//! a judicial mandate for a person identified by the decision's civil-status data, or updates
//! the measure already imported under the same case number, or is left as it is when nothing
//! changed (so importing the same file twice changes nothing), or is refused with its reason.
//! Everything happens in one territory transaction: a failure writes nothing, and two imports
//! for one service queue (an advisory lock). Progress is counted in an atomic the caller reads
//! (the browser's progress bar, the command's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use foundation::categories;
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{TenantTx, Territory};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::csv::{CivilStatus, Line, Read};
use super::{Measure, Recorded};
use crate::mandates::{self, MandateError, NewMandate, search_key};

/// What one line became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    Updated,
    Unchanged,
    Refused,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineReport {
    pub line: usize,
    pub case_number: String,
    pub outcome: Outcome,
    /// Why it was refused, or what changed, in French.
    pub reason: String,
}

/// The report of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub imported: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub refused: usize,
    pub lines: Vec<LineReport>,
}

impl Report {
    fn push(&mut self, line: usize, case_number: &str, outcome: Outcome, reason: String) {
        match outcome {
            Outcome::Imported => self.imported += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Refused => self.refused += 1,
        }
        self.lines.push(LineReport {
            line,
            case_number: case_number.to_owned(),
            outcome,
            reason,
        });
    }
}

/// Where and for whom an import runs.
pub struct Context<'a> {
    pub platform: &'a PgPool,
    pub territory: &'a Territory,
    pub structure: StructureId,
    /// The démarches the structure handles.
    pub demarches: &'a [String],
    /// Who imports (journaled).
    pub by: ProfessionalId,
}

/// The service's delegates: the active professionals holding a role in the structure, by
/// e-mail (lower case).
pub async fn delegates(
    platform: &PgPool,
    structure: StructureId,
) -> Result<HashMap<String, ProfessionalId>, sqlx::Error> {
    let rows: Vec<(String, ProfessionalId)> = sqlx::query_as(
        "SELECT DISTINCT lower(p.email), p.id FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.domain = $1 AND a.role IN ('aidant', 'referent') AND p.active",
    )
    .bind(format!("structure:{structure}"))
    .fetch_all(platform)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A measure already imported under a case number, with its person.
#[derive(sqlx::FromRow)]
struct Existing {
    case_number: String,
    mandate_id: MandateId,
    usager_id: UsagerId,
    kind: String,
    court: String,
    decision_date: String,
    decision_reference: String,
    starts: String,
    ends: String,
    renewal_date: Option<String>,
    categories: Vec<String>,
    delegate_id: Option<ProfessionalId>,
    over: bool,
    identified_by: String,
    family_name: String,
    preferred_username: Option<String>,
    given_name: String,
    birthdate: String,
    gender: String,
    birthplace: String,
    birthcountry: String,
}

impl Existing {
    fn measure(&self) -> Measure {
        Measure {
            kind: self.kind.clone(),
            court: self.court.clone(),
            decision_date: self.decision_date.clone(),
            decision_reference: self.decision_reference.clone(),
            starts: self.starts.clone(),
            ends: self.ends.clone(),
            renewal_date: self.renewal_date.clone(),
        }
    }

    fn person(&self) -> CivilStatus {
        CivilStatus {
            family_name: self.family_name.clone(),
            usage_name: self.preferred_username.clone(),
            given_names: self.given_name.clone(),
            gender: if self.gender == "female" {
                "female"
            } else {
                "male"
            },
            birthdate: self.birthdate.clone(),
            birthplace: self.birthplace.clone(),
            birthcountry: self.birthcountry.clone(),
        }
    }
}

/// Applies the lines read from a file; `progress` counts the lines done.
pub async fn apply(
    ctx: &Context<'_>,
    file: &[u8],
    lines: Vec<Read>,
    progress: &AtomicUsize,
) -> Result<Report, MandateError> {
    let delegates = delegates(ctx.platform, ctx.structure).await?;
    let now = OffsetDateTime::now_utc();
    // A decision's dates are Paris calendar dates (between 22:00 or 23:00 UTC and midnight the
    // UTC date is still yesterday's).
    let today = foundation::paris::local(now).date();
    let mut report = Report::default();
    let mut tx = ctx.territory.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('measure_import:' || $1::text))")
        .bind(ctx.structure)
        .execute(&mut *tx)
        .await?;
    let existing: Vec<Existing> = sqlx::query_as(
        "SELECT j.case_number, j.mandate_id, m.usager_id, j.kind, j.court,
                j.decision_date::text AS decision_date, j.decision_reference, j.starts::text AS starts,
                j.ends::text AS ends, j.renewal_date::text AS renewal_date, j.categories, j.delegate_id,
                (m.ended_at IS NOT NULL OR m.expires_at <= now()) AS over, u.identified_by,
                u.family_name, u.preferred_username, u.given_name, u.birthdate, u.gender,
                u.birthplace, u.birthcountry
         FROM judicial_measures j JOIN mandates m ON m.id = j.mandate_id
         JOIN usagers u ON u.id = m.usager_id
         WHERE j.structure_id = $1 AND j.case_number IS NOT NULL",
    )
    .bind(ctx.structure)
    .fetch_all(&mut *tx)
    .await?;
    let existing: HashMap<String, Existing> = existing
        .into_iter()
        .map(|e| (e.case_number.clone(), e))
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for read in lines {
        let line = match read {
            Ok(line) => line,
            Err((number, case, reason)) => {
                report.push(number, &case, Outcome::Refused, reason);
                progress.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let checked = check(ctx, &delegates, &line, &mut seen);
        let outcome = match checked {
            Err(reason) => (Outcome::Refused, reason),
            Ok((cats, delegate)) => match existing.get(&line.case_number) {
                None => {
                    create(&mut tx, ctx, &line, cats, delegate, now, today).await?;
                    (Outcome::Imported, String::new())
                }
                Some(old) if old.over => (
                    Outcome::Refused,
                    "la mesure de ce dossier a pris fin ; elle ne peut plus être modifiée par import."
                        .into(),
                ),
                Some(old) => update(&mut tx, ctx, old, &line, delegate, now, today).await?,
            },
        };
        report.push(line.number, &line.case_number, outcome.0, outcome.1);
        progress.fetch_add(1, Ordering::Relaxed);
    }
    journal::append(
        &mut tx,
        NewEntry::new(Event::JudicialMeasuresImported)
            .structure(ctx.structure)
            .professional(ctx.by)
            .details(json!({
                "file_sha256": hex::encode(Sha256::digest(file)),
                "imported": report.imported,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "refused": report.refused,
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// Records one measure typed on the page for a person identified by the decision's civil
/// status: the line's démarches and delegate checked as in an import, its case number new to
/// the service; the mandate, or why not (in French).
pub async fn record_one(
    ctx: &Context<'_>,
    line: &Line,
) -> Result<Result<MandateId, String>, MandateError> {
    let delegates = delegates(ctx.platform, ctx.structure).await?;
    let (cats, delegate) = match check(ctx, &delegates, line, &mut BTreeMap::new()) {
        Ok(checked) => checked,
        Err(reason) => return Ok(Err(super::upper_first(&reason))),
    };
    let now = OffsetDateTime::now_utc();
    let mut tx = ctx.territory.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('measure_import:' || $1::text))")
        .bind(ctx.structure)
        .execute(&mut *tx)
        .await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM judicial_measures WHERE structure_id = $1 AND case_number = $2)",
    )
    .bind(ctx.structure)
    .bind(&line.case_number)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Ok(Err(format!(
            "Le dossier {} existe déjà dans votre service : modifiez-le par un import.",
            line.case_number
        )));
    }
    let today = foundation::paris::local(now).date();
    let mandate = create(&mut tx, ctx, line, cats, delegate, now, today).await?;
    tx.commit().await?;
    Ok(Ok(mandate))
}

/// The line's démarches and delegate checked against the service.
fn check(
    ctx: &Context<'_>,
    delegates: &HashMap<String, ProfessionalId>,
    line: &Line,
    seen: &mut BTreeMap<String, usize>,
) -> Result<(Vec<categories::Category>, Option<ProfessionalId>), String> {
    if let Some(first) = seen.get(&line.case_number) {
        return Err(format!(
            "le dossier {} figure déjà ligne {first} de ce fichier.",
            line.case_number
        ));
    }
    seen.insert(line.case_number.clone(), line.number);
    let cats = mandates::validate_categories(&line.categories, ctx.demarches).map_err(|_| {
        let outside: Vec<&str> = line
            .categories
            .iter()
            .filter(|c| !ctx.demarches.contains(c))
            .map(|c| categories::label(c))
            .collect();
        format!(
            "votre structure ne traite pas ces démarches : {}.",
            outside.join(", ")
        )
    })?;
    let delegate = match &line.delegate {
        None => None,
        Some(email) => Some(*delegates.get(email).ok_or_else(|| {
            format!("« {email} » n'est pas un délégué de votre service (un aidant habilité de la structure).")
        })?),
    };
    Ok((cats, delegate))
}

fn days_until(ends: &str, today: time::Date) -> i32 {
    let ends = time::Date::parse(
        ends,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap_or(today);
    i32::try_from((ends - today).whole_days())
        .unwrap_or(1)
        .max(1)
}

async fn create(
    tx: &mut TenantTx,
    ctx: &Context<'_>,
    line: &Line,
    cats: Vec<categories::Category>,
    delegate: Option<ProfessionalId>,
    now: OffsetDateTime,
    today: time::Date,
) -> Result<MandateId, MandateError> {
    let usager = UsagerId::new_v7();
    save_person(tx, ctx, usager, &line.person, true).await?;
    let codes: Vec<String> = cats.iter().map(|c| c.code.to_owned()).collect();
    let mandate = mandates::create(
        tx,
        &NewMandate {
            id: MandateId::new_v7(),
            structure: ctx.structure,
            aidant: ctx.by,
            usager,
            categories: cats,
            duration_days: days_until(&line.measure.ends, today),
            renewal_of: None,
            idempotency_key: None,
            language: None,
            attestation: None,
        },
        now,
    )
    .await?;
    super::record(
        tx,
        &Recorded {
            mandate,
            structure: ctx.structure,
            by: ctx.by,
            measure: &line.measure,
            categories: &codes,
            identified_by: "civil_status",
            case_number: Some(&line.case_number),
            delegate,
        },
    )
    .await?;
    Ok(mandate)
}

/// Writes a person identified by the decision's civil status (`fresh`: new, else updated),
/// journaled. Their internal subject is made once, at creation.
async fn save_person(
    tx: &mut TenantTx,
    ctx: &Context<'_>,
    usager: UsagerId,
    p: &CivilStatus,
    fresh: bool,
) -> Result<(), MandateError> {
    sqlx::query(
        "INSERT INTO usagers (id, fc_sub, given_name, family_name, preferred_username, birthdate,
                              gender, birthplace, birthcountry, search_name, identified_by)
         VALUES ($1, 'etat-civil:' || gen_random_uuid(), $2, $3, $4, $5, $6, $7, $8, $9, 'civil_status')
         ON CONFLICT (id) DO UPDATE SET
             given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
             preferred_username = EXCLUDED.preferred_username, birthdate = EXCLUDED.birthdate,
             gender = EXCLUDED.gender, birthplace = EXCLUDED.birthplace,
             birthcountry = EXCLUDED.birthcountry, search_name = EXCLUDED.search_name,
             updated_at = EXCLUDED.updated_at",
    )
    .bind(usager)
    .bind(&p.given_names)
    .bind(&p.family_name)
    .bind(&p.usage_name)
    .bind(&p.birthdate)
    .bind(p.gender)
    .bind(&p.birthplace)
    .bind(&p.birthcountry)
    .bind(search_name(p))
    .execute(&mut **tx)
    .await?;
    if !fresh {
        crate::mandates::follow_identity(
            tx,
            usager,
            &p.family_name,
            &p.given_names,
            p.usage_name.as_deref(),
            &p.birthdate,
        )
        .await?;
    }
    let event = if fresh {
        Event::UsagerIdentified
    } else {
        Event::UsagerIdentityUpdated
    };
    journal::append(
        tx,
        NewEntry::new(event)
            .structure(ctx.structure)
            .professional(ctx.by)
            .usager(usager)
            .details(json!({ "source": "civil_status" })),
    )
    .await?;
    Ok(())
}

fn search_name(p: &CivilStatus) -> String {
    search_key(&format!(
        "{} {} {}",
        p.family_name,
        p.usage_name.as_deref().unwrap_or(""),
        p.given_names
    ))
}

/// Brings an imported measure to what the line says; `Unchanged` when it already does.
async fn update(
    tx: &mut TenantTx,
    ctx: &Context<'_>,
    old: &Existing,
    line: &Line,
    delegate: Option<ProfessionalId>,
    now: OffsetDateTime,
    today: time::Date,
) -> Result<(Outcome, String), MandateError> {
    let mut changed: Vec<&str> = Vec::new();
    let person_changed = old.identified_by == "civil_status" && old.person() != line.person;
    if person_changed {
        changed.push("état civil");
    }
    let m = &line.measure;
    let measure_changed = old.measure() != *m;
    if measure_changed {
        changed.push("décision");
    }
    let categories_changed = old.categories != line.categories;
    if categories_changed {
        changed.push("démarches");
    }
    // A line without a delegate leaves the measure's delegate as it is (hand-overs are made on
    // the platform).
    let delegate = delegate.or(old.delegate_id);
    if delegate != old.delegate_id {
        changed.push("délégué");
    }
    if changed.is_empty() {
        return Ok((Outcome::Unchanged, String::new()));
    }
    if person_changed {
        save_person(tx, ctx, old.usager_id, &line.person, false).await?;
    }
    sqlx::query(
        "UPDATE judicial_measures SET kind = $2, court = $3, decision_date = $4::date,
                decision_reference = $5, starts = $6::date, ends = $7::date,
                renewal_date = $8::date, categories = $9, delegate_id = $10
         WHERE mandate_id = $1",
    )
    .bind(old.mandate_id)
    .bind(&m.kind)
    .bind(&m.court)
    .bind(&m.decision_date)
    .bind(&m.decision_reference)
    .bind(&m.starts)
    .bind(&m.ends)
    .bind(&m.renewal_date)
    .bind(&line.categories)
    .bind(delegate)
    .execute(&mut **tx)
    .await?;
    let expires = now + time::Duration::days(i64::from(days_until(&m.ends, today)));
    if old.ends != m.ends {
        sqlx::query(
            "UPDATE mandates SET expires_at = $2,
                    duration_days = greatest(1, least(36525, ceil(extract(epoch FROM $2 - created_at) / 86400)::int))
             WHERE id = $1",
        )
        .bind(old.mandate_id)
        .bind(expires)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE authorisations SET expires_at = $2
             WHERE mandate_id = $1 AND revoked_at IS NULL AND superseded_at IS NULL",
        )
        .bind(old.mandate_id)
        .bind(expires)
        .execute(&mut **tx)
        .await?;
    }
    if categories_changed {
        let before: BTreeSet<&String> = old.categories.iter().collect();
        let after: BTreeSet<&String> = line.categories.iter().collect();
        let removed: Vec<&str> = before.difference(&after).map(|s| s.as_str()).collect();
        sqlx::query(
            "UPDATE authorisations SET revoked_at = $3, revoked_by = $4
             WHERE mandate_id = $1 AND category = ANY($2) AND revoked_at IS NULL AND superseded_at IS NULL",
        )
        .bind(old.mandate_id)
        .bind(&removed)
        .bind(now)
        .bind(ctx.by)
        .execute(&mut **tx)
        .await?;
        for added in after.difference(&before) {
            sqlx::query(
                "INSERT INTO authorisations (id, mandate_id, structure_id, usager_id, category, expires_at)
                 SELECT $1, m.id, m.structure_id, m.usager_id, $3, m.expires_at FROM mandates m WHERE m.id = $2
                 ON CONFLICT (mandate_id, category) DO UPDATE SET revoked_at = NULL, revoked_by = NULL,
                     expires_at = EXCLUDED.expires_at",
            )
            .bind(Uuid::now_v7())
            .bind(old.mandate_id)
            .bind(added.as_str())
            .execute(&mut **tx)
            .await?;
        }
    }
    if old.ends != m.ends || categories_changed {
        // A longer term or a new démarche: the structure's list must look at the person.
        crate::mandates::widen(tx, old.mandate_id).await?;
    }
    journal::append(
        tx,
        NewEntry::new(Event::JudicialMeasureUpdated)
            .structure(ctx.structure)
            .professional(ctx.by)
            .usager(old.usager_id)
            .mandate(old.mandate_id)
            .details(json!({
                "changed": changed,
                "kind": m.kind,
                "starts": m.starts,
                "ends": m.ends,
                "renewal_date": m.renewal_date,
                "categories": line.categories,
                "delegate": delegate,
            })),
    )
    .await?;
    Ok((
        Outcome::Updated,
        format!("modifié : {}.", changed.join(", ")),
    ))
}
