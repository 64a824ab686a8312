//! [`SimClock`]: a virtual clock for simulation. It moves only through [`SimClock::advance`] or
//! [`Clock::sleep`], which advances it by the requested duration without blocking.

use super::Clock;
use crate::sync::{Arc, AtomicU64, Ordering};
use std::time::Duration;

/// A virtual monotonic clock. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    nanos: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `duration` (saturating at about 584 years).
    pub fn advance(&self, duration: Duration) {
        let add = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self.nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_add(add)));
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn moves_only_when_advanced() {
        let c = SimClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        c.advance(Duration::from_millis(5));
        let shared = c.clone();
        shared.sleep(Duration::from_millis(1));
        assert_eq!(c.now(), Duration::from_millis(6));
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Duration::from_nanos(u64::MAX));
    }
}
