//! Proves that `docs/FORMAT.md` describes the format the code writes: the offsets and sizes in its
//! header tables equal the constants of `src/wal/format.rs`, and a header and a record encoded by
//! the code put each field where the document says.

use std::ops::Range;
use waldb::wal::format::{self, rec, seg};
use waldb::wal::{RecordMeta, SegmentHeader, encode_record, encode_segment_header};
use waldb::{Lsn, SegmentId};

/// The rows `| offset | size | field | … |` of the table under `heading`.
fn table(doc: &str, heading: &str) -> Vec<(usize, usize, String)> {
    let start = doc.find(heading).unwrap_or_else(|| panic!("FORMAT.md lacks {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let offset = cells.get(1)?.parse().ok()?;
            let size = cells.get(2)?.parse().unwrap_or(0); // "len" for the payload
            Some((offset, size, cells.get(3)?.to_string()))
        })
        .collect()
}

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).unwrap()
}

fn check(rows: &[(usize, usize, String)], expected: &[(&str, Range<usize>)]) {
    for (name, range) in expected {
        let row = rows.iter().find(|r| r.2 == *name).unwrap_or_else(|| panic!("no row for {name}"));
        assert_eq!((row.0, row.1), (range.start, range.len()), "{name}: FORMAT.md says {row:?}");
    }
    assert_eq!(rows.len(), expected.len(), "every field is documented, and only those: {rows:?}");
}

#[test]
fn segment_header_table_matches_the_code() {
    let rows = table(&doc(), "## Segment header (64 bytes");
    check(
        &rows,
        &[
            ("magic", seg::MAGIC),
            ("format_version", seg::VERSION),
            ("flags", seg::FLAGS),
            ("segment", seg::SEGMENT),
            ("first_lsn", seg::FIRST_LSN),
            ("prev_last_lsn", seg::PREV_LAST_LSN),
            ("segment_bytes", seg::SEGMENT_BYTES),
            ("prev_last_crc", seg::PREV_LAST_CRC),
            ("reserved", seg::RESERVED),
            ("header_crc", seg::HEADER_CRC),
        ],
    );
    assert_eq!(format::SEGMENT_HEADER_BYTES, 64);
    let h = SegmentHeader {
        segment: SegmentId(0x0102),
        first_lsn: Lsn(0x0304),
        prev_last_lsn: Lsn(0x0303),
        prev_last_crc: 0x0506,
        segment_bytes: 0x1_0000,
        recycled: false,
    };
    let b = encode_segment_header(&h);
    assert_eq!(&b[0..8], b"WALDBSEG");
    assert_eq!(b[8..12], 2u32.to_le_bytes());
    assert_eq!(b[16..24], 0x0102u64.to_le_bytes());
    assert_eq!(b[24..32], 0x0304u64.to_le_bytes());
    assert_eq!(b[32..40], 0x0303u64.to_le_bytes());
    assert_eq!(b[40..48], 0x1_0000u64.to_le_bytes());
    assert_eq!(b[48..52], 0x0506u32.to_le_bytes());
}

#[test]
fn record_table_matches_the_code() {
    let rows = table(&doc(), "## Record (40-byte header");
    check(
        &rows,
        &[
            ("crc", rec::CRC),
            ("len", rec::LEN),
            ("lsn", rec::LSN),
            ("segment", rec::SEGMENT),
            ("synced_lsn", rec::SYNCED_LSN),
            ("kind", rec::KIND..rec::KIND + 1),
            ("flags", rec::FLAGS..rec::FLAGS + 1),
            ("reserved", rec::RESERVED),
            ("payload", format::RECORD_HEADER_BYTES..format::RECORD_HEADER_BYTES),
        ],
    );
    let mut b = Vec::new();
    let meta = RecordMeta { lsn: Lsn(0x0A0B), segment: SegmentId(0x0C), synced_lsn: Lsn(0x0A0A), kind: 2 };
    encode_record(&mut b, meta, b"xyz");
    assert_eq!(b[4..8], 3u32.to_le_bytes());
    assert_eq!(b[8..16], 0x0A0Bu64.to_le_bytes());
    assert_eq!(b[16..24], 0x0Cu64.to_le_bytes());
    assert_eq!(b[24..32], 0x0A0Au64.to_le_bytes());
    assert_eq!(b[32], 2);
    assert_eq!(&b[40..], b"xyz");
}

