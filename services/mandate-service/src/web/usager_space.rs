//! `/mes-mandats`: the usager's own space. Without a session, the page explains what it is and
//! offers FranceConnect; with one, it lists every mandate the person holds (structure, démarches,
//! end, state) with the uses made of each (date, démarche, online service).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::ids::MandateId;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, PageError, PageResult, Theme, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::{Shared, THEME, date, date_time, notice_in, see_other};
use crate::contact::{RECEIPTS, typed_contact};
use crate::franceconnect::FcClient;
use crate::mandates::{self, MandateError};
use crate::usager_space::{self, HeldMandate, Usager};
use crate::{attestation, categories};

/// The FranceConnect client of the usager's space (its own return path).
#[derive(Clone)]
pub struct UsagerFc(pub FcClient);

const HOME: Option<(&str, &str)> = Some(("/mes-mandats", "Retour à mes mandats"));

fn nav() -> Vec<NavItem> {
    foundation::web::navigation("/mes-mandats")
}

/// A mandate as the page shows it.
struct Shown {
    structure: String,
    departement: String,
    demarches: Vec<String>,
    live: bool,
    state: String,
    since: String,
    until: String,
    uses: Vec<(String, String, String)>,
    /// The live démarches (code, label) one may stop one by one.
    stoppable: Vec<(String, String)>,
    revocation: String,
    explanation: String,
}

