//! The three channels of the notification mailer against real components: every e-mail
//! template reaches MailDev in French, as text and accessible HTML; SMS go through the local HTTP
//! gateway exactly once despite its outage and lost answers; usagers' receipts take e-mail, else
//! SMS, else a printed letter gathered into a per-structure PDF batch in the document vault.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use foundation::app::Platform;
use foundation::ids::{StructureId, TenantId};

use foundation::outbox::{Channel, MAX_ATTEMPTS, OutboxMessage, enqueue_platform};
use foundation::tenancy::DepartementCode;
use mandate_service::contact::{UsagerContact, enqueue_usager_receipt};
use notification_mailer::worker::OutboxWorker;
use serde_json::{Value, json};
use test_support::database::TestDatabase;
use test_support::sms_gateway::PrivateSmsGateway;
use uuid::Uuid;

async fn platform(
    db: &TestDatabase,
    tweak: impl FnOnce(&mut foundation::config::Settings),
) -> Platform {
    let mut settings = test_support::test_settings(&db.app_url);
    tweak(&mut settings);
    Platform::connect(settings).await.expect("plateforme")
}

/// A realistic payload for each template, and a phrase its French text must contain.
fn sample(template: &str, marker: &str) -> (Value, String) {
    let url = format!("https://aidants.example/lien/{marker}");
    match template {
        "operator_test" => (json!({"sent_by": marker}), format!("envoyé par {marker}")),
        "login_link" => (json!({"url": url}), "Il est valable 5 minutes".into()),
        "enrolment_link" => (json!({"url": url}), "valable 72 heures".into()),
        "mandates_expiring" => (
            json!({"count": "4", "structure": marker, "url": url}),
            format!("4 mandat(s) de {marker} arrivent à leur terme"),
        ),
        "inactive_aidant" => (
            json!({"name": marker, "url": url}),
            format!("Bonjour {marker},"),
        ),
        "mandate_used" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "demarche": "Logement"}),
            format!("Le 23/11/2026 à 10h05, {marker} a utilisé le mandat"),
        ),
        "mandate_created" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "demarches": ["Logement", "Argent"], "expires": "22/11/2027"}),
            format!("vous avez confié à {marker} un mandat"),
        ),
        "mandate_revoked" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "demarches": ["Logement"], "suite": "Le mandat a pris fin."}),
            format!("le mandat que vous aviez confié à {marker} a été révoqué"),
        ),
        "mandate_transferred_out" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "demarches": ["Logement"], "url": url}),
            format!("une personne accompagnée par {marker} a donné un nouveau mandat"),
        ),
        "judicial_measure_ending" => (
            json!({"case": "D-2031", "kind": "Tutelle", "structure": marker, "ends": "14/03/2031", "days": "30", "url": url}),
            format!("suivie par {marker} prend fin le 14/03/2031, dans 30 jours"),
        ),
        "judicial_measure_renewal" => (
            json!({"case": "D-2031", "kind": "Tutelle", "structure": marker, "renewal": "15/09/2030", "ends": "14/03/2031", "url": url}),
            format!("suivie par {marker} arrive à sa date de révision, le 15/09/2030"),
        ),
        "remote_consent_link" => (
            json!({"structure": marker, "aidant": "Camille Martin", "url": url, "expires": "24/11/2026 à 10h05"}),
            format!("Camille Martin, de {marker}, a préparé un mandat"),
        ),
        "mandate_revoked_by_usager" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "demarches": ["Logement"], "url": url}),
            format!("donné à {marker} pour ces démarches"),
        ),
        "new_requests_digest" => (
            json!({"period": "du 16/11/2026 à 09h00 au 23/11/2026 à 09h00", "count": "2",
                   "requests": [format!("Gironde (33) — {marker} (CCAS, commune INSEE 33063)"), "Hérault (34) — Mairie (mairie, commune INSEE 34172)"],
                   "more": "La liste ci-dessus est complète."}),
            format!("Gironde (33) — {marker} (CCAS"),
        ),
        "usager_contact_changed" => (
            json!({"date": "23/11/2026 à 10h05", "structure": marker, "changes": ["numéro de téléphone mobile remplacé"]}),
            format!("{marker} a modifié les coordonnées"),
        ),
        "issuer_link" => (
            json!({"url": url}),
            "accéder à vos demandes d'habilitation".to_owned(),
        ),
        "request_received" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "next": "L'équipe nationale va l'examiner.", "url": url}),
            format!("la structure « {marker} » (référence HAB-33-ABCDEFGH)"),
        ),
        "request_changes_requested" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "message": "Précisez les horaires.", "url": url}),
            "Précisez les horaires.".to_owned(),
        ),
        "request_message" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "from": "du demandeur", "message": "Fermé le samedi.", "url": url}),
            "Nouveau message du demandeur".to_owned(),
        ),
        "request_amended" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "url": url}),
            format!("demande d'habilitation de « {marker} »"),
        ),
        "request_accepted" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "url": url}),
            format!(
                "la demande d'habilitation de « {marker} » (référence HAB-33-ABCDEFGH) est acceptée"
            ),
        ),
        "request_refused" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "reason": "Structure hors champ.", "url": url}),
            "Structure hors champ.".to_owned(),
        ),
        "request_released" => (
            json!({"reference": "HAB-33-ABCDEFGH", "structure": marker, "url": url}),
            format!("la demande d'habilitation de « {marker} »"),
        ),
        "referent_appointed" => (
            json!({"structure": marker, "url": url}),
            format!("référent de la structure « {marker} »"),
        ),
        "habilitation_withdrawn" => (
            json!({"structure": marker, "date": "23/11/2026", "by": "le référent de la structure", "reason": "Départ de la structure."}),
            format!("pour la structure « {marker} » a été retirée"),
        ),
        "training_registered" => (
            json!({"name": marker, "session": "Formation Aidants Connect", "dates": "14/12/2026", "place": "à distance", "status": "Votre place est réservée."}),
            format!("Bonjour {marker},"),
        ),
        "training_reminder" => (
            json!({"name": marker, "session": "Formation Aidants Connect", "dates": "14/12/2026", "place": "à distance"}),
            format!("Bonjour {marker},"),
        ),
        "charter_link" => (
            json!({"url": url}),
            "accepter la charte de l'aidant".to_owned(),
        ),
        "habilitation_opened" => (
            json!({"structure": marker, "next": "Connectez-vous.", "url": url}),
            format!("pour la structure « {marker} » est ouverte"),
        ),
        "aidant_habilitated" => (
            json!({"name": marker, "structure": "CCAS"}),
            format!("{marker} a terminé son parcours"),
        ),
        "territory_admin_delegated" => (
            json!({"tenant": marker, "url": url}),
            format!("Vous administrez désormais « {marker} »"),
        ),
        "anomaly_digest" => (
            json!({"count": "1", "alerts": format!("{marker} — Nombreuses révocations dans la journée"), "url": url}),
            format!("{marker} — Nombreuses révocations"),
        ),
        other => panic!("modèle sans exemple : {other}"),
    }
}

