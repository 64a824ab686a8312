//! Larger than memory: memtables of a few KiB freeze and flush to sorted tables, and every read,
//! scan, snapshot and validation sees the same database as before — across the memtables, the
//! tables and reopens.

mod common;

use std::collections::BTreeMap;

use waldb::sim::SimDisk;
use waldb::wal::Driver;
use waldb::{Db, DbOptions, Error, SystemClock};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn tiny() -> DbOptions {
    DbOptions::default().with_memtable_bytes(Some(4096)).with_segment_bytes(64 << 10)
}

/// Without threads, 2 KiB memtables, 256-byte blocks: many levels from little data.
fn manual_tiny() -> DbOptions {
    DbOptions::default()
        .with_driver(Driver::Manual)
        .with_memtable_bytes(Some(2048))
        .with_segment_bytes(64 << 10)
        .with_table_block_bytes(256)
}

fn key(i: u32) -> Vec<u8> {
    format!("key{:05}", i).into_bytes()
}

/// Puts, overwrites and deletes over 600 keys in transactions of 10, recorded in `model`.
fn churn<D: waldb::Disk + Clone, C: waldb::Clock + Clone>(db: &Db<D, C>, model: &mut Model, rounds: u32) {
    for r in 0..rounds {
        db.transact(|t| {
            for j in 0..10u32 {
                let i = (r * 7 + j * 61) % 600;
                t.put(&key(i), format!("value {i} round {r}").as_bytes())?;
            }
            if r % 3 == 0 {
                t.delete(&key((r * 13) % 600))?;
            }
            Ok(())
        })
        .unwrap();
        for j in 0..10u32 {
            let i = (r * 7 + j * 61) % 600;
            model.insert(key(i), format!("value {i} round {r}").into_bytes());
        }
        if r % 3 == 0 {
            model.remove(&key((r * 13) % 600));
        }
    }
}

/// The stats once the background compactor has run more than `n` compactions (30 s at most):
/// it runs beside the writers and, on a loaded machine, lags behind their flushes.
fn compacted_more_than(db: &Db, n: u64) -> waldb::db::DbStats {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = db.stats();
        if stats.compactions > n {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "{n} compactions or fewer in 30 s: {stats:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn check<D: waldb::Disk + Clone, C: waldb::Clock + Clone>(db: &Db<D, C>, model: &Model) {
    for i in 0..620 {
        assert_eq!(db.get(&key(i)).unwrap().as_deref(), model.get(&key(i)).map(Vec::as_slice), "key {i}");
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> =
        db.scan(..).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all, want);
    let lo = key(100);
    let hi = key(200);
    let part = db.scan(&lo[..]..&hi[..]).unwrap();
    assert_eq!(part.len(), model.range(lo.clone()..hi.clone()).count());
    let mut t = db.begin().unwrap();
    let limited = t.scan_limit(&lo[..]..=&hi[..], 7).unwrap();
    let want: Vec<&Vec<u8>> = model.range(lo..=hi).map(|(k, _)| k).take(7).collect();
    assert_eq!(
        limited.iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(),
        want.into_iter().cloned().collect::<Vec<_>>()
    );
}

#[test]
fn tiny_memtables_flush_in_the_background_and_every_key_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let (db, _) = Db::open_opts(tmp.path(), tiny()).unwrap();
        churn(&db, &mut model, 400);
        check(&db, &model);
        db.checkpoint().unwrap();
        let stats = compacted_more_than(&db, 3);
        assert!(stats.checkpoints > 20, "{stats:?}");
        assert!(stats.tables_per_level[1..].iter().sum::<u64>() > 0, "compacted down: {stats:?}");
        assert_eq!(stats.frozen_memtables, 0, "{stats:?}");
        check(&db, &model);
        churn(&db, &mut model, 50);
        db.close().unwrap();
    }
    let (db, report) = Db::open_opts(tmp.path(), tiny()).unwrap();
    assert!(report.tables > 2, "{report:?}");
    assert!(report.checkpoint_lsn.is_some(), "{report:?}");
    check(&db, &model);
}

