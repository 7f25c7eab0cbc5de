//! Typed ids: a structure's id, a usager's, a mandate's, a professional's and a tenant's are
//! all UUIDs in the database, and distinct types here, so that passing one where another is
//! expected does not compile. Each is bound and decoded by sqlx as its UUID (transparent),
//! serialised as its UUID string, and converted from and to a bare `Uuid` only explicitly
//! (`from_uuid`, `as_uuid`), at the edges where a UUID comes from a path or a form.

macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7).
            pub fn new_v7() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The id a path, a form or another table gave as a bare UUID.
            pub const fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl PartialEq<uuid::Uuid> for $name {
            fn eq(&self, other: &uuid::Uuid) -> bool {
                self.0 == *other
            }
        }
    )+};
}

typed_ids!(
    /// A structure (`structures.id` in its territory, `platform.structure_index`).
    StructureId,
    /// A usager (`usagers.id` in a territory).
    UsagerId,
    /// A mandate (`mandates.id` in a territory).
    MandateId,
    /// A professional: aidant, référent, administrator (`platform.professionals.id`).
    ProfessionalId,
    /// A tenant: a département council or a commune (`platform.tenants.id`).
    TenantId,
);

impl StructureId {
    /// The guard's domain of this structure.
    pub fn domain(self) -> policies::Domain {
        policies::Domain::Structure(self.0)
    }
}

impl TenantId {
    /// The guard's domain of this tenant.
    pub fn domain(self) -> policies::Domain {
        policies::Domain::Tenant(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_serialise_as_their_uuid() {
        let id = MandateId::new_v7();
        assert_eq!(id.to_string().parse::<MandateId>().ok(), Some(id));
        assert_eq!(
            serde_json::to_string(&id).ok(),
            Some(format!("\"{}\"", id.as_uuid()))
        );
        assert!("pas-un-id".parse::<StructureId>().is_err());
        assert_eq!(UsagerId::from_uuid(id.as_uuid()), id.as_uuid());
    }
}
