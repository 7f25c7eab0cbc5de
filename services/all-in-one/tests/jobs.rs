//! Scheduled jobs: one run per period across replicas, and purges that delete exactly what is
//! due, twice in a row with the same result.

mod common;
#[path = "jobs/territories.rs"]
mod territories;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation::app::Platform;
use foundation::jobs::{Job, purge_expired_flow_data, run_due};
use test_support::database::TestDatabase;

async fn replica(db: &TestDatabase) -> Platform {
    Platform::connect(test_support::test_settings(&db.app_url))
        .await
        .expect("plateforme")
}

/// Moves every job's last start two hours back: at the next look their period is over.
async fn period_over(db: &TestDatabase) {
    sqlx::query("UPDATE platform.job_runs SET last_started_at = now() - interval '2 hours'")
        .execute(&db.admin)
        .await
        .expect("période");
}

#[tokio::test]
async fn a_job_runs_once_per_period_across_replicas() {
    let db = TestDatabase::create().await;
    let (a, b) = (replica(&db).await, replica(&db).await);
    let runs = Arc::new(AtomicU64::new(0));
    let counter = runs.clone();
    let job = Job::new("compteur", Duration::from_secs(3600), move |_| {
        let counter = counter.clone();
        async move { Ok(counter.fetch_add(1, Ordering::SeqCst) + 1) }
    });
    let jobs = vec![job];
    let (ra, rb) = tokio::join!(run_due(&a, &jobs), run_due(&b, &jobs));
    assert_eq!(ra.len() + rb.len(), 1, "{ra:?} {rb:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(run_due(&a, &jobs).await.is_empty(), "même période");
    // The period has passed: it runs again, once.
    sqlx::query("UPDATE platform.job_runs SET last_started_at = now() - interval '2 hours' WHERE name = 'compteur'")
        .execute(&db.admin)
        .await
        .expect("période");
    let (ra, rb) = tokio::join!(run_due(&a, &jobs), run_due(&b, &jobs));
    assert_eq!(ra.len() + rb.len(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let (result, finished): (Option<i64>, bool) =
        sqlx::query_as("SELECT last_result, last_finished_at IS NOT NULL FROM platform.job_runs WHERE name = 'compteur'")
            .fetch_one(&db.admin)
            .await
            .expect("suivi");
    assert_eq!((result, finished), (Some(2), true));
}

#[tokio::test]
async fn expired_flow_data_is_purged_exactly_and_idempotently() {
    let db = TestDatabase::create().await;
    let mut tx = db.admin.begin().await.expect("tx");
    let who = habilitation_desk::accounts::create_professional(
        &mut tx,
        "purge@example.test",
        "Pat Purge",
    )
    .await
    .expect("compte");
    tx.commit().await.expect("commit");
    for (token, seconds) in [
        ("vieux", -172_800.0),
        ("recent", -3_600.0),
        ("vivant", 300.0),
    ] {
        sqlx::query(
            "INSERT INTO platform.email_links (token_hash, purpose, professional_id, expires_at)
             VALUES (sha256($1::bytea), 'login', $2, now() + make_interval(secs => $3))",
        )
        .bind(token.as_bytes())
        .bind(who)
        .bind(seconds)
        .execute(&db.admin)
        .await
        .expect("lien");
    }
    sqlx::query("INSERT INTO platform.rate_limits VALUES ('a', now() - interval '2 days', 3), ('b', now(), 1)")
        .execute(&db.admin)
        .await
        .expect("limites");
    sqlx::query(
        "INSERT INTO platform.sessions (id_hash, professional_id, totp_verified_at, ended_at) VALUES
         (sha256('fini'::bytea), $1, now(), now() - interval '2 days'), (sha256('ouvert'::bytea), $1, now(), NULL)",
    )
    .bind(who)
    .execute(&db.admin)
    .await
    .expect("sessions");
    let platform = replica(&db).await;
    let jobs = vec![purge_expired_flow_data()];
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_expired_flow_data", Ok(3))]
    );
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_expired_flow_data", Ok(0))]
    );
    let left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM platform.email_links), (SELECT count(*) FROM platform.rate_limits), (SELECT count(*) FROM platform.sessions)",
    )
    .fetch_one(&db.admin)
    .await
    .expect("restes");
    assert_eq!(left, (2, 1, 1));
}

