//! A vCPU of an island: configuration for 64-bit user mode, `KVM_RUN` with exit decoding, and
//! register access through the `kvm_run` shared area (KVM_CAP_SYNC_REGS) when KVM offers it, which
//! saves the GET/SET ioctls on every system call round trip.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, kvm_xsave, CpuId, Msrs};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use super::boot;
use crate::memory::layout::{
    EXCEPTION_PORT_BASE, EXCEPTION_STUBS_ADDR, SPURIOUS_PORT, SPURIOUS_STUB_ADDR, SYSCALL_PORT,
    SYSCALL_STUB_ADDR,
};

/// Errors of vCPU ioctls.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("{0} failed: {1}")]
    Ioctl(&'static str, kvm_ioctls::Error),
    #[error("cannot build the MSR list")]
    Msrs,
}

/// Why `KVM_RUN` returned, decoded for the island kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The program executed `syscall` (the LSTAR stub's `out`).
    Syscall,
    /// A CPU exception in user mode reached the IDT stub of this vector.
    Exception(u8),
    /// Port I/O executed by the program itself (CPL3 `in`/`out`).
    UserPortIo(u16),
    /// The host protection of island memory refused a guest access (`KVM_RUN` failed with EFAULT).
    MemoryFault,
    /// An access outside the memslot.
    Mmio(u64),
    /// `KVM_RUN` was interrupted by a host signal; just run again.
    Interrupted,
    /// Triple fault or an emulation failure of KVM: the vCPU cannot continue.
    Fatal(String),
}

/// One vCPU.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    id: u64,
    sync: bool,
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VcpuError> {
    r.map_err(|e| VcpuError::Ioctl(what, e))
}

