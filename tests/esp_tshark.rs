//! tshark, an independent decoder, decrypts what swarmnet puts on the underlay of an encrypted
//! network when given the node's SA table, and finds the VXLAN and the task's packet inside.
//! Skipped, loudly, when tshark is not installed (scripts/test.sh installs it as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use swarmnet::dataplane::Tables;
use swarmnet::replay::{self, InputSpec};
use swarmnet::topology::Topology;

fn tshark_available() -> bool {
    Command::new("tshark").arg("--version").output().is_ok()
}

/// Wireshark's `esp_sa` UAT records for every SA of the node: protocol, source, destination,
/// SPI, encryption, key (the 16-byte key followed by the 4-byte salt, RFC 4106), authentication
/// (NULL: AES-GCM authenticates itself), authentication key.
fn esp_sa_records(tables: &Tables) -> Vec<String> {
    let esp = tables.esp.as_ref().expect("an encrypted topology");
    esp.sas()
        .iter()
        .map(|(sa, key)| {
            let mut material: Vec<u8> = key.to_vec();
            material.extend_from_slice(&sa.salt());
            let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "\"IPv4\",\"{}\",\"{}\",\"0x{:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{hex}\",\"NULL\",\"\"",
                sa.src, sa.dst, sa.spi
            )
        })
        .collect()
}

fn replay_to_temp(case: &str) -> (PathBuf, Tables) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(case);
    let topology = dir.join("topology.toml");
    let mut inputs: Vec<InputSpec> = std::fs::read_dir(dir.join("in"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| InputSpec {
            port: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path,
        })
        .collect();
    inputs.sort_by(|a, b| a.port.cmp(&b.port));
    let out = std::env::temp_dir().join(format!("swarmnet-tshark-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    replay::run(&topology, &inputs, &out).expect("replay");
    let tables = Tables::from_topology(&Topology::load(&topology).unwrap());
    (out, tables)
}

fn decode(case: &str, outer: &str) {
    if !tshark_available() {
        eprintln!("SKIPPED {case}: tshark is not installed (scripts/test.sh installs it as root)");
        return;
    }
    let (out, tables) = replay_to_temp(case);
    let tables = Arc::new(tables);
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(out.join("underlay.pcap"))
        .args(["-o", "esp.enable_encryption_decode:TRUE"]);
    for record in esp_sa_records(&tables) {
        cmd.arg("-o").arg(format!("uat:esp_sa:{record}"));
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.protocols",
        "-e",
        "esp.spi",
        "-e",
        "esp.sequence",
        "-e",
        "vxlan.vni",
        "-e",
        "ip.src",
        "-e",
        "icmp.seq",
    ]);
    let output = cmd.output().expect("run tshark");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let spi = tables
        .esp
        .as_ref()
        .unwrap()
        .outbound([192, 0, 2, 11].into())
        .unwrap()
        .spi;
    for (i, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(
            f[0],
            format!("raw:ip:{outer}esp:udp:vxlan:eth:ethertype:ip:icmp:data"),
            "tshark decrypted the ESP and decoded the VXLAN inside: {line}"
        );
        assert_eq!(f[1], format!("0x{spi:08x}"), "{line}");
        assert_eq!(f[2], (i + 1).to_string(), "sequence number: {line}");
        assert_eq!(f[3], "4097", "VNI: {line}");
        assert_eq!(
            f[4], "192.0.2.10,10.0.9.2",
            "outer and inner source: {line}"
        );
        assert_eq!(f[5], (i + 1).to_string(), "ICMP sequence: {line}");
    }
}

#[test]
fn tshark_decrypts_esp() {
    decode("esp-ping", "");
}

#[test]
fn tshark_decrypts_esp_in_udp() {
    decode("esp-udp", "udp:udpencap:");
}

#[test]
fn tshark_sees_only_ciphertext_without_the_keys() {
    if !tshark_available() {
        eprintln!("SKIPPED: tshark is not installed");
        return;
    }
    let (out, _) = replay_to_temp("esp-ping");
    let output = Command::new("tshark")
        .arg("-r")
        .arg(out.join("underlay.pcap"))
        .args(["-T", "fields", "-e", "frame.protocols"])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_dir_all(&out);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l == "raw:ip:esp"), "{text}");
}
