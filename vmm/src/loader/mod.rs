//! Loading a static x86-64 Linux executable onto an island: ELF parsing and segment loading
//! (`elf`), and the initial stack with argv, envp and the auxiliary vector (`stack`).

pub mod elf;
pub mod stack;

pub use elf::{read_executable, ElfImage, LoaderError};
