//! The one place that picks loom's or the standard library's synchronisation primitives.
//!
//! Everything a loom model covers imports its `Arc`, `Mutex`, `Condvar` and atomics from here,
//! so that `RUSTFLAGS="--cfg loom"` swaps them all at once.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
