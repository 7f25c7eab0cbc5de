//! Référent pages: the aidants of the current structure and their second factors — link or
//! unlink a TOTP card, unblock, re-synchronise with two codes, send an activation link for an
//! authenticator app. Every action goes through the guard (`factor:manage` in the structure) and
//! only reaches aidants of that structure.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::{Professional, RecentlyVerified};
use foundation::auth::{cards, csrf, guard};
use foundation::ids::ProfessionalId;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::accounts;
use crate::views::{THEME, nav};

/// Id, name, e-mail, factor kind, card serial, blocked.
type AidantFactorRow = (
    ProfessionalId,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
);

pub struct AidantRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub factor: String,
}

#[derive(Template)]
#[template(path = "referent_aidants.html")]
struct AidantsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure_name: String,
    aidants: Vec<AidantRow>,
    flash: Option<(bool, &'a str)>,
}

/// French outcome messages, chosen by code (nothing from the query string is echoed).
fn flash(code: Option<&str>) -> Option<(bool, &'static str)> {
    Some(match code? {
        "carte-associee" => (
            true,
            "La carte est associée : l'aidant se connecte désormais avec ses codes.",
        ),
        "carte-refusee" => (
            false,
            "Carte introuvable, déjà associée, ou code incorrect. Vérifiez le numéro de série et saisissez le code affiché en ce moment.",
        ),
        "carte-retiree" => (
            true,
            "La carte est retirée ; elle peut être associée à nouveau.",
        ),
        "aucune-carte" => (false, "Cet aidant n'a pas de carte associée."),
        "debloque" => (true, "Le second facteur est débloqué."),
        "rien-a-debloquer" => (false, "Cet aidant n'a pas de second facteur actif."),
        "resynchronise" => (true, "Le second facteur est resynchronisé."),
        "resync-refusee" => (
            false,
            "Ces deux codes ne se suivent pas ou sont trop anciens. Saisissez deux codes consécutifs affichés maintenant.",
        ),
        "co-referent" => (
            true,
            "L'aidant est désormais co-référent de la structure ; il en est informé par e-mail.",
        ),
        "aidant-deplace" => (
            true,
            "L'aidant a rejoint sa nouvelle structure ; ses sessions en cours sont closes.",
        ),
        "habilitation-retiree" => (
            true,
            "L'habilitation est retirée : les sessions de l'aidant sont closes et il en est informé par e-mail.",
        ),
        "lien-envoye" => (
            true,
            "Un lien d'enregistrement d'application a été envoyé à l'aidant.",
        ),
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

#[handler]
pub async fn aidants(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let allowed = guard::require_in_current_structure(&platform, &me, Action::FactorManage).await?;
    let structure = allowed.structure();
    guard::require_active_structure(&platform, structure).await?;
    let rows: Vec<AidantFactorRow> = sqlx::query_as(
        "SELECT p.id, p.display_name, p.email, f.kind, f.card_serial, f.locked OR f.blocked_until > now()
         FROM platform.professionals p
         JOIN platform.role_assignments a ON a.professional_id = p.id AND a.domain = $1 AND a.role = 'aidant'
         LEFT JOIN platform.second_factors f ON f.professional_id = p.id AND f.confirmed_at IS NOT NULL AND f.revoked_at IS NULL
         WHERE p.active ORDER BY p.display_name",
    )
    .bind(format!("structure:{structure}"))
    .fetch_all(platform.platform_pool())
    .await?;
    let aidants = rows
        .into_iter()
        .map(|(id, name, email, kind, serial, blocked)| {
            let mut factor = match (kind.as_deref(), serial) {
                (Some("card"), Some(serial)) => format!("carte {serial}"),
                (Some(_), _) => "application d'authentification".to_owned(),
                (None, _) => "aucun".to_owned(),
            };
            if blocked == Some(true) {
                factor.push_str(" (bloqué)");
            }
            AidantRow {
                id: id.to_string(),
                name,
                email,
                factor,
            }
        })
        .collect();
    let mut structure_name = "la structure".to_owned();
    let mut tx = allowed.territory(&platform).await?.begin().await?;
    if let Some(name) = sqlx::query_scalar::<_, String>("SELECT name FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_optional(&mut *tx)
        .await?
    {
        structure_name = name;
    }
    tx.commit().await?;
    html(&AidantsPage {
        theme: THEME,
        nav: nav("/referent/aidants"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        structure_name,
        aidants,
        flash: flash(q.message.as_deref()),
    })
}

/// The guard for référent actions, and the target aidant, who must belong to the structure
/// (another structure's aidant, or nonsense: 404, as for anything that is not there).
async fn target(
    platform: &Platform,
    me: &Professional,
    aidant: &str,
) -> PageResult<ProfessionalId> {
    let structure = guard::require_in_current_structure(platform, me, Action::FactorManage)
        .await?
        .structure();
    guard::require_active_structure(platform, structure).await?;
    let id: ProfessionalId = aidant
        .trim()
        .parse()
        .map_err(|_| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
                        WHERE a.professional_id = $1 AND a.domain = $2 AND a.role = 'aidant' AND p.active)",
    )
    .bind(id)
    .bind(format!("structure:{structure}"))
    .fetch_one(platform.platform_pool())
    .await?;
    if member {
        Ok(id)
    } else {
        Err(PageError::not_found())
    }
}

fn back(message: &str) -> Response {
    Redirect::see_other(format!("/referent/aidants?message={message}")).into_response()
}

#[derive(Deserialize)]
pub struct CardForm {
    aidant: String,
    serie: String,
    code: String,
}

#[handler]
pub async fn link_card(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<CardForm>,
) -> PageResult<Response> {
    let aidant = target(&platform, &me, &f.aidant).await?;
    let mut tx = platform.platform_pool().begin().await?;
    match cards::link(
        &mut tx,
        &platform.cipher,
        aidant,
        &f.serie,
        &f.code,
        me.id,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(()) => {
            tx.commit().await?;
            Ok(back("carte-associee"))
        }
        Err(_) => Ok(back("carte-refusee")),
    }
}

#[derive(Deserialize)]
pub struct UnlinkForm {
    aidant: String,
    motif: String,
}

#[handler]
pub async fn unlink_card(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<UnlinkForm>,
) -> PageResult<Response> {
    let aidant = target(&platform, &me, &f.aidant).await?;
    let reason = f.motif.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(PageError::status(StatusCode::BAD_REQUEST));
    }
    let mut tx = platform.platform_pool().begin().await?;
    let done = cards::unlink(&mut tx, aidant, reason, me.id).await?;
    tx.commit().await?;
    Ok(back(if done {
        "carte-retiree"
    } else {
        "aucune-carte"
    }))
}

#[derive(Deserialize)]
pub struct AidantForm {
    aidant: String,
}

#[handler]
pub async fn unblock(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<AidantForm>,
) -> PageResult<Response> {
    let aidant = target(&platform, &me, &f.aidant).await?;
    let mut tx = platform.platform_pool().begin().await?;
    let done = cards::unlock(&mut tx, aidant, me.id).await?;
    tx.commit().await?;
    Ok(back(if done { "debloque" } else { "rien-a-debloquer" }))
}

#[handler]
pub async fn send_activation(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<AidantForm>,
) -> PageResult<Response> {
    let aidant = target(&platform, &me, &f.aidant).await?;
    let mut tx = platform.platform_pool().begin().await?;
    accounts::send_enrolment_link(
        &mut tx,
        &platform.cipher,
        aidant,
        &platform.settings.http.public_url,
    )
    .await?;
    tx.commit().await?;
    Ok(back("lien-envoye"))
}

#[derive(Deserialize)]
pub struct ResyncForm {
    aidant: String,
    premier: String,
    second: String,
}

#[handler]
pub async fn resync(
    platform: Data<&Platform>,
    RecentlyVerified(me): RecentlyVerified,
    Form(f): Form<ResyncForm>,
) -> PageResult<Response> {
    let aidant = target(&platform, &me, &f.aidant).await?;
    let mut tx = platform.platform_pool().begin().await?;
    match cards::resync(
        &mut tx,
        &platform.cipher,
        aidant,
        &f.premier,
        &f.second,
        me.id,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(_) => {
            tx.commit().await?;
            Ok(back("resynchronise"))
        }
        Err(_) => Ok(back("resync-refusee")),
    }
}
