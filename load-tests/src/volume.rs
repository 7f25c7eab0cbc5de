//! Benchmark at national volume (`infra/run bench-volume`): on a database seeded by
//! `tenant-admin seed` (10 M mandates, 50,000 aidants over 101 territories), the platform's own
//! binary, over HTTP with real sessions:
//!
//! - the aidant's pages for the largest structure of Gironde (100,000 mandates: the mandate
//!   list and its searches, a mandate, a usager, the forms, the identity provider's usager list
//!   and its searches) and for a structure of median size:
//!   targets p99 ≤ 100 ms per page, ≤ 30 ms for the 100,000-mandate list;
//! - the identity provider's complete flows with the desks in that largest structure, against
//!   the same flows on an empty database in the same run, in alternating windows: target
//!   within 10 %.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use foundation::auth::session;
use foundation::ids::{ProfessionalId, StructureId};
use foundation::tenancy::{DepartementCode, Tenancy};
use load_tests::oidc::run_flows;
use load_tests::{ms, percentile, timed_gets};
use test_support::database::{TestDatabase, with_database};
use test_support::service_binary::{RunningService, start_with};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// The seeded database, on the stack's cluster.
    #[arg(long, default_value = "seed_10m")]
    database: String,
    /// The platform's binary (release build of `aidants-connect`).
    #[arg(long)]
    binary: PathBuf,
}

const DESKS: usize = 16;
/// The identity provider's measure: rounds of one window on each database.
const ROUNDS: usize = 6;
const WINDOW: Duration = Duration::from_secs(5);

async fn start(binary: &str, db: &TestDatabase) -> RunningService {
    let port = test_support::free_port().to_string();
    let public = format!("http://127.0.0.1:{port}");
    start_with(
        binary,
        db,
        &[
            ("AC_HTTP__PORT", port.as_str()),
            ("AC_HTTP__PUBLIC_URL", public.as_str()),
            ("AC_DATABASE__MAX_CONNECTIONS", "40"),
        ],
    )
    .await
}

async fn open_session(admin: &sqlx::PgPool, who: Uuid) -> anyhow::Result<String> {
    let mut conn = admin.acquire().await?;
    let cookie = session::open(
        &mut conn,
        ProfessionalId::from_uuid(who),
        OffsetDateTime::now_utc(),
        false,
    )
    .await?;
    Ok(cookie.value_str().to_owned())
}

/// An authorization request of the benchmark's client asking every démarche.
fn idp_query() -> String {
    serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", load_tests::oidc::CLIENT),
        ("redirect_uri", load_tests::oidc::REDIRECT),
        ("scope", "openid profile email birth"),
        ("acr_values", "eidas1"),
        ("state", "etat-pages-du-banc-d-essai"),
        ("nonce", "nonce-pages-du-banc-d-essai"),
    ])
    .unwrap_or_default()
}

