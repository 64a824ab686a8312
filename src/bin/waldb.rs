//! `waldb`: the command-line tool (feature `cli`).
//!
//! ```text
//! waldb get <dir> <key> [--hex] [--json]      prints the value (exit 4 if absent)
//! waldb scan <dir> [<from> [<to>]] [--limit N] [--hex] [--json]
//!                                    `key<TAB>value` lines in key order, `from` ≤ key < `to`
//! waldb stats <dir> [--json]         keys, LSNs, the tables' LSN, log segments and records, log end
//! waldb wal dump <dir> [--json]      every record: segment, offset, LSN, type, size, operations
//! waldb wal verify <dir> [--json]    records, first and last LSN, and how the log ends
//! waldb put <dir> <key> <value> [--hex]   one transaction; prints its LSN (creates the database)
//! waldb del <dir> <key> [--hex]           one transaction; prints its LSN
//! waldb checkpoint <dir>                  flushes the memtables to sorted tables, removes the log they cover
//! waldb stress <dir> --writers N --seconds S [--durability sync|buffered] [--value-size B] [--report]
//! waldb bench [<dir>] [--seconds S] [--db-bench [--keys N] [--batch B] [--lz4] [--compressible]]
//! waldb sim --seeds N [--from S] [--faults mixed|none|all] [--verbose]   (feature `sim`)
//! ```
//!
//! **Inspection writes nothing.** `get`, `scan`, `stats` and `wal` read the files as they are
//! ([`waldb::db::ReadOnlyDb`], [`waldb::wal::LogReader`]): no lock taken, no epoch bumped, no
//! torn tail cut, nothing created — a missing directory is an error, and a damaged one stays
//! as it was. They work beside a process that holds the database, and then say on stderr that
//! the view may be behind it. `put`, `del`, `checkpoint` and `stress` open the database for
//! writing (and fail with the lock named if another process holds it); `put` and `stress`
//! create it where there is none, `del` and `checkpoint` need one.
//!
//! **Bytes.** Keys and values are the UTF-8 bytes of the arguments; with `--hex`, the bytes
//! that hexadecimal arguments spell, and the output is hexadecimal too. `--json` prints one
//! JSON object per line; a key or value that is not UTF-8 needs `--hex` there.
//!
//! **Bounds.** Every argument is bounded before it is used (`--writers` 1 to 1024, `--seconds`
//! up to a year, `--value-size` within the value limit): no input makes the tool panic, abort,
//! allocate without bound or fail to spawn a thread.
//!
//! `sim` runs the deterministic crash-recovery campaign of the database (`waldb::sim::campaign`)
//! over seeds `S..S+N`: a progress bar, and a table of the faults injected and the invariants
//! checked; a failing seed prints its report and replay command and exits 1.
//!
//! `stress` is a load generator whose output is an interface: each writer commits transactions
//! of fresh keys; transaction `<writer>-<n>` writes `k` keys (1 to 8) `<writer>-<n>-<i>`, each
//! value starting with `k=<k>;`, and the moment its commit is acknowledged prints
//! `ACK <writer>-<n> <k>` on stdout, line-flushed. Writers are named `<epoch>.<w>` (the
//! database's open count, then 0 to N−1), so keys stay fresh across runs on one directory. It
//! stops after `--seconds` or when killed; a fault ends it with one line on stderr and exit
//! status 3. With `scan`, anyone can `kill -9` a stress run and check that every acknowledged
//! transaction survived whole.
//!
//! Exit status, the same for every command: 0 done (the log healthy); 1 the log ends in a torn
//! tail (`wal`: recoverable, opening cuts it); 2 corrupt; 3 anything else that stopped the
//! command (a missing directory, not a waldb directory, an I/O error, a lock held, an
//! unsupported version); 4 `get`'s key is absent; 64 bad usage. Errors are one line on stderr.

