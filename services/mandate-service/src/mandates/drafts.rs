//! Drafts: a mandate being prepared (terms chosen, usager identified by FranceConnect, recap),
//! bound to the aidant's session and structure, and its confirmation into a mandate. Unlike the
//! rest of [`crate::mandates`], confirmation opens its own transactions: the attestation is
//! uploaded before the territory transaction that creates the mandate and records it.

use crate::documents::{Documents, Stored};
use foundation::app::Platform;
use foundation::ids::MandateId;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Change, MandateError, NewMandate};
use crate::attestation::{self, AttestationFacts};
use crate::categories::Category;
use crate::franceconnect::Identity;
use crate::scope::Scope;

/// A draft of the aidant's session, as the recap shows it.
#[derive(sqlx::FromRow)]
pub struct Draft {
    pub categories: Vec<String>,
    pub duration_days: i32,
    pub renewal_of: Option<MandateId>,
    /// The usager's identity, once FranceConnect vouched for it (until the mandate exists).
    pub identity: Option<sqlx::types::Json<Identity>>,
    pub completed_at: Option<OffsetDateTime>,
    /// The person's other mandates may be transferred to this one (chosen on the recap).
    pub transfer: bool,
    /// A judicial measure: the court's decision (its period gives the duration).
    pub judicial: Option<sqlx::types::Json<crate::judicial::Measure>>,
}

