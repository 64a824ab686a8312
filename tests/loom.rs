//! loom models of the group-commit handshake: append → flusher step → publish → wake.
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --features sim --test loom
//! ```
//!
//! Every model checks, under every interleaving loom explores (preemptions bounded, 2 by
//! default):
//! - no lost wake-up: every waiter returns (loom reports a deadlock otherwise);
//! - no acknowledgement before durability: when `wait` returns `Ok(lsn)`, a copy of the disk
//!   that lost everything unsynced already holds `lsn`;
//! - no acknowledgement after a failure: once a sync failed, no waiter gets `Ok`;
//! - close drains: every append accepted before `close` is durable after it.
//!
//! The queue is a `Mutex<VecDeque>` under loom (crossbeam is invisible to it); everything else
//! is the production code.

#![cfg(all(loom, feature = "sim"))]

use std::path::Path;
use std::sync::Arc;

use loom::thread;
use waldb::sim::{FaultOp, SimClock, SimDisk};
use waldb::wal::{Driver, PrepareAhead, RecordKind, RecoveryMode, Wal, WalConfig, WalOptions, read_log};
use waldb::{Error, Lsn};

const DIR: &str = "/db/wal";

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(2);
    builder.check(f);
}

fn config(driver: Driver) -> WalConfig {
    WalConfig::default()
        .with_log(
            WalOptions::default()
                .with_segment_bytes(4096)
                .with_record_payload_bytes_max(Some(256))
                .with_recovery(RecoveryMode::TolerateTornTail),
        )
        .with_driver(driver)
        .with_prepare_ahead(PrepareAhead::Inline)
}

fn open(disk: &SimDisk, driver: Driver) -> Arc<Wal<SimDisk, SimClock>> {
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), config(driver)).unwrap();
    Arc::new(wal)
}

fn txn(i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    waldb::wal::encode_txn(&mut out, waldb::TxnId(i), &[waldb::wal::Op::Put { key: b"k", value: b"v" }]);
    out
}

/// The LSNs a crash that loses everything unsynced would leave.
fn durable_lsns(disk: &SimDisk) -> Vec<Lsn> {
    let pessimist = disk.durable_clone();
    let (records, _) =
        read_log(pessimist, Path::new(DIR), config(Driver::Manual).log.read_options()).unwrap();
    records.iter().map(|r| r.lsn).collect()
}

/// A committer: append, wait, and check the acknowledgement against the disk.
fn commit(wal: &Wal<SimDisk, SimClock>, disk: &SimDisk, i: u64) -> waldb::Result<Lsn> {
    let lsn = wal.append(RecordKind::Txn, &txn(i))?.wait()?;
    assert!(durable_lsns(disk).contains(&lsn), "{lsn} acknowledged before it was durable");
    Ok(lsn)
}

fn committers(
    n: u64,
    wal: &Arc<Wal<SimDisk, SimClock>>,
    disk: &SimDisk,
) -> Vec<thread::JoinHandle<waldb::Result<Lsn>>> {
    (0..n)
        .map(|i| {
            let (wal, disk) = (Arc::clone(wal), disk.clone());
            thread::spawn(move || commit(&wal, &disk, i))
        })
        .collect()
}

/// Leader/follower: committers run the flusher step themselves.
fn leader_follower(n: u64) {
    model(move || {
        let disk = SimDisk::new(1);
        let wal = open(&disk, Driver::Manual);
        let results: Vec<_> = committers(n, &wal, &disk).into_iter().map(|h| h.join().unwrap()).collect();
        let mut lsns: Vec<Lsn> = results.into_iter().map(Result::unwrap).collect();
        lsns.sort();
        assert_eq!(lsns, (1..=n).map(Lsn).collect::<Vec<_>>());
        wal.close().unwrap();
    });
}

#[test]
fn leader_follower_two_committers() {
    leader_follower(2);
}

#[test]
fn leader_follower_three_committers() {
    leader_follower(3);
}

/// A dedicated flusher thread; committers only wait.
#[test]
fn flusher_thread_two_committers() {
    model(|| {
        let disk = SimDisk::new(2);
        let wal = open(&disk, Driver::Thread);
        for h in committers(2, &wal, &disk) {
            h.join().unwrap().unwrap();
        }
        wal.close().unwrap();
    });
}

/// The leader/follower driver with its background thread: once a committer is parked (the
/// crowd under loom is one), a leader hands the next step to the thread instead of to a parked
/// committer, and committers that find a crowd kick the thread rather than lead. Every commit
/// is acknowledged once durable, none hangs, and `close` drains.
#[test]
fn leader_follower_driver_hands_a_crowd_to_its_thread() {
    model(|| {
        let disk = SimDisk::new(4);
        let wal = open(&disk, Driver::LeaderFollower);
        let mut lsns: Vec<Lsn> =
            committers(2, &wal, &disk).into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        lsns.sort();
        assert_eq!(lsns, [Lsn(1), Lsn(2)]);
        wal.close().unwrap();
    });
}

/// The leader/follower driver with its background thread, committers in a group (under loom
/// the threshold is an eighth of a `Sync` append per synced step, so a lone committer's third
/// commit finds one): the committer that finds no step running kicks the thread and parks
/// instead of leading. Each commit is acknowledged once durable, none hangs, and `close`
/// drains.
#[test]
fn leader_follower_driver_hands_a_group_to_its_thread() {
    model(|| {
        let disk = SimDisk::new(5);
        let wal = open(&disk, Driver::LeaderFollower);
        for i in 0..3 {
            assert_eq!(commit(&wal, &disk, i).unwrap(), Lsn(i + 1));
        }
        assert!(wal.stats().group_handovers > 0, "the third commit left its step to the thread");
        wal.close().unwrap();
    });
}

/// `close` while committers append: each append is either refused (`Closed`) or acknowledged,
/// and everything acknowledged is durable after `close`.
#[test]
fn close_during_commits_drains() {
    model(|| {
        let disk = SimDisk::new(3);
        let wal = open(&disk, Driver::Thread);
        let handles = committers(2, &wal, &disk);
        let closed = wal.close().unwrap();
        let durable = durable_lsns(&disk);
        for h in handles {
            match h.join().unwrap() {
                Ok(lsn) => assert!(lsn <= closed && durable.contains(&lsn), "{lsn} lost by close"),
                Err(Error::Closed) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    });
}

/// The first sync fails: no committer is acknowledged, every one gets the failure, none hangs.
#[test]
fn sync_failure_acknowledges_nothing() {
    model(|| {
        let disk = SimDisk::new(4);
        let wal = open(&disk, Driver::Manual);
        disk.fail_nth(FaultOp::Sync, 1);
        for h in committers(2, &wal, &disk) {
            match h.join().unwrap() {
                Err(Error::Poisoned { cause }) => assert!(matches!(*cause, Error::Io { .. }), "{cause}"),
                other => panic!("acknowledged after a failed sync: {other:?}"),
            }
        }
        assert!(wal.close().is_err());
    });
}
