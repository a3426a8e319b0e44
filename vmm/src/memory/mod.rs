//! Island memory: one large host reservation that backs the whole guest address space.
//!
//! The reservation is anonymous, private and `MAP_NORESERVE`; it starts `PROT_NONE` and every range the
//! program maps (ELF segments, heap, stacks, mmap) is opened with `mprotect` to the protection the
//! program asked for. KVM follows the host page tables, so a guest access the host protection forbids
//! (a write to a read-only page, any access to an unmapped page) makes `KVM_RUN` fail with `EFAULT`,
//! which the island kernel turns into `SIGSEGV`. Guest virtual = guest physical = offset in the mapping.

pub mod layout;

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Errors of island memory management.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot reserve {size} bytes of island memory: {source}")]
    Reserve {
        size: u64,
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("island memory region rejected by vm-memory")]
    Region,
    #[error("cannot build the guest memory map: {0}")]
    GuestMemory(String),
    #[error("range {start:#x}+{len:#x} is outside island memory")]
    OutOfRange { start: u64, len: u64 },
    #[error("{op} of {start:#x}+{len:#x} failed: {source}")]
    Host {
        op: &'static str,
        start: u64,
        len: u64,
        source: std::io::Error,
    },
}

/// Host-side protection of a range of island memory (what KVM will let the guest do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostProt {
    None,
    Read,
    ReadWrite,
}

impl HostProt {
    fn to_libc(self) -> libc::c_int {
        match self {
            HostProt::None => libc::PROT_NONE,
            HostProt::Read => libc::PROT_READ,
            HostProt::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// The memory of one island.
#[derive(Debug)]
pub struct IslandMemory {
    guest: GuestMemoryMmap,
    host_base: usize,
    size: u64,
}

impl IslandMemory {
    /// Reserves `size` bytes (page aligned), all inaccessible.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        let region = MmapRegion::build(
            None,
            size as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )
        .map_err(|source| MemoryError::Reserve { size, source })?;
        let host_base = region.as_ptr() as usize;
        // Transparent huge pages for island memory: KVM (PVM's shadow MMU here) can then map a
        // guest 2 MiB page with one host huge page instead of 512 separate faults. Advice only: if
        // the host refuses, island memory works the same, slower.
        // SAFETY: advice on our own fresh reservation; it changes no contents.
        unsafe {
            libc::madvise(
                host_base as *mut libc::c_void,
                size as usize,
                libc::MADV_HUGEPAGE,
            )
        };
        let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or(MemoryError::Region)?;
        let guest = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|e| MemoryError::GuestMemory(e.to_string()))?;
        Ok(Self {
            guest,
            host_base,
            size,
        })
    }

    /// Bounds-checked guest memory (vm-memory). Callers must make sure the range is host-accessible.
    pub fn guest(&self) -> &GuestMemoryMmap {
        &self.guest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest physical address 0 (for the KVM memslot).
    pub fn host_base(&self) -> u64 {
        self.host_base as u64
    }

    fn check(&self, start: u64, len: u64) -> Result<*mut libc::c_void, MemoryError> {
        let end = start.checked_add(len);
        if start % layout::PAGE_SIZE != 0 || end.is_none_or(|e| e > self.size) {
            return Err(MemoryError::OutOfRange { start, len });
        }
        Ok((self.host_base + start as usize) as *mut libc::c_void)
    }

    /// Sets the host protection of `[start, start+len)`; KVM mirrors it into the guest.
    pub fn protect(&self, start: u64, len: u64, prot: HostProt) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        let addr = self.check(start, len)?;
        // SAFETY: the range was checked to lie inside our own reservation; changing its protection
        // cannot invalidate Rust references because nothing in popvmm holds references into guest
        // memory across calls (all accesses go through vm-memory after a VMA check).
        let r = unsafe { libc::mprotect(addr, len as usize, prot.to_libc()) };
        if r != 0 {
            return Err(MemoryError::Host {
                op: "mprotect",
                start,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Drops the contents of `[start, start+len)`: the next touch reads zeros (MADV_DONTNEED on a
    /// private anonymous mapping).
    pub fn discard(&self, start: u64, len: u64) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        let addr = self.check(start, len)?;
        // SAFETY: as in `protect`: the range is inside our reservation and nothing borrows it.
        let r = unsafe { libc::madvise(addr, len as usize, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(MemoryError::Host {
                op: "madvise(DONTNEED)",
                start,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Makes `[start, start+len)` resident and writable on the host now (MADV_POPULATE_WRITE), so
    /// that the guest's first touch costs KVM a mapping, not a host page fault (measured here: 36 us
    /// per 4 KiB page on first touch without it, 0.1 us with it and huge pages). Best effort.
    pub fn populate(&self, start: u64, len: u64) {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        if let Ok(addr) = self.check(start, len) {
            // SAFETY: the range is inside our reservation and host-writable (callers populate only
            // ranges they just made read-write); populating changes no contents.
            unsafe { libc::madvise(addr, len as usize, MADV_POPULATE_WRITE) };
        }
    }

    /// Asks for 4 KiB pages in `[start, start+len)` (MADV_NOHUGEPAGE). Advice only.
    pub fn no_huge_pages(&self, start: u64, len: u64) {
        if let Ok(addr) = self.check(start, len) {
            // SAFETY: the range is inside our reservation; advice changes no contents.
            unsafe { libc::madvise(addr, len as usize, libc::MADV_NOHUGEPAGE) };
        }
    }

    /// Resident bytes of the island mapping (the program's pages), from /proc/self/smaps.
    pub fn resident_bytes(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let want = format!("{:x}-", self.host_base);
        let mut in_ours = false;
        let mut total = 0u64;
        for line in smaps.lines() {
            if line.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) && line.contains('-') {
                // A mapping header; our reservation may have been split by mprotect.
                let start = line
                    .split('-')
                    .next()
                    .and_then(|s| u64::from_str_radix(s, 16).ok());
                in_ours = line.starts_with(&want)
                    || start.is_some_and(|s| {
                        s >= self.host_base as u64 && s < self.host_base as u64 + self.size
                    });
            } else if in_ours {
                if let Some(rest) = line.strip_prefix("Rss:") {
                    let kb: u64 = rest.trim().trim_end_matches(" kB").trim().parse().ok()?;
                    total += kb * 1024;
                }
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn reserve_protect_discard() {
        let m = IslandMemory::new(1 << 30).expect("reserve");
        m.protect(0x10000, 0x2000, HostProt::ReadWrite)
            .expect("protect");
        m.guest()
            .write_obj(0x1234_5678u32, GuestAddress(0x10004))
            .expect("write");
        let v: u32 = m.guest().read_obj(GuestAddress(0x10004)).expect("read");
        assert_eq!(v, 0x1234_5678);
        m.discard(0x10000, 0x1000).expect("discard");
        let v: u32 = m.guest().read_obj(GuestAddress(0x10004)).expect("read");
        assert_eq!(v, 0);
        assert!(m.protect(1 << 30, 0x1000, HostProt::Read).is_err());
        assert!(m.protect(0x10001, 0x1000, HostProt::Read).is_err());
    }
}
