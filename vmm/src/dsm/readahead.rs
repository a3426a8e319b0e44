//! Adaptive read-ahead: which pages to ask for ahead of a thread that faults through memory in a
//! sequential or strided pattern.
//!
//! A fault served through userfaultfd costs ~100 us on this platform whatever serves it, and a
//! page installed before the thread touches it costs no fault at all. So a fault that needs the
//! protocol is also a hint: when it continues a pattern (the page after the last fault, or the
//! same stride twice), the pages the pattern reaches next are asked for at once, as ordinary read
//! accesses of this island (reads the program could have made: the protocol and its model
//! checker see nothing new). As in Linux's file read-ahead, the window starts small and doubles
//! on each fault that lands where the pattern said (up to [`MAX_WINDOW`] pages); a fault that
//! breaks every pattern starts a new one.
//!
//! A read of an installed page does not fault, so a stream whose read-ahead keeps up faults once
//! per window: at the first page past it. That fault is a hit too (it continues the pattern) and
//! asks for the next window.
//!
//! This is pure bookkeeping (no engine, no memory): [`super::Dsm`] feeds it the faults and
//! filters what it proposes (pages of the same coherent, readable mapping, idle in the engine).

use coherency::PageId;

/// The first window of a new pattern, in pages.
pub const START_WINDOW: u64 = 4;
/// The largest window, in pages.
pub const MAX_WINDOW: u64 = 32;
/// The largest stride (in pages, either direction) taken for a pattern.
pub const MAX_STRIDE: i64 = 16;
/// How many patterns are followed at once (threads, arrays read side by side).
const STREAMS: usize = 8;

/// Pages to ask for: `count` pages from `first`, `stride` pages apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first: PageId,
    pub stride: i64,
    pub count: u64,
}

/// What one fault tells: the pages to ask for next, and the pages of the pattern the thread went
/// through since its last fault there without faulting (read-ahead brought them in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    pub window: Window,
    pub passed: Window,
}

impl Window {
    /// The pages of the window, in order (those that would fall outside the page numbers are
    /// left out).
    pub fn pages(self) -> impl Iterator<Item = PageId> {
        (0..self.count).map_while(move |i| step(self.first, self.stride, i))
    }
}

/// `page + stride * n`, if it is a page number.
fn step(page: PageId, stride: i64, n: u64) -> Option<PageId> {
    let d = i64::try_from(n).ok()?.checked_mul(stride)?;
    page.checked_add_signed(d)
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    /// The last fault of the pattern.
    last: PageId,
    /// The pattern's stride (0: not known yet).
    stride: i64,
    /// The last difference seen between two faults (a stride to confirm).
    delta: i64,
    /// The current window (pages).
    window: u64,
    /// The last page asked for ahead (on the stride from `last`).
    ahead_end: PageId,
    /// When the stream was last used (to replace the least recently used one).
    used: u64,
}

/// The pages read-ahead brought that were not seen used nor dropped yet, and how the recent ones
/// fared: whether reading ahead pages other islands wrote since this one held them (Invalid
/// copies) pays. Such a page may still be written by its writer: read ahead, it takes the copy
/// from a writer at work, which faults again, and the page comes back here dropped. So Invalid
/// pages are read ahead only while few read-ahead pages are dropped unused (at most one in
/// [`DROPPED_ONE_IN`], over the recent ones).
#[derive(Debug, Default)]
pub struct Book {
    pages: std::collections::HashSet<PageId>,
    used: u64,
    dropped: u64,
}

/// See [`Book`].
pub const DROPPED_ONE_IN: u64 = 8;
/// How many outcomes [`Book`] weighs (older ones fade: halved past this).
const RECENT: u64 = 512;

impl Book {
    /// A page asked for.
    pub fn asked(&mut self, page: PageId) {
        self.pages.insert(page);
    }

    /// The program went through `page` (faulted on it, or past it): whether it was a read-ahead
    /// page not counted yet.
    pub fn used(&mut self, page: PageId) -> bool {
        let was = self.pages.remove(&page);
        if was {
            self.used += 1;
            self.fade();
        }
        was
    }

    /// `page` was dropped here: whether it was a read-ahead page not seen used.
    pub fn dropped(&mut self, page: PageId) -> bool {
        let was = self.pages.remove(&page);
        if was {
            self.dropped += 1;
            self.fade();
        }
        was
    }

    /// Forgets `page` (a layout change dropped it: neither used nor wasted).
    pub fn forget(&mut self, page: PageId) {
        self.pages.remove(&page);
    }

    /// Forgets the pages `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(PageId) -> bool) {
        self.pages.retain(|&p| keep(p));
    }

    /// Whether pages with an Invalid copy here are worth reading ahead now.
    pub fn invalid_ok(&self) -> bool {
        self.dropped * DROPPED_ONE_IN <= self.used + DROPPED_ONE_IN
    }

    fn fade(&mut self) {
        if self.used + self.dropped > RECENT {
            self.used /= 2;
            self.dropped /= 2;
        }
    }
}

