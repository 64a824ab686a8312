//! waldb side by side with its peers on the same disk, in one run: SQLite (WAL mode,
//! `synchronous=FULL`), redb (`Durability::Immediate`), fjall (`PersistMode::SyncData` per
//! commit), okaywal (a bare log: each entry committed with its fsync), RocksDB (`sync` writes;
//! `--features rocksdb`, it compiles for a long time), the disk's raw fdatasync latency and two
//! ideal group commits writing waldb's bytes per commit with nothing else on the path.
//!
//! ```text
//! cd benches/peers && cargo run --release                      # about 3 minutes
//! cd benches/peers && cargo run --release --features rocksdb   # ~25 min to build RocksDB;
//!                                   # bindgen needs libclang (LIBCLANG_PATH=/usr/lib/llvm-14/lib)
//! WALDB_BENCH_SECONDS=0.5 WALDB_BENCH_ROUNDS=3 WALDB_BENCH_THREADS=1,4 cargo run --release
//! WALDB_BENCH_ENGINES=waldb,okaywal cargo run --release        # a subset (ideals always run)
//! WALDB_BENCH_ONLY=commits,gets cargo run --release            # some sections
//! WALDB_BENCH_THREADS=1,2,4,8,16,32,64,128 cargo run --release # a many-core machine
//! WALDB_BENCH_VERBOSE=1 cargo run --release                     # each commits cell on stderr
//! WALDB_BENCH_ONLY=lone cargo run --release                     # waldb and okaywal alternated per commit
//! WALDB_BENCH_ONLY=blocks cargo run --release                   # ... alternated in blocks of commits
//! WALDB_BENCH_ONLY=dbbench cargo run --release --features rocksdb   # db_bench-style, 50M pairs:
//!                                   # about an hour per engine; WALDB_DBBENCH_KEYS=1000000 for a taste
//! ```
//!
//! Workloads (sections for `WALDB_BENCH_ONLY`), every engine in turn within a round (so they
//! share the disk's mood), `WALDB_BENCH_ROUNDS` rounds (default 3) of `WALDB_BENCH_SECONDS`
//! (default 1) per cell; medians over the rounds, latency percentiles over every commit of
//! every round:
//!
//! 1. `commits`: durable 1-put transactions (16-byte key, 100-byte value) at
//!    `WALDB_BENCH_THREADS` threads (default 1, 4, 16, 64), a fresh store per cell;
//! 2. `nondurable` (only when asked for in `WALDB_BENCH_ONLY`): non-durable 1-put
//!    transactions at `WALDB_BENCH_NONDURABLE_THREADS` threads (default: as commits), a fresh
//!    store per cell — each engine's CPU path with no fdatasync to wait for;
//! 3. `gets`: point reads of random keys, each in a read snapshot of its own, at
//!    `WALDB_BENCH_GET_THREADS` threads (default: as commits), from one store per engine loaded
//!    with `WALDB_BENCH_GET_KEYS` keys (default 1,000,000) in non-durable 10,000-put
//!    transactions (okaywal, a log, has no reads);
//! 4. `throughput`: durable 50-put transactions at 10 threads, and non-durable 1-put
//!    transactions from one thread (okaywal has no such mode), a fresh store per cell;
//! 5. `lone` (only when asked for): one thread, a durable 1-put waldb transaction, then an
//!    okaywal entry of the same key and value, alternated per commit (so that both see the
//!    disk in the same mood) `WALDB_BENCH_LONE_COMMITS` times each (default 5,000), keys
//!    scattered: p50 / p90 / p99 / mean µs of each;
//! 6. `blocks` (only when asked): one thread, waldb and okaywal each committing durable 1-put
//!    transactions of keys in order (as `commits` at 1 thread), and the bare write waldb makes
//!    for such a commit (`O_DIRECT` + `RWF_DSYNC`, nothing else), in tight loops of
//!    `WALDB_BENCH_BLOCK` commits (default 250), alternated for `WALDB_BENCH_BLOCKS` rounds
//!    (default 40), all open throughout: the 1-thread cell of `commits` with the disk's swings
//!    between cells taken out. Commits/s, p50 and p99 of each, waldb's ratio to okaywal and in
//!    how many rounds it was the faster, and what waldb costs over the bare write.
//! 7. `dbbench` (only when asked, and then alone): db_bench-style workloads (fillrandom,
//!    overwrite, reopen, readrandom, readmissing, seekrandom + next 100, readseq) on waldb,
//!    RocksDB and fjall, each in a process of its own: see `src/dbbench.rs` and
//!    `benches/common/dbbench.rs`; written to `dbbench.md`.
//!
//! Output: markdown tables on stdout, also written with an SVG chart of commits/s against
//! threads to `WALDB_BENCH_OUT` (default `docs/bench/` at the repository root) as
//! `peers.md` and `peers.svg`. Data lives in `WALDB_BENCH_DIR` (default
//! `benches/peers/target/bench-data`): it must be on the disk to measure, not a tmpfs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::ReadableDatabase;
use rusqlite::OptionalExtension;

