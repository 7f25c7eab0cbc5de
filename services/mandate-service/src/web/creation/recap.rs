//! `/mandats/preparation/{draft}`: the recap of an identified draft (terms, usager, end date,
//! optional mobile phone and postal address for receipts), and its confirmation: the
//! information declaration, the typed contact and the aidant's TOTP code are checked here, then
//! [`mandates::confirm_draft`] creates the mandate. Whatever fails shows the recap again (422)
//! with what was typed; nothing is done. A second submission lands on `…/termine`, which leads
//! to the mandate the draft produced.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, factors, guard};
use foundation::web::{NavItem, Theme};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::categories;
use crate::explanation::{self, Explained, LANGUAGES};
use crate::franceconnect::Identity;
use crate::mandates::{self, Confirmation, Draft, MandateError};
use crate::scope::{Scope, VerifiedScope};
use crate::transfers::{self, Transferable};
use crate::web::{
    ContactForm, Shared, THEME, birth_text, date, date_time, form_answer, nav, notice, parse_id,
    see_other,
};

#[derive(Template)]
#[template(path = "recap.html")]
struct RecapPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    draft: String,
    structure: &'a str,
    usager: String,
    birth: String,
    email: String,
    categories: Vec<&'static str>,
    duration: &'static str,
    ends: String,
    argent: bool,
    error: Option<String>,
    phone: String,
    address: String,
    explained: Explained,
    audio: String,
    languages: Vec<(&'static str, &'static str, bool)>,
    transfer: bool,
    /// (checkbox value, what it is) of each mandate a transfer may end.
    offered: Vec<(String, String)>,
    /// A judicial measure, line by line.
    judicial: Vec<String>,
}

/// A mandate a transfer may end, as the recap offers it.
pub(crate) fn transfer_text(t: &Transferable) -> (String, String) {
    (
        t.key(),
        format!(
            "{} ({}), jusqu'au {}",
            t.structure,
            t.demarches.join(", "),
            date(t.expires_at - Duration::seconds(1))
        ),
    )
}

/// A draft of this session whose usager is identified and which is not completed yet.
struct Identified {
    draft: Uuid,
    row: Draft,
    identity: Identity,
    /// For a transfer: the person's mandates with other structures it may replace.
    offered: Vec<Transferable>,
}

fn recap_page(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    found: &Identified,
    // What went wrong, with what was typed (shown again); nothing on the first display.
    error: Option<(String, &ContactForm)>,
    language: &str,
) -> PageResult<Response> {
    let none = ContactForm::default();
    let (error, typed) = match error {
        Some((message, typed)) => (Some(message), typed),
        None => (None, &none),
    };
    let Identified {
        draft,
        row,
        identity,
        offered,
    } = found;
    let cats = &row.categories;
    let labels: Vec<&'static str> = cats
        .iter()
        .filter_map(|c| categories::by_code(c))
        .map(|c| c.label)
        .collect();
    let failed = error.is_some();
    let ends = date(OffsetDateTime::now_utc() + Duration::days(i64::from(row.duration_days)));
    let explained = explanation::explain(language, &scope.structure.name, &labels, &ends);
    let code = explained.language.code;
    form_answer(
        &RecapPage {
            audio: format!("/mandats/preparation/{draft}/explication.wav?langue={code}"),
            languages: LANGUAGES
                .iter()
                .map(|l| (l.code, l.name_fr, l.code == code))
                .collect(),
            explained,
            transfer: row.transfer,
            offered: offered.iter().map(transfer_text).collect(),
            judicial: row
                .judicial
                .as_ref()
                .map(|m| {
                    let m = &m.0;
                    let mut lines = vec![
                        format!("Mesure : {}", crate::judicial::kind_label(&m.kind)),
                        format!(
                            "Décision du {} ({}, référence {})",
                            m.decision_date, m.court, m.decision_reference
                        ),
                        format!("Du {} au {}", m.starts, m.ends),
                    ];
                    if let Some(r) = &m.renewal_date {
                        lines.push(format!("Révision prévue le {r}"));
                    }
                    lines
                })
                .unwrap_or_default(),
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            draft: draft.to_string(),
            structure: &scope.structure.name,
            usager: identity.display_name(),
            birth: birth_text(identity),
            email: identity
                .email
                .clone()
                .unwrap_or_else(|| "aucune".to_owned()),
            argent: cats.iter().any(|c| c == "argent"),
            categories: labels,
            duration: if row.judicial.is_some() {
                "celle de la mesure"
            } else {
                categories::duration_label(row.duration_days)
            },
            ends,
            error,
            phone: typed.telephone.clone().unwrap_or_default(),
            address: typed.adresse.clone().unwrap_or_default(),
        },
        failed,
    )
}

