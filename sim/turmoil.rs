//! The async API on a turmoil host, over turmoil's simulated filesystem (feature `turmoil`): a
//! second, independent model of durability. turmoil's fs keeps writes, creates, renames and
//! removes pending until `sync_all`/`sync_data` or a directory sync; a crash drops what is
//! pending, tears pending writes at `block_size` (512 B here) and may have flushed some early
//! (`sync_probability`). On top of it, [`TurmoilDisk`] injects EIO on writes, syncs and
//! directory syncs, and a disk that fills up, on some lives.
//!
//! Each seed runs one host, `db`, whose software opens the database on [`TurmoilDisk`] with a
//! [`TokioClock`] (tokio's virtual time), checks what it recovered, and runs as tokio tasks
//! (under turmoil a thread would survive a crash and see no virtual time):
//!
//! - the log's flusher (the `Manual` driver), one step per millisecond of virtual time;
//! - three writers committing transactions with `.await`: each writes 1 to 6 keys of its own,
//!   `Sync` or `Buffered`, and one in four also increments a shared counter under
//!   `Serializable` isolation (read, then write: these conflict);
//! - a reader that takes snapshots and checks them;
//! - a checkpointer on some seeds.
//!
//! The test crashes and bounces the host at seeded steps. The checks are those of
//! [`waldb::sim::history`], shared with the madsim harness: at every start, every acknowledged
//! `Sync` transaction (and every one an earlier start found) is present, every transaction is
//! whole, the state is a prefix of the commit order, and the counter equals its increments;
//! every snapshot holds what was settled before it; an acknowledged commit is visible at once
//! to its writer; an open fails only on an injected fault. The last start has no faults and
//! must check. Each seed is deterministic: run twice, it does the same.
//!
//! `WALDB_SIM_TURMOIL_SEEDS=N` (default 40) widens it; `WALDB_SIM_SEED=S` runs one seed.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use turmoil::fs::shim::std::fs as tfs;
use waldb::db::DbOptions;
use waldb::sim::SimRng;
use waldb::sim::history::History;
use waldb::sim::workload::{self, Counts, Observer, Runtime, Timing, scan_all};
use waldb::wal::Driver;
use waldb::{Clock, Db, Disk, DiskFile, OpenMode};

use crate::support::seeds;

/// waldb's `Disk` over turmoil's simulated filesystem (the calling host's). `alive` is
/// cleared when the host crashes: the dying process's destructors (a `Db` dropped with its
/// tasks) then do no I/O at all, as after a power cut — and do not reach turmoil outside its
/// context. `faults` are the life's injected errors, which the test sets.
///
/// turmoil's file handles name their file by path, and a rename does not move them: a handle
/// opened before a rename would sync a name that no longer exists (`NotFound`), where a POSIX
/// descriptor follows its file. waldb prepares each log segment under a temporary name and
/// renames it, so `rename` here reopens the open handles of the old name at the new one.
#[derive(Clone, Debug)]
pub struct TurmoilDisk {
    alive: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    handles: Arc<Mutex<Vec<Weak<Handle>>>>,
}

/// An open turmoil file and the path it is open at (moved by renames).
#[derive(Debug)]
struct Handle {
    file: Mutex<(PathBuf, tfs::File)>,
}

/// A file of [`TurmoilDisk`].
pub struct TurmoilFile {
    handle: Arc<Handle>,
    alive: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
}

impl TurmoilDisk {
    fn new(alive: Arc<AtomicBool>, faults: Arc<Mutex<Faults>>) -> Self {
        TurmoilDisk { alive, faults, handles: Arc::default() }
    }
}

impl TurmoilFile {
    fn with<T>(&self, f: impl FnOnce(&tfs::File) -> io::Result<T>) -> io::Result<T> {
        live(&self.alive)?;
        f(&lock(&self.handle.file).1)
    }
}

fn live(alive: &AtomicBool) -> io::Result<()> {
    if alive.load(SeqCst) { Ok(()) } else { Err(io::Error::other("the host has crashed")) }
}

/// The operations [`Faults`] may fail.
#[derive(Clone, Copy, Debug)]
enum FaultOp {
    Write,
    Sync,
    SyncDir,
}

