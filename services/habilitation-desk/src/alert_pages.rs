//! The alerts' pages: the territory admin's (`/territoire/collectivites/:id/alertes`: the
//! tenant's structures' alerts, `structure:list` to read, `structure:manage` to acknowledge and
//! to set the tenant's thresholds) and the référent's (`/structure/alertes`, `aidant:list` in
//! the structure). Acknowledging takes a comment (what was found), is journaled in the
//! territory, and closes the alert for both.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::{StructureId, TenantId};
use foundation::journal::{self, Event, NewEntry};
use foundation::paris;
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use serde_json::json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::alerts::{Thresholds, rule_label, thresholds};
use crate::territory_space::{Tenant, scoped};
use crate::views::{THEME, nav};

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    rule: String,
    day: Date,
    subject: String,
    figure: i64,
    expected: Option<i64>,
    acknowledged_at: Option<OffsetDateTime>,
    comment: Option<String>,
}

pub struct Line {
    pub id: String,
    pub structure: String,
    pub rule: &'static str,
    pub day: String,
    pub what: String,
    pub acknowledged: Option<String>,
}

fn line(r: Row) -> Line {
    let what = match (r.rule.as_str(), r.expected) {
        ("creations" | "uses", Some(mean)) => format!(
            "{} ce jour-là, pour {mean} par jour en moyenne les 28 jours précédents",
            r.figure
        ),
        ("usager_structures", _) => format!(
            "la personne {} a des mandats en cours avec {} structures du territoire",
            r.subject, r.figure
        ),
        ("closed_hours", _) => format!("{} utilisation(s) hors des heures d'ouverture", r.figure),
        _ => format!("{} ce jour-là", r.figure),
    };
    Line {
        id: r.id.to_string(),
        structure: r.name,
        rule: rule_label(&r.rule),
        day: paris::day(r.day),
        what,
        acknowledged: r.acknowledged_at.map(|at| {
            format!(
                "Prise en compte le {} : {}",
                paris::date(at),
                r.comment.unwrap_or_default()
            )
        }),
    }
}

/// Whose alerts a page lists.
#[derive(Clone, Copy)]
pub enum Whose {
    Tenant(TenantId),
    Structure(StructureId),
}

/// The alerts a page lists, open ones first, then those acknowledged in the last 30 days:
/// `$whose` the condition on the tenant or on the structure (`$1`). Each reads its index
/// of acknowledgements (département migration 0034) in two ranges, never the years of alerts
/// acknowledged before.
macro_rules! alerts_sql {
    ($whose:literal) => {
        concat!(
            "SELECT a.id, s.name, a.rule, a.day, a.subject, a.figure, a.expected,
                    a.acknowledged_at, a.comment
             FROM anomaly_alerts a JOIN structures s ON s.id = a.structure_id
             WHERE ",
            $whose,
            " AND (a.acknowledged_at IS NULL OR a.acknowledged_at > now() - interval '30 days')
             ORDER BY a.acknowledged_at IS NOT NULL, a.day DESC, s.name, a.rule
             LIMIT 200"
        )
    };
}

impl Whose {
    /// The statement and its one parameter, `$1`: the tenant or the structure.
    pub fn sql(self) -> (&'static str, Uuid) {
        match self {
            Whose::Tenant(t) => (alerts_sql!("a.tenant_id = $1"), t.as_uuid()),
            Whose::Structure(s) => (alerts_sql!("a.structure_id = $1"), s.as_uuid()),
        }
    }
}

async fn lines(context: &Territory, whose: Whose) -> PageResult<Vec<Line>> {
    let mut tx = context.begin().await?;
    let (sql, id) = whose.sql();
    let rows: Vec<Row> = sqlx::query_as(sql).bind(id).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(line).collect())
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    heading: String,
    back: (String, &'a str),
    action_base: String,
    lines: Vec<Line>,
    can_acknowledge: bool,
    settings: Option<(String, Thresholds)>,
    flash: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

fn flash(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "prise-en-compte" => Some("L'alerte est prise en compte ; votre commentaire est conservé."),
        "seuils" => Some("Les seuils d'alerte de la collectivité sont enregistrés."),
        _ => None,
    }
}

