//! A program thread's kernel-side state: its vCPU, its signal mask and alternate stack, its
//! clear-child-tid and robust list, and the status it shares with the rest of the island kernel
//! (what it is doing, the signals pending for it, how to wake it). The vCPU loop that runs it is
//! `vcpu_loop.rs`.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use super::messages::ThreadImage;
use super::wait::Abandon;
use crate::kvm::Vcpu;
use crate::sync::Wakeup;

/// What a thread is doing, for the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    Running = 0,
    InKernel = 1,
    Blocked = 2,
    Exited = 3,
}

impl ThreadState {
    pub fn name(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::InKernel => "syscall",
            ThreadState::Blocked => "blocked",
            ThreadState::Exited => "exited",
        }
    }
}

/// Per-thread status shared with the rest of the island kernel (lock-free updates from the vCPU
/// thread): the control socket reads it, signal senders mark signals pending and wake the thread.
#[derive(Debug)]
pub struct ThreadStatus {
    pub tid: u32,
    /// The vCPU running it on its island.
    pub vcpu: AtomicU64,
    state: AtomicU8,
    /// rip at the last exit to the island kernel.
    rip: AtomicU64,
    pub syscalls: AtomicU64,
    /// Signals sent to this thread and not delivered yet (bit n-1 for signal n).
    pub pending: AtomicU64,
    /// The host thread (pthread_t) running this thread's vCPU, to kick it; 0 before it starts.
    pub host_thread: AtomicU64,
    /// Wakes the thread wherever it waits in the island kernel (futex, reply, sleep).
    pub wakeup: Arc<Wakeup>,
    /// The island proposed for its next migration (popcorn_propose_migration), -1: none.
    proposed: AtomicI32,
    /// A migration asked from outside the thread (control socket, another thread's affinity
    /// call): the island to move to at the next clean point, -1: none.
    migrate_to: AtomicI32,
    /// Migrations so far.
    pub migrations: AtomicU32,
    /// The islands it may run on (sched_setaffinity), bit i for island i.
    pub affinity: AtomicU64,
}

impl ThreadStatus {
    /// The status of the thread of `image`, as it starts on an island.
    pub fn from_image(image: &ThreadImage) -> Self {
        let s = Self {
            tid: image.tid,
            vcpu: AtomicU64::new(0),
            state: AtomicU8::new(ThreadState::Running as u8),
            rip: AtomicU64::new(0),
            syscalls: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            host_thread: AtomicU64::new(0),
            wakeup: Arc::new(Wakeup::new()),
            proposed: AtomicI32::new(-1),
            migrate_to: AtomicI32::new(-1),
            migrations: AtomicU32::new(image.migrations),
            affinity: AtomicU64::new(image.affinity),
        };
        // Where it will start: what /threads shows until it first enters the island kernel.
        s.set_rip(image.regs.rip);
        s.pending.store(image.pending, Ordering::SeqCst);
        s.set_proposed(image.proposed);
        s
    }

    pub fn proposed(&self) -> Option<usize> {
        usize::try_from(self.proposed.load(Ordering::SeqCst)).ok()
    }

    pub fn set_proposed(&self, island: Option<usize>) {
        self.proposed
            .store(island.map_or(-1, |i| i as i32), Ordering::SeqCst);
    }

    /// Asks the thread to move to `island` at its next clean point.
    pub fn request_migration(&self, island: usize) {
        self.migrate_to.store(island as i32, Ordering::SeqCst);
    }

    /// The island a migration was asked to, if any (and clears the request).
    pub fn take_migration(&self) -> Option<usize> {
        usize::try_from(self.migrate_to.swap(-1, Ordering::SeqCst)).ok()
    }

    /// Whether a migration was asked from outside.
    pub fn migration_requested(&self) -> bool {
        self.migrate_to.load(Ordering::SeqCst) >= 0
    }

    pub fn set(&self, state: ThreadState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn set_rip(&self, rip: u64) {
        self.rip.store(rip, Ordering::Relaxed);
    }

    pub fn state(&self) -> ThreadState {
        match self.state.load(Ordering::Relaxed) {
            0 => ThreadState::Running,
            1 => ThreadState::InKernel,
            2 => ThreadState::Blocked,
            _ => ThreadState::Exited,
        }
    }

    pub fn rip(&self) -> u64 {
        self.rip.load(Ordering::Relaxed)
    }
}

/// A program thread and its vCPU.
#[derive(Debug)]
pub struct Thread {
    pub tid: u32,
    pub vcpu: Vcpu,
    pub status: Arc<ThreadStatus>,
    pub clear_child_tid: u64,
    pub robust_list: u64,
    pub sigmask: u64,
    /// The sigaltstack record (stack_t: sp, flags, size).
    pub altstack: (u64, u32, u64),
    /// fs base set by this system call (arch_prctl), applied on return to user mode.
    pub new_fs_base: Option<u64>,
}

impl Thread {
    /// The thread of `image` on `vcpu`, with its `status` (already registered on the island).
    pub fn from_image(vcpu: Vcpu, status: Arc<ThreadStatus>, image: &ThreadImage) -> Self {
        status.vcpu.store(vcpu.id(), Ordering::Relaxed);
        Self {
            tid: image.tid,
            vcpu,
            status,
            clear_child_tid: image.clear_child_tid,
            robust_list: image.robust_list,
            sigmask: image.sigmask,
            altstack: image.altstack,
            new_fs_base: None,
        }
    }

    /// The lowest pending signal this thread does not block.
    pub fn next_deliverable(&self) -> Option<u64> {
        let d = self.status.pending.load(Ordering::SeqCst) & !self.sigmask;
        (d != 0).then(|| u64::from(d.trailing_zeros()) + 1)
    }

    /// Whether a signal is pending and not blocked (a blocking call must return EINTR).
    pub fn signal_deliverable(&self) -> bool {
        self.next_deliverable().is_some()
    }

    /// Why a blocking call of this thread gives up now, if it does: a deliverable signal.
    pub fn abandon(&self) -> Option<Abandon> {
        self.signal_deliverable().then_some(Abandon::Interrupted)
    }
}
