//! The database under deterministic simulation: the real `Db` — sequencer, memtable, group
//! commit, checkpoints, recovery — on `SimDisk` and `SimClock`, driven by one thread that
//! interleaves N simulated clients step by step from one seed. No OS thread runs inside a
//! simulated run (the log's driver is `Manual`: the simulation runs its flusher steps) and no
//! wall time is read (`Buffered` deadlines follow the `SimClock`).
//!
//! Each seed lives several lives. A life opens the database, runs a random workload — gets,
//! puts, deletes, scans, read-modify-writes on a few hot keys so that transactions conflict,
//! commits of every durability, aborts, checkpoints, reads outside transactions — with faults
//! at random steps on some seeds (EIO on writes, syncs and directory syncs, disk full, a failed
//! sync that drops its writes, torn writes at 512 B or 4 KiB sectors), and
//! ends in a crash at a random step or a clean close. Every sequenced commit is recorded in a
//! model (its LSN is known from `Commit::lsn` at once, so a commit whose outcome is an error is
//! placed in the order from the start). The checker of DESIGN.md §6, after every crash and at
//! every step:
//!
//! 1. every acknowledged `Sync` commit is present after the crash;
//! 2. every transaction is all or nothing, and
//! 3. the state is a prefix of the commit order: the recovered state equals the model's state
//!    at exactly the recovered LSN, key for key;
//! 4. a serializable transaction read what the serial execution in LSN order reads: each
//!    value and range it read from its snapshot is unchanged at its commit LSN (and every read
//!    equals the model at the snapshot, plus the transaction's own writes);
//! 5. a commit whose outcome was an error is wholly present or wholly absent (by 2 and 3: it
//!    is in the model at its LSN);
//! 6. `Buffered` loses at most the commits after the last successful sync: the recovered LSN
//!    is at least the log's durable LSN at the crash;
//! 7. recovery of the crashed disk — after a bit flipped in a durable file (the log, the
//!    manifest, a table), or writes stored at the wrong offset, on some seeds' last lives — ends
//!    in `Ok` or a clear error, never a panic; after a bit flip, an `Ok` holds the model's state
//!    at its LSN (some prefix), or its reads fail with a clear error;
//! 8. the run is deterministic: one seed run twice gives the same trace hash.
//!
//! Also at every step: a `Sync` commit is visible to no snapshot before it is durable; an
//! acknowledged commit is visible to every later snapshot; LSNs are sequenced in order.
//!
//! [`run_seed`] runs one seed and returns what it did, or the [`Failure`] with the seed, the
//! invariant broken, the last events and the commands that replay it. The test target
//! (`sim/db.rs`) runs a default campaign; `waldb sim --seeds N` runs long ones.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::db::{Compression, DbOptions, Isolation};
use crate::sim::{FaultOp, SimClock, SimConfig, SimDisk, SimFaults, SimRng, SimStats};
use crate::wal::{BatchConfig, Driver, Durability};
use crate::{Commit, Db, Error, Lsn, Transaction};

const DIR: &str = "/db";
/// Hot keys: few enough that transactions conflict.
const KEYS: u64 = 10;

type SimDb = Db<SimDisk, SimClock>;
type Key = Vec<u8>;
type Val = Vec<u8>;

/// A small random number in a narrower type.
fn small<T: TryFrom<u64>>(n: u64) -> T {
    T::try_from(n).unwrap_or_else(|_| panic!("{n} is small"))
}

fn key(i: u64) -> Key {
    format!("k{i:02}").into_bytes()
}

fn show(v: Option<&[u8]>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{}B#{:x}", v.len(), fnv(v) & 0xffff))
}

/// FNV-1a, for trace hashes that do not depend on the process.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// The model.

/// One sequenced commit.
#[derive(Debug)]
struct Sequenced {
    durability: Durability,
    acked: bool,
    /// Its outcome was an error after it was sequenced: unknown.
    failed: bool,
}

/// Every sequenced commit, as versions per key at their LSNs.
#[derive(Default)]
struct Model {
    versions: BTreeMap<Key, Vec<(Lsn, Option<Val>)>>,
    commits: BTreeMap<Lsn, Sequenced>,
}

impl Model {
    fn sequence(
        &mut self,
        lsn: Lsn,
        writes: &BTreeMap<Key, Option<Val>>,
        durability: Durability,
    ) -> Result<(), String> {
        if let Some((&last, _)) = self.commits.last_key_value()
            && lsn <= last
        {
            return Err(format!("LSN {lsn} sequenced after LSN {last}"));
        }
        for (k, v) in writes {
            self.versions.entry(k.clone()).or_default().push((lsn, v.clone()));
        }
        self.commits.insert(lsn, Sequenced { durability, acked: false, failed: false });
        Ok(())
    }

    fn get(&self, key: &[u8], at: Lsn) -> Option<&Val> {
        self.versions.get(key)?.iter().rev().find(|(l, _)| *l <= at)?.1.as_ref()
    }

