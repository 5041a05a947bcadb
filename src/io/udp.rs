//! Underlay sockets, batched with recvmmsg/sendmmsg: UDP sockets for VXLAN and ESP in UDP (one
//! per worker, SO_REUSEPORT), and raw sockets for ESP as IP protocol 50.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for (the kernel caps it at net.core.[rw]mem_max unless forced).
const SOCKET_BUFFER: usize = 16 << 20;

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
        Self::bind_udp(addr, true)
    }

    /// A send-only UDP socket bound to `addr`, the port its own (no SO_REUSEPORT). Its receive
    /// buffer is the smallest the kernel allows: nothing reads it.
    pub fn bind_sender(addr: SocketAddrV4) -> io::Result<DatagramSocket> {
        Self::bind_udp(addr, false)
    }

    /// A non-blocking UDP socket on `addr` with a large send buffer, and with `receives` a large
    /// receive buffer and SO_REUSEPORT. Root may exceed rmem_max/wmem_max; others get what the
    /// limit allows.
    fn bind_udp(addr: SocketAddrV4, receives: bool) -> io::Result<DatagramSocket> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        if receives {
            sock.set_reuse_port(true)?;
            if force_buffer(&sock, libc::SO_RCVBUFFORCE).is_err() {
                let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
            }
        } else {
            let _ = sock.set_recv_buffer_size(0);
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
            h.msg_hdr.msg_control = batch.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_ROOM as _;
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

    /// Sends each queued `(destination, payload)`; returns how many datagrams the kernel took.
    /// Stops at the first `WouldBlock` (the caller counts the rest as dropped). A message the
    /// kernel refuses for another reason (no route, too big, ...) is skipped and the rest still
    /// go. With UDP GSO on, runs of equal-sized datagrams to one destination go down as one
    /// `UDP_SEGMENT` message each, which the kernel splits in one pass; a route whose device
    /// cannot take GSO turns it off for this batch and the ones after.
    pub fn send_batch(&self, batch: &mut SendBatch) -> usize {
        batch.build();
        // GSO for the batches after this one: off for good only if the device refused it.
        let mut keep_gso = batch.gso;
        let mut sent = 0;
        loop {
            match self.send_messages(batch) {
                Sent::All(n) => {
                    sent += n;
                    break;
                }
                Sent::GsoRefused {
                    sent: n,
                    from_item,
                    device,
                } => {
                    sent += n;
                    // EIO: the route's device cannot do UDP GSO, now or later. EINVAL: this
                    // run does not fit (e.g. a path MTU lowered since): one by one this time.
                    if device && keep_gso {
                        tracing::info!(
                            "UDP GSO refused by the device; sending datagrams one by one"
                        );
                        keep_gso = false;
                    }
                    batch.gso = false;
                    batch.items.drain(..from_item);
                    batch.build();
                }
            }
        }
        batch.clear();
        batch.gso = keep_gso;
        sent
    }

    fn send_messages(&self, batch: &mut SendBatch) -> Sent {
        let total = batch.headers.len();
        let mut sent_msgs = 0;
        let mut sent = 0;
        while sent_msgs < total {
            // SAFETY: headers[sent_msgs..] point at iovecs, addresses and control buffers that
            // `build` filled in `batch` (not moved since), and at payload bytes the caller of
            // `push` keeps alive until `send_batch` returns.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    batch.headers[sent_msgs..].as_mut_ptr(),
                    (total - sent_msgs) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => {}
                }
                let group = batch.groups[sent_msgs];
                let gso_error = matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL));
                if batch.gso && group.count > 1 && gso_error {
                    return Sent::GsoRefused {
                        sent,
                        from_item: group.first,
                        device: e.raw_os_error() == Some(libc::EIO),
                    };
                }
                // sendmmsg reports an error only for the first message it tried: skip that
                // one (its datagrams count as not sent) and go on with the rest.
                tracing::debug!(error = %e, datagrams = group.count, "underlay message refused");
                sent_msgs += 1;
                continue;
            }
            let n = n as usize;
            sent += batch.groups[sent_msgs..sent_msgs + n]
                .iter()
                .map(|g| g.count)
                .sum::<usize>();
            sent_msgs += n;
        }
        Sent::All(sent)
    }

    /// Asks the kernel to hand over runs of datagrams of one flow as one buffer (UDP GRO);
    /// `RecvBatch::iter` splits them again. Slots must then hold 64 KiB.
    pub fn enable_gro(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_UDP,
                UDP_GRO,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
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
    /// Control buffers: UDP GRO reports the size of the datagrams a slot holds.
    cmsgs: Vec<[u64; CMSG_ROOM / 8]>,
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
            cmsgs: vec![[0; CMSG_ROOM / 8]; slots],
            len: 0,
        }
    }

    /// The datagrams of the last receive: source address and payload. A slot that UDP GRO
    /// filled with several datagrams yields each of them. A datagram longer than a slot is
    /// reported with its truncated bytes and `truncated = true`.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8], bool)> + '_ {
        (0..self.len).flat_map(move |i| {
            let h = &self.headers[i];
            let len = (h.msg_len as usize).min(self.slot_len);
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let src = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(self.addrs[i].sin_addr.s_addr)),
                u16::from_be(self.addrs[i].sin_port),
            );
            let start = i * self.slot_len;
            let seg = match gro_segment_size(h) {
                Some(seg) if seg > 0 && !truncated => seg,
                _ => len.max(1),
            };
            self.buf[start..start + len]
                .chunks(seg)
                .map(move |d| (src, d, truncated))
        })
    }
}

