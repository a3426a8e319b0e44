//! The initial stack of the main thread, laid out as Linux's execve does: argc, argv, envp, the
//! auxiliary vector, and above them the strings and AT_RANDOM's 16 bytes.

use super::elf::{ElfImage, LoaderError};
use crate::kernel::vma::{Prot, VmaKind};
use crate::kernel::{mm, Island};
use crate::memory::layout::{STACK_SIZE, STACK_TOP};

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;

/// Maps the main thread's stack and writes the initial process stack; returns the initial rsp.
/// `vdso`: where the vDSO is (AT_SYSINFO_EHDR), if the program has one.
pub fn build(
    island: &Island,
    img: &ElfImage,
    argv: &[String],
    envp: &[String],
    execfn: &str,
    vdso: Option<u64>,
) -> Result<u64, LoaderError> {
    let bottom = STACK_TOP - STACK_SIZE;
    mm::map_fixed_with(island, bottom, STACK_SIZE, Prot::RW, VmaKind::Stack, |_| {
        Ok(())
    })?;

    // Strings, from the top down: execfn, platform, argv, envp.
    let mut top = STACK_TOP - 8;
    let mut put = |bytes: &[u8]| -> Result<u64, LoaderError> {
        let len = bytes.len() as u64 + 1;
        if top - bottom < len + 4096 {
            return Err(LoaderError::Malformed(
                "arguments and environment exceed the stack".into(),
            ));
        }
        top -= len;
        let mut v = bytes.to_vec();
        v.push(0);
        island.user.write(top, &v)?;
        Ok(top)
    };
    let execfn_addr = put(execfn.as_bytes())?;
    let platform = put(b"x86_64")?;
    let argv_addrs = argv
        .iter()
        .map(|a| put(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env_addrs = envp
        .iter()
        .map(|e| put(e.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut random = [0u8; 16];
    // SAFETY: getrandom writes at most 16 bytes into `random`.
    let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), 16, 0) };
    if n != 16 {
        return Err(LoaderError::Memory(libc::EIO));
    }
    let random_addr = (top - 16) & !15;
    island.user.write(random_addr, &random)?;

    // SAFETY: these identity queries take no arguments and cannot fail.
    let (uid, euid, gid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    // cpuid leaf 1 exists on every x86-64 CPU.
    let hwcap = std::arch::x86_64::__cpuid(1).edx as u64;
    let mut auxv: Vec<(u64, u64)> = vdso.map(|at| (AT_SYSINFO_EHDR, at)).into_iter().collect();
    auxv.extend([
        (AT_PHDR, img.phdr),
        (AT_PHENT, img.phent),
        (AT_PHNUM, img.phnum),
        (AT_PAGESZ, 4096),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, img.entry),
        (AT_UID, uid as u64),
        (AT_EUID, euid as u64),
        (AT_GID, gid as u64),
        (AT_EGID, egid as u64),
        (AT_PLATFORM, platform),
        (AT_HWCAP, hwcap),
        (AT_CLKTCK, 100),
        (AT_SECURE, 0),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn_addr),
        (AT_NULL, 0),
    ]);
    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend(&argv_addrs);
    words.push(0);
    words.extend(&env_addrs);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    let sp = (random_addr - 8 * words.len() as u64) & !15;
    if sp < bottom + 4096 {
        return Err(LoaderError::Malformed(
            "arguments and environment exceed the stack".into(),
        ));
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    island.user.write(sp, &bytes)?;
    Ok(sp)
}
