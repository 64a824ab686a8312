//! The database on real files and on `SimDisk`: commit, abort, recovery, checkpoints and
//! compaction, isolation (lost updates, write skew), visibility before durability, limits, the
//! directory lock, transaction ids across restarts. The guarantees are in `src/db/mod.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use common::block_on;
use waldb::db::{DbOptions, Isolation};
use waldb::wal::Durability;
use waldb::{ConflictOn, Db, Error, Lsn, SystemClock};

fn small() -> DbOptions {
    DbOptions::default()
        .with_segment_bytes(64 << 10)
        .with_key_bytes_max(Some(1 << 10))
        .with_value_bytes_max(Some(8 << 10))
        .with_txn_bytes_max(Some(16 << 10))
        .with_memtable_bytes(None)
}

/// Every live pair visible now, as strings.
fn all<D: waldb::Disk + Clone>(db: &Db<D, SystemClock>) -> BTreeMap<String, String> {
    db.scan(..)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

fn get(db: &Db, key: &str) -> Option<String> {
    db.get(key.as_bytes()).unwrap().map(|v| String::from_utf8(v.to_vec()).unwrap())
}

#[test]
fn commit_abort_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, report) = Db::open_opts(tmp.path(), small()).unwrap();
    assert_eq!(report.txns_replayed, 0);
    let mut t = db.begin().unwrap();
    t.put(b"a", b"1").unwrap();
    t.put(b"b", b"2").unwrap();
    let lsn = t.commit_blocking().unwrap();
    assert!(lsn >= Lsn(1));
    let mut t = db.begin().unwrap();
    t.put(b"c", b"3").unwrap();
    t.delete(b"a").unwrap();
    t.abort();
    let mut t = db.begin().unwrap();
    t.delete(b"b").unwrap();
    t.put(b"d", b"4").unwrap();
    t.commit_blocking().unwrap();
    assert_eq!(get(&db, "a").as_deref(), Some("1"));
    assert_eq!(get(&db, "b"), None);
    assert_eq!(get(&db, "c"), None);
    // Dropped, not closed: the next open replays the log (a close flushes the memtables).
    drop(db);

    let (db, report) = Db::open_opts(tmp.path(), small()).unwrap();
    assert_eq!(report.txns_replayed, 2);
    assert_eq!(report.checkpoint_lsn, None);
    assert_eq!(get(&db, "a").as_deref(), Some("1"));
    assert_eq!(get(&db, "b"), None);
    assert_eq!(get(&db, "d").as_deref(), Some("4"));
    assert_eq!(db.visible_lsn(), report.lsn);
}

#[test]
fn a_transaction_reads_its_snapshot_and_its_own_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut setup = db.begin().unwrap();
    for k in ["k1", "k2", "k3", "k5"] {
        setup.put(k.as_bytes(), b"old").unwrap();
    }
    setup.commit_blocking().unwrap();

    let mut reader = db.begin().unwrap();
    let mut writer = db.begin().unwrap();
    writer.put(b"k1", b"new").unwrap();
    writer.commit_blocking().unwrap();
    // The reader's snapshot predates the write.
    assert_eq!(reader.get(b"k1").unwrap().as_deref(), Some(&b"old"[..]));
    reader.put(b"k4", b"mine").unwrap();
    reader.delete(b"k2").unwrap();
    let keys: Vec<_> = reader
        .scan(&b"k"[..]..&b"l"[..])
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("k1".into(), "old".into()),
            ("k3".into(), "old".into()),
            ("k4".into(), "mine".into()),
            ("k5".into(), "old".into())
        ]
    );
    let limited = reader.scan_limit(&b"k"[..]..&b"l"[..], 2).unwrap();
    assert_eq!(limited.len(), 2);
    reader.abort();
    assert_eq!(get(&db, "k1").as_deref(), Some("new"));
}

