//! The territory journal (one per département schema): every mandate-relevant act, append-only
//! at the database level, chained by SHA-256 hashes and sealed by periodic checkpoints signed
//! with ECDSA P-256. People are referenced by ids only (pseudonymous: erasing a usager deletes
//! their row, never a journal entry).
//!
//! Writing and chaining are two steps. An act inserts its entry in its own transaction (so the
//! act and its record commit or vanish together), without taking any lock. The sealer (a
//! worker of every process, one at a time per territory under an advisory lock) then
//! gives the committed entries their place in the chain — `seq` without gaps, `prev_hash`,
//! `hash` — many entries per transaction. Chaining is thus not bound by one commit per entry,
//! and a rolled-back act leaves nothing to chain. Those three columns are written only by the
//! schema's SECURITY DEFINER function `journal_seal` (migration `0009_journal_sealing`), owned
//! by the database's sealer role: the département role inserts entries without them and may
//! never change, delete or truncate anything.
//!
//! Verification trusts more than the database: the auditor's checkpoints (an earlier export,
//! or the last checkpoint read out) must still be there, and the newest checkpoint must be
//! recent (`Anchor`), so an owner who deletes the checkpoints and rewrites the chain is found.

use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use crate::tenancy::TenantTx;

/// Signed checkpoints and the auditor's anchor.
mod checkpoint;
/// The auditor's export.
mod export;
/// Verifying an auditor's export without the database.
pub mod offline;
/// Reading binary copies row by row.
mod rows;
/// Chaining committed entries.
mod seal;
/// Verifying the chain in the database.
mod verify;

pub use checkpoint::*;
pub use export::*;
pub use seal::*;
pub use verify::*;

/// What happened (stable words, used in exports and by auditors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    UsagerIdentified,
    UsagerIdentityUpdated,
    UsagerContactUpdated,
    MandateCreated,
    AuthorisationSuperseded,
    AuthorisationRevoked,
    MandateRevoked,
    AttestationProduced,
    MandateExpiryReminderQueued,
    MandateUsed,
    MandatesExported,
    JournalExported,
    DraftsPurged,
    RequestSubmitted,
    RequestReleased,
    RequestAmended,
    RequestChangesRequested,
    RequestMessage,
    RequestAccepted,
    RequestRefused,
    RequestWithdrawn,
    StructureCreated,
    HabilitationFilesCreated,
    ReferentAppointed,
    HabilitationWithdrawn,
    StructureDemarchesSet,
    StructureDeactivated,
    AidantActivated,
    AidantMoved,
    StructureDetailsUpdated,
    TerritoryExported,
    TerritoryAdminDelegated,
    AnomalyDetected,
    AnomalyAcknowledged,
    RemoteConsentSent,
    RemoteConsentResent,
    RemoteConsentCancelled,
    RemoteConsentRefused,
    MandateTransferredIn,
    MandateTransferredOut,
    RetentionArchived,
    RetentionPurged,
    UsagerErased,
    JudicialMeasureRecorded,
    JudicialMeasureUpdated,
    JudicialMeasuresImported,
    JudicialMeasureHandedOver,
    JudicialMeasureAlertQueued,
    JudicialDecisionAttached,
    TerritoryRestored,
    TerritoryMoved,
}

