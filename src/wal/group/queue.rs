//! The commit queue: a vector behind a mutex, which the flusher swaps out whole.
//!
//! A push holds the lock for the few nanoseconds of a `Vec::push` (under the database's
//! sequencer, nobody else pushes meanwhile); a drain takes everything pushed with one lock,
//! swapping in the vector it drained last time (the drainer's own, kept in the flusher's
//! state, which one thread holds at a time). Neither allocates once the two vectors have
//! grown to the largest batch (up to [`Queue::KEEP`] entries: beyond, a burst's room is given
//! back once it has been drained). (A segmented lock-free queue allocated a zeroed block every
//! few dozen pushes in the committer's thread and freed it in the flusher's, under the lock
//! of the committer's allocator arena: about a tenth of a lone committer's time.) The same
//! code runs under loom.
//!
//! The queue itself is unbounded; [`Shared::reserve`](super::Shared) bounds it by reserving
//! records and bytes before a push.

use crate::sync::{Mutex, lock};

pub(crate) struct Queue<T> {
    /// Pushed, not yet drained.
    items: Mutex<Vec<T>>,
}

impl<T> Queue<T> {
    /// Room for entries a drained vector keeps: beyond it, what a burst grew is given back.
    pub(crate) const KEEP: usize = 4096;

    pub(crate) fn new() -> Self {
        Queue { items: Mutex::new(Vec::new()) }
    }

    pub(crate) fn push(&self, value: T) {
        lock(&self.items).push(value);
    }

    /// Moves everything pushed so far to the back of `out`, in the order pushed, swapping
    /// `spare` (empty: the vector the last drain took) in for the pushed vector.
    pub(crate) fn drain_into(&self, spare: &mut Vec<T>, out: &mut std::collections::VecDeque<T>) {
        debug_assert!(spare.is_empty());
        std::mem::swap(&mut *lock(&self.items), spare);
        out.extend(spare.drain(..));
        if spare.capacity() > Self::KEEP {
            spare.shrink_to(Self::KEEP);
        }
    }
}

/// Payload buffers returned by the flusher once written, for committers to encode their next
/// record into: a record's buffer is allocated by its committer's thread and would otherwise be
/// freed by the flusher's, which costs the allocator a cross-thread free per commit. Bounded:
/// at most [`BufferPool::BUFFERS`] buffers of at most [`BufferPool::BUFFER_BYTES_MAX`] each
/// are kept. Under loom it keeps nothing.
pub(crate) struct BufferPool {
    #[cfg(not(loom))]
    buffers: crossbeam_queue::ArrayQueue<Vec<u8>>,
}

impl BufferPool {
    /// Buffers kept at most.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) const BUFFERS: usize = 1024;
    /// The largest buffer kept (larger ones are freed).
    pub(crate) const BUFFER_BYTES_MAX: usize = 16 << 10;

    pub(crate) fn new() -> Self {
        BufferPool {
            #[cfg(not(loom))]
            buffers: crossbeam_queue::ArrayQueue::new(Self::BUFFERS),
        }
    }

    /// An empty buffer, reused when one is available.
    pub(crate) fn take(&self) -> Vec<u8> {
        #[cfg(not(loom))]
        if let Some(buf) = self.buffers.pop() {
            return buf;
        }
        Vec::new()
    }

    /// Keeps `buf` for a later [`BufferPool::take`] if it is small and the pool has room.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > Self::BUFFER_BYTES_MAX {
            return;
        }
        buf.clear();
        #[cfg(not(loom))]
        let _ = self.buffers.push(buf);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn a_drain_takes_everything_in_push_order_and_keeps_both_vectors() {
        let q = Queue::new();
        let (mut spare, mut out) = (Vec::new(), VecDeque::from([0]));
        (1..=3).for_each(|i| q.push(i));
        q.drain_into(&mut spare, &mut out);
        assert_eq!(out, [0, 1, 2, 3]);
        q.drain_into(&mut spare, &mut out);
        assert_eq!(out.len(), 4, "nothing pushed, nothing drained");
        (4..=5).for_each(|i| q.push(i));
        q.drain_into(&mut spare, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
        // The vectors swap, both kept: the room the first pushes made is there still.
        let items = lock(&q.items);
        assert!(items.is_empty() && spare.is_empty());
        assert!(items.capacity().max(spare.capacity()) >= 3);
        drop(items);
        // A burst's room is given back once drained; the vector it went to, at the next drain.
        (0..Queue::<u32>::KEEP * 2).for_each(|_| q.push(9));
        q.drain_into(&mut spare, &mut out);
        assert_eq!(out.len(), 6 + Queue::<u32>::KEEP * 2);
        q.drain_into(&mut spare, &mut out);
        assert!(lock(&q.items).capacity() <= Queue::<u32>::KEEP);
        assert!(spare.capacity() <= Queue::<u32>::KEEP);
    }
}
