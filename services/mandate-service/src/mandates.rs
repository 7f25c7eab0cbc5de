//! Mandates: the rules of product.md §6 (categories the structure allows, the four durations,
//! supersession, revocation, expiry) and their journal entries. Every function works inside the
//! caller's territory transaction, so an act and its journal entries commit together — except
//! those of drafts (`drafts`: reading one, and confirming it, which opens its own transactions
//! around the attestation's upload).

/// A mandate being prepared, and its confirmation.
mod drafts;

pub use drafts::{Confirmation, Draft, confirm_draft, load_draft};

/// The usager's identity as FranceConnect asserts it.
mod usager;

pub use usager::{follow_identity, upsert_usager, widen};

use std::collections::BTreeSet;

use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::TenantTx;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::categories::{self, Category, DURATIONS};

/// Version of the legal text of the mandate, recorded with each mandate and printed on the
/// attestation. A new wording gets a new version; old attestations keep theirs.
pub const LEGAL_TEXT_VERSION: &str = "2026-11-v1";

/// How long a mandate being prepared (terms chosen, FranceConnect round trip, recap) lives.
pub const DRAFT_MINUTES: i64 = 30;

/// Errors a person can cause, each with what to do, in French.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MandateError {
    #[error("Choisissez au moins une démarche.")]
    NoCategory,
    #[error(
        "La démarche « {0} » n'est pas proposée par votre structure : choisissez parmi celles de la liste."
    )]
    CategoryNotAllowed(String),
    #[error("Choisissez une durée : 1 jour, 31 jours, 182 jours ou 365 jours.")]
    BadDuration,
    #[error(
        "La préparation de ce mandat a expiré ou n'existe pas. Recommencez depuis « Nouveau mandat »."
    )]
    DraftUnavailable,
    #[error("La personne n'a pas encore été identifiée avec FranceConnect.")]
    NotIdentified,
    #[error(
        "Cochez la case certifiant que la personne a été informée de ses droits et de ses responsabilités."
    )]
    DeclarationMissing,
    #[error(
        "La personne identifiée par FranceConnect n'est pas celle du mandat à renouveler. Recommencez avec la bonne personne."
    )]
    RenewalOtherPerson,
    #[error("Ce mandat ou cette démarche n'est plus en cours : rien n'a été révoqué.")]
    NothingLive,
    #[error("Mandat introuvable.")]
    NotFound,
    #[error("Erreur de base de données.")]
    Database,
}

impl From<sqlx::Error> for MandateError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "mandates: database error");
        MandateError::Database
    }
}

/// Checks the chosen terms against the structure's categories and the allowed durations.
pub fn validate_terms(
    chosen: &[String],
    allowed: &[String],
    duration_days: Option<i32>,
) -> Result<(Vec<Category>, i32), MandateError> {
    let categories = validate_categories(chosen, allowed)?;
    let duration = duration_days
        .filter(|d| DURATIONS.iter().any(|(x, _)| x == d))
        .ok_or(MandateError::BadDuration)?;
    Ok((categories, duration))
}

/// The chosen démarches, each known and handled by the structure, at least one.
pub fn validate_categories(
    chosen: &[String],
    allowed: &[String],
) -> Result<Vec<Category>, MandateError> {
    let mut out = BTreeSet::new();
    for code in chosen {
        let category = categories::by_code(code)
            .ok_or_else(|| MandateError::CategoryNotAllowed(code.chars().take(40).collect()))?;
        if !allowed.iter().any(|a| a == category.code) {
            return Err(MandateError::CategoryNotAllowed(category.label.into()));
        }
        out.insert(category);
    }
    if out.is_empty() {
        return Err(MandateError::NoCategory);
    }
    Ok(out.into_iter().collect())
}

/// Lower case, accents removed, one space between words: what name searches compare.
pub fn search_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let base = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            'œ' => {
                out.push('o');
                'e'
            }
            'æ' => {
                out.push('a');
                'e'
            }
            c if c.is_alphanumeric() => c,
            _ => ' ',
        };
        if base == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(base);
    }
    out.trim_end().to_owned()
}

