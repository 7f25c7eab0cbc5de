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
use uuid::Uuid;

use crate::tenancy::TenantTx;

/// Verifying an auditor's export without the database.
pub mod offline;

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
        _ => return None,
    })
}

/// One entry to append. `details` holds ids, codes and counts — never names or contacts.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: Event,
    pub structure: Option<Uuid>,
    pub professional: Option<Uuid>,
    pub usager: Option<Uuid>,
    pub mandate: Option<Uuid>,
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
    pub fn structure(mut self, id: Uuid) -> Self {
        self.structure = Some(id);
        self
    }
    pub fn professional(mut self, id: Uuid) -> Self {
        self.professional = Some(id);
        self
    }
    pub fn usager(mut self, id: Uuid) -> Self {
        self.usager = Some(id);
        self
    }
    pub fn mandate(mut self, id: Uuid) -> Self {
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
    pub structure_id: Option<Uuid>,
    pub professional_id: Option<Uuid>,
    pub usager_id: Option<Uuid>,
    pub mandate_id: Option<Uuid>,
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
    structure: Option<Uuid>,
    professional: Option<Uuid>,
    usager: Option<Uuid>,
    mandate: Option<Uuid>,
    details: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(((at.unix_timestamp_nanos() / 1_000) as i64).to_be_bytes());
    let id = |u: Option<Uuid>| u.map(|u| *u.as_bytes());
    for part in [
        Some(kind.as_bytes()),
        id(structure).as_ref().map(|b| b.as_slice()),
        id(professional).as_ref().map(|b| b.as_slice()),
        id(usager).as_ref().map(|b| b.as_slice()),
        id(mandate).as_ref().map(|b| b.as_slice()),
        Some(details.as_bytes()),
    ] {
        match part {
            Some(bytes) => {
                h.update((bytes.len() as u32).to_be_bytes());
                h.update(bytes);
            }
            None => h.update(u32::MAX.to_be_bytes()),
        }
    }
    h.finalize().into()
}

/// Territories this process wrote entries to, with the time of the last write: its sealer
/// chains them shortly after (no database notification, whose global queue would serialise
/// every committing act). Entries another replica wrote and did not chain (it stopped) are
/// found by the periodic sweep of every territory.
static DIRTY: std::sync::LazyLock<(
    tokio::sync::Notify,
    std::sync::Mutex<
        std::collections::HashMap<crate::tenancy::DepartementCode, std::time::Instant>,
    >,
)> = std::sync::LazyLock::new(Default::default);

fn mark_dirty(departement: crate::tenancy::DepartementCode) {
    DIRTY
        .1
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(departement, std::time::Instant::now());
    DIRTY.0.notify_one();
}

