//! The calls that take a path: open, stat, access, readlink, and every call that would change
//! the file system, answered as Linux answers them on a read-only mount.
//!
//! Linux checks a call's arguments, then walks the path (ENOENT, ENOTDIR, ELOOP...), and only then
//! asks for write access to the mount (`mnt_want_write`: EROFS); some calls look at the last
//! component before that (`mkdir` of an existing name is EEXIST, `rmdir` of `.` EINVAL). Each
//! call below follows its Linux counterpart's order (`fs/namei.c`, `fs/open.c`, `fs/stat.c`,
//! `fs/utimes.c`), so that the program sees the errno it would see natively.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::path::{name_exists, normalize, Base, Last};
use super::{file_type, host_fstat, read_path, stat_bytes, FileCx, FileKind, OpenFile};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::uaccess::PATH_MAX;

/// Character devices programs commonly use, served by the host's own: they hold no host data.
/// Only /dev/null and /dev/zero may be opened for writing.
const DEVICES: [(&str, &str, bool); 4] = [
    ("null", "/dev/null", true),
    ("zero", "/dev/zero", true),
    ("urandom", "/dev/urandom", false),
    ("random", "/dev/random", false),
];

/// The last component of `path` (after its last `/`), if it does not end with a `/`.
fn final_name(path: &[u8]) -> Option<&[u8]> {
    if path.ends_with(b"/") {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    })
}

/// The device `path` names from `base`, if it is one popvmm serves (`/dev/null`...). A device
/// named with a trailing `/` is ENOTDIR.
fn device(p: &FileCx<'_>, base: &Base, path: &[u8]) -> Result<Option<(&'static str, bool)>, Errno> {
    let trimmed = &path[..path.len() - path.iter().rev().take_while(|&&b| b == b'/').count()];
    if trimmed.len() < path.len() && !trimmed.is_empty() && device_named(p, base, trimmed).is_some()
    {
        return Err(Errno::ENOTDIR);
    }
    Ok(device_named(p, base, path))
}

fn device_named(p: &FileCx<'_>, base: &Base, path: &[u8]) -> Option<(&'static str, bool)> {
    let name = final_name(path)?;
    let &(_, dev, writable) = DEVICES.iter().find(|d| d.0.as_bytes() == name)?;
    let full = p.files.root.joined(base, path).ok()?;
    (normalize(&full) == dev.as_bytes()).then_some((dev, writable))
}

/// A /proc or /sys file popvmm serves itself (`synthetic.rs`), opened as a sealed in-memory
/// file holding its content. None: not one of them.
fn served(
    p: &FileCx<'_>,
    base: &Base,
    path: &[u8],
    flags: i32,
) -> Result<Option<Arc<OpenFile>>, Errno> {
    let Ok(full) = p.files.root.joined(base, path) else {
        return Ok(None);
    };
    let full = normalize(&full);
    if !(full.starts_with(b"/proc/") || full.starts_with(b"/sys/")) {
        return Ok(None);
    }
    let Some(content) = super::synthetic::content(p.files, p.user, &full) else {
        return Ok(None);
    };
    if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
        return Err(Errno::EACCES);
    }
    if flags & libc::O_DIRECTORY != 0 {
        return Err(Errno::ENOTDIR);
    }
    // SAFETY: memfd_create reads the NUL-terminated name; we own the returned descriptor.
    let raw = unsafe { libc::memfd_create(c"popvmm-served".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut at = 0;
    while at < content.len() {
        // SAFETY: writes from a live buffer of the given length to a descriptor we own.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                content[at..].as_ptr().cast(),
                content.len() - at,
            )
        };
        if n <= 0 {
            return Err(Errno::last());
        }
        at += n as usize;
    }
    // SAFETY: lseek on a descriptor we own.
    if unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) } != 0 {
        return Err(Errno::last());
    }
    let name = String::from_utf8_lossy(&full).into_owned();
    Ok(Some(OpenFile::new(
        super::HostFd::Owned(fd),
        FileKind::Served(name),
        true,
    )))
}

