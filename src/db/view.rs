//! The layers a read consults, newest first: the active memtable, the frozen memtables, then
//! the sorted tables level by level (DESIGN.md §9).
//!
//! ```text
//!  View ── active memtable          commits insert here (under the sequencer's lock)
//!       ── frozen memtables         newest first; immutable, each waiting for its flush
//!       ── level 0 tables           newest first; flushed memtables, key ranges may overlap
//!       ── level 1.. tables         by key, disjoint within a level
//! ```
//!
//! - **Newer layers hold newer versions.** For any key, every version in a layer has a higher
//!   LSN than every version of that key in the layers after it: a memtable is frozen whole under
//!   the sequencer's lock and flushed oldest first, and compaction moves the oldest versions
//!   down. So the version a snapshot reads is the first one at or below its LSN, searching the
//!   layers in order, and a read stops at the first layer that has one.
//! - **A view never changes.** A freeze, a flush or a compaction makes a new view and swaps it
//!   in; a reader keeps the view it started with (its memtables and tables stay alive with it),
//!   so a read never sees a layer half moved. Versions a flush or a compaction drops are only
//!   those no live snapshot can read.
//! - **Validation is exact across layers.** A key was written after a snapshot exactly when its
//!   newest version, in whichever layer holds it, is above the snapshot: neither a flush nor a
//!   compaction drops a key's newest version unless it is a deletion at or below the horizon
//!   with nothing older beneath it, which no live snapshot can see as "after" it.

use std::ops::Bound;
use std::sync::Arc;

use super::Pair;
use super::key::Key;
use super::manifest::TableRecord;
use super::memtable::{Memtable, Value};
use super::table::Table;
use crate::disk::DiskFile;
use crate::error::Result;
use crate::types::Lsn;

/// A memtable that takes no more commits, waiting for its flush.
pub(crate) struct Frozen {
    pub(crate) memtable: Arc<Memtable>,
    /// The LSN of the last commit sequenced into it: every commit at or below it is in it or in
    /// an older layer.
    pub(crate) last: Lsn,
}

/// An open table and what the manifest says about it.
pub(crate) struct TableRef<F: DiskFile> {
    pub(crate) record: TableRecord,
    /// Shared by the records of a table moved down a level (`compact.rs`).
    pub(crate) table: Arc<Table<F>>,
}

/// See the [module docs](self).
pub(crate) struct View<F: DiskFile> {
    /// Counts the freezes: the active memtable of views with the same generation is the same.
    pub(crate) generation: u64,
    pub(crate) active: Arc<Memtable>,
    /// Newest first.
    pub(crate) frozen: Vec<Arc<Frozen>>,
    /// One entry per level: level 0 newest first, deeper levels by key.
    pub(crate) levels: Vec<Vec<Arc<TableRef<F>>>>,
}

/// A source of the range merge: (key, its version at the snapshot) in key order.
type Source<'a> = Box<dyn Iterator<Item = Result<(Key, Option<Value>)>> + 'a>;

impl<F: DiskFile> View<F> {
    /// A view of one memtable and nothing else.
    pub(crate) fn new(active: Memtable) -> Self {
        let levels = (0..super::manifest::LEVELS).map(|_| Vec::new()).collect();
        View { generation: 0, active: Arc::new(active), frozen: Vec::new(), levels }
    }

    /// Whether anything lies below the active memtable.
    #[inline]
    pub(crate) fn has_lower(&self) -> bool {
        !self.frozen.is_empty() || self.levels.iter().any(|l| !l.is_empty())
    }

    /// The highest LSN of any version below the active memtable (zero if there is none): the
    /// newest frozen memtable's last commit, else the highest of the tables'. A transaction whose
    /// snapshot is at or above it can find no conflict below the active memtable, so its commit
    /// looks nothing up there (an overwrite of a flushed key reads no table block).
    pub(crate) fn lower_max_lsn(&self) -> Lsn {
        match self.frozen.first() {
            Some(f) => f.last,
            None => self.levels.iter().flatten().map(|t| t.record.max_lsn).max().unwrap_or(Lsn::ZERO),
        }
    }

