//! [`DbOptions`]: everything a [`Db`](super::Db) is opened with; [`Limits`], the size limits
//! in force; and [`Isolation`].
//!
//! Every option has a default that works with any valid value of the others: the size limits
//! left unset follow the segment size ([`DbOptions::limits`]), so that changing one option
//! never makes the defaults of the others invalid.

use std::time::Duration;

use crate::db::table::Compression;
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

/// The options of a database. Start from [`DbOptions::default`] and change what you need with
/// the `with_` methods; every combination is checked by [`DbOptions::validate`] at open.
///
/// ```
/// use std::time::Duration;
/// use waldb::DbOptions;
/// use waldb::wal::Durability;
///
/// let options = DbOptions::default()
///     .with_durability(Durability::Buffered { every: Duration::from_millis(10) })
///     .with_segment_bytes(1 << 20); // the size limits follow: no other change needed
/// assert!(options.validate().is_ok());
/// assert!(options.limits().txn_bytes_max < 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The longest key. `None` (the default): 64 KiB, or a quarter of the largest transaction
    /// if that is less.
    pub key_bytes_max: Option<u32>,
    /// The longest value. `None` (the default): 4 MiB, or what the largest transaction holds
    /// besides the longest key if that is less.
    pub value_bytes_max: Option<u32>,
    /// The largest transaction, encoded (about the sum of its keys and values plus 9 bytes per
    /// operation). `None` (the default): 8 MiB, or what one WAL record of a segment holds (a
    /// quarter of it, see [`WalOptions::record_payload_bytes_max`]) if that is less. An
    /// explicit value must fit in one segment.
    pub txn_bytes_max: Option<u32>,
    /// The size at which the memtable is frozen and a new one takes the commits: the frozen one
    /// is then flushed to a sorted table (in the background, or by the committer that finds
    /// too many frozen under [`Driver::Manual`]). Counted as the bytes of the keys and values
    /// inserted plus 64 bytes per version. `None`: never frozen on its own (only
    /// [`Db::checkpoint`](super::Db::checkpoint) flushes; memory grows with the data).
    /// Default 64 MiB; at least 512 B (tiny memtables are for tests: they flush all the time).
    pub memtable_bytes: Option<u64>,
    /// The most memtables held at once, the active one included: a commit that finds
    /// `memtables_max - 1` frozen ones waiting for their flush waits for one to finish (a
    /// write stall, counted in [`DbStats::stalls`](super::DbStats::stalls)). Default 3; at
    /// least 2. Memory: up to `memtables_max × memtable_bytes` in memtables.
    pub memtables_max: u32,
    /// The size a sorted table's data blocks aim for. Default 4 KiB; 256 B to 1 MiB.
    pub table_block_bytes: u32,
    /// Bits per key of the sorted tables' bloom filters (about 1 % false positives at 10).
    /// Default 10; 1 to 64.
    pub bloom_bits_per_key: u32,
    /// How the tables' data blocks are stored: [`Compression::Lz4`] compresses each block
    /// that shrinks by an eighth or more, which pays on values that compress (text, JSON:
    /// fewer bytes written by flushes and compactions, more pairs per cached block) and costs
    /// one failed attempt per block on values that do not (docs/bench/README.md, "LZ4").
    /// Tables written either way read the same. Default [`Compression::None`].
    pub compression: Compression,
    /// Flushes and compactions sync a table's data (`fdatasync`) each time another this many
    /// bytes of it are written, and once more when it is finished. A table synced only at its
    /// end leaves up to its size (64 MiB) unwritten in the OS, and the log's next sync may wait
    /// while much of it is written (on ext4 it does): under `Durability::Buffered` that
    /// stretches the window a crash can take. The syncs cost commits that sync while a
    /// compaction runs some of their rate (docs/bench/README.md, "The `Buffered` window under
    /// load"). `None`: only the final sync. Default 2 MiB; at least 64 KiB.
    pub table_sync_bytes: Option<u64>,
    /// The most bytes of decoded table blocks kept in memory (the block cache, shared by every
    /// table). 0 disables it: every read of a block reads the file. Default 256 MiB.
    pub cache_bytes: u64,
    /// How many times [`Db::transact`](super::Db::transact) runs a transaction again after a
    /// retryable failure ([`Error::is_retryable`]: a conflict) before it returns the error.
    /// Default 16.
    pub txn_retries_max: u32,
    /// The longest wait of [`Db::transact`](super::Db::transact) between two attempts: waits
    /// start at a fiftieth of it and double. Default 20 ms.
    pub txn_backoff_max: Duration,
}

