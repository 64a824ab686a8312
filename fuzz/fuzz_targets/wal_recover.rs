//! `cargo fuzz run wal_recover`: the recovery reader and a resumed writer over a `SimDisk`
//! directory of segment files built from the input. The properties are in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let disk = waldb::sim::SimDisk::new(0);
    harness::wal_recover(disk, std::path::Path::new("/db/wal"), data);
});
