//! The page coherency protocol of Popcorn Linux (paper §4 and §5.2), as a pure state machine.
//!
//! One [`Engine`] runs on each kernel (island) and keeps that kernel's copies of many pages. It has
//! no threads, no I/O and no clock: a page fault is submitted with [`Engine::access`] (with the
//! kernel's local time, which becomes a write's timestamp), messages from other kernels with
//! [`Engine::handle`], and everything the engine wants done goes through the [`Host`] it is handed:
//! send a message, install data read-only or writable, upgrade, downgrade, drop a page, read the
//! local copy to answer a fetch, complete a waiting access. Page content is opaque (`D`): 4 KiB of
//! bytes in the VMM, a small value in the model. The same engine runs in the VMM, in the exhaustive
//! model and in the randomized simulator (both in the `coherency-lab` crate); there is no test copy.
//!
//! This crate is the protocol alone: the engine, its messages, states and types, with no
//! dependency beyond `thiserror` and `rustc-hash`. The tools that check it live in `coherency-lab`.
//! The deliberate bugs that prove the checker can fail (`Mutant`, `Config::mutant`) exist only
//! with the `mutants` cargo feature, which the lab's tests turn on; without it the engine has no
//! mutant branch.
//!
//! # The protocol
//! States ([`State`]): Unmapped, Not Replicated, Fetching (substates Not Replicated, Valid,
//! Invalid), Shared, Modified, Invalid, Invalid Read 1 and 2, Writing Pend 1 and 2, Writing Read.
//! Messages ([`MessageKind`]): Fetch, Fetch Write, Copy (page content), Copy Void, Invalid (the
//! writer's timestamp), Ack, Nack; and Reset, which is not the paper's (decision 16). Every
//! message carries the generation of its page. The rules are the paper's: single writer / multiple readers; a
//! Fetch is answered with a Copy from Shared or Modified (Modified becomes Shared) and with Copy
//! Void otherwise; a write on an Invalid copy reads first; a write on a Shared copy sends Invalid to
//! every other copy and waits in Writing Pend 1; a kernel in a Writing state that receives an
//! Invalid answers Nack when its own (timestamp, index) is smaller, Ack otherwise, so one writer per
//! round wins; losers go Writing Pend 2 → Writing Read (Fetch Write) → retry with their unchanged
//! timestamp; a Fetch received in a Writing state is answered when the write ends; a Fetch Write
//! is answered at once in Writing Read; an Invalid received in Modified gets a Nack; an Invalid
//! received while reading (Invalid Read 1 → 2) forces a new fetch; the elected writer answers no
//! Fetch or Fetch Write until every concurrent writer of its round has asked it (rounds), and
//! losers advance in two synchronization steps (the Invalids of the round's writers first, then
//! the Fetch Writes of the round's other losers). Unmapped, Not Replicated and Fetching are §4.8's.
//!
//! The optimizations of §5.2, each switchable in [`Config`]: multicast groups (the users bitmap
//! piggy-backed on every message; a multicast to the users instead of a send to every kernel) and
//! the owner hint (a read fetches from the last writer first and falls back to the users when the
//! owner answers Copy Void). Read-only areas never enter the protocol: the caller decides which
//! pages are coherent.
//!
//! # Decisions where the paper is ambiguous or wrong as written
//! Each one was forced by a counterexample of the model checker (`popvmm protocol check`) or of
//! the simulator (`popvmm protocol simulate`), and each is checked by them since (13 and 17 are
//! optimizations; for 16 the model adds layout changes to the accesses, for 17 the end of a
//! window).
//!
//! 1. **Copies carry a version.** A fetch may collect several Copies, and the paper only says that
//!    one of them is up to date. Counterexample (3 kernels): kernel 2, a loser in Writing Read,
//!    acknowledges kernel 1's Invalid and fetches again; kernel 0, still Shared, answers with the
//!    old value before kernel 1's Invalid reaches it, and kernel 1, elected, answers with the new
//!    one; kernel 2 installed whichever came last, the old one. Every elected writer increments
//!    the page's version; a Copy carries it; the fetcher installs the newest.
//! 2. **Fetching: a Copy Void from a user means "fetch again", not "fresh page".** Counterexample:
//!    kernel 1 fetches an Unmapped page; kernel 0 (Not Replicated) writes it, then kernel 2's write
//!    invalidates kernel 0 before kernel 1's Fetch reaches it; every answer kernel 1 gets is Copy
//!    Void and it took the initial content. A Copy Void from a kernel that uses the page (its users
//!    bitmap names itself and it is not fetching) sends the fetcher to Invalid and to a new fetch.
//! 3. **A fetch that gets only Copy Void waits for the next Invalid.** The paper's invariant "some
//!    copy answers with a Copy" does not hold: the data can move while the Fetch is out (a kernel
//!    answers Copy Void from Invalid or Fetching, then fetches the data and writes, invalidating
//!    every other holder before the Fetch reaches them). That writer's Invalid is then on its way
//!    to the reader, which fetches again when it arrives (Invalid Read and Writing Read alike).
//!    The fetch-in-writing mutant still fails: there the reader had already seen the Invalid, so
//!    it waits forever, and the checker reports it.
//! 4. **The vote's "writing" flag has three values** ([`Voter`]): Idle, Invalidating (Writing Pend:
//!    this round's Invalid is out) and Refetching (Writing Read: a loser of an earlier round, which
//!    has sent no Invalid yet). With one bit, the losers' first step (wait for the Invalids of the
//!    concurrent writers) waited for a refetching kernel that itself waited for the winner, which
//!    waited for the loser's Fetch Write: a deadlock the simulator found with 4 kernels.
//! 5. **A Fetch Write held back in Writing Pend is released** when its sender votes Nack (it beat
//!    us and will not wait for our write: we answer with our copy if no Invalid took it) or votes
//!    Ack from Writing Read (it lost to us and will ask again after its vote: Copy Void now).
//!    Only Fetch Writes that arrive after a kernel's vote count for the rounds.
//! 6. **Writing Read + Invalid.** A loser that acknowledges a later writer's Invalid while it
//!    fetches treats what it collected like Invalid Read 2: it fetches again, as a loser of a round
//!    it took no part in (no synchronization step owed).
//! 7. **A loser whose copy is still valid** (beaten only by refetching writers, so nobody can win
//!    without its vote) waits for those writers' next Invalid before retrying; it answers their
//!    Fetch Writes with its copy. Retrying at once loops for as long as their data is in flight
//!    (a livelock under an unfair schedule, reported by the checker's message bound).
//! 8. **The second step waits for the concurrent writers that voted Ack on our Invalid**: they
//!    lost (at least to us) and each sends a Fetch Write after its vote. The paper's "all the
//!    concurrent page copies" also names the winner, which sends none.
//! 9. **Fetch Write is always sent to every user**, never to the owner alone: the other losers
//!    count Fetch Writes for the second step.
//! 10. **Multicast groups grow during an invalidation**: a vote whose users bitmap names a kernel
//!     the writer did not know gets that kernel an Invalid too (a kernel that answered someone's
//!     first Fetch with a Copy must be invalidated, or it keeps a stale Shared copy).
//! 11. **The timestamp of a write** is the local time at which the oldest waiting write was
//!     submitted; it is kept across retries (§4.3). The Invalids a writer receives are remembered
//!     across its retries (the first step may need one that came in the previous round).
//! 12. **A writer answers a Fetch Write with its copy only while the copy is mapped** (it then
//!     acknowledged no Invalid, so no writer can have won without its vote), never with a copy
//!     it collected and has not installed yet. Counterexample (3 kernels, 2 accesses each, found
//!     by the exhaustive check after 245 million states): a loser that acknowledged kernel 1's
//!     Invalid fetched again, collected kernel 2's still-Shared copy, and handed it to another
//!     loser after kernel 1's write had completed.
//! 13. **Members** ([`Engine::set_members`]): messages that go to every kernel go to the kernels
//!     that run a thread of the program (a program-level multicast group, §5.2). The host adds a
//!     kernel on every kernel before that kernel touches a page. The model checks the full set.
//! 14. **Per-link FIFO is required.** With unordered delivery the checker finds a violation with
//!     2 kernels: a Fetch Write overtakes the vote sent before it, and the writer answers it with
//!     data its own write is about to change. The messaging layer is FIFO per link (a ring).
//! 15. **An Invalid carries the version of the writer's copy, and whoever acknowledges it installs
//!     no older content afterwards** (it keeps a floor, the version + 1, until it installs). An
//!     acknowledged write may still be in flight, so another copy, not yet invalidated, can answer
//!     a fetch with the content the write replaces; decision 1 (the newest of the answers wins)
//!     does not help when that is the only Copy. Counterexample (3 kernels, 2 accesses each,
//!     optimizations off, found by the exhaustive check after 352 million states): kernel 0,
//!     fetching, acknowledges kernel 2's Invalid and fetches again; kernel 1, Shared and not yet
//!     invalidated, answers with the old value; kernel 0's Fetch to kernel 2 stays on its link
//!     while kernel 2's write completes and kernel 1 takes the page to write it; kernel 2 answers
//!     Copy Void, and kernel 0 installs the old value as Shared after kernel 2's write completed.
//!     A copy older than the floor counts as a Copy Void from a user: the data lives elsewhere.
//! 16. **Layout changes give a page a new generation** ([`Engine::reset`]). The paper leaves
//!     munmap and madvise to the kernels' VMA code; with islands they race with the protocol. A
//!     change that drops a page's content (MADV_DONTNEED and MADV_FREE, munmap, mmap MAP_FIXED
//!     over it, the source of a moving mremap, brk shrink) is decided by the origin, applied
//!     there, then pushed to every island, which applies it when the push arrives: there is no
//!     order between the push and the coherency messages (other links, and a worker applies
//!     it). Resetting by forgetting the page (what popvmm did) lets a message of the old
//!     incarnation meet the new one. Counterexample (2 kernels x 1 page x 2 accesses, one
//!     reset, found by the model checker, `ResetMode::Forget`): kernel 0's Fetch is still on
//!     its link when the origin resets; kernel 1, reset too, answers it and starts its own
//!     fetch; kernel 0 faults again and completes a fresh fetch, then receives the old answer:
//!     "copy_void from kernel 1 in state Shared" (on the islands, in Unmapped or
//!     FetchingNotReplicated, and hangs: the waiting faults were dropped without a wake). So
//!     the origin gives every change a generation newer than any before; each message carries
//!     its page's; a kernel drops answers of an older generation, answers a request of an
//!     older one with **Reset** (its own generation, nothing else changes), and on any message
//!     of a newer generation (a Reset included) resets its copy first, as if its push had come.
//!     A reset drops the copy (the host unmaps it), hands the waiting accesses back
//!     ([`Host::retry`]: the thread faults again and meets the new layout), answers the
//!     requests it held back with Reset (every request gets one answer), and leaves the page
//!     Unmapped at the new generation; a copy already of that generation or newer is left
//!     alone. The layout call returns once every island has applied it. Why this is enough:
//!     an access completes in the new generation only after a fetch out of Unmapped, which
//!     asks every member, so every kernel has reset by then and none completes an access of
//!     the old one afterwards (the reset is linearized between them; the model's tester checks
//!     it as a write of zeros). Why Reset is a message of its own: answering the old Fetch
//!     with a Copy Void of the new generation was the first try, and the checker found it
//!     taken for the answer to the kernel's new Fetch of that generation (same counterexample,
//!     one step on). Why a stale request is answered at all rather than dropped: its sender
//!     may be a system call holding its island's layout lock, which that island's own push
//!     needs; Reset frees it without the push. The generation of a page with no copy comes
//!     from the ranges reset (kept by range, so that a reset of a large range costs no memory
//!     per page); a kernel that joins late starts at generation 0 everywhere and learns newer
//!     ones from Reset answers.
//! 17. **The holding window** ([`Config::hold`], [`HoldWindow`]; Mirage's Δ, not the paper's).
//!     A page that bounces between writers on different kernels (a lock word, a barrier
//!     counter) moves at every write, so each kernel does one write per transfer. With the
//!     window on, a kernel that gets write access (Modified) keeps the page for a while before
//!     it answers the Fetch or Fetch Write that would take it away: requests that arrive before
//!     the acquisition time + window, and those that waited for the write, are deferred like the
//!     round's, and answered when the host calls [`Engine::release`] at the time it was given
//!     ([`Host::hold_until`]; the engine reads no clock: [`Host::now`]). The window adapts per
//!     page: 0 unless the kernel lost the page less than `recent` before it got it back (a page
//!     nobody contends is never held), then twice the last one, from `min` to `max`. Safety does
//!     not depend on when the window ends: the model checker lets a Release happen at any
//!     point after the window started (and counts a held request as a message in flight).
//!
//! # Verification
//! In `coherency-lab`. `model`: exhaustive (stateright), FIFO or unordered, with or without
//! layout changes (resets, PROT_NONE and back) racing with the accesses, properties: no
//! protocol error or stale read, single writer / multiple readers, every valid copy holds the
//! latest write, a linearizability tester per page, no wait state once the network is empty, a
//! bound on messages, every access completes. Mutants (`Mutant`, feature `mutants`) prove the
//! checker can fail. `sim`: seeded discrete-event simulation up to 64 kernels, invariants after
//! every event, the IVY baseline (`ivy`) on the same traces, and the paper's figure 7 (`figure7`).

pub mod engine;
pub mod message;
#[cfg(feature = "mutants")]
pub mod mutant;
pub mod state;
pub mod types;

pub use engine::{Config, Engine, HoldWindow, Host, MapChange, PageView, ProtocolError};
pub use message::{Message, MessageKind, MessageType, Voter};
#[cfg(feature = "mutants")]
pub use mutant::Mutant;
pub use state::{FetchingSub, Mapping, State};
pub use types::{Access, AccessToken, KernelId, KernelSet, PageId, MAX_KERNELS};
