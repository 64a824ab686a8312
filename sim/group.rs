//! Group commit on `SimDisk`: a crash at every flusher step of seeded runs, and each failure
//! path — sync EIO, disk full, a panicking flusher — bounded in steps, never in wall time.
//!
//! The crash campaign (`WALDB_SIM_GROUP_SEEDS=N`, default 40; `WALDB_SIM_SEED=S` replays one)
//! checks, for every seed and every step `k` of its run, a crash after step `k`:
//!
//! 1. recovery succeeds and the recovered log is a prefix of the appended records, byte for
//!    byte, at their LSNs;
//! 2. every `Sync` record acknowledged before the crash is in it;
//! 3. at the moment of each acknowledgement, the record was already durable (checked on a
//!    pessimistic copy of the disk that lost every unsynced write and directory operation);
//! 4. `Buffered` records acknowledged more than `every` before the last step are durable;
//! 5. a log reopened after the crash continues with fresh LSNs.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use waldb::sim::{FaultOp, SimClock, SimConfig, SimDisk, SimFaults, SimRng};
use waldb::wal::group::PlantedPanic;
use waldb::wal::{
    Driver, Durability, LogWriter, RecordKind, RecoveryMode, Ticket, Wal, WalConfig, WalOptions, read_log,
};
use waldb::{Clock, Error, Lsn};

use crate::support::{Trace, seeds};

const DIR: &str = "/db/wal";

fn small_log() -> WalOptions {
    WalOptions::default()
        .with_segment_bytes(4096)
        .with_record_payload_bytes_max(Some(512))
        .with_recovery(RecoveryMode::TolerateTornTail)
}

fn manual(log: WalOptions) -> WalConfig {
    WalConfig::default().with_log(log).with_driver(Driver::Manual)
}

/// Polls a ticket once without blocking.
fn poll_once(ticket: &mut Ticket) -> Poll<waldb::Result<Lsn>> {
    Pin::new(ticket).poll(&mut Context::from_waker(Waker::noop()))
}

/// A transaction payload the reader accepts, distinct per `i`.
fn txn(i: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let value: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
    waldb::wal::encode_txn(
        &mut out,
        waldb::TxnId(i),
        &[waldb::wal::Op::Put { key: format!("k{i}").as_bytes(), value: &value }],
    );
    out
}

/// Records in `dir` as (LSN, payload), in the default (tolerant) mode.
fn recover(disk: &SimDisk, log: WalOptions) -> waldb::Result<Vec<(Lsn, Vec<u8>)>> {
    let (records, _) = read_log(disk.clone(), Path::new(DIR), log.read_options())?;
    Ok(records.into_iter().map(|r| (r.lsn, r.payload)).collect())
}

// ---------------------------------------------------------------------------------------------
// The crash campaign.

/// One action of a seeded script.
#[derive(Clone, Copy, Debug)]
enum Action {
    Append { durability: Durability, len: usize },
    Step,
    Prepare,
    Advance(Duration),
}

/// The script of a seed: mostly appends and steps, some preparations and clock advances.
fn script(rng: &mut SimRng, len: usize) -> Vec<Action> {
    let every = Duration::from_millis(5);
    (0..len)
        .map(|_| match rng.below(10) {
            0..=3 => {
                let durability = match rng.below(4) {
                    0 => Durability::None,
                    1 => Durability::Buffered { every },
                    _ => Durability::Sync,
                };
                Action::Append { durability, len: 1 + rng.below_usize(400) }
            }
            4..=7 => Action::Step,
            8 => Action::Prepare,
            _ => Action::Advance(Duration::from_millis(1 + rng.below(4))),
        })
        .collect()
}

/// What a run up to a crash did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Run {
    /// Disk-touching actions (steps, preparations) executed.
    steps: usize,
    /// (LSN, payload) of every accepted append, in LSN order.
    appended: Vec<(Lsn, Vec<u8>)>,
    /// The highest `Sync` LSN acknowledged.
    acked_sync: Lsn,
    /// `Sync` acknowledgements checked against the pessimistic disk.
    acks: u64,
    /// The highest `Buffered` LSN whose window had passed at the last step.
    due_buffered: Lsn,
    trace_hash: u64,
}