/// Level 0 is compacted from 8 tables while flushes keep coming (fewer, larger compactions
/// write less), and from 4 once no flush came for a few seconds (reads consult fewer tables).
#[test]
fn level_0_is_compacted_from_fewer_tables_once_flushes_stop() {
    let tmp = tempfile::tempdir().unwrap();
    // Background threads; memtables that only the checkpoints below freeze.
    let options = DbOptions::default().with_memtable_bytes(Some(64 << 20)).with_segment_bytes(64 << 10);
    let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
    let mut model = Model::new();
    for round in 0..5u32 {
        churn(&db, &mut model, 10 + round);
        db.checkpoint().unwrap();
    }
    let stats = db.stats();
    assert_eq!(stats.tables_per_level[0], 5, "not compacted while flushes came: {stats:?}");
    assert_eq!(stats.compactions, 0, "{stats:?}");
    let waited = std::time::Instant::now();
    while db.stats().compactions == 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "never compacted: {:?}", db.stats());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The quiet pass waits a few seconds after the last flush, not less.
    assert!(waited.elapsed() > std::time::Duration::from_secs(1), "compacted after {:?}", waited.elapsed());
    let stats = db.stats();
    assert_eq!(stats.tables_per_level[0], 0, "{stats:?}");
    assert!(stats.tables_per_level[1] > 0, "{stats:?}");
    check(&db, &model);
}

/// Four levels of tables under random overwrites (compactions from level 1 down, whose
/// outputs end where tables two levels down end): every key reads back, before and after a
/// reopen.
#[test]
fn random_overwrites_through_four_levels_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let options = manual_tiny();
    let mut model = BTreeMap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    {
        let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
        for round in 0..1500u32 {
            let mut puts = Vec::new();
            for _ in 0..8 {
                let k = format!("k{:06}", next() % 4000).into_bytes();
                let v = format!("{round} {}", "v".repeat((next() % 100) as usize)).into_bytes();
                puts.push((k, v));
            }
            db.transact(|t| {
                for (k, v) in &puts {
                    t.put(k, v)?;
                }
                Ok(())
            })
            .unwrap();
            model.extend(puts);
            db.flush_step().unwrap();
        }
        let stats = db.stats();
        assert!(stats.compaction_bytes_written_per_level[2] > 0, "{stats:?}");
        assert!(stats.compaction_bytes_written_per_level[3] > 0, "{stats:?}");
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(v.as_slice()));
        }
        db.close().unwrap();
    }
    let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
    let all: Vec<(Vec<u8>, Vec<u8>)> =
        db.scan(..).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}

/// Keys written in ascending order: a table that nothing in the level below overlaps moves down
/// as it is (its file kept, no bytes written), and everything reads back, after a reopen too.
#[test]
fn a_table_nothing_below_overlaps_moves_down_without_a_rewrite() {
    let tmp = tempfile::tempdir().unwrap();
    let options = manual_tiny();
    let value = |i: u32| format!("{i} {}", "v".repeat(60)).into_bytes();
    let n = 3000u32;
    {
        let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
        for chunk in 0..n / 10 {
            db.transact(|t| {
                for i in chunk * 10..chunk * 10 + 10 {
                    t.put(&key(i), &value(i))?;
                }
                Ok(())
            })
            .unwrap();
        }
        db.checkpoint().unwrap();
        let stats = db.stats();
        assert!(stats.table_moves > 0, "{stats:?}");
        assert!(stats.tables_per_level[2..].iter().sum::<u64>() > 0, "{stats:?}");
        for i in 0..n {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i).into()), "key {i}");
        }
        db.close().unwrap();
    }
    let (db, report) = Db::open_opts(tmp.path(), options).unwrap();
    assert_eq!(report.orphans_removed, 0, "{report:?}");
    let all = db.scan(..).unwrap();
    assert_eq!(all.len(), n as usize);
    for (i, (k, v)) in (0..n).zip(&all) {
        assert_eq!((k.to_vec(), v.to_vec()), (key(i), value(i)));
    }
}

#[test]
fn a_snapshot_reads_its_versions_after_they_were_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), tiny()).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 30);
    let mut reader = db.begin().unwrap();
    let before = model.clone();
    churn(&db, &mut model, 300);
    db.checkpoint().unwrap();
    compacted_more_than(&db, 3);
    for i in 0..600 {
        assert_eq!(
            reader.get(&key(i)).unwrap().as_deref(),
            before.get(&key(i)).map(Vec::as_slice),
            "key {i}"
        );
    }
    let seen: Vec<Vec<u8>> = reader.scan(..).unwrap().into_iter().map(|(k, _)| k.to_vec()).collect();
    assert_eq!(seen, before.keys().cloned().collect::<Vec<_>>());
    check(&db, &model);
}