#[path = "../../common/mod.rs"]
mod common;
mod dbbench;
use common::ideal::{ideal_run, raw_fdatasync};
use common::{Run, await_prepared, drive, env_counts, env_f64, key, median, percentile, wanted};

const VALUE: usize = 100;
/// waldb's encoded size of a 1-put transaction of a 16-byte key and a 100-byte value: what
/// the ideals write per commit.
const WALDB_RECORD: usize = 177;

/// One store under test: `txn` commits one transaction of `keys`, durably or not; `get` reads
/// one key in a read snapshot of its own and says whether it was found.
trait Store: Send + Sync {
    fn txn(&self, thread: usize, keys: &[[u8; 16]], value: &[u8], durable: bool);
    fn get(&self, thread: usize, key: &[u8; 16]) -> bool;
}

/// The engines, in table order.
const ENGINES: &[&str] = &["waldb", "okaywal", "SQLite", "redb", "fjall", "RocksDB"];

fn enabled(name: &str) -> bool {
    if name == "RocksDB" && !cfg!(feature = "rocksdb") {
        return false;
    }
    match std::env::var("WALDB_BENCH_ENGINES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|e| e.trim().eq_ignore_ascii_case(name)),
        _ => true,
    }
}

/// Opens a fresh store of engine `name` in `dir` for `threads` threads.
fn open(name: &str, dir: &Path, threads: usize) -> Box<dyn Store> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    match name {
        "waldb" => Box::new(WaldbStore::open(dir)),
        "okaywal" => Box::new(OkaywalStore(okaywal::WriteAheadLog::recover(dir, okaywal::LogVoid).unwrap())),
        "SQLite" => Box::new(SqliteStore::open(dir, threads)),
        "redb" => Box::new(RedbStore(redb::Database::create(dir.join("db.redb")).unwrap())),
        "fjall" => Box::new(FjallStore::open(dir)),
        #[cfg(feature = "rocksdb")]
        "RocksDB" => Box::new(RocksStore(rocksdb::DB::open_default(dir).unwrap())),
        other => unreachable!("no engine {other}"),
    }
}

struct WaldbStore(waldb::Db);

impl WaldbStore {
    fn open(dir: &Path) -> Self {
        let options = waldb::DbOptions::default().with_memtable_bytes(None);
        let (db, _) = waldb::Db::open_opts(dir, options).unwrap();
        // Let the log prepare its next segment before the clock starts (its 64 MiB of zeros
        // would otherwise land inside the first timed second).
        let mut warm = db.begin().unwrap();
        warm.put(b"warm", b"up").unwrap();
        warm.commit_blocking().unwrap();
        await_prepared(|| db.stats().wal.segments_prepared);
        WaldbStore(db)
    }
}

impl Store for WaldbStore {
    fn txn(&self, _: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        let mut txn = self.0.begin().unwrap();
        for k in keys {
            txn.put(k, value).unwrap();
        }
        let d = if durable { waldb::wal::Durability::Sync } else { waldb::wal::Durability::None };
        txn.commit_with(d).wait().unwrap();
    }

    fn get(&self, _: usize, key: &[u8; 16]) -> bool {
        self.0.get(key).unwrap().is_some()
    }
}

struct OkaywalStore(okaywal::WriteAheadLog);

