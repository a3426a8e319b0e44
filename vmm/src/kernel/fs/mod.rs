//! Files: the program's file descriptor table, a read-only root file system served from a host
//! directory, and the file system calls.
//!
//! Every guest path is resolved by the host kernel, confined to the root (`path`): `..` and
//! symlinks (absolute ones included) work as on Linux and can never leave the root. Files are
//! opened read-only on the host; every call that would change the file system answers what Linux
//! answers on a read-only mount (`names`). Descriptors 0, 1, 2 are popvmm's own stdin, stdout and
//! stderr, so the program's output is written, in order, exactly where popvmm's goes. Data moves
//! through bounded host buffers and `UserMemory` (`io`), so a bad guest pointer is an EFAULT (or a
//! short count, as on Linux), never a host fault.
//!
//! The descriptor table's lock is never held across a host call that may block (an open of a
//! FIFO, a read, a poll): a call takes what it needs from the table (a reference to an open file,
//! the directory a path starts from) and lets go.

mod io;
mod names;
mod path;
mod synthetic;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::errno::{Errno, SysResult};
use super::uaccess::{UserMemory, PATH_MAX};
use crate::sync::lock;

pub use self::io::{
    sys_getdents64, sys_pwrite, sys_read, sys_readv, sys_write, sys_writev, IO_CHUNK,
};
pub use self::names::{
    sys_chmod, sys_chown, sys_faccessat, sys_fchmod, sys_fchown, sys_ftruncate, sys_linkat,
    sys_mkdirat, sys_mknodat, sys_newfstatat, sys_openat, sys_readlinkat, sys_renameat2, sys_statx,
    sys_symlinkat, sys_truncate, sys_unlinkat, sys_utimensat,
};
pub use self::path::normalize;
use self::path::{Base, Root};

/// Errors of setting up the file system.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot open the root file system {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the root directory of {path}: errno {errno}")]
    RootDir { path: String, errno: i32 },
}

/// The program's files, owned by the origin's services: the descriptor table (with the working
/// directory), the root, the umask, and what `/proc/self` names.
#[derive(Debug)]
pub struct Files {
    table: Mutex<FdTable>,
    root: Root,
    umask: AtomicU32,
    /// The program's pid and executable, as `/proc/self/exe` and `/proc/PID/exe` show them.
    pub pid: u32,
    pub exe_path: String,
    /// The program's islands: its CPUs, as /proc and /sys show them (`synthetic.rs`).
    pub islands: usize,
    /// The program has a vDSO (`/proc/self/maps` shows it).
    pub vdso: bool,
}

impl Files {
    pub fn new(rootfs: &Path, pid: u32, exe_path: String, islands: usize) -> Result<Self, FsError> {
        let root = Root::open(rootfs).map_err(|source| FsError::Root {
            path: rootfs.display().to_string(),
            source,
        })?;
        let dir = root
            .resolve(&Base::Root, b"/", libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| FsError::RootDir {
                path: rootfs.display().to_string(),
                errno: e.0,
            })?;
        Ok(Self {
            table: Mutex::new(FdTable::new(OpenFile::in_root(dir, false))),
            root,
            umask: AtomicU32::new(0o022),
            pid,
            exe_path,
            islands,
            vdso: false,
        })
    }

