//! Every access the island kernel makes to the program's memory goes through `UserMemory`:
//! copy_from_user, copy_to_user, strings, and the atomic operations futexes need. Each access is
//! checked against the VMA layout (EFAULT, as Linux answers) while holding the layout's read lock,
//! so munmap/mprotect cannot race with it, and then performed with vm-memory's bounds-checked
//! accessors. In the multi-island design this is where a page is first made locally valid.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use super::errno::Errno;
use super::vma::{Access, AddressSpace};
use crate::memory::IslandMemory;

/// The program's memory as seen by its kernel.
#[derive(Debug, Clone)]
pub struct UserMemory {
    mem: Arc<IslandMemory>,
    space: Arc<RwLock<AddressSpace>>,
}

/// Longest path a system call may pass (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// The end of the user part of a Linux x86-64 address space (`TASK_SIZE_MAX`, 4-level paging):
/// what `access_ok` checks a user range against, and the highest FS or GS base a thread may set.
pub const USER_END: u64 = (1 << 47) - 4096;

/// Linux's `access_ok`: whether `[addr, addr+len)` lies in the user part of an address space
/// (mapped or not). Calls check it before they copy anything, and answer EFAULT when it fails.
pub fn access_ok(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= USER_END)
}

/// The most bytes one read or write moves (`MAX_RW_COUNT`); larger counts are cut to it.
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

impl UserMemory {
    /// The memory of an island, with an empty layout.
    pub fn new(mem: Arc<IslandMemory>) -> Self {
        Self {
            mem,
            space: Arc::new(RwLock::new(AddressSpace::new())),
        }
    }

    pub fn island_memory(&self) -> &Arc<IslandMemory> {
        &self.mem
    }

    /// The layout, for reading. A poisoned lock means a kernel thread panicked: keep going with
    /// the data (the layout itself is always left consistent between statements).
    pub fn layout(&self) -> RwLockReadGuard<'_, AddressSpace> {
        self.space.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The layout for reading, if no change holds it now (for the fault service, which must
    /// never wait for a change that may itself wait for a fault).
    pub fn try_layout(&self) -> Option<RwLockReadGuard<'_, AddressSpace>> {
        match self.space.try_read() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn layout_mut(&self) -> RwLockWriteGuard<'_, AddressSpace> {
        self.space.write().unwrap_or_else(|e| e.into_inner())
    }

    fn checked<R>(
        &self,
        addr: u64,
        len: usize,
        access: Access,
        f: impl FnOnce(&vm_memory::GuestMemoryMmap) -> Result<R, vm_memory::GuestMemoryError>,
    ) -> Result<R, Errno> {
        let space = self.layout();
        if !space.check(addr, len as u64, access) {
            return Err(Errno::EFAULT);
        }
        let r = f(self.mem.guest()).map_err(|_| Errno::EFAULT);
        drop(space);
        r
    }

