//! The web shell shared by every service: DSFR layout, error pages (HTML for pages, JSON for
//! `/api`), security headers, DSFR assets and the public information pages.

/// Server-rendered SVG bar charts with their summary and data table.
pub mod chart;
pub mod errors;
pub mod pages;
pub mod theme;

use std::path::Path;

use poem::endpoint::StaticFilesEndpoint;
use poem::http::header;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};

pub mod allow;
pub use errors::{ErrorBody, PageError, PageResult, api_errors, error_pages};
pub use theme::{STATE, Theme};

/// One entry of the main navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// A navigation from its entries (address, label), with `current` marking the page shown.
pub fn nav_items(entries: &[(&'static str, &'static str)], current: &str) -> Vec<NavItem> {
    entries
        .iter()
        .map(|&(href, label)| NavItem {
            href,
            label,
            current: href == current,
        })
        .collect()
}

/// The main navigation, with `current` marking the page being shown.
pub fn navigation(current: &str) -> Vec<NavItem> {
    nav_items(
        &[
            ("/", "Accueil"),
            ("/demande", "Habiliter une structure"),
            ("/statistiques", "Statistiques"),
            ("/accessibilite", "Accessibilité"),
        ],
        current,
    )
}

/// The navigation of the aidant's space (the mandate service's pages and the mailer's letters
/// page, `/courriers`).
pub fn aidant_navigation(current: &str) -> Vec<NavItem> {
    nav_items(
        &[
            ("/", "Accueil"),
            ("/mandats", "Mandats"),
            ("/activite", "Mon activité"),
            ("/courriers", "Courriers"),
            ("/compte", "Mon compte"),
        ],
        current,
    )
}

/// Renders an askama template into an HTML response; a rendering failure is a 500.
pub fn html(template: &impl askama::Template) -> PageResult<Response> {
    let body = template.render().map_err(PageError::internal)?;
    Ok(Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// The same, answered with `status` when it is `Some` (a form coming back with its errors: 400;
/// a state that forbids the act: 409…).
pub fn html_status(
    template: &impl askama::Template,
    status: Option<poem::http::StatusCode>,
) -> PageResult<Response> {
    let mut resp = html(template)?;
    if let Some(status) = status {
        resp.set_status(status);
    }
    Ok(resp)
}

/// The DSFR distribution (`@gouvfr/dsfr/dist`), served under `/dsfr`.
pub fn dsfr_assets(dir: &Path) -> impl Endpoint + use<> {
    StaticFilesEndpoint::new(dir).prefer_utf8(true)
}

/// Security headers on every response: a strict content security policy (DSFR needs no inline
/// script), no framing, no MIME sniffing, no referrer to other sites. `form_targets` are the
/// other origins a form submission may end up at (FranceConnect, whose authorize endpoint a
/// form's answer redirects to: browsers apply `form-action` to redirects too).
/// Response header a handler sets to allow, on that page only, a form whose submission ends at
/// another origin; removed before the response leaves.
pub const FORM_ACTION_EXTRA: &str = "x-ac-form-action-extra";

pub fn with_security_headers<E: Endpoint + 'static>(
    ep: E,
    form_targets: &[String],
    hsts: bool,
) -> impl Endpoint<Output = Response> + use<E> {
    let mut form_action = String::from("'self'");
    for origin in form_targets {
        // Only plain origins are accepted (no spaces, semicolons or quotes).
        if origin.starts_with("http") && !origin.contains([' ', ';', '\'', ',']) {
            form_action.push(' ');
            form_action.push_str(origin);
        }
    }
    let policy = header::HeaderValue::from_str(&format!(
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         font-src 'self'; object-src 'none'; base-uri 'none'; form-action {form_action}; \
         frame-ancestors 'none'"
    ))
    .unwrap_or_else(|_| {
        header::HeaderValue::from_static(
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
        )
    });
    ep.around(move |ep, req: Request| {
        let policy = policy.clone();
        async move {
            let mut resp = ep.call(req).await?.into_response();
            let headers = resp.headers_mut();
            // A page whose form leads to another site (the identity provider's decision,
            // answered by a redirect to the client) names that origin for this response only.
            let extra = headers
                .remove(FORM_ACTION_EXTRA)
                .and_then(|v| v.to_str().ok().map(str::to_owned))
                .filter(|o| o.starts_with("http") && !o.contains([' ', ';', '\'', ',', '*']));
            let policy = match extra {
                Some(origin) => {
                    header::HeaderValue::from_str(&policy.to_str().unwrap_or_default().replacen(
                        "form-action 'self'",
                        &format!("form-action 'self' {origin}"),
                        1,
                    ))
                    .unwrap_or(policy)
                }
                None => policy,
            };
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
            headers.insert(
                header::X_FRAME_OPTIONS,
                header::HeaderValue::from_static("DENY"),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                header::HeaderValue::from_static("strict-origin-when-cross-origin"),
            );
            // Served over HTTPS: browsers never try plain HTTP again for two years (the
            // `__Host-` cookies would not survive it anyway).
            if hsts {
                headers.insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    header::HeaderValue::from_static("max-age=63072000; includeSubDomains"),
                );
            }
            Ok(resp)
        }
    })
}

/// The origin (`scheme://host[:port]`) of a URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}
