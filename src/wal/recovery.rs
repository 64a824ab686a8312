//! The recovery reader: reads the segments of a log in order, yields its records, and decides
//! where the log ends and why.
//!
//! # Torn tail or corruption
//!
//! A crash can leave any unsynced bytes lost, kept or torn sector by sector — so a bad record
//! followed by good ones is *not* by itself proof of corruption: both may be unsynced writes of
//! the last batch. What separates the cases is whether the bad bytes had been made durable. Two
//! things on disk prove that:
//!
//! - every record carries `synced_lsn`, the LSN up to which the log was durable when the record
//!   was written: a valid record with `synced_lsn ≥ L` after a bad spot where LSN `L` was due
//!   proves that LSN `L` had been synced;
//! - a segment header is written only after the previous segment was synced, and names the last
//!   LSN of that segment (`prev_last_lsn`) and that record's checksum (`prev_last_crc`).
//!
//! So, when reading stops at a *bad point* (a record that is incomplete, fails its checksum or
//! has an impossible length; a torn segment header; zeroes where a record was due), the reader
//! scans everything after it — the rest of the segment and every later segment file — for such
//! proof ("evidence"):
//!
//! | after the bad point | verdict |
//! | --- | --- |
//! | only zeroes | clean end of the log |
//! | non-zero bytes, but no evidence | **torn tail** |
//! | a valid record with `synced_lsn ≥ L` or a header with `prev_last_lsn ≥ L` | **corruption** |
//!
//! One refinement: if the bad point lies in a segment whose *next* segment's header chains exactly
//! to the last record read (same LSN, same checksum), that segment's records really ended there —
//! the writer rotated — and the bad bytes lie in unused space: reading goes on with the next
//! segment (`Strict` still reports the non-zero bytes).
//!
//! **Recycled segments** (header flag [`format::FLAG_RECYCLED`]) keep an earlier use's bytes
//! after their own records, so "only zeroes" becomes "none of this segment's own records": after
//! a bad point in such a segment only valid records carrying its segment number count (as
//! dropped records, as evidence, and as what the writer zeroes before resuming), and zeroes or
//! a stale record followed by none of them is a clean end. The writer makes that hold at every
//! clean end: each of its writes in a recycled segment covers a zero record header after the
//! last record. A lost sector of an unsynced write reads back as earlier bytes rather than
//! zeroes: a bad record (torn tail), or the end of the records; either way only unsynced records
//! are dropped. A *blank* header (a recycled file prepared and never used) ends the log like an
//! all-zero one, and its file's bytes count for nothing. `Strict` does not report non-zero bytes
//! in a recycled segment's unused space: they are expected there.
//!
//! Some problems cannot come from a crash at all and are corruption wherever they are: a CRC-valid
//! record with the wrong LSN, an unknown mandatory record type, a malformed payload, a broken
//! chain between segments, a header whose segment number differs from its file name. A missing
//! segment in the middle shows up as a bad point followed by a later segment whose header proves
//! the missing LSNs were durable, hence corruption.
//!
//! Damage in the very last synced batch, with nothing written after it, cannot be told apart from
//! a torn write by any reader: it is reported as a torn tail (see `docs/FORMAT.md`).
//!
//! # Modes
//!
//! | mode | clean end | torn tail | corruption |
//! | --- | --- | --- | --- |
//! | [`RecoveryMode::Strict`] | `Ok` | [`Error::Corrupt`] | [`Error::Corrupt`] |
//! | [`RecoveryMode::TolerateTornTail`] (default) | `Ok` | `Ok`, reported in [`LogEnd::TornTail`] | [`Error::Corrupt`] |
//! | [`RecoveryMode::PointInTime`] | `Ok` | `Ok`, [`LogEnd::TornTail`] | `Ok`, [`LogEnd::Stopped`] at the first bad point |
//!
//! Records of an unknown *ignorable* kind (128–255) are yielded as [`RecordKind::Unknown`]; a
//! consumer that does not know them skips them. In every mode the records yielded are exactly the
//! valid prefix: no record after the first bad point is ever returned. Under `Strict` and
//! `TolerateTornTail` an error can come after some records were yielded; callers apply records
//! only once the whole log has been read.
//!
//! # Limits
//!
//! One segment is held in memory at a time; a segment file larger than
//! [`ReadOptions::segment_bytes_max`] is refused before it is read. Records are bounded by
//! [`ReadOptions::record_payload_bytes_max`].