#[tokio::test]
async fn every_template_reaches_maildev_in_french_as_text_and_accessible_html() {
    let db = TestDatabase::create().await;
    let platform = platform(&db, |_| {}).await;
    let run = Uuid::new_v4().simple().to_string();
    let mut expected = Vec::new();
    for template in notification_mailer::templates::names() {
        let to = format!("{template}-{run}@example.test");
        let marker = format!("Marqueur {}", &run[..8]);
        let (payload, phrase) = sample(template, &marker);
        let mut tx = db.admin.begin().await.expect("tx");
        enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: to.clone(),
                template,
                payload,
            },
        )
        .await
        .expect("file");
        tx.commit().await.expect("commit");
        let subject =
            notification_mailer::templates::render(template, &sample(template, &marker).0)
                .expect("rendu")
                .subject;
        expected.push((to, subject, phrase));
    }
    let worker = OutboxWorker::from_platform(platform.clone()).expect("worker");
    assert_eq!(worker.deliver_due().await.expect("envoi"), expected.len());

    let maildev = test_support::stack_var("AC_MAILDEV_URL");
    let mut html_urls = Vec::new();
    for (to, subject, phrase) in &expected {
        let mail = test_support::maildev::wait_for_mail_to(to, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("rien reçu pour {to}"));
        assert_eq!(mail["subject"], subject.as_str());
        let text = mail["text"].as_str().expect("partie texte");
        let html = mail["html"].as_str().expect("partie HTML");
        assert!(text.contains(phrase.as_str()), "{to} : {text}");
        // The HTML part says the same (its non-breaking spaces aside) in a French document.
        let flat = html.replace("&nbsp;", " ").replace('\u{a0}', " ");
        let first_words: String = phrase
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(flat.contains(&first_words), "{to} : {html}");
        assert!(html.contains("<html lang=\"fr\">"), "{to}");
        assert!(!text.contains("{{") && !html.contains("{{"), "{to}");
        html_urls.push(format!(
            "{maildev}/email/{}/html",
            mail["id"].as_str().expect("id")
        ));
    }
    for (url, violations) in test_support::browser::axe_violations(&html_urls).await {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}

