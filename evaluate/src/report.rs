//! The report: `DIR/report.md` and its figures (`DIR/*.svg`), made from `DIR/data.json` and the
//! summaries in `DIR/raw/` alone, so that `popvmm-eval render DIR` makes them again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use popvmm::api::types::{LatencyBucket, Summary};
use popvmm::plot::{self, Axes, Histogram, Line, Marker, Panel, Series};

use coherency_lab::figure7::ITERATIONS;

use crate::data::{Evaluation, Fig7Measured, Fig7Row, NpbRow, NpbRun};
use crate::fig7::{pattern_name, size_name};
use crate::run::read_summary;

/// The files a report is made of, beside `data.json`.
pub const FIGURE7_SVG: &str = "figure7.svg";
pub const NPB_SVG: &str = "npb.svg";
pub const LATENCY_SVG: &str = "fault-latency.svg";
pub const REPORT_MD: &str = "report.md";

/// Something the report could not write.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::Io(path.to_path_buf(), e))
}

/// Writes the report and every figure into `dir`; returns the files written.
pub fn render(dir: &Path, eval: &Evaluation) -> Result<Vec<PathBuf>, ReportError> {
    let raw = dir.join("raw");
    let mut files = Vec::new();
    let mut md = String::new();
    header(&mut md, eval);
    if !eval.figure7.is_empty() {
        let path = dir.join(FIGURE7_SVG);
        write(&path, &figure7_svg(&eval.figure7)?)?;
        files.push(path);
        figure7_section(&mut md, &eval.figure7);
    }
    let heatmaps = heatmap_runs(eval);
    if !eval.npb.is_empty() {
        let path = dir.join(NPB_SVG);
        write(&path, &npb_svg(&eval.npb)?)?;
        files.push(path);
        npb_section(&mut md, &eval.npb, &raw);
    }
    let histograms = latency_histograms(eval, &raw);
    if !histograms.is_empty() {
        let path = dir.join(LATENCY_SVG);
        write(
            &path,
            &plot::latency_histogram(
                "Page-fault latency (resolved by the coherency layer)",
                &histograms,
            )?,
        )?;
        files.push(path);
        latency_section(&mut md, &histograms);
    }
    let mut drawn = Vec::new();
    for (title, stats, svg) in heatmaps {
        let Ok(summary) = read_summary(&raw.join(&stats)) else {
            continue;
        };
        let pages = summary.pages.unwrap_or_default();
        let path = dir.join(&svg);
        write(&path, &plot::page_heatmap(&title, &pages)?)?;
        files.push(path);
        drawn.push((title, svg));
    }
    if !drawn.is_empty() {
        let _ = writeln!(md, "## Page heat maps\n");
        let _ = writeln!(
            md,
            "Every page that cost a message in the run, in address order (64 to a row, a new \
             row at each gap in the addresses), coloured by its sharing pattern (from the islands \
             that read and wrote it: read-shared, private, producer-consumer, write-shared) and \
             darker the more messages it cost; on the right, the 20 pages that cost the most. \
             `popvmm ctl pages --svg FILE` draws the same map of a running program.\n"
        );
        for (title, svg) in &drawn {
            let _ = writeln!(md, "### {title}\n\n![{title}]({svg})\n");
        }
    }
    if let Some(text) = &eval.fabric {
        let _ = writeln!(md, "## The fabric's round trips\n");
        let _ = writeln!(
            md,
            "`scripts/bench-fabric` (the links alone, no VM): a Fetch answered by a Copy Void and \
             by a Copy, with the receivers polling and asleep on their doorbells, and the \
             throughput of 4 KiB Copies.\n"
        );
        let _ = writeln!(md, "```text\n{}\n```\n", text.trim_end());
    }
    rerun_section(&mut md, eval);
    let path = dir.join(REPORT_MD);
    write(&path, &md)?;
    files.push(path);
    Ok(files)
}

