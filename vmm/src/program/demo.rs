//! The demo `popvmm launch` runs when given no program: `images/out/glibc/demo` (pthreads, one
//! worker thread per island on shared arrays), first natively as a child process, then on the
//! islands in this process through [`LaunchConfig::run_captured`], with the same arguments, root,
//! empty stdin and captured stdout and stderr; the two runs must print the same and end the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{CaptureFile, Captured, LaunchConfig, LaunchError};
use crate::kernel::ExitStatus;

/// Errors of running the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "no program given, and the demo is not built: run scripts/setup (or set POPVMM_IMAGES to \
         a directory holding glibc/demo)"
    )]
    NoImages,
    #[error("no program given, and {0} is missing: run scripts/setup")]
    Missing(PathBuf),
    #[error("cannot run the demo natively: {0}")]
    Native(std::io::Error),
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl DemoError {
    /// popvmm's exit status for this error: 2 when there is no demo to run.
    pub fn status(&self) -> u8 {
        match self {
            DemoError::NoImages | DemoError::Missing(_) => 2,
            DemoError::Native(_) => 1,
            DemoError::Launch(e) => e.status(),
        }
    }
}

/// The demo program and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    /// The guest images directory: the root of the island run, the cwd of the native one.
    pub images: PathBuf,
    pub exe: PathBuf,
    /// Worker threads: one per island, at least two.
    pub threads: usize,
}

/// What the demo printed natively and on the islands, and what the island run cost.
#[derive(Debug, Clone)]
pub struct DemoRun {
    pub native: Output,
    pub islands: Captured,
}

/// A native run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl DemoRun {
    /// The island run printed exactly what the native one did, on both streams, and ended the
    /// same way.
    pub fn same(&self) -> bool {
        self.native.stdout == self.islands.stdout
            && self.native.stderr == self.islands.stderr
            && self.native.status == self.islands.status
    }
}

/// Where the guest images are: `POPVMM_IMAGES`, or `images/out` next to the repository popvmm was
/// built in.
fn images_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("POPVMM_IMAGES") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    // target/{release,debug}/popvmm -> the repository's images/out
    let repo = exe.parent()?.parent()?.parent()?;
    let dir = repo.join("images/out");
    dir.is_dir().then_some(dir)
}

impl Demo {
    /// The demo for `islands` islands, if it is built.
    pub fn find(islands: usize) -> Result<Demo, DemoError> {
        let images = images_dir().ok_or(DemoError::NoImages)?;
        let exe = images.join("glibc/demo");
        if !exe.is_file() {
            return Err(DemoError::Missing(exe));
        }
        Ok(Demo {
            images,
            exe,
            threads: islands.max(2),
        })
    }

    /// Its command line (the same natively and on the islands).
    pub fn argv(&self) -> Vec<String> {
        vec![self.exe.display().to_string(), self.threads.to_string()]
    }

    pub fn images(&self) -> &Path {
        &self.images
    }

    /// Runs the demo natively, then on the islands `config` describes (its program, root and
    /// stdio are the demo's).
    pub fn run(&self, mut config: LaunchConfig, started: Instant) -> Result<DemoRun, DemoError> {
        let native = self.run_native()?;
        config.argv = self.argv();
        config.rootfs = Some(self.images.clone());
        let islands = config.run_captured(started)?;
        Ok(DemoRun { native, islands })
    }

    /// The native run: a child process in the images directory, stdin empty, its stdout and
    /// stderr captured the way the island run's are (so both see the same kind of files).
    fn run_native(&self) -> Result<Output, DemoError> {
        let stdout = CaptureFile::new(c"demo-stdout").map_err(DemoError::Native)?;
        let stderr = CaptureFile::new(c"demo-stderr").map_err(DemoError::Native)?;
        let status = Command::new(&self.exe)
            .arg(self.threads.to_string())
            .current_dir(&self.images)
            .stdin(Stdio::null())
            .stdout(stdout.writer().map_err(DemoError::Native)?)
            .stderr(stderr.writer().map_err(DemoError::Native)?)
            .status()
            .map_err(DemoError::Native)?;
        Ok(Output {
            stdout: stdout.contents().map_err(DemoError::Native)?,
            stderr: stderr.contents().map_err(DemoError::Native)?,
            status: exit_status(status),
        })
    }
}

/// A child's status as the island kernel reports a program's.
fn exit_status(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        // A waited-for child either exited or was killed; keep the raw status otherwise.
        (None, None) => ExitStatus::Code(s.into_raw()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{FaultStats, LatencyUs, MessageStats, Stats, Summary};
    use std::collections::BTreeMap;

    fn captured(stdout: &str, status: ExitStatus) -> Captured {
        Captured {
            stdout: stdout.into(),
            stderr: Vec::new(),
            status,
            summary: Summary {
                stats: Stats {
                    islands: 2,
                    messages: MessageStats {
                        total: 0,
                        bytes: 0,
                        by_type: BTreeMap::new(),
                        by_link: vec![],
                    },
                    faults: FaultStats {
                        total: 0,
                        read_missing: 0,
                        write_missing: 0,
                        write_protect: 0,
                        resolved: 0,
                        local: 0,
                        prefetched: 0,
                        read_ahead: 0,
                        read_ahead_used: 0,
                        read_ahead_late: 0,
                        read_ahead_dropped: 0,
                        by_island: vec![],
                    },
                    fault_latency_us: LatencyUs {
                        mean: None,
                        p50: None,
                        p99: None,
                    },
                    stale_messages: 0,
                    hold_windows: 0,
                    held_us: 0,
                    ranges: Default::default(),
                    vdso_calls: 0,
                    time_syscalls: 0,
                    migrations: 0,
                    migration_latency_us: LatencyUs::default(),
                    fault_latency_histogram: vec![],
                },
                hot_pages: None,
                pages: None,
            },
        }
    }

    #[test]
    fn runs_are_the_same_only_if_output_and_status_are() {
        let native = Output {
            stdout: b"demo: ok\n".to_vec(),
            stderr: Vec::new(),
            status: ExitStatus::Code(0),
        };
        let run = |islands| DemoRun {
            native: native.clone(),
            islands,
        };
        assert!(run(captured("demo: ok\n", ExitStatus::Code(0))).same());
        assert!(!run(captured("demo: ok", ExitStatus::Code(0))).same());
        assert!(!run(captured("demo: ok\n", ExitStatus::Code(1))).same());
        assert!(!run(captured("demo: ok\n", ExitStatus::Signal(9))).same());
        let mut noisy = captured("demo: ok\n", ExitStatus::Code(0));
        noisy.stderr = b"warning\n".to_vec();
        assert!(!run(noisy).same());
    }

    #[test]
    fn native_runs_are_captured() {
        // A shell script stands in for the demo: the capture and the status are what is tested.
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("popvmm-demo-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let exe = dir.join("demo");
        std::fs::write(
            &exe,
            "#!/bin/sh\necho \"$1 threads in $(pwd)\"; echo err >&2; exit 3\n",
        )
        .expect("write the script");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let demo = Demo {
            images: dir.clone(),
            exe,
            threads: 4,
        };
        let out = demo.run_native().expect("native run");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("4 threads in {}\n", dir.display())
        );
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(3));
        let killed = Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .status()
            .expect("sh");
        assert_eq!(exit_status(killed), ExitStatus::Signal(9));
    }
}
