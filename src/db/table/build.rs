//! Writing a table: [`TableBuilder`] turns entries, in order, into the table's bytes (pure);
//! [`TableWriter`] streams them to a file through [`Disk`] and syncs it.
//!
//! The builder holds one data block, the index and one 8-byte hash per distinct key (for the
//! filter) in memory; the data blocks leave as they fill, so a table of any size is written with
//! memory bounded by its key count, not its bytes.

use std::path::{Path, PathBuf};

use super::format::{self, BlockHandle, FOOTER_BYTES, Footer};
use crate::db::bloom;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{IoContext, Result};
use crate::types::Lsn;

/// How a table is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// The size a data block's entries aim for (a block holds at least one entry, so one with
    /// a larger entry is larger). At most [`format::BLOCK_TARGET_BYTES_MAX`].
    pub block_bytes: u32,
    /// Bits of the bloom filter per distinct key (1 to 64); 10 gives about 1 % false positives.
    pub bloom_bits_per_key: u32,
    /// How data blocks are stored: [`Compression::Lz4`] compresses each one that shrinks by an
    /// eighth or more ([`format::seal_block_lz4`]).
    pub compression: Compression,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { block_bytes: 4096, bloom_bits_per_key: 10, compression: Compression::None }
    }
}

/// After a data block that LZ4 did not shrink by an eighth, the next this many are stored as
/// they are without an attempt: on incompressible values (random bytes, already compressed
/// data) a compaction then spends an eighth of the attempts' time, which it otherwise lost to
/// them (10M random pairs: compactions fell behind, 1,500–4,400 commits slowed, readrandom
/// 89k against 108–114k without LZ4).
const SKIP_AFTER_INCOMPRESSIBLE: u32 = 7;

/// How a table's data blocks are stored ([`DbOptions::compression`](crate::DbOptions::compression)).
/// Either way, a table reads whatever each of its blocks says it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// As they are.
    #[default]
    None,
    /// LZ4-compressed (the block format, through the `lz4_flex` crate) where that saves at
    /// least an eighth of a block's bytes; as they are otherwise. After a block that does not
    /// shrink, the next seven are not tried.
    Lz4,
}

/// What a finished table holds: what the manifest records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMeta {
    /// Entries (versions and deletions).
    pub entry_count: u64,
    /// The lowest key.
    pub smallest: Box<[u8]>,
    /// The highest key.
    pub largest: Box<[u8]>,
    /// The lowest LSN of an entry.
    pub min_lsn: Lsn,
    /// The highest LSN of an entry.
    pub max_lsn: Lsn,
    /// Size of the file.
    pub file_bytes: u64,
}

/// Builds a table's bytes from entries given in strictly ascending order
/// ([`format::compare_entries`]: keys ascending, each key's versions newest first).
#[derive(Debug)]
pub struct TableBuilder {
    options: BuildOptions,
    block: Vec<u8>,
    block_entries: u32,
    index: Vec<u8>,
    index_entries: u32,
    /// The buffer of compression attempts.
    scratch: Vec<u8>,
    /// Data blocks to store as they are without an attempt: set after a block that did not
    /// shrink ([`SKIP_AFTER_INCOMPRESSIBLE`]).
    skip_attempts: u32,
    /// The hashes of the distinct keys, for the filter.
    hashes: Vec<u64>,
    /// Sealed bytes not yet taken by [`TableBuilder::take_ready`].
    ready: Vec<u8>,
    /// Bytes taken so far: `ready` starts at this offset.
    taken: u64,
    last_key: Vec<u8>,
    last_lsn: Lsn,
    smallest: Option<Box<[u8]>>,
    entry_count: u64,
    min_lsn: Lsn,
    max_lsn: Lsn,
}

