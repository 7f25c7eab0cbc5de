//! Review of structure requests (product.md §4.2) by the national team, or by a territory admin
//! the national team delegated review to for their département (role `reviewer` in the
//! département council's tenant domain). The queue is filtered by territory, state and age; a
//! request opens on its page with the thread; a reviewer writes, asks for changes, refuses with
//! a reason or accepts. Without the right: 403; a request outside the reviewer's territories, or
//! that does not exist: 404. The national team manages delegations at `/national/relecteurs`.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::auth::{csrf, guard};
use foundation::ids::{ProfessionalId, TenantId};
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain, Role};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::request_pages::{Recap, recap};
use crate::requests::acceptance;
use crate::requests::form::kind_label;
use crate::requests::{self, RequestError, Review, Status};
use crate::views::{THEME, message_page, nav};

const CURRENT: &str = "/instruction";

/// Where a professional may review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewScope {
    National,
    Delegated(Vec<DepartementCode>),
}

impl ReviewScope {
    pub fn covers(&self, d: DepartementCode) -> bool {
        match self {
            ReviewScope::National => true,
            ReviewScope::Delegated(list) => list.contains(&d),
        }
    }
}

/// The guard for review: the national right, else delegated rights per département; neither
/// is 403.
pub async fn review_scope(platform: &Platform, me: &Professional) -> PageResult<ReviewScope> {
    if platform
        .guard
        .allows(me.id.as_uuid(), &Domain::National, Action::RequestReview)
        .await
    {
        return Ok(ReviewScope::National);
    }
    let delegated: Vec<(TenantId, String)> = sqlx::query_as(
        "SELECT t.id, t.departement_code FROM platform.role_assignments a
         JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text
         WHERE a.professional_id = $1 AND a.role = 'reviewer' ORDER BY 2",
    )
    .bind(me.id)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut list = Vec::new();
    for (tenant, code) in delegated {
        if platform
            .guard
            .allows(me.id.as_uuid(), &tenant.domain(), Action::RequestReview)
            .await
            && let Ok(d) = DepartementCode::parse(&code)
        {
            list.push(d);
        }
    }
    if list.is_empty() {
        tracing::info!(action = "request:review", "authorization denied");
        return Err(PageError::forbidden());
    }
    Ok(ReviewScope::Delegated(list))
}

// ---------------------------------------------------------------------------------------------
// The queue.

pub struct QueueLine {
    pub reference: String,
    pub territory: String,
    pub structure: String,
    pub kind: &'static str,
    pub commune: String,
    pub status: Status,
    pub submitted: String,
    pub age_days: i64,
}

#[derive(Template)]
#[template(path = "review_queue.html")]
struct QueuePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    territories: Vec<(String, String)>,
    territory: String,
    state: String,
    states: Vec<(String, String)>,
    age: String,
    lines: Vec<QueueLine>,
    unavailable: Vec<String>,
    national: bool,
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    territoire: Option<String>,
    etat: Option<String>,
    anciennete: Option<String>,
}

