//! The memtable: a concurrent ordered multi-version map.
//!
//! ```text
//!  SkipMap<key, Chain>          Chain = versions of one key, oldest first
//!   "a" ─▶ [(L3, "x"), (L9, deleted)]
//!   "b" ─▶ [(L5, "y")]
//! ```
//!
//! - A version is inserted by the sequencer at its commit LSN, before that LSN is visible; a
//!   snapshot at LSN `S` reads, for each key, the newest version at or below `S`, so versions
//!   above it are ignored until they become visible.
//! - Versions of one key are inserted in LSN order (the sequencer is serial; recovery replays in
//!   order), so a chain is sorted by appending.
//! - Reclamation: every version that shadows an older one is noted in `reclaim`, in LSN order.
//!   Once the horizon (the oldest LSN any snapshot can read at) reaches it, the older versions
//!   are dropped: only the newest version at or below the horizon can still be read. A key left
//!   with a lone deletion below the horizon is removed from the map, under the sequencer's lock
//!   so that no insertion into it can race.
//! - The memtable is also the conflict index: the newest version of a key is its last write,
//!   and reclamation never drops it (a lone deletion at or below the horizon is dropped whole,
//!   and no snapshot that can still commit is below the horizon).
//!
//! - A key keeps its first 16 bytes inline ([`Key`]): a search compares most keys without
//!   reading their allocation, and a key of at most 16 bytes has none. Lookups borrow the key
//!   they search for.
//! - A commit claims the place of each key it writes before it takes the sequencer's lock
//!   ([`Memtable::claim`]): one search finds the key or adds it with no versions, and the
//!   version goes there. Under the lock it only checks that the place is still in the map
//!   ([`Memtable::confirm`]), since a failed commit or reclamation may have removed it meanwhile:
//!   the searches (and the allocation of new keys' nodes) stay out of the serial step. A key
//!   with no versions reads as absent; a commit that fails gives back what it added.
//!
//! Readers take a chain's small mutex for the few nanoseconds of a lookup; they never wait for
//! a commit's I/O.

use crossbeam_skiplist::SkipMap;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use super::key::{Head, Key, compare, head};
use crate::types::Lsn;

/// A value, shared between versions, snapshots and checkpoints without copying.
pub(crate) type Value = Arc<[u8]>;

/// What the map is searched by: a stored [`Key`], or a borrowed [`Probe`] (which costs no
/// allocation). Both order by [`head`] first, then by their bytes.
trait KeyView {
    fn head(&self) -> Head;
    fn bytes(&self) -> &[u8];
}

/// A key to search for, borrowed.
struct Probe<'a> {
    head: Head,
    bytes: &'a [u8],
}

impl<'a> Probe<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Probe { head: head(bytes), bytes }
    }
}

impl KeyView for Probe<'_> {
    fn head(&self) -> Head {
        self.head
    }
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

impl KeyView for Key {
    fn head(&self) -> Head {
        self.head_word()
    }
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        compare((self.head(), self.bytes()), (other.head(), other.bytes()))
    }
}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for dyn KeyView + '_ {}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// A range of keys, borrowed, as probes.
fn probes<'a>(range: (Bound<&'a [u8]>, Bound<&'a [u8]>)) -> (Bound<Probe<'a>>, Bound<Probe<'a>>) {
    (range.0.map(Probe::new), range.1.map(Probe::new))
}

/// [`probes`] as the bounds the map's range takes.
fn as_views<'b, 'a>(
    range: &'b (Bound<Probe<'a>>, Bound<Probe<'a>>),
) -> (Bound<&'b (dyn KeyView + 'a)>, Bound<&'b (dyn KeyView + 'a)>) {
    let view = |p: &'b Probe<'a>| -> &'b (dyn KeyView + 'a) { p };
    (range.0.as_ref().map(view), range.1.as_ref().map(view))
}

/// One version of a key: its value at `lsn`, or `None` for a deletion.
#[derive(Clone, Debug)]
struct Version {
    lsn: Lsn,
    value: Option<Value>,
}

