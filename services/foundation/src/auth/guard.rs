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
        let departement = crate::auth::assignments::structure_departement(
            platform.platform_pool(),
            self.structure,
        )
        .await?
        .ok_or_else(PageError::not_found)?;
        Ok(platform.tenancy.territory(departement).await?)
    }
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
