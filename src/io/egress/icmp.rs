//! ICMP echo of the egress engine: a task's ping leaves as the host's own, from a ping socket
//! (`SOCK_DGRAM`/`IPPROTO_ICMP`, allowed when `net.ipv4.ping_group_range` holds the process's
//! group) or else, as root, a raw ICMP socket; with neither, echo requests are dropped and
//! counted (`DropReason::NoIcmpSocket`).
//!
//! One socket per task (address, echo identifier). A ping socket's replies are its own (the
//! kernel matches the identifier it chose); a raw socket sees every ICMP message the host
//! gets, so a raw flow sends with an identifier of its own and keeps only the replies that
//! carry it. The task's identifier is put back in the replies.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use mio::Interest;
use socket2::{Domain, Protocol, Socket, Type};

use super::{packet, DropReason, EgressConfig, EgressStats, FlowStats, Host, Proto};
use crate::dataplane::Nanos;

/// Replies read from one flow's socket per run.
const BUDGET: usize = 64;

/// Which socket carries echo requests on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcmpMode {
    /// Not probed yet (no echo request so far).
    #[default]
    Unknown,
    /// Unprivileged ping sockets.
    Ping,
    /// Raw ICMP sockets (root or CAP_NET_RAW).
    Raw,
    /// Neither: echo requests are dropped.
    None,
}

struct Flow {
    /// A ping or raw socket, used through `UdpSocket`'s `send_to`/`recv_from`, which are
    /// plain sendto/recvfrom and so fit any datagram socket.
    sock: UdpSocket,
    /// The identifier a raw flow sends with (a ping socket's is the kernel's).
    ident: u16,
    task_id: u16,
    peer: Ipv4Addr,
    last: Nanos,
    stats: FlowStats,
}

/// Every echo flow of the engine.
#[derive(Default)]
pub(super) struct Icmp {
    mode: IcmpMode,
    flows: HashMap<(Ipv4Addr, u16), Flow>,
    next_ident: u16,
    scratch: Vec<u8>,
}

fn open(mode: IcmpMode, host: &Host) -> io::Result<UdpSocket> {
    let ty = match mode {
        IcmpMode::Ping => Type::DGRAM,
        _ => Type::RAW,
    };
    let s = Socket::new(
        Domain::IPV4,
        ty.nonblocking().cloexec(),
        Some(Protocol::ICMPV4),
    )?;
    let s: UdpSocket = UdpSocket::from(std::os::fd::OwnedFd::from(s));
    host.register(&s, Interest::READABLE)?;
    Ok(s)
}

impl Icmp {
    pub(super) fn mode(&self) -> IcmpMode {
        self.mode
    }

    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    pub(super) fn flow_stats(&self) -> impl Iterator<Item = &FlowStats> {
        self.flows.values().map(|f| &f.stats)
    }

    /// Opens a socket of the host's mode, probing ping then raw sockets the first time.
    fn open(&mut self, host: &Host) -> io::Result<UdpSocket> {
        if self.mode == IcmpMode::Unknown {
            for m in [IcmpMode::Ping, IcmpMode::Raw] {
                if let Ok(s) = open(m, host) {
                    self.mode = m;
                    tracing::info!(mode = ?m, "egress: ICMP echo through the host");
                    return Ok(s);
                }
            }
            self.mode = IcmpMode::None;
            tracing::warn!("egress: no ICMP socket (ping_group_range excludes this group and no CAP_NET_RAW): tasks' pings are dropped");
        }
        match self.mode {
            IcmpMode::None | IcmpMode::Unknown => Err(io::Error::from(io::ErrorKind::Unsupported)),
            m => open(m, host),
        }
    }

