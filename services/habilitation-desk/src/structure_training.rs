//! Registering a structure's aidants on training sessions (product.md §4.3), by the two people
//! who may: the structure's référent (`/structure/formation`, `aidant:add_to_training` in the
//! current structure) and the issuer of the request that created the structure
//! (`/demande/demandes/:reference/formation`, issuer session, the request theirs and
//! accepted). Both see the same page: each file with the step it reached
//! ([`crate::pipeline`]), a session to choose, the waiting list offered when a session is
//! full, a cancellation for a registration still to come. A file of another structure, or a
//! registration of another structure's file, is 404; a deactivated structure is 403.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::StructureId;
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use uuid::Uuid;

use crate::issuer::Issuer;
use crate::pipeline::{self, Progress};
use crate::requests::{self, Status};
use crate::training::{self, Outcome, Registrar};
use crate::views::{THEME, nav};

/// Who is on the page, and so where its forms go.
enum Who<'a> {
    Referent(&'a Professional),
    Issuer(&'a Issuer, &'a str),
}

impl Who<'_> {
    fn base(&self) -> String {
        match self {
            Who::Referent(_) => "/structure/formation".to_owned(),
            Who::Issuer(_, reference) => format!("/demande/demandes/{reference}/formation"),
        }
    }

    fn registrar(&self) -> Registrar {
        match self {
            Who::Referent(me) => Registrar::Professional(me.id),
            Who::Issuer(issuer, _) => Registrar::Issuer(issuer.id),
        }
    }
}

/// The structure the person acts for: the référent's current one, or the one created from the
/// issuer's accepted request. Its name and files, after checking it is active.
async fn structure_of(
    platform: &Platform,
    who: &Who<'_>,
) -> PageResult<(String, Vec<pipeline::File>)> {
    let (structure, territory) = match who {
        Who::Referent(me) => {
            let allowed =
                guard::require_in_current_structure(platform, me, Action::AidantAddToTraining)
                    .await?;
            (allowed.structure(), allowed.territory(platform).await?)
        }
        Who::Issuer(issuer, reference) => issuer_structure(platform, issuer, reference).await?,
    };
    let (name, active, files) = pipeline::structure_files(&territory, structure)
        .await?
        .ok_or_else(PageError::not_found)?;
    if !active {
        return Err(PageError::forbidden());
    }
    Ok((name, files))
}

/// The structure created from the issuer's request: 404 when the request is not theirs or not
/// accepted.
async fn issuer_structure(
    platform: &Platform,
    issuer: &Issuer,
    reference: &str,
) -> PageResult<(StructureId, Territory)> {
    let departement = requests::departement_of(reference).ok_or_else(PageError::not_found)?;
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(|_| PageError::not_found())?;
    let mut tx = tenant.begin().await?;
    let request = requests::load(&mut tx, reference, false).await?;
    tx.commit().await?;
    let structure = request
        .filter(|r| r.issuer_id == Some(issuer.id) && r.status() == Status::Accepted)
        .and_then(|r| r.structure_id)
        .ok_or_else(PageError::not_found)?;
    Ok((structure, tenant))
}

pub struct Line {
    pub id: String,
    pub name: String,
    pub email: String,
    pub stage: &'static str,
    pub badge: &'static str,
    pub next_step: &'static str,
    pub registration: Option<String>,
    pub cancellable: Option<String>,
    pub pix: Option<String>,
    pub charter: bool,
    pub can_register: bool,
}

impl From<Progress> for Line {
    fn from(p: Progress) -> Self {
        Line {
            id: p.file.id.to_string(),
            name: p.file.name(),
            email: p.file.email.clone(),
            stage: p.stage.label(),
            badge: p.stage.badge(),
            next_step: p.stage.next_step(),
            registration: p
                .registration
                .as_ref()
                .map(pipeline::Registration::describe),
            cancellable: p
                .registration
                .as_ref()
                .filter(|r| r.cancellable())
                .map(|r| r.id.to_string()),
            pix: p.pix_text(),
            charter: p.charter,
            can_register: p.can_register(),
        }
    }
}

#[derive(Template)]
#[template(path = "structure_training.html")]
struct TrainingPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    base: String,
    referent: bool,
    structure: String,
    files: Vec<Line>,
    sessions: Vec<(String, String)>,
    flash: Option<(bool, &'a str)>,
    full: Option<(String, String)>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    message: Option<String>,
    complet: Option<String>,
    dossier: Option<String>,
}

/// French outcome messages, chosen by code (nothing from the query string is echoed).
fn flash(code: Option<&str>) -> Option<(bool, &'static str)> {
    Some(match code? {
        "inscrit" => (
            true,
            "L'aidant est inscrit ; il reçoit la confirmation par e-mail.",
        ),
        "attente" => (
            true,
            "L'aidant est sur la liste d'attente ; il sera prévenu si une place se libère.",
        ),
        "annule" => (true, "L'inscription est annulée ; la place est libérée."),
        "ajoute" => (
            true,
            "Le dossier d'habilitation est ouvert : inscrivez la personne en formation ci-dessous.",
        ),
        "deja" => (false, "Cet aidant a déjà une inscription en cours."),
        "fermee" => (false, "Cette session n'est plus ouverte aux inscriptions."),
        _ => return None,
    })
}

