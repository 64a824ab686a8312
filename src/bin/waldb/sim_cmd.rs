//! `waldb sim`: long deterministic crash-recovery campaigns of the database
//! (`waldb::sim::campaign`), with progress, seeds/s, and a summary of the faults injected and
//! the invariants checked. A failing seed prints its report and the command that replays it,
//! and the run exits 1.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use waldb::sim::FaultOp;
use waldb::sim::campaign::{FaultPlan, Outcome, SeedOptions, run_seed};

/// Which seeds inject I/O errors and disk full (`--faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultsArg {
    /// About one seed in three.
    Mixed,
    /// None: crashes and bit flips only.
    None,
    /// Every seed.
    All,
}

/// Runs seeds `from..from + seeds`; returns the exit status (0 clean, 1 a seed failed).
pub fn run(seeds: u64, from: u64, faults: FaultsArg, verbose: bool) -> u8 {
    let faults = match faults {
        FaultsArg::Mixed => FaultPlan::Mixed,
        FaultsArg::None => FaultPlan::Never,
        FaultsArg::All => FaultPlan::Always,
    };
    let options = SeedOptions { faults, verbose };
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut total = Outcome::default();
    for (i, seed) in (from..from.saturating_add(seeds)).enumerate() {
        match run_seed(seed, options) {
            Ok(o) => total.add(&o),
            Err(failure) => {
                let _ = writeln!(std::io::stderr(), "{}{failure}", if tty { "\n" } else { "" });
                let _ = writeln!(
                    std::io::stderr(),
                    "  this run: waldb sim --from {seed} --seeds 1 --faults {}",
                    name(faults)
                );
                return 1;
            }
        }
        let done = i as u64 + 1;
        if done == seeds || last_report.elapsed() >= Duration::from_millis(if tty { 200 } else { 10_000 }) {
            last_report = Instant::now();
            progress(done, seeds, started.elapsed(), tty);
        }
    }
    if tty {
        eprintln!();
    }
    summary(&total, seeds, from, started.elapsed());
    0
}

fn name(f: FaultPlan) -> &'static str {
    match f {
        FaultPlan::Mixed => "mixed",
        FaultPlan::Never => "none",
        FaultPlan::Always => "all",
    }
}

fn progress(done: u64, seeds: u64, elapsed: Duration, tty: bool) {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let width = 30;
    let filled = usize::try_from(done * width / seeds.max(1)).unwrap_or(0);
    let bar = format!("{}{}", "=".repeat(filled), " ".repeat(usize::try_from(width).unwrap_or(0) - filled));
    let line = format!("[{bar}] {done}/{seeds} seeds, {rate:.0} seeds/s, {:.1} s", elapsed.as_secs_f64());
    if tty {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}

/// The summary table on stdout.
fn summary(t: &Outcome, seeds: u64, from: u64, elapsed: Duration) {
    let d = &t.disk;
    let secs = elapsed.as_secs_f64();
    println!(
        "waldb sim: seeds {from}..{} clean: {seeds} seeds in {secs:.1} s ({:.0} seeds/s), trace {:016x}",
        from + seeds,
        seeds as f64 / secs.max(1e-9),
        t.trace_hash
    );
    table(
        "faults injected",
        &[
            ("crashes (power failures)", d.crashes),
            ("  unsynced writes lost", d.crash_writes_lost),
            ("  unsynced writes torn", d.crash_writes_torn),
            ("  unsynced directory operations lost", d.crash_dir_ops_lost),
            ("EIO on write", d.io_errors[FaultOp::Write.index()]),
            ("EIO on sync", d.io_errors[FaultOp::Sync.index()]),
            ("EIO on directory sync", d.io_errors[FaultOp::SyncDir.index()]),
            ("disk full", d.storage_full),
            ("bit flips at rest", d.bit_flips),
            ("misdirected writes", d.misdirected_writes),
        ],
    );
    table(
        "invariants checked",
        &[
            ("lives (opens, each followed by a workload)", t.lives),
            ("opens failed under faults, the database reopened", t.failed_opens),
            ("recovered states equal to the model's prefix (1, 2, 3, 5, 6)", t.states_checked),
            ("acknowledged commits: durable, visible, serial (1, 4)", t.commits_acked),
            ("commits with an unknown outcome, whole or absent (5)", t.commits_failed),
            ("conflicts refused (nothing written)", t.conflicts),
            ("reads equal to the model at their snapshot (4)", t.reads_checked),
            ("checkpoints", t.checkpoints),
            ("errors reported under faults", t.faults_hit),
            ("recoveries after silent corruption ending in a clear error (7)", t.corrupt_opens),
        ],
    );
    println!();
    println!(
        "Numbers refer to DESIGN.md §6; (8), determinism, is checked by `cargo test --features sim --test sim db_sim_is_deterministic`."
    );
}

/// A two-column markdown table of counts, after a blank line.
fn table(title: &str, rows: &[(&str, u64)]) {
    println!();
    println!("| {title} | count |");
    println!("|---|---:|");
    for (what, n) in rows {
        println!("| {what} | {n} |");
    }
}
