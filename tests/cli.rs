//! Proves the `waldb wal dump|verify` contract by running the built binary: exit 0 for a healthy
//! log, 1 for a torn tail, 2 for corruption, and a one-line error with exit 3 (never a panic) for
//! a missing directory, a file, a directory that is not waldb's, an unreadable segment, or an
//! unsupported version; 64 for bad usage.

#![cfg(feature = "cli")]

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use waldb::StdDisk;
use waldb::wal::RecoveryMode;

fn waldb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waldb")).args(args).output().expect("run waldb")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A database directory with a five-record log in `wal/`.
fn db_with_log() -> (tempfile::TempDir, Written) {
    let tmp = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| txn_payload(i, 60)).collect();
    let written = write_log(&StdDisk, &tmp.path().join("wal"), small_opts(), &payloads, 1);
    (tmp, written)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The records of the log in `db/wal` and its first segment file with its bytes, for damaging.
fn first_segment(db: &Path) -> (Vec<waldb::wal::OwnedRecord>, std::path::PathBuf, Vec<u8>) {
    let wal = db.join("wal");
    let (records, _) = read(&StdDisk, &wal, small_opts(), RecoveryMode::Strict).unwrap();
    let (path, bytes) = snapshot(&StdDisk, &wal).swap_remove(0);
    (records, path, bytes)
}

#[track_caller]
fn assert_one_line_error(o: &Output, code_expected: i32, needle: &str) {
    assert_eq!(code(o), code_expected, "stdout {} stderr {}", stdout(o), stderr(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("waldb: error: ") && err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn verify_healthy_log_exits_0_from_db_or_wal_dir() {
    let (tmp, _) = db_with_log();
    for dir in [tmp.path().to_path_buf(), tmp.path().join("wal")] {
        let o = waldb(&["wal", "verify", path(&dir)]);
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("records:    5"), "{out}");
        assert!(out.contains("last LSN:   5"), "{out}");
        assert!(out.contains("status:     healthy"), "{out}");
    }
}

#[test]
fn dump_prints_every_record() {
    let (tmp, written) = db_with_log();
    let o = waldb(&["wal", "dump", path(tmp.path())]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).take(5).map(|l| l.split_whitespace().collect()).collect();
    for (row, (lsn, _, payload)) in rows.iter().zip(&written) {
        // SEGMENT OFFSET LSN TYPE SIZE OPS
        assert_eq!(row[0], "1");
        assert_eq!(row[2], lsn.to_string());
        assert_eq!(row[3], "txn");
        assert_eq!(row[4], (payload.len() + 40).to_string());
        assert_eq!(row[5], "2", "put + delete");
    }
    assert_eq!(rows[0][1], "64", "the first record follows the segment header");
    assert!(out.contains("status:     healthy"));
}

#[test]
fn verify_torn_tail_exits_1() {
    let (tmp, written) = db_with_log();
    let (records, p, mut bytes) = first_segment(tmp.path());
    let last = records.last().unwrap();
    bytes[last.offset as usize + 50..].fill(0);
    write_bytes(&StdDisk, &p, &bytes);
    let o = waldb(&["wal", "verify", path(tmp.path())]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("records:    {}", written.len() - 1)), "{out}");
    assert!(out.contains("torn tail in") && out.contains(&format!("at offset {}", last.offset)), "{out}");
}

#[test]
fn verify_mid_log_corruption_exits_2() {
    let (tmp, _) = db_with_log();
    let (records, p, mut bytes) = first_segment(tmp.path());
    bytes[records[2].offset as usize + 45] ^= 0x08;
    write_bytes(&StdDisk, &p, &bytes);
    for cmd in ["verify", "dump"] {
        let o = waldb(&["wal", cmd, path(tmp.path())]);
        assert_eq!(code(&o), 2, "{cmd}: {}{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!("CORRUPT in {} at offset {}", p.display(), records[2].offset)),
            "{out}"
        );
        assert!(out.contains("checksum mismatch"), "{out}");
    }
}

#[test]
fn bad_input_is_a_one_line_error_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    assert_one_line_error(&waldb(&["wal", "verify", path(&missing)]), 3, "no such directory");

    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_one_line_error(&waldb(&["wal", "dump", path(&file)]), 3, "not a directory");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_one_line_error(
        &waldb(&["wal", "verify", path(&empty)]),
        3,
        "neither a wal/ directory nor segment files",
    );

    // A "segment" that cannot be read as a file.
    let odd = tmp.path().join("odd");
    std::fs::create_dir_all(odd.join("wal").join("00000000000000000001.wal")).unwrap();
    assert_one_line_error(&waldb(&["wal", "verify", path(&odd)]), 3, "00000000000000000001.wal");
}

