//! The fixed CPL0 scaffolding of an island, written once into the supervisor-only kernel area:
//! 4-level page tables with 2 MiB pages (guest virtual = guest physical), a GDT with kernel and
//! user segments and a TSS, an IDT whose gates lead to one-instruction `out` stubs, and the syscall
//! entry stub. Guest CPL0 is emulated (and fragile) on PVM, so no stub is more than one `out`.

use kvm_bindings::{kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::memory::layout::*;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x1b;
pub const USER_CS: u16 = 0x23;
pub const TSS_SEL: u16 = 0x28;

const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff, // kernel code64
    0x00cf_9300_0000_ffff, // kernel data
    0x00cf_f300_0000_ffff, // user data (selector 0x1b)
    0x00af_fb00_0000_ffff, // user code64 (selector 0x23)
];
const GDT_ENTRIES: u64 = 7; // + the 16-byte TSS descriptor
/// 104-byte TSS + 8 KiB I/O bitmap (all ports allowed, so that every port access from user mode
/// exits to popvmm, which decides) + the terminating 0xff byte.
const IOMAP_OFFSET: u64 = 104;
const TSS_LIMIT: u32 = 104 + 8192;

pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
/// STAR: syscall loads CS=0x08/SS=0x10; (sysret would use 0x23/0x1b, but we never execute it).
pub const STAR_VALUE: u64 = (0x10 << 48) | (0x08 << 32);
/// RFLAGS bits cleared on syscall entry, as Linux does (TF, DF, IF, IOPL, NT, AC).
pub const SYSCALL_MASK_VALUE: u64 = 0;

const PTE_P: u64 = 1;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;

/// Writes page tables, GDT, IDT, TSS and stubs into the kernel area (which must be host-writable).
pub fn write_kernel_area(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    // Page tables: PML4[0] -> PDPT; PDPT[i] -> PD i; each PD maps 1 GiB with 2 MiB pages.
    let gib = ISLAND_MEMORY_SIZE >> 30;
    mem.write_obj(PDPT_ADDR | PTE_P | PTE_RW | PTE_US, GuestAddress(PML4_ADDR))?;
    for i in 0..gib {
        let pd = PD_ADDR + i * PAGE_SIZE;
        mem.write_obj(
            pd | PTE_P | PTE_RW | PTE_US,
            GuestAddress(PDPT_ADDR + i * 8),
        )?;
        for j in 0..512u64 {
            let phys = (i << 30) | (j << 21);
            let entry = if phys < KERNEL_AREA_END {
                PT_ADDR | PTE_P | PTE_RW | PTE_US
            } else {
                phys | PTE_P | PTE_RW | PTE_PS | PTE_US
            };
            mem.write_obj(entry, GuestAddress(pd + j * 8))?;
        }
    }
    // The kernel area in 4 KiB pages: page 0 absent, the syscall stub page user read-only, the
    // rest supervisor-only.
    for k in 1..512u64 {
        let phys = k * PAGE_SIZE;
        let entry = if phys == SYSCALL_STUB_ADDR {
            phys | PTE_P | PTE_US
        } else {
            phys | PTE_P | PTE_RW
        };
        mem.write_obj(entry, GuestAddress(PT_ADDR + k * 8))?;
    }
    // GDT with the TSS descriptor in slots 5-6.
    for (i, d) in GDT.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))?;
    }
    let (lo, hi) = tss_descriptor(TSS_ADDR, TSS_LIMIT);
    mem.write_obj(lo, GuestAddress(GDT_ADDR + 8 * 5))?;
    mem.write_obj(hi, GuestAddress(GDT_ADDR + 8 * 6))?;
    // TSS: RSP0 (offset 4) for exceptions from user mode; no I/O bitmap (offset 102 = limit + 1).
    mem.write_obj(EXCEPTION_STACK_TOP, GuestAddress(TSS_ADDR + 4))?;
    mem.write_obj(IOMAP_OFFSET as u16, GuestAddress(TSS_ADDR + 102))?;
    mem.write_slice(&[0u8; 8192], GuestAddress(TSS_ADDR + IOMAP_OFFSET))?;
    mem.write_obj(0xffu8, GuestAddress(TSS_ADDR + IOMAP_OFFSET + 8192))?;
    // Stubs: `out imm8, al` is E6 ib.
    mem.write_slice(&[0xe6, SYSCALL_PORT as u8], GuestAddress(SYSCALL_STUB_ADDR))?;
    for v in 0..32u64 {
        let port = EXCEPTION_PORT_BASE as u64 + v;
        mem.write_slice(
            &[0xe6, port as u8],
            GuestAddress(EXCEPTION_STUBS_ADDR + 2 * v),
        )?;
    }
    mem.write_slice(
        &[0xe6, SPURIOUS_PORT as u8],
        GuestAddress(SPURIOUS_STUB_ADDR),
    )?;
    // IDT: 64-bit interrupt gates to the stubs. #BP and #OF are reachable from user mode (int3,
    // into) as on Linux; any other `int n` from user mode raises #GP, i.e. SIGSEGV.
    for v in 0..256u64 {
        let target = if v < 32 {
            EXCEPTION_STUBS_ADDR + 2 * v
        } else {
            SPURIOUS_STUB_ADDR
        };
        let dpl = if v == 3 || v == 4 { 3 } else { 0 };
        let (lo, hi) = idt_gate(target, dpl);
        mem.write_obj(lo, GuestAddress(IDT_ADDR + 16 * v))?;
        mem.write_obj(hi, GuestAddress(IDT_ADDR + 16 * v + 8))?;
    }
    Ok(())
}