#[test]
fn a_second_opener_is_refused_until_the_first_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    match Db::open_opts(tmp.path(), small()) {
        Err(Error::Locked { path }) => assert!(path.ends_with("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    db.close().unwrap();
    drop(db);
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    db.close().unwrap();
}

#[test]
fn transaction_ids_and_lsns_continue_after_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen_ids = Vec::new();
    let mut last_lsn = Lsn::ZERO;
    for round in 0..4 {
        let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
        for i in 0..5 {
            let mut t = db.begin().unwrap();
            seen_ids.push(t.id());
            if i % 2 == 0 {
                t.put(format!("{round}-{i}").as_bytes(), b"v").unwrap();
                let lsn = t.commit_blocking().unwrap();
                assert!(lsn > last_lsn, "LSN {lsn} after {last_lsn}");
                last_lsn = lsn;
            } else {
                t.abort(); // an id handed out and never committed is not reused either
            }
        }
        if round == 2 {
            db.checkpoint().unwrap();
        }
        db.close().unwrap();
    }
    let mut sorted = seen_ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen_ids.len(), "transaction ids repeat: {seen_ids:?}");
    assert!(seen_ids.windows(2).all(|w| w[0] < w[1]), "ids rise: {seen_ids:?}");
}

#[test]
fn checkpoints_compact_the_log_and_recovery_uses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut model = BTreeMap::new();
    // Enough to fill many 64 KiB segments.
    for i in 0..2000u32 {
        let mut t = db.begin().unwrap();
        let key = format!("key{:04}", i % 300);
        if i % 7 == 0 {
            t.delete(key.as_bytes()).unwrap();
            model.remove(&key);
        } else {
            let value = format!("value-{i}-{}", "x".repeat(100));
            t.put(key.as_bytes(), value.as_bytes()).unwrap();
            model.insert(key, value);
        }
        t.commit_blocking().unwrap();
    }
    let segments_before = std::fs::read_dir(tmp.path().join("wal")).unwrap().count();
    let report = db.checkpoint().unwrap();
    assert_eq!(report.lsn, Some(db.visible_lsn()));
    assert_eq!(report.entries, model.len() as u64);
    assert!(report.segments_removed > 0, "{report:?}");
    let segments_after = std::fs::read_dir(tmp.path().join("wal")).unwrap().count();
    assert!(segments_after < segments_before, "{segments_before} → {segments_after}");
    // A second checkpoint with nothing new does nothing.
    assert_eq!(db.checkpoint().unwrap().lsn, None);
    // Commits after the checkpoint are replayed on top of it.
    let mut t = db.begin().unwrap();
    t.put(b"after", b"checkpoint").unwrap();
    t.commit_blocking().unwrap();
    model.insert("after".into(), "checkpoint".into());
    // Dropped, not closed: the next open replays the log (a close flushes the memtables).
    drop(db);

    let (db, report) = Db::open_opts(tmp.path(), small()).unwrap();
    assert!(report.checkpoint_lsn.is_some());
    assert_eq!(report.txns_replayed, 1);
    let all = all(&db);
    assert_eq!(all, model);
}

#[test]
fn automatic_checkpoints_run_by_bytes_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = small().with_memtable_bytes(Some(32 << 10));
    let (db, _) = Db::open_opts(tmp.path(), opts).unwrap();
    for i in 0..400u32 {
        let mut t = db.begin().unwrap();
        t.put(format!("k{}", i % 50).as_bytes(), &[7u8; 500]).unwrap();
        t.commit_blocking().unwrap();
    }
    // The checkpointer runs in the background: wait (bounded) for it.
    let mut waited = 0;
    while db.stats().checkpoints == 0 && waited < 500 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    let stats = db.stats();
    assert!(stats.checkpoints >= 1, "{stats:?}");
    assert_eq!(stats.last_checkpoint_error, None);
    db.close().unwrap();
}

