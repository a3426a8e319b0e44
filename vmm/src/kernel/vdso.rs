//! The vDSO: clock_gettime, gettimeofday, time, getcpu and clock_getres served in the program's
//! own user mode, without an exit, as Linux's vDSO serves them (issue 11).
//!
//! Three parts in each island's kernel area (`memory/layout.rs`):
//! - the vDSO itself at [`VDSO_ADDR`]: an ELF shared object built from `vdso/vdso.c` by
//!   `build.rs`, the same bytes on every island, announced to the program by AT_SYSINFO_EHDR;
//!   glibc and musl find `__vdso_clock_gettime` and the others in it and call them instead of
//!   the system call;
//! - the clock page at [`VVAR_ADDR`], the island's own, user read-only: a seqlock-protected line
//!   per clock (`ns = base + (tsc - tsc_base) * mult >> shift`) that the program's TSC (`rdtsc`
//!   at CPL3: native speed on this host's KVM, and the host's own TSC) turns into the time, and
//!   the island number (getcpu);
//! - the counter page at [`VDSO_COUNTER_ADDR`], user writable: the calls the vDSO served.
//!
//! One [`ClockThread`] per program computes the lines from the host's clocks and TSC and writes
//! the same lines, with the same sequence numbers, to every island: a thread that migrates in the
//! middle of a call reads on its new island either the same line or a new sequence (and retries).
//! A refresh never lets a clock go backwards: popvmm marks every page as being written (odd
//! sequence) *before* it reads the TSC the new lines start at, so that every reading made with the
//! old lines has a TSC before that start; each new line starts where the old one had got to there
//! and steers towards the host's clock by changing its rate (at most [`MAX_SLEW`]), or jumps
//! forwards to the host's clock when that is well ahead. Only CLOCK_REALTIME steps back, and only when the host's clock
//! was stepped ([`STEP_NS`]). What the vDSO cannot serve (CPU-time clocks, unknown clocks, a
//! clock page not published yet) takes the real `syscall`.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use crate::memory::layout::{VDSO_ADDR, VDSO_COUNTER_ADDR, VDSO_MAX_SIZE, VVAR_ADDR};
use crate::memory::IslandMemory;

/// The vDSO as `build.rs` built it.
pub const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// The clocks with a line, in the order of the page's lines (`vdso.c`, `line_of`).
pub const CLOCKS: [libc::clockid_t; 4] = [
    libc::CLOCK_REALTIME,
    libc::CLOCK_MONOTONIC,
    libc::CLOCK_MONOTONIC_RAW,
    libc::CLOCK_BOOTTIME,
];
const REALTIME: usize = 0;

/// Offsets in the clock page: `struct vvar` of `vdso.c` (whose `_Static_assert`s repeat them).
const SEQ: u64 = 0;
const ENABLED: u64 = 4;
const ISLAND: u64 = 8;
const SHIFT_AT: u64 = 12;
const TSC_BASE: u64 = 16;
const LINES: u64 = 24;
const LINE_SIZE: u64 = 16;
const RES: u64 = LINES + LINE_SIZE * CLOCKS.len() as u64;

/// Fixed-point shift of the lines' rates (ns per tick << SHIFT).
const SHIFT: u32 = 32;
/// How often the lines are computed again (after the first ones: see [`FIRST_REFRESH`]).
pub const REFRESH: Duration = Duration::from_millis(200);
/// How long the first rate is measured before the vDSO serves anything: short, so that the
/// program's first time calls are not all system calls; the rate it gives (within ~100 ppm) is
/// measured again at each refresh, over the whole run.
const CALIBRATION: Duration = Duration::from_millis(2);
/// The first refresh comes this soon, and each next one twice as late, up to [`REFRESH`]: the
/// first rate's error is steered out while it is still small.
const FIRST_REFRESH: Duration = Duration::from_millis(10);
/// The most a line's rate departs from the measured one to catch up with the host's clock
/// (500 ppm, as NTP's limit).
pub const MAX_SLEW: f64 = 500e-6;
/// A line ahead of its host clock by e catches up over this many ns (rate changed by e / this).
const SLEW_NS: f64 = 1e9;
/// A line behind its host clock by more than this jumps to it (forwards: no reading goes back)
/// rather than catch up by its rate.
const CATCH_UP_NS: i64 = 1_000_000;
/// A difference with the host's clock beyond this is a step (the host's clock was set), not
/// drift: CLOCK_REALTIME follows it, even backwards; the others only forwards.
pub const STEP_NS: i64 = 50_000_000;

