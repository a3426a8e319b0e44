//! The differential test (`images/src/difftest.c`): a fixed sequence of file, memory and futex
//! calls with good and bad arguments, each printed with its result, run natively in a read-only
//! root like popvmm's and on an island, and compared line by line. A difference names the first
//! call whose answer differs.

use popvmm_tests::{island, native_in_root, Run};

const LIBCS: [&str; 3] = ["glibc", "glibc-pie", "musl"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Compares two outputs line by line; on the first difference, panics naming it, with the lines
/// before it for context.
fn compare_lines(what: &str, native: &str, island: &str) {
    let (n, i): (Vec<&str>, Vec<&str>) = (native.lines().collect(), island.lines().collect());
    for k in 0..n.len().max(i.len()) {
        let (a, b) = (n.get(k).copied(), i.get(k).copied());
        if a != b {
            let from = k.saturating_sub(6);
            let context = n[from..k.min(n.len())].join("\n");
            panic!(
                "{what}: line {} differs (the first differing call)\n\
                 ... context (native):\n{context}\n\
                 native: {}\n\
                 island: {}",
                k + 1,
                a.unwrap_or("<end of output>"),
                b.unwrap_or("<end of output>"),
            );
        }
    }
}

fn check(prog: &str) {
    let n: Run = native_in_root(prog, &[], &[]);
    let i: Run = island(prog, &[], &[]);
    let (nout, iout) = (text(&n.stdout), text(&i.stdout));
    assert!(
        nout.ends_with("## end\n"),
        "{prog} natively did not finish (code {:?}, signal {:?}):\n{}\n{nout}",
        n.code,
        n.signal,
        text(&n.stderr)
    );
    assert!(
        nout.lines().count() > 600,
        "{prog}: too little output natively:\n{nout}"
    );
    compare_lines(prog, &nout, &iout);
    assert_eq!(text(&i.stderr), text(&n.stderr), "{prog}: stderr differs");
    assert_eq!(
        (i.code, i.signal),
        (n.code, n.signal),
        "{prog}: exit status differs"
    );
}

#[test]
fn file_memory_and_futex_calls_answer_as_on_linux() {
    for libc in LIBCS {
        check(&format!("{libc}/difftest"));
    }
}
