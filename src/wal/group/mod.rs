//! Group commit: many committers, one log writer, nothing acknowledged before it is durable.
//!
//! ```text
//!  append ──reserve (records, bytes)──▶ LSN = fetch_add ──▶ queue, one push ──▶ Ticket
//!     ▲  waits while the queue is full                              │
//!     │                                       flusher step: drain the contiguous LSN prefix,
//!  Ticket::wait / .await ◀── wake ◀── publish ◀── encode into one buffer, one write, one sync
//! ```
//!
//! [`Wal`] sits on a [`LogWriter`]. Appends take no lock but the queue's, held for one push:
//! each reserves room in the bounded queue (waiting while it is full: back-pressure), takes its
//! LSNs from an atomic counter and pushes (see `queue.rs`). The **flusher step** — one function
//! over [`Disk`] + [`Clock`] — drains what is queued in LSN order (a committer between taking
//! its LSN and pushing leaves a gap that the step waits for), encodes it into the writer's
//! buffer, writes it once, syncs once if any record needs it, publishes the durable LSN and
//! wakes the waiters. Who runs the step is the [`Driver`]'s choice:
//!
//! - [`Driver::LeaderFollower`] (default): a committer that waits for a sync and finds no flush
//!   in flight runs the step itself; commits that arrive meanwhile ride the next step, run by one
//!   of them. A background thread serves async waiters, `Buffered` deadlines and `None` records,
//!   and takes the steps over while a crowd of committers (8 per CPU) is parked: a leader then
//!   wakes no next leader, whose wake-up would wait for a CPU behind the committers the step
//!   satisfied (`Shared::crowded`; 1.30× the commits/s at 64 committers on 2 cores). It takes
//!   them over too while committers come in groups (more than 1.5 `Sync` appends per synced
//!   step, a moving average: `Shared::grouped`): the thread wakes the group a step satisfied,
//!   all at once when it is small, and its next step takes those who committed again
//!   meanwhile, where a committer leading at once would write alone and leave the rest of the
//!   group to wait out its sync (on 2 cores, 1.21–1.23× the commits/s at 4 committers and
//!   1.17–1.27× at 16 in two A/Bs; a lone committer keeps leading its own steps). And it
//!   takes them over for 64 steps at a time when the next leaders' wake-ups are measured slow
//!   against the syncs (more than a fifth of one: `handon.rs`; 50-put transactions at 10
//!   threads on 2 cores, 1.08–1.21× the commits/s in three A/Bs).
//! - [`Driver::Thread`]: a dedicated thread runs every step.
//! - [`Driver::Manual`]: nobody; a simulator or an async task calls [`Wal::flush_step`].
//!
//! The background thread yields its CPU (`sched_yield`) after each committer of a small group
//! it unparks, while fewer than a crowd are left parked, so that the committer runs at once on
//! that CPU, commits again and is in the thread's next write — where the thread, keeping its
//! CPU through its wake-ups, wrote before most of the group was back and left the rest to wait
//! out a whole sync (on 2 cores, 1-put transactions: 1.31× the commits/s at 4 committers and
//! 1.08× at 16 in an A/B, 1.35× and 1.22× in `waldb bench`, every batch the whole group; the
//! same at 64). A yield hands the CPU to any runnable thread, so the yields are timed, and stop
//! for a while when they are found slow: beside CPU-bound work they would give it whole time
//! slices (`yielding.rs`).
//!
//! A blocking waiter parks on its own, under its LSN: a publish unparks only the waiters it
//! makes durable, and a leader that is done unparks the first waiter left to lead the next
//! step — before the waiters it satisfied, so that the next write starts at once. One wake-up
//! per commit, no herd on a shared condition variable (at 64 committers on 2 cores, the herd
//! cost a fifth of the throughput: 130k against 156k–162k commits/s). A group of at most 16
//! satisfied waiters is unparked all at once by whoever publishes (the woken run on the other
//! CPUs while the system calls go on, and commit again in time for the next step); a larger
//! one wakes in a tree: the leader unparks two of them, and each of those two more before it
//! returns, so a group of N costs the leader two system calls, not N (on 16 cores at 128
//! committers, a dedicated leader went from 352k–406k to 460k–479k commits/s).
//!
//! No timer delays a waiting commit ([`BatchConfig::linger`] is off unless chosen). Records
//! nobody waits for (`Buffered`, `None`) are written behind: under the leader/follower driver the
//! background thread, having written some, waits [`BatchConfig::write_behind`] (100 µs by
//! default) for more before it writes again, and their appends do not wake it meanwhile — one
//! wake-up and one write per batch instead of per record (1-thread `None` commits on 2 cores:
//! 1.5× the commits/s). A commit that waits, a sync, close and a failure end the wait; records
//! left queued when a write's batch is full are written after the wait with no further append
//! to wake the thread (a `Buffered` one past its window is synced as soon as it is written).
//! The next
//! segment is prepared — created, zero-filled, synced, its directory entry synced — by a
//! background thread ahead of need, so a commit never waits for a file creation.
//!
//! ## Guarantees
//!
//! - **Durable before acknowledged.** A [`Durability::Sync`] ticket resolves `Ok` only after a
//!   sync covering its record and every earlier record returned `Ok`.
//! - **LSN order.** Records reach the file in LSN order; the recovered log is a prefix.
//! - **Bounded.** At most [`BatchConfig::queue_records_max`] records and
//!   [`BatchConfig::queue_bytes_max`] encoded bytes wait in the queue; one step writes at most
//!   one batch.
//! - **Fail-stop.** A failed write, sync or rotation — disk full included — poisons the log:
//!   every waiter whose record is not durable and every later append gets [`Error::Poisoned`]
//!   carrying the first cause; a failed sync is never retried; nothing is acknowledged after the
//!   failure. Disk full poisons too (the safe choice: the failed write may have landed in part);
//!   once space is freed, reopening recovers and writing resumes.
//! - **No hang.** A panic inside the step poisons the log with [`Error::FlusherPanicked`]; a
//!   panic of the background thread elsewhere does the same, or, with
//!   [`WalConfig::degrade_on_thread_death`], hands the flushing to the committers, which then
//!   write and sync inline. [`Wal::close`] drains, syncs and stops the threads; dropping a `Wal`
//!   does the same, best effort.
//!
//! The proofs: `tests/loom.rs` (the handshake under every interleaving, bounded),
//! `sim/group_crash.rs` (a crash at every flusher step), `tests/wal_group.rs` (modes, faults,
//! panics, back-pressure, close, rotation).

mod config;
mod handon;
mod queue;
mod stats;
mod ticket;
mod yielding;

pub use config::{
    BatchConfig, Driver, Durability, PrepareAhead, QUEUE_BYTES_LIMIT, QUEUE_RECORDS_LIMIT, WalConfig,
};
pub use stats::{Summary, WalStats};
pub use ticket::Ticket;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use self::queue::{BufferPool, Queue};
use self::stats::{Counters, nanos};
use self::ticket::Durable;
use super::encode::record_bytes;
use super::payload::RecordKind;
use super::recovery::RecoveryReport;
use super::segment::prepare_segment;
use super::writer::LogWriter;
use crate::clock::{Clock, SystemClock};
use crate::disk::{Disk, StdDisk};
use crate::error::{Error, Result};
use crate::sync::{
    AtomicBool, AtomicU64, Condvar, Mutex, Ordering::SeqCst, lock, thread, wait, wait_timeout,
};
use crate::types::{Lsn, SegmentId};

/// A sync slower than this is logged (`warn`): on a healthy disk one takes well under a
/// millisecond to a few.
const SLOW_SYNC_NS: u64 = 200_000_000;

/// Satisfied waiters each waker unparks (see `State::woken`): a group of N wakes in about
/// log2(N) rounds of system calls made on many cores, not N made by the leader alone.
#[cfg(not(loom))]
const WAKE_FANOUT: usize = 2;
/// One under loom, so that the models' three committers already need the tree: the leader
/// wakes one satisfied waiter, which must wake the other.
#[cfg(loom)]
const WAKE_FANOUT: usize = 1;

/// Satisfied waiters that whoever takes them unparks all at once rather than in a tree (see
/// `Shared::take_woken`): the waker's system calls overlap the first woken committers' next
/// commits on the other CPUs, which then join the very next step instead of waiting out a
/// whole sync. On 2 cores, with the background thread stepping, 4 and 16 committers did 1.3×
/// and 1.16× the commits/s of the tree (two runs each); at 64 committers (groups of ~31)
/// unparking every one before the next step did 0.87× of the tree
/// (`docs/bench/2core-ab.md`). Untried on many cores, where the tree was measured for groups
/// of ~100. Under loom, none: the models keep the tree.
#[cfg(not(loom))]
const WAKE_FLAT_MAX: usize = 16;
#[cfg(loom)]
const WAKE_FLAT_MAX: usize = 0;

