//! Leveled compaction: merging tables down the levels so that reads consult few tables and
//! space holds few dead versions (DESIGN.md §9).
//!
//! ```text
//!  level 0 ≥ 8 tables (≥ 4 once   ─▶ all of level 0 + the level-1 tables they overlap ─▶ level 1
//!    no flush came for 3 s)
//!  level n ≥ 1 over its budget   ─▶ one table (the least overlap below) + the level-(n+1)
//!                                   tables it overlaps ─▶ level n+1
//!  budget: level 1 = 4 × memtable_bytes, ×10 per level; level 6 is the last
//!  order:  the highest score first: level 0 tables / 8 (/ 4), level n bytes / budget
//!  cuts:   outputs at the target size, or from half of it where a table two levels down ends
//! ```
//!
//! - **Newer layers keep newer versions.** Level 0 is compacted whole (every table older than
//!   anything flushed after the pick), and a level's table only into the next level: for every
//!   key, each layer's versions stay newer than the next layer's, which is what reads rely on.
//! - **Only unreadable versions go.** A compaction keeps every version above the horizon (the
//!   oldest snapshot, read when it starts: the horizon only grows) and each key's newest at or
//!   below it; that one too if it is a deletion and no deeper level overlaps the compaction
//!   (nothing older can be hidden by it). A key's newest version is therefore dropped only if it
//!   is a deletion at or below every live snapshot, which no validation can see as "after" its
//!   snapshot.
//! - **A table that nothing below overlaps moves** down as it is (one input, no overlapped
//!   table): a new manifest record names the same file, and nothing is written. Its versions
//!   stay as they were (none dropped), which the rules above allow.
//! - **Tables of a level past 0 stay disjoint and sorted.** Outputs are cut only between keys,
//!   and the union of the inputs' ranges is contiguous in the next level, so they fit where the
//!   tables they replace were.
//! - **Atomic.** Outputs are synced and their names made durable before one manifest swaps
//!   them for the inputs; the inputs' files are deleted only when no view reads them any more
//!   (and after that manifest is durable). A crash leaves the old tree or the new one, plus
//!   orphans that the next open removes.
//! - **Off the commit path.** A thread of its own does it (under
//!   [`Driver::Manual`](crate::wal::Driver::Manual), the caller of a flush, deterministically);
//!   commits wait only when level 0 reaches [`L0_STOP_TABLES`] tables (a write stall).

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};

use super::manifest::{self, LEVELS, TableRecord};
use super::table::{TableEntry, TableIter, TableWriter, format};
use super::view::{TableRef, View};
use super::{Inner, lock};
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, TxnId};

/// Level 0 is compacted once it holds this many tables while commits keep flushing.
///
/// Each level-0 compaction rewrites the level-1 tables it overlaps — under random keys all of
/// level 1 — so fewer, larger ones write less: measured at 10M pairs (`waldb bench --db-bench`,
/// `docs/bench/README.md`), write amplification 5.92 at 4 tables, 5.32 at 6, 4.91–4.95 at 8.
pub(crate) const L0_COMPACT_TABLES: usize = 8;
/// Level 0 is compacted once it holds this many tables when no flush came for
/// [`QUIET_AFTER`]: reads (and above all seeks, which read a block of every table) then
/// consult few tables. Measured at 10M pairs with 5–7 level-0 tables left by the load:
/// readmissing 0.49M against 1.08M gets/s, seekrandom 7.4k against 15.0k.
pub(crate) const L0_QUIET_COMPACT_TABLES: usize = 4;
/// How long the compactor waits with no flush before it compacts level 0 by
/// [`L0_QUIET_COMPACT_TABLES`]. A 64 MiB memtable fills in about a second at 300k puts/s of
/// 116 bytes, so a load keeps the compactor under [`L0_COMPACT_TABLES`].
const QUIET_AFTER: std::time::Duration = std::time::Duration::from_secs(3);
/// Commits are slowed down (a short sleep each) while level 0 holds this many tables.
///
/// RocksDB's default. Under a load level 0 then grows past [`L0_COMPACT_TABLES`] while level 1
/// is compacted down, and its next compaction takes all of it at once: measured at 50M pairs
/// against 12 (and a stop at 28), fill 261k → 330k puts/s, overwrite 247k → 318k, write
/// amplification 7.45 → 6.57 (one run each, waldb alone).
pub(crate) const L0_SLOWDOWN_TABLES: usize = 20;
/// Commits wait (a write stall) while level 0 holds this many tables (RocksDB's default).
pub(crate) const L0_STOP_TABLES: usize = 36;
/// Each level past 1 may hold this many times the bytes of the one above.
const LEVEL_MULTIPLIER: u64 = 10;
/// The memtable size assumed for the budgets when memtables are never frozen on their own.
const DEFAULT_BASE_BYTES: u64 = 64 << 20;