/// Queues one SMS in the national outbox; returns its id.
async fn queue_sms(db: &TestDatabase, to: &str, sent_by: &str) -> Uuid {
    let mut tx = db.admin.begin().await.expect("tx");
    let id = enqueue_platform(
        &mut tx,
        &OutboxMessage {
            channel: Channel::Sms,
            recipient: to.into(),
            template: "operator_test",
            payload: json!({ "sent_by": sent_by }),
        },
    )
    .await
    .expect("file");
    tx.commit().await.expect("commit");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_idempotency_never_gets_a_message_twice() {
    let mut gateway = PrivateSmsGateway::start().await;
    let db = TestDatabase::create().await;
    let (endpoint, token) = (
        format!("{}/v3/transactionalSMS/send", gateway.base()),
        gateway.token.clone(),
    );
    let platform = platform(&db, |s| {
        s.sms.provider = foundation::config::SmsProvider::Brevo;
        s.sms.gateway_url = endpoint;
        s.sms.api_token = token.into();
        s.sms.timeout_ms = 2_000;
        s.smtp.retry_base_ms = 60_000;
    })
    .await;
    let worker = OutboxWorker::from_platform(platform.clone()).expect("worker");
    let number = |n: u32| format!("+3363998{n:04}");

    // Four SMS; the answer to the first one accepted is lost on the way back.
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(queue_sms(&db, &number(n), &format!("le test {n}")).await);
    }
    gateway.lose_next_answers(1).await;
    worker.deliver_due().await.expect("envoi");
    let received = gateway.messages().await;
    assert_eq!(received.len(), 4, "{received:?}");
    for m in &received {
        assert_eq!(m["provider"], "brevo");
        assert_eq!(m["sender"], "AidantsCo");
        assert!(
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("envoyé par le test")),
            "{m}"
        );
    }
    // The lost answer is uncertain: not resent, however often the worker passes; listed for
    // operators. The three others are sent.
    assert_eq!(sms_sent(&db).await, 3);
    for _ in 0..3 {
        sqlx::query("UPDATE platform.outbox SET available_at = now() WHERE sent_at IS NULL")
            .execute(&db.admin)
            .await
            .expect("échéance");
        worker.deliver_due().await.expect("passe");
    }
    assert_eq!(gateway.messages().await.len(), 4, "rien n'est renvoyé");
    let stuck = foundation::outbox::list_stuck(&platform.tenancy, MAX_ATTEMPTS)
        .await
        .expect("bloqués");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].state, "uncertain");
    assert!(ids.contains(&stuck[0].id));

    // Unreachable: nothing left, so it is retried, and arrives once the provider is back.
    gateway.stop().await;
    let late = queue_sms(&db, &number(4), "le test 4").await;
    worker.deliver_due().await.expect("passe pendant la panne");
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM platform.outbox WHERE id = $1")
            .bind(late)
            .fetch_one(&db.admin)
            .await
            .expect("erreur");
    assert!(error.is_some_and(|e| e.contains("injoignable")));
    gateway.restart().await;
    sqlx::query("UPDATE platform.outbox SET available_at = now() WHERE id = $1")
        .bind(late)
        .execute(&db.admin)
        .await
        .expect("échéance");
    worker.deliver_due().await.expect("passe");
    let received = gateway.messages().await;
    assert_eq!(received.len(), 5);
    let numbers: HashSet<&str> = received.iter().filter_map(|m| m["to"].as_str()).collect();
    assert_eq!(
        numbers.len(),
        5,
        "chaque numéro une seule fois : {received:?}"
    );
    assert_eq!(sms_sent(&db).await, 4);

    // An error inside the provider (500) may hide a message it sent: uncertain, not resent.
    // An overload (503) said nothing was done: retried.
    let status = |code: u16| {
        let base = gateway.base();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/control"))
                .json(&json!({ "fail_next": 1, "status": code }))
                .send()
                .await
                .expect("contrôle");
        }
    };
    status(500).await;
    let broken = queue_sms(&db, &number(5), "le test 5").await;
    worker.deliver_due().await.expect("passe");
    status(503).await;
    let busy = queue_sms(&db, &number(6), "le test 6").await;
    worker.deliver_due().await.expect("passe");
    sqlx::query("UPDATE platform.outbox SET available_at = now() WHERE sent_at IS NULL")
        .execute(&db.admin)
        .await
        .expect("échéance");
    worker.deliver_due().await.expect("passe");
    let state = |id: Uuid| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_as::<_, (bool, bool)>(
                "SELECT sent_at IS NOT NULL, sending_started_at IS NOT NULL FROM platform.outbox WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&admin)
            .await
            .expect("état")
        }
    };
    assert_eq!(state(broken).await, (false, true), "500 : incertain");
    assert_eq!(state(busy).await, (true, true), "503 : renvoyé puis envoyé");
    let received = gateway.messages().await;
    assert_eq!(received.len(), 6, "{received:?}");
}