/// What to do with one of the usager's contact details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Keep,
    /// Already normalised (see [`crate::contact::typed_contact`]).
    Set(&'a str),
    Remove,
}

impl<'a> Change<'a> {
    /// A typed value replaces, nothing typed keeps.
    pub fn typed(value: Option<&'a str>) -> Self {
        value.map_or(Change::Keep, Change::Set)
    }

    fn mode(&self) -> (&'static str, Option<&'a str>) {
        match self {
            Change::Keep => ("keep", None),
            Change::Set(v) => ("set", Some(v)),
            Change::Remove => ("remove", None),
        }
    }
}

/// Records the mobile phone and postal address the usager agreed to give `structure` for its
/// receipts, or removes them. Contacts are kept per structure: one structure cannot redirect
/// another's receipts. A change is journaled (which fields changed, never their values) for
/// every structure of the territory holding a live mandate for the person, and when a phone
/// or address already known to the structure is replaced or removed, the person is told at the
/// contact they had (e-mail, else the old phone, else the old address). Returns whether
/// anything changed.
pub async fn set_contact(
    tx: &mut TenantTx,
    usager: UsagerId,
    structure: StructureId,
    by: ProfessionalId,
    phone: Change<'_>,
    postal_address: Change<'_>,
) -> Result<bool, MandateError> {
    // Nothing typed and nothing removed: nothing to write (readers join the contacts with
    // `LEFT JOIN`, so a person with none needs no row).
    if matches!((&phone, &postal_address), (Change::Keep, Change::Keep)) {
        return Ok(false);
    }
    let ((phone_mode, phone), (address_mode, address)) = (phone.mode(), postal_address.mode());
    // One row per (usager, structure), locked for the change.
    sqlx::query(
        "INSERT INTO usager_contacts (usager_id, structure_id, updated_by) VALUES ($1, $2, $3)
         ON CONFLICT (usager_id, structure_id) DO NOTHING",
    )
    .bind(usager)
    .bind(structure)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    // Phone before and after, address before and after.
    type Changed = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let changed: Option<Changed> =
        sqlx::query_as(
            "WITH old AS (SELECT phone, postal_address FROM usager_contacts
                          WHERE usager_id = $1 AND structure_id = $6 FOR UPDATE),
                  new AS (SELECT CASE WHEN $2 = 'keep' THEN old.phone WHEN $2 = 'remove' THEN NULL ELSE $3 END AS phone,
                                 CASE WHEN $4 = 'keep' THEN old.postal_address WHEN $4 = 'remove' THEN NULL ELSE $5 END AS postal_address
                          FROM old)
             UPDATE usager_contacts c SET phone = new.phone, postal_address = new.postal_address,
                    updated_at = now(), updated_by = $7
             FROM old, new
             WHERE c.usager_id = $1 AND c.structure_id = $6
               AND (old.phone IS DISTINCT FROM new.phone OR old.postal_address IS DISTINCT FROM new.postal_address)
             RETURNING old.phone, new.phone, old.postal_address, new.postal_address",
        )
        .bind(usager)
        .bind(phone_mode)
        .bind(phone)
        .bind(address_mode)
        .bind(address)
        .bind(structure)
        .bind(by)
        .fetch_optional(&mut **tx)
        .await?;
    let Some((old_phone, new_phone, old_address, new_address)) = changed else {
        return Ok(false);
    };
    let said = |old: &Option<String>, new: &Option<String>| match (old == new, new) {
        (true, _) => "unchanged",
        (false, Some(_)) => "updated",
        (false, None) => "removed",
    };
    let (phone_said, address_said) = (
        said(&old_phone, &new_phone),
        said(&old_address, &new_address),
    );
    // Every structure of the territory that holds a live mandate for the person, and the one
    // that made the change.
    let holders: Vec<StructureId> = sqlx::query_scalar(
        "SELECT DISTINCT structure_id FROM mandates
         WHERE usager_id = $1 AND ended_at IS NULL AND expires_at > now() AND structure_id <> $2
         ORDER BY structure_id",
    )
    .bind(usager)
    .bind(structure)
    .fetch_all(&mut **tx)
    .await?;
    for holder in std::iter::once(structure).chain(holders) {
        let mut entry = NewEntry::new(Event::UsagerContactUpdated)
            .structure(holder)
            .usager(usager)
            .details(json!({
                "phone": phone_said,
                "postal_address": address_said,
                "changed_by_structure": structure,
            }));
        if holder == structure {
            entry = entry.professional(by);
        }
        journal::append(tx, entry).await?;
    }
    // Told at the contact they had, when something they had given this structure is replaced
    // or removed (a first number or address given at the counter needs no warning).
    let overwritten = (old_phone.is_some() && phone_said != "unchanged")
        || (old_address.is_some() && address_said != "unchanged");
    if overwritten {
        let mut changes = Vec::new();
        match phone_said {
            "updated" if old_phone.is_some() => changes.push("numéro de téléphone mobile remplacé"),
            "updated" => changes.push("numéro de téléphone mobile ajouté"),
            "removed" => changes.push("numéro de téléphone mobile supprimé"),
            _ => {}
        }
        match address_said {
            "updated" if old_address.is_some() => changes.push("adresse postale remplacée"),
            "updated" => changes.push("adresse postale ajoutée"),
            "removed" => changes.push("adresse postale supprimée"),
            _ => {}
        }
        let (email, name): (Option<String>, String) = sqlx::query_as(
            "SELECT u.email, s.name FROM usagers u CROSS JOIN structures s WHERE u.id = $1 AND s.id = $2",
        )
        .bind(usager)
        .bind(structure)
        .fetch_one(&mut **tx)
        .await?;
        let old_contact = crate::contact::UsagerContact {
            email,
            phone: old_phone,
            postal_address: old_address,
        };
        crate::contact::enqueue_usager_receipt(
            tx,
            structure,
            &old_contact,
            "usager_contact_changed",
            json!({
                "date": crate::web::date_time(OffsetDateTime::now_utc()),
                "structure": name,
                "changes": changes,
            }),
        )
        .await?;
    }
    Ok(true)
}

