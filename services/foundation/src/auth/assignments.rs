//! Role assignments read from `platform.role_assignments`, for the Casbin guard.

use async_trait::async_trait;
use policies::{Assignment, AssignmentSource, Domain, Role};
use sqlx::PgPool;
use uuid::Uuid;

pub struct SqlAssignments(pub PgPool);

#[async_trait]
impl AssignmentSource for SqlAssignments {
    async fn load(&self) -> Result<Vec<Assignment>, String> {
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
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
                    professional,
                    role: Role::parse(&role)?,
                    domain: Domain::parse(&domain)?,
                })
            })
            .collect())
    }
}
