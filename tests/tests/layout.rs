//! Layout changes racing with accesses on other islands (`images/src/layoutrace.c`): one thread
//! changes the layout of a small region over and over (madvise DONTNEED and FREE, mmap MAP_FIXED
//! over it, mprotect PROT_NONE and back, munmap then mmap, mremap between two addresses, brk
//! shrink and grow) while threads on other islands read and write it. Each run must end as
//! natively: every read saw what Linux allows (the value written last, or zeros after a drop;
//! 0 or EFAULT from the system calls that touch a region that may be gone), no crash, no hang.
//!
//! Before page generations (decision 16 of `coherency`), checked with the popvmm of the commit
//! before them: DONTNEED and MAP_FIXED killed the program on 2 islands in every try ("copy_void
//! from kernel 0 in state Unmapped", "ack ... in state NotReplicated"; with both threads on
//! island 1, "copy from kernel 1 in state Unmapped"), mprotect killed it ("reading page ... for
//! a Copy failed: Bad address"), MADV_FREE, munmap and brk hung on 2 islands, mremap on 4.

use popvmm_tests::{assert_same_on_islands, islands_run, native};

/// Changes per run: enough for many races, a few seconds on 2 cores.
const CHANGES: &str = "300";

/// `layoutrace MODE` on 2 islands (the changer on island 0 and a user on island 1, then both
/// on island 1: the origin serves the changes of a thread elsewhere) and on 4 islands (the
/// changer on island 1, users on 2, 3 and 0), `tries` times each.
fn race(mode: &str, tries: usize) {
    let one = native("glibc/layoutrace", &[mode, "1", CHANGES], &[]);
    let three = native("glibc/layoutrace", &[mode, "3", CHANGES], &[]);
    for n in [&one, &three] {
        assert_eq!(n.code, Some(0), "{mode} natively: {}", n.stderr_text());
        assert!(String::from_utf8_lossy(&n.stdout).ends_with("\nok\n"));
    }
    for i in 0..tries {
        for placement in ["list:0,1", "list:1,1"] {
            let r = islands_run(
                "glibc/layoutrace",
                &[mode, "1", CHANGES],
                &[],
                2,
                &["--placement", placement],
            );
            assert_same_on_islands(&format!("{mode} {placement}, try {i}"), &one, &r, 2);
        }
        let r = islands_run(
            "glibc/layoutrace",
            &[mode, "3", CHANGES],
            &[],
            4,
            &["--placement", "round-robin"],
        );
        assert_same_on_islands(&format!("{mode} on 4 islands, try {i}"), &three, &r, 4);
    }
}

#[test]
fn madvise_dontneed_while_other_islands_read_and_write() {
    race("dontneed", 3);
}

#[test]
fn madvise_free_while_other_islands_read_and_write() {
    race("free", 2);
}

#[test]
fn mmap_map_fixed_over_pages_in_use_on_other_islands() {
    race("mapfixed", 3);
}

#[test]
fn mprotect_none_and_back_while_other_islands_use_the_pages() {
    race("mprotect", 3);
}

#[test]
fn munmap_and_mmap_again_while_other_islands_use_the_pages() {
    race("munmap", 3);
}

#[test]
fn mremap_moves_while_other_islands_use_the_pages() {
    race("mremap", 3);
}

#[test]
fn brk_shrinks_and_grows_while_other_islands_use_the_pages() {
    race("brk", 3);
}
