//! Counters of a [`Wal`](super::Wal), kept with relaxed atomics and read as one
//! [`WalStats`] snapshot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::Error;
use crate::types::Lsn;

/// Sub-buckets per power of two in a [`Histogram`]: values are kept to within 1/8 (12.5 %).
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUBS;

/// A log-linear histogram of `u64` values with relaxed atomic buckets: each power of two is split
/// into eight, so a quantile is reported to within 12.5 %, above the true value.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn bucket(value: u64) -> usize {
        if value < SUBS as u64 {
            return usize::try_from(value).expect("small");
        }
        let exp = 63 - value.leading_zeros(); // ≥ SUB_BITS
        let sub = (value >> (exp - SUB_BITS)) & (SUBS as u64 - 1);
        (exp - SUB_BITS + 1) as usize * SUBS + usize::try_from(sub).expect("small")
    }

    /// The largest value that falls into bucket `index`.
    fn upper(index: usize) -> u64 {
        if index < SUBS {
            return index as u64;
        }
        let exp = u32::try_from(index / SUBS).expect("fewer than 2^32 buckets") + SUB_BITS - 1;
        let sub = (index % SUBS) as u64;
        let low = (1u64 << exp) | (sub << (exp - SUB_BITS));
        low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
    }

    pub(crate) fn record(&self, value: u64) {
        self.buckets[Self::bucket(value)].fetch_add(1, Relaxed);
        self.max.fetch_max(value, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub(crate) fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max = self.max.load(Relaxed);
        let quantile = |q: f64| {
            if count == 0 {
                return 0;
            }
            // The rank of the q-quantile, 1-based: ceil(q · count).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::upper(i).min(max);
                }
            }
            max
        };
        Summary { count, p50: quantile(0.50), p99: quantile(0.99), max }
    }

    /// Counts per power of two: entry `i` counts values in `[2^i, 2^(i+1))`, entry 0 also
    /// counts zero.
    pub(crate) fn powers_of_two(&self) -> Vec<u64> {
        let mut out = vec![0u64; 64];
        for (i, b) in self.buckets.iter().enumerate() {
            let c = b.load(Relaxed);
            if c > 0 {
                let low = if i < SUBS { i as u64 } else { Self::upper(i) };
                out[(63 - low.max(1).leading_zeros()) as usize] += c;
            }
        }
        while out.len() > 1 && out.last() == Some(&0) {
            out.pop();
        }
        out
    }
}

/// Count, median, 99th percentile and maximum of a series (quantiles to within 12.5 %, rounded
/// up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// How many values.
    pub count: u64,
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest value.
    pub max: u64,
}

/// The live counters.
pub(crate) struct Counters {
    pub(crate) appends: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) rotations_inline: AtomicU64,
    pub(crate) segments_prepared: AtomicU64,
    pub(crate) segments_recycled: AtomicU64,
    pub(crate) prepare_failures: AtomicU64,
    pub(crate) backpressure_waits: AtomicU64,
    pub(crate) window_waits: AtomicU64,
    pub(crate) crowd_handovers: AtomicU64,
    pub(crate) group_handovers: AtomicU64,
    pub(crate) slow_handons: AtomicU64,
    pub(crate) slow_yields: AtomicU64,
    pub(crate) batch_records: Histogram,
    /// Nanoseconds.
    pub(crate) write_latency: Histogram,
    /// Nanoseconds.
    pub(crate) sync_latency: Histogram,
    /// Nanoseconds.
    pub(crate) buffered_window: Histogram,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            appends: AtomicU64::new(0),
            records: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            rotations_inline: AtomicU64::new(0),
            segments_prepared: AtomicU64::new(0),
            segments_recycled: AtomicU64::new(0),
            prepare_failures: AtomicU64::new(0),
            backpressure_waits: AtomicU64::new(0),
            window_waits: AtomicU64::new(0),
            crowd_handovers: AtomicU64::new(0),
            group_handovers: AtomicU64::new(0),
            slow_handons: AtomicU64::new(0),
            slow_yields: AtomicU64::new(0),
            batch_records: Histogram::new(),
            write_latency: Histogram::new(),
            sync_latency: Histogram::new(),
            buffered_window: Histogram::new(),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn note_error(&self, e: &Error) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
    }
}

