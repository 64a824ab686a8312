//! The sorted table's bytes: the footer, the blocks and their entries, and the pure decoders.
//!
//! Everything here is a function of bytes: nothing reads a file. The decoders are bounded
//! (every length is checked against the bytes left and the [`TableLimits`] before it is used,
//! allocations are bounded by the input's length) and total (any bytes give a value or a
//! [`TableError`], never a panic); `cargo fuzz run table_decode` holds them to it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use super::super::bloom;
use crate::types::Lsn;

/// The first eight bytes of a table's footer.
pub const TABLE_MAGIC: [u8; 8] = *b"WALDBTBL";

/// The table format version this build writes and reads.
pub const TABLE_VERSION: u32 = 1;

/// Size of the footer, the last bytes of every table.
pub const FOOTER_BYTES: usize = 72;

/// Bytes after each block's payload: its compression (one byte) and the CRC32C of the payload
/// and that byte.
pub const BLOCK_TRAILER_BYTES: usize = 5;

/// The compression byte of a block stored as is.
pub const COMPRESSION_NONE: u8 = 0;

/// The compression byte of a block stored LZ4-compressed: its stored payload is the length of
/// the payload it decompresses to (`u32`, little-endian) and then an LZ4 block of that payload.
/// Only data blocks are written so, and only where it saves at least an eighth of the bytes.
pub const COMPRESSION_LZ4: u8 = 1;

/// The most bytes of a data block's entries the builder aims for: the option is refused above it.
pub const BLOCK_TARGET_BYTES_MAX: u32 = 1 << 20;

/// The most bytes an index block or a filter may hold: they are read whole into memory when a
/// table is opened.
pub const META_BLOCK_BYTES_MAX: u32 = 256 << 20;

/// A value's length in an entry's tag is stored plus one; 0 marks a deletion.
const TAG_DELETION: u64 = 0;

/// The longest LEB128 encoding of a `u64`.
const VARINT_BYTES_MAX: usize = 10;

/// Field offsets of the footer.
///
/// ```text
/// // Format: table footer, 72 bytes, the last bytes of the file
/// //   0  [u8; 8]  magic          "WALDBTBL"
/// //   8  u32      version        1
/// //  12  u32      flags          0 (others are refused)
/// //  16  u64      index_offset   where the index block starts
/// //  24  u32      index_len      bytes of the index block's payload
/// //  28  u32      filter_len     bytes of the filter block's payload
/// //  32  u64      filter_offset  where the filter block starts (the data blocks end there)
/// //  40  u64      entry_count    entries in the data blocks
/// //  48  u64      min_lsn        the lowest LSN of an entry
/// //  56  u64      max_lsn        the highest LSN of an entry
/// //  64  u32      reserved       0
/// //  68  u32      footer_crc     CRC32C of bytes 0..68
/// ```
pub mod foot {
    use std::ops::Range;
    /// `"WALDBTBL"`.
    pub const MAGIC: Range<usize> = 0..8;
    /// Format version.
    pub const VERSION: Range<usize> = 8..12;
    /// Flags (none defined).
    pub const FLAGS: Range<usize> = 12..16;
    /// Offset of the index block.
    pub const INDEX_OFFSET: Range<usize> = 16..24;
    /// Length of the index block's payload.
    pub const INDEX_LEN: Range<usize> = 24..28;
    /// Length of the filter block's payload.
    pub const FILTER_LEN: Range<usize> = 28..32;
    /// Offset of the filter block.
    pub const FILTER_OFFSET: Range<usize> = 32..40;
    /// Entries in the data blocks.
    pub const ENTRY_COUNT: Range<usize> = 40..48;
    /// The lowest LSN of an entry.
    pub const MIN_LSN: Range<usize> = 48..56;
    /// The highest LSN of an entry.
    pub const MAX_LSN: Range<usize> = 56..64;
    /// Reserved, zero.
    pub const RESERVED: Range<usize> = 64..68;
    /// CRC32C of the footer before this field.
    pub const FOOTER_CRC: Range<usize> = 68..72;
}

