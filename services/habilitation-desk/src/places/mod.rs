//! Open data: the habilitated places — the active structures — of a territory, or of every
//! served territory, in the national « Lieux de médiation numérique » schema (version 1.0.1), as
//! JSON and as the schema's CSV. No personal data: structures, communes, labels. The mapping is
//! in `lieu`, the CSV in `csv`, the whole explained in docs/OPEN_DATA.md.
//!
//! - `GET /api/habilitation/departements/{code}/lieux` and `…/lieux.csv`: one territory (an
//!   unknown code answers 404, a territory not served 503);
//! - `GET /api/habilitation/lieux` and `/lieux.csv`: every served territory, in code order.

pub mod csv;
pub mod lieu;

use std::collections::HashMap;

use foundation::api::ApiError;
use foundation::app::Platform;
use foundation::tenancy::DepartementCode;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};

use lieu::{CommuneRef, Lieu, StructureRow};

pub struct PlacesApi;

/// The places as the schema's CSV.
#[derive(Debug, ApiResponse)]
pub enum CsvOut {
    /// The places as CSV: UTF-8, comma-separated, every cell quoted, the schema's header in its
    /// order, multiple values separated by `|`; a text cell starting with `=`, `+`, `-`, `@`,
    /// TAB or CR has a leading `'` (never read as a formula).
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(
        PlainText<String>,
        /// `attachment; filename="lieux-de-mediation-numerique_<territoire>.csv"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

impl CsvOut {
    fn of(lieux: &[Lieu], territory: &str) -> Self {
        Self::Ok(
            PlainText(csv::render(lieux)),
            format!("attachment; filename=\"lieux-de-mediation-numerique_{territory}.csv\""),
        )
    }
}

#[OpenApi]
impl PlacesApi {
    /// Habilitated places of a département, in the national « lieux de médiation numérique »
    /// schema (1.0.1), as JSON.
    #[oai(path = "/departements/:code/lieux", method = "get")]
    async fn list_places(
        &self,
        platform: Data<&Platform>,
        /// INSEE code of the département (`33`, `2A`, `971`).
        code: Path<String>,
    ) -> Result<Json<Vec<Lieu>>, ApiError> {
        let departement = DepartementCode::parse(&code)?;
        Ok(Json(lieux_of(&platform, departement).await?))
    }

    /// Habilitated places of a département, as the schema's CSV.
    #[oai(path = "/departements/:code/lieux.csv", method = "get")]
    async fn list_places_csv(
        &self,
        platform: Data<&Platform>,
        /// INSEE code of the département (`33`, `2A`, `971`).
        code: Path<String>,
    ) -> Result<CsvOut, ApiError> {
        let departement = DepartementCode::parse(&code)?;
        let lieux = lieux_of(&platform, departement).await?;
        Ok(CsvOut::of(&lieux, departement.as_str()))
    }

    /// Habilitated places of every served territory, in département order, as JSON.
    #[oai(path = "/lieux", method = "get")]
    async fn national_places(
        &self,
        platform: Data<&Platform>,
    ) -> Result<Json<Vec<Lieu>>, ApiError> {
        Ok(Json(national(&platform).await?))
    }

    /// Habilitated places of every served territory, as the schema's CSV.
    #[oai(path = "/lieux.csv", method = "get")]
    async fn national_places_csv(&self, platform: Data<&Platform>) -> Result<CsvOut, ApiError> {
        let lieux = national(&platform).await?;
        Ok(CsvOut::of(&lieux, "national"))
    }
}

/// Every served territory's places, one territory after the other: each is read through its
/// own role, as everywhere else, so this costs what the outbox sweep already does.
pub async fn national(platform: &Platform) -> Result<Vec<Lieu>, ApiError> {
    let mut all = Vec::new();
    for departement in platform.tenancy.served() {
        all.extend(lieux_of(platform, departement).await?);
    }
    Ok(all)
}

/// The places of one territory, by name. Structures the schema cannot describe (no address,
/// a commune unknown to the reference data) are left out.
pub async fn lieux_of(
    platform: &Platform,
    departement: DepartementCode,
) -> Result<Vec<Lieu>, ApiError> {
    let tenant = platform.tenancy.unguarded(departement).await?;
    let mut tx = tenant.begin().await?;
    let structures: Vec<StructureRow> = sqlx::query_as(
        "SELECT id, name, kind, siret, address, commune_code, postal_code, france_services,
                mission, opening_hours, created_at
         FROM structures WHERE active ORDER BY name, id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut codes: Vec<&str> = structures.iter().map(|s| s.commune_code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let communes: Vec<CommuneRef> = sqlx::query_as(
        "SELECT code, name, postal_codes FROM platform.communes WHERE code = ANY($1)",
    )
    .bind(&codes)
    .fetch_all(platform.platform_pool())
    .await?;
    let communes: HashMap<&str, &CommuneRef> =
        communes.iter().map(|c| (c.code.as_str(), c)).collect();

    let mut lieux = Vec::with_capacity(structures.len());
    for s in &structures {
        match lieu::lieu(s, communes.get(s.commune_code.as_str()).copied()) {
            Ok(l) => lieux.push(l),
            Err(why) => {
                tracing::debug!(structure = %s.id, reason = ?why, "structure left out of the open data");
            }
        }
    }
    Ok(lieux)
}
