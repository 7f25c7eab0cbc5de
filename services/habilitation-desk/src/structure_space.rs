//! The référent's space (`/structure`, `aidant:list` in the current structure): one page that
//! says where each person of the structure stands — the habilitation files with the step they
//! reached ([`crate::pipeline`]), the accounts holding the aidant role with their second
//! factor — and leads to every tool of the job (training, a new file, second factors,
//! withdrawal, move, co-référents, the démarches the structure handles). It reads only; every
//! act stays on its own page behind its own permission.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::guard;
use foundation::auth::session::Professional;
use foundation::ids::ProfessionalId;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Response, handler};
use policies::Action;

use crate::pipeline::{self, Stage};
use crate::views::{THEME, nav};

/// One person of the structure.
pub struct Person {
    pub id: Option<String>,
    pub name: String,
    pub email: String,
    pub stage: &'static str,
    pub badge: &'static str,
    pub training: String,
    pub pix: String,
    pub charter: &'static str,
    pub factor: String,
    pub referent: bool,
}

#[derive(Template)]
#[template(path = "structure_space.html")]
struct SpacePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: String,
    counts: Vec<(&'static str, usize)>,
    people: Vec<Person>,
    can_manage_factors: bool,
    can_train: bool,
    can_withdraw: bool,
    can_move: bool,
    can_set_demarches: bool,
}

/// An account of the structure: id, name, e-mail, factor kind, card serial, blocked, référent.
type AccountRow = (
    ProfessionalId,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    bool,
);

fn factor_text(kind: Option<&str>, serial: Option<&str>, blocked: Option<bool>) -> String {
    let mut text = match (kind, serial) {
        (Some("card"), Some(serial)) => format!("carte {serial}"),
        (Some(_), _) => "application d'authentification".to_owned(),
        (None, _) => "aucun".to_owned(),
    };
    if blocked == Some(true) {
        text.push_str(" (bloqué)");
    }
    text
}

/// `GET /structure`.
#[handler]
pub async fn page(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let allowed = guard::require_in_current_structure(&platform, &me, Action::AidantList).await?;
    let structure = allowed.structure();
    let territory = allowed.territory(&platform).await?;
    let (name, active, files) = pipeline::structure_files(&territory, structure)
        .await?
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    if !active {
        return Err(PageError::forbidden());
    }
    let mut conn = platform.platform_pool().acquire().await?;
    let progress = pipeline::progress(&mut conn, files).await?;
    // The accounts acting for the structure (aidants and référents), with their factor.
    let accounts: Vec<AccountRow> = sqlx::query_as(
        "SELECT p.id, p.display_name, p.email, f.kind, f.card_serial,
                f.locked OR f.blocked_until > now(),
                EXISTS (SELECT 1 FROM platform.role_assignments r
                        WHERE r.professional_id = p.id AND r.domain = $1 AND r.role = 'referent')
         FROM platform.professionals p
         LEFT JOIN platform.second_factors f ON f.professional_id = p.id
              AND f.confirmed_at IS NOT NULL AND f.revoked_at IS NULL
         WHERE p.active AND EXISTS (SELECT 1 FROM platform.role_assignments a
                                    WHERE a.professional_id = p.id AND a.domain = $1 AND a.role = 'aidant')
         ORDER BY p.display_name",
    )
    .bind(format!("structure:{structure}"))
    .fetch_all(&mut *conn)
    .await?;
    let mut people: Vec<Person> = Vec::new();
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for stage in Stage::ALL {
        let n = progress.iter().filter(|p| p.stage == stage).count();
        if n > 0 {
            counts.push((stage.label(), n));
        }
    }
    let mut shown = Vec::new();
    for p in &progress {
        // An active file shows its account's factor; a withdrawn one its state alone.
        let account = accounts.iter().find(|a| {
            p.stage == Stage::Active && (Some(a.0) == p.file.professional_id || a.2 == p.file.email)
        });
        if let Some(a) = account {
            shown.push(a.0);
        }
        people.push(Person {
            id: account.map(|a| a.0.to_string()),
            name: p.file.name(),
            email: p.file.email.clone(),
            stage: p.stage.label(),
            badge: p.stage.badge(),
            training: p
                .registration
                .as_ref()
                .map_or_else(|| "aucune inscription".to_owned(), |r| r.describe()),
            pix: p.pix_text().unwrap_or_else(|| "—".to_owned()),
            charter: if p.charter { "acceptée" } else { "—" },
            factor: account.map_or_else(
                || "—".to_owned(),
                |a| factor_text(a.3.as_deref(), a.4.as_deref(), a.5),
            ),
            referent: account.is_some_and(|a| a.6),
        });
    }
    // Accounts without a file here (opened before the habilitation path, or moved in).
    let mut without_file = 0;
    for a in accounts.iter().filter(|a| !shown.contains(&a.0)) {
        without_file += 1;
        people.push(Person {
            id: Some(a.0.to_string()),
            name: a.1.clone(),
            email: a.2.clone(),
            stage: Stage::Active.label(),
            badge: Stage::Active.badge(),
            training: "sans dossier dans cette structure".to_owned(),
            pix: "—".to_owned(),
            charter: "—",
            factor: factor_text(a.3.as_deref(), a.4.as_deref(), a.5),
            referent: a.6,
        });
    }
    if without_file > 0 {
        match counts.iter_mut().find(|c| c.0 == Stage::Active.label()) {
            Some(c) => c.1 += without_file,
            None => counts.push((Stage::Active.label(), without_file)),
        }
        counts.sort_by_key(|c| {
            Stage::ALL
                .iter()
                .position(|s| s.label() == c.0)
                .unwrap_or(usize::MAX)
        });
    }
    let domain = structure.domain();
    let allowed = |action| platform.guard.allows(me.id.as_uuid(), &domain, action);

    html(&SpacePage {
        theme: THEME,
        nav: nav("/structure"),
        structure: name,
        counts,
        people,
        can_manage_factors: allowed(Action::FactorManage).await,
        can_train: allowed(Action::AidantAddToTraining).await,
        can_withdraw: allowed(Action::AidantDeactivate).await,
        can_move: allowed(Action::AidantMove).await,
        can_set_demarches: allowed(Action::StructureSetDemarches).await,
    })
}
