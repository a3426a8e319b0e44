//! Files: the program's file descriptor table, a read-only root file system served from a host
//! directory, and the file system calls.
//!
//! Every guest path is resolved with `openat2(RESOLVE_IN_ROOT)` against the root directory's fd, so
//! `..` and symlinks (absolute ones included) can never leave the root. Files are opened read-only on
//! the host; descriptors 0, 1, 2 are popvmm's own stdin, stdout and stderr, so the program's output is
//! written, in order, exactly where popvmm's goes (a library caller may give others instead:
//! [`FdTable::set_stdio`]). Data moves through host bounce buffers and
//! `UserMemory`, so a bad guest pointer is an EFAULT, never a host fault.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::errno::{Errno, SysResult};
use super::uaccess::{UserMemory, PATH_MAX};
use crate::sync::lock;

/// Errors of setting up the file system.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot open the root file system {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
}

/// The program's files, owned by the origin's services: the descriptor table (with the root and
/// working directory of path resolution), the umask, and what `/proc/self` names.
#[derive(Debug)]
pub struct Files {
    table: Mutex<FdTable>,
    umask: AtomicU32,
    /// The program's pid and executable, as `/proc/self/exe` and `/proc/PID/exe` show them.
    pub pid: u32,
    pub exe_path: String,
}

impl Files {
    pub fn new(rootfs: &Path, pid: u32, exe_path: String) -> Result<Self, FsError> {
        Ok(Self {
            table: Mutex::new(FdTable::new(rootfs)?),
            umask: AtomicU32::new(0o022),
            pid,
            exe_path,
        })
    }

    pub fn table(&self) -> MutexGuard<'_, FdTable> {
        lock(&self.table)
    }

    /// umask(2): sets the mask, returns the previous one.
    pub fn set_umask(&self, mask: u32) -> u32 {
        self.umask.swap(mask & 0o777, Ordering::Relaxed)
    }
}

/// What a file call works with: the program's files, and the memory of the island that serves
/// the call (on the origin, for a call made on another island, the buffers come through the
/// coherency protocol).
#[derive(Debug, Clone, Copy)]
pub struct FileCx<'a> {
    pub files: &'a Files,
    pub user: &'a UserMemory,
}

impl FileCx<'_> {
    fn files(&self) -> MutexGuard<'_, FdTable> {
        self.files.table()
    }
}

const AT_FDCWD: i32 = libc::AT_FDCWD;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;
/// Largest chunk moved per host call (bounce buffer size).
const CHUNK: usize = 1 << 20;
/// RLIMIT_NOFILE we report and enforce.
pub const MAX_FDS: usize = 1024;
const IOV_MAX: u64 = 1024;

#[derive(Debug)]
enum HostFd {
    /// popvmm's own 0, 1, 2: never closed by the program.
    Stdio(RawFd),
    Owned(OwnedFd),
}

/// An open file description (shared by dup'ed descriptors, like Linux's `struct file`).
#[derive(Debug)]
pub struct OpenFile {
    host: HostFd,
    /// The guest path it was opened by (absolute).
    path: String,
    regular: bool,
}

