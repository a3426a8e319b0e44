//! The futex family: futex(2) decoded here, served by the futex table's owner (the origin)
//! through the services port, so that a wake on one island reaches a waiter on another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::time::{duration_until, read_timespec};
use super::{blocking, Call, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::futex::BITSET_MATCH_ANY;
use crate::kernel::island::Island;
use crate::kernel::messages::FutexCall;
use crate::kernel::uaccess::access_ok;
use crate::kernel::vma::Access;
use crate::kernel::wait::Waiting;
use crate::sync::Wakeup;

pub const CALLS: &[Syscall] = &[blocking(libc::SYS_futex, "futex", Sys(sys_futex))];

/// Whether a futex op needs to write its word (Linux's `FUTEX_WRITE` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAccess {
    Read,
    Write,
}

/// Linux's `get_futex_key`: the word must be 4-byte aligned (EINVAL) and in the user part of the
/// address space (EFAULT); a shared (not PRIVATE) futex is keyed by its page, which must be
/// mapped (readable, or writable for a write), else EFAULT. A private one needs no mapping: a
/// wake on an unmapped address wakes nobody.
fn futex_key(c: &Call<'_>, addr: u64, private: bool, access: KeyAccess) -> Result<(), Errno> {
    if addr % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    if !access_ok(addr, 4) {
        return Err(Errno::EFAULT);
    }
    let wanted = match access {
        KeyAccess::Read => Access::Read,
        KeyAccess::Write => Access::Write,
    };
    if !private && !c.island.user.layout().check(addr, 4, wanted) {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// How many waiters a wake wakes: Linux wakes one before it compares with the count, so a count of
/// 0 or less wakes one.
fn wake_count(val: u32) -> u32 {
    (val as i32).max(1) as u32
}

fn sys_futex(c: &mut Call<'_>) -> SysResult {
    let a = c.a;
    let (uaddr, op, val) = (a[0], a[1] as i32, a[2] as u32);
    let cmd = op & !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME);
    let private = op & libc::FUTEX_PRIVATE_FLAG != 0;
    let realtime = op & libc::FUTEX_CLOCK_REALTIME != 0;
    let mut deadline = None;
    // The timeout is read first (EFAULT, EINVAL), before anything else is looked at.
    let timeout = if a[3] != 0 && matches!(cmd, libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET) {
        Some(read_timespec(&c.island.user, a[3])?)
    } else {
        None
    };
    // FUTEX_CLOCK_REALTIME goes with FUTEX_WAIT_BITSET only (and the PI waits, not served).
    if realtime && cmd != libc::FUTEX_WAIT_BITSET {
        return Err(Errno::ENOSYS);
    }
    let call = match cmd {
        libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET => {
            let bitset = if cmd == libc::FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if let Some(ts) = timeout {
                let d = if cmd == libc::FUTEX_WAIT {
                    Duration::new(ts.sec as u64, ts.nsec as u32)
                } else {
                    let clock = if realtime {
                        libc::CLOCK_REALTIME
                    } else {
                        libc::CLOCK_MONOTONIC
                    };
                    duration_until(clock, ts)?
                };
                // A deadline beyond what Instant can represent is no deadline.
                deadline = Instant::now().checked_add(d);
            }
            FutexCall::Wait {
                addr: uaddr,
                val,
                bitset,
            }
        }
        libc::FUTEX_WAKE | libc::FUTEX_WAKE_BITSET => {
            let bitset = if cmd == libc::FUTEX_WAKE {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            futex_key(c, uaddr, private, KeyAccess::Read)?;
            FutexCall::Wake {
                addr: uaddr,
                n: wake_count(val),
                bitset,
            }
        }
        libc::FUTEX_REQUEUE | libc::FUTEX_CMP_REQUEUE => {
            let n_requeue = a[3] as u32;
            if (val as i32) < 0 || (n_requeue as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            futex_key(c, uaddr, private, KeyAccess::Read)?;
            futex_key(c, a[4], private, KeyAccess::Read)?;
            FutexCall::Requeue {
                addr: uaddr,
                addr2: a[4],
                n_wake: val,
                n_requeue,
                check: (cmd == libc::FUTEX_CMP_REQUEUE).then_some(a[5] as u32),
            }
        }
        libc::FUTEX_WAKE_OP => {
            futex_key(c, uaddr, private, KeyAccess::Read)?;
            futex_key(c, a[4], private, KeyAccess::Write)?;
            // An operation Linux does not know is refused before the word is touched.
            if (a[5] as u32 >> 28) & 0x7 > 4 {
                return Err(Errno::ENOSYS);
            }
            FutexCall::WakeOp {
                addr: uaddr,
                addr2: a[4],
                n: wake_count(val),
                n2: wake_count(a[3] as u32),
                encoded: a[5] as u32,
            }
        }
        _ => {
            c.island
                .log_unknown_once(202_000 + cmd as u64, "futex operation");
            return Err(Errno::ENOSYS);
        }
    };
    c.waiting(deadline, |w| c.island.services.futex(call, w))
}

/// FUTEX_WAKE from the island kernel itself (thread exit, robust lists).
pub fn futex_wake(island: &Island, addr: u64) {
    let wakeup = Arc::new(Wakeup::new());
    let _ = island.services.futex(
        FutexCall::Wake {
            addr,
            n: 1,
            bitset: BITSET_MATCH_ANY,
        },
        &Waiting {
            wakeup: &wakeup,
            deadline: None,
            abandon: &|| None,
        },
    );
}
