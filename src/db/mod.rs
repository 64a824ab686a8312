//! The database: transactions over a multi-version memtable, made durable by the group-commit
//! log; full memtables flushed to sorted tables; recovered from the tables plus the log.
//!
//! ```text
//!  begin ─▶ snapshot = visible LSN          reads: memtable at the snapshot, own writes first
//!  commit ─▶ scanned ranges against the memtable, places of the keys read and written
//!            found (no lock)
//!         ─▶ sequencer (one mutex, no I/O, no search): validate ─▶ append to the Wal (LSN)
//!            ─▶ versions into the memtable at the LSN ─▶ pending visibility
//!         ─▶ wait for the ticket (Sync) ─▶ the visible LSN advances ─▶ Ok(LSN)
//! ```
//!
//! The sequencer's mutex is the one point every commit crosses, so it is kept short: nothing
//! inside it sleeps or makes a system call (the log's background thread is woken after it), and
//! a committer spins a while for it before sleeping on it. There is no conflict index: the
//! memtable is one. A key was written after a snapshot at or above the horizon exactly when its
//! newest version is above the snapshot (reclamation never drops a newest version, nor one
//! above the horizon), so a written key is validated and given its version with one search,
//! made before the lock: under it a commit only checks that the places it found were not
//! removed meanwhile (the memtable's claims, `src/db/memtable.rs`; proof in `tests/db.rs`,
//! `racing_commits_on_few_keys_lose_no_acknowledged_write`). That took the lock's hold time,
//! measured on 2 cores, from 43 µs to 3.6 µs for a 50-put commit at 10 committers, from 2.5 µs
//! to 0.51 µs for a 1-put commit at 64, and from 0.8 µs to 0.22 µs for a lone 1-put one. A
//! scanned range is walked outside the lock, at a watermark below which every commit has its
//! versions in place; under the lock only the writes of the commits above the watermark are
//! looked at (`Sequencer`). On 16 cores, with the log's tree of wake-ups, the sequencer's
//! earlier changes took 64 and 128 `Sync` committers from 101k–128k to 134k–166k commits/s
//! (`docs/bench/16core-ab.md`).
//!
//! # Guarantees
//!
//! - **Durable before acknowledged** (`Sync`, the default): a commit returns `Ok(lsn)` only
//!   after the log is durable up to `lsn`.
//! - **Visible only when durable** (`Sync`): a snapshot reads at the *visible LSN*, which moves
//!   past a `Sync` commit only once it is durable — no reader ever sees what a crash could take
//!   back. A `Buffered` or `None` commit is acknowledged once visible: at once, unless an
//!   earlier `Sync` commit is still waiting for its sync — visibility follows LSN order — and
//!   then when that one is durable. Every commit is visible when it resolves, so a committer
//!   always reads its own writes. Under `Buffered`, readers can see commits that a crash within
//!   the `every` window takes back — the same bounded loss the committer accepted.
//! - **Atomic, prefix-consistent**: a transaction is one WAL record. Recovery opens the sorted
//!   tables the manifest names and replays the log records above the manifest's LSN in order:
//!   the state is that of the first K commits for some K covering every acknowledged `Sync`
//!   commit.
//! - **Larger than memory**: a memtable that reaches [`DbOptions::memtable_bytes`] is frozen and
//!   flushed to a sorted table in the background ([`flush`](self#files)); reads consult the
//!   memtables, then the tables newest first ([`view`](self#files)). Memory holds the memtables
//!   (at most [`DbOptions::memtables_max`]) and each table's index and filter.
//! - **Isolation**: reads come from the snapshot taken at [`Db::begin`]; readers never block
//!   writers. [`Isolation::Serializable`] (the default) validates the read set, the scanned
//!   ranges and the write set against every commit after the snapshot; [`Isolation::Snapshot`]
//!   the write set only. A failed validation is [`Error::Conflict`] and writes nothing.
//! - **One owner**: opening locks `LOCK` in the directory; a second opener, in this process or
//!   another, gets [`Error::Locked`].
//! - **Ids never reused**: LSNs continue from the log; transaction ids are
//!   `epoch << 44 | counter`, where the epoch is bumped durably (`EPOCH`) at every open before
//!   any id is handed out.
//! - **Fail-stop**: after a failed write or sync, commits fail with [`Error::Poisoned`]; reads
//!   keep working at the last visible LSN; reopening recovers.
//!
//! # Files
//!
//! `LOCK` (the owner lock), `EPOCH` (12 bytes: the open count and its CRC-32C), `MANIFEST`
//! (the live tables and the LSN they hold, [`manifest`]), `tables/` (the sorted tables,
//! [`table`]), `wal/` (the segments). The formats are in `docs/FORMAT.md`. A directory with a
//! `checkpoint` file (the whole-state format of earlier releases) is refused with
//! [`Error::UnsupportedVersion`].
//!
//! The code, by job: `open.rs` (the steps of an open), `load.rs` (what an open reads: the
//! manifest, the tables, the log replay), `sequencer.rs` (the commit's serial step and what it
//! keeps), `txn.rs` (transactions and the wait for a commit), `view.rs` (the layers a read
//! consults), `iter.rs` (streaming iterators), `memtable.rs`, `flush.rs` (freezing and
//! flushing, the background flusher, write stalls), `compact.rs` (leveled compaction),
//! `cache.rs` (the block cache), `snapshots.rs` (the horizon), `table/` and `manifest.rs`
//! (the files).

