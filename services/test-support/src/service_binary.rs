//! A service's own binary started as a deployment starts it: settings from `AC_*` variables
//! only, both listeners on port 0 (the ports are read from its "ready" log line), against a
//! fresh test database and the local stack. What the smoke tests of the four service binaries
//! share.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::database::TestDatabase;
use crate::stack_var;

/// A running service binary; killed when dropped.
pub struct RunningService {
    child: tokio::process::Child,
    pub port: u16,
    pub internal_port: u16,
    /// Log lines written before it was ready (for failure messages).
    pub startup_log: Vec<String>,
}

/// `port=41233` in a log line, without the terminal colours the formatter may add.
fn field(line: &str, name: &str) -> Option<u16> {
    let plain: String = strip_ansi(line);
    plain
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `exe` (a path from `env!("CARGO_BIN_EXE_…")`) on `db`, with the stack's SMTP, object
/// store, SMS gateway and DSFR; waits at most 60 s for its "ready" line.
pub async fn start(exe: &str, db: &TestDatabase) -> RunningService {
    start_with(exe, db, &[]).await
}

/// [`start`], with more `AC_*` variables (they win over the defaults here).
pub async fn start_with(exe: &str, db: &TestDatabase, env: &[(&str, &str)]) -> RunningService {
    let mut command = tokio::process::Command::new(exe);
    command
        .env_remove("AC_CONFIG_FILE")
        .env("AC_ENVIRONMENT", "test")
        .env("AC_DATABASE__URL", &db.app_url)
        .env("AC_DATABASE__MAX_CONNECTIONS", "4")
        .env("AC_HTTP__PORT", "0")
        .env("AC_HTTP__INTERNAL_PORT", "0")
        .env("AC_SMTP__HOST", "127.0.0.1")
        .env("AC_SMTP__PORT", stack_var("AC_SMTP__PORT"))
        .env(
            "AC_OBJECT_STORE__ENDPOINT",
            stack_var("AC_OBJECT_STORE__ENDPOINT"),
        )
        .env(
            "AC_OBJECT_STORE__ACCESS_KEY_ID",
            stack_var("AC_OBJECT_STORE__ACCESS_KEY_ID"),
        )
        .env(
            "AC_OBJECT_STORE__SECRET_ACCESS_KEY",
            stack_var("AC_OBJECT_STORE__SECRET_ACCESS_KEY"),
        )
        .env("AC_SMS__PROVIDER", "http_json")
        .env("AC_SMS__GATEWAY_URL", stack_var("AC_SMS__GATEWAY_URL"))
        .env("AC_SMS__API_TOKEN", stack_var("AC_SMS__API_TOKEN"))
        .env("AC_WEB__DSFR_DIR", stack_var("AC_WEB__DSFR_DIR"))
        .env("AC_TELEMETRY__LOG_FILTER", "info,sqlx=warn")
        .env_remove("AC_TELEMETRY__OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        // A short drain on SIGTERM (readiness unavailable before the listeners stop).
        .env("AC_HTTP__DRAIN_MS", "300")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{exe} ne démarre pas : {e}"));
    let stdout = child.stdout.take().expect("sortie standard");
    let mut lines = BufReader::new(stdout).lines();
    let mut startup_log = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let ports = line
                .contains(" ready")
                .then(|| field(&line, "port").zip(field(&line, "internal_port")))
                .flatten();
            startup_log.push(line);
            if ports.is_some() {
                return ports;
            }
        }
        None
    })
    .await;
    let Ok(Some((port, internal_port))) = ready else {
        let status = child.try_wait().ok().flatten();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ =
                tokio::time::timeout(Duration::from_secs(2), err.read_to_string(&mut stderr)).await;
        }
        panic!(
            "{exe} n'a pas annoncé être prêt (état : {status:?})\n{}\n{stderr}",
            startup_log.join("\n")
        );
    };
    // Keep reading its output so that a full pipe never blocks it; with `AC_SERVICE_LOG` set
    // (a file path), a benchmark's service log is kept there, to explain a failed request.
    let kept = std::env::var_os("AC_SERVICE_LOG").and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    if let Some(stderr) = child.stderr.take() {
        drain(
            BufReader::new(stderr).lines(),
            kept.as_ref().and_then(|f| f.try_clone().ok()),
        );
    }
    drain(lines, kept);
    RunningService {
        child,
        port,
        internal_port,
        startup_log,
    }
}

