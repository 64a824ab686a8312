//! The manifest: which sorted tables make up the database, and from which LSN the log must be
//! replayed on top of them (DESIGN.md §9).
//!
//! ```text
//!  MANIFEST.tmp ──write, sync_all──▶ rename ──▶ MANIFEST ──▶ sync_dir
//!  a table is synced before a manifest names it; it is deleted only after a durable manifest
//!  stops naming it; at open, a table file no manifest names is an orphan and is removed
//! ```
//!
//! - **Atomic.** The whole manifest is rewritten at each change, as a temporary file that is
//!   synced and renamed over the old one, the directory synced after: a crash leaves the old
//!   manifest or the new one, never a mix (`tests/manifest.rs` crashes every step).
//! - **Small.** One record per table (about 60 bytes and its two boundary keys), so rewriting it
//!   costs little next to the table a flush writes.
//! - **Checked.** [`decode`] is pure, bounded and fuzzed (`cargo fuzz run manifest_decode`): the
//!   header and the records each have a CRC32C, and the records must describe a well-formed tree
//!   (levels in range, ids unique and below the next id, key and LSN ranges ordered, tables of a
//!   level past 0 disjoint and sorted, tables of level 0 in flush order).
//!
//! The layout, field by field, is in `docs/FORMAT.md` (checked by `tests/format_doc.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::disk::{self, Disk, DiskFile, OpenMode};
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::segment::{create_dir_durable, remove_durable};

/// Name of the manifest in a database directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Name of a manifest being written.
pub const MANIFEST_TEMP_FILE: &str = "MANIFEST.tmp";
/// Name of the directory of the sorted tables.
pub const TABLES_DIR: &str = "tables";
/// The extension of a table's file name.
pub const TABLE_EXTENSION: &str = "sst";

/// The first eight bytes of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"WALDBMAN";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Size of the header; the table records follow it.
pub const MANIFEST_HEADER_BYTES: usize = 64;
/// Levels of the tree: level 0 (flushed tables, which may overlap) and six levels below it.
pub const LEVELS: u8 = 7;
/// The largest manifest read (a million tables' records would fit).
pub const MANIFEST_BYTES_MAX: u64 = 256 << 20;
/// Bytes of a table record besides its two keys.
pub const TABLE_RECORD_FIXED_BYTES: usize = 49;

/// Field offsets of the manifest header.
///
/// ```text
/// // Format: manifest header, 64 bytes
/// //   0  [u8; 8]  magic          "WALDBMAN"
/// //   8  u32      version        1
/// //  12  u32      flags          0 (others are refused)
/// //  16  u64      generation     1 for the first manifest, one more at each rewrite
/// //  24  u64      log_lsn        every commit up to it is in the tables; the log above is replayed
/// //  32  u64      next_table_id  table ids at or above it were never used
/// //  40  u64      next_txn_id    transaction ids below it may have been used
/// //  48  u32      table_count    records that follow
/// //  52  u32      body_bytes     bytes after the header (the file is 64 + this)
/// //  56  u32      body_crc       CRC32C of the records
/// //  60  u32      header_crc     CRC32C of bytes 0..60
/// ```
pub mod hdr {
    use std::ops::Range;
    /// `"WALDBMAN"`.
    pub const MAGIC: Range<usize> = 0..8;
    /// Format version.
    pub const VERSION: Range<usize> = 8..12;
    /// Flags (none defined).
    pub const FLAGS: Range<usize> = 12..16;
    /// The manifest's generation.
    pub const GENERATION: Range<usize> = 16..24;
    /// The LSN the tables cover.
    pub const LOG_LSN: Range<usize> = 24..32;
    /// The next table id.
    pub const NEXT_TABLE_ID: Range<usize> = 32..40;
    /// The next transaction id.
    pub const NEXT_TXN_ID: Range<usize> = 40..48;
    /// Number of table records.
    pub const TABLE_COUNT: Range<usize> = 48..52;
    /// Bytes of records.
    pub const BODY_BYTES: Range<usize> = 52..56;
    /// CRC32C of the records.
    pub const BODY_CRC: Range<usize> = 56..60;
    /// CRC32C of the header before this field.
    pub const HEADER_CRC: Range<usize> = 60..64;
}

