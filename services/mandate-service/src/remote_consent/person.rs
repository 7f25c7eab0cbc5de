//! The person's side of a remote consent, reached by the link's secret (its hash is the
//! lookup): the territory the link names, the consent it opens, the device binding, the draft
//! FranceConnect's return fills, the answer.

use foundation::auth::secrets::token_hash;
use foundation::ids::MandateId;
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{DepartementCode, TenantTx, Territory};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::RemoteConsent;
use crate::franceconnect::Identity;
use crate::scope::Scope;

/// The territory a link names, when the platform serves it.
pub async fn territory(
    platform: &foundation::app::Platform,
    departement: &str,
) -> Option<Territory> {
    let code = DepartementCode::parse(departement).ok()?;
    if !platform.tenancy.served().contains(&code) {
        return None;
    }
    // The link's secret, checked by every caller against `link_hash`, is the authorization.
    platform.tenancy.unguarded(code).await.ok()
}

/// The consent a link's secret opens (whatever its state), locked.
pub async fn by_link(tx: &mut TenantTx, token: &str) -> Result<Option<RemoteConsent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, structure_id, aidant_id, categories, duration_days, renewal_of, given_name, family_name, birthdate, channel, destination, language, link_expires_at, sends, browser_hash, draft_id, opened_at, identified_at, outcome, decided_at, mandate_id, created_at, transfer
         FROM remote_consents WHERE link_hash = $1 FOR UPDATE",
    )
    .bind(token_hash(token))
    .fetch_optional(&mut **tx)
    .await
}

/// The consent a bound device reaches by its id (after FranceConnect), locked.
pub async fn by_device(
    tx: &mut TenantTx,
    id: Uuid,
    browser: &str,
) -> Result<Option<RemoteConsent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, structure_id, aidant_id, categories, duration_days, renewal_of, given_name, family_name, birthdate, channel, destination, language, link_expires_at, sends, browser_hash, draft_id, opened_at, identified_at, outcome, decided_at, mandate_id, created_at, transfer
         FROM remote_consents WHERE id = $1 AND browser_hash = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(token_hash(browser))
    .fetch_optional(&mut **tx)
    .await
}

/// Marks the link opened (the first time): what the aidant sees. Consumes nothing.
pub async fn mark_opened(tx: &mut TenantTx, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE remote_consents SET opened_at = now() WHERE id = $1 AND opened_at IS NULL")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Binds the consent to this device and opens the draft FranceConnect's return fills.
pub async fn start_identification(
    tx: &mut TenantTx,
    consent: &RemoteConsent,
    browser: &str,
    state: &str,
    nonce: &str,
) -> Result<(), sqlx::Error> {
    let draft = Uuid::now_v7();
    let device = token_hash(browser);
    sqlx::query(
        "INSERT INTO mandate_drafts (id, structure_id, aidant_id, session_hash, categories, duration_days, renewal_of,
                                     state_hash, nonce, expires_at, language, transfer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(mins => $10), $11, $12)",
    )
    .bind(draft)
    .bind(consent.structure_id)
    .bind(consent.aidant_id)
    .bind(&device)
    .bind(&consent.categories)
    .bind(consent.duration_days)
    .bind(consent.renewal_of)
    .bind(token_hash(state))
    .bind(nonce)
    .bind(crate::mandates::DRAFT_MINUTES as i32)
    .bind(&consent.language)
    .bind(consent.transfer)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        // The instant is bound, not `now()`: Citus refuses a non-immutable function inside
        // COALESCE in a write to a territory's table.
        "UPDATE remote_consents SET browser_hash = $2, draft_id = $3, opened_at = coalesce(opened_at, $4)
         WHERE id = $1",
    )
    .bind(consent.id)
    .bind(&device)
    .bind(draft)
    .bind(time::OffsetDateTime::now_utc())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A draft waiting for FranceConnect's identity, found by its state on the device that started
/// it, with its consent (still open), locked.
#[derive(sqlx::FromRow)]
pub struct Waiting {
    pub draft: Uuid,
    pub nonce: String,
    pub consent: Uuid,
}

