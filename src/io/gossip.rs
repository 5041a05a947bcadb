//! The gossip core on real sockets: one tokio task owns a UDP socket and a TCP listener on the
//! gossip address (port 7946 by default) and drives a [`Gossip`] core with them and the clock.
//!
//! TCP carries one sealed message per connection, framed by a 4-byte big-endian length (at most
//! [`MAX_STREAM_MESSAGE`]); a reply is a new connection to the sender's gossip address, so the
//! runner never waits on a peer. The daemon runs one per node in a swarm (`control::daemon::gossip`).

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::gossip::{
    EndpointEntry, Event, Gossip, GossipError, Keyring, NodeIdentity, Stats, Transmit, Transport,
};

/// Default gossip port (Docker's 7946).
pub const GOSSIP_PORT: u16 = 7946;

/// Largest full-state message accepted on a stream (a network's table of thousands of rows).
pub const MAX_STREAM_MESSAGE: usize = 16 << 20;

/// Requests to the runner.
enum Command {
    Join(Vec<(String, SocketAddr)>),
    SetNetworks(BTreeSet<String>, oneshot::Sender<Result<(), GossipError>>),
    Upsert(
        String,
        String,
        EndpointEntry,
        oneshot::Sender<Result<(), GossipError>>,
    ),
    Remove(String, String, oneshot::Sender<Result<(), GossipError>>),
    Table(String, oneshot::Sender<Vec<(String, EndpointEntry)>>),
    SwarmNodes(Option<BTreeSet<String>>),
    Keyring(Keyring),
    Status(oneshot::Sender<GossipStatus>),
    Leave(oneshot::Sender<()>),
}

/// What the runner's core says about itself, for the daemon's stats.
#[derive(Debug, Clone, Default)]
pub struct GossipStatus {
    /// This node's identity as gossiped (its bump rises when it was declared down and rejoined).
    pub me: Option<NodeIdentity>,
    /// Live members other than this node.
    pub members: Vec<NodeIdentity>,
    /// The suspicion timeout in force.
    pub suspicion: std::time::Duration,
    pub stats: Stats,
}

/// The handle the daemon keeps: commands in, events out.
pub struct GossipHandle {
    cmds: mpsc::UnboundedSender<Command>,
    /// What the core learnt (members, remote endpoints), in order.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The address the sockets are bound to.
    pub local_addr: SocketAddr,
}

/// The runner has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the gossip runner has stopped")]
pub struct Stopped;

impl GossipHandle {
    pub fn join(&self, peers: Vec<(String, SocketAddr)>) -> Result<(), Stopped> {
        self.cmds.send(Command::Join(peers)).map_err(|_| Stopped)
    }

