//! A lone committer: waldb's 1-put `Sync` transactions against okaywal's entries of the same
//! key and value, alternated per commit (so that both see the disk in the same mood), one
//! thread. Prints p50 / p90 / p99 / mean µs of each.
//!
//! ```text
//! cargo run --release --bin lone -- [commits=5000]    # data in WALDB_BENCH_DIR (default target/bench-lone)
//! ```
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(5000, |s| s.parse().expect("a number of commits"));
    let root = std::env::var_os("WALDB_BENCH_DIR")
        .map_or_else(|| std::path::PathBuf::from("target/bench-lone"), std::path::PathBuf::from);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let options = waldb::DbOptions { auto_checkpoint_bytes: None, ..waldb::DbOptions::default() };
    let (db, _) = waldb::Db::open_opts(root.join("waldb"), options).unwrap();
    let log = okaywal::WriteAheadLog::recover(root.join("okaywal"), okaywal::LogVoid).unwrap();
    // Let waldb prepare its next segment (64 MiB of zeros) before the clock starts.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let value = [7u8; 100];
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n as u64 {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.wrapping_mul(0x9E3779B97F4A7C15).to_be_bytes());
        let t = Instant::now();
        let mut txn = db.begin().unwrap();
        txn.put(&key, &value).unwrap();
        txn.commit_with(waldb::wal::Durability::Sync).wait().unwrap();
        a.push(t.elapsed().as_nanos() as f64 / 1e3);
        let t = Instant::now();
        let mut entry = log.begin_entry().unwrap();
        let mut chunk = Vec::with_capacity(116);
        chunk.extend_from_slice(&key);
        chunk.extend_from_slice(&value);
        entry.write_chunk(&chunk).unwrap();
        entry.commit().unwrap();
        b.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    drop((db, log));
    let _ = std::fs::remove_dir_all(&root);
    for (name, mut v) in [("waldb", a), ("okaywal", b)] {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let p = |q: f64| v[((q * v.len() as f64) as usize).min(v.len() - 1)];
        println!("{name:8} p50 {:.1} p90 {:.1} p99 {:.1} mean {:.1} µs", p(0.5), p(0.9), p(0.99), mean);
    }
}
