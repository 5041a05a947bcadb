//! Route tests on a stand-in backend.

use super::*;
use crate::api::docker::Host;
use crate::api::{LocalInfo, Reply, Request, Response, Role};
use crate::api::{ManagerStatus, NodeState, NodeStatus, Reachability};

/// A one-manager swarm; records the operations it is asked for.
#[derive(Default)]
struct Fake {
    ops: std::sync::Mutex<Vec<String>>,
}

fn node() -> crate::api::Node {
    crate::api::Node {
        id: "n1aaaaaaaaaaaaaaaaaaaaaaa".into(),
        hostname: "vm".into(),
        role: Role::Manager,
        availability: crate::api::Availability::Active,
        status: NodeStatus {
            state: NodeState::Ready,
            addr: "127.0.0.1".into(),
        },
        manager_status: Some(ManagerStatus {
            leader: true,
            reachability: Reachability::Reachable,
            addr: "127.0.0.1:2377".into(),
        }),
        data_path_addr: "127.0.0.1".into(),
        cluster_addr: "127.0.0.1:2377".into(),
        gossip_addr: String::new(),
        created_at: "2026-12-03T16:43:30.402696648Z".into(),
        updated_at: "2026-12-03T16:44:04.027353341Z".into(),
    }
}

fn stats() -> crate::api::stats::Stats {
    use crate::api::stats::{NetworkStats, Stats, TaskStats};
    Stats {
        node_name: "vm".into(),
        data_path: true,
        tasks: vec![TaskStats {
            task: "web.1.abc".into(),
            service: "web".into(),
            network: "my-net".into(),
            ..TaskStats::default()
        }],
        networks: vec![NetworkStats {
            network: "my-net".into(),
            ..NetworkStats::default()
        }],
        ..Stats::default()
    }
}

impl Backend for Fake {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
        self.ops.lock().unwrap().push(format!("{req:?}"));
        let reply = match req {
            Request::Info => Ok(Reply::Info(LocalInfo {
                local_node_state: "active".into(),
                node_id: Some(node().id),
                role: Some(Role::Manager),
                node_addr: Some("127.0.0.1".into()),
                remote_managers: vec!["127.0.0.1:2377".into()],
                encryption_key_tags: vec![],
                raft_leader: None,
                raft_voters: 1,
                raft_applied: None,
                raft_snapshot: None,
            })),
            Request::NodeList => Ok(Reply::Nodes(vec![node()])),
            Request::NodeInspect { id } if node().id.starts_with(&id) => Ok(Reply::Node(node())),
            Request::NodeInspect { id } => Err(ApiError::not_found(format!("node {id} not found"))),
            Request::SwarmCa => Ok(Reply::Text("not a pem".into())),
            Request::LocalStats => Ok(Reply::Stats(Box::new(stats()))),
            _ => Ok(Reply::Done),
        };
        async move { reply }
    }
}

fn router() -> Router<Fake> {
    Router::new(
        Fake::default(),
        Host {
            hostname: "vm".into(),
            kernel_version: "6".into(),
            operating_system: "Linux".into(),
            ncpu: 2,
            mem_total: 1,
        },
    )
}

async fn call(
    r: &Router<Fake>,
    method: Method,
    target: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let a = r.handle(&method, target, body.as_bytes()).await;
    let v = serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null);
    (a.status.as_u16(), v)
}

#[tokio::test]
async fn ping_says_the_swarm_state() {
    let a = router().handle(&Method::HEAD, "/_ping", b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.contains(&("Swarm", "active/manager".to_string())));
}

#[tokio::test]
async fn unknown_routes_and_versions() {
    let r = router();
    assert_eq!(
        call(&r, Method::GET, "/v1.41/nothing/json", "").await,
        (404, serde_json::json!({"message": "page not found"}))
    );
    // Docker's routes swarmnet has no meaning for: 501, saying what to use instead.
    for (route, words) in [
        ("/v1.41/images/json", "swarmnet has no images"),
        ("/v1.41/containers/create", "swarmnet runs no containers"),
        ("/v1.41/volumes", "swarmnet keeps no volumes"),
        ("/v1.41/build", "swarmnet has no images"),
        ("/v1.41/plugins", "swarmnet has no plugins"),
    ] {
        let (code, v) = call(&r, Method::POST, route, "").await;
        assert_eq!(code, 501, "{route}");
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{route}: {v}"
        );
    }
    assert_eq!(call(&r, Method::DELETE, "/info", "").await.0, 404);
    let (code, v) = call(&r, Method::GET, "/v1.99/info", "").await;
    assert_eq!(code, 400);
    assert!(v["message"].as_str().unwrap().contains("too new"));
    assert_eq!(call(&r, Method::GET, "/v1.41/info", "").await.0, 200);
    assert_eq!(call(&r, Method::GET, "/info", "").await.0, 200);
}