#[derive(Debug, thiserror::Error)]
pub enum VdsoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("the host's clock source is {0:?}, not tsc: the TSC is no clock to trust here")]
    ClockSource(String),
    #[error("the host's CPU lacks {0}: its TSC may change rate or stop")]
    TscFlag(&'static str),
    #[error(
        "KVM here is not PVM (no /sys/module/kvm_pvm): the guest's TSC may be offset from the \
         host's (VMX and SVM start it near 0), and popvmm's lines read the host's"
    )]
    NotPvm,
    #[error("the vDSO image takes {0} bytes, more than its {VDSO_MAX_SIZE} in the kernel area")]
    TooBig(usize),
    #[error("cannot write the vDSO into the island: {0}")]
    Write(String),
    #[error("the TSC rate measured against CLOCK_MONOTONIC is not sane ({0} ns per tick)")]
    Rate(f64),
    #[error("cannot start the vDSO clock thread: {0}")]
    Thread(std::io::Error),
}

/// Whether the guest's TSC can serve as a clock: the guest reads the host's TSC itself (measured on
/// PVM, the KVM of these hosts: `rdtsc` at CPL3 runs natively, equal to the host's value, at the
/// host's rate; see README, **vDSO**; a VMX or SVM KVM offsets it, which popvmm does not measure,
/// so the vDSO stays off there), the host's own kernel uses it as its clock source (so it is
/// synchronized across CPUs and trusted), and it runs at a constant rate through power states.
pub fn tsc_usable() -> Result<(), VdsoError> {
    if !std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Err(VdsoError::NotPvm);
    }
    const SOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    let source = std::fs::read_to_string(SOURCE).map_err(|source| VdsoError::Read {
        path: SOURCE,
        source,
    })?;
    if source.trim() != "tsc" {
        return Err(VdsoError::ClockSource(source.trim().to_string()));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").map_err(|source| VdsoError::Read {
        path: "/proc/cpuinfo",
        source,
    })?;
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    for flag in ["constant_tsc", "nonstop_tsc"] {
        if !flags.split_whitespace().any(|f| f == flag) {
            return Err(VdsoError::TscFlag(flag));
        }
    }
    Ok(())
}

/// Writes the vDSO and an empty clock page (the vDSO takes the system call until the clock thread
/// publishes its lines) into the kernel area of island `island`, and makes their pages user pages.
/// Before any vCPU of the island runs.
pub fn install(mem: &IslandMemory, island: usize) -> Result<(), VdsoError> {
    if IMAGE.len() as u64 > VDSO_MAX_SIZE {
        return Err(VdsoError::TooBig(IMAGE.len()));
    }
    let g = mem.guest();
    let w = |e: vm_memory::GuestMemoryError| VdsoError::Write(e.to_string());
    g.write_slice(&[0u8; 4096], GuestAddress(VVAR_ADDR))
        .map_err(w)?;
    g.write_slice(&[0u8; 4096], GuestAddress(VDSO_COUNTER_ADDR))
        .map_err(w)?;
    g.write_slice(&vec![0u8; VDSO_MAX_SIZE as usize], GuestAddress(VDSO_ADDR))
        .map_err(w)?;
    g.write_slice(IMAGE, GuestAddress(VDSO_ADDR)).map_err(w)?;
    g.write_obj(island as u32, GuestAddress(VVAR_ADDR + ISLAND))
        .map_err(w)?;
    g.write_obj(SHIFT, GuestAddress(VVAR_ADDR + SHIFT_AT))
        .map_err(w)?;
    crate::kvm::boot::map_vdso_pages(g).map_err(w)?;
    Ok(())
}

/// The calls the vDSO of this island served (0 when it is off).
pub fn served(mem: &IslandMemory) -> u64 {
    mem.guest()
        .read_obj::<u64>(GuestAddress(VDSO_COUNTER_ADDR))
        .unwrap_or(0)
}