impl TableBuilder {
    /// A builder with `options`.
    ///
    /// # Panics
    ///
    /// If the options are outside their documented ranges (the database validates them).
    pub fn new(options: BuildOptions) -> Self {
        assert!((1..=format::BLOCK_TARGET_BYTES_MAX).contains(&options.block_bytes), "block_bytes");
        assert!((1..=64).contains(&options.bloom_bits_per_key), "bloom_bits_per_key");
        TableBuilder {
            options,
            block: Vec::with_capacity(options.block_bytes as usize + 64),
            block_entries: 0,
            index: Vec::new(),
            index_entries: 0,
            scratch: Vec::new(),
            skip_attempts: 0,
            hashes: Vec::new(),
            ready: Vec::new(),
            taken: 0,
            last_key: Vec::new(),
            last_lsn: Lsn::ZERO,
            smallest: None,
            entry_count: 0,
            min_lsn: Lsn(u64::MAX),
            max_lsn: Lsn::ZERO,
        }
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// Adds the version of `key` at `lsn` (`None`: a deletion).
    ///
    /// # Panics
    ///
    /// If the entry does not come after the previous one (a caller's bug: tables are written from
    /// sorted sources).
    pub fn add(&mut self, key: &[u8], lsn: Lsn, value: Option<&[u8]>) {
        let new_key = self.is_empty() || key != self.last_key.as_slice();
        assert!(
            self.is_empty()
                || format::compare_entries((&self.last_key, self.last_lsn), (key, lsn))
                    == std::cmp::Ordering::Less,
            "table entries out of order"
        );
        let len = format::entry_len(key, lsn, value);
        if self.block_entries > 0 && self.block.len() + len + 4 > self.options.block_bytes as usize {
            self.seal_data_block();
        }
        format::encode_entry(&mut self.block, key, lsn, value);
        self.block_entries += 1;
        if new_key {
            self.hashes.push(bloom::hash64(key));
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        if self.smallest.is_none() {
            self.smallest = Some(key.into());
        }
        self.last_lsn = lsn;
        self.entry_count += 1;
        self.min_lsn = self.min_lsn.min(lsn);
        self.max_lsn = self.max_lsn.max(lsn);
    }

    /// The offset in the file of the next byte to be sealed.
    fn offset(&self) -> u64 {
        self.taken + self.ready.len() as u64
    }

    fn seal_data_block(&mut self) {
        let offset = self.offset();
        let handle = match self.options.compression {
            Compression::Lz4 if self.skip_attempts == 0 => {
                let h =
                    format::seal_block_lz4(&mut self.block, self.block_entries, offset, &mut self.scratch);
                if self.block[h.len as usize] != format::COMPRESSION_LZ4 {
                    self.skip_attempts = SKIP_AFTER_INCOMPRESSIBLE;
                }
                h
            }
            Compression::Lz4 => {
                self.skip_attempts -= 1;
                format::seal_block(&mut self.block, self.block_entries, offset)
            }
            Compression::None => format::seal_block(&mut self.block, self.block_entries, offset),
        };
        self.ready.extend_from_slice(&self.block);
        self.block.clear();
        self.block_entries = 0;
        format::encode_entry(
            &mut self.index,
            &self.last_key,
            self.last_lsn,
            Some(&format::encode_handle(handle)),
        );
        self.index_entries += 1;
    }

    /// Bytes sealed and not yet taken.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the bytes sealed so far; they belong at the offset the previous takes reached.
    pub fn take_ready(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.ready);
        self.taken += out.len() as u64;
        out
    }

    /// Seals the last data block, the filter, the index and the footer. Returns the bytes not
    /// yet taken and what the table holds.
    ///
    /// # Panics
    ///
    /// If no entry was added: an empty table is not written.
    pub fn finish(mut self) -> (Vec<u8>, TableMeta) {
        assert!(!self.is_empty(), "an empty table");
        if self.block_entries > 0 {
            self.seal_data_block();
        }
        let filter_offset = self.offset();
        let mut filter = bloom::build(&self.hashes, self.options.bloom_bits_per_key);
        let filter_handle = format::seal_raw(&mut filter, filter_offset);
        self.ready.extend_from_slice(&filter);
        let index_offset = self.offset();
        let mut index = std::mem::take(&mut self.index);
        let index_handle = format::seal_block(&mut index, self.index_entries, index_offset);
        self.ready.extend_from_slice(&index);
        let footer = Footer {
            index: index_handle,
            filter: BlockHandle { offset: filter_handle.offset, len: filter_handle.len },
            entry_count: self.entry_count,
            min_lsn: self.min_lsn,
            max_lsn: self.max_lsn,
        };
        self.ready.extend_from_slice(&format::encode_footer(&footer));
        let meta = TableMeta {
            entry_count: self.entry_count,
            smallest: self.smallest.take().expect("not empty"),
            largest: self.last_key.as_slice().into(),
            min_lsn: self.min_lsn,
            max_lsn: self.max_lsn,
            file_bytes: self.offset(),
        };
        debug_assert!(meta.file_bytes >= FOOTER_BYTES as u64);
        (self.ready, meta)
    }
}

/// Bytes the writer gathers before each write.
const WRITE_CHUNK_BYTES: usize = 256 << 10;

/// Writes a table to a new file: entries go through a [`TableBuilder`], the bytes to the file in
/// chunks, and [`TableWriter::finish`] syncs it. Nothing names the file until the caller does
/// (the manifest), so a crash before then leaves an orphan that the next open removes.
pub struct TableWriter<F: DiskFile> {
    file: F,
    path: PathBuf,
    builder: TableBuilder,
    written: u64,
    sync_every: u64,
}

impl<F: DiskFile> TableWriter<F> {
    /// Creates the file `path` (it must not exist).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if it cannot be created.
    pub fn create<D: Disk<File = F>>(disk: &D, path: &Path, options: BuildOptions) -> Result<Self> {
        let file = disk.open(path, OpenMode::CreateNew).ctx("create", path)?;
        Ok(TableWriter {
            file,
            path: path.to_path_buf(),
            builder: TableBuilder::new(options),
            written: 0,
            sync_every: u64::MAX,
        })
    }

