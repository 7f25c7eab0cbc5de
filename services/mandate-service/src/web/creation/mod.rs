//! Creating a mandate, in the order the aidant goes: the terms (`/mandats/nouveau`: démarches
//! and duration, prefilled for a renewal) open a draft and send the usager to FranceConnect;
//! FranceConnect's return fills the draft with the identity, then its logout comes back
//! (`identification`); the recap asks the aidant's code and the information declaration, and
//! its confirmation creates the mandate ([`crate::mandates::confirm_draft`]). A draft lives
//! [`crate::mandates::DRAFT_MINUTES`] minutes and belongs to one session.

/// FranceConnect's return and logout.
pub mod identification;
/// The recap, its confirmation, and the answer to a double submission.
pub mod recap;
/// The terms form (also the start of a renewal).
pub mod terms;
