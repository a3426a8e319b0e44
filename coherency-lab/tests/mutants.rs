//! The deliberate bugs at the engine level (their model-checker tests are in `model_check.rs`).
//! They need `coherency`'s `mutants` feature, which this crate's dev-dependency turns on.

// The engine tests' network of engines, from its one home.
#[path = "../../coherency/tests/net/mod.rs"]
mod net;

use coherency::{Access, Config, Mutant, ProtocolError};
use net::Net;

#[test]
fn tie_ack_mutant_elects_two_writers() {
    let mut config = Config::new(2);
    config.mutant = Some(Mutant::TieAck);
    let mut net = Net::new(config);
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(1);
    net.access(1, Access::Read, 1, 0);
    net.deliver_all();
    net.access(0, Access::Write, 10, 3);
    net.access(1, Access::Write, 11, 3);
    // Both acknowledge each other: both believe they won, without a valid copy.
    let mut errors = 0;
    while let Some((to, msg)) = net.links.pop_front() {
        if let Err(ProtocolError::LostCopy { .. }) = net.with(to, |e, host| e.handle(msg, host)) {
            errors += 1;
        }
    }
    assert_eq!(errors, 2);
}

#[test]
fn mutant_names_round_trip() {
    for m in Mutant::ALL {
        assert_eq!(Mutant::from_name(m.name()), Some(m));
    }
    assert_eq!(Mutant::from_name("nope"), None);
}
