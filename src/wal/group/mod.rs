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
//! LSNs from an atomic counter and pushes. The **flusher step** — one function over [`Disk`] +
//! [`Clock`] — drains what is queued in LSN order (a committer between taking its LSN and
//! pushing leaves a gap that the step waits for), encodes it into the writer's buffer, writes
//! it once, syncs once if any record needs it, publishes the durable LSN and wakes the waiters.
//! Who runs the step is the [`Driver`]'s choice:
//!
//! - [`Driver::LeaderFollower`] (default): a committer that waits for a sync and finds no flush
//!   in flight runs the step itself; commits that arrive meanwhile ride the next step, run by
//!   one of them. A background thread serves async waiters, `Buffered` deadlines and `None`
//!   records, and takes the steps over while a crowd of committers is parked, while committers
//!   come in groups, or while handing leadership on is measured slow (the hand-over policies,
//!   `lead.rs`).
//! - [`Driver::Thread`]: a dedicated thread runs every step.
//! - [`Driver::Manual`]: nobody; a simulator or an async task calls [`Wal::flush_step`].
//!
//! A blocking waiter parks on its own, under its LSN: a publish unparks only the waiters it
//! makes durable — a small group all at once, a larger one in a tree — and a leader that is
//! done unparks the first waiter left to lead the next step before the waiters it satisfied,
//! so that the next write starts at once: one wake-up per commit, no herd (`wake.rs`).
//!
//! No timer delays a waiting commit ([`BatchConfig::linger`] is off unless chosen). Records
//! nobody waits for (`Buffered`, `None`) are written behind: the background thread, having
//! written some, waits [`BatchConfig::write_behind`] for more before it writes again, and their
//! appends do not wake it meanwhile — one wake-up and one write per batch instead of per
//! record. A commit that waits, a sync, close and a failure end the wait. The next segment is
//! prepared by a background thread ahead of need, so a commit never waits for a file creation
//! (`preparer.rs`). What each of these choices measured, against the alternatives, is in
//! `docs/bench/README.md` (*Group commit*, *Why the hand-over policies*).
//!
//! ## Files
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | the shared state (`Shared`, `State`, `Flusher`) and the constants |
//! | `api.rs` | [`Wal`]'s methods and [`WalBatch`] |
//! | `append.rs` | admission: reservations, back-pressure, the push |
//! | `step.rs` | the flusher step and publication; poisoning; the drain at close |
//! | `lead.rs` | who steps: leadership, the hand-over policies, the background thread |
//! | `wake.rs` | kicks, waits, and the unparking of satisfied waiters |
//! | `preparer.rs` | the next segment, prepared ahead |
//! | `window.rs` | the `Buffered` window under load: admission waits while the log lags |
//! | `queue.rs`, `ticket.rs`, `config.rs`, `stats.rs`, `handon.rs`, `yielding.rs` | the queue, tickets, options, counters, and the two measured switches of the policies |
//!
//! The small methods an append calls in another of these files are `#[inline]`: a release
//! build may put each file in a codegen unit of its own, and the hint keeps them inlinable
//! where they were when the files were one.
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
//! `sim/group.rs` (a crash after every flusher step of seeded runs), `tests/wal_group.rs`
//! (modes, faults, panics, back-pressure, close, rotation).

mod api;
mod append;
mod config;
mod handon;
mod lead;
mod preparer;
mod queue;
mod stats;
mod step;
mod ticket;
mod wake;
mod window;
mod yielding;

pub use api::WalBatch;
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
use super::segment::{PreparedSegment, prepare_segment};
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
    /// When the oldest `Buffered` record written since the last sync was enqueued: the start
    /// of the window the next sync closes ([`WalStats::buffered_window_ns`]).
    buffered_since: Option<Duration>,
    /// The LSNs up to this one count as durable though the writer never wrote them: recovery
    /// skipped them (it never reuses an LSN that a cut-off record used), and no record will
    /// ever have them. The writer's own synced LSN starts below them.
    skipped_through: Lsn,
}

impl<D: Disk> Flusher<D> {
    /// The durable LSN to publish: the writer's synced LSN, or the skipped LSNs above it.
    fn durable(&self) -> Lsn {
        self.writer.synced_lsn().max(self.skipped_through)
    }

    /// The written LSN to publish, as [`Flusher::durable`].
    fn written(&self) -> Lsn {
        self.writer.written_lsn().max(self.skipped_through)
    }
}

/// The segment preparation hand-off between the flusher and the preparer.
enum Prep<F> {
    Idle,
    Requested(SegmentId),
    Working(SegmentId),
    Ready(SegmentId, PreparedSegment<F>),
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
    /// Unsynced `Buffered` records, for the window's admission (`window.rs`).
    marks: window::Marks,
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
