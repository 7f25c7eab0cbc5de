//! The aidant's pages: mandate list, creation (terms → FranceConnect → recap), a mandate, its
//! revocation and renewal, a usager, the aidant's activity, the référent's export, and the
//! public verification page. Every handler takes the request's [`Scope`] (current structure and
//! its territory) and goes through the guard before touching data.

use askama::Template;
use document_vault_bridge::vault::{Retention, Vault};
use foundation::app::Platform;
use foundation::auth::{csrf, factors, guard, secrets};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{DepartementCode, TenantContext};
use foundation::web::{NavItem, STATE, Theme, html};
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::attestation::{self, MandateTerms, RevocationTerms};
use crate::categories::{self, ALL, DURATIONS};
use crate::franceconnect::{FcClient, Identity};
use crate::mandates::{self, MandateError, NewMandate, State};
use crate::scope::{Scope, StructureInfo, VerifiedScope};

pub(crate) const THEME: &Theme = &STATE;

/// What the mandate pages share.
#[derive(Clone)]
pub struct Shared {
    pub fc: FcClient,
    pub vault: Vault,
    pub public_origin: String,
}

pub fn nav(current: &str) -> Vec<NavItem> {
    [
        ("/", "Accueil"),
        ("/mandats", "Mandats"),
        ("/activite", "Mon activité"),
        ("/courriers", "Courriers"),
        ("/compte", "Mon compte"),
    ]
    .into_iter()
    .map(|(href, label)| NavItem {
        href,
        label,
        current: href == current,
    })
    .collect()
}

pub(crate) fn db_error(e: sqlx::Error) -> poem::Error {
    tracing::error!(error = %e, "mandates: database error");
    poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE)
}

pub(crate) fn not_found() -> poem::Error {
    poem::Error::from_status(StatusCode::NOT_FOUND)
}

pub(crate) fn see_other(to: impl Into<String>) -> Response {
    Redirect::see_other(to.into()).into_response()
}

pub(crate) use foundation::paris::{date, date_time};

/// `1962-08-24` → `le 24/08/1962` (unknown month or day said as such).
pub(crate) fn birth_day(d: &str) -> String {
    if d.len() != 10 {
        return d.to_owned();
    }
    let (y, m, day) = (&d[..4], &d[5..7], &d[8..]);
    match (m, day) {
        ("00", _) => format!("en {y}"),
        (_, "00") => format!("en {m}/{y}"),
        _ => format!("le {day}/{m}/{y}"),
    }
}

pub(crate) fn birth_text(identity: &Identity) -> String {
    let shown = birth_day(&identity.birthdate);
    let place = if identity.birthcountry == "99100" {
        format!("à la commune INSEE {}", identity.birthplace)
    } else {
        format!("à l'étranger (pays INSEE {})", identity.birthcountry)
    };
    format!("{shown}, {place}")
}

// ---------------------------------------------------------------------------------------------
// Templates

#[derive(Template)]
#[template(path = "message.html")]
struct Notice<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    heading: &'a str,
    paragraphs: Vec<String>,
    link: Option<(&'a str, &'a str)>,
}

pub(crate) fn notice(
    status: StatusCode,
    heading: &str,
    paragraphs: Vec<String>,
    link: Option<(&str, &str)>,
) -> poem::Result<Response> {
    let mut resp = html(&Notice {
        theme: THEME,
        nav: nav("/mandats"),
        heading,
        paragraphs,
        link,
    })?;
    resp.set_status(status);
    Ok(resp)
}

pub struct CategoryChoice {
    pub code: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "new_mandate.html")]
struct NewMandatePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    categories: Vec<CategoryChoice>,
    durations: Vec<(i32, &'static str, bool)>,
    renewal_of: String,
    error: Option<String>,
    fc_configured: bool,
}

#[derive(Template)]
#[template(path = "recap.html")]
struct RecapPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    draft: String,
    structure: &'a str,
    usager: String,
    birth: String,
    email: String,
    categories: Vec<&'static str>,
    duration: &'static str,
    ends: String,
    argent: bool,
    error: Option<String>,
    phone: String,
    address: String,
}

pub struct Row {
    pub id: String,
    pub usager_id: String,
    pub usager: String,
    pub categories: String,
    pub created: String,
    pub expires: String,
    pub state: State,
}

#[derive(Template)]
#[template(path = "mandates.html")]
struct ListPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: &'a str,
    q: String,
    etat: String,
    categorie: String,
    states: Vec<(&'static str, &'static str)>,
    categories: Vec<(&'static str, &'static str)>,
    rows: Vec<Row>,
    page: i64,
    previous: Option<String>,
    next: Option<String>,
    can_create: bool,
    can_export: bool,
    csrf: String,
}

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
}

pub struct HistoryLine {
    pub when: String,
    pub what: String,
}

#[derive(Template)]
#[template(path = "usager.html")]
struct UsagerPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    id: String,
    usager: String,
    birth: String,
    email: String,
    /// How receipts reach the person now, in words.
    receipts: String,
    phone_known: bool,
    address_known: bool,
    /// Whether the structure holds a live mandate (contact can be changed only then).
    live: bool,
    flash: Option<(bool, String)>,
    phone: String,
    address: String,
    mandates: Vec<Row>,
    history: Vec<HistoryLine>,
}

pub struct Month {
    pub label: String,
    pub people: i64,
    pub demarches: i64,
    pub created: i64,
    pub bar: i64,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    months: Vec<Month>,
    total_people: i64,
    total_demarches: i64,
    total_created: i64,
    by_category: Vec<(&'static str, i64)>,
}

#[derive(Template)]
#[template(path = "verification.html")]
struct VerificationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    valid: bool,
    until: String,
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

// ---------------------------------------------------------------------------------------------
// List

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    etat: Option<String>,
    categorie: Option<String>,
    page: Option<i64>,
}

pub const PAGE_SIZE: i64 = 20;

const STATES: [(&str, &str); 5] = [
    ("", "Tous (en cours et terminés depuis moins d'un an)"),
    ("en-cours", "En cours"),
    ("bientot", "Expirent dans les 30 jours"),
    ("expires", "Expirés"),
    ("revoques", "Révoqués ou remplacés"),
];

/// The columns of a [`ListRow`]: mandates `m` with their usager `u` and their categories.
const LIST_ROWS: &str =
    "SELECT m.id, u.id, u.given_name, u.family_name, u.preferred_username, m.created_at,
        m.expires_at, m.ended_reason,
        ARRAY(SELECT a.category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY a.category)
    FROM mandates m JOIN usagers u ON u.id = m.usager_id";

/// Mandates still shown: live, or ended (expired, revoked, replaced) less than a year ago
/// (`least` skips a missing end).
const VISIBLE: &str = "least(m.ended_at, m.expires_at) > now() - interval '1 year'";

type ListRow = (
    Uuid,
    Uuid,
    String,
    String,
    Option<String>,
    OffsetDateTime,
    OffsetDateTime,
    Option<String>,
    Vec<String>,
);