/// Makes the vDSO's pages user pages (`kernel/vdso.rs` writes their contents): the clock page and
/// the code read-only, the counter page writable. Called before any vCPU runs, so that no TLB
/// holds the supervisor-only entries.
pub fn map_vdso_pages(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    let mut pages = vec![
        (VVAR_ADDR, PTE_P | PTE_US),
        (VDSO_COUNTER_ADDR, PTE_P | PTE_RW | PTE_US),
    ];
    pages.extend(
        (VDSO_ADDR..VDSO_ADDR + VDSO_MAX_SIZE)
            .step_by(PAGE_SIZE as usize)
            .map(|a| (a, PTE_P | PTE_US)),
    );
    for (phys, flags) in pages {
        mem.write_obj(phys | flags, GuestAddress(PT_ADDR + (phys / PAGE_SIZE) * 8))?;
    }
    Ok(())
}

fn tss_descriptor(base: u64, limit: u32) -> (u64, u64) {
    let limit = limit as u64;
    let lo = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x9 << 40) // available 64-bit TSS
        | (1 << 47) // present
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (lo, base >> 32)
}

fn idt_gate(target: u64, dpl: u64) -> (u64, u64) {
    let lo = (target & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | (0xe << 40) // 64-bit interrupt gate
        | (dpl << 45)
        | (1 << 47)
        | (((target >> 16) & 0xffff) << 48);
    (lo, target >> 32)
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: if code { 0 } else { 1 },
        s: 1,
        l: if code { 1 } else { 0 },
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

pub fn user_cs() -> kvm_segment {
    segment(USER_CS, true)
}

pub fn user_ds() -> kvm_segment {
    segment(USER_DS, false)
}

/// System registers of a vCPU in 64-bit user mode (fs base 0; set by arch_prctl or clone).
pub fn user_sregs(mut s: kvm_sregs) -> kvm_sregs {
    s.cs = user_cs();
    s.ss = user_ds();
    s.ds = user_ds();
    s.es = user_ds();
    s.fs = user_ds();
    s.gs = user_ds();
    s.tr = kvm_segment {
        base: TSS_ADDR,
        limit: TSS_LIMIT,
        selector: TSS_SEL,
        type_: 11, // busy 64-bit TSS
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
    s.idt.base = IDT_ADDR;
    s.idt.limit = (256 * 16 - 1) as u16;
    s.cr0 = 0x8000_0033;
    s.cr3 = PML4_ADDR;
    s.cr4 = 0x620;
    s.efer = 0x501;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_encode() {
        // A gate to 0x4100 with DPL 3: offset split, present, type 0xE.
        let (lo, hi) = idt_gate(0x4100, 3);
        assert_eq!(lo & 0xffff, 0x4100);
        assert_eq!((lo >> 40) & 0xff, 0xee);
        assert_eq!(hi, 0);
        let (lo, _) = tss_descriptor(0x3000, 103);
        assert_eq!(lo & 0xffff, 103);
        assert_eq!((lo >> 16) & 0xff_ffff, 0x3000);
        assert_eq!((lo >> 40) & 0xff, 0x89);
    }
}
