//! The daemon's API socket answers its owner only.

mod cluster;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

use cluster::{Node, BIN};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn socket_is_owner_only() {
    let node = Node::start("127.77.30.1");
    let meta = std::fs::metadata(&node.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let state = std::fs::metadata(node.state_dir()).unwrap();
    assert_eq!(
        state.permissions().mode() & 0o777,
        0o700,
        "state dir holds keys"
    );
}

#[test]
fn socket_refuses_other_users() {
    if !is_root() {
        eprintln!("SKIPPED socket_refuses_other_users: switching to another uid needs root");
        return;
    }
    let node = Node::start("127.77.31.1");
    // Let other users reach the socket file, so only its own mode stands in the way.
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        Command::new(BIN)
            .args(["-H", &node.host(), "node", "ls"])
            .uid(NOBODY)
            .gid(NOBODY)
            .env_remove("HOME")
            .output()
            .expect("run swarmnet as nobody")
    };
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied"), "{err}");

    // Even with the file mode loosened by hand, the daemon checks the caller's uid.
    std::fs::set_permissions(&node.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "permission denied: this swarmnet daemon's socket belongs to uid 0, you are uid 65534"
        ),
        "{err}"
    );
    // The owner is still served.
    assert!(node
        .fails(&["node", "ls"])
        .contains("This node is not part of a swarm"));
}

#[test]
fn the_cli_finds_the_daemon_through_swarmnet_host() {
    let node = Node::start("127.77.32.1");
    let out = Command::new(BIN)
        .args(["swarm", "init", "--advertise-addr", "127.77.32.1"])
        .env("SWARMNET_HOST", node.host())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -H wins over the environment.
    let out = Command::new(BIN)
        .args(["-H", &node.host(), "node", "ls", "-q"])
        .env("SWARMNET_HOST", "unix:///nonexistent/swarmnet.sock")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["node", "ls"])
        .env("SWARMNET_HOST", "unix:///nonexistent/swarmnet.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Cannot connect to the swarmnet daemon at unix:///nonexistent/swarmnet.sock"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["-H", "tcp://127.0.0.1:2375", "node", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only unix:///path/to/socket is supported"),
        "{err}"
    );
}
