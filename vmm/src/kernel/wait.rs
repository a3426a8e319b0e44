//! How a thread of the island kernel waits: on its wake-up, until a deadline, unless it gives up
//! (a signal for it, the end of the program). Futex waits and waits for another island's reply
//! share this, so a signal or the program's end wakes either at once.

use std::sync::Arc;
use std::time::Instant;

use super::errno::Errno;
use crate::sync::Wakeup;

/// Why a wait ended without a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandon {
    /// A signal for the waiting thread (EINTR).
    Interrupted,
    /// Its timeout passed (ETIMEDOUT).
    TimedOut,
}

impl Abandon {
    pub fn errno(self) -> Errno {
        match self {
            Abandon::Interrupted => Errno::EINTR,
            Abandon::TimedOut => Errno::ETIMEDOUT,
        }
    }
}

/// How a caller waits for its reply: on whose wake-up, until when, and when it gives up.
pub struct Waiting<'a> {
    /// Notified when the reply comes (and by whatever `abandon` watches: signals).
    pub wakeup: &'a Arc<Wakeup>,
    /// When the caller gives up with [`Abandon::TimedOut`].
    pub deadline: Option<Instant>,
    /// Some(reason) when the caller gives up (a signal for the calling thread).
    pub abandon: &'a dyn Fn() -> Option<Abandon>,
}

impl std::fmt::Debug for Waiting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("deadline", &self.deadline)
            .finish()
    }
}
