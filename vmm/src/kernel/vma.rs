//! The program's address space layout: its VMAs, the brk heap and the mmap allocator.
//!
//! A pure data structure (no host calls): every operation returns what changed so that the caller
//! (`kernel::mm`) applies it to island memory. In the multi-island design this type lives on the
//! program's origin island and other islands ask it by message.

use std::collections::BTreeMap;

use crate::memory::layout::{page_up, KERNEL_AREA_END, MMAP_TOP, PAGE_SIZE, STACK_TOP};

/// Page protection as the program asked for it (PROT_READ/WRITE/EXEC bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prot(pub u32);

impl Prot {
    pub const NONE: Prot = Prot(0);
    pub const R: Prot = Prot(libc::PROT_READ as u32);
    pub const RW: Prot = Prot((libc::PROT_READ | libc::PROT_WRITE) as u32);
    pub const RX: Prot = Prot((libc::PROT_READ | libc::PROT_EXEC) as u32);

    /// Whether user reads are allowed (x86 cannot express write-only or exec-only pages).
    pub fn readable(self) -> bool {
        self.0 & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32 != 0
    }

    pub fn writable(self) -> bool {
        self.0 & libc::PROT_WRITE as u32 != 0
    }
}

/// What a VMA holds (all are anonymous memory on the island).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaKind {
    /// A writable segment of the executable (.data, .bss): coherent across islands.
    Elf,
    /// A read-only segment of the executable (text, rodata): every island loads its own copy
    /// from the file, and it stays out of the coherency protocol (paper §5.2).
    ElfCode,
    Heap,
    Stack,
    Anon,
    /// Anonymous, mapped with MAP_NORESERVE.
    Reserved,
    /// Anonymous and MAP_SHARED: without fork, private memory, except that Linux keeps its
    /// pages through MADV_DONTNEED (they belong to a shared memory object) and frees them with
    /// MADV_REMOVE.
    Shared,
    /// A private copy of a file of the root (its guest path). Address `a` of it holds the file's
    /// bytes at offset `a + delta` (wrapping): `delta` is the same for every part of the
    /// mapping, so a VMA keeps it when it is split.
    File {
        path: String,
        delta: u64,
    },
}

impl VmaKind {
    /// Island-local memory, outside the coherency protocol.
    pub fn is_local(&self) -> bool {
        matches!(self, VmaKind::ElfCode)
    }

    /// A mapping of `path` whose first byte, at `start`, is the file's byte at `offset`.
    pub fn file(path: String, start: u64, offset: u64) -> VmaKind {
        VmaKind::File {
            path,
            delta: offset.wrapping_sub(start),
        }
    }

    /// The same mapping moved from `from` to `to` (mremap).
    pub fn moved(&self, from: u64, to: u64) -> VmaKind {
        match self {
            VmaKind::File { path, delta } => VmaKind::File {
                path: path.clone(),
                delta: delta.wrapping_add(from).wrapping_sub(to),
            },
            k => k.clone(),
        }
    }
}

/// The executable's bytes and segments, for what a page of a segment holds when the program
/// drops it (MADV_DONTNEED): Linux maps each PT_LOAD segment privately from the file, so a dropped
/// page is read from the file again.
#[derive(Debug)]
pub struct ExecImage {
    bytes: std::sync::Arc<[u8]>,
    /// (vaddr, memsz, offset, filesz) of each PT_LOAD segment, load base applied.
    segments: Vec<(u64, u64, u64, u64)>,
}

impl ExecImage {
    pub fn new(bytes: std::sync::Arc<[u8]>, segments: Vec<(u64, u64, u64, u64)>) -> Self {
        Self { bytes, segments }
    }

