//! The control plane: certificates and join tokens, the persisted store, the manager's cluster
//! protocol on 2377 (mutual TLS), the node agent, and the daemon that ties them together.

pub mod addr;
pub mod allocator;
pub mod ca;
pub mod daemon;
pub mod dispatcher;
pub mod keys;
pub mod logs;
pub mod manager;
pub mod network;
pub mod raft;
pub mod raft_net;
pub mod raft_store;
pub mod rpc;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod tls;
pub mod token;
