//! Group commit against the disk's own ceiling, interleaved in one run.
//!
//! ```text
//! cargo bench --bench group_commit                 # the table (about 2 minutes)
//! WALDB_BENCH_SECONDS=0.5 WALDB_BENCH_ROUNDS=3 cargo bench --bench group_commit
//! WALDB_BENCH_ONLY=nondurable cargo bench --bench group_commit   # sections: commits, rotation, nondurable
//! ```
//!
//! 1. The disk: 4 KiB `pwrite` + `fdatasync` latency into a growing file and into a file
//!    already filled with zeros.
//! 2. Durable commits of 100-byte records at 1, 4, 16 and 64 committers, each round running
//!    every variant in turn (so the disk's mood is shared): two ideal group commits on a
//!    pre-zeroed file — a dedicated leader thread, and leader/follower, each with one `Mutex`,
//!    committers parked one by one and nothing else — and waldb `Sync` with its two drivers. Reported: median
//!    commits/s over the rounds, p50 and p99 commit latency, and the ratio to the best ideal.
//! 3. Rotation: commits/s and the worst commit latency with 1 MiB segments, prepared ahead
//!    versus created inline.
//! 4. `None` and `Buffered` appends/s from one thread, and records/s through `append_batch`,
//!    timed until every record is handed to the OS (the sync at `close` is not timed).
//!
//! Every figure includes its fsyncs; nothing is cached across rounds except by the OS.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::ideal::{ideal_run, raw_fdatasync};
use common::{Run, drive, env_counts, invoked_as_bench, median, percentile, settings, wanted};
use waldb::wal::{Driver, Durability, PrepareAhead, RecordKind, Wal, WalBatch, WalConfig, WalOptions};

const RECORD: usize = 100;

fn wal_config(driver: Driver, segment_bytes: u64, prepare: PrepareAhead) -> WalConfig {
    WalConfig::default()
        .with_log(WalOptions::default().with_segment_bytes(segment_bytes))
        .with_driver(driver)
        .with_prepare_ahead(prepare)
}