/// What creating a mandate needs, once the usager is identified and the aidant confirmed.
#[derive(Debug, Clone)]
pub struct NewMandate {
    /// Chosen by the caller (the attestation, built before, names it).
    pub id: MandateId,
    pub structure: StructureId,
    pub aidant: ProfessionalId,
    pub usager: UsagerId,
    pub categories: Vec<Category>,
    pub duration_days: i32,
    pub renewal_of: Option<MandateId>,
    /// Unique among the territory's mandates: the caller makes sure no mandate has it yet (a
    /// draft is confirmed once, under its lock, in the transaction that creates its mandate).
    pub idempotency_key: Option<String>,
    /// The language the explanation was given in (`explanation::LANGUAGES`), recorded with the
    /// mandate; `None`: the table's default (French).
    pub language: Option<String>,
    /// The attestation already stored for it (its document id and SHA-256), recorded in the
    /// mandate's row as it is inserted; the caller records the document itself.
    pub attestation: Option<(Uuid, Vec<u8>)>,
}

/// A creation in one statement with its journal entry (`journal_with!`): the mandate's insert
/// (with or without its language: `None` leaves the column's default), the supersession of the
/// structure's live authorisations for the same usager and categories (returned), the new
/// authorisations, one per category, and the structure's row of the person widened with them
/// (as [`usager::widen`] does from the authorisations written). The statement's parts all see
/// the database as it was before it, so the supersession never touches the authorisations it
/// inserts, and the row is widened from the statement's values; the foreign keys to the new
/// mandate are checked at its end, once the mandate is written.
macro_rules! create_statement {
    ($column:literal, $value:literal) => {
        foundation::journal_with!(
            concat!(
                "created AS (INSERT INTO mandates (id, structure_id, usager_id, created_by,
                     created_at, duration_days, expires_at, legal_text_version, renewal_of,
                     idempotency_key, attestation_id, attestation_sha256",
                $column,
                ") VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $20, $21",
                $value,
                ")), superseded AS (UPDATE authorisations SET superseded_at = $12, superseded_by = $8
                     WHERE structure_id = $9 AND usager_id = $10 AND category = ANY($18)
                       AND revoked_at IS NULL AND superseded_at IS NULL AND expires_at > $12
                     RETURNING mandate_id, category),
                 granted AS (INSERT INTO authorisations (id, mandate_id, structure_id, usager_id,
                     category, expires_at)
                     SELECT n.id, $8, $9, $10, n.category, $14
                     FROM unnest($19::uuid[], $18::text[]) AS n (id, category)),
                 listed AS (",
                usager::widen_insert!(),
                " SELECT $9, u.id, u.family_name, u.given_name, u.preferred_username, u.birthdate,
                         ARRAY(SELECT DISTINCT c FROM unnest($18::text[]) c ORDER BY 1), $14
                  FROM usagers u WHERE u.id = $10 ",
                usager::widen_merge!(),
                ")"
            ),
            "SELECT mandate_id, category FROM superseded"
        )
    };
}

