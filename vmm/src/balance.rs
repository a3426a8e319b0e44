//! The sharing balancer (`popvmm launch --balance sharing`): moves threads that write-share pages
//! onto the same island, the way GiantVM's DSM-aware scheduler does.
//!
//! Every period the program's controller asks each island for the pages it faulted on and the
//! messages each cost it ([`Dsm::traffic_all`](crate::dsm::Dsm::traffic_all)), takes the change
//! since the last period, and charges every page that two or more islands wrote in that period to
//! each pair of them. The pair that cost the most, above a threshold, is merged: the threads of
//! the island with fewer of them migrate to the other one (a thread moved less than
//! [`COOLDOWN`] ago stays). What it cannot do: it sees islands, not threads (the faults of an
//! island are not told apart by thread), so the threads of an island move together; and it never
//! spreads threads out again, since islands here share one machine's cores (a real deployment
//! would cap the threads per island).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use coherency::PageId;

use crate::dsm::PageTraffic;

/// How often the balancer looks.
pub const PERIOD: Duration = Duration::from_millis(50);
/// Messages a pair of islands must cost in one period, on pages both wrote, to be merged.
pub const THRESHOLD: u64 = 64;
/// A thread the balancer moved stays where it is for this long.
pub const COOLDOWN: Duration = Duration::from_millis(500);

/// What one island's coherency layer counted for one page so far: write faults and messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCost {
    pub writes: u64,
    pub messages: u64,
}

impl From<&PageTraffic> for PageCost {
    fn from(t: &PageTraffic) -> PageCost {
        PageCost {
            writes: t.write_faults,
            messages: t.messages(),
        }
    }
}

/// The balancer's memory between periods.
#[derive(Debug, Default)]
pub struct Balancer {
    /// Per island: each page's counts at the last look.
    last: Vec<HashMap<PageId, PageCost>>,
    /// When each thread was last moved by the balancer.
    moved: HashMap<u32, Instant>,
    /// Threads moved so far.
    pub migrations: u64,
}

/// One decision: move these threads to island `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub to: usize,
    pub tids: Vec<u32>,
}

impl Balancer {
    /// Takes this period's counts (per island: every page's counts so far) and the live threads
    /// of each island; returns the threads to move, if a pair of islands write-shared enough.
    pub fn tick(
        &mut self,
        now: Instant,
        counts: Vec<HashMap<PageId, PageCost>>,
        threads: &[Vec<u32>],
    ) -> Option<Move> {
        let islands = counts.len();
        self.last.resize_with(islands, HashMap::new);
        // This period's writes and messages, by page and island.
        let mut pages: BTreeMap<PageId, Vec<(usize, PageCost)>> = BTreeMap::new();
        for (island, now_counts) in counts.iter().enumerate() {
            for (&page, c) in now_counts {
                let before = self.last[island].get(&page).copied().unwrap_or_default();
                let delta = PageCost {
                    writes: c.writes.saturating_sub(before.writes),
                    messages: c.messages.saturating_sub(before.messages),
                };
                if delta != PageCost::default() {
                    pages.entry(page).or_default().push((island, delta));
                }
            }
        }
        self.last = counts;
        let shares = pair_costs(islands, pages.values());
        let (a, b) = costliest_pair(&shares, THRESHOLD)?;
        // The island with fewer threads empties into the other (ties: into the lower id).
        let (from, to) = if threads[b].len() <= threads[a].len() {
            (b, a)
        } else {
            (a, b)
        };
        self.moved
            .retain(|_, at| now.duration_since(*at) < COOLDOWN);
        let tids: Vec<u32> = threads[from]
            .iter()
            .copied()
            .filter(|t| !self.moved.contains_key(t))
            .collect();
        if tids.is_empty() {
            return None;
        }
        for &t in &tids {
            self.moved.insert(t, now);
        }
        self.migrations += tids.len() as u64;
        Some(Move { to, tids })
    }
}

