//! [`LogWriter`]: appends records to the log, one segment at a time.
//!
//! ```text
//!  append ──▶ encode into the batch buffer ──write──▶ OS (segment file) ──sync──▶ durable
//!                 │ next record does not fit
//!                 ▼
//!  rotate: write + sync the current segment, take the prepared next segment, put its header
//!          at the front of the batch buffer (header and first records go out in one write)
//! ```
//!
//! Invariants:
//!
//! - Records get consecutive LSNs; an LSN gap happens only at a segment boundary and is written
//!   into the header (`prev_last_lsn` < `first_lsn − 1`).
//! - Each record carries `synced_lsn`, the durable LSN when it was encoded: every record up to
//!   it had been synced. The reader uses it to tell a torn tail from corruption.
//! - A segment header is written only after the previous segment is synced, so a valid header
//!   proves the previous segment durable up to `prev_last_lsn`.
//! - Before anything new is written after recovery, the recovered bytes of the last segment are
//!   written again and synced (they may only be in the OS cache, or in pages a failed sync
//!   dropped), the junk after the end is zeroed, and later segment files are removed — so that
//!   what recovery read is durable before a new record's watermark claims it, and bytes of a
//!   dropped tail can never be mistaken for records written after it.
//! - Every write covers whole 4 KiB pages: the start of the first page again (the same bytes),
//!   the batch, and zeros to the end of the last page (over a prepared segment's zeros; in a
//!   recycled segment, over an earlier use's bytes, and one page further if fewer than a record
//!   header's 40 bytes of zeros would follow the batch, so that this use's records always end
//!   in zeroes). The OS
//!   writes back whole pages anyway, so the disk sees the same sectors; what this saves is the
//!   read of a page that is not in the OS cache (segments are zero-filled past it), which a
//!   write of part of a page would cost first. Whole pages also let
//!   [`StdDisk`](crate::StdDisk) write them past the OS cache (`O_DIRECT`, through
//!   [`DiskFile::write_pages_at`]): no copy into the cache, no writeback left for the sync, and
//!   a log that is written once and read only at recovery does not crowd the cache. The sync
//!   that follows still flushes the disk's own cache.
//! - A batch that is synced goes to the disk with its sync in one call,
//!   [`DiskFile::write_pages_synced_at`] (`RWF_DSYNC` on Linux, where nothing else written
//!   to the segment is unsynced): one system call and one wake-up fewer per commit.
//!
//! Failure model: a failed write or sync poisons the writer. Every later call returns
//! [`Error::Poisoned`] with the first cause; nothing is retried as if it had worked. Reopening
//! recovers from what is truly on disk.

use super::encode::{self, RecordMeta, SegmentHeader};
use super::format;
use super::payload::RecordKind;
use super::recovery::{LogReader, ReadOptions, RecoveryMode, RecoveryReport};
use super::segment::{
    self, PreparedSegment, create_dir_durable, list_segments, prepare_segment, remove_durable,
};
use crate::disk::{Disk, DiskFile, OpenMode, PageBuf};
use crate::error::{Error, IoContext, Result};
use crate::mutation::{self, Mutation};
use crate::types::{Lsn, SegmentId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default size of a segment file.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The largest default record payload maximum (see [`WalOptions::record_payload_bytes_max`]).
pub const DEFAULT_RECORD_PAYLOAD_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// Options of a log.
///
/// ```
/// use waldb::wal::WalOptions;
/// // Setting the segment size alone is always consistent: the record maximum follows it.
/// let opts = WalOptions::default().with_segment_bytes(1 << 20);
/// assert!(opts.validate().is_ok());
/// assert_eq!(opts.record_payload_bytes_max(), (1 << 20) / 4 - 26);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalOptions {
    /// Size of each segment file, between [`format::SEGMENT_BYTES_MIN`] and
    /// [`format::SEGMENT_BYTES_MAX`]. Default 64 MiB.
    pub segment_bytes: u64,
    /// The largest record payload; a larger append is [`Error::TooLarge`]. `None` (the default)
    /// derives it from the segment size: a quarter of a segment less the headers, at most
    /// [`DEFAULT_RECORD_PAYLOAD_BYTES_MAX`]. An explicit value must fit in a segment with the
    /// headers.
    pub record_payload_bytes_max: Option<u32>,
    /// How to treat a damaged log at open.
    pub recovery: RecoveryMode,
}

