//! Deterministic replay: pcap in, dataplane core, pcap out.
//!
//! Inputs are merged by timestamp (ties keep command-line order, then file order) and fed to
//! one `Dataplane` with time = packet timestamp. Every emitted packet is written to the pcap of
//! its port with the timestamp of the packet that caused it, so the same inputs always give
//! byte-identical outputs.

mod link;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use crate::dataplane::dns;
use crate::dataplane::resolver::DnsClient;
use crate::dataplane::{
    Counters, CountersReport, Dataplane, DropReason, Output, PortId, Tables, Target,
};
use crate::topology::{Topology, TopologyError};

pub use link::{underlay_payload, Underlay};

/// The port name of the underlay.
pub const UNDERLAY: &str = "underlay";
/// Output name of what tasks on a bridge network send to the host's side (raw IPv4).
pub const EGRESS: &str = "egress";

/// One `--in PORT=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub port: String,
    pub path: PathBuf,
}

impl std::str::FromStr for InputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((port, path)) if !port.is_empty() && !path.is_empty() => Ok(InputSpec {
                port: port.to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(format!(
                "{s:?} is not PORT=FILE (PORT: an endpoint name or `underlay`)"
            )),
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(
        "unknown port {port:?}: the local endpoints of {topology} are {known}, plus `underlay`"
    )]
    UnknownPort {
        port: String,
        topology: String,
        known: String,
    },
    #[error("port {0:?} is given twice; merge its captures first (mergecap)")]
    DuplicatePort(String),
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a readable pcap file ({source}); pcapng must be converted first: editcap -F pcap IN OUT")]
    NotPcap {
        path: String,
        source: pcap_file::PcapError,
    },
    #[error("{path}: packet {index}: {source}")]
    Read {
        path: String,
        index: u64,
        source: pcap_file::PcapError,
    },
    #[error("{path}: link type {link:?} is not supported for port {port:?} ({supported})")]
    LinkType {
        path: String,
        port: String,
        link: DataLink,
        supported: &'static str,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What a replay did, per port and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The node whose data path ran.
    pub node: String,
    pub packets_in: u64,
    pub counters: Counters,
    /// Port names by `PortId`.
    pub port_names: Vec<String>,
    /// Files written, in name order.
    pub written: Vec<PathBuf>,
}

impl Summary {
    /// The content of `counters.json`.
    pub fn counters_json(&self) -> CountersReport<'_> {
        self.counters.report(&self.port_names)
    }
}

/// Where an input's packets enter the core.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Port(PortId),
    Underlay,
}

struct Source {
    path: String,
    entry: Entry,
    link: DataLink,
    reader: PcapReader<BufReader<File>>,
    next: Option<PcapPacket<'static>>,
    index: u64,
}

impl Source {
    fn advance(&mut self) -> Result<(), ReplayError> {
        self.next = match self.reader.next_packet() {
            None => None,
            Some(Ok(p)) => Some(p.into_owned()),
            Some(Err(source)) => {
                return Err(ReplayError::Read {
                    path: self.path.clone(),
                    index: self.index,
                    source,
                })
            }
        };
        self.index += 1;
        Ok(())
    }
}

