//! The protocol's messages (paper §4): Fetch, Fetch Write, Copy, Copy Void, Invalid, Ack, Nack.

use std::fmt;

use crate::types::{KernelId, KernelSet, PageId};

/// One protocol message about one page. `D` is the page content carried by a Copy: 4 KiB of bytes in
/// the VMM, a small value in the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Message<D> {
    pub page: PageId,
    pub from: KernelId,
    /// The generation (incarnation) of the page the sender's copy belongs to (decision 16): the
    /// origin gives a page a new one whenever a layout change resets it (DONTNEED, munmap, ...).
    /// A kernel drops answers of an older generation, answers requests of an older one with a
    /// notice of its own, and resets its copy when it hears of a newer one.
    pub gen: u32,
    pub kind: MessageKind<D>,
    /// The sender's users bitmap of the page (§5.2 multicast groups), piggy-backed on every message.
    /// It includes the sender itself unless the sender has the page Unmapped.
    pub users: KernelSet,
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind<D> {
    /// Asks for a valid copy (a read).
    Fetch,
    /// Asks for a valid copy on behalf of a writer that lost an election (§4.6).
    FetchWrite,
    /// Answers a fetch with the page content and its version (the number of elections won on the
    /// page before it was sent: see the crate docs for why the paper needs it).
    Copy { data: D, version: u32 },
    /// Answers a fetch without data: the sender holds no valid copy. `fetching` is set when the
    /// sender is itself fetching the page out of Unmapped (so the page is about to be replicated).
    CopyVoid { fetching: bool },
    /// Asks every other copy to invalidate itself: the sender wants to write. Carries the writer's
    /// timestamp for the election of §4.3, and the version of the writer's copy: the write makes a
    /// newer one, so a copy that acknowledges it accepts no older content afterwards (decision 15).
    Invalid { ts: u64, version: u32 },
    /// Votes for the writer. `voter` says whether the voter is writing itself (§4.7 rounds).
    Ack { voter: Voter },
    /// Votes against the writer. `voter` as for [`MessageKind::Ack`].
    Nack { voter: Voter },
    /// Answers a request of an older generation of the page (decision 16): the page was reset,
    /// and this message's `gen` is the sender's. Its receiver resets its copy if it is older,
    /// and otherwise ignores it (it heard of the reset already). It is also how a reset answers
    /// the requests it finds deferred, so that every request gets exactly one answer.
    Reset,
}

/// The flag a vote carries (§4.7: "a flag is set if the page copy is in a Writing state"). The
/// paper has one bit; the model checker showed that a writer must tell Writing Pend (its Invalid of
/// this round is out) from Writing Read (it is still fetching from an earlier round and has sent no
/// Invalid yet), or the losers' first synchronization step can wait forever (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Voter {
    /// Not writing.
    Idle,
    /// In Writing Pend 1 or 2: a concurrent writer of this round.
    Invalidating,
    /// In Writing Read: a loser of an earlier round, fetching before it retries.
    Refetching,
}

/// The message types, without their payload: for counters and tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    Fetch,
    FetchWrite,
    Copy,
    CopyVoid,
    Invalid,
    Ack,
    Nack,
    Reset,
}

impl MessageType {
    /// Every message type, in a fixed order (for tables).
    pub const ALL: [MessageType; 8] = [
        MessageType::Fetch,
        MessageType::FetchWrite,
        MessageType::Copy,
        MessageType::CopyVoid,
        MessageType::Invalid,
        MessageType::Ack,
        MessageType::Nack,
        MessageType::Reset,
    ];

    /// The name of each type, in [`MessageType::ALL`] order: the one spelling of each (counters,
    /// tables, messages' `Display`, errors). A constant, so that a table of counter names can be
    /// one too.
    pub const NAMES: [&'static str; 8] = [
        "fetch",
        "fetch_write",
        "copy",
        "copy_void",
        "invalid",
        "ack",
        "nack",
        "reset",
    ];

    /// Position in [`MessageType::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        MessageType::NAMES[self.index()]
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Voter {
    fn suffix(self) -> &'static str {
        match self {
            Voter::Idle => "",
            Voter::Invalidating => "(writing)",
            Voter::Refetching => "(refetching)",
        }
    }
}

impl<D> MessageKind<D> {
    pub fn message_type(&self) -> MessageType {
        match self {
            MessageKind::Fetch => MessageType::Fetch,
            MessageKind::FetchWrite => MessageType::FetchWrite,
            MessageKind::Copy { .. } => MessageType::Copy,
            MessageKind::CopyVoid { .. } => MessageType::CopyVoid,
            MessageKind::Invalid { .. } => MessageType::Invalid,
            MessageKind::Ack { .. } => MessageType::Ack,
            MessageKind::Nack { .. } => MessageType::Nack,
            MessageKind::Reset => MessageType::Reset,
        }
    }

    /// Whether this message answers a request (as opposed to being one).
    pub fn is_answer(&self) -> bool {
        !matches!(
            self,
            MessageKind::Fetch | MessageKind::FetchWrite | MessageKind::Invalid { .. }
        )
    }
}

/// The type's name (the one [`MessageType::name`] gives, its only spelling), its payload, the page and
/// the generation unless it is 0, and the users bitmap: `copy(7, v2) page 0 gen 1 users {0,1}`.
impl<D: fmt::Debug> fmt::Display for Message<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message_type().name())?;
        match &self.kind {
            MessageKind::Fetch | MessageKind::FetchWrite | MessageKind::Reset => Ok(()),
            MessageKind::Copy { data, version } => write!(f, "({data:?}, v{version})"),
            MessageKind::CopyVoid { fetching: false } => Ok(()),
            MessageKind::CopyVoid { fetching: true } => write!(f, "(fetching)"),
            MessageKind::Invalid { ts, version } => write!(f, "(ts={ts}, v{version})"),
            MessageKind::Ack { voter } | MessageKind::Nack { voter } => f.write_str(voter.suffix()),
        }?;
        write!(f, " page {}", self.page)?;
        if self.gen != 0 {
            write!(f, " gen {}", self.gen)?;
        }
        write!(f, " users {}", self.users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_distinct() {
        for (i, t) in MessageType::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        let names: std::collections::BTreeSet<_> = MessageType::ALL.map(MessageType::name).into();
        assert_eq!(names.len(), MessageType::ALL.len());
    }
}
