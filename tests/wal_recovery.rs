//! Proves that the log reads back exactly what was written and that recovery returns a prefix,
//! never a record that was not written: a proptest round trip across segment rotations and
//! reopenings, a cut at every byte of a multi-segment log, and a flip of every bit of a small
//! log plus a seeded sample of a large one — each on `StdDisk` and `SimDisk`.

mod common;

use common::*;
use proptest::prelude::*;
use std::path::Path;
use waldb::wal::{LogEnd, LogWriter, RecordKind, RecoveryMode, WalOptions};
use waldb::{Disk, Error, Lsn};

const MODES: [RecoveryMode; 3] =
    [RecoveryMode::Strict, RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime];

// ---------------------------------------------------------------------------------------------
// Round trip

/// Writes `sizes` in sessions (closing and reopening the writer at each `reopen` index), syncing
/// every `sync_every` records, and reads everything back in every mode.
fn round_trip<D: Disk + Clone>(disk: D, dir: &Path, sizes: &[usize], sync_every: usize, reopen: &[usize]) {
    let opts = WalOptions::default().with_segment_bytes(8192).with_record_payload_bytes_max(Some(6000));
    let mut written: Written = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = reopen.iter().copied().filter(|&r| r < sizes.len()).collect();
    bounds.sort_unstable();
    bounds.push(sizes.len());
    for end in bounds {
        if end < start {
            continue;
        }
        let (mut w, report) = LogWriter::open(disk.clone(), dir, opts).unwrap();
        assert_eq!(report.end, LogEnd::Clean, "a closed log reopens clean");
        for (i, &size) in sizes.iter().enumerate().take(end).skip(start) {
            // Transactions, and unknown ignorable kinds with arbitrary (possibly empty) payloads.
            let (kind, body) = if i % 2 == 0 {
                (RecordKind::Txn, txn_payload(i, size))
            } else {
                (RecordKind::Unknown(0xC1), payload(i, size))
            };
            let lsn = w.append(kind, &body).unwrap();
            written.push((lsn, kind, body));
            if (i + 1) % sync_every == 0 {
                assert_eq!(w.sync().unwrap(), lsn);
            }
        }
        w.close().unwrap();
        start = end;
    }
    for (i, (lsn, _, _)) in written.iter().enumerate() {
        assert_eq!(*lsn, Lsn(i as u64 + 1), "LSNs are consecutive across reopenings");
    }
    for mode in MODES {
        let (records, report) = read(&disk, dir, opts, mode).unwrap();
        assert_prefix(&records, &written, written.len(), &format!("{mode:?}"));
        assert_eq!(report.end, LogEnd::Clean);
        assert_eq!(report.last_lsn, written.last().map(|w| w.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_std_disk(
        sizes in prop::collection::vec(prop_oneof![0usize..200, 200usize..5_900], 0..60),
        sync_every in 1usize..6,
        reopen in prop::collection::vec(0usize..60, 0..3),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        round_trip(waldb::StdDisk, &tmp.path().join("wal"), &sizes, sync_every, &reopen);
    }

    #[cfg(feature = "sim")]
    #[test]
    fn round_trip_sim_disk(
        sizes in prop::collection::vec(prop_oneof![0usize..200, 200usize..5_900], 0..60),
        sync_every in 1usize..6,
        reopen in prop::collection::vec(0usize..60, 0..3),
    ) {
        round_trip(waldb::sim::SimDisk::new(1), Path::new("/db/wal"), &sizes, sync_every, &reopen);
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation at every byte

/// A log of several segments, cut at every byte offset of every segment (zeroing the rest of the
/// segment on even offsets, truncating the file on odd ones, removing later segments): every
/// mode returns exactly the records that end before the cut, `TolerateTornTail` reports a torn
/// tail exactly when the cut is inside a record or a header, and `Strict` refuses exactly those.
/// Every 29th cut, a writer resumes after it and the log reads back strictly.
fn truncation_at_every_byte<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let payloads: Vec<Vec<u8>> = (0..44).map(|i| txn_payload(i, 40 + (i * 53) % 300)).collect();
    let Laid { written, files, places } = lay_out(&disk, dir, opts, &payloads);
    assert!(files.len() >= 3, "the log spans several segments: {}", files.len());
    let mut resumed = 0;
    for fi in 0..files.len() {
        let used_end = places.iter().filter(|p| p.0 == fi).map(|p| p.1 + p.2).max().unwrap_or(64);
        for cut in 0..=used_end + 1 {
            let mut kept: Snapshot = files[..fi].to_vec();
            let mut bytes = files[fi].1.clone();
            if cut % 2 == 0 {
                bytes[cut..].fill(0);
            } else {
                bytes.truncate(cut);
            }
            kept.push((files[fi].0.clone(), bytes));
            restore(&disk, dir, &kept);
            let survivors = places.iter().filter(|p| p.0 < fi || (p.0 == fi && p.1 + p.2 <= cut)).count();
            // A cut ends the log cleanly where a record ends or the next one would start.
            let at_boundary = cut == 0
                || cut == 64
                || cut > used_end
                || places.iter().any(|p| p.0 == fi && p.1 + p.2 == cut);
            let torn = !at_boundary;
            let ctx = format!("file {fi} cut at {cut}");
            for mode in MODES {
                match (mode, torn, read(&disk, dir, opts, mode)) {
                    (RecoveryMode::Strict, true, Err(Error::Corrupt { .. })) => {}
                    (_, _, Ok((records, report))) if !(mode == RecoveryMode::Strict && torn) => {
                        assert_prefix(&records, &written, survivors, &format!("{ctx} {mode:?}"));
                        match (&report.end, torn) {
                            (LogEnd::Clean, false) => {}
                            (LogEnd::TornTail(c), true) => assert_eq!(c.dropped_records, 0, "{ctx}"),
                            other => panic!("{ctx} {mode:?}: unexpected end {other:?}"),
                        }
                    }
                    (_, _, other) => panic!("{ctx} {mode:?} torn={torn}: unexpected {other:?}"),
                }
            }
            if cut % 29 == 0 {
                resumed += 1;
                let more: Vec<Vec<u8>> = (100..103).map(|i| txn_payload(i, 90)).collect();
                let appended = write_log(&disk, dir, opts, &more, 1);
                assert_eq!(appended[0].0, Lsn(survivors as u64 + 1), "{ctx}: LSNs continue after the prefix");
                let (records, report) = read(&disk, dir, opts, RecoveryMode::Strict).unwrap();
                let mut expect: Written = written[..survivors].to_vec();
                expect.extend(appended);
                assert_prefix(&records, &expect, expect.len(), &format!("{ctx} after resume"));
                assert_eq!(report.end, LogEnd::Clean, "{ctx}");
            }
        }
    }
    assert!(resumed > 10);
}

// ---------------------------------------------------------------------------------------------
// Bit flips

/// What a flip at a place in the log must do.
#[derive(Debug)]
enum Expect {
    /// Corrupt under Strict and Tolerate; PointInTime stops with the first `n` records.
    Corrupt(usize),
    /// Torn tail: Strict refuses; the others return the first `n` records.
    Torn(usize),
    /// Unused space after the last record of a segment that is not the last: Strict refuses,
    /// the others return everything and end clean.
    UnusedMiddle,
}

/// The expectation for a flip in file `fi` at `offset`, for a log whose records were each
/// synced before the next was written (so each record proves the one before it durable).
fn expect_flip(places: &[(usize, usize, usize)], files: usize, fi: usize, offset: usize) -> Expect {
    let n = places.len();
    if offset < 64 {
        // A segment header: the records from this segment on are lost. Corruption if anything
        // after it proves its first LSN durable: a second record, or a later segment.
        let first = places.iter().position(|p| p.0 == fi).expect("every segment holds a record");
        return if n - first >= 2 { Expect::Corrupt(first) } else { Expect::Torn(first) };
    }
    if let Some(i) = places.iter().position(|p| p.0 == fi && p.1 <= offset && offset < p.1 + p.2) {
        return if i + 1 < n { Expect::Corrupt(i) } else { Expect::Torn(i) };
    }
    if fi + 1 < files { Expect::UnusedMiddle } else { Expect::Torn(n) }
}

fn check_flip<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    opts: WalOptions,
    written: &Written,
    expect: &Expect,
    ctx: &str,
) {
    for mode in MODES {
        let result = read(disk, dir, opts, mode);
        match (expect, mode, result) {
            (
                Expect::Corrupt(_) | Expect::Torn(_) | Expect::UnusedMiddle,
                RecoveryMode::Strict,
                Err(Error::Corrupt { .. }),
            ) => {}
            (Expect::Corrupt(_), RecoveryMode::TolerateTornTail, Err(Error::Corrupt { .. })) => {}
            (Expect::Corrupt(n), RecoveryMode::PointInTime, Ok((records, report))) => {
                assert_prefix(&records, written, *n, ctx);
                assert!(matches!(report.end, LogEnd::Stopped(_)), "{ctx}: {:?}", report.end);
            }
            (
                Expect::Torn(n),
                RecoveryMode::TolerateTornTail | RecoveryMode::PointInTime,
                Ok((records, report)),
            ) => {
                assert_prefix(&records, written, *n, ctx);
                assert!(matches!(report.end, LogEnd::TornTail(_)), "{ctx}: {:?}", report.end);
            }
            (
                Expect::UnusedMiddle,
                RecoveryMode::TolerateTornTail | RecoveryMode::PointInTime,
                Ok((records, report)),
            ) => {
                assert_prefix(&records, written, written.len(), ctx);
                assert_eq!(report.end, LogEnd::Clean, "{ctx}");
            }
            (e, m, got) => panic!("{ctx}: expected {e:?} under {m:?}, got {got:?}"),
        }
    }
}

/// Flips every bit of a small one-segment log (and the 64 bytes after its end).
fn every_bit_of_a_small_log<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| txn_payload(i, 30 + i * 9)).collect();
    let Laid { written, files, places } = lay_out(&disk, dir, opts, &payloads);
    assert_eq!(files.len(), 1);
    let end = places.last().map(|p| p.1 + p.2).unwrap() + 64;
    let mut flips = 0;
    for offset in 0..end {
        for bit in 0..8 {
            let mut bytes = files[0].1.clone();
            bytes[offset] ^= 1 << bit;
            restore(&disk, dir, &[(files[0].0.clone(), bytes)]);
            let expect = expect_flip(&places, 1, 0, offset);
            check_flip(&disk, dir, opts, &written, &expect, &format!("byte {offset} bit {bit}"));
            flips += 1;
        }
    }
    assert_eq!(flips, end * 8);
}

/// Flips a seeded sample of bits in a large multi-segment log.
fn sampled_bits_of_a_large_log<D: Disk + Clone>(disk: D, dir: &Path) {
    let opts = small_opts();
    let payloads: Vec<Vec<u8>> = (0..120).map(|i| txn_payload(i, 30 + (i * 97) % 700)).collect();
    let Laid { written, files, places } = lay_out(&disk, dir, opts, &payloads);
    assert!(files.len() >= 8, "{} segments", files.len());
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..400 {
        let fi = (next() % files.len() as u64) as usize;
        let offset = (next() % files[fi].1.len() as u64) as usize;
        let bit = (next() % 8) as u32;
        let mut kept = files.clone();
        kept[fi].1[offset] ^= 1 << bit;
        restore(&disk, dir, &kept);
        let expect = expect_flip(&places, files.len(), fi, offset);
        check_flip(&disk, dir, opts, &written, &expect, &format!("file {fi} byte {offset} bit {bit}"));
    }
}

on_both_disks!(truncation_at_every_byte, every_bit_of_a_small_log, sampled_bits_of_a_large_log);
