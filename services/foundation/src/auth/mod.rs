//! Professional identity shared by every service: secrets handling, TOTP checks, the security
//! journal, sessions, CSRF protection, rate limits and the authorization guard's assignments.
//! Login pages live in habilitation-desk; every service reads the same sessions and uses the
//! same guard.

pub mod assignments;
pub mod browsers;
pub mod cards;
pub mod client;
pub mod csrf;
pub mod delays;
pub mod factors;
pub mod guard;
pub mod journal;
pub mod ratelimit;
/// The request's current structure and its territory, for every service's pages.
pub mod scope;
pub mod secrets;
pub mod session;
pub mod totp;
