//! The cluster protocol on 2377: request/reply types and the node-side calls.
//!
//! One request per TLS connection, length-prefixed JSON. The caller's identity is never in the
//! message: managers read it from the verified client certificate. A caller without one may
//! send only a small frame ([`PREAUTH_MAX_FRAME`]); frames of trusted peers (Raft snapshots)
//! may be larger, and their buffer grows only as the bytes arrive.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ca::pem_to_der;
use super::raft::{RaftAnswer, RaftMessage};
use super::store::NetworkKey;
use super::tls;
use super::token::{ca_digest_text, JoinToken};
use crate::api::frame::{write_frame, FrameError};
use crate::api::{ApiError, Availability, Reply, Request, Role};

/// Time allowed for connecting, the handshake and one exchange.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a manager to become a Raft voter: the leader adds it as a learner, waits
/// for it to catch up with the log (or a snapshot) and commits the configuration change.
pub const RAFT_JOIN_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest wait of the leader for a node to start a capture asked of it (`capture --node`):
/// the order goes out in the node's next heartbeat answer.
pub const CAPTURE_FEED_WAIT: Duration = Duration::from_secs(10);
/// Largest frame accepted from a caller without a client certificate: a join request (token,
/// CSR, names and addresses) takes about 1 KiB.
pub const PREAUTH_MAX_FRAME: usize = 16 * 1024;
/// Largest frame accepted from a peer with a certificate of this swarm (Raft snapshots).
pub const MAX_FRAME: usize = crate::api::frame::MAX_FRAME;

/// Requests a node (or the CLI's daemon) sends to a manager.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// The root CA certificate; allowed without a client certificate.
    GetRootCa,
    /// Join with a token and a CSR; allowed without a client certificate.
    Join {
        token: String,
        csr_pem: String,
        hostname: String,
        advertise_addr: String,
        listen_addr: String,
        data_path_addr: String,
        availability: Availability,
    },
    /// Liveness, with the states and output of the caller's tasks since its last heartbeat;
    /// answered with the desired role, the managers, the encryption keys and the caller's
    /// assignments.
    Heartbeat {
        #[serde(default)]
        report: Box<crate::control::dispatcher::Report>,
    },
    /// A new certificate for the caller's new key, with the role the swarm wants for it.
    RenewCert { csr_pem: String },
    /// The caller leaves the swarm; a manager is removed from the Raft voters first.
    Leave,
    /// A manager that was just admitted (or promoted) asks to become a Raft voter; answered once
    /// the configuration change is committed. Needs a manager certificate.
    RaftJoin,
    /// A join that could not be completed is withdrawn: the caller's node record (and its Raft
    /// learner or voter slot) is removed, as if it had never joined.
    Withdraw,
    /// A manager operation forwarded by another manager's daemon; needs a manager certificate.
    Api(Request),
    /// Raft between managers; needs a manager certificate.
    Raft(RaftMessage),
    /// A manager asks the leader for a capture on `node` (a node ID), for its own user; the
    /// answer is followed by the capture's stream on the same connection (see
    /// [`open_stream`]). Needs a manager certificate.
    Capture {
        node: String,
        order: crate::api::capture::CaptureOrder,
    },
    /// A node answers capture order `id` (handed out in its heartbeat answer): whether it
    /// opened the capture; when it did, the capture's stream follows the leader's answer.
    CaptureFeed {
        id: u64,
        opened: Result<(), ApiError>,
    },
}

/// Successful replies.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClusterReply {
    RootCa {
        cert_pem: String,
    },
    Joined {
        node_id: String,
        swarm_id: String,
        cert_pem: String,
        managers: Vec<String>,
    },
    Heartbeat {
        role: Role,
        managers: Vec<String>,
        keys: Vec<NetworkKey>,
        /// Whether the caller is a Raft voter (managers whose answer is `false` ask to join).
        #[serde(default)]
        voter: bool,
        /// What the caller is to run; `None` when it runs that already (the digest it sent).
        #[serde(default)]
        assignments: Option<Box<crate::control::dispatcher::Assignments>>,
        /// Captures a manager asks of the caller (`swarmnet capture --node`).
        #[serde(default)]
        captures: Vec<crate::api::capture::CaptureOrder>,
    },
    Cert {
        cert_pem: String,
    },
    Done,
    Api(Reply),
    Raft(RaftAnswer),
    /// This manager does not hold the cluster state; ask the leader at `leader`.
    Redirect {
        leader: String,
    },
}

pub type ClusterResponse = Result<ClusterReply, ApiError>;

