//! Fuzz bodies for the input surfaces besides packets: the topology loader, pcap input to
//! replay, frames on the cluster port (2377), join tokens, CSRs and certificates, and whole
//! command lines. Kept apart from libFuzzer so that stable Rust runs them over the checked-in
//! seeds (`tests/robustness_surfaces.rs`). Each panics only when a promise breaks:
//! - topology: a file that loads re-serialises to text that loads to the same topology; every
//!   number is within its documented range; tables build from it and list each remote VTEP;
//! - pcap: replay gives a clear error or runs, deterministically (twice, byte-identical
//!   outputs), counting every packet in, and every frame it writes for a task is whole;
//! - cluster frames: a request decodes only from a whole frame within the size limit, and
//!   re-encodes to a frame that decodes to the same request; the pieces an unauthenticated
//!   caller controls (join token, CSR) go through their own targets' checks too;
//! - join tokens: a token that parses prints as the canonical text, which parses to the same;
//! - CSRs: a signed certificate carries the signer's identity, never the CSR's, and the CSR's
//!   key; certificates: an identity read from any bytes is one of the two roles;
//! - command lines: clap accepts or refuses with an error that renders; accepted numbers are
//!   within their ranges.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use swarmnet::api::Role;
use swarmnet::control::ca::{self, RootCa};
use swarmnet::control::rpc::ClusterRequest;
use swarmnet::control::token::JoinToken;
use swarmnet::dataplane::Tables;
use swarmnet::topology::{EspTransport, Topology};

/// A topology: any bytes; UTF-8 text is parsed, re-serialised and parsed again.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let topo = match Topology::parse(text, "fuzz.toml") {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz.toml:"),
                "error without the file: {msg}"
            );
            if let Some(line) = e.line() {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "error on line {line} of a {}-line file",
                    text.lines().count()
                );
            }
            return;
        }
    };
    check_topology(&topo);
    let again = to_toml(&topo);
    let reparsed = Topology::parse(&again, "again.toml")
        .unwrap_or_else(|e| panic!("re-serialised topology does not load: {e}\n{again}"));
    assert_eq!(reparsed, topo, "re-serialised topology differs:\n{again}");
}

fn check_topology(t: &Topology) {
    assert!((1024..=49151).contains(&t.node.data_path_port));
    for n in &t.networks {
        assert!((1..=0xff_ffff).contains(&n.vni), "vni {}", n.vni);
        assert!((576..=65485).contains(&n.mtu), "mtu {}", n.mtu);
        assert_eq!(
            t.networks.iter().filter(|m| m.vni == n.vni).count(),
            1,
            "vni {} twice",
            n.vni
        );
        assert_eq!(t.networks.iter().filter(|m| m.name == n.name).count(), 1);
    }
    if let Some(e) = &t.encryption {
        assert!((1..=3).contains(&e.keys.len()));
        assert!(e.keys.iter().any(|k| k.tag == e.primary));
        assert!((1024..=49151).contains(&e.udp_port));
    }
    let tables = Tables::from_topology(t);
    for e in &t.endpoints {
        let net = tables
            .network_id(&e.network)
            .unwrap_or_else(|| panic!("endpoint {} on an unknown network", e.name));
        match e.vtep {
            Some(vtep) => assert!(
                tables.network(net).is_some_and(|n| n.is_vtep(vtep)),
                "remote endpoint {}'s VTEP {vtep} not among its network's VTEPs",
                e.name
            ),
            None => assert!(
                tables.port_id(&e.name).is_some(),
                "local {} no port",
                e.name
            ),
        }
    }
    for n in &tables.networks {
        assert!(n.vteps.windows(2).all(|w| w[0] < w[1]), "VTEPs not sorted");
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The topology as TOML text, every field explicit.
pub fn to_toml(t: &Topology) -> String {
    let mut s = String::new();
    s += &format!(
        "[node]\nname = {}\ndata_path_addr = \"{}\"\ndata_path_port = {}\n",
        q(&t.node.name),
        t.node.data_path_addr,
        t.node.data_path_port
    );
    if let Some(e) = &t.encryption {
        let keys: Vec<String> = e
            .keys
            .iter()
            .map(|k| {
                let hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
                format!("{{ tag = {}, key = \"{hex}\" }}", k.tag)
            })
            .collect();
        let transport = match e.transport {
            EspTransport::Ip => "ip",
            EspTransport::Udp => "udp",
        };
        s += &format!(
            "\n[encryption]\nkeys = [{}]\nprimary = {}\ntransport = \"{transport}\"\nudp_port = {}\n",
            keys.join(", "),
            e.primary,
            e.udp_port
        );
    }
    for n in &t.networks {
        s += &format!(
            "\n[[network]]\nname = {}\nvni = {}\nsubnet = \"{}\"\ngateway = \"{}\"\nmtu = {}\nencrypted = {}\n",
            q(&n.name),
            n.vni,
            n.subnet,
            n.gateway,
            n.mtu,
            n.encrypted
        );
    }
    for e in &t.endpoints {
        s += &format!(
            "\n[[endpoint]]\nname = {}\nnetwork = {}\nip = \"{}\"\nmac = \"{}\"\n",
            q(&e.name),
            q(&e.network),
            e.ip,
            e.mac
        );
        if let Some(v) = e.vtep {
            s += &format!("vtep = \"{v}\"\n");
        }
        if let Some(ns) = &e.netns {
            s += &format!("netns = {}\n", q(ns));
        }
        if let Some(iface) = &e.iface {
            s += &format!("iface = {}\n", q(iface));
        }
        if let Some(app) = &e.app {
            s += &format!("app = {}\n", q(&app.to_value()));
        }
    }
    s
}

/// The topology replay runs against in `pcap`: my-web.1 local, my-web.3 behind 192.0.2.11.
const REPLAY_TOPOLOGY: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

/// A scratch directory for this process, removed and re-made per input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("SWARMNET_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("swarmnet-fuzz-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("topology.toml"), REPLAY_TOPOLOGY).expect("topology");
        dir
    })
}

