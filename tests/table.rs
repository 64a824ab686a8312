//! The sorted tables against a model: every version a table is built from is read back by `get`
//! at every snapshot, by iterators over every kind of bound in both directions, and by the full
//! decoder; any changed byte is refused; an absent key costs almost no block read.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use waldb::db::table::{
    self, BuildOptions, Compression, Table, TableBuilder, TableEntry, TableLimits, TableWriter, format,
};
use waldb::{Disk, Key, Lsn, OpenMode, StdDisk};

const LIMITS: TableLimits = TableLimits { key_bytes_max: 64, value_bytes_max: 256 };

/// Entries as a table holds them: (key, newest first) → value or deletion.
type Model = BTreeMap<(Vec<u8>, std::cmp::Reverse<u64>), Option<Vec<u8>>>;

fn entries(model: &Model) -> impl Iterator<Item = (&[u8], Lsn, Option<&[u8]>)> {
    model.iter().map(|((k, l), v)| (k.as_slice(), Lsn(l.0), v.as_deref()))
}

fn build_bytes(model: &Model, options: BuildOptions) -> Vec<u8> {
    let mut b = TableBuilder::new(options);
    let mut out = Vec::new();
    for (k, l, v) in entries(model) {
        b.add(k, l, v);
        out.extend(b.take_ready());
    }
    let (rest, meta) = b.finish();
    out.extend(rest);
    assert_eq!(meta.file_bytes, out.len() as u64);
    assert_eq!(meta.entry_count, model.len() as u64);
    out
}

fn write_table(dir: &Path, model: &Model, options: BuildOptions) -> Table<<StdDisk as Disk>::File> {
    let path = dir.join("t.sst");
    let mut w = TableWriter::create(&StdDisk, &path, options).unwrap();
    for (k, l, v) in entries(model) {
        w.add(k, l, v).unwrap();
    }
    let meta = w.finish().unwrap();
    assert_eq!(meta.smallest.as_ref(), model.keys().next().unwrap().0.as_slice());
    assert_eq!(meta.largest.as_ref(), model.keys().next_back().unwrap().0.as_slice());
    let file = StdDisk.open(&path, OpenMode::Read).unwrap();
    Table::open(file, &path, LIMITS).unwrap()
}

fn owned(k: &[u8], l: u64, v: &Option<Vec<u8>>) -> TableEntry {
    TableEntry { key: Key::new(k), lsn: Lsn(l), value: v.as_deref().map(Arc::from) }
}

fn model_strategy() -> impl Strategy<Value = Model> {
    // Keys over a small alphabet share prefixes and repeat; some pass the 16 inline bytes.
    let key = prop::collection::vec(prop::sample::select(&b"abc"[..]), 0..20);
    // Values of random bytes, and values that compress (runs of two letters).
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(prop::sample::select(&b"xy"[..]), 0..120),
    ];
    let version = (1u64..40, prop::option::weighted(0.8, value));
    prop::collection::btree_map(
        key,
        prop::collection::btree_map(version.prop_map(|(l, v)| (l, v)), Just(()), 1..4),
        1..60,
    )
    .prop_map(|m| {
        let mut out = Model::new();
        for (k, versions) in m {
            for ((l, v), ()) in versions {
                out.insert((k.clone(), std::cmp::Reverse(l)), v);
            }
        }
        out
    })
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    let key = prop::collection::vec(prop::sample::select(&b"abcd"[..]), 0..6);
    prop_oneof![Just(Bound::Unbounded), key.clone().prop_map(Bound::Included), key.prop_map(Bound::Excluded)]
}

