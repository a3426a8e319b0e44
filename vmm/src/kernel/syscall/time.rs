//! The time family: clocks, sleeps, process times. Served on the calling thread's island from the
//! host's clocks (every island of a program shares them).

use std::time::{Duration, Instant};

use super::{blocking, sys, Call, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::uaccess::UserMemory;
use crate::kernel::wait::Abandon;

pub const CALLS: &[Syscall] = &[
    blocking(
        libc::SYS_nanosleep,
        "nanosleep",
        Sys(|c| {
            let (req, rem) = (c.a[0], c.a[1]);
            nanosleep(c, libc::CLOCK_MONOTONIC, 0, req, rem)
        }),
    ),
    sys(libc::SYS_gettimeofday, "gettimeofday", Sys(gettimeofday)),
    sys(libc::SYS_times, "times", Sys(times)),
    sys(libc::SYS_time, "time", Sys(time)),
    sys(
        libc::SYS_clock_gettime,
        "clock_gettime",
        Sys(|c| clock_gettime(c, false)),
    ),
    sys(
        libc::SYS_clock_getres,
        "clock_getres",
        Sys(|c| clock_gettime(c, true)),
    ),
    blocking(
        libc::SYS_clock_nanosleep,
        "clock_nanosleep",
        Sys(|c| {
            let a = c.a;
            nanosleep(c, a[0] as i32, a[1], a[2], a[3])
        }),
    ),
];

#[derive(Clone, Copy)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// A `struct timespec` from the program (EINVAL when out of range).
pub fn read_timespec(user: &UserMemory, addr: u64) -> Result<Timespec, Errno> {
    let sec: i64 = user.read_obj(addr)?;
    let nsec: i64 = user.read_obj(addr + 8)?;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Timespec { sec, nsec })
}

fn host_clock(clock: i32) -> Result<Timespec, Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(Errno::last());
    }
    Ok(Timespec {
        sec: ts.tv_sec,
        nsec: ts.tv_nsec,
    })
}

fn valid_clock(clock: u64) -> Result<i32, Errno> {
    let c = clock as i32;
    if (0..=11).contains(&c) && c != 8 && c != 9 {
        Ok(c)
    } else {
        Err(Errno::EINVAL)
    }
}

/// Counts a time call served as a system call (`Island::time_syscalls`).
fn count(c: &Call<'_>) {
    c.island
        .time_syscalls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn clock_gettime(c: &mut Call<'_>, res: bool) -> SysResult {
    count(c);
    let (clock, tp) = (c.a[0], c.a[1]);
    let clock = valid_clock(clock)?;
    let ts = if res {
        let mut r = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec into `r`.
        if unsafe { libc::clock_getres(clock, &mut r) } != 0 {
            return Err(Errno::last());
        }
        if tp == 0 {
            return Ok(0);
        }
        Timespec {
            sec: r.tv_sec,
            nsec: r.tv_nsec,
        }
    } else {
        host_clock(clock)?
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ts.sec.to_le_bytes());
    b[8..].copy_from_slice(&ts.nsec.to_le_bytes());
    c.island.user.write(tp, &b)?;
    Ok(0)
}

fn gettimeofday(c: &mut Call<'_>) -> SysResult {
    count(c);
    let (tv, tz) = (c.a[0], c.a[1]);
    let now = host_clock(libc::CLOCK_REALTIME)?;
    if tv != 0 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&now.sec.to_le_bytes());
        b[8..].copy_from_slice(&(now.nsec / 1000).to_le_bytes());
        c.island.user.write(tv, &b)?;
    }
    c.island.user.write_opt(tz, 0u64)?;
    Ok(0)
}

fn time(c: &mut Call<'_>) -> SysResult {
    count(c);
    let tloc = c.a[0];
    let now = host_clock(libc::CLOCK_REALTIME)?;
    c.island.user.write_opt(tloc, now.sec)?;
    Ok(now.sec as u64)
}

/// How long until `abs` on `clock` (zero if it has passed).
pub fn duration_until(clock: i32, abs: Timespec) -> Result<Duration, Errno> {
    let now = host_clock(clock)?;
    let d = (abs.sec as i128 - now.sec as i128) * 1_000_000_000 + (abs.nsec - now.nsec) as i128;
    Ok(Duration::from_nanos(d.clamp(0, u64::MAX as i128) as u64))
}

/// nanosleep and clock_nanosleep (TIMER_ABSTIME in `flags`): the thread sleeps on its wake-up,
/// so that a signal for it ends the sleep at once (EINTR, as Linux).
fn nanosleep(c: &mut Call<'_>, clock: i32, flags: u64, req: u64, rem: u64) -> SysResult {
    valid_clock(clock as u64)?;
    let ts = read_timespec(&c.island.user, req)?;
    let absolute = flags & libc::TIMER_ABSTIME as u64 != 0;
    let d = if absolute {
        duration_until(clock, ts)?
    } else {
        Duration::new(ts.sec as u64, ts.nsec as u32)
    };
    let end = Instant::now().checked_add(d);
    let why = c.t.status.wakeup.wait_for(end, || c.abandon());
    match why {
        None => Ok(0),
        Some(Abandon::TimedOut) => Ok(0),
        Some(Abandon::Interrupted) => {
            // A relative sleep reports the time it had left.
            if !absolute && rem != 0 {
                let left = end.map_or(Duration::MAX, |e| {
                    e.saturating_duration_since(Instant::now())
                });
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&(left.as_secs().min(i64::MAX as u64)).to_le_bytes());
                b[8..].copy_from_slice(&u64::from(left.subsec_nanos()).to_le_bytes());
                c.island.user.write(rem, &b)?;
            }
            Err(Errno::EINTR)
        }
    }
}

fn times(c: &mut Call<'_>) -> SysResult {
    let buf = c.a[0];
    let mut out = [0u8; std::mem::size_of::<libc::tms>()];
    // SAFETY: times writes one `struct tms` into `out`, which has exactly its size.
    let r = unsafe { libc::times(out.as_mut_ptr().cast()) };
    if buf != 0 {
        c.island.user.write(buf, &out)?;
    }
    Ok(r as u64)
}