/// Read-modify-write increments from many threads: under `Serializable` no update is lost —
/// the final sum equals the number of successful commits.
#[test]
fn no_lost_update_under_serializable() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let committed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            let committed = Arc::clone(&committed);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let counter = format!("counter{}", (t + i) % 3);
                    let mut txn = db.begin().unwrap();
                    let n = txn
                        .get(counter.as_bytes())
                        .unwrap()
                        .map_or(0, |v| u64::from_le_bytes(v[..].try_into().unwrap()));
                    txn.put(counter.as_bytes(), &(n + 1).to_le_bytes()).unwrap();
                    match txn.commit_blocking() {
                        Ok(_) => {
                            committed.fetch_add(1, SeqCst);
                        }
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let sum: u64 = (0..3)
        .map(|c| {
            db.get(format!("counter{c}").as_bytes())
                .unwrap()
                .map_or(0, |v| u64::from_le_bytes(v[..].try_into().unwrap()))
        })
        .sum();
    let ok = committed.load(SeqCst);
    assert_eq!(sum, ok, "lost updates");
    assert!(ok > 0);
    assert_eq!(db.stats().conflicts + ok, 800);
}

/// Phantoms from many threads: each transaction counts the keys under a prefix and inserts
/// one more key there holding that count. Serializable means every commit saw all the ones
/// before it, so the counts are exactly 0, 1, 2, … — two commits with the same count would be
/// a phantom that range validation let through. `None` commits keep the commits short, so that
/// writers commit between a scanner's validation outside the sequencer's lock and its turn in it.
#[test]
fn no_phantom_under_serializable() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let mut txn = db.begin().unwrap();
                    let count = txn.scan(&b"p/"[..]..&b"p0"[..]).unwrap().len() as u64;
                    txn.put(format!("p/{t}/{i}").as_bytes(), &count.to_le_bytes()).unwrap();
                    match txn.commit_with(Durability::None).wait() {
                        Ok(_) | Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let scanned = db.scan(&b"p/"[..]..&b"p0"[..]).unwrap();
    let mut counts: Vec<u64> =
        scanned.iter().map(|(_, v)| u64::from_le_bytes(v[..].try_into().unwrap())).collect();
    counts.sort_unstable();
    let expected: Vec<u64> = (0..counts.len() as u64).collect();
    assert_eq!(counts, expected, "two commits saw the same number of keys: a phantom");
    assert!(
        counts.len() > 1 && db.stats().conflicts > 0,
        "{} commits, {} conflicts",
        counts.len(),
        db.stats().conflicts
    );
}

/// Two on-call doctors; each transaction takes one off call if the other is on call. Under
/// snapshot isolation both commit (write skew: nobody on call); serializable refuses one.
fn write_skew(isolation: Isolation) -> (bool, bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut t = db.begin().unwrap();
    t.put(b"alice", b"on").unwrap();
    t.put(b"bob", b"on").unwrap();
    t.commit_blocking().unwrap();
    let mut a = db.begin_with(isolation).unwrap();
    let mut b = db.begin_with(isolation).unwrap();
    assert_eq!(a.get(b"bob").unwrap().as_deref(), Some(&b"on"[..]));
    a.put(b"alice", b"off").unwrap();
    assert_eq!(b.get(b"alice").unwrap().as_deref(), Some(&b"on"[..]));
    b.put(b"bob", b"off").unwrap();
    let ra = a.commit_blocking();
    let rb = b.commit_blocking();
    if let Err(e) = &rb {
        // b read alice, whom a took off call.
        assert!(matches!(e, Error::Conflict { key, on: ConflictOn::Read, .. } if &**key == b"alice"), "{e}");
        assert!(e.is_retryable());
    }
    (ra.is_ok(), rb.is_ok())
}

#[test]
fn write_skew_is_refused_under_serializable_and_allowed_under_snapshot() {
    assert_eq!(write_skew(Isolation::Serializable), (true, false));
    assert_eq!(write_skew(Isolation::Snapshot), (true, true));
}

