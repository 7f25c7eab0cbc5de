//! `/mandats/{id}`: one mandate of the structure (any other id is 404) with its démarches'
//! states, its attestation and revocation attestations (10-minute links); its revocation (one
//! démarche or the whole mandate, then the revocation attestation), its renewal (back to the
//! terms, prefilled), the explanation page for the usager, and producing an attestation that
//! the store could not take at creation.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::guard::{self, Authorized};
use foundation::ids::{MandateId, UsagerId};
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::creation::terms::renewal_terms;
use super::{MessageQuery, Shared, THEME, date, date_time, display_name, nav, parse_id, see_other};
use crate::attestation;
use crate::categories;
use crate::mandates::{self, MandateError, State};
use crate::scope::{Scope, VerifiedScope};

pub struct AuthorisationView {
    pub code: &'static str,
    pub label: &'static str,
    pub status: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "mandate.html")]
struct MandatePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    id: String,
    structure: &'a str,
    usager_id: String,
    usager: String,
    state: State,
    created: String,
    expires: String,
    duration: &'static str,
    legal_text_version: String,
    authorisations: Vec<AuthorisationView>,
    attestation: Option<String>,
    revocations: Vec<String>,
    can_revoke: bool,
    can_renew: bool,
    can_attest: bool,
    flash: Option<(bool, String)>,
    /// The idempotency key the page's revocation forms carry (with their démarche).
    act_key: String,
}

#[derive(Template)]
#[template(path = "explanation.html")]
struct ExplanationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    id: String,
    structure: &'a str,
    categories: Vec<&'static str>,
    ends: String,
    argent: bool,
}

fn mandate_flash(code: Option<&str>) -> Option<(bool, String)> {
    Some(match code? {
        "cree" => (true, "Le mandat est créé. Imprimez l'attestation et faites-la signer par la personne.".into()),
        "revoque" => (true, "La révocation est enregistrée ; l'attestation de révocation est disponible ci-dessous.".into()),
        "attestation" => (true, "L'attestation est disponible.".into()),
        "attestation-indisponible" => (
            false,
            "Le stockage des documents est momentanément indisponible : l'attestation n'a pas pu être produite. Réessayez dans quelques minutes.".into(),
        ),
        "rien-a-revoquer" => (false, MandateError::NothingLive.to_string()),
        _ => return None,
    })
}

/// A mandate of the structure with its usager, as its page shows it.
#[derive(sqlx::FromRow)]
struct ShownMandate {
    usager_id: UsagerId,
    given_name: String,
    family_name: String,
    preferred_username: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    duration_days: i32,
    legal_text_version: String,
    ended_reason: Option<String>,
    attestation_id: Option<Uuid>,
}

/// One démarche of a mandate: revoked, superseded, and its revocation attestation.
#[derive(sqlx::FromRow)]
struct AuthorisationRow {
    category: String,
    revoked_at: Option<OffsetDateTime>,
    superseded_at: Option<OffsetDateTime>,
    revocation_attestation_id: Option<Uuid>,
}

/// The mandate of the structure the guard allowed, and its démarches; 404 for any other.
async fn shown_mandate(
    scope: &Scope,
    allowed: &Authorized,
    mandate: MandateId,
) -> PageResult<(ShownMandate, Vec<AuthorisationRow>)> {
    let mut tx = scope.tenant.begin().await?;
    let row: Option<ShownMandate> = sqlx::query_as(
        "SELECT u.id AS usager_id, u.given_name, u.family_name, u.preferred_username, m.created_at, m.expires_at, m.duration_days,
                m.legal_text_version, m.ended_reason, m.attestation_id
         FROM mandates m JOIN usagers u ON u.id = m.usager_id
         WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(allowed.structure())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(PageError::not_found());
    };
    let auths: Vec<AuthorisationRow> = sqlx::query_as(
        "SELECT category, revoked_at, superseded_at, revocation_attestation_id FROM authorisations
             WHERE mandate_id = $1 ORDER BY category",
    )
    .bind(mandate)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((row, auths))
}