#[path = "waldb/bench_cmd.rs"]
mod bench_cmd;
#[path = "waldb/db_cmd.rs"]
mod db_cmd;
#[path = "waldb/progress.rs"]
mod progress;
#[cfg(feature = "sim")]
#[path = "waldb/sim_cmd.rs"]
mod sim_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use waldb::wal::{self, LogEnd, LogReader, ReadOptions, RecordKind, RecoveryMode, RecoveryReport, format};
use waldb::{Disk, Error, StdDisk};

#[derive(Parser, Debug)]
#[command(
    name = "waldb",
    version,
    about = "waldb: an embedded transactional key-value store on a write-ahead log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect a write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Set a key (one transaction); prints the commit LSN. Creates the database if there is
    /// none.
    Put {
        /// The database directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        bytes: Bytes,
    },
    /// Print a key's value (exit 4 if it is absent). Read-only: writes nothing, takes no lock.
    Get {
        /// The database directory.
        dir: PathBuf,
        /// The key.
        key: String,
        #[command(flatten)]
        bytes: Bytes,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a key (one transaction); prints the commit LSN.
    Del {
        /// The database directory.
        dir: PathBuf,
        /// The key.
        key: String,
        #[command(flatten)]
        bytes: Bytes,
    },
    /// Print `key<TAB>value` lines in key order, for keys in [from, to). Read-only: writes
    /// nothing, takes no lock.
    Scan {
        /// The database directory.
        dir: PathBuf,
        /// The first key (inclusive).
        from: Option<String>,
        /// The end (exclusive).
        to: Option<String>,
        /// Print at most this many pairs.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        bytes: Bytes,
        #[command(flatten)]
        output: Output,
    },
    /// Print what the database holds: keys, LSNs, the tables' LSN, log. Read-only: writes nothing,
    /// takes no lock.
    Stats {
        /// The database directory.
        dir: PathBuf,
        #[command(flatten)]
        output: Output,
    },
    /// Flush everything committed to sorted tables and remove the log segments they cover
    /// (a checkpoint: the next open replays nothing).
    Checkpoint {
        /// The database directory.
        dir: PathBuf,
    },
    /// Commit transactions of fresh keys from N writers and print `ACK <writer>-<n> <k>` for
    /// each acknowledged one.
    Stress {
        /// The database directory.
        dir: PathBuf,
        /// Concurrent writers, 1 to 1024.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=i64::from(WRITERS_MAX)))]
        writers: u32,
        /// How long to run, in seconds (at most a year).
        #[arg(long, default_value_t = 10.0, value_parser = seconds)]
        seconds: f64,
        /// When a commit is acknowledged.
        #[arg(long, value_enum, default_value_t = StressDurability::Sync)]
        durability: StressDurability,
        /// Bytes per value (at least the `k=<k>;` prefix; at most the database's value limit).
        #[arg(long, default_value_t = 100)]
        value_size: u64,
        /// At the end, one line on stderr: commits, the slowest commit, the longest `Buffered`
        /// durability window, write stalls, flushes and compactions (stdout is unchanged).
        #[arg(long)]
        report: bool,
    },
    /// Measure commits on this disk: fdatasync latency, thread scaling (1–128 committers),
    /// batch size and contention, each in `Sync` and `Buffered` (about a minute). Prints
    /// markdown tables.
    Bench {
        /// A directory to create on the disk to measure (removed at the end; it must not
        /// exist). Default: `waldb-bench-data` in the current directory.
        dir: Option<PathBuf>,
        /// Seconds per measured cell (there are 30; at most a year); with `--db-bench`, per
        /// timed read workload.
        #[arg(long, default_value_t = 1.5, value_parser = seconds)]
        seconds: f64,
        /// Run the db_bench-style workloads instead (fillrandom, overwrite, reopen,
        /// readrandom, readmissing, seekrandom + next 100, readseq) on `--keys` pairs of
        /// 16 + 100 bytes with the default 256 MiB block cache: ops/s, RSS, write and space
        /// amplification, reopen time.
        #[arg(long)]
        db_bench: bool,
        /// Pairs loaded by `--db-bench` (1 to 10,000,000,000).
        #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000_000))]
        keys: u64,
        /// Puts per non-durable transaction in `--db-bench`'s loads (1 to 10,000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
        /// With `--db-bench`: store the tables' data blocks LZ4-compressed
        /// (`DbOptions::compression`).
        #[arg(long)]
        lz4: bool,
        /// With `--db-bench`: values that compress to about half (50 random bytes, twice)
        /// instead of random bytes.
        #[arg(long)]
        compressible: bool,
    },
    /// Run the deterministic crash-recovery campaign of the database over a range of seeds.
    #[cfg(feature = "sim")]
    Sim {
        /// How many seeds.
        #[arg(long, default_value_t = 10_000)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Which seeds inject I/O errors and disk full.
        #[arg(long, value_enum, default_value_t = sim_cmd::FaultsArg::Mixed)]
        faults: sim_cmd::FaultsArg,
        /// Print every event of every seed (for replaying one).
        #[arg(long)]
        verbose: bool,
    },
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// Print every record: segment, offset, LSN, type, size, operation count.
    Dump {
        /// A database directory (holding `wal/`) or a log directory.
        dir: PathBuf,
        #[command(flatten)]
        output: Output,
    },
    /// Check a log: exit 0 if healthy, 1 for a torn tail, 2 for corruption.
    Verify {
        /// A database directory (holding `wal/`) or a log directory.
        dir: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

/// How keys and values are written on the command line and printed.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct Bytes {
    /// Keys and values are hexadecimal, in the arguments and in the output (for binary data).
    #[arg(long)]
    pub(crate) hex: bool,
}

/// The output's form.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct Output {
    /// One JSON object per line instead of text (keys and values as UTF-8 text, or as
    /// hexadecimal with --hex).
    #[arg(long)]
    pub(crate) json: bool,
}

