//! National team pages: import of physical TOTP cards (CSV) with a line-by-line report.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::session::Professional;
use foundation::auth::{cards, csrf, guard};
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html};
use poem::web::{Data, Form};
use poem::{Request, Response, handler};
use policies::{Action, Domain};
use serde::Deserialize;

use crate::views::{THEME, nav};

#[derive(Template)]
#[template(path = "national_cards.html")]
struct CardsPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    report: Vec<String>,
    imported: usize,
    rejected: usize,
}

fn page(
    req: &Request,
    platform: &Platform,
    report: Vec<String>,
    imported: usize,
    rejected: usize,
) -> PageResult<Response> {
    html(&CardsPage {
        theme: THEME,
        nav: nav("/national/cartes"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        report,
        imported,
        rejected,
    })
}

#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::CardImport).await?;
    page(req, &platform, Vec::new(), 0, 0)
}

#[derive(Deserialize)]
pub struct ImportForm {
    cartes: String,
}

#[handler]
pub async fn import(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<ImportForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::CardImport).await?;
    let mut tx = platform.platform_pool().begin().await?;
    let report = cards::import(&mut tx, &platform.cipher, &f.cartes, Some(me.id)).await?;
    tx.commit().await?;
    let imported = report.iter().filter(|l| l.outcome.is_ok()).count();
    let lines = report
        .iter()
        .map(|l| match &l.outcome {
            Ok(()) => format!("Ligne {} ({}) : importée", l.line, l.serial),
            Err(e) => format!("Ligne {} ({}) : refusée — {e}", l.line, l.serial),
        })
        .collect();
    page(req, &platform, lines, imported, report.len() - imported)
}
