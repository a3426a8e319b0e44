//! The file family: every call that uses the program's descriptor table, its root or its working
//! directory. Each is served by the files service (the origin's `kernel::fs`), wherever it is made.

use libc::c_long;

use super::{blocking, sys, Handler::File, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::fs::{self, FileCx};

pub const CALLS: &[Syscall] = &[
    sys(
        libc::SYS_read,
        "read",
        File(|c, a| fs::sys_read(c, fd(a[0]), a[1], a[2], None)),
    ),
    sys(
        libc::SYS_write,
        "write",
        File(|c, a| fs::sys_write(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_open,
        "open",
        File(|c, a| fs::sys_openat(c, libc::AT_FDCWD, a[0], a[1])),
    ),
    sys(
        libc::SYS_close,
        "close",
        File(|c, a| fs::sys_close(c, fd(a[0]))),
    ),
    sys(
        libc::SYS_stat,
        "stat",
        File(|c, a| fs::sys_newfstatat(c, libc::AT_FDCWD, a[0], a[1], 0)),
    ),
    sys(
        libc::SYS_fstat,
        "fstat",
        File(|c, a| fs::sys_fstat(c, fd(a[0]), a[1])),
    ),
    sys(libc::SYS_lstat, "lstat", File(lstat)),
    blocking(
        libc::SYS_poll,
        "poll",
        File(|c, a| fs::sys_poll(c, a[0], a[1], a[2] as i32)),
    ),
    sys(
        libc::SYS_lseek,
        "lseek",
        File(|c, a| fs::sys_lseek(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_ioctl,
        "ioctl",
        File(|c, a| fs::sys_ioctl(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_pread64,
        "pread64",
        File(|c, a| fs::sys_read(c, fd(a[0]), a[1], a[2], Some(a[3]))),
    ),
    sys(
        libc::SYS_pwrite64,
        "pwrite64",
        File(|c, a| fs::sys_pwrite(c, fd(a[0]))),
    ),
    sys(
        libc::SYS_readv,
        "readv",
        File(|c, a| fs::sys_readv(c, fd(a[0]), a[1], a[2], None)),
    ),
    sys(
        libc::SYS_writev,
        "writev",
        File(|c, a| fs::sys_writev(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_access,
        "access",
        File(|c, a| fs::sys_faccessat(c, libc::AT_FDCWD, a[0], a[1], 0)),
    ),
    sys(libc::SYS_dup, "dup", File(|c, a| fs::sys_dup(c, fd(a[0])))),
    sys(
        libc::SYS_dup2,
        "dup2",
        File(|c, a| fs::sys_dup3(c, fd(a[0]), a[1] as i32, 0, true)),
    ),
    sys(
        libc::SYS_fcntl,
        "fcntl",
        File(|c, a| fs::sys_fcntl(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_getcwd,
        "getcwd",
        File(|c, a| fs::sys_getcwd(c, a[0], a[1])),
    ),
    sys(
        libc::SYS_chdir,
        "chdir",
        File(|c, a| fs::sys_chdir(c, a[0])),
    ),
    sys(
        libc::SYS_readlink,
        "readlink",
        File(|c, a| fs::sys_readlinkat(c, libc::AT_FDCWD, a[0], a[1], a[2])),
    ),
    sys(
        libc::SYS_umask,
        "umask",
        File(|c, a| Ok(u64::from(c.files.set_umask(a[0] as u32)))),
    ),
    sys(
        libc::SYS_getdents64,
        "getdents64",
        File(|c, a| fs::sys_getdents64(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_openat,
        "openat",
        File(|c, a| fs::sys_openat(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_newfstatat,
        "newfstatat",
        File(|c, a| fs::sys_newfstatat(c, fd(a[0]), a[1], a[2], a[3])),
    ),
    sys(
        libc::SYS_readlinkat,
        "readlinkat",
        File(|c, a| fs::sys_readlinkat(c, fd(a[0]), a[1], a[2], a[3])),
    ),
    sys(
        libc::SYS_faccessat,
        "faccessat",
        File(|c, a| fs::sys_faccessat(c, fd(a[0]), a[1], a[2], 0)),
    ),
    blocking(libc::SYS_ppoll, "ppoll", File(ppoll)),
    sys(
        libc::SYS_dup3,
        "dup3",
        File(|c, a| fs::sys_dup3(c, fd(a[0]), a[1] as i32, a[2], false)),
    ),
    sys(
        libc::SYS_statx,
        "statx",
        File(|c, a| fs::sys_statx(c, fd(a[0]), a[1], a[2], a[3], a[4])),
    ),
    sys(
        SYS_FACCESSAT2,
        "faccessat2",
        File(|c, a| fs::sys_faccessat(c, fd(a[0]), a[1], a[2], a[3])),
    ),
];

/// faccessat2 (Linux 5.8; libc's constant may be missing on older headers).
const SYS_FACCESSAT2: c_long = 439;

fn fd(a: u64) -> i32 {
    a as i32
}

fn lstat(c: &FileCx<'_>, a: [u64; 6]) -> SysResult {
    fs::sys_newfstatat(
        c,
        libc::AT_FDCWD,
        a[0],
        a[1],
        libc::AT_SYMLINK_NOFOLLOW as u64,
    )
}

/// ppoll: the timeout as a timespec (the signal mask argument changes nothing here: signals
/// interrupt the wait whatever it says).
fn ppoll(c: &FileCx<'_>, a: [u64; 6]) -> SysResult {
    let timeout = if a[2] == 0 {
        -1
    } else {
        let sec: i64 = c.user.read_obj(a[2])?;
        let nsec: i64 = c.user.read_obj(a[2] + 8)?;
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Errno::EINVAL);
        }
        (sec.saturating_mul(1000) + nsec / 1_000_000).min(i32::MAX as i64) as i32
    };
    fs::sys_poll(c, a[0], a[1], timeout)
}
