//! Streaming iterators: [`DbRange`] ([`Db::range`](super::Db::range),
//! [`Db::prefix`](super::Db::prefix)) and [`TxnRange`]
//! ([`Transaction::range`](super::Transaction::range), [`Transaction::prefix`](super::Transaction::prefix)).
//!
//! ```text
//!  lo ──▶ front chunk (≤ 256 pairs) ...            ... back chunk (≤ 256 pairs) ◀── hi
//!         each fetch merges the memtables and the tables at the snapshot, between the bounds
//!         the two ends have reached so far
//! ```
//!
//! - **Lazy and bounded.** Pairs are fetched in chunks of at most [`CHUNK`] from each end (32
//!   first, then four times more each time), so an iterator over any range holds at most two
//!   chunks and a short one decodes few blocks; the layers are read again (from the
//!   current view) for each chunk, so a long iteration does not keep old memtables alive.
//! - **A snapshot.** Every pair comes from the snapshot taken when the iterator was made
//!   (registered, so no flush or compaction drops what it reads), in key order from the front,
//!   reverse from the back; the two ends never yield a key twice, and meet.
//! - **Errors are items.** A failed read of a table is an `Err` item; the iterator ends after it.
//! - **A transaction sees its own writes**, and under `Serializable` the part of the range it
//!   actually consumed counts for validation (phantom protection, as for scans).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use super::key::Key;
use super::memtable::Value;
use super::{Inner, OwnedBound, Pair, borrowed};
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::Result;
use crate::types::Lsn;

/// The most pairs one fetch reads from one end.
pub const CHUNK: usize = 256;

/// The pairs the first fetch from an end reads: each later fetch from that end reads four
/// times more, up to [`CHUNK`] — a short read (a seek and the next few pairs) decodes few
/// blocks, a long one fetches rarely.
const FIRST_CHUNK: usize = 32;

/// A lazy, double-ended iterator over the live pairs of a key range at a snapshot: see
/// [`Db::range`](super::Db::range).
pub struct DbRange<D: Disk + Clone, C: Clock + Clone> {
    db: Arc<Inner<D, C>>,
    at: Lsn,
    /// The registry shard of the snapshot this iterator registered, if it did (a
    /// transaction's iterator reads at the transaction's).
    shard: Option<u64>,
    /// What neither end has fetched yet.
    lo: OwnedBound,
    hi: OwnedBound,
    /// Fetched from the front, ascending.
    front: VecDeque<Pair>,
    /// Fetched from the back, descending.
    back: VecDeque<Pair>,
    /// Nothing is left between `lo` and `hi`.
    drained: bool,
    /// A read failed: the iterator has ended.
    failed: bool,
    /// The size of the next fetch from the front and from the back.
    chunk: [usize; 2],
}

impl<D: Disk + Clone, C: Clock + Clone> std::fmt::Debug for DbRange<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbRange").field("at", &self.at).finish_non_exhaustive()
    }
}

fn owned(b: Bound<&[u8]>) -> OwnedBound {
    b.map(Box::from)
}