impl Store for OkaywalStore {
    fn txn(&self, _: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        assert!(durable, "okaywal commits are always durable");
        let mut entry = self.0.begin_entry().unwrap();
        for k in keys {
            let mut chunk = Vec::with_capacity(k.len() + value.len());
            chunk.extend_from_slice(k);
            chunk.extend_from_slice(value);
            entry.write_chunk(&chunk).unwrap();
        }
        entry.commit().unwrap();
    }

    fn get(&self, _: usize, _: &[u8; 16]) -> bool {
        unreachable!("okaywal is a log: it has no point reads")
    }
}

/// One connection per thread (a connection is not shared between threads), WAL mode.
struct SqliteStore {
    connections: Vec<Mutex<rusqlite::Connection>>,
}

impl SqliteStore {
    fn open(dir: &Path, threads: usize) -> Self {
        let path = dir.join("db.sqlite");
        let connections = (0..threads.max(1))
            .map(|i| {
                let c = rusqlite::Connection::open(&path).unwrap();
                c.busy_timeout(Duration::from_secs(60)).unwrap();
                c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").unwrap();
                if i == 0 {
                    c.execute_batch(
                        "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;",
                    )
                    .unwrap();
                }
                Mutex::new(c)
            })
            .collect();
        SqliteStore { connections }
    }
}

