//! The sequencer: the one serial step every commit crosses — validate, append to the log,
//! install the versions — and what it keeps ([`Sequencer`]: the writes of the latest commits,
//! for validating scanned ranges).
//!
//! ```text
//!  commit ─▶ before the lock: scanned ranges against the memtable at the watermark, newest
//!            LSNs below the active memtable, places of the keys read and written
//!         ─▶ the lock (spun for, then slept on): the active memtable still the one the places
//!            are in (else start over on the new view) ─▶ validate ─▶ append to the Wal (LSN)
//!            ─▶ versions into the memtable at the LSN ─▶ pending visibility ─▶ freeze if full
//!         ─▶ after the lock: wake the log's thread, ask for a flush
//! ```
//!
//! Nothing inside the lock sleeps or makes a system call; see the [module docs](super) for
//! why it is kept short and what that measured. Proof of the validation:
//! `tests/db.rs` (`racing_commits_on_few_keys_lose_no_acknowledged_write`), the database
//! campaign's serializability check, `tests/db_model.rs`.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use super::key::Key;
use super::txn::Transaction;
use super::view::View;
use super::{Isolation, OwnedBound, borrowed, lock};
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{ConflictOn, Error, Result};
use crate::types::Lsn;
use crate::wal::{Durability, Op, RecordKind, Ticket, encode_txn, encode_txn_ops};

/// The writes of the latest commits, for validating scanned ranges.
///
/// A commit validates its points against the memtable under the sequencer's lock (the newest
/// version of a key is its last write), at places it found before the lock. A scanned range is
/// validated in two steps, so that a long range is not walked inside the lock: before the lock,
/// against the memtable at the watermark `sequenced` (every commit at or below it has its
/// versions in the memtable); under the lock, against the entries here above that watermark —
/// the commits sequenced meanwhile.
///
/// A commit notes its writes here only while some transaction is between reading the watermark
/// and its check under the lock (`Inner::range_checks` is above zero); otherwise it drops every
/// entry. That loses nothing: the checker adds itself to `range_checks` and then reads the
/// watermark, and a commit stores `sequenced` and then reads `range_checks` (all `SeqCst`). A
/// commit that read zero did so before the checker added itself, so its store of `sequenced`
/// came before the checker's read, whose watermark is therefore at or above the commit's LSN:
/// the checker finds its writes in the memtable.
#[derive(Default)]
pub(crate) struct Sequencer {
    /// (commit LSN, a key it wrote), in LSN order, at most [`RECENT_MAX`] entries and
    /// [`RECENT_KEY_BYTES_MAX`] bytes of keys: one entry per key, so that a commit allocates
    /// nothing here.
    recent: VecDeque<(Lsn, Key)>,
    /// The bytes of the keys in `recent`.
    recent_key_bytes: usize,
    /// The highest LSN whose entries were dropped from `recent`: a commit whose watermark is
    /// below it validates its ranges against the memtable again, under the lock.
    dropped_through: Lsn,
}

/// Entries [`Sequencer::recent`] keeps.
const RECENT_MAX: usize = 1 << 16;

/// Bytes of keys [`Sequencer::recent`] keeps: a key the memtable dropped stays alive there.
const RECENT_KEY_BYTES_MAX: usize = 16 << 20;

impl Sequencer {
    /// Notes that the commit at `lsn` wrote `key`.
    pub(crate) fn note(&mut self, lsn: Lsn, key: &Key) {
        debug_assert!(self.recent.back().is_none_or(|(l, _)| *l <= lsn), "entries in LSN order");
        self.recent.push_back((lsn, key.clone()));
        self.recent_key_bytes += key.len();
        while self.recent.len() > RECENT_MAX || self.recent_key_bytes > RECENT_KEY_BYTES_MAX {
            let (dropped, dropped_key) = self.recent.pop_front().expect("over a limit: not empty");
            self.recent_key_bytes -= dropped_key.len();
            self.dropped_through = dropped;
        }
    }

    /// Drops every entry: no transaction has a watermark below the commit that calls this
    /// (see the type's docs).
    pub(crate) fn forget(&mut self) {
        if let Some((last, _)) = self.recent.back() {
            self.dropped_through = *last;
            self.recent.clear();
            self.recent_key_bytes = 0;
        }
    }

    /// A key in one of `ranges` written by a commit above `watermark`, or `None` when the
    /// entries above `watermark` are no longer all kept (the caller checks the memtable).
    pub(crate) fn range_written_above<'a>(
        &'a self,
        ranges: &[(OwnedBound, OwnedBound)],
        watermark: Lsn,
    ) -> Option<Option<&'a [u8]>> {
        if self.dropped_through > watermark {
            return None;
        }
        let newer = self.recent.iter().rev().take_while(|(l, _)| *l > watermark);
        Some(newer.map(|(_, k)| &**k).find(|k| ranges.iter().any(|r| contains(r, k))))
    }
}

/// Whether `key` lies in `range`.
fn contains(range: &(OwnedBound, OwnedBound), key: &[u8]) -> bool {
    use std::ops::RangeBounds;
    (borrowed(&range.0), borrowed(&range.1)).contains(key)
}

