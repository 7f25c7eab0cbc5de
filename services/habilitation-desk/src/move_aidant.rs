//! `/structure/aidants/deplacer`: the référent moves an aidant of their structure to another
//! active structure of the same tenant (`aidant:move`). The `aidant` role moves from one
//! structure to the other in one platform transaction (the aidant's sessions end, as for any
//! role withdrawn, and the guards reload); the habilitation file and its index entry follow;
//! the move is journaled in the territory and the security journal.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::auth::{csrf, guard};
use foundation::ids::{ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Role};
use serde::Deserialize;
use serde_json::json;

use crate::views::{THEME, nav};

/// The référent's structure, its territory, the aidant (an aidant of it, else 404) and the
/// other active structures of its tenant.
async fn context(
    platform: &Platform,
    me: &Professional,
    aidant: &str,
) -> PageResult<(
    StructureId,
    Territory,
    ProfessionalId,
    String,
    Vec<(StructureId, String)>,
)> {
    let allowed = guard::require_in_current_structure(platform, me, Action::AidantMove).await?;
    let structure = allowed.structure();
    guard::require_active_structure(platform, structure).await?;
    let aidant: ProfessionalId = aidant.trim().parse().map_err(|_| PageError::not_found())?;
    let name: String = sqlx::query_scalar(
        "SELECT p.display_name FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.professional_id = $1 AND a.role = 'aidant' AND a.domain = $2",
    )
    .bind(aidant)
    .bind(structure.domain().to_string())
    .fetch_optional(platform.platform_pool())
    .await?
    .ok_or_else(PageError::not_found)?;
    let tenant = allowed.territory(platform).await?;
    let mut tx = tenant.begin().await?;
    let targets: Vec<(StructureId, String)> = sqlx::query_as(
        "SELECT s.id, s.name FROM structures s
         WHERE s.tenant_id = (SELECT tenant_id FROM structures WHERE id = $1) AND s.id <> $1 AND s.active
         ORDER BY s.name",
    )
    .bind(structure)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((structure, tenant, aidant, name, targets))
}

#[derive(Template)]
#[template(path = "move_aidant.html")]
struct MovePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    aidant: String,
    name: String,
    targets: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub struct AidantQuery {
    #[serde(default)]
    aidant: String,
}

/// `GET /structure/aidants/deplacer?aidant=…`.
#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<AidantQuery>,
) -> PageResult<Response> {
    let (_, _, aidant, name, targets) = context(&platform, &me, &q.aidant).await?;
    html(&MovePage {
        theme: THEME,
        nav: nav("/referent/aidants"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        aidant: aidant.to_string(),
        name,
        targets: targets
            .into_iter()
            .map(|(id, n)| (id.to_string(), n))
            .collect(),
    })
}

#[derive(Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    aidant: String,
    #[serde(default)]
    structure: String,
}

/// `POST /structure/aidants/deplacer`.
#[handler]
pub async fn apply(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<MoveForm>,
) -> PageResult<Response> {
    let (from, tenant, aidant, _, targets) = context(&platform, &me, &f.aidant).await?;
    let to: StructureId = f
        .structure
        .trim()
        .parse()
        .map_err(|_| PageError::not_found())?;
    // Only a structure of the same tenant: anything else is as if it did not exist.
    if !targets.iter().any(|(id, _)| *id == to) {
        return Err(PageError::not_found());
    }
    let departement = tenant.departement();
    let mut tx = platform.platform_pool().begin().await?;
    sqlx::query(
        "DELETE FROM platform.role_assignments WHERE professional_id = $1 AND role = 'aidant' AND domain = $2",
    )
    .bind(aidant)
    .bind(from.domain().to_string())
    .execute(&mut *tx)
    .await?;
    crate::accounts::grant_role(
        &mut tx,
        aidant,
        Role::Aidant,
        to.domain(),
        Some(departement.as_str()),
    )
    .await?;
    sqlx::query(
        "UPDATE platform.habilitation_file_index SET structure_id = $3
         WHERE structure_id = $1 AND email = (SELECT email FROM platform.professionals WHERE id = $2)",
    )
    .bind(from)
    .bind(aidant)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    security::append(
        &mut tx,
        SecurityEvent::AidantMoved,
        Some(aidant),
        Some(me.id),
        json!({ "from": from, "to": to }),
    )
    .await?;
    tx.commit().await?;
    let mut dep = tenant.begin().await?;
    sqlx::query(
        "UPDATE habilitation_files SET structure_id = $3
         WHERE structure_id = $1 AND professional_id = $2
           AND NOT EXISTS (SELECT 1 FROM habilitation_files o WHERE o.structure_id = $3 AND o.email = habilitation_files.email)",
    )
    .bind(from)
    .bind(aidant)
    .bind(to)
    .execute(&mut *dep)
    .await?;
    journal::append(
        &mut dep,
        NewEntry::new(Event::AidantMoved)
            .structure(to)
            .professional(aidant)
            .details(json!({ "from": from, "to": to, "by": me.id })),
    )
    .await?;
    dep.commit().await?;
    Ok(Redirect::see_other("/referent/aidants?message=aidant-deplace").into_response())
}

#[derive(Deserialize)]
pub struct AppointForm {
    #[serde(default)]
    aidant: String,
}

/// `POST /structure/co-referents`: the référent makes an aidant of the structure a co-référent
/// (`referent:appoint`, recent code); journaled, and the person is told.
#[handler]
pub async fn appoint(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<AppointForm>,
) -> PageResult<Response> {
    let allowed =
        guard::require_in_current_structure(&platform, &me, Action::ReferentAppoint).await?;
    let structure = allowed.structure();
    guard::require_active_structure(&platform, structure).await?;
    let aidant: ProfessionalId = f
        .aidant
        .trim()
        .parse()
        .map_err(|_| PageError::not_found())?;
    let email: String = sqlx::query_scalar(
        "SELECT p.email FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.professional_id = $1 AND a.role = 'aidant' AND a.domain = $2 AND p.active",
    )
    .bind(aidant)
    .bind(structure.domain().to_string())
    .fetch_optional(platform.platform_pool())
    .await?
    .ok_or_else(PageError::not_found)?;
    let tenant = allowed.territory(&platform).await?;
    let mut tx = platform.platform_pool().begin().await?;
    crate::accounts::grant_role(
        &mut tx,
        aidant,
        Role::Referent,
        structure.domain(),
        Some(tenant.departement().as_str()),
    )
    .await?;
    security::append(
        &mut tx,
        SecurityEvent::ReferentAppointed,
        Some(aidant),
        Some(me.id),
        json!({ "structure": structure }),
    )
    .await?;
    tx.commit().await?;
    let mut dep = tenant.begin().await?;
    let name: String = sqlx::query_scalar("SELECT name FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_one(&mut *dep)
        .await?;
    journal::append(
        &mut dep,
        NewEntry::new(Event::ReferentAppointed)
            .structure(structure)
            .professional(aidant)
            .details(json!({ "role": "referent", "by": me.id })),
    )
    .await?;
    foundation::outbox::enqueue_tenant(
        &mut dep,
        &foundation::outbox::OutboxMessage {
            channel: foundation::outbox::Channel::Email,
            recipient: email,
            template: "referent_appointed",
            payload: json!({
                "structure": name,
                "url": format!("{}/connexion", crate::requests::public_url(&platform)),
            }),
        },
    )
    .await?;
    dep.commit().await?;
    Ok(Redirect::see_other("/referent/aidants?message=co-referent").into_response())
}
