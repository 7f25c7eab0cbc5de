//! Mandate service: usagers, mandates, the FranceConnect client, attestations, the territory
//! journal's checkpoints, the aidant's space, and the OpenID Connect identity provider through
//! which FranceConnect uses a mandate. (Judicial measures and usager self-service come with
//! their own issues.)

/// Attestations: producing and recording them, their PDF, their verification link.
pub mod attestation;
/// How a usager is reached: contact rules and the channel of a receipt.
pub mod contact;
/// Where attestations are kept: the vault in process, or the vault service over HTTP.
pub mod documents;
/// The fixed list of démarche categories (held by `foundation`, which the desk's territory
/// pages read too).
pub use foundation::categories;
/// The explanation of a mandate in FALC French and six languages, and its read-out.
pub mod explanation;
/// The platform as a FranceConnect client.
pub mod franceconnect;
/// The platform as an OpenID Connect identity provider.
pub mod idp;
/// Scheduled work: expiry reminders, journal checkpoints, purge of finished drafts.
pub mod jobs;
/// Judicial protection measures recorded by guardian services.
pub mod judicial;
/// JSON Web Signatures (ES256 / RS256).
pub mod jws;
/// The mandate rules.
pub mod mandates;
/// Remote consent: a mandate prepared by the aidant, consented to on the person's own device.
pub mod remote_consent;
/// Retention of mandate data: archive, purge, erasure of usagers.
pub mod retention;
/// The request's current structure and territory.
pub mod scope;
/// The référent's choice of the démarches the structure handles.
pub mod structure_demarches;
/// Transfer of a mandate to another structure, with the person's renewed consent.
pub mod transfers;
/// The usager's own space: the index of where a person holds mandates, their sessions.
pub mod usager_space;
/// The aidant's pages, by resource.
pub mod web;

use foundation::app::{Access, Page, Platform, ServiceParts};
use foundation::config::Settings;
use poem::EndpointExt;
use policies::Action;