#[test]
fn a_scanned_range_conflicts_with_an_insert_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut scanner = db.begin().unwrap();
    assert!(scanner.scan(&b"a"[..]..&b"m"[..]).unwrap().is_empty());
    scanner.put(b"count", b"0").unwrap();
    let mut inserter = db.begin().unwrap();
    inserter.put(b"f", b"phantom").unwrap();
    inserter.commit_blocking().unwrap();
    let e = scanner.commit_blocking().unwrap_err();
    assert!(matches!(&e, Error::Conflict { key, on: ConflictOn::ScannedRange, .. } if &**key == b"f"), "{e}");
    // Outside the range: no conflict.
    let mut scanner = db.begin().unwrap();
    scanner.scan(&b"a"[..]..&b"m"[..]).unwrap();
    scanner.put(b"count", b"1").unwrap();
    let mut other = db.begin().unwrap();
    other.put(b"z", b"far").unwrap();
    other.commit_blocking().unwrap();
    scanner.commit_blocking().unwrap();
}

#[test]
fn ten_threads_times_a_hundred_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut lsns = Vec::new();
                for i in 0..100 {
                    let mut txn = db.begin().unwrap();
                    txn.put(format!("{t}-{i}").as_bytes(), b"v").unwrap();
                    lsns.push(txn.commit_blocking().unwrap());
                }
                lsns
            })
        })
        .collect();
    let mut all: Vec<Lsn> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "every commit has its own LSN");
    // Dropped, not closed: the next open replays the log (a close flushes the memtables).
    drop(db);
    let (db, report) = Db::open_opts(tmp.path(), small()).unwrap();
    assert_eq!(report.txns_replayed, 1000);
    assert_eq!(db.scan(..).unwrap().len(), 1000);
}

/// Commits race on a few keys from several threads: they find their keys' places before the
/// sequencer's lock, while failed commits give back the places they added and reclamation
/// removes deleted keys. Each counter lives in one of two keys; a serializable transaction
/// reads both, deletes the one that holds the count and puts the count plus one into the other.
/// Every move deletes a key (reclaimed once no snapshot reads it) and adds one (a place a failed
/// commit gives back), and a write lost anywhere shows as a count short of the increments that
/// committed, before and after recovery.
#[test]
fn racing_commits_on_few_keys_lose_no_acknowledged_write() {
    const THREADS: usize = 4;
    const COUNTERS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let keys = |j: usize| (format!("a{j}"), format!("b{j}"));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as usize
                };
                let (mut increments, mut conflicts) = ([0u64; COUNTERS], 0u64);
                for _ in 0..3_000 {
                    let mut txn = db.begin().unwrap();
                    let first = next() % COUNTERS;
                    let moved: Vec<usize> = (0..1 + next() % 2).map(|i| (first + i) % COUNTERS).collect();
                    for &j in &moved {
                        let (a, b) = keys(j);
                        let read = |txn: &mut waldb::Transaction, k: &str| {
                            txn.get(k.as_bytes())
                                .unwrap()
                                .map(|v| std::str::from_utf8(&v).unwrap().parse::<u64>().unwrap())
                        };
                        let (from, to, count) = match (read(&mut txn, &a), read(&mut txn, &b)) {
                            (Some(n), None) => (Some(a), b, n),
                            (None, Some(n)) => (Some(b), a, n),
                            (None, None) => (None, a, 0),
                            (Some(_), Some(_)) => panic!("counter {j} in both keys"),
                        };
                        if let Some(from) = from {
                            txn.delete(from.as_bytes()).unwrap();
                        }
                        txn.put(to.as_bytes(), (count + 1).to_string().as_bytes()).unwrap();
                    }
                    match txn.commit_with(Durability::None).wait() {
                        Ok(_) => moved.iter().for_each(|&j| increments[j] += 1),
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (increments, conflicts)
            })
        })
        .collect();
    let (mut increments, mut conflicts) = ([0u64; COUNTERS], 0);
    for t in threads {
        let (n, c) = t.join().unwrap();
        (0..COUNTERS).for_each(|j| increments[j] += n[j]);
        conflicts += c;
    }
    assert!(conflicts > 0, "no commit failed: no place was given back");
    let check = |db: &Db| {
        for (j, &n) in increments.iter().enumerate() {
            let (a, b) = keys(j);
            let count = match (get(db, &a), get(db, &b)) {
                (Some(n), None) | (None, Some(n)) => n.parse::<u64>().unwrap(),
                other => panic!("counter {j}: {other:?}"),
            };
            assert_eq!(count, n, "counter {j}: every committed increment, and only those");
        }
    };
    check(&db);
    db.close().unwrap();
    drop(db);
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    check(&db);
}

