//! Statistics pages, all read from aggregates ([`crate::statistics`]): the open page
//! `/statistiques` (no login) with the same figures as CSV and JSON, the national team's
//! `/national/statistiques` (`statistics:national`: nothing withheld, the pipeline in
//! progress), and the référent's `/structure/statistiques` (`structure:statistics`).
//!
//! On the open page and its files, every figure of fewer than five (people helped, aidants,
//! mandates — each one a person) for a territory or a month is withheld, and the national
//! totals add only what is published, so that no withheld figure can be found by
//! subtraction.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::guard;
use foundation::auth::session::Professional;
use foundation::categories;
use foundation::tenancy::DepartementCode;
use foundation::web::chart::{Chart, french_number};
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Response, handler};
use policies::Action;
use serde_json::json;

use crate::statistics::{self, Month, TerritoryFigures, charts, public};
use crate::views::{THEME, nav};

/// A figure as shown: a number, or « moins de 5 ».
fn shown(n: Option<i64>) -> String {
    n.map(french_number)
        .unwrap_or_else(|| "moins de 5".to_owned())
}

pub struct TerritoryLine {
    pub code: String,
    pub name: String,
    pub structures: String,
    pub aidants: String,
    pub created: String,
    pub used: String,
    pub people: String,
    pub live: String,
    pub in_progress: String,
}

#[derive(Template)]
#[template(path = "statistics.html")]
struct StatisticsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    national: bool,
    totals: Vec<(&'static str, String)>,
    charts: Vec<Chart>,
    territories: Vec<TerritoryLine>,
}

/// A territory's month: code, month, mandates created, uses, people helped.
type Cell = (String, time::Date, i64, i64, i64);

/// What the open page, its files and the national page show: withheld (`open`) or not.
struct Figures {
    months: Vec<Month>,
    categories: Vec<(String, i64)>,
    territories: Vec<(TerritoryFigures, [Option<i64>; 6])>,
}

/// How long a process keeps the figures it computed. The job refreshes the aggregates every
/// ten minutes: a minute-old copy says the same, and spares the database three scans of the
/// national table per visit.
const KEPT: std::time::Duration = std::time::Duration::from_secs(60);

type Kept = std::sync::Mutex<[Option<(std::time::Instant, std::sync::Arc<Figures>)>; 2]>;
static KEPT_FIGURES: Kept = std::sync::Mutex::new([None, None]);

/// The figures, from this process's copy when it is less than [`KEPT`] old.
async fn figures(platform: &Platform, open: bool) -> PageResult<std::sync::Arc<Figures>> {
    let slot = usize::from(open);
    if let Ok(kept) = KEPT_FIGURES.lock()
        && let Some((at, f)) = &kept[slot]
        && at.elapsed() < KEPT
    {
        return Ok(f.clone());
    }
    let fresh = std::sync::Arc::new(compute(platform, open).await?);
    if let Ok(mut kept) = KEPT_FIGURES.lock() {
        kept[slot] = Some((std::time::Instant::now(), fresh.clone()));
    }
    Ok(fresh)
}

async fn compute(platform: &Platform, open: bool) -> PageResult<Figures> {
    let mut conn = platform.platform_pool().acquire().await?;
    let territories = statistics::territories(&mut conn).await?;
    let categories = statistics::national_categories(&mut conn).await?;
    // Monthly figures per territory, to withhold small cells before summing.
    let per: Vec<Cell> = sqlx::query_as(
        "SELECT departement_code, month, sum(created)::bigint, sum(used)::bigint, sum(people)::bigint
         FROM platform.stats_territory_months
         WHERE month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
         GROUP BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let keep = |n: i64| if open { public(n) } else { Some(n) };
    let months = statistics::twelve(&[])
        .into_iter()
        .map(|m| {
            let cells: Vec<_> = per.iter().filter(|p| p.1 == m.month).collect();
            let sum =
                |f: &dyn Fn(&Cell) -> i64| -> i64 { cells.iter().filter_map(|c| keep(f(c))).sum() };
            let created = sum(&|c| c.2);
            let used = sum(&|c| c.3);
            let people = sum(&|c| c.4);
            Month {
                month: m.month,
                created,
                used,
                revoked: 0,
                people,
            }
        })
        .collect();
    let territories = territories
        .into_iter()
        .map(|t| {
            // Structures are places, public anyway; the rest counts people.
            let cells = [
                Some(t.structures),
                keep(t.aidants),
                keep(t.created),
                keep(t.used),
                keep(t.people),
                keep(t.mandates_live),
            ];
            (t, cells)
        })
        .collect();
    Ok(Figures {
        months,
        categories,
        territories,
    })
}

fn departement_name(code: &str) -> String {
    DepartementCode::parse(code)
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| code.to_owned())
}

async fn page(platform: &Platform, national: bool) -> PageResult<Response> {
    let f = figures(platform, !national).await?;
    let sum = |i: usize| -> i64 { f.territories.iter().filter_map(|t| t.1[i]).sum() };
    let mut totals = vec![
        ("Structures habilitées", french_number(sum(0))),
        ("Aidants habilités", french_number(sum(1))),
        ("Mandats créés (douze mois)", french_number(sum(2))),
        ("Démarches faites (douze mois)", french_number(sum(3))),
        (
            "Personnes accompagnées (douze mois, comptées par structure)",
            french_number(sum(4)),
        ),
        ("Mandats en cours", french_number(sum(5))),
    ];
    if national {
        totals.push((
            "Demandes d'habilitation en cours",
            french_number(f.territories.iter().map(|t| t.0.requests_in_progress).sum()),
        ));
        totals.push((
            "Personnes en parcours d'habilitation",
            french_number(f.territories.iter().map(|t| t.0.files_in_progress).sum()),
        ));
    }
    html(&StatisticsPage {
        theme: THEME,
        nav: nav(if national {
            "/national"
        } else {
            "/statistiques"
        }),
        national,
        totals,
        charts: vec![
            charts::uses(&f.months),
            charts::created(&f.months),
            charts::by_category(&f.categories),
        ],
        territories: f
            .territories
            .iter()
            .map(|(t, cells)| TerritoryLine {
                code: t.departement_code.clone(),
                name: departement_name(&t.departement_code),
                structures: shown(cells[0]),
                aidants: shown(cells[1]),
                created: shown(cells[2]),
                used: shown(cells[3]),
                people: shown(cells[4]),
                live: shown(cells[5]),
                in_progress: format!(
                    "{} demande(s), {} personne(s)",
                    t.requests_in_progress, t.files_in_progress
                ),
            })
            .collect(),
    })
}

