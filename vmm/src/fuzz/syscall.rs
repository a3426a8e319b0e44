//! System calls with hostile arguments, served in-process: every call of the file family (the
//! largest one: paths, iovecs, stat buffers, directory entries, poll arrays, descriptors) through
//! the system-call table's own handlers, as the origin serves them (`FileCx`: the program's
//! files and its memory), against a `UserMemory` over a small island memory and a scratch root;
//! and the structure decoders of the other families that take the program's memory
//! (`read_timespec`). The program's memory holds what the input says: strings, iovec and pollfd
//! arrays, pointers into mapped, read-only, unmapped and kernel memory.
//!
//! Invariants: an answer is a value or an errno of Linux's range; counts never exceed what was
//! asked; nothing panics or allocates beyond the host I/O bound. Poll timeouts are forced to 0 so
//! that no input can make a call wait. (The guest-side fuzzer, `images/src/fuzz.c`, covers the
//! other families end to end on real islands.)

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::{Result as Arb, Unstructured};

use crate::kernel::fs::{FileCx, Files};
use crate::kernel::syscall::{self, Handler};
use crate::kernel::uaccess::UserMemory;
use crate::kernel::vma::{Prot, VmaKind};
use crate::memory::{HostProt, IslandMemory};

/// The scratch mapping: 16 read-write pages (strings, arrays, then bytes from the input).
const BASE: u64 = 0x40_0000;
const SCRATCH: u64 = 0x10000;
/// A read-only page right after it, then an unmapped page, then one more read-write page.
const RO: u64 = BASE + SCRATCH;
const HOLE: u64 = RO + 0x1000;
const LONE: u64 = HOLE + 0x1000;
/// Where the planted structures are.
const STRINGS: u64 = BASE;
const STRING_SLOT: u64 = 256;
const IOVECS: u64 = BASE + 0x1000;
const POLLFDS: u64 = BASE + 0x2000;
const ZERO_TIMESPEC: u64 = BASE + 0x3000;
const FREE: u64 = BASE + 0x4000;

struct Env {
    root: PathBuf,
    user: UserMemory,
}

static ENV: OnceLock<Mutex<Env>> = OnceLock::new();

/// The scratch root: files, directories, and symbolic links that try to leave it.
fn make_root(root: &std::path::Path) {
    let mk = |p: &str| std::fs::create_dir_all(root.join(p)).expect("scratch root");
    mk("data/sub");
    mk("empty");
    std::fs::write(root.join("data/poem.txt"), "so much depends\nupon\n").expect("file");
    std::fs::write(root.join("data/sub/big"), vec![b'x'; 100_000]).expect("file");
    std::fs::write(root.join("prog"), b"\x7fELF").expect("file");
    let link = |to: &str, at: &str| {
        let _ = std::os::unix::fs::symlink(to, root.join(at));
    };
    link("/etc/passwd", "escape");
    link("../..", "data/up");
    link("sub", "data/down");
    link("loop", "loop");
}

/// One scratch root and one island memory per process (inputs run one at a time).
fn env() -> &'static Mutex<Env> {
    ENV.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("popvmm-fuzz-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mem = Arc::new(IslandMemory::new(1 << 30).expect("island memory"));
        let user = UserMemory::new(Arc::clone(&mem));
        {
            let mut s = user.layout_mut();
            s.map_fixed(BASE, SCRATCH, Prot::RW, VmaKind::Anon)
                .expect("map");
            s.map_fixed(RO, 0x1000, Prot::R, VmaKind::Anon)
                .expect("map");
            s.map_fixed(LONE, 0x1000, Prot::RW, VmaKind::Anon)
                .expect("map");
        }
        mem.protect(BASE, SCRATCH, HostProt::ReadWrite)
            .expect("protect");
        mem.protect(RO, 0x1000, HostProt::Read).expect("protect");
        mem.protect(LONE, 0x1000, HostProt::ReadWrite)
            .expect("protect");
        Mutex::new(Env { root, user })
    })
}

