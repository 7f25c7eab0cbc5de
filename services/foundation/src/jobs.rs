//! Scheduled jobs, declared in code by each service (`ServiceParts::jobs`) and run once per
//! period across all replicas: a run is claimed by moving `platform.job_runs.last_started_at`
//! forward, which only one replica can do for a given period. Jobs are idempotent (purges
//! delete what is due; running twice finds nothing more).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::app::{Platform, Shutdown};
use crate::tenancy::DepartementCode;

/// The scheduled jobs' worker's settings (`[jobs]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsSettings {
    /// How often each replica looks for jobs whose period has come.
    pub tick_ms: u64,
    /// A run claimed this long ago and never finished (its replica was killed) may be claimed
    /// again by another replica. A replica that stops cleanly gives its claim back at once.
    pub lease_seconds: u64,
    /// How long a job waits for one territory's part (a hung node, a lock held) before it
    /// notes that territory as failed and goes on with the others (`jobs::TerritoryFailures`).
    #[serde(default = "default_territory_seconds")]
    pub territory_seconds: u64,
}

fn default_territory_seconds() -> u64 {
    JobsSettings::default().territory_seconds
}

impl Default for JobsSettings {
    fn default() -> Self {
        JobsSettings {
            tick_ms: 30_000,
            lease_seconds: 900,
            territory_seconds: 300,
        }
    }
}

pub type JobFn = Arc<dyn Fn(Platform) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

/// A job: its stable name, its period, and what it does (returns how many things it handled).
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: JobFn,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Self
    where
        F: Fn(Platform) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
    {
        Self {
            name,
            every,
            run: Arc::new(move |p| Box::pin(run(p))),
        }
    }
}

/// Runs `each` for every served territory, one after the other, and adds up what each handled.
/// A territory that fails (its node down, a statement timed out, a table a migration left
/// behind) keeps no other territory from its run: see [`TerritoryFailures`] (test
/// `jobs::a_failing_territory_keeps_no_other_from_its_run`). One that hangs instead (a node
/// that no longer answers, a lock held) fails after `jobs.territory_seconds`: see [`bounded`].
pub async fn each_territory<F, Fut>(platform: &Platform, mut each: F) -> anyhow::Result<u64>
where
    F: FnMut(DepartementCode) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let mut handled = 0;
    let mut failures = TerritoryFailures::default();
    for departement in platform.tenancy.served() {
        if failures.skips(departement) {
            continue;
        }
        match bounded(platform, departement, each(departement)).await {
            Ok(n) => handled += n,
            Err(e) => failures.note(departement, &e),
        }
    }
    failures.result(handled)
}

/// `departement`'s part of a run, given up after `jobs.territory_seconds` (5 minutes) with an
/// error saying so, so that a territory that hangs is noted as failed like one that fails, and
/// the run goes on with the others well before its own bound (test
/// `jobs::territories::a_hung_territory_is_given_up_and_the_others_are_served`). Only this
/// process stops waiting: the statement sent goes on on the server until its lock or node
/// answers, then rolls back, its connection out of the pool until then; what the part
/// committed before stays.
///
/// On Citus, when the territory's worker does not answer a new connection either, the error
/// also names that worker and the other territories it holds: [`TerritoryFailures::note`] then
/// leaves those out of the rest of the run, so a worker that hangs costs one bound, not one per
/// territory it holds, while a lock held in one territory holds back no other (test
/// `citus::a_hung_worker_costs_a_job_one_bound_and_the_other_workers_territories_are_served`).
pub async fn bounded<T>(
    platform: &Platform,
    departement: DepartementCode,
    part: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let bound = Duration::from_secs(platform.settings.jobs.territory_seconds.max(1));
    match tokio::time::timeout(bound, part).await {
        Ok(done) => done,
        Err(_) => Err(Hung::error(bound, hung_worker(platform, departement).await)),
    }
}

/// A territory's part given up by [`bounded`]; on Citus, with its worker and the territories
/// that worker holds.
#[derive(Debug)]
pub struct Hung {
    bound: Duration,
    worker: Option<(String, Vec<DepartementCode>)>,
}

