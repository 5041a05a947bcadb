//! Published AES-GCM test vectors, through ring (the GCM specification's test cases) and
//! through our ESP framing (the ESP examples of draft-mcgrew-gcm-test-01, which RFC 4106 lacks:
//! SPI, sequence number, salt, explicit IV, padding and trailer).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

use super::sa::Sa;
use crate::wire::esp::PREFIX_LEN;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key16(s: &str) -> [u8; 16] {
    hex(s).try_into().unwrap()
}

/// McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 1-4 (AES-128,
/// 96-bit IV); and the AES-128 cases of draft-mcgrew-gcm-test-01 with a 32-bit sequence number
/// (8-byte AAD), which our SAs never use but ring must get right.
#[test]
fn gcm_spec_and_nist_style_vectors_through_ring() {
    let cases: [(&str, &str, &str, &str, &str, &str); 6] = [
        ("00000000000000000000000000000000", "000000000000000000000000", "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"),
        ("00000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "0000a5f80000000a",
            "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d001000001000000000000037369700963796265726369747902646b00000100010001",
            "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1",
            "83b70d3aa8bc6ee4c309e9d85a41ad4a",
        ),
        (
            "00000000000000000000000000000000",
            "000000000000000000000000",
            "0000000000000001",
            "4500003c99c500008001cb7a40679318010101010800075c020044006162636465666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
            "4688daf2f973a392732909c331d56d60f694abaa414b5e7ff5fdcdfff5e9a284456476492719ffb64de7d9dca1e1d894bc3bd57873ed4d181d19d4d5c8c18af3",
            "f821d496eeb096e98ad2b69e4799c71d",
        ),
    ];
    for (i, (k, n, a, p, c, t)) in cases.iter().enumerate() {
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &hex(k)).unwrap());
        let nonce = || Nonce::try_assume_unique_for_key(&hex(n)).unwrap();
        let mut buf = hex(p);
        let tag = key
            .seal_in_place_separate_tag(nonce(), Aad::from(hex(a)), &mut buf)
            .unwrap();
        assert_eq!(buf, hex(c), "case {i}: ciphertext");
        assert_eq!(tag.as_ref(), &hex(t)[..], "case {i}: tag");
        buf.extend_from_slice(tag.as_ref());
        let plain = key
            .open_in_place(nonce(), Aad::from(hex(a)), &mut buf)
            .unwrap();
        assert_eq!(plain, &hex(p)[..], "case {i}: plaintext");
    }
}

/// draft-mcgrew-gcm-test-01's AES-128 ESP examples with extended sequence numbers (12-byte
/// AAD: SPI, high 32 bits, low 32 bits), assembled into ESP packets (SPI, low 32 bits, IV,
/// ciphertext, ICV) and opened by our SA with the full 64-bit sequence number, as RFC 4106 5
/// and RFC 4303 2.2.1 describe.
#[test]
fn esp_examples_with_esn_open_through_our_framing() {
    // (key, nonce = salt | IV, AAD = SPI | ESN, plaintext with trailer, ciphertext, ICV, next header)
    let cases: [(&str, &str, &str, &str, &str, &str, u8); 3] = [
        (
            "4c80cdefbb5d10da906ac73c3613a634",
            "2e443b684956ed7e3b244cfe",
            "000043218765432100000000",
            "45000048699a000080114db7c0a80102c0a801010a9bf15638d301000001000000000000045f736970045f756470037369700963796265726369747902646b000021000101020201",
            "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce61bc17d768fd9732",
            "459018148f6cbe722fd04796562dfdb4",
            1,
        ),
        (
            "3de09874b388e6491988d0c3607eae1f",
            "57690e434e280000a2fca1a3",
            "42f67e3f1010101010101010",
            "4500003c99c300008001cb7c40679318010101010800085c020043006162636465666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
            "fba2caa4853cf9f0f22cb10d86dd83b0fec75691cf1a04b00d1138ec9c35791765acbd8701ad79845bf9fe3fba487bc91755e6662b4c8d0d1f5e22739530320a",
            "e0d731cc978ecafaeae88f00e80d6e48",
            1,
        ),
        (
            "abbccddef00112233445566778899aab",
            "decaf888cafedebaceface74",
            "000001000000000000000001",
            "4500004933ba00007f119106c3fb1d10c2b1d326c02831ce0035dd7b800302d500004e20001e8c18d75b81dc91baa0476b91b924b280389d92c963bac046ec959b6266c04722b14923010101",
            "18a6fd42f72cbf4ab2a2ea901f73d814e3e7f243d95412e1c349c1d2fbec168f9190feebaf2cb01984e65863965d7472b79da345e0e780191f0d2f0e0f496c226f2127b27db35724e7845d68",
            "651f57e65f354f75ff17015769623436",
            1,
        ),
    ];
    for (i, (k, n, a, p, c, t, nh)) in cases.iter().enumerate() {
        let (nonce, aad, plain) = (hex(n), hex(a), hex(p));
        let spi = u32::from_be_bytes(aad[..4].try_into().unwrap());
        let seq = u64::from_be_bytes(aad[4..12].try_into().unwrap());
        let sa = Sa::from_parts(spi, nonce[..4].try_into().unwrap(), &key16(k));
        let mut packet = Vec::new();
        packet.extend_from_slice(&aad[..4]);
        packet.extend_from_slice(&aad[8..12]);
        packet.extend_from_slice(&nonce[4..]);
        packet.extend_from_slice(&hex(c));
        packet.extend_from_slice(&hex(t));
        let mut tampered = packet.clone();
        let (range, next_header) = sa.open(&mut packet, seq).unwrap();
        assert_eq!(next_header, *nh, "case {i}");
        let pad = usize::from(plain[plain.len() - 2]);
        assert_eq!(
            &packet[range],
            &plain[..plain.len() - 2 - pad],
            "case {i}: payload without padding and trailer"
        );
        // One flipped ICV bit: refused, and the plaintext is wiped.
        *tampered.last_mut().unwrap() ^= 1;
        let fresh = Sa::from_parts(spi, nonce[..4].try_into().unwrap(), &key16(k));
        assert!(fresh.open(&mut tampered, seq).is_err(), "case {i}: ICV");
        assert!(tampered[PREFIX_LEN..].iter().all(|b| *b == 0));
    }
}