    /// Fills `out` (one page) with what page `page` of the executable holds as Linux maps it:
    /// the file's bytes for a page of a segment's file part (the last segment mapped there wins),
    /// zeros for its .bss pages and anywhere else. Returns false when the page is all zeros.
    pub fn page(&self, page: u64, out: &mut [u8]) -> bool {
        out.fill(0);
        let Some(from) = self.file_offset(page) else {
            return false;
        };
        let Some(bytes) = usize::try_from(from).ok().and_then(|f| self.bytes.get(f..)) else {
            return false;
        };
        let n = bytes.len().min(out.len());
        out[..n].copy_from_slice(&bytes[..n]);
        true
    }

    /// The file offset page `page` maps, if it is in a segment's file part (Linux maps a
    /// segment's .bss beyond its last file page anonymously).
    pub fn file_offset(&self, page: u64) -> Option<u64> {
        let &(vaddr, _, offset, filesz) =
            self.segments.iter().rev().find(|&&(vaddr, memsz, _, _)| {
                page >= vaddr - vaddr % PAGE_SIZE
                    && page_up(vaddr.saturating_add(memsz)).is_some_and(|end| page < end)
            })?;
        let start = vaddr - vaddr % PAGE_SIZE;
        if page_up(vaddr.saturating_add(filesz)).is_none_or(|end| page >= end) {
            return None;
        }
        (offset - offset % PAGE_SIZE).checked_add(page - start)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub kind: VmaKind,
}

/// The kind of access a system call wants to make to user memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a layout change is refused (mapped to an errno by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VmaError {
    #[error("invalid range")]
    Invalid,
    #[error("no room in the address space")]
    NoMemory,
    #[error("range not fully mapped")]
    NotMapped,
}

/// The address space of one program.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    vmas: BTreeMap<u64, Vma>,
    brk_start: u64,
    brk: u64,
}

fn valid_range(start: u64, len: u64) -> Result<u64, VmaError> {
    let end = start.checked_add(len).ok_or(VmaError::Invalid)?;
    if start % PAGE_SIZE != 0 || len == 0 || start < KERNEL_AREA_END || end > STACK_TOP {
        return Err(VmaError::Invalid);
    }
    Ok(end)
}

impl Default for AddressSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl AddressSpace {
    pub fn new() -> Self {
        Self {
            vmas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
        }
    }

    /// Sets where the brk heap starts (just after the executable's last segment).
    pub fn set_brk_start(&mut self, start: u64) {
        self.brk_start = start;
        self.brk = start;
    }

