//! Recycled log segments (`src/wal/segment.rs`, `src/wal/recovery.rs`): a segment the log no
//! longer needs is renamed `.wal.free` and reused as a later segment with its old bytes left in
//! place, so that a segment's zeros are written once per file rather than once per segment.
//! These tests prove that the reader tells those old bytes from the segment's own records:
//! recycled segments read back whole in every mode; a torn write that leaves old bytes where new
//! ones were due is a clean end or a torn tail, never lost acknowledged records, and the log
//! resumes and reads back strictly; a flipped bit in a durable record of a recycled segment is
//! still corruption; a recycled segment prepared and never used ends the log cleanly and is used
//! by the next rotation. Each on `StdDisk` and `SimDisk`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use waldb::wal::format::{self, FLAG_RECYCLED};
use waldb::wal::segment::{FREE_SEGMENTS_MAX, list_segments, prepare_segment, remove_segments_through};
use waldb::wal::{LogEnd, RecoveryMode};
use waldb::{Disk, Error, Lsn, SegmentId};

const MODES: [RecoveryMode; 3] =
    [RecoveryMode::Strict, RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime];

/// Segments of four pages: a write pads only to the end of its page, so earlier bytes stay in
/// the pages after it.
fn opts() -> waldb::wal::WalOptions {
    small_opts().with_segment_bytes(16384)
}

fn flags(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[12..16].try_into().unwrap())
}

/// A log whose later segments are recycled files: `first` (synced one by one) fills several
/// segments, every segment but the last is retired, then `second` is appended. Returns what
/// was written, the LSN up to which segments were retired, and the bytes each free file held
/// (in the order the preparations take them).
struct Recycled {
    written: Written,
    retired_through: Lsn,
    free_before: Vec<Vec<u8>>,
}

fn recycled_log<D: Disk + Clone>(disk: &D, dir: &Path, first: usize, second: usize) -> Recycled {
    let opts = opts();
    let a: Vec<Vec<u8>> = (0..first).map(|i| txn_payload(i, 200 + (i * 97) % 500)).collect();
    let mut written = write_log(disk, dir, opts, &a, 1);
    let retired_through = written.last().unwrap().0;
    let removed = remove_segments_through(disk, dir, retired_through).unwrap();
    assert!(removed as usize > FREE_SEGMENTS_MAX, "{removed} segments removed");
    let free = list_segments(disk, dir).unwrap().free_files;
    assert_eq!(free.len(), FREE_SEGMENTS_MAX, "the oldest segments are kept for recycling");
    let free_before: Vec<Vec<u8>> = free.iter().map(|p| read_bytes(disk, p)).collect();
    let b: Vec<Vec<u8>> = (first..first + second).map(|i| txn_payload(i, 200 + (i * 53) % 400)).collect();
    written.extend(write_log(disk, dir, opts, &b, 1));
    Recycled { written, retired_through, free_before }
}

/// The records the log still holds: those of the segments that were not retired.
fn readable(written: &Written, starts_after: Lsn) -> Written {
    written.iter().filter(|w| w.0 > starts_after).cloned().collect()
}

fn recycled_segments<D: Disk>(disk: &D, dir: &Path) -> Vec<PathBuf> {
    segment_paths(disk, dir)
        .into_iter()
        .filter(|p| flags(&read_bytes(disk, p)) & FLAG_RECYCLED != 0)
        .collect()
}

fn recycled_segments_read_back_in_every_mode_and_resume<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = opts();
    let r = recycled_log(&disk, dir, 160, 80);
    let recycled = recycled_segments(&disk, dir);
    assert_eq!(recycled.len(), FREE_SEGMENTS_MAX, "the next two segments were recycled files");
    // Not vacuous: the last one, partly used, still holds earlier bytes after its own records.
    let (records, _) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let last = segment_paths(&disk, dir).pop().unwrap();
    assert_eq!(recycled.last(), Some(&last), "the log ends in a recycled segment");
    let seg = records.last().unwrap().segment;
    let end =
        records.iter().filter(|x| x.segment == seg).map(|x| x.offset as usize + 40 + x.payload.len()).max();
    let bytes = read_bytes(&disk, &last);
    assert!(
        bytes[end.unwrap()..].iter().any(|&b| b != 0),
        "earlier bytes after the records: end {end:?}, last non-zero {:?}, before {:?}",
        bytes.iter().rposition(|&b| b != 0),
        r.free_before.iter().map(|b| b.iter().rposition(|&x| x != 0)).collect::<Vec<_>>()
    );
    for mode in MODES {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        assert!(report.starts_after <= r.retired_through);
        let expect = readable(&r.written, report.starts_after);
        assert_prefix(&records, &expect, expect.len(), &format!("{mode:?}"));
        assert_eq!(report.end, LogEnd::Clean, "{mode:?}");
    }
    // Reopened, the writer continues in the recycled segment; it still reads back strictly.
    let more: Vec<Vec<u8>> = (200..205).map(|i| txn_payload(i, 150)).collect();
    let mut written = r.written;
    written.extend(write_log(&disk, dir, opts, &more, 2));
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let expect = readable(&written, report.starts_after);
    assert_prefix(&records, &expect, expect.len(), "after resume");
    assert_eq!(report.end, LogEnd::Clean);
}

