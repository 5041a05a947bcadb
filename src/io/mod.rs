//! The only code that touches the OS on the packet path: worker threads with mio loops, TAP
//! devices, the data-path UDP sockets, task sandboxes (network namespaces) and the processes
//! that run in them.
//!
//! It is thin by design: read a batch, hand it to the `dataplane` core, write what the core
//! returns. Unsafe code lives here only, each block with its `SAFETY:` reason.

pub mod capture;
pub mod child;
pub mod egress;
pub mod gossip;
pub mod lock;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod process;
pub mod resolver;
pub mod seqstore;
pub mod sigpipe;
pub mod tap;
mod task;
pub mod udp;
mod underlay;
pub mod worker;

pub use node::{Node, NodeConfig, RunError};
