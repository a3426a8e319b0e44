//! Signal delivery to handlers: the x86-64 `rt_sigframe` Linux builds on the user stack (or the
//! sigaltstack), and `rt_sigreturn`, which restores the interrupted context from it.
//!
//! Layout (as the kernel's arch/x86/kernel/signal_64.c): `pretcode` (sa_restorer), the ucontext
//! (flags, link, stack_t, sigcontext, sigset), the siginfo, and below them the 512-byte FXSAVE
//! image the sigcontext's `fpstate` points to. Every access goes through `UserMemory`.

use kvm_bindings::kvm_regs;

use super::errno::Errno;
use super::signal::SigAction;
use super::thread::Thread;
use super::uaccess::UserMemory;
use crate::kvm::FxSave;

const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_NODEFER: u64 = 0x4000_0000;
/// The handler is reset to the default action once delivered (the caller does it: the actions
/// are the origin's).
pub const SA_RESETHAND: u64 = 0x8000_0000;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
const SS_ONSTACK: u32 = 1;

const FXSAVE_SIZE: u64 = 512;
/// pretcode + ucontext (304) + siginfo (128).
const FRAME_SIZE: u64 = 8 + 304 + 128;
const UC_OFFSET: u64 = 8;
const MCONTEXT_OFFSET: u64 = UC_OFFSET + 40;
const SIGMASK_OFFSET: u64 = UC_OFFSET + 296;
const INFO_OFFSET: u64 = UC_OFFSET + 304;
/// rflags bits a handler may change through its sigcontext (Linux's FIX_EFLAGS).
const FIX_EFLAGS: u64 = 0x4_0dd5 | 0x1_0000;

/// What the siginfo of a delivered signal says.
#[derive(Debug, Clone, Copy, Default)]
pub struct SigInfo {
    pub code: i32,
    /// Fault address (SIGSEGV, SIGBUS, SIGFPE, SIGILL) or 0.
    pub addr: u64,
    /// Sender pid and uid (kill, tgkill).
    pub pid: u32,
    pub uid: u32,
    pub trapno: u64,
    pub err: u64,
}

/// An FXSAVE image as sigreturn takes it from the program: reserved MXCSR bits cleared, as
/// Linux does (a set reserved bit would make the restore fault).
fn sanitized(mut fx: FxSave) -> FxSave {
    let mxcsr = fx.mxcsr() & 0xffff;
    fx.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    fx
}

fn put(buf: &mut [u8], off: u64, v: u64) {
    let o = off as usize;
    buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], off: u64) -> u64 {
    let o = off as usize;
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[o..o + 8]);
    u64::from_le_bytes(w)
}

/// The general registers in sigcontext order (r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp,
/// rip, eflags).
fn sigcontext_regs(r: &kvm_regs) -> [u64; 18] {
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.rflags,
    ]
}

