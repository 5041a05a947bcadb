//! Live capture of what the data path carries (`swarmnet capture`): the inner Ethernet frames
//! of chosen ports (a network's, a task's), as the tasks send and receive them (decrypted, on
//! an encrypted network), or the underlay's IPv4 datagrams as they leave and arrive.
//!
//! Costs nothing when off: each worker's hook is one relaxed atomic load. When on, a frame
//! that the session's ports and filter want is copied (cut to the snap length) into the
//! session's ring; a full ring drops the frame and counts it, it never slows the data path.
//! The reader (the API's stream) drains the ring.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;

use crate::dataplane::PortId;

/// Most bytes a session's ring holds before it drops frames.
pub const RING_BYTES: usize = 8 * 1024 * 1024;
/// Most frames a session's ring holds.
pub const RING_FRAMES: usize = 65_536;
/// Longest snap length.
pub const MAX_SNAPLEN: u32 = 65_535;

/// Which frames a session takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// Inner Ethernet frames of these ports, both ways.
    Inner(HashSet<PortId>),
    /// Underlay IPv4 datagrams, both ways; with a network (its VNI, and whether it is
    /// encrypted), only its VXLAN, and ESP when it is encrypted.
    Underlay { network: Option<(u32, bool)> },
}

/// Bytes before each frame in a ring (and in the capture stream, see
/// [`crate::api::capture`]): pcap's record header with nanosecond timestamps, little-endian
/// (seconds, nanoseconds, bytes kept, length on the wire), so the frames reach a pcap file
/// without being taken apart again.
pub const RECORD_HEADER: usize = 16;

/// The frames a session's ring held: records back to back, each a [`RECORD_HEADER`] and the
/// bytes kept.
#[derive(Debug, Default)]
pub struct Drained {
    pub bytes: Vec<u8>,
    pub frames: usize,
}

/// One record read back: wall-clock nanoseconds since the epoch, the length on the wire, and
/// the bytes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub at: u64,
    pub len: u32,
    pub data: &'a [u8],
}

/// Appends a record to `buf`.
pub fn put_record(buf: &mut Vec<u8>, at: u64, len: u32, data: &[u8]) {
    let secs = u32::try_from(at / 1_000_000_000).unwrap_or(u32::MAX);
    let nanos = (at % 1_000_000_000) as u32;
    buf.extend_from_slice(&secs.to_le_bytes());
    buf.extend_from_slice(&nanos.to_le_bytes());
    buf.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(data);
}

/// The records in `buf`, in order, up to the first one cut short (whose offset the iterator's
/// `at` field gives after it ends).
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { buf, at: 0 }
}

/// See [`records`].
pub struct Records<'a> {
    buf: &'a [u8],
    /// Offset of the next record.
    pub at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let head = self.buf.get(self.at..self.at + RECORD_HEADER)?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (secs, nanos, kept, len) = (word(0), word(4), word(8) as usize, word(12));
        let start = self.at + RECORD_HEADER;
        let data = self.buf.get(start..start.checked_add(kept)?)?;
        self.at = start + kept;
        Some(Record {
            at: u64::from(secs) * 1_000_000_000 + u64::from(nanos),
            len,
            data,
        })
    }
}

#[derive(Debug, Default)]
struct Ring {
    buf: Vec<u8>,
    frames: usize,
}

/// One capture: what it takes, and its ring.
#[derive(Debug)]
pub struct Session {
    layer: Layer,
    filter: Filter,
    snaplen: u32,
    ring: Mutex<Ring>,
    dropped: AtomicU64,
    taken: AtomicU64,
}

impl Session {
    /// Takes the frames waiting in the ring.
    pub fn drain(&self) -> Drained {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let frames = std::mem::take(&mut ring.frames);
        Drained {
            bytes: std::mem::take(&mut ring.buf),
            frames,
        }
    }

    /// Frames the ring had no room for.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames put in the ring.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    fn offer(&self, frame: &[u8], ethernet: bool) {
        if !self.filter.matches(frame, ethernet) {
            return;
        }
        let keep = frame.len().min(self.snaplen as usize);
        let at = wall_nanos();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.frames >= RING_FRAMES || ring.buf.len() + RECORD_HEADER + keep > RING_BYTES {
            drop(ring);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ring.frames += 1;
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        put_record(&mut ring.buf, at, len, &frame[..keep]);
        drop(ring);
        self.taken.fetch_add(1, Ordering::Relaxed);
    }
}

fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The node's captures; every worker holds it.
#[derive(Debug, Default)]
pub struct CaptureHub {
    /// Sessions open: the workers' hooks look at nothing else while it is 0.
    open: AtomicUsize,
    /// The open sessions, read by the workers without a lock; changed under `change`.
    sessions: arc_swap::ArcSwap<Vec<Arc<Session>>>,
    change: Mutex<()>,
}

