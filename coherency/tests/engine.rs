//! Hand-driven scenarios of the engine: what the host sees, step by step. (The scenarios of the
//! deliberate bugs are in `coherency-lab/tests/mutants.rs`: mutants exist only with the `mutants`
//! feature, which this crate's tests leave off so that they test the engine as production builds
//! it.)

use std::collections::HashMap;

mod net;

use coherency::{Access, Config, KernelId, Mapping, Message, MessageKind, ProtocolError, State};
use net::Net;

#[test]
fn one_kernel_owns_a_fresh_page_at_once() {
    let mut net = Net::new(Config::new(1));
    assert!(!net.access(0, Access::Write, 7, 0));
    // No message needed: completed before access() returned.
    assert_eq!(net.completed, vec![(0, 7)]);
    assert_eq!(net.state(0), State::NotReplicated);
    assert_eq!(net.engines[0].view(0).mapping, Mapping::ReadWrite);
    assert!(
        net.access(0, Access::Read, 8, 1),
        "mapped: proceeds at once"
    );
}

#[test]
fn a_read_replicates_the_only_copy() {
    let mut net = Net::new(Config::new(2));
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(42);
    assert!(!net.access(1, Access::Read, 1, 0));
    assert_eq!(
        net.state(1),
        State::Fetching(coherency::FetchingSub::NotReplicated)
    );
    assert_eq!(net.deliver_all(), 2, "Fetch and Copy");
    assert_eq!(net.state(0), State::Shared);
    assert_eq!(net.state(1), State::Shared);
    assert_eq!(net.memory[1], Some(42));
    assert_eq!(net.completed, vec![(1, 1)]);
    assert_eq!(net.engines[1].view(0).mapping, Mapping::ReadOnly);
    assert_eq!(net.engines[0].view(0).mapping, Mapping::ReadOnly);
}

#[test]
fn a_write_invalidates_the_other_copies() {
    let mut net = Net::new(Config::new(3));
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(5);
    for k in [1, 2] {
        net.access(k, Access::Read, u64::from(k), 0);
        net.deliver_all();
    }
    assert!(!net.access(2, Access::Write, 9, 1));
    net.deliver_all();
    assert_eq!(net.state(2), State::Modified);
    assert_eq!(net.state(0), State::Invalid);
    assert_eq!(net.state(1), State::Invalid);
    assert_eq!(net.memory[0], None);
    assert_eq!(net.memory[1], None);
    // The Invalid's sender becomes the owner: the next read asks it alone (§5.2).
    assert_eq!(net.engines[1].view(0).owner, Some(2));
    net.memory[2] = Some(6);
    net.access(1, Access::Read, 11, 2);
    let fetch = net.links.front().expect("a fetch").clone();
    assert_eq!(fetch.0, 2);
    assert_eq!(fetch.1.kind, MessageKind::Fetch);
    net.deliver_all();
    assert_eq!(net.memory[1], Some(6));
    assert_eq!(net.state(2), State::Shared);
}

#[test]
fn equal_timestamps_elect_the_smaller_index() {
    let mut net = Net::new(Config::new(2));
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(1);
    net.access(1, Access::Read, 1, 0);
    net.deliver_all();
    // Both write at local time 3.
    assert!(!net.access(0, Access::Write, 10, 3));
    assert!(!net.access(1, Access::Write, 11, 3));
    net.deliver_all();
    // Kernel 0 won the election and wrote first; kernel 1 retried and wrote after it.
    let order: Vec<_> = net.completed.iter().filter(|(_, t)| *t >= 10).collect();
    assert_eq!(order, vec![&(0, 10), &(1, 11)]);
    assert_eq!(net.state(1), State::Modified);
    assert_eq!(net.state(0), State::Invalid);
}

#[test]
fn messages_from_nowhere_are_errors() {
    let mut net = Net::new(Config::new(2));
    let bogus = |from, kind| Message {
        page: 0,
        from,
        gen: 0,
        kind,
        users: Default::default(),
    };
    // An answer nobody asked for.
    let ack = MessageKind::Ack {
        voter: coherency::Voter::Idle,
    };
    net.with(0, |e, host| {
        assert!(matches!(
            e.handle(bogus(9, MessageKind::Fetch), host),
            Err(ProtocolError::BadSender { from: 9, .. })
        ));
        assert!(matches!(
            e.handle(bogus(0, MessageKind::Fetch), host),
            Err(ProtocolError::BadSender { from: 0, .. })
        ));
        assert!(matches!(
            e.handle(bogus(1, ack), host),
            Err(ProtocolError::Unexpected { .. })
        ));
    });
}