async fn sms_sent(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM platform.outbox WHERE channel = 'sms' AND sent_at IS NOT NULL",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_reach_the_gateway_exactly_once_through_an_outage_and_lost_answers() {
    let mut gateway = PrivateSmsGateway::start().await;
    let db = TestDatabase::create().await;
    let (endpoint, token) = (gateway.endpoint(), gateway.token.clone());
    let platform = platform(&db, |s| {
        s.sms.gateway_url = endpoint;
        s.sms.api_token = token.into();
        s.sms.timeout_ms = 2_000;
        // Retries are made due by the test itself, so attempts are counted exactly.
        s.smtp.retry_base_ms = 60_000;
    })
    .await;
    let worker = OutboxWorker::from_platform(platform.clone()).expect("worker");

    // The gateway is down while 40 actions queue an SMS each: none of them sees an error.
    gateway.stop().await;
    let mut ids = HashSet::new();
    for n in 0..40 {
        let to = format!("06 12 34 {:02} {:02}", n / 100, n % 100);
        ids.insert(queue_sms(&db, &to, &format!("le test {n}")).await);
    }
    // One more with a landline number: refused for good, never sent.
    let landline = queue_sms(&db, "05 56 00 00 00", "le test").await;
    worker.deliver_due().await.expect("passe pendant la panne");
    assert_eq!(sms_sent(&db).await, 0);
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT last_error FROM platform.outbox WHERE channel = 'sms' AND id <> $1",
    )
    .bind(landline)
    .fetch_all(&db.admin)
    .await
    .expect("erreurs");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("passerelle SMS : injoignable")),
        "{errors:?}"
    );

    // Back, but the answers to the next 5 accepted messages are lost on the way.
    gateway.restart().await;
    gateway.lose_next_answers(5).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sms_sent(&db).await < 40 {
        assert!(
            Instant::now() < deadline,
            "{} SMS envoyés",
            sms_sent(&db).await
        );
        sqlx::query("UPDATE platform.outbox SET available_at = now() WHERE sent_at IS NULL")
            .execute(&db.admin)
            .await
            .expect("échéance");
        worker.deliver_due().await.expect("passe");
    }
    let received = gateway.messages().await;
    assert_eq!(received.len(), 40, "0 perdu, 0 en double");
    let keys: HashSet<Uuid> = received
        .iter()
        .map(|m| {
            m["idempotency_key"]
                .as_str()
                .expect("clé")
                .parse()
                .expect("uuid")
        })
        .collect();
    assert_eq!(keys, ids, "chaque SMS porte l'identifiant de son message");
    assert!(
        received.iter().all(|m| m["to"]
            .as_str()
            .is_some_and(|t| t.starts_with("+336123400"))
            && m["text"].as_str().is_some_and(
                |t| t.starts_with("Aidants Connect : message de test envoyé par le test")
            )),
        "{received:?}"
    );
    // The 5 lost answers were retried: the gateway recognised them.
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.outbox WHERE channel = 'sms' AND sent_at IS NOT NULL AND attempts > 2",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count");
    assert_eq!(retried, 5);
    let (attempts, error): (i32, String) =
        sqlx::query_as("SELECT attempts, last_error FROM platform.outbox WHERE id = $1")
            .bind(landline)
            .fetch_one(&db.admin)
            .await
            .expect("fixe");
    assert_eq!(attempts, MAX_ATTEMPTS, "abandonné d'emblée");
    assert!(error.contains("numéro de portable invalide"), "{error}");
}

