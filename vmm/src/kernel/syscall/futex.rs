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
use crate::kernel::wait::Waiting;
use crate::sync::Wakeup;

pub const CALLS: &[Syscall] = &[blocking(libc::SYS_futex, "futex", Sys(sys_futex))];

fn sys_futex(c: &mut Call<'_>) -> SysResult {
    let a = c.a;
    let (uaddr, op, val) = (a[0], a[1] as i32, a[2] as u32);
    let cmd = op & !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME);
    let realtime = op & libc::FUTEX_CLOCK_REALTIME != 0;
    let mut deadline = None;
    let call = match cmd {
        libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET => {
            let bitset = if cmd == libc::FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if a[3] != 0 {
                let ts = read_timespec(&c.island.user, a[3])?;
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
        libc::FUTEX_WAKE => FutexCall::Wake {
            addr: uaddr,
            n: val,
            bitset: BITSET_MATCH_ANY,
        },
        libc::FUTEX_WAKE_BITSET => FutexCall::Wake {
            addr: uaddr,
            n: val,
            bitset: a[5] as u32,
        },
        libc::FUTEX_REQUEUE | libc::FUTEX_CMP_REQUEUE => {
            let n_requeue = a[3] as u32;
            if (val as i32) < 0 || (n_requeue as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            FutexCall::Requeue {
                addr: uaddr,
                addr2: a[4],
                n_wake: val,
                n_requeue,
                check: (cmd == libc::FUTEX_CMP_REQUEUE).then_some(a[5] as u32),
            }
        }
        libc::FUTEX_WAKE_OP => FutexCall::WakeOp {
            addr: uaddr,
            addr2: a[4],
            n: val,
            n2: a[3] as u32,
            encoded: a[5] as u32,
        },
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