    /// copy_from_user.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        self.checked(addr, buf.len(), Access::Read, |m| {
            m.read_slice(buf, GuestAddress(addr))
        })
    }

    /// copy_to_user.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        self.checked(addr, data.len(), Access::Write, |m| {
            m.write_slice(data, GuestAddress(addr))
        })
    }

    /// Reads `len` bytes into a new buffer (lengths are validated by the caller's limits).
    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    pub fn read_obj<T: ByteValued>(&self, addr: u64) -> Result<T, Errno> {
        self.checked(addr, std::mem::size_of::<T>(), Access::Read, |m| {
            m.read_obj(GuestAddress(addr))
        })
    }

    pub fn write_obj<T: ByteValued>(&self, addr: u64, val: T) -> Result<(), Errno> {
        self.checked(addr, std::mem::size_of::<T>(), Access::Write, |m| {
            m.write_obj(val, GuestAddress(addr))
        })
    }

    /// Writes a value only if the pointer is not NULL (the common "optional out-parameter").
    pub fn write_opt<T: ByteValued>(&self, addr: u64, val: T) -> Result<(), Errno> {
        if addr == 0 {
            Ok(())
        } else {
            self.write_obj(addr, val)
        }
    }

    /// strncpy_from_user: a NUL-terminated string of at most `max` bytes (without the NUL);
    /// ENAMETOOLONG beyond.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            // Read up to the end of the current page so we never touch a page past the NUL.
            let chunk = (4096 - (at % 4096)) as usize;
            let mut buf = vec![0u8; chunk];
            self.read(at, &mut buf)?;
            if let Some(n) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..n]);
                return Ok(out);
            }
            out.extend_from_slice(&buf);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            at = at.checked_add(chunk as u64).ok_or(Errno::EFAULT)?;
        }
    }

    /// Runs `f` on the futex word at `addr` as an atomic (4-byte aligned, writable or readable).
    pub fn with_atomic_u32<R>(
        &self,
        addr: u64,
        access: Access,
        f: impl FnOnce(&AtomicU32) -> R,
    ) -> Result<R, Errno> {
        if addr % 4 != 0 {
            return Err(Errno::EINVAL);
        }
        let space = self.layout();
        if !space.check(addr, 4, access) {
            return Err(Errno::EFAULT);
        }
        let ptr = self
            .mem
            .guest()
            .get_host_address(GuestAddress(addr))
            .map_err(|_| Errno::EFAULT)?;
        // SAFETY: the address is 4-byte aligned, inside island memory (vm-memory checked it) and in a
        // mapped VMA whose host protection allows this access (checked under the layout lock, held
        // until `f` returns). Guest vCPUs access the word concurrently with their own atomic
        // instructions, which is exactly the sharing AtomicU32 permits.
        let atomic = unsafe { AtomicU32::from_ptr(ptr as *mut u32) };
        let r = f(atomic);
        drop(space);
        Ok(r)
    }

    pub fn load_u32(&self, addr: u64) -> Result<u32, Errno> {
        self.with_atomic_u32(addr, Access::Read, |a| a.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::vma::{Prot, VmaKind};
    use crate::memory::HostProt;

    const A: u64 = 0x40_0000;

    /// 8 KiB at A: the first page read-write, the second read-only; nothing after.
    fn setup() -> UserMemory {
        let mem = Arc::new(IslandMemory::new(1 << 30).expect("reserve"));
        let user = UserMemory::new(Arc::clone(&mem));
        {
            let mut s = user.layout_mut();
            s.map_fixed(A, 0x1000, Prot::RW, VmaKind::Anon)
                .expect("map");
            s.map_fixed(A + 0x1000, 0x1000, Prot::R, VmaKind::Anon)
                .expect("map");
        }
        mem.protect(A, 0x1000, HostProt::ReadWrite)
            .expect("protect");
        mem.protect(A + 0x1000, 0x1000, HostProt::Read)
            .expect("protect");
        user
    }

    #[test]
    fn copies_are_checked_against_the_layout() {
        let u = setup();
        u.write(A + 10, b"hello\0").expect("write");
        assert_eq!(u.read_vec(A + 10, 5).expect("read"), b"hello");
        assert_eq!(u.read_cstr(A + 10, 100).expect("cstr"), b"hello");
        // `max` bounds how far the scan goes; callers reject results that are too long.
        assert_eq!(u.read_cstr(A + 10, 2), Ok(b"hello".to_vec()));
        // Writes to the read-only page, reads past the mapping, the kernel area, NULL, wraps.
        assert_eq!(u.write(A + 0x1000, b"x"), Err(Errno::EFAULT));
        assert_eq!(u.write(A + 0xfff, b"xy"), Err(Errno::EFAULT));
        assert!(u.read_vec(A + 0x1000, 0x1000).is_ok());
        assert_eq!(u.read_vec(A + 0x1001, 0x1000), Err(Errno::EFAULT));
        assert_eq!(u.read_vec(0x1000, 4), Err(Errno::EFAULT));
        assert_eq!(u.read_obj::<u64>(0), Err(Errno::EFAULT));
        assert_eq!(u.read_obj::<u64>(u64::MAX - 3), Err(Errno::EFAULT));
        assert_eq!(u.write_opt(0, 1u32), Ok(()));
    }

    #[test]
    fn unterminated_string_at_the_end_of_a_mapping_is_efault() {
        let u = setup();
        u.write(A, &[b'a'; 0x1000]).expect("fill");
        // The next page is mapped (and zero): the string ends there.
        assert_eq!(u.read_cstr(A, 1 << 20).map(|s| s.len()), Ok(0x1000));
        u.layout_mut().unmap(A + 0x1000, 0x1000).expect("unmap");
        assert_eq!(u.read_cstr(A, 1 << 20), Err(Errno::EFAULT));
        assert_eq!(u.read_cstr(A, 100), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn atomics_need_alignment_and_access() {
        let u = setup();
        u.write_obj(A + 8, 5u32).expect("write");
        let old = u
            .with_atomic_u32(A + 8, Access::Write, |a| a.swap(7, Ordering::SeqCst))
            .expect("swap");
        assert_eq!(old, 5);
        assert_eq!(u.load_u32(A + 8), Ok(7));
        assert_eq!(u.load_u32(A + 9), Err(Errno::EINVAL));
        assert_eq!(
            u.with_atomic_u32(A + 0x1000, Access::Write, |_| ()),
            Err(Errno::EFAULT)
        );
        assert_eq!(u.load_u32(A + 0x1000), Ok(0));
    }
}
