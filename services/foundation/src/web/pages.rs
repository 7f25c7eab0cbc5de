//! Public pages of the shell: landing, legal information, and (outside production) a preview
//! of the error pages so that their accessibility can be checked like any other page.

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Response, handler};

use super::{NavItem, PageError, PageResult, Theme, html, navigation, theme::STATE};
use crate::app::Platform;
use crate::config::Environment;
use crate::routes::{Access, Page};

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    served: usize,
    open: Vec<String>,
    planned: Vec<(String, String, String)>,
}

/// Open départements (names), and planned waves (name, date, départements), as the landing
/// page lists them.
async fn rollout(
    platform: &Platform,
) -> Result<(Vec<String>, Vec<(String, String, String)>), sqlx::Error> {
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.code, d.name FROM platform.rollout_wave_departements wd
         JOIN platform.rollout_waves w ON w.id = wd.wave_id
         JOIN platform.departements d ON d.code = wd.departement_code
         WHERE w.opened_at IS NOT NULL ORDER BY d.code",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    let planned: Vec<(String, time::Date, String)> = sqlx::query_as(
        "SELECT w.name, w.opens_on, string_agg(d.name || ' (' || d.code || ')', ', ' ORDER BY d.code)
         FROM platform.rollout_waves w
         JOIN platform.rollout_wave_departements wd ON wd.wave_id = w.id
         JOIN platform.departements d ON d.code = wd.departement_code
         WHERE w.opened_at IS NULL GROUP BY w.id ORDER BY w.opens_on, w.name",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    Ok((
        open.into_iter()
            .map(|(c, n)| format!("{n} ({c})"))
            .collect(),
        planned
            .into_iter()
            .map(|(n, d, deps)| (n, crate::paris::day(d), deps))
            .collect(),
    ))
}

#[derive(Template)]
#[template(path = "info.html")]
struct Info<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    heading: &'a str,
    paragraphs: &'a [&'a str],
}

#[handler]
async fn landing(platform: Data<&Platform>) -> PageResult<Response> {
    let (open, planned) = rollout(&platform).await.map_err(PageError::unavailable)?;
    html(&Landing {
        theme: &STATE,
        nav: navigation("/"),
        served: platform.tenancy.served_count(),
        open,
        planned,
    })
}

fn info(path: &str, heading: &str, paragraphs: &[&str]) -> PageResult<Response> {
    html(&Info {
        theme: &STATE,
        nav: navigation(path),
        heading,
        paragraphs,
    })
}

#[handler]
async fn accessibility() -> PageResult<Response> {
    info(
        "/accessibilite",
        "Déclaration d'accessibilité",
        &[
            "Aidants Connect s'engage à rendre ses services accessibles, conformément à l'article 47 \
             de la loi n° 2005-102 du 11 février 2005.",
            "État de conformité : le site est non conforme au référentiel général d'amélioration de \
             l'accessibilité (RGAA), faute d'audit réalisé à ce jour. Chaque page est néanmoins \
             contrôlée automatiquement et les parcours principaux sont testés au clavier seul.",
            "Si vous n'arrivez pas à accéder à un contenu ou à un service, contactez le référent de \
             votre structure ou l'équipe nationale pour être orienté vers une alternative accessible.",
        ],
    )
}

#[handler]
async fn legal() -> PageResult<Response> {
    info(
        "/mentions-legales",
        "Mentions légales",
        &[
            "Ce service est opéré par l'équipe nationale d'Aidants Connect, pour le compte de l'État.",
            "Les départements et communes qui déploient le service sur leur territoire en sont les \
             utilisateurs ; chaque structure habilitée est responsable des mandats qu'elle signe.",
        ],
    )
}

#[handler]
async fn privacy() -> PageResult<Response> {
    info(
        "/donnees-personnelles",
        "Données personnelles",
        &[
            "Les données des personnes accompagnées sont conservées dans la base de leur département, \
             isolée de celle des autres territoires, le temps du mandat puis pendant la durée légale \
             d'archivage.",
            "Chaque action réalisée au nom d'une personne est inscrite dans un journal infalsifiable \
             qui ne contient que des identifiants pseudonymes.",
            "Vous pouvez consulter et révoquer vos mandats à tout moment auprès de la structure qui \
             vous accompagne.",
        ],
    )
}

#[handler]
async fn error_preview(Path(status): Path<u16>) -> PageResult<Response> {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    Ok(super::errors::error_response(status, false))
}

/// The shell's pages. The error preview exists only outside production.
/// The few rules the platform adds to DSFR (`assets/complements.css`), linked by every page.
#[poem::handler]
fn complements() -> poem::Response {
    poem::Response::builder()
        .content_type("text/css; charset=utf-8")
        .header("cache-control", "public, max-age=3600")
        .body(include_str!("../../assets/complements.css"))
}

pub fn pages(environment: Environment) -> Vec<Page> {
    let mut pages = vec![
        Page::at("/").get(Access::Public, landing),
        Page::at("/accessibilite").get(Access::Public, accessibility),
        Page::at("/mentions-legales").get(Access::Public, legal),
        Page::at("/donnees-personnelles").get(Access::Public, privacy),
        Page::at("/complements.css").get(Access::Public, complements),
    ];
    if environment != Environment::Production {
        pages.push(Page::at("/_apercu/erreur/:status").get(Access::Public, error_preview));
    }
    pages
}
