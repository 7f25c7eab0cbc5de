//! A SeaweedFS of a test's own (the stack's is shared by every test), which the test may stop
//! and restart on the same ports and data folder to simulate an object-store outage.

use std::process::Stdio;
use std::time::Duration;

use crate::free_port;

pub struct PrivateSeaweedFs {
    pub s3_port: u16,
    pub access_key: String,
    pub secret_key: String,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateSeaweedFs {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("seaweedfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).expect("dossier");
        let mut s = Self {
            s3_port: free_port(),
            access_key: uuid::Uuid::new_v4().simple().to_string(),
            secret_key: uuid::Uuid::new_v4().simple().to_string(),
            ports: (0..10).map(|_| free_port()).collect(),
            dir,
            child: None,
        };
        let config = serde_json::json!({"identities": [{
            "name": "aidants",
            "credentials": [{"accessKey": s.access_key, "secretKey": s.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(s.dir.join("s3.json"), config.to_string()).expect("configuration S3");
        s.restart().await;
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Starts (again) on the same ports and data folder, and waits until S3 answers.
    pub async fn restart(&mut self) {
        let p = &self.ports;
        let child = tokio::process::Command::new("weed")
            .arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
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
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .arg("-bucket=aidants-connect")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("weed introuvable");
        self.child = Some(child);
        let client = reqwest::Client::new();
        for _ in 0..900 {
            if client
                .get(self.endpoint())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("SeaweedFS privé pas prêt");
    }

    /// Stops it: every S3 request fails until `restart`.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

impl Drop for PrivateSeaweedFs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
