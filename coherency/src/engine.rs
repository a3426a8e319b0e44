//! The protocol engine: one per kernel, for every page of one address space.
//!
//! The engine is pure: it never blocks, never reads a clock and never does I/O. Everything it
//! wants done goes through the [`Host`] it is handed on each call, synchronously and in order:
//! sending messages, changing the local mapping of a page, reading the local copy's content,
//! completing a waiting access. The same code runs in the VMM (where the host is the island's
//! userfaultfd handler and its links), in the model checker and in the simulator (`coherency-lab`).

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use rustc_hash::FxHashMap;

use crate::message::{Message, MessageKind, MessageType, Voter};
use crate::state::{FetchingSub, Mapping, State};
use crate::types::{Access, AccessToken, KernelId, KernelSet, PageId, MAX_KERNELS};

/// `mutant!(self, NoRounds)`: whether that deliberate bug (`crate::Mutant`) is on in this
/// engine's configuration. Without the `mutants` feature there are no mutants: the macro is the
/// constant `false` and the compiler drops every branch that tests it.
#[cfg(feature = "mutants")]
macro_rules! mutant {
    ($engine:expr, $m:ident) => {
        $engine.config.mutant == Some(crate::mutant::Mutant::$m)
    };
}

#[cfg(not(feature = "mutants"))]
macro_rules! mutant {
    ($engine:expr, $m:ident) => {
        false
    };
}

/// What the engine asks of the kernel that runs it.
pub trait Host<D> {
    /// Sends a message to another kernel. Delivery is asynchronous; the engine expects per-link
    /// FIFO order (see the crate docs for what the model checker found without it).
    fn send(&mut self, to: KernelId, msg: Message<D>);

    /// Returns the content of the local copy of `page`. Called only while the copy is mapped, and
    /// always after the mapping change that precedes it (a Downgrade comes first, so no write can
    /// slip in after the read).
    fn read_page(&mut self, page: PageId) -> D;

    /// Changes the local mapping of `page`.
    fn map(&mut self, page: PageId, change: MapChange<D>);

    /// A waiting access may now proceed: the mapping permits it.
    fn complete(&mut self, page: PageId, token: AccessToken, access: Access);

    /// The page was reset under a waiting access ([`Engine::reset`], or a newer generation heard
    /// of): the access did not happen and the engine forgot it. The thread must try again (in
    /// the VMM: wake it; it faults again and meets whatever the layout now says).
    fn retry(&mut self, page: PageId, token: AccessToken, access: Access);

    /// The host's local time, in the unit of [`Config::hold`] (the VMM: nanoseconds since the
    /// island started). Read only when the holding window is on; the model answers a constant.
    fn now(&mut self) -> u64 {
        0
    }

    /// The holding window (see [`HoldWindow`]) keeps requests for `page` waiting until local time
    /// `at`: the host must call [`Engine::release`] for `page` at (or after) `at`. Called once per
    /// window, when its first request is held back.
    fn hold_until(&mut self, page: PageId, at: u64) {
        let _ = (page, at);
    }
}

/// A change to the host mapping of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapChange<D> {
    /// Install this content (read-only or writable). The page was not mapped.
    Install { data: D, writable: bool },
    /// Install the initial content of a page nobody has used (in the VMM: a zero page).
    InstallInitial { writable: bool },
    /// Read-only → writable.
    Upgrade,
    /// Writable → read-only.
    Downgrade,
    /// Unmap (in the VMM: MADV_DONTNEED).
    Drop,
}

/// Protocol settings, the same on every kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Number of kernels, 1 to 64.
    pub kernels: usize,
    /// §5.2 multicast groups: send to the page's users instead of to every kernel.
    pub multicast: bool,
    /// §5.2 owner: a read fetches from the last writer first.
    pub owner_hint: bool,
    /// Mirage's Δ against thrashing (decision 17): a page this kernel just got write access to
    /// is held for a short, adaptive time before a request takes it away. None: off.
    pub hold: Option<HoldWindow>,
    /// A deliberate bug, for checking the checker (only with the `mutants` feature).
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl Config {
    /// `kernels` kernels with every optimization on.
    pub fn new(kernels: usize) -> Config {
        Config {
            kernels,
            multicast: true,
            owner_hint: true,
            hold: None,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    /// `kernels` kernels with every optimization off (the protocol of §4 alone).
    pub fn unoptimized(kernels: usize) -> Config {
        Config {
            kernels,
            multicast: false,
            owner_hint: false,
            hold: None,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// The holding window of decision 17 (Mirage's Δ), in the host's time unit (the VMM: ns).
///
/// When a kernel gets write access to a page (Modified), it computes the page's window: 0 if it
/// did not lose the page less than `recent` before (a page nobody contends is never held),
/// otherwise twice the last window, at least `min` and at most `max`. A request that would take
/// the page away (Fetch, Fetch Write) and arrives before the acquisition time + window waits until
/// then ([`Host::hold_until`], [`Engine::release`]); so does one that waited for the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HoldWindow {
    /// The first window of a page that bounces.
    pub min: u64,
    /// The longest window.
    pub max: u64,
    /// A page reacquired less than this after it was lost bounces. `u64::MAX`: every
    /// acquisition counts as a bounce, even the first (the model checker's setting: it then
    /// holds every page, which explores the most interleavings with the fewest accesses).
    pub recent: u64,
}

impl HoldWindow {
    /// The VMM's defaults, in ns: 20 us to 100 us, bouncing if reacquired within 10 ms (longer
    /// windows cost more than they save on popvmm's contended producer/consumer: measured with
    /// 1 ms, 200 us, 100 us and 50 us, see the README's "Thrashing").
    pub const DEFAULT: HoldWindow = HoldWindow {
        min: 20_000,
        max: 100_000,
        recent: 10_000_000,
    };

    /// The window after one more acquisition of a page that was lost at `lost_at` (None: never)
    /// and is acquired at `now`, when the last window was `last`.
    pub fn next(&self, last: u64, lost_at: Option<u64>, now: u64) -> u64 {
        match lost_at {
            _ if self.recent == u64::MAX => last
                .saturating_mul(2)
                .clamp(self.min, self.max.max(self.min)),
            Some(lost) if now.saturating_sub(lost) < self.recent => last
                .saturating_mul(2)
                .clamp(self.min, self.max.max(self.min)),
            _ => 0,
        }
    }
}

/// "3 kernels, optimizations on", and the mutant if there is one: for reports.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kernels, ", self.kernels)?;
        match (self.multicast, self.owner_hint) {
            (true, true) => write!(f, "optimizations on")?,
            (false, false) => write!(f, "optimizations off")?,
            (multicast, owner_hint) => write!(
                f,
                "multicast groups {}, owner hint {}",
                if multicast { "on" } else { "off" },
                if owner_hint { "on" } else { "off" }
            )?,
        }
        if let Some(h) = self.hold {
            write!(f, ", holding window {}-{}", h.min, h.max)?;
        }
        #[cfg(feature = "mutants")]
        if let Some(m) = self.mutant {
            write!(f, ", mutant {}", m.name())?;
        }
        Ok(())
    }
}

/// Something happened that the protocol says cannot happen. Reaching one is a protocol bug (the
/// model checker treats it as a violation); the VMM reports it and stops the program.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ProtocolError {
    #[error("kernel {kernel}: page {page}: {message} from kernel {from} in state {state}")]
    Unexpected {
        kernel: KernelId,
        page: PageId,
        from: KernelId,
        message: &'static str,
        state: State,
    },
    #[error(
        "kernel {kernel}: page {page}: every answer to a fetch was Copy Void in state {state}"
    )]
    NoCopy {
        kernel: KernelId,
        page: PageId,
        state: State,
    },
    #[error("kernel {kernel}: page {page}: elected writer, but its copy was invalidated")]
    LostCopy { kernel: KernelId, page: PageId },
    #[error("kernel {kernel}: message for page {page} from kernel {from}, which does not exist")]
    BadSender {
        kernel: KernelId,
        page: PageId,
        from: KernelId,
    },
}

