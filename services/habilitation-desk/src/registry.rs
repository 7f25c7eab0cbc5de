//! `/national/registre`: the register of habilitated persons (product.md §4.8) — who, in which
//! structure, since when, after which training session, with which Pix score — for the national
//! team (`habilitation:withdraw`), and its CSV export (a POST with the CSRF token, like every
//! export; journaled). A withdrawn habilitation leaves the register.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::StructureId;
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html};
use poem::http::header;
use poem::web::Data;
use poem::{Request, Response, handler};
use policies::Action;
use serde_json::json;
use time::OffsetDateTime;

use crate::views::{THEME, nav};

pub struct Entry {
    pub name: String,
    pub email: String,
    pub structure: String,
    pub territory: String,
    pub since: String,
    pub training: String,
    pub pix: String,
}

type Row = (
    String,
    String,
    StructureId,
    String,
    OffsetDateTime,
    Option<String>,
    Option<i32>,
);

/// Every habilitated person still habilitated, by territory then name.
pub async fn entries(
    platform: &Platform,
    allowed: guard::NationalAuthorized,
) -> PageResult<Vec<Entry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT i.display_name, i.email, i.structure_id, i.departement_code, a.activated_at,
                (SELECT s.title || ', ' || to_char(s.first_day, 'DD/MM/YYYY')
                 FROM platform.training_registrations r JOIN platform.training_sessions s ON s.id = r.session_id
                 WHERE r.file_id = a.file_id AND r.status = 'attended' ORDER BY r.attendance_at DESC LIMIT 1),
                (SELECT p.score FROM platform.pix_results p WHERE p.file_id = a.file_id)
         FROM platform.habilitation_activations a
         JOIN platform.habilitation_file_index i ON i.file_id = a.file_id
         WHERE EXISTS (SELECT 1 FROM platform.role_assignments ra JOIN platform.professionals pr ON pr.id = ra.professional_id
                       WHERE ra.professional_id = a.professional_id AND ra.role = 'aidant'
                         AND ra.domain = 'structure:' || i.structure_id::text AND pr.active)
         ORDER BY i.departement_code, i.display_name LIMIT 100000",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    // Structure names, one query per territory.
    let mut names: std::collections::HashMap<StructureId, String> = Default::default();
    let mut by_dep: std::collections::BTreeMap<String, Vec<StructureId>> = Default::default();
    for r in &rows {
        by_dep.entry(r.3.clone()).or_default().push(r.2);
    }
    for (code, ids) in by_dep {
        let Ok(d) = DepartementCode::parse(&code) else {
            continue;
        };
        let Ok(tenant) = allowed.territory(platform, d).await else {
            continue;
        };
        let mut tx = tenant.begin().await?;
        let found: Vec<(StructureId, String)> =
            sqlx::query_as("SELECT id, name FROM structures WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        names.extend(found);
    }
    Ok(rows
        .into_iter()
        .map(
            |(name, email, structure, code, since, training, pix)| Entry {
                name,
                email,
                structure: names
                    .get(&structure)
                    .cloned()
                    .unwrap_or_else(|| "structure indisponible".to_owned()),
                territory: DepartementCode::parse(&code)
                    .map(|d| format!("{} ({})", d.name(), d.as_str()))
                    .unwrap_or(code),
                since: paris::date(since),
                training: training.unwrap_or_default(),
                pix: pix.map(|p| p.to_string()).unwrap_or_default(),
            },
        )
        .collect())
}

#[derive(Template)]
#[template(path = "national_registry.html")]
struct RegistryPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    entries: Vec<Entry>,
}

/// `GET /national/registre`.
#[handler]
pub async fn page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    html(&RegistryPage {
        theme: THEME,
        nav: nav("/national/registre"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        entries: entries(&platform, allowed).await?,
    })
}

/// `POST /national/registre.csv`: the register as CSV (journaled).
#[handler]
pub async fn export(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let allowed = guard::require_national(&platform, &me, Action::HabilitationWithdraw).await?;
    let entries = entries(&platform, allowed).await?;
    let mut out = String::new();
    crate::places::csv::text_row(
        &mut out,
        &[
            "nom",
            "email",
            "structure",
            "territoire",
            "habilite_depuis",
            "formation",
            "score_pix",
        ],
    );
    for e in &entries {
        crate::places::csv::text_row(
            &mut out,
            &[
                &e.name,
                &e.email,
                &e.structure,
                &e.territory,
                &e.since,
                &e.training,
                &e.pix,
            ],
        );
    }
    let mut conn = platform.platform_pool().acquire().await?;
    security::append(
        &mut conn,
        SecurityEvent::RegistryExported,
        None,
        Some(me.id),
        json!({ "entries": entries.len() }),
    )
    .await?;
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"registre-habilitations.csv\"",
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(out))
}
