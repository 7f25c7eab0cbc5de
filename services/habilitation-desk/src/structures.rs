//! Structures of a territory. Until the desk's request and review flow exists, operators create
//! them with `tenant-admin`.

use foundation::ids::{StructureId, TenantId};
use foundation::tenancy::{CommuneCode, Territory};

/// What an operator gives to create a structure.
#[derive(Debug, Clone)]
pub struct NewStructure {
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: String,
    pub commune: CommuneCode,
    pub address: String,
    pub france_services: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error("la commune {0} n'appartient pas au département {1}")]
    WrongDepartement(CommuneCode, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a structure in its département's schema, unless one with the same name already
/// exists in that commune (so that demo loading is idempotent). Returns its id.
pub async fn create_structure(
    tenant: &Territory,
    new: &NewStructure,
) -> Result<StructureId, StructureError> {
    if new.commune.departement() != tenant.departement() {
        return Err(StructureError::WrongDepartement(
            new.commune.clone(),
            tenant.departement().to_string(),
        ));
    }
    let mut tx = tenant.begin().await?;
    let existing: Option<StructureId> =
        sqlx::query_scalar("SELECT id FROM structures WHERE name = $1 AND commune_code = $2")
            .bind(&new.name)
            .bind(new.commune.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let id = match existing {
        Some(id) => id,
        None => {
            let id = StructureId::new_v7();

            sqlx::query(
                "INSERT INTO structures (id, tenant_id, name, kind, commune_code, address, france_services)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(new.tenant_id)
            .bind(&new.name)
            .bind(&new.kind)
            .bind(new.commune.as_str())
            .bind(&new.address)
            .bind(new.france_services)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    tx.commit().await?;
    Ok(id)
}