#[test]
fn commits_complete_on_a_bare_executor() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut t = db.begin().unwrap();
    t.put(b"async", b"yes").unwrap();
    let lsn = block_on(t.commit()).unwrap();
    assert!(db.visible_lsn() >= lsn);
    assert_eq!(get(&db, "async").as_deref(), Some("yes"));
}

/// Deleted keys leave the memtable once no snapshot can read them, and not before: the
/// reclamation that `maintain()` runs after each commit (and the lock-free check that skips it
/// when nothing is due) neither leaks nor frees too early.
#[test]
fn deleted_keys_are_reclaimed_once_no_snapshot_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(dir.path(), small()).unwrap();
    let commit = |f: &dyn Fn(&mut waldb::Transaction)| {
        let mut txn = db.begin().unwrap();
        f(&mut txn);
        txn.commit_with(Durability::None).wait().unwrap();
    };
    commit(&|t| (0..10).for_each(|i| t.put(format!("k{i}").as_bytes(), b"v").unwrap()));
    assert_eq!(db.stats().keys, 10);
    // A snapshot from before the deletes holds their keys in the memtable.
    let mut old = db.begin_with(Isolation::Snapshot).unwrap();
    commit(&|t| (0..10).for_each(|i| t.delete(format!("k{i}").as_bytes()).unwrap()));
    commit(&|t| t.put(b"other", b"v").unwrap());
    assert_eq!(db.stats().keys, 11, "the old snapshot still reads the deleted keys");
    assert_eq!(old.get(b"k3").unwrap().as_deref(), Some(&b"v"[..]));
    old.abort();
    // The next commit reclaims them.
    commit(&|t| t.put(b"other", b"w").unwrap());
    assert_eq!(db.stats().keys, 1, "deleted keys no snapshot can read are removed");
    assert_eq!(all(&db).len(), 1);
    db.close().unwrap();
}

/// A commit that fails validation adds nothing to the memtable: the keys it claimed for its
/// versions before it met the conflict are given back.
#[test]
fn a_conflicting_commit_leaves_no_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(dir.path(), small()).unwrap();
    for isolation in [Isolation::Snapshot, Isolation::Serializable] {
        let mut loser = db.begin_with(isolation).unwrap();
        let mut winner = db.begin().unwrap();
        winner.put(b"z", b"first").unwrap();
        winner.commit_blocking().unwrap();
        // Written in key order: "a" and "b" are claimed before "z" conflicts.
        for key in [&b"a"[..], b"b", b"z"] {
            loser.put(key, b"second").unwrap();
        }
        let e = loser.commit_blocking().unwrap_err();
        assert!(matches!(&e, Error::Conflict { key, on: ConflictOn::Write, .. } if &**key == b"z"), "{e}");
        assert_eq!(db.stats().keys, 1, "{isolation:?}: only the winner's key is held");
        assert_eq!(all(&db), BTreeMap::from([("z".to_owned(), "first".to_owned())]));
    }
    // The keys can still be written.
    let mut t = db.begin().unwrap();
    t.put(b"a", b"later").unwrap();
    t.commit_blocking().unwrap();
    assert_eq!((db.stats().keys, get(&db, "a").as_deref()), (2, Some("later")));
    db.close().unwrap();
}