pub async fn waiting(
    tx: &mut TenantTx,
    state: &str,
    browser: &str,
) -> Result<Option<Waiting>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id AS draft, d.nonce, c.id AS consent
         FROM mandate_drafts d JOIN remote_consents c ON c.draft_id = d.id
         WHERE d.state_hash = $1 AND d.session_hash = $2 AND c.browser_hash = $2
           AND d.identity IS NULL AND d.completed_at IS NULL AND d.expires_at > now()
           AND c.outcome IS NULL AND c.link_expires_at > now()
         FOR UPDATE OF d, c",
    )
    .bind(token_hash(state))
    .bind(token_hash(browser))
    .fetch_optional(&mut **tx)
    .await
}

/// Ends a consent's draft that will not be confirmed (identification failed, link resent or
/// cancelled, consent refused): a replayed return finds nothing, and the identity goes.
pub async fn drop_draft(tx: &mut TenantTx, draft: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mandate_drafts SET expires_at = now(), identity = NULL
         WHERE id = $1 AND completed_at IS NULL",
    )
    .bind(draft)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps FranceConnect's (matching) identity in the draft until the person answers.
pub async fn keep_identity(
    tx: &mut TenantTx,
    waiting: &Waiting,
    identity: &Identity,
    logout_state: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE mandate_drafts SET identity = $2, logout_state_hash = $3 WHERE id = $1")
        .bind(waiting.draft)
        .bind(sqlx::types::Json(identity))
        .bind(token_hash(logout_state))
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE remote_consents SET identified_at = now() WHERE id = $1")
        .bind(waiting.consent)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The consent FranceConnect's logout comes back for, on this device.
pub async fn after_logout(
    tx: &mut TenantTx,
    logout_state: &str,
    browser: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.id FROM mandate_drafts d JOIN remote_consents c ON c.draft_id = d.id
         WHERE d.logout_state_hash = $1 AND c.browser_hash = $2 AND d.expires_at > now()",
    )
    .bind(token_hash(logout_state))
    .bind(token_hash(browser))
    .fetch_optional(&mut **tx)
    .await
}

/// The identity waiting in the consent's draft.
pub async fn identity(
    tx: &mut TenantTx,
    consent: &RemoteConsent,
) -> Result<Option<Identity>, sqlx::Error> {
    let Some(draft) = consent.draft_id else {
        return Ok(None);
    };
    let found: Option<Option<sqlx::types::Json<Identity>>> = sqlx::query_scalar(
        "SELECT identity FROM mandate_drafts WHERE id = $1 AND completed_at IS NULL AND expires_at > now()",
    )
    .bind(draft)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.flatten().map(|j| j.0))
}

/// Records the person's refusal (journaled); the identity leaves the draft.
pub async fn refuse(tx: &mut TenantTx, consent: &RemoteConsent) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE remote_consents SET outcome = 'refused', decided_at = now() WHERE id = $1")
        .bind(consent.id)
        .execute(&mut **tx)
        .await?;
    if let Some(draft) = consent.draft_id {
        drop_draft(tx, draft).await?;
    }
    journal::append(
        tx,
        NewEntry::new(Event::RemoteConsentRefused)
            .structure(consent.structure_id)
            .professional(consent.aidant_id)
            .details(json!({ "remote_consent": consent.id })),
    )
    .await?;
    Ok(())
}

