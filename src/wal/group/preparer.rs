//! The segment preparer: the next segment is created, zero-filled, synced and its directory
//! entry synced by a background thread ahead of need, so that a rotation never waits for a
//! file creation.
//!
//! - **One hand-off slot.** `Prep` goes Idle → Requested → Working → Ready → (installed) Idle;
//!   only the flusher requests and installs, only the preparer (or an inline rotation) works.
//! - **A failed preparation is not a failure of the log.** The slot returns to Idle and
//!   rotation prepares inline, which poisons the log if it fails too.

use super::*;

impl<D: Disk, C: Clock> Shared<D, C> {
    /// Installs a prepared segment if the preparer has one ready.
    pub(super) fn install_ready_segment(&self, f: &mut Flusher<D>) {
        if f.writer.has_prepared() {
            return;
        }
        let mut prep = lock(&self.prep);
        if let Prep::Ready(id, _) = &prep.slot
            && *id == f.writer.next_segment()
        {
            let Prep::Ready(id, file) = std::mem::replace(&mut prep.slot, Prep::Idle) else { unreachable!() };
            f.writer.install_prepared(id, file);
        }
    }

    /// Rotation is imminent and nothing is prepared: takes the preparer's segment (waiting for
    /// one in progress) or cancels its request, so that the rotation prepares inline.
    pub(super) fn claim_segment(&self, f: &mut Flusher<D>) {
        let mut prep = lock(&self.prep);
        loop {
            match std::mem::replace(&mut prep.slot, Prep::Idle) {
                Prep::Ready(id, file) if id == f.writer.next_segment() => {
                    f.writer.install_prepared(id, file);
                    return;
                }
                Prep::Working(id) => {
                    prep.slot = Prep::Working(id);
                    prep = wait(&self.prep_changed, prep);
                }
                Prep::Ready(..) | Prep::Requested(_) | Prep::Idle => {
                    self.stats.rotations_inline.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Asks the preparer for the writer's next segment if none is prepared or requested.
    pub(super) fn request_segment(&self, f: &mut Flusher<D>) {
        if self.config.prepare_ahead != PrepareAhead::Background
            || f.writer.has_prepared()
            || f.writer.poisoned().is_some()
        {
            return;
        }
        let mut prep = lock(&self.prep);
        if matches!(prep.slot, Prep::Idle) {
            prep.slot = Prep::Requested(f.writer.next_segment());
            self.prep_changed.notify_all();
        }
    }

    /// Prepares the requested segment (`block`: wait for a request). Returns whether it did.
    pub(super) fn prepare_one(&self, block: bool) -> Result<bool> {
        let id = {
            let mut prep = lock(&self.prep);
            loop {
                if prep.shutdown {
                    return Ok(false);
                }
                if let Prep::Requested(id) = prep.slot {
                    prep.slot = Prep::Working(id);
                    break id;
                }
                if !block {
                    return Ok(false);
                }
                prep = wait(&self.prep_changed, prep);
            }
        };
        let result = prepare_segment(&self.disk, &self.dir, id, self.config.log.segment_bytes);
        let mut prep = lock(&self.prep);
        self.prep_changed.notify_all();
        match result {
            Ok(file) => {
                if file.recycled {
                    self.stats.segments_recycled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                prep.slot = Prep::Ready(id, file);
                self.stats.segments_prepared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                // Not poisoned: rotation will prepare inline (and fail-stop if that fails).
                tracing::warn!(segment = id.0, error = %e, "preparing the next log segment failed; rotation will try inline");
                prep.slot = Prep::Idle;
                self.stats.prepare_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.stats.note_error(&e);
                Err(e)
            }
        }
    }

    /// The preparer thread: prepares requested segments until shutdown.
    pub(super) fn run_preparer(&self) {
        loop {
            #[cfg(not(loom))]
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prepare_one(true)));
            #[cfg(loom)]
            let outcome: std::thread::Result<Result<bool>> = Ok(self.prepare_one(true));
            match outcome {
                Ok(Ok(true) | Err(_)) => {}
                Ok(Ok(false)) => return,
                Err(_) => {
                    // A panic while preparing: leave the slot to inline rotation and stop.
                    let mut prep = lock(&self.prep);
                    prep.slot = Prep::Idle;
                    self.prep_changed.notify_all();
                    return;
                }
            }
        }
    }
}
