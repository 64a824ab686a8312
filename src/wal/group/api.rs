//! The public face of group commit: [`Wal`]'s methods (open, append, sync, the manual steps,
//! stats, close) and [`WalBatch`].
//!
//! - Every append is admitted by `append.rs` (bounded, back-pressure) before it has an LSN;
//!   nothing here touches the file: the step (`step.rs`) owns the writer.
//! - [`Wal::close`] is idempotent: the second call returns the first one's result.

use super::*;

/// Records to append together with one ticket, their bytes in one buffer (no allocation per
/// record). See [`Wal::append_batch`].
#[derive(Clone, Debug, Default)]
pub struct WalBatch {
    data: Vec<u8>,
    /// (kind, end offset in `data`) per record.
    records: Vec<(RecordKind, usize)>,
    encoded: u64,
}

impl WalBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record.
    pub fn push(&mut self, kind: RecordKind, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.records.push((kind, self.data.len()));
        self.encoded += record_bytes(payload.len()) as u64;
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Removes every record, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.encoded = 0;
    }

    /// The records' size once encoded, headers included.
    pub fn encoded_bytes(&self) -> u64 {
        self.encoded
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (RecordKind, &[u8])> {
        let mut start = 0;
        self.records.iter().map(move |&(kind, end)| {
            let payload = &self.data[start..end];
            start = end;
            (kind, payload)
        })
    }
}

impl Wal<StdDisk, SystemClock> {
    /// Opens (creating if needed) the log in `dir` on real files, recovering it in
    /// `config.log.recovery` mode.
    ///
    /// # Errors
    ///
    /// As [`Wal::open_with`].
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Self, RecoveryReport)> {
        Self::open_with(StdDisk, SystemClock::new(), dir.as_ref(), config)
    }
}

impl<D: Disk + Clone, C: Clock + Clone> Wal<D, C> {
    /// Opens the log in `dir` on `disk`: recovers it (discarding the records; read them first
    /// with a [`LogReader`](crate::wal::LogReader) and use [`Wal::from_writer`] to keep them), and
    /// starts the background threads of the driver.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options; whatever recovery returns; [`Error::Io`] for
    /// failed file operations.
    pub fn open_with(disk: D, clock: C, dir: &Path, config: WalConfig) -> Result<(Self, RecoveryReport)> {
        config.validate()?;
        let (writer, report) = LogWriter::open(disk.clone(), dir, config.log)?;
        Ok((Self::from_writer(disk, clock, writer, config)?, report))
    }
}

