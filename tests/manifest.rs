//! The manifest: encoded and decoded exactly, every changed byte and every malformed tree refused,
//! written atomically under a crash at every step, and orphaned tables removed.

use proptest::prelude::*;
use waldb::db::manifest::{self, LEVELS, Manifest, ManifestError, ManifestLimits, TableRecord, hdr};
use waldb::{Lsn, TxnId};

const LIMITS: ManifestLimits = ManifestLimits { key_bytes_max: 64 };

fn record(id: u64, level: u8, keys: (&str, &str), lsns: (u64, u64)) -> TableRecord {
    TableRecord {
        id,
        level,
        file_bytes: 4096 + id,
        entry_count: 10 + id,
        min_lsn: Lsn(lsns.0),
        max_lsn: Lsn(lsns.1),
        smallest: keys.0.as_bytes().into(),
        largest: keys.1.as_bytes().into(),
    }
}

fn sample() -> Manifest {
    Manifest {
        generation: 7,
        log_lsn: Lsn(500),
        next_table_id: 20,
        next_txn_id: TxnId(1 << 44 | 9),
        tables: vec![
            record(11, 0, ("a", "z"), (101, 200)),
            record(12, 0, ("b", "c"), (201, 500)),
            record(3, 1, ("a", "f"), (1, 100)),
            record(4, 1, ("g", "m"), (5, 90)),
            record(9, 3, ("", "zz"), (1, 1)),
        ],
    }
}

/// Valid manifests: level-0 tables in flush order, deeper levels disjoint and sorted.
fn manifest_strategy() -> impl Strategy<Value = Manifest> {
    let key = prop::collection::vec(prop::sample::select(&b"abc"[..]), 0..8);
    let table = (0u8..LEVELS, key.clone(), key, 1u64..50, 1u64..1000);
    (1u64..u64::MAX, prop::collection::vec(table, 0..20), any::<u64>()).prop_map(|(generation, raw, txn)| {
        let mut tables: Vec<TableRecord> = Vec::new();
        let mut lsn = 0u64;
        let mut sorted = raw;
        sorted.sort_by_key(|t| t.0);
        for (i, (level, a, b, span, entries)) in sorted.into_iter().enumerate() {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let prev = tables.last().filter(|p| p.level == level);
            if level > 0 && prev.is_some_and(|p| *p.largest >= *lo) {
                continue; // would overlap its neighbour
            }
            let min = lsn + 1;
            lsn += span;
            tables.push(TableRecord {
                id: i as u64 * 3 + 1,
                level,
                file_bytes: entries * 20,
                entry_count: entries,
                min_lsn: Lsn(if level == 0 { min } else { 1 }),
                max_lsn: Lsn(lsn),
                smallest: lo.into(),
                largest: hi.into(),
            });
        }
        Manifest { generation, log_lsn: Lsn(lsn + 3), next_table_id: 100, next_txn_id: TxnId(txn), tables }
    })
}

proptest! {
    #[test]
    fn a_manifest_decodes_to_what_was_encoded(m in manifest_strategy()) {
        let bytes = manifest::encode(&m);
        prop_assert_eq!(manifest::decode(&bytes, &LIMITS), Ok(m));
    }
}

