//! The flusher step and publication: drain the queue in LSN order, encode the batch into one
//! buffer, write it once, sync once if any record needs it, publish the durable LSN.
//!
//! - **LSN order.** A step takes only the contiguous prefix of the drained entries
//!   (`Take`): a committer between taking its LSN and pushing leaves a gap, and the step
//!   waits for it rather than write past it.
//! - **Durable before published.** `State::durable` moves only to an LSN the writer reports
//!   synced, never backwards; `written` only to one it reports written.
//! - **Fail-stop.** A failed write or sync poisons the log (`poison`): the first cause is kept,
//!   every waiter and later append gets it, and no step runs again.

use super::*;

impl<D: Disk, C: Clock> Shared<D, C> {
    /// Runs a step; if it could not progress because an earlier LSN is reserved but not yet
    /// pushed (a gap), waits — keeping leadership — for the next push and returns `Ok(true)` to
    /// ask for another step. `Ok(false)`: nothing to do.
    pub(super) fn step_or_wait(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<bool> {
        let events = self.queue_events.load(SeqCst) >> 1;
        let report = self.run_step(f, force_sync)?;
        if report.progressed() {
            return Ok(true);
        }
        let gap = !f.pending.is_empty() || self.reserved.load(SeqCst) & !CLOSED > 0;
        if !gap {
            return Ok(false);
        }
        // A committer is between taking its LSN and pushing (nanoseconds, unless it was
        // preempted): wait for its push rather than spin or hand the work around.
        let mut st = lock(&self.state);
        while self.queue_events.fetch_or(1, SeqCst) >> 1 == events && st.failed.is_none() {
            st = wait(&self.pushed, st);
        }
        self.queue_events.fetch_and(!1, SeqCst);
        Ok(true)
    }

    /// One step under `catch_unwind`: a panic poisons the log.
    pub(super) fn run_step(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<StepReport> {
        #[cfg(not(loom))]
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(f, force_sync)))
            .unwrap_or_else(|payload| Err(Error::FlusherPanicked { message: panic_message(&*payload) }));
        #[cfg(loom)]
        let outcome = self.step(f, force_sync);
        match outcome {
            Ok(report) => Ok(report),
            Err(e) => {
                let cause = self.poison(e);
                self.discard(f);
                Err(Error::Poisoned { cause })
            }
        }
    }

    /// Records the first failure and wakes everyone; returns the first cause.
    pub(super) fn poison(&self, e: Error) -> Arc<Error> {
        self.stats.note_error(&e);
        let (cause, wakers) = {
            let mut st = lock(&self.state);
            if st.failed.is_none() {
                tracing::error!(cause = %e, "the log is poisoned: every commit fails until it is reopened");
            }
            let cause = Arc::clone(st.failed.get_or_insert_with(|| Arc::new(e)));
            // Set under the lock after the cause, so whoever sees the flag finds the cause.
            self.poisoned.store(true, SeqCst);
            let wakers = std::mem::take(&mut st.wakers);
            Self::unpark_all(&mut st);
            self.changed.notify_all();
            self.work.notify_all();
            self.pushed.notify_all();
            (cause, wakers)
        };
        for (_, w) in wakers {
            w.wake();
        }
        cause
    }

    /// After a failure: drops everything queued, releasing its reservations.
    pub(super) fn discard(&self, f: &mut Flusher<D>) {
        self.queue.drain_into(&mut f.drained, &mut f.pending);
        let (mut records, mut bytes) = (0, 0);
        for e in f.pending.drain(..) {
            records += u64::from(e.records);
            bytes += e.bytes;
        }
        if records > 0 {
            self.reserved.fetch_sub(pack(records, bytes), SeqCst);
            let st = lock(&self.state);
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
        }
    }

    /// Moves everything pushed into `f.pending`, in LSN order.
    pub(super) fn drain(&self, f: &mut Flusher<D>) {
        let before = f.pending.len();
        self.queue.drain_into(&mut f.drained, &mut f.pending);
        if f.pending.len() == before {
            return;
        }
        // Pushes can come in another order than their LSNs (taken before the push): the new
        // entries are checked, with the last one already pending.
        let from = before.saturating_sub(1);
        let sorted = f.pending.range(from..).zip(f.pending.range(from + 1..)).all(|(a, b)| a.first < b.first);
        if !sorted {
            f.pending.make_contiguous().sort_unstable_by_key(|e| e.first);
        }
    }

    /// The contiguous prefix of `f.pending` within the batch limits (at least one entry when
    /// the front is next in line).
    fn take(&self, f: &Flusher<D>) -> Take {
        let b = &self.config.batch;
        let mut expected = f.writer.next_lsn().0;
        let mut t = Take { entries: 0, records: 0, bytes: 0 };
        for e in &f.pending {
            if e.first != expected {
                break;
            }
            let over = t.bytes + e.bytes > b.batch_bytes_max
                || t.records + u64::from(e.records) > u64::from(b.batch_records_max);
            if t.entries > 0 && over {
                break;
            }
            t.entries += 1;
            t.records += u64::from(e.records);
            t.bytes += e.bytes;
            expected += u64::from(e.records);
        }
        // Bounded: one entry may exceed the batch limits alone (it is never split), no more.
        debug_assert!(
            t.entries <= 1 || (t.bytes <= b.batch_bytes_max && t.records <= u64::from(b.batch_records_max)),
            "a batch of {} entries, {} records, {} bytes is over its bounds",
            t.entries,
            t.records,
            t.bytes
        );
        debug_assert_eq!(expected - f.writer.next_lsn().0, t.records, "a contiguous prefix");
        t
    }

