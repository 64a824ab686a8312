//! `cargo fuzz run manifest_decode`: the manifest decoder on arbitrary bytes.
//! The properties are in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest_decode(data));
