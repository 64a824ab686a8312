//! The commit queue: lock-free in production (`crossbeam_queue::SegQueue`), a `Mutex<VecDeque>`
//! under loom, which cannot see inside crossbeam.
//!
//! The queue itself is unbounded; [`Shared::reserve`](super::Shared) bounds it by reserving
//! records and bytes before a push.

#[cfg(not(loom))]
pub(crate) struct Queue<T>(crossbeam_queue::SegQueue<T>);

#[cfg(not(loom))]
impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue(crossbeam_queue::SegQueue::new())
    }

    pub(crate) fn push(&self, value: T) {
        self.0.push(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.0.pop()
    }
}

#[cfg(loom)]
pub(crate) struct Queue<T>(crate::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue(crate::sync::Mutex::new(std::collections::VecDeque::new()))
    }

    pub(crate) fn push(&self, value: T) {
        crate::sync::lock(&self.0).push_back(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        crate::sync::lock(&self.0).pop_front()
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
