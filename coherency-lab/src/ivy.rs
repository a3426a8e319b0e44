//! The baseline: IVY's centralized manager (Li and Hudak, "Memory Coherence in Shared Virtual
//! Memory Systems", 1989, §3.1 with the confirmation message of the improved variant), so that both
//! protocols can be compared on the same access traces in the simulator.
//!
//! Kernel 0 manages every page: it knows the page's owner and copy set and serializes the requests
//! for one page (a request is served only after the previous one is confirmed). A read fault asks
//! the manager, which forwards to the owner, which sends the page and keeps a read-only copy. A write
//! fault asks the manager, which invalidates the copy set (each member acknowledges), then forwards
//! to the owner, which sends the page and gives ownership away. The requester confirms to the
//! manager. Like the engine, this is a pure state machine: it talks through an [`IvyHost`].

use std::collections::{BTreeMap, VecDeque};

use coherency::{Access, AccessToken, KernelId, KernelSet, Mapping, PageId};

/// The manager of every page.
pub const MANAGER: KernelId = 0;

/// IVY's messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IvyMessage<D> {
    /// Requester → manager: read fault.
    ReadRequest { page: PageId, from: KernelId },
    /// Requester → manager: write fault.
    WriteRequest { page: PageId, from: KernelId },
    /// Manager → owner: send a read copy to `to`.
    ReadForward { page: PageId, to: KernelId },
    /// Manager → owner: send the page and ownership to `to`.
    WriteForward { page: PageId, to: KernelId },
    /// Owner → requester: a read copy.
    ReadReply { page: PageId, data: D },
    /// Owner → requester: the page, with ownership.
    WriteReply { page: PageId, data: D },
    /// Manager → copy holder: drop your copy.
    Invalidate { page: PageId },
    /// Copy holder → manager.
    InvalidateAck { page: PageId, from: KernelId },
    /// Requester → manager: the request is done; the next one for this page may go.
    Confirm { page: PageId },
}

impl<D> IvyMessage<D> {
    pub fn page(&self) -> PageId {
        match self {
            IvyMessage::ReadRequest { page, .. }
            | IvyMessage::WriteRequest { page, .. }
            | IvyMessage::ReadForward { page, .. }
            | IvyMessage::WriteForward { page, .. }
            | IvyMessage::ReadReply { page, .. }
            | IvyMessage::WriteReply { page, .. }
            | IvyMessage::Invalidate { page }
            | IvyMessage::InvalidateAck { page, .. }
            | IvyMessage::Confirm { page } => *page,
        }
    }

    /// The message's type, without its payload: for counters.
    pub fn message_type(&self) -> IvyType {
        match self {
            IvyMessage::ReadRequest { .. } => IvyType::ReadRequest,
            IvyMessage::WriteRequest { .. } => IvyType::WriteRequest,
            IvyMessage::ReadForward { .. } => IvyType::ReadForward,
            IvyMessage::WriteForward { .. } => IvyType::WriteForward,
            IvyMessage::ReadReply { .. } => IvyType::ReadReply,
            IvyMessage::WriteReply { .. } => IvyType::WriteReply,
            IvyMessage::Invalidate { .. } => IvyType::Invalidate,
            IvyMessage::InvalidateAck { .. } => IvyType::InvalidateAck,
            IvyMessage::Confirm { .. } => IvyType::Confirm,
        }
    }

    /// The message's type name, for counters.
    pub fn type_name(&self) -> &'static str {
        self.message_type().name()
    }
}

/// IVY's message types, without their payload (as [`coherency::MessageType`] for Popcorn's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IvyType {
    ReadRequest,
    WriteRequest,
    ReadForward,
    WriteForward,
    ReadReply,
    WriteReply,
    Invalidate,
    InvalidateAck,
    Confirm,
}

impl IvyType {
    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            IvyType::ReadRequest => "read_request",
            IvyType::WriteRequest => "write_request",
            IvyType::ReadForward => "read_forward",
            IvyType::WriteForward => "write_forward",
            IvyType::ReadReply => "read_reply",
            IvyType::WriteReply => "write_reply",
            IvyType::Invalidate => "invalidate",
            IvyType::InvalidateAck => "invalidate_ack",
            IvyType::Confirm => "confirm",
        }
    }
}

