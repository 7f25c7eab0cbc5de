//! Territories a background worker (the outbox consumer, the journal sealer) could not serve at
//! its last visit — a lock a migration or a restore holds, a hung node — and when to try them
//! again: such a territory is left out of the worker's sweeps until then, so that it costs the
//! others one bounded wait per retry instead of one per pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::DepartementCode;

pub struct Failing {
    /// Until when each failing territory is left out, and how many visits in a row failed.
    territories: Mutex<HashMap<DepartementCode, (Instant, u32)>>,
    first: Duration,
    at_most: Duration,
}

impl Failing {
    /// Left out `first` after a first failure, twice as long after each next one, `at_most` at
    /// most.
    pub fn new(first: Duration, at_most: Duration) -> Self {
        Self {
            territories: Mutex::default(),
            first,
            at_most,
        }
    }

    fn territories(&self) -> std::sync::MutexGuard<'_, HashMap<DepartementCode, (Instant, u32)>> {
        self.territories.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `departement` failed and its retry is not due yet.
    pub fn set_aside(&self, departement: DepartementCode) -> bool {
        self.territories()
            .get(&departement)
            .is_some_and(|(until, _)| *until > Instant::now())
    }

    /// Whether the last visit of `departement` failed.
    pub fn is_failing(&self, departement: DepartementCode) -> bool {
        self.territories().contains_key(&departement)
    }

    /// A visit of `departement` failed: how long it is left out.
    pub fn failed(&self, departement: DepartementCode) -> Duration {
        let mut territories = self.territories();
        let failures = territories.get(&departement).map_or(0, |(_, n)| *n);
        let wait = (self.first * 2u32.saturating_pow(failures.min(16))).min(self.at_most);
        territories.insert(departement, (Instant::now() + wait, failures + 1));
        wait
    }

    /// A visit of `departement` succeeded: it is no longer failing.
    pub fn succeeded(&self, departement: DepartementCode) {
        self.territories().remove(&departement);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_territory_waits_twice_as_long_each_time_up_to_the_bound_and_a_success_forgets_it()
    {
        let failing = Failing::new(Duration::from_secs(15), Duration::from_secs(300));
        let d = DepartementCode::parse("33").expect("33");
        let other = DepartementCode::parse("34").expect("34");
        let waits: Vec<u64> = (0..7).map(|_| failing.failed(d).as_secs()).collect();
        assert_eq!(waits, [15, 30, 60, 120, 240, 300, 300]);
        assert!(failing.set_aside(d) && failing.is_failing(d));
        assert!(!failing.set_aside(other) && !failing.is_failing(other));
        failing.succeeded(d);
        assert!(!failing.set_aside(d) && !failing.is_failing(d));
        assert_eq!(failing.failed(d), Duration::from_secs(15));
    }
}