fn borrow(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_table_reads_back_what_it_was_built_from(
        model in model_strategy(),
        block_bytes in 16u32..600,
        lz4 in any::<bool>(),
        ranges in prop::collection::vec((bound_strategy(), bound_strategy(), prop::collection::vec(any::<bool>(), 0..80)), 1..6),
    ) {
        let compression = if lz4 { Compression::Lz4 } else { Compression::None };
        let options = BuildOptions { block_bytes, bloom_bits_per_key: 10, compression };
        let bytes = build_bytes(&model, options);
        let decoded = table::decode(&bytes, &LIMITS).expect("a built table decodes");
        let all: Vec<_> = decoded.blocks.iter().flat_map(|b| (0..b.len()).map(move |i| b.entry(i))).collect();
        prop_assert_eq!(all.len(), model.len());
        for (e, (k, l, v)) in all.iter().zip(entries(&model)) {
            prop_assert_eq!((e.key, e.lsn, e.value), (k, l, v));
        }

        let tmp = tempfile::tempdir().unwrap();
        let t = write_table(tmp.path(), &model, options);
        prop_assert_eq!(std::fs::read(tmp.path().join("t.sst")).unwrap(), bytes, "the writer writes the builder's bytes");
        // `get` at every snapshot, for every key and some absent ones.
        let mut keys: Vec<Vec<u8>> = model.keys().map(|(k, _)| k.clone()).collect();
        keys.extend([b"d".to_vec(), b"ab\0".to_vec(), b"zzz".to_vec()]);
        for k in &keys {
            for at in 0..42u64 {
                let want = model
                    .range((k.clone(), std::cmp::Reverse(at))..)
                    .next()
                    .filter(|((mk, _), _)| mk == k)
                    .map(|((mk, l), v)| owned(mk, l.0, v));
                prop_assert_eq!(t.get(k, Lsn(at)).unwrap(), want, "key {:?} at {}", k, at);
            }
        }
        // Iterators: forward, backward, and both ends in turn, over every kind of bound.
        for (lo, hi, turns) in &ranges {
            let range = (borrow(lo), borrow(hi));
            let inside = |k: &Vec<u8>| std::ops::RangeBounds::contains(&range, &k.as_slice());
            let want: Vec<TableEntry> =
                model.iter().filter(|((k, _), _)| inside(k)).map(|((k, l), v)| owned(k, l.0, v)).collect();
            let fwd: Vec<_> = t.iter(range).map(Result::unwrap).collect();
            prop_assert_eq!(&fwd, &want);
            let mut bwd: Vec<_> = t.iter(range).rev().map(Result::unwrap).collect();
            bwd.reverse();
            prop_assert_eq!(&bwd, &want);
            let mut it = t.iter(range);
            let mut deque: std::collections::VecDeque<_> = want.iter().cloned().collect();
            for &back in turns.iter().chain(std::iter::repeat_n(&false, want.len() + 1)) {
                let (got, expected) = if back {
                    (it.next_back(), deque.pop_back())
                } else {
                    (it.next(), deque.pop_front())
                };
                prop_assert_eq!(got.map(Result::unwrap), expected);
            }
        }
    }
}

fn sample_model(keys: usize, versions: u64) -> Model {
    let mut m = Model::new();
    for i in 0..keys {
        for l in 0..versions {
            let value = (l % 3 != 2).then(|| format!("value {i} at {l}").into_bytes());
            m.insert((format!("key{i:06}").into_bytes(), std::cmp::Reverse(l * 1000 + i as u64 + 1)), value);
        }
    }
    m
}

#[test]
fn every_changed_byte_of_a_table_is_refused() {
    every_changed_byte_is_refused(Compression::None);
}

/// With LZ4, the checksum covers the compressed bytes: a change is refused before anything is
/// decompressed.
#[test]
fn every_changed_byte_of_a_compressed_table_is_refused() {
    every_changed_byte_is_refused(Compression::Lz4);
}

fn every_changed_byte_is_refused(compression: Compression) {
    let model = sample_model(40, 2);
    let options = BuildOptions { block_bytes: 256, bloom_bits_per_key: 10, compression };
    let bytes = build_bytes(&model, options);
    let raw = build_bytes(&model, BuildOptions { compression: Compression::None, ..options });
    if compression == Compression::Lz4 {
        assert!(bytes.len() * 4 < raw.len() * 3, "compressed {} of {} bytes", bytes.len(), raw.len());
    }
    let decoded = table::decode(&bytes, &LIMITS).unwrap();
    assert!(decoded.blocks.len() > 5, "several blocks: {}", decoded.blocks.len());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.sst");
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            assert!(
                table::decode(&bad, &LIMITS).is_err(),
                "decode accepted a change at byte {at} (^{flip:#x})"
            );
            // The reader refuses it too: at open, or at the latest when it reads the block.
            std::fs::write(&path, &bad).unwrap();
            let file = StdDisk.open(&path, OpenMode::Read).unwrap();
            let refused = match Table::open(file, &path, LIMITS) {
                Err(e) => {
                    assert!(e.is_corrupt() || matches!(e, waldb::Error::UnsupportedVersion { .. }), "{e}");
                    true
                }
                Ok(t) => t.iter((Bound::Unbounded, Bound::Unbounded)).any(|r| r.is_err()),
            };
            assert!(refused, "the reader accepted a change at byte {at} (^{flip:#x})");
        }
    }
    // And a cut anywhere.
    for len in 0..bytes.len() {
        assert!(table::decode(&bytes[..len], &LIMITS).is_err(), "a table cut to {len} bytes");
    }
}