/// Writes an entry inside the caller's territory transaction (it is chained by the sealer once
/// committed); returns its arrival id.
pub async fn append(tx: &mut TenantTx, entry: NewEntry) -> Result<i64, sqlx::Error> {
    let departement = tx.departement();
    let now = OffsetDateTime::now_utc();
    let at = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    let conn: &mut PgConnection = tx;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO journal (at, kind, structure_id, professional_id, usager_id, mandate_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(at)
    .bind(entry.kind.as_str())
    .bind(entry.structure)
    .bind(entry.professional)
    .bind(entry.usager)
    .bind(entry.mandate)
    .bind(entry.details.to_string())
    .fetch_one(&mut *conn)
    .await?;
    mark_dirty(departement);
    Ok(id)
}

/// Most entries chained in one sealing transaction.
pub const SEAL_BATCH: i32 = 5_000;

/// Chains the committed entries not yet chained, in arrival order, up to [`SEAL_BATCH`] per
/// call, through the schema's sealing function; returns how many were chained. One sealer at a
/// time per territory (the function takes an advisory lock).
pub async fn seal(tx: &mut TenantTx) -> Result<u64, sqlx::Error> {
    let conn: &mut PgConnection = tx;
    let sealed: i32 = sqlx::query_scalar("SELECT journal_seal($1)")
        .bind(SEAL_BATCH)
        .fetch_one(&mut *conn)
        .await?;
    Ok(sealed.max(0) as u64)
}

/// Seals a territory until nothing is left to chain.
pub async fn seal_all(tenant: &crate::tenancy::Territory) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = tenant.begin().await?;
        let n = seal(&mut tx).await?;
        tx.commit().await?;
        total += n;
        if n < SEAL_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Seals a territory until nothing is left to chain, from the platform pool (no connection of
/// the territory's own: the sweep visits every territory).
pub async fn seal_from_platform(
    tenancy: &crate::tenancy::Tenancy,
    departement: crate::tenancy::DepartementCode,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = tenancy.seal_journal(departement, SEAL_BATCH).await?;
        total += n;
        if n < SEAL_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// How long after its last write a territory is sealed again (an act's transaction usually
/// commits within it; a slower one is caught by the next write or by the sweep).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Background worker: chains the territories this process wrote to, within moments of their
/// acts committing, and sweeps every served territory every 30 seconds (entries of a replica
/// that stopped before chaining them).
pub async fn sealer(platform: crate::app::Platform, mut shutdown: crate::app::Shutdown) {
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(30));
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let everything = tokio::select! {
            _ = shutdown.requested() => return,
            _ = sweep.tick() => true,
            _ = DIRTY.0.notified() => false,
            _ = tick.tick() => false,
        };
        let started = std::time::Instant::now();
        let schemas: Vec<crate::tenancy::DepartementCode> = if everything {
            platform.tenancy.served()
        } else {
            DIRTY
                .1
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect()
        };
        for departement in schemas {
            match seal_from_platform(&platform.tenancy, departement).await {
                Ok(_) => {
                    // Settled: no write since well before this run began.
                    let mut dirty = DIRTY.1.lock().unwrap_or_else(|e| e.into_inner());
                    if dirty
                        .get(&departement)
                        .is_some_and(|last| started.duration_since(*last) > SETTLE)
                    {
                        dirty.remove(&departement);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, departement = departement.as_str(), "journal sealing failed")
                }
            }
        }
        // Let acts accumulate a little: fewer, larger sealing transactions under load.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The key sealing checkpoints (from `security.journal_signing_key`, 32 bytes base64).
#[derive(Clone)]
pub struct CheckpointKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl CheckpointKey {
    pub fn from_base64(secret: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(secret.trim())?;
        let signing = SigningKey::from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("clé de scellement du journal invalide"))?;
        Ok(CheckpointKey { signing })
    }

    pub fn public(&self) -> CheckpointPublicKey {
        CheckpointPublicKey(*self.signing.verifying_key())
    }

    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// An ECDSA P-256 signature of `message` (64 bytes, r ‖ s).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing.sign(message);
        signature.to_bytes().to_vec()
    }
}

/// What an auditor holds to check checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointPublicKey(VerifyingKey);

impl CheckpointPublicKey {
    /// SEC1 uncompressed point, hex (as exported for auditors).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_sec1_bytes())
    }

    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(s.trim())?;
        Ok(CheckpointPublicKey(
            VerifyingKey::from_sec1_bytes(&bytes)
                .map_err(|_| anyhow::anyhow!("clé publique invalide"))?,
        ))
    }

    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.to_sec1_bytes())[..8])
    }
}

pub(crate) fn checkpoint_message(
    schema: &str,
    seq: i64,
    hash: &[u8],
    at: OffsetDateTime,
) -> Vec<u8> {
    format!(
        "aidants-connect journal checkpoint\n{schema}\n{seq}\n{}\n{}",
        hex::encode(hash),
        at.unix_timestamp_nanos() / 1_000
    )
    .into_bytes()
}

/// An unchanged chain is signed again after this long, so that verification can demand a
/// recent checkpoint (`Anchor::max_age`, 24 hours by default) of a quiet territory too.
pub const RESIGN_AFTER: time::Duration = time::Duration::hours(6);

