//! ESP for encrypted overlay networks (RFC 4303 transport mode, AES-128-GCM per RFC 4106).
//!
//! On an encrypted network the whole VXLAN UDP datagram (UDP header, VXLAN header, inner frame)
//! is the ESP payload, next header 17; the outer IPv4 header carries protocol 50 (`transport =
//! "ip"`) or a UDP header to the ESP-in-UDP port (`transport = "udp"`, RFC 3948). Inbound, a
//! node accepts both forms, and refuses cleartext VXLAN for an encrypted network's VNI.
//!
//! - `sa`: one SA: SPI and salt derivation, seal, open, shared sequence counter and window.
//! - `window`: the anti-replay window with 64-bit extended sequence numbers.
//! - `keyring`: the three keys, rotation, and the SA table a node builds from them.
//! - `datapath`: the hooks the switch calls.
//!
//! Sans-IO like the rest of the core: keys come from the topology, nothing reads a clock or
//! draws randomness (the IV is the sequence number, unique per SA).

mod datapath;
mod keyring;
mod sa;
#[cfg(test)]
mod vectors;
mod window;

pub(crate) use datapath::{encapsulate, encapsulate_parts, input_ipv4, input_udp, is_esp_datagram};
pub use keyring::{EspTable, Key, Keyring, KeyringError, Transport, MAX_KEYS};
pub use sa::{key_id, spi, EspError, KeyBytes, Sa};
pub use window::{Window, WINDOW};
