//! A MailDev of a test's own (the stack's is shared by every test), which the test may stop and
//! restart on the same ports to simulate an SMTP outage.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, stack_var};

pub struct PrivateMailDev {
    pub smtp_port: u16,
    pub web_port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateMailDev {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("maildev-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dossier");
        let mut m = Self {
            smtp_port: free_port(),
            web_port: free_port(),
            dir,
            child: None,
        };
        m.restart().await;
        m
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    /// Starts (again) on the same ports and mail directory, and waits until it answers.
    pub async fn restart(&mut self) {
        let script = format!(
            "{}/../node_modules/maildev/dist/bin/maildev.js",
            stack_var("AC_BROWSER_HARNESS")
        );
        let child = tokio::process::Command::new("node")
            .arg(script)
            .args([
                "--smtp",
                &self.smtp_port.to_string(),
                "--web",
                &self.web_port.to_string(),
            ])
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--silent"])
            .arg("--mail-directory")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("maildev");
        self.child = Some(child);
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/api/healthz", self.api()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("MailDev privé pas prêt");
    }

    /// Stops it: SMTP connections are refused until `restart`.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }

    /// Every message held, after reloading those written to the directory by earlier runs.
    pub async fn messages(&self) -> Vec<Value> {
        let client = reqwest::Client::new();
        let _ = client
            .get(format!("{}/api/reloadMailsFromDirectory", self.api()))
            .send()
            .await;
        match client.get(format!("{}/api/email", self.api())).send().await {
            Ok(resp) => match resp.json::<Value>().await {
                Ok(Value::Array(all)) => all,
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for PrivateMailDev {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
