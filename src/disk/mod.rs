//! The `Disk` seam: everything waldb needs from a filesystem, and nothing more.
//!
//! All of waldb's file I/O goes through [`Disk`] and [`DiskFile`]. [`StdDisk`] maps them to real
//! files; `SimDisk` (feature `sim`) is an in-memory disk with a volatile cache, a durable image
//! and a seeded fault model, so the same WAL code runs unchanged under deterministic crash
//! simulation.
//!
//! # The durability contract
//!
//! Implementations must behave as if they had a volatile cache in front of stable storage:
//!
//! - **Data** written with [`DiskFile::write_all_at`] or [`DiskFile::set_len`] is durable once a
//!   later [`DiskFile::sync_data`] or [`DiskFile::sync_all`] on the same file has returned `Ok`.
//!   Before that, a crash may lose it, keep it, or keep any sector-aligned part of it, and may do
//!   so independently for each write (later writes can survive while earlier ones are lost).
//! - **Names** — a file created, renamed or removed, a directory created — are durable once a later
//!   [`Disk::sync_dir`] of the directory holding the name has returned `Ok`. Syncing a file does
//!   not make its name durable.
//! - A sync that returns an error promises nothing, not even about writes that an earlier
//!   successful sync did not cover: on Linux the kernel may have dropped the dirty pages. Callers
//!   must not retry it as if it had worked (waldb poisons the log instead).
//! - A write may fail after writing part of its bytes (for instance when the disk fills up).
//!
//! Reads see every write made so far through any handle, synced or not.
//!
//! # Assumptions waldb makes beyond the contract
//!
//! None. In particular waldb does not assume that sector writes are atomic, that writes reach
//! the disk in order, or that `rename` is durable without a directory sync.

// The file is `std.rs` (the one place allowed to touch `std::fs`); the module is not named `std`
// so that it does not shadow the standard library.
mod page_buf;
#[path = "std.rs"]
mod std_disk;

#[cfg(feature = "sim")]
pub mod sim;

pub(crate) use page_buf::PageBuf;
pub use std_disk::{StdDisk, StdFile};

use std::io;
use std::path::Path;

/// How [`Disk::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// A new, empty file for reading and writing; fails with `AlreadyExists` if the name exists.
    /// The name is durable only after [`Disk::sync_dir`] of its directory.
    CreateNew,
}

/// A filesystem, narrowed to what waldb uses. See the [module docs](self) for what is durable
/// when.
///
/// Paths are absolute or relative to the process's working directory for [`StdDisk`]; a
/// simulated disk interprets them in its own namespace.
pub trait Disk: Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;

    /// Opens or creates the file at `path` as `mode` says.
    ///
    /// # Errors
    ///
    /// `NotFound` for a missing file in `Read`/`ReadWrite` mode or a missing parent directory,
    /// `AlreadyExists` for `CreateNew` on an existing name, and any other I/O error.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;

    /// Creates `path` and any missing parent directories. The new names are durable only after
    /// [`Disk::sync_dir`] of each parent.
    ///
    /// # Errors
    ///
    /// Any I/O error; an existing directory is not an error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names of the entries (files and directories) in the directory `path`, in no
    /// particular order. Names that are not valid UTF-8 are left out.
    ///
    /// # Errors
    ///
    /// `NotFound` if the directory does not exist; `NotADirectory` if it is a file.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// True if `path` names an existing directory.
    fn is_dir(&self, path: &Path) -> bool;

    /// Renames the file `from` to `to`, replacing `to` if it exists. Durable after
    /// [`Disk::sync_dir`] of the directory (both names must be in the same directory for a
    /// simulated disk).
    ///
    /// # Errors
    ///
    /// `NotFound` if `from` does not exist, and any other I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path`. Durable after [`Disk::sync_dir`] of its directory. Open handles
    /// keep working on the removed file's data.
    ///
    /// # Errors
    ///
    /// `NotFound` if it does not exist, and any other I/O error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Makes every create, rename and remove of a name in directory `path` durable.
    ///
    /// # Errors
    ///
    /// Any I/O error; after an error nothing is promised about those names.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Writes `len` zero bytes at the start of the file `path`, open as `file`: how a log
    /// segment is prepared. Durable after [`DiskFile::sync_all`] of `file`, as any write.
    ///
    /// This default writes them through `file`, [`ZERO_CHUNK_BYTES`] at a time. [`StdDisk`]
    /// writes them past the OS cache where the filesystem allows it (`O_DIRECT` on Linux), so
    /// that preparing a segment neither costs a copy of every byte into the cache nor leaves
    /// the cache a backlog to write back behind a commit's sync.
    ///
    /// # Errors
    ///
    /// Any I/O error; some of the zeros may have been written.
    fn write_zeros(&self, path: &Path, file: &Self::File, len: u64) -> io::Result<()> {
        let _ = path;
        write_zeros_through(file, 0, len)
    }
}

