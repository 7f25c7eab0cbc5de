//! Mandate service: usagers, mandates, the FranceConnect client, attestations, the territory
//! journal's checkpoints, the aidant's space, and the OpenID Connect identity provider through
//! which FranceConnect uses a mandate. (Judicial measures and usager self-service come with
//! their own issues.)

/// Printable attestations (PDF).
pub mod attestation;
/// The fixed list of démarche categories.
pub mod categories;
/// The platform as a FranceConnect client.
pub mod franceconnect;
/// The platform as an OpenID Connect identity provider.
pub mod idp;
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
    let provider = idp::Provider::new(platform)?;
    // A first start creates the ES256 signing key (RS256 keys come with the first client that
    // asks for them: `tenant-admin idp client add --alg RS256`).
    idp::keys::ensure(
        platform.platform_pool(),
        provider.keys.cipher(),
        idp::keys::Alg::Es256,
    )
    .await?;
    provider.keys.reload().await?;
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
        (
            "/usagers/:id/coordonnees",
            post(web::usager_contact).boxed(),
        ),
        ("/activite", get(web::activity).boxed()),
        ("/courriers", get(web::letters).data(shared.clone()).boxed()),
        ("/verifier/:dep/:id/:token", get(web::verify).boxed()),
        (
            "/.well-known/openid-configuration",
            get(idp::discovery).data(provider.clone()).boxed(),
        ),
        ("/oidc/jwks", get(idp::jwks).data(provider.clone()).boxed()),
        (
            "/oidc/authorize",
            get(idp::interaction::authorize)
                .post(idp::interaction::authorize_post)
                .data(provider.clone())
                .boxed(),
        ),
        (
            "/oidc/choix",
            post(idp::interaction::decide)
                .data(provider.clone())
                .boxed(),
        ),
        (
            "/oidc/token",
            post(idp::tokens::token).data(provider.clone()).boxed(),
        ),
        (
            "/oidc/userinfo",
            get(idp::tokens::userinfo)
                .post(idp::tokens::userinfo)
                .data(provider.clone())
                .boxed(),
        ),
        (
            "/oidc/session/end",
            get(idp::tokens::end_session).data(provider.clone()).boxed(),
        ),
    ];
    Ok(ServiceParts {
        api_specs: Vec::new(),
        internal: Vec::new(),
        name: "mandate-service",
        pages,
        routes: Vec::new(),
        readiness: Vec::new(),
        workers: Vec::new(),
        // Called by FranceConnect's servers (token, userinfo) or posted from its pages
        // (authorize, answered by a GET): no platform CSRF token can be there.
        csrf_exempt: vec!["/oidc/authorize", "/oidc/token", "/oidc/userinfo"],
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