#[tokio::test]
async fn receipts_go_by_email_else_sms_else_a_printed_letter_batch() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let platform = platform(&db, |_| {}).await;
    let ctx = platform
        .tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    let (tenant, structure) = (
        TenantId::from_uuid(Uuid::new_v4()),
        StructureId::from_uuid(Uuid::new_v4()),
    );
    let other_structure = StructureId::from_uuid(Uuid::new_v4());
    for (id, name) in [
        (structure, "CCAS de Bègles"),
        (other_structure, "Mairie de Talence"),
    ] {
        sqlx::query(
            "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code)
             VALUES ($1, $2, $3, 'ccas', '33039')",
        )
        .bind(id)
        .bind(tenant)
        .bind(name)
        .execute(&db.admin)
        .await
        .expect("structure");
    }
    let run = Uuid::new_v4().simple().to_string();
    let email = format!("usager-{run}@example.test");
    // A number of this run's own: the shared gateway keeps what earlier runs received.
    let phone = format!("+337{:08}", Uuid::new_v4().as_u128() % 100_000_000);
    let contacts = [
        UsagerContact {
            email: Some(email.clone()),
            phone: Some(phone.clone()),
            postal_address: Some("ne pas utiliser".into()),
        },
        UsagerContact {
            email: None,
            phone: Some(phone.clone()),
            postal_address: Some("ne pas utiliser".into()),
        },
        UsagerContact {
            email: None,
            phone: None,
            postal_address: Some("Mme Angela DUBOIS\n12 rue des Lilas\n33130 Bègles".into()),
        },
        UsagerContact {
            email: None,
            phone: None,
            postal_address: Some("M. Jean MARTIN\n3 place de la Mairie\n33400 Talence".into()),
        },
        UsagerContact::default(),
    ];
    let mut channels = Vec::new();
    let mut tx = ctx.begin().await.expect("tx");
    for (n, contact) in contacts.iter().enumerate() {
        let owner = if n == 3 { other_structure } else { structure };
        let queued = enqueue_usager_receipt(
            &mut tx,
            owner,
            contact,
            "mandate_used",
            json!({"date": "23/11/2026 à 10h05", "structure": "CCAS de Bègles", "demarche": "Logement"}),
        )
        .await
        .expect("file");
        channels.push(queued.map(|(_, c)| c));
    }
    tx.commit().await.expect("commit");
    assert_eq!(
        channels,
        vec![
            Some(Channel::Email),
            Some(Channel::Sms),
            Some(Channel::Letter),
            Some(Channel::Letter),
            None
        ]
    );

    // The worker sends the e-mail and the SMS, and leaves letters alone.
    let worker = OutboxWorker::from_platform(platform.clone()).expect("worker");
    assert_eq!(worker.deliver_due().await.expect("envoi"), 2);
    let mail = test_support::maildev::wait_for_mail_to(&email, Duration::from_secs(10))
        .await
        .expect("courriel");
    assert!(
        mail["text"]
            .as_str()
            .expect("texte")
            .contains("a utilisé le mandat")
    );
    let sms = test_support::sms_gateway::wait_for_sms_to(&phone, 1, Duration::from_secs(10)).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert!(
        sms[0]["text"]
            .as_str()
            .expect("texte")
            .contains("a utilisé votre mandat pour une démarche « Logement »")
    );
    let pending_letters: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.outbox WHERE channel = 'letter' AND sent_at IS NULL AND sending_started_at IS NULL",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count");
    assert_eq!(pending_letters, 2);

    // The batch: one PDF per structure, in the vault, the letters marked sent; a second run
    // finds nothing to do.
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let departement = DepartementCode::parse("33").expect("33");
    let mut batches =
        notification_mailer::letters::batch_territory(&platform.tenancy, &vault, departement)
            .await
            .expect("lots");
    batches.sort_by_key(|b| b.structure_id == other_structure);
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(batches.iter().all(|b| b.letters == 1));
    assert!(
        notification_mailer::letters::batch_territory(&platform.tenancy, &vault, departement)
            .await
            .expect("lots")
            .is_empty()
    );
    let mut conn = platform.platform_pool().acquire().await.expect("connexion");
    let (content_type, pdf) = vault
        .get(&ctx, &mut conn, batches[0].document_id)
        .await
        .expect("lot");
    assert_eq!(content_type, "application/pdf");
    let text = foundation::pdf::shown_text(&pdf);
    for expected in [
        "Mme Angela DUBOIS",
        "33130 Bègles",
        "Objet : Aidants Connect : votre mandat a été utilisé",
        "Logement",
    ] {
        assert!(text.contains(expected), "{expected} absent : {text}");
    }
    assert!(
        !text.contains("Jean MARTIN"),
        "chaque structure n'a que ses courriers"
    );
    assert!(!text.contains("ne pas utiliser"));
    let sent: Vec<(Option<Uuid>,)> = sqlx::query_as(
        "SELECT letter_batch_id FROM dep_33.outbox WHERE channel = 'letter' AND sent_at IS NOT NULL ORDER BY structure_id = $1",
    )
    .bind(other_structure)
    .fetch_all(&db.admin)
    .await
    .expect("lettres");
    assert_eq!(sent, vec![(Some(batches[0].id),), (Some(batches[1].id),)]);
}