/// One page of the structure's mandates, newest first, with the list's filters. Expired and
/// ended mandates stay listed one year.
pub async fn list_page(
    tenant: &TenantContext,
    structure: Uuid,
    search: Option<&str>,
    state: &str,
    category: Option<&str>,
    page: i64,
) -> Result<(Vec<ListRow>, bool), sqlx::Error> {
    let state_sql = match state {
        "en-cours" => "m.ended_at IS NULL AND m.expires_at > now()",
        "bientot" => {
            "m.ended_at IS NULL AND m.expires_at > now() AND m.expires_at <= now() + interval '30 days'"
        }
        "expires" => {
            "m.ended_at IS NULL AND m.expires_at <= now() AND m.expires_at > now() - interval '1 year'"
        }
        "revoques" => "m.ended_at IS NOT NULL AND m.ended_at > now() - interval '1 year'",
        _ => VISIBLE,
    };
    // Expiring soonest first, and most recently expired first; otherwise newest first.
    let order = match state {
        "bientot" => "m.expires_at, m.id",
        "expires" => "m.expires_at DESC, m.id DESC",
        _ => "m.created_at DESC, m.id DESC",
    };
    let search = search.map(mandates::search_key).filter(|s| !s.is_empty());
    let sql = format!(
        "{LIST_ROWS}
         WHERE m.structure_id = $1 AND {state_sql}
           AND ($2::text IS NULL OR u.search_name LIKE '%' || $2 || '%')
           AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM authorisations a WHERE a.mandate_id = m.id AND a.category = $3))
         ORDER BY {order}
         LIMIT $4 OFFSET $5"
    );
    let mut tx = tenant.begin().await?;
    let mut rows: Vec<ListRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(structure)
        .bind(search)
        .bind(category)
        .bind(PAGE_SIZE + 1)
        .bind((page - 1) * PAGE_SIZE)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    Ok((rows, more))
}

pub(crate) fn display_name(given: &str, family: &str, usage: Option<&str>) -> String {
    match usage {
        Some(u) if !u.is_empty() && u != family => format!("{family} ({u}) {given}"),
        _ => format!("{family} {given}"),
    }
}

fn to_row(r: ListRow, now: OffsetDateTime) -> Row {
    let (id, usager_id, given, family, usage, created, expires, reason, cats) = r;
    Row {
        id: id.to_string(),
        usager_id: usager_id.to_string(),
        usager: display_name(&given, &family, usage.as_deref()),
        categories: cats
            .iter()
            .map(|c| categories::label(c))
            .collect::<Vec<_>>()
            .join(", "),
        created: date(created),
        expires: date(expires),
        state: State::of(expires, reason.as_deref(), now),
    }
}

fn list_link(q: &str, etat: &str, categorie: &str, page: i64) -> String {
    let query = serde_urlencoded::to_string([
        ("q", q),
        ("etat", etat),
        ("categorie", categorie),
        ("page", &page.to_string()),
    ])
    .unwrap_or_default();
    format!("/mandats?{query}")
}

#[handler]
pub async fn list(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Query(query): Query<ListQuery>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    let q: String = query
        .q
        .unwrap_or_default()
        .trim()
        .chars()
        .take(100)
        .collect();
    let etat = query
        .etat
        .filter(|e| STATES.iter().any(|(code, _)| code == e))
        .unwrap_or_default();
    let categorie = query
        .categorie
        .and_then(|c| categories::by_code(&c))
        .map(|c| c.code)
        .unwrap_or("");
    let page = query.page.unwrap_or(1).clamp(1, 10_000);
    let (rows, more) = list_page(
        &scope.tenant,
        scope.structure.id,
        Some(q.as_str()).filter(|q| !q.is_empty()),
        &etat,
        Some(categorie).filter(|c| !c.is_empty()),
        page,
    )
    .await
    .map_err(db_error)?;
    let now = OffsetDateTime::now_utc();
    let domain = policies::Domain::Structure(scope.structure.id);
    let can_create = platform
        .guard
        .allows(scope.me.id, &domain, Action::MandateCreate)
        .await;
    let can_export = platform
        .guard
        .allows(scope.me.id, &domain, Action::MandateExport)
        .await;
    html(&ListPage {
        theme: THEME,
        nav: nav("/mandats"),
        structure: &scope.structure.name,
        previous: (page > 1).then(|| list_link(&q, &etat, categorie, page - 1)),
        next: more.then(|| list_link(&q, &etat, categorie, page + 1)),
        q,
        etat,
        categorie: categorie.to_owned(),
        states: STATES.to_vec(),
        categories: ALL.iter().map(|c| (c.code, c.label)).collect(),
        rows: rows.into_iter().map(|r| to_row(r, now)).collect(),
        page,
        can_create,
        can_export,
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
    })
}

// ---------------------------------------------------------------------------------------------
// Creation: terms

#[derive(Deserialize, Default)]
pub struct NewQuery {
    renouvellement: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn new_page(
    req: &Request,
    platform: &Platform,
    shared: &Shared,
    structure: &StructureInfo,
    chosen: &[String],
    duration: Option<i32>,
    renewal_of: Option<Uuid>,
    error: Option<String>,
) -> poem::Result<Response> {
    let failed = error.is_some();
    form_answer(
        &NewMandatePage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &structure.name,
            categories: ALL
                .iter()
                .filter(|c| structure.demarches.iter().any(|d| d == c.code))
                .map(|c| CategoryChoice {
                    code: c.code,
                    label: c.label,
                    checked: chosen.iter().any(|x| x == c.code),
                })
                .collect(),
            durations: DURATIONS
                .iter()
                .map(|(d, l)| (*d, *l, duration == Some(*d)))
                .collect(),
            renewal_of: renewal_of.map(|u| u.to_string()).unwrap_or_default(),
            fc_configured: shared.fc.configured(),
            error,
        },
        failed,
    )
}

/// The terms of a mandate being renewed: its categories still allowed, and its duration.
async fn renewal_terms(
    tenant: &TenantContext,
    structure: Uuid,
    mandate: Uuid,
) -> Result<Option<(Vec<String>, i32)>, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let row: Option<(i32, Vec<String>)> = sqlx::query_as(
        "SELECT m.duration_days, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category)
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(structure)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|(d, c)| (c, d)))
}

#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Query(q): Query<NewQuery>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let renewal = q
        .renouvellement
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok());
    let (chosen, duration) = match renewal {
        Some(id) => renewal_terms(&scope.tenant, scope.structure.id, id)
            .await
            .map_err(db_error)?
            .map(|(c, d)| (c, Some(d)))
            .ok_or_else(not_found)?,
        None => (Vec::new(), None),
    };
    new_page(
        req,
        &platform,
        &shared,
        &scope.structure,
        &chosen,
        duration,
        renewal,
        None,
    )
}

