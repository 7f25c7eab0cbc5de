//! CSRF protection for every state-changing request, in one middleware: the Origin (or
//! Referer) must be the platform's own, and the request must carry the token of the `ac_csrf`
//! cookie (form field `csrf` or header `x-csrf-token`), compared in constant time. The cookie
//! is SameSite=Strict and HttpOnly, rotated at login and logout. Paths serving other machines
//! (OpenID endpoints called by FranceConnect's servers) are exempted by their service.

use poem::http::{Method, StatusCode, header};
use poem::web::cookie::{Cookie, SameSite};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};

use super::secrets::{constant_time_eq, new_token};

pub const CSRF_COOKIE: &str = "ac_csrf";
/// The name over HTTPS (`__Host-`: Secure, our exact host, path `/`), see the session cookie.
pub const CSRF_COOKIE_HOST: &str = "__Host-ac_csrf";

/// The CSRF cookie's name: prefixed whenever cookies are Secure.
pub fn csrf_cookie_name(secure: bool) -> &'static str {
    if secure {
        CSRF_COOKIE_HOST
    } else {
        CSRF_COOKIE
    }
}
pub const CSRF_FIELD: &str = "csrf";
/// Forms are small: a larger body is refused before parsing.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// A form carrying a file (`multipart/form-data`: a CSV of measures, a court decision).
pub const MAX_UPLOAD_BYTES: usize = 12 * 1024 * 1024;

/// The token to put in forms: the cookie's, or a new one set on the response.
pub fn token(req: &Request, secure: bool) -> String {
    if let Some(existing) = req
        .cookie()
        .get(csrf_cookie_name(secure))
        .map(|c| c.value_str().to_owned())
        .filter(|v| v.len() >= 32)
    {
        return existing;
    }
    let token = new_token();
    req.cookie().add(csrf_cookie(token.clone(), secure));
    token
}

/// A fresh token replacing the old one (at login and logout).
pub fn rotate(req: &Request, secure: bool) -> String {
    let token = new_token();
    req.cookie().add(csrf_cookie(token.clone(), secure));
    token
}

fn csrf_cookie(value: String, secure: bool) -> Cookie {
    let mut cookie = Cookie::new_with_str(csrf_cookie_name(secure), value);
    cookie.set_http_only(true);
    cookie.set_secure(secure);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie
}

fn origin_allowed(req: &Request, public_origin: &str) -> bool {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            // No Origin: fall back on the Referer's origin, if any.
            let referer = req.headers().get(header::REFERER)?.to_str().ok()?;
            let rest = referer.split_once("://")?;
            let host = rest.1.split('/').next()?;
            Some(format!("{}://{host}", rest.0))
        });
    origin.is_none_or(|o| o == public_origin)
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A text field of a multipart form (the token comes first in our forms, before any file).
async fn multipart_field(req: &Request, body: Vec<u8>, name: &str) -> Option<String> {
    use poem::FromRequest;
    let mut body = poem::RequestBody::new(poem::Body::from(body));
    let mut form = poem::web::Multipart::from_request(req, &mut body)
        .await
        .ok()?;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some(name) {
            return field.text().await.ok();
        }
    }
    None
}

fn forbidden() -> poem::Error {
    poem::Error::from_status(StatusCode::FORBIDDEN)
}

/// Methods some route may serve; anything else (TRACE, CONNECT, extensions) is 405 at once.
pub fn is_served(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::OPTIONS
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
    )
}

/// Methods that change nothing, never checked.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Paths a service exempted (called by other machines).
pub fn is_exempt(path: &str, exempt: &[&str]) -> bool {
    exempt.iter().any(|p| path.starts_with(p))
}

/// Refuses state-changing requests without the platform's origin and a valid token, and
/// methods no route serves (TRACE, CONNECT, extensions) with 405 before anything else.
pub fn protect<E: Endpoint + 'static>(
    ep: E,
    public_origin: String,
    exempt: Vec<&'static str>,
    secure: bool,
) -> impl Endpoint<Output = Response> {
    ep.around(move |ep, mut req: Request| {
        let public_origin = public_origin.clone();
        let exempt = exempt.clone();
        async move {
            if !is_served(req.method()) {
                return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
            }
            if is_safe(req.method()) || is_exempt(req.uri().path(), &exempt) {
                return Ok(ep.call(req).await?.into_response());
            }
            if !origin_allowed(&req, &public_origin) {
                tracing::warn!("csrf: foreign origin refused");
                return Err(forbidden());
            }
            let expected = req
                .cookie()
                .get(csrf_cookie_name(secure))
                .map(|c| c.value_str().to_owned())
                .unwrap_or_default();
            let header_token = req
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let given = match header_token {
                Some(t) => t,
                None => {
                    let multipart = req
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("multipart/form-data"));
                    let limit = if multipart {
                        MAX_UPLOAD_BYTES
                    } else {
                        MAX_FORM_BYTES
                    };
                    let body = req
                        .take_body()
                        .into_bytes_limit(limit)
                        .await
                        .map_err(|_| poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))?;
                    let token = if multipart {
                        multipart_field(&req, body.to_vec(), CSRF_FIELD).await
                    } else {
                        form_field(&body, CSRF_FIELD)
                    };
                    req.set_body(body);
                    token.unwrap_or_default()
                }
            };
            if expected.len() < 32 || !constant_time_eq(&expected, &given) {
                tracing::warn!("csrf: missing or wrong token");
                return Err(forbidden());
            }
            Ok(ep.call(req).await?.into_response())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&csrf=ab%2Bc+d&x=", "csrf").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }
}