fn header(md: &mut String, eval: &Evaluation) {
    let m = &eval.meta;
    let _ = writeln!(md, "# popvmm evaluation ({})\n", m.mode);
    let load = |l: Option<f64>| l.map_or("?".to_string(), |v| format!("{v:.2}"));
    let _ = writeln!(
        md,
        "- date: {}\n- command: `{}`\n- tree: {}\n- machine: {} cores, load average {} before, \
         {} after\n- took: {:.0} s\n",
        m.date,
        m.command,
        m.commit.as_deref().unwrap_or("?"),
        m.cores,
        load(m.load_before),
        load(m.load_after),
        m.seconds
    );
    let _ = writeln!(
        md,
        "Every island is a KVM VM on the same machine; a page fault served through userfaultfd \
         costs ~100-200 us here (shared/PLATFORM.md), so these figures say what the coherency \
         protocol costs, not what separate machines would gain. Times of one run are measured \
         side by side (interleaved); compare ratios, not absolute times.\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Figure 7.

const REQ: (u8, u8, u8) = (31, 119, 180);
const INV: (u8, u8, u8) = (214, 39, 40);
const IVY_REQ: (u8, u8, u8) = (127, 127, 127);
const IVY_INV: (u8, u8, u8) = (188, 189, 34);
const REQ_OFF: (u8, u8, u8) = (23, 190, 207);
const INV_OFF: (u8, u8, u8) = (255, 127, 14);

fn series(
    label: &str,
    color: (u8, u8, u8),
    line: Line,
    marker: Marker,
    width: u32,
    points: Vec<(f64, f64)>,
) -> Series {
    Series {
        label: label.into(),
        color,
        line,
        marker,
        width,
        points,
        whiskers: vec![],
    }
}

const REQUESTS: fn(&Fig7Measured) -> u64 = |m| m.requests;
const INVALIDS: fn(&Fig7Measured) -> u64 = |m| m.invalids;

/// The medians of the good runs, with their ranges as whiskers.
fn measured_series(
    label: &str,
    color: (u8, u8, u8),
    marker: Marker,
    width: u32,
    rows: &[&Fig7Row],
    on: bool,
    f: fn(&Fig7Measured) -> u64,
) -> Option<Series> {
    let mut s = series(label, color, Line::Solid, marker, width, vec![]);
    for r in rows {
        let (Some(m), Some((lo, hi))) = (r.median(on, f), r.range(on, f)) else {
            continue;
        };
        let x = iteration_x(r.iterations);
        s.points.push((x, m as f64));
        if lo != hi {
            s.whiskers.push((x, lo as f64, hi as f64));
        }
    }
    (!s.points.is_empty()).then_some(s)
}

/// Where an iteration count sits on figure 7's x axis: evenly spaced, as the paper draws them.
fn iteration_x(iterations: u64) -> f64 {
    ITERATIONS
        .iter()
        .position(|&i| i == iterations)
        .map_or(iterations as f64, |p| p as f64)
}

/// Figure 7 as the paper draws it: requests and invalids against iterations, a panel per pattern
/// (rows) and array size (columns); Popcorn and IVY in simulation, Popcorn measured.
pub fn figure7_svg(rows: &[Fig7Row]) -> Result<String, plot::PlotError> {
    let mut panels = Vec::new();
    for pattern in ["rr", "rw", "ww"] {
        for size in ["half", "page", "64pages"] {
            let cell: Vec<&Fig7Row> = rows
                .iter()
                .filter(|r| r.pattern == pattern && r.size == size)
                .collect();
            if cell.is_empty() {
                continue;
            }
            let sim = |f: fn(&Fig7Row) -> u64| -> Vec<(f64, f64)> {
                cell.iter()
                    .map(|r| (iteration_x(r.iterations), f(r) as f64))
                    .collect()
            };
            let mut s = vec![
                series(
                    "Popcorn requests, simulated",
                    REQ,
                    Line::Dashed,
                    Marker::None,
                    1,
                    sim(|r| r.sim.popcorn_requests),
                ),
                series(
                    "Popcorn invalids, simulated",
                    INV,
                    Line::Dashed,
                    Marker::None,
                    1,
                    sim(|r| r.sim.popcorn_invalids),
                ),
                series(
                    "IVY requests, simulated",
                    IVY_REQ,
                    Line::Dotted,
                    Marker::Cross,
                    1,
                    sim(|r| r.sim.ivy_requests),
                ),
                series(
                    "IVY invalids, simulated",
                    IVY_INV,
                    Line::Dotted,
                    Marker::Cross,
                    1,
                    sim(|r| r.sim.ivy_invalids),
                ),
            ];
            s.push(series(
                "Popcorn requests, simulated at the islands' latency",
                (148, 103, 189),
                Line::Dotted,
                Marker::None,
                2,
                sim(|r| r.sim.popcorn_requests_islands),
            ));
            s.push(series(
                "Popcorn invalids, simulated at the islands' latency",
                (140, 86, 75),
                Line::Dotted,
                Marker::None,
                2,
                sim(|r| r.sim.popcorn_invalids_islands),
            ));
            let on = [
                (
                    "Popcorn requests, measured",
                    REQ,
                    true,
                    2,
                    Marker::Circle,
                    REQUESTS,
                ),
                (
                    "Popcorn invalids, measured",
                    INV,
                    true,
                    2,
                    Marker::Circle,
                    INVALIDS,
                ),
                (
                    "requests, measured, optimizations off",
                    REQ_OFF,
                    false,
                    1,
                    Marker::Triangle,
                    REQUESTS,
                ),
                (
                    "invalids, measured, optimizations off",
                    INV_OFF,
                    false,
                    1,
                    Marker::Triangle,
                    INVALIDS,
                ),
            ];
            for (label, color, opt, width, marker, f) in on {
                s.extend(measured_series(label, color, marker, width, &cell, opt, f));
            }
            panels.push(Panel {
                title: format!("{}, {}", size_name(size), pattern_name(pattern)),
                series: s,
            });
        }
    }
    let axes = Axes {
        x_desc: "iterations".into(),
        y_desc: "messages (log)".into(),
        log_y: true,
        x_ticks: Some(
            ITERATIONS
                .iter()
                .map(|&i| (iteration_x(i), i.to_string()))
                .collect(),
        ),
    };
    plot::line_panels(
        "Figure 7: Fetch + Fetch Write (requests) and Invalid messages, 2 kernels",
        &panels,
        3,
        &axes,
        Some(
            "measured: fig7 on 2 islands, the array's pages alone (median, bars: least-most); \
             simulated: coherency-lab, latency 2048 (the islands': 200000) element accesses; \
             0 on the bottom edge",
        ),
    )
}

fn figure7_section(md: &mut String, rows: &[Fig7Row]) {
    let _ = writeln!(md, "## Figure 7 on real islands\n");
    let _ = writeln!(
        md,
        "`fig7 SIZE PATTERN ITERS` on 2 islands (the main thread on island 0 fills the array, \
         the second thread runs on island 1), every cell in its own runs; requests = Fetch + Fetch Write, \
         invalids = Invalid, counted on the array's pages alone (the range fig7 prints, from \
         `--stats-json`'s `pages`). Beside them, the simulator's counts for Popcorn and IVY \
         (`popvmm protocol figure7`: latency 2048 element accesses, seed 1), and Popcorn \
         simulated again with the latency of these islands (\"sim 2e5\": `popvmm protocol \
         figure7 --latency 200000`, a message taking as long as 200,000 element accesses, as a \
         ~200 us remote fault does against a ~1 ns access). \"all msgs\" is every message of \
         the run (stacks, libc's data, the start flag, thread creation and exit).\n"
    );
    let _ = writeln!(md, "![Figure 7]({FIGURE7_SVG})\n");
    let reps = rows.iter().map(|r| r.good(true).count()).max().unwrap_or(0);
    let _ = writeln!(
        md,
        "Measured: the median of {reps} run(s) per cell and setting, and in brackets the \
         least and the most when they differ.\n"
    );
    let _ = writeln!(
        md,
        "| array | pattern | iter | Popcorn sim req | inv | IVY sim req | inv | Popcorn sim 2e5 req \
         | inv | measured req | inv | all msgs | ms | opt. off req | inv |"
    );
    let _ = writeln!(
        md,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in rows {
        let c = |on: bool, f: fn(&Fig7Measured) -> u64| -> String {
            match (r.median(on, f), r.range(on, f)) {
                (Some(m), Some((lo, hi))) if lo != hi => format!("{m} [{lo}-{hi}]"),
                (Some(m), _) => m.to_string(),
                _ if r.ran(on) => "FAIL".into(),
                _ => "-".into(),
            }
        };
        let ms = {
            let mut v: Vec<f64> = r.good(true).map(|m| m.wall_ms).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len().saturating_sub(1) / 2)
                .map_or("-".to_string(), |ms| format!("{ms:.0}"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size_name(&r.size).replace('<', "&lt;"),
            pattern_name(&r.pattern),
            r.iterations,
            r.sim.popcorn_requests,
            r.sim.popcorn_invalids,
            r.sim.ivy_requests,
            r.sim.ivy_invalids,
            r.sim.popcorn_requests_islands,
            r.sim.popcorn_invalids_islands,
            c(true, REQUESTS),
            c(true, INVALIDS),
            c(true, |m| m.run_messages),
            ms,
            c(false, REQUESTS),
            c(false, INVALIDS),
        );
    }
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.measured.iter().filter_map(move |m| {
                m.error.as_ref().map(|e| {
                    format!(
                        "{} {} {} (optimizations {}, run {}): {e}",
                        r.size,
                        r.pattern,
                        r.iterations,
                        if m.optimizations { "on" } else { "off" },
                        m.rep + 1
                    )
                })
            })
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "\nFailed runs:\n");
        for f in failed {
            let _ = writeln!(md, "- {f}");
        }
    }
    let differ = rows.iter().any(|r| {
        r.sim.popcorn_requests != r.sim.popcorn_requests_unoptimized
            || r.sim.popcorn_invalids != r.sim.popcorn_invalids_unoptimized
    });
    let _ = writeln!(
        md,
        "\nIn simulation the optimizations of §5.2 {} on 2 kernels (multicast groups and the \
         owner hint both pick \"the other kernel\" when there is only one).\n",
        if differ {
            "change the counts"
        } else {
            "change no count"
        }
    );
}

// ---------------------------------------------------------------------------------------------
// NPB.

/// Time and messages against islands, a line per kernel and class.
pub fn npb_svg(rows: &[NpbRow]) -> Result<String, plot::PlotError> {
    let mut time = Vec::new();
    let mut slowdown = Vec::new();
    let mut msgs = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let color = plot::PALETTE[i % plot::PALETTE.len()];
        let label = format!("{} {}", r.kernel.to_uppercase(), r.class);
        let marker = if r.class == "S" {
            Marker::Circle
        } else {
            Marker::Triangle
        };
        let native = r.native.median_ms();
        let mut t = Vec::new();
        let mut x = Vec::new();
        let mut m = Vec::new();
        if let Some(n) = native {
            t.push((0.0, n));
            x.push((0.0, 1.0));
        }
        for run in &r.islands {
            let at = x_of(run.islands);
            if let Some(ms) = run.median_ms() {
                t.push((at, ms));
                if let Some(n) = native {
                    x.push((at, ms / n));
                }
            }
            m.push((at, run.messages as f64));
        }
        time.push(series(&label, color, Line::Solid, marker, 2, t));
        slowdown.push(series(&label, color, Line::Solid, marker, 2, x));
        msgs.push(series(&label, color, Line::Solid, marker, 2, m));
    }
    let panels = vec![
        Panel {
            title: "wall time (ms, median)".into(),
            series: time,
        },
        Panel {
            title: "time / native time".into(),
            series: slowdown,
        },
        Panel {
            title: "messages between islands".into(),
            series: msgs,
        },
    ];
    let axes = Axes {
        x_desc: "islands".into(),
        y_desc: "(log)".into(),
        log_y: true,
        x_ticks: Some(vec![
            (0.0, "native".into()),
            (1.0, "1".into()),
            (2.0, "2".into()),
            (3.0, "4".into()),
        ]),
    };
    plot::line_panels(
        "NPB kernels, 4 OpenMP threads: natively and on 1, 2, 4 islands",
        &panels,
        3,
        &axes,
        Some("one island runs no protocol (0 messages, drawn on the bottom edge)"),
    )
}

/// Where a number of islands sits on the NPB figures' x axis (native at 0).
fn x_of(islands: usize) -> f64 {
    match islands {
        0 => 0.0,
        1 => 1.0,
        2 => 2.0,
        4 => 3.0,
        n => (n as f64).log2() + 1.0,
    }
}

fn ms_text(run: &NpbRun) -> String {
    match (run.median_ms(), &run.error) {
        (Some(ms), None) => format!("{ms:.0}"),
        (Some(ms), Some(_)) => format!("{ms:.0} (failed)"),
        (None, Some(e)) => e.clone(),
        (None, None) => "-".into(),
    }
}

fn npb_section(md: &mut String, rows: &[NpbRow], raw: &Path) {
    let _ = writeln!(md, "## NPB kernels\n");
    let threads = rows.first().map_or(4, |r| r.threads);
    let _ = writeln!(
        md,
        "`images/out/glibc/npb_* CLASS` with `OMP_NUM_THREADS={threads}`, natively and under \
         `popvmm launch --islands N` (threads round-robin: the main thread on island 0, the others \
         on 1, 2, ..., 0, 1, ...), repetitions interleaved; wall time from outside (median), \
         and in parentheses the ratio to the native run. \"verified\": NPB's own verification \
         passed in every run; \"same output\": stdout, stderr and exit status as the native \
         run's. Messages and faults are the last repetition's.\n"
    );
    let _ = writeln!(md, "![NPB]({NPB_SVG})\n");
    let islands: Vec<usize> = rows
        .first()
        .map(|r| r.islands.iter().map(|i| i.islands).collect())
        .unwrap_or_default();
    let mut head = "| kernel | class | native ms |".to_string();
    let mut rule = "|---|---|--:|".to_string();
    for n in &islands {
        let _ = write!(head, " {n} island{} ms |", if *n == 1 { "" } else { "s" });
        rule.push_str("--:|");
    }
    for n in islands.iter().filter(|n| **n > 1) {
        let _ = write!(head, " msgs ({n}) | faults ({n}) |");
        rule.push_str("--:|--:|");
    }
    head.push_str(" verified | same output |");
    rule.push_str("---|---|");
    let _ = writeln!(md, "{head}\n{rule}");
    for r in rows {
        let native = r.native.median_ms();
        let mut line = format!(
            "| {} | {} | {} |",
            r.kernel.to_uppercase(),
            r.class,
            ms_text(&r.native)
        );
        for run in &r.islands {
            let ratio = match (run.median_ms(), native) {
                (Some(a), Some(b)) if b > 0.0 => format!(" ({:.1}x)", a / b),
                _ => String::new(),
            };
            let _ = write!(line, " {}{ratio} |", ms_text(run));
        }
        for run in r.islands.iter().filter(|i| i.islands > 1) {
            let _ = write!(line, " {} | {} |", run.messages, run.faults);
        }
        let all = |f: fn(&NpbRun) -> bool| {
            if std::iter::once(&r.native).chain(&r.islands).all(f) {
                "yes"
            } else {
                "NO"
            }
        };
        let _ = write!(
            line,
            " {} | {} |",
            all(|x| x.verified),
            all(|x| x.same_output)
        );
        let _ = writeln!(md, "{line}");
    }
    // The pages that bounced most, on the most islands.
    let _ = writeln!(
        md,
        "\nThe pages that cost the most messages on the most islands (last repetition):\n"
    );
    let _ = writeln!(
        md,
        "| kernel | class | islands | page | messages | pattern | writers | by type |"
    );
    let _ = writeln!(md, "|---|---|--:|---|--:|---|---|---|");
    for r in rows {
        let Some(run) = r
            .islands
            .iter()
            .filter(|i| i.islands > 1)
            .max_by_key(|i| i.islands)
        else {
            continue;
        };
        let Some(summary) = run
            .stats
            .as_ref()
            .and_then(|s| read_summary(&raw.join(s)).ok())
        else {
            continue;
        };
        let pages = summary.pages.as_deref().unwrap_or(&[]);
        for p in popvmm::api::types::hottest(pages, 3) {
            let writers: Vec<String> = p.writers.iter().map(usize::to_string).collect();
            let by: Vec<String> = p
                .messages_by_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | `{}` | {} | {} | {} | {} |",
                r.kernel.to_uppercase(),
                r.class,
                run.islands,
                p.address,
                p.messages,
                p.pattern,
                writers.join(","),
                by.join(", ")
            );
        }
    }
    let _ = writeln!(md);
}

