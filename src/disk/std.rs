//! [`StdDisk`]: the [`Disk`] seam over real files, the only place in the library that touches
//! `std::fs`.
//!
//! - `sync_data` is `fdatasync`, `sync_all` is `fsync`.
//! - A directory is synced by opening it and calling `fsync` on it (Unix). On other platforms
//!   `sync_dir` does nothing: there is no portable way to sync a directory entry.

use super::{Disk, DiskFile, OpenMode};
use std::fs;
use std::io;
use std::path::Path;

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

/// A real file opened by [`StdDisk`].
#[derive(Debug)]
pub struct StdFile {
    file: fs::File,
}

impl Disk for StdDisk {
    type File = StdFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<StdFile> {
        let mut options = fs::OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(StdFile { file: options.open(path)? })
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

/// Alignment of `O_DIRECT` buffers, offsets and lengths: the largest logical block size in
/// common use.
#[cfg(target_os = "linux")]
const DIRECT_ALIGN: usize = 4096;

/// Writes zeros from offset 0 of `path` with `O_DIRECT`, up to the largest multiple of
/// [`DIRECT_ALIGN`] within `len`. Returns how many bytes it wrote: fewer than asked (0 included)
/// where the filesystem refuses `O_DIRECT` (tmpfs, for one) or its alignment, for the caller to
/// write the rest through the cache.
#[cfg(target_os = "linux")]
fn write_zeros_direct(path: &Path, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let direct = match fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(0),
        Err(e) => return Err(e),
    };
    let buf = vec![0u8; super::ZERO_CHUNK_BYTES + DIRECT_ALIGN];
    let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let zeros = &buf[start..start + super::ZERO_CHUNK_BYTES];
    let aligned = len - len % DIRECT_ALIGN as u64;
    let mut at = 0u64;
    while at < aligned {
        let n = usize::try_from((aligned - at).min(zeros.len() as u64)).expect("at most one chunk");
        match direct.write_at(&zeros[..n], at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            // A short write leaves `at` unaligned: the next call fails with EINVAL, and the
            // rest is written through the cache.
            Ok(written) => at += written as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(at)
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

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
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

    /// Over a file full of ones, `write_zeros` leaves exactly `len` zeros and the rest as it
    /// was, for lengths that are and are not multiples of the `O_DIRECT` alignment. Run both in
    /// the system's temporary directory and in `target/` (tmpfs refuses `O_DIRECT`, ext4 takes it).
    #[test]
    fn write_zeros_writes_exactly_the_zeros_asked_for() {
        let roots = [std::env::temp_dir(), Path::new(env!("CARGO_MANIFEST_DIR")).join("target")];
        for root in roots {
            let dir = tempfile::tempdir_in(&root).expect("temporary directory");
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
