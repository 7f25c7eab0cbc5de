//! `/mesures`: a guardian service's measures, the delegate's own first, filtered by delegate;
//! and `/mesures/passation`, the hand-over of a delegate's measures (all, or those ticked) to
//! another delegate in one step (`judicial::caseload`).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard};
use foundation::ids::{MandateId, ProfessionalId};
use foundation::web::{NavItem, PageResult, Theme};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;

use super::judicial::guardian_service;
use super::{THEME, form_answer, nav, notice, see_other};
use crate::judicial::caseload::{self, Delegate, HandOver, Holder, PAGE};
use crate::judicial::fr_date;
use crate::scope::{Scope, VerifiedScope};

/// One measure as listed.
struct Line {
    mandate_id: MandateId,
    case_number: String,
    person: String,
    civil_status: bool,
    kind: String,
    ends: String,
    renewal: String,
    delegate: String,
    mine: bool,
    live: bool,
}

#[derive(Template)]
#[template(path = "measures.html")]
struct ListPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    delegates: &'a [Delegate],
    /// The filter: `tous`, `aucun` or a delegate's id.
    holder: String,
    holder_name: String,
    lines: Vec<Line>,
    total: i64,
    page: i64,
    pages: i64,
    done: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    delegue: Option<String>,
    page: Option<i64>,
    confiees: Option<i64>,
}

fn holder_of(value: Option<&str>, delegates: &[Delegate]) -> Holder {
    match value.map(str::trim) {
        Some("aucun") => Holder::Unassigned,
        Some(id) => id
            .parse::<ProfessionalId>()
            .ok()
            .filter(|id| delegates.iter().any(|d| d.id == *id))
            .map_or(Holder::All, Holder::Delegate),
        None => Holder::All,
    }
}

struct Shown<'a> {
    holder: Holder,
    page: i64,
    done: Option<String>,
    error: Option<String>,
    delegates: &'a [Delegate],
}

async fn render(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    shown: Shown<'_>,
) -> PageResult<Response> {
    let delegates = shown.delegates;
    let mut tx = scope.tenant.begin().await?;
    let (rows, total) = caseload::list(
        &mut tx,
        scope.structure.id,
        scope.me.id,
        shown.holder,
        shown.page,
    )
    .await?;
    tx.commit().await?;
    let name_of = |id: Option<ProfessionalId>| {
        id.and_then(|id| delegates.iter().find(|d| d.id == id))
            .map_or_else(|| "Non attribuée".to_owned(), |d| d.name.clone())
    };
    let lines = rows
        .into_iter()
        .map(|r| Line {
            mandate_id: r.mandate_id,
            case_number: r.case_number.unwrap_or_else(|| "—".into()),
            person: r.person,
            civil_status: r.identified_by == "civil_status",
            kind: crate::judicial::kind_label(&r.kind).to_owned(),
            ends: fr_date(&r.ends),
            renewal: r.renewal_date.as_deref().map(fr_date).unwrap_or_default(),
            delegate: name_of(r.delegate_id),
            mine: r.delegate_id == Some(scope.me.id),
            live: r.live,
        })
        .collect();
    let (holder, holder_name) = match shown.holder {
        Holder::All => ("tous".to_owned(), String::new()),
        Holder::Unassigned => ("aucun".to_owned(), "Mesures non attribuées".to_owned()),
        Holder::Delegate(d) => (d.to_string(), name_of(Some(d))),
    };
    let failed = shown.error.is_some();
    form_answer(
        &ListPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &scope.structure.name,
            delegates,
            holder,
            holder_name,
            lines,
            total,
            page: shown.page + 1,
            pages: ((total + PAGE - 1) / PAGE).max(1),
            done: shown.done,
            error: shown.error,
        },
        failed,
    )
}

/// `GET /mesures`.
#[handler]
pub async fn list(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    let delegates = caseload::delegates(platform.platform_pool(), scope.structure.id).await?;
    let holder = holder_of(q.delegue.as_deref(), &delegates);
    let done = q.confiees.filter(|n| *n > 0).map(|n| {
        let name = match holder {
            Holder::Delegate(d) => delegates
                .iter()
                .find(|x| x.id == d)
                .map_or(String::new(), |x| x.name.clone()),
            _ => String::new(),
        };
        if n == 1 {
            format!("1 mesure a été confiée à {name}.")
        } else {
            format!("{n} mesures ont été confiées à {name}.")
        }
    });
    let shown = Shown {
        holder,
        page: q.page.unwrap_or(1).clamp(1, 10_000) - 1,
        done,
        error: None,
        delegates: &delegates,
    };
    render(req, &platform, &scope, shown).await
}

/// `POST /mesures/passation`: `de` (a delegate's id, or `aucun`), `a` (the delegate who takes
/// over), `portee` (`toutes` or `choisies`) and the ticked `mesure`s.
#[handler]
pub async fn hand_over(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    body: String,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    let form = super::FormFields::parse(&body);
    let field = |name: &str| form.get(name);
    let delegates = caseload::delegates(platform.platform_pool(), scope.structure.id).await?;
    let from = holder_of(Some(&field("de")), &delegates);
    let from = match from {
        Holder::Unassigned => None,
        Holder::Delegate(d) => Some(d),
        Holder::All => {
            return notice(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choisissez d'abord le délégué dont les mesures sont confiées",
                vec!["Filtrez la liste sur un délégué (ou sur les mesures non attribuées), puis confiez ses mesures.".into()],
                Some(("/mesures", "Retour aux mesures")),
            );
        }
    };
    let holder = from.map_or(Holder::Unassigned, Holder::Delegate);
    let again = |error: String| Shown {
        holder,
        page: 0,
        done: None,
        error: Some(error),
        delegates: &delegates,
    };
    let Ok(to) = field("a").parse::<ProfessionalId>() else {
        let error = caseload::HandOverError::NoTarget.to_string();
        return render(req, &platform, &scope, again(error)).await;
    };
    let chosen: Vec<MandateId> = form
        .all("mesure", 5_000)
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    let only = (field("portee") != "toutes").then_some(chosen.as_slice());
    let mut tx = scope.tenant.begin().await?;
    let moved = caseload::hand_over(
        &mut tx,
        &delegates,
        &HandOver {
            structure: scope.structure.id,
            by: scope.me.id,
            from,
            to,
            only,
        },
    )
    .await;
    match moved {
        Ok(n) => {
            tx.commit().await?;
            Ok(see_other(format!("/mesures?delegue={to}&confiees={n}")))
        }
        Err(e) => {
            drop(tx);
            render(req, &platform, &scope, again(e.to_string())).await
        }
    }
}