fn open_device(dev: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let c = std::ffi::CString::new(dev).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open reads the NUL-terminated path; we own the returned descriptor.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` is a fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a path-taking call found: a file of the root (or a device), opened O_PATH, or an open
/// file of the program (an empty path with AT_EMPTY_PATH).
enum Target {
    Fd(OwnedFd, FileKind),
    File(Arc<OpenFile>),
}

impl Target {
    fn raw(&self) -> RawFd {
        match self {
            Target::Fd(f, _) => f.as_raw_fd(),
            Target::File(f) => f.raw(),
        }
    }

    fn kind(&self) -> FileKind {
        match self {
            Target::Fd(_, k) => k.clone(),
            Target::File(f) => f.kind.clone(),
        }
    }

    fn stat(&self) -> Result<libc::stat, Errno> {
        host_fstat(self.raw())
    }

    /// What a call that would change this file answers: EROFS for the root's files; the devices
    /// and popvmm's own stdio are not the program's to change (EPERM).
    fn change(&self) -> Errno {
        match self.kind() {
            FileKind::InRoot => Errno::EROFS,
            FileKind::Device(_) | FileKind::Stdio | FileKind::Served(_) => Errno::EPERM,
        }
    }
}

/// Finds `path` from `dirfd` as the stat-like calls do (`flags`: AT_SYMLINK_NOFOLLOW,
/// AT_EMPTY_PATH); an empty path is ENOENT unless `empty_ok` or AT_EMPTY_PATH.
fn lookup(
    p: &FileCx<'_>,
    dirfd: i32,
    path: &[u8],
    flags: i32,
    empty_ok: bool,
) -> Result<Target, Errno> {
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 && !empty_ok {
            return Err(Errno::ENOENT);
        }
        return Ok(Target::File(if dirfd == libc::AT_FDCWD {
            Arc::clone(&p.files.table().cwd)
        } else {
            p.files.get(dirfd)?
        }));
    }
    let base = p.files.base(dirfd, path)?;
    if let Some((dev, _)) = device(p, &base, path)? {
        return Ok(Target::Fd(
            open_device(dev, libc::O_PATH)?,
            FileKind::Device(dev),
        ));
    }
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    let fd = p.files.root.resolve(&base, path, libc::O_PATH | nofollow)?;
    Ok(Target::Fd(fd, FileKind::InRoot))
}

// ---------------------------------------------------------------------------------------------
// open

/// __O_TMPFILE (O_TMPFILE without O_DIRECTORY).
const O_TMPFILE_BIT: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;

/// open / openat / creat.
pub fn sys_openat(p: &FileCx<'_>, dirfd: i32, path: u64, flags: u64) -> SysResult {
    let mut flags = flags as i32;
    if flags & libc::O_PATH != 0 {
        // O_PATH keeps only these (and opens for nothing but the name).
        flags &= libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    }
    let acc = flags & libc::O_ACCMODE;
    let writes = flags & libc::O_PATH == 0
        && (acc != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC | O_TMPFILE_BIT) != 0);
    // build_open_flags: checked before the path is read.
    if flags & O_TMPFILE_BIT != 0 {
        if flags & (libc::O_TMPFILE | libc::O_CREAT) != libc::O_TMPFILE
            || (acc != libc::O_WRONLY && acc != libc::O_RDWR)
        {
            return Err(Errno::EINVAL);
        }
    } else if flags & libc::O_CREAT != 0 && flags & libc::O_DIRECTORY != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let base = p.files.base(dirfd, &path)?;
    let cloexec = flags & libc::O_CLOEXEC != 0;
    if let Some((dev, writable)) = device(p, &base, &path)? {
        if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
            return Err(Errno::EEXIST);
        }
        if flags & (libc::O_DIRECTORY | O_TMPFILE_BIT) != 0 {
            return Err(Errno::ENOTDIR);
        }
        if writes && !writable {
            return Err(Errno::EACCES);
        }
        let host_flags = flags & (libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_PATH);
        let file = OpenFile::new(
            super::HostFd::Owned(open_device(dev, host_flags)?),
            FileKind::Device(dev),
            false,
        );
        return p
            .files
            .table()
            .install(file, cloexec, 0)
            .map(|fd| fd as u64);
    }
    if let Some(file) = served(p, &base, &path, flags)? {
        return p
            .files
            .table()
            .install(file, cloexec, 0)
            .map(|fd| fd as u64);
    }
    let fd = if writes {
        open_for_write(p, &base, &path, flags)?
    } else {
        let allowed = libc::O_DIRECTORY
            | libc::O_NOFOLLOW
            | libc::O_NONBLOCK
            | libc::O_PATH
            | libc::O_NOCTTY
            | libc::O_LARGEFILE
            | libc::O_CLOEXEC;
        // May block (a FIFO waiting for a writer): no lock is held here.
        p.files.root.resolve(&base, &path, flags & allowed)?
    };
    let st = host_fstat(fd.as_raw_fd())?;
    let t = file_type(&st);
    if flags & libc::O_PATH == 0 && (t == libc::S_IFCHR || t == libc::S_IFBLK) {
        // Device nodes of the root are not served (as on a `nodev` mount).
        return Err(Errno::EACCES);
    }
    let file = OpenFile::in_root(fd, t == libc::S_IFREG);
    p.files
        .table()
        .install(file, cloexec, 0)
        .map(|fd| fd as u64)
}

/// An open that could write (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_TMPFILE): what Linux answers
/// on a read-only mount, after the same lookups. Only a FIFO really opens (writing to a FIFO
/// changes no file).
fn open_for_write(p: &FileCx<'_>, base: &Base, path: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
    let root = &p.files.root;
    if flags & O_TMPFILE_BIT != 0 {
        // A new unnamed file in that directory.
        root.resolve(base, path, libc::O_PATH | libc::O_DIRECTORY)?;
        return Err(Errno::EROFS);
    }
    let excl = flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL;
    let nofollow = if flags & libc::O_NOFOLLOW != 0 || excl {
        libc::O_NOFOLLOW
    } else {
        0
    };
    match root.resolve(base, path, libc::O_PATH | nofollow) {
        Ok(fd) => {
            if excl {
                return Err(Errno::EEXIST);
            }
            let t = file_type(&host_fstat(fd.as_raw_fd())?);
            if t == libc::S_IFDIR {
                return Err(Errno::EISDIR);
            }
            if flags & libc::O_DIRECTORY != 0 {
                return Err(Errno::ENOTDIR);
            }
            match t {
                libc::S_IFLNK => Err(Errno::ELOOP),
                libc::S_IFIFO => {
                    let keep = libc::O_ACCMODE
                        | libc::O_NONBLOCK
                        | libc::O_NOFOLLOW
                        | libc::O_NOCTTY
                        | libc::O_CLOEXEC;
                    // May block until a reader comes: no lock is held here.
                    root.resolve(base, path, flags & keep)
                }
                libc::S_IFSOCK => Err(Errno::ENXIO),
                libc::S_IFCHR | libc::S_IFBLK => Err(Errno::EACCES),
                // O_CREAT of a file that exists, to read it: nothing to write.
                libc::S_IFREG
                    if flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0 =>
                {
                    let keep = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
                    root.resolve(base, path, flags & keep | nofollow)
                }
                _ => Err(Errno::EROFS),
            }
        }
        Err(Errno::ENOENT) if flags & libc::O_CREAT != 0 => {
            // The directory is walked first (ENOENT, ENOTDIR), then the name would be created.
            let (_dir, last) = root.parent(base, path)?;
            match last {
                Last::Name { slash: false, .. } => Err(Errno::EROFS),
                _ => Err(Errno::EISDIR),
            }
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// stat, access, readlink

const STAT_FLAGS: i32 = libc::AT_SYMLINK_NOFOLLOW
    | libc::AT_NO_AUTOMOUNT
    | libc::AT_EMPTY_PATH
    | libc::AT_STATX_SYNC_TYPE;

pub fn sys_newfstatat(p: &FileCx<'_>, dirfd: i32, path: u64, buf: u64, flags: u64) -> SysResult {
    let flags = flags as i32;
    let path = read_path(p.user, path);
    if flags & !STAT_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let t = lookup(p, dirfd, &path?, flags, false)?;
    let st = t.stat()?;
    p.user.write(buf, stat_bytes(&st))?;
    Ok(0)
}

pub fn sys_statx(
    p: &FileCx<'_>,
    dirfd: i32,
    path: u64,
    flags: u64,
    mask: u64,
    buf: u64,
) -> SysResult {
    let flags = flags as i32;
    if flags & !STAT_FLAGS != 0
        || flags & libc::AT_STATX_SYNC_TYPE == libc::AT_STATX_SYNC_TYPE
        || mask & 0x8000_0000 != 0
    {
        return Err(Errno::EINVAL);
    }
    // A NULL path with AT_EMPTY_PATH is the empty path (Linux 6.11).
    let path = if path == 0 && flags & libc::AT_EMPTY_PATH != 0 {
        Vec::new()
    } else {
        read_path(p.user, path)?
    };
    let t = lookup(p, dirfd, &path, flags, false)?;
    let mut out = [0u8; 256];
    // SAFETY: statx writes one `struct statx` (256 bytes) into `out`; the path is a static empty C
    // string used with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            t.raw(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            mask as u32,
            out.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    p.user.write(buf, &out)?;
    Ok(0)
}

pub fn sys_faccessat(p: &FileCx<'_>, dirfd: i32, path: u64, mode: u64, flags: u64) -> SysResult {
    let (mode, flags) = (mode as i32, flags as i32);
    if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0
        || flags & !(libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0
    {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    let t = lookup(p, dirfd, &path, flags, false)?;
    let st = t.stat()?;
    let ft = file_type(&st);
    let fs_object = matches!(ft, libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK);
    if mode & libc::W_OK != 0 && fs_object && t.kind() == FileKind::InRoot {
        return Err(Errno::EROFS);
    }
    if mode & libc::X_OK != 0 && ft != libc::S_IFDIR && st.st_mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

pub fn sys_readlinkat(p: &FileCx<'_>, dirfd: i32, path: u64, buf: u64, size: u64) -> SysResult {
    if (size as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    let base = if path.is_empty() {
        None
    } else {
        Some(p.files.base(dirfd, &path)?)
    };
    // /proc/self/exe and /proc/PID/exe: the program's executable.
    let exe = base.as_ref().and_then(|b| {
        let name = final_name(&path)?;
        (name == b"exe").then_some(())?;
        let full = normalize(&p.files.root.joined(b, &path).ok()?);
        let pid_exe = format!("/proc/{}/exe", p.files.pid);
        (full == b"/proc/self/exe" || full == pid_exe.as_bytes()).then_some(())
    });
    let target: Vec<u8> = if exe.is_some() {
        p.files.exe_path.as_bytes().to_vec()
    } else {
        let t = lookup(p, dirfd, &path, libc::AT_SYMLINK_NOFOLLOW, true)?;
        if file_type(&t.stat()?) != libc::S_IFLNK {
            return Err(if path.is_empty() {
                Errno::ENOENT
            } else {
                Errno::EINVAL
            });
        }
        let mut out = vec![0u8; PATH_MAX];
        // SAFETY: readlinkat writes at most `out.len()` bytes into `out`; the empty path with an
        // O_PATH descriptor names the link itself.
        let n =
            unsafe { libc::readlinkat(t.raw(), c"".as_ptr(), out.as_mut_ptr().cast(), out.len()) };
        if n < 0 {
            return Err(Errno::last());
        }
        out.truncate(n as usize);
        out
    };
    let n = target.len().min(size as usize);
    p.user.write(buf, &target[..n])?;
    Ok(n as u64)
}

// ---------------------------------------------------------------------------------------------
// Calls that would change the file system.

/// A new name (mkdir, mknod, symlink, link's new name): Linux's `filename_create` on a read-only
/// mount. `dir_ok`: a trailing `/` is allowed (mkdir).
fn create(p: &FileCx<'_>, dirfd: i32, path: &[u8], dir_ok: bool) -> Errno {
    let answer = || -> Result<Errno, Errno> {
        let base = p.files.base(dirfd, path)?;
        let (dir, last) = p.files.root.parent(&base, path)?;
        Ok(match last {
            Last::Root | Last::Dot | Last::DotDot => Errno::EEXIST,
            Last::Name { name, slash } => {
                if name_exists(&dir, &name)? {
                    Errno::EEXIST
                } else if slash && !dir_ok {
                    Errno::ENOENT
                } else {
                    Errno::EROFS
                }
            }
        })
    };
    match answer() {
        Ok(e) | Err(e) => e,
    }
}

/// The directory of `path` and its last component (Linux's `filename_parentat`).
fn parent(p: &FileCx<'_>, dirfd: i32, path: &[u8]) -> Result<Last, Errno> {
    let base = p.files.base(dirfd, path)?;
    p.files.root.parent(&base, path).map(|(_, last)| last)
}

/// mkdir / mkdirat.
pub fn sys_mkdirat(p: &FileCx<'_>, dirfd: i32, path: u64) -> SysResult {
    let path = read_path(p.user, path)?;
    Err(create(p, dirfd, &path, true))
}

/// mknod / mknodat.
pub fn sys_mknodat(p: &FileCx<'_>, dirfd: i32, path: u64, mode: u64) -> SysResult {
    let path = read_path(p.user, path);
    match mode as u32 & libc::S_IFMT {
        libc::S_IFDIR => return Err(Errno::EPERM),
        0 | libc::S_IFREG | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {}
        _ => return Err(Errno::EINVAL),
    }
    Err(create(p, dirfd, &path?, false))
}

/// symlink / symlinkat.
pub fn sys_symlinkat(p: &FileCx<'_>, target: u64, dirfd: i32, path: u64) -> SysResult {
    let target = read_path(p.user, target)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let path = read_path(p.user, path)?;
    Err(create(p, dirfd, &path, false))
}

/// link / linkat.
pub fn sys_linkat(
    p: &FileCx<'_>,
    old_dirfd: i32,
    old: u64,
    new_dirfd: i32,
    new: u64,
    flags: u64,
) -> SysResult {
    let flags = flags as i32;
    if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old = read_path(p.user, old)?;
    let new = read_path(p.user, new);
    let follow = if flags & libc::AT_SYMLINK_FOLLOW != 0 {
        0
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    lookup(
        p,
        old_dirfd,
        &old,
        follow | (flags & libc::AT_EMPTY_PATH),
        false,
    )?;
    Err(create(p, new_dirfd, &new?, false))
}

/// unlink / rmdir / unlinkat.
pub fn sys_unlinkat(p: &FileCx<'_>, dirfd: i32, path: u64, flags: u64) -> SysResult {
    if flags & !(libc::AT_REMOVEDIR as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    let last = parent(p, dirfd, &path)?;
    Err(if flags != 0 {
        match last {
            Last::DotDot => Errno::ENOTEMPTY,
            Last::Dot => Errno::EINVAL,
            Last::Root => Errno::EBUSY,
            Last::Name { .. } => Errno::EROFS,
        }
    } else {
        match last {
            Last::Name { .. } => Errno::EROFS,
            _ => Errno::EISDIR,
        }
    })
}

const RENAME_NOREPLACE: u64 = 1;
const RENAME_EXCHANGE: u64 = 2;
const RENAME_WHITEOUT: u64 = 4;

/// rename / renameat / renameat2.
pub fn sys_renameat2(
    p: &FileCx<'_>,
    old_dirfd: i32,
    old: u64,
    new_dirfd: i32,
    new: u64,
    flags: u64,
) -> SysResult {
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
        || (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0 && flags & RENAME_EXCHANGE != 0)
    {
        return Err(Errno::EINVAL);
    }
    let old = read_path(p.user, old)?;
    let old_last = parent(p, old_dirfd, &old)?;
    let new = read_path(p.user, new)?;
    let new_last = parent(p, new_dirfd, &new)?;
    if !matches!(old_last, Last::Name { .. }) {
        return Err(Errno::EBUSY);
    }
    if !matches!(new_last, Last::Name { .. }) {
        return Err(if flags & RENAME_NOREPLACE != 0 {
            Errno::EEXIST
        } else {
            Errno::EBUSY
        });
    }
    Err(Errno::EROFS)
}

/// chmod / fchmodat / fchmodat2 (`flags`: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH).
pub fn sys_chmod(p: &FileCx<'_>, dirfd: i32, path: u64, flags: u64) -> SysResult {
    let flags = flags as i32;
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    Err(lookup(p, dirfd, &path, flags, false)?.change())
}

/// The open file of a descriptor for fchmod, fchown, ftruncate: EBADF for an O_PATH one.
fn file_for_change(p: &FileCx<'_>, fd: i32) -> Result<Arc<OpenFile>, Errno> {
    let f = p.files.get(fd)?;
    if f.path_only() {
        return Err(Errno::EBADF);
    }
    Ok(f)
}

/// fchmod.
pub fn sys_fchmod(p: &FileCx<'_>, fd: i32) -> SysResult {
    Err(Target::File(file_for_change(p, fd)?).change())
}

/// chown / lchown / fchownat (`flags`: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH).
pub fn sys_chown(p: &FileCx<'_>, dirfd: i32, path: u64, flags: u64) -> SysResult {
    sys_chmod(p, dirfd, path, flags)
}

/// fchown.
pub fn sys_fchown(p: &FileCx<'_>, fd: i32) -> SysResult {
    sys_fchmod(p, fd)
}

/// truncate.
pub fn sys_truncate(p: &FileCx<'_>, path: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    let t = lookup(p, libc::AT_FDCWD, &path, 0, false)?;
    match file_type(&t.stat()?) {
        libc::S_IFDIR => Err(Errno::EISDIR),
        libc::S_IFREG => Err(t.change()),
        _ => Err(Errno::EINVAL),
    }
}

/// ftruncate: the program's files are all read-only (EINVAL, as for any file not open for
/// writing), and so are the devices and stdio as far as it goes.
pub fn sys_ftruncate(p: &FileCx<'_>, fd: i32, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    file_for_change(p, fd)?;
    Err(Errno::EINVAL)
}

/// UTIME_NOW, UTIME_OMIT.
const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

fn nsec_valid(nsec: i64) -> bool {
    nsec == UTIME_NOW || nsec == UTIME_OMIT || (0..1_000_000_000).contains(&nsec)
}

/// utimensat (and futimens: a NULL path with a descriptor).
pub fn sys_utimensat(p: &FileCx<'_>, dirfd: i32, path: u64, times: u64, flags: u64) -> SysResult {
    let flags = flags as i32;
    let nsecs = if times == 0 {
        None
    } else {
        let mut raw = [0u8; 32];
        p.user.read(times, &mut raw)?;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i..i + 8]);
            i64::from_le_bytes(b)
        };
        let (a, m) = (word(8), word(24));
        if a == UTIME_OMIT && m == UTIME_OMIT {
            // Nothing to do: not even the path is looked at.
            return Ok(0);
        }
        Some((a, m))
    };
    let valid = || nsecs.is_none_or(|(a, m)| nsec_valid(a) && nsec_valid(m));
    if path == 0 && dirfd != libc::AT_FDCWD {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let f = file_for_change(p, dirfd)?;
        if !valid() {
            return Err(Errno::EINVAL);
        }
        return Err(Target::File(f).change());
    }
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(p.user, path)?;
    let t = lookup(p, dirfd, &path, flags, false)?;
    if !valid() {
        return Err(Errno::EINVAL);
    }
    Err(t.change())
}