impl Hung {
    fn error(bound: Duration, worker: Option<(String, Vec<DepartementCode>)>) -> anyhow::Error {
        anyhow::Error::new(Hung { bound, worker })
    }
}

impl std::fmt::Display for Hung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no answer after {} s (jobs.territory_seconds): given up for this run",
            self.bound.as_secs()
        )?;
        if let Some((worker, _)) = &self.worker {
            write!(
                f,
                ", and the other territories of its worker {worker} with it"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Hung {}

/// On Citus, when the worker holding `departement`'s schema does not answer either: that
/// worker and every territory it holds, read from the coordinator's catalog (which answers while
/// a worker hangs). `None` on a single PostgreSQL (no such catalog), when the catalog does not
/// answer, or unless the worker is seen not answering (see [`worker_answers`]): a part that
/// waited on something of its own (a lock, a slow statement) holds no other territory back.
async fn hung_worker(
    platform: &Platform,
    departement: DepartementCode,
) -> Option<(String, Vec<DepartementCode>)> {
    let read = async {
        let citus: bool =
            sqlx::query_scalar("SELECT to_regclass('pg_catalog.pg_dist_schema') IS NOT NULL")
                .fetch_one(platform.platform_pool())
                .await?;
        if !citus {
            return Ok(None);
        }
        sqlx::query_as::<_, (String, i32, Vec<String>)>(
            "WITH placed AS (
                 SELECT DISTINCT s.schemaid::regnamespace::text AS schema_name, pl.groupid
                 FROM pg_catalog.pg_dist_schema s
                 JOIN pg_catalog.pg_dist_partition p ON p.colocationid = s.colocationid
                 JOIN pg_catalog.pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
                 JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = sh.shardid)
             SELECT n.nodename::text, n.nodeport, array_agg(o.schema_name ORDER BY o.schema_name)
             FROM placed t JOIN placed o ON o.groupid = t.groupid
             JOIN pg_catalog.pg_dist_node n ON n.groupid = t.groupid AND n.noderole = 'primary'
             WHERE t.schema_name = $1 GROUP BY 1, 2",
        )
        .bind(departement.schema_name())
        .fetch_optional(platform.platform_pool())
        .await
    };
    let (host, port, schemas) = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?
        .ok()??;
    if worker_answers(platform, &host, port).await != Some(false) {
        return None;
    }
    let territories = schemas
        .iter()
        .filter_map(|s| s.strip_prefix("dep_"))
        .filter_map(|c| DepartementCode::parse(c).ok())
        .collect();
    Some((format!("{host}:{port}"), territories))
}

/// Whether the coordinator opens a new connection to the worker `host:port` within a second
/// (`citus_check_connection_to_node`; a worker that hangs takes the connection and never answers
/// it): `Some(false)` when it says no or does not answer within 2 s, `None` when the
/// coordinator could not be asked. On a connection of its own, outside the pool, with no cached
/// connection to the worker to reuse, dropped if the check does not answer.
async fn worker_answers(platform: &Platform, host: &str, port: i32) -> Option<bool> {
    use sqlx::Connection;
    let options = platform.platform_pool().connect_options();
    let opened = sqlx::PgConnection::connect_with(&options);
    let mut conn = tokio::time::timeout(Duration::from_secs(2), opened)
        .await
        .ok()?
        .ok()?;
    sqlx::raw_sql(
        "SET citus.node_connection_timeout = 1000; SET citus.max_cached_conns_per_worker = 0",
    )
    .execute(&mut conn)
    .await
    .ok()?;
    let check = sqlx::query_scalar::<_, bool>("SELECT citus_check_connection_to_node($1, $2)")
        .bind(host)
        .bind(port)
        .fetch_one(&mut conn);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(answers)) => {
            let _ = conn.close().await;
            Some(answers)
        }
        Ok(Err(_)) => None,
        Err(_) => Some(false),
    }
}

