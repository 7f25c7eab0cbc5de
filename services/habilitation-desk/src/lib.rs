//! Habilitation desk: structures' requests, review, rollout waves, training, Pix, charter,
//! professional accounts and login, référent space, and the registry of habilitated places.

/// The professional's own space: account, structure switch, activity re-check.
pub mod account;
/// Professional accounts: creation, roles, enrolment links, deactivation.
pub mod accounts;
/// The aidant's charter and the activation of ready habilitation files.
pub mod activation;
/// The alerts' pages: the territory admin's and the référent's; acknowledgement, thresholds.
pub mod alert_pages;
/// Anomaly alerts: the rules, the hourly detection, the digest.
pub mod alerts;
/// The auditor's space: the territory's journal, its verification and export.
pub mod audit;
/// Second-factor enrolment from the activation link.
pub mod enrolment;
/// Aidants who stopped logging in, warned by mail.
pub mod inactivity;
/// Issuers ("demandeurs"): address verification by link, issuer sessions.
pub mod issuer;
/// Login with e-mail, TOTP code and magic link; logout.
pub mod login;
/// The référent moves an aidant to another structure of the tenant.
pub mod move_aidant;
/// National team pages: card import.
pub mod national;
/// National team: a territory's structures, deactivation of one as a whole.
pub mod national_structures;
/// A professional replacing their own authenticator app.
pub mod own_factor;
/// Where each habilitation file stands: to train, registered, trained, Pix, charter, active.
pub mod pipeline;
/// Pix certification results: CSV import.
pub mod pix;
/// Open data: the habilitated places of a territory.
pub mod places;
/// Référent pages: aidants' second factors.
pub mod referent;
/// The register of habilitated persons.
pub mod registry;
/// The issuer's request API (OpenAPI).
pub mod request_api;
/// The issuer's pages: the request form, recap, thread, submission, withdrawal.
pub mod request_pages;
/// Structures' habilitation requests: states, form, SIRET, acceptance, weekly digest.
pub mod requests;
/// Review of requests and delegations of review.
pub mod review;
/// Statistics from aggregates: the job that folds the journal, the national and public figures.
pub mod statistics;
/// Statistics pages: open (with CSV and JSON), national, the référent's structure.
pub mod statistics_pages;
/// The référent adds a person to habilitate (a new habilitation file).
pub mod structure_files;
/// The référent's space: the structure's people, their step and second factor, the tools.
pub mod structure_space;
/// Registering a structure's aidants on training, by its référent or its request's issuer.
pub mod structure_training;
/// Structures of a territory (operators' path; accepted requests create theirs).
pub mod structures;
/// A territory admin's view of their rollout.
pub mod territory;
/// The territory admin's space: structures, pipeline, coverage, uses, export.
pub mod territory_space;
/// The territory admin manages the tenant's structures and delegates administration.
pub mod territory_structures;
/// The trainer's pages: their sessions and attendance.
pub mod trainer;
/// Training organisations, sessions, registrations and attendance.
pub mod training;
/// Page templates and helpers.
mod views;
/// Rollout waves.
pub mod waves;
/// Withdrawal of an aidant's habilitation.
pub mod withdrawal;

use std::sync::Arc;

use foundation::app::{Access, Mount, Page, Platform, ServiceParts};
use foundation::config::Settings;
use poem_openapi::OpenApiService;
use policies::Action;

