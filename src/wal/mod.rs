//! The write-ahead log: its format, a pure decoder, segment files, the writer and the recovery
//! reader.
//!
//! ```text
//!  wal/00000000000000000001.wal   wal/00000000000000000002.wal   wal/00000000000000000003.wal
//!  ┌────────┬────┬────┬─ ─ ─┬───┐ ┌────────┬────┬─ ─ ─┬───────┐ ┌────────┬──────────────────┐
//!  │ header │ r1 │ r2 │ ... │ 0 │ │ header │ rK │ ... │ 0 0 0 │ │ 000000 (prepared, unused) │
//!  └────────┴────┴────┴─ ─ ─┴───┘ └────────┴────┴─ ─ ─┴───────┘ └───────────────────────────┘
//!            LSN 1, 2, …            first_lsn = K, prev_last_lsn = K−1, prev_last_crc = crc(rK−1)
//! ```
//!
//! - [`format`](mod@format): the byte layout (also in `docs/FORMAT.md`), with compile-time checks.
//! - `encode` / `decode`: record and segment-header codecs; the decoder is a pure function
//!   that returns a value for every input.
//! - [`payload`]: the transaction and checkpoint-marker payloads.
//! - `segment`: file names, discovery, preparation of zero-filled segments.
//! - [`writer`]: [`LogWriter`], appending, rotating, syncing, fail-stop.
//! - [`recovery`]: [`LogReader`], which yields the valid prefix and tells a torn tail from
//!   corruption.
//! - [`group`]: [`Wal`], group commit over the writer: many committers, one flusher step,
//!   durability modes, back-pressure, fail-stop.
//!
//! A user who wants only a durable log needs [`Wal`] (group commit) or [`LogWriter`] and
//! [`read_log`] (one writer), their options, and the payload helpers ([`encode_txn`],
//! [`decode_txn`]):
//!
//! ```
//! use std::time::Duration;
//! use waldb::TxnId;
//! use waldb::wal::{Durability, Op, RecordKind, Wal, WalConfig, WalOptions, decode_txn, encode_txn, read_log};
//!
//! # fn main() -> waldb::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("wal");
//! let config = WalConfig::default().with_log(WalOptions::default().with_segment_bytes(1 << 20));
//! let (wal, _recovered) = Wal::open(&dir, config)?; // recovers what is there first
//!
//! // Many threads may append at once; each `Sync` append waits for the sync that covers it,
//! // and appends that arrive during a sync share the next one.
//! let mut payload = Vec::new();
//! encode_txn(&mut payload, TxnId(1), &[Op::Put { key: b"k", value: b"v" }]);
//! let lsn = wal.append(RecordKind::Txn, &payload)?.wait()?; // durable here
//! let every = Duration::from_millis(10);
//! wal.append_with(RecordKind::Txn, &payload, Durability::Buffered { every })?; // acked at once
//! wal.close()?; // drains, syncs, stops the threads
//!
//! let (records, report) = read_log(waldb::StdDisk, &dir, config.log.read_options())?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[0].lsn, lsn);
//! assert_eq!(decode_txn(&records[0].payload).unwrap().op_count(), 1);
//! assert_eq!(report.last_lsn, Some(records[1].lsn));
//! # Ok(()) }
//! ```
//! The codecs and segment helpers (`encode`, `decode`, `segment`) stay public
//! for the fuzzers, the tool and tests that build logs byte by byte, and are hidden from these
//! docs.
//!
//! Invariants across the log: LSNs rise by one per record, jumping forward only at a segment
//! boundary (recorded in the header); each segment header chains to the previous segment's last
//! record; a segment header is written only after the previous segment was synced; every record
//! carries the durable LSN when it was written.

#[doc(hidden)]
pub mod decode;
#[doc(hidden)]
pub mod encode;
pub mod format;
pub mod group;
pub mod payload;
pub mod recovery;
#[doc(hidden)]
pub mod segment;
pub mod writer;

#[doc(hidden)]
pub use decode::{Corruption, DecodeLimits, Decoded, RecordRef, decode_record, decode_segment_header};
#[doc(hidden)]
pub use encode::{
    RecordMeta, SegmentHeader, encode_blank_segment_header, encode_record, encode_segment_header,
};
pub use group::{
    BatchConfig, Driver, Durability, PrepareAhead, StepReport, Ticket, Wal, WalBatch, WalConfig, WalStats,
};
pub use payload::{
    Op, RecordKind, TxnRef, decode_checkpoint, decode_txn, encode_checkpoint, encode_txn, encode_txn_ops,
};
pub use recovery::{
    Cut, LogEnd, LogReader, LogRecord, OwnedRecord, ReadOptions, RecoveryMode, RecoveryReport, read_log,
};
pub use writer::{DEFAULT_RECORD_PAYLOAD_BYTES_MAX, DEFAULT_SEGMENT_BYTES, LogWriter, WalOptions};