/// The size limits in force for a database: [`DbOptions::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest key.
    pub key_bytes_max: u32,
    /// The longest value.
    pub value_bytes_max: u32,
    /// The largest transaction, encoded.
    pub txn_bytes_max: u32,
}

/// The default of [`DbOptions::txn_bytes_max`], when a segment holds it.
pub const DEFAULT_TXN_BYTES_MAX: u32 = 8 << 20;
/// The default of [`DbOptions::key_bytes_max`], when a transaction holds four of them.
pub const DEFAULT_KEY_BYTES_MAX: u32 = 64 << 10;
/// The default of [`DbOptions::value_bytes_max`], when a transaction holds it.
pub const DEFAULT_VALUE_BYTES_MAX: u32 = 4 << 20;
/// Encoded bytes of a transaction's header and one put's tag and lengths: a transaction of
/// one put of a key of `k` and a value of `v` bytes takes `k + v + TXN_ONE_PUT_BYTES`.
const TXN_ONE_PUT_BYTES: u32 = 12 + 9;

with_setters!(DbOptions {
    with_durability: durability: Durability;
    with_batch: batch: BatchConfig;
    with_driver: driver: Driver;
    with_segment_bytes: segment_bytes: u64;
    with_recovery: recovery: RecoveryMode;
    with_isolation: isolation: Isolation;
    with_key_bytes_max: key_bytes_max: Option<u32>;
    with_value_bytes_max: value_bytes_max: Option<u32>;
    with_txn_bytes_max: txn_bytes_max: Option<u32>;
    with_memtable_bytes: memtable_bytes: Option<u64>;
    with_memtables_max: memtables_max: u32;
    with_table_block_bytes: table_block_bytes: u32;
    with_bloom_bits_per_key: bloom_bits_per_key: u32;
    with_compression: compression: Compression;
    with_table_sync_bytes: table_sync_bytes: Option<u64>;
    with_cache_bytes: cache_bytes: u64;
    with_txn_retries_max: txn_retries_max: u32;
    with_txn_backoff_max: txn_backoff_max: Duration;
});

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            durability: Durability::Sync,
            batch: BatchConfig::default(),
            driver: Driver::LeaderFollower,
            segment_bytes: crate::wal::DEFAULT_SEGMENT_BYTES,
            recovery: RecoveryMode::default(),
            isolation: Isolation::Serializable,
            key_bytes_max: None,
            value_bytes_max: None,
            txn_bytes_max: None,
            memtable_bytes: Some(64 << 20),
            memtables_max: 3,
            table_block_bytes: 4096,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            table_sync_bytes: Some(2 << 20),
            cache_bytes: 256 << 20,
            txn_retries_max: 16,
            txn_backoff_max: Duration::from_millis(20),
        }
    }
}

impl DbOptions {
    /// The size limits in force: each one set, and for each left `None` its default, lowered
    /// to what the segment size and the other limits allow.
    pub fn limits(&self) -> Limits {
        let record_max = WalOptions { segment_bytes: self.segment_bytes, ..WalOptions::default() }
            .record_payload_bytes_max();
        let txn = self.txn_bytes_max.unwrap_or(DEFAULT_TXN_BYTES_MAX.min(record_max));
        let key = self.key_bytes_max.unwrap_or(DEFAULT_KEY_BYTES_MAX.min(txn / 4));
        let value = self.value_bytes_max.unwrap_or(
            DEFAULT_VALUE_BYTES_MAX.min(txn.saturating_sub(key).saturating_sub(TXN_ONE_PUT_BYTES)),
        );
        Limits { key_bytes_max: key, value_bytes_max: value, txn_bytes_max: txn }
    }

    /// The log's options derived from these.
    pub fn wal_options(&self) -> WalOptions {
        WalOptions {
            segment_bytes: self.segment_bytes,
            record_payload_bytes_max: Some(self.limits().txn_bytes_max),
            recovery: self.recovery,
        }
    }

    /// How the sorted tables are built.
    pub(crate) fn build_options(&self) -> crate::db::table::BuildOptions {
        crate::db::table::BuildOptions {
            block_bytes: self.table_block_bytes,
            bloom_bits_per_key: self.bloom_bits_per_key,
            compression: self.compression,
        }
    }

