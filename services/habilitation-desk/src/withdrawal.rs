//! Withdrawing an aidant's habilitation in a structure (product.md §4.7), by the structure's
//! référent (`aidant:deactivate`, recent code) or the national team (`habilitation:withdraw`),
//! with a reason. It takes effect at the next request: the `aidant` role is removed first, in
//! the platform schema — which ends every session of that professional (trigger, platform
//! migration 0016) and reloads every guard — so mandate pages refuse them and the identity
//! provider neither redeems a code nor answers userinfo for them (`assignments::holds_now`).
//! Then the territory records the withdrawal (reason, who, when), marks the habilitation file
//! withdrawn, journals it and mails the aidant, in one transaction.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::auth::{csrf, guard};
use foundation::ids::{ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::views::{THEME, nav};

/// Who withdraws.
#[derive(Debug, Clone, Copy)]
pub enum By {
    Referent(ProfessionalId),
    National(ProfessionalId),
}

impl By {
    fn id(&self) -> ProfessionalId {
        match self {
            By::Referent(id) | By::National(id) => *id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    #[error("cet aidant n'est pas habilité dans cette structure")]
    NotFound,
    #[error("le motif est obligatoire")]
    Reason,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("territoire indisponible")]
    Unavailable,
}

/// The reason, trimmed: 1 to 2,000 characters.
pub fn reason(typed: &str) -> Result<String, WithdrawalError> {
    let r = typed.trim();
    if r.is_empty() || r.chars().count() > 2000 {
        Err(WithdrawalError::Reason)
    } else {
        Ok(r.to_owned())
    }
}

/// Withdraws the aidant's habilitation in the structure (see the module's comment).
pub async fn withdraw(
    platform: &Platform,
    tenant: &Territory,
    structure: StructureId,
    aidant: ProfessionalId,
    typed_reason: &str,
    by: By,
) -> Result<(), WithdrawalError> {
    let reason = reason(typed_reason)?;
    let mut tx = platform.platform_pool().begin().await?;
    let email: Option<String> = sqlx::query_scalar(
        "DELETE FROM platform.role_assignments a USING platform.professionals p
         WHERE a.professional_id = $1 AND a.role = 'aidant' AND a.domain = $2 AND p.id = a.professional_id
         RETURNING p.email",
    )
    .bind(aidant)
    .bind(structure.domain().to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(email) = email else {
        return Err(WithdrawalError::NotFound);
    };
    security::append(
        &mut tx,
        SecurityEvent::HabilitationWithdrawn,
        Some(aidant),
        Some(by.id()),
        json!({ "structure": structure, "national": matches!(by, By::National(_)) }),
    )
    .await?;
    tx.commit().await?;

    let id = Uuid::now_v7();
    let mut dep = tenant.begin().await?;
    let structure_name: String = sqlx::query_scalar("SELECT name FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_optional(&mut *dep)
        .await?
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO habilitation_withdrawals (id, structure_id, professional_id, reason, withdrawn_by, by_national)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(structure)
    .bind(aidant)
    .bind(&reason)
    .bind(by.id())
    .bind(matches!(by, By::National(_)))
    .execute(&mut *dep)
    .await?;
    sqlx::query(
        "UPDATE habilitation_files SET state = 'withdrawn', withdrawal_id = $3
         WHERE structure_id = $1 AND (professional_id = $2 OR email = $4) AND state <> 'withdrawn'",
    )
    .bind(structure)
    .bind(aidant)
    .bind(id)
    .bind(&email)
    .execute(&mut *dep)
    .await?;
    journal::append(
        &mut dep,
        NewEntry::new(Event::HabilitationWithdrawn)
            .structure(structure)
            .professional(aidant)
            .details(json!({
                "withdrawal": id,
                "by": by.id(),
                "national": matches!(by, By::National(_)),
            })),
    )
    .await?;
    outbox::enqueue_tenant(
        &mut dep,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: email,
            template: "habilitation_withdrawn",
            payload: json!({
                "structure": structure_name,
                "date": paris::date(time::OffsetDateTime::now_utc()),
                "by": match by {
                    By::Referent(_) => "le référent de la structure",
                    By::National(_) => "l'équipe nationale d'Aidants Connect",
                },
                "reason": reason,
            }),
        },
    )
    .await?;
    dep.commit().await?;
    Ok(())
}

fn page_error(e: WithdrawalError) -> PageError {
    match e {
        WithdrawalError::NotFound => PageError::not_found(),
        WithdrawalError::Reason => PageError::status(StatusCode::BAD_REQUEST),
        WithdrawalError::Unavailable => PageError::status(StatusCode::SERVICE_UNAVAILABLE),
        WithdrawalError::Database(e) => PageError::from(e),
    }
}

// ---------------------------------------------------------------------------------------------
// The référent's form.

#[derive(Template)]
#[template(path = "withdraw_aidant.html")]
struct WithdrawPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    action: &'a str,
    aidant: String,
    aidant_name: String,
    structure: String,
    structure_name: String,
    reason: String,
    error: Option<&'a str>,
}

/// The aidant, who must be an aidant of the structure (else 404), with names for the page.
async fn aidant_of(
    platform: &Platform,
    tenant: &Territory,
    structure: StructureId,
    aidant: &str,
) -> PageResult<(ProfessionalId, String, String)> {
    let id: ProfessionalId = aidant
        .trim()
        .parse()
        .map_err(|_| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let name: Option<String> = sqlx::query_scalar(
        "SELECT p.display_name FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.professional_id = $1 AND a.domain = $2 AND a.role = 'aidant'",
    )
    .bind(id)
    .bind(structure.domain().to_string())
    .fetch_optional(platform.platform_pool())
    .await?;
    let name = name.ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let structure_name = structure_name(tenant, structure).await?;
    Ok((id, name, structure_name))
}

async fn structure_name(tenant: &Territory, structure: StructureId) -> PageResult<String> {
    let mut tx = tenant.begin().await?;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    name.ok_or_else(PageError::not_found)
}

#[derive(Deserialize)]
pub struct AidantQuery {
    #[serde(default)]
    aidant: String,
}

/// `GET /referent/aidants/retrait?aidant=…`: the form (reason asked).
#[handler]
pub async fn referent_form(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<AidantQuery>,
) -> PageResult<Response> {
    let allowed =
        guard::require_in_current_structure(&platform, &me, Action::AidantDeactivate).await?;
    let structure = allowed.structure();
    guard::require_active_structure(&platform, structure).await?;
    let tenant = allowed.territory(&platform).await?;
    let (id, name, structure_name) = aidant_of(&platform, &tenant, structure, &q.aidant).await?;
    html(&WithdrawPage {
        theme: THEME,
        nav: nav("/referent/aidants"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        action: "/referent/aidants/retrait",
        aidant: id.to_string(),
        aidant_name: name,
        structure: structure.to_string(),
        structure_name,
        reason: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    #[serde(default)]
    aidant: String,
    #[serde(default)]
    structure: String,
    #[serde(default)]
    reason: String,
}

const REASON_NEEDED: &str =
    "Indiquez le motif du retrait : il est conservé et transmis à l'aidant.";

/// `POST /referent/aidants/retrait`.
#[handler]
pub async fn referent_withdraw(
    req: &Request,
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<WithdrawForm>,
) -> PageResult<Response> {
    let allowed =
        guard::require_in_current_structure(&platform, &me, Action::AidantDeactivate).await?;
    let structure = allowed.structure();
    guard::require_active_structure(&platform, structure).await?;
    let tenant = allowed.territory(&platform).await?;
    let (id, name, structure_name) = aidant_of(&platform, &tenant, structure, &f.aidant).await?;
    match withdraw(
        &platform,
        &tenant,
        structure,
        id,
        &f.reason,
        By::Referent(me.id),
    )
    .await
    {
        Ok(()) => Ok(
            Redirect::see_other("/referent/aidants?message=habilitation-retiree").into_response(),
        ),
        Err(WithdrawalError::Reason) => html_status(
            &WithdrawPage {
                theme: THEME,
                nav: nav("/referent/aidants"),
                csrf: csrf::token(req, platform.settings.http.secure_cookies()),
                action: "/referent/aidants/retrait",
                aidant: id.to_string(),
                aidant_name: name,
                structure: structure.to_string(),
                structure_name,
                reason: f.reason,
                error: Some(REASON_NEEDED),
            },
            Some(StatusCode::BAD_REQUEST),
        ),
        Err(e) => Err(page_error(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// The national team.

pub struct Habilitation {
    pub aidant: String,
    pub name: String,
    pub structure: String,
    pub structure_name: String,
    pub territory: String,
}

#[derive(Template)]
#[template(path = "national_habilitations.html")]
struct NationalPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    email: String,
    searched: bool,
    habilitations: Vec<Habilitation>,
    flash: Option<&'a str>,
    error: Option<&'a str>,
    reason: String,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    email: Option<String>,
    message: Option<String>,
}

async fn national_page(
    req: &Request,
    platform: &Platform,
    allowed: guard::NationalAuthorized,
    email: &str,
    flash: Option<&str>,
    error: Option<&str>,
    reason: String,
) -> PageResult<Response> {
    let email = email.trim().to_lowercase();
    let rows: Vec<(ProfessionalId, String, String, Option<String>)> = if email.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT p.id, p.display_name, a.domain, a.departement_code FROM platform.professionals p
             JOIN platform.role_assignments a ON a.professional_id = p.id AND a.role = 'aidant'
             WHERE p.email = $1 ORDER BY a.granted_at",
        )
        .bind(&email)
        .fetch_all(platform.platform_pool())
        .await?
    };
    let mut habilitations = Vec::new();
    for (id, name, domain, code) in rows {
        let Some(Domain::Structure(structure)) = Domain::parse(&domain) else {
            continue;
        };
        let structure = StructureId::from_uuid(structure);
        let structure_name = match allowed.territory_of_structure(platform, structure).await {
            Ok(tenant) => structure_name(&tenant, structure).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|_| "structure indisponible".to_owned());
        habilitations.push(Habilitation {
            aidant: id.to_string(),
            name,
            structure: structure.to_string(),
            structure_name,
            territory: code
                .as_deref()
                .and_then(|c| DepartementCode::parse(c).ok())
                .map(|d| format!("{} ({})", d.name(), d.as_str()))
                .unwrap_or_default(),
        });
    }
    let bad = error.is_some();
    html_status(
        &NationalPage {
            theme: THEME,
            nav: nav("/national/habilitations"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            searched: !email.is_empty(),
            email,
            habilitations,
            flash,
            error,
            reason,
        },
        (bad).then_some(StatusCode::BAD_REQUEST),
    )
}

/// `GET /national/habilitations?email=…`: an aidant's habilitations, to withdraw any.
#[handler]
pub async fn national_search(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<SearchQuery>,
) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    let flash = (q.message.as_deref() == Some("retiree"))
        .then_some("L'habilitation est retirée : les sessions de l'aidant sont closes et il est prévenu par e-mail.");
    national_page(
        req,
        &platform,
        allowed,
        q.email.as_deref().unwrap_or_default(),
        flash,
        None,
        String::new(),
    )
    .await
}

/// `POST /national/habilitations/retrait`.
#[handler]
pub async fn national_withdraw(
    req: &Request,
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<WithdrawForm>,
) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    let (Ok(aidant), Ok(structure)) = (
        f.aidant.trim().parse::<ProfessionalId>(),
        f.structure.trim().parse::<StructureId>(),
    ) else {
        return Err(PageError::not_found());
    };
    let email: Option<String> =
        sqlx::query_scalar("SELECT email FROM platform.professionals WHERE id = $1")
            .bind(aidant)
            .fetch_optional(platform.platform_pool())
            .await?;
    let email = email.ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let tenant = allowed.territory_of_structure(&platform, structure).await?;
    match withdraw(
        &platform,
        &tenant,
        structure,
        aidant,
        &f.reason,
        By::National(me.id),
    )
    .await
    {
        Ok(()) => Ok(Redirect::see_other(format!(
            "/national/habilitations?message=retiree&email={}",
            foundation::auth::session::url_escape(&email)
        ))
        .into_response()),
        Err(WithdrawalError::Reason) => {
            national_page(
                req,
                &platform,
                allowed,
                &email,
                None,
                Some(REASON_NEEDED),
                f.reason,
            )
            .await
        }
        Err(e) => Err(page_error(e)),
    }
}