/// The pages an aidant of `structure` reads, each measured over 200 requests after 10.
async fn pages(
    http: &reqwest::Client,
    base: &str,
    admin: &sqlx::PgPool,
    structure: Uuid,
    label: &str,
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let (aidant, mandate, usager): (Uuid, Uuid, Uuid) = sqlx::query_as(
        "SELECT created_by, id, usager_id FROM dep_33.mandates
         WHERE structure_id = $1 AND ended_at IS NULL AND expires_at > now() LIMIT 1",
    )
    .bind(structure)
    .fetch_one(admin)
    .await?;
    let cookie = open_session(admin, aidant).await?;
    let acts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal
         WHERE professional_id = $1 AND at > now() - interval '1 year'",
    )
    .bind(aidant)
    .fetch_one(admin)
    .await?;
    println!("{label} : l'aidant mesuré a {acts} entrées de journal sur douze mois");
    let mut out = Vec::new();
    for (what, path, expected, target) in [
        ("liste des mandats", "/mandats".to_owned(), "<table", 30.0),
        (
            "recherche « dubois »",
            "/mandats?q=dubois".into(),
            "<table",
            100.0,
        ),
        (
            "recherche « dubois marie »",
            "/mandats?q=dubois+marie".into(),
            "mandat",
            100.0,
        ),
        (
            "filtre « expirent dans 30 jours »",
            "/mandats?etat=bientot".into(),
            "mandat",
            100.0,
        ),
        ("un mandat", format!("/mandats/{mandate}"), "mandat", 100.0),
        ("un usager", format!("/usagers/{usager}"), "andat", 100.0),
        (
            "nouveau mandat (formulaire)",
            "/mandats/nouveau".into(),
            "<form",
            100.0,
        ),
        (
            "mandats à distance",
            "/mandats/a-distance".into(),
            "distance",
            100.0,
        ),
        // Read from the journal: the aidant's acts of the last twelve months.
        ("mon activité", "/activite".into(), "ctivit", 100.0),
        // The identity provider's usager list, every démarche asked (no `rep_scope`): the
        // structure's first 50 by name, then searches finding many people of the territory
        // (« martin ») and few.
        (
            "fournisseur d'identité : usagers",
            format!("/oidc/authorize?{}", idp_query()),
            "ac_usager=",
            100.0,
        ),
        (
            "fournisseur d'identité : « martin »",
            format!("/oidc/authorize?{}&ac_q=martin", idp_query()),
            // The search's form: a search may find no one of a structure.
            "id=\"ac_q\"",
            100.0,
        ),
        (
            "fournisseur d'identité : « dubois marie »",
            format!("/oidc/authorize?{}&ac_q=dubois+marie", idp_query()),
            // The search's form: a search may find no one of a structure.
            "id=\"ac_q\"",
            100.0,
        ),
    ] {
        let url = format!("{base}{path}");
        timed_gets(http, &url, Some(&cookie), &[expected], 10, 1).await?;
        let times = timed_gets(http, &url, Some(&cookie), &[expected], 200, 1).await?;
        let (p50, p99) = (ms(percentile(&times, 0.5)), ms(percentile(&times, 0.99)));
        println!(
            "{:<58} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  cible ≤ {target:.0} ms  marge ×{:.1}",
            format!("{label} : {what}"),
            target / p99
        );
        out.push((what.to_owned(), p99, target));
    }
    Ok(out)
}

/// Starts the platform on `db` and waits until its start-up runs of its scheduled jobs are
/// over ([`load_tests::start_up_jobs_over`]), so that both databases are measured without them.
async fn start_quiet(binary: &str, db: &TestDatabase) -> anyhow::Result<RunningService> {
    let since = load_tests::database_clock(&db.admin).await?;
    let service = start(binary, db).await;
    let waited = load_tests::start_up_jobs_over(&db.admin, since).await?;
    println!(
        "  (travaux planifiés du démarrage terminés en {:.1} s)",
        waited.as_secs_f64()
    );
    Ok(service)
}

/// 16 desks in `structure` of territory 33 of a database, on a platform of their own, warmed up.
struct Desks {
    _service: RunningService,
    http: reqwest::Client,
    base: String,
    secret: String,
    workers: std::sync::Arc<Vec<load_tests::oidc::Worker>>,
}

impl Desks {
    async fn open(binary: &str, db: &TestDatabase, structure: StructureId) -> anyhow::Result<Self> {
        let tenancy = Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
        let ctx = tenancy.unguarded(DepartementCode::parse("33")?).await?;
        let (workers, secret) = load_tests::oidc::desks(db, &ctx, structure, DESKS, 200).await?;
        let service = start_quiet(binary, db).await?;
        let desks = Desks {
            base: format!("http://127.0.0.1:{}", service.port),
            _service: service,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(DESKS)
                .build()?,
            secret,
            workers: std::sync::Arc::new(workers),
        };
        desks.flows(Duration::from_secs(2)).await?;
        Ok(desks)
    }

