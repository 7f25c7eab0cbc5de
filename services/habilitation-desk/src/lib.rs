//! Habilitation desk: structures' requests, review, rollout waves, training, Pix, charter,
//! professional accounts and login, référent space, and the registry of habilitated places.

/// The professional's own space: account, structure switch, activity re-check.
pub mod account;
/// Professional accounts: creation, roles, enrolment links, deactivation.
pub mod accounts;
/// Second-factor enrolment from the activation link.
pub mod enrolment;
/// Login with e-mail, TOTP code and magic link; logout.
pub mod login;
/// National team pages: card import.
pub mod national;
/// A professional replacing their own authenticator app.
pub mod own_factor;
/// Open data: the habilitated places of a territory.
pub mod places;
/// Référent pages: aidants' second factors.
pub mod referent;
/// Structures' habilitation requests: the national team's weekly digest.
pub mod requests;
/// Structures of a territory (created by operators until the request flow exists).
pub mod structures;
/// Page templates and helpers.
mod views;

use std::sync::Arc;

use foundation::app::{Platform, ServiceParts};
use foundation::config::Settings;
use poem::{EndpointExt, get, post};
use poem_openapi::OpenApiService;

/// The desk's routes, readiness checks and workers.
pub async fn parts(_platform: &Platform) -> anyhow::Result<ServiceParts> {
    let api = OpenApiService::new(
        places::PlacesApi,
        "Aidants Connect — guichet d'habilitation",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/habilitation");
    let document = api.spec();
    let spec = api.spec_endpoint();
    Ok(ServiceParts {
        api_specs: vec![document],
        internal: Vec::new(),
        name: "habilitation-desk",
        pages: vec![
            ("/connexion", get(login::form).post(login::submit).boxed()),
            (
                "/connexion/lien",
                get(login::link).post(login::consume_link).boxed(),
            ),
            ("/deconnexion", post(login::logout).boxed()),
            ("/compte", get(account::page).boxed()),
            ("/compte/structure", post(account::switch_structure).boxed()),
            (
                "/compte/verification",
                get(account::recheck_form).post(account::recheck).boxed(),
            ),
            (
                "/activation",
                get(enrolment::start_page).post(enrolment::start).boxed(),
            ),
            ("/activation/confirmation", post(enrolment::confirm).boxed()),
            (
                "/compte/second-facteur",
                get(own_factor::form).post(own_factor::start).boxed(),
            ),
            (
                "/compte/second-facteur/confirmation",
                post(own_factor::confirm).boxed(),
            ),
            ("/referent/aidants", get(referent::aidants).boxed()),
            ("/referent/aidants/carte", post(referent::link_card).boxed()),
            (
                "/referent/aidants/retirer-carte",
                post(referent::unlink_card).boxed(),
            ),
            (
                "/referent/aidants/debloquer",
                post(referent::unblock).boxed(),
            ),
            (
                "/referent/aidants/resynchroniser",
                post(referent::resync).boxed(),
            ),
            (
                "/referent/aidants/activation",
                post(referent::send_activation).boxed(),
            ),
            (
                "/national/cartes",
                get(national::form).post(national::import).boxed(),
            ),
        ],
        routes: vec![
            (
                "/api/habilitation/openapi.json",
                spec.map_to_response().boxed(),
            ),
            ("/api/habilitation", api.map_to_response().boxed()),
        ],
        readiness: Vec::<Arc<dyn foundation::health::ReadinessCheck>>::new(),
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
        jobs: vec![requests::weekly_digest()],
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