    /// The tables that may hold `key`, newest first: level 0's whose range holds it, then at
    /// most one per deeper level.
    fn tables_for<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = &'a TableRef<F>> + 'a {
        self.levels.iter().enumerate().flat_map(move |(level, tables)| {
            let holds = move |t: &&Arc<TableRef<F>>| &*t.record.smallest <= key && key <= &*t.record.largest;
            let found: Box<dyn Iterator<Item = &'a Arc<TableRef<F>>>> = if level == 0 {
                Box::new(tables.iter().filter(holds))
            } else {
                let i = tables.partition_point(|t| &*t.record.largest < key);
                Box::new(tables.get(i).into_iter().filter(holds))
            };
            found.map(|t| &**t)
        })
    }

    /// The tables of `level` whose key ranges meet `range`, in their order (level 0 newest
    /// first; deeper levels by key, found by binary search).
    fn overlapping<'a>(
        &self,
        level: usize,
        tables: &'a [Arc<TableRef<F>>],
        range: (Bound<&'a [u8]>, Bound<&'a [u8]>),
    ) -> impl DoubleEndedIterator<Item = &'a TableRef<F>> + 'a {
        let above_lo = move |t: &TableRef<F>| match range.0 {
            Bound::Included(lo) => &*t.record.largest >= lo,
            Bound::Excluded(lo) => &*t.record.largest > lo,
            Bound::Unbounded => true,
        };
        let below_hi = move |t: &TableRef<F>| match range.1 {
            Bound::Included(hi) => &*t.record.smallest <= hi,
            Bound::Excluded(hi) => &*t.record.smallest < hi,
            Bound::Unbounded => true,
        };
        let (from, to) = if level == 0 {
            (0, tables.len())
        } else {
            // Disjoint and sorted: both predicates are monotone along the level.
            (tables.partition_point(|t| !above_lo(t)), tables.partition_point(|t| below_hi(t)))
        };
        tables[from..to.max(from)].iter().map(|t| &**t).filter(move |t| above_lo(t) && below_hi(t))
    }

    /// The value of `key` in the snapshot at `at`.
    ///
    /// # Errors
    ///
    /// A table's read error.
    pub(crate) fn get(&self, key: &[u8], at: Lsn) -> Result<Option<Value>> {
        match self.active.lookup(key, at) {
            Some(version) => Ok(version),
            None => self.get_below_active(key, at),
        }
    }

    /// [`View::get`] in the layers below the active memtable.
    ///
    /// # Errors
    ///
    /// As [`View::get`].
    pub(crate) fn get_below_active(&self, key: &[u8], at: Lsn) -> Result<Option<Value>> {
        for f in &self.frozen {
            if let Some(version) = f.memtable.lookup(key, at) {
                return Ok(version);
            }
        }
        for t in self.tables_for(key) {
            if let Some(e) = t.table.get(key, at)? {
                return Ok(e.value);
            }
        }
        Ok(None)
    }

    /// The LSN of the newest version of `key` below the active memtable, a deletion included.
    ///
    /// # Errors
    ///
    /// As [`View::get`].
    pub(crate) fn newest_lsn_below_active(&self, key: &[u8]) -> Result<Option<Lsn>> {
        for f in &self.frozen {
            if let Some(lsn) = f.memtable.newest_lsn(key) {
                return Ok(Some(lsn));
            }
        }
        for t in self.tables_for(key) {
            if let Some(e) = t.table.get(key, Lsn(u64::MAX))? {
                return Ok(Some(e.lsn));
            }
        }
        Ok(None)
    }

    /// A key in `range` with a version above `lsn` below the active memtable.
    ///
    /// # Errors
    ///
    /// As [`View::get`].
    pub(crate) fn first_written_after_below_active(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        lsn: Lsn,
    ) -> Result<Option<Key>> {
        for f in &self.frozen {
            if f.last > lsn
                && let Some(k) = f.memtable.first_written_after(range, lsn)
            {
                return Ok(Some(k));
            }
        }
        let tables =
            self.levels.iter().enumerate().flat_map(|(level, ts)| self.overlapping(level, ts, range));
        for t in tables.filter(|t| t.record.max_lsn > lsn) {
            for e in t.table.iter(range) {
                let e = e?;
                if e.lsn > lsn {
                    return Ok(Some(e.key));
                }
            }
        }
        Ok(None)
    }

    /// Live pairs of the snapshot at `at` with keys in `range`, in key order, at most `limit`.
    ///
    /// # Errors
    ///
    /// As [`View::get`].
    pub(crate) fn range(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        at: Lsn,
        limit: usize,
    ) -> Result<Vec<Pair>> {
        if !self.has_lower() {
            return Ok(self.active.range(range, at, limit));
        }
        let mut sources: Vec<Source<'_>> = Vec::new();
        sources.push(Box::new(self.active.versions_at(range, at).map(Ok)));
        for f in &self.frozen {
            sources.push(Box::new(f.memtable.versions_at(range, at).map(Ok)));
        }
        for (level, tables) in self.levels.iter().enumerate() {
            let tables = self.overlapping(level, tables, range);
            if level == 0 {
                for t in tables {
                    sources.push(Box::new(table_versions_at(&t.table, range, at)));
                }
            } else {
                // Disjoint and in key order: one source, opening each table when the one
                // before it is exhausted (a short read touches one or two).
                sources.push(Box::new(tables.flat_map(move |t| table_versions_at(&t.table, range, at))));
            }
        }
        merge_by(sources, limit, std::cmp::Ordering::Less)
    }

    /// Live pairs of the snapshot at `at` with keys in `range`, from the highest key down, at most
    /// `limit`.
    ///
    /// # Errors
    ///
    /// As [`View::get`].
    pub(crate) fn range_rev(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        at: Lsn,
        limit: usize,
    ) -> Result<Vec<Pair>> {
        let mut sources: Vec<Source<'_>> = Vec::new();
        sources.push(Box::new(self.active.versions_at_rev(range, at).map(Ok)));
        for f in &self.frozen {
            sources.push(Box::new(f.memtable.versions_at_rev(range, at).map(Ok)));
        }
        for (level, tables) in self.levels.iter().enumerate() {
            let tables = self.overlapping(level, tables, range);
            if level == 0 {
                for t in tables {
                    sources.push(Box::new(table_versions_at_rev(&t.table, range, at)));
                }
            } else {
                sources.push(Box::new(
                    tables.rev().flat_map(move |t| table_versions_at_rev(&t.table, range, at)),
                ));
            }
        }
        merge_by(sources, limit, std::cmp::Ordering::Greater)
    }
}

