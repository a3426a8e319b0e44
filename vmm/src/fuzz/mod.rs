//! Fuzz targets for everything popvmm reads from outside, on the stable toolchain.
//!
//! | target | input | invariants beyond "no panic, no allocation sized by the input" |
//! |---|---|---|
//! | `http_request` | bytes a client sends the control socket (the server's reader on a socket pair) | a 4xx for what it refuses, whose bytes `ctl` parses back; a request within its bounds; its action goes to HTTP and back unchanged |
//! | `control_action` | method, path, query and body (structured) into `ControlAction::from_http` | the same, for many more paths, queries and bodies |
//! | `http_response` | bytes `ctl` reads back | (none) |
//! | `elf` | an executable file: `ElfImage::parse`, then `load_plan` (what `load` maps and copies) | every segment and copy inside the file and the user address space, the entry in a segment |
//! | `island_decode`, `page_decode`, `range_decode` | a frame's bytes into an island message, a coherency message or a range of them | an error, or a message whose encoding is exactly those bytes (a range: consecutive pages of one kind, 1 to 32) |
//! | `island_round_trip`, `page_round_trip`, `range_round_trip` | arbitrary messages (structured) | `decode(encode(x)) == x`; every shorter frame refused; `encode` refuses only what `decode` would |
//! | `file_calls` | the program's memory and up to 8 file-family system calls with hostile arguments, through the table's own handlers | a value or an errno in Linux's range; counts within what was asked |
//!
//! How they run: the seeded mutational runner (`runner.rs`) over each target's seeds and its
//! committed corpus (`vmm/fuzz/corpus/<target>/`); a short run of every target with a fixed seed
//! in `cargo test` (`tests`, below), longer ones with `scripts/fuzz [--minutes N] [--seed S]`,
//! which print the seed and save a failing input to replay. With the `fuzzing` feature the
//! targets are public, for a coverage-guided fuzzer on nightly (`vmm/fuzz/`, cargo-fuzz).

mod alloc;
mod elf;
mod http;
pub mod runner;
mod syscall;
mod wire;

pub use runner::{fuzz, Failure, Options, Outcome};

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// The longest input worth making.
    pub max_len: usize,
    /// Tokens the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Runs one input; panics when an invariant breaks. Returns whether the input was accepted
    /// as well formed (the runner keeps those to mutate further).
    pub run: fn(&[u8]) -> bool,
}