/// Runs `seed`'s script, crashing after `crash_after` disk-touching actions (never, for
/// `None`), and checks invariants 1–5.
fn run(seed: u64, crash_after: Option<usize>, trace: &mut Trace) -> Run {
    let mut rng = SimRng::new(seed ^ 0x6C0F_FEE5);
    let config = SimConfig::default().with_sector_bytes(if rng.below(2) == 0 { 512 } else { 4096 });
    let disk = SimDisk::with_config(seed, config);
    let clock = SimClock::new();
    let log = small_log();
    let len = 60 + rng.below_usize(60);
    let actions = script(&mut rng, len);
    let (wal, _) = Wal::open_with(disk.clone(), clock.clone(), Path::new(DIR), manual(log))
        .unwrap_or_else(|e| trace.fail(seed, &format!("open: {e}")));
    let mut out = Run::default();
    let mut waiting: Vec<(Ticket, Durability, Duration)> = Vec::new();
    let mut buffered: Vec<(Lsn, Duration)> = Vec::new();
    let mut i = 0u64;
    for action in actions {
        if crash_after == Some(out.steps) {
            break;
        }
        match action {
            Action::Append { durability, len } => {
                i += 1;
                let payload = txn(i, len);
                let ticket = wal.append_with(RecordKind::Txn, &payload, durability).unwrap();
                trace.push(format!("append {:?} lsn {}", durability, ticket.lsn()));
                out.appended.push((ticket.lsn(), payload));
                if let Durability::Buffered { every } = durability {
                    buffered.push((ticket.lsn(), clock.now() + every));
                }
                waiting.push((ticket, durability, clock.now()));
            }
            Action::Step => {
                out.steps += 1;
                let r = wal.flush_step().unwrap_or_else(|e| trace.fail(seed, &format!("step: {e}")));
                trace
                    .push(format!("step: {} records, synced {}, durable {}", r.records, r.synced, r.durable));
                // Buffered windows that have passed must now be durable.
                for &(lsn, due) in &buffered {
                    if due <= clock.now() {
                        if r.durable < lsn {
                            trace.fail(seed, &format!("Buffered {lsn} past its window is not durable"));
                        }
                        out.due_buffered = out.due_buffered.max(lsn);
                    }
                }
            }
            Action::Prepare => {
                out.steps += 1;
                let prepared =
                    wal.prepare_step().unwrap_or_else(|e| trace.fail(seed, &format!("prepare: {e}")));
                trace.push(format!("prepare: {prepared}"));
            }
            Action::Advance(d) => {
                clock.advance(d);
                trace.push(format!("advance {d:?}"));
            }
        }
        // Acknowledgements: each one must already be durable on the most pessimistic disk.
        let mut still = Vec::new();
        for (mut t, durability, at) in waiting.drain(..) {
            match (durability, poll_once(&mut t)) {
                (Durability::Sync, Poll::Ready(Ok(lsn))) => {
                    let pessimist = disk.durable_clone();
                    let got = recover(&pessimist, log).unwrap_or_else(|e| trace.fail(seed, &format!("{e}")));
                    if got.last().is_none_or(|(last, _)| *last < lsn) {
                        trace.fail(seed, &format!("Sync {lsn} acknowledged before it was durable"));
                    }
                    out.acked_sync = out.acked_sync.max(lsn);
                    out.acks += 1;
                }
                (_, Poll::Ready(Err(e))) => trace.fail(seed, &format!("ticket failed: {e}")),
                (Durability::Sync, Poll::Pending) => still.push((t, durability, at)),
                (_, Poll::Ready(Ok(_))) => {}
                (_, Poll::Pending) => trace.fail(seed, "a Buffered/None ticket was not ready at append"),
            }
        }
        waiting = still;
    }
    out.steps = out.steps.min(crash_after.unwrap_or(usize::MAX));
    disk.crash();
    drop(wal); // its writes fail: the handles died with the crash
    let got = recover(&disk, log).unwrap_or_else(|e| trace.fail(seed, &format!("recovery after crash: {e}")));
    trace.push(format!("crash after {} steps: recovered {} of {}", out.steps, got.len(), out.appended.len()));
    // 1. A prefix, byte for byte.
    if got.len() > out.appended.len() || got[..] != out.appended[..got.len()] {
        trace.fail(seed, "the recovered log is not a prefix of the appended records");
    }
    // 2 and 4. Everything acknowledged as durable survived.
    let last = got.last().map_or(Lsn::ZERO, |(l, _)| *l);
    if last < out.acked_sync || last < out.due_buffered {
        trace.fail(
            seed,
            &format!("lost acknowledged records: recovered up to {last}, acked {}", out.acked_sync),
        );
    }
    // 5. Reopen and continue.
    let (wal, report) = Wal::open_with(disk.clone(), clock.clone(), Path::new(DIR), manual(log))
        .unwrap_or_else(|e| trace.fail(seed, &format!("reopen: {e}")));
    let ticket = wal.append(RecordKind::Txn, &txn(9999, 10)).unwrap();
    if ticket.lsn() <= report.max_lsn_seen {
        trace.fail(seed, "an LSN was reused after the crash");
    }
    ticket.wait().unwrap_or_else(|e| trace.fail(seed, &format!("commit after reopen: {e}")));
    wal.close().unwrap();
    out.trace_hash = disk.trace_hash();
    out
}

