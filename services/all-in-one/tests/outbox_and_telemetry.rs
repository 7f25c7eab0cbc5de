//! The transactional outbox reaches MailDev through SMTP; request spans reach an OTLP receiver.

mod common;

use std::time::Duration;

use common::spawn_app;
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform, enqueue_tenant};
use foundation::tenancy::DepartementCode;

fn message(to: &str) -> OutboxMessage {
    OutboxMessage {
        channel: Channel::Email,
        recipient: to.into(),
        template: "operator_test",
        payload: serde_json::json!({ "sent_by": "le test d'intégration" }),
    }
}

#[tokio::test]
async fn mails_put_in_the_national_and_territorial_outboxes_arrive_in_maildev() {
    let app = spawn_app(&["33"]).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let national = format!("national-{unique}@example.test");
    let territorial = format!("gironde-{unique}@example.test");

    let mut tx = app.db.admin.begin().await.expect("tx");
    let id = enqueue_platform(&mut tx, &message(&national))
        .await
        .expect("file nationale");
    tx.commit().await.expect("commit");

    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("contexte");
    let mut tx = ctx.begin().await.expect("tx");
    enqueue_tenant(&mut tx, &message(&territorial))
        .await
        .expect("file de la Gironde");
    tx.commit().await.expect("commit");

    let mail = test_support::maildev::wait_for_mail_to(&national, Duration::from_secs(20))
        .await
        .expect("courriel national reçu");
    assert_eq!(mail["subject"], "Aidants Connect : message de test");
    assert!(
        mail["text"]
            .as_str()
            .expect("texte")
            .contains("envoyé par le test d'intégration"),
        "{mail}"
    );
    assert_eq!(
        mail["headers"]["message-id"],
        format!("<{id}@aidantsconnect.beta.gouv.fr>")
    );
    test_support::maildev::wait_for_mail_to(&territorial, Duration::from_secs(20))
        .await
        .expect("courriel territorial reçu");

    // Recorded as sent, so it will never be sent again.
    let sent: bool =
        sqlx::query_scalar("SELECT sent_at IS NOT NULL FROM platform.outbox WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.admin)
            .await
            .expect("état");
    assert!(sent);
}

#[tokio::test]
async fn a_rolled_back_action_sends_nothing() {
    let app = spawn_app(&[]).await;
    let to = format!("annule-{}@example.test", uuid::Uuid::new_v4().simple());
    let mut tx = app.db.admin.begin().await.expect("tx");
    enqueue_platform(&mut tx, &message(&to))
        .await
        .expect("file");
    tx.rollback().await.expect("rollback");
    // A marker sent afterwards proves the worker ran; the rolled-back message never comes.
    let marker = format!("temoin-{}@example.test", uuid::Uuid::new_v4().simple());
    let mut tx = app.db.admin.begin().await.expect("tx");
    enqueue_platform(&mut tx, &message(&marker))
        .await
        .expect("file");
    tx.commit().await.expect("commit");
    test_support::maildev::wait_for_mail_to(&marker, Duration::from_secs(20))
        .await
        .expect("témoin reçu");
    assert!(
        test_support::maildev::wait_for_mail_to(&to, Duration::from_millis(300))
            .await
            .is_none()
    );
}

/// The next notification's payload within `wait` milliseconds, if one comes.
async fn next(listener: &mut sqlx::postgres::PgListener, wait: u64) -> Option<String> {
    tokio::time::timeout(Duration::from_millis(wait), listener.recv())
        .await
        .ok()
        .map(|n| n.expect("notification").payload().to_owned())
}

/// A territory's message wakes the consumer once its transaction has committed (the wake-up
/// is sent after the commit, see `outbox::OutboxWake`), never before it and never for a
/// rolled-back transaction; concurrent commits are woken (coalesced), so are commits within a
/// few milliseconds of each other, and a commit after them is woken again.
#[tokio::test]
async fn a_territorys_commit_wakes_the_consumer_after_it_and_a_rollback_does_not() {
    let db = test_support::database::TestDatabase::with_departements(&["33", "59"]).await;
    let tenancy = test_support::tenancy(db.admin.clone()).await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.admin_url)
        .await
        .expect("écoute");
    listener
        .listen(foundation::outbox::NOTIFY_CHANNEL)
        .await
        .expect("LISTEN");
    let gironde = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("33");
    let nord = tenancy
        .unguarded(DepartementCode::parse("59").expect("59"))
        .await
        .expect("59");

    // Queued, not committed: nothing yet.
    let mut tx = gironde.begin().await.expect("tx");
    let first = enqueue_tenant(&mut tx, &message("avant@example.test"))
        .await
        .expect("file");
    assert_eq!(next(&mut listener, 300).await, None);
    tx.commit().await.expect("commit");
    assert_eq!(next(&mut listener, 5000).await.as_deref(), Some("33"));

    // Rolled back: nothing, while a commit in another territory right after it is woken.
    let mut tx = gironde.begin().await.expect("tx");
    enqueue_tenant(&mut tx, &message("annule@example.test"))
        .await
        .expect("file");
    tx.rollback().await.expect("rollback");
    let mut tx = nord.begin().await.expect("tx");
    enqueue_tenant(&mut tx, &message("nord@example.test"))
        .await
        .expect("file");
    tx.commit().await.expect("commit");
    assert_eq!(next(&mut listener, 5000).await.as_deref(), Some("59"));
    assert_eq!(next(&mut listener, 300).await, None);

    // Forty concurrent commits in the Gironde: their wake-ups may be coalesced into fewer.
    let commits = (0..40).map(|i| {
        let gironde = gironde.clone();
        tokio::spawn(async move {
            let mut tx = gironde.begin().await.expect("tx");
            enqueue_tenant(&mut tx, &message(&format!("lot-{i}@example.test")))
                .await
                .expect("file");
            tx.commit().await.expect("commit");
        })
    });
    for commit in commits.collect::<Vec<_>>() {
        commit.await.expect("tâche");
    }
    let mut woken = 0;
    while let Some(payload) = next(&mut listener, 1000).await {
        assert_eq!(payload, "33");
        woken += 1;
    }
    assert!((1..=40).contains(&woken), "{woken} réveils");

    // Commits one after the other: a wake-up waits a few milliseconds (`WAKE_GATHERING`,
    // 5 ms) for the commits that follow it, so ten commits in a row go out in at most one
    // wake-up per 5 ms they took, and two more (2 for 10 commits in 7–8 ms, seen; without the
    // wait, 4 to 7 in 7 ms).
    let started = std::time::Instant::now();
    for i in 0..10 {
        let mut tx = gironde.begin().await.expect("tx");
        enqueue_tenant(&mut tx, &message(&format!("suite-{i}@example.test")))
            .await
            .expect("file");
        tx.commit().await.expect("commit");
    }
    let took = started.elapsed().as_millis() as usize;
    let mut woken = 0;
    while let Some(payload) = next(&mut listener, 1000).await {
        assert_eq!(payload, "33");
        woken += 1;
    }
    assert!(
        (1..=took / 5 + 2).contains(&woken),
        "{woken} réveils pour 10 validations en {took} ms"
    );

    // Once those are sent, the sender has let go: the next commit is woken again.
    let mut tx = nord.begin().await.expect("tx");
    enqueue_tenant(&mut tx, &message("apres-le-lot@example.test"))
        .await
        .expect("file");
    tx.commit().await.expect("commit");
    assert_eq!(next(&mut listener, 5000).await.as_deref(), Some("59"));

    // An operator's re-queue of a territory's dead letter wakes the consumer the same way.
    sqlx::query("UPDATE dep_33.outbox SET attempts = $2 WHERE id = $1")
        .bind(first)
        .bind(foundation::outbox::MAX_ATTEMPTS)
        .execute(&db.admin)
        .await
        .expect("lettre morte");
    assert!(
        foundation::outbox::requeue(&tenancy, first)
            .await
            .expect("remise")
    );
    assert_eq!(next(&mut listener, 5000).await.as_deref(), Some("33"));
}

