//! The swarm's three network encryption keys and their rotation (pure: keys and time come in).
//!
//! As in Docker: three keys at once; on each rotation the oldest is dropped and a new one, with
//! the next tag, is appended. Nodes send with the middle (primary) key, receive with all three,
//! so the newest is installed one rotation before it is used and the oldest lingers one after.

use super::store::NetworkKey;

/// Default rotation interval: 12 hours.
pub const DEFAULT_ROTATION_SECS: u64 = 12 * 60 * 60;
/// Keys held at once.
pub const KEY_COUNT: usize = 3;

/// The first key set: tags 1..=3 made from `material` (three fresh random 16-byte keys).
pub fn initial_keys(material: [[u8; 16]; KEY_COUNT], now: i64) -> Vec<NetworkKey> {
    material
        .iter()
        .enumerate()
        .map(|(i, key)| NetworkKey {
            tag: i as u32 + 1,
            key: key.to_vec(),
            created_at: now,
        })
        .collect()
}

/// True when the newest key is at least `interval_secs` old (or there are no keys).
pub fn rotation_due(keys: &[NetworkKey], now: i64, interval_secs: u64) -> bool {
    match keys.iter().map(|k| k.created_at).max() {
        Some(newest) => now.saturating_sub(newest) >= interval_secs as i64,
        None => true,
    }
}

/// The key set after one rotation: the oldest dropped, `new_key` appended with the next tag.
pub fn rotate(keys: &[NetworkKey], new_key: [u8; 16], now: i64) -> Vec<NetworkKey> {
    let mut out: Vec<NetworkKey> = keys.to_vec();
    out.sort_by_key(|k| k.tag);
    let next_tag = out.last().map_or(1, |k| k.tag.wrapping_add(1));
    out.push(NetworkKey {
        tag: next_tag,
        key: new_key.to_vec(),
        created_at: now,
    });
    while out.len() > KEY_COUNT {
        out.remove(0);
    }
    out
}

/// The key used for sending: the middle of three (Docker's primary key).
pub fn primary(keys: &[NetworkKey]) -> Option<&NetworkKey> {
    keys.get(keys.len().saturating_sub(1).min(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_set_has_three_tagged_keys() {
        let keys = initial_keys([[1; 16], [2; 16], [3; 16]], 100);
        assert_eq!(keys.iter().map(|k| k.tag).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(primary(&keys).unwrap().tag, 2);
        assert!(keys.iter().all(|k| k.key.len() == 16));
    }

    #[test]
    fn rotation_drops_oldest_and_appends_next_tag() {
        let keys = initial_keys([[1; 16], [2; 16], [3; 16]], 100);
        let rotated = rotate(&keys, [4; 16], 200);
        assert_eq!(rotated.iter().map(|k| k.tag).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(rotated[2].key, vec![4; 16]);
        assert_eq!(rotated[2].created_at, 200);
        assert_eq!(primary(&rotated).unwrap().tag, 3);
    }

    #[test]
    fn rotation_is_due_after_the_interval() {
        let keys = initial_keys([[1; 16], [2; 16], [3; 16]], 100);
        assert!(!rotation_due(&keys, 100 + 43_199, DEFAULT_ROTATION_SECS));
        assert!(rotation_due(&keys, 100 + 43_200, DEFAULT_ROTATION_SECS));
        assert!(rotation_due(&[], 0, DEFAULT_ROTATION_SECS));
    }
}
