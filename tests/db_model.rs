//! The database against a model: random sequences of begin, put, delete, get, scan, commit,
//! abort, checkpoint, reopen and crash on `SimDisk`, checked step by step against a `BTreeMap`
//! model of committed state, snapshots and serializable validation. proptest shrinks a failing
//! sequence to a short one.
#![cfg(feature = "sim")]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use proptest::prelude::*;
use waldb::db::{DbOptions, Isolation};
use waldb::sim::SimDisk;
use waldb::{Db, Error, SystemClock};

const SLOTS: usize = 3;
const KEYS: u8 = 8;

#[derive(Clone, Debug)]
enum Step {
    Begin(usize),
    Put(usize, u8, u8),
    Delete(usize, u8),
    Get(usize, u8),
    Scan(usize, u8, u8),
    Commit(usize),
    Abort(usize),
    Checkpoint,
    Reopen,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    step_with(1)
}

/// Steps with reopens and crashes weighted `restarts` (of 20 + 2 × `restarts`).
fn step_with(restarts: u32) -> impl Strategy<Value = Step> {
    let slot = 0..SLOTS;
    let key = 0..KEYS;
    prop_oneof![
        3 => slot.clone().prop_map(Step::Begin),
        5 => (slot.clone(), key.clone(), any::<u8>()).prop_map(|(s, k, v)| Step::Put(s, k, v)),
        2 => (slot.clone(), key.clone()).prop_map(|(s, k)| Step::Delete(s, k)),
        3 => (slot.clone(), key.clone()).prop_map(|(s, k)| Step::Get(s, k)),
        2 => (slot.clone(), key.clone(), key.clone()).prop_map(|(s, a, b)| Step::Scan(s, a.min(b), a.max(b))),
        4 => slot.clone().prop_map(Step::Commit),
        1 => slot.prop_map(Step::Abort),
        1 => Just(Step::Checkpoint),
        restarts => Just(Step::Reopen),
        restarts => Just(Step::Crash),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k}").into_bytes()
}

/// A model transaction.
struct ModelTxn {
    begun_at: u64,
    snapshot: BTreeMap<Vec<u8>, Vec<u8>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    reads: BTreeSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Model {
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commit counter, and the counter value of each key's last write.
    clock: u64,
    last_write: BTreeMap<Vec<u8>, u64>,
}

impl Model {
    fn conflicts(&self, t: &ModelTxn) -> bool {
        let after = |k: &Vec<u8>| self.last_write.get(k).is_some_and(|&c| c > t.begun_at);
        t.reads.iter().chain(t.writes.keys()).any(after)
            || t.ranges.iter().any(|(lo, hi)| {
                self.last_write
                    .range::<Vec<u8>, _>((Bound::Included(lo), Bound::Excluded(hi)))
                    .any(|(_, &c)| c > t.begun_at)
            })
    }
}

fn options(tiny: bool) -> DbOptions {
    let base = if tiny {
        // Memtables of 512 B: a freeze every few versions, flushed and compacted by the
        // committers (the manual driver keeps it deterministic).
        DbOptions::default().with_memtable_bytes(Some(512)).with_driver(waldb::wal::Driver::Manual)
    } else {
        DbOptions::default().with_memtable_bytes(None)
    };
    base.with_segment_bytes(4096)
        .with_key_bytes_max(Some(64))
        .with_value_bytes_max(Some(64))
        .with_txn_bytes_max(Some(1024))
        .with_isolation(Isolation::Serializable)
}

fn open(disk: &SimDisk, tiny: bool) -> Db<SimDisk, SystemClock> {
    Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options(tiny)).expect("opens").0
}