    pub async fn set_local_networks(
        &self,
        nets: BTreeSet<String>,
    ) -> Result<Result<(), GossipError>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::SetNetworks(nets, tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    pub async fn upsert_local_endpoint(
        &self,
        network: &str,
        endpoint_id: &str,
        entry: EndpointEntry,
    ) -> Result<Result<(), GossipError>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Upsert(
                network.into(),
                endpoint_id.into(),
                entry,
                tx,
            ))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    pub async fn remove_local_endpoint(
        &self,
        network: &str,
        endpoint_id: &str,
    ) -> Result<Result<(), GossipError>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Remove(network.into(), endpoint_id.into(), tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Takes the event stream (for a task of its own); the handle keeps an empty one.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<Event> {
        std::mem::replace(&mut self.events, mpsc::unbounded_channel().1)
    }

    /// Only these node IDs may talk to this node (`None`: any holder of the keys).
    pub fn set_swarm_nodes(&self, nodes: Option<BTreeSet<String>>) -> Result<(), Stopped> {
        self.cmds
            .send(Command::SwarmNodes(nodes))
            .map_err(|_| Stopped)
    }

    /// Replace the keyring (the managers rotated the swarm's keys).
    pub fn set_keyring(&self, keyring: Keyring) -> Result<(), Stopped> {
        self.cmds
            .send(Command::Keyring(keyring))
            .map_err(|_| Stopped)
    }

    /// Tells a few members that this node leaves (they withdraw its endpoints at once), then
    /// stops the runner.
    pub async fn leave(&self) -> Result<(), Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Command::Leave(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Members, suspicion timeout and counters.
    pub async fn status(&self) -> Result<GossipStatus, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Command::Status(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// The live endpoints of `network` as the core holds them now.
    pub async fn table(&self, network: &str) -> Result<Vec<(String, EndpointEntry)>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Table(network.into(), tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Bind UDP and TCP on `bind` (port 0: one free port for both), build the core with the bound
/// address, and run it until the handle is dropped.
pub async fn spawn(
    bind: SocketAddr,
    make: impl FnOnce(SocketAddr) -> Gossip,
) -> io::Result<(GossipHandle, JoinHandle<()>)> {
    let (udp, tcp) = bind_pair(bind).await?;
    let local_addr = udp.local_addr()?;
    let gossip = make(local_addr);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(gossip, udp, tcp, cmd_rx, ev_tx));
    Ok((
        GossipHandle {
            cmds: cmd_tx,
            events: ev_rx,
            local_addr,
        },
        task,
    ))
}

async fn bind_pair(bind: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if bind.port() != 0 {
        return Ok((UdpSocket::bind(bind).await?, TcpListener::bind(bind).await?));
    }
    // An ephemeral UDP port may be taken on TCP: try a few.
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(bind).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

async fn run(
    mut g: Gossip,
    udp: UdpSocket,
    tcp: TcpListener,
    mut cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let (stream_tx, mut stream_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(64);
    // Streams leave from the gossip address too (not whatever source the route picks), so that
    // a firewall rule for the node's gossip address covers both directions.
    let local_ip = udp.local_addr().ok().map(|a| a.ip());
    let mut buf = vec![0u8; 65536];
    let mut leaving: Option<oneshot::Sender<()>> = None;
    loop {
        let deadline = g
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    let _ = g.handle_datagram(from, &buf[..n], now());
                }
            }
            r = tcp.accept() => {
                if let Ok((stream, from)) = r {
                    tokio::spawn(read_one(stream, from, stream_tx.clone()));
                }
            }
            Some((from, msg)) = stream_rx.recv() => {
                let _ = g.handle_stream_message(from, &msg, now());
            }
            c = cmds.recv() => {
                let Some(c) = c else { return };
                let t = now();
                match c {
                    Command::Join(peers) => g.join(&peers, t),
                    Command::SetNetworks(n, tx) => { let _ = tx.send(g.set_local_networks(n, t)); }
                    Command::Upsert(n, id, e, tx) => { let _ = tx.send(g.upsert_local_endpoint(&n, &id, e, t)); }
                    Command::Remove(n, id, tx) => { let _ = tx.send(g.remove_local_endpoint(&n, &id, t)); }
                    Command::Table(n, tx) => {
                        let rows = g.table(&n).map(|t| t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()).unwrap_or_default();
                        let _ = tx.send(rows);
                    }
                    Command::SwarmNodes(n) => g.set_swarm_nodes(n),
                    Command::Keyring(k) => g.set_keyring(k),
                    Command::Leave(tx) => {
                        g.leave(t);
                        leaving = Some(tx);
                    }
                    Command::Status(tx) => {
                        let _ = tx.send(GossipStatus {
                            me: Some(g.identity().clone()),
                            members: g.members().cloned().collect(),
                            suspicion: g.suspicion_timeout(),
                            stats: g.stats().clone(),
                        });
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => g.handle_timeout(now()),
        }
        while let Some(t) = g.poll_transmit() {
            send(&udp, local_ip, t).await;
        }
        if let Some(tx) = leaving.take() {
            let _ = tx.send(());
            return;
        }
        while let Some(e) = g.poll_event() {
            if events.send(e).is_err() {
                return;
            }
        }
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn send(udp: &UdpSocket, local_ip: Option<std::net::IpAddr>, t: Transmit) {
    match t.transport {
        Transport::Udp => {
            // A lost datagram is what gossip expects; errors are not fatal.
            let _ = udp.send_to(&t.payload, t.to).await;
        }
        Transport::Tcp => {
            tokio::spawn(async move {
                let attempt = async {
                    let mut s = connect_from(local_ip, t.to).await?;
                    s.write_all(&(t.payload.len() as u32).to_be_bytes()).await?;
                    s.write_all(&t.payload).await?;
                    s.shutdown().await
                };
                let r = tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await;
                if !matches!(r, Ok(Ok(()))) {
                    tracing::debug!(to = %t.to, "gossip stream message not delivered");
                }
            });
        }
    }
}

async fn connect_from(local_ip: Option<std::net::IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = local_ip.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == to.is_ipv4())
    else {
        return TcpStream::connect(to).await;
    };
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

async fn read_one(mut s: TcpStream, from: SocketAddr, out: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    let attempt = async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_STREAM_MESSAGE {
            return Err(io::Error::other("gossip stream message too large"));
        }
        let mut msg = vec![0u8; len];
        s.read_exact(&mut msg).await?;
        Ok(msg)
    };
    if let Ok(Ok(msg)) = tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await {
        let _ = out.send((from, msg)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::{EndpointState, GossipConfig, Keyring, NodeIdentity};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn keys() -> Keyring {
        Keyring::new(&[(1, vec![7; 16])]).unwrap()
    }

    #[tokio::test]
    async fn three_runners_on_loopback_exchange_an_endpoint() {
        let mut handles = Vec::new();
        for i in 1..=3u8 {
            let bind = SocketAddr::from((Ipv4Addr::new(127, 78, 0, i), 0));
            let (h, _task) = spawn(bind, |addr| {
                Gossip::new(
                    NodeIdentity::new(format!("node{i}"), addr, 0),
                    keys(),
                    GossipConfig::default(),
                    u64::from(i),
                )
            })
            .await
            .expect("bind on 127.78.0.x");
            handles.push(h);
        }
        let nets: BTreeSet<String> = ["net-a".to_string()].into();
        for h in &handles {
            h.set_local_networks(nets.clone()).await.unwrap().unwrap();
        }
        let seed = ("node1".to_string(), handles[0].local_addr);
        handles[1].join(vec![seed.clone()]).unwrap();
        handles[2].join(vec![seed]).unwrap();
        let entry = EndpointEntry {
            task_id: "task-1".into(),
            task_name: "web.1.task-1".into(),
            service_id: "svc-1".into(),
            service_name: "web".into(),
            ip: Ipv4Addr::new(10, 0, 9, 5),
            mac: [2, 66, 10, 0, 9, 5],
            vtep: Ipv4Addr::new(127, 78, 0, 3),
            aliases: vec![],
            state: EndpointState::Running,
        };
        handles[2]
            .upsert_local_endpoint("net-a", "ep-1", entry.clone())
            .await
            .unwrap()
            .unwrap();
        // Wait for the event itself, bounded: no sleeping as synchronisation.
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match handles[0].events.recv().await {
                    Some(Event::EndpointAdded {
                        endpoint_id,
                        entry: e,
                        ..
                    }) if endpoint_id == "ep-1" => return e,
                    Some(_) => continue,
                    None => panic!("runner stopped"),
                }
            }
        })
        .await
        .expect("node 1 saw node 3's endpoint within 10 s");
        assert_eq!(seen, entry);
        let rows = handles[1].table("net-a").await.unwrap();
        // Node 2 may still be receiving; it holds at most the one row, and only that one.
        assert!(rows.iter().all(|(k, v)| k == "ep-1" && *v == entry));
    }
}
