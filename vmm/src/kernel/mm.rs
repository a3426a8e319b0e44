//! Memory system calls on one island: brk, mmap, munmap, mprotect, mremap, madvise, and the
//! layout changes the origin pushes. The layout lives in `vma::AddressSpace`; this module applies
//! each change to the island's memory on the host side (mprotect of the host mapping is how
//! protection is enforced, MADV_DONTNEED is how pages are dropped) and to its coherency layer,
//! under the layout's write lock so no kernel access to user memory runs meanwhile. Which island
//! decides a change and how it reaches the others is the origin's business (`origin.rs`).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::errno::{Errno, SysResult};
use super::fs::IO_CHUNK;
use super::fs::{Files, OpenFile};
use super::island::Island;
use super::messages::{LayoutOp, MmCall};
use super::uaccess::USER_END;
use super::vma::{AddressSpace, BrkChange, Prot, VmaError, VmaKind};
use crate::memory::layout::{page_up, PAGE_SIZE};
use crate::memory::{HostProt, IslandMemory};

fn host_prot(p: Prot) -> HostProt {
    if p.writable() {
        HostProt::ReadWrite
    } else if p.readable() {
        HostProt::Read
    } else {
        HostProt::None
    }
}

/// Largest anonymous mapping made resident when it is created (see `IslandMemory::populate`):
/// larger ones (and MAP_NORESERVE ones) fault in on demand as on Linux.
const POPULATE_MAX: u64 = 64 << 20;

/// Memory made resident before the program touched it, over the program's life on one island.
/// Past it, new memory faults in on demand as on Linux, so that resident memory follows what the
/// program touches (16 untouched 64 MiB mmaps: at most this much resident, not 1 GiB).
pub const PREFAULT_BUDGET: u64 = 64 << 20;

/// Makes a fresh writable anonymous range resident now when it is worth it (see `populate`) and
/// the island's prefault budget allows.
fn prefault(island: &Island, start: u64, len: u64) {
    if island.config.no_prefault || island.dsm.coherent() || len > POPULATE_MAX {
        return;
    }
    let taken = island
        .prefaulted
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(len).filter(|&u| u <= PREFAULT_BUDGET)
        });
    if taken.is_ok() {
        island.user.island_memory().populate(start, len);
    }
}

fn host_err(e: crate::memory::MemoryError) -> Errno {
    // Host protection changes inside our own reservation fail only when the host is out of
    // memory for page tables.
    let _ = e;
    Errno::ENOMEM
}

fn vma_err(e: VmaError) -> Errno {
    match e {
        VmaError::Invalid => Errno::EINVAL,
        VmaError::NoMemory | VmaError::NotMapped => Errno::ENOMEM,
    }
}

/// Maps `[start, start+len)` fresh (zero-filled), replacing what was there, lets `fill` write
/// initial contents (the host range is writable during `fill`), then applies `prot`. For the
/// loader, before the program runs (the protocol is off: no generation).
pub fn map_fixed_with(
    island: &Island,
    start: u64,
    len: u64,
    prot: Prot,
    kind: VmaKind,
    fill: impl FnOnce(&GuestMemoryMmap) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let mut space = island.user.layout_mut();
    map_locked(island, &mut space, start, len, prot, kind, 0, fill)
}

/// `gen`: the generation the origin gave this layout change (see `drop_pages`).
#[allow(clippy::too_many_arguments)] // a mapping, and the change's generation
fn map_locked(
    island: &Island,
    space: &mut AddressSpace,
    start: u64,
    len: u64,
    prot: Prot,
    kind: VmaKind,
    gen: u32,
    fill: impl FnOnce(&GuestMemoryMmap) -> Result<(), Errno>,
) -> Result<(), Errno> {
    // The heap, data segments and anonymous mmaps are worth making resident up front; the main
    // stack (8 MiB, mostly untouched) is not.
    // Coherent memory is never prefaulted: its pages come through the protocol.
    let populate = !matches!(
        kind,
        VmaKind::Stack | VmaKind::File { .. } | VmaKind::Reserved
    );
    let coherent = island.dsm.coherent() && !kind.is_local();
    let kind_for_thp = kind.clone();
    let mem = island.user.island_memory();
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    space.map_fixed(start, len, prot, kind).map_err(vma_err)?;
    // The layout and the host protection must agree (uaccess trusts the layout), so a host
    // failure undoes the mapping.
    let host = island
        .vm
        .ensure_slots(start, len)
        .map_err(|_| Errno::ENOMEM)
        .and_then(|_| drop_pages(island, start, len, gen))
        .and_then(|_| {
            mem.protect(start, len, HostProt::ReadWrite)
                .map_err(host_err)
        });
    if let Err(e) = host {
        let _ = unmap_locked(island, space, start, len, gen);
        return Err(e);
    }
    if island.spans_islands() && matches!(kind_for_thp, VmaKind::Stack) {
        // A stack touched at its top must not become a 2 MiB huge page: with several islands,
        // every resident page of it would become the origin's to hand out.
        mem.no_huge_pages(start, len);
    }
    let filled = fill(mem.guest());
    if let Err(e) = mem.protect(start, len, host_prot(prot)).map_err(host_err) {
        let _ = unmap_locked(island, space, start, len, gen);
        return Err(e);
    }
    if coherent {
        if let Err(e) = make_coherent(island, start, len) {
            let _ = unmap_locked(island, space, start, len, gen);
            return Err(e);
        }
    } else if prot.writable() && populate {
        prefault(island, start, len);
    }
    filled
}