    /// Sends a task's echo request.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input(
        &mut self,
        host: &Host,
        cfg: &EgressConfig,
        now: Nanos,
        (task, dest, host_dest): (Ipv4Addr, Ipv4Addr, Ipv4Addr),
        id: u16,
        seq: u16,
        payload: &[u8],
        stats: &mut EgressStats,
    ) {
        let key = (task, id);
        if !self.flows.contains_key(&key) {
            if self.mode == IcmpMode::None {
                stats.drop(DropReason::NoIcmpSocket);
                return;
            }
            if self.flows.len() >= cfg.limits.icmp_flows {
                stats.drop(DropReason::IcmpFlowLimit);
                return;
            }
            let sock = match self.open(host) {
                Ok(s) => s,
                Err(_) if self.mode == IcmpMode::None => {
                    stats.drop(DropReason::NoIcmpSocket);
                    return;
                }
                Err(_) => {
                    stats.drop(DropReason::HostSocket);
                    return;
                }
            };
            self.next_ident = self.next_ident.wrapping_add(1);
            let ident = (cfg.seed as u16) ^ self.next_ident;
            stats.icmp_flows += 1;
            self.flows.insert(
                key,
                Flow {
                    sock,
                    ident,
                    task_id: id,
                    peer: host_dest,
                    last: now,
                    stats: FlowStats::new(
                        Proto::Icmp,
                        SocketAddrV4::new(task, id),
                        SocketAddrV4::new(dest, 0),
                    ),
                },
            );
        }
        let mode = self.mode;
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        f.last = now;
        f.peer = host_dest;
        f.stats.dest = SocketAddrV4::new(dest, 0);
        // A ping socket takes the request with any identifier and puts in its own; a raw one
        // sends it as written.
        let ident = if mode == IcmpMode::Raw { f.ident } else { id };
        packet::write_echo_request(&mut self.scratch, ident, seq, payload);
        let result = f
            .sock
            .send_to(&self.scratch, SocketAddrV4::new(host_dest, 0));
        f.stats.sent(result, payload.len(), stats, "echo request");
    }

    /// Reads the replies and hands them to the tasks through `emit`.
    pub(super) fn run(
        &mut self,
        cfg: &EgressConfig,
        now: Nanos,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        stats: &mut EgressStats,
        emit: &mut dyn FnMut(&[u8]),
    ) -> bool {
        let raw = self.mode == IcmpMode::Raw;
        let mut acted = false;
        for ((task, _), f) in self.flows.iter_mut() {
            for _ in 0..BUDGET {
                let (n, from) = match f.sock.recv_from(buf) {
                    Ok((n, SocketAddr::V4(from))) => (n, *from.ip()),
                    Ok(_) => continue,
                    Err(_) => break,
                };
                acted = true;
                let reply = if raw {
                    packet::echo_reply_in_ip(&buf[..n]).filter(|r| r.id == f.ident)
                } else {
                    packet::echo_reply(&buf[..n])
                };
                let Some(r) = reply else {
                    // A raw socket sees every ICMP message of the host: not counted.
                    continue;
                };
                if from != f.peer {
                    stats.drop(DropReason::UnknownPeer);
                    continue;
                }
                f.last = now;
                let shown = cfg.shown_source(from);
                let mtu = usize::from(cfg.mtu);
                if !packet::write_echo_reply(out, shown, *task, f.task_id, r.seq, r.payload, mtu) {
                    stats.drop(DropReason::ReplyTooLarge);
                    continue;
                }
                f.stats.packets_in += 1;
                f.stats.bytes_in += r.payload.len() as u64;
                emit(out);
            }
        }
        acted
    }

    pub(super) fn expire(&mut self, cfg: &EgressConfig, now: Nanos) {
        self.flows
            .retain(|_, f| now.saturating_sub(f.last) < cfg.limits.icmp_idle);
    }

    pub(super) fn poll_at(&self, cfg: &EgressConfig) -> Option<Nanos> {
        self.flows
            .values()
            .map(|f| f.last.saturating_add(cfg.limits.icmp_idle))
            .min()
    }
}