/// The terms form. Categories come as repeated `categories` fields, so the body is parsed here.
#[handler]
pub async fn new_submit(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    body: String,
) -> poem::Result<Response> {
    let action = Action::MandateCreate;
    guard::require_in_current_structure(&platform, &scope.me, action).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let chosen: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "categories")
        .map(|(_, v)| v.clone())
        .take(20)
        .collect();
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let duration = field("duree").and_then(|d| d.parse::<i32>().ok());
    let renewal_of = field("renouvellement")
        .filter(|s| !s.is_empty())
        .and_then(|s| Uuid::parse_str(&s).ok());
    if renewal_of.is_some() {
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    }
    let (cats, duration) =
        match mandates::validate_terms(&chosen, &scope.structure.demarches, duration) {
            Ok(terms) => terms,
            Err(e) => {
                return new_page(
                    req,
                    &platform,
                    &shared,
                    &scope.structure,
                    &chosen,
                    duration,
                    renewal_of,
                    Some(e.to_string()),
                );
            }
        };
    if !shared.fc.configured() {
        return notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![crate::franceconnect::FcError::NotConfigured.to_string()],
            Some(("/mandats", "Retour aux mandats")),
        );
    }
    // 256-bit random values; only the state's hash is stored.
    let state = secrets::new_token();
    let state_hash = secrets::token_hash(&state);
    let nonce = secrets::new_token();
    let draft = Uuid::now_v7();
    let codes: Vec<&str> = cats.iter().map(|c| c.code).collect();
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    if let Some(previous) = renewal_of {
        let ours: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM mandates WHERE id = $1 AND structure_id = $2)",
        )
        .bind(previous)
        .bind(scope.structure.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if !ours {
            return Err(not_found());
        }
    }
    sqlx::query(
        "INSERT INTO mandate_drafts (id, structure_id, aidant_id, session_hash, categories, duration_days, renewal_of,
                                     state_hash, nonce, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(mins => $10))",
    )
    .bind(draft)
    .bind(scope.structure.id)
    .bind(scope.me.id)
    .bind(&scope.me.session_hash)
    .bind(&codes)
    .bind(duration)
    .bind(renewal_of)
    .bind(&state_hash)
    .bind(&nonce)
    .bind(mandates::DRAFT_MINUTES as i32)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    match shared.fc.authorize_url(&state, &nonce).await {
        Ok(url) => Ok(see_other(url)),
        Err(e) => notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![e.to_string()],
            Some(("/mandats/nouveau", "Recommencer")),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Creation: FranceConnect return and logout

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// French wording of FranceConnect's OIDC errors (nothing from the query is echoed but a
/// known code).
fn fc_error_text(error: &str) -> &'static str {
    match error {
        "access_denied" => {
            "La personne a annulé l'identification ou refusé de transmettre ses informations."
        }
        "login_required" | "interaction_required" | "consent_required" => {
            "La personne doit se connecter à nouveau avec FranceConnect."
        }
        "invalid_request" | "invalid_scope" | "unauthorized_client" => {
            "FranceConnect a refusé la demande de la plateforme."
        }
        "server_error" | "temporarily_unavailable" => {
            "FranceConnect a rencontré un problème temporaire."
        }
        _ => "FranceConnect a signalé une erreur.",
    }
}

#[handler]
pub async fn fc_callback(
    shared: Data<&Shared>,
    scope: Scope,
    Query(q): Query<CallbackQuery>,
) -> poem::Result<Response> {
    let restart = Some(("/mandats/nouveau", "Recommencer la création du mandat"));
    if let Some(error) = q.error.as_deref() {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        tracing::info!(error = %code, has_description = q.error_description.is_some(), "franceconnect returned an error");
        return notice(
            StatusCode::BAD_REQUEST,
            "L'identification FranceConnect n'a pas abouti",
            vec![
                fc_error_text(&code).to_owned(),
                format!("Code d'erreur FranceConnect : {code}. Aucun mandat n'a été créé."),
            ],
            restart,
        );
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Retour de FranceConnect incomplet",
            vec!["Le retour de FranceConnect ne contient pas les informations attendues. Aucun mandat n'a été créé.".into()],
            restart,
        );
    };
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let draft: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, nonce FROM mandate_drafts
         WHERE state_hash = $1 AND session_hash = $2 AND structure_id = $3
           AND identity IS NULL AND completed_at IS NULL AND expires_at > now()
         FOR UPDATE",
    )
    .bind(secrets::token_hash(state))
    .bind(&scope.me.session_hash)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some((draft, nonce)) = draft else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Identification FranceConnect non reconnue",
            vec![
                "Ce retour de FranceConnect ne correspond à aucune création de mandat en cours dans votre session (déjà utilisé, expiré ou ouvert dans un autre navigateur).".into(),
                "Aucun mandat n'a été créé.".into(),
            ],
            restart,
        );
    };
    let (identity, id_token) = match shared.fc.identify(code, &nonce).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "franceconnect identification refused");
            return notice(
                StatusCode::BAD_GATEWAY,
                "L'identification FranceConnect n'a pas abouti",
                vec![e.to_string()],
                restart,
            );
        }
    };
    let logout_state = secrets::new_token();
    let logout_hash = secrets::token_hash(&logout_state);
    sqlx::query("UPDATE mandate_drafts SET identity = $2, logout_state_hash = $3 WHERE id = $1")
        .bind(draft)
        .bind(sqlx::types::Json(&identity))
        .bind(&logout_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    match shared.fc.logout_url(&id_token, &logout_state).await {
        Ok(url) => Ok(see_other(url)),
        // The identity is captured; without FranceConnect's logout the recap still follows.
        Err(_) => Ok(see_other(format!("/mandats/preparation/{draft}"))),
    }
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    state: Option<String>,
}

