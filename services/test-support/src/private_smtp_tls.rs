//! An SMTP receiver of a test's own that speaks TLS (`infra/smtp-tls/server.mjs`), with a
//! certificate authority and a server certificate for 127.0.0.1 made by `openssl` for it.

use std::time::Duration;

use serde_json::Value;

use crate::private_process::{PrivateProcess, Ready};
use crate::{free_port, stack_var};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain connection, upgraded by STARTTLS (required before MAIL).
    Starttls,
    /// TLS from the first byte.
    Tls,
}

pub struct PrivateSmtpTls {
    pub port: u16,
    mode: Mode,
    process: PrivateProcess,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl introuvable");
    assert!(status.success(), "openssl {args:?}");
}

impl PrivateSmtpTls {
    pub async fn start(mode: Mode) -> Self {
        let mut process = PrivateProcess::new("smtp-tls");
        let dir = process.dir.clone();
        // An authority, and a server certificate it signs for the address the mailer dials.
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Autorite de test Aidants Connect",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        let port = free_port();
        let script = format!("{}/../smtp-tls/server.mjs", stack_var("AC_BROWSER_HARNESS"));
        let mut command = tokio::process::Command::new("node");
        command
            .arg(script)
            .env("SMTP_PORT", port.to_string())
            .env(
                "SMTP_MODE",
                match mode {
                    Mode::Starttls => "starttls",
                    Mode::Tls => "tls",
                },
            )
            .env("SMTP_CERT", dir.join("server.pem"))
            .env("SMTP_KEY", dir.join("server.key"))
            .env("SMTP_DATA", dir.join("messages.jsonl"));
        process
            .start(command, Ready::Listening(port), Duration::from_secs(10))
            .await;
        Self {
            port,
            mode,
            process,
        }
    }

    /// The mailer's settings for this relay in its mode (its authority not yet trusted: set
    /// `ca_file` to [`PrivateSmtpTls::ca_file`]).
    pub fn smtp_settings(&self) -> foundation::config::SmtpSettings {
        let mut settings = foundation::config::Settings::default().smtp;
        settings.host = "127.0.0.1".into();
        settings.port = self.port;
        settings.security = match self.mode {
            Mode::Starttls => foundation::config::SmtpSecurity::Starttls,
            Mode::Tls => foundation::config::SmtpSecurity::Tls,
        };
        settings
    }

    /// The PEM of the authority that signed the server's certificate.
    pub fn ca_file(&self) -> String {
        self.process.dir.join("ca.pem").display().to_string()
    }

    /// Every message accepted: `{from, to, secure, raw}`.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(self.process.dir.join("messages.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
