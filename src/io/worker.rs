//! A worker: one mio loop over one queue of every TAP and its underlay sockets, feeding its own
//! `Dataplane` in batches.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::capture::CaptureHub;
use super::egress::{Egress, EgressConfig, Limits};
use super::mesh::Mesh;
use super::tap::TapQueue;
use super::udp::{DatagramSocket, RecvBatch, SendBatch};
use crate::dataplane::gro::Coalescer;
use crate::dataplane::gso::{cut_tunnelled, finish_checksum, segment_super_frame};
use crate::dataplane::resolver::DnsClient;
use crate::dataplane::{
    Counters, Dataplane, DropReason, Output, PortId, Tables, Target, UnderlayKind,
};
use crate::io::resolver::ForwardClient;
use crate::virt::VirtualTask;
use crate::wire::{vnet, ETHERNET_HEADER_LEN};

/// Frames read from one TAP queue per wake-up before the others get a turn.
const TAP_BUDGET: usize = 64;
/// recvmmsg calls per socket and wake-up before the others get a turn.
const SOCKET_BUDGET: usize = 4;
/// Datagrams per recvmmsg / sendmmsg.
pub const BATCH: usize = 32;
/// Receive slots per recvmmsg; each holds one datagram or a GRO run of them.
const GRO_SLOTS: usize = 8;
/// Datagrams per flush of one sender: room for the segments of a TCP super-frame.
const SEND_BATCH: usize = 128;
/// How often a worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// How long a worker keeps polling without sleeping after its last packet: a packet that comes
/// within it (the answer to the one just sent, the next of a burst) is taken without a wake-up
/// (tens of microseconds on a VM, twice per hop). An idle worker sleeps, so an idle node burns
/// nothing. `SWARMNET_BUSY_POLL_US` sets it (0: never spin).
const BUSY_POLL: Duration = Duration::from_micros(50);

fn busy_poll() -> u64 {
    std::env::var("SWARMNET_BUSY_POLL_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(BUSY_POLL.as_nanos() as u64, |us| us.saturating_mul(1000))
}
/// Tokens of underlay sockets start here; TAPs use their port id.
const SOCKET_TOKEN_BASE: usize = usize::MAX / 2;
/// Host sockets of a virtual port (the routing mesh's) use this plus the port id.
const HOST_TOKEN_BASE: usize = usize::MAX / 4;
pub const WAKE_TOKEN: Token = Token(usize::MAX);

/// What a worker's underlay sockets receive, and how the core takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// UDP to the data-path port: VXLAN payloads.
    Vxlan,
    /// A UDP socket that only sends VXLAN, from one of the node's VXLAN source ports in
    /// 49152-65535 (every worker holds the same few sockets). The worker picks one by the
    /// flow's hash, so the peer's kernel (or its SO_REUSEPORT group of workers) spreads the
    /// flows, as with the kernel's VXLAN device.
    VxlanSend,
    /// UDP to the ESP-in-UDP port: ESP payloads (RFC 3948).
    EspUdp,
    /// A raw IP-protocol-50 socket: whole IPv4 datagrams carrying ESP.
    EspIp,
    /// A raw send-only socket for ESP as IP protocol 50.
    RawSend,
}

/// A change of a worker's local ports, sent by the node while the worker runs. The worker
/// answers on `done` once the change is in effect.
pub enum Command {
    /// Serve `queue` as port `id`: read frames from it, write the core's frames for `id` to it.
    AddPort {
        id: PortId,
        queue: TapQueue,
        done: mpsc::Sender<()>,
    },
    /// Run virtual task `task` as port `id` (sent to the worker that owns virtual tasks).
    AddVirtual {
        id: PortId,
        task: VirtualPort,
        done: mpsc::Sender<()>,
    },
    /// Port `id` is a virtual task of another worker: hand its frames over.
    AddElsewhere { id: PortId, done: mpsc::Sender<()> },
    /// Stop serving port `id` and close this worker's queue of it (or drop its task).
    RemovePort { id: PortId, done: mpsc::Sender<()> },
    /// Serve more underlay sockets (ESP's, when a first encrypted network comes).
    AddSockets {
        sockets: Vec<UnderlaySocket>,
        done: mpsc::Sender<()>,
    },
}

/// A port served inside the worker: a virtual task, or the node's ingress sandbox with the
/// routing mesh's host sockets.
pub enum VirtualPort {
    Task(Box<VirtualTask>),
    Mesh(Box<Mesh>),
}

impl VirtualPort {
    fn name(&self) -> &str {
        match self {
            VirtualPort::Task(t) => t.name(),
            VirtualPort::Mesh(m) => m.name(),
        }
    }
    fn input(&mut self, frame: &[u8]) -> bool {
        match self {
            VirtualPort::Task(t) => t.input(frame),
            VirtualPort::Mesh(m) => m.input(frame),
        }
    }
    fn has_input(&self) -> bool {
        match self {
            VirtualPort::Task(t) => t.has_input(),
            VirtualPort::Mesh(m) => m.has_input(),
        }
    }
    fn poll_timeout(&mut self, now: u64) -> Option<u64> {
        match self {
            VirtualPort::Task(t) => t.poll_timeout(now),
            VirtualPort::Mesh(m) => m.poll_timeout(now),
        }
    }
    fn handle_timeout(&mut self, now: u64, emit: &mut dyn FnMut(&[u8])) {
        match self {
            VirtualPort::Task(t) => t.handle_timeout(now, emit),
            VirtualPort::Mesh(m) => m.handle_timeout(now, emit),
        }
    }
    fn take_events(&mut self) -> Vec<String> {
        match self {
            VirtualPort::Task(t) => t.take_events(),
            VirtualPort::Mesh(_) => Vec::new(),
        }
    }
}

