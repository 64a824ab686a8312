//! [`Ticket`]: the acknowledgement of an append, to wait on from blocking code or to await on
//! any executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::types::Lsn;

/// What a ticket waits on: implemented by the shared state of a [`Wal`](super::Wal), behind a
/// trait object so that tickets are not generic over the disk and clock.
pub(crate) trait Durable: Send + Sync {
    /// Blocks until `lsn` is durable or the log failed.
    fn wait_durable(&self, lsn: Lsn) -> Result<Lsn>;
    /// Polls for `lsn`; registers `cx`'s waker under `*waker_id` when pending.
    fn poll_durable(&self, lsn: Lsn, waker_id: &mut Option<u64>, cx: &mut Context<'_>) -> Poll<Result<Lsn>>;
    /// Drops a registered waker.
    fn forget(&self, lsn: Lsn, waker_id: u64);
}

/// The acknowledgement of an append: resolves to the LSN of its (last) record once the append's
/// [`Durability`](super::Durability) is met, or to the error that prevents it —
/// [`Error::Poisoned`](crate::Error::Poisoned) if a write or sync failed first.
///
/// Wait from blocking code with [`Ticket::wait`], or `.await` it on any executor (it is a plain
/// [`Future`], woken by whoever publishes the durable LSN; no runtime is required). Dropping a
/// ticket does not cancel the append.
#[must_use = "a ticket does nothing unless waited on; dropping it does not cancel the append"]
pub struct Ticket {
    lsn: Lsn,
    state: State,
}

enum State {
    /// Acknowledged at append (`Buffered`, `None`), or already resolved.
    Done,
    /// Waiting for a sync.
    Waiting { shared: Arc<dyn Durable>, waker_id: Option<u64> },
}

impl Ticket {
    pub(crate) fn done(lsn: Lsn) -> Self {
        Ticket { lsn, state: State::Done }
    }

    pub(crate) fn waiting(lsn: Lsn, shared: Arc<dyn Durable>) -> Self {
        Ticket { lsn, state: State::Waiting { shared, waker_id: None } }
    }

    /// The LSN of the append's last record.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Blocks until the append is acknowledged and returns its LSN. With
    /// [`Driver::LeaderFollower`](super::Driver::LeaderFollower) or
    /// [`Driver::Manual`](super::Driver::Manual), a waiter that finds no flush in flight runs the
    /// flusher step itself.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`](crate::Error::Poisoned) with the first failure if the log failed
    /// before this append was durable.
    pub fn wait(mut self) -> Result<Lsn> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Ok(self.lsn),
            State::Waiting { shared, waker_id } => {
                if let Some(id) = waker_id {
                    shared.forget(self.lsn, id);
                }
                shared.wait_durable(self.lsn)
            }
        }
    }
}

impl Future for Ticket {
    type Output = Result<Lsn>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let lsn = self.lsn;
        let poll = match &mut self.state {
            State::Done => return Poll::Ready(Ok(lsn)),
            State::Waiting { shared, waker_id } => shared.poll_durable(lsn, waker_id, cx),
        };
        if poll.is_ready() {
            self.state = State::Done;
        }
        poll
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let State::Waiting { shared, waker_id: Some(id) } = &self.state {
            shared.forget(self.lsn, *id);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Done => "done",
            State::Waiting { .. } => "waiting",
        };
        f.debug_struct("Ticket").field("lsn", &self.lsn).field("state", &state).finish()
    }
}
