//! Liveness (`/health`: the process answers) and readiness (`/health/ready`: the database answers,
//! and each service's other dependencies are reported; territories whose schema is not served
//! are listed).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService};

use crate::app::Platform;

/// A dependency the service needs to do its work. `check` fails with a fixed French sentence
/// (served publicly by `/health/ready`): never an error's own text; log the cause instead.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check<'a>(&'a self, platform: &'a Platform) -> BoxFuture<'a, Result<(), String>>;
    /// Whether the service cannot serve at all without it: then readiness answers 503 and the
    /// load balancer stops sending traffic. A dependency whose outage the service absorbs (the
    /// SMTP relay: e-mails wait in the outbox; the object store: documents answer their own
    /// 503, everything else works) is reported without taking the service out: every replica
    /// shares it, so taking them out would turn a partial outage into a total one.
    fn essential(&self) -> bool {
        true
    }
}

/// The database answers a trivial query.
pub struct DatabaseCheck;

impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    fn check<'a>(&'a self, platform: &'a Platform) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(platform.platform_pool())
                .await
                .map(|_| ())
                .map_err(|_| "base de données injoignable".to_owned())
        })
    }
}

#[derive(Object)]
struct Health {
    /// Always `ok` when the process answers.
    status: String,
}

#[derive(Object)]
struct CheckOut {
    name: String,
    ok: bool,
    /// Whether its failure makes readiness 503 (`ReadinessCheck::essential`).
    essential: bool,
    /// Why the check failed, in French: a fixed sentence per dependency, never the cause
    /// (that goes to the logs). Absent when the check passed.
    #[oai(skip_serializing_if_is_none)]
    detail: Option<String>,
}

#[derive(Object)]
struct Readiness {
    /// `ready`; `degraded` (a dependency that is not essential fails: still served); or
    /// `unavailable` (an essential one fails; also `draining` while stopping).
    status: String,
    checks: Vec<CheckOut>,
    /// Départements whose schema failed to migrate or is behind: not served.
    unserved_departements: Vec<String>,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Every essential dependency answers (the others are reported).
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// An essential dependency does not answer, or the process is stopping.
    #[oai(status = 503)]
    Unavailable(Json<Readiness>),
}

struct HealthApi {
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

#[OpenApi]
impl HealthApi {
    /// Liveness: the process answers.
    #[oai(path = "/", method = "get")]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Readiness: the database answers (503 otherwise); the service's other dependencies are
    /// reported. The checks run at once, each within 2 s.
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, platform: poem::web::Data<&Platform>) -> ReadyResponse {
        if platform.draining.load(std::sync::atomic::Ordering::SeqCst) {
            // Stopping (SIGTERM): no new traffic, whatever the dependencies say.
            return ReadyResponse::Unavailable(Json(Readiness {
                status: "draining".into(),
                checks: Vec::new(),
                unserved_departements: Vec::new(),
            }));
        }
        let checks = futures::future::join_all(self.checks.iter().map(|check| async {
            let outcome = tokio::time::timeout(Duration::from_secs(2), check.check(&platform))
                .await
                .unwrap_or_else(|_| Err("pas de réponse dans le délai".into()));
            CheckOut {
                name: check.name().into(),
                ok: outcome.is_ok(),
                essential: check.essential(),
                detail: outcome.err(),
            }
        }))
        .await;
        let unserved = platform
            .tenancy
            .unserved()
            .iter()
            .map(|d| d.to_string())
            .collect();
        let ok = checks.iter().all(|c| c.ok || !c.essential);
        let status = if !ok {
            "unavailable"
        } else if checks.iter().all(|c| c.ok) {
            "ready"
        } else {
            "degraded"
        };
        let body = Readiness {
            status: status.into(),
            checks,
            unserved_departements: unserved,
        };
        if ok {
            ReadyResponse::Ready(Json(body))
        } else {
            ReadyResponse::Unavailable(Json(body))
        }
    }
}

/// Mounted under `/health`: `/health`, `/health/ready` and the OpenAPI document at
/// `/health/openapi.json`.
pub fn routes(checks: Vec<Arc<dyn ReadinessCheck>>) -> crate::routes::Mount {
    let api = OpenApiService::new(
        HealthApi { checks },
        "Aidants Connect — santé",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/health");
    crate::routes::Mount::openapi("/health", crate::routes::Access::Public, api)
}