/// A read-only view of one page copy, for the control socket and for invariant checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageView {
    pub state: State,
    pub mapping: Mapping,
    pub owner: Option<KernelId>,
    pub users: KernelSet,
    /// Accesses waiting on this copy.
    pub waiting: usize,
    /// The page's generation here (decision 16).
    pub gen: u32,
    /// Requests held back by the holding window (decision 17) until this local time.
    pub held_until: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Waiter {
    token: AccessToken,
    access: Access,
    /// The local time of the access, which becomes the write's timestamp.
    ts: u64,
}

/// A request received in a Writing state (or in Modified before the round is complete) whose answer
/// waits (§4.6, §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Deferred {
    from: KernelId,
    fetch_write: bool,
}

/// One kernel's copy of one page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PageCopy<D> {
    /// The generation (incarnation) of the page this copy belongs to (decision 16).
    gen: u32,
    state: State,
    mapping: Mapping,
    /// Kernels known to use the page (§5.2), this one included once it uses it.
    users: KernelSet,
    /// The kernel whose Invalid this one last acknowledged (§5.2).
    owner: Option<KernelId>,

    // The request in progress (a Fetch, Fetch Write or Invalid sent to `asked`).
    asked: KernelSet,
    pending: KernelSet,
    /// The fetch went to the owner alone; on Copy Void, fall back to every user.
    owner_only: bool,
    /// The content carried by a Copy answer, until it is installed, and its version.
    staged: Option<D>,
    staged_version: u32,
    /// The version of the mapped content: how many elections were won on this page before it.
    version: u32,
    /// The oldest version this copy may install: one more than the version of the last write it
    /// acknowledged an Invalid for (decision 15). Older content is stale.
    floor: u32,
    /// Fetching: a Copy Void came from a user of the page (not from an Unmapped or fetching
    /// kernel), so the page is replicated and its data lives elsewhere: without a Copy, the
    /// initial content would be stale.
    void_from_user: bool,
    /// Invalid: the last fetch found no copy; the next fetch waits for the Invalid of the writer
    /// that moved the data.
    await_invalid: bool,

    // A write attempt (from leaving Shared until reaching Modified).
    /// The write's timestamp: the local time of the oldest waiting write; kept across retries.
    ts: u64,
    /// A Nack arrived for the Invalid in progress.
    nacked: bool,
    /// Kernels that answered our Invalid with a Nack: they beat us.
    nacked_by: KernelSet,
    /// In Writing Read, an Invalid was acknowledged: the copy being fetched may be stale.
    reread: bool,
    /// Kernels that voted on our Invalid from Writing Pend: the concurrent writers of the round.
    round_writers: KernelSet,
    /// Concurrent writers that acknowledged our Invalid: they lost at least to us.
    round_ackers: KernelSet,
    /// Kernels that acknowledged our Invalid from Writing Read: losers of an earlier round that will
    /// fetch again from the winner of ours.
    refetchers: KernelSet,
    /// Kernels that beat us from Writing Read: they have no Invalid out yet.
    refetching_winners: KernelSet,
    /// Kernels whose Invalid reached us in this round, with their timestamps.
    invalids: Vec<(KernelId, u64)>,
    /// Kernels whose Fetch Write reached us in this round.
    fetch_writes: KernelSet,
    /// Modified: losers of our round whose Fetch Write has not arrived yet.
    round_wait: KernelSet,
    /// Requests whose answer waits.
    deferred: Vec<Deferred>,
    /// Local accesses waiting for the protocol.
    waiting: Vec<Waiter>,

    // The holding window (decision 17).
    /// The page's last window (0: not held).
    window: u64,
    /// Modified: requests are held back until this local time (acquisition + window).
    hold_end: u64,
    /// Requests are held back now: the host was asked to call [`Engine::release`].
    holding: bool,
    /// When this kernel last lost write access to the page (answered a request in Modified).
    lost_at: Option<u64>,
}

impl<D> PageCopy<D> {
    fn new(state: State, mapping: Mapping, users: KernelSet, gen: u32) -> Self {
        PageCopy {
            gen,
            state,
            mapping,
            users,
            owner: None,
            asked: KernelSet::EMPTY,
            pending: KernelSet::EMPTY,
            owner_only: false,
            staged: None,
            staged_version: 0,
            version: 0,
            floor: 0,
            void_from_user: false,
            await_invalid: false,
            ts: 0,
            nacked: false,
            nacked_by: KernelSet::EMPTY,
            reread: false,
            round_writers: KernelSet::EMPTY,
            round_ackers: KernelSet::EMPTY,
            refetchers: KernelSet::EMPTY,
            refetching_winners: KernelSet::EMPTY,
            invalids: Vec::new(),
            fetch_writes: KernelSet::EMPTY,
            round_wait: KernelSet::EMPTY,
            deferred: Vec::new(),
            waiting: Vec::new(),
            window: 0,
            hold_end: 0,
            holding: false,
            lost_at: None,
        }
    }

    fn view(&self) -> PageView {
        PageView {
            state: self.state,
            mapping: self.mapping,
            owner: self.owner,
            users: self.users,
            waiting: self.waiting.len(),
            gen: self.gen,
            held_until: self.holding.then_some(self.hold_end),
        }
    }

    /// An Unmapped copy with nothing to remember (its generation is the one the resets give its
    /// page, `base`) can be forgotten.
    fn is_blank(&self, base: u32) -> bool {
        self.state == State::Unmapped
            && self.users.is_empty()
            && self.owner.is_none()
            && self.waiting.is_empty()
            && self.gen == base
    }
}

/// The generation the resets applied here give `page` (0: never reset): `resets` maps the first
/// page of each reset range to its end and generation; the ranges are disjoint.
fn base_gen(resets: &BTreeMap<PageId, (PageId, u32)>, page: PageId) -> u32 {
    resets
        .range(..=page)
        .next_back()
        .filter(|(_, &(end, _))| page < end)
        .map_or(0, |(_, &(_, gen))| gen)
}