/// A draft of this session whose usager is identified and which is not completed yet; or the
/// answer to give instead (not found, already completed, not identified yet).
async fn identified_draft(
    platform: &Platform,
    scope: &Scope,
    draft: Uuid,
) -> PageResult<Result<Identified, PageResult<Response>>> {
    let Some(row) = mandates::load_draft(scope, draft).await? else {
        return Ok(Err(notice(
            StatusCode::NOT_FOUND,
            "Création de mandat introuvable",
            vec![MandateError::DraftUnavailable.to_string()],
            Some(("/mandats/nouveau", "Nouveau mandat")),
        )));
    };
    if row.completed_at.is_some() {
        return Ok(Err(Ok(see_other(format!(
            "/mandats/preparation/{draft}/termine"
        )))));
    }
    let Some(identity) = row.identity.clone().map(|j| j.0) else {
        return Ok(Err(notice(
            StatusCode::CONFLICT,
            "La personne n'est pas encore identifiée",
            vec![MandateError::NotIdentified.to_string()],
            Some(("/mandats/nouveau", "Recommencer")),
        )));
    };
    let offered = if row.transfer {
        transfers::transferable(platform, &identity.sub, scope.structure.id).await?
    } else {
        Vec::new()
    };
    Ok(Ok(Identified {
        draft,
        row,
        identity,
        offered,
    }))
}

/// The language the recap shows the explanation in (`?langue=`; French by default).
#[derive(Deserialize)]
pub struct LanguageQuery {
    langue: Option<String>,
}

