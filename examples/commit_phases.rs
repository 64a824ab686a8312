//! Where a commit's time goes, per phase, with many committers: `begin` and the puts, the
//! sequencer (`commit_with`, its lock wait included) and the ticket (`wait`).
//!
//! ```text
//! cargo run --release --example commit_phases -- [seconds=2] [puts=1] [threads=1] [sync|none] [segment MiB=64]
//! WALDB_BENCH_DIR=/mnt/disk THREAD=1 cargo run --release --example commit_phases -- 2 1 64 sync
//! ```
//!
//! `GAP_US=n`: each committer sleeps a random 0–2n µs after each commit (arrivals that do not
//! come straight back; untimed). `THREAD` set: the log's dedicated-thread driver instead of
//! leader/follower. `LINGER_US=n`:
//! the log's [`linger`](waldb::wal::BatchConfig::linger), n µs. `SYNC_US=n`: every sync sleeps
//! n µs after the real one (put `WALDB_BENCH_DIR` on tmpfs, `/dev/shm/…`, so that the real one
//! costs nothing): a disk whose sync latency does not swing, for comparing how builds schedule
//! their steps (a sleep costs no CPU, where a real sync's submission does). Fresh keys, a
//! 100-byte value, a fresh database in `WALDB_BENCH_DIR` (default `target/bench-data`). One
//! line out: transactions/s, mean µs per phase, the log's batch sizes and sync count, the
//! medians of its writes (those that are not also syncs) and syncs (each with the write it
//! makes durable: one call), its steps handed to the background thread
//! (`crowd_handovers`), and the times its thread's yields were found slow (`slow_yields`).
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use waldb::{Disk, DiskFile, OpenMode, StdDisk};

/// [`StdDisk`] whose syncs take at least a fixed time: see the module docs.
#[derive(Clone)]
struct FixedSyncDisk(StdDisk, Duration);

/// A file of [`FixedSyncDisk`].
struct FixedSyncFile(<StdDisk as Disk>::File, Duration);

impl Disk for FixedSyncDisk {
    type File = FixedSyncFile;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FixedSyncFile> {
        self.0.open(path, mode).map(|f| FixedSyncFile(f, self.1))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.0.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0.sync_dir(path)
    }
    fn write_zeros(&self, path: &Path, file: &FixedSyncFile, len: u64) -> io::Result<()> {
        self.0.write_zeros(path, &file.0, len)
    }
}

impl FixedSyncFile {
    fn slow(&self, sync: io::Result<()>) -> io::Result<()> {
        std::thread::sleep(self.1);
        sync
    }
}

impl DiskFile for FixedSyncFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn write_pages_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_pages_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.slow(self.0.sync_data())
    }
    fn sync_all(&self) -> io::Result<()> {
        self.slow(self.0.sync_all())
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.0.try_lock()
    }
}

fn main() {
    match std::env::var("SYNC_US").ok().and_then(|s| s.parse().ok()) {
        Some(us) => run(FixedSyncDisk(StdDisk, Duration::from_micros(us))),
        None => run(StdDisk),
    }
}

fn run<D: Disk + Clone>(disk: D) {
    let a: Vec<String> = std::env::args().collect();
    let secs: f64 = a.get(1).map_or(2.0, |s| s.parse().unwrap());
    let puts: usize = a.get(2).map_or(1, |s| s.parse().unwrap());
    let threads: usize = a.get(3).map_or(1, |s| s.parse().unwrap());
    let sync = a.get(4).is_some_and(|s| s == "sync");
    let seg: u64 = a.get(5).map_or(64, |s| s.parse().unwrap());
    let root = std::env::var_os("WALDB_BENCH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
        Into::into,
    );
    let dir = root.join("commit-phases");
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = waldb::DbOptions::default().with_memtable_bytes(None);
    options.segment_bytes = seg << 20;
    if std::env::var_os("THREAD").is_some() {
        options.driver = waldb::wal::Driver::Thread;
    }
    if let Some(us) = std::env::var("LINGER_US").ok().and_then(|s| s.parse().ok()) {
        options.batch.linger = Duration::from_micros(us);
    }
    let (db, _) = waldb::Db::open_with(disk, waldb::SystemClock::new(), &dir, options).unwrap();
    let db = Arc::new(db);
    let mut w = db.begin().unwrap();
    w.put(b"w", b"u").unwrap();
    w.commit_blocking().unwrap();
    while db.stats().wal.segments_prepared == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let gap_us: u64 = std::env::var("GAP_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let total = Arc::new(AtomicU64::new(0));
    let phases = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            let total = total.clone();
            let phases = phases.clone();
            std::thread::spawn(move || {
                let value = [7u8; 100];
                let mut n = 0u64;
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                let mut ph = [0u64; 3];
                while start.elapsed().as_secs_f64() < secs {
                    let t0 = Instant::now();
                    let mut tx = db.begin().unwrap();
                    for j in 0..puts {
                        let mut k = [0u8; 16];
                        k[..4].copy_from_slice(&(t as u32).to_be_bytes());
                        k[4..12].copy_from_slice(&(n * puts as u64 + j as u64).to_be_bytes());
                        tx.put(&k, &value).unwrap();
                    }
                    let d = if sync { waldb::wal::Durability::Sync } else { waldb::wal::Durability::None };
                    let t1 = Instant::now();
                    let c = tx.commit_with(d);
                    let t2 = Instant::now();
                    c.wait().unwrap();
                    let t3 = Instant::now();
                    ph[0] += (t1 - t0).as_nanos() as u64;
                    ph[1] += (t2 - t1).as_nanos() as u64;
                    ph[2] += (t3 - t2).as_nanos() as u64;
                    n += 1;
                    if gap_us > 0 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        std::thread::sleep(Duration::from_micros(rng % (2 * gap_us)));
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
                for i in 0..3 {
                    phases[i].fetch_add(ph[i], Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let e = start.elapsed().as_secs_f64();
    let n = total.load(Ordering::Relaxed);
    let avg = |i: usize| phases[i].load(Ordering::Relaxed) as f64 / n as f64 / 1e3;
    let s = db.stats();
    println!(
        "{threads} thr {}: {:.0} txn/s | mean µs: begin+put {:.2}, commit_with {:.2}, wait {:.2} | batch p50 {} p99 {} flushes {} syncs {} | write p50 {:.1} µs, sync p50 {:.1} µs | crowd hand-overs {} | slow yields {}",
        if sync { "sync" } else { "none" },
        n as f64 / e,
        avg(0),
        avg(1),
        avg(2),
        s.wal.batch_records.p50,
        s.wal.batch_records.p99,
        s.wal.flushes,
        s.wal.syncs,
        s.wal.write_latency_ns.p50 as f64 / 1e3,
        s.wal.sync_latency_ns.p50 as f64 / 1e3,
        s.wal.crowd_handovers,
        s.wal.slow_yields
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
