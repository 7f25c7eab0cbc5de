//! Per-département isolation. A tenant-scoped transaction (`TenantTx`) runs on a connection
//! logged in as the département's own role (one small pool per territory, opened lazily; see
//! `logins`), which has rights on its schema only and is a member of no other role: no SQL run
//! inside can switch to another territory or back to the platform. Only this module sets
//! `search_path`: when a territory's connection opens (its schema, for the single statements of
//! `Territory::autocommit`), and again in each transaction, with `SET LOCAL` semantics.

pub mod archive;
pub mod backup;
pub mod citus;
pub mod communes;
pub mod failing;
pub mod logins;
pub mod migrate;
mod rights;
pub mod tenants;
pub mod territories;
mod writes;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgTransactionManager};
use sqlx::{PgConnection, PgPool, Postgres, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

pub use logins::TenantLogin;
pub use territories::{CodeError, CommuneCode, DepartementCode};
pub use writes::{TenantStatement, TenantWrites};

/// Why a territory cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// Its schema exists but is not served now (behind, failed, being moved): retry later.
    #[error("le territoire {0} n'est pas disponible pour le moment")]
    NotServed(DepartementCode),
    /// No territory was ever opened for this département on this platform.
    #[error("aucun territoire n'est ouvert pour le département {0} sur cette plateforme")]
    NotProvisioned(DepartementCode),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SchemaState {
    role_name: String,
    served: bool,
}

/// The registry of département schemas as the services see it. Cheap to clone.
#[derive(Clone)]
pub struct Tenancy {
    pool: PgPool,
    login: TenantLogin,
    /// One pool per département role, opened at the territory's first use, with the time of
    /// its last use (`close_unused_territory_connections`).
    territory_pools: Arc<std::sync::Mutex<HashMap<String, TerritoryPool>>>,
    schemas: Arc<RwLock<HashMap<DepartementCode, SchemaState>>>,
    last_refresh: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Wakes the outbox consumer after a territory's transaction committed a message.
    outbox_wake: Arc<crate::outbox::OutboxWake>,
    /// The platform's connections for the statements every request makes (the session's
    /// look-up, the habilitation checks of the identity provider, the outbox's wake-ups): a
    /// pool of their own, the size of a territory's, that nothing else uses.
    requests: KeptConnections,
}

/// A lookup miss re-reads the registry at most this often, so requests for territories that
/// are not provisioned cannot turn into a query each.
const REFRESH_ON_MISS_EVERY: Duration = Duration::from_secs(1);

/// A territory's connections close after this long unused: a process keeps connections only
/// to the territories it is serving now. The outbox sweep (every 15 s) visits every territory,
/// so this stays below its period: between sweeps, idle territories hold no connection.
const TERRITORY_IDLE: Duration = Duration::from_secs(10);

/// A pooled connection idle at least this long is checked with a round trip (a `Sync`
/// message) before a request gets it; one used more recently is handed out as it is.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A pooled connection this old is closed when next taken, and a new one opened (sqlx's
/// default lifetime): a server process does not grow its caches for ever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The options of the pools that serve requests, the platform's and each territory's.
///
/// sqlx checks every connection it gives back to a pool (a round trip, not configurable) and,
/// by default, again before handing it out. Under load a connection is back in the pool for
/// microseconds between the two, so the second check doubled the round trips that carry no
/// statement. It is made here only for a connection idle [`CHECK_IDLE_AFTER`] or more: one
/// that died while idle (a restarted server, a proxy's timeout, `pg_terminate_backend`) is
/// replaced before a request sees it, as before (the test `faults::connections_that_died_…`).
/// A connection that dies within the second after its release fails the one request that
/// gets it, as one dying between the check and the statement always could.
///
/// The pools have no idle timeout and no maximum lifetime of sqlx's: either starts sqlx's
/// reaper, which takes every idle connection out and puts it back, restarting its idle time,
/// so that a connection idle for minutes looked just released and went unchecked (the test
/// above failed about one run in seven with a 10 s timeout). The lifetime is enforced here
/// instead, and territories' idle connections are closed by
/// [`Tenancy::close_unused_territory_connections`].
pub fn request_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.age >= CONNECTION_LIFETIME {
                    return Ok(false);
                }
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A territory's pool and when a request last reached for it.
struct TerritoryPool {
    conns: KeptConnections,
    used: Instant,
}

/// A connection kept out of sqlx's pool ([`KeptConnections`]) this long goes back to it
/// when next released, so that sqlx's pool sees it again: its lifetime
/// ([`CONNECTION_LIFETIME`]) is checked when sqlx next hands it out.
const KEPT_AT_MOST: Duration = Duration::from_secs(60);

/// A territory's connections, or those of the platform's request path
/// ([`Tenancy::request_connection`]). sqlx's pool opens them and closes them; a connection given
/// back in a clean state (a lone statement done, a transaction committed or rolled back) is kept
/// here and handed out again first, instead of going back to sqlx's pool, which checks every
/// connection given back with a round trip (a `Sync` message, not configurable): under load
/// that was one round trip carrying no statement per connection used, 8 per identity-provider
/// flow for the territories, 5 more for the platform's session and habilitation reads. Every
/// use of the underlying sqlx pool goes through here: a waiter inside sqlx's pool would not be
/// woken by a connection kept here. The check before handing a connection out is the pools'
/// ([`request_pool_options`]): a round trip only after [`CHECK_IDLE_AFTER`] idle.
///
/// The number of connections in use is bounded here (`permits`, as many as sqlx's pool may
/// open, waited for within its acquire timeout). A request keeps its connection here before it
/// gives up its permit, so whoever gets a permit finds a kept connection, an idle one of sqlx's,
/// or room in sqlx's pool for a new one: waiting happens for a permit only, never inside sqlx's
/// pool (where a connection kept here would not wake it). A connection goes back to sqlx's pool
/// instead when a transaction was dropped without its end (the `ROLLBACK` must reach the server
/// at once: sqlx's check sends it) and after [`KEPT_AT_MOST`] out of it.
#[derive(Clone)]
pub(crate) struct KeptConnections {
    pool: PgPool,
    kept: Arc<std::sync::Mutex<Vec<Kept>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// A connection out of sqlx's pool since `taken`, released at `idle_since`.
struct Kept {
    conn: PoolConnection<Postgres>,
    taken: Instant,
    idle_since: Instant,
}

/// A connection handed out by [`KeptConnections::acquire`], with its permit.
struct Held {
    conn: PoolConnection<Postgres>,
    taken: Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl KeptConnections {
    /// A pool of at most `max` connections opened with `options` as they are needed.
    fn lazy(max: u32, acquire_timeout: Duration, options: PgConnectOptions) -> Self {
        Self {
            pool: request_pool_options()
                .max_connections(max)
                .min_connections(0)
                .acquire_timeout(acquire_timeout)
                .connect_lazy_with(options),
            kept: Arc::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(max as usize)),
        }
    }

    /// A connection outside any transaction, as a platform connection (for a pool of the
    /// platform's role only).
    pub(crate) async fn platform_conn(&self) -> Result<PlatformConn, sqlx::Error> {
        Ok(PlatformConn(KeptConn {
            held: Some(self.acquire().await?),
            conns: self.clone(),
        }))
    }

    fn pop(&self) -> Option<Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// The most recently released kept connection (checked if idle long enough), else one of
    /// sqlx's pool. `PoolTimedOut` when every connection stays in use for the acquire timeout.
    async fn acquire(&self) -> Result<Held, sqlx::Error> {
        tokio::time::timeout(self.pool.options().get_acquire_timeout(), self.wait())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn wait(&self) -> Result<Held, sqlx::Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        while let Some(Kept {
            mut conn,
            taken,
            idle_since,
        }) = self.pop()
        {
            if idle_since.elapsed() >= CHECK_IDLE_AFTER
                && sqlx::Connection::ping(&mut *conn).await.is_err()
            {
                // Dead: sqlx's check on its return closes it.
                continue;
            }
            return Ok(Held {
                conn,
                taken,
                _permit: permit,
            });
        }
        // No connection kept: sqlx's pool has one idle (or being given back), or room for a new
        // one. A connection is kept only by a request that then gives its permit to the next:
        // whoever holds a permit finds one.
        Ok(Held {
            conn: self.pool.acquire().await?,
            taken: Instant::now(),
            _permit: permit,
        })
    }

    /// Takes back a connection in a clean state (nothing of a transaction left open on it).
    fn release(&self, held: Held) {
        if self.pool.is_closed() || held.taken.elapsed() >= KEPT_AT_MOST {
            // Back to sqlx's pool, which checks it.
            return;
        }
        let Held {
            conn,
            taken,
            _permit,
        } = held;
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Kept {
                conn,
                taken,
                idle_since: Instant::now(),
            });
    }

    /// Closes the kept connections and sqlx's idle ones; returns how many.
    async fn close_idle(&self) -> usize {
        let kept: Vec<Kept> =
            std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        let mut closed = 0;
        for k in kept {
            // A connection that fails to close cleanly is dropped all the same.
            let _ = k.conn.close().await;
            closed += 1;
        }
        while let Some(conn) = self.pool.try_acquire() {
            let _ = conn.close().await;
            closed += 1;
        }
        closed
    }

    fn has_idle(&self) -> bool {
        self.pool.num_idle() > 0
            || !self
                .kept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }
}

impl Tenancy {
    /// Loads the state of every département schema. `pool` is the platform's (or the
    /// administrator's); territories are reached with `login`.
    pub async fn load(pool: PgPool, login: TenantLogin) -> Result<Self, sqlx::Error> {
        let requests = KeptConnections::lazy(
            login.max_connections(),
            pool.options().get_acquire_timeout(),
            (*pool.connect_options()).clone(),
        );
        let tenancy = Self {
            outbox_wake: crate::outbox::OutboxWake::new(requests.clone()),
            requests,
            pool,
            login,
            territory_pools: Arc::default(),
            schemas: Arc::default(),
            last_refresh: Arc::default(),
        };
        tenancy.refresh().await?;
        // Closes unused territories' connections while the registry lives.
        let pools = Arc::downgrade(&tenancy.territory_pools);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TERRITORY_IDLE / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pools) = pools.upgrade() else { return };
                close_unused(&pools).await;
            }
        });
        Ok(tenancy)
    }

    /// Re-reads which schemas are ready at this build's migration version.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT departement_code, role_name, status, version FROM platform.departement_schemas",
        )
        .fetch_all(&self.pool)
        .await?;
        let latest = migrate::DEPARTEMENT_MIGRATIONS.latest_version();
        let map = rows
            .into_iter()
            .filter_map(|(code, role_name, status, version)| {
                let code = DepartementCode::parse(&code).ok()?;
                let served = status == "ready" && version >= latest;
                Some((code, SchemaState { role_name, served }))
            })
            .collect();
        *self.schemas.write().unwrap_or_else(|e| e.into_inner()) = map;
        *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(())
    }

    /// Départements whose schema exists but is not served (failed or behind), for readiness.
    pub fn unserved(&self) -> Vec<DepartementCode> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        let mut codes: Vec<_> = schemas
            .iter()
            .filter(|(_, s)| !s.served)
            .map(|(c, _)| *c)
            .collect();
        codes.sort_by_key(|c| c.as_str());
        codes
    }

    /// Départements whose schema is served, in code order.
    pub fn served(&self) -> Vec<DepartementCode> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        let mut codes: Vec<_> = schemas
            .iter()
            .filter(|(_, s)| s.served)
            .map(|(c, _)| *c)
            .collect();
        codes.sort_by_key(|c| c.as_str());
        codes
    }

    pub fn served_count(&self) -> usize {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        schemas.values().filter(|s| s.served).count()
    }

    /// The national pool, for platform-schema queries only.
    pub fn platform_pool(&self) -> &PgPool {
        &self.pool
    }

    /// A platform connection outside any transaction, for the lone statements every request
    /// makes (the session's look-up, the identity provider's habilitation checks): given back
    /// clean, it skips sqlx's return check ([`KeptConnections`]). Nothing that opens a
    /// transaction or changes a session setting may use it.
    pub async fn request_connection(&self) -> Result<PlatformConn, sqlx::Error> {
        self.requests.platform_conn().await
    }

    /// A territory reached without a guard's proof: for the scheduled jobs and workers, the
    /// operators' tools, the internal API (which has its own guard) and tests. A page reaches
    /// a territory through the guard instead (`auth::guard::Authorized::territory`, the
    /// mandate service's `Scope`); the tidy test counts the calls of this function by file,
    /// and a count may only go down.
    pub async fn unguarded(&self, departement: DepartementCode) -> Result<Territory, TenancyError> {
        self.territory(departement).await
    }

    /// The territory of `departement`, if its schema is served.
    pub(crate) async fn territory(
        &self,
        departement: DepartementCode,
    ) -> Result<Territory, TenancyError> {
        let role = self.served_role(departement);
        let role = match role {
            Some(role) => role,
            None => {
                // A schema provisioned after start-up: look once more before refusing.
                let recent = self
                    .last_refresh
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|t| t.elapsed() < REFRESH_ON_MISS_EVERY);
                if !recent {
                    self.refresh().await?;
                }
                self.served_role(departement)
                    .ok_or_else(|| self.not_served(departement))?
            }
        };
        crate::telemetry::record_tenant(departement.as_str());
        Ok(Territory {
            departement,
            conns: self.territory_pool(&role, departement),
            outbox_wake: Arc::clone(&self.outbox_wake),
        })
    }

    /// The pool logging in as `role`, created on first use (no connection until needed); its
    /// connections open with the territory's schema, then `pg_temp`, as their search path.
    fn territory_pool(&self, role: &str, departement: DepartementCode) -> KeptConnections {
        let mut pools = self
            .territory_pools
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pools.get_mut(role) {
            entry.used = Instant::now();
            return entry.conns.clone();
        }
        let options = (*self.pool.connect_options())
            .clone()
            .username(role)
            .password(&self.login.password(role))
            .options([(
                "search_path",
                format!("{},pg_temp", departement.schema_name()),
            )]);
        let conns = KeptConnections::lazy(
            self.login.max_connections(),
            self.pool.options().get_acquire_timeout(),
            options,
        );
        pools.insert(
            role.to_owned(),
            TerritoryPool {
                conns: conns.clone(),
                used: Instant::now(),
            },
        );
        conns
    }

    /// Closes the idle connections of the territories no request reached for in the last
    /// [`TERRITORY_IDLE`]; returns how many. A request still holding such a territory gets a
    /// new connection when it next asks. Run every half of that period by
    /// [`Tenancy::load`]'s task.
    pub async fn close_unused_territory_connections(&self) -> usize {
        close_unused(&self.territory_pools).await
    }

    /// Chains up to `batch` pending entries of a territory's journal through its sealing
    /// function (SECURITY DEFINER, see the migration `0009_journal_sealing`), from the platform
    /// pool: sweeping every territory needs no connection of each territory's own. Bounded: the
    /// server cancels it after 10 s (`statement_timeout`, on the worker too on Citus), so that a
    /// territory that cannot be sealed (a lock held, a hung node) holds back no other.
    pub async fn seal_journal(
        &self,
        departement: DepartementCode,
        batch: i32,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self
            .pool
            .begin_with(
                "BEGIN; SET LOCAL citus.propagate_set_commands = 'local'; \
                 SET LOCAL statement_timeout = '10s'",
            )
            .await?;
        // The schema name comes from the static list of départements (`[a-z0-9_]`).
        let sql = format!("SELECT {}.journal_seal($1)", departement.schema_name());
        let sealed: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(batch)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sealed.max(0) as u64)
    }

    /// Why `departement` has no served role: never provisioned, or not served now.
    fn not_served(&self, departement: DepartementCode) -> TenancyError {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        if schemas.contains_key(&departement) {
            TenancyError::NotServed(departement)
        } else {
            TenancyError::NotProvisioned(departement)
        }
    }

    fn served_role(&self, departement: DepartementCode) -> Option<String> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        schemas
            .get(&departement)
            .filter(|s| s.served)
            .map(|s| s.role_name.clone())
    }
}