/// What a compaction merges.
pub(super) struct Pick<F: crate::disk::DiskFile> {
    /// The level the inputs come from.
    level: usize,
    /// Tables of `level`.
    inputs: Vec<Arc<TableRef<F>>>,
    /// Tables of `level + 1` that the inputs overlap.
    overlaps: Vec<Arc<TableRef<F>>>,
    /// Whether no level below `level + 1` overlaps the inputs (deletions may go).
    bottom: bool,
    /// The largest keys of the tables of `level + 2` that the compaction's range overlaps, in
    /// key order: outputs are cut at these boundaries once half their target size.
    grandparent_bounds: Vec<Box<[u8]>>,
}

/// A table no view may need any more, to delete once no view reads it.
pub(super) struct Doomed<F: crate::disk::DiskFile> {
    table: Weak<TableRef<F>>,
    path: PathBuf,
}

/// The compaction state kept with the tree.
pub(super) struct CompactState<F: crate::disk::DiskFile> {
    /// Per level, the largest key of the last table compacted out of it: the next pick starts
    /// after it.
    pointer: Vec<Option<Box<[u8]>>>,
    /// Replaced tables whose files are deleted once unread.
    graveyard: Vec<Doomed<F>>,
}

impl<F: crate::disk::DiskFile> Default for CompactState<F> {
    fn default() -> Self {
        CompactState { pointer: vec![None; usize::from(LEVELS)], graveyard: Vec::new() }
    }
}

fn overlaps(r: &TableRecord, lo: &[u8], hi: &[u8]) -> bool {
    &*r.smallest <= hi && lo <= &*r.largest
}

/// The table of `level` (disjoint, by key) whose compaction rewrites the fewest bytes of `next`
/// (the level below) per byte of its own — RocksDB's "minimum overlapping ratio": the fewer
/// bytes rewritten per byte moved down, the lower the write amplification. Ties go to the
/// first table after `after` (the last one compacted out of the level), round robin.
fn least_overlapping<'a, F: crate::disk::DiskFile>(
    level: &'a [Arc<TableRef<F>>],
    next: &[Arc<TableRef<F>>],
    after: Option<&[u8]>,
) -> Option<&'a Arc<TableRef<F>>> {
    let start = level.iter().position(|t| after.is_none_or(|p| &*t.record.smallest > p)).unwrap_or(0);
    let ratio = |t: &TableRef<F>| {
        let (lo, hi) = (&*t.record.smallest, &*t.record.largest);
        let first = next.partition_point(|n| &*n.record.largest < lo);
        let rewritten: u64 =
            next[first..].iter().take_while(|n| &*n.record.smallest <= hi).map(|n| n.record.file_bytes).sum();
        // Compared as rewritten / own without division: (rewritten, own) pairs by cross product.
        (u128::from(rewritten), u128::from(t.record.file_bytes.max(1)))
    };
    let mut best = None;
    let mut best_ratio = (u128::MAX, 1u128);
    for t in level[start..].iter().chain(&level[..start]) {
        let r = ratio(t);
        if best.is_none() || r.0 * best_ratio.1 < best_ratio.0 * r.1 {
            (best, best_ratio) = (Some(t), r);
        }
    }
    best
}

