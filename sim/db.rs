//! The database campaign (`waldb::sim::campaign`, where the driver, the model and the
//! checker live and list the invariants): `WALDB_SIM_DB_SEEDS=N` (default 500) seeds in the
//! test run, `WALDB_SIM_SEED=S` replays one, `WALDB_SIM_VERBOSE=1` prints its events.
//! Long campaigns: `cargo run --release --features sim -- sim --seeds 100000`.

use waldb::sim::campaign::{Outcome, SeedOptions, run_seed};

use crate::support::seeds;

/// Runs one seed with the default fault plan; a failure fails the test with its report.
pub fn run(seed: u64) -> Outcome {
    let options =
        SeedOptions { verbose: std::env::var_os("WALDB_SIM_VERBOSE").is_some(), ..SeedOptions::default() };
    run_seed(seed, options).unwrap_or_else(|failure| panic!("{failure}"))
}

#[test]
fn db_sim() {
    let seeds = seeds("WALDB_SIM_DB_SEEDS", 500);
    let started = std::time::Instant::now();
    let mut total = Outcome::default();
    for &seed in &seeds {
        total.add(&run(seed));
    }
    eprintln!("db_sim: {} seeds in {:.2?}: {total:?}", seeds.len(), started.elapsed());
    // The campaign must exercise what it claims to check.
    if seeds.len() >= 100 {
        for (what, n) in [
            ("crashes", total.crashes),
            ("acknowledged commits", total.commits_acked),
            ("commits with an unknown outcome", total.commits_failed),
            ("conflicts", total.conflicts),
            ("checkpoints", total.checkpoints),
            ("faults", total.faults_hit),
            ("bit flips", total.bit_flips),
            ("misdirected writes", total.misdirected_writes),
        ] {
            assert!(n > 0, "the campaign had no {what}: it proves little");
        }
    }
}

#[test]
fn db_sim_is_deterministic() {
    for seed in [3, 11, 40] {
        assert_eq!(run(seed), run(seed), "seed {seed} ran twice with different outcomes");
    }
    assert_ne!(run(1).trace_hash, run(2).trace_hash);
}
