//! [`Transaction`] and [`Commit`]: reads from a snapshot, buffered writes, validation and the
//! wait for durability.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::task::{Context, Poll};

use super::Key;
use super::iter::{DbRange, TxnRange};
use super::memtable::Value;
use super::view::View;
use super::{Inner, Isolation, OwnedBound, Pair, borrowed, lock};
use crate::clock::{Clock, SystemClock};
use crate::disk::{Disk, StdDisk};
use crate::error::{ConflictOn, Error, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::{Durability, Op, RecordKind, Ticket, encode_txn, encode_txn_ops};

/// A transaction: reads from the snapshot taken when it began (its own writes first), writes
/// buffered until [`Transaction::commit`]. Dropping it, or [`Transaction::abort`], discards
/// the writes.
///
/// Under [`Isolation::Serializable`] every key read and every range scanned is remembered, and
/// the commit fails with [`Error::Conflict`] if a transaction that committed after the snapshot
/// wrote any of them (or any key this one writes).
pub struct Transaction<D: Disk + Clone = StdDisk, C: Clock + Clone = SystemClock> {
    db: Arc<Inner<D, C>>,
    id: TxnId,
    snapshot: Lsn,
    isolation: Isolation,
    writes: BTreeMap<Key, Option<Value>>,
    /// Encoded size of the transaction record so far.
    payload_bytes: u64,
    reads: BTreeSet<Box<[u8]>>,
    ranges: Vec<(OwnedBound, OwnedBound)>,
    /// Set once the snapshot was released (committed or aborted).
    finished: bool,
}

impl<D: Disk + Clone, C: Clock + Clone> std::fmt::Debug for Transaction<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .field("snapshot", &self.snapshot)
            .field("isolation", &self.isolation)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

fn owned(b: Bound<&[u8]>) -> OwnedBound {
    match b {
        Bound::Included(k) => Bound::Included(k.into()),
        Bound::Excluded(k) => Bound::Excluded(k.into()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// `12` bytes of transaction header; each op adds its tag, lengths, key and value.
const TXN_FIXED_BYTES: u64 = 12;

fn op_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    1 + 4 + key.len() as u64 + value.map_or(0, |v| 4 + v.len() as u64)
}

impl<D: Disk + Clone, C: Clock + Clone> Transaction<D, C> {
    pub(super) fn new(db: Arc<Inner<D, C>>, id: TxnId, snapshot: Lsn, isolation: Isolation) -> Self {
        Transaction {
            db,
            id,
            snapshot,
            isolation,
            writes: BTreeMap::new(),
            payload_bytes: TXN_FIXED_BYTES,
            reads: BTreeSet::new(),
            ranges: Vec::new(),
            finished: false,
        }
    }

    /// This transaction's id (unique for the life of the database, across restarts).
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// The LSN its snapshot reads at.
    pub fn snapshot_lsn(&self) -> Lsn {
        self.snapshot
    }

    /// Reads `key`: this transaction's own write if it made one, else the snapshot's value.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a key over the limit.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Arc<[u8]>>> {
        self.db.check_key(key)?;
        if let Some(own) = self.writes.get(key) {
            return Ok(own.clone());
        }
        if self.isolation == Isolation::Serializable && !self.reads.contains(key) {
            self.reads.insert(key.into());
        }
        self.db.view().get(key, self.snapshot)
    }

    /// Sets `key` to `value` when the transaction commits.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a key or value over its limit, or a transaction that would
    /// exceed [`Limits::txn_bytes_max`](super::Limits::txn_bytes_max).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.check_key(key)?;
        self.db.check_value(value)?;
        self.write(key, Some(Value::from(value)))
    }

    /// Removes `key` when the transaction commits.
    ///
    /// # Errors
    ///
    /// As [`Transaction::put`].
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.db.check_key(key)?;
        self.write(key, None)
    }

    fn write(&mut self, key: &[u8], value: Option<Value>) -> Result<()> {
        let new = op_bytes(key, value.as_deref());
        let max = u64::from(self.db.limits.txn_bytes_max);
        // One search: the key is shared (`Arc`) before it is known to be new, which costs an
        // allocation only when a transaction writes the same key twice.
        let entry = self.writes.entry(key.into());
        let old = match &entry {
            Entry::Occupied(o) => op_bytes(key, o.get().as_deref()),
            Entry::Vacant(_) => 0,
        };
        let total = self.payload_bytes - old + new;
        if total > max {
            return Err(Error::TooLarge { what: "transaction", len: total, max });
        }
        self.payload_bytes = total;
        *entry.or_insert(None) = value;
        Ok(())
    }

    /// Every live pair with a key in `range`, in key order, as this transaction sees them.
    ///
    /// ```
    /// # fn main() -> waldb::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = waldb::Db::open(dir.path())?;
    /// let mut txn = db.begin()?;
    /// txn.put(b"a1", b"x")?;
    /// txn.put(b"b1", b"y")?;
    /// let pairs = txn.scan(&b"a"[..]..&b"b"[..])?;
    /// assert_eq!(pairs.len(), 1);
    /// let (key, value) = &pairs[0]; // a `waldb::Key` (derefs to `[u8]`) and an `Arc<[u8]>`
    /// assert_eq!((&**key, &**value), (&b"a1"[..], &b"x"[..]));
    /// assert_eq!(*key, b"a1");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for scans that read from disk.
    pub fn scan<'k, R: RangeBounds<&'k [u8]>>(&mut self, range: R) -> Result<Vec<Pair>> {
        self.scan_limit(range, usize::MAX)
    }

    /// Like [`Transaction::scan`], stopping after `limit` pairs. Under `Serializable` only the
    /// part of the range actually read counts for validation.
    ///
    /// # Errors
    ///
    /// As [`Transaction::scan`].
    pub fn scan_limit<'k, R: RangeBounds<&'k [u8]>>(&mut self, range: R, limit: usize) -> Result<Vec<Pair>> {
        let start = range.start_bound().map(|k| *k);
        let end = range.end_bound().map(|k| *k);
        let bounds = (start, end);
        // Own deletions can hide at most this many of the snapshot's pairs.
        if super::range_is_empty(bounds) {
            return Ok(Vec::new());
        }
        let own: Vec<(&Key, &Option<Value>)> = self.writes.range::<[u8], _>(bounds).collect();
        let hidden = own.iter().filter(|(_, v)| v.is_none()).count();
        let base = self.db.view().range(bounds, self.snapshot, limit.saturating_add(hidden))?;
        let mut out: Vec<Pair> = Vec::with_capacity(limit.min(base.len() + own.len()));
        let (mut i, mut j) = (0, 0);
        while out.len() < limit && (i < base.len() || j < own.len()) {
            let take_own = match (base.get(i), own.get(j)) {
                (Some((bk, _)), Some((ok, _))) => {
                    if ***ok <= **bk {
                        if ***ok == **bk {
                            i += 1;
                        }
                        true
                    } else {
                        false
                    }
                }
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => unreachable!("loop condition"),
            };
            if take_own {
                let (k, v) = own[j];
                j += 1;
                if let Some(v) = v {
                    out.push((Key::clone(k), Arc::clone(v)));
                }
            } else {
                let (k, v) = &base[i];
                i += 1;
                out.push((k.clone(), Arc::clone(v)));
            }
        }
        if self.isolation == Isolation::Serializable {
            // A scan cut short by `limit` read only up to its last key.
            let read_end =
                if out.len() >= limit { out.last().map_or(end, |(k, _)| Bound::Included(&**k)) } else { end };
            self.ranges.push((owned(start), owned(read_end)));
        }
        Ok(out)
    }

    /// The live pairs with keys in `range` as this transaction sees them (its own writes
    /// included), as a lazy double-ended iterator (see [`Db::range`](super::Db::range)). Under
    /// `Serializable`, the part of the range the iterator actually consumed — from each end to
    /// the last key it yielded, or all of it once an end ran out — is validated at commit, as a
    /// scanned range is.
    ///
    /// ```
    /// # fn main() -> waldb::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = waldb::Db::open(dir.path())?;
    /// db.transact(|txn| txn.put(b"user/1", b"ada"))?;
    /// let mut txn = db.begin()?;
    /// txn.put(b"user/2", b"grace")?;
    /// let names: Vec<_> = txn.prefix(b"user/").map(|p| p.map(|(_, v)| v)).collect::<waldb::Result<_>>()?;
    /// assert_eq!(names.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&mut self, range: R) -> TxnRange<'_, D, C> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
            (range.start_bound().map(|k| *k), range.end_bound().map(|k| *k));
        let own: std::collections::VecDeque<(Key, Option<Value>)> = if super::range_is_empty(bounds) {
            std::collections::VecDeque::new()
        } else {
            self.writes.range::<[u8], _>(bounds).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let base = DbRange::new(Arc::clone(&self.db), self.snapshot, None, bounds);
        let ranges = (self.isolation == Isolation::Serializable).then_some(&mut self.ranges);
        TxnRange::new(base, own, ranges)
    }

    /// [`Transaction::range`] over the keys that start with `prefix`.
    pub fn prefix(&mut self, prefix: &[u8]) -> TxnRange<'_, D, C> {
        match super::iter::prefix_end(prefix) {
            Some(end) => self.range(prefix..&end[..]),
            None => self.range((Bound::Included(prefix), Bound::Unbounded)),
        }
    }

    /// Commits with the database's default durability. Validation and LSN assignment happen
    /// now; the returned [`Commit`] resolves (awaited on any executor, or with
    /// [`Commit::wait`]) to the commit LSN once the durability is met and the commit is
    /// visible. A transaction that wrote nothing resolves at once to its snapshot LSN.
    ///
    /// # Errors (when the `Commit` resolves)
    ///
    /// Nothing was written, certainly, after [`Error::Conflict`] (validation failed: run the
    /// transaction again), [`Error::Poisoned`] (the log had failed before this commit reached
    /// it), [`Error::Closed`] (after [`Db::close`](super::Db::close)) or
    /// [`Error::TooLarge`]. [`Error::CommitUnknown`]: the commit reached the log, then the log
    /// failed; it may or may not be durable.
    pub fn commit(self) -> Commit<D, C> {
        let durability = self.db.options.durability;
        self.commit_with(durability)
    }

    /// Commits with `durability` for this transaction only.
    pub fn commit_with(mut self, durability: Durability) -> Commit<D, C> {
        let db = Arc::clone(&self.db);
        let (state, lsn) = match self.sequence(durability) {
            Ok(Some(ticket)) => {
                let lsn = ticket.lsn();
                (State::Waiting(ticket), Some(lsn))
            }
            Ok(None) => (State::Ready(Some(Ok(self.snapshot))), None),
            Err(e) => (State::Ready(Some(Err(e))), None),
        };
        self.finish();
        Commit { db, state, lsn }
    }

    /// Commits and blocks until the result is known: `commit().wait()`.
    ///
    /// # Errors
    ///
    /// As [`Transaction::commit`].
    pub fn commit_blocking(self) -> Result<Lsn> {
        self.commit().wait()
    }

    /// Discards the transaction's writes (as dropping it does).
    pub fn abort(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.db.release_snapshot(self.id.0, self.snapshot);
        }
    }

    /// The conflict of the first scanned range in which `written_after` finds a key.
    fn range_conflict(
        &self,
        written_after: impl Fn((Bound<&[u8]>, Bound<&[u8]>)) -> Option<Key>,
    ) -> Option<Conflict> {
        self.ranges
            .iter()
            .find_map(|(s, e)| written_after((borrowed(s), borrowed(e))))
            .map(|k| range_conflict(&k))
    }

    /// Counts a failed validation; the error for it.
    fn conflict(&self, found: Conflict) -> Error {
        self.db.conflicts.fetch_add(1, SeqCst);
        let Conflict { key, on, reason } = found;
        Error::Conflict { key, on, reason }
    }

    /// The serial step: validate, append, install versions. No I/O happens here unless the
    /// log's queue is full (back-pressure).
    fn sequence(&mut self, durability: Durability) -> Result<Option<Ticket>> {
        if self.db.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        if self.writes.is_empty() {
            return Ok(None);
        }
        let ops = self.writes.iter().map(|(k, v)| match v {
            Some(v) => Op::Put { key: k, value: v },
            None => Op::Delete { key: k },
        });
        // Into a buffer the log has written before: steady commits allocate nothing here.
        let mut payload = self.db.wal.buffer();
        payload.reserve(usize::try_from(self.payload_bytes).unwrap_or(0));
        encode_txn_ops(&mut payload, self.id, ops.clone());
        debug_assert_eq!(payload.len() as u64, self.payload_bytes);
        let mut payload = Some(payload);
        // The layers as of now. A freeze (under the sequencer's lock) replaces the active
        // memtable: a commit that finds it replaced under the lock starts over.
        loop {
            let view = self.db.view.load();
            if self.db.needs_room(&view) {
                // Back-pressure: wait while too many memtables wait for their flush.
                self.db.wait_for_room()?;
                continue;
            }
            if let Some(done) = self.sequence_in(&view, durability, &mut payload) {
                return done;
            }
        }
    }

    /// [`Transaction::sequence`] on `view`: `None` if a freeze replaced its active memtable
    /// before the sequencer's lock was taken (nothing was done; try again on the new view).
    fn sequence_in(
        &mut self,
        view: &View<D::File>,
        durability: Durability,
        payload: &mut Option<Vec<u8>>,
    ) -> Option<Result<Option<Ticket>>> {
        let ops = self.writes.iter().map(|(k, v)| match v {
            Some(v) => Op::Put { key: k, value: v },
            None => Op::Delete { key: k },
        });
        let db = &*self.db;
        let serializable = self.isolation == Isolation::Serializable;
        let (mut seq, slots, conflict) = {
            // The scanned ranges against the memtable, outside the lock: every commit at or below
            // `watermark` has its versions there; those above it are checked under the lock.
            let checking =
                (serializable && !self.ranges.is_empty()).then(|| RangeCheck::enter(&db.range_checks));
            let watermark = Lsn(db.sequenced.load(SeqCst));
            let ranges = serializable
                .then(|| self.range_conflict(|r| view.active.first_written_after(r, self.snapshot)));
            // Below the active memtable nothing is written any more: the newest versions there,
            // looked up now (they may need table reads), stay the newest under the lock unless a
            // freeze moved the active memtable down, which is checked there.
            let lower_ranges = if serializable && !self.ranges.is_empty() && view.has_lower() {
                let found = self.ranges.iter().find_map(|(s, e)| {
                    view.first_written_after_below_active((borrowed(s), borrowed(e)), self.snapshot)
                        .map(|k| k.map(|k| range_conflict(&k)))
                        .transpose()
                });
                match found.transpose() {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                None
            };
            // With nothing below the active memtable (most commits), nothing is looked up or
            // allocated here: the lists stay empty and read as `None`.
            let (lower_reads, lower_writes) = if view.has_lower() {
                let reads: Result<Vec<Option<Lsn>>> = self
                    .reads
                    .iter()
                    .filter(|_| serializable)
                    .map(|k| view.newest_lsn_below_active(k))
                    .collect();
                let writes: Result<Vec<Option<Lsn>>> =
                    self.writes.keys().map(|k| view.newest_lsn_below_active(k)).collect();
                match (reads, writes) {
                    (Ok(r), Ok(w)) => (r, w),
                    (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
                }
            } else {
                (Vec::new(), Vec::new())
            };
            // The places of the keys read and written, outside the lock: one search per key (and a
            // new key's node allocated) here, so that the serial step searches for none of them.
            let read_slots: Vec<_> =
                self.reads.iter().filter(|_| serializable).map(|k| view.active.slot(k)).collect();
            let mut slots: Vec<_> = self.writes.keys().map(|k| view.active.claim(k)).collect();
            let seq = super::lock_spinning(&db.sequencer);
            if db.active_generation.load(SeqCst) != view.generation {
                view.active.release(slots);
                return None;
            }
            // The points, under the lock: the newest version of a key is its last write.
            slots.iter_mut().zip(self.writes.keys()).for_each(|(s, k)| view.active.confirm(s, k));
            let written_after = |k: &[u8], newest: Option<Lsn>, on: ConflictOn| {
                newest.filter(|l| *l > self.snapshot).map(|l| conflict_on_key(k, l, on))
            };
            let conflict = self
                .reads
                .iter()
                .zip(&read_slots)
                .zip(lower_reads.iter().copied().chain(std::iter::repeat(None)))
                .find_map(|((k, s), lower)| {
                    written_after(k, view.active.newest_lsn_in(s, k).or(lower), ConflictOn::Read)
                })
                .or_else(|| {
                    let mut writes = self
                        .writes
                        .keys()
                        .zip(&slots)
                        .zip(lower_writes.iter().copied().chain(std::iter::repeat(None)));
                    writes.find_map(|((k, s), lower)| {
                        written_after(k, s.newest_lsn().or(lower), ConflictOn::Write)
                    })
                })
                .or(ranges.flatten())
                .or(lower_ranges)
                .or_else(|| {
                    if !serializable || self.ranges.is_empty() {
                        return None;
                    }
                    match seq.range_written_above(&self.ranges, watermark) {
                        Some(key) => key.map(range_conflict),
                        // Entries above the watermark were dropped: the whole check again, here
                        // (in the active memtable: the layers below were checked above).
                        None => self.range_conflict(|r| view.active.first_written_after(r, self.snapshot)),
                    }
                });
            drop(checking);
            (seq, slots, conflict)
        };
        if let Some(found) = conflict {
            view.active.release(slots);
            drop(seq);
            return Some(Err(self.conflict(found)));
        }
        let appended = if crate::mutation::active(crate::mutation::Mutation::TornTransaction) && ops.len() > 1
        {
            ops.map(|op| {
                let mut one = Vec::new();
                encode_txn(&mut one, self.id, std::slice::from_ref(&op));
                db.wal.append_with(RecordKind::Txn, &one, durability)
            })
            .try_fold(None, |_, t| t.map(Some))
            .map(|last| last.expect("more than one operation"))
        } else {
            db.wal.append_owned_unkicked(RecordKind::Txn, payload.take().expect("appended once"), durability)
        };
        let ticket = match appended {
            Ok(ticket) => ticket,
            Err(e) => {
                view.active.release(slots);
                return Some(Err(e));
            }
        };
        let lsn = ticket.lsn();
        debug_assert_eq!(slots.len(), self.writes.len());
        for ((k, v), slot) in self.writes.iter().zip(slots) {
            view.active.insert_at(slot, k, lsn, v.clone());
        }
        lock(&db.pending).push_back((lsn, durability == Durability::Sync));
        db.sequenced.store(lsn.0, SeqCst);
        // A full memtable is frozen here, between commits: no commit has claimed places in it
        // and not yet inserted into them.
        let froze = db.active_full(view) && db.freeze(lsn);
        if froze {
            db.freezes.fetch_add(1, SeqCst);
        }
        // After the store: see `Sequencer` for why a commit that reads no checkers may note
        // nothing.
        if db.range_checks.load(SeqCst) > 0 {
            self.writes.keys().for_each(|k| seq.note(lsn, k));
        } else {
            seq.forget();
        }
        drop(seq);
        // Outside the sequencer: the wake-up of the background thread is a system call.
        db.wal.kick_if_waiting(durability);
        if froze {
            db.mailbox.request();
        }
        Some(Ok(Some(ticket)))
    }
}

/// A transaction counted in `Inner::range_checks` from before it reads the watermark until
/// it is dropped, after its check under the sequencer's lock.
struct RangeCheck<'a>(&'a AtomicU64);

