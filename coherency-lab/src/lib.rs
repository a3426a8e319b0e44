//! The tools around the Popcorn page coherency protocol ([`coherency`]), all driving the real
//! [`coherency::Engine`], never a copy of it:
//!
//! - [`model`]: the exhaustive model checker (stateright): every interleaving of a few kernels'
//!   accesses and message deliveries, FIFO per link or unordered; properties: no protocol error or
//!   stale read, single writer / multiple readers, every valid copy holds the latest write, a
//!   linearizability tester per page, no wait state once the network is empty, a bound on
//!   messages, every access completes.
//! - [`sim`]: a seeded discrete-event simulator for systems too large to enumerate (up to 64
//!   kernels), invariants after every event, messages counted by type.
//! - [`ivy`]: the baseline, IVY's centralized manager, on the same traces.
//! - [`figure7`]: the paper's evaluation (§6, figure 7) in simulation.
//!
//! The lab is kept out of the engine's crate so that the protocol compiles without any of it (no
//! stateright in `coherency`). The deliberate bugs that prove the checker can fail
//! (`coherency::Mutant`) are a feature of `coherency` (`mutants`), not of this crate: this crate
//! depends on `coherency` without it, so linking the lab (as `popvmm protocol` does) does not put
//! mutant branches into an engine. The lab's tests turn it on through a dev-dependency; the
//! reports name the mutant when there is one (through `coherency::Config`'s `Display`).

pub mod figure7;
pub mod ivy;
pub mod model;
pub mod sim;