fn authorisation_views(
    auths: &[AuthorisationRow],
    expires: OffsetDateTime,
    now: OffsetDateTime,
) -> Vec<AuthorisationView> {
    auths
        .iter()
        .filter_map(|a| {
            let c = categories::by_code(&a.category)?;
            let (status, live) = match (a.revoked_at, a.superseded_at) {
                (Some(at), _) => (format!("révoquée le {}", date(at)), false),
                (_, Some(at)) => (
                    format!("remplacée le {} par un nouveau mandat", date(at)),
                    false,
                ),
                _ if expires <= now => ("expirée".to_owned(), false),
                _ => ("en cours".to_owned(), true),
            };
            Some(AuthorisationView {
                code: c.code,
                label: c.label,
                status,
                live,
            })
        })
        .collect()
}

/// Whether the guard allows the professional this action in the current structure (what the
/// page offers; the action's own handler checks again).
async fn allows(platform: &Platform, scope: &Scope, action: Action) -> bool {
    let domain = scope.structure.id.domain();
    platform
        .guard
        .allows(scope.me.id.as_uuid(), &domain, action)
        .await
}

#[handler]
pub async fn show(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> PageResult<Response> {
    let allowed = scope.authorize(&platform, Action::MandateList).await?;
    let mandate: MandateId = parse_id(&id)?;

    let (m, auths) = shown_mandate(&scope, &allowed, mandate).await?;
    let now = OffsetDateTime::now_utc();
    let state = State::of(m.expires_at, m.ended_reason.as_deref(), now);
    let departement = scope.tenant.departement();
    let link = |doc: Uuid| {
        shared
            .documents
            .link(departement.as_str(), doc, Duration::minutes(10), now)
    };
    let mut revocations: Vec<Uuid> = auths
        .iter()
        .filter_map(|a| a.revocation_attestation_id)
        .collect();
    revocations.dedup();
    let can_revoke = state.is_live() && allows(&platform, &scope, Action::MandateRevoke).await;
    let can_renew = allows(&platform, &scope, Action::MandateRenew).await;
    let can_attest = allows(&platform, &scope, Action::MandateCreate).await;
    html(&MandatePage {
        theme: THEME,
        nav: nav("/mandats"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        id: mandate.to_string(),
        structure: &scope.structure.name,
        usager_id: m.usager_id.to_string(),
        usager: display_name(
            &m.given_name,
            &m.family_name,
            m.preferred_username.as_deref(),
        ),
        state,
        created: date_time(m.created_at),
        expires: date(m.expires_at - Duration::seconds(1)),
        duration: categories::duration_label(m.duration_days),
        legal_text_version: m.legal_text_version,
        authorisations: authorisation_views(&auths, m.expires_at, now),
        attestation: m.attestation_id.map(link),
        revocations: revocations.into_iter().map(link).collect(),
        can_revoke,
        can_renew,
        can_attest,
        flash: mandate_flash(q.message.as_deref()),
        act_key: foundation::auth::secrets::new_token(),
    })
}

#[derive(Deserialize)]
pub struct RevokeForm {
    categorie: Option<String>,
    /// The form's idempotency key (`act_keys`).
    cle: Option<String>,
}

/// The hash an act's key is stored under: the form's key with what the form acts on.
fn act_key_hash(key: &str, mandate: MandateId, category: Option<&str>) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("{key}:{mandate}:{}", category.unwrap_or("*"))).to_vec()
}

