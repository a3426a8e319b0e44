//! The request/reply layer between island kernels, over the fabric.
//!
//! Each island has one [`Link`]: its end of the fabric's links and the table of its outstanding
//! requests. A caller sends a request and sleeps on a [`Wakeup`] until the island's service loop
//! takes the reply off the fabric and completes it ([`Link::complete`]); a caller that gives up
//! (a signal, a timeout) sends a `Cancel` and keeps waiting for the one reply, which the other
//! side decides. When the program ends, [`Link::shutdown`] ends every wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::messages::{IslandId, IslandMessage, Reply, Request};
use super::wait::{Abandon, Waiting};
use crate::fabric::{Fabric, FabricError, FaultTransport, Sender};
use crate::sync::{lock, Wakeup};

/// The links between the islands of one program: shared rings, behind the fault-injecting
/// wrapper (a pass-through unless `POPVMM_FAULTS` asks for faults: `fabric/faults.rs`).
pub type IslandTransport = FaultTransport;

/// The messaging layer between the islands of one program.
pub type IslandFabric = Fabric<IslandMessage, IslandTransport>;

/// A sender on an island's links.
pub type IslandSender = Sender<IslandMessage, IslandTransport>;

/// Errors of a request to another island.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("sending to island {to}: {source}")]
    Send { to: IslandId, source: FabricError },
    #[error("the program is ending")]
    Shutdown,
}

/// One outstanding request: where its reply lands and whom to wake.
#[derive(Debug)]
struct Pending {
    reply: Mutex<Option<Reply>>,
    wakeup: Arc<Wakeup>,
}

/// An island's end of the links, and its outstanding requests.
#[derive(Debug)]
pub struct Link {
    island: IslandId,
    tx: IslandSender,
    fabric: Arc<IslandFabric>,
    pending: Mutex<HashMap<u64, Arc<Pending>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

/// What ended one wait for a reply.
enum Outcome {
    Reply(Reply),
    Shutdown,
    GiveUp(Abandon),
}

impl Link {
    pub fn new(island: IslandId, fabric: Arc<IslandFabric>) -> Result<Self, FabricError> {
        let tx = fabric.sender(island)?;
        Ok(Self {
            island,
            tx,
            fabric,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        })
    }

    pub fn island(&self) -> IslandId {
        self.island
    }

    /// Every island of the program.
    pub fn islands(&self) -> usize {
        self.fabric.islands()
    }

    pub fn fabric(&self) -> &Arc<IslandFabric> {
        &self.fabric
    }

    /// A sender on this island's links (for the coherency layer's outbox).
    pub fn sender(&self) -> IslandSender {
        self.tx.clone()
    }

    /// Sends `body` to island `to` and waits for the reply.
    pub fn call(&self, to: IslandId, body: Request) -> Result<Reply, LinkError> {
        let wakeup = Arc::new(Wakeup::new());
        self.call_waiting(
            to,
            body,
            &Waiting {
                wakeup: &wakeup,
                deadline: None,
                abandon: &|| None,
            },
        )
    }