// ---------------------------------------------------------------------------------------------
// Fault latency.

fn add(into: &mut Vec<LatencyBucket>, from: &[LatencyBucket]) {
    if into.is_empty() {
        into.extend(from.iter().map(|b| LatencyBucket { faults: 0, ..*b }));
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.faults += b.faults;
    }
}

/// The latency histograms of the report: figure 7's runs together, and the NPB runs by number of
/// islands.
fn latency_histograms(eval: &Evaluation, raw: &Path) -> Vec<Histogram> {
    let read = |f: &str| -> Option<Summary> { read_summary(&raw.join(f)).ok() };
    let mut out = Vec::new();
    let mut fig7 = Vec::new();
    for m in eval.figure7.iter().flat_map(|r| &r.measured) {
        if let Some(s) = read(&m.stats) {
            add(&mut fig7, &s.stats.fault_latency_histogram);
        }
    }
    if fig7.iter().any(|b| b.faults > 0) {
        out.push(Histogram {
            label: "figure 7 runs, 2 islands".into(),
            buckets: fig7,
        });
    }
    let mut counts: Vec<usize> = eval
        .npb
        .iter()
        .flat_map(|r| r.islands.iter().map(|i| i.islands))
        .filter(|&n| n > 1)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    for n in counts {
        let mut h = Vec::new();
        for run in eval.npb.iter().flat_map(|r| &r.islands) {
            if run.islands != n {
                continue;
            }
            if let Some(s) = run.stats.as_deref().and_then(read) {
                add(&mut h, &s.stats.fault_latency_histogram);
            }
        }
        if h.iter().any(|b| b.faults > 0) {
            out.push(Histogram {
                label: format!("NPB runs, {n} islands"),
                buckets: h,
            });
        }
    }
    out
}

