//! The database against its own log, interleaved in one run: what transactions cost on top of
//! group commit, bulk transactions, snapshot reads and recovery.
//!
//! ```text
//! cargo bench --bench db                      # every section (about 3 minutes)
//! WALDB_BENCH_ONLY=gets,recovery cargo bench --bench db   # sections: commits, batch50, gets, recovery
//! WALDB_BENCH_SECONDS=0.5 WALDB_BENCH_ROUNDS=3 WALDB_BENCH_THREADS=1,4 cargo bench --bench db
//! WALDB_BENCH_RECOVERY_MIB=1024 cargo bench --bench db      # the log size recovered (default 1 GiB)
//! ```
//!
//! 1. `commits`: 1-put `Sync` transactions (16-byte key, 100-byte value) at 1, 4, 16 and 64
//!    threads, each round alternating with bare `Wal::append` `Sync` commits of a record of the
//!    same encoded size on the same disk: the ratio is what begin, validation, the memtable and
//!    visibility cost over the log. Median commits/s over the rounds, p50 and p99 latency.
//! 2. `batch50`: transactions of 50 puts at 10 threads, `Sync` (the seed's table: 81,627 ops/s).
//! 3. `gets`: one thread reading random keys of a 1,000,000-key database (100-byte values):
//!    `Db::get` (a fresh snapshot per read) and `Transaction::get` on one snapshot, under
//!    `Snapshot` isolation (nothing tracked) and under `Serializable` (each read recorded).
//! 4. `recovery`: a log of `WALDB_BENCH_RECOVERY_MIB` MiB (1-KiB values, 8 per transaction, no
//!    checkpoint) reopened with the page cache dropped (when `/proc/sys/vm/drop_caches` is
//!    writable) and again warm: seconds, MB/s of log, transactions/s.
//!
//! Every durable figure includes its fdatasync; the data lives in `WALDB_BENCH_DIR` (default
//! `target/bench-data`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use waldb::db::Isolation;
use waldb::wal::{Durability, RecordKind, Wal, WalConfig};
use waldb::{Db, RecoveryMode};

mod common;
use common::{
    Run, await_prepared, db_options, drive, env_counts, env_f64, invoked_as_bench, key, median, percentile,
    settings, wanted,
};

const VALUE: usize = 100;