with_setters!(WalOptions {
    with_segment_bytes: segment_bytes: u64;
    with_record_payload_bytes_max: record_payload_bytes_max: Option<u32>;
    with_recovery: recovery: RecoveryMode;
});

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            record_payload_bytes_max: None,
            recovery: RecoveryMode::default(),
        }
    }
}

impl WalOptions {
    /// The record payload maximum in effect: the explicit one, or the one derived from the
    /// segment size.
    pub fn record_payload_bytes_max(&self) -> u32 {
        self.record_payload_bytes_max.unwrap_or_else(|| {
            let overhead = (format::SEGMENT_HEADER_BYTES + format::RECORD_HEADER_BYTES) as u64;
            let quarter = self.segment_bytes.saturating_sub(overhead) / 4;
            u32::try_from(quarter.min(u64::from(DEFAULT_RECORD_PAYLOAD_BYTES_MAX))).expect("≤ 16 MiB")
        })
    }

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] saying what does not fit.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if !(format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return invalid(format!(
                "segment_bytes {} is outside {}..={}",
                self.segment_bytes,
                format::SEGMENT_BYTES_MIN,
                format::SEGMENT_BYTES_MAX
            ));
        }
        let record_max = self.record_payload_bytes_max();
        if record_max > format::RECORD_PAYLOAD_BYTES_LIMIT {
            return invalid(format!(
                "record_payload_bytes_max {record_max} exceeds the format limit {}",
                format::RECORD_PAYLOAD_BYTES_LIMIT
            ));
        }
        let overhead = (format::SEGMENT_HEADER_BYTES + format::RECORD_HEADER_BYTES) as u64;
        if u64::from(record_max) + overhead > self.segment_bytes {
            return invalid(format!(
                "a record of record_payload_bytes_max {record_max} bytes does not fit in a segment of {} bytes \
                 (with {overhead} bytes of headers): lower record_payload_bytes_max or raise segment_bytes",
                self.segment_bytes
            ));
        }
        Ok(())
    }

    /// The options for reading a log written with these.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            mode: self.recovery,
            record_payload_bytes_max: self.record_payload_bytes_max(),
            segment_bytes_max: format::SEGMENT_BYTES_MAX,
        }
    }
}

/// The unit [`LogWriter`] writes in: a page of the OS cache.
const PAGE_BYTES: u64 = 4096;

/// The segment being written.
#[derive(Debug)]
struct Active<F> {
    id: SegmentId,
    path: PathBuf,
    file: F,
    /// File offset where the batch buffer will be written.
    write_offset: u64,
    /// The bytes of the page `write_offset` is in, before it: written again in front of the
    /// next batch, so that every write covers whole pages (see [`PAGE_BYTES`]). It also holds
    /// that write while it is made, so it grows to the largest batch.
    page: PageBuf,
    /// The segment's size.
    segment_bytes: u64,
    /// Whether the file was recycled: then every write leaves a zero record header after its
    /// last record (see [`LogWriter::write_buffer`]).
    recycled: bool,
}

/// Appends records to a log directory. See the [module docs](self).
///
/// Dropping a writer without [`LogWriter::close`] writes nothing more: records appended since the
/// last [`LogWriter::write`] are discarded, and what was written but not synced is left to the
/// OS (as after a process exit). Nothing acknowledged by a `sync` is affected.
#[derive(Debug)]
pub struct LogWriter<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: WalOptions,
    active: Option<Active<D::File>>,
    /// A segment prepared ahead of need: (id, path, file).
    prepared: Option<(SegmentId, PathBuf, PreparedSegment<D::File>)>,
    next_segment: SegmentId,
    next_lsn: Lsn,
    /// (LSN, crc) of the last record appended; `(0, 0)` for none.
    last: (Lsn, u32),
    /// The last LSN handed to the OS.
    written_lsn: Lsn,
    /// The last LSN known durable.
    synced_lsn: Lsn,
    /// Encoded bytes not yet written, destined for `active.write_offset`.
    buf: Vec<u8>,
    poisoned: Option<Arc<Error>>,
}

