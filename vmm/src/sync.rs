//! Synchronization helpers used across popvmm: a poison-tolerant lock and a wake-up channel for
//! blocked threads, so that every wait in the island kernel is woken by an event (a futex wake, a
//! reply, a signal, the end of the program) instead of polling.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks `m`, ignoring poisoning. A panicking island-kernel thread ends the program (see the vCPU
/// loop), and every structure behind these locks is consistent between statements, so the data
/// is still good for whoever is tearing down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A wake-up channel for one waiting thread (a program thread, or a worker serving a request).
///
/// Whoever changes something the thread may wait for calls [`Wakeup::notify`]; the thread waits
/// with [`Wakeup::wait_for`], which re-checks its condition after every notification. The
/// generation counter closes the race between checking the condition and going to sleep.
#[derive(Debug, Default)]
pub struct Wakeup {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wakeup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the thread waiting here (if any) so that it re-checks its condition.
    pub fn notify(&self) {
        *lock(&self.generation) += 1;
        self.cv.notify_all();
    }

    /// Waits until `ready` returns a value, re-checking it after every notification, or until
    /// `deadline` passes (then `None`, after one last check).
    pub fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            let seen = *lock(&self.generation);
            if let Some(v) = ready() {
                return Some(v);
            }
            let mut g = lock(&self.generation);
            while *g == seen {
                match deadline {
                    None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            drop(g);
                            return ready();
                        }
                        g = self
                            .cv
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_notification_wakes_the_waiter_and_a_deadline_ends_the_wait() {
        let w = Arc::new(Wakeup::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (w2, f2) = (Arc::clone(&w), Arc::clone(&flag));
        let waiter = std::thread::spawn(move || {
            w2.wait_for(None, || f2.load(Ordering::SeqCst).then_some(7))
        });
        std::thread::sleep(Duration::from_millis(10));
        flag.store(true, Ordering::SeqCst);
        w.notify();
        assert_eq!(waiter.join().expect("join"), Some(7));

        let start = Instant::now();
        let none: Option<()> =
            w.wait_for(Some(Instant::now() + Duration::from_millis(20)), || None);
        assert_eq!(none, None);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
