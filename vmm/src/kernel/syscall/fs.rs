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
        File(|c, a| fs::sys_write(c, fd(a[0]), a[1], a[2], None)),
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
        File(|c, a| fs::sys_pwrite(c, fd(a[0]), a[1], a[2], a[3])),
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
    sys(
        libc::SYS_fchdir,
        "fchdir",
        File(|c, a| fs::sys_fchdir(c, fd(a[0]))),
    ),
    // What would change the file system: the root is read-only, and each call answers what Linux
    // answers on a read-only mount (EROFS, or the error Linux finds first).
    sys(
        libc::SYS_creat,
        "creat",
        File(|c, a| {
            let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
            fs::sys_openat(c, libc::AT_FDCWD, a[0], flags as u64)
        }),
    ),
    sys(
        libc::SYS_mkdir,
        "mkdir",
        File(|c, a| fs::sys_mkdirat(c, libc::AT_FDCWD, a[0])),
    ),
    sys(
        libc::SYS_mkdirat,
        "mkdirat",
        File(|c, a| fs::sys_mkdirat(c, fd(a[0]), a[1])),
    ),
    sys(
        libc::SYS_mknod,
        "mknod",
        File(|c, a| fs::sys_mknodat(c, libc::AT_FDCWD, a[0], a[1])),
    ),
    sys(
        libc::SYS_mknodat,
        "mknodat",
        File(|c, a| fs::sys_mknodat(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_rmdir,
        "rmdir",
        File(|c, a| fs::sys_unlinkat(c, libc::AT_FDCWD, a[0], libc::AT_REMOVEDIR as u64)),
    ),
    sys(
        libc::SYS_unlink,
        "unlink",
        File(|c, a| fs::sys_unlinkat(c, libc::AT_FDCWD, a[0], 0)),
    ),
    sys(
        libc::SYS_unlinkat,
        "unlinkat",
        File(|c, a| fs::sys_unlinkat(c, fd(a[0]), a[1], a[2])),
    ),
    sys(
        libc::SYS_rename,
        "rename",
        File(|c, a| fs::sys_renameat2(c, libc::AT_FDCWD, a[0], libc::AT_FDCWD, a[1], 0)),
    ),
    sys(
        libc::SYS_renameat,
        "renameat",
        File(|c, a| fs::sys_renameat2(c, fd(a[0]), a[1], fd(a[2]), a[3], 0)),
    ),
    sys(
        libc::SYS_renameat2,
        "renameat2",
        File(|c, a| fs::sys_renameat2(c, fd(a[0]), a[1], fd(a[2]), a[3], a[4])),
    ),
    sys(
        libc::SYS_link,
        "link",
        File(|c, a| fs::sys_linkat(c, libc::AT_FDCWD, a[0], libc::AT_FDCWD, a[1], 0)),
    ),
    sys(
        libc::SYS_linkat,
        "linkat",
        File(|c, a| fs::sys_linkat(c, fd(a[0]), a[1], fd(a[2]), a[3], a[4])),
    ),
    sys(
        libc::SYS_symlink,
        "symlink",
        File(|c, a| fs::sys_symlinkat(c, a[0], libc::AT_FDCWD, a[1])),
    ),
    sys(
        libc::SYS_symlinkat,
        "symlinkat",
        File(|c, a| fs::sys_symlinkat(c, a[0], fd(a[1]), a[2])),
    ),
    sys(
        libc::SYS_chmod,
        "chmod",
        File(|c, a| fs::sys_chmod(c, libc::AT_FDCWD, a[0], 0)),
    ),
    sys(
        libc::SYS_fchmod,
        "fchmod",
        File(|c, a| fs::sys_fchmod(c, fd(a[0]))),
    ),
    sys(
        libc::SYS_fchmodat,
        "fchmodat",
        File(|c, a| fs::sys_chmod(c, fd(a[0]), a[1], 0)),
    ),
    sys(
        SYS_FCHMODAT2,
        "fchmodat2",
        File(|c, a| fs::sys_chmod(c, fd(a[0]), a[1], a[3])),
    ),
    sys(
        libc::SYS_chown,
        "chown",
        File(|c, a| fs::sys_chown(c, libc::AT_FDCWD, a[0], 0)),
    ),
    sys(
        libc::SYS_lchown,
        "lchown",
        File(|c, a| {
            let nofollow = libc::AT_SYMLINK_NOFOLLOW as u64;
            fs::sys_chown(c, libc::AT_FDCWD, a[0], nofollow)
        }),
    ),
    sys(
        libc::SYS_fchown,
        "fchown",
        File(|c, a| fs::sys_fchown(c, fd(a[0]))),
    ),
    sys(
        libc::SYS_fchownat,
        "fchownat",
        File(|c, a| fs::sys_chown(c, fd(a[0]), a[1], a[4])),
    ),
    sys(
        libc::SYS_truncate,
        "truncate",
        File(|c, a| fs::sys_truncate(c, a[0], a[1])),
    ),
    sys(
        libc::SYS_ftruncate,
        "ftruncate",
        File(|c, a| fs::sys_ftruncate(c, fd(a[0]), a[1])),
    ),
    sys(
        libc::SYS_utimensat,
        "utimensat",
        File(|c, a| fs::sys_utimensat(c, fd(a[0]), a[1], a[2], a[3])),
    ),
];

/// fchmodat2 (Linux 6.6).
const SYS_FCHMODAT2: c_long = 452;

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
    // A signal mask must be a whole sigset_t (and readable).
    if a[3] != 0 {
        if a[4] != 8 {
            return Err(Errno::EINVAL);
        }
        c.user.read_obj::<u64>(a[3])?;
    }
    fs::sys_poll(c, a[0], a[1], timeout)
}
