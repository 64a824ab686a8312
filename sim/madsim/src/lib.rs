//! waldb's async API under madsim's deterministic scheduler, with node kill and restart, over
//! waldb's own [`SimDisk`] (madsim's filesystem has no durability model: its `sync_all` does
//! nothing and it has no directories, renames or power failure).
//!
//! This crate builds only with `--cfg madsim`, which `.cargo/config.toml` in this directory
//! sets; run it from here: `cd sim/madsim && cargo test`. Its target directory is
//! `target/madsim` at the repository root.
//!
//! # What a seed does
//!
//! One madsim runtime per seed (its scheduler and its clock follow the seed) runs one node,
//! `db`. The node's software opens the database on a [`NodeDisk`] over the seed's `SimDisk`
//! with a [`MadsimClock`] (madsim's virtual time), checks what it recovered, and then runs, as
//! madsim tasks (the log's driver is `Manual`: no thread may run under madsim):
//!
//! - the log's flusher, one step per millisecond of virtual time;
//! - 2 to 4 writers committing transactions with `.await`: each writes 1 to 6 keys of its own,
//!   `Sync` or `Buffered`, and one in four also increments a shared counter under
//!   `Serializable` isolation (read, then write: these conflict);
//! - a reader that takes snapshots and checks them;
//! - a checkpointer on some seeds.
//!
//! The supervisor lets each life run for a random span of virtual time, then crashes the disk
//! (unsynced writes lost, kept or torn at 512 B or 4 KiB; unsynced directory operations may be
//! lost) and kills and restarts the node at that instant. On some seeds the disk injects EIO on
//! writes, syncs and directory syncs, a failed sync drops the writes it covered, and the disk
//! fills up. After the last life the supervisor crashes the disk once more and checks the
//! recovered state itself; on some seeds it then flips a bit of a durable file and requires
//! recovery to end in `Ok` or a clear error, never a panic.
//!
//! # The checks
//!
//! Those of [`waldb::sim::history`], shared with the turmoil harness. Every commit's LSN is
//! recorded when it is sequenced, before the first `.await`, so a commit whose outcome is an
//! error is placed in the commit order from the start. At every start of the node, and at the
//! end:
//!
//! 1. every acknowledged `Sync` transaction is present, and every transaction an earlier
//!    recovery found;
//! 2. every transaction present is whole (all its keys);
//! 3. the state is a prefix of the commit order: every transaction sequenced at or below the
//!    highest LSN present is present, and no transaction that was never sequenced, or was lost
//!    at an earlier crash, is present;
//! 4. the counter equals the number of increments present (no lost update, no torn one).
//!
//! While the node runs, every snapshot the reader takes holds every transaction acknowledged
//! (or recovered) before it began, each whole, and a counter equal to the increments it sees;
//! and an acknowledged commit is visible at once to the writer that made it.
//!
//! A seed is deterministic: run twice, it makes the same calls in the same order, so the
//! disk's trace hash is the same ([`Outcome::trace_hash`]).

#![cfg_attr(
    not(madsim),
    allow(unused, reason = "without --cfg madsim only the compile error below is reported")
)]

#[cfg(not(madsim))]
compile_error!(
    "waldb-madsim needs `--cfg madsim`: run cargo from sim/madsim, whose .cargo/config.toml sets it"
);

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use waldb::db::{DbOptions, Pair};
use waldb::sim::history::History;
use waldb::sim::workload::{self, Counts, Observer, Runtime, Timing, scan_all};
use waldb::sim::{FaultOp, SimConfig, SimDisk, SimFaults, SimFile, SimRng};
use waldb::wal::Driver;
use waldb::{Clock, Db, Disk, DiskFile, OpenMode};

const DIR: &str = "/db";

/// A node's view of the shared [`SimDisk`]: every call fails once the node has been killed, so
/// the killed incarnation's destructors (a `Db` dropped with its tasks) do no I/O — as after a
/// power cut — and cannot touch the disk the next incarnation uses.
#[derive(Clone, Debug)]
pub struct NodeDisk {
    disk: SimDisk,
    alive: Arc<AtomicBool>,
}

/// A file of [`NodeDisk`].
#[derive(Debug)]
pub struct NodeFile {
    file: SimFile,
    alive: Arc<AtomicBool>,
}

fn live(alive: &AtomicBool) -> io::Result<()> {
    if alive.load(SeqCst) { Ok(()) } else { Err(io::Error::other("the node was killed")) }
}

