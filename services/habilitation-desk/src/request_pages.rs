//! The issuer's pages: their requests, the form in four steps (structure, référent, aidants,
//! commitments) saved as they go, the recap with the state, the thread, submission and
//! withdrawal. Each step is validated whole: an invalid step writes nothing and comes back with
//! each error on its field and what was typed. Another issuer's request answers 404; a request
//! no longer editable answers 409 with a French page, and changes nothing.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::ids::ProfessionalId;
use foundation::paris;
use foundation::tenancy::{DepartementCode, Territory};
use foundation::web::{NavItem, PageError, PageResult, Theme, html, html_status};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use crate::issuer::Issuer;
use crate::requests::form::{
    AidantInput, COMMITMENTS, EMPLOYMENTS, FieldErrors, ReferentInput, STRUCTURE_KINDS,
    StructureInput, employment_label, kind_label,
};
use crate::requests::{self, Dossier, RequestError, Status};
use crate::views::{FieldView, THEME, message_page, nav};

const CURRENT: &str = "/demande";
pub const STEPS: [&str; 4] = [
    "La structure",
    "Le référent",
    "Les aidants",
    "Les engagements",
];

fn secure(platform: &Platform) -> bool {
    platform.settings.http.secure_cookies()
}

/// Errors of the domain as pages (field errors are handled by each step).
pub fn request_error(e: RequestError, reference: &str) -> PageResult<Response> {
    let back = format!("/demande/demandes/{reference}");
    match e {
        RequestError::NotFound => Err(PageError::not_found()),
        RequestError::NotEditable(status) => message_page(
            StatusCode::CONFLICT,
            CURRENT,
            "Cette demande ne peut pas être modifiée",
            vec![
                match status {
                    Status::Waiting | Status::Submitted | Status::Amended => {
                        "Elle a été déposée et attend l'examen : rien n'a été changé. Si l'équipe d'instruction vous demande des modifications, vous pourrez la corriger."
                    }
                    _ => "Elle est close (acceptée, refusée ou retirée) : rien n'a été changé.",
                },
                "Pour apporter une précision, écrivez un message depuis la page de la demande.",
            ],
            Some((&back, "Voir la demande")),
        ),
        RequestError::NotWithdrawable(_) | RequestError::NotReviewable(_) => message_page(
            StatusCode::CONFLICT,
            CURRENT,
            "Cette demande est déjà close",
            vec!["Elle a été acceptée, refusée ou retirée : rien n'a été changé."],
            Some((&back, "Voir la demande")),
        ),
        RequestError::Incomplete(missing) => message_page(
            StatusCode::BAD_REQUEST,
            CURRENT,
            "La demande n'est pas complète",
            std::iter::once("Avant de la déposer, complétez :")
                .chain(missing)
                .collect(),
            Some((&back, "Revenir au récapitulatif")),
        ),
        RequestError::Tenancy(e) => Err(PageError::from(e)),
        RequestError::Database(e) => Err(PageError::from(e)),
        RequestError::NoTenant | RequestError::SiretOpen(_) | RequestError::Fields(_) => {
            Err(PageError::status(StatusCode::BAD_REQUEST))
        }
    }
}

/// The issuer's request by reference: its territory and its dossier (404 for anything else).
async fn own(
    platform: &Platform,
    issuer: &Issuer,
    reference: &str,
) -> PageResult<(Territory, Dossier)> {
    let departement = requests::departement_of(reference).ok_or_else(PageError::not_found)?;
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(PageError::from)?;
    let mut tx = tenant.begin().await?;
    let request = requests::load(&mut tx, reference, false)
        .await?
        .filter(|r| r.issuer_id == Some(issuer.id))
        .ok_or_else(PageError::not_found)?;
    let dossier = requests::dossier(platform, &mut tx, request)
        .await
        .map_err(|e| match e {
            RequestError::Database(e) => PageError::from(e),
            e => PageError::unavailable(e),
        })?;
    tx.commit().await?;
    Ok((tenant, dossier))
}

// ---------------------------------------------------------------------------------------------
// The issuer's list.

pub struct RequestLine {
    pub reference: String,
    pub structure: String,
    pub territory: String,
    pub status: Status,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "issuer_requests.html")]
struct ListPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    email: String,
    lines: Vec<RequestLine>,
    unavailable: Vec<String>,
}