impl CaptureHub {
    /// Opens a session.
    pub fn start(&self, layer: Layer, filter: Filter, snaplen: u32) -> Arc<Session> {
        let s = Arc::new(Session {
            layer,
            filter,
            snaplen: snaplen.clamp(1, MAX_SNAPLEN),
            ring: Mutex::new(Ring::default()),
            dropped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        });
        let _one = self.change.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::clone(&self.sessions.load());
        all.push(s.clone());
        self.open.store(all.len(), Ordering::Release);
        self.sessions.store(Arc::new(all));
        s
    }

    /// Closes a session.
    pub fn stop(&self, session: &Arc<Session>) {
        let _one = self.change.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::clone(&self.sessions.load());
        all.retain(|s| !Arc::ptr_eq(s, session));
        self.open.store(all.len(), Ordering::Release);
        self.sessions.store(Arc::new(all));
    }

    /// A frame a port sent or was given (inner Ethernet).
    #[inline]
    pub fn port_frame(&self, port: PortId, frame: &[u8]) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.port_frame_slow(port, frame);
    }

    #[cold]
    fn port_frame_slow(&self, port: PortId, frame: &[u8]) {
        for s in self.sessions.load().iter() {
            if matches!(&s.layer, Layer::Inner(ports) if ports.contains(&port)) {
                s.offer(frame, true);
            }
        }
    }

    /// Whether any capture is open.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) != 0
    }

    /// An underlay IPv4 datagram, whole (outer header included).
    #[inline]
    pub fn underlay_packet(&self, packet: &[u8]) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.underlay_slow(packet);
    }

    #[cold]
    fn underlay_slow(&self, packet: &[u8]) {
        for s in self.sessions.load().iter() {
            if let Layer::Underlay { network } = &s.layer {
                if network.is_none_or(|(vni, esp)| underlay_of(packet, vni, esp)) {
                    s.offer(packet, false);
                }
            }
        }
    }

    /// An underlay UDP datagram as received: its payload, from `src` to `dst`. The IPv4 and
    /// UDP headers the socket took off are written back, so the capture reads as the wire.
    #[inline]
    pub fn underlay_udp(
        &self,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
    ) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(len) = u16::try_from(payload.len() + 28) else {
            return;
        };
        let mut p = Vec::with_capacity(payload.len() + 28);
        p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&src.ip().octets());
        p.extend_from_slice(&dst.ip().octets());
        let sum = ipv4_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&(len - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        self.underlay_slow(&p);
    }
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether an underlay datagram belongs to the network of `vni`: VXLAN with that VNI, or, when
/// the network is encrypted (`esp`), ESP (over IP or in UDP: its SPI does not tell the io
/// layer which encrypted network, so every ESP datagram is kept).
fn underlay_of(packet: &[u8], vni: u32, esp: bool) -> bool {
    let Ok(ip) = etherparse::Ipv4Slice::from_slice(packet) else {
        return false;
    };
    let payload = ip.payload().payload;
    match ip.header().protocol() {
        etherparse::IpNumber::ENCAPSULATING_SECURITY_PAYLOAD => esp,
        etherparse::IpNumber::UDP => match payload.get(8..16) {
            // VXLAN: the I flag, reserved bytes zero.
            Some(v) if v[0] == 0x08 && v[1..4] == [0, 0, 0] && v[7] == 0 => {
                u32::from_be_bytes([0, v[4], v[5], v[6]]) == vni
            }
            Some(_) => esp,
            None => false,
        },
        _ => false,
    }
}

// ---- the filter: a subset of tcpdump's language ------------------------------------------

/// A capture filter: a subset of tcpdump's (pcap-filter) expressions. Primitives: `host A`,
/// `net CIDR`, `port N` (each optionally after `src` or `dst`), `tcp`, `udp`, `icmp`, `arp`,
/// `ip`; combined with `and`/`&&`, `or`/`||`, `not`/`!` and parentheses. An empty filter takes
/// every frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Host(Dir, Ipv4Addr),
    Net(Dir, Ipv4Net),
    Port(Dir, u16),
    Proto(Proto),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// Which address or port of a packet a primitive reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    Either,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Ip,
    Tcp,
    Udp,
    Icmp,
    Arp,
}

/// What a filter reads of a frame.
struct Facts {
    arp: bool,
    ip: Option<(Ipv4Addr, Ipv4Addr, u8)>,
    ports: Option<(u16, u16)>,
}

