//! Moving data between the program's memory and its files: read, pread64, readv, write, pwrite64,
//! writev, getdents64.
//!
//! Data goes through a host buffer of at most [`IO_CHUNK`] bytes per call in flight, whatever the
//! count: a call over a larger count loops (a regular file under the file's `io` lock, so that it
//! moves the position as one call, as Linux's `f_pos_lock` makes it). A write or
//! writev of at most `IO_CHUNK` bytes is one host write, so it is as atomic as Linux makes it (a
//! pipe write of at most PIPE_BUF bytes never interleaves with another); larger ones to a pipe may
//! interleave, as on Linux.
//!
//! A buffer that is only partly accessible is handled as Linux does: `access_ok` first (the range
//! must lie in the user part of the address space: EFAULT), then the copy goes as far as the first
//! fault. For a regular file or a device that is a short count (EFAULT when not one byte moved);
//! for a pipe or terminal, Linux copies in units (a page into a pipe, 2 KiB into a terminal) and
//! answers EFAULT when the first unit faults, which is what is done here.

use std::os::fd::RawFd;
use std::sync::MutexGuard;

use super::{file_type, FileCx, FileKind, OpenFile};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::uaccess::{access_ok, MAX_RW_COUNT};
use crate::kernel::vma::Access;
use crate::sync::lock;

/// The most bytes of host buffer one call has in flight.
pub const IO_CHUNK: usize = 64 << 10;
/// UIO_MAXIOV.
const IOV_MAX: u64 = 1024;
/// What a pipe write copies at a time (a page), and a terminal write (its default chunk).
const PIPE_UNIT: u64 = 4096;
const TTY_UNIT: u64 = 2048;

/// How a file takes a partly accessible buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Regular files, directories, devices: byte-exact short counts.
    File,
    /// Pipes, FIFOs and sockets.
    Pipe,
    /// Terminals and other character devices served by the host (popvmm's own stdio).
    Tty,
}

fn stream_of(f: &OpenFile) -> Stream {
    if f.regular || matches!(f.kind, FileKind::Device(_)) {
        return Stream::File;
    }
    match f.fstat().map(|st| file_type(&st)) {
        Ok(libc::S_IFIFO) | Ok(libc::S_IFSOCK) => Stream::Pipe,
        Ok(libc::S_IFCHR) => Stream::Tty,
        _ => Stream::File,
    }
}

/// The `io` lock of `f` when a call must hold it across several host calls: for a regular file
/// (or a device), as Linux's `f_pos_lock`. Not for a pipe or terminal, where a call may block for
/// as long as nobody writes or reads, and a thread waiting for the lock could not be interrupted
/// by a signal: there a call over more than IO_CHUNK bytes may interleave with another's.
fn io_lock(f: &OpenFile, stream: Stream) -> Option<MutexGuard<'_, ()>> {
    (stream == Stream::File).then(|| lock(&f.io))
}

/// The accessible parts of a list of guest buffers, in order, up to the first fault, and the
/// total the call asked for (cut to MAX_RW_COUNT).
#[derive(Debug, Default)]
struct Segments {
    parts: Vec<(u64, u64)>,
    /// Accessible bytes (the sum of `parts`).
    len: u64,
    /// Bytes asked for.
    asked: u64,
}

impl Segments {
    fn of(p: &FileCx<'_>, vecs: &[(u64, u64)], access: Access) -> Segments {
        let layout = p.user.layout();
        let mut s = Segments::default();
        let mut faulted = false;
        for &(base, len) in vecs {
            let len = len.min(MAX_RW_COUNT - s.asked);
            s.asked += len;
            if faulted || len == 0 {
                continue;
            }
            let ok = layout.accessible(base, len, access);
            if ok > 0 {
                s.parts.push((base, ok));
                s.len += ok;
            }
            faulted = ok < len;
        }
        s
    }

    /// Whether the buffers end before what was asked for (a fault stops the copy there).
    fn faulted(&self) -> bool {
        self.len < self.asked
    }
}

/// A position in a `Segments`, copying chunk by chunk.
struct Cursor<'a> {
    parts: &'a [(u64, u64)],
    i: usize,
    at: u64,
}

impl<'a> Cursor<'a> {
    fn new(parts: &'a [(u64, u64)]) -> Self {
        Cursor { parts, i: 0, at: 0 }
    }

    /// Copies guest bytes into `buf` (as many as it holds, or what is left); returns how many.
    fn gather(&mut self, p: &FileCx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut n = 0;
        while n < buf.len() && self.i < self.parts.len() {
            let (base, len) = self.parts[self.i];
            let k = ((len - self.at) as usize).min(buf.len() - n);
            p.user.read(base + self.at, &mut buf[n..n + k])?;
            n += k;
            self.advance(k as u64);
        }
        Ok(n)
    }

