//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/`) through the fuzz harnesses in a
//! plain `cargo test`, so that every seed's properties hold without cargo-fuzz; `wal_recover`
//! runs on `StdDisk` here (on `SimDisk` under the fuzzer). `generate_fuzz_seeds` (ignored) writes
//! the seeds from real logs: `cargo test --test fuzz_seeds -- --ignored`.

mod common;
#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use waldb::wal::{self, RecordKind, RecordMeta};
use waldb::{Lsn, SegmentId, StdDisk};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// Runs `harness` on every committed seed of `target`, naming the seed on failure.
fn replay(target: &str, harness: impl Fn(&[u8])) {
    let seeds = seeds(target);
    assert!(seeds.len() >= 5, "the {target} corpus is committed");
    for (path, data) in seeds {
        eprintln!("{}", path.display());
        harness(&data);
    }
}

#[test]
fn wal_decode_seeds_hold() {
    replay("wal_decode", harness::wal_decode);
}

#[test]
fn table_decode_seeds_hold() {
    replay("table_decode", harness::table_decode);
}

#[test]
fn manifest_decode_seeds_hold() {
    replay("manifest_decode", harness::manifest_decode);
}

#[test]
fn wal_recover_seeds_hold() {
    replay("wal_recover", |data| {
        let tmp = tempfile::tempdir().unwrap();
        harness::wal_recover(StdDisk, &tmp.path().join("wal"), data);
    });
}

fn record(segment: u64, lsn: u64, synced: u64, kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let meta = RecordMeta {
        lsn: Lsn(lsn),
        segment: SegmentId(segment),
        synced_lsn: Lsn(synced),
        kind: kind.to_byte(),
    };
    wal::encode_record(&mut out, meta, payload);
    out
}

/// Writes `bytes` as the committed seed `name` of fuzz target `target`.
fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Writes the seeds of recycled segments (format version 2): a header with the recycled flag, a
/// blank header, and real logs whose later segments are recycled files still holding their
/// earlier bytes. Run by hand: `cargo test --test fuzz_seeds -- --ignored recycling`. (The
/// other seeds were written by format version 1 and are kept: they check that it still reads.)
#[test]
#[ignore]
fn generate_recycling_fuzz_seeds() {
    let params = 0b1000_0000u8;
    let header = wal::SegmentHeader {
        segment: SegmentId(2),
        first_lsn: Lsn(10),
        prev_last_lsn: Lsn(9),
        prev_last_crc: 7,
        segment_bytes: 8192,
        recycled: true,
    };
    let mut h = vec![params];
    h.extend(wal::encode_segment_header(&header));
    put("wal_decode", "recycled_header", &h);
    let mut b = vec![params];
    b.extend(wal::encode_blank_segment_header(SegmentId(3), 8192));
    put("wal_decode", "blank_header", &b);

    // Segments of two pages (a write pads to its page's end, so the second page keeps earlier
    // bytes): 80 records fill segments 1–3, 1 and 2 are retired to be recycled, 20 more
    // records go on in 3 and then 4, the recycled 1.
    let opts = harness::recover_opts(wal::RecoveryMode::TolerateTornTail).with_segment_bytes(8192);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let first: Vec<Vec<u8>> = (0..80).map(|i| common::txn_payload(i, 200)).collect();
    let written = common::write_log(&StdDisk, &dir, opts, &first, 2);
    wal::segment::remove_segments_through(&StdDisk, &dir, written.last().unwrap().0).unwrap();
    let second: Vec<Vec<u8>> = (80..100).map(|i| common::txn_payload(i, 200)).collect();
    common::write_log(&StdDisk, &dir, opts, &second, 2);
    let files: Vec<(u64, Vec<u8>)> = common::snapshot(&StdDisk, &dir)
        .into_iter()
        .map(|(p, b)| {
            let id = wal::segment::parse_segment_file_name(p.file_name().unwrap().to_str().unwrap()).unwrap();
            (id.0, b)
        })
        .collect();
    assert!(files.iter().all(|(id, _)| *id <= 6), "the harness names segments 1 to 6: {:?}", files.len());
    let last = files.last().unwrap();
    assert_eq!(u32::from_le_bytes(last.1[12..16].try_into().unwrap()), wal::format::FLAG_RECYCLED);
    put("wal_recover", "recycled", &harness::join_files(&files));
    // The last write torn: its last record's end back to the file's earlier bytes.
    let mut torn = files.clone();
    let (records, _) = common::read(&StdDisk, &dir, opts, wal::RecoveryMode::Strict).unwrap();
    let end = records.last().map(|r| r.offset as usize + 40 + r.payload.len()).unwrap();
    let n = torn.len();
    torn[n - 1].1[end - 30..end].copy_from_slice(&[0x5A; 30]);
    put("wal_recover", "recycled_torn", &harness::join_files(&torn));
}