mod bloom;
mod cache;
mod compact;
mod flush;
mod iter;
mod key;
mod load;
#[doc(hidden)] // public for the fuzzers and the tests; the database's own format
pub mod manifest;
mod memtable;
mod open;
mod options;
mod read_only;
mod sequencer;
mod snapshots;
#[doc(hidden)] // public for the fuzzers and the tests; the database's own format
pub mod table;
mod txn;
mod view;

pub use iter::{CHUNK as RANGE_CHUNK, DbRange, TxnRange};
pub use key::Key;
pub use options::{DbOptions, Isolation, Limits};
pub use read_only::ReadOnlyDb;
pub use table::Compression;
pub use txn::{Commit, Transaction};

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, SystemClock};
use crate::disk::{Disk, StdDisk};
use crate::error::{Error, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::{RecoveryReport, Wal, WalStats};
use flush::{Mailbox, TreeState};
use sequencer::Sequencer;
use snapshots::Snapshots;
use view::View;

/// A key and its value, as scans return them: the value shared with the database, the key
/// too if it is longer than 16 bytes (a shorter [`Key`] is copied inline). A scan allocates
/// nothing per pair.
pub type Pair = (Key, Arc<[u8]>);

/// Name of the lock file in a database directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the epoch file.
pub const EPOCH_FILE: &str = "EPOCH";
/// Name of the log directory inside a database directory.
pub const WAL_DIR: &str = "wal";

/// Bits of a transaction id that count within one epoch.
const TXN_COUNTER_BITS: u32 = 44;
const TXN_COUNTER_MASK: u64 = (1 << TXN_COUNTER_BITS) - 1;

/// What opening a database found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// The LSN up to which the sorted tables hold every commit (the manifest's), if the
    /// database has a manifest: the log was replayed above it.
    pub checkpoint_lsn: Option<Lsn>,
    /// Sorted tables opened.
    pub tables: u64,
    /// Table files no manifest named (left by a crash during a flush), removed.
    pub orphans_removed: u64,
    /// Transactions replayed from the log (records above the tables' LSN).
    pub txns_replayed: u64,
    /// The log's recovery report: records read, how it ended (a cut torn tail is
    /// [`LogEnd::TornTail`](crate::wal::LogEnd::TornTail) with what was dropped).
    pub wal: RecoveryReport,
    /// The LSN the database's state reached: every commit up to it is visible.
    pub lsn: Lsn,
    /// The epoch of this open (transaction ids start at `epoch << 44`).
    pub epoch: u64,
}

/// What [`Db::checkpoint`] (a flush) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointReport {
    /// The LSN up to which the tables now hold every commit; `None` if nothing was committed
    /// since the last flush.
    pub lsn: Option<Lsn>,
    /// Entries (versions and deletions) written to tables.
    pub entries: u64,
    /// Bytes of the tables written.
    pub bytes: u64,
    /// WAL segments removed.
    pub segments_removed: u64,
}