/// The errors one life of the host gets, on top of turmoil's crash model: EIO on writes,
/// syncs and directory syncs at small probabilities, and a disk that fills up. A failed write
/// writes nothing; a failed sync syncs nothing (its writes stay pending, to be lost, kept or
/// torn by the next crash); a write past the room left lands in part, then fails with
/// `StorageFull`. Every choice comes from the life's seeded generator, and turmoil runs the
/// host on the test's thread, so a seed makes the same choices every run.
#[derive(Debug, Default)]
struct Faults {
    /// `None`: no faults this life.
    rng: Option<SimRng>,
    /// EIO probabilities of writes, syncs and directory syncs.
    p: [f64; 3],
    /// Bytes that may still be written before the disk is full (`None`: no limit).
    room: Option<u64>,
    /// Errors injected so far, over all lives.
    injected: u64,
}

impl Faults {
    /// Fails `op` (a write of `bytes`, for writes) or lets it run; `Ok(n)` lets the first `n`
    /// bytes of a write land before `StorageFull`.
    fn check(&mut self, op: FaultOp, bytes: usize) -> io::Result<Option<usize>> {
        let Some(rng) = &mut self.rng else { return Ok(None) };
        if rng.chance(self.p[op as usize]) {
            self.injected += 1;
            return Err(io::Error::other(format!("injected EIO on {op:?}")));
        }
        if let (FaultOp::Write, Some(room)) = (op, &mut self.room) {
            let n = bytes as u64;
            if n > *room {
                let landed = usize::try_from(*room).unwrap_or(bytes);
                *room = 0;
                self.injected += 1;
                return Ok(Some(landed));
            }
            *room -= n;
        }
        Ok(None)
    }
}

fn inject(faults: &Mutex<Faults>, op: FaultOp, bytes: usize) -> io::Result<Option<usize>> {
    faults.lock().unwrap_or_else(|e| e.into_inner()).check(op, bytes)
}

impl Disk for TurmoilDisk {
    type File = TurmoilFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<TurmoilFile> {
        live(&self.alive)?;
        let mut options = tfs::OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let handle = Arc::new(Handle { file: Mutex::new((path.to_owned(), options.open(path)?)) });
        let mut handles = lock(&self.handles);
        handles.retain(|h| h.strong_count() > 0);
        handles.push(Arc::downgrade(&handle));
        Ok(TurmoilFile { handle, alive: Arc::clone(&self.alive), faults: Arc::clone(&self.faults) })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        tfs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        live(&self.alive)?;
        let mut names = Vec::new();
        for entry in tfs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        live(&self.alive).is_ok() && tfs::metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        live(&self.alive)?;
        tfs::rename(from, to)?;
        for handle in lock(&self.handles).iter().filter_map(Weak::upgrade) {
            let mut file = lock(&handle.file);
            if file.0 == from {
                *file = (to.to_owned(), tfs::OpenOptions::new().read(true).write(true).open(to)?);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        tfs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        inject(&self.faults, FaultOp::SyncDir, 0)?;
        tfs::sync_dir(path)
    }
}

impl DiskFile for TurmoilFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|f| std::os::unix::fs::FileExt::read_exact_at(f, buf, offset))
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        live(&self.alive)?;
        if let Some(landed) = inject(&self.faults, FaultOp::Write, buf.len())? {
            self.with(|f| std::os::unix::fs::FileExt::write_all_at(f, &buf[..landed], offset))?;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "injected disk full"));
        }
        self.with(|f| std::os::unix::fs::FileExt::write_all_at(f, buf, offset))
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|f| Ok(f.metadata()?.len()))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|f| f.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        live(&self.alive)?;
        inject(&self.faults, FaultOp::Sync, 0)?;
        self.with(tfs::File::sync_data)
    }

    fn sync_all(&self) -> io::Result<()> {
        live(&self.alive)?;
        inject(&self.faults, FaultOp::Sync, 0)?;
        self.with(tfs::File::sync_all)
    }

    fn try_lock(&self) -> io::Result<bool> {
        // turmoil has no file locks; one host runs one process, which opens the database once.
        Ok(true)
    }
}

/// waldb's `Clock` on tokio's virtual time inside a turmoil host.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Self {
        TokioClock { epoch: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.epoch)
    }

    fn sleep(&self, _duration: Duration) {
        // Only the log's `linger` sleeps, and it is zero here: a blocking wait cannot advance a
        // single-threaded virtual clock.
        unreachable!("TokioClock cannot block; run with linger = 0")
    }
}