/// Signs a checkpoint on the chain's last entry (sequence 0 and a zero hash for an empty
/// chain) if the chain grew since the last checkpoint or that one is older than
/// [`RESIGN_AFTER`]. Returns the sequence number signed.
pub async fn checkpoint(
    tx: &mut TenantTx,
    key: &CheckpointKey,
) -> Result<Option<i64>, sqlx::Error> {
    let schema = tx.departement().schema_name();
    let conn: &mut PgConnection = tx;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('aidants-connect:journal:' || current_schema()))",
    )
    .execute(&mut *conn)
    .await?;
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, hash FROM journal WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let previous: Option<(i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT seq, at FROM journal_checkpoints ORDER BY seq DESC, at DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seq, hash, at)) = next_checkpoint(last, previous) else {
        return Ok(None);
    };
    let signature: Signature = key
        .signing
        .sign(&checkpoint_message(&schema, seq, &hash, at));
    sqlx::query(
        "INSERT INTO journal_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(&hash)
    .bind(at)
    .bind(key.key_id())
    .bind(signature.to_bytes().as_slice())
    .execute(&mut *conn)
    .await?;
    Ok(Some(seq))
}

/// What a new checkpoint should seal (sequence, hash, time), if one is due.
pub(crate) fn next_checkpoint(
    last: Option<(i64, Vec<u8>)>,
    previous: Option<(i64, OffsetDateTime)>,
) -> Option<(i64, Vec<u8>, OffsetDateTime)> {
    let (seq, hash) = last.unwrap_or((0, vec![0u8; 32]));
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    match previous {
        Some((sealed, at)) if sealed >= seq && now - at < RESIGN_AFTER => None,
        _ => Some((seq, hash, now)),
    }
}

/// A checkpoint the auditor kept: from an export (with its signature) or read out by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorPoint {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: OffsetDateTime,
    pub signature: Option<Vec<u8>>,
}

/// What verification trusts besides the database: the auditor's checkpoints, each of which
/// must still be in the journal, and the age past which the newest checkpoint is too old.
#[derive(Debug, Clone, Default)]
pub struct Anchor {
    pub points: Vec<AnchorPoint>,
    pub max_age: Option<time::Duration>,
}

impl Anchor {
    /// The checkpoints of an export (`tenant-admin journal export`) of the journal `name`
    /// (`dep_33`, or `security_journal`).
    pub fn from_export(text: &str, name: &str) -> anyhow::Result<Vec<AnchorPoint>> {
        let mut points = Vec::new();
        let mut header = None;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line).map_err(|_| {
                anyhow::anyhow!("ligne {} de l'export illisible (JSON attendu)", n + 1)
            })?;
            match v["type"].as_str() {
                Some("header") => header = v["schema"].as_str().map(str::to_owned),
                Some("checkpoint") => {
                    let bad =
                        || anyhow::anyhow!("point de scellement illisible à la ligne {}", n + 1);
                    let at = v["at"].as_str().ok_or_else(bad)?;
                    points.push(AnchorPoint {
                        seq: v["seq"].as_i64().ok_or_else(bad)?,
                        hash: hex::decode(v["hash"].as_str().ok_or_else(bad)?)
                            .map_err(|_| bad())?,
                        at: OffsetDateTime::parse(
                            at,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .map_err(|_| bad())?,
                        signature: Some(
                            hex::decode(v["signature"].as_str().ok_or_else(bad)?)
                                .map_err(|_| bad())?,
                        ),
                    });
                }
                _ => {}
            }
        }
        match header {
            Some(h) if h == name => {}
            Some(h) => anyhow::bail!("cet export est celui du journal {h}, pas de {name}"),
            None => anyhow::bail!(
                "export sans en-tête : est-ce bien un fichier de « journal export » ?"
            ),
        }
        anyhow::ensure!(
            !points.is_empty(),
            "l'export ne contient aucun point de scellement"
        );
        Ok(points)
    }
}

