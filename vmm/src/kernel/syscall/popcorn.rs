//! Popcorn Linux's thread-migration calls (x86_64), with Popcorn's arguments and errors:
//! `popcorn_migrate(int nid, void *uregs)`, `popcorn_propose_migration(pid_t tid, int nid)`,
//! `popcorn_get_thread_status(struct popcorn_thread_status *)` and
//! `popcorn_get_node_info(int *my_nid, struct popcorn_node_info[32])`. A node is an island.
//!
//! Popcorn's own numbers (330-333 on its 4.4 kernel, 434-437 on 5.2) are Linux calls today
//! (pkey_alloc, statx, clone3...), so popvmm serves these at 900-903 by default, and at 330-333
//! only with `--popcorn-abi 4.4` (which hides pkey_alloc, pkey_free, statx and io_pgetevents:
//! glibc falls back from statx to fstatat by itself).
//!
//! Errors as Popcorn returns them: EINVAL for a node outside 0..31 or a bad pointer, EBUSY when
//! the node is the current one, EAGAIN when it is offline (no such island); nid -1 is the
//! proposed node.

use kvm_bindings::kvm_regs;

use super::{ret, sys, Action, Call, Handler::Action as Act, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::island::POPCORN_CALLS;
use crate::kernel::messages::{IslandId, ThreadOp, ORIGIN};

/// The calls' numbers in popvmm's default ABI.
pub const SYS_POPCORN_MIGRATE: libc::c_long = POPCORN_CALLS as libc::c_long;
pub const SYS_POPCORN_PROPOSE_MIGRATION: libc::c_long = 901;
pub const SYS_POPCORN_GET_THREAD_STATUS: libc::c_long = 902;
pub const SYS_POPCORN_GET_NODE_INFO: libc::c_long = 903;

/// Popcorn's node limit (the size of `popcorn_get_node_info`'s array).
pub const MAX_POPCORN_NODES: usize = 32;

pub const CALLS: &[Syscall] = &[
    sys(SYS_POPCORN_MIGRATE, "popcorn_migrate", Act(migrate)),
    sys(
        SYS_POPCORN_PROPOSE_MIGRATION,
        "popcorn_propose_migration",
        Sys(propose),
    ),
    sys(
        SYS_POPCORN_GET_THREAD_STATUS,
        "popcorn_get_thread_status",
        Sys(thread_status),
    ),
    sys(
        SYS_POPCORN_GET_NODE_INFO,
        "popcorn_get_node_info",
        Sys(node_info),
    ),
];

/// Popcorn's x86_64 register set (`struct regset_x86_64`): rip, 16 general registers, mmx[8],
/// xmm[16] (16-byte aligned), st[8] (16 bytes each), six segment selectors (u32), rflags.
pub mod regset {
    pub const RIP: usize = 0;
    /// rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, in this order.
    pub const GPRS: usize = 8;
    pub const MMX: usize = 136;
    pub const XMM: usize = 208;
    pub const ST: usize = 464;
    pub const SEGMENTS: usize = 592;
    pub const RFLAGS: usize = 616;
    pub const SIZE: usize = 624;
}

/// A node number as Popcorn takes it: -1 means the proposed node.
fn node(c: &Call<'_>, nid: i32) -> Result<IslandId, Errno> {
    let nid = if nid == -1 {
        c.t.status.proposed().ok_or(Errno::EINVAL)? as i32
    } else {
        nid
    };
    if !(0..MAX_POPCORN_NODES as i32).contains(&nid) {
        return Err(Errno::EINVAL);
    }
    let nid = nid as IslandId;
    if nid >= c.island.link.islands() {
        return Err(Errno::EAGAIN);
    }
    Ok(nid)
}

/// popcorn_migrate(nid, uregs): the thread moves to island `nid`; with `uregs`, it resumes there
/// from that register set (rip, general registers, rflags; the x87, MMX and SSE state travels
/// from the vCPU itself, and libpopcorn reloads xmm from its own copy), without, it returns 0
/// there.
fn migrate(c: &mut Call<'_>) -> Action {
    let (nid, uregs) = (c.a[0] as i32, c.a[1]);
    let to = match node(c, nid) {
        Ok(to) if to == c.island.id => return ret(Err(Errno::EBUSY)),
        Ok(to) => to,
        Err(e) => return ret(Err(e)),
    };
    let resume = if uregs == 0 {
        None
    } else {
        match read_regset(c, uregs) {
            Ok(r) => Some(Box::new(r)),
            Err(_) => return ret(Err(Errno::EINVAL)),
        }
    };
    Action::Migrate { to, resume }
}

fn read_regset(c: &Call<'_>, at: u64) -> Result<kvm_regs, Errno> {
    let b = c.island.user.read_vec(at, regset::SIZE)?;
    let word = |off: usize| -> u64 {
        b.get(off..off + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let g = |i: usize| word(regset::GPRS + 8 * i);
    Ok(kvm_regs {
        rip: word(regset::RIP),
        rax: g(0),
        rdx: g(1),
        rcx: g(2),
        rbx: g(3),
        rsi: g(4),
        rdi: g(5),
        rbp: g(6),
        rsp: g(7),
        r8: g(8),
        r9: g(9),
        r10: g(10),
        r11: g(11),
        r12: g(12),
        r13: g(13),
        r14: g(14),
        r15: g(15),
        // The flags user mode may hold (as sigreturn allows), interrupts on.
        rflags: (word(regset::RFLAGS) & 0x3c_7fd7) | 0x202,
    })
}

/// popcorn_propose_migration(tid, nid): proposes island `nid` for thread `tid` (0: the caller),
/// which `check_migrate` (libpopcorn) reads and `popcorn_migrate(-1, ...)` follows.
fn propose(c: &mut Call<'_>) -> SysResult {
    let (tid, nid) = (c.a[0] as u32, c.a[1] as i32);
    let to = node(c, nid)?;
    if tid == 0 || tid == c.t.tid {
        c.t.status.set_proposed(Some(to));
        return Ok(0);
    }
    let op = ThreadOp::Propose(Some(to));
    if c.island.thread_control(tid, op) {
        return Ok(0);
    }
    c.island.services.thread_control(tid, op).map(|_| 0)
}

/// popcorn_get_thread_status(struct popcorn_thread_status { int current_nid; int proposed_nid;
/// int peer_nid; pid_t peer_pid; }): the island, the proposal (-1: none), and for a thread away
/// from the origin the origin and the program's pid (-1 and 0 on the origin).
fn thread_status(c: &mut Call<'_>) -> SysResult {
    let at = c.a[0];
    let current = c.island.id as i32;
    let proposed = c.t.status.proposed().map_or(-1, |p| p as i32);
    let (peer_nid, peer_pid) = if c.island.id == ORIGIN {
        (-1i32, 0u32)
    } else {
        (ORIGIN as i32, c.island.pid)
    };
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&current.to_le_bytes());
    b[4..8].copy_from_slice(&proposed.to_le_bytes());
    b[8..12].copy_from_slice(&peer_nid.to_le_bytes());
    b[12..16].copy_from_slice(&peer_pid.to_le_bytes());
    c.island.user.write(at, &b).map_err(|_| Errno::EINVAL)?;
    Ok(0)
}

/// popcorn_get_node_info(int *my_nid, struct popcorn_node_info { unsigned int status; int arch;
/// int distance; } [32]): status 1 for an island of the program, arch 1 (x86), distance 0 to
/// itself and 1 to the others; offline nodes 0, -1, -1.
fn node_info(c: &mut Call<'_>) -> SysResult {
    let (my_nid, info) = (c.a[0], c.a[1]);
    let islands = c.island.link.islands();
    let mut table = vec![0u8; 12 * MAX_POPCORN_NODES];
    for (i, entry) in table.chunks_exact_mut(12).enumerate() {
        let (status, arch, distance): (u32, i32, i32) = if i < islands {
            (1, 1, i32::from(i != c.island.id))
        } else {
            (0, -1, -1)
        };
        entry[0..4].copy_from_slice(&status.to_le_bytes());
        entry[4..8].copy_from_slice(&arch.to_le_bytes());
        entry[8..12].copy_from_slice(&distance.to_le_bytes());
    }
    if my_nid != 0 {
        c.island
            .user
            .write_obj(my_nid, c.island.id as i32)
            .map_err(|_| Errno::EINVAL)?;
    }
    c.island
        .user
        .write(info, &table)
        .map_err(|_| Errno::EINVAL)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::kernel::island::PopcornAbi;

    #[test]
    fn the_4_4_abi_moves_the_calls_to_popcorns_numbers() {
        assert_eq!(PopcornAbi::Popvmm.translate(332), 332, "statx");
        assert_eq!(PopcornAbi::Popvmm.translate(900), 900);
        assert_eq!(PopcornAbi::Linux44.translate(330), 900);
        assert_eq!(PopcornAbi::Linux44.translate(333), 903);
        assert_eq!(PopcornAbi::Linux44.translate(900), u64::MAX);
        assert_eq!(PopcornAbi::Linux44.translate(1), 1);
    }
}
