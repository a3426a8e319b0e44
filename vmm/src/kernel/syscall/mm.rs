//! The memory family: brk, mmap, munmap, mprotect, mremap, madvise (served by the layout's owner,
//! the origin, through the services port) and msync.

use super::{sys, Call, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::messages::MmCall;
use crate::memory::layout::{page_up, PAGE_SIZE};

pub const CALLS: &[Syscall] = &[
    sys(libc::SYS_mmap, "mmap", Sys(mmap)),
    sys(
        libc::SYS_mprotect,
        "mprotect",
        Sys(|c| {
            mm(
                c,
                MmCall::Mprotect {
                    addr: c.a[0],
                    len: c.a[1],
                    prot: c.a[2],
                },
            )
        }),
    ),
    sys(
        libc::SYS_munmap,
        "munmap",
        Sys(|c| {
            mm(
                c,
                MmCall::Munmap {
                    addr: c.a[0],
                    len: c.a[1],
                },
            )
        }),
    ),
    sys(libc::SYS_brk, "brk", Sys(|c| mm(c, MmCall::Brk(c.a[0])))),
    sys(libc::SYS_mremap, "mremap", Sys(mremap)),
    sys(libc::SYS_msync, "msync", Sys(msync)),
    sys(
        libc::SYS_madvise,
        "madvise",
        Sys(|c| {
            mm(
                c,
                MmCall::Madvise {
                    addr: c.a[0],
                    len: c.a[1],
                    advice: c.a[2],
                },
            )
        }),
    ),
];

fn mm(c: &mut Call<'_>, call: MmCall) -> SysResult {
    c.island.services.mm(call)
}

fn mmap(c: &mut Call<'_>) -> SysResult {
    let a = c.a;
    mm(
        c,
        MmCall::Mmap {
            addr: a[0],
            len: a[1],
            prot: a[2],
            flags: a[3],
            fd: a[4],
            off: a[5],
        },
    )
}

fn mremap(c: &mut Call<'_>) -> SysResult {
    let a = c.a;
    mm(
        c,
        MmCall::Mremap {
            old: a[0],
            old_len: a[1],
            new_len: a[2],
            flags: a[3],
            new_addr: a[4],
        },
    )
}

/// msync: file mappings are copies of a read-only file, so there is never anything to write
/// back. Linux's checks: the flags (EINVAL), the alignment (EINVAL), then every page of the range
/// must be mapped (ENOMEM).
fn msync(c: &mut Call<'_>) -> SysResult {
    let (addr, len, flags) = (c.a[0], c.a[1], c.a[2] as i32);
    if flags & !(libc::MS_ASYNC | libc::MS_INVALIDATE | libc::MS_SYNC) != 0
        || addr % PAGE_SIZE != 0
        || (flags & libc::MS_ASYNC != 0 && flags & libc::MS_SYNC != 0)
    {
        return Err(Errno::EINVAL);
    }
    let end = page_up(len)
        .and_then(|len| addr.checked_add(len))
        .ok_or(Errno::ENOMEM)?;
    if c.island.user.layout().fully_mapped(addr, end) {
        Ok(0)
    } else {
        Err(Errno::ENOMEM)
    }
}
