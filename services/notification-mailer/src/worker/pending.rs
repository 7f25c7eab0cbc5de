//! What a scope could not take when it was due: a message's outcome to record, claimed messages
//! never tried to give back. Kept in memory and written before the scope's next claim, so that a
//! territory that stops answering between a claim and an outcome (a lock, a hung node) neither
//! holds the loop nor leaves a delivered message looking undelivered once it answers again.

use uuid::Uuid;

use super::{Outcome, Scope};

/// One write a scope still owes.
pub(super) enum Left {
    /// A message's outcome (sent, failed), known but not recorded, with the time of the claim
    /// it was sent under.
    Outcome(Uuid, time::OffsetDateTime, Outcome),
    /// Messages of one claim (its time) never tried, still marked as claimed.
    Untried(Vec<Uuid>, time::OffsetDateTime),
}

#[derive(Default)]
pub(super) struct Pending(std::sync::Mutex<Vec<(Scope, Left)>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Scope, Left)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn keep(&self, scope: Scope, left: Left) {
        self.lock().push((scope, left));
    }

    /// Takes out what `scope` owes, in the order it was kept (a lane of the same scope running
    /// meanwhile finds nothing: each write is made once).
    pub(super) fn take(&self, scope: Scope) -> Vec<Left> {
        self.lock()
            .extract_if(.., |(s, _)| *s == scope)
            .map(|(_, left)| left)
            .collect()
    }

    /// Puts back what could not be written this time, ahead of anything kept since.
    pub(super) fn put_back(&self, scope: Scope, left: impl Iterator<Item = Left>) {
        let mut all = self.lock();
        let back: Vec<_> = left.map(|l| (scope, l)).collect();
        all.splice(0..0, back);
    }

    /// The scopes that owe writes, each once.
    pub(super) fn scopes(&self) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = Vec::new();
        for (scope, _) in self.lock().iter() {
            if !scopes.contains(scope) {
                scopes.push(*scope);
            }
        }
        scopes
    }

    /// The messages whose outcome or give-back is owed, all scopes together.
    pub(super) fn messages(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .flat_map(|(_, left)| match left {
                Left::Outcome(id, _, _) => vec![*id],
                Left::Untried(ids, _) => ids.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation::tenancy::DepartementCode;

    fn territory(code: &str) -> Scope {
        Scope::Departement(DepartementCode::parse(code).expect("code"))
    }

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    fn id(left: &Left) -> Uuid {
        match left {
            Left::Outcome(id, _, _) => *id,
            Left::Untried(ids, _) => ids[0],
        }
    }

    #[test]
    fn a_scope_takes_only_its_own_in_order_and_once() {
        let pending = Pending::default();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        pending.keep(territory("33"), Left::Outcome(a, now(), Outcome::Sent));
        pending.keep(territory("34"), Left::Outcome(b, now(), Outcome::Sent));
        pending.keep(
            territory("33"),
            Left::Untried(vec![c], time::OffsetDateTime::now_utc()),
        );
        let taken: Vec<Uuid> = pending.take(territory("33")).iter().map(id).collect();
        assert_eq!(taken, vec![a, c]);
        assert!(pending.take(territory("33")).is_empty());
        assert_eq!(pending.scopes(), vec![territory("34")]);
        let taken: Vec<Uuid> = pending.take(territory("34")).iter().map(id).collect();
        assert_eq!(taken, vec![b]);
        assert!(pending.messages().is_empty());
    }

    #[test]
    fn what_is_put_back_comes_before_what_was_kept_since() {
        let pending = Pending::default();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        pending.keep(territory("33"), Left::Outcome(a, now(), Outcome::Sent));
        pending.keep(territory("33"), Left::Outcome(b, now(), Outcome::Sent));
        let taken = pending.take(territory("33"));
        pending.keep(territory("33"), Left::Outcome(c, now(), Outcome::Sent));
        pending.put_back(territory("33"), taken.into_iter());
        let order: Vec<Uuid> = pending.take(territory("33")).iter().map(id).collect();
        assert_eq!(order, vec![a, b, c]);
    }
}
