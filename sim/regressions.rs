//! Bugs the simulator found, each as a named test of the exact scenario, with the seed that found
//! it. Each failed before its fix.

use std::path::Path;
use waldb::sim::{FaultOp, SimDisk};
use waldb::wal::{LogEnd, LogWriter, RecordKind, RecoveryMode, WalOptions, read_log};
use waldb::{Disk, Lsn};

const DIR: &str = "/db/wal";

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 8192,
        record_payload_bytes_max: Some(1024),
        recovery: RecoveryMode::TolerateTornTail,
    }
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
