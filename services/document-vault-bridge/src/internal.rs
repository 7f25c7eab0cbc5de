//! The internal document API, for the other services when they do not run in the same process
//! (attestations from mandate-service, court decisions, structure documents and habilitation
//! certificates from the desk). Served under `/internal/documents`, described by its OpenAPI
//! document at `/internal/documents/openapi.json`.
//!
//! Served by the internal listener only (`http.internal_port`), never by the public one.
//!
//! Every operation goes through the same guard, deny by default ([`authenticate`] first, then
//! [`territory`] and [`allow`]): a bearer token of a registered, active caller
//! (`platform.internal_callers`, SHA-256 only), granted the département of the path (else the
//! same 404 as an unknown document) and allowed for the document's kind; and the tenant
//! context — the tenant belonging to that département, the document in its schema. Errors are
//! the platform's JSON error shape.

use foundation::api::ApiError;
use foundation::app::Platform;
use foundation::auth::secrets::token_hash;
use foundation::ids::TenantId;
use foundation::tenancy::{DepartementCode, Territory};
use poem::web::Data;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::{Retention, Vault, VaultError};

const DOCUMENT_NOT_FOUND: &str = "document introuvable";
const TENANT_NOT_FOUND: &str = "tenant inconnu dans ce département";

/// Longest and default lifetime of a link handed out.
pub const LINK_MAX_SECONDS: i64 = 900;
pub const LINK_DEFAULT_SECONDS: i64 = 300;

/// A calling service's token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct ServiceToken(Bearer);

/// An error of the internal API: the platform's shape, plus 401/403/413 here.
#[derive(Debug, ApiResponse)]
pub enum InternalError {
    #[oai(status = 400)]
    BadRequest(Json<foundation::api::ErrorBody>),
    #[oai(status = 401)]
    Unauthorized(Json<foundation::api::ErrorBody>),
    #[oai(status = 403)]
    Forbidden(Json<foundation::api::ErrorBody>),
    /// Not found, or not in this territory (never distinguished).
    #[oai(status = 404)]
    NotFound(Json<foundation::api::ErrorBody>),
    /// More than 10 MB.
    #[oai(status = 413)]
    TooLarge(Json<foundation::api::ErrorBody>),
    /// The body is not sent as `application/octet-stream`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<foundation::api::ErrorBody>),
    /// The object store or the database is unavailable: retry later.
    #[oai(status = 503)]
    Unavailable(Json<foundation::api::ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<foundation::api::ErrorBody>),
}

fn body(code: &str, message: impl Into<String>) -> Json<foundation::api::ErrorBody> {
    Json(foundation::api::ErrorBody {
        code: code.into(),
        message: message.into(),
    })
}

impl From<VaultError> for InternalError {
    fn from(e: VaultError) -> Self {
        let message = e.to_string();
        match e {
            VaultError::TooLarge => Self::TooLarge(body("too_large", message)),
            VaultError::UnsupportedType => Self::BadRequest(body("unsupported_type", message)),
            VaultError::NotFound | VaultError::InvalidLink => {
                Self::NotFound(body("not_found", DOCUMENT_NOT_FOUND))
            }
            VaultError::Unavailable | VaultError::Database => {
                Self::Unavailable(body("unavailable", message))
            }
        }
    }
}

impl From<ApiError> for InternalError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(b) => Self::BadRequest(b),
            ApiError::NotFound(b) => Self::NotFound(b),
            ApiError::Unauthorized(b) => Self::Unauthorized(b),
            ApiError::Conflict(b) => Self::BadRequest(b),
            ApiError::Unavailable(b) => Self::Unavailable(b),
            ApiError::Internal(b) => Self::Internal(b),
        }
    }
}

impl From<sqlx::Error> for InternalError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The caller, once authenticated: what it may handle, and where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub kinds: Vec<String>,
    /// Département codes as `DepartementCode::as_str` writes them (`33`, `2A`).
    pub departements: Vec<String>,
}

