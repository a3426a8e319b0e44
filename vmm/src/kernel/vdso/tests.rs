//! The vDSO as glibc and musl see it (read with a minimal ELF reader that looks symbols up the
//! way musl's `__vdsosym` does), and the lines' promise: no clock goes backwards across a refresh.

use super::*;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn cstr(b: &[u8], o: usize) -> &str {
    let end = b[o..].iter().position(|&c| c == 0).expect("NUL") + o;
    std::str::from_utf8(&b[o..end]).expect("utf-8")
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_SONAME: u64 = 14;
const DT_REL: u64 = 17;
const DT_TEXTREL: u64 = 22;
const DT_JMPREL: u64 = 23;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_VERDEF: u64 = 0x6fff_fffc;

/// The image's dynamic entries, its load bias (file offset = address - bias: 0 here) and the
/// range its one PT_LOAD covers.
struct Image<'a> {
    b: &'a [u8],
    dynamic: Vec<(u64, u64)>,
    load: (u64, u64, u32),
}

impl<'a> Image<'a> {
    fn parse(b: &'a [u8]) -> Self {
        assert_eq!(&b[..4], b"\x7fELF", "not ELF");
        assert_eq!(b[4], 2, "not ELF64");
        assert_eq!(u16_at(b, 16), 3, "not ET_DYN");
        let (phoff, phentsize, phnum) = (
            u64_at(b, 32) as usize,
            u16_at(b, 54) as usize,
            u16_at(b, 56) as usize,
        );
        let mut loads = Vec::new();
        let mut dynamic = Vec::new();
        for i in 0..phnum {
            let p = phoff + i * phentsize;
            let (ty, flags, off, vaddr, filesz) = (
                u32_at(b, p),
                u32_at(b, p + 4),
                u64_at(b, p + 8),
                u64_at(b, p + 16),
                u64_at(b, p + 32),
            );
            match ty {
                PT_LOAD => {
                    assert_eq!(off, vaddr, "PT_LOAD at an address other than its offset");
                    loads.push((vaddr, vaddr + filesz, flags));
                }
                PT_DYNAMIC => {
                    let mut o = off as usize;
                    loop {
                        let (tag, val) = (u64_at(b, o), u64_at(b, o + 8));
                        if tag == DT_NULL {
                            break;
                        }
                        dynamic.push((tag, val));
                        o += 16;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(loads.len(), 1, "one PT_LOAD: {loads:?}");
        Image {
            b,
            dynamic,
            load: loads[0],
        }
    }

    fn tag(&self, t: u64) -> Option<usize> {
        self.dynamic
            .iter()
            .find(|(tag, _)| *tag == t)
            .map(|(_, v)| *v as usize)
    }

    /// Looks `name` up at `version` as musl does: the sysv hash table's nchain bounds the
    /// symbols; a symbol matches when it is a GLOBAL or WEAK FUNC, defined, and its VERSYM
    /// index names a VERDEF of `version`. Returns its address.
    fn lookup(&self, name: &str, version: &str) -> Option<u64> {
        let b = self.b;
        let hash = self.tag(DT_HASH).expect("DT_HASH");
        let symtab = self.tag(DT_SYMTAB).expect("DT_SYMTAB");
        let strtab = self.tag(DT_STRTAB).expect("DT_STRTAB");
        let versym = self.tag(DT_VERSYM);
        let verdef = self.tag(DT_VERDEF);
        let nchain = u32_at(b, hash + 4) as usize;
        for i in 0..nchain {
            let s = symtab + 24 * i;
            let info = b[s + 4];
            let (bind, ty) = (info >> 4, info & 0xf);
            let shndx = u16_at(b, s + 6);
            if ty != 2 || !(bind == 1 || bind == 2) || shndx == 0 {
                continue;
            }
            if cstr(b, strtab + u32_at(b, s) as usize) != name {
                continue;
            }
            if let (Some(vs), Some(mut vd)) = (versym, verdef) {
                let want = u16_at(b, vs + 2 * i) & 0x7fff;
                let mut found = false;
                loop {
                    let (flags, ndx, aux, next) = (
                        u16_at(b, vd + 2),
                        u16_at(b, vd + 4),
                        u32_at(b, vd + 12) as usize,
                        u32_at(b, vd + 16) as usize,
                    );
                    let vname = cstr(b, strtab + u32_at(b, vd + aux) as usize);
                    if flags & 1 == 0 && ndx & 0x7fff == want && vname == version {
                        found = true;
                    }
                    if next == 0 {
                        break;
                    }
                    vd += next;
                }
                if !found {
                    continue;
                }
            }
            return Some(u64_at(b, s + 8));
        }
        None
    }
}

#[test]
fn the_vdso_is_one_page_with_no_relocation_and_linux_names() {
    assert!(IMAGE.len() as u64 <= VDSO_MAX_SIZE, "{} bytes", IMAGE.len());
    let img = Image::parse(IMAGE);
    let (start, end, flags) = img.load;
    assert_eq!(start, 0);
    assert!(end <= VDSO_MAX_SIZE);
    assert_eq!(flags, 5, "R E, not writable");
    for t in [DT_REL, DT_RELA, DT_TEXTREL, DT_JMPREL] {
        assert_eq!(
            img.tag(t),
            None,
            "dynamic tag {t:#x}: the vDSO must not need relocating"
        );
    }
    let soname = img.tag(DT_SONAME).expect("DT_SONAME");
    let strtab = img.tag(DT_STRTAB).expect("DT_STRTAB");
    assert_eq!(cstr(IMAGE, strtab + soname), "linux-vdso.so.1");
    for name in [
        "__vdso_clock_gettime",
        "__vdso_gettimeofday",
        "__vdso_time",
        "__vdso_getcpu",
        "__vdso_clock_getres",
    ] {
        let at = img
            .lookup(name, "LINUX_2.6")
            .unwrap_or_else(|| panic!("{name}@LINUX_2.6 not found"));
        assert!((start..end).contains(&at), "{name} at {at:#x}");
        assert_eq!(
            img.lookup(name, "LINUX_2.5"),
            None,
            "{name}: any version matched"
        );
    }
    assert_eq!(img.lookup("__vdso_nothing", "LINUX_2.6"), None);
}

fn sample(tsc: u64, ns: i64) -> Sample {
    Sample {
        tsc,
        ns: [ns + 1_700_000_000_000_000_000, ns, ns - 5_000, ns + 7_000],
    }
}

/// A TSC of 2.5 GHz seen through host clocks that run `drift` fast (ppm), CLOCK_REALTIME and
/// CLOCK_BOOTTIME jumping `jump` ns at refresh 10 (set, or a suspend), with a first rate of `first_rate` ns per tick and the rate measured since the
/// start after that (as `ClockThread` does): each clock, read just before and just after each
/// refresh and along the way, never goes backwards (CLOCK_REALTIME included, as long as there is
/// no step). Returns how far the clocks end from the host's, at most.
fn run_lines(drift_ppm: f64, jump: i64, first_rate: f64) -> i64 {
    let host = |tsc: u64, refresh: u64| -> Sample {
        let base = (tsc as f64 * 0.4 * (1.0 + drift_ppm * 1e-6)) as i64;
        let mut s = sample(tsc, base);
        if refresh >= 10 {
            s.ns[REALTIME] += jump;
            s.ns[3] += jump;
        }
        s
    };
    let rate = [first_rate; 4];
    let mut tsc = 1_000_000u64;
    let first = host(tsc, 0);
    let mut lines = Lines::next(None, &first, &rate);
    let mut last = [i64::MIN; 4];
    let mut err = 0;
    for refresh in 1..=100 {
        // Readings between two refreshes (200 ms = 500 M ticks).
        for step in 0..=10u64 {
            let t = tsc + step * 50_000_000;
            for (c, l) in last.iter_mut().enumerate() {
                let v = lines.at(c, t);
                assert!(
                    v >= *l,
                    "clock {c} went back at refresh {refresh}: {v} < {l}"
                );
                *l = v;
            }
        }
        tsc += 500_000_000;
        let now = host(tsc, refresh);
        let measured = rates(&first, &now).expect("far enough apart");
        lines = Lines::next(Some(&lines), &now, &measured);
        err = (0..4)
            .map(|c| (lines.at(c, tsc) - now.ns[c]).abs())
            .max()
            .unwrap_or(0);
        // A reading with the old lines just before the new base is no later than the new base.
        for (c, l) in last.iter_mut().enumerate() {
            let v = lines.at(c, tsc);
            assert!(v >= *l, "clock {c} went back across refresh {refresh}");
            *l = v;
        }
    }
    err
}

#[test]
fn lines_never_go_back_and_follow_the_host() {
    // A rate measured right: the lines stay on the host's clock.
    assert!(run_lines(0.0, 0, 0.4) < 1_000);
    // A first rate 200 ppm fast: the line gets ahead, then slows down and comes back.
    let e = run_lines(0.0, 0, 0.4 * (1.0 + 200e-6));
    assert!(e < 20_000, "still {e} ns off");
    // The host's clocks run 300 ppm faster than first measured; two jump forward 10 ms: the
    // lines jump with them.
    let e = run_lines(300.0, 10_000_000, 0.4);
    assert!(e < 20_000, "still {e} ns off");
}

#[test]
fn realtime_follows_a_step_back_of_the_host() {
    let rate = [0.4; 4];
    let a = sample(1_000, 0);
    let lines = Lines::next(None, &a, &rate);
    // One second later the host's clocks say 1 s, but CLOCK_REALTIME was set back an hour.
    let mut b = sample(2_500_001_000, 1_000_000_000);
    b.ns[REALTIME] -= 3_600_000_000_000;
    let next = Lines::next(Some(&lines), &b, &rate);
    assert_eq!(next.line[REALTIME].base_ns, b.ns[REALTIME]);
    // CLOCK_MONOTONIC keeps going from where it was.
    assert!(next.line[1].base_ns >= lines.at(1, b.tsc));
}
