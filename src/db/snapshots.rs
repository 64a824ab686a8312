//! The snapshot registry: the LSNs that live snapshots read at, so that reclamation of
//! memtable versions never drops what one of them can still read — nor, since commits validate
//! against the newest versions, what one of them validates against.
//!
//! ```text
//!  shard 0: {L7: 2}   shard 1: {}   shard 2: {L9: 1}   …   (SHARDS shards, each its own lock)
//!  horizon = min(visible read first, L7, L9, …) = L7
//! ```
//!
//! - A snapshot is registered in one shard (the caller picks it: a transaction uses its id), at
//!   the visible LSN read under that shard's lock; it is released in the same shard. Committers
//!   on many cores take and release snapshots on different locks: one registry lock was a
//!   point every commit crossed twice.
//! - **The horizon never passes a snapshot.** [`Snapshots::horizon`] reads the visible LSN
//!   first, then visits every shard. A snapshot registered in a shard before the visit is seen;
//!   one registered after it read the visible LSN after the horizon did (the shard's lock
//!   orders the two), and the visible LSN only grows, so it reads at or above the horizon.
//! - The horizon only grows: every snapshot is registered at the visible LSN of its moment.
//!   A horizon computed earlier is therefore a safe (lower) bound later on.
//! - A shard is a vector of (LSN, count) in LSN order: since the visible LSN only grows and is
//!   read under the shard's lock, a snapshot is counted in the last entry or appended after it,
//!   and the oldest is the first. A commit allocates nothing here once the vector has room.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use super::lock;
use crate::types::Lsn;

/// Shards of the registry.
pub(crate) const SHARDS: u64 = 16;

/// One shard on its own cache lines: (snapshot LSN, how many live snapshots read at it), in
/// LSN order, every count above zero.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Vec<(Lsn, usize)>>);

/// See the [module docs](self).
pub(crate) struct Snapshots {
    shards: Box<[Shard]>,
}

impl Snapshots {
    pub(crate) fn new() -> Self {
        Snapshots { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }

    /// The shard for `key`: `key % SHARDS`.
    fn shard(&self, key: u64) -> &Mutex<Vec<(Lsn, usize)>> {
        #[allow(clippy::cast_possible_truncation)] // below SHARDS
        &self.shards[(key % SHARDS) as usize].0
    }

    /// Registers a snapshot in shard `shard % SHARDS` at the LSN in `visible` and returns it.
    pub(crate) fn take(&self, shard: u64, visible: &AtomicU64) -> Lsn {
        let mut s = lock(self.shard(shard));
        let at = Lsn(visible.load(SeqCst));
        match s.last_mut() {
            Some((last, n)) if *last == at => *n += 1,
            last => {
                debug_assert!(last.is_none_or(|(l, _)| *l < at), "the visible LSN went back");
                s.push((at, 1));
            }
        }
        at
    }

    /// Releases a snapshot at `at` taken in shard `shard % SHARDS`.
    pub(crate) fn release(&self, shard: u64, at: Lsn) {
        let mut s = lock(self.shard(shard));
        if let Ok(i) = s.binary_search_by_key(&at, |(l, _)| *l) {
            s[i].1 -= 1;
            if s[i].1 == 0 {
                s.remove(i);
            }
        }
    }

    /// The oldest LSN any live or future snapshot reads at: at most the LSN in `visible`.
    pub(crate) fn horizon(&self, visible: &AtomicU64) -> Lsn {
        let mut horizon = Lsn(visible.load(SeqCst));
        for shard in &*self.shards {
            if let Some((oldest, _)) = lock(&shard.0).first() {
                horizon = horizon.min(*oldest);
            }
        }
        horizon
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_the_oldest_live_snapshot_in_any_shard_or_the_visible_lsn() {
        let s = Snapshots::new();
        let visible = AtomicU64::new(5);
        assert_eq!(s.horizon(&visible), Lsn(5), "no snapshot: the visible LSN");
        let a = s.take(3, &visible);
        visible.store(9, SeqCst);
        let b = s.take(3 + SHARDS, &visible); // the same shard as `a`
        let c = s.take(7, &visible);
        let d = s.take(7, &visible);
        assert_eq!((a, b, c, d), (Lsn(5), Lsn(9), Lsn(9), Lsn(9)));
        visible.store(12, SeqCst);
        assert_eq!(s.horizon(&visible), Lsn(5));
        s.release(3, a);
        assert_eq!(s.horizon(&visible), Lsn(9), "two snapshots left at 9 in shard 7, one in shard 3");
        s.release(7, c);
        s.release(3, b);
        assert_eq!(s.horizon(&visible), Lsn(9), "one snapshot left at 9");
        s.release(7, d);
        assert_eq!(s.horizon(&visible), Lsn(12), "none left: the visible LSN");
        s.release(7, d); // a release of nothing registered changes nothing
        assert_eq!(s.horizon(&visible), Lsn(12));
        // Three LSNs in one shard, the middle one released first.
        let e = s.take(1, &visible);
        visible.store(14, SeqCst);
        let (f, g) = (s.take(1, &visible), s.take(1, &visible));
        visible.store(20, SeqCst);
        let h = s.take(1, &visible);
        s.release(1, f);
        assert_eq!(s.horizon(&visible), Lsn(12));
        s.release(1, e);
        assert_eq!(s.horizon(&visible), Lsn(14), "g is still at 14");
        s.release(1, g);
        assert_eq!(s.horizon(&visible), Lsn(20));
        s.release(1, h);
        assert_eq!(s.horizon(&visible), Lsn(20));
        assert!(s.shards.iter().all(|sh| lock(&sh.0).is_empty()), "nothing left registered");
    }

    #[test]
    fn no_horizon_computed_while_a_snapshot_lives_passes_it() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let s = Arc::new(Snapshots::new());
        let visible = Arc::new(AtomicU64::new(1));
        // The newest horizon computed so far, published after it is computed.
        let published = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let takers: Vec<_> = (0..2u64)
            .map(|t| {
                let (s, visible, published, stop) =
                    (Arc::clone(&s), Arc::clone(&visible), Arc::clone(&published), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut held = std::collections::VecDeque::new();
                    let mut checked = 0u64;
                    let mut i = t;
                    while !stop.load(SeqCst) || checked < 1000 {
                        held.push_back((i, s.take(i, &visible)));
                        i += 2;
                        if held.len() > 8 {
                            let (shard, at) = held.pop_front().expect("held");
                            // Every horizon published so far was computed before this release.
                            let h = published.load(SeqCst);
                            assert!(h <= at.0, "a horizon {h} passed a live snapshot at {at:?}");
                            s.release(shard, at);
                            checked += 1;
                        }
                    }
                })
            })
            .collect();
        // The visible LSN moves on its own, as commits make it do, also while a horizon is read.
        let advancer = {
            let (visible, stop) = (Arc::clone(&visible), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    visible.fetch_add(1, SeqCst);
                }
            })
        };
        let mut last = Lsn(0);
        for _ in 0..100_000 {
            let h = s.horizon(&visible);
            assert!(h >= last, "the horizon only grows: {h:?} after {last:?}");
            published.store(h.0, SeqCst);
            last = h;
        }
        stop.store(true, SeqCst);
        advancer.join().expect("advancer");
        for t in takers {
            t.join().expect("no taker saw the horizon pass its snapshot");
        }
    }
}