/// Where a block is: its payload's offset and length (the trailer follows the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHandle {
    /// Offset of the payload in the file.
    pub offset: u64,
    /// Bytes of the payload, without the trailer.
    pub len: u32,
}

impl BlockHandle {
    /// The offset just past the block's trailer.
    pub fn end(&self) -> u64 {
        // Saturating: a handle read from damaged bytes may point anywhere, and is refused.
        self.offset.saturating_add(u64::from(self.len) + BLOCK_TRAILER_BYTES as u64)
    }

    /// The payload and trailer's bytes within a file.
    fn range(&self) -> Range<u64> {
        self.offset..self.end()
    }
}

/// What a table's footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The filter block.
    pub filter: BlockHandle,
    /// Entries in the data blocks.
    pub entry_count: u64,
    /// The lowest LSN of an entry.
    pub min_lsn: Lsn,
    /// The highest LSN of an entry.
    pub max_lsn: Lsn,
}

/// Bounds for the decoders: the database's key and value limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// The longest key accepted.
    pub key_bytes_max: u32,
    /// The longest value accepted.
    pub value_bytes_max: u32,
}

impl TableLimits {
    /// The most bytes a data block's payload may hold: a block is closed before an entry that
    /// would take it past the target, so it holds at most the largest target and one entry.
    pub fn data_block_bytes_max(&self) -> u64 {
        u64::from(BLOCK_TARGET_BYTES_MAX)
            + u64::from(self.key_bytes_max)
            + u64::from(self.value_bytes_max)
            + 3 * VARINT_BYTES_MAX as u64
            + 4
    }
}

/// Why table bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The bytes are damaged or malformed at `offset` (within the file).
    Corrupt {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A footer of another format version.
    UnsupportedVersion(u32),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Corrupt { offset, reason } => write!(f, "at offset {offset}: {reason}"),
            TableError::UnsupportedVersion(v) => write!(f, "table format version {v}"),
        }
    }
}

impl std::error::Error for TableError {}

