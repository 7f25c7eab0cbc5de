//! `/national/structures`: the national team finds a territory's structures and deactivates one
//! as a whole, with a reason (`habilitation:withdraw`, recent code). Deactivation is the
//! structure's `active` flag, which every path reads at each request: its pages (`Scope`,
//! `guard::require_active_structure`), mandate creation, and the identity provider (redemption
//! and userinfo). Recorded in the territory (who, when, why) and both journals.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::auth::{csrf, guard};
use foundation::ids::StructureId;
use foundation::journal::{self, Event, NewEntry};
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::requests::form::kind_label;
use crate::views::{THEME, nav};

pub struct Line {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub commune: String,
    pub siret: String,
    pub state: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "national_structures.html")]
struct StructuresPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    departement: String,
    searched: bool,
    lines: Vec<Line>,
    flash: Option<&'a str>,
    error: Option<&'a str>,
    error_for: String,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    departement: Option<String>,
    message: Option<String>,
}

type Row = (
    StructureId,
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<OffsetDateTime>,
    Option<String>,
);

async fn page(
    req: &Request,
    platform: &Platform,
    allowed: guard::NationalAuthorized,
    departement: &str,
    flash: Option<&str>,
    error: Option<(&str, StructureId)>,
) -> PageResult<Response> {
    let mut lines = Vec::new();
    let searched = !departement.trim().is_empty();
    if let Ok(d) = DepartementCode::parse(departement) {
        let tenant = allowed.territory(platform, d).await?;
        let mut tx = tenant.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, kind, commune_code, siret, active, deactivated_at, deactivation_reason
             FROM structures ORDER BY active DESC, name LIMIT 2000",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        lines = rows
            .into_iter()
            .map(
                |(id, name, kind, commune, siret, active, at, reason)| Line {
                    id: id.to_string(),
                    name,
                    kind: kind_label(&kind),
                    commune,
                    siret: siret.unwrap_or_else(|| "—".to_owned()),
                    state: if active {
                        "Active".to_owned()
                    } else {
                        format!(
                            "Désactivée{}{}",
                            at.map(|t| format!(" le {}", paris::date(t)))
                                .unwrap_or_default(),
                            reason.map(|r| format!(" : {r}")).unwrap_or_default()
                        )
                    },
                    active,
                },
            )
            .collect();
    }
    let bad = error.is_some();
    html_status(
        &StructuresPage {
            theme: THEME,
            nav: nav("/national/structures"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            departement: departement.trim().to_uppercase(),
            searched,
            lines,
            flash,
            error: error.map(|(e, _)| e),
            error_for: error.map(|(_, id)| id.to_string()).unwrap_or_default(),
        },
        (bad).then_some(StatusCode::BAD_REQUEST),
    )
}

/// `GET /national/structures?departement=33`.
#[handler]
pub async fn search(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<SearchQuery>,
) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    let flash = (q.message.as_deref() == Some("desactivee")).then_some(
        "La structure est désactivée : ses aidants ne peuvent plus créer ni utiliser de mandat en son nom.",
    );
    page(
        req,
        &platform,
        allowed,
        q.departement.as_deref().unwrap_or_default(),
        flash,
        None,
    )
    .await
}

#[derive(Deserialize)]
pub struct DeactivateForm {
    #[serde(default)]
    departement: String,
    #[serde(default)]
    structure: String,
    #[serde(default)]
    reason: String,
}

/// `POST /national/structures/desactiver`.
#[handler]
pub async fn deactivate(
    req: &Request,
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<DeactivateForm>,
) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    let d = DepartementCode::parse(&f.departement).map_err(|_| PageError::not_found())?;
    let structure: StructureId = f
        .structure
        .trim()
        .parse()
        .map_err(|_| PageError::not_found())?;

    let reason = f.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return page(
            req,
            &platform,
            allowed,
            d.as_str(),
            None,
            Some((
                "Indiquez le motif de la désactivation : il est conservé.",
                structure,
            )),
        )
        .await;
    }
    let tenant = allowed.territory(&platform, d).await?;
    let mut tx = tenant.begin().await?;
    let done = sqlx::query(
        "UPDATE structures SET active = false, deactivated_at = now(), deactivated_by = $2, deactivation_reason = $3
         WHERE id = $1 AND active",
    )
    .bind(structure)
    .bind(me.id)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Err(PageError::not_found());
    }
    journal::append(
        &mut tx,
        NewEntry::new(Event::StructureDeactivated)
            .structure(structure)
            .professional(me.id)
            .details(json!({ "by": "national" })),
    )
    .await?;
    tx.commit().await?;
    let mut conn = platform.platform_pool().acquire().await?;
    security::append(
        &mut conn,
        SecurityEvent::StructureDeactivated,
        None,
        Some(me.id),
        json!({ "structure": structure, "departement": d.as_str() }),
    )
    .await?;
    Ok(Redirect::see_other(format!(
        "/national/structures?departement={}&message=desactivee",
        d.as_str()
    ))
    .into_response())
}
