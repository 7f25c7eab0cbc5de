//! Habilitation desk: structures' requests, review, rollout waves, training, Pix, charter,
//! professional accounts and login, référent space, and the registry of habilitated places.

/// Open data: the habilitated places of a territory.
pub mod places;
/// Structures of a territory (created by operators until the request flow exists).
pub mod structures;

use std::sync::Arc;

use foundation::app::{Platform, ServiceParts};
use foundation::config::Settings;
use poem::EndpointExt;
use poem_openapi::OpenApiService;

/// The desk's routes, readiness checks and workers.
pub async fn parts(_platform: &Platform) -> anyhow::Result<ServiceParts> {
    let api = OpenApiService::new(
        places::PlacesApi,
        "Aidants Connect — guichet d'habilitation",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/habilitation");
    let spec = api.spec_endpoint();
    Ok(ServiceParts {
        name: "habilitation-desk",
        routes: vec![
            (
                "/api/habilitation/openapi.json",
                spec.map_to_response().boxed(),
            ),
            ("/api/habilitation", api.map_to_response().boxed()),
        ],
        readiness: Vec::<Arc<dyn foundation::health::ReadinessCheck>>::new(),
        workers: Vec::new(),
    })
}

/// The desk as a standalone service.
pub struct Application;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<foundation::app::Application> {
        let platform = Platform::connect(settings).await?;
        let parts = parts(&platform).await?;
        foundation::app::Application::start(platform, vec![parts]).await
    }
}
