//! The one error of the provider's JSON endpoints (token, userinfo): RFC 6749 §5.2 and
//! RFC 6750 §3 — a JSON body `{"error", "error_description"}` (the description in French),
//! `Cache-Control: no-store`, and `WWW-Authenticate` where the RFCs ask for it. Turning it into
//! its response logs it, once: a client's mistake at `info` with its reason, our own failure at
//! `error` with its cause. The authorization endpoint's refusals are pages or redirects
//! ([`super::request::Refusal`]), never this JSON.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use serde_json::json;

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum OAuthError {
    /// 400 `invalid_request`: the request is malformed.
    InvalidRequest(&'static str),
    /// 401 `invalid_client`. `basic`: the client tried HTTP Basic, so the answer names the
    /// scheme; `reason`: what failed, for the log only.
    InvalidClient {
        description: &'static str,
        basic: bool,
        client: Option<String>,
        reason: Option<String>,
    },
    /// 400 `invalid_grant`: the code is unknown, used, expired or not this client's.
    InvalidGrant {
        client: String,
        reason: &'static str,
    },
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 401 without an error code: no bearer token at all (RFC 6750 §3.1).
    NoToken,
    /// 401 `invalid_token`: unknown, expired or revoked token, or a mandate no longer live.
    InvalidToken,
    /// 503 `temporarily_unavailable`: a failure of ours, the client may retry.
    Unavailable(Cause),
}

impl OAuthError {
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        Self::Unavailable(cause.into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            Self::InvalidClient { description, .. } => {
                (StatusCode::UNAUTHORIZED, "invalid_client", description)
            }
            Self::InvalidGrant { reason, .. } => (StatusCode::BAD_REQUEST, "invalid_grant", reason),
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "seul authorization_code est pris en charge",
            ),
            Self::NoToken => (StatusCode::UNAUTHORIZED, "", ""),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "jeton inconnu, expiré ou révoqué",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "service momentanément indisponible, réessayer",
            ),
        }
    }

    fn log(&self) {
        match self {
            Self::InvalidClient {
                client,
                reason: Some(reason),
                ..
            } => {
                tracing::info!(client = client.as_deref().unwrap_or(""), reason = %reason, "identity provider: client authentication failed");
            }
            Self::InvalidGrant { client, reason } => {
                tracing::info!(client = %client, reason, "identity provider: code refused");
            }
            Self::Unavailable(cause) => {
                tracing::error!(error = %cause, "identity provider: request failed");
            }
            _ => {}
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        self.log();
        let (status, error, description) = self.parts();
        let mut resp = if error.is_empty() {
            status.into_response()
        } else {
            Response::builder()
                .status(status)
                .content_type("application/json")
                .body(json!({ "error": error, "error_description": description }).to_string())
        };
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        let challenge = match &self {
            Self::InvalidClient { basic: true, .. } => Some("Basic realm=\"aidants-connect\""),
            Self::NoToken => Some("Bearer realm=\"aidants-connect\""),
            Self::InvalidToken => Some("Bearer error=\"invalid_token\""),
            _ => None,
        };
        if let Some(c) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp
    }
}

/// Handlers return `Result<Response, OAuthError>`: the error leaves as its own response, which
/// the error-page layer passes through untouched.
impl From<OAuthError> for poem::Error {
    fn from(e: OAuthError) -> Self {
        poem::Error::from_response(e.into_response())
    }
}
