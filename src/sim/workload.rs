//! The async workload of the turmoil and madsim harnesses, written once: writers, a snapshot
//! reader and a checkpointer, as tasks on whatever runtime the harness runs, reporting into a
//! [`History`] that checks every recovery and snapshot against what was committed.
//!
//! - **Writers** commit transactions of 1 to 6 keys of their own, `Sync` or `Buffered`, with
//!   `.await`; one in four also increments a shared counter under `Serializable` isolation
//!   (read, then write: these conflict). Every commit's LSN is recorded when it is sequenced,
//!   before the first `.await`, so a commit whose outcome is an error is placed in the commit
//!   order from the start; a commit that resolves `Ok` must be visible at once to its writer.
//! - **The reader** takes snapshots every few milliseconds: each must hold every transaction
//!   settled before it began, each whole, and a counter equal to the increments it holds.
//! - **The checkpointer** writes a checkpoint every 10–60 ms.
//!
//! Each task returns when the database fails (the node was crashed or its log poisoned): the
//! harness crashes the disk, restarts the node and checks the recovered state with the same
//! [`History`]. A failure caused by a panic inside waldb ([`Error::is_panic`]) is a bug, never
//! a fault: it fails the seed. The harness supplies its runtime's sleep ([`Runtime`]) and the
//! state the tasks report into ([`Observer`]).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::history::{COUNTER, History, counter_value, txn_key, txn_value};
use crate::clock::Clock;
use crate::db::{Db, Isolation, Pair};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::rng::SimRng;
use crate::wal::Durability;

/// The runtime the tasks run on: its (virtual) sleep.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Sleeps for `duration` of the runtime's time.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// What the tasks did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Transactions acknowledged.
    pub acked: u64,
    /// Transactions refused for a conflict (nothing written).
    pub conflicts: u64,
    /// Transactions whose commit failed after they were sequenced (outcome unknown).
    pub unknown: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

impl Counts {
    /// Adds `o` to these.
    pub fn add(&mut self, o: &Counts) {
        self.acked += o.acked;
        self.conflicts += o.conflicts;
        self.unknown += o.unknown;
        self.snapshots += o.snapshots;
        self.checkpoints += o.checkpoints;
    }
}

/// The harness's shared state, as the tasks see it.
pub trait Observer: Send + 'static {
    /// What was committed, and the checks against it.
    fn history(&mut self) -> &mut History;
    /// Where the tasks count what they did.
    fn counts(&mut self) -> &mut Counts;
    /// Notes an event in the harness's log of the seed.
    fn event(&mut self, event: String);
    /// Fails the seed: a check did not hold.
    fn fail(&mut self, what: String);
}

/// How the tasks pace themselves, in the runtime's time.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Timing {
    /// The longest pause of a counter increment between its read and its commit (so that
    /// other writers commit meanwhile and conflicts happen).
    pub conflict_window: Duration,
    /// The reader takes a snapshot every `reader_every` times 1 to 10.
    pub reader_every: Duration,
}