// Several threads: the exporter's flush blocks its caller while the receiver answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_otlp_receiver_without_personal_data() {
    let (port, spans) = test_support::otlp::start(0).await.expect("récepteur OTLP");
    let mut telemetry = foundation::config::TelemetrySettings {
        log_filter: "warn".into(),
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        service_name: "aidants-connect-test".into(),
    };
    let guard = std::sync::Arc::new(foundation::telemetry::init(&telemetry).expect("télémétrie"));
    let app = spawn_app(&["33"]).await;
    telemetry.otlp_endpoint = None;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("contexte");
    let tenant = foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(ctx.departement()),
        "Conseil",
    )
    .await
    .expect("tenant");
    habilitation_desk::structures::create_structure(
        &ctx,
        &habilitation_desk::structures::NewStructure {
            tenant_id: tenant.id,
            name: "Structure Témoin Confidentielle".into(),
            kind: "mairie".into(),
            commune: foundation::tenancy::CommuneCode::parse("33063").expect("commune"),
            // The open data leaves out places without an address.
            address: "1 place Pey-Berland".into(),
            france_services: false,
        },
    )
    .await
    .expect("structure");

    let resp = app.get("/api/habilitation/departements/33/lieux").await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Structure Témoin Confidentielle")
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let span = loop {
        let flushing = guard.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .expect("flush");
        let found = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s.attribute("request_id") == Some(&request_id))
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(tokio::time::Instant::now() < deadline, "aucun span reçu");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(span.name, "request");
    // The route template, never the concrete path (poem-openapi names path parameters :paramN).
    assert_eq!(
        span.attribute("http.route"),
        Some("/api/habilitation/departements/:param0/lieux")
    );
    assert_eq!(span.attribute("tenant"), Some("33"));
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));
    let everything = format!("{:?}", spans.lock().expect("spans"));
    assert!(
        !everything.contains("Témoin"),
        "donnée de la réponse dans les traces"
    );
}

