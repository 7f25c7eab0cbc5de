//! The order in which the territories' loop visits the territories.

use foundation::tenancy::DepartementCode;

/// The territories the territories' loop is to visit: the woken ones first, in the order of their
/// wake-ups, but one of the others after every [`WOKEN_IN_A_ROW`] woken ones; each territory
/// once.
#[derive(Default)]
pub(super) struct Visits {
    woken: std::collections::VecDeque<DepartementCode>,
    swept: std::collections::VecDeque<DepartementCode>,
    /// Woken territories visited since the last swept one.
    woken_in_a_row: usize,
}

/// How many woken territories may be visited in a row while swept ones wait.
const WOKEN_IN_A_ROW: usize = 4;

impl Visits {
    pub(super) fn wake(&mut self, d: DepartementCode) {
        if !self.woken.contains(&d) {
            self.woken.push_back(d);
        }
    }

    pub(super) fn sweep(&mut self, d: DepartementCode) {
        if !self.woken.contains(&d) && !self.swept.contains(&d) {
            self.swept.push_back(d);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.swept.is_empty()
    }

    /// The next territory to visit, taken out of both queues.
    pub(super) fn next(&mut self) -> Option<DepartementCode> {
        let swept_turn = self.woken.is_empty() || self.woken_in_a_row >= WOKEN_IN_A_ROW;
        let d = match self.swept.pop_front() {
            Some(d) if swept_turn => {
                self.woken_in_a_row = 0;
                d
            }
            other => {
                if let Some(d) = other {
                    self.swept.push_front(d);
                }
                let d = self.woken.pop_front()?;
                self.woken_in_a_row += 1;
                d
            }
        };
        self.swept.retain(|s| *s != d);
        self.woken.retain(|w| *w != d);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(code: &str) -> DepartementCode {
        DepartementCode::parse(code).expect("code")
    }

    #[test]
    fn woken_territories_are_visited_first_in_order_and_each_once() {
        let mut visits = Visits::default();
        for code in ["01", "02", "03"] {
            visits.sweep(d(code));
        }
        visits.wake(d("03"));
        visits.wake(d("05"));
        visits.wake(d("03"));
        visits.sweep(d("05"));
        visits.sweep(d("01"));
        let order: Vec<_> = std::iter::from_fn(|| visits.next()).collect();
        assert_eq!(order, [d("03"), d("05"), d("01"), d("02")]);
        assert!(visits.is_empty());
    }

    #[test]
    fn territories_woken_without_end_do_not_starve_the_swept_ones() {
        let mut visits = Visits::default();
        visits.sweep(d("01"));
        visits.sweep(d("02"));
        let mut order = Vec::new();
        for _ in 0..10 {
            // A territory woken again before each visit.
            visits.wake(d("75"));
            visits.wake(d("93"));
            order.extend(visits.next());
        }
        let swept: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, t)| [d("01"), d("02")].contains(t))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(swept, [4, 9], "{order:?}");
    }
}