/// The protocol engine of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine<D> {
    me: KernelId,
    config: Config,
    /// The kernels that take part: every kernel, unless the host says fewer (see
    /// [`Engine::set_members`]).
    members: KernelSet,
    /// A hash map: a page fault looks its page up several times, and the engine must handle
    /// millions of messages per second.
    pages: FxHashMap<PageId, PageCopy<D>>,
    /// The generation of the pages that have no copy here, by range (see [`Engine::reset`]):
    /// first page -> (end, generation); disjoint ranges, neighbours of one generation merged.
    resets: BTreeMap<PageId, (PageId, u32)>,
}

/// In page order, so that equal engines hash equally whatever their insertion history (the model
/// checker hashes states).
impl<D: Hash> Hash for Engine<D> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.me.hash(state);
        self.config.hash(state);
        self.members.hash(state);
        let mut pages: Vec<_> = self.pages.iter().collect();
        pages.sort_unstable_by_key(|(&p, _)| p);
        pages.hash(state);
        self.resets.hash(state);
    }
}

impl<D: Clone> Engine<D> {
    /// The engine of kernel `me`. Every page starts Unmapped.
    ///
    /// # Panics
    /// If `config.kernels` is 0 or above 64, or `me` is not below it: both are programming errors.
    pub fn new(me: KernelId, config: Config) -> Self {
        assert!(
            (1..=MAX_KERNELS).contains(&config.kernels),
            "1 to {MAX_KERNELS} kernels"
        );
        assert!((me as usize) < config.kernels, "kernel index out of range");
        Engine {
            me,
            config,
            members: KernelSet::first(config.kernels),
            pages: FxHashMap::default(),
            resets: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> KernelId {
        self.me
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Restricts the protocol to `members` (this kernel is always one): the messages that go to
    /// every kernel (a fetch out of Unmapped, every request without multicast groups) go to the
    /// members only. A program-level multicast group (§5.2): kernels that never run a thread of
    /// the program never hold a copy, so asking them is wasted. The host must grow the set on
    /// every kernel before a new member touches any page (popvmm does it before the first thread
    /// of an island starts), and never drop a kernel that may hold a copy. The model checker
    /// explores the full set.
    pub fn set_members(&mut self, members: KernelSet) {
        let all = KernelSet::first(self.config.kernels);
        self.members = KernelSet(members.with(self.me).0 & all.0);
    }

    pub fn members(&self) -> KernelSet {
        self.members
    }

    /// Declares `page` Not Replicated here: this kernel holds its only copy, already mapped writable
    /// by the host (the program's initial pages on the origin). Every other kernel must have it
    /// Unmapped.
    pub fn set_not_replicated(&mut self, page: PageId) {
        let gen = self.gen(page);
        self.pages.insert(
            page,
            PageCopy::new(
                State::NotReplicated,
                Mapping::ReadWrite,
                KernelSet::only(self.me),
                gen,
            ),
        );
    }

    /// Forgets `page` at once, waiting accesses included, with no generation: only sound when no
    /// message about the page can be in flight and no kernel holds a copy. This is how popvmm
    /// dropped pages before decision 16; the model checker keeps it (`ResetMode::Forget`) to show
    /// what goes wrong. Layout changes use [`Engine::reset`].
    pub fn forget(&mut self, page: PageId) {
        self.pages.remove(&page);
    }

    /// The generation of `page` here (decision 16): its copy's, or the last reset's.
    pub fn gen(&self, page: PageId) -> u32 {
        match self.pages.get(&page) {
            Some(c) => c.gen,
            None => base_gen(&self.resets, page),
        }
    }

    /// Whether `msg` belongs to an older generation of its page than this kernel's: [`handle`]
    /// drops it (an answer) or answers it with a notice of the newer generation (a request).
    ///
    /// [`handle`]: Engine::handle
    pub fn is_stale(&self, msg: &Message<D>) -> bool {
        msg.gen < self.gen(msg.page)
    }

    /// A layout change resets the pages of `pages` to generation `gen` (decision 16): their
    /// content starts over (zero, or what the caller installs next with
    /// [`Engine::set_not_replicated`]). Every copy of an older generation is dropped here (the
    /// host unmaps it), the accesses waiting on it are handed back ([`Host::retry`]), and the
    /// page is Unmapped at `gen`. Copies already at `gen` or newer (this kernel heard of the
    /// reset from another kernel first) are left alone. The origin calls it with a generation
    /// newer than any it gave before, then every other kernel with the same one, in the
    /// origin's order; until then a kernel may hear of it from a message
    /// ([`Engine::handle`]).
    pub fn reset<H: Host<D>>(&mut self, pages: Range<PageId>, gen: u32, host: &mut H) {
        if pages.is_empty() {
            return;
        }
        self.set_base_gen(pages.clone(), gen);
        let mut held: Vec<PageId> = if (pages.end - pages.start) as usize <= self.pages.len() {
            pages.filter(|p| self.pages.contains_key(p)).collect()
        } else {
            self.pages
                .keys()
                .copied()
                .filter(|p| pages.contains(p))
                .collect()
        };
        // In page order, so that what the host sees does not depend on the hash map's order.
        held.sort_unstable();
        for page in held {
            self.reset_page(page, gen, host);
        }
    }

    /// Records that the pages of `range` are at generation `gen` when they have no copy.
    fn set_base_gen(&mut self, range: Range<PageId>, gen: u32) {
        let (start, end) = (range.start, range.end);
        // The ranges that overlap [start, end): trimmed, or removed.
        let overlapping: Vec<PageId> = self
            .resets
            .range(..end)
            .rev()
            .take_while(|(_, &(e, _))| e > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            if let Some((e, g)) = self.resets.remove(&s) {
                if s < start {
                    self.resets.insert(s, (start, g));
                }
                if e > end {
                    self.resets.insert(end, (e, g));
                }
            }
        }
        let (mut start, mut end) = (start, end);
        // Merge with neighbours of the same generation.
        if let Some((&s, &(e, g))) = self.resets.range(..start).next_back() {
            if e == start && g == gen {
                self.resets.remove(&s);
                start = s;
            }
        }
        if let Some(&(e, g)) = self.resets.get(&end) {
            if g == gen {
                self.resets.remove(&end);
                end = e;
            }
        }
        self.resets.insert(start, (end, gen));
    }

    /// Resets one page to `gen` if its copy here is older (see [`Engine::reset`]).
    fn reset_page<H: Host<D>>(&mut self, page: PageId, gen: u32, host: &mut H) {
        let base = base_gen(&self.resets, page);
        match self.pages.remove(&page) {
            Some(old) if old.gen >= gen => {
                self.pages.insert(page, old);
            }
            Some(old) => {
                if old.mapping != Mapping::None {
                    host.map(page, MapChange::Drop);
                }
                for w in old.waiting {
                    host.retry(page, w.token, w.access);
                }
                // Requests whose answer waited get one now (each request gets exactly one):
                // Reset, with the new generation.
                for d in old.deferred {
                    host.send(
                        d.from,
                        Message {
                            page,
                            from: self.me,
                            gen,
                            kind: MessageKind::Reset,
                            users: KernelSet::EMPTY,
                        },
                    );
                }
                if gen != base {
                    let fresh =
                        PageCopy::new(State::Unmapped, Mapping::None, KernelSet::EMPTY, gen);
                    self.pages.insert(page, fresh);
                }
            }
            None if gen > base => {
                let fresh = PageCopy::new(State::Unmapped, Mapping::None, KernelSet::EMPTY, gen);
                self.pages.insert(page, fresh);
            }
            None => {}
        }
    }

    /// The state of one page copy.
    pub fn view(&self, page: PageId) -> PageView {
        self.pages.get(&page).map_or(
            PageView {
                state: State::Unmapped,
                mapping: Mapping::None,
                owner: None,
                users: KernelSet::EMPTY,
                waiting: 0,
                gen: base_gen(&self.resets, page),
                held_until: None,
            },
            PageCopy::view,
        )
    }

    /// The pages this engine holds state for, in no particular order (cheap: no views built).
    pub fn page_ids(&self) -> Vec<PageId> {
        self.pages.keys().copied().collect()
    }

    /// Every page this kernel knows something about, in page order.
    pub fn pages(&self) -> Vec<(PageId, PageView)> {
        let mut pages: Vec<_> = self.pages.iter().map(|(&p, c)| (p, c.view())).collect();
        pages.sort_unstable_by_key(|&(p, _)| p);
        pages
    }

    /// The full bookkeeping of one copy, for diagnostics.
    pub fn debug_page(&self, page: PageId) -> String
    where
        D: std::fmt::Debug,
    {
        match self.pages.get(&page) {
            None => "Unmapped".to_string(),
            Some(c) => format!(
                "{} {:?} v{} ts{} pending{} asked{} writers{} refetchers{} invalids{:?} fw{} \
                 wait{} nacked_by{} reread{} deferred{:?} owner{:?} users{}",
                c.state,
                c.mapping,
                c.version,
                c.ts,
                c.pending,
                c.asked,
                c.round_writers,
                c.refetchers,
                c.invalids,
                c.fetch_writes,
                c.round_wait,
                c.nacked_by,
                c.reread,
                c.deferred
                    .iter()
                    .map(|d| (d.from, d.fetch_write))
                    .collect::<Vec<_>>(),
                c.owner,
                c.users
            ),
        }
    }

    /// Pages whose state is `Unmapped` need no memory here; this is how many copies are recorded.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The local content staged for installation, if any (for the model's data checks).
    pub fn staged(&self, page: PageId) -> Option<&D> {
        self.pages.get(&page).and_then(|c| c.staged.as_ref())
    }

    /// A thread accesses `page` at local time `now`. Returns `true` when the access may proceed at
    /// once; otherwise it waits and the engine calls [`Host::complete`] with `token` when it may
    /// proceed (possibly before this call returns, when no message is needed).
    pub fn access<H: Host<D>>(
        &mut self,
        page: PageId,
        access: Access,
        token: AccessToken,
        now: u64,
        host: &mut H,
    ) -> Result<bool, ProtocolError> {
        let copy = self.copy(page);
        if copy.mapping.permits(access) {
            return Ok(true);
        }
        copy.waiting.push(Waiter {
            token,
            access,
            ts: now,
        });
        self.settle(page, host)?;
        self.tidy(page);
        Ok(false)
    }

    /// Handles one message from another kernel.
    pub fn handle<H: Host<D>>(
        &mut self,
        msg: Message<D>,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let page = msg.page;
        let from = msg.from;
        if from as usize >= self.config.kernels || from == self.me {
            return Err(ProtocolError::BadSender {
                kernel: self.me,
                page,
                from,
            });
        }
        let me = self.me;
        // Generations (decision 16).
        let gen = self.gen(page);
        if msg.gen < gen {
            // The page was reset since the sender's copy was: an answer is dropped; a request
            // is answered with Reset, which tells its sender the newer generation (nothing else
            // changes here), so that it resets and retries at once, without waiting for its own
            // layout push (its thread may hold the lock that push needs).
            if !msg.kind.is_answer() {
                self.send_reset(page, from, host);
            }
            return Ok(());
        }
        if msg.gen > gen {
            // A newer generation, heard of before this kernel's own reset: reset now.
            self.reset_page(page, msg.gen, host);
        }
        if matches!(msg.kind, MessageKind::Reset) {
            // Heard of (above), or already known: nothing more to do.
            self.tidy(page);
            return Ok(());
        }
        let copy = self.copy(page);
        // Multicast groups: learn the users the sender knows (§5.2). The sender is a user unless it
        // answered from Unmapped, in which case its bitmap does not include it.
        copy.users = copy.users.union(msg.users);
        if copy.state != State::Unmapped {
            copy.users.insert(me);
        }
        match msg.kind {
            MessageKind::Fetch => self.on_fetch(page, from, false, host)?,
            MessageKind::FetchWrite => self.on_fetch(page, from, true, host)?,
            MessageKind::Invalid { ts, version } => {
                self.on_invalid(page, from, ts, version, host)?
            }
            MessageKind::Copy { data, version } => {
                self.on_copy_answer(page, from, Some((data, version)), false, host)?
            }
            MessageKind::CopyVoid { fetching } => {
                let from_user = !fetching && msg.users.contains(from);
                if from_user {
                    self.copy(page).void_from_user = true;
                }
                self.on_copy_answer(page, from, None, fetching, host)?
            }
            MessageKind::Ack { voter } => self.on_vote(page, from, false, voter, host)?,
            MessageKind::Nack { voter } => self.on_vote(page, from, true, voter, host)?,
            MessageKind::Reset => {}
        }
        self.tidy(page);
        Ok(())
    }

    /// In a stable state, forgets the bookkeeping of finished requests, so that equal situations are
    /// equal states (this keeps the model checker's state space small), and drops blank copies.
    fn tidy(&mut self, page: PageId) {
        let Some(copy) = self.pages.get_mut(&page) else {
            return;
        };
        if !copy.state.is_stable() {
            return;
        }
        copy.asked = KernelSet::EMPTY;
        copy.pending = KernelSet::EMPTY;
        copy.owner_only = false;
        copy.staged = None;
        copy.staged_version = 0;
        copy.void_from_user = false;
        if copy.round_wait.is_empty() {
            copy.ts = 0;
            copy.nacked = false;
            copy.nacked_by = KernelSet::EMPTY;
            copy.reread = false;
            copy.round_writers = KernelSet::EMPTY;
            copy.refetchers = KernelSet::EMPTY;
            copy.round_ackers = KernelSet::EMPTY;
            copy.refetching_winners = KernelSet::EMPTY;
            copy.invalids.clear();
            copy.fetch_writes = KernelSet::EMPTY;
        }
        if copy.is_blank(base_gen(&self.resets, page)) {
            self.pages.remove(&page);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Requests from other kernels.

    fn on_fetch<H: Host<D>>(
        &mut self,
        page: PageId,
        from: KernelId,
        fetch_write: bool,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let fetch_in_writing = mutant!(self, FetchInWriting);
        let copy = self.copy(page);
        copy.users.insert(from);
        match copy.state {
            State::Unmapped | State::Invalid | State::InvalidRead1 | State::InvalidRead2 => {
                self.send_void(page, from, false, host);
            }
            State::Fetching(sub) => {
                // Another kernel is fetching too: the page is going to be replicated (§4.8).
                if sub == FetchingSub::NotReplicated {
                    copy.state = State::Fetching(FetchingSub::Valid);
                }
                self.send_void(page, from, true, host);
            }
            State::NotReplicated => {
                // The only copy becomes one of two (§4.8).
                self.downgrade_and_share(page, host);
                self.send_copy(page, from, host);
            }
            State::Shared => self.send_copy(page, from, host),
            State::Modified => {
                if fetch_write {
                    copy.fetch_writes.insert(from);
                    copy.round_wait.remove(from);
                }
                if copy.round_wait.is_empty() {
                    copy.deferred.push(Deferred { from, fetch_write });
                    self.answer_or_hold(page, host);
                } else {
                    // The round is not over: every loser must get the data while the copy is
                    // still valid (§4.7).
                    copy.deferred.push(Deferred { from, fetch_write });
                }
            }
            State::WritingPend1 | State::WritingPend2 => {
                if fetch_write {
                    copy.fetch_writes.insert(from);
                }
                if fetch_write && copy.nacked_by.contains(from) {
                    // A writer that beat us: it will not wait for our write, so neither do we.
                    self.answer_from_writing(page, from, host);
                } else if !fetch_write && fetch_in_writing {
                    self.send_void(page, from, false, host);
                } else {
                    // Answered once the write is over (§4.6).
                    copy.deferred.push(Deferred { from, fetch_write });
                }
            }
            State::WritingRead => {
                if fetch_write {
                    // A concurrent loser: answered at once (§4.6), and counted for the second
                    // synchronization step (§4.7). A copy no Invalid took is still the newest.
                    copy.fetch_writes.insert(from);
                    self.answer_from_writing(page, from, host);
                    self.try_finish_writing_read(page, host)?;
                } else if fetch_in_writing {
                    self.send_void(page, from, false, host);
                } else {
                    copy.deferred.push(Deferred { from, fetch_write });
                }
            }
        }
        Ok(())
    }

    fn on_invalid<H: Host<D>>(
        &mut self,
        page: PageId,
        from: KernelId,
        ts: u64,
        version: u32,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let me = self.me;
        let tie_ack = mutant!(self, TieAck);
        let copy = self.copy(page);
        copy.users.insert(from);
        // Whoever acknowledges this write must not install content older than it (decision 15).
        let floor = version.saturating_add(1);
        match copy.state {
            State::Unmapped => {
                copy.floor = copy.floor.max(floor);
                self.send_vote(page, from, false, host)
            }
            State::NotReplicated => {
                return Err(self.unexpected(page, from, MessageType::Invalid.name()));
            }
            State::Fetching(_) => {
                copy.state = State::Fetching(FetchingSub::Invalid);
                copy.floor = copy.floor.max(floor);
                copy.owner = Some(from);
                self.send_vote(page, from, false, host);
            }
            State::Shared => {
                copy.state = State::Invalid;
                copy.floor = copy.floor.max(floor);
                copy.owner = Some(from);
                self.drop_mapping(page, host);
                self.send_vote(page, from, false, host);
            }
            State::Invalid | State::InvalidRead2 => {
                copy.floor = copy.floor.max(floor);
                copy.owner = Some(from);
                self.send_vote(page, from, false, host);
                let copy = self.copy(page);
                if copy.await_invalid {
                    copy.await_invalid = false;
                    self.settle(page, host)?;
                }
            }
            State::InvalidRead1 => {
                // The copies being collected may predate this write (§4.5).
                copy.state = State::InvalidRead2;
                copy.floor = copy.floor.max(floor);
                copy.owner = Some(from);
                self.send_vote(page, from, false, host);
            }
            State::Modified => {
                // A late Invalid from a loser of the round that elected us (§4.7).
                self.send_vote(page, from, true, host);
            }
            State::WritingPend1 | State::WritingPend2 | State::WritingRead => {
                // The latest Invalid of each writer: its timestamp is the same in all its rounds.
                copy.invalids.retain(|&(k, _)| k != from);
                copy.invalids.push((from, ts));
                copy.invalids.sort_unstable();
                // The election of §4.3: the smallest timestamp wins, ties go to the smallest index.
                let mine_smaller = (copy.ts, me) < (ts, from) && !(tie_ack && copy.ts == ts);
                if mine_smaller {
                    self.send_vote(page, from, true, host);
                } else {
                    copy.owner = Some(from);
                    copy.floor = copy.floor.max(floor);
                    let refetch_now = copy.state == State::WritingRead && copy.pending.is_empty();
                    if copy.state == State::WritingRead {
                        copy.reread = true;
                    }
                    // We lose to `from`: our copy is no longer up to date.
                    self.drop_mapping(page, host);
                    self.send_vote(page, from, false, host);
                    if refetch_now {
                        // The answers were in and we were only waiting for the other losers.
                        self.refetch_after_loss(page, host);
                    }
                }
                let copy = self.copy(page);
                if copy.state == State::WritingRead && copy.await_invalid {
                    // The writer that moved the data has shown itself: ask again.
                    copy.await_invalid = false;
                    self.refetch_after_loss(page, host);
                }
                self.try_leave_writing_pend2(page, host)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------
    // Answers to our requests.

    fn on_copy_answer<H: Host<D>>(
        &mut self,
        page: PageId,
        from: KernelId,
        data: Option<(D, u32)>,
        fetching: bool,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let copy = self.copy(page);
        let expecting = matches!(
            copy.state,
            State::Fetching(_) | State::InvalidRead1 | State::InvalidRead2 | State::WritingRead
        );
        if !expecting || !copy.pending.contains(from) {
            let what = if data.is_some() {
                MessageType::Copy
            } else {
                MessageType::CopyVoid
            };
            return Err(self.unexpected(page, from, what.name()));
        }
        copy.pending.remove(from);
        if fetching {
            if let State::Fetching(FetchingSub::NotReplicated) = copy.state {
                copy.state = State::Fetching(FetchingSub::Valid);
            }
        }
        if let Some((data, version)) = data {
            if version < copy.floor {
                // Content older than a write we acknowledged (decision 15): the sender had not
                // seen that write's Invalid yet. The data lives elsewhere.
                copy.void_from_user = true;
            } else if copy.staged.is_none() || version > copy.staged_version {
                // Several copies may answer one fetch; the newest wins (see the crate docs).
                copy.staged = Some(data);
                copy.staged_version = version;
            }
        }
        if copy.pending.is_empty() {
            self.on_fetch_answered(page, host)?;
        }
        Ok(())
    }

    fn on_vote<H: Host<D>>(
        &mut self,
        page: PageId,
        from: KernelId,
        nack: bool,
        voter: Voter,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let me = self.me;
        let multicast = self.config.multicast;
        let copy = self.copy(page);
        let expecting = matches!(copy.state, State::WritingPend1 | State::WritingPend2);
        if !expecting || !copy.pending.contains(from) {
            let what = if nack {
                MessageType::Nack
            } else {
                MessageType::Ack
            };
            return Err(self.unexpected(page, from, what.name()));
        }
        copy.pending.remove(from);
        // Only Fetch Writes sent after the vote count for the rounds (FIFO puts them after it).
        copy.fetch_writes.remove(from);
        match voter {
            Voter::Idle => {}
            Voter::Invalidating => {
                copy.round_writers.insert(from);
                if !nack {
                    copy.round_ackers.insert(from);
                }
            }
            Voter::Refetching if !nack => copy.refetchers.insert(from),
            Voter::Refetching => {
                // Its next Invalid, not the one of its earlier round, tells us it retried.
                copy.refetching_winners.insert(from);
                copy.invalids.retain(|&(k, _)| k != from);
            }
        }
        // The answer to a Fetch Write we hold back is useless to the voter if it beat us (it will
        // not wait for our write) or if it is refetching and just lost to us (it will ask again).
        let release = nack || voter == Voter::Refetching;
        if nack {
            copy.nacked = true;
            copy.nacked_by.insert(from);
            copy.state = State::WritingPend2;
        }
        if release {
            if let Some(at) = copy
                .deferred
                .iter()
                .position(|d| d.fetch_write && d.from == from)
            {
                copy.deferred.remove(at);
                self.answer_from_writing(page, from, host);
            }
        }
        let copy = self.copy(page);
        // Multicast groups: a user we did not know of must be invalidated too.
        if multicast {
            let missed = copy.users.without(me).minus(copy.asked);
            if !missed.is_empty() {
                copy.asked = copy.asked.union(missed);
                copy.pending = copy.pending.union(missed);
                let (ts, version) = (copy.ts, copy.version);
                for k in missed.iter() {
                    self.send(page, k, MessageKind::Invalid { ts, version }, host);
                }
            }
        }
        let copy = self.copy(page);
        if copy.pending.is_empty() {
            if copy.state == State::WritingPend1 {
                self.become_modified(page, host)?;
            } else {
                self.try_leave_writing_pend2(page, host)?;
            }
        }
        Ok(())
    }

    /// Every answer to our Fetch or Fetch Write is in.
    fn on_fetch_answered<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let no_reread = mutant!(self, NoReread);
        let copy = self.copy(page);
        match copy.state {
            State::Fetching(sub) => {
                if sub == FetchingSub::Invalid {
                    // A write overtook the fetch: fetch again, now as a user of a replicated page.
                    copy.staged = None;
                    copy.state = State::Invalid;
                    return self.settle(page, host);
                }
                match copy.staged.take() {
                    Some(data) => {
                        copy.state = State::Shared;
                        self.install(page, data, false, host);
                    }
                    None if copy.void_from_user || copy.floor > 0 => {
                        // Replicated elsewhere (a user answered, or we acknowledged a write), but
                        // no valid copy answered: ask the users.
                        copy.state = State::Invalid;
                    }
                    None if sub == FetchingSub::Valid => {
                        copy.state = State::Shared;
                        self.install_initial(page, false, host);
                    }
                    None => {
                        copy.state = State::NotReplicated;
                        self.install_initial(page, true, host);
                    }
                }
                self.settle(page, host)
            }
            State::InvalidRead2 if !no_reread => {
                copy.staged = None;
                copy.state = State::Invalid;
                self.settle(page, host)
            }
            State::InvalidRead1 | State::InvalidRead2 => match copy.staged.take() {
                Some(data) => {
                    copy.state = State::Shared;
                    self.install(page, data, false, host);
                    self.settle(page, host)
                }
                None if copy.owner_only => {
                    // The owner moved on (§5.2): ask every user.
                    copy.owner = None;
                    copy.state = State::Invalid;
                    self.settle(page, host)
                }
                None => {
                    // Every copy answered Copy Void: the data moved while the Fetch was out (a
                    // kernel that answered from Invalid fetched it and is writing). That writer's
                    // Invalid is on its way to us; fetch again once it arrives (see the crate docs).
                    copy.state = State::Invalid;
                    copy.await_invalid = true;
                    Ok(())
                }
            },
            State::WritingRead => {
                if copy.reread {
                    self.refetch_after_loss(page, host);
                    return Ok(());
                }
                if copy.staged.is_none() && copy.mapping == Mapping::None {
                    // As in Invalid Read: the data moved while the Fetch Write was out; its new
                    // holder's Invalid is on its way. Fetch again when it arrives.
                    copy.await_invalid = true;
                    return Ok(());
                }
                self.try_finish_writing_read(page, host)
            }
            _ => Err(self.unexpected(page, self.me, "fetch completion")),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // The write path.

    /// Writing Read, and we just lost to a writer of a later round: what we collected may predate
    /// its write. Fetch again (§4.5 applied to §4.4), as a loser of that round, which we took no
    /// part in: no synchronization step is owed.
    fn refetch_after_loss<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        let copy = self.copy(page);
        copy.reread = false;
        copy.await_invalid = false;
        copy.staged = None;
        copy.round_writers = KernelSet::EMPTY;
        copy.refetchers = KernelSet::EMPTY;
        copy.round_ackers = KernelSet::EMPTY;
        copy.refetching_winners = KernelSet::EMPTY;
        copy.fetch_writes = KernelSet::EMPTY;
        copy.nacked_by = KernelSet::EMPTY;
        self.send_fetch_write(page, host);
    }

    /// Writing Pend 2 → Writing Read once every vote is in and, first synchronization step of
    /// §4.7, the Invalid of every concurrent writer of the round has reached us.
    fn try_leave_writing_pend2<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let no_rounds = mutant!(self, NoRounds);
        let copy = self.copy(page);
        if copy.state != State::WritingPend2 || !copy.pending.is_empty() {
            return Ok(());
        }
        let heard: KernelSet = copy
            .invalids
            .iter()
            .fold(KernelSet::EMPTY, |s, &(k, _)| s.with(k));
        // Wait for the Invalid of every concurrent writer of the round; and, while our copy is
        // still valid (nobody else can win without our vote), for the Invalid of the refetching
        // writers that beat us: retrying before they do would only lose again.
        let mut expected = copy.round_writers;
        if copy.mapping != Mapping::None {
            expected = expected.union(copy.refetching_winners);
        }
        if !no_rounds && !expected.is_subset(heard) {
            return Ok(());
        }
        copy.state = State::WritingRead;
        // Fetch Writes deferred in Writing Pend are answered now (§4.6).
        let (fetch_writes, rest): (Vec<_>, Vec<_>) =
            copy.deferred.drain(..).partition(|d| d.fetch_write);
        copy.deferred = rest;
        for d in fetch_writes {
            self.answer_from_writing(page, d.from, host);
        }
        self.send_fetch_write(page, host);
        Ok(())
    }

    /// Writing Read → Writing Pend 1 (the retry) once the data is in and, second synchronization
    /// step of §4.7, every other loser of the round has sent us its Fetch Write.
    fn try_finish_writing_read<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let no_rounds = mutant!(self, NoRounds);
        let copy = self.copy(page);
        // The data: a Copy, or our own copy if no other writer's Invalid took it (we lost to a
        // writer that still has to fetch, so our copy is still the newest).
        let has_data = copy.staged.is_some() || copy.mapping != Mapping::None;
        if copy.state != State::WritingRead || !copy.pending.is_empty() || !has_data {
            return Ok(());
        }
        if !no_rounds {
            // The concurrent writers that voted for us lost too (at least to us): each one sends
            // a Fetch Write after its vote, and we answer it before retrying.
            if !copy.round_ackers.is_subset(copy.fetch_writes) {
                return Ok(());
            }
        }
        if let Some(data) = copy.staged.take() {
            if copy.mapping == Mapping::None || copy.staged_version > copy.version {
                self.install(page, data, false, host);
            }
        }
        self.start_invalidation(page, host)
    }

    /// Shared (or the retry out of Writing Read) → Writing Pend 1: send Invalid to every other copy.
    fn start_invalidation<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let targets = self.broadcast_targets(page);
        let copy = self.copy(page);
        copy.state = State::WritingPend1;
        copy.asked = targets;
        copy.pending = targets;
        copy.nacked = false;
        copy.nacked_by = KernelSet::EMPTY;
        copy.reread = false;
        copy.round_writers = KernelSet::EMPTY;
        copy.refetchers = KernelSet::EMPTY;
        copy.round_ackers = KernelSet::EMPTY;
        copy.refetching_winners = KernelSet::EMPTY;
        // `invalids` is kept across the retries of one write: a concurrent writer's Invalid may
        // have reached us in our previous round, before the vote that tells us it is concurrent.
        copy.fetch_writes = KernelSet::EMPTY;
        let (ts, version) = (copy.ts, copy.version);
        for k in targets.iter() {
            self.send(page, k, MessageKind::Invalid { ts, version }, host);
        }
        if targets.is_empty() {
            return self.become_modified(page, host);
        }
        Ok(())
    }

    fn become_modified<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let no_rounds = mutant!(self, NoRounds);
        let me = self.me;
        let copy = self.copy(page);
        if copy.mapping == Mapping::None {
            // Elected, but our copy was invalidated by another writer's Invalid: two winners.
            return Err(ProtocolError::LostCopy { kernel: me, page });
        }
        copy.state = State::Modified;
        copy.version += 1;
        if let Some(hold) = self.config.hold {
            let now = host.now();
            let copy = self.copy(page);
            copy.window = hold.next(copy.window, copy.lost_at, now);
            copy.hold_end = now.saturating_add(copy.window);
        }
        let copy = self.copy(page);
        // The winner answers no fetch until every concurrent writer that elected it asked (§4.7).
        copy.round_wait = if no_rounds {
            KernelSet::EMPTY
        } else {
            copy.round_writers
                .union(copy.refetchers)
                .minus(copy.fetch_writes)
        };
        self.set_mapping(page, Mapping::ReadWrite, host);
        // The write happens before any deferred fetch takes the page away.
        self.complete_waiters(page, host);
        if self.copy(page).round_wait.is_empty() {
            self.answer_or_hold(page, host);
        }
        // Whatever still waits (nothing, normally) is handled from the new state.
        self.settle(page, host)
    }

    /// Modified, round complete: answers the deferred requests, or holds them back until the end
    /// of the page's holding window (decision 17).
    fn answer_or_hold<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        let copy = self.copy(page);
        if copy.deferred.is_empty() {
            return;
        }
        if copy.holding {
            return;
        }
        if self.config.hold.is_some() && self.copy(page).window > 0 {
            let now = host.now();
            let copy = self.copy(page);
            if now < copy.hold_end {
                copy.holding = true;
                let at = copy.hold_end;
                host.hold_until(page, at);
                return;
            }
        }
        self.answer_deferred(page, host);
    }

    /// The end of the holding window of `page` (decision 17): the host calls it at the time it
    /// was given in [`Host::hold_until`], or later. Answers the requests held back (if the page
    /// still holds any: a reset may have answered them already). Returns whether it did.
    pub fn release<H: Host<D>>(&mut self, page: PageId, host: &mut H) -> bool {
        let Some(copy) = self.pages.get_mut(&page) else {
            return false;
        };
        if !copy.holding {
            return false;
        }
        copy.holding = false;
        if copy.state == State::Modified && copy.round_wait.is_empty() {
            self.answer_deferred(page, host);
        }
        self.tidy(page);
        true
    }

    /// Answers the deferred requests (Modified, round complete): the first one turns the copy Shared.
    fn answer_deferred<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        let deferred = std::mem::take(&mut self.copy(page).deferred);
        if deferred.is_empty() {
            return;
        }
        if self.config.hold.is_some() {
            let now = host.now();
            let copy = self.copy(page);
            copy.lost_at = Some(now);
            copy.holding = false;
        }
        self.downgrade_and_share(page, host);
        let data = host.read_page(page);
        let version = self.copy(page).version;
        for d in deferred {
            let kind = MessageKind::Copy {
                data: data.clone(),
                version,
            };
            self.send(page, d.from, kind, host);
        }
        let copy = self.copy(page);
        copy.fetch_writes = KernelSet::EMPTY;
        copy.round_writers = KernelSet::EMPTY;
        copy.refetchers = KernelSet::EMPTY;
        copy.round_ackers = KernelSet::EMPTY;
        copy.invalids.clear();
    }

    // ---------------------------------------------------------------------------------------------
    // Local accesses.

    /// Completes what the mapping now permits and, in a stable state, starts what the remaining
    /// accesses need.
    fn settle<H: Host<D>>(&mut self, page: PageId, host: &mut H) -> Result<(), ProtocolError> {
        self.complete_waiters(page, host);
        let copy = self.copy(page);
        if copy.waiting.is_empty() {
            return Ok(());
        }
        match copy.state {
            State::Unmapped => self.start_first_fetch(page, host),
            State::Invalid if copy.await_invalid => Ok(()),
            State::Invalid => self.start_fetch(page, host),
            State::Shared => {
                // A read waits only while the copy is unmapped, so what waits here is a write.
                let ts = copy
                    .waiting
                    .iter()
                    .filter(|w| w.access == Access::Write)
                    .map(|w| w.ts)
                    .min()
                    .unwrap_or(0);
                copy.ts = ts;
                self.start_invalidation(page, host)
            }
            _ => Ok(()),
        }
    }

    fn complete_waiters<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        let Some(copy) = self.pages.get_mut(&page) else {
            return;
        };
        let mapping = copy.mapping;
        copy.waiting.retain(|w| {
            if mapping.permits(w.access) {
                host.complete(page, w.token, w.access);
                false
            } else {
                true
            }
        });
    }

    /// Unmapped → Fetching: ask every kernel (users are unknown yet).
    fn start_first_fetch<H: Host<D>>(
        &mut self,
        page: PageId,
        host: &mut H,
    ) -> Result<(), ProtocolError> {
        let me = self.me;
        let others = self.members.without(me);
        let copy = self.copy(page);
        copy.state = State::Fetching(FetchingSub::NotReplicated);
        copy.users.insert(me);
        copy.asked = others;
        copy.pending = others;
        copy.owner_only = false;
        copy.staged = None;
        copy.void_from_user = false;
        for k in others.iter() {
            self.send(page, k, MessageKind::Fetch, host);
        }
        if others.is_empty() {
            self.on_fetch_answered(page, host)?;
        }
        Ok(())
    }

    /// Invalid → Invalid Read 1: ask the owner if known (§5.2), else every user.
    fn start_fetch<H: Host<D>>(&mut self, page: PageId, host: &mut H) -> Result<(), ProtocolError> {
        let me = self.me;
        let owner_hint = self.config.owner_hint;
        let broadcast = self.broadcast_targets(page);
        let copy = self.copy(page);
        let (targets, owner_only) = match copy.owner {
            Some(o) if owner_hint && o != me => (KernelSet::only(o), true),
            _ => (broadcast, false),
        };
        copy.state = State::InvalidRead1;
        copy.asked = targets;
        copy.pending = targets;
        copy.owner_only = owner_only;
        copy.staged = None;
        for k in targets.iter() {
            self.send(page, k, MessageKind::Fetch, host);
        }
        if targets.is_empty() {
            return Err(ProtocolError::NoCopy {
                kernel: me,
                page,
                state: State::InvalidRead1,
            });
        }
        Ok(())
    }

    /// (Re)enters Writing Read: a Fetch Write to every user. Always multicast, never to the owner
    /// alone: the other losers count Fetch Writes for the second synchronization step.
    fn send_fetch_write<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        let targets = self.broadcast_targets(page);
        let copy = self.copy(page);
        copy.state = State::WritingRead;
        copy.asked = targets;
        copy.pending = targets;
        copy.owner_only = false;
        copy.staged = None;
        for k in targets.iter() {
            self.send(page, k, MessageKind::FetchWrite, host);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers.

    fn copy(&mut self, page: PageId) -> &mut PageCopy<D> {
        match self.pages.entry(page) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(PageCopy::new(
                State::Unmapped,
                Mapping::None,
                KernelSet::EMPTY,
                base_gen(&self.resets, page),
            )),
        }
    }

    /// Every other kernel, or with multicast groups every other known user.
    fn broadcast_targets(&mut self, page: PageId) -> KernelSet {
        let me = self.me;
        if self.config.multicast {
            self.copy(page).users.without(me)
        } else {
            self.members.without(me)
        }
    }

    fn unexpected(&mut self, page: PageId, from: KernelId, message: &'static str) -> ProtocolError {
        let kernel = self.me;
        let state = self.copy(page).state;
        ProtocolError::Unexpected {
            kernel,
            page,
            from,
            message,
            state,
        }
    }

    fn send<H: Host<D>>(&mut self, page: PageId, to: KernelId, kind: MessageKind<D>, host: &mut H) {
        let me = self.me;
        let copy = self.copy(page);
        let (users, gen) = (copy.users, copy.gen);
        host.send(
            to,
            Message {
                page,
                from: me,
                gen,
                kind,
                users,
            },
        );
    }

    /// Answers a request of an older generation with Reset and this kernel's generation (see
    /// `handle`), touching nothing here.
    fn send_reset<H: Host<D>>(&mut self, page: PageId, to: KernelId, host: &mut H) {
        let gen = self.gen(page);
        host.send(
            to,
            Message {
                page,
                from: self.me,
                gen,
                kind: MessageKind::Reset,
                users: KernelSet::EMPTY,
            },
        );
    }

    fn send_void<H: Host<D>>(&mut self, page: PageId, to: KernelId, fetching: bool, host: &mut H) {
        self.send(page, to, MessageKind::CopyVoid { fetching }, host);
    }

    fn send_copy<H: Host<D>>(&mut self, page: PageId, to: KernelId, host: &mut H) {
        let data = host.read_page(page);
        let version = self.copy(page).version;
        self.send(page, to, MessageKind::Copy { data, version }, host);
    }

    /// A vote, flagged when we are writing ourselves (§4.7).
    fn send_vote<H: Host<D>>(&mut self, page: PageId, to: KernelId, nack: bool, host: &mut H) {
        let voter = match self.copy(page).state {
            State::WritingPend1 | State::WritingPend2 => Voter::Invalidating,
            State::WritingRead => Voter::Refetching,
            _ => Voter::Idle,
        };
        let kind = if nack {
            MessageKind::Nack { voter }
        } else {
            MessageKind::Ack { voter }
        };
        self.send(page, to, kind, host);
    }

    /// Answers a fetch at once from a Writing state: our copy if no Invalid took it (it is then
    /// still the newest), Copy Void otherwise.
    fn answer_from_writing<H: Host<D>>(&mut self, page: PageId, to: KernelId, host: &mut H) {
        // Only a copy still mapped is known to be the newest: acknowledging any Invalid unmaps it,
        // so no writer can have won without our vote. A copy collected by a Fetch Write but not
        // installed is not: a writer we voted for earlier may finish after it was sent (the
        // model checker's counterexample with 3 kernels and 2 accesses each).
        if self.copy(page).mapping != Mapping::None {
            self.send_copy(page, to, host);
        } else {
            self.send_void(page, to, false, host);
        }
    }

    /// Modified or Not Replicated → Shared: write-protect before anyone reads the content.
    fn downgrade_and_share<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        self.set_mapping(page, Mapping::ReadOnly, host);
        self.copy(page).state = State::Shared;
    }