#[tokio::test]
async fn delivered_messages_are_purged_after_thirty_days_and_dead_letters_stay() {
    let db = TestDatabase::with_departements(&["33"]).await;
    sqlx::query(
        "INSERT INTO platform.outbox (id, channel, recipient, template, sent_at, created_at) VALUES
         (gen_random_uuid(), 'email', 'a@example.test', 'operator_test', now() - interval '31 days', now() - interval '31 days'),
         (gen_random_uuid(), 'email', 'b@example.test', 'operator_test', now() - interval '1 day', now() - interval '1 day'),
         (gen_random_uuid(), 'email', 'c@example.test', 'operator_test', NULL, now() - interval '60 days')",
    )
    .execute(&db.admin)
    .await
    .expect("messages");
    sqlx::query(
        "INSERT INTO dep_33.outbox (id, channel, recipient, template, sent_at) VALUES
         (gen_random_uuid(), 'email', 'd@example.test', 'operator_test', now() - interval '40 days')",
    )
    .execute(&db.admin)
    .await
    .expect("message territorial");
    // Keep the worker from sending the dead letter during the test: it has used its attempts.
    sqlx::query("UPDATE platform.outbox SET attempts = 99 WHERE sent_at IS NULL")
        .execute(&db.admin)
        .await
        .expect("tentatives");
    let platform = replica(&db).await;
    let jobs = vec![notification_mailer::worker::purge_delivered_messages()];
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_delivered_messages", Ok(2))]
    );
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_delivered_messages", Ok(0))]
    );
    let left: Vec<String> =
        sqlx::query_scalar("SELECT recipient FROM platform.outbox ORDER BY recipient")
            .fetch_all(&db.admin)
            .await
            .expect("restes");
    assert_eq!(left, ["b@example.test", "c@example.test"]);
}

/// One message delivered 40 days ago in each of the outboxes of 33 and 34: due for purging.
async fn old_delivered_messages(db: &TestDatabase) {
    sqlx::raw_sql(
        "INSERT INTO dep_33.outbox (id, channel, recipient, template, sent_at) VALUES
         (gen_random_uuid(), 'email', 'vieux-33@example.test', 'operator_test', now() - interval '40 days');
         INSERT INTO dep_34.outbox (id, channel, recipient, template, sent_at) VALUES
         (gen_random_uuid(), 'email', 'vieux-34@example.test', 'operator_test', now() - interval '40 days')",
    )
    .execute(&db.admin)
    .await
    .expect("messages anciens");
}

/// `ALTER TABLE {table} RENAME TO {to}`: a territory's table out of reach (as a migration left
/// behind or a stopped node would leave it), or put back.
async fn rename(db: &TestDatabase, table: &str, to: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} RENAME TO {to}"
    )))
    .execute(&db.admin)
    .await
    .expect("renommage");
}

/// A territory that fails its part of a run (here a table a migration left renamed; on Citus a
/// worker stopped) keeps no other territory from the run: the next territory's delivered
/// messages are purged all the same, the run is recorded as failed naming that territory, and
/// once it is repaired the next period purges it too.
#[tokio::test]
async fn a_failing_territory_keeps_no_other_from_its_run() {
    let db = TestDatabase::with_departements(&["33", "34"]).await;
    old_delivered_messages(&db).await;
    // 33 comes first in the run (territories go in code order).
    rename(&db, "dep_33.outbox", "outbox_renamed").await;
    let platform = replica(&db).await;
    let jobs = vec![notification_mailer::worker::purge_delivered_messages()];
    let ran = run_due(&platform, &jobs).await;
    let error = match &ran[..] {
        [("purge_delivered_messages", Err(e))] => e.clone(),
        other => panic!("le passage devait échouer pour 33 : {other:?}"),
    };
    assert!(error.contains("33 ("), "{error}");
    assert!(!error.contains("34 ("), "{error}");
    let left = |count: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(count)
                .fetch_one(&admin)
                .await
                .expect("restes")
        }
    };
    assert_eq!(
        left("SELECT count(*) FROM dep_34.outbox").await,
        0,
        "34 purgé malgré 33"
    );
    assert_eq!(left("SELECT count(*) FROM dep_33.outbox_renamed").await, 1);
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT last_error FROM platform.job_runs WHERE name = 'purge_delivered_messages'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("passage");
    assert_eq!(recorded.as_deref(), Some(error.as_str()));

    rename(&db, "dep_33.outbox_renamed", "outbox").await;
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_delivered_messages", Ok(1))]
    );
    assert_eq!(left("SELECT count(*) FROM dep_33.outbox").await, 0);
}