#[test]
fn group_crash_at_every_flusher_step() {
    let seeds = seeds("WALDB_SIM_GROUP_SEEDS", 40);
    let started = std::time::Instant::now();
    let (mut crashes, mut acked) = (0u64, 0u64);
    for &seed in &seeds {
        let mut trace = Trace::new("group_crash");
        let full = run(seed, None, &mut trace);
        for k in 0..=full.steps {
            let mut trace = Trace::new("group_crash");
            let r = run(seed, Some(k), &mut trace);
            crashes += 1;
            acked += r.acks;
        }
    }
    eprintln!(
        "group_crash: {} seeds, {crashes} crashes (one after every flusher step) in {:.2?}, {acked} acknowledgements checked durable",
        seeds.len(),
        started.elapsed()
    );
    assert!(crashes >= seeds.len() as u64 * 10, "the runs are too short to prove much");
}

#[test]
fn group_crash_is_deterministic() {
    for seed in [3, 11] {
        let a = run(seed, Some(7), &mut Trace::new("group_crash"));
        let b = run(seed, Some(7), &mut Trace::new("group_crash"));
        assert_eq!(a, b, "seed {seed} ran twice with different outcomes");
    }
}

// ---------------------------------------------------------------------------------------------
// Failure paths, scenario by scenario.

/// Appends `n` `Sync` records (manual driver: nothing is written yet) and returns the tickets.
fn queue_sync(wal: &Wal<SimDisk, SimClock>, n: u64) -> Vec<Ticket> {
    (0..n).map(|i| wal.append(RecordKind::Txn, &txn(i, 50)).unwrap()).collect()
}

fn assert_poisoned_by(result: waldb::Result<Lsn>, cause: impl Fn(&Error) -> bool, what: &str) {
    match result {
        Err(Error::Poisoned { cause: c }) if cause(&c) => {}
        other => panic!("{what}: expected Poisoned with the first cause, got {other:?}"),
    }
}

