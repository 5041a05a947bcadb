//! A load generator for the daemon's Docker Engine API, run by `scripts/bench-api.sh`: N
//! concurrent keep-alive HTTP/1.1 connections to one daemon's Unix socket, each sending its next
//! request as soon as the previous answer is read, for a bounded time or count.
//!
//!   apiload SOCKET get PATH [-c N] [-d SECS] [-n COUNT]
//!       `GET PATH` (e.g. /v1.41/networks) again and again;
//!   apiload SOCKET create-services PREFIX [--network NET] [-c N] [-d SECS] [-n COUNT]
//!       `POST /v1.41/services/create`, services PREFIX-0, PREFIX-1, ... (image swarmnet/whoami,
//!       one replica, on overlay network NET if given).
//!
//! It prints one line of `key=value` figures: requests, errors, seconds, requests per second and
//! the latency (request written to answer read whole) at p50, p99 and max, in microseconds. The
//! connections are opened before the clock starts. Any answer other than 2xx counts as an error
//! (the first is printed to stderr) and makes the exit status 1. Bounded: at most 64 connections
//! (the daemon serves 64 at once), 600 s and 10,000,000 requests, 30 s per request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Longest a single request may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(about = "Drives a swarmnet daemon's API socket with concurrent keep-alive requests")]
struct Args {
    /// The daemon's API socket (a path, or unix:///path).
    socket: String,
    /// Concurrent keep-alive connections (1-64).
    #[arg(short = 'c', long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    connections: u16,
    /// Stop after this many seconds (0.1-600).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many requests in all (1-10,000,000), if that comes first.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: Option<u64>,
    #[command(subcommand)]
    load: Load,
}

#[derive(Subcommand, Clone)]
enum Load {
    /// GET PATH, e.g. /v1.41/networks.
    Get { path: String },
    /// POST /v1.41/services/create with distinct names PREFIX-0, PREFIX-1, ...
    CreateServices {
        prefix: String,
        /// Attach each service to this (overlay) network.
        #[arg(long)]
        network: Option<String>,
    },
}

impl Load {
    fn label(&self) -> String {
        match self {
            Load::Get { path } => format!("GET {path}"),
            Load::CreateServices { network: None, .. } => "POST /v1.41/services/create".into(),
            Load::CreateServices {
                network: Some(n), ..
            } => format!("POST /v1.41/services/create (network {n})"),
        }
    }

    /// The request numbered `seq`.
    fn request(&self, seq: u64) -> Request<Full<Bytes>> {
        let builder = Request::builder().header("Host", "docker");
        match self {
            Load::Get { path } => builder
                .method(Method::GET)
                .uri(path.as_str())
                .body(Full::new(Bytes::new())),
            Load::CreateServices { prefix, network } => {
                let mut spec = serde_json::json!({
                    "Name": format!("{prefix}-{seq}"),
                    "TaskTemplate": { "ContainerSpec": { "Image": "swarmnet/whoami" } },
                    "Mode": { "Replicated": { "Replicas": 1 } },
                });
                if let Some(n) = network {
                    spec["TaskTemplate"]["Networks"] = serde_json::json!([{ "Target": n }]);
                }
                builder
                    .method(Method::POST)
                    .uri("/v1.41/services/create")
                    .header("Content-Type", "application/json")
                    .body(Full::new(Bytes::from(spec.to_string())))
            }
        }
        .expect("a request built from a valid path and JSON")
    }
}

/// What all connections share: the next request number, the end of the run, the first error.
struct Shared {
    load: Load,
    next: AtomicU64,
    count: u64,
    deadline: Instant,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    /// The next request's number, or None when the run is over.
    fn ticket(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq < self.count).then_some(seq)
    }

    fn error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(e);
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
}

async fn connect(socket: &PathBuf) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake on {}: {e}", socket.display()))?;
    tokio::spawn(async move {
        // Ends with the connection; an error here shows up as the next request's error.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends requests on one connection until the run is over; a broken connection ends it.
async fn drive(mut sender: SendRequest<Full<Bytes>>, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    while let Some(seq) = shared.ticket() {
        let request = shared.load.request(seq);
        let t = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await;
        match answer {
            Ok(Ok((status, body))) => {
                tally.latencies_us.push(t.elapsed().as_micros() as u64);
                if !status.is_success() {
                    tally.errors += 1;
                    shared.error(format!(
                        "request {seq}: {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ));
                }
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                shared.error(format!("request {seq}: {e}"));
                break;
            }
            Err(_) => {
                tally.errors += 1;
                shared.error(format!(
                    "request {seq}: no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ));
                break;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> Result<bool, String> {
    if !(0.1..=600.0).contains(&args.duration) {
        return Err(format!(
            "--duration must be 0.1-600 seconds, not {}",
            args.duration
        ));
    }
    let socket = PathBuf::from(args.socket.strip_prefix("unix://").unwrap_or(&args.socket));
    let mut senders = Vec::with_capacity(usize::from(args.connections));
    for _ in 0..args.connections {
        senders.push(connect(&socket).await?);
    }
    let label = args.load.label();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        load: args.load,
        next: AtomicU64::new(0),
        count: args.count.unwrap_or(u64::MAX),
        deadline: start + Duration::from_secs_f64(args.duration),
        first_error: Mutex::new(None),
    });
    let workers: Vec<_> = senders
        .into_iter()
        .map(|s| tokio::spawn(drive(s, shared.clone())))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let tally = w
            .await
            .map_err(|e| format!("a connection's task failed: {e}"))?;
        latencies.extend(tally.latencies_us);
        errors += tally.errors;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let answered = latencies.len();
    println!(
        "{label}: connections={} requests={answered} errors={errors} secs={secs:.2} req_per_s={:.0} p50_us={} p99_us={} max_us={}",
        args.connections,
        answered as f64 / secs,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );
    let first = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(e) = first {
        eprintln!("apiload: {errors} errors; the first: {e}");
    }
    Ok(errors == 0 && answered > 0)
}

fn main() {
    let args = Args::parse();
    // One thread: the load generator is meant to be pinned to one core of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("apiload: cannot start the runtime: {e}");
            std::process::exit(1)
        });
    match runtime.block_on(run(args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("apiload: {e}");
            std::process::exit(1)
        }
    }
}
