//! Real-file crash test: `waldb stress` runs as a child process and is killed with SIGKILL at a
//! random moment (mostly a random time after its first ACK, one round in four on a clock from
//! spawn so that kills also land in open and recovery), again and again on one directory. After each kill the database is opened and
//! checked: every transaction the child acknowledged (`ACK <writer>-<n> <k>`) is present with
//! all `k` keys, and every transaction present is whole (all its keys, none missing).
//!
//! `WALDB_KILL_ROUNDS` (default 20) sets the number of kills; `WALDB_KILL_SEED` the schedule.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use waldb::Db;
use waldb::db::DbOptions;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// When a round's SIGKILL is sent.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This long after the child starts: may land in open, recovery or the first commits.
    AfterSpawn(Duration),
    /// This long after the child's first ACK: lands mid-commit however slow the machine is.
    AfterFirstAck(Duration),
}

/// The longest a healthy child may take to acknowledge its first transaction.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `waldb stress` on `dir` and kills it as `kill` says; returns its ACK lines.
fn run_and_kill(dir: &std::path::Path, kill: Kill, extra: &[&str]) -> Vec<(String, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_waldb"))
        .arg("stress")
        .arg(dir)
        .args(["--writers", "4", "--seconds", "60"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn waldb stress");
    let stdout = child.stdout.take().expect("piped");
    let (first_ack, first_ack_seen) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split(' ');
            assert_eq!(parts.next(), Some("ACK"), "unexpected output line {line:?}");
            let txn = parts.next().expect("a transaction name").to_owned();
            let k: u64 = parts.next().expect("a key count").parse().expect("a number");
            assert!((1..=8).contains(&k), "{line:?}");
            acks.push((txn, k));
            if acks.len() == 1 {
                let _ = first_ack.send(());
            }
        }
        acks
    });
    match kill {
        Kill::AfterSpawn(delay) => std::thread::sleep(delay),
        Kill::AfterFirstAck(delay) => {
            if first_ack_seen.recv_timeout(FIRST_ACK_TIMEOUT).is_err() {
                child.kill().ok();
                let _ = child.wait();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                panic!("stress acknowledged nothing within {FIRST_ACK_TIMEOUT:?}; stderr: {err}");
            }
            std::thread::sleep(delay);
        }
    }
    // SIGKILL: no destructor, no flush, no close runs in the child.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    let acks = reader.join().expect("reader");
    if status.success() {
        // It finished before the kill: then it must have printed no error.
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.is_empty(), "stress failed: {err}");
    }
    acks
}

/// Checks the database in `dir` against every ACK so far.
fn check(dir: &std::path::Path, acked: &BTreeMap<String, u64>) {
    let options = DbOptions::default().with_memtable_bytes(None);
    let (db, report) = Db::open_opts(dir, options).expect("the database opens after a kill");
    let pairs = db.scan(..).unwrap();
    // Transaction name → (k its values claim, indexes present).
    let mut present: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for (key, value) in &pairs {
        let key = std::str::from_utf8(key).expect("utf-8 key");
        let (txn, i) = key.rsplit_once('-').expect("<writer>-<n>-<i>");
        let i: u64 = i.parse().expect("index");
        let value = std::str::from_utf8(value).expect("utf-8 value");
        let k: u64 = value
            .strip_prefix("k=")
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("value of {key} does not start with k=<k>;"));
        let entry = present.entry(txn.to_owned()).or_insert((k, Vec::new()));
        assert_eq!(entry.0, k, "{key}: values of one transaction disagree on k");
        entry.1.push(i);
    }
    for (txn, (k, idx)) in &present {
        let mut idx = idx.clone();
        idx.sort_unstable();
        assert_eq!(idx, (0..*k).collect::<Vec<_>>(), "transaction {txn} is not whole (k={k}): {report:?}");
    }
    for (txn, k) in acked {
        match present.get(txn) {
            Some((found, _)) => assert_eq!(found, k, "{txn}"),
            None => panic!("acknowledged transaction {txn} (k={k}) is missing after a kill: {report:?}"),
        }
    }
    db.close().expect("close");
}

#[test]
fn every_acknowledged_transaction_survives_kill_9_whole() {
    let rounds = env_u64("WALDB_KILL_ROUNDS", 20);
    let mut seed = env_u64("WALDB_KILL_SEED", 0x5eed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut acked = BTreeMap::new();
    for round in 0..rounds {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        // One round in four is killed on a clock from spawn (0–300 ms: open, recovery, the first
        // commits); the rest 0–500 ms after the first ACK, so they test commits on any machine.
        let ms = Duration::from_millis((seed >> 33) % 500);
        let kill = if round % 4 == 3 { Kill::AfterSpawn(ms * 3 / 5) } else { Kill::AfterFirstAck(ms) };
        let acks = run_and_kill(&dir, kill, &[]);
        if matches!(kill, Kill::AfterFirstAck(_)) {
            assert!(!acks.is_empty(), "round {round}: an ACK was seen but none was collected");
        }
        for (txn, k) in acks {
            assert!(acked.insert(txn.clone(), k).is_none(), "{txn} acknowledged twice");
        }
        check(&dir, &acked);
        eprintln!("round {round}: killed {kill:?}, {} transactions acknowledged so far", acked.len());
    }
}

/// The same with values of 32 KiB, so that the 64 MiB memtables of `waldb stress` fill every
/// fraction of a second: kills land during flushes, manifest rewrites and compactions (the next
/// open also flushes what it replayed). `WALDB_KILL_LARGE_ROUNDS` (default 6) sets the kills.
#[test]
fn kill_9_during_flushes_and_compactions_loses_nothing() {
    let rounds = env_u64("WALDB_KILL_LARGE_ROUNDS", 6);
    let mut seed = env_u64("WALDB_KILL_SEED", 0x5eed) ^ 0x1a59e;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut acked = BTreeMap::new();
    let mut tables_seen = false;
    for round in 0..rounds {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let kill = Kill::AfterFirstAck(Duration::from_millis(300 + (seed >> 33) % 1500));
        let acks = run_and_kill(&dir, kill, &["--value-size", "32768"]);
        for (txn, k) in acks {
            assert!(acked.insert(txn.clone(), k).is_none(), "{txn} acknowledged twice");
        }
        check(&dir, &acked);
        let tables = std::fs::read_dir(dir.join("tables")).map_or(0, |d| d.count());
        tables_seen |= tables > 0;
        eprintln!(
            "round {round}: killed {kill:?}, {} acknowledged so far, {tables} table files",
            acked.len()
        );
    }
    assert!(tables_seen, "no flush happened: the test did not test flushes");
}
