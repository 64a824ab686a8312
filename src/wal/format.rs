//! The on-disk constants of the write-ahead log, one table per structure. `docs/FORMAT.md` is
//! the prose version of this file; the two must agree (a test checks the numbers).
//!
//! All integers are little-endian and fixed-width. Offsets are in bytes from the start of the
//! structure.

use std::ops::Range;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"WALDBSEG";

/// The format version this build writes. It reads this one and every version from
/// [`FORMAT_VERSION_OLDEST`] on; a file with another version (and a valid header checksum) is
/// refused with [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads: version 1 is version 2 without header flags
/// (no segment file is recycled).
pub const FORMAT_VERSION_OLDEST: u32 = 1;

/// Segment header flag (version 2): the file held earlier segments, so bytes after this
/// segment's records may be an earlier use's (records of lower segment numbers, or pieces of
/// them) rather than zeroes.
pub const FLAG_RECYCLED: u32 = 1;

/// Segment header flag (version 2, with [`FLAG_RECYCLED`]): a recycled file prepared for this
/// segment and not yet used. Only `segment` and `segment_bytes` are set; the LSN fields and
/// `prev_last_crc` are zero. It ends the log as an all-zero header does.
pub const FLAG_BLANK: u32 = 2;

/// Size of the segment header; records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// Size of a record header; the payload follows it.
pub const RECORD_HEADER_BYTES: usize = 40;

/// The smallest segment size accepted.
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024;

/// The largest segment size accepted (a reader holds one segment in memory).
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// The hard ceiling on a record payload, whatever the configuration says.
pub const RECORD_PAYLOAD_BYTES_LIMIT: u32 = 256 * 1024 * 1024;

/// Suffix of segment file names: `{segment:020}.wal`.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// Suffix of a segment being prepared (zero-filled) before it is renamed into place.
pub const TEMP_SUFFIX: &str = ".wal.tmp";

/// Suffix of a segment file the log no longer needs, kept to be recycled as a later segment.
pub const FREE_SUFFIX: &str = ".wal.free";

/// Digits in a segment file name.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// Field offsets of the segment header.
///
/// ```text
/// // Format: segment header, 64 bytes
/// //   0  [u8; 8]  magic           "WALDBSEG"
/// //   8  u32      format_version  2 (1 is read too: no flags)
/// //  12  u32      flags           1 recycled, 2 blank (with 1); others are refused
/// //  16  u64      segment         segment sequence number, equal to the file name's
/// //  24  u64      first_lsn       LSN of the first record in this segment
/// //  32  u64      prev_last_lsn   LSN of the last record of the previous segment (0: none)
/// //  40  u64      segment_bytes   size of the segment file as created
/// //  48  u32      prev_last_crc   crc field of that last record (0: none)
/// //  52  [u8; 8]  reserved        zero
/// //  60  u32      header_crc      CRC32C of bytes 0..60
/// ```
pub mod seg {
    use super::Range;
    /// `"WALDBSEG"`.
    pub const MAGIC: Range<usize> = 0..8;
    /// Format version.
    pub const VERSION: Range<usize> = 8..12;
    /// Flags: [`FLAG_RECYCLED`](super::FLAG_RECYCLED), [`FLAG_BLANK`](super::FLAG_BLANK).
    pub const FLAGS: Range<usize> = 12..16;
    /// Segment sequence number.
    pub const SEGMENT: Range<usize> = 16..24;
    /// First LSN in this segment.
    pub const FIRST_LSN: Range<usize> = 24..32;
    /// Last LSN of the previous segment.
    pub const PREV_LAST_LSN: Range<usize> = 32..40;
    /// Segment file size.
    pub const SEGMENT_BYTES: Range<usize> = 40..48;
    /// crc field of the previous segment's last record.
    pub const PREV_LAST_CRC: Range<usize> = 48..52;
    /// Reserved, zero.
    pub const RESERVED: Range<usize> = 52..60;
    /// CRC32C of bytes `0..60`.
    pub const HEADER_CRC: Range<usize> = 60..64;
}

