//! The daemon's side of the local API: a Unix socket only its owner (and root) may use.
//!
//! Two locks: the socket file is mode 0600, so the kernel refuses other users' `connect`; and
//! each accepted connection's peer credentials are checked, so a socket whose mode was loosened
//! by hand still answers nobody else.

use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::frame::{read_frame, write_frame};
use super::{ApiError, Envelope, ErrorKind, Request, Response, API_VERSION};

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the directory of the API socket {path}: {err}")]
    Dir { path: PathBuf, err: std::io::Error },
    #[error("another daemon is already listening on {0}; stop it or pick another socket with -H")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {err}")]
    Bind { path: PathBuf, err: std::io::Error },
}

/// The bound API socket and the uid allowed to use it.
pub struct ApiListener {
    listener: UnixListener,
    owner_uid: u32,
    path: PathBuf,
}

impl ApiListener {
    /// Binds `path` with mode 0600, replacing a stale socket left by a dead daemon.
    pub async fn bind(path: &Path) -> Result<Self, ServerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| ServerError::Dir {
                path: dir.to_path_buf(),
                err,
            })?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let bind_err = |err| ServerError::Bind {
            path: path.to_path_buf(),
            err,
        };
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        let owner_uid = std::fs::metadata(path).map_err(bind_err)?.uid();
        Ok(ApiListener {
            listener,
            owner_uid,
            path: path.to_path_buf(),
        })
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests forever, one task per connection.
    pub async fn serve<F, Fut>(self, handler: F)
    where
        F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!("API socket accept failed: {err}");
                    continue;
                }
            };
            let handler = handler.clone();
            let owner = self.owner_uid;
            tokio::spawn(async move {
                if let Err(err) = serve_one(stream, owner, handler).await {
                    tracing::debug!("API connection ended: {err}");
                }
            });
        }
    }
}

async fn serve_one<F, Fut>(
    mut stream: UnixStream,
    owner_uid: u32,
    handler: F,
) -> Result<(), super::frame::FrameError>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let peer_uid = stream.peer_cred()?.uid();
    if peer_uid != owner_uid && peer_uid != 0 {
        tracing::warn!("refused API connection from uid {peer_uid}");
        let denied: Response = Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied: this swarmnet daemon's socket belongs to uid {owner_uid}, you are uid {peer_uid}"
            ),
        ));
        return write_frame(&mut stream, &denied).await;
    }
    let envelope: Envelope<serde_json::Value> = read_frame(&mut stream).await?;
    let response: Response = if envelope.version != API_VERSION {
        Err(ApiError::invalid(format!(
            "client API version {} is not supported by this daemon (it speaks version {API_VERSION})",
            envelope.version
        )))
    } else {
        match serde_json::from_value::<Request>(envelope.body) {
            Ok(request) => handler(request).await,
            Err(err) => Err(ApiError::invalid(format!("malformed request: {err}"))),
        }
    };
    write_frame(&mut stream, &response).await
}
