//! Bugs the simulator found, each as a named test of the exact scenario, with the seed that found
//! it. Each failed before its fix.

use std::path::Path;
use waldb::sim::{FaultOp, SimDisk};
use waldb::wal::{LogEnd, LogWriter, RecordKind, RecoveryMode, WalOptions, read_log};
use waldb::{Disk, Lsn};

const DIR: &str = "/db/wal";

fn opts() -> WalOptions {
    WalOptions::default()
        .with_segment_bytes(8192)
        .with_record_payload_bytes_max(Some(1024))
        .with_recovery(RecoveryMode::TolerateTornTail)
}

fn append_synced(w: &mut LogWriter<SimDisk>, n: u8) -> Lsn {
    for i in 0..n {
        w.append(RecordKind::Unknown(0x80), &[i; 100]).unwrap();
    }
    w.sync().unwrap()
}

/// Found by `wal_crash` seed 629: the first open created `/db/wal` but failed to sync `/db`; the
/// process restarted (no crash) and the second open saw the directory, skipped the sync, and
/// wrote synced records into a directory whose name a crash could still erase.
#[test]
fn regression_seed_629_directory_created_by_a_failed_open_is_made_durable() {
    for seed in 0..32 {
        let disk = SimDisk::new(seed);
        // The second directory sync of the first open is the one of `/db`, which names `wal`.
        disk.fail_nth(FaultOp::SyncDir, 2);
        assert!(LogWriter::open(disk.clone(), Path::new(DIR), opts()).is_err(), "the first open fails");
        assert!(disk.is_dir(Path::new(DIR)), "...after creating the directory");
        // The process restarts without a crash and opens again.
        let (mut w, _) = LogWriter::open(disk.clone(), Path::new(DIR), opts()).unwrap();
        let durable = append_synced(&mut w, 3);
        disk.crash();
        let (records, _) = read_log(disk.clone(), Path::new(DIR), opts().read_options())
            .unwrap_or_else(|e| panic!("seed {seed}: the log directory vanished: {e}"));
        assert_eq!(records.last().map(|r| r.lsn), Some(durable), "seed {seed}");
    }
}

/// Found by `wal_crash` seed 18: a sync failed and dropped its pages (they stay readable, no later
/// sync writes them); the process restarted without a crash, read those records from the cache,
/// and appended after them. Later synced records then "proved" the lost ones durable: after a
/// crash, recovery refused the log and synced records became unreadable. The open now rewrites
/// and syncs what it recovered.
#[test]
fn regression_seed_18_pages_dropped_by_a_failed_sync_are_rewritten_at_open() {
    for seed in 0..32 {
        let disk = SimDisk::new(seed);
        let (mut w, _) = LogWriter::open(disk.clone(), Path::new(DIR), opts()).unwrap();
        append_synced(&mut w, 2);
        w.append(RecordKind::Unknown(0x80), &[7; 100]).unwrap();
        disk.fail_nth(FaultOp::Sync, 1);
        assert!(w.sync().is_err(), "the sync fails and drops the write");
        drop(w);
        // Restart without a crash: the dropped record is still readable.
        let (mut w, report) = LogWriter::open(disk.clone(), Path::new(DIR), opts()).unwrap();
        assert_eq!(report.records, 3);
        let durable = append_synced(&mut w, 3);
        disk.crash();
        let (records, report) = read_log(disk.clone(), Path::new(DIR), opts().read_options())
            .unwrap_or_else(|e| panic!("seed {seed}: synced records unreadable after the crash: {e}"));
        assert_eq!(records.len(), 6, "seed {seed}: the open made the recovered record durable");
        assert_eq!(records.last().map(|r| r.lsn), Some(durable));
        assert_eq!(report.end, LogEnd::Clean);
    }
}