#[test]
fn unsupported_version_exits_3() {
    let (tmp, _) = db_with_log();
    let files = snapshot(&StdDisk, &tmp.path().join("wal"));
    let (p, mut bytes) = files[0].clone();
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    let crc = crc32c_of(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    write_bytes(&StdDisk, &p, &bytes);
    assert_one_line_error(
        &waldb(&["wal", "verify", path(tmp.path())]),
        3,
        "format version 9 is not supported",
    );
}

/// CRC32C, written out so that the test does not trust the crate's own encoder.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// `waldb wal dump | head` must not panic when the reader goes away.
#[test]
fn closed_stdout_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..3000).map(|i| txn_payload(i, 20)).collect();
    write_log(&StdDisk, &tmp.path().join("wal"), small_opts(), &payloads, 3000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_waldb"))
        .args(["wal", "dump", path(tmp.path())])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // more than a pipe buffer of output, and nobody reads it
    let o = child.wait_with_output().unwrap();
    assert_one_line_error(&o, 3, "Broken pipe");
}

#[test]
fn usage_errors_exit_64_on_one_line_and_help_exits_0() {
    for args in [&["wal"][..], &["wal", "verify"], &["frobnicate"], &["get"]] {
        assert_one_line_error(&waldb(args), 64, "see waldb --help");
    }
    let o = waldb(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("wal"));
}

