//! Fault-specific behaviour of the log on `SimDisk`, scenario by scenario (the campaign in
//! `wal_crash` covers them at random).

use std::path::Path;
use waldb::sim::{FaultOp, SimDisk};
use waldb::wal::segment::{prepare_segment, segment_file_name};
use waldb::wal::{LogWriter, RecordKind, WalOptions, read_log};
use waldb::{Disk, DiskFile, Error, OpenMode, SegmentId};

const DIR: &str = "/db/wal";

/// A preparation that fails after its rename (at the directory sync) leaves the final name
/// behind; the next preparation finishes it instead of refusing, so rotation keeps working.
#[test]
fn interrupted_preparation_is_completed_not_refused() {
    let disk = SimDisk::new(1);
    let dir = Path::new(DIR);
    waldb::wal::segment::create_dir_durable(&disk, dir).unwrap();
    disk.fail_nth(FaultOp::SyncDir, 1);
    match prepare_segment(&disk, dir, SegmentId(1), 4096) {
        Err(Error::Io { op: "sync_dir", .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(disk.open(&dir.join(segment_file_name(SegmentId(1))), OpenMode::Read).is_ok());
    let file = prepare_segment(&disk, dir, SegmentId(1), 4096).expect("the retry completes it");
    assert_eq!(file.file.len().unwrap(), 4096);
    // And the log works on top of it, across a crash.
    let opts = WalOptions::default().with_segment_bytes(4096);
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    let lsn = w.append(RecordKind::Unknown(0x80), b"x").unwrap();
    w.sync().unwrap();
    disk.crash();
    let (records, _) = read_log(disk, dir, opts.read_options()).unwrap();
    assert_eq!(records.last().map(|r| r.lsn), Some(lsn));
}

/// A segment file that holds data is never overwritten by a preparation.
#[test]
fn segment_with_data_is_never_overwritten() {
    let disk = SimDisk::new(2);
    let dir = Path::new(DIR);
    waldb::wal::segment::create_dir_durable(&disk, dir).unwrap();
    let path = dir.join(segment_file_name(SegmentId(3)));
    let f = disk.open(&path, OpenMode::CreateNew).unwrap();
    f.write_all_at(&[0u8; 4095], 0).unwrap();
    f.write_all_at(&[1], 4095).unwrap();
    match prepare_segment(&disk, dir, SegmentId(3), 4096) {
        Err(Error::Io { op: "prepare_segment", source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("{other:?}"),
    }
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, 4095).unwrap();
    assert_eq!(last, [1], "the data is intact");
}

/// A failed sync poisons the writer: that call and every later one fail, naming the first cause,
/// and nothing more reaches the disk.
#[test]
fn failed_sync_poisons_and_names_the_cause() {
    let disk = SimDisk::new(3);
    let opts = WalOptions::default().with_segment_bytes(4096);
    let (mut w, _) = LogWriter::open(disk.clone(), Path::new(DIR), opts).unwrap();
    w.append(RecordKind::Unknown(0x80), b"a").unwrap();
    w.sync().unwrap();
    w.append(RecordKind::Unknown(0x80), b"b").unwrap();
    disk.fail_nth(FaultOp::Sync, 1);
    // The batch and its sync are one call to the disk (`write_pages_synced_at`); the injected
    // sync failure is its cause.
    let sync_failed = |e: &Error| matches!(e, Error::Io { op: "write and sync_data", source, .. } if source.to_string().contains("(sync)"));
    let failed = w.sync().unwrap_err();
    assert!(sync_failed(&failed), "{failed:?}");
    let writes_before = disk.stats().writes;
    for result in [w.append(RecordKind::Unknown(0x80), b"c").map(|_| ()), w.write(), w.sync().map(|_| ())] {
        match result {
            Err(Error::Poisoned { cause }) => assert!(sync_failed(&cause), "{cause:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(disk.stats().writes, writes_before, "nothing is written after the failure");
    assert!(w.poisoned().is_some());
}

/// Disk full while writing fails the call with `StorageFull` and poisons; the synced prefix
/// survives a crash.
#[test]
fn disk_full_is_storage_full_and_loses_nothing_synced() {
    let disk = SimDisk::new(4);
    let opts = WalOptions::default().with_segment_bytes(4096);
    let (mut w, _) = LogWriter::open(disk.clone(), Path::new(DIR), opts).unwrap();
    let mut synced = w.sync().unwrap();
    disk.set_faults(waldb::sim::SimFaults::default().with_capacity_bytes(Some(disk.used_bytes() + 9000)));
    let err = loop {
        if let Err(e) = w.append(RecordKind::Unknown(0x80), &[5u8; 600]) {
            break e;
        }
        match w.sync() {
            Ok(lsn) => synced = lsn,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::StorageFull { .. }), "{err:?}");
    disk.crash();
    disk.set_faults(waldb::sim::SimFaults::default());
    let (records, _) = read_log(disk, Path::new(DIR), opts.read_options()).unwrap();
    assert!(records.last().map(|r| r.lsn) >= Some(synced), "synced through {synced}");
    assert!(synced.0 >= 3, "several records fit before the disk filled: {synced}");
}
