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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::client::{Client, ClientError};
    use crate::api::Reply;

    async fn serve(dir: &Path) -> PathBuf {
        let path = dir.join("api.sock");
        let listener = ApiListener::bind(&path).await.unwrap();
        tokio::spawn(listener.serve(|req| async move {
            match req {
                Request::Info => Ok(Reply::Done),
                _ => Err(ApiError::not_a_manager()),
            }
        }));
        path
    }

    #[tokio::test]
    async fn answers_requests_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(dir.path()).await;
        let client = Client::new(&path);
        assert!(matches!(client.call(Request::Info).await, Ok(Reply::Done)));
        match client.call(Request::NodeList).await {
            Err(ClientError::Api(e)) => assert_eq!(e, ApiError::not_a_manager()),
            other => panic!("{other:?}"),
        }

        let mut stream = UnixStream::connect(&path).await.unwrap();
        let old = Envelope {
            version: API_VERSION + 1,
            body: serde_json::json!("Info"),
        };
        write_frame(&mut stream, &old).await.unwrap();
        let response: Response = read_frame(&mut stream).await.unwrap();
        let err = response.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(
            err.message.contains("is not supported by this daemon"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_second_daemon_on_the_same_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(dir.path()).await;
        match ApiListener::bind(&path).await {
            Err(ServerError::InUse(p)) => assert_eq!(p, path),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("bound twice"),
        }
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = ApiListener::bind(&path).await.unwrap();
        let mode = std::fs::metadata(listener.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
