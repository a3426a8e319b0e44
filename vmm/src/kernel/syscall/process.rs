//! The process family: identity, limits and system information. Served on the calling thread's
//! island (every island of a program runs as the same host user, on the same host).

use super::{sys, Call, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::fs::MAX_FDS;

pub const CALLS: &[Syscall] = &[
    sys(
        libc::SYS_getpid,
        "getpid",
        Sys(|c| Ok(u64::from(c.island.pid))),
    ),
    sys(libc::SYS_uname, "uname", Sys(uname)),
    sys(
        libc::SYS_getrlimit,
        "getrlimit",
        Sys(|c| prlimit(c, 0, c.a[0], 0, c.a[1])),
    ),
    sys(libc::SYS_getrusage, "getrusage", Sys(getrusage)),
    sys(libc::SYS_sysinfo, "sysinfo", Sys(sysinfo)),
    sys(libc::SYS_getuid, "getuid", Sys(identity)),
    sys(libc::SYS_getgid, "getgid", Sys(identity)),
    sys(libc::SYS_geteuid, "geteuid", Sys(identity)),
    sys(libc::SYS_getegid, "getegid", Sys(identity)),
    sys(
        libc::SYS_getppid,
        "getppid",
        Sys(|_| Ok(u64::from(std::os::unix::process::parent_id()))),
    ),
    sys(
        libc::SYS_getpgrp,
        "getpgrp",
        Sys(|c| Ok(u64::from(c.island.pid))),
    ),
    sys(
        libc::SYS_getsid,
        "getsid",
        Sys(|c| Ok(u64::from(c.island.pid))),
    ),
    sys(
        libc::SYS_prlimit64,
        "prlimit64",
        Sys(|c| prlimit(c, c.a[0], c.a[1], c.a[2], c.a[3])),
    ),
    sys(libc::SYS_getrandom, "getrandom", Sys(getrandom)),
];

/// getuid/getgid/geteuid/getegid: the program runs as popvmm's user.
fn identity(c: &mut Call<'_>) -> SysResult {
    let nr = c.nr as libc::c_long;
    // SAFETY: identity queries without arguments; they cannot fail.
    let id = unsafe {
        match nr {
            libc::SYS_getuid => libc::getuid(),
            libc::SYS_getgid => libc::getgid(),
            libc::SYS_geteuid => libc::geteuid(),
            _ => libc::getegid(),
        }
    };
    Ok(u64::from(id))
}

fn uname(c: &mut Call<'_>) -> SysResult {
    let buf = c.a[0];
    // SAFETY: an all-zero utsname is a valid value; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes one utsname into `u`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(Errno::last());
    }
    let mut out = vec![0u8; 6 * 65];
    let fields = [
        &u.sysname,
        &u.nodename,
        &u.release,
        &u.version,
        &u.machine,
        &u.domainname,
    ];
    for (i, f) in fields.iter().enumerate() {
        for (j, c) in f.iter().take(64).enumerate() {
            out[i * 65 + j] = *c as u8;
        }
    }
    // The island's own host name.
    let node = format!("island{}", c.island.id);
    out[65..130].fill(0);
    out[65..65 + node.len()].copy_from_slice(node.as_bytes());
    c.island.user.write(buf, &out)?;
    Ok(0)
}

/// getrusage: popvmm's own usage (guest time counts as the vCPU threads' user time).
fn getrusage(c: &mut Call<'_>) -> SysResult {
    let (who, buf) = (c.a[0] as i32, c.a[1]);
    let host_who = match who {
        libc::RUSAGE_SELF | libc::RUSAGE_CHILDREN | libc::RUSAGE_THREAD => who,
        _ => return Err(Errno::EINVAL),
    };
    let mut out = [0u8; std::mem::size_of::<libc::rusage>()];
    // SAFETY: getrusage writes one `struct rusage` into `out`, which has exactly its size.
    if unsafe { libc::getrusage(host_who, out.as_mut_ptr().cast()) } != 0 {
        return Err(Errno::last());
    }
    c.island.user.write(buf, &out)?;
    Ok(0)
}

fn sysinfo(c: &mut Call<'_>) -> SysResult {
    let buf = c.a[0];
    let mut out = [0u8; 112];
    // SAFETY: sysinfo writes one `struct sysinfo` (112 bytes on x86-64) into `out`.
    if unsafe { libc::sysinfo(out.as_mut_ptr().cast()) } != 0 {
        return Err(Errno::last());
    }
    c.island.user.write(buf, &out)?;
    Ok(0)
}

fn prlimit(c: &Call<'_>, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != u64::from(c.island.pid) {
        return Err(Errno::ESRCH);
    }
    let res = resource as u32;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    if new != 0 {
        // Read and validate, but limits are not enforced on an island.
        let cur: u64 = c.island.user.read_obj(new)?;
        let max: u64 = c.island.user.read_obj(new + 8)?;
        if cur > max {
            return Err(Errno::EINVAL);
        }
    }
    if old != 0 {
        let (cur, max) = match res {
            r if r == libc::RLIMIT_NOFILE => (MAX_FDS as u64, MAX_FDS as u64),
            r if r == libc::RLIMIT_STACK => (crate::memory::layout::STACK_SIZE, u64::MAX),
            r => {
                let mut rl = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes one rlimit into `rl`.
                if unsafe { libc::getrlimit(r as _, &mut rl) } != 0 {
                    return Err(Errno::last());
                }
                (rl.rlim_cur, rl.rlim_max)
            }
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&cur.to_le_bytes());
        b[8..].copy_from_slice(&max.to_le_bytes());
        c.island.user.write(old, &b)?;
    }
    Ok(0)
}

fn getrandom(c: &mut Call<'_>) -> SysResult {
    let (buf, len, flags) = (c.a[0], c.a[1], c.a[2]);
    if flags & !(libc::GRND_NONBLOCK | libc::GRND_RANDOM | 0x4) as u64 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(1 << 20) as usize;
    let mut b = vec![0u8; len];
    // SAFETY: getrandom writes at most `len` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), len, 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    c.island.user.write(buf, &b[..n as usize])?;
    Ok(n as u64)
}
