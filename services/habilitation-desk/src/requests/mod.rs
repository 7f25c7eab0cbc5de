//! Structures' habilitation requests (product.md §4.1–4.2), kept in the territory of the
//! structure's commune (`structure_requests` and its tables), with `platform.request_index`
//! saying where each one lives.
//!
//! Life of a request: draft → submitted (or waiting, while its territory's rollout wave is not
//! open; released into review when it opens) → changes requested ↔ amended → accepted |
//! refused; the issuer may withdraw it until it is decided. Every transition happens in one
//! territory transaction that also journals it and queues its notification (outbox), so an act
//! and its traces commit together. Acceptance creates the structure and the habilitation files
//! there; the référent's account (platform schema) follows (`acceptance`).

pub mod acceptance;
pub mod digest;
pub mod form;
/// Abandoned drafts, purged after their retention.
pub mod purge;
pub mod siret;

pub use digest::{DIGEST_HOUR, DIGEST_MAX_LINES, Digest, send_weekly_digest, weekly_digest};
pub use form::message_body;

use foundation::app::Platform;
use foundation::ids::{ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::communes::{self, Commune};
use foundation::tenancy::{CommuneCode, DepartementCode, TenancyError, TenantTx, Territory};
use rand::Rng;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use form::{AidantStep, COMMITMENTS, FieldErrors, MAX_AIDANTS, ReferentStep, StructureStep};
pub use purge::{DRAFT_RETENTION_DAYS, draft_purge, purge_abandoned_drafts};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    Waiting,
    Submitted,
    ChangesRequested,
    Amended,
    Accepted,
    Refused,
    Withdrawn,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Draft,
        Status::Waiting,
        Status::Submitted,
        Status::ChangesRequested,
        Status::Amended,
        Status::Accepted,
        Status::Refused,
        Status::Withdrawn,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Waiting => "waiting",
            Status::Submitted => "submitted",
            Status::ChangesRequested => "changes_requested",
            Status::Amended => "amended",
            Status::Accepted => "accepted",
            Status::Refused => "refused",
            Status::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// What the issuer and the reviewers read.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Draft => "Brouillon",
            Status::Waiting => "En attente de l'ouverture du territoire",
            Status::Submitted => "Déposée, en cours d'examen",
            Status::ChangesRequested => "Modifications demandées",
            Status::Amended => "Modifiée, en cours d'examen",
            Status::Accepted => "Acceptée",
            Status::Refused => "Refusée",
            Status::Withdrawn => "Retirée",
        }
    }

    /// The DSFR badge colour of the state.
    pub fn badge(&self) -> &'static str {
        match self {
            Status::Draft | Status::Withdrawn => "fr-badge--info",
            Status::Waiting | Status::ChangesRequested => "fr-badge--warning",
            Status::Submitted | Status::Amended => "fr-badge--new",
            Status::Accepted => "fr-badge--success",
            Status::Refused => "fr-badge--error",
        }
    }

    /// The issuer may change the content.
    pub fn editable(&self) -> bool {
        matches!(self, Status::Draft | Status::ChangesRequested)
    }

    /// A reviewer may decide or ask for changes.
    pub fn reviewable(&self) -> bool {
        matches!(self, Status::Submitted | Status::Amended)
    }

    /// Still open: neither decided nor withdrawn.
    pub fn open(&self) -> bool {
        !matches!(self, Status::Accepted | Status::Refused | Status::Withdrawn)
    }
}

/// `HAB-<département>-<8 characters>`: the département says which schema holds the request.
pub fn new_reference(departement: DepartementCode) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let tail: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("HAB-{}-{tail}", departement.as_str())
}

/// The département a reference names, if it is one of ours.
pub fn departement_of(reference: &str) -> Option<DepartementCode> {
    let mut parts = reference.split('-');
    if parts.next()? != "HAB" {
        return None;
    }
    let code = parts.next()?;
    let tail = parts.next()?;
    if parts.next().is_some() || tail.len() != 8 || !tail.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    DepartementCode::parse(code).ok()
}

