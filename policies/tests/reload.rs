//! Reloading the role assignments never holds the permission checks, and a reload that fails
//! keeps the assignments last read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use policies::{Action, Assignment, AssignmentSource, Domain, Guard, Role};
use uuid::Uuid;

/// Assignments whose reads after the first wait for `release`, then fail if `fail` says so.
struct Gated {
    assignments: Vec<Assignment>,
    loads: AtomicUsize,
    release: tokio::sync::Semaphore,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl AssignmentSource for Gated {
    async fn load(&self) -> Result<Vec<Assignment>, String> {
        if self.loads.fetch_add(1, Ordering::SeqCst) > 0 {
            self.release
                .acquire()
                .await
                .map_err(|e| e.to_string())?
                .forget();
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err("base injoignable".into());
        }
        Ok(self.assignments.clone())
    }
}

fn aidant() -> (Uuid, Domain, Arc<Gated>) {
    let professional = Uuid::new_v4();
    let domain = Domain::Structure(Uuid::new_v4());
    let source = Arc::new(Gated {
        assignments: vec![Assignment {
            professional,
            role: Role::Aidant,
            domain,
        }],
        loads: AtomicUsize::new(0),
        release: tokio::sync::Semaphore::new(0),
        fail: Default::default(),
    });
    (professional, domain, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reload_does_not_hold_the_checks() {
    let (professional, domain, source) = aidant();
    let guard = Guard::new(source.clone()).await.expect("guard");
    let reloading = tokio::spawn({
        let guard = guard.clone();
        async move { guard.reload().await }
    });
    // The reload is inside its read of the assignments (a slow database, a lock).
    while source.loads.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let allowed = tokio::time::timeout(
        Duration::from_secs(5),
        guard.allows(professional, &domain, Action::MandateUse),
    )
    .await
    .expect("le contrôle attend la fin du rechargement");
    assert!(allowed);
    source.release.add_permits(1);
    reloading.await.expect("tâche").expect("rechargement");
    assert!(
        guard
            .allows(professional, &domain, Action::MandateUse)
            .await
    );
}

#[tokio::test]
async fn a_failed_reload_keeps_the_assignments_last_read() {
    let (professional, domain, source) = aidant();
    let guard = Guard::new(source.clone()).await.expect("guard");
    source.fail.store(true, Ordering::SeqCst);
    source.release.add_permits(1);
    assert!(guard.reload().await.is_err());
    assert!(
        guard
            .allows(professional, &domain, Action::MandateUse)
            .await,
        "un rechargement manqué ne retire pas les droits lus la dernière fois"
    );
}
