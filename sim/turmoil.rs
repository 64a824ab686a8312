//! The async API on a turmoil host, over turmoil's simulated filesystem (feature `turmoil`): a
//! second, independent model of durability. turmoil's fs keeps writes, creates, renames and
//! removes pending until `sync_all`/`sync_data` or a directory sync; a crash drops what is
//! pending, tears pending writes at `block_size` (512 B here) and may have flushed some early
//! (`sync_probability`).
//!
//! Each seed runs one host, `db`, whose software opens the database on [`TurmoilDisk`] with a
//! [`TokioClock`] (tokio's virtual time), runs the log's flusher as a tokio task (the `Manual`
//! driver stepped from a task: under turmoil a thread would survive a crash and see no virtual
//! time), and runs writer tasks that commit transactions with `.await`. The test crashes and
//! bounces the host at seeded steps. At every start the software checks, as
//! `tests/stress_kill.rs` does on real files: every acknowledged transaction is present with all
//! its keys, and every transaction present is whole. Each seed is deterministic: run twice, it
//! acknowledges the same transactions.
//!
//! `WALDB_SIM_TURMOIL_SEEDS=N` (default 40) widens it; `WALDB_SIM_SEED=S` runs one seed.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use turmoil::fs::shim::std::fs as tfs;
use waldb::db::DbOptions;
use waldb::sim::SimRng;
use waldb::wal::Driver;
use waldb::{Clock, Db, Disk, DiskFile, OpenMode};

use crate::support::seeds;

/// waldb's `Disk` over turmoil's simulated filesystem (the calling host's). `alive` is
/// cleared when the host crashes: the dying process's destructors (a `Db` dropped with its
/// tasks) then do no I/O at all, as after a power cut — and do not reach turmoil outside its
/// context.
#[derive(Clone, Debug)]
pub struct TurmoilDisk {
    alive: Arc<AtomicBool>,
}

/// A file of [`TurmoilDisk`].
pub struct TurmoilFile {
    file: tfs::File,
    alive: Arc<AtomicBool>,
}

fn live(alive: &AtomicBool) -> io::Result<()> {
    if alive.load(SeqCst) { Ok(()) } else { Err(io::Error::other("the host has crashed")) }
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
        Ok(TurmoilFile { file: options.open(path)?, alive: Arc::clone(&self.alive) })
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
        tfs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        tfs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        live(&self.alive)?;
        tfs::sync_dir(path)
    }
}

impl DiskFile for TurmoilFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        live(&self.alive)?;
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        live(&self.alive)?;
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        live(&self.alive)?;
        Ok(self.file.metadata()?.len())
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

/// What the test and the host share: acknowledged transactions, and how the host's starts went.
#[derive(Default)]
struct Shared {
    /// Transaction name → key count, for every acknowledged commit.
    acked: BTreeMap<String, u64>,
    /// Starts of the host software (opens of the database).
    starts: u64,
    /// Transactions found at the last start.
    present: usize,
    /// A broken invariant, reported by the host.
    failure: Option<String>,
    /// The running host's liveness, cleared by the test when it crashes the host.
    alive: Option<Arc<AtomicBool>>,
}

const DIR: &str = "/db";

fn options() -> DbOptions {
    DbOptions {
        driver: Driver::Manual,
        segment_bytes: 64 << 10,
        key_bytes_max: 64,
        value_bytes_max: 1024,
        txn_bytes_max: 16 << 10,
        auto_checkpoint_bytes: None,
        ..DbOptions::default()
    }
}

