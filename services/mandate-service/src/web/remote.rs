//! The aidant's side of remote consent (`/mandats/a-distance`): the structure's requests and
//! their state, the form that prepares one (démarches, duration, the person's names and birth
//! date, SMS or e-mail, the language of the explanation, and the aidant's code), one request's
//! page with its resending (once) and cancellation. A remote renewal starts from a mandate
//! (`?renouvellement=`), prefilled with its terms and its person.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard};
use foundation::ids::MandateId;
use foundation::outbox::{Channel, normalise_phone};
use foundation::web::{NavItem, PageError, PageResult, Theme, html};
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::creation::recap::{check_code, factor_message};
use super::creation::terms::{CategoryChoice, category_choices, duration_choices, renewal_terms};
use super::{MessageQuery, Shared, THEME, date_time, form_answer, nav, parse_id, see_other};
use crate::explanation::{LANGUAGES, known};
use crate::mandates;
use crate::remote_consent::{self, AidantError, MAX_SENDS, Named, Prepared, State};
use crate::scope::{Scope, VerifiedScope};

/// A request as the list and its page show it.
pub struct Row {
    pub id: String,
    pub person: String,
    pub demarches: String,
    pub state: &'static str,
    pub badge: &'static str,
    pub sent: String,
    pub until: String,
    pub channel: &'static str,
    pub mandate: String,
    pub can_resend: bool,
    pub can_cancel: bool,
}

fn row(c: &remote_consent::RemoteConsent, now: OffsetDateTime) -> Row {
    let state = c.state(now);
    Row {
        id: c.id.to_string(),
        person: format!("{} {}", c.family_name.to_uppercase(), c.given_name),
        demarches: c.demarches().join(", "),
        state: state.label(),
        badge: state.badge(),
        sent: date_time(c.created_at),
        until: date_time(c.link_expires_at),
        channel: if c.channel == "sms" { "SMS" } else { "e-mail" },
        mandate: c.mandate_id.map(|m| m.to_string()).unwrap_or_default(),
        can_resend: c.outcome.is_none() && c.sends < MAX_SENDS,
        can_cancel: c.outcome.is_none() && state != State::Expired,
    }
}

#[derive(Template)]
#[template(path = "remote_consents.html")]
struct ListPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    rows: Vec<Row>,
}

/// `GET /mandats/a-distance`.
#[handler]
pub async fn list(platform: Data<&Platform>, scope: Scope) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let now = OffsetDateTime::now_utc();
    let rows = remote_consent::list(&scope).await?;
    html(&ListPage {
        theme: THEME,
        nav: nav("/mandats"),
        rows: rows.iter().map(|c| row(c, now)).collect(),
    })
}

#[derive(Template)]
#[template(path = "remote_consent.html")]
struct OnePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    c: Row,
    message: Option<&'static str>,
    error: Option<String>,
}

fn one_page(
    req: &Request,
    platform: &Platform,
    c: &remote_consent::RemoteConsent,
    message: Option<&'static str>,
    error: Option<String>,
) -> PageResult<Response> {
    let failed = error.is_some();
    form_answer(
        &OnePage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            c: row(c, OffsetDateTime::now_utc()),
            message,
            error,
        },
        failed,
    )
}

