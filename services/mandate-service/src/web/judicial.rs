//! `/mesures/nouvelle`: a guardian service's delegate records a judicial measure — its kind,
//! court, decision (date, reference), period and renewal date, and the démarches the decision
//! allows — then identifies the protected person with FranceConnect; the recap and its
//! confirmation are the counter's (`creation`), which record the measure beside the mandate.
//! A structure that is not a guardian service answers 403 with an explanation; a mistake shows
//! the form again (422) with what was typed, and nothing is written.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard, secrets};
use foundation::web::{NavItem, PageResult, Theme};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use policies::Action;
use time::OffsetDateTime;

use super::creation::recap::{check_code, factor_message};
use super::creation::terms::{CategoryChoice, DraftTerms, category_choices, open_draft};
use super::{FormFields, Shared, THEME, form_answer, nav, notice, see_other};
use crate::judicial::{KINDS, Measure};
use crate::mandates;
use crate::scope::{Scope, VerifiedScope};

#[derive(Template)]
#[template(path = "judicial_new.html")]
struct NewPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    kinds: Vec<(&'static str, &'static str, bool)>,
    categories: Vec<CategoryChoice>,
    m: &'a Measure,
    error: Option<String>,
}

/// The measure and démarches as typed (the form's fields).
fn typed(form: &FormFields) -> (Measure, Vec<String>) {
    let renewal = form.get("revision");
    (
        Measure {
            kind: form.get("mesure"),
            court: form.get("tribunal"),
            decision_date: form.get("decision_date"),
            decision_reference: form.get("decision_reference"),
            starts: form.get("debut"),
            ends: form.get("fin"),
            renewal_date: (!renewal.is_empty()).then_some(renewal),
        },
        form.all("categories", 20),
    )
}

fn page(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    m: &Measure,
    chosen: &[String],
    error: Option<String>,
) -> PageResult<Response> {
    let failed = error.is_some();
    form_answer(
        &NewPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &scope.structure.name,
            kinds: KINDS.iter().map(|(k, l)| (*k, *l, *k == m.kind)).collect(),
            categories: category_choices(&scope.structure.demarches, chosen),
            m,
            error,
        },
        failed,
    )
}

/// Whether the current structure is a guardian service; or the page that says it is not.
pub(crate) fn guardian_service(scope: &Scope) -> PageResult<Result<(), Response>> {
    if scope.structure.guardian_service {
        return Ok(Ok(()));
    }
    Ok(Err(notice(
        StatusCode::FORBIDDEN,
        "Votre structure n'enregistre pas de mesures de protection",
        vec!["Seuls les services mandataires judiciaires et les associations tutélaires habilités enregistrent des mesures de protection judiciaire. Pour un mandat ordinaire, utilisez « Nouveau mandat ».".into()],
        Some(("/mandats/nouveau", "Nouveau mandat")),
    )?))
}

/// The measure recorded for a person identified by the court decision's civil status (no
/// FranceConnect): the same checks as an import line, the delegate's TOTP code, then the
/// mandate at once, marked as such; or the form again with what is wrong.
async fn civil_status(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    form: &FormFields,
    measure: &Measure,
    chosen: &[String],
) -> PageResult<Response> {
    // The page's fields under the import's column names.
    let field = |column: &str| match column {
        "type_mesure" => measure.kind.clone(),
        "tribunal" => measure.court.clone(),
        "date_jugement" => measure.decision_date.clone(),
        "numero_rg" => measure.decision_reference.clone(),
        "date_debut" => measure.starts.clone(),
        "date_fin" => measure.ends.clone(),
        "date_revision" => measure.renewal_date.clone().unwrap_or_default(),
        "demarches" => chosen.join("|"),
        "delegue" => scope.me.email.clone(),
        other => form.get(other),
    };
    let today = foundation::paris::today();
    let line = match crate::judicial::csv::line(1, &field, today) {
        Ok(line) => line,
        Err((_, _, reason)) => {
            let reason = crate::judicial::upper_first(&reason);
            return page(req, platform, scope, measure, chosen, Some(reason));
        }
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = check_code(platform, scope, Some(form.get("code")), now).await? {
        return page(
            req,
            platform,
            scope,
            measure,
            chosen,
            Some(factor_message(&e)),
        );
    }
    let ctx = crate::judicial::import::Context {
        platform: platform.platform_pool(),
        territory: &scope.tenant,
        structure: scope.structure.id,
        demarches: &scope.structure.demarches,
        by: scope.me.id,
    };
    match crate::judicial::import::record_one(&ctx, &line)
        .await
        .map_err(foundation::web::PageError::unavailable)?
    {
        Ok(mandate) => Ok(see_other(format!("/mandats/{mandate}?message=cree"))),
        Err(reason) => page(req, platform, scope, measure, chosen, Some(reason)),
    }
}

/// `GET /mesures/nouvelle`.
#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    let empty = Measure {
        kind: String::new(),
        court: String::new(),
        decision_date: String::new(),
        decision_reference: String::new(),
        starts: String::new(),
        ends: String::new(),
        renewal_date: None,
    };
    page(req, &platform, &scope, &empty, &[], None)
}

/// `POST /mesures/nouvelle`: the measure checked, then the draft and FranceConnect.
#[handler]
pub async fn new_submit(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    body: String,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    let form = FormFields::parse(&body);
    let (measure, chosen) = typed(&form);
    if form.get("identification") == "etat_civil" {
        return civil_status(req, &platform, &scope, &form, &measure, &chosen).await;
    }
    let today = foundation::paris::today();
    let checked = measure
        .clone()
        .checked(today)
        .map_err(|e| e.to_string())
        .and_then(|(m, days)| {
            mandates::validate_categories(&chosen, &scope.structure.demarches)
                .map(|cats| (m, days, cats))
                .map_err(|e| e.to_string())
        });
    let (measure, days, cats) = match checked {
        Ok(ok) => ok,
        Err(error) => return page(req, &platform, &scope, &measure, &chosen, Some(error)),
    };
    let state = secrets::new_token();
    let nonce = secrets::new_token();
    let codes: Vec<&str> = cats.iter().map(|c| c.code).collect();
    let draft = DraftTerms {
        codes: &codes,
        duration: days,
        renewal_of: None,
        transfer: false,
        judicial: Some(&measure),
    };
    open_draft(&scope, &draft, &state, &nonce).await?;
    match shared.fc.authorize_url(&state, &nonce).await {
        Ok(url) => Ok(see_other(url)),
        Err(e) => notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![e.to_string()],
            Some(("/mesures/nouvelle", "Recommencer")),
        ),
    }
}