/// A draft of this session and structure, not expired.
pub async fn load_draft(scope: &Scope, draft: Uuid) -> Result<Option<Draft>, sqlx::Error> {
    // A lone read: one statement, its own transaction.
    let mut conn = scope.tenant.autocommit().await?;
    let row: Option<Draft> = sqlx::query_as(
        "SELECT categories, duration_days, renewal_of, identity, completed_at, transfer, judicial FROM mandate_drafts
         WHERE id = $1 AND session_hash = $2 AND structure_id = $3 AND expires_at > now()",
    )
    .bind(draft)
    .bind(&scope.me.session_hash)
    .bind(scope.structure.id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

/// What the aidant confirms on the recap, once their code is checked.
pub struct Confirmation<'a> {
    pub draft: Uuid,
    pub terms: &'a Draft,
    pub identity: &'a Identity,
    /// The usager's mobile phone and postal address as typed (already checked), if any.
    pub phone: Option<&'a str>,
    pub address: Option<&'a str>,
    /// The language the explanation was given in (`explanation::LANGUAGES`).
    pub language: &'a str,
    /// The person's mandates with other structures this one replaces (see [`crate::transfers`]).
    pub transfers: &'a [(foundation::tenancy::DepartementCode, MandateId)],
    pub now: OffsetDateTime,
}

/// Turns a draft into a mandate: its terms checked again (the structure may have narrowed its
/// categories), the attestation built and uploaded, then in one territory transaction the
/// usager (upsert on FranceConnect's `sub`), their typed contact, the mandate (with
/// supersession and journal), the attestation's record and the draft completed without its
/// identity. If the store is down the mandate is created without attestation; an upload that
/// ends up unrecorded is discarded. `DraftUnavailable` when the draft was completed meanwhile.
pub async fn confirm_draft(
    platform: &Platform,
    documents: &Documents,
    public_origin: &str,
    scope: &Scope,
    confirmation: &Confirmation<'_>,
) -> Result<MandateId, MandateError> {
    let Confirmation {
        terms,
        identity,
        now,
        ..
    } = *confirmation;
    // A judicial measure lasts what the court decided; other mandates one of the durations.
    let (cats, duration) = match &terms.judicial {
        Some(_) => (
            super::validate_categories(&terms.categories, &scope.structure.demarches)?,
            terms.duration_days,
        ),
        None => super::validate_terms(
            &terms.categories,
            &scope.structure.demarches,
            Some(terms.duration_days),
        )?,
    };
    let mandate_id = MandateId::new_v7();
    let codes: Vec<String> = cats.iter().map(|c| c.code.to_owned()).collect();
    let pdf = attestation::attestation_pdf(
        platform,
        public_origin,
        scope,
        &AttestationFacts {
            mandate: mandate_id,
            identity,
            aidant_name: scope.me.display_name.clone(),
            categories: codes,
            duration_days: duration,
            created: now,
            expires: now + Duration::days(i64::from(duration)),
            legal_text_version: super::LEGAL_TEXT_VERSION.to_owned(),
            language: confirmation.language.to_owned(),
        },
    );
    let upload = attestation::upload_attestation(platform, documents, scope, &pdf).await;
    let created = create(
        documents,
        scope,
        confirmation,
        cats,
        duration,
        mandate_id,
        upload.as_ref(),
    )
    .await;
    if let (Some(upload), Err(_)) = (&upload, &created) {
        documents.discard(upload).await;
    }
    if let (Ok(mandate), false) = (&created, confirmation.transfers.is_empty()) {
        // The mandates taken over end in their own territories; a failure is completed by the
        // `mandate_transfers` job.
        let mut failed = foundation::jobs::TerritoryFailures::default();
        let completed =
            crate::transfers::complete(platform, &scope.tenant, *mandate, &mut failed).await;
        if let Err(e) = completed.and_then(|n| failed.result(n)) {
            tracing::warn!(error = %e, "mandate transfer left pending");
        }
    }
    if created.is_ok() {
        // The person finds it in their own space; a failure here is caught up by the hourly
        // `usager_index` job.
        let departement = scope.tenant.departement();
        if let Err(e) = crate::usager_space::index(platform, departement, &identity.sub).await {
            tracing::warn!(error = %e, "usager index not written");
        }
    }
    created
}

/// The territory transaction of [`confirm_draft`]: the mandate, recorded with its attestation
/// when one was uploaded.
async fn create(
    documents: &Documents,
    scope: &Scope,
    confirmation: &Confirmation<'_>,
    categories: Vec<Category>,
    duration_days: i32,
    mandate_id: MandateId,
    upload: Option<&Stored>,
) -> Result<MandateId, MandateError> {
    let draft = confirmation.draft;
    let mut tx = scope.tenant.begin().await?;
    // The draft is completed first, its row locked until the end: a second confirmation waits,
    // then finds it completed. The identity leaves it: it now lives in the usager's row only.
    // (`usager_id`, which no reader used, is no longer written.)
    let completed = sqlx::query(
        "UPDATE mandate_drafts SET completed_at = now(), identity = NULL, language = $2
         WHERE id = $1 AND completed_at IS NULL",
    )
    .bind(draft)
    .bind(confirmation.language)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if completed == 0 {
        return Err(MandateError::DraftUnavailable);
    }
    let usager = super::upsert_usager(
        &mut tx,
        confirmation.identity,
        scope.structure.id,
        scope.me.id,
    )
    .await?;
    super::set_contact(
        &mut tx,
        usager,
        scope.structure.id,
        scope.me.id,
        Change::typed(confirmation.phone),
        Change::typed(confirmation.address),
    )
    .await?;
    let codes: Vec<String> = categories.iter().map(|c| c.code.to_owned()).collect();
    let mandate = super::create(
        &mut tx,
        &NewMandate {
            id: mandate_id,
            structure: scope.structure.id,
            aidant: scope.me.id,
            usager,
            categories,
            duration_days,
            renewal_of: confirmation.terms.renewal_of,
            idempotency_key: Some(format!("draft:{draft}")),
            language: Some(confirmation.language.to_owned()),
            attestation: upload.map(|u| (u.id, u.sha256.clone())),
        },
        confirmation.now,
    )
    .await?;
    if let Some(measure) = &confirmation.terms.judicial {
        crate::judicial::record(
            &mut tx,
            &crate::judicial::Recorded {
                mandate,
                structure: scope.structure.id,
                by: scope.me.id,
                measure,
                categories: &codes,
                identified_by: "franceconnect",
                case_number: None,
                delegate: Some(scope.me.id),
            },
        )
        .await?;
    }
    if !confirmation.transfers.is_empty() {
        crate::transfers::record(
            &mut tx,
            mandate,
            scope.structure.id,
            usager,
            confirmation.transfers,
        )
        .await?;
    }
    if let Some(upload) = upload {
        attestation::MandateAttestation {
            documents,
            scope,
            mandate,
            usager,
            upload,
        }
        .record(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(mandate)
}
