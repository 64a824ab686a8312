//! The disk's own ceiling: raw fdatasync latency, and two ideal group commits that write the
//! same bytes per commit as the engine measured beside them with nothing else on the path, and
//! wake each committer once (parked on its own, not a herd on one condition variable).
//! Shared by `benches/group_commit.rs` and the peers run (`benches/peers`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Instant;

use super::{Run, drive, median};

/// The ideals' file: pre-zeroed, written in a ring.
const IDEAL_FILE: u64 = 256 << 20;

/// Bytes per write when [`zero_file`] fills a file.
const ZERO_WRITE: usize = 64 << 10;

/// A new file of `len` zeros, synced, its pages left in the OS cache: the ideals write part of
/// a page per commit, which into a page the cache lacks would cost a read of it first. How a
/// file was zero-filled changes what a later sync into it costs. On the 2-core machine (Linux
/// 6.18, ext4) a small write + fdatasync took about 5 µs more at the median (4 %) into a file
/// filled in 1 MiB writes through the cache (as this function did before 2026-12-05) than
/// into one filled in 64 KiB writes or past the cache as waldb's segments are; see
/// docs/bench/2core-ab.md.
pub fn zero_file(path: &Path, len: u64) -> File {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    let chunk = vec![0u8; ZERO_WRITE];
    let mut at = 0;
    while at < len {
        f.write_all_at(&chunk, at).unwrap();
        at += chunk.len() as u64;
    }
    f.sync_all().unwrap();
    f
}

/// Median µs of a 4 KiB write + fdatasync, into a growing file and into a zeroed one.
pub fn raw_fdatasync(root: &Path, n: usize) -> (f64, f64) {
    let block = vec![7u8; 4096];
    let grow_path = root.join("grow.dat");
    let _ = std::fs::remove_file(&grow_path);
    let grow = OpenOptions::new().write(true).create(true).truncate(true).open(&grow_path).unwrap();
    let zeroed = zero_file(&root.join("zeroed.dat"), (n as u64 + 1) * 4096);
    let mut times = (Vec::new(), Vec::new());
    for i in 0..n {
        for (file, out) in [(&grow, &mut times.0), (&zeroed, &mut times.1)] {
            let t = Instant::now();
            file.write_all_at(&block, i as u64 * 4096).unwrap();
            file.sync_data().unwrap();
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let _ = std::fs::remove_file(grow_path);
    let _ = std::fs::remove_file(root.join("zeroed.dat"));
    (median(times.0), median(times.1))
}

/// Committers waiting on an ideal, each parked on its own and woken only by the sync that
/// covers its ticket (or, in leader/follower, to lead the next one): no herd.
#[derive(Default)]
struct Parked(BTreeMap<u64, Thread>);

impl Parked {
    /// Parks the caller (holding `guard`) until woken; the entry is gone afterwards, whether
    /// it was woken or the park returned spuriously.
    fn park<'a, T>(
        mutex: &'a Mutex<T>,
        mut guard: MutexGuard<'a, T>,
        parked: impl Fn(&mut T) -> &mut Parked,
        ticket: u64,
    ) -> MutexGuard<'a, T> {
        parked(&mut guard).0.insert(ticket, std::thread::current());
        drop(guard);
        std::thread::park();
        let mut guard = mutex.lock().unwrap();
        parked(&mut guard).0.remove(&ticket);
        guard
    }

    /// Takes the waiters whose ticket is at or below `durable`.
    fn satisfied(&mut self, durable: u64) -> Vec<Thread> {
        let rest = self.0.split_off(&(durable + 1));
        std::mem::replace(&mut self.0, rest).into_values().collect()
    }
}

struct LfState {
    next: u64,
    durable: u64,
    flushing: bool,
    offset: u64,
    parked: Parked,
}

/// The ideal leader/follower: the committer that finds no flush in flight writes every record
/// queued so far and syncs; the others park, and the sync wakes those it covers plus the first
/// of the rest, which leads the next.
pub struct IdealLf {
    file: File,
    /// Bytes written per commit.
    bytes: usize,
    state: Mutex<LfState>,
}

