//! Reading a table: [`Table`] holds the footer, the index and the filter in memory and reads
//! data blocks from the file as they are needed; [`TableIter`] walks a key range in both
//! directions.
//!
//! Every block read is checked (its checksum, then a full decode) before any of it is used, and
//! the index's handles are checked to tile the data area when the table is opened, so a damaged
//! file gives [`Error::Corrupt`] naming it, never a wrong answer or a panic.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::format::{
    self, Block, BlockHandle, BlockKind, EntryRef, FOOTER_BYTES, Footer, TABLE_VERSION, TableError,
    TableLimits,
};
use crate::db::Key;
use crate::db::bloom;
use crate::disk::DiskFile;
use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;

/// An entry read from a table, owned: a key's version at an LSN (`None`: a deletion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The key.
    pub key: Key,
    /// The LSN of the commit that wrote it.
    pub lsn: Lsn,
    /// The value, or `None` for a deletion.
    pub value: Option<Arc<[u8]>>,
}

impl From<EntryRef<'_>> for TableEntry {
    fn from(e: EntryRef<'_>) -> Self {
        TableEntry { key: Key::new(e.key), lsn: e.lsn, value: e.value.map(Arc::from) }
    }
}

/// An open table.
#[derive(Debug)]
pub struct Table<F: DiskFile> {
    file: F,
    path: PathBuf,
    footer: Footer,
    index: Block,
    filter: Box<[u8]>,
    limits: TableLimits,
    /// Data blocks read from the file for reads (not for compactions), shared with the
    /// database's other tables when it gives one ([`Table::with_cache`]).
    block_reads: Arc<AtomicU64>,
    /// The database's block cache and this table's id in it.
    cache: Option<(Arc<crate::db::cache::BlockCache>, u64)>,
}

/// `e` as the database's error for the table at `path`.
pub(crate) fn table_error(path: &Path, e: TableError) -> Error {
    match e {
        TableError::Corrupt { offset, reason } => Error::corrupt(path, offset, reason),
        TableError::UnsupportedVersion(found) => {
            Error::UnsupportedVersion { file: path.to_path_buf(), found, supported: TABLE_VERSION }
        }
    }
}

impl<F: DiskFile> Table<F> {
    /// Opens the table in `file` (at `path`, for errors): reads and checks its footer, filter
    /// and index.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for bad bytes; [`Error::Io`] for a
    /// failed read.
    pub fn open(file: F, path: &Path, limits: TableLimits) -> Result<Self> {
        let len = file.len().ctx("stat", path)?;
        if len < FOOTER_BYTES as u64 {
            return Err(Error::corrupt(path, 0, "file shorter than a table footer"));
        }
        let mut tail = [0u8; FOOTER_BYTES];
        file.read_exact_at(&mut tail, len - FOOTER_BYTES as u64).ctx("read", path)?;
        let footer = format::decode_footer(&tail, len).map_err(|e| table_error(path, e))?;
        let meta_max = u64::from(format::META_BLOCK_BYTES_MAX);
        let filter = read_checked(&file, path, footer.filter, meta_max)?;
        let index_bytes = read_checked(&file, path, footer.index, meta_max)?;
        let index = Block::decode(&index_bytes, footer.index.offset, BlockKind::Index, &limits)
            .map_err(|e| table_error(path, e))?;
        format::check_index(&index, footer.filter.offset, &limits, footer.index.offset)
            .map_err(|e| table_error(path, e))?;
        Ok(Table {
            file,
            path: path.to_path_buf(),
            footer,
            index,
            filter: filter.into(),
            limits,
            block_reads: Arc::new(AtomicU64::new(0)),
            cache: None,
        })
    }

    /// Reads data blocks through `cache` (if any), where this table is `id`, and counts the
    /// blocks read from the file in `reads`.
    pub(crate) fn with_cache(
        mut self,
        cache: Option<Arc<crate::db::cache::BlockCache>>,
        id: u64,
        reads: Arc<AtomicU64>,
    ) -> Self {
        self.cache = cache.map(|c| (c, id));
        self.block_reads = reads;
        self
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of data blocks.
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// Bytes of memory the open table holds (its index and filter).
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes() + self.filter.len() + std::mem::size_of::<Self>()
    }

