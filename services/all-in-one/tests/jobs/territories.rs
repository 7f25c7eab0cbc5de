//! Jobs that work across territories, one of which fails: the failure is filed under the
//! territory it happened in, the others are served, and the run is recorded as failed.

use foundation::jobs::run_due;
use policies::Role;
use test_support::database::TestDatabase;

use super::{old_delivered_messages, period_over, rename, replica, request};
use crate::common;

/// The error of the one job run, which must have failed.
fn failed(ran: &[(&'static str, Result<u64, String>)], job: &str) -> String {
    match ran {
        [(name, Err(e))] if *name == job => e.clone(),
        other => panic!("le passage de {job} devait échouer : {other:?}"),
    }
}

/// An application whose scheduler looks for due jobs at start-up only: the tests call the
/// jobs themselves, without its own runs racing them.
async fn app_without_ticks(departements: &[&str]) -> common::TestApp {
    let db = TestDatabase::with_departements(departements).await;
    common::spawn_app_with(db, |s| s.jobs.tick_ms = 3_600_000).await
}

/// A mandate made in Gironde takes over two of the person's mandates, one in the Gers and one
/// in the Hérault, and both transfers were left pending. The Gers' mandates table is out of
/// reach: the run files that failure under the Gers (not under the Gironde, whose transfer it
/// was completing), still completes the Hérault's transfer after it, and once the Gers is
/// repaired the next period completes its own.
#[tokio::test]
async fn a_transfer_whose_old_territory_fails_is_filed_under_that_territory() {
    let app = app_without_ticks(&["33", "34", "32"]).await;
    let structure = common::identity::structure_domain(&app, "33").await;
    let aidant = common::identity::professional(
        &app.db.admin,
        "Alice Aidante",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let person = common::idp::angela("transfert-en-panne");
    let (_, mandate) =
        common::idp::mandate_for(&app, structure, aidant.id, &person, &["social"]).await;
    sqlx::query(
        "INSERT INTO dep_33.mandate_transfers (mandate_id, from_departement, from_mandate, requested_at)
         SELECT $1, d, gen_random_uuid(), now() - interval '1 minute' FROM unnest(ARRAY['34', '32']) AS d",
    )
    .bind(mandate)
    .execute(&app.db.admin)
    .await
    .expect("transferts en attente");
    // Transfers are completed in code order: the Gers first.
    rename(&app.db, "dep_32.mandates", "mandates_renamed").await;
    let pending = || {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT from_departement FROM dep_33.mandate_transfers
                 WHERE completed_at IS NULL ORDER BY from_departement",
            )
            .fetch_all(&admin)
            .await
            .expect("en attente")
        }
    };

    // The job's own function, called here: the application runs its jobs on its own ticks.
    let platform = replica(&app.db).await;
    let run = mandate_service::transfers::job().run;
    let error = format!(
        "{:#}",
        run(platform.clone())
            .await
            .expect_err("le passage devait échouer pour 32")
    );
    assert!(error.contains("32 ("), "{error}");
    assert!(
        !error.contains("33 (") && !error.contains("34 ("),
        "{error}"
    );
    assert!(error.contains("1 handled"), "{error}");
    assert_eq!(
        pending().await,
        ["32"],
        "le transfert de l'Hérault est fait"
    );

    rename(&app.db, "dep_32.mandates_renamed", "mandates").await;
    assert_eq!(run(platform).await.expect("passage"), 1);
    assert!(pending().await.is_empty());
}

/// Two territories of an opened wave hold waiting requests; one of them cannot be reached.
/// The other's request is released, and the run is recorded as failed, naming the first (it
/// was recorded as a success before, its requests left waiting without a trace).
#[tokio::test]
async fn a_release_that_fails_in_one_territory_is_recorded_as_failed() {
    let db = TestDatabase::with_departements(&["33", "34"]).await;
    request(
        &db,
        "33",
        "DEM-VAGUE-33",
        Some(time::OffsetDateTime::now_utc()),
    )
    .await;
    request(
        &db,
        "34",
        "DEM-VAGUE-34",
        Some(time::OffsetDateTime::now_utc()),
    )
    .await;
    sqlx::raw_sql(
        "UPDATE dep_33.structure_requests SET status = 'waiting';
         UPDATE dep_34.structure_requests SET status = 'waiting';
         INSERT INTO platform.rollout_waves (id, name, opens_on, opened_at)
         VALUES ('00000000-0000-7000-8000-000000000001', 'Vague test', (now() AT TIME ZONE 'Europe/Paris')::date, now());
         INSERT INTO platform.rollout_wave_departements (departement_code, wave_id) VALUES
         ('33', '00000000-0000-7000-8000-000000000001'), ('34', '00000000-0000-7000-8000-000000000001');
         ALTER TABLE dep_33.structure_requests RENAME TO structure_requests_renamed",
    )
    .execute(&db.admin)
    .await
    .expect("vague ouverte");
    let status = |table: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT status FROM {table}"
            )))
            .fetch_one(&admin)
            .await
            .expect("statut")
        }
    };

    let platform = replica(&db).await;
    let jobs = vec![habilitation_desk::waves::release_job()];
    let error = failed(&run_due(&platform, &jobs).await, "release_waiting_requests");
    assert!(error.contains("33 (") && !error.contains("34 ("), "{error}");
    assert_eq!(status("dep_34.structure_requests").await, "submitted");
    assert_eq!(status("dep_33.structure_requests_renamed").await, "waiting");

    rename(
        &db,
        "dep_33.structure_requests_renamed",
        "structure_requests",
    )
    .await;
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("release_waiting_requests", Ok(1))]
    );
    assert_eq!(status("dep_33.structure_requests").await, "submitted");
}