/// A sync that fails with EIO fails every waiter of its batch and every later append with the
/// first cause; nothing is acknowledged; reopening recovers exactly what was durable.
#[test]
fn sync_eio_reaches_every_waiter() {
    let disk = SimDisk::new(5);
    let log = small_log();
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    let first = wal.append(RecordKind::Txn, &txn(0, 50)).unwrap().wait().unwrap();
    disk.fail_nth(FaultOp::Sync, 1);
    let tickets = queue_sync(&wal, 5);
    // The batch and its sync are one call to the disk (`write_pages_synced_at`).
    let is_sync_eio = |e: &Error| matches!(e, Error::Io { op: "write and sync_data", source, .. } if source.to_string().contains("(sync)"));
    assert_poisoned_by(wal.flush_step().map(|r| r.durable), is_sync_eio, "the step");
    for t in tickets {
        assert_poisoned_by(t.wait(), is_sync_eio, "a waiter of the failed batch");
    }
    assert!(matches!(wal.append(RecordKind::Txn, b"x"), Err(Error::Poisoned { .. })));
    assert!(matches!(wal.append_with(RecordKind::Txn, b"x", Durability::None), Err(Error::Poisoned { .. })));
    let stats = wal.stats();
    assert!(!stats.healthy && stats.last_error.is_some());
    assert_eq!(stats.durable_lsn, first, "nothing became durable after the failure");
    assert!(wal.close().is_err(), "close returns the first failure");
    // The failed sync dropped its pages: after a crash only the first record is there.
    disk.crash();
    let got = recover(&disk, log).unwrap();
    assert_eq!(got.len(), 1);
    let (wal, report) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    assert_eq!(report.last_lsn, Some(first));
    wal.append(RecordKind::Txn, &txn(1, 10)).unwrap().wait().unwrap();
}

/// A write that hits ENOSPC fails its batch and poisons the log (the write may have landed in
/// part); after space is freed, reopening recovers everything acknowledged and writing resumes.
#[test]
fn write_enospc_fails_the_batch_and_reopen_resumes() {
    let disk = SimDisk::new(6);
    let log = small_log();
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    let acked: Vec<Lsn> = queue_sync(&wal, 3).into_iter().map(|t| t.wait().unwrap()).collect();
    disk.fail_nth_with(FaultOp::Write, 1, std::io::ErrorKind::StorageFull);
    let tickets = queue_sync(&wal, 4);
    let full = |e: &Error| matches!(e, Error::StorageFull { .. });
    for t in tickets {
        assert_poisoned_by(t.wait(), full, "a waiter of the batch that hit ENOSPC");
    }
    assert!(matches!(wal.append(RecordKind::Txn, b"x"), Err(Error::Poisoned { .. })));
    drop(wal);
    let (wal, report) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    assert!(report.last_lsn >= acked.last().copied(), "acknowledged records survive");
    wal.append(RecordKind::Txn, &txn(9, 10)).unwrap().wait().unwrap();
    wal.close().unwrap();
}

