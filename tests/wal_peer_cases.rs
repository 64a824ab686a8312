//! The scenarios of LevelDB's and RocksDB's `log_test`, re-expressed for waldb's format, plus
//! the ones its format adds (segment chains, watermarks, stale records, LSN gaps). Each runs on
//! `StdDisk` and `SimDisk` and asserts the exact records returned and how the log ends in each
//! recovery mode.

mod common;

use common::*;
use std::path::Path;
use waldb::wal::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, rec};
use waldb::wal::{
    LogEnd, LogWriter, RecordKind, RecordMeta, RecoveryMode, SegmentHeader, WalOptions, encode_record,
    encode_segment_header,
};
use waldb::{Disk, Error, Lsn, SegmentId};

fn expect_corrupt<D: Disk + Clone>(disk: &D, dir: &Path, opts: WalOptions, mode: RecoveryMode, needle: &str) {
    match read(disk, dir, opts, mode) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains(needle), "{mode:?}: {reason:?} lacks {needle:?}")
        }
        other => panic!("{mode:?}: expected corruption ({needle}), got {other:?}"),
    }
}

fn txns(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| txn_payload(i, len)).collect()
}

/// No segment files, or only a prepared all-zero one: an empty, clean log.
fn empty_log<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let (w, report) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    assert_eq!((report.records, report.last_lsn, &report.end), (0, None, &LogEnd::Clean));
    w.close().unwrap();
    write_bytes(&disk, &dir.join(waldb::wal::segment::segment_file_name(SegmentId(1))), &[0u8; 4096]);
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime] {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        assert!(records.is_empty());
        assert_eq!(report.end, LogEnd::Clean);
    }
    // The prepared segment is used, not replaced.
    let written = write_log(&disk, dir, opts, &txns(2, 50), 1);
    let (records, _) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    assert_prefix(&records, &written, 2, "after writing into the prepared segment");
    assert_eq!(segment_paths(&disk, dir).len(), 1);
}

/// Zero-length payloads (an ignorable kind) and a transaction with no operations.
fn zero_length_payload<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    let mut empty_txn = Vec::new();
    waldb::wal::encode_txn(&mut empty_txn, waldb::TxnId(9), &[]);
    let a = w.append(RecordKind::Unknown(0x80), b"").unwrap();
    let b = w.append(RecordKind::Txn, &empty_txn).unwrap();
    let c = w.append(RecordKind::Unknown(0xFF), b"").unwrap();
    w.close().unwrap();
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let got: Vec<(Lsn, RecordKind, usize)> =
        records.iter().map(|r| (r.lsn, r.kind, r.payload.len())).collect();
    assert_eq!(
        got,
        vec![(a, RecordKind::Unknown(0x80), 0), (b, RecordKind::Txn, 12), (c, RecordKind::Unknown(0xFF), 0)]
    );
    assert_eq!(report.end, LogEnd::Clean);
    assert_eq!(waldb::wal::decode_txn(&records[1].payload).unwrap().op_count(), 0);
}

/// Records much larger than a page, across rotations; a cut inside one is a torn tail.
fn records_larger_than_a_page<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts =
        WalOptions::default().with_segment_bytes(64 * 1024).with_record_payload_bytes_max(Some(40 * 1024));
    let payloads: Vec<Vec<u8>> = (0..7).map(|i| txn_payload(i, 9_000 + i * 4_000)).collect();
    let written = write_log(&disk, dir, opts, &payloads, 1);
    let (records, _) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    assert_prefix(&records, &written, 7, "large records");
    assert!(segment_paths(&disk, dir).len() >= 2, "they span segments");
    // Cut the last record in half.
    let files = snapshot(&disk, dir);
    let last = records.last().unwrap();
    let (path, mut bytes) = files.last().unwrap().clone();
    let mid = usize::try_from(last.offset).unwrap() + last.payload.len() / 2;
    bytes[mid..].fill(0);
    write_bytes(&disk, &path, &bytes);
    let (records, report) = read(&disk, dir, opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_prefix(&records, &written, 6, "torn large record");
    assert!(matches!(report.end, LogEnd::TornTail(_)));
    expect_corrupt(&disk, dir, opts, RecoveryMode::Strict, "torn tail");
}

