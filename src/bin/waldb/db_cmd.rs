//! The database commands of the `waldb` tool: put, get, del, scan, checkpoint and stress.

use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use waldb::db::DbOptions;
use waldb::wal::Durability;
use waldb::{Db, Error};

/// Exit status of `get` for an absent key.
const EXIT_ABSENT: u8 = 1;

fn open(dir: &Path, options: DbOptions) -> Result<Db, Error> {
    Db::open_opts(dir, options).map(|(db, _)| db)
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::Io { op: "write", path: "<standard output>".into(), source: e }
}

/// `put` (with a value) and `del` (without).
pub(crate) fn put(dir: &Path, key: &[u8], value: Option<&[u8]>) -> Result<u8, Error> {
    let db = open(dir, DbOptions::default())?;
    let mut txn = db.begin()?;
    match value {
        Some(v) => txn.put(key, v)?,
        None => txn.delete(key)?,
    }
    let lsn = txn.commit_blocking()?;
    db.close()?;
    super::Out::new().line(format_args!("{lsn}"))?;
    Ok(0)
}

pub(crate) fn get(dir: &Path, key: &[u8]) -> Result<u8, Error> {
    let db = open(dir, DbOptions::default())?;
    let value = db.get(key)?;
    db.close()?;
    match value {
        Some(v) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&v).and_then(|()| out.write_all(b"\n")).map_err(stdout_error)?;
            Ok(0)
        }
        None => {
            let _ = writeln!(std::io::stderr(), "waldb: not found");
            Ok(EXIT_ABSENT)
        }
    }
}

pub(crate) fn scan(dir: &Path, from: Option<&str>, to: Option<&str>) -> Result<u8, Error> {
    let db = open(dir, DbOptions::default())?;
    let start = from.map_or(Bound::Unbounded, |f| Bound::Included(f.as_bytes()));
    let end = to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.as_bytes()));
    let pairs = db.scan((start, end))?;
    db.close()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (k, v) in pairs {
        out.write_all(&k)
            .and_then(|()| out.write_all(b"\t"))
            .and_then(|()| out.write_all(&v))
            .and_then(|()| out.write_all(b"\n"))
            .map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

pub(crate) fn checkpoint(dir: &Path) -> Result<u8, Error> {
    let db = open(dir, DbOptions::default())?;
    let report = db.checkpoint()?;
    db.close()?;
    let mut out = super::Out::new();
    match report.lsn {
        Some(lsn) => out.line(format_args!(
            "checkpoint at LSN {lsn}: {} keys, {} bytes; {} segments removed",
            report.entries, report.bytes, report.segments_removed
        ))?,
        None => out.line(format_args!("nothing new since the last checkpoint"))?,
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
            std::thread::Builder::new().name(format!("writer-{w}")).spawn(move || -> Result<(), Error> {
                let mut n = 0u64;
                while !stop.load(SeqCst) && Instant::now() < deadline {
                    let k = keys_in(w, n);
                    let prefix = format!("k={k};");
                    let mut value = prefix.into_bytes();
                    value.resize(value_size.max(value.len()), b'x');
                    let mut txn = db.begin()?;
                    for i in 0..k {
                        txn.put(format!("{epoch}.{w}-{n}-{i}").as_bytes(), &value)?;
                    }
                    txn.commit_blocking()?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {epoch}.{w}-{n} {k}")
                        .and_then(|()| out.flush())
                        .map_err(stdout_error)?;
                    n += 1;
                }
                Ok(())
            })
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
    for t in threads {
        let r = t.join().unwrap_or_else(|_| Err(Error::InvalidConfig { reason: "a writer panicked".into() }));
        if let Err(e) = r {
            stop.store(true, SeqCst);
            first.get_or_insert(e);
        }
    }
    let closed = db.close();
    match first {
        Some(e) => Err(e),
        None => closed.map(|_| 0),
    }
}
