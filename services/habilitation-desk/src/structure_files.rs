//! `/structure/aidants/nouveau`: the référent adds a person to habilitate in their structure (a
//! new habilitation file, `aidant:add_to_training`), with the same rule as the request:
//! professionals only. The index entry (platform) is written first, then the file and its
//! journal entry in the territory; an entry whose file was never written only points nowhere.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::journal::{self, Event, NewEntry};
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html_status};
use poem::http::StatusCode;
use poem::web::{Data, Form, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde_json::json;
use uuid::Uuid;

use crate::requests::form::{AidantInput, EMPLOYMENTS, FieldErrors};
use crate::views::{FieldView, THEME, nav};

#[derive(Template)]
#[template(path = "structure_new_file.html")]
struct NewFilePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    fields: Vec<FieldView>,
    errors: Vec<(&'static str, String)>,
}

fn fields(input: &AidantInput, errors: &FieldErrors) -> Vec<FieldView> {
    vec![
        FieldView::new("first_name", "text", "Prénom").value(&input.first_name).errors(errors),
        FieldView::new("last_name", "text", "Nom").value(&input.last_name).errors(errors),
        FieldView::new("email", "email", "Adresse e-mail professionnelle")
            .hint("Format attendu : nom@domaine.fr")
            .value(&input.email)
            .errors(errors),
        FieldView::new("profession", "text", "Profession (intitulé du poste)")
            .value(&input.profession)
            .errors(errors),
        FieldView::new("employment", "select", "Statut")
            .hint("Seuls des professionnels peuvent être habilités : ni bénévoles, ni volontaires en service civique, ni stagiaires, ni élus.")
            .options(EMPLOYMENTS)
            .value(&input.employment)
            .errors(errors),
        FieldView::new("employer", "text", "Employeur").value(&input.employer).errors(errors),
    ]
}

fn page(
    req: &Request,
    platform: &Platform,
    input: &AidantInput,
    errors: &FieldErrors,
) -> PageResult<Response> {
    html_status(
        &NewFilePage {
            theme: THEME,
            nav: nav("/structure/formation"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            fields: fields(input, errors),
            errors: errors.summary(),
        },
        (!errors.is_empty()).then_some(StatusCode::BAD_REQUEST),
    )
}

async fn structure(platform: &Platform, me: &Professional) -> PageResult<guard::Authorized> {
    let allowed =
        guard::require_in_current_structure(platform, me, Action::AidantAddToTraining).await?;
    guard::require_active_structure(platform, allowed.structure()).await?;
    Ok(allowed)
}

/// `GET /structure/aidants/nouveau`.
#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
) -> PageResult<Response> {
    structure(&platform, &me).await?;
    page(
        req,
        &platform,
        &AidantInput::default(),
        &FieldErrors::default(),
    )
}

/// `POST /structure/aidants/nouveau`.
#[handler]
pub async fn create(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(input): Form<AidantInput>,
) -> PageResult<Response> {
    let allowed = structure(&platform, &me).await?;
    let structure = allowed.structure();
    let step = match input.validate() {
        Ok(step) => step,
        Err(errors) => return page(req, &platform, &input, &errors),
    };
    let tenant = allowed.territory(&platform).await?;
    let mut dep = tenant.begin().await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM habilitation_files WHERE structure_id = $1 AND email = $2)",
    )
    .bind(structure)
    .bind(&step.email)
    .fetch_one(&mut *dep)
    .await?;
    if exists {
        let mut e = FieldErrors::default();
        e.add(
            "email",
            "Cette personne a déjà un dossier d'habilitation dans la structure.",
        );
        return page(req, &platform, &input, &e);
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant.departement().as_str())
    .bind(structure)
    .bind(&step.email)
    .bind(format!("{} {}", step.first_name, step.last_name))
    .execute(platform.platform_pool())
    .await?;
    sqlx::query(
        "INSERT INTO habilitation_files (id, structure_id, first_name, last_name, email, profession, employment, employer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(structure)
    .bind(&step.first_name)
    .bind(&step.last_name)
    .bind(&step.email)
    .bind(&step.profession)
    .bind(&step.employment)
    .bind(&step.employer)
    .execute(&mut *dep)
    .await?;
    journal::append(
        &mut dep,
        NewEntry::new(Event::HabilitationFilesCreated)
            .structure(structure)
            .professional(me.id)
            .details(json!({ "files": 1, "file": id, "by": "referent" })),
    )
    .await?;
    dep.commit().await?;
    Ok(Redirect::see_other("/structure/formation?message=ajoute").into_response())
}