/// What the test and the host share.
struct Shared {
    seed: u64,
    /// What was committed, and the checks against it.
    history: History,
    /// The running host's liveness, cleared by the test when it crashes the host.
    alive: Option<Arc<AtomicBool>>,
    /// The faults of the current life, set by the test.
    faults: Arc<Mutex<Faults>>,
    checkpoints: bool,
    failure: Option<String>,
    events: VecDeque<String>,
    out: Outcome,
}

impl Shared {
    const EVENTS_MAX: usize = 40;

    /// An event of the host, at the host's virtual time.
    fn event(&mut self, e: String) {
        self.event_at(turmoil::sim_elapsed().unwrap_or_default(), e);
    }

    /// An event at virtual time `at` (of the test, which is outside any host).
    fn event_at(&mut self, at: Duration, e: String) {
        if self.events.len() == Self::EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(format!("{:>9.3} ms  {e}", at.as_secs_f64() * 1e3));
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.event(format!("FAILED: {what}"));
            self.failure = Some(what);
        }
    }

    fn injected(&self) -> u64 {
        lock(&self.faults).injected
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a seed did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Starts of the host software (including those whose open failed).
    starts: u64,
    /// Opens that failed on an injected fault.
    open_errors: u64,
    crashes: u64,
    /// Recoveries checked against the history.
    recoveries_checked: u64,
    /// What the workload's tasks did.
    work: Counts,
    /// EIO and disk-full errors injected.
    faults_injected: u64,
    /// Transactions present at the last start.
    present: u64,
}

impl Outcome {
    fn add(&mut self, o: &Outcome) {
        self.starts += o.starts;
        self.open_errors += o.open_errors;
        self.crashes += o.crashes;
        self.recoveries_checked += o.recoveries_checked;
        self.work.add(&o.work);
        self.faults_injected += o.faults_injected;
        self.present += o.present;
    }
}

const DIR: &str = "/db";

fn options() -> DbOptions {
    DbOptions::default()
        .with_driver(Driver::Manual)
        .with_segment_bytes(64 << 10)
        .with_key_bytes_max(Some(64))
        .with_value_bytes_max(Some(1024))
        .with_txn_bytes_max(Some(16 << 10))
        .with_memtable_bytes(None)
}