    /// Sends `body` to island `to` and waits for the reply as `w` says: when the caller gives up
    /// (its deadline, or `abandon`), a `Cancel` goes to `to` (once) and the wait goes on for the
    /// reply, which then says whether the request was done or abandoned.
    pub fn call_waiting(
        &self,
        to: IslandId,
        body: Request,
        w: &Waiting<'_>,
    ) -> Result<Reply, LinkError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(LinkError::Shutdown);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Pending {
            reply: Mutex::new(None),
            wakeup: Arc::clone(w.wakeup),
        });
        lock(&self.pending).insert(id, Arc::clone(&slot));
        let msg = IslandMessage::Request {
            id,
            from: self.island,
            body,
        };
        // A request: this waits while the link has no credit free (backpressure).
        if let Err(source) = self.tx.send(to, &msg) {
            lock(&self.pending).remove(&id);
            return Err(LinkError::Send { to, source });
        }
        let mut cancelled = false;
        loop {
            let deadline = if cancelled { None } else { w.deadline };
            let got = w.wakeup.wait_for(deadline, || {
                if let Some(r) = lock(&slot.reply).take() {
                    return Some(Outcome::Reply(r));
                }
                if self.closed.load(Ordering::SeqCst) {
                    return Some(Outcome::Shutdown);
                }
                if !cancelled {
                    if let Some(why) = (w.abandon)() {
                        return Some(Outcome::GiveUp(why));
                    }
                }
                None
            });
            let why = match got {
                Some(Outcome::Reply(r)) => {
                    lock(&self.pending).remove(&id);
                    return Ok(r);
                }
                Some(Outcome::Shutdown) => {
                    lock(&self.pending).remove(&id);
                    return Err(LinkError::Shutdown);
                }
                Some(Outcome::GiveUp(why)) => why,
                // Only a wait with a deadline ends without an outcome.
                None => Abandon::TimedOut,
            };
            self.cancel(to, id, why);
            cancelled = true;
        }
    }

    fn cancel(&self, to: IslandId, request: u64, why: Abandon) {
        self.notify(to, Request::Cancel { request, why });
    }

    /// Sends a request without waiting for its reply (which is dropped when it comes: every
    /// request gets one, as the fabric's credits need). Never waits for a credit.
    pub fn notify(&self, to: IslandId, body: Request) {
        let body = match body {
            Request::Complete { request, reply } => Request::Complete {
                request,
                reply: reply.sendable(),
            },
            body => body,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = IslandMessage::Request {
            id,
            from: self.island,
            body,
        };
        let _ = self.tx.post(to, &msg);
    }

    /// The service loop hands over a reply that came in (a `Queued` one says the outcome comes
    /// later: the caller keeps waiting).
    pub fn complete(&self, id: u64, reply: Reply) {
        if reply == Reply::Queued {
            return;
        }
        if let Some(slot) = lock(&self.pending).get(&id).cloned() {
            *lock(&slot.reply) = Some(reply);
            slot.wakeup.notify();
        }
    }

    /// Answers request `id` of island `to` (never waits). An errno the wire cannot carry goes as
    /// EIO ([`Reply::sendable`]): a reply that failed to encode would be lost, and its caller
    /// would wait for ever.
    pub fn reply(&self, to: IslandId, id: u64, body: Reply) {
        let body = body.sendable();
        let _ = self.tx.post(to, &IslandMessage::Reply { id, body });
    }

    /// Posts a coherency message (never waits: the service loop sends these).
    pub fn post(&self, to: IslandId, msg: &IslandMessage) -> Result<(), FabricError> {
        self.tx.post(to, msg)
    }

    /// The program is ending: every wait for a reply ends with [`LinkError::Shutdown`].
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let waiting: Vec<Arc<Pending>> = lock(&self.pending).values().cloned().collect();
        for p in waiting {
            p.wakeup.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::fabric::{FabricConfig, RingTransport};
    use crate::kernel::errno::{ExitStatus, ERRNO_RANGE};

    /// A liveness watchdog, not a performance check: a lost reply hangs its caller for ever.
    const WATCHDOG: Duration = Duration::from_secs(60);

    #[test]
    fn an_errno_the_wire_refuses_still_answers_the_caller() {
        // Regression: a reply (or a queued request's outcome) with an errno the wire refuses
        // (0, negative, 4096 and above) failed to encode, was dropped, and its caller waited
        // for ever. It now arrives as EIO; errnos in range arrive unchanged.
        let errnos = [0, -1, 4096, 65535, 65536, i32::MIN, libc::ENOENT, 4095];
        let config = FabricConfig::default();
        let rings = RingTransport::new(2, config.ring_slots, config.poll).expect("rings");
        let fabric = Arc::new(
            IslandFabric::with_transport(FaultTransport::new(rings, None), config).expect("fabric"),
        );
        let links: Vec<Arc<Link>> = (0..2)
            .map(|i| Arc::new(Link::new(i, Arc::clone(&fabric)).expect("link")))
            .collect();
        let mut loops = Vec::new();
        for (me, link) in links.iter().enumerate() {
            let mut rx = fabric.receiver(me).expect("receiver");
            let link = Arc::clone(link);
            loops.push(thread::spawn(move || {
                let mut served = 0;
                loop {
                    match rx.recv(None) {
                        Ok(Some((_, IslandMessage::Reply { id, body }))) => link.complete(id, body),
                        Ok(Some((
                            from,
                            IslandMessage::Request {
                                id,
                                body: Request::Complete { request, reply },
                                ..
                            },
                        ))) => {
                            link.complete(request, reply);
                            link.reply(from, id, Reply::Done);
                        }
                        // Island 1 answers the k-th request with the k-th errno: at once for
                        // even k, for odd k queued and then in a Complete request.
                        Ok(Some((from, IslandMessage::Request { id, .. }))) => {
                            let Some(&e) = errnos.get(served / 2) else {
                                panic!("more requests than errnos");
                            };
                            if served % 2 == 0 {
                                link.reply(from, id, Reply::Value(Err(e)));
                            } else {
                                link.reply(from, id, Reply::Queued);
                                let reply = Reply::Value(Err(e));
                                link.notify(from, Request::Complete { request: id, reply });
                            }
                            served += 1;
                        }
                        Ok(_) => {}
                        Err(FabricError::Shutdown) => break,
                        Err(e) => panic!("island {me}: {e}"),
                    }
                }
            }));
        }
        let (done, results) = mpsc::channel();
        let caller = Arc::clone(&links[0]);
        let calls = thread::spawn(move || {
            for _ in 0..errnos.len() * 2 {
                let r = caller.call(1, Request::Exit(ExitStatus::Code(0)));
                done.send(r.map_err(|e| e.to_string())).expect("results");
            }
        });
        let mut got = Vec::new();
        for _ in 0..errnos.len() * 2 {
            match results.recv_timeout(WATCHDOG) {
                Ok(r) => got.push(r),
                Err(_) => {
                    fabric.shutdown();
                    panic!("a reply never came (dropped?); got {got:?}");
                }
            }
        }
        fabric.shutdown();
        calls.join().expect("caller");
        for l in loops {
            l.join().expect("receive loop");
        }
        let want: Vec<Result<Reply, String>> = errnos
            .iter()
            .flat_map(|&e| {
                let e = if ERRNO_RANGE.contains(&e) {
                    e
                } else {
                    libc::EIO
                };
                [Ok(Reply::Value(Err(e))), Ok(Reply::Value(Err(e)))]
            })
            .collect();
        assert_eq!(got, want);
    }
}