/// Found by `db_sim` seed 36: recovery skipped LSNs (it never reuses one that a cut-off record
/// used), and the reopened `Wal` took its durable LSN from the last record recovered. A sync
/// (and so a checkpoint, or a close) then waited for LSNs that nothing would ever write: a
/// hang. The skipped LSNs now count as durable.
#[test]
fn regression_seed_36_a_sync_after_recovery_skipped_lsns_returns() {
    use waldb::wal::{Driver, Wal, WalConfig};
    let mut gaps = 0;
    for seed in 0..32 {
        let disk = SimDisk::new(seed);
        let (mut w, _) = LogWriter::open(disk.clone(), Path::new(DIR), opts()).unwrap();
        append_synced(&mut w, 1);
        // The second record ends a page and the third starts the next: the writer writes whole
        // pages, so a write of the third into the second's page would carry the second too.
        let page = 4096;
        let offset = |w: &LogWriter<SimDisk>| opts().segment_bytes - w.space_left();
        while page - offset(&w) > 1064 {
            let filler = (page - offset(&w) - 140).min(1024);
            w.append(RecordKind::Unknown(0x80), &vec![9; usize::try_from(filler).unwrap()]).unwrap();
        }
        w.sync().unwrap();
        let second = usize::try_from(page - offset(&w) - 40).unwrap();
        w.append(RecordKind::Unknown(0x80), &vec![1; second]).unwrap();
        w.write().unwrap();
        assert_eq!(offset(&w), page);
        w.append(RecordKind::Unknown(0x80), &[2; 100]).unwrap();
        w.write().unwrap();
        drop(w);
        // A crash that loses the second record and keeps the third: recovery cuts the log
        // after the first, and the third's LSN is never reused.
        disk.crash();
        let config = WalConfig::default().with_log(opts()).with_driver(Driver::Manual);
        let (wal, report) =
            match Wal::open_with(disk.clone(), waldb::SystemClock::new(), Path::new(DIR), config) {
                Ok(x) => x,
                Err(e) => panic!("seed {seed}: {e}"),
            };
        if wal.next_lsn() > report.last_lsn.unwrap_or(Lsn::ZERO).next() {
            gaps += 1;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(wal.sync().map(|_| wal.durable_lsn())));
        let durable = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("seed {seed}: a sync after recovery hangs"))
            .unwrap();
        assert!(durable >= report.last_lsn.unwrap_or(Lsn::ZERO), "seed {seed}");
    }
    assert!(gaps > 0, "no seed's crash skipped an LSN: the scenario is not exercised");
}

/// Found by `db_sim` seeds 1 and 3: a `Buffered` commit sequenced after a `Sync` commit that was
/// not durable yet resolved at once, but visibility follows LSN order and a `Sync` commit is
/// visible only once durable: the committer's next snapshot did not see its own commit. Such a
/// commit now waits for the earlier commit's sync before it resolves.
#[test]
fn regression_seeds_1_and_3_a_commit_resolves_only_once_visible() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use waldb::db::DbOptions;
    use waldb::wal::{Driver, Durability};
    use waldb::{Db, SimClock};

    let disk = SimDisk::new(3);
    let options = DbOptions::default().with_driver(Driver::Manual).with_memtable_bytes(None);
    let (db, _) = Db::open_with(disk, SimClock::new(), Path::new("/db"), options).unwrap();
    let poll = |c: &mut waldb::Commit<SimDisk, SimClock>| {
        std::pin::Pin::new(c).poll(&mut Context::from_waker(Waker::noop()))
    };
    let mut a = db.begin().unwrap();
    a.put(b"a", b"sync").unwrap();
    let mut sync = a.commit_with(Durability::Sync);
    let mut b = db.begin().unwrap();
    b.put(b"b", b"buffered").unwrap();
    let mut buffered = b.commit_with(Durability::Buffered { every: std::time::Duration::from_secs(1) });
    let lsn = buffered.lsn().expect("sequenced");
    assert!(poll(&mut sync).is_pending(), "nothing is durable before a flusher step");
    assert!(
        poll(&mut buffered).is_pending(),
        "a Buffered commit behind an unsynced Sync commit is not visible"
    );
    assert!(db.visible_lsn() < lsn);
    db.flush_step().unwrap();
    assert!(matches!(poll(&mut sync), Poll::Ready(Ok(_))));
    assert!(matches!(poll(&mut buffered), Poll::Ready(Ok(l)) if l == lsn));
    assert!(db.visible_lsn() >= lsn, "resolved, so visible");
    assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"buffered"[..]));
}

/// Small limits for the database regressions: 64 KiB segments.
fn options() -> waldb::db::DbOptions {
    waldb::db::DbOptions::default()
        .with_segment_bytes(64 << 10)
        .with_key_bytes_max(Some(64))
        .with_value_bytes_max(Some(1024))
        .with_txn_bytes_max(Some(16 << 10))
}