/// What the manifest says about one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRecord {
    /// The table's id: its file is `tables/<id, 20 digits>.sst`.
    pub id: u64,
    /// Its level: 0 for a flushed memtable, deeper for compacted tables.
    pub level: u8,
    /// Size of its file.
    pub file_bytes: u64,
    /// Entries it holds.
    pub entry_count: u64,
    /// The lowest LSN of an entry.
    pub min_lsn: Lsn,
    /// The highest LSN of an entry.
    pub max_lsn: Lsn,
    /// Its lowest key.
    pub smallest: Box<[u8]>,
    /// Its highest key.
    pub largest: Box<[u8]>,
}

/// The state the manifest records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// 1 for the first manifest of a database, one more at each rewrite.
    pub generation: u64,
    /// Every commit up to this LSN is in the tables: recovery replays the log above it.
    pub log_lsn: Lsn,
    /// Table ids at or above it were never used: the next table gets it.
    pub next_table_id: u64,
    /// Transaction ids below it may have been used.
    pub next_txn_id: TxnId,
    /// The live tables: by level, level 0 in flush order (oldest first), deeper levels by key.
    pub tables: Vec<TableRecord>,
}

/// Bounds for [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestLimits {
    /// The longest key accepted.
    pub key_bytes_max: u32,
}

/// Why manifest bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Damaged or malformed at `offset`.
    Corrupt {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A manifest of another format version.
    UnsupportedVersion(u32),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Corrupt { offset, reason } => write!(f, "at offset {offset}: {reason}"),
            ManifestError::UnsupportedVersion(v) => write!(f, "manifest format version {v}"),
        }
    }
}

impl std::error::Error for ManifestError {}