/// Counters of a database, read as one snapshot with [`Db::stats`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DbStats {
    /// The log's counters.
    pub wal: WalStats,
    /// The visible LSN: snapshots taken now read at it.
    pub visible_lsn: Lsn,
    /// Commits acknowledged since open (read-only ones excluded).
    pub commits: u64,
    /// Commits refused with [`Error::Conflict`].
    pub conflicts: u64,
    /// Keys in the memtables, active and frozen (live, deleted, or not yet visible).
    pub keys: u64,
    /// Flushes of a memtable to a table since open ([`Db::checkpoint`] or in the background).
    pub checkpoints: u64,
    /// The LSN up to which the tables hold every commit (the manifest's).
    pub checkpoint_lsn: Option<Lsn>,
    /// The error of the last flush, until one succeeds.
    pub last_checkpoint_error: Option<String>,
    /// Bytes in the active memtable (keys, values and 64 per version).
    pub memtable_bytes: u64,
    /// Frozen memtables waiting for their flush.
    pub frozen_memtables: u64,
    /// Memtables frozen because they were full (a checkpoint's freeze is not counted).
    pub freezes: u64,
    /// Sorted tables, in all levels.
    pub tables: u64,
    /// Sorted tables per level (level 0 first).
    pub tables_per_level: Vec<u64>,
    /// Bytes of all sorted tables.
    pub table_bytes: u64,
    /// Bytes of tables written by flushes since open.
    pub flush_bytes_written: u64,
    /// Bytes of decoded blocks in the block cache.
    pub cache_bytes: u64,
    /// Block lookups the cache answered, and those that read the table's file.
    pub cache_hits: u64,
    /// See [`DbStats::cache_hits`].
    pub cache_misses: u64,
    /// Data blocks read from table files since open (a cache miss, or any read without the
    /// cache): what a read of an absent key should not cost, thanks to the filters.
    pub block_reads: u64,
    /// Memory the tables hold open: their indexes and filters.
    pub table_memory_bytes: u64,
    /// Compactions since open (table moves included).
    pub compactions: u64,
    /// Compactions that moved a table down a level without rewriting it: nothing in the level
    /// below overlapped it.
    pub table_moves: u64,
    /// Whether a compaction's merge is under way now.
    pub compacting: bool,
    /// Bytes of tables compactions read and wrote since open: with the log's bytes and the
    /// flushes', the database's write amplification.
    pub compaction_bytes_read: u64,
    /// See [`DbStats::compaction_bytes_read`].
    pub compaction_bytes_written: u64,
    /// [`DbStats::compaction_bytes_written`] by the level written into (entry 0 stays 0:
    /// flushes write level 0), to see which level's merges cost the most.
    pub compaction_bytes_written_per_level: Vec<u64>,
    /// Commits that waited for a flush or a compaction (a write stall: `memtables_max`
    /// memtables, or 36 tables in level 0).
    pub stalls: u64,
    /// Time commits spent in write stalls.
    pub stall_time: std::time::Duration,
    /// Commits slowed down (a sleep of 100 µs per level-0 table over 19) before a stall
    /// became necessary.
    pub slowdowns: u64,
}

/// An embedded transactional key-value store. Cheap to clone (clones share the database).
/// See the [module docs](self) for what it guarantees.
///
/// ```
/// # fn main() -> waldb::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let db = waldb::Db::open(dir.path())?;
/// let mut txn = db.begin()?;
/// txn.put(b"hello", b"world")?;
/// let lsn = txn.commit_blocking()?; // durable and visible from here on
/// assert_eq!(db.get(b"hello")?.as_deref(), Some(&b"world"[..]));
/// db.close()?;
/// # let _ = lsn; Ok(()) }
/// ```
pub struct Db<D: Disk + Clone = StdDisk, C: Clock + Clone = SystemClock> {
    inner: Arc<Inner<D, C>>,
}

impl<D: Disk + Clone, C: Clock + Clone> Clone for Db<D, C> {
    fn clone(&self) -> Self {
        Db { inner: Arc::clone(&self.inner) }
    }
}

impl<D: Disk + Clone, C: Clock + Clone> std::fmt::Debug for Db<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

/// A range of keys with owned bounds (a transaction's scanned range).
pub(crate) type OwnedBound = Bound<Box<[u8]>>;

/// `b`, borrowed.
pub(crate) fn borrowed(b: &OwnedBound) -> Bound<&[u8]> {
    b.as_ref().map(|k| &**k)
}