/// The bucket below whose upper bound a fraction `q` of the faults fall.
fn quantile(buckets: &[LatencyBucket], q: f64) -> String {
    let total: u64 = buckets.iter().map(|b| b.faults).sum();
    if total == 0 {
        return "-".into();
    }
    let target = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for b in buckets {
        seen += b.faults;
        if seen >= target {
            return match b.below_us {
                Some(us) => format!("< {us} us"),
                None => format!(">= {} us", b.from_us),
            };
        }
    }
    "-".into()
}

fn latency_section(md: &mut String, histograms: &[Histogram]) {
    let _ = writeln!(md, "## Fault latency\n");
    let _ = writeln!(
        md,
        "Every page fault the coherency layer resolved (from the guest's access, or the island \
         kernel's on its behalf, to the copy installed), by latency bucket (powers of two of \
         microseconds), as a share of each group's faults.\n"
    );
    let _ = writeln!(md, "![fault latency]({LATENCY_SVG})\n");
    let _ = writeln!(
        md,
        "| runs | faults | p50 | p90 | p99 |\n|---|--:|---|---|---|"
    );
    for h in histograms {
        let total: u64 = h.buckets.iter().map(|b| b.faults).sum();
        let _ = writeln!(
            md,
            "| {} | {total} | {} | {} | {} |",
            h.label,
            quantile(&h.buckets, 0.5),
            quantile(&h.buckets, 0.9),
            quantile(&h.buckets, 0.99)
        );
    }
    let _ = writeln!(md);
}