/// One département's territory — its schema, reached as its own database role — and all a
/// handler needs to reach its data; it never exposes the pool. Not to be confused with a
/// tenant (a département council or a commune: `tenants`), several of which share a territory.
#[derive(Clone)]
pub struct Territory {
    departement: DepartementCode,
    /// Logged in as the département's role.
    conns: KeptConnections,
    outbox_wake: Arc<crate::outbox::OutboxWake>,
}

impl std::fmt::Debug for Territory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Territory")
            .field("departement", &self.departement)
            .finish()
    }
}

impl Territory {
    pub fn departement(&self) -> DepartementCode {
        self.departement
    }

    /// Opens a transaction confined to this territory: a connection of the département's own
    /// role (which has no right on any other schema and can switch to no other role), with its
    /// schema then `pg_temp` as the search path (`SET LOCAL`: whatever a previous transaction
    /// of this connection set is replaced).
    pub async fn begin(&self) -> Result<TenantTx, sqlx::Error> {
        self.begin_with("").await
    }

    /// Opens a transaction as [`Territory::begin`] whose commit will not wait for the WAL to
    /// reach the disk (`synchronous_commit = off`, on the worker too on Citus, set with the
    /// transaction's opening: no exchange of its own). Only for a write that matters once a
    /// later durable commit builds on it: PostgreSQL writes and flushes its WAL in order, so
    /// that later commit, once acknowledged, carries this one with it; a crash before it may
    /// lose this write (never corrupt anything), and what was lost was never acted on.
    pub async fn begin_unflushed(&self) -> Result<TenantTx, sqlx::Error> {
        // Citus passes a transaction's `SET LOCAL` on to the worker connections it opens
        // (`citus.propagate_set_commands`); a single cluster keeps the setting as a placeholder.
        self.begin_with(
            "; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL synchronous_commit = off",
        )
        .await
    }

