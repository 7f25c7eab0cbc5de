//! `/territoire`: the space of a tenant's staff — a département council's or a commune's
//! (role `territory_admin` in `tenant:<id>`). For each tenant they administer: its structures
//! (active or deactivated, with their référents and active aidants), the requests in progress
//! in its scope, the habilitation and training pipeline of its structures' files, coverage by
//! commune (habilitated places are public, population from the INSEE reference data), uses of
//! mandates by month and by démarche category (counts only, from the aggregates of
//! [`crate::statistics`], as charts with their figures), and an export of the structures.
//!
//! Never usager personal data: every figure here is a count, every name a structure's or a
//! professional's. Another tenant's pages — another département's, or a sibling commune's — are
//! 404 for the admin of another tenant, whatever the id typed: the guard is asked for
//! `tenant:<id>` before anything is read (403 for whoever may not do the act in any tenant, or
//! is of this tenant with another role, an auditor say).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::{StructureId, TenantId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::{DepartementCode, Territory};
use foundation::web::chart::Chart;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::pipeline::{self, Stage};
use crate::requests::{self, Status};
use crate::statistics;
use crate::views::{THEME, nav};

/// A tenant administered by the professional.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub kind: String,
    pub departement_code: String,
    pub commune_code: Option<String>,
}

impl Tenant {
    pub fn departement(&self) -> Option<DepartementCode> {
        DepartementCode::parse(&self.departement_code).ok()
    }

    pub fn scope(&self) -> String {
        match &self.commune_code {
            Some(c) => format!("commune (code INSEE {c})"),
            None => "département".to_owned(),
        }
    }
}

/// The tenants where the professional holds a role allowed `action`.
pub(crate) async fn held(
    platform: &Platform,
    me: &Professional,
    action: Action,
) -> PageResult<Vec<Tenant>> {
    let tenants: Vec<Tenant> = sqlx::query_as(
        "SELECT DISTINCT t.id, t.name, t.kind, t.departement_code, t.commune_code FROM platform.role_assignments a
         JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text
         WHERE a.professional_id = $1 ORDER BY t.name, t.id",
    )
    .bind(me.id)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut allowed = Vec::new();
    for t in tenants {
        if platform
            .guard
            .allows(me.id.as_uuid(), &t.id.domain(), action)
            .await
        {
            allowed.push(t);
        }
    }
    Ok(allowed)
}

/// The same, refused (403, the denial logged) when there is none: the home of a space
/// that lists the tenants (`/territoire`, `/audit`).
pub(crate) async fn held_or_refused(
    platform: &Platform,
    me: &Professional,
    action: Action,
) -> PageResult<Vec<Tenant>> {
    let tenants = held(platform, me, action).await?;
    if tenants.is_empty() {
        tracing::info!(action = action.as_str(), "authorization denied");
        return Err(PageError::forbidden());
    }
    Ok(tenants)
}

/// The tenant of the path, when the professional may do `action` there (else 404, whatever
/// the reason: nothing tells a stranger that the tenant exists).
pub(crate) async fn scoped(
    platform: &Platform,
    me: &Professional,
    id: &str,
    action: Action,
) -> PageResult<(Tenant, Territory)> {
    let id: TenantId = id.trim().parse().map_err(|_| PageError::not_found())?;
    let Some(allowed) = guard::check_in_tenant(platform, me, id, action).await else {
        tracing::info!(action = action.as_str(), "authorization denied");
        // Someone allowed this act in another tenant learns nothing of this one (404);
        // anyone else — of this tenant with another role (an auditor, say), or allowed it
        // nowhere — is told it is not theirs to do (403).
        let member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM platform.role_assignments WHERE professional_id = $1 AND domain = $2)",
        )
        .bind(me.id)
        .bind(id.domain().to_string())
        .fetch_one(platform.platform_pool())
        .await?;
        let elsewhere = !member && !held(platform, me, action).await?.is_empty();
        return Err(PageError::from(poem::Error::from_status(if elsewhere {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        })));
    };
    let tenant: Tenant = sqlx::query_as(
        "SELECT id, name, kind, departement_code, commune_code FROM platform.tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(platform.platform_pool())
    .await?
    .ok_or_else(PageError::not_found)?;
    let context = allowed.territory(platform).await?;
    Ok((tenant, context))
}

