//! The Internet checksum (RFC 1071): one's complement of the one's complement sum of 16-bit words.

/// One's complement sum of `data` as big-endian 16-bit words, folded to 16 bits.
/// An odd trailing byte is padded with zero, as RFC 1071 says.
pub fn sum(data: &[u8]) -> u16 {
    // One's complement addition is associative over any word size and independent of byte
    // order (RFC 1071, 2.(B)): add native-endian 32-bit words into a 64-bit accumulator (no
    // overflow below 2^32 words; the compiler vectorises it), fold once, and swap the bytes of
    // the result on a little-endian machine.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        let mut part: u64 = 0;
        for w in c.chunks_exact(4) {
            part += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        acc += part;
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    u16::from_be(fold(acc))
}

/// Folds a wide one's complement accumulator to 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (whose checksum field is zero).
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The one's complement sum of the IPv4 pseudo-header (RFC 768, RFC 793) of a `len`-byte
/// transport segment of `protocol` from `src` to `dst`.
pub fn pseudo_header_ipv4(src: &[u8], dst: &[u8], protocol: u8, len: u16) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src[..4]);
    pseudo[4..8].copy_from_slice(&dst[..4]);
    pseudo[9] = protocol;
    pseudo[10..12].copy_from_slice(&len.to_be_bytes());
    sum(&pseudo)
}

/// The checksum of a transport `segment` (its checksum field zero) under an IPv4 pseudo-header.
pub fn transport_ipv4(src: &[u8], dst: &[u8], protocol: u8, segment: &[u8]) -> u16 {
    let pseudo = pseudo_header_ipv4(src, dst, protocol, segment.len() as u16);
    !fold(u64::from(pseudo) + u64::from(sum(segment)))
}

/// True when a transport `segment` (checksum field included) verifies under its pseudo-header.
pub fn verify_transport_ipv4(src: &[u8], dst: &[u8], protocol: u8, segment: &[u8]) -> bool {
    let pseudo = pseudo_header_ipv4(src, dst, protocol, segment.len() as u16);
    fold(u64::from(pseudo) + u64::from(sum(segment))) == 0xffff
}

/// True when `data`, checksum field included, sums to all ones.
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // The IPv4 header of an ICMP echo 10.0.9.3 -> 10.0.9.2 (DF, TTL 64), checksum 0xd839 (computed independently).
        let hdr = [
            0x45, 0x00, 0x00, 0x54, 0x3c, 0x6b, 0x40, 0x00, 0x40, 0x01, 0xd8, 0x39, 0x0a, 0x00,
            0x09, 0x03, 0x0a, 0x00, 0x09, 0x02,
        ];
        assert!(verify(&hdr));
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xd839);
        let mut odd = [0u8; 3];
        odd[2] = 0xff;
        assert_eq!(sum(&odd), 0xff00);
    }

    #[test]
    fn wide_sum_equals_the_word_by_word_definition() {
        // RFC 1071's definition, 16 bits at a time, against the 32-bit-word implementation.
        let reference = |d: &[u8]| {
            let mut acc: u64 = 0;
            for c in d.chunks(2) {
                acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            fold(acc)
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for n in 0..200 {
            assert_eq!(sum(&data[..n]), reference(&data[..n]), "length {n}");
        }
        for n in [1399, 1400, 1401, 2999, 3000] {
            assert_eq!(sum(&data[..n]), reference(&data[..n]), "length {n}");
        }
        for start in 1..8 {
            for n in [0, 1, 31, 33, 63, 1401] {
                let d = &data[start..start + n];
                assert_eq!(sum(d), reference(d), "start {start}, length {n}");
            }
        }
        let ones = vec![0xffu8; 65_535];
        assert_eq!(sum(&ones), reference(&ones));
    }
}
