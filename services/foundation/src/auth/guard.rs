//! The one authorization guard every handler goes through: the role check (Casbin, deny by
//! default) of an action in a domain (a structure, a tenant, the nation). "For whom" — a live
//! mandate of this structure for this person and démarche — is not a second check here: every
//! query that reads or acts for a usager is scoped to the structure the guard allowed and reads
//! the one view of live authorisations (`live_authorisations`).

use std::time::Duration;

use policies::{Action, Domain};

use super::session::Professional;
use crate::app::{Platform, Shutdown};
use crate::ids::StructureId;
use crate::web::{PageError, PageResult};

fn forbidden() -> PageError {
    PageError::forbidden()
}

/// Allows `action` in `domain` for the professional, or answers 403.
pub async fn require(
    platform: &Platform,
    who: &Professional,
    domain: Domain,
    action: Action,
) -> PageResult<()> {
    if platform
        .guard
        .allows(who.id.as_uuid(), &domain, action)
        .await
    {
        Ok(())
    } else {
        tracing::info!(action = action.as_str(), "authorization denied");
        Err(forbidden())
    }
}

/// What the guard returns when it allows an action in a structure, and the proof that the
/// territory's data functions ask for (`&Authorized`) instead of a bare structure id: its
/// fields are private and only this module makes one, so a read of a structure's data that
/// skipped the check does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized {
    structure: StructureId,
    action: Action,
}

impl Authorized {
    /// The structure the action was allowed in.
    pub fn structure(&self) -> StructureId {
        self.structure
    }

    /// The action allowed.
    pub fn action(&self) -> Action {
        self.action
    }
}

/// Allows `action` in the professional's current structure; returns the proof.
pub async fn require_in_current_structure(
    platform: &Platform,
    who: &Professional,
    action: Action,
) -> PageResult<Authorized> {
    let structure = who.current_structure.ok_or_else(forbidden)?;
    require(platform, who, structure.domain(), action).await?;
    Ok(Authorized { structure, action })
}

/// Allows `action` in `structure`, which need not be the current one (a page about a
/// structure the professional administers or trains for); returns the proof.
pub async fn require_in_structure(
    platform: &Platform,
    who: &Professional,
    structure: StructureId,
    action: Action,
) -> PageResult<Authorized> {
    require(platform, who, structure.domain(), action).await?;
    Ok(Authorized { structure, action })
}

impl Authorized {
    /// The territory holding the structure the action was allowed in: how a page reaches a
    /// territory's data (`Tenancy::unguarded` is for jobs, workers and tools). A structure
    /// missing from the platform's index is not found.
    pub async fn territory(&self, platform: &Platform) -> PageResult<crate::tenancy::Territory> {
        structure_territory(platform, self.structure).await
    }
}

/// The territory holding `structure`; not found when the platform's index does not know it.
/// Reached only through a proof's method.
async fn structure_territory(
    platform: &Platform,
    structure: StructureId,
) -> PageResult<crate::tenancy::Territory> {
    let departement =
        crate::auth::assignments::structure_departement(platform.platform_pool(), structure)
            .await?
            .ok_or_else(PageError::not_found)?;
    Ok(platform.tenancy.territory(departement).await?)
}

/// The proof that an action was allowed in a tenant (a département council or a commune): what
/// a territory administrator's page holds before it reads the tenant's territory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantAuthorized {
    tenant: crate::ids::TenantId,
    action: Action,
}

impl TenantAuthorized {
    pub fn tenant(&self) -> crate::ids::TenantId {
        self.tenant
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The territory (département schema) the tenant belongs to.
    pub async fn territory(&self, platform: &Platform) -> PageResult<crate::tenancy::Territory> {
        let code: Option<String> =
            sqlx::query_scalar("SELECT departement_code FROM platform.tenants WHERE id = $1")
                .bind(self.tenant)
                .fetch_optional(platform.platform_pool())
                .await?;
        let departement = code
            .and_then(|c| crate::tenancy::DepartementCode::parse(&c).ok())
            .ok_or_else(PageError::not_found)?;
        Ok(platform.tenancy.territory(departement).await?)
    }
}

/// The proof that `action` is allowed in `tenant`, or `None` (the caller chooses how to refuse:
/// some pages answer 404 to someone allowed elsewhere).
pub async fn check_in_tenant(
    platform: &Platform,
    who: &Professional,
    tenant: crate::ids::TenantId,
    action: Action,
) -> Option<TenantAuthorized> {
    platform
        .guard
        .allows(who.id.as_uuid(), &tenant.domain(), action)
        .await
        .then_some(TenantAuthorized { tenant, action })
}

/// The proof that an action was allowed nationally: every territory is within its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NationalAuthorized {
    action: Action,
}

impl NationalAuthorized {
    pub fn action(&self) -> Action {
        self.action
    }

    /// The territory holding `structure` (404 when the platform's index does not know it).
    pub async fn territory_of_structure(
        &self,
        platform: &Platform,
        structure: StructureId,
    ) -> PageResult<crate::tenancy::Territory> {
        structure_territory(platform, structure).await
    }

    /// The territory of `departement`.
    pub async fn territory(
        &self,
        platform: &Platform,
        departement: crate::tenancy::DepartementCode,
    ) -> PageResult<crate::tenancy::Territory> {
        Ok(platform.tenancy.territory(departement).await?)
    }
}

/// Allows `action` nationally, or answers 403; returns the proof.
pub async fn require_national(
    platform: &Platform,
    who: &Professional,
    action: Action,
) -> PageResult<NationalAuthorized> {
    require(platform, who, Domain::National, action).await?;
    Ok(NationalAuthorized { action })
}

/// Refuses (403) acting in a structure that was deactivated (`structures.active`), for
/// handlers that do not go through the mandate service's `Scope`, which checks it itself.
pub async fn require_active_structure(
    platform: &Platform,
    structure: StructureId,
) -> PageResult<()> {
    let departement =
        crate::auth::assignments::structure_departement(platform.platform_pool(), structure)
            .await?
            .ok_or_else(forbidden)?;
    let tenant = platform.tenancy.territory(departement).await?;
    let mut tx = tenant.begin().await?;
    let active: Option<bool> = sqlx::query_scalar("SELECT active FROM structures WHERE id = $1")
        .bind(structure)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    match active {
        Some(true) => Ok(()),
        _ => Err(forbidden()),
    }
}

/// Background worker: reloads the guard whenever roles or accounts change (database
/// notification), and every minute in case a notification was missed.
pub async fn reload_on_change(platform: Platform, mut shutdown: Shutdown) {
    let mut listener = platform.listen("role_assignments").await.ok();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {},
            ok = notified => if !ok { tokio::time::sleep(Duration::from_millis(500)).await },
        }
        if let Err(e) = platform.guard.reload().await {
            tracing::error!(error = %e, "guard reload failed");
        }
    }
}
