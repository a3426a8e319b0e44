//! Figure 7 (§6) twice: in simulation (`coherency_lab::figure7`, Popcorn and IVY on the same
//! traces) and on 2 real islands (`images/out/glibc/fig7 SIZE PATTERN ITERS`, one run per cell),
//! where the requests (Fetch + Fetch Write) and Invalids are those about the array's pages alone:
//! the `pages` of the run's `--stats-json` whose address is in the range fig7 prints
//! (`array 0xSTART 0xEND`).

use std::fmt::Write as _;

use coherency::{Config, MessageType};
use coherency_lab::figure7::{figure7_cell, ArraySize, Figure7Row, Pattern, ITERATIONS};
use popvmm::api::types::{PageRow, Summary};

use crate::data::{Fig7Measured, Fig7Row, Fig7Sim};
use crate::run::{Progress, RunError, Setup};

/// The simulator's mean one-way message latency, in element accesses (`popvmm protocol figure7`'s
/// default).
pub const SIM_LATENCY: u64 = 2048;
pub const SIM_SEED: u64 = 1;

/// A message's latency on this machine's islands in element accesses: a remote fault costs
/// ~100-400 us here (a Fetch/Copy round trip through userfaultfd and two host threads' wake-ups),
/// an element access of fig7's loops ~1-2 ns (a pass over 64 pages, 65536 ints, takes ~50-100
/// us), so ~200,000 accesses go by while one message travels; the figure's 2048 is the ratio
/// of a fast interconnect.
pub const ISLAND_LATENCY: u64 = 200_000;

/// fig7's name of an array size.
pub fn size_arg(size: ArraySize) -> &'static str {
    match size {
        ArraySize::LessThanPage => "half",
        ArraySize::OnePage => "page",
        ArraySize::SixtyFourPages => "64pages",
    }
}

/// fig7's name of a pattern.
pub fn pattern_arg(p: Pattern) -> &'static str {
    match p {
        Pattern::ReadRead => "rr",
        Pattern::ReadWrite => "rw",
        Pattern::WriteWrite => "ww",
    }
}

/// The figure's label of fig7's size argument (`<1 page`, `1 page`, `64 pages`).
pub fn size_name(arg: &str) -> &'static str {
    match arg {
        "half" => ArraySize::LessThanPage.name(),
        "page" => ArraySize::OnePage.name(),
        _ => ArraySize::SixtyFourPages.name(),
    }
}

/// The figure's label of fig7's pattern argument.
pub fn pattern_name(arg: &str) -> &'static str {
    match arg {
        "rr" => Pattern::ReadRead.name(),
        "rw" => Pattern::ReadWrite.name(),
        _ => Pattern::WriteWrite.name(),
    }
}

/// Which cells to run, and how.
#[derive(Debug, Clone)]
pub struct Fig7Plan {
    pub sizes: Vec<ArraySize>,
    pub patterns: Vec<Pattern>,
    pub iterations: Vec<u64>,
    /// Also run every cell with the optimizations of §5.2 off.
    pub unoptimized: bool,
    /// Runs of each cell and setting (the counts depend on how the two threads' timing falls).
    pub reps: usize,
}

impl Fig7Plan {
    /// Every cell of the figure, optimizations on and off, `reps` runs of each.
    pub fn full(reps: usize) -> Fig7Plan {
        Fig7Plan {
            sizes: ArraySize::ALL.to_vec(),
            patterns: Pattern::ALL.to_vec(),
            iterations: ITERATIONS.to_vec(),
            unoptimized: true,
            reps,
        }
    }

    pub fn runs(&self) -> usize {
        self.sizes.len()
            * self.patterns.len()
            * self.iterations.len()
            * if self.unoptimized { 2 } else { 1 }
            * self.reps
    }
}

