//! `waldb bench [<dir>]`: the seed's tables, measured on the disk under `<dir>`.
//!
//! 1. the disk: a 4 KiB write + fdatasync into a pre-zeroed file (median and p99 of 200);
//! 2. thread scaling: 1-put transactions (16-byte key, 100-byte value) from 1 to 128
//!    committers: transactions/s, p50 and p99 commit latency;
//! 3. batch size: transactions of 1, 5, 10, 20 and 50 puts from 10 threads: puts/s;
//! 4. contention: 10 threads running read-modify-write transactions (read 2 keys, write them)
//!    under `Serializable`, on 16 shared keys or on keys of their own: commits/s and the share
//!    of attempts refused for a conflict;
//!
//! each in `Sync` (acknowledged after the fdatasync) and `Buffered` (acknowledged when queued,
//! synced within 10 ms). Each cell runs on a fresh database with the default options
//! (automatic checkpoints included), deleted after it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use waldb::db::DbOptions;
use waldb::wal::Durability;
use waldb::{Db, Error};

use super::progress::Progress;

#[path = "../../../benches/common/mod.rs"]
mod common;
#[path = "../../../benches/common/dbbench.rs"]
mod dbbench;
use common::{Run, await_prepared, drive, percentile};

const VALUE: usize = 100;
const SCALING: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
const BATCHES: [usize; 5] = [1, 5, 10, 20, 50];
const BATCH_THREADS: usize = 10;
const HOT_KEYS: u64 = 16;

fn modes() -> [(&'static str, Durability); 2] {
    [("Sync", Durability::Sync), ("Buffered", Durability::Buffered { every: Duration::from_millis(10) })]
}

/// A 16-byte key unique to (thread, n).
fn key(thread: usize, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&(thread as u32).to_be_bytes());
    k[4..12].copy_from_slice(&n.to_be_bytes());
    k
}

fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Io { op, path: path.to_path_buf(), source: e }
}

/// Median and p99 of `n` 4 KiB writes + fdatasync into a pre-zeroed 4 MiB file.
fn fdatasync_latency(dir: &Path, n: usize) -> Result<(Duration, Duration), Error> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fdatasync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("create", &path, e))?;
    let size = 4 << 20;
    // In 64 KiB writes: a file filled by larger writes through the OS cache made every later
    // sync into it ~5 µs dearer on Linux 6.18 (docs/bench/2core-ab.md), which is not the disk.
    let chunk = vec![0u8; 64 << 10];
    for at in (0..size).step_by(chunk.len()) {
        file.write_all_at(&chunk, at as u64).map_err(|e| io_error("write", &path, e))?;
    }
    file.sync_all().map_err(|e| io_error("sync", &path, e))?;
    let block = vec![0xA5u8; 4096];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        file.write_all_at(&block, ((i * 4096) % size) as u64).map_err(|e| io_error("write", &path, e))?;
        file.sync_data().map_err(|e| io_error("sync", &path, e))?;
        times.push(t0.elapsed().as_nanos() as u64);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort_unstable();
    Ok((Duration::from_nanos(percentile(&times, 0.5)), Duration::from_nanos(percentile(&times, 0.99))))
}

/// A fresh database in `root` for one cell (default options), once its log has prepared its
/// next segment: the 64 MiB of zeros that preparation writes stay out of the timed window.
fn fresh(root: &Path) -> Result<(Db, std::path::PathBuf), Error> {
    static CELL: AtomicU64 = AtomicU64::new(0);
    let dir = root.join(format!("db-{}", CELL.fetch_add(1, Relaxed)));
    let (db, _) = Db::open_opts(&dir, DbOptions::default())?;
    let mut warm = db.begin()?;
    warm.put(b"warm", b"up")?;
    warm.commit_blocking()?;
    await_prepared(|| db.stats().wal.segments_prepared);
    Ok((db, dir))
}

/// Closes a cell's database and deletes it.
fn done(db: Db, dir: &Path) -> Result<(), Error> {
    db.close()?;
    drop(db);
    std::fs::remove_dir_all(dir).map_err(|e| io_error("remove", dir, e))
}

/// `threads` committers of `puts`-put transactions of fresh keys.
fn commits(db: &Db, threads: usize, puts: usize, durability: Durability, seconds: f64) -> Run {
    let db = db.clone();
    let value = [7u8; VALUE];
    drive(
        threads,
        seconds,
        Arc::new(move |t, n| {
            let mut txn = db.begin().expect("begin");
            for i in 0..puts as u64 {
                txn.put(&key(t, n * puts as u64 + i), &value).expect("put");
            }
            txn.commit_with(durability).wait().expect("commit");
        }),
    )
}

