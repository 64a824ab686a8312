//! The one public error type of waldb.
//!
//! Every variant is something a caller can act on:
//!
//! | variant | what the caller does |
//! | --- | --- |
//! | [`Error::Io`] | an operation on a named file failed; retrying may help, the cause says |
//! | [`Error::StorageFull`] | free space, then retry (at the latest after reopening) |
//! | [`Error::Corrupt`] | on-disk bytes are damaged at a known place; restore or open with a more tolerant [`RecoveryMode`](crate::RecoveryMode) |
//! | [`Error::UnsupportedVersion`] | the files come from a newer waldb |
//! | [`Error::TooLarge`] | the input exceeds a configured limit |
//! | [`Error::Poisoned`] | an earlier write or sync failed; reopen to recover from what is truly on disk |
//! | [`Error::InvalidConfig`] | fix the options |
//! | [`Error::NotWaldb`] | the path is not a waldb directory |
//! | [`Error::Closed`] | the log was closed; open it again |
//! | [`Error::FlusherPanicked`] | a bug: report it; reopen to recover from what is on disk |
//! | [`Error::Locked`] | another handle owns the database directory: close it, or wait |
//! | [`Error::Conflict`] | a concurrent commit invalidated what the transaction read: retry it ([`Db::transact`](crate::Db::transact) does) |
//! | [`Error::CommitUnknown`] | the log failed after the commit reached it: it may or may not be durable; reopen and read to find out |
//!
//! A commit that fails with any error but [`Error::CommitUnknown`] certainly wrote nothing.
//! [`Error::is_retryable`] tells which errors a transaction may simply run again after.
//!
//! Programmer errors (broken invariants) are assertions, not variants. Nothing here is recognised
//! by its text: match on the variant.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::types::Lsn;

/// The result type of every fallible waldb operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in waldb, as variants a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file or directory failed.
    #[error("I/O error: {op} {path}: {source}")]
    Io {
        /// The operation, e.g. `"write"`, `"sync_data"`, `"open"`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating system's (or the simulated disk's) error.
        #[source]
        source: io::Error,
    },

    /// The storage device is full (ENOSPC). Nothing acknowledged is lost; writing can resume once
    /// space is freed.
    #[error("storage full: {op} {path}: {source}")]
    StorageFull {
        /// The operation that hit the limit.
        op: &'static str,
        /// The file it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// On-disk bytes are damaged: a checksum mismatch where a crash cannot explain it, a broken
    /// chain between segments, a malformed record. `offset` is a byte offset within `file`.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first bad byte sequence within the file.
        offset: u64,
        /// What is wrong, in words.
        reason: String,
    },

    /// A file was written by a newer, incompatible version of the format.
    #[error("{file}: format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// An input exceeds a configured limit.
    #[error("{what} of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// What was too large, e.g. `"record payload"`.
        what: &'static str,
        /// Its size in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },

    /// An earlier write or sync failed, so the log cannot promise anything about later appends.
    /// Reads keep working; reopening recovers from what is truly on disk.
    #[error("the log is poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// The first failure.
        cause: Arc<Error>,
    },

    /// Options that cannot work together, e.g. a record maximum larger than a segment.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, in words.
        reason: String,
    },

    /// The path exists but is not a waldb directory (no `wal/` and no segment files).
    #[error("not a waldb directory: {path}: {reason}")]
    NotWaldb {
        /// The path that was given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// The log was closed (or is closing): it takes no more appends.
    #[error("the log is closed")]
    Closed,

    /// The code that writes the log panicked. The log is poisoned with this cause (its in-memory
    /// state is unknown); what is on disk is intact up to the last sync, and reopening recovers.
    #[error("the log flusher panicked: {message}")]
    FlusherPanicked {
        /// The panic message, when it was a string.
        message: String,
    },

    /// The database directory is already open, in this process or another (its `LOCK` file is
    /// locked).
    #[error("the database at {path} is already open (locked by another handle)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// Validation failed: a transaction committed after this one's snapshot wrote `key`, which
    /// this one read, wrote (`on` says which), or found in a range it scanned. Nothing was
    /// written; run the transaction again ([`Error::is_retryable`]).
    #[error("transaction conflict: {reason}")]
    Conflict {
        /// The key that a later commit wrote: the first one validation found (a transaction
        /// may conflict on several).
        key: Box<[u8]>,
        /// How this transaction used `key`.
        on: ConflictOn,
        /// The conflict in words, with the key (as text if printable, else hex).
        reason: String,
    },

    /// The commit was sequenced into the log at `lsn`, then the log failed (`cause`) before it
    /// was acknowledged: it may or may not be durable. After a crash or reopen it is wholly
    /// present or wholly absent, and present only if every commit before `lsn` is. Do not run
    /// the transaction again blindly: reopen, and read whether its writes are there. Every
    /// other error of a commit means that nothing was written.
    #[error("the outcome of the commit at LSN {lsn} is unknown: {cause}")]
    CommitUnknown {
        /// Where the commit stands in the log's order.
        lsn: Lsn,
        /// The failure that cut the commit short (typically [`Error::Poisoned`]).
        cause: Arc<Error>,
    },
}