/// Drops the pages of `[start, start+len)`: they read back as zeros. With several islands, the
/// protocol resets them to generation `gen` (decision 16 of `coherency`): the origin gives every
/// layout change that drops pages a new generation, applies it, then pushes it with the change
/// to every island, which applies the same one (or has already: it heard of it from a
/// message). Accesses waiting on those pages fault again; messages of older generations are
/// dropped or answered with a notice.
fn drop_pages(island: &Island, start: u64, len: u64, gen: u32) -> Result<(), Errno> {
    if island.dsm.coherent() {
        island.dsm.reset(start, len, gen).map_err(|e| {
            island.log(1, format_args!("dropping {start:#x}+{len:#x}: {e}"));
            Errno::ENOMEM
        })
    } else {
        island
            .user
            .island_memory()
            .discard(start, len)
            .map_err(host_err)
    }
}

/// Puts `[start, start+len)` under the coherency protocol (when it runs). The pages already
/// written there (on the origin: the program's initial data, file contents, moved pages) are this
/// island's only copies: Not Replicated. Untouched pages start Unmapped. (Other islands get no
/// resident pages in such ranges: their writable memory only ever comes through the protocol.)
pub fn make_coherent(island: &Island, start: u64, len: u64) -> Result<(), Errno> {
    if !island.dsm.coherent() {
        return Ok(());
    }
    let failed = |e: crate::dsm::DsmError| {
        island.log(1, format_args!("registering {start:#x}+{len:#x}: {e}"));
        Errno::ENOMEM
    };
    // Register first: a page touched from now on faults into the protocol, so a page that is
    // not resident below cannot be written behind the engine's back.
    island.dsm.register(start, len).map_err(failed)?;
    if island.id != super::messages::ORIGIN {
        // Only the origin holds pages nobody else has: another island's resident pages there
        // are copies its engine fetched already (it heard of this change's generation first).
        return Ok(());
    }
    for page in resident_pages(island.user.island_memory(), start, len) {
        island
            .dsm
            .set_not_replicated(page, PAGE_SIZE)
            .map_err(failed)?;
    }
    Ok(())
}

/// The pages of `[start, start+len)` that are resident on the host (mincore).
fn resident_pages(mem: &IslandMemory, start: u64, len: u64) -> Vec<u64> {
    let pages = (len / PAGE_SIZE) as usize;
    let mut vec = vec![0u8; pages];
    let host = mem.host_base() + start;
    // SAFETY: the range lies inside our island reservation (callers pass a mapped range) and
    // `vec` has one byte per page of it.
    let r = unsafe { libc::mincore(host as *mut libc::c_void, len as usize, vec.as_mut_ptr()) };
    if r != 0 {
        return Vec::new();
    }
    vec.iter()
        .enumerate()
        .filter(|(_, &v)| v & 1 != 0)
        .map(|(i, _)| start + i as u64 * PAGE_SIZE)
        .collect()
}

fn unmap_locked(
    island: &Island,
    space: &mut AddressSpace,
    start: u64,
    len: u64,
    gen: u32,
) -> Result<(), Errno> {
    for (s, e) in space.unmap(start, len).map_err(vma_err)? {
        leave_range(island, s, e - s, gen)?;
    }
    Ok(())
}

/// The pages of `[start, start+len)` leave the layout (munmap, brk shrink, the source of a
/// moving mremap): PROT_NONE first, so that a thread whose fault the reset hands back faults
/// again on the protection (SIGSEGV, EFAULT), then reset. The range stays registered with the
/// userfaultfd: a copy that this island fetched at the reset's generation before its push
/// arrived (a system call that held the layout lock across the change) stays the engine's to
/// drop, and the host operations on it keep working; no access reaches it (PROT_NONE) until a
/// new mapping resets it again.
fn leave_range(island: &Island, start: u64, len: u64, gen: u32) -> Result<(), Errno> {
    let mem = island.user.island_memory();
    mem.protect(start, len, HostProt::None).map_err(host_err)?;
    drop_pages(island, start, len, gen)
}

