//! The origin's services: the island that runs the program's first thread owns its process-wide
//! state and serves it, to its own threads directly and to the other islands' requests.
//!
//! What the origin owns, and the messages that reach it:
//! - **the layout's authority** (`vma_request`): it serializes mmap, munmap, brk, mprotect,
//!   mremap and madvise, applies each to its own memory, then pushes the change to every island
//!   that has the layout (`layout_push`) and waits for each before the call returns; an island
//!   gets the whole layout (and joins the coherency protocol, `members`) before its first thread
//!   starts there;
//! - **the futex table** (`futex_request`; `cancel` when a waiter gives up): futex words are read
//!   through the origin's view of memory, that is through the coherency protocol; a waiter of
//!   another island holds no thread here, its reply goes when it is woken;
//! - **the files** (`file_request`): the descriptor table, root, working directory and umask;
//!   guest buffers come through the protocol too;
//! - **signal actions** (`sigaction_request`) and delivery to a thread wherever it runs
//!   (`signal_request`, then `signal` to its island);
//! - **the thread directory and placement** (`clone_request`, `locate_request`, `thread_exit`);
//! - **the exit status** (`exit_group`, then `exit` to every island).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::errno::{Errno, ExitStatus, SysResult};
use super::fs::{FileCx, Files};
use super::futex::{Abandon, FutexTable, ReadWord, WaiterId};
use super::island::{kick_signal, Island};
use super::messages::{
    FileCall, FutexCall, IslandId, LayoutOp, MmCall, Reply, Request, ThreadOp, ORIGIN,
};
use super::services::{reply_of, value, Served, Services};
use super::signal::{SigAction, Signals};
use super::syscall::{self, Handler};
use super::vma::Access;
use super::wait::Waiting;
use super::{mm, wire};
use crate::sync::lock;

/// How long a thread control call (affinity, migrate, propose) keeps looking for a thread the
/// directory lists but that is between islands.
const THREAD_IN_FLIGHT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where new threads go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every thread on the origin.
    Origin,
    /// Threads in turn on islands 1, 2, ..., N-1, 0, 1, ... (the main thread stays on the origin).
    RoundRobin,
    /// The n-th new thread goes to the n-th island of the list (cycling).
    List(Vec<IslandId>),
}

impl Placement {
    /// Parses `origin`, `round-robin` or `list:0,1,2`.
    pub fn parse(s: &str, islands: usize) -> Result<Placement, String> {
        match s {
            "origin" => Ok(Placement::Origin),
            "round-robin" => Ok(Placement::RoundRobin),
            _ => {
                let Some(list) = s.strip_prefix("list:") else {
                    return Err(format!(
                        "unknown placement {s:?}: expected origin, round-robin or list:I,J,..."
                    ));
                };
                let ids: Result<Vec<IslandId>, String> = list
                    .split(',')
                    .map(|x| {
                        let i: usize = x.trim().parse().map_err(|_| {
                            format!("placement list: {x:?} is not an island number")
                        })?;
                        if i >= islands {
                            return Err(format!(
                                "placement list: island {i} does not exist (--islands {islands})"
                            ));
                        }
                        Ok(i)
                    })
                    .collect();
                let ids = ids?;
                if ids.is_empty() {
                    return Err("placement list: empty".to_string());
                }
                Ok(Placement::List(ids))
            }
        }
    }

    /// The island of the `n`-th new thread of a program on `islands` islands.
    fn island(&self, n: usize, islands: usize) -> IslandId {
        match self {
            Placement::Origin => ORIGIN,
            Placement::RoundRobin => (n + 1) % islands,
            Placement::List(l) => l[n % l.len()],
        }
    }
}

/// A request of another island that its caller may give up on (see `Request::Cancel`).
#[derive(Debug, Clone, Copy)]
enum InFlight {
    /// Taken, not started yet.
    Pending,
    /// Queued in the futex table.
    FutexWait(WaiterId),
    /// A worker serves it (pthread_t, to interrupt a blocking host call).
    Blocking(libc::pthread_t),
    /// Its caller gave up before it started.
    Cancelled(Abandon),
}

/// Where a live thread runs, as the origin's directory knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whereabouts {
    At(IslandId),
    /// Migrating to `to`; `held`: signals sent to it meanwhile (bit n-1 for signal n), posted
    /// where it lands.
    Moving {
        to: IslandId,
        held: u64,
    },
}

