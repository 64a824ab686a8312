//! Freezing a full memtable and flushing it to a sorted table: the only checkpoint (DESIGN.md §9).
//!
//! ```text
//!  commit (sequencer's lock): active ≥ memtable_bytes ─▶ freeze: a new active memtable; the
//!                             full one joins the frozen, newest first (a new view)
//!  flusher: oldest frozen F ─▶ log durable and visible up to F.last ─▶ table written, synced,
//!           its name made durable ─▶ manifest names it, log_lsn = F.last (durable) ─▶ view:
//!           F out, the table in level 0 ─▶ log segments wholly ≤ F.last removed
//! ```
//!
//! - **Nothing acknowledged is lost at any step.** Until the manifest that names the table is
//!   durable, the old manifest and the log above its LSN hold everything (the table is an
//!   orphan, removed at the next open); after, the table holds every commit up to `F.last` and
//!   the log the rest. Segments are removed only after (`tests/db.rs` crashes every step).
//! - **O(memtable).** A flush writes the frozen memtable's versions and a manifest of one record
//!   per table; it never rewrites older data.
//! - **Only unreadable versions are dropped.** A flush keeps every version above the horizon
//!   (the oldest snapshot) and each key's newest at or below it, deletions included: the
//!   layers below may hold older versions the deletion hides.
//! - **Back-pressure, not growth.** A commit that finds `memtables_max - 1` frozen memtables
//!   waits for a flush (a write stall, counted); under [`Driver::Manual`](crate::wal::Driver::Manual)
//!   it flushes the oldest itself. A failed flush is retried by the background flusher; while
//!   it fails, stalled commits return its error (nothing written).
//! - **Commits never free a memtable** (with background threads). A flushed memtable goes to a
//!   list the flusher frees from (after each flush and compaction) once no reader's view holds
//!   it, so the last reader to let go of it does not pay for its frees (tens of milliseconds for
//!   64 MiB). Under [`Driver::Manual`](crate::wal::Driver::Manual) the committer that flushes
//!   frees them, as it does the rest of the flush.
//! - **After a failed manifest write, no more.** Whether the new manifest is in force is then
//!   unknown, so the tree stops changing until the database is reopened (as the log does
//!   after a failed sync); commits go on until the memtables fill.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::manifest::{self, Manifest};
use super::memtable::Memtable;
use super::table::{Table, TableWriter};
use super::view::{Frozen, TableRef, View};
use super::{CheckpointReport, Inner, WAL_DIR, lock};
use crate::clock::Clock;
use crate::disk::{Disk, OpenMode};
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::Driver;
use crate::wal::segment::remove_segments_through;

/// The flusher's mailbox, and where stalled commits wait. The flusher thread holds it and a
/// weak reference to the database, so that it never keeps a dropped database (and its lock)
/// alive.
#[derive(Default)]
pub(super) struct Mailbox {
    state: Mutex<MailState>,
    /// The flusher waits here for work.
    changed: Condvar,
    /// Stalled commits wait here for a flush.
    room: Condvar,
}

/// Why a background thread's wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// It was asked to work.
    Asked,
    /// Its timeout passed with nothing asked.
    TimedOut,
    /// The database is shutting down.
    ShutDown,
}

#[derive(Default)]
struct MailState {
    requested: bool,
    compaction_requested: bool,
    shutdown: bool,
}

impl Mailbox {
    /// Asks the flusher to flush what is frozen.
    pub(super) fn request(&self) {
        let mut m = lock(&self.state);
        if !m.requested {
            m.requested = true;
            self.changed.notify_all();
        }
    }

    /// Asks the compactor to see whether anything needs compacting.
    pub(super) fn request_compaction(&self) {
        let mut m = lock(&self.state);
        if !m.compaction_requested {
            m.compaction_requested = true;
            self.changed.notify_all();
        }
    }

    /// The compactor's wait: until asked, or until `timeout` passed with nothing asked.
    pub(super) fn wait_for_compaction(&self, timeout: Option<Duration>) -> Wake {
        self.wait_for(|m| &mut m.compaction_requested, timeout)
    }

    /// The flusher's wait: until asked (or, after a failure, a second passed). `false` once
    /// the database shuts down.
    fn wait_for_flush(&self, retry: bool) -> bool {
        let timeout = retry.then_some(Duration::from_secs(1));
        self.wait_for(|m| &mut m.requested, timeout) != Wake::ShutDown
    }

