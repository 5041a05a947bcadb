//! A node's underlay sockets: the data-path port (every worker, SO_REUSEPORT), the VXLAN
//! source ports shared by the workers, and ESP in UDP or over IP for encrypted networks.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::node::{random_u64, RunError};
use super::udp::DatagramSocket;
use super::worker::{Channel, UnderlaySocket};
use crate::dataplane::SRC_PORT_BASE;
use crate::topology::{EspTransport, Topology};

/// VXLAN source ports of a node. Flows are spread over them by their hash (as the kernel's
/// VXLAN device picks a source port per flow), so a receiver's per-flow hashing, and its
/// SO_REUSEPORT group of workers, sees many flows from one peer rather than one.
const VXLAN_SOURCE_PORTS: usize = 4;

/// Send-only UDP sockets for VXLAN: `[worker][k]`, where every worker's k-th is the same
/// socket (a duplicated descriptor) on a free random port of the dynamic range the core's
/// flow hash also picks from (`SRC_PORT_BASE` to 65535, RFC 7348). A flow thus
/// leaves from the same port whichever worker sends it, and the peer keeps it on one of its
/// workers, in order. The port is bound without SO_REUSEPORT, so it is never shared with
/// another program's socket.
fn vxlan_source_sockets(
    addr: Ipv4Addr,
    workers: usize,
) -> Result<Vec<Vec<DatagramSocket>>, RunError> {
    let ports: Vec<DatagramSocket> = (0..VXLAN_SOURCE_PORTS)
        .map(|_| bind_dynamic_port(addr))
        .collect::<Result<_, _>>()?;
    let mut all = Vec::with_capacity(workers);
    for _ in 1..workers {
        let copies = ports
            .iter()
            .map(|sock| {
                sock.try_clone().map_err(|source| RunError::Bind {
                    addr: SocketAddrV4::new(addr, 0),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        all.push(copies);
    }
    all.insert(0, ports);
    Ok(all)
}

/// A send-only socket on `addr` and a free random port of the dynamic range.
fn bind_dynamic_port(addr: Ipv4Addr) -> Result<DatagramSocket, RunError> {
    let span = u64::from(u16::MAX - SRC_PORT_BASE) + 1;
    let mut tries = 0;
    loop {
        let at = SocketAddrV4::new(addr, SRC_PORT_BASE + (random_u64() % span) as u16);
        match DatagramSocket::bind_sender(at) {
            Ok(sock) => return Ok(sock),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 64 => tries += 1,
            Err(source) => return Err(RunError::Bind { addr: at, source }),
        }
    }
}

/// Opens each worker's underlay sockets: VXLAN on the data-path port, and for encrypted
/// networks ESP in UDP (every worker) or ESP over IP (a raw sender per worker, one raw receiver:
/// the kernel copies each packet to every raw socket).
pub(super) fn underlay_sockets(
    topo: &Topology,
    workers: usize,
) -> Result<Vec<Vec<UnderlaySocket>>, RunError> {
    let node = &topo.node;
    let bind = |port: u16| {
        let addr = SocketAddrV4::new(node.data_path_addr, port);
        DatagramSocket::bind_reuseport(addr).map_err(|source| RunError::Bind { addr, source })
    };
    let mut all = Vec::with_capacity(workers);
    // The data-path port first: when data_path_addr is not this host's, the error names the
    // address and port the user chose, not one of the random source ports.
    let receivers: Vec<DatagramSocket> = (0..workers)
        .map(|_| bind(node.data_path_port))
        .collect::<Result<_, _>>()?;
    let senders = vxlan_source_sockets(node.data_path_addr, workers)?;
    for (vxlan_senders, receiver) in senders.into_iter().zip(receivers) {
        let mut socks = vec![UnderlaySocket {
            channel: Channel::Vxlan,
            sock: receiver,
        }];
        socks.extend(vxlan_senders.into_iter().map(|sock| UnderlaySocket {
            channel: Channel::VxlanSend,
            sock,
        }));
        all.push(socks);
    }
    if let Some(e) = &topo.encryption {
        let esp = esp_sockets(node.data_path_addr, e.transport, e.udp_port, workers)?;
        for (socks, esp) in all.iter_mut().zip(esp) {
            socks.extend(esp);
        }
    }
    Ok(all)
}

/// Each worker's ESP sockets: ESP in UDP on `udp_port` (every worker, SO_REUSEPORT), or ESP
/// over IP (a raw sender per worker, one raw receiver: the kernel copies each packet to every
/// raw socket).
pub(super) fn esp_sockets(
    addr: Ipv4Addr,
    transport: EspTransport,
    udp_port: u16,
    workers: usize,
) -> Result<Vec<Vec<UnderlaySocket>>, RunError> {
    (0..workers)
        .map(|w| {
            Ok(match transport {
                EspTransport::Udp => {
                    let at = SocketAddrV4::new(addr, udp_port);
                    vec![UnderlaySocket {
                        channel: Channel::EspUdp,
                        sock: DatagramSocket::bind_reuseport(at)
                            .map_err(|source| RunError::Bind { addr: at, source })?,
                    }]
                }
                EspTransport::Ip => {
                    let mut socks = vec![UnderlaySocket {
                        channel: Channel::RawSend,
                        sock: DatagramSocket::raw_sender().map_err(RunError::NeedNetRaw)?,
                    }];
                    if w == 0 {
                        socks.push(UnderlaySocket {
                            channel: Channel::EspIp,
                            sock: DatagramSocket::raw_esp_receiver(addr)
                                .map_err(RunError::NeedNetRaw)?,
                        });
                    }
                    socks
                }
            })
        })
        .collect()
}
