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

/// The database's clock, in seconds since 1970: taken before a platform starts, for
/// [`start_up_jobs_over`].
pub async fn database_clock(admin: &sqlx::PgPool) -> anyhow::Result<f64> {
    Ok(
        sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
            .fetch_one(admin)
            .await?,
    )
}

/// Waits until the start-up runs of a platform's scheduled jobs are over (none it started still
/// running, and nothing new for a second), so that a benchmark measures steady traffic: a new
/// database has every job due at start (with a bulk load, completing the usager index alone
/// takes seconds), a long-lived one only those whose period has come. A run an earlier process
/// claimed and never finished (it was stopped: its claim waits for the lease) is not waited
/// for. `platform_start`: [`database_clock`] when the platform was started. Returns the wait.
pub async fn start_up_jobs_over(
    admin: &sqlx::PgPool,
    platform_start: f64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut last, mut since) = (None, Instant::now());
    loop {
        let seen: (i64, i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE extract(epoch FROM last_started_at) >= $1
                                       AND (last_finished_at IS NULL
                                            OR last_finished_at < last_started_at)),
                    max(extract(epoch FROM greatest(last_started_at, last_finished_at)))::float8
             FROM platform.job_runs",
        )
        .bind(platform_start)
        .fetch_one(admin)
        .await?;
        if last != Some(seen) || seen.1 > 0 {
            (last, since) = (Some(seen), Instant::now());
        } else if since.elapsed() >= Duration::from_secs(1) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "travaux planifiés du démarrage toujours en cours"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