/// Overwrites the record at index `i` of the log with `edit` applied to its bytes.
fn edit_record<D: Disk + Clone>(disk: &D, dir: &Path, opts: WalOptions, i: usize, edit: impl Fn(&mut [u8])) {
    let (records, _) = read(disk, dir, opts, RecoveryMode::PointInTime).unwrap();
    let files = snapshot(disk, dir);
    let places = layout(&records, &files);
    let (fi, off, len) = places[i];
    let (path, mut bytes) = files[fi].clone();
    edit(&mut bytes[off..off + len]);
    write_bytes(disk, &path, &bytes);
}

/// A length field beyond the maximum: corruption in the middle, a torn tail at the end.
fn bad_length_field<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let written = write_log(&disk, dir, opts, &txns(4, 60), 1);
    edit_record(&disk, dir, opts, 1, |r| r[rec::LEN].copy_from_slice(&u32::MAX.to_le_bytes()));
    expect_corrupt(&disk, dir, opts, RecoveryMode::Strict, "exceeds the maximum");
    expect_corrupt(&disk, dir, opts, RecoveryMode::TolerateTornTail, "was durable");
    let (records, report) = read(&disk, dir, opts, RecoveryMode::PointInTime).unwrap();
    assert_prefix(&records, &written, 1, "point in time");
    let LogEnd::Stopped(cut) = report.end else { panic!("{:?}", report.end) };
    assert_eq!(cut.offset, (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + records[0].payload.len()) as u64);

    // The same damage in the last record is a torn tail.
    let dir2 = dir.with_file_name("wal2");
    let written = write_log(&disk, &dir2, opts, &txns(4, 60), 1);
    edit_record(&disk, &dir2, opts, 3, |r| r[rec::LEN].copy_from_slice(&u32::MAX.to_le_bytes()));
    let (records, report) = read(&disk, &dir2, opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_prefix(&records, &written, 3, "torn last record");
    assert!(matches!(report.end, LogEnd::TornTail(_)));
}

/// A checksum mismatch (a payload byte changed): corruption in the middle.
fn crc_mismatch<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let written = write_log(&disk, dir, opts, &txns(5, 80), 1);
    edit_record(&disk, dir, opts, 2, |r| r[RECORD_HEADER_BYTES + 3] ^= 0x40);
    expect_corrupt(&disk, dir, opts, RecoveryMode::Strict, "checksum mismatch");
    expect_corrupt(&disk, dir, opts, RecoveryMode::TolerateTornTail, "checksum mismatch");
    let (records, report) = read(&disk, dir, opts, RecoveryMode::PointInTime).unwrap();
    assert_prefix(&records, &written, 2, "stops before the bad record");
    assert!(matches!(report.end, LogEnd::Stopped(_)));
}

/// An unknown mandatory record type is corruption (a newer writer); an ignorable one is skipped
/// by consumers and read past.
fn unknown_record_type<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    w.append(RecordKind::Txn, &txn_payload(0, 40)).unwrap();
    w.append(RecordKind::Unknown(0x85), b"future, ignorable").unwrap();
    w.append(RecordKind::Txn, &txn_payload(1, 40)).unwrap();
    w.append(RecordKind::Unknown(7), b"future, mandatory").unwrap();
    w.append(RecordKind::Txn, &txn_payload(2, 40)).unwrap();
    w.close().unwrap();
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        expect_corrupt(&disk, dir, opts, mode, "unknown record type 7");
    }
    let (records, report) = read(&disk, dir, opts, RecoveryMode::PointInTime).unwrap();
    let kinds: Vec<RecordKind> = records.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RecordKind::Txn, RecordKind::Unknown(0x85), RecordKind::Txn]);
    assert!(matches!(report.end, LogEnd::Stopped(_)));
}

