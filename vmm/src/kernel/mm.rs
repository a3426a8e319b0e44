//! Memory system calls on one island: brk, mmap, munmap, mprotect, mremap, madvise, and the
//! layout changes the origin pushes. The layout lives in `vma::AddressSpace`; this module applies
//! each change to the island's memory on the host side (mprotect of the host mapping is how
//! protection is enforced, MADV_DONTNEED is how pages are dropped) and to its coherency layer,
//! under the layout's write lock so no kernel access to user memory runs meanwhile. Which island
//! decides a change and how it reaches the others is the origin's business (`origin.rs`).

use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::errno::{Errno, SysResult};
use super::fs::{Files, OpenFile};
use super::island::Island;
use super::messages::{LayoutOp, MmCall};
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
    let populate = !matches!(kind, VmaKind::Stack | VmaKind::File(_) | VmaKind::Reserved)
        && !island.config.no_prefault
        && !island.dsm.coherent();
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
    } else if prot.writable() && populate && len <= POPULATE_MAX {
        mem.populate(start, len);
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
            if !island.config.no_prefault && !island.dsm.coherent() && e - s <= POPULATE_MAX {
                mem.populate(s, e - s);
            }
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
    if len == 0 || kind_flags == 0 || off % PAGE_SIZE != 0 || prot & !PROT_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    if fixed && addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let prot = Prot(prot as u32);
    let anon = flags & libc::MAP_ANONYMOUS != 0;
    // File mappings are copies: the root file system is read-only, so a private or read-only
    // shared mapping of a file cannot observe any difference.
    let file = if anon {
        None
    } else {
        let f = files.table().get(fd as i32)?;
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
        Some(f) => VmaKind::File(f.path().to_string()),
        // MAP_NORESERVE: the program expects to touch little of it; never prefault.
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
    let mut buf = vec![0u8; 1 << 20];
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
    if addr % PAGE_SIZE != 0 || len == 0 {
        return Err(Errno::EINVAL);
    }
    let mut space = island.user.layout_mut();
    unmap_locked(island, &mut space, addr, len, gen)?;
    Ok(0)
}

pub fn sys_mprotect(island: &Island, addr: u64, len: u64, prot: u64) -> SysResult {
    let grow = (libc::PROT_GROWSDOWN | libc::PROT_GROWSUP) as u64;
    if addr % PAGE_SIZE != 0 || prot & !(PROT_MASK | grow) != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    if len == 0 {
        return Ok(0);
    }
    let prot = Prot((prot & PROT_MASK) as u32);
    let mem = island.user.island_memory();
    let mut space = island.user.layout_mut();
    space.protect(addr, len, prot).map_err(vma_err)?;
    mem.protect(addr, len, host_prot(prot)).map_err(host_err)?;
    Ok(0)
}

pub fn sys_madvise(island: &Island, addr: u64, len: u64, advice: u64, gen: u32) -> SysResult {
    if addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    match advice as i32 {
        libc::MADV_DONTNEED | libc::MADV_FREE => {
            let mem = island.user.island_memory();
            let space = island.user.layout();
            if len == 0 {
                return Ok(0);
            }
            if !space.fully_mapped(addr, addr.checked_add(len).ok_or(Errno::EINVAL)?) {
                return Err(Errno::ENOMEM);
            }
            // Anonymous pages read back as zeros; file mappings (copies) keep their contents, as
            // re-reading the unchanged read-only file would give the same bytes.
            let ranges: Vec<(u64, u64)> = space
                .vmas()
                .filter(|v| {
                    v.end > addr && v.start < addr + len && !matches!(v.kind, VmaKind::File(_))
                })
                .map(|v| (v.start.max(addr), v.end.min(addr + len)))
                .collect();
            drop(space);
            for (s, e) in ranges {
                // Fresh zero pages on every island: a new generation. The range stays
                // registered: a page touched meanwhile faults into the protocol.
                if island.dsm.coherent() {
                    drop_pages(island, s, e - s, gen)?;
                } else {
                    mem.discard(s, e - s).map_err(host_err)?;
                }
            }
            Ok(0)
        }
        libc::MADV_NORMAL
        | libc::MADV_RANDOM
        | libc::MADV_SEQUENTIAL
        | libc::MADV_WILLNEED
        | libc::MADV_HUGEPAGE
        | libc::MADV_NOHUGEPAGE
        | libc::MADV_DONTDUMP
        | libc::MADV_DODUMP
        | libc::MADV_DONTFORK
        | libc::MADV_DOFORK
        | libc::MADV_MERGEABLE
        | libc::MADV_UNMERGEABLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sys_mremap(
    island: &Island,
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
    if old % PAGE_SIZE != 0
        || flags & !(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) != 0
        || (fixed && (!may_move || new_addr % PAGE_SIZE != 0))
    {
        return Err(Errno::EINVAL);
    }
    let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
    if new_len == 0 || old_len == 0 {
        return Err(Errno::EINVAL);
    }
    let mem = island.user.island_memory();
    let mut space = island.user.layout_mut();
    let vma = space.find(old).cloned().ok_or(Errno::EFAULT)?;
    // Both ranges are bounded by the address space from here on, so the sums below cannot wrap.
    if old_len > vma.end - old {
        return Err(Errno::EFAULT);
    }
    if new_len > crate::memory::layout::STACK_TOP {
        return Err(Errno::ENOMEM);
    }
    if !fixed {
        if new_len <= old_len {
            if new_len < old_len {
                unmap_locked(island, &mut space, old + new_len, old_len - new_len, gen)?;
            }
            return Ok(old);
        }
        let tail = old + old_len;
        if space.check_free(tail, new_len - old_len) {
            map_locked(
                island,
                &mut space,
                tail,
                new_len - old_len,
                vma.prot,
                vma.kind.clone(),
                gen,
                |_| Ok(()),
            )?;
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
    }
    let target = if fixed {
        if new_addr.checked_add(new_len).is_none() {
            return Err(Errno::EINVAL);
        }
        if new_addr < old + old_len && old < new_addr + new_len {
            return Err(Errno::EINVAL);
        }
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
    let moved = map_locked(
        island,
        &mut space,
        target,
        new_len,
        vma.prot,
        vma.kind.clone(),
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
            Ok(())
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
        MmCall::Madvise { addr, len, advice } => sys_madvise(island, addr, len, advice, gen),
        MmCall::Mremap {
            old,
            old_len,
            new_len,
            flags,
            new_addr,
        } => sys_mremap(island, old, old_len, new_len, flags, new_addr, gen),
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
        MmCall::Mprotect { addr, len, prot } => vec![LayoutOp::Protect {
            start: addr,
            len: pages(len),
            prot: Prot((prot & PROT_MASK) as u32),
        }],
        MmCall::Madvise { addr, len, advice } => {
            if matches!(advice as i32, libc::MADV_DONTNEED | libc::MADV_FREE) {
                // The anonymous parts read back as zeros: a new generation of their pages.
                let end = addr.saturating_add(pages(len));
                space
                    .vmas()
                    .filter(|v| {
                        v.start < end
                            && addr < v.end
                            && !v.kind.is_local()
                            && !matches!(v.kind, VmaKind::File(_))
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