/// What an IVY node asks of its kernel (the same duties as [`coherency::Host`]).
pub trait IvyHost<D> {
    fn send(&mut self, to: KernelId, msg: IvyMessage<D>);
    fn read_page(&mut self, page: PageId) -> D;
    /// Installs `data` (`Some`) or changes the protection of the present copy (`None`).
    fn map(&mut self, page: PageId, data: Option<D>, mapping: Mapping);
    fn complete(&mut self, page: PageId, token: AccessToken, access: Access);
}

#[derive(Clone, Debug, Default)]
struct ManagerEntry {
    owner: KernelId,
    copyset: KernelSet,
    busy: bool,
    queue: VecDeque<(KernelId, Access)>,
    /// A write request waiting for invalidation acknowledgements: the requester, the copies not
    /// yet acknowledged, and the owner to forward to once they all are.
    invalidating: Option<(KernelId, KernelSet, KernelId)>,
}

#[derive(Clone, Debug, Default)]
struct NodePage {
    mapping: Mapping,
    owner: bool,
    /// A request of ours is out.
    requested: bool,
    waiting: Vec<(AccessToken, Access)>,
}

/// One kernel's IVY state (kernel 0 is also the manager).
#[derive(Clone, Debug)]
pub struct IvyNode {
    me: KernelId,
    pages: BTreeMap<PageId, NodePage>,
    managed: BTreeMap<PageId, ManagerEntry>,
}

impl IvyNode {
    pub fn new(me: KernelId) -> Self {
        IvyNode {
            me,
            pages: BTreeMap::new(),
            managed: BTreeMap::new(),
        }
    }

    /// Kernel 0 owns every page at the start, writable (as the origin does in popvmm).
    fn page(&mut self, page: PageId) -> &mut NodePage {
        let me = self.me;
        self.pages.entry(page).or_insert_with(|| NodePage {
            mapping: if me == MANAGER {
                Mapping::ReadWrite
            } else {
                Mapping::None
            },
            owner: me == MANAGER,
            requested: false,
            waiting: Vec::new(),
        })
    }

    pub fn mapping(&self, page: PageId) -> Mapping {
        match self.pages.get(&page) {
            Some(p) => p.mapping,
            None if self.me == MANAGER => Mapping::ReadWrite,
            None => Mapping::None,
        }
    }

    /// A thread accesses `page`; `true` if it may proceed at once (else [`IvyHost::complete`] later).
    pub fn access<D: Clone, H: IvyHost<D>>(
        &mut self,
        page: PageId,
        access: Access,
        token: AccessToken,
        host: &mut H,
    ) -> bool {
        let p = self.page(page);
        if p.mapping.permits(access) {
            return true;
        }
        p.waiting.push((token, access));
        self.request(page, host);
        false
    }

    fn request<D: Clone, H: IvyHost<D>>(&mut self, page: PageId, host: &mut H) {
        let me = self.me;
        let p = self.page(page);
        if p.requested || p.waiting.is_empty() {
            return;
        }
        let write = p.waiting.iter().any(|(_, a)| *a == Access::Write);
        p.requested = true;
        let msg = if write {
            IvyMessage::WriteRequest { page, from: me }
        } else {
            IvyMessage::ReadRequest { page, from: me }
        };
        self.send(MANAGER, msg, host);
    }

    /// Messages to ourselves are handled at once, without the network.
    fn send<D: Clone, H: IvyHost<D>>(&mut self, to: KernelId, msg: IvyMessage<D>, host: &mut H) {
        if to == self.me {
            self.handle(msg, host);
        } else {
            host.send(to, msg);
        }
    }

