//! The holding window (decision 17, Mirage's Δ): a page that bounces between writers is held by
//! its new writer for a while before a request takes it away; a page nobody contends never is.

use coherency::{Access, Config, HoldWindow, KernelId, State};

const WINDOW: HoldWindow = HoldWindow {
    min: 100,
    max: 400,
    recent: 1_000,
};

mod net;

use net::Net;

/// `kernels` kernels on the shared test network, with the holding window on.
fn hold_net(kernels: usize) -> Net {
    let mut config = Config::new(kernels);
    config.hold = Some(WINDOW);
    Net::new(config)
}

/// Kernel `k` writes `token` (which it stores) at time `now`, and the network runs until it is
/// empty.
fn write(net: &mut Net, k: KernelId, token: u64, now: u64) {
    net.now = now;
    net.write_values.insert(token, token as u32);
    if net.access(k, Access::Write, token, now) {
        net.completed.push((k, token));
        net.memory[k as usize] = Some(token as u32);
    }
    net.deliver_all();
}

/// Kernel `k`'s window timer fires at `now`: whether it released a held page.
fn release(net: &mut Net, k: KernelId, now: u64) -> bool {
    net.now = now;
    let r = net.with(k, |e, h| e.release(0, h));
    net.deliver_all();
    r
}

fn done(net: &Net, k: KernelId, token: u64) -> bool {
    net.completed.contains(&(k, token))
}

#[test]
fn a_page_that_bounces_is_held_then_answered_at_the_end_of_its_window() {
    let mut net = hold_net(2);
    write(&mut net, 0, 1, 0);
    write(&mut net, 1, 2, 10);
    write(&mut net, 0, 3, 20);
    assert!(
        done(&net, 0, 3) && net.holds.is_empty(),
        "first transfers are never held"
    );
    // Kernel 1 lost the page at 20 and gets it back at 30: it bounces, so kernel 1 holds it for
    // the shortest window (100) from its acquisition.
    write(&mut net, 1, 4, 30);
    assert!(done(&net, 1, 4));
    assert_eq!(net.engines[1].view(0).state, State::Modified);
    write(&mut net, 0, 5, 40);
    assert!(!done(&net, 0, 5), "kernel 0's write waits for the window");
    assert_eq!(net.holds, vec![(1, 0, 130)]);
    assert_eq!(net.engines[1].view(0).held_until, Some(130));
    assert_eq!(net.engines[1].view(0).state, State::Modified);
    // The timer fires: the request is answered, and kernel 0's write completes with kernel 1's
    // data under it.
    assert!(release(&mut net, 1, 130));
    assert!(done(&net, 0, 5));
    assert_eq!(net.engines[1].view(0).held_until, None);
    assert_eq!(net.engines[0].view(0).state, State::Modified);
    assert_eq!(net.memory[0], Some(5));
    // A second release (a late timer) does nothing.
    assert!(!release(&mut net, 1, 140));
    // Still bouncing: kernel 0 lost it at 40... and reacquired at 130; its window doubles from 0
    // to the minimum; kernel 1's next window doubles.
    write(&mut net, 1, 6, 150);
    assert!(!done(&net, 1, 6));
    assert_eq!(net.holds.last(), Some(&(0, 0, 230)));
    assert!(release(&mut net, 0, 230));
    assert!(done(&net, 1, 6));
    write(&mut net, 0, 7, 240);
    assert_eq!(
        net.holds.last(),
        Some(&(1, 0, 230 + 200)),
        "the window doubles"
    );
    assert!(release(&mut net, 1, 430));
    assert!(done(&net, 0, 7));
    assert_eq!(net.memory[0], Some(7));
}

#[test]
fn a_page_nobody_contends_is_never_held() {
    let mut net = hold_net(3);
    // Writers take turns, each long after the page was last taken from it.
    for round in 0..6u64 {
        let k = (round % 3) as KernelId;
        let token = round + 1;
        write(&mut net, k, token, round * 10_000);
        assert!(done(&net, k, token));
    }
    assert!(net.holds.is_empty());
    // Reads never start a window either.
    net.now = 100_000;
    assert!(!net
        .with(1, |e, h| e.access(0, Access::Read, 99, 100_000, h))
        .expect("no protocol error"));
    net.deliver_all();
    assert!(done(&net, 1, 99));
    assert!(net.holds.is_empty());
}

#[test]
fn the_window_is_bounded_and_drops_to_zero_without_bounces() {
    assert_eq!(WINDOW.next(0, None, 5), 0);
    assert_eq!(WINDOW.next(0, Some(0), 999), 100);
    assert_eq!(WINDOW.next(100, Some(0), 10), 200);
    assert_eq!(WINDOW.next(400, Some(0), 10), 400);
    assert_eq!(WINDOW.next(400, Some(0), 1_000), 0);
}
