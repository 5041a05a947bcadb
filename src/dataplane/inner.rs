//! Checks on an inner Ethernet frame before the switch delivers or forwards it: a few
//! comparisons at fixed offsets, so that no task ever receives a frame cut short.

use super::counters::DropReason;
use crate::wire::{arp, ipv4, ETHERNET_HEADER_LEN};

/// ARP's fixed part: hardware and protocol type, their lengths, operation (RFC 826).
const ARP_FIXED_LEN: usize = 8;
/// IPv4's least header length.
const IPV4_MIN_HEADER_LEN: usize = 20;

/// What a checked inner frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inner {
    /// IPv4 whose header and `total` bytes lie within the frame (Ethernet padding may follow).
    Ipv4 { total: usize },
    /// ARP with its whole body (both address pairs).
    Arp,
    /// Any other EtherType: only the Ethernet header is known whole.
    Other,
}

/// Checks that `frame` is a whole Ethernet header and, for ARP and IPv4, that the body is as
/// long as its own length fields say: `malformed_inner` otherwise.
#[inline]
pub(crate) fn check(frame: &[u8]) -> Result<Inner, DropReason> {
    // One length test per case, then fixed offsets: the compiler drops the bounds checks.
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(DropReason::MalformedInner);
    }
    let payload_len = frame.len() - ETHERNET_HEADER_LEN;
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ipv4::ETHERTYPE => {
            if payload_len < IPV4_MIN_HEADER_LEN {
                return Err(DropReason::MalformedInner);
            }
            let vihl = frame[ETHERNET_HEADER_LEN];
            let ihl = usize::from(vihl & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([
                frame[ETHERNET_HEADER_LEN + 2],
                frame[ETHERNET_HEADER_LEN + 3],
            ]));
            if vihl >> 4 != 4 || ihl < IPV4_MIN_HEADER_LEN || total < ihl || total > payload_len {
                return Err(DropReason::MalformedInner);
            }
            Ok(Inner::Ipv4 { total })
        }
        arp::ETHERTYPE => {
            if payload_len < ARP_FIXED_LEN {
                return Err(DropReason::MalformedInner);
            }
            let hlen = usize::from(frame[ETHERNET_HEADER_LEN + 4]);
            let plen = usize::from(frame[ETHERNET_HEADER_LEN + 5]);
            if ARP_FIXED_LEN + 2 * (hlen + plen) > payload_len {
                return Err(DropReason::MalformedInner);
            }
            Ok(Inner::Arp)
        }
        _ => Ok(Inner::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4_header(ihl_words: u8, total: u16) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl_words) * 4];
        h.resize(h.len().max(4), 0);
        h[0] = 0x40 | ihl_words;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h
    }

    #[test]
    fn ethernet_header_must_be_whole() {
        for n in 0..ETHERNET_HEADER_LEN {
            assert_eq!(check(&vec![0u8; n]), Err(DropReason::MalformedInner), "{n}");
        }
        assert_eq!(check(&eth(0x86dd, &[])), Ok(Inner::Other));
    }

    #[test]
    fn ipv4_header_and_total_length_within_the_frame() {
        let mut ok = ipv4_header(5, 28);
        ok.resize(28, 0);
        assert_eq!(check(&eth(0x0800, &ok)), Ok(Inner::Ipv4 { total: 28 }));
        // Ethernet padding after the packet is fine.
        let mut padded = ok.clone();
        padded.resize(46, 0);
        assert_eq!(check(&eth(0x0800, &padded)), Ok(Inner::Ipv4 { total: 28 }));
        let bad = |p: Vec<u8>| assert_eq!(check(&eth(0x0800, &p)), Err(DropReason::MalformedInner));
        bad(vec![]);
        bad(vec![0x45, 0, 0]);
        bad(ok[..27].to_vec()); // total length beyond the frame
        let mut v6 = ok.clone();
        v6[0] = 0x65;
        bad(v6); // not version 4
        let mut short_ihl = ipv4_header(4, 28);
        short_ihl.resize(28, 0);
        bad(short_ihl); // IHL under 5
        let mut total_below_ihl = ipv4_header(6, 20);
        total_below_ihl.resize(40, 0);
        bad(total_below_ihl); // total length shorter than the header
    }

    #[test]
    fn arp_body_must_be_whole() {
        let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
        body.resize(28, 0);
        assert_eq!(check(&eth(0x0806, &body)), Ok(Inner::Arp));
        for n in 0..28 {
            assert_eq!(
                check(&eth(0x0806, &body[..n])),
                Err(DropReason::MalformedInner),
                "{n}-byte ARP body"
            );
        }
        // Lengths that make the body longer than the frame.
        let mut big = body.clone();
        big[4] = 255;
        assert_eq!(check(&eth(0x0806, &big)), Err(DropReason::MalformedInner));
    }
}