    fn range(&self, lo: &[u8], hi: &[u8], at: Lsn) -> Vec<(Key, Val)> {
        self.versions
            .range::<[u8], _>((Bound::Included(lo), Bound::Excluded(hi)))
            .filter_map(|(k, _)| self.get(k, at).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    fn state(&self, at: Lsn) -> BTreeMap<Key, Val> {
        self.versions.keys().filter_map(|k| self.get(k, at).map(|v| (k.clone(), v.clone()))).collect()
    }

    /// Forgets every commit above `lsn` (lost in a crash).
    fn truncate(&mut self, lsn: Lsn) {
        self.commits.split_off(&lsn.next());
        for versions in self.versions.values_mut() {
            versions.retain(|(l, _)| *l <= lsn);
        }
        self.versions.retain(|_, v| !v.is_empty());
    }

    fn last_acked(&self, sync_only: bool) -> Lsn {
        self.commits
            .iter()
            .rev()
            .find(|(_, c)| c.acked && (!sync_only || matches!(c.durability, Durability::Sync)))
            .map_or(Lsn::ZERO, |(l, _)| *l)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// A read from a transaction's snapshot (own writes excluded), re-checked at its commit LSN.
#[derive(Debug)]
enum Read {
    Get(Key, Option<Val>),
    Scan(Key, Key, Vec<(Key, Val)>),
}

struct Active {
    txn: Transaction<SimDisk, SimClock>,
    isolation: Isolation,
    writes: BTreeMap<Key, Option<Val>>,
    reads: Vec<Read>,
    ops_left: u32,
}

struct Pending {
    commit: Commit<SimDisk, SimClock>,
    lsn: Option<Lsn>,
    isolation: Isolation,
    reads: Vec<Read>,
    wrote: bool,
    durability: Durability,
}

enum Client {
    Idle,
    Active(Box<Active>),
    Committing(Box<Pending>),
}

/// What a seed did: compared between two runs of one seed, summed over a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Opens of the database (each followed by a workload).
    pub lives: u64,
    /// Simulated power failures.
    pub crashes: u64,
    /// Commits acknowledged (and checked: durable, visible, serial).
    pub commits_acked: u64,
    /// Commits sequenced whose outcome was an error: unknown, checked whole or absent.
    pub commits_failed: u64,
    /// Commits refused by validation.
    pub conflicts: u64,
    /// Reads checked against the model (inside and outside transactions).
    pub reads_checked: u64,
    /// Whole states checked against the model (after each recovery).
    pub states_checked: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Memtables flushed to sorted tables (by checkpoints and by full memtables).
    pub flushes: u64,
    /// Memtables frozen because they were full.
    pub freezes: u64,
    /// Compactions of sorted tables.
    pub compactions: u64,
    /// Errors the database reported under injected faults.
    pub faults_hit: u64,
    /// Bits flipped in durable files before a last recovery.
    pub bit_flips: u64,
    /// Writes the disk stored at the wrong offset.
    pub misdirected_writes: u64,
    /// Last recoveries after silent corruption that ended in a clear error.
    pub corrupt_opens: u64,
    /// Opens tried with the faults on that failed (each followed by a clean open, sometimes
    /// after a crash).
    pub failed_opens: u64,
    /// What the simulated disk did (faults injected, crashes, torn writes).
    pub disk: SimStats,
    /// A hash of every event and every disk operation: equal for two runs of one seed.
    pub trace_hash: u64,
}

impl Outcome {
    /// Adds `o`'s counts to these (the trace hashes are combined, not summed).
    pub fn add(&mut self, o: &Outcome) {
        self.lives += o.lives;
        self.crashes += o.crashes;
        self.commits_acked += o.commits_acked;
        self.commits_failed += o.commits_failed;
        self.conflicts += o.conflicts;
        self.reads_checked += o.reads_checked;
        self.states_checked += o.states_checked;
        self.checkpoints += o.checkpoints;
        self.flushes += o.flushes;
        self.freezes += o.freezes;
        self.compactions += o.compactions;
        self.faults_hit += o.faults_hit;
        self.bit_flips += o.bit_flips;
        self.misdirected_writes += o.misdirected_writes;
        self.corrupt_opens += o.corrupt_opens;
        self.failed_opens += o.failed_opens;
        let (d, e) = (&mut self.disk, &o.disk);
        d.writes += e.writes;
        d.bytes_written += e.bytes_written;
        d.syncs += e.syncs;
        d.dir_syncs += e.dir_syncs;
        d.crashes += e.crashes;
        d.crash_writes_lost += e.crash_writes_lost;
        d.crash_writes_kept += e.crash_writes_kept;
        d.crash_writes_torn += e.crash_writes_torn;
        d.crash_dir_ops_lost += e.crash_dir_ops_lost;
        for (a, b) in d.io_errors.iter_mut().zip(e.io_errors) {
            *a += b;
        }
        d.storage_full += e.storage_full;
        d.bit_flips += e.bit_flips;
        d.misdirected_writes += e.misdirected_writes;
        self.trace_hash = self.trace_hash.rotate_left(5) ^ o.trace_hash;
    }
}

/// One seed's simulation.
struct Sim {
    seed: u64,
    rng: SimRng,
    disk: SimDisk,
    clock: SimClock,
    options: DbOptions,
    model: Model,
    /// The last events, for a failure's report.
    events: VecDeque<String>,
    verbose: bool,
    hash: u64,
    out: Outcome,
    faulty: bool,
    /// The log's durable LSN when the last life ended: recovery must reach it.
    durable_at_end: Lsn,
    /// The file a bit was flipped in, before the last recovery.
    flipped: Option<PathBuf>,
}

impl Sim {
    fn event(&mut self, e: String) {
        if self.verbose {
            eprintln!("{e}");
        }
        self.hash = (self.hash ^ fnv(e.as_bytes())).wrapping_mul(0x0000_0100_0000_01B3);
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Ends the seed: unwinds (without the panic hook's report) to [`run_seed`].
    fn fail(&self, what: &str) -> ! {
        let failure =
            Failure { seed: self.seed, what: what.to_owned(), events: self.events.iter().cloned().collect() };
        std::panic::resume_unwind(Box::new(failure))
    }

    fn value(&mut self) -> Val {
        let len = match self.rng.below(10) {
            0 => 0,
            1 => 200 + self.rng.below_usize(1200),
            _ => 1 + self.rng.below_usize(40),
        };
        let mut v = vec![0u8; len];
        self.rng.fill(&mut v);
        if self.options.compression == Compression::Lz4 {
            // Values that compress (the first half twice), so that the tables' data blocks are
            // stored compressed; the draws are those of the random values.
            let half = len / 2;
            v.copy_within(..half, len - half);
        }
        v
    }

    fn durability(&mut self) -> Durability {
        match self.rng.below(10) {
            0..=5 => self.options.durability,
            6 | 7 => Durability::Sync,
            8 => Durability::Buffered { every: Duration::from_millis(5) },
            _ => Durability::None,
        }
    }

    /// Opens the database after a crash or close, with faults off (recovery reads; what is
    /// checked is the data). Returns the database and the LSN its state reached.
    ///
    /// On faulty seeds, one open in three is first tried with this life's faults armed: if that
    /// fails, the process restarts (after a crash, half the time) and opens again with them off.
    /// A failed open must leave a database that still opens, with nothing acknowledged lost.
    fn open(&mut self) -> Result<(SimDb, Lsn), Error> {
        if self.faulty && self.rng.below(3) == 0 {
            self.arm_faults();
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Db::open_with(self.disk.clone(), self.clock.clone(), Path::new(DIR), self.options)
            }));
            self.disarm_faults();
            match opened {
                Err(_) => self.fail("open panicked under faults"),
                Ok(Ok((db, report))) => {
                    self.event(format!("open under faults: lsn {}", report.lsn));
                    return Ok((db, report.lsn));
                }
                Ok(Err(e)) => {
                    self.out.failed_opens += 1;
                    self.event(format!("open under faults failed: {e}"));
                    if self.rng.below(2) == 0 {
                        self.disk.crash();
                        self.out.crashes += 1;
                        self.event("crash after the failed open".into());
                    }
                }
            }
        }
        let faults = self.disk.faults();
        self.disk.set_faults(SimFaults::default());
        self.disk.clear_scheduled();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Db::open_with(self.disk.clone(), self.clock.clone(), Path::new(DIR), self.options)
        }));
        self.disk.set_faults(faults);
        match opened {
            Err(_) => self.fail("open panicked"),
            Ok(Ok((db, report))) => {
                self.event(format!(
                    "open: checkpoint {:?}, {} txns replayed, lsn {}, end {:?}",
                    report.checkpoint_lsn, report.txns_replayed, report.lsn, report.wal.end
                ));
                Ok((db, report.lsn))
            }
            Ok(Err(e)) => {
                self.event(format!("open failed: {e}"));
                Err(e)
            }
        }
    }

    /// Checks the whole state of `db` against the model at `lsn`.
    fn check_state(&mut self, db: &SimDb, lsn: Lsn, when: &str) {
        let got: BTreeMap<Key, Val> = match db.scan(..) {
            Ok(pairs) => pairs.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            Err(e) => self.fail(&format!("{when}: the state could not be read: {e}")),
        };
        self.check_pairs(&got, lsn, when);
    }

    /// After silent corruption: the database opened, so what it holds must be the model's state
    /// at its LSN (a prefix of the commit order, since a torn tail may be cut), or a read must
    /// end in a clear error. A decoder that let damage through gives some other state.
    fn check_state_after_corruption(&mut self, db: &SimDb) {
        let lsn = db.visible_lsn();
        let top = self.model.commits.last_key_value().map_or(Lsn::ZERO, |(l, _)| *l);
        if lsn > top {
            self.fail(&format!(
                "after silent corruption: opened at LSN {lsn}, above the last sequenced {top}"
            ));
        }
        match db.scan(..) {
            Ok(pairs) => {
                let got: BTreeMap<Key, Val> =
                    pairs.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                self.check_pairs(&got, lsn, "after silent corruption");
            }
            Err(e) if e.is_corrupt() => {
                self.out.corrupt_opens += 1;
                self.event(format!("read after silent corruption: {e}"));
            }
            Err(e) => self.fail(&format!("after silent corruption: a read failed unclearly: {e}")),
        }
    }

    fn check_pairs(&mut self, got: &BTreeMap<Key, Val>, lsn: Lsn, when: &str) {
        let want = self.model.state(lsn);
        if *got != want {
            let diff: Vec<String> = want
                .keys()
                .chain(got.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| want.get(*k) != got.get(*k))
                .map(|k| {
                    format!(
                        "{}: model {} db {}",
                        String::from_utf8_lossy(k),
                        show(want.get(k).map(Vec::as_slice)),
                        show(got.get(k).map(Vec::as_slice))
                    )
                })
                .collect();
            self.fail(&format!("{when}: the state is not the model's at LSN {lsn}: {}", diff.join("; ")));
        }
        self.out.states_checked += 1;
    }

    /// An error from the database: expected only on a faulty seed.
    fn fault(&mut self, what: &str, e: &Error) {
        if e.is_panic() {
            self.fail(&format!("{what} failed on a panic: {e}"));
        }
        if !self.faulty {
            self.fail(&format!("{what} failed without faults: {e}"));
        }
        self.out.faults_hit += 1;
        self.event(format!("{what}: {e}"));
    }

    /// Arms this life's faults on a faulty seed.
    fn arm_faults(&mut self) {
        if !self.faulty {
            return;
        }
        match self.rng.below(6) {
            0 => self.disk.fail_nth(FaultOp::Sync, 1 + self.rng.below(12)),
            1 => self.disk.fail_nth(FaultOp::Write, 1 + self.rng.below(20)),
            2 => self.disk.fail_nth(FaultOp::SyncDir, 1 + self.rng.below(4)),
            3 => {
                let cap = self.disk.used_bytes() + self.rng.below(32 << 10);
                self.disk.set_faults(SimFaults { capacity_bytes: Some(cap), ..self.disk.faults() });
            }
            4 => self.disk.set_faults(SimFaults {
                io_error_probability: [0.0, 0.02, 0.02, 0.02],
                ..self.disk.faults()
            }),
            _ => {
                self.disk.fail_nth(FaultOp::Sync, 1 + self.rng.below(30));
                self.disk.fail_nth(FaultOp::Write, 1 + self.rng.below(30));
            }
        }
    }

    fn disarm_faults(&mut self) {
        self.disk.set_faults(SimFaults {
            failed_sync_drops_writes: self.disk.faults().failed_sync_drops_writes,
            ..SimFaults::default()
        });
        self.disk.clear_scheduled();
    }

    /// One life: open, work, crash or close.
    fn life(&mut self, clients: usize, last: bool) {
        self.out.lives += 1;
        let db = match self.recover("after recovery") {
            Ok(db) => db,
            Err(e) => self.fail(&format!("the database does not open after a crash without corruption: {e}")),
        };

        self.arm_faults();
        // Silent corruption (misdirected writes) only in the last life, as for bit flips.
        if last && self.rng.below(5) == 0 {
            self.disk.set_faults(SimFaults { misdirected_write_probability: 0.05, ..self.disk.faults() });
            self.event("misdirected writes on".into());
        }
        let mut cs: Vec<Client> = (0..clients).map(|_| Client::Idle).collect();
        let mut broken = false;
        let steps = 20 + self.rng.below(600);
        for _ in 0..steps {
            if broken && self.rng.below(8) == 0 {
                break;
            }
            match self.rng.below(100) {
                0..=59 => {
                    let c = self.rng.below_usize(cs.len());
                    broken |= self.client_step(&db, &mut cs[c], c);
                }
                60..=77 => match db.flush_step() {
                    Ok(_) => self.poll_all(&db, &mut cs, &mut broken),
                    Err(e) => {
                        self.fault("flush step", &e);
                        broken = true;
                        self.poll_all(&db, &mut cs, &mut broken);
                    }
                },
                78..=80 => {
                    if let Err(e) = db.prepare_step() {
                        self.fault("prepare step", &e);
                    }
                }
                81..=85 => {
                    let d = Duration::from_millis(self.rng.below(8));
                    self.clock.advance(d);
                    self.event(format!("clock +{d:?}"));
                }
                86..=89 => self.read_outside(&db),
                90 => match db.checkpoint() {
                    Ok(r) => {
                        self.out.checkpoints += 1;
                        self.event(format!("checkpoint {:?}: {} entries", r.lsn, r.entries));
                        self.poll_all(&db, &mut cs, &mut broken);
                    }
                    Err(e) => {
                        self.fault("checkpoint", &e);
                        broken = true;
                    }
                },
                91 => match db.sync() {
                    Ok(l) => {
                        self.event(format!("sync -> {l}"));
                        self.poll_all(&db, &mut cs, &mut broken);
                    }
                    Err(e) => {
                        self.fault("sync", &e);
                        broken = true;
                    }
                },
                _ => self.poll_all(&db, &mut cs, &mut broken),
            }
        }
        if last || broken || self.rng.below(5) != 0 {
            self.crash(db, cs, last);
        } else {
            self.close(db, cs);
        }
    }

    fn durable_of(db: &SimDb) -> Lsn {
        db.stats().wal.durable_lsn
    }

    /// Opens the database and checks what recovery reached: every acknowledged `Sync` commit
    /// and everything durable at the end of the last life, nothing never sequenced, and a state
    /// that is exactly the model's at the recovered LSN.
    fn recover(&mut self, when: &str) -> Result<SimDb, String> {
        let (db, lsn) = self.open().map_err(|e| e.to_string())?;
        let (acked_sync, durable) = (self.model.last_acked(true), self.durable_at_end);
        if lsn < acked_sync {
            self.fail(&format!("acknowledged Sync commit at LSN {acked_sync} lost: recovered to {lsn}"));
        }
        // LSNs that recovery skipped count as durable and have no commit: what must be present
        // is every commit up to the durable LSN.
        if let Some((l, _)) =
            (lsn < durable).then(|| self.model.commits.range(lsn.next()..=durable).next()).flatten()
        {
            self.fail(&format!(
                "commit {l}, durable at the end of the last life (durable LSN {durable}), lost: recovered to {lsn}"
            ));
        }
        if let Some((&top, _)) = self.model.commits.last_key_value()
            && lsn > top
        {
            self.fail(&format!("recovered to LSN {lsn}, above the last sequenced {top}"));
        }
        self.model.truncate(lsn);
        self.check_state(&db, lsn, when);
        Ok(db)
    }

    /// Counts what a life did to the tree: freezes, flushes, compactions.
    fn note_tree(&mut self, db: &SimDb) {
        let stats = db.stats();
        self.out.flushes += stats.checkpoints;
        self.out.freezes += stats.freezes;
        self.out.compactions += stats.compactions;
    }

    fn crash(&mut self, db: SimDb, cs: Vec<Client>, last: bool) {
        self.durable_at_end = Self::durable_of(&db);
        self.note_tree(&db);
        self.disk.crash();
        self.out.crashes += 1;
        // The dying process's handles are dead; anything it does by path from here must not
        // reach the disk the next life opens, so the next life gets an independent copy.
        let next = self.disk.durable_clone();
        drop(cs);
        drop(db);
        self.disk = next;
        self.disarm_faults();
        self.event(format!("CRASH (durable {})", self.durable_at_end));
        for c in self.model.commits.values_mut() {
            // Outcomes still pending at the crash are unknown.
            if !c.acked {
                c.failed = true;
            }
        }
        // Corruption at rest only before the final recovery: after it no state can be required,
        // only an open that ends in `Ok` or a clear error.
        if last && self.rng.below(4) == 0 {
            self.flip_a_bit();
        }
    }

    fn close(&mut self, db: SimDb, cs: Vec<Client>) {
        drop(cs);
        self.note_tree(&db);
        match db.close() {
            Ok(l) => {
                self.event(format!("close -> {l}"));
                // Everything sequenced is durable after a clean close.
                self.durable_at_end = self.model.commits.last_key_value().map_or(Lsn::ZERO, |(l, _)| *l);
            }
            Err(e) => {
                self.fault("close", &e);
                self.durable_at_end = Self::durable_of(&db);
            }
        }
        drop(db);
        self.disarm_faults();
    }

    /// Corruption at rest: one bit of one durable file.
    fn flip_a_bit(&mut self) {
        // One kind of file first — the directory's own (the manifest, the epoch), the log's
        // segments, the tables — then one of that kind: the few-byte files are hit as often as
        // the large ones.
        let mut kinds: Vec<Vec<PathBuf>> = Vec::new();
        let len_of = |p: &Path| {
            crate::Disk::open(&self.disk, p, crate::OpenMode::Read)
                .and_then(|f| crate::DiskFile::len(&f))
                .unwrap_or(0)
        };
        for dir in [DIR.to_owned(), format!("{DIR}/wal"), format!("{DIR}/tables")] {
            if let Ok(names) = crate::Disk::list_dir(&self.disk, Path::new(&dir)) {
                let files: Vec<PathBuf> =
                    names.into_iter().map(|n| Path::new(&dir).join(n)).filter(|p| len_of(p) > 0).collect();
                if !files.is_empty() {
                    kinds.push(files);
                }
            }
        }
        if kinds.is_empty() {
            return;
        }
        let files = &kinds[self.rng.below_usize(kinds.len())];
        let f = files[self.rng.below_usize(files.len())].clone();
        let len = len_of(&f);
        let at = self.rng.below(len);
        if self.disk.flip_bit(&f, at, small(self.rng.below(8))).is_ok() {
            self.out.bit_flips += 1;
            self.flipped = Some(f.clone());
            self.event(format!("bit flip in {} at {at}", f.display()));
        }
    }

    /// `Db::get` and `Db::scan`: they read everything visible now.
    fn read_outside(&mut self, db: &SimDb) {
        let at = db.visible_lsn();
        if self.rng.below(2) == 0 {
            let k = key(self.rng.below(KEYS));
            let got = match db.get(&k) {
                Ok(v) => v.map(|v| v.to_vec()),
                Err(e) => self.fail(&format!("Db::get: {e}")),
            };
            let want = self.model.get(&k, at).cloned();
            if got != want {
                self.fail(&format!(
                    "Db::get({}) at visible {at}: {} (model {})",
                    String::from_utf8_lossy(&k),
                    show(got.as_deref()),
                    show(want.as_deref())
                ));
            }
        } else {
            let (lo, hi) = self.range();
            let got: Vec<(Key, Val)> = db
                .scan(&lo[..]..&hi[..])
                .expect("a scan reads memory only")
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            if got != self.model.range(&lo, &hi, at) {
                self.fail(&format!("Db::scan at visible {at} differs from the model"));
            }
        }
        self.out.reads_checked += 1;
    }

    fn range(&mut self) -> (Key, Key) {
        let a = self.rng.below(KEYS + 1);
        let b = self.rng.below(KEYS + 1);
        (key(a.min(b)), key(a.max(b)))
    }

    /// The snapshot rules at `begin`: a `Sync` commit is visible only once durable, and every
    /// acknowledged commit is visible.
    fn check_snapshot(&mut self, db: &SimDb, at: Lsn) {
        let durable = db.stats().wal.durable_lsn;
        if let Some((l, _)) = (durable < at)
            .then(|| {
                self.model
                    .commits
                    .range(durable.next()..=at)
                    .find(|(_, c)| matches!(c.durability, Durability::Sync))
            })
            .flatten()
        {
            self.fail(&format!(
                "a snapshot at {at} sees Sync commit {l}, which is not durable (durable {durable})"
            ));
        }
        let acked = self.model.last_acked(false);
        if at < acked {
            self.fail(&format!("a snapshot at {at} misses acknowledged commit {acked}"));
        }
    }

    /// One step of client `c`. Returns true if the database reported a failure.
    fn client_step(&mut self, db: &SimDb, client: &mut Client, c: usize) -> bool {
        match std::mem::replace(client, Client::Idle) {
            Client::Idle => {
                let isolation =
                    if self.rng.below(4) == 0 { Isolation::Snapshot } else { Isolation::Serializable };
                match db.begin_with(isolation) {
                    Ok(txn) => {
                        let at = txn.snapshot_lsn();
                        self.check_snapshot(db, at);
                        self.event(format!("c{c} begin {isolation:?} at {at}"));
                        let ops_left: u32 = 1 + small::<u32>(self.rng.below(6));
                        *client = Client::Active(Box::new(Active {
                            txn,
                            isolation,
                            writes: BTreeMap::new(),
                            reads: Vec::new(),
                            ops_left,
                        }));
                    }
                    Err(e) => {
                        self.fault("begin", &e);
                        return true;
                    }
                }
                false
            }
            Client::Active(mut a) => {
                if a.ops_left == 0 {
                    return self.commit(db, client, c, *a);
                }
                a.ops_left -= 1;
                self.op(&mut a, c);
                if self.rng.below(30) == 0 {
                    self.event(format!("c{c} abort"));
                    a.txn.abort();
                } else {
                    *client = Client::Active(a);
                }
                false
            }
            Client::Committing(p) => {
                let mut broken = false;
                self.poll(db, client, c, p, &mut broken);
                broken
            }
        }
    }

    /// One operation inside a transaction, checked against the model at its snapshot.
    fn op(&mut self, a: &mut Active, c: usize) {
        let at = a.txn.snapshot_lsn();
        let k = key(self.rng.below(KEYS));
        match self.rng.below(10) {
            0..=2 => {
                let got = a.txn.get(&k).expect("get").map(|v| v.to_vec());
                let want = match a.writes.get(&k) {
                    Some(own) => own.clone(),
                    None => {
                        let v = self.model.get(&k, at).cloned();
                        a.reads.push(Read::Get(k.clone(), v.clone()));
                        v
                    }
                };
                if got != want {
                    self.fail(&format!(
                        "c{c} get({}) at snapshot {at}: {} (model {})",
                        String::from_utf8_lossy(&k),
                        show(got.as_deref()),
                        show(want.as_deref())
                    ));
                }
                self.out.reads_checked += 1;
                self.event(format!("c{c} get {} = {}", String::from_utf8_lossy(&k), show(got.as_deref())));
            }
            3 => {
                let (lo, hi) = self.range();
                let got: Vec<(Key, Val)> = a
                    .txn
                    .scan(&lo[..]..&hi[..])
                    .expect("scan")
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                let base = self.model.range(&lo, &hi, at);
                let mut want: BTreeMap<Key, Val> = base.iter().cloned().collect();
                for (k, v) in a.writes.range(lo.clone()..hi.clone()) {
                    match v {
                        Some(v) => want.insert(k.clone(), v.clone()),
                        None => want.remove(k),
                    };
                }
                if got != want.into_iter().collect::<Vec<_>>() {
                    self.fail(&format!("c{c} scan at snapshot {at} differs from the model"));
                }
                a.reads.push(Read::Scan(lo, hi, base));
                self.out.reads_checked += 1;
                self.event(format!("c{c} scan -> {} pairs", got.len()));
            }
            4..=7 => {
                // A put, or a read-modify-write of a counter-like value.
                let v = if self.rng.below(2) == 0 {
                    let old = a.txn.get(&k).expect("get").map(|v| v.to_vec());
                    if !a.writes.contains_key(&k) {
                        let want = self.model.get(&k, at).cloned();
                        if old != want {
                            self.fail(&format!(
                                "c{c} rmw read of {} differs from the model",
                                String::from_utf8_lossy(&k)
                            ));
                        }
                        a.reads.push(Read::Get(k.clone(), want));
                    }
                    let mut v = old.unwrap_or_default();
                    v.push(small(c as u64));
                    v.truncate(64);
                    v
                } else {
                    self.value()
                };
                match a.txn.put(&k, &v) {
                    Ok(()) => {
                        self.event(format!("c{c} put {} = {}", String::from_utf8_lossy(&k), show(Some(&v))));
                        a.writes.insert(k, Some(v));
                    }
                    Err(Error::TooLarge { .. }) => {
                        self.event(format!("c{c} put refused: the transaction is full"))
                    }
                    Err(e) => self.fail(&format!("c{c} put: {e}")),
                }
            }
            _ => match a.txn.delete(&k) {
                Ok(()) => {
                    self.event(format!("c{c} delete {}", String::from_utf8_lossy(&k)));
                    a.writes.insert(k, None);
                }
                Err(Error::TooLarge { .. }) => {
                    self.event(format!("c{c} delete refused: the transaction is full"))
                }
                Err(e) => self.fail(&format!("c{c} delete: {e}")),
            },
        }
    }

    fn commit(&mut self, db: &SimDb, client: &mut Client, c: usize, a: Active) -> bool {
        let durability = self.durability();
        let Active { txn, isolation, writes, reads, .. } = a;
        let commit = txn.commit_with(durability);
        let lsn = commit.lsn();
        self.event(format!("c{c} commit {durability:?} -> {lsn:?} ({} writes)", writes.len()));
        if let Some(l) = lsn {
            if writes.is_empty() {
                self.fail("a commit without writes was sequenced");
            }
            if let Err(e) = self.model.sequence(l, &writes, durability) {
                self.fail(&e);
            }
        }
        let p = Box::new(Pending { commit, lsn, isolation, reads, wrote: !writes.is_empty(), durability });
        let mut broken = false;
        self.poll(db, client, c, p, &mut broken);
        broken
    }

    /// Polls every committing client once.
    fn poll_all(&mut self, db: &SimDb, cs: &mut [Client], broken: &mut bool) {
        for (c, client) in cs.iter_mut().enumerate() {
            if let Client::Committing(_) = client {
                let Client::Committing(p) = std::mem::replace(client, Client::Idle) else { unreachable!() };
                self.poll(db, client, c, p, broken);
            }
        }
    }

    /// Polls a commit once; on its outcome, checks it.
    fn poll(&mut self, db: &SimDb, client: &mut Client, c: usize, mut p: Box<Pending>, broken: &mut bool) {
        let r = match Pin::new(&mut p.commit).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => {
                *client = Client::Committing(p);
                return;
            }
            Poll::Ready(r) => r,
        };
        match (r, p.lsn) {
            (Ok(l), Some(lsn)) => {
                if l != lsn {
                    self.fail(&format!("c{c} commit resolved to {l}, sequenced at {lsn}"));
                }
                if db.visible_lsn() < l {
                    self.fail(&format!("c{c} commit {l} acknowledged before visible ({})", db.visible_lsn()));
                }
                if matches!(p.durability, Durability::Sync) && db.stats().wal.durable_lsn < l {
                    self.fail(&format!("c{c} Sync commit {l} acknowledged before durable"));
                }
                if p.isolation == Isolation::Serializable && p.wrote {
                    self.check_serial(&p.reads, l, c);
                }
                self.model.commits.get_mut(&l).expect("sequenced").acked = true;
                self.out.commits_acked += 1;
                self.event(format!("c{c} ack {l}"));
            }
            (Ok(l), None) => self.event(format!("c{c} read-only commit at {l}")),
            (Err(Error::Conflict { reason, .. }), None) => {
                self.out.conflicts += 1;
                self.event(format!("c{c} conflict: {reason}"));
            }
            (Err(e), lsn) => {
                // A failed commit says whether it reached the log: unknown exactly when it did.
                if matches!(e, Error::CommitUnknown { .. }) != lsn.is_some() {
                    self.fail(&format!("c{c} commit {lsn:?} failed with {e}: the wrong outcome"));
                }
                if let Some(l) = lsn {
                    self.model.commits.get_mut(&l).expect("sequenced").failed = true;
                    self.out.commits_failed += 1;
                }
                self.fault(&format!("c{c} commit {lsn:?}"), &e);
                *broken = true;
            }
        }
    }

    /// Invariant 4: what a serializable transaction read from its snapshot is what the serial
    /// execution in LSN order reads just before its commit LSN.
    fn check_serial(&mut self, reads: &[Read], lsn: Lsn, c: usize) {
        let before = Lsn(lsn.0 - 1);
        for r in reads {
            let same = match r {
                Read::Get(k, v) => self.model.get(k, before) == v.as_ref(),
                Read::Scan(lo, hi, pairs) => self.model.range(lo, hi, before) == *pairs,
            };
            if !same {
                self.fail(&format!(
                    "c{c} committed at {lsn} after reading {r:?}, changed since its snapshot"
                ));
            }
        }
    }
}