/// `2 j`, `24 h`, `90 min`, `30 s`.
fn age_text(d: time::Duration) -> String {
    let s = d.whole_seconds();
    match s {
        s if s % 86_400 == 0 && s > 86_400 => format!("{} j", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Checks the stored checkpoints against the chain (`hashes_at`: the hash of each entry a
/// checkpoint names), their signatures, the auditor's anchor and the newest one's age.
/// Returns the first problem: the entry it concerns, if one, and what is wrong.
pub(crate) fn check_checkpoints(
    name: &str,
    checkpoints: &[Checkpoint],
    hashes_at: &std::collections::HashMap<i64, Vec<u8>>,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
) -> (u64, Option<(Option<i64>, String)>) {
    let signed = |seq: i64, hash: &[u8], at: OffsetDateTime, signature: &[u8]| match public {
        Some(key) => Signature::from_slice(signature).is_ok_and(|sig| {
            key.0
                .verify(&checkpoint_message(name, seq, hash, at), &sig)
                .is_ok()
        }),
        None => true,
    };
    let mut checked = 0;
    for c in checkpoints {
        let problem = match hashes_at.get(&c.seq) {
            None if c.seq == 0 && c.hash == [0u8; 32] => None,
            None => Some(format!(
                "le point de scellement n° {} désigne une entrée absente (fin du journal supprimée)",
                c.seq
            )),
            Some(h) if h[..] != c.hash[..] => Some(format!(
                "le point de scellement n° {} ne correspond pas à l'entrée",
                c.seq
            )),
            Some(_) => (!signed(c.seq, &c.hash, c.at, &c.signature)).then(|| {
                format!(
                    "la signature du point de scellement n° {} est invalide",
                    c.seq
                )
            }),
        };
        if let Some(problem) = problem {
            return (checked, Some((Some(c.seq), problem)));
        }
        checked += 1;
    }
    for p in &anchor.points {
        if p.signature
            .as_deref()
            .is_some_and(|sig| !signed(p.seq, &p.hash, p.at, sig))
        {
            return (
                checked,
                Some((
                    None,
                    format!(
                        "le point de scellement n° {} de l'auditeur n'est pas signé par cette clé",
                        p.seq
                    ),
                )),
            );
        }
        let kept = checkpoints
            .iter()
            .any(|c| c.seq == p.seq && c.hash == p.hash && c.at == p.at);
        if !kept {
            return (
                checked,
                Some((
                    Some(p.seq),
                    format!(
                        "le point de scellement n° {} du {} remis à l'auditeur n'est plus dans le journal (points supprimés ou chaîne réécrite)",
                        p.seq,
                        crate::paris::date_time(p.at)
                    ),
                )),
            );
        }
    }
    if let Some(max_age) = anchor.max_age {
        let newest = checkpoints.iter().map(|c| c.at).max();
        let fresh = newest.is_some_and(|at| OffsetDateTime::now_utc() - at <= max_age);
        if !fresh {
            let age = age_text(max_age);
            return (
                checked,
                Some((
                    None,
                    match newest {
                        Some(at) => format!(
                            "aucun point de scellement depuis plus de {age} (le dernier date du {}) : le journal n'est plus scellé",
                            crate::paris::date_time(at)
                        ),
                        None => format!(
                            "aucun point de scellement : rien ne garantit ce journal (il en faut un de moins de {age})"
                        ),
                    },
                )),
            );
        }
    }
    (checked, None)
}

/// A stored checkpoint.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Checkpoint {
    pub seq: i64,
    #[serde(serialize_with = "hex_bytes")]
    pub hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub key_id: String,
    #[serde(serialize_with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose hash was recomputed and matched, before the first problem.
    pub checked: u64,
    pub checkpoints_checked: u64,
    /// The first entry (sequence number) where the chain breaks, if any.
    pub first_broken: Option<i64>,
    /// What is wrong, in French, if anything.
    pub problem: Option<String>,
    /// Committed entries not chained yet (the sealer chains them within moments).
    pub pending: u64,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.first_broken.is_none() && self.problem.is_none()
    }
}

/// Incremental chain check: feed entries in order.
#[derive(Debug)]
pub struct ChainCheck {
    prev: [u8; 32],
    expected: i64,
    checked: u64,
    broken: Option<(i64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: [0; 32],
            expected: 1,
            checked: 0,
            broken: None,
        }
    }
}

impl ChainCheck {
    /// Checks one entry; returns false once the chain is broken.
    pub fn push(&mut self, e: &Entry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if e.seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected, e.seq
            ))
        } else if e.prev_hash != self.prev {
            Some(format!(
                "l'entrée n° {} ne suit pas la précédente (chaînage rompu)",
                e.seq
            ))
        } else {
            let recomputed = entry_hash(
                &self.prev,
                e.seq,
                e.at,
                &e.kind,
                e.structure_id,
                e.professional_id,
                e.usager_id,
                e.mandate_id,
                &e.details,
            );
            (recomputed[..] != e.hash[..])
                .then(|| format!("le contenu de l'entrée n° {} a été modifié", e.seq))
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected.min(e.seq), p));
            return false;
        }
        self.prev.copy_from_slice(&e.hash);
        self.expected += 1;
        self.checked += 1;
        true
    }

    /// Checks a redacted entry: its number and its link to the previous one; its hash is taken
    /// as given (the checkpoints and the entries after it still vouch for it).
    pub fn push_redacted(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8]) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {seq} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected
            ))
        } else if prev_hash != self.prev || hash.len() != 32 {
            Some(format!(
                "l'entrée n° {seq} ne suit pas la précédente (chaînage rompu)"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected.min(seq), p));
            return false;
        }
        self.prev.copy_from_slice(hash);
        self.expected += 1;
        self.checked += 1;
        true
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }
}

