//! popvmm: a replicated-kernel hypervisor.
//!
//! One KVM VM per *island*, each with its own memory and its own island kernel (here, in the host
//! process), cooperating only by messages to run one multithreaded program as if on one SMP machine.
//! See `DESIGN` in the repository's README for the architecture; one module per concern.

/// Writes a diagnostic line on stderr, like `eprintln!`, but never panics: with stderr gone (a
/// closed pipe: `popvmm launch -vv ... 2>&1 | head`) `eprintln!` panics, and a panic in an island
/// kernel's thread, or in the handler that ends the program after one, would leave the program
/// hung. A diagnostic nobody can read is dropped instead.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod api;
pub mod balance;
pub mod cli;
pub mod dsm;
pub mod fabric;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod kernel;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod metrics;
#[cfg(feature = "plots")]
pub mod plot;
pub mod program;
pub mod sync;
