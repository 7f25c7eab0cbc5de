//! Role assignments read from `platform.role_assignments`, for the Casbin guard.

use async_trait::async_trait;
use policies::{Assignment, AssignmentSource, Domain, Role};

use crate::ids::{ProfessionalId, StructureId};
use crate::tenancy::DepartementCode;
use sqlx::PgPool;

pub struct SqlAssignments(pub PgPool);

#[async_trait]
impl AssignmentSource for SqlAssignments {
    async fn load(&self) -> Result<Vec<Assignment>, String> {
        let rows: Vec<(ProfessionalId, String, String)> = sqlx::query_as(
            "SELECT a.professional_id, a.role, a.domain FROM platform.role_assignments a
             JOIN platform.professionals p ON p.id = a.professional_id WHERE p.active",
        )
        .fetch_all(&self.0)
        .await
        .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .filter_map(|(professional, role, domain)| {
                Some(Assignment {
                    professional: professional.as_uuid(),
                    role: Role::parse(&role)?,
                    domain: Domain::parse(&domain)?,
                })
            })
            .collect())
    }
}

/// Structures' départements already looked up: a structure never changes territory (it lives in
/// its département's schema), so a found answer stays true for the life of the process.
static DEPARTEMENTS: std::sync::LazyLock<
    std::sync::RwLock<std::collections::HashMap<StructureId, DepartementCode>>,
> = std::sync::LazyLock::new(Default::default);

/// The département of a structure, as recorded with the roles held in it.
pub async fn structure_departement(
    pool: &PgPool,
    structure: StructureId,
) -> Result<Option<DepartementCode>, sqlx::Error> {
    if let Some(known) = DEPARTEMENTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&structure)
    {
        return Ok(Some(*known));
    }
    let found = lookup_departement(pool, structure).await?;
    if let Some(code) = found {
        DEPARTEMENTS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(structure, code);
    }
    Ok(found)
}

async fn lookup_departement(
    pool: &PgPool,
    structure: StructureId,
) -> Result<Option<DepartementCode>, sqlx::Error> {
    let code: Option<Option<String>> = sqlx::query_scalar(
        "SELECT departement_code FROM platform.role_assignments
         WHERE domain = $1 AND departement_code IS NOT NULL LIMIT 1",
    )
    .bind(format!("structure:{structure}"))
    .fetch_optional(pool)
    .await?;
    Ok(code.flatten().and_then(|c| DepartementCode::parse(&c).ok()))
}

/// Whether an active professional holds `role` in `domain` now, read from the table rather than
/// the guard's cache: for checks that must see a withdrawal at the very next request (the
/// identity provider's redemption and userinfo).
pub async fn holds_now(
    tenancy: &crate::tenancy::Tenancy,
    professional: ProfessionalId,
    role: Role,
    domain: &Domain,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments a
                        JOIN platform.professionals p ON p.id = a.professional_id
                        WHERE a.professional_id = $1 AND a.role = $2 AND a.domain = $3 AND p.active)",
    )
    .bind(professional)
    .bind(role.as_str())
    .bind(domain.to_string())
    .fetch_one(&mut *tenancy.request_connection().await?)
    .await
}
