//! `GET /api/habilitation/departements/{code}/lieux`: the active structures of a territory, as
//! open data (no personal data: names of structures, communes, labels).

use foundation::api::ApiError;
use foundation::app::Platform;
use foundation::tenancy::DepartementCode;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

pub struct PlacesApi;

/// A habilitated place.
#[derive(Debug, Object, sqlx::FromRow)]
pub struct PlaceOut {
    pub id: Uuid,
    pub name: String,
    /// Structure type (mairie, ccas, france_services, association…).
    pub kind: String,
    /// INSEE code of the commune.
    pub commune_code: String,
    pub address: String,
    pub france_services: bool,
}

#[derive(Debug, Object)]
pub struct PlacesOut {
    /// INSEE code of the département.
    pub departement: String,
    pub places: Vec<PlaceOut>,
}

#[OpenApi]
impl PlacesApi {
    /// Habilitated places of a département (open data).
    #[oai(path = "/departements/:code/lieux", method = "get")]
    async fn list_places(
        &self,
        platform: Data<&Platform>,
        code: Path<String>,
    ) -> Result<Json<PlacesOut>, ApiError> {
        let departement = DepartementCode::parse(&code)?;
        let tenant = platform.tenancy.context(departement).await?;
        let mut tx = tenant.begin().await?;
        let places = sqlx::query_as::<_, PlaceOut>(
            "SELECT id, name, kind, commune_code, address, france_services
             FROM structures WHERE active ORDER BY name, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Json(PlacesOut {
            departement: departement.to_string(),
            places,
        }))
    }
}