impl<D: Disk, C: Clock> Wal<D, C> {
    /// Starts group commit over `writer` (from [`LogWriter::open`] or [`LogWriter::resume`],
    /// with nothing appended since), with `config.log` equal to the writer's options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad options; the error of preparing the first segment.
    pub fn from_writer(disk: D, clock: C, mut writer: LogWriter<D>, config: WalConfig) -> Result<Self> {
        config.validate()?;
        if *writer.options() != config.log {
            return Err(Error::InvalidConfig {
                reason: "config.log differs from the writer's options".into(),
            });
        }
        if config.prepare_ahead == PrepareAhead::Background
            && writer.active_segment().is_none()
            && !writer.has_prepared()
        {
            writer.prepare_next()?;
        }
        let next = writer.next_lsn().0;
        // Recovery may skip LSNs (it never reuses one that a cut-off record or a later segment
        // used): no record will ever have them, so they count as durable. Without this a sync
        // would wait for LSNs that nothing writes (found by `db_sim` seed 36).
        let synced = writer.synced_lsn().max(Lsn(next - 1));
        let shared = Arc::new(Shared {
            dir: writer.dir().to_path_buf(),
            record_payload_max: u64::from(config.log.record_payload_bytes_max()),
            disk,
            clock,
            config,
            queue: Queue::new(),
            buffers: BufferPool::new(),
            reserved: AtomicU64::new(0),
            next_lsn: AtomicU64::new(next),
            durable: AtomicU64::new(synced.0),
            written: AtomicU64::new(synced.0),
            sync_wanted: AtomicU64::new(0),
            marks: window::Marks::default(),
            poisoned: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            lingering: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
            thread_dead: AtomicBool::new(false),
            queue_events: AtomicU64::new(0),
            crowd: crowd(),
            handon: handon::HandOn::default(),
            yielding: yielding::Yielding::default(),
            flusher: Mutex::new(Flusher {
                writer,
                pending: VecDeque::new(),
                drained: Vec::new(),
                deadline: None,
                buffered_since: None,
                skipped_through: synced,
            }),
            state: Mutex::new(State {
                durable: synced,
                failed: None,
                leader: false,
                sleepers: 0,
                parked: BTreeMap::new(),
                woken: BTreeMap::new(),
                wakers: BTreeMap::new(),
                next_waker_id: 0,
                worker_waiting: false,
                shutdown: false,
                sync_deadline: None,
                group_x16: 0,
            }),
            changed: Condvar::new(),
            work: Condvar::new(),
            pushed: Condvar::new(),
            prep: Mutex::new(PrepState { slot: Prep::Idle, shutdown: false }),
            prep_changed: Condvar::new(),
            stats: Counters::new(),
            #[cfg(feature = "sim")]
            planted: std::sync::Mutex::new(None),
        });
        let wal =
            Wal { shared, threads: std::sync::Mutex::new(Vec::new()), closed: std::sync::Mutex::new(None) };
        {
            let mut f = lock(&wal.shared.flusher);
            wal.shared.request_segment(&mut f);
        }
        let background = wal.shared.config.driver != Driver::Manual;
        let mut threads = Vec::new();
        if background {
            let shared = Arc::clone(&wal.shared);
            threads.push(spawn("waldb-flusher", move || shared.run_worker()));
            if wal.shared.config.prepare_ahead == PrepareAhead::Background {
                let shared = Arc::clone(&wal.shared);
                threads.push(spawn("waldb-prepare", move || shared.run_preparer()));
            }
        }
        *wal.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = threads;
        Ok(wal)
    }

    /// Appends one record with the configured [`WalConfig::durability`].
    ///
    /// Returns once the record is queued (waiting while the queue is full); the [`Ticket`]
    /// resolves when the durability is met.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a payload above the record maximum; [`Error::Poisoned`] after a
    /// failure; [`Error::Closed`] after [`Wal::close`].
    pub fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<Ticket> {
        self.append_with(kind, payload, self.shared.config.durability)
    }

