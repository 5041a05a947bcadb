//! Named network namespaces for tasks: creation, ownership markers, cleanup, and entering one
//! on a thread.
//!
//! Namespaces are managed with iproute2 (`ip netns`), so they show up where operators look
//! (`ip netns list`, `ip netns exec`). Every namespace swarmnet creates gets a marker file naming
//! the owning process, so a later run can tell its own stale leftovers (owner dead) from
//! namespaces that belong to someone else (never touched).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// Where swarmnet keeps its ownership markers.
pub const MARKER_DIR: &str = "/run/swarmnet/netns";

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip` (iproute2 is required): {0}")]
    NoIp(io::Error),
    #[error("network namespace {0} exists and was not created by swarmnet; remove it (ip netns del {0}) or choose another `netns` for the endpoint")]
    Foreign(String),
    #[error("network namespace {name} is in use by a running swarmnet (pid {pid})")]
    InUse { name: String, pid: u32 },
    #[error("cannot enter network namespace {name}: {source}")]
    Enter { name: String, source: io::Error },
    #[error("{path}: {source}")]
    Marker { path: String, source: io::Error },
}

/// Runs `ip ARGS...`, returning its stdout or its stderr as the error.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::NoIp)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn marker(name: &str) -> PathBuf {
    Path::new(MARKER_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Whether `pid` is a running swarmnet (not merely a live process that reused the pid of
/// one that crashed).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
        .is_ok_and(|comm| comm.trim_end() == env!("CARGO_PKG_NAME"))
}

/// A namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct OwnedNetns {
    name: String,
}

impl OwnedNetns {
    /// Creates namespace `name`, first removing a stale one left by a swarmnet that died.
    pub fn create(name: &str) -> Result<OwnedNetns, NetnsError> {
        let m = marker(name);
        if exists(name) {
            match std::fs::read_to_string(&m)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                Some(pid) if alive(pid) => {
                    return Err(NetnsError::InUse {
                        name: name.to_string(),
                        pid,
                    });
                }
                Some(pid) => {
                    tracing::warn!(
                        netns = name,
                        pid,
                        "removing a namespace left by a swarmnet that exited uncleanly"
                    );
                    ip(&["netns", "del", name])?;
                }
                None => return Err(NetnsError::Foreign(name.to_string())),
            }
        }
        let merr = |source| NetnsError::Marker {
            path: m.display().to_string(),
            source,
        };
        std::fs::create_dir_all(MARKER_DIR).map_err(merr)?;
        std::fs::write(&m, format!("{}\n", std::process::id())).map_err(merr)?;
        if let Err(e) = ip(&["netns", "add", name]) {
            let _ = std::fs::remove_file(&m);
            return Err(e);
        }
        Ok(OwnedNetns {
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete namespace");
        }
        let _ = std::fs::remove_file(marker(&self.name));
    }
}

/// Runs `f` on a new thread that has entered namespace `name`, and returns its result.
/// The caller's own namespace is never changed.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let file = File::open(path(name)).map_err(|source| NetnsError::Enter {
        name: name.to_string(),
        source,
    })?;
    let handle = std::thread::spawn(move || -> io::Result<T> {
        enter(&file)?;
        Ok(f())
    });
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(NetnsError::Enter {
            name: name.to_string(),
            source,
        }),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Moves the calling thread into the namespace open as `file`.
pub fn enter(file: &File) -> io::Result<()> {
    // SAFETY: setns takes a namespace fd we hold open and a constant flag; it affects only the
    // calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True when this process may manage network devices and namespaces.
pub fn have_net_admin() -> bool {
    // CAP_NET_ADMIN is bit 12 of the effective set in /proc/self/status.
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}