    /// Copies `data` into the guest buffers; returns how many bytes went (fewer if another thread
    /// unmapped a buffer meanwhile).
    fn scatter(&mut self, p: &FileCx<'_>, data: &[u8]) -> usize {
        let mut n = 0;
        while n < data.len() && self.i < self.parts.len() {
            let (base, len) = self.parts[self.i];
            let k = ((len - self.at) as usize).min(data.len() - n);
            if p.user.write(base + self.at, &data[n..n + k]).is_err() {
                return n;
            }
            n += k;
            self.advance(k as u64);
        }
        n
    }

    fn advance(&mut self, k: u64) {
        self.at += k;
        if self.at == self.parts[self.i].1 {
            self.i += 1;
            self.at = 0;
        }
    }
}

/// One host read (pread at `off`).
fn host_read(fd: RawFd, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
    // SAFETY: `buf` is a valid writable host buffer of `buf.len()` bytes.
    let n = unsafe {
        match off {
            Some(o) => libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), o as i64),
            None => libc::read(fd, buf.as_mut_ptr().cast(), buf.len()),
        }
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// One host write (pwrite at `off`).
fn host_write(fd: RawFd, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
    // SAFETY: `data` is a valid host buffer of `data.len()` bytes.
    let n = unsafe {
        match off {
            Some(o) => libc::pwrite(fd, data.as_ptr().cast(), data.len(), o as i64),
            None => libc::write(fd, data.as_ptr().cast(), data.len()),
        }
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Writes all of `data` (looping over short writes, as a blocking write to a pipe does); a
/// failure after some bytes went is a short count.
fn write_all(fd: RawFd, mut data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
    let total = data.len();
    while !data.is_empty() {
        let done = total - data.len();
        match host_write(fd, data, off.map(|o| o + done as u64)) {
            Ok(0) => break,
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total - data.len())
}

/// Reads `f` into the guest buffers `vecs` (at `off`, or at the file position).
fn read_into(p: &FileCx<'_>, f: &OpenFile, vecs: &[(u64, u64)], off: Option<u64>) -> SysResult {
    let segs = Segments::of(p, vecs, Access::Write);
    let stream = stream_of(f);
    if segs.len == 0 {
        // A read of nothing still says what is wrong with the file (EBADF, EISDIR, ESPIPE).
        host_read(f.raw(), &mut [], off)?;
        if !segs.faulted() {
            return Ok(0);
        }
        // No byte fits: at the end of a regular file Linux copies nothing, so nothing faults.
        if f.regular && at_end(f, off)? {
            return Ok(0);
        }
        return Err(Errno::EFAULT);
    }
    if segs.faulted() && stream != Stream::File {
        // A pipe or terminal copies what it holds whole or not at all: EFAULT without taking
        // anything when that does not fit.
        let ready = bytes_ready(f.raw()).min(segs.asked);
        if ready > segs.len || ready == 0 {
            host_read(f.raw(), &mut [], off)?;
            return Err(Errno::EFAULT);
        }
    }
    let _io = io_lock(f, stream);
    let mut bounce = vec![0u8; (segs.len as usize).min(IO_CHUNK)];
    let mut cur = Cursor::new(&segs.parts);
    let mut done = 0u64;
    while done < segs.len {
        let want = ((segs.len - done) as usize).min(IO_CHUNK);
        let n = match host_read(f.raw(), &mut bounce[..want], off.map(|o| o + done)) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let copied = cur.scatter(p, &bounce[..n]);
        done += copied as u64;
        if copied < n {
            // The buffer went away under us (another thread unmapped it).
            if done == 0 {
                return Err(Errno::EFAULT);
            }
            break;
        }
        // A pipe or terminal returns what it has; only regular files are read on.
        if n < want || !f.regular {
            break;
        }
    }
    Ok(done)
}

/// Whether a regular file's position (or `off`) is at or past its end.
fn at_end(f: &OpenFile, off: Option<u64>) -> Result<bool, Errno> {
    let pos = match off {
        Some(o) => o as i64,
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        None => unsafe { libc::lseek(f.raw(), 0, libc::SEEK_CUR) },
    };
    Ok(pos >= f.fstat()?.st_size)
}

/// Bytes a pipe or terminal holds (FIONREAD; 0 when it cannot say).
fn bytes_ready(fd: RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        n.max(0) as u64
    }
}

/// Writes the guest buffers `vecs` to `f` (at `off`, or at the file position).
fn write_from(p: &FileCx<'_>, f: &OpenFile, vecs: &[(u64, u64)], off: Option<u64>) -> SysResult {
    let segs = Segments::of(p, vecs, Access::Read);
    let stream = stream_of(f);
    // What of the buffers the file takes before the fault: all of it, or whole units.
    let usable = match (segs.faulted(), stream) {
        (false, _) | (true, Stream::File) => segs.len,
        (true, Stream::Pipe) => segs.len / PIPE_UNIT * PIPE_UNIT,
        (true, Stream::Tty) => segs.len / TTY_UNIT * TTY_UNIT,
    };
    if usable == 0 {
        // A write of nothing still says what is wrong with the file (EBADF, ESPIPE).
        host_write(f.raw(), &[], off)?;
        if !segs.faulted() {
            return Ok(0);
        }
        // /dev/null and /dev/zero take any buffer without reading it.
        if matches!(f.kind, FileKind::Device("/dev/null" | "/dev/zero")) {
            return Ok(segs.asked);
        }
        return Err(Errno::EFAULT);
    }
    let _io = io_lock(f, stream);
    let mut bounce = vec![0u8; (usable as usize).min(IO_CHUNK)];
    let mut cur = Cursor::new(&segs.parts);
    let mut done = 0u64;
    while done < usable {
        let want = ((usable - done) as usize).min(IO_CHUNK);
        let got = match cur.gather(p, &mut bounce[..want]) {
            Ok(n) => n,
            // The buffer went away under us (another thread unmapped it).
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let n = match write_all(f.raw(), &bounce[..got], off.map(|o| o + done)) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n as u64;
        if n < want {
            break;
        }
    }
    Ok(done)
}

/// read / pread64.
pub fn sys_read(p: &FileCx<'_>, fd: i32, buf: u64, count: u64, off: Option<u64>) -> SysResult {
    if off.is_some_and(|o| (o as i64) < 0) {
        return Err(Errno::EINVAL);
    }
    let f = p.files.get(fd)?;
    if !access_ok(buf, count) {
        // After the checks a read of nothing makes (EBADF, EISDIR, ESPIPE).
        host_read(f.raw(), &mut [], off)?;
        return Err(Errno::EFAULT);
    }
    read_into(p, &f, &[(buf, count)], off)
}

/// write / pwrite64.
pub fn sys_write(p: &FileCx<'_>, fd: i32, buf: u64, count: u64, off: Option<u64>) -> SysResult {
    if off.is_some_and(|o| (o as i64) < 0) {
        return Err(Errno::EINVAL);
    }
    let f = p.files.get(fd)?;
    if !access_ok(buf, count) {
        host_write(f.raw(), &[], off)?;
        return Err(Errno::EFAULT);
    }
    write_from(p, &f, &[(buf, count)], off)
}

/// pwrite64 (the root's files are opened read-only: the host answers EBADF; a pipe ESPIPE).
pub fn sys_pwrite(p: &FileCx<'_>, fd: i32, buf: u64, count: u64, off: u64) -> SysResult {
    sys_write(p, fd, buf, count, Some(off))
}

/// The iovec array of readv/writev: EINVAL beyond IOV_MAX or for a negative length, EFAULT for a
/// buffer outside the user part of the address space (Linux's `import_iovec`).
fn read_iovecs(p: &FileCx<'_>, iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if cnt > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let raw = p.user.read_vec(iov, cnt as usize * 16)?;
    let mut v = Vec::with_capacity(cnt as usize);
    for c in raw.chunks_exact(16) {
        let word = |i: usize| -> u64 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let (base, len) = (word(0), word(8));
        if len > isize::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        v.push((base, len));
    }
    // Every buffer must lie in user space, up to what the call may move in all.
    let mut total = 0u64;
    for &(base, len) in &v {
        let len = len.min(MAX_RW_COUNT - total);
        if !access_ok(base, len) {
            return Err(Errno::EFAULT);
        }
        total += len;
    }
    Ok(v)
}

/// writev: at most IO_CHUNK bytes are gathered into one host write at a time.
pub fn sys_writev(p: &FileCx<'_>, fd: i32, iov: u64, cnt: u64) -> SysResult {
    let f = p.files.get(fd)?;
    let vecs = read_iovecs(p, iov, cnt)?;
    write_from(p, &f, &vecs, None)
}

/// readv: at most IO_CHUNK bytes are read at a time, then scattered.
pub fn sys_readv(p: &FileCx<'_>, fd: i32, iov: u64, cnt: u64, off: Option<u64>) -> SysResult {
    let f = p.files.get(fd)?;
    let vecs = read_iovecs(p, iov, cnt)?;
    read_into(p, &f, &vecs, off)
}

pub fn sys_getdents64(p: &FileCx<'_>, fd: i32, buf: u64, count: u64) -> SysResult {
    let f = p.files.get(fd)?;
    let count = count.min(i32::MAX as u64);
    if !access_ok(buf, count) {
        return Err(Errno::EFAULT);
    }
    let want = (count as usize).min(IO_CHUNK);
    let fits = p.user.layout().accessible(buf, want as u64, Access::Write) as usize;
    let mut bounce = vec![0u8; fits];
    let _io = lock(&f.io);
    // SAFETY: getdents64 writes at most `fits` bytes of records into `bounce`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, f.raw(), bounce.as_mut_ptr(), fits) };
    if n < 0 {
        let e = Errno::last();
        // Too small for one entry because the buffer faults, not because `count` is small.
        return Err(if e == Errno::EINVAL && fits < want {
            Errno::EFAULT
        } else {
            e
        });
    }
    p.user.write(buf, &bounce[..n as usize])?;
    Ok(n as u64)
}