    /// Opens a transaction as [`Territory::begin`] whose statements are planned for the values
    /// they are given each time (`plan_cache_mode = force_custom_plan`, on the worker too on
    /// Citus). For a page whose filters' selectivity depends on their values — a rare kind or a
    /// common one, a day or ten years — where the plan PostgreSQL caches after five executions,
    /// made for no value in particular, can walk a whole table for a rare one. Planning each
    /// time costs a fraction of a millisecond.
    pub async fn begin_custom_plans(&self) -> Result<TenantTx, sqlx::Error> {
        self.begin_with(
            "; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .await
    }

    /// Opens a transaction as [`Territory::begin`] whose statements the server cancels after
    /// 3 s (`statement_timeout`, on the worker too on Citus), the transaction then rolled back: for
    /// a background worker visiting the territories in turn, so that a territory that cannot
    /// answer (a lock a migration or a restore holds, a hung node) fails within seconds and
    /// holds back no other.
    pub async fn begin_bounded(&self) -> Result<TenantTx, sqlx::Error> {
        self.begin_with(
            "; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL statement_timeout = '3s'",
        )
        .await
    }

    async fn begin_with(&self, settings: &'static str) -> Result<TenantTx, sqlx::Error> {
        // BEGIN, the search path and any settings in one exchange with the server (a simple
        // query of several statements). The schema name comes from the static list of
        // départements (`[a-z0-9_]`), the settings are constants.
        let sql = format!(
            "BEGIN; SELECT set_config('search_path', '{}, pg_temp', true){settings}",
            self.departement.schema_name()
        );
        let mut held = self.conns.acquire().await?;
        // On failure the connection goes back to sqlx's pool, with the `ROLLBACK` sqlx queued.
        PgTransactionManager::begin(
            &mut held.conn,
            Some(sqlx::AssertSqlSafe(sql).into_sql_str()),
        )
        .await?;
        Ok(TenantTx {
            held: Some(held),
            departement: self.departement,
            conns: self.conns.clone(),
            outbox_wake: Arc::clone(&self.outbox_wake),
            wake_on_commit: false,
        })
    }
}

impl Territory {
    /// A connection of this territory's role outside any transaction, its search path the
    /// territory's schema (set when the connection opened): each statement is its own
    /// transaction. For a lone read that needs no other statement's snapshot: one exchange with
    /// the server instead of three (BEGIN with the search path, the statement, COMMIT).
    pub async fn autocommit(&self) -> Result<TenantConn, sqlx::Error> {
        Ok(TenantConn(KeptConn {
            held: Some(self.conns.acquire().await?),
            conns: self.conns.clone(),
        }))
    }

