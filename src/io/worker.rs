//! A worker: one mio loop over one queue of every TAP and one data-path socket, feeding its own
//! `Dataplane` in batches.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::tap::TapQueue;
use super::udp::{RecvBatch, SendBatch, UdpSocket};
use crate::dataplane::{
    Counters, Dataplane, DropReason, Output, PortId, Tables, Target, UNDERLAY_UDP_PAYLOAD,
};

/// Frames read from one TAP queue per wake-up before the others get a turn.
const TAP_BUDGET: usize = 64;
/// recvmmsg calls per wake-up before the others get a turn.
const UDP_BUDGET: usize = 4;
/// Datagrams per recvmmsg / sendmmsg.
pub const BATCH: usize = 32;
/// How often a worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
const UDP_TOKEN: Token = Token(usize::MAX - 1);
pub const WAKE_TOKEN: Token = Token(usize::MAX);

/// Everything one worker thread owns.
pub struct Worker {
    pub id: usize,
    pub tables: Arc<ArcSwap<Tables>>,
    /// One queue per local port, indexed by `PortId`.
    pub taps: Vec<TapQueue>,
    pub udp: UdpSocket,
    pub poll: Poll,
    pub stop: Arc<AtomicBool>,
    /// Where this worker publishes a copy of its counters.
    pub published: Arc<Mutex<Counters>>,
    /// Largest frame or datagram the tables allow, plus headroom.
    pub max_packet: usize,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Creates the poller and its waker (for shutdown) for a worker.
pub fn poll_with_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
    Ok((poll, waker))
}

struct Io<'a> {
    taps: &'a [TapQueue],
    udp: &'a UdpSocket,
    send: &'a mut SendBatch,
}

impl Io<'_> {
    /// Sends what the core emitted and empties `out`.
    fn flush(&mut self, dp: &mut Dataplane, now: u64, out: &mut Output) {
        for (target, bytes) in out.iter() {
            match target {
                Target::Port(PortId(q)) => {
                    let ok = self.taps.get(q as usize).map(|t| t.send(bytes));
                    if !matches!(ok, Some(Ok(_))) {
                        dp.count_drop(now, DropReason::PortTxFailed);
                    }
                }
                Target::Underlay(dst) => {
                    let Some(payload) = bytes.get(UNDERLAY_UDP_PAYLOAD..) else {
                        continue;
                    };
                    let to = SocketAddrV4::new(dst.addr, dst.port);
                    if !self.send.push(to, payload) {
                        self.send_now(dp, now);
                        self.send.push(to, payload);
                    }
                }
            }
        }
        self.send_now(dp, now);
        out.clear();
    }

    fn send_now(&mut self, dp: &mut Dataplane, now: u64) {
        let queued = self.send.len();
        if queued == 0 {
            return;
        }
        let sent = match self.udp.send_batch(self.send) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "underlay send failed");
                0
            }
        };
        for _ in sent..queued {
            dp.count_drop(now, DropReason::UnderlayTxFailed);
        }
    }
}

impl Worker {
    /// Runs until `stop` is set (and the waker fires).
    pub fn run(self) -> io::Result<()> {
        let Worker {
            id,
            tables,
            taps,
            udp,
            mut poll,
            stop,
            published,
            max_packet,
        } = self;
        for (i, tap) in taps.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&tap.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
        }
        poll.registry().register(
            &mut SourceFd(&udp.as_raw_fd()),
            UDP_TOKEN,
            Interest::READABLE,
        )?;

        let mut dp = Dataplane::new(tables.load_full());
        let mut out = Output::with_capacity(BATCH * 2, BATCH * 2 * max_packet);
        let mut recv = RecvBatch::new(BATCH, max_packet);
        let mut send = SendBatch::with_capacity(BATCH);
        let mut frame = vec![0u8; max_packet];
        let mut events = Events::with_capacity(256);
        // Edge-triggered readiness: a source stays "ready" until it returns WouldBlock.
        let mut tap_ready = vec![true; taps.len()];
        let mut udp_ready = true;
        let mut last_publish = 0u64;
        let mut io = Io {
            taps: &taps,
            udp: &udp,
            send: &mut send,
        };
        tracing::debug!(worker = id, ports = taps.len(), "worker started");

        while !stop.load(Ordering::Relaxed) {
            let busy = udp_ready || tap_ready.iter().any(|r| *r);
            let timeout = if busy {
                Duration::ZERO
            } else {
                Duration::from_millis(500)
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    UDP_TOKEN => udp_ready = true,
                    WAKE_TOKEN => {}
                    Token(i) => {
                        if let Some(r) = tap_ready.get_mut(i) {
                            *r = true;
                        }
                    }
                }
            }
            let current = tables.load();
            if !Arc::ptr_eq(&current, dp.tables()) {
                dp.set_tables(Arc::clone(&current));
            }
            let now = now_nanos();

            for (i, ready) in tap_ready.iter_mut().enumerate() {
                if !*ready {
                    continue;
                }
                for _ in 0..TAP_BUDGET {
                    match io.taps[i].recv(&mut frame) {
                        Ok(n) => {
                            dp.from_port(now, PortId(i as u32), &frame[..n], &mut out);
                            if out.len() >= BATCH {
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

            if udp_ready {
                for _ in 0..UDP_BUDGET {
                    match io.udp.recv_batch(&mut recv) {
                        Ok(0) => {
                            udp_ready = false;
                            break;
                        }
                        Ok(_) => {
                            for (src, payload, truncated) in recv.iter() {
                                if truncated {
                                    dp.drop_underlay(now, payload.len(), DropReason::Malformed);
                                } else {
                                    dp.from_underlay_udp(now, src, payload, &mut out);
                                }
                                if out.len() >= BATCH {
                                    io.flush(&mut dp, now, &mut out);
                                }
                            }
                            io.flush(&mut dp, now, &mut out);
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                tracing::warn!(worker = id, error = %e, "underlay receive failed");
                            }
                            udp_ready = false;
                            break;
                        }
                    }
                }
            }

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

fn publish(slot: &Mutex<Counters>, dp: &Dataplane) {
    if let Ok(mut c) = slot.lock() {
        c.clone_from(dp.counters());
    }
}
