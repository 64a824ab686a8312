//! Who runs the flusher step: the hand-over policies of [`Driver::LeaderFollower`] and the
//! background thread.
//!
//! - **One leader.** `State::leader` is set by whoever runs steps (a committer or the thread)
//!   and cleared only by it; a step never runs without it, so steps never overlap.
//! - **The policies.** A committer leads its own step unless the steps are the thread's for
//!   now ([`Shared::handover`]): a crowd of committers is parked (8 per CPU), committers come
//!   in groups (more than 1.5 `Sync` appends per synced step, a moving average), or handing
//!   leadership on was measured slow against the syncs (`handon.rs`). The thread yields its
//!   CPU to each committer of a small group it wakes, while that is measured fast
//!   (`yielding.rs`).
//! - **No lost wake-up.** A leader that releases leadership with waiters left wakes the first
//!   of them, or kicks the thread, before the others (see `wake.rs`).

use super::*;

impl<D: Disk, C: Clock> Shared<D, C> {
    /// Whether a committer may run steps itself.
    #[inline]
    pub(super) fn may_lead(&self) -> bool {
        self.degraded() || self.config.driver != Driver::Thread
    }

    /// Whether leader/follower's steps are the background thread's for now: at least
    /// `crowd` committers are parked (8 per CPU). A leader then wakes no next leader, whose
    /// wake-up would wait for a CPU behind the committers the step satisfied; the background
    /// thread, already running, steps back to back, as under [`Driver::Thread`] (on 2 cores at
    /// 64 committers, 1.3–1.6× the commits/s of handing leadership on, measured side by side).
    /// With fewer parked, committers lead: one fewer wake-up per commit — unless handing
    /// leadership on was found slow ([`handon`]; see [`Shared::crowd_parked`]) or committers
    /// come in groups ([`Shared::grouped`]): then any parked committer makes a crowd. Returns
    /// the rule that hands the step over ([`Shared::handover`]).
    pub(super) fn crowded(&self, st: &State) -> Option<Handover> {
        self.handover(st).filter(|rule| *rule == Handover::Crowd || !st.parked.is_empty())
    }

    /// The rule, if any, under which leader/follower's steps are the background thread's now:
    /// a crowd before a group. A committer that finds no step running leads under neither;
    /// a leader that releases hands over under a group only if a committer is parked
    /// ([`Shared::crowded`]).
    pub(super) fn handover(&self, st: &State) -> Option<Handover> {
        if self.crowd_parked(st) {
            Some(Handover::Crowd)
        } else if self.grouped(st) {
            Some(Handover::Group)
        } else {
            None
        }
    }

    /// Counts a step handed to the background thread, by its rule.
    pub(super) fn count_handover(&self, rule: Handover) {
        let counter = match rule {
            Handover::Crowd => &self.stats.crowd_handovers,
            Handover::Group => &self.stats.group_handovers,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The crowd rule of [`Shared::handover`]: a crowd of parked committers, or any parked
    /// committer while handing leadership on is found slow.
    pub(super) fn crowd_parked(&self, st: &State) -> bool {
        self.config.driver == Driver::LeaderFollower
            && !self.degraded()
            && (st.parked.len() >= self.crowd || (self.handon.handed() && !st.parked.is_empty()))
    }

    /// Whether committers come in groups: more than 1.5 `Sync` appends per synced step, a
    /// moving average ([`GROUP_X16`]). Then none of them leads a step; the background thread
    /// does, having woken the group (all at once when small: [`WAKE_FLAT_MAX`]), and its next
    /// step takes every commit that arrived meanwhile — where a committer leading at once
    /// would write alone and leave the rest of its group to wait out its sync. On 2 cores:
    /// 1.21–1.23× the commits/s at 4 committers and 1.17–1.27× at 16 in two A/Bs
    /// (`docs/bench/2core-ab.md`). A lone committer (one append per step), or two taking
    /// turns, still leads its own steps: no hand-off to a thread on its path. The average
    /// decays by an eighth per synced step: a committer left alone after groups of 4 hands its
    /// next 17 steps to the thread, after groups of 16, 29.
    pub(super) fn grouped(&self, st: &State) -> bool {
        self.config.driver == Driver::LeaderFollower && !self.degraded() && st.group_x16 > GROUP_X16
    }

    /// Runs steps (this caller holds leadership) until `lsn` is durable, the log failed, or a
    /// step made no progress; returns whether any step progressed.
    pub(super) fn lead_until(&self, lsn: Lsn) -> bool {
        let mut f = lock(&self.flusher);
        // Not measured under loom, where the hand-over is off: the clock's read would add
        // interleavings to every model.
        if !cfg!(loom) {
            self.handon.leading(nanos(self.clock.now()));
        }
        let mut progressed = false;
        loop {
            match self.step_or_wait(&mut f, false) {
                Ok(true) => progressed = true,
                Ok(false) | Err(_) => return progressed,
            }
            if self.durable.load(SeqCst) >= lsn.0 {
                return true;
            }
            // Another step follows: the waiters this one satisfied must not wait for it.
            self.wake_published();
        }
    }

    /// Runs one step as the leader (the caller set `leader`), then gives leadership up.
    pub(super) fn step_as_leader(&self) -> Result<StepReport> {
        let report = {
            let mut f = lock(&self.flusher);
            self.run_step(&mut f, false)
        };
        self.release_leadership();
        report
    }

    /// Gives up leadership and wakes whoever may take it: the background thread while a crowd
    /// is parked ([`Shared::crowded`]), else the first parked waiter (every
    /// parked LSN is above the durable one: a publish unparks the rest), back-pressure waiters
    /// and `close`.
    pub(super) fn release_leadership(&self) {
        self.release_leadership_by(false);
    }

    /// [`Shared::release_leadership`]; `from_thread`: by the background thread, which yields
    /// its CPU to the waiters it wakes ([`Shared::unpark_woken`]).
    pub(super) fn release_leadership_by(&self, from_thread: bool) {
        let mut st = lock(&self.state);
        st.leader = false;
        // Sleepers that may lead, and `close`, wait for leadership; in `Thread` mode the others
        // wait only for the publish.
        if st.sleepers > 0 && (self.may_lead() || self.is_closing()) {
            self.changed.notify_all();
        }
        if st.worker_waiting && !self.lingering.load(SeqCst) && self.kicked.load(SeqCst) {
            self.work.notify_one();
        }
        // Crowded: the background thread takes the next step (kicked below), not a parked
        // committer.
        let crowded = self.crowded(&st);
        let next =
            if self.may_lead() && crowded.is_none() { st.parked.pop_first().map(|(_, t)| t) } else { None };
        let woken = Self::take_woken(&mut st);
        let yield_to_each = from_thread && self.few_parked(&st);
        drop(st);
        if let Some(rule) = crowded {
            self.count_handover(rule);
            self.kick();
        }
        // The next leader first: its step overlaps the wake-ups of the satisfied waiters.
        if let Some(t) = next {
            t.unpark();
        }
        self.unpark_woken(woken, yield_to_each);
    }

    /// Whether fewer committers than a crowd are left parked (those a publish did not satisfy):
    /// then the group the thread wakes is most of the committers, and it yields to them
    /// ([`Shared::unpark_woken`]). With a crowd still parked the CPUs are busy with
    /// committers whatever the thread does, and yielding only delays its next write (on 2
    /// cores at 64 committers, 0.84–0.91× the commits/s in `waldb bench`).
    pub(super) fn few_parked(&self, st: &State) -> bool {
        st.parked.len() < self.crowd
    }

    /// The background thread: steps when kicked or when a `Buffered` deadline passes.
    pub(super) fn run_worker(&self) {
        #[cfg(not(loom))]
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.worker_loop()));
        #[cfg(loom)]
        let outcome: std::thread::Result<()> = Ok(self.worker_loop());
        if let Err(payload) = outcome {
            let message = panic_message(&*payload);
            tracing::error!(%message, degrade = self.config.degrade_on_thread_death, "the log's background thread panicked");
            if self.config.degrade_on_thread_death {
                self.stats.note_error(&Error::FlusherPanicked { message });
                let mut st = lock(&self.state);
                self.thread_dead.store(true, SeqCst);
                st.leader = false;
                Self::unpark_all(&mut st);
                self.changed.notify_all();
                let wakers = std::mem::take(&mut st.wakers);
                drop(st);
                // Async waiters poll again and flush inline.
                for (_, w) in wakers {
                    w.wake();
                }
            } else {
                lock(&self.state).leader = false;
                self.poison(Error::FlusherPanicked { message });
            }
        }
    }