#[tokio::test]
async fn inactive_aidants_are_warned_once_by_mail() {
    let app = common::spawn_app(&["33"]).await;
    let structure = common::identity::structure_domain(&app, "33").await;
    let aidant = |name: &'static str| {
        let admin = app.db.admin.clone();
        async move {
            common::identity::professional(
                &admin,
                name,
                &[(policies::Role::Aidant, structure.domain(), Some("33"))],
            )
            .await
        }
    };
    let (dormant, active, never) = (
        aidant("Ines Inactive").await,
        aidant("Alex Actif").await,
        aidant("Nina Nouvelle").await,
    );
    // Dormant: last login 100 days ago. Active: logged in now (through the real login).
    // Never logged in, but created yesterday: not warned yet.
    sqlx::query("UPDATE platform.professionals SET created_at = now() - interval '200 days', last_login_at = now() - interval '100 days' WHERE id = $1")
        .bind(dormant.id)
        .execute(&app.db.admin)
        .await
        .expect("inactif");
    sqlx::query(
        "UPDATE platform.professionals SET created_at = now() - interval '200 days' WHERE id = $1",
    )
    .bind(active.id)
    .execute(&app.db.admin)
    .await
    .expect("actif");
    sqlx::query(
        "UPDATE platform.professionals SET created_at = now() - interval '1 day' WHERE id = $1",
    )
    .bind(never.id)
    .execute(&app.db.admin)
    .await
    .expect("nouvelle");
    let client = common::identity::browser(&app.address);
    common::identity::log_in(&client, &app, &active, -1).await;
    let platform = Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    assert_eq!(
        habilitation_desk::inactivity::warn_inactive_aidants(&platform)
            .await
            .expect("avertissements"),
        1
    );
    assert_eq!(
        habilitation_desk::inactivity::warn_inactive_aidants(&platform)
            .await
            .expect("avertissements"),
        0,
        "une seule fois"
    );
    let mail = test_support::maildev::wait_for_mail_to(&dormant.email, Duration::from_secs(20))
        .await
        .expect("avertissement reçu");
    let text = mail["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Bonjour Ines Inactive")
            && text.contains("plus de 90 jours")
            && text.contains("/connexion"),
        "{text}"
    );
    assert!(
        test_support::maildev::mails_to(&never.email)
            .await
            .is_empty()
    );
}

/// Inserts a structure request of département `dep`, first submitted at `at` (a draft if None).
async fn request(db: &TestDatabase, dep: &str, reference: &str, at: Option<time::OffsetDateTime>) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO dep_{dep}.structure_requests
             (id, reference, structure_name, structure_kind, siret, commune_code, issuer_email, status, first_submitted_at)
         VALUES (gen_random_uuid(), $1, $2, 'CCAS', lpad((abs(hashtext($1)) % 100000000000000)::text, 14, '0'), $3, 'demandeur@example.test',
                 CASE WHEN $4::timestamptz IS NULL THEN 'draft' ELSE 'submitted' END, $4)"
    )))
    .bind(reference)
    .bind(format!("Structure {reference}"))
    .bind(if dep == "33" { "33063" } else { "34172" })
    .bind(at)
    .execute(&db.admin)
    .await
    .expect("demande");
}

