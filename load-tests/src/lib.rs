//! What the benchmarks share: percentiles of measured durations and timed HTTP GETs.

pub mod oidc;

use std::time::{Duration, Instant};

use foundation::auth::{factors, secrets};
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use foundation::tenancy::{DepartementCode, Tenancy, Territory};
use futures::StreamExt;
use policies::Role;
use test_support::database::TestDatabase;
use uuid::Uuid;

/// Runs the all-in-one platform in this process on a free port of 127.0.0.1 with `settings`;
/// returns its base URL.
pub async fn spawn_platform(mut settings: foundation::config::Settings) -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    settings.http.port = port;
    settings.http.public_url = format!("http://127.0.0.1:{port}");
    let base = settings.http.public_url.clone();
    let app = all_in_one::build(settings).await?;
    tokio::spawn(app.run_until_stopped());
    Ok(base)
}

/// Waits until the platform's first pass of its scheduled jobs is over: no job has been running
/// for a second (polled every 100 ms). A bulk-loaded database makes that pass long (the usager
/// index completed from 100,000 usagers, the statistics' snapshot), and a benchmark of steady
/// traffic should not measure it. Returns how long it waited.
pub async fn jobs_settled(admin: &sqlx::PgPool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 10 {
        let (jobs, running): (i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE coalesce(last_finished_at < last_started_at, true))
             FROM platform.job_runs",
        )
        .fetch_one(admin)
        .await?;
        quiet = if jobs > 0 && running == 0 {
            quiet + 1
        } else {
            0
        };
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "les tâches planifiées tournent encore après 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

/// Territory 33 as the services reach it, and a France Services structure named `name` in it.
pub async fn bench_structure(
    db: &TestDatabase,
    name: &str,
) -> anyhow::Result<(Territory, StructureId)> {
    let tenancy = Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
    let ctx = tenancy.unguarded(DepartementCode::parse("33")?).await?;
    let structure = habilitation_desk::structures::create_structure(
        &ctx,
        &habilitation_desk::structures::NewStructure {
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            name: name.into(),
            kind: "france_services".into(),
            commune: foundation::tenancy::CommuneCode::parse("33063")?,
            address: String::new(),
            france_services: true,
        },
    )
    .await?;
    Ok((ctx, structure))
}

/// An aidant of `structure` (e-mail `{label}-{random}@bench.test`) with a confirmed app
/// factor: (id, e-mail, TOTP seed).
pub async fn aidant_with_factor(
    admin: &sqlx::PgPool,
    cipher: &secrets::SeedCipher,
    structure: StructureId,
    label: &str,
) -> anyhow::Result<(ProfessionalId, String, Vec<u8>)> {
    let email = format!(
        "{label}-{}@bench.test",
        &Uuid::new_v4().simple().to_string()[..10]
    );
    let mut tx = admin.begin().await?;
    let id = habilitation_desk::accounts::create_professional(&mut tx, &email, label).await?;
    habilitation_desk::accounts::grant_role(
        &mut tx,
        id,
        Role::Aidant,
        structure.domain(),
        Some("33"),
    )
    .await?;
    let (factor, seed) = factors::start_app_enrolment(&mut tx, cipher, id).await?;
    sqlx::query("UPDATE platform.second_factors SET confirmed_at = now() WHERE id = $1")
        .bind(factor)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((id, email, seed))
}

/// The `p` percentile (0 to 1) of durations sorted ascending.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `n` GETs of `url` (with the session cookie when given), `concurrency` at a time; each must
/// answer 200 with a body holding one of `expected`. Their durations, sorted.
pub async fn timed_gets(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    expected: &[&str],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let times = futures::stream::iter(0..n)
        .map(|_| async move {
            let started = Instant::now();
            let mut req = client.get(url);
            if let Some(c) = cookie {
                req = req.header("cookie", format!("ac_session={c}"));
            }
            let resp = req.send().await?;
            anyhow::ensure!(resp.status() == 200, "{url} : statut {}", resp.status());
            let body = resp.text().await?;
            anyhow::ensure!(
                expected.iter().any(|e| body.contains(e)),
                "{url} : aucun de {expected:?}"
            );
            Ok::<Duration, anyhow::Error>(started.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut out: Vec<Duration> = times.into_iter().collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}
