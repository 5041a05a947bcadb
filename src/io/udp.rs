//! Underlay sockets, batched with recvmmsg/sendmmsg: UDP sockets for VXLAN and ESP in UDP (one
//! per worker, SO_REUSEPORT), and raw sockets for ESP as IP protocol 50.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for (the kernel caps it at net.core.[rw]mem_max unless forced).
const SOCKET_BUFFER: usize = 4 << 20;

/// A non-blocking datagram socket on the underlay (UDP or raw IP).
#[derive(Debug)]
pub struct DatagramSocket {
    sock: Socket,
}

/// IP protocol number of ESP.
pub const IPPROTO_ESP: i32 = 50;

impl DatagramSocket {
    /// A raw socket receiving every ESP packet (IP protocol 50) addressed to `addr`, with its
    /// IPv4 header. The kernel gives each raw socket a copy, so a node opens one, not one per
    /// worker. Needs CAP_NET_RAW.
    pub fn raw_esp_receiver(addr: std::net::Ipv4Addr) -> io::Result<DatagramSocket> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(IPPROTO_ESP)),
        )?;
        if force_buffer(&sock, libc::SO_RCVBUFFORCE).is_err() {
            let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        }
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(addr, 0)).into())?;
        Ok(DatagramSocket { sock })
    }

    /// A send-only raw socket (IPPROTO_RAW: the caller writes the whole IPv4 header, and the
    /// kernel never queues received packets on it). Needs CAP_NET_RAW.
    pub fn raw_sender() -> io::Result<DatagramSocket> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        if force_buffer(&sock, libc::SO_SNDBUFFORCE).is_err() {
            let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        }
        Ok(DatagramSocket { sock })
    }

    /// Binds `addr` with SO_REUSEPORT, so every worker can bind the same address and the kernel
    /// spreads incoming flows across them.
    pub fn bind_reuseport(addr: SocketAddrV4) -> io::Result<DatagramSocket> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        sock.set_reuse_port(true)?;
        // Root may exceed rmem_max/wmem_max; others get what the limit allows.
        if force_buffer(&sock, libc::SO_RCVBUFFORCE).is_err() {
            let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        }
        if force_buffer(&sock, libc::SO_SNDBUFFORCE).is_err() {
            let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        }
        sock.bind(&SocketAddr::V4(addr).into())?;
        Ok(DatagramSocket { sock })
    }

    /// Receives up to `batch.capacity()` datagrams; `Ok(0)` or `WouldBlock` when none wait.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.len = 0;
        let n = batch.slots;
        for i in 0..n {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buf[i * batch.slot_len..].as_mut_ptr().cast(),
                iov_len: batch.slot_len,
            };
            // SAFETY: an all-zero mmsghdr is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_iov = &mut batch.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            batch.headers[i] = h;
        }
        // SAFETY: headers[..n] point at iovecs, buffers and addresses owned by `batch`, which
        // outlive the call; n fits in c_uint.
        let got = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                batch.headers.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        batch.len = got as usize;
        Ok(batch.len)
    }

    /// Sends each `(destination, payload)`; returns how many the kernel took. Stops at the first
    /// `WouldBlock` (the caller counts the rest as dropped).
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<usize> {
        let total = batch.headers.len();
        let mut sent = 0;
        while sent < total {
            // SAFETY: headers[sent..] point at iovecs and addresses in `batch` and at payload
            // bytes the caller keeps alive until this returns.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    batch.headers[sent..].as_mut_ptr(),
                    (total - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent > 0 && e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                batch.clear();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(0)
                } else {
                    Err(e)
                };
            }
            sent += n as usize;
        }
        batch.clear();
        Ok(sent)
    }

    /// Another handle on the same socket (one to poll and read, one to send).
    pub fn try_clone(&self) -> io::Result<DatagramSocket> {
        Ok(DatagramSocket {
            sock: self.sock.try_clone()?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    }
}

/// Sets a socket buffer past the sysctl maximum (needs CAP_NET_ADMIN).
fn force_buffer(sock: &Socket, opt: libc::c_int) -> io::Result<()> {
    let size = SOCKET_BUFFER as libc::c_int;
    // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Reusable buffers for `recv_batch`.
pub struct RecvBatch {
    slots: usize,
    slot_len: usize,
    buf: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_in>,
    len: usize,
}

// SAFETY: the raw pointers inside are only ever set to point into the batch's own buffers,
// immediately before a syscall on the thread that owns the batch.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Room for `slots` datagrams of at most `slot_len` bytes each.
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        // SAFETY: all-zero iovec, mmsghdr and sockaddr_in are valid values.
        let (iov, hdr, addr) = unsafe {
            (
                MaybeUninit::<libc::iovec>::zeroed().assume_init(),
                MaybeUninit::<libc::mmsghdr>::zeroed().assume_init(),
                MaybeUninit::<libc::sockaddr_in>::zeroed().assume_init(),
            )
        };
        RecvBatch {
            slots,
            slot_len,
            buf: vec![0; slots * slot_len],
            iovecs: vec![iov; slots],
            headers: vec![hdr; slots],
            addrs: vec![addr; slots],
            len: 0,
        }
    }

    /// The datagrams of the last receive: source address and payload. A datagram longer than
    /// a slot is reported with its truncated bytes and `truncated = true`.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &[u8], bool)> + '_ {
        (0..self.len).map(move |i| {
            let h = &self.headers[i];
            let len = (h.msg_len as usize).min(self.slot_len);
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let src = Ipv4Addr::from(u32::from_be(self.addrs[i].sin_addr.s_addr));
            let start = i * self.slot_len;
            (src, &self.buf[start..start + len], truncated)
        })
    }
}

