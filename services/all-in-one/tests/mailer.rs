//! Delivery guarantees of the notification mailer against real SMTP servers (MailDev): nothing
//! lost and nothing sent twice through an SMTP outage; nothing sent twice when the worker dies
//! between sending and recording; dead letters visible and re-queueable.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use foundation::app::Platform;
use foundation::outbox::{
    Channel, MAX_ATTEMPTS, OutboxMessage, enqueue_platform, list_stuck, requeue,
};
use notification_mailer::worker::OutboxWorker;
use test_support::database::TestDatabase;
use test_support::private_maildev::PrivateMailDev;
use uuid::Uuid;

fn message(to: &str, template: &'static str) -> OutboxMessage {
    OutboxMessage {
        channel: Channel::Email,
        recipient: to.into(),
        template,
        payload: serde_json::json!({ "sent_by": "le test" }),
    }
}

async fn enqueue(db: &TestDatabase, to: &str, template: &'static str) -> Uuid {
    let mut tx = db.admin.begin().await.expect("tx");
    let id = enqueue_platform(&mut tx, &message(to, template))
        .await
        .expect("file");
    tx.commit().await.expect("commit");
    id
}

async fn sent_count(db: &TestDatabase) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM platform.outbox WHERE sent_at IS NOT NULL")
        .fetch_one(&db.admin)
        .await
        .expect("count")
}

/// Queues `count` messages in territory 33's outbox in one transaction (woken at its commit).
async fn queue_in_33(app_url: &str, prefix: &str, count: usize) -> HashSet<Uuid> {
    let tenancy = test_support::tenancy(sqlx::PgPool::connect(app_url).await.expect("pool")).await;
    let territory = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("33");
    let mut tx = territory.begin().await.expect("tx");
    let mut ids = HashSet::new();
    for n in 0..count {
        let to = format!("{prefix}-{n}@example.test");
        ids.insert(
            foundation::outbox::enqueue_tenant(&mut tx, &message(&to, "operator_test"))
                .await
                .expect("file"),
        );
    }
    tx.commit().await.expect("commit");
    ids
}

/// The Message-IDs MailDev received.
async fn received_ids(maildev: &PrivateMailDev) -> Vec<String> {
    maildev
        .messages()
        .await
        .iter()
        .filter_map(|m| m["headers"]["message-id"].as_str().map(str::to_owned))
        .collect()
}