#[handler]
pub async fn fc_logged_out(scope: Scope, Query(q): Query<LogoutQuery>) -> poem::Result<Response> {
    let state = q.state.unwrap_or_default();
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let draft: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM mandate_drafts WHERE logout_state_hash = $1 AND session_hash = $2 AND expires_at > now()",
    )
    .bind(secrets::token_hash(&state))
    .bind(&scope.me.session_hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    match draft {
        Some(id) => Ok(see_other(format!("/mandats/preparation/{id}"))),
        None => notice(
            StatusCode::BAD_REQUEST,
            "Création de mandat introuvable",
            vec![MandateError::DraftUnavailable.to_string()],
            Some(("/mandats/nouveau", "Nouveau mandat")),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Creation: recap and confirmation

type DraftRow = (
    Vec<String>,
    i32,
    Option<Uuid>,
    Option<sqlx::types::Json<Identity>>,
    Option<OffsetDateTime>,
);

async fn load_draft(
    tenant: &TenantContext,
    scope: &Scope,
    draft: Uuid,
) -> Result<Option<DraftRow>, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let row: Option<DraftRow> = sqlx::query_as(
        "SELECT categories, duration_days, renewal_of, identity, completed_at FROM mandate_drafts
         WHERE id = $1 AND session_hash = $2 AND structure_id = $3 AND expires_at > now()",
    )
    .bind(draft)
    .bind(&scope.me.session_hash)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

fn recap_page(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    draft: Uuid,
    row: &DraftRow,
    identity: &Identity,
    // What went wrong, with what was typed (shown again); nothing on the first display.
    error: Option<(String, &ContactForm)>,
) -> poem::Result<Response> {
    let none = ContactForm::default();
    let (error, typed) = match error {
        Some((message, typed)) => (Some(message), typed),
        None => (None, &none),
    };
    let (cats, duration, _, _, _) = row;
    let labels: Vec<&'static str> = cats
        .iter()
        .filter_map(|c| categories::by_code(c))
        .map(|c| c.label)
        .collect();
    let failed = error.is_some();
    form_answer(
        &RecapPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            draft: draft.to_string(),
            structure: &scope.structure.name,
            usager: identity.display_name(),
            birth: birth_text(identity),
            email: identity
                .email
                .clone()
                .unwrap_or_else(|| "aucune".to_owned()),
            argent: cats.iter().any(|c| c == "argent"),
            categories: labels,
            duration: categories::duration_label(*duration),
            ends: date(OffsetDateTime::now_utc() + Duration::days(i64::from(*duration))),
            error,
            phone: typed.telephone.clone().unwrap_or_default(),
            address: typed.adresse.clone().unwrap_or_default(),
        },
        failed,
    )
}

/// A draft of this session whose usager is identified and which is not completed yet; or the
/// answer to give instead (not found, already completed, not identified yet).
async fn identified_draft(
    scope: &Scope,
    draft: Uuid,
) -> poem::Result<Result<(DraftRow, Identity), poem::Result<Response>>> {
    let Some(row) = load_draft(&scope.tenant, scope, draft)
        .await
        .map_err(db_error)?
    else {
        return Ok(Err(notice(
            StatusCode::NOT_FOUND,
            "Création de mandat introuvable",
            vec![MandateError::DraftUnavailable.to_string()],
            Some(("/mandats/nouveau", "Nouveau mandat")),
        )));
    };
    if row.4.is_some() {
        return Ok(Err(Ok(see_other(format!(
            "/mandats/preparation/{draft}/termine"
        )))));
    }
    let Some(identity) = row.3.clone().map(|j| j.0) else {
        return Ok(Err(notice(
            StatusCode::CONFLICT,
            "La personne n'est pas encore identifiée",
            vec![MandateError::NotIdentified.to_string()],
            Some(("/mandats/nouveau", "Recommencer")),
        )));
    };
    Ok(Ok((row, identity)))
}

/// A form page: 422 when it shows an error (nothing was done), 200 otherwise.
fn form_answer(page: &impl Template, failed: bool) -> poem::Result<Response> {
    let mut resp = html(page)?;
    if failed {
        resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(resp)
}

fn parse_id(s: &str) -> poem::Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| not_found())
}

#[handler]
pub async fn recap(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let draft = parse_id(&id)?;
    let (row, identity) = match identified_draft(&scope, draft).await? {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    recap_page(req, &platform, &scope, draft, &row, &identity, None)
}

/// The usager's optional contact for receipts, as typed on the recap.
#[derive(Deserialize, Default)]
pub struct ContactForm {
    telephone: Option<String>,
    adresse: Option<String>,
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    code: Option<String>,
    declaration: Option<String>,
    telephone: Option<String>,
    adresse: Option<String>,
}

fn factor_message(e: &factors::FactorError) -> String {
    match e {
        factors::FactorError::Blocked(until) => format!(
            "Trop de codes incorrects : réessayez après {}.",
            date_time(*until)
        ),
        factors::FactorError::Locked => {
            "Votre second facteur est verrouillé après trop d'erreurs : demandez à votre référent de le débloquer.".into()
        }
        factors::FactorError::Replayed => {
            "Ce code a déjà servi : attendez le code suivant (30 secondes).".into()
        }
        factors::FactorError::NoFactor => {
            "Aucun second facteur actif sur votre compte : contactez votre référent.".into()
        }
        _ => "Code incorrect : saisissez les 6 chiffres affichés en ce moment.".into(),
    }
}

/// Confirms the recap: the aidant's TOTP code and the information declaration, then the
/// mandate (with supersession and journal) in one territory transaction, then its attestation.
#[handler]
pub async fn confirm(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let draft = parse_id(&id)?;
    let (row, identity) = match identified_draft(&scope, draft).await? {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let typed = ContactForm {
        telephone: form.telephone.clone(),
        adresse: form.adresse.clone(),
    };
    // The recap again, with what went wrong and what was typed: nothing was done.
    let again = |message: String| {
        recap_page(
            req,
            &platform,
            &scope,
            draft,
            &row,
            &identity,
            Some((message, &typed)),
        )
    };
    if form.declaration.as_deref() != Some("oui") {
        return again(MandateError::DeclarationMissing.to_string());
    }
    let (phone, address) = match foundation::outbox::typed_contact(
        typed.telephone.as_deref().unwrap_or_default(),
        typed.adresse.as_deref().unwrap_or_default(),
    ) {
        Ok(contact) => contact,
        Err(e) => {
            return again(e.to_string());
        }
    };
    let code: String = form
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let now = OffsetDateTime::now_utc();
    let mut ptx = platform.platform_pool().begin().await.map_err(db_error)?;
    let checked = factors::check_code(
        &mut ptx,
        &platform.cipher,
        scope.me.id,
        &code,
        now,
        factors::Trust::Known,
    )
    .await;
    ptx.commit().await.map_err(db_error)?;
    if let Err(e) = checked {
        return again(factor_message(&e));
    }
    let (cats, duration, renewal_of, _, _) = &row;
    if renewal_of.is_some() {
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    }
    // The structure may have narrowed its categories since the terms were chosen.
    let (cats, duration) =
        match mandates::validate_terms(cats, &scope.structure.demarches, Some(*duration)) {
            Ok(t) => t,
            Err(e) => {
                return again(e.to_string());
            }
        };
    // The attestation is built and uploaded first, then recorded in the mandate's own
    // transaction; if the store is down, the mandate is created without it.
    let mandate_id = Uuid::now_v7();
    let codes: Vec<String> = cats.iter().map(|c| c.code.to_owned()).collect();
    let pdf = attestation_pdf(
        &platform,
        &shared,
        &scope,
        &AttestationFacts {
            mandate: mandate_id,
            identity: &identity,
            aidant_name: scope.me.display_name.clone(),
            categories: codes,
            duration_days: duration,
            created: now,
            expires: now + Duration::days(i64::from(duration)),
            legal_text_version: mandates::LEGAL_TEXT_VERSION.to_owned(),
        },
    );
    let upload = upload_attestation(&platform, &shared, &scope, &pdf).await;
    let created = async {
        let mut tx = scope.tenant.begin().await?;
        let completed: Option<Option<OffsetDateTime>> = sqlx::query_scalar(
            "SELECT completed_at FROM mandate_drafts WHERE id = $1 FOR UPDATE",
        )
        .bind(draft)
        .fetch_optional(&mut *tx)
        .await?;
        if completed.flatten().is_some() {
            return Err(MandateError::DraftUnavailable);
        }
        let usager =
            mandates::upsert_usager(&mut tx, &identity, scope.structure.id, scope.me.id).await?;
        mandates::set_contact(
            &mut tx,
            usager,
            scope.structure.id,
            scope.me.id,
            mandates::Change::typed(phone.as_deref()),
            mandates::Change::typed(address.as_deref()),
        )
        .await?;
        let mandate = mandates::create(
            &mut tx,
            &NewMandate {
                id: mandate_id,
                structure: scope.structure.id,
                aidant: scope.me.id,
                usager,
                categories: cats,
                duration_days: duration,
                renewal_of: *renewal_of,
                idempotency_key: Some(format!("draft:{draft}")),
            },
            now,
        )
        .await?;
        let attached = match &upload {
            Some(upload) if mandate == mandate_id => {
                attach_attestation(&mut tx, &shared, &scope, mandate, usager, upload).await?
            }
            _ => false,
        };
        // The identity leaves the draft: it now lives in the usager's row only.
        sqlx::query(
            "UPDATE mandate_drafts SET completed_at = now(), usager_id = $2, identity = NULL WHERE id = $1",
        )
        .bind(draft)
        .bind(usager)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<(Uuid, bool), MandateError>((mandate, attached))
    }
    .await;
    if let (Some(upload), false) = (&upload, matches!(created, Ok((_, true)))) {
        shared.vault.discard(upload).await;
    }
    match created {
        Ok((mandate, _)) => Ok(see_other(format!("/mandats/{mandate}?message=cree"))),
        Err(MandateError::DraftUnavailable) => {
            Ok(see_other(format!("/mandats/preparation/{draft}/termine")))
        }
        Err(e) => again(e.to_string()),
    }
}

/// After a double submission: the mandate the draft produced.
#[handler]
pub async fn draft_completed(scope: Scope, Path(id): Path<String>) -> poem::Result<Response> {
    let draft = parse_id(&id)?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let mandate: Option<Uuid> = sqlx::query_scalar(
        "SELECT m.id FROM mandates m WHERE m.idempotency_key = $1 AND m.structure_id = $2",
    )
    .bind(format!("draft:{draft}"))
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    match mandate {
        Some(m) => Ok(see_other(format!("/mandats/{m}"))),
        None => Err(not_found()),
    }
}

// ---------------------------------------------------------------------------------------------
// Attestations

/// The public verification address of a mandate: unguessable, and says nothing but validity.
pub fn verification_url(
    platform: &Platform,
    origin: &str,
    departement: DepartementCode,
    mandate: Uuid,
) -> String {
    format!(
        "{origin}/verifier/{}/{mandate}/{}",
        departement.as_str().to_lowercase(),
        verification_token(platform, departement, mandate)
    )
}

fn verification_token(platform: &Platform, departement: DepartementCode, mandate: Uuid) -> String {
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

type AttestationRow = (
    Uuid,
    OffsetDateTime,
    OffsetDateTime,
    i32,
    String,
    Uuid,
    Option<Uuid>,
    Vec<String>,
);

/// What a mandate attestation states, gathered by its caller.
pub struct AttestationFacts<'a> {
    pub mandate: Uuid,
    pub identity: &'a Identity,
    pub aidant_name: String,
    pub categories: Vec<String>,
    pub duration_days: i32,
    pub created: OffsetDateTime,
    pub expires: OffsetDateTime,
    pub legal_text_version: String,
}

/// The attestation PDF of a mandate.
pub fn attestation_pdf(
    platform: &Platform,
    shared: &Shared,
    scope: &Scope,
    facts: &AttestationFacts,
) -> Vec<u8> {
    attestation::mandate_pdf(&MandateTerms {
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
            &shared.public_origin,
            scope.tenant.departement(),
            facts.mandate,
        ),
    })
}

/// Encrypts and writes an attestation to the object store (not yet recorded). A store outage
/// gives `None`: the act goes on, and the attestation can be produced again later.
pub async fn upload_attestation(
    platform: &Platform,
    shared: &Shared,
    scope: &Scope,
    pdf: &[u8],
) -> Option<document_vault_bridge::vault::Upload> {
    let mut conn = platform.platform_pool().acquire().await.ok()?;
    match shared
        .vault
        .upload(&mut conn, scope.structure.tenant_id, pdf)
        .await
    {
        Ok(upload) => Some(upload),
        Err(e) => {
            tracing::warn!(error = %e, "attestation not stored");
            None
        }
    }
}

/// Records an uploaded attestation as the mandate's, in the caller's territory transaction,
/// with its journal entry (hash included). False if the mandate already has one.
pub async fn attach_attestation(
    tx: &mut foundation::tenancy::TenantTx,
    shared: &Shared,
    scope: &Scope,
    mandate: Uuid,
    usager: Uuid,
    upload: &document_vault_bridge::vault::Upload,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE mandates SET attestation_id = $2, attestation_sha256 = $3 WHERE id = $1 AND attestation_id IS NULL",
    )
    .bind(mandate)
    .bind(upload.id)
    .bind(&upload.sha256)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    shared
        .vault
        .record(tx, upload, "mandate_attestation", Retention::MandateArchive)
        .await?;
    journal::append(
        tx,
        NewEntry::new(Event::AttestationProduced)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .usager(usager)
            .mandate(mandate)
            .details(json!({ "kind": "mandate", "document": upload.id, "sha256": hex::encode(&upload.sha256) })),
    )
    .await?;
    Ok(true)
}

/// Builds, stores and records the attestation of an existing mandate (when it could not be
/// stored at creation). Does nothing if it already exists.
pub async fn produce_attestation(
    platform: &Platform,
    shared: &Shared,
    scope: &Scope,
    mandate: Uuid,
) -> Result<Uuid, MandateError> {
    let mut tx = scope.tenant.begin().await?;
    let row: Option<AttestationRow> = sqlx::query_as(
        "SELECT m.usager_id, m.created_at, m.expires_at, m.duration_days, m.legal_text_version, m.created_by,
                m.attestation_id, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category)
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    let (usager, created, expires, duration, version, aidant, existing, cats) =
        row.ok_or(MandateError::NotFound)?;
    if let Some(doc) = existing {
        return Ok(doc);
    }
    let (given, usage, family, birthdate, birthplace, birthcountry): (
        String,
        Option<String>,
        String,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT given_name, preferred_username, family_name, birthdate, birthplace, birthcountry
         FROM usagers WHERE id = $1",
    )
    .bind(usager)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let identity = Identity {
        sub: String::new(),
        given_name: given,
        family_name: family,
        preferred_username: usage,
        birthdate,
        gender: String::new(),
        birthplace,
        birthcountry,
        email: None,
    };
    let aidant_name: String =
        sqlx::query_scalar("SELECT display_name FROM platform.professionals WHERE id = $1")
            .bind(aidant)
            .fetch_optional(platform.platform_pool())
            .await?
            .unwrap_or_else(|| "Aidant".into());
    let pdf = attestation_pdf(
        platform,
        shared,
        scope,
        &AttestationFacts {
            mandate,
            identity: &identity,
            aidant_name,
            categories: cats,
            duration_days: duration,
            created,
            expires,
            legal_text_version: version,
        },
    );
    let upload = upload_attestation(platform, shared, scope, &pdf)
        .await
        .ok_or(MandateError::Database)?;
    let attached = async {
        let mut tx = scope.tenant.begin().await?;
        let attached = attach_attestation(&mut tx, shared, scope, mandate, usager, &upload).await?;
        tx.commit().await?;
        Ok::<bool, sqlx::Error>(attached)
    }
    .await;
    match attached {
        Ok(true) => Ok(upload.id),
        Ok(false) | Err(_) => {
            shared.vault.discard(&upload).await;
            Err(MandateError::Database)
        }
    }
}

#[handler]
pub async fn attestation_retry(
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> poem::Result<Response> {
    // Producing the attestation finishes the mandate's creation: the same right, and the same
    // recent code, as creating it.
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let mandate = parse_id(&id)?;
    match produce_attestation(&platform, &shared, &scope, mandate).await {
        Ok(_) => Ok(see_other(format!("/mandats/{mandate}?message=attestation"))),
        Err(MandateError::NotFound) => Err(not_found()),
        Err(_) => Ok(see_other(format!(
            "/mandats/{mandate}?message=attestation-indisponible"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// One mandate

#[derive(Deserialize)]
pub struct MessageQuery {
    message: Option<String>,
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

type MandateRow = (
    Uuid,
    String,
    String,
    Option<String>,
    OffsetDateTime,
    OffsetDateTime,
    i32,
    String,
    Option<String>,
    Option<Uuid>,
);

/// Category, revoked, superseded, revocation attestation.
type AuthorisationRow = (
    String,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<Uuid>,
);

/// Given names, family name, usage name, birth date, birthplace, country, e-mail.
type UsagerRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

#[handler]
pub async fn show(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    let mandate = parse_id(&id)?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let row: Option<MandateRow> = sqlx::query_as(
        "SELECT u.id, u.given_name, u.family_name, u.preferred_username, m.created_at, m.expires_at, m.duration_days,
                m.legal_text_version, m.ended_reason, m.attestation_id
         FROM mandates m JOIN usagers u ON u.id = m.usager_id
         WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some((
        usager,
        given,
        family,
        usage,
        created,
        expires,
        duration,
        version,
        reason,
        attestation,
    )) = row
    else {
        return Err(not_found());
    };
    let auths: Vec<AuthorisationRow> = sqlx::query_as(
        "SELECT category, revoked_at, superseded_at, revocation_attestation_id FROM authorisations
             WHERE mandate_id = $1 ORDER BY category",
    )
    .bind(mandate)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let now = OffsetDateTime::now_utc();
    let state = State::of(expires, reason.as_deref(), now);
    let departement = scope.tenant.departement();
    let link = |doc: Uuid| {
        shared
            .vault
            .link(departement.as_str(), doc, Duration::minutes(10), now)
    };
    let mut revocations: Vec<Uuid> = auths.iter().filter_map(|a| a.3).collect();
    revocations.dedup();
    let authorisations = auths
        .iter()
        .filter_map(|(code, revoked, superseded, _)| {
            let c = categories::by_code(code)?;
            let (status, live) = match (revoked, superseded) {
                (Some(at), _) => (format!("révoquée le {}", date(*at)), false),
                (_, Some(at)) => (
                    format!("remplacée le {} par un nouveau mandat", date(*at)),
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
        .collect();
    let domain = policies::Domain::Structure(scope.structure.id);
    let can_revoke = state.is_live()
        && platform
            .guard
            .allows(scope.me.id, &domain, Action::MandateRevoke)
            .await;
    let can_renew = platform
        .guard
        .allows(scope.me.id, &domain, Action::MandateRenew)
        .await;
    let can_attest = platform
        .guard
        .allows(scope.me.id, &domain, Action::MandateCreate)
        .await;
    html(&MandatePage {
        theme: THEME,
        nav: nav("/mandats"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        id: mandate.to_string(),
        structure: &scope.structure.name,
        usager_id: usager.to_string(),
        usager: display_name(&given, &family, usage.as_deref()),
        state,
        created: date_time(created),
        expires: date(expires - Duration::seconds(1)),
        duration: categories::duration_label(duration),
        legal_text_version: version,
        authorisations,
        attestation: attestation.map(link),
        revocations: revocations.into_iter().map(link).collect(),
        can_revoke,
        can_renew,
        can_attest,
        flash: mandate_flash(q.message.as_deref()),
    })
}

#[derive(Deserialize)]
pub struct RevokeForm {
    categorie: Option<String>,
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
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateRevoke).await?;
    let mandate = parse_id(&id)?;
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
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let outcome = mandates::revoke(
        &mut tx,
        scope.structure.id,
        mandate,
        category,
        scope.me.id,
        now,
    )
    .await;
    let (revoked, whole) = match outcome {
        Ok(done) => done,
        Err(MandateError::NotFound) => return Err(not_found()),
        Err(MandateError::NothingLive) => {
            return Ok(see_other(format!(
                "/mandats/{mandate}?message=rien-a-revoquer"
            )));
        }
        Err(_) => return Err(poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE)),
    };
    tx.commit().await.map_err(db_error)?;
    let _ =
        produce_revocation_attestation(&platform, &shared, &scope, mandate, &revoked, whole, now)
            .await;
    Ok(see_other(format!("/mandats/{mandate}?message=revoque")))
}

async fn produce_revocation_attestation(
    platform: &Platform,
    shared: &Shared,
    scope: &Scope,
    mandate: Uuid,
    revoked: &[String],
    whole: bool,
    at: OffsetDateTime,
) -> Result<Uuid, MandateError> {
    let mut tx = scope.tenant.begin().await?;
    let (usager, given, family, usage): (Uuid, String, String, Option<String>) = sqlx::query_as(
        "SELECT u.id, u.given_name, u.family_name, u.preferred_username FROM mandates m JOIN usagers u ON u.id = m.usager_id
         WHERE m.id = $1",
    )
    .bind(mandate)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let pdf = attestation::revocation_pdf(&RevocationTerms {
        mandate_id: mandate.to_string(),
        usager_name: display_name(&given, &family, usage.as_deref()),
        structure_name: scope.structure.name.clone(),
        revoked_by: scope.me.display_name.clone(),
        categories: revoked
            .iter()
            .map(|c| categories::label(c).to_owned())
            .collect(),
        whole_mandate: whole,
        at: date_time(at),
    });
    let sha = Sha256::digest(&pdf).to_vec();
    let mut ptx = platform.platform_pool().acquire().await?;
    let doc = shared
        .vault
        .put(
            &scope.tenant,
            &mut ptx,
            scope.structure.tenant_id,
            "revocation_attestation",
            &pdf,
            Retention::MandateArchive,
        )
        .await
        .map_err(|_| MandateError::Database)?;
    let mut tx = scope.tenant.begin().await?;
    sqlx::query(
        "UPDATE authorisations SET revocation_attestation_id = $3
         WHERE mandate_id = $1 AND category = ANY($2) AND revocation_attestation_id IS NULL",
    )
    .bind(mandate)
    .bind(revoked)
    .bind(doc)
    .execute(&mut *tx)
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::AttestationProduced)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .usager(usager)
            .mandate(mandate)
            .details(json!({ "kind": "revocation", "document": doc, "sha256": hex::encode(&sha) })),
    )
    .await?;
    tx.commit().await?;
    Ok(doc)
}

/// Renewal: a new mandate with the same terms, which needs the usager's FranceConnect login
/// again — so it starts at the terms form, prefilled.
#[handler]
pub async fn renew(
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    let mandate = parse_id(&id)?;
    // Another structure's (or territory's) mandate, or none: 404, as for every id.
    renewal_terms(&scope.tenant, scope.structure.id, mandate)
        .await
        .map_err(db_error)?
        .ok_or_else(not_found)?;
    Ok(see_other(format!(
        "/mandats/nouveau?renouvellement={mandate}"
    )))
}

#[handler]
pub async fn explanation(
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    let mandate = parse_id(&id)?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let row: Option<(OffsetDateTime, Vec<String>)> = sqlx::query_as(
        "SELECT m.expires_at, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category)
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let (expires, cats) = row.ok_or_else(not_found)?;
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

// ---------------------------------------------------------------------------------------------
// Usager

fn history_text(kind: &str, details: &serde_json::Value) -> String {
    let category = details["category"]
        .as_str()
        .map(categories::label)
        .unwrap_or("");
    match kind {
        "usager_identified" => "Première identification par FranceConnect".into(),
        "usager_identity_updated" => "Identité mise à jour par FranceConnect".into(),
        "mandate_created" => format!(
            "Mandat créé ({})",
            details["categories"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|c| c.as_str())
                    .map(categories::label)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        "authorisation_superseded" => {
            format!("Démarche « {category} » remplacée par un nouveau mandat")
        }
        "authorisation_revoked" => format!("Démarche « {category} » révoquée"),
        "mandate_revoked" => "Mandat entièrement révoqué".into(),
        "attestation_produced" => "Attestation produite".into(),
        "mandate_used" => format!("Mandat utilisé pour « {category} »"),
        "mandate_expiry_reminder_queued" => "Rappel d'expiration envoyé à la structure".into(),
        "usager_contact_updated" => {
            let what = |field: &str, name: &str| match details[field].as_str() {
                Some("updated") => Some(format!("{name} enregistré")),
                Some("removed") => Some(format!("{name} supprimé")),
                _ => None,
            };
            let changes: Vec<String> = [
                what("phone", "téléphone mobile"),
                what("postal_address", "adresse postale"),
            ]
            .into_iter()
            .flatten()
            .collect();
            format!(
                "Coordonnées pour les accusés de réception : {}",
                changes.join(", ")
            )
        }
        other => other.to_owned(),
    }
}

#[handler]
pub async fn usager_page(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::UsagerRead).await?;
    let usager = parse_id(&id)?;
    let flash = match q.message.as_deref() {
        Some("coordonnees") => Some((true, "Les coordonnées sont enregistrées.".to_owned())),
        Some("coordonnees-inchangees") => Some((
            true,
            "Rien n'a changé : les coordonnées étaient déjà celles-ci.".to_owned(),
        )),
        _ => None,
    };
    usager_view(
        req,
        &platform,
        &scope,
        usager,
        flash,
        &ContactForm::default(),
    )
    .await
}

/// The usager's page: identity, how receipts reach them, the structure's mandates, history.
/// Only for a usager with whom the structure has (or had, within a year) a mandate.
async fn usager_view(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    usager: Uuid,
    flash: Option<(bool, String)>,
    typed: &ContactForm,
) -> poem::Result<Response> {
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let found: Option<UsagerRow> =
        sqlx::query_as(
            "SELECT given_name, family_name, preferred_username, birthdate, birthplace, birthcountry, email
             FROM usagers u WHERE u.id = $1 AND EXISTS (
                SELECT 1 FROM mandates m WHERE m.usager_id = u.id AND m.structure_id = $2
                  AND least(m.ended_at, m.expires_at) > now() - interval '1 year')",
        )
        .bind(usager)
        .bind(scope.structure.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    let Some((given, family, usage, birthdate, birthplace, birthcountry, email)) = found else {
        return Err(not_found());
    };
    let (phone, postal_address, live): (Option<String>, Option<String>, bool) = sqlx::query_as(
        "SELECT c.phone, c.postal_address, EXISTS (SELECT 1 FROM mandates m WHERE m.usager_id = u.id
                  AND m.structure_id = $2 AND m.ended_at IS NULL AND m.expires_at > now())
         FROM usagers u
         LEFT JOIN usager_contacts c ON c.usager_id = u.id AND c.structure_id = $2
         WHERE u.id = $1",
    )
    .bind(usager)
    .bind(scope.structure.id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let rows: Vec<ListRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LIST_ROWS} WHERE m.usager_id = $1 AND m.structure_id = $2 AND {VISIBLE}
         ORDER BY m.created_at DESC"
    )))
    .bind(usager)
    .bind(scope.structure.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    let events: Vec<(OffsetDateTime, String, String)> = sqlx::query_as(
        "SELECT at, kind, details FROM journal WHERE usager_id = $1 AND structure_id = $2 ORDER BY id DESC LIMIT 200",
    )
    .bind(usager)
    .bind(scope.structure.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let contact = foundation::outbox::UsagerContact {
        email: email.clone(),
        phone: phone.clone(),
        postal_address: postal_address.clone(),
    };
    let receipts = match contact.route() {
        Some((foundation::outbox::Channel::Email, _)) => {
            "par courriel, à l'adresse donnée par FranceConnect".to_owned()
        }
        Some((foundation::outbox::Channel::Sms, number)) => {
            // The end of the number is enough to recognise it.
            let end: String = number
                .chars()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("par SMS, au numéro de téléphone mobile enregistré (se terminant par {end})")
        }
        Some((foundation::outbox::Channel::Letter, _)) => {
            "par courrier, à l'adresse postale enregistrée (votre structure l'imprime)".to_owned()
        }
        None => {
            "aucun : ni adresse électronique, ni téléphone mobile, ni adresse postale".to_owned()
        }
    };
    let identity = Identity {
        sub: String::new(),
        given_name: given.clone(),
        family_name: family.clone(),
        preferred_username: usage.clone(),
        birthdate,
        gender: String::new(),
        birthplace,
        birthcountry,
        email: email.clone(),
    };
    let now = OffsetDateTime::now_utc();
    let failed = flash.as_ref().is_some_and(|(ok, _)| !ok);
    form_answer(
        &UsagerPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            id: usager.to_string(),
            usager: display_name(&given, &family, usage.as_deref()),
            birth: birth_text(&identity),
            email: email.unwrap_or_else(|| "aucune".into()),
            receipts,
            phone_known: phone.is_some(),
            address_known: postal_address.is_some(),
            live,
            flash,
            phone: typed.telephone.clone().unwrap_or_default(),
            address: typed.adresse.clone().unwrap_or_default(),
            mandates: rows.into_iter().map(|r| to_row(r, now)).collect(),
            history: events
                .into_iter()
                .map(|(at, kind, details)| HistoryLine {
                    when: date_time(at),
                    what: history_text(&kind, &serde_json::from_str(&details).unwrap_or_default()),
                })
                .collect(),
        },
        failed,
    )
}

#[derive(Deserialize)]
pub struct ContactChangeForm {
    telephone: Option<String>,
    adresse: Option<String>,
    supprimer_telephone: Option<String>,
    supprimer_adresse: Option<String>,
}

/// Replaces or removes the usager's mobile phone and postal address (a wrong number would send
/// receipts to a stranger), for a usager of a live mandate of the structure.
#[handler]
pub async fn usager_contact(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Form(form): Form<ContactChangeForm>,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::UsagerContactUpdate).await?;
    let usager = parse_id(&id)?;
    let typed = ContactForm {
        telephone: form.telephone.clone(),
        adresse: form.adresse.clone(),
    };
    let (phone, address) = match foundation::outbox::typed_contact(
        typed.telephone.as_deref().unwrap_or_default(),
        typed.adresse.as_deref().unwrap_or_default(),
    ) {
        Ok(contact) => contact,
        Err(e) => {
            return usager_view(
                req,
                &platform,
                &scope,
                usager,
                Some((false, e.to_string())),
                &typed,
            )
            .await;
        }
    };
    fn change<'a>(remove: &Option<String>, value: Option<&'a str>) -> mandates::Change<'a> {
        if remove.as_deref() == Some("oui") {
            mandates::Change::Remove
        } else {
            mandates::Change::typed(value)
        }
    }
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM mandates WHERE usager_id = $1 AND structure_id = $2
                          AND ended_at IS NULL AND expires_at > now())",
    )
    .bind(usager)
    .bind(scope.structure.id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    if !live {
        return Err(not_found());
    }
    let changed = mandates::set_contact(
        &mut tx,
        usager,
        scope.structure.id,
        scope.me.id,
        change(&form.supprimer_telephone, phone.as_deref()),
        change(&form.supprimer_adresse, address.as_deref()),
    )
    .await
    .map_err(|_| poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE))?;
    tx.commit().await.map_err(db_error)?;
    let message = if changed {
        "coordonnees"
    } else {
        "coordonnees-inchangees"
    };
    Ok(see_other(format!("/usagers/{usager}?message={message}")))
}

// ---------------------------------------------------------------------------------------------
// Activity and export

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

#[handler]
pub async fn activity(platform: Data<&Platform>, scope: Scope) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::ActivityReadOwn).await?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    // The last twelve months of the aidant's own acts in this territory: people helped (one
    // person counted once a month), démarches done (uses of a mandate) and mandates created.
    let rows: Vec<(OffsetDateTime, i64, i64, i64)> = sqlx::query_as(
        "SELECT date_trunc('month', at) AS month,
                count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')),
                count(*) FILTER (WHERE kind = 'mandate_used'),
                count(*) FILTER (WHERE kind = 'mandate_created')
         FROM journal WHERE professional_id = $1 AND at > date_trunc('month', now()) - interval '11 months'
         GROUP BY 1 ORDER BY 1",
    )
    .bind(scope.me.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    let totals: (i64, i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')),
                count(*) FILTER (WHERE kind = 'mandate_used'),
                count(*) FILTER (WHERE kind = 'mandate_created')
         FROM journal WHERE professional_id = $1 AND at > date_trunc('month', now()) - interval '11 months'",
    )
    .bind(scope.me.id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let by_cat: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT details::jsonb ->> 'category', count(*) FROM journal
         WHERE professional_id = $1 AND kind = 'mandate_used' AND at > now() - interval '1 year'
         GROUP BY 1 ORDER BY 2 DESC",
    )
    .bind(scope.me.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let max = rows
        .iter()
        .map(|r| r.1.max(r.2).max(r.3))
        .max()
        .unwrap_or(0)
        .max(1);
    let months = rows
        .into_iter()
        .map(|(m, people, demarches, created)| Month {
            label: format!(
                "{} {}",
                MONTHS[usize::from(u8::from(m.month())) - 1],
                m.year()
            ),
            people,
            demarches,
            created,
            bar: people * 100 / max,
        })
        .collect();
    html(&ActivityPage {
        theme: THEME,
        nav: nav("/activite"),
        months,
        total_people: totals.0,
        total_demarches: totals.1,
        total_created: totals.2,
        by_category: by_cat
            .into_iter()
            .filter_map(|(c, n)| Some((categories::by_code(c.as_deref()?)?.label, n)))
            .collect(),
    })
}

fn csv_field(s: &str) -> String {
    // Quote every field; neutralise spreadsheet formulas (OWASP's list of leading characters).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The référent's CSV export of the structure's mandates (those a list shows), journaled. A
/// POST (with the CSRF token) so that no link or image elsewhere can make a browser export.
#[handler]
pub async fn export(platform: Data<&Platform>, scope: Scope) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateExport).await?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let rows: Vec<ListRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LIST_ROWS} WHERE m.structure_id = $1 AND {VISIBLE} ORDER BY m.created_at DESC"
    )))
    .bind(scope.structure.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::MandatesExported)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .details(json!({ "rows": rows.len() })),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let now = OffsetDateTime::now_utc();
    let mut out = String::from("\u{feff}mandat;personne;démarches;créé le;expire le;état\r\n");
    for r in rows {
        let row = to_row(r, now);
        out.push_str(
            &[
                csv_field(&row.id),
                csv_field(&row.usager),
                csv_field(&row.categories),
                csv_field(&row.created),
                csv_field(&row.expires),
                csv_field(row.state.label()),
            ]
            .join(";"),
        );
        out.push_str("\r\n");
    }
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "content-disposition",
            "attachment; filename=\"mandats.csv\"",
        )
        .header("cache-control", "no-store")
        .body(out))
}