/// The runs whose pages the report draws: each NPB kernel on the most islands it ran on, and
/// figure 7's most expensive cell. (title, summary file, svg file).
fn heatmap_runs(eval: &Evaluation) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in &eval.npb {
        if let Some(run) = r
            .islands
            .iter()
            .filter(|i| i.islands > 1)
            .max_by_key(|i| i.islands)
        {
            if let Some(stats) = &run.stats {
                out.push((
                    format!(
                        "NPB {} class {} on {} islands",
                        r.kernel.to_uppercase(),
                        r.class,
                        run.islands
                    ),
                    stats.clone(),
                    format!("pages-npb-{}-{}-{}.svg", r.kernel, r.class, run.islands),
                ));
            }
        }
    }
    let costliest = eval
        .figure7
        .iter()
        .flat_map(|r| r.measured.iter().map(move |m| (r, m)))
        .filter(|(_, m)| m.error.is_none() && m.optimizations)
        .max_by_key(|(_, m)| m.run_messages);
    if let Some((r, m)) = costliest {
        out.push((
            format!(
                "fig7 {} {} {} on 2 islands",
                size_name(&r.size),
                pattern_name(&r.pattern),
                r.iterations
            ),
            m.stats.clone(),
            format!("pages-fig7-{}-{}-{}.svg", r.size, r.pattern, r.iterations),
        ));
    }
    out
}

