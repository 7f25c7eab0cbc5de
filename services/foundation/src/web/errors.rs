//! Errors become pages or JSON in one place. Pages get a French DSFR error page; `/api` gets
//! the one JSON error shape `{"code": "...", "message": "..."}`. Internal causes are logged
//! here, once, and never shown.

use askama::Template;
use poem::PathPattern;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use serde::Serialize;

use super::{NavItem, Theme, navigation, theme::STATE};

/// The error of every page handler and of the helpers they call: a status to answer (403,
/// 404…) or a cause behind a 503/500. It is not logged where it is made: the error-page layer
/// ([`error_pages`]) logs each server error once, with its cause, and answers the French page.
/// `?` turns a database error into a 503 and a `poem::Error` into itself, so a handler reads
/// `let rows = query.fetch_all(&mut *tx).await?;`.
#[derive(Debug)]
pub struct PageError(poem::Error);

/// What page handlers return.
pub type PageResult<T> = Result<T, PageError>;

impl PageError {
    /// An answer with this status and nothing to log (a refusal, a missing page).
    pub fn status(status: StatusCode) -> Self {
        Self(poem::Error::from_status(status))
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::status(StatusCode::NOT_FOUND)
    }

    /// 403.
    pub fn forbidden() -> Self {
        Self::status(StatusCode::FORBIDDEN)
    }

    /// A failure of ours (500), its cause logged once by the error-page layer.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self(poem::Error::new(
            Cause(cause.into()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ))
    }

    /// Something we depend on is unavailable (503), its cause logged once.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self(poem::Error::new(
            Cause(cause.into()),
            StatusCode::SERVICE_UNAVAILABLE,
        ))
    }

    /// The status this error answers with.
    pub fn status_code(&self) -> StatusCode {
        self.0.status()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The cause behind a 500 or 503, shown only in the log.
#[derive(Debug)]
struct Cause(BoxError);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        Self::unavailable(e)
    }
}

impl From<crate::tenancy::TenancyError> for PageError {
    fn from(e: crate::tenancy::TenancyError) -> Self {
        match e {
            crate::tenancy::TenancyError::NotProvisioned(_) => Self::not_found(),
            e => Self::unavailable(e),
        }
    }
}

impl From<poem::Error> for PageError {
    fn from(e: poem::Error) -> Self {
        Self(e)
    }
}

impl From<StatusCode> for PageError {
    fn from(status: StatusCode) -> Self {
        Self::status(status)
    }
}

impl From<PageError> for poem::Error {
    fn from(e: PageError) -> Self {
        e.0
    }
}

/// The JSON error shape of every API.
#[derive(Debug, Serialize, poem_openapi::Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    /// What went wrong and what to do, in French.
    pub message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    status: u16,
    heading: &'a str,
    lead: &'a str,
    advice: &'a str,
}

/// French wording for a status: (code, heading, lead, advice).
fn wording(status: StatusCode) -> (&'static str, &'static str, &'static str, &'static str) {
    match status.as_u16() {
        400 | 422 => (
            "bad_request",
            "Demande incorrecte",
            "Les informations envoyées ne sont pas valides.",
            "Revenez à la page précédente, vérifiez les champs signalés puis envoyez à nouveau.",
        ),
        401 => (
            "unauthorized",
            "Connexion nécessaire",
            "Cette page est réservée aux personnes connectées.",
            "Connectez-vous puis réessayez.",
        ),
        403 => (
            "forbidden",
            "Accès refusé",
            "Vous n'avez pas les droits nécessaires pour accéder à cette page ou faire cette action.",
            "Si vous pensez que c'est une erreur, contactez le référent de votre structure.",
        ),
        404 => (
            "not_found",
            "Page non trouvée",
            "La page que vous cherchez est introuvable. Excusez-nous pour la gêne occasionnée.",
            "Si vous avez tapé l'adresse web dans le navigateur, vérifiez qu'elle est correcte. \
             La page n'est peut-être plus disponible.",
        ),
        405 => (
            "method_not_allowed",
            "Action non permise",
            "Cette adresse ne permet pas cette action.",
            "Revenez à la page précédente et utilisez les boutons proposés.",
        ),
        413 => (
            "payload_too_large",
            "Envoi trop volumineux",
            "Les données envoyées dépassent la taille autorisée.",
            "Réduisez la taille du fichier puis réessayez.",
        ),
        415 => (
            "unsupported_media_type",
            "Type de contenu non pris en charge",
            "Le type de contenu envoyé n'est pas celui attendu.",
            "Envoyez le corps avec l'en-tête Content-Type documenté.",
        ),
        429 => (
            "too_many_requests",
            "Trop de tentatives",
            "Vous avez fait trop de tentatives en peu de temps.",
            "Patientez quelques minutes puis réessayez.",
        ),
        503 => (
            "unavailable",
            "Service momentanément indisponible",
            "Le service est momentanément indisponible.",
            "Réessayez dans quelques instants. Vos informations déjà enregistrées sont conservées.",
        ),
        _ => (
            "internal_error",
            "Erreur inattendue",
            "Une erreur inattendue est survenue. L'équipe technique en est informée.",
            "Réessayez dans quelques instants. Si le problème persiste, contactez le support.",
        ),
    }
}

