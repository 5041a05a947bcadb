//! The cluster port judges callers by their certificates, not by what they say.
//! The test process plays a node: it joins over the real protocol and then calls the manager
//! with the certificate it was given.

mod cluster;

use cluster::Node;
use swarmnet::api::{ErrorKind, Reply, Request, Role, NOT_A_MANAGER};
use swarmnet::control::ca::{identity_from_pem, new_key_and_csr, NodeCredentials};
use swarmnet::control::rpc::{self, ClusterReply, ClusterRequest, RpcError};
use swarmnet::control::tls;
use swarmnet::control::token::JoinToken;

/// Joins `manager` with `token` from the test process; returns the credentials and CA.
async fn join(manager: &str, token: &str) -> (NodeCredentials, String) {
    let parsed = JoinToken::parse(token).unwrap();
    let ca_pem = rpc::fetch_root_ca(manager, &parsed).await.unwrap();
    let (key_pem, csr_pem) = new_key_and_csr().unwrap();
    let request = ClusterRequest::Join {
        token: token.to_string(),
        csr_pem,
        hostname: "test-process".into(),
        advertise_addr: "127.77.20.9:2377".into(),
        listen_addr: "127.77.20.9:2377".into(),
        data_path_addr: "127.77.20.9".into(),
        availability: Default::default(),
    };
    let config = tls::client_config(&ca_pem, None).unwrap();
    let reply = rpc::call(manager, config, &request).await.unwrap();
    let ClusterReply::Joined { cert_pem, .. } = reply else {
        panic!("unexpected reply {reply:?}");
    };
    (NodeCredentials { cert_pem, key_pem }, ca_pem)
}

#[tokio::test]
async fn role_comes_from_the_certificate() {
    let n1 = Node::start("127.77.20.1");
    n1.init();
    let addr = n1.addr();

    // A worker certificate: manager operations are refused with Docker's message.
    let (worker, ca_pem) = join(&addr, &n1.token("worker")).await;
    assert_eq!(
        identity_from_pem(&worker.cert_pem).unwrap().role,
        Role::Worker
    );
    let config = tls::client_config(&ca_pem, Some(&worker)).unwrap();
    let err = rpc::call(
        &addr,
        config.clone(),
        &ClusterRequest::Api(Request::NodeList),
    )
    .await
    .unwrap_err();
    match err {
        RpcError::Remote(e) => assert_eq!(e.message, NOT_A_MANAGER),
        other => panic!("expected a refusal, got {other}"),
    }
    // ... but its heartbeat is accepted (it is a member).
    let hb = rpc::call(
        &addr,
        config,
        &ClusterRequest::Heartbeat {
            report: Box::default(),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(
            hb,
            ClusterReply::Heartbeat {
                role: Role::Worker,
                ..
            }
        ),
        "{hb:?}"
    );

    // No certificate at all: only the CA and joining are allowed.
    let anonymous = tls::client_config(&ca_pem, None).unwrap();
    for request in [
        ClusterRequest::Api(Request::NodeList),
        ClusterRequest::Heartbeat {
            report: Box::default(),
        },
    ] {
        match rpc::call(&addr, anonymous.clone(), &request)
            .await
            .unwrap_err()
        {
            RpcError::Remote(e) => assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}"),
            other => panic!("expected a refusal, got {other}"),
        }
    }

    // A manager certificate: allowed.
    let (manager, _) = join(&addr, &n1.token("manager")).await;
    assert_eq!(
        identity_from_pem(&manager.cert_pem).unwrap().role,
        Role::Manager
    );
    let config = tls::client_config(&ca_pem, Some(&manager)).unwrap();
    let reply = rpc::call(&addr, config, &ClusterRequest::Api(Request::NodeList))
        .await
        .unwrap();
    let ClusterReply::Api(Reply::Nodes(nodes)) = reply else {
        panic!("unexpected reply {reply:?}");
    };
    assert_eq!(nodes.len(), 3);
    // It holds a manager certificate but never asked to join Raft: not a voter, so its
    // MANAGER STATUS is not Reachable although it was admitted a moment ago.
    let manager_id = identity_from_pem(&manager.cert_pem).unwrap().node_id;
    let line = n1.node_line(&manager_id).unwrap();
    assert!(line.ends_with("Unreachable"), "{line}");

    // Demoted, the same still-valid manager certificate grants nothing any more.
    n1.ok(&["node", "demote", &manager_id]);
    let config = tls::client_config(&ca_pem, Some(&manager)).unwrap();
    match rpc::call(&addr, config, &ClusterRequest::Api(Request::NodeList))
        .await
        .unwrap_err()
    {
        RpcError::Remote(e) => assert_eq!(e.message, NOT_A_MANAGER),
        other => panic!("expected a refusal, got {other}"),
    }
}