/// Creates the mandate and its authorisations, superseding the structure's live authorisations
/// for the same usager and categories; journals all of it. The usager's row must be locked by
/// the caller ([`upsert_usager`] does), so two creations for one person queue.
pub async fn create(
    tx: &mut TenantTx,
    new: &NewMandate,
    now: OffsetDateTime,
) -> Result<MandateId, MandateError> {
    if let Some(previous) = new.renewal_of {
        let usager: Option<UsagerId> = sqlx::query_scalar(
            "SELECT usager_id FROM mandates WHERE id = $1 AND structure_id = $2",
        )
        .bind(previous)
        .bind(new.structure)
        .fetch_optional(&mut **tx)
        .await?;
        match usager {
            None => return Err(MandateError::NotFound),
            Some(u) if u != new.usager => return Err(MandateError::RenewalOtherPerson),
            Some(_) => {}
        }
    }
    let id = new.id;
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    let expires = now + Duration::days(i64::from(new.duration_days));
    let codes: Vec<&str> = new.categories.iter().map(|c| c.code).collect();
    // One authorisation per category.
    let ids: Vec<Uuid> = codes.iter().map(|_| Uuid::now_v7()).collect();
    let entry = NewEntry::new(Event::MandateCreated)
        .structure(new.structure)
        .professional(new.aidant)
        .usager(new.usager)
        .mandate(id)
        .details(json!({
            "categories": codes,
            "duration_days": new.duration_days,
            "expires_at": expires.unix_timestamp(),
            "legal_text_version": LEGAL_TEXT_VERSION,
            "renewal_of": new.renewal_of,
        }));
    let sql = match &new.language {
        Some(_) => create_statement!(", language", ", $22"),
        None => create_statement!("", ""),
    };
    let superseded: Vec<(MandateId, String)> = journal::append_with(tx, entry, sql, |q| {
        let q = q
            .bind(id)
            .bind(new.structure)
            .bind(new.usager)
            .bind(new.aidant)
            .bind(now)
            .bind(new.duration_days)
            .bind(expires)
            .bind(LEGAL_TEXT_VERSION)
            .bind(new.renewal_of)
            .bind(new.idempotency_key.clone())
            .bind(codes.clone())
            .bind(ids)
            .bind(new.attestation.as_ref().map(|(document, _)| *document))
            .bind(new.attestation.as_ref().map(|(_, sha256)| sha256.clone()));
        match &new.language {
            Some(language) => q.bind(language.clone()),
            None => q,
        }
    })
    .await?;
    if !superseded.is_empty() {
        let entries: Vec<NewEntry> = superseded
            .iter()
            .map(|(old_mandate, category)| {
                NewEntry::new(Event::AuthorisationSuperseded)
                    .structure(new.structure)
                    .professional(new.aidant)
                    .usager(new.usager)
                    .mandate(*old_mandate)
                    .details(json!({ "category": category, "superseded_by": id }))
            })
            .collect();
        journal::append_all(tx, &entries).await?;
    }
    let old: BTreeSet<MandateId> = superseded.iter().map(|(m, _)| *m).collect();
    for mandate in old {
        close_if_ended(tx, mandate, "superseded", now).await?;
    }
    let labels: Vec<&str> = new.categories.iter().map(|c| c.label).collect();
    usager_receipt(
        tx,
        new.structure,
        new.usager,
        "mandate_created",
        json!({
            "date": crate::web::date_time(now),
            "demarches": labels,
            "expires": crate::web::date(expires),
        }),
    )
    .await?;
    Ok(id)
}

