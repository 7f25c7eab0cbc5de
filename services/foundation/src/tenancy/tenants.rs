//! Tenants: département councils and communes subscribing to the platform.

use crate::ids::TenantId;
use serde::Serialize;
use sqlx::PgPool;

use super::territories::{CommuneCode, DepartementCode};

/// What a tenant is, with the code that places it on the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantKind {
    Departement(DepartementCode),
    Commune(CommuneCode),
}

impl TenantKind {
    pub fn departement(&self) -> DepartementCode {
        match self {
            TenantKind::Departement(d) => *d,
            TenantKind::Commune(c) => c.departement(),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub kind: String,
    pub name: String,
    pub departement_code: String,
    pub commune_code: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("le nom du tenant est vide ou dépasse 200 caractères")]
    InvalidName,
    #[error("ce tenant existe déjà : {0}")]
    Duplicate(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Registers a tenant. Exactly one council per département and one tenant per commune.
pub async fn create_tenant(
    pool: &PgPool,
    kind: &TenantKind,
    name: &str,
) -> Result<Tenant, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(TenantError::InvalidName);
    }
    let (kind_str, commune) = match kind {
        TenantKind::Departement(_) => ("departement", None),
        TenantKind::Commune(c) => ("commune", Some(c.as_str().to_owned())),
    };
    let result = sqlx::query_as::<_, Tenant>(
        "INSERT INTO platform.tenants (id, kind, name, departement_code, commune_code)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, kind, name, departement_code, commune_code",
    )
    .bind(TenantId::new_v7())
    .bind(kind_str)
    .bind(name)
    .bind(kind.departement().as_str())
    .bind(&commune)
    .fetch_one(pool)
    .await;
    match result {
        Ok(tenant) => Ok(tenant),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(TenantError::Duplicate(match kind {
                TenantKind::Departement(d) => {
                    format!("le conseil départemental du {d} ({})", d.name())
                }
                TenantKind::Commune(c) => format!("la commune {c}"),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list_tenants(pool: &PgPool) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>(
        "SELECT id, kind, name, departement_code, commune_code FROM platform.tenants
         ORDER BY departement_code, kind DESC, name",
    )
    .fetch_all(pool)
    .await
}