    pub fn handle<D: Clone, H: IvyHost<D>>(&mut self, msg: IvyMessage<D>, host: &mut H) {
        match msg {
            IvyMessage::ReadRequest { page, from } => {
                self.manager_request(page, from, Access::Read, host)
            }
            IvyMessage::WriteRequest { page, from } => {
                self.manager_request(page, from, Access::Write, host)
            }
            IvyMessage::Confirm { page } => {
                let entry = self.managed.entry(page).or_default();
                entry.busy = false;
                self.manager_next(page, host);
            }
            IvyMessage::InvalidateAck { page, from } => {
                let entry = self.managed.entry(page).or_default();
                let Some((to, mut left, old_owner)) = entry.invalidating.take() else {
                    return;
                };
                left.remove(from);
                if left.is_empty() {
                    self.send(old_owner, IvyMessage::WriteForward { page, to }, host);
                } else {
                    entry.invalidating = Some((to, left, old_owner));
                }
            }
            IvyMessage::ReadForward { page, to } => {
                // The owner keeps a read-only copy.
                let p = self.page(page);
                if p.mapping == Mapping::ReadWrite {
                    p.mapping = Mapping::ReadOnly;
                    host.map(page, None, Mapping::ReadOnly);
                }
                let data = host.read_page(page);
                self.send(to, IvyMessage::ReadReply { page, data }, host);
            }
            IvyMessage::WriteForward { page, to } => {
                let data = host.read_page(page);
                let me = self.me;
                let p = self.page(page);
                if to == me {
                    // Upgrade of our own copy.
                    p.mapping = Mapping::ReadWrite;
                    host.map(page, None, Mapping::ReadWrite);
                    self.granted(page, host);
                    return;
                }
                p.owner = false;
                p.mapping = Mapping::None;
                host.map(page, None, Mapping::None);
                self.send(to, IvyMessage::WriteReply { page, data }, host);
            }
            IvyMessage::ReadReply { page, data } => {
                let p = self.page(page);
                p.mapping = Mapping::ReadOnly;
                host.map(page, Some(data), Mapping::ReadOnly);
                self.granted(page, host);
            }
            IvyMessage::WriteReply { page, data } => {
                let p = self.page(page);
                p.mapping = Mapping::ReadWrite;
                p.owner = true;
                host.map(page, Some(data), Mapping::ReadWrite);
                self.granted(page, host);
            }
            IvyMessage::Invalidate { page } => {
                let me = self.me;
                let p = self.page(page);
                if !p.owner && p.mapping != Mapping::None {
                    p.mapping = Mapping::None;
                    host.map(page, None, Mapping::None);
                }
                self.send(MANAGER, IvyMessage::InvalidateAck { page, from: me }, host);
            }
        }
    }

    /// Our request was served: complete what the mapping allows, confirm, ask again if needed.
    fn granted<D: Clone, H: IvyHost<D>>(&mut self, page: PageId, host: &mut H) {
        let p = self.page(page);
        p.requested = false;
        let mapping = p.mapping;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            p.waiting.drain(..).partition(|(_, a)| mapping.permits(*a));
        p.waiting = waiting;
        for (token, access) in ready {
            host.complete(page, token, access);
        }
        self.send(MANAGER, IvyMessage::Confirm { page }, host);
        self.request(page, host);
    }

    fn manager_request<D: Clone, H: IvyHost<D>>(
        &mut self,
        page: PageId,
        from: KernelId,
        access: Access,
        host: &mut H,
    ) {
        self.managed
            .entry(page)
            .or_default()
            .queue
            .push_back((from, access));
        self.manager_next(page, host);
    }

    fn manager_next<D: Clone, H: IvyHost<D>>(&mut self, page: PageId, host: &mut H) {
        let entry = self.managed.entry(page).or_default();
        if entry.busy {
            return;
        }
        let Some((from, access)) = entry.queue.pop_front() else {
            return;
        };
        entry.busy = true;
        let owner = entry.owner;
        match access {
            Access::Read => {
                entry.copyset.insert(from);
                self.send(owner, IvyMessage::ReadForward { page, to: from }, host);
            }
            Access::Write => {
                let targets = entry.copyset.without(from).without(owner);
                entry.copyset = KernelSet::EMPTY;
                entry.owner = from;
                if targets.is_empty() {
                    self.send(owner, IvyMessage::WriteForward { page, to: from }, host);
                } else {
                    entry.invalidating = Some((from, targets, owner));
                    for k in targets.iter() {
                        self.send(k, IvyMessage::Invalidate { page }, host);
                    }
                }
            }
        }
    }
}
