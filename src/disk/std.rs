//! [`StdDisk`]: the [`Disk`] seam over real files, the only place in the library that touches
//! `std::fs`.
//!
//! - `sync_data` is `fdatasync`, `sync_all` is `fsync`.
//! - A directory is synced by opening it and calling `fsync` on it (Unix). On other platforms
//!   `sync_dir` does nothing: there is no portable way to sync a directory entry.

#[cfg(target_os = "linux")]
use super::PageBuf;
#[cfg(target_os = "linux")]
use super::page_buf::PAGE_ALIGN;
use super::{Disk, DiskFile, OpenMode};
use std::fs;
use std::io;
use std::path::Path;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

/// A real file opened by [`StdDisk`].
#[derive(Debug)]
pub struct StdFile {
    file: fs::File,
    /// The same file opened again past the OS cache, for [`DiskFile::write_pages_at`]: opened
    /// at its first aligned call.
    #[cfg(target_os = "linux")]
    direct: std::sync::Mutex<Direct>,
    /// Whether anything was written to the file, or its length changed, since the last
    /// successful sync. A write with `RWF_DSYNC` makes its own range durable (and flushes the
    /// disk's cache), but writes back no other range of the OS cache, which holds every write
    /// that went through the cache, and on some filesystems some made with `O_DIRECT`: it
    /// stands for a sync of the file only while this is false.
    #[cfg(target_os = "linux")]
    unsynced: AtomicBool,
    /// Write calls made with `RWF_DSYNC`, for the tests.
    #[cfg(all(test, target_os = "linux"))]
    dsync_writes: std::sync::atomic::AtomicU64,
}

/// A [`StdFile`]'s handle past the OS cache.
#[cfg(target_os = "linux")]
#[derive(Debug)]
enum Direct {
    /// Not tried yet.
    Untried,
    /// Open, with an aligned copy of what it writes when that is not aligned (at most
    /// [`DIRECT_BOUNCE_BYTES`] at a time), and whether the kernel takes `RWF_DSYNC` (until it
    /// refuses it).
    Open { file: fs::File, bounce: PageBuf, dsync: bool },
    /// Refused (the filesystem does not take `O_DIRECT`, or its alignment, or `/proc` is
    /// missing): every write goes through the cache.
    Refused,
}

/// The most bytes of one `O_DIRECT` write: a longer [`DiskFile::write_pages_at`] is written in
/// pieces of this size.
#[cfg(target_os = "linux")]
const DIRECT_BOUNCE_BYTES: usize = 4 * 1024 * 1024;

impl Disk for StdDisk {
    type File = StdFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<StdFile> {
        let mut options = fs::OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(StdFile {
            file: options.open(path)?,
            #[cfg(target_os = "linux")]
            direct: std::sync::Mutex::new(Direct::Untried),
            #[cfg(target_os = "linux")]
            unsynced: AtomicBool::new(false),
            #[cfg(all(test, target_os = "linux"))]
            dsync_writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            fs::File::open(path)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            // No portable way to sync a directory entry; the metadata must at least exist.
            fs::metadata(path).map(|_| ())
        }
    }

    /// Past the OS cache (`O_DIRECT`) on Linux where the filesystem allows it; the rest, and
    /// everything elsewhere, through the cache.
    fn write_zeros(&self, path: &Path, file: &StdFile, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        let done = write_zeros_direct(path, len)?;
        #[cfg(not(target_os = "linux"))]
        let done = {
            let _ = path;
            0
        };
        super::write_zeros_through(file, done, len - done)
    }
}

/// Writes zeros from offset 0 of `path` with `O_DIRECT`, up to the largest multiple of
/// [`PAGE_ALIGN`] within `len`. Returns how many bytes it wrote: fewer than asked (0 included)
/// where the filesystem refuses `O_DIRECT` (tmpfs, for one) or its alignment, for the caller to
/// write the rest through the cache.
#[cfg(target_os = "linux")]
fn write_zeros_direct(path: &Path, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = match fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut buf = PageBuf::default();
    buf.resize_zeroed(super::ZERO_CHUNK_BYTES);
    let zeros = buf.as_slice();
    let aligned = len - len % PAGE_ALIGN as u64;
    let mut at = 0u64;
    while at < aligned {
        let n = usize::try_from((aligned - at).min(zeros.len() as u64)).expect("at most one chunk");
        let (written, _) = write_aligned(&direct, &zeros[..n], at, false)?;
        at += written as u64;
        if written < n {
            break;
        }
    }
    Ok(at)
}

/// Why [`write_aligned`] stopped short of the end of its buffer without an error.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// It did not: it wrote the whole buffer.
    None,
    /// A short write left the rest unaligned.
    Short,
    /// `EINVAL`: the filesystem refuses `O_DIRECT` or its alignment.
    DirectRefused,
    /// `EOPNOTSUPP` or `ENOSYS`: the kernel has no `pwritev2` with `RWF_DSYNC` (before 4.7).
    DsyncRefused,
}

