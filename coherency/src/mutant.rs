//! Deliberate bugs in the engine, to prove that the model checker can fail: each one must be
//! caught (`coherency-lab/tests/model_check.rs`).
//!
//! This module, [`Config::mutant`](crate::Config::mutant) and the branches of the engine that test
//! them exist only with the `mutants` cargo feature. Without it (a plain build of `coherency` or of
//! `popvmm`) the engine has no mutant branch at all: the test compiles to the constant `false`.

/// A deliberate bug, selected at run time through [`Config::mutant`](crate::Config::mutant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// Answer a Fetch at once (with Copy Void) in a Writing state instead of after the write (§4.6).
    FetchInWriting,
    /// Drop the round synchronization of §4.7 (the winner's wait and the losers' two steps).
    NoRounds,
    /// On equal timestamps, Ack whatever the kernel indices (§4.3).
    TieAck,
    /// Skip the Invalid Read 2 re-fetch: install a copy that an Invalid overtook (§4.5).
    NoReread,
}

impl Mutant {
    pub const ALL: [Mutant; 4] = [
        Mutant::FetchInWriting,
        Mutant::NoRounds,
        Mutant::TieAck,
        Mutant::NoReread,
    ];

    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::FetchInWriting => "fetch-in-writing",
            Mutant::NoRounds => "no-rounds",
            Mutant::TieAck => "tie-ack",
            Mutant::NoReread => "no-reread",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}