/// Revokes one category (`categorie`) or the whole mandate, then produces the revocation
/// attestation (a store outage never blocks the revocation itself).
#[handler]
pub async fn revoke(
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateRevoke).await?;
    let mandate: MandateId = parse_id(&id)?;

    let category = form
        .categorie
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(c) = category
        && categories::by_code(c).is_none()
    {
        return Ok(see_other(format!(
            "/mandats/{mandate}?message=rien-a-revoquer"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let mut tx = scope.tenant.begin().await?;
    // A retry of the same form answers the first outcome. The key is claimed first: a
    // concurrent retry waits on it, then reads the outcome the first one committed.
    let key = form
        .cle
        .as_deref()
        .map(str::trim)
        .filter(|k| (20..=100).contains(&k.len()))
        .map(|k| act_key_hash(k, mandate, category));
    if let Some(hash) = &key {
        let claimed = sqlx::query(
            "INSERT INTO act_keys (key_hash, act, mandate_id, outcome) VALUES ($1, 'revocation', $2, '')
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(hash)
        .bind(mandate)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            let first: Option<String> = sqlx::query_scalar(
                "SELECT outcome FROM act_keys WHERE key_hash = $1 AND mandate_id = $2",
            )
            .bind(hash)
            .bind(mandate)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            return match first.filter(|o| !o.is_empty()) {
                Some(outcome) => Ok(see_other(format!("/mandats/{mandate}?message={outcome}"))),
                None => Err(PageError::not_found()),
            };
        }
    }
    let outcome = mandates::revoke(
        &mut tx,
        scope.structure.id,
        mandate,
        category,
        Some(scope.me.id),
        now,
    )
    .await;
    let (revoked, whole) = match outcome {
        Ok(done) => done,
        Err(MandateError::NotFound) => return Err(PageError::not_found()),
        Err(MandateError::NothingLive) => {
            if let Some(hash) = &key {
                record_outcome(&mut tx, hash, "rien-a-revoquer").await?;
                tx.commit().await?;
            }
            return Ok(see_other(format!(
                "/mandats/{mandate}?message=rien-a-revoquer"
            )));
        }
        Err(_) => return Err(PageError::status(StatusCode::SERVICE_UNAVAILABLE)),
    };
    if let Some(hash) = &key {
        record_outcome(&mut tx, hash, "revoque").await?;
    }
    tx.commit().await?;
    let _ = attestation::produce_revocation_attestation(
        &platform,
        &shared.documents,
        &attestation::RevokedBy::aidant(&scope),
        mandate,
        &revoked,
        whole,
        now,
    )
    .await;
    Ok(see_other(format!("/mandats/{mandate}?message=revoque")))
}

/// The outcome a retry of the act's form will be answered.
async fn record_outcome(
    tx: &mut foundation::tenancy::TenantTx,
    hash: &[u8],
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE act_keys SET outcome = $2 WHERE key_hash = $1")
        .bind(hash)
        .bind(outcome)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Renewal: a new mandate with the same terms, which needs the usager's FranceConnect login
/// again — so it starts at the terms form, prefilled.
#[handler]
pub async fn renew(
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    let mandate: MandateId = parse_id(&id)?;

    // Another structure's (or territory's) mandate, or none: 404, as for every id.
    renewal_terms(&scope.tenant, scope.structure.id, mandate)
        .await?
        .ok_or_else(PageError::not_found)?;
    Ok(see_other(format!(
        "/mandats/nouveau?renouvellement={mandate}"
    )))
}

/// What the explanation page says of a mandate.
#[derive(sqlx::FromRow)]
struct Explained {
    expires_at: OffsetDateTime,
    categories: Vec<String>,
}

#[handler]
pub async fn explanation(
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    let mandate: MandateId = parse_id(&id)?;

    let mut tx = scope.tenant.begin().await?;
    let row: Option<Explained> = sqlx::query_as(
        "SELECT m.expires_at, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category) AS categories
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Explained {
        expires_at: expires,
        categories: cats,
    } = row.ok_or_else(PageError::not_found)?;
    html(&ExplanationPage {
        theme: THEME,
        nav: nav("/mandats"),
        id: mandate.to_string(),
        structure: &scope.structure.name,
        argent: cats.iter().any(|c| c == "argent"),
        categories: cats
            .iter()
            .filter_map(|c| categories::by_code(c))
            .map(|c| c.label)
            .collect(),
        ends: date(expires - Duration::seconds(1)),
    })
}

/// Produces the attestation the store could not take when the mandate was created.
#[handler]
pub async fn attestation_retry(
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    // Producing the attestation finishes the mandate's creation: the same right, and the same
    // recent code, as creating it.
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let mandate: MandateId = parse_id(&id)?;

    let (documents, origin) = (&shared.documents, shared.public_origin.as_str());
    match attestation::produce_attestation(&platform, documents, origin, &scope, mandate).await {
        Ok(_) => Ok(see_other(format!("/mandats/{mandate}?message=attestation"))),
        Err(MandateError::NotFound) => Err(PageError::not_found()),
        Err(_) => Ok(see_other(format!(
            "/mandats/{mandate}?message=attestation-indisponible"
        ))),
    }
}
