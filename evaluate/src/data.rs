//! What an evaluation measured, as it is kept in `DIR/data.json` (with each run's `--stats-json`
//! summary beside it in `DIR/raw/`): the report and the plots are made from these alone
//! (`popvmm-eval render DIR`), and two evaluations compare from them (`popvmm-eval compare`).

use serde::{Deserialize, Serialize};

/// One evaluation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evaluation {
    pub meta: Meta,
    pub figure7: Vec<Fig7Row>,
    pub npb: Vec<NpbRow>,
    /// `scripts/bench-fabric`'s output, as it printed it (None: not run).
    #[serde(default)]
    pub fabric: Option<String>,
}

/// When, where and how the evaluation ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `smoke`, `quick` or `full`.
    pub mode: String,
    /// The command line.
    pub command: String,
    /// `git describe --always --dirty` of the tree, if it could say.
    pub commit: Option<String>,
    pub cores: usize,
    /// /proc/loadavg's 1-minute figure before and after.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub seconds: f64,
}

/// One cell of figure 7: the simulator's counts for Popcorn and IVY, and what real islands did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fig7Row {
    /// `half`, `page` or `64pages` (fig7's argument).
    pub size: String,
    /// `rr`, `rw` or `ww`.
    pub pattern: String,
    pub iterations: u64,
    pub sim: Fig7Sim,
    /// The runs on 2 islands, every repetition, optimizations on and (where measured) off.
    pub measured: Vec<Fig7Measured>,
}

impl Fig7Row {
    /// The runs with the optimizations `on` or off that went well.
    pub fn good(&self, on: bool) -> impl Iterator<Item = &Fig7Measured> {
        self.measured
            .iter()
            .filter(move |m| m.optimizations == on && m.error.is_none())
    }

    /// The median of `f` over the good runs (the lower one of an even count).
    pub fn median(&self, on: bool, f: fn(&Fig7Measured) -> u64) -> Option<u64> {
        let mut v: Vec<u64> = self.good(on).map(f).collect();
        v.sort_unstable();
        (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
    }

    /// The least and the most of `f` over the good runs.
    pub fn range(&self, on: bool, f: fn(&Fig7Measured) -> u64) -> Option<(u64, u64)> {
        let v: Vec<u64> = self.good(on).map(f).collect();
        Some((*v.iter().min()?, *v.iter().max()?))
    }

    /// Runs with the optimizations `on` or off that failed.
    pub fn failed(&self, on: bool) -> usize {
        self.measured
            .iter()
            .filter(|m| m.optimizations == on && m.error.is_some())
            .count()
    }

    /// Whether any run was made with the optimizations `on` or off.
    pub fn ran(&self, on: bool) -> bool {
        self.measured.iter().any(|m| m.optimizations == on)
    }
}

/// The simulator's figure 7 for one cell (`coherency_lab::figure7`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Fig7Sim {
    pub popcorn_requests: u64,
    pub popcorn_invalids: u64,
    pub popcorn_messages: u64,
    /// The same with the optimizations of §5.2 off.
    pub popcorn_requests_unoptimized: u64,
    pub popcorn_invalids_unoptimized: u64,
    pub ivy_requests: u64,
    pub ivy_invalids: u64,
    pub ivy_messages: u64,
    /// Popcorn again with a message latency of islands on this machine
    /// ([`crate::fig7::ISLAND_LATENCY`] element accesses instead of the figure's 2048).
    #[serde(default)]
    pub popcorn_requests_islands: u64,
    #[serde(default)]
    pub popcorn_invalids_islands: u64,
}

/// One run of `fig7` on 2 islands: the messages about the array's pages alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fig7Measured {
    pub optimizations: bool,
    /// Which repetition (from 0).
    #[serde(default)]
    pub rep: usize,
    /// Fetch + Fetch Write about the array's pages.
    pub requests: u64,
    pub invalids: u64,
    /// Every message about the array's pages.
    pub array_messages: u64,
    /// Every message of the run (the array, the stacks, the start flag, libc's data...).
    pub run_messages: u64,
    /// Faults on the array's pages, and in the whole run.
    pub array_faults: u64,
    pub run_faults: u64,
    pub wall_ms: f64,
    /// fig7 printed `ok` and exited 0.
    pub ok: bool,
    /// The summary file in `raw/`.
    pub stats: String,
    /// What went wrong, if the run failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// One NPB kernel at one class: native, then 1, 2 and 4 islands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NpbRow {
    /// `is`, `cg`, `ft`, `ep`, `mg`.
    pub kernel: String,
    pub class: String,
    pub threads: usize,
    pub native: NpbRun,
    pub islands: Vec<NpbRun>,
}

/// The runs of one kernel in one setting (native: islands 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NpbRun {
    pub islands: usize,
    /// Every repetition's wall time, in run order.
    pub wall_ms: Vec<f64>,
    /// "Verification = SUCCESSFUL" in every repetition.
    pub verified: bool,
    /// stdout and exit status as the native run's, in every repetition (native: true).
    pub same_output: bool,
    /// From the last repetition's summary (0 natively and on one island).
    pub messages: u64,
    pub faults: u64,
    pub fault_mean_us: Option<f64>,
    /// The last repetition's summary in `raw/` (None natively).
    pub stats: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl NpbRun {
    /// The median wall time (None: no repetition finished).
    pub fn median_ms(&self) -> Option<f64> {
        let mut v = self.wall_ms.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[(v.len() - 1) / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure7_medians_and_ranges_leave_failed_runs_out() {
        let m = |on: bool, requests: u64, error: Option<&str>| Fig7Measured {
            optimizations: on,
            requests,
            error: error.map(String::from),
            ..Fig7Measured::default()
        };
        let row = Fig7Row {
            size: "page".into(),
            pattern: "rw".into(),
            iterations: 10,
            sim: Fig7Sim::default(),
            measured: vec![
                m(true, 5, None),
                m(true, 1, None),
                m(true, 9, None),
                m(true, 100, Some("timed out")),
                m(false, 7, None),
            ],
        };
        assert_eq!(row.median(true, |m| m.requests), Some(5));
        assert_eq!(row.range(true, |m| m.requests), Some((1, 9)));
        assert_eq!(row.failed(true), 1);
        assert_eq!(row.median(false, |m| m.requests), Some(7));
        assert!(row.ran(false));
        let none = Fig7Row {
            measured: vec![],
            ..row
        };
        assert_eq!(none.median(true, |m| m.requests), None);
        assert!(!none.ran(true));
    }

    #[test]
    fn median_of_runs() {
        let mut r = NpbRun::default();
        assert_eq!(r.median_ms(), None);
        r.wall_ms = vec![30.0, 10.0, 20.0];
        assert_eq!(r.median_ms(), Some(20.0));
        r.wall_ms = vec![30.0, 10.0];
        assert_eq!(r.median_ms(), Some(10.0));
    }
}