/// `GET /territoire/collectivites/:id/alertes`.
#[handler]
pub async fn territory_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureList).await?;
    territory_render(
        req,
        &platform,
        &me,
        tenant,
        &context,
        flash(q.message.as_deref()),
        None,
    )
    .await
}

async fn territory_render(
    req: &Request,
    platform: &Platform,
    me: &Professional,
    tenant: Tenant,
    context: &Territory,
    flash: Option<&str>,
    error: Option<&str>,
) -> PageResult<Response> {
    let manage = platform
        .guard
        .allows(
            me.id.as_uuid(),
            &tenant.id.domain(),
            Action::StructureManage,
        )
        .await;
    let settings = thresholds(platform).await?;
    let base = format!("/territoire/collectivites/{}", tenant.id);
    html_status(
        &AlertsPage {
            theme: THEME,
            nav: nav("/territoire"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            heading: format!("Alertes de {}", tenant.name),
            back: (base.clone(), "Retour à l'espace du territoire"),
            action_base: format!("{base}/alertes"),
            lines: lines(context, Whose::Tenant(tenant.id)).await?,
            can_acknowledge: manage,
            settings: manage.then(|| {
                (
                    format!("{base}/alertes/seuils"),
                    settings.get(&tenant.id).copied().unwrap_or_default(),
                )
            }),
            flash,
            error,
        },
        error.map(|_| StatusCode::BAD_REQUEST),
    )
}

#[derive(Deserialize)]
pub struct AckForm {
    #[serde(default)]
    comment: String,
}

/// Acknowledges an alert of `structures` (a tenant's, or one structure's): 404 for another's.
async fn acknowledge(
    context: &Territory,
    me: &Professional,
    alert: &str,
    tenant: Option<TenantId>,
    structure: Option<StructureId>,
    comment: &str,
) -> PageResult<bool> {
    let alert = Uuid::parse_str(alert.trim()).map_err(|_| PageError::not_found())?;
    let comment = comment.trim();
    let mut tx = context.begin().await?;
    let found: Option<(StructureId, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT structure_id, acknowledged_at FROM anomaly_alerts
         WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::uuid IS NULL OR structure_id = $3)
         FOR UPDATE",
    )
    .bind(alert)
    .bind(tenant)
    .bind(structure)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((structure_id, done)) = found else {
        return Err(PageError::not_found());
    };
    if comment.is_empty() || comment.chars().count() > 2000 || done.is_some() {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE anomaly_alerts SET acknowledged_at = now(), acknowledged_by = $2, comment = $3 WHERE id = $1",
    )
    .bind(alert)
    .bind(me.id)
    .bind(comment)
    .execute(&mut *tx)
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::AnomalyAcknowledged)
            .structure(structure_id)
            .professional(me.id)
            .details(json!({ "alert": alert })),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

const COMMENT_NEEDED: &str = "Indiquez ce que vous avez constaté (2 000 caractères au plus) : le commentaire est conservé. Une alerte déjà prise en compte ne se reprend pas.";

/// `POST /territoire/collectivites/:id/alertes/:alert/prise-en-compte`.
#[handler]
pub async fn territory_acknowledge(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path((id, alert)): Path<(String, String)>,
    Form(f): Form<AckForm>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureManage).await?;
    if acknowledge(&context, &me, &alert, Some(tenant.id), None, &f.comment).await? {
        return Ok(Redirect::see_other(format!(
            "/territoire/collectivites/{}/alertes?message=prise-en-compte",
            tenant.id
        ))
        .into_response());
    }
    territory_render(
        req,
        &platform,
        &me,
        tenant,
        &context,
        None,
        Some(COMMENT_NEEDED),
    )
    .await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    volume_factor: String,
    #[serde(default)]
    volume_minimum: String,
    #[serde(default)]
    night_starts: String,
    #[serde(default)]
    night_ends: String,
    #[serde(default)]
    usager_structures: String,
    #[serde(default)]
    revocations_per_day: String,
}

