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

/// A replica stopped (SIGTERM) while it sends a batch to a slow relay gives the batch's
/// messages not tried yet back to the queue at once, before it exits, even when the message in
/// hand takes longer than the 5 s the workers are given: only that message may be left
/// claimed without an outcome (for the operators: it may have been delivered), and none is sent
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_batch_gives_back_the_messages_it_has_not_tried() {
    use foundation::outbox::{Channel, OutboxMessage, enqueue_platform};
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
        enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: format!("lot-{i}@example.test"),
                template: "operator_test",
                payload: serde_json::json!({ "sent_by": "le test" }),
            },
        )
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
