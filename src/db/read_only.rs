//! [`ReadOnlyDb`]: a database's state read from its files without writing anything.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use super::load::{self, Loaded};
use super::view::View;
use super::{DbOptions, Limits, Pair, WAL_DIR};
use crate::disk::{Disk, StdDisk};
use crate::error::{Error, Result};
use crate::types::Lsn;
use crate::wal::RecoveryReport;

/// Loads [`ReadOnlyDb::open_with`] tries before it returns a load's error (see there).
const LOAD_TRIES: u32 = 3;

/// A database opened for reading only: the state its files hold, loaded without writing to
/// them.
///
/// - **Writes nothing.** No lock is taken, no epoch is bumped, no torn tail is cut, no
///   segment or directory is created, no temporary file is removed: a directory under
///   inspection stays byte for byte as it was — the evidence of a fault included.
/// - **Works beside a live owner.** Since it takes no lock, it opens a directory that a
///   running process holds. Its view is the state on disk when it was opened: commits that
///   process acknowledged later, or had not yet written, are not in it. A record being written
///   at that moment reads as a torn tail and is left out. A flush (or checkpoint) the owner
///   runs meanwhile can remove the log segments the open was reading: the open then loads
///   again (three loads at most), from the new manifest.
/// - **A prefix, as recovery would load it.** The state is that of the first K commits in LSN
///   order, as [`Db::open`](super::Db::open) would load it (without cutting anything).
///
/// ```
/// # fn main() -> waldb::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = waldb::Db::open(dir.path())?; // a live owner
/// db.transact(|txn| txn.put(b"k", b"v"))?;
///
/// let view = waldb::db::ReadOnlyDb::open(dir.path())?; // beside it: no lock taken
/// assert_eq!(view.get(b"k")?.as_deref(), Some(&b"v"[..]));
/// assert_eq!(view.lsn(), db.visible_lsn());
/// # Ok(()) }
/// ```
pub struct ReadOnlyDb<D: Disk = StdDisk> {
    view: View<D::File>,
    lsn: Lsn,
    checkpoint: Option<Lsn>,
    txns_replayed: u64,
    wal: RecoveryReport,
    limits: Limits,
}

impl<D: Disk> std::fmt::Debug for ReadOnlyDb<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyDb").field("lsn", &self.lsn).finish_non_exhaustive()
    }
}

impl ReadOnlyDb {
    /// Reads the database in `path` on real files, with the default options.
    ///
    /// # Errors
    ///
    /// As [`ReadOnlyDb::open_with`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(&StdDisk, path.as_ref(), &DbOptions::default())
    }
}

impl<D: Disk + Clone> ReadOnlyDb<D> {
    /// Reads the database in `dir` on `disk`. `options` gives the recovery mode and the
    /// limits the files are checked against (those the database was written with, or larger).
    ///
    /// # Errors
    ///
    /// [`Error::NotWaldb`] if `dir` is missing or holds no `wal/` directory (nothing is created);
    /// [`Error::Corrupt`], [`Error::UnsupportedVersion`] or [`Error::Io`] as
    /// [`Db::open`](super::Db::open) reports them — for a corrupt or unreadable file, after
    /// three loads, since a flush a live owner runs during a load can remove the segments it
    /// reads.
    pub fn open_with(disk: &D, dir: &Path, options: &DbOptions) -> Result<Self> {
        let not_waldb = |reason: &str| Error::NotWaldb { path: dir.to_path_buf(), reason: reason.to_owned() };
        if !disk.is_dir(dir) {
            return Err(not_waldb("no such directory"));
        }
        if !disk.is_dir(&dir.join(WAL_DIR)) {
            return Err(not_waldb("it holds no wal/ directory"));
        }
        let mut tries = 0;
        let Loaded { view, manifest, txns_replayed, reached, wal, .. } = loop {
            tries += 1;
            let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
            match load::load(disk, dir, options, options.block_cache().as_ref(), &reads) {
                Ok(loaded) => break loaded,
                // A flush a live owner ran meanwhile may have removed segments this load was
                // reading (a missing file, or a log that now starts after the manifest read):
                // the next load reads the new manifest. Real damage fails every time.
                Err(e) if tries < LOAD_TRIES && (e.is_corrupt() || matches!(e, Error::Io { .. })) => {}
                Err(e) => return Err(e),
            }
        };
        let checkpoint = manifest.map(|m| m.log_lsn);
        Ok(ReadOnlyDb { view, lsn: reached, checkpoint, txns_replayed, wal, limits: options.limits() })
    }

    /// The LSN of the last commit in the view: it holds every commit up to it.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The LSN up to which the view's sorted tables hold every commit (the manifest's), if the
    /// database has a manifest.
    pub fn checkpoint_lsn(&self) -> Option<Lsn> {
        self.checkpoint
    }

    /// Transactions read from the log above the checkpoint.
    pub fn txns_replayed(&self) -> u64 {
        self.txns_replayed
    }

    /// How reading the log ended (a torn tail is reported here, not cut).
    pub fn wal_report(&self) -> &RecoveryReport {
        &self.wal
    }

    /// Keys in the view, live or deleted in the log above the checkpoint.
    pub fn key_count(&self) -> u64 {
        self.view.active.key_count() as u64
    }

    /// Reads `key`.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a key over the limit.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>> {
        let max = self.limits.key_bytes_max;
        if key.len() as u64 > u64::from(max) {
            return Err(Error::TooLarge { what: "key", len: key.len() as u64, max: u64::from(max) });
        }
        self.view.get(key, self.lsn)
    }

    /// Every live pair with a key in `range`, in key order.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for scans that read from disk.
    pub fn scan<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Result<Vec<Pair>> {
        self.scan_limit(range, usize::MAX)
    }

    /// Like [`ReadOnlyDb::scan`], stopping after `limit` pairs.
    ///
    /// # Errors
    ///
    /// As [`ReadOnlyDb::scan`].
    pub fn scan_limit<'k, R: RangeBounds<&'k [u8]>>(&self, range: R, limit: usize) -> Result<Vec<Pair>> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
            (range.start_bound().map(|k| *k), range.end_bound().map(|k| *k));
        self.view.range(bounds, self.lsn, limit)
    }
}
