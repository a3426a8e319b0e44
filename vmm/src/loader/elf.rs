//! ELF64 parsing (every field read with bounds checks: the file is untrusted input) and loading of
//! PT_LOAD segments into island memory. Non-PIE executables go at their link addresses, static-PIE
//! ones at `PIE_BASE`; dynamically linked ones (PT_INTERP) are refused with a clear error.

use vm_memory::{Bytes, GuestAddress};

use crate::kernel::vma::{Prot, VmaKind};
use crate::kernel::{mm, Errno, Island};
use crate::memory::layout::{page_down, page_up, KERNEL_AREA_END, MMAP_TOP, PAGE_SIZE, PIE_BASE};

/// Why an executable cannot run on an island.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not an ELF file (bad magic)")]
    NotElf,
    #[error("not a 64-bit ELF file")]
    Not64Bit,
    #[error("not a little-endian ELF file")]
    NotLittleEndian,
    #[error("not an x86-64 executable (e_machine {0})")]
    NotX86_64(u16),
    #[error("not an executable (e_type {0}; expected ET_EXEC or static-PIE ET_DYN)")]
    NotExecutable(u16),
    #[error("dynamically linked (it asks for the interpreter {0}); popvmm runs static executables only (link with -static or -static-pie)")]
    Dynamic(String),
    #[error("malformed ELF: {0}")]
    Malformed(String),
    #[error("segment {vaddr:#x}+{memsz:#x} does not fit the island's user address space")]
    OutOfRange { vaddr: u64, memsz: u64 },
    #[error("cannot load the program into island memory: errno {0}")]
    Memory(i32),
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{0}: Permission denied (not executable)")]
    NotPermitted(String),
    #[error(
        "{path} is {size} bytes: larger than the {MAX_EXECUTABLE}-byte limit for an executable"
    )]
    TooLarge { path: String, size: u64 },
}

/// The largest executable popvmm reads (it is read whole into host memory before loading).
pub const MAX_EXECUTABLE: u64 = 1 << 30;