#[tokio::test]
async fn node_filters() {
    let r = router();
    let q = |f: &str| {
        format!(
            "/v1.41/nodes?filters={}",
            crate::api::client::query_value(f)
        )
    };
    let (code, v) = call(&r, Method::GET, &q(r#"{"role":{"manager":true}}"#), "").await;
    assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(1)));
    let (_, v) = call(&r, Method::GET, &q(r#"{"role":{"worker":true}}"#), "").await;
    assert_eq!(v, serde_json::json!([]));
    let (_, v) = call(
        &r,
        Method::GET,
        &q(r#"{"name":{"v":true},"id":{"n1":true}}"#),
        "",
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (_, v) = call(
        &r,
        Method::GET,
        &q(r#"{"membership":{"accepted":true}}"#),
        "",
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (_, v) = call(&r, Method::GET, &q(r#"{"label":{"zone":true}}"#), "").await;
    assert_eq!(v, serde_json::json!([]), "no node has a label");
    let (code, v) = call(&r, Method::GET, &q(r#"{"role":{"boss":true}}"#), "").await;
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("Invalid role filter value boss"))
    );
    let (code, v) = call(&r, Method::GET, &q(r#"{"colour":{"red":true}}"#), "").await;
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("Invalid filter 'colour'"))
    );
    assert_eq!(call(&r, Method::GET, &q("{"), "").await.0, 400);
}

#[tokio::test]
async fn node_update_checks_the_version_and_maps_changes_to_operations() {
    let r = router();
    let (_, n) = call(&r, Method::GET, "/nodes/n1", "").await;
    let version = n["Version"]["Index"].as_u64().unwrap();
    // A spec that changes nothing, from a stale read: refused here.
    let same = r#"{"Labels":{},"Role":"manager","Availability":"active"}"#;
    let (code, v) = call(&r, Method::POST, "/nodes/n1/update?version=1", same).await;
    assert_eq!(code, 500);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("update out of sequence"));
    assert_eq!(
        call(
            &r,
            Method::POST,
            &format!("/nodes/n1/update?version={version}"),
            same
        )
        .await
        .0,
        200
    );
    // Changes go to the manager as one operation, which checks the version after the role
    // change's own refusals.
    let target = format!("/nodes/n1/update?version={version}");
    let id = "n1aaaaaaaaaaaaaaaaaaaaaaa";
    for (spec, op) in [
        (
            r#"{"Labels":{},"Role":"worker","Availability":"drain"}"#,
            format!("NodeSetRole {{ id: \"{id}\", role: Worker, availability: Some(Drain), version: Some({version}) }}"),
        ),
        (
            r#"{"Labels":{},"Role":"worker","Availability":"active"}"#,
            format!("NodeSetRole {{ id: \"{id}\", role: Worker, availability: None, version: Some({version}) }}"),
        ),
        (
            r#"{"Labels":{},"Role":"manager","Availability":"pause"}"#,
            format!("NodeUpdate {{ id: \"{id}\", availability: Pause, version: Some({version}) }}"),
        ),
    ] {
        r.backend.ops.lock().unwrap().clear();
        assert_eq!(call(&r, Method::POST, &target, spec).await.0, 200, "{spec}");
        let ops = r.backend.ops.lock().unwrap().clone();
        let changes: Vec<_> = ops.iter().filter(|o| o.starts_with("Node") && !o.starts_with("NodeInspect")).collect();
        assert_eq!(changes, [&op], "{spec}");
    }
    let labels = r#"{"Labels":{"a":"b"},"Role":"manager","Availability":"active"}"#;
    assert_eq!(call(&r, Method::POST, &target, labels).await.0, 400);
    let (code, v) = call(&r, Method::POST, &target, "{\"Role\":").await;
    assert_eq!(code, 400);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON body"));
    assert_eq!(call(&r, Method::GET, "/nodes/zz", "").await.0, 404);
    // Segments are percent-decoded.
    assert_eq!(call(&r, Method::GET, "/nodes/%6E1", "").await.0, 200);
}

#[tokio::test]
async fn swarm_routes_map_to_operations() {
    let r = router();
    assert_eq!(
        call(&r, Method::POST, "/swarm/leave?force=1", "").await.0,
        200
    );
    assert_eq!(call(&r, Method::POST, "/swarm/init", "\"x\"").await.0, 400);
    assert_eq!(
        call(&r, Method::POST, "/swarm/join", r#"{"JoinToken":"x"}"#)
            .await
            .0,
        400
    );
    let ops = r.backend.ops.lock().unwrap().join(";");
    assert!(ops.contains("SwarmLeave { force: true }"), "{ops}");
}

#[tokio::test]
async fn stats_keeps_the_named_rows_and_refuses_an_unknown_name() {
    let r = router();
    let (code, v) = call(&r, Method::GET, "/swarmnet/stats", "").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    let (code, v) = call(&r, Method::GET, "/swarmnet/stats?name=my-net", "").await;
    assert_eq!(code, 200, "{v}");
    assert!(v["tasks"].as_array().unwrap().is_empty());
    assert_eq!(v["networks"][0]["network"], "my-net");
    // `docker stats` asks for a container's stats: the answer names swarmnet's command.
    let (code, v) = call(&r, Method::GET, "/v1.41/containers/abc/stats", "").await;
    assert_eq!(code, 501);
    assert!(
        v["message"].as_str().unwrap().contains("`swarmnet stats`"),
        "{v}"
    );
    let (code, v) = call(&r, Method::GET, "/swarmnet/stats?name=web&name=x%20y", "").await;
    assert_eq!(code, 404);
    assert_eq!(
        v["message"],
        "no such network, service or task on this node: x y"
    );
}