#[test]
fn limits_give_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let opts =
        small().with_key_bytes_max(Some(8)).with_value_bytes_max(Some(16)).with_txn_bytes_max(Some(80));
    let (db, _) = Db::open_opts(tmp.path(), opts).unwrap();
    let mut t = db.begin().unwrap();
    assert!(matches!(t.put(&[1; 9], b"v"), Err(Error::TooLarge { what: "key", len: 9, max: 8 })));
    assert!(matches!(t.put(b"k", &[1; 17]), Err(Error::TooLarge { what: "value", len: 17, max: 16 })));
    assert!(matches!(t.get(&[1; 9]), Err(Error::TooLarge { what: "key", .. })));
    t.put(b"k1", &[1; 16]).unwrap();
    t.put(b"k2", &[1; 16]).unwrap();
    assert!(matches!(t.put(b"k3", &[1; 16]), Err(Error::TooLarge { what: "transaction", .. })));
    // Overwriting a key replaces its size.
    t.put(b"k2", b"").unwrap();
    t.put(b"k3", &[1; 10]).unwrap();
    t.commit_blocking().unwrap();
    assert!(matches!(
        Db::open_opts(tempfile::tempdir().unwrap().path(), small().with_txn_bytes_max(Some(10))),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn closed_database_refuses_new_transactions() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small()).unwrap();
    let mut t = db.begin().unwrap();
    t.put(b"k", b"v").unwrap();
    db.close().unwrap();
    assert!(matches!(db.begin(), Err(Error::Closed)));
    assert!(matches!(t.commit_blocking(), Err(Error::Closed)));
    assert!(db.close().is_ok(), "close is idempotent");
}

#[cfg(feature = "sim")]
mod sim {
    use super::*;
    use waldb::sim::SimDisk;

    fn manual() -> DbOptions {
        small().with_driver(waldb::wal::Driver::Manual)
    }

