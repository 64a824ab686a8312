//! The memory bound, in its own test binary (other tests' allocations would blur it): a database
//! written with many times more data than its memtables and its cache hold keeps its resident
//! memory within
//!
//! ```text
//!   memtables_max × memtable_bytes + the largest transaction + cache_bytes
//!     + the tables' indexes and filters (DbStats::table_memory_bytes)
//! ```
//!
//! plus a fixed allowance for the process itself (allocator arenas, thread stacks, the log's
//! buffers). Checked on the accounted counters always, and on the resident set on Linux.

use waldb::wal::Durability;
use waldb::{Db, DbOptions};

/// Resident memory of this process, in bytes (Linux), or `None`.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn memory_stays_within_the_documented_bound() {
    const MEMTABLE: u64 = 1 << 20;
    const CACHE: u64 = 1 << 20;
    const VALUE: usize = 1000;
    const TXN_PUTS: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let options = DbOptions::default()
        .with_memtable_bytes(Some(MEMTABLE))
        .with_cache_bytes(CACHE)
        .with_durability(Durability::None);
    let (db, _) = Db::open_opts(tmp.path(), options).unwrap();
    let before = rss();
    // 160 MiB of values: 160 times a memtable.
    let total = 160usize << 20;
    let value = vec![0x5a; VALUE];
    let txns = total / (VALUE * TXN_PUTS);
    for t in 0..txns {
        db.transact(|txn| {
            for i in 0..TXN_PUTS {
                let k = ((t * TXN_PUTS + i) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                txn.put(&k.to_be_bytes(), &value)?;
            }
            Ok(())
        })
        .unwrap();
    }
    // Reads through the cache.
    for t in (0..txns * TXN_PUTS).step_by(97) {
        let k = (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert!(db.get(&k.to_be_bytes()).unwrap().is_some(), "key {t}");
    }
    let stats = db.stats();
    let txn_max = u64::from(db.limits().txn_bytes_max);
    let memtables = u64::from(options.memtables_max) * MEMTABLE + txn_max;
    assert!(stats.compactions > 10 && stats.tables > 3, "{stats:?}");
    assert!(stats.cache_bytes <= CACHE, "{stats:?}");
    assert!(stats.memtable_bytes <= MEMTABLE + txn_max, "{stats:?}");
    let bound = memtables + CACHE + stats.table_memory_bytes;
    eprintln!("bound {bound} B: memtables {memtables}, cache {CACHE}, tables {}", stats.table_memory_bytes);
    if let (Some(before), Some(after)) = (before, rss()) {
        let grown = after.saturating_sub(before);
        eprintln!("resident memory grew by {grown} B over {total} B written");
        // The allowance: allocator arenas and fragmentation, the log's buffers.
        let allowance = 48 << 20;
        assert!(grown < bound + allowance, "grew {grown} B; bound {bound} B + {allowance} B");
    }
    db.close().unwrap();
}
