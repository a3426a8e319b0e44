//! A minimal userfaultfd: exactly what the DSM layer needs, on raw ioctls (the kernel's uAPI is
//! small and stable; the `userfaultfd` crate needs libclang to build and has no `UFFDIO_COPY` with
//! write protection).
//!
//! Faults from kernel mode must be delivered too: KVM resolves a guest access to island memory with
//! `get_user_pages` from the vCPU thread, and the island kernel's system calls copy to and from
//! guest memory on host threads. So the descriptor is created without `UFFD_USER_MODE_ONLY`, which
//! needs root (or `CAP_SYS_PTRACE`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFDIO: u64 = 0xAA;
const UFFD_API: u64 = 0xAA;

const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}
const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}

#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `struct uffd_msg` (32 bytes); only the page fault member of its union is used.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct UffdMsg {
    event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    flags: u64,
    address: u64,
    ptid: u32,
    pad: u32,
}

const UFFDIO_API: u64 = iowr(0x3F, std::mem::size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = iowr(0x00, std::mem::size_of::<UffdioRegister>());
const UFFDIO_UNREGISTER: u64 = ior(0x01, std::mem::size_of::<UffdioRange>());
const UFFDIO_WAKE: u64 = ior(0x02, std::mem::size_of::<UffdioRange>());
const UFFDIO_COPY: u64 = iowr(0x03, std::mem::size_of::<UffdioCopy>());
const UFFDIO_ZEROPAGE: u64 = iowr(0x04, std::mem::size_of::<UffdioZeropage>());
const UFFDIO_WRITEPROTECT: u64 = iowr(0x06, std::mem::size_of::<UffdioWriteprotect>());

const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// A page fault reported by the userfaultfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address (not page aligned).
    pub addr: u64,
    /// A write (to a missing or to a write-protected page).
    pub write: bool,
    /// A write to a write-protected page (otherwise: the page is missing).
    pub write_protected: bool,
    /// The faulting host thread.
    pub tid: u32,
}

/// An open userfaultfd with missing-page and write-protect tracking.
#[derive(Debug)]
pub struct Userfaultfd {
    fd: OwnedFd,
}

fn ioctl<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, exclusively borrowed struct of the layout the request expects
    // (each request constant is built from the size of the struct passed with it).
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Userfaultfd {
    /// Opens a non-blocking userfaultfd that reports write-protect faults and faulting threads.
    pub fn new() -> io::Result<Self> {
        // SAFETY: a plain system call with flags; it returns a new descriptor or -1.
        let raw =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID,
            ioctls: 0,
        };
        ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api)?;
        Ok(Self { fd })
    }

    /// Tracks missing pages and write protection in `[start, start+len)` (host addresses, page
    /// aligned, one or more private anonymous mappings).
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(self.fd.as_raw_fd(), UFFDIO_REGISTER, &mut reg)
    }

    pub fn unregister(&self, start: u64, len: u64) -> io::Result<()> {
        let mut range = UffdioRange { start, len };
        ioctl(self.fd.as_raw_fd(), UFFDIO_UNREGISTER, &mut range)
    }

    /// Installs a copy of `src` (one page) at `dst`, read-only (write-protected) or writable, and
    /// wakes the threads waiting on it.
    ///
    /// # Safety
    /// `src` must point to `len` readable bytes.
    pub unsafe fn copy(
        &self,
        dst: u64,
        src: *const u8,
        len: u64,
        writable: bool,
    ) -> io::Result<()> {
        // SAFETY: as this function's contract.
        match unsafe { self.uffdio_copy(dst, src, len, writable) }.0 {
            // Another fault on the same page raced us and the page is there: wake its waiters.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.wake(dst, len),
            r => r,
        }
    }

    /// One UFFDIO_COPY (read-only pages keep write protection): the ioctl's result and the
    /// `copy` field the kernel fills in (bytes copied, or a negative errno).
    ///
    /// # Safety
    /// `src` must point to `len` readable bytes.
    unsafe fn uffdio_copy(
        &self,
        dst: u64,
        src: *const u8,
        len: u64,
        writable: bool,
    ) -> (io::Result<()>, i64) {
        let mut copy = UffdioCopy {
            dst,
            src: src as u64,
            len,
            mode: if writable { 0 } else { UFFDIO_COPY_MODE_WP },
            copy: 0,
        };
        let result = ioctl(self.fd.as_raw_fd(), UFFDIO_COPY, &mut copy);
        (result, copy.copy)
    }

    /// Copies `len` bytes (whole pages) from `src` to the missing pages at `dst` in one call, as
    /// [`Userfaultfd::copy`] does one page, and returns how many bytes the kernel copied (those
    /// pages are installed and their waiters woken). Less than `len` when it stopped at a page
    /// already there (EEXIST) or at a layout change (EAGAIN), or on any other error: the caller
    /// goes on page by page from there, which reports what needs reporting.
    ///
    /// # Safety
    /// `src` must point to `len` readable bytes.
    pub unsafe fn copy_run(&self, dst: u64, src: *const u8, len: u64, writable: bool) -> u64 {
        // SAFETY: as this function's contract.
        let (result, copied) = unsafe { self.uffdio_copy(dst, src, len, writable) };
        match result {
            Ok(()) => len,
            // A partial copy fails with EAGAIN and says in `copy` how far it went; a failure at
            // the first page leaves a negative errno there.
            Err(_) => u64::try_from(copied).unwrap_or(0).min(len),
        }
    }

    /// Installs a zero page at `dst` (writable) and wakes its waiters.
    pub fn zero(&self, dst: u64, len: u64) -> io::Result<()> {
        let mut z = UffdioZeropage {
            range: UffdioRange { start: dst, len },
            mode: 0,
            zeropage: 0,
        };
        match ioctl(self.fd.as_raw_fd(), UFFDIO_ZEROPAGE, &mut z) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.wake(dst, len),
            r => r,
        }
    }

    /// Write-protects (`true`) or unprotects `[start, start+len)`. Unprotecting wakes the threads
    /// waiting on it; protecting does not (nobody waits for that).
    pub fn write_protect(&self, start: u64, len: u64, protect: bool) -> io::Result<()> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start, len },
            // The kernel refuses DONTWAKE with WP: protecting never wakes anyone anyway.
            mode: if protect {
                UFFDIO_WRITEPROTECT_MODE_WP
            } else {
                0
            },
        };
        ioctl(self.fd.as_raw_fd(), UFFDIO_WRITEPROTECT, &mut wp)
    }

    /// Wakes the threads waiting on `[start, start+len)` (they retry their access).
    pub fn wake(&self, start: u64, len: u64) -> io::Result<()> {
        let mut range = UffdioRange { start, len };
        ioctl(self.fd.as_raw_fd(), UFFDIO_WAKE, &mut range)
    }

    /// Reads the pending faults, without blocking, into `out` (cleared first).
    pub fn read_faults(&self, out: &mut Vec<Fault>) -> io::Result<()> {
        out.clear();
        let mut msgs = [UffdMsg::default(); 16];
        loop {
            // SAFETY: `msgs` is a writable buffer of exactly the given size; the kernel writes
            // whole `uffd_msg` records into it.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr() as *mut libc::c_void,
                    std::mem::size_of_val(&msgs),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(()),
                    Some(libc::EINTR) => continue,
                    _ => Err(e),
                };
            }
            let count = n as usize / std::mem::size_of::<UffdMsg>();
            for m in &msgs[..count] {
                if m.event == UFFD_EVENT_PAGEFAULT {
                    out.push(Fault {
                        addr: m.address,
                        write: m.flags & UFFD_PAGEFAULT_FLAG_WRITE != 0,
                        write_protected: m.flags & UFFD_PAGEFAULT_FLAG_WP != 0,
                        tid: m.ptid,
                    });
                }
            }
            if count < msgs.len() {
                return Ok(());
            }
        }
    }
}

