//! The `dbbench` section (only when asked: `WALDB_BENCH_ONLY=dbbench`): the db_bench-style
//! workloads of `benches/common/dbbench.rs` on waldb, RocksDB (with `--features rocksdb`) and
//! fjall, each engine in a process of its own (this program run again with
//! `WALDB_DBBENCH_CHILD=<engine>`), so that its peak RSS and its bytes written are its own.
//! Every engine gets the same block cache (`WALDB_DBBENCH_CACHE_MIB`, default 256), a bloom
//! filter of 10 bits per key where it has the option, no compression (the values are random
//! bytes), and otherwise its defaults. Results go to stdout and to `dbbench.md` in
//! `WALDB_BENCH_OUT`.

use std::path::Path;

#[path = "../../common/dbbench.rs"]
mod common_dbbench;
use common_dbbench::{Config, Engine, KEY, Report, VALUE, WaldbEngine};

/// The engines this section runs, in table order.
const ENGINES: &[&str] = &["waldb", "RocksDB", "fjall"];

/// Opens `engine` on `dir` with `config`'s cache.
fn open(engine: &str, dir: &Path, config: &Config) -> Box<dyn Engine> {
    match engine {
        "waldb" => Box::new(WaldbEngine::open(dir, config.cache_bytes, waldb::Compression::None)),
        "fjall" => Box::new(Fjall::open(dir, config.cache_bytes)),
        #[cfg(feature = "rocksdb")]
        "RocksDB" => Box::new(Rocks::open(dir, config.cache_bytes)),
        other => panic!("dbbench: no engine {other} in this build"),
    }
}

/// In a child: runs `engine` and prints its report line on stdout.
pub fn child(engine: &str, root: &Path) {
    let config = Config::from_env();
    let dir = root.join(format!("dbbench-{}", engine.to_lowercase()));
    let report = common_dbbench::run(engine, &dir, &config, &|d| open(engine, d, &config));
    println!("{}", report.to_line());
}

/// In the parent: runs each enabled engine in a child, then prints and writes the tables.
pub fn parent(root: &Path, out_dir: &Path, enabled: impl Fn(&str) -> bool) {
    let config = Config::from_env();
    let mut reports = Vec::new();
    for engine in ENGINES.iter().copied().filter(|e| enabled(e)) {
        let exe = std::env::current_exe().unwrap();
        let output = std::process::Command::new(exe)
            .env("WALDB_DBBENCH_CHILD", engine)
            .env("WALDB_BENCH_DIR", root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(output.status.success(), "dbbench: {engine} failed: {}", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        let report = text.lines().find_map(Report::from_line).expect("a report line from the child");
        eprintln!("{}", report.to_line());
        reports.push(report);
    }
    let md = format!(
        "# db_bench-style workloads — data in {}, {} CPUs\n\n{}",
        root.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        common_dbbench::markdown(&config, &reports)
    );
    println!("{md}");
    std::fs::create_dir_all(out_dir).unwrap();
    std::fs::write(out_dir.join("dbbench.md"), md).unwrap();
}

struct Fjall {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, cache_bytes: u64) -> Fjall {
        let db = fjall::Database::builder(dir).cache_size(cache_bytes).open().unwrap();
        let keyspace = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).unwrap();
        Fjall { db, keyspace }
    }
}

impl Engine for Fjall {
    fn write(&self, pairs: &[([u8; KEY], [u8; VALUE])]) {
        let mut batch = self.db.batch();
        for (k, v) in pairs {
            batch.insert(&self.keyspace, &k[..], &v[..]);
        }
        batch.commit().unwrap();
    }

    fn get(&self, key: &[u8]) -> bool {
        self.keyspace.get(key).unwrap().is_some()
    }

    fn seek(&self, key: &[u8], n: usize) -> usize {
        self.keyspace
            .range(key..)
            .take(n)
            .map(|g| g.into_inner())
            .map(|r| std::hint::black_box(r.unwrap()))
            .fold(0, |n, _| n + 1)
    }

    fn scan(&self) -> u64 {
        self.keyspace.iter().map(|g| std::hint::black_box(g.into_inner().unwrap())).fold(0, |n, _| n + 1)
    }
}

#[cfg(feature = "rocksdb")]
struct Rocks(rocksdb::DB);

#[cfg(feature = "rocksdb")]
impl Rocks {
    fn open(dir: &Path, cache_bytes: u64) -> Rocks {
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache_bytes as usize));
        table.set_bloom_filter(10.0, false);
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        options.set_block_based_table_factory(&table);
        Rocks(rocksdb::DB::open(&options, dir).unwrap())
    }
}

#[cfg(feature = "rocksdb")]
impl Engine for Rocks {
    fn write(&self, pairs: &[([u8; KEY], [u8; VALUE])]) {
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.0.write(batch).unwrap();
    }

    fn close(self: Box<Self>) {
        // `WALDB_DBBENCH_ROCKSDB_STATS=1`: RocksDB's own per-level compaction counters at the
        // close after the load (and at the end), to compare with waldb's `DbStats` line.
        if std::env::var_os("WALDB_DBBENCH_ROCKSDB_STATS").is_some() {
            eprintln!("{}", self.0.property_value("rocksdb.stats").unwrap().unwrap_or_default());
        }
    }

    fn get(&self, key: &[u8]) -> bool {
        self.0.get_pinned(key).unwrap().is_some()
    }

    fn seek(&self, key: &[u8], n: usize) -> usize {
        let mut it = self.0.raw_iterator();
        it.seek(key);
        let mut read = 0;
        while read < n && it.valid() {
            std::hint::black_box((it.key(), it.value()));
            read += 1;
            it.next();
        }
        it.status().unwrap();
        read
    }

    fn scan(&self) -> u64 {
        let mut it = self.0.raw_iterator();
        it.seek_to_first();
        let mut read = 0;
        while it.valid() {
            std::hint::black_box((it.key(), it.value()));
            read += 1;
            it.next();
        }
        it.status().unwrap();
        read
    }
}
