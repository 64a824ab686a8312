//! Loading a database's state from its files: the manifest and the sorted tables it names,
//! then the log records above the manifest's LSN, into a fresh memtable. Reads only: shared by
//! [`Db::open_with`](super::Db::open_with), which then removes orphaned tables, resumes the log
//! (cutting a torn tail) and writes, and by [`ReadOnlyDb`](super::ReadOnlyDb), which writes
//! nothing.
//!
//! - The state loaded is that of the first K commits in LSN order: the tables' (every commit up
//!   to the manifest's LSN), then each later transaction record whole, in order.
//! - A log that starts after the manifest's LSN is missing segments: corruption, not a shorter
//!   state.
//! - Nothing is allocated by an unchecked length: the manifest is bounded
//!   ([`MANIFEST_BYTES_MAX`](super::manifest::MANIFEST_BYTES_MAX)), the tables' entries by the
//!   database's [`Limits`](super::Limits), and the log's records by the largest transaction.
//! - The whole-state checkpoint of earlier versions is refused with
//!   [`Error::UnsupportedVersion`]: open such a directory with the release that wrote it.

use std::path::Path;
use std::sync::Arc;

use super::cache::BlockCache;
use super::manifest::{self, Manifest, ManifestLimits};
use super::memtable::{Memtable, Value};
use super::table::Table;
use super::view::{TableRef, View};
use super::{DbOptions, Key, WAL_DIR};
use crate::disk::{Disk, OpenMode};
use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;
use crate::wal::{LogReader, Op, RecordKind, RecoveryReport, decode_txn};

/// The file of the whole-state checkpoint that earlier versions wrote.
pub(crate) const OLD_CHECKPOINT_FILE: &str = "checkpoint";

/// The version of the database directory's layout this build reads and writes: 2 (a manifest
/// and sorted tables) since the whole-state checkpoint (1) went.
pub(crate) const DB_FORMAT_VERSION: u32 = 2;

/// What [`load`] read.
pub(super) struct Loaded<D: Disk> {
    /// The tables, and the log's records above them in a memtable.
    pub view: View<D::File>,
    /// The manifest read, if there was one.
    pub manifest: Option<Manifest>,
    /// Transactions replayed from the log above it.
    pub txns_replayed: u64,
    /// The LSN of the last commit loaded (the manifest's if no record was above it).
    pub reached: Lsn,
    /// No transaction id below this was used: past the manifest's and every replayed one.
    pub next_txn_floor: u64,
    /// How reading the log ended.
    pub wal: RecoveryReport,
}

/// Refuses a directory of the layout before sorted tables (a whole-state `checkpoint` file),
/// before anything is written to it.
///
/// # Errors
///
/// [`Error::UnsupportedVersion`] naming the checkpoint file.
pub(super) fn refuse_old_format<D: Disk>(disk: &D, dir: &Path) -> Result<()> {
    let old = dir.join(OLD_CHECKPOINT_FILE);
    match disk.open(&old, OpenMode::Read) {
        Ok(_) => Err(Error::UnsupportedVersion { file: old, found: 1, supported: DB_FORMAT_VERSION }),
        Err(_) => Ok(()),
    }
}

/// The bounds the manifest is read with.
pub(crate) fn manifest_limits(options: &DbOptions) -> ManifestLimits {
    ManifestLimits { key_bytes_max: options.limits().key_bytes_max }
}

/// Reads the manifest, opens its tables and replays the log of the database in `dir`.
///
/// # Errors
///
/// [`Error::UnsupportedVersion`] for a directory of an older layout, or a file of a newer
/// format; [`Error::Corrupt`] for a bad manifest, table or log (as [`LogReader`] reports it under
/// `options.recovery`) or a log that starts after the manifest's LSN; [`Error::Io`] for a file
/// that cannot be read.
pub(super) fn load<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    options: &DbOptions,
    cache: Option<&Arc<BlockCache>>,
    block_reads: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<Loaded<D>> {
    refuse_old_format(disk, dir)?;
    let manifest = manifest::read(disk, dir, &manifest_limits(options))?;
    let mut view = View::new(Memtable::new());
    let levels = &mut view.levels;
    let table_limits = options.table_limits();
    for record in manifest.iter().flat_map(|m| &m.tables) {
        let path = manifest::table_path(dir, record.id);
        let file = disk.open(&path, OpenMode::Read).ctx("open", &path)?;
        let mut table = Table::open(file, &path, table_limits)?;
        table = table.with_cache(cache.cloned(), record.id, Arc::clone(block_reads));
        let footer = table.footer();
        if (footer.entry_count, footer.min_lsn, footer.max_lsn)
            != (record.entry_count, record.min_lsn, record.max_lsn)
        {
            return Err(Error::corrupt(&path, 0, "the table is not the one the manifest names"));
        }
        levels[usize::from(record.level)]
            .push(Arc::new(TableRef { record: record.clone(), table: Arc::new(table) }));
    }
    // Level 0 is read newest first; the manifest lists it oldest first.
    levels[0].reverse();
    let log_lsn = manifest.as_ref().map_or(Lsn::ZERO, |m| m.log_lsn);
    let mut next_txn_floor = manifest.as_ref().map_or(0, |m| m.next_txn_id.0);

    // The log above it.
    let memtable = &view.active;
    let wal_dir = dir.join(WAL_DIR);
    let mut reader = LogReader::open(disk.clone(), &wal_dir, options.wal_options().read_options())?;
    let mut txns_replayed = 0u64;
    let mut reached = log_lsn;
    while let Some(r) = reader.next_record()? {
        if r.lsn <= log_lsn || r.kind != RecordKind::Txn {
            continue;
        }
        let t = decode_txn(r.payload).map_err(|e| Error::corrupt(wal_dir.clone(), r.offset, e.0))?;
        for op in t.ops() {
            match op {
                // Mostly new keys: one search (an overwrite wastes the key's allocation).
                Op::Put { key, value } => memtable.insert(&Key::from(key), r.lsn, Some(Value::from(value))),
                Op::Delete { key } => memtable.insert(&Key::from(key), r.lsn, None),
            }
        }
        debug_assert!(r.lsn > reached, "records come in LSN order: {} after {reached}", r.lsn);
        next_txn_floor = next_txn_floor.max(t.txn_id.0.saturating_add(1));
        txns_replayed += 1;
        reached = r.lsn;
    }
    let wal = reader.report().expect("read to the end").clone();
    if wal.starts_after > log_lsn {
        return Err(Error::corrupt(
            &wal_dir,
            0,
            format!(
                "the log starts after LSN {} but the tables hold only up to LSN {log_lsn}: segments are missing",
                wal.starts_after
            ),
        ));
    }
    Ok(Loaded { view, manifest, txns_replayed, reached, next_txn_floor, wal })
}