    /// A connection, as [`Territory::autocommit`], for one statement that writes and is its own
    /// transaction: no `BEGIN` or `COMMIT` exchange, a commit as durable as any other. For a
    /// write whose every part fits in one statement and that needs no earlier read's snapshot
    /// (the identity provider's redemption: the claim of its code, its journal entry and its
    /// receipt). The journal and the outbox write through it as through a transaction
    /// ([`TenantWrites`]); [`TenantStatement::done`], once the statement has succeeded, wakes
    /// the outbox consumer if the statement wrote a message for it.
    pub async fn single_statement(&self) -> Result<TenantStatement, sqlx::Error> {
        Ok(TenantStatement::new(
            self.autocommit().await?,
            self.departement,
            Arc::clone(&self.outbox_wake),
        ))
    }
}

/// A territory's connection outside a transaction (`Territory::autocommit`). Use it as an
/// executor with `&mut *conn`.
pub struct TenantConn(KeptConn);

/// A platform connection outside a transaction (`Tenancy::request_connection`). Use it as an
/// executor with `&mut *conn`.
pub struct PlatformConn(KeptConn);

/// A connection of [`KeptConnections`] outside a transaction, kept again when dropped.
struct KeptConn {
    held: Option<Held>,
    conns: KeptConnections,
}

const HELD: &str = "a connection is held until dropped";

impl Deref for TenantConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0.held.as_ref().expect(HELD).conn
    }
}

