//! A seeded mutational runner for the targets, on the stable toolchain: the committed corpus
//! first, then inputs made by mutating corpus entries (and inputs the target accepted earlier in
//! the run) with bit flips, interesting integers, the target's dictionary, splices and cuts.
//! There is no coverage feedback (that needs nightly's sanitizer coverage: cargo-fuzz); the
//! target's verdict (accepted / rejected) steers the pool a little, towards well-formed inputs.
//!
//! Everything is a function of the seed, the corpus and the iteration: a failure is replayed
//! exactly by its seed (or by the input file it is saved to).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Target;

/// The largest single allocation one input may cause: anything above is an allocation sized by
/// the input (the targets' own buffers are at most 64 KiB, the host I/O bound).
pub const MAX_ALLOCATION: usize = 1 << 20;

/// A small, fast, seedable generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A stable 64-bit hash (FNV-1a), to derive per-target seeds from names.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long and from where a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Generated inputs (after the corpus); the run ends at the first of this and `time`.
    pub iterations: Option<u64>,
    pub time: Option<Duration>,
    /// Where the target's committed inputs are (`<dir>/<target name>/*`).
    pub corpus: Option<PathBuf>,
    /// Where a failing input is written (`<dir>/<target>-<seed>-<iteration>`).
    pub failures: Option<PathBuf>,
}

/// A run that found nothing.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub corpus: usize,
    pub generated: u64,
    /// Of all inputs, those the target accepted as well formed.
    pub accepted: u64,
    pub largest_allocation: usize,
    pub slowest: Duration,
    pub elapsed: Duration,
}

/// An input that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: &'static str,
    pub seed: u64,
    /// `None`: a corpus file (`corpus_file`).
    pub iteration: Option<u64>,
    pub corpus_file: Option<PathBuf>,
    pub input: Vec<u8>,
    pub message: String,
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fuzz target {}: {}", self.target, self.message)?;
        match (&self.corpus_file, self.iteration) {
            (Some(file), _) => write!(f, "\n  corpus input {}", file.display())?,
            (None, Some(i)) => write!(
                f,
                "\n  seed {} iteration {i}; replay: scripts/fuzz --target {} --seed {} --iterations {}",
                self.seed,
                self.target,
                self.seed,
                i + 1
            )?,
            (None, None) => {}
        }
        if let Some(p) = &self.saved {
            write!(
                f,
                "\n  input saved to {}; replay: scripts/fuzz --target {} --input {}",
                p.display(),
                self.target,
                p.display()
            )?;
        }
        let shown: Vec<u8> = self.input.iter().take(96).copied().collect();
        write!(
            f,
            "\n  input ({} bytes): {:?}{}",
            self.input.len(),
            String::from_utf8_lossy(&shown),
            if self.input.len() > shown.len() {
                "..."
            } else {
                ""
            }
        )
    }
}

/// Runs `target` on one input and checks what every target must keep: no panic, and no
/// allocation larger than [`MAX_ALLOCATION`] (where the allocator is tracked: `cargo test`).
/// Returns the target's verdict (whether it accepted the input as well formed).
pub fn check(target: &Target, input: &[u8]) -> Result<bool, String> {
    super::alloc::reset();
    let r = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let largest = super::alloc::largest();
    match r {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(format!("panicked: {msg}"))
        }
        Ok(_) if largest.is_some_and(|n| n > MAX_ALLOCATION) => Err(format!(
            "allocated {} bytes at once (the bound is {MAX_ALLOCATION})",
            largest.unwrap_or(0)
        )),
        Ok(verdict) => Ok(verdict),
    }
}

/// The committed inputs of `target` under `dir`, in file-name order.
pub fn corpus(dir: &Path, target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir.join(target.name)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// Interesting integers, as every width writes them.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x1000,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x40_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One mutated input from `base` (and maybe a splice with `other`).
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8], dict: &[&[u8]], max_len: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    let rounds = 1 + rng.below(6);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                // An interesting integer of 1, 2, 4 or 8 bytes at a random place.
                let width = 1 << rng.below(4);
                let i = rng.below(len);
                let val = INTERESTING[rng.below(INTERESTING.len())];
                let val = if rng.one_in(4) {
                    val.wrapping_add(rng.below(3) as u64).wrapping_sub(1)
                } else {
                    val
                };
                let bytes = val.to_le_bytes();
                let end = (i + width).min(len);
                v[i..end].copy_from_slice(&bytes[..end - i]);
            }
            3 if !dict.is_empty() => {
                let word = dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                if rng.one_in(2) {
                    v.splice(i..i, word.iter().copied());
                } else {
                    let end = (i + word.len()).min(len);
                    v.splice(i..end, word.iter().copied());
                }
            }
            4 if len > 0 => {
                // Delete a range.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            5 if len > 0 => {
                // Duplicate a range.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let part = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, part);
            }
            6 => {
                // Insert random bytes.
                let n = 1 + rng.below(16);
                let mut b = vec![0u8; n];
                rng.fill(&mut b);
                let at = rng.below(len + 1);
                v.splice(at..at, b);
            }
            7 if len > 0 => v.truncate(rng.below(len)),
            8 if !other.is_empty() => {
                // Splice: our head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => {
                // Copy a chunk of the other input over ours.
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(32));
                    let at = rng.below(len);
                    let end = (at + n).min(len);
                    v[at..end].copy_from_slice(&other[from..from + (end - at)]);
                }
            }
            10 if len > 1 => {
                // Add or subtract a little from a byte (lengths, counts).
                let i = rng.below(len);
                v[i] = v[i].wrapping_add((rng.below(33) as u8).wrapping_sub(16));
            }
            _ => {
                let b = rng.next_u64() as u8;
                v.push(b);
            }
        }
        v.truncate(max_len);
    }
    v
}