fn corrupt(offset: u64, reason: &'static str) -> TableError {
    TableError::Corrupt { offset, reason }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The order of entries: keys ascending, then LSNs descending (newest version first).
pub fn compare_entries(a: (&[u8], Lsn), b: (&[u8], Lsn)) -> Ordering {
    a.0.cmp(b.0).then(b.1.cmp(&a.1))
}

/// Appends `v` as LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// Reads a LEB128 value at the start of `b`: the value and its length. Refuses an encoding
/// longer than needed or past 64 bits, so that every value has one encoding.
fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(VARINT_BYTES_MAX) {
        let bits = u64::from(byte & 0x7f);
        if i == VARINT_BYTES_MAX - 1 && byte > 1 {
            return None; // past 64 bits
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return None; // a trailing zero group: not the shortest encoding
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// Appends one entry to a block's payload.
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], lsn: Lsn, value: Option<&[u8]>) {
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    put_varint(out, lsn.0);
    match value {
        None => put_varint(out, TAG_DELETION),
        Some(v) => {
            put_varint(out, v.len() as u64 + 1);
            out.extend_from_slice(v);
        }
    }
}

/// The bytes [`encode_entry`] appends.
pub fn entry_len(key: &[u8], lsn: Lsn, value: Option<&[u8]>) -> usize {
    let varint_len = |v: u64| (64 - (v | 1).leading_zeros() as usize).div_ceil(7);
    let tag = value.map_or(0, |v| v.len() as u64 + 1);
    varint_len(key.len() as u64)
        + key.len()
        + varint_len(lsn.0)
        + varint_len(tag)
        + value.map_or(0, <[u8]>::len)
}

/// Closes a block: appends its entry count, the compression byte and the checksum to `payload`
/// and returns the handle of the block once written at `offset`.
pub fn seal_block(payload: &mut Vec<u8>, entries: u32, offset: u64) -> BlockHandle {
    payload.extend_from_slice(&entries.to_le_bytes());
    seal_raw(payload, offset)
}

/// [`seal_block`], storing the block LZ4-compressed ([`COMPRESSION_LZ4`]) if that takes at
/// least an eighth off its bytes, as is otherwise (random values do not compress: they cost one
/// attempt and nothing on reads). `scratch` is a buffer for the attempt, kept between calls.
pub fn seal_block_lz4(
    payload: &mut Vec<u8>,
    entries: u32,
    offset: u64,
    scratch: &mut Vec<u8>,
) -> BlockHandle {
    payload.extend_from_slice(&entries.to_le_bytes());
    let raw_len = payload.len();
    scratch.clear();
    scratch.resize(4 + lz4_flex::block::get_maximum_output_size(raw_len), 0);
    // A block is far below 4 GiB (the builder's target is at most 1 MiB plus one entry).
    let raw_len32 = u32::try_from(raw_len).expect("blocks are bounded far below 4 GiB");
    let stored = match lz4_flex::block::compress_into(payload, &mut scratch[4..]) {
        Ok(n) if 4 + n <= raw_len - raw_len / 8 => 4 + n,
        _ => return seal_raw(payload, offset),
    };
    scratch[..4].copy_from_slice(&raw_len32.to_le_bytes());
    payload.clear();
    payload.extend_from_slice(&scratch[..stored]);
    seal_with(payload, offset, COMPRESSION_LZ4)
}

/// Appends the trailer to a payload that is complete as it is (the filter).
pub fn seal_raw(payload: &mut Vec<u8>, offset: u64) -> BlockHandle {
    seal_with(payload, offset, COMPRESSION_NONE)
}

/// Appends the trailer, with `compression`, to a payload stored as it is.
fn seal_with(payload: &mut Vec<u8>, offset: u64, compression: u8) -> BlockHandle {
    let len = u32::try_from(payload.len()).expect("blocks are bounded far below 4 GiB");
    payload.push(compression);
    let crc = crc32c::crc32c(payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    BlockHandle { offset, len }
}

/// Encodes the footer.
pub fn encode_footer(f: &Footer) -> [u8; FOOTER_BYTES] {
    let mut out = [0u8; FOOTER_BYTES];
    out[foot::MAGIC].copy_from_slice(&TABLE_MAGIC);
    out[foot::VERSION].copy_from_slice(&TABLE_VERSION.to_le_bytes());
    out[foot::INDEX_OFFSET].copy_from_slice(&f.index.offset.to_le_bytes());
    out[foot::INDEX_LEN].copy_from_slice(&f.index.len.to_le_bytes());
    out[foot::FILTER_LEN].copy_from_slice(&f.filter.len.to_le_bytes());
    out[foot::FILTER_OFFSET].copy_from_slice(&f.filter.offset.to_le_bytes());
    out[foot::ENTRY_COUNT].copy_from_slice(&f.entry_count.to_le_bytes());
    out[foot::MIN_LSN].copy_from_slice(&f.min_lsn.0.to_le_bytes());
    out[foot::MAX_LSN].copy_from_slice(&f.max_lsn.0.to_le_bytes());
    let crc = crc32c::crc32c(&out[..foot::FOOTER_CRC.start]);
    out[foot::FOOTER_CRC].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the footer of a table of `file_len` bytes, whose last [`FOOTER_BYTES`] are `b`, and
/// checks that its blocks lie where the layout puts them: data blocks from 0 to the filter,
/// the filter, the index, then the footer, with no gap and nothing past it.
///
/// # Errors
///
/// [`TableError::UnsupportedVersion`] for another version (checked after the checksum);
/// [`TableError::Corrupt`] for anything else wrong.
pub fn decode_footer(b: &[u8], file_len: u64) -> Result<Footer, TableError> {
    let at = file_len.saturating_sub(FOOTER_BYTES as u64);
    if b.len() != FOOTER_BYTES || file_len < FOOTER_BYTES as u64 {
        return Err(corrupt(0, "file shorter than a table footer"));
    }
    if b[foot::MAGIC] != TABLE_MAGIC {
        return Err(corrupt(at, "bad magic: not a waldb table"));
    }
    if crc32c::crc32c(&b[..foot::FOOTER_CRC.start]) != u32_at(b, foot::FOOTER_CRC.start) {
        return Err(corrupt(at, "footer checksum mismatch"));
    }
    let version = u32_at(b, foot::VERSION.start);
    if version != TABLE_VERSION {
        return Err(TableError::UnsupportedVersion(version));
    }
    if u32_at(b, foot::FLAGS.start) != 0 || u32_at(b, foot::RESERVED.start) != 0 {
        return Err(corrupt(at + foot::FLAGS.start as u64, "unknown flags or reserved bits set"));
    }
    let footer = Footer {
        index: BlockHandle {
            offset: u64_at(b, foot::INDEX_OFFSET.start),
            len: u32_at(b, foot::INDEX_LEN.start),
        },
        filter: BlockHandle {
            offset: u64_at(b, foot::FILTER_OFFSET.start),
            len: u32_at(b, foot::FILTER_LEN.start),
        },
        entry_count: u64_at(b, foot::ENTRY_COUNT.start),
        min_lsn: Lsn(u64_at(b, foot::MIN_LSN.start)),
        max_lsn: Lsn(u64_at(b, foot::MAX_LSN.start)),
    };
    if footer.index.len > META_BLOCK_BYTES_MAX || footer.filter.len > META_BLOCK_BYTES_MAX {
        return Err(corrupt(at, "index or filter larger than the format allows"));
    }
    if footer.filter.end() != footer.index.offset || footer.index.end() != at {
        return Err(corrupt(at, "the filter, the index and the footer do not follow each other"));
    }
    if footer.min_lsn > footer.max_lsn || footer.entry_count == 0 {
        return Err(corrupt(at, "no entries, or an LSN range upside down"));
    }
    Ok(footer)
}

/// Checks a block's trailer: `b` is the stored payload and the trailer, read at `handle`.
/// Returns the payload: the stored bytes, or for a compressed block the bytes they decompress
/// to, of at most `payload_max` bytes (the bound for the block's kind:
/// [`TableLimits::data_block_bytes_max`] or [`META_BLOCK_BYTES_MAX`]), so that damaged bytes
/// allocate no more than a valid block could hold.
///
/// # Errors
///
/// [`TableError::Corrupt`] for a checksum mismatch, an unknown compression, or a compressed
/// payload that does not decompress to exactly its stated length within the bound.
pub fn check_block(b: &[u8], handle: BlockHandle, payload_max: u64) -> Result<Cow<'_, [u8]>, TableError> {
    if b.len() as u64 != u64::from(handle.len) + BLOCK_TRAILER_BYTES as u64 {
        return Err(corrupt(handle.offset, "block shorter than its handle says"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32_at(crc, 0) {
        return Err(corrupt(handle.offset, "block checksum mismatch"));
    }
    let (payload, compression) = body.split_at(body.len() - 1);
    match compression[0] {
        COMPRESSION_NONE => Ok(Cow::Borrowed(payload)),
        COMPRESSION_LZ4 => decompress_lz4(payload, handle.offset, payload_max).map(Cow::Owned),
        _ => Err(corrupt(handle.offset + u64::from(handle.len), "unknown block compression")),
    }
}

/// The payload a [`COMPRESSION_LZ4`] block's stored bytes (at `offset`) decompress to.
fn decompress_lz4(stored: &[u8], offset: u64, payload_max: u64) -> Result<Vec<u8>, TableError> {
    let Some((len, block)) = stored.split_first_chunk::<4>() else {
        return Err(corrupt(offset, "compressed block shorter than its length"));
    };
    let len = u32::from_le_bytes(*len);
    // LZ4 expands at most 255 bytes per byte: a longer stated length cannot be right, and is
    // refused before anything is allocated for it.
    if u64::from(len) > payload_max || u64::from(len) > (block.len() as u64).saturating_mul(255) {
        return Err(corrupt(offset, "compressed block's length over the bound"));
    }
    let mut out = vec![0u8; len as usize];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == out.len() => Ok(out),
        Ok(_) => Err(corrupt(offset, "compressed block shorter than its stated length")),
        Err(_) => Err(corrupt(offset, "compressed block does not decompress")),
    }
}

/// One entry of a decoded [`Block`]: where its key and value lie in the block's bytes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u32,
    key_len: u32,
    /// `u32::MAX` for a deletion.
    value: u32,
    value_len: u32,
    lsn: Lsn,
}

/// An entry of a table: a key's version at an LSN, a value or a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The LSN of the commit that wrote this version.
    pub lsn: Lsn,
    /// The value, or `None` for a deletion.
    pub value: Option<&'a [u8]>,
}

/// A decoded block: its entries, in order, checked once when decoded.
#[derive(Debug)]
pub struct Block {
    bytes: Box<[u8]>,
    slots: Vec<Slot>,
}

/// Which block is being decoded, for its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Entries of keys and values.
    Data,
    /// One entry per data block: the block's last key and LSN, and its handle (12 bytes).
    Index,
}

impl Block {
    /// Decodes a block's payload (its trailer already checked by [`check_block`]) that starts
    /// at `offset` in the file: every entry is within `limits`, in strictly ascending order
    /// ([`compare_entries`]), and the entry count matches. An index block's values are handles.
    ///
    /// # Errors
    ///
    /// [`TableError::Corrupt`] for anything malformed.
    pub fn decode(
        payload: &[u8],
        offset: u64,
        kind: BlockKind,
        limits: &TableLimits,
    ) -> Result<Block, TableError> {
        let Some(body_len) = payload.len().checked_sub(4) else {
            return Err(corrupt(offset, "block shorter than its entry count"));
        };
        let count = u32_at(payload, body_len);
        // An entry takes at least three bytes (two lengths and an LSN of one byte each).
        if count == 0 || u64::from(count) > body_len as u64 / 3 {
            return Err(corrupt(offset + body_len as u64, "entry count impossible for the block's size"));
        }
        let body = &payload[..body_len];
        if u32::try_from(body.len()).is_err() {
            return Err(corrupt(offset, "block larger than 4 GiB"));
        }
        let count = count as usize;
        // Offsets within the block, which is under 4 GiB.
        let small = |v: usize| u32::try_from(v).expect("within the block, under 4 GiB");
        let mut slots = Vec::with_capacity(count);
        let mut at = 0usize;
        while at < body.len() {
            let here = offset + at as u64;
            let bad = |reason| corrupt(here, reason);
            let (key_len, n) = get_varint(&body[at..]).ok_or_else(|| bad("bad key length"))?;
            let key = at + n;
            let key_len = usize::try_from(key_len)
                .ok()
                .filter(|&l| l as u64 <= u64::from(limits.key_bytes_max) && l <= body.len() - key)
                .ok_or_else(|| bad("key longer than the limit or the block"))?;
            let after_key = key + key_len;
            let (lsn, n) = get_varint(&body[after_key..]).ok_or_else(|| bad("bad LSN"))?;
            let (tag, m) = get_varint(&body[after_key + n..]).ok_or_else(|| bad("bad value tag"))?;
            let value = after_key + n + m;
            let value_len = usize::try_from(tag.saturating_sub(1))
                .ok()
                .filter(|&l| l <= body.len() - value)
                .ok_or_else(|| bad("value longer than the block"))?;
            match kind {
                BlockKind::Data if value_len as u64 > u64::from(limits.value_bytes_max) => {
                    return Err(bad("value longer than the limit"));
                }
                BlockKind::Index if tag != 13 => return Err(bad("index entry without a 12-byte handle")),
                _ => {}
            }
            let slot = Slot {
                key: small(key),
                key_len: small(key_len),
                value: if tag == TAG_DELETION { u32::MAX } else { small(value) },
                value_len: small(value_len),
                lsn: Lsn(lsn),
            };
            if let Some(prev) = slots.last() {
                let prev_entry = entry_of(body, prev);
                if compare_entries((prev_entry.key, prev_entry.lsn), (&body[key..after_key], Lsn(lsn)))
                    != Ordering::Less
                {
                    return Err(bad("entries not in strictly ascending order"));
                }
            }
            if slots.len() == count {
                return Err(bad("more entries than the block's count"));
            }
            slots.push(slot);
            at = value + value_len;
        }
        if slots.len() != count {
            return Err(corrupt(offset + body_len as u64, "fewer entries than the block's count"));
        }
        Ok(Block { bytes: body.into(), slots })
    }

    /// Number of entries (at least one).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never: a block holds at least one entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Entry `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`Block::len`].
    pub fn entry(&self, i: usize) -> EntryRef<'_> {
        entry_of(&self.bytes, &self.slots[i])
    }

    /// The last entry.
    pub fn last(&self) -> EntryRef<'_> {
        self.entry(self.slots.len() - 1)
    }

    /// The number of leading entries for which `before` is true (`before` must be true for a
    /// prefix of the entries and false after it): the position of the first entry it is false for.
    pub fn partition_point(&self, mut before: impl FnMut(EntryRef<'_>) -> bool) -> usize {
        self.slots.partition_point(|s| before(entry_of(&self.bytes, s)))
    }

    /// Bytes of memory the block holds (its bytes and its slots), for the cache's accounting.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + self.slots.len() * std::mem::size_of::<Slot>() + std::mem::size_of::<Self>()
    }

    /// The handle stored as entry `i`'s value (of an index block).
    pub fn handle(&self, i: usize) -> BlockHandle {
        let v = self.entry(i).value.expect("index entries hold handles (checked when decoded)");
        BlockHandle { offset: u64_at(v, 0), len: u32_at(v, 8) }
    }
}