/// The guard's first half, before anything else is looked up: an active caller whose token
/// matches. [`territory`] then checks the département, [`allow`] the document's kind.
async fn authenticate(platform: &Platform, token: &ServiceToken) -> Result<Caller, InternalError> {
    let row: Option<(String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT name, kinds, departements FROM platform.internal_callers
         WHERE token_sha256 = $1 AND active",
    )
    .bind(token_hash(&token.0.token))
    .fetch_optional(platform.platform_pool())
    .await?;
    let (name, kinds, departements) = row.ok_or_else(|| {
        InternalError::Unauthorized(body(
            "unauthorized",
            "jeton de service inconnu ou désactivé",
        ))
    })?;
    Ok(Caller {
        name,
        kinds,
        departements,
    })
}

/// The guard's last half: the caller may handle documents of `kind`.
fn allow(caller: &Caller, kind: &str) -> Result<(), InternalError> {
    if caller.kinds.iter().any(|k| k == kind) {
        return Ok(());
    }
    tracing::info!(caller = %caller.name, kind, "internal documents: kind denied");
    Err(InternalError::Forbidden(body(
        "forbidden",
        format!("ce service ne peut pas traiter les documents « {kind} »"),
    )))
}

/// The territory of the path, if the caller is granted it. A territory not granted answers
/// `not_found` exactly as a missing document or tenant would: a caller learns nothing of
/// territories it may not reach.
async fn territory(
    platform: &Platform,
    caller: &Caller,
    departement: &str,
    not_found: &str,
) -> Result<(DepartementCode, Territory), InternalError> {
    let code = DepartementCode::parse(departement).map_err(ApiError::from)?;
    if !caller.departements.iter().any(|d| d == code.as_str()) {
        tracing::info!(caller = %caller.name, departement = code.as_str(), "internal documents: territory denied");
        return Err(InternalError::NotFound(body("not_found", not_found)));
    }
    let ctx = platform
        .tenancy
        .unguarded(code)
        .await
        .map_err(ApiError::from)?;
    Ok((code, ctx))
}

async fn tenant_in(
    platform: &Platform,
    departement: DepartementCode,
    tenant: TenantId,
) -> Result<(), InternalError> {
    let found: Option<bool> = sqlx::query_scalar(
        "SELECT true FROM platform.tenants WHERE id = $1 AND departement_code = $2",
    )
    .bind(tenant)
    .bind(departement.as_str())
    .fetch_optional(platform.platform_pool())
    .await?;
    found
        .map(|_| ())
        .ok_or_else(|| InternalError::NotFound(body("not_found", TENANT_NOT_FOUND)))
}

fn retention(value: &str) -> Result<Retention, InternalError> {
    match value {
        "mandate_archive" => Ok(Retention::MandateArchive),
        other => other
            .strip_prefix("days:")
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|d| (1..=3650).contains(d))
            .map(Retention::Days)
            .ok_or_else(|| {
                InternalError::BadRequest(body(
                    "bad_request",
                    "retention : « mandate_archive » ou « days:N » avec N entre 1 et 3650",
                ))
            }),
    }
}

/// A stored document's metadata.
#[derive(Debug, Object)]
pub struct DocumentOut {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub content_type: String,
    pub size_bytes: i64,
}

/// A short-lived download link.
#[derive(Debug, Object)]
pub struct LinkOut {
    /// Path and query on the platform (signed, expiring).
    pub url: String,
    pub expires_at: String,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<DocumentOut>),
}

pub struct InternalDocumentsApi {
    pub vault: Vault,
}

