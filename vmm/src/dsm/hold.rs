//! The holding window's timer (decision 17 of `coherency`, Mirage's Δ): the engine holds back the
//! requests for a page its island got write access to lately and asks to be called back at the
//! end of the window ([`coherency::Host::hold_until`]); the island's service thread arms a timer
//! for the earliest end ([`Dsm::hold_deadline`]) and then releases what is due
//! ([`Dsm::release_holds`]).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coherency::PageId;

use super::{Dsm, DsmError};

/// The windows that hold requests back now: (end, page, start), in ns of the island's clock.
#[derive(Debug, Default)]
pub(super) struct Holds {
    due: BTreeSet<(u64, PageId, u64)>,
}

impl Holds {
    /// The engine held back a request for `page` from `now` until `at`.
    pub(super) fn add(&mut self, page: PageId, at: u64, now: u64) {
        self.due.insert((at, page, now));
    }
}

impl Dsm {
    /// When the first holding window ends (None: none is open).
    pub fn hold_deadline(&self) -> Option<Instant> {
        let &(at, _, _) = self.holds.due.first()?;
        // Rounded up to the microsecond: the timer never fires before the window's end.
        Some(self.started + Duration::from_micros(at.div_ceil(1_000)))
    }

    /// Ends the holding windows that are due: their requests are answered. Returns how many.
    pub fn release_holds(&mut self) -> Result<usize, DsmError> {
        let now = self.now();
        let mut n = 0;
        while let Some(&(at, page, since)) = self.holds.due.first() {
            if at > now {
                break;
            }
            self.holds.due.pop_first();
            if self.engine.view(page).held_until != Some(at) {
                // A window that ended otherwise (a reset answered its requests); the page may
                // hold again since, until a later time that has an entry of its own.
                continue;
            }
            let (engine, mut host) = self.engine_and_host();
            if engine.release(page, &mut host) {
                host.stats
                    .held_ns
                    .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
                n += 1;
            }
            if let Some(e) = host.error.take() {
                return Err(e);
            }
        }
        Ok(n)
    }
}