fn entry_of<'a>(body: &'a [u8], s: &Slot) -> EntryRef<'a> {
    let key = &body[s.key as usize..(s.key + s.key_len) as usize];
    let value = (s.value != u32::MAX).then(|| &body[s.value as usize..(s.value + s.value_len) as usize]);
    EntryRef { key, lsn: s.lsn, value }
}

/// Encodes a handle as an index entry's value.
pub fn encode_handle(h: BlockHandle) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&h.offset.to_le_bytes());
    out[8..].copy_from_slice(&h.len.to_le_bytes());
    out
}

/// Checks that the index's handles tile the data area `0..data_end` in order, with no gap and
/// no block over the limit: after this, every handle can be read without further checks on its
/// place.
///
/// # Errors
///
/// [`TableError::Corrupt`] naming the first bad handle.
pub fn check_index(
    index: &Block,
    data_end: u64,
    limits: &TableLimits,
    index_offset: u64,
) -> Result<(), TableError> {
    let mut next = 0u64;
    for i in 0..index.len() {
        let h = index.handle(i);
        if h.offset != next || u64::from(h.len) > limits.data_block_bytes_max() || h.end() > data_end {
            return Err(corrupt(index_offset, "index handles do not tile the data blocks"));
        }
        next = h.end();
    }
    if next != data_end {
        return Err(corrupt(index_offset, "data blocks do not end where the filter starts"));
    }
    Ok(())
}

