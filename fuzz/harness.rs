//! The fuzz harnesses, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and by the plain
//! `cargo test` that replays the committed seeds (`tests/fuzz_seeds.rs`), which include this file
//! by path. Each harness asserts properties, not only the absence of panics.

#![allow(dead_code)]

use std::path::Path;
use waldb::wal::decode::HeaderDecoded;
use waldb::wal::{
    self, DecodeLimits, Decoded, LogEnd, LogWriter, RecordKind, RecordMeta, RecoveryMode, WalOptions,
};
use waldb::{Disk, DiskFile, Error, Lsn, OpenMode, SegmentId};

/// `wal_decode`: the record and header decoders on arbitrary bytes.
///
/// Input: byte 0 picks the segment number and the payload maximum; the rest is the buffer.
/// Properties: a decoded record re-encodes to exactly the bytes it was decoded from and lies
/// within the buffer and the maximum; "incomplete" asks for more than the buffer holds; a valid
/// header re-encodes to its bytes; a transaction payload that decodes re-encodes identically.
pub fn wal_decode(data: &[u8]) {
    let Some((&params, buf)) = data.split_first() else { return };
    let limits = DecodeLimits {
        segment: SegmentId(1 + u64::from(params & 3)),
        payload_bytes_max: [0u32, 16, 4096, u32::MAX][usize::from(params >> 6)],
    };
    let mut at = 0usize;
    // Walk the buffer as a reader would, a bounded number of records.
    for _ in 0..64 {
        let rest = &buf[at..];
        match wal::decode_record(rest, &limits) {
            Decoded::Record(r) => {
                let len = r.encoded_len();
                assert!(len <= rest.len());
                assert!(r.payload.len() as u64 <= u64::from(limits.payload_bytes_max));
                let mut again = Vec::new();
                let meta = RecordMeta {
                    lsn: r.lsn,
                    segment: limits.segment,
                    synced_lsn: r.synced_lsn,
                    kind: r.kind,
                };
                let crc = wal::encode_record(&mut again, meta, r.payload);
                assert_eq!(crc, r.crc);
                assert_eq!(again, rest[..len], "a decoded record re-encodes to its bytes");
                if let Ok(txn) = wal::decode_txn(r.payload) {
                    let ops: Vec<wal::Op<'_>> = txn.ops().collect();
                    assert_eq!(ops.len(), txn.op_count() as usize);
                    let mut payload = Vec::new();
                    wal::encode_txn(&mut payload, txn.txn_id, &ops);
                    assert_eq!(payload, r.payload, "a decoded transaction re-encodes to its bytes");
                }
                at += len;
            }
            Decoded::Incomplete { needed } => {
                assert!(needed > rest.len());
                break;
            }
            Decoded::Stale { segment, len } => {
                assert_ne!(segment, limits.segment);
                assert!(len <= rest.len());
                break;
            }
            Decoded::Zero | Decoded::Corrupt(_) => break,
        }
    }
    match wal::decode_segment_header(buf) {
        HeaderDecoded::Valid(h) => {
            let mut again = wal::encode_segment_header(&h);
            if buf[8..12] == 1u32.to_le_bytes() {
                // Version 1 is version 2 without flags: the same fields under the old number.
                again[8..12].copy_from_slice(&1u32.to_le_bytes());
                let crc = crc32c::crc32c(&again[..60]);
                again[60..64].copy_from_slice(&crc.to_le_bytes());
            }
            assert_eq!(again[..], buf[..64], "a valid header re-encodes to its bytes");
        }
        HeaderDecoded::Blank { segment, segment_bytes } => {
            let again = wal::encode_blank_segment_header(segment, segment_bytes);
            assert_eq!(again[..], buf[..64], "a blank header re-encodes to its bytes");
        }
        _ => {}
    }
}

/// Splits a `wal_recover` input into segment files: `(segment number, bytes)`.
///
/// Input: byte 0 — low two bits: number of files minus one; then per file: one byte for its
/// segment number (1 + b % 6, so gaps, duplicates and swaps occur), two bytes of length
/// (little-endian, capped by what remains), and the bytes.
pub fn split_files(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let Some((&head, mut rest)) = data.split_first() else { return Vec::new() };
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    for _ in 0..=(head & 3) {
        if rest.len() < 3 {
            break;
        }
        let id = 1 + u64::from(rest[0] % 6);
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if let Some(existing) = files.iter_mut().find(|f| f.0 == id) {
            existing.1 = bytes;
        } else {
            files.push((id, bytes));
        }
    }
    files
}

