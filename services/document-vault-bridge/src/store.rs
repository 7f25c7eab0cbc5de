use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, timeout::TimeoutConfig};
use foundation::app::Platform;
use foundation::config::ObjectStoreSettings;
use foundation::health::ReadinessCheck;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;

/// The object store: one client, one bucket, every call bounded by the configured timeout.
#[derive(Clone)]
pub struct Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Store {
    pub async fn new(settings: &ObjectStoreSettings) -> Self {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&settings.endpoint)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(Credentials::new(
                &settings.access_key_id,
                settings.secret_access_key.expose_secret(),
                None,
                None,
                "aidants-connect-settings",
            ))
            .force_path_style(true)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .connect_timeout(timeout)
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
        }
    }

    /// Whether the bucket answers to signed requests.
    pub async fn ping(&self) -> Result<(), String> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "stockage de documents injoignable ({})",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })
    }
}

/// Readiness: the object store answers.
pub struct StoreCheck(pub Store);

impl ReadinessCheck for StoreCheck {
    fn name(&self) -> &'static str {
        "object_store"
    }
    fn check<'a>(&'a self, _platform: &'a Platform) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.ping())
    }
}