use super::decode::{self, DecodeLimits, Decoded, HeaderDecoded};
use super::encode::SegmentHeader;
use super::format::{self, rec};
use super::payload::{RecordKind, validate_payload};
use super::segment::list_segments;
use crate::disk::{Disk, read_file};
use crate::error::{Error, Result};
use crate::types::{Lsn, SegmentId};
use std::io;
use std::path::{Path, PathBuf};

/// How recovery treats a damaged log. See the [module docs](self) for the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecoveryMode {
    /// Any bad byte where the log should continue — a torn tail included — is an error.
    Strict,
    /// Cut a torn tail and report what was dropped; corruption is an error. The default.
    #[default]
    TolerateTornTail,
    /// Stop at the first bad point, whatever it is, and report the LSN reached.
    PointInTime,
}

/// Options for reading a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// How to treat damage.
    pub mode: RecoveryMode,
    /// The largest record payload accepted; a larger length field is a bad record.
    pub record_payload_bytes_max: u32,
    /// Segment files larger than this are refused without being read.
    pub segment_bytes_max: u64,
}

with_setters!(ReadOptions {
    with_mode: mode: RecoveryMode;
    with_record_payload_bytes_max: record_payload_bytes_max: u32;
    with_segment_bytes_max: segment_bytes_max: u64;
});

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            mode: RecoveryMode::default(),
            record_payload_bytes_max: crate::wal::DEFAULT_RECORD_PAYLOAD_BYTES_MAX,
            segment_bytes_max: format::SEGMENT_BYTES_MAX,
        }
    }
}

/// A record as read from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// The segment it was read from.
    pub segment: SegmentId,
    /// Its byte offset in the segment file.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its kind.
    pub kind: RecordKind,
    /// Its payload, validated for the known kinds.
    pub payload: &'a [u8],
    /// Its checksum.
    pub crc: u32,
}

impl LogRecord<'_> {
    /// Header plus payload, in bytes.
    pub fn encoded_len(&self) -> u64 {
        (format::RECORD_HEADER_BYTES + self.payload.len()) as u64
    }

    /// An owned copy.
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            segment: self.segment,
            offset: self.offset,
            lsn: self.lsn,
            kind: self.kind,
            payload: self.payload.to_vec(),
        }
    }
}

/// An owned [`LogRecord`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The segment it was read from.
    pub segment: SegmentId,
    /// Its byte offset in the segment file.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its kind.
    pub kind: RecordKind,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Where the readable log stops and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The segment holding the first bad byte.
    pub segment: SegmentId,
    /// Its file.
    pub file: PathBuf,
    /// Offset in that file where the log stops.
    pub offset: u64,
    /// What was found there.
    pub reason: String,
    /// Bytes dropped: from the cut to the last non-zero byte of that segment, plus the non-zero
    /// extent of each later segment file.
    pub dropped_bytes: u64,
    /// Valid records found (and dropped) after the cut.
    pub dropped_records: u64,
}

/// How the log ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// Only zeroes (or an earlier use's stale records) after the last record.
    Clean,
    /// A torn tail was cut (never under [`RecoveryMode::Strict`]).
    TornTail(Cut),
    /// [`RecoveryMode::PointInTime`] stopped at corruption.
    Stopped(Cut),
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The mode it ran in.
    pub mode: RecoveryMode,
    /// Segment files in the directory.
    pub segment_files: u64,
    /// Records read (the valid prefix).
    pub records: u64,
    /// LSN of the first record read.
    pub first_lsn: Option<Lsn>,
    /// LSN of the last record read.
    pub last_lsn: Option<Lsn>,
    /// The highest LSN seen anywhere, including valid records in a dropped tail and LSNs a
    /// segment header reserved. A writer continues above it so that no LSN is ever reused.
    pub max_lsn_seen: Lsn,
    /// The log in this directory begins after this LSN: the `prev_last_lsn` of its first
    /// segment's header (records up to it were in segments since removed, e.g. after a
    /// checkpoint). `Lsn::ZERO` for a log that starts at its beginning or has no valid header.
    pub starts_after: Lsn,
    /// How the log ended.
    pub end: LogEnd,
    /// Where a writer continues.
    pub(crate) resume: Resume,
}

