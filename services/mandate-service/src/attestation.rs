//! Attestations, produced for a mandate at its creation (or later, when the store was down
//! then) and for each revocation: built from the mandate's facts, encrypted into the document
//! vault under the structure's tenant, and recorded on the mandate (or on its revoked
//! authorisations) in a territory transaction with an `attestation_produced` journal entry that
//! holds the document's SHA-256. The QR code of a mandate's attestation leads to the public
//! verification page, whose address carries an HMAC of (département, mandate) under the link
//! secret. The PDF layout is in `pdf`.

mod pdf;

pub use pdf::{MandateTerms, RevocationTerms, mandate_pdf, revocation_pdf, shown_text};

use crate::documents::{Documents, Stored};
use foundation::app::Platform;
use foundation::ids::{MandateId, ProfessionalId, StructureId, TenantId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{DepartementCode, TenantTx, Territory};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::categories;
use crate::franceconnect::Identity;
use crate::mandates::MandateError;
use crate::scope::Scope;
use crate::web::{birth_text, date, date_time, display_name};

/// The public verification address of a mandate: unguessable, and says nothing but validity.
pub fn verification_url(
    platform: &Platform,
    origin: &str,
    departement: DepartementCode,
    mandate: MandateId,
) -> String {
    format!(
        "{origin}/verifier/{}/{mandate}/{}",
        departement.as_str().to_lowercase(),
        verification_token(platform, departement, mandate)
    )
}

/// The HMAC of a verification address (what the verification page checks).
pub(crate) fn verification_token(
    platform: &Platform,
    departement: DepartementCode,
    mandate: MandateId,
) -> String {
    use base64::Engine;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(
        platform
            .settings
            .security
            .link_secret
            .expose_secret()
            .as_bytes(),
    )
    .expect("HMAC takes keys of any length");
    mac.update(format!("mandate-verification|{departement}|{mandate}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
}

/// What a mandate attestation states, gathered by its caller.
pub struct AttestationFacts<'a> {
    pub mandate: MandateId,
    pub identity: &'a Identity,
    pub aidant_name: String,
    pub categories: Vec<String>,
    pub duration_days: i32,
    pub created: OffsetDateTime,
    pub expires: OffsetDateTime,
    pub legal_text_version: String,
    /// The language the mandate was explained in.
    pub language: String,
}

/// The attestation PDF of a mandate; its QR code leads to `public_origin`'s verification page.
pub fn attestation_pdf(
    platform: &Platform,
    public_origin: &str,
    scope: &Scope,
    facts: &AttestationFacts,
) -> Vec<u8> {
    let labels: Vec<&str> = facts
        .categories
        .iter()
        .map(|c| categories::label(c))
        .collect();
    let ends = date(facts.expires - Duration::seconds(1));
    let explained =
        crate::explanation::explain(&facts.language, &scope.structure.name, &labels, &ends);
    mandate_pdf(&MandateTerms {
        explanation: Some(pdf::Explanation {
            language: explained.language.name_fr.to_owned(),
            title: explained.title.clone(),
            paragraphs: explained
                .before
                .iter()
                .cloned()
                .chain(explained.demarches.iter().map(|d| format!("• {d}")))
                .chain(explained.after.iter().cloned())
                .collect(),
        }),
        mandate_id: facts.mandate.to_string(),
        legal_text_version: facts.legal_text_version.clone(),
        usager_name: facts.identity.display_name(),
        usager_birth: birth_text(facts.identity),
        structure_name: scope.structure.name.clone(),
        structure_place: format!(
            "{} (commune INSEE {})",
            scope.structure.address, scope.structure.commune
        )
        .trim_start()
        .to_owned(),
        aidant_name: facts.aidant_name.clone(),
        categories: facts
            .categories
            .iter()
            .map(|c| categories::label(c).to_owned())
            .collect(),
        duration: categories::duration_label(facts.duration_days).to_owned(),
        starts: date(facts.created),
        ends: date(facts.expires - Duration::seconds(1)),
        verification_url: verification_url(
            platform,
            public_origin,
            scope.tenant.departement(),
            facts.mandate,
        ),
    })
}

/// Encrypts and writes an attestation to the object store (not yet recorded). A store outage
/// gives `None`: the act goes on, and the attestation can be produced again later.
pub async fn upload_attestation(
    platform: &Platform,
    documents: &Documents,
    scope: &Scope,
    pdf: &[u8],
) -> Option<Stored> {
    match documents
        .store(
            platform,
            &scope.tenant,
            scope.structure.tenant_id,
            "mandate_attestation",
            pdf,
        )
        .await
    {
        Ok(upload) => Some(upload),
        Err(e) => {
            tracing::warn!(error = %e, "attestation not stored");
            None
        }
    }
}

/// An uploaded attestation and the mandate it is for, to record in the caller's territory
/// transaction.
pub struct MandateAttestation<'a> {
    pub documents: &'a Documents,
    pub scope: &'a Scope,
    pub mandate: MandateId,
    pub usager: UsagerId,
    pub upload: &'a Stored,
}

impl MandateAttestation<'_> {
    /// Records it as the mandate's, with its journal entry (hash included). False if the
    /// mandate already has one.
    pub async fn attach(&self, tx: &mut TenantTx) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE mandates SET attestation_id = $2, attestation_sha256 = $3 WHERE id = $1 AND attestation_id IS NULL",
        )
        .bind(self.mandate)
        .bind(self.upload.id)
        .bind(&self.upload.sha256)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        self.record(tx).await?;
        Ok(true)
    }

    /// Records its document and its journal entry (hash included), for a mandate whose row
    /// already names it: one created with it ([`crate::mandates::NewMandate`]'s `attestation`),
    /// or [`MandateAttestation::attach`]'s.
    pub async fn record(&self, tx: &mut TenantTx) -> Result<(), sqlx::Error> {
        let (scope, upload) = (self.scope, self.upload);
        let entry = NewEntry::new(Event::AttestationProduced)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .usager(self.usager)
            .mandate(self.mandate)
            .details(json!({ "kind": "mandate", "document": upload.id, "sha256": hex::encode(&upload.sha256) }));
        self.documents
            .record_journaled(tx, upload, "mandate_attestation", entry)
            .await
    }
}