pub fn sys_brk(island: &Island, want: u64, gen: u32) -> SysResult {
    let mem = island.user.island_memory();
    let mut space = island.user.layout_mut();
    let old = space.brk_value();
    match space.brk(want) {
        BrkChange::Unchanged(b) => Ok(b),
        BrkChange::Grew(s, e) => {
            if island.vm.ensure_slots(s, e - s).is_err()
                || drop_pages(island, s, e - s, gen).is_err()
                || mem.protect(s, e - s, HostProt::ReadWrite).is_err()
                || make_coherent(island, s, e - s).is_err()
            {
                // Undo: the layout must match the host protection. brk reports failure by
                // returning the unchanged break.
                space.brk(old);
                return Ok(old);
            }
            prefault(island, s, e - s);
            Ok(space.brk_value())
        }
        BrkChange::Shrank(s, e) => {
            leave_range(island, s, e - s, gen)?;
            Ok(space.brk_value())
        }
    }
}

const PROT_MASK: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;

#[allow(clippy::too_many_arguments)] // mmap's six arguments, and who serves it
pub fn sys_mmap(
    island: &Island,
    files: &Files,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    off: u64,
    gen: u32,
) -> SysResult {
    let flags = flags as i32;
    let kind_flags = flags & libc::MAP_SHARED_VALIDATE;
    // In Linux's order: the offset, the descriptor, the length, where it goes, the mapping type,
    // then what the file allows.
    if off % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let anon = flags & libc::MAP_ANONYMOUS != 0;
    let f = if anon {
        None
    } else {
        let f = files.get(fd as i32)?;
        if f.path_only() {
            return Err(Errno::EBADF);
        }
        Some(f)
    };
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    if fixed {
        if len > USER_END || addr > USER_END - len {
            return Err(Errno::ENOMEM);
        }
        if addr % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        // The island kernel's area is below the lowest address a program may map (Linux's
        // mmap_min_addr answers EPERM), and an island's address space ends below Linux's.
        if addr < crate::memory::layout::KERNEL_AREA_END {
            return Err(Errno::EPERM);
        }
        if addr + len > crate::memory::layout::MMAP_TOP {
            return Err(Errno::ENOMEM);
        }
    }
    if kind_flags == 0 {
        return Err(Errno::EINVAL);
    }
    // Bits beyond read, write and exec change nothing (Linux ignores them here).
    let prot = Prot((prot & PROT_MASK) as u32);
    // File mappings are copies: the root file system is read-only, so a private or read-only
    // shared mapping of a file cannot observe any difference.
    let file = match f {
        None => None,
        Some(f) => {
            if !f.readable() {
                return Err(Errno::EACCES);
            }
            if kind_flags == libc::MAP_SHARED && prot.writable() {
                return Err(Errno::EACCES);
            }
            if !f.mappable() {
                return Err(Errno::ENODEV);
            }
            Some(f)
        }
    };
    let mut space = island.user.layout_mut();
    let start = if fixed {
        if flags & libc::MAP_FIXED_NOREPLACE != 0 && !space.check_free(addr, len) {
            return Err(Errno::EEXIST);
        }
        addr
    } else {
        space.find_free(len, addr).map_err(vma_err)?
    };
    let kind = match &file {
        Some(f) => VmaKind::file(files.path_of(f), start, off),
        // MAP_NORESERVE: the program expects to touch little of it; never prefault.
        None if kind_flags != libc::MAP_PRIVATE => VmaKind::Shared,
        None if flags & libc::MAP_NORESERVE != 0 => VmaKind::Reserved,
        None => VmaKind::Anon,
    };
    map_locked(island, &mut space, start, len, prot, kind, gen, |g| {
        if let Some(f) = &file {
            copy_file(f, off, len, start, g)?;
        }
        Ok(())
    })?;
    Ok(start)
}

fn copy_file(
    f: &Arc<OpenFile>,
    off: u64,
    len: u64,
    start: u64,
    g: &GuestMemoryMmap,
) -> Result<(), Errno> {
    let mut buf = vec![0u8; (len as usize).min(IO_CHUNK)];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = f.pread(&mut buf[..want], off + done)?;
        if n == 0 {
            break;
        }
        vm_memory::Bytes::write_slice(g, &buf[..n], GuestAddress(start + done))
            .map_err(|_| Errno::EFAULT)?;
        done += n as u64;
    }
    Ok(())
}

