//! The CLI's side of the local API: HTTP/1.1 over the daemon's Unix socket, on the same routes
//! the docker CLI uses (`/v1.41/...`) and swarmnet's own (`/swarmnet/...`).
//!
//! Before sending anything the client checks who owns the socket and its directory, and after
//! connecting who runs the process that answers ([`super::owner`]): join tokens travel here.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use super::docker::{self, API_VERSION};
use super::owner::{self, OwnerError};
use super::LocalInfo;

/// Largest answer the client reads.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "Cannot connect to the swarmnet daemon at unix://{path}. Is the daemon running? ({err})"
    )]
    Connect { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error("lost the connection to the swarmnet daemon: {0}")]
    Http(String),
    #[error("unexpected answer from the swarmnet daemon to {route}: {err}")]
    Decode { route: String, err: String },
    /// The daemon answered with an error; its message is the user's.
    #[error("Error response from daemon: {message}")]
    Api { status: StatusCode, message: String },
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

    /// Sends one request on a fresh connection; returns the answer's head and body, and the
    /// task driving the connection (to abort once the body is read).
    async fn request(
        &self,
        method: Method,
        route: &str,
        body: Option<Vec<u8>>,
    ) -> Result<
        (
            hyper::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<()>,
        ),
        ClientError,
    > {
        let me = owner::euid();
        owner::check_client_socket(&self.path, me)?;
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|err| ClientError::Connect {
                path: self.path.clone(),
                err,
            })?;
        if let Ok(cred) = stream.peer_cred() {
            owner::check_peer(&self.path, cred.uid(), me)?;
        }
        let http = |e: hyper::Error| ClientError::Http(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let has_body = body.is_some();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(route)
            .header(hyper::header::HOST, "swarmnet")
            .header(
                hyper::header::USER_AGENT,
                concat!("swarmnet-cli/", env!("CARGO_PKG_VERSION")),
            );
        if has_body {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(http)?;
        Ok((response, driver))
    }

    /// One request on a fresh connection; returns the status and the body.
    pub async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let (response, driver) = self.request(method, route, body).await?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok((status, bytes))
    }

    /// `GET` a streamed route: `each` gets every piece of the body as it arrives, until the
    /// daemon ends the answer or `each` returns false. An error answer is read whole.
    pub async fn stream(
        &self,
        route: &str,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let (response, driver) = self.request(Method::GET, route, None).await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            driver.abort();
            return Err(api_error(status, &bytes));
        }
        let mut body = response.into_body();
        let result = loop {
            match body.frame().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(ClientError::Http(e.to_string())),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if !each(data) {
                            break Ok(());
                        }
                    }
                }
            }
        };
        driver.abort();
        result
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.send(method, route, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            route: route.to_string(),
            err: e.to_string(),
        })
    }

    /// `GET` a Docker route (`/nodes` becomes `/v1.41/nodes`) and decode its JSON.
    pub async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, ClientError> {
        self.json(Method::GET, &versioned(route), None).await
    }

    /// `POST` JSON to a Docker route; returns the raw answer body.
    pub async fn post<B: Serialize>(
        &self,
        route: &str,
        body: Option<&B>,
    ) -> Result<Bytes, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(self.send(Method::POST, &versioned(route), body).await?.1)
    }

    /// `DELETE` a Docker route.
    pub async fn delete(&self, route: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &versioned(route), None).await?;
        Ok(())
    }

    /// `GET /_ping`: true when the daemon answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.send(Method::GET, "/_ping", None).await.map(|_| ())
    }

    /// swarmnet's own view of this node (`GET /swarmnet/info`).
    pub async fn local_info(&self) -> Result<LocalInfo, ClientError> {
        self.json(Method::GET, "/swarmnet/info", None).await
    }

    /// This node's data-path rows (`GET /swarmnet/stats`), only those `names` ask for.
    pub async fn stats(&self, names: &[String]) -> Result<super::stats::Stats, ClientError> {
        let mut route = "/swarmnet/stats".to_string();
        for (i, n) in names.iter().enumerate() {
            route.push(if i == 0 { '?' } else { '&' });
            route.push_str(super::stats::NAME_PARAM);
            route.push('=');
            route.push_str(&query_value(n));
        }
        self.json(Method::GET, &route, None).await
    }
}

/// The daemon's error answer: Docker's `{"message": ...}`, else its text, else the status.
fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<docker::ErrorMessage>(bytes)
        .map(|m| m.message)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(bytes).trim().to_string();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        });
    ClientError::Api { status, message }
}

/// `/nodes` -> `/v1.41/nodes`.
pub fn versioned(route: &str) -> String {
    format!("/v{API_VERSION}{route}")
}

/// Percent-encodes a query parameter's value.
pub fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Percent-encodes one path segment (a node ID or name).
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