// ---------------------------------------------------------------------------------------------
// Public verification

#[handler]
pub async fn verify(
    platform: Data<&Platform>,
    Path((dep, id, token)): Path<(String, String, String)>,
) -> poem::Result<Response> {
    let departement = DepartementCode::parse(&dep).map_err(|_| not_found())?;
    let mandate = parse_id(&id)?;
    let expected = verification_token(&platform, departement, mandate);
    if !secrets::constant_time_eq(&expected, &token) {
        return Err(not_found());
    }
    let tenant = platform
        .tenancy
        .context(departement)
        .await
        .map_err(|_| not_found())?;
    let mut tx = tenant.begin().await.map_err(db_error)?;
    let row: Option<(OffsetDateTime, bool)> = sqlx::query_as(
        "SELECT m.expires_at, EXISTS (SELECT 1 FROM authorisations a WHERE a.mandate_id = m.id
                                      AND a.revoked_at IS NULL AND a.superseded_at IS NULL AND a.expires_at > now())
         FROM mandates m WHERE m.id = $1",
    )
    .bind(mandate)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let (expires, live) = row.ok_or_else(not_found)?;
    html(&VerificationPage {
        theme: THEME,
        nav: foundation::web::navigation(""),
        valid: live,
        until: date(expires - Duration::seconds(1)),
    })
}

