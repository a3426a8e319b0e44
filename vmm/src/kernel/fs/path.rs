//! Path resolution, confined to the root, done by the host kernel.
//!
//! A guest path is never normalised as text: `..` after a symlink goes to the parent of the
//! link's target, as on Linux. An absolute path is resolved with `openat2(RESOLVE_IN_ROOT)` from
//! the root directory's fd. A relative one is resolved from its directory's fd (the working
//! directory, or a dirfd: both are host directory fds) with `RESOLVE_BENEATH`; when it has to
//! leave that directory (a `..` above it, an absolute symlink), the host answers EXDEV and the path
//! is resolved again from the root, appended to the directory's own path (which the host gives,
//! symlink-free, from `/proc/self/fd`). Either way nothing escapes the root, and magic links
//! (`/proc/*/fd`) are never followed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::OpenFile;
use crate::kernel::errno::Errno;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// The root file system: a host directory, and its path on the host (to turn a host path of a
/// file inside it back into the guest's path).
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    host: Vec<u8>,
}

/// Where a path starts: the root (absolute paths), or a directory of the program (relative ones).
#[derive(Debug, Clone)]
pub enum Base {
    Root,
    Dir(Arc<OpenFile>),
}

/// The last component of a path, as the calls that create or remove a name see it (Linux's
/// `LAST_NORM`, `LAST_DOT`, `LAST_DOTDOT`, `LAST_ROOT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Last {
    /// A name; `slash`: the path ended with a `/` after it.
    Name {
        name: Vec<u8>,
        slash: bool,
    },
    Dot,
    DotDot,
    Root,
}

/// The host path of a descriptor (`/proc/self/fd/N`).
fn host_path(fd: RawFd) -> Result<Vec<u8>, Errno> {
    let link = format!("/proc/self/fd/{fd}");
    let p = std::fs::read_link(&link).map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
}

fn cstring(path: &[u8]) -> Result<CString, Errno> {
    // read_path stops at the NUL: a path never holds one.
    CString::new(path).map_err(|_| Errno::EINVAL)
}

/// openat2(dirfd, path, flags, resolve): a new descriptor that we own.
fn openat2(dirfd: RawFd, path: &[u8], flags: i32, resolve: u64) -> Result<OwnedFd, Errno> {
    let c = cstring(path)?;
    // struct open_how { flags, mode, resolve } (libc's is non-exhaustive).
    let how: [u64; 3] = [(flags | libc::O_CLOEXEC) as u64, 0, resolve];
    loop {
        // SAFETY: openat2 reads the NUL-terminated path and the `open_how` we pass with its size;
        // it returns a new descriptor that we take ownership of.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                how.as_ptr(),
                std::mem::size_of_val(&how),
            )
        };
        if fd >= 0 {
            // SAFETY: `fd` is a fresh descriptor returned by openat2, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = Errno::last();
        // EAGAIN: a rename raced with the resolution (RESOLVE_BENEATH/IN_ROOT refuse to guess).
        if e != Errno::EAGAIN || flags & libc::O_NONBLOCK != 0 {
            return Err(e);
        }
    }
}

/// File systems through which a guest could reach popvmm's own process or the host's kernel
/// (`/proc/self/mem`, sysfs, debugfs...), when the root holds them (say `--rootfs /`): never
/// served, whatever path leads there. What a program may read of /proc and /sys, popvmm serves
/// itself from the island kernel's view (`synthetic.rs`).
const HOST_INTERNAL_FS: [i64; 13] = [
    0x9fa0,                 // proc
    0x6265_6572,            // sysfs
    0x6462_6720,            // debugfs
    0x7472_6163,            // tracefs
    0x7363_6673,            // securityfs
    0xcafe_4a11,            // bpf
    0x6367_7270,            // cgroup2
    0x0027_e0eb,            // cgroup
    0x1cd1,                 // devpts
    0xf97c_ff8c_u32 as i64, // selinuxfs
    0x6165_676c,            // pstore
    0x6265_6570,            // configfs
    0x6573_5543,            // fusectl
];

/// EACCES for a descriptor on one of [`HOST_INTERNAL_FS`].
fn host_internals_refused(fd: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: an all-zero statfs is a valid value for fstatfs to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs into `st` for a descriptor we own.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Errno::last());
    }
    if HOST_INTERNAL_FS.contains(&(st.f_type as i64)) {
        return Err(Errno::EACCES);
    }
    Ok(())
}

impl Root {
    pub fn open(rootfs: &std::path::Path) -> std::io::Result<Root> {
        let dir = std::fs::File::open(rootfs)?;
        let fd = OwnedFd::from(dir);
        // The host's own name for it (as /proc/self/fd gives its files' names), or, without
        // /proc, its canonical path.
        let host = match host_path(fd.as_raw_fd()) {
            Ok(h) => h,
            Err(_) => {
                std::os::unix::ffi::OsStrExt::as_bytes(std::fs::canonicalize(rootfs)?.as_os_str())
                    .to_vec()
            }
        };
        Ok(Root { fd, host })
    }

    /// The guest path of a host directory or file inside the root (`/` for the root itself).
    pub fn guest_path_of(&self, fd: RawFd) -> Result<Vec<u8>, Errno> {
        let host = host_path(fd)?;
        if host.ends_with(b" (deleted)") {
            return Err(Errno::ENOENT);
        }
        if self.host == b"/" {
            return Ok(host);
        }
        match host.strip_prefix(self.host.as_slice()) {
            Some([]) => Ok(b"/".to_vec()),
            Some(rest) if rest.starts_with(b"/") => Ok(rest.to_vec()),
            // Not below the root (cannot happen for a descriptor opened through it).
            _ => Err(Errno::ENOENT),
        }
    }

