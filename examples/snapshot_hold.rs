//! A snapshot held under an overwrite load, then released: the resident memory and the slowest
//! commit, as issue 31 measured them (before the sorted tables: 4.2 GiB and 7.0 s).
//!
//! ```text
//! cargo run --release --example snapshot_hold [HOLD_SECONDS] [DIR]
//! ```
//!
//! Loads 100,000 keys of 100 bytes, begins a transaction (its snapshot pins every version
//! written after it), and overwrites all the keys in 100-put transactions (`Durability::None`)
//! for `HOLD_SECONDS` (default 15), then drops the transaction and goes on for 10 s more. Prints
//! the slowest commit (and the slowest after the release), the largest resident set (Linux) and
//! what the tree did.

use std::time::{Duration, Instant};

use waldb::wal::Durability;
use waldb::{Db, DbOptions};

/// Resident memory in MiB (Linux), or 0.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    kib >> 10
}

fn main() -> waldb::Result<()> {
    let hold = std::env::args().nth(1).map_or(15, |a| a.parse().expect("HOLD_SECONDS: a number"));
    let dir =
        std::env::args().nth(2).map_or_else(|| std::env::temp_dir().join("waldb-snapshot-hold"), Into::into);
    let _ = std::fs::remove_dir_all(&dir);
    let (db, _) = Db::open_opts(&dir, DbOptions::default().with_durability(Durability::None))?;
    const KEYS: u64 = 100_000;
    let t0 = Instant::now();
    let put_all = |round: u64, slowest: &mut Duration| -> waldb::Result<()> {
        for t in 0..KEYS / 100 {
            let started = Instant::now();
            db.transact(|txn| {
                for i in 0..100 {
                    txn.put(&(t * 100 + i).to_be_bytes(), &[round as u8; 100])?;
                }
                Ok(())
            })?;
            if started.elapsed().as_millis() >= 15 {
                eprintln!("SLOW COMMIT {:?} at {:?}", started.elapsed(), t0.elapsed());
            }
            *slowest = (*slowest).max(started.elapsed());
        }
        Ok(())
    };
    let mut loading = Duration::ZERO;
    put_all(0, &mut loading)?;
    let mut held = Some(db.begin()?);
    let start = Instant::now();
    let (mut slowest, mut after_release, mut max_rss, mut round) = (Duration::ZERO, Duration::ZERO, 0, 1);
    while start.elapsed() < Duration::from_secs(hold + 10) {
        if held.is_some() && start.elapsed() >= Duration::from_secs(hold) {
            held = None;
            println!("snapshot released after {:.1?}, resident {} MiB", start.elapsed(), rss_mib());
        }
        let mut this_round = Duration::ZERO;
        put_all(round, &mut this_round)?;
        slowest = slowest.max(this_round);
        if held.is_none() {
            after_release = after_release.max(this_round);
        }
        max_rss = max_rss.max(rss_mib());
        round += 1;
    }
    let s = db.stats();
    println!(
        "{} overwrites in {:.1?}: slowest commit {:.1?} ({:.1?} after the release); resident at most {} MiB, \
         {} MiB at the end; {} flushes, {} compactions, {} stalls, {} slowed commits, tables per level {:?}",
        (round - 1) * KEYS,
        start.elapsed(),
        slowest,
        after_release,
        max_rss,
        rss_mib(),
        s.checkpoints,
        s.compactions,
        s.stalls,
        s.slowdowns,
        s.tables_per_level
    );
    db.close()?;
    Ok(())
}