/// What each pair of islands (a < b) cost in messages on pages both wrote, from each page's
/// per-island changes of one period.
pub fn pair_costs<'a>(
    islands: usize,
    pages: impl Iterator<Item = &'a Vec<(usize, PageCost)>>,
) -> Vec<Vec<u64>> {
    let mut shares = vec![vec![0u64; islands]; islands];
    for per_island in pages {
        let writers: Vec<usize> = per_island
            .iter()
            .filter(|(_, c)| c.writes > 0)
            .map(|&(i, _)| i)
            .collect();
        if writers.len() < 2 {
            continue;
        }
        let cost: u64 = per_island.iter().map(|(_, c)| c.messages).sum();
        for (n, &a) in writers.iter().enumerate() {
            for &b in &writers[n + 1..] {
                let (lo, hi) = (a.min(b), a.max(b));
                shares[lo][hi] += cost;
            }
        }
    }
    shares
}

/// The pair (a < b) that cost the most, if it reached `threshold`.
pub fn costliest_pair(shares: &[Vec<u64>], threshold: u64) -> Option<(usize, usize)> {
    let mut best: Option<(u64, usize, usize)> = None;
    for (a, row) in shares.iter().enumerate() {
        for (b, &cost) in row.iter().enumerate().skip(a + 1) {
            if cost >= threshold && best.is_none_or(|(c, _, _)| cost > c) {
                best = Some((cost, a, b));
            }
        }
    }
    best.map(|(_, a, b)| (a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(PageId, u64, u64)]) -> HashMap<PageId, PageCost> {
        entries
            .iter()
            .map(|&(p, writes, messages)| (p, PageCost { writes, messages }))
            .collect()
    }

    #[test]
    fn a_page_two_islands_write_is_charged_to_the_pair() {
        let per_page = [
            vec![
                (
                    0,
                    PageCost {
                        writes: 3,
                        messages: 40,
                    },
                ),
                (
                    2,
                    PageCost {
                        writes: 1,
                        messages: 50,
                    },
                ),
            ],
            // Read by 1 and written by 3 alone: no write-sharing.
            vec![
                (
                    1,
                    PageCost {
                        writes: 0,
                        messages: 500,
                    },
                ),
                (
                    3,
                    PageCost {
                        writes: 9,
                        messages: 500,
                    },
                ),
            ],
        ];
        let shares = pair_costs(4, per_page.iter());
        assert_eq!(shares[0][2], 90);
        assert_eq!(shares.iter().flatten().sum::<u64>(), 90);
        assert_eq!(costliest_pair(&shares, 64), Some((0, 2)));
        assert_eq!(costliest_pair(&shares, 91), None);
    }

    #[test]
    fn the_smaller_island_moves_once_and_cools_down() {
        let mut b = Balancer::default();
        let t0 = Instant::now();
        let threads = vec![vec![1, 5], vec![2]];
        // First look: everything so far counts (a page both islands wrote, 200 messages).
        let first = b.tick(
            t0,
            vec![counts(&[(7, 10, 100)]), counts(&[(7, 10, 100)])],
            &threads,
        );
        assert_eq!(
            first,
            Some(Move {
                to: 0,
                tids: vec![2]
            })
        );
        // Nothing changed since: no move.
        let t1 = t0 + PERIOD;
        assert_eq!(
            b.tick(
                t1,
                vec![counts(&[(7, 10, 100)]), counts(&[(7, 10, 100)])],
                &threads
            ),
            None
        );
        // More sharing while thread 2 is cooling down: it stays.
        let t2 = t1 + PERIOD;
        assert_eq!(
            b.tick(
                t2,
                vec![counts(&[(7, 20, 200)]), counts(&[(7, 20, 200)])],
                &threads
            ),
            None
        );
        // After the cooldown it may move again.
        let t3 = t0 + COOLDOWN + PERIOD;
        assert_eq!(
            b.tick(
                t3,
                vec![counts(&[(7, 30, 300)]), counts(&[(7, 30, 300)])],
                &threads
            )
            .map(|m| m.tids),
            Some(vec![2])
        );
        assert_eq!(b.migrations, 2);
    }

    #[test]
    fn below_the_threshold_nothing_moves() {
        let mut b = Balancer::default();
        let threads = vec![vec![1], vec![2]];
        let quiet = vec![counts(&[(7, 1, 10)]), counts(&[(7, 1, 10)])];
        assert_eq!(b.tick(Instant::now(), quiet, &threads), None);
    }
}
