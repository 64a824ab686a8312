//! Encoders for segment headers and records. Each checks its arguments (programmer errors are
//! assertions) and produces exactly the layout of [`format`](mod@super::format).

use super::format::{self, rec, seg};
use crate::types::{Lsn, SegmentId};

/// The fields of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of this segment; equals the number in its file name.
    pub segment: SegmentId,
    /// LSN of the first record written into this segment.
    pub first_lsn: Lsn,
    /// LSN of the last record of the previous segment; [`Lsn::ZERO`] for the first segment of a
    /// log. Always below `first_lsn`; LSNs between the two were never durable.
    pub prev_last_lsn: Lsn,
    /// The `crc` field of that last record; 0 for none. Chains the segments together.
    pub prev_last_crc: u32,
    /// The size of the segment file as created.
    pub segment_bytes: u64,
    /// Whether the file held earlier segments ([`format::FLAG_RECYCLED`]): bytes after this
    /// segment's records may then be an earlier use's rather than zeroes.
    pub recycled: bool,
}

impl SegmentHeader {
    /// Checks the invariants of a header; `None` if they hold, else what is wrong.
    pub(crate) fn invalid_reason(&self) -> Option<&'static str> {
        if self.segment.0 == 0 {
            Some("segment number 0")
        } else if self.first_lsn.0 == 0 {
            Some("first LSN 0")
        } else if self.prev_last_lsn >= self.first_lsn {
            Some("previous segment's last LSN is not below this segment's first LSN")
        } else if !(format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            Some("segment size out of range")
        } else if self.prev_last_lsn.0 == 0 && self.prev_last_crc != 0 {
            Some("a chain checksum without a previous record")
        } else {
            None
        }
    }
}

// Format: segment header — see `format::seg` for the table.
/// Encodes `header` into 64 bytes.
///
/// # Panics
///
/// If the header breaks its invariants (a programmer error).
pub fn encode_segment_header(header: &SegmentHeader) -> [u8; format::SEGMENT_HEADER_BYTES] {
    if let Some(reason) = header.invalid_reason() {
        panic!("encoding an invalid segment header ({reason}): {header:?}");
    }
    let mut out = [0u8; format::SEGMENT_HEADER_BYTES];
    out[seg::MAGIC].copy_from_slice(&format::SEGMENT_MAGIC);
    out[seg::VERSION].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
    let flags = if header.recycled { format::FLAG_RECYCLED } else { 0 };
    out[seg::FLAGS].copy_from_slice(&flags.to_le_bytes());
    out[seg::SEGMENT].copy_from_slice(&header.segment.0.to_le_bytes());
    out[seg::FIRST_LSN].copy_from_slice(&header.first_lsn.0.to_le_bytes());
    out[seg::PREV_LAST_LSN].copy_from_slice(&header.prev_last_lsn.0.to_le_bytes());
    out[seg::SEGMENT_BYTES].copy_from_slice(&header.segment_bytes.to_le_bytes());
    out[seg::PREV_LAST_CRC].copy_from_slice(&header.prev_last_crc.to_le_bytes());
    let crc = crc32c::crc32c(&out[..seg::HEADER_CRC.start]);
    out[seg::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes the header of a recycled file prepared for segment `segment` of `segment_bytes` and
/// not yet used ([`format::FLAG_BLANK`]).
///
/// # Panics
///
/// If `segment` is 0 or `segment_bytes` is out of range (a programmer error).
pub fn encode_blank_segment_header(
    segment: SegmentId,
    segment_bytes: u64,
) -> [u8; format::SEGMENT_HEADER_BYTES] {
    assert!(segment.0 > 0, "segment number 0");
    assert!((format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&segment_bytes), "segment size");
    let mut out = [0u8; format::SEGMENT_HEADER_BYTES];
    out[seg::MAGIC].copy_from_slice(&format::SEGMENT_MAGIC);
    out[seg::VERSION].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
    out[seg::FLAGS].copy_from_slice(&(format::FLAG_RECYCLED | format::FLAG_BLANK).to_le_bytes());
    out[seg::SEGMENT].copy_from_slice(&segment.0.to_le_bytes());
    out[seg::SEGMENT_BYTES].copy_from_slice(&segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&out[..seg::HEADER_CRC.start]);
    out[seg::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What a record says about itself, apart from its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Its LSN (≥ 1).
    pub lsn: Lsn,
    /// The segment it is written into.
    pub segment: SegmentId,
    /// The durable-LSN watermark when it was encoded: below `lsn`.
    pub synced_lsn: Lsn,
    /// Its kind byte (non-zero).
    pub kind: u8,
}

// Format: record — see `format::rec` for the table.
/// Appends one record to `out` and returns its `crc` field.
///
/// # Panics
///
/// If `meta` breaks the record invariants (LSN 0, kind 0, a watermark not below the LSN) or the
/// payload is longer than [`format::RECORD_PAYLOAD_BYTES_LIMIT`]: callers check sizes first.
pub fn encode_record(out: &mut Vec<u8>, meta: RecordMeta, payload: &[u8]) -> u32 {
    assert!(meta.lsn.0 >= 1, "record LSN must be ≥ 1: {meta:?}");
    assert!(meta.kind != 0, "record kind 0 is reserved for zeroed space: {meta:?}");
    assert!(meta.synced_lsn < meta.lsn, "watermark must be below the LSN: {meta:?}");
    assert!(meta.segment.0 >= 1, "segment 0 does not exist: {meta:?}");
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= format::RECORD_PAYLOAD_BYTES_LIMIT)
        .unwrap_or_else(|| panic!("payload of {} bytes exceeds the format limit", payload.len()));

    let start = out.len();
    out.reserve(format::RECORD_HEADER_BYTES + payload.len());
    let mut header = [0u8; format::RECORD_HEADER_BYTES];
    header[rec::LEN].copy_from_slice(&len.to_le_bytes());
    header[rec::LSN].copy_from_slice(&meta.lsn.0.to_le_bytes());
    header[rec::SEGMENT].copy_from_slice(&meta.segment.0.to_le_bytes());
    header[rec::SYNCED_LSN].copy_from_slice(&meta.synced_lsn.0.to_le_bytes());
    header[rec::KIND] = meta.kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[rec::CRC.end..]), payload);
    header[rec::CRC].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    debug_assert_eq!(out.len() - start, format::RECORD_HEADER_BYTES + payload.len());
    crc
}

/// The encoded size of a record with a payload of `payload_len` bytes.
pub const fn record_bytes(payload_len: usize) -> usize {
    format::RECORD_HEADER_BYTES + payload_len
}
