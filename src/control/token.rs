//! Join tokens and swarm identifiers.
//!
//! A join token is `SWMTKN-1-<digest>-<secret>`, as in Docker swarm:
//! - `<digest>`: SHA-256 of the root CA certificate (DER), in base 36, zero-padded to 50 characters;
//! - `<secret>`: 16 random bytes in base 36, zero-padded to 25 characters.
//!
//! A joining node checks the digest against the CA the manager presents before trusting anything
//! it says; the manager compares the whole token in constant time. Node IDs use the secret's
//! format (16 random bytes, base 36, 25 characters), like swarmkit's identity package.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters of a base 36 number, lowest digit first.
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Prefix of every join token.
pub const TOKEN_PREFIX: &str = "SWMTKN";
/// The only token format version there is.
pub const TOKEN_VERSION: &str = "1";
/// Length of the CA digest part (SHA-256 in base 36).
pub const DIGEST_LEN: usize = 50;
/// Length of the secret part (128 bits in base 36).
pub const SECRET_LEN: usize = 25;

/// Why a string is not a usable join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `SWMTKN-1-<digest>-<secret>` at all (Docker's wording).
    #[error("invalid join token")]
    Format,
    /// Right shape, but a version other than 1.
    #[error("invalid join token: unsupported join token version {0:?} (this node understands version 1)")]
    Version(String),
    /// The CA digest part is not 50 base-36 characters encoding 32 bytes.
    #[error("invalid join token: the CA digest part must be {DIGEST_LEN} base-36 characters (0-9, a-z), got {0:?}")]
    Digest(String),
    /// The secret part is not 25 base-36 characters encoding 16 bytes.
    #[error("invalid join token: the secret part must be {SECRET_LEN} base-36 characters (0-9, a-z), got {len} characters")]
    Secret { len: usize },
    /// A part has the right length and characters but a value too large for its bytes.
    #[error("invalid join token: the {part} part is {len} base-36 characters but its value does not fit in {bytes} bytes (the largest is {largest})")]
    Range {
        part: &'static str,
        len: usize,
        bytes: usize,
        largest: String,
    },
    /// Upper-case letters: tokens are printed in lower case, and refused otherwise rather
    /// than silently normalised, since a changed token was not copied as given.
    #[error("invalid join token: join tokens are lower case (SWMTKN-1- then 0-9, a-z), this one has upper-case letters; use the token exactly as `swarm join-token` printed it")]
    UpperCase,
}

/// Parses one base-36 part of `len` characters into `N` bytes, telling a bad character or
/// length (`shape`) from a value too large for `N` bytes.
fn parse_part<const N: usize>(
    text: &str,
    len: usize,
    part: &'static str,
    shape: TokenError,
) -> Result<[u8; N], TokenError> {
    if text.len() != len || !text.bytes().all(|c| ALPHABET.contains(&c)) {
        return Err(shape);
    }
    base36_decode(text, N)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| TokenError::Range {
            part,
            len,
            bytes: N,
            largest: base36_encode(&[0xff; N], len),
        })
}

/// Encodes a big-endian unsigned number in base 36, zero-padded on the left to `width` characters.
pub fn base36_encode(bytes: &[u8], width: usize) -> String {
    let mut num: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    // Repeated division of the big-endian number by 36; each remainder is the next digit.
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 36) as u8;
            rem = acc % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// Decodes base 36 (lower or upper case) into exactly `len` big-endian bytes.