#[test]
fn an_absent_key_costs_almost_no_block_read() {
    let model = sample_model(20_000, 1);
    let tmp = tempfile::tempdir().unwrap();
    let t = write_table(tmp.path(), &model, BuildOptions::default());
    for i in (0..20_000).step_by(97) {
        assert!(t.get(format!("key{i:06}").as_bytes(), Lsn(u64::MAX)).unwrap().is_some());
    }
    let before = t.block_reads();
    let probes = 20_000u64;
    for i in 0..probes {
        assert_eq!(t.get(format!("absent{i:06}").as_bytes(), Lsn(u64::MAX)).unwrap(), None);
    }
    let reads = t.block_reads() - before;
    // About 1 % false positives at 10 bits per key; 2 % leaves room for this key set's luck.
    assert!(reads * 50 <= probes, "{reads} block reads for {probes} absent keys");
}

#[test]
fn a_future_version_is_refused_with_its_number() {
    use waldb::db::table::format::{FOOTER_BYTES, foot};
    let bytes = build_bytes(&sample_model(3, 1), BuildOptions::default());
    let mut newer = bytes.clone();
    let at = newer.len() - FOOTER_BYTES;
    newer[at + foot::VERSION.start..at + foot::VERSION.end].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&newer[at..at + foot::FOOTER_CRC.start]);
    newer[at + foot::FOOTER_CRC.start..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(table::decode(&newer, &LIMITS).unwrap_err(), table::TableError::UnsupportedVersion(2));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.sst");
    std::fs::write(&path, &newer).unwrap();
    let e = Table::open(StdDisk.open(&path, OpenMode::Read).unwrap(), &path, LIMITS).unwrap_err();
    assert!(matches!(e, waldb::Error::UnsupportedVersion { found: 2, supported: 1, .. }), "{e}");
}

#[test]
fn entries_over_the_limits_are_refused() {
    let mut model = Model::new();
    model.insert((vec![b'k'; 65], std::cmp::Reverse(1)), Some(b"v".to_vec()));
    let bytes = build_bytes(&model, BuildOptions::default());
    assert!(table::decode(&bytes, &TableLimits { key_bytes_max: 65, value_bytes_max: 1 }).is_ok());
    assert!(table::decode(&bytes, &TableLimits { key_bytes_max: 64, value_bytes_max: 1 }).is_err());
    assert!(table::decode(&bytes, &TableLimits { key_bytes_max: 65, value_bytes_max: 0 }).is_err());
}

#[test]
#[should_panic(expected = "out of order")]
fn the_builder_refuses_entries_out_of_order() {
    let mut b = TableBuilder::new(BuildOptions::default());
    b.add(b"a", Lsn(1), None);
    b.add(b"a", Lsn(2), None); // versions of a key go newest first
}