/// A national admin (deactivated if not `active`).
async fn national_admin(db: &TestDatabase, email: &str, active: bool) {
    let mut tx = db.admin.begin().await.expect("tx");
    let id = habilitation_desk::accounts::create_professional(&mut tx, email, "Équipe nationale")
        .await
        .expect("compte");
    habilitation_desk::accounts::grant_role(
        &mut tx,
        id,
        policies::Role::NationalAdmin,
        policies::Domain::National,
        None,
    )
    .await
    .expect("rôle");
    sqlx::query("UPDATE platform.professionals SET active = $2 WHERE id = $1")
        .bind(id)
        .bind(active)
        .execute(&mut *tx)
        .await
        .expect("état du compte");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn the_weekly_digest_lists_each_new_request_once_to_every_national_admin() {
    use habilitation_desk::requests::send_weekly_digest;
    use time::macros::datetime;

    let db = TestDatabase::with_departements(&["33", "34"]).await;
    let platform = replica(&db).await;
    for (email, active) in [
        ("national-1@example.test", true),
        ("national-2@example.test", true),
        ("ancien-national@example.test", false),
    ] {
        national_admin(&db, email, active).await;
    }
    // The previous digest ended on Monday 16 November 2026 at 08:59 UTC.
    sqlx::query(
        "INSERT INTO platform.request_digests (week_start, covered_from, covered_until, request_count, recipients)
         VALUES ('2026-11-16', '2026-11-09 08:59Z', '2026-11-16 08:59Z', 0, 2)",
    )
    .execute(&db.admin)
    .await
    .expect("digest précédent");
    for (dep, reference, at) in [
        ("33", "DEM-OLD-0001", datetime!(2026-11-16 08:58 UTC)),
        ("33", "DEM-NEW-0001", datetime!(2026-11-16 09:30 UTC)),
        ("34", "DEM-NEW-0002", datetime!(2026-11-20 14:00 UTC)),
        ("33", "DEM-NEW-0003", datetime!(2026-11-23 08:00 UTC)),
    ] {
        request(&db, dep, reference, Some(at)).await;
    }
    request(&db, "33", "DEM-DRAFT-01", None).await;

    // Monday 23 November, 07:30 in Paris: not yet.
    assert_eq!(
        send_weekly_digest(&platform, datetime!(2026-11-23 06:30 UTC))
            .await
            .expect("digest"),
        None
    );
    // 10:00 in Paris: the three new requests, to the two active national admins.
    let digest = send_weekly_digest(&platform, datetime!(2026-11-23 09:00 UTC))
        .await
        .expect("digest")
        .expect("envoyé");
    assert_eq!((digest.requests, digest.recipients), (3, 2));
    // A second run in the week, from another replica, sends nothing.
    let other = replica(&db).await;
    assert_eq!(
        send_weekly_digest(&other, datetime!(2026-11-25 12:00 UTC))
            .await
            .expect("digest"),
        None
    );
    let sent: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT recipient, payload FROM platform.outbox WHERE template = 'new_requests_digest' ORDER BY recipient",
    )
    .fetch_all(&db.admin)
    .await
    .expect("messages");
    let recipients: Vec<&str> = sent.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        recipients,
        ["national-1@example.test", "national-2@example.test"]
    );
    let payload = &sent[0].1;
    assert_eq!(payload["count"], "3");
    let lines: Vec<&str> = payload["requests"]
        .as_array()
        .expect("liste")
        .iter()
        .map(|l| l.as_str().expect("ligne"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("Gironde (33) — Structure DEM-NEW-0001 (CCAS, commune INSEE 33063), déposée le 16/11/2026 à 10h30"), "{lines:?}");
    assert!(lines[1].contains("DEM-NEW-0003"), "{lines:?}");
    assert!(
        lines[2].starts_with("Hérault (34) — Structure DEM-NEW-0002"),
        "{lines:?}"
    );
    assert_eq!(
        payload["period"],
        "du 16/11/2026 à 09h59 au 23/11/2026 à 09h59"
    );
    assert_eq!(payload["more"], "La liste ci-dessus est complète.");

    // Next Monday: one request came in the last minute of the week (it waits for the digest
    // after), nothing else; the digest still goes out and says so.
    request(
        &db,
        "34",
        "DEM-LATE-0001",
        Some(datetime!(2026-11-30 08:59:30 UTC)),
    )
    .await;
    let digest = send_weekly_digest(&platform, datetime!(2026-11-30 09:00 UTC))
        .await
        .expect("digest")
        .expect("envoyé");
    assert_eq!((digest.requests, digest.recipients), (0, 2));
    let empty: serde_json::Value = sqlx::query_scalar(
        "SELECT payload FROM platform.outbox WHERE template = 'new_requests_digest' ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&db.admin)
    .await
    .expect("message");
    assert_eq!(empty["count"], "0");
    assert_eq!(
        empty["more"],
        "Aucune demande n'a été déposée pendant cette période."
    );
    let next = send_weekly_digest(&platform, datetime!(2026-12-07 08:00 UTC))
        .await
        .expect("digest")
        .expect("envoyé");
    assert_eq!(
        next.requests, 1,
        "la demande de la dernière minute, la semaine suivante"
    );
    let weeks: Vec<(time::Date, i32)> = sqlx::query_as(
        "SELECT week_start, request_count FROM platform.request_digests ORDER BY week_start",
    )
    .fetch_all(&db.admin)
    .await
    .expect("semaines");
    assert_eq!(weeks.len(), 4);
    assert_eq!(weeks.iter().map(|w| w.1).sum::<i32>(), 4);
}

#[tokio::test]
async fn the_digest_waits_for_every_territory_and_for_someone_to_tell() {
    use habilitation_desk::requests::send_weekly_digest;
    use time::macros::datetime;

    let db = TestDatabase::with_departements(&["33", "34"]).await;
    let platform = replica(&db).await;
    request(
        &db,
        "34",
        "DEM-WAIT-0001",
        Some(datetime!(2026-11-20 14:00 UTC)),
    )
    .await;
    let monday = datetime!(2026-11-23 09:00 UTC);
    let digests = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM platform.request_digests")
            .fetch_one(&db.admin)
            .await
            .expect("semaines")
    };
    // No active national admin: nobody would read it, the week is not recorded.
    assert_eq!(
        send_weekly_digest(&platform, monday).await.expect("digest"),
        None
    );
    assert_eq!(digests().await, 0);
    national_admin(&db, "national@example.test", true).await;
    // A territory whose schema is behind is not served: the digest is put off, not sent
    // without its requests.
    sqlx::query("UPDATE platform.departement_schemas SET version = version - 1 WHERE departement_code = '34'")
        .execute(&db.admin)
        .await
        .expect("retard");
    platform.tenancy.refresh().await.expect("registre");
    let err = send_weekly_digest(&platform, monday)
        .await
        .expect_err("reporté");
    assert!(
        err.to_string().contains("territories not served: 34"),
        "{err}"
    );
    assert_eq!(digests().await, 0);
    // Served again: the request is in the digest.
    sqlx::query("UPDATE platform.departement_schemas SET version = version + 1 WHERE departement_code = '34'")
        .execute(&db.admin)
        .await
        .expect("rattrapage");
    platform.tenancy.refresh().await.expect("registre");
    let digest = send_weekly_digest(&platform, monday)
        .await
        .expect("digest")
        .expect("envoyé");
    assert_eq!((digest.requests, digest.recipients), (1, 1));
}

