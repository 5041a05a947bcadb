//! Helpers shared by the integration tests: run the real `swarmnet` binary, read the pcaps it
//! writes, and keep its output in a temporary directory that goes away with the test.
//!
//! Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

/// The path of `rel` under the crate's `fixtures/` directory.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A directory under the system temp dir, unique to this process and call, removed (with its
/// content) when dropped, so a failing test leaves nothing behind either.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `swarmnet-TAG-PID-N`. `tag` only helps a reader of a leftover directory.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("swarmnet-{tag}-{}-{n}", std::process::id()));
        // A directory of the same name can only be left over from a killed run of a process
        // that had our pid: its content is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `swarmnet replay --topology TOPOLOGY --in PORT=FILE... --out-dir OUT_DIR` and returns
/// its stdout. Panics, showing stdout and stderr, if it does not exit successfully.
pub fn replay(topology: &Path, inputs: &[(&str, &Path)], out_dir: &Path) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmnet"));
    cmd.arg("replay").arg("--topology").arg(topology);
    for (port, file) in inputs {
        cmd.arg("--in").arg(format!("{port}={}", file.display()));
    }
    cmd.arg("--out-dir").arg(out_dir);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The link type in the header of the pcap file at `path`.
pub fn pcap_link_type(path: &Path) -> DataLink {
    open_pcap(path).header().datalink
}

/// Every packet of the pcap file at `path`, in file order: (timestamp, captured bytes).
pub fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let mut reader = open_pcap(path);
    let mut packets = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: packet {}: {e}", path.display(), packets.len()));
        packets.push((p.timestamp, p.data.into_owned()));
    }
    packets
}

fn open_pcap(path: &Path) -> PcapReader<BufReader<File>> {
    let file = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    PcapReader::new(BufReader::new(file))
        .unwrap_or_else(|e| panic!("{}: not a pcap file: {e}", path.display()))
}

/// Whether an executable named `name` is in a directory of `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}
