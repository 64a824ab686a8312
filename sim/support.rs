//! What every campaign shares: the seed list and the trace printed on failure.

use std::collections::VecDeque;

/// The last events of a run, printed with the seed and a replay command when it fails.
pub struct Trace {
    test: &'static str,
    events: VecDeque<String>,
}

impl Trace {
    const EVENTS_MAX: usize = 40;

    /// A trace for the test named `test` (the filter of the replay command).
    pub fn new(test: &'static str) -> Self {
        Trace { test, events: VecDeque::new() }
    }

    pub fn push(&mut self, event: String) {
        if self.events.len() == Self::EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn fail(&self, seed: u64, what: &str) -> ! {
        let events: Vec<&str> = self.events.iter().map(String::as_str).collect();
        let message = format!(
            "simulation failed: seed {seed}: {what}\n  replay: WALDB_SIM_SEED={seed} cargo test --features sim \
             --test sim {}\n  last events:\n    {}",
            self.test,
            events.join("\n    ")
        );
        panic!("{message}");
    }
}

/// `WALDB_SIM_SEED=S` alone, else seeds `0..N` with `N` from the environment variable `var`
/// (default `default`).
pub fn seeds(var: &str, default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("WALDB_SIM_SEED") {
        return vec![s.trim().parse().expect("WALDB_SIM_SEED is a number")];
    }
    let n = std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default);
    (0..n).collect()
}

#[path = "../tests/common/block_on.rs"]
mod block_on;
pub use block_on::block_on;
