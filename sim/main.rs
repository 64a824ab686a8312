//! The deterministic simulation target: `cargo test --features sim --test sim`.
//!
//! - `wal_crash`: seeded crash campaigns over the log writer on `SimDisk` — random appends,
//!   writes, syncs and segment preparations, I/O errors and disk-full on some seeds, a crash, recovery,
//!   more work, another crash — checking after every crash that the recovered log is a prefix of
//!   what was appended, holds every synced record, and never a torn one.
//!
//! - `group`: group commit (`Wal`) with a crash after every flusher step of seeded runs, and
//!   each failure path (sync EIO, disk full, panics) bounded in steps.
//! - `db`: the whole database — N simulated clients interleaved by one seeded scheduler, every
//!   durability, conflicts, checkpoints, faults, crashes and bit flips — against a model, with
//!   the checker of DESIGN.md §6 (`WALDB_SIM_DB_SEEDS=N`, default 500).
//! - `faults`: the log's behaviour under each fault, scenario by scenario.
//! - `regressions`: each bug the simulator found, as a named test with its seed.
//! - `turmoil` (feature `turmoil`): the async API on a turmoil host that is crashed and
//!   bounced, over turmoil's own simulated filesystem — a second model of durability.
//! - `teeth` (feature `mutants`): with each of twelve bugs planted in turn (the log's seven, the
//!   sorted tables' five), the `db` campaign fails within its default budget.
//!
//! Seeds: `WALDB_SIM_SEEDS=N` widens the default campaign, `WALDB_SIM_SEED=S` runs one seed.
//! A failure prints the seed and the command that replays it.

mod db;
mod faults;
mod group;
mod regressions;
mod support;
#[cfg(feature = "mutants")]
mod teeth;
#[cfg(feature = "turmoil")]
mod turmoil;
mod wal_crash;
