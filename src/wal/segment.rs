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
        }
    }
    listing.segments.sort();
    listing.temp_files.sort();
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
pub fn prepare_segment<D: Disk>(disk: &D, dir: &Path, id: SegmentId, segment_bytes: u64) -> Result<D::File> {
    assert!(
        (format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&segment_bytes),
        "segment size {segment_bytes} out of range: options are validated before use"
    );
    let name = segment_file_name(id);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}.tmp"));
    if let Ok(existing) = disk.open(&path, OpenMode::ReadWrite) {
        // An earlier preparation that failed after its rename (at the directory sync) leaves a
        // full-size, all-zero file: finish that preparation. Anything else is refused, never
        // overwritten.
        let bytes = crate::disk::read_file(disk, &path, segment_bytes).ctx("read", &path);
        if bytes.is_ok_and(|b| b.len() as u64 == segment_bytes && b.iter().all(|&x| x == 0)) {
            existing.sync_all().ctx("sync_all", &path)?;
            disk.sync_dir(dir).ctx("sync_dir", dir)?;
            return Ok(existing);
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
    let file = disk.open(&temp, OpenMode::CreateNew).ctx("create", &temp)?;
    disk.write_zeros(&temp, &file, segment_bytes).ctx("write", &temp)?;
    file.sync_all().ctx("sync_all", &temp)?;
    disk.rename(&temp, &path).ctx("rename", &temp)?;
    if !crate::mutation::active(crate::mutation::Mutation::NoDirSyncAfterSegmentCreate) {
        disk.sync_dir(dir).ctx("sync_dir", dir)?;
    }
    Ok(file)
}

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
/// says so (`prev_last_lsn ≤ lsn`) — and returns how many it removed. The last segment is never
/// removed. Each removal is made durable before the next, so a crash leaves the log a suffix
/// of itself, never a log with a hole.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) for a failed listing, read, remove or directory sync.
pub fn remove_segments_through<D: Disk>(disk: &D, dir: &Path, lsn: crate::types::Lsn) -> Result<u64> {
    let listing = list_segments(disk, dir)?;
    let mut removed = 0;
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
                remove_durable(disk, path)?;
                removed += 1;
            }
            _ => break,
        }
    }
    Ok(removed)
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