/// Removes the scratch root (the tests call it when done; the next input makes it again).
pub fn cleanup() {
    if let Some(env) = ENV.get() {
        let _ = std::fs::remove_dir_all(&crate::sync::lock(env).root);
    }
}

const PATHS: &[&[u8]] = &[
    b"/data/poem.txt",
    b"data/poem.txt",
    b"/data",
    b"/data/sub/big",
    b"/",
    b".",
    b"..",
    b"/../../..",
    b"/escape",
    b"/data/up/data/poem.txt",
    b"/data/down/",
    b"/loop",
    b"/prog",
    b"/empty/",
    b"/nope",
    b"/dev/null",
    b"/dev/zero",
    b"/dev/urandom",
    b"/dev/tty",
    b"/proc/self/maps",
    b"/proc/self/exe",
    b"/proc/self/mem",
    b"/proc/cpuinfo",
    b"/proc/stat",
    b"/sys/devices/system/cpu/online",
    b"/sys/devices/system/cpu/cpu0/topology/core_id",
    b"/sys/kernel",
    b"",
];

type Serve = fn(&FileCx<'_>, [u64; 6]) -> crate::kernel::SysResult;

/// The file family's entries of the system-call table.
fn file_calls() -> &'static [(u64, Serve)] {
    static CALLS: OnceLock<Vec<(u64, Serve)>> = OnceLock::new();
    CALLS.get_or_init(|| {
        syscall::table()
            .filter_map(|e| match e.handler {
                Handler::File(f) => Some((e.nr, f)),
                _ => None,
            })
            .collect()
    })
}

/// An argument: descriptors, flags, lengths, and pointers of every kind.
fn arg(u: &mut Unstructured<'_>) -> Arb<u64> {
    Ok(match u.int_in_range(0..=15)? {
        0 => u.int_in_range(0..=12)?,
        1 => (libc::AT_FDCWD as i64) as u64,
        2 => STRINGS + STRING_SLOT * u.int_in_range(0..=15)?,
        3 => IOVECS + 16 * u.int_in_range(0..=7)?,
        4 => POLLFDS,
        5 => BASE + u.int_in_range(0..=SCRATCH)?,
        // Ends of the mapping: buffers that run into the read-only page or the hole.
        6 => RO - u.int_in_range(0..=64)?,
        7 => *u.choose(&[RO, HOLE, LONE, LONE + 0xff8, HOLE - 1])?,
        8 => *u.choose(&[0, 8, 0x1000, 1 << 47, (1 << 47) - 8, 0x8000_0000_0000_0000])?,
        9 => *u.choose(&[
            u64::MAX,
            u64::MAX - 99,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
        ])?,
        10 => u.int_in_range(0..=0x12000)?,
        11 => *u.choose(&[
            libc::O_RDONLY as u64,
            (libc::O_RDONLY | libc::O_DIRECTORY) as u64,
            (libc::O_RDWR | libc::O_CREAT) as u64,
            (libc::O_WRONLY | libc::O_TRUNC) as u64,
            libc::O_PATH as u64,
            (libc::O_RDONLY | libc::O_NOFOLLOW) as u64,
            libc::AT_SYMLINK_NOFOLLOW as u64,
            libc::AT_EMPTY_PATH as u64,
            0o777,
        ])?,
        12 => *u.choose(&[
            libc::F_GETFD as u64,
            libc::F_SETFD as u64,
            libc::F_GETFL as u64,
            libc::F_SETFL as u64,
            libc::F_DUPFD as u64,
            libc::F_DUPFD_CLOEXEC as u64,
            libc::F_GETLK as u64,
            libc::TCGETS,
            libc::TIOCGWINSZ,
            libc::FIONREAD,
        ])?,
        13 => *u.choose(&[0, 1, 2, 3, 4, 1023, 1024, 65536])?,
        _ => u.arbitrary()?,
    })
}

