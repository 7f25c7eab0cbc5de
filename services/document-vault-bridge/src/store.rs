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

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk(&e))
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(&e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|_| StoreError::Unavailable)?;
        Ok(bytes.into_bytes().to_vec())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk(&e))
    }

    /// Whether an object exists (used by tests and the purge).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(StoreError::from_sdk(&e)),
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
                // The cause (addresses, the store's words) goes to the logs, never to
                // `/health/ready`, which anyone reaching the platform can read.
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(e), "object store unreachable");
                "stockage de documents injoignable".to_owned()
            })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store did not answer in time, or refused for a reason on its side: retry later.
    #[error("stockage de documents indisponible")]
    Unavailable,
    #[error("document absent du stockage")]
    NotFound,
}

impl StoreError {
    fn from_sdk<E: std::fmt::Debug, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Self {
        use aws_sdk_s3::error::SdkError;
        match e {
            SdkError::ServiceError(s) if format!("{:?}", s.err()).contains("NoSuchKey") => {
                StoreError::NotFound
            }
            _ => {
                tracing::warn!("object store call failed");
                StoreError::Unavailable
            }
        }
    }
}

/// Readiness: the object store answers. Not essential: while it does not, document
/// operations answer their own 503 and everything else is served.
pub struct StoreCheck(pub Store);

impl ReadinessCheck for StoreCheck {
    fn name(&self) -> &'static str {
        "object_store"
    }
    fn essential(&self) -> bool {
        false
    }
    fn check<'a>(&'a self, _platform: &'a Platform) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.ping())
    }
}
