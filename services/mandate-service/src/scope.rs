//! The request's structure and territory: [`foundation::auth::scope`], which every service
//! acting in the current structure shares.

pub use foundation::auth::scope::{Scope, StructureInfo, VerifiedScope};