/// One reading of the host: its TSC and the clocks of [`CLOCKS`] at that TSC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub tsc: u64,
    pub ns: [i64; 4],
}

/// A clock's line: `ns = base_ns + (tsc - tsc_base) * mult >> SHIFT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub base_ns: i64,
    pub mult: u64,
}

/// The lines published on every island.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    pub tsc_base: u64,
    pub line: [Line; 4],
}

impl Lines {
    /// What the vDSO computes for clock `c` at `tsc` (a TSC before the base counts as the base).
    pub fn at(&self, c: usize, tsc: u64) -> i64 {
        let delta = tsc.saturating_sub(self.tsc_base);
        let l = self.line[c];
        let add = ((delta as u128 * l.mult as u128) >> SHIFT) as i64;
        l.base_ns.wrapping_add(add)
    }

    /// The next lines, starting at `now`: each clock starts where `prev`'s line had got to at
    /// `now.tsc` (or at the host's clock, when that is ahead by more than [`CATCH_UP_NS`] or when
    /// the host stepped CLOCK_REALTIME back), with the rate `rate` (ns per tick, measured) changed so that a line ahead
    /// of the host's clock falls back to it, and one behind catches up.
    pub fn next(prev: Option<&Lines>, now: &Sample, rate: &[f64; 4]) -> Lines {
        let mut line = [Line {
            base_ns: 0,
            mult: 0,
        }; 4];
        for (c, l) in line.iter_mut().enumerate() {
            let host = now.ns[c];
            let (base, slew) = match prev {
                None => (host, 0.0),
                Some(p) => {
                    let pred = p.at(c, now.tsc);
                    let err = pred.saturating_sub(host);
                    if err < -CATCH_UP_NS || (c == REALTIME && err > STEP_NS) {
                        (host, 0.0)
                    } else {
                        let slew = (err as f64 / SLEW_NS).clamp(-MAX_SLEW, MAX_SLEW);
                        (pred, slew)
                    }
                }
            };
            let mult = rate[c] * (1.0 - slew) * (1u64 << SHIFT) as f64;
            *l = Line {
                base_ns: base,
                mult: mult as u64,
            };
        }
        Lines {
            tsc_base: now.tsc,
            line,
        }
    }
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the time stamp counter (CR4.TSD is clear for host user mode, which
    // is what the host kernel's own vDSO relies on); the fences order it after every earlier
    // load and store (Intel SDM, RDTSC: "MFENCE; LFENCE").
    unsafe {
        std::arch::x86_64::_mm_mfence();
        std::arch::x86_64::_mm_lfence();
        let t = std::arch::x86_64::_rdtsc();
        std::arch::x86_64::_mm_lfence();
        t
    }
}

fn host_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`; the clocks of CLOCKS always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The host's clocks at one TSC: the tightest of three tries (TSC, clocks, TSC), at the midpoint.
fn sample() -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..3 {
        let t0 = rdtsc();
        let ns = CLOCKS.map(host_ns);
        let t1 = rdtsc();
        let span = t1.saturating_sub(t0);
        if best.is_none_or(|(s, _)| span < s) {
            best = Some((
                span,
                Sample {
                    tsc: t0 + span / 2,
                    ns,
                },
            ));
        }
    }
    best.map(|(_, s)| s).unwrap_or(Sample {
        tsc: rdtsc(),
        ns: CLOCKS.map(host_ns),
    })
}

/// Ns per tick between two samples (None when they are not far enough apart), for every line:
/// the TSC against CLOCK_MONOTONIC, the one clock that never jumps. (The others run at its rate
/// but for the host's small frequency corrections, which each line's steering takes up.)
fn rates(a: &Sample, b: &Sample) -> Option<[f64; 4]> {
    const MONOTONIC: usize = 1;
    let ticks = b.tsc.checked_sub(a.tsc)?;
    if ticks < 1_000_000 {
        return None;
    }
    Some([(b.ns[MONOTONIC] - a.ns[MONOTONIC]) as f64 / ticks as f64; 4])
}

/// The rates between two samples, if they are those of a TSC between 100 MHz and 20 GHz.
fn sane_rates(a: &Sample, b: &Sample) -> Result<[f64; 4], VdsoError> {
    let rate = rates(a, b).ok_or(VdsoError::Rate(0.0))?;
    match rate.iter().find(|r| !(0.05..10.0).contains(*r)) {
        Some(bad) => Err(VdsoError::Rate(*bad)),
        None => Ok(rate),
    }
}

/// The clock pages of a program's islands, written together.
struct Pages {
    pages: Vec<Arc<IslandMemory>>,
    seq: u32,
}

impl Pages {
    fn word<T>(mem: &IslandMemory, off: u64) -> *const T {
        (mem.host_base() + VVAR_ADDR + off) as *const T
    }

    fn seq(mem: &IslandMemory) -> &AtomicU32 {
        // SAFETY: the clock page is host-mapped read-write for the program's whole life (the
        // kernel area never changes protection) and `mem` keeps the mapping; the offset is
        // 4-aligned. The guest reads it concurrently: an atomic is the right access.
        unsafe { &*Self::word::<AtomicU32>(mem, SEQ) }
    }

    fn u64_at(mem: &IslandMemory, off: u64) -> &AtomicU64 {
        // SAFETY: as in `seq`; every u64 of the page is at an 8-aligned offset.
        unsafe { &*Self::word::<AtomicU64>(mem, off) }
    }

    /// Marks every page as being written; the TSC read after this is later than every reading
    /// of the old lines that a reader accepted.
    fn begin(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        for m in &self.pages {
            Self::seq(m).store(self.seq, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    fn end(&mut self, lines: &Lines, res: &[i64; 4]) {
        for m in &self.pages {
            Self::u64_at(m, TSC_BASE).store(lines.tsc_base, Ordering::Relaxed);
            for (c, l) in lines.line.iter().enumerate() {
                let at = LINES + LINE_SIZE * c as u64;
                Self::u64_at(m, at).store(l.base_ns as u64, Ordering::Relaxed);
                Self::u64_at(m, at + 8).store(l.mult, Ordering::Relaxed);
                Self::u64_at(m, RES + 8 * c as u64).store(res[c] as u64, Ordering::Relaxed);
            }
            // SAFETY: as in `seq`; the flag is a 4-aligned u32.
            let enabled = unsafe { &*Self::word::<AtomicU32>(m, ENABLED) };
            enabled.store(1, Ordering::Relaxed);
        }
        self.seq = self.seq.wrapping_add(1);
        for m in &self.pages {
            Self::seq(m).store(self.seq, Ordering::Release);
        }
    }
}

/// The thread that keeps the islands' clock pages current; it ends when dropped.
#[derive(Debug)]
pub struct ClockThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl ClockThread {
    /// Starts the thread: it measures the TSC's rate (the program's first [`CALIBRATION`] of
    /// time calls are system calls), publishes the first lines on the islands of `pages`, and
    /// refreshes them (soon at first, then every [`REFRESH`]) until dropped. When the rate is not
    /// sane, it says so and publishes nothing: the vDSO keeps taking system calls.
    pub fn start(pages: Vec<Arc<IslandMemory>>) -> Result<Self, VdsoError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let res = CLOCKS.map(|c| {
            let mut r = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_getres writes one timespec into `r`.
            unsafe { libc::clock_getres(c, &mut r) };
            r.tv_nsec
        });
        let handle = std::thread::Builder::new()
            .name("vdso-clock".into())
            .spawn(move || {
                let first = sample();
                if let Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) =
                    stopped.recv_timeout(CALIBRATION)
                {
                    return;
                }
                let second = sample();
                let rate = match sane_rates(&first, &second) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("popvmm: the vDSO serves nothing: {e}");
                        return;
                    }
                };
                let mut pages = Pages { pages, seq: 0 };
                pages.begin();
                let now = sample();
                let mut lines = Lines::next(None, &now, &rate);
                pages.end(&lines, &res);
                let mut wait = FIRST_REFRESH;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    wait = (wait * 2).min(REFRESH);
                    pages.begin();
                    let now = sample();
                    let r = rates(&first, &now).unwrap_or(rate);
                    lines = Lines::next(Some(&lines), &now, &r);
                    pages.end(&lines, &res);
                }
            })
            .map_err(VdsoError::Thread)?;
        Ok(Self {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for ClockThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
