//! What a [`Wal`](super::Wal) promises and how it batches: [`Durability`], [`BatchConfig`],
//! [`Driver`] and [`WalConfig`].

use std::time::Duration;

use crate::error::{Error, Result};
use crate::wal::WalOptions;

/// When an append is acknowledged, and so what a crash can take back.
///
/// | mode | the ticket resolves | after a crash or power loss |
/// | --- | --- | --- |
/// | `Sync` | after a sync covering the record (and every record before it) returned `Ok` | the record is in the recovered log |
/// | `Buffered { every }` | once the record is queued — after waiting, while the log is late (an unsynced `Buffered` record is older than `every`), for the sync that catches up | records acknowledged more than `every` (plus one flush) before the crash are in the recovered log, unless a write or sync failed (which poisons the log); later ones may be lost |
/// | `None` | once the record is queued | anything not covered by a later sync may be lost; the OS decides when data reaches the disk |
///
/// In every mode the recovered log is a prefix of the appended records in LSN order — no holes,
/// no reordering, never part of a record — and a `Sync` record is never acknowledged before
/// every earlier record, whatever its mode, is durable too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the covering sync. The default.
    #[default]
    Sync,
    /// Acknowledge once queued; sync at least every `every`.
    Buffered {
        /// The longest a record may wait, once written, for a sync.
        every: Duration,
    },
    /// Acknowledge once queued; never sync for this record (a later `Sync` record or
    /// [`Wal::sync`](super::Wal::sync) covers it).
    None,
}

/// How the flusher batches and how much may wait in the queue.
///
/// There is no flush interval: a flusher that finds work writes it at once, and records that
/// arrive while a sync is in flight ride the next one (natural group commit). `linger` is the
/// only timer, and it is off except in [`BatchConfig::throughput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// The most encoded bytes one flush writes (at least one record is always taken).
    pub batch_bytes_max: u64,
    /// The most records one flush writes.
    pub batch_records_max: u32,
    /// How long a flusher that found fewer than `batch_records_max` records waits for more
    /// before writing. Zero (the default) never delays a commit.
    pub linger: Duration,
    /// How long the background thread, once it has written records nobody waits for
    /// (`Buffered` and `None`), waits for more of them before it writes again, so that a
    /// stream of them is written in batches rather than one wake-up and one write each. Such
    /// a record reaches the OS at most this much later (plus the OS's timer slack); no commit
    /// waits for it, and a `Sync` commit or a [`Wal::sync`](super::Wal::sync) meanwhile writes
    /// it at once, as does the append of a `Buffered` record whose window is no longer than
    /// this. Zero writes each at once. Only the leader/follower driver waits.
    pub write_behind: Duration,
    /// The most records that may wait in the queue; an append beyond it waits (back-pressure).
    pub queue_records_max: u32,
    /// The most encoded bytes that may wait in the queue; an append beyond it waits.
    pub queue_bytes_max: u64,
}

with_setters!(BatchConfig {
    with_batch_bytes_max: batch_bytes_max: u64;
    with_batch_records_max: batch_records_max: u32;
    with_linger: linger: Duration;
    with_write_behind: write_behind: Duration;
    with_queue_records_max: queue_records_max: u32;
    with_queue_bytes_max: queue_bytes_max: u64;
});

/// The largest `queue_records_max` (the queue's counter packs records and bytes in 64 bits).
pub const QUEUE_RECORDS_LIMIT: u32 = (1 << 23) - 1;
/// The largest `queue_bytes_max`.
pub const QUEUE_BYTES_LIMIT: u64 = (1 << 40) - 1;

impl BatchConfig {
    /// Small batches and a small queue: the lowest latency per commit, and records nobody waits
    /// for are written at once.
    pub fn latency() -> Self {
        BatchConfig {
            batch_bytes_max: 256 << 10,
            batch_records_max: 256,
            linger: Duration::ZERO,
            write_behind: Duration::ZERO,
            queue_records_max: 4096,
            queue_bytes_max: 16 << 20,
        }
    }

    /// Large batches, a large queue and a 200 µs linger: the most records per sync, at the cost of
    /// up to 200 µs per commit. Records nobody waits for are written up to 200 µs late.
    pub fn throughput() -> Self {
        BatchConfig {
            batch_bytes_max: 16 << 20,
            batch_records_max: 65_536,
            linger: Duration::from_micros(200),
            write_behind: Duration::from_micros(200),
            queue_records_max: 1 << 20,
            queue_bytes_max: 256 << 20,
        }
    }

    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.batch_bytes_max == 0 || self.batch_records_max == 0 {
            return bad("batch_bytes_max and batch_records_max must be positive".into());
        }
        if self.queue_records_max == 0 || self.queue_records_max > QUEUE_RECORDS_LIMIT {
            return bad(format!("queue_records_max must be in 1..={QUEUE_RECORDS_LIMIT}"));
        }
        if self.queue_bytes_max == 0 || self.queue_bytes_max > QUEUE_BYTES_LIMIT {
            return bad(format!("queue_bytes_max must be in 1..={QUEUE_BYTES_LIMIT}"));
        }
        if self.linger > Duration::from_secs(1) {
            return bad("linger above one second is a configuration error".into());
        }
        if self.write_behind > Duration::from_secs(1) {
            return bad("write_behind above one second is a configuration error".into());
        }
        Ok(())
    }
}