/// The level most in need of a compaction, if one needs it: the highest score, where level 0
/// scores its `l0_tables` over `l0_trigger` (from 1 at that count) and a deeper level
/// `l` its bytes (`bytes[l]`) over `budget(l)` (needing it above 1); the last level never
/// scores. Ties go to the upper level.
///
/// Scores, not "level 0 first": under a steady load level 0 refills while any compaction runs,
/// so a fixed priority would never compact level 1 down, and level 1 would grow to hold the
/// whole database, every level-0 compaction rewriting all of it (measured at 50M pairs: 129 GB
/// written into level 1, 1 GB into level 2, write amplification 15).
fn neediest_level(
    l0_tables: usize,
    l0_trigger: usize,
    bytes: &[u64],
    budget: impl Fn(usize) -> u64,
) -> Option<usize> {
    let mut best = None;
    let mut best_score = 1.0_f64;
    if l0_tables >= l0_trigger {
        best = Some(0);
        best_score = l0_tables as f64 / l0_trigger as f64;
    }
    for (l, &b) in bytes.iter().enumerate().take(bytes.len().saturating_sub(1)).skip(1) {
        let score = b as f64 / budget(l).max(1) as f64;
        if score > best_score {
            (best, best_score) = (Some(l), score);
        }
    }
    best
}

impl<D: Disk + Clone, C: Clock + Clone> Inner<D, C> {
    /// The budget of `level` (≥ 1), in bytes of tables.
    fn level_budget(&self, level: usize) -> u64 {
        let base = self.options.memtable_bytes.unwrap_or(DEFAULT_BASE_BYTES) * 4;
        let exp = u32::try_from(level - 1).expect("a level number");
        base.saturating_mul(LEVEL_MULTIPLIER.saturating_pow(exp))
    }

    /// The size a compaction's output tables aim for.
    fn target_table_bytes(&self) -> u64 {
        self.options.memtable_bytes.unwrap_or(DEFAULT_BASE_BYTES)
    }

    /// What to compact next, if anything needs it (level 0 by `l0_trigger` tables).
    fn pick(
        &self,
        view: &View<D::File>,
        state: &CompactState<D::File>,
        l0_trigger: usize,
    ) -> Option<Pick<D::File>> {
        let levels = &view.levels;
        let bytes: Vec<u64> = levels.iter().map(|l| l.iter().map(|t| t.record.file_bytes).sum()).collect();
        let level = neediest_level(levels[0].len(), l0_trigger, &bytes, |l| self.level_budget(l))?;
        let (level, inputs) = if level == 0 {
            (0, levels[0].clone())
        } else {
            (
                level,
                vec![Arc::clone(least_overlapping(
                    &levels[level],
                    &levels[level + 1],
                    state.pointer[level].as_deref(),
                )?)],
            )
        };
        let lo = inputs.iter().map(|t| &*t.record.smallest).min()?.to_vec();
        let hi = inputs.iter().map(|t| &*t.record.largest).max()?.to_vec();
        let overlapping: Vec<_> =
            levels[level + 1].iter().filter(|t| overlaps(&t.record, &lo, &hi)).cloned().collect();
        // The union of the inputs and the tables they overlap, for the levels below.
        let lo2 = overlapping.iter().map(|t| &*t.record.smallest).fold(&lo[..], |a, b| a.min(b)).to_vec();
        let hi2 = overlapping.iter().map(|t| &*t.record.largest).fold(&hi[..], |a, b| a.max(b)).to_vec();
        let bottom = levels[level + 2..].iter().flatten().all(|t| !overlaps(&t.record, &lo2, &hi2));
        let grandparent_bounds = levels
            .get(level + 2)
            .into_iter()
            .flatten()
            .filter(|t| overlaps(&t.record, &lo2, &hi2))
            .map(|t| t.record.largest.clone())
            .collect();
        Some(Pick { level, inputs, overlaps: overlapping, bottom, grandparent_bounds })
    }