impl<D: Disk + Clone, C: Clock + Clone> DbRange<D, C> {
    /// An iterator over `range` at the snapshot `at`, released (if `shard` is set) when it is
    /// dropped.
    pub(super) fn new(
        db: Arc<Inner<D, C>>,
        at: Lsn,
        shard: Option<u64>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> Self {
        DbRange {
            db,
            at,
            shard,
            lo: owned(range.0),
            hi: owned(range.1),
            front: VecDeque::new(),
            back: VecDeque::new(),
            drained: false,
            failed: false,
            chunk: [FIRST_CHUNK; 2],
        }
    }

    /// The LSN of the snapshot it reads.
    pub fn snapshot_lsn(&self) -> Lsn {
        self.at
    }

    /// Fetches the next chunk from one end: `false` if nothing is left between the bounds.
    fn fetch(&mut self, from_back: bool) -> Result<bool> {
        if self.drained {
            return Ok(false);
        }
        let view = self.db.view();
        let range = (borrowed(&self.lo), borrowed(&self.hi));
        let limit = self.chunk[usize::from(from_back)];
        self.chunk[usize::from(from_back)] = (limit * 4).min(CHUNK);
        let chunk = if from_back {
            view.range_rev(range, self.at, limit)?
        } else {
            view.range(range, self.at, limit)?
        };
        let Some((last, _)) = chunk.last() else {
            self.drained = true;
            return Ok(false);
        };
        let bound = Bound::Excluded(Box::from(&**last));
        // A short chunk read everything between the bounds (the other end only ever narrows
        // them): the next fetch from either end would find nothing.
        self.drained = chunk.len() < limit;
        if from_back {
            self.hi = bound;
            self.back.extend(chunk);
        } else {
            self.lo = bound;
            self.front.extend(chunk);
        }
        Ok(true)
    }

    fn step(&mut self, from_back: bool) -> Option<Result<Pair>> {
        if self.failed {
            return None;
        }
        loop {
            let own = if from_back { self.back.pop_front() } else { self.front.pop_front() };
            if let Some(p) = own {
                return Some(Ok(p));
            }
            match self.fetch(from_back) {
                Ok(true) => {}
                Ok(false) => {
                    // What the other end fetched and has not yielded is all that is left.
                    return if from_back { self.front.pop_back() } else { self.back.pop_back() }.map(Ok);
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Iterator for DbRange<D, C> {
    type Item = Result<Pair>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> DoubleEndedIterator for DbRange<D, C> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Drop for DbRange<D, C> {
    fn drop(&mut self) {
        if let Some(shard) = self.shard {
            self.db.release_snapshot(shard, self.at);
        }
    }
}

/// The successor of every key starting with `prefix`: the prefix with its trailing `0xff` bytes
/// dropped and its last byte raised by one, or `None` (unbounded) if it is all `0xff`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One end's item and where it came from.
enum Side {
    Own,
    Base,
}

/// A transaction's iterator over a key range: its snapshot merged with its own writes; see
/// [`Transaction::range`](super::Transaction::range).
pub struct TxnRange<'t, D: Disk + Clone, C: Clock + Clone> {
    /// Where the consumed range is recorded (under `Serializable`) when the iterator is dropped.
    ranges: Option<&'t mut Vec<(OwnedBound, OwnedBound)>>,
    base: DbRange<D, C>,
    /// The transaction's own writes in the range, ascending; consumed from both ends.
    own: VecDeque<(Key, Option<Value>)>,
    /// The next pair of `base` from each end, peeked.
    base_front: Option<Pair>,
    base_back: Option<Pair>,
    /// `base` has nothing more for the front (or the back) beyond what is peeked.
    base_front_done: bool,
    base_back_done: bool,
    lo: OwnedBound,
    hi: OwnedBound,
    /// The last key each end yielded, and whether an end ran out (everything was consumed).
    front_last: Option<Key>,
    back_last: Option<Key>,
    exhausted: bool,
    failed: bool,
}

impl<D: Disk + Clone, C: Clock + Clone> std::fmt::Debug for TxnRange<'_, D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnRange").field("at", &self.base.at).finish_non_exhaustive()
    }
}

impl<'t, D: Disk + Clone, C: Clock + Clone> TxnRange<'t, D, C> {
    pub(super) fn new(
        base: DbRange<D, C>,
        own: VecDeque<(Key, Option<Value>)>,
        ranges: Option<&'t mut Vec<(OwnedBound, OwnedBound)>>,
    ) -> Self {
        let (lo, hi) = (base.lo.clone(), base.hi.clone());
        TxnRange {
            ranges,
            base,
            own,
            base_front: None,
            base_back: None,
            base_front_done: false,
            base_back_done: false,
            lo,
            hi,
            front_last: None,
            back_last: None,
            exhausted: false,
            failed: false,
        }
    }

    /// The next pair of `base` for one end, peeked: from its own slot, else pulled, else (when
    /// `base` has nothing more from that end) the other end's slot.
    fn peek_base(&mut self, from_back: bool) -> Result<Option<&Pair>> {
        let (slot, done) = if from_back {
            (&mut self.base_back, &mut self.base_back_done)
        } else {
            (&mut self.base_front, &mut self.base_front_done)
        };
        if slot.is_none() && !*done {
            let pulled = if from_back { self.base.next_back() } else { self.base.next() };
            match pulled {
                Some(Ok(p)) => *slot = Some(p),
                Some(Err(e)) => return Err(e),
                None => *done = true,
            }
        }
        let (mine, other) =
            if from_back { (&self.base_back, &self.base_front) } else { (&self.base_front, &self.base_back) };
        Ok(mine.as_ref().or(other.as_ref()))
    }

    fn take_base(&mut self, from_back: bool) -> Option<Pair> {
        if from_back {
            self.base_back.take().or_else(|| self.base_front.take())
        } else {
            self.base_front.take().or_else(|| self.base_back.take())
        }
    }

    fn step(&mut self, from_back: bool) -> Option<Result<Pair>> {
        if self.failed {
            return None;
        }
        loop {
            let base_key = match self.peek_base(from_back) {
                Ok(p) => p.map(|(k, _)| k.clone()),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            let own_key = if from_back { self.own.back() } else { self.own.front() }.map(|(k, _)| k.clone());
            let pick = match (&own_key, &base_key) {
                (None, None) => {
                    self.exhausted = true;
                    return None;
                }
                (Some(_), None) => Side::Own,
                (None, Some(_)) => Side::Base,
                (Some(o), Some(b)) => {
                    let own_first = if from_back { o >= b } else { o <= b };
                    if own_first { Side::Own } else { Side::Base }
                }
            };
            let (key, value) = match pick {
                Side::Own => {
                    let (k, v) =
                        if from_back { self.own.pop_back() } else { self.own.pop_front() }.expect("peeked");
                    // The transaction's write hides the snapshot's pair of the same key.
                    if base_key.as_ref() == Some(&k) {
                        self.take_base(from_back);
                    }
                    (k, v)
                }
                Side::Base => {
                    let (k, v) = self.take_base(from_back).expect("peeked");
                    (k, Some(v))
                }
            };
            if from_back {
                self.back_last = Some(key.clone());
            } else {
                self.front_last = Some(key.clone());
            }
            if let Some(v) = value {
                return Some(Ok((key, v)));
            }
        }
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Iterator for TxnRange<'_, D, C> {
    type Item = Result<Pair>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> DoubleEndedIterator for TxnRange<'_, D, C> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Drop for TxnRange<'_, D, C> {
    fn drop(&mut self) {
        let Some(ranges) = self.ranges.take() else { return };
        if self.exhausted {
            ranges.push((self.lo.clone(), self.hi.clone()));
            return;
        }
        // What each end read: from its bound to the last key it yielded (a key it passed over,
        // deleted by the transaction itself, counts too).
        if let Some(k) = &self.front_last {
            ranges.push((self.lo.clone(), Bound::Included(Box::from(&**k))));
        }
        if let Some(k) = &self.back_last {
            ranges.push((Bound::Included(Box::from(&**k)), self.hi.clone()));
        }
    }
}
