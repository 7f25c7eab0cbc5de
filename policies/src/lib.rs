//! Who may do what, where: the Casbin model (`model.conf`) and role → permission policy
//! (`policy.csv`) of Aidants Connect, and the one guard every handler goes through. Role
//! assignments come from an `AssignmentSource` (the platform schema in production) through
//! `AssignmentAdapter`. Deny by default: an action is allowed only when a policy line allows it
//! for a role the professional holds in that very domain.

mod adapter;
/// The identity provider's offer of démarche categories (a pure function).
pub mod choice;
mod vocabulary;

use std::sync::Arc;

use casbin::{CoreApi, DefaultModel, Enforcer};
use tokio::sync::RwLock;
use uuid::Uuid;

pub use adapter::{AssignmentAdapter, AssignmentSource, StaticAssignments};
pub use vocabulary::{Action, Assignment, Domain, Role};

/// The model, embedded at build time.
pub const MODEL: &str = include_str!("../model.conf");
/// The role → permission policy, embedded at build time.
pub const POLICY: &str = include_str!("../policy.csv");

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("politique d'autorisation invalide : {0}")]
    Policy(#[from] casbin::Error),
}

/// The authorization guard. Cheap to clone; `reload` after role assignments change.
#[derive(Clone)]
pub struct Guard {
    enforcer: Arc<RwLock<Enforcer>>,
    source: Arc<dyn AssignmentSource>,
    /// One reload at a time: an older read never replaces a newer one.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Guard {
    pub async fn new(source: Arc<dyn AssignmentSource>) -> Result<Self, GuardError> {
        Ok(Self {
            enforcer: Arc::new(RwLock::new(Self::enforcer(&source).await?)),
            source,
            reloading: Arc::default(),
        })
    }

    async fn enforcer(source: &Arc<dyn AssignmentSource>) -> Result<Enforcer, GuardError> {
        let model = DefaultModel::from_str(MODEL).await?;
        Ok(Enforcer::new(model, AssignmentAdapter::new(Arc::clone(source))).await?)
    }

    /// Re-reads the role assignments (after a grant, a withdrawal, a move). They are read into a
    /// new enforcer, which then replaces the current one: the checks meanwhile use the
    /// assignments last read, instead of waiting for the read (a slow database, a lock held by a
    /// migration: every guarded page and the identity provider's interaction waited behind it).
    /// A read that fails changes nothing.
    pub async fn reload(&self) -> Result<(), GuardError> {
        let _one_at_a_time = self.reloading.lock().await;
        let fresh = Self::enforcer(&self.source).await?;
        *self.enforcer.write().await = fresh;
        Ok(())
    }

    /// Whether `professional` may do `action` in `domain`. Any evaluation error denies.
    pub async fn allows(&self, professional: Uuid, domain: &Domain, action: Action) -> bool {
        let enforcer = self.enforcer.read().await;
        enforcer
            .enforce((
                subject(professional),
                domain.to_string(),
                action.as_str().to_owned(),
            ))
            .unwrap_or(false)
    }
}

/// The Casbin subject naming a professional.
pub fn subject(professional: Uuid) -> String {
    format!("prof:{professional}")
}