pub fn sys_munmap(island: &Island, addr: u64, len: u64, gen: u32) -> SysResult {
    if addr % PAGE_SIZE != 0 || len == 0 || addr > USER_END || len > USER_END - addr {
        return Err(Errno::EINVAL);
    }
    let mut space = island.user.layout_mut();
    // (The island kernel's area holds no mapping of the program's: nothing to unmap there.)
    unmap_locked(island, &mut space, addr, len, gen)?;
    Ok(0)
}

/// PROT_SEM: accepted by mprotect on x86, changes nothing.
const PROT_SEM: u64 = 0x8;

/// mprotect. As on Linux, the range must start in a mapping; the change applies up to the first
/// hole, and a hole answers ENOMEM. (With several islands, a change is pushed to the others only
/// when the call succeeds: there, nothing changes unless all of it does.)
pub fn sys_mprotect(island: &Island, addr: u64, len: u64, prot: u64) -> SysResult {
    let (down, up) = (libc::PROT_GROWSDOWN as u64, libc::PROT_GROWSUP as u64);
    let grows = prot & (down | up);
    let prot = prot & !(down | up);
    if grows == down | up || addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    let mut end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
    if prot & !(PROT_MASK | PROT_SEM) != 0 {
        return Err(Errno::EINVAL);
    }
    let prot = Prot((prot & PROT_MASK) as u32);
    let mem = island.user.island_memory();
    let mut space = island.user.layout_mut();
    let first = space
        .vmas()
        .find(|v| v.end > addr && v.start < end)
        .cloned()
        .ok_or(Errno::ENOMEM)?;
    let mut start = addr;
    if grows == down {
        // From the start of a stack that grows down.
        if first.start >= end {
            return Err(Errno::ENOMEM);
        }
        if first.kind != VmaKind::Stack {
            return Err(Errno::EINVAL);
        }
        start = first.start;
    } else {
        if first.start > start {
            return Err(Errno::ENOMEM);
        }
        if grows == up {
            return Err(Errno::EINVAL);
        }
    }
    // The mapped part from `start` on, up to the first hole.
    let mut at = start;
    while at < end {
        match space.find(at) {
            Some(v) => at = v.end,
            None => break,
        }
    }
    let hole = at < end;
    if hole {
        if island.dsm.coherent() {
            return Err(Errno::ENOMEM);
        }
        end = at;
    }
    space.protect(start, end - start, prot).map_err(vma_err)?;
    mem.protect(start, end - start, host_prot(prot))
        .map_err(host_err)?;
    if hole {
        Err(Errno::ENOMEM)
    } else {
        Ok(0)
    }
}

/// MADV_* values Linux knows (`madvise_behavior_valid`).
fn advice_known(advice: i32) -> bool {
    matches!(advice, 0..=4 | 8..=25 | 100..=103)
}

/// Whether pages of this kind are backed by a file on Linux (a private file mapping: the
/// executable's segments, a file mmap).
fn file_backed(kind: &VmaKind) -> bool {
    matches!(kind, VmaKind::Elf | VmaKind::ElfCode | VmaKind::File { .. })
}

