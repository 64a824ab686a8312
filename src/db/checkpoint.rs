//! Checkpoint files: the whole state of the database at one LSN.
//!
//! ```text
//!  checkpoint.tmp ──write body, then header──▶ sync_all ──rename──▶ checkpoint ──▶ sync_dir
//!                                                          then: WAL segments wholly ≤ LSN removed
//! ```
//!
//! A checkpoint is written to `checkpoint.tmp`, synced, renamed over `checkpoint` and the
//! directory synced; only then are the WAL segments it covers removed. A crash at any point
//! leaves either the old checkpoint with all the WAL after it, or the new one with (a suffix of)
//! the WAL after it: recovery loads the checkpoint and replays records above its LSN.
//!
//! The layout is in `docs/FORMAT.md`; [`decode`] is pure, bounded and fuzzed
//! (`cargo fuzz run checkpoint_decode`): any bytes give a value or a [`CheckpointError`], it
//! never panics and allocates nothing.

use std::fmt;

use crate::types::{Lsn, TxnId};

/// The first eight bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"WALDBCKP";

/// The checkpoint format version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Size of the header; the entries follow it.
pub const CHECKPOINT_HEADER_BYTES: usize = 56;

/// Field offsets of the checkpoint header.
///
/// ```text
/// // Format: checkpoint header, 56 bytes
/// //   0  [u8; 8]  magic         "WALDBCKP"
/// //   8  u32      version       1
/// //  12  u32      flags         0 (others are refused)
/// //  16  u64      lsn           the state of every commit up to this LSN
/// //  24  u64      next_txn_id   transaction ids below it may have been used
/// //  32  u64      entry_count   number of entries
/// //  40  u64      body_bytes    bytes of entries after the header (the file is 56 + this)
/// //  48  u32      body_crc      CRC32C of the entries
/// //  52  u32      header_crc    CRC32C of bytes 0..52
/// // Format: checkpoint entry, in strictly ascending key order
/// //   u32 key_len, key_len bytes of key, u32 value_len, value_len bytes of value
/// ```
pub mod hdr {
    use std::ops::Range;
    /// `"WALDBCKP"`.
    pub const MAGIC: Range<usize> = 0..8;
    /// Format version.
    pub const VERSION: Range<usize> = 8..12;
    /// Flags (none defined).
    pub const FLAGS: Range<usize> = 12..16;
    /// The checkpoint's LSN.
    pub const LSN: Range<usize> = 16..24;
    /// The next transaction id.
    pub const NEXT_TXN_ID: Range<usize> = 24..32;
    /// Number of entries.
    pub const ENTRY_COUNT: Range<usize> = 32..40;
    /// Bytes of entries.
    pub const BODY_BYTES: Range<usize> = 40..48;
    /// CRC32C of the entries.
    pub const BODY_CRC: Range<usize> = 48..52;
    /// CRC32C of the header before this field.
    pub const HEADER_CRC: Range<usize> = 52..56;
}

/// What a checkpoint's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Every commit up to this LSN is in the checkpoint, and none after it.
    pub lsn: Lsn,
    /// The lowest transaction id never handed out when it was taken.
    pub next_txn_id: TxnId,
    /// Number of entries.
    pub entry_count: u64,
    /// Bytes of entries.
    pub body_bytes: u64,
    /// CRC32C of the entries.
    pub body_crc: u32,
}

/// Encodes `h` into the 56-byte header.
pub fn encode_header(h: &CheckpointHeader) -> [u8; CHECKPOINT_HEADER_BYTES] {
    let mut out = [0u8; CHECKPOINT_HEADER_BYTES];
    out[hdr::MAGIC].copy_from_slice(&CHECKPOINT_MAGIC);
    out[hdr::VERSION].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out[hdr::LSN].copy_from_slice(&h.lsn.0.to_le_bytes());
    out[hdr::NEXT_TXN_ID].copy_from_slice(&h.next_txn_id.0.to_le_bytes());
    out[hdr::ENTRY_COUNT].copy_from_slice(&h.entry_count.to_le_bytes());
    out[hdr::BODY_BYTES].copy_from_slice(&h.body_bytes.to_le_bytes());
    out[hdr::BODY_CRC].copy_from_slice(&h.body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&out[..hdr::HEADER_CRC.start]);
    out[hdr::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Appends one entry to `out`.
///
/// # Panics
///
/// If the key or value is longer than `u32::MAX` bytes (callers enforce far smaller limits).
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let len = |n: usize| u32::try_from(n).expect("checked by the database's limits");
    out.extend_from_slice(&len(key.len()).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&len(value.len()).to_le_bytes());
    out.extend_from_slice(value);
}

/// Bounds for [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointLimits {
    /// The longest key accepted.
    pub key_bytes_max: u32,
    /// The longest value accepted.
    pub value_bytes_max: u32,
}

