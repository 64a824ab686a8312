//! `ReadOnlyDb` writes nothing and works beside a live owner: every file of the directory is
//! byte for byte the same after it read (a healthy log, a torn tail, a segment of garbage);
//! a missing directory is an error and is not created; beside an owner that goes on
//! committing, the view holds every commit visible when it was opened and none after; a
//! checkpoint the owner takes in the middle of the load does not make it fail.

mod common;

use std::path::{Path, PathBuf};

use common::tree;
use waldb::db::ReadOnlyDb;
use waldb::wal::LogEnd;
use waldb::{Db, DbOptions, Error};

fn options() -> DbOptions {
    DbOptions::default().with_segment_bytes(64 << 10).with_memtable_bytes(None)
}

/// A database with `n` committed keys, closed.
fn filled(dir: &Path, n: u32) {
    let (db, _) = Db::open_opts(dir, options()).unwrap();
    for i in 0..n {
        db.transact(|txn| txn.put(format!("k{i:04}").as_bytes(), b"value")).unwrap();
    }
    db.close().unwrap();
}

#[test]
fn a_read_only_open_changes_no_byte_and_reads_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    filled(&dir, 50);
    let before = tree(&dir);
    let view = ReadOnlyDb::open_with(&waldb::StdDisk, &dir, &options()).unwrap();
    assert_eq!(view.scan(..).unwrap().len(), 50);
    assert_eq!(view.get(b"k0007").unwrap().as_deref(), Some(&b"value"[..]));
    assert_eq!(view.get(b"absent").unwrap(), None);
    assert_eq!(tree(&dir), before, "a read-only open wrote");
}

#[test]
fn a_torn_tail_is_reported_and_left_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    filled(&dir, 20);
    // Garbage right after the last record: what a crash in the middle of a write leaves.
    let view = ReadOnlyDb::open_with(&waldb::StdDisk, &dir, &options()).unwrap();
    let end = view.wal_report().last_lsn.unwrap();
    // The last segment in use: a prepared next one holds only zeros.
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    let segment =
        segments.into_iter().rev().find(|p| std::fs::read(p).unwrap().iter().any(|b| *b != 0)).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let tail = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    bytes[tail..tail + 40].fill(0xA5);
    std::fs::write(&segment, &bytes).unwrap();
    let before = tree(&dir);
    let view = ReadOnlyDb::open_with(&waldb::StdDisk, &dir, &options()).unwrap();
    assert!(matches!(view.wal_report().end, LogEnd::TornTail(_)), "{:?}", view.wal_report().end);
    assert_eq!(view.wal_report().last_lsn, Some(end));
    assert_eq!(view.scan(..).unwrap().len(), 20);
    assert_eq!(tree(&dir), before, "the torn tail was cut");
}

#[test]
fn a_missing_or_foreign_directory_is_an_error_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    assert!(matches!(ReadOnlyDb::open(&missing), Err(Error::NotWaldb { .. })));
    assert!(!missing.exists(), "created");
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"hello").unwrap();
    let before = tree(&foreign);
    assert!(matches!(ReadOnlyDb::open(&foreign), Err(Error::NotWaldb { .. })));
    assert_eq!(tree(&foreign), before);
}

#[test]
fn a_garbage_segment_is_an_error_and_stays_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    std::fs::write(dir.join("wal").join(format!("{:020}.wal", 1)), vec![0x5Au8; 8192]).unwrap();
    let before = tree(&dir);
    // Read as a log whose first write was torn (what the default recovery would cut), not as
    // an empty, clean one.
    let view = ReadOnlyDb::open(&dir).unwrap();
    assert!(!matches!(view.wal_report().end, LogEnd::Clean), "{:?}", view.wal_report().end);
    assert_eq!(view.key_count(), 0);
    assert_eq!(tree(&dir), before, "the evidence was changed");
}

/// Beside an owner that keeps committing: the view holds what was visible at its open and
/// nothing after, and the owner's commits, checkpoints and close are unaffected (no lock).
#[test]
fn a_view_beside_a_live_owner_sees_what_was_visible_and_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open_opts(tmp.path(), options()).unwrap();
    for i in 0..30u32 {
        db.transact(|txn| txn.put(&i.to_be_bytes(), b"x")).unwrap();
    }
    let visible = db.visible_lsn();
    let view = ReadOnlyDb::open_with(&waldb::StdDisk, tmp.path(), &options()).unwrap();
    assert_eq!(view.lsn(), visible);
    for i in 30..40u32 {
        db.transact(|txn| txn.put(&i.to_be_bytes(), b"x")).unwrap();
    }
    db.checkpoint().unwrap();
    assert_eq!(view.scan(..).unwrap().len(), 30, "a snapshot as of its open");
    let later = ReadOnlyDb::open_with(&waldb::StdDisk, tmp.path(), &options()).unwrap();
    assert_eq!(later.scan(..).unwrap().len(), 40);
    assert_eq!(later.checkpoint_lsn(), Some(db.visible_lsn()));
    db.close().unwrap();
}

/// A checkpoint the live owner takes in the middle of a read-only load — after the load read
/// the old state and listed the log's segments, before it reads them — removes segments the
/// load then finds missing; the open loads again from the new checkpoint and sees everything.
#[cfg(feature = "sim")]
#[test]
fn a_checkpoint_during_a_read_only_load_is_survived() {
    use std::io;
    use std::sync::{Arc, Mutex};
    use waldb::sim::{SimDisk, SimFile};
    use waldb::{Disk, OpenMode};

    type Hook = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

    /// `SimDisk` whose first listing of `/db/wal` runs the hook once the listing is taken.
    #[derive(Clone)]
    struct Racing(SimDisk, Hook);

    impl Disk for Racing {
        type File = SimFile;
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
            self.0.open(path, mode)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.create_dir_all(path)
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            let names = self.0.list_dir(path)?;
            if path.ends_with("wal")
                && let Some(hook) = self.1.lock().unwrap().take()
            {
                hook();
            }
            Ok(names)
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.0.is_dir(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.0.remove_file(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            self.0.sync_dir(path)
        }
    }

    let disk = SimDisk::new(11);
    let dir = Path::new("/db");
    let small = DbOptions::default().with_segment_bytes(16 << 10).with_memtable_bytes(None);
    let (db, _) = Db::open_with(disk.clone(), waldb::SystemClock::new(), dir, small).unwrap();
    for i in 0..300u32 {
        db.transact(|txn| txn.put(&i.to_be_bytes(), &[7; 100])).unwrap();
    }
    assert!(db.stats().wal.rotations > 2, "the log spans several segments");
    let owner = db.clone();
    let hook: Hook = Arc::new(Mutex::new(Some(Box::new(move || {
        let report = owner.checkpoint().unwrap();
        assert!(report.segments_removed > 0, "{report:?}");
    }))));
    let racing = Racing(disk.clone(), Arc::clone(&hook));
    let view = ReadOnlyDb::open_with(&racing, dir, &small).unwrap();
    assert!(hook.lock().unwrap().is_none(), "the checkpoint ran during the load");
    assert_eq!(view.checkpoint_lsn(), Some(db.visible_lsn()), "loaded again, from the new checkpoint");
    assert_eq!(view.scan(..).unwrap().len(), 300);
    db.close().unwrap();
}
