//! db_bench-style workloads (after LevelDB's and RocksDB's `db_bench`) over any engine, shared by
//! `waldb bench --db-bench` (waldb alone) and the peers program's `dbbench` section (waldb,
//! RocksDB, fjall, redb, each in a process of its own).
//!
//! One thread, in this order, on `keys` pairs of a 16-byte key and a 100-byte value of random
//! (incompressible) bytes, or with `compressible` of 50 random bytes twice:
//!
//! 1. `fillrandom`: every key once, in a random order, in non-durable batches of `batch` puts;
//! 2. `overwrite`: `overwrites` puts of random existing keys (new values), batched the same;
//! 3. close, then reopen (timed: a clean close — `Db::close` for waldb, which flushes its
//!    memtables; a drop for the others — then an open);
//! 4. `readrandom`: point reads of random existing keys for `seconds` (each must be found);
//! 5. `readmissing`: point reads of random absent keys for `seconds`, each sorting right
//!    after a present key (each must be absent);
//! 6. `seekrandom`: a seek to a random existing key and the 100 pairs from it, for `seconds`;
//! 7. `readseq`: every pair in key order (the count must be `keys`).
//!
//! Besides the operations per second: the process's peak RSS (`VmHWM`) and its RSS at the end
//! of the load, the bytes it wrote to the disk (`/proc/self/io`, `write_bytes`) from the open
//! to the close per byte committed (write amplification: the log, flushes and compactions
//! that ran before the close), the directory's size after the close per byte of live data
//! (`keys` × 116), and each engine's own counters where it has them (waldb: data-block reads).

#![allow(dead_code)] // The `waldb` tool uses a subset.

use std::path::Path;
use std::time::{Duration, Instant};

/// Key and value sizes, as `db_bench`'s defaults.
pub const KEY: usize = 16;
/// See [`KEY`].
pub const VALUE: usize = 100;

/// One engine under test, opened on a directory.
pub trait Engine {
    /// Writes `pairs` as one atomic batch, not synced (each engine's log still takes it).
    fn write(&self, pairs: &[([u8; KEY], [u8; VALUE])]);
    /// Whether `key` is present.
    fn get(&self, key: &[u8]) -> bool;
    /// Reads up to `n` pairs from the first key at or after `key`: how many it read.
    fn seek(&self, key: &[u8], n: usize) -> usize;
    /// Reads every pair in key order: how many.
    fn scan(&self) -> u64;
    /// Closes cleanly (by default: drops it).
    fn close(self: Box<Self>) {}
    /// Data blocks read from the disk so far, if the engine counts them.
    fn block_reads(&self) -> Option<u64> {
        None
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pairs loaded by `fillrandom`.
    pub keys: u64,
    /// Puts per batch in the loads.
    pub batch: usize,
    /// Puts of `overwrite`.
    pub overwrites: u64,
    /// Seconds of each timed read workload.
    pub seconds: f64,
    /// Each engine's block cache, in bytes.
    pub cache_bytes: u64,
    /// Values that compress to about half (50 random bytes, then the same 50 again), as
    /// `db_bench`'s default compression ratio; random bytes otherwise.
    pub compressible: bool,
}

impl Config {
    /// From `WALDB_DBBENCH_KEYS` (default 50,000,000), `WALDB_DBBENCH_BATCH` (100),
    /// `WALDB_DBBENCH_OVERWRITES` (as keys), `WALDB_DBBENCH_SECONDS` (20) and
    /// `WALDB_DBBENCH_CACHE_MIB` (256) and `WALDB_DBBENCH_COMPRESSIBLE` (0; 1: compressible
    /// values).
    pub fn from_env() -> Config {
        let num = |name: &str, default: f64| -> f64 {
            std::env::var(name)
                .ok()
                .map_or(default, |s| s.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        };
        let keys = num("WALDB_DBBENCH_KEYS", 50e6) as u64;
        Config {
            keys,
            batch: num("WALDB_DBBENCH_BATCH", 100.0).max(1.0) as usize,
            overwrites: num("WALDB_DBBENCH_OVERWRITES", keys as f64) as u64,
            seconds: num("WALDB_DBBENCH_SECONDS", 20.0),
            cache_bytes: (num("WALDB_DBBENCH_CACHE_MIB", 256.0) * 1048576.0) as u64,
            compressible: num("WALDB_DBBENCH_COMPRESSIBLE", 0.0) != 0.0,
        }
    }
}

/// One engine's figures.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Engine name.
    pub engine: String,
    /// Operations per second of each workload, in the order of [`WORKLOADS`].
    pub ops: [f64; 6],
    /// RSS at the end of the load, MiB.
    pub rss_loaded_mib: f64,
    /// Peak RSS of the whole run, MiB.
    pub rss_peak_mib: f64,
    /// Bytes written to the disk from the open to the close, per byte committed.
    pub write_amp: f64,
    /// Directory size after the close, per byte of live data.
    pub space_amp: f64,
    /// Seconds to close after the load.
    pub close_s: f64,
    /// Seconds to reopen after that close.
    pub reopen_s: f64,
    /// Data-block reads per `readmissing` get, if the engine counts them.
    pub missing_block_reads: Option<f64>,
    /// Data-block reads per `readrandom` get, if the engine counts them.
    pub random_block_reads: Option<f64>,
}

/// Workload names, in the order of [`Report::ops`].
pub const WORKLOADS: [&str; 6] =
    ["fillrandom", "overwrite", "readrandom", "readmissing", "seekrandom", "readseq"];

/// A bijection of `u64` (splitmix64's finaliser): distinct indices give distinct keys, in an
/// order unrelated to the index.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of index `i`: present keys end in 0, absent ones (`missing`) in 1, so each absent
/// key sorts right after a present one.
pub fn key(i: u64, missing: bool) -> [u8; KEY] {
    let mut k = [0u8; KEY];
    k[..8].copy_from_slice(&scramble(i).to_be_bytes());
    k[KEY - 1] = u8::from(missing);
    k
}

/// A small fast generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn value(&mut self, compressible: bool) -> [u8; VALUE] {
        let mut v = [0u8; VALUE];
        let random = if compressible { VALUE / 2 } else { VALUE };
        for chunk in v[..random].chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if compressible {
            v.copy_within(..VALUE / 2, VALUE / 2);
        }
        v
    }
}

