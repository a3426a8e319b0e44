//! The thread family: creating threads (clone, clone3: the origin places them), ending them
//! (exit, exit_group), their ids, TLS and robust lists, and scheduling (affinity, yield, getcpu).

use super::{ret, sys, Action, Call, Handler::Action as Act, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, ExitStatus, SysResult};
use std::sync::atomic::Ordering;

use crate::kernel::island::outside_of;
use crate::kernel::messages::{Request, ThreadImage, ThreadOp};
use crate::kernel::services::value;
use crate::kernel::uaccess::USER_END;

pub const CALLS: &[Syscall] = &[
    sys(
        libc::SYS_sched_yield,
        "sched_yield",
        Sys(|_| {
            std::thread::yield_now();
            Ok(0)
        }),
    ),
    sys(
        libc::SYS_clone,
        "clone",
        Act(|c| {
            let a = c.a;
            clone(
                c,
                CloneArgs {
                    flags: a[0] & !0xff,
                    stack: a[1],
                    parent_tid: a[2],
                    child_tid: a[3],
                    tls: a[4],
                    exit_signal: a[0] & 0xff,
                },
            )
        }),
    ),
    sys(libc::SYS_fork, "fork", Sys(no_new_processes)),
    sys(libc::SYS_vfork, "vfork", Sys(no_new_processes)),
    sys(libc::SYS_execve, "execve", Sys(no_new_processes)),
    sys(
        libc::SYS_exit,
        "exit",
        Act(|c| Action::ExitThread((c.a[0] & 0xff) as i32)),
    ),
    sys(libc::SYS_wait4, "wait4", Sys(|_| Err(Errno::ECHILD))),
    sys(libc::SYS_prctl, "prctl", Sys(prctl)),
    sys(libc::SYS_arch_prctl, "arch_prctl", Sys(arch_prctl)),
    sys(libc::SYS_gettid, "gettid", Sys(|c| Ok(u64::from(c.t.tid)))),
    sys(
        libc::SYS_sched_setaffinity,
        "sched_setaffinity",
        Act(sched_setaffinity),
    ),
    sys(
        libc::SYS_sched_getaffinity,
        "sched_getaffinity",
        Sys(sched_getaffinity),
    ),
    sys(
        libc::SYS_set_tid_address,
        "set_tid_address",
        Sys(|c| {
            c.t.clear_child_tid = c.a[0];
            Ok(u64::from(c.t.tid))
        }),
    ),
    sys(
        libc::SYS_exit_group,
        "exit_group",
        Act(|c| {
            let code = (c.a[0] & 0xff) as i32;
            c.island.services.exit_group(ExitStatus::Code(code));
            Action::Stop
        }),
    ),
    sys(
        libc::SYS_set_robust_list,
        "set_robust_list",
        Sys(|c| {
            // sizeof(struct robust_list_head)
            if c.a[1] != 24 {
                return Err(Errno::EINVAL);
            }
            c.t.robust_list = c.a[0];
            Ok(0)
        }),
    ),
    sys(libc::SYS_getcpu, "getcpu", Sys(getcpu)),
    sys(libc::SYS_execveat, "execveat", Sys(no_new_processes)),
    // rseq: glibc copes with ENOSYS (no restartable sequences on an island).
    sys(libc::SYS_rseq, "rseq", Sys(|_| Err(Errno::ENOSYS))),
    sys(libc::SYS_clone3, "clone3", Act(clone3)),
];

fn no_new_processes(c: &mut Call<'_>) -> SysResult {
    c.island.log(
        1,
        format_args!(
            "{}: new processes and exec are not supported on an island yet",
            super::name(c.nr)
        ),
    );
    Err(Errno::ENOSYS)
}

/// Whether `tid` is a live thread of the program (on any island).
fn has_thread(c: &Call<'_>, tid: u32) -> bool {
    tid == c.t.tid || c.island.thread(tid).is_some() || c.island.services.locate(tid).is_some()
}

fn prctl(c: &mut Call<'_>) -> SysResult {
    match c.a[0] as i32 {
        // Thread names and the like are accepted and not kept.
        libc::PR_SET_NAME | libc::PR_SET_DUMPABLE | libc::PR_SET_PDEATHSIG => Ok(0),
        libc::PR_GET_DUMPABLE => Ok(1),
        _ => Err(Errno::EINVAL),
    }
}

