//! `/mandats/nouveau`: the terms of a new mandate (the structure's démarches, one of the four
//! durations), prefilled from the mandate being renewed. Their submission opens a draft (a
//! random state, of which only the hash is stored, and a nonce) and sends the usager to
//! FranceConnect.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard, secrets};
use foundation::ids::{MandateId, StructureId};
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use uuid::Uuid;

use crate::categories::{ALL, DURATIONS};
use crate::mandates;
use crate::scope::{Scope, StructureInfo, VerifiedScope};
use crate::web::{Shared, THEME, form_answer, nav, notice, see_other};

pub struct CategoryChoice {
    pub code: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "new_mandate.html")]
struct NewMandatePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    categories: Vec<CategoryChoice>,
    durations: Vec<(i32, &'static str, bool)>,
    renewal_of: String,
    transfer: bool,
    error: Option<String>,
    fc_configured: bool,
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    renouvellement: Option<String>,
}

/// The terms as chosen (or prefilled): categories, duration, and the mandate renewed.
#[derive(Default)]
struct Terms {
    chosen: Vec<String>,
    duration: Option<i32>,
    renewal_of: Option<MandateId>,
    /// The person will choose, on the recap, mandates of theirs this one replaces.
    transfer: bool,
}

impl Terms {
    /// The posted form. Categories come as repeated `categories` fields, so the body is parsed
    /// here.
    fn parse(body: &str) -> Self {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap_or_default();
        let chosen: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "categories")
            .map(|(_, v)| v.clone())
            .take(20)
            .collect();
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let duration = field("duree").and_then(|d| d.parse::<i32>().ok());
        let renewal_of = field("renouvellement")
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse::<MandateId>().ok());
        Terms {
            chosen,
            duration,
            renewal_of,
            transfer: field("transfert").as_deref() == Some("oui"),
        }
    }
}

/// The structure's démarches as checkboxes, `chosen` ticked.
pub(crate) fn category_choices(demarches: &[String], chosen: &[String]) -> Vec<CategoryChoice> {
    ALL.iter()
        .filter(|c| demarches.iter().any(|d| d == c.code))
        .map(|c| CategoryChoice {
            code: c.code,
            label: c.label,
            checked: chosen.iter().any(|x| x == c.code),
        })
        .collect()
}

/// The durations as radio buttons (days, label, chosen).
pub(crate) fn duration_choices(chosen: Option<i32>) -> Vec<(i32, &'static str, bool)> {
    DURATIONS
        .iter()
        .map(|(d, l)| (*d, *l, chosen == Some(*d)))
        .collect()
}

fn new_page(
    req: &Request,
    platform: &Platform,
    shared: &Shared,
    structure: &StructureInfo,
    terms: &Terms,
    error: Option<String>,
) -> PageResult<Response> {
    let failed = error.is_some();
    form_answer(
        &NewMandatePage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &structure.name,
            categories: category_choices(&structure.demarches, &terms.chosen),
            durations: duration_choices(terms.duration),
            renewal_of: terms.renewal_of.map(|u| u.to_string()).unwrap_or_default(),
            transfer: terms.transfer,
            fc_configured: shared.fc.configured(),
            error,
        },
        failed,
    )
}

/// The terms of a mandate being renewed.
#[derive(sqlx::FromRow)]
struct RenewalTerms {
    duration_days: i32,
    categories: Vec<String>,
}

/// The terms of a mandate being renewed: its categories still allowed, and its duration.
pub(crate) async fn renewal_terms(
    tenant: &Territory,
    structure: StructureId,
    mandate: MandateId,
) -> Result<Option<(Vec<String>, i32)>, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let row: Option<RenewalTerms> = sqlx::query_as(
        "SELECT m.duration_days, ARRAY(SELECT category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY category) AS categories
         FROM mandates m WHERE m.id = $1 AND m.structure_id = $2",
    )
    .bind(mandate)
    .bind(structure)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|r| (r.categories, r.duration_days)))
}

