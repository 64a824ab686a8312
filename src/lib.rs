//! # waldb
//!
//! An embedded, transactional key-value store on a group-commit write-ahead log, verified by
//! deterministic simulation: an acknowledged commit survives any crash, and the crate ships
//! the crash campaigns, fuzzers and model checks that prove it.
//!
//! ```
//! use waldb::{Db, Error};
//!
//! # fn main() -> waldb::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path();
//! let db = Db::open(path)?; // locks the directory and recovers what is on disk
//!
//! // A transaction: reads from a snapshot, writes buffered until the commit.
//! let mut txn = db.begin()?;
//! txn.put(b"apple", b"red")?;
//! txn.put(b"banana", b"yellow")?;
//! let lsn = txn.commit_blocking()?; // durable (fdatasync) and visible when this returns
//!
//! // The same, retried on conflict: read-modify-write from many threads.
//! db.transact(|txn| {
//!     let n = txn.get(b"count")?.map_or(0, |v| v[0]);
//!     txn.put(b"count", &[n + 1])
//! })?;
//!
//! assert_eq!(db.get(b"apple")?.as_deref(), Some(&b"red"[..]));
//! assert_eq!(db.scan(&b"a"[..]..&b"c"[..])?.len(), 2);
//! db.close()?; // drains and syncs the log
//! # let _ = (lsn, Error::Closed); Ok(()) }
//! ```
//!
//! Or, on any executor, `txn.commit().await`.
//!
//! ## What a commit promises
//!
//! - **Durable before acknowledged.** With [`Durability::Sync`] (the default) a commit returns
//!   only once its log record and every one before it are on stable storage. Commits that
//!   arrive while a sync is in flight share the next one (group commit): no timer, no linger.
//! - **Visible only when durable.** No reader sees what a crash could take back.
//! - **Atomic and prefix-consistent.** After any crash the state is that of the first K
//!   commits, for a K that covers every acknowledged one.
//! - **Serializable by default.** Transactions read a snapshot; a commit whose reads, scanned
//!   ranges or writes were overwritten after its snapshot fails with [`Error::Conflict`],
//!   which [`Db::transact`] retries. [`Isolation::Snapshot`] checks writes only.
//! - **Fail-stop.** A failed write or sync poisons the log ([`Error::Poisoned`]); it is never
//!   retried as if it had worked. A commit that reached the log before it failed says its
//!   outcome is unknown ([`Error::CommitUnknown`]); every other failed commit wrote nothing.
//! - **Never panics on bad bytes**, and every size is bounded ([`Limits`]).
//!
//! [`Durability::Buffered`] and [`Durability::None`] trade a bounded window of loss for
//! speed, per database or per commit ([`Transaction::commit_with`]). The whole contract, and
//! where each guarantee is proven, is in the [`db`] module and `docs/design.md`.
//!
//! ## Modules
//!
//! - [`db`]: the database ([`Db`], [`Transaction`], [`DbOptions`]).
//! - [`wal`]: the write-ahead log on its own, for users who need only a durable log
//!   ([`wal::Wal`]: group commit; [`wal::LogWriter`] and [`wal::read_log`]: one writer).
//! - [`disk`] and [`clock`]: the two seams every byte of I/O and every reading of time go
//!   through, so that the same code runs on real files and under simulation.
//! - `sim` (feature `sim`): the simulated disk and clock, and the crash campaigns.
//!
//! ## Features
//!
//! - `sim`: `waldb::sim`: `SimDisk`, the in-memory disk with a crash and fault model,
//!   `SimClock`, the database's crash campaign (`sim::campaign`) and the commit-order oracle
//!   of the async harnesses (`sim::history`).
//! - `cli`: the `waldb` command-line tool (`cargo install waldb --features cli`).
//! - `turmoil`, `mutants`: this repository's own test harnesses; not for other builds.
//!
//! ## Logging
//!
//! waldb emits [`tracing`](https://docs.rs/tracing) spans and events: an open (span
//! `waldb::open`) and its recovery at `info`, torn tails and slow syncs at `warn`, checkpoints
//! (span `waldb::checkpoint`) at `debug`, a poisoned log and background failures at `error`.
//! They cost nothing when no subscriber listens.

// `as` casts that can truncate are bugs waiting in a decoder; tests may cast freely.
#![warn(clippy::cast_possible_truncation)]
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]

/// `with_` setters for an options struct that is `#[non_exhaustive]` (so that options can be
/// added without breaking callers, who build it from `Default` with these):
/// `with_setters!(Ty { with_a: a: TypeOfA; ... })`.
macro_rules! with_setters {
    ($ty:ident { $($name:ident: $field:ident: $t:ty;)* }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets [`", stringify!($ty), "::", stringify!($field), "`].")]
                #[must_use]
                pub fn $name(mut self, $field: $t) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

pub mod clock;
pub mod db;
pub mod disk;
mod error;
mod mutation;
#[cfg(feature = "sim")]
mod rng;
#[cfg(feature = "sim")]
pub mod sim;
mod sync;
mod types;
pub mod wal;

pub use clock::{Clock, SimClock, SystemClock};
pub use db::{Commit, Compression, Db, DbOptions, Isolation, Key, Limits, Pair, Transaction};
pub use disk::{Disk, DiskFile, OpenMode, StdDisk};
pub use error::{ConflictOn, Error, Result};
pub use types::{Lsn, SegmentId, TxnId};
pub use wal::{Durability, RecoveryMode};

/// The README's code, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
