//! Futexes: a table of wait queues keyed by the futex word's guest address.
//!
//! The value check of FUTEX_WAIT and the enqueue happen under the table lock, and wakers take the
//! same lock, so a wake cannot slip between a waiter's check and its sleep (Linux's guarantee).
//! The table knows nothing of guest memory: callers pass closures that read the word through
//! `UserMemory`. In the multi-island design this table is served by the origin island.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::Errno;

pub const BITSET_MATCH_ANY: u32 = u32::MAX;

/// How often a blocked waiter checks for a signal to deliver.
pub const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// Reads a futex word (through `UserMemory`), under the table lock.
pub type ReadWord<'a> = &'a dyn Fn() -> Result<u32, Errno>;

#[derive(Debug)]
struct Waiter {
    bitset: u32,
    /// The queue the waiter is on (changes on requeue; only written under the table lock).
    key: AtomicU64,
    woken: Mutex<bool>,
    cv: Condvar,
}

/// All futex wait queues of one program.
#[derive(Debug, Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<u64, VecDeque<Arc<Waiter>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Waiter {
    fn wake(&self) {
        *lock(&self.woken) = true;
        self.cv.notify_one();
    }
}

impl FutexTable {
    /// FUTEX_WAIT(_BITSET): sleeps if the word still holds `expected`, until woken or `deadline`.
    /// `read_word` runs under the table lock.
    pub fn wait(
        &self,
        addr: u64,
        expected: u32,
        bitset: u32,
        deadline: Option<Instant>,
        read_word: impl FnOnce() -> Result<u32, Errno>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let waiter = Arc::new(Waiter {
            bitset,
            key: AtomicU64::new(addr),
            woken: Mutex::new(false),
            cv: Condvar::new(),
        });
        {
            let mut q = lock(&self.queues);
            if read_word()? != expected {
                return Err(Errno::EAGAIN);
            }
            q.entry(addr).or_default().push_back(Arc::clone(&waiter));
        }
        let mut woken = lock(&waiter.woken);
        let mut why = Errno::ETIMEDOUT;
        while !*woken {
            // Sleep in slices so that a signal sent to this thread interrupts the wait (EINTR)
            // within SIGNAL_CHECK.
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if now >= d => break,
                Some(d) => (d - now).min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            woken = waiter
                .cv
                .wait_timeout(woken, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if !*woken && interrupted() {
                why = Errno::EINTR;
                break;
            }
        }
        if *woken {
            return Ok(());
        }
        drop(woken);
        // Timed out or interrupted: leave the queue unless a waker got us in the meantime.
        let mut q = lock(&self.queues);
        if *lock(&waiter.woken) {
            return Ok(());
        }
        let key = waiter.key.load(Ordering::Relaxed);
        if let Some(list) = q.get_mut(&key) {
            list.retain(|w| !Arc::ptr_eq(w, &waiter));
            if list.is_empty() {
                q.remove(&key);
            }
        }
        Err(why)
    }

    fn wake_locked(
        q: &mut HashMap<u64, VecDeque<Arc<Waiter>>>,
        addr: u64,
        n: u32,
        bitset: u32,
    ) -> u32 {
        let Some(list) = q.get_mut(&addr) else {
            return 0;
        };
        let mut woken = 0;
        let mut kept = VecDeque::with_capacity(list.len());
        while let Some(w) = list.pop_front() {
            if woken < n && w.bitset & bitset != 0 {
                w.wake();
                woken += 1;
            } else {
                kept.push_back(w);
            }
        }
        if kept.is_empty() {
            q.remove(&addr);
        } else {
            *list = kept;
        }
        woken
    }

    /// FUTEX_WAKE(_BITSET): wakes up to `n` waiters whose bitset intersects `bitset`.
    pub fn wake(&self, addr: u64, n: u32, bitset: u32) -> Result<u32, Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let mut q = lock(&self.queues);
        Ok(Self::wake_locked(&mut q, addr, n, bitset))
    }

