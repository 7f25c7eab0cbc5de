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

use foundation::app::{Access, Mount, Page, Platform, ServiceParts};
use foundation::config::Settings;
use poem_openapi::OpenApiService;
use policies::Action;

/// The desk's routes, readiness checks and workers.
pub async fn parts(_platform: &Platform) -> anyhow::Result<ServiceParts> {
    let api = OpenApiService::new(
        places::PlacesApi,
        "Aidants Connect — guichet d'habilitation",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/habilitation");
    // Each page's guard is the check its handler makes first (see `Access`).
    let factor = Access::Permission(Action::FactorManage);
    // Acting on an aidant's factor asks for a recent code, like mandate actions.
    let factor_action = Access::RecentPermission(Action::FactorManage);
    Ok(ServiceParts {
        internal: Vec::new(),
        name: "habilitation-desk",
        pages: vec![
            Page::at("/connexion")
                .get(Access::Public, login::form)
                .post(Access::Public, login::submit),
            Page::at("/connexion/lien")
                .get(Access::Link, login::link)
                .post(Access::Link, login::consume_link),
            Page::at("/deconnexion").post(Access::Session, login::logout),
            Page::at("/compte").get(Access::Session, account::page),
            Page::at("/compte/structure").post(Access::Session, account::switch_structure),
            Page::at("/compte/verification")
                .get(Access::Session, account::recheck_form)
                .post(Access::Session, account::recheck),
            Page::at("/activation")
                .get(Access::Link, enrolment::start_page)
                .post(Access::Link, enrolment::start),
            Page::at("/activation/confirmation").post(Access::Link, enrolment::confirm),
            Page::at("/compte/second-facteur")
                .get(Access::Session, own_factor::form)
                .post(Access::Session, own_factor::start),
            Page::at("/compte/second-facteur/confirmation")
                .post(Access::Session, own_factor::confirm),
            Page::at("/referent/aidants").get(factor, referent::aidants),
            Page::at("/referent/aidants/carte").post(factor_action, referent::link_card),
            Page::at("/referent/aidants/retirer-carte").post(factor_action, referent::unlink_card),
            Page::at("/referent/aidants/debloquer").post(factor_action, referent::unblock),
            Page::at("/referent/aidants/resynchroniser").post(factor_action, referent::resync),
            Page::at("/referent/aidants/activation").post(factor_action, referent::send_activation),
            Page::at("/national/cartes")
                .get(Access::Permission(Action::CardImport), national::form)
                .post(Access::Permission(Action::CardImport), national::import),
        ],
        routes: vec![Mount::openapi("/api/habilitation", Access::Public, api)],
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