    pub fn brk_value(&self) -> u64 {
        self.brk
    }

    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| addr < v.end)
    }

    /// Whether `[addr, addr+len)` is entirely mapped with the given access allowed.
    pub fn check(&self, addr: u64, len: u64, access: Access) -> bool {
        if len == 0 {
            return true;
        }
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let mut at = addr;
        while at < end {
            let Some(v) = self.find(at) else {
                return false;
            };
            let ok = match access {
                Access::Read => v.prot.readable(),
                Access::Write => v.prot.writable(),
            };
            if !ok {
                return false;
            }
            at = v.end;
        }
        true
    }

    /// How many bytes from `addr` on, up to `len`, the program may access this way: where a copy
    /// of `[addr, addr+len)` to or from user memory stops with a fault (Linux copies that much).
    pub fn accessible(&self, addr: u64, len: u64, access: Access) -> u64 {
        let end = addr.saturating_add(len);
        let mut at = addr;
        while at < end {
            let Some(v) = self.find(at) else {
                break;
            };
            let ok = match access {
                Access::Read => v.prot.readable(),
                Access::Write => v.prot.writable(),
            };
            if !ok {
                break;
            }
            at = v.end;
        }
        at.min(end) - addr
    }

    /// Splits the VMA that contains `addr` (strictly inside it) into two at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some(v) = self.find(addr).cloned() else {
            return;
        };
        if v.start == addr {
            return;
        }
        let mut tail = v.clone();
        tail.start = addr;
        if let Some(head) = self.vmas.get_mut(&v.start) {
            head.end = addr;
        }
        self.vmas.insert(addr, tail);
    }

    /// Removes every mapping in `[start, end)`; returns the removed ranges.
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|k| self.vmas.remove(&k))
            .map(|v| (v.start, v.end))
            .collect()
    }

    /// Maps `[start, start+len)`, replacing whatever was there (MAP_FIXED semantics).
    /// Returns the ranges that were mapped before and are now replaced.
    pub fn map_fixed(
        &mut self,
        start: u64,
        len: u64,
        prot: Prot,
        kind: VmaKind,
    ) -> Result<Vec<(u64, u64)>, VmaError> {
        let end = valid_range(start, len)?;
        let replaced = self.remove_range(start, end);
        self.vmas.insert(
            start,
            Vma {
                start,
                end,
                prot,
                kind,
            },
        );
        Ok(replaced)
    }

    fn is_free(&self, start: u64, end: u64) -> bool {
        if self.find(start).is_some() {
            return false;
        }
        self.vmas.range(start..end).next().is_none()
    }

    /// Finds a free range of `len` bytes: at `hint` if it is free, else top-down from MMAP_TOP,
    /// never below the brk heap's start.
    pub fn find_free(&self, len: u64, hint: u64) -> Result<u64, VmaError> {
        let len = page_up(len).ok_or(VmaError::NoMemory)?;
        if len > MMAP_TOP {
            return Err(VmaError::NoMemory);
        }
        if hint != 0 && hint % PAGE_SIZE == 0 {
            if let Ok(end) = valid_range(hint, len) {
                if end <= MMAP_TOP && self.is_free(hint, end) {
                    return Ok(hint);
                }
            }
        }
        let floor = self.brk_start.max(KERNEL_AREA_END);
        let mut top = MMAP_TOP;
        // Walk the VMAs below `top` from high to low, looking for a gap of `len`.
        for v in self.vmas.range(..MMAP_TOP).rev() {
            let v = v.1;
            if v.end <= top {
                if top - v.end >= len {
                    return Ok(top - len);
                }
                top = v.start;
            } else {
                top = top.min(v.start);
            }
            if top < floor + len {
                return Err(VmaError::NoMemory);
            }
        }
        if top >= floor + len {
            Ok(top - len)
        } else {
            Err(VmaError::NoMemory)
        }
    }

    /// Unmaps `[start, start+len)`; returns the ranges that were mapped there.
    /// (The part of the range outside the program's address space, below KERNEL_AREA_END or
    /// above STACK_TOP, holds no mapping: nothing to do there.)
    pub fn unmap(&mut self, start: u64, len: u64) -> Result<Vec<(u64, u64)>, VmaError> {
        let len = page_up(len).ok_or(VmaError::Invalid)?;
        let end = start.checked_add(len).ok_or(VmaError::Invalid)?;
        if start % PAGE_SIZE != 0 || len == 0 {
            return Err(VmaError::Invalid);
        }
        let (s, e) = (start.max(KERNEL_AREA_END), end.min(STACK_TOP));
        if s >= e {
            return Ok(Vec::new());
        }
        Ok(self.remove_range(s, e))
    }

    /// Changes the protection of `[start, start+len)`, which must be fully mapped.
    pub fn protect(&mut self, start: u64, len: u64, prot: Prot) -> Result<(), VmaError> {
        let len = page_up(len).ok_or(VmaError::Invalid)?;
        if len == 0 {
            return Ok(());
        }
        let end = valid_range(start, len).map_err(|_| VmaError::NoMemory)?;
        if !self.fully_mapped(start, end) {
            return Err(VmaError::NotMapped);
        }
        self.split_at(start);
        self.split_at(end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.prot = prot;
        }
        Ok(())
    }

    pub fn fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some(v) => at = v.end,
                None => return false,
            }
        }
        true
    }

    /// Moves the program break. Returns the new break and, when the heap grew or shrank, the
    /// page range to map (RW) or to unmap.
    pub fn brk(&mut self, want: u64) -> BrkChange {
        if want < self.brk_start {
            return BrkChange::Unchanged(self.brk);
        }
        let (Some(old_end), Some(new_end)) = (page_up(self.brk), page_up(want)) else {
            return BrkChange::Unchanged(self.brk);
        };
        if new_end > old_end {
            if new_end > MMAP_TOP || !self.is_free(old_end, new_end) {
                return BrkChange::Unchanged(self.brk);
            }
            self.vmas.insert(
                old_end,
                Vma {
                    start: old_end,
                    end: new_end,
                    prot: Prot::RW,
                    kind: VmaKind::Heap,
                },
            );
            self.brk = want;
            BrkChange::Grew(old_end, new_end)
        } else if new_end < old_end {
            self.remove_range(new_end, old_end);
            self.brk = want;
            BrkChange::Shrank(new_end, old_end)
        } else {
            self.brk = want;
            BrkChange::Unchanged(want)
        }
    }
}

