//! Durable 1-put commits while a compaction runs, against the same commits on a quiet small
//! database (issue 31: at least 0.8 × as many).
//!
//! ```text
//! cargo run --release --example compaction_commits [LOAD_MIB] [SECONDS] [DIR]
//! ```
//!
//! For each committer count (1, 4, 16, 64): `SECONDS` (default 3) of durable 1-put commits
//! (16-byte key, 100-byte value) on a fresh database (quiet); then a database is loaded with
//! `LOAD_MIB` (default 1,500) of 16 + 100-byte pairs in non-durable 1,000-put transactions, the
//! load goes on until a compaction is under way (`DbStats::compacting`), and the same commits
//! run for `SECONDS` (busy). `DbStats::compacting` is sampled every 10 ms during the busy
//! window: the share of samples with a compaction under way is printed with the result.
//! Prints commits/s of each and the ratio.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use waldb::wal::Durability;
use waldb::{Db, DbOptions};

fn key(thread: u64, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(thread | 1 << 63).to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `threads` committers for `seconds`: (commits/s, share of 10 ms samples in which a
/// compaction was under way).
fn commits(db: &Db, threads: u64, seconds: f64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (db, stop, total) = (db.clone(), Arc::clone(&stop), Arc::clone(&total));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Relaxed) {
                    let mut txn = db.begin().unwrap();
                    txn.put(&key(t, n), &[7u8; 100]).unwrap();
                    txn.commit_with(Durability::Sync).wait().unwrap();
                    n += 1;
                }
                total.fetch_add(n, Relaxed);
            })
        })
        .collect();
    let (mut samples, mut busy) = (0u32, 0u32);
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        std::thread::sleep(Duration::from_millis(10));
        samples += 1;
        busy += u32::from(db.stats().compacting);
    }
    stop.store(true, Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let rate = total.load(Relaxed) as f64 / start.elapsed().as_secs_f64();
    (rate, f64::from(busy) / f64::from(samples.max(1)))
}

fn fresh(dir: &Path) -> Db {
    let _ = std::fs::remove_dir_all(dir);
    Db::open_opts(dir, DbOptions::default()).unwrap().0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let load_mib: u64 = args.next().map_or(1500, |a| a.parse().expect("LOAD_MIB: a number"));
    let seconds: f64 = args.next().map_or(3.0, |a| a.parse().expect("SECONDS: a number"));
    let dir: PathBuf =
        args.next().map_or_else(|| std::env::temp_dir().join("waldb-compaction-commits"), Into::into);
    println!(
        "| committers | quiet commits/s | during compaction | ratio | samples with compaction writing |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for threads in [1u64, 4, 16, 64] {
        let db = fresh(&dir);
        let (quiet, _) = commits(&db, threads, seconds);
        db.close().unwrap();
        drop(db);

        let db = fresh(&dir);
        let pairs = (load_mib << 20) / 116;
        let mut n = 0;
        while n < pairs || !db.stats().compacting {
            let mut txn = db.begin().unwrap();
            for i in 0..1000u64 {
                let k = (n + i).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
                txn.put(&[k, k].concat(), &[9u8; 100]).unwrap();
            }
            txn.commit_with(Durability::None).wait().unwrap();
            n += 1000;
        }
        let (busy, share) = commits(&db, threads, seconds);
        let s = db.stats();
        println!(
            "| {threads} | {quiet:.0} | {busy:.0} | {:.2} | {:.0} % ({} compactions, tables per level {:?}) |",
            busy / quiet,
            share * 100.0,
            s.compactions,
            s.tables_per_level
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
