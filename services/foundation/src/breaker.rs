//! The database breaker. When a request answers 503 (a query failed, no connection came), one
//! probe — a fresh connection, 500 ms at most — tells whether PostgreSQL is down. While it is,
//! requests answer 503 at once instead of each waiting the pool's acquire timeout, and the
//! probe tries again every 250 ms, closing the breaker as soon as PostgreSQL accepts a
//! connection. A pool that is only exhausted keeps the breaker closed: the probe connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct DatabaseBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    open: AtomicBool,
    probing: AtomicBool,
    options: PgConnectOptions,
}

impl DatabaseBreaker {
    pub fn new(options: PgConnectOptions) -> Self {
        DatabaseBreaker {
            inner: Arc::new(Inner {
                open: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                options,
            }),
        }
    }

    /// PostgreSQL was found unreachable and has not answered since.
    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// A request failed for want of the database: probe it, unless a probe is running.
    pub fn suspect(&self) {
        if self.inner.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let reached =
                    tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&inner.options))
                        .await;
                if let Ok(Ok(conn)) = reached {
                    let _ = conn.close().await;
                    if inner.open.swap(false, Ordering::SeqCst) {
                        tracing::info!("database reachable again");
                    }
                    break;
                }
                if !inner.open.swap(true, Ordering::SeqCst) {
                    tracing::warn!("database unreachable: answering 503 at once until it is back");
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            inner.probing.store(false, Ordering::SeqCst);
        });
    }
}

/// Paths that never need the database: health (readiness checks it itself) and static assets.
fn exempt(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/health/")
        || path.starts_with("/dsfr/")
        || path == "/complements.css"
}

/// Answers 503 at once while the breaker is open; a 503 answered otherwise makes it probe.
pub fn with_breaker<E: Endpoint + 'static>(
    breaker: DatabaseBreaker,
    ep: E,
) -> poem::endpoint::BoxEndpoint<'static, Response> {
    // Boxed: the layers' nested types would otherwise overflow the compiler's depth limit.
    ep.map_to_response()
        .boxed()
        .around(move |ep, req: Request| {
            let breaker = breaker.clone();
            async move {
                let exempt = exempt(req.uri().path());
                if !exempt && breaker.is_open() {
                    return Err(poem::Error::from_status(
                        poem::http::StatusCode::SERVICE_UNAVAILABLE,
                    ));
                }
                let result = ep.call(req).await.map(IntoResponse::into_response);
                let unavailable = match &result {
                    Ok(resp) => resp.status() == poem::http::StatusCode::SERVICE_UNAVAILABLE,
                    Err(err) => err.status() == poem::http::StatusCode::SERVICE_UNAVAILABLE,
                };
                if unavailable && !exempt {
                    breaker.suspect();
                }
                result
            }
        })
        .boxed()
}