/// The inverse of [`split_files`], for writing seeds.
pub fn join_files(files: &[(u64, Vec<u8>)]) -> Vec<u8> {
    assert!(!files.is_empty() && files.len() <= 4);
    let mut out = vec![(files.len() - 1) as u8];
    for (id, bytes) in files {
        assert!((1..=6).contains(id));
        out.push((*id - 1) as u8);
        out.extend_from_slice(&u16::try_from(bytes.len()).expect("seed file ≤ 64 KiB").to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The options the harness reads and writes with.
pub fn recover_opts(mode: RecoveryMode) -> WalOptions {
    WalOptions::default()
        .with_segment_bytes(4096)
        .with_record_payload_bytes_max(Some(1024))
        .with_recovery(mode)
}

/// `wal_recover`: the recovery reader, then a writer, over a directory built from the input.
///
/// Properties, besides never panicking:
/// - `Strict` succeeds ⇒ `TolerateTornTail` and `PointInTime` succeed with the same records and
///   a clean end; `TolerateTornTail` succeeds ⇒ `PointInTime` returns the same records and end;
/// - records have consecutive LSNs within a segment, and rising LSNs across segments;
/// - `PointInTime` fails only on I/O, an oversized file, or an unsupported version;
/// - after any successful recovery, a writer opened in that mode continues the log: one more
///   record appended and synced reads back under `Strict` as the recovered prefix plus that
///   record.
pub fn wal_recover<D: Disk + Clone>(disk: D, dir: &Path, data: &[u8]) {
    let files = split_files(data);
    waldb::wal::segment::create_dir_durable(&disk, dir).expect("create dir");
    for (id, bytes) in &files {
        let path = dir.join(wal::segment::segment_file_name(SegmentId(*id)));
        let f = disk.open(&path, OpenMode::CreateNew).expect("create");
        f.write_all_at(bytes, 0).expect("write");
    }
    let read = |mode: RecoveryMode| {
        let opts = recover_opts(mode).read_options().with_mode(mode);
        wal::read_log(disk.clone(), dir, opts)
    };
    let strict = read(RecoveryMode::Strict);
    let tolerate = read(RecoveryMode::TolerateTornTail);
    let pit = read(RecoveryMode::PointInTime);
    let same = |a: &wal::OwnedRecord, b: &wal::OwnedRecord| a == b;
    if let Ok((records, report)) = &strict {
        assert_eq!(report.end, LogEnd::Clean);
        let (t, tr) = tolerate.as_ref().expect("Strict succeeded, so TolerateTornTail must");
        assert!(t.len() == records.len() && t.iter().zip(records).all(|(a, b)| same(a, b)));
        assert_eq!(tr.end, LogEnd::Clean);
    }
    if let Ok((records, report)) = &tolerate {
        let (p, pr) = pit.as_ref().expect("TolerateTornTail succeeded, so PointInTime must");
        assert!(p.len() == records.len() && p.iter().zip(records).all(|(a, b)| same(a, b)));
        assert_eq!(pr.end, report.end);
        assert!(!matches!(report.end, LogEnd::Stopped(_)));
    }
    match &pit {
        Ok((records, report)) => {
            for pair in records.windows(2) {
                assert!(pair[1].lsn > pair[0].lsn, "LSNs rise");
                if pair[1].segment == pair[0].segment {
                    assert_eq!(pair[1].lsn, pair[0].lsn.next(), "consecutive within a segment");
                }
            }
            assert!(report.max_lsn_seen >= records.last().map_or(Lsn::ZERO, |r| r.lsn));
        }
        Err(Error::Io { .. } | Error::UnsupportedVersion { .. }) => {}
        Err(Error::Corrupt { reason, .. }) if reason.contains("larger than the limit") => {}
        Err(e) => panic!("PointInTime failed with {e:?}"),
    }
    for (mode, result) in [(RecoveryMode::TolerateTornTail, &tolerate), (RecoveryMode::PointInTime, &pit)] {
        let Ok((records, _)) = result else { continue };
        let (mut writer, report) =
            LogWriter::open(disk.clone(), dir, recover_opts(mode)).expect("reopen for writing");
        assert_eq!(report.records, records.len() as u64);
        let lsn = writer.append(RecordKind::Unknown(0x80), b"appended after recovery").expect("append");
        assert_eq!(writer.sync().expect("sync"), lsn);
        drop(writer);
        let (after, end) = match read(RecoveryMode::Strict) {
            Ok((after, report)) => (after, report.end),
            Err(e) => panic!("{mode:?}: the log does not read strictly after a writer continued it: {e}"),
        };
        assert_eq!(end, LogEnd::Clean);
        assert_eq!(after.len(), records.len() + 1, "{mode:?}: prefix plus the new record");
        assert!(after.iter().zip(records).all(|(a, b)| same(a, b)), "{mode:?}: the prefix is intact");
        let last = after.last().expect("the new record");
        assert_eq!((last.lsn, last.payload.as_slice()), (lsn, &b"appended after recovery"[..]));
        // Only the first successful mode continues the log; the second would see the new record.
        break;
    }
}

/// A table entry, owned: key, LSN, value or deletion.
pub type OwnedEntry = (Vec<u8>, Lsn, Option<Vec<u8>>);

/// `table_decode`: the sorted table's decoders on arbitrary bytes, and on tables the builder made.
///
/// Input: byte 0 picks the limits (bits 0–1: key maximum, bits 2–3: value maximum) and the mode
/// (bit 7).
/// - Bit 7 clear: the rest is a table file. Properties: a decoded table's entries rise strictly
///   across blocks and are within the limits, their count is the footer's, and built again (with
///   other block sizes) they decode to the same entries.
/// - Bit 7 set: the rest describes entries (see [`table_entries`]) and a change; the builder
///   makes a table of them, which must decode to exactly those entries, and the table with one
///   byte changed must be refused.
pub fn table_decode(data: &[u8]) {
    use waldb::db::table::{self, BuildOptions, Compression, TableBuilder, TableLimits, format};
    let Some((&params, rest)) = data.split_first() else { return };
    // Bit 4: tables are built with LZ4-compressed data blocks.
    let compression = if params & 0x10 == 0 { Compression::None } else { Compression::Lz4 };
    let maxima = [0u32, 8, 4096, u32::MAX];
    let limits = TableLimits {
        key_bytes_max: maxima[usize::from(params & 3)],
        value_bytes_max: maxima[usize::from((params >> 2) & 3)],
    };
    let build = |entries: &[OwnedEntry], block_bytes: u32| {
        let mut b = TableBuilder::new(BuildOptions { block_bytes, bloom_bits_per_key: 10, compression });
        let mut out = Vec::new();
        for (k, l, v) in entries {
            b.add(k, *l, v.as_deref());
            out.extend(b.take_ready());
        }
        let (tail, meta) = b.finish();
        out.extend(tail);
        assert_eq!(meta.file_bytes, out.len() as u64);
        out
    };
    let entries_of = |t: &table::DecodedTable<'_>| -> Vec<OwnedEntry> {
        t.blocks
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| b.entry(i)))
            .map(|e| (e.key.to_vec(), e.lsn, e.value.map(<[u8]>::to_vec)))
            .collect()
    };
    if params & 0x80 == 0 {
        let Ok(t) = table::decode(rest, &limits) else { return };
        let entries = entries_of(&t);
        assert_eq!(entries.len() as u64, t.footer.entry_count);
        for w in entries.windows(2) {
            assert!(format::compare_entries((&w[0].0, w[0].1), (&w[1].0, w[1].1)).is_lt(), "entries rise");
        }
        for (k, _, v) in &entries {
            assert!(k.len() as u64 <= u64::from(limits.key_bytes_max));
            assert!(v.as_ref().is_none_or(|v| v.len() as u64 <= u64::from(limits.value_bytes_max)));
        }
        for block_bytes in [1, 4096] {
            let again = build(&entries, block_bytes);
            let t2 = table::decode(&again, &limits).expect("a rebuilt table decodes");
            assert_eq!(entries_of(&t2), entries, "rebuilt with {block_bytes}-byte blocks");
        }
        return;
    }
    let (entries, block_bytes, change) = table_entries(rest);
    if entries.is_empty() {
        return;
    }
    let wide = TableLimits { key_bytes_max: u32::MAX, value_bytes_max: u32::MAX };
    let bytes = build(&entries, block_bytes);
    let t = table::decode(&bytes, &wide).expect("a built table decodes");
    assert_eq!(entries_of(&t), entries, "a built table holds what it was built from");
    let within = entries.iter().all(|(k, _, v)| {
        k.len() as u64 <= u64::from(limits.key_bytes_max)
            && v.as_ref().is_none_or(|v| v.len() as u64 <= u64::from(limits.value_bytes_max))
    });
    assert_eq!(table::decode(&bytes, &limits).is_ok(), within, "the limits decide, and only they");
    if let Some((at, xor)) = change {
        let mut bad = bytes.clone();
        let at = at % bad.len();
        bad[at] ^= xor;
        assert!(table::decode(&bad, &wide).is_err(), "a change at byte {at} (^{xor:#x}) was accepted");
    }
}

