//! The identity provider's offer, as a pure function: which démarche categories an aidant may
//! use for a usager when a client (FranceConnect) asks. The client's `rep_scope` ∩ the
//! structure's démarches ∩ the categories of the usager's live authorisations with that
//! structure. The role check (`mandate:use` in the structure) is the guard's; the grant itself
//! is written by one SQL statement that checks the live authorisation again.

use uuid::Uuid;

/// One authorisation (a mandate's category) as the identity provider reads it; the liveness
/// flags are computed by the database clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorisationState {
    pub structure: Uuid,
    pub usager: Uuid,
    pub category: String,
    pub revoked: bool,
    pub superseded: bool,
    pub expired: bool,
}

impl AuthorisationState {
    /// Neither revoked, superseded by a newer mandate, nor expired.
    pub fn is_live(&self) -> bool {
        !self.revoked && !self.superseded && !self.expired
    }
}

/// The categories the client accepts that the structure has opened, in the client's order.
pub fn accepted_here<'a>(requested: &[&'a str], demarches: &[String]) -> Vec<&'a str> {
    requested
        .iter()
        .copied()
        .filter(|c| demarches.iter().any(|d| d == c))
        .collect()
}

/// The categories offered for `usager` in `structure`: accepted here and covered by a live
/// authorisation of that structure for that usager; sorted, each once.
pub fn offered(
    requested: &[&str],
    demarches: &[String],
    structure: Uuid,
    usager: Uuid,
    authorisations: &[AuthorisationState],
) -> Vec<String> {
    let accepted = accepted_here(requested, demarches);
    let mut offered: Vec<String> = authorisations
        .iter()
        .filter(|a| a.structure == structure && a.usager == usager && a.is_live())
        .filter(|a| accepted.contains(&a.category.as_str()))
        .map(|a| a.category.clone())
        .collect();
    offered.sort();
    offered.dedup();
    offered
}