impl OpenFile {
    fn raw(&self) -> RawFd {
        match &self.host {
            HostFd::Stdio(fd) => *fd,
            HostFd::Owned(fd) => fd.as_raw_fd(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn readable(&self) -> bool {
        // SAFETY: F_GETFL on a descriptor we own; no memory is passed.
        let fl = unsafe { libc::fcntl(self.raw(), libc::F_GETFL) };
        fl >= 0 && (fl & libc::O_ACCMODE) != libc::O_WRONLY && (fl & libc::O_PATH) == 0
    }

    pub fn mappable(&self) -> bool {
        self.regular
    }

    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        // SAFETY: `buf` is a valid writable host buffer of `buf.len()` bytes.
        let n = unsafe { libc::pread(self.raw(), buf.as_mut_ptr().cast(), buf.len(), off as i64) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }

    fn read(&self, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if let Some(off) = off {
            return self.pread(buf, off);
        }
        // SAFETY: `buf` is a valid writable host buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes all of `data` (looping over short writes, as a blocking write to a pipe does).
    fn write_all(&self, mut data: &[u8]) -> Result<usize, Errno> {
        let total = data.len();
        while !data.is_empty() {
            // SAFETY: `data` is a valid host buffer of `data.len()` bytes.
            let n = unsafe { libc::write(self.raw(), data.as_ptr().cast(), data.len()) };
            if n < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return if total == data.len() {
                    Err(e)
                } else {
                    Ok(total - data.len())
                };
            }
            data = &data[n as usize..];
        }
        Ok(total)
    }

    fn fstat(&self) -> Result<Vec<u8>, Errno> {
        host_fstat(self.raw())
    }
}

fn host_fstat(fd: RawFd) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; std::mem::size_of::<libc::stat>()];
    // SAFETY: `buf` has room for one `struct stat`, which is what fstat writes.
    let r = unsafe { libc::fstat(fd, buf.as_mut_ptr().cast()) };
    if r < 0 {
        return Err(Errno::last());
    }
    // The host's x86-64 `struct stat` is the guest's: copy its bytes as they are.
    Ok(buf)
}

#[derive(Debug, Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// The descriptor table and the root/cwd of path resolution.
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
    root: OwnedFd,
    cwd: String,
}