/// A request as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Request {
    pub id: Uuid,
    pub reference: String,
    pub structure_name: String,
    pub structure_kind: String,
    pub siret: String,
    pub commune_code: String,
    pub issuer_email: String,
    pub issuer_id: Option<Uuid>,
    pub status: String,
    pub address: String,
    pub postal_code: Option<String>,
    pub france_services: bool,
    pub france_services_number: Option<String>,
    pub mission: String,
    pub opening_hours: String,
    pub referent_first_name: Option<String>,
    pub referent_last_name: Option<String>,
    pub referent_email: Option<String>,
    pub referent_phone: Option<String>,
    pub referent_is_aidant: Option<bool>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub first_submitted_at: Option<OffsetDateTime>,
    pub submitted_at: Option<OffsetDateTime>,
    pub released_at: Option<OffsetDateTime>,
    pub decided_at: Option<OffsetDateTime>,
    pub refusal_reason: Option<String>,
    pub withdrawn_at: Option<OffsetDateTime>,
    pub structure_id: Option<StructureId>,
}

/// A read of structure requests, as one static string: their columns, then `$tail`.
macro_rules! requests_sql {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            "id, reference, structure_name, structure_kind, siret, commune_code, issuer_email,
    issuer_id, status, address, postal_code, france_services, france_services_number, mission,
    opening_hours, referent_first_name, referent_last_name, referent_email, referent_phone,
    referent_is_aidant, created_at, updated_at, first_submitted_at, submitted_at, released_at,
    decided_at, refusal_reason, withdrawn_at, structure_id",
            " FROM structure_requests ",
            $tail
        )
    };
}

impl Request {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Draft)
    }

    pub fn departement(&self) -> Option<DepartementCode> {
        departement_of(&self.reference)
    }

    pub fn has_referent(&self) -> bool {
        self.referent_email.is_some()
    }
}

/// One aidant listed by a request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedAidant {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub profession: String,
    pub employment: String,
    pub employer: String,
}

/// One message of the thread.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Message {
    pub author: String,
    pub professional_id: Option<ProfessionalId>,
    pub body: String,
    pub created_at: OffsetDateTime,
}

/// A request with everything it lists.
#[derive(Debug, Clone)]
pub struct Dossier {
    pub request: Request,
    pub aidants: Vec<ListedAidant>,
    /// Codes of the commitments accepted in their current version.
    pub commitments: Vec<String>,
    pub messages: Vec<Message>,
    pub commune: Option<Commune>,
}

impl Dossier {
    /// What is missing before submission, in French.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.request.has_referent() {
            missing.push("le référent de la structure (étape 2)");
        }
        if self.aidants.is_empty() && self.request.referent_is_aidant != Some(true) {
            missing.push("au moins un aidant à habiliter (étape 3)");
        }
        if COMMITMENTS
            .iter()
            .any(|c| !self.commitments.iter().any(|a| a == c.code))
        {
            missing.push("l'acceptation de chaque engagement, dans sa version actuelle (étape 4)");
        }
        missing
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("demande introuvable")]
    NotFound,
    #[error("cette demande ne peut plus être modifiée")]
    NotEditable(Status),
    #[error("cette demande n'est pas à instruire")]
    NotReviewable(Status),
    #[error("cette demande ne peut plus être retirée")]
    NotWithdrawable(Status),
    #[error("la demande est incomplète")]
    Incomplete(Vec<&'static str>),
    #[error("une demande est déjà ouverte pour ce SIRET")]
    SiretOpen(String),
    #[error("des champs sont à corriger")]
    Fields(FieldErrors),
    #[error("aucune collectivité n'est inscrite pour ce territoire")]
    NoTenant,
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl RequestError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::default();
        e.add(field, message);
        RequestError::Fields(e)
    }
}

/// The issuer acting (their verified address).
#[derive(Debug, Clone)]
pub struct IssuerRef {
    pub id: Uuid,
    pub email: String,
}

/// Who acts on a request, as the journal records it.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Issuer(Uuid),
    Reviewer(ProfessionalId),
}

fn entry(kind: Event, request: &Request, actor: Actor) -> NewEntry {
    let mut e = NewEntry::new(kind);
    let mut details = json!({ "request": request.id, "reference": request.reference });
    match actor {
        Actor::Issuer(id) => details["issuer"] = json!(id),
        Actor::Reviewer(id) => e = e.professional(id),
    }
    if let Some(s) = request.structure_id {
        e = e.structure(s);
    }
    e.details(details)
}

pub(crate) fn public_url(platform: &Platform) -> String {
    platform
        .settings
        .http
        .public_url
        .trim_end_matches('/')
        .to_owned()
}

