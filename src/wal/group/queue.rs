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
