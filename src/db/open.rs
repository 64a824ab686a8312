//! Opening a database: the lock, the epoch, recovery (the manifest, its tables and the log
//! above them, read by [`load`](super::load)), then the background threads.
//!
//! ```text
//!  open ─▶ options checked ─▶ directory made durable ─▶ LOCK taken (else Error::Locked)
//!       ─▶ an old layout refused (Error::UnsupportedVersion) ─▶ EPOCH bumped durably
//!       ─▶ manifest + tables opened, orphans removed, log replayed above the manifest's LSN
//!       ─▶ the log resumed after its last whole record ─▶ flusher and compactor started
//! ```
//!
//! Nothing is written before the lock is held, and nothing but the epoch (and a cut torn tail
//! of the log, and removed orphans) before recovery has checked what it read.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use super::flush::{Mailbox, TreeState};
use super::sequencer::Sequencer;
use super::snapshots::Snapshots;
use super::{
    Db, DbOptions, EPOCH_FILE, Inner, LOCK_FILE, OpenReport, TXN_COUNTER_BITS, WAL_DIR, compact, flush, load,
    lock, manifest, view,
};
use crate::clock::{Clock, SystemClock};
use crate::disk::{Disk, DiskFile, OpenMode, StdDisk};
use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;
use crate::wal::segment::create_dir_durable;
use crate::wal::{LogWriter, Wal};

impl Db {
    /// Opens (or creates) the database in `path` with the default options, on real files.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if it is already open; [`Error::Corrupt`] for damage recovery cannot
    /// explain; [`Error::Io`] for failed file operations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(StdDisk, SystemClock::new(), path.as_ref(), DbOptions::default()).map(|(db, _)| db)
    }

    /// Opens the database in `path` with `options`, on real files, and reports what recovery did.
    ///
    /// # Errors
    ///
    /// As [`Db::open`]; [`Error::InvalidConfig`] for bad options.
    pub fn open_opts(path: impl AsRef<Path>, options: DbOptions) -> Result<(Self, OpenReport)> {
        Self::open_with(StdDisk, SystemClock::new(), path.as_ref(), options)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Db<D, C> {
    /// Opens the database in `dir` on `disk` with `clock`: takes the lock, bumps the epoch,
    /// reads the manifest and opens its tables, removes orphaned tables, replays the log above
    /// the manifest's LSN, and resumes the log.
    ///
    /// # Errors
    ///
    /// As [`Db::open_opts`].
    pub fn open_with(disk: D, clock: C, dir: &Path, options: DbOptions) -> Result<(Self, OpenReport)> {
        // The open's events (recovery, the report) are inside this span.
        let _span = tracing::info_span!("waldb::open", dir = %dir.display()).entered();
        options.validate()?;
        create_dir_durable(&disk, dir)?;
        let lock_file = take_lock(&disk, dir)?;
        load::refuse_old_format(&disk, dir)?;
        let epoch = bump_epoch(&disk, dir)?;
        let recovered = recover(&disk, &clock, dir, &options)?;
        let report = OpenReport {
            checkpoint_lsn: recovered.manifest.as_ref().map(|m| m.log_lsn),
            tables: recovered.manifest.as_ref().map_or(0, |m| m.tables.len() as u64),
            orphans_removed: recovered.orphans_removed,
            txns_replayed: recovered.txns_replayed,
            wal: recovered.wal_report.clone(),
            lsn: recovered.reached,
            epoch,
        };
        let inner = Arc::new(Inner::recovered(disk, clock, dir, options, recovered, epoch, lock_file));
        inner.start()?;
        tracing::info!(
            dir = %dir.display(),
            checkpoint_lsn = report.checkpoint_lsn.map(|l| l.0),
            tables = report.tables,
            orphans_removed = report.orphans_removed,
            txns_replayed = report.txns_replayed,
            lsn = report.lsn.0,
            epoch,
            "database opened"
        );
        Ok((Db { inner }, report))
    }
}

/// Opens `LOCK` in `dir` (creating it if need be) and locks it.
///
/// # Errors
///
/// [`Error::Locked`] if another handle holds it; [`Error::Io`].
fn take_lock<D: Disk>(disk: &D, dir: &Path) -> Result<D::File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock_file = match disk.open(&lock_path, OpenMode::ReadWrite) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match disk.open(&lock_path, OpenMode::CreateNew) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    disk.open(&lock_path, OpenMode::ReadWrite).ctx("open", &lock_path)?
                }
                Err(e) => return Err(Error::io("create", &lock_path, e)),
            }
        }
        Err(e) => return Err(Error::io("open", &lock_path, e)),
    };
    if !lock_file.try_lock().ctx("lock", &lock_path)? {
        return Err(Error::Locked { path: lock_path });
    }
    Ok(lock_file)
}