/// When `stress` acknowledges a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StressDurability {
    /// After fdatasync.
    Sync,
    /// Once queued; the log syncs every 10 ms.
    Buffered,
}

/// The most writers `stress` runs: each is a thread.
const WRITERS_MAX: u32 = 1024;
/// The longest `--seconds`: a year.
const SECONDS_MAX: f64 = 365.0 * 24.0 * 3600.0;

/// Parses `--seconds`: a finite number from 0 to [`SECONDS_MAX`].
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=SECONDS_MAX).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from 0 to {SECONDS_MAX} seconds"))
    }
}

/// Exit statuses: each means one thing, whatever the command (`get`'s absent key is 4).
const EXIT_HEALTHY: u8 = 0;
/// The log ends in a torn tail (`wal dump`, `wal verify`).
const EXIT_TORN_TAIL: u8 = 1;
/// Corruption: the log, the manifest or a table is damaged where a crash cannot explain it.
const EXIT_CORRUPT: u8 = 2;
/// Anything else that stopped the command (a missing directory, an I/O error, a lock held).
const EXIT_CANNOT_CHECK: u8 = 3;
/// Bad command-line usage.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: the whole text on stdout.
            let _ = e.print();
            return ExitCode::from(EXIT_HEALTHY);
        }
        Err(e) => {
            // A usage error is one line, as every other error (`waldb --help` has the rest).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad usage").trim_start_matches("error: ");
            let _ = writeln!(std::io::stderr(), "waldb: error: {first} (see waldb --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Wal(WalCommand::Dump { dir, output }) => dump(&dir, output),
        Command::Wal(WalCommand::Verify { dir, output }) => verify(&dir, output),
        Command::Put { dir, key, value, bytes } => db_cmd::put(&dir, &key, Some(&value), bytes),
        Command::Del { dir, key, bytes } => db_cmd::put(&dir, &key, None, bytes),
        Command::Get { dir, key, bytes, output } => db_cmd::get(&dir, &key, bytes, output),
        Command::Scan { dir, from, to, limit, bytes, output } => {
            db_cmd::scan(&dir, from.as_deref(), to.as_deref(), limit, bytes, output)
        }
        Command::Stats { dir, output } => db_cmd::stats(&dir, output),
        Command::Checkpoint { dir } => db_cmd::checkpoint(&dir),
        Command::Stress { dir, writers, seconds, durability, value_size, report } => {
            db_cmd::stress(&dir, writers, seconds, durability, value_size, report)
        }
        Command::Bench { dir, seconds, db_bench, keys, batch, lz4, compressible } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("waldb-bench-data"));
            if db_bench {
                bench_cmd::db_bench(&dir, seconds, keys, batch as usize, lz4, compressible)
            } else {
                bench_cmd::run(&dir, seconds)
            }
        }
        #[cfg(feature = "sim")]
        Command::Sim { seeds, from, faults, verbose } => Ok(sim_cmd::run(seeds, from, faults, verbose)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.is_corrupt() { EXIT_CORRUPT } else { EXIT_CANNOT_CHECK };
            // Even a closed stderr must not turn into a panic.
            let _ = writeln!(std::io::stderr(), "waldb: error: {}", one_line(&e));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s.replace('\n', " ")
}

