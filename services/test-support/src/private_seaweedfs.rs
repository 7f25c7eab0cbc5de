//! A SeaweedFS of a test's own (the stack's is shared by every test), which the test may stop
//! and restart on the same ports and data folder to simulate an object-store outage.

use std::time::Duration;

use crate::free_port;
use crate::private_process::{PrivateProcess, Ready};

pub struct PrivateSeaweedFs {
    pub s3_port: u16,
    pub access_key: String,
    pub secret_key: String,
    ports: Vec<u16>,
    process: PrivateProcess,
}

impl PrivateSeaweedFs {
    pub async fn start() -> Self {
        let process = PrivateProcess::new("seaweedfs");
        std::fs::create_dir_all(process.dir.join("data")).expect("dossier");
        let mut s = Self {
            s3_port: free_port(),
            access_key: uuid::Uuid::new_v4().simple().to_string(),
            secret_key: uuid::Uuid::new_v4().simple().to_string(),
            ports: (0..10).map(|_| free_port()).collect(),
            process,
        };
        let config = serde_json::json!({"identities": [{
            "name": "aidants",
            "credentials": [{"accessKey": s.access_key, "secretKey": s.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(s.process.dir.join("s3.json"), config.to_string())
            .expect("configuration S3");
        s.restart().await;
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Starts (again) on the same ports and data folder, and waits until S3 answers.
    pub async fn restart(&mut self) {
        let p = &self.ports;
        let mut command = tokio::process::Command::new("weed");
        command
            .arg("mini")
            .arg(format!("-dir={}", self.process.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", self.s3_port))
            .arg(format!("-s3.port.grpc={}", p[6]))
            .arg(format!("-admin.port={}", p[7]))
            .arg(format!("-admin.port.grpc={}", p[8]))
            .arg("-admin.ui=false")
            .arg(format!("-webdav.port={}", p[9]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!(
                "-s3.config={}",
                self.process.dir.join("s3.json").display()
            ))
            .arg("-bucket=aidants-connect");
        self.process
            .start(
                command,
                Ready::Answers(self.endpoint()),
                Duration::from_secs(90),
            )
            .await;
    }

    /// Stops it: every S3 request fails until `restart`.
    pub async fn stop(&mut self) {
        self.process.stop().await;
    }
}
