//! Shared foundation of every Aidants Connect service.

/// The JSON error shape of every API.
pub mod api;
/// Building and running a service: shared state, service parts, graceful shutdown.
pub mod app;
/// Professional identity: sessions, CSRF, TOTP, security journal, guard assignments.
pub mod auth;
/// The database breaker: 503 at once while PostgreSQL is unreachable.
pub mod breaker;
/// The fixed list of démarche categories (product.md §6).
pub mod categories;
/// Typed configuration: defaults, file, environment; secrets that never print.
pub mod config;
/// Liveness and readiness endpoints.
pub mod health;
/// Typed ids (structure, usager, mandate, professional, tenant).
pub mod ids;
/// Scheduled jobs, run once per period across replicas.
pub mod jobs;
/// The territory journal: hash-chained, append-only, sealed by signed checkpoints.
pub mod journal;
/// The transactional outbox producers write to.
pub mod outbox;
/// Paris civil time: dates people read, local hours jobs wait for.
pub mod paris;
/// Printable documents (PDF).
pub mod pdf;
/// Route declarations: method, path and guard of every route, read by the route table.
pub mod routes;
/// The listeners' connection loop, with a limit on reading a request's head.
pub mod serve;
/// Logs, traces, the per-request span.
pub mod telemetry;
/// Per-département schemas, roles, migrations, tenants and reference territories.
pub mod tenancy;
/// The DSFR web shell: layout, theme, error pages, public pages.
pub mod web;

/// The memory allocator of every process built on this crate (the services, the tools, the
/// benchmarks that host the platform, the tests): mimalloc instead of the C library's. Under
/// the identity provider's flows, the C library's allocator took about a sixth of the
/// platform's CPU time (`perf`, load-tests/README.md). Built without transparent huge pages
/// (`no_thp`): with them the platform was a little faster still, but held 54–56 MiB at rest
/// instead of 36–38, close to the 64 MiB target.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