fn corrupt(offset: usize, reason: &'static str) -> ManifestError {
    ManifestError::Corrupt { offset: offset as u64, reason }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Encodes `m`.
///
/// # Panics
///
/// If it has more than `u32::MAX` tables or records of more than 4 GiB (far past any limit).
pub fn encode(m: &Manifest) -> Vec<u8> {
    let mut body = Vec::new();
    for t in &m.tables {
        let len = |b: &[u8]| u32::try_from(b.len()).expect("keys are bounded").to_le_bytes();
        body.extend_from_slice(&t.id.to_le_bytes());
        body.push(t.level);
        body.extend_from_slice(&t.file_bytes.to_le_bytes());
        body.extend_from_slice(&t.entry_count.to_le_bytes());
        body.extend_from_slice(&t.min_lsn.0.to_le_bytes());
        body.extend_from_slice(&t.max_lsn.0.to_le_bytes());
        body.extend_from_slice(&len(&t.smallest));
        body.extend_from_slice(&t.smallest);
        body.extend_from_slice(&len(&t.largest));
        body.extend_from_slice(&t.largest);
    }
    let mut out = vec![0u8; MANIFEST_HEADER_BYTES];
    out[hdr::MAGIC].copy_from_slice(&MANIFEST_MAGIC);
    out[hdr::VERSION].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out[hdr::GENERATION].copy_from_slice(&m.generation.to_le_bytes());
    out[hdr::LOG_LSN].copy_from_slice(&m.log_lsn.0.to_le_bytes());
    out[hdr::NEXT_TABLE_ID].copy_from_slice(&m.next_table_id.to_le_bytes());
    out[hdr::NEXT_TXN_ID].copy_from_slice(&m.next_txn_id.0.to_le_bytes());
    let count = u32::try_from(m.tables.len()).expect("tables are bounded");
    out[hdr::TABLE_COUNT].copy_from_slice(&count.to_le_bytes());
    let body_len = u32::try_from(body.len()).expect("records are bounded");
    out[hdr::BODY_BYTES].copy_from_slice(&body_len.to_le_bytes());
    out[hdr::BODY_CRC].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let crc = crc32c::crc32c(&out[..hdr::HEADER_CRC.start]);
    out[hdr::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and checks a manifest.
///
/// # Errors
///
/// [`ManifestError::UnsupportedVersion`] for another version (checked after the header's
/// checksum); [`ManifestError::Corrupt`] for anything else wrong, including records that do not
/// describe a well-formed tree (see the module docs).
pub fn decode(b: &[u8], limits: &ManifestLimits) -> Result<Manifest, ManifestError> {
    if b.len() < MANIFEST_HEADER_BYTES {
        return Err(corrupt(0, "file shorter than a manifest header"));
    }
    let h = &b[..MANIFEST_HEADER_BYTES];
    if h[hdr::MAGIC] != MANIFEST_MAGIC {
        return Err(corrupt(0, "bad magic: not a waldb manifest"));
    }
    let unchecked = crate::mutation::active(crate::mutation::Mutation::ManifestWithoutChecksum);
    if crc32c::crc32c(&h[..hdr::HEADER_CRC.start]) != u32_at(h, hdr::HEADER_CRC.start) && !unchecked {
        return Err(corrupt(0, "header checksum mismatch"));
    }
    let version = u32_at(h, hdr::VERSION.start);
    if version != MANIFEST_VERSION {
        return Err(ManifestError::UnsupportedVersion(version));
    }
    if u32_at(h, hdr::FLAGS.start) != 0 {
        return Err(corrupt(hdr::FLAGS.start, "unknown flags"));
    }
    let body = &b[MANIFEST_HEADER_BYTES..];
    if body.len() as u64 != u64::from(u32_at(h, hdr::BODY_BYTES.start)) {
        return Err(corrupt(hdr::BODY_BYTES.start, "file length differs from the header's body size"));
    }
    if crc32c::crc32c(body) != u32_at(h, hdr::BODY_CRC.start) && !unchecked {
        return Err(corrupt(MANIFEST_HEADER_BYTES, "records checksum mismatch"));
    }
    let count = u32_at(h, hdr::TABLE_COUNT.start) as usize;
    if count > body.len() / TABLE_RECORD_FIXED_BYTES {
        return Err(corrupt(hdr::TABLE_COUNT.start, "table count larger than the records can hold"));
    }
    let m_head = Manifest {
        generation: u64_at(h, hdr::GENERATION.start),
        log_lsn: Lsn(u64_at(h, hdr::LOG_LSN.start)),
        next_table_id: u64_at(h, hdr::NEXT_TABLE_ID.start),
        next_txn_id: TxnId(u64_at(h, hdr::NEXT_TXN_ID.start)),
        tables: Vec::with_capacity(count),
    };
    if m_head.generation == 0 {
        return Err(corrupt(hdr::GENERATION.start, "generation 0"));
    }
    let mut m = m_head;
    let mut at = 0usize;
    while m.tables.len() < count {
        let start = MANIFEST_HEADER_BYTES + at;
        let rest = &body[at..];
        if rest.len() < TABLE_RECORD_FIXED_BYTES - 4 {
            // Up to the smallest key's length.
            return Err(corrupt(start, "table record cut short"));
        }
        let smallest_len = u32_at(rest, 41) as usize;
        if smallest_len as u64 > u64::from(limits.key_bytes_max) || rest.len() - 45 < smallest_len + 4 {
            return Err(corrupt(start + 41, "smallest key longer than the limit or the records"));
        }
        let largest_at = 45 + smallest_len;
        let largest_len = u32_at(rest, largest_at) as usize;
        if largest_len as u64 > u64::from(limits.key_bytes_max) || rest.len() - largest_at - 4 < largest_len {
            return Err(corrupt(start + largest_at, "largest key longer than the limit or the records"));
        }
        let t = TableRecord {
            id: u64_at(rest, 0),
            level: rest[8],
            file_bytes: u64_at(rest, 9),
            entry_count: u64_at(rest, 17),
            min_lsn: Lsn(u64_at(rest, 25)),
            max_lsn: Lsn(u64_at(rest, 33)),
            smallest: rest[45..largest_at].into(),
            largest: rest[largest_at + 4..largest_at + 4 + largest_len].into(),
        };
        check_record(&m, &t).map_err(|reason| corrupt(start, reason))?;
        m.tables.push(t);
        at += largest_at + 4 + largest_len;
    }
    if at != body.len() {
        return Err(corrupt(MANIFEST_HEADER_BYTES + at, "bytes after the last table record"));
    }
    let mut ids: Vec<u64> = m.tables.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(corrupt(MANIFEST_HEADER_BYTES, "a table named twice"));
    }
    Ok(m)
}

/// Whether `t` may follow the tables already in `m`.
fn check_record(m: &Manifest, t: &TableRecord) -> std::result::Result<(), &'static str> {
    if t.level >= LEVELS {
        return Err("level out of range");
    }
    if t.id >= m.next_table_id {
        return Err("table id not below the next id");
    }
    if t.smallest > t.largest || t.min_lsn > t.max_lsn || t.max_lsn > m.log_lsn || t.entry_count == 0 {
        return Err("key or LSN range upside down, past the log LSN, or no entries");
    }
    if let Some(prev) = m.tables.last() {
        if prev.level > t.level {
            return Err("tables not in level order");
        }
        if prev.level == t.level {
            if t.level == 0 && prev.max_lsn >= t.min_lsn {
                return Err("level-0 tables not in flush order");
            }
            if t.level > 0 && prev.largest >= t.smallest {
                return Err("tables of a level overlap or are out of key order");
            }
        }
    }
    Ok(())
}

/// The file of table `id` in the database directory `dir`.
pub fn table_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(TABLES_DIR).join(format!("{id:020}.{TABLE_EXTENSION}"))
}

