//! The `Clock` seam: every reading of time and every timed wait in waldb goes through [`Clock`].
//!
//! [`SystemClock`] reads the monotonic clock of the operating system; [`SimClock`] is a virtual
//! clock that moves only when a simulation driver (or a sleeper) advances it, so a simulated hour
//! costs no wall time and a run is reproducible.
//!
//! Time is a [`Duration`] since the clock's own epoch (its creation), monotonic: never
//! decreasing. It says nothing about the calendar.

mod sim;
#[path = "std.rs"]
mod std_clock;

pub use sim::SimClock;
pub use std_clock::SystemClock;

use std::time::Duration;

/// A monotonic clock and the ability to wait on it.
pub trait Clock: Send + Sync + 'static {
    /// Time since this clock's epoch. Never decreases.
    fn now(&self) -> Duration;

    /// Waits until `now()` has advanced by at least `duration`. A virtual clock advances itself
    /// instead of blocking.
    fn sleep(&self, duration: Duration);
}