/// The versions of a key, oldest first. Most keys hold one version: it is kept inline, so
/// that a new key costs no allocation beyond its skip-list node.
#[derive(Debug)]
enum Versions {
    One(Version),
    /// None (an empty `Vec` allocates nothing), or more than one.
    Many(Vec<Version>),
}

impl Default for Versions {
    fn default() -> Self {
        Versions::Many(Vec::new())
    }
}

impl Versions {
    fn as_slice(&self) -> &[Version] {
        match self {
            Versions::One(v) => std::slice::from_ref(v),
            Versions::Many(vs) => vs,
        }
    }

    fn last_mut(&mut self) -> Option<&mut Version> {
        match self {
            Versions::One(v) => Some(v),
            Versions::Many(vs) => vs.last_mut(),
        }
    }

    fn push(&mut self, version: Version) {
        match std::mem::take(self) {
            Versions::Many(vs) if vs.is_empty() => *self = Versions::One(version),
            Versions::Many(mut vs) => {
                vs.push(version);
                *self = Versions::Many(vs);
            }
            Versions::One(first) => *self = Versions::Many(vec![first, version]),
        }
    }

    /// Drops the `n` oldest versions; a lone survivor moves back inline.
    fn drop_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if let Versions::Many(vs) = self {
            vs.drain(..n);
            if vs.len() == 1 {
                let last = vs.pop().expect("one version");
                *self = Versions::One(last);
            }
        }
    }
}

/// The versions of one key, oldest first.
#[derive(Debug, Default)]
struct Chain {
    versions: Mutex<Versions>,
}

impl Chain {
    fn lock(&self) -> MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest version at or below `at`: `None` if there is none, `Some(None)` if it is a
    /// deletion.
    fn read(&self, at: Lsn) -> Option<Option<Value>> {
        self.read_at(|| at)
    }

    /// The LSN of the newest version, a deletion included.
    fn newest_lsn(&self) -> Option<Lsn> {
        self.lock().as_slice().last().map(|v| v.lsn)
    }

    /// [`Chain::read`] at the LSN `at` returns once the chain is locked.
    fn read_at(&self, at: impl FnOnce() -> Lsn) -> Option<Option<Value>> {
        let versions = self.lock();
        let at = at();
        versions.as_slice().iter().rev().find(|v| v.lsn <= at).map(|v| v.value.clone())
    }
}

/// A key's place in the memtable, or none: see [`Memtable::slot`] and [`Memtable::claim`].
pub(crate) struct Slot<'a>(Option<crossbeam_skiplist::map::Entry<'a, Key, Chain>>);

impl Slot<'_> {
    /// The LSN of the newest version of the key, a deletion included: what a commit validates
    /// a key against. Versions above the horizon are never reclaimed and the newest one never
    /// is, so for a snapshot at or above the horizon this answers "written after it?" exactly.
    pub(crate) fn newest_lsn(&self) -> Option<Lsn> {
        self.0.as_ref().and_then(|e| e.value().newest_lsn())
    }

    /// The key's entry, if one was found and is still in the map (keys are removed only under
    /// the sequencer's lock, so under it the answer holds).
    fn placed(&self) -> Option<&crossbeam_skiplist::map::Entry<'_, Key, Chain>> {
        self.0.as_ref().filter(|e| !e.is_removed())
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Memtable {
    map: SkipMap<Key, Chain>,
    /// (LSN of a version that shadows an older one, its key), in LSN order.
    reclaim: Mutex<VecDeque<(Lsn, Key)>>,
    /// The LSN at the front of `reclaim` (`u64::MAX` when it is empty), written under its
    /// lock: [`Memtable::may_reclaim`] reads it without the lock.
    reclaim_front: AtomicU64,
    /// Bytes of keys and values inserted, with [`VERSION_OVERHEAD_BYTES`] per version: what
    /// decides when the memtable is full. Reclamation does not lower it (a full memtable is
    /// flushed, and the flush writes what is left).
    bytes: AtomicU64,
}

/// What a version costs in memory besides its key and value: the skip-list node or the
/// version's slot, the key's inline head, the value's reference count.
pub(crate) const VERSION_OVERHEAD_BYTES: u64 = 64;