impl AsRawFd for Userfaultfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const PAGE: u64 = 4096;

    fn mapping(len: u64) -> u64 {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as u64
    }

    /// Serves faults until `stop` turns non-zero: missing pages get a read-only page full of
    /// 7s, write-protect faults are lifted.
    fn serve(uffd: Arc<Userfaultfd>, stop: Arc<AtomicU64>, seen: Arc<AtomicU64>) {
        let page = [7u8; PAGE as usize];
        let mut faults = Vec::new();
        while stop.load(Ordering::SeqCst) == 0 {
            uffd.read_faults(&mut faults).expect("read");
            for f in &faults {
                let base = f.addr & !(PAGE - 1);
                seen.fetch_add(1, Ordering::SeqCst);
                if f.write_protected {
                    uffd.write_protect(base, PAGE, false).expect("unprotect");
                } else {
                    // SAFETY: `page` is PAGE readable bytes.
                    unsafe { uffd.copy(base, page.as_ptr(), PAGE, false) }.expect("copy");
                }
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn missing_then_write_protect_then_dropped() {
        let Ok(uffd) = Userfaultfd::new() else {
            crate::diag!("userfaultfd unavailable here (not root?): skipped");
            return;
        };
        let uffd = Arc::new(uffd);
        let base = mapping(4 * PAGE);
        uffd.register(base, 4 * PAGE).expect("register");
        let stop = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let server = {
            let (u, s, n) = (Arc::clone(&uffd), Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || serve(u, s, n))
        };
        let p = base as *mut u8;
        // SAFETY: the mapping is ours and stays mapped; faults are served by `server`.
        let v = unsafe { std::ptr::read_volatile(p.add(10)) };
        assert_eq!(v, 7, "a read fault installed the page");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(p.add(10), 9) };
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "the write hit the write protection"
        );
        // SAFETY: as above.
        assert_eq!(unsafe { std::ptr::read_volatile(p.add(10)) }, 9);
        // Write-protect again, then drop: the next read is a missing fault again.
        uffd.write_protect(base, PAGE, true).expect("protect");
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(p.add(11), 1) };
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        // SAFETY: dropping our own page.
        unsafe {
            libc::madvise(
                base as *mut libc::c_void,
                PAGE as usize,
                libc::MADV_DONTNEED,
            )
        };
        // SAFETY: as above.
        assert_eq!(unsafe { std::ptr::read_volatile(p.add(10)) }, 7);
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        stop.store(1, Ordering::SeqCst);
        server.join().expect("server");
    }
}
