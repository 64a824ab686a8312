//! `waldb`: the command-line tool.
//!
//! ```text
//! waldb wal dump <dir>     every record: segment, offset, LSN, type, size, operation count
//! waldb wal verify <dir>   records, last LSN, and how the log ends
//! waldb put <dir> <key> <value>     one transaction; prints its LSN
//! waldb get <dir> <key>             prints the value (exit 1 if absent)
//! waldb del <dir> <key>             one transaction; prints its LSN
//! waldb scan <dir> [<from> [<to>]]  `key<TAB>value` lines in key order, `from` ≤ key < `to`
//! waldb checkpoint <dir>            writes a checkpoint and compacts the log
//! waldb stress <dir> --writers N --seconds S [--durability sync|buffered] [--value-size B]
//! waldb sim --seeds N [--from S] [--faults mixed|none|all] [--verbose]   (feature `sim`)
//! ```
//!
//! `sim` runs the deterministic crash-recovery campaign of the database (`waldb::sim::campaign`)
//! over seeds `S..S+N`: a progress bar, seeds/s, and a table of the faults injected and the
//! invariants checked; a failing seed prints its report and replay command and exits 1.
//!
//! `stress` is a load generator whose output is an interface: each writer commits transactions
//! of fresh keys; transaction `<writer>-<n>` writes `k` keys (1 to 8) `<writer>-<n>-<i>`, each
//! value starting with `k=<k>;`, and the moment its commit is acknowledged prints
//! `ACK <writer>-<n> <k>` on stdout, line-flushed. Writers are named `<epoch>.<w>` (the
//! database's open count, then 0 to N−1), so keys stay fresh across runs on one directory. It stops after `--seconds` or when killed; a fault
//! ends it with one line on stderr and exit status 1. With `scan`, anyone can `kill -9` a
//! stress run and check that every acknowledged transaction survived whole.
//!
//! `<dir>` is a database directory (holding `wal/`) or a log directory (holding segment files).
//!
//! Exit status: 0 the log is healthy; 1 it ends in a torn tail (recoverable: the default
//! recovery mode cuts it); 2 it is corrupt; 3 it could not be checked (missing directory, not a
//! waldb directory, unreadable file, unsupported version); 64 bad command-line usage.

#[path = "waldb/bench_cmd.rs"]
mod bench_cmd;
#[path = "waldb/db_cmd.rs"]
mod db_cmd;
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
    /// Set a key (one transaction); prints the commit LSN.
    Put {
        /// The database directory.
        dir: PathBuf,
        /// The key (its UTF-8 bytes).
        key: String,
        /// The value (its UTF-8 bytes).
        value: String,
    },
    /// Print a key's value; exit 1 if it is absent.
    Get {
        /// The database directory.
        dir: PathBuf,
        /// The key.
        key: String,
    },
    /// Delete a key (one transaction); prints the commit LSN.
    Del {
        /// The database directory.
        dir: PathBuf,
        /// The key.
        key: String,
    },
    /// Print `key<TAB>value` lines in key order, for keys in [from, to).
    Scan {
        /// The database directory.
        dir: PathBuf,
        /// The first key (inclusive).
        from: Option<String>,
        /// The end (exclusive).
        to: Option<String>,
    },
    /// Write a checkpoint and remove the log segments it covers.
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
    },
    /// Measure commits on this disk: fdatasync latency, thread scaling (1–128 committers),
    /// batch size and contention, each in `Sync` and `Buffered` (about a minute). Prints
    /// markdown tables.
    Bench {
        /// A directory to create on the disk to measure (removed at the end; it must not
        /// exist). Default: `waldb-bench-data` in the current directory.
        dir: Option<PathBuf>,
        /// Seconds per measured cell (there are 30; at most a year).
        #[arg(long, default_value_t = 1.5, value_parser = seconds)]
        seconds: f64,
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
    },
    /// Check a log: exit 0 if healthy, 1 for a torn tail, 2 for corruption.
    Verify {
        /// A database directory (holding `wal/`) or a log directory.
        dir: PathBuf,
    },
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

