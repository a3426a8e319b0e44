//! An island's service thread: the one loop that takes everything that reaches the island.
//!
//! It waits in the fabric's receiver, which also watches the island's userfaultfd and its exit
//! event, and serves: faults and coherency messages (through the island's `DsmPort`), replies to
//! the island's requests (to the waiting caller), and requests. It never blocks on guest memory
//! nor on a kernel lock, so that faults can always be served: requests that may block go to the
//! island's worker pool. Requests for the island itself are served here: layout changes (on a
//! worker: they take the layout lock), protocol membership, a thread to start, a signal to post,
//! the end of the program. Requests for the program's services go to the island's services port
//! (the origin serves them).

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

use super::errno::{Errno, ExitStatus};
use super::island::Island;
use super::link::{IslandFabric, IslandTransport};
use super::messages::{IslandId, IslandMessage, Reply, Request, ORIGIN};
use super::services::{reply_of, Served};
use super::workers::WorkerPool;
use super::{mm, vcpu_loop};
use crate::dsm::PAGE_SIZE;
use crate::fabric::{FabricError, Receiver};

/// An island's receive side, for its service thread.
pub type IslandReceiver = Receiver<IslandMessage, IslandTransport>;

/// The most worker threads an island keeps for blocking requests.
pub const MAX_WORKERS: usize = 64;

/// Starts the service thread of `island`, receiving from `fabric`.
pub fn start(island: &Arc<Island>, fabric: &IslandFabric) -> Result<(), String> {
    let mut rx = fabric.receiver(island.id).map_err(|e| e.to_string())?;
    rx.watch(island.exit_event().as_raw_fd())
        .map_err(|e| format!("cannot watch the exit event: {e}"))?;
    let mut timer = None;
    if let Some(fd) = island.dsm.fault_fd() {
        rx.watch(fd)
            .map_err(|e| format!("cannot watch the island's faults: {e}"))?;
        // The end of the holding windows (`dsm::hold`): a timer with the precision of a
        // microsecond (epoll's own timeout counts milliseconds, longer than most windows).
        let t = HoldTimer::new().map_err(|e| format!("cannot create the hold timer: {e}"))?;
        rx.watch(t.fd.as_raw_fd())
            .map_err(|e| format!("cannot watch the hold timer: {e}"))?;
        timer = Some(t);
    }
    let island = Arc::clone(island);
    let workers = WorkerPool::new(format!("island{}-worker", island.id), MAX_WORKERS);
    std::thread::Builder::new()
        .name(format!("island{}-service", island.id))
        .spawn(move || {
            run(&island, &mut rx, &workers, timer);
            workers.close();
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The timer of the holding windows, armed for the first one to end.
struct HoldTimer {
    fd: TimerFd,
    armed: Option<Instant>,
}

impl HoldTimer {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            fd: TimerFd::new()?,
            armed: None,
        })
    }

    /// Arms the timer for `deadline` (None: disarms it), unless it is armed for it already.
    /// Arming or disarming also clears an expiration not read yet.
    fn set(&mut self, deadline: Option<Instant>) -> std::io::Result<()> {
        if deadline == self.armed {
            return Ok(());
        }
        match deadline {
            Some(d) => {
                // Zero would disarm it: a window already over fires after 1 us.
                let left = d
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(1));
                self.fd.reset(left, None)?;
            }
            None => self.fd.clear()?,
        }
        self.armed = deadline;
        Ok(())
    }
}

fn run(
    island: &Arc<Island>,
    rx: &mut IslandReceiver,
    workers: &WorkerPool,
    mut timer: Option<HoldTimer>,
) {
    loop {
        if island.exiting() {
            return;
        }
        if let Err(e) = island.dsm.poll_faults().and_then(|_| read_ahead(island)) {
            return failure(island, &e.to_string());
        }
        // Holding windows (`dsm::hold`): answer what is due, wake for the next one.
        if let Err(e) = island.dsm.release_holds() {
            return failure(island, &e.to_string());
        }
        if let Some(t) = &mut timer {
            if let Err(e) = t.set(island.dsm.hold_deadline()) {
                return failure(island, &format!("the hold timer: {e}"));
            }
        }
        let (from, msg) = match rx.recv(None) {
            Ok(Some(m)) => m,
            // A fault to serve, the end of a holding window, or the end of the program.
            Ok(None) => continue,
            Err(FabricError::Shutdown) => return,
            Err(e) => return failure(island, &e.to_string()),
        };
        match msg {
            IslandMessage::Coherency(m) => {
                if let Err(e) = island.dsm.on_message(m) {
                    return failure(island, &e.to_string());
                }
            }
            IslandMessage::CoherencyRange(r) => {
                if let Err(e) = island.dsm.on_range(r) {
                    return failure(island, &e.to_string());
                }
            }
            IslandMessage::Reply { id, body } => island.link.complete(id, body),
            IslandMessage::Request { id, body, .. } => {
                request(island, workers, from, id, body);
            }
        }
    }
}