/// Opens the database in `/db` on `disk` (`what`: after which fault), commits `k = v`, crashes,
/// and checks that the commit survived.
fn opens_and_keeps_a_commit(disk: &SimDisk, what: &str) {
    use waldb::{Db, SimClock};
    let dir = Path::new("/db");
    let (db, _) = Db::open_with(disk.clone(), SimClock::new(), dir, options())
        .unwrap_or_else(|e| panic!("{what}: the database cannot be opened: {e}"));
    let mut txn = db.begin().unwrap();
    txn.put(b"k", b"v").unwrap();
    txn.commit_blocking().unwrap();
    drop(db);
    disk.crash();
    let (db, _) = Db::open_with(disk.clone(), SimClock::new(), dir, options()).unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]), "{what}");
}

/// Found by the madsim harness (`sim/madsim`), seed 200: the first open of a new database
/// created `EPOCH`, and the sync of its first epoch failed (EIO). A crash then kept the file's
/// name but not its 12 bytes, and every later open failed reading an empty `EPOCH`: the
/// database could never be opened again. Without a crash, a failed write of the first epoch
/// left the same empty file. An empty (or zeroed) `EPOCH` now means no epoch was ever used.
/// The database campaign opened with faults off until then; it now tries one open in three of
/// a faulty seed with faults armed, and finds this at `db_sim` seed 27 without the fix.
#[test]
fn regression_madsim_seed_200_a_failed_first_epoch_does_not_brick_the_database() {
    use waldb::{Db, SimClock};
    let dir = Path::new("/db");
    let epoch = dir.join("EPOCH");
    let mut empty_after_crash = 0;
    for seed in 0..32 {
        // The sync of the first epoch fails, then a crash.
        let disk = SimDisk::new(seed);
        disk.fail_nth(FaultOp::Sync, 1);
        let e = Db::open_with(disk.clone(), SimClock::new(), dir, options()).unwrap_err();
        assert!(e.to_string().contains("EPOCH"), "seed {seed}: the epoch's sync failed: {e}");
        disk.crash();
        if disk.list_dir(dir).unwrap().contains(&"EPOCH".to_owned()) {
            let f = disk.open(&epoch, waldb::OpenMode::Read).unwrap();
            empty_after_crash += u32::from(waldb::DiskFile::len(&f).unwrap() == 0);
        }
        opens_and_keeps_a_commit(&disk, &format!("seed {seed}, after a crash"));

        // The write of the first epoch fails; the process restarts without a crash.
        let disk = SimDisk::new(seed);
        disk.fail_nth(FaultOp::Write, 1);
        let e = Db::open_with(disk.clone(), SimClock::new(), dir, options()).unwrap_err();
        assert!(e.to_string().contains("EPOCH"), "seed {seed}: the epoch's write failed: {e}");
        Db::open_with(disk.clone(), SimClock::new(), dir, options()).unwrap_or_else(|e| {
            panic!("seed {seed}: the database cannot be opened after a failed write: {e}")
        });
    }
    assert!(empty_after_crash > 0, "no seed kept an empty EPOCH: the scenario never happened");
}

/// Found by `db_sim` seed 181515 (a long campaign, past the gate's 20,000 seeds): the first open
/// of a new database ran out of space while writing its first epoch, and the disk kept the part
/// that fitted, an `EPOCH` shorter than its 12 bytes. Every later open failed reading it
/// ("unexpected end of file"): the database could never be opened again, although no epoch had
/// been used. A short `EPOCH`, like an empty or zeroed one, now means no epoch was ever used.
#[test]
fn regression_seed_181515_a_first_epoch_cut_short_by_a_full_disk_does_not_brick_the_database() {
    use waldb::sim::SimFaults;
    use waldb::{Db, SimClock};
    let dir = Path::new("/db");
    let epoch = dir.join("EPOCH");
    for seed in 0..4 {
        // Room for 1 to 11 of the epoch's 12 bytes, then the disk is full.
        for room in 1..12u64 {
            let disk = SimDisk::new(seed);
            disk.set_faults(SimFaults::default().with_capacity_bytes(Some(room)));
            let e = Db::open_with(disk.clone(), SimClock::new(), dir, options()).unwrap_err();
            assert!(
                e.to_string().contains("EPOCH"),
                "seed {seed}, room {room}: the epoch's write failed: {e}"
            );
            let f = disk.open(&epoch, waldb::OpenMode::Read).unwrap();
            assert_eq!(waldb::DiskFile::len(&f).unwrap(), room, "seed {seed}: the write kept what fitted");
            // Space is freed; the process restarts without a crash, and again after one.
            disk.set_faults(SimFaults::default());
            opens_and_keeps_a_commit(&disk, &format!("seed {seed}, room {room}, after a full disk"));
        }
    }
}