/// What recovery found and resumed.
struct Recovered<D: Disk + Clone, C: Clock + Clone> {
    view: view::View<D::File>,
    manifest: Option<manifest::Manifest>,
    orphans_removed: u64,
    txns_replayed: u64,
    reached: Lsn,
    next_txn_floor: u64,
    wal_report: crate::wal::RecoveryReport,
    wal: Wal<D, C>,
    cache: Option<Arc<super::cache::BlockCache>>,
    block_reads: Arc<AtomicU64>,
}

/// Reads the tables and the log of `dir`, removes orphaned tables, and resumes the log.
///
/// # Errors
///
/// [`Error::Corrupt`] for damage recovery cannot explain, including tables that claim more of
/// the log than it holds; [`Error::Io`].
fn recover<D: Disk + Clone, C: Clock + Clone>(
    disk: &D,
    clock: &C,
    dir: &Path,
    options: &DbOptions,
) -> Result<Recovered<D, C>> {
    let wal_dir = dir.join(WAL_DIR);
    create_dir_durable(disk, &wal_dir)?;
    let cache = options.block_cache();
    let block_reads = Arc::new(AtomicU64::new(0));
    let load::Loaded { view, manifest, txns_replayed, reached, next_txn_floor, wal: wal_report } =
        load::load(disk, dir, options, cache.as_ref(), &block_reads)?;
    let orphans_removed = manifest::remove_orphans(disk, dir, manifest.as_ref())?;
    let log_lsn = manifest.as_ref().map_or(Lsn::ZERO, |m| m.log_lsn);
    let writer = LogWriter::resume(disk.clone(), &wal_dir, options.wal_options(), &wal_report)?;
    if writer.next_lsn() <= log_lsn {
        return Err(Error::corrupt(
            dir.join(manifest::MANIFEST_FILE),
            0,
            format!("the tables hold up to LSN {log_lsn}, beyond the end of the log ({})", writer.next_lsn()),
        ));
    }
    let wal = Wal::from_writer(disk.clone(), clock.clone(), writer, options.wal_config())?;
    Ok(Recovered {
        view,
        manifest,
        orphans_removed,
        txns_replayed,
        reached,
        next_txn_floor,
        wal_report,
        wal,
        cache,
        block_reads,
    })
}

impl<D: Disk + Clone, C: Clock + Clone> Inner<D, C> {
    /// The database over what [`recover`] found, with no thread started yet.
    fn recovered(
        disk: D,
        clock: C,
        dir: &Path,
        options: DbOptions,
        r: Recovered<D, C>,
        epoch: u64,
        lock_file: D::File,
    ) -> Self {
        let first_txn = (epoch << TXN_COUNTER_BITS).max(r.next_txn_floor).max(1);
        Inner {
            dir: dir.to_path_buf(),
            disk,
            limits: options.limits(),
            options,
            clock,
            wal: r.wal,
            view: view::ViewCell::new(r.view),
            active_generation: AtomicU64::new(0),
            sequencer: Mutex::new(Sequencer::default()),
            sequenced: AtomicU64::new(r.reached.0),
            range_checks: AtomicU64::new(0),
            pending: Mutex::new(VecDeque::new()),
            visible: AtomicU64::new(r.reached.0),
            snapshots: Snapshots::new(),
            next_txn: AtomicU64::new(first_txn),
            epoch: Mutex::new(epoch),
            tree: Mutex::new(TreeState::new(r.manifest)),
            mailbox: Arc::new(Mailbox::default()),
            background: Mutex::new(Vec::new()),
            cache: r.cache,
            compacting: Mutex::new(()),
            compact_state: Mutex::new(compact::CompactState::default()),
            compactions: AtomicU64::new(0),
            table_moves: AtomicU64::new(0),
            compacting_now: AtomicBool::new(false),
            compaction_bytes_read: AtomicU64::new(0),
            compaction_bytes_written: AtomicU64::new(0),
            compaction_bytes_per_level: Default::default(),
            flush_bytes_written: AtomicU64::new(0),
            block_reads: r.block_reads,
            retired: Mutex::new(Vec::new()),
            last_flush_error: Mutex::new(None),
            freezes: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            stall_nanos: AtomicU64::new(0),
            slowdowns: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            close_result: Mutex::new(None),
            _lock: lock_file,
        }
    }