impl Whereabouts {
    fn island(self) -> IslandId {
        match self {
            Whereabouts::At(i) | Whereabouts::Moving { to: i, .. } => i,
        }
    }
}

/// Called once when the program's exit status is decided.
pub type OnExit = Box<dyn Fn(ExitStatus) + Send + Sync>;

/// The origin's services: the program's process-wide state.
pub struct Origin {
    island: Weak<Island>,
    islands: usize,
    files: Files,
    signals: Signals,
    futexes: FutexTable,
    placement: Placement,
    placed: AtomicUsize,
    /// Which island runs each live thread.
    directory: Mutex<HashMap<u32, Whereabouts>>,
    status: Mutex<Option<ExitStatus>>,
    on_exit: OnExit,
    /// Islands that have the layout (they get every change).
    synced: Mutex<Vec<bool>>,
    /// One layout change (and its push to the islands) at a time, so that every island applies
    /// the changes in the origin's order.
    layout_serial: Mutex<()>,
    /// The last page generation given out (decision 16 of `coherency`): every memory call that
    /// may drop pages gives them the next one, newer than any before.
    generation: AtomicU32,
    /// Requests of other islands that their callers may cancel, by (island, request id).
    in_flight: Mutex<HashMap<(IslandId, u64), InFlight>>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("islands", &self.islands)
            .field("placement", &self.placement)
            .field("status", &*lock(&self.status))
            .finish()
    }
}

impl Origin {
    /// Every live thread the directory knows: its tid, the island it runs on (or is moving to),
    /// and whether it is moving (then no island's thread table may hold it for a while).
    pub fn directory(&self) -> Vec<(u32, IslandId, bool)> {
        lock(&self.directory)
            .iter()
            .map(|(&tid, w)| (tid, w.island(), matches!(w, Whereabouts::Moving { .. })))
            .collect()
    }

    /// The services of a program on `islands` islands, owned by `island` (the origin).
    pub fn new(
        island: Weak<Island>,
        islands: usize,
        files: Files,
        placement: Placement,
        on_exit: OnExit,
    ) -> Self {
        let mut synced = vec![false; islands];
        synced[ORIGIN] = true;
        Self {
            island,
            islands,
            files,
            signals: Signals::default(),
            futexes: FutexTable::default(),
            placement,
            placed: AtomicUsize::new(0),
            directory: Mutex::new(HashMap::new()),
            status: Mutex::new(None),
            on_exit,
            synced: Mutex::new(synced),
            layout_serial: Mutex::new(()),
            generation: AtomicU32::new(0),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The origin island (gone only while popvmm tears the program down).
    fn island(&self) -> Result<Arc<Island>, Errno> {
        self.island.upgrade().ok_or(Errno::ESRCH)
    }

    /// Records a thread started outside `clone` (the program's first thread).
    pub fn thread_started(&self, tid: u32, island: IslandId) {
        lock(&self.directory).insert(tid, Whereabouts::At(island));
    }

    /// How many islands the program has.
    pub fn islands(&self) -> usize {
        self.islands
    }

    /// The program's exit status, once decided.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *lock(&self.status)
    }

    /// The program's files (for file mappings and for loading).
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Adds `signals` (bit n-1 for signal n) to those held for thread `tid`, which is moving.
    fn hold_for(&self, tid: u32, signals: u64) {
        if signals == 0 {
            return;
        }
        if let Some(Whereabouts::Moving { held, .. }) = lock(&self.directory).get_mut(&tid) {
            *held |= signals;
        }
    }

    /// A change the origin could not push to an island leaves that island's layout behind the
    /// origin's: the program cannot go on correctly.
    fn push_failed(&self, island: &Island, to: IslandId, why: &str) {
        if island.exiting() {
            return;
        }
        crate::diag!(
            "popvmm: cannot update the layout of island {to}: {why}; the program is ended"
        );
        self.exit_group(ExitStatus::Signal(libc::SIGKILL));
    }

    /// Sends `ops` to island `to` (in chunks that fit a message) and waits until it applied them.
    fn send_layout(&self, island: &Island, to: IslandId, ops: Vec<LayoutOp>) -> Result<(), ()> {
        for chunk in wire::layout_chunks(ops) {
            let r = island
                .link
                .call(to, Request::Layout(chunk))
                .map_err(|e| e.to_string())
                .and_then(|r| value(r).map_err(|e| format!("errno {}", e.0)));
            if let Err(why) = r {
                self.push_failed(island, to, &why);
                return Err(());
            }
        }
        Ok(())
    }

    /// Pushes layout changes made here to every island that has the layout, and waits until each
    /// has applied them (so munmap and mprotect hold everywhere before the call returns).
    fn push_layout(&self, island: &Island, ops: Vec<LayoutOp>) {
        if ops.is_empty() {
            return;
        }
        let targets: Vec<IslandId> = lock(&self.synced)
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s && i != ORIGIN)
            .map(|(i, _)| i)
            .collect();
        for to in targets {
            if self.send_layout(island, to, ops.clone()).is_err() {
                return;
            }
        }
    }