impl Vcpu {
    pub(super) fn new(fd: VcpuFd, id: u64, cpuid: &CpuId, sync: bool) -> Result<Self, VcpuError> {
        // CPUID passed through as KVM reports it: no XSAVE/AVX, so glibc picks SSE2 code paths.
        ioctl("KVM_SET_CPUID2", fd.set_cpuid2(cpuid))?;
        let mut vcpu = Self { fd, id, sync };
        if sync {
            vcpu.fd.set_sync_valid_reg(SyncReg::Register);
            vcpu.fd.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        Ok(vcpu)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Address of this vCPU's `kvm_run.immediate_exit`, for a signal handler that must stop the
    /// next (or current) KVM_RUN: the `kvm_run` mapping lives as long as the vCPU.
    pub fn immediate_exit_ptr(&mut self) -> *mut u8 {
        &mut self.fd.get_kvm_run().immediate_exit as *mut u8
    }

    pub fn clear_immediate_exit(&mut self) {
        self.fd.set_kvm_immediate_exit(0);
    }

    /// Puts the vCPU in user mode at `regs` with fs base `fs_base` and the given FPU state
    /// (a fresh one when None). Used for the first thread and for every clone.
    pub fn start_user(
        &mut self,
        regs: &kvm_regs,
        fs_base: u64,
        gs_base: u64,
        fpu: Option<&FxSave>,
    ) -> Result<(), VcpuError> {
        let sregs = ioctl("KVM_GET_SREGS", self.fd.get_sregs())?;
        let mut sregs = boot::user_sregs(sregs);
        sregs.fs.base = fs_base;
        sregs.gs.base = gs_base;
        // Explicit ioctls here: the sync area is only valid after a first exit.
        self.fd.clear_sync_dirty_reg(SyncReg::Register);
        self.fd.clear_sync_dirty_reg(SyncReg::SystemRegister);
        ioctl("KVM_SET_SREGS", self.fd.set_sregs(&sregs))?;
        // After the sregs: the syscall MSRs are only meaningful (and, on PVM, only kept) once the
        // vCPU is in long mode with EFER.SCE.
        let msrs = Msrs::from_entries(&[
            msr(boot::MSR_STAR, boot::STAR_VALUE),
            msr(boot::MSR_LSTAR, SYSCALL_STUB_ADDR),
            msr(boot::MSR_CSTAR, SYSCALL_STUB_ADDR),
            msr(boot::MSR_SYSCALL_MASK, boot::SYSCALL_MASK_VALUE),
        ])
        .map_err(|_| VcpuError::Msrs)?;
        let n = ioctl("KVM_SET_MSRS", self.fd.set_msrs(&msrs))?;
        if n != 4 {
            return Err(VcpuError::Msrs);
        }
        ioctl("KVM_SET_REGS", self.fd.set_regs(regs))?;
        self.set_fxsave(fpu.unwrap_or(&FxSave::fresh()))
    }

    /// The vCPU's x87 and SSE state (the FXSAVE area of KVM_GET_XSAVE: on these hosts,
    /// KVM_SET_FPU changes what KVM_GET_FPU answers but not what the guest runs with, measured).
    pub fn fxsave(&self) -> Result<FxSave, VcpuError> {
        let x = ioctl("KVM_GET_XSAVE", self.fd.get_xsave())?;
        let mut f = FxSave::default();
        for (i, w) in x.region.iter().take(FxSave::SIZE / 4).enumerate() {
            f.0[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        Ok(f)
    }

    /// Sets the vCPU's x87 and SSE state (only those: the XSAVE header says so).
    pub fn set_fxsave(&mut self, f: &FxSave) -> Result<(), VcpuError> {
        let mut x = kvm_xsave::default();
        for (i, w) in x.region.iter_mut().take(FxSave::SIZE / 4).enumerate() {
            let b = &f.0[4 * i..4 * i + 4];
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        // XSAVE header (byte 512): XSTATE_BV = x87 | SSE, standard format.
        x.region[FxSave::SIZE / 4] = 0b11;
        // SAFETY: `x` is a whole kvm_xsave (4 KiB region) owned here; KVM reads it.
        ioctl("KVM_SET_XSAVE", unsafe { self.fd.set_xsave(&x) })
    }

    /// Registers as of the last exit.
    pub fn regs(&self) -> Result<kvm_regs, VcpuError> {
        if self.sync {
            Ok(self.fd.sync_regs().regs)
        } else {
            ioctl("KVM_GET_REGS", self.fd.get_regs())
        }
    }

    pub fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), VcpuError> {
        if self.sync {
            self.fd.sync_regs_mut().regs = *regs;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            ioctl("KVM_SET_REGS", self.fd.set_regs(regs))
        }
    }

    pub fn sregs(&self) -> Result<kvm_sregs, VcpuError> {
        if self.sync {
            Ok(self.fd.sync_regs().sregs)
        } else {
            ioctl("KVM_GET_SREGS", self.fd.get_sregs())
        }
    }

    pub fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), VcpuError> {
        if self.sync {
            self.fd.sync_regs_mut().sregs = *sregs;
            self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
            Ok(())
        } else {
            ioctl("KVM_SET_SREGS", self.fd.set_sregs(sregs))
        }
    }

    /// Completes a system call: back to user mode after the `syscall` instruction with `rax = ret`
    /// (the registers a sysret would produce).
    pub fn syscall_return_regs(regs: &kvm_regs, ret: u64) -> kvm_regs {
        let mut r = *regs;
        r.rax = ret;
        r.rip = regs.rcx;
        // As sysret does: rflags from r11, without RF/VM, with the reserved bit 1 set.
        r.rflags = (regs.r11 & 0x3c_7fd7) | 0x2;
        r
    }

    /// Returns to user mode with `regs`; `fs_base` is Some when it changed (arch_prctl).
    pub fn resume_user(&mut self, regs: &kvm_regs, fs_base: Option<u64>) -> Result<(), VcpuError> {
        self.set_regs(regs)?;
        // Architecturally `syscall` enters CPL0 and we must restore the user segments; PVM keeps
        // the vCPU at CPL3 (the stub runs in user mode), and then sregs need no write at all,
        // which keeps the round trip to one KVM_RUN.
        let mut sregs = self.sregs()?;
        let to_user = sregs.cs.dpl != 3 || sregs.ss.dpl != 3;
        if !to_user && fs_base.is_none() && self.sync {
            return Ok(());
        }
        sregs.cs = boot::user_cs();
        sregs.ss = boot::user_ds();
        if let Some(fs) = fs_base {
            sregs.fs.base = fs;
        }
        self.set_sregs(&sregs)
    }

    /// Runs the vCPU until the next exit that needs the island kernel.
    pub fn run(&mut self) -> Result<Exit, VcpuError> {
        let port = match self.fd.run() {
            Ok(VcpuExit::IoOut(port, _)) | Ok(VcpuExit::IoIn(port, _)) => port,
            Ok(VcpuExit::MmioRead(addr, _)) | Ok(VcpuExit::MmioWrite(addr, _)) => {
                return Ok(Exit::Mmio(addr))
            }
            Ok(VcpuExit::Intr) => return Ok(Exit::Interrupted),
            Ok(VcpuExit::Hlt) => return Ok(Exit::Exception(13)),
            Ok(other) => return Ok(Exit::Fatal(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return Ok(Exit::Interrupted)
            }
            Err(e) if e.errno() == libc::EFAULT => return Ok(Exit::MemoryFault),
            Err(e) => return Err(VcpuError::Ioctl("KVM_RUN", e)),
        };
        // A port is ours only when the exit comes from our stub for it (rip is at or just past the
        // two-byte `out`); any other port I/O is the program's own.
        let rip = self.regs()?.rip;
        let at = |stub: u64| rip == stub || rip == stub + 2;
        Ok(match port {
            SYSCALL_PORT if at(SYSCALL_STUB_ADDR) => Exit::Syscall,
            p if (EXCEPTION_PORT_BASE..EXCEPTION_PORT_BASE + 32).contains(&p)
                && at(EXCEPTION_STUBS_ADDR + 2 * u64::from(p - EXCEPTION_PORT_BASE)) =>
            {
                Exit::Exception((p - EXCEPTION_PORT_BASE) as u8)
            }
            SPURIOUS_PORT if at(SPURIOUS_STUB_ADDR) => Exit::Fatal("spurious interrupt".into()),
            p => Exit::UserPortIo(p),
        })
    }
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

/// An FXSAVE area: the x87 and SSE state (fcw, fsw, ftw, fop, fip, fdp, mxcsr, st0-7, xmm0-15),
/// as the FXSAVE instruction lays it out (and as Linux's signal frames hold it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FxSave(pub [u8; FxSave::SIZE]);

impl FxSave {
    pub const SIZE: usize = 512;

    /// The state of a new program: x87 control word 0x37f, MXCSR 0x1f80 (as Linux starts one).
    pub fn fresh() -> FxSave {
        let mut f = FxSave::default();
        f.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        f.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        f.0[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        f
    }

    /// xmm register `i` (0..16).
    pub fn xmm(&self, i: usize) -> [u8; 16] {
        let mut r = [0u8; 16];
        r.copy_from_slice(&self.0[160 + 16 * i..176 + 16 * i]);
        r
    }

    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]])
    }

    pub fn fcw(&self) -> u16 {
        u16::from_le_bytes([self.0[0], self.0[1]])
    }
}

impl Default for FxSave {
    fn default() -> Self {
        FxSave([0; FxSave::SIZE])
    }
}

impl std::fmt::Debug for FxSave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FxSave(fcw {:#x}, mxcsr {:#x})",
            self.fcw(),
            self.mxcsr()
        )
    }
}