/// A territory whose outbox cannot be read (a hung node, a lock a migration holds) does not hold
/// the national outbox: login links leave while the consumer waits on that territory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_links_leave_while_a_territory_outbox_is_stuck() {
    let app = spawn_app(&["33"]).await;
    // Held until the end of the test: every read or write of 33's outbox waits.
    let mut lock = app.db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    // 33's wake-up: the consumer goes to drain it, and waits.
    sqlx::query("SELECT pg_notify($1, '33')")
        .bind(foundation::outbox::NOTIFY_CHANNEL)
        .execute(&app.db.admin)
        .await
        .expect("réveil");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to = format!("lien-{}@example.test", uuid::Uuid::new_v4().simple());
    let mut tx = app.db.admin.begin().await.expect("tx");
    enqueue_platform(&mut tx, &message(&to))
        .await
        .expect("file nationale");
    tx.commit().await.expect("commit");
    // Its wake-up, as the producers send it after their commit.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(foundation::outbox::NOTIFY_CHANNEL)
        .bind(foundation::outbox::PLATFORM_SCOPE)
        .execute(&app.db.admin)
        .await
        .expect("réveil");
    test_support::maildev::wait_for_mail_to(&to, Duration::from_secs(10))
        .await
        .expect("le message national part malgré le territoire bloqué");
    lock.rollback().await.expect("fin du verrou");
}