    /// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: wakes `n_wake` waiters of `addr` and moves up to
    /// `n_requeue` others to `addr2`. With `check`, fails with EAGAIN unless the word still holds
    /// the expected value (read under the table lock).
    pub fn requeue(
        &self,
        addr: u64,
        addr2: u64,
        n_wake: u32,
        n_requeue: u32,
        check: Option<(u32, ReadWord<'_>)>,
    ) -> Result<u32, Errno> {
        let mut q = lock(&self.queues);
        if let Some((expected, read)) = check {
            if read()? != expected {
                return Err(Errno::EAGAIN);
            }
        }
        let woken = Self::wake_locked(&mut q, addr, n_wake, BITSET_MATCH_ANY);
        if addr == addr2 {
            return Ok(woken);
        }
        let mut moved = 0;
        let mut to_move = Vec::new();
        if let Some(list) = q.get_mut(&addr) {
            while moved < n_requeue {
                let Some(w) = list.pop_front() else { break };
                w.key.store(addr2, Ordering::Relaxed);
                to_move.push(w);
                moved += 1;
            }
            if list.is_empty() {
                q.remove(&addr);
            }
        }
        if !to_move.is_empty() {
            q.entry(addr2).or_default().extend(to_move);
        }
        Ok(woken + moved)
    }

    /// FUTEX_WAKE_OP: `op` atomically updates the second word and returns its old value, all
    /// under the table lock; then wakes `n` on `addr` and, if `cmp(old)`, `n2` on `addr2`.
    pub fn wake_op(
        &self,
        addr: u64,
        addr2: u64,
        n: u32,
        n2: u32,
        op: impl FnOnce() -> Result<bool, Errno>,
    ) -> Result<u32, Errno> {
        let mut q = lock(&self.queues);
        let cond = op()?;
        let mut woken = Self::wake_locked(&mut q, addr, n, BITSET_MATCH_ANY);
        if cond {
            woken += Self::wake_locked(&mut q, addr2, n2, BITSET_MATCH_ANY);
        }
        Ok(woken)
    }

    /// Number of threads waiting on `addr` (for tests and the control socket).
    pub fn waiters(&self, addr: u64) -> usize {
        lock(&self.queues).get(&addr).map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    #[test]
    fn wait_checks_value_and_times_out() {
        let t = FutexTable::default();
        assert_eq!(
            t.wait(8, 1, BITSET_MATCH_ANY, None, || Ok(2), &|| false),
            Err(Errno::EAGAIN)
        );
        let d = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            t.wait(8, 1, BITSET_MATCH_ANY, Some(d), || Ok(1), &|| false),
            Err(Errno::ETIMEDOUT)
        );
        assert_eq!(t.waiters(8), 0);
        assert_eq!(
            t.wait(8, 1, BITSET_MATCH_ANY, None, || Ok(1), &|| true),
            Err(Errno::EINTR)
        );
        assert_eq!(t.waiters(8), 0);
        assert_eq!(
            t.wait(8, 1, 0, None, || Ok(1), &|| false),
            Err(Errno::EINVAL)
        );
    }

    fn wait_until_queued(t: &FutexTable, addr: u64, n: usize) {
        while t.waiters(addr) < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn wake_and_bitsets() {
        let t = Arc::new(FutexTable::default());
        let word = Arc::new(AtomicU32::new(0));
        let spawn = |bits: u32| {
            let (t, word) = (Arc::clone(&t), Arc::clone(&word));
            std::thread::spawn(move || {
                t.wait(
                    16,
                    0,
                    bits,
                    None,
                    || Ok(word.load(Ordering::SeqCst)),
                    &|| false,
                )
            })
        };
        let a = spawn(0b01);
        wait_until_queued(&t, 16, 1);
        let b = spawn(0b10);
        wait_until_queued(&t, 16, 2);
        assert_eq!(t.wake(16, 10, 0b10), Ok(1));
        assert_eq!(b.join().expect("join"), Ok(()));
        assert_eq!(t.waiters(16), 1);
        assert_eq!(t.wake(16, 10, BITSET_MATCH_ANY), Ok(1));
        assert_eq!(a.join().expect("join"), Ok(()));
        assert_eq!(t.wake(16, 10, BITSET_MATCH_ANY), Ok(0));
    }

    #[test]
    fn requeue_moves_waiters() {
        let t = Arc::new(FutexTable::default());
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    t.wait(32, 7, BITSET_MATCH_ANY, None, || Ok(7), &|| false)
                })
            })
            .collect();
        wait_until_queued(&t, 32, 3);
        let read = || Ok(5);
        assert_eq!(
            t.requeue(32, 64, 1, 10, Some((6, &read))),
            Err(Errno::EAGAIN)
        );
        assert_eq!(t.requeue(32, 64, 1, 10, Some((5, &read))), Ok(3));
        assert_eq!(t.waiters(32), 0);
        assert_eq!(t.waiters(64), 2);
        assert_eq!(t.wake(64, 2, BITSET_MATCH_ANY), Ok(2));
        for h in hs {
            assert_eq!(h.join().expect("join"), Ok(()));
        }
    }
}