    /// Opens `path` from `base` on the host with `flags` (O_CLOEXEC added), confined to the root.
    /// Blocks as the host's open does (a FIFO without a writer): never call it holding a lock.
    pub fn resolve(&self, base: &Base, path: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
        let fd = self.resolve_any(base, path, flags)?;
        host_internals_refused(&fd)?;
        Ok(fd)
    }

    fn resolve_any(&self, base: &Base, path: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let dir = match base {
            _ if path.starts_with(b"/") => {
                return openat2(
                    self.fd.as_raw_fd(),
                    path,
                    flags,
                    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
                )
            }
            Base::Root => {
                return openat2(
                    self.fd.as_raw_fd(),
                    path,
                    flags,
                    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
                )
            }
            Base::Dir(dir) => dir,
        };
        // Only directories opened through the root are starting points (popvmm's own stdio is
        // not, whatever it is on the host).
        let Some(dirfd) = dir.in_root_fd() else {
            return Err(Errno::ENOTDIR);
        };
        match openat2(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) {
            Err(Errno::EXDEV) => {
                // The path leaves the directory: resolve it from the root, after the directory's
                // own (symlink-free) path, so that its `..` are the real parents.
                let mut full = self.guest_path_of(dirfd)?;
                full.push(b'/');
                full.extend_from_slice(path);
                if full.len() >= crate::kernel::uaccess::PATH_MAX {
                    return Err(Errno::ENAMETOOLONG);
                }
                openat2(
                    self.fd.as_raw_fd(),
                    &full,
                    flags,
                    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
                )
            }
            r => r,
        }
    }

    /// The guest path `path` names from `base`, joined as text (for the names popvmm serves
    /// itself, which no host file backs: `/dev/null`, `/proc/self/exe`).
    pub fn joined(&self, base: &Base, path: &[u8]) -> Result<Vec<u8>, Errno> {
        match base {
            _ if path.starts_with(b"/") => Ok(path.to_vec()),
            Base::Root => {
                let mut p = b"/".to_vec();
                p.extend_from_slice(path);
                Ok(p)
            }
            Base::Dir(dir) => {
                let fd = dir.in_root_fd().ok_or(Errno::ENOTDIR)?;
                let mut p = self.guest_path_of(fd)?;
                p.push(b'/');
                p.extend_from_slice(path);
                Ok(p)
            }
        }
    }

    /// Splits `path` into the directory that holds its last component (opened, O_PATH) and that
    /// component, as Linux's `filename_parentat` does for the calls that create or remove a name.
    pub fn parent(&self, base: &Base, path: &[u8]) -> Result<(OwnedFd, Last), Errno> {
        let (dir, last) = split_last(path)?;
        let dir_fd = self.resolve(base, &dir, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((dir_fd, last))
    }
}

/// `path` as (its directory, its last component); ENOENT for an empty path.
pub fn split_last(path: &[u8]) -> Result<(Vec<u8>, Last), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let trimmed_len = path.len() - path.iter().rev().take_while(|&&b| b == b'/').count();
    if trimmed_len == 0 {
        return Ok((b"/".to_vec(), Last::Root));
    }
    let slash = trimmed_len < path.len();
    let trimmed = &path[..trimmed_len];
    let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => {
            let dir = if trimmed[..i].iter().all(|&b| b == b'/') {
                b"/".to_vec()
            } else {
                trimmed[..i].to_vec()
            };
            (dir, &trimmed[i + 1..])
        }
        None => (b".".to_vec(), trimmed),
    };
    let last = match name {
        b"." => Last::Dot,
        b".." => Last::DotDot,
        _ => Last::Name {
            name: name.to_vec(),
            slash,
        },
    };
    Ok((dir, last))
}

/// Lexically normalises an absolute guest path (`.`, `..`, repeated slashes). Only for matching
/// the names popvmm serves itself: files are resolved by the host.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// fstatat(dir, name, AT_SYMLINK_NOFOLLOW) of one component (no `/`, not `.` or `..`): whether
/// it exists. A single component below a directory of the root cannot leave it.
pub fn name_exists(dir: &OwnedFd, name: &[u8]) -> Result<bool, Errno> {
    let c = cstring(name)?;
    // SAFETY: an all-zero `stat` is a valid value for fstatat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat reads the NUL-terminated name and writes one `struct stat`.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::ENOENT => Ok(false),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"/a/./b//c/../d"), b"/a/b/d");
        assert_eq!(normalize(b"/../../etc"), b"/etc");
        assert_eq!(normalize(b"/"), b"/");
    }

    #[test]
    fn split_last_components() {
        let name = |n: &[u8], slash| Last::Name {
            name: n.to_vec(),
            slash,
        };
        assert_eq!(
            split_last(b"a").unwrap(),
            (b".".to_vec(), name(b"a", false))
        );
        assert_eq!(
            split_last(b"a/b//").unwrap(),
            (b"a".to_vec(), name(b"b", true))
        );
        assert_eq!(
            split_last(b"/x").unwrap(),
            (b"/".to_vec(), name(b"x", false))
        );
        assert_eq!(
            split_last(b"//x").unwrap(),
            (b"/".to_vec(), name(b"x", false))
        );
        assert_eq!(split_last(b"///").unwrap(), (b"/".to_vec(), Last::Root));
        assert_eq!(split_last(b"a/..").unwrap(), (b"a".to_vec(), Last::DotDot));
        assert_eq!(split_last(b".").unwrap(), (b".".to_vec(), Last::Dot));
        assert_eq!(split_last(b""), Err(Errno::ENOENT));
    }
}