/// An SMS gateway that accepts connections and never answers holds a batch for one
/// `sms.timeout_ms`, not one per message: its other SMS are retried later without being tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sms_gateway_holds_a_batch_for_one_wait_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("passerelle");
    let port = listener.local_addr().expect("adresse").port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            // Kept open, never answered.
            held.push(socket);
        }
    });
    let db = TestDatabase::create().await;
    let platform = platform(&db, |s| {
        s.sms.gateway_url = format!("http://127.0.0.1:{port}/sms");
        s.sms.api_token = "jeton".to_owned().into();
        s.sms.timeout_ms = 1_000;
        s.smtp.retry_base_ms = 600_000;
    })
    .await;
    let worker = OutboxWorker::from_platform(platform).expect("worker");
    let ids = [
        queue_sms(&db, "06 12 34 00 01", "le test").await,
        queue_sms(&db, "06 12 34 00 02", "le test").await,
        queue_sms(&db, "06 12 34 00 03", "le test").await,
    ];
    let claimed = tokio::time::timeout(Duration::from_secs(30), worker.deliver_due())
        .await
        .expect("le passage attend la passerelle muette sans fin")
        .expect("passage");
    assert_eq!(claimed, 3);
    for id in ids {
        let (sent, claimed, attempts, error): (bool, bool, i32, Option<String>) = sqlx::query_as(
            "SELECT sent_at IS NOT NULL, sending_started_at IS NOT NULL, attempts, last_error
             FROM platform.outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.admin)
        .await
        .expect("ligne");
        // `http_json` takes an idempotency key: a request left unanswered is asked again.
        assert!(
            !sent && !claimed && attempts == 1,
            "{id} : à renvoyer plus tard"
        );
        let error = error.unwrap_or_default();
        assert!(error.contains("passerelle SMS : délai dépassé"), "{error}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "une requête pour le lot, pas une par SMS"
    );
}
