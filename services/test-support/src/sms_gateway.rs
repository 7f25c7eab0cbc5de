//! The local SMS gateway (`infra/sms-gateway/server.mjs`): reading what the stack's shared
//! gateway received, and a gateway of a test's own that the test may stop, restart on the same
//! port (with the messages and idempotency keys it kept), or tell to lose its next answers.

use std::time::Duration;

use serde_json::Value;

use crate::private_process::{PrivateProcess, Ready};
use crate::{free_port, stack_var};

/// The SMS the gateway at `base` received for `number` (E.164).
pub async fn received_by(base: &str, number: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/messages"))
        .query(&[("to", number)])
        .send()
        .await;
    match response {
        Ok(r) => r.json::<Vec<Value>>().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The shared gateway's address.
pub fn shared() -> String {
    format!("http://127.0.0.1:{}", stack_var("AC_SMS_GATEWAY_PORT"))
}

/// Waits until the shared gateway holds at least `count` SMS for `number`.
pub async fn wait_for_sms_to(number: &str, count: usize, limit: Duration) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let got = received_by(&shared(), number).await;
        if got.len() >= count || started.elapsed() > limit {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct PrivateSmsGateway {
    pub port: u16,
    pub token: String,
    process: PrivateProcess,
}

impl PrivateSmsGateway {
    pub async fn start() -> Self {
        let mut g = Self {
            port: free_port(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            process: PrivateProcess::new("sms"),
        };
        g.restart().await;
        g
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL the platform posts to.
    pub fn endpoint(&self) -> String {
        format!("{}/v1/messages", self.base())
    }

    /// Starts (again) on the same port and data file, and waits until it answers.
    pub async fn restart(&mut self) {
        let script = format!(
            "{}/../sms-gateway/server.mjs",
            stack_var("AC_BROWSER_HARNESS")
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(script)
            .env("SMS_PORT", self.port.to_string())
            .env("SMS_TOKEN", &self.token)
            .env("SMS_DATA", self.process.dir.join("messages.jsonl"));
        self.process
            .start(
                command,
                Ready::Success(self.endpoint()),
                Duration::from_secs(10),
            )
            .await;
    }

    /// Stops it: connections are refused until `restart`.
    pub async fn stop(&mut self) {
        self.process.stop().await;
    }

    /// The next `n` messages are accepted (and kept) but the connection is cut instead of the
    /// answer: the sender cannot know they were accepted.
    pub async fn lose_next_answers(&self, n: u32) {
        let status = reqwest::Client::new()
            .post(format!("{}/control", self.base()))
            .json(&serde_json::json!({ "drop_responses": n }))
            .send()
            .await
            .expect("contrôle")
            .status();
        assert!(status.is_success());
    }

    /// Every SMS held.
    pub async fn messages(&self) -> Vec<Value> {
        match reqwest::Client::new().get(self.endpoint()).send().await {
            Ok(r) => r.json::<Vec<Value>>().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}