/// A recycled segment: new records (segment 2) over the old records of segment 1. Where the new
/// records end on an old record boundary the stale record marks a clean end; elsewhere the
/// remains are a torn tail. Stale records are never returned.
fn stale_records_of_a_recycled_segment<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    // An "old" segment 1 full of same-sized records.
    let mut old = vec![0u8; 4096];
    let header = SegmentHeader {
        segment: SegmentId(1),
        first_lsn: Lsn(1),
        prev_last_lsn: Lsn::ZERO,
        prev_last_crc: 0,
        segment_bytes: 4096,
        recycled: false,
    };
    old[..64].copy_from_slice(&encode_segment_header(&header));
    let mut recs = Vec::new();
    for i in 0..10u64 {
        let meta = RecordMeta { lsn: Lsn(i + 1), segment: SegmentId(1), synced_lsn: Lsn(i), kind: 0x81 };
        encode_record(&mut recs, meta, &[i as u8 | 1; 100]);
    }
    old[64..64 + recs.len()].copy_from_slice(&recs);
    // Recycled as segment 2 of a log whose segment 1 ended at LSN 50 (crc 0x1234): three new
    // records of the same size, so the fourth slot holds a stale record.
    let recycled = |new_count: u64, new_len: usize| {
        let mut bytes = old.clone();
        let header = SegmentHeader {
            segment: SegmentId(2),
            first_lsn: Lsn(51),
            prev_last_lsn: Lsn(50),
            prev_last_crc: 0x1234,
            segment_bytes: 4096,
            recycled: false,
        };
        bytes[..64].copy_from_slice(&encode_segment_header(&header));
        let mut new = Vec::new();
        for i in 0..new_count {
            let meta =
                RecordMeta { lsn: Lsn(51 + i), segment: SegmentId(2), synced_lsn: Lsn(50 + i), kind: 0x81 };
            encode_record(&mut new, meta, &vec![0xEE; new_len]);
        }
        bytes[64..64 + new.len()].copy_from_slice(&new);
        bytes
    };
    let path = dir.join(waldb::wal::segment::segment_file_name(SegmentId(2)));
    waldb::wal::segment::create_dir_durable(&disk, dir).unwrap();

    write_bytes(&disk, &path, &recycled(3, 100));
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        assert_eq!(records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(), vec![51, 52, 53], "{mode:?}");
        assert_eq!(report.end, LogEnd::Clean, "{mode:?}");
    }

    write_bytes(&disk, &path, &recycled(3, 70));
    let (records, report) = read(&disk, dir, opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(), vec![51, 52, 53]);
    let LogEnd::TornTail(cut) = report.end else { panic!("{:?}", report.end) };
    assert_eq!(cut.dropped_records, 0, "stale records are not this segment's records");
}

/// A missing segment in the middle: the next segment's header proves the missing records were
/// durable, so this is corruption; point-in-time recovery stops before the gap.
fn missing_segment_in_the_middle<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let written = write_log(&disk, dir, opts, &txns(60, 200), 1);
    let (records, _) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let paths = segment_paths(&disk, dir);
    assert!(paths.len() >= 4);
    remove(&disk, &paths[1]);
    let in_first = records.iter().filter(|r| r.segment == SegmentId(1)).count();
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        expect_corrupt(&disk, dir, opts, mode, "segment 2 is missing");
    }
    let (records, report) = read(&disk, dir, opts, RecoveryMode::PointInTime).unwrap();
    assert_prefix(&records, &written, in_first, "stops at the gap");
    assert!(matches!(report.end, LogEnd::Stopped(_)));
}

/// Two segment files swapped: the header names the other segment.
fn swapped_segments<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    write_log(&disk, dir, opts, &txns(60, 200), 1);
    let files = snapshot(&disk, dir);
    write_bytes(&disk, &files[1].0, &files[2].1);
    write_bytes(&disk, &files[2].0, &files[1].1);
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        expect_corrupt(&disk, dir, opts, mode, "file name says segment 2 but its header says segment 3");
    }
}

/// The zeroed tail of a preallocated segment is the clean end of the log, in every mode; zeroing
/// whole records from the end leaves a clean, shorter log.
fn zeroed_tail_in_a_preallocated_segment<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let written = write_log(&disk, dir, opts, &txns(6, 100), 1);
    let files = snapshot(&disk, dir);
    assert_eq!(files[0].1.len(), 4096, "segments are preallocated to full size");
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime] {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        assert_prefix(&records, &written, 6, "clean");
        assert_eq!(report.end, LogEnd::Clean);
    }
    let (records, _) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let mut bytes = files[0].1.clone();
    bytes[usize::try_from(records[4].offset).unwrap()..].fill(0);
    write_bytes(&disk, &files[0].0, &bytes);
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    assert_prefix(&records, &written, 4, "zeroed from record 4");
    assert_eq!(report.end, LogEnd::Clean);
}