/// Serializable validation stays exact when the conflicting write was flushed to a table: a
/// read, a write and a scanned range, each written after the snapshot by a commit whose versions
/// now live only in tables.
#[test]
fn validation_finds_writes_that_were_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), tiny()).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 30);
    for (what, on) in [
        ("read", waldb::ConflictOn::Read),
        ("write", waldb::ConflictOn::Write),
        ("range", waldb::ConflictOn::ScannedRange),
    ] {
        let mut t = db.begin().unwrap();
        match what {
            "read" => drop(t.get(b"target").unwrap()),
            "write" => t.put(b"target", b"mine").unwrap(),
            _ => drop(t.scan(&b"tar"[..]..&b"tas"[..]).unwrap()),
        }
        t.put(b"elsewhere", what.as_bytes()).unwrap();
        db.transact(|o| o.put(b"target", what.as_bytes())).unwrap();
        // Push the other commit's version down into a table, below new memtables.
        churn(&db, &mut model, 40);
        db.checkpoint().unwrap();
        churn(&db, &mut model, 5);
        match t.commit_blocking() {
            Err(Error::Conflict { key, on: got, .. }) => {
                assert_eq!((&*key, got), (&b"target"[..], on), "{what}");
            }
            other => panic!("{what}: the flushed write was not found: {other:?}"),
        }
    }
    // With nothing written since the snapshot, the same transactions commit.
    let mut t = db.begin().unwrap();
    t.get(b"target").unwrap();
    t.scan(&b"tar"[..]..&b"tas"[..]).unwrap();
    t.put(b"target", b"last").unwrap();
    t.commit_blocking().unwrap();
}

/// Under the manual driver (the simulator's), a committer that finds the memtables full
/// flushes the oldest itself; a crash then loses no acknowledged commit.
#[test]
fn manual_flushes_and_a_crash_lose_nothing() {
    let disk = SimDisk::new(7);
    let options = tiny().with_driver(Driver::Manual);
    let mut model = Model::new();
    {
        let (db, _) = Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap();
        churn(&db, &mut model, 300);
        let stats = db.stats();
        assert!(stats.checkpoints > 10, "flushed by committers: {stats:?}");
        assert!(stats.compactions > 3, "compacted by committers: {stats:?}");
        assert!(stats.frozen_memtables < u64::from(options.memtables_max), "{stats:?}");
        check(&db, &model);
    }
    disk.crash();
    let (db, report) = Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap();
    assert!(report.tables > 2, "{report:?}");
    check(&db, &model);
}