impl Event {
    pub fn as_str(&self) -> &'static str {
        match self {
            Event::UsagerIdentified => "usager_identified",
            Event::UsagerIdentityUpdated => "usager_identity_updated",
            Event::UsagerContactUpdated => "usager_contact_updated",
            Event::MandateCreated => "mandate_created",
            Event::AuthorisationSuperseded => "authorisation_superseded",
            Event::AuthorisationRevoked => "authorisation_revoked",
            Event::MandateRevoked => "mandate_revoked",
            Event::AttestationProduced => "attestation_produced",
            Event::MandateExpiryReminderQueued => "mandate_expiry_reminder_queued",
            Event::MandateUsed => "mandate_used",
            Event::MandatesExported => "mandates_exported",
            Event::JournalExported => "journal_exported",
            Event::DraftsPurged => "drafts_purged",
            Event::RequestSubmitted => "request_submitted",
            Event::RequestReleased => "request_released",
            Event::RequestAmended => "request_amended",
            Event::RequestChangesRequested => "request_changes_requested",
            Event::RequestMessage => "request_message",
            Event::RequestAccepted => "request_accepted",
            Event::RequestRefused => "request_refused",
            Event::RequestWithdrawn => "request_withdrawn",
            Event::StructureCreated => "structure_created",
            Event::HabilitationFilesCreated => "habilitation_files_created",
            Event::ReferentAppointed => "referent_appointed",
            Event::HabilitationWithdrawn => "habilitation_withdrawn",
            Event::StructureDemarchesSet => "structure_demarches_set",
            Event::StructureDeactivated => "structure_deactivated",
            Event::AidantActivated => "aidant_activated",
            Event::AidantMoved => "aidant_moved",
            Event::StructureDetailsUpdated => "structure_details_updated",
            Event::TerritoryExported => "territory_exported",
            Event::TerritoryAdminDelegated => "territory_admin_delegated",
            Event::AnomalyDetected => "anomaly_detected",
            Event::AnomalyAcknowledged => "anomaly_acknowledged",
            Event::RemoteConsentSent => "remote_consent_sent",
            Event::RemoteConsentResent => "remote_consent_resent",
            Event::RemoteConsentCancelled => "remote_consent_cancelled",
            Event::RemoteConsentRefused => "remote_consent_refused",
            Event::MandateTransferredIn => "mandate_transferred_in",
            Event::MandateTransferredOut => "mandate_transferred_out",
            Event::RetentionArchived => "retention_archived",
            Event::RetentionPurged => "retention_purged",
            Event::UsagerErased => "usager_erased",
            Event::JudicialMeasureRecorded => "judicial_measure_recorded",
            Event::JudicialMeasureUpdated => "judicial_measure_updated",
            Event::JudicialMeasuresImported => "judicial_measures_imported",
            Event::JudicialMeasureHandedOver => "judicial_measure_handed_over",
            Event::JudicialMeasureAlertQueued => "judicial_measure_alert_queued",
            Event::JudicialDecisionAttached => "judicial_decision_attached",
            Event::TerritoryRestored => "territory_restored",
            Event::TerritoryMoved => "territory_moved",
        }
    }
}

/// What a kind of entry means, in French, for the auditor's pages (`None`: an unknown kind,
/// shown by its code).
pub fn kind_label(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "usager_identified" => "Personne identifiée par FranceConnect",
        "usager_identity_updated" => "Identité d'une personne mise à jour",
        "usager_contact_updated" => "Coordonnées d'une personne modifiées",
        "mandate_created" => "Mandat créé",
        "authorisation_superseded" => "Démarche remplacée par un nouveau mandat",
        "authorisation_revoked" => "Démarche révoquée",
        "mandate_revoked" => "Mandat révoqué",
        "attestation_produced" => "Attestation produite",
        "mandate_expiry_reminder_queued" => "Rappel d'échéance envoyé",
        "mandate_used" => "Mandat utilisé pour une démarche",
        "mandates_exported" => "Mandats exportés",
        "journal_exported" => "Journal exporté",
        "drafts_purged" => "Brouillons purgés",
        "request_submitted" => "Demande d'habilitation déposée",
        "request_released" => "Demande libérée à l'ouverture de la vague",
        "request_amended" => "Demande modifiée",
        "request_changes_requested" => "Modifications demandées",
        "request_message" => "Message sur une demande",
        "request_accepted" => "Demande acceptée",
        "request_refused" => "Demande refusée",
        "request_withdrawn" => "Demande retirée",
        "structure_created" => "Structure créée",
        "habilitation_files_created" => "Dossiers d'habilitation ouverts",
        "referent_appointed" => "Référent désigné",
        "habilitation_withdrawn" => "Habilitation retirée",
        "structure_demarches_set" => "Démarches de la structure choisies",
        "structure_deactivated" => "Structure désactivée",
        "aidant_activated" => "Aidant habilité",
        "aidant_moved" => "Aidant déplacé vers une autre structure",
        "structure_details_updated" => "Informations de la structure modifiées",
        "territory_exported" => "Export de la collectivité",
        "territory_admin_delegated" => "Administration de la collectivité déléguée",
        "anomaly_detected" => "Alerte : activité inhabituelle",
        "anomaly_acknowledged" => "Alerte prise en compte",
        "remote_consent_sent" => "Lien de consentement à distance envoyé",
        "remote_consent_resent" => "Lien de consentement à distance renvoyé",
        "remote_consent_cancelled" => "Consentement à distance annulé par l'aidant",
        "remote_consent_refused" => "Consentement à distance refusé par la personne",
        "mandate_transferred_in" => "Mandat reçu par transfert d'une autre structure",
        "mandate_transferred_out" => "Mandat transféré à une autre structure",
        "retention_archived" => "Mandats archivés (durée de conservation)",
        "retention_purged" => "Mandats purgés (fin de la durée de conservation)",
        "usager_erased" => "Identité d'une personne effacée",
        "judicial_measure_recorded" => "Mesure de protection judiciaire enregistrée",
        "judicial_measure_updated" => "Mesure de protection judiciaire mise à jour",
        "judicial_measures_imported" => "Mesures de protection importées",
        "territory_restored" => "Territoire restauré depuis une sauvegarde",
        "territory_moved" => "Territoire déplacé vers un autre nœud de la base",
        "judicial_measure_handed_over" => "Mesure de protection confiée à un autre délégué",
        "judicial_measure_alert_queued" => "Alerte d'échéance d'une mesure de protection",
        "judicial_decision_attached" => "Décision de justice jointe à une mesure",
        _ => return None,
    })
}

