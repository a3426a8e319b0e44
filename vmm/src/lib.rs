//! popvmm: a replicated-kernel hypervisor.
//!
//! One KVM VM per *island*, each with its own memory and its own island kernel (here, in the host
//! process), cooperating only by messages to run one multithreaded program as if on one SMP machine.
//! See `DESIGN` in the repository's README for the architecture; one module per concern.

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