// ---------------------------------------------------------------------------------------------
// Letters to print

#[derive(Template)]
#[template(path = "letters.html")]
struct LettersPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: &'a str,
    pending: i64,
    batches: Vec<LetterBatchRow>,
}

pub struct LetterBatchRow {
    pub created: String,
    pub letters: i32,
    pub link: String,
}

/// The structure's batches of receipts to print and post (usagers with neither e-mail nor
/// mobile phone), newest first, each a short-lived link to its PDF; and how many letters wait for
/// the next batch.
#[handler]
pub async fn letters(
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    scope: Scope,
) -> poem::Result<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::LetterPrint).await?;
    let mut tx = scope.tenant.begin().await.map_err(db_error)?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE channel = 'letter' AND structure_id = $1
           AND sent_at IS NULL AND sending_started_at IS NULL AND attempts < $2",
    )
    .bind(scope.structure.id)
    .bind(foundation::outbox::MAX_ATTEMPTS)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let rows: Vec<(OffsetDateTime, i32, Uuid)> = sqlx::query_as(
        "SELECT created_at, letter_count, document_id FROM letter_batches
         WHERE structure_id = $1 AND created_at > now() - make_interval(days => $2)
         ORDER BY created_at DESC LIMIT 100",
    )
    .bind(scope.structure.id)
    .bind(foundation::outbox::LETTER_BATCH_RETENTION_DAYS as i32)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let now = OffsetDateTime::now_utc();
    let departement = scope.tenant.departement();
    html(&LettersPage {
        theme: THEME,
        nav: nav("/courriers"),
        structure: &scope.structure.name,
        pending,
        batches: rows
            .into_iter()
            .map(|(created, letters, document)| LetterBatchRow {
                created: date_time(created),
                letters,
                link: shared
                    .vault
                    .link(departement.as_str(), document, Duration::minutes(10), now),
            })
            .collect(),
    })
}