/// `None` on a character outside 0-9a-z or a value that does not fit.
pub fn base36_decode(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    let mut out = vec![0u8; len];
    for c in text.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        // out = out * 36 + digit, checking for overflow past `len` bytes.
        let mut carry = u32::from(digit);
        for byte in out.iter_mut().rev() {
            let acc = u32::from(*byte) * 36 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// SHA-256 of a certificate's DER bytes.
pub fn ca_digest(ca_der: &[u8]) -> [u8; 32] {
    Sha256::digest(ca_der).into()
}

/// The digest part of a token for this CA certificate (50 base-36 characters).
pub fn ca_digest_text(ca_der: &[u8]) -> String {
    base36_encode(&ca_digest(ca_der), DIGEST_LEN)
}

/// A new random node (or swarm) ID: 16 random bytes, base 36, 25 characters.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base36_encode(&bytes, SECRET_LEN)
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the root CA certificate the token belongs to.
    pub ca_digest: [u8; 32],
    /// The random secret that distinguishes worker and manager tokens and rotations.
    pub secret: [u8; 16],
}

impl JoinToken {
    /// A new token for the CA whose DER is `ca_der`, with a fresh random secret.
    pub fn generate(ca_der: &[u8]) -> Self {
        let mut secret = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        JoinToken {
            ca_digest: ca_digest(ca_der),
            secret,
        }
    }

    /// Parses and validates `SWMTKN-1-<digest>-<secret>`.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        if parts.len() != 4 || parts[0] != TOKEN_PREFIX {
            return Err(TokenError::Format);
        }
        if parts[1] != TOKEN_VERSION {
            return Err(TokenError::Version(parts[1].to_string()));
        }
        if parts[2..]
            .iter()
            .any(|p| p.bytes().any(|c| c.is_ascii_uppercase()))
        {
            return Err(TokenError::UpperCase);
        }
        let digest = parts[2];
        let ca_digest: [u8; 32] = parse_part(
            digest,
            DIGEST_LEN,
            "CA digest",
            TokenError::Digest(digest.to_string()),
        )?;
        let secret_text = parts[3];
        let secret: [u8; 16] = parse_part(
            secret_text,
            SECRET_LEN,
            "secret",
            TokenError::Secret {
                len: secret_text.len(),
            },
        )?;
        Ok(JoinToken { ca_digest, secret })
    }

    /// True when this token was made for the CA whose DER is `ca_der`.
    pub fn matches_ca(&self, ca_der: &[u8]) -> bool {
        bool::from(self.ca_digest.ct_eq(&ca_digest(ca_der)))
    }

    /// Compares two tokens in constant time (the secret is what an attacker would guess).
    pub fn ct_eq(&self, other: &JoinToken) -> bool {
        let digest_eq = self.ca_digest.ct_eq(&other.ca_digest);
        let secret_eq = self.secret.ct_eq(&other.secret);
        bool::from(digest_eq & secret_eq)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}-{TOKEN_VERSION}-{}-{}",
            base36_encode(&self.ca_digest, DIGEST_LEN),
            base36_encode(&self.secret, SECRET_LEN)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker token shown in Docker 20.10's reference output.
    const DOCKER_TOKEN: &str =
        "SWMTKN-1-49i63cmd6ka1l64l8zo0g89zy43q9fuzgxetxtnjrfrm6bnnkm-7uy6fpzwky6g4zgjq6zbm43xx";

    #[test]
    fn base36_known_values() {
        assert_eq!(base36_encode(&[], 3), "000");
        assert_eq!(base36_encode(&[35], 1), "z");
        assert_eq!(base36_encode(&[36], 1), "10");
        assert_eq!(base36_encode(&[0x01, 0x00], 0), "74"); // 256 = 7*36 + 4
        assert_eq!(base36_encode(&[0xff; 16], 0).len(), SECRET_LEN);
        assert_eq!(base36_encode(&[0xff; 32], 0).len(), DIGEST_LEN);
    }

    #[test]
    fn base36_round_trips_and_rejects_overflow() {
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        let text = base36_encode(&bytes, DIGEST_LEN);
        assert_eq!(text.len(), DIGEST_LEN);
        assert_eq!(base36_decode(&text, 32).unwrap(), bytes);
        // 'zzz...' (50 chars) is larger than 2^256 - 1.
        assert_eq!(base36_decode(&"z".repeat(DIGEST_LEN), 32), None);
        assert_eq!(base36_decode("ab-c", 4), None);
        assert_eq!(base36_decode("", 4), None);
    }

    #[test]
    fn docker_token_parses_and_prints_back() {
        let token = JoinToken::parse(DOCKER_TOKEN).unwrap();
        assert_eq!(token.to_string(), DOCKER_TOKEN);
    }

    #[test]
    fn generated_token_has_docker_shape_and_ca_digest() {
        let ca = b"not really a certificate, only bytes to digest";
        let token = JoinToken::generate(ca);
        let text = token.to_string();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "SWMTKN");
        assert_eq!(parts[1], "1");
        assert_eq!(parts[2].len(), DIGEST_LEN);
        assert_eq!(parts[3].len(), SECRET_LEN);
        assert_eq!(parts[2], ca_digest_text(ca));
        assert!(token.matches_ca(ca));
        assert!(!token.matches_ca(b"another CA"));
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
    }

    #[test]
    fn two_tokens_differ_in_secret_only() {
        let a = JoinToken::generate(b"ca");
        let b = JoinToken::generate(b"ca");
        assert_eq!(a.ca_digest, b.ca_digest);
        assert_ne!(a.secret, b.secret);
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&a.clone()));
    }

    #[test]
    fn rejects_wrong_shape() {
        assert_eq!(JoinToken::parse("SWMTKN-bogus"), Err(TokenError::Format));
        assert_eq!(JoinToken::parse(""), Err(TokenError::Format));
        let wrong_prefix = DOCKER_TOKEN.replacen("SWMTKN", "SWMTOK", 1);
        assert_eq!(JoinToken::parse(&wrong_prefix), Err(TokenError::Format));
        let extra = format!("{DOCKER_TOKEN}-extra");
        assert_eq!(JoinToken::parse(&extra), Err(TokenError::Format));
    }

    #[test]
    fn rejects_other_versions() {
        let v2 = DOCKER_TOKEN.replacen("-1-", "-2-", 1);
        assert_eq!(JoinToken::parse(&v2), Err(TokenError::Version("2".into())));
    }

    #[test]
    fn rejects_bad_digest() {
        let short = DOCKER_TOKEN.replacen("49i63", "49i6", 1);
        assert!(matches!(
            JoinToken::parse(&short),
            Err(TokenError::Digest(_))
        ));
        let bad_char = DOCKER_TOKEN.replacen("49i63", "49i6_", 1);
        assert!(matches!(
            JoinToken::parse(&bad_char),
            Err(TokenError::Digest(_))
        ));
        // 50 base-36 characters, but more than 2^256 - 1: not "must be 50 characters".
        let overflow = format!("SWMTKN-1-{}-7uy6fpzwky6g4zgjq6zbm43xx", "z".repeat(50));
        let err = JoinToken::parse(&overflow).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Range {
                    part: "CA digest",
                    len: 50,
                    bytes: 32,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(!text.contains("must be"), "{text}");
        assert!(text.contains("does not fit in 32 bytes"), "{text}");
        // The largest digest that fits still parses.
        let largest = format!(
            "SWMTKN-1-{}-7uy6fpzwky6g4zgjq6zbm43xx",
            base36_encode(&[0xff; 32], DIGEST_LEN)
        );
        assert!(JoinToken::parse(&largest).is_ok());
    }

    #[test]
    fn rejects_bad_secret() {
        let short = DOCKER_TOKEN.trim_end_matches('x').to_string();
        assert_eq!(
            JoinToken::parse(&short),
            Err(TokenError::Secret { len: 23 })
        );
        let overflow = format!(
            "SWMTKN-1-49i63cmd6ka1l64l8zo0g89zy43q9fuzgxetxtnjrfrm6bnnkm-{}",
            "z".repeat(25)
        );
        assert!(matches!(
            JoinToken::parse(&overflow),
            Err(TokenError::Range {
                part: "secret",
                len: 25,
                bytes: 16,
                ..
            })
        ));
    }

    #[test]
    fn upper_case_tokens_are_refused_and_say_so() {
        let upper = format!("SWMTKN-1-{}", DOCKER_TOKEN[9..].to_uppercase());
        let err = JoinToken::parse(&upper).unwrap_err();
        assert_eq!(err, TokenError::UpperCase);
        assert!(err.to_string().contains("lower case"), "{err}");
        // One letter is enough.
        let one = DOCKER_TOKEN.replacen("49i63", "49I63", 1);
        assert_eq!(JoinToken::parse(&one), Err(TokenError::UpperCase));
        // The lower-case prefix is still Docker's "invalid join token".
        let prefix = DOCKER_TOKEN.replacen("SWMTKN", "swmtkn", 1);
        assert_eq!(JoinToken::parse(&prefix), Err(TokenError::Format));
    }

    #[test]
    fn node_ids_are_25_base36_characters() {
        let id = new_id();
        assert_eq!(id.len(), 25);
        assert!(id.bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(id, new_id());
    }
}