async fn metadata(ctx: &Territory, id: Uuid) -> Result<DocumentOut, InternalError> {
    let mut tx = ctx.begin().await?;
    let row: Option<(TenantId, String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, kind, content_type, size_bytes FROM documents
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let (tenant_id, kind, content_type, size_bytes) =
        row.ok_or_else(|| InternalError::NotFound(body("not_found", DOCUMENT_NOT_FOUND)))?;
    Ok(DocumentOut {
        id,
        tenant_id: tenant_id.as_uuid(),
        kind,
        content_type,
        size_bytes,
    })
}

#[OpenApi]
impl InternalDocumentsApi {
    /// Stores a document (PDF, PNG or JPEG, 10 MB at most; the type is read from the content),
    /// encrypted with the tenant's key.
    #[oai(path = "/departements/:departement/documents", method = "post")]
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        platform: Data<&Platform>,
        auth: ServiceToken,
        departement: Path<String>,
        /// The tenant (département council or commune) owning the document.
        tenant: Query<Uuid>,
        /// `attestation`, `court_decision`, `structure_document`, `habilitation_certificate`…
        #[oai(validator(pattern = "^[a-z0-9_]{1,40}$"))]
        kind: Query<String>,
        /// `mandate_archive` or `days:N`.
        retention: Query<String>,
        content: Binary<Vec<u8>>,
    ) -> Result<Created, InternalError> {
        let caller = authenticate(&platform, &auth).await?;
        allow(&caller, &kind)?;
        let retention = self::retention(&retention)?;
        let (code, ctx) = territory(&platform, &caller, &departement, TENANT_NOT_FOUND).await?;
        let tenant = TenantId::from_uuid(*tenant);
        tenant_in(&platform, code, tenant).await?;
        let mut conn = platform.platform_pool().acquire().await?;
        let id = self
            .vault
            .put(&ctx, &mut conn, tenant, &kind, &content, retention)
            .await?;
        tracing::info!(caller = %caller.name, kind = %*kind, "internal documents: stored");
        Ok(Created::Created(Json(metadata(&ctx, id).await?)))
    }

    /// A stored document's metadata.
    #[oai(path = "/departements/:departement/documents/:id", method = "get")]
    async fn describe(
        &self,
        platform: Data<&Platform>,
        auth: ServiceToken,
        departement: Path<String>,
        id: Path<Uuid>,
    ) -> Result<Json<DocumentOut>, InternalError> {
        let caller = authenticate(&platform, &auth).await?;
        let (_, ctx) = territory(&platform, &caller, &departement, DOCUMENT_NOT_FOUND).await?;
        let document = metadata(&ctx, *id).await?;
        allow(&caller, &document.kind)?;
        Ok(Json(document))
    }

    /// A signed download link, valid `seconds` (300 by default, 900 at most), to hand to the
    /// person entitled to the document.
    #[oai(
        path = "/departements/:departement/documents/:id/link",
        method = "post"
    )]
    async fn link(
        &self,
        platform: Data<&Platform>,
        auth: ServiceToken,
        departement: Path<String>,
        id: Path<Uuid>,
        /// Lifetime of the link, 1 to 900 seconds (300 when absent).
        #[oai(validator(minimum(value = "1"), maximum(value = "900")))]
        seconds: Query<Option<i64>>,
    ) -> Result<Json<LinkOut>, InternalError> {
        let caller = authenticate(&platform, &auth).await?;
        let (code, ctx) = territory(&platform, &caller, &departement, DOCUMENT_NOT_FOUND).await?;
        let document = metadata(&ctx, *id).await?;
        allow(&caller, &document.kind)?;
        let seconds = seconds.unwrap_or(LINK_DEFAULT_SECONDS);
        if !(1..=LINK_MAX_SECONDS).contains(&seconds) {
            return Err(InternalError::BadRequest(body(
                "bad_request",
                format!("seconds : entre 1 et {LINK_MAX_SECONDS}"),
            )));
        }
        let now = OffsetDateTime::now_utc();
        let ttl = time::Duration::seconds(seconds);
        let expires = now + ttl;
        Ok(Json(LinkOut {
            url: self.vault.link(code.as_str(), *id, ttl, now),
            expires_at: expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }))
    }
}
