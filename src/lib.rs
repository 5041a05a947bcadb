//! swarmnet: Docker-swarm-style service networking in one userspace binary.
//!
//! Layers (see DESIGN.md): `wire` (checked views over packet bytes), `dataplane` (the sans-IO
//! forwarding core), `replay` (pcap in, core, pcap out), `topology` (a node's static view), `control` (swarm membership, certificates, cluster state),
//! `api` (the daemon's local API), `cli`.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod control;
pub mod dataplane;
pub mod gossip;
#[allow(unsafe_code)]
pub mod io;
pub mod replay;
pub mod topology;
pub mod virt;
pub mod wire;
