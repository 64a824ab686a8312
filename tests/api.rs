//! The API a user holds: `Db::transact` retries conflicts (exactly when they happen, within its
//! bound), `Error::is_retryable`, the handles are `Send + Sync`, options built from the
//! defaults stay valid.
//! Each test fails if the behaviour it names breaks: the retry tests count attempts, the
//! counter test checks that every increment landed once.

use std::time::Duration;

use waldb::sim::SimDisk;
use waldb::wal::{Driver, Wal};
use waldb::{Commit, ConflictOn, Db, DbOptions, Durability, Error, SimClock, SystemClock, Transaction};

fn options() -> DbOptions {
    DbOptions::default()
        .with_segment_bytes(64 << 10)
        .with_memtable_bytes(None)
        .with_txn_backoff_max(Duration::from_millis(1))
}

fn open(disk: &SimDisk, options: DbOptions) -> Db<SimDisk, SystemClock> {
    Db::open_with(disk.clone(), SystemClock::new(), "/db".as_ref(), options).unwrap().0
}

/// Handles cross threads: a user shares a `Db` and moves transactions and commits to workers.
#[test]
fn db_transaction_commit_and_wal_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Db>();
    send_sync::<Db<SimDisk, SimClock>>();
    send_sync::<Transaction>();
    send::<Commit>();
    send_sync::<Wal>();
    send_sync::<Error>();
}

/// A conflict on the first attempt runs the closure again from a fresh snapshot, once; the
/// second attempt sees the concurrent commit and wins.
#[test]
fn transact_runs_again_after_a_conflict_and_sees_the_winner() {
    let disk = SimDisk::new(1);
    let db = open(&disk, options());
    let mut attempts = 0;
    let seen = db
        .transact(|txn| {
            attempts += 1;
            let seen = txn.get(b"k")?;
            if attempts == 1 {
                // A concurrent writer commits after this attempt read `k`.
                let mut other = db.begin()?;
                other.put(b"k", b"other")?;
                other.commit_blocking()?;
            }
            txn.put(b"k", b"mine")?;
            Ok(seen)
        })
        .unwrap();
    assert_eq!(attempts, 2, "one conflict, one retry");
    assert_eq!(seen.as_deref(), Some(&b"other"[..]), "the retry read from a fresh snapshot");
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"mine"[..]));
    assert_eq!(db.stats().conflicts, 1);
}

/// A transaction that conflicts every time runs `1 + txn_retries_max` times, then returns the
/// conflict, naming the key and how it was used.
#[test]
fn transact_gives_up_after_its_bound() {
    let disk = SimDisk::new(2);
    let db = open(&disk, options().with_txn_retries_max(3));
    let mut attempts = 0;
    let result = db.transact(|txn| {
        attempts += 1;
        txn.get(b"hot")?;
        let mut other = db.begin()?;
        other.put(b"hot", &[attempts])?;
        other.commit_blocking()?;
        txn.put(b"cold", b"x")
    });
    let e = result.unwrap_err();
    assert!(matches!(&e, Error::Conflict { key, on: ConflictOn::Read, .. } if &**key == b"hot"), "{e}");
    assert!(e.is_retryable());
    assert_eq!(attempts, 4);
    assert_eq!(db.get(b"cold").unwrap(), None, "no attempt committed");
}

/// An error of the closure aborts the transaction and is returned as it is, without a retry.
#[test]
fn transact_returns_the_closures_error_without_retrying() {
    let disk = SimDisk::new(3);
    let db = open(&disk, options());
    let mut attempts = 0;
    let result: waldb::Result<()> = db.transact(|txn| {
        attempts += 1;
        txn.put(b"k", b"v")?;
        Err(Error::TooLarge { what: "test", len: 2, max: 1 })
    });
    assert!(matches!(result, Err(Error::TooLarge { what: "test", .. })));
    assert_eq!(attempts, 1);
    assert_eq!(db.get(b"k").unwrap(), None);
}

/// Racing read-modify-writes through `transact` from four threads on real files: every
/// increment lands exactly once.
#[test]
fn transact_counts_every_increment_from_racing_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let options = options().with_durability(Durability::None);
    let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
    let threads = 4;
    let per_thread = 200u64;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    db.transact(|txn| {
                        let n = txn.get(b"n")?.map_or(0, |v| u64::from_le_bytes(v[..].try_into().unwrap()));
                        txn.put(b"n", &(n + 1).to_le_bytes())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let n = db.get(b"n").unwrap().map(|v| u64::from_le_bytes(v[..].try_into().unwrap()));
    assert_eq!(n, Some(threads * per_thread));
    db.close().unwrap();
}

/// Changing only the segment size, down to the smallest, gives a database that opens and takes
/// a transaction at its limits.
#[test]
fn a_small_segment_alone_gives_working_options() {
    let disk = SimDisk::new(4);
    let options = DbOptions::default().with_segment_bytes(16 << 10).with_driver(Driver::Manual);
    let db = open(&disk, options);
    let limits = db.limits();
    let mut txn = db.begin().unwrap();
    let key = vec![b'k'; limits.key_bytes_max as usize];
    txn.put(&key, &vec![b'v'; limits.value_bytes_max as usize]).unwrap();
    let commit = txn.commit();
    db.flush_step().unwrap();
    commit.wait().unwrap();
    assert_eq!(db.get(&key).unwrap().map(|v| v.len()), Some(limits.value_bytes_max as usize));
}

/// `WalStats::buffered_window_ns` measures the durability window of `Buffered` commits: from
/// the enqueue of the oldest unsynced one to the end of the sync that covers it. On a
/// simulated clock the window is exactly the time the test lets pass (to within the
/// histogram's 12.5 %), and `Sync` commits add none.
#[test]
fn buffered_window_is_measured_from_enqueue_to_sync() {
    let disk = SimDisk::new(7);
    let clock = SimClock::new();
    let every = Duration::from_millis(10);
    let options = options().with_driver(Driver::Manual).with_durability(Durability::Buffered { every });
    let (db, _) = Db::open_with(disk.clone(), clock.clone(), "/db".as_ref(), options).unwrap();
    let commit = |k: &[u8], d: Durability| {
        let mut txn = db.begin().unwrap();
        txn.put(k, b"v").unwrap();
        let ticket = txn.commit_with(d);
        if matches!(d, Durability::Sync) {
            db.flush_step().unwrap();
        }
        ticket.wait().unwrap();
    };
    commit(b"a", Durability::Buffered { every });
    clock.advance(Duration::from_millis(4));
    commit(b"b", Durability::Buffered { every });
    db.flush_step().unwrap(); // written, not yet due: no sync
    assert_eq!(db.stats().wal.buffered_window_ns.count, 0);
    clock.advance(Duration::from_millis(9)); // 13 ms after `a`: past its window
    db.flush_step().unwrap();
    let w = db.stats().wal.buffered_window_ns;
    assert_eq!(w.count, 1, "{w:?}");
    let ms13 = 13_000_000u64;
    assert!((ms13..=ms13 + ms13 / 8).contains(&w.max), "{w:?}");
    // A `Sync` commit is not a `Buffered` one: no window.
    commit(b"c", Durability::Sync);
    assert_eq!(db.stats().wal.buffered_window_ns.count, 1);
}