async fn render(
    req: &Request,
    platform: &Platform,
    who: Who<'_>,
    q: PageQuery,
) -> PageResult<Response> {
    let (name, files) = structure_of(platform, &who).await?;
    let mut conn = platform.platform_pool().acquire().await?;
    let progress = pipeline::progress(&mut conn, files).await?;
    let sessions = training::upcoming(&mut conn).await?;
    // The waiting list is offered only for a file and a session that are both still real.
    let full = match (q.complet, q.dossier) {
        (Some(session), Some(file))
            if sessions.iter().any(|s| s.id.to_string() == session)
                && progress.iter().any(|p| p.file.id.to_string() == file) =>
        {
            Some((session, file))
        }
        _ => None,
    };
    html(&TrainingPage {
        theme: THEME,
        nav: nav(match who {
            Who::Referent(_) => "/structure",
            Who::Issuer(..) => "/demande",
        }),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        base: who.base(),
        referent: matches!(who, Who::Referent(_)),
        structure: name,
        files: progress.into_iter().map(Line::from).collect(),
        sessions: sessions
            .iter()
            .map(|s| (s.id.to_string(), s.label()))
            .collect(),
        flash: flash(q.message.as_deref()),
        full,
    })
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    dossier: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    attente: Option<String>,
}

async fn register(platform: &Platform, who: Who<'_>, f: RegisterForm) -> PageResult<Response> {
    let (_, files) = structure_of(platform, &who).await?;
    let base = who.base();
    let file = Uuid::parse_str(f.dossier.trim()).map_err(|_| PageError::not_found())?;
    let Some(found) = files.iter().find(|x| x.id == file) else {
        return Err(PageError::not_found());
    };
    let session = Uuid::parse_str(f.session.trim()).map_err(|_| PageError::not_found())?;
    if found.state == "withdrawn" {
        return Ok(Redirect::see_other(format!("{base}?message=fermee")).into_response());
    }
    let mut conn = platform.platform_pool().acquire().await?;
    let outcome = training::register(
        &mut conn,
        session,
        file,
        who.registrar(),
        f.attente.is_some(),
    )
    .await?;
    let to = match outcome {
        Outcome::Registered => format!("{base}?message=inscrit"),
        Outcome::Waiting => format!("{base}?message=attente"),
        Outcome::AlreadyRegistered => format!("{base}?message=deja"),
        Outcome::Closed => format!("{base}?message=fermee"),
        // Told on the page, nothing written; the waiting list is offered there.
        Outcome::Full => format!("{base}?complet={session}&dossier={file}#complet"),
    };
    Ok(Redirect::see_other(to).into_response())
}

#[derive(Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    inscription: String,
}

async fn cancel(platform: &Platform, who: Who<'_>, f: CancelForm) -> PageResult<Response> {
    let (_, files) = structure_of(platform, &who).await?;
    let registration = Uuid::parse_str(f.inscription.trim()).map_err(|_| PageError::not_found())?;
    let ids: Vec<Uuid> = files.iter().map(|x| x.id).collect();
    let ours: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.training_registrations WHERE id = $1 AND file_id = ANY($2))",
    )
    .bind(registration)
    .bind(&ids)
    .fetch_one(platform.platform_pool())
    .await?;
    if !ours {
        return Err(PageError::not_found());
    }
    let mut conn = platform.platform_pool().acquire().await?;
    if !training::cancel(&mut conn, registration, who.registrar()).await? {
        return Err(PageError::not_found());
    }
    Ok(Redirect::see_other(format!("{}?message=annule", who.base())).into_response())
}

/// `GET /structure/formation`.
#[handler]
pub async fn referent_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<PageQuery>,
) -> PageResult<Response> {
    render(req, &platform, Who::Referent(&me), q).await
}

/// `POST /structure/formation/inscription`.
#[handler]
pub async fn referent_register(
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<RegisterForm>,
) -> PageResult<Response> {
    register(&platform, Who::Referent(&me), f).await
}

/// `POST /structure/formation/annulation`.
#[handler]
pub async fn referent_cancel(
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<CancelForm>,
) -> PageResult<Response> {
    cancel(&platform, Who::Referent(&me), f).await
}

/// `GET /demande/demandes/:reference/formation`.
#[handler]
pub async fn issuer_page(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Query(q): Query<PageQuery>,
) -> PageResult<Response> {
    render(req, &platform, Who::Issuer(&issuer, &reference), q).await
}

/// `POST /demande/demandes/:reference/formation/inscription`.
#[handler]
pub async fn issuer_register(
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(f): Form<RegisterForm>,
) -> PageResult<Response> {
    register(&platform, Who::Issuer(&issuer, &reference), f).await
}

/// `POST /demande/demandes/:reference/formation/annulation`.
#[handler]
pub async fn issuer_cancel(
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(f): Form<CancelForm>,
) -> PageResult<Response> {
    cancel(&platform, Who::Issuer(&issuer, &reference), f).await
}