impl Timing {
    /// Timing with these two pauses.
    pub fn new(conflict_window: Duration, reader_every: Duration) -> Self {
        Timing { conflict_window, reader_every }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every pair visible now, from a snapshot transaction.
///
/// # Errors
///
/// The database's error (it was closed or failed).
pub fn scan_all<D: Disk + Clone, C: Clock + Clone>(db: &Db<D, C>) -> Result<Vec<Pair>> {
    let mut txn = db.begin_with(Isolation::Snapshot)?;
    let pairs = txn.scan(..)?;
    txn.abort();
    Ok(pairs)
}

/// Commits transactions named `<prefix>.<n>` until the database fails.
pub async fn writer<D, C, O, R>(
    db: Db<D, C>,
    shared: Arc<Mutex<O>>,
    rt: R,
    timing: Timing,
    prefix: String,
    seed: u64,
) where
    D: Disk + Clone + Send + Sync + 'static,
    C: Clock + Clone + Send + Sync + 'static,
    O: Observer,
    R: Runtime,
{
    let window_us = u64::try_from(timing.conflict_window.as_micros()).unwrap_or(u64::MAX).max(1);
    let mut rng = SimRng::new(seed);
    for n in 0.. {
        let name = format!("{prefix}.{n}");
        let keys = 1 + rng.below(6);
        let increments = rng.below(4) == 0;
        let sync = rng.below(4) != 0;
        let Ok(mut txn) = db.begin() else { return };
        if increments {
            let current = match txn.get(COUNTER) {
                Ok(v) => counter_value(v.as_deref()),
                Err(_) => return,
            };
            // Let other writers commit between the read and the commit: conflicts happen.
            rt.sleep(Duration::from_micros(rng.below(window_us))).await;
            if txn.put(COUNTER, (current + 1).to_string().as_bytes()).is_err() {
                return;
            }
        }
        for i in 0..keys {
            if txn.put(&txn_key(&name, i), &txn_value(keys, increments, rng.below_usize(200))).is_err() {
                return;
            }
        }
        let durability =
            if sync { Durability::Sync } else { Durability::Buffered { every: Duration::from_millis(5) } };
        let commit = txn.commit_with(durability);
        // Recorded before the first await: a crash cannot come between sequencing and this.
        if let Some(lsn) = commit.lsn() {
            lock(&shared).history().sequenced(&name, lsn, keys, increments, sync);
        }
        let sequenced = commit.lsn().is_some();
        match commit.await {
            Ok(lsn) => {
                let visible = db.get(&txn_key(&name, 0)).ok().flatten().is_some();
                let mut s = lock(&shared);
                s.counts().acked += 1;
                if !visible {
                    return s.fail(format!("{name} acknowledged at LSN {lsn} but not visible to its writer"));
                }
                s.history().acknowledged(&name);
            }
            Err(Error::Conflict { .. }) if !sequenced => lock(&shared).counts().conflicts += 1,
            Err(e) => {
                let mut s = lock(&shared);
                if e.is_panic() {
                    return s.fail(format!("{name}: commit failed on a panic: {e}"));
                }
                // A sequenced commit that fails says its outcome is unknown; one refused
                // before the log says nothing was written.
                if sequenced != matches!(e, Error::CommitUnknown { .. }) {
                    return s.fail(format!("{name}: commit failed with {e}: the wrong outcome"));
                }
                if sequenced {
                    s.counts().unknown += 1;
                }
                s.event(format!("{name}: commit failed: {e}"));
                return;
            }
        }
        rt.sleep(Duration::from_micros(100 * rng.below(20))).await;
    }
}

/// Takes and checks snapshots until the database fails.
pub async fn reader<D, C, O, R>(db: Db<D, C>, shared: Arc<Mutex<O>>, rt: R, timing: Timing, seed: u64)
where
    D: Disk + Clone + Send + Sync + 'static,
    C: Clock + Clone + Send + Sync + 'static,
    O: Observer,
    R: Runtime,
{
    let mut rng = SimRng::new(seed);
    loop {
        let times = u32::try_from(1 + rng.below(10)).expect("at most 10");
        rt.sleep(timing.reader_every * times).await;
        let settled = lock(&shared).history().settled();
        let Ok(pairs) = scan_all(&db) else { return };
        let mut s = lock(&shared);
        match s.history().check_snapshot(&settled, &pairs) {
            Ok(()) => s.counts().snapshots += 1,
            Err(e) => return s.fail(format!("snapshot: {e}")),
        }
    }
}

/// Writes a checkpoint every 10–60 ms until one fails.
pub async fn checkpointer<D, C, O, R>(db: Db<D, C>, shared: Arc<Mutex<O>>, rt: R, seed: u64)
where
    D: Disk + Clone + Send + Sync + 'static,
    C: Clock + Clone + Send + Sync + 'static,
    O: Observer,
    R: Runtime,
{
    let mut rng = SimRng::new(seed);
    loop {
        rt.sleep(Duration::from_millis(10 + rng.below(50))).await;
        let r = db.checkpoint();
        let mut s = lock(&shared);
        match r {
            Ok(r) => {
                s.counts().checkpoints += 1;
                s.event(format!("checkpoint at LSN {:?}: {} entries", r.lsn, r.entries));
            }
            Err(e) if e.is_panic() => return s.fail(format!("checkpoint failed on a panic: {e}")),
            Err(e) => {
                s.event(format!("checkpoint failed: {e}"));
                return;
            }
        }
    }
}
