//! Wake-ups: kicks of the background thread, the waits of blocking and async committers, and
//! the unparking of the waiters a publish satisfied.
//!
//! - **One wake-up per commit.** A blocking waiter parks on its own under its LSN; a publish
//!   takes out of `State::parked` exactly the waiters it made durable, and they are unparked
//!   all at once (at most [`WAKE_FLAT_MAX`]) or in a tree of fan-out [`WAKE_FANOUT`].
//! - **No waiter is forgotten.** A waiter is in `parked` (or `wakers`) until it is taken by a
//!   publish, by a failure (`unpark_all`), or by itself once it sees its LSN durable.
//! - **Nothing acknowledged after a failure.** A waiter checks `State::failed` under the same
//!   lock as `State::durable`.

use super::*;

impl<D: Disk, C: Clock> Shared<D, C> {
    /// Whether a record appended with `durability` needs the background thread to step:
    /// `Sync` ones are written by their own waiters unless a dedicated thread runs the steps.
    #[inline]
    pub(super) fn needs_kick(&self, durability: Durability) -> bool {
        !matches!(durability, Durability::Sync) || self.config.driver == Driver::Thread
    }

    /// Asks the background thread for a step, now.
    pub(super) fn kick(&self) {
        if self.config.driver == Driver::Manual {
            return;
        }
        // A lingering thread may have left `kicked` set by appends that did not wake it: it is
        // woken if it lingers already (`lingering`), and does not start to if it reads `urgent`
        // (it sets `lingering` and then reads `urgent`; this sets `urgent` and then reads
        // `lingering`: one of the two sees the other).
        if self.config.driver == Driver::LeaderFollower {
            self.urgent.store(true, SeqCst);
        }
        if !self.kicked.swap(true, SeqCst) || self.lingering.load(SeqCst) {
            let st = lock(&self.state);
            if st.worker_waiting {
                self.work.notify_one();
            }
        }
    }

    /// [`Shared::kick`] for a record appended with `durability`: one nobody waits for does not
    /// wake a thread that lingers for more of them; it is written when the lingering ends. A
    /// `Buffered` record whose window is no longer than the lingering wakes it, so that its
    /// sync is not late.
    #[inline]
    pub(super) fn kick_for(&self, durability: Durability) {
        if self.config.driver == Driver::Manual {
            return;
        }
        let urgent = match durability {
            Durability::Sync => true,
            Durability::Buffered { every } => every <= self.config.batch.write_behind,
            Durability::None => false,
        };
        if urgent {
            return self.kick();
        }
        if !self.kicked.swap(true, SeqCst) {
            let st = lock(&self.state);
            if st.worker_waiting && !self.lingering.load(SeqCst) {
                self.work.notify_one();
            }
        }
    }