/// `GET /instruction`.
#[handler]
pub async fn queue(
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<QueueQuery>,
) -> PageResult<Response> {
    let scope = review_scope(&platform, &me).await?;
    let candidates: Vec<DepartementCode> = match &scope {
        ReviewScope::National => {
            let codes: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT departement_code FROM platform.request_index ORDER BY 1",
            )
            .fetch_all(platform.platform_pool())
            .await?;
            codes
                .iter()
                .filter_map(|c| DepartementCode::parse(c).ok())
                .collect()
        }
        ReviewScope::Delegated(list) => list.clone(),
    };
    let territory = q.territoire.unwrap_or_default().trim().to_uppercase();
    let wanted: Vec<DepartementCode> = match DepartementCode::parse(&territory) {
        Ok(d) if scope.covers(d) => vec![d],
        _ => candidates.clone(),
    };
    let state = q.etat.unwrap_or_else(|| "a-instruire".to_owned());
    let states: Vec<Status> = match state.as_str() {
        "a-instruire" => vec![Status::Submitted, Status::Amended],
        "tous" => Vec::new(),
        other => Status::parse(other)
            .filter(|s| *s != Status::Draft)
            .map(|s| vec![s])
            .unwrap_or_else(|| vec![Status::Submitted, Status::Amended]),
    };
    let age = q.anciennete.unwrap_or_default();
    let days: Option<i64> = age.trim().parse().ok().filter(|d| (1..=3650).contains(d));
    let now = OffsetDateTime::now_utc();
    let older_than = days.map(|d| now - time::Duration::days(d));
    let mut lines = Vec::new();
    let mut unavailable = Vec::new();
    for d in &wanted {
        let Ok(tenant) = platform.tenancy.unguarded(*d).await else {
            unavailable.push(format!("{} ({})", d.name(), d.as_str()));
            continue;
        };
        let mut tx = tenant.begin().await?;
        let rows = requests::summaries(&mut tx, &states, older_than, None).await?;
        tx.commit().await?;
        let codes: Vec<String> = rows.iter().map(|r| r.commune_code.clone()).collect();
        let names: Vec<(String, String)> =
            sqlx::query_as("SELECT code, name FROM platform.communes WHERE code = ANY($1)")
                .bind(&codes)
                .fetch_all(platform.platform_pool())
                .await?;
        for r in rows {
            let commune = names
                .iter()
                .find(|(c, _)| *c == r.commune_code)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| r.commune_code.clone());
            let submitted_at = r.submitted_at.unwrap_or(r.created_at);
            lines.push(QueueLine {
                reference: r.reference.clone(),
                territory: format!("{} ({})", d.name(), d.as_str()),
                structure: r.structure_name.clone(),
                kind: kind_label(&r.structure_kind),
                commune,
                status: r.status(),
                submitted: paris::date(submitted_at),
                age_days: (now - submitted_at).whole_days(),
            });
        }
    }
    lines.sort_by(|a, b| {
        b.age_days
            .cmp(&a.age_days)
            .then(a.reference.cmp(&b.reference))
    });
    let mut state_options = vec![
        (
            "a-instruire".to_owned(),
            "À instruire (déposées ou modifiées)".to_owned(),
        ),
        ("tous".to_owned(), "Tous les états".to_owned()),
    ];
    for s in Status::ALL.iter().filter(|s| **s != Status::Draft) {
        state_options.push((s.as_str().to_owned(), s.label().to_owned()));
    }
    html(&QueuePage {
        theme: THEME,
        nav: nav(CURRENT),
        territories: candidates
            .iter()
            .map(|d| {
                (
                    d.as_str().to_owned(),
                    format!("{} ({})", d.name(), d.as_str()),
                )
            })
            .collect(),
        territory,
        state,
        states: state_options,
        age: days.map(|d| d.to_string()).unwrap_or_default(),
        lines,
        unavailable,
        national: scope == ReviewScope::National,
    })
}

// ---------------------------------------------------------------------------------------------
// One request.

#[derive(Template)]
#[template(path = "review_view.html")]
struct ViewPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    recap: Recap,
    issuer_email: String,
    reviewable: bool,
    open: bool,
    typed: Typed,
    flash: Option<&'a str>,
    error: Option<String>,
}

impl ViewPage<'_> {
    /// The error to show on `field` (the one whose form came back), if any.
    fn error_on(&self, field: &str) -> Option<&str> {
        self.error
            .as_deref()
            .filter(|_| self.typed.field == Some(field))
    }
}

/// What the reviewer typed, kept when it comes back with an error.
#[derive(Default)]
pub struct Typed {
    pub message: String,
    pub changes: String,
    pub reason: String,
    pub field: Option<&'static str>,
}

async fn reviewable_request(
    platform: &Platform,
    me: &Professional,
    reference: &str,
) -> PageResult<(DepartementCode, requests::Dossier)> {
    let scope = review_scope(platform, me).await?;
    let departement = requests::departement_of(reference).ok_or_else(PageError::not_found)?;
    if !scope.covers(departement) {
        return Err(PageError::not_found());
    }
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(PageError::from)?;
    let mut tx = tenant.begin().await?;
    let request = requests::load(&mut tx, reference, false)
        .await?
        .filter(|r| r.status() != Status::Draft)
        .ok_or_else(PageError::not_found)?;
    let dossier = requests::dossier(platform, &mut tx, request)
        .await
        .map_err(|e| match e {
            RequestError::Database(e) => PageError::from(e),
            e => PageError::unavailable(e),
        })?;
    tx.commit().await?;
    Ok((departement, dossier))
}

