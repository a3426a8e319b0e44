//! The NPB kernels (`images/out/glibc/npb_{is,cg,ft,ep,mg}`, OpenMP) natively and on 1, 2 and 4
//! islands, interleaved repetition by repetition so that every setting sees the same load: wall
//! time, the verdict, the output against the native run's, and each run's messages and faults.

use crate::data::{NpbRow, NpbRun};
use crate::run::{Outcome, Progress, RunError, Setup};

/// The kernels, in the order the report lists them.
pub const KERNELS: [&str; 5] = ["is", "cg", "ft", "ep", "mg"];

/// OpenMP threads in every run (the paper's applications ran with one thread per kernel; here 4
/// threads, so that 1, 2 and 4 islands run the same program).
pub const THREADS: usize = 4;

/// What to run.
#[derive(Debug, Clone)]
pub struct NpbPlan {
    pub kernels: Vec<String>,
    /// Each class with its repetitions (W runs take minutes on 4 islands: fewer of them).
    pub classes: Vec<(String, usize)>,
    pub islands: Vec<usize>,
}

impl NpbPlan {
    pub fn runs(&self) -> usize {
        let reps: usize = self.classes.iter().map(|(_, r)| r).sum();
        self.kernels.len() * (1 + self.islands.len()) * reps
    }
}

fn verified(out: &Outcome) -> bool {
    out.code == Some(0) && out.stdout.contains("Verification    = SUCCESSFUL")
}

/// Runs the plan; returns one row per kernel and class.
pub fn run_plan(
    setup: &Setup,
    plan: &NpbPlan,
    progress: &mut Progress,
) -> Result<Vec<NpbRow>, RunError> {
    let threads = THREADS.to_string();
    let env = [("OMP_NUM_THREADS", threads.as_str())];
    let mut rows = Vec::new();
    for (class, reps) in &plan.classes {
        for kernel in &plan.kernels {
            let prog = format!("glibc/npb_{kernel}");
            let mut native = NpbRun {
                verified: true,
                same_output: true,
                ..NpbRun::default()
            };
            let mut on: Vec<NpbRun> = plan
                .islands
                .iter()
                .map(|&n| NpbRun {
                    islands: n,
                    verified: true,
                    same_output: true,
                    ..NpbRun::default()
                })
                .collect();
            for rep in 0..*reps {
                let reference = setup.native(&prog, &[class], &env)?;
                let what = format!("npb {kernel} {class} natively (rep {})", rep + 1);
                progress.step(&what, &verdict(&reference));
                native.verified &= verified(&reference);
                if reference.timed_out {
                    native.error = Some("timed out".into());
                } else {
                    native.wall_ms.push(reference.wall_ms);
                }
                for run in on.iter_mut() {
                    let n = run.islands;
                    let name = format!("npb-{kernel}-{class}-{n}");
                    let (out, summary) = setup.launch(&name, n, &prog, &[class], &env, &[])?;
                    let same = out.stdout == reference.stdout
                        && out.code == reference.code
                        && out.program_stderr() == reference.stderr;
                    progress.step(
                        &format!("npb {kernel} {class} on {n} islands (rep {})", rep + 1),
                        &format!(
                            "{}{}",
                            verdict(&out),
                            if same {
                                ""
                            } else {
                                ", OUTPUT DIFFERS from native"
                            }
                        ),
                    );
                    run.verified &= verified(&out);
                    run.same_output &= same;
                    if out.timed_out {
                        run.error = Some(format!("timed out after {:.0} s", out.wall_ms / 1e3));
                        continue;
                    }
                    if out.code != Some(0) {
                        run.error = Some(format!(
                            "exit {:?}: {}",
                            out.code,
                            out.program_stderr().trim()
                        ));
                    }
                    run.wall_ms.push(out.wall_ms);
                    if let Some(s) = summary {
                        run.messages = s.stats.messages.total;
                        run.faults = s.stats.faults.total;
                        run.fault_mean_us = s.stats.fault_latency_us.mean;
                        run.stats = Some(format!("{name}.json"));
                    }
                }
            }
            rows.push(NpbRow {
                kernel: kernel.clone(),
                class: class.clone(),
                threads: THREADS,
                native,
                islands: on,
            });
        }
    }
    Ok(rows)
}

fn verdict(out: &Outcome) -> String {
    if out.timed_out {
        return format!("TIMED OUT after {:.0} s", out.wall_ms / 1e3);
    }
    format!(
        "{:.0} ms, {}",
        out.wall_ms,
        if verified(out) {
            "verified"
        } else {
            "NOT VERIFIED"
        }
    )
}
