//! `waldb sim`: long deterministic crash-recovery campaigns of the database
//! (`waldb::sim::campaign`), with progress, seeds/s, and a summary of the faults injected and
//! the invariants checked. A failing seed prints its report and the command that replays it,
//! and the run exits 1.

use std::time::Duration;

use super::progress::Progress;

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
    let mut progress = Progress::new(seeds, "seeds", Duration::from_secs(10));
    let mut total = Outcome::default();
    for seed in from..from.saturating_add(seeds) {
        match run_seed(seed, options) {
            Ok(o) => total.add(&o),
            Err(failure) => {
                progress.println(&format!("{failure}"));
                progress.println(&format!(
                    "  this run: waldb sim --from {seed} --seeds 1 --faults {}",
                    name(faults)
                ));
                return 1;
            }
        }
        progress.step(&format!("seed {seed}"));
    }
    summary(&total, seeds, from, progress.elapsed());
    0
}

fn name(f: FaultPlan) -> &'static str {
    match f {
        FaultPlan::Mixed => "mixed",
        FaultPlan::Never => "none",
        FaultPlan::Always => "all",
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
            ("memtables frozen when full", t.freezes),
            ("memtables flushed to sorted tables", t.flushes),
            ("compactions of sorted tables", t.compactions),
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
