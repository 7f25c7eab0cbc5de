//! `/mesures/import`: a guardian service imports its measures from a CSV (`judicial::csv`,
//! `judicial::import`). The file is read at once: a malformed one comes back with the line and
//! column of its first problem and nothing is written. A readable one is applied in the
//! background; `/mesures/import/:id` shows a progress bar (fed by `/mesures/import/:id/etat`,
//! polled by a small script; without script, a link reloads), then the line report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard};
use foundation::web::{NavItem, PageError, PageResult, Theme};
use poem::web::{Data, Json, Multipart, Path};
use poem::{Body, FromRequest, Request, Response, handler};
use policies::Action;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::judicial::guardian_service;
use super::{THEME, form_answer, nav, parse_id, see_other};
use crate::judicial::csv::{self, COLUMNS};
use crate::judicial::import::{self, Context, LineReport, Outcome, Report};
use crate::scope::{Scope, VerifiedScope};
use foundation::web::html;

#[derive(Template)]
#[template(path = "measure_import.html")]
struct FormPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    columns: &'static [(&'static str, bool)],
    header: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "measure_import_state.html")]
struct StatePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    id: Uuid,
    file_name: String,
    state: String,
    done: i32,
    total: i32,
    error: Option<String>,
    report: Option<Report>,
    refused: Vec<LineReport>,
    updated: Vec<LineReport>,
}

fn form(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    error: Option<String>,
) -> PageResult<Response> {
    let failed = error.is_some();
    form_answer(
        &FormPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &scope.structure.name,
            columns: COLUMNS,
            header: COLUMNS
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(";"),
            error,
        },
        failed,
    )
}

/// `GET /mesures/import`.
#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    form(req, &platform, &scope, None)
}

/// `POST /mesures/import` (multipart: `csrf`, `fichier`).
#[handler]
pub async fn upload(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    body: Body,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    // Read only once the guard has let the caller through.
    let Ok(mut multipart) = Multipart::from_request(req, &mut poem::RequestBody::new(body)).await
    else {
        let error = "Envoyez le fichier avec le formulaire ci-dessous.".to_owned();
        return form(req, &platform, &scope, Some(error));
    };
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("fichier") {
            let name = field
                .file_name()
                .unwrap_or("mesures.csv")
                .chars()
                .take(200)
                .collect();
            match field.bytes().await {
                Ok(bytes) => file = Some((name, bytes)),
                Err(_) => break,
            }
        }
    }
    let Some((file_name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        let error = "Choisissez le fichier CSV de vos mesures.".to_owned();
        return form(req, &platform, &scope, Some(error));
    };
    let today = foundation::paris::today();
    let lines = match csv::decode(&bytes).and_then(|text| csv::parse(text, today)) {
        Ok(lines) => lines,
        Err(e) => {
            let error = format!("Le fichier n'a pas été importé. {e}");
            return form(req, &platform, &scope, Some(error));
        }
    };
    let id = Uuid::now_v7();
    let mut tx = scope.tenant.begin().await?;
    sqlx::query(
        "INSERT INTO measure_imports (id, structure_id, started_by, file_name, file_sha256, total)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(scope.structure.id)
    .bind(scope.me.id)
    .bind(&file_name)
    .bind(Sha256::digest(&bytes).to_vec())
    .bind(i32::try_from(lines.len()).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let platform_pool = platform.platform_pool().clone();
    let territory = scope.tenant.clone();
    let structure = scope.structure.id;
    let demarches = scope.structure.demarches.clone();
    let by = scope.me.id;
    tokio::spawn(async move {
        let progress = Arc::new(AtomicUsize::new(0));
        let ctx = Context {
            platform: &platform_pool,
            territory: &territory,
            structure,
            demarches: &demarches,
            by,
        };
        let work = import::apply(&ctx, &bytes, lines, &progress);
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = tick.tick() => {
                    let done = i32::try_from(progress.load(Ordering::Relaxed)).unwrap_or(i32::MAX);
                    if let Ok(mut tx) = territory.begin().await {
                        let _ = sqlx::query("UPDATE measure_imports SET done = $2 WHERE id = $1")
                            .bind(id).bind(done).execute(&mut *tx).await;
                        let _ = tx.commit().await;
                    }
                }
            }
        };
        let (state, report, error) = match outcome {
            Ok(report) => ("done", serde_json::to_value(&report).ok(), None),
            Err(e) => {
                tracing::error!(error = %e, "measure import failed");
                ("failed", None, Some(e.to_string()))
            }
        };
        let done = i32::try_from(progress.load(Ordering::Relaxed)).unwrap_or(i32::MAX);
        if let Ok(mut tx) = territory.begin().await {
            let _ = sqlx::query(
                "UPDATE measure_imports SET state = $2, report = $3, error = $4, done = $5,
                        finished_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(state)
            .bind(report)
            .bind(error)
            .bind(done)
            .execute(&mut *tx)
            .await;
            let _ = tx.commit().await;
        }
    });
    Ok(see_other(format!("/mesures/import/{id}")))
}

type ImportRow = (
    String,
    String,
    i32,
    i32,
    Option<serde_json::Value>,
    Option<String>,
);

/// The import's name, state, progress, report and error; an import of another structure is
/// not found. An import left `running` for ten minutes was interrupted (a restart).
async fn load(scope: &Scope, id: Uuid) -> PageResult<ImportRow> {
    let mut tx = scope.tenant.begin().await?;
    let row: Option<ImportRow> = sqlx::query_as(
        "SELECT file_name,
                CASE WHEN state = 'running' AND created_at < now() - interval '10 minutes'
                     THEN 'failed' ELSE state END,
                done, total, report,
                CASE WHEN state = 'running' AND created_at < now() - interval '10 minutes'
                     THEN 'L''import a été interrompu ; importez le fichier de nouveau (les lignes déjà enregistrées ne seront pas dupliquées).'
                     ELSE error END
         FROM measure_imports WHERE id = $1 AND structure_id = $2",
    )
    .bind(id)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.ok_or_else(PageError::not_found)
}

/// `GET /mesures/import/:id`.
#[handler]
pub async fn import_state(
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let id: Uuid = parse_id(&id)?;
    let (file_name, state, done, total, report, error) = load(&scope, id).await?;
    let report: Option<Report> = report.and_then(|r| serde_json::from_value(r).ok());
    let of = |outcome: Outcome| {
        report
            .as_ref()
            .map(|r| {
                r.lines
                    .iter()
                    .filter(|l| l.outcome == outcome)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let (refused, updated) = (of(Outcome::Refused), of(Outcome::Updated));
    html(&StatePage {
        theme: THEME,
        nav: nav("/mandats"),
        id,
        file_name,
        state,
        done,
        total,
        error,
        report,
        refused,
        updated,
    })
}

/// `GET /mesures/import/:id/etat`: `{"state", "done", "total"}` for the progress bar.
#[handler]
pub async fn import_progress(
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
) -> PageResult<Json<serde_json::Value>> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let id: Uuid = parse_id(&id)?;
    let (_, state, done, total, _, _) = load(&scope, id).await?;
    Ok(Json(
        serde_json::json!({ "state": state, "done": done, "total": total }),
    ))
}

/// `GET /mesures/import.js`: the progress bar's polling.
#[handler]
pub fn script() -> Response {
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .header("cache-control", "public, max-age=3600")
        .body(include_str!("../../static/measure_import.js"))
}