    /// Appends one record with `durability`.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    pub fn append_with(&self, kind: RecordKind, payload: &[u8], durability: Durability) -> Result<Ticket> {
        self.shared.check_record(payload.len())?;
        assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        let mut buf = self.shared.buffers.take();
        buf.extend_from_slice(payload);
        self.append_owned(kind, buf, durability)
    }

    /// An empty buffer to encode a payload into for [`Wal::append_owned`]: one the flusher has
    /// written and returned when there is one (its capacity kept), so that steady commits
    /// allocate nothing for their payloads.
    pub fn buffer(&self) -> Vec<u8> {
        self.shared.buffers.take()
    }

    /// Appends one record whose payload is `payload`, taken without a copy (get it from
    /// [`Wal::buffer`] to reuse the log's buffers).
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    pub fn append_owned(&self, kind: RecordKind, payload: Vec<u8>, durability: Durability) -> Result<Ticket> {
        let ticket = self.append_owned_unkicked(kind, payload, durability)?;
        self.kick_if_waiting(durability);
        Ok(ticket)
    }

    /// [`Wal::append_owned`] without asking the background thread for a step: the caller calls
    /// [`Wal::kick_if_waiting`] with the same durability once it has left its critical section
    /// (the database's sequencer), so that the wake-up's system call is not made inside it.
    pub(crate) fn append_owned_unkicked(
        &self,
        kind: RecordKind,
        payload: Vec<u8>,
        durability: Durability,
    ) -> Result<Ticket> {
        self.shared.check_record(payload.len())?;
        assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        let bytes = record_bytes(payload.len()) as u64;
        Shared::submit(&self.shared, 1, bytes, durability, Body::One(kind, payload), false)
    }

    /// Asks the background thread for a step if a record appended with `durability` needs one
    /// from it: always for `Buffered` and `None`, and for `Sync` under [`Driver::Thread`].
    pub(crate) fn kick_if_waiting(&self, durability: Durability) {
        if self.shared.needs_kick(durability) {
            self.shared.kick_for(durability);
        }
    }

    /// Appends every record of `batch`, with consecutive LSNs and one ticket (resolving to the
    /// last LSN). The batch is not split between flushes unless it exceeds
    /// [`BatchConfig::batch_records_max`] or [`BatchConfig::batch_bytes_max`].
    ///
    /// # Errors
    ///
    /// As [`Wal::append`]; [`Error::TooLarge`] also for a batch larger than the queue limits,
    /// and [`Error::InvalidConfig`] for an empty batch.
    pub fn append_batch(&self, batch: WalBatch, durability: Durability) -> Result<Ticket> {
        if batch.is_empty() {
            return Err(Error::InvalidConfig { reason: "an empty batch has no LSN to acknowledge".into() });
        }
        for (kind, payload) in batch.iter() {
            self.shared.check_record(payload.len())?;
            assert!(kind.to_byte() != 0, "record kind 0 is reserved");
        }
        let b = &self.shared.config.batch;
        if batch.len() as u64 > u64::from(b.queue_records_max) {
            return Err(Error::TooLarge {
                what: "batch (records)",
                len: batch.len() as u64,
                max: u64::from(b.queue_records_max),
            });
        }
        if batch.encoded > b.queue_bytes_max {
            return Err(Error::TooLarge { what: "batch", len: batch.encoded, max: b.queue_bytes_max });
        }
        let records = u32::try_from(batch.len()).expect("bounded by queue_records_max");
        let bytes = batch.encoded;
        Shared::submit(&self.shared, records, bytes, durability, Body::Many(batch), true)
    }

    /// Asks for every record up to `lsn` to be made durable, whatever its durability, and
    /// returns a ticket that resolves once it is (at once if it already is): the non-blocking
    /// form of [`Wal::sync`] for an LSN already appended.
    pub fn sync_ticket(&self, lsn: Lsn) -> Ticket {
        if self.shared.durable.load(SeqCst) >= lsn.0 {
            return Ticket::done(lsn);
        }
        self.shared.sync_wanted.fetch_max(lsn.0, SeqCst);
        self.shared.kick();
        let shared: Arc<dyn Durable> = Arc::clone(&self.shared) as Arc<dyn Durable>;
        Ticket::waiting(lsn, shared)
    }

    /// Makes every record appended before this call durable, whatever its durability, and
    /// returns the durable LSN.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log failed first.
    pub fn sync(&self) -> Result<Lsn> {
        let target = Lsn(self.shared.next_lsn.load(SeqCst).saturating_sub(1));
        self.shared.sync_wanted.fetch_max(target.0, SeqCst);
        self.shared.kick();
        self.shared.wait_durable(target)
    }

    /// Runs one flusher step (for [`Driver::Manual`]; harmless with the others): drains the
    /// queue up to the batch limits, writes, syncs if any record needs it or a `Buffered`
    /// deadline passed, publishes and wakes. Returns without doing anything if another step is
    /// in flight.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log is (or becomes) poisoned.
    pub fn flush_step(&self) -> Result<StepReport> {
        let shared = &self.shared;
        {
            let mut st = lock(&shared.state);
            if st.leader {
                return Ok(StepReport { durable: st.durable, ..StepReport::default() });
            }
            st.leader = true;
        }
        shared.step_as_leader()
    }

    /// Prepares the requested next segment now (for [`Driver::Manual`], whose log has no
    /// preparer thread). Returns whether it prepared one.
    ///
    /// # Errors
    ///
    /// The preparation's error (which does not poison: rotation will retry inline).
    pub fn prepare_step(&self) -> Result<bool> {
        self.shared.prepare_one(false)
    }

    /// The last LSN known durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable.load(SeqCst))
    }

    /// The last LSN handed to the OS.
    pub fn written_lsn(&self) -> Lsn {
        Lsn(self.shared.written.load(SeqCst))
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.shared.next_lsn.load(SeqCst))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The first failure, if the log is poisoned.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        lock(&self.shared.state).failed.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WalStats {
        let s = &self.shared;
        let c = &s.stats;
        let (queue_records, queue_bytes) = unpack(s.reserved.load(SeqCst));
        let failed = lock(&s.state).failed.clone();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        WalStats {
            queue_records,
            queue_bytes,
            appends: c.appends.load(relaxed),
            records: c.records.load(relaxed),
            flushes: c.flushes.load(relaxed),
            syncs: c.syncs.load(relaxed),
            batch_records: c.batch_records.summary(),
            batch_histogram: c.batch_records.powers_of_two(),
            write_latency_ns: c.write_latency.summary(),
            sync_latency_ns: c.sync_latency.summary(),
            buffered_window_ns: c.buffered_window.summary(),
            bytes_written: c.bytes_written.load(relaxed),
            rotations: c.rotations.load(relaxed),
            rotations_inline: c.rotations_inline.load(relaxed),
            segments_prepared: c.segments_prepared.load(relaxed),
            segments_recycled: c.segments_recycled.load(relaxed),
            prepare_failures: c.prepare_failures.load(relaxed),
            backpressure_waits: c.backpressure_waits.load(relaxed),
            window_waits: c.window_waits.load(relaxed),
            crowd_handovers: c.crowd_handovers.load(relaxed),
            group_handovers: c.group_handovers.load(relaxed),
            slow_handons: c.slow_handons.load(relaxed),
            slow_yields: c.slow_yields.load(relaxed),
            durable_lsn: Lsn(s.durable.load(SeqCst)),
            written_lsn: Lsn(s.written.load(SeqCst)),
            healthy: failed.is_none(),
            degraded: s.degraded(),
            last_error: c.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }

    /// Plants a panic in the flusher, for tests of the failure paths (feature `sim`; hidden:
    /// no build that serves data calls it).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn plant_panic(&self, at: PlantedPanic) {
        *self.shared.planted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Drains every queued record, syncs, stops the background threads and returns the durable
    /// LSN — or the first failure. Later appends get [`Error::Closed`]; a second `close` returns
    /// the first one's result.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] with the first failure if the log failed.
    pub fn close(&self) -> Result<Lsn> {
        let mut closed = self.closed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(result) = &*closed {
            return clone_result(result);
        }
        let shared = &self.shared;
        shared.reserved.fetch_or(CLOSED, SeqCst);
        let result = shared.drain_for_close();
        {
            let mut st = lock(&shared.state);
            st.shutdown = true;
            shared.work.notify_all();
            shared.changed.notify_all();
        }
        {
            let mut prep = lock(&shared.prep);
            prep.shutdown = true;
            shared.prep_changed.notify_all();
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for t in threads {
            // A thread that panicked has already poisoned the log or handed over.
            let _ = t.join();
        }
        *closed = Some(clone_result(&result));
        result
    }
}

impl<D: Disk, C: Clock> Drop for Wal<D, C> {
    /// Closes the log if [`Wal::close`] was not called, ignoring its error.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl<D: Disk, C: Clock> std::fmt::Debug for Wal<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("durable_lsn", &self.durable_lsn())
            .field("next_lsn", &self.next_lsn())
            .finish_non_exhaustive()
    }
}