async fn view_page(
    req: &Request,
    platform: &Platform,
    d: &requests::Dossier,
    typed: Typed,
    flash: Option<&str>,
    error: Option<String>,
) -> PageResult<Response> {
    let ids: Vec<ProfessionalId> = d
        .messages
        .iter()
        .filter_map(|m| m.professional_id)
        .collect();
    let names: Vec<(ProfessionalId, String)> =
        sqlx::query_as("SELECT id, display_name FROM platform.professionals WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(platform.platform_pool())
            .await?;
    let status = d.request.status();
    html_status(
        &ViewPage {
            theme: THEME,
            nav: nav(CURRENT),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            recap: recap(d, &|id| {
                names
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, n)| format!("{n} (instruction)"))
                    .unwrap_or_else(|| "L'équipe d'instruction".to_owned())
            }),
            issuer_email: d.request.issuer_email.clone(),
            reviewable: status.reviewable(),
            open: status.open(),
            typed,
            flash,
            error: error.clone(),
        },
        (error.is_some()).then_some(StatusCode::BAD_REQUEST),
    )
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

/// `GET /instruction/demandes/:reference`.
#[handler]
pub async fn view(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(reference): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (_, d) = reviewable_request(&platform, &me, &reference).await?;
    let flash = match q.message.as_deref() {
        Some("message") => Some("Votre message est envoyé au demandeur."),
        Some("modifications") => Some("La demande de modifications est envoyée au demandeur."),
        Some("refusee") => {
            Some("La demande est refusée ; le demandeur en est informé avec le motif.")
        }
        Some("acceptee") => Some(
            "La demande est acceptée : la structure est créée, le référent reçoit son lien d'activation et chaque aidant a son dossier d'habilitation.",
        ),
        _ => None,
    };
    view_page(req, &platform, &d, Typed::default(), flash, None).await
}

fn review_error(e: RequestError, reference: &str) -> PageResult<Response> {
    let back = format!("/instruction/demandes/{reference}");
    match e {
        RequestError::NotFound => Err(PageError::not_found()),
        RequestError::NotReviewable(_)
        | RequestError::NotEditable(_)
        | RequestError::NotWithdrawable(_) => message_page(
            StatusCode::CONFLICT,
            CURRENT,
            "Cette demande n'est plus à instruire",
            vec![
                "Elle a déjà été décidée, retirée, ou attend les modifications du demandeur : rien n'a été fait. Elle a peut-être été traitée par un autre membre de l'équipe à l'instant.",
            ],
            Some((&back, "Voir la demande")),
        ),
        RequestError::NoTenant => message_page(
            StatusCode::CONFLICT,
            CURRENT,
            "Aucune collectivité n'est inscrite pour ce territoire",
            vec![
                "La structure doit être rattachée à une collectivité (le département ou sa commune). Inscrivez-la d'abord (tenant-admin tenant add), puis acceptez la demande : rien n'a été créé.",
            ],
            Some((&back, "Voir la demande")),
        ),
        RequestError::Tenancy(e) => Err(PageError::from(e)),
        RequestError::Database(e) => Err(PageError::from(e)),
        _ => Err(PageError::status(StatusCode::BAD_REQUEST)),
    }
}

#[derive(Deserialize, Default)]
pub struct ReviewForm {
    #[serde(default)]
    message: String,
    #[serde(default)]
    changes: String,
    #[serde(default)]
    reason: String,
}

async fn act(
    req: &Request,
    platform: &Platform,
    me: &Professional,
    reference: &str,
    action: Review,
    typed: Typed,
    done: &str,
) -> PageResult<Response> {
    let (departement, d) = reviewable_request(platform, me, reference).await?;
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(PageError::from)?;
    match requests::review(platform, &tenant, me.id, reference, action).await {
        Ok(_) => Ok(Redirect::see_other(format!(
            "/instruction/demandes/{reference}?message={done}"
        ))
        .into_response()),
        Err(RequestError::Fields(errors)) => {
            let error = errors.summary().into_iter().next().map(|(_, m)| m);
            view_page(req, platform, &d, typed, None, error).await
        }
        Err(e) => review_error(e, reference),
    }
}