/// Entries for [`table_decode`]'s second mode, from bytes: a block size, a change (byte offset
/// and a non-zero mask), then per entry a key length (0–31), the key, an LSN byte, a tag byte
/// (0: deletion, otherwise a value of `tag % 32` bytes) and the value. Sorted and without
/// repeated (key, LSN) pairs, as a table holds them.
pub fn table_entries(data: &[u8]) -> (Vec<OwnedEntry>, u32, Option<(usize, u8)>) {
    let mut it = data.iter().copied();
    let block_bytes = 1 + u32::from(it.next().unwrap_or(0)) * 4;
    let change = match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(x)) if x != 0 => Some((usize::from(a) << 8 | usize::from(b), x)),
        _ => None,
    };
    let mut map = std::collections::BTreeMap::new();
    while let Some(key_len) = it.next() {
        let key: Vec<u8> = it.by_ref().take(usize::from(key_len % 32)).collect();
        let (Some(lsn), Some(tag)) = (it.next(), it.next()) else { break };
        let value = (tag != 0).then(|| it.by_ref().take(usize::from(tag % 32)).collect::<Vec<u8>>());
        map.insert((key, std::cmp::Reverse(u64::from(lsn))), value);
    }
    let entries = map.into_iter().map(|((k, l), v)| (k, Lsn(l.0), v)).collect();
    (entries, block_bytes, change)
}

