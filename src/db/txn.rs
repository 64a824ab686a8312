//! [`Transaction`] and [`Commit`]: reads from a snapshot, buffered writes, validation and the
//! wait for durability.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Key;
use super::iter::{DbRange, TxnRange};
use super::memtable::Value;
use super::{Inner, Isolation, OwnedBound, Pair};
use crate::clock::{Clock, SystemClock};
use crate::disk::{Disk, StdDisk};
use crate::error::{Error, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::{Durability, Ticket};

/// A transaction: reads from the snapshot taken when it began (its own writes first), writes
/// buffered until [`Transaction::commit`]. Dropping it, or [`Transaction::abort`], discards
/// the writes.
///
/// Under [`Isolation::Serializable`] every key read and every range scanned is remembered, and
/// the commit fails with [`Error::Conflict`] if a transaction that committed after the snapshot
/// wrote any of them (or any key this one writes).
pub struct Transaction<D: Disk + Clone = StdDisk, C: Clock + Clone = SystemClock> {
    pub(super) db: Arc<Inner<D, C>>,
    pub(super) id: TxnId,
    pub(super) snapshot: Lsn,
    pub(super) isolation: Isolation,
    pub(super) writes: BTreeMap<Key, Option<Value>>,
    /// Encoded size of the transaction record so far.
    pub(super) payload_bytes: u64,
    pub(super) reads: BTreeSet<Box<[u8]>>,
    pub(super) ranges: Vec<(OwnedBound, OwnedBound)>,
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
