//! [`DbOptions`]: everything a [`Db`](super::Db) is opened with, and [`Isolation`].

use crate::error::{Error, Result};
use crate::wal::{BatchConfig, Driver, Durability, RecoveryMode, WalConfig, WalOptions};

/// How transactions are validated at commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The default. A commit fails with [`Error::Conflict`] if any key it read or wrote, or any
    /// key in a range it scanned, was written by a transaction that committed after its
    /// snapshot: the history is serializable in commit (LSN) order.
    #[default]
    Serializable,
    /// Snapshot isolation: only write-write conflicts fail. Allows write skew.
    Snapshot,
}

/// The options of a database. Start from [`DbOptions::default`] and change fields; every
/// combination is checked by [`DbOptions::validate`] at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbOptions {
    /// When a commit is acknowledged (see [`Durability`]); each commit may choose its own with
    /// [`Transaction::commit_with`](super::Transaction::commit_with). Default `Sync`.
    pub durability: Durability,
    /// Batching and queue limits of the log. Default [`BatchConfig::default`].
    pub batch: BatchConfig,
    /// Who runs the flusher step. Default [`Driver::LeaderFollower`].
    pub driver: Driver,
    /// Size of each WAL segment file. Default 64 MiB.
    pub segment_bytes: u64,
    /// How to treat a damaged log at open. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Default isolation of new transactions.
    pub isolation: Isolation,
    /// The longest key. Default 64 KiB.
    pub key_bytes_max: u32,
    /// The longest value. Default 4 MiB.
    pub value_bytes_max: u32,
    /// The largest transaction, encoded (about the sum of its keys and values plus 9 bytes per
    /// operation). Default 8 MiB; at most what one WAL record can hold.
    pub txn_bytes_max: u32,
    /// Take a checkpoint in the background once this many bytes of transactions were committed
    /// since the last one. `None` disables automatic checkpoints ([`Db::checkpoint`](super::Db::checkpoint)
    /// still works). Default 64 MiB.
    pub auto_checkpoint_bytes: Option<u64>,
    /// The largest checkpoint file read at open. Default 16 GiB.
    pub checkpoint_bytes_max: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            durability: Durability::Sync,
            batch: BatchConfig::default(),
            driver: Driver::LeaderFollower,
            segment_bytes: crate::wal::DEFAULT_SEGMENT_BYTES,
            recovery: RecoveryMode::default(),
            isolation: Isolation::Serializable,
            key_bytes_max: 64 << 10,
            value_bytes_max: 4 << 20,
            txn_bytes_max: 8 << 20,
            auto_checkpoint_bytes: Some(64 << 20),
            checkpoint_bytes_max: 16 << 30,
        }
    }
}

impl DbOptions {
    /// The log's options derived from these.
    pub fn wal_options(&self) -> WalOptions {
        WalOptions {
            segment_bytes: self.segment_bytes,
            record_payload_bytes_max: Some(self.txn_bytes_max),
            recovery: self.recovery,
        }
    }

    /// The group-commit configuration derived from these.
    pub fn wal_config(&self) -> WalConfig {
        WalConfig {
            log: self.wal_options(),
            batch: self.batch,
            durability: self.durability,
            driver: self.driver,
            ..WalConfig::default()
        }
    }

    /// Checks that the options can work together.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.key_bytes_max == 0 {
            return bad("key_bytes_max must be positive".into());
        }
        let op_max = u64::from(self.key_bytes_max) + u64::from(self.value_bytes_max) + 9 + 12;
        if u64::from(self.txn_bytes_max) < op_max {
            return bad(format!(
                "txn_bytes_max ({}) must hold one put of the largest key and value ({op_max} bytes)",
                self.txn_bytes_max
            ));
        }
        if self.auto_checkpoint_bytes == Some(0) {
            return bad("auto_checkpoint_bytes must be positive (or None)".into());
        }
        self.wal_config().validate()
    }
}