    /// Complete flows for `duration`: how many, and the time they took.
    async fn flows(&self, duration: Duration) -> anyhow::Result<(u64, Duration)> {
        let started = Instant::now();
        let (flows, _) = run_flows(
            &self.http,
            &self.base,
            &self.secret,
            &self.workers,
            duration,
        )
        .await?;
        Ok((flows, started.elapsed()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = args.binary.display().to_string();
    let admin_url = with_database(
        &test_support::stack_var("AC_TEST_ADMIN_URL"),
        &args.database,
    );
    let app_url = with_database(&test_support::stack_var("AC_TEST_APP_URL"), &args.database);
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&admin_url)
        .await?;
    let seeded = TestDatabase::existing(&args.database, admin.clone(), admin_url, app_url);
    let (mut mandates, territories): (i64, i64) = sqlx::query_as(
        "SELECT sum(c.reltuples)::bigint, count(*) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = 'mandates' AND n.nspname LIKE 'dep\\_%'",
    )
    .fetch_one(&admin)
    .await?;
    let on_citus = foundation::tenancy::citus::enabled(&mut *admin.acquire().await?).await?;
    if on_citus {
        // The coordinator's tables are empty shells: each territory counted where it lives,
        // one statement routed to its worker per schema.
        mandates = sqlx::query_scalar(
            "SELECT sum((xpath('/row/n/text()', query_to_xml(
                        format('SELECT count(*) AS n FROM %I.mandates', nspname), false, true, '')
                    ))[1]::text::bigint)::bigint
             FROM pg_namespace WHERE nspname LIKE 'dep\\_%'",
        )
        .fetch_one(&admin)
        .await?;
    }
    let structures: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT structure_id, count(*) FROM dep_33.mandates GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&admin)
    .await?;
    anyhow::ensure!(
        !structures.is_empty(),
        "base non peuplée : `tenant-admin seed` d'abord"
    );
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.journal")
        .fetch_one(&admin)
        .await?;
    let (largest, largest_n) = structures[0];
    let (median, median_n) = structures[structures.len() / 2];
    println!(
        "Volume national{} : {mandates} mandats dans {territories} territoires ; Gironde : {} structures, la plus grande {largest_n} mandats, la médiane {median_n} ; {entries} entrées de journal",
        if on_citus { " (Citus)" } else { "" },
        structures.len()
    );

    // The identity provider's pages need the benchmark's client, registered before the start.
    load_tests::oidc::client_secret(&admin).await?;
    // Its start-up jobs finish before the pages are measured: stopped half-way, a run keeps
    // its claim until the lease passes.
    let service = start_quiet(&binary, &seeded).await?;
    let base = format!("http://127.0.0.1:{}", service.port);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    println!("\nPages de l'aidant (HTTP, session réelle, 200 requêtes chacune)");
    let mut all = pages(&http, &base, &admin, largest, "plus grande structure").await?;
    all.extend(pages(&http, &base, &admin, median, "structure médiane").await?);
    drop(service);
    let worst = all
        .iter()
        .map(|(_, p99, target)| p99 / target)
        .fold(0.0, f64::max);
    println!(
        "{:<58} {:.0} % de sa cible",
        "page la plus proche de sa cible (p99)",
        worst * 100.0
    );

    println!(
        "\nFournisseur d'identité : {DESKS} guichets dans la plus grande structure, {ROUNDS} manches de {} s par base, en alternance",
        WINDOW.as_secs()
    );
    // Both databases' desks are ready before either is measured, and the measures alternate,
    // each base first in one round of two: a slower spell of the machine (a checkpoint, which
    // at volume writes whole pages of many more indexes; another process) weighs on both alike.
    // Measured one after the other, 10 s each, the same build's gap ranged from -6.6 to -17.1 %.
    let volume = Desks::open(&binary, &seeded, StructureId::from_uuid(largest)).await?;
    let empty_db = TestDatabase::with_departements(&["33"]).await;
    let (_, structure) =
        load_tests::bench_structure(&empty_db, "France Services de banc d'essai").await?;
    let empty = Desks::open(&binary, &empty_db, structure).await?;
    let mut totals = [(0u64, Duration::ZERO); 2];
    let mut gaps = Vec::new();
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut rates = [0.0; 2];
        for side in order {
            let (flows, took) = [&volume, &empty][side].flows(WINDOW).await?;
            totals[side].0 += flows;
            totals[side].1 += took;
            rates[side] = flows as f64 / took.as_secs_f64();
        }
        gaps.push((rates[0] / rates[1] - 1.0) * 100.0);
    }
    let [at_volume, on_empty] = totals.map(|(flows, took)| flows as f64 / took.as_secs_f64());
    println!(
        "{:<58} {at_volume:>7.0} /s  base vide {on_empty:.0} /s  écart {:+.1} %  cible ± 10 %",
        "parcours complets au volume national",
        (at_volume / on_empty - 1.0) * 100.0
    );
    println!(
        "{:<58} de {:+.1} à {:+.1} %",
        "  écart par manche",
        gaps.iter().copied().fold(f64::INFINITY, f64::min),
        gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    Ok(())
}