/// The issuer's page of a request.
pub fn issuer_url(platform: &Platform, reference: &str) -> String {
    format!("{}/demande/demandes/{reference}", public_url(platform))
}

/// The reviewers' page of a request.
pub fn review_url(platform: &Platform, reference: &str) -> String {
    format!("{}/instruction/demandes/{reference}", public_url(platform))
}

async fn mail(
    tx: &mut TenantTx,
    to: &str,
    template: &'static str,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    outbox::enqueue_tenant(
        tx,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: to.to_owned(),
            template,
            payload,
        },
    )
    .await?;
    Ok(())
}

/// Reads a request (locked for the transaction when `lock`).
pub async fn load(
    tx: &mut TenantTx,
    reference: &str,
    lock: bool,
) -> Result<Option<Request>, sqlx::Error> {
    let sql = if lock {
        requests_sql!("WHERE reference = $1 FOR UPDATE")
    } else {
        requests_sql!("WHERE reference = $1")
    };
    sqlx::query_as::<_, Request>(sql)
        .bind(reference)
        .fetch_optional(&mut **tx)
        .await
}

/// Reads a request with its aidants, commitments and thread.
pub async fn dossier(
    platform: &Platform,
    tx: &mut TenantTx,
    request: Request,
) -> Result<Dossier, RequestError> {
    let aidants = sqlx::query_as::<_, ListedAidant>(
        "SELECT id, first_name, last_name, email, profession, employment, employer
         FROM request_aidants WHERE request_id = $1 ORDER BY created_at, id",
    )
    .bind(request.id)
    .fetch_all(&mut **tx)
    .await?;
    let accepted: Vec<(String, String)> =
        sqlx::query_as("SELECT code, text_version FROM request_commitments WHERE request_id = $1")
            .bind(request.id)
            .fetch_all(&mut **tx)
            .await?;
    let commitments = COMMITMENTS
        .iter()
        .filter(|c| {
            accepted
                .iter()
                .any(|(code, v)| code == c.code && v == c.version)
        })
        .map(|c| c.code.to_owned())
        .collect();
    let messages = sqlx::query_as::<_, Message>(
        "SELECT author, professional_id, body, created_at FROM request_messages
         WHERE request_id = $1 ORDER BY created_at, id",
    )
    .bind(request.id)
    .fetch_all(&mut **tx)
    .await?;
    let commune = match CommuneCode::parse(&request.commune_code) {
        Ok(code) => communes::find(platform.platform_pool(), &code).await?,
        Err(_) => None,
    };
    Ok(Dossier {
        request,
        aidants,
        commitments,
        messages,
        commune,
    })
}

/// The commune of the step, from the reference data, with its postal code checked.
pub async fn check_commune(
    platform: &Platform,
    step: &StructureStep,
) -> Result<Commune, RequestError> {
    let code = CommuneCode::parse(&step.commune_code)
        .map_err(|_| RequestError::field("commune_code", "Ce code INSEE n'est pas valide."))?;
    let commune = communes::find(platform.platform_pool(), &code).await?.ok_or_else(|| {
        RequestError::field(
            "commune_code",
            format!(
                "Aucune commune ne porte le code INSEE {} dans le référentiel, ou son département n'est pas encore ouvert sur la plateforme. Vérifiez le code sur le site de l'INSEE.",
                code.as_str()
            ),
        )
    })?;
    if !commune.postal_codes.is_empty() && !commune.postal_codes.contains(&step.postal_code) {
        return Err(RequestError::field(
            "postal_code",
            format!(
                "Le code postal {} ne correspond pas à la commune {} ({}) : codes possibles {}.",
                step.postal_code,
                commune.name,
                commune.code,
                commune.postal_codes.join(", ")
            ),
        ));
    }
    Ok(commune)
}

/// Requests an issuer may start in a day, and messages they may write in an hour: enough for a
/// person, a brake on a script.
pub const DRAFTS_PER_DAY: i32 = 20;
pub const MESSAGES_PER_HOUR: i32 = 30;

/// Counts one act of the issuer against a limit; false when over it.
async fn within_limit(
    platform: &Platform,
    scope: &str,
    issuer: Uuid,
    limit: i32,
    window_seconds: i64,
) -> Result<bool, sqlx::Error> {
    let mut conn = platform.platform_pool().acquire().await?;
    let hit = foundation::auth::ratelimit::hit(
        &mut conn,
        scope,
        &issuer.to_string(),
        limit,
        window_seconds,
    )
    .await?;
    Ok(hit.allowed())
}