fn rerun_section(md: &mut String, eval: &Evaluation) {
    let _ = writeln!(md, "## Rerun and compare\n");
    let _ = writeln!(
        md,
        "```sh\n{}\npopvmm-eval render DIR            # this report again from DIR/data.json and DIR/raw/\n\
         popvmm-eval compare OLD_DIR NEW_DIR  # ratios of NPB times and messages, figure 7 counts\n```\n",
        eval.meta.command
    );
    let _ = writeln!(
        md,
        "`data.json` holds every figure of this report; `raw/` every run's `--stats-json` \
         summary (messages by type and link, faults, the latency histogram, every page that \
         cost a message)."
    );
}

/// `popvmm-eval compare OLD NEW`: NPB times and messages, and figure 7's measured counts, of two
/// evaluations side by side with their ratios (NEW / OLD).
pub fn compare(old: &Evaluation, new: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "old: {} ({}, load {:?}); new: {} ({}, load {:?})",
        old.meta.date,
        old.meta.mode,
        old.meta.load_before,
        new.meta.date,
        new.meta.mode,
        new.meta.load_before
    );
    let _ = writeln!(
        out,
        "\n{:<10} {:>7} | {:>10} {:>10} {:>7} | {:>9} {:>9} {:>7}",
        "npb", "islands", "old ms", "new ms", "new/old", "old msgs", "new msgs", "new/old"
    );
    let ratio = |a: f64, b: f64| {
        if a > 0.0 {
            format!("{:.2}", b / a)
        } else {
            "-".into()
        }
    };
    for n in &new.npb {
        let Some(o) = old
            .npb
            .iter()
            .find(|o| o.kernel == n.kernel && o.class == n.class)
        else {
            continue;
        };
        let pairs = std::iter::once((&o.native, &n.native)).chain(
            n.islands
                .iter()
                .filter_map(|nr| Some((o.islands.iter().find(|x| x.islands == nr.islands)?, nr))),
        );
        for (a, b) in pairs {
            let (am, bm) = (a.median_ms().unwrap_or(0.0), b.median_ms().unwrap_or(0.0));
            let _ = writeln!(
                out,
                "{:<10} {:>7} | {:>10.0} {:>10.0} {:>7} | {:>9} {:>9} {:>7}",
                format!("{} {}", n.kernel.to_uppercase(), n.class),
                if b.islands == 0 {
                    "native".to_string()
                } else {
                    b.islands.to_string()
                },
                am,
                bm,
                ratio(am, bm),
                a.messages,
                b.messages,
                ratio(a.messages as f64, b.messages as f64)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<9} {:<12} {:>5} | {:>8} {:>8} | {:>8} {:>8}",
        "fig7", "pattern", "iter", "old req", "new req", "old inv", "new inv"
    );
    for n in &new.figure7 {
        let Some(o) = old
            .figure7
            .iter()
            .find(|o| o.size == n.size && o.pattern == n.pattern && o.iterations == n.iterations)
        else {
            continue;
        };
        let med = |r: &Fig7Row, f| r.median(true, f).map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{:<9} {:<12} {:>5} | {:>8} {:>8} | {:>8} {:>8}",
            size_name(&n.size),
            pattern_name(&n.pattern),
            n.iterations,
            med(o, REQUESTS),
            med(n, REQUESTS),
            med(o, INVALIDS),
            med(n, INVALIDS)
        );
    }
    out
}