/// The log directory for a database or log directory `path`.
fn locate_log_dir(path: &Path) -> Result<PathBuf, Error> {
    let disk = StdDisk;
    let not_waldb = |reason: &str| Error::NotWaldb { path: path.to_path_buf(), reason: reason.to_owned() };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_waldb("no such directory")),
        Err(e) => return Err(not_waldb(&e.to_string())),
        Ok(m) if !m.is_dir() => return Err(not_waldb("not a directory")),
        Ok(_) => {}
    }
    let nested = path.join("wal");
    if disk.is_dir(&nested) {
        return Ok(nested);
    }
    let names = disk.list_dir(path).map_err(|e| not_waldb(&e.to_string()))?;
    if names.iter().any(|n| wal::segment::parse_segment_file_name(n).is_some()) {
        Ok(path.to_path_buf())
    } else {
        Err(not_waldb("it holds neither a wal/ directory nor segment files"))
    }
}

fn read_options() -> ReadOptions {
    // Stop at the first bad point whatever it is, so that the report says what it is. Accept any
    // record the format allows: the limit a database was opened with is not known here.
    ReadOptions::default()
        .with_mode(RecoveryMode::PointInTime)
        .with_record_payload_bytes_max(format::RECORD_PAYLOAD_BYTES_LIMIT)
        .with_segment_bytes_max(format::SEGMENT_BYTES_MAX)
}