/// The input of generated iteration `i` (a function of the seed, the pool and `i` only).
fn generate(rng: &mut Rng, pool: &[Vec<u8>], target: &Target) -> Vec<u8> {
    if pool.is_empty() || rng.one_in(16) {
        let n = rng.below(target.max_len.min(512) + 1);
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        return v;
    }
    let base = &pool[rng.below(pool.len())];
    let other = &pool[rng.below(pool.len())];
    mutate(rng, base, other, target.dict, target.max_len)
}

/// Inputs the run keeps to mutate (corpus and accepted inputs).
const POOL: usize = 512;

/// Runs the corpus, then generated inputs until the budget is spent or an invariant breaks.
pub fn fuzz(target: &Target, opts: &Options) -> Result<Outcome, Box<Failure>> {
    let started = Instant::now();
    let mut out = Outcome::default();
    let failure = |iteration, corpus_file, input: &[u8], message| {
        let saved = opts.failures.as_ref().and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            let name = match iteration {
                Some(i) => format!("{}-{}-{i}", target.name, opts.seed),
                None => format!("{}-corpus-{:016x}", target.name, hash(input)),
            };
            let p = dir.join(name);
            std::fs::write(&p, input).ok().map(|_| p)
        });
        Box::new(Failure {
            target: target.name,
            seed: opts.seed,
            iteration,
            corpus_file,
            input: input.to_vec(),
            message,
            saved,
        })
    };
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let note = |out: &mut Outcome, t: Instant, accepted: bool| {
        out.slowest = out.slowest.max(t.elapsed());
        out.largest_allocation = out
            .largest_allocation
            .max(super::alloc::largest().unwrap_or(0));
        out.accepted += u64::from(accepted);
    };
    if let Some(dir) = &opts.corpus {
        for (path, input) in corpus(dir, target) {
            let t = Instant::now();
            match check(target, &input) {
                Ok(accepted) => note(&mut out, t, accepted),
                Err(m) => return Err(failure(None, Some(path), &input, m)),
            }
            out.corpus += 1;
            pool.push(input);
        }
    }
    // The target's built-in seeds, then.
    for (k, input) in target.seeds().into_iter().enumerate() {
        let t = Instant::now();
        match check(target, &input) {
            Ok(accepted) => note(&mut out, t, accepted),
            Err(m) => {
                let m = format!("built-in seed {k}: {m}");
                return Err(failure(None, None, &input, m));
            }
        }
        out.corpus += 1;
        pool.push(input);
    }
    let mut rng = Rng::new(opts.seed ^ hash(target.name.as_bytes()));
    let mut i = 0u64;
    loop {
        if opts.iterations.is_some_and(|n| i >= n)
            || opts.time.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let input = generate(&mut rng, &pool, target);
        let t = Instant::now();
        match check(target, &input) {
            Ok(accepted) => {
                note(&mut out, t, accepted);
                // Accepted inputs are well formed: good material for more mutations.
                if accepted {
                    if pool.len() < POOL {
                        pool.push(input);
                    } else {
                        let k = out.corpus + rng.below(POOL - out.corpus.min(POOL - 1));
                        if let Some(slot) = pool.get_mut(k) {
                            *slot = input;
                        }
                    }
                }
            }
            Err(m) => return Err(failure(Some(i), None, &input, m)),
        }
        i += 1;
    }
    out.generated = i;
    out.elapsed = started.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_ok(data: &[u8]) -> bool {
        assert!(data.len() < 3 || data[..3] != *b"bug", "found the bug");
        !data.is_empty()
    }

    fn hog(data: &[u8]) -> bool {
        let v = vec![0u8; usize::from(data.first().copied().unwrap_or(0)) << 16];
        !v.is_empty()
    }

    const DICT: &[&[u8]] = &[b"bu", b"g"];

    #[test]
    fn the_runner_finds_a_planted_bug_and_replays_it() {
        let t = Target {
            name: "planted",
            about: "",
            max_len: 64,
            dict: DICT,
            run: never_ok,
        };
        let opts = Options {
            seed: 7,
            iterations: Some(200_000),
            time: None,
            corpus: None,
            failures: None,
        };
        let f = fuzz(&t, &opts).expect_err("the planted bug is found");
        assert!(f.message.contains("found the bug"), "{}", f.message);
        let i = f.iteration.expect("a generated input");
        // The same seed and iteration count give the same input.
        let again = fuzz(
            &t,
            &Options {
                iterations: Some(i + 1),
                ..opts.clone()
            },
        )
        .expect_err("replayed");
        assert_eq!(again.input, f.input);
        assert!(f.to_string().contains("--seed 7"), "{f}");
        // One iteration less finds nothing.
        assert!(fuzz(
            &t,
            &Options {
                iterations: Some(i),
                ..opts
            }
        )
        .is_ok());
    }

    #[test]
    fn large_allocations_are_failures() {
        let t = Target {
            name: "hog",
            about: "",
            max_len: 4,
            dict: &[],
            run: hog,
        };
        assert_eq!(check(&t, &[1]), Ok(true));
        let e = check(&t, &[200]).expect_err("13 MB at once");
        assert!(e.contains("allocated"), "{e}");
    }
}
