//! Whether leader/follower's hand-on of leadership is slow, so that its steps go to the
//! background thread for a while.
//!
//! Under leader/follower the committer that led a step unparks the next leader, whose records
//! are already queued. On a machine whose CPUs are busy with the committers that step
//! satisfied (large transactions: each does tens of µs of work before its next commit), that
//! wake-up waits for a CPU, and the disk idles meanwhile: on 2 cores, 50-put transactions at
//! 10 threads waited a median 45 µs from a publish to the next step against a 150 µs sync,
//! where the background thread, already running, starts the next step 6 µs after its publish.
//!
//! So the gap is measured: from a publish that left records queued to the start of the next
//! step a committer leads, as a moving average against the syncs' own (each with the write
//! of its batch, which goes to the disk in the same call). When it exceeds
//! [`GAP_PER_SYNC`] of a sync, the next [`HANDED_STEPS`] steps are the background thread's,
//! run back to back while records are queued, as for a crowd ([`super::Shared::crowded`]);
//! then committers lead again and the gap is measured afresh. With the CPUs idle (few
//! committers, small transactions) the gap stays a few µs and committers keep leading: one
//! fewer wake-up per commit.
//!
//! Only a choice of who steps: every choice is correct (the crowd's hand-over is the same
//! path), so plain relaxed atomics hold it. The simulator's clock does not move while code
//! runs, so there the gap is zero and nothing is handed over; under loom nothing is measured
//! (the callers skip it), so nothing is handed over either.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A hand-on gap above this fraction of a sync hands the steps over (1/5).
const GAP_PER_SYNC: (u64, u64) = (1, 5);

/// Steps handed to the background thread each time the gap is found slow.
const HANDED_STEPS: u64 = 64;

/// Weight of a new sample in the moving averages: 1/8.
const SHIFT: u32 = 3;

/// See the [module docs](self). Times in nanoseconds of the log's clock.
#[derive(Debug, Default)]
pub(super) struct HandOn {
    /// When the last step published with records queued behind it; 0 when none are.
    published_at: AtomicU64,
    /// Moving average of the gaps measured.
    gap: AtomicU64,
    /// Moving average of the syncs' latency.
    sync: AtomicU64,
    /// Steps still handed to the background thread.
    handed: AtomicU64,
}

/// Moves the moving average `avg` an eighth of the way to `sample`; returns the new average.
/// Also the yields' average (`yielding.rs`).
pub(super) fn average(avg: &AtomicU64, sample: u64) -> u64 {
    let old = avg.load(Relaxed);
    let new = old - (old >> SHIFT) + (sample >> SHIFT);
    avg.store(new, Relaxed);
    new
}

impl HandOn {
    /// A step published at `now`; `queued`: records were queued behind it.
    pub(super) fn published(&self, now: u64, queued: bool) {
        self.published_at.store(if queued { now.max(1) } else { 0 }, Relaxed);
    }

    /// A step synced in `ns` (the write of its batch included: one call to the disk).
    pub(super) fn synced(&self, ns: u64) {
        average(&self.sync, ns);
    }

    /// A committer starts leading at `now`: the gap since a publish with records queued
    /// behind it is measured.
    pub(super) fn leading(&self, now: u64) {
        let at = self.published_at.swap(0, Relaxed);
        if at > 0 {
            average(&self.gap, now.saturating_sub(at));
        }
    }

    /// A committer gives leadership up: hands the next steps over if the gap is slow. Returns
    /// whether it did so now.
    pub(super) fn judge(&self) -> bool {
        if self.handed.load(Relaxed) > 0 {
            return false;
        }
        let (gap, sync) = (self.gap.load(Relaxed), self.sync.load(Relaxed));
        let slow = sync > 0 && gap * GAP_PER_SYNC.1 > sync * GAP_PER_SYNC.0;
        if slow {
            self.handed.store(HANDED_STEPS, Relaxed);
        }
        slow
    }

    /// Whether the steps are the background thread's for now.
    pub(super) fn handed(&self) -> bool {
        self.handed.load(Relaxed) > 0
    }

    /// The background thread ran a step: one fewer handed. The last one restarts the
    /// measure, so that committers lead again until the gap is found slow anew.
    pub(super) fn stepped(&self) {
        let left = self.handed.load(Relaxed);
        if left == 0 {
            return;
        }
        self.handed.store(left - 1, Relaxed);
        if left == 1 {
            self.gap.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC: u64 = 150_000;

    /// Steps whose hand-on takes `gap` ns, each judged at its release.
    fn steps(h: &HandOn, gap: u64, n: usize) {
        for i in 0..n as u64 {
            let at = 1_000_000 * (i + 1);
            h.synced(SYNC);
            h.published(at, true);
            h.leading(at + gap);
            h.judge();
        }
    }

    #[test]
    fn a_slow_hand_on_hands_the_steps_over_and_a_quick_one_does_not() {
        let quick = HandOn::default();
        steps(&quick, 10_000, 200);
        assert!(!quick.handed(), "a gap of 1/15 of a sync keeps the committers leading");
        let slow = HandOn::default();
        steps(&slow, 45_000, 200);
        assert!(slow.handed(), "a gap of 3/10 of a sync hands the steps over");
    }

    #[test]
    fn a_publish_with_nothing_queued_measures_no_gap() {
        let h = HandOn::default();
        for i in 0..200u64 {
            h.synced(SYNC);
            // Idle between commits: nobody was waiting for the next step.
            h.published(1_000_000 * i, false);
            h.leading(1_000_000 * i + 900_000);
            h.judge();
        }
        assert!(!h.handed());
    }

    #[test]
    fn the_handed_steps_run_out_and_the_gap_is_measured_afresh() {
        let h = HandOn::default();
        steps(&h, 45_000, 200);
        assert!(h.handed());
        for _ in 0..HANDED_STEPS - 1 {
            h.stepped();
            assert!(h.handed());
        }
        h.stepped();
        assert!(!h.handed(), "committers lead again");
        // Still slow: a few steps of measuring, then handed again.
        steps(&h, 45_000, 2);
        assert!(!h.handed(), "one sample does not hand over again");
        steps(&h, 45_000, 40);
        assert!(h.handed());
        // Quick now: after the handed steps, committers keep leading.
        for _ in 0..HANDED_STEPS {
            h.stepped();
        }
        steps(&h, 5_000, 200);
        assert!(!h.handed());
    }
}