fn fresh(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `threads` committers of `puts`-put `Sync` transactions on a fresh database.
fn db_run(root: &Path, threads: usize, puts: usize, seconds: f64) -> (Run, u64) {
    let dir = fresh(root, "db");
    let (db, _) = Db::open_opts(&dir, db_options()).unwrap();
    let value = vec![7u8; VALUE];
    let mut warm = db.begin().unwrap();
    warm.put(&key(usize::MAX >> 1, 0), &value).unwrap();
    warm.commit_blocking().unwrap();
    await_prepared(|| db.stats().wal.segments_prepared);
    let d = db.clone();
    let run = drive(
        threads,
        seconds,
        Arc::new(move |t, n| {
            let mut txn = d.begin().unwrap();
            for i in 0..puts as u64 {
                txn.put(&key(t, n * puts as u64 + i), &value).unwrap();
            }
            txn.commit_blocking().unwrap();
        }),
    );
    let stats = db.stats().wal;
    let record_bytes = stats.bytes_written / stats.records.max(1);
    db.close().unwrap();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    (run, record_bytes)
}

/// `threads` committers of bare `Sync` log appends of `payload` bytes.
fn wal_run(root: &Path, threads: usize, payload: usize, seconds: f64) -> Run {
    let dir = fresh(root, "wal");
    let (wal, _) = Wal::open(&dir, WalConfig::default()).unwrap();
    let wal = Arc::new(wal);
    let payload = vec![42u8; payload];
    wal.append(RecordKind::Unknown(0x80), &payload).unwrap().wait().unwrap();
    await_prepared(|| wal.stats().segments_prepared);
    let w = Arc::clone(&wal);
    let run = drive(
        threads,
        seconds,
        Arc::new(move |_, _| {
            w.append(RecordKind::Unknown(0x80), &payload).unwrap().wait().unwrap();
        }),
    );
    wal.close().unwrap();
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The encoded size of an empty log record (its header).
fn record_header_bytes(root: &Path) -> u64 {
    let dir = fresh(root, "wal");
    let (wal, _) = Wal::open(&dir, WalConfig::default()).unwrap();
    wal.append(RecordKind::Unknown(0x80), &[]).unwrap().wait().unwrap();
    let bytes = wal.stats().bytes_written;
    wal.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn main() {
    if !invoked_as_bench() {
        return;
    }
    let (seconds, rounds, root) = settings("database");
    if wanted("commits") {
        commits(&root, seconds, rounds);
    }
    if wanted("batch50") {
        batch50(&root, seconds, rounds);
    }
    if wanted("gets") {
        gets(&root, seconds, rounds);
    }
    if wanted("recovery") {
        recovery(&root);
    }
}

/// Section 1: 1-put transactions against the bare log.
fn commits(root: &Path, seconds: f64, rounds: usize) {
    let counts = env_counts("WALDB_BENCH_THREADS", &[1, 4, 16, 64]);
    // The log's record gets the payload that makes it as long as the database's.
    let (_, db_record) = db_run(root, 1, 1, 0.05);
    let payload = (db_record - record_header_bytes(root)) as usize;
    let mut rates = vec![[Vec::new(), Vec::new()]; counts.len()];
    let mut lats = vec![[Vec::new(), Vec::new()]; counts.len()];
    for round in 0..rounds {
        for (ci, &n) in counts.iter().enumerate() {
            let wal = wal_run(root, n, payload, seconds);
            let (db, _) = db_run(root, n, 1, seconds);
            for (vi, run) in [wal, db].into_iter().enumerate() {
                rates[ci][vi].push(run.rate());
                lats[ci][vi].extend_from_slice(&run.latencies);
            }
        }
        eprintln!("commits: round {} of {rounds} done", round + 1);
    }
    println!("\n| threads | variant | commits/s (median) | p50 µs | p99 µs | db / log |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (ci, &n) in counts.iter().enumerate() {
        let medians = [median(rates[ci][0].clone()), median(rates[ci][1].clone())];
        for (vi, name) in
            [format!("log alone, {db_record}-byte records"), "db, 1-put transactions".to_owned()]
                .iter()
                .enumerate()
        {
            let l = &mut lats[ci][vi];
            l.sort_unstable();
            let ratio =
                if vi == 1 { format!("{:.0} %", 100.0 * medians[1] / medians[0]) } else { String::new() };
            println!(
                "| {n} | {name} | {:.0} | {:.0} | {:.0} | {ratio} |",
                medians[vi],
                percentile(l, 0.50) as f64 / 1e3,
                percentile(l, 0.99) as f64 / 1e3,
            );
        }
    }
}

/// Section 2: 50-put transactions at 10 threads.
fn batch50(root: &Path, seconds: f64, rounds: usize) {
    let mut rates = Vec::new();
    let mut lats = Vec::new();
    for _ in 0..rounds {
        let (run, _) = db_run(root, 10, 50, seconds);
        rates.push(run.rate());
        lats.extend_from_slice(&run.latencies);
    }
    lats.sort_unstable();
    let txns = median(rates);
    println!("\n| 10 threads, 50 puts per transaction, Sync | transactions/s | puts/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| median of {rounds} | {txns:.0} | {:.0} | {:.0} | {:.0} |",
        txns * 50.0,
        percentile(&lats, 0.50) as f64 / 1e3,
        percentile(&lats, 0.99) as f64 / 1e3
    );
}

/// A xorshift step: random keys without a dependency.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Section 3: one thread's snapshot reads.
fn gets(root: &Path, seconds: f64, rounds: usize) {
    const KEYS: u64 = 1_000_000;
    let dir = fresh(root, "gets");
    let (db, _) = Db::open_opts(&dir, db_options()).unwrap();
    let value = vec![7u8; VALUE];
    for chunk in 0..KEYS / 10_000 {
        let mut txn = db.begin_with(Isolation::Snapshot).unwrap();
        for i in 0..10_000 {
            txn.put(&key(0, chunk * 10_000 + i), &value).unwrap();
        }
        txn.commit_with(Durability::None).wait().unwrap();
    }
    db.sync().unwrap();
    let read = |what: usize| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ what as u64;
        let start = Instant::now();
        let mut n = 0u64;
        let mut found = 0u64;
        let mut txn = match what {
            1 => Some(db.begin_with(Isolation::Snapshot).unwrap()),
            2 => Some(db.begin_with(Isolation::Serializable).unwrap()),
            _ => None,
        };
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..1000 {
                let k = key(0, next(&mut x) % KEYS);
                let v = match &mut txn {
                    Some(t) => t.get(&k).unwrap(),
                    None => db.get(&k).unwrap(),
                };
                found += u64::from(v.is_some());
            }
            n += 1000;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        assert_eq!(found, n, "every key read was written");
        drop(txn);
        rate
    };
    let names =
        ["Db::get (a snapshot per read)", "Transaction::get, Snapshot", "Transaction::get, Serializable"];
    let mut rates = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, r) in rates.iter_mut().enumerate() {
            r.push(read(i));
        }
    }
    println!("\n| one thread, random keys of {KEYS} | gets/s (median of {rounds}) |");
    println!("|---|---:|");
    for (name, r) in names.iter().zip(rates) {
        println!("| {name} | {:.0} |", median(r));
    }
    db.close().unwrap();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Drops the page cache; false when this process may not.
fn drop_page_cache() -> bool {
    // `sync` first: only clean pages can be dropped.
    let synced = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok()
}

/// Section 4: recovery of a large log.
fn recovery(root: &Path) {
    let mib = env_f64("WALDB_BENCH_RECOVERY_MIB", 1024.0) as u64;
    let dir = fresh(root, "recovery");
    let (db, _) = Db::open_opts(&dir, db_options()).unwrap();
    let value = vec![5u8; 1024];
    let mut n = 0u64;
    let built = Instant::now();
    while !n.is_multiple_of(1024) || db.stats().wal.bytes_written < mib << 20 {
        let mut txn = db.begin_with(Isolation::Snapshot).unwrap();
        for i in 0..8 {
            txn.put(&key(1, n * 8 + i), &value).unwrap();
        }
        txn.commit_with(Durability::None).wait().unwrap();
        n += 1;
    }
    db.close().unwrap();
    let bytes = db.stats().wal.bytes_written;
    assert!(bytes >= mib << 20, "stats after close count every byte");
    drop(db);
    eprintln!(
        "recovery: wrote {n} transactions, {bytes} bytes of log in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    println!(
        "\n| recovery of {:.0} MiB of log, {n} transactions | seconds | MB/s | transactions/s |",
        bytes as f64 / 1048576.0
    );
    println!("|---|---:|---:|---:|");
    for cold in [true, false] {
        if cold && !drop_page_cache() {
            println!("| page cache cold | (cannot drop caches here) | | |");
            continue;
        }
        let start = Instant::now();
        let (db, report) = Db::open_opts(&dir, db_options().with_recovery(RecoveryMode::default())).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(report.txns_replayed, n, "every transaction replayed");
        assert_eq!(db.stats().keys, n * 8);
        println!(
            "| page cache {} | {secs:.2} | {:.0} | {:.0} |",
            if cold { "cold" } else { "warm" },
            bytes as f64 / 1e6 / secs,
            n as f64 / secs
        );
        db.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
