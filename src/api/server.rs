//! The daemon's side of the local API: HTTP/1.1 on a Unix socket only its owner (and root) may
//! use, answering the [`routes`](super::routes).
//!
//! Locks: the socket's directory belongs to the daemon (or root, sticky where others may write);
//! the socket file is mode 0600, so the kernel refuses other users' `connect`; and each accepted
//! connection's peer credentials are checked, so a socket whose mode was loosened by hand still
//! answers nobody else.
//!
//! Bounds, so that no client can take the daemon's memory or its listener: request headers
//! [`MAX_HEADER_BYTES`], bodies [`MAX_BODY_BYTES`], [`MAX_CONNECTIONS`] at once (further
//! clients wait in the kernel's backlog), a connection that sends no complete request head
//! within [`HEADER_TIMEOUT`] (idle keep-alive included), no body within [`BODY_TIMEOUT`], or
//! does not read its answer within [`WRITE_TIMEOUT`] is closed. Running out of descriptors makes the accept loop back off and log once per
//! [`ACCEPT_LOG_INTERVAL`]; it never gives up the listener.

use std::convert::Infallible;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::docker::API_VERSION;
use super::events::{Event, EventFeed, EventQuery};
use super::owner::{self, OwnerError};
use super::routes::{Answer, Backend, Router};
use super::stream::{ExplainErrors, WriteTimeout};

/// Largest request head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a whole request head, and for a kept-alive connection to send the next one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a write of an answer may wait for the client to read: a client that stops reading
/// loses its connection rather than keeping a slot.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one log line about failing accepts per interval.
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Longest pause of the accept loop after repeated failures.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the directory of the API socket {path}: {err}")]
    Dir { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error("another daemon is already listening on {0}; stop it or pick another socket with -H")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {err}")]
    Bind { path: PathBuf, err: std::io::Error },
}

/// The bound API socket and who may use it.
pub struct ApiListener {
    listener: UnixListener,
    owner_uid: u32,
    /// With `daemon --group`: the group whose members may use it too (mode 0660).
    group: Option<u32>,
    path: PathBuf,
}

impl ApiListener {
    /// Binds `path` with mode 0600 (0660 and group `group` when one is given, as dockerd's
    /// `-G`), replacing a stale socket left by a dead daemon. A missing directory is created
    /// owner-only (0750 and the group's, with a group); an existing one must be the daemon's
    /// (or root's).
    pub async fn bind(path: &Path, group: Option<u32>) -> Result<Self, ServerError> {
        let me = owner::euid();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                let dir_err = |err| ServerError::Dir {
                    path: dir.to_path_buf(),
                    err,
                };
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(if group.is_some() { 0o750 } else { 0o700 })
                    .create(dir)
                    .map_err(dir_err)?;
                if let Some(gid) = group {
                    std::os::unix::fs::chown(dir, None, Some(gid)).map_err(dir_err)?;
                }
            }
            owner::check_dir(dir, me)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
            if meta.uid() != me && me != 0 {
                return Err(OwnerError::Socket {
                    path: path.to_path_buf(),
                    owner: owner::describe_uid(meta.uid()),
                    me: owner::describe_uid(me),
                }
                .into());
            }
            let _ = std::fs::remove_file(path);
        }
        let bind_err = |err| ServerError::Bind {
            path: path.to_path_buf(),
            err,
        };
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        let mode = match group {
            Some(gid) => {
                std::os::unix::fs::chown(path, None, Some(gid)).map_err(bind_err)?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
        let owner_uid = std::fs::metadata(path).map_err(bind_err)?.uid();
        Ok(ApiListener {
            listener,
            owner_uid,
            group,
            path: path.to_path_buf(),
        })
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until the task is dropped, one task per connection.
    pub async fn serve<B: Backend>(self, router: Arc<Router<B>>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut failures = AcceptFailures::default();
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => {
                    failures.recovered();
                    stream
                }
                Err(err) => {
                    drop(slot);
                    tokio::time::sleep(failures.failed(&err)).await;
                    continue;
                }
            };
            let router = router.clone();
            let owner = self.owner_uid;
            let group = self.group;
            tokio::spawn(async move {
                serve_connection(stream, owner, group, router).await;
                drop(slot);
            });
        }
    }
}

/// Back-off and rate-limited logging of failing `accept` calls (EMFILE, ENFILE, ENOBUFS...).
#[derive(Default)]
struct AcceptFailures {
    streak: u32,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptFailures {
    /// Records a failure; returns how long to pause before the next accept.
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.streak = self.streak.saturating_add(1);
        let due = self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL);
        if due {
            if self.suppressed > 0 {
                tracing::warn!(
                    "API socket accept failed: {err} ({} more failures since the last report); backing off",
                    self.suppressed
                );
            } else {
                tracing::warn!("API socket accept failed: {err}; backing off");
            }
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let exp = self.streak.min(10);
        (Duration::from_millis(5) * 2u32.pow(exp)).min(ACCEPT_BACKOFF_MAX)
    }

