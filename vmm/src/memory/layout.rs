//! The guest address space of an island (guest virtual = guest physical):
//!
//! ```text
//! 0x0000_0000_0000 .. 0x0000_0020_0000   kernel area, 4 KiB pages: page 0 absent (NULL faults),
//!                                         GDT, IDT, TSS + I/O bitmap, exception stubs, page tables,
//!                                         exception stack: supervisor-only; one read-only user page
//!                                         holds the syscall stub (see SYSCALL_STUB_ADDR); with the
//!                                         vDSO on, its clock page (read-only), counter page
//!                                         (writable) and code (read-only) are user pages too
//! 0x0000_0040_0000 ..                     non-PIE ELF at its link address (usually 0x400000)
//! 0x0000_4000_0000 ..                     static-PIE ELF, loaded at PIE_BASE (1 GiB)
//!   after the ELF                         brk heap, grows up until it meets a mapping
//! ..  0x000f_c000_0000                    mmap area, allocated top-down from MMAP_TOP (63 GiB)
//! 0x000f_ff80_0000 .. 0x0010_0000_0000   main thread stack (8 MiB), initial stack at the top
//! ```
//!
//! The whole range is one KVM memslot over one host reservation; 2 MiB guest pages, built once.

pub const PAGE_SIZE: u64 = 4096;
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;
/// Size of the island's memslot and of its address space.
pub const ISLAND_MEMORY_SIZE: u64 = 64 << 30;

/// End of the supervisor-only kernel area; the program's lowest usable address.
pub const KERNEL_AREA_END: u64 = HUGE_PAGE_SIZE;
pub const GDT_ADDR: u64 = 0x1000;
pub const IDT_ADDR: u64 = 0x2000;
/// The TSS and its I/O permission bitmap (0x3000..0x5069).
pub const TSS_ADDR: u64 = 0x3000;
/// Exception stubs: vector v at EXCEPTION_STUBS_ADDR + 2*v is `out EXCEPTION_PORT_BASE+v, al`.
pub const EXCEPTION_STUBS_ADDR: u64 = 0x6000;
/// Stub for vectors >= 32 (never raised: there are no interrupt sources).
pub const SPURIOUS_STUB_ADDR: u64 = 0x6100;
/// The syscall entry stub (LSTAR): `out SYSCALL_PORT, al`. On this host's KVM (PVM), `syscall`
/// from user mode jumps to LSTAR without leaving CPL3 (measured), so this page is the one page of
/// the kernel area the program can reach: user, read-only, two bytes of code.
pub const SYSCALL_STUB_ADDR: u64 = 0x7000;
/// The vDSO's clock page (`kernel/vdso.rs`), the island's own: user read-only, written by popvmm.
pub const VVAR_ADDR: u64 = 0x8000;
/// The vDSO's counter of the calls it served, the island's own: user read-write (a program that
/// scribbles on it only spoils its own statistics).
pub const VDSO_COUNTER_ADDR: u64 = 0x9000;
/// The vDSO (an ELF shared object, the same bytes at the same address on every island): user
/// read-only (and executable: there is no NX bit).
pub const VDSO_ADDR: u64 = 0xa000;
/// The most the vDSO may take (its build is checked against it).
pub const VDSO_MAX_SIZE: u64 = 0x2000;
pub const PML4_ADDR: u64 = 0x10000;
pub const PDPT_ADDR: u64 = 0x11000;
/// The 4 KiB page table of the first 2 MiB (the kernel area).
pub const PT_ADDR: u64 = 0x12000;
/// 64 page directories, one per GiB.
pub const PD_ADDR: u64 = 0x13000;
/// Top of the stack the CPU switches to on an exception from user mode (TSS.RSP0).
pub const EXCEPTION_STACK_TOP: u64 = 0x1f_f000;

pub const SYSCALL_PORT: u16 = 0x10;
pub const SPURIOUS_PORT: u16 = 0x1f;
pub const EXCEPTION_PORT_BASE: u16 = 0x20;

/// Where a static-PIE executable is loaded.
pub const PIE_BASE: u64 = 0x4000_0000;
/// Anonymous and file mappings are placed top-down below this address.
pub const MMAP_TOP: u64 = 0xf_c000_0000;
/// Top of the main thread's stack (the end of island memory).
pub const STACK_TOP: u64 = ISLAND_MEMORY_SIZE;
pub const STACK_SIZE: u64 = 8 << 20;

/// Whether `rip` is the program's own code: above the kernel area, or in the vDSO (where a thread
/// can be stopped, signalled and migrated like anywhere in its code, unlike in the syscall stub).
pub const fn is_program_code(rip: u64) -> bool {
    rip >= KERNEL_AREA_END || (rip >= VDSO_ADDR && rip < VDSO_ADDR + VDSO_MAX_SIZE)
}

pub const fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// Rounds up to a page; None on overflow.
pub const fn page_up(x: u64) -> Option<u64> {
    match x.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(v & !(PAGE_SIZE - 1)),
        None => None,
    }
}