fn arch_prctl(c: &mut Call<'_>) -> SysResult {
    let (code, addr) = (c.a[0], c.a[1]);
    let t = &mut *c.t;
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    const ARCH_GET_GS: u64 = 0x1004;
    match code {
        ARCH_SET_FS => {
            if addr >= USER_END {
                return Err(Errno::EPERM);
            }
            t.new_fs_base = Some(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            let fs = match t.new_fs_base {
                Some(f) => f,
                None => t.vcpu.sregs().map_err(|_| Errno::EIO)?.fs.base,
            };
            c.island.user.write_obj(addr, fs).map(|_| 0)
        }
        ARCH_SET_GS => {
            if addr >= USER_END {
                return Err(Errno::EPERM);
            }
            let mut s = t.vcpu.sregs().map_err(|_| Errno::EIO)?;
            s.gs.base = addr;
            t.vcpu.set_sregs(&s).map_err(|_| Errno::EIO)?;
            Ok(0)
        }
        ARCH_GET_GS => {
            let gs = t.vcpu.sregs().map_err(|_| Errno::EIO)?.gs.base;
            c.island.user.write_obj(addr, gs).map(|_| 0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Bytes of the program machine's CPU mask: one word (at most 64 islands; island i is CPU i).
const CPU_MASK_BYTES: u64 = 8;

/// sched_getaffinity: the islands the thread may run on. Like Linux, the buffer must hold the
/// whole mask (a multiple of the word size), and the answer is the mask's size.
fn sched_getaffinity(c: &mut Call<'_>) -> SysResult {
    let (pid, len, mask) = (c.a[0], c.a[1], c.a[2]);
    if len < CPU_MASK_BYTES || len % CPU_MASK_BYTES != 0 {
        return Err(Errno::EINVAL);
    }
    let tid = pid as u32;
    let affinity = if pid == 0 || tid == c.t.tid {
        c.t.status.affinity.load(Ordering::Relaxed)
    } else if let Some(t) = c.island.thread(tid) {
        t.affinity.load(Ordering::Relaxed)
    } else if c.island.services.locate(tid).is_some() {
        // A thread of another island: its mask stays there; every island is what it may use
        // unless it was told otherwise.
        u64::MAX
    } else {
        return Err(Errno::ESRCH);
    };
    let visible = affinity & c.island.all_islands();
    c.island.user.write(mask, &visible.to_le_bytes())?;
    Ok(CPU_MASK_BYTES)
}

/// sched_setaffinity: a thread whose island is not in the new mask migrates to the first island
/// of the mask (pthread_setaffinity_np moves a thread; OMP_PLACES places OpenMP's threads).
fn sched_setaffinity(c: &mut Call<'_>) -> Action {
    let (pid, len, ptr) = (c.a[0], c.a[1], c.a[2]);
    let mask = match read_cpu_mask(c, len, ptr) {
        Ok(m) => m & c.island.all_islands(),
        Err(e) => return ret(Err(e)),
    };
    if mask == 0 {
        return ret(Err(Errno::EINVAL));
    }
    let tid = pid as u32;
    if pid != 0 && tid != c.t.tid {
        if !has_thread(c, tid) {
            return ret(Err(Errno::ESRCH));
        }
        let op = ThreadOp::Affinity(mask);
        if c.island.thread_control(tid, op) {
            return ret(Ok(0));
        }
        return ret(c.island.services.thread_control(tid, op).map(|_| 0));
    }
    c.t.status.affinity.store(mask, Ordering::Relaxed);
    match outside_of(mask, c.island.id) {
        Some(to) => Action::Migrate { to, resume: None },
        None => ret(Ok(0)),
    }
}

/// A CPU mask from the program: the first word of it (islands beyond 64 do not exist).
fn read_cpu_mask(c: &Call<'_>, len: u64, ptr: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let n = len.min(CPU_MASK_BYTES) as usize;
    let mut b = [0u8; 8];
    c.island.user.read(ptr, &mut b[..n])?;
    Ok(u64::from_le_bytes(b))
}

/// getcpu: the island is the CPU; one NUMA node.
fn getcpu(c: &mut Call<'_>) -> SysResult {
    c.island
        .time_syscalls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (cpu, node) = (c.a[0], c.a[1]);
    c.island.user.write_opt(cpu, c.island.id as u32)?;
    c.island.user.write_opt(node, 0u32)?;
    Ok(0)
}

/// Arguments of clone/clone3 (already decoded).
#[derive(Debug, Clone, Copy, Default)]
struct CloneArgs {
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
    exit_signal: u64,
}

const THREAD_FLAGS: u64 = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
const SUPPORTED: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_SETTID
    | libc::CLONE_CHILD_CLEARTID
    | libc::CLONE_DETACHED
    | libc::CLONE_IO) as u64;

/// clone/clone3 for threads. Processes (fork, vfork, posix_spawn) are not supported yet: ENOSYS.
fn clone(c: &mut Call<'_>, a: CloneArgs) -> Action {
    let island = c.island;
    let start = match thread_start(c, a) {
        Ok(s) => s,
        Err(e) => return ret(Err(e)),
    };
    let tid = start.tid;
    let target = match island.services.clone_thread(island.id, tid) {
        Ok(t) => t,
        Err(e) => return ret(Err(e)),
    };
    if target == island.id {
        return Action::StartThread(Box::new(start));
    }
    let r = island
        .link
        .call(target, Request::StartThread(Box::new(start)))
        .map_err(|_| Errno::EAGAIN)
        .and_then(value);
    if r.is_err() {
        island.services.thread_exited(tid, 0);
    }
    ret(r)
}

/// The new thread's state, from clone's arguments and the parent's registers.
fn thread_start(c: &mut Call<'_>, a: CloneArgs) -> Result<ThreadImage, Errno> {
    let (p, parent, regs) = (c.island, &*c.t, c.regs);
    if a.flags & THREAD_FLAGS != THREAD_FLAGS || a.flags & libc::CLONE_VFORK as u64 != 0 {
        p.log(
            1,
            format_args!(
                "clone flags {:#x}: new processes (fork/vfork) are not supported",
                a.flags
            ),
        );
        return Err(Errno::ENOSYS);
    }
    if a.flags & !(SUPPORTED | 0xff) != 0 || a.exit_signal != 0 {
        p.log(
            1,
            format_args!(
                "clone: unsupported flags {:#x} / exit signal {}",
                a.flags, a.exit_signal
            ),
        );
        return Err(Errno::EINVAL);
    }
    // The child's FS base is checked as arch_prctl(ARCH_SET_FS) checks it, before the thread
    // exists (Linux's copy_thread): a TLS outside user space is EPERM.
    if a.flags & libc::CLONE_SETTLS as u64 != 0 && a.tls >= USER_END {
        return Err(Errno::EPERM);
    }
    let tid = p.alloc_tid();
    // Linux ignores a failure to store the tid (a bad pointer does not fail the clone).
    if a.flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
        let _ = p.user.write_obj(a.parent_tid, tid);
    }
    if a.flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
        let _ = p.user.write_obj(a.child_tid, tid);
    }
    let fpu = parent.vcpu.fxsave().map_err(|_| Errno::EAGAIN)?;
    let fs_base = if a.flags & libc::CLONE_SETTLS as u64 != 0 {
        a.tls
    } else {
        parent.vcpu.sregs().map_err(|_| Errno::EAGAIN)?.fs.base
    };
    let mut child_regs = *regs;
    child_regs.rax = 0;
    child_regs.rip = regs.rcx;
    child_regs.rflags = (regs.r11 & 0x3c_7fd7) | 0x2;
    if a.stack != 0 {
        child_regs.rsp = a.stack;
    }
    let gs_base = parent.vcpu.sregs().map_err(|_| Errno::EAGAIN)?.gs.base;
    Ok(ThreadImage {
        gs_base,
        sigmask: parent.sigmask,
        clear_child_tid: if a.flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
            a.child_tid
        } else {
            0
        },
        // A new thread inherits its creator's CPU affinity (island i is CPU i).
        affinity: parent
            .status
            .affinity
            .load(std::sync::atomic::Ordering::Relaxed),
        ..ThreadImage::new(tid, child_regs, fs_base, fpu)
    })
}

/// clone3: decodes `struct clone_args`.
fn clone3(c: &mut Call<'_>) -> Action {
    match clone3_args(c) {
        Ok(a) => clone(c, a),
        Err(e) => ret(Err(e)),
    }
}

fn clone3_args(c: &mut Call<'_>) -> Result<CloneArgs, Errno> {
    let (args, size) = (c.a[0], c.a[1]);
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let raw = c.island.user.read_vec(args, size.min(88) as usize)?;
    let field = |i: usize| -> u64 {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, ...
    // (pidfd is only read with CLONE_PIDFD, which `clone` refuses.)
    if field(8) != 0 || field(9) != 0 {
        c.island
            .log(1, format_args!("clone3: set_tid is not supported"));
        return Err(Errno::EINVAL);
    }
    let (stack, stack_size) = (field(5), field(6));
    let top = if stack == 0 {
        0
    } else {
        stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
    };
    Ok(CloneArgs {
        flags: field(0),
        child_tid: field(2),
        parent_tid: field(3),
        exit_signal: field(4),
        stack: top,
        tls: field(7),
    })
}
