//! The database commands of the `waldb` tool: put, get, del, scan, checkpoint and stress.

use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::{Bytes, Output};
use waldb::db::{DbOptions, ReadOnlyDb};
use waldb::wal::{Durability, LogEnd};
use waldb::{Db, Error};

/// Exit status of `get` for an absent key (distinct from the log's 1, 2 and 3).
const EXIT_ABSENT: u8 = 4;

fn stdout_error(e: std::io::Error) -> Error {
    Error::Io { op: "write", path: "<standard output>".into(), source: e }
}

/// A key or value from the command line: its UTF-8 bytes, or with `--hex` the bytes it spells.
fn arg_bytes(what: &str, text: &str, bytes: Bytes) -> Result<Vec<u8>, Usage> {
    if !bytes.hex {
        return Ok(text.as_bytes().to_vec());
    }
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(Usage(format!("{what} {text:?} is not hexadecimal: an odd number of digits")));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| Usage(format!("{what} {text:?} is not hexadecimal")))
        })
        .collect()
}

/// Bytes as lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key or value for JSON: hexadecimal with `--hex`, else its text, which must be UTF-8.
fn json_bytes(what: &str, b: &[u8], bytes: Bytes) -> Result<serde_json::Value, Usage> {
    if bytes.hex {
        return Ok(serde_json::Value::String(hex(b)));
    }
    match std::str::from_utf8(b) {
        Ok(text) => Ok(serde_json::Value::String(text.to_owned())),
        Err(_) => Err(Usage(format!("a {what} is not UTF-8 ({}…): add --hex", hex(&b[..b.len().min(16)])))),
    }
}

/// Writes the JSON `value` as one line.
fn json_line(out: &mut impl Write, value: &serde_json::Value) -> Result<(), Error> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(stdout_error)
}

/// A usage error found after parsing (a malformed `--hex` argument): one line, exit 64.
pub(crate) struct Usage(pub(crate) String);

impl Usage {
    fn exit(self) -> Result<u8, Error> {
        let _ = writeln!(std::io::stderr(), "waldb: error: {} (see waldb --help)", self.0);
        Ok(super::EXIT_USAGE)
    }
}

/// Opens `dir` read-only, saying on stderr when another process holds it (the view may then
/// be behind it).
fn view(dir: &Path) -> Result<ReadOnlyDb, Error> {
    let db = ReadOnlyDb::open(dir)?;
    if let LogEnd::TornTail(cut) | LogEnd::Stopped(cut) = &db.wal_report().end {
        let _ = writeln!(
            std::io::stderr(),
            "waldb: note: the log ends in a torn tail in {} at offset {} ({}): left in place; this view stops before it",
            cut.file.display(),
            cut.offset,
            cut.reason
        );
    }
    if super::held_by_another_process(&dir.join(waldb::db::LOCK_FILE)) {
        let _ = writeln!(
            std::io::stderr(),
            "waldb: note: {} is open in another process: this read-only view is as of LSN {} and may be behind it",
            dir.display(),
            db.lsn()
        );
    }
    Ok(db)
}

/// `put` (with a value) and `del` (without). `put` creates the database if there is none;
/// `del` needs one.
pub(crate) fn put(dir: &Path, key: &str, value: Option<&str>, bytes: Bytes) -> Result<u8, Error> {
    let key = match arg_bytes("the key", key, bytes) {
        Ok(k) => k,
        Err(u) => return u.exit(),
    };
    let value = match value.map(|v| arg_bytes("the value", v, bytes)).transpose() {
        Ok(v) => v,
        Err(u) => return u.exit(),
    };
    if value.is_none() && !dir.join(waldb::db::WAL_DIR).is_dir() {
        return Err(Error::NotWaldb { path: dir.to_path_buf(), reason: "it holds no wal/ directory".into() });
    }
    let (db, _) = Db::open_opts(dir, DbOptions::default())?;
    let commit = db.begin().and_then(|mut txn| {
        match &value {
            Some(v) => txn.put(&key, v)?,
            None => txn.delete(&key)?,
        }
        txn.commit_blocking()
    });
    let closed = db.close();
    let lsn = commit.and_then(|lsn| closed.map(|_| lsn))?;
    super::Out::new().line(format_args!("{lsn}"))?;
    Ok(0)
}