    pub(super) fn worker_loop(&self) {
        let mut st = lock(&self.state);
        let write_behind = self.config.batch.write_behind;
        let may_linger = self.config.driver == Driver::LeaderFollower && !write_behind.is_zero();
        let mut linger = false;
        loop {
            if st.shutdown {
                return;
            }
            let now = self.clock.now();
            let due = st.sync_deadline.is_some_and(|d| now >= d);
            if std::mem::take(&mut linger) && !due && st.failed.is_none() && !self.degraded() {
                // Having written, wait for more records nobody waits for before the next
                // write: their appends set `kicked` without a wake-up. A `Sync` commit meanwhile
                // leads its own step; any other kick, close and a failure wake this wait.
                let wait_for =
                    st.sync_deadline.map_or(write_behind, |d| write_behind.min(d.saturating_sub(now)));
                st.worker_waiting = true;
                self.lingering.store(true, SeqCst);
                if !self.urgent.swap(false, SeqCst) {
                    st = wait_timeout(&self.work, st, wait_for);
                }
                self.lingering.store(false, SeqCst);
                st.worker_waiting = false;
                continue;
            }
            // Consume the kick with a read-modify-write: it reads from the kicker's swap, so
            // the kicker's push is visible to the drain below.
            let free = !st.leader && st.failed.is_none();
            let kicked = free && self.kicked.swap(false, SeqCst);
            if free && (kicked || due) {
                st.leader = true;
                drop(st);
                #[cfg(feature = "sim")]
                if self.planted(PlantedPanic::InThread) {
                    panic!("planted panic in the background thread");
                }
                {
                    let mut f = lock(&self.flusher);
                    while let Ok(true) = self.step_or_wait(&mut f, due) {
                        self.handon.stepped();
                        self.yielding.stepped();
                        // Lingering: what was queued meanwhile waits for the next write, unless
                        // a crowd or a group of committers waits for it.
                        linger = may_linger && self.handover(&lock(&self.state)).is_none();
                        let queued = self.reserved.load(SeqCst) & !CLOSED > 0;
                        if linger && queued {
                            // More is queued than this step took (a batch's limit) or was
                            // appended meanwhile: the kick this run consumed is still owed,
                            // so the write after the lingering takes it, with no further
                            // append to wake this thread.
                            self.kicked.store(true, SeqCst);
                        }
                        if linger || !queued {
                            break;
                        }
                        self.wake_published_by(true);
                    }
                }
                self.release_leadership_by(true);
                st = lock(&self.state);
                continue;
            }
            st.worker_waiting = true;
            st = match st.sync_deadline {
                Some(d) if st.failed.is_none() => wait_timeout(&self.work, st, d.saturating_sub(now)),
                _ => wait(&self.work, st),
            };
            st.worker_waiting = false;
        }
    }
}
