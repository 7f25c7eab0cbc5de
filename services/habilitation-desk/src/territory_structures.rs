//! A territory admin manages their tenant's structures (`structure:manage` in `tenant:<id>`):
//! edits a structure's public details (those the open data of habilitated places shows),
//! deactivates a structure with a reason (recent code; the structure's aidants can no longer
//! act for it, its mandates are no longer usable), and delegates the administration of the
//! tenant to a colleague (`territory:delegate`, recent code). Each act is journaled in the
//! territory; a structure of another tenant is 404, like the tenant itself.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::ids::{ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Role};
use serde::Deserialize;
use serde_json::json;

use crate::accounts;
use crate::requests::form::FieldErrors;
use crate::territory_space::{StructureRow, Tenant, scoped, structures};
use crate::views::{THEME, nav};

/// The tenant's structure of the path (404 when it is another tenant's).
async fn structure_of(context: &Territory, tenant: &Tenant, id: &str) -> PageResult<StructureRow> {
    let id: StructureId = id.trim().parse().map_err(|_| PageError::not_found())?;
    structures(context, tenant.id)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(PageError::not_found)
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    opening_hours: String,
    #[serde(default)]
    mission: String,
}

impl DetailsForm {
    fn of(s: &StructureRow) -> Self {
        DetailsForm {
            name: s.name.clone(),
            address: s.address.clone(),
            postal_code: s.postal_code.clone().unwrap_or_default(),
            opening_hours: s.opening_hours.clone(),
            mission: s.mission.clone(),
        }
    }

    /// The form's fields: name, label, value, multiline.
    fn fields(&self) -> Vec<(&'static str, &'static str, &str, bool)> {
        vec![
            ("name", "Nom de la structure", &self.name, false),
            (
                "address",
                "Adresse où le public est reçu",
                &self.address,
                false,
            ),
            ("postal_code", "Code postal", &self.postal_code, false),
            (
                "opening_hours",
                "Horaires d'ouverture",
                &self.opening_hours,
                true,
            ),
            (
                "mission",
                "Présentation de l'accompagnement proposé",
                &self.mission,
                true,
            ),
        ]
    }

    /// The French error of each wrong field; nothing is saved while one remains.
    fn errors(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        let len = |s: &str| s.trim().chars().count();
        if len(&self.name) == 0 || len(&self.name) > 200 {
            errors.add(
                "name",
                "Indiquez le nom de la structure (200 caractères au plus).",
            );
        }
        if len(&self.address) == 0 || len(&self.address) > 300 {
            errors.add(
                "address",
                "Indiquez l'adresse où le public est reçu (300 caractères au plus).",
            );
        }
        let postal = self.postal_code.trim();
        let postal_ok =
            postal.is_empty() || postal.len() == 5 && postal.chars().all(|c| c.is_ascii_digit());
        if !postal_ok {
            errors.add(
                "postal_code",
                "Le code postal s'écrit avec 5 chiffres, par exemple 33000.",
            );
        }
        if len(&self.opening_hours) > 500 {
            errors.add(
                "opening_hours",
                "Les horaires tiennent en 500 caractères au plus.",
            );
        }
        if len(&self.mission) > 1000 {
            errors.add(
                "mission",
                "La présentation tient en 1 000 caractères au plus.",
            );
        }
        errors
    }
}

#[derive(Template)]
#[template(path = "territory_structure.html")]
struct StructurePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    tenant: Tenant,
    structure: StructureRow,
    form: DetailsForm,
    errors: FieldErrors,
    reason: String,
    reason_error: Option<&'a str>,
}

fn render(page: StructurePage<'_>, status: Option<StatusCode>) -> PageResult<Response> {
    html_status(&page, status)
}

/// `GET /territoire/collectivites/:id/structures/:structure`.
#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path((id, structure)): Path<(String, String)>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureManage).await?;
    let structure = structure_of(&context, &tenant, &structure).await?;
    render(
        StructurePage {
            theme: THEME,
            nav: nav("/territoire"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            form: DetailsForm::of(&structure),
            tenant,
            structure,
            errors: FieldErrors::default(),
            reason: String::new(),
            reason_error: None,
        },
        None,
    )
}

