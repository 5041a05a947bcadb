//! The virtual port's link: frames queued in from the switch, frames queued out by the stack.
//!
//! Buffers are recycled through free lists (one for each direction, so that the two tokens
//! smoltcp holds at once borrow disjoint parts), so a task in steady state allocates nothing
//! per frame once its queues have grown to their working size.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames a task keeps waiting for its stack before it drops more (a full NIC ring).
pub const RX_QUEUE: usize = 256;

/// Frames in and out of one virtual task.
#[derive(Debug)]
pub struct Link {
    rx: VecDeque<Vec<u8>>,
    rx_free: Vec<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    tx_free: Vec<Vec<u8>>,
    /// Largest Ethernet frame (MTU + 14).
    max_frame: usize,
}

impl Link {
    pub fn new(mtu: u16) -> Link {
        Link {
            rx: VecDeque::new(),
            rx_free: Vec::new(),
            tx: Vec::new(),
            tx_free: Vec::new(),
            max_frame: usize::from(mtu) + 14,
        }
    }

    /// Queues a frame for the stack; false (dropped) when the queue is full or the frame is
    /// larger than the link's MTU allows.
    pub fn push_rx(&mut self, frame: &[u8]) -> bool {
        if self.rx.len() >= RX_QUEUE || frame.len() > self.max_frame {
            return false;
        }
        let mut buf = self.rx_free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.rx.push_back(buf);
        true
    }

    pub fn has_rx(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Hands every frame the stack sent to `emit`, in order.
    pub fn drain_tx(&mut self, emit: &mut dyn FnMut(&[u8])) {
        for buf in self.tx.drain(..) {
            emit(&buf);
            if self.tx_free.len() < RX_QUEUE {
                self.tx_free.push(buf);
            }
        }
    }
}

pub struct RxToken<'a> {
    frame: Vec<u8>,
    free: &'a mut Vec<Vec<u8>>,
}

pub struct TxToken<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    free: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        if self.free.len() < RX_QUEUE {
            self.free.push(self.frame);
        }
        r
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        let r = f(&mut buf);
        self.tx.push(buf);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                free: &mut self.rx_free,
            },
            TxToken {
                tx: &mut self.tx,
                free: &mut self.tx_free,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            tx: &mut self.tx,
            free: &mut self.tx_free,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        caps.max_burst_size = None;
        caps
    }
}