/// The terms of a consent's draft, as the confirmation takes them.
pub async fn draft(
    tx: &mut TenantTx,
    id: Uuid,
) -> Result<Option<crate::mandates::Draft>, sqlx::Error> {
    sqlx::query_as(
        "SELECT categories, duration_days, renewal_of, identity, completed_at, transfer, judicial FROM mandate_drafts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// The mandate a draft produced (a second answer finds the first one's).
pub async fn made_by_draft(
    territory: &Territory,
    draft: Uuid,
) -> Result<Option<MandateId>, sqlx::Error> {
    let mut tx = territory.begin().await?;
    let found = sqlx::query_scalar("SELECT id FROM mandates WHERE idempotency_key = $1")
        .bind(format!("draft:{draft}"))
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(found)
}

/// Records the consent given: the mandate it created.
pub async fn consented(
    territory: &Territory,
    consent: Uuid,
    mandate: MandateId,
) -> Result<(), sqlx::Error> {
    let mut tx = territory.begin().await?;
    sqlx::query(
        "UPDATE remote_consents SET outcome = 'consented', decided_at = now(), mandate_id = $2
         WHERE id = $1 AND outcome IS NULL",
    )
    .bind(consent)
    .bind(mandate)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What the person's consent led to.
pub enum Accepted {
    /// The mandate, created now or by a first answer.
    Mandate(MandateId),
    /// The aidant who prepared it may no longer create mandates in the structure (or it is
    /// closed): nothing is created.
    NotAllowed,
    /// The terms no longer hold (the structure narrowed its démarches, say): why, in French.
    Refused(String),
    /// The draft is gone.
    Gone,
}

/// The person consents: the mandate is created in the name of the aidant who prepared it, after
/// the guard checked that aidant may still create (and renew) mandates in the structure,
/// through the counter's own confirmation ([`crate::mandates::confirm_draft`]: attestation,
/// journal, receipt to the number the link went to, the person's index); then the consent is
/// recorded with its mandate. `tx` holds the consent's lock and is committed here.
pub async fn accept(
    platform: &foundation::app::Platform,
    documents: &crate::documents::Documents,
    origin: &str,
    (territory, mut tx): (&Territory, TenantTx),
    consent: &RemoteConsent,
    identity: &Identity,
    transfers: &[(DepartementCode, MandateId)],
) -> foundation::web::PageResult<Accepted> {
    use crate::mandates::{Confirmation, MandateError, confirm_draft};
    let Some(draft_id) = consent.draft_id else {
        return Ok(Accepted::Gone);
    };
    let terms = draft(&mut tx, draft_id).await?;
    tx.commit().await?;
    let (Some(me), Some(terms)) = (preparer(platform, consent).await?, terms) else {
        return Ok(Accepted::NotAllowed);
    };
    let Ok(scope) = Scope::acting(platform, me).await else {
        return Ok(Accepted::NotAllowed);
    };
    let mut allowed = scope
        .authorize(platform, policies::Action::MandateCreate)
        .await
        .is_ok();
    if consent.renewal_of.is_some() {
        allowed &= scope
            .authorize(platform, policies::Action::MandateRenew)
            .await
            .is_ok();
    }
    if !allowed {
        return Ok(Accepted::NotAllowed);
    }
    let confirmation = Confirmation {
        draft: draft_id,
        terms: &terms,
        identity,
        phone: (consent.channel == "sms").then_some(consent.destination.as_str()),
        address: None,
        language: &consent.language,
        transfers,
        now: OffsetDateTime::now_utc(),
    };
    let mandate = match confirm_draft(platform, documents, origin, &scope, &confirmation).await {
        Ok(mandate) => mandate,
        // Answered twice: the first answer made it.
        Err(MandateError::DraftUnavailable) => match made_by_draft(territory, draft_id).await? {
            Some(m) => m,
            None => return Ok(Accepted::Gone),
        },
        Err(MandateError::Database) => {
            return Err(foundation::web::PageError::status(
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
            ));
        }
        Err(e) => return Ok(Accepted::Refused(e.to_string())),
    };
    consented(territory, consent.id, mandate).await?;
    Ok(Accepted::Mandate(mandate))
}

/// The aidant who prepared the consent, acting in its structure, if they still may.
pub async fn preparer(
    platform: &foundation::app::Platform,
    consent: &RemoteConsent,
) -> Result<Option<foundation::auth::session::Professional>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT email, display_name FROM platform.professionals WHERE id = $1 AND active",
    )
    .bind(consent.aidant_id)
    .fetch_optional(platform.platform_pool())
    .await?;
    Ok(row.map(
        |(email, display_name)| foundation::auth::session::Professional {
            id: consent.aidant_id,
            email,
            display_name,
            session_hash: Vec::new(),
            current_structure: Some(consent.structure_id),
            recheck_required: false,
            totp_verified_at: consent.created_at,
        },
    ))
}