/// Whether no key can lie in `range`: its start above its end, or equal to it with either
/// bound excluded (a `BTreeMap` panics on the first and on both excluded).
pub(crate) fn range_is_empty(range: (Bound<&[u8]>, Bound<&[u8]>)) -> bool {
    match range {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

pub(crate) struct Inner<D: Disk + Clone, C: Clock + Clone> {
    dir: PathBuf,
    disk: D,
    options: DbOptions,
    /// `options.limits()`, resolved once.
    limits: Limits,
    /// For the waits of [`Db::transact`] between attempts.
    clock: C,
    wal: Wal<D, C>,
    /// The layers reads consult ([`view`]): replaced whole, never changed in place. A freeze
    /// replaces it under the sequencer's lock.
    view: view::ViewCell<D::File>,
    /// The generation of the current view's active memtable ([`View::generation`]), written
    /// under the sequencer's lock: a commit checks under it that it claimed its places in the
    /// active memtable.
    active_generation: AtomicU64,
    sequencer: Mutex<Sequencer>,
    /// The LSN of the last commit whose versions are all in the memtable: written under the
    /// sequencer's lock once they are.
    sequenced: AtomicU64,
    /// Transactions that have read `sequenced` as the watermark for their scanned ranges and
    /// not yet checked them under the sequencer's lock: while there are none, commits note
    /// nothing in [`Sequencer::recent`].
    range_checks: AtomicU64,
    /// Commits not yet visible: (LSN, waits for durability), in LSN order.
    pending: Mutex<VecDeque<(Lsn, bool)>>,
    visible: AtomicU64,
    /// The LSNs live snapshots read at.
    snapshots: Snapshots,
    next_txn: AtomicU64,
    epoch: Mutex<u64>,
    /// The manifest in force; serialises flushes ([`flush`]).
    tree: Mutex<TreeState>,
    /// The mailbox of the flusher and the compactor, where stalled commits wait too.
    mailbox: Arc<Mailbox>,
    /// The flusher and the compactor, when they run on their own threads.
    background: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The block cache of the tables, if enabled.
    cache: Option<Arc<cache::BlockCache>>,
    /// One compaction at a time.
    compacting: Mutex<()>,
    compact_state: Mutex<compact::CompactState<D::File>>,
    compactions: AtomicU64,
    table_moves: AtomicU64,
    /// A compaction's merge is under way.
    compacting_now: AtomicBool,
    compaction_bytes_read: AtomicU64,
    compaction_bytes_written: AtomicU64,
    compaction_bytes_per_level: [AtomicU64; manifest::LEVELS as usize],
    flush_bytes_written: AtomicU64,
    /// Data blocks read from table files for reads, shared by every table.
    block_reads: Arc<AtomicU64>,
    /// Flushed memtables, kept so that the flusher frees them ([`Inner::free_retired`]): the
    /// last reference a reader's view held would otherwise free one on the reader's thread, a
    /// commit waiting 25–115 ms for the frees of a 64 MiB memtable (`examples/snapshot_hold`).
    retired: Mutex<Vec<Arc<memtable::Memtable>>>,
    /// The error of the last flush, until one succeeds.
    last_flush_error: Mutex<Option<Error>>,
    /// Memtables frozen because they were full.
    freezes: AtomicU64,
    /// Commits that waited for a flush, and how long in all.
    stalls: AtomicU64,
    stall_nanos: AtomicU64,
    /// Commits slowed down by a full level 0 (`flush.rs`, `slow_down`).
    slowdowns: AtomicU64,
    commits: AtomicU64,
    conflicts: AtomicU64,
    checkpoints: AtomicU64,
    closed: AtomicBool,
    close_result: Mutex<Option<Result<Lsn>>>,
    /// Held for the database's lifetime: dropping it releases the directory.
    _lock: D::File,
}

impl<D: Disk + Clone, C: Clock + Clone> Db<D, C> {
    /// Begins a transaction with the database's default isolation, reading from a snapshot of
    /// everything visible now.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`Db::close`].
    pub fn begin(&self) -> Result<Transaction<D, C>> {
        self.begin_with(self.inner.options.isolation)
    }

    /// Begins a transaction with `isolation`.
    ///
    /// # Errors
    ///
    /// As [`Db::begin`].
    pub fn begin_with(&self, isolation: Isolation) -> Result<Transaction<D, C>> {
        if self.inner.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let id = self.inner.alloc_txn_id()?;
        let snapshot = self.inner.take_snapshot(id.0);
        Ok(Transaction::new(Arc::clone(&self.inner), id, snapshot, isolation))
    }

    /// Runs `f` in a transaction and commits it with the database's durability (blocking),
    /// returning what `f` returned. When the commit fails with a retryable error
    /// ([`Error::is_retryable`]: a conflict), the whole transaction runs again from a fresh
    /// snapshot — so `f` must do nothing outside the transaction that it cannot repeat — up to
    /// [`DbOptions::txn_retries_max`] more times, after a wait that doubles from a fiftieth of
    /// [`DbOptions::txn_backoff_max`] up to it (less a part that differs between transactions,
    /// so that two that conflicted do not meet again). An error of `f` aborts the transaction
    /// and is returned (run again too if it is retryable).
    ///
    /// ```
    /// # fn main() -> waldb::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = waldb::Db::open(dir.path())?;
    /// // A read-modify-write that concurrent callers may race on: retried on conflict.
    /// let n = db.transact(|txn| {
    ///     let n = txn.get(b"counter")?.map_or(0, |v| v[0]) + 1;
    ///     txn.put(b"counter", &[n])?;
    ///     Ok(n)
    /// })?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// From async code, loop over [`Db::begin`] and `commit().await` instead: this blocks.
    ///
    /// # Errors
    ///
    /// `f`'s error, or the commit's (see [`Transaction::commit`]); a conflict once the retries
    /// are spent.
    pub fn transact<T>(&self, mut f: impl FnMut(&mut Transaction<D, C>) -> Result<T>) -> Result<T> {
        let options = &self.inner.options;
        let mut wait = options.txn_backoff_max / 50;
        let mut attempt = 0u32;
        loop {
            let mut txn = self.begin()?;
            let id = txn.id();
            let result = match f(&mut txn) {
                Ok(value) => txn.commit_blocking().map(|_| value),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < options.txn_retries_max => {
                    attempt += 1;
                    // Between half the wait and all of it, by the transaction id: no random
                    // source outside the seams, and two ids differ in it.
                    let spread = id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54; // 0..1024
                    let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    let jittered = nanos / 2 + (nanos / 2).saturating_mul(spread) / 1024;
                    self.inner.clock.sleep(std::time::Duration::from_nanos(jittered));
                    wait = (wait * 2).min(options.txn_backoff_max);
                }
                other => return other,
            }
        }
    }

    /// Reads `key` from a snapshot of everything visible now. Outside any transaction: a read
    /// here is in no transaction's read set, so nothing validates it against later commits —
    /// read inside [`Db::transact`] or a [`Transaction`] for a read-modify-write.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a key over the limit.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>> {
        self.inner.check_key(key)?;
        let view = self.inner.view.load();
        if !view.has_lower() {
            return Ok(view.active.get_latest(key, || self.visible_lsn()));
        }
        // Below the memtable, versions are dropped by flushes and compactions up to the
        // horizon: read at a registered snapshot.
        let shard = self.inner.next_txn.load(SeqCst);
        let at = self.inner.take_snapshot(shard);
        let found = view.get(key, at);
        self.inner.release_snapshot(shard, at);
        found
    }

    /// Every live pair with a key in `range`, in key order, from a snapshot of everything
    /// visible now. The same range argument as [`Transaction::scan`]; outside any transaction
    /// (see [`Db::get`]).
    ///
    /// ```
    /// # fn main() -> waldb::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = waldb::Db::open(dir.path())?;
    /// db.transact(|txn| {
    ///     txn.put(b"user/1", b"ada")?;
    ///     txn.put(b"user/2", b"grace")
    /// })?;
    /// assert_eq!(db.scan(&b"user/"[..]..&b"user0"[..])?.len(), 2);
    /// assert_eq!(db.scan(..)?.len(), 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for scans that read from disk.
    pub fn scan<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Result<Vec<Pair>> {
        self.scan_limit(range, usize::MAX)
    }

    /// Like [`Db::scan`], stopping after `limit` pairs.
    ///
    /// # Errors
    ///
    /// As [`Db::scan`].
    pub fn scan_limit<'k, R: RangeBounds<&'k [u8]>>(&self, range: R, limit: usize) -> Result<Vec<Pair>> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
            (range.start_bound().map(|k| *k), range.end_bound().map(|k| *k));
        // Any shard will do: the next transaction id spreads scans like transactions.
        let shard = self.inner.next_txn.load(SeqCst);
        let at = self.inner.take_snapshot(shard);
        let out = self.inner.view().range(bounds, at, limit);
        self.inner.release_snapshot(shard, at);
        out
    }

    /// The live pairs with keys in `range`, from a snapshot of everything visible now, as a lazy
    /// double-ended iterator: it reads a chunk at a time from the memtables and the tables, so
    /// a range of any size takes bounded memory ([`iter`](self#files)). Outside any transaction
    /// (see [`Db::get`]).
    ///
    /// ```
    /// # fn main() -> waldb::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = waldb::Db::open(dir.path())?;
    /// db.transact(|txn| {
    ///     for i in 0..10u8 {
    ///         txn.put(&[b'k', i], &[i])?;
    ///     }
    ///     Ok(())
    /// })?;
    /// let mut it = db.range(&b"k\x02"[..]..&b"k\x05"[..]);
    /// assert_eq!(&*it.next().unwrap()?.0, b"k\x02");
    /// assert_eq!(&*it.next_back().unwrap()?.0, b"k\x04");
    /// assert_eq!(it.count(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// The snapshot stays registered until the iterator is dropped: a long-lived one keeps the
    /// versions it can read from being dropped by flushes and compactions.
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> DbRange<D, C> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
            (range.start_bound().map(|k| *k), range.end_bound().map(|k| *k));
        let shard = self.inner.next_txn.load(SeqCst);
        let at = self.inner.take_snapshot(shard);
        DbRange::new(Arc::clone(&self.inner), at, Some(shard), bounds)
    }

    /// [`Db::range`] over the keys that start with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> DbRange<D, C> {
        match iter::prefix_end(prefix) {
            Some(end) => self.range(prefix..&end[..]),
            None => self.range((Bound::Included(prefix), Bound::Unbounded)),
        }
    }

    /// The size limits in force ([`DbOptions::limits`]).
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The visible LSN: a snapshot taken now reads every commit up to it.
    pub fn visible_lsn(&self) -> Lsn {
        Lsn(self.inner.visible.load(SeqCst))
    }

    /// Makes every commit so far durable, whatever its durability, and returns the durable LSN.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log failed.
    pub fn sync(&self) -> Result<Lsn> {
        let lsn = self.inner.wal.sync()?;
        self.inner.advance_visible();
        Ok(lsn)
    }

    /// Flushes everything committed so far to sorted tables and removes the WAL segments they
    /// cover: the memtable is frozen and every frozen memtable written as a table, named by a
    /// durable manifest (see [`flush`](self#files) for the steps and why a crash at any of them
    /// loses nothing). Flushes also happen on their own when a memtable fills
    /// ([`DbOptions::memtable_bytes`]): call this before a backup, or to make the next open
    /// replay nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::StorageFull`] for a failed file operation (the tables and the
    /// log stay valid); [`Error::Poisoned`] if the log failed.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        self.inner.flush_all()
    }

    /// Runs one flusher step of the log (for [`Driver::Manual`](crate::wal::Driver::Manual):
    /// simulators and tests drive the log themselves), then publishes what became visible.
    ///
    /// # Errors
    ///
    /// The step's error (which poisons the log).
    pub fn flush_step(&self) -> Result<crate::wal::StepReport> {
        let r = self.inner.wal.flush_step();
        self.inner.advance_visible();
        r
    }

    /// Runs one segment preparation of the log (for [`Driver::Manual`](crate::wal::Driver::Manual)).
    /// Returns whether it prepared one.
    ///
    /// # Errors
    ///
    /// The preparation's error.
    pub fn prepare_step(&self) -> Result<bool> {
        self.inner.wal.prepare_step()
    }

    /// Counters, read as one snapshot.
    pub fn stats(&self) -> DbStats {
        let i = &self.inner;
        DbStats {
            wal: i.wal.stats(),
            visible_lsn: self.visible_lsn(),
            commits: i.commits.load(SeqCst),
            conflicts: i.conflicts.load(SeqCst),
            keys: {
                let view = i.view();
                let frozen: usize = view.frozen.iter().map(|f| f.memtable.key_count()).sum();
                (view.active.key_count() + frozen) as u64
            },
            checkpoints: i.checkpoints.load(SeqCst),
            checkpoint_lsn: {
                let tree = lock(&i.tree);
                (tree.manifest.generation > 0).then_some(tree.manifest.log_lsn)
            },
            last_checkpoint_error: lock(&i.last_flush_error).as_ref().map(ToString::to_string),
            memtable_bytes: i.view().active.bytes(),
            frozen_memtables: i.view().frozen.len() as u64,
            freezes: i.freezes.load(SeqCst),
            tables: i.view().levels.iter().map(|l| l.len() as u64).sum(),
            tables_per_level: i.view().levels.iter().map(|l| l.len() as u64).collect(),
            table_bytes: i.view().levels.iter().flatten().map(|t| t.record.file_bytes).sum(),
            flush_bytes_written: i.flush_bytes_written.load(SeqCst),
            cache_bytes: i.cache.as_ref().map_or(0, |c| c.bytes()),
            cache_hits: i.cache.as_ref().map_or(0, |c| c.hits()),
            cache_misses: i.cache.as_ref().map_or(0, |c| c.misses()),
            block_reads: i.block_reads.load(SeqCst),
            table_memory_bytes: i.view().levels.iter().flatten().map(|t| t.table.memory_bytes() as u64).sum(),
            compactions: i.compactions.load(SeqCst),
            table_moves: i.table_moves.load(SeqCst),
            compacting: i.compacting_now.load(SeqCst),
            compaction_bytes_read: i.compaction_bytes_read.load(SeqCst),
            compaction_bytes_written: i.compaction_bytes_written.load(SeqCst),
            compaction_bytes_written_per_level: i
                .compaction_bytes_per_level
                .iter()
                .map(|b| b.load(SeqCst))
                .collect(),
            stalls: i.stalls.load(SeqCst),
            slowdowns: i.slowdowns.load(SeqCst),
            stall_time: std::time::Duration::from_nanos(i.stall_nanos.load(SeqCst)),
        }
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &DbOptions {
        &self.inner.options
    }

    /// Closes cleanly: refuses further commits, flushes the memtables to sorted tables if they
    /// hold 1/64 of [`DbOptions::memtable_bytes`] or more (so that the next open replays no
    /// log, or only milliseconds of it: it opens in the time it takes to read the manifest and
    /// the tables' indexes), stops the flusher and the compactor (a compaction under way is
    /// finished first), drains and syncs the log, and returns its durable LSN or the first
    /// error. Later calls return the same result; transactions begun afterwards get
    /// [`Error::Closed`]. The directory stays locked until every handle and transaction is
    /// dropped.
    ///
    /// Dropping the last handle without `close` loses nothing either: the log's own drop
    /// drains and syncs it, and the next open replays what the memtables held (as after a
    /// crash).
    ///
    /// # Errors
    ///
    /// The log's first failure; else the flush's (the log then still holds every commit, and
    /// the next open replays it).
    pub fn close(&self) -> Result<Lsn> {
        self.inner.close()
    }
}

