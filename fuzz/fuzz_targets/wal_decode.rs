//! `cargo fuzz run wal_decode`: the record and segment-header decoders on arbitrary bytes.
//! The properties are in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::wal_decode(data));