#[test]
fn table_footer_matches_the_code() {
    use waldb::db::table::format::{self as t, BlockHandle, Footer, foot};
    let rows = table(&doc(), "### Table footer (72 bytes");
    check(
        &rows,
        &[
            ("magic", foot::MAGIC),
            ("version", foot::VERSION),
            ("flags", foot::FLAGS),
            ("index_offset", foot::INDEX_OFFSET),
            ("index_len", foot::INDEX_LEN),
            ("filter_len", foot::FILTER_LEN),
            ("filter_offset", foot::FILTER_OFFSET),
            ("entry_count", foot::ENTRY_COUNT),
            ("min_lsn", foot::MIN_LSN),
            ("max_lsn", foot::MAX_LSN),
            ("reserved", foot::RESERVED),
            ("footer_crc", foot::FOOTER_CRC),
        ],
    );
    assert_eq!(t::FOOTER_BYTES, 72);
    let f = Footer {
        index: BlockHandle { offset: 0x0102, len: 0x03 },
        filter: BlockHandle { offset: 0x0405, len: 0x06 },
        entry_count: 0x0708,
        min_lsn: Lsn(0x090A),
        max_lsn: Lsn(0x0B0C),
    };
    let b = t::encode_footer(&f);
    assert_eq!(&b[0..8], b"WALDBTBL");
    assert_eq!(b[8..12], 1u32.to_le_bytes());
    assert_eq!(b[16..24], 0x0102u64.to_le_bytes());
    assert_eq!(b[24..28], 0x03u32.to_le_bytes());
    assert_eq!(b[28..32], 0x06u32.to_le_bytes());
    assert_eq!(b[32..40], 0x0405u64.to_le_bytes());
    assert_eq!(b[40..48], 0x0708u64.to_le_bytes());
    assert_eq!(b[48..56], 0x090Au64.to_le_bytes());
    assert_eq!(b[56..64], 0x0B0Cu64.to_le_bytes());
    assert_eq!(b[68..72], crc32c::crc32c(&b[..68]).to_le_bytes());
}

/// The entry encoding of a data block, byte by byte, as the document describes it.
#[test]
fn table_entries_are_encoded_as_documented() {
    use waldb::db::table::format::encode_entry;
    let mut b = Vec::new();
    encode_entry(&mut b, b"key", Lsn(300), Some(b"v"));
    // key_len 3, "key", lsn 300 = 0xAC 0x02, tag 2 (one byte plus one), "v".
    assert_eq!(b, [3, b'k', b'e', b'y', 0xAC, 0x02, 2, b'v']);
    b.clear();
    encode_entry(&mut b, b"", Lsn(1), None);
    assert_eq!(b, [0, 1, 0], "an empty key, LSN 1, a deletion");
}

/// The compression bytes the document lists are the code's, and an LZ4 block is laid out as
/// it says: `u32 len`, then the LZ4 block, then the compression byte and the checksum.
#[test]
fn block_compression_is_as_documented() {
    use waldb::db::table::format::{self, COMPRESSION_LZ4, COMPRESSION_NONE};
    let doc = doc();
    assert!(doc.contains(&format!("- {COMPRESSION_NONE}: it is the payload")), "FORMAT.md: compression 0");
    assert!(doc.contains(&format!("- {COMPRESSION_LZ4} (LZ4): `u32 len`")), "FORMAT.md: compression 1");
    let payload = b"waldb waldb waldb waldb waldb waldb waldb waldb".to_vec();
    let mut block = payload.clone();
    let h = format::seal_block_lz4(&mut block, 1, 0, &mut Vec::new());
    let len = payload.len() + 4; // the entry count follows the entries
    assert_eq!(block[..4], (len as u32).to_le_bytes(), "u32 len first");
    let mut whole = payload;
    whole.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(lz4_flex::block::decompress(&block[4..h.len as usize], len).unwrap(), whole);
    assert_eq!(block[h.len as usize], COMPRESSION_LZ4);
    let crc = crc32c::crc32c(&block[..=h.len as usize]);
    assert_eq!(
        block[h.len as usize + 1..],
        crc.to_le_bytes(),
        "the checksum of the stored bytes and the byte"
    );
}

