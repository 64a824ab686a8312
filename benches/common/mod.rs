//! Helpers shared by the hand-rolled benchmarks (`group_commit`, `db`): where data goes, the
//! environment knobs, medians and percentiles, and a closed-loop driver of N threads.

#![allow(dead_code)] // Each bench uses a subset.

pub mod ideal;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A 16-byte key unique to (thread, n).
pub fn key(thread: usize, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&(thread as u32).to_be_bytes());
    k[4..12].copy_from_slice(&n.to_be_bytes());
    k
}

/// Database options with automatic checkpoints off, so that no figure includes one by chance.
pub fn db_options() -> waldb::DbOptions {
    waldb::DbOptions::default().with_memtable_bytes(None)
}

/// A number from the environment, or `default`.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A comma-separated list of counts from the environment, or `default`.
pub fn env_counts(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.split(',').map(|c| c.trim().parse().unwrap_or_else(|_| panic!("{name}: numbers"))).collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// Whether `section` was asked for in `WALDB_BENCH_ONLY` (all are when it is unset).
pub fn wanted(section: &str) -> bool {
    let only = std::env::var("WALDB_BENCH_ONLY").unwrap_or_default();
    only.is_empty() || only.split(',').any(|s| s.trim() == section)
}

/// `cargo test --benches` runs bench binaries without `--bench`: they do nothing then.
pub fn invoked_as_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `WALDB_BENCH_DIR`, or `bench-data` in cargo's temporary directory for benchmarks (inside the
/// target directory, wherever it is): on the disk being measured, not a tmpfs.
pub fn bench_root() -> PathBuf {
    let root = std::env::var_os("WALDB_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // Set for benchmarks; the `waldb` tool, which shares this module, builds without it.
        let tmp = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        tmp.join("bench-data")
    });
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// `WALDB_BENCH_SECONDS` per cell (default 1), `WALDB_BENCH_ROUNDS` (default 5) and the data
/// directory, after printing the run's header line.
pub fn settings(title: &str) -> (f64, usize, PathBuf) {
    let seconds = env_f64("WALDB_BENCH_SECONDS", 1.0);
    let rounds = env_f64("WALDB_BENCH_ROUNDS", 5.0) as usize;
    let root = bench_root();
    println!(
        "# waldb {title} — {rounds} interleaved rounds of {seconds} s per cell, data in {}",
        root.display()
    );
    (seconds, rounds, root)
}

/// Waits (at most 30 s) until `prepared()` — a log's `segments_prepared` counter — is
/// non-zero: the log has prepared its next segment, so that the 64 MiB of zeros it writes are
/// not flushed inside a timed window.
pub fn await_prepared(prepared: impl Fn() -> u64) {
    let waited = Instant::now();
    while prepared() == 0 && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The median (upper median for even lengths).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One measured run: operations, seconds, sorted latencies in ns.
pub struct Run {
    pub ops: u64,
    pub seconds: f64,
    pub latencies: Vec<u64>,
}

impl Run {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// Runs `threads` threads calling `op(thread, n)` (n counts that thread's calls) until
/// `seconds` pass; each call is one operation.
pub fn drive(threads: usize, seconds: f64, op: Arc<dyn Fn(usize, u64) + Send + Sync>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, op) = (Arc::clone(&stop), Arc::clone(&op));
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut n = 0;
                while !stop.load(Relaxed) {
                    let t0 = Instant::now();
                    op(t, n);
                    lat.push(t0.elapsed().as_nanos() as u64);
                    n += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Relaxed);
    let mut latencies: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Run { ops: latencies.len() as u64, seconds, latencies }
}
