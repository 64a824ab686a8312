//! Pure decoders over byte slices: [`decode_record`] and [`decode_segment_header`].
//!
//! They return a value for every input — never panic, never allocate, never read past the slice:
//!
//! - a record (borrowing its payload from the input);
//! - [`Decoded::Zero`]: the header bytes are all zero (preallocated, never written space);
//! - [`Decoded::Stale`]: a whole, valid record written into an earlier use of the file (another
//!   segment number): the end of this segment's records;
//! - [`Decoded::Incomplete`]: the slice ends inside the header or the payload — a torn tail is a
//!   value, not an error;
//! - [`Decoded::Corrupt`] with the reason.
//!
//! Whether a bad record is a torn tail or corruption is not the decoder's call: that takes the
//! records around it (see [`recovery`](super::recovery)).

use super::encode::SegmentHeader;
use super::format::{self, read_u32, read_u64, rec, seg};
use crate::types::{Lsn, SegmentId};
use std::fmt;

/// What the record decoder needs to know.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// The segment being read: a valid record carrying another number is stale.
    pub segment: SegmentId,
    /// The largest payload accepted; a larger length field is corruption.
    pub payload_bytes_max: u32,
}

/// A record decoded in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's `crc` field (chains segments together).
    pub crc: u32,
    /// Its LSN.
    pub lsn: Lsn,
    /// The durable-LSN watermark when it was written.
    pub synced_lsn: Lsn,
    /// Its kind byte.
    pub kind: u8,
    /// The payload.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Header plus payload, in bytes.
    pub fn encoded_len(&self) -> usize {
        format::RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Why a record is corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The length field exceeds the configured maximum.
    LengthTooLarge {
        /// The length field.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// The checksum does not match the bytes.
    ChecksumMismatch {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// Flags or reserved bytes are not zero in a record whose checksum is valid (a newer format).
    UnknownFlags,
    /// Kind byte 0 in a record whose checksum is valid.
    KindZero,
    /// LSN 0 in a record whose checksum is valid.
    LsnZero,
    /// The watermark is not below the LSN in a record whose checksum is valid.
    WatermarkNotBelowLsn,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::LengthTooLarge { len, max } => {
                write!(f, "record length {len} exceeds the maximum of {max}")
            }
            Corruption::ChecksumMismatch { stored, computed } => {
                write!(f, "record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Corruption::UnknownFlags => write!(f, "record has unknown flags or reserved bytes set"),
            Corruption::KindZero => write!(f, "record kind 0"),
            Corruption::LsnZero => write!(f, "record LSN 0"),
            Corruption::WatermarkNotBelowLsn => write!(f, "record's synced LSN is not below its LSN"),
        }
    }
}

/// The outcome of decoding one record; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record of this segment.
    Record(RecordRef<'a>),
    /// All-zero header bytes (or an all-zero remainder shorter than a header).
    Zero,
    /// A valid record from another segment number.
    Stale {
        /// The segment number it carries.
        segment: SegmentId,
        /// Its encoded length.
        len: usize,
    },
    /// The slice ends before the record does.
    Incomplete {
        /// Bytes the record would need.
        needed: usize,
    },
    /// The bytes cannot be a record.
    Corrupt(Corruption),
}

/// Decodes the record at the start of `buf`. See the [module docs](self).
pub fn decode_record<'a>(buf: &'a [u8], limits: &DecodeLimits) -> Decoded<'a> {
    if buf.len() < format::RECORD_HEADER_BYTES {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::Zero
        } else {
            Decoded::Incomplete { needed: format::RECORD_HEADER_BYTES }
        };
    }
    let header = &buf[..format::RECORD_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Decoded::Zero;
    }
    let len = read_u32(header, rec::LEN);
    let max = limits.payload_bytes_max.min(format::RECORD_PAYLOAD_BYTES_LIMIT);
    if len > max {
        return Decoded::Corrupt(Corruption::LengthTooLarge { len, max });
    }
    // `len` ≤ 256 MiB, so this neither overflows nor truncates.
    let total = format::RECORD_HEADER_BYTES + len as usize;
    if buf.len() < total {
        return Decoded::Incomplete { needed: total };
    }
    let stored = read_u32(header, rec::CRC);
    let computed = crc32c::crc32c(&buf[rec::CRC.end..total]);
    if stored != computed && !crate::mutation::active(crate::mutation::Mutation::NoCrcCheck) {
        return Decoded::Corrupt(Corruption::ChecksumMismatch { stored, computed });
    }
    if header[rec::FLAGS] != 0 || header[rec::RESERVED].iter().any(|&b| b != 0) {
        return Decoded::Corrupt(Corruption::UnknownFlags);
    }
    let segment = SegmentId(read_u64(header, rec::SEGMENT));
    if segment != limits.segment {
        return Decoded::Stale { segment, len: total };
    }
    let lsn = Lsn(read_u64(header, rec::LSN));
    let synced_lsn = Lsn(read_u64(header, rec::SYNCED_LSN));
    let kind = header[rec::KIND];
    if kind == 0 {
        return Decoded::Corrupt(Corruption::KindZero);
    }
    if lsn.0 == 0 {
        return Decoded::Corrupt(Corruption::LsnZero);
    }
    if synced_lsn >= lsn {
        return Decoded::Corrupt(Corruption::WatermarkNotBelowLsn);
    }
    Decoded::Record(RecordRef {
        crc: stored,
        lsn,
        synced_lsn,
        kind,
        payload: &buf[format::RECORD_HEADER_BYTES..total],
    })
}