/// Reusable headers for `send_batch`.
pub struct SendBatch {
    cap: usize,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_in>,
}

// SAFETY: as for RecvBatch: pointers are set and used on the owning thread within one flush.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn with_capacity(n: usize) -> SendBatch {
        SendBatch {
            cap: n,
            iovecs: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
            addrs: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    pub fn clear(&mut self) {
        self.iovecs.clear();
        self.headers.clear();
        self.addrs.clear();
    }

    /// Queues `payload` for `dst`; false when full (the caller sends first). The vectors never
    /// grow past the capacity given at construction, so earlier pointers stay valid.
    pub fn push(&mut self, dst: SocketAddrV4, payload: &[u8]) -> bool {
        if self.headers.len() >= self.cap {
            return false;
        }
        let i = self.headers.len();
        // SAFETY: an all-zero sockaddr_in / mmsghdr is valid; fields are filled below.
        let mut sa: libc::sockaddr_in = unsafe { MaybeUninit::zeroed().assume_init() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = dst.port().to_be();
        sa.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
        self.addrs.push(sa);
        self.iovecs.push(libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        });
        // SAFETY: as above.
        let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        h.msg_hdr.msg_iov = &mut self.iovecs[i];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        self.headers.push(h);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_on_loopback() {
        let a = DatagramSocket::bind_reuseport(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let b = DatagramSocket::bind_reuseport(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(b_addr) = b.local_addr().unwrap() else {
            unreachable!()
        };
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let mut send = SendBatch::with_capacity(8);
        for p in &payloads {
            assert!(send.push(b_addr, p));
        }
        assert_eq!(a.send_batch(&mut send).unwrap(), 5);
        let mut recv = RecvBatch::new(8, 2048);
        let mut got = Vec::new();
        // Loopback delivery is synchronous with the send, so all five are queued already.
        while got.len() < 5 {
            match b.recv_batch(&mut recv) {
                Ok(0) => break,
                Ok(_) => got.extend(recv.iter().map(|(src, p, t)| (src, p.to_vec(), t))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 5);
        for ((src, p, truncated), want) in got.iter().zip(&payloads) {
            assert_eq!(*src, Ipv4Addr::LOCALHOST);
            assert_eq!(p, want);
            assert!(!truncated);
        }
    }
}