/// `GET /mandats/a-distance/{id}`.
#[handler]
pub async fn show(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let id: Uuid = parse_id(&id)?;
    let consent = remote_consent::one(&scope, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let message = match q.message.as_deref() {
        Some("envoye") => Some("Le lien est envoyé à la personne. Elle a 24 heures pour répondre."),
        Some("renvoye") => Some("Un nouveau lien est envoyé ; le précédent ne fonctionne plus."),
        Some("annule") => Some("La demande est annulée : le lien ne fonctionne plus."),
        _ => None,
    };
    one_page(req, &platform, &consent, message, None)
}

async fn act(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    id: &str,
    done: Result<(), AidantError>,
    message: &str,
) -> PageResult<Response> {
    let id: Uuid = parse_id(id)?;
    match done {
        Ok(()) => Ok(see_other(format!(
            "/mandats/a-distance/{id}?message={message}"
        ))),
        Err(AidantError::NotFound) => Err(PageError::not_found()),
        Err(AidantError::Database(e)) => Err(e.into()),
        Err(e) => {
            let consent = remote_consent::one(scope, id)
                .await?
                .ok_or_else(PageError::not_found)?;
            one_page(req, platform, &consent, None, Some(e.to_string()))
        }
    }
}

/// `POST /mandats/a-distance/{id}/renvoi`: the link once more.
#[handler]
pub async fn resend(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let consent: Uuid = parse_id(&id)?;
    let now = OffsetDateTime::now_utc();
    let done = remote_consent::resend(&scope, &shared.public_origin, consent, now).await;
    act(req, &platform, &scope, &id, done, "renvoye").await
}

/// `POST /mandats/a-distance/{id}/annulation`.
#[handler]
pub async fn cancel(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let consent: Uuid = parse_id(&id)?;
    let done = remote_consent::cancel(&scope, consent).await;
    act(req, &platform, &scope, &id, done, "annule").await
}

/// The preparation form as typed.
#[derive(Default)]
pub struct Typed {
    chosen: Vec<String>,
    duration: Option<i32>,
    renewal_of: Option<MandateId>,
    given_name: String,
    family_name: String,
    birthdate: String,
    channel: String,
    phone: String,
    email: String,
    language: String,
    code: String,
    transfer: bool,
}

impl Typed {
    fn parse(body: &str) -> Self {
        let form = super::FormFields::parse(body);
        let field = |name: &str| form.get(name);
        Typed {
            chosen: form.all("categories", 20),
            duration: field("duree").parse().ok(),
            renewal_of: field("renouvellement").parse().ok(),
            given_name: field("prenom"),
            family_name: field("nom"),
            birthdate: field("naissance"),
            channel: field("canal"),
            phone: field("telephone"),
            email: field("email"),
            language: field("langue"),
            code: field("code"),
            transfer: field("transfert") == "oui",
        }
    }
}

#[derive(Template)]
#[template(path = "remote_new.html")]
struct NewPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: &'a str,
    categories: Vec<CategoryChoice>,
    durations: Vec<(i32, &'static str, bool)>,
    languages: Vec<(&'static str, &'static str, bool)>,
    renewal_of: String,
    t: &'a Typed,
    error: Option<String>,
}

fn new_page(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    typed: &Typed,
    error: Option<String>,
) -> PageResult<Response> {
    let failed = error.is_some();
    form_answer(
        &NewPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            structure: &scope.structure.name,
            categories: category_choices(&scope.structure.demarches, &typed.chosen),
            durations: duration_choices(typed.duration),
            languages: LANGUAGES
                .iter()
                .map(|l| (l.code, l.name_fr, l.code == typed.language))
                .collect(),
            renewal_of: typed.renewal_of.map(|m| m.to_string()).unwrap_or_default(),
            t: typed,
            error,
        },
        failed,
    )
}

#[derive(Deserialize)]
pub struct NewQuery {
    renouvellement: Option<String>,
}

/// The person of a mandate being renewed: names and birth date, and their mobile phone.
#[derive(sqlx::FromRow)]
struct RenewedPerson {
    given_name: String,
    family_name: String,
    birthdate: String,
    phone: Option<String>,
}