/// Locks `mutex`, ignoring poisoning: the database's structures stay consistent across a
/// panic (each critical section either completes or changes nothing). The database uses the
/// standard library's primitives even under loom, whose models cover the log only.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Versions a commit's [`Inner::maintain`] reclaims at most (a few microseconds of work).
const RECLAIM_PER_COMMIT: usize = 256;

impl<D: Disk + Clone, C: Clock + Clone> Inner<D, C> {
    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.limits.key_bytes_max;
        if key.len() as u64 > u64::from(max) {
            return Err(Error::TooLarge { what: "key", len: key.len() as u64, max: u64::from(max) });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = self.limits.value_bytes_max;
        if value.len() as u64 > u64::from(max) {
            return Err(Error::TooLarge { what: "value", len: value.len() as u64, max: u64::from(max) });
        }
        Ok(())
    }

    /// A fresh transaction id; bumps the epoch (durably) if this one's counter is spent.
    fn alloc_txn_id(&self) -> Result<TxnId> {
        loop {
            let cur = self.next_txn.load(SeqCst);
            if cur & TXN_COUNTER_MASK == TXN_COUNTER_MASK {
                let mut epoch = lock(&self.epoch);
                if self.next_txn.load(SeqCst) == cur {
                    let next = open::bump_epoch(&self.disk, &self.dir)?;
                    *epoch = next;
                    self.next_txn.store(next << TXN_COUNTER_BITS, SeqCst);
                }
                continue;
            }
            if self.next_txn.compare_exchange(cur, cur + 1, SeqCst, SeqCst).is_ok() {
                return Ok(TxnId(cur));
            }
        }
    }

