//! Segment files: names, discovery, and preparation.
//!
//! - A segment is a fixed-size file named `{segment:020}.wal` in the log directory; the number
//!   is its sequence number and the order in which segments are read.
//! - A segment is *prepared* before it is used: created as `{segment:020}.wal.tmp`, filled with
//!   zeros to its full size (the design notes measured that writing into a zero-filled file is
//!   about 1.7× faster than growing it, and that `fallocate` or a sparse `set_len` does not
//!   help) — past the OS cache where the disk allows it ([`Disk::write_zeros`]), which costs
//!   little CPU and leaves no backlog of dirty zeros for a commit's sync to queue behind —
//!   synced, renamed to its final name, and the directory synced. So a segment file under
//!   its final name is always full size and durable, and a commit never waits for a file to
//!   grow.
//! - Leftover `.wal.tmp` files are debris of an interrupted preparation; opening a log for
//!   writing removes them.
//! - **Recycling.** A segment the log no longer needs ([`remove_segments_through`]) is renamed
//!   `{segment:020}.wal.free` rather than deleted, up to [`FREE_SEGMENTS_MAX`] of them, and
//!   the next preparation of the same size takes one: renamed to the new `.wal.tmp` (the
//!   directory synced), its first page overwritten with a *blank* header
//!   ([`format::FLAG_BLANK`]), synced, renamed to its final name. Its old bytes stay: records
//!   of lower segment numbers, which the reader tells from this segment's own by the segment
//!   number every record carries (see [`recovery`](super::recovery)). So a segment's zeros are
//!   written once per file, not once per segment: at a steady load the log writes each byte
//!   once, not twice.
//!
//! Failure model: every step's error is returned with the path it concerns; a failure leaves at
//! most a temporary file behind, never a half-filled segment under a final name.

use super::format;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{IoContext, Result};
use crate::types::SegmentId;
use std::path::{Path, PathBuf};

/// The file name of segment `id`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{:0width$}{}", id.0, format::SEGMENT_SUFFIX, width = format::SEGMENT_NAME_DIGITS)
}

/// The segment number in a file name, if it is the name of a segment file.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(format::SEGMENT_SUFFIX)?;
    if digits.len() != format::SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0).map(SegmentId)
}

/// What a log directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirListing {
    /// Segment files, in ascending order.
    pub segments: Vec<(SegmentId, PathBuf)>,
    /// Leftover temporary files of interrupted preparations.
    pub temp_files: Vec<PathBuf>,
    /// Segment files kept for recycling (`.wal.free`), in ascending order.
    pub free_files: Vec<PathBuf>,
}

/// The most segment files kept for recycling; more are deleted.
pub const FREE_SEGMENTS_MAX: usize = 2;

/// A segment prepared for use: its file, open for writing, and whether it is a recycled one
/// (holding an earlier use's bytes after its blank header) or all zeroes.
#[derive(Debug)]
pub struct PreparedSegment<F> {
    /// The file, under its final name, full size and durable.
    pub file: F,
    /// Whether the file was recycled: its header must then carry [`format::FLAG_RECYCLED`].
    pub recycled: bool,
}

/// Lists the segment files of the log directory `dir`.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) if the directory cannot be listed.
pub fn list_segments<D: Disk>(disk: &D, dir: &Path) -> Result<DirListing> {
    let names = disk.list_dir(dir).ctx("list", dir)?;
    let mut listing = DirListing::default();
    for name in names {
        if let Some(id) = parse_segment_file_name(&name) {
            listing.segments.push((id, dir.join(&name)));
        } else if name.ends_with(format::TEMP_SUFFIX) {
            listing.temp_files.push(dir.join(&name));
        } else if name.ends_with(format::FREE_SUFFIX) {
            listing.free_files.push(dir.join(&name));
        }
    }
    listing.segments.sort();
    listing.temp_files.sort();
    listing.free_files.sort();
    Ok(listing)
}

