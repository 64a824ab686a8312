//! Streaming iterators against a `BTreeMap` model: forward, backward and both ends in turn, over
//! bounds of every kind, across memtables and every level (memtables of 512 B, flushed and
//! compacted as the data is written), at a snapshot, with a transaction's own writes and
//! deletions; and the consumed part of a range validated under `Serializable`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use proptest::prelude::*;
use waldb::wal::Driver;
use waldb::{Db, DbOptions, Error, StdDisk, SystemClock};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options() -> DbOptions {
    DbOptions::default()
        .with_memtable_bytes(Some(512))
        .with_driver(Driver::Manual)
        .with_segment_bytes(64 << 10)
        .with_table_block_bytes(256)
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"abc\xff"[..]), 1..5)
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    let key = prop::collection::vec(prop::sample::select(&b"abcd\xff"[..]), 0..4);
    prop_oneof![Just(Bound::Unbounded), key.clone().prop_map(Bound::Included), key.prop_map(Bound::Excluded)]
}

fn borrow(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, u8),
    Delete(Vec<u8>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key_strategy(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => key_strategy().prop_map(Op::Delete),
    ]
}

fn apply(db: &Db<StdDisk, SystemClock>, model: &mut Model, ops: &[Op]) {
    for chunk in ops.chunks(3) {
        db.transact(|t| {
            for op in chunk {
                match op {
                    Op::Put(k, v) => t.put(k, &[*v; 20])?,
                    Op::Delete(k) => t.delete(k)?,
                }
            }
            Ok(())
        })
        .unwrap();
        for op in chunk {
            match op {
                Op::Put(k, v) => model.insert(k.clone(), vec![*v; 20]),
                Op::Delete(k) => model.remove(k),
            };
        }
    }
}

/// Walks `it` taking from the front or the back as `turns` say (then from the front), and
/// checks every pair against `want`.
fn walk<I: DoubleEndedIterator<Item = waldb::Result<waldb::Pair>>>(
    mut it: I,
    want: &[(Vec<u8>, Vec<u8>)],
    turns: &[bool],
) {
    let mut deque: VecDeque<_> = want.iter().cloned().collect();
    for &back in turns.iter().chain(std::iter::repeat_n(&false, want.len() + 2)) {
        let (got, expected) =
            if back { (it.next_back(), deque.pop_back()) } else { (it.next(), deque.pop_front()) };
        let got = got.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap());
        assert_eq!(got, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn iterators_match_the_model(
        before in prop::collection::vec(op_strategy(), 0..200),
        after in prop::collection::vec(op_strategy(), 0..60),
        own in prop::collection::vec(op_strategy(), 0..12),
        ranges in prop::collection::vec((bound_strategy(), bound_strategy(), prop::collection::vec(any::<bool>(), 0..30)), 1..5),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (db, _) = Db::open_opts(tmp.path(), options()).unwrap();
        let mut model = Model::new();
        apply(&db, &mut model, &before);
        let snapshot_model = model.clone();
        let mut txn = db.begin().unwrap();
        let pinned = db.range(..);
        // Writes after the snapshot: neither the transaction nor `pinned` sees them.
        apply(&db, &mut model, &after);
        db.checkpoint().unwrap();
        let mut txn_model = snapshot_model.clone();
        for op in &own {
            match op {
                Op::Put(k, v) => { txn.put(k, &[*v; 3]).unwrap(); txn_model.insert(k.clone(), vec![*v; 3]); }
                Op::Delete(k) => { txn.delete(k).unwrap(); txn_model.remove(k); }
            }
        }
        let all: Vec<_> = snapshot_model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        walk(pinned, &all, &[]);
        for (lo, hi, turns) in &ranges {
            let range = (borrow(lo), borrow(hi));
            // A range no key fits in (BTreeMap panics on some): ours are empty.
            let empty = match (lo, hi) {
                (Bound::Included(a), Bound::Included(b)) => a > b,
                (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
                _ => false,
            };
            let pick = |m: &Model| {
                if empty {
                    return Vec::new();
                }
                m.range::<[u8], _>(range).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
            };
            walk(db.range(range), &pick(&model), turns);
            walk(txn.range(range), &pick(&txn_model), turns);
        }
        for prefix in [&b"a"[..], b"ab", b"\xff", b"", b"c\xff"] {
            let want: Vec<_> = model.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
            walk(db.prefix(prefix), &want, &[true, false]);
            let want: Vec<_> = txn_model.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
            walk(txn.prefix(prefix), &want, &[false, true]);
        }
    }
}

/// Ranges longer than a chunk, across memtables and levels, in both directions at once.
#[test]
fn long_ranges_stream_in_chunks_from_both_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), options().with_memtable_bytes(Some(8192))).unwrap();
    let mut model = Model::new();
    for round in 0..30u32 {
        db.transact(|t| {
            for i in 0..100u32 {
                let k = format!("{:06}", (i * 7919 + round * 131) % 2000);
                t.put(k.as_bytes(), format!("{round}").as_bytes())?;
            }
            t.delete(format!("{:06}", round * 37).as_bytes())
        })
        .unwrap();
        for i in 0..100u32 {
            model.insert(
                format!("{:06}", (i * 7919 + round * 131) % 2000).into_bytes(),
                format!("{round}").into_bytes(),
            );
        }
        model.remove(format!("{:06}", round * 37).as_bytes());
    }
    let stats = db.stats();
    assert!(stats.compactions > 0 && stats.tables > 1, "{stats:?}");
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(want.len() > 3 * waldb::db::RANGE_CHUNK, "{} pairs", want.len());
    let turns: Vec<bool> = (0..want.len()).map(|i| i % 3 == 0).collect();
    walk(db.range(..), &want, &turns);
    walk(db.range(..).rev().collect::<Vec<_>>().into_iter().rev(), &want, &[]);
}