/// Refuses a SIRET that already has an open request (other than `except`) or a structure.
async fn check_siret(
    tx: &mut TenantTx,
    siret: &str,
    except: Option<Uuid>,
) -> Result<(), RequestError> {
    let open: Option<String> = sqlx::query_scalar(
        "SELECT reference FROM structure_requests
         WHERE siret = $1 AND status NOT IN ('accepted', 'refused', 'withdrawn') AND id IS DISTINCT FROM $2",
    )
    .bind(siret)
    .bind(except)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(reference) = open {
        return Err(RequestError::SiretOpen(reference));
    }
    let habilitated: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM structures WHERE siret = $1 AND active)")
            .bind(siret)
            .fetch_one(&mut **tx)
            .await?;
    if habilitated {
        return Err(RequestError::field(
            "siret",
            "Une structure habilitée porte déjà ce SIRET : son référent peut ajouter des aidants depuis son espace, sans nouvelle demande.",
        ));
    }
    Ok(())
}

fn siret_conflict(e: sqlx::Error, siret_reference: impl FnOnce() -> String) -> RequestError {
    match &e {
        sqlx::Error::Database(d)
            if d.is_unique_violation()
                && d.constraint() == Some("structure_requests_open_siret") =>
        {
            RequestError::SiretOpen(siret_reference())
        }
        _ => RequestError::Database(e),
    }
}

