//! The checker has teeth: with one bug planted at a time — the log's seven and the sorted
//! tables' five — (`waldb::sim::mutation`, feature `mutants`),
//! the database campaign (`db.rs`) must fail within its default budget of seeds. Each test
//! plants its mutation on its own thread (the simulated database runs on the calling thread),
//! runs seeds from 0 until one fails, and reports how many it took.
//!
//! `cargo test --features mutants --test sim teeth -- --nocapture` prints the seeds.

use waldb::sim::campaign::{SeedOptions, run_seed};
use waldb::sim::mutation::{self, Mutation};

/// The default campaign's budget (`db_sim` runs 500 seeds in `cargo test`).
const BUDGET: u64 = 500;

/// Runs seeds with `m` planted until one fails; returns that seed and the failure.
fn first_failing_seed(m: Mutation) -> Option<(u64, String)> {
    mutation::plant(Some(m));
    let found =
        (0..BUDGET).find_map(|seed| run_seed(seed, SeedOptions::default()).err().map(|f| (seed, f.what)));
    mutation::plant(None);
    found
}

fn caught(m: Mutation) {
    let Some((seed, why)) = first_failing_seed(m) else {
        panic!("{m:?} planted, and {BUDGET} seeds of the database campaign all passed");
    };
    eprintln!("teeth: {m:?} caught by seed {seed} ({} seeds run): {why}", seed + 1);
    // Unplanted, the same seed passes: the failure was the mutation's.
    if let Err(f) = run_seed(seed, SeedOptions::default()) {
        panic!("seed {seed} fails without {m:?} planted too: {f}");
    }
}

#[test]
fn teeth_ack_before_sync() {
    caught(Mutation::AckBeforeSync);
}

#[test]
fn teeth_no_dir_sync_after_segment_create() {
    caught(Mutation::NoDirSyncAfterSegmentCreate);
}

#[test]
fn teeth_no_crc_check() {
    caught(Mutation::NoCrcCheck);
}

#[test]
fn teeth_torn_transaction() {
    caught(Mutation::TornTransaction);
}

#[test]
fn teeth_lsn_out_of_queue_order() {
    caught(Mutation::LsnOutOfQueueOrder);
}

#[test]
fn teeth_failed_sync_retried() {
    caught(Mutation::FailedSyncRetried);
}

#[test]
fn teeth_visible_before_durable() {
    caught(Mutation::VisibleBeforeDurable);
}

#[test]
fn teeth_table_named_before_sync() {
    caught(Mutation::TableNamedBeforeSync);
}

#[test]
fn teeth_table_deleted_before_manifest() {
    caught(Mutation::TableDeletedBeforeManifest);
}

#[test]
fn teeth_compaction_drops_snapshot_versions() {
    caught(Mutation::CompactionDropsSnapshotVersions);
}

#[test]
fn teeth_bloom_absent_for_present() {
    caught(Mutation::BloomAbsentForPresent);
}

#[test]
fn teeth_manifest_without_checksum() {
    caught(Mutation::ManifestWithoutChecksum);
}

#[test]
fn every_mutation_has_a_test() {
    // A new mutation must get its test above: this list is checked against the lists of
    // `Mutation`.
    let tested = [
        Mutation::AckBeforeSync,
        Mutation::NoDirSyncAfterSegmentCreate,
        Mutation::NoCrcCheck,
        Mutation::TornTransaction,
        Mutation::LsnOutOfQueueOrder,
        Mutation::FailedSyncRetried,
        Mutation::VisibleBeforeDurable,
        Mutation::TableNamedBeforeSync,
        Mutation::TableDeletedBeforeManifest,
        Mutation::CompactionDropsSnapshotVersions,
        Mutation::BloomAbsentForPresent,
        Mutation::ManifestWithoutChecksum,
    ];
    let listed: Vec<Mutation> = Mutation::LOG.into_iter().chain(Mutation::TREE).collect();
    assert_eq!(tested.to_vec(), listed);
}
