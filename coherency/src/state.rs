//! The states of a page copy (paper §4, figures 2–6) and what the host maps for each.

use std::fmt;

/// The protocol state of one page copy on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// This kernel does not use the page (§4.8). Every page starts here unless the caller says
    /// otherwise (the program's initial pages are Not Replicated on the origin).
    Unmapped,
    /// The only copy in the system: read and write locally, no coordination (§4.8).
    NotReplicated,
    /// Leaving Unmapped: a Fetch went to every kernel and the answers are being collected (§4.8).
    Fetching(FetchingSub),
    /// A valid, read-only copy; other copies are Shared or Invalid.
    Shared,
    /// The one valid, writable copy; every other copy is Invalid.
    Modified,
    /// No valid data: a Fetch must go out before any access.
    Invalid,
    /// Reading: a Fetch is out, answers are being collected (§4.5).
    InvalidRead1,
    /// Reading, and an Invalid arrived meanwhile: the copies being collected may be stale, so the
    /// Fetch goes out again once every answer is in (§4.5).
    InvalidRead2,
    /// Writing: an Invalid is out, votes are being collected (§4.4).
    WritingPend1,
    /// Writing, lost the election (a Nack arrived): collecting the remaining votes (§4.4).
    WritingPend2,
    /// Writing, lost: a Fetch Write is out to get the winner's data before retrying (§4.4, §4.6).
    WritingRead,
}

/// The three substates of Fetching (§4.8, figure 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchingSub {
    /// Nothing happened yet: if every answer is Copy Void, the page becomes Not Replicated.
    NotReplicated,
    /// Another kernel is fetching the page out of Unmapped at the same time: the page will be
    /// replicated, so with no Copy the result is Shared with the initial content, not Not Replicated.
    Valid,
    /// An Invalid arrived: a Copy collected so far may be stale; fetch again once the answers are in.
    Invalid,
}

/// What the host maps for a page copy: the engine's view of the host page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Mapping {
    /// Not mapped: any access faults.
    #[default]
    None,
    /// Mapped read-only: a write faults.
    ReadOnly,
    /// Mapped readable and writable.
    ReadWrite,
}

impl Mapping {
    /// Whether an access of this kind can proceed without the protocol.
    pub fn permits(self, access: crate::Access) -> bool {
        match access {
            crate::Access::Read => self != Mapping::None,
            crate::Access::Write => self == Mapping::ReadWrite,
        }
    }
}

impl State {
    /// A short name, as the paper writes it.
    pub fn name(self) -> &'static str {
        match self {
            State::Unmapped => "Unmapped",
            State::NotReplicated => "NotReplicated",
            State::Fetching(FetchingSub::NotReplicated) => "FetchingNotReplicated",
            State::Fetching(FetchingSub::Valid) => "FetchingValid",
            State::Fetching(FetchingSub::Invalid) => "FetchingInvalid",
            State::Shared => "Shared",
            State::Modified => "Modified",
            State::Invalid => "Invalid",
            State::InvalidRead1 => "InvalidRead1",
            State::InvalidRead2 => "InvalidRead2",
            State::WritingPend1 => "WritingPend1",
            State::WritingPend2 => "WritingPend2",
            State::WritingRead => "WritingRead",
        }
    }

    /// Stable states are the ones in which no request of ours is outstanding.
    pub fn is_stable(self) -> bool {
        matches!(
            self,
            State::Unmapped
                | State::NotReplicated
                | State::Shared
                | State::Modified
                | State::Invalid
        )
    }

    /// The Writing states of §4.3 (Writing Pend 1, Writing Pend 2, Writing Read).
    pub fn is_writing(self) -> bool {
        matches!(
            self,
            State::WritingPend1 | State::WritingPend2 | State::WritingRead
        )
    }

    /// Every state, for tables and exhaustive tests.
    pub const ALL: [State; 13] = [
        State::Unmapped,
        State::NotReplicated,
        State::Fetching(FetchingSub::NotReplicated),
        State::Fetching(FetchingSub::Valid),
        State::Fetching(FetchingSub::Invalid),
        State::Shared,
        State::Modified,
        State::Invalid,
        State::InvalidRead1,
        State::InvalidRead2,
        State::WritingPend1,
        State::WritingPend2,
        State::WritingRead,
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