/// The territories that failed during a run: each is logged, the rest of the run leaves it out
/// and goes on with the others, and the run, once over, fails naming them and what the others
/// handled (`job_runs.last_error`); the job, idempotent, is due again at its next period.
#[derive(Default)]
pub struct TerritoryFailures {
    failed: Vec<(DepartementCode, String)>,
    /// Territories of a Citus worker that hung, with why: each becomes a failure when a loop
    /// skips it ([`TerritoryFailures::skips`]), so that one served before, or never visited,
    /// is not named.
    left_out: Vec<(DepartementCode, String)>,
}

impl TerritoryFailures {
    fn failed(&self, departement: DepartementCode) -> bool {
        self.failed.iter().any(|(d, _)| *d == departement)
    }

    /// Whether the rest of the run leaves `departement` out: it failed earlier in this run, or
    /// its Citus worker hung (then it is named among the failures from now on).
    pub fn skips(&mut self, departement: DepartementCode) -> bool {
        if self.failed(departement) {
            return true;
        }
        let Some(at) = self.left_out.iter().position(|(d, _)| *d == departement) else {
            return false;
        };
        let left = self.left_out.remove(at);
        self.failed.push(left);
        true
    }

    /// Notes `departement` as failed with `error`; a territory already noted keeps its first
    /// error (a job may meet it again from another territory's part). A part that hung on a
    /// Citus worker that does not answer ([`Hung`]) also leaves the other territories of that
    /// worker out of the rest of the run.
    pub fn note(&mut self, departement: DepartementCode, error: &anyhow::Error) {
        if self.failed(departement) {
            return;
        }
        self.left_out.retain(|(d, _)| *d != departement);
        let message = format!("{error:#}");
        tracing::warn!(departement = %departement, error = message, "a territory failed, the others go on");
        self.failed.push((departement, message));
        let worker = error.chain().find_map(|e| e.downcast_ref::<Hung>());
        if let Some(Hung {
            worker: Some((worker, held)),
            ..
        }) = worker
        {
            for other in held {
                if !self.failed(*other) && !self.left_out.iter().any(|(d, _)| d == other) {
                    let why =
                        format!("left out: its worker {worker} did not answer for {departement}");
                    self.left_out.push((*other, why));
                }
            }
        }
    }

    /// `handled` if no territory failed; otherwise the error naming those that did.
    pub fn result(self, handled: u64) -> anyhow::Result<u64> {
        if self.failed.is_empty() {
            return Ok(handled);
        }
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(d, e)| format!("{d} ({e})"))
            .collect();
        Err(anyhow::anyhow!(
            "territories failed: {}; {handled} handled in the others",
            failed.join(", ")
        ))
    }
}

/// This replica's run of a job for this period. `previous` is the start it replaced, put
/// back if the run is given up (the replica stops), so that another replica takes it at its
/// next look instead of waiting for the next period.
#[derive(Debug)]
pub struct Claim {
    started: time::OffsetDateTime,
    previous: Option<time::OffsetDateTime>,
}

/// Claims this period's run of `name`; `Some` for exactly one caller per period. A run
/// claimed more than the lease ago and never finished (its replica died) is claimable again.
pub async fn claim(
    platform: &Platform,
    name: &str,
    every: Duration,
) -> Result<Option<Claim>, sqlx::Error> {
    let claimed: Option<(time::OffsetDateTime, Option<time::OffsetDateTime>)> = sqlx::query_as(
        "WITH previous AS (SELECT last_started_at FROM platform.job_runs WHERE name = $1)
         INSERT INTO platform.job_runs (name, last_started_at) VALUES ($1, now())
         ON CONFLICT (name) DO UPDATE SET last_started_at = now()
         WHERE job_runs.last_started_at <= now() - make_interval(secs => $2)
            OR (coalesce(job_runs.last_finished_at < job_runs.last_started_at, true)
                AND job_runs.last_started_at <= now() - make_interval(secs => $3))
         RETURNING last_started_at, (SELECT last_started_at FROM previous)",
    )
    .bind(name)
    .bind(every.as_secs_f64())
    .bind(platform.settings.jobs.lease_seconds as f64)
    .fetch_optional(platform.platform_pool())
    .await?;
    Ok(claimed.map(|(started, previous)| Claim { started, previous }))
}