fn facts(frame: &[u8], ethernet: bool) -> Facts {
    let mut f = Facts {
        arp: false,
        ip: None,
        ports: None,
    };
    let ip_bytes = if ethernet {
        let Ok(eth) = etherparse::Ethernet2Slice::from_slice_without_fcs(frame) else {
            return f;
        };
        match eth.ether_type() {
            etherparse::EtherType::ARP => {
                f.arp = true;
                return f;
            }
            etherparse::EtherType::IPV4 => eth.payload_slice(),
            _ => return f,
        }
    } else {
        frame
    };
    let Ok(ip) = etherparse::Ipv4Slice::from_slice(ip_bytes) else {
        return f;
    };
    let h = ip.header();
    let proto = h.protocol().0;
    f.ip = Some((h.source_addr(), h.destination_addr(), proto));
    let l4 = ip.payload().payload;
    if (proto == 6 || proto == 17) && l4.len() >= 4 && h.fragments_offset().value() == 0 {
        f.ports = Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ));
    }
    f
}

impl Filter {
    /// Reads a filter from its words (`["tcp", "port", "80"]` or `["tcp port 80"]`).
    pub fn parse(words: &[String]) -> Result<Filter, String> {
        let text = words.join(" ");
        let tokens = tokenize(&text);
        if tokens.is_empty() {
            return Ok(Filter::All);
        }
        let mut p = FilterParser { tokens, at: 0 };
        let f = p.or()?;
        if let Some(t) = p.tokens.get(p.at) {
            return Err(format!("filter {text:?}: unexpected {t:?}"));
        }
        Ok(f)
    }

    /// Whether the filter takes `frame` (Ethernet, else IPv4).
    pub fn matches(&self, frame: &[u8], ethernet: bool) -> bool {
        if *self == Filter::All {
            return true;
        }
        self.eval(&facts(frame, ethernet))
    }