/// The read-ahead state of one island.
#[derive(Debug, Default)]
pub struct ReadAhead {
    streams: Vec<Stream>,
    tick: u64,
}

impl ReadAhead {
    pub fn new() -> Self {
        Self::default()
    }

    /// A thread faulted on `page`, which is not valid here (the fault needs the protocol, or a
    /// read-ahead of it is on its way). Returns the pages to ask for ahead, if the fault
    /// continues a pattern.
    pub fn on_fault(&mut self, page: PageId) -> Option<Window> {
        self.on_fault_passing(page).map(|a| a.window)
    }

    /// [`ReadAhead::on_fault`], with the pages the thread went through without faulting.
    pub fn on_fault_passing(&mut self, page: PageId) -> Option<Ahead> {
        self.tick += 1;
        let tick = self.tick;
        // A fault on the pattern of a stream, at most one page past what it asked for: a hit.
        for s in &mut self.streams {
            if s.stride == 0 {
                continue;
            }
            let Some(n) = steps(s.last, page, s.stride) else {
                continue;
            };
            let reach = steps(s.last, s.ahead_end, s.stride).unwrap_or(0);
            if n == 0 || n > reach + 1 {
                continue;
            }
            let passed = Window {
                first: step(s.last, s.stride, 1).unwrap_or(page),
                stride: s.stride,
                count: n - 1,
            };
            s.window = (s.window * 2).min(MAX_WINDOW);
            s.last = page;
            s.used = tick;
            let window = s.advance();
            return Some(Ahead { window, passed });
        }
        // Close to a stream: the second fault of a sequential pattern, or the same stride twice.
        if let Some(s) = self
            .streams
            .iter_mut()
            .filter(|s| page != s.last)
            .filter(|s| {
                let d = diff(s.last, page);
                d.is_some_and(|d| d.abs() <= MAX_STRIDE)
            })
            .max_by_key(|s| s.used)
        {
            let d = diff(s.last, page).unwrap_or(0);
            s.used = tick;
            s.last = page;
            if d == 1 || d == s.delta {
                s.stride = d;
                s.window = START_WINDOW;
                s.ahead_end = page;
                let window = s.advance();
                let passed = Window { count: 0, ..window };
                return Some(Ahead { window, passed });
            }
            s.delta = d;
            s.stride = 0;
            return None;
        }
        // A new pattern, maybe.
        let fresh = Stream {
            last: page,
            stride: 0,
            delta: 0,
            window: 0,
            ahead_end: page,
            used: tick,
        };
        if self.streams.len() < STREAMS {
            self.streams.push(fresh);
        } else if let Some(lru) = self.streams.iter_mut().min_by_key(|s| s.used) {
            *lru = fresh;
        }
        None
    }
}

impl Stream {
    /// The pages past what was asked for already (or past `last`) up to `window` strides past
    /// `last`; moves `ahead_end` there.
    fn advance(&mut self) -> Window {
        let reach = steps(self.last, self.ahead_end, self.stride).unwrap_or(0);
        let count = self.window.saturating_sub(reach);
        let Some(first) = step(self.last, self.stride, reach + 1) else {
            return Window {
                first: self.last,
                stride: self.stride,
                count: 0,
            };
        };
        if count > 0 {
            if let Some(end) = step(self.last, self.stride, self.window) {
                self.ahead_end = end;
            }
        }
        Window {
            first,
            stride: self.stride,
            count,
        }
    }
}

/// `to - from` as a signed page count, if it fits.
fn diff(from: PageId, to: PageId) -> Option<i64> {
    if to >= from {
        i64::try_from(to - from).ok()
    } else {
        i64::try_from(from - to).ok().map(|d| -d)
    }
}