    /// Runs one compaction if one is needed — level 0 from [`L0_COMPACT_TABLES`] tables, or
    /// with `quiet` (no flush for a while) from [`L0_QUIET_COMPACT_TABLES`]. Returns whether
    /// it did.
    ///
    /// # Errors
    ///
    /// A failed read, write or manifest write (the tree is then as it was, and orphans are
    /// removed at the next open); a tree stopped by an earlier failed manifest write.
    pub(super) fn compact_step(&self, quiet: bool) -> Result<bool> {
        let _one = lock(&self.compacting);
        let pick = {
            let tree = lock(&self.tree);
            if let Some(e) = &tree.failed {
                return Err(e.clone_lossy());
            }
            let state = lock(&self.compact_state);
            let l0_trigger = if quiet { L0_QUIET_COMPACT_TABLES } else { L0_COMPACT_TABLES };
            self.pick(&self.view(), &state, l0_trigger)
        };
        let Some(pick) = pick else { return Ok(false) };
        let _span = tracing::debug_span!("waldb::compact", level = pick.level).entered();
        let horizon = if crate::mutation::active(crate::mutation::Mutation::CompactionDropsSnapshotVersions) {
            Lsn(self.visible.load(SeqCst))
        } else {
            self.horizon()
        };
        // One table that nothing below overlaps moves down as it is: a new record, the same
        // file (RocksDB's "trivial move").
        let moved = pick.inputs.len() == 1 && pick.overlaps.is_empty();
        let outputs = if moved {
            let t = &pick.inputs[0];
            let mut record = t.record.clone();
            record.level = u8::try_from(pick.level + 1).expect("a level below LEVELS");
            vec![TableRef { record, table: Arc::clone(&t.table) }]
        } else {
            self.compacting_now.store(true, SeqCst);
            let outputs = self.merge(&pick, horizon);
            self.compacting_now.store(false, SeqCst);
            outputs?
        };
        let (read, written): (u64, u64) = if moved {
            (0, 0)
        } else {
            (
                pick.inputs.iter().chain(&pick.overlaps).map(|t| t.record.file_bytes).sum(),
                outputs.iter().map(|t| t.record.file_bytes).sum(),
            )
        };
        let mut tree = lock(&self.tree);
        if let Some(e) = &tree.failed {
            return Err(e.clone_lossy());
        }
        let gone: Vec<u64> = pick.inputs.iter().chain(&pick.overlaps).map(|t| t.record.id).collect();
        if !moved && crate::mutation::active(crate::mutation::Mutation::TableDeletedBeforeManifest) {
            for id in &gone {
                let _ =
                    crate::wal::segment::remove_durable(&self.disk, &manifest::table_path(&self.dir, *id));
            }
        }
        let mut next = tree.manifest.clone();
        next.generation += 1;
        next.next_txn_id = TxnId(self.next_txn.load(SeqCst).max(next.next_txn_id.0));
        next.tables.retain(|r| !gone.contains(&r.id));
        next.tables.extend(outputs.iter().map(|t| t.record.clone()));
        sort_records(&mut next.tables);
        if let Err(e) = manifest::write(&self.disk, &self.dir, &next) {
            tracing::error!(dir = %self.dir.display(), error = %e, "manifest write failed: compactions stop until reopened");
            tree.failed = Some(Arc::new(e.clone_lossy()));
            return Err(e);
        }
        tree.manifest = next;
        {
            let mut w = self.view.write();
            let cur = &**w;
            let mut levels = cur.levels.clone();
            for level in &mut levels {
                level.retain(|t| !gone.contains(&t.record.id));
            }
            let below = &mut levels[pick.level + 1];
            below.extend(outputs.into_iter().map(Arc::new));
            below.sort_by(|a, b| a.record.smallest.cmp(&b.record.smallest));
            *w = Arc::new(View {
                generation: cur.generation,
                active: Arc::clone(&cur.active),
                frozen: cur.frozen.clone(),
                levels,
            });
        }
        drop(tree);
        {
            let mut state = lock(&self.compact_state);
            state.pointer[pick.level] = pick.inputs.iter().map(|t| t.record.largest.clone()).max();
            // A moved table's file stays: its new record names it.
            for t in pick.inputs.iter().chain(&pick.overlaps).filter(|_| !moved) {
                let path = manifest::table_path(&self.dir, t.record.id);
                state.graveyard.push(Doomed { table: Arc::downgrade(t), path });
            }
        }
        tracing::debug!(
            level = pick.level,
            inputs = pick.inputs.len(),
            overlaps = pick.overlaps.len(),
            read,
            written,
            moved,
            "compacted"
        );
        self.compaction_bytes_per_level[pick.level + 1].fetch_add(written, SeqCst);
        drop(pick);
        self.compactions.fetch_add(1, SeqCst);
        if moved {
            self.table_moves.fetch_add(1, SeqCst);
        }
        self.compaction_bytes_read.fetch_add(read, SeqCst);
        self.compaction_bytes_written.fetch_add(written, SeqCst);
        self.sweep_graveyard();
        self.free_retired();
        self.mailbox.made_room();
        Ok(true)
    }