    /// Registers a snapshot at the visible LSN in registry shard `shard` (see
    /// [`snapshots`] for why reclamation never passes it); release it with the same `shard`.
    fn take_snapshot(&self, shard: u64) -> Lsn {
        self.snapshots.take(shard, &self.visible)
    }

    fn release_snapshot(&self, shard: u64, at: Lsn) {
        self.snapshots.release(shard, at);
    }

    /// The oldest LSN any live or future snapshot reads at.
    fn horizon(&self) -> Lsn {
        self.snapshots.horizon(&self.visible)
    }

    /// Moves the visible LSN past every pending commit that may be seen: all non-`Sync` ones and
    /// the durable `Sync` ones, in LSN order.
    fn advance_visible(&self) {
        let durable = self.wal.durable_lsn();
        let mut pending = lock(&self.pending);
        let mut last = None;
        while let Some(&(lsn, sync)) = pending.front() {
            if sync
                && lsn > durable
                && !crate::mutation::active(crate::mutation::Mutation::VisibleBeforeDurable)
            {
                break;
            }
            debug_assert!(last.is_none_or(|l| l < lsn), "pending commits in LSN order: {lsn} after {last:?}");
            pending.pop_front();
            last = Some(lsn);
        }
        if let Some(lsn) = last {
            // Visibility follows LSN order, and never passes a `Sync` commit that is not
            // durable (the negative space: nothing after it became visible either).
            debug_assert!(
                pending.front().is_none_or(|&(next, _)| next > lsn),
                "a commit left pending below the new visible LSN {lsn}"
            );
            self.visible.fetch_max(lsn.0, SeqCst);
        }
    }