/// Builds a signal frame for `sig` on the thread's stack from the interrupted context `regs`, and
/// points `regs` at the handler. Err: the frame cannot be written (Linux then kills with SIGSEGV).
pub fn setup(
    user: &UserMemory,
    t: &mut Thread,
    sig: u64,
    act: &SigAction,
    info: &SigInfo,
    regs: &mut kvm_regs,
) -> Result<(), Errno> {
    // x86-64 handlers return through sa_restorer; without it there is nowhere to return to.
    if act.flags & SA_RESTORER == 0 {
        return Err(Errno::EFAULT);
    }
    let (ss_sp, ss_flags, ss_size) = t.altstack;
    let on_alt = ss_flags & libc::SS_DISABLE as u32 == 0
        && regs.rsp > ss_sp
        && regs.rsp <= ss_sp.wrapping_add(ss_size);
    let mut sp =
        if act.flags & SA_ONSTACK != 0 && ss_flags & libc::SS_DISABLE as u32 == 0 && !on_alt {
            ss_sp.wrapping_add(ss_size)
        } else {
            // Skip the 128-byte red zone of the interrupted function.
            regs.rsp.wrapping_sub(128)
        };
    sp = sp.wrapping_sub(FXSAVE_SIZE) & !63;
    let fpstate = sp;
    let frame = (sp.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);

    let fpu = t.vcpu.fxsave().map_err(|_| Errno::EFAULT)?;
    user.write(fpstate, &fpu.0)?;

    let mut f = vec![0u8; FRAME_SIZE as usize];
    put(&mut f, 0, act.restorer);
    put(&mut f, UC_OFFSET, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
    // uc_stack: the altstack as sigaltstack would report it.
    put(&mut f, UC_OFFSET + 16, ss_sp);
    let alt_flags = if on_alt { SS_ONSTACK } else { ss_flags };
    put(&mut f, UC_OFFSET + 24, u64::from(alt_flags));
    put(&mut f, UC_OFFSET + 32, ss_size);
    for (i, v) in sigcontext_regs(regs).iter().enumerate() {
        put(&mut f, MCONTEXT_OFFSET + 8 * i as u64, *v);
    }
    // cs, gs, fs, ss (16 bits each).
    let segs: u64 =
        u64::from(crate::kvm::boot::USER_CS) | (u64::from(crate::kvm::boot::USER_DS) << 48);
    put(&mut f, MCONTEXT_OFFSET + 144, segs);
    put(&mut f, MCONTEXT_OFFSET + 152, info.err);
    put(&mut f, MCONTEXT_OFFSET + 160, info.trapno);
    put(&mut f, MCONTEXT_OFFSET + 168, t.sigmask);
    put(&mut f, MCONTEXT_OFFSET + 176, info.addr);
    put(&mut f, MCONTEXT_OFFSET + 184, fpstate);
    put(&mut f, SIGMASK_OFFSET, t.sigmask);
    // siginfo: signo, errno, code, then the union (pid/uid, or the fault address).
    let i = INFO_OFFSET as usize;
    f[i..i + 4].copy_from_slice(&(sig as i32).to_le_bytes());
    f[i + 8..i + 12].copy_from_slice(&info.code.to_le_bytes());
    if info.addr != 0 || info.pid == 0 {
        put(&mut f, INFO_OFFSET + 16, info.addr);
    } else {
        f[i + 16..i + 20].copy_from_slice(&info.pid.to_le_bytes());
        f[i + 20..i + 24].copy_from_slice(&info.uid.to_le_bytes());
    }
    user.write(frame, &f)?;

    // The handler runs with sa_mask (and the signal itself unless SA_NODEFER) blocked.
    let mut mask = t.sigmask | act.mask;
    if act.flags & SA_NODEFER == 0 {
        mask |= 1 << (sig - 1);
    }
    t.sigmask = mask & !super::signal::UNBLOCKABLE;
    regs.rdi = sig;
    regs.rsi = frame + INFO_OFFSET;
    regs.rdx = frame + UC_OFFSET;
    regs.rax = 0;
    regs.rsp = frame;
    regs.rip = act.handler;
    // TF, DF, RF and AC cleared for the handler, as Linux does.
    regs.rflags &= !(0x100 | 0x400 | 0x1_0000 | 0x4_0000);
    // A fresh FPU state for the handler.
    t.vcpu
        .set_fxsave(&FxSave::fresh())
        .map_err(|_| Errno::EFAULT)?;
    Ok(())
}

/// rt_sigreturn: the context saved by `setup`, from the frame below the current rsp.
pub fn sigreturn(user: &UserMemory, t: &mut Thread, regs: &kvm_regs) -> Result<kvm_regs, Errno> {
    // The handler's `ret` popped pretcode: the frame starts 8 bytes below rsp.
    let frame = regs.rsp.wrapping_sub(8);
    let f = user.read_vec(frame, FRAME_SIZE as usize)?;
    let mut r = *regs;
    let v: Vec<u64> = (0..18).map(|i| get(&f, MCONTEXT_OFFSET + 8 * i)).collect();
    r.r8 = v[0];
    r.r9 = v[1];
    r.r10 = v[2];
    r.r11 = v[3];
    r.r12 = v[4];
    r.r13 = v[5];
    r.r14 = v[6];
    r.r15 = v[7];
    r.rdi = v[8];
    r.rsi = v[9];
    r.rbp = v[10];
    r.rbx = v[11];
    r.rdx = v[12];
    r.rax = v[13];
    r.rcx = v[14];
    r.rsp = v[15];
    r.rip = v[16];
    r.rflags = (regs.rflags & !FIX_EFLAGS) | (v[17] & FIX_EFLAGS) | 0x2;
    let fpstate = get(&f, MCONTEXT_OFFSET + 184);
    if fpstate != 0 {
        let mut fx = FxSave::default();
        user.read(fpstate, &mut fx.0)?;
        t.vcpu
            .set_fxsave(&sanitized(fx))
            .map_err(|_| Errno::EFAULT)?;
    }
    t.sigmask = get(&f, SIGMASK_OFFSET) & !super::signal::UNBLOCKABLE;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigreturn_clears_reserved_mxcsr_bits() {
        let mut fx = FxSave::fresh();
        fx.0[24..28].copy_from_slice(&0xdead_1f80u32.to_le_bytes());
        fx.0[160 + 15 * 16 + 15] = 0x99;
        let clean = sanitized(fx);
        assert_eq!(clean.mxcsr(), 0x1f80);
        assert_eq!(clean.xmm(15)[15], 0x99);
        assert_eq!(clean.fcw(), 0x37f);
    }
}
