//! Building and running a service: the shared `Platform` state, the parts each service
//! contributes (routes, readiness checks, workers), and `Application`, which binds the port,
//! mounts the shell and the parts, runs the workers and stops gracefully.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use poem::EndpointExt;
use poem::http::Method;
use poem::listener::{Acceptor, Listener as _, TcpListener};
use poem::middleware::{CatchPanic, CookieJarManager};
use poem::{Endpoint, IntoResponse, Request, Response, Route, RouteMethod};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::auth::assignments::SqlAssignments;
use crate::auth::secrets::SeedCipher;
use crate::config::Settings;
use crate::health::{self, ReadinessCheck};
pub use crate::routes::{Access, Csrf, Listener, Mount, Page, RouteInfo};
use crate::tenancy::Tenancy;
use crate::web;

/// What every service shares: settings, the application's pool and the tenancy registry.
#[derive(Clone)]
pub struct Platform {
    pub settings: Arc<Settings>,
    pub tenancy: Tenancy,
    /// The one authorization guard (Casbin), shared by every service.
    pub guard: policies::Guard,
    /// Encrypts and decrypts TOTP seeds.
    pub cipher: SeedCipher,
    /// Set on SIGTERM: readiness answers 503 « draining » until the process stops.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Open while PostgreSQL is unreachable: requests answer 503 at once.
    pub breaker: crate::breaker::DatabaseBreaker,
}

impl Platform {
    /// Connects lazily-bounded: a request waits at most `acquire_timeout_ms` for a connection,
    /// then fails fast with 503 rather than queueing forever.
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let pool = crate::tenancy::request_pool_options()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
            .connect(settings.database.url.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("base de données injoignable : {e}"))?;
        let tenancy = Tenancy::load(
            pool.clone(),
            crate::tenancy::TenantLogin::from_settings(&settings.database),
        )
        .await?;
        let breaker = crate::breaker::DatabaseBreaker::new((*pool.connect_options()).clone());
        let guard = policies::Guard::new(Arc::new(SqlAssignments(pool))).await?;
        let cipher = SeedCipher::new(
            &settings.security.totp_key,
            settings.security.totp_key_version,
        )?
        .with_previous(&settings.security.totp_previous_keys)?;
        Ok(Self {
            settings: Arc::new(settings),
            tenancy,
            guard,
            cipher,
            draining: Arc::default(),
            breaker,
        })
    }

    /// A LISTEN connection of its own, so that listeners never take a pooled connection away
    /// from requests.
    pub async fn listen(&self, channel: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let mut listener =
            sqlx::postgres::PgListener::connect(self.settings.database.url.expose_secret()).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// The national pool, for platform-schema queries only (never tenant tables).
    pub fn platform_pool(&self) -> &PgPool {
        self.tenancy.platform_pool()
    }
}