/// [`State::group_x16`] above which committers come in groups ([`Shared::grouped`]): more
/// than 1.5 `Sync` appends per synced step. A lone committer's steps sync one; two committers
/// taking turns, one or two.
#[cfg(not(loom))]
const GROUP_X16: u32 = 24;
/// Under loom, 2: one step that syncs two appends, or two steps of one, make a group, so that
/// the models' few steps cover the committers' hand-over to the thread.
#[cfg(loom)]
const GROUP_X16: u32 = 2;

/// Parked committers per CPU from which leader/follower hands its steps to the background
/// thread (see [`Shared::crowded`]).
#[cfg_attr(loom, allow(dead_code))]
const CROWD_PER_CPU: usize = 8;

/// The crowd (see [`Shared::crowded`]) on this machine: [`CROWD_PER_CPU`] per CPU. Under
/// loom, one, so that a model of two committers covers the hand-over
/// (`leader_follower_driver_hands_a_crowd_to_its_thread` in `tests/loom.rs`).
fn crowd() -> usize {
    #[cfg(loom)]
    return 1;
    #[cfg(not(loom))]
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).saturating_mul(CROWD_PER_CPU)
}

/// Records to append together with one ticket, their bytes in one buffer (no allocation per
/// record). See [`Wal::append_batch`].
#[derive(Clone, Debug, Default)]
pub struct WalBatch {
    data: Vec<u8>,
    /// (kind, end offset in `data`) per record.
    records: Vec<(RecordKind, usize)>,
    encoded: u64,
}

impl WalBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record.
    pub fn push(&mut self, kind: RecordKind, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.records.push((kind, self.data.len()));
        self.encoded += record_bytes(payload.len()) as u64;
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Removes every record, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.encoded = 0;
    }

    /// The records' size once encoded, headers included.
    pub fn encoded_bytes(&self) -> u64 {
        self.encoded
    }

    fn iter(&self) -> impl Iterator<Item = (RecordKind, &[u8])> {
        let mut start = 0;
        self.records.iter().map(move |&(kind, end)| {
            let payload = &self.data[start..end];
            start = end;
            (kind, payload)
        })
    }
}

/// One append waiting in the queue.
struct Entry {
    /// The LSN of its first record.
    first: u64,
    records: u32,
    /// Encoded bytes, as reserved.
    bytes: u64,
    durability: Durability,
    /// `clock.now()` at the append, for `Buffered` deadlines.
    enqueued_at: Duration,
    body: Body,
}

enum Body {
    One(RecordKind, Vec<u8>),
    Many(WalBatch),
}

/// The queue's reservation counter packs the closed flag (bit 63), records (bits 40–62) and
/// bytes (bits 0–39). One atomic, so that `close` and a reservation are ordered by their
/// read-modify-writes alone: either the reservation sees the flag, or `close` sees (and
/// drains) the reservation.
const BYTES_BITS: u32 = 40;
const CLOSED: u64 = 1 << 63;

fn pack(records: u64, bytes: u64) -> u64 {
    (records << BYTES_BITS) | bytes
}

fn unpack(packed: u64) -> (u64, u64) {
    ((packed & !CLOSED) >> BYTES_BITS, packed & ((1 << BYTES_BITS) - 1))
}

/// What the flusher owns: the writer and the entries drained but not yet written.
struct Flusher<D: Disk> {
    writer: LogWriter<D>,
    /// Entries drained from the queue, in LSN order once sorted; the front may wait for a gap.
    pending: VecDeque<Entry>,
    /// The queue's vector the last drain took, emptied: swapped in by the next drain.
    drained: Vec<Entry>,
    /// The time by which written `Buffered` records must be synced.
    deadline: Option<Duration>,
}

/// The segment preparation hand-off between the flusher and the preparer.
enum Prep<F> {
    Idle,
    Requested(SegmentId),
    Working(SegmentId),
    Ready(SegmentId, F),
}

struct PrepState<F> {
    slot: Prep<F>,
    shutdown: bool,
}

/// Waiter bookkeeping, behind one mutex.
struct State {
    durable: Lsn,
    failed: Option<Arc<Error>>,
    /// Someone is running flusher steps.
    leader: bool,
    /// Threads blocked on `changed`: back-pressure waiters and `close`.
    sleepers: usize,
    /// Blocking waiters by (LSN, id), each parked on its own: a publish wakes only those it
    /// satisfies, a release of leadership only the first of the others (no herd).
    parked: BTreeMap<(Lsn, u64), thread::Thread>,
    /// Waiters a publish satisfied, taken out of `parked`, to be unparked in a tree: the
    /// leader unparks [`WAKE_FANOUT`] of them once it has handed leadership on (so that the
    /// next step starts first), or after each of its own further steps; each of those unparks
    /// as many more, and so on.
    /// Keyed by the waiter's id: a waiter that runs for another reason (a park may return
    /// spuriously) takes itself out, so that no wake-up of the tree is spent on it.
    woken: BTreeMap<u64, thread::Thread>,
    /// Async waiters by (LSN, id).
    wakers: BTreeMap<(Lsn, u64), Waker>,
    /// Ids for `parked` and `wakers`.
    next_waker_id: u64,
    /// The background thread waits on `work`.
    worker_waiting: bool,
    /// `close` asks the background threads to stop.
    shutdown: bool,
    /// When written `Buffered` records must be synced.
    sync_deadline: Option<Duration>,
    /// `Sync` appends per synced step, a moving average in sixteenths (1/8 per step): above
    /// [`GROUP_X16`], committers come in groups ([`Shared::grouped`]).
    group_x16: u32,
}

/// Why leader/follower's steps are the background thread's for now ([`Shared::handover`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handover {
    /// A crowd of committers is parked, or handing leadership on was found slow
    /// ([`Shared::crowd_parked`]; counted in [`WalStats::crowd_handovers`]).
    Crowd,
    /// Committers come in groups ([`Shared::grouped`]; counted in
    /// [`WalStats::group_handovers`]).
    Group,
}

/// Satisfied waiters taken to unpark (see [`Shared::take_woken`]).
enum Wake {
    /// A small group, every one of them.
    All(BTreeMap<u64, thread::Thread>),
    /// The first of a tree.
    Tree([Option<thread::Thread>; WAKE_FANOUT]),
}

impl Wake {
    /// Unparks the waiters taken (the caller holds no lock).
    fn unpark(self) {
        match self {
            Wake::All(group) => group.into_values().for_each(|t| t.unpark()),
            Wake::Tree(first) => first.into_iter().flatten().for_each(|t| t.unpark()),
        }
    }
}

/// A fault a test plants in the flusher (feature `sim`).
#[cfg(feature = "sim")]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedPanic {
    /// Panic inside the next flusher step, after its write (and sync, where it syncs: one
    /// call) and before it publishes.
    InStep,
    /// Panic in the background thread before its next step.
    InThread,
}

/// Everything the committers, the flusher and the background threads share.
struct Shared<D: Disk, C: Clock> {
    disk: D,
    clock: C,
    dir: PathBuf,
    config: WalConfig,
    record_payload_max: u64,
    queue: Queue<Entry>,
    /// Written payload buffers, for committers to reuse ([`Wal::buffer`]).
    buffers: BufferPool,
    /// Packed (records, bytes) reserved in the queue.
    reserved: AtomicU64,
    /// The next LSN to hand out.
    next_lsn: AtomicU64,
    durable: AtomicU64,
    written: AtomicU64,
    /// The highest LSN a caller of [`Wal::sync`] wants durable.
    sync_wanted: AtomicU64,
    poisoned: AtomicBool,
    /// Set by appends that need the background thread.
    kicked: AtomicBool,
    /// The background thread waits on `work` for more records nobody waits for
    /// ([`BatchConfig::write_behind`]): appends of such records do not wake it, other kicks
    /// do, even one that finds `kicked` already set. Written under the `state` lock.
    lingering: AtomicBool,
    /// Set by every kick that must not wait for a lingering: the thread, about to linger,
    /// takes it and steps instead.
    urgent: AtomicBool,
    /// The background thread died and committers flush inline (set under the `state` lock, so
    /// that sleepers deciding under it see it). An atomic: every non-durable append reads it.
    thread_dead: AtomicBool,
    /// Pushes and withdrawn reservations so far, times two; bit 0 is set while a leader waits
    /// on `pushed` for the push that closes a gap. One atomic, so that a pusher and the waiter
    /// are ordered by their read-modify-writes.
    queue_events: AtomicU64,
    /// Parked committers from which leader/follower's steps are the background thread's
    /// ([`Shared::crowded`]).
    crowd: usize,
    /// Whether handing leadership on is slow, and the steps are the background thread's for
    /// a while ([`Shared::crowded`]).
    handon: handon::HandOn,
    /// Whether the background thread yields its CPU to each committer it wakes
    /// ([`Shared::unpark_woken`]).
    yielding: yielding::Yielding,
    flusher: Mutex<Flusher<D>>,
    state: Mutex<State>,
    /// Durable LSN advanced, the log failed, leadership or queue space was released.
    changed: Condvar,
    /// Work for the background thread.
    work: Condvar,
    /// A push happened (for a leader waiting on a gap).
    pushed: Condvar,
    prep: Mutex<PrepState<D::File>>,
    prep_changed: Condvar,
    stats: Counters,
    #[cfg(feature = "sim")]
    planted: std::sync::Mutex<Option<PlantedPanic>>,
}

