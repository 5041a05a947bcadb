//! Fuzz body for the local API: raw bytes as an HTTP/1.1 connection to the daemon's server
//! (hyper with swarmnet's limits and routes), and as a method, target and body straight into
//! the route table. Kept apart from libFuzzer so that `tests/robustness_api.rs` runs it on
//! stable Rust. It panics only when a promise breaks:
//! - every answer is HTTP/1.x with a status, never a hang or a panic, and no error answer is
//!   bodiless (hyper's own 400/431 are given a message);
//! - every route answer that carries a body is JSON, and every error is `{"message": ...}`.

use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::Method;
use hyper_util::rt::TokioIo;
use swarmnet::api::docker::Host;
use swarmnet::api::routes::{Backend, Router};
use swarmnet::api::server::{answer, http1};
use swarmnet::api::stream::ExplainErrors;
use swarmnet::api::{ApiError, LocalInfo, Reply, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node outside any swarm: init, join and leave succeed, manager operations are refused.
pub struct Standalone;

impl Backend for Standalone {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
        let reply = match req {
            Request::Info => Ok(Reply::Info(LocalInfo {
                local_node_state: "inactive".into(),
                node_id: None,
                role: None,
                node_addr: None,
                remote_managers: vec![],
                encryption_key_tags: vec![],
                raft_leader: None,
                raft_voters: 0,
                raft_applied: None,
                raft_snapshot: None,
            })),
            Request::SwarmInit(_) => Ok(Reply::Init {
                node_id: "n1".into(),
                worker_token: String::new(),
                advertise: String::new(),
            }),
            Request::SwarmJoin(_) => Ok(Reply::Joined {
                role: swarmnet::api::Role::Worker,
            }),
            Request::SwarmLeave { .. } => Err(ApiError::not_in_swarm()),
            _ => Err(ApiError::not_in_swarm()),
        };
        async move { reply }
    }
}

fn router() -> &'static Router<Standalone> {
    static ROUTER: std::sync::OnceLock<Router<Standalone>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        Router::new(
            Standalone,
            Host {
                hostname: "fuzz".into(),
                kernel_version: "6".into(),
                operating_system: "Linux".into(),
                ncpu: 1,
                mem_total: 1 << 30,
            },
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Checks one route answer's body: empty, `OK` (ping), or JSON; errors are `{"message"}`.
fn check_answer(status: u16, body: &[u8]) {
    if body.is_empty() || body == b"OK" {
        return;
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {body:?}"));
    if status >= 400 {
        assert!(
            value.get("message").and_then(|m| m.as_str()).is_some(),
            "error {status} without a message: {value}"
        );
    }
}

/// `data` as the bytes a client sends on one connection (then it closes its side).
pub fn http_connection(data: &[u8]) {
    let rt = runtime();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let service = hyper::service::service_fn(|req| async move {
            Ok::<_, std::convert::Infallible>(answer(router(), req).await)
        });
        let conn = http1().serve_connection(TokioIo::new(ExplainErrors::new(server)), service);
        let server = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut out));
        assert!(read.await.is_ok(), "the server neither answered nor closed");
        let _ = server.await;
        if !out.is_empty() {
            assert!(
                out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(80)])
            );
            let code = std::str::from_utf8(&out[9..out.len().min(12)])
                .ok()
                .and_then(|c| c.parse::<u16>().ok());
            assert!(
                code.is_some(),
                "no status code: {:?}",
                String::from_utf8_lossy(&out)
            );
            // Every error answer says what was wrong: none has an empty body.
            if code.is_some_and(|c| c >= 400) {
                let head_end = out
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(out.len());
                let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
                assert!(
                    !head.contains("\r\ncontent-length: 0"),
                    "error without a message: {head}"
                );
            }
        }
    });
}

/// First byte picks the method, bytes up to the first newline are the target, the rest is
/// the body: straight into the route table.
pub fn routes(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
        Method::PUT,
    ][m as usize % 5]
        .clone();
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let target = String::from_utf8_lossy(target);
    let rt = runtime();
    let a = rt.block_on(router().handle(&method, &target, body));
    check_answer(a.status.as_u16(), &a.body);
    // And through the server's body reader, as a whole request.
    let req = hyper::Request::builder()
        .method(method)
        .uri("/")
        .body(http_body_util::Full::new(Bytes::copy_from_slice(body)));
    if let Ok(req) = req {
        let resp = rt.block_on(answer(router(), req));
        let status = resp.status().as_u16();
        let bytes = rt
            .block_on(resp.into_body().collect())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        check_answer(status, &bytes);
    }
}

/// Both views of one input.
pub fn http_api(data: &[u8]) {
    http_connection(data);
    routes(data);
}