/// What a worker hands to the worker that runs the virtual tasks and the egress.
pub enum Handover {
    /// A frame for a virtual task's port.
    Frame(PortId, Vec<u8>),
    /// A packet a task sent to the host's side (docker_gwbridge), and whether the task's link
    /// takes TCP super-frames (a TAP with a virtio-net header).
    Egress(Vec<u8>, bool),
}

/// How a worker reaches the worker that runs the virtual tasks and the egress.
#[derive(Clone)]
pub struct VirtOwner {
    /// Bounded (`HANDOVER_QUEUE`): when the owner lags, frames are dropped and counted.
    pub frames: mpsc::SyncSender<Handover>,
    pub waker: Arc<Waker>,
}

/// The token of the egress engine's host sockets (on the worker that runs it).
const EGRESS_TOKEN: Token = Token(usize::MAX - 1);

/// The node's egress (docker_gwbridge's way out), on the worker that runs virtual tasks: made
/// when a bridge network first sends it a packet, made again when the bridge changes.
struct EgressLink {
    registry: mio::Registry,
    /// The engine and the bridge it was made for (gateway, prefix, MTU).
    engine: Option<(Egress, (Ipv4Addr, u8, u16))>,
    /// The tables the engine was last checked against: the bridge is looked up again only
    /// when they change, not for every packet.
    checked: Option<Arc<Tables>>,
    /// Packets went in since the engine last ran.
    due: bool,
}

impl EgressLink {
    fn has_work(&self) -> bool {
        self.due || self.engine.as_ref().is_some_and(|(e, _)| e.has_work())
    }

    /// Hands a task's packet to the engine (made for the tables' bridge if need be); false
    /// when there is no bridge to carry it for.
    fn input(&mut self, tables: &Arc<Tables>, now: u64, packet: &[u8], gso_link: bool) -> bool {
        if !self
            .checked
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, tables))
        {
            self.check(tables, now);
        }
        match self.engine.as_mut() {
            Some((e, _)) => {
                e.input_from(now, packet, gso_link);
                self.due = true;
                true
            }
            None => false,
        }
    }

    /// Makes the engine for the tables' bridge, anew when the bridge changed; none without one.
    fn check(&mut self, tables: &Arc<Tables>, now: u64) {
        self.checked = Some(Arc::clone(tables));
        let Some(bridge) = tables.networks.iter().find(|n| n.bridge.is_some()) else {
            self.engine = None;
            return;
        };
        let key = (bridge.gateway, bridge.subnet.prefix_len(), bridge.mtu);
        if self.engine.as_ref().is_none_or(|(_, k)| *k != key) {
            let cfg = EgressConfig {
                gateway: key.0,
                prefix: key.1,
                host_loopback: Ipv4Addr::LOCALHOST,
                mtu: key.2,
                seed: super::node::random_u64(),
                limits: Limits::default(),
            };
            // Super-packets both ways for the tasks behind TAPs; plain ones for virtual tasks.
            let mut e = Egress::with_gso(cfg, now);
            self.engine = match e.attach(&self.registry, EGRESS_TOKEN) {
                Ok(()) => Some((e, key)),
                Err(err) => {
                    tracing::warn!(error = %err, "the egress cannot register its sockets");
                    None
                }
            };
        }
    }
}

/// Frames for virtual tasks handed over by other workers that may wait (more: dropped).
pub const HANDOVER_QUEUE: usize = 1024;

/// One underlay socket of a worker.
pub struct UnderlaySocket {
    pub channel: Channel,
    pub sock: DatagramSocket,
}

/// Everything one worker thread owns.
pub struct Worker {
    pub id: usize,
    pub tables: Arc<ArcSwap<Tables>>,
    /// Ports come and go through these (the node wakes the worker after sending).
    pub commands: mpsc::Receiver<Command>,
    /// Where frames for another worker's virtual tasks go (`None` on that worker).
    pub virt_owner: Option<VirtOwner>,
    /// On the worker that runs virtual tasks: frames other workers handed over.
    pub handed_over: Option<mpsc::Receiver<Handover>>,
    /// Where virtual tasks' apps report (lines, prefixed with the task's name).
    pub app_events: Arc<Mutex<Vec<String>>>,
    pub sockets: Vec<UnderlaySocket>,
    pub poll: Poll,
    pub stop: Arc<AtomicBool>,
    /// Where this worker publishes a copy of its counters.
    pub published: Arc<Mutex<Counters>>,
    /// Largest frame or datagram the tables allow, plus headroom.
    pub max_packet: usize,
    /// Where DNS queries for names outside the swarm go (the node's forwarder).
    pub resolver: Option<ForwardClient>,
    /// Live captures (`swarmnet capture`): each frame is offered when one is open.
    pub capture: Arc<CaptureHub>,
}