/// Verifies the territory's whole chain, then every checkpoint: its signature with `public`,
/// and that it seals the entry it names (a checkpoint past the last entry means the tail was
/// cut); then that the auditor's checkpoints are all still there and the newest checkpoint is
/// recent enough (`anchor`).
pub async fn verify(
    tx: &mut TenantTx,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
) -> Result<Verification, sqlx::Error> {
    verify_reporting(tx, public, anchor, |_| {}).await
}

/// [`verify`], telling `progress` the number of entries checked every 10,000 (an auditor's
/// page shows it).
pub async fn verify_reporting(
    tx: &mut TenantTx,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
    mut progress: impl FnMut(u64),
) -> Result<Verification, sqlx::Error> {
    use futures::TryStreamExt;
    let schema = tx.departement().schema_name();
    let conn: &mut PgConnection = tx;
    let mut check = ChainCheck::default();
    let mut hashes_at: std::collections::HashMap<i64, Vec<u8>> = Default::default();
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM journal_checkpoints ORDER BY seq, at",
    )
    .fetch_all(&mut *conn)
    .await?;
    let wanted: std::collections::HashSet<i64> = checkpoints.iter().map(|c| c.seq).collect();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE seq IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    let pending = pending as u64;
    {
        let mut rows = sqlx::query_as::<_, Entry>(
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash
             FROM journal WHERE seq IS NOT NULL ORDER BY seq",
        )
        .fetch(&mut *conn);
        while let Some(e) = rows.try_next().await? {
            if !check.push(&e) {
                break;
            }
            if wanted.contains(&e.seq) {
                hashes_at.insert(e.seq, e.hash.clone());
            }
            if check.checked.is_multiple_of(10_000) {
                progress(check.checked);
            }
        }
    }
    progress(check.checked);
    if let Some((seq, problem)) = check.broken {
        return Ok(Verification {
            checked: check.checked,
            checkpoints_checked: 0,
            first_broken: Some(seq),
            problem: Some(problem),
            pending,
        });
    }
    let (checkpoints_checked, problem) =
        check_checkpoints(&schema, &checkpoints, &hashes_at, public, anchor);
    Ok(match problem {
        Some((seq, problem)) => Verification {
            checked: check.checked,
            checkpoints_checked,
            first_broken: seq.map(|s| s.min(check.expected)),
            problem: Some(problem),
            pending,
        },
        None => Verification {
            checked: check.checked,
            checkpoints_checked,
            first_broken: None,
            problem: None,
            pending,
        },
    })
}

/// Writes the auditor's export: one JSON object per line — a header (schema, public key), then
/// every entry, then every checkpoint — and journals the export itself.
pub async fn export(
    tx: &mut TenantTx,
    public: &CheckpointPublicKey,
    by: Option<Uuid>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    export_for(tx, public, by, None, out).await
}