/// Territories whose outboxes cannot be read (a lock a migration or a restore holds, a hung
/// node) hold back no other territory's messages: each costs the consumer its bounded claim
/// (3 s), and a territory woken by its producer's commit goes before the sweep's others. Their
/// own messages leave once they can be read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_territory_holds_back_no_other_territory() {
    let app = spawn_app(&["34", "35", "36", "37", "38"]).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (herault, ille) = (
        format!("herault-{unique}@example.test"),
        format!("ille-{unique}@example.test"),
    );
    let territory = |code: &str| {
        let tenancy = tenancy.clone();
        let code = DepartementCode::parse(code).expect("code");
        async move { tenancy.unguarded(code).await.expect("territoire") }
    };
    // Held until released below: every read or write of these outboxes waits.
    let mut lock = app.db.admin.begin().await.expect("tx");
    sqlx::query(
        "LOCK TABLE dep_35.outbox, dep_36.outbox, dep_37.outbox, dep_38.outbox
         IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *lock)
    .await
    .expect("verrou");
    // The next sweep (every 15 s) visits the territories in code order: 34, then 35, whose
    // claim waits on the lock; 36, 37 and 38 are still to come.
    let waiting = async {
        loop {
            let waits: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE outbox SET sending_started_at%'",
            )
            .fetch_one(&app.db.admin)
            .await
            .expect("attentes");
            if waits > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("un balayage attend le verrou");
    // 34's message, its wake-up sent by the commit: it leaves after 35's claim gives up, before
    // the three other blocked territories (9 s more if they went first).
    common::queue_test_mail(&territory("34").await, &herault).await;
    test_support::maildev::wait_for_mail_to(&herault, Duration::from_secs(7))
        .await
        .expect("le message de l'Hérault part malgré les territoires bloqués");

    // 35's message, queued as soon as its outbox can be written, leaves with its wake-up.
    let ille_tx = {
        let territory = territory("35").await;
        let ille = ille.clone();
        tokio::spawn(async move { common::queue_test_mail(&territory, &ille).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.rollback().await.expect("fin du verrou");
    ille_tx.await.expect("écriture");
    test_support::maildev::wait_for_mail_to(&ille, Duration::from_secs(40))
        .await
        .expect("le message de l'Ille-et-Vilaine part une fois le verrou levé");
}

/// A territory that stops answering after a message was sent and before its outcome is recorded
/// (here a lock a migration or a restore would hold; on Citus a hung worker) holds back no other
/// territory's mail: the outcome's write gives up within seconds, and so does giving back the
/// batch's other message, never tried. Both are kept and written once the territory answers
/// again: the message sent is marked sent, not left claimed as if its fate were unknown, the
/// other one leaves, and neither is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_territory_cannot_take_is_recorded_once_it_answers() {
    // MailDev's answer to the first message's content held until the gate opens: the message is
    // in MailDev, its outcome not yet known to the worker.
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let maildev = test_support::stack_var("AC_SMTP__PORT")
        .parse()
        .expect("port");
    let relay = test_support::smtp_relay::start(
        maildev,
        test_support::smtp_relay::Behaviour {
            after_content: Some(gate),
            ..Default::default()
        },
    )
    .await;
    let db = test_support::database::TestDatabase::with_departements(&["33", "34"]).await;
    let app = common::spawn_app_with(db, |s| s.smtp.port = relay.port).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = |code: &str| {
        let tenancy = tenancy.clone();
        let code = DepartementCode::parse(code).expect("code");
        async move { tenancy.unguarded(code).await.expect("territoire") }
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (gironde, herault, gironde_next) = (
        [
            format!("gironde-{unique}@example.test"),
            format!("gironde-autre-{unique}@example.test"),
        ],
        format!("herault-{unique}@example.test"),
        format!("gironde-suite-{unique}@example.test"),
    );

    // Two messages in one commit: one batch.
    let mut tx = territory("33").await.begin().await.expect("tx");
    for to in &gironde {
        enqueue_tenant(&mut tx, &message(to))
            .await
            .expect("file de la Gironde");
    }
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(20), relay.content_passed.notified())
        .await
        .expect("le message de la Gironde est transmis au relais");
    // Sent, its answer held: the outbox of 33 is locked before the worker learns it was accepted.
    let mut lock = app.db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    open_gate.send(true).expect("ouverture");

    common::queue_test_mail(&territory("34").await, &herault).await;
    test_support::maildev::wait_for_mail_to(&herault, Duration::from_secs(10))
        .await
        .expect("le message de l'Hérault part pendant que la Gironde ne répond pas");
    let claimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.outbox
         WHERE recipient = ANY($1) AND sent_at IS NULL AND sending_started_at IS NOT NULL",
    )
    .bind(&gironde)
    .fetch_one(&mut *lock)
    .await
    .expect("messages de la Gironde");
    assert_eq!(claimed, 2, "rien n'est encore écrit pour la Gironde");
    lock.rollback().await.expect("fin du verrou");

    // Its next visit (here woken by another message) records the outcome before its claim.
    common::queue_test_mail(&territory("33").await, &gironde_next).await;
    test_support::maildev::wait_for_mail_to(&gironde_next, Duration::from_secs(20))
        .await
        .expect("la Gironde envoie de nouveau");
    // The batch's message never tried (either of the two: the claim orders them by time only)
    // leaves in the same drain.
    for to in &gironde {
        test_support::maildev::wait_for_mail_to(to, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{to} : jamais reçu"));
    }
    for to in &gironde {
        let (sent, attempts, last_error): (bool, i32, Option<String>) = sqlx::query_as(
            "SELECT sent_at IS NOT NULL, attempts, last_error FROM dep_33.outbox
             WHERE recipient = $1",
        )
        .bind(to)
        .fetch_one(&app.db.admin)
        .await
        .expect("message de la Gironde");
        assert_eq!((sent, attempts, last_error), (true, 1, None), "{to}");
        assert_eq!(
            test_support::maildev::mails_to(to).await.len(),
            1,
            "{to} : envoyé une seule fois"
        );
    }
}