/// Bytes of zeros written per call by [`Disk::write_zeros`].
pub const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

/// Writes `len` zero bytes at `offset` of `file` through [`DiskFile::write_all_at`].
pub(crate) fn write_zeros_through<F: DiskFile>(file: &F, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; usize::try_from(len).map_or(ZERO_CHUNK_BYTES, |l| l.min(ZERO_CHUNK_BYTES))];
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from((len - at).min(zeros.len() as u64)).expect("at most one chunk");
        file.write_all_at(&zeros[..n], offset + at)?;
        at += n as u64;
    }
    Ok(())
}

/// An open file with positional I/O. Methods take `&self` so that one handle can be shared
/// between a writer and readers.
// `len` is the file's length in bytes, as in the standard library's `Metadata::len`; an
// `is_empty` would add nothing the engine uses.
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: Send + Sync + 'static {
    /// Fills `buf` from the bytes at `offset`.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the file ends before `buf` is full, and any I/O error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, growing the file if needed. Durable after a later
    /// successful sync.
    ///
    /// # Errors
    ///
    /// Any I/O error; a failed write may have written part of `buf`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, as [`DiskFile::write_all_at`] does and with the same
    /// contract: what the log writes, whole 4 KiB pages at a page-aligned offset (a segment's
    /// last page may be cut short by its end).
    ///
    /// This default calls [`DiskFile::write_all_at`]. [`StdDisk`] writes such pages past the OS
    /// cache (`O_DIRECT` on Linux, where the filesystem allows it): no copy into the cache, and
    /// less for the next sync to do. The sync is still needed: the disk's own cache may hold
    /// the bytes.
    ///
    /// # Errors
    ///
    /// Any I/O error; a failed write may have written part of `buf`.
    fn write_pages_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    /// [`DiskFile::write_pages_at`], then [`DiskFile::sync_data`]: on success `buf` and every
    /// earlier write to the file are durable, as after those two calls. How the log writes a
    /// batch that a commit waits on.
    ///
    /// This default makes those two calls. [`StdDisk`] makes one where it can: a write past the
    /// OS cache with `RWF_DSYNC` on Linux, which the kernel completes only once the bytes
    /// (and any metadata needed to read them) are durable, flushing the disk's cache. It does
    /// so only when nothing else was written to the file since its last sync: `RWF_DSYNC`
    /// makes only its own range durable.
    ///
    /// # Errors
    ///
    /// Any I/O error, from the write or the sync; after one, nothing is promised about what
    /// was written since the last successful sync.
    fn write_pages_synced_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_pages_at(buf, offset)?;
        self.sync_data()
    }

    /// The file's current length in bytes (including unsynced writes).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) the file to `len` bytes. Durable after a later
    /// successful sync.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's data and length durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// Any I/O error; after an error nothing is promised about unsynced writes, and retrying does
    /// not make them durable.
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and all its metadata durable (`fsync`). Does not make its name
    /// durable: that takes [`Disk::sync_dir`].
    ///
    /// # Errors
    ///
    /// As [`DiskFile::sync_data`].
    fn sync_all(&self) -> io::Result<()>;

    /// Takes an exclusive advisory lock on the file without waiting; `Ok(false)` if another
    /// handle — in this process or another — holds one. The lock lasts until this handle is
    /// dropped (or the process ends). Nothing about it is durable.
    ///
    /// # Errors
    ///
    /// Any I/O error other than "locked"; `Unsupported` where the platform has no file locks.
    fn try_lock(&self) -> io::Result<bool>;
}

/// Reads a whole file of at most `max_bytes` bytes.
///
/// # Errors
///
/// `InvalidData` if the file is longer than `max_bytes` (nothing is allocated for it), and any
/// I/O error.
pub fn read_file<D: Disk>(disk: &D, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = disk.open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file of {len} bytes is larger than the limit of {max_bytes} bytes"),
        ));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
