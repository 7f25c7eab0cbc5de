//! One fresh database per test, set up by the production code path (platform migrations,
//! reference territories, département provisioning), so tests never share state.

use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS};
use foundation::tenancy::{DepartementCode, TenantLogin};
use sqlx::PgPool;

use crate::stack_var;

/// A database of its own, with an administrator pool and the application's URL.
///
/// Dropped with the value when the test ends well (on each Citus node too), so that test runs
/// outside `infra/run test` do not fill the disk; kept when the test panics, for a look
/// afterwards (`infra/run test` and `.ci/run` clear those when they start), or when
/// `AC_TEST_KEEP_DATABASES` is set.
pub struct TestDatabase {
    pub name: String,
    pub admin: PgPool,
    pub admin_url: String,
    pub app_url: String,
    pub app_role: String,
    /// The administrator URLs of the servers holding a copy, dropped with it; none for a
    /// database this value does not own ([`TestDatabase::existing`]).
    servers: Vec<String>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.servers.is_empty()
            || std::thread::panicking()
            || std::env::var_os("AC_TEST_KEEP_DATABASES").is_some()
        {
            return;
        }
        let (servers, name) = (std::mem::take(&mut self.servers), self.name.clone());
        // Its own thread and runtime: a value dropped inside a test's runtime cannot wait on it.
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for server in servers {
                    if let Ok(pool) = setup_pool(&server).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let dropping = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool);
                        tokio::pin!(dropping);
                        loop {
                            tokio::select! {
                                _ = &mut dropping => break,
                                () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {
                                    end_authenticating(&name);
                                }
                            }
                        }
                        pool.close().await;
                    }
                }
            });
        });
        let _ = dropping.join();
    }
}

/// Ends the backends of database `name` still in their authentication. A connection the test's
/// pools were opening when the test ended stays there: the test's runtime, blocked in
/// [`TestDatabase`]'s drop, never answers the server's challenge. Such a backend is not yet in
/// `pg_stat_activity`, so `DROP DATABASE … WITH (FORCE)` does not end it, and it does not absorb
/// the barrier that `DROP DATABASE` waits for from every backend of the server: the drop (and
/// every other test's drop meanwhile) waited for `authentication_timeout`, 60 s, in a score of
/// tests of each CI run. The servers are local: their backends are found by their process
/// title (`postgres: user database host authentication`).
fn end_authenticating(name: &str) {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return;
    };
    let pids: Vec<u32> = processes
        .flatten()
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let title = std::fs::read(p.path().join("cmdline")).ok()?;
            let title = String::from_utf8_lossy(&title);
            let words: Vec<&str> = title.split([' ', '\0']).filter(|w| !w.is_empty()).collect();
            (words.first() == Some(&"postgres:")
                && words.get(2) == Some(&name)
                && words.last() == Some(&"authentication"))
            .then_some(pid)
        })
        .collect();
    signal("TERM", &pids);
}

/// `url` naming another database of the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("URL de base de données sans nom de base");
    format!("{base}/{database}")
}

/// The application's login role of the stack.
pub fn app_role() -> String {
    user_of(&stack_var("AC_TEST_APP_URL"))
}

/// The user name of a `postgres://user:password@host/db` URL.
pub fn user_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split(['@', ':']).next().unwrap_or_default().to_owned()
}

/// A one-connection pool for the harness's own setup on a server or a Citus node. Not
/// `migrate::connect_admin` (5 s): a node busy creating other tests' databases at the start of a
/// run has kept a new connection waiting longer than that (a coordinator once; a worker's new
/// database, in a CI run of 2026-12-02).
async fn setup_pool(url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect(url)
        .await
}

async fn create_database(server_url: &str, name: &str) {
    let server = setup_pool(server_url)
        .await
        .expect("connexion administrateur");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&server)
        .await
        .expect("CREATE DATABASE");
    server.close().await;
}