/// Asks for the pages read-ahead proposed after the faults just served: those of the faulting
/// page's own mapping, when it is coherent and readable (never beyond it). The layout is held for
/// reading meanwhile, so that no change of it slips between the check and the asking; when a
/// change holds it, the proposals are dropped (this thread must never wait for a change, which
/// may itself wait for a fault this thread serves).
fn read_ahead(island: &Island) -> Result<(), crate::dsm::DsmError> {
    let requests = island.dsm.take_read_ahead();
    if requests.is_empty() || island.exiting() {
        return Ok(());
    }
    let Some(layout) = island.user.try_layout() else {
        return Ok(());
    };
    let mut pages = Vec::new();
    for r in requests {
        let Some(vma) = layout.find(r.fault.saturating_mul(PAGE_SIZE)) else {
            continue;
        };
        if vma.kind.is_local() || !vma.prot.readable() {
            continue;
        }
        let (first, end) = (vma.start / PAGE_SIZE, vma.end / PAGE_SIZE);
        pages.extend(
            r.window
                .pages()
                .take_while(|&p| p >= first && p < end)
                .map(|p| (p, r.write)),
        );
    }
    match island.dsm.read_ahead(&pages) {
        // The program ended meanwhile: nobody needs those pages any more.
        Err(crate::dsm::DsmError::Send(FabricError::Shutdown)) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// The island cannot go on (its coherency layer failed, or its links): the program ends.
fn failure(island: &Island, why: &str) {
    crate::diag!("popvmm: island {}: {why}; the program is ended", island.id);
    island
        .services
        .exit_group(ExitStatus::Signal(libc::SIGKILL));
    island.stop();
}

/// Serves one request. Every request gets exactly one reply (the fabric's credits count on it).
fn request(island: &Arc<Island>, workers: &WorkerPool, from: IslandId, id: u64, body: Request) {
    let reply = |r: Reply| island.link.reply(from, id, r);
    match body {
        Request::Layout(ops) => {
            let island = Arc::clone(island);
            workers.run(move || {
                let r = ops
                    .iter()
                    .try_for_each(|op| mm::apply_layout_op(&island, op));
                island.link.reply(
                    from,
                    id,
                    match r {
                        Ok(()) => Reply::Done,
                        Err(e) => reply_of(Err(e)),
                    },
                );
            });
        }
        Request::Members { members } => reply(
            match island.dsm.set_members(coherency::KernelSet(members)) {
                Ok(()) => Reply::Done,
                Err(e) => {
                    island.log(1, format_args!("protocol members: {e}"));
                    reply_of(Err(super::errno::Errno::EIO))
                }
            },
        ),
        Request::StartThread(image) | Request::Migrate(image) => {
            reply(reply_of(vcpu_loop::start_thread(island, *image)))
        }
        Request::PostSignal { tid, sig } => {
            reply(Reply::Done);
            if !island.post_signal(tid, sig) {
                // The thread left (it migrates, or has just migrated): the origin knows where it
                // is, or holds the signal until it lands.
                let island = Arc::clone(island);
                workers.run(move || {
                    let _ = island.services.signal_thread(tid, sig);
                });
            }
        }
        // Done here if the thread runs here; otherwise the services find it (the origin's
        // directory).
        Request::ThreadControl { tid, op } if island.thread_control(tid, op) => reply(Reply::Done),
        // Asked by the origin, whose directory placed the thread here: it is not (in flight).
        Request::ThreadControl { .. } if island.id != ORIGIN => reply(reply_of(Err(Errno::ESRCH))),
        Request::Exit(_) => {
            island.stop();
            reply(Reply::Done);
        }
        Request::Complete {
            request,
            reply: outcome,
        } => {
            island.link.complete(request, outcome);
            reply(Reply::Done);
        }
        body => match Arc::clone(&island.services).serve(from, id, body) {
            Served::Now(r) => reply(r),
            Served::Work(work) => {
                let link = Arc::clone(&island.link);
                workers.run(move || {
                    if let Some(r) = work() {
                        link.reply(from, id, r);
                    }
                });
            }
            Served::Detached(work) => {
                reply(Reply::Queued);
                let link = Arc::clone(&island.link);
                workers.run(move || {
                    if let Some(r) = work() {
                        link.notify(
                            from,
                            Request::Complete {
                                request: id,
                                reply: r,
                            },
                        );
                    }
                });
            }
        },
    }
}
