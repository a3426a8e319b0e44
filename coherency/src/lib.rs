//! The page coherency protocol of Popcorn Linux (paper §4 and §5.2) as a pure state machine.

pub mod engine;
pub mod figure7;
pub mod ivy;
pub mod message;
pub mod model;
pub mod sim;
pub mod state;
pub mod types;

pub use engine::{Config, Engine, Host, MapChange, Mutant, PageView, ProtocolError};
pub use message::{Message, MessageKind, MessageType, Voter};
pub use state::{FetchingSub, Mapping, State};
pub use types::{Access, AccessToken, KernelId, KernelSet, PageId, MAX_KERNELS};
