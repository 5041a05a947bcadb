//! `swarmnet replay`: a capture through the data path, deterministically.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::replay::{self, InputSpec, UNDERLAY};

/// Replays pcap captures through one node's data path and writes what it emits.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The node's topology file (TOML).
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// A capture entering at PORT: a local endpoint's name (Ethernet) or `underlay`
    /// (raw IPv4, Ethernet or Linux cooked). Repeat for several ports.
    #[arg(long = "in", value_name = "PORT=FILE", required = true)]
    pub inputs: Vec<InputSpec>,
    /// Where to write PORT.pcap for each port that emitted, and counters.json.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let summary =
        replay::run(&args.topology, &args.inputs, &args.out_dir).context("replay failed")?;
    let c = &summary.counters;
    println!(
        "replayed {} packets through node {}",
        summary.packets_in, summary.node
    );
    println!("{:<24} {:>8} {:>8}", "PORT", "IN", "OUT");
    for (name, p) in summary.port_names.iter().zip(c.ports.iter()) {
        println!("{:<24} {:>8} {:>8}", name, p.rx_packets, p.tx_packets);
    }
    println!(
        "{:<24} {:>8} {:>8}",
        UNDERLAY, c.underlay.rx_packets, c.underlay.tx_packets
    );
    let drops = c.drops_by_name();
    if drops.is_empty() {
        println!("drops: none");
    } else {
        let list: Vec<String> = drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("drops: {}", list.join(" "));
    }
    let e = &c.events;
    println!(
        "events: arp_replies={} icmp_frag_needed={} packets_fragmented={} fragments_created={}",
        e.arp_replies, e.icmp_frag_needed, e.packets_fragmented, e.fragments_created
    );
    for path in &summary.written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
