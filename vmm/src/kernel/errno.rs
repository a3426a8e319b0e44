//! Linux errno values and the results of system calls; how a program ended.

/// The errnos a system call can return (Linux returns `-4095..=-1`; the C library takes any
/// other value as a result, not an error) and the only ones the island wire carries: an error
/// reply holding another value could not be sent, so [`Errno::linux`] makes it EIO.
pub const ERRNO_RANGE: std::ops::Range<i32> = 1..4096;

/// A Linux errno value, returned to the program as `-errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident),*) => { impl Errno { $(pub const $name: Errno = Errno(libc::$name);)* } };
}
errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    EBADF,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EEXIST,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EMFILE,
    ENOTTY,
    ESPIPE,
    EROFS,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ETIMEDOUT,
    EOPNOTSUPP,
    ENOTSUP,
    ELOOP,
    EXDEV,
    ECHILD,
    ENODEV,
    EPIPE,
    ENXIO,
    ENOTEMPTY,
    EBUSY
);

impl Errno {
    /// The errno of a failed host call (EIO if the host left none in range).
    pub fn last() -> Errno {
        Errno::from_io(&std::io::Error::last_os_error())
    }

    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno::linux(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// `e` if it is in [`ERRNO_RANGE`], else EIO: never 0 (a "success" that is an error) nor a
    /// value a program would take as a result.
    pub fn linux(e: i32) -> Errno {
        if ERRNO_RANGE.contains(&e) {
            Errno(e)
        } else {
            Errno::EIO
        }
    }
}

pub type SysResult = Result<u64, Errno>;

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + signal.
    pub fn shell_status(self) -> u8 {
        match self {
            ExitStatus::Code(c) => (c & 0xff) as u8,
            ExitStatus::Signal(s) => (128 + s) as u8,
        }
    }
}
