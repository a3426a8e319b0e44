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
    /// The runs on 2 islands: optimizations on, then off where measured.
    pub measured: Vec<Fig7Measured>,
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
}

/// One run of `fig7` on 2 islands: the messages about the array's pages alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fig7Measured {
    pub optimizations: bool,
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
    fn median_of_runs() {
        let mut r = NpbRun::default();
        assert_eq!(r.median_ms(), None);
        r.wall_ms = vec![30.0, 10.0, 20.0];
        assert_eq!(r.median_ms(), Some(20.0));
        r.wall_ms = vec![30.0, 10.0];
        assert_eq!(r.median_ms(), Some(10.0));
    }
}