#[test]
fn a_directory_of_the_whole_state_checkpoint_format_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), tiny()).unwrap();
    db.close().unwrap();
    drop(db);
    std::fs::write(tmp.path().join("checkpoint"), b"WALDBCKP and the rest").unwrap();
    let before = common::tree(tmp.path());
    match Db::open_opts(tmp.path(), tiny()) {
        Err(Error::UnsupportedVersion { file, found: 1, supported: 2 }) => {
            assert!(file.ends_with("checkpoint"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(common::tree(tmp.path()), before, "nothing written");
    assert!(waldb::db::ReadOnlyDb::open(tmp.path()).is_err());
}

#[test]
fn orphaned_tables_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let (db, _) = Db::open_opts(tmp.path(), tiny()).unwrap();
        churn(&db, &mut model, 100);
        db.close().unwrap();
    }
    let orphan = waldb::db::manifest::table_path(tmp.path(), 999_999);
    std::fs::write(&orphan, b"a table no manifest names").unwrap();
    std::fs::write(tmp.path().join("tables/notes"), b"not a table's name: left alone").unwrap();
    let (db, report) = Db::open_opts(tmp.path(), tiny()).unwrap();
    assert_eq!(report.orphans_removed, 1, "{report:?}");
    assert!(!orphan.exists());
    assert!(tmp.path().join("tables/notes").exists());
    check(&db, &model);
}

/// 600 keys of about 100 bytes rewritten in transactions of 10 (round `r`), recorded in `model`.
fn churn_wide<D: waldb::Disk + Clone, C: waldb::Clock + Clone>(db: &Db<D, C>, model: &mut Model, r: u32) {
    let puts: Vec<(Vec<u8>, Vec<u8>)> = (0..10u32)
        .map(|j| {
            let i = (r * 37 + j * 61) % 600;
            (key(i), format!("{r:08} {}", "w".repeat(90 + (i % 7) as usize)).into_bytes())
        })
        .collect();
    db.transact(|t| {
        for (k, v) in &puts {
            t.put(k, v)?;
        }
        Ok(())
    })
    .unwrap();
    model.extend(puts);
}

/// As below, for a flush whose compactions reach level 3 with tables already there (levels
/// past 1 compacted down, outputs cut where the tables two levels down end): the n-th write,
/// sync, directory sync or read of that flush fails, then the disk crashes, for every n.
#[test]
fn a_crash_at_every_step_of_a_compaction_below_level_1_loses_nothing() {
    use waldb::sim::FaultOp;
    let options = DbOptions::default()
        .with_memtable_bytes(Some(1024))
        .with_driver(Driver::Manual)
        .with_segment_bytes(64 << 10)
        .with_table_block_bytes(512);
    let open =
        |disk: &SimDisk| Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap().0;
    // Rounds of writes, each followed by a flush of everything, until one flush compacts into
    // level 3 while level 3 holds tables: that flush is the one the faults strike.
    let build = |db: &Db<SimDisk, SystemClock>, model: &mut Model, rounds: u32| {
        for r in 0..rounds {
            churn_wide(db, model, r);
            db.checkpoint().unwrap();
        }
    };
    let target = {
        let disk = SimDisk::new(7);
        let db = open(&disk);
        let mut model = Model::new();
        (0..2000u32)
            .find(|&r| {
                churn_wide(&db, &mut model, r);
                let before = db.stats();
                db.checkpoint().unwrap();
                let after = db.stats();
                before.tables_per_level[3] > 0
                    && after.compaction_bytes_written_per_level[3]
                        > before.compaction_bytes_written_per_level[3]
            })
            .expect("a flush compacting into level 3")
    };
    let mut crashes = 0;
    for op in [FaultOp::Write, FaultOp::Sync, FaultOp::SyncDir, FaultOp::Read] {
        for n in 1.. {
            let disk = SimDisk::new(1000 * n + op.index() as u64);
            let db = open(&disk);
            let mut model = Model::new();
            build(&db, &mut model, target);
            churn_wide(&db, &mut model, target);
            let errors_before = disk.stats().io_errors[op.index()];
            let deep_before = db.stats().compaction_bytes_written_per_level[3];
            disk.fail_nth(op, n);
            let outcome = db.checkpoint();
            let hit = disk.stats().io_errors[op.index()] > errors_before;
            if outcome.is_ok() {
                assert!(
                    db.stats().compaction_bytes_written_per_level[3] > deep_before,
                    "{op:?} #{n}: {:?}",
                    db.stats()
                );
            } else {
                assert!(hit, "{op:?} #{n}: {outcome:?}");
            }
            drop(db);
            disk.clear_scheduled();
            disk.crash();
            crashes += 1;
            let (db, _) = Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap();
            for (k, v) in &model {
                assert_eq!(db.get(k).unwrap().as_deref(), Some(v.as_slice()), "{op:?} #{n}");
            }
            // And the next flush and compactions work from whatever the crash left.
            db.checkpoint().unwrap();
            let all: Vec<(Vec<u8>, Vec<u8>)> =
                db.scan(..).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            assert_eq!(
                all,
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
                "{op:?} #{n}"
            );
            if !hit {
                break;
            }
            assert!(n < 5000, "the flush never finished");
        }
    }
    assert!(crashes > 100, "only {crashes} crash points");
}

/// A crash at every step of a flush that triggers a compaction loses nothing: the checkpoint's
/// n-th write, sync, directory sync or read fails (the process stops there), then the disk
/// crashes, for every n until the flush and the compaction complete.
#[test]
fn a_crash_at_every_step_of_a_flush_and_its_compaction_loses_nothing() {
    use waldb::sim::FaultOp;
    let options = DbOptions::default()
        .with_memtable_bytes(None)
        .with_driver(Driver::Manual)
        .with_segment_bytes(64 << 10)
        .with_table_block_bytes(256);
    let open =
        |disk: &SimDisk| Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap().0;
    let mut crashes = 0;
    let mut compacted = 0;
    for op in [FaultOp::Write, FaultOp::Sync, FaultOp::SyncDir, FaultOp::Read] {
        for n in 1.. {
            let disk = SimDisk::new(1000 * n + op.index() as u64);
            let db = open(&disk);
            let mut model = Model::new();
            // Three tables in level 0; the fourth flush compacts them into level 1.
            for round in 0..4u32 {
                churn(&db, &mut model, 20 + round);
                if round < 3 {
                    db.checkpoint().unwrap();
                }
            }
            assert_eq!(db.stats().tables_per_level[0], 3);
            let errors_before = disk.stats().io_errors[op.index()];
            disk.fail_nth(op, n);
            let outcome = db.checkpoint();
            let hit = disk.stats().io_errors[op.index()] > errors_before;
            if outcome.is_ok() {
                // Done, unless the failure struck the deletion of the replaced tables (best
                // effort: the next open removes what is left).
                assert_eq!(db.stats().compactions, 1, "{op:?} #{n}: {:?}", db.stats());
            } else {
                assert!(hit, "{op:?} #{n}: {outcome:?}");
            }
            compacted += db.stats().compactions;
            drop(db);
            disk.clear_scheduled();
            disk.crash();
            crashes += 1;
            let (db, report) =
                Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap();
            check(&db, &model);
            // And the next flush and compaction work from whatever the crash left.
            db.checkpoint().unwrap();
            check(&db, &model);
            drop(report);
            if !hit {
                break;
            }
            assert!(n < 1000, "the flush never finished");
        }
    }
    assert!(crashes > 20, "only {crashes} crash points");
    assert!(compacted > 4, "compactions completed before a crash: {compacted}");
}

/// A read of an absent key costs (almost) no data-block read: each table's filter answers first.
#[test]
fn absent_keys_cost_almost_no_block_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), tiny().with_cache_bytes(0)).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 300);
    db.checkpoint().unwrap();
    let tables = db.stats().tables;
    assert!(tables > 3, "{:?}", db.stats());
    let before = db.stats().block_reads;
    let probes = 4000u64;
    for i in 0..probes {
        // Inside the tables' key ranges (between two keys), so that only the filters answer.
        let absent = format!("key{:05}{}", i % 600, i / 600);
        assert_eq!(db.get(absent.as_bytes()).unwrap(), None);
    }
    let reads = db.stats().block_reads - before;
    // About 1 % of probes per table whose key range holds the key pass its filter.
    assert!(
        reads * 100 <= probes * tables * 2,
        "{reads} block reads for {probes} absent keys over {tables} tables"
    );
    // A present key reads its blocks, through the cache when there is one.
    let (db2, _) = {
        db.close().unwrap();
        drop(db);
        Db::open_opts(tmp.path(), tiny()).unwrap()
    };
    check(&db2, &model);
    let s = db2.stats();
    assert!(s.cache_misses > 0 && s.cache_bytes > 0, "{s:?}");
    check(&db2, &model);
    assert!(db2.stats().cache_hits > s.cache_hits, "the second pass hits the cache: {:?}", db2.stats());
}

/// A clean close flushes the memtables: the next open replays no transaction and reads
/// everything from the tables. A drop without `close` leaves the memtables' commits to the log,
/// replayed like after a crash — nothing lost either way.
#[test]
fn a_clean_close_leaves_nothing_to_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let options = DbOptions::default().with_memtable_bytes(Some(1 << 20));
    let mut model = Model::new();
    {
        let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
        churn(&db, &mut model, 100);
        assert_eq!(db.stats().tables, 0, "nothing flushed before the close");
        db.close().unwrap();
    }
    let (db, report) = Db::open_opts(tmp.path(), options).unwrap();
    assert_eq!(report.txns_replayed, 0, "{report:?}");
    assert!(report.tables >= 1, "{report:?}");
    check(&db, &model);
    churn(&db, &mut model, 10);
    drop(db);
    let (db, report) = Db::open_opts(tmp.path(), options).unwrap();
    assert_eq!(report.txns_replayed, 10, "{report:?}");
    check(&db, &model);
}
