//! Judicial protection measures (product.md §6; issue 18 §1). A guardian service records the
//! measure a court decided: the kind, the court, the decision's date and reference, its period
//! (not limited to a year; a renewal date) and the démarches it allows. It becomes a mandate
//! like the others — in the lists, the identity provider (whose `rep_scope` is the mandate's
//! démarches, so exactly what the decision allows) and the journal — marked judicial, with the
//! measure beside it (`judicial_measures`, département migration 0022). The protected person is
//! identified through FranceConnect at the counter, or by the decision's civil-status data when
//! the service imports its measures (`import`); measures are assigned to the service's
//! delegates and handed over (`caseload`), and alerts go out before they end (`alerts`).

pub mod alerts;
pub mod caseload;
pub mod csv;
pub mod import;

use foundation::ids::{MandateId, ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::TenantTx;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;

/// The kinds of measure, with their French names.
pub const KINDS: &[(&str, &str)] = &[
    ("tutelle", "Tutelle"),
    ("curatelle_simple", "Curatelle simple"),
    ("curatelle_renforcee", "Curatelle renforcée"),
    ("habilitation_familiale", "Habilitation familiale"),
    ("sauvegarde_de_justice", "Sauvegarde de justice"),
    ("mandat_protection_future", "Mandat de protection future"),
];

/// A kind's French name (the code itself when unknown).
pub fn kind_label(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, l)| l)
}

/// A reason read from a line (« la mesure… ») as a sentence of its own (« La mesure… »).
pub fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `2031-03-14` as `14/03/2031` (as it is when unreadable).
pub fn fr_date(iso: &str) -> String {
    date(iso).map_or_else(|| iso.to_owned(), foundation::paris::day)
}

/// A measure as the court decided it (dates as `YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    pub kind: String,
    pub court: String,
    pub decision_date: String,
    pub decision_reference: String,
    pub starts: String,
    pub ends: String,
    pub renewal_date: Option<String>,
}

/// What is wrong with a typed measure, in French.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    #[error("Choisissez le type de mesure.")]
    Kind,
    #[error("Indiquez le tribunal qui a rendu la décision.")]
    Court,
    #[error("Indiquez la référence de la décision (numéro de répertoire général ou de minute).")]
    Reference,
    #[error("La date {0} n'est pas valide : par exemple 15/03/2026.")]
    Date(&'static str),
    #[error("La fin de la mesure doit venir après son début.")]
    EndBeforeStart,
    #[error("La mesure est déjà terminée : elle ne peut pas être enregistrée.")]
    Ended,
    #[error("La date de la décision ne peut pas être dans le futur.")]
    FutureDecision,
    #[error("La mesure ne peut pas dépasser 100 ans.")]
    TooLong,
}

fn date(s: &str) -> Option<Date> {
    Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

impl Measure {
    /// The measure checked at `today`; returns it with the mandate's duration in days (from
    /// today to its end).
    pub fn checked(self, today: Date) -> Result<(Measure, i32), MeasureError> {
        if !KINDS.iter().any(|(k, _)| *k == self.kind) {
            return Err(MeasureError::Kind);
        }
        let court = self.court.trim();
        if court.is_empty() || court.chars().count() > 200 {
            return Err(MeasureError::Court);
        }
        let reference = self.decision_reference.trim();
        if reference.is_empty() || reference.chars().count() > 100 {
            return Err(MeasureError::Reference);
        }
        let decided = date(&self.decision_date).ok_or(MeasureError::Date("de la décision"))?;
        let starts = date(&self.starts).ok_or(MeasureError::Date("de début"))?;
        let ends = date(&self.ends).ok_or(MeasureError::Date("de fin"))?;
        let renewal = match self.renewal_date.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(date(r).ok_or(MeasureError::Date("de révision"))?),
        };
        if decided > today {
            return Err(MeasureError::FutureDecision);
        }
        if ends <= starts {
            return Err(MeasureError::EndBeforeStart);
        }
        if ends <= today {
            return Err(MeasureError::Ended);
        }
        let days = (ends - today).whole_days();
        if days > 36_525 {
            return Err(MeasureError::TooLong);
        }
        Ok((
            Measure {
                kind: self.kind,
                court: court.to_owned(),
                decision_date: decided.to_string(),
                decision_reference: reference.to_owned(),
                starts: starts.to_string(),
                ends: ends.to_string(),
                renewal_date: renewal.map(|d| d.to_string()),
            },
            days as i32,
        ))
    }
}