/// The host's software: open, check, then run the flusher, writers, reader and checkpointer
/// until crashed (or until the log fails).
async fn host(shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    let alive = Arc::new(AtomicBool::new(true));
    let (start, seed, checkpoints, faults) = {
        let mut s = lock(&shared);
        s.out.starts += 1;
        s.alive = Some(Arc::clone(&alive));
        (s.out.starts, s.seed, s.checkpoints, Arc::clone(&s.faults))
    };
    let faults_before = lock(&faults).injected;
    let disk = TurmoilDisk::new(alive, Arc::clone(&faults));
    let db = match Db::open_with(disk, TokioClock::new(), Path::new(DIR), options()) {
        Ok((db, _)) => db,
        Err(e) => {
            let mut s = lock(&shared);
            if s.injected() == faults_before {
                s.fail(format!("start {start}: open failed with no fault injected: {e}"));
            } else {
                s.out.open_errors += 1;
                s.event(format!("start {start}: open failed on an injected fault: {e}"));
            }
            return Ok(());
        }
    };
    {
        let mut s = lock(&shared);
        let checked =
            scan_all(&db).map_err(|e| e.to_string()).and_then(|pairs| s.history.check_recovered(&pairs));
        match checked {
            Ok(n) => {
                s.out.recoveries_checked += 1;
                s.out.present = n;
                s.event(format!("start {start}: recovered {n} transactions, checked"));
            }
            Err(e) => {
                s.fail(format!("start {start}: {e}"));
                return Ok(());
            }
        }
    }
    let mut rng = SimRng::new(seed ^ start.rotate_left(32));
    let flusher = {
        let db = db.clone();
        tokio::spawn(async move {
            while db.flush_step().is_ok() && db.prepare_step().is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let reader =
        tokio::spawn(workload::reader(db.clone(), Arc::clone(&shared), TokioTime, timing(), rng.next_u64()));
    let checkpointer = checkpoints.then(|| {
        tokio::spawn(workload::checkpointer(db.clone(), Arc::clone(&shared), TokioTime, rng.next_u64()))
    });
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let prefix = format!("{start}.{w}");
            tokio::spawn(workload::writer(
                db.clone(),
                Arc::clone(&shared),
                TokioTime,
                timing(),
                prefix,
                rng.next_u64(),
            ))
        })
        .collect();
    for w in writers {
        let _ = w.await;
    }
    // The log failed (every writer stopped on its error): the software ends, and is started
    // again at the next bounce.
    flusher.abort();
    reader.abort();
    if let Some(c) = checkpointer {
        c.abort();
    }
    Ok(())
}

/// The workload's view of the harness: tokio's virtual time inside a turmoil host.
#[derive(Clone, Copy)]
struct TokioTime;

impl Runtime for TokioTime {
    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep(duration)
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

/// The pauses of the workload here: a conflict window of 3 ms, a snapshot every 1–10 ms.
fn timing() -> Timing {
    Timing::new(Duration::from_micros(3000), Duration::from_micros(1000))
}

/// A life's faults: none on half the lives; else EIO on writes, syncs and directory syncs at
/// small probabilities, and on some a disk with 64 KiB to 512 KiB of room.
fn faults_for_life(rng: &mut SimRng, faults: &Mutex<Faults>) -> String {
    let mut f = lock(faults);
    match rng.below(4) {
        0 | 1 => {
            f.rng = None;
            "none".into()
        }
        n => {
            f.rng = Some(SimRng::new(rng.next_u64()));
            f.p = [0.002, 0.01, 0.01];
            f.room = (n == 3).then(|| (64 << 10) * (1 + rng.below(8)));
            format!("EIO {:?}, room {:?}", f.p, f.room)
        }
    }
}

fn step(sim: &mut turmoil::Sim<'_>, seed: u64) {
    sim.step().unwrap_or_else(|e| panic!("seed {seed}: the simulation failed: {e}"));
}

/// Crashes the host: first its liveness, so that its destructors do no I/O, then turmoil's
/// crash (pending writes lost, kept or torn).
fn crash(sim: &mut turmoil::Sim<'_>, shared: &Mutex<Shared>) {
    if let Some(alive) = lock(shared).alive.take() {
        alive.store(false, SeqCst);
    }
    sim.crash("db");
}

fn run_seed(seed: u64) -> Result<Outcome, String> {
    let mut rng = SimRng::new(seed);
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(Duration::from_millis(1));
    builder.fs().block_size(512).sync_probability(0.05 * rng.below(3) as f64);
    let mut sim = builder.build();
    let shared = Arc::new(Mutex::new(Shared {
        seed,
        history: History::default(),
        alive: None,
        faults: Arc::default(),
        checkpoints: rng.below(2) == 0,
        failure: None,
        events: VecDeque::new(),
        out: Outcome::default(),
    }));
    let faults = Arc::clone(&lock(&shared).faults);
    let first = faults_for_life(&mut rng, &faults);
    lock(&shared).event_at(Duration::ZERO, format!("life 0: faults {first}"));
    {
        let shared = Arc::clone(&shared);
        sim.host("db", move || host(Arc::clone(&shared)));
    }
    let lives = 2 + rng.below(4);
    for life in 1..=lives {
        for _ in 0..20 + rng.below(400) {
            step(&mut sim, seed);
        }
        crash(&mut sim, &shared);
        lock(&shared).out.crashes += 1;
        // The last life has no faults: its start must open and check.
        let plan = if life == lives {
            lock(&faults).rng = None;
            "none (the last life)".into()
        } else {
            faults_for_life(&mut rng, &faults)
        };
        lock(&shared).event_at(sim.elapsed(), format!("crash; life {life}: faults {plan}"));
        sim.bounce("db");
        if lock(&shared).failure.is_some() {
            break;
        }
    }
    // The last start checks the last crash.
    let checked = lock(&shared).out.recoveries_checked;
    for _ in 0..100 {
        if lock(&shared).out.recoveries_checked > checked || lock(&shared).failure.is_some() {
            break;
        }
        step(&mut sim, seed);
    }
    // The end of the simulation is the host's last crash: its destructors do no I/O.
    crash(&mut sim, &shared);
    drop(sim);
    let mut s = lock(&shared);
    s.out.faults_injected = s.injected();
    if s.failure.is_none() && s.out.recoveries_checked == checked {
        s.fail("the last start, with no faults, did not check its recovery".into());
    }
    match &s.failure {
        None => Ok(s.out.clone()),
        Some(what) => {
            let events: Vec<&str> = s.events.iter().map(String::as_str).collect();
            Err(format!(
                "turmoil: seed {seed}: {what}\n  replay: WALDB_SIM_SEED={seed} cargo test --features turmoil --test sim \
                 turmoil\n  last events:\n    {}",
                events.join("\n    ")
            ))
        }
    }
}

#[test]
fn turmoil_crash_and_bounce() {
    let seeds = seeds("WALDB_SIM_TURMOIL_SEEDS", 40);
    let started = std::time::Instant::now();
    let mut total = Outcome::default();
    for &seed in &seeds {
        let o = run_seed(seed).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(o.starts, o.crashes + 1, "seed {seed}: every bounce restarted the host: {o:?}");
        total.add(&o);
    }
    eprintln!(
        "turmoil: {} seeds in {:.1} s: {} crashes, {} starts ({} opens failed on injected faults), {} recoveries \
         checked, {} transactions acknowledged, {} unknown outcomes, {} conflicts, {} snapshots checked, {} \
         checkpoints, {} faults injected",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        total.crashes,
        total.starts,
        total.open_errors,
        total.recoveries_checked,
        total.work.acked,
        total.work.unknown,
        total.work.conflicts,
        total.work.snapshots,
        total.work.checkpoints,
        total.faults_injected,
    );
    if seeds.len() >= 20 {
        // A campaign that acknowledged nothing, crashed nothing or checked nothing proves nothing.
        assert!(total.work.acked > 0 && total.recoveries_checked > total.crashes / 2, "{total:?}");
        assert!(total.work.conflicts > 0 && total.work.unknown > 0 && total.faults_injected > 0, "{total:?}");
        assert!(total.work.checkpoints > 0 && total.work.snapshots > 0, "{total:?}");
    }
}

/// Seed 7 found a recycled log segment under its final name with its earlier header, the
/// rename that took the free file having been made durable only with the final one: turmoil's
/// filesystem keeps durability per name, not per file (`src/wal/segment.rs`,
/// `recycle_free_file`, now syncs the directory right after that rename).
#[test]
fn turmoil_regression_seed_7_recycled_segment_keeps_its_blank_header() {
    let o = run_seed(7).unwrap_or_else(|f| panic!("{f}"));
    assert!(o.crashes > 0 && o.recoveries_checked > 0, "{o:?}");
}

#[test]
fn turmoil_is_deterministic() {
    for seed in [5, 12] {
        let a = run_seed(seed).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(Ok(a.clone()), run_seed(seed), "seed {seed} ran twice differently");
        assert!(a.work.acked > 0, "seed {seed} acknowledged nothing: {a:?}");
    }
}

/// The harness has teeth: with each planted bug of `waldb::sim::mutation` some seed breaks an
/// invariant, and the failure names the seed and the replay command. turmoil's filesystem is
/// a model of durability independent of `SimDisk`, and it catches the same bugs — a segment
/// created without the directory sync that makes its name durable among them — but one: a
/// failed sync here leaves its writes pending rather than dropping them, so a sync retried
/// after a failure really does make them durable, and `FailedSyncRetried` is no bug in this
/// model (`SimDisk`'s drop model catches it in the campaign).
#[cfg(feature = "mutants")]
#[test]
fn turmoil_catches_planted_bugs() {
    use waldb::sim::mutation::{self, Mutation};
    for m in Mutation::LOG.into_iter().filter(|m| !matches!(m, Mutation::FailedSyncRetried)) {
        mutation::plant(Some(m));
        let caught = (0..40).find_map(|seed| run_seed(seed).err().map(|f| (seed, f)));
        mutation::plant(None);
        let (seed, failure) = caught.unwrap_or_else(|| panic!("40 seeds with {m:?} planted all passed"));
        assert!(failure.contains(&format!("replay: WALDB_SIM_SEED={seed} ")), "{failure}");
        eprintln!("turmoil: {m:?} caught by seed {seed}: {}", failure.lines().next().unwrap_or_default());
    }
}
