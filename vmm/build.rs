//! Builds the vDSO (`vdso/`, see `src/kernel/vdso.rs`) with the system C compiler into OUT_DIR,
//! where `include_bytes!` takes it. The checks that it is what popvmm maps (no relocation, one
//! page, the symbols glibc and musl look up) are the unit tests of `kernel/vdso.rs`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("vdso.so");
    let src = dir.join("vdso/vdso.c");
    let version = dir.join("vdso/vdso.lds");
    let layout = dir.join("vdso/vdso-layout.lds");
    for f in [&src, &version, &layout] {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-shared",
            "-fPIC",
            "-O2",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fcf-protection=none",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,--hash-style=sysv",
            "-Wl,-soname,linux-vdso.so.1",
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
        ])
        .arg(format!("-Wl,--version-script={}", version.display()))
        .arg(format!("-Wl,-T,{}", layout.display()))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc} to build the vDSO: {e}"));
    assert!(status.success(), "{cc} failed to build the vDSO ({status})");
}