/// The data path's clock: monotonic nanoseconds since the first worker asked, so intervals
/// (counter publishing, drop-log rate limits) survive wall-clock steps.
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Creates the poller and its waker (for shutdown) for a worker.
pub fn poll_with_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
    Ok((poll, waker))
}

struct Sender {
    channel: Channel,
    sock: DatagramSocket,
    batch: SendBatch,
}

struct Io {
    /// This worker's queue of every local port, indexed by `PortId`.
    taps: Vec<Option<TapQueue>>,
    /// Virtual tasks this worker runs, indexed by `PortId`.
    virt: Vec<Option<VirtualPort>>,
    /// Ports that are another worker's virtual tasks, indexed by `PortId`.
    elsewhere: Vec<bool>,
    virt_owner: Option<VirtOwner>,
    senders: Vec<Sender>,
    /// Indexes in `senders` of the VXLAN senders, picked by the flow's source port.
    vxlan_senders: Vec<usize>,
    coalescer: Coalescer,
    /// Queries for names outside the swarm, at the node's forwarder (`None`: no forwarder).
    dns: Option<DnsForwarding>,
    /// Queries the forwarder could not take: answered SERVFAIL at the next turn.
    dns_refused: Vec<(DnsClient, Vec<u8>)>,
    capture: Arc<CaptureHub>,
    /// The egress, on the worker that runs virtual tasks (`None` elsewhere: their packets for
    /// it are handed over).
    egress: Option<EgressLink>,
    /// A frame whose open checksum was finished for a link that does not take it open.
    finished: Vec<u8>,
}

/// The sender for a datagram of `kind` whose flow hashed to `src_port`.
fn pick_sender<'s>(
    senders: &'s mut [Sender],
    vxlan_senders: &[usize],
    kind: UnderlayKind,
    src_port: u16,
) -> Option<&'s mut Sender> {
    let channel = match kind {
        UnderlayKind::Vxlan => {
            let i = vxlan_senders.get(usize::from(src_port) % vxlan_senders.len().max(1))?;
            return senders.get_mut(*i);
        }
        UnderlayKind::EspUdp => Channel::EspUdp,
        UnderlayKind::EspIp => Channel::RawSend,
    };
    senders.iter_mut().find(|s| s.channel == channel)
}

impl Io {
    fn tap(&self, port: PortId) -> Option<&TapQueue> {
        self.taps.get(port.0 as usize)?.as_ref()
    }

    /// Sends what the core emitted and empties `out`. Frames for TAPs with offloads pass
    /// through the coalescer, which joins in-order TCP segments into one write.
    fn flush(&mut self, dp: &mut Dataplane, now: u64, out: &mut Output) {
        self.flush_with_input(dp, now, out, &[]);
    }