/// The table id a file name in the tables directory stands for, if it is a table's name.
pub fn table_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".sst")?;
    (digits.len() == 20 && digits.bytes().all(|c| c.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// `e` as the database's error for the manifest at `path`.
fn manifest_error(path: &Path, e: ManifestError) -> Error {
    match e {
        ManifestError::Corrupt { offset, reason } => Error::corrupt(path, offset, reason),
        ManifestError::UnsupportedVersion(found) => {
            Error::UnsupportedVersion { file: path.to_path_buf(), found, supported: MANIFEST_VERSION }
        }
    }
}

/// Reads the manifest of the database in `dir`: `None` if it has none.
///
/// # Errors
///
/// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for bad bytes (a manifest is only ever
/// renamed into place whole and synced, so a damaged one is damage, not a crash); [`Error::Io`].
pub fn read<D: Disk>(disk: &D, dir: &Path, limits: &ManifestLimits) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match disk::read_file(disk, &path, MANIFEST_BYTES_MAX) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    decode(&bytes, limits).map(Some).map_err(|e| manifest_error(&path, e))
}

/// Writes `m` as the manifest of the database in `dir`, durably: a temporary file, synced,
/// renamed over the manifest, the directory synced. On an error the old manifest stays in force
/// (or the new one, if only the directory's sync failed: the caller must treat the outcome as
/// unknown and stop changing the tree, as the log does after a failed sync).
///
/// # Errors
///
/// [`Error::Io`] for a failed file operation.
pub fn write<D: Disk>(disk: &D, dir: &Path, m: &Manifest) -> Result<()> {
    let temp = dir.join(MANIFEST_TEMP_FILE);
    match disk.remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &temp, e)),
    }
    let written = (|| {
        let file = disk.open(&temp, OpenMode::CreateNew).ctx("create", &temp)?;
        file.write_all_at(&encode(m), 0).ctx("write", &temp)?;
        file.sync_all().ctx("sync_all", &temp)
    })();
    if let Err(e) = written {
        // Best effort: a leftover temporary file is also removed by the next write or open.
        let _ = disk.remove_file(&temp);
        return Err(e);
    }
    let path = dir.join(MANIFEST_FILE);
    disk.rename(&temp, &path).ctx("rename", &temp)?;
    disk.sync_dir(dir).ctx("sync_dir", dir)
}

/// Removes what a crash can leave in the database directory `dir` beside the manifest `m`: a
/// temporary manifest, and every table file `m` does not name (a table written by a flush or a
/// compaction whose manifest never became durable, or one a durable manifest stopped naming
/// before it was deleted). Creates the tables directory if it is missing. Returns how many
/// tables it removed.
///
/// # Errors
///
/// [`Error::Io`] for a failed listing or removal.
pub fn remove_orphans<D: Disk>(disk: &D, dir: &Path, m: Option<&Manifest>) -> Result<u64> {
    let temp = dir.join(MANIFEST_TEMP_FILE);
    match disk.remove_file(&temp) {
        Ok(()) => disk.sync_dir(dir).ctx("sync_dir", dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &temp, e)),
    }
    let tables = dir.join(TABLES_DIR);
    create_dir_durable(disk, &tables)?;
    let live: std::collections::HashSet<u64> = m.iter().flat_map(|m| m.tables.iter().map(|t| t.id)).collect();
    let mut removed = 0;
    for name in disk.list_dir(&tables).ctx("list", &tables)? {
        let orphan = match table_id(&name) {
            Some(id) => !live.contains(&id),
            // A table being written (`.sst` only once complete is not a rule: the writer
            // creates the final name) or debris of another kind: only table names are touched.
            None => false,
        };
        if orphan {
            remove_durable(disk, &tables.join(&name))?;
            removed += 1;
        }
    }
    Ok(removed)
}