/// A measure to record beside its mandate.
pub struct Recorded<'a> {
    pub mandate: MandateId,
    pub structure: StructureId,
    pub by: ProfessionalId,
    pub measure: &'a Measure,
    /// The démarche codes the decision allows (the mandate's authorisations).
    pub categories: &'a [String],
    /// `franceconnect`, or `civil_status` (the decision's civil-status data).
    pub identified_by: &'a str,
    /// The service's own case number (imports).
    pub case_number: Option<&'a str>,
    pub delegate: Option<ProfessionalId>,
}

/// Records the measure beside its mandate, in the mandate's transaction; journaled (its kind,
/// dates and delegate, not its reference).
pub async fn record(tx: &mut TenantTx, r: &Recorded<'_>) -> Result<(), sqlx::Error> {
    let measure = r.measure;
    sqlx::query(
        "INSERT INTO judicial_measures (mandate_id, kind, court, decision_date, decision_reference,
                                        starts, ends, renewal_date, identified_by, structure_id,
                                        case_number, delegate_id, categories)
         VALUES ($1, $2, $3, $4::date, $5, $6::date, $7::date, $8::date, $9, $10, $11, $12, $13)",
    )
    .bind(r.mandate)
    .bind(&measure.kind)
    .bind(&measure.court)
    .bind(&measure.decision_date)
    .bind(&measure.decision_reference)
    .bind(&measure.starts)
    .bind(&measure.ends)
    .bind(&measure.renewal_date)
    .bind(r.identified_by)
    .bind(r.structure)
    .bind(r.case_number)
    .bind(r.delegate)
    .bind(r.categories)
    .execute(&mut **tx)
    .await?;
    journal::append(
        tx,
        NewEntry::new(Event::JudicialMeasureRecorded)
            .structure(r.structure)
            .professional(r.by)
            .mandate(r.mandate)
            .details(json!({
                "kind": measure.kind,
                "decision_date": measure.decision_date,
                "starts": measure.starts,
                "ends": measure.ends,
                "renewal_date": measure.renewal_date,
                "categories": r.categories,
                "identified_by": r.identified_by,
                "delegate": r.delegate,
            })),
    )
    .await?;
    Ok(())
}

/// The measure of a mandate, if it is judicial.
pub async fn of(tx: &mut TenantTx, mandate: MandateId) -> Result<Option<Measure>, sqlx::Error> {
    sqlx::query_as::<
        _,
        (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
        ),
    >(
        "SELECT kind, court, decision_date::text, decision_reference, starts::text, ends::text,
                renewal_date::text
         FROM judicial_measures WHERE mandate_id = $1",
    )
    .bind(mandate)
    .fetch_optional(&mut **tx)
    .await
    .map(|row| {
        row.map(
            |(kind, court, decision_date, decision_reference, starts, ends, renewal_date)| {
                Measure {
                    kind,
                    court,
                    decision_date,
                    decision_reference,
                    starts,
                    ends,
                    renewal_date,
                }
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed() -> Measure {
        Measure {
            kind: "tutelle".into(),
            court: "Tribunal judiciaire de Bordeaux".into(),
            decision_date: "2026-03-15".into(),
            decision_reference: "RG 26/01234".into(),
            starts: "2026-03-15".into(),
            ends: "2031-03-14".into(),
            renewal_date: Some("2030-09-15".into()),
        }
    }

    #[test]
    fn a_measure_is_checked_and_lasts_until_its_end() {
        let today = Date::from_calendar_date(2026, time::Month::November, 30).expect("date");
        let (m, days) = typed().checked(today).expect("mesure");
        assert_eq!(m.ends, "2031-03-14");
        assert_eq!(days, 1565);
        let no_reference = Measure {
            decision_reference: "  ".into(),
            ..typed()
        };
        assert_eq!(no_reference.checked(today), Err(MeasureError::Reference));
        let backwards = Measure {
            ends: "2026-03-01".into(),
            ..typed()
        };
        assert_eq!(backwards.checked(today), Err(MeasureError::EndBeforeStart));
        let unknown = Measure {
            kind: "garde".into(),
            ..typed()
        };
        assert_eq!(unknown.checked(today), Err(MeasureError::Kind));
        let bad_date = Measure {
            decision_date: "15/03/2026".into(),
            ..typed()
        };
        assert_eq!(
            bad_date.checked(today),
            Err(MeasureError::Date("de la décision"))
        );
        assert_eq!(kind_label("curatelle_renforcee"), "Curatelle renforcée");
    }
}