    /// The last `Sync` commit before `lsn` that is not durable yet, if `lsn` is not visible:
    /// what `lsn`'s commit waits for before it resolves (visibility follows LSN order, and a
    /// `Sync` commit is visible only once durable).
    /// Advances the visible LSN first, unless it has passed `lsn` already.
    fn visibility_blocker(&self, lsn: Lsn) -> Option<Lsn> {
        // Most committers woken by one sync find their commit made visible by the first of
        // them: they need not queue for the pending list's lock.
        if self.visible.load(SeqCst) >= lsn.0 {
            return None;
        }
        loop {
            self.advance_visible();
            if self.visible.load(SeqCst) >= lsn.0 {
                return None;
            }
            let durable = self.wal.durable_lsn();
            let pending = lock(&self.pending);
            let blocker =
                pending.iter().take_while(|(l, _)| *l < lsn).filter(|(l, sync)| *sync && *l > durable).last();
            if let Some((l, _)) = blocker {
                return Some(*l);
            }
            // It became durable since `advance_visible` looked: advance again. Every pending
            // entry below `lsn` is now a non-`Sync` one or a durable `Sync` one (this commit's
            // own entry is durable if it is `Sync`: its ticket resolved), so the next pass
            // makes `lsn` visible.
        }
    }

    /// The current view.
    fn view(&self) -> Arc<View<D::File>> {
        self.view.load_full()
    }