impl Store for SqliteStore {
    fn txn(&self, thread: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        let mut c = self.connections[thread].lock().unwrap();
        let sync = if durable { "FULL" } else { "OFF" };
        c.pragma_update(None, "synchronous", sync).unwrap();
        let txn = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        {
            let mut stmt = txn.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)").unwrap();
            for k in keys {
                stmt.execute((&k[..], value)).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn get(&self, thread: usize, key: &[u8; 16]) -> bool {
        let c = self.connections[thread].lock().unwrap();
        let mut stmt = c.prepare_cached("SELECT length(v) FROM kv WHERE k = ?1").unwrap();
        let found: Option<i64> = stmt.query_row([&key[..]], |row| row.get(0)).optional().unwrap();
        found.is_some()
    }
}

struct RedbStore(redb::Database);

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

impl Store for RedbStore {
    fn txn(&self, _: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        let mut txn = self.0.begin_write().unwrap();
        let d = if durable { redb::Durability::Immediate } else { redb::Durability::None };
        txn.set_durability(d).unwrap();
        {
            let mut table = txn.open_table(REDB_TABLE).unwrap();
            for k in keys {
                table.insert(&k[..], value).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn get(&self, _: usize, key: &[u8; 16]) -> bool {
        let txn = self.0.begin_read().unwrap();
        let table = txn.open_table(REDB_TABLE).unwrap();
        table.get(&key[..]).unwrap().is_some()
    }
}

struct FjallStore {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

impl FjallStore {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir).open().unwrap();
        let keyspace = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).unwrap();
        FjallStore { db, keyspace }
    }
}

impl Store for FjallStore {
    fn txn(&self, _: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        let mut batch = self.db.batch();
        for k in keys {
            batch.insert(&self.keyspace, &k[..], value);
        }
        batch.commit().unwrap();
        if durable {
            self.db.persist(fjall::PersistMode::SyncData).unwrap();
        }
    }

    fn get(&self, _: usize, key: &[u8; 16]) -> bool {
        self.keyspace.get(key).unwrap().is_some()
    }
}

#[cfg(feature = "rocksdb")]
struct RocksStore(rocksdb::DB);

#[cfg(feature = "rocksdb")]
impl Store for RocksStore {
    fn txn(&self, _: usize, keys: &[[u8; 16]], value: &[u8], durable: bool) {
        let mut batch = rocksdb::WriteBatch::default();
        for k in keys {
            batch.put(k, value);
        }
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(durable);
        self.0.write_opt(batch, &options).unwrap();
    }

    fn get(&self, _: usize, key: &[u8; 16]) -> bool {
        self.0.get_pinned(key).unwrap().is_some()
    }
}

/// `threads` threads committing `puts`-put transactions of fresh keys to a fresh store.
fn store_run(name: &str, root: &Path, threads: usize, puts: usize, durable: bool, seconds: f64) -> Run {
    let dir = root.join(name.to_lowercase());
    let store: Arc<dyn Store> = Arc::from(open(name, &dir, threads));
    let value = [7u8; VALUE];
    let s = Arc::clone(&store);
    let run = drive(
        threads,
        seconds,
        Arc::new(move |t, n| {
            let keys: Vec<[u8; 16]> = (0..puts as u64).map(|i| key(t, n * puts as u64 + i)).collect();
            s.txn(t, &keys, &value, durable);
        }),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// A fresh store of engine `name` for `threads` readers, holding keys `key(0, 0..keys)`,
/// loaded in non-durable transactions of 10,000 puts.
fn loaded(name: &str, root: &Path, threads: usize, keys: u64) -> Box<dyn Store> {
    let store = open(name, &root.join(format!("{}-gets", name.to_lowercase())), threads);
    let value = [7u8; VALUE];
    let mut chunk = Vec::with_capacity(10_000);
    for i in 0..keys {
        chunk.push(key(0, i));
        if chunk.len() == 10_000 || i + 1 == keys {
            store.txn(0, &chunk, &value, false);
            chunk.clear();
        }
    }
    store
}

/// `threads` threads reading random loaded keys for `seconds`, each get in a read snapshot of
/// its own: gets/s. Panics if a loaded key is not found.
fn gets_run(store: &dyn Store, threads: usize, keys: u64, seconds: f64) -> f64 {
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, total) = (&stop, &total);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    for _ in 0..256 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        assert!(store.get(t, &key(0, x % keys)), "a loaded key is found");
                    }
                    n += 256;
                }
                total.fetch_add(n, Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Relaxed);
    });
    total.load(Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The rounds of one cell: rates, and every latency.
#[derive(Default)]
struct Cell {
    rates: Vec<f64>,
    latencies: Vec<u64>,
}

impl Cell {
    fn add(&mut self, run: Run, per_txn: usize) {
        self.rates.push(run.rate() * per_txn as f64);
        self.latencies.extend(run.latencies);
    }

    fn median(&self) -> f64 {
        median(self.rates.clone())
    }

    fn p(&mut self, q: f64) -> f64 {
        self.latencies.sort_unstable();
        percentile(&self.latencies, q) as f64 / 1e3
    }
}

/// The write waldb makes for a lone commit, with nothing else: a log of `bytes`-byte records
/// in a 64 MiB file zero-filled past the OS cache, each commit rewriting the 4 KiB pages its
/// record touches with `O_DIRECT` and `RWF_DSYNC` in one call (a ring: it wraps at the end).
/// Linux only.
#[cfg(target_os = "linux")]
struct BareDirect {
    file: std::fs::File,
    /// 8 KiB from a 4 KiB-aligned address: the pages of the current record.
    buf: Vec<u8>,
    at: usize,
    /// The log's length.
    end: u64,
}

#[cfg(target_os = "linux")]
impl BareDirect {
    const FILE: u64 = 64 << 20;

    /// `None` where the filesystem refuses `O_DIRECT` (tmpfs) or the kernel `RWF_DSYNC`.
    fn create(path: &Path) -> Option<Self> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        let mut buf = vec![0u8; (1 << 20) + 4096];
        let at = buf.as_ptr().align_offset(4096);
        for offset in (0..Self::FILE).step_by(1 << 20) {
            file.write_all_at(&buf[at..at + (1 << 20)], offset).ok()?;
        }
        file.sync_all().ok()?;
        buf.truncate(at + 8192);
        // One zero page back over the first: the kernel takes `RWF_DSYNC`.
        let page = &buf[at..at + 4096];
        rustix::io::pwritev2(&file, &[std::io::IoSlice::new(page)], 0, rustix::io::ReadWriteFlags::DSYNC)
            .ok()?;
        Some(BareDirect { file, buf, at, end: 0 })
    }

    /// Appends a record of `bytes` bytes (`bytes` ≤ 4 KiB) and makes it durable.
    fn commit(&mut self, bytes: usize) {
        let page = self.end & !4095;
        let from = (self.end - page) as usize;
        let to = from + bytes;
        let pages = &mut self.buf[self.at..self.at + 8192];
        pages[from..to].fill(0x5a);
        let len = to.next_multiple_of(4096);
        let written = rustix::io::pwritev2(
            &self.file,
            &[std::io::IoSlice::new(&pages[..len])],
            page,
            rustix::io::ReadWriteFlags::DSYNC,
        )
        .expect("a bare O_DIRECT + RWF_DSYNC write");
        assert_eq!(written, len, "a whole write");
        self.end += bytes as u64;
        if self.end & !4095 != page {
            // The record reached the next page: it becomes the first.
            pages.copy_within(4096..8192, 0);
            pages[4096..].fill(0);
        }
        if self.end + 8192 > Self::FILE {
            self.end = 0;
            pages.fill(0);
        }
    }
}

/// Elsewhere there is no bare write to compare with.
#[cfg(not(target_os = "linux"))]
struct BareDirect;

#[cfg(not(target_os = "linux"))]
impl BareDirect {
    fn create(_: &Path) -> Option<Self> {
        None
    }