/// One entry to append. `details` holds ids, codes and counts — never names or contacts.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: Event,
    pub structure: Option<StructureId>,
    pub professional: Option<ProfessionalId>,
    pub usager: Option<UsagerId>,
    pub mandate: Option<MandateId>,
    pub details: Value,
}

impl NewEntry {
    pub fn new(kind: Event) -> Self {
        NewEntry {
            kind,
            structure: None,
            professional: None,
            usager: None,
            mandate: None,
            details: json!({}),
        }
    }
    pub fn structure(mut self, id: StructureId) -> Self {
        self.structure = Some(id);
        self
    }
    pub fn professional(mut self, id: ProfessionalId) -> Self {
        self.professional = Some(id);
        self
    }
    pub fn usager(mut self, id: UsagerId) -> Self {
        self.usager = Some(id);
        self
    }
    pub fn mandate(mut self, id: MandateId) -> Self {
        self.mandate = Some(id);
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored entry, as verification and exports read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Entry {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    pub structure_id: Option<StructureId>,
    pub professional_id: Option<ProfessionalId>,
    pub usager_id: Option<UsagerId>,
    pub mandate_id: Option<MandateId>,
    pub details: String,
    #[serde(serialize_with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(serialize_with = "hex_bytes")]
    pub hash: Vec<u8>,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// The hash of an entry: the previous hash, then every field length-prefixed, so no two
/// different entries encode the same way.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev: &[u8],
    seq: i64,
    at: OffsetDateTime,
    kind: &str,
    structure: Option<StructureId>,
    professional: Option<ProfessionalId>,
    usager: Option<UsagerId>,
    mandate: Option<MandateId>,
    details: &str,
) -> [u8; 32] {
    let ids = [
        structure.map(|s| s.as_uuid().into_bytes()),
        professional.map(|p| p.as_uuid().into_bytes()),
        usager.map(|u| u.as_uuid().into_bytes()),
        mandate.map(|m| m.as_uuid().into_bytes()),
    ];
    EntryFields {
        seq,
        at_micros: unix_micros(at),
        kind: kind.as_bytes(),
        ids: ids.each_ref().map(|id| id.as_ref().map(|b| &b[..])),
        details: details.as_bytes(),
    }
    .hash(prev, &mut Vec::new())
}

/// Microseconds since the Unix epoch (rounded toward zero): an entry's time as its hash covers
/// it. Without 128-bit division for any time after 1970, the only times a journal holds.
fn unix_micros(at: OffsetDateTime) -> i64 {
    let seconds = at.unix_timestamp();
    if seconds >= 0 {
        seconds * 1_000_000 + i64::from(at.nanosecond() / 1_000)
    } else {
        (at.unix_timestamp_nanos() / 1_000) as i64
    }
}

/// What an entry's hash covers, borrowed: from a stored [`Entry`], or straight from the rows
/// the database sends (verification reads them without decoding them into an `Entry`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryFields<'a> {
    pub seq: i64,
    pub at_micros: i64,
    pub kind: &'a [u8],
    /// Structure, professional, usager, mandate: a UUID's 16 bytes each.
    pub ids: [Option<&'a [u8]>; 4],
    pub details: &'a [u8],
}

impl EntryFields<'_> {
    /// The entry's hash after `prev`: the encoding is laid out in `buf` (reused from one entry
    /// to the next) and hashed at once.
    pub(crate) fn hash(&self, prev: &[u8], buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        buf.extend_from_slice(prev);
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.at_micros.to_be_bytes());
        let parts = [
            Some(self.kind),
            self.ids[0],
            self.ids[1],
            self.ids[2],
            self.ids[3],
            Some(self.details),
        ];
        for part in parts {
            match part {
                Some(bytes) => {
                    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    buf.extend_from_slice(bytes);
                }
                None => buf.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        Sha256::digest(&buf[..]).into()
    }
}

/// The instant an entry (or a checkpoint) is written at, to the microsecond PostgreSQL keeps:
/// a hash covering it can be recomputed from what is stored.
pub(crate) fn stamp() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// The statement writing one entry, its fields `$1` to `$7` (`append`, `append_with`).
#[doc(hidden)]
#[macro_export]
macro_rules! journal_insert {
    () => {
        concat!(
            $crate::journal_columns!(),
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        )
    };
}

/// The insert of an entry's seven fields, up to its values (`journal_insert!`,
/// `journal_with_claim!`).
#[doc(hidden)]
#[macro_export]
macro_rules! journal_columns {
    () => {
        "INSERT INTO journal (at, kind, structure_id, professional_id, usager_id, mandate_id, details)"
    };
}

/// The statement of [`append_with`]: the caller's data-modifying common table expressions
/// `$ctes` (named, comma-separated, their parameters numbered from `$8`), the entry's insert as
/// one more, then the caller's `$select` over them. Every one of them runs, whatever the
/// select reads.
#[macro_export]
macro_rules! journal_with {
    ($ctes:expr, $select:expr) => {
        concat!(
            "WITH ",
            $ctes,
            ", entry AS (",
            $crate::journal_insert!(),
            ") ",
            $select
        )
    };
}

/// [`journal_with!`] whose entry is written once per row of the caller's common table
/// expression `$claim` (at most one): an act recorded only if its own write happened, in the
/// same statement — the identity provider's redemption, journaled only if its update claimed
/// the code.
#[macro_export]
macro_rules! journal_with_claim {
    ($ctes:expr, $claim:literal, $select:expr) => {
        concat!(
            "WITH ",
            $ctes,
            ", entry AS (",
            $crate::journal_columns!(),
            " SELECT $1, $2, $3, $4, $5, $6, $7 FROM ",
            $claim,
            " RETURNING id) ",
            $select
        )
    };
}

/// The query of [`RowsQuery`] for [`append_with`].
pub type RowsQuery<'q, R> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

/// Binds an entry's seven fields, `$1` to `$7` of [`journal_insert!`], to a query.
macro_rules! bind_entry {
    ($query:expr, $entry:expr) => {
        $query
            .bind(stamp())
            .bind($entry.kind.as_str())
            .bind($entry.structure)
            .bind($entry.professional)
            .bind($entry.usager)
            .bind($entry.mandate)
            .bind($entry.details.to_string())
    };
}

/// Writes an entry inside the caller's territory transaction (it is chained by the sealer once
/// committed); returns its arrival id.
pub async fn append(tx: &mut TenantTx, entry: NewEntry) -> Result<i64, sqlx::Error> {
    let departement = tx.departement();
    let conn: &mut PgConnection = tx;
    let id: i64 = bind_entry!(sqlx::query_scalar(journal_insert!()), entry)
        .fetch_one(&mut *conn)
        .await?;
    mark_dirty(departement);
    Ok(id)
}

/// Writes an entry as [`append`] does, in the same statement as the caller's own writes, built
/// with [`journal_with!`]; `bind` binds their parameters (`$8` onwards). Returns the rows of the
/// caller's select (a creation's superseded authorisations). One exchange with the database
/// instead of several: a mandate's creation with its authorisations, the identity provider's
/// redemption with its receipt.
pub async fn append_with<'q, R>(
    tx: &mut impl crate::tenancy::TenantWrites,
    entry: NewEntry,
    sql: &'static str,
    bind: impl FnOnce(RowsQuery<'q, R>) -> RowsQuery<'q, R>,
) -> Result<Vec<R>, sqlx::Error>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let departement = tx.departement();
    let conn: &mut PgConnection = tx;
    let rows = bind(bind_entry!(sqlx::query_as(sql), entry))
        .fetch_all(&mut *conn)
        .await?;
    mark_dirty(departement);
    Ok(rows)
}

/// Writes several entries in one statement inside the caller's territory transaction, in the
/// order given, all stamped with the same instant: a batch job's entries cost one exchange
/// with the database instead of one each (on Citus, one trip through the coordinator).
/// Returns how many were written.
pub async fn append_all(tx: &mut TenantTx, entries: &[NewEntry]) -> Result<u64, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let departement = tx.departement();
    let at = stamp();
    let uuids = |pick: fn(&NewEntry) -> Option<uuid::Uuid>| -> Vec<Option<uuid::Uuid>> {
        entries.iter().map(pick).collect()
    };
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let details: Vec<String> = entries.iter().map(|e| e.details.to_string()).collect();
    let conn: &mut PgConnection = tx;
    let written = sqlx::query(
        "INSERT INTO journal (at, kind, structure_id, professional_id, usager_id, mandate_id, details)
         SELECT $1, e.kind, e.structure_id, e.professional_id, e.usager_id, e.mandate_id, e.details
         FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[])
              WITH ORDINALITY
              AS e (kind, structure_id, professional_id, usager_id, mandate_id, details, n)
         ORDER BY e.n",
    )
    .bind(at)
    .bind(kinds)
    .bind(uuids(|e| e.structure.map(|id| id.as_uuid())))
    .bind(uuids(|e| e.professional.map(|id| id.as_uuid())))
    .bind(uuids(|e| e.usager.map(|id| id.as_uuid())))
    .bind(uuids(|e| e.mandate.map(|id| id.as_uuid())))
    .bind(details)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    mark_dirty(departement);
    Ok(written)
}