/// The result of `AddressSpace::brk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrkChange {
    Unchanged(u64),
    Grew(u64, u64),
    Shrank(u64, u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x40_0000;

    #[test]
    fn map_check_split_protect_unmap() {
        let mut s = AddressSpace::new();
        s.map_fixed(A, 4 * PAGE_SIZE, Prot::RW, VmaKind::Anon)
            .expect("map");
        assert!(s.check(A, 4 * PAGE_SIZE, Access::Write));
        assert!(!s.check(A, 5 * PAGE_SIZE, Access::Read));
        s.protect(A + PAGE_SIZE, PAGE_SIZE, Prot::R)
            .expect("protect");
        assert_eq!(s.vmas().count(), 3);
        assert!(s.check(A, 4 * PAGE_SIZE, Access::Read));
        assert!(!s.check(A, 4 * PAGE_SIZE, Access::Write));
        assert!(s.check(A + 2 * PAGE_SIZE, 2 * PAGE_SIZE, Access::Write));
        let removed = s
            .unmap(A + PAGE_SIZE / 2 * 3, PAGE_SIZE)
            .expect_err("unaligned");
        assert_eq!(removed, VmaError::Invalid);
        let removed = s.unmap(A + PAGE_SIZE, 2 * PAGE_SIZE).expect("unmap");
        assert_eq!(
            removed,
            vec![
                (A + PAGE_SIZE, A + 2 * PAGE_SIZE),
                (A + 2 * PAGE_SIZE, A + 3 * PAGE_SIZE)
            ]
        );
        assert!(s.find(A + PAGE_SIZE).is_none());
        assert_eq!(
            s.protect(A, 4 * PAGE_SIZE, Prot::R),
            Err(VmaError::NotMapped)
        );
        assert!(s.check(A + 3 * PAGE_SIZE, 1, Access::Write));
    }

    #[test]
    fn exec_image_pages_are_the_files_as_linux_maps_them() {
        let bytes: Vec<u8> = (0..3 * PAGE_SIZE)
            .map(|i| (i / PAGE_SIZE + 1) as u8)
            .collect();
        // Text: file pages 0-1 at 0x400000; data: from offset 0x2010, 0x100 bytes of file and
        // two pages of .bss, at 0x402010.
        let img = ExecImage::new(
            bytes.into(),
            vec![
                (A, 2 * PAGE_SIZE, 0, 2 * PAGE_SIZE),
                (A + 0x2010, 0x2000, 0x2010, 0x100),
            ],
        );
        let mut page = vec![0u8; PAGE_SIZE as usize];
        assert!(img.page(A + PAGE_SIZE, &mut page));
        assert!(page.iter().all(|&b| b == 2));
        // The data segment's first page is the file's third page, whole (before and after its
        // file part too, as Linux maps it).
        assert!(img.page(A + 2 * PAGE_SIZE, &mut page));
        assert!(page.iter().all(|&b| b == 3));
        assert_eq!(img.file_offset(A + 2 * PAGE_SIZE), Some(0x2000));
        // .bss beyond the last file page, and outside every segment: zeros.
        assert!(!img.page(A + 3 * PAGE_SIZE, &mut page));
        assert!(page.iter().all(|&b| b == 0));
        assert!(!img.page(A + 9 * PAGE_SIZE, &mut page));
    }

    #[test]
    fn accessible_prefix_stops_at_the_first_fault() {
        let mut s = AddressSpace::new();
        s.map_fixed(A, 2 * PAGE_SIZE, Prot::RW, VmaKind::Anon)
            .expect("map");
        s.map_fixed(A + 2 * PAGE_SIZE, PAGE_SIZE, Prot::R, VmaKind::Anon)
            .expect("map");
        assert_eq!(s.accessible(A + 10, 100, Access::Write), 100);
        assert_eq!(
            s.accessible(A + 10, 3 * PAGE_SIZE, Access::Write),
            2 * PAGE_SIZE - 10
        );
        assert_eq!(
            s.accessible(A + 10, 4 * PAGE_SIZE, Access::Read),
            3 * PAGE_SIZE - 10
        );
        assert_eq!(s.accessible(A - 1, 4, Access::Read), 0);
        assert_eq!(s.accessible(u64::MAX - 1, 4, Access::Read), 0);
        assert_eq!(s.accessible(A, 0, Access::Read), 0);
    }

    #[test]
    fn kernel_area_and_overflow_rejected() {
        let mut s = AddressSpace::new();
        assert_eq!(
            s.map_fixed(0, PAGE_SIZE, Prot::RW, VmaKind::Anon),
            Err(VmaError::Invalid)
        );
        assert_eq!(
            s.map_fixed(!0xfff, PAGE_SIZE, Prot::RW, VmaKind::Anon),
            Err(VmaError::Invalid)
        );
        assert!(!s.check(u64::MAX, 2, Access::Read));
    }

    #[test]
    fn find_free_is_top_down_and_skips_mappings() {
        let mut s = AddressSpace::new();
        s.set_brk_start(A);
        let a = s.find_free(PAGE_SIZE, 0).expect("free");
        assert_eq!(a, MMAP_TOP - PAGE_SIZE);
        s.map_fixed(a, PAGE_SIZE, Prot::RW, VmaKind::Anon)
            .expect("map");
        let b = s.find_free(2 * PAGE_SIZE, 0).expect("free");
        assert_eq!(b, a - 2 * PAGE_SIZE);
        // A hint that is free is honoured; one that overlaps is not.
        assert_eq!(
            s.find_free(PAGE_SIZE, 0x1000_0000).expect("hint"),
            0x1000_0000
        );
        assert_ne!(s.find_free(PAGE_SIZE, a).expect("hint"), a);
        assert_eq!(s.find_free(MMAP_TOP, 0), Err(VmaError::NoMemory));
    }

    #[test]
    fn brk_grows_and_shrinks() {
        let mut s = AddressSpace::new();
        s.set_brk_start(A + 0x123);
        assert_eq!(s.brk(0), BrkChange::Unchanged(A + 0x123));
        assert_eq!(s.brk(A + 0x5000), BrkChange::Grew(A + 0x1000, A + 0x5000));
        assert!(s.check(A + 0x1000, 0x4000, Access::Write));
        assert_eq!(s.brk(A + 0x2000), BrkChange::Shrank(A + 0x2000, A + 0x5000));
        assert!(!s.check(A + 0x2000, 1, Access::Read));
        // Growing into a mapping fails and leaves the break where it was.
        s.map_fixed(A + 0x3000, PAGE_SIZE, Prot::RW, VmaKind::Anon)
            .expect("map");
        assert_eq!(s.brk(A + 0x8000), BrkChange::Unchanged(A + 0x2000));
    }
}
