//! Errors become pages or JSON in one place. Pages get a French DSFR error page; `/api` gets
//! the one JSON error shape `{"code": "...", "message": "..."}`. Internal causes are logged
//! here, once, and never shown.

use askama::Template;
use poem::PathPattern;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use serde::Serialize;

use super::{NavItem, Theme, navigation, theme::STATE};

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
                if status.is_server_error() {
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