/// `GET /demande/mes-demandes`.
#[handler]
pub async fn list(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
) -> PageResult<Response> {
    let places: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT departement_code, request_id FROM platform.request_index WHERE issuer_id = $1 ORDER BY departement_code",
    )
    .bind(issuer.id)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut by_dep: std::collections::BTreeMap<String, Vec<Uuid>> = Default::default();
    for (d, id) in places {
        by_dep.entry(d).or_default().push(id);
    }
    let mut lines = Vec::new();
    let mut unavailable = Vec::new();
    for (code, ids) in by_dep {
        let Ok(d) = DepartementCode::parse(&code) else {
            continue;
        };
        let Ok(tenant) = platform.tenancy.unguarded(d).await else {
            unavailable.push(format!("{} ({})", d.name(), d.as_str()));
            continue;
        };
        let mut tx = tenant.begin().await?;
        let rows: Vec<(String, String, String, time::OffsetDateTime)> = sqlx::query_as(
            "SELECT reference, structure_name, status, updated_at FROM structure_requests
             WHERE id = ANY($1) AND issuer_id = $2 ORDER BY updated_at DESC",
        )
        .bind(&ids)
        .bind(issuer.id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for (reference, structure, status, updated) in rows {
            lines.push(RequestLine {
                reference,
                structure,
                territory: format!("{} ({})", d.name(), d.as_str()),
                status: Status::parse(&status).unwrap_or(Status::Draft),
                updated: paris::date_time(updated),
            });
        }
    }
    html(&ListPage {
        theme: THEME,
        nav: nav(CURRENT),
        csrf: csrf::token(req, secure(&platform)),
        email: issuer.email.clone(),
        lines,
        unavailable,
    })
}

// ---------------------------------------------------------------------------------------------
// The steps.

pub struct StepLink {
    pub number: usize,
    pub label: &'static str,
    pub href: Option<String>,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "request_step.html")]
struct StepPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: String,
    reference: Option<String>,
    step: usize,
    steps: Vec<StepLink>,
    intro: Vec<&'a str>,
    action: String,
    fields: Vec<FieldView>,
    errors: Vec<(&'static str, String)>,
    conflict: Option<(String, String)>,
    button: &'a str,
}

impl StepPage<'_> {
    fn step_title(&self) -> &'static str {
        STEPS[self.step - 1]
    }
    fn next_title(&self) -> Option<&'static str> {
        STEPS.get(self.step).copied()
    }
}

impl AidantsPage<'_> {
    fn step_title(&self) -> &'static str {
        STEPS[self.step - 1]
    }
    fn next_title(&self) -> Option<&'static str> {
        STEPS.get(self.step).copied()
    }
}