/// The simulator's figure, keyed like the real runs: every cell, or only those of `only` (the
/// smoke run's). Popcorn with the optimizations on and off and IVY at the figure's latency, and
/// Popcorn at the islands' ([`ISLAND_LATENCY`]).
pub fn simulate(only: Option<&Fig7Plan>) -> Result<Vec<Fig7Row>, String> {
    let mut rows = Vec::new();
    let err = |e: coherency_lab::sim::SimError| e.to_string();
    for size in ArraySize::ALL {
        for pattern in Pattern::ALL {
            for iterations in ITERATIONS {
                if let Some(plan) = only {
                    if !(plan.sizes.contains(&size)
                        && plan.patterns.contains(&pattern)
                        && plan.iterations.contains(&iterations))
                    {
                        continue;
                    }
                }
                let cell = |engine, latency| {
                    figure7_cell(engine, size, pattern, iterations, latency, SIM_SEED)
                };
                let a = cell(Config::new(2), SIM_LATENCY).map_err(err)?;
                let b = cell(Config::unoptimized(2), SIM_LATENCY).map_err(err)?;
                let c = cell(Config::new(2), ISLAND_LATENCY).map_err(err)?;
                let rows3: [&Figure7Row; 3] = [&a, &b, &c];
                if let Some(v) = rows3.iter().find_map(|r| {
                    r.popcorn
                        .violation
                        .as_ref()
                        .or(r.ivy.violation.as_ref())
                        .map(|v| v.to_string())
                }) {
                    return Err(format!("the simulator found a violation: {v}"));
                }
                rows.push(Fig7Row {
                    size: size_arg(size).to_string(),
                    pattern: pattern_arg(pattern).to_string(),
                    iterations,
                    sim: Fig7Sim {
                        popcorn_requests: a.popcorn_requests(),
                        popcorn_invalids: a.popcorn_invalids(),
                        popcorn_messages: a.popcorn.total_messages,
                        popcorn_requests_unoptimized: b.popcorn_requests(),
                        popcorn_invalids_unoptimized: b.popcorn_invalids(),
                        ivy_requests: a.ivy_requests(),
                        ivy_invalids: a.ivy_invalids(),
                        ivy_messages: a.ivy.total_messages,
                        popcorn_requests_islands: c.popcorn_requests(),
                        popcorn_invalids_islands: c.popcorn_invalids(),
                    },
                    measured: vec![],
                });
            }
        }
    }
    Ok(rows)
}

/// `array 0xSTART 0xEND` from fig7's output.
pub fn array_range(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("array "))?;
    let mut f = line.split_whitespace().skip(1);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((hex(f.next()?)?, hex(f.next()?)?))
}

/// The array's pages of a summary: (requests, invalids, all messages, faults) about them.
pub fn attribute(pages: &[PageRow], start: u64, end: u64) -> (u64, u64, u64, u64) {
    let mut acc = (0, 0, 0, 0);
    for p in pages.iter().filter(|p| (start..end).contains(&p.address.0)) {
        let n = |t: MessageType| p.messages_by_type.get(t.name()).copied().unwrap_or(0);
        acc.0 += n(MessageType::Fetch) + n(MessageType::FetchWrite);
        acc.1 += n(MessageType::Invalid);
        acc.2 += p.messages;
        acc.3 += p
            .copies
            .iter()
            .map(|c| c.read_faults + c.write_faults)
            .sum::<u64>();
    }
    acc
}

/// One real run of a cell.
pub fn measure(
    setup: &Setup,
    size: &str,
    pattern: &str,
    iterations: u64,
    optimizations: bool,
    rep: usize,
) -> Result<Fig7Measured, RunError> {
    let name = format!(
        "fig7-{size}-{pattern}-{iterations}-{}-{rep}",
        if optimizations { "on" } else { "off" }
    );
    let iters = iterations.to_string();
    let (out, summary) = setup.launch(
        &name,
        2,
        "glibc/fig7",
        &[size, pattern, &iters],
        &[],
        &[
            "--protocol-optimizations",
            if optimizations { "on" } else { "off" },
        ],
    )?;
    let mut m = Fig7Measured {
        optimizations,
        rep,
        wall_ms: out.wall_ms,
        ok: out.code == Some(0) && out.stdout.contains(": ok"),
        stats: format!("{name}.json"),
        ..Fig7Measured::default()
    };
    if out.timed_out {
        m.error = Some(format!("timed out after {:.0} s", out.wall_ms / 1000.0));
    } else if !m.ok {
        m.error = Some(format!(
            "exit {:?}: {}{}",
            out.code,
            out.stdout.trim(),
            out.program_stderr().trim()
        ));
    }
    let (Some(summary), Some((start, end))) = (summary, array_range(&out.stdout)) else {
        m.error
            .get_or_insert_with(|| "no summary or no array range".into());
        return Ok(m);
    };
    fill(&mut m, &summary, start, end);
    Ok(m)
}