    /// Data blocks read from the file for reads since the table was opened (a block found in
    /// the cache is not read; a compaction's reads do not count). Within a database the count
    /// is shared by all its tables ([`DbStats::block_reads`](crate::db::DbStats::block_reads)).
    pub fn block_reads(&self) -> u64 {
        self.block_reads.load(Relaxed)
    }

    /// Whether `key` may be in the table: `false` only if it certainly is not.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let hash = bloom::hash64(key);
        if crate::mutation::active(crate::mutation::Mutation::BloomAbsentForPresent) && hash % 4 == 1 {
            return false;
        }
        bloom::may_contain(&self.filter, hash)
    }

    /// Reads and decodes data block `i`, checking that its last entry is the one the index names.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for bad bytes, [`Error::Io`] for a failed read.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`Table::block_count`].
    pub fn read_block(&self, i: usize) -> Result<Arc<Block>> {
        let read = || {
            self.block_reads.fetch_add(1, Relaxed);
            self.read_block_uncached(i)
        };
        match &self.cache {
            Some((cache, id)) => cache.get_or_read(*id, self.index.handle(i).offset, read),
            None => read(),
        }
    }

    /// [`Table::read_block`] from the file, bypassing the cache and the read counter: for a
    /// compaction, which reads each block once and should not evict what readers use.
    pub fn read_block_uncached(&self, i: usize) -> Result<Arc<Block>> {
        let h = self.index.handle(i);
        let payload = read_checked(&self.file, &self.path, h, self.limits.data_block_bytes_max())?;
        let block = Block::decode(&payload, h.offset, BlockKind::Data, &self.limits)
            .map_err(|e| table_error(&self.path, e))?;
        let (last, marker) = (block.last(), self.index.entry(i));
        if (last.key, last.lsn) != (marker.key, marker.lsn) {
            return Err(Error::corrupt(
                &self.path,
                h.offset,
                "the index's key is not its block's last entry",
            ));
        }
        Ok(Arc::new(block))
    }

    /// The newest version of `key` at or below `at`: `None` if the table holds none.
    ///
    /// # Errors
    ///
    /// As [`Table::read_block`].
    pub fn get(&self, key: &[u8], at: Lsn) -> Result<Option<TableEntry>> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let before = |e: EntryRef<'_>| format::compare_entries((e.key, e.lsn), (key, at)).is_lt();
        let i = self.index.partition_point(before);
        if i == self.index.len() {
            return Ok(None);
        }
        let block = self.read_block(i)?;
        let j = block.partition_point(before);
        // The block's last entry is its index entry, which is not before the target.
        let e = block.entry(j);
        Ok((e.key == key).then(|| e.into()))
    }

    /// The entries (every version) with keys in `range`, in order; double-ended.
    pub fn iter(&self, range: (Bound<&[u8]>, Bound<&[u8]>)) -> TableIter<'_, F> {
        TableIter {
            uncached: false,
            table: self,
            lo: range.0.map(Box::from),
            hi: range.1.map(Box::from),
            ends: None,
            front_block: None,
            back_block: None,
            done: false,
        }
    }
}

impl<F: DiskFile> Table<F> {
    /// [`Table::iter`] for a compaction: every read bypasses the cache and the read counter.
    pub fn iter_uncached(&self, range: (Bound<&[u8]>, Bound<&[u8]>)) -> TableIter<'_, F> {
        TableIter { uncached: true, ..self.iter(range) }
    }
}

/// Reads the block at `h` and checks its trailer; returns the payload (decompressed, of at most
/// `payload_max` bytes: see [`format::check_block`]).
fn read_checked<F: DiskFile>(file: &F, path: &Path, h: BlockHandle, payload_max: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; h.len as usize + format::BLOCK_TRAILER_BYTES];
    file.read_exact_at(&mut buf, h.offset).ctx("read", path)?;
    let decompressed = match format::check_block(&buf, h, payload_max).map_err(|e| table_error(path, e))? {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(payload) => Some(payload),
    };
    Ok(decompressed.unwrap_or_else(|| {
        buf.truncate(h.len as usize);
        buf
    }))
}

/// A place in a table: (data block, entry). `(block_count, 0)` is the end; an entry index is
/// always below its block's length otherwise.
type Pos = (usize, usize);