/// Renders the page or JSON body for an error status.
pub fn error_response(status: StatusCode, api: bool) -> Response {
    let (code, heading, lead, advice) = wording(status);
    if api {
        let body = ErrorBody {
            code: code.into(),
            message: format!("{lead} {advice}"),
        };
        return poem::web::Json(body).with_status(status).into_response();
    }
    let page = ErrorPage {
        theme: &STATE,
        nav: navigation(""),
        status: status.as_u16(),
        heading,
        lead,
        advice,
    };
    match page.render() {
        Ok(body) => Response::builder()
            .status(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(_) => Response::builder().status(status).body(lead),
    }
}

fn is_api(req: &Request) -> bool {
    let path = req.uri().path();
    path.starts_with("/api/") || path == "/health" || path.starts_with("/health/")
}

/// Turns errors (and error statuses without a body) into French pages or JSON errors.
pub fn error_pages<E: Endpoint + 'static>(ep: E) -> impl Endpoint<Output = Response> {
    errors_as(ep, is_api)
}

/// The same for a listener that serves APIs only: every error is the JSON shape.
pub fn api_errors<E: Endpoint + 'static>(ep: E) -> impl Endpoint<Output = Response> {
    errors_as(ep, |_| true)
}

fn errors_as<E: Endpoint + 'static>(
    ep: E,
    is_api: fn(&Request) -> bool,
) -> impl Endpoint<Output = Response> {
    ep.around(move |ep, req: Request| async move {
        let api = is_api(&req);
        let (status, pattern) = match ep.call(req).await {
            Ok(resp) => {
                let resp = resp.into_response();
                // Only bare error statuses are replaced: a handler's own body is kept.
                if resp.status().is_success()
                    || resp.status().is_redirection()
                    || resp
                        .headers()
                        .contains_key(poem::http::header::CONTENT_TYPE)
                {
                    return Ok(resp);
                }
                (resp.status(), resp.data::<PathPattern>().cloned())
            }
            // A documented API error (poem-openapi ApiResponse) carries its own JSON body.
            Err(err) if err.is_from_response() => {
                let pattern = err.data::<PathPattern>().cloned();
                let mut resp = err.into_response();
                if let Some(pattern) = pattern {
                    resp.set_data(pattern);
                }
                return Ok(resp);
            }
            Err(err) => {
                let status = err.status();
                // The one place a failed request is logged, with its cause. A bare status
                // (no cause) was decided by code that logged what it knew, if anything.
                if status.is_server_error() && err.has_source() {
                    tracing::error!(error = %err, "request failed");
                }
                if err.is::<poem_openapi::error::ParseRequestPayloadError>()
                    || err.is::<poem_openapi::error::ParseParamError>()
                {
                    // Already a documented API error: keep the details.
                    let body = ErrorBody {
                        code: "bad_request".into(),
                        message: format!("Requête invalide : {err}"),
                    };
                    return Ok(poem::web::Json(body)
                        .with_status(StatusCode::BAD_REQUEST)
                        .into_response());
                }
                (status, err.data::<PathPattern>().cloned())
            }
        };
        let mut resp = error_response(status, api);
        if let Some(pattern) = pattern {
            resp.set_data(pattern);
        }
        Ok(resp)
    })
}
