//! Property test: over random role assignments and random requests, the Casbin guard agrees
//! with a plain reference function. At least 10,000 decisions are compared.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use policies::{Action, Assignment, Domain, Guard, Role, StaticAssignments};
use proptest::prelude::*;
use uuid::Uuid;

fn domain() -> impl Strategy<Value = Domain> {
    // Few ids, so that random requests often hit granted domains.
    (0u8..4, 0u128..3).prop_map(|(kind, id)| {
        let id = Uuid::from_u128(id + 1);
        match kind {
            0 => Domain::National,
            1 => Domain::Tenant(id),
            2 => Domain::Structure(id),
            _ => Domain::Organisation(id),
        }
    })
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

fn action() -> impl Strategy<Value = Action> {
    proptest::sample::select(Action::ALL.to_vec())
}

fn professional() -> impl Strategy<Value = Uuid> {
    (0u128..4).prop_map(|n| Uuid::from_u128(1000 + n))
}

fn reference(assignments: &[Assignment], who: Uuid, domain: &Domain, what: Action) -> bool {
    assignments.iter().any(|a| {
        a.professional == who
            && a.domain == *domain
            && common::holds_in(a.role, domain)
            && common::permits(a.role, what)
    })
}

static COMPARED: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn the_guard_agrees_with_the_reference(
        assignments in proptest::collection::vec(
            (professional(), role(), domain()).prop_map(|(professional, role, domain)| Assignment { professional, role, domain }),
            0..8,
        ),
        requests in proptest::collection::vec((professional(), domain(), action()), 25),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let guard = runtime.block_on(Guard::new(Arc::new(StaticAssignments(assignments.clone())))).expect("guard");
        for (who, domain, what) in requests {
            let got = runtime.block_on(guard.allows(who, &domain, what));
            prop_assert_eq!(got, reference(&assignments, who, &domain, what), "{} {} {}", who, domain, what.as_str());
            COMPARED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn at_least_ten_thousand_decisions_are_compared() {
    // Runs the property itself so the count does not depend on test order.
    the_guard_agrees_with_the_reference();
    assert!(
        COMPARED.load(Ordering::Relaxed) >= 10_000,
        "{}",
        COMPARED.load(Ordering::Relaxed)
    );
}
