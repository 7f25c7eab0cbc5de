//! Property test: over random role assignments and random requests, the Casbin guard agrees
//! with a plain reference function. At least 10,000 decisions are compared.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use policies::choice::{self, AuthorisationState};
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

// The identity provider's choice: roles × structures × live mandates × categories. For a random
// world (role assignments, structures' démarches, authorisations in every state) and random
// requests (aidant, structure, usager, client rep_scope), the guard's `mandate:use` check
// followed by `choice::offered` agrees with a plain reference written from the rule: nothing
// without the aidant role in that very structure; otherwise the categories the client asks for,
// the structure has opened and a live authorisation of that structure for that usager covers.

const CATEGORIES: [&str; 6] = [
    "papiers", "famille", "social", "travail", "logement", "argent",
];

fn structure_id() -> impl Strategy<Value = Uuid> {
    (0u128..3).prop_map(|n| Uuid::from_u128(1 + n))
}

fn usager_id() -> impl Strategy<Value = Uuid> {
    (0u128..3).prop_map(|n| Uuid::from_u128(500 + n))
}

fn categories() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(CATEGORIES.to_vec(), 0..=CATEGORIES.len())
}

fn authorisation() -> impl Strategy<Value = AuthorisationState> {
    (
        structure_id(),
        usager_id(),
        proptest::sample::select(CATEGORIES.to_vec()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(structure, usager, category, revoked, superseded, expired)| AuthorisationState {
                structure,
                usager,
                category: category.to_owned(),
                revoked,
                superseded,
                expired,
            },
        )
}

/// The rule, written plainly: `None` when the aidant may not use a mandate there at all.
fn reference_offer(
    assignments: &[Assignment],
    who: Uuid,
    structure: Uuid,
    usager: Uuid,
    requested: &[&str],
    demarches: &[String],
    authorisations: &[AuthorisationState],
) -> Option<Vec<String>> {
    let domain = Domain::Structure(structure);
    let may_use = assignments.iter().any(|a| {
        a.professional == who
            && a.domain == domain
            && common::holds_in(a.role, &domain)
            && common::permits(a.role, Action::MandateUse)
    });
    if !may_use {
        return None;
    }
    let mut out = Vec::new();
    for category in CATEGORIES {
        let asked = requested.contains(&category);
        let opened = demarches.iter().any(|d| d == category);
        let mut live = false;
        for a in authorisations {
            if a.structure == structure
                && a.usager == usager
                && a.category == category
                && !a.revoked
                && !a.superseded
                && !a.expired
            {
                live = true;
            }
        }
        if asked && opened && live {
            out.push(category.to_owned());
        }
    }
    out.sort();
    Some(out)
}

static OFFERS_COMPARED: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn the_identity_providers_offer_agrees_with_the_reference(
        assignments in proptest::collection::vec(
            (professional(), role(), prop_oneof![structure_id().prop_map(Domain::Structure), domain()])
                .prop_map(|(professional, role, domain)| Assignment { professional, role, domain }),
            0..8,
        ),
        demarches in proptest::collection::vec(categories(), 3),
        authorisations in proptest::collection::vec(authorisation(), 0..16),
        requests in proptest::collection::vec(
            (professional(), 0usize..3, usager_id(), categories()),
            25,
        ),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let guard = runtime.block_on(Guard::new(Arc::new(StaticAssignments(assignments.clone())))).expect("guard");
        for (who, s, usager, requested) in requests {
            let structure = Uuid::from_u128(1 + s as u128);
            let opened: Vec<String> = demarches[s].iter().map(|c| (*c).to_owned()).collect();
            let got = if runtime.block_on(guard.allows(who, &Domain::Structure(structure), Action::MandateUse)) {
                Some(choice::offered(&requested, &opened, structure, usager, &authorisations))
            } else {
                None
            };
            let expected = reference_offer(&assignments, who, structure, usager, &requested, &opened, &authorisations);
            prop_assert_eq!(got, expected, "{} {} {} {:?}", who, structure, usager, requested);
            OFFERS_COMPARED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn at_least_ten_thousand_offers_are_compared() {
    the_identity_providers_offer_agrees_with_the_reference();
    assert!(
        OFFERS_COMPARED.load(Ordering::Relaxed) >= 10_000,
        "{}",
        OFFERS_COMPARED.load(Ordering::Relaxed)
    );
}