/// Standard output, whose failures (a closed pipe) are errors rather than panics.
pub(crate) struct Out(std::io::StdoutLock<'static>);

impl Out {
    pub(crate) fn new() -> Self {
        Out(std::io::stdout().lock())
    }

    pub(crate) fn line(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), Error> {
        writeln!(self.0, "{args}").map_err(|e| Error::Io {
            op: "write",
            path: "<standard output>".into(),
            source: e,
        })
    }
}

fn dump(path: &Path, output: Output) -> Result<u8, Error> {
    let dir = locate_log_dir(path)?;
    let reader = LogReader::open(StdDisk, &dir, read_options())?;
    let mut out = Out::new();
    if !output.json {
        out.line(format_args!(
            "{:>20} {:>10} {:>20} {:<12} {:>10} {:>6}",
            "SEGMENT", "OFFSET", "LSN", "TYPE", "SIZE", "OPS"
        ))?;
    }
    let report = reader.for_each(|r| {
        let ops = match r.kind {
            RecordKind::Txn => wal::decode_txn(r.payload).ok().map(|t| t.op_count()),
            _ => None,
        };
        if output.json {
            let line = serde_json::json!({
                "segment": r.segment.0,
                "offset": r.offset,
                "lsn": r.lsn.0,
                "type": r.kind.to_string(),
                "size": r.encoded_len(),
                "ops": ops,
            });
            out.line(format_args!("{line}"))
        } else {
            out.line(format_args!(
                "{:>20} {:>10} {:>20} {:<12} {:>10} {:>6}",
                r.segment.0,
                r.offset,
                r.lsn,
                r.kind.to_string(),
                r.encoded_len(),
                ops.map_or_else(|| "-".to_owned(), |n| n.to_string())
            ))
        }
    })?;
    if output.json {
        let line = serde_json::json!({ "end": end_json(&report) });
        out.line(format_args!("{line}"))?;
        return Ok(end_status(&report));
    }
    print_end(&mut out, &report)
}

fn verify(path: &Path, output: Output) -> Result<u8, Error> {
    let dir = locate_log_dir(path)?;
    let report = LogReader::open(StdDisk, &dir, read_options())?.for_each(|_| Ok(()))?;
    let mut out = Out::new();
    if output.json {
        let line = serde_json::json!({
            "log": dir.display().to_string(),
            "segments": report.segment_files,
            "records": report.records,
            "first_lsn": report.first_lsn.map(|l| l.0),
            "last_lsn": report.last_lsn.map(|l| l.0),
            "end": end_json(&report),
        });
        out.line(format_args!("{line}"))?;
        return Ok(end_status(&report));
    }
    out.line(format_args!("log:        {}", dir.display()))?;
    out.line(format_args!("segments:   {}", report.segment_files))?;
    out.line(format_args!("records:    {}", report.records))?;
    let lsn = |l: Option<waldb::Lsn>| l.map_or_else(|| "none".to_owned(), |l| l.to_string());
    out.line(format_args!("first LSN:  {}", lsn(report.first_lsn)))?;
    out.line(format_args!("last LSN:   {}", lsn(report.last_lsn)))?;
    print_end(&mut out, &report)
}

/// The exit status for how the log ends.
fn end_status(report: &RecoveryReport) -> u8 {
    match &report.end {
        LogEnd::Clean => EXIT_HEALTHY,
        LogEnd::TornTail(_) => EXIT_TORN_TAIL,
        LogEnd::Stopped(_) => EXIT_CORRUPT,
    }
}

/// How the log ends, as JSON.
fn end_json(report: &RecoveryReport) -> serde_json::Value {
    match &report.end {
        LogEnd::Clean => serde_json::json!({ "status": "healthy" }),
        LogEnd::TornTail(cut) | LogEnd::Stopped(cut) => serde_json::json!({
            "status": if matches!(report.end, LogEnd::TornTail(_)) { "torn tail" } else { "corrupt" },
            "file": cut.file.display().to_string(),
            "offset": cut.offset,
            "reason": cut.reason,
            "dropped_bytes": cut.dropped_bytes,
            "dropped_records": cut.dropped_records,
        }),
    }
}

/// Prints how the log ends and returns the exit status for it.
fn print_end(out: &mut Out, report: &RecoveryReport) -> Result<u8, Error> {
    match &report.end {
        LogEnd::Clean => {
            out.line(format_args!("end:        clean"))?;
            out.line(format_args!("status:     healthy"))?;
        }
        LogEnd::TornTail(cut) => {
            out.line(format_args!(
                "end:        torn tail in {} at offset {}: {} ({} bytes, {} valid records after it)",
                cut.file.display(),
                cut.offset,
                cut.reason,
                cut.dropped_bytes,
                cut.dropped_records
            ))?;
            out.line(format_args!("status:     torn tail (recoverable: opening cuts it)"))?;
        }
        LogEnd::Stopped(cut) => {
            out.line(format_args!(
                "end:        CORRUPT in {} at offset {}: {}",
                cut.file.display(),
                cut.offset,
                cut.reason
            ))?;
            out.line(format_args!(
                "status:     corrupt (records after LSN {} cannot be trusted)",
                report.last_lsn.unwrap_or_default()
            ))?;
        }
    }
    Ok(end_status(report))
}

/// Whether another process holds the flock on `lock` (the database's `LOCK` file), read from
/// `/proc/locks` without taking any lock: a lock taken even for a moment could make an owner
/// starting at that moment fail with `Locked`. `false` where that cannot be told.
fn held_by_another_process(lock: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(meta), Ok(locks)) = (std::fs::metadata(lock), std::fs::read_to_string("/proc/locks")) else {
            return false;
        };
        // A line: "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (major:minor:inode).
        locks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"FLOCK")
                && fields.iter().any(|f| {
                    f.rsplit(':').next().and_then(|i| i.parse::<u64>().ok()) == Some(meta.ino())
                        && f.matches(':').count() == 2
                })
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = lock;
        false
    }
}