impl DerefMut for TenantConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0.held.as_mut().expect(HELD).conn
    }
}

impl Deref for PlatformConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0.held.as_ref().expect(HELD).conn
    }
}

impl DerefMut for PlatformConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0.held.as_mut().expect(HELD).conn
    }
}

impl Drop for KeptConn {
    fn drop(&mut self) {
        // Its statements are each their own transaction: nothing stays open on it. A statement
        // dropped unfinished is drained by the connection's next statement before it is sent.
        if let Some(held) = self.held.take() {
            self.conns.release(held);
        }
    }
}

/// A transaction inside one département schema. Use it as an executor with `&mut *tx`.
pub struct TenantTx {
    /// Its connection, inside the transaction (`None` once ended).
    held: Option<Held>,
    departement: DepartementCode,
    /// The territory's connections, for a reader that splits its work
    /// ([`TenantTx::another_connection`]) and to take this one back.
    conns: KeptConnections,
    outbox_wake: Arc<crate::outbox::OutboxWake>,
    /// A message for the consumer was queued: wake it once committed.
    wake_on_commit: bool,
}

impl TenantTx {
    pub fn departement(&self) -> DepartementCode {
        self.departement
    }

    /// Another connection of the same territory, outside any transaction (as
    /// [`Territory::autocommit`]), if the pool gives one within `wait`: for a reader of data
    /// that no longer changes (the sealed journal) that splits its work over two server
    /// processes. `None` when the pool is busy.
    pub async fn another_connection(&self, wait: Duration) -> Option<TenantConn> {
        match tokio::time::timeout(wait, self.conns.acquire()).await {
            Ok(Ok(held)) => Some(TenantConn(KeptConn {
                held: Some(held),
                conns: self.conns.clone(),
            })),
            _ => None,
        }
    }