/// Removes the scratch directory of `pcap` (the corpus tests call it when done; a fuzzing
/// process leaves it to the end of the process, under `SWARMNET_FUZZ_TMP` or the temp dir).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// Pcap (or pcapng, or anything) input to replay. The first byte picks the port: even
/// `underlay`, odd `my-web.1`; the rest is the file.
pub fn pcap(data: &[u8]) {
    let Some((&ctl, file)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let input = dir.join("in.pcap");
    std::fs::File::create(&input)
        .and_then(|mut f| f.write_all(file))
        .expect("write input");
    let port = if ctl & 1 == 0 { "underlay" } else { "my-web.1" };
    let spec = swarmnet::replay::InputSpec {
        port: port.to_string(),
        path: input,
    };
    let run = |out: &str| {
        let out = dir.join(out);
        let _ = std::fs::remove_dir_all(&out);
        let r = swarmnet::replay::run(
            &dir.join("topology.toml"),
            std::slice::from_ref(&spec),
            &out,
        );
        (r, out)
    };
    let (first, out1) = run("out1");
    let (second, out2) = run("out2");
    match (first, second) {
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "replay errors differ");
            assert!(!a.to_string().is_empty());
        }
        (Ok(a), Ok(b)) => {
            assert_eq!(a.packets_in, b.packets_in);
            let c = &a.counters;
            let rx = if port == "underlay" {
                c.underlay.rx_packets
            } else {
                c.ports[0].rx_packets
            };
            assert_eq!(rx, a.packets_in, "every packet in is counted as received");
            let files = |d: &PathBuf| -> Vec<(String, Vec<u8>)> {
                let mut v: Vec<_> = std::fs::read_dir(d)
                    .expect("out dir")
                    .map(|e| {
                        let p = e.expect("entry").path();
                        let name = p.file_name().unwrap().to_string_lossy().into_owned();
                        (name, std::fs::read(&p).expect("read output"))
                    })
                    .collect();
                v.sort();
                v
            };
            let f1 = files(&out1);
            assert_eq!(f1, files(&out2), "replay is not deterministic");
            for (name, bytes) in &f1 {
                if name.ends_with(".pcap") && name != "underlay.pcap" {
                    check_pcap_frames(bytes);
                }
            }
        }
        (a, b) => panic!("replay gave {:?} then {:?}", a.is_ok(), b.is_ok()),
    }
}

fn check_pcap_frames(bytes: &[u8]) {
    let mut r = pcap_file::pcap::PcapReader::new(bytes).expect("replay writes pcap");
    while let Some(p) = r.next_packet() {
        let p = p.expect("replay writes whole packets");
        super::check_whole_frame(&p.data);
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// Bytes a client sends on 2377 after the TLS handshake, with or without a client
/// certificate: one length-prefixed JSON frame of `ClusterRequest`.
pub fn cluster_frame(data: &[u8]) {
    use swarmnet::api::frame::{read_frame, write_frame, FrameError, MAX_FRAME};
    let mut reader = data;
    let got: Result<ClusterRequest, FrameError> = runtime().block_on(read_frame(&mut reader));
    let declared = data
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let req = match got {
        Err(FrameError::TooLarge(n)) => {
            assert!(n > MAX_FRAME, "refused {n} bytes as too large");
            return;
        }
        Err(_) => return,
        Ok(req) => req,
    };
    let n = declared.expect("a decoded frame has a length");
    assert!(
        n <= MAX_FRAME && 4 + n <= data.len(),
        "decoded past the frame"
    );
    let mut buf = Vec::new();
    runtime()
        .block_on(write_frame(&mut buf, &req))
        .expect("re-encode");
    let mut r = &buf[..];
    let again: ClusterRequest = runtime()
        .block_on(read_frame(&mut r))
        .expect("a re-encoded request decodes");
    assert_eq!(
        serde_json::to_value(&again).expect("json"),
        serde_json::to_value(&req).expect("json"),
        "request changed meaning in a round trip"
    );
    // What an unauthenticated caller controls reaches the token parser and the CA.
    match req {
        ClusterRequest::Join { token, csr_pem, .. } => {
            join_token(token.as_bytes());
            csr_text(&csr_pem);
        }
        ClusterRequest::RenewCert { csr_pem } => csr_text(&csr_pem),
        _ => {}
    }
}

/// A join token as a user pastes it.
pub fn join_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = JoinToken::parse(text) {
        let canonical = t.to_string();
        // Base 36 is read in either case (documented); otherwise the text is the canonical one.
        assert!(
            canonical.eq_ignore_ascii_case(text.trim()),
            "a token parsed from a non-canonical text: {text:?} is {canonical}"
        );
        let again = JoinToken::parse(&canonical).expect("canonical token parses");
        assert_eq!(again, t, "token round trip");
        assert!(again.ct_eq(&t));
    }
}

struct Ca {
    ca: RootCa,
    ca_der: Vec<u8>,
}

fn test_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = RootCa::generate().expect("CA");
        let ca_der = ca.cert_der().expect("CA DER");
        Ca { ca, ca_der }
    })
}