/// Writes the seed corpus from real logs. Run by hand when the format changes.
#[test]
#[ignore]
fn generate_fuzz_seeds() {
    // wal_decode: byte 0 = params (segment 1, maximum 4096 → 0b10_000000).
    let params = 0b1000_0000u8;
    let txn = common::txn_payload(1, 60);
    let mut two = vec![params];
    two.extend(record(1, 1, 0, RecordKind::Txn, &txn));
    two.extend(record(1, 2, 1, RecordKind::Checkpoint, &wal::encode_checkpoint(Lsn(1))));
    put("wal_decode", "two_records", &two);
    let mut empty = vec![params];
    empty.extend(record(1, 5, 4, RecordKind::Unknown(0x80), b""));
    put("wal_decode", "empty_payload", &empty);
    let mut torn = vec![params];
    torn.extend(&record(1, 1, 0, RecordKind::Txn, &txn)[..50]);
    put("wal_decode", "torn", &torn);
    let mut stale = vec![params | 1];
    stale.extend(record(1, 1, 0, RecordKind::Txn, &txn));
    put("wal_decode", "stale", &stale);
    let header = wal::SegmentHeader {
        segment: SegmentId(2),
        first_lsn: Lsn(10),
        prev_last_lsn: Lsn(9),
        prev_last_crc: 7,
        segment_bytes: 4096,
        recycled: false,
    };
    let mut h = vec![params];
    h.extend(wal::encode_segment_header(&header));
    put("wal_decode", "segment_header", &h);
    put("wal_decode", "zeros", &[params, 0, 0, 0, 0, 0, 0, 0, 0]);

    // table_decode: tables from the builder (byte 0 = limits 4096/4096, 0b1010), raw; and
    // entry descriptions for the second mode (bit 7).
    let entries: Vec<(Vec<u8>, Lsn, Option<Vec<u8>>)> = (0..30u64)
        .map(|i| {
            (format!("key{:03}", i / 2).into_bytes(), Lsn(100 - i % 2), (i % 5 != 4).then(|| vec![b'v'; 20]))
        })
        .collect();
    // Byte 0's bit 4: LZ4-compressed data blocks ("lz4": its 10 blocks are all compressed).
    use waldb::db::table::Compression::{Lz4, None as Raw};
    for (name, n, block_bytes, compression) in [
        ("one", 1usize, 4096u32, Raw),
        ("small", 4, 4096, Raw),
        ("blocks", 30, 64, Raw),
        ("lz4", 30, 96, Lz4),
    ] {
        let mut b = waldb::db::table::TableBuilder::new(waldb::db::table::BuildOptions {
            block_bytes,
            bloom_bits_per_key: 10,
            compression,
        });
        for (k, l, v) in &entries[..n] {
            b.add(k, *l, v.as_deref());
        }
        let mut seed = vec![if compression == Lz4 { 0b1_1010u8 } else { 0b1010 }];
        seed.extend(b.take_ready());
        seed.extend(b.finish().0);
        put("table_decode", name, &seed);
    }
    let mut described = vec![0x80 | 0b1010u8, 8, 0, 40, 0x10];
    for i in 0..12u8 {
        described.extend([4, b'k', b'e', b'y', b'a' + i / 3, 200 - i % 3, if i % 4 == 3 { 0 } else { 6 }]);
        if i % 4 != 3 {
            described.extend(b"value!");
        }
    }
    put("table_decode", "described", &described);
    described[4] = 0; // no change: the built table must decode
    put("table_decode", "described_unchanged", &described);
    described[0] |= 0x10; // the same entries, built with LZ4-compressed blocks
    put("table_decode", "described_lz4", &described);

    // manifest_decode: manifests as the database writes them (byte 0 = key limit 4096), and
    // with the repair bit.
    let record =
        |id: u64, level: u8, keys: (&str, &str), lsns: (u64, u64)| waldb::db::manifest::TableRecord {
            id,
            level,
            file_bytes: 4096,
            entry_count: 10,
            min_lsn: Lsn(lsns.0),
            max_lsn: Lsn(lsns.1),
            smallest: keys.0.as_bytes().into(),
            largest: keys.1.as_bytes().into(),
        };
    let manifests = [
        ("empty", vec![]),
        ("one", vec![record(1, 0, ("a", "b"), (1, 5))]),
        (
            "levels",
            vec![
                record(7, 0, ("a", "z"), (50, 60)),
                record(8, 0, ("c", "d"), (61, 70)),
                record(2, 1, ("a", "k"), (1, 40)),
                record(3, 1, ("l", "q"), (2, 49)),
                record(5, 4, ("", "zzzz"), (1, 1)),
            ],
        ),
    ];
    for (name, tables) in manifests {
        let m = waldb::db::manifest::Manifest {
            generation: 3,
            log_lsn: Lsn(70),
            next_table_id: 9,
            next_txn_id: waldb::TxnId(1 << 44),
            tables,
        };
        let mut seed = vec![2u8];
        seed.extend(waldb::db::manifest::encode(&m));
        put("manifest_decode", name, &seed);
        if name == "levels" {
            seed[0] |= 0x80;
            put("manifest_decode", "levels_repaired", &seed);
            seed.truncate(seed.len() - 3);
            put("manifest_decode", "truncated_repaired", &seed);
        }
    }

    // wal_recover: real logs written by the writer, trimmed of trailing zeroes.
    let opts = harness::recover_opts(wal::RecoveryMode::TolerateTornTail);
    let write = |n: usize, len: usize| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| common::txn_payload(i, len)).collect();
        common::write_log(&StdDisk, &dir, opts, &payloads, 2);
        let files = common::snapshot(&StdDisk, &dir);
        files
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut b))| {
                while b.last() == Some(&0) {
                    b.pop();
                }
                (i as u64 + 1, b)
            })
            .collect::<Vec<_>>()
    };
    let one = write(4, 80);
    put("wal_recover", "one_segment", &harness::join_files(&one));
    let three = write(40, 200);
    assert!(three.len() >= 3);
    put("wal_recover", "three_segments", &harness::join_files(&three[..3]));
    let mut torn = one.clone();
    let cut = torn[0].1.len() - 30;
    torn[0].1.truncate(cut);
    put("wal_recover", "torn_tail", &harness::join_files(&torn));
    let mut flipped = three[..3].to_vec();
    flipped[0].1[300] ^= 4;
    put("wal_recover", "corrupt_middle", &harness::join_files(&flipped));
    let gap = vec![three[0].clone(), (3, three[2].1.clone())];
    put("wal_recover", "missing_segment", &harness::join_files(&gap));
    put("wal_recover", "prepared_only", &harness::join_files(&[(1, vec![0; 64])]));
}