/// [`table_versions_at`] from the highest key down: a key's entries come oldest first, so its
/// answer is the last of them at or below `at`.
fn table_versions_at_rev<'a, F: DiskFile>(
    table: &'a Table<F>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    at: Lsn,
) -> impl Iterator<Item = Result<(Key, Option<Value>)>> + 'a {
    let mut entries = table.iter(range).rev().peekable();
    std::iter::from_fn(move || {
        loop {
            let first = match entries.next()? {
                Ok(e) => e,
                Err(err) => return Some(Err(err)),
            };
            let mut answer = (first.lsn <= at).then(|| first.value.clone());
            while let Some(Ok(e)) = entries.peek() {
                if e.key != first.key {
                    break;
                }
                if e.lsn <= at {
                    answer = Some(e.value.clone());
                }
                entries.next();
            }
            if let Some(Err(_)) = entries.peek() {
                return entries.next().map(|r| r.map(|_| unreachable!("an error was peeked")));
            }
            if let Some(version) = answer {
                return Some(Ok((first.key, version)));
            }
        }
    })
}

/// For each key of `table` in `range` with a version at or below `at`: that version.
fn table_versions_at<'a, F: DiskFile>(
    table: &'a Table<F>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    at: Lsn,
) -> impl Iterator<Item = Result<(Key, Option<Value>)>> + 'a {
    let mut entries = table.iter(range);
    let mut answered: Option<Key> = None;
    std::iter::from_fn(move || {
        // Versions come newest first: the first at or below `at` is the key's answer; the
        // others are passed over inside their block.
        let e = match entries.next_matching(|e| e.lsn <= at && answered.as_deref() != Some(e.key))? {
            Ok(e) => e,
            Err(err) => return Some(Err(err)),
        };
        answered = Some(e.key.clone());
        Some(Ok((e.key, e.value)))
    })
}