/// Lexically normalises an absolute guest path (`.`, `..`, repeated slashes).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl FdTable {
    pub fn new(rootfs: &Path) -> Result<Self, FsError> {
        let dir = std::fs::File::open(rootfs).map_err(|source| FsError::Root {
            path: rootfs.display().to_string(),
            source,
        })?;
        let stdio = |fd| {
            Some(Slot {
                file: Arc::new(OpenFile {
                    host: HostFd::Stdio(fd),
                    path: format!("/dev/fd/{fd}"),
                    regular: false,
                }),
                cloexec: false,
            })
        };
        Ok(Self {
            slots: vec![stdio(0), stdio(1), stdio(2)],
            root: OwnedFd::from(dir),
            cwd: "/".into(),
        })
    }

    /// Makes descriptor n the host file `stdio[n]` instead of popvmm's own n, for each one
    /// given: a library caller's stdin, stdout or stderr for the program (the demo captures the
    /// program's output this way). The program owns it from then on, as a file it opened.
    pub fn set_stdio(&mut self, stdio: [Option<OwnedFd>; 3]) {
        for (n, file) in stdio.into_iter().enumerate() {
            let (Some(file), Some(slot)) = (file, self.slots.get_mut(n)) else {
                continue;
            };
            *slot = Some(Slot {
                file: Arc::new(OpenFile {
                    host: HostFd::Owned(file),
                    path: format!("/dev/fd/{n}"),
                    regular: false,
                }),
                cloexec: false,
            });
        }
    }

    pub fn get(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| Arc::clone(&s.file))
            .ok_or(Errno::EBADF)
    }

    fn slot_mut(&mut self, fd: i32) -> Result<&mut Slot, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)
    }

    fn install(&mut self, file: Arc<OpenFile>, cloexec: bool, min: usize) -> Result<i32, Errno> {
        let free = (min..MAX_FDS).find(|&i| self.slots.get(i).is_none_or(|s| s.is_none()));
        let i = free.ok_or(Errno::EMFILE)?;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(Slot { file, cloexec });
        Ok(i as i32)
    }

    fn close(&mut self, fd: i32) -> Result<(), Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Errno::EBADF)?;
        slot.take().map(|_| ()).ok_or(Errno::EBADF)
    }

    /// The absolute guest path named by `dirfd` + `path`.
    fn guest_path(&self, dirfd: i32, path: &str) -> Result<String, Errno> {
        if path.starts_with('/') {
            return Ok(path.to_string());
        }
        let base = if dirfd == AT_FDCWD {
            self.cwd.clone()
        } else {
            self.get(dirfd)?.path.clone()
        };
        Ok(format!("{base}/{path}"))
    }

    /// Opens a guest path on the host, confined to the root.
    fn open_host(&self, guest_path: &str, flags: i32) -> Result<OwnedFd, Errno> {
        let c = CString::new(guest_path.as_bytes()).map_err(|_| Errno::EINVAL)?;
        // struct open_how { flags, mode, resolve } (libc's is non-exhaustive).
        let how: [u64; 3] = [
            (flags | libc::O_CLOEXEC) as u64,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        ];
        // SAFETY: openat2 reads the NUL-terminated path and the `open_how` we pass with its size;
        // it returns a new descriptor that we take ownership of.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c.as_ptr(),
                how.as_ptr(),
                std::mem::size_of_val(&how),
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` is a fresh descriptor returned by openat2, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

fn read_path(user: &UserMemory, addr: u64) -> Result<String, Errno> {
    let bytes = user.read_cstr(addr, PATH_MAX)?;
    if bytes.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    String::from_utf8(bytes).map_err(|_| Errno::ENOENT)
}

/// Checks that the whole guest buffer is accessible before doing host I/O for it.
fn check_buf(p: &FileCx<'_>, addr: u64, len: u64, access: super::vma::Access) -> Result<(), Errno> {
    if p.user.layout().check(addr, len, access) {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// read / pread64.
pub fn sys_read(p: &FileCx<'_>, fd: i32, buf: u64, count: u64, off: Option<u64>) -> SysResult {
    let f = p.files().get(fd)?;
    if let Some(o) = off {
        if (o as i64) < 0 {
            return Err(Errno::EINVAL);
        }
    }
    let count = count.min(0x7fff_f000);
    check_buf(p, buf, count, super::vma::Access::Write)?;
    let mut done = 0u64;
    let mut bounce = vec![0u8; (count as usize).min(CHUNK)];
    while done < count {
        let want = ((count - done) as usize).min(CHUNK);
        let n = match f.read(&mut bounce[..want], off.map(|o| o + done)) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        p.user.write(buf + done, &bounce[..n])?;
        done += n as u64;
        // Only regular files are read in a loop; a pipe or terminal returns what it has.
        if n < want || !f.regular {
            break;
        }
    }
    Ok(done)
}

/// write / pwrite64 (files of the root are read-only: the host answers EBADF).
pub fn sys_write(p: &FileCx<'_>, fd: i32, buf: u64, count: u64) -> SysResult {
    let f = p.files().get(fd)?;
    let count = count.min(0x7fff_f000);
    check_buf(p, buf, count, super::vma::Access::Read)?;
    if count as usize <= CHUNK {
        let data = p.user.read_vec(buf, count as usize)?;
        return f.write_all(&data).map(|n| n as u64);
    }
    let mut done = 0u64;
    while done < count {
        let n = ((count - done) as usize).min(CHUNK);
        let data = p.user.read_vec(buf + done, n)?;
        let w = f.write_all(&data)?;
        done += w as u64;
        if w < n {
            break;
        }
    }
    Ok(done)
}

fn read_iovecs(p: &FileCx<'_>, iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if cnt > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let raw = p.user.read_vec(iov, cnt as usize * 16)?;
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for c in raw.chunks_exact(16) {
        let base = u64::from_le_bytes(c[0..8].try_into().map_err(|_| Errno::EFAULT)?);
        let len = u64::from_le_bytes(c[8..16].try_into().map_err(|_| Errno::EFAULT)?);
        total = total.checked_add(len).ok_or(Errno::EINVAL)?;
        if total > isize::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        v.push((base, len));
    }
    Ok(v)
}

/// writev: gathered into one host write, so concurrent writers never interleave inside it.
pub fn sys_writev(p: &FileCx<'_>, fd: i32, iov: u64, cnt: u64) -> SysResult {
    let f = p.files().get(fd)?;
    let vecs = read_iovecs(p, iov, cnt)?;
    // At most WRITEV_MAX bytes per call (a short write, as Linux may return): the gather buffer
    // is host memory.
    const WRITEV_MAX: u64 = 16 * CHUNK as u64;
    let mut data = Vec::new();
    for (base, len) in vecs {
        let len = len.min(WRITEV_MAX - data.len() as u64);
        check_buf(p, base, len, super::vma::Access::Read)?;
        data.extend_from_slice(&p.user.read_vec(base, len as usize)?);
    }
    f.write_all(&data).map(|n| n as u64)
}

pub fn sys_readv(p: &FileCx<'_>, fd: i32, iov: u64, cnt: u64, off: Option<u64>) -> SysResult {
    let f = p.files().get(fd)?;
    let vecs = read_iovecs(p, iov, cnt)?;
    let mut total = 0u64;
    for (base, len) in vecs {
        if len == 0 {
            continue;
        }
        check_buf(p, base, len, super::vma::Access::Write)?;
        let mut bounce = vec![0u8; (len as usize).min(CHUNK)];
        let n = f.read(&mut bounce, off.map(|o| o + total))?;
        p.user.write(base, &bounce[..n])?;
        total += n as u64;
        if n < bounce.len() {
            break;
        }
    }
    Ok(total)
}

/// Character devices programs commonly use, served by the host's own: they hold no host data.
/// Only /dev/null and /dev/zero may be opened for writing.
fn host_device(guest: &str) -> Option<(&'static str, bool)> {
    match guest {
        "/dev/null" => Some(("/dev/null", true)),
        "/dev/zero" => Some(("/dev/zero", true)),
        "/dev/urandom" => Some(("/dev/urandom", false)),
        "/dev/random" => Some(("/dev/random", false)),
        _ => None,
    }
}

fn open_device(host: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let c = CString::new(host).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open reads the NUL-terminated path; we own the returned descriptor.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` is a fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn sys_openat(p: &FileCx<'_>, dirfd: i32, path: u64, flags: u64) -> SysResult {
    let path = read_path(p.user, path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let flags = flags as i32;
    let writes =
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0;
    let mut files = p.files();
    let guest = normalize(&files.guest_path(dirfd, &path)?);
    if let Some((host, writable)) = host_device(&guest) {
        if writes && !writable {
            return Err(Errno::EACCES);
        }
        let acc = flags & (libc::O_ACCMODE | libc::O_NONBLOCK);
        let fd = open_device(host, acc)?;
        let file = Arc::new(OpenFile {
            host: HostFd::Owned(fd),
            path: guest,
            regular: false,
        });
        return files
            .install(file, flags & libc::O_CLOEXEC != 0, 0)
            .map(|fd| fd as u64);
    }
    // A read-only file system: anything that could write is refused as Linux does on one.
    if writes {
        return Err(Errno::EROFS);
    }
    let allowed = libc::O_DIRECTORY
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_PATH
        | libc::O_NOCTTY
        | libc::O_LARGEFILE
        | libc::O_NOATIME
        | libc::O_CLOEXEC;
    let fd = files.open_host(&guest, flags & allowed & !libc::O_NOATIME)?;
    let st = host_fstat(fd.as_raw_fd())?;
    let mode = u32::from_le_bytes(st[24..28].try_into().map_err(|_| Errno::EIO)?);
    let file = Arc::new(OpenFile {
        host: HostFd::Owned(fd),
        path: guest,
        regular: mode & libc::S_IFMT == libc::S_IFREG,
    });
    files
        .install(file, flags & libc::O_CLOEXEC != 0, 0)
        .map(|fd| fd as u64)
}

pub fn sys_close(p: &FileCx<'_>, fd: i32) -> SysResult {
    p.files().close(fd).map(|_| 0)
}

pub fn sys_lseek(p: &FileCx<'_>, fd: i32, off: u64, whence: u64) -> SysResult {
    let f = p.files().get(fd)?;
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(f.raw(), off as i64, whence as i32) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as u64)
    }
}