impl<D: Disk> LogWriter<D> {
    /// Opens the log in `dir` for appending, creating the directory and an empty log if needed:
    /// recovers it (see [`recovery`](super::recovery)), discarding the records, and continues
    /// after its end. Returns the writer and what recovery found.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options; whatever recovery returns in `opts.recovery`
    /// mode; [`Error::Io`] for failed file operations.
    pub fn open(disk: D, dir: &Path, opts: WalOptions) -> Result<(Self, RecoveryReport)>
    where
        D: Clone,
    {
        opts.validate()?;
        create_dir_durable(&disk, dir)?;
        let report = LogReader::open(disk.clone(), dir, opts.read_options())?.for_each(|_| Ok(()))?;
        let writer = Self::resume(disk, dir, opts, &report)?;
        Ok((writer, report))
    }

    /// Continues the log in `dir` after the end found by `report` (which must come from reading
    /// that directory to its end, with nothing written since). Zeroes the junk after the end,
    /// removes later segment files and leftover temporary files, all durably.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options and [`Error::Io`] for failed file operations.
    pub fn resume(disk: D, dir: &Path, opts: WalOptions, report: &RecoveryReport) -> Result<Self> {
        trace_recovery(dir, report);
        opts.validate()?;
        let listing = list_segments(&disk, dir)?;
        for temp in &listing.temp_files {
            remove_durable(&disk, temp)?;
        }
        let resume = &report.resume;
        for later in &resume.later_files {
            remove_durable(&disk, later)?;
        }
        // Damage in the unused space of a segment before the end (bit rot: no write of the
        // writer goes there) that the mode read past: zeroed, so the continued log reads
        // strictly (fuzzed: seed `wal_recover/regression_junk_in_unused_space_before_the_end`).
        for (path, from, to) in &resume.unused_junk {
            let file = disk.open(path, OpenMode::ReadWrite).ctx("open", path)?;
            let len = usize::try_from(to - from).expect("within one segment");
            file.write_all_at(&vec![0u8; len], *from).ctx("write", path)?;
            file.sync_data().ctx("sync_data", path)?;
        }
        // Never reuse an LSN that any valid record or header on disk has used.
        let next_lsn = resume.expected.max(report.max_lsn_seen.next());
        let mut writer = LogWriter {
            disk,
            dir: dir.to_path_buf(),
            opts,
            active: None,
            prepared: None,
            next_segment: SegmentId(1),
            next_lsn,
            last: resume.chain,
            written_lsn: resume.chain.0,
            synced_lsn: resume.chain.0,
            buf: Vec::new(),
            poisoned: None,
        };
        let Some(at) = &resume.at else {
            return Ok(writer);
        };
        match at.header {
            Some(header) => {
                let file = writer.disk.open(&at.path, OpenMode::ReadWrite).ctx("open", &at.path)?;
                // What recovery read may be only in the OS cache: a previous process may have
                // exited without syncing, or a failed sync may have dropped its pages for good
                // (they stay readable, but no later sync writes them). Writing the bytes again
                // makes them dirty, so the sync below makes durable exactly what was read —
                // before any new record's `synced_lsn` claims it.
                let live = usize::try_from(at.offset).expect("within one segment");
                let mut bytes = vec![0u8; live];
                file.read_exact_at(&mut bytes, 0).ctx("read", &at.path)?;
                file.write_all_at(&bytes, 0).ctx("write", &at.path)?;
                if at.junk_end > at.offset {
                    let len = usize::try_from(at.junk_end - at.offset).expect("within one segment");
                    file.write_all_at(&vec![0u8; len], at.offset).ctx("write", &at.path)?;
                }
                file.sync_data().ctx("sync_data", &at.path)?;
                writer.next_segment = at.segment.next();
                let page_start =
                    usize::try_from(at.offset - at.offset % PAGE_BYTES).expect("within one segment");
                writer.active = Some(Active {
                    id: at.segment,
                    path: at.path.clone(),
                    file,
                    write_offset: at.offset,
                    page: PageBuf::from_slice(&bytes[page_start..]),
                    segment_bytes: header.segment_bytes,
                    recycled: header.recycled,
                });
                if next_lsn != resume.expected {
                    // LSNs jump: only a segment boundary may say so.
                    writer.active = None;
                }
            }
            None => {
                writer.next_segment = at.segment;
                // A prepared segment that was never used is all zeroes, or recycled with a blank
                // header: keep it. Anything else with an unusable header is replaced.
                let file = writer.disk.open(&at.path, OpenMode::ReadWrite).ctx("open", &at.path)?;
                let len = file.len().ctx("len", &at.path)?;
                if at.junk_end == 0 && len == writer.opts.segment_bytes {
                    let prepared = PreparedSegment { file, recycled: at.blank };
                    writer.prepared = Some((at.segment, at.path.clone(), prepared));
                } else {
                    drop(file);
                    remove_durable(&writer.disk, &at.path)?;
                }
            }
        }
        Ok(writer)
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The last LSN known durable.
    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }

    /// The last LSN handed to the OS.
    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment records are being appended to, if any.
    pub fn active_segment(&self) -> Option<SegmentId> {
        self.active.as_ref().map(|a| a.id)
    }

    /// Bytes still free in the active segment after what is buffered; 0 without one.
    pub fn space_left(&self) -> u64 {
        self.active.as_ref().map_or(0, |a| a.segment_bytes - a.write_offset - self.buf.len() as u64)
    }

    /// True if the next segment has been prepared, so rotation will not create a file.
    pub fn has_prepared(&self) -> bool {
        self.prepared.is_some()
    }

    /// The id the next segment will have.
    pub fn next_segment(&self) -> SegmentId {
        self.next_segment
    }

    /// Hands the writer a segment prepared elsewhere (by [`segment::prepare_segment`] for
    /// [`LogWriter::next_segment`], in this writer's directory), so that rotation uses it.
    ///
    /// # Panics
    ///
    /// If `id` is not the next segment or one is already prepared: the caller's bookkeeping is
    /// broken.
    pub fn install_prepared(&mut self, id: SegmentId, segment: PreparedSegment<D::File>) {
        assert_eq!(id, self.next_segment, "prepared segment for the wrong id");
        assert!(self.prepared.is_none(), "a segment is already prepared");
        self.prepared = Some((id, self.dir.join(segment::segment_file_name(id)), segment));
    }