/// Merges `sources`, newest first, into the live pairs, in the order `first` (`Less`: keys
/// ascending, as the sources give them; `Greater`: descending): for each key, the version of
/// the first source that has one; deletions hide the key.
fn merge_by(mut sources: Vec<Source<'_>>, limit: usize, first: std::cmp::Ordering) -> Result<Vec<Pair>> {
    let mut out = Vec::new();
    let mut heads: Vec<Option<(Key, Option<Value>)>> =
        sources.iter_mut().map(|s| s.next().transpose()).collect::<Result<_>>()?;
    while out.len() < limit {
        let Some(min) = heads
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .reduce(|a, b| if b.cmp(a) == first { b } else { a })
            .cloned()
        else {
            break;
        };
        let mut winner: Option<Option<Value>> = None;
        for (head, source) in heads.iter_mut().zip(sources.iter_mut()) {
            if head.as_ref().is_some_and(|(k, _)| *k == min) {
                let (_, version) = head.take().expect("checked");
                winner.get_or_insert(version);
                *head = source.next().transpose()?;
            }
        }
        if let Some(Some(value)) = winner {
            out.push((min, value));
        }
    }
    Ok(out)
}

/// Where the current [`View`] is kept: read without a lock (`arc_swap`: a commit's load costs no
/// reference count in the common case), replaced one writer at a time (a freeze under the
/// sequencer's lock, a flush, a compaction), each building the new view from the current one.
pub(crate) struct ViewCell<F: DiskFile> {
    current: arc_swap::ArcSwap<View<F>>,
    writer: std::sync::Mutex<()>,
}

impl<F: DiskFile> ViewCell<F> {
    pub(crate) fn new(view: View<F>) -> Self {
        ViewCell { current: arc_swap::ArcSwap::from_pointee(view), writer: std::sync::Mutex::new(()) }
    }

    /// The current view, borrowed for a short while (a commit's serial step).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<View<F>>> {
        self.current.load()
    }

    /// The current view, owned.
    pub(crate) fn load_full(&self) -> Arc<View<F>> {
        self.current.load_full()
    }

    /// The current view, to replace: assign a new `Arc<View>` through the guard; it is
    /// published when the guard is dropped. Writers wait for each other.
    pub(crate) fn write(&self) -> ViewWrite<'_, F> {
        let guard = super::lock(&self.writer);
        ViewWrite { cell: self, _writer: guard, view: self.current.load_full() }
    }
}

/// See [`ViewCell::write`].
pub(crate) struct ViewWrite<'a, F: DiskFile> {
    cell: &'a ViewCell<F>,
    _writer: std::sync::MutexGuard<'a, ()>,
    view: Arc<View<F>>,
}

impl<F: DiskFile> std::ops::Deref for ViewWrite<'_, F> {
    type Target = Arc<View<F>>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<F: DiskFile> std::ops::DerefMut for ViewWrite<'_, F> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
    }
}

impl<F: DiskFile> Drop for ViewWrite<'_, F> {
    fn drop(&mut self) {
        self.cell.current.store(Arc::clone(&self.view));
    }
}