    fn commit(&mut self, _: usize) {
        unreachable!("never created")
    }
}

fn fmt_rate(r: f64) -> String {
    let n = r.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let seconds = env_f64("WALDB_BENCH_SECONDS", 1.0);
    let rounds = env_f64("WALDB_BENCH_ROUNDS", 3.0) as usize;
    let verbose = std::env::var_os("WALDB_BENCH_VERBOSE").is_some();
    let threads = env_counts("WALDB_BENCH_THREADS", &[1, 4, 16, 64]);
    let root = std::env::var_os("WALDB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"));
    std::fs::create_dir_all(&root).unwrap();
    let out_dir = std::env::var_os("WALDB_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench"));
    if let Ok(engine) = std::env::var("WALDB_DBBENCH_CHILD") {
        dbbench::child(&engine, &root);
        return;
    }
    if std::env::var("WALDB_BENCH_ONLY").is_ok_and(|s| s.split(',').any(|s| s.trim() == "dbbench")) {
        dbbench::parent(&root, &out_dir, enabled);
        return;
    }
    let engines: Vec<&str> = ENGINES.iter().copied().filter(|e| enabled(e)).collect();
    let mut md = String::new();
    let mut say = |line: String| {
        println!("{line}");
        md.push_str(&line);
        md.push('\n');
    };

    let (grow, zeroed) = raw_fdatasync(&root, 1000);
    say(format!(
        "# waldb and its peers — {rounds} interleaved rounds of {seconds} s per cell, data in {}, {} CPUs\n",
        root.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    say(format!(
        "The disk: a 4 KiB write + fdatasync takes {zeroed:.0} µs into a pre-zeroed file and {grow:.0} µs into a \
         growing one (medians of 1000). Every durable figure below includes its fdatasyncs.\n"
    ));

    // 1. Durable 1-put transactions against threads.
    let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    if wanted("commits") {
        let columns: Vec<String> = ["ideal, dedicated leader", "ideal, leader/follower"]
            .iter()
            .map(|s| s.to_string())
            .chain(engines.iter().map(|s| s.to_string()))
            .collect();
        let mut cells: Vec<Vec<Cell>> =
            threads.iter().map(|_| columns.iter().map(|_| Cell::default()).collect()).collect();
        for round in 0..rounds {
            for (ti, &n) in threads.iter().enumerate() {
                for (ci, column) in columns.iter().enumerate() {
                    eprint!("\rround {}/{rounds}: {n} threads, {column}            ", round + 1);
                    let run = match ci {
                        0 => ideal_run(&root, true, n, seconds, WALDB_RECORD),
                        1 => ideal_run(&root, false, n, seconds, WALDB_RECORD),
                        _ => store_run(column, &root, n, 1, true, seconds),
                    };
                    if verbose {
                        eprintln!(
                            "\nround {}: {n} threads, {column}: {:.0} commits/s, p50 {:.1} µs",
                            round + 1,
                            run.rate(),
                            percentile(&run.latencies, 0.5) as f64 / 1e3
                        );
                    }
                    cells[ti][ci].add(run, 1);
                }
            }
        }
        eprintln!();
        say("## Durable 1-put transactions: commits/s (p50, p99)\n".into());
        say(format!("| threads | {} | waldb / best ideal |", columns.join(" | ")));
        say(format!("|---:|{}---:|", "---:|".repeat(columns.len())));
        for (ti, &n) in threads.iter().enumerate() {
            let row = &mut cells[ti];
            let best_ideal = row[0].median().max(row[1].median());
            let mut line = format!("| {n} |");
            for cell in row.iter_mut() {
                let (p50, p99) = (cell.p(0.5), cell.p(0.99));
                line.push_str(&format!(" {} ({p50:.0} µs, {p99:.0} µs) |", fmt_rate(cell.median())));
            }
            let waldb = columns.iter().position(|c| c == "waldb").map(|i| row[i].median());
            line.push_str(&waldb.map_or(" – |".into(), |w| format!(" {:.0} % |", 100.0 * w / best_ideal)));
            say(line);
        }

        series = columns
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                (c.clone(), threads.iter().enumerate().map(|(ti, &n)| (n, cells[ti][ci].median())).collect())
            })
            .collect();
    }

    // 1b. Non-durable 1-put transactions against threads: what each engine's own CPU path
    // allows, with no fdatasync to wait for (okaywal, always durable, sits out).
    let asked = |section: &str| {
        std::env::var("WALDB_BENCH_ONLY").is_ok_and(|only| only.split(',').any(|s| s.trim() == section))
    };
    if asked("nondurable") {
        let nd_threads = env_counts("WALDB_BENCH_NONDURABLE_THREADS", &threads);
        let writers: Vec<&str> = engines.iter().copied().filter(|e| *e != "okaywal").collect();
        let mut cells: Vec<Vec<Cell>> =
            nd_threads.iter().map(|_| writers.iter().map(|_| Cell::default()).collect()).collect();
        for round in 0..rounds {
            for (ti, &n) in nd_threads.iter().enumerate() {
                for (ei, e) in writers.iter().enumerate() {
                    eprint!("\rround {}/{rounds}: non-durable, {n} threads, {e}            ", round + 1);
                    cells[ti][ei].add(store_run(e, &root, n, 1, false, seconds), 1);
                }
            }
        }
        eprintln!();
        say("\n## Non-durable 1-put transactions: txn/s (p50, p99)\n".into());
        say(format!("| threads | {} |", writers.join(" | ")));
        say(format!("|---:|{}", "---:|".repeat(writers.len())));
        for (ti, &n) in nd_threads.iter().enumerate() {
            let mut line = format!("| {n} |");
            for cell in cells[ti].iter_mut() {
                let (p50, p99) = (cell.p(0.5), cell.p(0.99));
                line.push_str(&format!(" {} ({p50:.1} µs, {p99:.0} µs) |", fmt_rate(cell.median())));
            }
            say(line);
        }
    }

    // 1c. A lone committer, waldb and okaywal alternated per commit.
    if asked("lone") {
        let commits = env_f64("WALDB_BENCH_LONE_COMMITS", 5000.0) as u64;
        let names = ["waldb", "okaywal"];
        let stores: Vec<Box<dyn Store>> =
            names.iter().map(|e| open(e, &root.join(format!("{}-lone", e.to_lowercase())), 1)).collect();
        let value = [7u8; VALUE];
        let mut latencies = vec![Vec::new(); names.len()];
        eprint!("\rlone committer: {commits} commits each            ");
        for i in 0..commits {
            let keys = [key(0, i.wrapping_mul(0x9e37_79b9_7f4a_7c15))];
            for (store, out) in stores.iter().zip(&mut latencies) {
                let t = Instant::now();
                store.txn(0, &keys, &value, true);
                out.push(t.elapsed().as_nanos() as u64);
            }
        }
        eprintln!();
        drop(stores);
        for e in names {
            let _ = std::fs::remove_dir_all(root.join(format!("{}-lone", e.to_lowercase())));
        }
        say("\n## A lone committer, alternated per commit: µs\n".into());
        say("| engine | p50 | p90 | p99 | mean |".into());
        say("|---|---:|---:|---:|---:|".into());
        for (e, mut l) in names.iter().zip(latencies) {
            l.sort_unstable();
            let us = |q: f64| percentile(&l, q) as f64 / 1e3;
            let mean = l.iter().sum::<u64>() as f64 / l.len().max(1) as f64 / 1e3;
            say(format!("| {e} | {:.1} | {:.1} | {:.1} | {mean:.1} |", us(0.5), us(0.9), us(0.99)));
        }
    }

    // 1d. One committer in tight loops, waldb, okaywal and the bare write waldb makes
    // alternated in blocks: the 1-thread cell of `commits` without the disk's swings between
    // cells.
    if asked("blocks") {
        let block = (env_f64("WALDB_BENCH_BLOCK", 250.0) as u64).max(1);
        let rounds = (env_f64("WALDB_BENCH_BLOCKS", 40.0) as usize).max(1);
        let mut names = vec!["waldb", "okaywal"];
        let dirs: Vec<PathBuf> = names.iter().map(|e| root.join(format!("{e}-blocks"))).collect();
        let stores: Vec<Box<dyn Store>> = names.iter().zip(&dirs).map(|(e, d)| open(e, d, 1)).collect();
        let mut bare = BareDirect::create(&root.join("bare-blocks.dat"));
        if bare.is_some() {
            names.push("bare O_DIRECT + RWF_DSYNC");
        }
        // None starts on the tail of another's set-up writes (waldb zero-fills its segments).
        std::thread::sleep(Duration::from_secs(1));
        let value = [7u8; VALUE];
        let mut seconds_of = vec![Vec::with_capacity(rounds); names.len()];
        let mut latencies = vec![Vec::with_capacity(rounds * block as usize); names.len()];
        let mut next = vec![0u64; names.len()];
        for round in 0..rounds {
            eprint!("\rone committer in blocks: round {}/{rounds}            ", round + 1);
            // Each goes first in its turn, so that none always follows the same one.
            for k in 0..names.len() {
                let e = (round + k) % names.len();
                let t = Instant::now();
                for _ in 0..block {
                    let c = Instant::now();
                    match (stores.get(e), bare.as_mut()) {
                        (Some(store), _) => store.txn(0, &[key(0, next[e])], &value, true),
                        (None, Some(bare)) => bare.commit(WALDB_RECORD),
                        (None, None) => unreachable!("a column without an engine"),
                    }
                    latencies[e].push(c.elapsed().as_nanos() as u64);
                    next[e] += 1;
                }
                seconds_of[e].push(t.elapsed().as_secs_f64());
            }
        }
        eprintln!();
        drop(stores);
        drop(bare);
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_file(root.join("bare-blocks.dat"));
        let rate = |secs: &[f64]| (block * secs.len() as u64) as f64 / secs.iter().sum::<f64>();
        let per_round: Vec<f64> = seconds_of[1].iter().zip(&seconds_of[0]).map(|(o, w)| o / w).collect();
        let won = per_round.iter().filter(|r| **r > 1.0).count();
        say(format!(
            "\n## One committer in tight loops, alternated in blocks of {block} commits ({rounds} rounds): commits/s\n"
        ));
        say("| engine | over all its blocks | median block | p50 | p99 |".into());
        say("|---|---:|---:|---:|---:|".into());
        for ((e, secs), mut lat) in names.iter().zip(&seconds_of).zip(latencies) {
            lat.sort_unstable();
            let us = |q: f64| percentile(&lat, q) as f64 / 1e3;
            let blocks: Vec<f64> = secs.iter().map(|s| block as f64 / s).collect();
            say(format!(
                "| {e} | {} | {} | {:.1} µs | {:.1} µs |",
                fmt_rate(rate(secs)),
                fmt_rate(median(blocks)),
                us(0.5),
                us(0.99)
            ));
        }
        say(format!(
            "\nwaldb / okaywal: {:.1} % over all blocks, {:.1} % the median round; waldb faster in {won} of {rounds} rounds.",
            100.0 * rate(&seconds_of[0]) / rate(&seconds_of[1]),
            100.0 * median(per_round),
        ));
        if let Some(secs) = seconds_of.get(2) {
            say(format!(
                "waldb / the bare write: {:.1} % ({:+.1} µs per commit).",
                100.0 * rate(&seconds_of[0]) / rate(secs),
                1e6 * (seconds_of[0].iter().sum::<f64>() - secs.iter().sum::<f64>())
                    / (block * rounds as u64) as f64,
            ));
        }
    }

    // 2. Point reads against threads, each in a read snapshot of its own.
    if wanted("gets") {
        let get_threads = env_counts("WALDB_BENCH_GET_THREADS", &threads);
        let keys = env_f64("WALDB_BENCH_GET_KEYS", 1e6) as u64;
        let readers: Vec<&str> = engines.iter().copied().filter(|e| *e != "okaywal").collect();
        let most = get_threads.iter().copied().max().unwrap_or(1);
        eprint!("\rloading {keys} keys into {}            ", readers.join(", "));
        let stores: Vec<Box<dyn Store>> = readers.iter().map(|e| loaded(e, &root, most, keys)).collect();
        let mut rates = vec![vec![Vec::new(); readers.len()]; get_threads.len()];
        for round in 0..rounds {
            for (ti, &n) in get_threads.iter().enumerate() {
                for (ei, e) in readers.iter().enumerate() {
                    eprint!("\rround {}/{rounds}: gets, {n} threads, {e}            ", round + 1);
                    rates[ti][ei].push(gets_run(&*stores[ei], n, keys, seconds));
                }
            }
        }
        eprintln!();
        drop(stores);
        for e in &readers {
            let _ = std::fs::remove_dir_all(root.join(format!("{}-gets", e.to_lowercase())));
        }
        say(format!(
            "\n## Point reads of random keys among {keys}, each in a read snapshot of its own: gets/s\n"
        ));
        say(format!("| threads | {} | waldb / best peer |", readers.join(" | ")));
        say(format!("|---:|{}---:|", "---:|".repeat(readers.len())));
        for (ti, &n) in get_threads.iter().enumerate() {
            let m: Vec<f64> = rates[ti].iter().map(|r| median(r.clone())).collect();
            let cells: Vec<String> = m.iter().map(|&r| fmt_rate(r)).collect();
            let waldb = readers.iter().position(|e| *e == "waldb").map(|i| m[i]);
            let best_peer =
                readers.iter().zip(&m).filter(|(e, _)| **e != "waldb").map(|(_, &r)| r).fold(0.0, f64::max);
            let ratio = match waldb {
                Some(w) if best_peer > 0.0 => format!("{:.2}×", w / best_peer),
                _ => "–".into(),
            };
            say(format!("| {n} | {} | {ratio} |", cells.join(" | ")));
        }
    }

    // 3. Durable 50-put transactions at 10 threads; 4. non-durable 1-put from one thread.
    if wanted("throughput") {
        let mut bulk: Vec<Cell> = engines.iter().map(|_| Cell::default()).collect();
        let mut fast: Vec<Cell> = engines.iter().map(|_| Cell::default()).collect();
        for round in 0..rounds {
            for (ei, e) in engines.iter().enumerate() {
                eprint!("\rround {}/{rounds}: 50-put and non-durable, {e}            ", round + 1);
                bulk[ei].add(store_run(e, &root, 10, 50, true, seconds), 50);
                if *e != "okaywal" {
                    fast[ei].add(store_run(e, &root, 1, 1, false, seconds), 1);
                }
            }
        }
        eprintln!();
        say("\n## Throughput\n".into());
        say("| engine | durable 50-put transactions, 10 threads: puts/s | non-durable 1-put transactions, 1 thread: txn/s |".into());
        say("|---|---:|---:|".into());
        for (ei, e) in engines.iter().enumerate() {
            let nd = if fast[ei].rates.is_empty() { "–".to_owned() } else { fmt_rate(fast[ei].median()) };
            say(format!("| {e} | {} | {nd} |", fmt_rate(bulk[ei].median())));
        }
    }

    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("peers.md"), &md).unwrap();
    if series.is_empty() {
        eprintln!("wrote {}", out_dir.join("peers.md").display());
    } else {
        chart(&out_dir.join("peers.svg"), &series, zeroed);
        eprintln!("wrote {} and {}", out_dir.join("peers.md").display(), out_dir.join("peers.svg").display());
    }
}

/// Commits/s against threads (log-scaled thread axis), one line per engine.
fn chart(path: &Path, series: &[(String, Vec<(usize, f64)>)], fdatasync_us: f64) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let max_threads = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).max().unwrap_or(1).max(2);
    let max_rate = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Durable 1-put transactions (fdatasync {fdatasync_us:.0} µs)"), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..max_threads as f64).log_scale(), 0f64..max_rate * 1.1)
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("committing threads")
        .y_desc("commits/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1e3))
        .draw()
        .unwrap();
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = if name.starts_with("ideal") { color.stroke_width(1) } else { color.stroke_width(3) };
        let pts: Vec<(f64, f64)> = points.iter().map(|&(n, r)| (n as f64, r)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .unwrap()
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).unwrap();
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}
