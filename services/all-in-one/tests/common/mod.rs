//! Builds the real all-in-one application on port 0 against a fresh test database.
#![allow(dead_code, reason = "each test binary uses part of this module")]

pub mod fc;
pub mod identity;
pub mod idp;
pub mod plans;
pub mod requests;

use foundation::config::Settings;
use test_support::database::TestDatabase;

pub struct TestApp {
    pub address: String,
    /// The internal listener (`/internal/*`), on its own port.
    pub internal_address: String,
    pub db: TestDatabase,
    pub client: reqwest::Client,
    /// The route table of the running application.
    pub routes: Vec<foundation::app::RouteInfo>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A URL of the internal listener.
    pub fn internal_url(&self, path: &str) -> String {
        format!("{}{path}", self.internal_address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("requête")
    }
}

/// Starts the platform on a database with these départements provisioned.
pub async fn spawn_app(departements: &[&str]) -> TestApp {
    spawn_app_with(TestDatabase::with_departements(departements).await, |_| {}).await
}

pub async fn spawn_app_with(db: TestDatabase, tweak: impl Fn(&mut Settings)) -> TestApp {
    // The port is known only once bound: take a free one first, so that links in e-mails and
    // the accepted Origin name the real address. Between the probe and the platform's own bind
    // another test may take that port: then start again on a new one (the tweak is applied
    // afresh, and the FranceConnect client registered for the new address).
    let mut attempts = 0;
    let app = loop {
        attempts += 1;
        let port = test_support::free_port();
        let mut settings = test_support::test_settings(&db.app_url);
        settings.http.port = port;
        settings.http.public_url = format!("http://127.0.0.1:{port}");
        if let Some(issuer) = test_support::franceconnect::issuer() {
            let (id, secret) =
                test_support::franceconnect::register_client(&settings.http.public_url).await;
            settings.franceconnect.issuer = issuer;
            settings.franceconnect.client_id = id;
            settings.franceconnect.client_secret = secret.into();
        }
        tweak(&mut settings);
        match all_in_one::build(settings).await {
            Ok(app) => break app,
            Err(e) if attempts < 5 && address_in_use(&e) => continue,
            Err(e) => panic!("démarrage de l'application : {e:?}"),
        }
    };
    let address = format!("http://127.0.0.1:{}", app.port());
    let routes = app.routes().to_vec();
    let jobs = app.jobs().to_vec();
    let internal_address = format!("http://127.0.0.1:{}", app.internal_port());
    tokio::spawn(app.run_until_stopped());
    wait_for_start_up_jobs(&db, &jobs).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        address,
        internal_address,
        db,
        client,
        routes,
    }
}

/// Whether a start failed because its port was taken meanwhile.
fn address_in_use(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// Waits until the application's first runs of all its scheduled jobs are over (each tick runs
/// every due job, one after the other, and the first tick is at start-up). A test then starts
/// from a quiet platform: no start-up run holds a territory connection behind the test's lock,
/// journals beside the test's entries, or folds its histories. A job the test calls itself
/// counts its own run alone.
async fn wait_for_start_up_jobs(db: &TestDatabase, jobs: &[&'static str]) {
    let names: Vec<String> = jobs.iter().map(|n| (*n).to_owned()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pending: Vec<String> = sqlx::query_scalar(
            "SELECT n FROM unnest($1::text[]) AS n
             WHERE NOT EXISTS (SELECT 1 FROM platform.job_runs r
                               WHERE r.name = n AND r.last_finished_at IS NOT NULL)",
        )
        .bind(&names)
        .fetch_all(&db.admin)
        .await
        .expect("job_runs");
        if pending.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "premiers passages jamais terminés : {pending:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a WAV file holds sound: its 16-bit samples' RMS over a floor.
pub fn audible(wav: &[u8]) -> bool {
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .map(|i| &wav[i + 8..])
        .unwrap_or_default();
    let samples: Vec<f64> = data
        .chunks_exact(2)
        .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])))
        .collect();
    if samples.len() < 8000 {
        return false;
    }
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt();
    rms > 300.0
}

/// Loads `urls` in Chromium at phone size (360 × 740) with `browser`'s cookies and asserts,
/// for each, that it is the page reached, that axe-core finds nothing and that nothing scrolls
/// sideways.
pub async fn pass_axe_on_a_phone(app: &TestApp, browser: &identity::Browser, urls: &[String]) {
    let cookies: Vec<_> = browser
        .cookies()
        .iter()
        .map(
            |(name, value)| serde_json::json!({ "name": name, "value": value, "url": app.address }),
        )
        .collect();
    let result = test_support::browser::run(
        "axe.mjs",
        &serde_json::json!({
            "urls": urls,
            "cookies": cookies,
            "viewport": { "width": 360, "height": 740 },
        }),
    )
    .await;
    let pages = result["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), urls.len());
    for (page, url) in pages.iter().zip(urls) {
        assert_eq!(page["final"], url.as_str(), "{page}");
        assert_eq!(page["violations"], serde_json::json!([]), "{page}");
        assert_eq!(page["overflow"], false, "la page déborde à 360 px : {page}");
    }
}

/// A use of `mandate` (département `departement`) for `category`, as the identity provider
/// journals it (by a client the registry does not know).
pub async fn journal_a_use(
    app: &TestApp,
    departement: &str,
    mandate: foundation::ids::MandateId,
    category: &str,
) {
    use foundation::journal::{Event, NewEntry};
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(departement).expect("département"))
        .await
        .expect("territoire");
    let mut tx = territory.begin().await.expect("tx");
    foundation::journal::append(
        &mut tx,
        NewEntry::new(Event::MandateUsed)
            .mandate(mandate)
            .details(serde_json::json!({ "category": category, "client": "inconnu-du-registre" })),
    )
    .await
    .expect("usage");
    tx.commit().await.expect("commit");
}

/// The operators' test e-mail to `to`, queued in `territory`'s outbox and committed (the commit
/// wakes the consumer).
pub async fn queue_test_mail(territory: &foundation::tenancy::Territory, to: &str) {
    let mut tx = territory.begin().await.expect("tx");
    foundation::outbox::enqueue_tenant(
        &mut tx,
        &foundation::outbox::OutboxMessage {
            channel: foundation::outbox::Channel::Email,
            recipient: to.into(),
            template: "operator_test",
            payload: serde_json::json!({ "sent_by": "le test" }),
        },
    )
    .await
    .expect("file du territoire");
    tx.commit().await.expect("commit");
}
