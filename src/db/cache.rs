//! The block cache: decoded data blocks of the sorted tables, shared by every table of a
//! database, bounded in bytes ([`DbOptions::cache_bytes`](super::DbOptions::cache_bytes)).
//!
//! - **Bounded.** Each block weighs what it holds in memory ([`Block::memory_bytes`]: its bytes
//!   and its entries' slots); the cache evicts (CLOCK-Pro, from `quick_cache`) to stay within
//!   its capacity. A block larger than the whole cache is read and not kept.
//! - **Checked once.** A block enters the cache only after its checksum and its decode passed;
//!   a hit is used as is.
//! - **Keyed by table id and offset.** Table ids are never reused while a database is open, so
//!   a replaced table's blocks are never read for another's; they age out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::table::Block;
use crate::error::Result;

#[derive(Clone, Copy)]
struct Weight;

impl quick_cache::Weighter<(u64, u64), Arc<Block>> for Weight {
    fn weight(&self, _key: &(u64, u64), block: &Arc<Block>) -> u64 {
        block.memory_bytes() as u64
    }
}

/// See the [module docs](self).
pub(crate) struct BlockCache {
    blocks: quick_cache::sync::Cache<(u64, u64), Arc<Block>, Weight>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache").field("bytes", &self.bytes()).finish_non_exhaustive()
    }
}

impl BlockCache {
    /// A cache of at most `capacity` bytes (at least 1).
    pub(crate) fn new(capacity: u64) -> Self {
        let items = usize::try_from(capacity / 4096).unwrap_or(usize::MAX).clamp(16, 1 << 20);
        BlockCache {
            blocks: quick_cache::sync::Cache::with_weighter(items, capacity.max(1), Weight),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Block at `offset` of table `table`: from the cache, or `read` and kept.
    ///
    /// # Errors
    ///
    /// `read`'s.
    pub(crate) fn get_or_read(
        &self,
        table: u64,
        offset: u64,
        read: impl FnOnce() -> Result<Arc<Block>>,
    ) -> Result<Arc<Block>> {
        if let Some(b) = self.blocks.get(&(table, offset)) {
            self.hits.fetch_add(1, Relaxed);
            return Ok(b);
        }
        self.misses.fetch_add(1, Relaxed);
        let block = read()?;
        self.blocks.insert((table, offset), Arc::clone(&block));
        Ok(block)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.blocks.weight()
    }

    /// Lookups answered from the cache.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// Lookups that read the block from its table.
    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }
}
