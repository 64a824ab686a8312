//! Loading a database's state from its files: the newest checkpoint, then the log records
//! above it, into a fresh memtable. Reads only: shared by [`Db::open_with`](super::Db::open_with),
//! which then resumes the log (cutting a torn tail) and writes, and by
//! [`ReadOnlyDb`](super::ReadOnlyDb), which writes nothing.
//!
//! - The state loaded is that of the first K commits in LSN order: the checkpoint's (every
//!   commit up to its LSN), then each later transaction record whole, in order.
//! - A log that starts after the checkpoint's LSN is missing segments: corruption, not a
//!   shorter state.
//! - Nothing is allocated by an unchecked length: the checkpoint's size is bounded by
//!   [`DbOptions::checkpoint_bytes_max`], its entries by the database's [`Limits`](super::Limits),
//!   and the log's records by the largest transaction.

use std::path::Path;

use super::checkpoint::{self, CheckpointLimits};
use super::memtable::{Memtable, Value};
use super::{CHECKPOINT_FILE, DbOptions, Key, WAL_DIR};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::types::Lsn;
use crate::wal::{LogReader, Op, RecordKind, RecoveryReport, decode_txn};

/// What [`load`] read.
pub(super) struct Loaded {
    /// Every version loaded, at its LSN (the checkpoint's at the checkpoint's LSN).
    pub memtable: Memtable,
    /// The LSN of the checkpoint loaded, if there was one.
    pub checkpoint: Option<Lsn>,
    /// Entries loaded from it.
    pub checkpoint_entries: u64,
    /// Transactions replayed from the log above it.
    pub txns_replayed: u64,
    /// The LSN of the last commit loaded (the checkpoint's if no record was above it).
    pub reached: Lsn,
    /// No transaction id below this was used: past the checkpoint's and every replayed one.
    pub next_txn_floor: u64,
    /// How reading the log ended.
    pub wal: RecoveryReport,
}

/// Reads the checkpoint and the log of the database in `dir` into a memtable.
///
/// # Errors
///
/// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for a bad checkpoint, a bad log (as
/// [`LogReader`] reports it under `options.recovery`) or a log that starts after the
/// checkpoint; [`Error::Io`] for a file that cannot be read.
pub(super) fn load<D: Disk + Clone>(disk: &D, dir: &Path, options: &DbOptions) -> Result<Loaded> {
    let memtable = Memtable::new();
    let cp_path = dir.join(CHECKPOINT_FILE);
    let limits = options.limits();
    let limits =
        CheckpointLimits { key_bytes_max: limits.key_bytes_max, value_bytes_max: limits.value_bytes_max };
    let mut checkpoint = None;
    let mut checkpoint_entries = 0;
    let mut next_txn_floor = 0u64;
    match crate::disk::read_file(disk, &cp_path, options.checkpoint_bytes_max) {
        Ok(bytes) => {
            let c = checkpoint::decode(&bytes, &limits).map_err(|e| match e {
                checkpoint::CheckpointError::UnsupportedVersion(found) => Error::UnsupportedVersion {
                    file: cp_path.clone(),
                    found,
                    supported: checkpoint::CHECKPOINT_VERSION,
                },
                checkpoint::CheckpointError::Corrupt { offset, reason } => {
                    Error::corrupt(&cp_path, offset, reason)
                }
            })?;
            for (k, v) in c.entries() {
                // Every key is new here: one search, no lookup first.
                memtable.insert(&Key::from(k), c.header.lsn, Some(Value::from(v)));
                checkpoint_entries += 1;
            }
            checkpoint = Some(c.header.lsn);
            next_txn_floor = c.header.next_txn_id.0;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &cp_path, e)),
    }
    let cp_lsn = checkpoint.unwrap_or(Lsn::ZERO);

    // The log above it.
    let wal_dir = dir.join(WAL_DIR);
    let mut reader = LogReader::open(disk.clone(), &wal_dir, options.wal_options().read_options())?;
    let mut txns_replayed = 0u64;
    let mut reached = cp_lsn;
    while let Some(r) = reader.next_record()? {
        if r.lsn <= cp_lsn || r.kind != RecordKind::Txn {
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
    if wal.starts_after > cp_lsn {
        return Err(Error::corrupt(
            &wal_dir,
            0,
            format!(
                "the log starts after LSN {} but the checkpoint covers only up to LSN {cp_lsn}: \
                 segments are missing",
                wal.starts_after
            ),
        ));
    }
    Ok(Loaded { memtable, checkpoint, checkpoint_entries, txns_replayed, reached, next_txn_floor, wal })
}
