//! The service's own binary starts as its Kubernetes Deployment starts it (settings from
//! `AC_*` variables, ports 0), becomes ready and stops cleanly on SIGTERM.

#[tokio::test]
async fn the_binary_starts_becomes_ready_and_stops_on_sigterm() {
    test_support::service_binary::smoke(
        env!("CARGO_BIN_EXE_aidants-connect"),
        &["object_store", "smtp"],
    )
    .await;
}

/// The operators' test e-mail to `recipient`.
fn operator_test(recipient: String) -> foundation::outbox::OutboxMessage {
    foundation::outbox::OutboxMessage {
        channel: foundation::outbox::Channel::Email,
        recipient,
        template: "operator_test",
        payload: serde_json::json!({ "sent_by": "le test" }),
    }
}

/// A replica stopped (SIGTERM) while it sends a batch to a slow relay gives the batch's
/// messages not tried yet back to the queue at once, before it exits, even when the message in
/// hand takes longer than the 5 s the workers are given: only that message may be left
/// claimed without an outcome (for the operators: it may have been delivered), and none is sent
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_batch_gives_back_the_messages_it_has_not_tried() {
    use foundation::outbox::enqueue_platform;
    let maildev = test_support::private_maildev::PrivateMailDev::start().await;
    // Each answer 2 s late: a message (MAIL, RCPT, DATA, its content) takes 8 s.
    let relay = test_support::smtp_relay::start(
        maildev.smtp_port,
        test_support::smtp_relay::Behaviour {
            answer_delay: std::time::Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .port;
    let db = test_support::database::TestDatabase::create().await;
    let mut tx = db.admin.begin().await.expect("tx");
    for i in 0..10 {
        enqueue_platform(&mut tx, &operator_test(format!("lot-{i}@example.test")))
            .await
            .expect("file");
    }
    tx.commit().await.expect("commit");
    let service = test_support::service_binary::start_with(
        env!("CARGO_BIN_EXE_aidants-connect"),
        &db,
        &[
            ("AC_SMTP__PORT", &relay.to_string()),
            ("AC_SMTP__SESSIONS", "1"),
        ],
    )
    .await;
    // The batch is under way: its first message has arrived; 5 s later the second is in hand,
    // with more than 5 s to go (with the batch given back only once that message is done, 9
    // messages were left claimed: seen).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while maildev.messages().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "aucun message arrivé");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let exit = service.terminate().await;
    assert!(exit.success(), "{exit:?}");

    let (untried, sent, queued): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sending_started_at IS NOT NULL AND sent_at IS NULL),
                count(*) FILTER (WHERE sent_at IS NOT NULL),
                count(*) FILTER (WHERE sending_started_at IS NULL AND sent_at IS NULL
                                   AND attempts = 0 AND available_at <= now())
         FROM platform.outbox",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert!(untried <= 1, "{untried} messages réservés sans issue");
    assert!(queued >= 8, "{queued} rendus à la file");
    assert_eq!(sent + queued + untried, 10);
    let received = maildev.messages().await.len() as i64;
    assert!(
        (sent..=sent + untried).contains(&received),
        "{received} reçus, {sent} envoyés : aucun en double"
    );
}

/// A replica stopped while a territory cannot take what it owes it (the outcome of a message
/// sent, the batch's other message to give back; here a lock a migration would hold, on Citus a
/// hung worker) makes a last try before it exits: the territory answering within it, the message
/// sent is marked sent and the other one is back in the queue, neither left claimed for the
/// operators as if its fate were unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopping_writes_what_a_territory_could_not_take_once_it_answers() {
    use foundation::outbox::enqueue_tenant;
    use std::time::Duration;
    let maildev = test_support::private_maildev::PrivateMailDev::start().await;
    // MailDev's answer to the first message's content held until the gate opens.
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let relay = test_support::smtp_relay::start(
        maildev.smtp_port,
        test_support::smtp_relay::Behaviour {
            after_content: Some(gate),
            ..Default::default()
        },
    )
    .await;
    let db = test_support::database::TestDatabase::with_departements(&["33"]).await;
    let gironde = test_support::tenancy(db.admin.clone())
        .await
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("code"))
        .await
        .expect("territoire");
    // Two messages in one commit: one batch.
    let mut tx = gironde.begin().await.expect("tx");
    for i in 0..2 {
        enqueue_tenant(&mut tx, &operator_test(format!("gironde-{i}@example.test")))
            .await
            .expect("file");
    }
    tx.commit().await.expect("commit");
    let service = test_support::service_binary::start_with(
        env!("CARGO_BIN_EXE_aidants-connect"),
        &db,
        &[
            ("AC_SMTP__PORT", &relay.port.to_string()),
            ("AC_SMTP__SESSIONS", "1"),
        ],
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), relay.content_passed.notified())
        .await
        .expect("le premier message est transmis");
    // Delivered, its answer held: the territory's outbox is locked before the worker learns it.
    let mut lock = db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    open_gate.send(true).expect("ouverture");
    // The outcome's write gives up after its bound (3 s), then the give-back's: both kept.
    let waiting = |statement: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                 AND datname = current_database() AND query LIKE $1",
            )
            .bind(statement)
            .fetch_one(&admin)
            .await
            .expect("attentes")
        }
    };
    let (outcome, give_back) = (
        "UPDATE outbox SET sent_at = now()%",
        "UPDATE outbox SET sending_started_at = NULL%",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while waiting(give_back).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "aucune remise en file tentée"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while waiting(give_back).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "remise en file jamais abandonnée"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopped while nothing is written yet: its last try waits on the territory, which answers
    // again once that try is seen waiting.
    service.sigterm();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while waiting(outcome).await == 0 {
        assert!(std::time::Instant::now() < deadline, "aucun dernier essai");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.rollback().await.expect("fin du verrou");
    let exit = service.exited().await;
    assert!(exit.success(), "{exit:?}");

    let (sent, queued, claimed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL AND attempts = 1),
                count(*) FILTER (WHERE sending_started_at IS NULL AND sent_at IS NULL
                                   AND attempts = 0),
                count(*) FILTER (WHERE sending_started_at IS NOT NULL AND sent_at IS NULL)
         FROM dep_33.outbox",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!(
        (sent, queued, claimed),
        (1, 1, 0),
        "un envoyé, un rendu à la file, aucun laissé réservé"
    );
    assert_eq!(maildev.messages().await.len(), 1, "un seul message envoyé");
}