/// Keeps what the core emitted, by output file, at time `at`.
fn capture(
    tables: &Tables,
    out: &Output,
    at: Duration,
    captured: &mut BTreeMap<String, Vec<(Duration, Vec<u8>)>>,
) {
    for (target, bytes) in out.iter() {
        let name = match target {
            Target::Port(p) => tables.port(p).map_or_else(String::new, |p| p.name.clone()),
            Target::Underlay(_) => UNDERLAY.to_string(),
            Target::Egress(_) => EGRESS.to_string(),
            Target::Resolver(_) => continue,
        };
        captured.entry(name).or_default().push((at, bytes.to_vec()));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs a replay: reads `inputs`, writes `out_dir/PORT.pcap` for each port that emitted and
/// `out_dir/counters.json`.
pub fn run(topology: &Path, inputs: &[InputSpec], out_dir: &Path) -> Result<Summary, ReplayError> {
    let topo = Topology::load(topology)?;
    let tables = Arc::new(Tables::from_topology(&topo));
    let mut sources = open_inputs(&topology.display().to_string(), &tables, inputs)?;

    let mut dp = Dataplane::new(Arc::clone(&tables));
    let mut out = Output::with_capacity(16, 64 * 1024);
    let mut captured: BTreeMap<String, Vec<(Duration, Vec<u8>)>> = BTreeMap::new();
    let mut packets_in = 0u64;
    let mut last: Option<u64> = None;
    // The earliest next packet; ties go to the earlier input.
    while let Some(i) = (0..sources.len())
        .filter(|&i| sources[i].next.is_some())
        .min_by_key(|&i| sources[i].next.as_ref().map(|p| p.timestamp))
    {
        let src = &mut sources[i];
        let Some(packet) = src.next.take() else { break };
        let now = nanos(packet.timestamp);
        // Timers run in virtual time between packets (idle and drained VIP flows): their
        // packets are captured at the time they fire. The replay ends at its last packet.
        let mut prev = last.unwrap_or(now);
        while let Some(at) = dp.poll_timeout().filter(|at| *at <= now) {
            let at = at.max(prev);
            out.clear();
            dp.handle_timeout(at, &mut out);
            capture(&tables, &out, Duration::from_nanos(at), &mut captured);
            prev = at + 1;
        }
        last = Some(now);
        out.clear();
        match src.entry {
            Entry::Port(port) => dp.from_port(now, port, &packet.data, &mut out),
            Entry::Underlay => match underlay_payload(src.link, &packet.data) {
                Underlay::Ipv4(datagram) => dp.from_underlay_ipv4(now, datagram, &mut out),
                Underlay::NotIpv4 => dp.drop_underlay(now, packet.data.len(), DropReason::NotIpv4),
                Underlay::Truncated => {
                    dp.drop_underlay(now, packet.data.len(), DropReason::Malformed)
                }
            },
        }
        packets_in += 1;
        capture(&tables, &out, packet.timestamp, &mut captured);
        // A replay has no host resolvers: what would be forwarded gets SERVFAIL, as when none
        // answers.
        let forwarded: Vec<(DnsClient, Vec<u8>)> = out
            .iter()
            .filter_map(|(t, b)| match t {
                Target::Resolver(c) => Some((c, b.to_vec())),
                _ => None,
            })
            .collect();
        for (client, query) in forwarded {
            let mut answer = Vec::new();
            if dns::servfail(&query, &mut answer) {
                out.clear();
                dp.resolver_answer(now, &client, &answer, &mut out);
                capture(&tables, &out, packet.timestamp, &mut captured);
            }
        }
        src.advance()?;
    }

    let summary = Summary {
        node: tables.node_name.clone(),
        packets_in,
        counters: dp.counters().clone(),
        port_names: tables.port_names(),
        written: Vec::new(),
    };
    write_outputs(out_dir, &tables, captured, summary)
}

fn open_inputs(
    topology: &str,
    tables: &Tables,
    inputs: &[InputSpec],
) -> Result<Vec<Source>, ReplayError> {
    let mut sources: Vec<Source> = Vec::with_capacity(inputs.len());
    for (i, spec) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|s| s.port == spec.port) {
            return Err(ReplayError::DuplicatePort(spec.port.clone()));
        }
        let entry = if spec.port == UNDERLAY {
            Entry::Underlay
        } else {
            match tables.port_id(&spec.port) {
                Some(id) => Entry::Port(id),
                None => {
                    let known: Vec<_> = tables.ports.iter().map(|p| p.name.as_str()).collect();
                    return Err(ReplayError::UnknownPort {
                        port: spec.port.clone(),
                        topology: topology.to_string(),
                        known: if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        },
                    });
                }
            }
        };
        let path = spec.path.display().to_string();
        let file = File::open(&spec.path).map_err(|source| ReplayError::Open {
            path: path.clone(),
            source,
        })?;
        let reader =
            PcapReader::new(BufReader::new(file)).map_err(|source| ReplayError::NotPcap {
                path: path.clone(),
                source,
            })?;
        let link = reader.header().datalink;
        let ok = match entry {
            Entry::Port(_) => link == DataLink::ETHERNET,
            Entry::Underlay => link::underlay_supported(link),
        };
        if !ok {
            return Err(ReplayError::LinkType {
                path,
                port: spec.port.clone(),
                link,
                supported: match entry {
                    Entry::Port(_) => "endpoint ports take Ethernet captures",
                    Entry::Underlay => {
                        "the underlay takes raw IPv4, Ethernet, Linux cooked (SLL, SLL2)"
                    }
                },
            });
        }
        let mut source = Source {
            path,
            entry,
            link,
            reader,
            next: None,
            index: 0,
        };
        source.advance()?;
        sources.push(source);
    }
    Ok(sources)
}

fn write_outputs(
    out_dir: &Path,
    tables: &Tables,
    captured: BTreeMap<String, Vec<(Duration, Vec<u8>)>>,
    mut summary: Summary,
) -> Result<Summary, ReplayError> {
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReplayError::Write { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(werr(out_dir))?;
    // Outputs of an earlier run for ports that emit nothing now would mislead: remove them.
    for name in tables
        .ports
        .iter()
        .map(|p| p.name.as_str())
        .chain([UNDERLAY, EGRESS])
    {
        let path = out_dir.join(format!("{name}.pcap"));
        if path.exists() {
            std::fs::remove_file(&path).map_err(werr(&path))?;
        }
    }
    for (name, packets) in &captured {
        let path = out_dir.join(format!("{name}.pcap"));
        let datalink = if name == UNDERLAY || name == EGRESS {
            DataLink::RAW
        } else {
            DataLink::ETHERNET
        };
        let header = PcapHeader {
            datalink,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 262_144,
            ..PcapHeader::default()
        };
        let file = File::create(&path).map_err(werr(&path))?;
        let mut w = PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| {
            ReplayError::Write {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            }
        })?;
        for (ts, bytes) in packets {
            let p = PcapPacket::new(*ts, bytes.len() as u32, bytes);
            w.write_packet(&p).map_err(|e| ReplayError::Write {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            })?;
        }
        w.into_writer().flush().map_err(werr(&path))?;
        summary.written.push(path);
    }
    let path = out_dir.join("counters.json");
    let mut json =
        serde_json::to_string_pretty(&summary.counters_json()).map_err(|e| ReplayError::Write {
            path: path.display().to_string(),
            source: e.into(),
        })?;
    json.push('\n');
    std::fs::write(&path, json).map_err(werr(&path))?;
    summary.written.push(path);
    Ok(summary)
}