fn fill(m: &mut Fig7Measured, summary: &Summary, start: u64, end: u64) {
    let pages = summary.pages.as_deref().unwrap_or(&[]);
    let (requests, invalids, messages, faults) = attribute(pages, start, end);
    m.requests = requests;
    m.invalids = invalids;
    m.array_messages = messages;
    m.array_faults = faults;
    m.run_messages = summary.stats.messages.total;
    m.run_faults = summary.stats.faults.total;
}

/// Runs the plan's cells on real islands into `rows` (the simulator's rows of every cell), the
/// whole figure once per repetition, so that every cell sees the same spread of load.
pub fn run_plan(
    setup: &Setup,
    plan: &Fig7Plan,
    rows: &mut [Fig7Row],
    progress: &mut Progress,
) -> Result<(), RunError> {
    let modes: &[bool] = if plan.unoptimized {
        &[true, false]
    } else {
        &[true]
    };
    for rep in 0..plan.reps {
        for size in &plan.sizes {
            for pattern in &plan.patterns {
                for &iterations in &plan.iterations {
                    let (s, p) = (size_arg(*size), pattern_arg(*pattern));
                    let Some(row) = rows
                        .iter_mut()
                        .find(|r| r.size == s && r.pattern == p && r.iterations == iterations)
                    else {
                        continue;
                    };
                    for &opt in modes {
                        let m = measure(setup, s, p, iterations, opt, rep)?;
                        progress.step(
                            &format!(
                                "fig7 {s} {p} {iterations} (optimizations {}, run {})",
                                if opt { "on" } else { "off" },
                                rep + 1
                            ),
                            &match &m.error {
                                None => format!(
                                    "{} requests, {} invalids on the array ({} messages in \
                                     all), {:.0} ms",
                                    m.requests, m.invalids, m.run_messages, m.wall_ms
                                ),
                                Some(e) => format!("FAILED: {e}"),
                            },
                        );
                        row.measured.push(m);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The table: the simulator's counts beside the measured ones (medians of the runs), one line
/// per cell (cells not run on islands show `-`, cells whose every run failed `FAIL`).
pub fn table(rows: &[Fig7Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<12} {:>5} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
        "array",
        "pattern",
        "iter",
        "requests",
        "invalids",
        "requests",
        "invalids",
        "requests",
        "invalids",
        "all msgs",
        "requests",
        "invalids"
    );
    let _ = writeln!(
        out,
        "{:<9} {:<12} {:>5} | {:^17} | {:^17} | {:^26} | {:^17}",
        "", "", "", "Popcorn, sim", "IVY, sim", "measured, opt. on", "measured, opt. off"
    );
    for r in rows {
        let cell = |on: bool, f: fn(&Fig7Measured) -> u64| match r.median(on, f) {
            Some(v) => v.to_string(),
            None if r.ran(on) => "FAIL".into(),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<9} {:<12} {:>5} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} {:>8} | \
             {:>8} {:>8}",
            size_name(&r.size),
            pattern_name(&r.pattern),
            r.iterations,
            r.sim.popcorn_requests,
            r.sim.popcorn_invalids,
            r.sim.ivy_requests,
            r.sim.ivy_invalids,
            r.sim.popcorn_requests_islands,
            r.sim.popcorn_invalids_islands,
            cell(true, |m| m.requests),
            cell(true, |m| m.invalids),
            cell(true, |m| m.run_messages),
            cell(false, |m| m.requests),
            cell(false, |m| m.invalids),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_array_line_gives_the_range() {
        let out = "array 0xfbfff0000 0xfbfff1000\nfig7 page rr 1: ... ok\n";
        assert_eq!(array_range(out), Some((0xfbfff0000, 0xfbfff1000)));
        assert_eq!(array_range("nothing"), None);
        assert_eq!(array_range("array 0xzz 0x1"), None);
    }

    #[test]
    fn argument_names_round_trip() {
        for s in ArraySize::ALL {
            assert_eq!(size_name(size_arg(s)), s.name());
        }
        for p in Pattern::ALL {
            assert_eq!(pattern_name(pattern_arg(p)), p.name());
        }
    }
}