    /// Makes sure island `to` has the layout and takes part in the protocol before a thread starts
    /// there. The first time a thread leaves the origin, the protocol starts (§5.2: "when a
    /// process is executing on only one kernel, the replication protocol is off").
    fn sync_layout_to(&self, island: &Island, to: IslandId) -> Result<(), Errno> {
        let _serial = lock(&self.layout_serial);
        if lock(&self.synced)[to] {
            return Ok(());
        }
        // Under the layout lock, so that no change slips between the snapshot and `synced`.
        let space = island.user.layout_mut();
        if island.dsm.start() {
            // Every page written so far is Not Replicated here.
            let ranges: Vec<(u64, u64)> = space
                .vmas()
                .filter(|v| !v.kind.is_local())
                .map(|v| (v.start, v.end - v.start))
                .collect();
            for (start, len) in ranges {
                mm::make_coherent(island, start, len)?;
            }
        }
        let ops: Vec<LayoutOp> = space
            .vmas()
            .filter(|v| !v.kind.is_local())
            .map(|v| LayoutOp::Map {
                start: v.start,
                len: v.end - v.start,
                prot: v.prot,
                kind: v.kind.clone(),
                // The island has no copy to reset. Its engine takes a page it never held for
                // generation 0; a request it makes of an older generation than the page's gets
                // a Reset answer that tells it the newer one, and it asks again.
                gen: 0,
            })
            .collect();
        self.send_layout(island, to, ops)
            .map_err(|_| Errno::EAGAIN)?;
        // The island takes part in the protocol from now on: every island must know it before
        // its first thread touches a page (a fetch out of Unmapped must reach it).
        let members = {
            let mut synced = lock(&self.synced);
            synced[to] = true;
            synced
                .iter()
                .enumerate()
                .filter(|(_, &s)| s)
                .fold(coherency::KernelSet::EMPTY, |m, (i, _)| m.with(i as u8))
        };
        island.dsm.set_members(members).map_err(|e| {
            island.log(1, format_args!("protocol members: {e}"));
            Errno::EAGAIN
        })?;
        for i in (0..self.islands).filter(|&i| i != ORIGIN) {
            let r = island.link.call(i, Request::Members { members: members.0 });
            if let Err(e) = r {
                self.push_failed(island, i, &e.to_string());
                return Err(Errno::EAGAIN);
            }
        }
        drop(space);
        Ok(())
    }

