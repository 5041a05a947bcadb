//! The local API's fuzz body (`fuzz/src/http_api.rs`) on stable Rust: hand-made malformed
//! requests, and valid requests whole, truncated and mutated, through the HTTP server and the
//! route table. Each must be answered (or closed after the client closed), never panic or hang.

#[path = "../fuzz/src/http_api.rs"]
mod http_api;

/// xorshift64: deterministic, so a failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            if v.is_empty() {
                break;
            }
            let i = self.below(v.len());
            match self.below(4) {
                0 => v[i] ^= 1 << self.below(8),
                1 => v[i] = self.next() as u8,
                2 => v.truncate(i),
                _ => v.insert(i, b"{}[]\"\r\n:%/ "[self.below(11)]),
            }
        }
        v
    }
}

fn request(method: &str, target: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn valid_requests() -> Vec<Vec<u8>> {
    vec![
        b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        request("GET", "/v1.41/info", ""),
        request("GET", "/version", ""),
        request("GET", "/v1.41/swarm", ""),
        request(
            "POST",
            "/v1.41/swarm/init",
            r#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"127.0.0.1","DefaultAddrPool":["10.0.0.0/8"],"SubnetSize":24}"#,
        ),
        request(
            "POST",
            "/v1.41/swarm/join",
            r#"{"JoinToken":"SWMTKN-1-x","RemoteAddrs":["127.0.0.1:2377"],"Availability":"active"}"#,
        ),
        request("POST", "/v1.41/swarm/leave?force=1", ""),
        request(
            "POST",
            "/v1.41/swarm/update?version=3&rotateWorkerToken=true",
            r#"{"Name":"default","Labels":{}}"#,
        ),
        request(
            "GET",
            "/v1.41/nodes?filters=%7B%22role%22%3A%7B%22manager%22%3Atrue%7D%7D",
            "",
        ),
        request("GET", "/v1.41/nodes/abc", ""),
        request(
            "POST",
            "/v1.41/nodes/abc/update?version=1",
            r#"{"Labels":{},"Role":"worker","Availability":"drain"}"#,
        ),
        request("DELETE", "/v1.41/nodes/abc?force=1", ""),
        request("GET", "/swarmnet/info", ""),
        // Two requests on one kept-alive connection.
        [request("GET", "/_ping", ""), request("GET", "/info", "")].concat(),
    ]
}

fn malformed_requests() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /_ping HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        b"GET /_ping HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET /_ping HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        b"POST /swarm/init HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST /swarm/init HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n"
            .to_vec(),
        b"POST /swarm/init HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /v1.41/../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /v999999999999999999999.1/info HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /v/info HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /v1./info HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /nodes?filters=%ZZ HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /nodes?filters=%7B HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /nodes?filters=%7B%22role%22%3A5%7D HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /nodes/x/update?version=abc HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        request("POST", "/swarm/init", "{\"AdvertiseAddr\":"),
        request("POST", "/swarm/join", "null"),
        request("POST", "/swarm/update?version=1", "[1,2"),
        request("POST", "/nodes/x/update?version=1", "{\"Role\":\"king\"}"),
        request("POST", "/swarm/init", &"[".repeat(10_000)),
    ];
    // Headers past the 64 KiB bound, and a body past the 1 MiB bound.
    let mut big = b"GET /_ping HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    v.push(big);
    v.push(request("POST", "/swarm/init", &" ".repeat(1024 * 1024 + 1)));
    v
}

#[test]
fn malformed_requests_are_answered_not_fatal() {
    for input in malformed_requests() {
        http_api::http_api(&input);
    }
}

#[test]
fn valid_requests_whole_truncated_and_mutated() {
    let mut rng = Rng(0x0005_eeda_11c0_ffee);
    for input in valid_requests() {
        http_api::http_api(&input);
        for cut in (0..input.len()).step_by(7) {
            http_api::http_connection(&input[..cut]);
        }
        for _ in 0..150 {
            http_api::http_api(&rng.mutate(&input));
        }
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(42);
    for _ in 0..300 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        http_api::http_api(&bytes);
    }
}