/// Nanoseconds in `d`, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A snapshot of a [`Wal`](super::Wal)'s counters. Counters are read one by one with relaxed
/// loads: under load, two of them may be a few operations apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// Records waiting in the queue (reserved and not yet written).
    pub queue_records: u64,
    /// Encoded bytes waiting in the queue.
    pub queue_bytes: u64,
    /// Append calls accepted (a batch append counts once).
    pub appends: u64,
    /// Records accepted.
    pub records: u64,
    /// Flusher steps that wrote something.
    pub flushes: u64,
    /// Syncs of the log file.
    pub syncs: u64,
    /// Records per flush.
    pub batch_records: Summary,
    /// Records per flush, counted per power of two: entry `i` counts flushes of `2^i` to
    /// `2^(i+1) − 1` records.
    pub batch_histogram: Vec<u64>,
    /// Time of one write that was not also a sync, in nanoseconds.
    pub write_latency_ns: Summary,
    /// Time of one sync, in nanoseconds: with the write of the batch it makes durable, which
    /// goes to the disk in the same call ([`DiskFile::write_pages_synced_at`]).
    ///
    /// [`DiskFile::write_pages_synced_at`]: crate::DiskFile::write_pages_synced_at
    pub sync_latency_ns: Summary,
    /// The durability window of `Buffered` commits, in nanoseconds: for each sync that made
    /// `Buffered` records durable, the time from the enqueue of the oldest of them to the end
    /// of that sync — how old an acknowledged `Buffered` commit a power cut could take at
    /// most. `max` should stay within `every` plus one sync's latency (and a flusher step's
    /// wait for the CPU) whatever else the process does: flushes, compactions, segment
    /// preparation. A record a rotation made durable first is counted until the next sync
    /// (over, never under).
    pub buffered_window_ns: Summary,
    /// Encoded record bytes handed to the OS (headers included; segment headers not).
    pub bytes_written: u64,
    /// Segments started by rotation.
    pub rotations: u64,
    /// Rotations that had to create their segment inline (none was prepared in time).
    pub rotations_inline: u64,
    /// Segments prepared ahead of need.
    pub segments_prepared: u64,
    /// Of [`WalStats::segments_prepared`], those made from a recycled file (one the log no
    /// longer needed) rather than written full of zeros.
    pub segments_recycled: u64,
    /// Ahead-of-need preparations that failed (rotation retries inline).
    pub prepare_failures: u64,
    /// Appends that had to wait for queue space.
    pub backpressure_waits: u64,
    /// `Buffered` appends that waited for the log to catch up with its window: an unsynced
    /// `Buffered` record was older than their `every` (the disk fell behind).
    pub window_waits: u64,
    /// Hand-overs of a step to the background thread because a crowd of committers was parked
    /// (8 per CPU), or because handing leadership on had been found slow and a committer was
    /// parked: a release of leadership (a committer's, or the background thread's own) that
    /// woke no next leader, or a waiting committer that found no step running and did not
    /// lead — see [`Driver::LeaderFollower`](super::Driver::LeaderFollower).
    pub crowd_handovers: u64,
    /// The same hand-overs because committers came in groups (more than 1.5 `Sync` appends
    /// per synced step, a moving average), when no crowd was parked — see
    /// [`Driver::LeaderFollower`](super::Driver::LeaderFollower).
    pub group_handovers: u64,
    /// Times handing leadership on was found slow against the syncs, each handing the next 64
    /// steps to the background thread — see
    /// [`Driver::LeaderFollower`](super::Driver::LeaderFollower).
    pub slow_handons: u64,
    /// Times the background thread's yields to the committers it woke were found slow (a
    /// moving average of their durations above 50 µs: the CPU went to other work), each
    /// stopping the yields for the next 1024 steps — see
    /// [`Driver::LeaderFollower`](super::Driver::LeaderFollower).
    pub slow_yields: u64,
    /// The last LSN known durable.
    pub durable_lsn: Lsn,
    /// The last LSN handed to the OS.
    pub written_lsn: Lsn,
    /// False once the log is poisoned.
    pub healthy: bool,
    /// True once the background thread died and committers flush inline
    /// ([`WalConfig::degrade_on_thread_death`](super::WalConfig::degrade_on_thread_death)).
    pub degraded: bool,
    /// The last error seen (a failed preparation or the poison cause), as text.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 3, u64::MAX]) {
            let b = Histogram::bucket(v);
            assert!(b >= last || v < 5000, "bucket order at {v}");
            assert!(Histogram::upper(b) >= v, "upper({b}) < {v}");
            let low_of_next = Histogram::upper(b.saturating_sub(1));
            assert!(b == 0 || low_of_next < v, "{v} should be past bucket {}", b - 1);
            // Within 12.5 %.
            assert!(Histogram::upper(b) - v <= v / 8 + 1, "{v} → {}", Histogram::upper(b));
            last = b;
        }
    }

    #[test]
    fn quantiles_of_a_known_series() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, 1000);
        assert!((500..=563).contains(&s.p50), "{s:?}");
        assert!((990..=1000).contains(&s.p99), "{s:?}");
        let p2 = h.powers_of_two();
        assert_eq!(p2[0], 1);
        assert_eq!(p2[1], 2);
        assert_eq!(p2[9], 1000 - 511);
        assert_eq!(p2.iter().sum::<u64>(), 1000);
    }

    #[test]
    fn empty_histogram_is_zero() {
        assert_eq!(Histogram::new().summary(), Summary::default());
    }
}