    pub fn table(&self) -> MutexGuard<'_, FdTable> {
        lock(&self.table)
    }

    /// umask(2): sets the mask, returns the previous one.
    pub fn set_umask(&self, mask: u32) -> u32 {
        self.umask.swap(mask & 0o777, Ordering::Relaxed)
    }

    /// The open file of descriptor `fd` (EBADF).
    pub fn get(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        self.table().get(fd)
    }

    /// Where a path given with `dirfd` starts: the root for an absolute path (whatever `dirfd`
    /// is), else the working directory (AT_FDCWD) or `dirfd`'s file (EBADF).
    fn base(&self, dirfd: i32, path: &[u8]) -> Result<Base, Errno> {
        if path.starts_with(b"/") {
            return Ok(Base::Root);
        }
        let table = self.table();
        if dirfd == libc::AT_FDCWD {
            Ok(Base::Dir(Arc::clone(&table.cwd)))
        } else {
            table.get(dirfd).map(Base::Dir)
        }
    }

    /// The guest path of an open file (for a file mapping's name).
    pub fn path_of(&self, f: &OpenFile) -> String {
        let bytes = match &f.kind {
            FileKind::Stdio => format!("/dev/fd/{}", f.raw()).into_bytes(),
            FileKind::Device(name) => name.as_bytes().to_vec(),
            FileKind::Served(name) => name.as_bytes().to_vec(),
            FileKind::InRoot => self
                .root
                .guest_path_of(f.raw())
                .unwrap_or_else(|_| b"?".to_vec()),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Opens absolute guest path `path` read-only (to read a mapped file again).
    pub fn open_read_only(&self, path: &str) -> Result<OwnedFd, Errno> {
        self.root.resolve(
            &Base::Root,
            path.as_bytes(),
            libc::O_RDONLY | libc::O_NOCTTY,
        )
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

/// RLIMIT_NOFILE we report and enforce.
pub const MAX_FDS: usize = 1024;

#[derive(Debug)]
enum HostFd {
    /// popvmm's own 0, 1, 2: never closed by the program.
    Stdio(RawFd),
    Owned(OwnedFd),
}

/// What an open file is, for the calls that treat them differently.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileKind {
    /// popvmm's own stdin, stdout or stderr.
    Stdio,
    /// A character device popvmm serves from the host's own (its guest path).
    Device(&'static str),
    /// A file or directory of the root.
    InRoot,
    /// A file popvmm makes up (`synthetic.rs`; its guest path).
    Served(String),
}

/// An open file description (shared by dup'ed descriptors, like Linux's `struct file`).
#[derive(Debug)]
pub struct OpenFile {
    host: HostFd,
    kind: FileKind,
    regular: bool,
    /// Held across a read or write of a regular file done in several host calls (and a
    /// getdents64), so that it moves the file position as one, as Linux's `f_pos_lock` makes it.
    io: Mutex<()>,
}

impl OpenFile {
    fn new(host: HostFd, kind: FileKind, regular: bool) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            host,
            kind,
            regular,
            io: Mutex::new(()),
        })
    }

    fn in_root(fd: OwnedFd, regular: bool) -> Arc<OpenFile> {
        OpenFile::new(HostFd::Owned(fd), FileKind::InRoot, regular)
    }

    fn raw(&self) -> RawFd {
        match &self.host {
            HostFd::Stdio(fd) => *fd,
            HostFd::Owned(fd) => fd.as_raw_fd(),
        }
    }

    /// The host descriptor, if this is a file or directory of the root (a starting point of
    /// relative paths).
    fn in_root_fd(&self) -> Option<RawFd> {
        (self.kind == FileKind::InRoot).then(|| self.raw())
    }

    /// The host's open flags (F_GETFL).
    fn flags(&self) -> i32 {
        // SAFETY: F_GETFL on a descriptor we own; no memory is passed.
        unsafe { libc::fcntl(self.raw(), libc::F_GETFL) }
    }

    /// Opened with O_PATH: only a name, most calls answer EBADF.
    pub fn path_only(&self) -> bool {
        self.flags() & libc::O_PATH != 0
    }

    pub fn readable(&self) -> bool {
        let fl = self.flags();
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

    fn fstat(&self) -> Result<libc::stat, Errno> {
        host_fstat(self.raw())
    }
}

fn host_fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `struct stat` into `st`.
    let r = unsafe { libc::fstat(fd, &mut st) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(st)
}

/// The bytes of a `struct stat` (the host's x86-64 one is the guest's).
fn stat_bytes(st: &libc::stat) -> &[u8] {
    // SAFETY: `libc::stat` is plain old data; we view its bytes for as long as `st` lives.
    unsafe {
        std::slice::from_raw_parts(
            (st as *const libc::stat).cast::<u8>(),
            std::mem::size_of::<libc::stat>(),
        )
    }
}

fn file_type(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

#[derive(Debug, Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// The descriptor table and the working directory (a directory of the root, held open).
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
    cwd: Arc<OpenFile>,
}

impl FdTable {
    fn new(cwd: Arc<OpenFile>) -> Self {
        let stdio = |fd| {
            Some(Slot {
                file: OpenFile::new(HostFd::Stdio(fd), FileKind::Stdio, false),
                cloexec: false,
            })
        };
        Self {
            slots: vec![stdio(0), stdio(1), stdio(2)],
            cwd,
        }
    }

    /// Makes descriptor n the host file `stdio[n]` instead of popvmm's own n, for each one
    /// given: a library caller's stdin, stdout or stderr for the program (the demo captures the
    /// program's output this way). The program owns it from then on, as a file it opened; it is
    /// treated as popvmm's own stdio otherwise.
    pub fn set_stdio(&mut self, stdio: [Option<OwnedFd>; 3]) {
        for (n, file) in stdio.into_iter().enumerate() {
            let (Some(file), Some(slot)) = (file, self.slots.get_mut(n)) else {
                continue;
            };
            *slot = Some(Slot {
                file: OpenFile::new(HostFd::Owned(file), FileKind::Stdio, false),
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

    /// Takes descriptor `fd` out of the table; the caller drops it (closing the host descriptor
    /// when it is the last reference) after letting go of the table.
    fn close(&mut self, fd: i32) -> Result<Slot, Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Errno::EBADF)?;
        slot.take().ok_or(Errno::EBADF)
    }
}

/// A path argument: at most PATH_MAX - 1 bytes (ENAMETOOLONG), any bytes but NUL.
fn read_path(user: &UserMemory, addr: u64) -> Result<Vec<u8>, Errno> {
    let bytes = user.read_cstr(addr, PATH_MAX)?;
    if bytes.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(bytes)
}

pub fn sys_close(p: &FileCx<'_>, fd: i32) -> SysResult {
    // The file (and its host descriptor) goes when the last reference does, outside the lock.
    let slot = p.files.table().close(fd)?;
    drop(slot);
    Ok(0)
}

pub fn sys_lseek(p: &FileCx<'_>, fd: i32, off: u64, whence: u64) -> SysResult {
    let f = p.files.get(fd)?;
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(f.raw(), off as i64, whence as i32) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as u64)
    }
}

pub fn sys_fstat(p: &FileCx<'_>, fd: i32, buf: u64) -> SysResult {
    let st = p.files.get(fd)?.fstat()?;
    p.user.write(buf, stat_bytes(&st))?;
    Ok(0)
}

pub fn sys_dup(p: &FileCx<'_>, fd: i32) -> SysResult {
    let mut files = p.files.table();
    let f = files.get(fd)?;
    files.install(f, false, 0).map(|fd| fd as u64)
}

pub fn sys_dup3(p: &FileCx<'_>, old: i32, new: i32, flags: u64, dup2: bool) -> SysResult {
    let mut files = p.files.table();
    if !dup2 && flags & !(libc::O_CLOEXEC as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = files.get(old)?;
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
    let replaced = files.slots[idx].replace(Slot {
        file: f,
        cloexec: flags != 0,
    });
    drop(files);
    drop(replaced);
    Ok(new as u64)
}

pub fn sys_fcntl(p: &FileCx<'_>, fd: i32, cmd: u64, arg: u64) -> SysResult {
    let mut files = p.files.table();
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
            drop(files);
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
    let f = p.files.get(fd)?;
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

/// getcwd: the working directory's path as the host sees it below the root (symlink-free, as
/// Linux gives it).
pub fn sys_getcwd(p: &FileCx<'_>, buf: u64, size: u64) -> SysResult {
    let cwd = Arc::clone(&p.files.table().cwd);
    let mut bytes = p.files.root.guest_path_of(cwd.raw())?;
    bytes.push(0);
    if (size as usize) < bytes.len() {
        return Err(Errno::ERANGE);
    }
    p.user.write(buf, &bytes)?;
    Ok(bytes.len() as u64)
}

pub fn sys_chdir(p: &FileCx<'_>, path: u64) -> SysResult {
    let path = read_path(p.user, path)?;
    let base = p.files.base(libc::AT_FDCWD, &path)?;
    let dir = p
        .files
        .root
        .resolve(&base, &path, libc::O_PATH | libc::O_DIRECTORY)?;
    let new = OpenFile::in_root(dir, false);
    let old = std::mem::replace(&mut p.files.table().cwd, new);
    drop(old);
    Ok(0)
}

/// fchdir: the working directory becomes `fd`'s directory.
pub fn sys_fchdir(p: &FileCx<'_>, fd: i32) -> SysResult {
    let f = p.files.get(fd)?;
    if f.in_root_fd().is_none() || file_type(&f.fstat()?) != libc::S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    let old = std::mem::replace(&mut p.files.table().cwd, f);
    drop(old);
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
        let files = p.files.table();
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
    fn open_is_confined_to_the_root() {
        let dir = std::env::temp_dir().join(format!("popvmm-fs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
        std::fs::write(dir.join("sub/f"), b"x").expect("write");
        std::fs::write(dir.join("top"), b"t").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("escape")).expect("symlink");
        std::os::unix::fs::symlink("sub/deeper", dir.join("link")).expect("symlink");
        let files = Files::new(&dir, 1, "/x".into(), 1).expect("root");
        let root = &files.root;
        let open = |base: &Base, p: &str| root.resolve(base, p.as_bytes(), libc::O_RDONLY);
        assert!(open(&Base::Root, "/sub/f").is_ok());
        assert!(open(&Base::Root, "/sub/../../../sub/f").is_ok());
        // An absolute symlink resolves inside the root, where /etc/passwd does not exist.
        assert_eq!(open(&Base::Root, "/escape").err(), Some(Errno::ENOENT));
        assert_eq!(open(&Base::Root, "/nope").err(), Some(Errno::ENOENT));
        // `..` after a symlink is the parent of its target: link/.. is sub.
        assert!(open(&Base::Root, "/link/../f").is_ok());
        assert_eq!(open(&Base::Root, "/link/../top").err(), Some(Errno::ENOENT));
        // From a directory: `..` above it goes on from the root, never out of it.
        let sub = OpenFile::in_root(
            root.resolve(&Base::Root, b"/sub", libc::O_PATH)
                .expect("sub"),
            false,
        );
        let from_sub = Base::Dir(Arc::clone(&sub));
        assert!(open(&from_sub, "f").is_ok());
        assert!(open(&from_sub, "../top").is_ok());
        assert!(open(&from_sub, "../../../../top").is_ok());
        assert_eq!(open(&from_sub, "../escape").err(), Some(Errno::ENOENT));
        assert_eq!(root.guest_path_of(sub.raw()), Ok(b"/sub".to_vec()));
        // A file is no starting point.
        let f = OpenFile::in_root(
            root.resolve(&Base::Root, b"/top", libc::O_RDONLY)
                .expect("top"),
            true,
        );
        assert_eq!(open(&Base::Dir(f), "x").err(), Some(Errno::ENOTDIR));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
