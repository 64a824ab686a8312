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
    };
    let b = encode_segment_header(&h);
    assert_eq!(&b[0..8], b"WALDBSEG");
    assert_eq!(b[8..12], 1u32.to_le_bytes());
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
