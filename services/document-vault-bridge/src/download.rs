//! `GET /documents/{departement}/{id}?expire=…&signature=…`: serves a document through a
//! short-lived signed link, decrypted on the way out, never cached.

use foundation::app::Platform;
use foundation::tenancy::DepartementCode;
use foundation::web::PageResult;
use poem::http::{StatusCode, header};
use poem::web::{Data, Path, Query};
use poem::{Response, handler};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::{Vault, VaultError};

#[derive(Deserialize)]
pub struct LinkQuery {
    expire: Option<i64>,
    signature: Option<String>,
}

fn status(e: &VaultError) -> StatusCode {
    match e {
        VaultError::InvalidLink => StatusCode::FORBIDDEN,
        VaultError::NotFound => StatusCode::NOT_FOUND,
        VaultError::Unavailable | VaultError::Database => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        VaultError::UnsupportedType => StatusCode::BAD_REQUEST,
    }
}

#[handler]
pub async fn download(
    platform: Data<&Platform>,
    vault: Data<&Vault>,
    Path((departement, id)): Path<(String, String)>,
    Query(q): Query<LinkQuery>,
) -> PageResult<Response> {
    let fail = |e: VaultError| poem::Error::from_status(status(&e));
    let departement =
        DepartementCode::parse(&departement).map_err(|_| fail(VaultError::NotFound))?;
    let id = Uuid::parse_str(&id).map_err(|_| fail(VaultError::NotFound))?;
    vault
        .check_link(
            departement.as_str(),
            id,
            q.expire.unwrap_or_default(),
            q.signature.as_deref().unwrap_or_default(),
            OffsetDateTime::now_utc(),
        )
        .map_err(fail)?;
    let territory = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(|_| fail(VaultError::Unavailable))?;
    let mut conn = platform
        .platform_pool()
        .acquire()
        .await
        .map_err(|_| fail(VaultError::Unavailable))?;
    let (content_type, bytes) = vault.get(&territory, &mut conn, id).await.map_err(fail)?;
    Ok(Response::builder()
        .content_type(content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"document-{id}\""),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(bytes))
}
