//! The one JSON error shape of every API, as a documented poem-openapi response. Services map
//! their domain errors into it; internal causes are logged here once and answered opaquely.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use crate::tenancy::{CodeError, TenancyError};
pub use crate::web::ErrorBody;

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is invalid; `message` says which field and how to fix it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not signed in (a session cookie is needed).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not found, or not visible to the caller (never distinguished).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Temporarily unavailable (database busy, territory not served); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// Unexpected error; details are in the server's logs, not here.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        code: code.into(),
        message: message.into(),
    })
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(body("bad_request", message))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body("unauthorized", message))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(body("not_found", message))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(body("conflict", message))
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(body("unavailable", message))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Pool exhausted or database unreachable: fail fast and say so.
            // Class 08 from the server itself: on Citus, the worker holding the territory is
            // unreachable from the coordinator.
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("08")) => {
                tracing::warn!(error = %e, "territory's database node unavailable");
                Self::unavailable(
                    "Le territoire est momentanément indisponible. Réessayez dans quelques instants.",
                )
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable(
                    "Le service est momentanément surchargé. Réessayez dans quelques instants.",
                )
            }
            e => {
                tracing::error!(error = %e, "database error");
                Self::Internal(body(
                    "internal_error",
                    "Une erreur inattendue est survenue. Réessayez plus tard.",
                ))
            }
        }
    }
}

impl From<TenancyError> for ApiError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::NotServed(d) => Self::unavailable(format!(
                "Le territoire {d} est momentanément indisponible (maintenance). Réessayez plus tard."
            )),
            TenancyError::NotProvisioned(_) => Self::not_found(e.to_string()),
            TenancyError::Database(e) => e.into(),
        }
    }
}

impl From<CodeError> for ApiError {
    fn from(e: CodeError) -> Self {
        Self::not_found(e.to_string())
    }
}