#[handler]
pub async fn recap(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
    Query(q): Query<LanguageQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let draft: Uuid = parse_id(&id)?;
    let found = match identified_draft(&platform, &scope, draft).await? {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let language = q.langue.as_deref().unwrap_or("fr");
    recap_page(req, &platform, &scope, &found, None, language)
}

/// `GET /mandats/preparation/{draft}/explication.wav?langue=`: the explanation read aloud.
#[handler]
pub async fn read_aloud(
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<LanguageQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let draft: Uuid = parse_id(&id)?;
    let found = match identified_draft(&platform, &scope, draft).await? {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let labels: Vec<&str> = found
        .row
        .categories
        .iter()
        .filter_map(|c| categories::by_code(c))
        .map(|c| c.label)
        .collect();
    let ends = date(OffsetDateTime::now_utc() + Duration::days(i64::from(found.row.duration_days)));
    let language = q.langue.as_deref().unwrap_or("fr");
    let explained = explanation::explain(language, &scope.structure.name, &labels, &ends);
    crate::web::consent::wav(&explained).await
}

#[derive(Deserialize, Default)]
pub struct ConfirmForm {
    code: Option<String>,
    declaration: Option<String>,
    telephone: Option<String>,
    adresse: Option<String>,
    langue: Option<String>,
}

pub(crate) fn factor_message(e: &factors::FactorError) -> String {
    match e {
        factors::FactorError::Blocked(until) => format!(
            "Trop de codes incorrects : réessayez après {}.",
            date_time(*until)
        ),
        factors::FactorError::Locked => {
            "Votre second facteur est verrouillé après trop d'erreurs : demandez à votre référent de le débloquer.".into()
        }
        factors::FactorError::Replayed => {
            "Ce code a déjà servi : attendez le code suivant (30 secondes).".into()
        }
        factors::FactorError::NoFactor => {
            "Aucun second facteur actif sur votre compte : contactez votre référent.".into()
        }
        _ => "Code incorrect : saisissez les 6 chiffres affichés en ce moment.".into(),
    }
}

/// The information declaration ticked, then the typed contact checked; or what to say.
fn declared_contact(form: &ConfirmForm) -> Result<(Option<String>, Option<String>), String> {
    if form.declaration.as_deref() != Some("oui") {
        return Err(MandateError::DeclarationMissing.to_string());
    }
    crate::contact::typed_contact(
        form.telephone.as_deref().unwrap_or_default(),
        form.adresse.as_deref().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())
}

/// Checks the aidant's TOTP code (spaces ignored) on its own (`factors::check_code_alone`).
pub(crate) async fn check_code(
    platform: &Platform,
    scope: &Scope,
    code: Option<String>,
    now: OffsetDateTime,
) -> PageResult<Result<(), factors::FactorError>> {
    let code: String = code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match factors::check_code_alone(platform, scope.me.id, &code, now).await {
        Ok(_) => Ok(Ok(())),
        Err(factors::CheckError::Factor(e)) => Ok(Err(e)),
        Err(factors::CheckError::Database(e)) => Err(e.into()),
    }
}

/// Confirms the recap: the aidant's TOTP code and the information declaration, then the
/// mandate (with supersession and journal) in one territory transaction, with its attestation.
#[handler]
pub async fn confirm(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
    body: String,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let draft: Uuid = parse_id(&id)?;
    let found = match identified_draft(&platform, &scope, draft).await? {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let form: ConfirmForm = serde_urlencoded::from_str(&body).unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let keys: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "transferer")
        .map(|(_, v)| v)
        .collect();
    let taken_over = transfers::chosen(&found.offered, &keys);
    let typed = ContactForm {
        telephone: form.telephone.clone(),
        adresse: form.adresse.clone(),
    };
    // The recap again, with what went wrong and what was typed: nothing was done.
    let language = form
        .langue
        .clone()
        .filter(|l| explanation::known(l))
        .unwrap_or_else(|| "fr".to_owned());
    let again = |message| {
        recap_page(
            req,
            &platform,
            &scope,
            &found,
            Some((message, &typed)),
            &language,
        )
    };
    let (phone, address) = match declared_contact(&form) {
        Ok(contact) => contact,
        Err(message) => return again(message),
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = check_code(&platform, &scope, form.code, now).await? {
        return again(factor_message(&e));
    }
    if found.row.renewal_of.is_some() {
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
    }
    let confirmation = Confirmation {
        draft,
        terms: &found.row,
        identity: &found.identity,
        phone: phone.as_deref(),
        address: address.as_deref(),
        language: &language,
        transfers: &taken_over,
        now,
    };
    let (documents, origin) = (&shared.documents, shared.public_origin.as_str());
    match mandates::confirm_draft(&platform, documents, origin, &scope, &confirmation).await {
        Ok(mandate) => Ok(see_other(format!("/mandats/{mandate}?message=cree"))),
        Err(MandateError::DraftUnavailable) => {
            Ok(see_other(format!("/mandats/preparation/{draft}/termine")))
        }
        Err(e) => again(e.to_string()),
    }
}

/// After a double submission: the mandate the draft produced.
#[handler]
pub async fn draft_completed(scope: Scope, Path(id): Path<String>) -> PageResult<Response> {
    let draft: Uuid = parse_id(&id)?;
    let mut tx = scope.tenant.begin().await?;
    let mandate: Option<foundation::ids::MandateId> = sqlx::query_scalar(
        "SELECT m.id FROM mandates m WHERE m.idempotency_key = $1 AND m.structure_id = $2",
    )
    .bind(format!("draft:{draft}"))
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match mandate {
        Some(m) => Ok(see_other(format!("/mandats/{m}"))),
        None => Err(PageError::not_found()),
    }
}
