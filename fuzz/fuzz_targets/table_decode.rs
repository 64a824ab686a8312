//! `cargo fuzz run table_decode`: the sorted table's decoders on arbitrary bytes and on tables
//! the builder made from arbitrary entries. The properties are in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::table_decode(data));