/// What one flusher step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepReport {
    /// Records written.
    pub records: u64,
    /// Whether the step synced.
    pub synced: bool,
    /// The durable LSN after the step.
    pub durable: Lsn,
}

impl StepReport {
    /// True if the step wrote or synced anything.
    pub fn progressed(&self) -> bool {
        self.records > 0 || self.synced
    }
}

/// A group-commit write-ahead log. See the [module docs](self).
///
/// `Wal` is `Sync`: share it (e.g. in an `Arc`) between committing threads and tasks.
pub struct Wal<D: Disk = StdDisk, C: Clock = SystemClock> {
    shared: Arc<Shared<D, C>>,
    threads: std::sync::Mutex<Vec<thread::JoinHandle<()>>>,
    closed: std::sync::Mutex<Option<Result<Lsn>>>,
}

impl Wal<StdDisk, SystemClock> {
    /// Opens (creating if needed) the log in `dir` on real files, recovering it in
    /// `config.log.recovery` mode.
    ///
    /// # Errors
    ///
    /// As [`Wal::open_with`].
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Self, RecoveryReport)> {
        Self::open_with(StdDisk, SystemClock::new(), dir.as_ref(), config)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Wal<D, C> {
    /// Opens the log in `dir` on `disk`: recovers it (discarding the records; read them first
    /// with a [`LogReader`](super::LogReader) and use [`Wal::from_writer`] to keep them), and
    /// starts the background threads of the driver.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options; whatever recovery returns; [`Error::Io`] for
    /// failed file operations.
    pub fn open_with(disk: D, clock: C, dir: &Path, config: WalConfig) -> Result<(Self, RecoveryReport)> {
        config.validate()?;
        let (writer, report) = LogWriter::open(disk.clone(), dir, config.log)?;
        Ok((Self::from_writer(disk, clock, writer, config)?, report))
    }
}

impl<D: Disk, C: Clock> Wal<D, C> {
    /// Starts group commit over `writer` (from [`LogWriter::open`] or [`LogWriter::resume`],
    /// with nothing appended since), with `config.log` equal to the writer's options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options; the error of preparing the first segment.
    pub fn from_writer(disk: D, clock: C, mut writer: LogWriter<D>, config: WalConfig) -> Result<Self> {
        config.validate()?;
        if *writer.options() != config.log {
            return Err(Error::InvalidConfig {
                reason: "config.log differs from the writer's options".into(),
            });
        }
        if config.prepare_ahead == PrepareAhead::Background
            && writer.active_segment().is_none()
            && !writer.has_prepared()
        {
            writer.prepare_next()?;
        }
        let next = writer.next_lsn().0;
        // Recovery may skip LSNs (it never reuses one that a cut-off record or a later segment
        // used): no record will ever have them, so they count as durable. Without this a sync
        // would wait for LSNs that nothing writes (found by `db_sim` seed 36).
        let synced = writer.synced_lsn().max(Lsn(next - 1));
        let shared = Arc::new(Shared {
            dir: writer.dir().to_path_buf(),
            record_payload_max: u64::from(config.log.record_payload_bytes_max()),
            disk,
            clock,
            config,
            queue: Queue::new(),
            buffers: BufferPool::new(),
            reserved: AtomicU64::new(0),
            next_lsn: AtomicU64::new(next),
            durable: AtomicU64::new(synced.0),
            written: AtomicU64::new(synced.0),
            sync_wanted: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            lingering: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
            thread_dead: AtomicBool::new(false),
            queue_events: AtomicU64::new(0),
            crowd: crowd(),
            handon: handon::HandOn::default(),
            yielding: yielding::Yielding::default(),
            flusher: Mutex::new(Flusher {
                writer,
                pending: VecDeque::new(),
                drained: Vec::new(),
                deadline: None,
            }),
            state: Mutex::new(State {
                durable: synced,
                failed: None,
                leader: false,
                sleepers: 0,
                parked: BTreeMap::new(),
                woken: BTreeMap::new(),
                wakers: BTreeMap::new(),
                next_waker_id: 0,
                worker_waiting: false,
                shutdown: false,
                sync_deadline: None,
                group_x16: 0,
            }),
            changed: Condvar::new(),
            work: Condvar::new(),
            pushed: Condvar::new(),
            prep: Mutex::new(PrepState { slot: Prep::Idle, shutdown: false }),
            prep_changed: Condvar::new(),
            stats: Counters::new(),
            #[cfg(feature = "sim")]
            planted: std::sync::Mutex::new(None),
        });
        let wal =
            Wal { shared, threads: std::sync::Mutex::new(Vec::new()), closed: std::sync::Mutex::new(None) };
        {
            let mut f = lock(&wal.shared.flusher);
            wal.shared.request_segment(&mut f);
        }
        let background = wal.shared.config.driver != Driver::Manual;
        let mut threads = Vec::new();
        if background {
            let shared = Arc::clone(&wal.shared);
            threads.push(spawn("waldb-flusher", move || shared.run_worker()));
            if wal.shared.config.prepare_ahead == PrepareAhead::Background {
                let shared = Arc::clone(&wal.shared);
                threads.push(spawn("waldb-prepare", move || shared.run_preparer()));
            }
        }
        *wal.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = threads;
        Ok(wal)
    }

    /// Appends one record with the configured [`WalConfig::durability`].
    ///
    /// Returns once the record is queued (waiting while the queue is full); the [`Ticket`]
    /// resolves when the durability is met.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a payload above the record maximum; [`Error::Poisoned`] after a
    /// failure; [`Error::Closed`] after [`Wal::close`].
    pub fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<Ticket> {
        self.append_with(kind, payload, self.shared.config.durability)
    }

    /// Appends one record with `durability`.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    pub fn append_with(&self, kind: RecordKind, payload: &[u8], durability: Durability) -> Result<Ticket> {
        self.shared.check_record(payload.len())?;
        assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        let mut buf = self.shared.buffers.take();
        buf.extend_from_slice(payload);
        self.append_owned(kind, buf, durability)
    }

    /// An empty buffer to encode a payload into for [`Wal::append_owned`]: one the flusher has
    /// written and returned when there is one (its capacity kept), so that steady commits
    /// allocate nothing for their payloads.
    pub fn buffer(&self) -> Vec<u8> {
        self.shared.buffers.take()
    }

    /// Appends one record whose payload is `payload`, taken without a copy (get it from
    /// [`Wal::buffer`] to reuse the log's buffers).
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    pub fn append_owned(&self, kind: RecordKind, payload: Vec<u8>, durability: Durability) -> Result<Ticket> {
        let ticket = self.append_owned_unkicked(kind, payload, durability)?;
        self.kick_if_waiting(durability);
        Ok(ticket)
    }

    /// [`Wal::append_owned`] without asking the background thread for a step: the caller calls
    /// [`Wal::kick_if_waiting`] with the same durability once it has left its critical section
    /// (the database's sequencer), so that the wake-up's system call is not made inside it.
    pub(crate) fn append_owned_unkicked(
        &self,
        kind: RecordKind,
        payload: Vec<u8>,
        durability: Durability,
    ) -> Result<Ticket> {
        self.shared.check_record(payload.len())?;
        assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        let bytes = record_bytes(payload.len()) as u64;
        Shared::submit(&self.shared, 1, bytes, durability, Body::One(kind, payload), false)
    }

    /// Asks the background thread for a step if a record appended with `durability` needs one
    /// from it: always for `Buffered` and `None`, and for `Sync` under [`Driver::Thread`].
    pub(crate) fn kick_if_waiting(&self, durability: Durability) {
        if self.shared.needs_kick(durability) {
            self.shared.kick_for(durability);
        }
    }

    /// Appends every record of `batch`, with consecutive LSNs and one ticket (resolving to the
    /// last LSN). The batch is not split between flushes unless it exceeds
    /// [`BatchConfig::batch_records_max`] or [`BatchConfig::batch_bytes_max`].
    ///
    /// # Errors
    ///
    /// As [`Wal::append`]; [`Error::TooLarge`] also for a batch larger than the queue limits,
    /// and [`Error::InvalidConfig`] for an empty batch.
    pub fn append_batch(&self, batch: WalBatch, durability: Durability) -> Result<Ticket> {
        if batch.is_empty() {
            return Err(Error::InvalidConfig { reason: "an empty batch has no LSN to acknowledge".into() });
        }
        for (kind, payload) in batch.iter() {
            self.shared.check_record(payload.len())?;
            assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        }
        let b = &self.shared.config.batch;
        if batch.len() as u64 > u64::from(b.queue_records_max) {
            return Err(Error::TooLarge {
                what: "batch (records)",
                len: batch.len() as u64,
                max: u64::from(b.queue_records_max),
            });
        }
        if batch.encoded > b.queue_bytes_max {
            return Err(Error::TooLarge { what: "batch", len: batch.encoded, max: b.queue_bytes_max });
        }
        let records = u32::try_from(batch.len()).expect("bounded by queue_records_max");
        let bytes = batch.encoded;
        Shared::submit(&self.shared, records, bytes, durability, Body::Many(batch), true)
    }

    /// Asks for every record up to `lsn` to be made durable, whatever its durability, and
    /// returns a ticket that resolves once it is (at once if it already is): the non-blocking
    /// form of [`Wal::sync`] for an LSN already appended.
    pub fn sync_ticket(&self, lsn: Lsn) -> Ticket {
        if self.shared.durable.load(SeqCst) >= lsn.0 {
            return Ticket::done(lsn);
        }
        self.shared.sync_wanted.fetch_max(lsn.0, SeqCst);
        self.shared.kick();
        let shared: Arc<dyn Durable> = Arc::clone(&self.shared) as Arc<dyn Durable>;
        Ticket::waiting(lsn, shared)
    }

    /// Makes every record appended before this call durable, whatever its durability, and
    /// returns the durable LSN.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log failed first.
    pub fn sync(&self) -> Result<Lsn> {
        let target = Lsn(self.shared.next_lsn.load(SeqCst).saturating_sub(1));
        self.shared.sync_wanted.fetch_max(target.0, SeqCst);
        self.shared.kick();
        self.shared.wait_durable(target)
    }

    /// Runs one flusher step (for [`Driver::Manual`]; harmless with the others): drains the
    /// queue up to the batch limits, writes, syncs if any record needs it or a `Buffered`
    /// deadline passed, publishes and wakes. Returns without doing anything if another step is
    /// in flight.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log is (or becomes) poisoned.
    pub fn flush_step(&self) -> Result<StepReport> {
        let shared = &self.shared;
        {
            let mut st = lock(&shared.state);
            if st.leader {
                return Ok(StepReport { durable: st.durable, ..StepReport::default() });
            }
            st.leader = true;
        }
        shared.step_as_leader()
    }

    /// Prepares the requested next segment now (for [`Driver::Manual`], whose log has no
    /// preparer thread). Returns whether it prepared one.
    ///
    /// # Errors
    ///
    /// The preparation's error (which does not poison: rotation will retry inline).
    pub fn prepare_step(&self) -> Result<bool> {
        self.shared.prepare_one(false)
    }

    /// The last LSN known durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable.load(SeqCst))
    }

    /// The last LSN handed to the OS.
    pub fn written_lsn(&self) -> Lsn {
        Lsn(self.shared.written.load(SeqCst))
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.shared.next_lsn.load(SeqCst))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The first failure, if the log is poisoned.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        lock(&self.shared.state).failed.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WalStats {
        let s = &self.shared;
        let c = &s.stats;
        let (queue_records, queue_bytes) = unpack(s.reserved.load(SeqCst));
        let failed = lock(&s.state).failed.clone();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        WalStats {
            queue_records,
            queue_bytes,
            appends: c.appends.load(relaxed),
            records: c.records.load(relaxed),
            flushes: c.flushes.load(relaxed),
            syncs: c.syncs.load(relaxed),
            batch_records: c.batch_records.summary(),
            batch_histogram: c.batch_records.powers_of_two(),
            write_latency_ns: c.write_latency.summary(),
            sync_latency_ns: c.sync_latency.summary(),
            bytes_written: c.bytes_written.load(relaxed),
            rotations: c.rotations.load(relaxed),
            rotations_inline: c.rotations_inline.load(relaxed),
            segments_prepared: c.segments_prepared.load(relaxed),
            prepare_failures: c.prepare_failures.load(relaxed),
            backpressure_waits: c.backpressure_waits.load(relaxed),
            crowd_handovers: c.crowd_handovers.load(relaxed),
            group_handovers: c.group_handovers.load(relaxed),
            slow_handons: c.slow_handons.load(relaxed),
            slow_yields: c.slow_yields.load(relaxed),
            durable_lsn: Lsn(s.durable.load(SeqCst)),
            written_lsn: Lsn(s.written.load(SeqCst)),
            healthy: failed.is_none(),
            degraded: s.degraded(),
            last_error: c.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }

    /// Plants a panic in the flusher, for tests of the failure paths (feature `sim`; hidden:
    /// no build that serves data calls it).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn plant_panic(&self, at: PlantedPanic) {
        *self.shared.planted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Drains every queued record, syncs, stops the background threads and returns the durable
    /// LSN — or the first failure. Later appends get [`Error::Closed`]; a second `close` returns
    /// the first one's result.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] with the first failure if the log failed.
    pub fn close(&self) -> Result<Lsn> {
        let mut closed = self.closed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(result) = &*closed {
            return clone_result(result);
        }
        let shared = &self.shared;
        shared.reserved.fetch_or(CLOSED, SeqCst);
        let result = shared.drain_for_close();
        {
            let mut st = lock(&shared.state);
            st.shutdown = true;
            shared.work.notify_all();
            shared.changed.notify_all();
        }
        {
            let mut prep = lock(&shared.prep);
            prep.shutdown = true;
            shared.prep_changed.notify_all();
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for t in threads {
            // A thread that panicked has already poisoned the log or handed over.
            let _ = t.join();
        }
        *closed = Some(clone_result(&result));
        result
    }
}

impl<D: Disk, C: Clock> Drop for Wal<D, C> {
    /// Closes the log if [`Wal::close`] was not called, ignoring its error.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl<D: Disk, C: Clock> std::fmt::Debug for Wal<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("durable_lsn", &self.durable_lsn())
            .field("next_lsn", &self.next_lsn())
            .finish_non_exhaustive()
    }
}