/// Queues a receipt to the usager (product.md §9: creation, use, revocation) by the channel
/// their contact allows, in the act's transaction; `payload` gets the structure's name.
pub(crate) async fn usager_receipt(
    tx: &mut TenantTx,
    structure: StructureId,
    usager: UsagerId,
    template: &'static str,
    mut payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let (email, phone, postal_address, name, receipts): (
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT coalesce(u.own_email, u.email), coalesce(u.own_phone, c.phone),
                coalesce(u.own_postal_address, c.postal_address), s.name, u.receipts
             FROM usagers u CROSS JOIN structures s
             LEFT JOIN usager_contacts c ON c.usager_id = u.id AND c.structure_id = s.id
             WHERE u.id = $1 AND s.id = $2",
    )
    .bind(usager)
    .bind(structure)
    .fetch_one(&mut **tx)
    .await?;
    payload["structure"] = serde_json::Value::String(name);
    let contact = crate::contact::UsagerContact {
        email,
        phone,
        postal_address,
    }
    .chosen(&receipts);
    crate::contact::enqueue_usager_receipt(tx, structure, &contact, template, payload).await?;
    Ok(())
}

/// Marks a mandate ended when none of its authorisations is still running.
async fn close_if_ended(
    tx: &mut TenantTx,
    mandate: MandateId,
    reason: &str,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    // Checked at compile time against the reference territory schema (docs/TENANCY.md).
    let closed = sqlx::query!(
        "UPDATE mandates SET ended_at = $2, ended_reason = $3
         WHERE id = $1 AND ended_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM authorisations a WHERE a.mandate_id = $1
                           AND a.revoked_at IS NULL AND a.superseded_at IS NULL)",
        mandate.as_uuid(),
        now,
        reason
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(closed == 1)
}

/// Revokes one category (or every live one) of a structure's mandate. Returns the categories
/// revoked and whether the whole mandate has ended.
pub async fn revoke(
    tx: &mut TenantTx,
    structure: StructureId,
    mandate: MandateId,
    category: Option<&str>,
    by: Option<ProfessionalId>,
    now: OffsetDateTime,
) -> Result<(Vec<String>, bool), MandateError> {
    let usager: Option<UsagerId> = sqlx::query_scalar(
        "SELECT usager_id FROM mandates WHERE id = $1 AND structure_id = $2 FOR UPDATE",
    )
    .bind(mandate)
    .bind(structure)
    .fetch_optional(&mut **tx)
    .await?;
    let usager = usager.ok_or(MandateError::NotFound)?;
    let revoked: Vec<String> = sqlx::query_scalar(
        "UPDATE authorisations SET revoked_at = $3, revoked_by = $4
         WHERE mandate_id = $1 AND ($2::text IS NULL OR category = $2)
           AND revoked_at IS NULL AND superseded_at IS NULL AND expires_at > $3
         RETURNING category",
    )
    .bind(mandate)
    .bind(category)
    .bind(now)
    .bind(by)
    .fetch_all(&mut **tx)
    .await?;
    if revoked.is_empty() {
        return Err(MandateError::NothingLive);
    }
    // Revoked by an aidant of the structure, or by the person in their own space.
    let entry = |event: Event, details: serde_json::Value| {
        let entry = NewEntry::new(event)
            .structure(structure)
            .usager(usager)
            .mandate(mandate);
        match by {
            Some(professional) => entry.professional(professional).details(details),
            None => {
                let mut details = details;
                details["by"] = json!("usager");
                entry.details(details)
            }
        }
    };
    for c in &revoked {
        journal::append(
            tx,
            entry(Event::AuthorisationRevoked, json!({ "category": c })),
        )
        .await?;
    }
    let ended = close_if_ended(tx, mandate, "revoked", now).await?;
    if ended {
        journal::append(
            tx,
            entry(Event::MandateRevoked, json!({ "categories": revoked })),
        )
        .await?;
    }
    let labels: Vec<&str> = revoked
        .iter()
        .map(|c| categories::by_code(c).map_or(c.as_str(), |c| c.label))
        .collect();
    usager_receipt(
        tx,
        structure,
        usager,
        "mandate_revoked",
        json!({
            "date": crate::web::date_time(now),
            "demarches": labels,
            "suite": if ended {
                "Le mandat a pris fin."
            } else {
                "Le mandat reste en cours pour ses autres démarches."
            },
        }),
    )
    .await?;
    Ok((revoked, ended))
}