    /// Commits; if the transaction queued an outbox message, then wakes the consumer
    /// (`outbox::OutboxWake`: after the commit, so that durable commits can share a flush).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        // On failure the transaction is dropped still open: `Drop` queues its `ROLLBACK` (which
        // also sets the connection's count of open transactions right) and gives the
        // connection back to sqlx's pool, which sends it.
        PgTransactionManager::commit(&mut self.held.as_mut().expect(HELD).conn).await?;
        let held = self.held.take().expect(HELD);
        self.conns.release(held);
        if self.wake_on_commit {
            self.outbox_wake.wake(self.departement.as_str());
        }
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        // On failure, as for `commit`.
        PgTransactionManager::rollback(&mut self.held.as_mut().expect(HELD).conn).await?;
        let held = self.held.take().expect(HELD);
        self.conns.release(held);
        Ok(())
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        // Dropped without its end (an error, a cancelled request): the `ROLLBACK` is queued and
        // the connection goes back to sqlx's pool, whose check on its return sends it at once,
        // so the transaction's locks do not wait for the connection's next use.
        if let Some(mut held) = self.held.take() {
            PgTransactionManager::start_rollback(&mut held.conn);
        }
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.held.as_ref().expect(HELD).conn
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.held.as_mut().expect(HELD).conn
    }
}

/// See [`Tenancy::close_unused_territory_connections`].
async fn close_unused(pools: &std::sync::Mutex<HashMap<String, TerritoryPool>>) -> usize {
    let unused: Vec<KeptConnections> = pools
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|entry| entry.used.elapsed() >= TERRITORY_IDLE && entry.conns.has_idle())
        .map(|entry| entry.conns.clone())
        .collect();
    let mut closed = 0;
    for conns in unused {
        closed += conns.close_idle().await;
    }
    closed
}