/// `GET /statistiques`: the open statistics, no login.
#[handler]
pub async fn open_page(platform: Data<&Platform>) -> PageResult<Response> {
    page(&platform, false).await
}

/// `GET /national/statistiques`.
#[handler]
pub async fn national_page(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    guard::require(
        &platform,
        &me,
        policies::Domain::National,
        Action::StatisticsNational,
    )
    .await?;
    page(&platform, true).await
}

/// `GET /statistiques.csv`: one line per territory and month, withheld figures empty.
#[handler]
pub async fn open_csv(platform: Data<&Platform>) -> PageResult<Response> {
    let mut conn = platform.platform_pool().acquire().await?;
    let rows: Vec<(String, time::Date, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT departement_code, month, sum(created)::bigint, sum(used)::bigint, sum(revoked)::bigint,
                sum(people)::bigint
         FROM platform.stats_territory_months
         WHERE month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let failed = PageError::internal;
    out.write_record([
        "departement",
        "nom",
        "mois",
        "mandats_crees",
        "demarches",
        "mandats_revoques",
        "personnes_accompagnees",
    ])
    .map_err(failed)?;
    let cell = |n: i64| public(n).map(|n| n.to_string()).unwrap_or_default();
    for (code, month, created, used, revoked, people) in rows {
        out.write_record([
            code.clone(),
            departement_name(&code),
            format!("{}-{:02}", month.year(), u8::from(month.month())),
            cell(created),
            cell(used),
            cell(revoked),
            cell(people),
        ])
        .map_err(failed)?;
    }
    let body = out.into_inner().map_err(PageError::internal)?;
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "content-disposition",
            "attachment; filename=\"statistiques.csv\"",
        )
        .body(body))
}

/// `GET /statistiques.json`: the open page's figures (withheld ones `null`).
#[handler]
pub async fn open_json(platform: Data<&Platform>) -> PageResult<Response> {
    let f = figures(&platform, true).await?;
    let body = json!({
        "threshold": statistics::THRESHOLD,
        "note": "Les chiffres de moins de 5 personnes ne sont pas publiés (null) ; les totaux n'additionnent que les chiffres publiés.",
        "months": f.months.iter().map(|m| json!({
            "month": format!("{}-{:02}", m.month.year(), u8::from(m.month.month())),
            "mandates_created": m.created, "uses": m.used, "people_helped": m.people,
        })).collect::<Vec<_>>(),
        "uses_by_category": f.categories.iter().map(|(code, n)| json!({
            "category": code,
            "label": categories::by_code(code).map(|c| c.label),
            "uses": n,
        })).collect::<Vec<_>>(),
        "territories": f.territories.iter().map(|(t, cells)| json!({
            "departement": t.departement_code,
            "name": departement_name(&t.departement_code),
            "structures": cells[0], "aidants": cells[1], "mandates_created": cells[2],
            "uses": cells[3], "people_helped": cells[4], "mandates_live": cells[5],
        })).collect::<Vec<_>>(),
    });
    Ok(Response::builder()
        .content_type("application/json")
        .body(body.to_string()))
}

#[derive(Template)]
#[template(path = "structure_statistics.html")]
struct StructurePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: String,
    totals: Vec<(&'static str, String)>,
    charts: Vec<Chart>,
}

/// `GET /structure/statistiques`: the référent's structure.
#[handler]
pub async fn structure_page(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let allowed =
        guard::require_in_current_structure(&platform, &me, Action::StructureStatistics).await?;
    let structure = allowed.structure();
    let tenant = allowed.territory(&platform).await?;
    let (name, _, _) = crate::pipeline::structure_files(&tenant, structure)
        .await?
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let mut tx = tenant.begin().await?;
    let months = statistics::twelve(
        &statistics::months(&mut tx, statistics::Of::Structure(structure)).await?,
    );
    let by_category = statistics::categories(&mut tx, statistics::Of::Structure(structure)).await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mandates m WHERE m.structure_id = $1 AND m.ended_at IS NULL AND m.expires_at > now()",
    )
    .bind(structure)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let aidants: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.domain = $1 AND a.role = 'aidant' AND p.active",
    )
    .bind(structure.domain().to_string())
    .fetch_one(platform.platform_pool())
    .await?;
    html(&StructurePage {
        theme: THEME,
        nav: nav("/structure"),
        structure: name,
        totals: vec![
            ("Aidants habilités", french_number(aidants)),
            ("Mandats en cours", french_number(live)),
            (
                "Mandats créés (douze mois)",
                french_number(months.iter().map(|m| m.created).sum()),
            ),
            (
                "Démarches faites (douze mois)",
                french_number(months.iter().map(|m| m.used).sum()),
            ),
        ],
        charts: vec![
            charts::people(&months),
            charts::uses(&months),
            charts::by_category(&by_category),
        ],
    })
}