pub fn sys_fstat(p: &FileCx<'_>, fd: i32, buf: u64) -> SysResult {
    let st = p.files().get(fd)?.fstat()?;
    p.user.write(buf, &st)?;
    Ok(0)
}

/// pwrite64: stdio answers ESPIPE (a pipe or terminal), the read-only root's files EBADF.
pub fn sys_pwrite(p: &FileCx<'_>, fd: i32) -> SysResult {
    let f = p.files().get(fd)?;
    Err(if f.mappable() {
        Errno::EBADF
    } else {
        Errno::ESPIPE
    })
}

/// Opens `dirfd`/`path` with O_PATH for stat-like calls (AT_EMPTY_PATH: the dirfd itself).
fn open_for_stat(
    p: &FileCx<'_>,
    dirfd: i32,
    path: u64,
    flags: i32,
) -> Result<OwnedFdOrFile, Errno> {
    let path = read_path(p.user, path)?;
    let files = p.files();
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd != AT_FDCWD {
            return Ok(OwnedFdOrFile::File(files.get(dirfd)?));
        }
    }
    let guest = normalize(&files.guest_path(dirfd, if path.is_empty() { "." } else { &path })?);
    if let Some((host, _)) = host_device(&guest) {
        return Ok(OwnedFdOrFile::Fd(open_device(host, libc::O_PATH)?));
    }
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    Ok(OwnedFdOrFile::Fd(
        files.open_host(&guest, libc::O_PATH | nofollow)?,
    ))
}