/// Reads `lines` to their end, appending each to `kept` when given.
fn drain<R>(mut lines: tokio::io::Lines<BufReader<R>>, mut kept: Option<std::fs::File>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(file) = kept.as_mut() {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
            }
        }
    });
}

impl RunningService {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.internal_port)
    }

    /// Resident memory now, in KiB (`VmRSS`), what a Kubernetes memory request is sized from.
    pub fn resident_kib(&self) -> u64 {
        resident_kib_of(self.pid()).expect("VmRSS")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("processus en cours")
    }

    /// Sends SIGTERM (the process goes on until it has drained and stopped).
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("processus en cours");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "SIGTERM non envoyé");
    }

    /// Waits at most 30 s for the process to exit; its exit status.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("arrêt en moins de 30 s")
            .expect("état de sortie")
    }

    /// Sends SIGTERM and waits at most 30 s for the process to exit; its exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.sigterm();
        self.exited().await
    }
}

/// The smoke test of a service binary: it starts on ports 0 against a fresh database with one
/// territory, `/health` and `/health/ready` answer 200 with every check named in `checks`
/// passing (the database always), and SIGTERM stops it cleanly within 30 s. Returns its
/// resident memory once ready, in KiB, which the test prints (Kubernetes requests are sized
/// from it).
pub async fn smoke(exe: &str, checks: &[&str]) -> u64 {
    let db = TestDatabase::with_departements(&["33"]).await;
    let service = start(exe, &db).await;
    let client = reqwest::Client::new();
    let live = client
        .get(service.url("/health"))
        .send()
        .await
        .expect("/health");
    assert_eq!(live.status(), 200, "{exe} : /health");
    let ready = client
        .get(service.url("/health/ready"))
        .send()
        .await
        .expect("/health/ready");
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.expect("JSON de /health/ready");
    assert_eq!(status, 200, "{exe} : /health/ready {body}");
    assert_eq!(body["status"], "ready", "{exe} : {body}");
    let passed: Vec<&str> = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == true)
        .filter_map(|c| c["name"].as_str())
        .collect();
    for check in std::iter::once(&"database").chain(checks) {
        assert!(
            passed.contains(check),
            "{exe} : contrôle « {check} » absent ou en échec : {body}"
        );
    }
    // The internal listener is its own: it answers, and serves no public page.
    let internal = client
        .get(service.internal_url("/connexion"))
        .send()
        .await
        .expect("écoute interne");
    assert_eq!(
        internal.status(),
        404,
        "{exe} : page publique sur l'écoute interne"
    );
    let resident = service.resident_kib();
    let exit = service.terminate().await;
    assert!(exit.success(), "{exe} : arrêt sur SIGTERM {exit:?}");
    println!("{exe}: ready, resident memory {} MiB", resident / 1024);
    resident
}

/// A process's resident memory in KiB (`VmRSS`), if it is still running.
pub fn resident_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_plain_and_coloured_lines() {
        let plain =
            "2026-11-30T13:00:00Z  INFO mandate-service ready port=41233 internal_port=41234";
        assert_eq!(field(plain, "port"), Some(41233));
        assert_eq!(field(plain, "internal_port"), Some(41234));
        let coloured =
            "\u{1b}[32m INFO\u{1b}[0m ready \u{1b}[3mport\u{1b}[0m\u{1b}[2m=\u{1b}[0m8080";
        assert_eq!(field(coloured, "port"), Some(8080));
        assert_eq!(field(plain, "missing"), None);
    }
}