#[test]
fn manifest_tables_match_the_code() {
    use waldb::TxnId;
    use waldb::db::manifest::{self, Manifest, TableRecord, hdr};
    let rows = table(&doc(), "### Manifest header (64 bytes");
    check(
        &rows,
        &[
            ("magic", hdr::MAGIC),
            ("version", hdr::VERSION),
            ("flags", hdr::FLAGS),
            ("generation", hdr::GENERATION),
            ("log_lsn", hdr::LOG_LSN),
            ("next_table_id", hdr::NEXT_TABLE_ID),
            ("next_txn_id", hdr::NEXT_TXN_ID),
            ("table_count", hdr::TABLE_COUNT),
            ("body_bytes", hdr::BODY_BYTES),
            ("body_crc", hdr::BODY_CRC),
            ("header_crc", hdr::HEADER_CRC),
        ],
    );
    assert_eq!(manifest::MANIFEST_HEADER_BYTES, 64);
    let m = Manifest {
        generation: 0x01,
        log_lsn: Lsn(0x0203),
        next_table_id: 0x0405,
        next_txn_id: TxnId(0x0607),
        tables: vec![TableRecord {
            id: 0x0809,
            level: 2,
            file_bytes: 0x0A0B,
            entry_count: 0x0C0D,
            min_lsn: Lsn(0x0E),
            max_lsn: Lsn(0x0F),
            smallest: b"ab".as_slice().into(),
            largest: b"xyz".as_slice().into(),
        }],
    };
    let b = manifest::encode(&m);
    assert_eq!(&b[0..8], b"WALDBMAN");
    assert_eq!(b[16..24], 0x01u64.to_le_bytes());
    assert_eq!(b[24..32], 0x0203u64.to_le_bytes());
    assert_eq!(b[32..40], 0x0405u64.to_le_bytes());
    assert_eq!(b[40..48], 0x0607u64.to_le_bytes());
    assert_eq!(b[48..52], 1u32.to_le_bytes());
    assert_eq!(b[52..56], ((b.len() - 64) as u32).to_le_bytes());
    let rows = table(&doc(), "### Table record (49 bytes");
    let r = &b[64..];
    assert_eq!(manifest::TABLE_RECORD_FIXED_BYTES + 2 + 3, r.len());
    let field = |name: &str| {
        let row = rows.iter().find(|row| row.2 == name).unwrap_or_else(|| panic!("no row for {name}"));
        &r[row.0..row.0 + row.1]
    };
    assert_eq!(field("id"), 0x0809u64.to_le_bytes());
    assert_eq!(field("level"), [2]);
    assert_eq!(field("file_bytes"), 0x0A0Bu64.to_le_bytes());
    assert_eq!(field("entry_count"), 0x0C0Du64.to_le_bytes());
    assert_eq!(field("min_lsn"), 0x0Eu64.to_le_bytes());
    assert_eq!(field("max_lsn"), 0x0Fu64.to_le_bytes());
    assert_eq!(field("smallest_len"), 2u32.to_le_bytes());
    assert_eq!(&r[45..47], b"ab");
    assert_eq!(&r[47..51], 3u32.to_le_bytes());
    assert_eq!(&r[51..], b"xyz");
    assert_eq!(rows.len(), 8, "{rows:?}");
}