/// Gives a claim back (the run was stopped before it finished): the period is due again.
pub async fn release(
    platform: &Platform,
    name: &str,
    every: Duration,
    claim: &Claim,
) -> Result<(), sqlx::Error> {
    // A first run given back is due at once (never -infinity: no client type reads it).
    sqlx::query(
        "UPDATE platform.job_runs
         SET last_started_at = coalesce($3, now() - make_interval(secs => $4))
         WHERE name = $1 AND last_started_at = $2",
    )
    .bind(name)
    .bind(claim.started)
    .bind(claim.previous)
    .bind(every.as_secs_f64())
    .execute(platform.platform_pool())
    .await?;
    Ok(())
}

/// Runs every job whose period has come and that this replica claimed. Returns what ran.
pub async fn run_due(
    platform: &Platform,
    jobs: &[Job],
) -> Vec<(&'static str, Result<u64, String>)> {
    run_due_until(platform, jobs, None).await
}

/// [`run_due`], stopping when `shutdown` is requested: before the next job, or during one —
/// its uncommitted work rolls back (jobs commit what they handle as they go, and running
/// again does nothing more), and its claim is given back for another replica. A run that
/// takes nine tenths of the lease (a lock held, a hung node) is stopped the same way and
/// recorded as failed: the jobs after it run, and it is due again at its next period (test
/// `a_hung_run_is_stopped_before_its_lease_ends_and_the_next_jobs_run`).
pub async fn run_due_until(
    platform: &Platform,
    jobs: &[Job],
    mut shutdown: Option<&mut Shutdown>,
) -> Vec<(&'static str, Result<u64, String>)> {
    let mut ran = Vec::new();
    for job in jobs {
        if shutdown.as_ref().is_some_and(|s| s.is_requested()) {
            return ran;
        }
        let claim = match claim(platform, job.name, job.every).await {
            Ok(Some(claim)) => claim,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(job = job.name, error = %e, "job claim failed");
                continue;
            }
        };
        // The scheduler never waits for a run past its lease (another replica may then claim
        // it again). Only this process stops waiting: a statement already sent goes on on the
        // server until its lock or node answers (jobs are idempotent).
        let bound = run_bound(platform.settings.jobs.lease_seconds);
        let run = async {
            tokio::time::timeout(bound, (job.run)(platform.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "stopped after {} s, nine tenths of its lease (jobs.lease_seconds): \
                         what it committed stays, the rest waits for its next period",
                        bound.as_secs_f64()
                    ))
                })
        };
        let outcome = match shutdown.as_deref_mut() {
            Some(stop) => tokio::select! {
                outcome = run => Some(outcome),
                _ = stop.requested() => None,
            },
            None => Some(run.await),
        };
        let Some(outcome) = outcome else {
            let released = release(platform, job.name, job.every, &claim).await;
            tracing::info!(
                job = job.name,
                released = released.is_ok(),
                "job stopped at shutdown, its claim given back"
            );
            return ran;
        };
        let outcome = outcome.map_err(|e| e.to_string());
        let (count, error) = match &outcome {
            Ok(n) => (Some(*n as i64), None),
            Err(e) => (None, Some(e.clone())),
        };
        if let Some(error) = &error {
            tracing::error!(job = job.name, error = %error, "job failed");
        }
        let _ = sqlx::query(
            "UPDATE platform.job_runs SET last_finished_at = now(), last_result = $2, last_error = $3 WHERE name = $1",
        )
        .bind(job.name)
        .bind(count)
        .bind(error)
        .execute(platform.platform_pool())
        .await;
        ran.push((job.name, outcome));
    }
    ran
}

/// How long a run may take: nine tenths of the lease, so that it has stopped (its uncommitted
/// work rolled back, its end recorded) before another replica may claim it again.
fn run_bound(lease_seconds: u64) -> Duration {
    Duration::from_secs(lease_seconds.max(1)).mul_f64(0.9)
}