impl ClusterRequest {
    /// How long the caller waits for the answer (and the manager may take to give it).
    pub fn timeout(&self) -> Duration {
        match self {
            ClusterRequest::RaftJoin => RAFT_JOIN_TIMEOUT,
            // A manager's removal from the voters is a Raft configuration change.
            ClusterRequest::Leave | ClusterRequest::Withdraw => RAFT_JOIN_TIMEOUT,
            // A promotion waits for the node to become a voter; a demotion removes one.
            ClusterRequest::Api(Request::NodeSetRole { .. }) => RAFT_JOIN_TIMEOUT * 2,
            // A forwarded write waits for its commit up to the leader's write timeout, and
            // then says why it failed (lost quorum): the call outlasts it.
            // The leader waits for the node's stream before it answers.
            ClusterRequest::Capture { .. } => CAPTURE_FEED_WAIT + CALL_TIMEOUT,
            ClusterRequest::Api(_) => {
                crate::control::manager::WRITE_TIMEOUT + std::time::Duration::from_secs(2)
            }
            _ => CALL_TIMEOUT,
        }
    }
}

/// Reads one length-prefixed frame of at most `max` bytes. The body buffer grows with the
/// bytes received, never to the announced length up front.
pub async fn read_frame_bounded<R, T>(r: &mut R, max: usize) -> Result<T, FrameError>
where
    R: tokio::io::AsyncRead + Unpin,
    T: serde::de::DeserializeOwned,
{
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// An I/O error on a connection to `addr` in words a user can act on: a closed connection says
/// so (rustls' own text for it points at its manual).
fn plain_io(addr: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => format!(
            "the manager at {addr} closed the connection before answering (did it stop or restart?)"
        ),
        _ => format!("talking to the manager at {addr}: {err}"),
    }
}

/// Errors of a call to a manager.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("could not connect to the manager at {addr}: {err}")]
    Connect { addr: String, err: std::io::Error },
    #[error(
        "TLS handshake with the manager at {addr} failed: {}",
        handshake_text(addr, err)
    )]
    Handshake { addr: String, err: std::io::Error },
    #[error("the manager at {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{}", frame_text(addr, err))]
    Frame { addr: String, err: FrameError },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Remote(ApiError),
    #[error("the manager at {addr} answered with an unexpected message")]
    Unexpected { addr: String },
    #[error("remote CA does not match fingerprint. Expected: {expected}, got: {got}")]
    Fingerprint { expected: String, got: String },
    #[error("the manager at {addr} sent a CA certificate that cannot be read: {err}")]
    BadCa { addr: String, err: String },
    #[error("no manager could be reached (tried {0})")]
    NoManager(String),
}

fn handshake_text(addr: &str, err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::InvalidData => err.to_string(),
        _ => plain_io(addr, err),
    }
}

fn frame_text(addr: &str, err: &FrameError) -> String {
    match err {
        FrameError::Io(io) => plain_io(addr, io),
        other => format!("talking to the manager at {addr}: {other}"),
    }
}

/// Connects to `addr`, sends `request` and reads the answer (a frame of at most `max` bytes),
/// within the request's time; the connection is returned for what may follow the answer.
async fn exchange(
    addr: &str,
    config: Arc<ClientConfig>,
    request: &ClusterRequest,
    max: usize,
) -> Result<(ClientStream, ClusterResponse), RpcError> {
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|err| RpcError::Connect {
                addr: addr.to_string(),
                err,
            })?;
        let mut stream = TlsConnector::from(config)
            .connect(tls::manager_server_name(), tcp)
            .await
            .map_err(|err| RpcError::Handshake {
                addr: addr.to_string(),
                err,
            })?;
        let frame_err = |err| RpcError::Frame {
            addr: addr.to_string(),
            err,
        };
        write_frame(&mut stream, request).await.map_err(frame_err)?;
        let response: ClusterResponse = read_frame_bounded(&mut stream, max)
            .await
            .map_err(frame_err)?;
        Ok((stream, response))
    };
    let timeout = request.timeout();
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RpcError::Timeout(addr.to_string(), timeout))?
}

/// One request over one TLS connection to `addr`.
pub async fn call(
    addr: &str,
    config: Arc<ClientConfig>,
    request: &ClusterRequest,
) -> Result<ClusterReply, RpcError> {
    let (_, response) = exchange(addr, config, request, MAX_FRAME).await?;
    response.map_err(RpcError::Remote)
}

/// Tries the managers in order with `one` (its `Err(leader)`: a redirect), following one
/// redirect to the leader, until one answers. Errors answered by a manager are final;
/// connection errors move on to the next manager.
async fn over_managers<T, F, Fut>(managers: &[String], mut one: F) -> Result<T, RpcError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, RpcError>>,
{
    let mut last = None;
    for addr in managers {
        match one(addr.clone()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(leader)) => {
                return match one(leader.clone()).await? {
                    Ok(answer) => Ok(answer),
                    Err(_) => Err(RpcError::Unexpected { addr: leader }),
                }
            }
            Err(err @ RpcError::Remote(_)) => return Err(err),
            Err(err) => {
                tracing::debug!("manager {addr} unreachable: {err}");
                last = Some(err);
            }
        }
    }
    match last {
        Some(err) if managers.len() == 1 => Err(err),
        _ => Err(RpcError::NoManager(managers.join(", "))),
    }
}