fn run(seed: u64, steps: &[Step], tiny: bool) {
    let disk = SimDisk::new(seed);
    let mut db = open(&disk, tiny);
    let mut model = Model { committed: BTreeMap::new(), clock: 0, last_write: BTreeMap::new() };
    let mut txns: Vec<Option<(waldb::Transaction<SimDisk, SystemClock>, ModelTxn)>> =
        (0..SLOTS).map(|_| None).collect();
    for (i, s) in steps.iter().enumerate() {
        match s.clone() {
            Step::Begin(slot) => {
                let t = db.begin().unwrap();
                let m = ModelTxn {
                    begun_at: model.clock,
                    snapshot: model.committed.clone(),
                    writes: BTreeMap::new(),
                    reads: BTreeSet::new(),
                    ranges: Vec::new(),
                };
                txns[slot] = Some((t, m));
            }
            Step::Put(slot, k, v) => {
                if let Some((t, m)) = &mut txns[slot] {
                    t.put(&key(k), &[v]).unwrap();
                    m.writes.insert(key(k), Some(vec![v]));
                }
            }
            Step::Delete(slot, k) => {
                if let Some((t, m)) = &mut txns[slot] {
                    t.delete(&key(k)).unwrap();
                    m.writes.insert(key(k), None);
                }
            }
            Step::Get(slot, k) => {
                if let Some((t, m)) = &mut txns[slot] {
                    let got = t.get(&key(k)).unwrap().map(|v| v.to_vec());
                    let want = match m.writes.get(&key(k)) {
                        Some(own) => own.clone(),
                        None => {
                            m.reads.insert(key(k));
                            m.snapshot.get(&key(k)).cloned()
                        }
                    };
                    assert_eq!(got, want, "step {i}: get key{k}");
                }
            }
            Step::Scan(slot, lo, hi) => {
                if let Some((t, m)) = &mut txns[slot] {
                    let (lo, hi) = (key(lo), key(hi));
                    let got: Vec<(Vec<u8>, Vec<u8>)> = t
                        .scan(&lo[..]..&hi[..])
                        .unwrap()
                        .into_iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect();
                    let mut view = m.snapshot.clone();
                    for (k, v) in &m.writes {
                        match v {
                            Some(v) => view.insert(k.clone(), v.clone()),
                            None => view.remove(k),
                        };
                    }
                    let want: Vec<(Vec<u8>, Vec<u8>)> =
                        view.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                    assert_eq!(got, want, "step {i}: scan");
                    m.ranges.push((lo, hi));
                }
            }
            Step::Commit(slot) => {
                if let Some((t, m)) = txns[slot].take() {
                    let result = t.commit_blocking();
                    if m.writes.is_empty() {
                        assert!(result.is_ok(), "step {i}: a read-only commit: {result:?}");
                    } else if model.conflicts(&m) {
                        assert!(
                            matches!(result, Err(Error::Conflict { .. })),
                            "step {i}: expected a conflict, got {result:?}"
                        );
                    } else {
                        result.unwrap_or_else(|e| panic!("step {i}: commit failed: {e}"));
                        model.clock += 1;
                        for (k, v) in m.writes {
                            model.last_write.insert(k.clone(), model.clock);
                            match v {
                                Some(v) => model.committed.insert(k, v),
                                None => model.committed.remove(&k),
                            };
                        }
                    }
                }
            }
            Step::Abort(slot) => {
                if let Some((t, _)) = txns[slot].take() {
                    t.abort();
                }
            }
            Step::Checkpoint => {
                db.checkpoint().unwrap();
            }
            Step::Reopen | Step::Crash => {
                txns.iter_mut().for_each(|t| *t = None);
                if matches!(s, Step::Reopen) {
                    db.close().unwrap();
                }
                drop(db);
                if matches!(s, Step::Crash) {
                    disk.crash();
                }
                db = open(&disk, tiny);
                // Open transactions are gone; the validation history restarts with them.
                model.last_write.clear();
                model.clock = 0;
            }
        }
        let all: BTreeMap<Vec<u8>, Vec<u8>> =
            db.scan(..).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(all, model.committed, "step {i} ({s:?}): committed state");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn the_database_behaves_like_the_model(seed in any::<u64>(), steps in proptest::collection::vec(step(), 1..80)) {
        run(seed, &steps, false);
    }

    /// The same with memtables of 512 B: every few commits a freeze, a flush, and compactions
    /// down the levels, with snapshots held across them.
    #[test]
    fn the_database_behaves_like_the_model_with_tiny_memtables(
        seed in any::<u64>(),
        steps in proptest::collection::vec(
            prop_oneof![19 => step_with(0), 1 => step_with(1)],
            1..300,
        ),
    ) {
        run(seed, &steps, true);
    }
}