/// [`lock`] for a short critical section that many threads queue for (the sequencer): spins
/// for the lock a while before sleeping on it, since on many cores a hand-off to a sleeping
/// thread (a wake-up, then a wait for a CPU) costs more than the section itself.
fn lock_spinning<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    for i in 0..SPINS {
        match mutex.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                if i < SPINS / 2 {
                    for _ in 0..(1 << (i % 6)) {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
    lock(mutex)
}

/// Tries of [`lock_spinning`] before it sleeps.
const SPINS: u32 = 64;

impl<D: Disk + Clone, C: Clock + Clone> Transaction<D, C> {
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
    pub(super) fn sequence(&mut self, durability: Durability) -> Result<Option<Ticket>> {
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
            self.db.slow_down(&view);
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
            // Nothing below the active memtable is above the snapshot (most commits, even while
            // tables exist): nothing there can conflict, and nothing is looked up.
            let lower = view.has_lower() && self.snapshot < view.lower_max_lsn();
            let lower_ranges = if serializable && !self.ranges.is_empty() && lower {
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
            let (lower_reads, lower_writes) = if lower {
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
            let seq = lock_spinning(&db.sequencer);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s.as_bytes())
    }

    fn range(lo: &str, hi: &str) -> (OwnedBound, OwnedBound) {
        (Bound::Included(lo.as_bytes().into()), Bound::Excluded(hi.as_bytes().into()))
    }

    #[test]
    fn recent_writes_above_the_watermark_in_a_range_are_found() {
        let mut seq = Sequencer::default();
        seq.note(Lsn(1), &key("b"));
        seq.note(Lsn(2), &key("x"));
        seq.note(Lsn(3), &key("c"));
        let ranges = [range("a", "d")];
        // Above 0: "c" (LSN 3) is found first, newest first; "b" at LSN 1 also counts.
        assert_eq!(seq.range_written_above(&ranges, Lsn(0)), Some(Some(&b"c"[..])));
        assert_eq!(seq.range_written_above(&ranges, Lsn(2)), Some(Some(&b"c"[..])));
        // Nothing in the range above LSN 3, and "x" is outside it.
        assert_eq!(seq.range_written_above(&ranges, Lsn(3)), Some(None));
        assert_eq!(seq.range_written_above(&[range("w", "y")], Lsn(1)), Some(Some(&b"x"[..])));
        assert_eq!(seq.range_written_above(&[range("w", "y")], Lsn(2)), Some(None));
        // The bounds: excluded end, included start.
        assert_eq!(seq.range_written_above(&[range("a", "c")], Lsn(2)), Some(None));
        assert_eq!(seq.range_written_above(&[range("c", "d")], Lsn(2)), Some(Some(&b"c"[..])));
        assert_eq!(seq.range_written_above(&[], Lsn(0)), Some(None));
    }

    #[test]
    fn a_watermark_below_what_was_dropped_asks_for_the_memtable() {
        let mut seq = Sequencer::default();
        let total = RECENT_MAX as u64 + 10;
        for lsn in 1..=total {
            seq.note(Lsn(lsn), &key("k"));
        }
        assert_eq!(seq.recent.len(), RECENT_MAX, "bounded");
        assert_eq!(seq.dropped_through, Lsn(10));
        let ranges = [range("a", "z")];
        // Entries above 9 were dropped (LSN 10): unknown; above 10 all are kept.
        assert_eq!(seq.range_written_above(&ranges, Lsn(9)), None);
        assert_eq!(seq.range_written_above(&ranges, Lsn(10)), Some(Some(&b"k"[..])));
        assert_eq!(seq.range_written_above(&ranges, Lsn(total)), Some(None));
    }

    #[test]
    fn forgetting_drops_every_entry_and_marks_them_dropped() {
        let mut seq = Sequencer::default();
        seq.forget();
        assert_eq!(seq.dropped_through, Lsn(0), "nothing to forget");
        seq.note(Lsn(4), &key("b"));
        seq.note(Lsn(5), &key("c"));
        seq.forget();
        assert!(seq.recent.is_empty());
        assert_eq!((seq.recent_key_bytes, seq.dropped_through), (0, Lsn(5)));
        let ranges = [range("a", "d")];
        assert_eq!(seq.range_written_above(&ranges, Lsn(4)), None, "below what was forgotten");
        assert_eq!(seq.range_written_above(&ranges, Lsn(5)), Some(None));
        seq.note(Lsn(6), &key("b"));
        assert_eq!(seq.range_written_above(&ranges, Lsn(5)), Some(Some(&b"b"[..])));
    }

    #[test]
    fn recent_writes_are_bounded_in_key_bytes_too() {
        let mut seq = Sequencer::default();
        let big = Key::new(&vec![b'k'; 64 << 10]);
        let per_key = big.len();
        let kept = RECENT_KEY_BYTES_MAX / per_key;
        for lsn in 1..=(kept as u64 + 3) {
            seq.note(Lsn(lsn), &big);
        }
        assert_eq!(seq.recent.len(), kept);
        assert_eq!(seq.recent_key_bytes, kept * per_key);
        assert!(seq.recent_key_bytes <= RECENT_KEY_BYTES_MAX);
        assert_eq!(seq.dropped_through, Lsn(3));
        assert_eq!(seq.range_written_above(&[range("a", "z")], Lsn(2)), None);
        assert_eq!(
            seq.range_written_above(&[range("a", "z")], Lsn(3)).map(|k| k.map(<[u8]>::len)),
            Some(Some(per_key))
        );
    }
}
