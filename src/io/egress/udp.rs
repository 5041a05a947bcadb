//! UDP of the egress engine: one host socket per task (address, port), from which the task's
//! datagrams go to any destination; datagrams back from a destination the flow sent to return
//! to the task's port. A flow quiet for `Limits::udp_idle` is forgotten (its socket closed).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use mio::Interest;

use super::{packet, DropReason, EgressConfig, EgressStats, FlowStats, Host, Proto};
use crate::dataplane::Nanos;

/// Destinations a flow remembers for its replies (the most recent ones).
const PEERS: usize = 16;
/// Datagrams read from one flow's socket per run.
const BUDGET: usize = 64;

struct Flow {
    sock: UdpSocket,
    /// Host-side addresses the flow sent to: replies from others are dropped, as through NAT.
    peers: VecDeque<SocketAddrV4>,
    last: Nanos,
    stats: FlowStats,
}

/// Every UDP flow of the engine.
#[derive(Default)]
pub(super) struct Udp {
    flows: HashMap<SocketAddrV4, Flow>,
}

impl Udp {
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    pub(super) fn flow_stats(&self) -> impl Iterator<Item = &FlowStats> {
        self.flows.values().map(|f| &f.stats)
    }

    /// Sends a task's datagram from `task` to `dest` (as addressed; `host_dest` is where the
    /// host sends it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input(
        &mut self,
        host: &Host,
        cfg: &EgressConfig,
        now: Nanos,
        task: SocketAddrV4,
        dest: SocketAddrV4,
        host_dest: SocketAddrV4,
        payload: &[u8],
        stats: &mut EgressStats,
    ) {
        if dest.port() == 0 {
            stats.drop(DropReason::Malformed);
            return;
        }
        if !self.flows.contains_key(&task) {
            if self.flows.len() >= cfg.limits.udp_flows {
                stats.drop(DropReason::UdpFlowLimit);
                return;
            }
            match open(host) {
                Ok(sock) => {
                    stats.udp_flows += 1;
                    self.flows.insert(
                        task,
                        Flow {
                            sock,
                            peers: VecDeque::new(),
                            last: now,
                            stats: FlowStats::new(Proto::Udp, task, dest),
                        },
                    );
                }
                Err(e) => {
                    tracing::debug!(%task, error = %e, "egress: no UDP socket");
                    stats.drop(DropReason::HostSocket);
                    return;
                }
            }
        }
        let Some(f) = self.flows.get_mut(&task) else {
            return;
        };
        f.last = now;
        f.stats.dest = dest;
        if !f.peers.contains(&host_dest) {
            if f.peers.len() >= PEERS {
                f.peers.pop_front();
            }
            f.peers.push_back(host_dest);
        }
        let result = f.sock.send_to(payload, host_dest);
        f.stats.sent(result, payload.len(), stats, "UDP datagram");
    }

    /// Reads what came back to the flows and hands the tasks their datagrams through `emit`.
    pub(super) fn run(
        &mut self,
        cfg: &EgressConfig,
        now: Nanos,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        stats: &mut EgressStats,
        emit: &mut dyn FnMut(&[u8]),
    ) -> bool {
        let mut acted = false;
        for (task, f) in self.flows.iter_mut() {
            for _ in 0..BUDGET {
                let (n, from) = match f.sock.recv_from(buf) {
                    Ok((n, SocketAddr::V4(from))) => (n, from),
                    Ok(_) => continue,
                    Err(_) => break,
                };
                acted = true;
                if !f.peers.contains(&from) {
                    stats.drop(DropReason::UnknownPeer);
                    continue;
                }
                f.last = now;
                let shown = SocketAddrV4::new(cfg.shown_source(*from.ip()), from.port());
                if !packet::write_udp(out, shown, *task, &buf[..n], usize::from(cfg.mtu)) {
                    stats.drop(DropReason::ReplyTooLarge);
                    continue;
                }
                f.stats.packets_in += 1;
                f.stats.bytes_in += n as u64;
                emit(out);
            }
        }
        acted
    }

    pub(super) fn expire(&mut self, cfg: &EgressConfig, now: Nanos) {
        self.flows
            .retain(|_, f| now.saturating_sub(f.last) < cfg.limits.udp_idle);
    }

    pub(super) fn poll_at(&self, cfg: &EgressConfig) -> Option<Nanos> {
        self.flows
            .values()
            .map(|f| f.last.saturating_add(cfg.limits.udp_idle))
            .min()
    }
}

fn open(host: &Host) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_nonblocking(true)?;
    host.register(&s, Interest::READABLE)?;
    Ok(s)
}