/// The host's software: open, check, then commit from writer tasks until crashed.
async fn host(shared: Arc<Mutex<Shared>>, seed: u64) -> turmoil::Result {
    let alive = Arc::new(AtomicBool::new(true));
    let start = {
        let mut s = shared.lock().unwrap();
        s.starts += 1;
        s.alive = Some(Arc::clone(&alive));
        s.starts
    };
    let disk = TurmoilDisk { alive };
    let (db, _) = Db::open_with(disk, TokioClock::new(), Path::new(DIR), options())?;
    let acked = shared.lock().unwrap().acked.clone();
    if let Err(e) = check(&db, &acked) {
        shared.lock().unwrap().failure = Some(format!("start {start}: {e}"));
        return Ok(());
    }
    shared.lock().unwrap().present = db.scan((Bound::Unbounded, Bound::Unbounded), usize::MAX).len();
    // The flusher, as a task: one step per millisecond of virtual time, and the automatic
    // checkpoints are run from here too (no thread may run under turmoil).
    let flusher = {
        let db = db.clone();
        tokio::spawn(async move {
            loop {
                if db.flush_step().is_err() || db.prepare_step().is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (db, shared) = (db.clone(), Arc::clone(&shared));
        writers.push(tokio::spawn(async move {
            let mut rng = SimRng::new(seed ^ (start << 8) ^ w);
            for n in 0.. {
                let name = format!("{start}.{w}-{n}");
                let k = 1 + rng.below(6);
                let Ok(mut txn) = db.begin() else { return };
                for i in 0..k {
                    let value = format!("k={k};{}", "x".repeat(rng.below_usize(200)));
                    txn.put(format!("{name}-{i}").as_bytes(), value.as_bytes()).expect("within limits");
                }
                match txn.commit().await {
                    Ok(_) => {
                        shared.lock().unwrap().acked.insert(name, k);
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(Duration::from_micros(100 * rng.below(20))).await;
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    flusher.abort();
    Ok(())
}

/// Every acknowledged transaction present with all its keys; every transaction present whole.
fn check(db: &Db<TurmoilDisk, TokioClock>, acked: &BTreeMap<String, u64>) -> Result<(), String> {
    let mut present: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for (key, value) in db.scan((Bound::Unbounded, Bound::Unbounded), usize::MAX) {
        let key = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
        let (txn, i) = key.rsplit_once('-').ok_or("a key without an index")?;
        let value = String::from_utf8(value.to_vec()).map_err(|e| e.to_string())?;
        let k: u64 = value
            .strip_prefix("k=")
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{key}: a value without k="))?;
        let entry = present.entry(txn.to_owned()).or_insert((k, Vec::new()));
        entry.1.push(i.parse().map_err(|_| format!("{key}: a bad index"))?);
    }
    for (txn, (k, idx)) in &mut present {
        idx.sort_unstable();
        if *idx != (0..*k).collect::<Vec<_>>() {
            return Err(format!("transaction {txn} is not whole: {k} keys, found {idx:?}"));
        }
    }
    for (txn, k) in acked {
        match present.get(txn) {
            Some((found, _)) if found == k => {}
            _ => return Err(format!("acknowledged transaction {txn} (k={k}) is missing after a crash")),
        }
    }
    Ok(())
}

/// What a seed did.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    starts: u64,
    crashes: u64,
    acked: usize,
    present: usize,
}

fn run_seed(seed: u64) -> Outcome {
    let mut rng = SimRng::new(seed);
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(Duration::from_millis(1));
    builder.fs().block_size(512).sync_probability(0.05 * rng.below(3) as f64);
    let mut sim = builder.build();
    let shared = Arc::new(Mutex::new(Shared::default()));
    {
        let shared = Arc::clone(&shared);
        sim.host("db", move || host(Arc::clone(&shared), seed));
    }
    let mut crashes = 0;
    let lives = 2 + rng.below(4);
    for _ in 0..lives {
        let steps = 20 + rng.below(400);
        for _ in 0..steps {
            sim.step().unwrap_or_else(|e| panic!("seed {seed}: the simulation failed: {e}"));
        }
        if let Some(alive) = shared.lock().unwrap().alive.take() {
            alive.store(false, SeqCst);
        }
        sim.crash("db");
        crashes += 1;
        sim.bounce("db");
        if let Some(f) = shared.lock().unwrap().failure.take() {
            panic!(
                "seed {seed}: {f}\n  replay: WALDB_SIM_SEED={seed} cargo test --features turmoil --test sim turmoil"
            );
        }
    }
    // The last start checks the last crash.
    for _ in 0..5 {
        sim.step().unwrap_or_else(|e| panic!("seed {seed}: the simulation failed: {e}"));
    }
    // The end of the simulation is the host's last crash: its destructors do no I/O.
    if let Some(alive) = shared.lock().unwrap().alive.take() {
        alive.store(false, SeqCst);
    }
    sim.crash("db");
    drop(sim);
    let s = shared.lock().unwrap();
    if let Some(f) = &s.failure {
        panic!(
            "seed {seed}: {f}\n  replay: WALDB_SIM_SEED={seed} cargo test --features turmoil --test sim turmoil"
        );
    }
    Outcome { starts: s.starts, crashes, acked: s.acked.len(), present: s.present }
}

#[test]
fn turmoil_crash_and_bounce() {
    let seeds = seeds("WALDB_SIM_TURMOIL_SEEDS", 40);
    let mut total = (0, 0, 0);
    for &seed in &seeds {
        let o = run_seed(seed);
        assert_eq!(o.starts, o.crashes + 1, "seed {seed}: every bounce restarted the host: {o:?}");
        total.0 += o.crashes;
        total.1 += o.acked;
        total.2 += o.present;
    }
    eprintln!(
        "turmoil: {} seeds, {} crashes, {} transactions acknowledged, all present",
        seeds.len(),
        total.0,
        total.1
    );
    if seeds.len() >= 10 {
        assert!(total.1 > 0, "nothing was acknowledged: the harness proves nothing");
    }
}

#[test]
fn turmoil_is_deterministic() {
    assert_eq!(run_seed(5), run_seed(5));
}

/// The harness has teeth: with acknowledgements before syncs planted, some seed loses an
/// acknowledged transaction.
#[cfg(feature = "mutants")]
#[test]
fn turmoil_catches_ack_before_sync() {
    use waldb::mutation::{self, Mutation};
    mutation::plant(Some(Mutation::AckBeforeSync));
    let caught = (0..40).find(|&seed| std::panic::catch_unwind(|| run_seed(seed)).is_err());
    mutation::plant(None);
    let seed = caught.expect("40 seeds with acks before syncs all passed");
    eprintln!("turmoil: AckBeforeSync caught by seed {seed}");
}