    /// `flush`, for an `out` whose last packet goes on with `input`, the frame the core was
    /// last given (`Meta::input_follows`): sent from it before the caller reads the next.
    fn flush_with_input(&mut self, dp: &mut Dataplane, now: u64, out: &mut Output, input: &[u8]) {
        let Io {
            taps,
            virt,
            elsewhere,
            virt_owner,
            senders,
            vxlan_senders,
            coalescer,
            dns,
            dns_refused,
            capture,
            egress,
            finished,
        } = self;
        let mut port_failures = 0u64;
        let mut handed_over = false;
        let mut virt_failures = 0u64;
        let mut unframed = 0u64;
        let mut write = |p: PortId, h: &vnet::Repr, f: &[u8]| {
            let tap = taps.get(p.0 as usize).and_then(Option::as_ref);
            if !matches!(tap.map(|t| t.send_with(h, f)), Some(Ok(_))) {
                port_failures += 1;
            }
        };
        for (target, meta, bytes) in out.iter_meta() {
            let gso = meta.gso;
            // A frame whose checksum was left open goes so only to a link that takes that.
            let link_finishes = matches!(target, Target::Port(q)
                if elsewhere.get(q.0 as usize) != Some(&true)
                    && virt.get(q.0 as usize).is_none_or(Option::is_none)
                    && taps.get(q.0 as usize).and_then(Option::as_ref).is_some_and(TapQueue::has_vnet_header));
            // Finished once, for such a link and for a capture (which shows the frame as the
            // task's kernel will take it).
            let shown = match meta.partial {
                Some((start, offset)) if !link_finishes || capture.is_open() => {
                    finished.clear();
                    finished.extend_from_slice(bytes);
                    let _ = finish_checksum(finished, start.into(), offset.into());
                    &finished[..]
                }
                _ => bytes,
            };
            let bytes = if link_finishes { bytes } else { shown };
            match target {
                Target::Port(q) => capture.port_frame(q, shown),
                // A super-frame is not one packet: its datagrams are offered as they are cut.
                Target::Underlay(_) if gso.is_some() => {}
                Target::Underlay(_) => capture.underlay_packet(bytes),
                Target::Resolver(_) | Target::Egress(_) => {}
            }
            match target {
                Target::Port(q) if elsewhere.get(q.0 as usize) == Some(&true) => {
                    let sent = virt_owner.as_ref().is_some_and(|o| {
                        o.frames
                            .try_send(Handover::Frame(q, bytes.to_vec()))
                            .is_ok()
                    });
                    if sent {
                        handed_over = true;
                    } else {
                        virt_failures += 1;
                    }
                }
                Target::Port(q) if virt.get(q.0 as usize).is_some_and(Option::is_some) => {
                    let task = virt[q.0 as usize].as_mut();
                    if !task.is_some_and(|t| t.input(bytes)) {
                        virt_failures += 1;
                    }
                }
                Target::Port(q) => match taps.get(q.0 as usize).and_then(Option::as_ref) {
                    // A super-frame from the egress (`run_egress` cut it for any other port).
                    Some(t) if t.has_vnet_header() && gso.is_some() => {
                        coalescer.flush(&mut write);
                        match super_frame_header(bytes, gso.unwrap_or_default()) {
                            Some(h) => write(q, &h, bytes),
                            None => unframed += 1,
                        }
                    }
                    Some(t) if t.has_vnet_header() => {
                        coalescer.push(q, bytes, meta.partial, &mut write)
                    }
                    _ => write(q, &vnet::Repr::default(), bytes),
                },
                Target::Egress(p) => {
                    let gso_link = taps
                        .get(p.0 as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(TapQueue::has_vnet_header);
                    let taken = match (egress.as_mut(), virt_owner.as_ref()) {
                        (Some(e), _) => e.input(dp.tables(), now, bytes, gso_link),
                        (None, Some(o)) => {
                            let h = Handover::Egress(bytes.to_vec(), gso_link);
                            let sent = o.frames.try_send(h).is_ok();
                            handed_over |= sent;
                            sent
                        }
                        (None, None) => false,
                    };
                    if !taken {
                        dp.count_drop(now, DropReason::EgressRefused);
                    }
                }
                Target::Resolver(client) => {
                    let submitted = dns.as_mut().is_some_and(|d| d.submit(client, bytes));
                    if !submitted {
                        dns_refused.push((client, bytes.to_vec()));
                    }
                }
                Target::Underlay(dst)
                    if meta.input_follows && gso.is_some() && dst.kind == UnderlayKind::Vxlan =>
                {
                    let payload = bytes.get(dst.payload_offset()..).unwrap_or_default();
                    let mss = gso.unwrap_or_default();
                    let Some(sender) = pick_sender(senders, vxlan_senders, dst.kind, dst.src_port)
                    else {
                        // Each of its datagrams was counted as sent by the core.
                        for _ in 0..cut_tunnelled(payload, input, mss, |_, _| {}).unwrap_or(1) {
                            dp.count_drop(now, DropReason::UnderlayTxFailed);
                        }
                        continue;
                    };
                    let to = SocketAddrV4::new(dst.addr, dst.port);
                    let from = SocketAddrV4::new(dp.tables().data_path_addr, dst.src_port);
                    let capturing = capture.is_open();
                    // Each segment is its headers (built in the batch) and a slice of the
                    // super-frame: the payload is copied only by the kernel.
                    let cut = cut_tunnelled(payload, input, mss, |head, chunk| {
                        if capturing {
                            capture.underlay_udp(from, to, &[head, chunk].concat());
                        }
                        // SAFETY: `chunk` borrows `input`, which the caller keeps unwritten
                        // until this returns, and the batch is sent before then (here when
                        // full, or after the loop).
                        if !unsafe { sender.batch.push_parts(to, head, chunk) } {
                            send_now(sender, dp, now);
                            // SAFETY: as above; the batch is empty again.
                            unsafe { sender.batch.push_parts(to, head, chunk) };
                        }
                    });
                    if cut.is_none() {
                        dp.count_drop(now, DropReason::Malformed);
                    }
                }
                Target::Underlay(dst) => {
                    // ESP over IP goes out whole through the raw socket (we wrote its header).
                    let (payload, to) = match dst.kind {
                        UnderlayKind::Vxlan | UnderlayKind::EspUdp => {
                            (bytes.get(dst.payload_offset()..), dst.port)
                        }
                        UnderlayKind::EspIp => (Some(bytes), 0),
                    };
                    let Some(sender) = pick_sender(senders, vxlan_senders, dst.kind, dst.src_port)
                    else {
                        dp.count_drop(now, DropReason::UnderlayTxFailed);
                        continue;
                    };
                    let Some(payload) = payload else { continue };
                    let to = SocketAddrV4::new(dst.addr, to);
                    // SAFETY: `payload` borrows `out`, which is neither written nor cleared
                    // before the batch is sent (here when full, or after the loop).
                    if !unsafe { sender.batch.push(to, payload) } {
                        send_now(sender, dp, now);
                        // SAFETY: as above; the batch is empty again.
                        unsafe { sender.batch.push(to, payload) };
                    }
                }
            }
        }
        coalescer.flush(&mut write);
        if handed_over {
            if let Some(o) = virt_owner {
                let _ = o.waker.wake();
            }
        }
        for _ in 0..port_failures + virt_failures + unframed {
            dp.count_drop(now, DropReason::PortTxFailed);
        }
        for s in senders.iter_mut() {
            send_now(s, dp, now);
        }
        out.clear();
    }

    /// Answers the forwarder has for this worker's tasks, and SERVFAIL for the queries it
    /// could not take (too many in flight, or no forwarder).
    fn dns_answers(&mut self, dp: &mut Dataplane, now: u64, out: &mut Output) {
        for (client, query) in std::mem::take(&mut self.dns_refused) {
            let mut answer = Vec::new();
            if crate::dataplane::dns::servfail(&query, &mut answer) {
                dp.resolver_answer(now, &client, &answer, out);
            }
        }
        let Some(d) = self.dns.as_mut() else { return };
        while let Some(a) = d.client.try_recv() {
            if let Some(client) = d.waiting.remove(&a.token) {
                dp.resolver_answer(now, &client, &a.answer, out);
            }
        }
    }
}

/// A worker's queries at the host's resolvers, by token.
struct DnsForwarding {
    client: ForwardClient,
    waiting: HashMap<u64, DnsClient>,
    next: u64,
}

impl DnsForwarding {
    fn submit(&mut self, client: DnsClient, query: &[u8]) -> bool {
        self.next = self.next.wrapping_add(1);
        let max = usize::from(u16::MAX);
        let transport = crate::dataplane::dns::Transport::Udp { max };
        if self.client.submit(self.next, query, transport).is_err() {
            return false;
        }
        self.waiting.insert(self.next, client);
        true
    }
}

fn send_now(s: &mut Sender, dp: &mut Dataplane, now: u64) {
    let queued = s.batch.len();
    if queued == 0 {
        return;
    }
    let sent = s.sock.send_batch(&mut s.batch);
    for _ in sent..queued {
        dp.count_drop(now, DropReason::UnderlayTxFailed);
    }
}

impl Worker {
    /// Runs until `stop` is set (and the waker fires).
    pub fn run(self) -> io::Result<()> {
        let Worker {
            id,
            tables,
            commands,
            virt_owner,
            handed_over,
            app_events,
            sockets,
            mut poll,
            stop,
            published,
            max_packet,
            resolver,
            capture,
        } = self;
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        let mut vxlan_senders = Vec::new();
        for s in sockets {
            add_socket(&poll, &mut receivers, &mut senders, &mut vxlan_senders, s)?;
        }

        let mut dp = Dataplane::new(tables.load_full());
        // A super-frame from a TAP becomes up to ~46 packets before the next flush.
        let mut out = Output::with_capacity(BATCH * 4, BATCH * 4 * max_packet.min(2048));
        // UDP GRO may fill a slot with up to 64 KiB of datagrams.
        let mut recv_gro = RecvBatch::new(GRO_SLOTS, super::tap::MAX_FRAME);
        // A raw socket gives one packet per slot: more, smaller slots.
        let mut recv_raw = RecvBatch::new(BATCH, max_packet);
        let mut frame = vec![0u8; super::tap::MAX_FRAME];
        let mut events = Events::with_capacity(256);
        // Edge-triggered readiness: a source stays "ready" until it returns WouldBlock.
        let mut tap_ready: Vec<bool> = Vec::new();
        let mut sock_ready = vec![true; receivers.len()];
        let mut last_publish = 0u64;
        let mut io = Io {
            taps: Vec::new(),
            virt: Vec::new(),
            elsewhere: Vec::new(),
            virt_owner,
            senders,
            vxlan_senders,
            coalescer: Coalescer::new(),
            dns: resolver.map(|client| DnsForwarding {
                client,
                waiting: HashMap::new(),
                next: 0,
            }),
            dns_refused: Vec::new(),
            capture,
            finished: Vec::with_capacity(2048),
            egress: match &handed_over {
                Some(_) => Some(EgressLink {
                    registry: poll.registry().try_clone()?,
                    engine: None,
                    checked: None,
                    due: false,
                }),
                None => None,
            },
        };
        tracing::debug!(worker = id, sockets = receivers.len(), "worker started");
        let spin = busy_poll();
        // Super-frames of unencrypted overlays leave whole for the senders to cut (captures see
        // the datagrams), those of encrypted ones sealed segment by segment from the burst;
        // open checksums reach only links that finish them (`Io::flush`).
        dp.set_tunnel_gso(!io.vxlan_senders.is_empty());
        dp.set_partial_checksums(true);
        let mut last_active = 0u64;

        while !stop.load(Ordering::Relaxed) {
            // A virtual task with frames waiting (an ARP answer the data path gave it, a frame
            // another task sent) runs at once, not at its next timer: its stack may be holding
            // a packet for exactly that answer.
            let busy = sock_ready.iter().chain(tap_ready.iter()).any(|r| *r)
                || io.virt.iter().flatten().any(|t| t.has_input())
                || !io.dns_refused.is_empty()
                || io.egress.as_ref().is_some_and(EgressLink::has_work);
            let now = now_nanos();
            if busy {
                last_active = now;
            }
            let timeout = if busy || now.saturating_sub(last_active) < spin {
                Duration::ZERO
            } else {
                // The next timer of a virtual task, if sooner.
                let next = io
                    .virt
                    .iter_mut()
                    .flatten()
                    .filter_map(|t| t.poll_timeout(now))
                    .chain(dp.poll_timeout())
                    .chain(
                        io.egress
                            .as_mut()
                            .and_then(|e| e.engine.as_mut())
                            .and_then(|(e, _)| e.poll_timeout(now)),
                    )
                    .min();
                let idle = Duration::from_millis(500);
                next.map_or(idle, |at| {
                    Duration::from_nanos(at.saturating_sub(now)).min(idle)
                })
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let woke = !events.is_empty();
            for ev in events.iter() {
                match ev.token() {
                    WAKE_TOKEN => {}
                    EGRESS_TOKEN => {
                        if let Some((e, _)) = io.egress.as_mut().and_then(|e| e.engine.as_mut()) {
                            e.host_ready();
                        }
                    }
                    Token(t) if (HOST_TOKEN_BASE..SOCKET_TOKEN_BASE).contains(&t) => {
                        if let Some(Some(VirtualPort::Mesh(m))) =
                            io.virt.get_mut(t - HOST_TOKEN_BASE)
                        {
                            m.host_ready();
                        }
                    }
                    Token(t) if t >= SOCKET_TOKEN_BASE => {
                        if let Some(r) = sock_ready.get_mut(t - SOCKET_TOKEN_BASE) {
                            *r = true;
                        }
                    }
                    Token(i) => {
                        if let Some(r) = tap_ready.get_mut(i) {
                            *r = true;
                        }
                    }
                }
            }
            // Port changes first: the node publishes tables naming a new port only after every
            // worker serves it, and closes a removed port's queues only after tables without it.
            while let Ok(cmd) = commands.try_recv() {
                if let Command::AddSockets { sockets, done } = cmd {
                    for s in sockets {
                        add_socket(
                            &poll,
                            &mut receivers,
                            &mut io.senders,
                            &mut io.vxlan_senders,
                            s,
                        )?;
                    }
                    // Datagrams may have come before the registration: read until WouldBlock.
                    sock_ready.resize(receivers.len(), true);
                    dp.set_tunnel_gso(!io.vxlan_senders.is_empty());
                    let _ = done.send(());
                    continue;
                }
                apply_command(&poll, &mut io, &mut tap_ready, cmd)?;
            }
            let current = tables.load();
            if !Arc::ptr_eq(&current, dp.tables()) {
                dp.set_tables(Arc::clone(&current));
            }
            let now = now_nanos();
            if woke {
                last_active = now;
            }
            // VIP flows that idled out or drained: their RSTs (any worker; once per second).
            dp.handle_timeout(now, &mut out);

            for (i, ready) in tap_ready.iter_mut().enumerate() {
                if !*ready {
                    continue;
                }
                let port = PortId(i as u32);
                for _ in 0..TAP_BUDGET {
                    let Some(tap) = io.tap(port) else {
                        *ready = false;
                        break;
                    };
                    match tap.recv(&mut frame) {
                        Ok(n) => {
                            if tap.has_vnet_header() {
                                let (hdr, body) =
                                    frame[..n].split_at(n.min(crate::wire::vnet::HEADER_LEN));
                                io.capture.port_frame(port, body);
                                dp.from_port_vnet(now, port, hdr, body, &mut out);
                                // A burst for another node is sent from `frame` itself,
                                // before the next read overwrites it.
                                if out.last_input_follows() {
                                    io.flush_with_input(&mut dp, now, &mut out, body);
                                }
                            } else {
                                io.capture.port_frame(port, &frame[..n]);
                                dp.from_port(now, port, &frame[..n], &mut out);
                            }
                            if out.len() >= 2 * BATCH {
                                io.flush(&mut dp, now, &mut out);
                            }
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                tracing::warn!(worker = id, port = i, error = %e, "TAP read failed");
                            }
                            *ready = false;
                            break;
                        }
                    }
                }
                io.flush(&mut dp, now, &mut out);
            }

            for (r, ready) in receivers.iter().zip(sock_ready.iter_mut()) {
                if !*ready {
                    continue;
                }
                let (channel, sock, local) = r;
                for _ in 0..SOCKET_BUDGET {
                    let recv = if *channel == Channel::EspIp {
                        &mut recv_raw
                    } else {
                        &mut recv_gro
                    };
                    match sock.recv_batch(recv) {
                        Ok(0) => {
                            *ready = false;
                            break;
                        }
                        Ok(_) => {
                            for (from, payload, truncated) in recv.iter() {
                                if truncated {
                                    dp.drop_underlay(now, payload.len(), DropReason::Malformed);
                                    continue;
                                }
                                let src = *from.ip();
                                if *channel == Channel::EspIp {
                                    io.capture.underlay_packet(payload);
                                } else {
                                    io.capture.underlay_udp(from, *local, payload);
                                }
                                match channel {
                                    Channel::Vxlan => {
                                        dp.from_underlay_udp(now, src, payload, &mut out)
                                    }
                                    Channel::EspUdp => {
                                        dp.from_underlay_esp_udp(now, src, payload, &mut out)
                                    }
                                    Channel::EspIp => dp.from_underlay_ipv4(now, payload, &mut out),
                                    Channel::RawSend | Channel::VxlanSend => {}
                                }
                                // Room for two whole super-frames of a flow
                                // (45 segments each) before a write cuts one.
                                if out.len() >= 3 * BATCH {
                                    io.flush(&mut dp, now, &mut out);
                                }
                            }
                            io.flush(&mut dp, now, &mut out);
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                tracing::warn!(worker = id, channel = ?channel, error = %e, "underlay receive failed");
                            }
                            *ready = false;
                            break;
                        }
                    }
                }
            }

            if let Some(rx) = &handed_over {
                for h in rx.try_iter().take(HANDOVER_QUEUE) {
                    match h {
                        Handover::Frame(port, frame) => {
                            let task = io.virt.get_mut(port.0 as usize).and_then(Option::as_mut);
                            if !task.is_some_and(|t| t.input(&frame)) {
                                dp.count_drop(now, DropReason::PortTxFailed);
                            }
                        }
                        Handover::Egress(packet, gso_link) => {
                            let taken = io
                                .egress
                                .as_mut()
                                .is_some_and(|e| e.input(dp.tables(), now, &packet, gso_link));
                            if !taken {
                                dp.count_drop(now, DropReason::EgressRefused);
                            }
                        }
                    }
                }
            }
            run_egress(&mut io, &mut dp, now, &mut out);
            io.dns_answers(&mut dp, now, &mut out);
            if !out.is_empty() {
                io.flush(&mut dp, now, &mut out);
            }
            run_virtual_tasks(&mut io, &mut dp, now, &mut out, &app_events);

            if now.saturating_sub(last_publish) >= PUBLISH_EVERY.as_nanos() as u64 {
                last_publish = now;
                publish(&published, &dp);
            }
        }
        publish(&published, &dp);
        tracing::debug!(worker = id, "worker stopped");
        Ok(())
    }
}

