//! The few /proc and /sys files programs read, served from the island kernel's own view of the
//! program's machine (island i is CPU i), never from the host's: the host's /proc and /sys are
//! refused even when the root holds them (`path.rs`).
//!
//! | path | what it says |
//! |---|---|
//! | `/proc/cpuinfo` | one processor per island |
//! | `/proc/stat` | a `cpuN` line per island (glibc counts them when /sys is missing) |
//! | `/proc/self/maps`, `/proc/PID/maps` | the program's layout |
//! | `/sys/devices/system/cpu/{online,possible,present}` | `0-N` (glibc's `get_nprocs`, `sysconf(_SC_NPROCESSORS_ONLN)`) |
//! | `/sys/devices/system/cpu/cpuN/topology/...` | one core per island, one package (libgomp's `OMP_PLACES=cores`) |

use std::fmt::Write as _;

use super::Files;
use crate::kernel::uaccess::UserMemory;
use crate::kernel::vma::VmaKind;

/// The content of the served file at guest path `path` (already normalized), if there is one.
pub fn content(files: &Files, user: &UserMemory, path: &[u8]) -> Option<Vec<u8>> {
    let path = std::str::from_utf8(path).ok()?;
    let n = files.islands.max(1);
    let range = if n == 1 {
        "0\n".to_string()
    } else {
        format!("0-{}\n", n - 1)
    };
    let text = match path {
        "/sys/devices/system/cpu/online"
        | "/sys/devices/system/cpu/possible"
        | "/sys/devices/system/cpu/present" => range,
        "/proc/cpuinfo" => cpuinfo(n),
        "/proc/stat" => stat(n),
        _ => {
            if let Some(pid) = path
                .strip_prefix("/proc/")
                .and_then(|r| r.strip_suffix("/maps"))
            {
                if pid == "self" || pid == files.pid.to_string() {
                    return Some(maps(user, files.vdso).into_bytes());
                }
                return None;
            }
            let rest = path.strip_prefix("/sys/devices/system/cpu/cpu")?;
            let (cpu, file) = rest.split_once("/topology/")?;
            let cpu: usize = cpu.parse().ok()?;
            if cpu >= n {
                return None;
            }
            match file {
                "core_id" => format!("{cpu}\n"),
                "physical_package_id" | "die_id" | "cluster_id" => "0\n".to_string(),
                "thread_siblings_list" | "core_cpus_list" => format!("{cpu}\n"),
                "core_siblings_list" | "package_cpus_list" | "die_cpus_list" => range,
                _ => return None,
            }
        }
    };
    Some(text.into_bytes())
}

fn cpuinfo(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = write!(
            s,
            "processor\t: {i}\nvendor_id\t: popvmm\nmodel name\t: popvmm island {i}\n\
             physical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\n\
             flags\t\t: fpu sse sse2\n\n"
        );
    }
    s
}

fn stat(n: usize) -> String {
    let mut s = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
    for i in 0..n {
        let _ = writeln!(s, "cpu{i} 0 0 0 0 0 0 0 0 0 0");
    }
    s
}

/// `/proc/self/maps` from the layout (no device, inode or offset: the island's memory is one
/// anonymous reservation; file mappings are named by their guest path), the vDSO's pages first
/// when the program has them, named as Linux names them (the counter page is popvmm's own).
fn maps(user: &UserMemory, vdso: bool) -> String {
    use crate::memory::layout::{VDSO_ADDR, VDSO_COUNTER_ADDR, VDSO_MAX_SIZE, VVAR_ADDR};
    let space = user.layout();
    let mut s = String::new();
    if vdso {
        for (start, end, perms, name) in [
            (VVAR_ADDR, VDSO_COUNTER_ADDR, "r--p", "[vvar]"),
            (VDSO_COUNTER_ADDR, VDSO_ADDR, "rw-p", "[vvar]"),
            (VDSO_ADDR, VDSO_ADDR + VDSO_MAX_SIZE, "r-xp", "[vdso]"),
        ] {
            let _ = writeln!(s, "{start:08x}-{end:08x} {perms} 00000000 00:00 0 {name}");
        }
    }
    for v in space.vmas() {
        let prot = v.prot;
        let name = match &v.kind {
            VmaKind::File { path, .. } => path.clone(),
            VmaKind::Heap => "[heap]".to_string(),
            VmaKind::Stack => "[stack]".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{:08x}-{:08x} {}{}{}p 00000000 00:00 0 {name}",
            v.start,
            v.end,
            if prot.readable() { 'r' } else { '-' },
            if prot.writable() { 'w' } else { '-' },
            if prot.0 & libc::PROT_EXEC as u32 != 0 {
                'x'
            } else {
                '-'
            },
        );
    }
    s
}
