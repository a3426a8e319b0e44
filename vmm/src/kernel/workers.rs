//! A bounded pool of worker threads for the requests an island's service loop must not serve
//! itself because they may block (a layout change waits for the layout lock, the origin waits for
//! other islands, a file call may wait for input).
//!
//! Workers are started on demand, up to a cap, and kept; beyond the cap, requests wait in a FIFO
//! queue for the first free worker. A futex wait never holds a worker (the origin answers it when
//! it is woken), so only file calls that wait for input can hold workers for long.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::sync::lock;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Of those, how many were already woken for a queued job (so that a burst of jobs does not
    /// count one idle worker several times).
    woken: usize,
    threads: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    max: usize,
    name: String,
}

/// A pool of at most `max` worker threads.
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.shared.state);
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("threads", &s.threads)
            .field("queued", &s.jobs.len())
            .finish()
    }
}

/// Host stack of a worker: it runs island-kernel code only.
const WORKER_STACK: usize = 256 << 10;

impl WorkerPool {
    pub fn new(name: impl Into<String>, max: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                max: max.max(1),
                name: name.into(),
            }),
        }
    }

    /// Runs `job` on a worker: an idle one, a new one while under the cap, or the first that is
    /// free. Jobs run in the order they came when they wait.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let mut s = lock(&self.shared.state);
        if s.closed {
            return;
        }
        s.jobs.push_back(Box::new(job));
        if s.idle > s.woken {
            s.woken += 1;
            drop(s);
            self.shared.cv.notify_one();
            return;
        }
        if s.threads < self.shared.max {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(self.shared.name.clone())
                .stack_size(WORKER_STACK)
                .spawn(move || work(&shared));
            if spawned.is_ok() {
                s.threads += 1;
            }
        }
        // Otherwise the job waits for the first worker that is done.
    }

    /// Stops taking jobs; idle workers end.
    pub fn close(&self) {
        lock(&self.shared.state).closed = true;
        self.shared.cv.notify_all();
    }

    /// Workers started so far.
    pub fn threads(&self) -> usize {
        lock(&self.shared.state).threads
    }
}

fn work(shared: &Shared) {
    let mut s = lock(&shared.state);
    loop {
        if let Some(job) = s.jobs.pop_front() {
            drop(s);
            job();
            s = lock(&shared.state);
            continue;
        }
        if s.closed {
            s.threads -= 1;
            return;
        }
        s.idle += 1;
        s = shared.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        s.idle -= 1;
        s.woken = s.woken.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn jobs_run_on_at_most_max_workers() {
        let pool = WorkerPool::new("test-worker", 2);
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..20 {
            let (done, tx) = (Arc::clone(&done), tx.clone());
            pool.run(move || {
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
            });
        }
        for _ in 0..20 {
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("every job runs");
        }
        assert_eq!(done.load(Ordering::SeqCst), 20);
        assert!(pool.threads() <= 2, "{} workers", pool.threads());
        pool.close();
    }
}