/// The mandate service's purge: a guardian service's import reports go 90 days after the
/// import (the journal keeps each import's counts), newer ones stay; a second run purges none.
#[tokio::test]
async fn measure_import_reports_are_purged_after_ninety_days() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let structure = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code, guardian_service)
         VALUES ($1, $2, 'ATMP de la Gironde', 'association', '33063', true)",
    )
    .bind(structure)
    .bind(uuid::Uuid::new_v4())
    .execute(&db.admin)
    .await
    .expect("structure");
    for (name, days) in [("ancien.csv", 91), ("recent.csv", 89)] {
        sqlx::query(
            "INSERT INTO dep_33.measure_imports (id, structure_id, started_by, file_name, file_sha256, state, created_at)
             VALUES (gen_random_uuid(), $1, gen_random_uuid(), $2, '\\x00', 'done', now() - make_interval(days => $3))",
        )
        .bind(structure)
        .bind(name)
        .bind(days)
        .execute(&db.admin)
        .await
        .expect("import");
    }
    let platform = replica(&db).await;
    let jobs = vec![mandate_service::jobs::purge_drafts()];
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_mandate_drafts", Ok(1))]
    );
    period_over(&db).await;
    assert_eq!(
        run_due(&platform, &jobs).await,
        vec![("purge_mandate_drafts", Ok(0))]
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT file_name FROM dep_33.measure_imports")
        .fetch_all(&db.admin)
        .await
        .expect("restes");
    assert_eq!(left, ["recent.csv"]);
}