enum OwnedFdOrFile {
    Fd(OwnedFd),
    File(Arc<OpenFile>),
}

impl OwnedFdOrFile {
    fn raw(&self) -> RawFd {
        match self {
            OwnedFdOrFile::Fd(f) => f.as_raw_fd(),
            OwnedFdOrFile::File(f) => f.raw(),
        }
    }
}

pub fn sys_newfstatat(p: &FileCx<'_>, dirfd: i32, path: u64, buf: u64, flags: u64) -> SysResult {
    let fd = open_for_stat(p, dirfd, path, flags as i32)?;
    let st = host_fstat(fd.raw())?;
    p.user.write(buf, &st)?;
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
    let fd = open_for_stat(p, dirfd, path, flags as i32)?;
    let mut out = [0u8; 256];
    // SAFETY: statx writes one `struct statx` (256 bytes) into `out`; the path is a static empty C
    // string used with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd.raw(),
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

pub fn sys_getdents64(p: &FileCx<'_>, fd: i32, buf: u64, count: u64) -> SysResult {
    let f = p.files().get(fd)?;
    let count = count.min(1 << 16) as usize;
    check_buf(p, buf, count as u64, super::vma::Access::Write)?;
    let mut bounce = vec![0u8; count];
    // SAFETY: getdents64 writes at most `count` bytes of records into `bounce`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, f.raw(), bounce.as_mut_ptr(), count) };
    if n < 0 {
        return Err(Errno::last());
    }
    p.user.write(buf, &bounce[..n as usize])?;
    Ok(n as u64)
}

pub fn sys_faccessat(p: &FileCx<'_>, dirfd: i32, path: u64, mode: u64, flags: u64) -> SysResult {
    let fd = open_for_stat(p, dirfd, path, flags as i32 & !libc::AT_EACCESS)?;
    let mode = mode as i32;
    if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
        return Err(Errno::EINVAL);
    }
    if mode & libc::W_OK != 0 {
        return Err(Errno::EROFS);
    }
    if mode & libc::X_OK != 0 {
        let st = host_fstat(fd.raw())?;
        let m = u32::from_le_bytes(st[24..28].try_into().map_err(|_| Errno::EIO)?);
        if m & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
    }
    Ok(0)
}

