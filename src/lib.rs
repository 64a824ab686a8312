//! # waldb
//!
//! An embedded, transactional key-value store built on a group-commit write-ahead log, whose
//! every byte of I/O and every reading of time go through two injectable seams, [`Disk`] and
//! [`Clock`], so that the same code runs on real files and under deterministic crash simulation.
//!
//! This release contains the seams, the write-ahead log format, its pure decoder, segment files,
//! the log writer, the recovery reader and group commit ([`wal::Wal`]: many concurrent
//! committers, one flusher step, durability modes, back-pressure, fail-stop). The transactional
//! database is built on them.
//!
//! ## Guarantees of the log, as built so far
//!
//! - **Synced means durable.** A record is durable once [`wal::LogWriter::sync`] has returned
//!   `Ok` for it; recovery returns every such record.
//! - **Prefix.** Recovery returns a prefix of what was appended, in LSN order: no holes, no
//!   reordering, never a record that was not written, never part of a record.
//! - **Torn tail versus corruption.** Every record carries the LSN that was durable when it was
//!   written, and every segment header chains to the previous segment. Damage that a crash can
//!   explain is a torn tail, cut and reported; damage after which something proves the bytes had
//!   been synced is [`Error::Corrupt`] with the file, offset and reason. See
//!   [`wal::recovery`].
//! - **Never panics on bad bytes.** Any file content gives a value or a clear error; nothing is
//!   allocated by an unchecked length.
//! - **Fail-stop.** A failed write or sync poisons the writer; it is never retried as if it had
//!   worked.
//! - **Group commit.** A [`wal::Wal`] `Sync` ticket resolves only after a sync covering its
//!   record; commits that arrive during an fsync ride the next one; the queue is bounded; a
//!   failure reaches every waiter. See [`wal::group`].
//!
//! ## Example
//!
//! ```
//! use waldb::{StdDisk, wal::{LogWriter, RecordKind, WalOptions, read_log, Op, encode_txn}};
//! use waldb::TxnId;
//!
//! # fn main() -> waldb::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let wal_dir = dir.path().join("wal");
//! let opts = WalOptions { segment_bytes: 1 << 20, ..WalOptions::default() };
//!
//! let (mut log, _report) = LogWriter::open(StdDisk, &wal_dir, opts)?;
//! let mut payload = Vec::new();
//! encode_txn(&mut payload, TxnId(1), &[Op::Put { key: b"k", value: b"v" }]);
//! let lsn = log.append(RecordKind::Txn, &payload)?;
//! assert_eq!(log.sync()?, lsn); // durable from here on
//! log.close()?;
//!
//! let (records, report) = read_log(StdDisk, &wal_dir, opts.read_options())?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(report.last_lsn, Some(lsn));
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! - `cli` (default): the `waldb` command-line tool.
//! - `sim`: `sim::SimDisk`, the in-memory disk with a crash and fault model; the database
//!   campaign (`sim::campaign`); the commit-order oracle of the async harnesses
//!   (`sim::history`); and the simulation test target.

// `as` casts that can truncate are bugs waiting in a decoder; tests may cast freely.
#![warn(clippy::cast_possible_truncation)]
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]

#[cfg(feature = "sim")]
pub mod campaign;
pub mod clock;
pub mod db;
pub mod disk;
mod error;
#[cfg(feature = "sim")]
pub mod history;
#[cfg(feature = "mutants")]
pub mod mutation;
#[cfg(not(feature = "mutants"))]
mod mutation;
#[cfg(feature = "sim")]
mod rng;
mod sync;
mod types;
pub mod wal;

pub use clock::{Clock, SimClock, SystemClock};
pub use db::{Commit, Db, DbOptions, Isolation, Key, Transaction};
pub use disk::{Disk, DiskFile, OpenMode, StdDisk};
pub use error::{Error, Result};
pub use types::{Lsn, SegmentId, TxnId};
pub use wal::RecoveryMode;

/// Everything a simulation needs: the simulated disk, its configuration and faults, the virtual
/// clock, and the seeded random generator.
#[cfg(feature = "sim")]
pub mod sim {
    pub use crate::campaign;
    pub use crate::clock::SimClock;
    pub use crate::disk::sim::{CrashWeights, FaultOp, SimConfig, SimDisk, SimFaults, SimFile, SimStats};
    pub use crate::history;
    pub use crate::rng::SimRng;
}