/// The state of a mandate as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Live,
    Expiring,
    Expired,
    Revoked,
    Superseded,
}

impl State {
    pub fn of(
        expires_at: OffsetDateTime,
        ended_reason: Option<&str>,
        now: OffsetDateTime,
    ) -> State {
        match ended_reason {
            Some("revoked") => State::Revoked,
            Some(_) => State::Superseded,
            None if expires_at <= now => State::Expired,
            None if expires_at <= now + Duration::days(30) => State::Expiring,
            None => State::Live,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            State::Live => "En cours",
            State::Expiring => "Expire bientôt",
            State::Expired => "Expiré",
            State::Revoked => "Révoqué",
            State::Superseded => "Remplacé",
        }
    }

    /// DSFR badge modifier.
    pub fn badge(&self) -> &'static str {
        match self {
            State::Live => "fr-badge--success",
            State::Expiring => "fr-badge--warning",
            State::Expired => "fr-badge--info",
            State::Revoked => "fr-badge--error",
            State::Superseded => "fr-badge--info",
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, State::Live | State::Expiring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        categories::ALL.iter().map(|c| c.code.to_owned()).collect()
    }

    #[test]
    fn terms_follow_the_structure_and_the_four_durations() {
        let allowed = vec!["social".to_owned(), "logement".to_owned()];
        let (cats, d) = validate_terms(
            &["logement".into(), "social".into(), "social".into()],
            &allowed,
            Some(182),
        )
        .expect("valid");
        assert_eq!(cats.len(), 2);
        assert_eq!(d, 182);
        assert_eq!(
            validate_terms(&[], &allowed, Some(1)),
            Err(MandateError::NoCategory)
        );
        assert_eq!(
            validate_terms(&["argent".into()], &allowed, Some(1)),
            Err(MandateError::CategoryNotAllowed(
                "Argent - Impôts - Consommation".into()
            ))
        );
        for bad in [None, Some(0), Some(30), Some(366), Some(-1)] {
            assert_eq!(
                validate_terms(&["social".into()], &all(), bad),
                Err(MandateError::BadDuration)
            );
        }
        for (good, _) in DURATIONS {
            assert!(validate_terms(&["social".into()], &all(), Some(good)).is_ok());
        }
    }

    #[test]
    fn search_keys_ignore_case_accents_and_punctuation() {
        assert_eq!(search_key("Hélène  D'ÉTÉ-Lœw"), "helene d ete loew");
        assert_eq!(search_key("  DUBOIS "), "dubois");
    }

    #[test]
    fn states_follow_expiry_and_end() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        assert_eq!(State::of(now + Duration::days(40), None, now), State::Live);
        assert_eq!(
            State::of(now + Duration::days(10), None, now),
            State::Expiring
        );
        assert_eq!(State::of(now, None, now), State::Expired);
        assert_eq!(
            State::of(now + Duration::days(40), Some("revoked"), now),
            State::Revoked
        );
        assert_eq!(
            State::of(now + Duration::days(40), Some("superseded"), now),
            State::Superseded
        );
    }
}