pub fn sys_readlinkat(p: &FileCx<'_>, dirfd: i32, path: u64, buf: u64, size: u64) -> SysResult {
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let path_s = read_path(p.user, path)?;
    let guest = normalize(&p.files().guest_path(dirfd, &path_s)?);
    let target: Vec<u8> = if guest == "/proc/self/exe"
        || guest == format!("/proc/{}/exe", p.files.pid)
    {
        p.files.exe_path.as_bytes().to_vec()
    } else {
        let fd = open_for_stat(p, dirfd, path, libc::AT_SYMLINK_NOFOLLOW)?;
        let mut out = vec![0u8; PATH_MAX];
        // SAFETY: readlinkat writes at most `out.len()` bytes into `out`; the empty path with an
        // O_PATH descriptor names the link itself.
        let n =
            unsafe { libc::readlinkat(fd.raw(), c"".as_ptr(), out.as_mut_ptr().cast(), out.len()) };
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

pub fn sys_dup(p: &FileCx<'_>, fd: i32) -> SysResult {
    let mut files = p.files();
    let f = files.get(fd)?;
    files.install(f, false, 0).map(|fd| fd as u64)
}

pub fn sys_dup3(p: &FileCx<'_>, old: i32, new: i32, flags: u64, dup2: bool) -> SysResult {
    let mut files = p.files();
    let f = files.get(old)?;
    if flags & !(libc::O_CLOEXEC as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    if old == new {
        return if dup2 {
            Ok(new as u64)
        } else {
            Err(Errno::EINVAL)
        };
    }
    let idx = usize::try_from(new)
        .ok()
        .filter(|&i| i < MAX_FDS)
        .ok_or(Errno::EBADF)?;
    if files.slots.len() <= idx {
        files.slots.resize(idx + 1, None);
    }
    files.slots[idx] = Some(Slot {
        file: f,
        cloexec: flags != 0,
    });
    Ok(new as u64)
}

pub fn sys_fcntl(p: &FileCx<'_>, fd: i32, cmd: u64, arg: u64) -> SysResult {
    let mut files = p.files();
    match cmd as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let f = files.get(fd)?;
            let min = usize::try_from(arg)
                .ok()
                .filter(|&m| m < MAX_FDS)
                .ok_or(Errno::EINVAL)?;
            files
                .install(f, cmd as i32 == libc::F_DUPFD_CLOEXEC, min)
                .map(|fd| fd as u64)
        }
        libc::F_GETFD => Ok(u64::from(files.slot_mut(fd)?.cloexec)),
        libc::F_SETFD => {
            files.slot_mut(fd)?.cloexec = arg & libc::FD_CLOEXEC as u64 != 0;
            Ok(0)
        }
        libc::F_GETFL | libc::F_SETFL => {
            let f = files.get(fd)?;
            // SAFETY: F_GETFL/F_SETFL on a descriptor we own take an integer argument.
            let r = unsafe { libc::fcntl(f.raw(), cmd as i32, arg as libc::c_int) };
            if r < 0 {
                Err(Errno::last())
            } else {
                Ok(r as u64)
            }
        }
        _ => {
            files.get(fd)?;
            Err(Errno::EINVAL)
        }
    }
}

pub fn sys_ioctl(p: &FileCx<'_>, fd: i32, req: u64, arg: u64) -> SysResult {
    let f = p.files().get(fd)?;
    // Terminal queries answer what popvmm's own descriptor answers (ENOTTY unless it is a tty).
    let size = match req {
        r if r == libc::TCGETS => 36,
        r if r == libc::TIOCGWINSZ => 8,
        _ => return Err(Errno::ENOTTY),
    };
    let mut out = [0u8; 64];
    // SAFETY: TCGETS and TIOCGWINSZ write at most 60 bytes into a 64-byte buffer.
    let r = unsafe { libc::ioctl(f.raw(), req as libc::Ioctl, out.as_mut_ptr()) };
    if r < 0 {
        return Err(Errno::last());
    }
    p.user.write(arg, &out[..size])?;
    Ok(0)
}

pub fn sys_getcwd(p: &FileCx<'_>, buf: u64, size: u64) -> SysResult {
    let cwd = p.files().cwd.clone();
    let mut bytes = cwd.into_bytes();
    bytes.push(0);
    if (size as usize) < bytes.len() {
        return Err(Errno::ERANGE);
    }
    p.user.write(buf, &bytes)?;
    Ok(bytes.len() as u64)
}

pub fn sys_chdir(p: &FileCx<'_>, path: u64) -> SysResult {
    let path = read_path(p.user, path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let mut files = p.files();
    let guest = normalize(&files.guest_path(AT_FDCWD, &path)?);
    files.open_host(&guest, libc::O_PATH | libc::O_DIRECTORY)?;
    files.cwd = guest;
    Ok(0)
}

/// poll / ppoll on the program's descriptors (timeout in milliseconds, negative: forever).
pub fn sys_poll(p: &FileCx<'_>, fds: u64, nfds: u64, timeout_ms: i32) -> SysResult {
    if nfds > MAX_FDS as u64 {
        return Err(Errno::EINVAL);
    }
    let raw = p.user.read_vec(fds, nfds as usize * 8)?;
    let mut host: Vec<libc::pollfd> = Vec::with_capacity(nfds as usize);
    // Keep the files alive (and their host descriptors valid) during the host poll.
    let mut held = Vec::with_capacity(nfds as usize);
    let mut invalid = vec![false; nfds as usize];
    {
        let files = p.files();
        for (i, c) in raw.chunks_exact(8).enumerate() {
            let fd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let events = i16::from_le_bytes([c[4], c[5]]);
            let hfd = if fd < 0 {
                -1
            } else {
                match files.get(fd) {
                    Ok(f) => {
                        let r = f.raw();
                        held.push(f);
                        r
                    }
                    Err(_) => {
                        invalid[i] = true;
                        -1
                    }
                }
            };
            host.push(libc::pollfd {
                fd: hfd,
                events,
                revents: 0,
            });
        }
    }
    let timeout = if invalid.iter().any(|&b| b) {
        0
    } else {
        timeout_ms
    };
    // SAFETY: `host` is a valid array of `host.len()` pollfd structures.
    let n = unsafe { libc::poll(host.as_mut_ptr(), host.len() as libc::nfds_t, timeout) };
    if n < 0 {
        return Err(Errno::last());
    }
    drop(held);
    let mut out = raw;
    let mut ready = 0u64;
    for (i, h) in host.iter().enumerate() {
        let revents = if invalid[i] {
            libc::POLLNVAL
        } else {
            h.revents
        };
        if revents != 0 {
            ready += 1;
        }
        out[i * 8 + 6..i * 8 + 8].copy_from_slice(&revents.to_le_bytes());
    }
    p.user.write(fds, &out)?;
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(normalize("/../../etc"), "/etc");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn open_is_confined_to_the_root() {
        let dir = std::env::temp_dir().join(format!("popvmm-fs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/f"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("escape")).expect("symlink");
        let t = FdTable::new(&dir).expect("root");
        assert!(t.open_host("/sub/f", libc::O_RDONLY).is_ok());
        assert!(t.open_host("/sub/../../../sub/f", libc::O_RDONLY).is_ok());
        // An absolute symlink resolves inside the root, where /etc/passwd does not exist.
        assert_eq!(
            t.open_host("/escape", libc::O_RDONLY).err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(
            t.open_host("/nope", libc::O_RDONLY).err(),
            Some(Errno::ENOENT)
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