    fn eval(&self, f: &Facts) -> bool {
        let pick = |d: Dir, s: bool, t: bool| match d {
            Dir::Src => s,
            Dir::Dst => t,
            Dir::Either => s || t,
        };
        match self {
            Filter::All => true,
            Filter::Host(d, a) => f.ip.is_some_and(|(s, t, _)| pick(*d, s == *a, t == *a)),
            Filter::Net(d, n) => {
                f.ip.is_some_and(|(s, t, _)| pick(*d, n.contains(&s), n.contains(&t)))
            }
            Filter::Port(d, p) => f.ports.is_some_and(|(s, t)| pick(*d, s == *p, t == *p)),
            Filter::Proto(Proto::Arp) => f.arp,
            Filter::Proto(Proto::Ip) => f.ip.is_some(),
            Filter::Proto(Proto::Tcp) => f.ip.is_some_and(|(_, _, p)| p == 6),
            Filter::Proto(Proto::Udp) => f.ip.is_some_and(|(_, _, p)| p == 17),
            Filter::Proto(Proto::Icmp) => f.ip.is_some_and(|(_, _, p)| p == 1),
            Filter::Not(x) => !x.eval(f),
            Filter::And(a, b) => a.eval(f) && b.eval(f),
            Filter::Or(a, b) => a.eval(f) || b.eval(f),
        }
    }
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let single = matches!(c, '(' | ')' | '!');
        let double =
            (c == '&' && chars.peek() == Some(&'&')) || (c == '|' && chars.peek() == Some(&'|'));
        if c.is_whitespace() || single || double {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if single {
                out.push(c.to_string());
            } else if double {
                chars.next();
                out.push(format!("{c}{c}"));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

struct FilterParser {
    tokens: Vec<String>,
    at: usize,
}

impl FilterParser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.not()?;
        loop {
            match self.peek() {
                Some("and" | "&&") => {
                    self.at += 1;
                }
                // tcpdump reads two primitives side by side as `and`.
                Some(t) if !matches!(t, "or" | "||" | ")") => {}
                _ => return Ok(left),
            }
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
    }

    fn not(&mut self) -> Result<Filter, String> {
        if matches!(self.peek(), Some("not" | "!")) {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, String> {
        let Some(word) = self.next() else {
            return Err("the filter ends where a primitive was expected".into());
        };
        if word == "(" {
            let f = self.or()?;
            return match self.next().as_deref() {
                Some(")") => Ok(f),
                _ => Err("a '(' without its ')'".into()),
            };
        }
        let (dir, word) = match word.as_str() {
            "src" => (Dir::Src, self.next().unwrap_or_default()),
            "dst" => (Dir::Dst, self.next().unwrap_or_default()),
            _ => (Dir::Either, word),
        };
        let value =
            |p: &mut Self, what: &str| p.next().ok_or_else(|| format!("{what} needs a value"));
        match word.as_str() {
            "host" => {
                let v = value(self, "host")?;
                v.parse()
                    .map(|a| Filter::Host(dir, a))
                    .map_err(|_| format!("host {v:?}: an IPv4 address is expected"))
            }
            "net" => {
                let v = value(self, "net")?;
                v.parse::<Ipv4Net>()
                    .map(|n| Filter::Net(dir, n.trunc()))
                    .map_err(|_| format!("net {v:?}: an IPv4 network (CIDR) is expected"))
            }
            "port" => {
                let v = value(self, "port")?;
                v.parse()
                    .map(|p| Filter::Port(dir, p))
                    .map_err(|_| format!("port {v:?}: a number from 0 to 65535 is expected"))
            }
            p if dir == Dir::Either => Ok(Filter::Proto(match p {
                "ip" => Proto::Ip,
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "icmp" => Proto::Icmp,
                "arp" => Proto::Arp,
                other => {
                    return Err(format!(
                        "{other:?} is not in the filter language swarmnet reads: [src|dst] host A, [src|dst] net CIDR, [src|dst] port N, ip, tcp, udp, icmp, arp, and/or/not, ( )"
                    ))
                }
            })),
            other => Err(format!(
                "after src/dst: host, net or port is expected, not {other:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        f
    }

    fn words(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn filters_read_as_tcpdump_reads_them() {
        let web = frame(6, [10, 0, 1, 3], [10, 0, 1, 4], 40000, 80);
        let dns = frame(17, [10, 0, 1, 3], [10, 0, 1, 1], 5353, 53);
        let take = |f: &str, fr: &[u8]| Filter::parse(&words(f)).unwrap().matches(fr, true);
        assert!(take("", &web));
        assert!(take("tcp port 80", &web) && !take("tcp port 80", &dns));
        assert!(take("udp and dst port 53", &dns));
        assert!(!take("src port 53", &dns));
        assert!(take("host 10.0.1.4", &web) && !take("host 10.0.1.4", &dns));
        assert!(take("src host 10.0.1.3 && !udp", &web));
        assert!(take("net 10.0.1.0/24", &dns) && !take("net 10.0.2.0/24", &dns));
        assert!(take("not (tcp or icmp)", &dns) && !take("not (tcp or icmp)", &web));
        assert!(take("tcp or udp", &dns));
        let arp = {
            let mut f = vec![0u8; 42];
            f[12] = 0x08;
            f[13] = 0x06;
            f
        };
        assert!(take("arp", &arp) && !take("ip", &arp) && !take("port 80", &arp));
        // Underlay packets are IPv4 without Ethernet.
        let f = Filter::parse(&words("udp port 53")).unwrap();
        assert!(f.matches(&dns[14..], false));
        for bad in [
            "port",
            "host x",
            "net 300.0.0.0/8",
            "bogus",
            "src tcp",
            "(tcp",
            "tcp )",
        ] {
            assert!(Filter::parse(&words(bad)).is_err(), "{bad}");
        }
        // Anything cut short is read without a panic and taken by no primitive.
        for cut in 0..web.len() {
            let _ = take("tcp port 80 or arp", &web[..cut]);
        }
    }

    #[test]
    fn records_read_back_as_written_and_stop_at_a_cut() {
        let mut buf = Vec::new();
        put_record(&mut buf, 1_700_000_000_123_456_789, 1500, &[7; 40]);
        put_record(&mut buf, 5, 60, &[]);
        let read: Vec<Record> = records(&buf).collect();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].at, read[0].len, read[0].data.len()),
            (1_700_000_000_123_456_789, 1500, 40)
        );
        assert_eq!((read[1].at, read[1].len, read[1].data), (5, 60, &[][..]));
        for cut in 0..buf.len() {
            let mut it = records(&buf[..cut]);
            let n = it.by_ref().count();
            assert!(n < 2 && it.at <= cut, "{cut}");
        }
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let hub = CaptureHub::default();
        let port = PortId(3);
        hub.port_frame(port, &[0; 60]); // no session: nothing happens
        let s = hub.start(Layer::Inner([port].into_iter().collect()), Filter::All, 64);
        for _ in 0..RING_FRAMES + 10 {
            hub.port_frame(port, &[0; 60]);
        }
        hub.port_frame(PortId(4), &[0; 60]);
        assert_eq!(s.taken(), RING_FRAMES as u64);
        assert_eq!(s.dropped(), 10);
        let all = s.drain();
        assert_eq!(all.frames, RING_FRAMES);
        assert_eq!(records(&all.bytes).count(), RING_FRAMES);
        hub.port_frame(port, &[1; 100]);
        let r = s.drain();
        let read: Vec<Record> = records(&r.bytes).collect();
        assert_eq!((r.frames, read.len(), read[0].len), (1, 1, 100));
        assert_eq!(read[0].data, &[1; 64][..]);
        hub.stop(&s);
        hub.port_frame(port, &[0; 60]);
        assert_eq!(s.drain().frames, 0);
    }
}