/// A torn write over a recycled segment: from each offset `cut` of the last segment on, the
/// bytes are what the file held before (its earlier use's) — as if the write of everything after
/// `cut` had been lost. The records wholly before `cut` come back, nothing else; the end is
/// clean or a torn tail; and the log resumes and reads back strictly.
fn a_torn_write_over_recycled_bytes_loses_nothing_before_it<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = opts();
    // The second part ends in the first recycled segment (4 KiB segments, ~400-byte records).
    let r = recycled_log(&disk, dir, 160, 40);
    let files = snapshot(&disk, dir);
    let last = files.len() - 1;
    assert_ne!(flags(&files[last].1) & FLAG_RECYCLED, 0, "the last segment is recycled");
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let places = layout(&records, &files);
    let expect = readable(&r.written, report.starts_after);
    assert_prefix(&records, &expect, expect.len(), "laid out");
    // The first recycled segment took the first free file.
    let before = &r.free_before[0];
    let used_end = places.iter().filter(|p| p.0 == last).map(|p| p.1 + p.2).max().unwrap();
    let page_end = (used_end + format::RECORD_HEADER_BYTES).next_multiple_of(4096).min(before.len());
    let mut resumed = 0;
    for cut in 64..=page_end {
        let mut kept = files.clone();
        kept[last].1[cut..page_end].copy_from_slice(&before[cut..page_end]);
        restore(&disk, dir, &kept);
        let survivors = places.iter().filter(|p| p.0 < last || p.1 + p.2 <= cut).count();
        let ctx = format!("cut at {cut}");
        for mode in MODES {
            match read(&disk, dir, opts, mode) {
                Err(Error::Corrupt { .. }) if mode == RecoveryMode::Strict => {}
                Ok((got, report)) => {
                    assert_prefix(&got, &expect, survivors, &format!("{ctx} {mode:?}"));
                    match &report.end {
                        LogEnd::Clean => {}
                        LogEnd::TornTail(c) => assert_eq!(c.dropped_records, 0, "{ctx} {mode:?}"),
                        other => panic!("{ctx} {mode:?}: {other:?}"),
                    }
                }
                other => panic!("{ctx} {mode:?}: {other:?}"),
            }
        }
        if cut % 37 == 0 {
            resumed += 1;
            let more: Vec<Vec<u8>> = (300..303).map(|i| txn_payload(i, 120)).collect();
            let appended = write_log(&disk, dir, opts, &more, 1);
            let (got, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
            let mut all = expect[..survivors].to_vec();
            all.extend(appended);
            assert_prefix(&got, &all, all.len(), &format!("{ctx} after resume"));
            assert_eq!(report.end, LogEnd::Clean, "{ctx} after resume");
        }
    }
    assert!(resumed >= 10, "{resumed} resumptions");
}

/// A flipped bit in a record of a recycled segment that later records prove durable is
/// corruption, as in a fresh segment.
fn a_damaged_record_of_a_recycled_segment_is_corruption<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = opts();
    let r = recycled_log(&disk, dir, 160, 80);
    let files = snapshot(&disk, dir);
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let places = layout(&records, &files);
    let expect = readable(&r.written, report.starts_after);
    let recycled: Vec<usize> =
        (0..files.len()).filter(|&i| flags(&files[i].1) & FLAG_RECYCLED != 0).collect();
    let mut checked = 0;
    for (i, p) in places.iter().enumerate().filter(|(_, p)| recycled.contains(&p.0)) {
        if i + 1 == places.len() {
            continue; // the last record: nothing after it proves it durable
        }
        for offset in [p.1 + 2, p.1 + 20, p.1 + p.2 / 2, p.1 + p.2 - 1] {
            let mut kept = files.clone();
            kept[p.0].1[offset] ^= 0x20;
            restore(&disk, dir, &kept);
            let ctx = format!("record {i} byte {offset}");
            assert!(
                matches!(read(&disk, dir, opts, RecoveryMode::Strict), Err(Error::Corrupt { .. })),
                "{ctx}"
            );
            assert!(
                matches!(read(&disk, dir, opts, RecoveryMode::TolerateTornTail), Err(Error::Corrupt { .. })),
                "{ctx}"
            );
            let (got, report) = read(&disk, dir, opts, RecoveryMode::PointInTime).unwrap();
            assert_prefix(&got, &expect, i, &ctx);
            assert!(matches!(report.end, LogEnd::Stopped(_)), "{ctx}: {:?}", report.end);
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} flips");
}

