//! Every role × every action × every kind of domain, including the same kind of domain
//! belonging to someone else (another structure, another tenant): the guard says exactly what
//! the reference table says.

mod common;

use std::sync::Arc;

use policies::{Action, Assignment, Domain, Guard, Role, StaticAssignments};
use uuid::Uuid;

/// The domain a role is granted in for this table, and a foreign one of the same kind.
fn own_and_foreign(role: Role) -> (Domain, Domain) {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    match role {
        Role::Aidant | Role::Referent => (Domain::Structure(a), Domain::Structure(b)),
        Role::TerritoryAdmin | Role::Auditor | Role::Reviewer => {
            (Domain::Tenant(a), Domain::Tenant(b))
        }
        Role::Trainer => (Domain::Organisation(a), Domain::Organisation(b)),
        Role::NationalAdmin => (Domain::National, Domain::National),
    }
}

#[tokio::test]
async fn every_role_action_and_domain_matches_the_reference_table() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for role in Role::ALL {
        let professional = Uuid::new_v4();
        let (own, foreign) = own_and_foreign(role);
        let guard = Guard::new(Arc::new(StaticAssignments(vec![Assignment {
            professional,
            role,
            domain: own,
        }])))
        .await
        .expect("guard");
        let id = Uuid::from_u128(1);
        let domains = [
            Domain::National,
            Domain::Tenant(id),
            Domain::Structure(id),
            Domain::Organisation(id),
            foreign,
        ];
        for action in Action::ALL {
            for domain in &domains {
                let expected = *domain == own
                    && common::permits(role, *action)
                    && common::holds_in(role, domain);
                let got = guard.allows(professional, domain, *action).await;
                if got != expected {
                    mismatches.push(format!(
                        "{} {} {domain}: attendu {expected}, obtenu {got}",
                        role.as_str(),
                        action.as_str()
                    ));
                }
                checked += 1;
            }
            // Another professional, with no role at all, is always denied.
            assert!(!guard.allows(Uuid::new_v4(), &own, *action).await);
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(checked, Role::ALL.len() * Action::ALL.len() * 5);
}

#[tokio::test]
async fn specific_denials_that_matter() {
    let (aidant, referent, admin) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (s1, s2, t1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let guard = Guard::new(Arc::new(StaticAssignments(vec![
        Assignment {
            professional: aidant,
            role: Role::Aidant,
            domain: Domain::Structure(s1),
        },
        Assignment {
            professional: referent,
            role: Role::Referent,
            domain: Domain::Structure(s1),
        },
        Assignment {
            professional: admin,
            role: Role::TerritoryAdmin,
            domain: Domain::Tenant(t1),
        },
    ])))
    .await
    .expect("guard");
    // An aidant of one structure cannot use another structure's mandates.
    assert!(
        guard
            .allows(aidant, &Domain::Structure(s1), Action::MandateUse)
            .await
    );
    assert!(
        !guard
            .allows(aidant, &Domain::Structure(s2), Action::MandateUse)
            .await
    );
    // A référent who is not an aidant manages aidants but cannot act for usagers.
    assert!(
        guard
            .allows(referent, &Domain::Structure(s1), Action::AidantDeactivate)
            .await
    );
    assert!(
        !guard
            .allows(referent, &Domain::Structure(s1), Action::MandateUse)
            .await
    );
    // A territory admin never reads usagers, even of a structure of their tenant.
    assert!(
        !guard
            .allows(admin, &Domain::Structure(s1), Action::UsagerRead)
            .await
    );
    assert!(
        !guard
            .allows(admin, &Domain::Tenant(t1), Action::UsagerRead)
            .await
    );
    assert!(
        guard
            .allows(admin, &Domain::Tenant(t1), Action::StructureManage)
            .await
    );
    // Nobody here is national.
    for p in [aidant, referent, admin] {
        assert!(
            !guard
                .allows(p, &Domain::National, Action::HabilitationWithdraw)
                .await
        );
    }
}