/// Under `Serializable`, what an iterator consumed is validated: a key written after the
/// snapshot in the consumed part conflicts; outside it, it does not.
#[test]
fn the_consumed_part_of_a_range_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), options()).unwrap();
    db.transact(|t| {
        for k in ["a", "c", "e", "g", "i"] {
            t.put(k.as_bytes(), b"v")?;
        }
        Ok(())
    })
    .unwrap();
    // Consumes "a", "c" from the front and "i" from the back.
    let consume = |txn: &mut waldb::Transaction<StdDisk, SystemClock>| {
        let mut it = txn.range(..);
        assert_eq!(&*it.next().unwrap().unwrap().0, b"a");
        assert_eq!(&*it.next().unwrap().unwrap().0, b"c");
        assert_eq!(&*it.next_back().unwrap().unwrap().0, b"i");
    };
    for (phantom, conflicts) in [("b", true), ("j", true), ("f", false), ("d", false)] {
        let mut txn = db.begin().unwrap();
        consume(&mut txn);
        txn.put(b"out", phantom.as_bytes()).unwrap();
        db.transact(|t| t.put(phantom.as_bytes(), b"phantom")).unwrap();
        match txn.commit_blocking() {
            Err(Error::Conflict { key, .. }) => {
                assert!(conflicts && &*key == phantom.as_bytes(), "{phantom}")
            }
            Ok(_) => assert!(!conflicts, "a phantom at {phantom:?} in the consumed part was missed"),
            Err(e) => panic!("{e}"),
        }
        db.transact(|t| {
            t.delete(phantom.as_bytes())?;
            t.delete(b"out")
        })
        .unwrap();
    }
}

/// A range no key fits in — upside down, or empty with an excluded bound — gives nothing, from
/// every reading method (a `BTreeMap` would panic on some of them).
#[test]
fn ranges_no_key_fits_in_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), options()).unwrap();
    db.transact(|t| t.put(b"b", b"v")).unwrap();
    type Range<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);
    let cases: [Range<'_>; 4] = [
        (Bound::Excluded(b"b"), Bound::Excluded(b"b")),
        (Bound::Included(b"b"), Bound::Excluded(b"b")),
        (Bound::Excluded(b"b"), Bound::Included(b"b")),
        (Bound::Included(b"c"), Bound::Included(b"a")),
    ];
    for range in cases {
        assert!(db.scan(range).unwrap().is_empty(), "{range:?}");
        assert_eq!(db.range(range).count(), 0, "{range:?}");
        let mut txn = db.begin().unwrap();
        txn.put(b"b", b"mine").unwrap();
        assert!(txn.scan(range).unwrap().is_empty(), "{range:?}");
        assert_eq!(txn.range(range).count(), 0, "{range:?}");
        assert_eq!(txn.range(range).rev().count(), 0, "{range:?}");
    }
}