/// Starts a request with its first step: where it lives follows from the commune.
pub async fn create_draft(
    platform: &Platform,
    issuer: &IssuerRef,
    step: &StructureStep,
) -> Result<String, RequestError> {
    let commune = check_commune(platform, step).await?;
    let departement = DepartementCode::parse(&commune.departement_code)
        .map_err(|_| RequestError::field("commune_code", "Département inconnu."))?;
    if !within_limit(platform, "issuer-drafts", issuer.id, DRAFTS_PER_DAY, 86_400).await? {
        return Err(RequestError::field(
            "name",
            format!(
                "Vous avez commencé {DRAFTS_PER_DAY} demandes aujourd'hui : c'est le maximum. Reprenez un brouillon existant depuis « Mes demandes », ou réessayez demain."
            ),
        ));
    }
    let tenant = platform.tenancy.unguarded(departement).await?;
    let id = Uuid::now_v7();
    let reference = new_reference(departement);
    // Checked before anything is written; the unique index settles a race.
    {
        let mut tx = tenant.begin().await?;
        check_siret(&mut tx, &step.siret, None).await?;
        tx.rollback().await?;
    }
    sqlx::query(
        "INSERT INTO platform.request_index (request_id, reference, departement_code, issuer_id)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(&reference)
    .bind(departement.as_str())
    .bind(issuer.id)
    .execute(platform.platform_pool())
    .await?;
    let mut tx = tenant.begin().await?;
    sqlx::query(
        "INSERT INTO structure_requests (id, reference, structure_name, structure_kind, siret,
             commune_code, issuer_email, issuer_id, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft')",
    )
    .bind(id)
    .bind(&reference)
    .bind(&step.name)
    .bind(&step.kind)
    .bind(&step.siret)
    .bind(&step.commune_code)
    .bind(&issuer.email)
    .bind(issuer.id)
    .execute(&mut *tx)
    .await
    .map_err(|e| siret_conflict(e, String::new))?;
    set_structure(&mut tx, id, step).await?;
    tx.commit().await?;
    Ok(reference)
}

/// Writes step 1 into the request (a draft being created, or an editable one).
async fn set_structure(
    tx: &mut TenantTx,
    id: Uuid,
    step: &StructureStep,
) -> Result<(), RequestError> {
    sqlx::query(
        "UPDATE structure_requests SET structure_name = $2, structure_kind = $3, siret = $4,
             commune_code = $5, address = $6, postal_code = $7, france_services = $8,
             france_services_number = $9, mission = $10, opening_hours = $11, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&step.name)
    .bind(&step.kind)
    .bind(&step.siret)
    .bind(&step.commune_code)
    .bind(&step.address)
    .bind(&step.postal_code)
    .bind(step.france_services)
    .bind(&step.france_services_number)
    .bind(&step.mission)
    .bind(&step.opening_hours)
    .execute(&mut **tx)
    .await
    .map_err(|e| siret_conflict(e, String::new))?;
    Ok(())
}

/// The issuer's request, locked, and still editable.
async fn editable(
    tx: &mut TenantTx,
    issuer: &IssuerRef,
    reference: &str,
) -> Result<Request, RequestError> {
    let request = load(tx, reference, true)
        .await?
        .filter(|r| r.issuer_id == Some(issuer.id))
        .ok_or(RequestError::NotFound)?;
    if !request.status().editable() {
        return Err(RequestError::NotEditable(request.status()));
    }
    Ok(request)
}

/// Saves step 1 again (the département cannot change: the request lives there).
pub async fn update_structure(
    platform: &Platform,
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    step: &StructureStep,
) -> Result<(), RequestError> {
    let commune = check_commune(platform, step).await?;
    if commune.departement_code != tenant.departement().as_str() {
        return Err(RequestError::field(
            "commune_code",
            format!(
                "Cette demande concerne le département {} ({}) : la commune doit s'y trouver. Pour une structure d'un autre département, retirez cette demande et commencez-en une nouvelle.",
                tenant.departement().name(),
                tenant.departement().as_str()
            ),
        ));
    }
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    check_siret(&mut tx, &step.siret, Some(request.id)).await?;
    set_structure(&mut tx, request.id, step).await?;
    tx.commit().await?;
    Ok(())
}

/// Saves step 2.
pub async fn save_referent(
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    step: &ReferentStep,
) -> Result<(), RequestError> {
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    sqlx::query(
        "UPDATE structure_requests SET referent_first_name = $2, referent_last_name = $3,
             referent_email = $4, referent_phone = $5, referent_is_aidant = $6, updated_at = now()
         WHERE id = $1",
    )
    .bind(request.id)
    .bind(&step.first_name)
    .bind(&step.last_name)
    .bind(&step.email)
    .bind(&step.phone)
    .bind(step.is_aidant)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Adds one aidant (step 3).
pub async fn add_aidant(
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    step: &AidantStep,
) -> Result<(), RequestError> {
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM request_aidants WHERE request_id = $1")
            .bind(request.id)
            .fetch_one(&mut *tx)
            .await?;
    if count as usize >= MAX_AIDANTS {
        return Err(RequestError::field(
            "email",
            format!(
                "Une demande liste {MAX_AIDANTS} aidants au plus ; déposez-la, le référent en ajoutera ensuite."
            ),
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO request_aidants (id, request_id, first_name, last_name, email, profession, employment, employer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id, email) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(request.id)
    .bind(&step.first_name)
    .bind(&step.last_name)
    .bind(&step.email)
    .bind(&step.profession)
    .bind(&step.employment)
    .bind(&step.employer)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(RequestError::field(
            "email",
            "Un aidant de cette demande a déjà cette adresse e-mail.",
        ));
    }
    sqlx::query("UPDATE structure_requests SET updated_at = now() WHERE id = $1")
        .bind(request.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes one aidant from the list (step 3).
pub async fn remove_aidant(
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    aidant: Uuid,
) -> Result<(), RequestError> {
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    let removed = sqlx::query("DELETE FROM request_aidants WHERE id = $1 AND request_id = $2")
        .bind(aidant)
        .bind(request.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(RequestError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Records the commitments accepted (step 4), each with its text version and the time; all of
/// them must be ticked.
pub async fn save_commitments(
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    ticked: &[String],
) -> Result<(), RequestError> {
    let mut errors = FieldErrors::default();
    for c in COMMITMENTS {
        if !ticked.iter().any(|t| t == c.code) {
            errors.add(c.code, "Cet engagement est nécessaire pour déposer la demande : cochez-le après l'avoir lu.");
        }
    }
    if !errors.is_empty() {
        return Err(RequestError::Fields(errors));
    }
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    for c in COMMITMENTS {
        sqlx::query(
            "INSERT INTO request_commitments (request_id, code, text_version, accepted_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (request_id, code) DO UPDATE SET text_version = EXCLUDED.text_version, accepted_at = EXCLUDED.accepted_at
             WHERE request_commitments.text_version <> EXCLUDED.text_version",
        )
        .bind(request.id)
        .bind(c.code)
        .bind(c.version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Submits a draft, or an amended request after changes were asked. A territory whose wave is
/// not open keeps it waiting. Returns the new state.
pub async fn submit(
    platform: &Platform,
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
) -> Result<Status, RequestError> {
    let open = crate::waves::is_open(platform.platform_pool(), tenant.departement()).await?;
    let mut tx = tenant.begin().await?;
    let request = editable(&mut tx, issuer, reference).await?;
    let previous = request.status();
    let dossier = dossier(platform, &mut tx, request).await?;
    let missing = dossier.missing();
    if !missing.is_empty() {
        return Err(RequestError::Incomplete(missing));
    }
    let request = dossier.request;
    let next = match (previous, open) {
        (Status::ChangesRequested, _) => Status::Amended,
        (_, true) => Status::Submitted,
        (_, false) => Status::Waiting,
    };
    let kind = if next == Status::Amended {
        Event::RequestAmended
    } else {
        Event::RequestSubmitted
    };
    let mut e = entry(kind, &request, Actor::Issuer(issuer.id));
    e.details["status"] = json!(next.as_str());
    journal::append(&mut tx, e).await?;
    let url = issuer_url(platform, &request.reference);
    match next {
        Status::Amended => {
            for to in reviewers_to_tell(platform, &mut tx, &request).await? {
                mail(
                    &mut tx,
                    &to,
                    "request_amended",
                    json!({
                        "reference": request.reference,
                        "structure": request.structure_name,
                        "url": review_url(platform, &request.reference),
                    }),
                )
                .await?;
            }
        }
        _ => {
            let next_step = if next == Status::Waiting {
                "Votre territoire n'est pas encore ouvert à Aidants Connect : votre demande attend l'ouverture de sa vague de déploiement. Nous vous écrirons dès qu'elle entrera en examen."
            } else {
                "L'équipe nationale (ou votre territoire, par délégation) va l'examiner. Vous serez prévenu par e-mail de chaque étape."
            };
            mail(
                &mut tx,
                &request.issuer_email,
                "request_received",
                json!({
                    "reference": request.reference,
                    "structure": request.structure_name,
                    "next": next_step,
                    "url": url,
                }),
            )
            .await?;
        }
    }
    // Last, with the database clock at the end of the work: the weekly digest counts on it.
    // Read apart and bound: Citus refuses a volatile function in an UPDATE of a distributed
    // table (docs/TENANCY.md).
    let at: OffsetDateTime = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE structure_requests SET status = $2, submitted_at = $3, updated_at = now(),
             first_submitted_at = COALESCE(first_submitted_at, $3)
         WHERE id = $1",
    )
    .bind(request.id)
    .bind(next.as_str())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// The issuer withdraws a request that is not decided.
pub async fn withdraw(
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
) -> Result<(), RequestError> {
    let mut tx = tenant.begin().await?;
    let request = load(&mut tx, reference, true)
        .await?
        .filter(|r| r.issuer_id == Some(issuer.id))
        .ok_or(RequestError::NotFound)?;
    if !request.status().open() {
        return Err(RequestError::NotWithdrawable(request.status()));
    }
    sqlx::query(
        "UPDATE structure_requests SET status = 'withdrawn', withdrawn_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(request.id)
    .execute(&mut *tx)
    .await?;
    journal::append(
        &mut tx,
        entry(Event::RequestWithdrawn, &request, Actor::Issuer(issuer.id)),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_message(
    tx: &mut TenantTx,
    request: &Request,
    actor: Actor,
    body: &str,
) -> Result<(), sqlx::Error> {
    let (author, professional) = match actor {
        Actor::Issuer(_) => ("issuer", None),
        Actor::Reviewer(id) => ("reviewer", Some(id)),
    };
    sqlx::query(
        "INSERT INTO request_messages (id, request_id, author, professional_id, body, created_at)
         VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
    )
    .bind(Uuid::now_v7())
    .bind(request.id)
    .bind(author)
    .bind(professional)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The issuer writes in the thread; the last reviewer who wrote is mailed.
pub async fn issuer_message(
    platform: &Platform,
    tenant: &Territory,
    issuer: &IssuerRef,
    reference: &str,
    typed: &str,
) -> Result<(), RequestError> {
    let body = message_body("message", typed)?;
    if !within_limit(
        platform,
        "issuer-messages",
        issuer.id,
        MESSAGES_PER_HOUR,
        3_600,
    )
    .await?
    {
        return Err(RequestError::field(
            "message",
            format!(
                "Vous avez envoyé {MESSAGES_PER_HOUR} messages en une heure : patientez avant d'en écrire un autre."
            ),
        ));
    }
    let mut tx = tenant.begin().await?;
    let request = load(&mut tx, reference, true)
        .await?
        .filter(|r| r.issuer_id == Some(issuer.id))
        .ok_or(RequestError::NotFound)?;
    if request.status() == Status::Draft || !request.status().open() {
        return Err(RequestError::NotEditable(request.status()));
    }
    insert_message(&mut tx, &request, Actor::Issuer(issuer.id), &body).await?;
    journal::append(
        &mut tx,
        entry(Event::RequestMessage, &request, Actor::Issuer(issuer.id)),
    )
    .await?;
    for to in reviewers_to_tell(platform, &mut tx, &request).await? {
        mail(
            &mut tx,
            &to,
            "request_message",
            json!({
                "reference": request.reference,
                "structure": request.structure_name,
                "from": "du demandeur",
                "message": body,
                "url": review_url(platform, &request.reference),
            }),
        )
        .await?;
    }
    sqlx::query("UPDATE structure_requests SET updated_at = now() WHERE id = $1")
        .bind(request.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Who hears of the issuer's message: the last reviewer who wrote in the thread; before any,
/// the reviewers of the territory (its delegated reviewers and the national admins).
async fn reviewers_to_tell(
    platform: &Platform,
    tx: &mut TenantTx,
    request: &Request,
) -> Result<Vec<String>, sqlx::Error> {
    let last_reviewer: Option<ProfessionalId> = sqlx::query_scalar(
        "SELECT professional_id FROM request_messages WHERE request_id = $1 AND author = 'reviewer'
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(request.id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query_scalar(
        "SELECT DISTINCT p.email FROM platform.professionals p
         JOIN platform.role_assignments a ON a.professional_id = p.id
         LEFT JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text
         WHERE p.active AND CASE WHEN $1::uuid IS NOT NULL THEN p.id = $1
               ELSE (a.role = 'national_admin' AND a.domain = 'national')
                    OR (a.role = 'reviewer' AND t.departement_code = $2) END
         ORDER BY 1",
    )
    .bind(last_reviewer)
    .bind(tx.departement().as_str())
    .fetch_all(platform.platform_pool())
    .await
}

/// What a reviewer does to a request under review.
#[derive(Debug, Clone)]
pub enum Review {
    /// A message in the thread, the state unchanged.
    Message(String),
    /// Changes asked, with what to change.
    AskChanges(String),
    /// Refused, with the reason.
    Refuse(String),
}

/// A reviewer's message, request for changes or refusal; each mailed to the issuer.
pub async fn review(
    platform: &Platform,
    tenant: &Territory,
    reviewer: ProfessionalId,
    reference: &str,
    action: Review,
) -> Result<Status, RequestError> {
    let mut tx = tenant.begin().await?;
    let request = load(&mut tx, reference, true)
        .await?
        .filter(|r| r.status() != Status::Draft)
        .ok_or(RequestError::NotFound)?;
    let status = request.status();
    let url = issuer_url(platform, &request.reference);
    let base =
        json!({ "reference": request.reference, "structure": request.structure_name, "url": url });
    let next = match &action {
        Review::Message(typed) => {
            let body = message_body("message", typed)?;
            if !status.open() {
                return Err(RequestError::NotReviewable(status));
            }
            insert_message(&mut tx, &request, Actor::Reviewer(reviewer), &body).await?;
            journal::append(
                &mut tx,
                entry(Event::RequestMessage, &request, Actor::Reviewer(reviewer)),
            )
            .await?;
            let mut p = base.clone();
            p["from"] = json!("de l'équipe d'instruction");
            p["message"] = json!(body);
            mail(&mut tx, &request.issuer_email, "request_message", p).await?;
            status
        }
        Review::AskChanges(typed) => {
            let body = message_body("changes", typed)?;
            if !status.reviewable() {
                return Err(RequestError::NotReviewable(status));
            }
            insert_message(&mut tx, &request, Actor::Reviewer(reviewer), &body).await?;
            journal::append(
                &mut tx,
                entry(
                    Event::RequestChangesRequested,
                    &request,
                    Actor::Reviewer(reviewer),
                ),
            )
            .await?;
            let mut p = base.clone();
            p["message"] = json!(body);
            mail(
                &mut tx,
                &request.issuer_email,
                "request_changes_requested",
                p,
            )
            .await?;
            Status::ChangesRequested
        }
        Review::Refuse(typed) => {
            let reason = message_body("reason", typed)?;
            if !status.reviewable() {
                return Err(RequestError::NotReviewable(status));
            }
            sqlx::query("UPDATE structure_requests SET refusal_reason = $2, decided_at = now(), decided_by = $3 WHERE id = $1")
                .bind(request.id)
                .bind(&reason)
                .bind(reviewer)
                .execute(&mut *tx)
                .await?;
            journal::append(
                &mut tx,
                entry(Event::RequestRefused, &request, Actor::Reviewer(reviewer)),
            )
            .await?;
            let mut p = base.clone();
            p["reason"] = json!(reason);
            mail(&mut tx, &request.issuer_email, "request_refused", p).await?;
            Status::Refused
        }
    };
    sqlx::query("UPDATE structure_requests SET status = $2, updated_at = now() WHERE id = $1")
        .bind(request.id)
        .bind(next.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(next)
}

/// Moves the territory's waiting requests into review (its wave opened), telling each issuer.
/// Returns how many were released.
pub async fn release_waiting(
    platform: &Platform,
    departement: DepartementCode,
) -> Result<usize, RequestError> {
    let tenant = platform.tenancy.unguarded(departement).await?;
    let mut tx = tenant.begin().await?;
    let waiting: Vec<Request> = sqlx::query_as::<_, Request>(requests_sql!(
        "WHERE status = 'waiting' ORDER BY first_submitted_at FOR UPDATE SKIP LOCKED"
    ))
    .fetch_all(&mut *tx)
    .await?;
    for request in &waiting {
        sqlx::query(
            "UPDATE structure_requests SET status = 'submitted', released_at = now(), submitted_at = now(), updated_at = now()
             WHERE id = $1",
        )
        .bind(request.id)
        .execute(&mut *tx)
        .await?;
        let mut e = NewEntry::new(Event::RequestReleased)
            .details(json!({ "request": request.id, "reference": request.reference }));
        e.details["by"] = json!("rollout_wave");
        journal::append(&mut tx, e).await?;
        mail(
            &mut tx,
            &request.issuer_email,
            "request_released",
            json!({
                "reference": request.reference,
                "structure": request.structure_name,
                "url": issuer_url(platform, &request.reference),
            }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(waiting.len())
}

/// A short summary of a request for lists.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Summary {
    pub reference: String,
    pub structure_name: String,
    pub structure_kind: String,
    pub commune_code: String,
    pub status: String,
    pub created_at: OffsetDateTime,
    pub submitted_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

impl Summary {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Draft)
    }
}

/// Summaries of a territory's requests: in these states (all but drafts when empty), submitted
/// before `older_than` when given, restricted to one commune when given; oldest first.
pub async fn summaries(
    tx: &mut TenantTx,
    states: &[Status],
    older_than: Option<OffsetDateTime>,
    commune: Option<&str>,
) -> Result<Vec<Summary>, sqlx::Error> {
    let states: Vec<&str> = if states.is_empty() {
        Status::ALL
            .iter()
            .filter(|s| **s != Status::Draft)
            .map(Status::as_str)
            .collect()
    } else {
        states.iter().map(Status::as_str).collect()
    };
    sqlx::query_as(
        "SELECT reference, structure_name, structure_kind, commune_code, status, created_at, submitted_at, updated_at
         FROM structure_requests
         WHERE status = ANY($1) AND ($2::timestamptz IS NULL OR submitted_at < $2)
           AND ($3::text IS NULL OR commune_code = $3)
         ORDER BY submitted_at NULLS LAST, reference LIMIT 1000",
    )
    .bind(&states)
    .bind(older_than)
    .bind(commune)
    .fetch_all(&mut **tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_departement() {
        for code in ["01", "2A", "33", "971"] {
            let d = DepartementCode::parse(code).expect("code");
            let r = new_reference(d);
            assert_eq!(departement_of(&r), Some(d), "{r}");
            assert!(
                r.len() <= 40
                    && r.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
            );
        }
        for bad in [
            "",
            "HAB",
            "HAB-33",
            "HAB-99-ABCDEFGH",
            "HAB-33-ABC",
            "XYZ-33-ABCDEFGH",
            "HAB-33-ABCDEFGH-X",
            "HAB-33-ABCD/FGH",
        ] {
            assert_eq!(departement_of(bad), None, "{bad}");
        }
    }
}