/// How a transaction used the key of an [`Error::Conflict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictOn {
    /// It read the key (serializable isolation).
    Read,
    /// It wrote the key.
    Write,
    /// The key lies in a range it scanned (serializable isolation): a phantom.
    ScannedRange,
}

impl Error {
    /// Wraps an I/O error from operation `op` on `path`; ENOSPC becomes [`Error::StorageFull`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            Error::StorageFull { op, path, source }
        } else {
            Error::Io { op, path, source }
        }
    }

    /// A corruption error at `offset` in `file`.
    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { file: file.into(), offset, reason: reason.into() }
    }

    /// True for [`Error::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// True when the operation wrote nothing and may simply be run again, as it is, and
    /// succeed: an [`Error::Conflict`]. [`Db::transact`](crate::Db::transact) retries these.
    /// Everything else needs a decision first — a full disk freed, a poisoned log reopened, an
    /// [`Error::CommitUnknown`] looked into — and is `false`.
    ///
    /// ```
    /// let e = waldb::Error::Closed;
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this error is, or was caused by, a panic inside waldb: an
    /// [`Error::FlusherPanicked`], or an [`Error::Poisoned`] or [`Error::CommitUnknown`] whose
    /// cause is one. Never the result of a fault of the disk: a bug to report. The simulation
    /// campaigns fail on it even where they inject faults.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let panic = waldb::Error::FlusherPanicked { message: "boom".into() };
    /// assert!(waldb::Error::Poisoned { cause: Arc::new(panic) }.is_panic());
    /// assert!(!waldb::Error::Closed.is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        match self {
            Error::FlusherPanicked { .. } => true,
            Error::Poisoned { cause } | Error::CommitUnknown { cause, .. } => cause.is_panic(),
            _ => false,
        }
    }
}

impl Error {
    /// A copy of this error for keeping as a poison cause (`io::Error` is not `Clone`: the copy
    /// keeps its kind and message).
    pub fn clone_lossy(&self) -> Error {
        let io_copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Error::Io { op, path, source } => Error::Io { op, path: path.clone(), source: io_copy(source) },
            Error::StorageFull { op, path, source } => {
                Error::StorageFull { op, path: path.clone(), source: io_copy(source) }
            }
            Error::Corrupt { file, offset, reason } => {
                Error::Corrupt { file: file.clone(), offset: *offset, reason: reason.clone() }
            }
            Error::UnsupportedVersion { file, found, supported } => {
                Error::UnsupportedVersion { file: file.clone(), found: *found, supported: *supported }
            }
            Error::TooLarge { what, len, max } => Error::TooLarge { what, len: *len, max: *max },
            Error::Poisoned { cause } => Error::Poisoned { cause: Arc::clone(cause) },
            Error::InvalidConfig { reason } => Error::InvalidConfig { reason: reason.clone() },
            Error::NotWaldb { path, reason } => {
                Error::NotWaldb { path: path.clone(), reason: reason.clone() }
            }
            Error::Closed => Error::Closed,
            Error::FlusherPanicked { message } => Error::FlusherPanicked { message: message.clone() },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Conflict { key, on, reason } => {
                Error::Conflict { key: key.clone(), on: *on, reason: reason.clone() }
            }
            Error::CommitUnknown { lsn, cause } => {
                Error::CommitUnknown { lsn: *lsn, cause: Arc::clone(cause) }
            }
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error with [`Error::io`].
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_becomes_storage_full() {
        let e = Error::io("write", "/x", io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(e, Error::StorageFull { op: "write", .. }), "{e:?}");
        let e = Error::io("write", "/x", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(e, Error::Io { op: "write", .. }), "{e:?}");
    }

    #[test]
    fn display_names_file_offset_and_reason() {
        let e = Error::corrupt("/db/wal/1.wal", 4096, "checksum mismatch");
        assert_eq!(e.to_string(), "corrupt data in /db/wal/1.wal at offset 4096: checksum mismatch");
        assert!(e.is_corrupt());
    }
}