/// A header torn in the last segment: a torn tail if only the first batch was in flight;
/// corruption if later records prove the segment's start durable.
fn header_torn_in_the_last_segment<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    // 17 records fill segment 1 and put one record into segment 2; 19 put three there.
    for (n, expect_second) in [(17, 1), (19, 3)] {
        let dir = dir.with_file_name(format!("wal-{n}"));
        let written = write_log(&disk, &dir, opts, &txns(n, 200), 1);
        let files = snapshot(&disk, &dir);
        assert_eq!(files.len(), 2, "the log fills one segment and starts a second");
        let (records, _) = read(&disk, &dir, opts, RecoveryMode::Strict).unwrap();
        let in_first = records.iter().filter(|r| r.segment == SegmentId(1)).count();
        assert_eq!(records.len() - in_first, expect_second);
        let mut torn = files[1].1.clone();
        torn[32..64].fill(0); // the second half of the header never made it
        write_bytes(&disk, &files[1].0, &torn);
        if expect_second > 1 {
            expect_corrupt(&disk, &dir, opts, RecoveryMode::TolerateTornTail, "was durable");
            let (records, report) = read(&disk, &dir, opts, RecoveryMode::PointInTime).unwrap();
            assert_prefix(&records, &written, in_first, "point in time stops at the torn header");
            assert!(matches!(report.end, LogEnd::Stopped(_)));
            continue;
        }
        let (records, report) = read(&disk, &dir, opts, RecoveryMode::TolerateTornTail).unwrap();
        assert_prefix(&records, &written, in_first, "torn header");
        assert!(matches!(report.end, LogEnd::TornTail(_)), "{:?}", report.end);
        expect_corrupt(&disk, &dir, opts, RecoveryMode::Strict, "torn tail");
        // The writer replaces the torn segment and continues.
        let more = write_log(&disk, &dir, opts, &txns(2, 50), 1);
        let (records, report) = read(&disk, &dir, opts, RecoveryMode::Strict).unwrap();
        let mut expect = written[..in_first].to_vec();
        expect.extend(more);
        assert_prefix(&records, &expect, expect.len(), "after resume");
        assert_eq!(report.end, LogEnd::Clean);
    }
}

/// A torn tail that still holds a valid (but unproven) record: it is dropped, counted, and the
/// writer continues with LSNs above it, in a new segment whose header records the gap.
fn dropped_valid_record_is_never_reused<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    for i in 0..3 {
        w.append(RecordKind::Txn, &txn_payload(i, 50)).unwrap();
    }
    w.sync().unwrap();
    // Two records in one unsynced batch: both carry synced_lsn = 3.
    w.append(RecordKind::Txn, &txn_payload(3, 50)).unwrap();
    w.append(RecordKind::Txn, &txn_payload(4, 50)).unwrap();
    w.close().unwrap();
    // A crash tore the first of them.
    edit_record(&disk, dir, opts, 3, |r| r[RECORD_HEADER_BYTES + 1] ^= 1);
    let (records, report) = read(&disk, dir, opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(records.len(), 3);
    let LogEnd::TornTail(cut) = &report.end else { panic!("{:?}", report.end) };
    assert_eq!(cut.dropped_records, 1);
    assert_eq!(report.max_lsn_seen, Lsn(5));
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    assert_eq!(w.next_lsn(), Lsn(6), "LSN 5 was seen on disk: never reused");
    w.append(RecordKind::Txn, &txn_payload(9, 50)).unwrap();
    w.close().unwrap();
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    assert_eq!(records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(), vec![1, 2, 3, 6]);
    assert_eq!(records[3].segment, SegmentId(2), "the gap sits at a segment boundary");
    assert_eq!(report.end, LogEnd::Clean);
}

/// Oversized appends and impossible options are clear errors, and nothing is written for them.
fn limits_are_enforced<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).unwrap();
    match w.append(RecordKind::Txn, &vec![0u8; 2049]) {
        Err(Error::TooLarge { len: 2049, max: 2048, .. }) => {}
        other => panic!("{other:?}"),
    }
    let lsn = w.append(RecordKind::Unknown(0x80), &[1u8; 2048]).unwrap();
    assert_eq!(lsn, Lsn(1), "the refused append took no LSN");
    w.close().unwrap();
    let bad = opts.with_segment_bytes(4096).with_record_payload_bytes_max(Some(4096));
    assert!(matches!(LogWriter::open(disk.clone(), dir, bad), Err(Error::InvalidConfig { .. })));
    let bad = opts.with_segment_bytes(100);
    assert!(matches!(LogWriter::open(disk, dir, bad), Err(Error::InvalidConfig { .. })));
}

on_both_disks!(
    empty_log,
    zero_length_payload,
    records_larger_than_a_page,
    bad_length_field,
    crc_mismatch,
    unknown_record_type,
    stale_records_of_a_recycled_segment,
    missing_segment_in_the_middle,
    swapped_segments,
    zeroed_tail_in_a_preallocated_segment,
    header_torn_in_the_last_segment,
    dropped_valid_record_is_never_reused,
    limits_are_enforced,
);