/// Takes an underlay socket into a worker's loop. Receiving sockets are read through their own
/// fd (registered with the next socket token); every socket that sends gets a sender keyed by
/// channel (the ESP-in-UDP socket both receives and sends).
fn add_socket(
    poll: &Poll,
    receivers: &mut Vec<(Channel, DatagramSocket, SocketAddrV4)>,
    senders: &mut Vec<Sender>,
    vxlan_senders: &mut Vec<usize>,
    s: UnderlaySocket,
) -> io::Result<()> {
    let token = Token(SOCKET_TOKEN_BASE + receivers.len());
    let reader = match s.channel {
        Channel::RawSend | Channel::VxlanSend => {
            // Send-only. UDP GSO groups runs for UDP sockets, not for raw ones.
            let gso = s.channel == Channel::VxlanSend;
            if gso {
                vxlan_senders.push(senders.len());
            }
            senders.push(Sender {
                channel: s.channel,
                sock: s.sock,
                batch: SendBatch::with_capacity(SEND_BATCH, gso),
            });
            return Ok(());
        }
        Channel::EspIp => s.sock,
        Channel::Vxlan | Channel::EspUdp => {
            if let Err(e) = s.sock.enable_gro() {
                tracing::debug!(error = %e, "UDP GRO unavailable");
            }
            if s.channel == Channel::Vxlan {
                // VXLAN leaves through the `VxlanSend` sockets.
                s.sock
            } else {
                // ESP in UDP leaves from its port, RFC 3948: the socket sends too.
                let reader = s.sock.try_clone()?;
                senders.push(Sender {
                    channel: s.channel,
                    sock: s.sock,
                    batch: SendBatch::with_capacity(SEND_BATCH, true),
                });
                reader
            }
        }
    };
    // The fd registered is the one kept for reading, so the registration lives as long.
    poll.registry().register(
        &mut SourceFd(&reader.as_raw_fd()),
        token,
        Interest::READABLE,
    )?;
    // The socket's own address, for the headers a capture writes back.
    let local = match reader.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
    };
    receivers.push((s.channel, reader, local));
    Ok(())
}