    /// Waits until the flag `flag` picks is set (it is then cleared), the database shuts down,
    /// or `timeout` passes.
    fn wait_for(&self, flag: fn(&mut MailState) -> &mut bool, timeout: Option<Duration>) -> Wake {
        let idle = |m: &mut MailState| !*flag(m) && !m.shutdown;
        let m = lock(&self.state);
        let mut m = match timeout {
            Some(t) => {
                let (m, waited) = self
                    .changed
                    .wait_timeout_while(m, t, idle)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if waited.timed_out() {
                    return Wake::TimedOut;
                }
                m
            }
            None => self.changed.wait_while(m, idle).unwrap_or_else(std::sync::PoisonError::into_inner),
        };
        if m.shutdown {
            return Wake::ShutDown;
        }
        *flag(&mut m) = false;
        Wake::Asked
    }

    pub(super) fn shut_down(&self) {
        lock(&self.state).shutdown = true;
        self.changed.notify_all();
        self.room.notify_all();
    }

    pub(super) fn made_room(&self) {
        let _m = lock(&self.state);
        self.room.notify_all();
    }
}

/// The tree's durable description and what changes it, one change at a time.
pub(super) struct TreeState {
    /// The manifest in force on disk (generation 0: none written yet).
    pub(super) manifest: Manifest,
    /// Set when a manifest write failed: the tree changes no more (see the module docs).
    pub(super) failed: Option<Arc<Error>>,
}

impl TreeState {
    pub(super) fn new(manifest: Option<Manifest>) -> Self {
        let manifest = manifest.unwrap_or(Manifest {
            generation: 0,
            log_lsn: Lsn::ZERO,
            next_table_id: 1,
            next_txn_id: TxnId(0),
            tables: Vec::new(),
        });
        TreeState { manifest, failed: None }
    }
}

/// What one flush did.
struct Flushed {
    lsn: Lsn,
    entries: u64,
    bytes: u64,
    segments_removed: u64,
}