    /// The block cache these options ask for, if any.
    pub(crate) fn block_cache(&self) -> Option<std::sync::Arc<crate::db::cache::BlockCache>> {
        (self.cache_bytes > 0)
            .then(|| std::sync::Arc::new(crate::db::cache::BlockCache::new(self.cache_bytes)))
    }

    /// The bounds the tables and the manifest are read with.
    pub(crate) fn table_limits(&self) -> crate::db::table::TableLimits {
        let limits = self.limits();
        crate::db::table::TableLimits {
            key_bytes_max: limits.key_bytes_max,
            value_bytes_max: limits.value_bytes_max,
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
        let limits = self.limits();
        if limits.key_bytes_max == 0 {
            return bad("key_bytes_max must be positive".into());
        }
        let op_max = u64::from(limits.key_bytes_max)
            + u64::from(limits.value_bytes_max)
            + u64::from(TXN_ONE_PUT_BYTES);
        if u64::from(limits.txn_bytes_max) < op_max {
            return bad(format!(
                "txn_bytes_max ({}) must hold one put of the largest key ({}) and value ({}): {op_max} bytes",
                limits.txn_bytes_max, limits.key_bytes_max, limits.value_bytes_max
            ));
        }
        if self.memtable_bytes.is_some_and(|b| b < 512) {
            return bad("memtable_bytes must be at least 512 B (or None)".into());
        }
        if self.memtables_max < 2 {
            return bad("memtables_max must be at least 2: the active memtable and one being flushed".into());
        }
        if !(256..=crate::db::table::format::BLOCK_TARGET_BYTES_MAX).contains(&self.table_block_bytes) {
            return bad("table_block_bytes must be between 256 B and 1 MiB".into());
        }
        if !(1..=64).contains(&self.bloom_bits_per_key) {
            return bad("bloom_bits_per_key must be between 1 and 64".into());
        }
        if self.table_sync_bytes.is_some_and(|b| b < 64 << 10) {
            return bad("table_sync_bytes must be at least 64 KiB (or None)".into());
        }
        if self.txn_backoff_max > Duration::from_secs(10) {
            return bad("txn_backoff_max above ten seconds is a configuration error".into());
        }
        self.wal_config().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing the segment size alone, to any valid size, gives valid options: the size
    /// limits left unset follow it.
    #[test]
    fn defaults_stay_valid_when_the_segment_size_changes() {
        let sizes =
            [crate::wal::format::SEGMENT_BYTES_MIN, 8192, 64 << 10, 1 << 20, 8 << 20, 64 << 20, 1 << 30];
        for segment_bytes in sizes {
            let options = DbOptions::default().with_segment_bytes(segment_bytes);
            assert!(options.validate().is_ok(), "{segment_bytes}: {:?}", options.validate());
            let limits = options.limits();
            assert!(limits.key_bytes_max > 0 && limits.value_bytes_max > 0, "{segment_bytes}: {limits:?}");
            assert!(u64::from(limits.txn_bytes_max) < segment_bytes, "{segment_bytes}: {limits:?}");
        }
        let big = DbOptions::default().limits();
        assert_eq!((big.key_bytes_max, big.value_bytes_max, big.txn_bytes_max), (64 << 10, 4 << 20, 8 << 20));
    }

    /// Explicit limits are kept as they are, and checked.
    #[test]
    fn explicit_limits_are_kept_and_checked() {
        let o = DbOptions::default().with_key_bytes_max(Some(8)).with_txn_bytes_max(Some(1000));
        assert_eq!(
            o.limits(),
            Limits { key_bytes_max: 8, value_bytes_max: 1000 - 8 - 21, txn_bytes_max: 1000 }
        );
        let bad = DbOptions::default().with_txn_bytes_max(Some(10));
        assert!(matches!(bad.validate(), Err(Error::InvalidConfig { .. })));
        let too_big = DbOptions::default().with_segment_bytes(1 << 20).with_txn_bytes_max(Some(2 << 20));
        assert!(matches!(too_big.validate(), Err(Error::InvalidConfig { .. })));
    }

    /// Tables are synced as they are written every 64 KiB or more, or only at their end.
    #[test]
    fn table_sync_bytes_is_checked() {
        for (bytes, ok) in [
            (None, true),
            (Some(64 << 10), true),
            (Some(2 << 20), true),
            (Some((64 << 10) - 1), false),
            (Some(0), false),
        ] {
            let o = DbOptions::default().with_table_sync_bytes(bytes);
            assert_eq!(o.validate().is_ok(), ok, "{bytes:?}: {:?}", o.validate());
        }
    }
}
