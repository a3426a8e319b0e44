//! The paper's evaluation (§6, figure 7) in simulation: two kernels, one thread on each, both
//! streaming over a shared array of 4-byte integers for 1 to 90 iterations, reading or writing.
//! The array was allocated and filled by the first thread, so its pages start Not Replicated on
//! kernel 0 (owned by kernel 0 under IVY). Each run counts the page requests (Fetch and Fetch Write;
//! IVY's read and write requests) and the invalidations, for Popcorn and IVY on the same trace.

use std::fmt;

use coherency::{Access, Config, KernelId, MessageType};

use crate::ivy::IvyType;
use crate::sim::{simulate, Protocol, Rng, SimConfig, SimError, SimReport, Step, Workload};

/// 4-byte integers per 4 KiB page.
pub const ELEMENTS_PER_PAGE: u64 = 1024;

/// The array sizes of figure 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArraySize {
    /// 512 integers: half a page.
    LessThanPage,
    /// 1024 integers: one page.
    OnePage,
    /// 65536 integers: 64 pages.
    SixtyFourPages,
}

impl ArraySize {
    pub const ALL: [ArraySize; 3] = [
        ArraySize::LessThanPage,
        ArraySize::OnePage,
        ArraySize::SixtyFourPages,
    ];

    pub fn elements(self) -> u64 {
        match self {
            ArraySize::LessThanPage => ELEMENTS_PER_PAGE / 2,
            ArraySize::OnePage => ELEMENTS_PER_PAGE,
            ArraySize::SixtyFourPages => 64 * ELEMENTS_PER_PAGE,
        }
    }

    pub fn pages(self) -> u64 {
        self.elements().div_ceil(ELEMENTS_PER_PAGE)
    }

    pub fn name(self) -> &'static str {
        match self {
            ArraySize::LessThanPage => "<1 page",
            ArraySize::OnePage => "1 page",
            ArraySize::SixtyFourPages => "64 pages",
        }
    }
}

/// Who reads and who writes (figure 7 (b), (c), (d)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    ReadRead,
    /// Kernel 0's thread writes, kernel 1's reads.
    ReadWrite,
    WriteWrite,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [Pattern::ReadRead, Pattern::ReadWrite, Pattern::WriteWrite];

    pub fn name(self) -> &'static str {
        match self {
            Pattern::ReadRead => "read-read",
            Pattern::ReadWrite => "read-write",
            Pattern::WriteWrite => "write-write",
        }
    }

    fn access(self, kernel: KernelId) -> Access {
        match (self, kernel) {
            (Pattern::ReadRead, _) => Access::Read,
            (Pattern::ReadWrite, 0) => Access::Write,
            (Pattern::ReadWrite, _) => Access::Read,
            (Pattern::WriteWrite, _) => Access::Write,
        }
    }
}

/// The iteration counts of figure 7.
pub const ITERATIONS: [u64; 5] = [1, 10, 30, 60, 90];

/// Each thread passes over the whole array `iterations` times, one element per time unit.
#[derive(Clone, Debug)]
struct ArrayPasses {
    elements: u64,
    pattern: Pattern,
    /// Accesses left per kernel.
    left: [u64; 2],
    /// Next element per kernel.
    next: [u64; 2],
}

impl Workload for ArrayPasses {
    fn next(&mut self, kernel: KernelId, _rng: &mut Rng) -> Option<Step> {
        let k = kernel as usize;
        if self.left[k] == 0 {
            return None;
        }
        self.left[k] -= 1;
        let element = self.next[k];
        self.next[k] = (element + 1) % self.elements;
        Some(Step {
            page: element / ELEMENTS_PER_PAGE,
            access: self.pattern.access(kernel),
            delay: 1,
        })
    }
}

/// One cell of the figure, both protocols.
#[derive(Clone, Debug)]
pub struct Figure7Row {
    pub size: ArraySize,
    pub pattern: Pattern,
    pub iterations: u64,
    pub popcorn: SimReport,
    pub ivy: SimReport,
}

impl Figure7Row {
    /// Fetch + Fetch Write.
    pub fn popcorn_requests(&self) -> u64 {
        self.popcorn.count(MessageType::Fetch.name())
            + self.popcorn.count(MessageType::FetchWrite.name())
    }

    pub fn popcorn_invalids(&self) -> u64 {
        self.popcorn.count(MessageType::Invalid.name())
    }

    pub fn ivy_requests(&self) -> u64 {
        self.ivy.count(IvyType::ReadRequest.name()) + self.ivy.count(IvyType::WriteRequest.name())
    }

    pub fn ivy_invalids(&self) -> u64 {
        self.ivy.count(IvyType::Invalidate.name())
    }
}

/// Runs every cell of figure 7. `latency` is the mean one-way message latency in element accesses.
pub fn figure7(engine: Config, latency: u64, seed: u64) -> Result<Vec<Figure7Row>, SimError> {
    let mut rows = Vec::new();
    for size in ArraySize::ALL {
        for pattern in Pattern::ALL {
            for iterations in ITERATIONS {
                rows.push(figure7_cell(
                    engine, size, pattern, iterations, latency, seed,
                )?);
            }
        }
    }
    Ok(rows)
}

/// One cell of figure 7, both protocols (see [`figure7`]).
pub fn figure7_cell(
    engine: Config,
    size: ArraySize,
    pattern: Pattern,
    iterations: u64,
    latency: u64,
    seed: u64,
) -> Result<Figure7Row, SimError> {
    let run = |protocol| {
        let mut config = SimConfig::new(2, size.pages(), seed, protocol);
        config.latency = latency;
        let accesses = size.elements() * iterations;
        let mut workload = ArrayPasses {
            elements: size.elements(),
            pattern,
            left: [accesses, accesses],
            next: [0, 0],
        };
        simulate(&config, &mut workload)
    };
    let popcorn = run(Protocol::Popcorn(Config {
        kernels: 2,
        ..engine
    }))?;
    let ivy = run(Protocol::Ivy)?;
    Ok(Figure7Row {
        size,
        pattern,
        iterations,
        popcorn,
        ivy,
    })
}

/// The figure as a table.
#[derive(Debug)]
pub struct Figure7Table<'a>(pub &'a [Figure7Row]);

impl fmt::Display for Figure7Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<9} {:<12} {:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | checks",
            "array",
            "pattern",
            "iter",
            "requests",
            "invalids",
            "messages",
            "requests",
            "invalids",
            "messages"
        )?;
        writeln!(
            f,
            "{:<9} {:<12} {:>5} | {:^29} | {:^29} |",
            "", "", "", "Popcorn", "IVY (centralized manager)"
        )?;
        for row in self.0 {
            let ok = row.popcorn.violation.is_none() && row.ivy.violation.is_none();
            writeln!(
                f,
                "{:<9} {:<12} {:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {}",
                row.size.name(),
                row.pattern.name(),
                row.iterations,
                row.popcorn_requests(),
                row.popcorn_invalids(),
                row.popcorn.total_messages,
                row.ivy_requests(),
                row.ivy_invalids(),
                row.ivy.total_messages,
                if ok { "ok" } else { "VIOLATED" }
            )?;
        }
        Ok(())
    }
}