/// The desk's routes, readiness checks and workers.
pub async fn parts(_platform: &Platform) -> anyhow::Result<ServiceParts> {
    let api = OpenApiService::new(
        (places::PlacesApi, request_api::RequestsApi),
        "Aidants Connect — guichet d'habilitation",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/habilitation");
    // Each page's guard is the check its handler makes first (see `Access`).
    let factor = Access::Permission(Action::FactorManage);
    // Acting on an aidant's factor asks for a recent code, like mandate actions.
    let factor_action = Access::RecentPermission(Action::FactorManage);
    // Review: nationally, or in a département by delegation (the handler's guard says which);
    // decisions ask for a recent code.
    let review_access = Access::Permission(Action::RequestReview);
    let review_decision = Access::RecentPermission(Action::RequestReview);
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
            Page::at("/demande")
                .get(Access::Public, issuer::start)
                .post(Access::Public, issuer::send_link),
            Page::at("/demande/acces")
                .get(Access::Link, issuer::link)
                .post(Access::Link, issuer::consume),
            Page::at("/demande/deconnexion").post(Access::Issuer, issuer::logout),
            Page::at("/demande/mes-demandes").get(Access::Issuer, request_pages::list),
            Page::at("/demande/nouvelle")
                .get(Access::Issuer, request_pages::new_form)
                .post(Access::Issuer, request_pages::create),
            Page::at("/demande/demandes/:reference").get(Access::Issuer, request_pages::view),
            Page::at("/demande/demandes/:reference/structure")
                .get(Access::Issuer, request_pages::structure_form)
                .post(Access::Issuer, request_pages::structure_save),
            Page::at("/demande/demandes/:reference/referent")
                .get(Access::Issuer, request_pages::referent_form)
                .post(Access::Issuer, request_pages::referent_save),
            Page::at("/demande/demandes/:reference/aidants")
                .get(Access::Issuer, request_pages::aidants_form)
                .post(Access::Issuer, request_pages::aidant_add),
            Page::at("/demande/demandes/:reference/aidants/retirer")
                .post(Access::Issuer, request_pages::aidant_remove),
            Page::at("/demande/demandes/:reference/engagements")
                .get(Access::Issuer, request_pages::commitments_form)
                .post(Access::Issuer, request_pages::commitments_save),
            Page::at("/demande/demandes/:reference/deposer")
                .post(Access::Issuer, request_pages::submit),
            Page::at("/demande/demandes/:reference/message")
                .post(Access::Issuer, request_pages::post_message),
            Page::at("/demande/demandes/:reference/retirer")
                .post(Access::Issuer, request_pages::withdraw),
            Page::at("/instruction").get(review_access, review::queue),
            Page::at("/instruction/demandes/:reference").get(review_access, review::view),
            Page::at("/instruction/demandes/:reference/message")
                .post(review_access, review::post_message),
            Page::at("/instruction/demandes/:reference/modifications")
                .post(review_decision, review::ask_changes),
            Page::at("/instruction/demandes/:reference/refuser")
                .post(review_decision, review::refuse),
            Page::at("/instruction/demandes/:reference/accepter")
                .post(review_decision, review::accept),
            Page::at("/national/relecteurs")
                .get(Access::Permission(Action::RequestReview), review::reviewers)
                .post(
                    Access::RecentPermission(Action::RequestReview),
                    review::delegate,
                ),
            Page::at("/national/relecteurs/retirer").post(
                Access::RecentPermission(Action::RequestReview),
                review::withdraw,
            ),
            Page::at("/national/vagues")
                .get(Access::Permission(Action::WaveOpen), waves::waves_page)
                .post(Access::Permission(Action::WaveOpen), waves::create_wave),
            Page::at("/national/vagues/ouvrir")
                .post(Access::Permission(Action::WaveOpen), waves::open_wave),
            Page::at("/statistiques").get(Access::Public, statistics_pages::open_page),
            Page::at("/statistiques.csv").get(Access::Public, statistics_pages::open_csv),
            Page::at("/statistiques.json").get(Access::Public, statistics_pages::open_json),
            Page::at("/national/statistiques").get(
                Access::Permission(Action::StatisticsNational),
                statistics_pages::national_page,
            ),
            Page::at("/structure/statistiques").get(
                Access::Permission(Action::StructureStatistics),
                statistics_pages::structure_page,
            ),
            Page::at("/territoire/collectivites/:id/alertes").get(
                Access::Permission(Action::StructureList),
                alert_pages::territory_page,
            ),
            Page::at("/territoire/collectivites/:id/alertes/:alert/prise-en-compte").post(
                Access::Permission(Action::StructureManage),
                alert_pages::territory_acknowledge,
            ),
            Page::at("/territoire/collectivites/:id/alertes/seuils").post(
                Access::Permission(Action::StructureManage),
                alert_pages::territory_settings,
            ),
            Page::at("/structure/alertes").get(
                Access::Permission(Action::AidantList),
                alert_pages::structure_page,
            ),
            Page::at("/structure/alertes/:alert/prise-en-compte").post(
                Access::Permission(Action::AidantList),
                alert_pages::structure_acknowledge,
            ),
            Page::at("/audit").get(Access::Permission(Action::JournalRead), audit::home),
            Page::at("/audit/collectivites/:id/journal")
                .get(Access::Permission(Action::JournalRead), audit::journal_page),
            Page::at("/audit/collectivites/:id/journal/export")
                .post(Access::Permission(Action::JournalExport), audit::export),
            Page::at("/audit/collectivites/:id/verification").post(
                Access::Permission(Action::JournalVerify),
                audit::start_verification,
            ),
            Page::at("/audit/collectivites/:id/verification/:verification").get(
                Access::Permission(Action::JournalVerify),
                audit::verification_page,
            ),
            Page::at("/territoire").get(
                Access::Permission(Action::StructureList),
                territory_space::home,
            ),
            Page::at("/territoire/collectivites/:id").get(
                Access::Permission(Action::StructureList),
                territory_space::dashboard,
            ),
            Page::at("/territoire/collectivites/:id/structures.csv").post(
                Access::Permission(Action::StructureList),
                territory_space::export,
            ),
            Page::at("/territoire/collectivites/:id/structures/:structure")
                .get(
                    Access::Permission(Action::StructureManage),
                    territory_structures::form,
                )
                .post(
                    Access::Permission(Action::StructureManage),
                    territory_structures::save,
                ),
            Page::at("/territoire/collectivites/:id/structures/:structure/desactiver").post(
                Access::RecentPermission(Action::StructureManage),
                territory_structures::deactivate,
            ),
            Page::at("/territoire/collectivites/:id/co-admins").post(
                Access::RecentPermission(Action::TerritoryDelegate),
                territory_structures::delegate,
            ),
            Page::at("/territoire/deploiement").get(
                Access::Permission(Action::RolloutFollow),
                territory::rollout,
            ),
            Page::at("/referent/aidants/retrait")
                .get(
                    Access::Permission(Action::AidantDeactivate),
                    withdrawal::referent_form,
                )
                .post(
                    Access::RecentPermission(Action::AidantDeactivate),
                    withdrawal::referent_withdraw,
                ),
            Page::at("/national/habilitations").get(
                Access::Permission(Action::HabilitationWithdraw),
                withdrawal::national_search,
            ),
            Page::at("/national/habilitations/retrait").post(
                Access::RecentPermission(Action::HabilitationWithdraw),
                withdrawal::national_withdraw,
            ),
            Page::at("/national/structures").get(
                Access::Permission(Action::HabilitationWithdraw),
                national_structures::search,
            ),
            Page::at("/national/structures/desactiver").post(
                Access::RecentPermission(Action::HabilitationWithdraw),
                national_structures::deactivate,
            ),
            Page::at("/national/formations").get(
                Access::Permission(Action::TrainingManage),
                training::national,
            ),
            Page::at("/national/formations/sessions").post(
                Access::Permission(Action::TrainingManage),
                training::create_session,
            ),
            Page::at("/national/formations/organismes").post(
                Access::Permission(Action::TrainingManage),
                training::create_organisation,
            ),
            Page::at("/national/formations/formateurs").post(
                Access::Permission(Action::TrainingManage),
                training::add_trainer,
            ),
            Page::at("/structure").get(
                Access::Permission(Action::AidantList),
                structure_space::page,
            ),
            Page::at("/structure/formation").get(
                Access::Permission(Action::AidantAddToTraining),
                structure_training::referent_page,
            ),
            Page::at("/structure/formation/inscription").post(
                Access::Permission(Action::AidantAddToTraining),
                structure_training::referent_register,
            ),
            Page::at("/structure/formation/annulation").post(
                Access::Permission(Action::AidantAddToTraining),
                structure_training::referent_cancel,
            ),
            Page::at("/demande/demandes/:reference/formation")
                .get(Access::Issuer, structure_training::issuer_page),
            Page::at("/demande/demandes/:reference/formation/inscription")
                .post(Access::Issuer, structure_training::issuer_register),
            Page::at("/demande/demandes/:reference/formation/annulation")
                .post(Access::Issuer, structure_training::issuer_cancel),
            Page::at("/formation").get(
                Access::Permission(Action::AttendanceRecord),
                trainer::trainer_sessions,
            ),
            Page::at("/formation/sessions/:id").get(
                Access::Permission(Action::AttendanceRecord),
                trainer::trainer_session_page,
            ),
            Page::at("/formation/sessions/:id/presence").post(
                Access::RecentPermission(Action::AttendanceRecord),
                trainer::record_attendance,
            ),
            Page::at("/national/pix")
                .get(Access::Permission(Action::PixImport), pix::form)
                .post(Access::Permission(Action::PixImport), pix::submit),
            Page::at("/charte")
                .get(Access::Link, activation::link_page)
                .post(Access::Link, activation::accept_link),
            Page::at("/compte/charte")
                .get(Access::Session, activation::session_page)
                .post(Access::Session, activation::session_accept),
            Page::at("/national/registre").get(
                Access::Permission(Action::HabilitationWithdraw),
                registry::page,
            ),
            Page::at("/national/registre.csv").post(
                Access::Permission(Action::HabilitationWithdraw),
                registry::export,
            ),
            Page::at("/structure/aidants/nouveau")
                .get(
                    Access::Permission(Action::AidantAddToTraining),
                    structure_files::form,
                )
                .post(
                    Access::Permission(Action::AidantAddToTraining),
                    structure_files::create,
                ),
            Page::at("/structure/aidants/deplacer")
                .get(Access::Permission(Action::AidantMove), move_aidant::form)
                .post(
                    Access::RecentPermission(Action::AidantMove),
                    move_aidant::apply,
                ),
            Page::at("/structure/co-referents").post(
                Access::RecentPermission(Action::ReferentAppoint),
                move_aidant::appoint,
            ),
            Page::at("/national/cartes")
                .get(Access::Permission(Action::CardImport), national::form)
                .post(Access::Permission(Action::CardImport), national::import),
        ],
        routes: vec![
            Mount::openapi("/api/habilitation", Access::Public, api)
                .with_access("/demandes", Access::Issuer),
        ],
        readiness: Vec::<Arc<dyn foundation::health::ReadinessCheck>>::new(),
        workers: Vec::new(),
        csrf_exempt: Vec::new(),
        jobs: vec![
            requests::weekly_digest(),
            requests::acceptance::finish_accepted(),
            waves::release_job(),
            requests::draft_purge(),
            training::reminders(),
            activation::job(),
            statistics::job(),
            alerts::job(),
            inactivity::job(),
            alerts::digest_job(),
        ],
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