/// Writes `buf` at `offset` through `direct`, a handle opened with `O_DIRECT`; `buf`, its
/// length and `offset` are multiples of [`PAGE_ALIGN`]. With `dsync`, each write call is
/// made with `RWF_DSYNC`: it returns once what it wrote is durable. Returns how many bytes it
/// wrote (from the start of `buf`), for the caller to write the rest another way, and why it
/// stopped short if it did.
#[cfg(target_os = "linux")]
fn write_aligned(direct: &fs::File, buf: &[u8], offset: u64, dsync: bool) -> io::Result<(usize, Stop)> {
    use std::os::unix::fs::FileExt;
    let mut done = 0usize;
    while done < buf.len() {
        let at = offset + done as u64;
        let written = if dsync {
            let slices = [io::IoSlice::new(&buf[done..])];
            rustix::io::pwritev2(direct, &slices, at, rustix::io::ReadWriteFlags::DSYNC)
                .map_err(io::Error::from)
        } else {
            direct.write_at(&buf[done..], at)
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) if !w.is_multiple_of(PAGE_ALIGN) => return Ok((done + w, Stop::Short)),
            Ok(w) => done += w,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok((done, Stop::DirectRefused)),
            Err(e) if dsync && matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                return Ok((done, Stop::DsyncRefused));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((done, Stop::None))
}

/// Opens `file` again, write-only and past the OS cache, through `/proc/self/fd` (the same
/// file even after a rename, which a segment's path does not survive); checked to be the same
/// file. `None` where that cannot be done.
#[cfg(target_os = "linux")]
fn reopen_direct(file: &fs::File) -> Option<fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let direct = fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
    let (a, b) = (file.metadata().ok()?, direct.metadata().ok()?);
    (a.dev() == b.dev() && a.ino() == b.ino()).then_some(direct)
}

impl StdFile {
    /// Writes `buf` at `offset` past the OS cache if it can, with `dsync` each call durable on
    /// return (`RWF_DSYNC`). Returns how many bytes it wrote (from the start of `buf`), for the
    /// caller to write the rest another way: all of them, or fewer (0 included) where
    /// `O_DIRECT` is refused (for good), or `RWF_DSYNC` is (for good, for `dsync` calls).
    #[cfg(target_os = "linux")]
    fn write_direct(&self, buf: &[u8], offset: u64, dsync: bool) -> io::Result<usize> {
        let align = PAGE_ALIGN as u64;
        if !offset.is_multiple_of(align) || !buf.len().is_multiple_of(PAGE_ALIGN) || buf.is_empty() {
            return Ok(0);
        }
        let mut direct = self.direct.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(*direct, Direct::Untried) {
            *direct = match reopen_direct(&self.file) {
                Some(file) => Direct::Open { file, bounce: PageBuf::default(), dsync: true },
                None => Direct::Refused,
            };
        }
        let Direct::Open { file, bounce, dsync: takes_dsync, .. } = &mut *direct else {
            return Ok(0);
        };
        if dsync && !*takes_dsync {
            return Ok(0);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(DIRECT_BOUNCE_BYTES);
            let piece = &buf[done..done + n];
            let aligned = if piece.as_ptr().align_offset(PAGE_ALIGN) == 0 {
                piece
            } else {
                bounce.truncate(0);
                bounce.extend_from_slice(piece);
                bounce.as_slice()
            };
            let (written, stop) = write_aligned(file, aligned, offset + done as u64, dsync)?;
            done += written;
            #[cfg(test)]
            if dsync && written > 0 {
                self.dsync_writes.fetch_add(1, SeqCst);
            }
            match stop {
                Stop::None => {}
                Stop::Short => return Ok(done),
                Stop::DirectRefused => {
                    *direct = Direct::Refused;
                    return Ok(done);
                }
                Stop::DsyncRefused => {
                    if let Direct::Open { dsync, .. } = &mut *direct {
                        *dsync = false;
                    }
                    return Ok(done);
                }
            }
        }
        Ok(done)
    }

