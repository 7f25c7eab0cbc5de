//! `/mes-mandats`: the usager's own space. Without a session, the page explains what it is and
//! offers FranceConnect; with one, it lists every mandate the person holds (structure, démarches,
//! end, state) with the uses made of each (date, démarche, online service).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::web::{NavItem, PageResult, Theme, html};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use time::Duration;

use super::{THEME, date, date_time, notice_in, see_other};
use crate::categories;
use crate::franceconnect::FcClient;
use crate::usager_space::{self, HeldMandate, Usager};

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
}

fn shown(m: &HeldMandate) -> Shown {
    let live = !m.row.live.is_empty();
    let state = match (live, m.row.ended_reason.as_deref()) {
        (true, _) => "En cours".to_owned(),
        (false, Some("revoked")) => "Révoqué".to_owned(),
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
    mandates: Vec<Shown>,
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
    let mandates = match &usager {
        Some(usager) => usager.mandates(&platform).await?,
        None => Vec::new(),
    };
    html(&SpacePage {
        theme: THEME,
        nav: nav(),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        signed_in: usager.is_some(),
        expired: usager.is_none() && q.session.as_deref() == Some("expiree"),
        signed_out: usager.is_none() && q.message.as_deref() == Some("deconnexion"),
        mandates: mandates.iter().map(shown).collect(),
    })
}

/// `GET /mes-mandats/connexion`: off to FranceConnect.
#[handler]
pub async fn login(platform: Data<&Platform>, fc: Data<&UsagerFc>) -> PageResult<Response> {
    let (state, nonce) = usager_space::start_login(&platform).await?;
    match fc.0.0.authorize_url(&state, &nonce).await {
        Ok(url) => Ok(see_other(url)),
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
    let nonce = match q.state.as_deref() {
        Some(state) => usager_space::take_login(&platform, state).await?,
        None => None,
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
    let identity = match fc.0.0.identify(code, &nonce).await {
        Ok((identity, _)) => identity,
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
    Ok(see_other("/mes-mandats"))
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
