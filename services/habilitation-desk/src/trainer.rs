//! The trainer's pages (product.md §4.3): the sessions of the organisations where they record
//! attendance (`attendance:record` in the organisation's domain), each session's attendees, and
//! the attendance itself; another organisation's session is 404.

use foundation::web::{PageError, PageResult};

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::paris;
use foundation::web::{NavItem, Theme, html, html_status};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::views::{MessagePage, THEME, nav};

use crate::training::*;

/// The organisations where the professional records attendance.
async fn trainer_organisations(platform: &Platform, me: &Professional) -> PageResult<Vec<Uuid>> {
    let held: Vec<String> = sqlx::query_scalar(
        "SELECT domain FROM platform.role_assignments WHERE professional_id = $1 AND role = 'trainer'",
    )
    .bind(me.id)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut list = Vec::new();
    for d in held {
        if let Some(Domain::Organisation(id)) = Domain::parse(&d)
            && platform
                .guard
                .allows(
                    me.id.as_uuid(),
                    &Domain::Organisation(id),
                    Action::AttendanceRecord,
                )
                .await
        {
            list.push(id);
        }
    }
    if list.is_empty() {
        tracing::info!(action = "attendance:record", "authorization denied");
        return Err(PageError::forbidden());
    }
    Ok(list)
}

#[derive(Template)]
#[template(path = "trainer_sessions.html")]
struct TrainerSessionsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    sessions: Vec<Session>,
}

/// `GET /formation`: the trainer's organisations' sessions.
#[handler]
pub async fn trainer_sessions(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let organisations = trainer_organisations(&platform, &me).await?;
    let sessions: Vec<Session> = sqlx::query_as(sessions_sql!(
        "WHERE s.organisation_id = ANY($1) ORDER BY s.first_day DESC, s.title LIMIT 500"
    ))
    .bind(&organisations)
    .fetch_all(platform.platform_pool())
    .await?;
    html(&TrainerSessionsPage {
        theme: THEME,
        nav: nav("/formation"),
        sessions,
    })
}

pub struct Attendee {
    pub registration: String,
    pub name: String,
    pub email: String,
    pub status: &'static str,
    pub recorded: bool,
}

#[derive(Template)]
#[template(path = "trainer_session.html")]
struct TrainerSessionPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    session: Session,
    attendees: Vec<Attendee>,
    flash: Option<&'a str>,
    started: bool,
}

/// Whether the session's first day has come (Paris time): attendance is recorded from then.
fn started(session: &Session) -> bool {
    session.first_day <= paris::today()
}

/// The trainer's session (another organisation's, or nonsense: 404).
async fn trainer_session(platform: &Platform, me: &Professional, id: &str) -> PageResult<Session> {
    let organisations = trainer_organisations(platform, me).await?;
    let id = Uuid::parse_str(id.trim()).map_err(|_| PageError::not_found())?;
    sqlx::query_as(sessions_sql!(
        "WHERE s.id = $1 AND s.organisation_id = ANY($2)"
    ))
    .bind(id)
    .bind(&organisations)
    .fetch_optional(platform.platform_pool())
    .await?
    .ok_or_else(PageError::not_found)
}

/// `GET /formation/sessions/:id`: who is registered, attendance to record.
#[handler]
pub async fn trainer_session_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let session = trainer_session(&platform, &me, &id).await?;
    let rows: Vec<(Uuid, String, String, String, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT r.id, i.display_name, i.email, r.status, r.attendance_at FROM platform.training_registrations r
         JOIN platform.habilitation_file_index i ON i.file_id = r.file_id
         WHERE r.session_id = $1 AND r.status IN ('registered', 'attended', 'absent')
         ORDER BY i.display_name",
    )
    .bind(session.id)
    .fetch_all(platform.platform_pool())
    .await?;
    html(&TrainerSessionPage {
        theme: THEME,
        nav: nav("/formation"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        started: started(&session),
        session,
        attendees: rows
            .into_iter()
            .map(|(id, name, email, status, at)| Attendee {
                registration: id.to_string(),
                name,
                email,
                status: match status.as_str() {
                    "attended" => "présent",
                    "absent" => "absent",
                    _ => "à renseigner",
                },
                recorded: at.is_some(),
            })
            .collect(),
        flash: (q.message.as_deref() == Some("enregistre"))
            .then_some("La présence est enregistrée."),
    })
}

#[derive(Deserialize)]
pub struct AttendanceForm {
    #[serde(default)]
    inscription: String,
    #[serde(default)]
    presence: String,
}

/// `POST /formation/sessions/:id/presence`: records one attendee as present or absent.
#[handler]
pub async fn record_attendance(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Path(id): Path<String>,
    Form(f): Form<AttendanceForm>,
) -> PageResult<Response> {
    let session = trainer_session(&platform, &me, &id).await?;
    let registration = Uuid::parse_str(f.inscription.trim()).map_err(|_| PageError::not_found())?;
    let status = match f.presence.as_str() {
        "present" => "attended",
        "absent" => "absent",
        _ => return Err(PageError::status(StatusCode::BAD_REQUEST)),
    };
    if !started(&session) {
        let back = format!("/formation/sessions/{}", session.id);
        return html_status(
            &MessagePage {
                theme: THEME,
                nav: nav("/formation"),
                heading: "La session n'a pas encore commencé",
                paragraphs: vec![
                    "La présence s'enregistre à partir du premier jour de la session : rien n'a été enregistré.",
                ],
                link: Some((&back, "Revenir à la session")),
            },
            Some(StatusCode::CONFLICT),
        );
    }
    let mut tx = platform.platform_pool().begin().await?;
    let file: Option<Uuid> = sqlx::query_scalar(
        "UPDATE platform.training_registrations SET status = $3, attendance_at = now(), attendance_by = $4
         WHERE id = $1 AND session_id = $2 AND status IN ('registered', 'attended', 'absent')
         RETURNING file_id",
    )
    .bind(registration)
    .bind(session.id)
    .bind(status)
    .bind(me.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(file) = file else {
        return Err(PageError::not_found());
    };
    security::append(
        &mut tx,
        SecurityEvent::AttendanceRecorded,
        None,
        Some(me.id),
        json!({ "session": session.id, "file": file, "attended": status == "attended" }),
    )
    .await?;
    let email: String =
        sqlx::query_scalar("SELECT email FROM platform.habilitation_file_index WHERE file_id = $1")
            .bind(file)
            .fetch_one(&mut *tx)
            .await?;
    // Trained: the charter comes next (unless already accepted).
    if status == "attended" {
        crate::activation::send_link(&mut tx, &platform, &email).await?;
    }
    tx.commit().await?;
    if status == "attended"
        && let Err(e) = crate::activation::activate_ready(&platform, Some(&email)).await
    {
        tracing::warn!(error = %e, "activation deferred to the job");
    }
    Ok(Redirect::see_other(format!(
        "/formation/sessions/{}?message=enregistre",
        session.id
    ))
    .into_response())
}
