//! Futexes: a table of wait queues keyed by the futex word's guest address.
//!
//! The value check of FUTEX_WAIT and the enqueue happen under the table lock, and wakers take the
//! same lock, so a wake cannot slip between a waiter's check and its sleep (Linux's guarantee).
//! The table knows nothing of guest memory nor of islands: callers pass closures that read the
//! word (through `UserMemory`, hence through the coherency protocol), and each waiter says how it
//! is to be woken: a thread of this island sleeping on its [`Wakeup`], or a callback that answers
//! a waiter on another island (which then waits without holding any thread here). One table per
//! program, owned by the origin's services.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::errno::Errno;
pub use super::wait::Abandon;
use super::wait::Waiting;
use crate::sync::lock;

pub const BITSET_MATCH_ANY: u32 = u32::MAX;

/// Reads a futex word (through `UserMemory`), under the table lock.
pub type ReadWord<'a> = &'a dyn Fn() -> Result<u32, Errno>;

/// Identifies one queued waiter, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaiterId(u64);

/// What a wake does: called once, under the table lock, when the waiter leaves its queue woken.
pub type OnWake = Box<dyn FnOnce() + Send>;

struct Waiter {
    id: WaiterId,
    bitset: u32,
    on_wake: OnWake,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("id", &self.id)
            .field("bitset", &self.bitset)
            .finish()
    }
}

/// All futex wait queues of one program.
#[derive(Debug, Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<u64, VecDeque<Waiter>>>,
    next_id: AtomicU64,
}