/// `POST /instruction/demandes/:reference/message`.
#[handler]
pub async fn post_message(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(reference): Path<String>,
    Form(f): Form<ReviewForm>,
) -> PageResult<Response> {
    let typed = Typed {
        message: f.message.clone(),
        field: Some("message"),
        ..Default::default()
    };
    act(
        req,
        &platform,
        &me,
        &reference,
        Review::Message(f.message),
        typed,
        "message",
    )
    .await
}

/// `POST /instruction/demandes/:reference/modifications`.
#[handler]
pub async fn ask_changes(
    req: &Request,
    platform: Data<&Platform>,
    me: RecentlyVerified,
    Path(reference): Path<String>,
    Form(f): Form<ReviewForm>,
) -> PageResult<Response> {
    let typed = Typed {
        changes: f.changes.clone(),
        field: Some("changes"),
        ..Default::default()
    };
    act(
        req,
        &platform,
        &me.0,
        &reference,
        Review::AskChanges(f.changes),
        typed,
        "modifications",
    )
    .await
}

/// `POST /instruction/demandes/:reference/refuser`.
#[handler]
pub async fn refuse(
    req: &Request,
    platform: Data<&Platform>,
    me: RecentlyVerified,
    Path(reference): Path<String>,
    Form(f): Form<ReviewForm>,
) -> PageResult<Response> {
    let typed = Typed {
        reason: f.reason.clone(),
        field: Some("reason"),
        ..Default::default()
    };
    act(
        req,
        &platform,
        &me.0,
        &reference,
        Review::Refuse(f.reason),
        typed,
        "refusee",
    )
    .await
}

/// `POST /instruction/demandes/:reference/accepter`.
#[handler]
pub async fn accept(
    platform: Data<&Platform>,
    me: RecentlyVerified,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (departement, _) = reviewable_request(&platform, &me.0, &reference).await?;
    match acceptance::accept(&platform, departement, me.0.id, &reference).await {
        Ok(_) => Ok(Redirect::see_other(format!(
            "/instruction/demandes/{reference}?message=acceptee"
        ))
        .into_response()),
        Err(e) => review_error(e, &reference),
    }
}

// ---------------------------------------------------------------------------------------------
// Delegations.

pub struct DelegationLine {
    pub professional: String,
    pub name: String,
    pub email: String,
    pub tenant: String,
    pub territory: String,
}

#[derive(Template)]
#[template(path = "national_reviewers.html")]
struct ReviewersPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    lines: Vec<DelegationLine>,
    email: String,
    departement: String,
    email_error: Option<String>,
    dep_error: Option<String>,
    flash: Option<&'a str>,
}