impl Disk for NodeDisk {
    type File = NodeFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<NodeFile> {
        live(&self.alive)?;
        Ok(NodeFile { file: self.disk.open(path, mode)?, alive: Arc::clone(&self.alive) })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        self.disk.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        live(&self.alive)?;
        self.disk.list_dir(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        live(&self.alive).is_ok() && self.disk.is_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        live(&self.alive)?;
        self.disk.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        self.disk.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        self.disk.sync_dir(path)
    }
}

impl DiskFile for NodeFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        live(&self.alive)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        live(&self.alive)?;
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        live(&self.alive)?;
        self.file.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        live(&self.alive)?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        live(&self.alive)?;
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        live(&self.alive)?;
        self.file.sync_all()
    }

    fn try_lock(&self) -> io::Result<bool> {
        live(&self.alive)?;
        self.file.try_lock()
    }
}

/// waldb's `Clock` on madsim's virtual time (madsim virtualises `std::time::Instant`).
#[derive(Clone, Copy, Debug)]
pub struct MadsimClock {
    epoch: madsim::time::Instant,
}

impl MadsimClock {
    /// A clock at zero now.
    pub fn new() -> Self {
        MadsimClock { epoch: madsim::time::Instant::now() }
    }
}

impl Default for MadsimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MadsimClock {
    fn now(&self) -> Duration {
        madsim::time::Instant::now().duration_since(self.epoch)
    }

    fn sleep(&self, _duration: Duration) {
        // Only the log's `linger` sleeps, and it is zero here: a blocking wait cannot advance
        // madsim's clock, which moves only when every task waits.
        unreachable!("MadsimClock cannot block; run with linger = 0")
    }
}

/// What the supervisor and the node's incarnations share.
struct Shared {
    seed: u64,
    disk: SimDisk,
    /// What was committed, and the checks against it.
    history: History,
    /// The running incarnation's liveness, cleared when it is killed.
    alive: Option<Arc<AtomicBool>>,
    checkpoints: bool,
    /// The start of the run in virtual time, for the event log.
    started: madsim::time::Instant,
    failure: Option<String>,
    events: VecDeque<String>,
    out: Outcome,
}

/// What a seed did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Starts of the node software (including those whose open failed).
    pub starts: u64,
    /// Opens that failed with an error (an injected fault).
    pub open_errors: u64,
    /// Crashes of the disk, each with a kill of the node.
    pub crashes: u64,
    /// What the workload's tasks did: acknowledged, unknown and conflicting commits, snapshots
    /// and checkpoints.
    pub work: Counts,
    /// Recoveries checked against the history (node starts and the final one).
    pub recoveries_checked: u64,
    /// Transactions found present by the final check.
    pub present: u64,
    /// EIO injected on writes, syncs and directory syncs, and disk-full errors.
    pub faults_injected: u64,
    /// Opens after a bit flip that ended in an error (the rest recovered).
    pub corrupt_opens_refused: u64,
    /// The disk's trace hash at the end: equal for two runs of one seed.
    pub trace_hash: u64,
}

impl Outcome {
    /// Adds `o` to these totals (the trace hash is folded in).
    pub fn add(&mut self, o: &Outcome) {
        self.starts += o.starts;
        self.open_errors += o.open_errors;
        self.crashes += o.crashes;
        self.work.add(&o.work);
        self.recoveries_checked += o.recoveries_checked;
        self.present += o.present;
        self.faults_injected += o.faults_injected;
        self.corrupt_opens_refused += o.corrupt_opens_refused;
        self.trace_hash = self.trace_hash.rotate_left(5) ^ o.trace_hash;
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    const EVENTS_MAX: usize = 40;

    fn event(&mut self, e: String) {
        if self.events.len() == Self::EVENTS_MAX {
            self.events.pop_front();
        }
        let at = madsim::time::Instant::now().duration_since(self.started);
        self.events.push_back(format!("{:>9.3} ms  {e}", at.as_secs_f64() * 1e3));
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.event(format!("FAILED: {what}"));
            self.failure = Some(what);
        }
    }
}

fn options() -> DbOptions {
    DbOptions::default()
        .with_driver(Driver::Manual)
        .with_segment_bytes(64 << 10)
        .with_key_bytes_max(Some(64))
        .with_value_bytes_max(Some(1024))
        .with_txn_bytes_max(Some(16 << 10))
        .with_memtable_bytes(None)
}

/// Checks a recovered state against the history (invariants 1–4 of the module docs).
fn check_recovered(s: &mut Shared, pairs: &[Pair]) -> Result<u64, String> {
    let n = s.history.check_recovered(pairs)?;
    s.out.recoveries_checked += 1;
    Ok(n)
}

