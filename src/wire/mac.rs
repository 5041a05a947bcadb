//! Ethernet (MAC) addresses: parsing, printing and Docker's IPv4-derived task MACs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Hashed as one integer: the derived hash feeds six bytes and a length through a byte-string
/// hasher, which the data path paid on every frame's MAC lookup. Equal addresses give equal
/// integers, so this agrees with `Eq`.
impl std::hash::Hash for MacAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f] = self.0;
        state.write_u64(u64::from_be_bytes([0, 0, a, b, c, d, e, f]));
    }
}

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Docker's task MAC: `02:42` followed by the four bytes of the IPv4 address
    /// (10.0.0.3 -> 02:42:0a:00:00:03).
    pub fn from_ipv4(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// Group (multicast or broadcast) addresses have the low bit of the first octet set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:42:0a:00:09:02")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| MacParseError(s.to_string()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_task_mac() {
        let mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(mac.to_string(), "02:42:0a:00:00:03");
    }

    #[test]
    fn parse_round_trip_and_refusals() {
        let mac: MacAddr = "02:42:0A:00:09:02".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]);
        assert_eq!(mac.to_string(), "02:42:0a:00:09:02");
        for bad in [
            "",
            "02:42:0a:00:09",
            "02:42:0a:00:09:02:03",
            "0g:42:0a:00:09:02",
            "2:42:a:0:9:2",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} accepted");
        }
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!mac.is_multicast());
    }
}