/// Why checkpoint bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// A valid header of a version this build does not read.
    UnsupportedVersion(u32),
    /// Damage, at a byte offset in the file.
    Corrupt {
        /// Offset of the first bad byte (or of the structure it belongs to).
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::UnsupportedVersion(v) => write!(f, "unsupported checkpoint version {v}"),
            CheckpointError::Corrupt { offset, reason } => write!(f, "at offset {offset}: {reason}"),
        }
    }
}

fn corrupt(offset: usize, reason: &'static str) -> CheckpointError {
    CheckpointError::Corrupt { offset: offset as u64, reason }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], r: std::ops::Range<usize>) -> u64 {
    u64::from_le_bytes(b[r].try_into().expect("8 bytes"))
}

/// A validated checkpoint: its header and its entries, borrowed from the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointRef<'a> {
    /// The header.
    pub header: CheckpointHeader,
    body: &'a [u8],
}

impl<'a> CheckpointRef<'a> {
    /// The entries, in ascending key order.
    pub fn entries(&self) -> Entries<'a> {
        Entries { rest: self.body }
    }
}

/// Iterator over the `(key, value)` entries of a [`CheckpointRef`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

/// Splits one entry off `buf` (validated by [`decode`], so only a bug can fail here).
fn split_entry<'a>(buf: &mut &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let b = *buf;
    let key_len = usize::try_from(u32_at(b, 0)).ok()?;
    let key = b.get(4..4 + key_len)?;
    let at = 4 + key_len;
    let value_len = usize::try_from(u32_at(b.get(at..at + 4)?, 0)).ok()?;
    let value = b.get(at + 4..at + 4 + value_len)?;
    *buf = &b[at + 4 + value_len..];
    Some((key, value))
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let e = split_entry(&mut self.rest);
        debug_assert!(e.is_some(), "validated checkpoint failed to decode");
        e
    }
}