    fn recovered(&mut self) {
        if self.streak > 0 {
            tracing::warn!("API socket accepts again after {} failures", self.streak);
        }
        self.streak = 0;
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// Docker's response headers, on every answer.
fn to_http(answer: Answer) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    if let Ok(server) =
        HeaderValue::from_str(&format!("swarmnet/{} (linux)", env!("CARGO_PKG_VERSION")))
    {
        headers.insert(hyper::header::SERVER, server);
    }
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    response
}

/// Reads a request's body within the bounds, then routes it.
pub async fn answer<B, Bd>(router: &Router<B>, req: hyper::Request<Bd>) -> HttpResponse
where
    B: Backend,
    Bd: Body<Data = Bytes>,
    Bd::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = || {
        to_http(Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the {MAX_BODY_BYTES}-byte limit"),
        ))
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Err(_) => {
            return to_http(Answer::error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {BODY_TIMEOUT:?}"),
            ))
        }
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(err)) => {
            return to_http(Answer::error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {err}"),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // For HEAD, hyper sends the head (with the body's length) and leaves the body out.
    let mut response = to_http(router.handle(&parts.method, target, &body).await);
    if parts.version == Version::HTTP_10 {
        *response.version_mut() = Version::HTTP_10;
    }
    response
}

/// A streamed body (`GET /events`, followed logs): what a task following the source sends, for
/// as long as it does.
pub struct EventBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Events still to be sent to one client at most; a client further behind misses some (and
/// the log says how many).
const EVENT_BACKLOG: usize = 64;

/// Streams `feed` as Docker does: one JSON object and a newline per event, the past ones the
/// query wants first; the answer ends at `until`, or when the client goes.
fn stream_events(
    feed: EventFeed,
    query: EventQuery,
) -> hyper::Response<Either<Full<Bytes>, EventBody>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EVENT_BACKLOG);
    tokio::spawn(async move {
        let EventFeed { past, mut live } = feed;
        let line = |e: &Event| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };
        // Without `since` only what happens from now on, as Docker.
        let past = if query.since.is_some() {
            past
        } else {
            Vec::new()
        };
        for e in past.iter().filter(|e| query.wants(e)) {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        // An `until` too far ahead to be an instant of this clock never ends the stream.
        let until = query.until.and_then(|u| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            let left = u64::try_from(i128::from(u) - now).unwrap_or(0);
            tokio::time::Instant::now().checked_add(Duration::from_nanos(left))
        });
        let ended = async {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(ended);
        loop {
            tokio::select! {
                _ = &mut ended => return,
                _ = tx.closed() => return,
                got = live.recv() => match got {
                    Ok(e) if query.wants(&e) => {
                        if tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("an events client fell behind: {n} events not sent to it");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    streamed("application/json", rx)
}

/// A 200 whose body is what `rx` yields, until its sender goes (a followed `GET /events` or
/// logs answer).
fn streamed(
    content_type: &'static str,
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> hyper::Response<Either<Full<Bytes>, EventBody>> {
    let head = to_http(Answer {
        status: StatusCode::OK,
        content_type,
        body: Bytes::new(),
        headers: Vec::new(),
    });
    let (parts, _) = head.into_parts();
    hyper::Response::from_parts(parts, Either::Right(EventBody(rx)))
}

/// Whether process `pid` has `gid` among its supplementary groups (`Groups:` of its status).
/// The kernel already let it connect (mode 0660); this keeps a loosened mode from letting
/// anyone else in.
fn in_group(pid: i32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
        })
        .unwrap_or(false)
}

/// hyper's HTTP/1.1 server settings for the local API.
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(128)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        // A client that shuts down its sending side after the request still gets the answer.
        .half_close(true)
        .keep_alive(true);
    builder
}

async fn serve_connection<B: Backend>(
    stream: UnixStream,
    owner_uid: u32,
    group: Option<u32>,
    router: Arc<Router<B>>,
) {
    let (peer_uid, peer_gid, peer_pid) = match stream.peer_cred() {
        Ok(cred) => (cred.uid(), cred.gid(), cred.pid()),
        Err(err) => {
            tracing::debug!("API connection without peer credentials: {err}");
            return;
        }
    };
    let allowed = peer_uid == owner_uid
        || peer_uid == 0
        || group.is_some_and(|g| peer_gid == g || peer_pid.is_some_and(|p| in_group(p, g)));
    if !allowed {
        tracing::warn!("refused API connection from uid {peer_uid}");
    }
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            if !allowed {
                return Ok::<_, Infallible>(to_http(Answer::error(
                    StatusCode::FORBIDDEN,
                    format!("permission denied: this swarmnet daemon's socket belongs to uid {owner_uid}, you are uid {peer_uid}"),
                )).map(Either::Left));
            }
            if let Some(follow) = router
                .clone()
                .follow_logs(
                    req.method(),
                    req.uri().path_and_query().map_or("/", |p| p.as_str()),
                )
                .await
            {
                return Ok(match follow {
                    Ok(rx) => streamed(super::routes::services::LOGS_CONTENT_TYPE, rx),
                    Err(refused) => to_http(refused).map(Either::Left),
                });
            }
            if let Some(capture) = router
                .capture(
                    req.method(),
                    req.uri().path_and_query().map_or("/", |p| p.as_str()),
                )
                .await
            {
                return Ok(match capture {
                    Ok(rx) => streamed("application/octet-stream", rx),
                    Err(refused) => to_http(refused).map(Either::Left),
                });
            }
            if let Some(events) = router.events(
                req.method(),
                req.uri().path_and_query().map_or("/", |p| p.as_str()),
            ) {
                return Ok(match events {
                    Ok((feed, query)) => stream_events(feed, query),
                    Err(refused) => to_http(refused).map(Either::Left),
                });
            }
            Ok(answer(&router, req).await.map(Either::Left))
        }
    });
    let conn = http1().serve_connection(
        TokioIo::new(ExplainErrors::new(WriteTimeout::new(stream, WRITE_TIMEOUT))),
        service,
    );
    if let Err(err) = conn.await {
        tracing::debug!("API connection ended: {err}");
    }
}
