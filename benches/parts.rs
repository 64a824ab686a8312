//! The database's parts, one criterion bench each: `cargo bench --bench parts`.
//!
//! - `commit/none`: 1-put transactions (16-byte key, 100-byte value) from one thread with
//!   `Durability::None`: begin, put, validate, sequence, append to the log's queue, install.
//!   No fsync (the flusher writes the records in the background).
//! - `commit/sync/1` and `commit/sync/16`: 1-put `Sync` transactions from 1 and 16 threads,
//!   each timed from the first begin to the last acknowledgement. **Each includes its share
//!   of an fdatasync**: these measure the disk as much as waldb.
//! - `get/1M`: `Db::get` of a random key of a 1,000,000-key database (a fresh snapshot each).
//! - `scan/100`: a 100-key range scan in a `Snapshot` transaction, same database.
//! - `recover/db`: `Db::open` of a database whose log holds 64 MiB of transactions (1-KiB
//!   values, 8 per transaction, no checkpoint), page cache warm: the CPU cost of recovery.
//!
//! The codec (`encode`, `decode`) and the bare log reader have their own bench, `decode`. The
//! data lives in `WALDB_BENCH_DIR` (default `target/bench-data`), on the disk being measured.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use waldb::db::Isolation;
use waldb::wal::Durability;
use waldb::{Db, StdDisk, SystemClock};

mod common;
use common::{await_prepared, bench_root, db_options, key};

const VALUE: usize = 100;

type StdDb = Db<StdDisk, SystemClock>;

/// A fresh database at `root/name`, its next segment prepared.
fn fresh(root: &Path, name: &str) -> (StdDb, PathBuf) {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let (db, _) = Db::open_opts(&dir, db_options()).unwrap();
    let mut warm = db.begin().unwrap();
    warm.put(b"warm", b"up").unwrap();
    warm.commit_blocking().unwrap();
    await_prepared(|| db.stats().wal.segments_prepared);
    (db, dir)
}

fn close(db: StdDb, dir: &Path) {
    db.close().unwrap();
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

fn commits(c: &mut Criterion) {
    let root = bench_root();
    let value = vec![7u8; VALUE];
    let mut g = c.benchmark_group("commit");
    g.throughput(Throughput::Elements(1));

    let (db, dir) = fresh(&root, "parts-none");
    let mut n = 0u64;
    g.bench_function("none", |b| {
        b.iter(|| {
            n += 1;
            let mut txn = db.begin().unwrap();
            txn.put(&key(0, n), &value).unwrap();
            txn.commit_with(Durability::None).wait().unwrap()
        })
    });
    close(db, &dir);

    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for threads in [1usize, 16] {
        let (db, dir) = fresh(&root, "parts-sync");
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        g.bench_function(format!("sync/{threads}"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let barrier = Arc::new(Barrier::new(threads + 1));
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (db, barrier, next, value) =
                            (db.clone(), Arc::clone(&barrier), Arc::clone(&next), value.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            for _ in 0..per_thread {
                                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let mut txn = db.begin().unwrap();
                                txn.put(&key(t, n), &value).unwrap();
                                txn.commit_blocking().unwrap();
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let started = Instant::now();
                for h in handles {
                    h.join().unwrap();
                }
                // Per commit made, not per commit asked for.
                started.elapsed().mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
            })
        });
        close(db, &dir);
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    const KEYS: u64 = 1_000_000;
    let root = bench_root();
    let (db, dir) = fresh(&root, "parts-reads");
    let value = vec![7u8; VALUE];
    for chunk in 0..KEYS / 1000 {
        let mut txn = db.begin().unwrap();
        for i in 0..1000 {
            txn.put(&key(0, chunk * 1000 + i), &value).unwrap();
        }
        txn.commit_with(Durability::None).wait().unwrap();
    }
    db.sync().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % KEYS
    };

    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1M", |b| b.iter(|| db.get(black_box(&key(0, random()))).unwrap().unwrap()));
    g.finish();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(100));
    g.bench_function("100", |b| {
        b.iter(|| {
            let from = key(0, random() % (KEYS - 100));
            let mut txn = db.begin_with(Isolation::Snapshot).unwrap();
            let pairs = txn.scan_limit(&from[..].., 100).unwrap();
            assert_eq!(pairs.len(), 100);
            txn.abort();
            pairs
        })
    });
    g.finish();
    close(db, &dir);
}

fn recovery(c: &mut Criterion) {
    let root = bench_root();
    let (db, dir) = fresh(&root, "parts-recovery");
    let value = vec![3u8; 1024];
    let mut n = 0u64;
    while db.stats().wal.bytes_written < 64 << 20 {
        let mut txn = db.begin().unwrap();
        for _ in 0..8 {
            n += 1;
            txn.put(&key(0, n), &value).unwrap();
        }
        txn.commit_with(Durability::None).wait().unwrap();
    }
    db.sync().unwrap();
    let bytes = db.stats().wal.bytes_written;
    db.close().unwrap();
    drop(db);

    let mut g = c.benchmark_group("recover");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("db", |b| {
        b.iter(|| {
            let (db, report) = Db::open_opts(&dir, db_options()).unwrap();
            assert_eq!(db.get(&key(0, n)).unwrap().as_deref(), Some(&value[..]));
            drop(db);
            report
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, commits, reads, recovery);
criterion_main!(benches);
