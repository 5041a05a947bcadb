//! Numbers on the command line, as a user types them into the binary: too large or too small
//! gets clap's "invalid value" error naming the flag and the accepted range (exit status 2),
//! before anything is sent to a daemon; never a wrap, never a panic.

use std::process::Command;

fn swarmnet(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_swarmnet"))
        .args(args)
        // No daemon is involved: a refused value stops before the socket is opened.
        .env(
            "SWARMNET_HOST",
            "unix:///nonexistent/swarmnet-cli-test.sock",
        )
        .output()
        .expect("run swarmnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], flag: &str, range: &str) {
    let (code, err) = swarmnet(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(err.contains("invalid value"), "{args:?}: {err}");
    assert!(err.contains(flag), "{args:?}: {err}");
    assert!(err.contains(range), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn key_rotation_interval_never_wraps() {
    // The campaign's finding: a panic in debug builds, 3584 s in release.
    for v in ["18446744073709551615h", "5124095576030432h", "8761h", "0s"] {
        refused(
            &["swarm", "init", "--key-rotation-interval", v],
            "--key-rotation-interval",
            "from 1s to 8760h",
        );
    }
}

#[test]
fn ports_and_lengths_out_of_range_are_refused() {
    for v in [
        "0",
        "80",
        "49152",
        "65536",
        "4294967296",
        "18446744073709551616",
    ] {
        refused(
            &["swarm", "init", "--data-path-port", v],
            "--data-path-port",
            "1024..=49151",
        );
    }
    for v in ["0", "30", "4294967296"] {
        refused(
            &["swarm", "init", "--default-addr-pool-mask-length", v],
            "--default-addr-pool-mask-length",
            "1..=29",
        );
    }
    refused(
        &["swarm", "init", "--advertise-addr", "127.0.0.1:65536"],
        "--advertise-addr",
        "1..=65535",
    );
    refused(
        &[
            "swarm",
            "join",
            "--token",
            "x",
            "--listen-addr",
            "0.0.0.0:0",
            "127.0.0.1:2377",
        ],
        "--listen-addr",
        "1..=65535",
    );
    refused(
        &["run", "--topology", "t.toml", "--workers", "0"],
        "--workers",
        "1..=256",
    );
    refused(
        &["run", "--topology", "t.toml", "--workers", "65536"],
        "--workers",
        "1..=256",
    );
}

#[test]
fn values_in_range_get_past_parsing() {
    // Accepted by clap, so the command goes on to look for the daemon, which is not there.
    let (code, err) = swarmnet(&[
        "swarm",
        "init",
        "--data-path-port",
        "49151",
        "--key-rotation-interval",
        "8760h",
        "--default-addr-pool-mask-length",
        "29",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("invalid value"), "{err}");
}