    fn drop_mapping<H: Host<D>>(&mut self, page: PageId, host: &mut H) {
        self.set_mapping(page, Mapping::None, host);
    }

    fn install<H: Host<D>>(&mut self, page: PageId, data: D, writable: bool, host: &mut H) {
        // A correct run installs only over an unmapped copy; a mutant may not, and must not panic.
        self.drop_mapping(page, host);
        let copy = self.copy(page);
        copy.version = copy.staged_version;
        // The content is at least as new as any write acknowledged before (decision 15).
        copy.floor = 0;
        copy.mapping = if writable {
            Mapping::ReadWrite
        } else {
            Mapping::ReadOnly
        };
        host.map(page, MapChange::Install { data, writable });
    }

    fn install_initial<H: Host<D>>(&mut self, page: PageId, writable: bool, host: &mut H) {
        self.drop_mapping(page, host);
        let copy = self.copy(page);
        copy.version = 0;
        copy.floor = 0;
        copy.mapping = if writable {
            Mapping::ReadWrite
        } else {
            Mapping::ReadOnly
        };
        host.map(page, MapChange::InstallInitial { writable });
    }

    /// Moves the host mapping between mapped states (never installs: see [`Self::install`]).
    fn set_mapping<H: Host<D>>(&mut self, page: PageId, to: Mapping, host: &mut H) {
        let copy = self.copy(page);
        let from = copy.mapping;
        if from == to {
            return;
        }
        copy.mapping = to;
        let change = match (from, to) {
            (_, Mapping::None) => MapChange::Drop,
            (Mapping::ReadOnly, Mapping::ReadWrite) => MapChange::Upgrade,
            (Mapping::ReadWrite, Mapping::ReadOnly) => MapChange::Downgrade,
            (Mapping::None, _) => unreachable!("installing goes through install()"),
            (Mapping::ReadOnly, Mapping::ReadOnly) | (Mapping::ReadWrite, Mapping::ReadWrite) => {
                return
            }
        };
        host.map(page, change);
    }
}