    /// Reclaims the versions of the active memtable that no snapshot can read any more.
    fn maintain(&self) {
        // The horizon is at or below the visible LSN: when nothing is noted at or below that,
        // there is nothing to reclaim, and the snapshot registry is not visited.
        let view = self.view.load();
        if !view.active.may_reclaim(Lsn(self.visible.load(SeqCst))) {
            return;
        }
        let horizon = self.horizon();
        let dead = view.active.reclaim(horizon, RECLAIM_PER_COMMIT);
        if !dead.is_empty() {
            let _seq = lock(&self.sequencer);
            // A key left with a lone deletion is removed only while nothing lies below its
            // memtable: an older version below would read again without the deletion.
            let current = self.view.load();
            if Arc::ptr_eq(&current.active, &view.active) && !current.has_lower() {
                view.active.remove_dead(&dead, horizon);
            }
        }
    }

    /// Notes a commit acknowledged.
    fn note_committed(&self) {
        self.commits.fetch_add(1, SeqCst);
    }

    fn close(&self) -> Result<Lsn> {
        let mut result = lock(&self.close_result);
        if let Some(r) = &*result {
            return match r {
                Ok(l) => Ok(*l),
                Err(e) => Err(e.clone_lossy()),
            };
        }
        self.closed.store(true, SeqCst);
        // Commits sequenced after the freeze (begun before `closed` was set) stay in the log
        // and are replayed by the next open.
        let flushed = if self.wal.stats().healthy && self.worth_flushing_at_close() {
            self.flush_memtables().map(|_| ())
        } else {
            Ok(())
        };
        self.mailbox.shut_down();
        let threads = std::mem::take(&mut *lock(&self.background));
        for h in threads {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        // Replaced tables that a view still read when their compaction ended: no compaction
        // is left to delete them.
        self.sweep_graveyard();
        self.free_retired();
        let r = self.wal.close().and_then(|l| flushed.map(|()| l));
        self.advance_visible();
        *result = Some(match &r {
            Ok(l) => Ok(*l),
            Err(e) => Err(e.clone_lossy()),
        });
        r
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Drop for Inner<D, C> {
    fn drop(&mut self) {
        // The flusher ends on its own; the log's own drop drains and syncs.
        self.mailbox.shut_down();
    }
}
