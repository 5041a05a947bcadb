//! `swarmnet replay` as a user runs it: the summary it prints and the errors it gives.

use std::path::Path;

mod common;
use common::{fixture, TempDir};
use std::process::{Command, Output};

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmnet"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run swarmnet")
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn prints_what_each_port_did() {
    let dir = TempDir::new("summary");
    let topo = s(&fixture("ping-vxlan/topology.toml"));
    let web1 = format!("my-web.1={}", s(&fixture("ping-vxlan/in/my-web.1.pcap")));
    let under = format!("underlay={}", s(&fixture("ping-vxlan/in/underlay.pcap")));
    let out = replay(&[
        "--topology",
        &topo,
        "--in",
        &web1,
        "--in",
        &under,
        "--out-dir",
        &s(dir.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("replayed 4 packets through node node-1"),
        "{stdout}"
    );
    let web1_line = stdout
        .lines()
        .find(|l| l.starts_with("my-web.1"))
        .expect("my-web.1 line");
    assert_eq!(
        web1_line.split_whitespace().collect::<Vec<_>>(),
        ["my-web.1", "2", "2"]
    );
    assert!(stdout.contains("drops: none"), "{stdout}");
    assert!(dir.path().join("underlay.pcap").exists() && dir.path().join("counters.json").exists());
}

#[test]
fn stale_outputs_of_an_earlier_run_are_removed() {
    let dir = TempDir::new("stale");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("underlay.pcap"), b"old").unwrap();
    let topo = s(&fixture("arp/topology.toml"));
    let web1 = format!("my-web.1={}", s(&fixture("arp/in/my-web.1.pcap")));
    let out = replay(&[
        "--topology",
        &topo,
        "--in",
        &web1,
        "--out-dir",
        &s(dir.path()),
    ]);
    assert!(out.status.success());
    assert!(
        !dir.path().join("underlay.pcap").exists(),
        "an output this run did not write survived"
    );
}

#[test]
fn unknown_port_lists_the_known_ones() {
    let dir = TempDir::new("port");
    let out_dir = dir.path().join("out");
    let topo = s(&fixture("ping-vxlan/topology.toml"));
    let input = format!("my-web.9={}", s(&fixture("ping-vxlan/in/my-web.1.pcap")));
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        &input,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(err.contains("unknown port \"my-web.9\""), "{err}");
    assert!(err.contains("my-web.1, my-web.2"), "{err}");
    // A remote endpoint is no local port either.
    let input = format!("my-web.3={}", s(&fixture("ping-vxlan/in/my-web.1.pcap")));
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        &input,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(err.contains("unknown port \"my-web.3\""), "{err}");
    assert!(
        !out_dir.exists(),
        "nothing is written when the inputs are refused"
    );
}

#[test]
fn unreadable_and_foreign_files_are_named() {
    let dir = TempDir::new("files");
    let topo = s(&fixture("ping-vxlan/topology.toml"));
    let missing = "underlay=/nonexistent/capture.pcap";
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        missing,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(
        err.contains("/nonexistent/capture.pcap") && err.contains("No such file"),
        "{err}"
    );
    let not_pcap = format!("underlay={topo}");
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        &not_pcap,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(err.contains("not a readable pcap file"), "{err}");
    // A raw-IPv4 capture cannot enter at an endpoint, which takes Ethernet.
    let raw = format!("my-web.1={}", s(&fixture("ping-vxlan/in/underlay.pcap")));
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        &raw,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(
        err.contains("link type RAW is not supported for port \"my-web.1\""),
        "{err}"
    );
    let twice = format!("underlay={}", s(&fixture("ping-vxlan/in/underlay.pcap")));
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        &twice,
        "--in",
        &twice,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(err.contains("port \"underlay\" is given twice"), "{err}");
}

#[test]
fn bad_arguments_and_topologies_are_refused_clearly() {
    let dir = TempDir::new("args");
    let topo = s(&fixture("ping-vxlan/topology.toml"));
    let err = failure(&replay(&[
        "--topology",
        &topo,
        "--in",
        "no-equals-sign",
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(err.contains("is not PORT=FILE"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.300\"\n",
    )
    .unwrap();
    let input = format!("underlay={}", s(&fixture("ping-vxlan/in/underlay.pcap")));
    let err = failure(&replay(&[
        "--topology",
        &s(&bad),
        "--in",
        &input,
        "--out-dir",
        &s(dir.path()),
    ]));
    assert!(
        err.contains(&format!("{}:3: node:", bad.display())),
        "{err}"
    );
}