impl FutexTable {
    /// FUTEX_WAIT(_BITSET) without a sleeping thread: if the word still holds `expected`, queues a
    /// waiter that `on_wake` answers when it is woken. `read_word` runs under the table lock.
    pub fn wait_async(
        &self,
        addr: u64,
        expected: u32,
        bitset: u32,
        read_word: impl FnOnce() -> Result<u32, Errno>,
        on_wake: OnWake,
    ) -> Result<WaiterId, Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let id = WaiterId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut q = lock(&self.queues);
        if read_word()? != expected {
            return Err(Errno::EAGAIN);
        }
        q.entry(addr).or_default().push_back(Waiter {
            id,
            bitset,
            on_wake,
        });
        Ok(id)
    }

    /// Takes a waiter out of its queue, if it is still there (not woken). Returns whether it was.
    pub fn cancel(&self, id: WaiterId) -> bool {
        let mut q = lock(&self.queues);
        let mut found = None;
        for (key, list) in q.iter_mut() {
            if let Some(i) = list.iter().position(|w| w.id == id) {
                list.remove(i);
                found = Some(*key);
                break;
            }
        }
        match found {
            Some(key) => {
                if q.get(&key).is_some_and(|l| l.is_empty()) {
                    q.remove(&key);
                }
                true
            }
            None => false,
        }
    }

    /// FUTEX_WAIT(_BITSET) for a thread of this island: sleeps as `w` says if the word still
    /// holds `expected`, until woken (Ok), its deadline (ETIMEDOUT) or its `abandon` says to give
    /// up (that reason's errno).
    pub fn wait(
        &self,
        addr: u64,
        expected: u32,
        bitset: u32,
        read_word: impl FnOnce() -> Result<u32, Errno>,
        w: &Waiting<'_>,
    ) -> Result<(), Errno> {
        let (wakeup, deadline, abandon) = (w.wakeup, w.deadline, w.abandon);
        let woken = Arc::new(AtomicBool::new(false));
        let on_wake: OnWake = {
            let (woken, wakeup) = (Arc::clone(&woken), Arc::clone(wakeup));
            Box::new(move || {
                woken.store(true, Ordering::SeqCst);
                wakeup.notify();
            })
        };
        let id = self.wait_async(addr, expected, bitset, read_word, on_wake)?;
        let why = wakeup.wait_for(deadline, || {
            if woken.load(Ordering::SeqCst) {
                return Some(None);
            }
            abandon().map(Some)
        });
        let why = match why {
            Some(None) => return Ok(()),
            Some(Some(why)) => why,
            None => Abandon::TimedOut,
        };
        // Leave the queue, unless a waker took us out in the meantime: then the wake counts.
        if self.cancel(id) {
            Err(why.errno())
        } else {
            Ok(())
        }
    }

    fn wake_locked(q: &mut HashMap<u64, VecDeque<Waiter>>, addr: u64, n: u32, bitset: u32) -> u32 {
        let Some(list) = q.get_mut(&addr) else {
            return 0;
        };
        let mut woken = 0;
        let mut kept = VecDeque::with_capacity(list.len());
        while let Some(w) = list.pop_front() {
            if woken < n && w.bitset & bitset != 0 {
                (w.on_wake)();
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

    /// Number of waiters on `addr` (for tests and the control socket).
    pub fn waiters(&self, addr: u64) -> usize {
        lock(&self.queues).get(&addr).map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::{Duration, Instant};

    use crate::sync::Wakeup;

    /// Waits as a thread that never gives up, until `deadline`.
    fn wait(
        t: &FutexTable,
        addr: u64,
        val: u32,
        bits: u32,
        deadline: Option<Instant>,
        word: impl FnOnce() -> Result<u32, Errno>,
        abandon: &dyn Fn() -> Option<Abandon>,
    ) -> Result<(), Errno> {
        let wakeup = Arc::new(Wakeup::new());
        t.wait(
            addr,
            val,
            bits,
            word,
            &Waiting {
                wakeup: &wakeup,
                deadline,
                abandon,
            },
        )
    }

    #[test]
    fn wait_checks_value_and_times_out() {
        let t = FutexTable::default();
        assert_eq!(
            wait(&t, 8, 1, BITSET_MATCH_ANY, None, || Ok(2), &|| None),
            Err(Errno::EAGAIN)
        );
        let d = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            wait(&t, 8, 1, BITSET_MATCH_ANY, Some(d), || Ok(1), &|| None),
            Err(Errno::ETIMEDOUT)
        );
        assert_eq!(t.waiters(8), 0);
        assert_eq!(
            wait(&t, 8, 1, BITSET_MATCH_ANY, None, || Ok(1), &|| Some(
                Abandon::Interrupted
            )),
            Err(Errno::EINTR)
        );
        assert_eq!(t.waiters(8), 0);
        assert_eq!(
            wait(&t, 8, 1, 0, None, || Ok(1), &|| None),
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
                wait(
                    &t,
                    16,
                    0,
                    bits,
                    None,
                    || Ok(word.load(Ordering::SeqCst)),
                    &|| None,
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
                    wait(&t, 32, 7, BITSET_MATCH_ANY, None, || Ok(7), &|| None)
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

    #[test]
    fn an_async_waiter_is_answered_by_its_callback_or_cancelled() {
        let t = FutexTable::default();
        let answered = Arc::new(AtomicBool::new(false));
        let a2 = Arc::clone(&answered);
        let id = t
            .wait_async(
                40,
                3,
                BITSET_MATCH_ANY,
                || Ok(3),
                Box::new(move || a2.store(true, Ordering::SeqCst)),
            )
            .expect("queued");
        assert_eq!(t.waiters(40), 1);
        assert_eq!(t.wake(40, 1, BITSET_MATCH_ANY), Ok(1));
        assert!(answered.load(Ordering::SeqCst));
        assert!(!t.cancel(id), "a woken waiter cannot be cancelled");
        let id = t
            .wait_async(40, 3, BITSET_MATCH_ANY, || Ok(3), Box::new(|| {}))
            .expect("queued");
        assert!(t.cancel(id));
        assert_eq!(t.waiters(40), 0);
        assert_eq!(t.wake(40, 1, BITSET_MATCH_ANY), Ok(0));
    }
}