/// `UDP_GRO` socket option and control message type (linux/udp.h).
const UDP_GRO: libc::c_int = 104;

/// The datagram size of a GRO-coalesced receive, from its control message.
fn gro_segment_size(h: &libc::mmsghdr) -> Option<usize> {
    if h.msg_hdr.msg_controllen == 0 || h.msg_hdr.msg_control.is_null() {
        return None;
    }
    // SAFETY: the kernel wrote msg_controllen bytes of control messages into our buffer;
    // the cmsg macros walk within those bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
        }
    }
    None
}

/// One message of a send: `count` datagrams from `first` on, to one destination.
#[derive(Debug, Clone, Copy)]
struct Group {
    first: usize,
    count: usize,
    seg: usize,
    bytes: usize,
}

/// Most datagrams in one UDP GSO message (the kernel's UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one UDP GSO message (one IPv4 datagram's worth).
const GSO_MAX_BYTES: usize = 65_000;
/// `UDP_SEGMENT` socket option (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
/// Room for one cmsg carrying a u16.
const CMSG_ROOM: usize = 32;

/// What one pass of `send_messages` got through.
enum Sent {
    /// Every message was tried (or the socket is full); this many datagrams went.
    All(usize),
    /// A GSO message was refused: `sent` went, resend from item `from_item` without GSO;
    /// `device`: for good (EIO), not only for this run (EINVAL).
    GsoRefused {
        sent: usize,
        from_item: usize,
        device: bool,
    },
}

/// One queued datagram: an optional head in the batch's own arena, then the caller's bytes.
#[derive(Debug, Clone, Copy)]
struct Item {
    dst: SocketAddrV4,
    /// `head_len` bytes at `head_at` in `SendBatch::heads` (0: no head).
    head_at: usize,
    head_len: usize,
    ptr: *const u8,
    len: usize,
}

impl Item {
    fn len(&self) -> usize {
        self.head_len + self.len
    }
}

/// Room for the heads of one batch's datagrams, per datagram (VXLAN 8, Ethernet 14, IPv4 and
/// TCP with options 60 each).
const HEAD_ROOM: usize = 144;

/// Datagrams queued for `send_batch`, grouped into messages when it runs.
pub struct SendBatch {
    cap: usize,
    /// Whether runs of datagrams may be sent as UDP GSO messages.
    gso: bool,
    items: Vec<Item>,
    /// Copies of the heads given to `push_parts`; never grows past its first capacity, so the
    /// iovecs pointing into it stay valid.
    heads: Vec<u8>,
    /// Index in `iovecs` of each item's first iovec, and one past the last item's.
    iov_at: Vec<usize>,
    groups: Vec<Group>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_in>,
    cmsgs: Vec<[u64; CMSG_ROOM / 8]>,
}