/// How many strides from `from` reach `to` (None: not on the pattern, or behind it).
fn steps(from: PageId, to: PageId, stride: i64) -> Option<u64> {
    let d = diff(from, to)?;
    if stride == 0 || d % stride != 0 || d / stride < 0 {
        return None;
    }
    u64::try_from(d / stride).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(w: Option<Window>) -> Vec<PageId> {
        w.map(|w| w.pages().collect()).unwrap_or_default()
    }

    /// A thread reading pages `from..` in order, faulting only where no read-ahead reached:
    /// returns the pages it faulted on.
    fn sequential(ra: &mut ReadAhead, from: PageId, count: u64, stride: i64) -> Vec<PageId> {
        let mut present = std::collections::HashSet::new();
        let mut faults = Vec::new();
        for i in 0..count {
            let p = step(from, stride, i).expect("page");
            if present.contains(&p) {
                continue;
            }
            faults.push(p);
            present.insert(p);
            present.extend(pages(ra.on_fault(p)));
        }
        faults
    }

    #[test]
    fn sequential_reads_grow_the_window_to_the_maximum() {
        let mut ra = ReadAhead::new();
        assert_eq!(ra.on_fault(100), None, "one fault is no pattern");
        assert_eq!(pages(ra.on_fault(101)), vec![102, 103, 104, 105]);
        // The thread read 102..=105 without faulting; it faults just past the window.
        assert_eq!(pages(ra.on_fault(106)), (107..=114).collect::<Vec<_>>());
        assert_eq!(pages(ra.on_fault(115)), (116..=131).collect::<Vec<_>>());
        assert_eq!(pages(ra.on_fault(132)), (133..=164).collect::<Vec<_>>());
        assert_eq!(pages(ra.on_fault(165)), (166..=197).collect::<Vec<_>>());
    }

    #[test]
    fn a_hit_tells_the_pages_passed_without_a_fault() {
        let mut ra = ReadAhead::new();
        ra.on_fault(100);
        let a = ra.on_fault_passing(101).expect("a pattern");
        assert_eq!(a.passed.count, 0);
        let a = ra.on_fault_passing(106).expect("a hit");
        assert_eq!(
            a.passed.pages().collect::<Vec<_>>(),
            vec![102, 103, 104, 105]
        );
        let mut ra = ReadAhead::new();
        ra.on_fault(90);
        ra.on_fault(80);
        ra.on_fault(70);
        let a = ra.on_fault_passing(20).expect("a hit");
        assert_eq!(a.passed.pages().collect::<Vec<_>>(), vec![60, 50, 40, 30]);
    }

    #[test]
    fn a_fault_inside_the_window_asks_only_for_what_is_new() {
        let mut ra = ReadAhead::new();
        ra.on_fault(10);
        assert_eq!(pages(ra.on_fault(11)), vec![12, 13, 14, 15]);
        // 12 was still on its way when the thread got there: the window doubles from 12.
        assert_eq!(pages(ra.on_fault(12)), (16..=20).collect::<Vec<_>>());
    }

    #[test]
    fn faults_drop_by_the_window() {
        let mut ra = ReadAhead::new();
        let faults = sequential(&mut ra, 1000, 4096, 1);
        assert!(faults.len() < 4096 / 25, "{} faults", faults.len());
    }

    #[test]
    fn strides_and_descending_patterns_are_followed() {
        let mut ra = ReadAhead::new();
        let faults = sequential(&mut ra, 50_000, 2048, 3);
        assert!(
            faults.len() < 2048 / 25,
            "stride 3: {} faults",
            faults.len()
        );
        let mut ra = ReadAhead::new();
        let faults = sequential(&mut ra, 50_000, 2048, -1);
        assert!(
            faults.len() < 2048 / 25,
            "descending: {} faults",
            faults.len()
        );
        // A stride needs confirming (two equal steps) before anything is asked for.
        let mut ra = ReadAhead::new();
        assert_eq!(ra.on_fault(0), None);
        assert_eq!(ra.on_fault(4), None);
        assert_eq!(pages(ra.on_fault(8)), vec![12, 16, 20, 24]);
    }

    #[test]
    fn random_faults_ask_for_nothing() {
        let mut ra = ReadAhead::new();
        let mut x: u64 = 12345;
        let mut asked = 0;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            asked += pages(ra.on_fault((x >> 20) % 1_000_000)).len();
        }
        assert!(asked < 100, "{asked} pages asked for");
    }

    #[test]
    fn interleaved_streams_are_followed_apart() {
        let mut ra = ReadAhead::new();
        let mut present = std::collections::HashSet::new();
        let mut faults = 0;
        for i in 0..2048u64 {
            for base in [0u64, 1 << 20, 2 << 20] {
                let p = base + i;
                if present.insert(p) {
                    faults += 1;
                    present.extend(pages(ra.on_fault(p)));
                }
            }
        }
        assert!(faults < 3 * 2048 / 25, "{faults} faults");
    }

    #[test]
    fn invalid_pages_are_read_ahead_while_few_are_dropped_unused() {
        let mut b = Book::default();
        assert!(b.invalid_ok());
        for p in 0..100 {
            b.asked(p);
        }
        for p in 0..90 {
            assert!(b.used(p));
        }
        assert!(!b.used(0), "counted once");
        for p in 90..100 {
            assert!(b.dropped(p));
        }
        assert!(b.invalid_ok(), "10 dropped, 90 used");
        for p in 100..200 {
            b.asked(p);
            b.dropped(p);
        }
        assert!(!b.invalid_ok(), "110 dropped, 90 used");
        // Outcomes fade: a run of used pages brings it back.
        for p in 200..3000 {
            b.asked(p);
            b.used(p);
        }
        assert!(b.invalid_ok());
        b.asked(5000);
        b.forget(5000);
        assert!(!b.dropped(5000));
    }

    #[test]
    fn no_page_number_overflows() {
        let mut ra = ReadAhead::new();
        ra.on_fault(u64::MAX - 1);
        let w = ra.on_fault(u64::MAX);
        assert_eq!(pages(w), Vec::<PageId>::new());
        let mut ra = ReadAhead::new();
        ra.on_fault(1);
        assert_eq!(pages(ra.on_fault(0)), Vec::<PageId>::new());
    }
}
