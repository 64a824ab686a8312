//! The disk's own ceiling: raw fdatasync latency, and two ideal group commits that write the
//! same bytes per commit as the engine measured beside them with nothing else on the path.
//! Shared by `benches/group_commit.rs` and the peers run (`benches/peers`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::{Run, drive, median};

/// The ideals' file: pre-zeroed, written in a ring.
const IDEAL_FILE: u64 = 256 << 20;

pub fn zero_file(path: &Path, len: u64) -> File {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
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

/// The ideal leader/follower: one Mutex + Condvar; the committer that finds no flush in flight
/// writes every record queued so far and syncs; the others wait for the next.
pub struct IdealLf {
    file: File,
    /// Bytes written per commit.
    bytes: usize,
    state: Mutex<(u64, u64, bool, u64)>, // (next ticket, durable ticket, flushing, write offset)
    cv: Condvar,
}

impl IdealLf {
    pub fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        let mine = st.0;
        while st.1 < mine {
            if !st.2 {
                st.2 = true;
                let target = st.0;
                let n = (target - st.1) as usize;
                let offset = st.3;
                st.3 = (st.3 + (n * self.bytes) as u64) % (IDEAL_FILE - (16 << 20));
                drop(st);
                self.file.write_all_at(&vec![1u8; n * self.bytes], offset).unwrap();
                self.file.sync_data().unwrap();
                st = self.state.lock().unwrap();
                st.1 = target;
                st.2 = false;
                self.cv.notify_all();
            } else {
                st = self.cv.wait(st).unwrap();
            }
        }
    }
}

/// The ideal with a dedicated leader thread: committers queue a ticket and wait; the thread
/// writes and syncs everything queued, again and again.
pub struct IdealThread {
    state: Mutex<(u64, u64, bool)>, // (next ticket, durable ticket, stop)
    work: Condvar,
    done: Condvar,
}

impl IdealThread {
    pub fn start(file: File, bytes: usize) -> (Arc<Self>, std::thread::JoinHandle<()>) {
        let me = Arc::new(IdealThread {
            state: Mutex::new((0, 0, false)),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let t = Arc::clone(&me);
        let handle = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut st = t.state.lock().unwrap();
            loop {
                while st.0 == st.1 && !st.2 {
                    st = t.work.wait(st).unwrap();
                }
                if st.2 {
                    return;
                }
                let target = st.0;
                let n = (target - st.1) as usize;
                drop(st);
                file.write_all_at(&vec![1u8; n * bytes], offset).unwrap();
                file.sync_data().unwrap();
                offset = (offset + (n * bytes) as u64) % (IDEAL_FILE - (16 << 20));
                st = t.state.lock().unwrap();
                st.1 = target;
                t.done.notify_all();
            }
        });
        (me, handle)
    }

    pub fn commit(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        let mine = st.0;
        self.work.notify_one();
        while st.1 < mine {
            st = self.done.wait(st).unwrap();
        }
    }

    pub fn stop(&self) {
        self.state.lock().unwrap().2 = true;
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
        let ideal =
            Arc::new(IdealLf { file, bytes, state: Mutex::new((0, 0, false, 0)), cv: Condvar::new() });
        drive(committers, seconds, Arc::new(move |_, _| ideal.commit()))
    };
    let _ = std::fs::remove_file(root.join("ideal.dat"));
    run
}
