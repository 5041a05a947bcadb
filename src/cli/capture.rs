//! `swarmnet capture`: frames as the data path of the daemon's node sees them, written as pcap
//! (to a file, or to standard output for `| tshark -r -`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use pcap_file::pcap::{PcapHeader, PcapWriter, RawPcapPacket};
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
        let result = if self.pending.is_empty() {
            // Whole records straight from the piece; only a record cut short is kept.
            self.drain(data).map(|(go_on, used)| {
                self.pending.extend_from_slice(&data[used..]);
                go_on
            })
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            self.drain(&pending).map(|(go_on, used)| {
                pending.drain(..used);
                self.pending = pending;
                go_on
            })
        };
        match result {
            Ok(go_on) => go_on,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    /// Writes the whole records of `data`: whether to read on, and the bytes used.
    fn drain(&mut self, data: &[u8]) -> anyhow::Result<(bool, usize)> {
        let mut at = 0;
        if self.writer.is_none() {
            let Some(head) = data.get(..8) else {
                return Ok((true, 0));
            };
            if &head[..4] != MAGIC {
                bail!("the daemon's answer is not a capture stream");
            }
            let link = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let header = PcapHeader {
                datalink: if link == LINKTYPE_ETHERNET {
                    DataLink::ETHERNET
                } else {
                    DataLink::RAW
                },
                ts_resolution: TsResolution::NanoSecond,
                snaplen: self.snaplen,
                endianness: pcap_file::Endianness::Little,
                ..PcapHeader::default()
            };
            self.writer = Some(
                PcapWriter::with_header(self.out.clone(), header)
                    .context("cannot write the pcap header")?,
            );
            at = 8;
        }
        let mut go_on = true;
        let mut records = crate::io::capture::records(&data[at..]);
        for r in records.by_ref() {
            if r.len == END {
                self.dropped = Some(u64::from_le_bytes(r.data.try_into().unwrap_or_default()));
                go_on = false;
                break;
            }
            if let Some(w) = self.writer.as_mut() {
                let packet = RawPcapPacket {
                    ts_sec: u32::try_from(r.at / 1_000_000_000).unwrap_or(u32::MAX),
                    ts_frac: (r.at % 1_000_000_000) as u32,
                    incl_len: r.data.len() as u32,
                    orig_len: r.len,
                    data: std::borrow::Cow::Borrowed(r.data),
                };
                w.write_raw_packet(&packet)
                    .context("cannot write the capture")?;
                self.frames += 1;
            }
        }
        let used = at + records.at;
        // Each piece reaches the file or the pipe at once (a Ctrl-C loses nothing written).
        self.out.flush().context("cannot write the capture")?;
        Ok((go_on, used))
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush().context("cannot write the capture")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Sink(Rc<RefCell<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Reads `pieces` as the daemon's stream: the pcap written, frames and dropped.
    fn read(pieces: &[&[u8]]) -> (Vec<u8>, u64, Option<u64>) {
        let out = Rc::new(RefCell::new(Vec::new()));
        let mut r = StreamReader::new(Box::new(Sink(out.clone())), 65_535);
        for p in pieces {
            if !r.feed(p) {
                break;
            }
        }
        r.finish().unwrap();
        let bytes = out.borrow().clone();
        (bytes, r.frames, r.dropped)
    }

    #[test]
    fn a_stream_cut_anywhere_gives_the_same_pcap() {
        let mut stream = crate::api::capture::header(LINKTYPE_ETHERNET);
        for (i, n) in [60usize, 1514, 0].into_iter().enumerate() {
            crate::io::capture::put_record(
                &mut stream,
                1_700_000_000_000_000_000 + i as u64,
                n as u32,
                &vec![i as u8; n],
            );
        }
        stream.extend(crate::api::capture::end(5));
        stream.extend_from_slice(b"after the end");
        let (whole, frames, dropped) = read(&[&stream]);
        assert_eq!((frames, dropped), (3, Some(5)));
        let packets: Vec<_> = {
            let mut reader = pcap_file::pcap::PcapReader::new(&whole[..]).unwrap();
            let mut v = Vec::new();
            while let Some(p) = reader.next_packet() {
                let p = p.unwrap();
                v.push((p.timestamp.subsec_nanos(), p.orig_len, p.data.len()));
            }
            v
        };
        assert_eq!(packets, vec![(0, 60, 60), (1, 1514, 1514), (2, 0, 0)]);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(read(&[a, b]), (whole.clone(), 3, Some(5)), "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read(&bytewise), (whole, 3, Some(5)));
        // Not a capture stream: said so.
        let out = Rc::new(RefCell::new(Vec::new()));
        let mut r = StreamReader::new(Box::new(Sink(out)), 1500);
        assert!(!r.feed(b"{\"message\":\"no\"}"));
        assert!(r.finish().is_err());
    }
}