    /// Syncs the file's data (`sync_data`) each time the bytes written cross another multiple
    /// of `bytes`, so that the OS never holds much more than that of it unwritten (RocksDB's
    /// `bytes_per_sync`; see [`DbOptions::table_sync_bytes`](crate::db::DbOptions::table_sync_bytes)).
    /// [`TableWriter::finish`] syncs the rest.
    #[must_use]
    pub fn with_sync_every(mut self, bytes: u64) -> Self {
        self.sync_every = bytes.max(1);
        self
    }

    /// Adds an entry (see [`TableBuilder::add`]).
    ///
    /// # Errors
    ///
    /// A failed write.
    pub fn add(&mut self, key: &[u8], lsn: Lsn, value: Option<&[u8]>) -> Result<()> {
        self.builder.add(key, lsn, value);
        if self.builder.ready_len() >= WRITE_CHUNK_BYTES {
            let bytes = self.builder.take_ready();
            self.write(&bytes)?;
        }
        Ok(())
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// The bytes written and waiting so far: about the table's size once finished.
    pub fn bytes(&self) -> u64 {
        self.written + self.builder.ready_len() as u64
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all_at(bytes, self.written).ctx("write", &self.path)?;
        let before = self.written;
        self.written += bytes.len() as u64;
        if before / self.sync_every != self.written / self.sync_every {
            self.file.sync_data().ctx("sync_data", &self.path)?;
        }
        Ok(())
    }

    /// Writes the rest of the table and syncs the file (`sync_all`: its length too).
    ///
    /// # Errors
    ///
    /// A failed write or sync; the caller removes the file.
    ///
    /// # Panics
    ///
    /// If no entry was added.
    pub fn finish(mut self) -> Result<TableMeta> {
        let builder = std::mem::replace(&mut self.builder, TableBuilder::new(BuildOptions::default()));
        let (rest, meta) = builder.finish();
        self.write(&rest)?;
        debug_assert_eq!(self.written, meta.file_bytes);
        if !crate::mutation::active(crate::mutation::Mutation::TableNamedBeforeSync) {
            self.file.sync_all().ctx("sync_all", &self.path)?;
        }
        Ok(meta)
    }
}
