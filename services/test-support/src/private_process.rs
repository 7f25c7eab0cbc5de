//! What the components a test runs for itself (MailDev, the SMS gateway, SeaweedFS) share: a
//! scratch folder that outlives restarts and is removed at the end, a child process killed with
//! the test, started (again) and awaited until it answers, stopped on demand.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// When a started component counts as ready.
pub enum Ready {
    /// This URL answers with a success status.
    Success(String),
    /// This URL answers at all (any status).
    Answers(String),
    /// This port of 127.0.0.1 accepts TCP connections.
    Listening(u16),
}

pub struct PrivateProcess {
    /// The component's scratch folder: data kept across `stop` and `start`.
    pub dir: PathBuf,
    what: &'static str,
    child: Option<tokio::process::Child>,
}

impl PrivateProcess {
    /// A fresh scratch folder for `what` (a name for messages); nothing runs yet.
    pub fn new(what: &'static str) -> Self {
        let dir = std::env::temp_dir().join(format!("{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dossier du composant");
        Self {
            dir,
            what,
            child: None,
        }
    }

    /// Runs `command` (output discarded, killed with the test) and waits until `ready`, for at
    /// most `limit`; panics if it never answers.
    pub async fn start(
        &mut self,
        mut command: tokio::process::Command,
        ready: Ready,
        limit: Duration,
    ) {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} ne démarre pas : {e}", self.what));
        self.child = Some(child);
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < limit {
            let ready = match &ready {
                Ready::Listening(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_ok(),
                Ready::Success(url) | Ready::Answers(url) => {
                    let any = matches!(ready, Ready::Answers(_));
                    let answer = client.get(url).timeout(Duration::from_secs(2)).send().await;
                    answer.is_ok_and(|r| any || r.status().is_success())
                }
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} privé pas prêt après {limit:?}", self.what);
    }

    /// Stops the process (its folder stays): connections are refused until `start`.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

impl Drop for PrivateProcess {
    fn drop(&mut self) {
        // The process first, so that it writes nothing more into the folder being removed.
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