/// Validates a whole checkpoint file: header, checksums, every entry's bounds, strictly
/// ascending keys, the entry count, and that nothing follows the last entry.
///
/// # Errors
///
/// [`CheckpointError`] for anything else, with the offset.
pub fn decode<'a>(file: &'a [u8], limits: &CheckpointLimits) -> Result<CheckpointRef<'a>, CheckpointError> {
    if file.len() < CHECKPOINT_HEADER_BYTES {
        return Err(corrupt(0, "file shorter than a checkpoint header"));
    }
    let h = &file[..CHECKPOINT_HEADER_BYTES];
    if h[hdr::MAGIC] != CHECKPOINT_MAGIC {
        return Err(corrupt(0, "bad magic: not a waldb checkpoint"));
    }
    if crc32c::crc32c(&h[..hdr::HEADER_CRC.start]) != u32_at(h, hdr::HEADER_CRC.start) {
        return Err(corrupt(0, "header checksum mismatch"));
    }
    let version = u32_at(h, hdr::VERSION.start);
    if version != CHECKPOINT_VERSION {
        return Err(CheckpointError::UnsupportedVersion(version));
    }
    if u32_at(h, hdr::FLAGS.start) != 0 {
        return Err(corrupt(hdr::FLAGS.start, "unknown flags"));
    }
    let header = CheckpointHeader {
        lsn: Lsn(u64_at(h, hdr::LSN)),
        next_txn_id: TxnId(u64_at(h, hdr::NEXT_TXN_ID)),
        entry_count: u64_at(h, hdr::ENTRY_COUNT),
        body_bytes: u64_at(h, hdr::BODY_BYTES),
        body_crc: u32_at(h, hdr::BODY_CRC.start),
    };
    let body = &file[CHECKPOINT_HEADER_BYTES..];
    if body.len() as u64 != header.body_bytes {
        return Err(corrupt(CHECKPOINT_HEADER_BYTES, "file length differs from the header's body size"));
    }
    if crc32c::crc32c(body) != header.body_crc {
        return Err(corrupt(CHECKPOINT_HEADER_BYTES, "entries checksum mismatch"));
    }
    if header.entry_count > body.len() as u64 / 8 {
        return Err(corrupt(hdr::ENTRY_COUNT.start, "entry count larger than the entries can hold"));
    }
    let mut rest = body;
    let mut count = 0u64;
    let mut prev: Option<&[u8]> = None;
    while !rest.is_empty() {
        let at = CHECKPOINT_HEADER_BYTES + (body.len() - rest.len());
        if rest.len() < 4 {
            return Err(corrupt(at, "entry ends inside its key length"));
        }
        let key_len = u32_at(rest, 0);
        if key_len > limits.key_bytes_max {
            return Err(corrupt(at, "key longer than the key limit"));
        }
        let key_len = key_len as usize;
        if rest.len() < 8 + key_len {
            return Err(corrupt(at, "entry ends inside its key or value length"));
        }
        let value_len = u32_at(rest, 4 + key_len);
        if value_len > limits.value_bytes_max {
            return Err(corrupt(at, "value longer than the value limit"));
        }
        if rest.len() - 8 - key_len < value_len as usize {
            return Err(corrupt(at, "entry ends inside its value"));
        }
        let key = &rest[4..4 + key_len];
        if prev.is_some_and(|p| p >= key) {
            return Err(corrupt(at, "keys not in strictly ascending order"));
        }
        prev = Some(key);
        rest = &rest[8 + key_len + value_len as usize..];
        count += 1;
    }
    if count != header.entry_count {
        return Err(corrupt(hdr::ENTRY_COUNT.start, "entry count differs from the entries"));
    }
    Ok(CheckpointRef { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CheckpointLimits = CheckpointLimits { key_bytes_max: 64, value_bytes_max: 64 };

    fn file(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in entries {
            encode_entry(&mut body, k, v);
        }
        let h = CheckpointHeader {
            lsn: Lsn(42),
            next_txn_id: TxnId(7),
            entry_count: entries.len() as u64,
            body_bytes: body.len() as u64,
            body_crc: crc32c::crc32c(&body),
        };
        let mut out = encode_header(&h).to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn round_trip() {
        let bytes = file(&[(b"a", b"1"), (b"b", b""), (b"c", b"33")]);
        let c = decode(&bytes, &LIMITS).unwrap();
        assert_eq!(c.header.lsn, Lsn(42));
        assert_eq!(c.header.next_txn_id, TxnId(7));
        let got: Vec<_> = c.entries().collect();
        assert_eq!(got, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b""[..]), (&b"c"[..], &b"33"[..])]);
        let empty = file(&[]);
        assert_eq!(decode(&empty, &LIMITS).unwrap().entries().count(), 0);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_refused() {
        let bytes = file(&[(b"a", b"1"), (b"bb", b"22")]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &LIMITS).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b, &LIMITS).is_err(), "bit {i}");
        }
    }

    #[test]
    fn bad_structure_with_valid_checksums_is_refused() {
        let unordered = file(&[(b"b", b"1"), (b"a", b"2")]);
        assert!(matches!(
            decode(&unordered, &LIMITS),
            Err(CheckpointError::Corrupt { reason: "keys not in strictly ascending order", .. })
        ));
        let long = file(&[(&[7u8; 65], b"1")]);
        assert!(matches!(
            decode(&long, &LIMITS),
            Err(CheckpointError::Corrupt { reason: "key longer than the key limit", .. })
        ));
        let mut bad_version = file(&[]);
        bad_version[hdr::VERSION].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&bad_version[..hdr::HEADER_CRC.start]);
        bad_version[hdr::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bad_version, &LIMITS).unwrap_err(), CheckpointError::UnsupportedVersion(2));
    }
}