    fn open(disk: &SimDisk) -> Db<SimDisk, SystemClock> {
        Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), manual()).unwrap().0
    }

    /// A `Sync` commit is invisible to new snapshots until its sync; then it is visible.
    #[test]
    fn a_sync_commit_is_visible_only_once_durable() {
        let disk = SimDisk::new(1);
        let db = open(&disk);
        let mut t = db.begin().unwrap();
        t.put(b"k", b"v").unwrap();
        let commit = t.commit();
        assert_eq!(db.get(b"k").unwrap(), None, "visible before durable");
        let mut reader = db.begin().unwrap();
        assert_eq!(reader.get(b"k").unwrap(), None);
        // A crash now loses it, and nobody saw it.
        let crashed = disk.durable_clone();
        let recovered = open(&crashed);
        assert_eq!(recovered.get(b"k").unwrap(), None);
        db.flush_step().unwrap();
        let lsn = commit.wait().unwrap();
        assert_eq!(db.visible_lsn(), lsn);
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        // The old snapshot still does not see it.
        assert_eq!(reader.get(b"k").unwrap(), None);
        let crashed = disk.durable_clone();
        assert_eq!(open(&crashed).get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// A `Buffered` commit is visible at once, and a crash before the sync may take it back.
    #[test]
    fn a_buffered_commit_is_visible_at_once() {
        let disk = SimDisk::new(2);
        let db = open(&disk);
        let mut t = db.begin().unwrap();
        t.put(b"k", b"v").unwrap();
        let every = std::time::Duration::from_millis(5);
        t.commit_with(Durability::Buffered { every }).wait().unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(open(&disk.durable_clone()).get(b"k").unwrap(), None);
        db.sync().unwrap();
        assert_eq!(open(&disk.durable_clone()).get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// A failed sync poisons: the commit that reached the log fails with an unknown outcome
    /// (its LSN and the cause), later commits fail saying they wrote nothing, reads keep
    /// working.
    #[test]
    fn a_failed_sync_fails_the_commit_and_reads_go_on() {
        let disk = SimDisk::new(3);
        let db = open(&disk);
        let mut t = db.begin().unwrap();
        t.put(b"a", b"1").unwrap();
        let c = t.commit();
        db.flush_step().unwrap();
        c.wait().unwrap();
        disk.fail_nth_with(waldb::sim::FaultOp::Sync, 1, std::io::ErrorKind::Other);
        let mut t = db.begin().unwrap();
        t.put(b"b", b"2").unwrap();
        let c = t.commit();
        let lsn = c.lsn().expect("sequenced");
        assert!(db.flush_step().is_err());
        match c.wait() {
            Err(Error::CommitUnknown { lsn: at, cause }) => {
                assert_eq!(at, lsn);
                assert!(matches!(*cause, Error::Poisoned { .. }), "{cause}");
            }
            other => panic!("a commit that reached a failing log: {other:?}"),
        }
        assert_eq!(db.get(b"b").unwrap(), None);
        assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        let keys = db.stats().keys;
        let mut t = db.begin().unwrap();
        t.put(b"c", b"3").unwrap();
        let c = t.commit();
        assert_eq!(c.lsn(), None, "refused before the log");
        let e = c.wait().unwrap_err();
        assert!(matches!(e, Error::Poisoned { .. }), "{e}");
        assert!(!e.is_retryable());
        assert_eq!(db.stats().keys, keys, "a commit whose append failed leaves no key behind");
    }

    /// A crash at every step of a checkpoint leaves a database that opens with every
    /// acknowledged commit: the checkpoint's n-th write, sync, directory sync or read fails (the
    /// process stops there), then the disk crashes, for every n until the checkpoint completes.
    #[test]
    fn a_crash_at_every_step_of_a_checkpoint_loses_nothing() {
        use waldb::sim::FaultOp;
        let mut crashes = 0;
        for op in [FaultOp::Write, FaultOp::Sync, FaultOp::SyncDir, FaultOp::Read] {
            for n in 1.. {
                let disk = SimDisk::new(100 * n + op.index() as u64);
                let db = open(&disk);
                let mut model = BTreeMap::new();
                for i in 0..400u32 {
                    let mut t = db.begin().unwrap();
                    let key = format!("k{}", i % 40);
                    let value = format!("v{i}-{}", "y".repeat(400));
                    t.put(key.as_bytes(), value.as_bytes()).unwrap();
                    let c = t.commit();
                    db.flush_step().unwrap();
                    c.wait().unwrap();
                    model.insert(key, value);
                }
                let errors_before = disk.stats().io_errors[op.index()];
                disk.fail_nth(op, n);
                let outcome = db.checkpoint();
                let hit = disk.stats().io_errors[op.index()] > errors_before;
                assert_eq!(outcome.is_err(), hit, "{op:?} #{n}: {outcome:?}");
                if let Ok(report) = &outcome {
                    assert!(report.segments_removed > 0, "{report:?}");
                }
                drop(db);
                disk.clear_scheduled();
                disk.crash();
                crashes += 1;
                let (db, report) =
                    Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), manual()).unwrap();
                let all = all(&db);
                assert_eq!(all, model, "{op:?} #{n} failed, then a crash: {report:?}");
                if !hit {
                    break;
                }
                assert!(n < 1000, "the checkpoint never finished");
            }
        }
        assert!(crashes > 8, "only {crashes} crash points");
    }
}

/// `Db::get` reads without registering a snapshot; a key that always exists must never read as
/// absent, even while reclamation drops the versions it was about to read.
#[test]
fn db_get_never_misses_a_key_being_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), small().with_durability(Durability::None)).unwrap();
    let mut t = db.begin().unwrap();
    t.put(b"k", b"0").unwrap();
    t.commit_blocking().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                n += 1;
                let mut t = db.begin_with(Isolation::Snapshot).unwrap();
                t.put(b"k", n.to_string().as_bytes()).unwrap();
                t.commit_blocking().unwrap();
            }
            n
        })
    };
    let start = std::time::Instant::now();
    let mut reads = 0u64;
    let mut last = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        let v = db.get(b"k").unwrap().expect("the key always exists");
        let v: u64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
        assert!(v >= last, "reads go forward: {v} after {last}");
        last = v;
        reads += 1;
    }
    stop.store(true, SeqCst);
    let writes = writer.join().unwrap();
    assert!(writes > 0 && reads > 0);
}