// SAFETY: the raw pointers are set and used on the owning thread within one flush.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Room for `n` datagrams; `gso` groups runs of them into UDP GSO messages (UDP sockets).
    pub fn with_capacity(n: usize, gso: bool) -> SendBatch {
        SendBatch {
            cap: n,
            gso,
            items: Vec::with_capacity(n),
            heads: Vec::with_capacity(n * HEAD_ROOM),
            iov_at: Vec::with_capacity(n + 1),
            groups: Vec::with_capacity(n),
            iovecs: Vec::with_capacity(2 * n),
            headers: Vec::with_capacity(n),
            addrs: Vec::with_capacity(n),
            cmsgs: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.heads.clear();
        self.iov_at.clear();
        self.groups.clear();
        self.iovecs.clear();
        self.headers.clear();
        self.addrs.clear();
        self.cmsgs.clear();
    }

    /// Queues `payload` for `dst`; false when full (the caller sends first).
    ///
    /// # Safety
    /// The batch keeps only a pointer to `payload`: its bytes must stay alive, unmoved and
    /// unwritten until the next `send_batch` or `clear` of this batch returns.
    pub unsafe fn push(&mut self, dst: SocketAddrV4, payload: &[u8]) -> bool {
        if self.items.len() >= self.cap {
            return false;
        }
        self.items.push(Item {
            dst,
            head_at: 0,
            head_len: 0,
            ptr: payload.as_ptr(),
            len: payload.len(),
        });
        true
    }

    /// Queues one datagram of `head` (copied into the batch) followed by `body`; false when
    /// full (the caller sends first). A head longer than `HEAD_ROOM` is never taken.
    ///
    /// # Safety
    /// As for `push`, for `body`.
    pub unsafe fn push_parts(&mut self, dst: SocketAddrV4, head: &[u8], body: &[u8]) -> bool {
        let head_at = self.heads.len();
        if self.items.len() >= self.cap
            || head.len() > HEAD_ROOM
            || head_at + head.len() > self.heads.capacity()
        {
            return false;
        }
        self.heads.extend_from_slice(head);
        self.items.push(Item {
            dst,
            head_at,
            head_len: head.len(),
            ptr: body.as_ptr(),
            len: body.len(),
        });
        true
    }

    /// Groups the items into messages and fills the kernel structures, all at their final
    /// addresses (nothing is pushed after this until `clear`).
    fn build(&mut self) {
        self.groups.clear();
        for (i, item) in self.items.iter().enumerate() {
            let (dst, len) = (item.dst, item.len());
            if let Some(g) = self.groups.last_mut() {
                let same_dst = self.items[g.first].dst == dst;
                let open = g.bytes % g.seg == 0; // no shorter datagram closed it yet
                if self.gso
                    && same_dst
                    && open
                    && len <= g.seg
                    && g.count < GSO_MAX_SEGMENTS
                    && g.bytes + len <= GSO_MAX_BYTES
                {
                    g.count += 1;
                    g.bytes += len;
                    continue;
                }
            }
            self.groups.push(Group {
                first: i,
                count: 1,
                seg: len.max(1),
                bytes: len,
            });
        }
        self.iovecs.clear();
        self.iov_at.clear();
        for item in &self.items {
            self.iov_at.push(self.iovecs.len());
            if item.head_len > 0 {
                self.iovecs.push(libc::iovec {
                    iov_base: self.heads[item.head_at..].as_ptr() as *mut libc::c_void,
                    iov_len: item.head_len,
                });
            }
            self.iovecs.push(libc::iovec {
                iov_base: item.ptr as *mut libc::c_void,
                iov_len: item.len,
            });
        }
        self.iov_at.push(self.iovecs.len());
        self.addrs.clear();
        self.cmsgs.clear();
        for g in &self.groups {
            let dst = self.items[g.first].dst;
            // SAFETY: an all-zero sockaddr_in is valid; family, port and address are set.
            let mut sa: libc::sockaddr_in = unsafe { MaybeUninit::zeroed().assume_init() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = dst.port().to_be();
            sa.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
            self.addrs.push(sa);
            self.cmsgs.push([0; CMSG_ROOM / 8]);
        }
        self.headers.clear();
        for (k, g) in self.groups.iter().enumerate() {
            // SAFETY: an all-zero mmsghdr is valid; the fields used are set below.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            let iovs = self.iov_at[g.first]..self.iov_at[g.first + g.count];
            h.msg_hdr.msg_iovlen = iovs.len() as _;
            h.msg_hdr.msg_iov = self.iovecs[iovs.start..].as_mut_ptr();
            h.msg_hdr.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            if g.count > 1 {
                let buf = self.cmsgs[k].as_mut_ptr().cast::<libc::c_void>();
                h.msg_hdr.msg_control = buf;
                // SAFETY: CMSG_SPACE of a u16 fits CMSG_ROOM bytes; the cmsg macros only
                // compute offsets within the buffer given in msg_control/msg_controllen.
                unsafe {
                    h.msg_hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), g.seg as u16);
                }
            }
            self.headers.push(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> DatagramSocket {
        DatagramSocket::bind_reuseport(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap()
    }

    /// Every datagram waiting on `s`, one by one (runs taken with UDP GRO split again).
    fn drain(s: &DatagramSocket) -> Vec<Vec<u8>> {
        let mut recv = RecvBatch::new(16, 65536);
        let mut got = Vec::new();
        while let Ok(n) = s.recv_batch(&mut recv) {
            if n == 0 {
                break;
            }
            got.extend(recv.iter().map(|(_, p, _)| p.to_vec()));
        }
        got
    }

    fn addr(s: &DatagramSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            SocketAddr::V4(v) => v,
            SocketAddr::V6(v) => panic!("an IPv6 address {v} for an IPv4 socket"),
        }
    }

    #[test]
    fn batches_round_trip_on_loopback() {
        let a = loopback();
        let b = loopback();
        let b_addr = addr(&b);
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let mut send = SendBatch::with_capacity(8, false);
        for p in &payloads {
            // SAFETY: `payloads` outlives the send below.
            assert!(unsafe { send.push(b_addr, p) });
        }
        assert_eq!(a.send_batch(&mut send), 5);
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
            assert_eq!(*src.ip(), Ipv4Addr::LOCALHOST);
            assert_eq!(p, want);
            assert!(!truncated);
        }
    }

    #[test]
    fn gso_runs_arrive_as_separate_datagrams() {
        let a = loopback();
        let b = loopback();
        let c = loopback();
        // b takes runs whole (UDP GRO) and must still yield the datagrams one by one.
        b.enable_gro().unwrap();
        // Ten full datagrams and a short one to b, then two to c: three messages with GSO.
        let mut payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
        payloads.push(vec![99; 300]);
        let to_c: Vec<Vec<u8>> = vec![vec![7; 500], vec![8; 500]];
        let mut send = SendBatch::with_capacity(16, true);
        for p in &payloads {
            // SAFETY: `payloads` and `to_c` outlive the send below.
            assert!(unsafe { send.push(addr(&b), p) });
        }
        for p in &to_c {
            // SAFETY: as above.
            assert!(unsafe { send.push(addr(&c), p) });
        }
        send.build();
        assert_eq!(send.groups.len(), 2, "one message per destination");
        assert_eq!(a.send_batch(&mut send), 13);
        assert_eq!(
            drain(&b),
            payloads,
            "the kernel split the run at the datagram boundaries"
        );
        assert_eq!(drain(&c), to_c);
    }

    #[test]
    fn datagrams_in_two_pieces_arrive_whole_with_and_without_gso() {
        let a = loopback();
        let b = loopback();
        b.enable_gro().unwrap();
        // Heads of two lengths, bodies of the same size but the last: one GSO message as long
        // as head + body stays the same size.
        let bodies: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; if i == 5 { 200 } else { 1000 }])
            .collect();
        let heads: Vec<Vec<u8>> = (0..6u8).map(|i| vec![0xf0 | i; 60]).collect();
        let want: Vec<Vec<u8>> = heads
            .iter()
            .zip(&bodies)
            .map(|(h, d)| [&h[..], &d[..]].concat())
            .collect();
        for gso in [true, false] {
            let mut send = SendBatch::with_capacity(8, gso);
            for (h, d) in heads.iter().zip(&bodies) {
                // SAFETY: `bodies` outlives the send below.
                assert!(unsafe { send.push_parts(addr(&b), h, d) });
            }
            // SAFETY: as above.
            assert!(!unsafe { send.push_parts(addr(&b), &[0; HEAD_ROOM + 1], &bodies[0]) });
            send.build();
            assert_eq!(send.groups.len(), if gso { 1 } else { 6 });
            assert_eq!(a.send_batch(&mut send), 6);
            assert_eq!(drain(&b), want, "gso {gso}");
        }
        // The heads' room is bounded: a full batch refuses more, and takes them once cleared.
        let mut send = SendBatch::with_capacity(2, true);
        let body = [1u8; 10];
        // SAFETY: `body` outlives the batch's use.
        unsafe {
            assert!(send.push_parts(addr(&b), &[0; HEAD_ROOM], &body));
            assert!(send.push_parts(addr(&b), &[0; HEAD_ROOM], &body));
            assert!(!send.push_parts(addr(&b), &[0; 1], &body));
            send.clear();
            assert!(send.push_parts(addr(&b), &[0; HEAD_ROOM], &body));
        }
    }

    #[test]
    fn a_refused_message_skips_only_itself() {
        let a = loopback();
        let b = loopback();
        let c = loopback();
        // The middle datagram is larger than UDP allows (EMSGSIZE); the ones after it must
        // still go, with and without GSO.
        let small = vec![1u8; 100];
        let huge = vec![2u8; 70_000];
        for gso in [false, true] {
            let mut send = SendBatch::with_capacity(8, gso);
            // SAFETY: the payloads outlive the send below.
            unsafe {
                assert!(send.push(addr(&b), &small));
                assert!(send.push(addr(&b), &small));
                assert!(send.push(addr(&c), &huge));
                assert!(send.push(addr(&b), &small));
            }
            assert_eq!(a.send_batch(&mut send), 3, "gso {gso}");
            assert!(send.is_empty());
            let mut recv = RecvBatch::new(8, 2048);
            let mut got = 0;
            while let Ok(n) = b.recv_batch(&mut recv) {
                if n == 0 {
                    break;
                }
                got += recv.iter().filter(|(_, p, _)| *p == &small[..]).count();
            }
            assert_eq!(
                got, 3,
                "gso {gso}: every datagram but the refused one arrived"
            );
        }
    }

    #[test]
    fn a_refused_gso_run_is_sent_one_by_one_exactly_once() {
        let a = loopback();
        // SO_NO_CHECK (no UDP checksums): the kernel then refuses UDP GSO with EINVAL.
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let b = loopback();
        let c = loopback();
        let p = vec![1u8; 100];
        let mut send = SendBatch::with_capacity(16, true);
        // c, then a run of 3 to b (refused as GSO), c, a run of 2 to b.
        // SAFETY: `p` outlives the send below.
        unsafe {
            send.push(addr(&c), &p);
            for _ in 0..3 {
                send.push(addr(&b), &p);
            }
            send.push(addr(&c), &p);
            for _ in 0..2 {
                send.push(addr(&b), &p);
            }
        }
        assert_eq!(a.send_batch(&mut send), 7);
        assert_eq!(
            (drain(&b).len(), drain(&c).len()),
            (5, 2),
            "each datagram once"
        );
        assert!(send.gso, "EINVAL turns GSO off for that batch only");
    }
}
