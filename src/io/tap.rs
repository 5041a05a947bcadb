//! TAP devices: multi-queue, non-blocking, created inside a task's network namespace.
//!
//! Each worker owns one queue of every TAP, so frames of one flow stay on one worker (the kernel
//! picks the queue by flow hash) and no two workers share a file descriptor.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::wire::vnet;

/// Linux `IFNAMSIZ`.
pub const IFNAMSIZ: usize = 16;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
/// Room for the largest frame a TAP with TSO hands over: 64 KiB of IP plus link and vnet headers.
pub const MAX_FRAME: usize = 65536 + 64;

#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One queue of a TAP device.
#[derive(Debug)]
pub struct TapQueue {
    fd: OwnedFd,
    /// Frames carry a virtio-net header (offloads on).
    vnet: bool,
}

/// Opens `queues` queues of the TAP device `name` in the calling thread's network namespace
/// (creating the device if needed). The device lives as long as one queue is open.
///
/// With `offload`, frames carry a virtio-net header and the task's kernel may hand over TCP
/// super-frames (TSO) and frames with an unfinished checksum; the data path segments and
/// finishes them (`Dataplane::from_port_vnet`).
pub fn open_multiqueue(name: &str, queues: usize, offload: bool) -> io::Result<Vec<TapQueue>> {
    check_name(name)?;
    let mut out = Vec::with_capacity(queues);
    for _ in 0..queues.max(1) {
        out.push(open_queue(name, offload)?);
    }
    if offload {
        if let Some(q) = out.first() {
            // SAFETY: TUNSETOFFLOAD takes the offload flags by value.
            let rc = unsafe {
                libc::ioctl(
                    q.fd.as_raw_fd(),
                    TUNSETOFFLOAD as _,
                    TUN_F_CSUM | TUN_F_TSO4,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(out)
}

/// Opens (creating) the TUN device `name` in the calling thread's network namespace, one
/// queue, no offloads: `recv` and `send` carry bare IP packets, no link header. The egress
/// engine's tests and benchmark give a namespace one as its default route.
pub fn open_tun(name: &str) -> io::Result<TapQueue> {
    check_name(name)?;
    open_device(name, IFF_TUN | IFF_NO_PI, false)
}

/// `open_tun` with offloads, as a TAP's: packets behind a virtio-net header, the namespace may
/// hand over TCP super-packets (TSO) with partial checksums, and `send_with` may write them
/// with a GSO size, which the namespace takes whole.
pub fn open_tun_offload(name: &str) -> io::Result<TapQueue> {
    check_name(name)?;
    let q = open_device(name, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, true)?;
    // SAFETY: TUNSETOFFLOAD takes the offload flags by value.
    let rc = unsafe {
        libc::ioctl(
            q.fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            TUN_F_CSUM | TUN_F_TSO4,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(q)
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} must be 1-15 bytes"),
        ));
    }
    Ok(())
}

fn open_queue(name: &str, vnet: bool) -> io::Result<TapQueue> {
    let flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | if vnet { IFF_VNET_HDR } else { 0 };
    open_device(name, flags, vnet)
}

fn open_device(name: &str, flags: libc::c_short, vnet: bool) -> io::Result<TapQueue> {
    const PATH: &CStr = c"/dev/net/tun";
    // SAFETY: PATH is a valid NUL-terminated string; open has no other preconditions.
    let raw = unsafe {
        libc::open(
            PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor we own; OwnedFd closes it on every path below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReq lays out (40 bytes).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TapQueue { fd, vnet })
}

impl TapQueue {
    /// Reads one frame; `WouldBlock` when the queue is empty.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// True when frames read start with a virtio-net header.
    pub fn has_vnet_header(&self) -> bool {
        self.vnet
    }

    /// Writes one frame (delivered to the namespace as received on the interface), behind an
    /// all-zero virtio-net header when offloads are on (no GSO, checksum to be verified).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.send_with(&vnet::Repr::default(), frame)
    }

    /// Writes one frame behind the virtio-net header `hdr` (ignored when offloads are off,
    /// where only plain frames may be written).
    pub fn send_with(&self, hdr: &vnet::Repr, frame: &[u8]) -> io::Result<usize> {
        let mut h = [0u8; vnet::HEADER_LEN];
        hdr.emit(&mut h);
        let iov = [
            libc::iovec {
                iov_base: h.as_mut_ptr().cast(),
                iov_len: h.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        let skip = usize::from(!self.vnet);
        // SAFETY: both iovecs point at memory valid for reads for the duration of the call.
        let n = unsafe {
            libc::writev(
                self.fd.as_raw_fd(),
                iov[skip..].as_ptr(),
                (2 - skip) as libc::c_int,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for TapQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