/// The virtio-net header of a TCP super-frame from the egress (Ethernet, IPv4, TCP; its TCP
/// checksum the pseudo-header sum) to be cut into segments of `gso_size` bytes by the TAP.
fn super_frame_header(frame: &[u8], gso_size: u16) -> Option<vnet::Repr> {
    let ihl = usize::from(frame.get(ETHERNET_HEADER_LEN)? & 0x0f) * 4;
    let tcp_at = ETHERNET_HEADER_LEN + ihl;
    let doff = usize::from(frame.get(tcp_at + 12)? >> 4) * 4;
    Some(vnet::Repr::tcp4_super_frame(
        tcp_at as u16,
        (tcp_at + doff) as u16,
        gso_size,
    ))
}

/// Runs the egress when it has work or a timer due: its answers for the tasks go through the
/// data path to their ports.
fn run_egress(io: &mut Io, dp: &mut Dataplane, now: u64, out: &mut Output) {
    let Some(link) = io.egress.as_mut() else {
        return;
    };
    let due = std::mem::take(&mut link.due);
    let Some((engine, _)) = link.engine.as_mut() else {
        return;
    };
    if !due && engine.poll_timeout(now).is_none_or(|at| at > now) {
        return;
    }
    let taps = &io.taps;
    let mut cut = Vec::new();
    engine.handle_timeout_gso(now, &mut |packet, gso| {
        dp.egress_answer_gso(now, packet, gso, out);
        // A super-frame for a port that cannot take one whole (a virtual task's) is cut here.
        if let Some((Target::Port(q), Some(size), _)) = out.iter_gso().last() {
            let whole = taps
                .get(q.0 as usize)
                .and_then(Option::as_ref)
                .is_some_and(TapQueue::has_vnet_header);
            if !whole {
                if let Some(frame) = out.pop() {
                    cut.clear();
                    if !segment_super_frame(&frame, size, &mut cut, |seg| {
                        out.emit(Target::Port(q), |b| b.extend_from_slice(seg));
                    }) {
                        dp.count_drop(now, DropReason::MtuExceeded);
                    }
                }
            }
        }
    });
    if !out.is_empty() {
        io.flush(dp, now, out);
    }
}