/// Creates `dir` and any missing parents, then syncs `dir` and every ancestor so that the whole
/// chain of names is durable.
///
/// A directory that exists is not necessarily durable: an earlier attempt may have created it and
/// failed before syncing its parent (the simulator found exactly this). So the chain is synced on
/// every call, not only after a create. A `PermissionDenied` from an ancestor above `dir`'s parent
/// is ignored: a directory this process cannot read is not one it created.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) naming the directory that failed.
pub fn create_dir_durable<D: Disk>(disk: &D, dir: &Path) -> Result<()> {
    if !disk.is_dir(dir) {
        disk.create_dir_all(dir).ctx("create_dir", dir)?;
    }
    let mut chain: Vec<&Path> = Vec::new();
    let mut at = Some(dir);
    while let Some(p) = at {
        if p.as_os_str().is_empty() {
            chain.push(Path::new("."));
            break;
        }
        chain.push(p);
        at = p.parent();
    }
    for (depth, p) in chain.into_iter().enumerate() {
        match disk.sync_dir(p) {
            Ok(()) => {}
            Err(e) if depth >= 2 && e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(crate::Error::io("sync_dir", p, e)),
        }
    }
    Ok(())
}

/// Creates segment `id` in `dir`, full size and zero-filled, durable under its final name, and
/// returns it open for writing. See the [module docs](self) for the steps.
///
/// If a full-size, all-zero file already has the final name (a preparation that failed after its
/// rename), it is synced and returned.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) or [`Error::StorageFull`](crate::Error::StorageFull) with the
/// step and path. An existing segment `id` holding data is an error (`AlreadyExists`): it is
/// never overwritten.
pub fn prepare_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    id: SegmentId,
    segment_bytes: u64,
) -> Result<PreparedSegment<D::File>> {
    assert!(
        (format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&segment_bytes),
        "segment size {segment_bytes} out of range: options are validated before use"
    );
    let name = segment_file_name(id);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}.tmp"));
    if let Ok(existing) = disk.open(&path, OpenMode::ReadWrite) {
        // An earlier preparation that failed after its rename (at the directory sync) leaves a
        // full-size file, all zero or with this segment's blank header: finish that
        // preparation. Anything else is refused, never overwritten.
        let bytes = crate::disk::read_file(disk, &path, segment_bytes).ctx("read", &path);
        let prepared = bytes.ok().filter(|b| b.len() as u64 == segment_bytes).and_then(|b| {
            match crate::wal::decode::decode_segment_header(&b) {
                crate::wal::decode::HeaderDecoded::Zero if b.iter().all(|&x| x == 0) => Some(false),
                crate::wal::decode::HeaderDecoded::Blank { segment, segment_bytes: n }
                    if segment == id && n == segment_bytes =>
                {
                    Some(true)
                }
                _ => None,
            }
        });
        if let Some(recycled) = prepared {
            existing.sync_all().ctx("sync_all", &path)?;
            disk.sync_dir(dir).ctx("sync_dir", dir)?;
            return Ok(PreparedSegment { file: existing, recycled });
        }
        return Err(crate::Error::io(
            "prepare_segment",
            &path,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a segment file with data exists"),
        ));
    }
    match disk.remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::Error::io("remove", &temp, e)),
    }
    let (file, recycled) = match recycle_free_file(disk, dir, id, segment_bytes, &temp)? {
        Some(file) => (file, true),
        None => {
            let file = disk.open(&temp, OpenMode::CreateNew).ctx("create", &temp)?;
            disk.write_zeros(&temp, &file, segment_bytes).ctx("write", &temp)?;
            (file, false)
        }
    };
    file.sync_all().ctx("sync_all", &temp)?;
    disk.rename(&temp, &path).ctx("rename", &temp)?;
    if !crate::mutation::active(crate::mutation::Mutation::NoDirSyncAfterSegmentCreate) {
        disk.sync_dir(dir).ctx("sync_dir", dir)?;
    }
    Ok(PreparedSegment { file, recycled })
}

