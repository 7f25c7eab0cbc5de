//! The aidant's pages, one module per resource: the mandate list and the référent's export
//! (`list`), the creation steps (`creation`: terms, FranceConnect return, recap and
//! confirmation), one mandate with its revocation, renewal and attestation (`mandate`), a usager
//! (`usager`), the aidant's activity (`activity`) and the public verification page
//! (`verification`). This module holds what they share: the navigation, the notice page, the
//! error answers and how names and dates are shown. Every handler takes the request's
//! [`Scope`](crate::scope::Scope) (current structure and its territory) and goes through the
//! guard before touching data.

/// The aidant's activity over the last twelve months.
pub mod activity;
/// The person's side of remote consent, reached by the link they received.
pub mod consent;
/// Creating a mandate: terms, FranceConnect, recap and confirmation.
pub mod creation;
/// A guardian service's judicial measures: recording one.
pub mod judicial;
/// The structure's mandates, and the référent's CSV export of them.
pub mod list;
/// One mandate: its page, revocation, renewal, explanation and attestation.
pub mod mandate;
/// A measure's court decision: the document in the vault.
pub mod measure_decision;
/// A guardian service's CSV import of measures, its progress and report.
pub mod measure_import;
/// A guardian service's measures by delegate, and their hand-over.
pub mod measures;
/// The aidant's side of remote consent: preparing, following, resending, cancelling.
pub mod remote;
/// A usager: identity, receipts' channel, mandates and history.
pub mod usager;
/// The usager's own space, `/mes-mandats`.
pub mod usager_space;
/// The public verification page of an attestation's QR code.
pub mod verification;

use crate::documents::Documents;
use askama::Template;
use foundation::web::{NavItem, STATE, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::Redirect;
use poem::{IntoResponse, Response};
use serde::Deserialize;

use crate::franceconnect::{FcClient, Identity};

pub(crate) const THEME: &Theme = &STATE;

/// What the mandate pages share.
#[derive(Clone)]
pub struct Shared {
    pub fc: FcClient,
    pub documents: Documents,
    pub public_origin: String,
}

/// The navigation of the aidant's space.
pub fn nav(current: &str) -> Vec<NavItem> {
    foundation::web::aidant_navigation(current)
}

pub(crate) fn see_other(to: impl Into<String>) -> Response {
    Redirect::see_other(to.into()).into_response()
}

pub(crate) use foundation::paris::{date, date_time};

/// `1962-08-24` → `le 24/08/1962` (unknown month or day said as such).
pub(crate) fn birth_day(d: &str) -> String {
    if d.len() != 10 {
        return d.to_owned();
    }
    let (y, m, day) = (&d[..4], &d[5..7], &d[8..]);
    match (m, day) {
        ("00", _) => format!("en {y}"),
        (_, "00") => format!("en {m}/{y}"),
        _ => format!("le {day}/{m}/{y}"),
    }
}

pub(crate) fn birth_text(identity: &Identity) -> String {
    let shown = birth_day(&identity.birthdate);
    let place = if identity.birthcountry == "99100" {
        format!("à la commune INSEE {}", identity.birthplace)
    } else {
        format!("à l'étranger (pays INSEE {})", identity.birthcountry)
    };
    format!("{shown}, {place}")
}

pub(crate) fn display_name(given: &str, family: &str, usage: Option<&str>) -> String {
    match usage {
        Some(u) if !u.is_empty() && u != family => format!("{family} ({u}) {given}"),
        _ => format!("{family} {given}"),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct Notice<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    heading: &'a str,
    paragraphs: Vec<String>,
    link: Option<(&'a str, &'a str)>,
}

pub(crate) fn notice(
    status: StatusCode,
    heading: &str,
    paragraphs: Vec<String>,
    link: Option<(&str, &str)>,
) -> PageResult<Response> {
    notice_in(nav("/mandats"), status, heading, paragraphs, link)
}

/// [`notice`] under another navigation (the usager's space).
pub(crate) fn notice_in(
    nav: Vec<NavItem>,
    status: StatusCode,
    heading: &str,
    paragraphs: Vec<String>,
    link: Option<(&str, &str)>,
) -> PageResult<Response> {
    let mut resp = html(&Notice {
        theme: THEME,
        nav,
        heading,
        paragraphs,
        link,
    })?;
    resp.set_status(status);
    Ok(resp)
}

/// A form page: 422 when it shows an error (nothing was done), 200 otherwise.
fn form_answer(page: &impl Template, failed: bool) -> PageResult<Response> {
    let mut resp = html(page)?;
    if failed {
        resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(resp)
}

/// A urlencoded form's fields (a body that is not one reads as empty).
pub(crate) struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub(crate) fn parse(body: &str) -> Self {
        Self(serde_urlencoded::from_str(body).unwrap_or_default())
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub(crate) fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    /// Every value of `name` (ticked boxes), at most `max`.
    pub(crate) fn all(&self, name: &str, max: usize) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .take(max)
            .collect()
    }
}

/// An id of the path (a mandate's, a usager's, a draft's); nonsense is a missing page.
fn parse_id<T: std::str::FromStr>(s: &str) -> PageResult<T> {
    s.trim().parse().map_err(|_| PageError::not_found())
}

/// The `message` a redirect after an act carries, shown as a flash.
#[derive(Deserialize)]
pub struct MessageQuery {
    message: Option<String>,
}

/// The usager's optional contact for receipts, as typed (on the recap or the usager page).
#[derive(Deserialize, Default)]
pub struct ContactForm {
    telephone: Option<String>,
    adresse: Option<String>,
}