/// Disk full at rotation: the ahead-of-need preparation fails without poisoning; the rotation
/// that then needs the segment fails and poisons; after space is freed a reopen resumes.
#[test]
fn disk_full_at_rotation_poisons_and_reopen_resumes() {
    let disk = SimDisk::new(7);
    let log = small_log();
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    // The first record starts segment 1 (prepared at open) and requests segment 2.
    let mut acked = wal.append(RecordKind::Txn, &txn(0, 300)).unwrap().wait().unwrap();
    disk.set_faults(SimFaults::default().with_capacity_bytes(Some(disk.used_bytes())));
    assert!(wal.prepare_step().is_err(), "no room for the next segment");
    assert!(wal.stats().healthy, "a failed preparation does not poison");
    let mut failure = None;
    // Fill the first segment; the append that needs the second one fails.
    for i in 0..100 {
        match wal.append(RecordKind::Txn, &txn(i, 300)).unwrap().wait() {
            Ok(lsn) => acked = lsn,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match failure {
        Some(Error::Poisoned { cause }) => assert!(matches!(*cause, Error::StorageFull { .. }), "{cause}"),
        other => panic!("expected a disk-full poison, got {other:?}"),
    }
    assert!(acked > Lsn::ZERO);
    drop(wal);
    disk.set_faults(SimFaults::default());
    let (wal, report) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    assert!(report.last_lsn >= Some(acked));
    for i in 0..30 {
        wal.append(RecordKind::Txn, &txn(i, 300)).unwrap().wait().unwrap();
    }
    wal.close().unwrap();
}

/// A panic inside the flusher step poisons the log with `FlusherPanicked`: every waiter gets
/// it, later appends too; what was durable stays; reopening recovers.
#[test]
fn panic_inside_the_step_poisons() {
    let disk = SimDisk::new(8);
    let log = small_log();
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    let first = wal.append(RecordKind::Txn, &txn(0, 20)).unwrap().wait().unwrap();
    let tickets = queue_sync(&wal, 3);
    wal.plant_panic(PlantedPanic::InStep);
    let panicked = |e: &Error| matches!(e, Error::FlusherPanicked { .. });
    assert_poisoned_by(wal.flush_step().map(|r| r.durable), panicked, "the step");
    for t in tickets {
        assert_poisoned_by(t.wait(), panicked, "a waiter");
    }
    assert!(matches!(wal.append(RecordKind::Txn, b"x"), Err(Error::Poisoned { .. })));
    assert_eq!(wal.durable_lsn(), first);
    drop(wal);
    disk.crash();
    let (_, report) = Wal::open_with(disk, SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    assert!(report.last_lsn >= Some(first));
}

/// The background thread dies: without degradation every waiter gets an error (no hang); with
/// it, committers write and sync inline and every commit still succeeds.
#[test]
fn thread_death_fails_or_degrades() {
    for degrade in [false, true] {
        let disk = SimDisk::new(9);
        let log = small_log();
        let config = WalConfig::default()
            .with_log(log)
            .with_driver(Driver::Thread)
            .with_degrade_on_thread_death(degrade);
        let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), config).unwrap();
        wal.append(RecordKind::Txn, &txn(0, 20)).unwrap().wait().unwrap();
        wal.plant_panic(PlantedPanic::InThread);
        // Four appends, then their waits. The first append wakes the thread, which may die
        // before the others: without degradation those appends fail at once (`Poisoned`), as
        // the waits would. (Unwrapping them made this test fail when the thread won the race:
        // CI, 2026-11-23.)
        let tickets: Vec<_> = (0..4).map(|i| wal.append(RecordKind::Txn, &txn(i, 50))).collect();
        let results: Vec<_> = tickets.into_iter().map(|t| t.and_then(Ticket::wait)).collect();
        if degrade {
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            // The thread may have finished those commits in a step it had begun; it dies at its
            // next one. Bounded wait for that (a real thread), then check the inline mode.
            let waited = std::time::Instant::now();
            while !wal.stats().degraded {
                assert!(waited.elapsed() < Duration::from_secs(10), "the planted panic never fired");
                std::thread::sleep(Duration::from_millis(1));
            }
            let lsn = wal.append_with(RecordKind::Txn, &txn(5, 20), Durability::None).unwrap().lsn();
            assert!(wal.durable_lsn() >= lsn, "degraded: even `None` appends are synced inline");
            let async_lsn =
                crate::support::block_on(wal.append(RecordKind::Txn, &txn(6, 20)).unwrap()).unwrap();
            assert!(wal.durable_lsn() >= async_lsn);
            let stats = wal.stats();
            assert!(stats.last_error.as_ref().is_some_and(|e| e.contains("planted")), "{stats:?}");
            wal.close().unwrap();
        } else {
            // A step the thread had already begun may still acknowledge commits; it dies at its
            // next step, and from then on every waiter gets the panic. Commit until that shows
            // (bounded), then check the shape.
            let mut results = results;
            for i in 0..100 {
                if results.iter().any(Result::is_err) {
                    break;
                }
                results.push(wal.append(RecordKind::Txn, &txn(100 + i, 20)).and_then(Ticket::wait));
            }
            let failed =
                results.iter().position(Result::is_err).expect("the planted panic never reached a waiter");
            assert!(results[..failed].iter().all(Result::is_ok), "{results:?}");
            assert!(
                results[failed..].iter().all(
                    |r| matches!(r, Err(Error::Poisoned { cause }) if matches!(**cause, Error::FlusherPanicked { .. }))
                ),
                "{results:?}"
            );
            assert!(wal.close().is_err());
        }
    }
}

/// `Buffered` records are acknowledged at once, written by the next step, and synced by the
/// first step after their window; `None` records wait for a later sync.
#[test]
fn buffered_and_none_promise_what_they_say() {
    let disk = SimDisk::new(10);
    let clock = SimClock::new();
    let log = small_log();
    let every = Duration::from_millis(10);
    let (wal, _) = Wal::open_with(disk.clone(), clock.clone(), Path::new(DIR), manual(log)).unwrap();
    let t = wal.append_with(RecordKind::Txn, &txn(1, 20), Durability::Buffered { every }).unwrap();
    let lsn = t.wait().unwrap(); // acknowledged at once
    let r = wal.flush_step().unwrap();
    assert_eq!((r.records, r.synced), (1, false), "written, not synced: the window is open");
    clock.advance(Duration::from_millis(4));
    assert!(!wal.flush_step().unwrap().synced);
    clock.advance(Duration::from_millis(6));
    let r = wal.flush_step().unwrap();
    assert!(r.synced && r.durable >= lsn, "synced once the window passed: {r:?}");
    assert_eq!(recover(&disk.durable_clone(), log).unwrap().len(), 1);
    // `None`: written but never synced by itself.
    let none = wal.append_with(RecordKind::Txn, &txn(2, 20), Durability::None).unwrap().wait().unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(!wal.flush_step().unwrap().synced);
    assert_eq!(recover(&disk.durable_clone(), log).unwrap().len(), 1, "a None record is not synced");
    // A later Sync record covers it.
    wal.append(RecordKind::Txn, &txn(3, 20)).unwrap().wait().unwrap();
    assert!(recover(&disk.durable_clone(), log).unwrap().iter().any(|(l, _)| *l == none));
    // `Wal::sync` makes everything appended durable.
    let last = wal.append_with(RecordKind::Txn, &txn(4, 20), Durability::None).unwrap().lsn();
    assert_eq!(wal.sync().unwrap(), last);
    wal.close().unwrap();
}

/// With the manual driver a full queue makes the committer run a step itself: back-pressure
/// never deadlocks a single-threaded simulation.
#[test]
fn full_queue_in_a_single_thread_flushes_inline() {
    let disk = SimDisk::new(11);
    let mut config = manual(small_log());
    config.batch.queue_records_max = 3;
    let (wal, _) = Wal::open_with(disk, SimClock::new(), Path::new(DIR), config).unwrap();
    let tickets = queue_sync(&wal, 10);
    let stats = wal.stats();
    assert!(stats.backpressure_waits >= 3 && stats.queue_records <= 3, "{stats:?}");
    for t in tickets {
        t.wait().unwrap();
    }
    wal.close().unwrap();
}

/// The writer under a `Wal` resumes exactly like a bare `LogWriter` (the two share recovery).
#[test]
fn wal_and_writer_share_the_log_format() {
    let disk = SimDisk::new(12);
    let log = small_log();
    let (wal, _) = Wal::open_with(disk.clone(), SimClock::new(), Path::new(DIR), manual(log)).unwrap();
    let lsn = wal.append(RecordKind::Txn, &txn(1, 20)).unwrap().wait().unwrap();
    wal.close().unwrap();
    let (mut w, report) = LogWriter::open(disk.clone(), Path::new(DIR), log).unwrap();
    assert_eq!(report.last_lsn, Some(lsn));
    assert_eq!(w.append(RecordKind::Txn, &txn(2, 20)).unwrap(), lsn.next());
    w.close().unwrap();
}

/// Natural group commit: records queued while no step runs (as during an fsync) ride one write
/// and one sync, and no timer stands between them and it; a linger, when chosen, is the only
/// wait.
#[test]
fn queued_commits_ride_one_sync_without_a_timer() {
    for linger in [Duration::ZERO, Duration::from_micros(200)] {
        let disk = SimDisk::new(13);
        let clock = SimClock::new();
        let mut config = manual(small_log());
        config.batch.linger = linger;
        let (wal, _) = Wal::open_with(disk.clone(), clock.clone(), Path::new(DIR), config).unwrap();
        let tickets = queue_sync(&wal, 5);
        let (syncs, before) = (disk.stats().syncs, clock.now());
        let r = wal.flush_step().unwrap();
        assert_eq!((r.records, r.synced), (5, true), "linger {linger:?}");
        assert_eq!(disk.stats().syncs - syncs, 1, "one sync for the whole batch");
        assert_eq!(clock.now() - before, linger, "the step waited for nothing but the linger");
        for t in tickets {
            t.wait().unwrap();
        }
        wal.close().unwrap();
    }
}
