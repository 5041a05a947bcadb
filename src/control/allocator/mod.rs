//! The managers' allocator: what a new swarm object is given and what it must not take from
//! another. Pure functions over the objects in the store, so the leader can call them inside a
//! store transaction and tests need no cluster.
//!
//! - [`ipam`]: subnets from the address pools, gateways, IP ranges, task addresses;
//! - [`vni`]: VXLAN IDs from 4096 up (ingress first);
//! - [`network`]: every rule of `network create`, then its allocation.

pub mod ipam;
pub mod network;
pub mod vni;