/// `manifest_decode`: the manifest decoder on arbitrary bytes.
///
/// Input: byte 0 picks the key limit (bits 0–1) and, with bit 7, repairs the body size and the
/// checksums of the rest before decoding, so that the fuzzer also explores the records behind
/// them. The rest is the file.
/// Properties: a decoded manifest re-encodes to exactly its bytes, and describes a well-formed
/// tree: levels in range, ids unique and below the next id, ranges ordered and within the log
/// LSN, level 0 in flush order, deeper levels disjoint and sorted.
pub fn manifest_decode(data: &[u8]) {
    use waldb::db::manifest::{self, LEVELS, MANIFEST_HEADER_BYTES, ManifestLimits, hdr};
    let Some((&params, file)) = data.split_first() else { return };
    let limits = ManifestLimits { key_bytes_max: [0u32, 8, 4096, u32::MAX][usize::from(params & 3)] };
    let mut file = file.to_vec();
    if params & 0x80 != 0 && file.len() >= MANIFEST_HEADER_BYTES {
        let Ok(body_len) = u32::try_from(file.len() - MANIFEST_HEADER_BYTES) else { return };
        let body_crc = crc32c::crc32c(&file[MANIFEST_HEADER_BYTES..]);
        file[hdr::BODY_BYTES].copy_from_slice(&body_len.to_le_bytes());
        file[hdr::BODY_CRC].copy_from_slice(&body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&file[..hdr::HEADER_CRC.start]);
        file[hdr::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(m) = manifest::decode(&file, &limits) else { return };
    assert_eq!(manifest::encode(&m), file, "a decoded manifest re-encodes to its bytes");
    assert!(m.generation > 0);
    let mut ids = std::collections::BTreeSet::new();
    for (i, t) in m.tables.iter().enumerate() {
        assert!(t.level < LEVELS && t.id < m.next_table_id && ids.insert(t.id));
        assert!(t.smallest <= t.largest && t.min_lsn <= t.max_lsn && t.max_lsn <= m.log_lsn);
        assert!(t.entry_count > 0);
        assert!(t.smallest.len() as u64 <= u64::from(limits.key_bytes_max));
        assert!(t.largest.len() as u64 <= u64::from(limits.key_bytes_max));
        if let Some(p) = i.checked_sub(1).map(|j| &m.tables[j]) {
            assert!(p.level <= t.level);
            if p.level == t.level && t.level == 0 {
                assert!(p.max_lsn < t.min_lsn, "level 0 in flush order");
            }
            if p.level == t.level && t.level > 0 {
                assert!(p.largest < t.smallest, "deeper levels disjoint and sorted");
            }
        }
    }
}
