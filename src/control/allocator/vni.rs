//! VXLAN network identifiers: from 4096 upward as swarmkit allocates them (the ingress network,
//! created first, gets 4096), or the one a user chose with
//! `com.docker.network.driver.overlay.vxlanid_list`.

use std::collections::BTreeMap;

/// First VNI handed out automatically (swarmkit's `vxlanIDStart`).
pub const FIRST_VNI: u32 = 4096;
/// Largest VNI: 24 bits (RFC 7348).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// VNI errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VniError {
    #[error(
        "invalid VXLAN ID {0:?} in com.docker.network.driver.overlay.vxlanid_list: expected one number from 1 to {MAX_VNI}"
    )]
    Invalid(String),
    #[error("VXLAN ID {vni} is already in use by network {network}")]
    Taken { vni: u32, network: String },
    #[error("no VXLAN ID left: all of {FIRST_VNI}-{MAX_VNI} are in use")]
    Exhausted,
}

/// Parses the `vxlanid_list` option: one VNI (swarmnet gives a network one subnet, so one VNI).
pub fn parse_vni(s: &str) -> Result<u32, VniError> {
    match s.trim().parse::<u32>() {
        Ok(v) if (1..=MAX_VNI).contains(&v) => Ok(v),
        _ => Err(VniError::Invalid(s.to_string())),
    }
}

/// The VNI for a new network: `chosen` if free, else the lowest free one from 4096. `used` maps
/// each VNI in use to its network's name.
pub fn allocate_vni(used: &BTreeMap<u32, String>, chosen: Option<u32>) -> Result<u32, VniError> {
    if let Some(vni) = chosen {
        return match used.get(&vni) {
            Some(network) => Err(VniError::Taken {
                vni,
                network: network.clone(),
            }),
            None => Ok(vni),
        };
    }
    lowest_free(used, FIRST_VNI, MAX_VNI).ok_or(VniError::Exhausted)
}

/// The lowest VNI in `first..=last` not in `used`: a walk over the used ones in order.
fn lowest_free(used: &BTreeMap<u32, String>, first: u32, last: u32) -> Option<u32> {
    let mut next = first;
    for &v in used.range(first..=last).map(|(v, _)| v) {
        if v != next {
            break;
        }
        next += 1;
    }
    (next <= last).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(v: &[u32]) -> BTreeMap<u32, String> {
        v.iter().map(|&n| (n, format!("net-{n}"))).collect()
    }

    #[test]
    fn ingress_first_then_4097_and_gaps_reused() {
        assert_eq!(allocate_vni(&used(&[]), None).unwrap(), 4096);
        assert_eq!(allocate_vni(&used(&[4096]), None).unwrap(), 4097);
        assert_eq!(allocate_vni(&used(&[4096, 4098]), None).unwrap(), 4097);
        // A chosen VNI below 4096 does not shift the automatic ones.
        assert_eq!(allocate_vni(&used(&[42, 4096]), None).unwrap(), 4097);
    }

    #[test]
    fn chosen_vni_taken_names_the_network() {
        assert_eq!(
            allocate_vni(&used(&[4097]), Some(4097))
                .unwrap_err()
                .to_string(),
            "VXLAN ID 4097 is already in use by network net-4097"
        );
        assert_eq!(allocate_vni(&used(&[4097]), Some(5000)).unwrap(), 5000);
    }

    #[test]
    fn vni_option_is_checked() {
        assert_eq!(parse_vni("4200").unwrap(), 4200);
        for bad in ["0", "16777216", "-1", "4097,4098", "x", ""] {
            assert!(parse_vni(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exhaustion() {
        // The same walk as over 4096..=2^24-1, on a range small enough to fill.
        let u = used(&[10, 11, 12]);
        assert_eq!(lowest_free(&u, 10, 12), None);
        assert_eq!(lowest_free(&u, 10, 13), Some(13));
        assert_eq!(
            VniError::Exhausted.to_string(),
            "no VXLAN ID left: all of 4096-16777215 are in use"
        );
    }
}