fn shown(m: &HeldMandate) -> Shown {
    let live = !m.row.live.is_empty();
    let state = match (live, m.row.ended_reason.as_deref()) {
        (true, _) => "En cours".to_owned(),
        (false, Some("revoked")) => "Révoqué".to_owned(),
        (false, Some("transferred")) => "Transféré à une autre structure".to_owned(),
        (false, Some("superseded")) => "Remplacé par un mandat plus récent".to_owned(),
        (false, _) => "Terminé".to_owned(),
    };
    Shown {
        structure: m.row.structure.clone(),
        departement: m.departement.as_str().to_owned(),
        demarches: m
            .row
            .categories
            .iter()
            .map(|c| {
                let label = categories::label(c).to_owned();
                if live && !m.row.live.contains(c) {
                    format!("{label} (révoquée)")
                } else {
                    label
                }
            })
            .collect(),
        live,
        state,
        stoppable: m
            .row
            .live
            .iter()
            .map(|c| (c.clone(), categories::label(c).to_owned()))
            .collect(),
        revocation: format!(
            "/mes-mandats/{}/{}/revocation",
            m.departement.as_str(),
            m.row.id
        ),
        explanation: format!(
            "/mes-mandats/{}/{}/explication",
            m.departement.as_str(),
            m.row.id
        ),
        since: date(m.row.created_at),
        until: date(m.row.expires_at - Duration::seconds(1)),
        uses: m
            .uses
            .iter()
            .map(|u| {
                (
                    date_time(u.at),
                    categories::label(&u.category).to_owned(),
                    u.service.clone(),
                )
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "usager_space.html")]
struct SpacePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    signed_in: bool,
    expired: bool,
    signed_out: bool,
    revoked: bool,
    saved: bool,
    mandates: Vec<Shown>,
    /// (value, label, chosen) of each way to receive receipts.
    receipts: Vec<(&'static str, &'static str, bool)>,
    own_email: String,
    own_phone: String,
    own_address: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SpaceQuery {
    session: Option<String>,
    message: Option<String>,
}

/// `GET /mes-mandats`.
#[handler]
pub async fn space(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<SpaceQuery>,
) -> PageResult<Response> {
    let usager = usager_space::lookup(req, &platform).await?;
    let own = match &usager {
        Some(usager) => usager.own_contact(&platform).await?,
        None => usager_space::OwnContact::default(),
    };
    let flags = Flags {
        expired: usager.is_none() && q.session.as_deref() == Some("expiree"),
        signed_out: usager.is_none() && q.message.as_deref() == Some("deconnexion"),
        revoked: usager.is_some() && q.message.as_deref() == Some("revoque"),
        saved: usager.is_some() && q.message.as_deref() == Some("preferences"),
    };
    let typed = Typed {
        receipts: own.receipts,
        email: own.email.unwrap_or_default(),
        phone: own.phone.unwrap_or_default(),
        address: own.postal_address.unwrap_or_default(),
    };
    render(req, &platform, usager.as_ref(), flags, typed, None).await
}

/// Messages the space shows after a redirect.
#[derive(Default)]
struct Flags {
    expired: bool,
    signed_out: bool,
    revoked: bool,
    saved: bool,
}

/// The receipts form as typed (or as recorded).
#[derive(Deserialize)]
pub struct Typed {
    #[serde(default)]
    receipts: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    address: String,
}

async fn render(
    req: &Request,
    platform: &Platform,
    usager: Option<&Usager>,
    flags: Flags,
    typed: Typed,
    error: Option<String>,
) -> PageResult<Response> {
    let mandates = match usager {
        Some(usager) => usager.mandates(platform).await?,
        None => Vec::new(),
    };
    let failed = error.is_some();
    let mut resp = html(&SpacePage {
        theme: THEME,
        nav: nav(),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        signed_in: usager.is_some(),
        expired: flags.expired,
        signed_out: flags.signed_out,
        revoked: flags.revoked,
        saved: flags.saved,
        mandates: mandates.iter().map(shown).collect(),
        receipts: RECEIPTS
            .iter()
            .map(|(value, label)| (*value, *label, *value == typed.receipts))
            .collect(),
        own_email: typed.email,
        own_phone: typed.phone,
        own_address: typed.address,
        error,
    })?;
    if failed {
        resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(resp)
}

/// `POST /mes-mandats/preferences`: how receipts reach the person, and their own contact. A
/// mistake is said in French and nothing is recorded.
#[handler]
pub async fn preferences(
    req: &Request,
    platform: Data<&Platform>,
    usager: Usager,
    Form(typed): Form<Typed>,
) -> PageResult<Response> {
    let checked = (|| {
        if !RECEIPTS.iter().any(|(v, _)| *v == typed.receipts) {
            return Err("Choisissez comment recevoir les confirmations.".to_owned());
        }
        let email = match typed.email.trim() {
            "" => None,
            e if e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'))
                && !e.contains(char::is_whitespace) =>
            {
                Some(e.to_owned())
            }
            _ => {
                return Err(
                    "L'adresse e-mail n'est pas valide : par exemple prenom.nom@exemple.fr."
                        .to_owned(),
                );
            }
        };
        let (phone, postal_address) =
            typed_contact(&typed.phone, &typed.address).map_err(|e| e.to_string())?;
        Ok(usager_space::OwnContact {
            receipts: typed.receipts.clone(),
            email,
            phone,
            postal_address,
        })
    })();
    match checked {
        Ok(own) => {
            usager.set_own_contact(&platform, &own).await?;
            Ok(see_other("/mes-mandats?message=preferences"))
        }
        Err(error) => {
            render(
                req,
                &platform,
                Some(&usager),
                Flags::default(),
                typed,
                Some(error),
            )
            .await
        }
    }
}

/// `GET /mes-mandats/connexion`: off to FranceConnect.
#[handler]
pub async fn login(
    req: &Request,
    platform: Data<&Platform>,
    fc: Data<&UsagerFc>,
) -> PageResult<Response> {
    let login = usager_space::start_login(&platform).await?;
    match fc.0.0.authorize_url(&login.state, &login.nonce).await {
        Ok(url) => {
            req.cookie()
                .add(usager_space::login_cookie(&platform, login.browser));
            Ok(see_other(url))
        }
        Err(e) => notice_in(
            nav(),
            StatusCode::SERVICE_UNAVAILABLE,
            "Connexion impossible pour le moment",
            vec![e.to_string()],
            HOME,
        ),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /mes-mandats/franceconnect/retour`: FranceConnect's answer; opens the session.
#[handler]
pub async fn callback(
    req: &Request,
    platform: Data<&Platform>,
    fc: Data<&UsagerFc>,
    Query(q): Query<CallbackQuery>,
) -> PageResult<Response> {
    if q.error.is_some() {
        return notice_in(
            nav(),
            StatusCode::BAD_REQUEST,
            "Connexion annulée",
            vec!["Vous n'êtes pas connecté. Vous pouvez recommencer quand vous voulez.".into()],
            HOME,
        );
    }
    // The login must come back to the browser that started it (login CSRF).
    let browser = req
        .cookie()
        .get(usager_space::LOGIN_COOKIE)
        .map(|c| c.value_str().to_owned())
        .filter(|v| !v.is_empty());
    let nonce = match (q.state.as_deref(), browser.as_deref()) {
        (Some(state), Some(browser)) => usager_space::take_login(&platform, state, browser).await?,
        _ => None,
    };
    let (Some(code), Some(nonce)) = (q.code.as_deref(), nonce) else {
        return notice_in(
            nav(),
            StatusCode::BAD_REQUEST,
            "Connexion non reconnue",
            vec![
                "Ce retour de FranceConnect est expiré ou a déjà servi. Recommencez la connexion."
                    .into(),
            ],
            HOME,
        );
    };
    let mut used = usager_space::login_cookie(&platform, String::new());
    used.set_max_age(std::time::Duration::ZERO);
    req.cookie().add(used);
    let (identity, id_token) = match fc.0.0.identify(code, &nonce).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "usager franceconnect login refused");
            return notice_in(
                nav(),
                StatusCode::BAD_GATEWAY,
                "La connexion avec FranceConnect n'a pas abouti",
                vec![e.to_string()],
                HOME,
            );
        }
    };
    let token = usager_space::open_session(&platform, &identity.sub).await?;
    req.cookie().add(usager_space::cookie(&platform, token));
    csrf::rotate(req, platform.settings.http.secure_cookies());
    // The person is then logged out of FranceConnect (franceconnect.md §A), which sends them
    // back to their space; the platform keeps neither FranceConnect's tokens nor its session.
    match fc
        .0
        .0
        .logout_url(&id_token, &foundation::auth::secrets::new_token())
        .await
    {
        Ok(url) => Ok(see_other(url)),
        Err(_) => Ok(see_other("/mes-mandats")),
    }
}

/// `GET /mes-mandats/franceconnect/deconnexion`: back from FranceConnect's logout.
#[handler]
pub async fn logged_out_of_franceconnect() -> Response {
    see_other("/mes-mandats")
}

/// `POST /mes-mandats/deconnexion`.
#[handler]
pub async fn logout(
    req: &Request,
    platform: Data<&Platform>,
    usager: Usager,
) -> PageResult<Response> {
    usager.end(&platform).await?;
    let mut gone = usager_space::cookie(&platform, String::new());
    gone.set_max_age(std::time::Duration::ZERO);
    req.cookie().add(gone);
    csrf::rotate(req, platform.settings.http.secure_cookies());
    Ok(see_other("/mes-mandats?message=deconnexion"))
}

/// A démarche to stop (`demarche`), or the whole mandate (absent).
#[derive(Deserialize)]
pub struct RevocationQuery {
    demarche: Option<String>,
}

/// What the person is about to stop, in words.
fn what_stops(owned: &usager_space::Owned, demarche: Option<&str>) -> Option<Vec<String>> {
    let live = &owned.row.live;
    let codes: Vec<&String> = match demarche {
        Some(code) => live.iter().filter(|c| c.as_str() == code).collect(),
        None => live.iter().collect(),
    };
    (!codes.is_empty()).then(|| {
        codes
            .into_iter()
            .map(|c| categories::label(c).to_owned())
            .collect()
    })
}

async fn own(
    platform: &Platform,
    usager: &Usager,
    dep: &str,
    id: &str,
) -> PageResult<usager_space::Owned> {
    let departement = DepartementCode::parse(dep).map_err(|_| PageError::not_found())?;
    let mandate: MandateId = super::parse_id(id)?;
    usager
        .own_mandate(platform, departement, mandate)
        .await?
        .ok_or_else(PageError::not_found)
}

#[derive(Template)]
#[template(path = "usager_revocation.html")]
struct RevocationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    action: String,
    structure: String,
    demarche: String,
    demarches: Vec<String>,
    whole: bool,
}

/// `GET /mes-mandats/:dep/:id/revocation`: what stopping means, before doing it.
#[handler]
pub async fn revocation(
    req: &Request,
    platform: Data<&Platform>,
    usager: Usager,
    Path((dep, id)): Path<(String, String)>,
    Query(q): Query<RevocationQuery>,
) -> PageResult<Response> {
    let owned = own(&platform, &usager, &dep, &id).await?;
    let demarche = q.demarche.as_deref().filter(|d| !d.is_empty());
    let Some(demarches) = what_stops(&owned, demarche) else {
        return Ok(see_other("/mes-mandats?message=rien"));
    };
    html(&RevocationPage {
        theme: THEME,
        nav: nav(),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        action: format!("/mes-mandats/{dep}/{id}/revocation"),
        structure: owned.row.name.clone(),
        demarche: demarche.unwrap_or_default().to_owned(),
        whole: demarche.is_none() || demarches.len() == owned.row.live.len(),
        demarches,
    })
}

#[derive(Deserialize)]
pub struct RevocationForm {
    demarche: Option<String>,
}

/// `POST /mes-mandats/:dep/:id/revocation`: stops a démarche or the whole mandate, in the
/// mandate's territory (journaled there, the person's receipt queued), then the revocation
/// attestation and a word to the structure's référents.
#[handler]
pub async fn revoke(
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    usager: Usager,
    Path((dep, id)): Path<(String, String)>,
    Form(f): Form<RevocationForm>,
) -> PageResult<Response> {
    let owned = own(&platform, &usager, &dep, &id).await?;
    let demarche = f
        .demarche
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if what_stops(&owned, demarche).is_none() {
        return Ok(see_other("/mes-mandats?message=rien"));
    }
    let now = OffsetDateTime::now_utc();
    let mut tx = owned.territory.begin().await?;
    let outcome = mandates::revoke(
        &mut tx,
        owned.row.structure_id,
        owned.mandate,
        demarche,
        None,
        now,
    )
    .await;
    let (revoked, whole) = match outcome {
        Ok(done) => done,
        Err(MandateError::NotFound) => return Err(PageError::not_found()),
        Err(MandateError::NothingLive) => return Ok(see_other("/mes-mandats?message=rien")),
        Err(_) => return Err(PageError::status(StatusCode::SERVICE_UNAVAILABLE)),
    };
    tx.commit().await?;
    let by = attestation::RevokedBy {
        territory: &owned.territory,
        structure: owned.row.structure_id,
        tenant: owned.row.tenant_id,
        structure_name: &owned.row.name,
        name: "la personne elle-même, dans son espace".to_owned(),
        professional: None,
    };
    if let Err(e) = attestation::produce_revocation_attestation(
        &platform,
        &shared.documents,
        &by,
        owned.mandate,
        &revoked,
        whole,
        now,
    )
    .await
    {
        tracing::warn!(error = %e, "revocation attestation not produced");
    }
    usager_space::tell_structure(&platform, &owned, &revoked, now).await?;
    Ok(see_other("/mes-mandats?message=revoque"))
}

#[derive(Template)]
#[template(path = "usager_explanation.html")]
struct ExplanationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: String,
    explained: crate::explanation::Explained,
    audio: String,
    languages: Vec<(&'static str, &'static str, bool)>,
}

/// The language of an explanation (`?langue=`).
#[derive(Deserialize)]
pub struct LanguageQuery {
    langue: Option<String>,
}

fn explained_for(owned: &usager_space::Owned, language: &str) -> crate::explanation::Explained {
    let labels: Vec<&str> = owned
        .row
        .live
        .iter()
        .map(|c| categories::label(c))
        .collect();
    let ends = date(owned.row.expires_at - Duration::seconds(1));
    crate::explanation::explain(language, &owned.row.name, &labels, &ends)
}

/// `GET /mes-mandats/:dep/:id/explication`: the mandate explained, in the chosen language, with
/// its read-out.
#[handler]
pub async fn explanation(
    platform: Data<&Platform>,
    usager: Usager,
    Path((dep, id)): Path<(String, String)>,
    Query(q): Query<LanguageQuery>,
) -> PageResult<Response> {
    let owned = own(&platform, &usager, &dep, &id).await?;
    let explained = explained_for(&owned, q.langue.as_deref().unwrap_or("fr"));
    let code = explained.language.code;
    html(&ExplanationPage {
        theme: THEME,
        nav: nav(),
        structure: owned.row.name.clone(),
        audio: format!("/mes-mandats/{dep}/{id}/explication.wav?langue={code}"),
        languages: crate::explanation::LANGUAGES
            .iter()
            .map(|l| (l.code, l.own_name, l.code == code))
            .collect(),
        explained,
    })
}

/// `GET /mes-mandats/:dep/:id/explication.wav`: the explanation read aloud.
#[handler]
pub async fn explanation_audio(
    platform: Data<&Platform>,
    usager: Usager,
    Path((dep, id)): Path<(String, String)>,
    Query(q): Query<LanguageQuery>,
) -> PageResult<Response> {
    let owned = own(&platform, &usager, &dep, &id).await?;
    let explained = explained_for(&owned, q.langue.as_deref().unwrap_or("fr"));
    super::consent::wav(&explained).await
}