/// The node's software: open, check, then run the flusher, writers, reader and checkpointer
/// until killed (or until the log fails).
async fn node(shared: Arc<Mutex<Shared>>) {
    let alive = Arc::new(AtomicBool::new(true));
    let (disk, start, seed, checkpoints) = {
        let mut s = lock(&shared);
        s.out.starts += 1;
        s.alive = Some(Arc::clone(&alive));
        (s.disk.clone(), s.out.starts, s.seed, s.checkpoints)
    };
    let faults_before = injected(&disk);
    let node_disk = NodeDisk { disk: disk.clone(), alive };
    let db = match Db::open_with(node_disk, MadsimClock::new(), Path::new(DIR), options()) {
        Ok((db, _)) => db,
        Err(e) => {
            let mut s = lock(&shared);
            if injected(&disk) == faults_before {
                return s.fail(format!("start {start}: open failed with no fault injected: {e}"));
            }
            s.out.open_errors += 1;
            s.event(format!("start {start}: open failed on an injected fault: {e}"));
            return;
        }
    };
    {
        let mut s = lock(&shared);
        let checked =
            scan_all(&db).map_err(|e| e.to_string()).and_then(|pairs| check_recovered(&mut s, &pairs));
        match checked {
            Ok(n) => s.event(format!("start {start}: recovered {n} transactions, checked")),
            Err(e) => return s.fail(format!("start {start}: {e}")),
        }
    }
    let mut rng = SimRng::new(seed ^ start.rotate_left(32));
    let flusher = {
        let (db, shared) = (db.clone(), Arc::clone(&shared));
        madsim::task::spawn(async move {
            loop {
                match db.flush_step().and_then(|_| db.prepare_step()) {
                    Ok(_) => madsim::time::sleep(Duration::from_millis(1)).await,
                    // A fault or the kill poisons the log; a panic in its step is a bug (an
                    // assertion of the step's, or a planted bug's).
                    Err(e) => {
                        if e.is_panic() {
                            lock(&shared).fail(format!("start {start}: the log's step panicked: {e}"));
                        }
                        return;
                    }
                }
            }
        })
    };
    let reader = madsim::task::spawn(workload::reader(
        db.clone(),
        Arc::clone(&shared),
        MadsimTime,
        timing(),
        rng.next_u64(),
    ));
    let checkpointer = checkpoints.then(|| {
        madsim::task::spawn(workload::checkpointer(
            db.clone(),
            Arc::clone(&shared),
            MadsimTime,
            rng.next_u64(),
        ))
    });
    let writers: Vec<_> = (0..2 + rng.below(3))
        .map(|w| {
            let prefix = format!("{start}.{w}");
            madsim::task::spawn(workload::writer(
                db.clone(),
                Arc::clone(&shared),
                MadsimTime,
                timing(),
                prefix,
                rng.next_u64(),
            ))
        })
        .collect();
    for w in writers {
        let _ = w.await;
    }
    // The log failed (every writer stopped on its error): the process ends, and is restarted
    // at the next crash.
    flusher.abort();
    reader.abort();
    if let Some(c) = checkpointer {
        c.abort();
    }
}

/// The workload's view of the harness: madsim's virtual time.
#[derive(Clone, Copy)]
struct MadsimTime;

impl Runtime for MadsimTime {
    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send {
        madsim::time::sleep(duration)
    }
}

impl Observer for Shared {
    fn history(&mut self) -> &mut History {
        &mut self.history
    }

    fn counts(&mut self) -> &mut Counts {
        &mut self.out.work
    }

    fn event(&mut self, event: String) {
        Shared::event(self, event);
    }

    fn fail(&mut self, what: String) {
        Shared::fail(self, what);
    }
}

/// The pauses of the workload here: a conflict window of 1.5 ms, a snapshot every 0.5–5 ms.
fn timing() -> Timing {
    Timing::new(Duration::from_micros(1500), Duration::from_micros(500))
}

/// The disk's faults for one life: none, or EIO on writes, syncs and directory syncs at small
/// probabilities, and on some lives a capacity a little above what is used now.
fn faults_for_life(rng: &mut SimRng, disk: &SimDisk) -> SimFaults {
    match rng.below(4) {
        0 | 1 => SimFaults::default(),
        n => {
            let mut p = [0.0; 4];
            p[FaultOp::Write.index()] = 0.002;
            p[FaultOp::Sync.index()] = 0.01;
            p[FaultOp::SyncDir.index()] = 0.01;
            let capacity = (n == 3).then(|| disk.used_bytes() + (64 << 10) * (1 + rng.below(8)));
            SimFaults::default().with_io_error_probability(p).with_capacity_bytes(capacity)
        }
    }
}

fn injected(disk: &SimDisk) -> u64 {
    let st = disk.stats();
    st.io_errors.iter().sum::<u64>() + st.storage_full
}

