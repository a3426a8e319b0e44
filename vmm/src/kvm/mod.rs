//! One KVM VM per island: the memslots, the fixed CPL0 scaffolding (page tables, GDT, IDT, TSS,
//! stubs) and vCPU creation. The scaffolding is built once at VM creation and never changed.
//!
//! Island memory is one host reservation, but KVM sees it through one memslot per GiB, registered
//! when the program first maps something in that GiB: KVM's per-slot metadata (rmaps for the shadow
//! MMU) costs about 0.45 ms per GiB to set up, so one 64 GiB slot would add ~30 ms to start-up.
//! Guest physical = guest virtual = offset in the reservation either way.

pub mod boot;
pub mod vcpu;

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::memory::{HostProt, IslandMemory, MemoryError};
pub use vcpu::{Exit, FxSave, Vcpu, VcpuError};

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
    /// Bit i: the GiB at i << 30 is registered as memslot i.
    slots: Mutex<u64>,
    _kvm: Kvm,
}

/// Memslot granularity.
const SLOT_SHIFT: u32 = 30;

impl IslandVm {
    /// Creates the VM, registers `memory` as memslot 0 at guest physical 0 and writes the kernel area.
    pub fn new(memory: Arc<IslandMemory>) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let vm = kvm.create_vm().map_err(KvmError::CreateVm)?;
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
        let island = Self {
            vm,
            cpuid,
            memory,
            sync_regs,
            slots: Mutex::new(0),
            _kvm: kvm,
        };
        // The first GiB holds the kernel area.
        island.ensure_slots(0, 1)?;
        Ok(island)
    }

    /// Registers the memslots covering `[start, start+len)` that are not registered yet.
    pub fn ensure_slots(&self, start: u64, len: u64) -> Result<(), KvmError> {
        if len == 0 {
            return Ok(());
        }
        let end = start.saturating_add(len).min(self.memory.size());
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for i in (start >> SLOT_SHIFT)..end.div_ceil(1 << SLOT_SHIFT) {
            if *slots & (1 << i) != 0 {
                continue;
            }
            let region = kvm_userspace_memory_region {
                slot: i as u32,
                flags: 0,
                guest_phys_addr: i << SLOT_SHIFT,
                memory_size: 1 << SLOT_SHIFT,
                userspace_addr: self.memory.host_base() + (i << SLOT_SHIFT),
            };
            // SAFETY: the region is a slice of our own host reservation (its size is a multiple of
            // the slot size), which lives as long as `memory`, an Arc this struct keeps: it outlives
            // the VM fd.
            unsafe { self.vm.set_user_memory_region(region) }.map_err(KvmError::Memslot)?;
            *slots |= 1 << i;
        }
        Ok(())
    }

    /// Number of registered memslots (GiB).
    pub fn slot_count(&self) -> u32 {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count_ones()
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