#[cfg(feature = "sim")]
#[test]
fn sim_runs_a_campaign_and_prints_what_it_injected_and_checked() {
    let o = waldb(&["sim", "--seeds", "40", "--from", "7", "--faults", "all"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("waldb sim: seeds 7..47 clean: 40 seeds"), "{out}");
    for row in [
        "| crashes (power failures) |",
        "| EIO on sync |",
        "| acknowledged commits: durable, visible, serial (1, 4) |",
    ] {
        assert!(out.contains(row), "{row} missing from:\n{out}");
    }
    assert!(stderr(&o).contains("40/40 seeds"), "a progress line: {}", stderr(&o));
    // The same seeds give the same trace.
    let again = waldb(&["sim", "--seeds", "40", "--from", "7", "--faults", "all"]);
    assert_eq!(
        stdout(&again).lines().next().map(|l| l.rsplit(' ').next()),
        out.lines().next().map(|l| l.rsplit(' ').next())
    );
    assert_one_line_error(&waldb(&["sim", "--faults", "sometimes"]), 64, "--faults");
}

#[test]
fn bench_prints_its_tables_and_removes_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    let o = waldb(&["bench", path(&dir), "--seconds", "0.05"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("a 4 KiB write + fdatasync into a pre-zeroed file takes"), "{out}");
    for row in ["| 128 |", "| 50 |", "| overlapping (16 shared) |", "| disjoint |"] {
        assert!(out.contains(row), "{row} missing from:\n{out}");
    }
    assert!(stderr(&o).contains("30/30 cells"), "a progress line: {}", stderr(&o));
    assert!(!dir.exists(), "the data directory is removed");
    // An existing directory is refused, not overwritten.
    std::fs::create_dir(&dir).unwrap();
    assert_one_line_error(&waldb(&["bench", path(&dir)]), 3, "exists");
    let o = waldb(&["bench", path(&tmp.path().join("other")), "--seconds", "0"]);
    assert_eq!(code(&o), 64);
    assert!(stderr(&o).contains("--seconds is between 0.05 and 600"), "{}", stderr(&o));
}

/// Every argument of `stress` is bounded before it is used: out of range, it is a one-line
/// usage error (exit 64) — never a panic, an abort, a huge allocation or a failed thread
/// spawn — and nothing is created.
#[test]
fn stress_bounds_every_argument_before_using_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    for (args, needle) in [
        (&["--value-size", "18446744073709551615"][..], "--value-size"),
        (&["--value-size", "5000000"], "--value-size"),
        (&["--writers", "4294967295"], "--writers"),
        (&["--writers", "100000"], "--writers"),
        (&["--writers", "0"], "--writers"),
        (&["--seconds", "1e300"], "--seconds"),
        (&["--seconds", "NaN"], "--seconds"),
        (&["--seconds=-1"], "--seconds"),
        (&["--durability", "sometimes"], "--durability"),
    ] {
        let mut all = vec!["stress", path(&dir)];
        all.extend_from_slice(args);
        assert_one_line_error(&waldb(&all), 64, needle);
        assert!(!dir.exists(), "{args:?}: nothing is created");
    }
    // In range, it runs.
    let o = waldb(&["stress", path(&dir), "--writers", "2", "--seconds", "0.1", "--durability", "buffered"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).lines().all(|l| l.starts_with("ACK ")), "{}", stdout(&o));
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

/// `put`, `get`, `scan` and `del` round-trip text and, with `--hex`, binary keys and values;
/// an absent key exits 4 (no other status means that).
#[test]
fn put_get_scan_del_round_trip_text_and_hex() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let d = path(&dir);
    for args in [
        &["put", d, "apple", "red"][..],
        &["put", d, "--hex", "00ff", "0a00"],
        &["put", d, "banana", "yellow"],
    ] {
        let o = waldb(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).trim().parse::<u64>().is_ok(), "prints the commit LSN: {}", stdout(&o));
    }
    let o = waldb(&["get", d, "apple"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "red\n"));
    let o = waldb(&["get", d, "--hex", "00ff"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "0a00\n"));
    let o = waldb(&["scan", d, "--hex"]);
    assert_eq!(stdout(&o), "00ff\t0a00\n6170706c65\t726564\n62616e616e61\t79656c6c6f77\n");
    let o = waldb(&["scan", d, "b", "c"]);
    assert_eq!(stdout(&o), "banana\tyellow\n");
    let o = waldb(&["scan", d, "--limit", "1", "a"]);
    assert_eq!(stdout(&o), "apple\tred\n");
    assert_eq!(code(&waldb(&["del", d, "apple"])), 0);
    let o = waldb(&["get", d, "apple"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (4, ""));
    assert_one_line_error(&waldb(&["get", d, "--hex", "0g"]), 64, "not hexadecimal");
    assert_one_line_error(&waldb(&["get", d, "--hex", "abc"]), 64, "odd number");
}