    /// Runs `sync` on the file, noting on success that no write is left unsynced (a write
    /// racing with it marks the file again).
    fn synced(&self, sync: impl FnOnce(&fs::File) -> io::Result<()>) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        self.unsynced.store(false, SeqCst);
        let result = sync(&self.file);
        #[cfg(target_os = "linux")]
        if result.is_err() {
            self.unsynced.store(true, SeqCst);
        }
        result
    }
}

impl DiskFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0usize;
            while done < buf.len() {
                let at = offset + done as u64;
                match std::os::windows::fs::FileExt::seek_read(&self.file, &mut buf[done..], at)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => done += n,
                }
            }
            Ok(())
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        self.unsynced.store(true, SeqCst);
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0usize;
            while done < buf.len() {
                let at = offset + done as u64;
                match std::os::windows::fs::FileExt::seek_write(&self.file, &buf[done..], at)? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => done += n,
                }
            }
            Ok(())
        }
    }

    /// Past the OS cache (`O_DIRECT`, see [`StdFile`]) on Linux where the filesystem takes it
    /// and `buf` and `offset` are multiples of 4 KiB; the rest, and everything elsewhere,
    /// through the cache.
    fn write_pages_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        self.unsynced.store(true, SeqCst);
        #[cfg(target_os = "linux")]
        let done = self.write_direct(buf, offset, false)?;
        #[cfg(not(target_os = "linux"))]
        let done = 0;
        if done == buf.len() {
            return Ok(());
        }
        self.write_all_at(&buf[done..], offset + done as u64)
    }

    /// One call where it can: past the OS cache with `RWF_DSYNC` on Linux, where the
    /// filesystem takes `O_DIRECT`, `buf` and `offset` are multiples of 4 KiB, and nothing
    /// else was written to the file since its last sync. Otherwise, and for what a short
    /// write left, [`DiskFile::write_pages_at`] and then [`DiskFile::sync_data`].
    fn write_pages_synced_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        let done = if self.unsynced.load(SeqCst) { 0 } else { self.write_direct(buf, offset, true)? };
        #[cfg(not(target_os = "linux"))]
        let done = 0;
        if done == buf.len() && !buf.is_empty() {
            return Ok(());
        }
        self.write_pages_at(&buf[done..], offset + done as u64)?;
        self.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        self.unsynced.store(true, SeqCst);
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.synced(|f| f.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.synced(|f| f.sync_all())
    }

    fn try_lock(&self) -> io::Result<bool> {
        // `flock` on Unix: per open file description, so a second handle in the same process
        // conflicts too.
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh temporary directory in each of the system's temporary directory (often a
    /// tmpfs, which refuses `O_DIRECT`) and the directory of this test binary (inside the
    /// target directory, wherever `CARGO_TARGET_DIR` put it: on the disk that holds the build,
    /// which takes `O_DIRECT` where it is ext4 or xfs), with the place it is in (for messages).
    /// Both exist whenever the test runs; `<crate>/target` need not.
    fn test_dirs() -> Vec<(std::path::PathBuf, tempfile::TempDir)> {
        let exe = std::env::current_exe().expect("the test binary's path");
        let build = exe.parent().expect("the test binary's directory").to_path_buf();
        [std::env::temp_dir(), build]
            .into_iter()
            .map(|root| {
                let dir = tempfile::tempdir_in(&root).expect("temporary directory");
                (root, dir)
            })
            .collect()
    }

    /// `write_pages_at` writes exactly its bytes, whatever the alignment of the buffer, the
    /// offset and the length, over several `O_DIRECT` pieces, after a rename, and after
    /// writes through the cache to the same pages; reads through the cache see them. Run in
    /// the system's temporary directory and beside the test binary; where the filesystem takes
    /// `O_DIRECT`, the file must have written past the cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn write_pages_at_writes_exactly_its_bytes() {
        for (root, dir) in test_dirs() {
            let path = dir.path().join("f");
            let file = StdDisk.open(&path, OpenMode::CreateNew).expect("create");
            let size = DIRECT_BOUNCE_BYTES * 2 + 5 * 4096;
            StdDisk.write_zeros(&path, &file, size as u64).expect("zeros");
            let moved = dir.path().join("g");
            StdDisk.rename(&path, &moved).expect("rename");
            let mut expect = vec![0u8; size];
            let mut bytes = vec![0u8; size + PAGE_ALIGN];
            let align = bytes.as_ptr().align_offset(PAGE_ALIGN);
            let mut put = |file: &StdFile, at: usize, len: usize, skew: usize, pages: bool, fill: u8| {
                let buf = &mut bytes[skew..skew + len];
                buf.iter_mut().enumerate().for_each(|(i, b)| *b = fill ^ (i % 251) as u8);
                if pages {
                    file.write_pages_at(buf, at as u64).expect("write_pages_at");
                } else {
                    file.write_all_at(buf, at as u64).expect("write_all_at");
                }
                expect[at..at + len].copy_from_slice(buf);
            };
            put(&file, 0, 4096, align, true, 1); // aligned buffer
            put(&file, 4096, 8192, align + 1, true, 2); // unaligned buffer: the bounce copy
            put(&file, 8192 + 100, 300, 0, false, 3); // through the cache, inside a page...
            put(&file, 8192, 4096, align + 3, true, 4); // ...then past it over the same page
            put(&file, 3 * 4096 + 7, 4096, 1, true, 5); // unaligned offset: through the cache
            put(&file, 4 * 4096, 4096 + 9, align, true, 6); // unaligned length: through the cache
            put(&file, 4096, DIRECT_BOUNCE_BYTES * 2 + 4096, align + 5, true, 7); // three pieces
            let mut back = vec![9u8; size];
            file.read_exact_at(&mut back, 0).expect("read");
            assert!(back == expect, "{}: the bytes read back differ", root.display());
            let mut again = vec![9u8; size];
            StdDisk.open(&moved, OpenMode::Read).expect("open").read_exact_at(&mut again, 0).expect("read");
            assert!(again == expect, "{}: the renamed file's bytes differ", root.display());
            use std::os::unix::fs::OpenOptionsExt;
            let takes_direct =
                fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&moved).is_ok();
            let went_direct = matches!(*file.direct.lock().unwrap(), Direct::Open { .. });
            assert_eq!(
                went_direct,
                takes_direct,
                "{}: past the cache where O_DIRECT is taken",
                root.display()
            );
        }
    }

    /// `write_pages_synced_at` writes exactly its bytes, and makes them durable in one call
    /// (`RWF_DSYNC`) only where the filesystem takes `O_DIRECT` and nothing else was written
    /// since the last sync (through the cache or past it) nor the length changed: otherwise it
    /// writes and syncs in two calls, after which one call is allowed again. Run in the system's
    /// temporary directory and beside the test binary.
    #[cfg(target_os = "linux")]
    #[test]
    fn write_pages_synced_at_is_one_call_only_with_nothing_else_unsynced() {
        for (root, dir) in test_dirs() {
            let path = dir.path().join("f");
            let file = StdDisk.open(&path, OpenMode::CreateNew).expect("create");
            let size = 16 * 4096;
            StdDisk.write_zeros(&path, &file, size as u64).expect("zeros");
            file.sync_all().expect("sync");
            use std::os::unix::fs::OpenOptionsExt;
            let direct = fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).is_ok();
            let mut expect = vec![0u8; size];
            let mut bytes = vec![0u8; size + PAGE_ALIGN];
            let align = bytes.as_ptr().align_offset(PAGE_ALIGN);
            let mut calls = 0u64;
            let mut step = |how: &str, at: usize, len: usize, skew: usize, one_call: bool| {
                let buf = &mut bytes[skew..skew + len];
                buf.iter_mut().enumerate().for_each(|(i, b)| *b = (at + i) as u8 ^ 0x5a);
                match how {
                    "synced" => file.write_pages_synced_at(buf, at as u64).expect("write_pages_synced_at"),
                    "cached" => file.write_all_at(buf, at as u64).expect("write_all_at"),
                    "pages" => file.write_pages_at(buf, at as u64).expect("write_pages_at"),
                    _ => unreachable!(),
                }
                expect[at..at + len].copy_from_slice(buf);
                calls += u64::from(direct && one_call);
                assert_eq!(file.dsync_writes.load(SeqCst), calls, "{}: {how} at {at}", root.display());
            };
            step("synced", 0, 4096, align, true); // one call
            step("synced", 4096, 8192, align + 1, true); // an unaligned buffer: copied, one call
            step("cached", 8192 + 5, 100, 0, false); // through the cache...
            step("synced", 3 * 4096, 4096, align, false); // ...so a write, then a sync
            step("synced", 4 * 4096, 4096, align, true); // and one call again
            step("pages", 9 * 4096, 4096, align, false); // unsynced pages, past the cache...
            step("synced", 4 * 4096, 4096, align, false); // ...so a write, then a sync
            step("synced", 4 * 4096, 4096, align, true);
            file.set_len(size as u64).expect("set_len"); // a length change...
            step("synced", 5 * 4096, 4096, align, false); // ...is synced the long way
            step("synced", 6 * 4096 + 9, 4096, align, false); // unaligned offset: through the cache
            step("synced", 8 * 4096, 4096 + 3, align, false); // unaligned length: through the cache
            step("synced", 10 * 4096, 4096, align, true);
            file.write_all_at(b"", 0).expect("empty"); // marks the cache unsynced
            file.write_pages_synced_at(b"", 0).expect("an empty write still syncs");
            step("synced", 11 * 4096, 4096, align, true);
            let mut back = vec![9u8; size];
            file.read_exact_at(&mut back, 0).expect("read");
            assert!(back == expect, "{}: the bytes read back differ", root.display());
        }
    }

    /// Over a file full of ones, `write_zeros` leaves exactly `len` zeros and the rest as it
    /// was, for lengths that are and are not multiples of the `O_DIRECT` alignment. Run both in
    /// the system's temporary directory and beside the test binary (tmpfs refuses `O_DIRECT`, ext4 takes it).
    #[test]
    fn write_zeros_writes_exactly_the_zeros_asked_for() {
        for (root, dir) in test_dirs() {
            for (i, len) in
                [0u64, 4096 * 3, 4096 * 3 + 100, 1024 * 1024 + 4096 + 7, 5000].into_iter().enumerate()
            {
                let path = dir.path().join(format!("f{i}"));
                let file = StdDisk.open(&path, OpenMode::CreateNew).expect("create");
                let total = len + 8192 + 3;
                file.write_all_at(&vec![1u8; usize::try_from(total).unwrap()], 0).expect("ones");
                StdDisk.write_zeros(&path, &file, len).expect("write_zeros");
                file.sync_all().expect("sync");
                let mut back = vec![7u8; usize::try_from(total).unwrap()];
                file.read_exact_at(&mut back, 0).expect("read");
                let split = usize::try_from(len).unwrap();
                assert!(
                    back[..split].iter().all(|&b| b == 0),
                    "{len} bytes in {}: not all zeros",
                    root.display()
                );
                assert!(
                    back[split..].iter().all(|&b| b == 1),
                    "{len} bytes in {}: wrote past len",
                    root.display()
                );
                assert_eq!(file.len().expect("len"), total);
            }
        }
    }
}