impl IdealLf {
    pub fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let mine = st.next;
        while st.durable < mine {
            if st.flushing {
                st = Parked::park(&self.state, st, |s| &mut s.parked, mine);
                continue;
            }
            st.flushing = true;
            let target = st.next;
            let n = (target - st.durable) as usize;
            let offset = st.offset;
            st.offset = (st.offset + (n * self.bytes) as u64) % (IDEAL_FILE - (16 << 20));
            drop(st);
            self.file.write_all_at(&vec![1u8; n * self.bytes], offset).unwrap();
            self.file.sync_data().unwrap();
            st = self.state.lock().unwrap();
            st.durable = target;
            st.flushing = false;
            let wake = st.parked.satisfied(target);
            let next_leader = st.parked.0.pop_first();
            drop(st);
            // The next leader first: its flush overlaps the other wake-ups.
            next_leader.into_iter().for_each(|(_, t)| t.unpark());
            wake.iter().for_each(Thread::unpark);
            st = self.state.lock().unwrap();
        }
    }
}

struct ThreadState {
    next: u64,
    durable: u64,
    stop: bool,
    parked: Parked,
}

/// The ideal with a dedicated leader thread: committers queue a ticket and park; the thread
/// writes and syncs everything queued, again and again, and wakes the committers it covered.
pub struct IdealThread {
    state: Mutex<ThreadState>,
    work: Condvar,
}

impl IdealThread {
    pub fn start(file: File, bytes: usize) -> (Arc<Self>, std::thread::JoinHandle<()>) {
        let me = Arc::new(IdealThread {
            state: Mutex::new(ThreadState { next: 0, durable: 0, stop: false, parked: Parked::default() }),
            work: Condvar::new(),
        });
        let t = Arc::clone(&me);
        let handle = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut st = t.state.lock().unwrap();
            loop {
                while st.next == st.durable && !st.stop {
                    st = t.work.wait(st).unwrap();
                }
                if st.stop {
                    return;
                }
                let target = st.next;
                let n = (target - st.durable) as usize;
                drop(st);
                file.write_all_at(&vec![1u8; n * bytes], offset).unwrap();
                file.sync_data().unwrap();
                offset = (offset + (n * bytes) as u64) % (IDEAL_FILE - (16 << 20));
                st = t.state.lock().unwrap();
                st.durable = target;
                let wake = st.parked.satisfied(target);
                drop(st);
                wake.iter().for_each(Thread::unpark);
                st = t.state.lock().unwrap();
            }
        });
        (me, handle)
    }

    pub fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let mine = st.next;
        self.work.notify_one();
        while st.durable < mine {
            st = Parked::park(&self.state, st, |s| &mut s.parked, mine);
        }
    }

    pub fn stop(&self) {
        self.state.lock().unwrap().stop = true;
        self.work.notify_one();
    }
}

/// `committers` threads committing through an ideal (`threaded`: the dedicated leader; else
/// leader/follower), `bytes` per commit, for `seconds`.
pub fn ideal_run(root: &Path, threaded: bool, committers: usize, seconds: f64, bytes: usize) -> Run {
    let file = zero_file(&root.join("ideal.dat"), IDEAL_FILE);
    let run = if threaded {
        let (ideal, handle) = IdealThread::start(file, bytes);
        let i = Arc::clone(&ideal);
        let run = drive(committers, seconds, Arc::new(move |_, _| i.commit()));
        ideal.stop();
        handle.join().unwrap();
        run
    } else {
        let state = LfState { next: 0, durable: 0, flushing: false, offset: 0, parked: Parked::default() };
        let ideal = Arc::new(IdealLf { file, bytes, state: Mutex::new(state) });
        drive(committers, seconds, Arc::new(move |_, _| ideal.commit()))
    };
    let _ = std::fs::remove_file(root.join("ideal.dat"));
    run
}