/// `--json`: one object per line for `get`, `scan`, `stats`, `wal dump` and `wal verify`; a
/// key that is not UTF-8 needs `--hex`, and says so before printing anything.
#[test]
fn json_output_is_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let d = path(&dir);
    assert_eq!(code(&waldb(&["put", d, "k1", "v1"])), 0);
    assert_eq!(code(&waldb(&["put", d, "k2", "v2"])), 0);
    let o = waldb(&["get", d, "k1", "--json"]);
    let v = json(stdout(&o).trim());
    assert_eq!(
        (v["key"].as_str(), v["value"].as_str(), v["lsn"].as_u64()),
        (Some("k1"), Some("v1"), Some(2))
    );
    let o = waldb(&["get", d, "nope", "--json"]);
    assert_eq!(code(&o), 4);
    assert!(json(stdout(&o).trim())["value"].is_null());
    let o = waldb(&["scan", d, "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["value"].as_str(), Some("v2"));
    let v = json(stdout(&waldb(&["stats", d, "--json"])).trim());
    assert_eq!(
        (v["keys"].as_u64(), v["lsn"].as_u64(), v["log"]["records"].as_u64()),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(v["log"]["end"].as_str(), Some("clean"));
    let o = waldb(&["wal", "dump", d, "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(json).collect();
    assert_eq!(lines.len(), 3, "two records and the end");
    assert_eq!(lines[0]["lsn"].as_u64(), Some(1));
    assert_eq!(lines[2]["end"]["status"].as_str(), Some("healthy"));
    let o = waldb(&["wal", "verify", d, "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(stdout(&o).trim())["records"].as_u64(), Some(2));
    assert_eq!(code(&waldb(&["put", d, "--hex", "ff00", "01"])), 0);
    let o = waldb(&["scan", d, "--json"]);
    assert_one_line_error(&o, 64, "--hex");
    assert_eq!(stdout(&o), "", "nothing printed before the error");
    let o = waldb(&["scan", d, "--json", "--hex"]);
    assert_eq!(stdout(&o).lines().count(), 3);
}

/// The inspection commands write nothing: a missing directory is an error and is not created;
/// a directory whose only segment is garbage, or whose log ends in a torn tail, stays byte for
/// byte as it was (the evidence of a fault is not replaced by a fresh segment).
#[test]
fn inspection_commands_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    for cmd in ["get", "scan", "stats", "del", "checkpoint"] {
        let mut args = vec![cmd, path(&missing)];
        if matches!(cmd, "get" | "del") {
            args.push("k");
        }
        assert_one_line_error(&waldb(&args), 3, "no");
        assert!(!missing.exists(), "{cmd} created the directory");
    }
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir_all(garbage.join("wal")).unwrap();
    std::fs::write(garbage.join("wal").join(format!("{:020}.wal", 1)), vec![0x5Au8; 8192]).unwrap();
    let (db, _) = db_with_log();
    let torn = db.path();
    let (_, seg, mut bytes) = first_segment(torn);
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    bytes[end..end + 20].fill(0x77);
    std::fs::write(&seg, &bytes).unwrap();
    for dir in [garbage.as_path(), torn] {
        let before = tree(dir);
        for args in [vec!["get", path(dir), "k"], vec!["scan", path(dir)], vec!["stats", path(dir)]] {
            let o = waldb(&args);
            assert!(matches!(code(&o), 0 | 4), "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("torn tail") && stderr(&o).contains("left in place"),
                "{}",
                stderr(&o)
            );
            assert_eq!(tree(dir), before, "{args:?} changed the directory");
        }
    }
}

/// Beside a live owner (this process holds the database open): `get` and `scan` read
/// without a lock and say that the view may be behind; `put` is refused with the lock named.
#[test]
fn inspection_works_beside_a_live_owner_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = waldb::Db::open_opts(tmp.path(), waldb::DbOptions::default()).unwrap();
    db.transact(|txn| txn.put(b"k", b"live")).unwrap();
    let o = waldb(&["get", path(tmp.path()), "k"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "live\n"), "{}", stderr(&o));
    if cfg!(target_os = "linux") {
        assert!(
            stderr(&o).contains("open in another process") && stderr(&o).contains("may be behind"),
            "{}",
            stderr(&o)
        );
    }
    assert_one_line_error(&waldb(&["put", path(tmp.path()), "k", "v"]), 3, "already open");
    db.transact(|txn| txn.put(b"k", b"still mine")).unwrap();
    db.close().unwrap();
    drop(db);
    let o = waldb(&["get", path(tmp.path()), "k"]);
    assert_eq!(stdout(&o), "still mine\n");
    assert_eq!(stderr(&o), "", "no note once nobody holds it");
}
