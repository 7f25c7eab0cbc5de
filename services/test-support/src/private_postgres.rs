//! A PostgreSQL cluster of a test's own: `initdb`, then `postgres` on a free port of 127.0.0.1,
//! which the test may kill with SIGKILL (the postmaster, as a crash would) and start again on
//! the same port and data. The stack's shared cluster is never harmed. As root, PostgreSQL runs
//! as the unprivileged user `infra/run` creates for its own cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub(crate) const OWNER: &str = "aidants-pg";
const ADMIN_PASSWORD: &str = "admin-secret-private-cluster";
const APP_PASSWORD: &str = "app-secret-private-cluster";

pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    root: bool,
    child: Option<tokio::process::Child>,
}

pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The newest installed PostgreSQL's binaries (Debian's layout, as `infra/run` uses).
pub(crate) fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installé (/usr/lib/postgresql) : lancez infra/run")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    dirs.sort();
    dirs.pop().expect("une version de PostgreSQL").1
}

impl PrivatePostgres {
    /// A new cluster, started, with the administrator and the application's login role.
    pub async fn start() -> Self {
        let root = running_as_root();
        let base = if root {
            PathBuf::from("/var/lib/aidants-connect")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "test-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).expect("dossier du cluster");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{ADMIN_PASSWORD}\n")).expect("mot de passe");
        if root {
            let ok = std::process::Command::new("chown")
                .args(["-R", OWNER])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {OWNER} {} (créé par infra/run)", dir.display());
        }
        let mut pg = PrivatePostgres {
            bin: bin_dir(),
            port: crate::free_port(),
            root,
            child: None,
            dir,
        };
        let data = pg.data();
        let status = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "aidants_admin", "-E", "UTF8", "--locale=C.UTF-8"])
            .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("initdb");
        assert!(status.success(), "initdb du cluster privé");
        let _ = std::fs::remove_file(&pwfile);
        pg.launch().await;
        let admin = sqlx::PgPool::connect(&pg.admin_url()).await.expect("admin");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {} LOGIN NOINHERIT PASSWORD '{APP_PASSWORD}'",
            crate::database::app_role()
        )))
        .execute(&admin)
        .await
        .expect("rôle applicatif");
        admin.close().await;
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let program = self.bin.join(program);
        if self.root {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", OWNER, "--"]).arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        }
    }

    /// Starts the postmaster and waits until it accepts a query. After a SIGKILL the old
    /// backends may hold the shared memory a moment: the start is tried again until it holds.
    async fn launch(&mut self) {
        let started = Instant::now();
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("postgres.log"))
                .expect("journal");
            let child = self
                .command("postgres")
                .arg("-D")
                .arg(self.data())
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", self.dir.display()))
                .args(["-c", "max_connections=200"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("postgres");
            self.child = Some(child);
            let url = self.admin_url();
            while started.elapsed() < Duration::from_secs(60) {
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(_)) = child.try_wait()
                {
                    break; // exited: shared memory still held, try again
                }
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    pool.close().await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cluster privé pas prêt en 60 s ({})",
                self.dir.join("postgres.log").display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The administrator's URL of the `postgres` database (a `TestDatabase` makes its own).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://aidants_admin:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The application login role's URL of the `postgres` database.
    pub fn app_url(&self) -> String {
        format!(
            "postgres://{}:{APP_PASSWORD}@127.0.0.1:{}/postgres",
            crate::database::app_role(),
            self.port
        )
    }

    fn postmaster_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
    }

    /// `kill -9` of the postmaster; returns once the port refuses connections.
    pub async fn kill9(&mut self) {
        let pid = self.postmaster_pid().expect("postmaster.pid");
        let ok = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -9 {pid}");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the killed cluster again (crash recovery replays its WAL).
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let (Some(_), Some(pid)) = (self.child.as_ref(), self.postmaster_pid()) {
            // Immediate shutdown: the test is over, its data goes with it.
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid])
                .status();
            for _ in 0..50 {
                if !self.data().join("postmaster.pid").exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        remove(&self.dir);
    }
}