/// Which seeds inject faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultPlan {
    /// About one seed in three (each seed decides).
    #[default]
    Mixed,
    /// None: only crashes (and silent corruption before the last recovery).
    Never,
    /// Every seed.
    Always,
}

/// How to run a seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeedOptions {
    /// Which seeds inject faults.
    pub faults: FaultPlan,
    /// Print every event to stderr.
    pub verbose: bool,
}

/// A seed that broke an invariant (or panicked).
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub what: String,
    /// The last events before it.
    pub events: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation failed: seed {}: {}", self.seed, self.what)?;
        writeln!(f, "  replay: WALDB_SIM_SEED={} cargo test --features sim --test sim db_sim", self.seed)?;
        writeln!(f, "      or: cargo run --features sim -- sim --from {} --seeds 1 --verbose", self.seed)?;
        write!(f, "  last events:")?;
        for e in &self.events {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// How many events a failure reports.
const EVENTS_KEPT: usize = 40;

/// Runs one seed: `Ok` with what it did, or the invariant it broke. A panic inside the
/// database is a failure too.
///
/// # Errors
///
/// The [`Failure`], with the commands that replay it.
pub fn run_seed(seed: u64, options: SeedOptions) -> Result<Outcome, Failure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed, options))) {
        Ok(outcome) => Ok(outcome),
        Err(payload) => match payload.downcast::<Failure>() {
            Ok(failure) => Err(*failure),
            Err(payload) => {
                let text = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned());
                Err(Failure { seed, what: format!("panicked: {text}"), events: Vec::new() })
            }
        },
    }
}