/// Where the log ends, in terms a writer can continue from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The segment holding the end, if any segment file exists.
    pub at: Option<ResumeAt>,
    /// (LSN, crc) of the last record before the end; `(0, 0)` for none.
    pub chain: (Lsn, u32),
    /// The LSN the end position expects next.
    pub expected: Lsn,
    /// Segment files after the segment holding the end: junk, prepared, or dropped.
    pub later_files: Vec<PathBuf>,
    /// Non-zero bytes in the unused space of segments before the end (`file`, from, to), which
    /// a mode other than `Strict` read past: the writer zeroes them before it writes, so that
    /// the log it continues reads strictly.
    pub unused_junk: Vec<(PathBuf, u64, u64)>,
}

/// The end position inside its segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResumeAt {
    pub segment: SegmentId,
    pub path: PathBuf,
    pub offset: u64,
    /// The segment's header, if it is valid (then `offset ≥` the header size).
    pub header: Option<SegmentHeader>,
    /// Whether the segment has a blank header: a recycled file prepared and never used.
    pub blank: bool,
    /// Offset just after the last non-zero byte at or after `offset` in this segment: the writer
    /// zeroes `offset..junk_end` before writing there.
    pub junk_end: u64,
}

/// Why reading stopped at a position.
enum Cause {
    /// Zeroes where a record or header was due, or the end of the files.
    Zero,
    /// A valid record of an earlier use of the file.
    Stale,
    /// A bad record or header that a crash could explain.
    Torn(String),
    /// Damage no crash can explain.
    Hard(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Open segment `idx`.
    Segment,
    /// Read records of segment `idx` from `pos`.
    Records,
    /// Finished.
    Done,
}

/// What one step of reading produced.
enum Step {
    Record { offset: usize, total: usize, lsn: Lsn, kind: RecordKind, crc: u32 },
    Continue,
    End,
}

/// What a scan after a bad point found.
#[derive(Default)]
struct Scan {
    /// Offset after the last non-zero byte in the segment of the bad point (0: none).
    junk_end: u64,
    dropped_bytes: u64,
    dropped_records: u64,
    max_lsn: Lsn,
    evidence: Option<String>,
}

/// Reads a log directory; see the [module docs](self).
///
/// ```no_run
/// use waldb::{StdDisk, wal::{LogReader, ReadOptions}};
/// # fn main() -> waldb::Result<()> {
/// let mut reader = LogReader::open(StdDisk, "db/wal".as_ref(), ReadOptions::default())?;
/// while let Some(record) = reader.next_record()? {
///     println!("{} {} {} bytes", record.lsn, record.kind, record.payload.len());
/// }
/// println!("{:?}", reader.report().expect("read to the end").end);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LogReader<D: Disk> {
    disk: D,
    opts: ReadOptions,
    segments: Vec<(SegmentId, PathBuf)>,
    idx: usize,
    buf: Vec<u8>,
    pos: usize,
    header: Option<SegmentHeader>,
    /// The segment where reading stopped has a blank header (see [`HeaderDecoded::Blank`]).
    blank: bool,
    /// See [`Resume::unused_junk`].
    unused_junk: Vec<(PathBuf, u64, u64)>,
    /// (LSN, crc) of the last record read, or the current header's previous-segment values.
    chain: Option<(Lsn, u32)>,
    expected: Lsn,
    records: u64,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    max_lsn_seen: Lsn,
    starts_after: Lsn,
    phase: Phase,
    report: Option<RecoveryReport>,
}

