//! Benchmark of the outbox consumer (`infra/run bench`, release build): how fast a territory's
//! backlog of usager receipts leaves by e-mail with one SMTP session and with several
//! (`smtp.sessions`), alternated in the same run against a MailDev of its own, the local stack's
//! SMTP stand-in.
//!
//! Each round queues `RECEIPTS` receipts of the identity provider's kind (`mandate_used`) in
//! one territory, as the token endpoint queues them, then times the consumer's drain
//! (`OutboxWorker::deliver_due`, the running worker's drain), and checks that MailDev received
//! each message once. The CPU per message of PostgreSQL, of the consumer (this process), of
//! MailDev (Node.js) and of the rest of the machine shows which of them bounds the rate.
//!
//! Then e-mails one after the other on one session to a TLS relay of our own, with STARTTLS
//! and with TLS from the first byte, alternated: their ratio shows a socket that waits for the
//! relay's delayed acknowledgements in one mode only.

use std::time::Instant;

use foundation::app::Platform;
use foundation::outbox::{Channel, OutboxMessage};
use foundation::tenancy::DepartementCode;
use notification_mailer::worker::OutboxWorker;
use test_support::database::TestDatabase;
use test_support::private_maildev::PrivateMailDev;

const RECEIPTS: usize = 1_000;
const ROUNDS: usize = 3;
const SESSIONS: [u32; 2] = [1, 4];

fn receipt(n: usize) -> OutboxMessage {
    OutboxMessage {
        channel: Channel::Email,
        recipient: format!("usager-{n}@example.test"),
        template: "mandate_used",
        payload: serde_json::json!({
            "date": "6 décembre 2026 à 14 h 03",
            "structure": "France Services de banc d'essai",
            "demarche": "Social - Santé",
        }),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let maildev = PrivateMailDev::start().await;
    let db = TestDatabase::with_departements(&["33"]).await;
    let territory_code = DepartementCode::parse("33")?;
    let mut workers = Vec::new();
    for sessions in SESSIONS {
        let mut settings = test_support::test_settings(&db.app_url);
        settings.smtp.port = maildev.smtp_port;
        settings.smtp.sessions = sessions;
        let platform = Platform::connect(settings).await?;
        workers.push((sessions, OutboxWorker::from_platform(platform)?));
    }
    let tenancy = test_support::tenancy(sqlx::PgPool::connect(&db.app_url).await?).await;
    let territory = tenancy.unguarded(territory_code).await?;

    println!("Courriels de la file d'envoi : {RECEIPTS} accusés de réception par tour, MailDev");
    let mut rates: Vec<(u32, Vec<f64>)> = SESSIONS.iter().map(|s| (*s, Vec::new())).collect();
    let mut delivered = 0;
    // CPU seconds (PostgreSQL, this process, Node.js, machine) spent on each kind of round.
    let mut cpu = vec![[0.0f64; 4]; SESSIONS.len()];
    let reading = || {
        let [postgres, node] = load_tests::cpu::commands_seconds(["postgres", "node"]);
        [
            postgres,
            load_tests::cpu::own_seconds(),
            node,
            load_tests::cpu::machine_seconds().0,
        ]
    };
    for _ in 0..ROUNDS {
        for (i, (sessions, worker)) in workers.iter().enumerate() {
            let mut tx = territory.begin().await?;
            for n in 0..RECEIPTS {
                foundation::outbox::enqueue_tenant(&mut tx, &receipt(n)).await?;
            }
            tx.commit().await?;
            let before = reading();
            let started = Instant::now();
            let claimed = worker.deliver_due().await?;
            let rate = claimed as f64 / started.elapsed().as_secs_f64();
            for (k, (after, before)) in reading().iter().zip(before).enumerate() {
                cpu[i][k] += after - before;
            }
            anyhow::ensure!(claimed == RECEIPTS, "{claimed} envoyés sur {RECEIPTS}");
            delivered += RECEIPTS;
            rates[i].1.push(rate);
            println!(
                "  {sessions} session(s) SMTP à la fois{:>24.0} courriels/s",
                rate
            );
        }
    }
    let received = maildev.messages().await;
    let mut ids: Vec<&str> = received
        .iter()
        .filter_map(|m| m["headers"]["message-id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    anyhow::ensure!(
        received.len() == delivered && ids.len() == delivered,
        "MailDev a reçu {} messages ({} distincts) pour {delivered} envoyés",
        received.len(),
        ids.len()
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (one, many) = (mean(&rates[0].1), mean(&rates[1].1));
    println!(
        "{} sessions ÷ {} (moyennes, même passage){:>22}×{:.2}",
        rates[1].0,
        rates[0].0,
        "",
        many / one
    );
    for (i, (sessions, _)) in rates.iter().enumerate() {
        let per = |s: f64| s * 1e6 / (ROUNDS * RECEIPTS) as f64;
        let [postgres, consumer, maildev, machine] = cpu[i];
        println!(
            "CPU par courriel, {sessions} session(s) : PostgreSQL {:.0} µs  consommateur {:.0} µs  MailDev {:.0} µs  autres {:.0} µs",
            per(postgres),
            per(consumer),
            per(maildev),
            per((machine - postgres - consumer - maildev).max(0.0))
        );
    }
    println!("reçus par MailDev : {delivered}, chacun une fois");
    over_tls().await
}

/// Messages sent one after the other on one session, to a relay that encrypts: STARTTLS
/// against TLS from the first byte (`smtp.security = tls`, port 465), alternated in the same
/// run. Both encrypt alike once connected, so their rates should be alike; a socket with
/// Nagle's delay makes each message wait for the relay's delayed acknowledgement.
async fn over_tls() -> anyhow::Result<()> {
    use notification_mailer::smtp::Mailer;
    use test_support::private_smtp_tls::{Mode, PrivateSmtpTls};

    const MESSAGES: usize = 200;
    let rendered = notification_mailer::templates::render("mandate_used", &receipt(0).payload)?;
    let mut relays = Vec::new();
    for mode in [Mode::Starttls, Mode::Tls] {
        let relay = PrivateSmtpTls::start(mode).await;
        let mut settings = relay.smtp_settings();
        settings.ca_file = Some(relay.ca_file());
        relays.push((mode, Mailer::new(&settings)?, relay, Vec::new()));
    }
    println!(
        "\nCourriels sur une session chiffrée : {MESSAGES} l'un après l'autre, relais TLS local"
    );
    for _ in 0..ROUNDS {
        for (mode, mailer, relay, rates) in relays.iter_mut() {
            let before = relay.messages().len();
            let mut session = mailer.session();
            let started = Instant::now();
            for n in 0..MESSAGES {
                let to = format!("usager-{n}@example.test");
                session.send(uuid::Uuid::now_v7(), &to, &rendered).await?;
            }
            let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
            session.close().await;
            let got = relay.messages().len() - before;
            anyhow::ensure!(got == MESSAGES, "{mode:?} : {got} reçus sur {MESSAGES}");
            rates.push(rate);
            println!("  {:<40}{rate:>10.0} courriels/s", format!("{mode:?}"));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "TLS dès le premier octet ÷ STARTTLS (moyennes, même passage){:>9}×{:.2}",
        "",
        mean(&relays[1].3) / mean(&relays[0].3)
    );
    Ok(())
}