/// Runs the virtual tasks that have frames waiting or a timer due, switching what they send.
fn run_virtual_tasks(
    io: &mut Io,
    dp: &mut Dataplane,
    now: u64,
    out: &mut Output,
    events: &Mutex<Vec<String>>,
) {
    for i in 0..io.virt.len() {
        let due = match io.virt[i].as_mut() {
            Some(t) => t.has_input() || t.poll_timeout(now).is_some_and(|at| at <= now),
            None => false,
        };
        if !due {
            continue;
        }
        // Taken out while it runs, so that what it sends can be flushed to the others.
        let Some(mut task) = io.virt[i].take() else {
            continue;
        };
        let port = PortId(i as u32);
        let capture = &io.capture;
        task.handle_timeout(now, &mut |frame| {
            capture.port_frame(port, frame);
            dp.from_port(now, port, frame, out)
        });
        let lines = task.take_events();
        if !lines.is_empty() {
            let mut ev = events.lock().unwrap_or_else(|e| e.into_inner());
            ev.extend(lines.into_iter().map(|l| format!("{}: {l}", task.name())));
        }
        io.virt[i] = Some(task);
        io.flush(dp, now, out);
    }
}

fn grow<T>(v: &mut Vec<T>, slot: usize, fill: impl FnMut() -> T) {
    if v.len() <= slot {
        v.resize_with(slot + 1, fill);
    }
}

