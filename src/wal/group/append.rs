//! Admission: an append reserves room in the bounded queue (waiting while it is full: back
//! pressure), takes its LSNs and pushes its entry.
//!
//! - **Bounded.** `reserved` never exceeds [`BatchConfig::queue_records_max`] records and
//!   [`BatchConfig::queue_bytes_max`] bytes, except for one record alone in an empty queue.
//! - **Closed is final.** The closed flag lives in the same atomic as the reservations: either
//!   a reservation sees it and fails with [`Error::Closed`], or `close` sees (and drains) it.
//! - **A late log admits no `Buffered` record.** While an unsynced `Buffered` record is older
//!   than a `Buffered` append's `every`, the append waits for the sync that covers it
//!   (`window.rs`).
//! - **LSNs are dense.** An append takes `records` consecutive LSNs from `next_lsn` after its
//!   reservation; a withdrawn reservation never took any.

use super::*;

impl<D: Disk, C: Clock> Shared<D, C> {
    #[inline]
    pub(super) fn check_record(&self, len: usize) -> Result<()> {
        if len as u64 > self.record_payload_max {
            return Err(Error::TooLarge {
                what: "record payload",
                len: len as u64,
                max: self.record_payload_max,
            });
        }
        Ok(())
    }

    /// `Err` if the log takes no more appends.
    #[inline]
    pub(super) fn check_usable(&self) -> Result<()> {
        if self.poisoned.load(SeqCst) {
            let cause = lock(&self.state).failed.clone().expect("poisoned has a cause");
            return Err(Error::Poisoned { cause });
        }
        if self.is_closing() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    #[inline]
    pub(super) fn is_closing(&self) -> bool {
        self.reserved.load(SeqCst) & CLOSED != 0
    }

    #[inline]
    pub(super) fn degraded(&self) -> bool {
        self.thread_dead.load(SeqCst)
    }

    #[inline]
    pub(super) fn submit(
        this: &Arc<Self>,
        records: u32,
        bytes: u64,
        durability: Durability,
        body: Body,
        kick: bool,
    ) -> Result<Ticket> {
        this.check_usable()?;
        if let Durability::Buffered { every } = durability {
            this.keep_window(every)?;
        }
        this.reserve(u64::from(records), bytes)?;
        // Checked again after reserving: `close` and a failure set their flag, then look at the
        // reservations, so one of the two sides sees the other.
        if let Err(e) = this.check_usable() {
            this.reserved.fetch_sub(pack(u64::from(records), bytes), SeqCst);
            this.note_queue_event();
            return Err(e);
        }
        let first = this.next_lsn.fetch_add(u64::from(records), SeqCst);
        let enqueued_at =
            if matches!(durability, Durability::Buffered { .. }) { this.clock.now() } else { Duration::ZERO };
        this.queue.push(Entry { first, records, bytes, durability, enqueued_at, body });
        this.note_queue_event();
        if let Durability::Buffered { every } = durability {
            this.marks.note(first, enqueued_at, every);
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        this.stats.appends.fetch_add(1, relaxed);
        this.stats.records.fetch_add(u64::from(records), relaxed);
        let last = Lsn(first + u64::from(records) - 1);
        match durability {
            Durability::Sync => {
                if kick && this.needs_kick(durability) {
                    this.kick();
                }
                let shared: Arc<dyn Durable> = Arc::clone(this) as Arc<dyn Durable>;
                Ok(Ticket::waiting(last, shared))
            }
            Durability::Buffered { .. } | Durability::None => {
                if this.degraded() {
                    // No background thread: write and sync inline.
                    this.sync_wanted.fetch_max(last.0, SeqCst);
                    this.wait_durable(last)?;
                    return Ok(Ticket::done(last));
                }
                if kick {
                    this.kick_for(durability);
                }
                // Nothing is acknowledged after a failure.
                if this.poisoned.load(SeqCst) {
                    this.check_usable()?;
                }
                Ok(Ticket::done(last))
            }
        }
    }

    /// Reserves room for `records` records of `bytes` encoded bytes, waiting while the queue is
    /// full.
    #[inline]
    pub(super) fn reserve(&self, records: u64, bytes: u64) -> Result<()> {
        let b = &self.config.batch;
        let (max_records, max_bytes) = (u64::from(b.queue_records_max), b.queue_bytes_max);
        let mut counted = false;
        loop {
            let current = self.reserved.load(SeqCst);
            if current & CLOSED != 0 {
                return Err(Error::Closed);
            }
            let (r, by) = unpack(current);
            if r + records <= max_records && by + bytes <= max_bytes {
                let next = current + pack(records, bytes);
                if self.reserved.compare_exchange(current, next, SeqCst, SeqCst).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if !counted {
                counted = true;
                self.stats.backpressure_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.wait_for_space(current)?;
        }
    }

    /// Waits until the reservation counter moves from `seen`, running a step if this committer
    /// may lead and nobody is.
    pub(super) fn wait_for_space(&self, seen: u64) -> Result<()> {
        let mut st = lock(&self.state);
        loop {
            if let Some(cause) = &st.failed {
                return Err(Error::Poisoned { cause: Arc::clone(cause) });
            }
            if self.is_closing() {
                return Err(Error::Closed);
            }
            if self.reserved.load(SeqCst) != seen {
                return Ok(());
            }
            if !st.leader && self.may_lead() {
                st.leader = true;
                drop(st);
                if self.step_as_leader()?.progressed() {
                    return Ok(());
                }
                st = lock(&self.state);
            } else {
                drop(st);
                self.kick();
                st = lock(&self.state);
            }
            if self.reserved.load(SeqCst) != seen {
                return Ok(());
            }
            st.sleepers += 1;
            st = wait(&self.changed, st);
            st.sleepers -= 1;
        }
    }

    /// Counts a push (or a withdrawn reservation) and wakes a leader waiting for one.
    #[inline]
    pub(super) fn note_queue_event(&self) {
        if self.queue_events.fetch_add(2, SeqCst) & 1 == 1 {
            let _st = lock(&self.state);
            self.pushed.notify_all();
        }
    }
}
