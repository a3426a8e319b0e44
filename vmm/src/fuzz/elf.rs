//! The executable: `ElfImage::parse` on any bytes, and, for what it accepts, the loading plan
//! (`ElfImage::load_plan`, what `load` maps and copies): everything must stay inside the file
//! and the island's user address space.

use crate::loader::ElfImage;
use crate::memory::layout::{KERNEL_AREA_END, MMAP_TOP, PAGE_SIZE};

pub const DICT: &[&[u8]] = &[
    b"\x7fELF\x02\x01\x01",
    b"\x02\x00\x3e\x00",
    b"\x03\x00\x3e\x00",
    b"\x01\x00\x00\x00",
    b"\x03\x00\x00\x00",
    b"\x06\x00\x00\x00",
    b"\x38\x00",
    b"\x00\x00\x40\x00\x00\x00\x00\x00",
    b"\x00\x10\x40\x00\x00\x00\x00\x00",
    b"\x00\x00\x00\xc0\x0f\x00\x00\x00",
    b"/lib64/ld-linux-x86-64.so.2\x00",
];

fn put(d: &mut [u8], at: usize, v: &[u8]) {
    d[at..at + v.len()].copy_from_slice(v);
}

/// A program header: type, flags, offset, vaddr, filesz, memsz.
fn phdr(d: &mut [u8], at: usize, h: (u32, u32, u64, u64, u64, u64)) {
    put(d, at, &h.0.to_le_bytes());
    put(d, at + 4, &h.1.to_le_bytes());
    put(d, at + 8, &h.2.to_le_bytes());
    put(d, at + 16, &h.3.to_le_bytes());
    put(d, at + 24, &h.3.to_le_bytes());
    put(d, at + 32, &h.4.to_le_bytes());
    put(d, at + 40, &h.5.to_le_bytes());
    put(d, at + 48, &PAGE_SIZE.to_le_bytes());
}

/// An executable of `len` bytes with these program headers (at offset 64).
fn elf(e_type: u16, entry: u64, headers: &[(u32, u32, u64, u64, u64, u64)], len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len.max(64 + 56 * headers.len())];
    put(&mut d, 0, b"\x7fELF\x02\x01\x01");
    put(&mut d, 16, &e_type.to_le_bytes());
    put(&mut d, 18, &62u16.to_le_bytes());
    put(&mut d, 20, &1u32.to_le_bytes());
    put(&mut d, 24, &entry.to_le_bytes());
    put(&mut d, 32, &64u64.to_le_bytes());
    put(&mut d, 52, &64u16.to_le_bytes());
    put(&mut d, 54, &56u16.to_le_bytes());
    put(&mut d, 56, &(headers.len() as u16).to_le_bytes());
    for (i, h) in headers.iter().enumerate() {
        phdr(&mut d, 64 + 56 * i, *h);
    }
    // Some code and data bytes.
    for (i, b) in d.iter_mut().enumerate().skip(0x200) {
        *b = (i as u8).wrapping_mul(7);
    }
    d
}

/// Small executables of the shapes static linkers produce.
pub fn seeds() -> Vec<Vec<u8>> {
    const R: u32 = 4;
    const RW: u32 = 6;
    const RX: u32 = 5;
    vec![
        // One text segment.
        elf(2, 0x401000, &[(1, RX, 0, 0x400000, 0x1200, 0x1200)], 0x1200),
        // Text, then data and bss sharing the text's last page (glibc's layout).
        elf(
            2,
            0x401010,
            &[
                (6, R, 64, 0x400040, 168, 168),
                (1, RX, 0, 0x400000, 0x1800, 0x1800),
                (1, RW, 0x1800, 0x401800, 0x300, 0x5000),
            ],
            0x1b00,
        ),
        // Static PIE (ET_DYN at 0), with a TLS-like and a stack header.
        elf(
            3,
            0x1000,
            &[
                (1, RX, 0, 0, 0x1400, 0x1400),
                (1, RW, 0x1400, 0x2400, 0x100, 0x2000),
                (7, R, 0x1400, 0x2400, 0x10, 0x20),
                (0x6474_e551, RW, 0, 0, 0, 0),
            ],
            0x1500,
        ),
        // Dynamically linked: refused with the interpreter's name.
        elf(
            2,
            0x401000,
            &[
                (3, R, 0x200, 0x400200, 28, 28),
                (1, RX, 0, 0x400000, 0x1200, 0x1200),
            ],
            0x1200,
        ),
    ]
}

pub fn elf_image(data: &[u8]) -> bool {
    let Ok(img) = ElfImage::parse(data) else {
        return false;
    };
    let len = data.len() as u64;
    assert!(!img.segments.is_empty());
    assert!(img.phnum <= 512 && img.phent == 56);
    let mut end = 0;
    for s in &img.segments {
        let top = s.vaddr.checked_add(s.memsz).expect("segment end");
        assert!(s.vaddr >= KERNEL_AREA_END && top <= MMAP_TOP, "{s:?}");
        assert!(s.filesz <= s.memsz, "{s:?}");
        assert!(
            s.offset.checked_add(s.filesz).is_some_and(|e| e <= len),
            "{s:?}"
        );
        end = end.max(top);
    }
    assert_eq!(img.end, end);
    assert!(img
        .segments
        .iter()
        .any(|s| img.entry >= s.vaddr && img.entry < s.vaddr + s.memsz));
    for local in [false, true] {
        let plan = img
            .load_plan(data.len(), local)
            .expect("a parsed image loads");
        for step in &plan {
            assert!(step.start % PAGE_SIZE == 0 && step.end % PAGE_SIZE == 0);
            assert!(step.start < step.end && step.start >= KERNEL_AREA_END);
            assert!(step.end <= MMAP_TOP);
            assert!(!local || !step.prot.writable());
            for (addr, range) in &step.copies {
                assert!(range.start <= range.end && range.end <= data.len());
                let n = (range.end - range.start) as u64;
                assert!(
                    *addr >= step.start && addr + n <= step.end,
                    "copy {addr:#x}+{n:#x} outside {:#x}..{:#x}",
                    step.start,
                    step.end
                );
            }
        }
    }
    true
}
