//! Running guest programs: natively and under `popvmm launch`, timed from outside, each with a
//! time limit (a run past it is killed and reported, never waited for).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use popvmm::api::types::Summary;

/// The environment popvmm gives a program by default; native runs get the same.
pub const DEFAULT_ENV: [(&str, &str); 2] =
    [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/")];

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The popvmm binary.
    pub popvmm: PathBuf,
    /// `images/out`: the guest programs and their root.
    pub images: PathBuf,
    /// Where `--stats-json` summaries go (`DIR/raw`).
    pub raw: PathBuf,
    /// The most one run may take.
    pub limit: Duration,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    /// The exit code (None: killed by a signal, or by us at the limit).
    pub code: Option<i32>,
    pub wall_ms: f64,
    pub timed_out: bool,
}

impl Outcome {
    /// The program's own stderr: popvmm's exit summary lines left out.
    pub fn program_stderr(&self) -> String {
        self.stderr
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("popvmm: "))
            .collect()
    }
}

/// An error that stops a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}: no summary: {1}")]
    Summary(String, String),
}

/// Runs `cmd` to its end (stdin empty), or kills it at `limit`.
pub fn run_timed(cmd: &mut Command, limit: Duration, what: &str) -> Result<Outcome, RunError> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            what: what.to_string(),
            source,
        })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let mut timed_out = false;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(Outcome {
        stdout,
        stderr,
        code: status.and_then(|s| s.code()),
        wall_ms,
        timed_out,
    })
}

impl Setup {
    /// `images/out/<prog> args` natively, from `images/out`, with popvmm's default environment
    /// plus `env`.
    pub fn native(
        &self,
        prog: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Outcome, RunError> {
        let mut cmd = Command::new(self.images.join(prog));
        cmd.args(args)
            .current_dir(&self.images)
            .env_clear()
            .envs(DEFAULT_ENV.iter().copied())
            .envs(env.iter().copied());
        run_timed(&mut cmd, self.limit, &format!("{prog} natively"))
    }

    /// `popvmm launch --islands N --rootfs images/out --stats-json raw/<name>.json [extra] --
    /// images/out/<prog> args`, from `images/out`. Returns the run and its summary (None when
    /// the run did not write one: it failed or timed out).
    pub fn launch(
        &self,
        name: &str,
        islands: usize,
        prog: &str,
        args: &[&str],
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<(Outcome, Option<Summary>), RunError> {
        let file = self.raw.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&file);
        let mut cmd = Command::new(&self.popvmm);
        cmd.arg("launch")
            .arg("--islands")
            .arg(islands.to_string())
            .arg("--rootfs")
            .arg(&self.images)
            .arg("--stats-json")
            .arg(&file);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.args(extra)
            .arg("--")
            .arg(self.images.join(prog))
            .args(args)
            .current_dir(&self.images);
        let outcome = run_timed(
            &mut cmd,
            self.limit,
            &format!("{prog} on {islands} islands"),
        )?;
        let summary = read_summary(&file).ok();
        Ok((outcome, summary))
    }
}

/// A `--stats-json` file.
pub fn read_summary(path: &Path) -> Result<Summary, RunError> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Summary(what.clone(), e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| RunError::Summary(what, e.to_string()))
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A progress line on stderr, `[done/total] what`, with the elapsed time of the whole evaluation.
#[derive(Debug)]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub started: Instant,
    pub quiet: bool,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            quiet,
        }
    }

    /// Counts one step and says what it was and how it went.
    pub fn step(&mut self, what: &str, how: &str) {
        self.done += 1;
        if !self.quiet {
            eprintln!(
                "popvmm-eval: [{:>3}/{}] {:>6.1} s  {what}: {how}",
                self.done,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