/// 10 threads of read-2-write-2 transactions under `Serializable`: on `HOT_KEYS` shared keys
/// (`overlapping`) or on keys of their own. Returns the run (committed transactions) and the
/// share of attempts refused for a conflict.
fn contention(db: &Db, overlapping: bool, durability: Durability, seconds: f64) -> (Run, f64) {
    let conflicts = Arc::new(AtomicU64::new(0));
    let (db2, c2) = (db.clone(), Arc::clone(&conflicts));
    let run = drive(
        BATCH_THREADS,
        seconds,
        Arc::new(move |t, n| {
            // A simple per-thread sequence of key pairs (xorshift of n): deterministic, spread.
            let mut x = (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (t as u64 + 1);
            loop {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (a, b) = (x % HOT_KEYS, (x >> 32) % HOT_KEYS);
                let (ka, kb) = if overlapping {
                    (key(usize::MAX >> 8, a), key(usize::MAX >> 8, b))
                } else {
                    (key(1000 + t, a), key(1000 + t, b))
                };
                let mut txn = db2.begin().expect("begin");
                let va = txn.get(&ka).expect("get").map_or(0, |v| v.len());
                let vb = txn.get(&kb).expect("get").map_or(0, |v| v.len());
                txn.put(&ka, &vec![1u8; 1 + (va + vb) % VALUE]).expect("put");
                txn.put(&kb, &vec![2u8; 1 + (va * 3 + vb) % VALUE]).expect("put");
                match txn.commit_with(durability).wait() {
                    Ok(_) => return,
                    Err(Error::Conflict { .. }) => {
                        c2.fetch_add(1, Relaxed);
                    }
                    Err(e) => panic!("commit: {e}"),
                }
            }
        }),
    );
    let refused = conflicts.load(Relaxed) as f64;
    let share = refused / (refused + run.ops as f64).max(1.0);
    (run, share)
}

fn us(ns: u64) -> String {
    format!("{:.0} µs", ns as f64 / 1e3)
}

/// Runs the benchmark in `dir` (created, and removed at the end), `seconds` per cell. Exit
/// status 0, or 64 for a `seconds` out of range.
/// `waldb bench --db-bench`: the db_bench-style workloads of `benches/common/dbbench.rs` on
/// waldb alone, `keys` pairs loaded in transactions of `batch` puts, `seconds` per read
/// workload, in a new directory `dir` deleted at the end; with `lz4`, LZ4-compressed tables;
/// with `compressible`, values that compress to about half. Prints markdown tables.
pub(crate) fn db_bench(
    dir: &Path,
    seconds: f64,
    keys: u64,
    batch: usize,
    lz4: bool,
    compressible: bool,
) -> Result<u8, Error> {
    if !(0.05..=600.0).contains(&seconds) {
        let _ = writeln!(std::io::stderr(), "waldb: error: --seconds is between 0.05 and 600, not {seconds}");
        return Ok(64);
    }
    new_dir(dir)?;
    let config = dbbench::Config {
        keys,
        batch,
        overwrites: keys,
        seconds,
        cache_bytes: DbOptions::default().cache_bytes,
        compressible,
    };
    let compression = if lz4 { waldb::Compression::Lz4 } else { waldb::Compression::None };
    let report = dbbench::run("waldb", dir, &config, &|d| {
        Box::new(dbbench::WaldbEngine::open(d, config.cache_bytes, compression))
    });
    let _ = std::fs::remove_dir_all(dir);
    let _ = writeln!(std::io::stdout(), "{}", dbbench::markdown(&config, &[report]));
    Ok(0)
}

/// Creates `dir`, which must not exist.
fn new_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        return Err(Error::InvalidConfig {
            reason: format!(
                "{} exists: the benchmark needs a new directory, which it deletes at the end",
                dir.display()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))
}

pub(crate) fn run(dir: &Path, seconds: f64) -> Result<u8, Error> {
    if !(0.05..=600.0).contains(&seconds) {
        let _ = writeln!(std::io::stderr(), "waldb: error: --seconds is between 0.05 and 600, not {seconds}");
        return Ok(64);
    }
    new_dir(dir)?;
    let result = measure(dir, seconds);
    let _ = std::fs::remove_dir_all(dir);
    result
}

fn measure(dir: &Path, seconds: f64) -> Result<u8, Error> {
    let mut out = super::Out::new();
    let (p50, p99) = fdatasync_latency(dir, 200)?;
    out.line(format_args!(
        "# waldb bench — {}, {seconds} s per cell, {} CPUs\n",
        dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ))?;
    out.line(format_args!(
        "The disk: a 4 KiB write + fdatasync into a pre-zeroed file takes {} (median of 200; p99 {}). \
         Every `Sync` figure below includes its share of one.\n",
        us(p50.as_nanos() as u64),
        us(p99.as_nanos() as u64)
    ))?;
    let total = 2 * (SCALING.len() + BATCHES.len() + 2);
    // A line per cell in a log: cells take seconds each.
    let mut progress = Progress::new(total as u64, "cells", Duration::ZERO);

    let mut scaling = Vec::new();
    for &threads in &SCALING {
        let mut row = Vec::new();
        for (name, d) in modes() {
            let (db, at) = fresh(dir)?;
            let r = commits(&db, threads, 1, d, seconds);
            done(db, &at)?;
            progress.step(&format!("{threads} committers, {name}"));
            row.push(r);
        }
        scaling.push((threads, row));
    }
    let mut batches = Vec::new();
    for &puts in &BATCHES {
        let mut row = Vec::new();
        for (name, d) in modes() {
            let (db, at) = fresh(dir)?;
            let r = commits(&db, BATCH_THREADS, puts, d, seconds);
            done(db, &at)?;
            progress.step(&format!("{puts} puts per transaction, {name}"));
            row.push(r);
        }
        batches.push((puts, row));
    }
    let mut contended = Vec::new();
    for overlapping in [true, false] {
        let mut row = Vec::new();
        for (name, d) in modes() {
            let (db, at) = fresh(dir)?;
            let r = contention(&db, overlapping, d, seconds);
            done(db, &at)?;
            let what = if overlapping { "overlapping" } else { "disjoint" };
            progress.step(&format!("{what} keys, {name}"));
            row.push(r);
        }
        contended.push((overlapping, row));
    }

    out.line(format_args!("## Thread scaling: 1-put transactions (16 B key, 100 B value)\n"))?;
    out.line(format_args!("| committers | Sync txn/s | p50 | p99 | Buffered txn/s | p50 | p99 |"))?;
    out.line(format_args!("|---:|---:|---:|---:|---:|---:|---:|"))?;
    for (threads, row) in &scaling {
        let (s, b) = (&row[0], &row[1]);
        out.line(format_args!(
            "| {threads} | {:.0} | {} | {} | {:.0} | {} | {} |",
            s.rate(),
            us(percentile(&s.latencies, 0.5)),
            us(percentile(&s.latencies, 0.99)),
            b.rate(),
            us(percentile(&b.latencies, 0.5)),
            us(percentile(&b.latencies, 0.99)),
        ))?;
    }
    out.line(format_args!("\n## Batch size: {BATCH_THREADS} threads\n"))?;
    out.line(format_args!(
        "| puts per transaction | Sync puts/s | Sync txn/s | Buffered puts/s | Buffered txn/s |"
    ))?;
    out.line(format_args!("|---:|---:|---:|---:|---:|"))?;
    for (puts, row) in &batches {
        let (s, b) = (&row[0], &row[1]);
        out.line(format_args!(
            "| {puts} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.rate() * *puts as f64,
            s.rate(),
            b.rate() * *puts as f64,
            b.rate()
        ))?;
    }
    out.line(format_args!(
        "\n## Contention: {BATCH_THREADS} threads, read 2 keys and write them, `Serializable`\n"
    ))?;
    out.line(format_args!("| keys | Sync commits/s | refused | Buffered commits/s | refused |"))?;
    out.line(format_args!("|---|---:|---:|---:|---:|"))?;
    for (overlapping, row) in &contended {
        let ((s, sc), (b, bc)) = (&row[0], &row[1]);
        let keys =
            if *overlapping { format!("overlapping ({HOT_KEYS} shared)") } else { "disjoint".to_owned() };
        out.line(format_args!(
            "| {keys} | {:.0} | {:.1} % | {:.0} | {:.1} % |",
            s.rate(),
            sc * 100.0,
            b.rate(),
            bc * 100.0
        ))?;
    }
    out.line(format_args!("\n{:.1} s in all.", progress.elapsed().as_secs_f64()))?;
    Ok(0)
}
