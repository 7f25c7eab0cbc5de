//! The words of authorization: roles, domains, actions. Actions are domain words, never URLs.

use std::fmt;

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Aidant,
    Referent,
    TerritoryAdmin,
    NationalAdmin,
    Trainer,
    Auditor,
    /// Reviews structure requests of a département, by delegation of the national team.
    Reviewer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Aidant,
        Role::Referent,
        Role::TerritoryAdmin,
        Role::NationalAdmin,
        Role::Trainer,
        Role::Auditor,
        Role::Reviewer,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Aidant => "aidant",
            Role::Referent => "referent",
            Role::TerritoryAdmin => "territory_admin",
            Role::NationalAdmin => "national_admin",
            Role::Trainer => "trainer",
            Role::Auditor => "auditor",
            Role::Reviewer => "reviewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a role holds: the whole platform, a tenant, a structure, a training organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    National,
    Tenant(Uuid),
    Structure(Uuid),
    Organisation(Uuid),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::National => f.write_str("national"),
            Domain::Tenant(id) => write!(f, "tenant:{id}"),
            Domain::Structure(id) => write!(f, "structure:{id}"),
            Domain::Organisation(id) => write!(f, "organisation:{id}"),
        }
    }
}

impl Domain {
    pub fn parse(s: &str) -> Option<Domain> {
        if s == "national" {
            return Some(Domain::National);
        }
        let (kind, id) = s.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "tenant" => Some(Domain::Tenant(id)),
            "structure" => Some(Domain::Structure(id)),
            "organisation" => Some(Domain::Organisation(id)),
            _ => None,
        }
    }
}

/// One role held by one professional in one domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub professional: Uuid,
    pub role: Role,
    pub domain: Domain,
}

macro_rules! actions {
    ($($variant:ident => $word:literal),* $(,)?) => {
        /// Everything a professional may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action { $($variant),* }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            pub fn as_str(&self) -> &'static str {
                match self { $(Action::$variant => $word),* }
            }
        }
    };
}

actions! {
    MandateCreate => "mandate:create",
    MandateRenew => "mandate:renew",
    MandateRevoke => "mandate:revoke",
    MandateUse => "mandate:use",
    MandateList => "mandate:list",
    MandateExport => "mandate:export",
    UsagerList => "usager:list",
    UsagerRead => "usager:read",
    UsagerContactUpdate => "usager:update_contact",
    ActivityReadOwn => "activity:read_own",
    LetterPrint => "letter:print",
    AidantList => "aidant:list",
    AidantAddToTraining => "aidant:add_to_training",
    AidantDeactivate => "aidant:deactivate",
    AidantMove => "aidant:move",
    FactorManage => "factor:manage",
    StructureSetDemarches => "structure:set_demarches",
    ReferentAppoint => "referent:appoint",
    StructureStatistics => "structure:statistics",
    StructureList => "structure:list",
    StructureManage => "structure:manage",
    RolloutFollow => "rollout:follow",
    TrainingFollow => "training:follow",
    StatisticsTerritory => "statistics:territory",
    TerritoryDelegate => "territory:delegate",
    JournalRead => "journal:read",
    JournalVerify => "journal:verify",
    JournalExport => "journal:export",
    WaveOpen => "wave:open",
    RequestReview => "request:review",
    TrainingManage => "training:manage",
    PixImport => "pix:import",
    CardImport => "card:import",
    HabilitationWithdraw => "habilitation:withdraw",
    StatisticsNational => "statistics:national",
    TrainingManageOwn => "training:manage_own",
    AttendanceRecord => "attendance:record",
}