/// The communes a tenant covers: a commune and its municipal arrondissements; `None` for a
/// département council (the whole département).
pub(crate) async fn communes_of(
    platform: &Platform,
    tenant: &Tenant,
) -> PageResult<Option<Vec<String>>> {
    let Some(c) = &tenant.commune_code else {
        return Ok(None);
    };
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT code FROM platform.communes WHERE code = $1 OR parent_code = $1 UNION SELECT $1",
    )
    .bind(c)
    .fetch_all(platform.platform_pool())
    .await?;
    Ok(Some(codes))
}

/// A structure of the tenant, as its territory holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StructureRow {
    pub id: StructureId,
    pub name: String,
    pub kind: String,
    pub commune_code: String,
    pub active: bool,
    pub deactivated_at: Option<OffsetDateTime>,
    pub deactivation_reason: Option<String>,
    pub address: String,
    pub postal_code: Option<String>,
    pub opening_hours: String,
    pub mission: String,
}

/// The tenant's structures, by name.
pub(crate) async fn structures(
    context: &Territory,
    tenant: TenantId,
) -> PageResult<Vec<StructureRow>> {
    let mut tx = context.begin().await?;
    let rows = sqlx::query_as(
        "SELECT id, name, kind, commune_code, active, deactivated_at, deactivation_reason, address,
                postal_code, opening_hours, mission
         FROM structures WHERE tenant_id = $1 ORDER BY name, id",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// A line of the structures' table (and of its CSV export).
pub struct StructureLine {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub commune: String,
    pub state: String,
    pub referents: String,
    pub aidants: i64,
}

/// The structures with their commune names, référents and active aidants.
pub(crate) async fn structure_lines(
    platform: &Platform,
    rows: &[StructureRow],
) -> PageResult<Vec<StructureLine>> {
    let domains: Vec<String> = rows.iter().map(|s| s.id.domain().to_string()).collect();
    let people: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.domain, a.role, p.display_name FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.domain = ANY($1) AND a.role IN ('referent', 'aidant') AND p.active
         ORDER BY p.display_name",
    )
    .bind(&domains)
    .fetch_all(platform.platform_pool())
    .await?;
    let codes: Vec<String> = rows.iter().map(|s| s.commune_code.clone()).collect();
    let names: Vec<(String, String)> =
        sqlx::query_as("SELECT code, name FROM platform.communes WHERE code = ANY($1)")
            .bind(&codes)
            .fetch_all(platform.platform_pool())
            .await?;
    Ok(rows
        .iter()
        .zip(domains)
        .map(|(s, domain)| {
            let referents: Vec<&str> = people
                .iter()
                .filter(|p| p.0 == domain && p.1 == "referent")
                .map(|p| p.2.as_str())
                .collect();
            StructureLine {
                id: s.id.to_string(),
                name: s.name.clone(),
                kind: crate::requests::form::kind_label(&s.kind),
                commune: names
                    .iter()
                    .find(|(c, _)| *c == s.commune_code)
                    .map(|(_, n)| format!("{n} ({})", s.commune_code))
                    .unwrap_or_else(|| s.commune_code.clone()),
                state: if s.active {
                    "habilitée".to_owned()
                } else {
                    format!(
                        "désactivée{}",
                        s.deactivated_at
                            .map(|at| format!(" le {}", foundation::paris::date(at)))
                            .unwrap_or_default()
                    )
                },
                referents: if referents.is_empty() {
                    "—".to_owned()
                } else {
                    referents.join(", ")
                },
                aidants: people
                    .iter()
                    .filter(|p| p.0 == domain && p.1 == "aidant")
                    .count() as i64,
            }
        })
        .collect())
}

/// A commune of the coverage table.
pub struct CommuneLine {
    pub name: String,
    pub code: String,
    pub population: String,
    pub places: i64,
}

pub struct Coverage {
    pub communes: i64,
    pub covered: i64,
    pub population_share: String,
    pub with_places: Vec<CommuneLine>,
    pub largest_without: Vec<CommuneLine>,
}

/// Coverage by commune: the communes of the scope with and without an active structure (of
/// any tenant: habilitated places are public), arrondissements counted in their commune.
async fn coverage(
    platform: &Platform,
    context: &Territory,
    d: DepartementCode,
    scope: Option<&[String]>,
) -> PageResult<Coverage> {
    let mut tx = context.begin().await?;
    let places: Vec<(String, i64)> =
        sqlx::query_as("SELECT commune_code, count(*) FROM structures WHERE active GROUP BY 1")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let communes: Vec<(String, String, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT code, name, population, parent_code FROM platform.communes
         WHERE departement_code = $1 ORDER BY population DESC NULLS LAST, name",
    )
    .bind(d.as_str())
    .fetch_all(platform.platform_pool())
    .await?;
    let in_scope = |code: &str| scope.is_none_or(|s| s.iter().any(|c| c == code));
    // Places counted in their commune, an arrondissement's in its city's.
    let parent_of: std::collections::HashMap<&str, &str> = communes
        .iter()
        .filter_map(|(code, _, _, parent)| Some((code.as_str(), parent.as_deref()?)))
        .collect();
    let mut places_in: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (code, n) in &places {
        let commune = parent_of
            .get(code.as_str())
            .copied()
            .unwrap_or(code.as_str());
        *places_in.entry(commune).or_default() += n;
    }
    let mut lines: Vec<(CommuneLine, i64)> = Vec::new();
    for (code, name, population, parent) in communes.iter() {
        if parent.is_some() || !in_scope(code) {
            continue;
        }
        lines.push((
            CommuneLine {
                name: name.clone(),
                code: code.clone(),
                population: population
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "—".to_owned()),
                places: places_in.get(code.as_str()).copied().unwrap_or(0),
            },
            i64::from(population.unwrap_or(0)),
        ));
    }
    let total: i64 = lines.iter().map(|l| l.1).sum();
    let covered_population: i64 = lines.iter().filter(|l| l.0.places > 0).map(|l| l.1).sum();
    let communes_count = lines.len() as i64;
    let covered = lines.iter().filter(|l| l.0.places > 0).count() as i64;
    let (with, without): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.0.places > 0);
    Ok(Coverage {
        communes: communes_count,
        covered,
        population_share: if total > 0 {
            format!("{} %", covered_population * 100 / total)
        } else {
            "—".to_owned()
        },
        with_places: with.into_iter().map(|l| l.0).collect(),
        largest_without: without.into_iter().take(15).map(|l| l.0).collect(),
    })
}