    /// A futex operation that does not wait.
    fn futex_now(&self, island: &Island, call: FutexCall) -> SysResult {
        let user = &island.user;
        match call {
            FutexCall::Wait { .. } => Err(Errno::EINVAL),
            FutexCall::Wake { addr, n, bitset } => {
                self.futexes.wake(addr, n, bitset).map(u64::from)
            }
            FutexCall::Requeue {
                addr,
                addr2,
                n_wake,
                n_requeue,
                check,
            } => {
                let read_word = || user.load_u32(addr);
                let check: Option<(u32, ReadWord<'_>)> =
                    check.map(|v| (v, &read_word as ReadWord<'_>));
                self.futexes
                    .requeue(addr, addr2, n_wake, n_requeue, check)
                    .map(u64::from)
            }
            FutexCall::WakeOp {
                addr,
                addr2,
                n,
                n2,
                encoded,
            } => self
                .futexes
                .wake_op(addr, addr2, n, n2, || {
                    wake_op_update(island, addr2, encoded)
                })
                .map(u64::from),
        }
    }

    /// FUTEX_WAIT of a thread of island `from` (request `id`): queued without holding a thread
    /// here; the wake answers it. None: answered later.
    fn remote_wait(self: &Arc<Self>, from: IslandId, id: u64, call: FutexCall) -> Option<Reply> {
        let FutexCall::Wait { addr, val, bitset } = call else {
            return Some(reply_of(Err(Errno::EINVAL)));
        };
        let island = match self.island() {
            Ok(i) => i,
            Err(e) => return Some(reply_of(Err(e))),
        };
        let key = (from, id);
        if let Some(InFlight::Cancelled(why)) = self.take_if_cancelled(key) {
            return Some(reply_of(Err(why.errno())));
        }
        let on_wake = {
            let me = Arc::clone(self);
            let link = Arc::clone(&island.link);
            Box::new(move || {
                lock(&me.in_flight).remove(&key);
                link.notify(
                    from,
                    Request::Complete {
                        request: id,
                        reply: Reply::Value(Ok(0)),
                    },
                );
            })
        };
        let queued =
            self.futexes
                .wait_async(addr, val, bitset, || island.user.load_u32(addr), on_wake);
        let waiter = match queued {
            Ok(w) => w,
            Err(e) => {
                lock(&self.in_flight).remove(&key);
                return Some(reply_of(Err(e)));
            }
        };
        let mut flights = lock(&self.in_flight);
        match flights.get(&key).copied() {
            // Woken already: the wake answered.
            None => None,
            Some(InFlight::Cancelled(why)) => {
                flights.remove(&key);
                drop(flights);
                // Still queued: leave, and say why. Otherwise the wake answered.
                self.futexes
                    .cancel(waiter)
                    .then(|| reply_of(Err(why.errno())))
            }
            Some(_) => {
                flights.insert(key, InFlight::FutexWait(waiter));
                None
            }
        }
    }

    /// Removes and returns the entry of `key` if its caller cancelled it before it started.
    fn take_if_cancelled(&self, key: (IslandId, u64)) -> Option<InFlight> {
        let mut flights = lock(&self.in_flight);
        match flights.get(&key) {
            Some(InFlight::Cancelled(_)) => flights.remove(&key),
            _ => None,
        }
    }

    /// A file call of island `from` on a worker thread, which a cancel interrupts.
    fn remote_file(&self, from: IslandId, id: u64, call: FileCall) -> Reply {
        let key = (from, id);
        {
            let mut flights = lock(&self.in_flight);
            if let Some(InFlight::Cancelled(why)) = flights.get(&key).copied() {
                flights.remove(&key);
                return reply_of(Err(why.errno()));
            }
            // SAFETY: pthread_self has no preconditions.
            flights.insert(key, InFlight::Blocking(unsafe { libc::pthread_self() }));
        }
        let never = Arc::new(crate::sync::Wakeup::new());
        let r = self.file(
            call,
            &Waiting {
                wakeup: &never,
                deadline: None,
                abandon: &|| None,
            },
        );
        lock(&self.in_flight).remove(&key);
        reply_of(r)
    }

    /// The caller of request `request` of island `from` gives up.
    fn cancel(&self, from: IslandId, request: u64, why: Abandon) {
        let key = (from, request);
        let mut flights = lock(&self.in_flight);
        match flights.get(&key).copied() {
            Some(InFlight::Pending) => {
                flights.insert(key, InFlight::Cancelled(why));
            }
            Some(InFlight::FutexWait(waiter)) => {
                flights.remove(&key);
                drop(flights);
                if self.futexes.cancel(waiter) {
                    if let Ok(island) = self.island() {
                        island.link.notify(
                            from,
                            Request::Complete {
                                request,
                                reply: reply_of(Err(why.errno())),
                            },
                        );
                    }
                }
            }
            Some(InFlight::Blocking(thread)) => {
                // SAFETY: the worker is alive while its entry is in the table (it removes it
                // before it moves on), and we hold the table. The kick handler changes nothing
                // on a worker: the host call returns EINTR.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            // Done already (its reply crossed the cancel), or never heard of.
            Some(InFlight::Cancelled(_)) | None => {}
        }
    }
}

/// FUTEX_WAKE_OP's atomic update of the second word; returns the comparison's result.
/// (Linux's `futex_atomic_op_inuser`: 12-bit signed arguments, a shift by the argument's low 5
/// bits, ENOSYS for an unknown operation before the word is touched, for an unknown comparison
/// after.)
fn wake_op_update(island: &Island, addr: u64, encoded: u32) -> Result<bool, Errno> {
    let op = (encoded >> 28) & 0x7;
    let shift = (encoded >> 28) & 0x8 != 0;
    let cmp = (encoded >> 24) & 0xf;
    // Sign-extend the 12-bit fields.
    let mut oparg = (((encoded >> 12) & 0xfff) << 20) as i32 >> 20;
    let cmparg = ((encoded & 0xfff) << 20) as i32 >> 20;
    if shift {
        oparg = 1i32.wrapping_shl((oparg & 31) as u32);
    }
    let oparg = oparg as u32;
    if op > 4 {
        return Err(Errno::ENOSYS);
    }
    let old = island.user.with_atomic_u32(addr, Access::Write, |w| {
        w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            Some(match op {
                0 => oparg,
                1 => v.wrapping_add(oparg),
                2 => v | oparg,
                3 => v & !oparg,
                _ => v ^ oparg,
            })
        })
    })?;
    let old = old.unwrap_or_else(|v| v) as i32;
    Ok(match cmp {
        0 => old == cmparg,
        1 => old != cmparg,
        2 => old < cmparg,
        3 => old <= cmparg,
        4 => old > cmparg,
        5 => old >= cmparg,
        _ => return Err(Errno::ENOSYS),
    })
}

impl Services for Origin {
    fn mm(&self, call: MmCall) -> SysResult {
        let island = self.island()?;
        let _serial = lock(&self.layout_serial);
        // Under the serial lock: generations grow in the order the islands apply the changes.
        let gen = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let old_brk = island.user.layout().brk_value();
        // A moving mremap copies the source here, through the protocol. Linux moves it at once:
        // a write to it lands before the move or faults after. So the other islands make it
        // read-only first (their writes fault), and no write of theirs is lost in the copy.
        let moving = mm::moving_source(&island, call);
        if let Some((start, len, prot)) = moving {
            let read_only = super::vma::Prot(prot.0 & !(libc::PROT_WRITE as u32));
            self.push_layout(
                &island,
                vec![LayoutOp::Protect {
                    start,
                    len,
                    prot: read_only,
                }],
            );
        }
        let result = match mm::apply_call(&island, &self.files, call, gen) {
            Ok(r) => r,
            Err(e) => {
                if let Some((start, len, prot)) = moving {
                    self.push_layout(&island, vec![LayoutOp::Protect { start, len, prot }]);
                }
                return Err(e);
            }
        };
        let ops = mm::layout_ops(&island, call, result, old_brk, gen);
        self.push_layout(&island, ops);
        Ok(result)
    }

    fn futex(&self, call: FutexCall, w: &Waiting<'_>) -> SysResult {
        let island = self.island()?;
        match call {
            FutexCall::Wait { addr, val, bitset } => self
                .futexes
                .wait(addr, val, bitset, || island.user.load_u32(addr), w)
                .map(|()| 0),
            call => self.futex_now(&island, call),
        }
    }

    fn file(&self, call: FileCall, _w: &Waiting<'_>) -> SysResult {
        // A blocking host call is interrupted by the kick that comes with a signal (EINTR).
        let island = self.island()?;
        match syscall::lookup(call.nr).map(|s| s.handler) {
            Some(Handler::File(serve)) => serve(
                &FileCx {
                    files: &self.files,
                    user: &island.user,
                },
                call.args,
            ),
            _ => Err(Errno::ENOSYS),
        }
    }

    fn sigaction(&self, sig: u64, new: Option<SigAction>) -> Result<SigAction, Errno> {
        self.signals.action(sig, new)
    }

    fn signal_thread(&self, tid: u32, sig: u32) -> SysResult {
        let island = self.island()?;
        let at = {
            let mut dir = lock(&self.directory);
            match dir.get_mut(&tid) {
                None => return Err(Errno::ESRCH),
                Some(Whereabouts::Moving { held, .. }) => {
                    // Posted where the thread lands (`end_move`).
                    if (1..=64).contains(&sig) {
                        *held |= 1 << (sig - 1);
                    }
                    return Ok(0);
                }
                Some(Whereabouts::At(i)) => *i,
            }
        };
        if at == ORIGIN {
            if island.post_signal(tid, sig) {
                Ok(0)
            } else {
                Err(Errno::ESRCH)
            }
        } else {
            island.link.notify(at, Request::PostSignal { tid, sig });
            Ok(0)
        }
    }

    fn locate(&self, tid: u32) -> Option<IslandId> {
        lock(&self.directory).get(&tid).map(|w| w.island())
    }

    fn clone_thread(&self, _from: IslandId, tid: u32) -> Result<IslandId, Errno> {
        let island = self.island()?;
        let n = self.placed.fetch_add(1, Ordering::Relaxed);
        let to = self.placement.island(n, self.islands);
        if to != ORIGIN {
            // The island needs the layout before its first thread runs.
            self.sync_layout_to(&island, to)?;
        }
        lock(&self.directory).insert(tid, Whereabouts::At(to));
        Ok(to)
    }

    fn begin_move(&self, tid: u32, from: IslandId, to: IslandId) -> Result<(), Errno> {
        let island = self.island()?;
        if to >= self.islands {
            return Err(Errno::EAGAIN);
        }
        if to != ORIGIN {
            self.sync_layout_to(&island, to)?;
        }
        let landed = {
            let mut dir = lock(&self.directory);
            let Some(w) = dir.get_mut(&tid) else {
                return Err(Errno::ESRCH);
            };
            let landed = match *w {
                Whereabouts::At(_) => 0,
                // It arrived there and moves on before its MoveDone came: that move ended.
                Whereabouts::Moving { to: there, held } if there == from => held,
                Whereabouts::Moving { .. } => return Err(Errno::EBUSY),
            };
            *w = Whereabouts::Moving { to, held: 0 };
            landed
        };
        // Signals held for the move that ended travel with the thread now.
        self.hold_for(tid, landed);
        Ok(())
    }

    fn end_move(&self, tid: u32, to: IslandId, at: IslandId) {
        let held = {
            let mut dir = lock(&self.directory);
            match dir.get_mut(&tid) {
                Some(w @ Whereabouts::Moving { .. }) if w.island() == to => {
                    let held = match *w {
                        Whereabouts::Moving { held, .. } => held,
                        Whereabouts::At(_) => 0,
                    };
                    *w = Whereabouts::At(at);
                    held
                }
                // A newer migration began (or this one was recorded already).
                _ => return,
            }
        };
        for sig in (1..=64u32).filter(|s| held & (1 << (s - 1)) != 0) {
            let _ = self.signal_thread(tid, sig);
        }
    }

    fn thread_control(&self, tid: u32, op: ThreadOp) -> SysResult {
        let island = self.island()?;
        match op {
            ThreadOp::Migrate(to) | ThreadOp::Propose(Some(to)) if to >= self.islands => {
                return Err(Errno::EAGAIN)
            }
            ThreadOp::Affinity(mask) if mask & super::island::all_islands(self.islands) == 0 => {
                return Err(Errno::EINVAL)
            }
            _ => {}
        }
        // The directory may name the island a thread is migrating to before it has arrived
        // there (or the one it has just left): that island answers ESRCH, and the thread, still
        // in the directory, is asked again where it is then, as Linux never fails a call on a
        // live thread. Bounded: a migration takes well under a millisecond.
        let deadline = std::time::Instant::now() + THREAD_IN_FLIGHT_PATIENCE;
        loop {
            let answer = match self.locate(tid) {
                None => return Err(Errno::ESRCH),
                Some(ORIGIN) => {
                    if island.thread_control(tid, op) {
                        Ok(0)
                    } else {
                        Err(Errno::ESRCH)
                    }
                }
                Some(at) => island
                    .link
                    .call(at, Request::ThreadControl { tid, op })
                    .map_err(|_| Errno::ESRCH)
                    .and_then(value),
            };
            match answer {
                Err(Errno::ESRCH) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                other => return other,
            }
        }
    }

    fn thread_exited(&self, tid: u32, code: i32) {
        let last = {
            let mut dir = lock(&self.directory);
            dir.remove(&tid).is_some() && dir.is_empty()
        };
        if last {
            self.exit_group(ExitStatus::Code(code));
        }
    }

    fn exit_group(&self, status: ExitStatus) {
        {
            let mut s = lock(&self.status);
            if s.is_some() {
                return;
            }
            *s = Some(status);
        }
        // Every island stops before the controller hears of the end (it then reads the counters).
        if let Ok(island) = self.island() {
            for to in (0..self.islands).filter(|&i| i != ORIGIN) {
                island.link.notify(to, Request::Exit(status));
            }
            island.stop();
        }
        (self.on_exit)(status);
    }

    fn serve(self: Arc<Self>, from: IslandId, id: u64, request: Request) -> Served {
        match request {
            Request::Mm(call) => Served::Work(Box::new(move || Some(reply_of(self.mm(call))))),
            Request::Futex(call @ FutexCall::Wait { .. }) => {
                lock(&self.in_flight).insert((from, id), InFlight::Pending);
                Served::Detached(Box::new(move || self.remote_wait(from, id, call)))
            }
            Request::Futex(call) => Served::Work(Box::new(move || {
                Some(reply_of(
                    self.island()
                        .and_then(|island| self.futex_now(&island, call)),
                ))
            })),
            Request::File(call) => {
                lock(&self.in_flight).insert((from, id), InFlight::Pending);
                // Answered directly (most file calls are short): a thread blocked in one holds its
                // link's credit meanwhile, which only matters with more blocked file calls on one
                // island than its link has credits.
                Served::Work(Box::new(move || Some(self.remote_file(from, id, call))))
            }
            Request::Clone { tid } => Served::Work(Box::new(move || {
                Some(reply_of(self.clone_thread(from, tid).map(|i| i as u64)))
            })),
            Request::MoveThread { tid, to } => Served::Work(Box::new(move || {
                Some(reply_of(self.begin_move(tid, from, to).map(|()| 0)))
            })),
            Request::MoveDone { tid, to, at } => {
                self.end_move(tid, to, at);
                Served::Now(Reply::Done)
            }
            Request::ThreadControl { tid, op } => Served::Work(Box::new(move || {
                Some(reply_of(self.thread_control(tid, op)))
            })),
            Request::SigAction { sig, new } => {
                Served::Now(Reply::Action(self.sigaction(sig, new).map_err(|e| e.0)))
            }
            Request::SignalThread { tid, sig } => {
                Served::Now(reply_of(self.signal_thread(tid, sig)))
            }
            Request::Locate { tid } => Served::Now(reply_of(
                self.locate(tid).map(|i| i as u64).ok_or(Errno::ESRCH),
            )),
            Request::ThreadExited { tid, code } => {
                self.thread_exited(tid, code);
                Served::Now(Reply::Done)
            }
            Request::ExitGroup(status) => {
                self.exit_group(status);
                Served::Now(Reply::Done)
            }
            Request::Cancel { request, why } => {
                self.cancel(from, request, why);
                Served::Now(Reply::Done)
            }
            // Requests for an island, not for the program's services.
            Request::Layout(_)
            | Request::Members { .. }
            | Request::StartThread(_)
            | Request::Migrate(_)
            | Request::PostSignal { .. }
            | Request::Complete { .. }
            | Request::Exit(_) => Served::Now(reply_of(Err(Errno::EINVAL))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_parses_and_places() {
        assert_eq!(Placement::parse("origin", 4), Ok(Placement::Origin));
        assert_eq!(
            Placement::parse("round-robin", 4),
            Ok(Placement::RoundRobin)
        );
        assert_eq!(
            Placement::parse("list:0, 2,3", 4),
            Ok(Placement::List(vec![0, 2, 3]))
        );
        assert!(Placement::parse("list:4", 4).is_err());
        assert!(Placement::parse("list:", 4).is_err());
        assert!(Placement::parse("list:x", 4).is_err());
        assert!(Placement::parse("everywhere", 4).is_err());

        let placed: Vec<_> = (0..5).map(|n| Placement::RoundRobin.island(n, 3)).collect();
        assert_eq!(
            placed,
            vec![1, 2, 0, 1, 2],
            "the main thread holds island 0 already"
        );
        let list = Placement::List(vec![3, 1]);
        let placed: Vec<_> = (0..3).map(|n| list.island(n, 4)).collect();
        assert_eq!(placed, vec![3, 1, 3]);
        assert_eq!(Placement::Origin.island(7, 4), ORIGIN);
    }
}
