//! Mandate service: usagers, mandates, the FranceConnect client, attestations, the territory
//! journal's checkpoints and the aidant's space. (The identity provider, judicial measures and
//! usager self-service come with their own issues.)

/// Printable attestations (PDF).
pub mod attestation;
/// The fixed list of démarche categories.
pub mod categories;
/// The platform as a FranceConnect client.
pub mod franceconnect;
/// Scheduled work: expiry reminders, journal checkpoints, purge of finished drafts.
pub mod jobs;
/// JSON Web Signatures (ES256 / RS256).
pub mod jws;
/// The mandate rules.
pub mod mandates;
/// The request's current structure and territory.
pub mod scope;
/// The pages.
pub mod web;

use async_trait::async_trait;
use foundation::app::{Platform, ServiceParts};
use foundation::auth::guard::ForWhom;
use foundation::config::Settings;
use poem::{EndpointExt, get, post};
use uuid::Uuid;

/// The "for whom" check of the guard: a live authorisation of the structure for this usager and
/// category, read in the structure's territory.
#[derive(Clone)]
pub struct LiveMandates {
    pub platform: Platform,
}

#[async_trait]
impl ForWhom for LiveMandates {
    async fn covers(
        &self,
        structure: Uuid,
        usager: Uuid,
        category: &str,
    ) -> Result<bool, sqlx::Error> {
        let Some(departement) = foundation::auth::assignments::structure_departement(
            self.platform.platform_pool(),
            structure,
        )
        .await?
        else {
            return Ok(false);
        };
        let Ok(tenant) = self.platform.tenancy.context(departement).await else {
            return Ok(false);
        };
        let mut tx = tenant.begin().await?;
        let covered = mandates::covers(&mut tx, structure, usager, category).await?;
        tx.commit().await?;
        Ok(covered)
    }
}

/// The mandate service's routes, readiness checks and workers.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let settings = &platform.settings;
    let shared = web::Shared {
        fc: franceconnect::FcClient::new(&settings.franceconnect, &settings.http.public_origin()),
        vault: document_vault_bridge::vault(platform).await?,
        public_origin: settings.http.public_origin(),
    };
    let key = foundation::journal::CheckpointKey::from_base64(
        secrecy::ExposeSecret::expose_secret(&settings.security.journal_signing_key),
    )?;
    let pages = vec![
        ("/mandats", get(web::list).data(shared.clone()).boxed()),
        (
            "/mandats/nouveau",
            get(web::new_form)
                .post(web::new_submit)
                .data(shared.clone())
                .boxed(),
        ),
        (
            "/mandats/franceconnect/retour",
            get(web::fc_callback).data(shared.clone()).boxed(),
        ),
        (
            "/mandats/franceconnect/deconnexion",
            get(web::fc_logged_out).boxed(),
        ),
        (
            "/mandats/preparation/:id",
            get(web::recap)
                .post(web::confirm)
                .data(shared.clone())
                .boxed(),
        ),
        (
            "/mandats/preparation/:id/termine",
            get(web::draft_completed).boxed(),
        ),
        ("/mandats/export.csv", get(web::export).boxed()),
        ("/mandats/:id", get(web::show).data(shared.clone()).boxed()),
        (
            "/mandats/:id/revocation",
            post(web::revoke).data(shared.clone()).boxed(),
        ),
        ("/mandats/:id/renouvellement", post(web::renew).boxed()),
        (
            "/mandats/:id/attestation",
            post(web::attestation_retry).data(shared.clone()).boxed(),
        ),
        ("/mandats/:id/explication", get(web::explanation).boxed()),
        ("/usagers/:id", get(web::usager_page).boxed()),
        ("/activite", get(web::activity).boxed()),
        ("/verifier/:dep/:id/:token", get(web::verify).boxed()),
    ];
    Ok(ServiceParts {
        name: "mandate-service",
        pages,
        routes: Vec::new(),
        readiness: Vec::new(),
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
        jobs: vec![
            jobs::expiry_reminders(),
            jobs::journal_checkpoints(key),
            jobs::purge_drafts(),
        ],
    })
}

/// The mandate service as a standalone process.
pub struct Application;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<foundation::app::Application> {
        let platform = Platform::connect(settings).await?;
        let parts = parts(&platform).await?;
        foundation::app::Application::start(platform, vec![parts]).await
    }
}