/// `GET /mandats/a-distance/nouveau`.
#[handler]
pub async fn new_form(
    req: &Request,
    platform: Data<&Platform>,
    VerifiedScope(scope): VerifiedScope,
    Query(q): Query<NewQuery>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let mut typed = Typed {
        channel: "sms".into(),
        language: "fr".into(),
        ..Typed::default()
    };
    if let Some(renewed) = q.renouvellement.as_deref() {
        let mandate: MandateId = parse_id(renewed)?;
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
        let (chosen, duration) = renewal_terms(&scope.tenant, scope.structure.id, mandate)
            .await?
            .ok_or_else(PageError::not_found)?;
        let mut tx = scope.tenant.begin().await?;
        let person: Option<RenewedPerson> = sqlx::query_as(
            "SELECT u.given_name, u.family_name, u.birthdate, c.phone
             FROM mandates m JOIN usagers u ON u.id = m.usager_id
             LEFT JOIN usager_contacts c ON c.usager_id = u.id AND c.structure_id = m.structure_id
             WHERE m.id = $1 AND m.structure_id = $2",
        )
        .bind(mandate)
        .bind(scope.structure.id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(p) = person {
            typed.given_name = p.given_name;
            typed.family_name = p.family_name;
            // A birth date FranceConnect knows only in part is typed by the aidant.
            if !p.birthdate.contains("-00") {
                typed.birthdate = p.birthdate;
            }
            typed.phone = p.phone.unwrap_or_default();
        }
        typed.chosen = chosen;
        typed.duration = Some(duration);
        typed.renewal_of = Some(mandate);
    }
    new_page(req, &platform, &scope, &typed, None)
}

/// What is typed, checked; or what to say.
fn checked(scope: &Scope, typed: &Typed) -> Result<Prepared, String> {
    let (categories, duration_days) =
        mandates::validate_terms(&typed.chosen, &scope.structure.demarches, typed.duration)
            .map_err(|e| e.to_string())?;
    let name_ok = |s: &str| !s.is_empty() && s.chars().count() <= 100;
    if !name_ok(&typed.given_name) || !name_ok(&typed.family_name) {
        return Err(
            "Indiquez le prénom et le nom de naissance de la personne, comme sur ses papiers."
                .into(),
        );
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let birthdate = time::Date::parse(&typed.birthdate, format)
        .ok()
        .filter(|d| d.year() >= 1900 && *d < foundation::paris::today())
        .ok_or("La date de naissance n'est pas valide : par exemple 24/08/1962.")?;
    let (channel, destination) = match typed.channel.as_str() {
        "sms" => (
            Channel::Sms,
            normalise_phone(&typed.phone).ok_or(
                "Le numéro de téléphone mobile n'est pas valide : par exemple 06 12 34 56 78.",
            )?,
        ),
        "email" => {
            let e = typed.email.as_str();
            let valid = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'))
                && !e.contains(char::is_whitespace);
            if !valid {
                return Err(
                    "L'adresse e-mail n'est pas valide : par exemple prenom.nom@exemple.fr.".into(),
                );
            }
            (Channel::Email, e.to_owned())
        }
        _ => return Err("Choisissez comment envoyer le lien : par SMS ou par e-mail.".into()),
    };
    if !known(&typed.language) {
        return Err("Choisissez la langue de l'explication.".into());
    }
    Ok(Prepared {
        categories,
        duration_days,
        renewal_of: typed.renewal_of,
        named: Named {
            given_name: typed.given_name.clone(),
            family_name: typed.family_name.clone(),
            birthdate,
        },
        channel,
        destination,
        language: typed.language.clone(),
        transfer: typed.transfer && typed.renewal_of.is_none(),
    })
}

/// `POST /mandats/a-distance/nouveau`: checks, the aidant's code, then the request and its link.
#[handler]
pub async fn prepare(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    body: String,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    let typed = Typed::parse(&body);
    if let Some(renewed) = typed.renewal_of {
        guard::require_in_current_structure(&platform, &scope.me, Action::MandateRenew).await?;
        if renewal_terms(&scope.tenant, scope.structure.id, renewed)
            .await?
            .is_none()
        {
            return Err(PageError::not_found());
        }
    }
    let prepared = match checked(&scope, &typed) {
        Ok(p) => p,
        Err(error) => return new_page(req, &platform, &scope, &typed, Some(error)),
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = check_code(&platform, &scope, Some(typed.code.clone()), now).await? {
        return new_page(req, &platform, &scope, &typed, Some(factor_message(&e)));
    }
    let id = remote_consent::prepare(&scope, &shared.public_origin, &prepared, now).await?;
    Ok(see_other(format!(
        "/mandats/a-distance/{id}?message=envoye"
    )))
}