    /// Deletes the files of replaced tables that no view reads any more.
    pub(super) fn sweep_graveyard(&self) {
        let ready: Vec<PathBuf> = {
            let mut state = lock(&self.compact_state);
            let (ready, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut state.graveyard).into_iter().partition(|d| d.table.strong_count() == 0);
            state.graveyard = kept;
            ready.into_iter().map(|d| d.path).collect()
        };
        if ready.is_empty() {
            return;
        }
        for path in &ready {
            if let Err(e) = self.disk.remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                // Left for the next open, which removes every table no manifest names.
                tracing::warn!(path = %path.display(), error = %e, "a replaced table could not be deleted");
            }
        }
        let dir = self.dir.join(manifest::TABLES_DIR);
        if let Err(e) = self.disk.sync_dir(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "deleting replaced tables: sync_dir failed");
        }
    }

    /// Merges the pick's tables into new tables of the next level, synced and named durably.
    ///
    /// The sources are runs ([`Run`]): each level-0 input on its own, and the tables of a
    /// deeper level (disjoint, in key order) as one — so a heap of at most
    /// [`L0_STOP_TABLES`] + 1 heads orders the entries, whatever the number of tables.
    fn merge(&self, pick: &Pick<D::File>, horizon: Lsn) -> Result<Vec<TableRef<D::File>>> {
        let mut sources: Vec<Run<'_, D::File>> = if pick.level == 0 {
            pick.inputs.iter().map(|t| Run::new(std::slice::from_ref(t))).collect()
        } else {
            vec![Run::new(&pick.inputs)]
        };
        sources.push(Run::new(&pick.overlaps));
        let mut heap = std::collections::BinaryHeap::with_capacity(sources.len());
        for (source, s) in sources.iter_mut().enumerate() {
            if let Some(entry) = s.next().transpose()? {
                heap.push(Head { entry, source });
            }
        }
        let mut outputs: Vec<TableRef<D::File>> = Vec::new();
        let mut writer: Option<(TableWriter<D::File>, PathBuf, u64)> = None;
        let result = (|| -> Result<()> {
            let mut key: Option<crate::db::Key> = None;
            let mut kept_below = false;
            let mut cuts = Cuts::new(&pick.grandparent_bounds, self.target_table_bytes());
            // The smallest head in table order (keys up, LSNs down), while any is left; its
            // source's next entry takes its place.
            loop {
                let e = {
                    let Some(mut top) = heap.peek_mut() else { break };
                    match sources[top.source].next().transpose()? {
                        Some(next) => std::mem::replace(&mut top.entry, next),
                        None => std::collections::binary_heap::PeekMut::pop(top).entry,
                    }
                };
                // A close does not wait for a long merge: it is abandoned, its outputs removed.
                if self.closed.load(SeqCst) {
                    return Err(Error::Closed);
                }
                let new_key = key.as_ref() != Some(&e.key);
                if new_key {
                    key = Some(e.key.clone());
                    kept_below = false;
                }
                let keep = if e.lsn > horizon {
                    true
                } else if kept_below {
                    false
                } else {
                    kept_below = true;
                    !(e.value.is_none() && pick.bottom)
                };
                if !keep {
                    continue;
                }
                // A new table only between keys: a level past 0 never splits a key.
                if new_key
                    && let Some((w, _, _)) = &writer
                    && cuts.before(&e.key, w.bytes())
                {
                    let (w, path, id) = writer.take().expect("checked");
                    outputs.push(self.finish_output(w, path, id, pick.level + 1)?);
                }
                if writer.is_none() {
                    let id = {
                        let mut tree = lock(&self.tree);
                        let id = tree.manifest.next_table_id;
                        tree.manifest.next_table_id += 1;
                        id
                    };
                    let path = manifest::table_path(&self.dir, id);
                    writer = Some((self.create_table(&path)?, path, id));
                }
                let (w, _, _) = writer.as_mut().expect("created");
                w.add(&e.key, e.lsn, e.value.as_deref())?;
            }
            if let Some((w, path, id)) = writer.take() {
                outputs.push(self.finish_output(w, path, id, pick.level + 1)?);
            }
            let dir = self.dir.join(manifest::TABLES_DIR);
            self.disk.sync_dir(&dir).ctx("sync_dir", &dir)
        })();
        if let Err(e) = result {
            // Best effort: orphans are also removed at the next open.
            if let Some((_, path, _)) = writer {
                let _ = self.disk.remove_file(&path);
            }
            for t in &outputs {
                let _ = self.disk.remove_file(&manifest::table_path(&self.dir, t.record.id));
            }
            return Err(e);
        }
        Ok(outputs)
    }

    /// Finishes an output table of the merge and opens it.
    fn finish_output(
        &self,
        w: TableWriter<D::File>,
        path: PathBuf,
        id: u64,
        level: usize,
    ) -> Result<TableRef<D::File>> {
        let meta = w.finish()?;
        self.open_new_table(&path, id, level, meta)
    }
}