async fn reviewers_page(
    req: &Request,
    platform: &Platform,
    email: String,
    departement: String,
    error: Option<(&'static str, String)>,
    flash: Option<&str>,
) -> PageResult<Response> {
    let rows: Vec<(ProfessionalId, String, String, TenantId, String)> = sqlx::query_as(
        "SELECT p.id, p.display_name, p.email, t.id, t.departement_code FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text
         WHERE a.role = 'reviewer' ORDER BY t.departement_code, p.display_name",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    let lines = rows
        .into_iter()
        .map(|(id, name, email, tenant, code)| DelegationLine {
            professional: id.to_string(),
            name,
            email,
            tenant: tenant.to_string(),
            territory: DepartementCode::parse(&code)
                .map(|d| format!("{} ({})", d.name(), d.as_str()))
                .unwrap_or(code),
        })
        .collect();
    let bad = error.is_some();
    html_status(
        &ReviewersPage {
            theme: THEME,
            nav: nav("/national/relecteurs"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            lines,
            email,
            departement,
            email_error: error
                .as_ref()
                .filter(|e| e.0 == "email")
                .map(|e| e.1.clone()),
            dep_error: error
                .as_ref()
                .filter(|e| e.0 == "departement")
                .map(|e| e.1.clone()),
            flash,
        },
        (bad).then_some(StatusCode::BAD_REQUEST),
    )
}

/// `GET /national/relecteurs`.
#[handler]
pub async fn reviewers(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::RequestReview).await?;
    let flash = match q.message.as_deref() {
        Some("delegue") => Some(
            "La délégation est enregistrée : cette personne instruit désormais les demandes de son département.",
        ),
        Some("retire") => Some("La délégation est retirée."),
        _ => None,
    };
    reviewers_page(req, &platform, String::new(), String::new(), None, flash).await
}

#[derive(Deserialize)]
pub struct DelegateForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    departement: String,
}

/// `POST /national/relecteurs`: delegates review of a département to one of its territory
/// admins.
#[handler]
pub async fn delegate(
    req: &Request,
    platform: Data<&Platform>,
    me: RecentlyVerified,
    Form(f): Form<DelegateForm>,
) -> PageResult<Response> {
    let me = me.0;
    guard::require(&platform, &me, Domain::National, Action::RequestReview).await?;
    let email = f.email.trim().to_lowercase();
    let again = |field: &'static str, text: &str| (field, text.to_owned());
    let Ok(departement) = DepartementCode::parse(&f.departement) else {
        let e = again(
            "departement",
            "Indiquez le code INSEE du département (par exemple 33, 2A, 974).",
        );
        return reviewers_page(req, &platform, email, f.departement, Some(e), None).await;
    };
    let council: Option<TenantId> = sqlx::query_scalar(
        "SELECT id FROM platform.tenants WHERE kind = 'departement' AND departement_code = $1",
    )
    .bind(departement.as_str())
    .fetch_optional(platform.platform_pool())
    .await?;
    let Some(council) = council else {
        let e = again(
            "departement",
            "Ce département n'a pas de collectivité inscrite : la délégation se fait au conseil départemental.",
        );
        return reviewers_page(req, &platform, email, f.departement, Some(e), None).await;
    };
    let professional: Option<ProfessionalId> = sqlx::query_scalar(
        "SELECT p.id FROM platform.professionals p
         JOIN platform.role_assignments a ON a.professional_id = p.id AND a.role = 'territory_admin'
         JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text AND t.departement_code = $2
         WHERE p.email = $1 AND p.active LIMIT 1",
    )
    .bind(&email)
    .bind(departement.as_str())
    .fetch_optional(platform.platform_pool())
    .await?;
    let Some(professional) = professional else {
        let e = again(
            "email",
            "Aucun administrateur de ce territoire n'a cette adresse : la délégation est réservée aux administrateurs d'une collectivité du département.",
        );
        return reviewers_page(req, &platform, email, f.departement, Some(e), None).await;
    };
    let mut tx = platform.platform_pool().begin().await?;
    crate::accounts::grant_role(
        &mut tx,
        professional,
        Role::Reviewer,
        council.domain(),
        Some(departement.as_str()),
    )
    .await?;
    security::append(
        &mut tx,
        SecurityEvent::ReviewDelegated,
        Some(professional),
        Some(me.id),
        json!({ "tenant": council, "departement": departement.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other("/national/relecteurs?message=delegue").into_response())
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    #[serde(default)]
    professionnel: String,
    #[serde(default)]
    collectivite: String,
}

/// `POST /national/relecteurs/retirer`.
#[handler]
pub async fn withdraw(
    platform: Data<&Platform>,
    me: RecentlyVerified,
    Form(f): Form<WithdrawForm>,
) -> PageResult<Response> {
    let me = me.0;
    guard::require(&platform, &me, Domain::National, Action::RequestReview).await?;
    let (Ok(professional), Ok(tenant)) = (
        f.professionnel.trim().parse::<ProfessionalId>(),
        f.collectivite.trim().parse::<TenantId>(),
    ) else {
        return Err(PageError::not_found());
    };
    let mut tx = platform.platform_pool().begin().await?;
    let removed = sqlx::query(
        "DELETE FROM platform.role_assignments WHERE professional_id = $1 AND role = 'reviewer' AND domain = $2",
    )
    .bind(professional)
    .bind(tenant.domain().to_string())

    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(PageError::not_found());
    }
    security::append(
        &mut tx,
        SecurityEvent::ReviewDelegationWithdrawn,
        Some(professional),
        Some(me.id),
        json!({ "tenant": tenant }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other("/national/relecteurs?message=retire").into_response())
}
