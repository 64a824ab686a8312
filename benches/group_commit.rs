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
//!    pre-zeroed file — a dedicated leader thread, and leader/follower with one `Mutex` +
//!    `Condvar` and nothing else — and waldb `Sync` with its two drivers. Reported: median
//!    commits/s over the rounds, p50 and p99 commit latency, and the ratio to the best ideal.
//! 3. Rotation: commits/s and the worst commit latency with 1 MiB segments, prepared ahead
//!    versus created inline.
//! 4. `None` and `Buffered` appends/s from one thread, and records/s through `append_batch`,
//!    timed until every record is handed to the OS (the sync at `close` is not timed).
//!
//! Every figure includes its fsyncs; nothing is cached across rounds except by the OS.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{Run, drive, env_counts, invoked_as_bench, median, percentile, settings, wanted};
use waldb::wal::{Driver, Durability, PrepareAhead, RecordKind, Wal, WalBatch, WalConfig, WalOptions};

const RECORD: usize = 100;
const IDEAL_FILE: u64 = 256 << 20;

fn zero_file(path: &Path, len: u64) -> File {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        f.write_all_at(&chunk, at).unwrap();
        at += chunk.len() as u64;
    }
    f.sync_all().unwrap();
    f
}

/// Median µs of a 4 KiB write + fdatasync, into a growing file and into a zeroed one.
fn raw_fdatasync(root: &Path, n: usize) -> (f64, f64) {
    let block = vec![7u8; 4096];
    let grow_path = root.join("grow.dat");
    let _ = std::fs::remove_file(&grow_path);
    let grow = OpenOptions::new().write(true).create(true).truncate(true).open(&grow_path).unwrap();
    let zeroed = zero_file(&root.join("zeroed.dat"), (n as u64 + 1) * 4096);
    let mut times = (Vec::new(), Vec::new());
    for i in 0..n {
        for (file, out) in [(&grow, &mut times.0), (&zeroed, &mut times.1)] {
            let t = Instant::now();
            file.write_all_at(&block, i as u64 * 4096).unwrap();
            file.sync_data().unwrap();
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let _ = std::fs::remove_file(grow_path);
    let _ = std::fs::remove_file(root.join("zeroed.dat"));
    (median(times.0), median(times.1))
}

/// The ideal leader/follower: one Mutex + Condvar; the committer that finds no flush in flight
/// writes every record queued so far and syncs; the others wait for the next.
struct IdealLf {
    file: File,
    state: Mutex<(u64, u64, bool, u64)>, // (next ticket, durable ticket, flushing, write offset)
    cv: Condvar,
}

impl IdealLf {
    fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        let mine = st.0;
        while st.1 < mine {
            if !st.2 {
                st.2 = true;
                let target = st.0;
                let n = (target - st.1) as usize;
                let offset = st.3;
                st.3 = (st.3 + (n * (RECORD + 40)) as u64) % (IDEAL_FILE - (16 << 20));
                drop(st);
                self.file.write_all_at(&vec![1u8; n * (RECORD + 40)], offset).unwrap();
                self.file.sync_data().unwrap();
                st = self.state.lock().unwrap();
                st.1 = target;
                st.2 = false;
                self.cv.notify_all();
            } else {
                st = self.cv.wait(st).unwrap();
            }
        }
    }
}

/// The ideal with a dedicated leader thread: committers queue a ticket and wait; the thread
/// writes and syncs everything queued, again and again.
struct IdealThread {
    state: Mutex<(u64, u64, bool)>, // (next ticket, durable ticket, stop)
    work: Condvar,
    done: Condvar,
}

impl IdealThread {
    fn start(file: File) -> (Arc<Self>, std::thread::JoinHandle<()>) {
        let me = Arc::new(IdealThread {
            state: Mutex::new((0, 0, false)),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let t = Arc::clone(&me);
        let handle = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut st = t.state.lock().unwrap();
            loop {
                while st.0 == st.1 && !st.2 {
                    st = t.work.wait(st).unwrap();
                }
                if st.2 {
                    return;
                }
                let target = st.0;
                let n = (target - st.1) as usize;
                drop(st);
                file.write_all_at(&vec![1u8; n * (RECORD + 40)], offset).unwrap();
                file.sync_data().unwrap();
                offset = (offset + (n * (RECORD + 40)) as u64) % (IDEAL_FILE - (16 << 20));
                st = t.state.lock().unwrap();
                st.1 = target;
                t.done.notify_all();
            }
        });
        (me, handle)
    }

    fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        let mine = st.0;
        self.work.notify_one();
        while st.1 < mine {
            st = self.done.wait(st).unwrap();
        }
    }

    fn stop(&self) {
        self.state.lock().unwrap().2 = true;
        self.work.notify_one();
    }
}

fn wal_config(driver: Driver, segment_bytes: u64, prepare: PrepareAhead) -> WalConfig {
    WalConfig {
        log: WalOptions { segment_bytes, ..WalOptions::default() },
        driver,
        prepare_ahead: prepare,
        ..WalConfig::default()
    }
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

fn ideal_run(root: &Path, threaded: bool, committers: usize, seconds: f64) -> Run {
    let file = zero_file(&root.join("ideal.dat"), IDEAL_FILE);
    let run = if threaded {
        let (ideal, handle) = IdealThread::start(file);
        let i = Arc::clone(&ideal);
        let run = drive(committers, seconds, Arc::new(move |_, _| i.commit()));
        ideal.stop();
        handle.join().unwrap();
        run
    } else {
        let ideal = Arc::new(IdealLf { file, state: Mutex::new((0, 0, false, 0)), cv: Condvar::new() });
        drive(committers, seconds, Arc::new(move |_, _| ideal.commit()))
    };
    let _ = std::fs::remove_file(root.join("ideal.dat"));
    run
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
                    0 => ideal_run(root, true, n, seconds),
                    1 => ideal_run(root, false, n, seconds),
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
