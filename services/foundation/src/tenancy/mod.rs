//! Per-département isolation. Only this module sets `search_path` or `role`: a tenant-scoped
//! transaction (`TenantTx`) sets both with `SET LOCAL` semantics, so they end with the
//! transaction and a pooled connection never carries one territory into another's request.

pub mod migrate;
pub mod tenants;
pub mod territories;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

pub use territories::{CodeError, CommuneCode, DepartementCode};

/// Why a territory cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("le territoire {0} n'est pas disponible pour le moment")]
    NotServed(DepartementCode),
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
    schemas: Arc<RwLock<HashMap<DepartementCode, SchemaState>>>,
    last_refresh: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// A lookup miss re-reads the registry at most this often, so requests for territories that
/// are not provisioned cannot turn into a query each.
const REFRESH_ON_MISS_EVERY: Duration = Duration::from_secs(1);

impl Tenancy {
    /// Loads the state of every département schema.
    pub async fn load(pool: PgPool) -> Result<Self, sqlx::Error> {
        let tenancy = Self {
            pool,
            schemas: Arc::default(),
            last_refresh: Arc::default(),
        };
        tenancy.refresh().await?;
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

    /// The context of one territory, if its schema is served.
    pub async fn context(
        &self,
        departement: DepartementCode,
    ) -> Result<TenantContext, TenancyError> {
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
                    .ok_or(TenancyError::NotServed(departement))?
            }
        };
        crate::telemetry::record_tenant(departement.as_str());
        Ok(TenantContext {
            departement,
            role: Arc::from(role),
            pool: self.pool.clone(),
        })
    }

    fn served_role(&self, departement: DepartementCode) -> Option<String> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        schemas
            .get(&departement)
            .filter(|s| s.served)
            .map(|s| s.role_name.clone())
    }
}

/// What a handler needs to reach one territory's data. It never exposes the pool.
#[derive(Clone)]
pub struct TenantContext {
    departement: DepartementCode,
    role: Arc<str>,
    pool: PgPool,
}

impl std::fmt::Debug for TenantContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantContext")
            .field("departement", &self.departement)
            .finish()
    }
}

impl TenantContext {
    pub fn departement(&self) -> DepartementCode {
        self.departement
    }

    /// Opens a transaction confined to this territory: the département's own role (which has
    /// no right on any other schema) and its schema as the only search path, both reset at
    /// commit or rollback.
    pub async fn begin(&self) -> Result<TenantTx, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('role', $1, true), set_config('search_path', $2, true)")
            .bind(&*self.role)
            .bind(self.departement.schema_name())
            .execute(&mut *tx)
            .await?;
        Ok(TenantTx {
            tx,
            departement: self.departement,
        })
    }
}

/// A transaction inside one département schema. Use it as an executor with `&mut *tx`.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    departement: DepartementCode,
}

impl TenantTx {
    pub fn departement(&self) -> DepartementCode {
        self.departement
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
