//! The island kernel: the Linux system calls of the program's threads, served on the host, one
//! kernel per island, cooperating only by messages.
//!
//! Modules, from the bottom up (each imports only modules below it):
//!
//! | module | what |
//! |---|---|
//! | `errno` | errno values, system call results, how a program ended |
//! | `wait` | how a thread waits in the island kernel (its wake-up, a deadline, when it gives up) |
//! | `vma`, `uaccess` | the layout (`AddressSpace`, pure) and the only path to the program's memory (`UserMemory`) |
//! | `futex`, `signal` | the futex wait queues and the signal actions (tables; the origin owns one of each) |
//! | `messages`, `wire`, `link` | what island kernels say to each other, its bytes, and the request/reply layer |
//! | `services` | the services port: how an island reaches the program's process-wide services |
//! | `thread`, `island` | a thread's kernel-side state; one island's own state (VM, memory, coherency layer, threads, vCPUs) |
//! | `fs`, `mm`, `sigframe` | files (descriptor table, root, file calls), memory calls on one island, signal frames |
//! | `syscall` | the system-call table, by family (`fs`, `mm`, `futex`, `signal`, `time`, `thread`, `process`) |
//! | `origin`, `member` | the two implementations of the services port: the owner's, and requests to it |
//! | `vdso` | the vDSO in each island's kernel area and the thread that keeps its clock pages current |
//! | `workers`, `vcpu_loop`, `service_loop` | the threads that run an island: a worker pool, one vCPU loop per program thread, one service loop |
//!
//! Who owns what: an [`Island`] owns its VM, memory, layout view, coherency layer, link, local
//! threads and vCPU pool. The origin's services ([`Origin`]) own the program's files, signal
//! actions, futex table, thread directory and placement, the layout's authority and the exit
//! status; every other island reaches them by messages ([`Member`]).

pub mod errno;
pub mod fs;
pub mod futex;
pub mod island;
pub mod link;
pub mod member;
pub mod messages;
pub mod mm;
pub mod origin;
pub mod service_loop;
pub mod services;
pub mod sigframe;
pub mod signal;
pub mod syscall;
pub mod thread;
pub mod uaccess;
pub mod vcpu_loop;
pub mod vdso;
pub mod vma;
pub mod wait;
pub mod wire;
pub mod workers;

pub use errno::{Errno, ExitStatus, SysResult};
pub use island::{Island, IslandParts, KernelConfig};
pub use member::Member;
pub use messages::{IslandId, ORIGIN};
pub use origin::{Origin, Placement};
pub use services::Services;
pub use thread::{ThreadState, ThreadStatus};