/// A CSR: the first byte picks the role; the rest is PEM text, or DER wrapped in PEM when it
/// is not UTF-8 or does not look like PEM.
pub fn csr(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let text = match std::str::from_utf8(rest) {
        Ok(t) if t.contains("-----BEGIN") => t.to_string(),
        _ => pem_wrap("CERTIFICATE REQUEST", rest),
    };
    let role = if ctl & 1 == 0 {
        Role::Worker
    } else {
        Role::Manager
    };
    sign_and_check(&text, role);
}

fn csr_text(text: &str) {
    sign_and_check(text, Role::Worker);
}

fn sign_and_check(text: &str, role: Role) {
    let ca = test_ca();
    let Ok(cert_pem) = ca.ca.sign_csr(text, "fuzznode1", role, "fuzzswarm") else {
        return;
    };
    let id = ca::identity_from_pem(&cert_pem).expect("a signed certificate reads back");
    assert_eq!(id.node_id, "fuzznode1", "node ID from the CSR");
    assert_eq!(id.role, role, "role from the CSR");
    assert_eq!(id.swarm_id.as_deref(), Some("fuzzswarm"));
    // The certificate certifies the CSR's key and is issued by the CA.
    let der = ca::pem_to_der(&cert_pem).expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    // Read the CSR with the parser the signer used: PEM readers differ on what they tolerate
    // (found by the campaign: a form feed inside the base64 passes one and not the other).
    use rcgen::PublicKeyData;
    let csr = rcgen::CertificateSigningRequestParams::from_pem(text)
        .expect("the signer read this CSR a moment ago");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        csr.public_key.der_bytes(),
        "certificate for another key than the CSR's"
    );
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.ca_der).expect("CA");
    assert_eq!(cert.issuer(), ca_cert.subject());
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    pem_encode(label, der)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b.push('=');
            }
        }
    }
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s + &format!("-----END {label}-----\n")
}

/// A certificate a peer presents (DER), or PEM text a node reads from its state.
pub fn certificate(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ca::pem_to_der(text);
        if let Ok(id) = ca::identity_from_pem(text) {
            assert!(matches!(id.role, Role::Manager | Role::Worker));
        }
    }
    if let Ok(id) = ca::identity_from_der(data) {
        assert!(matches!(id.role, Role::Manager | Role::Worker));
        // PEM of the same bytes reads the same.
        let again = ca::identity_from_pem(&pem_encode("CERTIFICATE", data))
            .expect("PEM of a readable certificate");
        assert_eq!(again, id);
    }
}

/// A whole command line: arguments separated by NUL bytes (any bytes, not only UTF-8).
pub fn cli(data: &[u8]) {
    use clap::Parser;
    use swarmnet::cli::{swarm::SwarmCommand, Cli, Command};
    let args = std::iter::once(OsString::from("swarmnet")).chain(
        data.split(|b| *b == 0)
            .filter(|a| !data.is_empty() || !a.is_empty())
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    match Cli::try_parse_from(args) {
        Err(e) => {
            let _ = e.to_string();
            let _ = e.render().to_string();
        }
        Ok(cli) => {
            if let Command::Swarm(SwarmCommand::Init(a)) = &cli.command {
                if let Some(p) = a.data_path_port {
                    assert!((1024..=49151).contains(&p), "--data-path-port {p}");
                }
                if let Some(m) = a.default_addr_pool_mask_length {
                    assert!((1..=29).contains(&m), "--default-addr-pool-mask-length {m}");
                }
                if let Some(s) = a.key_rotation_interval {
                    assert!(
                        (1..=365 * 24 * 3600).contains(&s),
                        "--key-rotation-interval {s}"
                    );
                }
            }
        }
    }
}