/// Takes a free segment file of `segment_bytes`, if there is one, as `temp`: renamed, its first
/// page a blank header for `id` (not yet synced). Free files of another size are deleted.
fn recycle_free_file<D: Disk>(
    disk: &D,
    dir: &Path,
    id: SegmentId,
    segment_bytes: u64,
    temp: &Path,
) -> Result<Option<D::File>> {
    for free in list_segments(disk, dir)?.free_files {
        // Taken by its rename: a file another preparation took first is simply gone.
        match disk.rename(&free, temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::Error::io("rename", &free, e)),
        }
        // The new name durable before anything is written under it: a filesystem that keeps
        // durability per name rather than per file (turmoil's model: seed 7 of
        // `turmoil_crash_and_bounce` found a segment under its final name with its earlier
        // header, when this rename was made durable only with the final one) then applies the
        // rename before the write, not after.
        disk.sync_dir(dir).ctx("sync_dir", dir)?;
        let file = disk.open(temp, OpenMode::ReadWrite).ctx("open", temp)?;
        if file.len().ctx("len", temp)? != segment_bytes {
            drop(file);
            disk.remove_file(temp).ctx("remove", temp)?;
            continue;
        }
        // Segments are at least a page (`SEGMENT_BYTES_MIN`).
        let mut page = vec![0u8; PAGE_BYTES];
        page[..format::SEGMENT_HEADER_BYTES]
            .copy_from_slice(&super::encode::encode_blank_segment_header(id, segment_bytes));
        file.write_all_at(&page, 0).ctx("write", temp)?;
        return Ok(Some(file));
    }
    Ok(None)
}

/// The unit of a recycled file's first write.
const PAGE_BYTES: usize = 4096;
const _: () = assert!(PAGE_BYTES as u64 <= format::SEGMENT_BYTES_MIN);

/// Removes the file `path` and syncs its directory.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) for the remove or the directory sync.
pub fn remove_durable<D: Disk>(disk: &D, path: &Path) -> Result<()> {
    disk.remove_file(path).ctx("remove", path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.sync_dir(dir).ctx("sync_dir", dir)
}

/// Removes, oldest first, the segments of the log in `dir` whose every record is at or below
/// `lsn` — a segment is known to end at or below `lsn` when the *next* segment's valid header
/// says so (`prev_last_lsn ≤ lsn`) — and returns how many it removed. Up to
/// [`FREE_SEGMENTS_MAX`] free files are kept, renamed for recycling; the others are deleted.
/// The last segment is never removed. Each removal is made durable before the next, so a
/// crash leaves the log a suffix of itself, never a log with a hole.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) for a failed listing, read, remove or directory sync.
pub fn remove_segments_through<D: Disk>(disk: &D, dir: &Path, lsn: crate::types::Lsn) -> Result<u64> {
    let listing = list_segments(disk, dir)?;
    let mut removed = 0;
    let mut free = listing.free_files.len();
    for pair in listing.segments.windows(2) {
        let (_, path) = &pair[0];
        let (_, next_path) = &pair[1];
        let next = disk.open(next_path, OpenMode::Read).ctx("open", next_path)?;
        let mut head = [0u8; format::SEGMENT_HEADER_BYTES];
        match next.read_exact_at(&mut head, 0) {
            Ok(()) => {}
            // Shorter than a header: a file being prepared; it proves nothing.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(crate::Error::io("read", next_path, e)),
        }
        match crate::wal::decode::decode_segment_header(&head) {
            crate::wal::decode::HeaderDecoded::Valid(h) if h.prev_last_lsn <= lsn => {
                if free < FREE_SEGMENTS_MAX {
                    retire_durable(disk, dir, path)?;
                    free += 1;
                } else {
                    remove_durable(disk, path)?;
                }
                removed += 1;
            }
            _ => break,
        }
    }
    Ok(removed)
}

/// Renames the segment file `path` (of the log in `dir`) to its free name, for recycling, and
/// syncs the directory: a removal, as far as the log is concerned.
fn retire_durable<D: Disk>(disk: &D, dir: &Path, path: &Path) -> Result<()> {
    let mut free = path.as_os_str().to_owned();
    free.push(&format::FREE_SUFFIX[format::SEGMENT_SUFFIX.len()..]);
    let free = PathBuf::from(free);
    disk.rename(path, &free).ctx("rename", path)?;
    disk.sync_dir(dir).ctx("sync_dir", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(SegmentId(42)), "00000000000000000042.wal");
        assert_eq!(parse_segment_file_name("00000000000000000042.wal"), Some(SegmentId(42)));
        for bad in [
            "42.wal",
            "00000000000000000042.wal.tmp",
            "0000000000000000004x.wal",
            "00000000000000000000.wal",
            "+0000000000000000042.wal",
            "000000000000000000042.wal",
            "LOCK",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        // The largest u64 has 20 digits.
        assert_eq!(
            parse_segment_file_name(&segment_file_name(SegmentId(u64::MAX))),
            Some(SegmentId(u64::MAX))
        );
    }
}