#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Query(q): Query<NewQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let renewal = q
        .renouvellement
        .as_deref()
        .and_then(|s| s.parse::<MandateId>().ok());
    let (chosen, duration) = match renewal {
        Some(id) => renewal_terms(&scope.tenant, scope.structure.id, id)
            .await?
            .map(|(c, d)| (c, Some(d)))
            .ok_or_else(PageError::not_found)?,
        None => (Vec::new(), None),
    };
    let terms = Terms {
        chosen,
        duration,
        renewal_of: renewal,
        transfer: false,
    };
    new_page(req, &platform, &shared, &scope.structure, &terms, None)
}

/// What a draft is opened with.
pub(crate) struct DraftTerms<'a> {
    pub codes: &'a [&'a str],
    pub duration: i32,
    pub renewal_of: Option<MandateId>,
    pub transfer: bool,
    pub judicial: Option<&'a crate::judicial::Measure>,
}

/// Opens the draft, bound to the session and structure. A renewal of a mandate that is not
/// the structure's is refused (404) before anything is written.
pub(crate) async fn open_draft(
    scope: &Scope,
    terms: &DraftTerms<'_>,
    state: &str,
    nonce: &str,
) -> PageResult<()> {
    let DraftTerms {
        codes,
        duration,
        renewal_of,
        transfer,
        judicial,
    } = *terms;
    let state_hash = secrets::token_hash(state);
    let draft = Uuid::now_v7();
    let mut tx = scope.tenant.begin().await?;
    if let Some(previous) = renewal_of {
        let ours: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM mandates WHERE id = $1 AND structure_id = $2)",
        )
        .bind(previous)
        .bind(scope.structure.id)
        .fetch_one(&mut *tx)
        .await?;
        if !ours {
            return Err(PageError::not_found());
        }
    }
    sqlx::query(
        "INSERT INTO mandate_drafts (id, structure_id, aidant_id, session_hash, categories, duration_days, renewal_of,
                                     state_hash, nonce, expires_at, transfer, judicial)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(mins => $10), $11, $12)",
    )
    .bind(draft)
    .bind(scope.structure.id)
    .bind(scope.me.id)
    .bind(&scope.me.session_hash)
    .bind(codes)
    .bind(duration)
    .bind(renewal_of)
    .bind(&state_hash)
    .bind(nonce)
    .bind(mandates::DRAFT_MINUTES as i32)
    .bind(transfer)
    .bind(judicial.map(sqlx::types::Json))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The terms form: checked against the structure's démarches and the durations, then the
/// draft and the way to FranceConnect.
#[handler]
pub async fn new_submit(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    body: String,
) -> PageResult<Response> {
    let action = Action::MandateCreate;
    guard::require_in_current_structure(&platform, &scope.me, action).await?;
    let terms = Terms::parse(&body);
    if terms.renewal_of.is_some() {
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    }
    let (cats, duration) =
        match mandates::validate_terms(&terms.chosen, &scope.structure.demarches, terms.duration) {
            Ok(valid) => valid,
            Err(e) => {
                let error = Some(e.to_string());
                return new_page(req, &platform, &shared, &scope.structure, &terms, error);
            }
        };
    if !shared.fc.configured() {
        return notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![crate::franceconnect::FcError::NotConfigured.to_string()],
            Some(("/mandats", "Retour aux mandats")),
        );
    }
    // 256-bit random values; only the state's hash is stored.
    let state = secrets::new_token();
    let nonce = secrets::new_token();
    let codes: Vec<&str> = cats.iter().map(|c| c.code).collect();
    let draft = DraftTerms {
        codes: &codes,
        duration,
        renewal_of: terms.renewal_of,
        transfer: terms.transfer,
        judicial: None,
    };
    open_draft(&scope, &draft, &state, &nonce).await?;
    match shared.fc.authorize_url(&state, &nonce).await {
        Ok(url) => Ok(see_other(url)),
        Err(e) => notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![e.to_string()],
            Some(("/mandats/nouveau", "Recommencer")),
        ),
    }
}