/// madvise. As on Linux, the advice applies to the mapped parts of the range and a hole makes
/// the answer ENOMEM; MADV_DONTNEED drops pages: anonymous ones read back as zeros, those of a
/// private file mapping (the executable's segments, a file mmap) as the file's bytes again.
pub fn sys_madvise(
    island: &Island,
    files: &Files,
    addr: u64,
    len: u64,
    advice: u64,
    gen: u32,
) -> SysResult {
    let advice = advice as i32;
    if !advice_known(advice) || addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    match advice {
        // MADV_HWPOISON, MADV_SOFT_OFFLINE: CAP_SYS_ADMIN only.
        100 | 101 => return Err(Errno::EPERM),
        // MADV_GUARD_INSTALL/REMOVE (guard pages) are not served.
        102 | 103 => return Err(Errno::EINVAL),
        _ => {}
    }
    let space = island.user.layout_mut();
    let hole = !space.fully_mapped(addr, end);
    let parts: Vec<(u64, u64, Prot, VmaKind)> = space
        .vmas()
        .filter(|v| v.end > addr && v.start < end)
        .map(|v| (v.start.max(addr), v.end.min(end), v.prot, v.kind.clone()))
        .collect();
    // Linux applies the advice VMA by VMA and stops at the first one it refuses.
    let refused = parts
        .iter()
        .enumerate()
        .find_map(|(i, (s, e, prot, kind))| {
            let shared = *kind == VmaKind::Shared;
            let e = match advice {
                libc::MADV_FREE if file_backed(kind) && !elf_bss(island, kind, *s, *e) => {
                    Errno::EINVAL
                }
                libc::MADV_FREE if shared => Errno::EINVAL,
                libc::MADV_REMOVE if file_backed(kind) => Errno::EACCES,
                libc::MADV_REMOVE if !shared => Errno::EINVAL,
                // MADV_WIPEONFORK: private anonymous memory only.
                18 if file_backed(kind) || shared => Errno::EINVAL,
                // MADV_POPULATE_READ / MADV_POPULATE_WRITE: the access must be allowed.
                22 if !prot.readable() => Errno::EINVAL,
                23 if !prot.writable() => Errno::EINVAL,
                _ => return None,
            };
            Some((i, e))
        });
    // With several islands, a change is pushed to the others only when the call succeeds: apply
    // nothing unless all of it applies (as before).
    if island.dsm.coherent() && (hole || refused.is_some()) {
        return Err(refused.map_or(Errno::ENOMEM, |(_, e)| e));
    }
    let applied = refused.map_or(parts.len(), |(i, _)| i);
    for (s, e, prot, kind) in &parts[..applied] {
        // MADV_DONTNEED, MADV_DONTNEED_LOCKED (shared memory keeps its pages); MADV_FREE frees
        // lazily on Linux (the contents may go at any time): here at once; MADV_REMOVE frees
        // shared memory.
        let drops = match advice {
            libc::MADV_DONTNEED | 24 => *kind != VmaKind::Shared,
            libc::MADV_FREE | libc::MADV_REMOVE => true,
            _ => false,
        };
        if drops {
            drop_range(island, files, *s, *e, *prot, kind, gen)?;
        }
    }
    if let Some((_, e)) = refused {
        Err(e)
    } else if hole {
        Err(Errno::ENOMEM)
    } else {
        Ok(0)
    }
}

/// Whether `[s, e)` of an executable segment lies in its .bss beyond its file pages (anonymous
/// memory on Linux).
fn elf_bss(island: &Island, kind: &VmaKind, s: u64, e: u64) -> bool {
    let (VmaKind::Elf | VmaKind::ElfCode) = kind else {
        return false;
    };
    let Some(image) = island.image.get() else {
        return false;
    };
    (s..e)
        .step_by(PAGE_SIZE as usize)
        .all(|page| image.file_offset(page).is_none())
}

