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

/// Assignments as they are when each read starts; read `n` (from 1) then waits for `gates[n]`.
struct Versioned {
    current: std::sync::Mutex<Vec<Assignment>>,
    loads: AtomicUsize,
    gates: [tokio::sync::Semaphore; 3],
}

#[async_trait::async_trait]
impl AssignmentSource for Versioned {
    async fn load(&self) -> Result<Vec<Assignment>, String> {
        let snapshot = self.current.lock().expect("verrou").clone();
        let n = self.loads.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = self.gates.get(n)
            && n > 0
        {
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
        }
        Ok(snapshot)
    }
}

/// Two reloads at once (a withdrawal, then a new grant): the newer read is the one kept, even
/// when the older read ends last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_read_never_replaces_a_newer_one() {
    let (professional, domain, gated) = aidant();
    let granted = gated.assignments.clone();
    let source = Arc::new(Versioned {
        current: std::sync::Mutex::new(granted.clone()),
        loads: AtomicUsize::new(0),
        gates: std::array::from_fn(|_| tokio::sync::Semaphore::new(0)),
    });
    let guard = Guard::new(source.clone()).await.expect("guard");
    // Withdrawn: a first reload reads that, and is slow.
    *source.current.lock().expect("verrou") = Vec::new();
    let older = tokio::spawn({
        let guard = guard.clone();
        async move { guard.reload().await }
    });
    while source.loads.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Granted again: a second reload; its read, if it starts, ends first.
    *source.current.lock().expect("verrou") = granted;
    let newer = tokio::spawn({
        let guard = guard.clone();
        async move { guard.reload().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    source.gates[2].add_permits(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    source.gates[1].add_permits(1);
    older.await.expect("tâche").expect("rechargement");
    newer.await.expect("tâche").expect("rechargement");
    assert!(
        guard
            .allows(professional, &domain, Action::MandateUse)
            .await,
        "la lecture la plus récente (attribution rendue) l'emporte"
    );
}