/// `POST /territoire/collectivites/:id/structures/:structure`: saves the public details.
#[handler]
pub async fn save(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path((id, structure)): Path<(String, String)>,
    Form(f): Form<DetailsForm>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureManage).await?;
    let structure = structure_of(&context, &tenant, &structure).await?;
    let errors = f.errors();
    if !errors.is_empty() {
        return render(
            StructurePage {
                theme: THEME,
                nav: nav("/territoire"),
                csrf: csrf::token(req, platform.settings.http.secure_cookies()),
                tenant,
                structure,
                form: f,
                errors,
                reason: String::new(),
                reason_error: None,
            },
            Some(StatusCode::BAD_REQUEST),
        );
    }
    let postal = f.postal_code.trim();
    let mut tx = context.begin().await?;
    sqlx::query(
        "UPDATE structures SET name = $2, address = $3, postal_code = $4, opening_hours = $5, mission = $6
         WHERE id = $1",
    )
    .bind(structure.id)
    .bind(f.name.trim())
    .bind(f.address.trim())
    .bind((!postal.is_empty()).then_some(postal))
    .bind(f.opening_hours.trim())
    .bind(f.mission.trim())
    .execute(&mut *tx)
    .await?;
    // Which fields changed, by name only.
    let before = DetailsForm::of(&structure);
    let changed: Vec<&str> = [
        ("name", before.name.trim() != f.name.trim()),
        ("address", before.address.trim() != f.address.trim()),
        ("postal_code", before.postal_code.trim() != postal),
        (
            "opening_hours",
            before.opening_hours.trim() != f.opening_hours.trim(),
        ),
        ("mission", before.mission.trim() != f.mission.trim()),
    ]
    .into_iter()
    .filter(|(_, c)| *c)
    .map(|(n, _)| n)
    .collect();
    journal::append(
        &mut tx,
        NewEntry::new(Event::StructureDetailsUpdated)
            .structure(structure.id)
            .professional(me.id)
            .details(json!({ "tenant": tenant.id, "fields": changed })),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other(format!(
        "/territoire/collectivites/{}?message=modifiee",
        tenant.id
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct DeactivateForm {
    #[serde(default)]
    reason: String,
}

/// `POST /territoire/collectivites/:id/structures/:structure/desactiver`.
#[handler]
pub async fn deactivate(
    req: &Request,
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Path((id, structure)): Path<(String, String)>,
    Form(f): Form<DeactivateForm>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureManage).await?;
    let structure = structure_of(&context, &tenant, &structure).await?;
    let reason = f.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 || !structure.active {
        let message = if structure.active {
            "Indiquez le motif de la désactivation (2 000 caractères au plus) : il est conservé."
        } else {
            "Cette structure est déjà désactivée."
        };
        let status = if structure.active {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::CONFLICT
        };
        return render(
            StructurePage {
                theme: THEME,
                nav: nav("/territoire"),
                csrf: csrf::token(req, platform.settings.http.secure_cookies()),
                form: DetailsForm::of(&structure),
                tenant,
                structure,
                errors: FieldErrors::default(),
                reason: f.reason,
                reason_error: Some(message),
            },
            Some(status),
        );
    }
    let mut tx = context.begin().await?;
    let done = sqlx::query(
        "UPDATE structures SET active = false, deactivated_at = now(), deactivated_by = $2, deactivation_reason = $3
         WHERE id = $1 AND active",
    )
    .bind(structure.id)
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
            .structure(structure.id)
            .professional(me.id)
            .details(json!({ "by": "territory", "tenant": tenant.id })),
    )
    .await?;
    tx.commit().await?;
    let mut conn = platform.platform_pool().acquire().await?;
    security::append(
        &mut conn,
        SecurityEvent::StructureDeactivated,
        None,
        Some(me.id),
        json!({ "structure": structure.id, "departement": context.departement().as_str(), "by": "territory" }),
    )
    .await?;
    Ok(Redirect::see_other(format!(
        "/territoire/collectivites/{}?message=desactivee",
        tenant.id
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct DelegateForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

/// `POST /territoire/collectivites/:id/co-admins`: makes a colleague a territory admin of the
/// tenant. An existing account gets the role; otherwise an account is created and its
/// enrolment link mailed. Told by e-mail either way.
#[handler]
pub async fn delegate(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Path(id): Path<String>,
    Form(f): Form<DelegateForm>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::TerritoryDelegate).await?;
    let back = format!("/territoire/collectivites/{}", tenant.id);
    let refuse = |text: &'static str| {
        html_status(
            &crate::views::MessagePage {
                theme: THEME,
                nav: nav("/territoire"),
                heading: "La délégation n'est pas enregistrée",
                paragraphs: vec![text],
                link: Some((&back, "Revenir à l'espace du territoire")),
            },
            Some(StatusCode::BAD_REQUEST),
        )
    };
    let Ok(email) = accounts::normalize_email(&f.email) else {
        return refuse(
            "L'adresse e-mail n'est pas valide : elle s'écrit comme prenom.nom@collectivite.fr.",
        );
    };
    let mut tx = platform.platform_pool().begin().await?;
    let existing: Option<(ProfessionalId, bool)> =
        sqlx::query_as("SELECT id, active FROM platform.professionals WHERE email = $1")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let (professional, created) = match existing {
        Some((_, false)) => {
            return refuse(
                "Ce compte est désactivé : adressez-vous à l'équipe nationale pour le rouvrir.",
            );
        }
        Some((id, true)) => (id, false),
        None => {
            let name = f.name.trim();
            if name.is_empty() {
                return refuse(
                    "Cette personne n'a pas encore de compte : indiquez aussi ses prénom et nom.",
                );
            }
            match accounts::create_professional(&mut tx, &email, name).await {
                Ok(id) => (id, true),
                Err(accounts::AccountError::Database(e)) => return Err(PageError::from(e)),
                Err(_) => {
                    return refuse("Le nom indiqué n'est pas valide (200 caractères au plus).");
                }
            }
        }
    };
    accounts::grant_role(
        &mut tx,
        professional,
        Role::TerritoryAdmin,
        tenant.id.domain(),
        None,
    )
    .await?;
    if created {
        accounts::send_enrolment_link(
            &mut tx,
            &platform.cipher,
            professional,
            &crate::requests::public_url(&platform),
        )
        .await?;
    }
    security::append(
        &mut tx,
        SecurityEvent::TerritoryAdminDelegated,
        Some(professional),
        Some(me.id),
        json!({ "tenant": tenant.id }),
    )
    .await?;
    outbox::enqueue_platform(
        &mut tx,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: email,
            template: "territory_admin_delegated",
            payload: json!({
                "tenant": tenant.name,
                "url": format!("{}/territoire", crate::requests::public_url(&platform)),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    let mut dep = context.begin().await?;
    journal::append(
        &mut dep,
        NewEntry::new(Event::TerritoryAdminDelegated)
            .professional(professional)
            .details(json!({ "tenant": tenant.id, "by": me.id })),
    )
    .await?;
    dep.commit().await?;
    Ok(Redirect::see_other(format!("{back}?message=delegue")).into_response())
}
