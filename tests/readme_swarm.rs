//! The README's swarm example, pasted as one block into bash, works: the daemons are waited
//! for, the second node joins, `node ls` shows both; then its networks example on that swarm.
//! Paths and addresses are moved to this test's own temporary directory and loopback range; the
//! commands are the README's.

use std::process::Command;

#[test]
fn the_readme_swarm_block_runs_as_pasted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## A swarm")
        .nth(1)
        .expect("README has a swarm section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the swarm section");
    let networks = readme
        .split("## Overlay networks in the swarm")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the networks section");
    let services = readme
        .split("## Services")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the services section");
    let block = format!("{block}{networks}{services}");
    let dir = tempfile::tempdir().unwrap();
    let block = block
        .replace("/tmp/", &format!("{}/", dir.path().display()))
        .replace("127.0.0.", "127.77.61.");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_swarmnet"))
        .parent()
        .unwrap()
        .to_path_buf();
    let script = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{block}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("This node joined a swarm as a manager."),
        "{stdout}"
    );
    let table = stdout
        .split("ID                            HOSTNAME")
        .nth(1)
        .and_then(|t| t.split("NETWORK ID").next())
        .unwrap_or_else(|| panic!("no node ls table:\n{stdout}"));
    assert_eq!(
        table.lines().filter(|l| l.contains(" Ready ")).count(),
        3,
        "{stdout}"
    );
    // The networks block: listed on the other manager, inspected, removed.
    let ls = stdout
        .split("NETWORK ID")
        .nth(1)
        .unwrap_or_else(|| panic!("no network ls table:\n{stdout}"));
    for name in ["docker_gwbridge", "ingress", "my-net2", "my-network"] {
        assert!(
            ls.contains(&format!(" {name} ")),
            "{name} not listed:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(r#"{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.99"}]}"#),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "my-network"),
        "rm prints the name: {stdout}"
    );
    assert!(
        table.contains("Leader") && table.contains("Reachable"),
        "{stdout}"
    );
    // The services block: 3/3, one task per node, answers across nodes.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" my-web ") && l.contains(" 3/3 ")),
        "{stdout}"
    );
    for node in ["node-1", "node-2", "node-3"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(" my-web.") && l.contains(&format!(" {node} "))),
            "no my-web task on {node}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("probe.")
            && l.contains("GET http://my-web:80/ (10.0.1.2): 200,")
            && l.contains(", from my-web.")),
        "{stdout}"
    );
    // The balancer's table: the three backends.
    let backends = stdout
        .split("SERVICE   NETWORK")
        .nth(1)
        .unwrap_or_else(|| panic!("no service backends table:\n{stdout}"));
    assert_eq!(
        backends
            .lines()
            .filter(|l| l.starts_with("my-web "))
            .count(),
        3,
        "{stdout}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a non-terminal log: {stderr}"
    );
}
