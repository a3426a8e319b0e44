//! Every guest program, natively and on an island: same stdout, stderr and exit status.

use popvmm_tests::{compare, island, native};

const LIBCS: [&str; 3] = ["glibc", "glibc-pie", "musl"];

#[test]
fn hello_with_arguments_environment_and_exit_code() {
    for libc in LIBCS {
        let prog = format!("{libc}/hello");
        compare(&prog, &[], &[]);
        compare(
            &prog,
            &["one", "two words", ""],
            &[("POPVMM_TEST", "set by --env")],
        );
        compare(&prog, &["fail"], &[]);
    }
}

#[test]
fn pthreads_atomics_mutex_condvar_tls() {
    for libc in LIBCS {
        compare(&format!("{libc}/threads"), &[], &[]);
    }
}

#[test]
fn malloc_heavy_brk_mmap_mremap() {
    for libc in LIBCS {
        compare(&format!("{libc}/malloc"), &[], &[]);
    }
}

#[test]
fn files_from_the_rootfs() {
    for libc in LIBCS {
        compare(&format!("{libc}/files"), &[], &[]);
    }
}

#[test]
fn floating_point() {
    for libc in LIBCS {
        compare(&format!("{libc}/fp"), &[], &[]);
    }
}

/// A signal handler's floating point does not leak into the code it interrupted: the FPU/SSE
/// state is saved in the frame and restored by sigreturn (through KVM's XSAVE interface).
#[test]
fn fpu_state_survives_signal_handlers() {
    compare("glibc/sigfpu", &[], &[]);
}

#[test]
fn openmp_reduction() {
    compare("glibc/omp", &[], &[]);
}

#[test]
fn rust_std_threads() {
    compare("rust/hello", &["a", "b"], &[]);
}

#[test]
fn matmul_two_threads() {
    compare("glibc/matmul", &["64"], &[]);
}

#[test]
fn bad_pointers_get_efault() {
    for libc in LIBCS {
        let prog = format!("{libc}/efault");
        compare(&prog, &[], &[]);
        // Not only "the same as native": the island really answers EFAULT.
        let out = String::from_utf8_lossy(&island(&prog, &[], &[]).stdout).into_owned();
        assert!(
            out.contains("write(1, NULL, 10)           -> -1 Bad address"),
            "{out}"
        );
        assert!(
            out.contains("uname(read-only)             -> -1 Bad address"),
            "{out}"
        );
    }
}

#[test]
fn abort_is_sigabrt() {
    for libc in LIBCS {
        let prog = format!("{libc}/abort");
        assert_eq!(native(&prog, &[], &[]).signal, Some(libc::SIGABRT));
        compare(&prog, &[], &[]);
    }
}

#[test]
fn segmentation_faults() {
    for libc in LIBCS {
        let prog = format!("{libc}/segv");
        for mode in ["null", "wild", "mprotect", "rodata", "munmap"] {
            assert_eq!(
                native(&prog, &[mode], &[]).signal,
                Some(libc::SIGSEGV),
                "{prog} {mode}"
            );
            compare(&prog, &[mode], &[]);
        }
    }
}

#[test]
fn divide_by_zero_and_invalid_opcode() {
    for libc in LIBCS {
        compare(&format!("{libc}/divzero"), &[], &[]);
        compare(&format!("{libc}/illegal"), &[], &[]);
    }
}

#[test]
fn signal_handlers_frames_altstack_masks_and_faults() {
    for libc in LIBCS {
        let prog = format!("{libc}/signals");
        let n = native(&prog, &[], &[]);
        let out = String::from_utf8_lossy(&n.stdout).into_owned();
        // The program really exercises what it claims (natively), and ends by SIGSEGV.
        assert!(
            out.contains("recovered from signal 8 (divide by zero)"),
            "{out}"
        );
        assert!(out.contains("on altstack 1"), "{out}");
        assert_eq!(n.signal, Some(libc::SIGSEGV));
        compare(&prog, &[], &[]);
    }
}

#[test]
fn signals_between_threads_running_blocked_asleep_and_cancel() {
    for libc in LIBCS {
        compare(&format!("{libc}/sigthread"), &[], &[]);
    }
}

#[test]
fn robust_mutex_of_a_dead_thread() {
    compare("glibc/robust", &[], &[]);
}