    /// Blocks until `lsn` is durable, leading steps when allowed.
    ///
    /// A waiter that cannot lead parks in `State::parked` under its LSN: the publish that makes
    /// the LSN durable unparks it, and so does a release of leadership when it is the first
    /// waiter left, to lead the next step. Every other waiter sleeps on: each commit costs one
    /// wake-up, not one per publish.
    pub(super) fn wait_durable_impl(&self, lsn: Lsn) -> Result<Lsn> {
        if self.durable.load(SeqCst) >= lsn.0 {
            return Ok(lsn);
        }
        let mut st = lock(&self.state);
        let mut must_wait = false;
        let mut parked_as = None;
        loop {
            // Woken or not (a park may return spuriously), the entry goes: it is put back
            // below if the wait goes on.
            if let Some(id) = parked_as.take() {
                st.parked.remove(&(lsn, id));
                st.woken.remove(&id);
            }
            if st.durable >= lsn {
                // Help with the wake-ups: each satisfied waiter unparks a few more, so that a
                // large group wakes in a tree rather than one by one from the leader.
                let more = Self::take_woken(&mut st);
                drop(st);
                more.unpark();
                return Ok(lsn);
            }
            if let Some(cause) = &st.failed {
                return Err(Error::Poisoned { cause: Arc::clone(cause) });
            }
            let handover = self.handover(&st);
            if !must_wait && !st.leader && self.may_lead() && handover.is_none() {
                st.leader = true;
                drop(st);
                let progressed = self.lead_until(lsn);
                if self.handon.judge() {
                    self.stats.slow_handons.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.release_leadership();
                st = lock(&self.state);
                // No progress: an earlier LSN is not pushed yet. Its committer will flush or
                // kick, and the publish wakes this one.
                must_wait = !progressed;
                continue;
            }
            if (!self.may_lead() || handover.is_some()) && !st.leader {
                // A committer that could have led leaves the step to the thread.
                if let Some(rule) = handover.filter(|_| !must_wait && self.may_lead()) {
                    self.count_handover(rule);
                }
                drop(st);
                self.kick();
                st = lock(&self.state);
                if st.durable >= lsn || st.failed.is_some() {
                    continue;
                }
            }
            // Registered under the same lock hold as the checks above: a publish or a release
            // after them finds this entry, and an unpark before the park is not lost.
            st.next_waker_id += 1;
            let id = st.next_waker_id;
            st.parked.insert((lsn, id), thread::current());
            parked_as = Some(id);
            drop(st);
            thread::park();
            st = lock(&self.state);
            must_wait = false;
        }
    }

    /// [`Wake::unpark`]; `yield_to_each`: by the background thread while fewer than a crowd
    /// are left parked ([`Shared::few_parked`]), which then yields its CPU after each unpark of
    /// a small group, as far as [`yielding`] allows: the committer just woken commits again on
    /// this CPU before the thread's next write, which then takes it (see [`yielding`]). Not
    /// under loom, where the models keep the plain wake-ups.
    pub(super) fn unpark_woken(&self, wake: Wake, yield_to_each: bool) {
        match wake {
            Wake::All(group) if !cfg!(loom) && yield_to_each && self.yielding.on() => {
                let mut yielding = true;
                for t in group.into_values() {
                    t.unpark();
                    if yielding {
                        let before = self.clock.now();
                        thread::yield_now();
                        yielding = self.yielding.yielded(nanos(self.clock.now().saturating_sub(before)));
                        if !yielding {
                            self.stats.slow_yields.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            wake => wake.unpark(),
        }
    }

    /// Starts the wake-up of the waiters published durable so far (the leader calls this
    /// between steps).
    pub(super) fn wake_published(&self) {
        self.wake_published_by(false);
    }

    /// [`Shared::wake_published`]; `from_thread`: by the background thread, which yields its
    /// CPU to the waiters it wakes ([`Shared::unpark_woken`]).
    pub(super) fn wake_published_by(&self, from_thread: bool) {
        // The state lock is released before the system calls.
        let (woken, yield_to_each) = {
            let mut st = lock(&self.state);
            (Self::take_woken(&mut st), from_thread && self.few_parked(&st))
        };
        self.unpark_woken(woken, yield_to_each);
    }

    /// Takes the satisfied waiters to unpark: all of them when they are at most
    /// [`WAKE_FLAT_MAX`], else [`WAKE_FANOUT`] of them. Each waiter unparked, once it runs,
    /// takes more in the same way (in `wait_durable_impl`), so every waiter in `woken` is
    /// unparked: whoever moves waiters there (a publish) is a leader or the background thread,
    /// which calls this afterwards, and every unparked one calls it again while any are left.
    /// A waiter that runs before it is taken (its park returned early) takes itself out: every
    /// waiter taken here is one still to wake, so no branch of the tree dies on a thread that
    /// is already running (`tests/loom.rs`, with a fan-out of one under loom, finds the
    /// deadlocks when either rule is broken).
    pub(super) fn take_woken(st: &mut State) -> Wake {
        if st.woken.len() <= WAKE_FLAT_MAX {
            return Wake::All(std::mem::take(&mut st.woken));
        }
        Wake::Tree(std::array::from_fn(|_| st.woken.pop_last().map(|(_, t)| t)))
    }

    /// Unparks every parked waiter (the caller holds the state lock): after a failure, or when
    /// the committers take over the flushing.
    pub(super) fn unpark_all(st: &mut State) {
        for t in
            std::mem::take(&mut st.parked).into_values().chain(std::mem::take(&mut st.woken).into_values())
        {
            t.unpark();
        }
    }
}

impl Wake {
    /// Unparks the waiters taken (the caller holds no lock).
    pub(super) fn unpark(self) {
        match self {
            Wake::All(group) => group.into_values().for_each(|t| t.unpark()),
            Wake::Tree(first) => first.into_iter().flatten().for_each(|t| t.unpark()),
        }
    }
}

impl<D: Disk, C: Clock> Durable for Shared<D, C> {
    fn wait_durable(&self, lsn: Lsn) -> Result<Lsn> {
        self.wait_durable_impl(lsn)
    }

    fn poll_durable(&self, lsn: Lsn, waker_id: &mut Option<u64>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        let ready = |st: &mut State, waker_id: &mut Option<u64>| {
            if let Some(id) = waker_id.take() {
                st.wakers.remove(&(lsn, id));
            }
        };
        if self.durable.load(SeqCst) >= lsn.0 {
            if waker_id.is_some() {
                ready(&mut lock(&self.state), waker_id);
            }
            return Poll::Ready(Ok(lsn));
        }
        let mut st = lock(&self.state);
        if st.durable >= lsn {
            ready(&mut st, waker_id);
            return Poll::Ready(Ok(lsn));
        }
        if let Some(cause) = &st.failed {
            let cause = Arc::clone(cause);
            ready(&mut st, waker_id);
            return Poll::Ready(Err(Error::Poisoned { cause }));
        }
        if self.degraded() {
            // Degraded: no background thread, so the poll flushes inline.
            ready(&mut st, waker_id);
            drop(st);
            return Poll::Ready(self.wait_durable_impl(lsn));
        }
        let id = *waker_id.get_or_insert_with(|| {
            st.next_waker_id += 1;
            st.next_waker_id
        });
        match st.wakers.get_mut(&(lsn, id)) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                st.wakers.insert((lsn, id), cx.waker().clone());
            }
        }
        drop(st);
        self.kick();
        Poll::Pending
    }

    fn forget(&self, lsn: Lsn, waker_id: u64) {
        lock(&self.state).wakers.remove(&(lsn, waker_id));
    }
}