pub(crate) fn get(dir: &Path, key: &str, bytes: Bytes, output: Output) -> Result<u8, Error> {
    let key = match arg_bytes("the key", key, bytes) {
        Ok(k) => k,
        Err(u) => return u.exit(),
    };
    let db = view(dir)?;
    let value = db.get(&key)?;
    let mut out = std::io::stdout().lock();
    if output.json {
        let value_json = match value.as_deref().map(|v| json_bytes("value", v, bytes)).transpose() {
            Ok(v) => v,
            Err(u) => return u.exit(),
        };
        let key_json = match json_bytes("key", &key, bytes) {
            Ok(k) => k,
            Err(u) => return u.exit(),
        };
        let line = serde_json::json!({ "key": key_json, "value": value_json, "lsn": db.lsn().0 });
        json_line(&mut out, &line)?;
    } else if let Some(v) = &value {
        let shown = if bytes.hex { hex(v).into_bytes() } else { v.to_vec() };
        out.write_all(&shown).and_then(|()| out.write_all(b"\n")).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    if value.is_none() {
        if !output.json {
            let _ = writeln!(std::io::stderr(), "waldb: not found");
        }
        return Ok(EXIT_ABSENT);
    }
    Ok(0)
}

pub(crate) fn scan(
    dir: &Path,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<u64>,
    bytes: Bytes,
    output: Output,
) -> Result<u8, Error> {
    let bound = |what, arg: Option<&str>| arg.map(|a| arg_bytes(what, a, bytes)).transpose();
    let (from, to) = match (bound("from", from), bound("to", to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(u), _) | (_, Err(u)) => return u.exit(),
    };
    let db = view(dir)?;
    let start = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let end = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let pairs = db.scan_limit((start, end), limit)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if output.json {
        // Every pair is checked before the first is printed: a non-UTF-8 one fails the whole
        // scan, not half of it.
        let lines = pairs
            .iter()
            .map(|(k, v)| {
                Ok(serde_json::json!({ "key": json_bytes("key", k, bytes)?, "value": json_bytes("value", v, bytes)? }))
            })
            .collect::<Result<Vec<_>, Usage>>();
        let lines = match lines {
            Ok(lines) => lines,
            Err(u) => return u.exit(),
        };
        for line in &lines {
            json_line(&mut out, line)?;
        }
    } else {
        for (k, v) in pairs {
            let (k, v) = if bytes.hex {
                (hex(&k).into_bytes(), hex(&v).into_bytes())
            } else {
                (k.to_vec(), v.to_vec())
            };
            out.write_all(&k)
                .and_then(|()| out.write_all(b"\t"))
                .and_then(|()| out.write_all(&v))
                .and_then(|()| out.write_all(b"\n"))
                .map_err(stdout_error)?;
        }
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

pub(crate) fn stats(dir: &Path, output: Output) -> Result<u8, Error> {
    let db = view(dir)?;
    let wal = db.wal_report();
    let end = match &wal.end {
        LogEnd::Clean => "clean".to_owned(),
        LogEnd::TornTail(cut) => {
            format!("torn tail at {} offset {} (left in place)", cut.file.display(), cut.offset)
        }
        LogEnd::Stopped(cut) => format!("stopped at {} offset {}", cut.file.display(), cut.offset),
    };
    let lsn = |l: Option<waldb::Lsn>| l.map(|l| l.0);
    if output.json {
        let line = serde_json::json!({
            "dir": dir.display().to_string(),
            "lsn": db.lsn().0,
            "keys": db.key_count(),
            "checkpoint_lsn": lsn(db.checkpoint_lsn()),
            "txns_replayed": db.txns_replayed(),
            "log": {
                "segments": wal.segment_files,
                "records": wal.records,
                "first_lsn": lsn(wal.first_lsn),
                "last_lsn": lsn(wal.last_lsn),
                "end": end,
            },
        });
        json_line(&mut std::io::stdout().lock(), &line)?;
    } else {
        let mut out = super::Out::new();
        let show = |l: Option<waldb::Lsn>| l.map_or_else(|| "none".to_owned(), |l| l.to_string());
        out.line(format_args!("database:        {}", dir.display()))?;
        out.line(format_args!("LSN:             {}", db.lsn()))?;
        out.line(format_args!("keys:            {}", db.key_count()))?;
        out.line(format_args!("checkpoint LSN:  {}", show(db.checkpoint_lsn())))?;
        out.line(format_args!("replayed:        {} transactions", db.txns_replayed()))?;
        out.line(format_args!("log segments:    {}", wal.segment_files))?;
        out.line(format_args!(
            "log records:     {} (LSN {} to {})",
            wal.records,
            show(wal.first_lsn),
            show(wal.last_lsn)
        ))?;
        out.line(format_args!("log end:         {end}"))?;
    }
    Ok(0)
}

pub(crate) fn checkpoint(dir: &Path) -> Result<u8, Error> {
    if !dir.join(waldb::db::WAL_DIR).is_dir() {
        return Err(Error::NotWaldb { path: dir.to_path_buf(), reason: "it holds no wal/ directory".into() });
    }
    let (db, _) = Db::open_opts(dir, DbOptions::default())?;
    let report = db.checkpoint();
    let closed = db.close();
    let report = report.and_then(|r| closed.map(|_| r))?;
    let mut out = super::Out::new();
    match report.lsn {
        Some(lsn) => out.line(format_args!(
            "flushed through LSN {lsn}: {} entries, {} bytes of tables; {} segments removed",
            report.entries, report.bytes, report.segments_removed
        ))?,
        None => out.line(format_args!("nothing new since the last flush"))?,
    }
    Ok(0)
}

/// How many keys transaction `n` of `writer` writes: 1 to 8, varied but reproducible.
fn keys_in(writer: u32, n: u64) -> u64 {
    let mut x = (u64::from(writer) << 40) ^ n ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    1 + x % 8
}

pub(crate) fn stress(
    dir: &Path,
    writers: u32,
    seconds: f64,
    durability: super::StressDurability,
    value_size: u64,
    summary: bool,
) -> Result<u8, Error> {
    let durability = match durability {
        super::StressDurability::Sync => Durability::Sync,
        super::StressDurability::Buffered => Durability::Buffered { every: Duration::from_millis(10) },
    };
    // Every argument is bounded before anything is allocated or spawned (clap bounds the
    // writers and seconds; the value is checked against the database's limit here).
    assert!((1..=super::WRITERS_MAX).contains(&writers) && seconds.is_finite() && seconds >= 0.0);
    let options = DbOptions::default().with_durability(durability);
    let value_max = options.limits().value_bytes_max;
    let Some(value_size) = usize::try_from(value_size).ok().filter(|v| *v as u64 <= u64::from(value_max))
    else {
        let _ = writeln!(
            std::io::stderr(),
            "waldb: error: --value-size {value_size} exceeds the value limit of {value_max} bytes (see waldb --help)"
        );
        return Ok(super::EXIT_USAGE);
    };
    // Writers are named `<epoch>.<w>`: the epoch rises at every open, so keys stay fresh
    // across runs on the same directory.
    let (db, report) = Db::open_opts(dir, options)?;
    let epoch = report.epoch;
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let threads = (0..writers)
        .map(|w| {
            let db = db.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new().name(format!("writer-{w}")).spawn(
                move || -> Result<Duration, Error> {
                    let mut n = 0u64;
                    let mut slowest = Duration::ZERO;
                    while !stop.load(SeqCst) && Instant::now() < deadline {
                        let k = keys_in(w, n);
                        let prefix = format!("k={k};");
                        let mut value = prefix.into_bytes();
                        value.resize(value_size.max(value.len()), b'x');
                        let started = Instant::now();
                        let mut txn = db.begin()?;
                        for i in 0..k {
                            txn.put(format!("{epoch}.{w}-{n}-{i}").as_bytes(), &value)?;
                        }
                        txn.commit_blocking()?;
                        slowest = slowest.max(started.elapsed());
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {epoch}.{w}-{n} {k}")
                            .and_then(|()| out.flush())
                            .map_err(stdout_error)?;
                        n += 1;
                    }
                    Ok(slowest)
                },
            )
        })
        .collect::<Result<Vec<_>, _>>();
    let threads = match threads {
        Ok(threads) => threads,
        Err(e) => {
            // The writers already spawned see `stop` and end.
            stop.store(true, SeqCst);
            let _ = db.close();
            return Err(Error::Io { op: "spawn", path: "a stress writer thread".into(), source: e });
        }
    };
    let mut first = None;
    let mut slowest = Duration::ZERO;
    for t in threads {
        let r = t.join().unwrap_or_else(|_| Err(Error::InvalidConfig { reason: "a writer panicked".into() }));
        match r {
            Ok(s) => slowest = slowest.max(s),
            Err(e) => {
                stop.store(true, SeqCst);
                first.get_or_insert(e);
            }
        }
    }
    let closed = db.close();
    if summary {
        let s = db.stats();
        let ms = |ns: u64| ns as f64 / 1e6;
        let _ = writeln!(
            std::io::stderr(),
            "waldb: stress: {} commits, slowest {:.1} ms; Buffered window p99 {:.1} ms, max {:.1} ms ({} syncs, sync p99 {:.1} ms, {} window waits); \
             {} stalls ({:.1} ms), {} slowed commits; {} freezes, {} compactions",
            s.commits,
            slowest.as_secs_f64() * 1e3,
            ms(s.wal.buffered_window_ns.p99),
            ms(s.wal.buffered_window_ns.max),
            s.wal.syncs,
            ms(s.wal.sync_latency_ns.p99),
            s.wal.window_waits,
            s.stalls,
            s.stall_time.as_secs_f64() * 1e3,
            s.slowdowns,
            s.freezes,
            s.compactions,
        );
    }
    match first {
        Some(e) => Err(e),
        None => closed.map(|_| 0),
    }
}
