//! The reference permission table, written independently of policy.csv: what each role may do,
//! and in which kind of domain it holds.

use policies::{Action, Domain, Role};

pub fn holds_in(role: Role, domain: &Domain) -> bool {
    matches!(
        (role, domain),
        (Role::Aidant | Role::Referent, Domain::Structure(_))
            | (
                Role::TerritoryAdmin | Role::Auditor | Role::Reviewer,
                Domain::Tenant(_)
            )
            | (Role::NationalAdmin, Domain::National)
            | (Role::Trainer, Domain::Organisation(_))
    )
}

pub fn permits(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Aidant => matches!(
            action,
            MandateCreate
                | MandateRenew
                | MandateRevoke
                | MandateUse
                | MandateList
                | UsagerList
                | UsagerRead
                | UsagerContactUpdate
                | ActivityReadOwn
                | LetterPrint
        ),
        Role::Referent => matches!(
            action,
            AidantList
                | AidantAddToTraining
                | AidantDeactivate
                | AidantMove
                | FactorManage
                | StructureSetDemarches
                | StructureStatistics
                | ReferentAppoint
                | MandateList
                | MandateRevoke
                | MandateExport
                | LetterPrint
        ),
        Role::TerritoryAdmin => {
            matches!(
                action,
                StructureList
                    | StructureManage
                    | RolloutFollow
                    | TrainingFollow
                    | StatisticsTerritory
                    | TerritoryDelegate
            )
        }
        Role::Auditor => matches!(action, JournalRead | JournalVerify | JournalExport),
        Role::Reviewer => matches!(action, RequestReview),
        Role::NationalAdmin => matches!(
            action,
            WaveOpen
                | RequestReview
                | TrainingManage
                | PixImport
                | CardImport
                | HabilitationWithdraw
                | StructureList
                | StatisticsNational
        ),
        Role::Trainer => matches!(action, TrainingManageOwn | AttendanceRecord),
    }
}
