//! Everything a simulation needs (feature `sim`): the simulated disk with its crash and fault
//! model, the virtual clock, the seeded random generator, the database's crash campaign and
//! the commit-order oracle of the async harnesses.
//!
//! This is the machinery of waldb's durability gate, public so that a user's CI can run the
//! same campaigns against the same code (`docs/verification.md`). None of it is meant for a
//! build that serves data: `SimDisk` keeps everything in memory.
//!
//! ```
//! use std::path::Path;
//! use waldb::sim::{SimClock, SimDisk};
//! use waldb::{Db, DbOptions};
//!
//! # fn main() -> waldb::Result<()> {
//! let disk = SimDisk::new(7); // every choice of the disk from seed 7
//! let (db, _) = Db::open_with(disk.clone(), SimClock::new(), Path::new("/db"), DbOptions::default())?;
//! db.transact(|txn| txn.put(b"k", b"v"))?; // `Sync`: durable when this returns
//! drop(db);
//! disk.crash(); // unsynced writes lost, kept or torn
//! let (db, _) = Db::open_with(disk.clone(), SimClock::new(), Path::new("/db"), DbOptions::default())?;
//! assert_eq!(db.get(b"k")?.as_deref(), Some(&b"v"[..]));
//! # Ok(()) }
//! ```

pub mod campaign;
pub mod history;
pub mod workload;

pub use crate::clock::SimClock;
pub use crate::disk::sim::{CrashWeights, FaultOp, SimConfig, SimDisk, SimFaults, SimFile, SimStats};
pub use crate::rng::SimRng;

/// Planted bugs, for the tests that prove the checkers catch each (feature `mutants`). Never
/// enable that feature in a build you use.
#[cfg(feature = "mutants")]
#[doc(hidden)]
pub mod mutation {
    pub use crate::mutation::{Mutation, active, plant};
}
