//! `swarmnet capture`: frames as the data path of the daemon's node sees them, written as pcap
//! (to a file, or to standard output for `| tshark -r -`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use crate::api::capture::{END, LINKTYPE_ETHERNET, MAGIC};
use crate::api::client::query_value;
use crate::io::capture::{Filter, MAX_SNAPLEN};

/// `swarmnet capture` arguments.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// A network (its tasks' ports on this node, or with --underlay its VXLAN and ESP), a task
    /// (`web.1`, its full name) or a service (its tasks on this node).
    pub target: String,
    /// Capture on NODE (ID, ID prefix or hostname) instead of the daemon's own node; served by
    /// managers, through the swarm's connections (a worker's daemon cannot be reached).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Write the pcap to FILE, `-` for standard output (the default when it is not a terminal).
    #[arg(short = 'w', value_name = "FILE|-")]
    pub write: Option<PathBuf>,
    /// Stop after COUNT frames.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Stop after SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Bytes kept of each frame.
    #[arg(long, default_value_t = MAX_SNAPLEN, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SNAPLEN)))]
    pub snaplen: u32,
    /// The inner Ethernet frames, as the tasks send and receive them (decrypted on an
    /// encrypted network, on managers): the default.
    #[arg(long, conflicts_with = "underlay")]
    pub inner: bool,
    /// The underlay's IPv4 datagrams (VXLAN, ESP) as they leave and arrive.
    #[arg(long)]
    pub underlay: bool,
    /// A filter in tcpdump's language, the subset `[src|dst] host A`, `[src|dst] net CIDR`,
    /// `[src|dst] port N`, `ip`, `tcp`, `udp`, `icmp`, `arp`, with `and`, `or`, `not` and
    /// parentheses (e.g. `tcp port 80 and not host 10.0.1.2`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub filter: Vec<String>,
}

/// Runs `swarmnet capture`.
pub fn run(host: Option<&str>, args: CaptureArgs) -> anyhow::Result<()> {
    let filter = args.filter.join(" ");
    Filter::parse(std::slice::from_ref(&filter)).map_err(anyhow::Error::msg)?;
    let to_stdout = match &args.write {
        Some(p) => p.as_os_str() == "-",
        None => true,
    };
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("a capture is binary (pcap): give -w FILE, or pipe it (`| tshark -r -`)");
    }
    let out: Box<dyn Write> = match &args.write {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut route = format!(
        "/v{}/swarmnet/capture?target={}&snaplen={}&filter={}",
        crate::api::docker::API_VERSION,
        query_value(&args.target),
        args.snaplen,
        query_value(&filter)
    );
    if args.underlay {
        route.push_str("&underlay=1");
    }
    if let Some(node) = &args.node {
        route.push_str(&format!("&node={}", query_value(node)));
    }
    if let Some(c) = args.count {
        route.push_str(&format!("&count={c}"));
    }
    if let Some(d) = args.duration {
        route.push_str(&format!("&duration={d}"));
    }
    let client = super::daemon::client(host)?;
    let mut reader = StreamReader::new(out, args.snaplen);
    let result = super::daemon::block_on(client.stream(&route, |data| reader.feed(data)))?;
    reader.finish()?;
    result?;
    if reader.writer.is_some() && reader.dropped.is_none() {
        // Without its closing record the stream did not end by its count or duration.
        bail!(
            "the capture stopped early after {} frames: the daemon, or the node that ran it, stopped or was cut off",
            reader.frames
        );
    }
    match (reader.frames, reader.dropped) {
        (1, Some(0) | None) => eprintln!("1 frame captured"),
        (n, Some(0) | None) => eprintln!("{n} frames captured"),
        (n, Some(d)) => eprintln!(
            "{n} frames captured; {d} dropped (the capture's ring was full: the reader fell behind)"
        ),
    }
    Ok(())
}

/// The output, shared between the pcap writer and the reader that flushes it after each piece.
#[derive(Clone)]
struct Shared(std::rc::Rc<std::cell::RefCell<Box<dyn Write>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Turns the daemon's capture stream into pcap as it arrives.
struct StreamReader {
    out: Shared,
    writer: Option<PcapWriter<Shared>>,
    snaplen: u32,
    pending: Vec<u8>,
    frames: u64,
    dropped: Option<u64>,
    error: Option<anyhow::Error>,
}

impl StreamReader {
    fn new(out: Box<dyn Write>, snaplen: u32) -> Self {
        StreamReader {
            out: Shared(std::rc::Rc::new(std::cell::RefCell::new(out))),
            writer: None,
            snaplen,
            pending: Vec::new(),
            frames: 0,
            dropped: None,
            error: None,
        }
    }

    /// Takes a piece of the stream; false to stop reading (an error, or the end record).
    fn feed(&mut self, data: &[u8]) -> bool {
        self.pending.extend_from_slice(data);
        match self.drain() {
            Ok(go_on) => go_on,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    fn drain(&mut self) -> anyhow::Result<bool> {
        let mut at = 0;
        if self.writer.is_none() {
            if self.pending.len() < 8 {
                return Ok(true);
            }
            if &self.pending[..4] != MAGIC {
                bail!("the daemon's answer is not a capture stream");
            }
            let link = u32::from_le_bytes(self.pending[4..8].try_into().unwrap_or_default());
            let header = PcapHeader {
                datalink: if link == LINKTYPE_ETHERNET {
                    DataLink::ETHERNET
                } else {
                    DataLink::RAW
                },
                ts_resolution: TsResolution::NanoSecond,
                snaplen: self.snaplen,
                ..PcapHeader::default()
            };
            self.writer = Some(
                PcapWriter::with_header(self.out.clone(), header)
                    .context("cannot write the pcap header")?,
            );
            at = 8;
        }
        let mut go_on = true;
        while self.pending.len() >= at + 16 {
            let word = |i: usize| {
                u32::from_le_bytes(self.pending[i..i + 4].try_into().unwrap_or_default())
            };
            let ts = u64::from_le_bytes(self.pending[at..at + 8].try_into().unwrap_or_default());
            let (len, cap) = (word(at + 8), word(at + 12) as usize);
            if self.pending.len() < at + 16 + cap {
                break;
            }
            let data = &self.pending[at + 16..at + 16 + cap];
            if len == END {
                self.dropped = Some(u64::from_le_bytes(data.try_into().unwrap_or_default()));
                go_on = false;
            } else if let Some(w) = self.writer.as_mut() {
                let packet = PcapPacket::new(std::time::Duration::from_nanos(ts), len, data);
                w.write_packet(&packet)
                    .context("cannot write the capture")?;
                self.frames += 1;
            }
            at += 16 + cap;
        }
        self.pending.drain(..at);
        // Each piece reaches the file or the pipe at once (a Ctrl-C loses nothing written).
        self.out.flush().context("cannot write the capture")?;
        Ok(go_on)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush().context("cannot write the capture")?;
        Ok(())
    }
}
