//! Whether the background thread yields its CPU to each committer it wakes.
//!
//! When the background thread's sync satisfies a group of committers, it unparks them and then
//! writes whatever is queued. On a machine with fewer free CPUs than woken committers, the
//! thread keeps its CPU through its wake-ups (the scheduler lets a running thread finish its
//! slice), the woken wait for a CPU, and the next write starts before most of them have
//! committed again: they wait out a whole extra sync. So the thread yields (`sched_yield`)
//! after each unpark: the committer just woken runs on the thread's CPU at once, commits again
//! and parks, and the next write takes the whole group. On 2 cores, 1-put `Sync` transactions:
//! 1.31× the commits/s at 4 committers and 1.08× at 16 in an A/B, batches of 4 of 4 and 16 of
//! 16 (`docs/bench/2core-ab.md`). Only while fewer than a crowd of committers are left parked
//! ([`super::Shared::few_parked`]): with more, the CPUs are busy with committers anyway.
//!
//! A yield gives the CPU to any thread that is runnable there, not only to the committer just
//! woken: beside other CPU-bound work a yield lasts the other thread's time slice
//! (milliseconds), and yielding after every wake-up made commits 20× slower. So each yield is
//! timed on the log's clock, as a moving average (`handon`'s: an eighth per yield, each sample
//! counted at most [`SAMPLE_MAX_NS`], so that one outlier does not decide): above [`SLOW_NS`]
//! — well above a committer's way back to its next commit, far below a time slice — the CPU
//! goes to other work, and the yields stop for [`OFF_STEPS`] steps, after which they are tried
//! afresh. An occasional slow yield on a quiet machine (the kernel's own threads run there too)
//! is absorbed; beside two busy loops the yields stop within three.
//!
//! Only a choice of how the thread spends its CPU: every choice is correct, so plain relaxed
//! atomics hold it. The simulator's clock does not move while code runs, so there no yield is
//! ever slow; under loom the thread does not yield (the callers skip it).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The average yield (ns) above which the CPU goes to work other than the woken committers'.
pub(super) const SLOW_NS: u64 = 50_000;

/// The most one yield counts for in the average (ns).
pub(super) const SAMPLE_MAX_NS: u64 = 4 * SLOW_NS;

/// Steps without yields once they are found slow.
pub(super) const OFF_STEPS: u64 = 1024;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct Yielding {
    /// Moving average of the yields' durations, ns.
    average: AtomicU64,
    /// Steps still to run without yields.
    off: AtomicU64,
}

impl Yielding {
    /// Whether the thread yields after its wake-ups now.
    pub(super) fn on(&self) -> bool {
        self.off.load(Relaxed) == 0
    }

    /// A yield took `ns`. Returns whether the thread goes on yielding: `false` once the
    /// average is slow, which turns the yields off for [`OFF_STEPS`] steps and restarts it.
    pub(super) fn yielded(&self, ns: u64) -> bool {
        if super::handon::average(&self.average, ns.min(SAMPLE_MAX_NS)) > SLOW_NS {
            self.average.store(0, Relaxed);
            self.off.store(OFF_STEPS, Relaxed);
            return false;
        }
        true
    }

    /// The background thread ran a step: one fewer without yields.
    pub(super) fn stepped(&self) {
        let left = self.off.load(Relaxed);
        if left > 0 {
            self.off.store(left - 1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_yields_stop_the_yields_for_a_while() {
        let y = Yielding::default();
        assert!(y.on());
        for _ in 0..100 {
            assert!(y.yielded(10_000), "a committer's way back keeps the yields on");
        }
        assert!(y.yielded(5_000_000), "one outlier is absorbed");
        for _ in 0..20 {
            assert!(y.yielded(10_000));
        }
        // Beside a busy loop every yield lasts a time slice: off within three.
        let slow = (0..3).take_while(|_| y.yielded(3_000_000)).count();
        assert!(slow < 3, "{slow} slow yields went on");
        assert!(!y.on());
        for _ in 0..OFF_STEPS - 1 {
            y.stepped();
            assert!(!y.on());
        }
        y.stepped();
        assert!(y.on(), "after OFF_STEPS steps the yields are tried afresh");
        assert!(y.yielded(3_000_000), "with the average restarted");
        y.stepped();
        assert!(y.on(), "steps while on change nothing");
    }
}