/// A habilitation file of a new structure of `dep`, ready to be activated (attended its
/// training, certified by Pix, the charter accepted). Returns the file's id.
async fn ready_file(app: &common::TestApp, dep: &str) -> uuid::Uuid {
    let structure = common::identity::structure_domain(app, dep).await;
    let file = uuid::Uuid::now_v7();
    let email = format!("aidant-{dep}-{}@example.test", file.simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO dep_{dep}.habilitation_files (id, structure_id, first_name, last_name, email, profession, employment, employer)
         VALUES ($1, $2, 'Aidant', 'Prêt', $3, 'Agent d''accueil', 'public_agent', 'Mairie')"
    )))
    .bind(file)
    .bind(structure)
    .bind(&email)
    .execute(&app.db.admin)
    .await
    .expect("dossier");
    sqlx::query(
        "WITH idx AS (INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
                      VALUES ($1, $2, $3, $4, 'Aidant Prêt') RETURNING file_id),
              org AS (INSERT INTO platform.training_organisations (id, name)
                      VALUES (gen_random_uuid(), 'Formateurs ' || $2) RETURNING id),
              session AS (INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, mode, region_code, capacity)
                          SELECT gen_random_uuid(), org.id, 'Formation', (now() AT TIME ZONE 'Europe/Paris')::date, 'remote',
                                 (SELECT code FROM platform.regions LIMIT 1), 10 FROM org RETURNING id),
              attended AS (INSERT INTO platform.training_registrations (id, session_id, file_id, status)
                           SELECT gen_random_uuid(), session.id, idx.file_id, 'attended' FROM session, idx),
              pix AS (INSERT INTO platform.pix_results (file_id, score, certified_on)
                      SELECT file_id, 500, (now() AT TIME ZONE 'Europe/Paris')::date FROM idx)
         INSERT INTO platform.charter_acceptances (email, version)
         SELECT $4, version FROM platform.charter_versions ORDER BY published_at DESC LIMIT 1",
    )
    .bind(file)
    .bind(dep)
    .bind(structure)
    .bind(&email)
    .execute(&app.db.admin)
    .await
    .expect("prêt à activer");
    file
}

/// Two files are ready, the Hérault's first; the Hérault's files table is out of reach. The
/// Gironde's file is activated all the same (account, territory copy), the run names the
/// Hérault, and once it is repaired the next run activates its file.
#[tokio::test]
async fn an_activation_that_fails_in_one_territory_holds_back_no_other() {
    let app = app_without_ticks(&["33", "34"]).await;
    let herault = ready_file(&app, "34").await;
    let gironde = ready_file(&app, "33").await;
    rename(
        &app.db,
        "dep_34.habilitation_files",
        "habilitation_files_renamed",
    )
    .await;
    let state = |table: &'static str, file: uuid::Uuid| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT f.state || '/' || (a.file_id IS NOT NULL)
                 FROM {table} f LEFT JOIN platform.habilitation_activations a ON a.file_id = f.id
                 WHERE f.id = $1"
            )))
            .bind(file)
            .fetch_one(&admin)
            .await
            .expect("état")
        }
    };

    // The job's own function, called here: the application runs its jobs on its own ticks.
    let platform = replica(&app.db).await;
    let run = habilitation_desk::activation::job().run;
    let error = format!(
        "{:#}",
        run(platform.clone())
            .await
            .expect_err("le passage devait échouer pour 34")
    );
    assert!(error.contains("34 (") && !error.contains("33 ("), "{error}");
    assert!(error.contains("1 handled"), "{error}");
    assert_eq!(
        state("dep_33.habilitation_files", gironde).await,
        "active/true"
    );
    assert_eq!(
        state("dep_34.habilitation_files_renamed", herault).await,
        "to_train/false"
    );

    rename(
        &app.db,
        "dep_34.habilitation_files_renamed",
        "habilitation_files",
    )
    .await;
    assert_eq!(run(platform).await.expect("passage"), 1);
    assert_eq!(
        state("dep_34.habilitation_files", herault).await,
        "active/true"
    );
}

/// A territory that hangs (here a lock held on its table; on Citus a worker that no longer
/// answers) is given up after `jobs.territory_seconds` like one that fails: the next territory
/// is served within the run, long before the run's own bound, and the run names the one that
/// hung. The abandoned statement rolls back once the lock is released, and the next period
/// purges that territory too.
#[tokio::test]
async fn a_hung_territory_is_given_up_and_the_others_are_served() {
    let db = TestDatabase::with_departements(&["33", "34"]).await;
    old_delivered_messages(&db).await;
    let mut settings = test_support::test_settings(&db.app_url);
    settings.jobs.territory_seconds = 3;
    settings.jobs.lease_seconds = 30;
    let platform = foundation::app::Platform::connect(settings)
        .await
        .expect("plateforme");
    // 33 comes first in the run; its outbox is locked by the test until released.
    let mut holder = db.admin.begin().await.expect("transaction");
    sqlx::query("LOCK TABLE dep_33.outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .expect("verrou");
    let count = |table: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&admin)
            .await
            .expect("restes")
        }
    };

    let jobs = vec![notification_mailer::worker::purge_delivered_messages()];
    let started = std::time::Instant::now();
    let ran = run_due(&platform, &jobs).await;
    let took = started.elapsed();
    let error = failed(&ran, "purge_delivered_messages");
    assert!(
        error.contains("33 (no answer after 3 s") && !error.contains("34 ("),
        "{error}"
    );
    // The run's own bound is 27 s (nine tenths of the lease).
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    assert_eq!(count("dep_34.outbox").await, 0, "34 purgé malgré 33");

    holder.rollback().await.expect("verrou rendu");
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_delivered_messages", Ok(1))]
    );
    assert_eq!(count("dep_33.outbox").await, 0);
}
