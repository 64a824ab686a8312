//! The `Buffered` window under load: an append of a [`Durability::Buffered`] record waits while
//! the log holds an unsynced `Buffered` record older than the append's `every`, so that what a
//! power cut can take back stays about one window old even when the disk falls behind.
//!
//! Without it, a `Buffered` commit is acknowledged once queued, and a queue of 64 MiB in front
//! of a disk that writes 150 MB/s (while flushes and compactions share it) held acknowledged
//! records for 300 ms and more before any sync could cover them (`waldb stress --report`,
//! 2 KiB values: the *Buffered window* p99 335 ms with `every` = 10 ms).
//!
//! - **Marks.** An appended `Buffered` record leaves a mark, its first LSN and its enqueue
//!   time, when the newest mark is more than `every / 8` older: at most eight marks per
//!   window, and at most [`MARKS_MAX`]. The oldest mark whose LSN is not durable is the age of
//!   the log's lag (within `every / 8`: the records between two marks are younger than the
//!   first).
//! - **Admission.** A `Buffered` append first drops the marks the durable LSN covers; while
//!   the oldest left is older than `every`, it asks for a sync up to it and waits for it
//!   ([`WalStats::window_waits`](super::WalStats::window_waits) counts the appends that did).
//!   No lock is held while it waits; the marks' lock is a leaf, held for a few instructions.
//! - **No new failure.** The wait ends as a `Sync` commit's does: durable, or the log's
//!   failure ([`Error::Poisoned`]), or [`Error::Closed`]. It blocks the calling thread, as a
//!   full queue does, also for an append made from async code.
//!
//! `Sync` and `None` appends never look at the marks: a `Sync` commit waits for its sync
//! anyway, and `None` promises nothing.

use std::collections::VecDeque;
use std::time::Duration;

use super::*;

/// The most marks kept: a backlog past them is still seen through the oldest.
pub(super) const MARKS_MAX: usize = 1024;

/// The marks of unsynced `Buffered` records: (first LSN, enqueue time), oldest first.
///
/// A plain `std` mutex, also under loom: a leaf lock, never held across anything that blocks
/// or yields, adds no interleaving a model needs.
#[derive(Default)]
pub(super) struct Marks(std::sync::Mutex<VecDeque<(u64, Duration)>>);

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Duration)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a `Buffered` record `first` enqueued at `at`.
    pub(super) fn note(&self, first: u64, at: Duration, every: Duration) {
        let mut marks = self.lock();
        let due = marks.back().is_none_or(|&(_, newest)| at.saturating_sub(newest) > every / 8);
        if due && marks.len() < MARKS_MAX {
            marks.push_back((first, at));
        }
    }

    /// The oldest mark above `durable` (those at or below it are dropped).
    pub(super) fn oldest_unsynced(&self, durable: u64) -> Option<(u64, Duration)> {
        let mut marks = self.lock();
        while marks.front().is_some_and(|&(lsn, _)| lsn <= durable) {
            marks.pop_front();
        }
        marks.front().copied()
    }
}

impl<D: Disk, C: Clock> Shared<D, C> {
    /// Waits while an unsynced `Buffered` record is older than `every` (see the module doc).
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log failed, [`Error::Closed`] if it closed meanwhile.
    pub(super) fn keep_window(&self, every: Duration) -> Result<()> {
        let mut counted = false;
        while let Some((lsn, at)) = self.marks.oldest_unsynced(self.durable.load(SeqCst)) {
            if self.clock.now().saturating_sub(at) <= every {
                return Ok(());
            }
            if !counted {
                counted = true;
                self.stats.window_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.sync_wanted.fetch_max(lsn, SeqCst);
            self.kick();
            self.wait_durable_impl(Lsn(lsn))?;
        }
        Ok(())
    }
}