/// Blocks that do not shrink by an eighth are stored as they are: random values cost the
/// attempt and nothing on disk or on reads.
#[test]
fn incompressible_blocks_are_stored_as_they_are() {
    let mut model = Model::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2_000u64 {
        let value: Vec<u8> = (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        model.insert((format!("key{i:06}").into_bytes(), std::cmp::Reverse(i + 1)), Some(value));
    }
    let raw = build_bytes(&model, BuildOptions::default());
    let lz4 = build_bytes(&model, BuildOptions { compression: Compression::Lz4, ..BuildOptions::default() });
    assert_eq!(lz4, raw, "no block of random values shrank by an eighth");
}

/// A compressed block's stated length is checked against the bound for its kind, and against
/// what its bytes can decompress to, before anything is allocated for it; a length the bytes
/// do not decompress to exactly is refused.
#[test]
fn a_compressed_block_is_bounded_and_exact() {
    let payload: Vec<u8> = b"abcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(20);
    let mut block = payload.clone();
    let mut scratch = Vec::new();
    let h = format::seal_block_lz4(&mut block, 1, 0, &mut scratch);
    assert_eq!(block[h.len as usize], format::COMPRESSION_LZ4, "it compresses");
    let mut want = payload.clone();
    want.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(&*format::check_block(&block, h, 1 << 20).unwrap(), &want[..]);
    // Under a bound below its length, it is refused.
    assert!(format::check_block(&block, h, want.len() as u64 - 1).is_err());
    // A stated length other than the true one, checksum redone: refused, whether above (even
    // past what the bytes could ever decompress to) or below.
    let stored = &block[..h.len as usize];
    for stated in [want.len() as u32 + 1, want.len() as u32 - 1, u32::MAX, 0] {
        let mut tampered = stated.to_le_bytes().to_vec();
        tampered.extend_from_slice(&stored[4..]);
        let h = format::BlockHandle { offset: 0, len: tampered.len() as u32 };
        tampered.push(format::COMPRESSION_LZ4);
        let crc = crc32c::crc32c(&tampered);
        tampered.extend_from_slice(&crc.to_le_bytes());
        assert!(format::check_block(&tampered, h, u64::from(u32::MAX)).is_err(), "stated {stated}");
    }
}

/// A database with `Compression::Lz4` reads back what it wrote, through flushes and
/// compactions, and writes fewer table bytes for values that compress.
#[test]
fn a_database_with_lz4_tables_reads_back_and_writes_less() {
    let written = |compression: Compression| {
        let dir = tempfile::tempdir().unwrap();
        let options = waldb::DbOptions::default()
            .with_memtable_bytes(Some(64 << 10))
            .with_driver(waldb::wal::Driver::Manual)
            .with_compression(compression);
        let value = |i: u64| format!("{{\"user\": {i}, \"name\": \"user number {i}\", \"active\": true}}");
        {
            let (db, _) = waldb::Db::open_opts(dir.path(), options).unwrap();
            for chunk in 0..40u64 {
                db.transact(|t| {
                    for i in chunk * 100..(chunk + 1) * 100 {
                        t.put(format!("user{i:08}").as_bytes(), value(i).as_bytes())?;
                    }
                    Ok(())
                })
                .unwrap();
            }
            db.checkpoint().unwrap();
            let s = db.stats();
            assert!(s.compactions > 0, "compacted: {s:?}");
            db.close().unwrap();
        }
        let (db, _) = waldb::Db::open_opts(dir.path(), options).unwrap();
        for i in (0..4_000u64).step_by(7) {
            assert_eq!(
                db.get(format!("user{i:08}").as_bytes()).unwrap().as_deref(),
                Some(value(i).as_bytes())
            );
        }
        assert_eq!(db.scan(..).unwrap().len(), 4_000);
        db.stats().table_bytes
    };
    let (raw, lz4) = (written(Compression::None), written(Compression::Lz4));
    assert!(lz4 * 2 < raw, "LZ4 tables {lz4} bytes, raw {raw} bytes");
}

/// `with_sync_every(n)`: the writer syncs the file's data each time another `n` bytes are
/// written, so that no more than about `n` of it (plus one write chunk) is ever unsynced; without
/// it, only `finish` syncs. On `SimDisk`, whose counters see every sync; and a crash just before
/// `finish` that loses every unsynced write keeps every byte the writer synced.
#[cfg(feature = "sim")]
#[test]
fn a_table_writer_syncs_every_n_bytes_when_asked() {
    use waldb::DiskFile;
    use waldb::sim::{CrashWeights, SimConfig, SimDisk};
    let value = vec![0x5a_u8; 200];
    // `n` above the writer's 256 KiB chunks, so that each multiple is crossed by its own write.
    for every in [None, Some(1 << 20)] {
        // A crash loses every unsynced write.
        let crash = CrashWeights { lost: 1, kept: 0, torn: 0 };
        let disk = SimDisk::with_config(3, SimConfig::default().with_crash(crash));
        disk.create_dir_all("/t".as_ref()).unwrap();
        let path = Path::new("/t/t.sst");
        let options = BuildOptions { compression: Compression::None, ..BuildOptions::default() };
        let mut w = TableWriter::create(&disk, path, options).unwrap();
        disk.sync_dir("/t".as_ref()).unwrap();
        if let Some(n) = every {
            w = w.with_sync_every(n);
        }
        let syncs_before = disk.stats().syncs;
        // The bytes written when the writer last synced: what a crash must keep.
        let (mut syncs_seen, mut at_last_sync) = (0, 0);
        for i in 0..20_000u32 {
            w.add(format!("k{i:08}").as_bytes(), Lsn(1), Some(&value)).unwrap();
            let (syncs, written) = (disk.stats().syncs - syncs_before, disk.stats().bytes_written);
            if syncs > syncs_seen {
                (syncs_seen, at_last_sync) = (syncs, written);
            }
            match every {
                None => assert_eq!(syncs, 0, "entry {i}"),
                // One sync per `n` bytes written, at the write that crosses each multiple.
                Some(n) => assert_eq!(syncs, written / n, "entry {i}: {written} bytes written"),
            }
        }
        let synced = disk.stats().bytes_written;
        assert!(synced > 3 << 20, "{synced}");
        disk.crash();
        let len = disk.open(path, OpenMode::Read).map(|f| f.len().unwrap()).unwrap_or(0);
        match every {
            None => assert_eq!(len, 0, "nothing was synced"),
            Some(n) => {
                assert!(at_last_sync >= synced / n * n, "{at_last_sync} {synced}");
                assert_eq!(len, at_last_sync, "what the last sync covered, of {synced} written");
            }
        }
    }
}