/// MADV_DONTNEED of `[s, e)`, part of one VMA (the caller holds the layout's write lock).
fn drop_range(
    island: &Island,
    files: &Files,
    s: u64,
    e: u64,
    prot: Prot,
    kind: &VmaKind,
    gen: u32,
) -> Result<(), Errno> {
    if island.dsm.coherent() && !kind.is_local() {
        // Several islands: the pages are the protocol's. Anonymous ones (and, as before, the
        // executable's writable segment) become fresh zero pages on every island (the origin
        // pushes the change); a file mapping's copies keep their contents. Reading the file
        // again would have to go through the protocol: not done yet.
        // Fresh pages of a new generation on every island; the range stays registered, so a
        // page touched meanwhile faults into the protocol.
        if !matches!(kind, VmaKind::File { .. }) {
            drop_pages(island, s, e - s, gen)?;
        }
        return Ok(());
    }
    let mem = island.user.island_memory();
    mem.discard(s, e - s).map_err(host_err)?;
    match kind {
        VmaKind::Elf | VmaKind::ElfCode => {
            if let Some(image) = island.image.get() {
                refill(island, s, e, prot, |page, buf| image.page(page, buf))?;
            }
        }
        VmaKind::File { path, delta } => {
            // The file as it is now, as Linux would read it (a file gone since: zeros).
            if let Ok(fd) = files.open_read_only(path) {
                refill(island, s, e, prot, |page, buf| {
                    buf.fill(0);
                    let off = page.wrapping_add(*delta);
                    if off > i64::MAX as u64 {
                        return false;
                    }
                    // SAFETY: pread writes at most `buf.len()` bytes into `buf`.
                    let n = unsafe {
                        libc::pread(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            off as i64,
                        )
                    };
                    n > 0
                })?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Writes the pages of `[s, e)` that `fill` gives contents to (it returns false for a zero
/// page), into this island's memory. The host protection is lifted for the copy and put back.
fn refill(
    island: &Island,
    s: u64,
    e: u64,
    prot: Prot,
    mut fill: impl FnMut(u64, &mut [u8]) -> bool,
) -> Result<(), Errno> {
    let mem = island.user.island_memory();
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    let mut opened = false;
    let mut result = Ok(());
    for page in (s..e).step_by(PAGE_SIZE as usize) {
        if !fill(page, &mut buf) {
            continue;
        }
        if !opened && host_prot(prot) != HostProt::ReadWrite {
            mem.protect(s, e - s, HostProt::ReadWrite)
                .map_err(host_err)?;
            opened = true;
        }
        if vm_memory::Bytes::write_slice(mem.guest(), &buf, GuestAddress(page)).is_err() {
            result = Err(Errno::EFAULT);
            break;
        }
    }
    if opened {
        mem.protect(s, e - s, host_prot(prot)).map_err(host_err)?;
    }
    result
}

/// Writes into `[start, start+len)` (being mapped: writable on the host) what a private file
/// mapping of kind `kind` holds there (nothing for other kinds; zeros past the file's end).
fn fill_file_part(
    files: &Files,
    kind: &VmaKind,
    start: u64,
    len: u64,
    g: &GuestMemoryMmap,
) -> Result<(), Errno> {
    let VmaKind::File { path, delta } = kind else {
        return Ok(());
    };
    let Ok(fd) = files.open_read_only(path) else {
        return Ok(());
    };
    let mut buf = vec![0u8; (len as usize).min(1 << 16)];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let off = (start + done).wrapping_add(*delta);
        if off > i64::MAX as u64 {
            break;
        }
        // SAFETY: pread writes at most `want` bytes into `buf`.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), want, off as i64) };
        if n <= 0 {
            break;
        }
        vm_memory::Bytes::write_slice(g, &buf[..n as usize], GuestAddress(start + done))
            .map_err(|_| Errno::EFAULT)?;
        done += n as u64;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // mremap's five arguments, and who serves it
pub fn sys_mremap(
    island: &Island,
    files: &Files,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
    gen: u32,
) -> SysResult {
    let flags = flags as i32;
    let may_move = flags & libc::MREMAP_MAYMOVE != 0;
    let fixed = flags & libc::MREMAP_FIXED != 0;
    // Linux's order: the flags, the old address, the lengths; then a move to a fixed place
    // (mremap_to) or a shrink, which only unmaps the tail, or a grow.
    if flags & !(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) != 0
        || (fixed && !may_move)
        || old % PAGE_SIZE != 0
    {
        return Err(Errno::EINVAL);
    }
    let mut old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
    if new_len == 0 {
        return Err(Errno::EINVAL);
    }
    let mem = island.user.island_memory();
    let mut space = island.user.layout_mut();
    if fixed {
        if new_addr % PAGE_SIZE != 0
            || new_len > USER_END
            || new_addr > USER_END - new_len
            || (old.saturating_add(old_len) > new_addr && new_addr + new_len > old)
        {
            return Err(Errno::EINVAL);
        }
        if new_addr < crate::memory::layout::KERNEL_AREA_END
            || new_addr + new_len > crate::memory::layout::MMAP_TOP
        {
            return Err(Errno::ENOMEM);
        }
        // (What was at the new place goes when the moved pages are mapped there.)
        if old_len > new_len {
            unmap_locked(island, &mut space, old + new_len, old_len - new_len, gen)?;
            old_len = new_len;
        }
    } else if old_len >= new_len {
        // Shrinking only unmaps the tail (whatever is there).
        if old_len > new_len {
            unmap_locked(island, &mut space, old + new_len, old_len - new_len, gen)?;
        }
        return Ok(old);
    }
    // Linux's vma_to_resize: the old range must lie in one mapping; here, VMAs that follow each
    // other with the same protection and contents (Linux would have merged them into one).
    let vma = space.find(old).cloned().ok_or(Errno::EFAULT)?;
    let mut covered = vma.end;
    while covered - old < old_len {
        match space.find(covered) {
            Some(next) if next.prot == vma.prot && next.kind == vma.kind => covered = next.end,
            _ => break,
        }
    }
    // Both ranges are bounded by the address space from here on, so the sums below cannot wrap.
    if old_len > covered - old {
        return Err(Errno::EFAULT);
    }
    if old_len == 0 {
        // Linux duplicates a shared mapping for an old length of 0; not a private one.
        return Err(Errno::EINVAL);
    }
    if new_len > crate::memory::layout::STACK_TOP {
        return Err(Errno::ENOMEM);
    }
    if !fixed {
        let tail = old + old_len;
        if space.check_free(tail, new_len - old_len) {
            // A file mapping grows into the file's next bytes.
            map_locked(
                island,
                &mut space,
                tail,
                new_len - old_len,
                vma.prot,
                vma.kind.clone(),
                gen,
                |g| fill_file_part(files, &vma.kind, tail, new_len - old_len, g),
            )?;
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
    }
    let target = if fixed {
        new_addr
    } else {
        space.find_free(new_len, 0).map_err(vma_err)?
    };
    let copy = old_len.min(new_len);
    // Move the contents on the host: make the old range readable for the copy if it was not
    // (never downgrade it: other threads may still be using it).
    if host_prot(vma.prot) == HostProt::None {
        mem.protect(old, old_len, HostProt::Read)
            .map_err(host_err)?;
    }
    // The same bytes of the file at the new place.
    let moved_kind = vma.kind.moved(old, target);
    let moved = map_locked(
        island,
        &mut space,
        target,
        new_len,
        vma.prot,
        moved_kind.clone(),
        gen,
        |g| {
            let src = g
                .get_host_address(GuestAddress(old))
                .map_err(|_| Errno::EFAULT)?;
            let dst = g
                .get_host_address(GuestAddress(target))
                .map_err(|_| Errno::EFAULT)?;
            if !g.check_range(GuestAddress(old), copy as usize)
                || !g.check_range(GuestAddress(target), copy as usize)
            {
                return Err(Errno::EFAULT);
            }
            // SAFETY: both ranges lie in island memory (checked above), are host-accessible (old made
            // readable, target writable by map_locked) and do not overlap (target is a free range or,
            // with MREMAP_FIXED, checked disjoint). No Rust reference aliases guest memory.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, copy as usize) };
            fill_file_part(files, &moved_kind, target + copy, new_len - copy, g)
        },
    );
    if let Err(e) = moved {
        mem.protect(old, old_len, host_prot(vma.prot))
            .map_err(host_err)?;
        return Err(e);
    }
    unmap_locked(island, &mut space, old, old_len, gen)?;
    Ok(target)
}

impl AddressSpace {
    /// Whether `[start, start+len)` is a valid user range with no mapping in it.
    pub fn check_free(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        start % PAGE_SIZE == 0
            && start >= crate::memory::layout::KERNEL_AREA_END
            && end <= crate::memory::layout::MMAP_TOP
            && !self.vmas().any(|v| v.start < end && start < v.end)
    }
}

/// If `call` is an mremap that will move a writable mapping, its source range and protection:
/// the origin makes the source read-only on the other islands before it copies it (see
/// `Origin::mm`). The same checks as `sys_mremap`, on the layout as it is now.
pub fn moving_source(island: &Island, call: MmCall) -> Option<(u64, u64, Prot)> {
    let MmCall::Mremap {
        old,
        old_len,
        new_len,
        flags,
        ..
    } = call
    else {
        return None;
    };
    let flags = flags as i32;
    let (old_len, new_len) = (page_up(old_len)?, page_up(new_len)?);
    if old % PAGE_SIZE != 0 || old_len == 0 || new_len == 0 {
        return None;
    }
    let space = island.user.layout();
    let vma = space.find(old)?;
    if old_len > vma.end - old || !vma.prot.writable() || vma.kind.is_local() {
        return None;
    }
    let moves = if flags & libc::MREMAP_FIXED != 0 {
        true
    } else {
        new_len > old_len
            && flags & libc::MREMAP_MAYMOVE != 0
            && !space.check_free(old + old_len, new_len - old_len)
    };
    moves.then_some((old, old_len, vma.prot))
}

/// Applies a memory call to this island's layout (the origin's: it decides every change).
/// `files`: the program's files, for file mappings. `gen`: the generation of the pages the call
/// drops (a new one for each call; see `drop_pages`).
pub fn apply_call(island: &Island, files: &Files, call: MmCall, gen: u32) -> SysResult {
    match call {
        MmCall::Brk(want) => sys_brk(island, want, gen),
        MmCall::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            off,
        } => sys_mmap(island, files, addr, len, prot, flags, fd, off, gen),
        MmCall::Munmap { addr, len } => sys_munmap(island, addr, len, gen),
        MmCall::Mprotect { addr, len, prot } => sys_mprotect(island, addr, len, prot),
        MmCall::Madvise { addr, len, advice } => sys_madvise(island, files, addr, len, advice, gen),
        MmCall::Mremap {
            old,
            old_len,
            new_len,
            flags,
            new_addr,
        } => sys_mremap(island, files, old, old_len, new_len, flags, new_addr, gen),
    }
}

/// What a served memory call changed in the layout, as the other islands apply it.
/// `gen`: the generation the call gave the pages it dropped; each op that drops pages carries it.
pub fn layout_ops(
    island: &Island,
    call: MmCall,
    result: u64,
    old_brk: u64,
    gen: u32,
) -> Vec<LayoutOp> {
    let space = island.user.layout();
    let map_of = |start: u64, len: u64| -> Vec<LayoutOp> {
        let end = start.saturating_add(len);
        space
            .vmas()
            .filter(|v| v.start < end && start < v.end && !v.kind.is_local())
            .map(|v| {
                let s = v.start.max(start);
                LayoutOp::Map {
                    start: s,
                    len: v.end.min(end) - s,
                    prot: v.prot,
                    kind: v.kind.clone(),
                    gen,
                }
            })
            .collect()
    };
    let pages = |len: u64| page_up(len).unwrap_or(len);
    match call {
        MmCall::Brk(_) => {
            let (old, new) = (
                page_up(old_brk).unwrap_or(old_brk),
                page_up(space.brk_value()).unwrap_or(0),
            );
            if new > old {
                map_of(old, new - old)
            } else if new < old {
                vec![LayoutOp::Unmap {
                    start: new,
                    len: old - new,
                    gen,
                }]
            } else {
                Vec::new()
            }
        }
        MmCall::Mmap { len, .. } => map_of(result, pages(len)),
        MmCall::Munmap { addr, len } => vec![LayoutOp::Unmap {
            start: addr,
            len: pages(len),
            gen,
        }],
        MmCall::Mprotect { addr, len, prot } => {
            // PROT_GROWSDOWN changed the stack from its start.
            let start = if prot & libc::PROT_GROWSDOWN as u64 != 0 {
                space.find(addr).map_or(addr, |v| v.start)
            } else {
                addr
            };
            vec![LayoutOp::Protect {
                start,
                len: (addr + pages(len)).saturating_sub(start),
                prot: Prot((prot & PROT_MASK) as u32),
            }]
        }
        MmCall::Madvise { addr, len, advice } => {
            // The pages dropped get a new generation on every island (what sys_madvise dropped:
            // never a file mapping's copies with several islands, nor shared memory but by
            // MADV_REMOVE).
            let advice = advice as i32;
            if matches!(
                advice,
                libc::MADV_DONTNEED | 24 | libc::MADV_FREE | libc::MADV_REMOVE
            ) {
                let end = addr.saturating_add(pages(len));
                space
                    .vmas()
                    .filter(|v| {
                        v.start < end
                            && addr < v.end
                            && !v.kind.is_local()
                            && match v.kind {
                                VmaKind::File { .. } => false,
                                VmaKind::Shared => advice == libc::MADV_REMOVE,
                                _ => true,
                            }
                    })
                    .map(|v| {
                        let s = v.start.max(addr);
                        LayoutOp::Discard {
                            start: s,
                            len: v.end.min(end) - s,
                            gen,
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            }
        }
        MmCall::Mremap {
            old,
            old_len,
            new_len,
            ..
        } => {
            let (old_len, new_len) = (pages(old_len), pages(new_len));
            if result == old {
                if new_len > old_len {
                    map_of(old + old_len, new_len - old_len)
                } else if new_len < old_len {
                    vec![LayoutOp::Unmap {
                        start: old + new_len,
                        len: old_len - new_len,
                        gen,
                    }]
                } else {
                    Vec::new()
                }
            } else {
                let mut ops = map_of(result, new_len);
                ops.push(LayoutOp::Unmap {
                    start: old,
                    len: old_len,
                    gen,
                });
                ops
            }
        }
    }
}

/// Applies a layout change pushed by the origin (or its snapshot) to this island.
pub fn apply_layout_op(island: &Island, op: &LayoutOp) -> Result<(), Errno> {
    let mut space = island.user.layout_mut();
    match op {
        LayoutOp::Map {
            start,
            len,
            prot,
            kind,
            gen,
        } => map_locked(
            island,
            &mut space,
            *start,
            *len,
            *prot,
            kind.clone(),
            *gen,
            |_| Ok(()),
        ),
        LayoutOp::Unmap { start, len, gen } => unmap_locked(island, &mut space, *start, *len, *gen),
        LayoutOp::Discard { start, len, gen } => drop_pages(island, *start, *len, *gen),
        LayoutOp::Protect { start, len, prot } => {
            space.protect(*start, *len, *prot).map_err(vma_err)?;
            island
                .user
                .island_memory()
                .protect(*start, *len, host_prot(*prot))
                .map_err(host_err)
        }
    }
}