/// Carries out one port change and acknowledges it.
fn apply_command(poll: &Poll, io: &mut Io, ready: &mut Vec<bool>, cmd: Command) -> io::Result<()> {
    let taps = &mut io.taps;
    match cmd {
        Command::AddVirtual { id, mut task, done } => {
            let slot = id.0 as usize;
            grow(&mut io.virt, slot, || None);
            if let VirtualPort::Mesh(m) = &mut task {
                m.attach(poll.registry(), Token(HOST_TOKEN_BASE + slot));
            }
            io.virt[slot] = Some(task);
            let _ = done.send(());
        }
        Command::AddElsewhere { id, done } => {
            let slot = id.0 as usize;
            grow(&mut io.elsewhere, slot, || false);
            io.elsewhere[slot] = true;
            let _ = done.send(());
        }
        Command::AddPort { id, queue, done } => {
            let slot = id.0 as usize;
            if taps.len() <= slot {
                taps.resize_with(slot + 1, || None);
                ready.resize(slot + 1, false);
            }
            poll.registry().register(
                &mut SourceFd(&queue.as_raw_fd()),
                Token(slot),
                Interest::READABLE,
            )?;
            taps[slot] = Some(queue);
            // Frames may have queued before the registration: read until WouldBlock.
            ready[slot] = true;
            let _ = done.send(());
        }
        // Taken by the loop itself, which owns the sockets; never passed here. Unanswered, the
        // node would report this worker as not taking the change.
        Command::AddSockets { .. } => {
            tracing::error!("underlay sockets reached the port commands");
        }
        Command::RemovePort { id, done } => {
            let slot = id.0 as usize;
            if let Some(queue) = taps.get_mut(slot).and_then(Option::take) {
                let _ = poll
                    .registry()
                    .deregister(&mut SourceFd(&queue.as_raw_fd()));
            }
            if let Some(r) = ready.get_mut(slot) {
                *r = false;
            }
            if let Some(t) = io.virt.get_mut(slot) {
                *t = None;
            }
            if let Some(e) = io.elsewhere.get_mut(slot) {
                *e = false;
            }
            let _ = done.send(());
        }
    }
    Ok(())
}

fn publish(slot: &Mutex<Counters>, dp: &Dataplane) {
    if let Ok(mut c) = slot.lock() {
        c.clone_from(dp.counters());
    }
}