/// The hourly completion of the usager index reads the usagers created since its territory's
/// mark (less an hour, for transactions still open when the mark was taken), a batch at a time
/// in creation order, and every usager when there is no mark: not every usager of France each
/// hour.
#[tokio::test]
async fn the_usager_index_is_completed_from_its_mark_a_batch_at_a_time() {
    use mandate_service::usager_space::reindex;
    let db = TestDatabase::with_departements(&["33"]).await;
    let platform = replica(&db).await;
    let code = foundation::tenancy::DepartementCode::parse("33").expect("33");
    let territory = platform.tenancy.unguarded(code).await.expect("territoire");
    // Six people nobody indexed, created 3 days, 2 days, 90 minutes ago and three just now
    // (the same instant: the batches of two split them, the id orders them).
    for (n, age) in [259_200.0, 172_800.0, 5_400.0, 0.0, 0.0, 0.0]
        .into_iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO dep_33.usagers (id, fc_sub, given_name, family_name, birthdate, gender,
                                         birthplace, birthcountry, search_name, created_at)
             VALUES (gen_random_uuid(), $1, 'Camille', 'Index', '1970-01-01', 'female', '33063',
                     '99100', 'camille index', date_trunc('second', now()) - make_interval(secs => $2))",
        )
        .bind(format!("sujet-index-{n}"))
        .bind(age)
        .execute(&db.admin)
        .await
        .expect("usager");
    }
    let indexed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM platform.usager_index WHERE departement_code = '33'",
        )
        .fetch_one(&db.admin)
        .await
        .expect("index")
    };
    // No mark: all six, in batches of two; the mark is this run's start.
    assert_eq!(reindex(&platform, &territory, 2).await.expect("tout"), 6);
    assert_eq!(indexed().await, 6);
    let recent: bool = sqlx::query_scalar(
        "SELECT through > now() - interval '1 minute' FROM platform.usager_index_marks
         WHERE departement_code = '33'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("marque");
    assert!(recent);

    // The index lost every entry, and the last run was an hour ago: this run reads from two
    // hours ago, so the four recent people come back and the two older ones do not.
    sqlx::query("DELETE FROM platform.usager_index")
        .execute(&db.admin)
        .await
        .expect("vidé");
    sqlx::query("UPDATE platform.usager_index_marks SET through = now() - interval '1 hour'")
        .execute(&db.admin)
        .await
        .expect("marque d'il y a une heure");
    assert_eq!(reindex(&platform, &territory, 2).await.expect("depuis"), 4);
    assert_eq!(indexed().await, 4);
    // At once again: nothing new.
    assert_eq!(reindex(&platform, &territory, 2).await.expect("rien"), 0);
    // Without the mark, the whole territory again: the two older people.
    sqlx::query("DELETE FROM platform.usager_index_marks")
        .execute(&db.admin)
        .await
        .expect("sans marque");
    assert_eq!(reindex(&platform, &territory, 2).await.expect("tout"), 2);
    assert_eq!(indexed().await, 6);
}

/// A run that hangs (a lock held, a hung node) is stopped before its lease ends, so no other
/// replica can start it a second time meanwhile, and the jobs after it run; it is recorded as
/// failed, and is due again at its next period.
#[tokio::test]
async fn a_hung_run_is_stopped_before_its_lease_ends_and_the_next_jobs_run() {
    let db = TestDatabase::create().await;
    let mut settings = test_support::test_settings(&db.app_url);
    settings.jobs.lease_seconds = 4;
    let (a, b) = (
        Platform::connect(settings.clone()).await.expect("a"),
        Platform::connect(settings).await.expect("b"),
    );
    // Held by the test: the hung job waits on it.
    let mut holder = db.admin.acquire().await.expect("connexion");
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *holder)
        .await
        .expect("verrou");
    let starts = Arc::new(AtomicU64::new(0));
    let counter = starts.clone();
    let hung = Job::new("bloque", Duration::from_secs(3600), move |p: Platform| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            sqlx::query("SELECT pg_advisory_lock(4242)")
                .execute(p.platform_pool())
                .await?;
            Ok(1)
        }
    });
    let next = Job::new("suivant", Duration::from_secs(3600), |_| async { Ok(7) });
    let jobs = vec![hung, next];
    let started = std::time::Instant::now();
    // Once a's run has started, and while it hangs, b looks for due jobs again and again, past
    // the lease.
    let b_looks = async {
        while starts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ran = Vec::new();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(r) =
                tokio::time::timeout(Duration::from_secs(1), run_due(&b, &jobs[..1])).await
            {
                ran.extend(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ran
    };
    let (ran_a, ran_b) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), run_due(&a, &jobs)),
        b_looks
    );
    let ran_a = ran_a.expect("le travail bloqué est arrêté");
    let outcomes: Vec<_> = ran_a.iter().map(|(name, r)| (*name, r.is_ok())).collect();
    assert_eq!(
        outcomes,
        [("bloque", false), ("suivant", true)],
        "{ran_a:?}"
    );
    assert!(ran_b.is_empty(), "{ran_b:?}");
    assert_eq!(starts.load(Ordering::SeqCst), 1, "un seul départ");
    let (finished, error): (bool, Option<String>) = sqlx::query_as(
        "SELECT last_finished_at IS NOT NULL, last_error FROM platform.job_runs WHERE name = 'bloque'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("suivi");
    assert!(finished);
    assert!(error.is_some_and(|e| e.contains("lease")));
    // Due again at its next period only.
    assert!(run_due(&a, &jobs[..1]).await.is_empty());
}