/// A mandate as its attestation states it, and the attestation it already has.
#[derive(sqlx::FromRow)]
struct StoredMandate {
    usager_id: UsagerId,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    duration_days: i32,
    legal_text_version: String,
    language: String,
    created_by: ProfessionalId,
    attestation_id: Option<Uuid>,
    categories: Vec<String>,
}

/// A usager's identity as FranceConnect gave it (what an attestation prints).
#[derive(sqlx::FromRow)]
struct UsagerIdentity {
    given_name: String,
    preferred_username: Option<String>,
    family_name: String,
    birthdate: String,
    birthplace: String,
    birthcountry: String,
}

impl From<UsagerIdentity> for Identity {
    fn from(u: UsagerIdentity) -> Self {
        Identity {
            sub: String::new(),
            given_name: u.given_name,
            family_name: u.family_name,
            preferred_username: u.preferred_username,
            birthdate: u.birthdate,
            gender: String::new(),
            birthplace: u.birthplace,
            birthcountry: u.birthcountry,
            email: None,
        }
    }
}

/// Builds, stores and records the attestation of an existing mandate (when it could not be
/// stored at creation). Does nothing if it already exists.
pub async fn produce_attestation(
    platform: &Platform,
    documents: &Documents,
    public_origin: &str,
    scope: &Scope,
    mandate: MandateId,
) -> Result<Uuid, MandateError> {
    let mut tx = scope.tenant.begin().await?;
    let row: Option<StoredMandate> = sqlx::query_as(
        "SELECT m.usager_id, m.created_at, m.expires_at, m.duration_days, m.legal_text_version, m.language, m.created_by,
                m.attestation_id, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category) AS categories
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    let stored = row.ok_or(MandateError::NotFound)?;
    if let Some(doc) = stored.attestation_id {
        return Ok(doc);
    }
    let usager: UsagerIdentity = sqlx::query_as(
        "SELECT given_name, preferred_username, family_name, birthdate, birthplace, birthcountry
         FROM usagers WHERE id = $1",
    )
    .bind(stored.usager_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let identity = Identity::from(usager);
    let aidant_name: String =
        sqlx::query_scalar("SELECT display_name FROM platform.professionals WHERE id = $1")
            .bind(stored.created_by)
            .fetch_optional(platform.platform_pool())
            .await?
            .unwrap_or_else(|| "Aidant".into());
    let pdf = attestation_pdf(
        platform,
        public_origin,
        scope,
        &AttestationFacts {
            mandate,
            identity: &identity,
            aidant_name,
            categories: stored.categories,
            duration_days: stored.duration_days,
            created: stored.created_at,
            expires: stored.expires_at,
            legal_text_version: stored.legal_text_version,
            language: stored.language,
        },
    );
    let upload = upload_attestation(platform, documents, scope, &pdf)
        .await
        .ok_or(MandateError::Database)?;
    let attached = async {
        let mut tx = scope.tenant.begin().await?;
        let attached = MandateAttestation {
            documents,
            scope,
            mandate,
            usager: stored.usager_id,
            upload: &upload,
        }
        .attach(&mut tx)
        .await?;
        tx.commit().await?;
        Ok::<bool, sqlx::Error>(attached)
    }
    .await;
    match attached {
        Ok(true) => Ok(upload.id),
        Ok(false) | Err(_) => {
            documents.discard(&upload).await;
            Err(MandateError::Database)
        }
    }
}

/// The usager of a revoked mandate, as the revocation attestation names them.
#[derive(sqlx::FromRow)]
struct RevokedUsager {
    id: UsagerId,
    given_name: String,
    family_name: String,
    preferred_username: Option<String>,
}

/// Who revoked, and where: what a revocation attestation names and journals.
pub struct RevokedBy<'a> {
    pub territory: &'a Territory,
    pub structure: StructureId,
    pub tenant: TenantId,
    pub structure_name: &'a str,
    /// Printed on the attestation.
    pub name: String,
    /// The aidant who revoked; `None` when the person did it in their own space.
    pub professional: Option<ProfessionalId>,
}