/// Calls the managers in order, following one redirect to the leader, until one answers.
/// Errors answered by a manager are final; connection errors move on to the next manager.
pub async fn call_managers(
    managers: &[String],
    config: Arc<ClientConfig>,
    request: &ClusterRequest,
) -> Result<ClusterReply, RpcError> {
    over_managers(managers, |addr| {
        let config = config.clone();
        async move {
            Ok(match call(&addr, config, request).await? {
                ClusterReply::Redirect { leader } => Err(leader),
                reply => Ok(reply),
            })
        }
    })
    .await
}

/// A connection on which a stream follows the manager's answer (a capture).
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Sends `request` to `addr` and reads the answer; on `Done` the connection is returned for
/// the stream that follows it, on a redirect the leader's address. The connection, handshake
/// and answer are bounded by the request's time, the stream is not.
async fn open_one(
    addr: &str,
    config: Arc<ClientConfig>,
    request: &ClusterRequest,
) -> Result<Result<ClientStream, String>, RpcError> {
    let (stream, response) = exchange(addr, config, request, PREAUTH_MAX_FRAME).await?;
    match response.map_err(RpcError::Remote)? {
        ClusterReply::Done => Ok(Ok(stream)),
        ClusterReply::Redirect { leader } => Ok(Err(leader)),
        _ => Err(RpcError::Unexpected {
            addr: addr.to_string(),
        }),
    }
}

/// Like [`call_managers`], for a request answered by a stream: the connection after the
/// manager's `Done`, following one redirect to the leader.
pub async fn open_stream(
    managers: &[String],
    config: Arc<ClientConfig>,
    request: &ClusterRequest,
) -> Result<ClientStream, RpcError> {
    over_managers(managers, |addr| {
        let config = config.clone();
        async move { open_one(&addr, config, request).await }
    })
    .await
}

/// Fetches the root CA from `addr` over an unverified connection and checks it against the
/// token's digest; only a CA that matches is returned (PEM).
pub async fn fetch_root_ca(addr: &str, token: &JoinToken) -> Result<String, RpcError> {
    let reply = call(
        addr,
        tls::bootstrap_client_config()?,
        &ClusterRequest::GetRootCa,
    )
    .await?;
    let ClusterReply::RootCa { cert_pem } = reply else {
        return Err(RpcError::Unexpected {
            addr: addr.to_string(),
        });
    };
    let der = pem_to_der(&cert_pem).map_err(|e| RpcError::BadCa {
        addr: addr.to_string(),
        err: e.to_string(),
    })?;
    if !token.matches_ca(&der) {
        let expected = token.to_string();
        return Err(RpcError::Fingerprint {
            expected: expected.split('-').nth(2).unwrap_or_default().to_string(),
            got: ca_digest_text(&der),
        });
    }
    Ok(cert_pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ca::{new_key_and_csr, NodeCredentials, RootCa};
    use crate::control::token::JoinToken;

    /// A manager that completes the TLS handshake, reads the request and closes without an
    /// answer (it stopped mid-call): the error names it in plain words.
    #[tokio::test]
    async fn a_manager_lost_mid_call_is_named_in_plain_words() {
        let ca = RootCa::generate().unwrap();
        let (key_pem, csr_pem) = new_key_and_csr().unwrap();
        let cert_pem = ca.sign_csr(&csr_pem, "n1", Role::Manager, "s1").unwrap();
        let server =
            tls::server_config(&NodeCredentials { cert_pem, key_pem }, &ca.cert_pem).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = tokio_rustls::TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .unwrap();
            let _: Result<ClusterRequest, _> =
                read_frame_bounded(&mut stream, PREAUTH_MAX_FRAME).await;
            // Dropped without close_notify, as a killed process would.
        });
        let token = JoinToken::generate(&ca.cert_der().unwrap());
        let err = fetch_root_ca(&addr, &token).await.unwrap_err().to_string();
        assert!(!err.contains("docs.rs"), "{err}");
        assert!(!err.contains("close_notify"), "{err}");
        assert!(
            err.contains(&format!("the manager at {addr} closed the connection")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn preauth_frames_are_bounded_before_buffering() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
        let err = read_frame_bounded::<_, ClusterRequest>(&mut b, PREAUTH_MAX_FRAME)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge(n) if n == 16 << 20),
            "{err}"
        );
    }
}