/// The entries of a [`Table`] in a key range, in order; yields `Err` once on a failed read and
/// then ends.
pub struct TableIter<'t, F: DiskFile> {
    /// Reads bypass the cache ([`Table::read_block_uncached`]).
    uncached: bool,
    table: &'t Table<F>,
    lo: Bound<Box<[u8]>>,
    hi: Bound<Box<[u8]>>,
    /// (next entry to yield from the front, one past the last to yield from the back), found on
    /// the first call.
    ends: Option<(Pos, Pos)>,
    front_block: Option<(usize, Arc<Block>)>,
    back_block: Option<(usize, Arc<Block>)>,
    done: bool,
}

impl<F: DiskFile> TableIter<'_, F> {
    fn block(&mut self, i: usize, back: bool) -> Result<Arc<Block>> {
        let slot = if back { &mut self.back_block } else { &mut self.front_block };
        if let Some((j, b)) = slot
            && *j == i
        {
            return Ok(Arc::clone(b));
        }
        let b = if self.uncached { self.table.read_block_uncached(i)? } else { self.table.read_block(i)? };
        *slot = Some((i, Arc::clone(&b)));
        Ok(b)
    }

    /// The first place whose entry is not `before` (a predicate true on a prefix of the keys).
    fn place(&mut self, before: impl Fn(&[u8]) -> bool, back: bool) -> Result<Pos> {
        let i = self.table.index.partition_point(|e| before(e.key));
        if i == self.table.block_count() {
            return Ok((i, 0));
        }
        let block = self.block(i, back)?;
        let j = block.partition_point(|e| before(e.key));
        Ok(if j == block.len() { (i + 1, 0) } else { (i, j) })
    }

    fn ends(&mut self) -> Result<(Pos, Pos)> {
        if let Some(e) = self.ends {
            return Ok(e);
        }
        let lo = self.lo.clone();
        let hi = self.hi.clone();
        let front = self.place(
            |k| match &lo {
                Bound::Included(l) => k < &**l,
                Bound::Excluded(l) => k <= &**l,
                Bound::Unbounded => false,
            },
            false,
        )?;
        let back = self.place(
            |k| match &hi {
                Bound::Included(h) => k <= &**h,
                Bound::Excluded(h) => k < &**h,
                Bound::Unbounded => true,
            },
            true,
        )?;
        self.ends = Some((front, back));
        Ok((front, back))
    }

    fn step(&mut self, back: bool) -> Result<Option<TableEntry>> {
        self.step_matching(back, |_| true)
    }

    /// The next entry from one end that `keep` accepts, the others passed over without being
    /// copied out of their block.
    fn step_matching(
        &mut self,
        back: bool,
        mut keep: impl FnMut(EntryRef<'_>) -> bool,
    ) -> Result<Option<TableEntry>> {
        loop {
            let (front, end) = self.ends()?;
            if front >= end {
                return Ok(None);
            }
            let (pos, block) = if back {
                let prev = if end.1 > 0 { (end.0, end.1 - 1) } else { (end.0 - 1, usize::MAX) };
                let block = self.block(prev.0, true)?;
                let pos = (prev.0, prev.1.min(block.len() - 1));
                self.ends = Some((front, pos));
                (pos, block)
            } else {
                let block = self.block(front.0, false)?;
                let next = if front.1 + 1 == block.len() { (front.0 + 1, 0) } else { (front.0, front.1 + 1) };
                self.ends = Some((next, end));
                (front, block)
            };
            let e = block.entry(pos.1);
            if keep(e) {
                return Ok(Some(e.into()));
            }
        }
    }

    /// The next entry from the front that `keep` accepts ([`Iterator::find`] without copying
    /// the entries passed over).
    pub fn next_matching(&mut self, keep: impl FnMut(EntryRef<'_>) -> bool) -> Option<Result<TableEntry>> {
        if self.done {
            return None;
        }
        let r = self.step_matching(false, keep);
        self.yielded(r)
    }

    fn yielded(&mut self, r: Result<Option<TableEntry>>) -> Option<Result<TableEntry>> {
        match r {
            Ok(e) => e.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<F: DiskFile> Iterator for TableIter<'_, F> {
    type Item = Result<TableEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step(false);
        self.yielded(r)
    }
}

impl<F: DiskFile> DoubleEndedIterator for TableIter<'_, F> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step(true);
        self.yielded(r)
    }
}