impl<'a> RevokedBy<'a> {
    /// An aidant of the request's structure.
    pub fn aidant(scope: &'a Scope) -> Self {
        RevokedBy {
            territory: &scope.tenant,
            structure: scope.structure.id,
            tenant: scope.structure.tenant_id,
            structure_name: &scope.structure.name,
            name: scope.me.display_name.clone(),
            professional: Some(scope.me.id),
        }
    }
}

/// Builds, stores and records the attestation of a revocation (the `revoked` categories, or
/// the whole mandate), on each revoked authorisation that has none yet.
pub async fn produce_revocation_attestation(
    platform: &Platform,
    documents: &Documents,
    by: &RevokedBy<'_>,
    mandate: MandateId,
    revoked: &[String],

    whole: bool,
    at: OffsetDateTime,
) -> Result<Uuid, MandateError> {
    let mut tx = by.territory.begin().await?;
    let usager: RevokedUsager = sqlx::query_as(
        "SELECT u.id, u.given_name, u.family_name, u.preferred_username FROM mandates m JOIN usagers u ON u.id = m.usager_id
         WHERE m.id = $1",
    )
    .bind(mandate)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let pdf = revocation_pdf(&RevocationTerms {
        mandate_id: mandate.to_string(),
        usager_name: display_name(
            &usager.given_name,
            &usager.family_name,
            usager.preferred_username.as_deref(),
        ),
        structure_name: by.structure_name.to_owned(),
        revoked_by: by.name.clone(),
        categories: revoked
            .iter()
            .map(|c| categories::label(c).to_owned())
            .collect(),
        whole_mandate: whole,
        at: date_time(at),
    });
    let sha = Sha256::digest(&pdf).to_vec();
    let doc = documents
        .put(
            platform,
            by.territory,
            by.tenant,
            "revocation_attestation",
            &pdf,
        )
        .await
        .map_err(|_| MandateError::Database)?;
    let mut tx = by.territory.begin().await?;
    sqlx::query(
        "UPDATE authorisations SET revocation_attestation_id = $3
         WHERE mandate_id = $1 AND category = ANY($2) AND revocation_attestation_id IS NULL",
    )
    .bind(mandate)
    .bind(revoked)
    .bind(doc)
    .execute(&mut *tx)
    .await?;
    let entry = NewEntry::new(Event::AttestationProduced)
        .structure(by.structure)
        .usager(usager.id)
        .mandate(mandate)
        .details(json!({ "kind": "revocation", "document": doc, "sha256": hex::encode(&sha) }));
    let entry = match by.professional {
        Some(professional) => entry.professional(professional),
        None => entry,
    };
    journal::append(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(doc)
}
