//! Link layers of underlay captures: find the IPv4 datagram inside a captured frame.

use pcap_file::DataLink;

/// What a captured underlay frame holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Underlay<'a> {
    Ipv4(&'a [u8]),
    /// Another network protocol (ARP, IPv6, ...).
    NotIpv4,
    /// Too short for its own link header.
    Truncated,
}

/// True for the link types `underlay` accepts.
pub fn underlay_supported(link: DataLink) -> bool {
    matches!(
        link,
        DataLink::RAW
            | DataLink::IPV4
            | DataLink::ETHERNET
            | DataLink::LINUX_SLL
            | DataLink::LINUX_SLL2
    )
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: [u16; 2] = [0x8100, 0x88a8];

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Underlay<'_> {
    if ethertype == ETHERTYPE_IPV4 {
        Underlay::Ipv4(rest)
    } else {
        Underlay::NotIpv4
    }
}

/// Strips the link header of `link` from `frame`.
pub fn underlay_payload(link: DataLink, frame: &[u8]) -> Underlay<'_> {
    match link {
        DataLink::RAW => match frame.first() {
            Some(b) if b >> 4 == 4 => Underlay::Ipv4(frame),
            Some(_) => Underlay::NotIpv4,
            None => Underlay::Truncated,
        },
        DataLink::IPV4 => Underlay::Ipv4(frame),
        DataLink::ETHERNET => {
            // Skip any 802.1Q / 802.1ad tags.
            let mut at = 12;
            loop {
                let Some(ethertype) = be16(frame, at) else {
                    return Underlay::Truncated;
                };
                if ETHERTYPE_VLAN.contains(&ethertype) {
                    at += 4;
                    continue;
                }
                return by_ethertype(ethertype, &frame[at + 2..]);
            }
        }
        // Linux cooked v1: 16-byte header, protocol in its last two bytes.
        DataLink::LINUX_SLL => match be16(frame, 14) {
            Some(p) => by_ethertype(p, &frame[16..]),
            None => Underlay::Truncated,
        },
        // Linux cooked v2: 20-byte header, protocol in its first two bytes.
        DataLink::LINUX_SLL2 if frame.len() >= 20 => match be16(frame, 0) {
            Some(p) => by_ethertype(p, &frame[20..]),
            None => Underlay::Truncated,
        },
        _ => Underlay::Truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_each_link_header() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(
            underlay_payload(DataLink::ETHERNET, &eth),
            Underlay::Ipv4(&ip)
        );
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        tagged.extend_from_slice(&ip);
        assert_eq!(
            underlay_payload(DataLink::ETHERNET, &tagged),
            Underlay::Ipv4(&ip)
        );
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(
            underlay_payload(DataLink::ETHERNET, &arp),
            Underlay::NotIpv4
        );
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(
            underlay_payload(DataLink::LINUX_SLL, &sll),
            Underlay::Ipv4(&ip)
        );
        let mut sll2 = vec![0x08u8, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(
            underlay_payload(DataLink::LINUX_SLL2, &sll2),
            Underlay::Ipv4(&ip)
        );
        assert_eq!(underlay_payload(DataLink::RAW, &ip), Underlay::Ipv4(&ip));
        assert_eq!(underlay_payload(DataLink::RAW, &[0x60]), Underlay::NotIpv4);
        for n in 0..eth.len().min(14) {
            assert_eq!(
                underlay_payload(DataLink::ETHERNET, &eth[..n]),
                Underlay::Truncated
            );
            assert_eq!(
                underlay_payload(DataLink::LINUX_SLL2, &sll2[..n]),
                Underlay::Truncated
            );
        }
        assert_eq!(underlay_payload(DataLink::RAW, &[]), Underlay::Truncated);
    }
}