/// An iovec: a base and a length, good or bad.
fn iovec(u: &mut Unstructured<'_>) -> Arb<[u64; 2]> {
    let base = match u.int_in_range(0..=3)? {
        0 => FREE + u.int_in_range(0..=0xc000)?,
        1 => arg(u)?,
        2 => RO - u.int_in_range(0..=32)?,
        _ => 0,
    };
    let len = match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=64)?,
        1 => u.int_in_range(0..=0x20000)?,
        2 => *u.choose(&[0, u64::MAX, 1 << 63, 0x7fff_f000])?,
        _ => u.arbitrary()?,
    };
    Ok([base, len])
}

/// Plants the input's structures in the scratch memory, then makes its calls.
fn run(u: &mut Unstructured<'_>, cx: &FileCx<'_>) -> Arb<bool> {
    let user = cx.user;
    for slot in 0..16u64 {
        let mut s = if u.ratio(1, 8)? {
            // A long or odd path.
            let n = u.int_in_range(0..=250)?;
            u.bytes(n)?.to_vec()
        } else {
            PATHS[u.choose_index(PATHS.len())?].to_vec()
        };
        s.truncate(STRING_SLOT as usize - 1);
        s.push(0);
        user.write(STRINGS + slot * STRING_SLOT, &s)
            .expect("scratch is writable");
    }
    for i in 0..64u64 {
        let v = iovec(u)?;
        user.write_obj(IOVECS + 16 * i, v).expect("scratch");
    }
    for i in 0..8u64 {
        let fd: i32 = if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            u.int_in_range(-1..=8)?
        };
        let events: i16 = u.arbitrary()?;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&fd.to_le_bytes());
        b[4..6].copy_from_slice(&events.to_le_bytes());
        user.write(POLLFDS + 8 * i, &b).expect("scratch");
    }
    user.write(ZERO_TIMESPEC, &[0u8; 16]).expect("scratch");
    let calls = file_calls();
    let mut accepted = false;
    for _ in 0..u.int_in_range(1..=8)? {
        let (nr, serve) = calls[u.choose_index(calls.len())?];
        let mut a = [0u64; 6];
        for x in &mut a {
            *x = arg(u)?;
        }
        // No input may make a call wait.
        match nr as libc::c_long {
            libc::SYS_poll => a[2] = 0,
            libc::SYS_ppoll => a[2] = ZERO_TIMESPEC,
            _ => {}
        }
        let r = serve(cx, a);
        match r {
            Ok(v) => {
                accepted = true;
                let counted = matches!(
                    nr as libc::c_long,
                    libc::SYS_read | libc::SYS_pread64 | libc::SYS_write | libc::SYS_pwrite64
                );
                if counted {
                    assert!(
                        v <= a[2],
                        "{}({a:x?}) = {v}: more than asked",
                        syscall::name(nr)
                    );
                }
            }
            Err(e) => assert!(
                (1..4096).contains(&e.0),
                "{}({a:x?}): errno {}",
                syscall::name(nr),
                e.0
            ),
        }
    }
    Ok(accepted)
}

pub fn file_calls_target(data: &[u8]) -> bool {
    let env = crate::sync::lock(env());
    if !env.root.join("data/sub/big").exists() {
        make_root(&env.root);
    }
    // A fresh program: its files, and its memory cleared.
    let zeros = vec![0u8; SCRATCH as usize];
    env.user.write(BASE, &zeros).expect("scratch");
    env.user.write(LONE, &zeros[..0x1000]).expect("scratch");
    let files = Files::new(&env.root, 1, "/prog".into(), 1).expect("files");
    let null = || -> Option<OwnedFd> { std::fs::File::open("/dev/null").ok().map(OwnedFd::from) };
    files.table().set_stdio([null(), null(), null()]);
    let cx = FileCx {
        files: &files,
        user: &env.user,
    };
    let mut u = Unstructured::new(data);
    // The last bytes of the input, as they are, fill the free part of the scratch.
    let tail = data.len().saturating_sub(0x400);
    env.user
        .write(FREE, &data[tail..])
        .expect("scratch is writable");
    run(&mut u, &cx).unwrap_or(false)
}