/// The mandate service's routes, readiness checks and workers.
pub async fn parts(platform: &Platform) -> anyhow::Result<ServiceParts> {
    let settings = &platform.settings;
    let shared = web::Shared {
        fc: franceconnect::FcClient::new(&settings.franceconnect, &settings.http.public_origin()),
        documents: documents::Documents::from_platform(platform).await?,
        public_origin: settings.http.public_origin(),
    };
    let usager_fc = web::usager_space::UsagerFc(franceconnect::FcClient::at(
        &settings.franceconnect,
        &settings.http.public_origin(),
        "/mes-mandats/franceconnect",
    ));
    let consent_fc = web::consent::ConsentFc(franceconnect::FcClient::at(
        &settings.franceconnect,
        &settings.http.public_origin(),
        "/consentement/franceconnect",
    ));
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
    // Each page's guard is the check its handler makes first (see `Access`).
    let permission = Access::Permission;
    let recent = Access::RecentPermission;
    let pages = vec![
        Page::at("/mandats").get(
            permission(Action::MandateList),
            web::list::list.data(shared.clone()),
        ),
        Page::at("/mandats/nouveau")
            .get(
                recent(Action::MandateCreate),
                web::creation::terms::new_form.data(shared.clone()),
            )
            .post(
                recent(Action::MandateCreate),
                web::creation::terms::new_submit.data(shared.clone()),
            ),
        Page::at("/mesures").get(permission(Action::MandateList), web::measures::list),
        Page::at("/mesures/passation")
            .post(recent(Action::MandateCreate), web::measures::hand_over),
        Page::at("/mesures/import")
            .get(recent(Action::MandateCreate), web::measure_import::new_form)
            .post(recent(Action::MandateCreate), web::measure_import::upload),
        Page::at("/mesures/import.js").get(Access::Public, web::measure_import::script),
        Page::at("/mesures/import/:id").get(
            permission(Action::MandateCreate),
            web::measure_import::import_state,
        ),
        Page::at("/mesures/import/:id/etat").get(
            permission(Action::MandateCreate),
            web::measure_import::import_progress,
        ),
        Page::at("/mesures/:id/decision")
            .get(
                permission(Action::MandateList),
                web::measure_decision::show.data(shared.clone()),
            )
            .post(
                recent(Action::MandateCreate),
                web::measure_decision::upload.data(shared.clone()),
            ),
        Page::at("/mesures/nouvelle")
            .get(recent(Action::MandateCreate), web::judicial::new_form)
            .post(
                recent(Action::MandateCreate),
                web::judicial::new_submit.data(shared.clone()),
            ),
        Page::at("/mandats/franceconnect/retour").get(
            Access::Session,
            web::creation::identification::fc_callback.data(shared.clone()),
        ),
        Page::at("/mandats/franceconnect/deconnexion").get(
            Access::Session,
            web::creation::identification::fc_logged_out,
        ),
        Page::at("/mandats/preparation/:id")
            .get(
                recent(Action::MandateCreate),
                web::creation::recap::recap.data(shared.clone()),
            )
            .post(
                recent(Action::MandateCreate),
                web::creation::recap::confirm.data(shared.clone()),
            ),
        Page::at("/mandats/preparation/:id/explication.wav").get(
            permission(Action::MandateCreate),
            web::creation::recap::read_aloud,
        ),
        Page::at("/mandats/preparation/:id/termine")
            .get(Access::Session, web::creation::recap::draft_completed),
        Page::at("/mandats/a-distance").get(permission(Action::MandateCreate), web::remote::list),
        Page::at("/mandats/a-distance/nouveau")
            .get(recent(Action::MandateCreate), web::remote::new_form)
            .post(
                recent(Action::MandateCreate),
                web::remote::prepare.data(shared.clone()),
            ),
        Page::at("/mandats/a-distance/:id")
            .get(permission(Action::MandateCreate), web::remote::show),
        Page::at("/mandats/a-distance/:id/renvoi").post(
            recent(Action::MandateCreate),
            web::remote::resend.data(shared.clone()),
        ),
        Page::at("/mandats/a-distance/:id/annulation")
            .post(recent(Action::MandateCreate), web::remote::cancel),
        Page::at("/consentement/franceconnect/retour").get(
            Access::Link,
            web::consent::callback.data(consent_fc.clone()),
        ),
        Page::at("/consentement/franceconnect/deconnexion")
            .get(Access::Link, web::consent::logged_out),
        Page::at("/consentement/:dep/:token")
            .get(Access::Link, web::consent::open)
            .post(Access::Link, web::consent::start.data(consent_fc.clone())),
        Page::at("/consentement/:dep/dossier/:id")
            .get(Access::Link, web::consent::recap)
            .post(Access::Link, web::consent::decide.data(shared.clone())),
        Page::at("/consentement/:dep/dossier/:id/explication.wav")
            .get(Access::Link, web::consent::audio),
        Page::at("/mandats/export.csv").post(permission(Action::MandateExport), web::list::export),
        Page::at("/mandats/:id").get(
            permission(Action::MandateList),
            web::mandate::show.data(shared.clone()),
        ),
        Page::at("/mandats/:id/revocation").post(
            recent(Action::MandateRevoke),
            web::mandate::revoke.data(shared.clone()),
        ),
        Page::at("/mandats/:id/renouvellement")
            .post(recent(Action::MandateRenew), web::mandate::renew),
        Page::at("/mandats/:id/attestation").post(
            recent(Action::MandateCreate),
            web::mandate::attestation_retry.data(shared.clone()),
        ),
        Page::at("/mandats/:id/explication")
            .get(permission(Action::MandateList), web::mandate::explanation),
        Page::at("/usagers/:id").get(permission(Action::UsagerRead), web::usager::usager_page),
        Page::at("/usagers/:id/coordonnees").post(
            permission(Action::UsagerContactUpdate),
            web::usager::usager_contact,
        ),
        Page::at("/activite").get(permission(Action::ActivityReadOwn), web::activity::activity),
        Page::at("/structure/demarches")
            .get(
                permission(Action::StructureSetDemarches),
                structure_demarches::form,
            )
            .post(
                recent(Action::StructureSetDemarches),
                structure_demarches::save,
            ),
        Page::at("/verifier/:dep/:id/:token").get(Access::Link, web::verification::verify),
        Page::at("/mes-mandats").get(Access::Public, web::usager_space::space),
        Page::at("/mes-mandats/connexion").get(
            Access::Public,
            web::usager_space::login.data(usager_fc.clone()),
        ),
        Page::at("/mes-mandats/franceconnect/retour")
            .get(Access::Link, web::usager_space::callback.data(usager_fc)),
        Page::at("/mes-mandats/franceconnect/deconnexion").get(
            Access::Public,
            web::usager_space::logged_out_of_franceconnect,
        ),
        Page::at("/mes-mandats/deconnexion").post(Access::Usager, web::usager_space::logout),
        Page::at("/mes-mandats/preferences").post(Access::Usager, web::usager_space::preferences),
        Page::at("/mes-mandats/:dep/:id/revocation")
            .get(Access::Usager, web::usager_space::revocation)
            .post(
                Access::Usager,
                web::usager_space::revoke.data(shared.clone()),
            ),
        Page::at("/mes-mandats/:dep/:id/explication")
            .get(Access::Usager, web::usager_space::explanation),
        Page::at("/mes-mandats/:dep/:id/explication.wav")
            .get(Access::Usager, web::usager_space::explanation_audio),
        Page::at("/.well-known/openid-configuration")
            .get(Access::Public, idp::discovery.data(provider.clone())),
        Page::at("/oidc/jwks").get(Access::Public, idp::jwks.data(provider.clone())),
        Page::at("/oidc/authorize")
            .get(
                Access::OidcRequest,
                idp::interaction::authorize.data(provider.clone()),
            )
            // The form variant only answers with the equivalent GET.
            .post(
                Access::Public,
                idp::interaction::authorize_post.data(provider.clone()),
            ),
        Page::at("/oidc/choix").post(
            Access::OidcRequest,
            idp::interaction::decide.data(provider.clone()),
        ),
        Page::at("/oidc/token").post(
            Access::OidcClient,
            idp::tokens::token.data(provider.clone()),
        ),
        Page::at("/oidc/userinfo")
            .get(
                Access::OidcToken,
                idp::tokens::userinfo.data(provider.clone()),
            )
            .post(
                Access::OidcToken,
                idp::tokens::userinfo.data(provider.clone()),
            ),
        Page::at("/oidc/session/end").get(
            Access::Link,
            idp::tokens::end_session.data(provider.clone()),
        ),
    ];
    Ok(ServiceParts {
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
            usager_space::reindex_job(),
            transfers::job(),
            retention::job(),
            judicial::alerts::job(),
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