fn waldb_run(root: &Path, config: WalConfig, committers: usize, seconds: f64) -> (Run, waldb::wal::WalStats) {
    let dir = root.join("wal");
    let _ = std::fs::remove_dir_all(&dir);
    let (wal, _) = Wal::open(&dir, config).unwrap();
    let wal = Arc::new(wal);
    let payload = vec![42u8; RECORD];
    // Steady state: the first commit starts segment 1 and asks for segment 2, whose 64 MiB
    // of zeros would otherwise be flushed during the timed window (the rotation table below
    // measures that cost on its own).
    wal.append(RecordKind::Unknown(0x80), &payload).unwrap().wait().unwrap();
    if config.prepare_ahead == PrepareAhead::Background {
        let waited = Instant::now();
        while wal.stats().segments_prepared == 0 && waited.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let w = Arc::clone(&wal);
    let run = drive(
        committers,
        seconds,
        Arc::new(move |_, _| {
            w.append(RecordKind::Unknown(0x80), &payload).unwrap().wait().unwrap();
        }),
    );
    let stats = wal.stats();
    wal.close().unwrap();
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    (run, stats)
}

const VARIANTS: [&str; 4] =
    ["ideal, dedicated leader", "ideal, leader/follower", "waldb Sync, Thread", "waldb Sync, LeaderFollower"];

fn main() {
    if !invoked_as_bench() {
        return;
    }
    let (seconds, rounds, root) = settings("group commit");

    if wanted("commits") {
        let (grow, zeroed) = raw_fdatasync(&root, 2000);
        println!(
            "\n4 KiB write + fdatasync, median of 2000: growing file {grow:.0} µs, pre-zeroed file {zeroed:.0} µs"
        );
        commits(&root, seconds, rounds, zeroed);
    }
    if wanted("rotation") {
        rotation(&root, seconds, rounds);
    }
    if wanted("nondurable") {
        non_durable(&root, seconds, rounds);
    }
}

/// Section 2: durable commits against the two ideals.
fn commits(root: &Path, seconds: f64, rounds: usize, zeroed: f64) {
    let counts = env_counts("WALDB_BENCH_COMMITTERS", &[1, 4, 16, 64]);
    // rates[count][variant] = per-round commits/s; lat[count][variant] = latencies of all rounds.
    let mut rates = vec![vec![Vec::new(); VARIANTS.len()]; counts.len()];
    let mut lats: Vec<Vec<Vec<u64>>> = vec![vec![Vec::new(); VARIANTS.len()]; counts.len()];
    for round in 0..rounds {
        for (ci, &n) in counts.iter().enumerate() {
            for (vi, _) in VARIANTS.iter().enumerate() {
                let run = match vi {
                    0 => ideal_run(root, true, n, seconds, RECORD + 40),
                    1 => ideal_run(root, false, n, seconds, RECORD + 40),
                    2 => {
                        waldb_run(
                            root,
                            wal_config(Driver::Thread, 64 << 20, PrepareAhead::Background),
                            n,
                            seconds,
                        )
                        .0
                    }
                    _ => {
                        let (run, stats) = waldb_run(
                            root,
                            wal_config(Driver::LeaderFollower, 64 << 20, PrepareAhead::Background),
                            n,
                            seconds,
                        );
                        if std::env::var_os("WALDB_BENCH_VERBOSE").is_some() {
                            eprintln!("{n} committers: {stats:?}");
                        }
                        run
                    }
                };
                rates[ci][vi].push(run.rate());
                lats[ci][vi].extend_from_slice(&run.latencies);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    println!("\n| committers | variant | commits/s (median) | p50 µs | p99 µs | vs best ideal |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (ci, &n) in counts.iter().enumerate() {
        let medians: Vec<f64> = rates[ci].iter().map(|r| median(r.clone())).collect();
        let best_ideal = medians[0].max(medians[1]);
        for (vi, name) in VARIANTS.iter().enumerate() {
            let l = &mut lats[ci][vi];
            l.sort_unstable();
            println!(
                "| {n} | {name} | {:.0} | {:.0} | {:.0} | {:.0} % |",
                medians[vi],
                percentile(l, 0.50) as f64 / 1e3,
                percentile(l, 0.99) as f64 / 1e3,
                100.0 * medians[vi] / best_ideal
            );
        }
    }
    let lone = {
        let l = &lats[0][3];
        percentile(l, 0.5) as f64 / 1e3
    };
    println!(
        "\nA lone committer's p50 (leader/follower): {lone:.0} µs = {:.2}× a raw 4 KiB write + fdatasync into a pre-zeroed file",
        lone / zeroed
    );
}

/// Section 3: rotation with 1 MiB segments, prepared ahead vs inline, 4 committers.
fn rotation(root: &Path, seconds: f64, rounds: usize) {
    println!("\n| 1 MiB segments, 4 committers | commits/s | p99 µs | max µs | rotations (inline) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, prepare) in
        [("prepared ahead", PrepareAhead::Background), ("created inline", PrepareAhead::Inline)]
    {
        let mut best = None::<(Run, waldb::wal::WalStats)>;
        let mut rates = Vec::new();
        for _ in 0..rounds.max(1) {
            let (run, stats) =
                waldb_run(root, wal_config(Driver::LeaderFollower, 1 << 20, prepare), 4, seconds);
            rates.push(run.rate());
            if best.as_ref().is_none_or(|(b, _)| b.ops < run.ops) {
                best = Some((run, stats));
            }
        }
        let (run, stats) = best.unwrap();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} ({}) |",
            median(rates),
            percentile(&run.latencies, 0.99) as f64 / 1e3,
            *run.latencies.last().unwrap_or(&0) as f64 / 1e3,
            stats.rotations,
            stats.rotations_inline
        );
    }
}

/// Section 4: non-durable appends from one thread, and the batch API.
fn non_durable(root: &Path, seconds: f64, rounds: usize) {
    println!("\n| one thread, 100-byte records | records/s (median of {rounds}) |");
    println!("|---|---:|");
    let every = Durability::Buffered { every: Duration::from_millis(10) };
    for (name, durability, batch) in [
        ("append, None", Durability::None, 0usize),
        ("append, Buffered 10 ms", every, 0),
        ("append_batch of 1000, None", Durability::None, 1000),
    ] {
        let mut rates = Vec::new();
        for _ in 0..rounds.max(1) {
            let dir = root.join("wal");
            let _ = std::fs::remove_dir_all(&dir);
            let mut config = wal_config(Driver::LeaderFollower, 64 << 20, PrepareAhead::Background);
            config.batch.queue_records_max = 1 << 20;
            config.batch.queue_bytes_max = 256 << 20;
            config.batch.batch_records_max = 1 << 16;
            config.batch.batch_bytes_max = 16 << 20;
            let (wal, _) = Wal::open(&dir, config).unwrap();
            let payload = vec![42u8; RECORD];
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < seconds {
                if batch == 0 {
                    for _ in 0..1000 {
                        wal.append_with(RecordKind::Unknown(0x80), &payload, durability)
                            .unwrap()
                            .wait()
                            .unwrap();
                    }
                    n += 1000;
                } else {
                    let mut b = WalBatch::new();
                    for _ in 0..batch {
                        b.push(RecordKind::Unknown(0x80), &payload);
                    }
                    wal.append_batch(b, durability).unwrap().wait().unwrap();
                    n += batch as u64;
                }
            }
            // Until everything is handed to the OS (what `None` and `Buffered` promise); the
            // final sync at `close` is not timed.
            let last = wal.next_lsn().0 - 1;
            while wal.written_lsn().0 < last {
                std::thread::yield_now();
            }
            let elapsed = start.elapsed().as_secs_f64();
            rates.push(n as f64 / elapsed);
            wal.close().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
        println!("| {name} | {:.0} |", median(rates));
    }
}