    /// The options the writer runs with.
    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// The first failure, if the writer is poisoned.
    pub fn poisoned(&self) -> Option<&Arc<Error>> {
        self.poisoned.as_ref()
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned { cause: Arc::clone(cause) }),
            None => Ok(()),
        }
    }

    /// Poisons the writer with `e` and returns it.
    fn poison(&mut self, e: Error) -> Error {
        if self.poisoned.is_none() {
            self.poisoned = Some(Arc::new(e.clone_lossy()));
        }
        e
    }

    /// Encodes one record into the batch buffer (rotating to a new segment if it does not fit)
    /// and returns its LSN. Nothing reaches the OS until [`LogWriter::write`] or
    /// [`LogWriter::sync`], except the records of a full segment, which rotation writes and
    /// syncs.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if the payload exceeds the maximum (nothing is appended);
    /// [`Error::Poisoned`] after an earlier failure; the error of a failed rotation (which
    /// poisons the writer).
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        self.check()?;
        let max = self.opts.record_payload_bytes_max();
        if payload.len() as u64 > u64::from(max) {
            return Err(Error::TooLarge {
                what: "record payload",
                len: payload.len() as u64,
                max: u64::from(max),
            });
        }
        assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        let size = encode::record_bytes(payload.len()) as u64;
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| a.write_offset + self.buf.len() as u64 + size <= a.segment_bytes);
        if !fits && let Err(e) = self.rotate() {
            return Err(self.poison(e));
        }
        let active = self.active.as_ref().expect("rotate leaves an active segment");
        debug_assert!(active.write_offset + self.buf.len() as u64 + size <= active.segment_bytes);
        let lsn = self.next_lsn;
        let meta = RecordMeta { lsn, segment: active.id, synced_lsn: self.synced_lsn, kind: kind.to_byte() };
        let crc = encode::encode_record(&mut self.buf, meta, payload);
        self.last = (lsn, crc);
        self.next_lsn = lsn.next();
        Ok(lsn)
    }

    /// Hands the batch buffer to the OS.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] after an earlier failure; the write's error (which poisons).
    pub fn write(&mut self) -> Result<()> {
        self.check()?;
        self.write_buffer(false).map_err(|e| self.poison(e))
    }

    /// Writes the batch buffer as whole pages: the start of its first page again (the same
    /// bytes), then the batch, then zeros to the end of its last page (over zeros). A segment
    /// prepared past the OS cache has none of its pages cached, and a write of part of a page
    /// the cache lacks makes the OS read the page from the disk first.
    ///
    /// With `synced`, the write is also the active segment's sync
    /// ([`DiskFile::write_pages_synced_at`]): everything written is then durable.
    fn write_buffer(&mut self, synced: bool) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let active = self.active.as_mut().expect("a non-empty buffer has a segment");
        let kept = active.page.len();
        let start = active.write_offset - kept as u64;
        debug_assert_eq!(start % PAGE_BYTES, 0, "the page buffer starts a page");
        let end = active.write_offset + self.buf.len() as u64;
        // In a recycled file the bytes after the batch are an earlier use's: the write goes on
        // to cover a whole zero record header after the last record, so that a reader finds
        // this use's records ending in zeroes, not in a piece of an old record (which would
        // look like a torn write).
        let zero_after = if active.recycled { format::RECORD_HEADER_BYTES as u64 } else { 0 };
        let padded = (end + zero_after).next_multiple_of(PAGE_BYTES).min(active.segment_bytes);
        active.page.extend_from_slice(&self.buf);
        let live = active.page.len();
        active.page.resize_zeroed(usize::try_from(padded - start).expect("within one segment"));
        let pages = active.page.as_slice();
        let written = if synced {
            active.file.write_pages_synced_at(pages, start).ctx("write and sync_data", &active.path)
        } else {
            active.file.write_pages_at(pages, start).ctx("write", &active.path)
        };
        if let Err(e) = written {
            active.page.truncate(kept);
            return Err(e);
        }
        // Keep the start of the page `end` is in.
        let tail = usize::try_from(end % PAGE_BYTES).expect("less than a page");
        active.page.truncate(live);
        active.page.drop_front(live - tail);
        active.write_offset = end;
        self.buf.clear();
        self.written_lsn = self.last.0;
        if synced {
            self.synced_lsn = self.written_lsn;
        }
        Ok(())
    }

    /// Writes the batch buffer and syncs the active segment: in one call to the disk where
    /// there is something to write (a segment is synced before the next one gets its header,
    /// so the active segment holds everything unsynced). Two calls where a planted bug
    /// (feature `mutants`) changes the sync.
    fn write_and_sync(&mut self) -> Result<()> {
        let planted =
            mutation::active(Mutation::AckBeforeSync) || mutation::active(Mutation::FailedSyncRetried);
        if self.buf.is_empty() || planted {
            return self.write_buffer(false).and_then(|()| self.sync_active());
        }
        self.write_buffer(true)
    }

    fn sync_active(&mut self) -> Result<()> {
        if let Some(active) = &self.active
            && self.synced_lsn < self.written_lsn
            && !mutation::active(Mutation::AckBeforeSync)
        {
            let synced = active.file.sync_data();
            if synced.is_err() && mutation::active(Mutation::FailedSyncRetried) {
                active.file.sync_data().ctx("sync_data", &active.path)?;
            } else {
                synced.ctx("sync_data", &active.path)?;
            }
        }
        self.synced_lsn = self.written_lsn;
        Ok(())
    }

    /// Writes the batch buffer and makes every appended record durable; returns the durable LSN.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] after an earlier failure; the write's or sync's error (which poisons:
    /// a failed sync is never retried as if it had worked).
    pub fn sync(&mut self) -> Result<Lsn> {
        self.check()?;
        let result = self.write_and_sync();
        result.map_err(|e| self.poison(e))?;
        Ok(self.synced_lsn)
    }

    /// Creates the next segment ahead of need, so that rotation does not wait for it.
    ///
    /// # Errors
    ///
    /// As [`segment::prepare_segment`]. A failure here does not poison: nothing was acknowledged
    /// against it, and rotation will try again.
    pub fn prepare_next(&mut self) -> Result<()> {
        self.check()?;
        if self.prepared.is_none() {
            let id = self.next_segment;
            let prepared = prepare_segment(&self.disk, &self.dir, id, self.opts.segment_bytes)?;
            self.prepared = Some((id, self.dir.join(segment::segment_file_name(id)), prepared));
        }
        Ok(())
    }

    /// Seals the current segment (write, sync) and starts the next one.
    fn rotate(&mut self) -> Result<()> {
        self.write_and_sync()?;
        self.prepare_next()?;
        let (id, path, PreparedSegment { file, recycled }) = self.prepared.take().expect("prepared above");
        debug_assert_eq!(id, self.next_segment);
        let header = SegmentHeader {
            segment: id,
            first_lsn: self.next_lsn,
            prev_last_lsn: self.last.0,
            prev_last_crc: self.last.1,
            segment_bytes: self.opts.segment_bytes,
            recycled,
        };
        debug_assert!(self.buf.is_empty());
        self.buf.extend_from_slice(&encode::encode_segment_header(&header));
        self.active = Some(Active {
            id,
            path,
            file,
            write_offset: 0,
            page: PageBuf::default(),
            segment_bytes: self.opts.segment_bytes,
            recycled,
        });
        self.next_segment = id.next();
        Ok(())
    }

    /// Writes and syncs everything appended, then closes the files.
    ///
    /// # Errors
    ///
    /// As [`LogWriter::sync`].
    pub fn close(mut self) -> Result<Lsn> {
        self.sync()
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::SimDisk;
    use crate::wal::{RecoveryMode, read_log};

    /// Every write of a batch covers whole pages, starting at a page boundary, with the start
    /// of its first page written again; and the records read back as written, across a
    /// rotation and a reopen (which takes the page's start from what recovery read).
    #[test]
    fn batches_are_written_as_whole_pages() {
        let disk = SimDisk::new(7);
        let dir = Path::new("/wal");
        let opts = WalOptions {
            segment_bytes: 64 * 1024,
            record_payload_bytes_max: None,
            recovery: RecoveryMode::Strict,
        };
        let mut appended = Vec::new();
        for open in 0..2u8 {
            let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).expect("open");
            for batch in 0..40u8 {
                for i in 0..=(batch % 5) {
                    let payload = vec![open ^ batch ^ i; 37 + 101 * usize::from(i)];
                    w.append(RecordKind::Unknown(0x80), &payload).expect("append");
                    appended.push(payload);
                }
                let before = disk.stats();
                w.write().expect("write");
                let after = disk.stats();
                let bytes = after.bytes_written - before.bytes_written;
                assert_eq!(after.writes - before.writes, 1, "one write per batch");
                assert_eq!(bytes % PAGE_BYTES, 0, "batch {batch}: {bytes} bytes is not whole pages");
                let offset = opts.segment_bytes - w.space_left();
                assert!(bytes >= offset % PAGE_BYTES, "the start of the page is written again");
            }
            w.close().expect("close");
        }
        let (records, _) = read_log(disk.clone(), dir, opts.read_options()).expect("read");
        let read: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload.to_vec()).collect();
        assert_eq!(read, appended);
        assert!(disk.stats().bytes_written > 2 * opts.segment_bytes, "the log rotated");
    }
}

/// The events of a recovery: how the log ended, at `info`; a cut torn tail or a stop at
/// corruption, with what was dropped, at `warn`.
fn trace_recovery(dir: &Path, report: &RecoveryReport) {
    match &report.end {
        crate::wal::LogEnd::Clean => tracing::info!(
            dir = %dir.display(),
            records = report.records,
            last_lsn = report.last_lsn.map(|l| l.0),
            "log recovered: clean end"
        ),
        crate::wal::LogEnd::TornTail(cut) | crate::wal::LogEnd::Stopped(cut) => tracing::warn!(
            dir = %dir.display(),
            records = report.records,
            last_lsn = report.last_lsn.map(|l| l.0),
            file = %cut.file.display(),
            offset = cut.offset,
            dropped_bytes = cut.dropped_bytes,
            dropped_records = cut.dropped_records,
            reason = %cut.reason,
            "log recovered: {} cut",
            if matches!(report.end, crate::wal::LogEnd::TornTail(_)) { "a torn tail" } else { "the log (point in time)" }
        ),
    }
}