/// Mandates created and used by month (twelve months), uses by category, people helped: from
/// the tenant's monthly aggregates, as charts with their figures.
async fn uses(context: &Territory, tenant: TenantId) -> PageResult<Vec<Chart>> {
    let of = statistics::Of::Tenant(tenant);
    let mut tx = context.begin().await?;
    let months = statistics::twelve(&statistics::months(&mut tx, of).await?);
    let by_category = statistics::categories(&mut tx, of).await?;
    tx.commit().await?;
    if months.iter().all(|m| m.created == 0 && m.used == 0) {
        return Ok(Vec::new());
    }
    Ok(vec![
        statistics::charts::created(&months),
        statistics::charts::uses(&months),
        statistics::charts::people(&months),
        statistics::charts::by_category(&by_category),
    ])
}

#[derive(Template)]
#[template(path = "territory_home.html")]
struct HomePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    tenants: Vec<(Tenant, String)>,
}

/// `GET /territoire`: the tenants the professional administers.
#[handler]
pub async fn home(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let tenants = held_or_refused(&platform, &me, Action::StructureList).await?;
    html(&HomePage {
        theme: THEME,
        nav: nav("/territoire"),
        tenants: tenants
            .into_iter()
            .map(|t| {
                let territory = t
                    .departement()
                    .map(|d| format!("{} ({})", d.name(), d.as_str()))
                    .unwrap_or_default();
                (t, territory)
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "territory_space.html")]
struct SpacePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    tenant: Tenant,
    territory: String,
    structures: Vec<StructureLine>,
    active: usize,
    deactivated: usize,
    aidants: i64,
    live: i64,
    requests: Vec<(&'static str, usize)>,
    stages: Vec<(&'static str, usize)>,
    coverage: Coverage,
    charts: Vec<Chart>,
    can_delegate: bool,
    flash: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

/// `GET /territoire/collectivites/:id`.
#[handler]
pub async fn dashboard(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureList).await?;
    let d = context.departement();
    let scope = communes_of(&platform, &tenant).await?;
    let rows = structures(&context, tenant.id).await?;
    let lines = structure_lines(&platform, &rows).await?;
    // Requests in progress in the tenant's scope (its communes, or the whole département).
    let mut tx = context.begin().await?;
    let summaries = requests::summaries(&mut tx, &[], None, None).await?;
    let ids: Vec<StructureId> = rows.iter().map(|s| s.id).collect();
    let files: Vec<pipeline::File> = sqlx::query_as(
        "SELECT id, first_name, last_name, email, state, professional_id FROM habilitation_files
         WHERE structure_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mandates WHERE structure_id = ANY($1)
           AND ended_at IS NULL AND expires_at > now()",
    )
    .bind(&ids)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let requests = [
        Status::Waiting,
        Status::Submitted,
        Status::ChangesRequested,
        Status::Amended,
    ]
    .iter()
    .map(|st| {
        (
            st.label(),
            summaries
                .iter()
                .filter(|r| {
                    r.status() == *st && scope.as_ref().is_none_or(|c| c.contains(&r.commune_code))
                })
                .count(),
        )
    })
    .filter(|(_, n)| *n > 0)
    .collect();
    let mut conn = platform.platform_pool().acquire().await?;
    let progress = pipeline::progress(&mut conn, files).await?;
    drop(conn);
    let stages = Stage::ALL
        .iter()
        .map(|s| (s.label(), progress.iter().filter(|p| p.stage == *s).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let charts = uses(&context, tenant.id).await?;
    let coverage = coverage(&platform, &context, d, scope.as_deref()).await?;
    let can_delegate = platform
        .guard
        .allows(
            me.id.as_uuid(),
            &tenant.id.domain(),
            Action::TerritoryDelegate,
        )
        .await;
    html(&SpacePage {
        theme: THEME,
        nav: nav("/territoire"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        territory: format!("{} ({})", d.name(), d.as_str()),
        active: rows.iter().filter(|s| s.active).count(),
        deactivated: rows.iter().filter(|s| !s.active).count(),
        aidants: lines.iter().map(|l| l.aidants).sum(),
        live,
        tenant,
        structures: lines,
        requests,
        stages,
        coverage,
        charts,
        can_delegate,
        flash: match q.message.as_deref() {
            Some("modifiee") => Some("Les informations de la structure sont enregistrées."),
            Some("desactivee") => Some(
                "La structure est désactivée : ses aidants ne peuvent plus agir pour elle, ses mandats ne sont plus utilisables.",
            ),
            Some("delegue") => {
                Some("La délégation est enregistrée ; la personne en est informée par e-mail.")
            }
            _ => None,
        },
    })
}

/// `POST /territoire/collectivites/:id/structures.csv`: the tenant's structures (no personal
/// data but professionals' names), journaled in the territory.
#[handler]
pub async fn export(
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::StructureList).await?;
    let rows = structures(&context, tenant.id).await?;
    let lines = structure_lines(&platform, &rows).await?;
    let mut out = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    let failed = PageError::internal;
    out.write_record([
        "structure",
        "type",
        "commune",
        "etat",
        "referents",
        "aidants_actifs",
    ])
    .map_err(failed)?;
    for l in &lines {
        out.write_record([
            l.name.as_str(),
            l.kind,
            l.commune.as_str(),
            l.state.as_str(),
            l.referents.as_str(),
            &l.aidants.to_string(),
        ])
        .map_err(failed)?;
    }
    let body = out.into_inner().map_err(PageError::internal)?;
    let mut tx = context.begin().await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::TerritoryExported)
            .professional(me.id)
            .details(json!({ "tenant": tenant.id, "what": "structures", "lines": lines.len() })),
    )
    .await?;
    tx.commit().await?;
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "content-disposition",
            "attachment; filename=\"structures.csv\"",
        )
        .body(body))
}