/// Each of `ids` received exactly once.
fn assert_each_once(received: &[String], ids: &HashSet<Uuid>) {
    for id in ids {
        let copies = received
            .iter()
            .filter(|m| **m == format!("<{id}@aidantsconnect.beta.gouv.fr>"))
            .count();
        assert_eq!(copies, 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_loses_nothing_and_sends_nothing_twice() {
    // The default: the backlog drains on four sessions at once.
    const SESSIONS: u32 = 4;
    let mut maildev = PrivateMailDev::start().await;
    let db = TestDatabase::create().await;
    let smtp_port = maildev.smtp_port;
    let app = common::spawn_app_with(db, |s| {
        s.smtp.port = smtp_port;
        s.smtp.retry_base_ms = 200;
        s.smtp.timeout_ms = 2_000;
        s.smtp.sessions = SESSIONS;
    })
    .await;
    // 500 actions queue a message each: none of them sees an error, whatever SMTP does.
    let mut ids = HashSet::new();
    for n in 0..500 {
        ids.insert(enqueue(&app.db, &format!("panne-{n}@example.test"), "operator_test").await);
    }
    // Stop the SMTP server while the worker is delivering.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent_count(&app.db).await < 50 {
        assert!(Instant::now() < deadline, "aucun envoi");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    maildev.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = sent_count(&app.db).await;
    assert!(
        during < 500,
        "la panne doit tomber pendant l'envoi ({during} envoyés)"
    );
    maildev.restart().await;
    // The backlog drains after the restart: every message ends up sent, or — for the one or
    // two per open session cut at the instant of the crash — parked as uncertain for an
    // operator (it may have been accepted just before the crash: never sent twice).
    let platform = Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let deadline = Instant::now() + Duration::from_secs(120);
    let uncertain = loop {
        let stuck = list_stuck(&platform.tenancy, MAX_ATTEMPTS)
            .await
            .expect("liste");
        let sent = sent_count(&app.db).await;
        if sent + stuck.len() as i64 == 500 {
            assert!(stuck.iter().all(|m| m.state == "uncertain"), "{stuck:?}");
            break stuck;
        }
        assert!(
            Instant::now() < deadline,
            "file non vidée : {sent} envoyés, {} bloqués",
            stuck.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(uncertain.len() <= 2 * SESSIONS as usize, "{uncertain:?}");
    let message_ids = received_ids(&maildev).await;
    let unique: HashSet<&String> = message_ids.iter().collect();
    assert_eq!(message_ids.len(), unique.len(), "0 en double");
    let uncertain_ids: HashSet<Uuid> = uncertain.iter().map(|m| m.id).collect();
    for id in &ids {
        let delivered = unique.contains(&format!("<{id}@aidantsconnect.beta.gouv.fr>"));
        assert!(delivered || uncertain_ids.contains(id), "perdu : {id}");
    }
    // Everything recorded as sent was received.
    let sent_ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM platform.outbox WHERE sent_at IS NOT NULL")
            .fetch_all(&app.db.admin)
            .await
            .expect("envoyés");
    for id in sent_ids {
        assert!(
            unique.contains(&format!("<{id}@aidantsconnect.beta.gouv.fr>")),
            "marqué envoyé mais non reçu : {id}"
        );
    }
}

#[tokio::test]
async fn a_worker_dying_between_send_and_record_does_not_send_twice() {
    let db = TestDatabase::create().await;
    let settings = test_support::test_settings(&db.app_url);
    let platform = Platform::connect(settings.clone())
        .await
        .expect("plateforme");
    let worker = || OutboxWorker::from_platform(platform.clone()).expect("worker");
    let to = format!("crash-{}@example.test", Uuid::new_v4().simple());
    let id = enqueue(&db, &to, "operator_test").await;

    // A worker sends, then dies before recording the outcome.
    assert_eq!(worker().send_without_recording().await.expect("envoi"), 1);
    test_support::maildev::wait_for_mail_to(&to, Duration::from_secs(10))
        .await
        .expect("reçu une fois");
    // Another worker passes: the message is not sent again.
    worker().deliver_due().await.expect("passage");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(test_support::maildev::mails_to(&to).await.len(), 1);

    // After 5 minutes it shows as uncertain for the operators, who may re-queue it.
    sqlx::query("UPDATE platform.outbox SET sending_started_at = now() - interval '6 minutes' WHERE id = $1")
        .bind(id)
        .execute(&db.admin)
        .await
        .expect("âge");
    let stuck = list_stuck(&platform.tenancy, MAX_ATTEMPTS)
        .await
        .expect("liste");
    assert_eq!(
        stuck.iter().map(|m| (m.id, m.state)).collect::<Vec<_>>(),
        vec![(id, "uncertain")]
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_requeued() {
    let db = TestDatabase::create().await;
    let settings = test_support::test_settings(&db.app_url);
    let platform = Platform::connect(settings.clone())
        .await
        .expect("plateforme");
    let worker = OutboxWorker::from_platform(platform.clone()).expect("worker");
    let to = format!("mort-{}@example.test", Uuid::new_v4().simple());
    // A template that does not exist: a permanent failure, given up at once.
    let id = enqueue(&db, &to, "modele_inexistant").await;
    worker.deliver_due().await.expect("passage");
    let stuck = list_stuck(&platform.tenancy, MAX_ATTEMPTS)
        .await
        .expect("liste");
    assert_eq!(
        stuck
            .iter()
            .map(|m| (m.id, m.state, m.attempts))
            .collect::<Vec<_>>(),
        vec![(id, "dead", MAX_ATTEMPTS)]
    );
    let error: String = sqlx::query_scalar("SELECT last_error FROM platform.outbox WHERE id = $1")
        .bind(id)
        .fetch_one(&db.admin)
        .await
        .expect("erreur");
    assert!(error.contains("modèle de message inconnu"), "{error}");
    // Re-queued (say, after a fix), it is tried again.
    sqlx::query("UPDATE platform.outbox SET template = 'operator_test' WHERE id = $1")
        .bind(id)
        .execute(&db.admin)
        .await
        .expect("correction");
    assert!(requeue(&platform.tenancy, id).await.expect("remise"));
    worker.deliver_due().await.expect("passage");
    test_support::maildev::wait_for_mail_to(&to, Duration::from_secs(10))
        .await
        .expect("envoyé après remise en file");
    assert!(
        !requeue(&platform.tenancy, id).await.expect("remise"),
        "déjà envoyé"
    );
}

#[tokio::test]
async fn starttls_and_tls_relays_get_mail_only_over_a_verified_encrypted_session() {
    use foundation::config::SmtpSecurity;
    use notification_mailer::smtp::{Mailer, SendError};
    use test_support::private_smtp_tls::{Mode, PrivateSmtpTls};

    let rendered = notification_mailer::templates::render(
        "operator_test",
        &serde_json::json!({ "sent_by": "le test TLS" }),
    )
    .expect("rendu");
    for mode in [Mode::Starttls, Mode::Tls] {
        let relay = PrivateSmtpTls::start(mode).await;
        let mut settings = relay.smtp_settings();
        settings.timeout_ms = 5_000;

        // A certificate from an authority nobody trusts: refused before anything is sent, so
        // it will be retried (once the relay's authority is configured).
        let untrusted = Mailer::new(&settings).expect("mailer");
        match untrusted
            .send(Uuid::now_v7(), "usager@example.test", &rendered)
            .await
        {
            Err(SendError::Transient(why)) => {
                assert!(
                    why.to_lowercase().contains("certificate"),
                    "{mode:?} : {why}"
                )
            }
            other => panic!("{mode:?} : certificat non vérifié ? {other:?}"),
        }
        assert!(relay.messages().is_empty(), "{mode:?}");

        // The relay's authority trusted: delivered over an encrypted session.
        settings.ca_file = Some(relay.ca_file());
        let trusted = Mailer::new(&settings).expect("mailer");
        let id = Uuid::now_v7();
        trusted
            .send(id, "usager@example.test", &rendered)
            .await
            .unwrap_or_else(|e| panic!("{mode:?} : {e}"));
        let got = relay.messages();
        assert_eq!(got.len(), 1, "{mode:?}");
        assert_eq!(got[0]["secure"], true);
        assert_eq!(got[0]["to"], serde_json::json!(["usager@example.test"]));
        let raw = got[0]["raw"].as_str().expect("message");
        assert!(raw.contains(&format!("Message-ID: <{id}@")), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
    }

    // No encryption configured against a relay that requires it: the relay says no, nothing
    // is accepted.
    let relay = PrivateSmtpTls::start(Mode::Starttls).await;
    let mut settings = foundation::config::Settings::default().smtp;
    settings.port = relay.port;
    settings.security = SmtpSecurity::None;
    let plain = Mailer::new(&settings).expect("mailer");
    assert!(
        plain
            .send(Uuid::now_v7(), "usager@example.test", &rendered)
            .await
            .is_err()
    );
    assert!(relay.messages().is_empty());
    // An authority file that cannot be read stops the mailer at start, with its path.
    settings.ca_file = Some("/nonexistent/ca.pem".into());
    let err = Mailer::new(&settings).err().expect("refusé").to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    // A file holding no PEM certificate (a key, DER, a typo) too.
    let not_pem = std::env::temp_dir().join(format!("pas-un-certificat-{}", Uuid::new_v4()));
    std::fs::write(
        &not_pem,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("fichier");
    settings.ca_file = Some(not_pem.display().to_string());
    let err = Mailer::new(&settings).err().expect("refusé").to_string();
    let _ = std::fs::remove_file(&not_pem);
    assert!(err.contains("aucun certificat PEM"), "{err}");
}

/// A login link (a platform message, valid minutes) never waits behind a territory's backlog:
/// with 120 of a territory's messages queued, a platform message queued after them is sent
/// while most of them are still waiting (the worker sends the platform's due messages between
/// a territory's batches of 20).
#[tokio::test]
async fn a_platform_message_is_sent_before_a_territory_backlog_drains() {
    let maildev = PrivateMailDev::start().await;
    let db = TestDatabase::with_departements(&["33"]).await;
    let smtp_port = maildev.smtp_port;
    let app = common::spawn_app_with(db, |s| {
        s.smtp.port = smtp_port;
    })
    .await;
    queue_in_33(&app.db.app_url, "usager", 120).await;
    let link = enqueue(&app.db, "aidant@example.test", "operator_test").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting_then: i64 = loop {
        let (sent, waiting): (bool, i64) = sqlx::query_as(
            "SELECT (SELECT sent_at IS NOT NULL FROM platform.outbox WHERE id = $1),
                    (SELECT count(*) FROM dep_33.outbox WHERE sent_at IS NULL)",
        )
        .bind(link)
        .fetch_one(&app.db.admin)
        .await
        .expect("état");
        if sent {
            break waiting;
        }
        assert!(
            Instant::now() < deadline,
            "message de la plateforme jamais envoyé"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        waiting_then >= 60,
        "sent after {} of the territory's 120 messages",
        120 - waiting_then
    );
}

/// A relay in front of an SMTP server that closes a session when its client starts its
/// `limit + 1`-th message (as a server limiting the messages of a session does).
async fn counting_relay(server_port: u16, limit: usize) -> test_support::smtp_relay::SmtpRelay {
    test_support::smtp_relay::start(
        server_port,
        test_support::smtp_relay::Behaviour {
            messages_per_session: Some(limit),
            ..Default::default()
        },
    )
    .await
}

/// The messages of a batch go out on one SMTP session (MailDev takes about 100 ms to greet a
/// session, and a message on an open one about 1 ms), and a session the server closes between
/// two messages is replaced at once: every message delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_out_on_one_smtp_session_and_a_closed_session_is_replaced() {
    let maildev = PrivateMailDev::start().await;
    for (limit, sessions) in [(100, 1), (6, 4)] {
        let relay = counting_relay(maildev.smtp_port, limit).await;
        let db = TestDatabase::create().await;
        let mut settings = test_support::test_settings(&db.app_url);
        settings.smtp.port = relay.port;
        let platform = Platform::connect(settings).await.expect("plateforme");
        let worker = OutboxWorker::from_platform(platform).expect("worker");
        let mut ids = HashSet::new();
        for n in 0..20 {
            let to = format!("lot-{limit}-{n}@example.test");
            ids.insert(enqueue(&db, &to, "operator_test").await);
        }
        assert_eq!(worker.deliver_due().await.expect("passage"), 20);
        assert_eq!(sent_count(&db).await, 20);
        assert_eq!(
            relay.accepted.load(std::sync::atomic::Ordering::SeqCst),
            sessions,
            "{limit} messages par session au plus"
        );
        assert_each_once(&received_ids(&maildev).await, &ids);
    }
}

/// A territory's backlog goes out on several SMTP sessions at once (`smtp.sessions`, here 3):
/// a second lane opens while the first claims a full batch. Never more sessions than that at
/// once, and every message delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_goes_out_on_parallel_sessions_each_message_once() {
    let maildev = PrivateMailDev::start().await;
    let relay = counting_relay(maildev.smtp_port, 1_000).await;
    let db = TestDatabase::with_departements(&["33"]).await;
    let relay_port = relay.port;
    let app = common::spawn_app_with(db, |s| {
        s.smtp.port = relay_port;
        s.smtp.sessions = 3;
    })
    .await;
    let ids = queue_in_33(&app.db.app_url, "file", 200).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dep_33.outbox WHERE sent_at IS NULL")
                .fetch_one(&app.db.admin)
                .await
                .expect("compte");
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} messages jamais envoyés"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (2..=3).contains(&relay.most_open.load(std::sync::atomic::Ordering::SeqCst)),
        "{} sessions ouvertes à la fois",
        relay.most_open.load(std::sync::atomic::Ordering::SeqCst)
    );
    let received = received_ids(&maildev).await;
    assert_eq!(received.len(), 200);
    assert_each_once(&received, &ids);
}

/// How a [`silent_relay`] stops answering.
#[derive(Clone, Copy)]
enum Silence {
    /// It accepts the connection and never greets.
    FromTheStart,
    /// It passes everything to MailDev, but once a message's content has gone through, it
    /// keeps MailDev's answers: MailDev has the message, the client never hears so.
    AfterContent,
}

/// A relay in front of MailDev that stops answering, keeping its connections open (a hung
/// relay, a firewall that drops packets mid-session); how many connections it accepted.
async fn silent_relay(
    server_port: u16,
    silence: Silence,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    if let Silence::AfterContent = silence {
        // The gate's sender dropped at once: never opened.
        let (_, gate) = tokio::sync::watch::channel(false);
        let relay = test_support::smtp_relay::start(
            server_port,
            test_support::smtp_relay::Behaviour {
                after_content: Some(gate),
                ..Default::default()
            },
        )
        .await;
        return (relay.port, relay.accepted);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relais");
    let port = listener.local_addr().expect("adresse").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let _held = client;
                std::future::pending::<()>().await
            });
        }
    });
    (port, accepted)
}

/// A relay that stops answering holds a batch for one wait at most (`smtp.timeout_ms`, or
/// `smtp.content_timeout_ms` for the answer to a content): the messages it never greeted are
/// retried later (one connection tried for the whole batch, not one per message); a message
/// whose content it took without answering is uncertain, never sent again, and the batch's
/// next one is retried later without being tried now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_answering_holds_nothing_and_sends_nothing_twice() {
    let maildev = PrivateMailDev::start().await;
    let db = TestDatabase::create().await;
    let worker_on = |port: u16, timeout_ms: u64, content_timeout_ms: u64| {
        let mut settings = test_support::test_settings(&db.app_url);
        settings.smtp.port = port;
        settings.smtp.timeout_ms = timeout_ms;
        settings.smtp.content_timeout_ms = content_timeout_ms;
        // A failed message is due again only after this test.
        settings.smtp.retry_base_ms = 600_000;
        async move {
            let platform = Platform::connect(settings).await.expect("plateforme");
            OutboxWorker::from_platform(platform).expect("worker")
        }
    };
    let row = |id: Uuid| {
        sqlx::query_as::<_, (bool, bool, i32, Option<String>)>(
            "SELECT sent_at IS NOT NULL, sending_started_at IS NOT NULL, attempts, last_error
             FROM platform.outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.admin)
    };
    let bounded = Duration::from_secs(30);

    // Never greeted: both messages fail for now and wait for their retry.
    let (port, accepted) = silent_relay(maildev.smtp_port, Silence::FromTheStart).await;
    let worker = worker_on(port, 1_000, 60_000).await;
    let waiting = [
        enqueue(&db, "silence-a@example.test", "operator_test").await,
        enqueue(&db, "silence-b@example.test", "operator_test").await,
    ];
    let claimed = tokio::time::timeout(bounded, worker.deliver_due())
        .await
        .expect("le passage attend le relais silencieux sans fin")
        .expect("passage");
    assert_eq!(claimed, 2);
    for id in waiting {
        let (sent, claimed, attempts, error) = row(id).await.expect("ligne");
        assert!(!sent && !claimed, "{id} : à renvoyer plus tard");
        assert_eq!(attempts, 1, "{id}");
        let error = error.unwrap_or_default();
        assert!(error.contains("délai"), "{id} : {error}");
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "une connexion pour le lot, pas une par message"
    );

    // Silent once the content went through: MailDev has the batch's first message once, and it
    // stays uncertain; the other is not tried on this batch (a batch's order is not promised).
    let (port, accepted) = silent_relay(maildev.smtp_port, Silence::AfterContent).await;
    let worker = worker_on(port, 10_000, 1_000).await;
    let pair = [
        enqueue(&db, "silence-c@example.test", "operator_test").await,
        enqueue(&db, "silence-d@example.test", "operator_test").await,
    ];
    let claimed = tokio::time::timeout(bounded, worker.deliver_due())
        .await
        .expect("le passage attend la réponse au contenu sans fin")
        .expect("passage");
    assert_eq!(claimed, 2);
    let mut uncertain = Vec::new();
    let mut later = Vec::new();
    for id in pair {
        let (sent, claimed, attempts, error) = row(id).await.expect("ligne");
        let error = error.unwrap_or_default();
        assert!(!sent, "{id} : rien n'a été confirmé");
        if claimed {
            // Neither sent nor given back to the queue.
            assert!(
                error.contains("incertain") && error.contains("délai"),
                "{error}"
            );
            uncertain.push(id);
        } else {
            assert_eq!(attempts, 1, "{id}");
            assert!(error.contains("cessé de répondre"), "{error}");
            later.push(id);
        }
    }
    assert_eq!(
        (uncertain.len(), later.len()),
        (1, 1),
        "{uncertain:?} {later:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(worker.deliver_due().await.expect("passage"), 0);
    let received = received_ids(&maildev).await;
    assert_each_once(&received, &uncertain.into_iter().collect());
    let never = format!("<{}@aidantsconnect.beta.gouv.fr>", later[0]);
    assert!(
        !received.contains(&never),
        "{never} : pas essayé sur ce lot"
    );
}
