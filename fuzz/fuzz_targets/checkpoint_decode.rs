//! `cargo fuzz run checkpoint_decode`: the checkpoint decoder on arbitrary bytes.
//! The properties are in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::checkpoint_decode(data));
