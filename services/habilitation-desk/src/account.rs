//! The professional's own space: account page, structure switch, activity re-check.

use foundation::app::Platform;
use foundation::auth::journal::{self, SecurityEvent};
use foundation::auth::session::Professional;
use foundation::auth::{csrf, factors};
use foundation::ids::{ProfessionalId, StructureId};
use foundation::tenancy::DepartementCode;
use foundation::web::html;
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::views::{AccountPage, CodePage, StructureChoice, THEME, nav, role_label, safe_next};

/// The structures where the professional holds a role: (structure, département, roles).
async fn structures_of(
    platform: &Platform,
    professional: ProfessionalId,
) -> Result<Vec<(StructureId, String, Vec<String>)>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT domain, departement_code, role FROM platform.role_assignments
         WHERE professional_id = $1 AND domain LIKE 'structure:%' ORDER BY granted_at",
    )
    .bind(professional)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut out: Vec<(StructureId, String, Vec<String>)> = Vec::new();
    for (domain, departement, role) in rows {
        let Some(id) = domain
            .strip_prefix("structure:")
            .and_then(|s| s.parse::<StructureId>().ok())
        else {
            continue;
        };
        match out.iter_mut().find(|(s, _, _)| *s == id) {
            Some((_, _, roles)) => roles.push(role),
            None => out.push((id, departement.unwrap_or_default(), vec![role])),
        }
    }
    Ok(out)
}

async fn structure_name(platform: &Platform, id: StructureId, departement: &str) -> String {
    let Ok(code) = DepartementCode::parse(departement) else {
        return "Structure".into();
    };
    let Ok(ctx) = platform.tenancy.unguarded(code).await else {
        return "Structure (territoire indisponible)".into();
    };
    let Ok(mut tx) = ctx.begin().await else {
        return "Structure".into();
    };
    sqlx::query_scalar::<_, String>("SELECT name FROM structures WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "Structure".into())
}

#[handler]
pub async fn page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
) -> PageResult<Response> {
    let mut structures = Vec::new();
    for (id, departement, roles) in structures_of(&platform, me.id).await? {
        structures.push(StructureChoice {
            id: id.to_string(),
            name: structure_name(&platform, id, &departement).await,
            roles: roles
                .iter()
                .map(|r| role_label(r))
                .collect::<Vec<_>>()
                .join(", "),
            current: me.current_structure == Some(id),
        });
    }
    let other_roles: Vec<String> = sqlx::query_scalar::<_, String>(
        "SELECT role FROM platform.role_assignments WHERE professional_id = $1 AND domain NOT LIKE 'structure:%' ORDER BY role",
    )
    .bind(me.id)
    .fetch_all(platform.platform_pool())
    .await?
    .iter()
    .map(|r| role_label(r).to_owned())
    .collect();
    let factor: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM platform.second_factors WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL",
    )
    .bind(me.id)
    .fetch_optional(platform.platform_pool())
    .await?;
    let factor = match factor.as_deref() {
        Some("card") => "Carte d'authentification (TOTP) active.",
        Some(_) => "Application d'authentification active.",
        None => "Aucun second facteur actif.",
    };
    let can_manage_factors = match me.current_structure {
        Some(s) => {
            platform
                .guard
                .allows(me.id.as_uuid(), &s.domain(), Action::FactorManage)
                .await
        }
        None => false,
    };
    let can_import_cards = platform
        .guard
        .allows(me.id.as_uuid(), &Domain::National, Action::CardImport)
        .await;
    // Review: nationally, or by delegation in a tenant (the review pages' guard decides).
    let delegated: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments WHERE professional_id = $1 AND role = 'reviewer')",
    )
    .bind(me.id)
    .fetch_one(platform.platform_pool())
    .await?;
    let can_review = delegated
        || platform
            .guard
            .allows(me.id.as_uuid(), &Domain::National, Action::RequestReview)
            .await;
    let can_open_waves = platform
        .guard
        .allows(me.id.as_uuid(), &Domain::National, Action::WaveOpen)
        .await;
    let follows_rollout: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments WHERE professional_id = $1 AND role = 'territory_admin')",
    )
    .bind(me.id)
    .fetch_one(platform.platform_pool())
    .await?;
    let audits: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments WHERE professional_id = $1 AND role = 'auditor')",
    )
    .bind(me.id)
    .fetch_one(platform.platform_pool())
    .await?;
    html(&AccountPage {
        theme: THEME,
        nav: nav("/compte"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        name: &me.display_name,
        email: &me.email,
        structures,
        other_roles,
        factor,
        can_manage_factors,
        can_import_cards,
        can_review,
        can_open_waves,
        follows_rollout,
        audits,
    })
}