/// [`export`] for an auditor who may read only some structures' entries (a commune tenant's
/// auditor): every other entry is written redacted — its number, previous hash and hash only,
/// `"redacted": true` — so that the chain still verifies from end to end (the links of the
/// redacted entries, the content of the others, every signed checkpoint) and nothing of
/// another tenant is read.
pub async fn export_for(
    tx: &mut TenantTx,
    public: &CheckpointPublicKey,
    by: Option<Uuid>,
    visible: Option<&std::collections::HashSet<Uuid>>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let schema = tx.departement().schema_name();
    let mut lines = 0;
    let mut redacted = 0u64;
    writeln!(
        out,
        "{}",
        json!({ "type": "header", "schema": schema, "checkpoint_public_key": public.to_hex(),
                "key_id": public.key_id(), "hash": "sha256, fields length-prefixed (see ARCHITECTURE.md)" })
    )?;
    {
        let conn: &mut PgConnection = tx;
        let mut rows = sqlx::query_as::<_, Entry>(
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash
             FROM journal WHERE seq IS NOT NULL ORDER BY seq",
        )
        .fetch(&mut *conn);
        while let Some(e) = rows.try_next().await? {
            let shown = visible.is_none_or(|v| e.structure_id.is_some_and(|s| v.contains(&s)));
            let v = if shown {
                let mut v = serde_json::to_value(&e)?;
                v["type"] = json!("entry");
                v
            } else {
                redacted += 1;
                json!({ "type": "entry", "seq": e.seq, "prev_hash": hex::encode(&e.prev_hash),
                        "hash": hex::encode(&e.hash), "redacted": true })
            };
            writeln!(out, "{v}")?;
            lines += 1;
        }
    }
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM journal_checkpoints ORDER BY seq, at",
    )
    .fetch_all(&mut **tx)
    .await?;
    for c in checkpoints {
        let mut v = serde_json::to_value(&c)?;
        v["type"] = json!("checkpoint");
        writeln!(out, "{v}")?;
    }
    let mut entry = NewEntry::new(Event::JournalExported)
        .details(json!({ "entries": lines, "redacted": redacted }));
    entry.professional = by;
    append(tx, entry).await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = vec![0u8; 32];
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        (1..=n)
            .map(|seq| {
                let details = format!("{{\"n\":{seq}}}");
                let hash = entry_hash(
                    &prev,
                    seq,
                    at,
                    "mandate_created",
                    None,
                    None,
                    None,
                    None,
                    &details,
                );
                let e = Entry {
                    seq,
                    at,
                    kind: "mandate_created".into(),
                    structure_id: None,
                    professional_id: None,
                    usager_id: None,
                    mandate_id: None,
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.to_vec(),
                };
                prev = hash.to_vec();
                e
            })
            .collect()
    }

    fn first_broken(entries: &[Entry]) -> Option<i64> {
        let mut c = ChainCheck::default();
        for e in entries {
            if !c.push(e) {
                return c.broken.map(|b| b.0);
            }
        }
        None
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_found() {
        let good = chain(10);
        assert_eq!(first_broken(&good), None);
        let mut edited = good.clone();
        edited[4].details = "{\"n\":99}".into();
        assert_eq!(first_broken(&edited), Some(5));
        let mut deleted = good.clone();
        deleted.remove(6);
        assert_eq!(first_broken(&deleted), Some(7));
        let mut reordered = good.clone();
        reordered.swap(2, 3);
        assert_eq!(first_broken(&reordered), Some(3));
        let mut inserted = good.clone();
        let mut extra = good[5].clone();
        extra.details = "{}".into();
        inserted.insert(5, extra);
        assert_eq!(first_broken(&inserted), Some(6));
    }

    #[test]
    fn a_checkpoint_signature_verifies_only_with_its_key_and_message() {
        let key = CheckpointKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
            .expect("key");
        let at = OffsetDateTime::UNIX_EPOCH;
        let sig: Signature = key
            .signing
            .sign(&checkpoint_message("dep_33", 4, &[7; 32], at));
        let public = CheckpointPublicKey::from_hex(&key.public().to_hex()).expect("hex");
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_33", 4, &[7; 32], at), &sig)
                .is_ok()
        );
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_33", 5, &[7; 32], at), &sig)
                .is_err()
        );
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_34", 4, &[7; 32], at), &sig)
                .is_err()
        );
    }
}