impl<'a> RangeCheck<'a> {
    fn enter(checks: &'a AtomicU64) -> Self {
        checks.fetch_add(1, SeqCst);
        RangeCheck(checks)
    }
}

impl Drop for RangeCheck<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// What validation found: the parts of an [`Error::Conflict`].
struct Conflict {
    key: Box<[u8]>,
    on: ConflictOn,
    reason: String,
}

fn range_conflict(key: &[u8]) -> Conflict {
    let reason = format!("a key in a scanned range ({}) was written after the snapshot", show(key));
    Conflict { key: key.into(), on: ConflictOn::ScannedRange, reason }
}

fn conflict_on_key(key: &[u8], lsn: Lsn, on: ConflictOn) -> Conflict {
    let how = if on == ConflictOn::Read { "read" } else { "written" };
    let reason =
        format!("key {} ({how} here) was written by the commit at LSN {lsn}, after the snapshot", show(key));
    Conflict { key: key.into(), on, reason }
}

/// A key for an error message: text if it is printable, else hex; at most 64 bytes.
fn show(key: &[u8]) -> String {
    let cut = &key[..key.len().min(64)];
    let more = if key.len() > 64 { "…" } else { "" };
    if cut.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}{more}", String::from_utf8_lossy(cut))
    } else {
        let hex: String = cut.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}{more}")
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Drop for Transaction<D, C> {
    fn drop(&mut self) {
        self.finish();
    }
}