impl Default for BatchConfig {
    /// Balanced: no linger, batches of up to 4 MiB or 4096 records, a queue of up to 64 MiB or
    /// 65,536 records, records nobody waits for written up to 100 µs late.
    fn default() -> Self {
        BatchConfig {
            batch_bytes_max: 4 << 20,
            batch_records_max: 4096,
            linger: Duration::ZERO,
            write_behind: Duration::from_micros(100),
            queue_records_max: 65_536,
            queue_bytes_max: 64 << 20,
        }
    }
}

/// Who runs the flusher step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// A committer that waits (blocking) for a sync and finds no flush in flight runs the
    /// flusher step itself; later arrivals wait for the next one. A background thread serves
    /// async waiters, `Buffered` deadlines and `None` records. The default: it saves the
    /// wake-up of a hand-off per commit. While a crowd of committers is parked (8 per CPU),
    /// the background thread runs the steps back to back, as under [`Driver::Thread`]: the
    /// next leader's wake-up would otherwise wait for a CPU behind the committers each step
    /// satisfied ([`WalStats::crowd_handovers`](super::WalStats::crowd_handovers) counts them).
    /// It does so too while committers come in groups — more than 1.5 `Sync` appends per
    /// synced step, a moving average — so that the committers a step satisfied, woken before
    /// the next step starts, ride that step rather than the one after
    /// ([`WalStats::group_handovers`](super::WalStats::group_handovers)); a lone committer
    /// keeps leading its own steps. And it does so, 64 steps at a time, while the wake-ups of
    /// next leaders are measured to take more than a fifth of a sync (the committers' CPUs
    /// busy with large transactions). Its steps' wake-ups yield the thread's CPU to each
    /// committer woken, so that the group commits again before the next write, unless the
    /// yields are found slow ([`WalStats::slow_yields`](super::WalStats::slow_yields)).
    #[default]
    LeaderFollower,
    /// A dedicated background thread runs every flusher step; committers only wait. Its
    /// wake-ups yield as under [`Driver::LeaderFollower`].
    Thread,
    /// No thread at all: the caller runs [`Wal::flush_step`](super::Wal::flush_step) (and
    /// [`Wal::prepare_step`](super::Wal::prepare_step)), e.g. a simulator or an async task. A
    /// blocking [`Ticket::wait`](super::Ticket::wait) runs steps itself.
    Manual,
}

/// Everything a [`Wal`](super::Wal) is opened with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalConfig {
    /// Segment size, record limit and recovery mode of the log files.
    pub log: WalOptions,
    /// Batching and queue limits.
    pub batch: BatchConfig,
    /// The durability of [`Wal::append`](super::Wal::append) (each append may choose another).
    pub durability: Durability,
    /// Who runs the flusher step.
    pub driver: Driver,
    /// If the background thread dies (a panic outside the flusher step), committers write and
    /// sync inline instead of failing ("graceful degradation to sync mode"). A panic inside the
    /// step poisons the log either way: its in-memory state is unknown.
    pub degrade_on_thread_death: bool,
    /// Prepare the next segment on a background thread ahead of need (default `true`); off,
    /// rotation creates it inline, on the commit path.
    pub prepare_ahead: PrepareAhead,
}

with_setters!(WalConfig {
    with_log: log: WalOptions;
    with_batch: batch: BatchConfig;
    with_durability: durability: Durability;
    with_driver: driver: Driver;
    with_degrade_on_thread_death: degrade_on_thread_death: bool;
    with_prepare_ahead: prepare_ahead: PrepareAhead;
});

/// Whether the next segment is prepared ahead of need (see [`WalConfig::prepare_ahead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PrepareAhead {
    /// On a background thread (or by [`Wal::prepare_step`](super::Wal::prepare_step) with
    /// [`Driver::Manual`]). The default.
    #[default]
    Background,
    /// Inline, when rotation needs it.
    Inline,
}

impl WalConfig {
    /// Checks every part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        self.log.validate()?;
        self.batch.validate()?;
        let record = crate::wal::encode::record_bytes(self.log.record_payload_bytes_max() as usize) as u64;
        if record > self.batch.queue_bytes_max {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "queue_bytes_max ({}) must hold one record of the maximum size ({record} bytes)",
                    self.batch.queue_bytes_max
                ),
            });
        }
        if let Durability::Buffered { every } = self.durability
            && every.is_zero()
        {
            return Err(Error::InvalidConfig { reason: "Buffered { every } must be positive".into() });
        }
        Ok(())
    }
}