/// What a file that is not a regular one is, for the error message.
fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads the executable at `path`, as execve would accept it: a regular file the user may
/// execute, of a bounded size. Checked on the opened file (no race with a swap of the path), and
/// opened without blocking (a FIFO named as the program does not hang popvmm).
pub fn read_executable(path: &str) -> Result<Vec<u8>, LoaderError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| LoaderError::Read {
        path: path.to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.file_type().is_file() {
        return Err(LoaderError::NotRegular {
            path: path.to_string(),
            kind: file_kind(meta.file_type()),
        });
    }
    let c_path = std::ffi::CString::new(path)
        .map_err(|_| read_err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: access reads the NUL-terminated path; no memory is written.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } != 0 {
        return Err(LoaderError::NotPermitted(path.to_string()));
    }
    if meta.len() > MAX_EXECUTABLE {
        return Err(LoaderError::TooLarge {
            path: path.to_string(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_EXECUTABLE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_EXECUTABLE {
        return Err(LoaderError::TooLarge {
            path: path.to_string(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

impl From<Errno> for LoaderError {
    fn from(e: Errno) -> Self {
        LoaderError::Memory(e.0)
    }
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PHENT_SIZE: u16 = 56;

/// One PT_LOAD segment (addresses already relocated by the load base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub prot: Prot,
}

/// A parsed executable, ready to load.
#[derive(Debug, Clone)]
pub struct ElfImage {
    pub base: u64,
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    pub phent: u64,
    pub segments: Vec<Segment>,
    /// First address after the highest segment: where the brk heap starts.
    pub end: u64,
}

fn u16_at(d: &[u8], off: usize) -> Result<u16, LoaderError> {
    d.get(off..off + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| LoaderError::Malformed(format!("truncated at {off:#x}")))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, LoaderError> {
    d.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| LoaderError::Malformed(format!("truncated at {off:#x}")))
}

fn u64_at(d: &[u8], off: usize) -> Result<u64, LoaderError> {
    d.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| LoaderError::Malformed(format!("truncated at {off:#x}")))
}

impl ElfImage {
    /// Parses and validates an executable.
    pub fn parse(d: &[u8]) -> Result<Self, LoaderError> {
        if d.len() < 4 || &d[..4] != b"\x7fELF" {
            return Err(LoaderError::NotElf);
        }
        if d.len() < 64 {
            return Err(LoaderError::Malformed(
                "file shorter than the ELF header".into(),
            ));
        }
        if d[4] != 2 {
            return Err(LoaderError::Not64Bit);
        }
        if d[5] != 1 {
            return Err(LoaderError::NotLittleEndian);
        }
        let e_type = u16_at(d, 16)?;
        let machine = u16_at(d, 18)?;
        if machine != EM_X86_64 {
            return Err(LoaderError::NotX86_64(machine));
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(LoaderError::NotExecutable(e_type));
        }
        let entry = u64_at(d, 24)?;
        let phoff = u64_at(d, 32)?;
        let phent = u16_at(d, 54)?;
        let phnum = u16_at(d, 56)?;
        if phent != PHENT_SIZE || phnum == 0 || phnum > 512 {
            return Err(LoaderError::Malformed(format!(
                "program headers: {phnum} entries of {phent} bytes"
            )));
        }
        let ph_end = phoff
            .checked_add(phnum as u64 * phent as u64)
            .filter(|&e| e <= d.len() as u64)
            .ok_or_else(|| {
                LoaderError::Malformed("program headers beyond the end of the file".into())
            })?;
        let _ = ph_end;
        let base = if e_type == ET_DYN { PIE_BASE } else { 0 };
        let mut segments = Vec::new();
        let mut phdr_vaddr = None;
        for i in 0..phnum as usize {
            let h = phoff as usize + i * PHENT_SIZE as usize;
            let p_type = u32_at(d, h)?;
            let flags = u32_at(d, h + 4)?;
            let offset = u64_at(d, h + 8)?;
            let vaddr = u64_at(d, h + 16)?;
            let filesz = u64_at(d, h + 32)?;
            let memsz = u64_at(d, h + 40)?;
            match p_type {
                PT_INTERP => {
                    let interp = d
                        .get(offset as usize..offset.saturating_add(filesz) as usize)
                        .map(|b| {
                            String::from_utf8_lossy(b)
                                .trim_end_matches('\0')
                                .to_string()
                        })
                        .unwrap_or_default();
                    return Err(LoaderError::Dynamic(interp));
                }
                PT_PHDR => phdr_vaddr = Some(vaddr),
                PT_LOAD => {
                    if filesz > memsz
                        || offset
                            .checked_add(filesz)
                            .is_none_or(|e| e > d.len() as u64)
                        || offset % PAGE_SIZE != vaddr % PAGE_SIZE
                    {
                        return Err(LoaderError::Malformed(format!(
                            "PT_LOAD at {vaddr:#x}: offset {offset:#x}, filesz {filesz:#x}, memsz {memsz:#x}"
                        )));
                    }
                    let start = base.checked_add(vaddr);
                    let end = start.and_then(|s| s.checked_add(memsz));
                    match (start, end) {
                        (Some(s), Some(e))
                            if s >= KERNEL_AREA_END && e <= MMAP_TOP && memsz > 0 => {}
                        _ => return Err(LoaderError::OutOfRange { vaddr, memsz }),
                    }
                    let mut prot = 0;
                    if flags & 4 != 0 {
                        prot |= libc::PROT_READ;
                    }
                    if flags & 2 != 0 {
                        prot |= libc::PROT_WRITE;
                    }
                    if flags & 1 != 0 {
                        prot |= libc::PROT_EXEC;
                    }
                    segments.push(Segment {
                        vaddr: base + vaddr,
                        memsz,
                        offset,
                        filesz,
                        prot: Prot(prot as u32),
                    });
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(LoaderError::Malformed("no PT_LOAD segment".into()));
        }
        // AT_PHDR: from PT_PHDR, else the loaded copy of the headers inside a segment.
        let phdr = match phdr_vaddr {
            Some(v) => base + v,
            None => segments
                .iter()
                .find(|s| phoff >= s.offset && phoff < s.offset + s.filesz)
                .map(|s| s.vaddr + (phoff - s.offset))
                .unwrap_or(0),
        };
        let end = segments
            .iter()
            .map(|s| s.vaddr + s.memsz)
            .max()
            .unwrap_or(0);
        let entry = base.checked_add(entry).ok_or(LoaderError::OutOfRange {
            vaddr: entry,
            memsz: 0,
        })?;
        if !segments
            .iter()
            .any(|s| entry >= s.vaddr && entry < s.vaddr + s.memsz)
        {
            return Err(LoaderError::Malformed(format!(
                "entry point {entry:#x} is in no segment"
            )));
        }
        Ok(Self {
            base,
            entry,
            phdr,
            phnum: phnum as u64,
            phent: phent as u64,
            segments,
            end,
        })
    }

    /// Maps every segment, copies its file bytes (the rest is zero: .bss), applies its protection,
    /// and sets the brk heap just above the highest segment.
    pub fn load(&self, island: &Island, file: &[u8]) -> Result<(), LoaderError> {
        self.load_segments(island, file, false)
    }

    /// Loads only the read-only segments (text, rodata): what an island other than the origin
    /// loads itself; the writable ones reach it through the coherency protocol.
    pub fn load_local(&self, island: &Island, file: &[u8]) -> Result<(), LoaderError> {
        self.load_segments(island, file, true)
    }

    fn load_segments(
        &self,
        island: &Island,
        file: &[u8],
        local_only: bool,
    ) -> Result<(), LoaderError> {
        for step in self.load_plan(file.len(), local_only)? {
            let kind = if step.prot.writable() {
                VmaKind::Elf
            } else {
                VmaKind::ElfCode
            };
            mm::map_fixed_with(
                island,
                step.start,
                step.end - step.start,
                step.prot,
                kind,
                |g| {
                    for (addr, range) in &step.copies {
                        let bytes = file.get(range.clone()).ok_or(Errno::EFAULT)?;
                        g.write_slice(bytes, GuestAddress(*addr))
                            .map_err(|_| Errno::EFAULT)?;
                    }
                    Ok(())
                },
            )?;
        }
        island
            .user
            .layout_mut()
            .set_brk_start(page_up(self.end).unwrap_or(self.end));
        Ok(())
    }

    /// What loading does, segment by segment, for a file of `file_len` bytes: each mapping (whole
    /// pages) and the file bytes copied into it, in order. Segments may share a page at their
    /// boundary: a fresh mapping would lose what an earlier segment wrote there, so the earlier
    /// segment's bytes inside the mapping are copied again before the segment's own.
    pub fn load_plan(
        &self,
        file_len: usize,
        local_only: bool,
    ) -> Result<Vec<LoadStep>, LoaderError> {
        let range = |s: &Segment| -> Result<std::ops::Range<usize>, LoaderError> {
            let start = usize::try_from(s.offset).ok();
            let end = s
                .offset
                .checked_add(s.filesz)
                .and_then(|e| usize::try_from(e).ok());
            match (start, end) {
                (Some(a), Some(b)) if b <= file_len => Ok(a..b),
                _ => Err(LoaderError::Malformed(format!(
                    "segment at {:#x}: file bytes {:#x}+{:#x} beyond the file",
                    s.vaddr, s.offset, s.filesz
                ))),
            }
        };
        let mut plan = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            if local_only && s.prot.writable() {
                continue;
            }
            let start = page_down(s.vaddr);
            let end =
                s.vaddr
                    .checked_add(s.memsz)
                    .and_then(page_up)
                    .ok_or(LoaderError::OutOfRange {
                        vaddr: s.vaddr,
                        memsz: s.memsz,
                    })?;
            let mut copies = Vec::new();
            for o in &self.segments[..i] {
                let bytes = range(o)?;
                // Only the part that falls inside this mapping.
                let lo = o.vaddr.max(start);
                let hi = o.vaddr.saturating_add(o.filesz).min(end);
                if lo < hi {
                    let from = bytes.start + (lo - o.vaddr) as usize;
                    copies.push((lo, from..from + (hi - lo) as usize));
                }
            }
            copies.push((s.vaddr, range(s)?));
            plan.push(LoadStep {
                start,
                end,
                prot: s.prot,
                copies,
            });
        }
        Ok(plan)
    }
}

/// One mapping of [`ElfImage::load`]: `[start, end)` (whole pages) with the segment's protection,
/// and the file bytes copied into it (guest address, range of the file), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStep {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub copies: Vec<(u64, std::ops::Range<usize>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(e_type: u16, machine: u16) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[16..18].copy_from_slice(&e_type.to_le_bytes());
        d[18..20].copy_from_slice(&machine.to_le_bytes());
        d[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&1u16.to_le_bytes());
        // One PT_LOAD: vaddr 0x400000, the whole file, memsz 0x2000, R+X.
        let ph = 64;
        d[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        d[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
        d[ph + 16..ph + 24].copy_from_slice(&0x400000u64.to_le_bytes());
        d[ph + 32..ph + 40].copy_from_slice(&120u64.to_le_bytes());
        d[ph + 40..ph + 48].copy_from_slice(&0x2000u64.to_le_bytes());
        d
    }

    #[test]
    fn parses_a_minimal_executable() {
        let img = ElfImage::parse(&header(ET_EXEC, EM_X86_64)).expect("parse");
        assert_eq!(img.entry, 0x401000);
        assert_eq!(img.end, 0x402000);
        assert_eq!(img.phdr, 0x400040);
        assert_eq!(img.segments[0].prot, Prot::RX);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            ElfImage::parse(b"not an elf"),
            Err(LoaderError::NotElf)
        ));
        assert!(matches!(
            ElfImage::parse(b"\x7fELF"),
            Err(LoaderError::Malformed(_))
        ));
        assert!(matches!(
            ElfImage::parse(&header(ET_EXEC, 40)),
            Err(LoaderError::NotX86_64(40))
        ));
        assert!(matches!(
            ElfImage::parse(&header(1, EM_X86_64)),
            Err(LoaderError::NotExecutable(1))
        ));
        let mut d = header(ET_EXEC, EM_X86_64);
        d[4] = 1;
        assert!(matches!(ElfImage::parse(&d), Err(LoaderError::Not64Bit)));
        let mut d = header(ET_EXEC, EM_X86_64);
        d[56..58].copy_from_slice(&200u16.to_le_bytes());
        assert!(matches!(
            ElfImage::parse(&d),
            Err(LoaderError::Malformed(_))
        ));
        let mut d = header(ET_EXEC, EM_X86_64);
        d[64 + 16..64 + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        assert!(matches!(
            ElfImage::parse(&d),
            Err(LoaderError::OutOfRange { .. })
        ));
        let mut d = header(ET_EXEC, EM_X86_64);
        d[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        assert!(matches!(ElfImage::parse(&d), Err(LoaderError::Dynamic(_))));
    }
}