const EXIT_HEALTHY: u8 = 0;
const EXIT_TORN_TAIL: u8 = 1;
const EXIT_CORRUPT: u8 = 2;
const EXIT_CANNOT_CHECK: u8 = 3;
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
        Command::Wal(WalCommand::Dump { dir }) => dump(&dir),
        Command::Wal(WalCommand::Verify { dir }) => verify(&dir),
        Command::Put { dir, key, value } => db_cmd::put(&dir, key.as_bytes(), Some(value.as_bytes())),
        Command::Del { dir, key } => db_cmd::put(&dir, key.as_bytes(), None),
        Command::Get { dir, key } => db_cmd::get(&dir, key.as_bytes()),
        Command::Scan { dir, from, to } => db_cmd::scan(&dir, from.as_deref(), to.as_deref()),
        Command::Checkpoint { dir } => db_cmd::checkpoint(&dir),
        Command::Stress { dir, writers, seconds, durability, value_size } => {
            db_cmd::stress(&dir, writers, seconds, durability, value_size)
        }
        Command::Bench { dir, seconds } => {
            bench_cmd::run(&dir.unwrap_or_else(|| PathBuf::from("waldb-bench-data")), seconds)
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
    ReadOptions {
        mode: RecoveryMode::PointInTime,
        record_payload_bytes_max: format::RECORD_PAYLOAD_BYTES_LIMIT,
        segment_bytes_max: format::SEGMENT_BYTES_MAX,
    }
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

fn dump(path: &Path) -> Result<u8, Error> {
    let dir = locate_log_dir(path)?;
    let reader = LogReader::open(StdDisk, &dir, read_options())?;
    let mut out = Out::new();
    out.line(format_args!(
        "{:>20} {:>10} {:>20} {:<12} {:>10} {:>6}",
        "SEGMENT", "OFFSET", "LSN", "TYPE", "SIZE", "OPS"
    ))?;
    let report = reader.for_each(|r| {
        let ops = match r.kind {
            RecordKind::Txn => {
                wal::decode_txn(r.payload).map(|t| t.op_count().to_string()).unwrap_or_default()
            }
            _ => "-".to_owned(),
        };
        out.line(format_args!(
            "{:>20} {:>10} {:>20} {:<12} {:>10} {:>6}",
            r.segment.0,
            r.offset,
            r.lsn,
            r.kind.to_string(),
            r.encoded_len(),
            ops
        ))
    })?;
    print_end(&mut out, &report)
}

fn verify(path: &Path) -> Result<u8, Error> {
    let dir = locate_log_dir(path)?;
    let report = LogReader::open(StdDisk, &dir, read_options())?.for_each(|_| Ok(()))?;
    let mut out = Out::new();
    out.line(format_args!("log:        {}", dir.display()))?;
    out.line(format_args!("segments:   {}", report.segment_files))?;
    out.line(format_args!("records:    {}", report.records))?;
    let lsn = |l: Option<waldb::Lsn>| l.map_or_else(|| "none".to_owned(), |l| l.to_string());
    out.line(format_args!("first LSN:  {}", lsn(report.first_lsn)))?;
    out.line(format_args!("last LSN:   {}", lsn(report.last_lsn)))?;
    print_end(&mut out, &report)
}

/// Prints how the log ends and returns the exit status for it.
fn print_end(out: &mut Out, report: &RecoveryReport) -> Result<u8, Error> {
    match &report.end {
        LogEnd::Clean => {
            out.line(format_args!("end:        clean"))?;
            out.line(format_args!("status:     healthy"))?;
            Ok(EXIT_HEALTHY)
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
            Ok(EXIT_TORN_TAIL)
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
            Ok(EXIT_CORRUPT)
        }
    }
}