async fn pg_ctl(args: &[&str]) {
    let program = crate::private_postgres::bin_dir().join("pg_ctl");
    let mut command = if crate::private_postgres::running_as_root() {
        let mut c = tokio::process::Command::new("runuser");
        c.args(["-u", crate::private_postgres::OWNER, "--"])
            .arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    let status = command
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("pg_ctl");
    assert!(status.success(), "pg_ctl {args:?}");
}

/// The processes whose parent is `parent` (`/proc/<pid>/stat`, the field after the state).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces: the fields after it follow its closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// A worker frozen by [`CitusNodes::hang_worker`]; woken (its children, then the postmaster)
/// by [`HungWorker::resume`] or when dropped.
pub struct HungWorker {
    stopped: Vec<u32>,
}

impl HungWorker {
    pub fn resume(self) {}
}

impl Drop for HungWorker {
    fn drop(&mut self) {
        if let Some((postmaster, children)) = self.stopped.split_first() {
            signal("CONT", children);
            signal("CONT", &[*postmaster]);
        }
    }
}

/// Sends SIGSTOP or SIGCONT to `pids`; whether every one received it.
fn signal(name: &str, pids: &[u32]) -> bool {
    if pids.is_empty() {
        return true;
    }
    std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn port_of(url: &str) -> u16 {
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .expect("URL de base de données")
        .get_port()
}

/// The workers of the stack's Citus cluster, when the tests run on it (`infra/run test`'s
/// Citus step sets `AC_TEST_CITUS_SOCKET`, the nodes' socket directory, and
/// `AC_TEST_CITUS_WORKERS`, the workers' administrator URLs).
pub struct CitusNodes {
    socket: String,
    workers: Vec<String>,
}

impl CitusNodes {
    pub fn from_env() -> Option<CitusNodes> {
        let socket = std::env::var("AC_TEST_CITUS_SOCKET").ok()?;
        let workers = std::env::var("AC_TEST_CITUS_WORKERS").ok()?;
        Some(CitusNodes {
            socket,
            workers: workers.split(',').map(str::to_owned).collect(),
        })
    }

    /// Stops the worker listening on `port` at once (`pg_ctl stop -m immediate`, as a crash
    /// would); returns its data directory, for [`CitusNodes::start_worker`].
    pub async fn stop_worker(&self, port: u16) -> String {
        let dir = self.data_directory(port).await;
        pg_ctl(&["-D", &dir, "-m", "immediate", "-w", "stop"]).await;
        dir
    }

    async fn data_directory(&self, port: u16) -> String {
        let url = self
            .workers
            .iter()
            .find(|w| port_of(w) == port)
            .expect("nœud Citus inconnu");
        let pool = migrate::connect_admin(&with_database(url, "postgres"), 1)
            .await
            .expect("connexion au nœud");
        let dir: String = sqlx::query_scalar("SHOW data_directory")
            .fetch_one(&pool)
            .await
            .expect("data_directory");
        pool.close().await;
        dir
    }

    /// Hangs the worker listening on `port`, as a frozen machine would: every one of its
    /// processes stopped (SIGSTOP), its port still taking connections that nothing answers.
    /// It wakes when the returned guard is resumed or dropped (a failed assertion too).
    pub async fn hang_worker(&self, port: u16) -> HungWorker {
        let dir = self.data_directory(port).await;
        let postmaster: u32 = std::fs::read_to_string(format!("{dir}/postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid du postmaster");
        // The postmaster first, so that it starts nobody meanwhile; then its children.
        assert!(signal("STOP", &[postmaster]), "SIGSTOP du postmaster");
        let mut stopped = vec![postmaster];
        stopped.extend(children_of(postmaster));
        // A child that ended meanwhile is no matter.
        signal("STOP", &stopped[1..]);
        HungWorker { stopped }
    }

    /// Starts a worker stopped by [`CitusNodes::stop_worker`] with its own settings.
    pub async fn start_worker(&self, dir: &str) {
        let log = format!("{dir}/../postgres.log");
        pg_ctl(&["-D", dir, "-l", &log, "-w", "-t", "60", "start"]).await;
    }

    /// Creates the database on each worker with the extension, then registers the workers
    /// with the coordinator's copy, as an operator does for a new database.
    async fn attach(&self, admin: &sqlx::PgPool, admin_url: &str, name: &str) {
        for worker in &self.workers {
            create_database(worker, name).await;
            let pool = setup_pool(&with_database(worker, name))
                .await
                .expect("connexion au nœud Citus");
            sqlx::raw_sql("CREATE EXTENSION citus")
                .execute(&pool)
                .await
                .expect("CREATE EXTENSION citus sur un nœud");
            pool.close().await;
        }
        let ports: Vec<u16> = self.workers.iter().map(|w| port_of(w)).collect();
        // Registering a node copies the roles to it; roles are shared by the node's databases,
        // so two tests registering at once may race on one role row: try again.
        let mut attempt = 0;
        loop {
            let result =
                foundation::tenancy::citus::attach(admin, &self.socket, port_of(admin_url), &ports)
                    .await;
            match result {
                Ok(()) => break,
                Err(e)
                    if attempt < 8
                        && (foundation::tenancy::citus::is_role_race(&e)
                            || foundation::tenancy::citus::is_deadlock_victim(&e)) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => panic!("enregistrement des nœuds Citus : {e}"),
            }
        }
    }
}

impl TestDatabase {
    /// Creates an empty database and applies the platform migrations to it.
    pub async fn create() -> TestDatabase {
        let citus = CitusNodes::from_env();
        Self::create_in(
            &stack_var("AC_TEST_ADMIN_URL"),
            &stack_var("AC_TEST_APP_URL"),
            citus.as_ref(),
        )
        .await
    }

    /// [`TestDatabase::create`] on another cluster (URLs of its administrator and of the
    /// application's login role, any database name).
    pub async fn create_on(admin_url: &str, app_url: &str) -> TestDatabase {
        Self::create_in(admin_url, app_url, None).await
    }

    /// A database made elsewhere (a seeded one a benchmark reuses): never dropped by this value.
    pub fn existing(name: &str, admin: PgPool, admin_url: String, app_url: String) -> TestDatabase {
        TestDatabase {
            name: name.to_owned(),
            admin,
            admin_url,
            app_role: user_of(&app_url),
            app_url,
            servers: Vec::new(),
        }
    }

    async fn create_in(admin_url: &str, app_url: &str, citus: Option<&CitusNodes>) -> TestDatabase {
        let name = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        create_database(admin_url, &name).await;
        let mut servers = vec![admin_url.to_owned()];
        servers.extend(citus.iter().flat_map(|c| c.workers.iter().cloned()));
        let admin_url = with_database(admin_url, &name);
        let app_role = user_of(app_url);
        let admin = migrate::connect_admin(&admin_url, 8)
            .await
            .expect("connexion à la base de test");
        if let Some(citus) = citus {
            citus.attach(&admin, &admin_url, &name).await;
        }
        migrate::migrate_platform(&admin, &app_role)
            .await
            .expect("migrations de la plateforme");
        TestDatabase {
            app_url: with_database(app_url, &name),
            name,
            admin,
            admin_url,
            app_role,
            servers,
        }
    }

    /// How the applications under test log in as département roles (the default settings).
    pub fn tenant_login() -> TenantLogin {
        TenantLogin::from_settings(&foundation::config::Settings::default().database)
    }

    /// Creates a database with these départements provisioned and ready.
    pub async fn with_departements(codes: &[&str]) -> TestDatabase {
        let db = Self::create().await;
        for code in codes {
            db.provision(code).await;
        }
        db
    }

    /// Provisions one département schema through the production path; panics if it fails.
    pub async fn provision(&self, code: &str) {
        let departement = DepartementCode::parse(code).expect("code de département");
        let report = migrate::provision_departement(
            &self.admin,
            &self.app_role,
            &Self::tenant_login(),
            departement,
            &DEPARTEMENT_MIGRATIONS,
        )
        .await
        .expect("provisionnement");
        if let Err(e) = report.result {
            panic!("le schéma du département {code} n'a pas pu être migré : {e}");
        }
    }
}