/// `POST /territoire/collectivites/:id/alertes/seuils`.
#[handler]
pub async fn territory_settings(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
    Form(f): Form<SettingsForm>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureManage).await?;
    let int = |s: &str, lo: i32, hi: i32| {
        s.trim()
            .parse::<i32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
    };
    let factor = f
        .volume_factor
        .trim()
        .replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|x| (1.5..=50.0).contains(x));
    let parsed = (
        factor,
        int(&f.volume_minimum, 1, 10_000),
        int(&f.night_starts, 17, 23),
        int(&f.night_ends, 4, 10),
        int(&f.usager_structures, 2, 20),
        int(&f.revocations_per_day, 2, 1000),
    );
    let (Some(factor), Some(minimum), Some(starts), Some(ends), Some(usagers), Some(revocations)) =
        parsed
    else {
        return territory_render(
            req,
            &platform,
            &me,
            tenant,
            &context,
            None,
            Some("Un seuil est hors des limites : facteur de 1,5 à 50, minimum de 1 à 10 000, nuit de 17 h à 23 h jusqu'à 4 h à 10 h, de 2 à 20 structures, de 2 à 1 000 révocations."),
        )
        .await;
    };
    sqlx::query(
        "INSERT INTO platform.alert_settings (tenant_id, volume_factor, volume_minimum, night_starts, night_ends,
             usager_structures, revocations_per_day, updated_by)
         VALUES ($1, $2::numeric, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id) DO UPDATE SET volume_factor = EXCLUDED.volume_factor,
             volume_minimum = EXCLUDED.volume_minimum, night_starts = EXCLUDED.night_starts,
             night_ends = EXCLUDED.night_ends, usager_structures = EXCLUDED.usager_structures,
             revocations_per_day = EXCLUDED.revocations_per_day, updated_at = now(), updated_by = EXCLUDED.updated_by",
    )
    .bind(tenant.id)
    .bind(factor)
    .bind(minimum)
    .bind(starts)
    .bind(ends)
    .bind(usagers)
    .bind(revocations)
    .bind(me.id)
    .execute(platform.platform_pool())
    .await?;
    Ok(Redirect::see_other(format!(
        "/territoire/collectivites/{}/alertes?message=seuils",
        tenant.id
    ))
    .into_response())
}

/// The référent's structure and its territory.
async fn referent_structure(
    platform: &Platform,
    me: &Professional,
) -> PageResult<(StructureId, Territory)> {
    let allowed = guard::require_in_current_structure(platform, me, Action::AidantList).await?;
    Ok((allowed.structure(), allowed.territory(platform).await?))
}

async fn structure_render(
    req: &Request,
    platform: &Platform,
    structure: StructureId,
    context: &Territory,

    flash: Option<&str>,
    error: Option<&str>,
) -> PageResult<Response> {
    html_status(
        &AlertsPage {
            theme: THEME,
            nav: nav("/structure"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            heading: "Alertes de la structure".to_owned(),
            back: ("/structure".to_owned(), "Retour à l'espace de la structure"),
            action_base: "/structure/alertes".to_owned(),
            lines: lines(context, Whose::Structure(structure)).await?,
            can_acknowledge: true,
            settings: None,
            flash,
            error,
        },
        error.map(|_| StatusCode::BAD_REQUEST),
    )
}

/// `GET /structure/alertes`.
#[handler]
pub async fn structure_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (structure, context) = referent_structure(&platform, &me).await?;
    structure_render(
        req,
        &platform,
        structure,
        &context,
        flash(q.message.as_deref()),
        None,
    )
    .await
}

/// `POST /structure/alertes/:alert/prise-en-compte`.
#[handler]
pub async fn structure_acknowledge(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(alert): Path<String>,
    Form(f): Form<AckForm>,
) -> PageResult<Response> {
    let (structure, context) = referent_structure(&platform, &me).await?;
    if acknowledge(&context, &me, &alert, None, Some(structure), &f.comment).await? {
        return Ok(
            Redirect::see_other("/structure/alertes?message=prise-en-compte").into_response(),
        );
    }
    structure_render(
        req,
        &platform,
        structure,
        &context,
        None,
        Some(COMMENT_NEEDED),
    )
    .await
}