/// The outcome of decoding a segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderDecoded {
    /// A valid header.
    Valid(SegmentHeader),
    /// All zero (or an all-zero file shorter than a header): a prepared, never used segment.
    Zero,
    /// A recycled file prepared for `segment` and never used ([`format::FLAG_BLANK`]): it ends
    /// the log as [`HeaderDecoded::Zero`] does, and the rest of the file is an earlier use's.
    Blank {
        /// The segment it was prepared for.
        segment: SegmentId,
        /// Its size as prepared.
        segment_bytes: u64,
    },
    /// A header with a valid checksum but another format version.
    UnsupportedVersion(u32),
    /// Anything else: torn, or damaged.
    Invalid(&'static str),
}

// Format: segment header — see `format::seg` for the table.
/// Decodes the segment header at the start of `buf`.
pub fn decode_segment_header(buf: &[u8]) -> HeaderDecoded {
    if buf.len() < format::SEGMENT_HEADER_BYTES {
        return if buf.iter().all(|&b| b == 0) {
            HeaderDecoded::Zero
        } else {
            HeaderDecoded::Invalid("segment file shorter than its header")
        };
    }
    let h = &buf[..format::SEGMENT_HEADER_BYTES];
    if h.iter().all(|&b| b == 0) {
        return HeaderDecoded::Zero;
    }
    if h[seg::MAGIC] != format::SEGMENT_MAGIC {
        return HeaderDecoded::Invalid("bad segment magic");
    }
    if crc32c::crc32c(&h[..seg::HEADER_CRC.start]) != read_u32(h, seg::HEADER_CRC) {
        return HeaderDecoded::Invalid("segment header checksum mismatch");
    }
    let version = read_u32(h, seg::VERSION);
    if !(format::FORMAT_VERSION_OLDEST..=format::FORMAT_VERSION).contains(&version) {
        return HeaderDecoded::UnsupportedVersion(version);
    }
    let flags = read_u32(h, seg::FLAGS);
    let known = if version == 1 { 0 } else { format::FLAG_RECYCLED | format::FLAG_BLANK };
    if flags & !known != 0 || h[seg::RESERVED].iter().any(|&b| b != 0) {
        return HeaderDecoded::Invalid("segment header has unknown flags or reserved bytes set");
    }
    let header = SegmentHeader {
        segment: SegmentId(read_u64(h, seg::SEGMENT)),
        first_lsn: Lsn(read_u64(h, seg::FIRST_LSN)),
        prev_last_lsn: Lsn(read_u64(h, seg::PREV_LAST_LSN)),
        prev_last_crc: read_u32(h, seg::PREV_LAST_CRC),
        segment_bytes: read_u64(h, seg::SEGMENT_BYTES),
        recycled: flags & format::FLAG_RECYCLED != 0,
    };
    if flags & format::FLAG_BLANK != 0 {
        let empty = header.first_lsn.0 == 0 && header.prev_last_lsn.0 == 0 && header.prev_last_crc == 0;
        return if !header.recycled || !empty {
            HeaderDecoded::Invalid("a blank segment header that is not recycled or has LSNs set")
        } else if header.segment.0 == 0 {
            HeaderDecoded::Invalid("segment number 0")
        } else if !(format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&header.segment_bytes) {
            HeaderDecoded::Invalid("segment size out of range")
        } else {
            HeaderDecoded::Blank { segment: header.segment, segment_bytes: header.segment_bytes }
        };
    }
    match header.invalid_reason() {
        Some(reason) => HeaderDecoded::Invalid(reason),
        None => HeaderDecoded::Valid(header),
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode::{
        RecordMeta, encode_blank_segment_header, encode_record, encode_segment_header,
    };
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits { segment: SegmentId(3), payload_bytes_max: 1024 };

    fn one(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let meta = RecordMeta { lsn: Lsn(lsn), segment: SegmentId(3), synced_lsn: Lsn(lsn - 1), kind: 1 };
        encode_record(&mut out, meta, payload);
        out
    }

    #[test]
    fn golden_record_bytes() {
        // A golden dump: the layout must not change without a format version bump.
        let bytes = one(1, b"hi");
        let expected_tail: [u8; 42 - 4] = [
            2, 0, 0, 0, // len
            1, 0, 0, 0, 0, 0, 0, 0, // lsn
            3, 0, 0, 0, 0, 0, 0, 0, // segment
            0, 0, 0, 0, 0, 0, 0, 0, // synced_lsn
            1, 0, 0, 0, 0, 0, 0, 0, // kind, flags, reserved
            b'h', b'i',
        ];
        assert_eq!(&bytes[4..], &expected_tail);
        assert_eq!(bytes[..4], crc32c::crc32c(&expected_tail).to_le_bytes());
    }

    #[test]
    fn round_trip_and_every_prefix_is_incomplete() {
        let bytes = one(9, b"payload");
        let Decoded::Record(r) = decode_record(&bytes, &LIMITS) else { panic!() };
        assert_eq!((r.lsn, r.synced_lsn, r.kind, r.payload), (Lsn(9), Lsn(8), 1, &b"payload"[..]));
        assert_eq!(r.encoded_len(), bytes.len());
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode_record(&bytes[..cut], &LIMITS), Decoded::Incomplete { .. }),
                "cut at {cut}"
            );
        }
        assert_eq!(decode_record(&[], &LIMITS), Decoded::Zero);
        assert_eq!(decode_record(&[0; 100], &LIMITS), Decoded::Zero);
    }

    #[test]
    fn stale_corrupt_and_limits() {
        let bytes = one(9, b"payload");
        let other = DecodeLimits { segment: SegmentId(4), ..LIMITS };
        assert_eq!(decode_record(&bytes, &other), Decoded::Stale { segment: SegmentId(3), len: bytes.len() });
        let small = DecodeLimits { payload_bytes_max: 3, ..LIMITS };
        assert_eq!(
            decode_record(&bytes, &small),
            Decoded::Corrupt(Corruption::LengthTooLarge { len: 7, max: 3 })
        );
        let mut flipped = bytes.clone();
        flipped[45] ^= 1;
        assert!(matches!(
            decode_record(&flipped, &LIMITS),
            Decoded::Corrupt(Corruption::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn hostile_length_allocates_nothing_and_is_bounded() {
        let mut bytes = one(1, b"");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_record(&bytes, &LIMITS),
            Decoded::Corrupt(Corruption::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        let h = SegmentHeader {
            segment: SegmentId(2),
            first_lsn: Lsn(10),
            prev_last_lsn: Lsn(9),
            prev_last_crc: 0xDEAD_BEEF,
            segment_bytes: 1 << 20,
            recycled: false,
        };
        let bytes = encode_segment_header(&h);
        assert_eq!(decode_segment_header(&bytes), HeaderDecoded::Valid(h));
        assert_eq!(decode_segment_header(&[0; 64]), HeaderDecoded::Zero);
        assert_eq!(decode_segment_header(&[0; 10]), HeaderDecoded::Zero);
        for i in 0..64 {
            let mut b = bytes;
            b[i] ^= 0x10;
            assert!(
                matches!(decode_segment_header(&b), HeaderDecoded::Invalid(_)),
                "flip in byte {i} must be caught"
            );
        }
        let resealed = |mut b: [u8; 64]| {
            let crc = crc32c::crc32c(&b[..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // A valid checksum over another version is "unsupported", not "corrupt".
        let mut v3 = bytes;
        v3[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_segment_header(&resealed(v3)), HeaderDecoded::UnsupportedVersion(3));
        // Version 1 is read, without flags.
        let mut v1 = bytes;
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode_segment_header(&resealed(v1)), HeaderDecoded::Valid(h));
        v1[12] = 1;
        assert!(matches!(decode_segment_header(&resealed(v1)), HeaderDecoded::Invalid(_)));
        // Unknown flags are refused.
        let mut odd = bytes;
        odd[12] = 4;
        assert!(matches!(decode_segment_header(&resealed(odd)), HeaderDecoded::Invalid(_)));
    }

    #[test]
    fn recycled_and_blank_headers() {
        let h = SegmentHeader {
            segment: SegmentId(7),
            first_lsn: Lsn(10),
            prev_last_lsn: Lsn(9),
            prev_last_crc: 1,
            segment_bytes: 1 << 20,
            recycled: true,
        };
        assert_eq!(decode_segment_header(&encode_segment_header(&h)), HeaderDecoded::Valid(h));
        let blank = encode_blank_segment_header(SegmentId(7), 1 << 20);
        assert_eq!(
            decode_segment_header(&blank),
            HeaderDecoded::Blank { segment: SegmentId(7), segment_bytes: 1 << 20 }
        );
        for i in 0..64 {
            let mut b = blank;
            b[i] ^= 0x10;
            assert!(matches!(decode_segment_header(&b), HeaderDecoded::Invalid(_)), "flip in byte {i}");
        }
        let reseal = |mut b: [u8; 64]| {
            let crc = crc32c::crc32c(&b[..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            decode_segment_header(&b)
        };
        // Blank without recycled, or with an LSN set, is refused.
        let mut b = blank;
        b[12] = 2;
        assert!(matches!(reseal(b), HeaderDecoded::Invalid(_)));
        let mut b = blank;
        b[24] = 1;
        assert!(matches!(reseal(b), HeaderDecoded::Invalid(_)));
    }
}