impl<D: Disk> LogReader<D> {
    /// Lists the segments of the log directory `dir` and prepares to read them.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be listed (`NotFound` if it does not exist).
    pub fn open(disk: D, dir: &Path, opts: ReadOptions) -> Result<Self> {
        let listing = list_segments(&disk, dir)?;
        Ok(LogReader {
            disk,
            opts,
            segments: listing.segments,
            idx: 0,
            buf: Vec::new(),
            pos: 0,
            header: None,
            blank: false,
            unused_junk: Vec::new(),
            chain: None,
            expected: Lsn(1),
            records: 0,
            first_lsn: None,
            last_lsn: None,
            max_lsn_seen: Lsn::ZERO,
            starts_after: Lsn::ZERO,
            phase: Phase::Segment,
            report: None,
        })
    }

    /// The next record of the valid prefix, or `None` at the end of the log.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] as the mode decides (see the [module docs](self)),
    /// [`Error::UnsupportedVersion`], and [`Error::Io`] for failed reads. After an error the
    /// reader is finished: later calls return `Ok(None)` and [`LogReader::report`] is `None`.
    pub fn next_record(&mut self) -> Result<Option<LogRecord<'_>>> {
        loop {
            let step = match self.step() {
                Ok(step) => step,
                Err(e) => {
                    self.phase = Phase::Done;
                    return Err(e);
                }
            };
            match step {
                Step::Continue => {}
                Step::End => return Ok(None),
                Step::Record { offset, total, lsn, kind, crc } => {
                    let payload = &self.buf[offset + format::RECORD_HEADER_BYTES..offset + total];
                    return Ok(Some(LogRecord {
                        segment: self.segments[self.idx].0,
                        offset: offset as u64,
                        lsn,
                        kind,
                        payload,
                        crc,
                    }));
                }
            }
        }
    }

    /// What recovery found; `Some` once [`LogReader::next_record`] has returned `Ok(None)`.
    pub fn report(&self) -> Option<&RecoveryReport> {
        self.report.as_ref()
    }

    /// Reads the rest of the log, calling `f` for each record, and returns the report.
    ///
    /// # Errors
    ///
    /// As [`LogReader::next_record`], and whatever `f` returns.
    pub fn for_each(mut self, mut f: impl FnMut(&LogRecord<'_>) -> Result<()>) -> Result<RecoveryReport> {
        while let Some(record) = self.next_record()? {
            f(&record)?;
        }
        Ok(self.report.take().expect("the report exists once reading ended without error"))
    }

    fn step(&mut self) -> Result<Step> {
        match self.phase {
            Phase::Done => Ok(Step::End),
            Phase::Segment => self.open_segment(),
            Phase::Records => self.read_record(),
        }
    }

    fn current(&self) -> (SegmentId, &Path) {
        let (id, path) = &self.segments[self.idx];
        (*id, path)
    }

    fn load(&self, path: &Path) -> Result<Vec<u8>> {
        read_file(&self.disk, path, self.opts.segment_bytes_max).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                Error::corrupt(path, 0, format!("segment {e}"))
            } else {
                Error::io("read", path, e)
            }
        })
    }

    fn open_segment(&mut self) -> Result<Step> {
        if self.idx >= self.segments.len() {
            // No segment files at all.
            debug_assert!(self.segments.is_empty());
            return self.finish(LogEnd::Clean, Scan::default(), 0);
        }
        let (id, path) = (self.segments[self.idx].0, self.segments[self.idx].1.clone());
        self.buf = self.load(&path)?;
        self.pos = 0;
        match decode::decode_segment_header(&self.buf) {
            HeaderDecoded::Zero => self.conclude(0, Cause::Zero),
            HeaderDecoded::Blank { segment, .. } if segment != id => {
                let why = format!(
                    "file name says segment {} but its blank header says segment {}",
                    id.0, segment.0
                );
                self.conclude(0, Cause::Hard(why))
            }
            // A recycled file prepared and never used: the log ends here, and the rest of the
            // file is an earlier use's.
            HeaderDecoded::Blank { .. } => {
                self.blank = true;
                self.conclude(0, Cause::Stale)
            }
            HeaderDecoded::Invalid(reason) => self.conclude(0, Cause::Torn(reason.to_owned())),
            HeaderDecoded::UnsupportedVersion(found) => {
                Err(Error::UnsupportedVersion { file: path, found, supported: format::FORMAT_VERSION })
            }
            HeaderDecoded::Valid(h) => {
                if h.segment != id {
                    let why = format!(
                        "file name says segment {} but its header says segment {}",
                        id.0, h.segment.0
                    );
                    return self.conclude(0, Cause::Hard(why));
                }
                if let Some((lsn, crc)) = self.chain {
                    if (h.prev_last_lsn, h.prev_last_crc) != (lsn, crc) {
                        let why = format!(
                            "segment chain broken: the header says the previous segment ends at LSN {} \
                             (crc {:#010x}), but it ends at LSN {} (crc {:#010x})",
                            h.prev_last_lsn, h.prev_last_crc, lsn, crc
                        );
                        return self.conclude(0, Cause::Hard(why));
                    }
                } else {
                    self.starts_after = h.prev_last_lsn;
                }
                let limit = usize::try_from(h.segment_bytes).unwrap_or(usize::MAX);
                self.buf.truncate(limit);
                self.chain = Some((h.prev_last_lsn, h.prev_last_crc));
                self.expected = h.first_lsn;
                self.max_lsn_seen = self.max_lsn_seen.max(Lsn(h.first_lsn.0 - 1));
                self.header = Some(h);
                self.pos = format::SEGMENT_HEADER_BYTES;
                self.phase = Phase::Records;
                Ok(Step::Continue)
            }
        }
    }

    fn read_record(&mut self) -> Result<Step> {
        let (id, _) = self.current();
        let pos = self.pos;
        if pos >= self.buf.len() {
            return self.end_of_segment(Cause::Zero);
        }
        if self.recycled() && pos + format::RECORD_HEADER_BYTES > self.buf.len() {
            // No record fits here, so the writer never wrote here: an earlier use's bytes.
            return self.end_of_segment(Cause::Stale);
        }
        let limits = DecodeLimits { segment: id, payload_bytes_max: self.opts.record_payload_bytes_max };
        match decode::decode_record(&self.buf[pos..], &limits) {
            Decoded::Record(r) => {
                if r.lsn != self.expected {
                    let why = format!("record has LSN {} where LSN {} was due", r.lsn, self.expected);
                    return self.conclude(pos, Cause::Hard(why));
                }
                let kind = RecordKind::from_byte(r.kind);
                if let RecordKind::Unknown(b) = kind
                    && !kind.is_ignorable()
                {
                    let why = format!("unknown record type {b} (written by a newer waldb?)");
                    return self.conclude(pos, Cause::Hard(why));
                }
                if let Err(e) = validate_payload(kind, r.payload) {
                    return self.conclude(pos, Cause::Hard(format!("malformed {kind} payload: {e}")));
                }
                let (lsn, crc, total) = (r.lsn, r.crc, r.encoded_len());
                self.chain = Some((lsn, crc));
                self.expected = lsn.next();
                self.records += 1;
                self.first_lsn.get_or_insert(lsn);
                self.last_lsn = Some(lsn);
                self.max_lsn_seen = self.max_lsn_seen.max(lsn);
                self.pos = pos + total;
                Ok(Step::Record { offset: pos, total, lsn, kind, crc })
            }
            Decoded::Zero => self.end_of_segment(Cause::Zero),
            Decoded::Stale { segment, .. } if segment < id => self.end_of_segment(Cause::Stale),
            Decoded::Stale { segment, .. } => {
                let why = format!("a record of segment {} inside segment {}", segment.0, id.0);
                self.conclude(pos, Cause::Hard(why))
            }
            Decoded::Incomplete { needed } => {
                let why = format!("incomplete record: needs {needed} bytes, {} remain", self.buf.len() - pos);
                self.end_of_segment(Cause::Torn(why))
            }
            Decoded::Corrupt(c) => self.end_of_segment(Cause::Torn(c.to_string())),
        }
    }

    /// Whether the segment being read is a recycled file ([`format::FLAG_RECYCLED`]): bytes
    /// after its records may be an earlier use's, so only its own records count after a bad
    /// point.
    fn recycled(&self) -> bool {
        self.phase == Phase::Records && self.header.is_some_and(|h| h.recycled)
    }

    /// The header of the next segment file, if that file is the next in sequence and holds at
    /// least a header's worth of bytes.
    fn peek_next_header(&self) -> Result<Option<HeaderDecoded>> {
        let (id, _) = self.current();
        let Some((next_id, next_path)) = self.segments.get(self.idx + 1) else { return Ok(None) };
        if *next_id != id.next() {
            return Ok(None);
        }
        let mut head = vec![0u8; format::SEGMENT_HEADER_BYTES];
        let read = self
            .disk
            .open(next_path, crate::disk::OpenMode::Read)
            .and_then(|f| crate::disk::DiskFile::read_exact_at(&f, &mut head, 0));
        match read {
            Ok(()) => Ok(Some(decode::decode_segment_header(&head))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::io("read", next_path, e)),
        }
    }

    /// The records of the current segment stop at `pos`, for `cause`. Either the next segment
    /// continues the log, or the log ends here:
    ///
    /// - after zeroes, a stale record or the segment's end, any valid next header continues it
    ///   (its chain is checked when it is opened);
    /// - after a bad record, only a next header that chains exactly to the last record read
    ///   continues it: then this segment's records really ended here (the writer rotated) and
    ///   the bad bytes lie in unused space. Anything else is a bad point.
    fn end_of_segment(&mut self, cause: Cause) -> Result<Step> {
        let next = self.peek_next_header()?;
        let continues = match (&cause, &next) {
            (
                Cause::Zero | Cause::Stale,
                Some(HeaderDecoded::Valid(_) | HeaderDecoded::UnsupportedVersion(_)),
            ) => true,
            // The next header must be the next segment's, not only chain to this one: a copy of
            // this segment's own header under the next name chains too (fuzzed: seed
            // `wal_recover/regression_pit_junk_after_resume`).
            (Cause::Torn(_), Some(HeaderDecoded::Valid(h))) => {
                Some((h.prev_last_lsn, h.prev_last_crc)) == self.chain
                    && h.first_lsn > h.prev_last_lsn
                    && h.segment == self.current().0.next()
            }
            _ => false,
        };
        if !continues {
            return self.conclude(self.pos, cause);
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        if !matches!(cause, Cause::Stale)
            && !self.recycled()
            && let Some(at) = rest.iter().position(|&b| b != 0)
        {
            let offset = (self.pos + at) as u64;
            let path = self.current().1.to_path_buf();
            if self.opts.mode == RecoveryMode::Strict {
                return Err(Error::corrupt(
                    path,
                    offset,
                    "non-zero bytes after the last record of a segment",
                ));
            }
            let end = rest.iter().rposition(|&b| b != 0).map_or(offset, |e| (self.pos + e + 1) as u64);
            self.unused_junk.push((path, self.pos as u64, end));
        }
        self.idx += 1;
        self.phase = Phase::Segment;
        Ok(Step::Continue)
    }

    /// The LSN due at the current position: the next one in this segment, or after the last one
    /// read when no segment header has been accepted here.
    fn due(&self) -> Lsn {
        if self.phase == Phase::Records {
            self.expected
        } else {
            self.chain.map_or(Lsn(1), |(lsn, _)| lsn.next())
        }
    }

    /// Reading stopped at `offset` of the current segment because of `cause`: decide how the log
    /// ends (see the module docs), and finish or fail.
    fn conclude(&mut self, offset: usize, cause: Cause) -> Result<Step> {
        let (id, path) = (self.current().0, self.current().1.to_path_buf());
        let due = self.due();
        let scan_from = match cause {
            // The rest of the segment is an earlier use's data; only later files matter. (In a
            // recycled segment the scan looks past it for this segment's own records.)
            Cause::Stale if !self.recycled() => self.buf.len(),
            _ => offset,
        };
        let scan = self.scan_after(scan_from, due)?;
        let cut = |reason: String, scan: &Scan| Cut {
            segment: id,
            file: path.clone(),
            offset: offset as u64,
            reason,
            dropped_bytes: scan.dropped_bytes,
            dropped_records: scan.dropped_records,
        };
        let (reason, corrupt) = match (cause, &scan.evidence) {
            (Cause::Hard(why), _) => (why, true),
            (Cause::Torn(why), Some(ev)) => (format!("{why}, but {ev}"), true),
            (Cause::Zero | Cause::Stale, Some(ev)) => (format!("the log ends here, but {ev}"), true),
            (Cause::Torn(why), None) => (why, false),
            (Cause::Zero | Cause::Stale, None) if scan.dropped_bytes == 0 => {
                return self.finish(LogEnd::Clean, scan, offset);
            }
            (Cause::Zero | Cause::Stale, None) => {
                ("non-zero bytes after the end of the log".to_owned(), false)
            }
        };
        match (self.opts.mode, corrupt) {
            (RecoveryMode::PointInTime, true) => {
                self.finish(LogEnd::Stopped(cut(reason, &scan)), scan, offset)
            }
            (_, true) => Err(Error::corrupt(&path, offset as u64, reason)),
            (RecoveryMode::Strict, false) => {
                Err(Error::corrupt(&path, offset as u64, format!("torn tail: {reason}")))
            }
            (_, false) => self.finish(LogEnd::TornTail(cut(reason, &scan)), scan, offset),
        }
    }

    /// Scans from `offset` of the current segment through every later segment file for non-zero
    /// bytes, valid records, and evidence that LSN `due` was durable.
    fn scan_after(&self, offset: usize, due: Lsn) -> Result<Scan> {
        let mut scan = Scan::default();
        let (id, _) = self.current();
        let region = self.buf.get(offset..).unwrap_or(&[]);
        let records_end = self.scan_records(region, offset, id, due, &mut scan, self.current().1);
        // What the writer must zero before writing at `offset`: every non-zero byte of the
        // segment after it; in a recycled segment, the extent of this segment's own records
        // (anything else there is an earlier use's, no different from what follows).
        let junk =
            if self.recycled() { records_end } else { region.iter().rposition(|&b| b != 0).map(|e| e + 1) };
        if let Some(end) = junk {
            scan.junk_end = (offset + end) as u64;
            scan.dropped_bytes += end as u64;
        }
        let mut expected_id = id.next();
        for (later_id, later_path) in &self.segments[self.idx + 1..] {
            if scan.evidence.is_some() {
                break;
            }
            let gap = if *later_id != expected_id {
                format!("segment {} is missing and ", expected_id.0)
            } else {
                String::new()
            };
            expected_id = later_id.next();
            let bytes = self.load(later_path)?;
            let header = decode::decode_segment_header(&bytes);
            match header {
                // Prepared and never used: the rest is an earlier use's.
                HeaderDecoded::Blank { .. } => continue,
                // Only the header and this segment's own records are this use's.
                HeaderDecoded::Valid(h) if h.recycled => {
                    scan.dropped_bytes += format::SEGMENT_HEADER_BYTES as u64;
                }
                _ => {
                    if let Some(end) = bytes.iter().rposition(|&b| b != 0) {
                        scan.dropped_bytes += end as u64 + 1;
                    }
                }
            }
            let mut seg_id = *later_id;
            if let HeaderDecoded::Valid(h) = header {
                seg_id = h.segment;
                scan.max_lsn = scan.max_lsn.max(Lsn(h.first_lsn.0 - 1));
                if h.prev_last_lsn >= due {
                    scan.evidence = Some(format!(
                        "{gap}the header of {} says LSN {} was durable before it was written",
                        later_path.display(),
                        h.prev_last_lsn
                    ));
                    break;
                }
            }
            let records_end = self.scan_records(&bytes, 0, seg_id, due, &mut scan, later_path);
            if matches!(header, HeaderDecoded::Valid(h) if h.recycled) {
                scan.dropped_bytes +=
                    records_end.map_or(0, |e| e.saturating_sub(format::SEGMENT_HEADER_BYTES)) as u64;
            }
            if let Some(ev) = scan.evidence.take() {
                scan.evidence = Some(format!("{gap}{ev}"));
            }
        }
        Ok(scan)
    }

    /// Looks at every byte offset of `bytes` (which starts at file offset `base`) for a valid
    /// record of segment `segment`; records what it finds in `scan`. Returns the offset in
    /// `bytes` just after the last such record, if any.
    fn scan_records(
        &self,
        bytes: &[u8],
        base: usize,
        segment: SegmentId,
        due: Lsn,
        scan: &mut Scan,
        path: &Path,
    ) -> Option<usize> {
        let limits = DecodeLimits { segment, payload_bytes_max: self.opts.record_payload_bytes_max };
        let first = bytes.iter().position(|&b| b != 0)?;
        let mut records_end = None;
        let last = bytes.iter().rposition(|&b| b != 0).unwrap_or(first);
        let want = segment.0.to_le_bytes();
        let mut at = first.saturating_sub(rec::SEGMENT.start);
        while at <= last && at + format::RECORD_HEADER_BYTES <= bytes.len() {
            // Cheap filter first: the segment field must match before a checksum is computed.
            if bytes[at + rec::SEGMENT.start..at + rec::SEGMENT.end] == want
                && let Decoded::Record(r) = decode::decode_record(&bytes[at..], &limits)
            {
                scan.dropped_records += 1;
                scan.max_lsn = scan.max_lsn.max(r.lsn);
                records_end = Some(at + r.encoded_len());
                if r.synced_lsn >= due {
                    scan.evidence = Some(format!(
                        "a valid record at offset {} of {} (LSN {}) was written after LSN {} was durable",
                        base + at,
                        path.display(),
                        r.lsn,
                        r.synced_lsn
                    ));
                    return records_end;
                }
                at += r.encoded_len();
                continue;
            }
            at += 1;
        }
        records_end
    }

    fn finish(&mut self, end: LogEnd, scan: Scan, offset: usize) -> Result<Step> {
        let at = self.segments.get(self.idx).map(|(id, path)| ResumeAt {
            segment: *id,
            path: path.clone(),
            offset: offset as u64,
            header: if self.phase == Phase::Records { self.header } else { None },
            blank: self.blank,
            junk_end: scan.junk_end.max(offset as u64),
        });
        let later_files =
            self.segments.get(self.idx + 1..).unwrap_or(&[]).iter().map(|(_, p)| p.clone()).collect();
        let expected = self.due();
        let max_lsn_seen = self.max_lsn_seen.max(scan.max_lsn);
        self.report = Some(RecoveryReport {
            mode: self.opts.mode,
            segment_files: self.segments.len() as u64,
            records: self.records,
            first_lsn: self.first_lsn,
            last_lsn: self.last_lsn,
            max_lsn_seen,
            starts_after: self.starts_after,
            end,
            resume: Resume {
                at,
                chain: self.chain.unwrap_or((Lsn::ZERO, 0)),
                expected,
                later_files,
                unused_junk: std::mem::take(&mut self.unused_junk),
            },
        });
        self.phase = Phase::Done;
        Ok(Step::End)
    }
}

/// Reads the whole log in `dir` into memory: the records of its valid prefix and the report.
///
/// # Errors
///
/// As [`LogReader::next_record`].
pub fn read_log<D: Disk>(
    disk: D,
    dir: &Path,
    opts: ReadOptions,
) -> Result<(Vec<OwnedRecord>, RecoveryReport)> {
    let mut records = Vec::new();
    let report = LogReader::open(disk, dir, opts)?.for_each(|r| {
        records.push(r.to_owned_record());
        Ok(())
    })?;
    Ok((records, report))
}