impl<D: Disk + Clone, C: Clock + Clone> Inner<D, C> {
    fn write_view(&self) -> super::view::ViewWrite<'_, D::File> {
        self.view.write()
    }

    /// Freezes the active memtable, whose last commit is at `last`, if it holds anything.
    /// Returns whether it did. The caller holds the sequencer's lock (no commit is between its
    /// claims and its inserts) and asks the flusher afterwards, outside it.
    pub(super) fn freeze(&self, last: Lsn) -> bool {
        let mut w = self.write_view();
        let cur = &**w;
        if cur.active.bytes() == 0 {
            return false;
        }
        let mut frozen = Vec::with_capacity(cur.frozen.len() + 1);
        frozen.push(Arc::new(Frozen { memtable: Arc::clone(&cur.active), last }));
        frozen.extend(cur.frozen.iter().cloned());
        let generation = cur.generation + 1;
        *w = Arc::new(View {
            generation,
            active: Arc::new(Memtable::new()),
            frozen,
            levels: cur.levels.clone(),
        });
        self.active_generation.store(generation, SeqCst);
        true
    }

    /// Whether the active memtable is full.
    pub(super) fn active_full(&self, view: &View<D::File>) -> bool {
        self.options.memtable_bytes.is_some_and(|limit| view.active.bytes() >= limit)
    }

    /// Whether a clean close should flush the memtables: automatic flushes are on and they
    /// hold at least 1/64 of [`DbOptions::memtable_bytes`](super::DbOptions::memtable_bytes)
    /// (1 MiB by default). Below that the next open replays them in milliseconds, and a close
    /// of a small database (one `waldb put`) writes no table.
    pub(super) fn worth_flushing_at_close(&self) -> bool {
        let view = self.view();
        let held = view.active.bytes() + view.frozen.iter().map(|f| f.memtable.bytes()).sum::<u64>();
        self.options.memtable_bytes.is_some_and(|limit| held >= limit / 64)
    }

    /// Whether a commit on `view` must wait for a flush or a compaction first
    /// ([`Inner::wait_for_room`]).
    pub(super) fn needs_room(&self, view: &View<D::File>) -> bool {
        view.frozen.len() >= (self.options.memtables_max - 1) as usize
            || view.levels[0].len() >= super::compact::L0_STOP_TABLES
    }

    /// Before a commit, with background threads: while level 0 holds
    /// [`L0_SLOWDOWN_TABLES`](super::compact::L0_SLOWDOWN_TABLES) tables or more, sleeps
    /// 100 µs per table over it less one (a write slowdown, counted), so that the compactor
    /// gets the CPU before level 0 reaches the stop — many short waits instead of one long
    /// stall.
    pub(super) fn slow_down(&self, view: &View<D::File>) {
        let l0 = view.levels[0].len();
        if !self.in_background() || l0 < super::compact::L0_SLOWDOWN_TABLES {
            return;
        }
        let over = u64::try_from(l0 - super::compact::L0_SLOWDOWN_TABLES + 1).unwrap_or(u64::MAX);
        self.slowdowns.fetch_add(1, SeqCst);
        std::thread::sleep(Duration::from_micros(100 * over));
    }

    /// Whether this database runs flushes and compactions on its own threads.
    pub(super) fn in_background(&self) -> bool {
        self.options.driver != Driver::Manual && self.options.memtable_bytes.is_some()
    }

    /// Runs the compactions needed now, on this thread (without background threads). Level 0
    /// goes by the quiet trigger ([`L0_QUIET_COMPACT_TABLES`](super::compact::L0_QUIET_COMPACT_TABLES)):
    /// without threads there is no "while flushes keep coming", and the campaigns, which run
    /// this way, compact more often.
    fn compact_inline(&self) -> Result<()> {
        while self.compact_step(true)? {}
        Ok(())
    }

    /// Before a commit: waits while too many memtables are frozen (or, under
    /// [`Driver::Manual`], flushes the oldest).
    ///
    /// # Errors
    ///
    /// The error of the failing flush, if flushes fail while the commit would wait; nothing
    /// was written.
    pub(super) fn wait_for_room(&self) -> Result<()> {
        if !self.needs_room(&self.view()) {
            return Ok(());
        }
        if !self.in_background() {
            while self.view().frozen.len() >= (self.options.memtables_max - 1) as usize {
                if self.flush_oldest()?.is_none() {
                    break;
                }
            }
            return self.compact_inline();
        }
        let started = self.clock.now();
        self.stalls.fetch_add(1, SeqCst);
        tracing::debug!(
            frozen = self.view().frozen.len(),
            "write stall: waiting for a flush or a compaction"
        );
        let mut m = lock(&self.mailbox.state);
        let result = loop {
            if !self.needs_room(&self.view()) {
                break Ok(());
            }
            if let Some(e) = lock(&self.last_flush_error).as_ref() {
                break Err(e.clone_lossy());
            }
            if m.shutdown || self.closed.load(SeqCst) {
                break Err(Error::Closed);
            }
            let (guard, _) = self
                .mailbox
                .room
                .wait_timeout(m, Duration::from_millis(100))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m = guard;
        };
        drop(m);
        let waited = u64::try_from(self.clock.now().saturating_sub(started).as_nanos()).unwrap_or(u64::MAX);
        self.stall_nanos.fetch_add(waited, SeqCst);
        result
    }

    /// Freezes the active memtable and flushes every frozen one: [`Db::checkpoint`](super::Db::checkpoint).
    pub(super) fn flush_all(&self) -> Result<CheckpointReport> {
        let _span = tracing::debug_span!("waldb::checkpoint", dir = %self.dir.display()).entered();
        if self.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let report = self.flush_memtables()?;
        if self.in_background() {
            self.mailbox.request_compaction();
        } else {
            self.compact_inline()?;
        }
        tracing::debug!(
            lsn = report.lsn.map(|l| l.0),
            entries = report.entries,
            bytes = report.bytes,
            segments_removed = report.segments_removed,
            "flushed"
        );
        Ok(report)
    }

    /// Freezes the active memtable and flushes every frozen one, oldest first; with nothing to
    /// flush, removes the segments a crash kept from being removed. For [`Inner::flush_all`],
    /// and for [`Inner::close`], which leaves nothing for the next open to replay.
    pub(super) fn flush_memtables(&self) -> Result<CheckpointReport> {
        {
            let _seq = lock(&self.sequencer);
            self.freeze(Lsn(self.sequenced.load(SeqCst)));
        }
        let mut report = CheckpointReport { lsn: None, entries: 0, bytes: 0, segments_removed: 0 };
        while let Some(f) = self.flush_oldest()? {
            report.lsn = Some(f.lsn);
            report.entries += f.entries;
            report.bytes += f.bytes;
            report.segments_removed += f.segments_removed;
        }
        if report.lsn.is_none() {
            let log_lsn = lock(&self.tree).manifest.log_lsn;
            report.segments_removed = remove_segments_through(&self.disk, &self.dir.join(WAL_DIR), log_lsn)?;
        }
        Ok(report)
    }

    /// Flushes the oldest frozen memtable, if there is one (see the module docs for the steps).
    fn flush_oldest(&self) -> Result<Option<Flushed>> {
        let mut tree = lock(&self.tree);
        if let Some(e) = &tree.failed {
            return Err(e.clone_lossy());
        }
        let Some(f) = self.view().frozen.last().cloned() else { return Ok(None) };
        let f_last = f.last;
        // Every commit it holds must be durable before the manifest claims it, and visible
        // before the horizon is read (which never passes the visible LSN).
        if self.wal.durable_lsn() < f.last {
            self.wal.sync()?;
        }
        self.advance_visible();
        debug_assert!(self.visible.load(SeqCst) >= f.last.0, "flushing what is not visible");
        let horizon = self.horizon();
        let id = tree.manifest.next_table_id;
        let path = manifest::table_path(&self.dir, id);
        let table = match self.write_table(&f.memtable, horizon, &path) {
            Ok(t) => t,
            Err(e) => {
                // Best effort: an orphan is also removed at the next open.
                let _ = self.disk.remove_file(&path);
                return Err(e);
            }
        };
        let mut next = tree.manifest.clone();
        next.generation += 1;
        next.log_lsn = f.last;
        next.next_txn_id = TxnId(self.next_txn.load(SeqCst));
        let (entries, bytes) = table.as_ref().map_or((0, 0), |t| (t.record.entry_count, t.record.file_bytes));
        if let Some(t) = &table {
            next.next_table_id = id + 1;
            let at = next.tables.iter().take_while(|r| r.level == 0).count();
            next.tables.insert(at, t.record.clone());
        }
        if let Err(e) = manifest::write(&self.disk, &self.dir, &next) {
            // Whether it is in force is unknown: the table stays (an orphan if it is not).
            tracing::error!(dir = %self.dir.display(), error = %e, "manifest write failed: flushes stop until reopened");
            tree.failed = Some(Arc::new(e.clone_lossy()));
            return Err(e);
        }
        tree.manifest = next;
        {
            let mut w = self.write_view();
            let cur = &**w;
            let frozen = cur.frozen.iter().filter(|g| !Arc::ptr_eq(g, &f)).cloned().collect();
            let mut levels = cur.levels.clone();
            if let Some(t) = table {
                levels[0].insert(0, Arc::new(t));
            }
            *w = Arc::new(View {
                generation: cur.generation,
                active: Arc::clone(&cur.active),
                frozen,
                levels,
            });
        }
        self.checkpoints.fetch_add(1, SeqCst);
        self.flush_bytes_written.fetch_add(bytes, SeqCst);
        lock(&self.retired).push(Arc::clone(&f.memtable));
        drop(f);
        let segments_removed = remove_segments_through(&self.disk, &self.dir.join(WAL_DIR), f_last)?;
        drop(tree);
        self.mailbox.made_room();
        self.free_retired();
        if self.in_background() {
            self.mailbox.request_compaction();
        }
        Ok(Some(Flushed { lsn: f_last, entries, bytes, segments_removed }))
    }

    /// Frees the flushed memtables that no view holds any more, on this thread (the flusher's,
    /// or the compactor's after a compaction): a memtable is freed by whoever drops its last
    /// reference, and a commit must not be the one (its frees take as long as its inserts
    /// took). One that a reader still holds waits for the next call.
    pub(super) fn free_retired(&self) {
        let unheld: Vec<Arc<Memtable>> = {
            let mut retired = lock(&self.retired);
            // A retired memtable is in no current view: once only this list holds it, nothing
            // can take a new reference to it.
            let (unheld, held) =
                std::mem::take(&mut *retired).into_iter().partition(|m| Arc::strong_count(m) == 1);
            *retired = held;
            unheld
        };
        drop(unheld);
    }

    /// Writes the versions of `memtable` a snapshot at or above `horizon` can read to a table at
    /// `path`, syncs it and its name, and opens it: `None` if there was nothing to write.
    fn write_table(
        &self,
        memtable: &Memtable,
        horizon: Lsn,
        path: &std::path::Path,
    ) -> Result<Option<TableRef<D::File>>> {
        let mut w = self.create_table(path)?;
        let mut failed = None;
        memtable.for_each_version(horizon, |key, lsn, value| {
            if failed.is_none()
                && let Err(e) = w.add(key, lsn, value.map(|v| &**v))
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if w.is_empty() {
            drop(w);
            self.disk.remove_file(path).ctx("remove", path)?;
            return Ok(None);
        }
        let meta = w.finish()?;
        let dir = path.parent().expect("tables live in a directory");
        self.disk.sync_dir(dir).ctx("sync_dir", dir)?;
        let id = manifest::table_id(path.file_name().and_then(|n| n.to_str()).unwrap_or_default())
            .expect("a table's own name");
        let table = self.open_new_table(path, id, 0, meta)?;
        Ok(Some(table))
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Inner<D, C> {
    /// A writer of a new table at `path` (a flush's or a compaction's), built and synced as the
    /// options say.
    pub(super) fn create_table(&self, path: &std::path::Path) -> Result<TableWriter<D::File>> {
        Ok(TableWriter::create(&self.disk, path, self.options.build_options())?
            .with_sync_every(self.options.table_sync_bytes.unwrap_or(u64::MAX)))
    }

    /// Opens table `id`, just written at `path` as `meta` says, for `level`, reading through the
    /// database's cache and counting its reads.
    pub(super) fn open_new_table(
        &self,
        path: &std::path::Path,
        id: u64,
        level: usize,
        meta: super::table::TableMeta,
    ) -> Result<TableRef<D::File>> {
        let file = self.disk.open(path, OpenMode::Read).ctx("open", path)?;
        let table = Table::open(file, path, self.options.table_limits())?.with_cache(
            self.cache.clone(),
            id,
            Arc::clone(&self.block_reads),
        );
        let record = manifest::TableRecord {
            id,
            level: u8::try_from(level).expect("a level below LEVELS"),
            file_bytes: meta.file_bytes,
            entry_count: meta.entry_count,
            min_lsn: meta.min_lsn,
            max_lsn: meta.max_lsn,
            smallest: meta.smallest,
            largest: meta.largest,
        };
        Ok(TableRef { record, table: Arc::new(table) })
    }
}

/// The background flusher: flushes what is frozen whenever asked; after a failure, tries again
/// a second later (sooner if asked).
pub(super) fn flush_loop<D: Disk + Clone, C: Clock + Clone>(
    mailbox: &Mailbox,
    weak: &std::sync::Weak<Inner<D, C>>,
) {
    let mut retry = false;
    while mailbox.wait_for_flush(retry) {
        let Some(inner) = weak.upgrade() else { return };
        retry = false;
        loop {
            match inner.flush_oldest() {
                Ok(Some(_)) => *lock(&inner.last_flush_error) = None,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(dir = %inner.dir.display(), error = %e, "flush failed");
                    let stop = matches!(e, Error::Poisoned { .. } | Error::Closed)
                        || lock(&inner.tree).failed.is_some();
                    *lock(&inner.last_flush_error) = Some(e);
                    inner.mailbox.made_room();
                    if stop {
                        return;
                    }
                    retry = true;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::db::{Db, DbOptions, lock};
    use crate::wal::Driver;

    /// A reader whose view outlives the flush of a memtable does not free that memtable when
    /// it lets the view go: the flusher (here the caller of the flushes) does, at its next
    /// flush. Without it a commit freed 64 MiB memtables inline (`examples/snapshot_hold`:
    /// slowest commit 80–168 ms).
    #[test]
    fn a_reader_never_frees_a_flushed_memtable() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open_opts(dir.path(), DbOptions::default().with_driver(Driver::Manual)).unwrap();
        db.transact(|t| t.put(b"a", b"1")).unwrap();
        let reader = db.inner.view();
        let memtable = Arc::downgrade(&reader.active);
        db.checkpoint().unwrap();
        assert!(db.inner.view().frozen.is_empty(), "flushed");
        assert_eq!(lock(&db.inner.retired).len(), 1, "kept by the flusher while a reader holds it");
        drop(reader);
        assert!(memtable.upgrade().is_some(), "freed by the reader's thread");
        db.transact(|t| t.put(b"b", b"2")).unwrap();
        db.checkpoint().unwrap();
        assert!(memtable.upgrade().is_none(), "not freed by the next flush");
        assert!(lock(&db.inner.retired).is_empty(), "the second memtable had no reader: freed at once");
    }
}
