//! The one error of the wire layer's checked views.

/// Why bytes could not be read as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the header (or a length field) requires.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the format forbids.
    #[error("malformed packet")]
    Malformed,
    /// A valid packet of a kind this code does not handle (another hardware type, ...).
    #[error("unsupported packet")]
    Unsupported,
}

pub type Result<T> = core::result::Result<T, Error>;
