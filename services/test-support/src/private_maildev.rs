//! A MailDev of a test's own (the stack's is shared by every test), which the test may stop and
//! restart on the same ports to simulate an SMTP outage.

use std::time::Duration;

use serde_json::Value;

use crate::private_process::{PrivateProcess, Ready};
use crate::{free_port, stack_var};

pub struct PrivateMailDev {
    pub smtp_port: u16,
    pub web_port: u16,
    process: PrivateProcess,
}

impl PrivateMailDev {
    pub async fn start() -> Self {
        let mut m = Self {
            smtp_port: free_port(),
            web_port: free_port(),
            process: PrivateProcess::new("maildev"),
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
        let mut command = tokio::process::Command::new("node");
        command
            .arg(script)
            .args([
                "--smtp",
                &self.smtp_port.to_string(),
                "--web",
                &self.web_port.to_string(),
            ])
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--silent"])
            .arg("--mail-directory")
            .arg(&self.process.dir);
        let ready = Ready::Success(format!("{}/api/healthz", self.api()));
        // Node starting MailDev took over 10 s once in a fresh-clone CI, while the other test
        // processes kept both cores busy: 30 s, as long as it takes, no assertion changed.
        self.process
            .start(command, ready, Duration::from_secs(30))
            .await;
    }

    /// Stops it: SMTP connections are refused until `restart`.
    pub async fn stop(&mut self) {
        self.process.stop().await;
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