fn run(seed: u64, seed_options: SeedOptions) -> Outcome {
    let mut rng = SimRng::new(seed);
    let faulty = match seed_options.faults {
        FaultPlan::Mixed => rng.below(3) == 0,
        FaultPlan::Never => false,
        FaultPlan::Always => true,
    };
    let durability = match rng.below(3) {
        0 | 1 => Durability::Sync,
        _ => Durability::Buffered { every: Duration::from_millis(5) },
    };
    let sector_bytes = if rng.below(2) == 0 { 512 } else { 4096 };
    let disk = SimDisk::with_config(rng.next_u64(), SimConfig { sector_bytes, ..SimConfig::default() });
    disk.set_faults(SimFaults { failed_sync_drops_writes: rng.below(2) == 0, ..SimFaults::default() });
    // Memtables of 512 B to 4 KiB, so that every seed freezes and flushes many times; one seed in
    // five keeps one memtable (flushed only by checkpoints). Drawn from a generator of its own,
    // so that the workload's draws stay those of earlier releases.
    let memtable_draw = SimRng::new(seed ^ 0x6d65_6d74_6162_6c65).below(5);
    // Half the seeds write LZ4-compressed tables (and values that compress), drawn the same way.
    let compression = if SimRng::new(seed ^ 0x6c7a_345f_6472_6177).below(2) == 0 {
        Compression::Lz4
    } else {
        Compression::None
    };
    let options = DbOptions {
        durability,
        driver: Driver::Manual,
        segment_bytes: 8192 << rng.below(2),
        memtable_bytes: (memtable_draw < 4).then(|| 512 << memtable_draw),
        batch: BatchConfig {
            queue_records_max: 2 + small::<u32>(rng.below(16)),
            queue_bytes_max: 16 << 10,
            batch_records_max: 1 + small::<u32>(rng.below(8)),
            ..BatchConfig::default()
        },
        key_bytes_max: Some(64),
        value_bytes_max: Some(2048),
        txn_bytes_max: Some(6000),
        compression,
        ..DbOptions::default()
    };
    let clients = 1 + rng.below_usize(5);
    let lives = 1 + rng.below(4);
    let mut sim = Sim {
        seed,
        rng,
        disk,
        clock: SimClock::new(),
        options,
        model: Model::default(),
        events: VecDeque::new(),
        verbose: seed_options.verbose,
        hash: 0,
        out: Outcome::default(),
        faulty,
        durable_at_end: Lsn::ZERO,
        flipped: None,
    };
    sim.event(format!(
        "seed {seed}: {clients} clients, {lives} lives, faulty {faulty}, {durability:?}, {compression:?} tables"
    ));
    for life in 0..lives {
        sim.life(clients, life + 1 == lives);
    }
    // The last crash: after silent corruption (a bit flipped, writes misdirected), an open that
    // ends in `Ok` or a clear error (a flip in the log's last record reads as a torn tail, so no
    // acknowledged commit can be required), and after a bit flip a state that is a prefix or a
    // read that fails clearly; otherwise
    // recovery and the full check once more.
    sim.out.misdirected_writes = sim.disk.stats().misdirected_writes;
    if sim.out.bit_flips > 0 || sim.out.misdirected_writes > 0 {
        // The manifest is read whole and under checksums: a bit flipped in it must be refused,
        // naming it.
        let manifest = Path::new(DIR).join(crate::db::manifest::MANIFEST_FILE);
        let in_manifest = sim.out.misdirected_writes == 0 && sim.flipped.as_deref() == Some(&*manifest);
        match sim.open() {
            Ok(_) if in_manifest => {
                sim.fail("a bit flipped in the manifest went unnoticed: the database opened")
            }
            Err(Error::Corrupt { file, .. }) if in_manifest && file != manifest => {
                sim.fail(&format!("a bit flipped in the manifest was reported in {}", file.display()));
            }
            Ok((db, _)) => {
                // Writes stored at the wrong offset can land where a valid record of the past
                // was: only a bit flip is held to a prefix.
                if sim.out.misdirected_writes == 0 {
                    sim.check_state_after_corruption(&db);
                }
                db.close().map(|_| ()).unwrap_or_else(|e| sim.event(format!("close: {e}")));
            }
            // The damage must be named: a flipped bit in any file is under a checksum, so
            // the error says corrupt (an I/O error, say a table not found, means a damaged
            // file was believed).
            Err(e) if sim.out.misdirected_writes == 0 && !e.is_corrupt() => {
                sim.fail(&format!("after a bit flip the open failed without naming the damage: {e}"));
            }
            Err(_) => sim.out.corrupt_opens += 1,
        }
    } else {
        match sim.recover("after the last crash") {
            Ok(db) => {
                if let Err(e) = db.close() {
                    sim.fail(&format!("close without faults: {e}"));
                }
            }
            Err(e) => sim.fail(&format!("the database does not open after the last crash: {e}")),
        }
    }
    sim.out.trace_hash = sim.hash ^ sim.disk.trace_hash().rotate_left(1);
    sim.out.disk = sim.disk.stats();
    sim.out
}
