//! `/structure/demarches`: the référent chooses the démarche categories their structure handles
//! (`structure:set_demarches`, recent code to change them). Mandate creation offers only these,
//! and the identity provider offers a mandate's démarche only while the structure still handles
//! it (`Scope::structure.demarches`). At least one stays; the change is journaled in the
//! territory (before and after, codes only).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard};
use foundation::journal::{self, Event, NewEntry};
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html_status};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use serde_json::json;

use crate::categories::ALL;
use crate::scope::{Scope, VerifiedScope};
use crate::web::{THEME, nav};

pub struct Choice {
    pub code: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "structure_demarches.html")]
struct DemarchesPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: String,
    choices: Vec<Choice>,
    error: Option<&'a str>,
    flash: Option<&'a str>,
}

fn page(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    chosen: &[String],
    error: Option<&str>,
    flash: Option<&str>,
) -> PageResult<Response> {
    html_status(
        &DemarchesPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: scope.structure.name.clone(),
            choices: ALL
                .iter()
                .map(|c| Choice {
                    code: c.code,
                    label: c.label,
                    checked: chosen.iter().any(|x| x == c.code),
                })
                .collect(),
            error,
            flash,
        },
        (error.is_some()).then_some(StatusCode::BAD_REQUEST),
    )
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

/// `GET /structure/demarches`.
#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    guard::require(
        &platform,
        &scope.me,
        scope.structure.id.domain(),
        Action::StructureSetDemarches,
    )
    .await?;
    let flash = (q.message.as_deref() == Some("enregistre"))
        .then_some("Les démarches de la structure sont enregistrées.");
    page(
        req,
        &platform,
        &scope,
        &scope.structure.demarches,
        None,
        flash,
    )
}

/// `POST /structure/demarches`.
#[handler]
pub async fn save(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult<Response> {
    guard::require(
        &platform,
        &scope.me,
        scope.structure.id.domain(),
        Action::StructureSetDemarches,
    )
    .await?;
    let chosen: Vec<String> = ALL
        .iter()
        .filter(|c| fields.iter().any(|(k, v)| k == "demarche" && v == c.code))
        .map(|c| c.code.to_owned())
        .collect();
    if chosen.is_empty() {
        return page(
            req,
            &platform,
            &scope,
            &chosen,
            Some(
                "Cochez au moins une démarche : une structure habilitée accompagne au moins un type de démarche.",
            ),
            None,
        );
    }
    let mut tx = scope.tenant.begin().await?;
    let before: Vec<String> =
        sqlx::query_scalar("SELECT demarches FROM structures WHERE id = $1 FOR UPDATE")
            .bind(scope.structure.id)
            .fetch_one(&mut *tx)
            .await?;
    if before != chosen {
        sqlx::query("UPDATE structures SET demarches = $2 WHERE id = $1")
            .bind(scope.structure.id)
            .bind(&chosen)
            .execute(&mut *tx)
            .await?;
        journal::append(
            &mut tx,
            NewEntry::new(Event::StructureDemarchesSet)
                .structure(scope.structure.id)
                .professional(scope.me.id)
                .details(json!({ "before": before, "after": chosen })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Redirect::see_other("/structure/demarches?message=enregistre").into_response())
}