/// One TLS connection without a client certificate that announces a 16 MiB frame and then
/// sends 1 MiB of it, as a hostile client would; returns when the manager closes it (or after
/// 10 s).
async fn oversized_preauth_frame(addr: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.ok()?;
        let config = tls::bootstrap_client_config().ok()?;
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(tls::manager_server_name(), tcp)
            .await
            .ok()?;
        stream
            .write_all(&(16u32 * 1024 * 1024).to_be_bytes())
            .await
            .ok()?;
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if stream.write_all(&junk).await.is_err() {
                break;
            }
        }
        let mut sink = [0u8; 64];
        let _ = stream.read(&mut sink).await;
        Some(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await;
}

/// Waves of clients without a certificate announcing 16 MiB frames: the manager refuses the
/// frames before buffering them, holds few such connections at a time, keeps its memory, and
/// still admits a real node afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_clients_cannot_exhaust_a_managers_memory() {
    let n1 = Node::start("127.77.22.1");
    n1.init();
    let before = n1.rss_kib().expect("daemon RSS");
    let mut peak = before;
    for _wave in 0..3 {
        let clients: Vec<_> = (0..200)
            .map(|_| tokio::spawn(oversized_preauth_frame(n1.addr())))
            .collect();
        for client in clients {
            let _ = client.await;
            peak = peak.max(n1.rss_kib().unwrap_or(0));
        }
    }
    let after = n1.rss_kib().expect("daemon RSS");
    println!("manager RSS under 3 x 200 oversized frames: before {before} KiB, peak {peak} KiB, after {after} KiB");
    // 600 connections of 16 MiB each would be ~9.6 GiB if buffered; allow 64 MiB of noise.
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} KiB to a peak of {peak} KiB (after: {after} KiB)"
    );
    // A legitimate join still works.
    let n2 = Node::start("127.77.22.2");
    let out = n2.join(&n1.token("worker"), &n1);
    assert!(out.status.success(), "{}", cluster::stderr(&out));
    // And a well-formed request without a certificate still gets its answer.
    let token = JoinToken::parse(&n1.token("worker")).unwrap();
    rpc::fetch_root_ca(&n1.addr(), &token).await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_swarm_is_rejected_in_the_handshake() {
    let n1 = Node::start("127.77.21.1");
    let n2 = Node::start("127.77.21.2");
    n1.init();
    n2.ok(&["swarm", "init", "--advertise-addr", "127.77.21.2"]);
    // A manager certificate of swarm 2, presented to swarm 1.
    let (foreign, foreign_ca) = join(&n2.addr(), &n2.token("manager")).await;
    let (_, ca1) = join(&n1.addr(), &n1.token("worker")).await;
    assert_ne!(foreign_ca, ca1);
    let config = tls::client_config(&ca1, Some(&foreign)).unwrap();
    let err = rpc::call(&n1.addr(), config, &ClusterRequest::Api(Request::NodeList))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, RpcError::Remote(_)),
        "the handshake itself must fail, got an answer: {err}"
    );
    // And a node trusting swarm 2's CA does not accept swarm 1's manager.
    let config = tls::client_config(&foreign_ca, Some(&foreign)).unwrap();
    let err = rpc::call(
        &n1.addr(),
        config,
        &ClusterRequest::Heartbeat {
            report: Box::default(),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RpcError::Handshake { .. } | RpcError::Frame { .. }),
        "{err}"
    );
}
