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
            // The first start on a database just seeded at national volume runs each job over
            // 10 M mandates for the first time (statistics, digests, reminders, the usager
            // index): 891 s on 2026-12-04. Later starts take a few seconds.
            started.elapsed() < Duration::from_secs(1800),
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

/// CPU time read from `/proc`: how a run's work splits between PostgreSQL, the platform and the
/// load generator, measured over the run itself.
pub mod cpu {
    use std::sync::OnceLock;

    /// Seconds per clock tick of `/proc/*/stat` (`getconf CLK_TCK`, 100 on Linux).
    fn tick() -> f64 {
        static TICK: OnceLock<f64> = OnceLock::new();
        *TICK.get_or_init(|| {
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map_or(0.01, |hz| 1.0 / hz)
        })
    }

    /// (command name, user + system ticks) of a process, from its `stat` line.
    fn stat(pid: &str) -> Option<(String, u64)> {
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The name is between the first `(` and the last `)` (it may hold spaces and
    /// parentheses); `utime` and `stime` are the 14th and 15th fields (proc(5)).
    fn parse_stat(line: &str) -> Option<(String, u64)> {
        let (head, rest) = line.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }

    /// CPU seconds used so far by the processes of each command name in `names`, in one pass
    /// over `/proc` (`postgres`: the local stack's server, its backends and background
    /// processes; `weed`: the object store). A process that ended since an earlier reading is
    /// missing from this one: read around a run whose connections stay open (pools).
    pub fn commands_seconds<const N: usize>(names: [&str; N]) -> [f64; N] {
        let mut ticks = [0u64; N];
        let pids = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()));
        for (comm, t) in pids.filter_map(|pid| stat(&pid)) {
            if let Some(i) = names.iter().position(|n| *n == comm) {
                ticks[i] += t;
            }
        }
        ticks.map(|t| t as f64 * tick())
    }

    /// CPU seconds used so far by one process (all its threads).
    pub fn process_seconds(pid: u32) -> f64 {
        stat(&pid.to_string()).map_or(0.0, |(_, t)| t as f64 * tick())
    }

    /// CPU seconds used so far by this process.
    pub fn own_seconds() -> f64 {
        process_seconds(std::process::id())
    }

    /// Busy CPU seconds of the whole machine so far, all cores (`/proc/stat`: all but idle and
    /// iowait), and the number of cores.
    pub fn machine_seconds() -> (f64, usize) {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cores = text
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        let busy = text
            .lines()
            .find(|l| l.starts_with("cpu "))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .enumerate()
                    .filter(|(i, _)| *i != 3 && *i != 4)
                    .map(|(_, v)| v)
                    .sum::<u64>()
            })
            .unwrap_or(0);
        (busy as f64 * tick(), cores.max(1))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn stat_lines_give_the_name_and_user_plus_system_ticks() {
            let line = "4242 (tokio-rt (w) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        731 269 0 0 20 0 9 0 100 1000000 500 18446744073709551615";
            assert_eq!(
                super::parse_stat(line),
                Some(("tokio-rt (w) 1".to_owned(), 1000))
            );
            assert_eq!(super::parse_stat("4242 (postgres"), None);
            assert_eq!(super::parse_stat("4242 (postgres) S 1"), None);
        }
    }

    /// A reading of the processes, to subtract from a later one.
    #[derive(Clone, Copy, Debug)]
    pub struct Reading {
        pub postgres: f64,
        pub platform: f64,
        pub generator: f64,
        pub store: f64,
        pub machine: f64,
    }

    /// CPU milliseconds per unit of work (a flow, a pair, a creation) between two readings.
    #[derive(Clone, Copy, Debug)]
    pub struct PerUnit {
        pub postgres: f64,
        /// The platform's process when it runs apart (else 0: its work is in `generator`).
        pub platform: f64,
        /// This process: the load generator, and the platform when it runs inside it.
        pub generator: f64,
        /// The object store's process.
        pub store: f64,
        /// Everything else on the machine.
        pub rest: f64,
    }

    /// The machine's cores.
    pub fn cores() -> usize {
        machine_seconds().1
    }

    impl PerUnit {
        pub fn total(&self) -> f64 {
            self.postgres + self.platform + self.generator + self.store + self.rest
        }

        /// Prints `what`'s CPU per unit and what follows from it: the machine's cores divided
        /// by the total is the most the rate could reach here at that cost, and divided by
        /// PostgreSQL's part alone, the most it could reach even if nothing else cost anything;
        /// `target` (per second) needs the total under cores ÷ target.
        pub fn print(&self, what: &str, target: f64) {
            let cores = cores() as f64;
            println!(
                "{what:<58} PostgreSQL {:.2} ms  plateforme {:.2} ms  générateur {:.2} ms  stockage objet {:.2} ms  autres {:.2} ms",
                self.postgres, self.platform, self.generator, self.store, self.rest
            );
            println!(
                "{:<58} {:>7.0} /s  (PostgreSQL seul : {:.0} /s ; la cible {target:.0} /s demande ≤ {:.2} ms au total)",
                format!("  plafond des {cores:.0} cœurs à ce coût"),
                cores * 1000.0 / self.total().max(f64::EPSILON),
                cores * 1000.0 / self.postgres.max(f64::EPSILON),
                cores * 1000.0 / target
            );
        }
    }

    impl Reading {
        /// Now; `platform`: the platform's process when it runs apart.
        pub fn now(platform: Option<u32>) -> Reading {
            let [postgres, store] = commands_seconds(["postgres", "weed"]);
            Reading {
                postgres,
                platform: platform.map_or(0.0, process_seconds),
                generator: own_seconds(),
                store,
                machine: machine_seconds().0,
            }
        }

        /// CPU milliseconds per unit of work done since `earlier`.
        pub fn per_unit_since(&self, earlier: &Reading, units: u64) -> PerUnit {
            let per = |a: f64, b: f64| (a - b).max(0.0) * 1000.0 / units.max(1) as f64;
            let postgres = per(self.postgres, earlier.postgres);
            let platform = per(self.platform, earlier.platform);
            let generator = per(self.generator, earlier.generator);
            let store = per(self.store, earlier.store);
            let machine = per(self.machine, earlier.machine);
            PerUnit {
                postgres,
                platform,
                generator,
                store,
                rest: (machine - postgres - platform - generator - store).max(0.0),
            }
        }
    }
}