/// A recycled file prepared for the next segment and never used ends the log as an all-zero
/// one does, and the writer uses it at its next rotation.
fn a_prepared_recycled_segment_ends_the_log_cleanly_and_is_used<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = opts();
    let r = recycled_log(&disk, dir, 160, 20);
    let segments = list_segments(&disk, dir).unwrap().segments;
    let next = SegmentId(segments.last().unwrap().0.0 + 1);
    remove_segments_through(&disk, dir, r.written.last().unwrap().0).unwrap();
    assert!(!list_segments(&disk, dir).unwrap().free_files.is_empty());
    let prepared = prepare_segment(&disk, dir, next, opts.segment_bytes).unwrap();
    assert!(prepared.recycled, "a free file was taken");
    drop(prepared);
    for mode in MODES {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        let expect = readable(&r.written, report.starts_after);
        assert_prefix(&records, &expect, expect.len(), &format!("{mode:?}"));
        assert_eq!(report.end, LogEnd::Clean, "{mode:?}");
    }
    let more: Vec<Vec<u8>> = (400..420).map(|i| txn_payload(i, 300)).collect();
    let mut written = r.written;
    written.extend(write_log(&disk, dir, opts, &more, 3));
    let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
    let expect = readable(&written, report.starts_after);
    assert_prefix(&records, &expect, expect.len(), "after rotation into it");
    assert_eq!(report.end, LogEnd::Clean);
    let used = segment_paths(&disk, dir).into_iter().find(|p| {
        waldb::wal::segment::parse_segment_file_name(p.file_name().unwrap().to_str().unwrap()) == Some(next)
    });
    let bytes = read_bytes(&disk, &used.expect("the prepared segment is in use"));
    assert_eq!(flags(&bytes), FLAG_RECYCLED, "its header says it is recycled");
}

/// Records of a recycled segment ending at, or less than a record header before, a page's end:
/// the next page holds earlier bytes, and the writer's write covers one more page of zeros so
/// that the records still end cleanly (a clean close reads back strictly).
fn records_ending_at_a_page_end_of_a_recycled_segment_end_cleanly<D: Disk + Clone>(disk: D, dir: &Path) {
    for (gap, sub) in [(0usize, "at the page end"), (20, "20 bytes before it"), (39, "39 bytes before it")] {
        let dir = dir.join(format!("gap{gap}"));
        let r = recycled_log(&disk, &dir, 160, 0);
        let (mut w, _) = waldb::wal::LogWriter::open(disk.clone(), &dir, opts()).unwrap();
        let mut written = r.written;
        let start = w.active_segment();
        let mut i = 0;
        // Fill the current segment until a record goes to the next (recycled) one, at offset 64.
        while w.active_segment() == start {
            let body = payload(500 + i, 1976);
            let lsn = w.append(waldb::wal::RecordKind::Unknown(0xC1), &body).unwrap();
            written.push((lsn, waldb::wal::RecordKind::Unknown(0xC1), body));
            i += 1;
        }
        // 64 + 2016 + (2016 − gap) = 4096 − gap.
        let body = payload(900, 1976 - gap);
        let lsn = w.append(waldb::wal::RecordKind::Unknown(0xC1), &body).unwrap();
        written.push((lsn, waldb::wal::RecordKind::Unknown(0xC1), body));
        w.close().unwrap();
        let last = segment_paths(&disk, &dir).pop().unwrap();
        let bytes = read_bytes(&disk, &last);
        assert_ne!(flags(&bytes) & FLAG_RECYCLED, 0, "{sub}: a recycled segment");
        // Not vacuous: the pages after the write's hold earlier bytes.
        assert!(bytes[8192..].iter().any(|&b| b != 0), "{sub}: earlier bytes after the write");
        for mode in MODES {
            let (records, report) =
                read(&disk, &dir, opts(), mode).unwrap_or_else(|e| panic!("{sub} {mode:?}: {e}"));
            let expect = readable(&written, report.starts_after);
            assert_prefix(&records, &expect, expect.len(), sub);
            assert_eq!(report.end, LogEnd::Clean, "{sub} {mode:?}");
        }
    }
}

on_both_disks!(
    records_ending_at_a_page_end_of_a_recycled_segment_end_cleanly,
    recycled_segments_read_back_in_every_mode_and_resume,
    a_torn_write_over_recycled_bytes_loses_nothing_before_it,
    a_damaged_record_of_a_recycled_segment_is_corruption,
    a_prepared_recycled_segment_ends_the_log_cleanly_and_is_used,
);