impl Target {
    /// Built-in seeds (besides the committed corpus).
    pub fn seeds(&self) -> Vec<Vec<u8>> {
        match self.name {
            "elf" => elf::seeds(),
            "island_decode" => wire::island_seeds(),
            "page_decode" => wire::page_seeds(),
            "range_decode" => wire::range_seeds(),
            _ => Vec::new(),
        }
    }
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "http_request",
        about: "bytes of a control socket request, through the server's reader",
        max_len: 24 << 10,
        dict: http::DICT,
        run: http::http_request,
    },
    Target {
        name: "control_action",
        about: "method, path, query and body into a typed control action",
        max_len: 256,
        dict: &[],
        run: http::control_action,
    },
    Target {
        name: "http_response",
        about: "a control socket's answer as ctl parses it",
        max_len: 4096,
        dict: http::DICT,
        run: http::http_response,
    },
    Target {
        name: "elf",
        about: "an executable: parse, and what load maps and copies",
        max_len: 16 << 10,
        dict: elf::DICT,
        run: elf::elf_image,
    },
    Target {
        name: "island_decode",
        about: "a frame's bytes as an island message",
        max_len: 4400,
        dict: wire::DICT,
        run: wire::island_decode,
    },
    Target {
        name: "island_round_trip",
        about: "arbitrary island messages, encoded and decoded",
        max_len: 2048,
        dict: &[],
        run: wire::island_round_trip,
    },
    Target {
        name: "page_decode",
        about: "a frame's bytes as a coherency message",
        max_len: 4200,
        dict: wire::DICT,
        run: wire::page_decode,
    },
    Target {
        name: "page_round_trip",
        about: "arbitrary coherency messages, encoded and decoded",
        max_len: 256,
        dict: &[],
        run: wire::page_round_trip,
    },
    Target {
        name: "range_decode",
        about: "a frame's bytes as a range of coherency messages",
        max_len: 3 * 4200,
        dict: wire::DICT,
        run: wire::range_decode,
    },
    Target {
        name: "range_round_trip",
        about: "arbitrary ranges of coherency messages, encoded and decoded",
        max_len: 512,
        dict: &[],
        run: wire::range_round_trip,
    },
    Target {
        name: "file_calls",
        about: "file-family system calls with hostile arguments and memory",
        max_len: 4096,
        dict: &[],
        run: syscall::file_calls_target,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Removes what the targets left on the host (the file target's scratch root).
pub fn cleanup() {
    syscall::cleanup();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// `vmm/fuzz/corpus`.
    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
    }

    fn failures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures")
    }

    /// Runs `t` with `opts`, and panics with the replay line on a failure.
    fn run(t: &Target, opts: &Options) -> Outcome {
        match fuzz(t, opts) {
            Ok(o) => o,
            Err(f) => panic!("{f}"),
        }
    }

    /// The CI run: every target, its corpus, then a fixed number of inputs from a fixed seed.
    #[test]
    fn every_target_survives_a_short_seeded_run() {
        let mut total = Duration::ZERO;
        for t in TARGETS {
            let iterations = match t.name {
                "file_calls" => 5_000,
                _ => 30_000,
            };
            let o = run(
                t,
                &Options {
                    seed: 1,
                    iterations: Some(iterations),
                    time: None,
                    corpus: Some(corpus_dir()),
                    failures: Some(failures_dir()),
                },
            );
            total += o.elapsed;
            eprintln!(
                "fuzz {}: {} corpus + {} generated inputs ({} accepted) in {:.2} s; largest allocation {} bytes",
                t.name,
                o.corpus,
                o.generated,
                o.accepted,
                o.elapsed.as_secs_f64(),
                o.largest_allocation
            );
            assert!(o.accepted > 0, "{}: no input was ever accepted", t.name);
        }
        cleanup();
        eprintln!("fuzz: all targets in {:.1} s", total.as_secs_f64());
    }

    /// `scripts/fuzz`: runs from the environment (POPVMM_FUZZ_SEED, POPVMM_FUZZ_SECONDS,
    /// POPVMM_FUZZ_TARGET, POPVMM_FUZZ_ITERATIONS, POPVMM_FUZZ_INPUT).
    #[test]
    #[ignore = "long: run by scripts/fuzz"]
    fn long_run() {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let seed: u64 = var("POPVMM_FUZZ_SEED")
            .map(|s| s.parse().expect("POPVMM_FUZZ_SEED: a number"))
            .unwrap_or(1);
        let seconds: f64 = var("POPVMM_FUZZ_SECONDS")
            .map(|s| s.parse().expect("POPVMM_FUZZ_SECONDS: a number"))
            .unwrap_or(60.0);
        let iterations = var("POPVMM_FUZZ_ITERATIONS")
            .map(|s| s.parse::<u64>().expect("POPVMM_FUZZ_ITERATIONS: a number"));
        let targets: Vec<&Target> = match var("POPVMM_FUZZ_TARGET") {
            Some(name) => vec![target(&name).unwrap_or_else(|| {
                panic!(
                    "no fuzz target {name:?}; targets: {}",
                    TARGETS
                        .iter()
                        .map(|t| t.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })],
            None => TARGETS.iter().collect(),
        };
        if let Some(file) = var("POPVMM_FUZZ_INPUT") {
            let input = std::fs::read(&file).expect("read the input");
            for t in &targets {
                match runner::check(t, &input) {
                    Ok(accepted) => {
                        eprintln!("fuzz {}: {file}: passes (accepted: {accepted})", t.name)
                    }
                    Err(m) => panic!("fuzz target {}: {file}: {m}", t.name),
                }
            }
            return;
        }
        let share = Duration::from_secs_f64(seconds / targets.len() as f64);
        eprintln!(
            "fuzz: seed {seed}, {seconds} s over {} targets",
            targets.len()
        );
        for t in targets {
            let o = run(
                t,
                &Options {
                    seed,
                    iterations,
                    time: if iterations.is_some() {
                        None
                    } else {
                        Some(share)
                    },
                    corpus: Some(corpus_dir()),
                    failures: Some(failures_dir()),
                },
            );
            eprintln!(
                "fuzz {}: seed {seed}: {} corpus + {} generated inputs ({} accepted) in {:.1} s, slowest {:.1} ms, largest allocation {} bytes",
                t.name,
                o.corpus,
                o.generated,
                o.accepted,
                o.elapsed.as_secs_f64(),
                o.slowest.as_secs_f64() * 1e3,
                o.largest_allocation
            );
        }
        cleanup();
    }
}