/// Field offsets of the record header.
///
/// ```text
/// // Format: record, 40-byte header then `len` payload bytes
/// //   0  u32  crc         CRC32C of bytes 4..40 of the header followed by the payload
/// //   4  u32  len         payload length in bytes
/// //   8  u64  lsn         log sequence number, ≥ 1
/// //  16  u64  segment     sequence number of the segment it was written into
/// //  24  u64  synced_lsn  every record with an LSN ≤ this was durable before this one was
/// //                       written (< lsn)
/// //  32  u8   kind        1 = transaction, 2 = checkpoint marker; ≥ 128 = ignorable
/// //  33  u8   flags       0
/// //  34  [u8; 6] reserved zero
/// //  40  [u8; len] payload
/// ```
pub mod rec {
    use super::Range;
    /// CRC32C of everything after it.
    pub const CRC: Range<usize> = 0..4;
    /// Payload length.
    pub const LEN: Range<usize> = 4..8;
    /// LSN.
    pub const LSN: Range<usize> = 8..16;
    /// Segment sequence number.
    pub const SEGMENT: Range<usize> = 16..24;
    /// Durable-LSN watermark at write time.
    pub const SYNCED_LSN: Range<usize> = 24..32;
    /// Record kind.
    pub const KIND: usize = 32;
    /// Flags, zero.
    pub const FLAGS: usize = 33;
    /// Reserved, zero.
    pub const RESERVED: Range<usize> = 34..40;
}

/// Kind byte of a transaction record.
pub const KIND_TXN: u8 = 1;
/// Kind byte of a checkpoint marker.
pub const KIND_CHECKPOINT: u8 = 2;
/// Kinds with this bit set may be skipped by a reader that does not know them; an unknown kind
/// without it is corruption (it needs a newer waldb).
pub const KIND_IGNORABLE_BIT: u8 = 0x80;

// The layout tables must tile their structures exactly.
const _: () = {
    assert!(seg::MAGIC.start == 0);
    assert!(seg::MAGIC.end == seg::VERSION.start);
    assert!(seg::VERSION.end == seg::FLAGS.start);
    assert!(seg::FLAGS.end == seg::SEGMENT.start);
    assert!(seg::SEGMENT.end == seg::FIRST_LSN.start);
    assert!(seg::FIRST_LSN.end == seg::PREV_LAST_LSN.start);
    assert!(seg::PREV_LAST_LSN.end == seg::SEGMENT_BYTES.start);
    assert!(seg::SEGMENT_BYTES.end == seg::PREV_LAST_CRC.start);
    assert!(seg::PREV_LAST_CRC.end == seg::RESERVED.start);
    assert!(seg::RESERVED.end == seg::HEADER_CRC.start);
    assert!(seg::HEADER_CRC.end == SEGMENT_HEADER_BYTES);
    assert!(SEGMENT_MAGIC.len() == seg::MAGIC.end - seg::MAGIC.start);

    assert!(rec::CRC.start == 0);
    assert!(rec::CRC.end == rec::LEN.start);
    assert!(rec::LEN.end == rec::LSN.start);
    assert!(rec::LSN.end == rec::SEGMENT.start);
    assert!(rec::SEGMENT.end == rec::SYNCED_LSN.start);
    assert!(rec::SYNCED_LSN.end == rec::KIND);
    assert!(rec::KIND + 1 == rec::FLAGS);
    assert!(rec::FLAGS + 1 == rec::RESERVED.start);
    assert!(rec::RESERVED.end == RECORD_HEADER_BYTES);
    // Headers keep 8-byte fields 8-aligned within the header.
    assert!(RECORD_HEADER_BYTES.is_multiple_of(8) && SEGMENT_HEADER_BYTES.is_multiple_of(8));

    // Any record up to the hard ceiling fits in the largest segment; the smallest segment holds
    // a header and a record.
    assert!(
        (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64 + RECORD_PAYLOAD_BYTES_LIMIT as u64
            <= SEGMENT_BYTES_MAX
    );
    assert!(SEGMENT_BYTES_MIN > (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64);
    assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64 + 1, "offsets within a segment fit u32");

    // Known kinds are mandatory; the ignorable bit is not a known kind.
    assert!(KIND_TXN & KIND_IGNORABLE_BIT == 0 && KIND_CHECKPOINT & KIND_IGNORABLE_BIT == 0);
    assert!(KIND_TXN != 0 && KIND_CHECKPOINT != 0 && KIND_TXN != KIND_CHECKPOINT);
};

/// Reads a little-endian `u32` at `range` of `buf`. The range must be 4 bytes inside `buf`.
pub(crate) fn read_u32(buf: &[u8], range: Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[range]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `range` of `buf`. The range must be 8 bytes inside `buf`.
pub(crate) fn read_u64(buf: &[u8], range: Range<usize>) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[range]);
    u64::from_le_bytes(b)
}