/// A figure of `/proc/self/status` (`VmRSS`, `VmHWM`) in MiB, 0 where there is none.
pub fn status_mib(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Bytes this process has caused to be written to the disk (`/proc/self/io`).
fn written_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok()).unwrap_or(0)
}

/// Total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Runs `op` in a loop for `seconds` (checking the clock every 64 calls): calls per second.
fn timed(seconds: f64, mut op: impl FnMut()) -> f64 {
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..64 {
            op();
        }
        n += 64;
        if start.elapsed() >= limit {
            return n as f64 / start.elapsed().as_secs_f64();
        }
    }
}

/// Puts `count` pairs of the keys `pick` chooses, in batches: puts per second.
fn load(
    engine: &dyn Engine,
    config: &Config,
    count: u64,
    rng: &mut Rng,
    mut pick: impl FnMut(&mut Rng, u64) -> u64,
) -> f64 {
    let start = Instant::now();
    let mut batch = Vec::with_capacity(config.batch);
    let mut tick = Instant::now();
    for n in 0..count {
        let i = pick(rng, n);
        batch.push((key(i, false), rng.value(config.compressible)));
        if batch.len() == config.batch || n + 1 == count {
            engine.write(&batch);
            batch.clear();
        }
        if n % 65536 == 0 && tick.elapsed() >= Duration::from_secs(30) {
            tick = Instant::now();
            eprintln!(
                "  {n} of {count} ({:.0}/s, RSS {:.0} MiB)",
                n as f64 / start.elapsed().as_secs_f64(),
                status_mib("VmRSS")
            );
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Runs the workloads on a fresh directory `dir` (removed first, and after), opening the
/// engine with `open`.
pub fn run(name: &str, dir: &Path, config: &Config, open: &dyn Fn(&Path) -> Box<dyn Engine>) -> Report {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut report = Report { engine: name.to_string(), ..Report::default() };
    let mut rng = Rng(0x5eed_0000_0000_0001);
    let written0 = written_bytes();
    let engine = open(dir);

    eprintln!("{name}: fillrandom {} keys, batches of {}", config.keys, config.batch);
    // Index order: every key exactly once, and the keys (scrambled) in a random order.
    report.ops[0] = load(&*engine, config, config.keys, &mut rng, |_, n| n);
    eprintln!("{name}: overwrite {}", config.overwrites);
    report.ops[1] = load(&*engine, config, config.overwrites, &mut rng, |r, _| r.below(config.keys));
    report.rss_loaded_mib = status_mib("VmRSS");

    let t = Instant::now();
    engine.close();
    report.close_s = t.elapsed().as_secs_f64();
    let committed = (config.keys + config.overwrites) as f64 * (KEY + VALUE) as f64;
    report.write_amp = (written_bytes() - written0) as f64 / committed;
    report.space_amp = dir_bytes(dir) as f64 / (config.keys as f64 * (KEY + VALUE) as f64);
    let t = Instant::now();
    let engine = open(dir);
    report.reopen_s = t.elapsed().as_secs_f64();
    eprintln!("{name}: closed in {:.2} s, reopened in {:.2} s", report.close_s, report.reopen_s);

    let n = config.keys;
    let reads0 = engine.block_reads();
    let mut gets = 0u64;
    report.ops[2] = timed(config.seconds, || {
        gets += 1;
        assert!(engine.get(&key(rng.below(n), false)), "{name}: a loaded key is missing");
    });
    report.random_block_reads = engine.block_reads().zip(reads0).map(|(b, a)| (b - a) as f64 / gets as f64);
    let reads0 = engine.block_reads();
    let mut gets = 0u64;
    report.ops[3] = timed(config.seconds, || {
        gets += 1;
        assert!(!engine.get(&key(rng.below(n), true)), "{name}: an absent key is present");
    });
    report.missing_block_reads = engine.block_reads().zip(reads0).map(|(b, a)| (b - a) as f64 / gets as f64);
    report.ops[4] = timed(config.seconds, || {
        let i = rng.below(n);
        let read = engine.seek(&key(i, false), 100);
        assert!(read >= 1, "{name}: a seek to a loaded key found nothing");
    });
    let t = Instant::now();
    let count = engine.scan();
    assert_eq!(count, n, "{name}: readseq read {count} pairs of {n}");
    report.ops[5] = count as f64 / t.elapsed().as_secs_f64();
    report.rss_peak_mib = status_mib("VmHWM");
    engine.close();
    let _ = std::fs::remove_dir_all(dir);
    report
}

impl Report {
    /// One line of `key=value` fields (a child process's answer to the peers program).
    pub fn to_line(&self) -> String {
        let opt = |o: Option<f64>| o.map_or("-".to_string(), |v| format!("{v}"));
        format!(
            "DBBENCH engine={} ops={} rss_loaded={} rss_peak={} wamp={} samp={} close={} reopen={} miss_reads={} rand_reads={}",
            self.engine,
            self.ops.map(|o| o.to_string()).join(","),
            self.rss_loaded_mib,
            self.rss_peak_mib,
            self.write_amp,
            self.space_amp,
            self.close_s,
            self.reopen_s,
            opt(self.missing_block_reads),
            opt(self.random_block_reads),
        )
    }

    /// Parses [`Report::to_line`]'s output.
    pub fn from_line(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("DBBENCH ")?;
        let mut r = Report::default();
        for field in rest.split(' ') {
            let (k, v) = field.split_once('=')?;
            let f = || v.parse::<f64>().ok();
            match k {
                "engine" => r.engine = v.to_string(),
                "ops" => {
                    for (slot, o) in r.ops.iter_mut().zip(v.split(',')) {
                        *slot = o.parse().ok()?;
                    }
                }
                "rss_loaded" => r.rss_loaded_mib = f()?,
                "rss_peak" => r.rss_peak_mib = f()?,
                "wamp" => r.write_amp = f()?,
                "samp" => r.space_amp = f()?,
                "close" => r.close_s = f()?,
                "reopen" => r.reopen_s = f()?,
                "miss_reads" => r.missing_block_reads = f(),
                "rand_reads" => r.random_block_reads = f(),
                _ => {}
            }
        }
        Some(r)
    }
}

/// A table's header row (`first`, then one column per engine) and its alignment row.
fn table_header(out: &mut String, first: &str, reports: &[Report]) {
    use std::fmt::Write as _;
    let _ = write!(out, "| {first} |");
    for r in reports {
        let _ = write!(out, " {} |", r.engine);
    }
    let _ = write!(out, "\n|---|");
    for _ in reports {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
}

/// The reports as markdown tables: operations per second, then the costs.
pub fn markdown(config: &Config, reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} pairs of {KEY} + {VALUE} bytes ({} values), {} overwrites, batches of {}, {:.0} s per read workload, {} MiB block cache, one thread.\n",
        config.keys,
        if config.compressible { "compressible" } else { "random" },
        config.overwrites,
        config.batch,
        config.seconds,
        config.cache_bytes >> 20
    );
    table_header(&mut out, "workload (ops/s)", reports);
    for (w, name) in WORKLOADS.iter().enumerate() {
        let _ = write!(out, "| {name} |");
        for r in reports {
            let _ = write!(out, " {:.0} |", r.ops[w]);
        }
        out.push('\n');
    }
    let rows: [CostRow; 8] = [
        ("RSS at the end of the load, MiB", &|r| format!("{:.0}", r.rss_loaded_mib)),
        ("peak RSS, MiB", &|r| format!("{:.0}", r.rss_peak_mib)),
        ("write amplification (disk bytes / committed)", &|r| format!("{:.2}", r.write_amp)),
        ("space amplification (dir bytes / live)", &|r| format!("{:.2}", r.space_amp)),
        ("close after the load, s", &|r| format!("{:.2}", r.close_s)),
        ("reopen after a clean close, s", &|r| format!("{:.2}", r.reopen_s)),
        ("data-block reads per readrandom get", &|r| {
            r.random_block_reads.map_or("-".into(), |v| format!("{v:.3}"))
        }),
        ("data-block reads per readmissing get", &|r| {
            r.missing_block_reads.map_or("-".into(), |v| format!("{v:.4}"))
        }),
    ];
    out.push('\n');
    table_header(&mut out, "cost", reports);
    for (label, f) in rows {
        let _ = write!(out, "| {label} |");
        for r in reports {
            let _ = write!(out, " {} |", f(r));
        }
        out.push('\n');
    }
    out
}

/// Reads every pair of `pairs` (each must be `Ok`): how many.
pub fn consume<K, V, E: std::fmt::Debug>(pairs: impl Iterator<Item = Result<(K, V), E>>) -> u64 {
    let mut n = 0;
    for p in pairs {
        std::hint::black_box(p.unwrap());
        n += 1;
    }
    n
}

/// A row of the costs table: its label and how a report fills its cell.
type CostRow = (&'static str, &'static dyn Fn(&Report) -> String);

/// waldb under the workloads: default options but the cache.
pub struct WaldbEngine(pub waldb::Db);

impl WaldbEngine {
    /// Opens `dir` with a block cache of `cache_bytes` and tables of `compression`.
    pub fn open(dir: &Path, cache_bytes: u64, compression: waldb::Compression) -> WaldbEngine {
        let options = waldb::DbOptions::default().with_cache_bytes(cache_bytes).with_compression(compression);
        WaldbEngine(waldb::Db::open_opts(dir, options).unwrap().0)
    }
}

impl Engine for WaldbEngine {
    fn write(&self, pairs: &[([u8; KEY], [u8; VALUE])]) {
        let mut txn = self.0.begin().unwrap();
        for (k, v) in pairs {
            txn.put(k, v).unwrap();
        }
        txn.commit_with(waldb::wal::Durability::None).wait().unwrap();
    }

    fn get(&self, key: &[u8]) -> bool {
        self.0.get(key).unwrap().is_some()
    }

    fn seek(&self, key: &[u8], n: usize) -> usize {
        consume(self.0.range(key..).take(n)) as usize
    }

    fn scan(&self) -> u64 {
        consume(self.0.range::<std::ops::RangeFull>(..))
    }

    fn close(self: Box<Self>) {
        let s = self.0.stats();
        let mib = |b: u64| b >> 20;
        eprintln!(
            "waldb: wrote log {} MiB in {} new segments ({} recycled), flushes {} MiB, compactions {} MiB (into levels 1.. {:?} MiB); {} commits slowed, {} stalls ({:.1} s)",
            mib(s.wal.bytes_written),
            s.wal.rotations,
            s.wal.segments_recycled,
            mib(s.flush_bytes_written),
            mib(s.compaction_bytes_written),
            s.compaction_bytes_written_per_level[1..].iter().map(|&b| mib(b)).collect::<Vec<_>>(),
            s.slowdowns,
            s.stalls,
            s.stall_time.as_secs_f64()
        );
        self.0.close().unwrap();
    }

    fn block_reads(&self) -> Option<u64> {
        Some(self.0.stats().block_reads)
    }
}