#[test]
fn every_changed_byte_and_every_cut_is_refused() {
    let bytes = manifest::encode(&sample());
    assert_eq!(manifest::decode(&bytes, &LIMITS), Ok(sample()));
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            assert!(manifest::decode(&bad, &LIMITS).is_err(), "a change at byte {at} (^{flip:#x})");
        }
    }
    for len in 0..bytes.len() {
        assert!(manifest::decode(&bytes[..len], &LIMITS).is_err(), "cut to {len} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(manifest::decode(&longer, &LIMITS).is_err(), "a byte past the records");
}

#[test]
fn a_malformed_tree_is_refused_with_its_reason() {
    type Change = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Change)> = vec![
        ("level out of range", Box::new(|m| m.tables[4].level = LEVELS)),
        ("table id not below the next id", Box::new(|m| m.tables[0].id = 20)),
        ("past the log LSN", Box::new(|m| m.tables[1].max_lsn = Lsn(501))),
        ("upside down", Box::new(|m| m.tables[3].smallest = b"n".as_slice().into())),
        ("no entries", Box::new(|m| m.tables[2].entry_count = 0)),
        ("level order", Box::new(|m| m.tables.swap(1, 2))),
        ("flush order", Box::new(|m| m.tables[1].min_lsn = Lsn(200))),
        ("overlap", Box::new(|m| m.tables[3].smallest = b"f".as_slice().into())),
        ("named twice", Box::new(|m| m.tables[4].id = 11)),
        ("generation 0", Box::new(|m| m.generation = 0)),
        ("smallest key longer than the limit", Box::new(|m| m.tables[4].smallest = vec![b'a'; 65].into())),
    ];
    for (reason, change) in cases {
        let mut m = sample();
        change(&mut m);
        match manifest::decode(&manifest::encode(&m), &LIMITS) {
            Err(ManifestError::Corrupt { reason: r, .. }) => {
                assert!(r.contains(reason), "{reason}: refused for {r:?}")
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
}

#[test]
fn a_future_version_is_refused_with_its_number() {
    let mut bytes = manifest::encode(&sample());
    bytes[hdr::VERSION].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..hdr::HEADER_CRC.start]);
    bytes[hdr::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(manifest::decode(&bytes, &LIMITS), Err(ManifestError::UnsupportedVersion(2)));
}

#[test]
fn table_names_round_trip_and_nothing_else_is_a_table() {
    let path = manifest::table_path("/db".as_ref(), 42);
    assert_eq!(path, std::path::Path::new("/db/tables/00000000000000000042.sst"));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(manifest::table_id(name), Some(42));
    for other in [
        "42.sst",
        "00000000000000000042.sst.tmp",
        "0000000000000000004x.sst",
        "MANIFEST",
        "99999999999999999999.sst",
    ] {
        assert_eq!(manifest::table_id(other), None, "{other}");
    }
}

#[cfg(feature = "sim")]
mod on_sim_disk {
    use super::*;
    use std::path::Path;
    use waldb::sim::{FaultOp, SimDisk};
    use waldb::{Disk, DiskFile, OpenMode};

    /// A crash at every step of a manifest's rewrite leaves the old manifest or the new one,
    /// whole: the rewrite's n-th write, sync or directory sync fails, then the disk crashes, for
    /// every n until the rewrite completes (and then the new one is in force).
    #[test]
    fn a_crash_at_every_step_of_a_rewrite_leaves_the_old_or_the_new() {
        let dir = Path::new("/db");
        let old = sample();
        let mut new = sample();
        new.generation += 1;
        new.log_lsn = Lsn(900);
        new.tables.push(record(19, 6, ("x", "y"), (600, 900)));
        let mut outcomes = [0u32; 2];
        for op in [FaultOp::Write, FaultOp::Sync, FaultOp::SyncDir] {
            for n in 1.. {
                let disk = SimDisk::new(n * 10 + op.index() as u64);
                waldb::wal::segment::create_dir_durable(&disk, dir).unwrap();
                manifest::write(&disk, dir, &old).unwrap();
                let errors = disk.stats().io_errors[op.index()];
                disk.fail_nth(op, n);
                let result = manifest::write(&disk, dir, &new);
                let hit = disk.stats().io_errors[op.index()] > errors;
                assert_eq!(result.is_err(), hit, "{op:?} #{n}: {result:?}");
                disk.clear_scheduled();
                disk.crash();
                let found = manifest::read(&disk, dir, &LIMITS).unwrap().expect("a manifest");
                assert!(found == old || found == new, "{op:?} #{n}: {found:?}");
                outcomes[usize::from(found == new)] += 1;
                if !hit {
                    assert_eq!(found, new, "a completed rewrite survives the crash");
                    break;
                }
                assert!(n < 100, "the rewrite never finished");
            }
        }
        assert!(outcomes[0] >= 3 && outcomes[1] >= 3, "both outcomes seen: {outcomes:?}");
    }

    #[test]
    fn orphans_are_removed_and_named_tables_kept() {
        let dir = Path::new("/db");
        let disk = SimDisk::new(3);
        waldb::wal::segment::create_dir_durable(&disk, &dir.join("tables")).unwrap();
        let m = sample();
        for id in [3u64, 4, 5, 11, 12, 13, 9] {
            let f = disk.open(&manifest::table_path(dir, id), OpenMode::CreateNew).unwrap();
            f.write_all_at(b"table", 0).unwrap();
        }
        disk.open(&dir.join("tables/notes.txt"), OpenMode::CreateNew).unwrap();
        disk.open(&dir.join("MANIFEST.tmp"), OpenMode::CreateNew).unwrap();
        assert_eq!(manifest::remove_orphans(&disk, dir, Some(&m)).unwrap(), 2, "tables 5 and 13");
        let mut left = disk.list_dir(&dir.join("tables")).unwrap();
        left.sort();
        let named: Vec<String> = [3u64, 4, 9, 11, 12]
            .iter()
            .map(|&id| manifest::table_path(dir, id).file_name().unwrap().to_str().unwrap().to_string())
            .chain(["notes.txt".to_string()])
            .collect();
        assert_eq!(left, named);
        assert!(!disk.list_dir(dir).unwrap().contains(&"MANIFEST.tmp".to_string()));
        // Without a manifest, every table is an orphan; the removals are durable.
        assert_eq!(manifest::remove_orphans(&disk, dir, None).unwrap(), 5);
        disk.crash();
        assert_eq!(disk.list_dir(&dir.join("tables")).unwrap(), ["notes.txt"]);
    }
}