fn step_links(reference: Option<&str>, current: usize) -> Vec<StepLink> {
    let slugs = ["structure", "referent", "aidants", "engagements"];
    STEPS
        .iter()
        .enumerate()
        .map(|(i, label)| StepLink {
            number: i + 1,
            label,
            href: reference.map(|r| format!("/demande/demandes/{r}/{}", slugs[i])),
            current: i + 1 == current,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn step_page(
    req: &Request,
    platform: &Platform,
    reference: Option<&str>,
    structure: &str,
    step: usize,
    intro: Vec<&str>,
    fields: Vec<FieldView>,
    errors: &FieldErrors,
    conflict: Option<(String, String)>,
) -> PageResult<Response> {
    let slugs = ["structure", "referent", "aidants", "engagements"];
    let action = match reference {
        Some(r) => format!("/demande/demandes/{r}/{}", slugs[step - 1]),
        None => "/demande/nouvelle".to_owned(),
    };
    html_status(
        &StepPage {
            theme: THEME,
            nav: nav(CURRENT),
            csrf: csrf::token(req, secure(platform)),
            structure: structure.to_owned(),
            reference: reference.map(str::to_owned),
            step,
            steps: step_links(reference, step),
            intro,
            action,
            fields,
            errors: errors.summary(),
            conflict: conflict.clone(),
            button: if step == 4 {
                "Enregistrer et voir le récapitulatif"
            } else {
                "Enregistrer et continuer"
            },
        },
        (!errors.is_empty() || conflict.is_some()).then_some(StatusCode::BAD_REQUEST),
    )
}

fn structure_fields(input: &StructureInput, errors: &FieldErrors) -> Vec<FieldView> {
    vec![
        FieldView::new("name", "text", "Nom de la structure")
            .hint("Tel qu'il apparaît au public, par exemple « Mairie de Pessac » ou « CCAS de Lormont »")
            .value(&input.name)
            .autocomplete("organization")
            .errors(errors),
        FieldView::new("kind", "select", "Type de structure")
            .options(STRUCTURE_KINDS)
            .value(&input.kind)
            .errors(errors),
        FieldView::new("siret", "text", "Numéro SIRET")
            .hint("14 chiffres, espaces permis (figure sur l'avis de situation au répertoire SIRENE)")
            .value(&input.siret)
            .inputmode("numeric")
            .errors(errors),
        FieldView::new("address", "textarea", "Adresse postale de l'accueil du public")
            .hint("Numéro, voie et complément, trois lignes au plus (sans le code postal ni la commune)")
            .value(&input.address)
            .errors(errors),
        FieldView::new("postal_code", "text", "Code postal")
            .hint("5 chiffres, par exemple 33600")
            .value(&input.postal_code)
            .inputmode("numeric")
            .autocomplete("postal-code")
            .errors(errors),
        FieldView::new("commune_code", "text", "Code INSEE de la commune")
            .hint("5 caractères, différent du code postal : par exemple 33318 pour Pessac, 2A004 pour Ajaccio. Le département de la demande en découle.")
            .value(&input.commune_code)
            .errors(errors),
        FieldView::new(
            "france_services",
            "checkbox",
            "La structure est labellisée France Services",
        )
        .checked(input.france_services_checked())
        .errors(errors),
        FieldView::new(
            "france_services_number",
            "text",
            "Numéro de labellisation France Services (si labellisée)",
        )
        .value(&input.france_services_number)
        .errors(errors),
        FieldView::new("mission", "textarea", "Missions de la structure")
            .hint("Quels publics accueillez-vous, pour quelles démarches ?")
            .value(&input.mission)
            .errors(errors),
        FieldView::new("opening_hours", "textarea", "Horaires d'accueil du public")
            .hint("Par exemple : du lundi au vendredi, 9 h – 12 h et 14 h – 17 h")
            .value(&input.opening_hours)
            .errors(errors),
    ]
}

fn structure_input_of(d: &Dossier) -> StructureInput {
    let r = &d.request;
    StructureInput {
        name: r.structure_name.clone(),
        kind: r.structure_kind.clone(),
        siret: r.siret.clone(),
        address: r.address.clone(),
        postal_code: r.postal_code.clone().unwrap_or_default(),
        commune_code: r.commune_code.clone(),
        france_services: r.france_services.then(|| "on".to_owned()),
        france_services_number: r.france_services_number.clone().unwrap_or_default(),
        mission: r.mission.clone(),
        opening_hours: r.opening_hours.clone(),
    }
}

const STRUCTURE_INTRO: &[&str] = &[
    "Décrivez la structure qui accueille le public. Sa commune détermine le territoire qui examinera la demande.",
    "Sauf mention contraire, tous les champs sont obligatoires.",
];

/// `GET /demande/nouvelle`.
#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    _issuer: Issuer,
) -> PageResult<Response> {
    let input = StructureInput::default();
    step_page(
        req,
        &platform,
        None,
        "Nouvelle demande",
        1,
        STRUCTURE_INTRO.to_vec(),
        structure_fields(&input, &FieldErrors::default()),
        &FieldErrors::default(),
        None,
    )
}

fn siret_conflict(existing: &str) -> (String, String) {
    if existing.is_empty() {
        (
            "Une demande est déjà ouverte pour ce numéro SIRET.".to_owned(),
            "/demande/mes-demandes".to_owned(),
        )
    } else {
        (
            format!(
                "Une demande est déjà ouverte pour ce numéro SIRET (référence {existing}) : une seule demande à la fois par structure. Si c'est la vôtre, reprenez-la ; sinon, rapprochez-vous de la personne qui l'a déposée."
            ),
            format!("/demande/demandes/{existing}"),
        )
    }
}

/// `POST /demande/nouvelle`: creates the draft with step 1.
#[handler]
pub async fn create(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Form(input): Form<StructureInput>,
) -> PageResult<Response> {
    let outcome = match input.validate() {
        Ok(step) => requests::create_draft(&platform, &issuer.as_ref(), &step).await,
        Err(errors) => Err(RequestError::Fields(errors)),
    };
    match outcome {
        Ok(reference) => Ok(
            Redirect::see_other(format!("/demande/demandes/{reference}/referent")).into_response(),
        ),
        Err(RequestError::Fields(errors)) => step_page(
            req,
            &platform,
            None,
            "Nouvelle demande",
            1,
            STRUCTURE_INTRO.to_vec(),
            structure_fields(&input, &errors),
            &errors,
            None,
        ),
        Err(RequestError::SiretOpen(existing)) => step_page(
            req,
            &platform,
            None,
            "Nouvelle demande",
            1,
            STRUCTURE_INTRO.to_vec(),
            structure_fields(&input, &FieldErrors::default()),
            &FieldErrors::default(),
            Some(siret_conflict(&existing)),
        ),
        Err(e) => request_error(e, ""),
    }
}

fn ensure_editable(d: &Dossier) -> Result<(), RequestError> {
    if d.request.status().editable() {
        Ok(())
    } else {
        Err(RequestError::NotEditable(d.request.status()))
    }
}

/// `GET /demande/demandes/:reference/structure`.
#[handler]
pub async fn structure_form(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (_, d) = own(&platform, &issuer, &reference).await?;
    if let Err(e) = ensure_editable(&d) {
        return request_error(e, &reference);
    }
    step_page(
        req,
        &platform,
        Some(&reference),
        &d.request.structure_name,
        1,
        STRUCTURE_INTRO.to_vec(),
        structure_fields(&structure_input_of(&d), &FieldErrors::default()),
        &FieldErrors::default(),
        None,
    )
}

/// `POST /demande/demandes/:reference/structure`.
#[handler]
pub async fn structure_save(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(input): Form<StructureInput>,
) -> PageResult<Response> {
    let (tenant, d) = own(&platform, &issuer, &reference).await?;
    let outcome = match input.validate() {
        Ok(step) => {
            requests::update_structure(&platform, &tenant, &issuer.as_ref(), &reference, &step)
                .await
        }
        Err(errors) => ensure_editable(&d).and(Err(RequestError::Fields(errors))),
    };
    match outcome {
        Ok(()) => Ok(
            Redirect::see_other(format!("/demande/demandes/{reference}/referent")).into_response(),
        ),
        Err(RequestError::Fields(errors)) => step_page(
            req,
            &platform,
            Some(&reference),
            &d.request.structure_name,
            1,
            STRUCTURE_INTRO.to_vec(),
            structure_fields(&input, &errors),
            &errors,
            None,
        ),
        Err(RequestError::SiretOpen(existing)) => step_page(
            req,
            &platform,
            Some(&reference),
            &d.request.structure_name,
            1,
            STRUCTURE_INTRO.to_vec(),
            structure_fields(&input, &FieldErrors::default()),
            &FieldErrors::default(),
            Some(siret_conflict(&existing)),
        ),
        Err(e) => request_error(e, &reference),
    }
}

fn referent_fields(input: &ReferentInput, errors: &FieldErrors) -> Vec<FieldView> {
    vec![
        FieldView::new("first_name", "text", "Prénom")
            .value(&input.first_name)
            .autocomplete("given-name")
            .errors(errors),
        FieldView::new("last_name", "text", "Nom")
            .value(&input.last_name)
            .autocomplete("family-name")
            .errors(errors),
        FieldView::new("email", "email", "Adresse e-mail professionnelle")
            .hint("Format attendu : nom@domaine.fr. Le lien d'activation du compte du référent y sera envoyé.")
            .value(&input.email)
            .autocomplete("email")
            .errors(errors),
        FieldView::new("phone", "tel", "Téléphone professionnel")
            .hint("10 chiffres, par exemple 05 56 00 00 00")
            .value(&input.phone)
            .autocomplete("tel")
            .errors(errors),
        FieldView::new(
            "is_aidant",
            "checkbox",
            "Le référent sera aussi aidant (il accompagnera lui-même des personnes)",
        )
        .hint("Il suivra alors la formation comme les autres aidants.")
        .checked(input.is_aidant_checked())
        .errors(errors),
    ]
}

const REFERENT_INTRO: &[&str] = &[
    "Le référent gère la structure sur Aidants Connect : il inscrit les aidants en formation, gère leurs accès et suit les mandats. Il peut être aidant lui-même ou non.",
    "Sauf mention contraire, tous les champs sont obligatoires.",
];

/// `GET /demande/demandes/:reference/referent`.
#[handler]
pub async fn referent_form(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (_, d) = own(&platform, &issuer, &reference).await?;
    if let Err(e) = ensure_editable(&d) {
        return request_error(e, &reference);
    }
    let r = &d.request;
    let input = ReferentInput {
        first_name: r.referent_first_name.clone().unwrap_or_default(),
        last_name: r.referent_last_name.clone().unwrap_or_default(),
        email: r.referent_email.clone().unwrap_or_default(),
        phone: r.referent_phone.clone().unwrap_or_default(),
        is_aidant: (r.referent_is_aidant == Some(true)).then(|| "on".to_owned()),
    };
    step_page(
        req,
        &platform,
        Some(&reference),
        &r.structure_name,
        2,
        REFERENT_INTRO.to_vec(),
        referent_fields(&input, &FieldErrors::default()),
        &FieldErrors::default(),
        None,
    )
}

/// `POST /demande/demandes/:reference/referent`.
#[handler]
pub async fn referent_save(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(input): Form<ReferentInput>,
) -> PageResult<Response> {
    let (tenant, d) = own(&platform, &issuer, &reference).await?;
    let outcome = match input.validate() {
        Ok(step) => requests::save_referent(&tenant, &issuer.as_ref(), &reference, &step).await,
        Err(errors) => ensure_editable(&d).and(Err(RequestError::Fields(errors))),
    };
    match outcome {
        Ok(()) => Ok(
            Redirect::see_other(format!("/demande/demandes/{reference}/aidants")).into_response(),
        ),
        Err(RequestError::Fields(errors)) => step_page(
            req,
            &platform,
            Some(&reference),
            &d.request.structure_name,
            2,
            REFERENT_INTRO.to_vec(),
            referent_fields(&input, &errors),
            &errors,
            None,
        ),
        Err(e) => request_error(e, &reference),
    }
}

pub struct AidantLine {
    pub id: String,
    pub name: String,
    pub email: String,
    pub profession: String,
    pub employment: &'static str,
    pub employer: String,
}

#[derive(Template)]
#[template(path = "request_aidants.html")]
struct AidantsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: String,
    reference: Option<String>,
    reference_text: String,
    step: usize,
    steps: Vec<StepLink>,
    aidants: Vec<AidantLine>,
    referent_is_aidant: bool,
    fields: Vec<FieldView>,
    errors: Vec<(&'static str, String)>,
    flash: Option<&'a str>,
}

fn aidant_fields(input: &AidantInput, errors: &FieldErrors) -> Vec<FieldView> {
    vec![
        FieldView::new("first_name", "text", "Prénom")
            .value(&input.first_name)
            .errors(errors),
        FieldView::new("last_name", "text", "Nom")
            .value(&input.last_name)
            .errors(errors),
        FieldView::new("email", "email", "Adresse e-mail professionnelle")
            .hint("Format attendu : nom@domaine.fr. Une adresse personnelle à chaque aidant.")
            .value(&input.email)
            .errors(errors),
        FieldView::new("profession", "text", "Profession (intitulé du poste)")
            .hint("Par exemple : agent d'accueil, travailleur social, conseiller numérique")
            .value(&input.profession)
            .errors(errors),
        FieldView::new("employment", "select", "Statut")
            .hint("Seuls des professionnels peuvent être habilités : ni bénévoles, ni volontaires en service civique, ni stagiaires, ni élus.")
            .options(EMPLOYMENTS)
            .value(&input.employment)
            .errors(errors),
        FieldView::new("employer", "text", "Employeur")
            .hint("La structure elle-même, ou l'organisme qui emploie la personne")
            .value(&input.employer)
            .errors(errors),
    ]
}

fn aidants_page(
    req: &Request,
    platform: &Platform,
    d: &Dossier,
    input: &AidantInput,
    errors: &FieldErrors,
    flash: Option<&str>,
) -> PageResult<Response> {
    let reference = d.request.reference.clone();
    html_status(
        &AidantsPage {
            theme: THEME,
            nav: nav(CURRENT),
            csrf: csrf::token(req, secure(platform)),
            structure: d.request.structure_name.clone(),
            step: 3,
            steps: step_links(Some(&reference), 3),
            reference: Some(reference.clone()),
            reference_text: reference,
            aidants: d
                .aidants
                .iter()
                .map(|a| AidantLine {
                    id: a.id.to_string(),
                    name: format!("{} {}", a.first_name, a.last_name),
                    email: a.email.clone(),
                    profession: a.profession.clone(),
                    employment: employment_label(&a.employment),
                    employer: a.employer.clone(),
                })
                .collect(),
            referent_is_aidant: d.request.referent_is_aidant == Some(true),
            fields: aidant_fields(input, errors),
            errors: errors.summary(),
            flash,
        },
        (!errors.is_empty()).then_some(StatusCode::BAD_REQUEST),
    )
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

/// `GET /demande/demandes/:reference/aidants`.
#[handler]
pub async fn aidants_form(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (_, d) = own(&platform, &issuer, &reference).await?;
    if let Err(e) = ensure_editable(&d) {
        return request_error(e, &reference);
    }
    let flash = match q.message.as_deref() {
        Some("ajoute") => Some("L'aidant est ajouté à la demande."),
        Some("retire") => Some("L'aidant est retiré de la demande."),
        _ => None,
    };
    aidants_page(
        req,
        &platform,
        &d,
        &AidantInput::default(),
        &FieldErrors::default(),
        flash,
    )
}

/// `POST /demande/demandes/:reference/aidants`: adds one aidant.
#[handler]
pub async fn aidant_add(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(input): Form<AidantInput>,
) -> PageResult<Response> {
    let (tenant, d) = own(&platform, &issuer, &reference).await?;
    let outcome = match input.validate() {
        Ok(step) => requests::add_aidant(&tenant, &issuer.as_ref(), &reference, &step).await,
        Err(errors) => ensure_editable(&d).and(Err(RequestError::Fields(errors))),
    };
    match outcome {
        Ok(()) => Ok(Redirect::see_other(format!(
            "/demande/demandes/{reference}/aidants?message=ajoute#liste"
        ))
        .into_response()),
        Err(RequestError::Fields(errors)) => {
            aidants_page(req, &platform, &d, &input, &errors, None)
        }
        Err(e) => request_error(e, &reference),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    aidant: String,
}

/// `POST /demande/demandes/:reference/aidants/retirer`.
#[handler]
pub async fn aidant_remove(
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(f): Form<RemoveForm>,
) -> PageResult<Response> {
    let (tenant, _) = own(&platform, &issuer, &reference).await?;
    let id = Uuid::parse_str(f.aidant.trim()).map_err(|_| PageError::not_found())?;
    match requests::remove_aidant(&tenant, &issuer.as_ref(), &reference, id).await {
        Ok(()) => Ok(Redirect::see_other(format!(
            "/demande/demandes/{reference}/aidants?message=retire#liste"
        ))
        .into_response()),
        Err(e) => request_error(e, &reference),
    }
}

fn commitment_fields(ticked: &[String], errors: &FieldErrors) -> Vec<FieldView> {
    COMMITMENTS
        .iter()
        .map(|c| {
            FieldView::new(c.code, "checkbox", c.text)
                .hint(format!("Version du texte : {}", c.version))
                .checked(ticked.iter().any(|t| t == c.code))
                .errors(errors)
        })
        .collect()
}

const COMMITMENTS_INTRO: &[&str] = &[
    "La structure prend ces engagements envers les personnes qu'elle accompagne et envers l'État. Chacun est enregistré avec la version du texte et l'heure de votre acceptation.",
    "Chaque engagement est obligatoire.",
];

/// `GET /demande/demandes/:reference/engagements`.
#[handler]
pub async fn commitments_form(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (_, d) = own(&platform, &issuer, &reference).await?;
    if let Err(e) = ensure_editable(&d) {
        return request_error(e, &reference);
    }
    step_page(
        req,
        &platform,
        Some(&reference),
        &d.request.structure_name,
        4,
        COMMITMENTS_INTRO.to_vec(),
        commitment_fields(&d.commitments, &FieldErrors::default()),
        &FieldErrors::default(),
        None,
    )
}

/// `POST /demande/demandes/:reference/engagements`.
#[handler]
pub async fn commitments_save(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult<Response> {
    let (tenant, d) = own(&platform, &issuer, &reference).await?;
    let ticked: Vec<String> = form
        .into_iter()
        .filter(|(k, v)| v == "on" && COMMITMENTS.iter().any(|c| c.code == k))
        .map(|(k, _)| k)
        .collect();
    match requests::save_commitments(&tenant, &issuer.as_ref(), &reference, &ticked).await {
        Ok(()) => Ok(Redirect::see_other(format!("/demande/demandes/{reference}")).into_response()),
        Err(RequestError::Fields(errors)) => {
            if let Err(e) = ensure_editable(&d) {
                return request_error(e, &reference);
            }
            step_page(
                req,
                &platform,
                Some(&reference),
                &d.request.structure_name,
                4,
                COMMITMENTS_INTRO.to_vec(),
                commitment_fields(&ticked, &errors),
                &errors,
                None,
            )
        }
        Err(e) => request_error(e, &reference),
    }
}

// ---------------------------------------------------------------------------------------------
// The recap, the thread and the acts.

pub struct ThreadLine {
    pub from_issuer: bool,
    pub author: String,
    pub at: String,
    pub body: String,
}

pub struct CommitmentLine {
    pub text: &'static str,
    pub version: &'static str,
    pub accepted: bool,
}

/// What the recap shows of a dossier (also the reviewers' page).
pub struct Recap {
    pub reference: String,
    pub status: Status,
    pub structure: String,
    pub kind: &'static str,
    pub siret: String,
    pub address: String,
    pub postal_code: String,
    pub commune: String,
    pub territory: String,
    pub france_services: String,
    pub mission: String,
    pub opening_hours: String,
    pub referent: Option<(String, String, String, bool)>,
    pub aidants: Vec<AidantLine>,
    pub commitments: Vec<CommitmentLine>,
    pub thread: Vec<ThreadLine>,
    pub issuer_email: String,
    pub created: String,
    pub submitted: Option<String>,
    pub decided: Option<String>,
    pub refusal_reason: Option<String>,
    pub missing: Vec<&'static str>,
}

pub fn recap(d: &Dossier, reviewer_names: &dyn Fn(ProfessionalId) -> String) -> Recap {
    let r = &d.request;
    let territory = r
        .departement()
        .map(|d| format!("{} ({})", d.name(), d.as_str()))
        .unwrap_or_default();
    Recap {
        reference: r.reference.clone(),
        status: r.status(),
        structure: r.structure_name.clone(),
        kind: kind_label(&r.structure_kind),
        siret: r.siret.clone(),
        address: r.address.clone(),
        postal_code: r.postal_code.clone().unwrap_or_default(),
        commune: match &d.commune {
            Some(c) => format!("{} (code INSEE {})", c.name, c.code),
            None => format!("code INSEE {}", r.commune_code),
        },
        territory,
        france_services: match (&r.france_services, &r.france_services_number) {
            (true, Some(n)) => format!("Oui, numéro {n}"),
            (true, None) => "Oui".to_owned(),
            (false, _) => "Non".to_owned(),
        },
        mission: r.mission.clone(),
        opening_hours: r.opening_hours.clone(),
        referent: r.referent_email.as_ref().map(|email| {
            (
                format!(
                    "{} {}",
                    r.referent_first_name.clone().unwrap_or_default(),
                    r.referent_last_name.clone().unwrap_or_default()
                ),
                email.clone(),
                r.referent_phone.clone().unwrap_or_default(),
                r.referent_is_aidant == Some(true),
            )
        }),
        aidants: d
            .aidants
            .iter()
            .map(|a| AidantLine {
                id: a.id.to_string(),
                name: format!("{} {}", a.first_name, a.last_name),
                email: a.email.clone(),
                profession: a.profession.clone(),
                employment: employment_label(&a.employment),
                employer: a.employer.clone(),
            })
            .collect(),
        commitments: COMMITMENTS
            .iter()
            .map(|c| CommitmentLine {
                text: c.text,
                version: c.version,
                accepted: d.commitments.iter().any(|a| a == c.code),
            })
            .collect(),
        thread: d
            .messages
            .iter()
            .map(|m| ThreadLine {
                from_issuer: m.author == "issuer",
                author: match m.professional_id {
                    Some(id) => reviewer_names(id),
                    None => "Le demandeur".to_owned(),
                },
                at: paris::date_time(m.created_at),
                body: m.body.clone(),
            })
            .collect(),
        issuer_email: r.issuer_email.clone(),
        created: paris::date_time(r.created_at),
        submitted: r.first_submitted_at.map(paris::date_time),
        decided: r.decided_at.map(paris::date_time),
        refusal_reason: r.refusal_reason.clone(),
        missing: d.missing(),
    }
}

#[derive(Template)]
#[template(path = "request_view.html")]
struct ViewPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    recap: Recap,
    editable: bool,
    open: bool,
    can_write: bool,
    message_error: Option<String>,
    message: String,
    flash: Option<&'a str>,
}

fn view_page(
    req: &Request,
    platform: &Platform,
    d: &Dossier,
    message: String,
    message_error: Option<String>,
    flash: Option<&str>,
) -> PageResult<Response> {
    let status = d.request.status();
    html_status(
        &ViewPage {
            theme: THEME,
            nav: nav(CURRENT),
            csrf: csrf::token(req, secure(platform)),
            recap: recap(d, &|_| "L'équipe d'instruction".to_owned()),
            editable: status.editable(),
            open: status.open(),
            can_write: status.open() && status != Status::Draft,
            message_error: message_error.clone(),
            message,
            flash,
        },
        (message_error.is_some()).then_some(StatusCode::BAD_REQUEST),
    )
}

/// `GET /demande/demandes/:reference`.
#[handler]
pub async fn view(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (_, d) = own(&platform, &issuer, &reference).await?;
    let flash = match q.message.as_deref() {
        Some("deposee") => {
            Some("Votre demande est déposée. Un accusé de réception vous a été envoyé par e-mail.")
        }
        Some("en-attente") => Some(
            "Votre demande est enregistrée. Votre territoire n'est pas encore ouvert : elle sera examinée à l'ouverture de sa vague de déploiement, et vous serez prévenu par e-mail.",
        ),
        Some("modifiee") => {
            Some("Votre demande modifiée est déposée : l'équipe d'instruction en est prévenue.")
        }
        Some("message") => Some("Votre message est envoyé à l'équipe d'instruction."),
        Some("retiree") => Some("Votre demande est retirée."),
        _ => None,
    };
    view_page(req, &platform, &d, String::new(), None, flash)
}

/// `POST /demande/demandes/:reference/deposer`.
#[handler]
pub async fn submit(
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (tenant, _) = own(&platform, &issuer, &reference).await?;
    match requests::submit(&platform, &tenant, &issuer.as_ref(), &reference).await {
        Ok(status) => {
            let message = match status {
                Status::Waiting => "en-attente",
                Status::Amended => "modifiee",
                _ => "deposee",
            };
            Ok(
                Redirect::see_other(format!("/demande/demandes/{reference}?message={message}"))
                    .into_response(),
            )
        }
        Err(e) => request_error(e, &reference),
    }
}

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    message: String,
}

/// `POST /demande/demandes/:reference/message`.
#[handler]
pub async fn post_message(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
    Form(f): Form<MessageForm>,
) -> PageResult<Response> {
    let (tenant, d) = own(&platform, &issuer, &reference).await?;
    match requests::issuer_message(&platform, &tenant, &issuer.as_ref(), &reference, &f.message)
        .await
    {
        Ok(()) => Ok(Redirect::see_other(format!(
            "/demande/demandes/{reference}?message=message#fil"
        ))
        .into_response()),
        Err(RequestError::Fields(errors)) => view_page(
            req,
            &platform,
            &d,
            f.message,
            errors.get("message").map(str::to_owned),
            None,
        ),
        Err(e) => request_error(e, &reference),
    }
}

/// `POST /demande/demandes/:reference/retirer`.
#[handler]
pub async fn withdraw(
    platform: Data<&Platform>,
    issuer: Issuer,
    Path(reference): Path<String>,
) -> PageResult<Response> {
    let (tenant, _) = own(&platform, &issuer, &reference).await?;
    match requests::withdraw(&tenant, &issuer.as_ref(), &reference).await {
        Ok(()) => Ok(
            Redirect::see_other(format!("/demande/demandes/{reference}?message=retiree"))
                .into_response(),
        ),
        Err(e) => request_error(e, &reference),
    }
}