/// Tells background workers to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is requested.
    pub async fn requested(&mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// A background task (outbox consumer, scheduled job) that ends when asked.
pub type Worker = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// What one service adds to an application.
pub struct ServiceParts {
    pub name: &'static str,
    /// Pages and forms, each at its exact path (e.g. `/connexion/lien`), with the guard of
    /// each method.
    pub pages: Vec<Page>,
    /// Endpoints nested under their prefix (the prefix is stripped), e.g. `/api/habilitation`.
    pub routes: Vec<Mount>,
    /// Endpoints for other services (`/internal/...`), nested like `routes` but served only by
    /// the internal listener (`http.internal_port`), which the ingress never reaches.
    pub internal: Vec<Mount>,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub workers: Vec<Worker>,
    /// Path prefixes called by other machines (not browsers), exempt from CSRF checks.
    pub csrf_exempt: Vec<&'static str>,
    /// Scheduled jobs of the service.
    pub jobs: Vec<crate::jobs::Job>,
}

/// A running HTTP server (public and internal listeners) with its workers.
pub struct Application {
    port: u16,
    internal_port: u16,
    routes: Vec<RouteInfo>,
    jobs: Vec<&'static str>,
    run: BoxFuture<'static, anyhow::Result<()>>,
}

impl Application {
    /// Binds the configured address (port 0: a free port), mounts the shell, the health
    /// endpoints and every service's routes, and prepares the workers.
    pub async fn start(platform: Platform, services: Vec<ServiceParts>) -> anyhow::Result<Self> {
        let settings = platform.settings.clone();
        let mut route = Route::new();
        let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(health::DatabaseCheck)];
        let reloader = platform.clone();
        let mut workers: Vec<Worker> = vec![Box::new(move |shutdown| {
            Box::pin(crate::auth::guard::reload_on_change(reloader, shutdown))
        })];
        let mut csrf_exempt: Vec<&'static str> = Vec::new();
        let mut jobs = vec![crate::jobs::purge_expired_flow_data()];
        let mut mounted: Vec<(&'static str, Vec<Page>, Vec<Mount>)> = vec![(
            "foundation",
            web::pages::pages(settings.environment),
            vec![Mount::new(
                "/dsfr",
                vec![(Method::GET, "/*path", Access::Public)],
                web::dsfr_assets(&settings.web.dsfr_dir),
            )],
        )];
        let mut internal_mounts: Vec<(&'static str, Mount)> = Vec::new();
        for parts in services {
            csrf_exempt.extend(parts.csrf_exempt);
            jobs.extend(parts.jobs);
            tracing::info!(service = parts.name, "service mounted");
            mounted.push((parts.name, parts.pages, parts.routes));
            internal_mounts.extend(parts.internal.into_iter().map(|m| (parts.name, m)));
            checks.extend(parts.readiness);
            workers.extend(parts.workers);
        }
        mounted[0].2.push(health::routes(checks));
        // 405 answers name the methods a path serves, from the served OpenAPI documents.
        let api_specs: Vec<String> = mounted
            .iter()
            .flat_map(|(_, _, mounts)| mounts.iter())
            .chain(internal_mounts.iter().map(|(_, m)| m))
            .filter_map(|m| m.document.clone())
            .collect();
        let allow = Arc::new(web::allow::AllowTable::from_specs(&api_specs));
        // The route table is read from the same declarations that build the router.
        let mut routes = Vec::new();
        let mut row = |service, method: Method, path: String, access, listener| {
            let csrf = if crate::auth::csrf::is_safe(&method) {
                Csrf::NotApplicable
            } else if listener == Listener::Internal
                || crate::auth::csrf::is_exempt(&path, &csrf_exempt)
            {
                Csrf::Exempt
            } else {
                Csrf::Protected
            };
            routes.push(RouteInfo {
                service,
                method,
                path,
                access,
                csrf,
                listener,
            });
        };
        for (service, pages, mounts) in mounted {
            for page in pages {
                let mut methods = RouteMethod::new();
                for (method, access, endpoint) in page.methods {
                    row(
                        service,
                        method.clone(),
                        page.path.to_owned(),
                        access,
                        Listener::Public,
                    );
                    methods = methods.method(method, endpoint);
                }
                route = route.at(page.path, methods);
            }
            for mount in mounts {
                for (method, path, access) in mount.operations {
                    let full = match path.as_str() {
                        "/" => mount.prefix.to_owned(),
                        _ => format!("{}{path}", mount.prefix),
                    };
                    row(service, method, full, access, Listener::Public);
                }
                route = route.nest(mount.prefix, mount.endpoint);
            }
        }
        // The internal listener's routes: machines only (no cookies, no CSRF).
        let mut internal = Route::new();
        for (service, mount) in internal_mounts {
            for (method, path, access) in mount.operations {
                let full = match path.as_str() {
                    "/" => mount.prefix.to_owned(),
                    _ => format!("{}{path}", mount.prefix),
                };
                row(service, method, full, access, Listener::Internal);
            }
            internal = internal.nest(mount.prefix, mount.endpoint);
        }
        let sealing = platform.clone();
        workers.push(Box::new(move |shutdown| {
            Box::pin(crate::journal::sealer(sealing, shutdown))
        }));
        let job_names = jobs.iter().map(|j| j.name).collect();
        let scheduled = platform.clone();
        workers.push(Box::new(move |shutdown| {
            Box::pin(crate::jobs::scheduler(scheduled, jobs, shutdown))
        }));
        let timeout = Duration::from_millis(settings.http.request_timeout_ms);
        let secure = settings.http.secure_cookies();
        let protected = crate::auth::csrf::protect(
            route.with(CatchPanic::new()).data(platform.clone()),
            settings.http.public_origin(),
            csrf_exempt,
            secure,
        );
        let form_targets: Vec<String> = web::origin_of(&settings.franceconnect.issuer)
            .into_iter()
            .collect();
        let app = crate::telemetry::with_request_span(web::with_security_headers(
            web::allow::with_allow(
                web::error_pages(crate::breaker::with_breaker(
                    platform.breaker.clone(),
                    with_timeout(timeout, protected.with(CookieJarManager::new())),
                )),
                allow.clone(),
            ),
            &form_targets,
            secure,
        ));
        // The internal listener: machines only, so no cookies, no CSRF, every error in the
        // one JSON shape (an HTML page would break the documented contract).
        let internal_app = crate::telemetry::with_request_span(web::with_security_headers(
            web::allow::with_allow(
                web::api_errors(crate::breaker::with_breaker(
                    platform.breaker.clone(),
                    with_timeout(
                        timeout,
                        without_unserved_methods(
                            internal.with(CatchPanic::new()).data(platform.clone()),
                        ),
                    ),
                )),
                allow,
            ),
            &[],
            false,
        ));

        let (acceptor, port) = bind(settings.http.host, settings.http.port).await?;
        let (internal_acceptor, internal_port) =
            bind(settings.http.host, settings.http.internal_port).await?;

        let head_read = Duration::from_millis(settings.http.head_read_timeout_ms);
        let (stop_tx, stop_rx) = watch::channel(false);
        let draining = platform.draining.clone();
        let drain_ms = settings.http.drain_ms;
        let run = Box::pin(async move {
            let handles: Vec<_> = workers
                .into_iter()
                .map(|w| tokio::spawn(w(Shutdown(stop_rx.clone()))))
                .collect();
            // One signal stops both listeners.
            let (signal_tx, signal_rx) = watch::channel(false);
            let signal = tokio::spawn(async move {
                shutdown_signal().await;
                // Readiness first, so that traffic goes elsewhere; then the listeners.
                draining.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(
                    drain_ms,
                    "draining: readiness unavailable, listeners stop next"
                );
                tokio::time::sleep(Duration::from_millis(drain_ms)).await;
                let _ = signal_tx.send(true);
            });
            let stopped = |mut rx: watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            // Drain (5 s) + in-flight requests (20 s) + workers (5 s): out within 30 s.
            let grace = Duration::from_secs(20);
            tokio::join!(
                crate::serve::serve(acceptor, app, head_read, stopped(signal_rx.clone()), grace),
                crate::serve::serve(
                    internal_acceptor,
                    internal_app,
                    head_read,
                    stopped(signal_rx),
                    grace
                ),
            );
            signal.abort();
            let _ = stop_tx.send(true);
            for handle in handles {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
            }
            Ok(())
        });
        Ok(Self {
            port,
            internal_port,
            routes,
            jobs: job_names,
            run,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal listener's port (`/internal/*`).
    pub fn internal_port(&self) -> u16 {
        self.internal_port
    }

    /// Every route served, with its guard and CSRF status (the route table).
    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
    }

    /// The scheduled jobs' names, in the order each tick runs them (the first tick is at
    /// start-up).
    pub fn jobs(&self) -> &[&'static str] {
        &self.jobs
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run.await
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}

/// Binds `host:port` (0: a free port) and returns the acceptor with its actual port.
async fn bind(
    host: std::net::IpAddr,
    port: u16,
) -> anyhow::Result<(poem::listener::TcpAcceptor, u16)> {
    let acceptor = TcpListener::bind((host, port)).into_acceptor().await?;
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|s| s.port()))
        .ok_or_else(|| anyhow::anyhow!("adresse d'écoute inconnue"))?;
    Ok((acceptor, port))
}

/// 405 for methods no route serves (TRACE, CONNECT…), as the public listener's CSRF layer does.
fn without_unserved_methods<E: Endpoint + 'static>(ep: E) -> impl Endpoint<Output = Response> {
    ep.around(|ep, req: Request| async move {
        if crate::auth::csrf::is_served(req.method()) {
            ep.call(req).await.map(IntoResponse::into_response)
        } else {
            Err(poem::Error::from_status(
                poem::http::StatusCode::METHOD_NOT_ALLOWED,
            ))
        }
    })
}

/// Every route answers within `limit` or fails with 503 (poem has no timeout middleware).
fn with_timeout<E: Endpoint + 'static>(limit: Duration, ep: E) -> impl Endpoint<Output = Response> {
    ep.around(move |ep, req: Request| async move {
        match tokio::time::timeout(limit, ep.call(req)).await {
            Ok(result) => result.map(IntoResponse::into_response),
            Err(_) => {
                tracing::warn!(limit_ms = limit.as_millis() as u64, "request timed out");
                Err(poem::Error::from_status(
                    poem::http::StatusCode::SERVICE_UNAVAILABLE,
                ))
            }
        }
    })
}