enum State {
    Ready(Option<Result<Lsn>>),
    /// Waiting for the commit's own durability.
    Waiting(Ticket),
    /// Durable as asked (or acknowledged, for `Buffered` and `None`) but not yet visible: an
    /// earlier `Sync` commit is not durable yet, and visibility follows LSN order. Waiting for
    /// that commit's sync (`ticket`) before resolving to `lsn`.
    Blocked {
        lsn: Lsn,
        ticket: Ticket,
    },
}

/// A commit in flight: resolves to the commit LSN once its durability is met and it is visible,
/// or to the error that prevented it. Await it on any executor, or [`Commit::wait`] from
/// blocking code. Dropping it does not cancel the commit.
#[must_use = "a commit's outcome is only known by waiting on it"]
pub struct Commit<D: Disk + Clone = StdDisk, C: Clock + Clone = SystemClock> {
    db: Arc<Inner<D, C>>,
    state: State,
    /// The LSN the commit was sequenced at, if it was.
    lsn: Option<Lsn>,
}

impl<D: Disk + Clone, C: Clock + Clone> std::fmt::Debug for Commit<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Ready(_) => "ready",
            State::Waiting(_) => "waiting",
            State::Blocked { .. } => "blocked",
        };
        f.debug_struct("Commit").field("state", &state).finish_non_exhaustive()
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Commit<D, C> {
    /// The LSN this commit was given, known as soon as [`Transaction::commit`] returns: `None`
    /// if it wrote nothing or was refused before reaching the log (a conflict, a closed
    /// database). A commit with an LSN that then fails resolves to [`Error::CommitUnknown`]
    /// with this LSN: after a crash it is wholly present or wholly absent, and present only if
    /// every commit before this LSN is.
    pub fn lsn(&self) -> Option<Lsn> {
        self.lsn
    }

    /// Blocks until the outcome is known.
    ///
    /// # Errors
    ///
    /// As [`Transaction::commit`].
    pub fn wait(mut self) -> Result<Lsn> {
        loop {
            let (r, blocked) = match std::mem::replace(&mut self.state, State::Ready(None)) {
                State::Ready(r) => return r.expect("a commit resolves once"),
                State::Waiting(ticket) => (ticket.wait(), None),
                State::Blocked { lsn, ticket } => (ticket.wait(), Some(lsn)),
            };
            if let Some(r) = self.settle(r, blocked) {
                return r;
            }
        }
    }

    /// After a ticket resolved: publish visibility; resolve once the commit is visible, or
    /// move to [`State::Blocked`] on the earlier `Sync` commit that holds it back (`None`).
    fn settle(&mut self, r: Result<Lsn>, blocked: Option<Lsn>) -> Option<Result<Lsn>> {
        let lsn = match r {
            Ok(lsn) => blocked.unwrap_or(lsn),
            Err(cause) => {
                // It has a ticket, so it reached the log: whether it is durable is unknown.
                let lsn = self.lsn.expect("a commit with a ticket was sequenced");
                return Some(Err(Error::CommitUnknown { lsn, cause: Arc::new(cause) }));
            }
        };
        if let Some(blocker) = self.db.visibility_blocker(lsn) {
            self.state = State::Blocked { lsn, ticket: self.db.wal.sync_ticket(blocker) };
            return None;
        }
        self.db.note_committed();
        self.db.maintain();
        Some(Ok(lsn))
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Future for Commit<D, C> {
    type Output = Result<Lsn>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        loop {
            let (r, blocked) = match &mut self.state {
                State::Ready(r) => return Poll::Ready(r.take().expect("polled after completion")),
                State::Waiting(ticket) => match Pin::new(ticket).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => (r, None),
                },
                State::Blocked { lsn, ticket } => match Pin::new(ticket).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => (r, Some(*lsn)),
                },
            };
            self.state = State::Ready(None);
            if let Some(r) = self.settle(r, blocked) {
                return Poll::Ready(r);
            }
        }
    }
}