#[derive(Deserialize)]
pub struct SwitchForm {
    structure: Option<String>,
}

#[handler]
pub async fn switch_structure(
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<SwitchForm>,
) -> PageResult<Response> {
    let wanted = f
        .structure
        .as_deref()
        .and_then(|s| s.parse::<StructureId>().ok());

    let allowed = match wanted {
        Some(id) => structures_of(&platform, me.id)
            .await?
            .iter()
            .any(|(s, _, _)| *s == id),
        None => false,
    };
    // Another structure's id, or nonsense: the same answer as for a missing page.
    let Some(id) = wanted.filter(|_| allowed) else {
        return Err(PageError::not_found());
    };
    let mut tx = platform.platform_pool().begin().await?;
    sqlx::query("UPDATE platform.sessions SET current_structure = $2 WHERE id_hash = $1")
        .bind(&me.session_hash)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    journal::append(
        &mut tx,
        SecurityEvent::StructureSwitched,
        Some(me.id),
        Some(me.id),
        json!({ "structure": id }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other("/compte").into_response())
}

#[derive(Deserialize)]
pub struct NextQuery {
    suite: Option<String>,
}

fn recheck_page(
    req: &Request,
    platform: &Platform,
    next: String,
    error: Option<&str>,
) -> PageResult<Response> {
    html(&CodePage {
        theme: THEME,
        nav: nav("/compte"),
        heading: "Confirmez votre présence",
        explanation: "Votre session est restée inactive plus de 15 minutes. Saisissez votre code à usage unique pour continuer.",
        action: "/compte/verification",
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        next,
        error,
    })
}

#[handler]
pub async fn recheck_form(
    req: &Request,
    platform: Data<&Platform>,
    _me: Professional,
    Query(q): Query<NextQuery>,
) -> PageResult<Response> {
    recheck_page(req, &platform, safe_next(q.suite.as_deref()), None)
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
    suite: Option<String>,
}

#[handler]
pub async fn recheck(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<CodeForm>,
) -> PageResult<Response> {
    let next = safe_next(f.suite.as_deref());
    let mut tx = platform.platform_pool().begin().await?;
    let now = OffsetDateTime::now_utc();
    match factors::check_code(
        &mut tx,
        &platform.cipher,
        me.id,
        &f.code,
        now,
        factors::Trust::Known,
    )
    .await
    {
        Ok(_) => {
            sqlx::query("UPDATE platform.sessions SET recheck_required = false, totp_verified_at = $2 WHERE id_hash = $1")
                .bind(&me.session_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            journal::append(
                &mut tx,
                SecurityEvent::ActivityRechecked,
                Some(me.id),
                Some(me.id),
                json!({}),
            )
            .await?;
            tx.commit().await?;
            Ok(Redirect::see_other(next).into_response())
        }
        Err(_) => {
            tx.commit().await?;
            let mut resp = recheck_page(
                req,
                &platform,
                next,
                Some(
                    "Code incorrect ou déjà utilisé. Saisissez le code affiché en ce moment ; après plusieurs erreurs, patientez quelques minutes.",
                ),
            )?;
            resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            Ok(resp)
        }
    }
}