/// The supervisor: lives of the node ended by crashes, then the final check.
async fn supervise(seed: u64, shared: Arc<Mutex<Shared>>) {
    let handle = madsim::runtime::Handle::current();
    let node = {
        let shared = Arc::clone(&shared);
        handle.create_node().name("db").init(move || node(Arc::clone(&shared))).build()
    };
    let disk = lock(&shared).disk.clone();
    let mut rng = SimRng::new(seed.rotate_left(17));
    let lives = 2 + rng.below(4);
    for life in 0..lives {
        let faults = faults_for_life(&mut rng, &disk);
        let span = Duration::from_millis(5 + rng.below(200));
        lock(&shared).event(format!("life {life}: {span:?}, faults {faults:?}"));
        disk.set_faults(faults);
        madsim::time::sleep(span).await;
        // The crash and the kill happen at one instant: no node task runs while the
        // supervisor does.
        let mut s = lock(&shared);
        if let Some(alive) = s.alive.take() {
            alive.store(false, SeqCst);
        }
        disk.set_faults(SimFaults::default());
        disk.crash();
        s.out.crashes += 1;
        s.event("crash".into());
        drop(s);
        handle.restart(node.id());
        if lock(&shared).failure.is_some() {
            return;
        }
    }
    // Let the last start run its check, then end the node and crash once more.
    madsim::time::sleep(Duration::from_millis(rng.below(20))).await;
    handle.kill(node.id());
    let mut s = lock(&shared);
    if s.failure.is_some() {
        return;
    }
    if let Some(alive) = s.alive.take() {
        alive.store(false, SeqCst);
    }
    disk.crash();
    s.out.crashes += 1;
    s.out.faults_injected = injected(&disk);
    let opened = Db::open_with(disk.clone(), waldb::SimClock::new(), Path::new(DIR), options());
    let checked = opened.map_err(|e| format!("the final open failed: {e}")).and_then(|(db, _)| {
        let pairs = db.scan(..).unwrap();
        let n = check_recovered(&mut s, &pairs);
        drop(db);
        n
    });
    match checked {
        Ok(n) => s.out.present = n,
        Err(e) => return s.fail(format!("final recovery: {e}")),
    }
    // Corruption at rest on some seeds: one bit of one durable file flipped; the open must end
    // in `Ok` or a clear error, never a panic.
    if rng.below(4) == 0 {
        disk.crash();
        let files = disk.list_dir(Path::new(DIR)).unwrap_or_default();
        if !files.is_empty() {
            let file = Path::new(DIR).join(&files[rng.below_usize(files.len())]);
            let len = disk.open(&file, OpenMode::Read).and_then(|f| f.len()).unwrap_or(0);
            if len > 0 && disk.flip_bit(&file, rng.below(len), 0).is_ok() {
                let r = Db::open_with(disk.clone(), waldb::SimClock::new(), Path::new(DIR), options());
                s.event(format!(
                    "bit flipped in {}: open {}",
                    file.display(),
                    if r.is_ok() { "ok" } else { "refused" }
                ));
                if r.is_err() {
                    s.out.corrupt_opens_refused += 1;
                }
            }
        }
    }
    s.out.trace_hash = disk.trace_hash();
}

/// A seed's failure: the seed, what broke, the command that replays it, and the last events.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The message, with the replay command and the last events.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs one seed.
///
/// # Errors
///
/// The first broken invariant, as a [`Failure`].
pub fn run_seed(seed: u64) -> Result<Outcome, Failure> {
    let mut rng = SimRng::new(seed);
    let config = SimConfig::default().with_sector_bytes(if rng.below(2) == 0 { 512 } else { 4096 });
    let shared = Arc::new(Mutex::new(Shared {
        seed,
        disk: SimDisk::with_config(seed, config),
        history: History::default(),
        alive: None,
        checkpoints: rng.below(2) == 0,
        started: madsim::time::Instant::now(),
        failure: None,
        events: VecDeque::new(),
        out: Outcome::default(),
    }));
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(Duration::from_secs(3600));
    runtime.block_on(async {
        lock(&shared).started = madsim::time::Instant::now();
        supervise(seed, Arc::clone(&shared)).await;
    });
    drop(runtime);
    let s = lock(&shared);
    match &s.failure {
        None => Ok(s.out.clone()),
        Some(what) => {
            let events: Vec<&str> = s.events.iter().map(String::as_str).collect();
            Err(Failure {
                seed,
                message: format!(
                    "madsim: seed {seed}: {what}\n  replay: cd sim/madsim && WALDB_SIM_SEED={seed} cargo test --test madsim\n  last events:\n    {}",
                    events.join("\n    ")
                ),
            })
        }
    }
}
