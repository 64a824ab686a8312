//! Support shared by the integration tests: run a scenario on both disks, write logs, and edit
//! files through the `Disk` seam.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use waldb::wal::{
    LogWriter, OwnedRecord, ReadOptions, RecordKind, RecoveryMode, RecoveryReport, WalOptions, read_log,
};
use waldb::{Disk, DiskFile, Lsn, OpenMode, TxnId};

/// Defines, for each scenario `fn name<D: Disk + Clone>(disk: D, dir: &Path)`, a module `name`
/// with a test on `StdDisk` (in a temporary directory) and, with the `sim` feature, one on
/// `SimDisk`.
#[macro_export]
macro_rules! on_both_disks {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn std_disk() {
                let tmp = tempfile::tempdir().expect("tempdir");
                super::$name(waldb::StdDisk, &tmp.path().join("wal"));
            }

            #[cfg(feature = "sim")]
            #[test]
            fn sim_disk() {
                super::$name(waldb::sim::SimDisk::new(0x5EED), std::path::Path::new("/db/wal"));
            }
        }
    )*};
}

/// Small segments, so that short logs span several of them.
pub fn small_opts() -> WalOptions {
    WalOptions::default()
        .with_segment_bytes(4096)
        .with_record_payload_bytes_max(Some(2048))
        .with_recovery(RecoveryMode::TolerateTornTail)
}

pub fn read_opts(opts: WalOptions, mode: RecoveryMode) -> ReadOptions {
    opts.read_options().with_mode(mode)
}

/// A deterministic payload of `len` bytes for record number `i`.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8 | 1).collect()
}

/// A transaction payload of about `len` bytes.
pub fn txn_payload(i: usize, len: usize) -> Vec<u8> {
    let value = payload(i, len.saturating_sub(30));
    let key = format!("key-{i:06}");
    let mut out = Vec::new();
    waldb::wal::encode_txn(
        &mut out,
        TxnId(i as u64),
        &[
            waldb::wal::Op::Put { key: key.as_bytes(), value: &value },
            waldb::wal::Op::Delete { key: b"gone" },
        ],
    );
    out
}

/// What was appended: LSN, kind, payload.
pub type Written = Vec<(Lsn, RecordKind, Vec<u8>)>;

/// Opens (or creates) the log, appends `payloads` as transactions, syncing after every
/// `sync_every` records and at the end, and closes it.
pub fn write_log<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    opts: WalOptions,
    payloads: &[Vec<u8>],
    sync_every: usize,
) -> Written {
    let (mut w, _) = LogWriter::open(disk.clone(), dir, opts).expect("open writer");
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let lsn = w.append(RecordKind::Txn, p).expect("append");
        out.push((lsn, RecordKind::Txn, p.clone()));
        if (i + 1) % sync_every.max(1) == 0 {
            w.sync().expect("sync");
        }
    }
    w.close().expect("close");
    out
}

/// Reads the log and returns its records and report.
pub fn read<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    opts: WalOptions,
    mode: RecoveryMode,
) -> waldb::Result<(Vec<OwnedRecord>, RecoveryReport)> {
    read_log(disk.clone(), dir, read_opts(opts, mode))
}

/// Asserts that `records` is exactly the first `n` of `written`.
#[track_caller]
pub fn assert_prefix(records: &[OwnedRecord], written: &Written, n: usize, context: &str) {
    assert_eq!(records.len(), n, "{context}: expected the first {n} records, got {}", records.len());
    for (r, (lsn, kind, payload)) in records.iter().zip(written) {
        assert_eq!((r.lsn, r.kind), (*lsn, *kind), "{context}: record {lsn}");
        assert!(r.payload == *payload, "{context}: payload of record {lsn} differs");
    }
}

/// The segment files of `dir`, sorted.
pub fn segment_paths<D: Disk>(disk: &D, dir: &Path) -> Vec<PathBuf> {
    waldb::wal::segment::list_segments(disk, dir)
        .expect("list")
        .segments
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

pub fn read_bytes<D: Disk>(disk: &D, path: &Path) -> Vec<u8> {
    waldb::disk::read_file(disk, path, u64::MAX).expect("read file")
}

/// Replaces the content of `path` (creating it if needed) with `bytes`. Not synced: these edits
/// stand for what a crash or bit rot left on disk, and no crash follows them.
pub fn write_bytes<D: Disk>(disk: &D, path: &Path, bytes: &[u8]) {
    let file = match disk.open(path, OpenMode::ReadWrite) {
        Ok(f) => f,
        Err(_) => disk.open(path, OpenMode::CreateNew).expect("create"),
    };
    file.set_len(0).expect("set_len");
    file.write_all_at(bytes, 0).expect("write");
}

pub fn remove<D: Disk>(disk: &D, path: &Path) {
    disk.remove_file(path).expect("remove");
    disk.sync_dir(path.parent().expect("parent")).expect("sync dir");
}

/// Every file of the log directory with its bytes.
pub type Snapshot = Vec<(PathBuf, Vec<u8>)>;

pub fn snapshot<D: Disk>(disk: &D, dir: &Path) -> Snapshot {
    segment_paths(disk, dir)
        .into_iter()
        .map(|p| {
            let b = read_bytes(disk, &p);
            (p, b)
        })
        .collect()
}

/// Makes the log directory hold exactly `files`, rewriting only what differs.
pub fn restore<D: Disk>(disk: &D, dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for name in disk.list_dir(dir).expect("list") {
        let path = dir.join(name);
        if !files.iter().any(|(p, _)| *p == path) {
            disk.remove_file(&path).expect("remove");
        }
    }
    for (path, bytes) in files {
        let same = disk.open(path, OpenMode::Read).is_ok() && read_bytes(disk, path) == *bytes;
        if !same {
            write_bytes(disk, path, bytes);
        }
    }
}

/// Where each record lives: (file index, offset, encoded length).
pub fn layout(records: &[OwnedRecord], files: &Snapshot) -> Vec<(usize, usize, usize)> {
    records
        .iter()
        .map(|r| {
            let file = files
                .iter()
                .position(|(p, _)| {
                    waldb::wal::segment::parse_segment_file_name(p.file_name().unwrap().to_str().unwrap())
                        == Some(r.segment)
                })
                .expect("record's segment file");
            (file, r.offset as usize, waldb::wal::format::RECORD_HEADER_BYTES + r.payload.len())
        })
        .collect()
}

/// A log written for damage tests: what was appended, the files, and where each record lives.
pub struct Laid {
    pub written: Written,
    pub files: Snapshot,
    /// Per record: (file index, offset, encoded length).
    pub places: Vec<(usize, usize, usize)>,
}

/// Writes `payloads` (syncing each), and returns the log's bytes and layout. The log must read
/// back strictly, whole.
pub fn lay_out<D: Disk + Clone>(disk: &D, dir: &Path, opts: WalOptions, payloads: &[Vec<u8>]) -> Laid {
    let written = write_log(disk, dir, opts, payloads, 1);
    let files = snapshot(disk, dir);
    let (records, _) = read(disk, dir, opts, RecoveryMode::Strict).expect("a fresh log reads strictly");
    assert_prefix(&records, &written, written.len(), "fresh log");
    let places = layout(&records, &files);
    Laid { written, files, places }
}

mod block_on;
#[allow(unused_imports)] // not every test file awaits
pub use block_on::block_on;

/// Every file and directory under `dir` on the real disk (recursively), with each file's bytes
/// (`None` for a directory): to check that something wrote nothing.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        out.insert(d.clone(), None);
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}