/// Where a compaction's outputs end: at the target size, or from half of it where a table of
/// the level below the outputs' ends (a grandparent, as LevelDB calls it), so that an output,
/// compacted down later, rewrites whole tables there rather than parts of two more. Measured
/// at 10M pairs: 3.8 → 3.2 GB written into level 2, write amplification 6.18 → 5.92.
struct Cuts<'a> {
    /// The grandparents' largest keys, in key order.
    bounds: &'a [Box<[u8]>],
    /// The first of `bounds` at or after the last key seen.
    next: usize,
    target: u64,
}

impl<'a> Cuts<'a> {
    fn new(bounds: &'a [Box<[u8]>], target: u64) -> Self {
        Cuts { bounds, next: 0, target }
    }

    /// Whether the output of `bytes` so far ends before `key` (keys come in order).
    fn before(&mut self, key: &[u8], bytes: u64) -> bool {
        let mut crossed = false;
        while self.bounds.get(self.next).is_some_and(|b| key > &**b) {
            self.next += 1;
            crossed = true;
        }
        bytes >= self.target || (crossed && bytes >= self.target / 2)
    }
}

/// The entries of a run of tables — disjoint and in key order, as a level past 0 keeps them —
/// one table after the other, read around the cache.
struct Run<'a, F: crate::disk::DiskFile> {
    tables: &'a [Arc<TableRef<F>>],
    next: usize,
    iter: Option<TableIter<'a, F>>,
}

impl<'a, F: crate::disk::DiskFile> Run<'a, F> {
    fn new(tables: &'a [Arc<TableRef<F>>]) -> Self {
        debug_assert!(
            tables.windows(2).all(|w| w[0].record.largest < w[1].record.smallest),
            "a run's tables are disjoint and in key order"
        );
        Run { tables, next: 0, iter: None }
    }
}

impl<F: crate::disk::DiskFile> Iterator for Run<'_, F> {
    type Item = Result<TableEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.iter.as_mut().and_then(Iterator::next) {
                return Some(e);
            }
            let t = self.tables.get(self.next)?;
            self.next += 1;
            self.iter = Some(t.table.iter_uncached((Bound::Unbounded, Bound::Unbounded)));
        }
    }
}