impl Default for Memtable {
    fn default() -> Self {
        Memtable {
            map: SkipMap::new(),
            reclaim: Mutex::default(),
            reclaim_front: AtomicU64::new(u64::MAX),
            bytes: AtomicU64::new(0),
        }
    }
}

impl Memtable {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a version of `key` at `lsn`, which must be at or above every version of `key`
    /// already present (at the same LSN it replaces the value). One search; the key is shared,
    /// not copied.
    pub(crate) fn insert(&self, key: &Key, lsn: Lsn, value: Option<Value>) {
        self.insert_at(Slot(None), key, lsn, value);
    }

    /// Where `key` is in the map, if it is: for a commit that validates a key and then adds a
    /// version of it with one search. The caller holds the sequencer's lock from this call to
    /// [`Memtable::insert_at`], so that the key is not removed meanwhile.
    pub(crate) fn slot(&self, key: &[u8]) -> Slot<'_> {
        Slot(self.find(key))
    }

    /// The entry of `key`, if any.
    fn find(&self, key: &[u8]) -> Option<crossbeam_skiplist::map::Entry<'_, Key, Chain>> {
        self.map.get::<dyn KeyView>(&Probe::new(key))
    }

    /// The place of `key`, added (with no versions) if it is not in the map: for a commit that
    /// validates a key it writes and then adds its version, with one search whether the key is
    /// new or not. Claimed without the sequencer's lock, the place may be removed before the
    /// caller takes it (keys are removed only under that lock): the caller passes it through
    /// [`Memtable::confirm`] under the lock, and holds the lock until it has either inserted into
    /// every slot it claimed or given the unused ones back ([`Memtable::release`]). Meanwhile a
    /// key with no versions reads as absent, and has no newest version.
    pub(crate) fn claim(&self, key: &Key) -> Slot<'_> {
        Slot(Some(self.map.get_or_insert(key.clone(), Chain::default())))
    }

    /// Keeps `slot`, claimed for `key` before the caller took the sequencer's lock, or claims
    /// the key's place again if a failed commit ([`Memtable::release`]) or reclamation
    /// ([`Memtable::remove_dead`]) removed it meanwhile: a version inserted into a removed place
    /// would be lost. The caller holds the lock, so the place stays in the map.
    pub(crate) fn confirm<'a>(&'a self, slot: &mut Slot<'a>, key: &Key) {
        if slot.placed().is_none() {
            *slot = self.claim(key);
        }
    }

    /// Gives back slots from [`Memtable::claim`] that will not be inserted into (the commit
    /// failed validation, or its append failed): a key added by the claim, still without a
    /// version, is removed. The caller holds the sequencer's lock, so nothing inserts meanwhile.
    pub(crate) fn release(&self, slots: Vec<Slot<'_>>) {
        for entry in slots.into_iter().filter_map(|s| s.0) {
            if entry.value().lock().as_slice().is_empty() {
                entry.remove();
            }
        }
    }

    /// [`Memtable::insert`] into `slot`, found by [`Memtable::slot`] or [`Memtable::claim`] for
    /// `key` (empty: the key is searched for, and added).
    pub(crate) fn insert_at(&self, slot: Slot<'_>, key: &Key, lsn: Lsn, value: Option<Value>) {
        debug_assert!(slot.0.as_ref().is_none_or(|e| e.key() == key), "the slot of another key");
        let entry = slot.0.unwrap_or_else(|| self.map.get_or_insert(key.clone(), Chain::default()));
        let mut versions = entry.value().lock();
        if let Some(last) = versions.last_mut().filter(|v| v.lsn == lsn) {
            // The same key twice in one replayed record: the later operation wins.
            last.value = value;
            return;
        }
        assert!(
            versions.as_slice().last().is_none_or(|v| v.lsn < lsn),
            "versions of a key are inserted in LSN order"
        );
        let shadows = !versions.as_slice().is_empty() || value.is_none();
        let bytes = key.len() as u64 + value.as_ref().map_or(0, |v| v.len() as u64) + VERSION_OVERHEAD_BYTES;
        // Inserts are serial (under the sequencer's lock, or recovery's one thread): no
        // read-modify-write needed.
        self.bytes.store(self.bytes.load(Relaxed) + bytes, Relaxed);
        versions.push(Version { lsn, value });
        drop(versions);
        if shadows {
            let mut reclaim = self.reclaim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if reclaim.is_empty() {
                self.reclaim_front.store(lsn.0, Relaxed);
            }
            reclaim.push_back((lsn, key.clone()));
        }
    }

    /// The value of `key` in the snapshot at `at`: `None` if absent or deleted.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8], at: Lsn) -> Option<Value> {
        self.lookup(key, at).flatten()
    }

    /// The newest version of `key` at or below `at`: `None` if the memtable holds none (an
    /// older layer may), `Some(None)` if it is a deletion.
    pub(crate) fn lookup(&self, key: &[u8], at: Lsn) -> Option<Option<Value>> {
        self.find(key).and_then(|e| e.value().read(at))
    }

    /// Bytes inserted (see the field's docs).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// For each key in `range` with a version at or below `at`, in key order: the key and that
    /// version (`None`: a deletion).
    pub(crate) fn versions_at<'a>(
        &'a self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        at: Lsn,
    ) -> impl Iterator<Item = (Key, Option<Value>)> + 'a {
        let first = match range.0 {
            Bound::Included(k) => self.map.lower_bound::<dyn KeyView>(Bound::Included(&Probe::new(k))),
            Bound::Excluded(k) => self.map.lower_bound::<dyn KeyView>(Bound::Excluded(&Probe::new(k))),
            Bound::Unbounded => self.map.front(),
        };
        let end: Bound<Box<[u8]>> = range.1.map(Box::from);
        let mut next = first;
        std::iter::from_fn(move || {
            loop {
                let entry = next.take()?;
                let inside = match &end {
                    Bound::Included(e) => **entry.key() <= **e,
                    Bound::Excluded(e) => **entry.key() < **e,
                    Bound::Unbounded => true,
                };
                if !inside {
                    return None;
                }
                next = entry.next();
                if let Some(version) = entry.value().read(at) {
                    return Some((entry.key().clone(), version));
                }
            }
        })
    }

    /// [`Memtable::versions_at`], from the highest key down.
    pub(crate) fn versions_at_rev<'a>(
        &'a self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        at: Lsn,
    ) -> impl Iterator<Item = (Key, Option<Value>)> + 'a {
        let last = match range.1 {
            Bound::Included(k) => self.map.upper_bound::<dyn KeyView>(Bound::Included(&Probe::new(k))),
            Bound::Excluded(k) => self.map.upper_bound::<dyn KeyView>(Bound::Excluded(&Probe::new(k))),
            Bound::Unbounded => self.map.back(),
        };
        let start: Bound<Box<[u8]>> = range.0.map(Box::from);
        let mut next = last;
        std::iter::from_fn(move || {
            loop {
                let entry = next.take()?;
                let inside = match &start {
                    Bound::Included(s) => **entry.key() >= **s,
                    Bound::Excluded(s) => **entry.key() > **s,
                    Bound::Unbounded => true,
                };
                if !inside {
                    return None;
                }
                next = entry.prev();
                if let Some(version) = entry.value().read(at) {
                    return Some((entry.key().clone(), version));
                }
            }
        })
    }

    /// Every version in the memtable, in table order (keys ascending, each key's versions
    /// newest first), dropping those no snapshot at or above `horizon` can read: for a flush.
    pub(crate) fn for_each_version(&self, horizon: Lsn, mut f: impl FnMut(&Key, Lsn, Option<&Value>)) {
        for entry in self.map.iter() {
            let versions = entry.value().lock();
            let all = versions.as_slice();
            // Everything above the horizon, and the newest version at or below it.
            let keep_from = all.iter().rposition(|v| v.lsn <= horizon).unwrap_or(0);
            for v in all[keep_from..].iter().rev() {
                f(entry.key(), v.lsn, v.value.as_ref());
            }
        }
    }

    /// The value of `key` as of the visible LSN, read with no registered snapshot: `visible`
    /// is loaded only once the key's chain is locked. Reclamation keeps the newest version at
    /// or below the horizon, and the horizon never passes the visible LSN, so the version this
    /// reads is still there — whereas an LSN loaded before the lock may have been reclaimed
    /// meanwhile, and the key would read as absent (`db_get_never_misses_a_key_being_overwritten`).
    pub(crate) fn get_latest(&self, key: &[u8], visible: impl FnOnce() -> Lsn) -> Option<Value> {
        self.find(key).and_then(|e| e.value().read_at(visible)).flatten()
    }

    /// The LSN of the newest version of `key`, a deletion included: see [`Slot::newest_lsn`].
    pub(crate) fn newest_lsn(&self, key: &[u8]) -> Option<Lsn> {
        self.slot(key).newest_lsn()
    }

    /// [`Memtable::newest_lsn`] of `key`, whose place `slot` was looked up
    /// ([`Memtable::slot`]) before the caller took the sequencer's lock: a place found then and
    /// not removed since is still the key's, and is read without a search; a key that was absent
    /// then, or whose place was removed, is searched for again (it may have been added since).
    pub(crate) fn newest_lsn_in(&self, slot: &Slot<'_>, key: &[u8]) -> Option<Lsn> {
        match slot.placed() {
            Some(entry) => entry.value().newest_lsn(),
            None => self.newest_lsn(key),
        }
    }

    /// The first key in `range` whose newest version is above `lsn`.
    pub(crate) fn first_written_after(&self, range: (Bound<&[u8]>, Bound<&[u8]>), lsn: Lsn) -> Option<Key> {
        let range = probes(range);
        self.map
            .range::<dyn KeyView, _>(as_views(&range))
            .find(|e| e.value().newest_lsn().is_some_and(|newest| newest > lsn))
            .map(|e| e.key().clone())
    }

    /// How many versions of `key` are held.
    #[cfg(test)]
    fn version_count(&self, key: &[u8]) -> usize {
        self.find(key).map_or(0, |e| e.value().lock().as_slice().len())
    }

    /// Live pairs of the snapshot at `at` with keys in `range`, in key order, at most `limit`.
    pub(crate) fn range(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        at: Lsn,
        limit: usize,
    ) -> Vec<crate::db::Pair> {
        let mut out = Vec::with_capacity(limit.min(128));
        if limit == 0 {
            return out;
        }
        let range = probes(range);
        for entry in self.map.range::<dyn KeyView, _>(as_views(&range)) {
            if let Some(Some(value)) = entry.value().read(at) {
                out.push((entry.key().clone(), value));
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }

    /// Whether [`Memtable::reclaim`] at a horizon at or below `lsn` may find work: a lock-free
    /// hint (a version noted meanwhile is found by a later call).
    pub(crate) fn may_reclaim(&self, lsn: Lsn) -> bool {
        self.reclaim_front.load(Relaxed) <= lsn.0
    }

    /// Drops the versions no snapshot at or above `horizon` can read; returns the keys left
    /// holding only a deletion at or below `horizon`, for [`Memtable::remove_dead`].
    ///
    /// At most `budget` noted versions are visited: a commit reclaims a bounded share, so that
    /// a backlog (a snapshot held long, then released) is worked off over many commits rather
    /// than by one.
    pub(crate) fn reclaim(&self, horizon: Lsn, budget: usize) -> Vec<Key> {
        let mut dead = Vec::new();
        for _ in 0..budget {
            let key = {
                let mut reclaim = self.reclaim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match reclaim.front() {
                    Some((lsn, _)) if *lsn <= horizon => {
                        let key = reclaim.pop_front().map(|(_, k)| k);
                        self.reclaim_front.store(reclaim.front().map_or(u64::MAX, |(l, _)| l.0), Relaxed);
                        key
                    }
                    _ => None,
                }
            };
            let Some(key) = key else { break };
            if let Some(e) = self.find(&key) {
                let mut versions = e.value().lock();
                // Keep the newest version at or below the horizon and everything above it.
                if let Some(i) = versions.as_slice().iter().rposition(|v| v.lsn <= horizon) {
                    versions.drop_oldest(i);
                }
                if let [only] = versions.as_slice()
                    && only.value.is_none()
                    && only.lsn <= horizon
                {
                    dead.push(key);
                }
            }
        }
        dead
    }

    /// Removes the keys of `dead` whose only version is still a deletion at or below
    /// `horizon`. The caller holds the sequencer's lock, so nothing inserts meanwhile.
    pub(crate) fn remove_dead(&self, dead: &[Key], horizon: Lsn) {
        for key in dead {
            if let Some(e) = self.find(key) {
                let gone = matches!(
                    e.value().lock().as_slice(),
                    [only] if only.value.is_none() && only.lsn <= horizon
                );
                if gone {
                    e.remove();
                }
            }
        }
    }

    /// Keys in the map (live, deleted or not yet visible).
    pub(crate) fn key_count(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<Value> {
        Some(Arc::from(s.as_bytes()))
    }

    #[test]
    fn snapshots_read_the_newest_version_at_or_below_them() {
        let m = Memtable::new();
        m.insert(&Key::from(&b"a"[..]), Lsn(3), v("x"));
        m.insert(&Key::from(&b"a"[..]), Lsn(7), v("y"));
        m.insert(&Key::from(&b"a"[..]), Lsn(9), None);
        assert_eq!(m.get(b"a", Lsn(2)), None);
        assert_eq!(m.get(b"a", Lsn(3)).as_deref(), Some(&b"x"[..]));
        assert_eq!(m.get(b"a", Lsn(8)).as_deref(), Some(&b"y"[..]));
        assert_eq!(m.get(b"a", Lsn(9)), None);
        assert_eq!(m.get(b"b", Lsn(9)), None);
    }

    /// Bytes for keys: mostly the values where padding and prefixes matter.
    fn key_bytes(len: std::ops::Range<usize>) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()], len)
    }

    proptest::proptest! {
        /// Keys, stored or probed, compare as their bytes do: pairs that share a prefix around
        /// the inline head's 16 bytes, with zero bytes where the head pads.
        #[test]
        fn probes_and_stored_keys_order_as_their_bytes(
            prefix in key_bytes(0..24),
            a in key_bytes(0..4),
            b in key_bytes(0..4),
        ) {
            let a = [&prefix[..], &a[..]].concat();
            let b = [&prefix[..], &b[..]].concat();
            let (ka, kb) = (Key::new(&a), Key::new(&b));
            proptest::prop_assert_eq!(ka.as_bytes(), &a[..]);
            proptest::prop_assert_eq!(ka.head_word(), head(&a));
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            let (ka, kb): (&dyn KeyView, &dyn KeyView) = (&ka, &kb);
            let (pa, pb) = (Probe::new(&a), Probe::new(&b));
            let (pa, pb): (&dyn KeyView, &dyn KeyView) = (&pa, &pb);
            proptest::prop_assert_eq!(ka.cmp(kb), a.cmp(&b));
            proptest::prop_assert_eq!(ka == kb, a == b);
            proptest::prop_assert_eq!(pa.cmp(kb), a.cmp(&b));
            proptest::prop_assert_eq!(ka.cmp(pb), a.cmp(&b));
        }
    }

    #[test]
    fn keys_alike_in_their_first_sixteen_bytes_are_found_and_ordered() {
        let m = Memtable::new();
        let long = |tail: &[u8]| [&[7u8; 16][..], tail].concat();
        let keys =
            [long(b""), long(b"\0"), long(b"\0\0"), long(b"a"), long(b"b"), vec![7u8; 15], b"".to_vec()];
        for (i, k) in keys.iter().enumerate() {
            m.insert(&Key::from(&k[..]), Lsn(i as u64 + 1), v("x"));
        }
        for k in &keys {
            assert_eq!(m.get(k, Lsn(9)).as_deref(), Some(&b"x"[..]), "{k:?}");
        }
        assert_eq!(m.get(&long(b"c"), Lsn(9)), None);
        let mut sorted = keys.to_vec();
        sorted.sort();
        let scanned: Vec<Vec<u8>> = m
            .range((Bound::Unbounded, Bound::Unbounded), Lsn(9), 99)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(scanned, sorted);
        let from = long(b"\0");
        let to = long(b"b");
        let inner: Vec<Vec<u8>> = m
            .range((Bound::Excluded(&from[..]), Bound::Excluded(&to[..])), Lsn(9), 99)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(inner, [long(b"\0\0"), long(b"a")]);
    }

    #[test]
    fn versions_move_between_inline_and_heap_keeping_their_order() {
        let version = |lsn| Version { lsn: Lsn(lsn), value: v("x") };
        let lsns = |vs: &Versions| vs.as_slice().iter().map(|v| v.lsn.0).collect::<Vec<_>>();
        let mut vs = Versions::default();
        assert!(vs.as_slice().is_empty());
        vs.push(version(1));
        assert!(matches!(vs, Versions::One(_)));
        vs.push(version(2));
        vs.push(version(3));
        assert_eq!(lsns(&vs), [1, 2, 3]);
        vs.drop_oldest(1);
        assert_eq!(lsns(&vs), [2, 3]);
        vs.drop_oldest(1);
        assert!(matches!(vs, Versions::One(_)), "a lone survivor is kept inline");
        assert_eq!(lsns(&vs), [3]);
        vs.drop_oldest(0);
        vs.push(version(4));
        assert_eq!(lsns(&vs), [3, 4]);
        vs.last_mut().expect("two versions").lsn = Lsn(5);
        assert_eq!(lsns(&vs), [3, 5]);
    }

    #[test]
    fn the_newest_version_answers_written_after_even_after_reclamation() {
        let m = Memtable::new();
        let (a, b, c) = (Key::from(&b"a"[..]), Key::from(&b"b"[..]), Key::from(&b"c"[..]));
        m.insert(&a, Lsn(2), v("1"));
        m.insert(&b, Lsn(4), None);
        m.insert(&c, Lsn(5), v("c"));
        m.insert(&a, Lsn(6), v("2"));
        assert_eq!(m.newest_lsn(b"a"), Some(Lsn(6)));
        assert_eq!(m.newest_lsn(b"b"), Some(Lsn(4)), "a deletion is a write");
        assert_eq!(m.newest_lsn(b"z"), None);
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(m.first_written_after(all, Lsn(3)).as_deref(), Some(&b"a"[..]));
        assert_eq!(
            m.first_written_after((Bound::Excluded(&b"a"[..]), Bound::Unbounded), Lsn(3)).as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(
            m.first_written_after((Bound::Excluded(&b"a"[..]), Bound::Unbounded), Lsn(4)).as_deref(),
            Some(&b"c"[..])
        );
        assert_eq!(m.first_written_after(all, Lsn(6)), None);
        // Reclaiming at a horizon of 5 keeps every newest version: a snapshot at 5 still sees
        // that "a" was written after it.
        assert!(m.reclaim(Lsn(5), usize::MAX).contains(&b));
        assert_eq!(m.newest_lsn(b"a"), Some(Lsn(6)));
        assert_eq!(m.first_written_after(all, Lsn(5)).as_deref(), Some(&b"a"[..]));
        // A slot found before the insertion takes the version without a second search.
        let slot = m.slot(b"c");
        assert_eq!(slot.newest_lsn(), Some(Lsn(5)));
        m.insert_at(slot, &c, Lsn(7), v("d"));
        m.insert_at(m.slot(b"d"), &Key::from(&b"d"[..]), Lsn(8), v("e"));
        assert_eq!(m.get(b"c", Lsn(7)).as_deref(), Some(&b"d"[..]));
        assert_eq!(m.get(b"d", Lsn(8)).as_deref(), Some(&b"e"[..]));
        assert_eq!((m.newest_lsn(b"c"), m.newest_lsn(b"d")), (Some(Lsn(7)), Some(Lsn(8))));
    }

    /// A commit finds its keys' places before it takes the sequencer's lock; a failed commit's
    /// release or reclamation may remove them before it does. Under the lock it must neither
    /// insert into a removed place (the version would be lost) nor read one's newest version.
    #[test]
    fn places_removed_between_the_claim_and_the_lock_are_found_again() {
        let m = Memtable::new();
        let (a, b) = (Key::from(&b"a"[..]), Key::from(&b"b"[..]));
        // Two commits claim the new key "a"; the first fails and gives its claim back, which
        // removes the place (it has no version), while the second still holds it.
        let mut second = m.claim(&a);
        m.release(vec![m.claim(&a)]);
        assert_eq!(m.key_count(), 0);
        m.confirm(&mut second, &a);
        m.insert_at(second, &a, Lsn(3), v("kept"));
        assert_eq!(m.get(b"a", Lsn(3)).as_deref(), Some(&b"kept"[..]));
        // "b" holds a lone deletion that reclamation removes after a reader looked it up and
        // after a writer claimed it; the key is written again meanwhile.
        m.insert(&b, Lsn(4), None);
        let read = m.slot(b"b");
        let mut write = m.claim(&b);
        assert_eq!(m.reclaim(Lsn(4), usize::MAX), vec![b.clone()]);
        m.remove_dead(std::slice::from_ref(&b), Lsn(4));
        assert_eq!(m.key_count(), 1);
        assert_eq!(m.newest_lsn_in(&read, b"b"), None, "removed, and not written since");
        m.insert(&b, Lsn(5), v("again"));
        assert_eq!(m.newest_lsn_in(&read, b"b"), Some(Lsn(5)), "the key's new place is read");
        m.confirm(&mut write, &b);
        m.insert_at(write, &b, Lsn(6), v("last"));
        assert_eq!(m.get(b"b", Lsn(6)).as_deref(), Some(&b"last"[..]));
        assert_eq!(m.newest_lsn(b"b"), Some(Lsn(6)));
        // A place found and not removed is read without a search, and a key absent then is
        // searched for again.
        let found = m.slot(b"a");
        let absent = m.slot(b"c");
        m.insert(&Key::from(&b"c"[..]), Lsn(7), v("c"));
        assert_eq!(
            (m.newest_lsn_in(&found, b"a"), m.newest_lsn_in(&absent, b"c")),
            (Some(Lsn(3)), Some(Lsn(7)))
        );
    }

    #[test]
    fn reclaim_keeps_what_the_horizon_can_read() {
        let m = Memtable::new();
        m.insert(&Key::from(&b"a"[..]), Lsn(1), v("1"));
        m.insert(&Key::from(&b"a"[..]), Lsn(2), v("2"));
        m.insert(&Key::from(&b"a"[..]), Lsn(3), v("3"));
        m.insert(&Key::from(&b"b"[..]), Lsn(4), v("b"));
        m.insert(&Key::from(&b"b"[..]), Lsn(5), None);
        assert!(m.reclaim(Lsn(2), usize::MAX).is_empty());
        assert_eq!(m.version_count(b"a"), 2);
        assert_eq!(m.get(b"a", Lsn(2)).as_deref(), Some(&b"2"[..]));
        assert_eq!(m.get(b"a", Lsn(3)).as_deref(), Some(&b"3"[..]));
        let dead = m.reclaim(Lsn(5), usize::MAX);
        assert_eq!(m.version_count(b"a"), 1);
        assert_eq!(dead, vec![Key::from(&b"b"[..])]);
        m.remove_dead(&dead, Lsn(5));
        assert_eq!(m.key_count(), 1);
        assert_eq!(m.range((Bound::Unbounded, Bound::Unbounded), Lsn(9), 10).len(), 1);
    }

    #[test]
    fn reclaim_visits_at_most_its_budget() {
        let m = Memtable::new();
        let keys: Vec<Key> = (0..10u8).map(|i| Key::new(&[b'k', i])).collect();
        for (i, k) in keys.iter().enumerate() {
            let i = i as u64;
            m.insert(k, Lsn(1 + 2 * i), v("old"));
            m.insert(k, Lsn(2 + 2 * i), v("new"));
        }
        let versions = |m: &Memtable| keys.iter().map(|k| m.version_count(k)).sum::<usize>();
        assert_eq!(versions(&m), 20);
        m.reclaim(Lsn(100), 3);
        assert_eq!(versions(&m), 17, "three keys' old versions dropped, no more");
        m.reclaim(Lsn(100), usize::MAX);
        assert_eq!(versions(&m), 10, "the rest on the next call");
        assert!(!m.may_reclaim(Lsn(100)), "nothing left noted");
    }
}
