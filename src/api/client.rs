//! The CLI's side of the local API.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::frame::{read_frame, write_frame, FrameError};
use super::{ApiError, Envelope, Reply, Request, Response, API_VERSION};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "Cannot connect to the swarmnet daemon at unix://{path}. Is the daemon running? ({err})"
    )]
    Connect { path: PathBuf, err: std::io::Error },
    #[error("lost the connection to the swarmnet daemon: {0}")]
    Frame(FrameError),
    /// The daemon answered with an error; its message is the user's.
    #[error("Error response from daemon: {0}")]
    Api(ApiError),
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Frame(e)
    }
}

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Client { path: path.into() }
    }

    /// Parses `unix:///path` (or a bare path) as given to `-H` / `SWARMNET_HOST`.
    pub fn from_host(host: &str) -> Result<Self, String> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Client::new(path));
        }
        if host.contains("://") {
            return Err(format!(
                "unsupported host {host:?}: only unix:///path/to/socket is supported"
            ));
        }
        Ok(Client::new(host))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and waits for the reply.
    pub async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let mut stream =
            UnixStream::connect(&self.path)
                .await
                .map_err(|err| ClientError::Connect {
                    path: self.path.clone(),
                    err,
                })?;
        let sent = write_frame(
            &mut stream,
            &Envelope {
                version: API_VERSION,
                body: request,
            },
        )
        .await;
        // A daemon that refuses the caller answers before reading; its answer may still be
        // readable after our write failed, and it says more than "broken pipe".
        let response: Response = match (sent, read_frame(&mut stream).await) {
            (_, Ok(response)) => response,
            (Err(err), Err(_)) | (Ok(()), Err(err)) => return Err(err.into()),
        };
        response.map_err(ClientError::Api)
    }
}