/// A source's next entry in the merge's heap: the greatest is the first in table order (keys
/// up, LSNs down; equal entries, which no two tables hold, by source).
struct Head {
    entry: TableEntry,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        format::compare_entries((&*other.entry.key, other.entry.lsn), (&*self.entry.key, self.entry.lsn))
            .then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Head {}

/// Puts a manifest's records in its order: by level; level 0 as it was (flush order), deeper
/// levels by key.
pub(super) fn sort_records(tables: &mut [TableRecord]) {
    tables.sort_by(|a, b| {
        a.level
            .cmp(&b.level)
            .then_with(|| if a.level == 0 { std::cmp::Ordering::Equal } else { a.smallest.cmp(&b.smallest) })
    });
}

/// The compactor's nice value (Linux; per thread): on a loaded machine commits get the CPU
/// first, and a compaction that falls behind slows commits only through write slowdowns and
/// stalls (`flush.rs`).
const COMPACTOR_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to `nice` (Linux: `setpriority` on the thread;
/// elsewhere nothing). A failure changes nothing and is ignored.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(None, nice);
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The background compactor: compacts while anything needs it, whenever asked; once no flush
/// asked for [`QUIET_AFTER`], compacts level 0 by the quiet trigger
/// ([`L0_QUIET_COMPACT_TABLES`]); after a failure, tries again a second later. It runs at a
/// lower CPU priority ([`COMPACTOR_NICE`]).
pub(super) fn compact_loop<D: Disk + Clone, C: Clock + Clone>(
    mailbox: &super::flush::Mailbox,
    weak: &std::sync::Weak<Inner<D, C>>,
) {
    use super::flush::Wake;
    lower_thread_priority(COMPACTOR_NICE);
    // What the next wait may time out for: a retry after a failure, or the quiet pass after
    // work asked for (none after a quiet pass: nothing changed since).
    let mut timeout = Some(QUIET_AFTER);
    loop {
        let quiet = match mailbox.wait_for_compaction(timeout) {
            Wake::ShutDown => return,
            Wake::Asked => false,
            Wake::TimedOut => true,
        };
        let Some(inner) = weak.upgrade() else { return };
        timeout = if quiet { None } else { Some(QUIET_AFTER) };
        loop {
            if inner.closed.load(SeqCst) {
                return;
            }
            match inner.compact_step(quiet) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    if matches!(e, Error::Closed) {
                        inner.mailbox.made_room();
                        return;
                    }
                    tracing::error!(dir = %inner.dir.display(), error = %e, "compaction failed");
                    if lock(&inner.tree).failed.is_some() {
                        *lock(&inner.last_flush_error) = Some(e);
                        inner.mailbox.made_room();
                        return;
                    }
                    timeout = Some(std::time::Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn budget(l: usize) -> u64 {
        256 * MIB * 10u64.pow(u32::try_from(l - 1).unwrap())
    }

    #[test]
    fn nothing_needs_compaction_below_the_thresholds() {
        assert_eq!(neediest_level(3, 4, &[0, 256 * MIB, 2560 * MIB, 0, 0, 0, 0], budget), None);
        assert_eq!(neediest_level(0, 4, &[0; 7], budget), None);
    }

    #[test]
    fn level_0_goes_first_when_the_levels_below_are_within_budget() {
        assert_eq!(neediest_level(4, 4, &[0, 255 * MIB, 0, 0, 0, 0, 0], budget), Some(0));
        // A tie between level 0 and level 1 goes to level 0.
        assert_eq!(neediest_level(8, 4, &[0, 512 * MIB, 0, 0, 0, 0, 0], budget), Some(0));
    }

    #[test]
    fn a_level_far_over_its_budget_goes_before_a_refilled_level_0() {
        // The 50M-pair load: level 0 refills to 4–20 tables during every compaction; level 1
        // must still be compacted down once it is over twice its budget.
        assert_eq!(neediest_level(8, 4, &[0, 600 * MIB, 0, 0, 0, 0, 0], budget), Some(1));
        assert_eq!(neediest_level(4, 4, &[0, 300 * MIB, 0, 0, 0, 0, 0], budget), Some(1));
        assert_eq!(neediest_level(5, 4, &[0, 100 * MIB, 5120 * MIB, 0, 0, 0, 0], budget), Some(2));
    }

    #[test]
    fn outputs_end_at_the_target_or_from_half_of_it_at_a_grandparent_bound() {
        let bounds: Vec<Box<[u8]>> = vec![b"d".as_slice().into(), b"m".as_slice().into()];
        let mut cuts = Cuts::new(&bounds, 100);
        assert!(!cuts.before(b"a", 10));
        assert!(!cuts.before(b"c", 60), "no bound crossed");
        assert!(!cuts.before(b"d", 60), "a table ending at \"d\" holds \"d\"");
        assert!(cuts.before(b"e", 60), "past \"d\" from half the target");
        assert!(!cuts.before(b"n", 40), "past \"m\" but under half the target");
        assert!(!cuts.before(b"o", 90), "no bound left to cross");
        assert!(cuts.before(b"p", 100), "the target");
        let none: Vec<Box<[u8]>> = Vec::new();
        let mut cuts = Cuts::new(&none, 100);
        assert!(!cuts.before(b"z", 99));
        assert!(cuts.before(b"z", 100));
    }

    #[test]
    fn the_last_level_never_scores() {
        assert_eq!(neediest_level(0, 4, &[0, 0, 0, 0, 0, 0, u64::MAX], budget), None);
    }
}