/// A whole table decoded from its bytes, every block checked: what the fuzzer and
/// [`decode`] work on.
#[derive(Debug)]
pub struct DecodedTable<'a> {
    /// The footer.
    pub footer: Footer,
    /// The filter's bytes.
    pub filter: Cow<'a, [u8]>,
    /// The index block.
    pub index: Block,
    /// The data blocks, in order.
    pub blocks: Vec<Block>,
}

/// Decodes and checks a whole table: the footer, the filter, the index and every data block,
/// and the relations between them — the index's keys are its blocks' last entries, entries
/// ascend across blocks, the count and the LSN range match the footer, and the filter answers
/// "maybe" for every key.
///
/// # Errors
///
/// As [`decode_footer`], [`check_block`] and [`Block::decode`]; [`TableError::Corrupt`] for a
/// relation that does not hold.
pub fn decode<'a>(file: &'a [u8], limits: &TableLimits) -> Result<DecodedTable<'a>, TableError> {
    let len = file.len() as u64;
    let footer = decode_footer(&file[file.len().saturating_sub(FOOTER_BYTES)..], len)?;
    // Every handle was checked to lie within the file before it is sliced.
    let slice = |h: BlockHandle| {
        let r = h.range();
        let at = |v: u64| usize::try_from(v).expect("within the file");
        &file[at(r.start)..at(r.end)]
    };
    let meta_max = u64::from(META_BLOCK_BYTES_MAX);
    let filter = check_block(slice(footer.filter), footer.filter, meta_max)?;
    let index_payload = check_block(slice(footer.index), footer.index, meta_max)?;
    let index = Block::decode(&index_payload, footer.index.offset, BlockKind::Index, limits)?;
    check_index(&index, footer.filter.offset, limits, footer.index.offset)?;
    let mut blocks = Vec::with_capacity(index.len());
    let mut count = 0u64;
    let (mut min, mut max) = (Lsn(u64::MAX), Lsn::ZERO);
    for i in 0..index.len() {
        let h = index.handle(i);
        let payload = check_block(slice(h), h, limits.data_block_bytes_max())?;
        let block = Block::decode(&payload, h.offset, BlockKind::Data, limits)?;
        let (last, marker) = (block.last(), index.entry(i));
        if (last.key, last.lsn) != (marker.key, marker.lsn) {
            return Err(corrupt(h.offset, "the index's key is not its block's last entry"));
        }
        if let Some(prev) = blocks.last().map(Block::last) {
            let first = block.entry(0);
            if compare_entries((prev.key, prev.lsn), (first.key, first.lsn)) != Ordering::Less {
                return Err(corrupt(h.offset, "entries not in ascending order across blocks"));
            }
        }
        for j in 0..block.len() {
            let e = block.entry(j);
            if !bloom::may_contain(&filter, bloom::hash64(e.key)) {
                return Err(corrupt(
                    footer.filter.offset,
                    "the filter answers absent for a key the table holds",
                ));
            }
            min = min.min(e.lsn);
            max = max.max(e.lsn);
        }
        count += block.len() as u64;
        blocks.push(block);
    }
    if count != footer.entry_count || (min, max) != (footer.min_lsn, footer.max_lsn) {
        return Err(corrupt(
            len - FOOTER_BYTES as u64,
            "the footer's count or LSN range differs from the entries",
        ));
    }
    Ok(DecodedTable { footer, filter, index, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_have_one_encoding_each() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Some((v, b.len())), "{v}");
            assert_eq!(entry_len(b"", Lsn(v), None), 2 + b.len(), "{v}");
        }
        assert_eq!(get_varint(&[0x80, 0x00]), None, "overlong zero");
        assert_eq!(get_varint(&[0xff; 10]), None, "past 64 bits");
        assert_eq!(get_varint(&[0x80]), None, "cut short");
        assert_eq!(get_varint(&[]), None);
    }

    #[test]
    fn entry_len_is_what_encode_entry_appends() {
        for (k, lsn, v) in [
            (&b""[..], 0u64, None),
            (b"key", 300, Some(&b"v"[..])),
            (&[7u8; 200][..], 1 << 40, Some(&[1u8; 130][..])),
        ] {
            let mut b = Vec::new();
            encode_entry(&mut b, k, Lsn(lsn), v);
            assert_eq!(b.len(), entry_len(k, Lsn(lsn), v));
        }
    }
}