    #[cfg(feature = "sim")]
    pub(super) fn planted(&self, at: PlantedPanic) -> bool {
        let mut p = self.planted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *p == Some(at) {
            *p = None;
            return true;
        }
        false
    }

    /// The flusher step: drain, encode, write once, sync once if needed, publish, wake.
    pub(super) fn step(&self, f: &mut Flusher<D>, force_sync: bool) -> Result<StepReport> {
        if self.poisoned.load(SeqCst) {
            self.discard(f);
            let cause = lock(&self.state).failed.clone().expect("poisoned has a cause");
            return Err(Error::Poisoned { cause });
        }
        self.install_ready_segment(f);
        self.drain(f);
        let mut take = self.take(f);
        let linger = self.config.batch.linger;
        if !linger.is_zero()
            && take.entries > 0
            && take.records < u64::from(self.config.batch.batch_records_max)
        {
            self.clock.sleep(linger);
            self.drain(f);
            take = self.take(f);
        }
        let now = self.clock.now();
        let due = f.deadline.is_some_and(|d| now >= d);
        let wanted = self.sync_wanted.load(SeqCst) > f.writer.synced_lsn().0;
        let unsynced = f.writer.written_lsn() > f.writer.synced_lsn();
        let mut need_sync = force_sync || due || wanted;
        if take.entries == 0 && !(need_sync && unsynced) {
            if !unsynced && f.deadline.is_some() {
                // Synced meanwhile (by a rotation): nothing is due any more.
                f.deadline = None;
                if let Some(since) = f.buffered_since.take() {
                    self.stats.buffered_window.record(nanos(now.saturating_sub(since)));
                }
                lock(&self.state).sync_deadline = None;
            }
            let durable = f.durable();
            return Ok(StepReport { records: 0, synced: false, durable });
        }
        if take.bytes > f.writer.space_left() && !f.writer.has_prepared() {
            self.claim_segment(f);
        }
        if take.entries >= 2 && crate::mutation::active(crate::mutation::Mutation::LsnOutOfQueueOrder) {
            let (a, b) = f.pending.make_contiguous().split_at_mut(1);
            if let (Body::One(_, x), Body::One(_, y)) = (&mut a[0].body, &mut b[0].body) {
                std::mem::swap(x, y);
            }
        }
        let segment_before = f.writer.active_segment();
        let mut deadline = f.deadline;
        let mut sync_appends = 0u64;
        for entry in f.pending.drain(..take.entries) {
            let mut expect = entry.first;
            let mut append = |kind: RecordKind, payload: &[u8]| -> Result<()> {
                let lsn = f.writer.append(kind, payload)?;
                assert_eq!(lsn.0, expect, "records reach the log in LSN order");
                expect += 1;
                Ok(())
            };
            match &entry.body {
                Body::One(kind, payload) => append(*kind, payload)?,
                Body::Many(batch) => {
                    for (kind, payload) in batch.iter() {
                        append(kind, payload)?;
                    }
                }
            }
            if let Body::One(_, payload) = entry.body {
                self.buffers.give(payload);
            }
            match entry.durability {
                Durability::Sync => {
                    need_sync = true;
                    sync_appends += 1;
                }
                Durability::Buffered { every } => {
                    let d = entry.enqueued_at + every;
                    deadline = Some(deadline.map_or(d, |old: Duration| old.min(d)));
                    f.buffered_since =
                        Some(f.buffered_since.map_or(entry.enqueued_at, |t| t.min(entry.enqueued_at)));
                }
                Durability::None => {}
            }
        }
        if take.entries > 0 {
            let (records, bytes) = unpack(self.reserved.load(SeqCst));
            debug_assert!(
                records >= take.records && bytes >= take.bytes,
                "taken {} records, {} bytes, but only {records}, {bytes} reserved",
                take.records,
                take.bytes
            );
            self.reserved.fetch_sub(pack(take.records, take.bytes), SeqCst);
        }
        // A `Buffered` record written only now may already be past its window.
        if deadline.is_some_and(|d| now >= d) {
            need_sync = true;
        }
        let segment_after = f.writer.active_segment();
        if segment_after != segment_before && segment_before.is_some() {
            let started = segment_after.map_or(0, |s| s.0) - segment_before.map_or(0, |s| s.0);
            self.stats.rotations.fetch_add(started, std::sync::atomic::Ordering::Relaxed);
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        // A step that syncs hands its batch and the sync to the disk in one call
        // (`DiskFile::write_pages_synced_at`); its time counts as the sync's.
        let synced_before = f.writer.synced_lsn();
        let before = self.clock.now();
        if need_sync {
            f.writer.sync()?;
        } else {
            f.writer.write()?;
        }
        let after = self.clock.now();
        // Everything taken is handed to the OS; a sync covers everything written.
        debug_assert_eq!(f.writer.written_lsn().0 + 1, f.writer.next_lsn().0, "the step wrote all it took");
        debug_assert!(
            !need_sync || f.writer.synced_lsn() == f.writer.written_lsn(),
            "a sync left records unsynced"
        );
        let synced = f.writer.synced_lsn() > synced_before;
        let io_ns = nanos(after.saturating_sub(before));
        if take.records > 0 {
            if !synced {
                self.stats.write_latency.record(io_ns);
            }
            self.stats.batch_records.record(take.records);
            self.stats.flushes.fetch_add(1, relaxed);
            self.stats.bytes_written.fetch_add(take.bytes, relaxed);
        }
        #[cfg(feature = "sim")]
        if self.planted(PlantedPanic::InStep) {
            panic!("planted panic inside the flusher step");
        }
        if need_sync {
            deadline = None;
        }
        if synced {
            self.stats.sync_latency.record(io_ns);
            if let Some(since) = f.buffered_since.take() {
                self.stats.buffered_window.record(nanos(after.saturating_sub(since)));
            }
            if io_ns > SLOW_SYNC_NS {
                tracing::warn!(sync_ms = io_ns / 1_000_000, records = take.records, "a slow sync of the log");
            }
            self.handon.synced(io_ns);
            // The publish below is this sync's (the next step starts after it: this step holds
            // the flusher). Not under loom: the load would add interleavings to every model.
            if !cfg!(loom) {
                self.handon.published(nanos(after), self.reserved.load(SeqCst) & !CLOSED > 0);
            }
            self.stats.syncs.fetch_add(1, relaxed);
        }
        let new_deadline = deadline.is_some() && f.deadline.is_none();
        f.deadline = deadline;
        self.publish(f, new_deadline, synced.then_some(sync_appends));
        if segment_after != segment_before {
            self.request_segment(f);
        }
        Ok(StepReport { records: take.records, synced, durable: f.durable() })
    }

    /// Publishes the writer's written and durable LSNs and wakes whoever they satisfy.
    /// `group`: the `Sync` appends this step synced, if it synced.
    pub(super) fn publish(&self, f: &Flusher<D>, new_deadline: bool, group: Option<u64>) {
        let (durable, written) = (f.durable(), f.written());
        debug_assert!(durable <= written, "durable {durable} past written {written}");
        debug_assert!(written.0 >= self.written.load(SeqCst), "the written LSN went back to {written}");
        self.written.store(written.0, SeqCst);
        self.durable.store(durable.0, SeqCst);
        let mut ready = Vec::new();
        {
            let mut st = lock(&self.state);
            debug_assert!(
                durable >= st.durable,
                "the durable LSN went back from {} to {durable}",
                st.durable
            );
            debug_assert!(st.failed.is_none(), "a publish after the log failed");
            st.durable = durable;
            if let Some(group) = group.filter(|&g| g > 0) {
                let sample = u32::try_from(group.min(1 << 20)).expect("bounded") * 16;
                st.group_x16 = st.group_x16 - st.group_x16 / 8 + sample / 8;
            }
            st.sync_deadline = f.deadline;
            while let Some(entry) = st.wakers.first_entry() {
                if entry.key().0 > durable {
                    break;
                }
                ready.push(entry.remove());
            }
            // Unparked by the leader after this step (see `State::woken`).
            while let Some(entry) = st.parked.first_entry() {
                if entry.key().0 > durable {
                    break;
                }
                let id = entry.key().1;
                let t = entry.remove();
                st.woken.insert(id, t);
            }
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
            if new_deadline && st.worker_waiting {
                self.work.notify_one();
            }
        }
        for w in ready {
            w.wake();
        }
    }

    /// For `close`: takes leadership, steps until every reserved record is written, and syncs.
    pub(super) fn drain_for_close(&self) -> Result<Lsn> {
        let mut st = lock(&self.state);
        while st.leader {
            st.sleepers += 1;
            st = wait(&self.changed, st);
            st.sleepers -= 1;
        }
        st.leader = true;
        drop(st);
        let result = {
            let mut f = lock(&self.flusher);
            loop {
                match self.step_or_wait(&mut f, true) {
                    Err(e) => break Err(e),
                    // Every step is forced, so the last one synced what it wrote.
                    Ok(_) if self.reserved.load(SeqCst) & !CLOSED == 0 && f.pending.is_empty() => {
                        break Ok(f.durable());
                    }
                    Ok(_) => self.wake_published(),
                }
            }
        };
        self.release_leadership();
        result
    }
}

/// The contiguous prefix of `pending` one step takes.
struct Take {
    entries: usize,
    records: u64,
    bytes: u64,
}
