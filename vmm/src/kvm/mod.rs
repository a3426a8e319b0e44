//! One KVM VM per island: the memslot, the fixed CPL0 scaffolding (page tables, GDT, IDT, TSS, stubs)
//! and vCPU creation. Everything here is built once at VM creation and never changed afterwards.

pub mod boot;
pub mod vcpu;

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::memory::{HostProt, IslandMemory, MemoryError};
pub use vcpu::{Exit, Vcpu, VcpuError};

/// Errors of VM creation.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("cannot open /dev/kvm: {0}")]
    Open(kvm_ioctls::Error),
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(kvm_ioctls::Error),
    #[error("KVM_SET_USER_MEMORY_REGION failed: {0}")]
    Memslot(kvm_ioctls::Error),
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    Cpuid(kvm_ioctls::Error),
    #[error("cannot write the boot structures: {0}")]
    Boot(String),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
}

/// A KVM VM with its memory and boot structures: the hardware side of an island.
#[derive(Debug)]
pub struct IslandVm {
    vm: VmFd,
    cpuid: CpuId,
    memory: Arc<IslandMemory>,
    sync_regs: bool,
    _kvm: Kvm,
}

impl IslandVm {
    /// Creates the VM, registers `memory` as memslot 0 at guest physical 0 and writes the kernel area.
    pub fn new(memory: Arc<IslandMemory>) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let vm = kvm.create_vm().map_err(KvmError::CreateVm)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: memory.size(),
            userspace_addr: memory.host_base(),
        };
        // SAFETY: the region is our own host reservation, which lives as long as `memory` (an Arc we
        // keep in this struct, so it outlives the VM fd declared before it).
        unsafe { vm.set_user_memory_region(region) }.map_err(KvmError::Memslot)?;
        memory.protect(
            0,
            crate::memory::layout::KERNEL_AREA_END,
            HostProt::ReadWrite,
        )?;
        boot::write_kernel_area(memory.guest()).map_err(|e| KvmError::Boot(e.to_string()))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmError::Cpuid)?;
        let sync_regs =
            kvm.check_extension(Cap::SyncRegs) && std::env::var_os("POPVMM_NO_SYNC_REGS").is_none();
        Ok(Self {
            vm,
            cpuid,
            memory,
            sync_regs,
            _kvm: kvm,
        })
    }

    pub fn memory(&self) -> &Arc<IslandMemory> {
        &self.memory
    }

    /// Creates vCPU `id`, configured for 64-bit user mode (registers still to be set by the caller).
    pub fn create_vcpu(&self, id: u64) -> Result<Vcpu, KvmError> {
        let fd = self
            .vm
            .create_vcpu(id)
            .map_err(|e| VcpuError::Ioctl("KVM_CREATE_VCPU", e))?;
        Ok(Vcpu::new(fd, id, &self.cpuid, self.sync_regs)?)
    }
}