fn clone_result(r: &Result<Lsn>) -> Result<Lsn> {
    match r {
        Ok(lsn) => Ok(*lsn),
        Err(e) => Err(e.clone_lossy()),
    }
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> thread::JoinHandle<()> {
    thread::Builder::new().name(name.to_string()).spawn(f).expect("spawning a waldb thread")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The contiguous prefix of `pending` one step takes.
struct Take {
    entries: usize,
    records: u64,
    bytes: u64,
}

impl<D: Disk, C: Clock> Shared<D, C> {
    fn check_record(&self, len: usize) -> Result<()> {
        if len as u64 > self.record_payload_max {
            return Err(Error::TooLarge {
                what: "record payload",
                len: len as u64,
                max: self.record_payload_max,
            });
        }
        Ok(())
    }

    /// `Err` if the log takes no more appends.
    fn check_usable(&self) -> Result<()> {
        if self.poisoned.load(SeqCst) {
            let cause = lock(&self.state).failed.clone().expect("poisoned has a cause");
            return Err(Error::Poisoned { cause });
        }
        if self.is_closing() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn is_closing(&self) -> bool {
        self.reserved.load(SeqCst) & CLOSED != 0
    }

    fn degraded(&self) -> bool {
        self.thread_dead.load(SeqCst)
    }

    /// Whether a committer may run steps itself.
    fn may_lead(&self) -> bool {
        self.degraded() || self.config.driver != Driver::Thread
    }

    /// Whether leader/follower's steps are the background thread's for now: at least
    /// `crowd` committers are parked (8 per CPU). A leader then wakes no next leader, whose
    /// wake-up would wait for a CPU behind the committers the step satisfied; the background
    /// thread, already running, steps back to back, as under [`Driver::Thread`] (on 2 cores at
    /// 64 committers, 1.3–1.6× the commits/s of handing leadership on, measured side by side).
    /// With fewer parked, committers lead: one fewer wake-up per commit — unless handing
    /// leadership on was found slow ([`handon`]; see [`Shared::crowd_parked`]) or committers
    /// come in groups ([`Shared::grouped`]): then any parked committer makes a crowd. Returns
    /// the rule that hands the step over ([`Shared::handover`]).
    fn crowded(&self, st: &State) -> Option<Handover> {
        self.handover(st).filter(|rule| *rule == Handover::Crowd || !st.parked.is_empty())
    }

    /// The rule, if any, under which leader/follower's steps are the background thread's now:
    /// a crowd before a group. A committer that finds no step running leads under neither;
    /// a leader that releases hands over under a group only if a committer is parked
    /// ([`Shared::crowded`]).
    fn handover(&self, st: &State) -> Option<Handover> {
        if self.crowd_parked(st) {
            Some(Handover::Crowd)
        } else if self.grouped(st) {
            Some(Handover::Group)
        } else {
            None
        }
    }

    /// Counts a step handed to the background thread, by its rule.
    fn count_handover(&self, rule: Handover) {
        let counter = match rule {
            Handover::Crowd => &self.stats.crowd_handovers,
            Handover::Group => &self.stats.group_handovers,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The crowd rule of [`Shared::handover`]: a crowd of parked committers, or any parked
    /// committer while handing leadership on is found slow.
    fn crowd_parked(&self, st: &State) -> bool {
        self.config.driver == Driver::LeaderFollower
            && !self.degraded()
            && (st.parked.len() >= self.crowd || (self.handon.handed() && !st.parked.is_empty()))
    }

    /// Whether committers come in groups: more than 1.5 `Sync` appends per synced step, a
    /// moving average ([`GROUP_X16`]). Then none of them leads a step; the background thread
    /// does, having woken the group (all at once when small: [`WAKE_FLAT_MAX`]), and its next
    /// step takes every commit that arrived meanwhile — where a committer leading at once
    /// would write alone and leave the rest of its group to wait out its sync. On 2 cores:
    /// 1.21–1.23× the commits/s at 4 committers and 1.17–1.27× at 16 in two A/Bs
    /// (`docs/bench/2core-ab.md`). A lone committer (one append per step), or two taking
    /// turns, still leads its own steps: no hand-off to a thread on its path. The average
    /// decays by an eighth per synced step: a committer left alone after groups of 4 hands its
    /// next 17 steps to the thread, after groups of 16, 29.
    fn grouped(&self, st: &State) -> bool {
        self.config.driver == Driver::LeaderFollower && !self.degraded() && st.group_x16 > GROUP_X16
    }

    fn submit(
        this: &Arc<Self>,
        records: u32,
        bytes: u64,
        durability: Durability,
        body: Body,
        kick: bool,
    ) -> Result<Ticket> {
        this.check_usable()?;
        this.reserve(u64::from(records), bytes)?;
        // Checked again after reserving: `close` and a failure set their flag, then look at the
        // reservations, so one of the two sides sees the other.
        if let Err(e) = this.check_usable() {
            this.reserved.fetch_sub(pack(u64::from(records), bytes), SeqCst);
            this.note_queue_event();
            return Err(e);
        }
        let first = this.next_lsn.fetch_add(u64::from(records), SeqCst);
        let enqueued_at =
            if matches!(durability, Durability::Buffered { .. }) { this.clock.now() } else { Duration::ZERO };
        this.queue.push(Entry { first, records, bytes, durability, enqueued_at, body });
        this.note_queue_event();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        this.stats.appends.fetch_add(1, relaxed);
        this.stats.records.fetch_add(u64::from(records), relaxed);
        let last = Lsn(first + u64::from(records) - 1);
        match durability {
            Durability::Sync => {
                if kick && this.needs_kick(durability) {
                    this.kick();
                }
                let shared: Arc<dyn Durable> = Arc::clone(this) as Arc<dyn Durable>;
                Ok(Ticket::waiting(last, shared))
            }
            Durability::Buffered { .. } | Durability::None => {
                if this.degraded() {
                    // No background thread: write and sync inline.
                    this.sync_wanted.fetch_max(last.0, SeqCst);
                    this.wait_durable(last)?;
                    return Ok(Ticket::done(last));
                }
                if kick {
                    this.kick_for(durability);
                }
                // Nothing is acknowledged after a failure.
                if this.poisoned.load(SeqCst) {
                    this.check_usable()?;
                }
                Ok(Ticket::done(last))
            }
        }
    }

    /// Reserves room for `records` records of `bytes` encoded bytes, waiting while the queue is
    /// full.
    fn reserve(&self, records: u64, bytes: u64) -> Result<()> {
        let b = &self.config.batch;
        let (max_records, max_bytes) = (u64::from(b.queue_records_max), b.queue_bytes_max);
        let mut counted = false;
        loop {
            let current = self.reserved.load(SeqCst);
            if current & CLOSED != 0 {
                return Err(Error::Closed);
            }
            let (r, by) = unpack(current);
            if r + records <= max_records && by + bytes <= max_bytes {
                let next = current + pack(records, bytes);
                if self.reserved.compare_exchange(current, next, SeqCst, SeqCst).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if !counted {
                counted = true;
                self.stats.backpressure_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.wait_for_space(current)?;
        }
    }

    /// Waits until the reservation counter moves from `seen`, running a step if this committer
    /// may lead and nobody is.
    fn wait_for_space(&self, seen: u64) -> Result<()> {
        let mut st = lock(&self.state);
        loop {
            if let Some(cause) = &st.failed {
                return Err(Error::Poisoned { cause: Arc::clone(cause) });
            }
            if self.is_closing() {
                return Err(Error::Closed);
            }
            if self.reserved.load(SeqCst) != seen {
                return Ok(());
            }
            if !st.leader && self.may_lead() {
                st.leader = true;
                drop(st);
                if self.step_as_leader()?.progressed() {
                    return Ok(());
                }
                st = lock(&self.state);
            } else {
                drop(st);
                self.kick();
                st = lock(&self.state);
            }
            if self.reserved.load(SeqCst) != seen {
                return Ok(());
            }
            st.sleepers += 1;
            st = wait(&self.changed, st);
            st.sleepers -= 1;
        }
    }

    /// Whether a record appended with `durability` needs the background thread to step:
    /// `Sync` ones are written by their own waiters unless a dedicated thread runs the steps.
    fn needs_kick(&self, durability: Durability) -> bool {
        !matches!(durability, Durability::Sync) || self.config.driver == Driver::Thread
    }

    /// Asks the background thread for a step, now.
    fn kick(&self) {
        if self.config.driver == Driver::Manual {
            return;
        }
        // A lingering thread may have left `kicked` set by appends that did not wake it: it is
        // woken if it lingers already (`lingering`), and does not start to if it reads `urgent`
        // (it sets `lingering` and then reads `urgent`; this sets `urgent` and then reads
        // `lingering`: one of the two sees the other).
        if self.config.driver == Driver::LeaderFollower {
            self.urgent.store(true, SeqCst);
        }
        if !self.kicked.swap(true, SeqCst) || self.lingering.load(SeqCst) {
            let st = lock(&self.state);
            if st.worker_waiting {
                self.work.notify_one();
            }
        }
    }

    /// [`Shared::kick`] for a record appended with `durability`: one nobody waits for does not
    /// wake a thread that lingers for more of them; it is written when the lingering ends. A
    /// `Buffered` record whose window is no longer than the lingering wakes it, so that its
    /// sync is not late.
    fn kick_for(&self, durability: Durability) {
        if self.config.driver == Driver::Manual {
            return;
        }
        let urgent = match durability {
            Durability::Sync => true,
            Durability::Buffered { every } => every <= self.config.batch.write_behind,
            Durability::None => false,
        };
        if urgent {
            return self.kick();
        }
        if !self.kicked.swap(true, SeqCst) {
            let st = lock(&self.state);
            if st.worker_waiting && !self.lingering.load(SeqCst) {
                self.work.notify_one();
            }
        }
    }

    /// Blocks until `lsn` is durable, leading steps when allowed.
    ///
    /// A waiter that cannot lead parks in `State::parked` under its LSN: the publish that makes
    /// the LSN durable unparks it, and so does a release of leadership when it is the first
    /// waiter left, to lead the next step. Every other waiter sleeps on: each commit costs one
    /// wake-up, not one per publish.
    fn wait_durable_impl(&self, lsn: Lsn) -> Result<Lsn> {
        if self.durable.load(SeqCst) >= lsn.0 {
            return Ok(lsn);
        }
        let mut st = lock(&self.state);
        let mut must_wait = false;
        let mut parked_as = None;
        loop {
            // Woken or not (a park may return spuriously), the entry goes: it is put back
            // below if the wait goes on.
            if let Some(id) = parked_as.take() {
                st.parked.remove(&(lsn, id));
                st.woken.remove(&id);
            }
            if st.durable >= lsn {
                // Help with the wake-ups: each satisfied waiter unparks a few more, so that a
                // large group wakes in a tree rather than one by one from the leader.
                let more = Self::take_woken(&mut st);
                drop(st);
                more.unpark();
                return Ok(lsn);
            }
            if let Some(cause) = &st.failed {
                return Err(Error::Poisoned { cause: Arc::clone(cause) });
            }
            let handover = self.handover(&st);
            if !must_wait && !st.leader && self.may_lead() && handover.is_none() {
                st.leader = true;
                drop(st);
                let progressed = self.lead_until(lsn);
                if self.handon.judge() {
                    self.stats.slow_handons.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.release_leadership();
                st = lock(&self.state);
                // No progress: an earlier LSN is not pushed yet. Its committer will flush or
                // kick, and the publish wakes this one.
                must_wait = !progressed;
                continue;
            }
            if (!self.may_lead() || handover.is_some()) && !st.leader {
                // A committer that could have led leaves the step to the thread.
                if let Some(rule) = handover.filter(|_| !must_wait && self.may_lead()) {
                    self.count_handover(rule);
                }
                drop(st);
                self.kick();
                st = lock(&self.state);
                if st.durable >= lsn || st.failed.is_some() {
                    continue;
                }
            }
            // Registered under the same lock hold as the checks above: a publish or a release
            // after them finds this entry, and an unpark before the park is not lost.
            st.next_waker_id += 1;
            let id = st.next_waker_id;
            st.parked.insert((lsn, id), thread::current());
            parked_as = Some(id);
            drop(st);
            thread::park();
            st = lock(&self.state);
            must_wait = false;
        }
    }

    /// Runs steps (this caller holds leadership) until `lsn` is durable, the log failed, or a
    /// step made no progress; returns whether any step progressed.
    fn lead_until(&self, lsn: Lsn) -> bool {
        let mut f = lock(&self.flusher);
        // Not measured under loom, where the hand-over is off: the clock's read would add
        // interleavings to every model.
        if !cfg!(loom) {
            self.handon.leading(nanos(self.clock.now()));
        }
        let mut progressed = false;
        loop {
            match self.step_or_wait(&mut f, false) {
                Ok(true) => progressed = true,
                Ok(false) | Err(_) => return progressed,
            }
            if self.durable.load(SeqCst) >= lsn.0 {
                return true;
            }
            // Another step follows: the waiters this one satisfied must not wait for it.
            self.wake_published();
        }
    }

    /// Runs one step as the leader (the caller set `leader`), then gives leadership up.
    fn step_as_leader(&self) -> Result<StepReport> {
        let report = {
            let mut f = lock(&self.flusher);
            self.run_step(&mut f, false)
        };
        self.release_leadership();
        report
    }

    /// Gives up leadership and wakes whoever may take it: the background thread while a crowd
    /// is parked ([`Shared::crowded`]), else the first parked waiter (every
    /// parked LSN is above the durable one: a publish unparks the rest), back-pressure waiters
    /// and `close`.
    fn release_leadership(&self) {
        self.release_leadership_by(false);
    }

    /// [`Shared::release_leadership`]; `from_thread`: by the background thread, which yields
    /// its CPU to the waiters it wakes ([`Shared::unpark_woken`]).
    fn release_leadership_by(&self, from_thread: bool) {
        let mut st = lock(&self.state);
        st.leader = false;
        // Sleepers that may lead, and `close`, wait for leadership; in `Thread` mode the others
        // wait only for the publish.
        if st.sleepers > 0 && (self.may_lead() || self.is_closing()) {
            self.changed.notify_all();
        }
        if st.worker_waiting && !self.lingering.load(SeqCst) && self.kicked.load(SeqCst) {
            self.work.notify_one();
        }
        // Crowded: the background thread takes the next step (kicked below), not a parked
        // committer.
        let crowded = self.crowded(&st);
        let next =
            if self.may_lead() && crowded.is_none() { st.parked.pop_first().map(|(_, t)| t) } else { None };
        let woken = Self::take_woken(&mut st);
        let yield_to_each = from_thread && self.few_parked(&st);
        drop(st);
        if let Some(rule) = crowded {
            self.count_handover(rule);
            self.kick();
        }
        // The next leader first: its step overlaps the wake-ups of the satisfied waiters.
        if let Some(t) = next {
            t.unpark();
        }
        self.unpark_woken(woken, yield_to_each);
    }

    /// Whether fewer committers than a crowd are left parked (those a publish did not satisfy):
    /// then the group the thread wakes is most of the committers, and it yields to them
    /// ([`Shared::unpark_woken`]). With a crowd still parked the CPUs are busy with
    /// committers whatever the thread does, and yielding only delays its next write (on 2
    /// cores at 64 committers, 0.84–0.91× the commits/s in `waldb bench`).
    fn few_parked(&self, st: &State) -> bool {
        st.parked.len() < self.crowd
    }

    /// [`Wake::unpark`]; `yield_to_each`: by the background thread while fewer than a crowd
    /// are left parked ([`Shared::few_parked`]), which then yields its CPU after each unpark of
    /// a small group, as far as [`yielding`] allows: the committer just woken commits again on
    /// this CPU before the thread's next write, which then takes it (see [`yielding`]). Not
    /// under loom, where the models keep the plain wake-ups.
    fn unpark_woken(&self, wake: Wake, yield_to_each: bool) {
        match wake {
            Wake::All(group) if !cfg!(loom) && yield_to_each && self.yielding.on() => {
                let mut yielding = true;
                for t in group.into_values() {
                    t.unpark();
                    if yielding {
                        let before = self.clock.now();
                        thread::yield_now();
                        yielding = self.yielding.yielded(nanos(self.clock.now().saturating_sub(before)));
                        if !yielding {
                            self.stats.slow_yields.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            wake => wake.unpark(),
        }
    }

    /// Starts the wake-up of the waiters published durable so far (the leader calls this
    /// between steps).
    fn wake_published(&self) {
        self.wake_published_by(false);
    }

    /// [`Shared::wake_published`]; `from_thread`: by the background thread, which yields its
    /// CPU to the waiters it wakes ([`Shared::unpark_woken`]).
    fn wake_published_by(&self, from_thread: bool) {
        // The state lock is released before the system calls.
        let (woken, yield_to_each) = {
            let mut st = lock(&self.state);
            (Self::take_woken(&mut st), from_thread && self.few_parked(&st))
        };
        self.unpark_woken(woken, yield_to_each);
    }

    /// Takes the satisfied waiters to unpark: all of them when they are at most
    /// [`WAKE_FLAT_MAX`], else [`WAKE_FANOUT`] of them. Each waiter unparked, once it runs,
    /// takes more in the same way (in `wait_durable_impl`), so every waiter in `woken` is
    /// unparked: whoever moves waiters there (a publish) is a leader or the background thread,
    /// which calls this afterwards, and every unparked one calls it again while any are left.
    /// A waiter that runs before it is taken (its park returned early) takes itself out: every
    /// waiter taken here is one still to wake, so no branch of the tree dies on a thread that
    /// is already running (`tests/loom.rs`, with a fan-out of one under loom, finds the
    /// deadlocks when either rule is broken).
    fn take_woken(st: &mut State) -> Wake {
        if st.woken.len() <= WAKE_FLAT_MAX {
            return Wake::All(std::mem::take(&mut st.woken));
        }
        Wake::Tree(std::array::from_fn(|_| st.woken.pop_last().map(|(_, t)| t)))
    }

    /// Unparks every parked waiter (the caller holds the state lock): after a failure, or when
    /// the committers take over the flushing.
    fn unpark_all(st: &mut State) {
        for t in
            std::mem::take(&mut st.parked).into_values().chain(std::mem::take(&mut st.woken).into_values())
        {
            t.unpark();
        }
    }

    /// Runs a step; if it could not progress because an earlier LSN is reserved but not yet
    /// pushed (a gap), waits — keeping leadership — for the next push and returns `Ok(true)` to
    /// ask for another step. `Ok(false)`: nothing to do.
    fn step_or_wait(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<bool> {
        let events = self.queue_events.load(SeqCst) >> 1;
        let report = self.run_step(f, force_sync)?;
        if report.progressed() {
            return Ok(true);
        }
        let gap = !f.pending.is_empty() || self.reserved.load(SeqCst) & !CLOSED > 0;
        if !gap {
            return Ok(false);
        }
        // A committer is between taking its LSN and pushing (nanoseconds, unless it was
        // preempted): wait for its push rather than spin or hand the work around.
        let mut st = lock(&self.state);
        while self.queue_events.fetch_or(1, SeqCst) >> 1 == events && st.failed.is_none() {
            st = wait(&self.pushed, st);
        }
        self.queue_events.fetch_and(!1, SeqCst);
        Ok(true)
    }

    /// Counts a push (or a withdrawn reservation) and wakes a leader waiting for one.
    fn note_queue_event(&self) {
        if self.queue_events.fetch_add(2, SeqCst) & 1 == 1 {
            let _st = lock(&self.state);
            self.pushed.notify_all();
        }
    }

    /// One step under `catch_unwind`: a panic poisons the log.
    fn run_step(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<StepReport> {
        #[cfg(not(loom))]
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(f, force_sync)))
            .unwrap_or_else(|payload| Err(Error::FlusherPanicked { message: panic_message(&*payload) }));
        #[cfg(loom)]
        let outcome = self.step(f, force_sync);
        match outcome {
            Ok(report) => Ok(report),
            Err(e) => {
                let cause = self.poison(e);
                self.discard(f);
                Err(Error::Poisoned { cause })
            }
        }
    }

    /// Records the first failure and wakes everyone; returns the first cause.
    fn poison(&self, e: Error) -> Arc<Error> {
        self.stats.note_error(&e);
        let (cause, wakers) = {
            let mut st = lock(&self.state);
            if st.failed.is_none() {
                tracing::error!(cause = %e, "the log is poisoned: every commit fails until it is reopened");
            }
            let cause = Arc::clone(st.failed.get_or_insert_with(|| Arc::new(e)));
            // Set under the lock after the cause, so whoever sees the flag finds the cause.
            self.poisoned.store(true, SeqCst);
            let wakers = std::mem::take(&mut st.wakers);
            Self::unpark_all(&mut st);
            self.changed.notify_all();
            self.work.notify_all();
            self.pushed.notify_all();
            (cause, wakers)
        };
        for (_, w) in wakers {
            w.wake();
        }
        cause
    }

    /// After a failure: drops everything queued, releasing its reservations.
    fn discard(&self, f: &mut Flusher<D>) {
        self.queue.drain_into(&mut f.drained, &mut f.pending);
        let (mut records, mut bytes) = (0, 0);
        for e in f.pending.drain(..) {
            records += u64::from(e.records);
            bytes += e.bytes;
        }
        if records > 0 {
            self.reserved.fetch_sub(pack(records, bytes), SeqCst);
            let st = lock(&self.state);
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
        }
    }

    /// Moves everything pushed into `f.pending`, in LSN order.
    fn drain(&self, f: &mut Flusher<D>) {
        let before = f.pending.len();
        self.queue.drain_into(&mut f.drained, &mut f.pending);
        if f.pending.len() == before {
            return;
        }
        // Pushes can come in another order than their LSNs (taken before the push): the new
        // entries are checked, with the last one already pending.
        let from = before.saturating_sub(1);
        let sorted = f.pending.range(from..).zip(f.pending.range(from + 1..)).all(|(a, b)| a.first < b.first);
        if !sorted {
            f.pending.make_contiguous().sort_unstable_by_key(|e| e.first);
        }
    }

    /// The contiguous prefix of `f.pending` within the batch limits (at least one entry when
    /// the front is next in line).
    fn take(&self, f: &Flusher<D>) -> Take {
        let b = &self.config.batch;
        let mut expected = f.writer.next_lsn().0;
        let mut t = Take { entries: 0, records: 0, bytes: 0 };
        for e in &f.pending {
            if e.first != expected {
                break;
            }
            let over = t.bytes + e.bytes > b.batch_bytes_max
                || t.records + u64::from(e.records) > u64::from(b.batch_records_max);
            if t.entries > 0 && over {
                break;
            }
            t.entries += 1;
            t.records += u64::from(e.records);
            t.bytes += e.bytes;
            expected += u64::from(e.records);
        }
        t
    }

    #[cfg(feature = "sim")]
    fn planted(&self, at: PlantedPanic) -> bool {
        let mut p = self.planted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *p == Some(at) {
            *p = None;
            return true;
        }
        false
    }

    /// The flusher step: drain, encode, write once, sync once if needed, publish, wake.
    fn step(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<StepReport> {
        if self.poisoned.load(SeqCst) {
            self.discard(f);
            let cause = lock(&self.state).failed.clone().expect("poisoned has a cause");
            return Err(Error::Poisoned { cause });
        }
        self.install_ready_segment(f);
        self.drain(f);
        let mut take = self.take(f);
        let linger = self.config.batch.linger;
        if !linger.is_zero()
            && take.entries > 0
            && take.records < u64::from(self.config.batch.batch_records_max)
        {
            self.clock.sleep(linger);
            self.drain(f);
            take = self.take(f);
        }
        let now = self.clock.now();
        let due = f.deadline.is_some_and(|d| now >= d);
        let wanted = self.sync_wanted.load(SeqCst) > f.writer.synced_lsn().0;
        let unsynced = f.writer.written_lsn() > f.writer.synced_lsn();
        let mut need_sync = force_sync || due || wanted;
        if take.entries == 0 && !(need_sync && unsynced) {
            if !unsynced && f.deadline.is_some() {
                // Synced meanwhile (by a rotation): nothing is due any more.
                f.deadline = None;
                lock(&self.state).sync_deadline = None;
            }
            let durable = f.writer.synced_lsn();
            return Ok(StepReport { records: 0, synced: false, durable });
        }
        if take.bytes > f.writer.space_left() && !f.writer.has_prepared() {
            self.claim_segment(f);
        }
        if take.entries >= 2 && crate::mutation::active(crate::mutation::Mutation::LsnOutOfQueueOrder) {
            let (a, b) = f.pending.make_contiguous().split_at_mut(1);
            if let (Body::One(_, x), Body::One(_, y)) = (&mut a[0].body, &mut b[0].body) {
                std::mem::swap(x, y);
            }
        }
        let segment_before = f.writer.active_segment();
        let mut deadline = f.deadline;
        let mut sync_appends = 0u64;
        for entry in f.pending.drain(..take.entries) {
            let mut expect = entry.first;
            let mut append = |kind: RecordKind, payload: &[u8]| -> Result<()> {
                let lsn = f.writer.append(kind, payload)?;
                assert_eq!(lsn.0, expect, "records reach the log in LSN order");
                expect += 1;
                Ok(())
            };
            match &entry.body {
                Body::One(kind, payload) => append(*kind, payload)?,
                Body::Many(batch) => {
                    for (kind, payload) in batch.iter() {
                        append(kind, payload)?;
                    }
                }
            }
            if let Body::One(_, payload) = entry.body {
                self.buffers.give(payload);
            }
            match entry.durability {
                Durability::Sync => {
                    need_sync = true;
                    sync_appends += 1;
                }
                Durability::Buffered { every } => {
                    let d = entry.enqueued_at + every;
                    deadline = Some(deadline.map_or(d, |old: Duration| old.min(d)));
                }
                Durability::None => {}
            }
        }
        if take.entries > 0 {
            self.reserved.fetch_sub(pack(take.records, take.bytes), SeqCst);
        }
        // A `Buffered` record written only now may already be past its window.
        if deadline.is_some_and(|d| now >= d) {
            need_sync = true;
        }
        let segment_after = f.writer.active_segment();
        if segment_after != segment_before && segment_before.is_some() {
            let started = segment_after.map_or(0, |s| s.0) - segment_before.map_or(0, |s| s.0);
            self.stats.rotations.fetch_add(started, std::sync::atomic::Ordering::Relaxed);
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        // A step that syncs hands its batch and the sync to the disk in one call
        // (`DiskFile::write_pages_synced_at`); its time counts as the sync's.
        let synced_before = f.writer.synced_lsn();
        let before = self.clock.now();
        if need_sync {
            f.writer.sync()?;
        } else {
            f.writer.write()?;
        }
        let after = self.clock.now();
        let synced = f.writer.synced_lsn() > synced_before;
        let io_ns = nanos(after.saturating_sub(before));
        if take.records > 0 {
            if !synced {
                self.stats.write_latency.record(io_ns);
            }
            self.stats.batch_records.record(take.records);
            self.stats.flushes.fetch_add(1, relaxed);
            self.stats.bytes_written.fetch_add(take.bytes, relaxed);
        }
        #[cfg(feature = "sim")]
        if self.planted(PlantedPanic::InStep) {
            panic!("planted panic inside the flusher step");
        }
        if need_sync {
            deadline = None;
        }
        if synced {
            self.stats.sync_latency.record(io_ns);
            if io_ns > SLOW_SYNC_NS {
                tracing::warn!(sync_ms = io_ns / 1_000_000, records = take.records, "a slow sync of the log");
            }
            self.handon.synced(io_ns);
            // The publish below is this sync's (the next step starts after it: this step holds
            // the flusher). Not under loom: the load would add interleavings to every model.
            if !cfg!(loom) {
                self.handon.published(nanos(after), self.reserved.load(SeqCst) & !CLOSED > 0);
            }
            self.stats.syncs.fetch_add(1, relaxed);
        }
        let new_deadline = deadline.is_some() && f.deadline.is_none();
        f.deadline = deadline;
        self.publish(f, new_deadline, synced.then_some(sync_appends));
        if segment_after != segment_before {
            self.request_segment(f);
        }
        Ok(StepReport { records: take.records, synced, durable: f.writer.synced_lsn() })
    }

    /// Publishes the writer's written and durable LSNs and wakes whoever they satisfy.
    /// `group`: the `Sync` appends this step synced, if it synced.
    fn publish(&self, f: &Flusher<D>, new_deadline: bool, group: Option<u64>) {
        let durable = f.writer.synced_lsn();
        self.written.store(f.writer.written_lsn().0, SeqCst);
        self.durable.store(durable.0, SeqCst);
        let mut ready = Vec::new();
        {
            let mut st = lock(&self.state);
            st.durable = durable;
            if let Some(group) = group.filter(|&g| g > 0) {
                let sample = u32::try_from(group.min(1 << 20)).expect("bounded") * 16;
                st.group_x16 = st.group_x16 - st.group_x16 / 8 + sample / 8;
            }
            st.sync_deadline = f.deadline;
            while let Some(entry) = st.wakers.first_entry() {
                if entry.key().0 > durable {
                    break;
                }
                ready.push(entry.remove());
            }
            // Unparked by the leader after this step (see `State::woken`).
            while let Some(entry) = st.parked.first_entry() {
                if entry.key().0 > durable {
                    break;
                }
                let id = entry.key().1;
                let t = entry.remove();
                st.woken.insert(id, t);
            }
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
            if new_deadline && st.worker_waiting {
                self.work.notify_one();
            }
        }
        for w in ready {
            w.wake();
        }
    }

    /// Installs a prepared segment if the preparer has one ready.
    fn install_ready_segment(&self, f: &mut Flusher<D>) {
        if f.writer.has_prepared() {
            return;
        }
        let mut prep = lock(&self.prep);
        if let Prep::Ready(id, _) = &prep.slot
            && *id == f.writer.next_segment()
        {
            let Prep::Ready(id, file) = std::mem::replace(&mut prep.slot, Prep::Idle) else { unreachable!() };
            f.writer.install_prepared(id, file);
        }
    }

    /// Rotation is imminent and nothing is prepared: takes the preparer's segment (waiting for
    /// one in progress) or cancels its request, so that the rotation prepares inline.
    fn claim_segment(&self, f: &mut Flusher<D>) {
        let mut prep = lock(&self.prep);
        loop {
            match std::mem::replace(&mut prep.slot, Prep::Idle) {
                Prep::Ready(id, file) if id == f.writer.next_segment() => {
                    f.writer.install_prepared(id, file);
                    return;
                }
                Prep::Working(id) => {
                    prep.slot = Prep::Working(id);
                    prep = wait(&self.prep_changed, prep);
                }
                Prep::Ready(..) | Prep::Requested(_) | Prep::Idle => {
                    self.stats.rotations_inline.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Asks the preparer for the writer's next segment if none is prepared or requested.
    fn request_segment(&self, f: &mut Flusher<D>) {
        if self.config.prepare_ahead != PrepareAhead::Background
            || f.writer.has_prepared()
            || f.writer.poisoned().is_some()
        {
            return;
        }
        let mut prep = lock(&self.prep);
        if matches!(prep.slot, Prep::Idle) {
            prep.slot = Prep::Requested(f.writer.next_segment());
            self.prep_changed.notify_all();
        }
    }

    /// Prepares the requested segment (`block`: wait for a request). Returns whether it did.
    fn prepare_one(&self, block: bool) -> Result<bool> {
        let id = {
            let mut prep = lock(&self.prep);
            loop {
                if prep.shutdown {
                    return Ok(false);
                }
                if let Prep::Requested(id) = prep.slot {
                    prep.slot = Prep::Working(id);
                    break id;
                }
                if !block {
                    return Ok(false);
                }
                prep = wait(&self.prep_changed, prep);
            }
        };
        let result = prepare_segment(&self.disk, &self.dir, id, self.config.log.segment_bytes);
        let mut prep = lock(&self.prep);
        self.prep_changed.notify_all();
        match result {
            Ok(file) => {
                prep.slot = Prep::Ready(id, file);
                self.stats.segments_prepared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                // Not poisoned: rotation will prepare inline (and fail-stop if that fails).
                tracing::warn!(segment = id.0, error = %e, "preparing the next log segment failed; rotation will try inline");
                prep.slot = Prep::Idle;
                self.stats.prepare_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.stats.note_error(&e);
                Err(e)
            }
        }
    }

    /// The preparer thread: prepares requested segments until shutdown.
    fn run_preparer(&self) {
        loop {
            #[cfg(not(loom))]
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prepare_one(true)));
            #[cfg(loom)]
            let outcome: std::thread::Result<Result<bool>> = Ok(self.prepare_one(true));
            match outcome {
                Ok(Ok(true) | Err(_)) => {}
                Ok(Ok(false)) => return,
                Err(_) => {
                    // A panic while preparing: leave the slot to inline rotation and stop.
                    let mut prep = lock(&self.prep);
                    prep.slot = Prep::Idle;
                    self.prep_changed.notify_all();
                    return;
                }
            }
        }
    }

    /// The background thread: steps when kicked or when a `Buffered` deadline passes.
    fn run_worker(&self) {
        #[cfg(not(loom))]
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.worker_loop()));
        #[cfg(loom)]
        let outcome: std::thread::Result<()> = Ok(self.worker_loop());
        if let Err(payload) = outcome {
            let message = panic_message(&*payload);
            tracing::error!(%message, degrade = self.config.degrade_on_thread_death, "the log's background thread panicked");
            if self.config.degrade_on_thread_death {
                self.stats.note_error(&Error::FlusherPanicked { message });
                let mut st = lock(&self.state);
                self.thread_dead.store(true, SeqCst);
                st.leader = false;
                Self::unpark_all(&mut st);
                self.changed.notify_all();
                let wakers = std::mem::take(&mut st.wakers);
                drop(st);
                // Async waiters poll again and flush inline.
                for (_, w) in wakers {
                    w.wake();
                }
            } else {
                lock(&self.state).leader = false;
                self.poison(Error::FlusherPanicked { message });
            }
        }
    }

    fn worker_loop(&self) {
        let mut st = lock(&self.state);
        let write_behind = self.config.batch.write_behind;
        let may_linger = self.config.driver == Driver::LeaderFollower && !write_behind.is_zero();
        let mut linger = false;
        loop {
            if st.shutdown {
                return;
            }
            let now = self.clock.now();
            let due = st.sync_deadline.is_some_and(|d| now >= d);
            if std::mem::take(&mut linger) && !due && st.failed.is_none() && !self.degraded() {
                // Having written, wait for more records nobody waits for before the next
                // write: their appends set `kicked` without a wake-up. A `Sync` commit meanwhile
                // leads its own step; any other kick, close and a failure wake this wait.
                let wait_for =
                    st.sync_deadline.map_or(write_behind, |d| write_behind.min(d.saturating_sub(now)));
                st.worker_waiting = true;
                self.lingering.store(true, SeqCst);
                if !self.urgent.swap(false, SeqCst) {
                    st = wait_timeout(&self.work, st, wait_for);
                }
                self.lingering.store(false, SeqCst);
                st.worker_waiting = false;
                continue;
            }
            // Consume the kick with a read-modify-write: it reads from the kicker's swap, so
            // the kicker's push is visible to the drain below.
            let free = !st.leader && st.failed.is_none();
            let kicked = free && self.kicked.swap(false, SeqCst);
            if free && (kicked || due) {
                st.leader = true;
                drop(st);
                #[cfg(feature = "sim")]
                if self.planted(PlantedPanic::InThread) {
                    panic!("planted panic in the background thread");
                }
                {
                    let mut f = lock(&self.flusher);
                    while let Ok(true) = self.step_or_wait(&mut f, due) {
                        self.handon.stepped();
                        self.yielding.stepped();
                        // Lingering: what was queued meanwhile waits for the next write, unless
                        // a crowd or a group of committers waits for it.
                        linger = may_linger && self.handover(&lock(&self.state)).is_none();
                        let queued = self.reserved.load(SeqCst) & !CLOSED > 0;
                        if linger && queued {
                            // More is queued than this step took (a batch's limit) or was
                            // appended meanwhile: the kick this run consumed is still owed,
                            // so the write after the lingering takes it, with no further
                            // append to wake this thread.
                            self.kicked.store(true, SeqCst);
                        }
                        if linger || !queued {
                            break;
                        }
                        self.wake_published_by(true);
                    }
                }
                self.release_leadership_by(true);
                st = lock(&self.state);
                continue;
            }
            st.worker_waiting = true;
            st = match st.sync_deadline {
                Some(d) if st.failed.is_none() => wait_timeout(&self.work, st, d.saturating_sub(now)),
                _ => wait(&self.work, st),
            };
            st.worker_waiting = false;
        }
    }

    /// For `close`: takes leadership, steps until every reserved record is written, and syncs.
    fn drain_for_close(&self) -> Result<Lsn> {
        let mut st = lock(&self.state);
        while st.leader {
            st.sleepers += 1;
            st = wait(&self.changed, st);
            st.sleepers -= 1;
        }
        st.leader = true;
        drop(st);
        let result = {
            let mut f = lock(&self.flusher);
            loop {
                match self.step_or_wait(&mut f, true) {
                    Err(e) => break Err(e),
                    // Every step is forced, so the last one synced what it wrote.
                    Ok(_) if self.reserved.load(SeqCst) & !CLOSED == 0 && f.pending.is_empty() => {
                        break Ok(f.writer.synced_lsn());
                    }
                    Ok(_) => self.wake_published(),
                }
            }
        };
        self.release_leadership();
        result
    }
}

impl<D: Disk, C: Clock> Durable for Shared<D, C> {
    fn wait_durable(&self, lsn: Lsn) -> Result<Lsn> {
        self.wait_durable_impl(lsn)
    }

    fn poll_durable(&self, lsn: Lsn, waker_id: &mut Option<u64>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let ready = |st: &mut State, waker_id: &mut Option<u64>| {
            if let Some(id) = waker_id.take() {
                st.wakers.remove(&(lsn, id));
            }
        };
        if self.durable.load(SeqCst) >= lsn.0 {
            if waker_id.is_some() {
                ready(&mut lock(&self.state), waker_id);
            }
            return Poll::Ready(Ok(lsn));
        }
        let mut st = lock(&self.state);
        if st.durable >= lsn {
            ready(&mut st, waker_id);
            return Poll::Ready(Ok(lsn));
        }
        if let Some(cause) = &st.failed {
            let cause = Arc::clone(cause);
            ready(&mut st, waker_id);
            return Poll::Ready(Err(Error::Poisoned { cause }));
        }
        if self.degraded() {
            // Degraded: no background thread, so the poll flushes inline.
            ready(&mut st, waker_id);
            drop(st);
            return Poll::Ready(self.wait_durable_impl(lsn));
        }
        let id = *waker_id.get_or_insert_with(|| {
            st.next_waker_id += 1;
            st.next_waker_id
        });
        match st.wakers.get_mut(&(lsn, id)) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                st.wakers.insert((lsn, id), cx.waker().clone());
            }
        }
        drop(st);
        self.kick();
        Poll::Pending
    }

    fn forget(&self, lsn: Lsn, waker_id: u64) {
        lock(&self.state).wakers.remove(&(lsn, waker_id));
    }
}