#[test]
fn members_limit_who_is_asked() {
    let mut net = Net::new(Config::new(4));
    for e in &mut net.engines {
        e.set_members(coherency::KernelSet::only(0).with(2));
    }
    assert!(!net.access(2, Access::Write, 1, 0));
    let asked: Vec<KernelId> = net.links.iter().map(|(to, _)| *to).collect();
    assert_eq!(asked, vec![0], "kernels 1 and 3 run no thread: not asked");
    net.deliver_all();
    assert_eq!(net.state(2), State::NotReplicated);
    // A member set always includes the kernel itself, and never names kernels that do not exist.
    net.engines[1].set_members(coherency::KernelSet(u64::MAX));
    assert_eq!(net.engines[1].members(), coherency::KernelSet::first(4));
    net.engines[3].set_members(coherency::KernelSet::EMPTY);
    assert_eq!(net.engines[3].members(), coherency::KernelSet::only(3));
}

/// Decision 15, on the exhaustive checker's counterexample (3 kernels, 2 accesses each,
/// optimizations off): kernel 0 acknowledges kernel 2's Invalid while reading, fetches again, and
/// gets a Copy of the old value from kernel 1, which has not seen the Invalid yet; its Fetch to
/// kernel 2 stays on the link until kernel 2 has written and lost the page to kernel 1. Without the
/// floor, kernel 0 installed the old value as Shared after kernel 2's write had completed.
#[test]
fn a_copy_older_than_an_acknowledged_write_is_not_installed() {
    let mut net = Net::new(Config::unoptimized(3));
    net.write_values = HashMap::from([(5, 5), (6, 6), (4, 4)]);
    let r = Access::Read;
    let w = Access::Write;
    net.access(0, r, 100, 0);
    for (f, t) in [(0, 2), (2, 0), (0, 1)] {
        net.deliver(f, t);
    }
    net.access(1, r, 101, 0);
    for (f, t) in [(1, 2), (2, 1), (1, 0)] {
        net.deliver(f, t);
    }
    assert_eq!(net.state(0), State::NotReplicated);
    net.access(2, w, 5, 0);
    for (f, t) in [
        (2, 1),
        (2, 0),
        (1, 2),
        (0, 2),
        (2, 0),
        (1, 0),
        (0, 2),
        (0, 1),
    ] {
        net.deliver(f, t);
    }
    for (f, t) in [(2, 1), (1, 2), (1, 0), (0, 1)] {
        net.deliver(f, t);
    }
    net.access(0, r, 102, 0);
    for (f, t) in [(1, 2), (0, 2), (2, 0), (2, 1), (1, 2), (2, 1), (0, 1)] {
        net.deliver(f, t);
    }
    assert_eq!(net.memory[2], Some(5));
    net.access(2, w, 6, 1);
    // Kernel 0 acknowledges kernel 2's Invalid (its read is in flight) and fetches again.
    let invalid = net.deliver(2, 0);
    assert!(matches!(
        invalid.kind,
        MessageKind::Invalid { ts: 1, version: 1 }
    ));
    for (f, t) in [(1, 0), (1, 0), (0, 2), (0, 1), (0, 1), (2, 1)] {
        net.deliver(f, t);
    }
    // Kernel 1 answered the new fetch before it saw that Invalid: the old value, version 1.
    let stale = net.deliver(1, 0);
    assert!(matches!(
        stale.kind,
        MessageKind::Copy {
            data: 5,
            version: 1
        }
    ));
    net.access(1, w, 4, 1);
    for (f, t) in [(1, 2), (1, 2)] {
        net.deliver(f, t);
    }
    assert!(net.completed.contains(&(2, 6)), "kernel 2 wrote 6");
    for (f, t) in [(2, 1), (1, 0), (0, 1), (1, 2), (0, 2)] {
        net.deliver(f, t);
    }
    let void = net.deliver(2, 0);
    assert!(matches!(void.kind, MessageKind::CopyVoid { .. }));
    // The fetch is over, and it did not install the value that write 6 replaced.
    assert_ne!(net.memory[0], Some(5), "kernel 0 installed a stale copy");
    assert_ne!(net.state(0), State::Shared);
    // Everything completes, and every valid copy holds the last write (kernel 1's 4).
    net.deliver_all();
    for token in [100, 101, 102, 5, 6, 4] {
        assert!(
            net.completed.iter().any(|&(_, t)| t == token),
            "access {token} never completed"
        );
    }
    let last = net
        .completed
        .iter()
        .rev()
        .find_map(|(_, t)| net.write_values.get(t))
        .copied();
    assert_eq!(last, Some(4));
    for k in 0..3 {
        if matches!(net.state(k), State::Shared | State::Modified) {
            assert_eq!(net.memory[k], last, "kernel {k}");
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Layout changes (decision 16): page generations.

/// The model checker's counterexample for resetting a page by forgetting it (what popvmm did for
/// MADV_DONTNEED: forget the page, start it over Unmapped; 2 kernels x 1 page x 2 accesses, one
/// reset): a Fetch of the page's old incarnation is answered in the new one, and its answer
/// reaches a kernel that has moved on ("copy_void from kernel 1 in state Shared"; on the
/// islands, "copy_void ... in state Unmapped"). Replayed with generations: the old Fetch gets a
/// Reset answer, which the kernel that already reset ignores. During the fix the checker also
/// found that answering such a Fetch with a Copy Void of the new generation is not enough (it
/// passes for the answer to the new Fetch): hence a message type of its own.
#[test]
fn a_fetch_of_an_older_generation_gets_reset_not_an_answer() {
    let mut net = Net::new(Config::new(2));
    // 1. kernel 0 reads page 0: a Fetch (generation 0) to kernel 1.
    assert!(!net.access(0, Access::Read, 10, 0));
    // 2. The changer resets the page: the origin (kernel 0) applies it first, and hands its
    //    waiting read back: its thread will fault again.
    net.reset(0, 1);
    assert_eq!(net.retried, vec![(0, 10)]);
    assert_eq!(net.state(0), State::Unmapped);
    assert_eq!(net.engines[0].gen(0), 1);
    // 3. The push reaches kernel 1.
    net.reset(1, 1);
    // 4. kernel 1 reads: a Fetch of generation 1.
    assert!(!net.access(1, Access::Read, 11, 1));
    // 5. kernel 1 receives kernel 0's old Fetch: stale. It answers Reset (generation 1) and
    //    changes nothing.
    let old = net.deliver(0, 1);
    assert_eq!((old.gen, old.kind), (0, MessageKind::Fetch));
    assert!(matches!(
        net.links.back(),
        Some((
            0,
            Message {
                gen: 1,
                kind: MessageKind::Reset,
                ..
            }
        ))
    ));
    assert_eq!(
        net.state(1),
        State::Fetching(coherency::FetchingSub::NotReplicated)
    );
    // 6. kernel 0's thread faults again: a Fetch of generation 1.
    assert!(!net.access(0, Access::Read, 10, 2));
    // 7.-10. The two generation-1 fetches cross: both end Shared with the initial content.
    net.deliver(1, 0);
    net.deliver(0, 1);
    net.deliver(0, 1);
    assert_eq!(net.state(1), State::Shared);
    // 11. kernel 0 receives the Reset: it has generation 1 already, so it ignores it (the
    //     forgetting engine took kernel 1's Copy Void here for an answer to its new Fetch).
    let reset = net.deliver(1, 0);
    assert_eq!(reset.kind, MessageKind::Reset);
    assert_eq!(net.state(0), State::Fetching(coherency::FetchingSub::Valid));
    // 12. The real answer arrives.
    net.deliver_all();
    assert_eq!(net.state(0), State::Shared);
    assert_eq!(net.memory, vec![Some(0), Some(0)]);
    assert_eq!(net.completed, vec![(1, 11), (0, 10)]);
}

/// A kernel that hears of a newer generation before its own push arrives resets first; a
/// request of its older generation gets Reset, which makes it reset and retry at once.
#[test]
fn a_newer_generation_heard_of_resets_the_copy_first() {
    let mut net = Net::new(Config::new(2));
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(7);
    net.access(1, Access::Write, 1, 0);
    net.deliver_all();
    net.memory[1] = Some(8);
    assert_eq!(net.state(1), State::Modified);
    // The origin resets (MAP_FIXED over the page, say); kernel 1's push is slow.
    net.reset(0, 5);
    // Kernel 0 reads the fresh page: its first fetch tells kernel 1 of generation 5.
    net.access(0, Access::Read, 2, 1);
    net.deliver(0, 1);
    assert_eq!(net.engines[1].gen(0), 5);
    assert_eq!(net.memory[1], None, "the old content is dropped");
    net.deliver_all();
    assert_eq!(net.state(0), State::NotReplicated);
    assert_eq!(net.memory[0], Some(0));
    // The push arrives late: nothing to reset any more.
    net.reset(1, 5);
    assert!(net.links.is_empty());
    // A write of kernel 1 whose Invalid is of an older generation: Reset, retry, and the
    // retried write goes through in the new one.
    let mut old = Net::new(Config::new(2));
    old.engines[0].set_not_replicated(0);
    old.memory[0] = Some(1);
    old.access(1, Access::Read, 1, 0);
    old.deliver_all();
    old.access(1, Access::Write, 2, 1);
    old.reset(0, 1);
    old.deliver(1, 0); // the Invalid of generation 0
    old.deliver(0, 1); // Reset: kernel 1 resets and hands its write back
    assert_eq!(old.retried, vec![(1, 2)]);
    assert_eq!(old.engines[1].gen(0), 1);
    assert!(!old.access(1, Access::Write, 2, 2));
    old.deliver_all();
    assert_eq!(old.state(1), State::NotReplicated);
    assert_eq!(old.completed.last(), Some(&(1, 2)));
}

/// A reset answers the requests its copy held back (each request gets exactly one answer: the
/// messaging layer's credits count on it).
#[test]
fn a_reset_answers_the_requests_it_held_back() {
    let mut net = Net::new(Config::new(3));
    net.engines[0].set_not_replicated(0);
    net.memory[0] = Some(1);
    net.access(1, Access::Read, 1, 0);
    net.deliver_all();
    // Kernel 0 writes (its Invalid to kernel 1 stays on the link); kernel 2's first fetch
    // reaches kernel 0 in Writing Pend 1, which holds it back.
    net.access(0, Access::Write, 2, 1);
    net.access(2, Access::Read, 3, 1);
    net.deliver(2, 0);
    assert_eq!(net.state(0), State::WritingPend1);
    assert!(!net.links.iter().any(|(to, _)| *to == 2));
    net.reset(0, 1);
    assert_eq!(net.retried, vec![(0, 2)]);
    let answers: Vec<_> = net.links.iter().filter(|(to, _)| *to == 2).collect();
    assert_eq!(answers.len(), 1);
    assert!(matches!(
        answers[0].1,
        Message {
            gen: 1,
            kind: MessageKind::Reset,
            from: 0,
            ..
        }
    ));
    for k in [1, 2] {
        net.reset(k, 1);
    }
    net.deliver_all();
    assert_eq!(net.retried, vec![(0, 2), (2, 3)]);
    // Every copy is Unmapped at generation 1, and the retried accesses start over.
    assert!(!net.access(0, Access::Write, 2, 5));
    assert!(!net.access(2, Access::Read, 3, 5));
    net.deliver_all();
    assert_eq!(net.completed.len(), 3);
}

/// The generation of a page without a copy comes from the ranges reset: disjoint, the newest
/// wins, and neighbours of one generation merge.
#[test]
fn generations_of_pages_without_a_copy() {
    let mut net = Net::new(Config::new(2));
    net.with(1, |e, host| {
        e.reset(10..20, 1, host);
        e.reset(15..30, 2, host);
        e.reset(12..13, 3, host);
        let gens: Vec<u32> = (8..32).map(|p| e.gen(p)).collect();
        assert_eq!(
            gens,
            [0, 0, 1, 1, 3, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0]
        );
        e.reset(13..15, 3, host);
        assert_eq!(e.gen(12), 3);
        assert_eq!(e.gen(14), 3);
        assert_eq!(e.view(14).gen, 3);
        // No copy was made for any of them.
        assert_eq!(e.page_count(), 0);
    });
}