    /// Starts the flusher and the compactor (unless the driver is manual), and asks for a
    /// flush of a memtable the replay filled.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a thread cannot be spawned.
    fn start(self: &Arc<Self>) -> Result<()> {
        if self.in_background() {
            let (weak, mailbox) = (Arc::downgrade(self), Arc::clone(&self.mailbox));
            let flusher = std::thread::Builder::new()
                .name("waldb-flush".into())
                .spawn(move || flush::flush_loop(&mailbox, &weak))
                .map_err(|e| Error::io("spawn", "waldb-flush", e))?;
            lock(&self.background).push(flusher);
            let (weak, mailbox) = (Arc::downgrade(self), Arc::clone(&self.mailbox));
            let compactor = std::thread::Builder::new()
                .name("waldb-compact".into())
                .spawn(move || compact::compact_loop(&mailbox, &weak))
                .map_err(|e| Error::io("spawn", "waldb-compact", e))?;
            lock(&self.background).push(compactor);
            self.mailbox.request_compaction();
        }
        // A log replayed past the memtable's size is flushed as soon as it can be.
        if self.active_full(&self.view()) {
            let _seq = lock(&self.sequencer);
            self.freeze(Lsn(self.sequenced.load(std::sync::atomic::Ordering::SeqCst)));
        }
        self.mailbox.request();
        Ok(())
    }
}

/// Reads, bumps and durably writes the epoch of `dir`; returns the new epoch.
pub(super) fn bump_epoch<D: Disk>(disk: &D, dir: &Path) -> Result<u64> {
    let path = dir.join(EPOCH_FILE);
    let (file, previous, created) = match disk.open(&path, OpenMode::ReadWrite) {
        // Empty, shorter than an epoch (a full disk kept part of the first write), or 12 zero
        // bytes (a length that reached the disk without its data): the open that created the
        // file failed or crashed before its first epoch was durable, and an open that gets past
        // that point never shrinks or zeroes the file again (bumps rewrite the 12 bytes in
        // place: a failed one cannot make the file shorter). No epoch was ever used: start
        // from 0, as for a new file, and make its name durable too.
        Ok(f) if f.len().ctx("stat", &path)? < EPOCH_BYTES as u64 => (f, 0, true),
        Ok(f) => {
            let mut b = [0u8; EPOCH_BYTES];
            f.read_exact_at(&mut b, 0).ctx("read", &path)?;
            if b == [0u8; EPOCH_BYTES] {
                (f, 0, true)
            } else {
                let epoch = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                let crc = u32::from_le_bytes(b[8..].try_into().expect("4 bytes"));
                if crc32c::crc32c(&b[..8]) != crc {
                    return Err(Error::corrupt(&path, 0, "epoch checksum mismatch"));
                }
                (f, epoch, false)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (disk.open(&path, OpenMode::CreateNew).ctx("create", &path)?, 0, true)
        }
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let epoch = previous + 1;
    if epoch >= 1 << (64 - TXN_COUNTER_BITS) {
        return Err(Error::InvalidConfig {
            reason: "the database has used every transaction-id epoch".into(),
        });
    }
    write_epoch(&file, &path, epoch)?;
    if created {
        disk.sync_dir(dir).ctx("sync_dir", dir)?;
    }
    Ok(epoch)
}

/// The length of `EPOCH`: the epoch (8 bytes, little-endian) and its CRC-32C (4 bytes).
const EPOCH_BYTES: usize = 12;

fn write_epoch<F: DiskFile>(file: &F, path: &Path, epoch: u64) -> Result<()> {
    let mut b = [0u8; EPOCH_BYTES];
    b[..8].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&b, 0).ctx("write", path)?;
    file.sync_all().ctx("sync_all", path)
}