/// The worker running the jobs: it looks every `jobs.tick_ms` (30 s) for jobs whose period
/// has come, and stops at shutdown between jobs or by giving a running job's claim back.
pub async fn scheduler(platform: Platform, jobs: Vec<Job>, mut shutdown: Shutdown) {
    let every = Duration::from_millis(platform.settings.jobs.tick_ms.max(100));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        run_due_until(&platform, &jobs, Some(&mut shutdown)).await;
    }
}

/// What `purge_expired_flow_data` deletes, one statement each.
const FLOW_DATA_PURGES: &[&str] = &[
    "DELETE FROM platform.email_links WHERE expires_at < now() - interval '1 day'",
    "DELETE FROM platform.rate_limits WHERE window_start < now() - interval '1 day'",
    // A wrong code from an unknown browser is remembered 30 days (its delays keep growing
    // meanwhile); a browser stays known a year after its last login.
    "DELETE FROM platform.login_delays WHERE updated_at < now() - interval '30 days'",
    "DELETE FROM platform.known_browsers WHERE last_seen_at < now() - interval '1 year'",
    "DELETE FROM platform.sessions
     WHERE (ended_at IS NOT NULL AND ended_at < now() - interval '1 day')
        OR created_at < now() - interval '13 hours' - interval '1 day'",
    // Issuers' address links (24 hours) and sessions (12 hours), a day after.
    "DELETE FROM platform.issuer_links WHERE expires_at < now() - interval '1 day'",
    "DELETE FROM platform.issuer_sessions
     WHERE (ended_at IS NOT NULL AND ended_at < now() - interval '1 day')
        OR created_at < now() - interval '13 hours' - interval '1 day'",
];

/// Login links, enrolment links and rate-limit windows are kept minutes to days, not more
/// (product.md §12); ended or expired sessions go after a day. The security journal keeps the
/// record of what happened for a year.
pub fn purge_expired_flow_data() -> Job {
    Job::new(
        "purge_expired_flow_data",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let mut purged = 0;
            for statement in FLOW_DATA_PURGES {
                purged += sqlx::query(*statement)
                    .execute(platform.platform_pool())
                    .await?
                    .rows_affected();
            }
            // The security journal's entries older than a year, up to a signed checkpoint.
            let mut conn = platform.platform_pool().acquire().await?;
            purged += crate::auth::journal::purge_expired(&mut conn).await? as u64;
            Ok(purged)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: &str) -> DepartementCode {
        DepartementCode::parse(c).expect("code")
    }

    /// A worker that hung for 32 leaves out its other territories (31 served before, 33 after):
    /// only 33, which the run then skips, is named with 32; 31 is not.
    #[test]
    fn a_hung_worker_names_only_the_territories_the_run_then_skips() {
        let mut failures = TerritoryFailures::default();
        let hung = Hung::error(
            Duration::from_secs(3),
            Some(("w1:5432".into(), vec![code("31"), code("32"), code("33")])),
        );
        assert!(!failures.skips(code("31")));
        failures.note(code("32"), &hung);
        assert!(failures.skips(code("33")));
        assert!(failures.skips(code("32")));
        assert!(!failures.skips(code("34")));
        let error = format!("{:#}", failures.result(2).expect_err("échec"));
        assert!(error.contains("32 (no answer after 3 s"), "{error}");
        assert!(
            error.contains("33 (left out: its worker w1:5432 did not answer for 32)"),
            "{error}"
        );
        assert!(
            !error.contains("31 (") && !error.contains("34 ("),
            "{error}"
        );
    }

    /// Without its worker (a single PostgreSQL, or a worker that answers), a territory that
    /// hung leaves no other out.
    #[test]
    fn a_territory_that_hung_alone_leaves_no_other_out() {
        let mut failures = TerritoryFailures::default();
        failures.note(code("32"), &Hung::error(Duration::from_secs(3), None));
        failures.note(code("32"), &anyhow::anyhow!("seconde erreur"));
        assert!(!failures.skips(code("33")));
        let error = format!("{:#}", failures.result(0).expect_err("échec"));
        assert!(
            !error.contains("seconde erreur"),
            "la première erreur reste : {error}"
        );
    }
}
