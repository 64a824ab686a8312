//! Planted bugs, for proving that the simulation's checker has teeth (feature `mutants`, for
//! tests only; without it every [`active`] is a constant `false` and the code is compiled out).
//!
//! A test activates one [`Mutation`] for the current thread with `plant` (feature `mutants`),
//! runs a campaign, and asserts that the campaign fails. The simulated database runs on the
//! calling thread (the log's `Manual` driver), so a mutation planted there reaches every code
//! path it names and no other test's.

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The log counts written records as durable without syncing them.
    AckBeforeSync,
    /// A new segment's name is not made durable (no directory sync after its rename).
    NoDirSyncAfterSegmentCreate,
    /// The record decoder does not compare checksums.
    NoCrcCheck,
    /// A transaction is logged as one record per operation, so a crash can keep part of it.
    TornTransaction,
    /// The flusher writes the first two queued records in swapped order (each keeps its place
    /// in the LSN sequence, so their contents trade LSNs).
    LsnOutOfQueueOrder,
    /// A failed sync is retried and, if the retry succeeds, taken as success (fsyncgate).
    FailedSyncRetried,
    /// A `Sync` commit becomes visible before it is durable.
    VisibleBeforeDurable,
    /// A sorted table is named by a manifest without having been synced.
    TableNamedBeforeSync,
    /// A compaction deletes its input tables before the manifest that drops them is durable
    /// (and whether or not it becomes so).
    TableDeletedBeforeManifest,
    /// A compaction drops versions below the visible LSN rather than the horizon: versions live
    /// snapshots can still read.
    CompactionDropsSnapshotVersions,
    /// A table's bloom filter answers "absent" for one key in four it holds.
    BloomAbsentForPresent,
    /// The manifest decoder accepts its header and records without checking their checksums.
    ManifestWithoutChecksum,
}

impl Mutation {
    /// The bugs of the log and the commit path: every harness must catch them.
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    pub const LOG: [Mutation; 7] = [
        Mutation::AckBeforeSync,
        Mutation::NoDirSyncAfterSegmentCreate,
        Mutation::NoCrcCheck,
        Mutation::TornTransaction,
        Mutation::LsnOutOfQueueOrder,
        Mutation::FailedSyncRetried,
        Mutation::VisibleBeforeDurable,
    ];

    /// The bugs of the sorted tables, flushes and compactions: the database campaign (whose
    /// memtables are a few KiB) must catch them.
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    pub const TREE: [Mutation; 5] = [
        Mutation::TableNamedBeforeSync,
        Mutation::TableDeletedBeforeManifest,
        Mutation::CompactionDropsSnapshotVersions,
        Mutation::BloomAbsentForPresent,
        Mutation::ManifestWithoutChecksum,
    ];
}

#[cfg(feature = "mutants")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Mutation>> = const { std::cell::Cell::new(None) };
}

/// Plants `m` (or removes the planted one, with `None`) for the current thread.
#[cfg(feature = "mutants")]
pub fn plant(m: Option<Mutation>) {
    PLANTED.with(|p| p.set(m));
}

/// Whether `m` is planted on the current thread.
#[inline]
pub fn active(m: Mutation) -> bool {
    #[cfg(feature = "mutants")]
    {
        PLANTED.with(|p| p.get() == Some(m))
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = m;
        false
    }
}
