//! `GET /api/habilitation/demandes` and `…/demandes/{reference}`: the issuer's requests and the
//! state of one, for the issuer signed in on the desk (issuer session cookie). Without a
//! session: 401; another issuer's request, or a reference that names nothing: 404.

use foundation::api::ApiError;
use foundation::app::Platform;
use foundation::tenancy::DepartementCode;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::issuer;
use crate::requests::{self, Status};

pub struct RequestsApi;

/// The state of one structure request.
#[derive(Debug, Object)]
pub struct RequestStatusOut {
    /// Reference of the request (`HAB-<département>-<8 characters>`).
    pub reference: String,
    /// INSEE code of the request's département.
    pub departement: String,
    pub structure_name: String,
    /// draft, waiting, submitted, changes_requested, amended, accepted, refused or withdrawn.
    pub status: String,
    /// The state in French.
    pub status_label: String,
    #[oai(skip_serializing_if_is_none)]
    pub submitted_at: Option<OffsetDateTime>,
    #[oai(skip_serializing_if_is_none)]
    pub decided_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
    /// Messages in the request's thread.
    pub messages: i64,
}

#[derive(Debug, Object)]
pub struct RequestsOut {
    pub requests: Vec<RequestStatusOut>,
}

#[derive(sqlx::FromRow)]
struct Row {
    reference: String,
    structure_name: String,
    status: String,
    first_submitted_at: Option<OffsetDateTime>,
    decided_at: Option<OffsetDateTime>,
    updated_at: OffsetDateTime,
    messages: i64,
}

/// A read of an issuer's requests, as one static string: the columns and joins, then `$tail`.
macro_rules! rows_sql {
    ($tail:literal) => {
        concat!(
            "SELECT reference, structure_name, status, first_submitted_at, decided_at, updated_at,
        (SELECT count(*) FROM request_messages m WHERE m.request_id = r.id) AS messages
     FROM structure_requests r",
            " ",
            $tail
        )
    };
}

fn out(d: DepartementCode, r: Row) -> RequestStatusOut {
    let status = Status::parse(&r.status).unwrap_or(Status::Draft);
    RequestStatusOut {
        reference: r.reference,
        departement: d.as_str().to_owned(),
        structure_name: r.structure_name,
        status: status.as_str().to_owned(),
        status_label: status.label().to_owned(),
        submitted_at: r.first_submitted_at,
        decided_at: r.decided_at,
        updated_at: r.updated_at,
        messages: r.messages,
    }
}

async fn signed_in(req: &Request, platform: &Platform) -> Result<issuer::Issuer, ApiError> {
    issuer::lookup(req, platform).await?.ok_or_else(|| {
        ApiError::unauthorized(
            "Confirmez votre adresse e-mail sur /demande pour consulter vos demandes.",
        )
    })
}

#[OpenApi]
impl RequestsApi {
    /// The signed-in issuer's structure requests.
    #[oai(path = "/demandes", method = "get")]
    async fn list(
        &self,
        req: &Request,
        platform: Data<&Platform>,
    ) -> Result<Json<RequestsOut>, ApiError> {
        let me = signed_in(req, &platform).await?;
        let places: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT departement_code, request_id FROM platform.request_index WHERE issuer_id = $1 ORDER BY 1",
        )
        .bind(me.id)
        .fetch_all(platform.platform_pool())
        .await?;
        let mut by_dep: std::collections::BTreeMap<String, Vec<Uuid>> = Default::default();
        for (d, id) in places {
            by_dep.entry(d).or_default().push(id);
        }
        let mut list = Vec::new();
        for (code, ids) in by_dep {
            let d = DepartementCode::parse(&code)?;
            let tenant = platform.tenancy.unguarded(d).await?;
            let mut tx = tenant.begin().await?;
            let rows: Vec<Row> = sqlx::query_as(rows_sql!(
                "WHERE r.id = ANY($1) AND r.issuer_id = $2 ORDER BY r.updated_at DESC"
            ))
            .bind(&ids)
            .bind(me.id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            list.extend(rows.into_iter().map(|r| out(d, r)));
        }
        Ok(Json(RequestsOut { requests: list }))
    }

    /// The state of one of the signed-in issuer's requests.
    #[oai(path = "/demandes/:reference", method = "get")]
    async fn one(
        &self,
        req: &Request,
        platform: Data<&Platform>,
        reference: Path<String>,
    ) -> Result<Json<RequestStatusOut>, ApiError> {
        let me = signed_in(req, &platform).await?;
        let unknown = || ApiError::not_found("Aucune de vos demandes ne porte cette référence.");
        let d = requests::departement_of(&reference).ok_or_else(unknown)?;
        let tenant = platform.tenancy.unguarded(d).await?;
        let mut tx = tenant.begin().await?;
        let row: Option<Row> =
            sqlx::query_as(rows_sql!("WHERE r.reference = $1 AND r.issuer_id = $2"))
                .bind(&*reference)
                .bind(me.id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        row.map(|r| Json(out(d, r))).ok_or_else(unknown)
    }
}
