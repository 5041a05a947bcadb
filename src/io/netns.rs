//! Named network namespaces for tasks: creation, ownership markers, cleanup, and entering one
//! on a thread.
//!
//! Namespaces are managed with iproute2 (`ip netns`), so they show up where operators look
//! (`ip netns list`, `ip netns exec`). Every namespace swarmnet creates gets a marker file naming
//! the owning process, so a later run can tell its own stale leftovers (owner dead) from
//! namespaces that belong to someone else (never touched).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// Where swarmnet keeps its ownership markers.
pub const MARKER_DIR: &str = "/run/swarmnet/netns";

/// Where iproute2 looks for a namespace's own /etc files (`ip netns exec` binds
/// `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`); swarmnet's task processes and
/// `exec` do the same.
pub const ETC_NETNS_DIR: &str = "/etc/netns";

/// The lock file held while a namespace is claimed (beside `MARKER_DIR`, so no marker name
/// can be it).
const CLAIM_LOCK: &str = "/run/swarmnet/netns.lock";

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
    #[error("cannot claim a network namespace: {0}")]
    Claim(String),
    #[error("cannot run {program:?} in network namespace {name}: {reason}")]
    Exec {
        name: String,
        program: String,
        reason: String,
    },
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

/// When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since boot), if it
/// runs. With the pid it names one process for good: a pid reused after a crash has another.
fn start_time(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // "PID (COMM) STATE ..." where COMM may hold spaces and parentheses: fields after the last
    // ')' start with the third.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What a marker says: the owner's pid and, when written by this version, its start time.
fn parse_marker(text: &str) -> Option<(u32, Option<u64>)> {
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let started = fields.next().and_then(|f| f.parse().ok());
    Some((pid, started))
}

/// Whether the owner a marker names still runs: the same pid started at the same time (a
/// marker without a start time: the pid runs).
fn alive(pid: u32, started: Option<u64>) -> bool {
    match (start_time(pid), started) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct OwnedNetns {
    name: String,
}

impl OwnedNetns {
    /// Creates namespace `name`, first removing a stale one left by a swarmnet that died.
    ///
    /// The check of the marker, the marker's writing and `ip netns add` form one claim under a
    /// lock of the marker directory, so of two processes claiming the same name at once one
    /// wins and the other finds the winner's marker and touches nothing.
    pub fn create(name: &str) -> Result<OwnedNetns, NetnsError> {
        let _claim = super::lock::FileLock::wait(Path::new(CLAIM_LOCK))
            .map_err(|e| NetnsError::Claim(e.to_string()))?;
        let m = marker(name);
        if exists(name) {
            match std::fs::read_to_string(&m)
                .ok()
                .as_deref()
                .and_then(parse_marker)
            {
                Some((pid, started)) if alive(pid, started) => {
                    return Err(NetnsError::InUse {
                        name: name.to_string(),
                        pid,
                    });
                }
                Some((pid, _)) => {
                    tracing::warn!(
                        netns = name,
                        pid,
                        "removing a namespace left by a swarmnet that exited uncleanly"
                    );
                    ip(&["netns", "del", name])?;
                    remove_etc(name);
                }
                None => return Err(NetnsError::Foreign(name.to_string())),
            }
        }
        let merr = |source| NetnsError::Marker {
            path: m.display().to_string(),
            source,
        };
        std::fs::create_dir_all(MARKER_DIR).map_err(merr)?;
        let me = std::process::id();
        let started = start_time(me).map_or(String::new(), |t| format!(" {t}"));
        std::fs::write(&m, format!("{me}{started}\n")).map_err(merr)?;
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

impl OwnedNetns {
    /// Gives the namespace its own resolv.conf naming `resolver` (see `resolv_conf_text`),
    /// in `/etc/netns/NAME/resolv.conf`: task processes, `exec_in` and `ip netns exec` see it
    /// as their /etc/resolv.conf; the host's is never touched. Removed with the namespace.
    pub fn set_resolv_conf(&self, resolver: IpAddr) -> Result<(), NetnsError> {
        let dir = Path::new(ETC_NETNS_DIR).join(&self.name);
        let err = |path: &Path, source| NetnsError::Marker {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        // Written aside and renamed, so a reader never sees half a file.
        let tmp = dir.join(".resolv.conf.swarmnet");
        std::fs::write(&tmp, resolv_conf_text(resolver)).map_err(|e| err(&tmp, e))?;
        let path = resolv_conf_path(&self.name);
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete namespace");
        }
        remove_etc(&self.name);
        let _ = std::fs::remove_file(marker(&self.name));
    }
}

/// Removes the resolv.conf swarmnet wrote for namespace `name` (and its directory once empty).
fn remove_etc(name: &str) {
    let _ = std::fs::remove_file(resolv_conf_path(name));
    let _ = std::fs::remove_dir(Path::new(ETC_NETNS_DIR).join(name));
}

/// `/etc/netns/NAME/resolv.conf`.
pub fn resolv_conf_path(name: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(name).join("resolv.conf")
}

/// What a task sees in /etc/resolv.conf: the node's resolver only, no search domains, and
/// Docker's `options ndots:0` (every name is tried as it is first, so `my-web` is asked as
/// `my-web.`, never with a host's search domain appended).
pub fn resolv_conf_text(resolver: IpAddr) -> String {
    format!(
        "# written by swarmnet: the node's embedded DNS\nnameserver {resolver}\noptions ndots:0\n"
    )
}

/// A namespace's own resolv.conf, bound over /etc/resolv.conf in a child between fork and
/// exec (in a mount namespace of the child's own). Prepared before the fork so the child only
/// makes async-signal-safe calls.
#[derive(Debug)]
pub struct ResolvConfBind {
    source: CString,
}

impl ResolvConfBind {
    /// The bind for namespace `name`, if it has its own resolv.conf (see
    /// `OwnedNetns::set_resolv_conf`). None as well when the host has no /etc/resolv.conf to
    /// bind over (nothing to hide; the task then has no resolver configured).
    pub fn for_netns(name: &str) -> Option<ResolvConfBind> {
        let source = resolv_conf_path(name);
        if !source.is_file() {
            return None;
        }
        if !Path::new("/etc/resolv.conf").exists() {
            tracing::warn!(
                netns = name,
                "the host has no /etc/resolv.conf: tasks get no resolver"
            );
            return None;
        }
        Some(ResolvConfBind {
            source: CString::new(source.as_os_str().as_bytes()).ok()?,
        })
    }

    /// In the forked child, before exec: a mount namespace of its own in which `/` no longer
    /// propagates to the host, then the bind. Only async-signal-safe calls (unshare, mount).
    /// The calling process must have one thread (a forked child, or a process about to exec):
    /// unshare(CLONE_NEWNS) implies CLONE_FS and fails with EINVAL otherwise.
    pub fn apply(&self) -> io::Result<()> {
        const ROOT: &[u8] = b"/\0";
        const TARGET: &[u8] = b"/etc/resolv.conf\0";
        // SAFETY: unshare takes a constant flag and affects only this (single-threaded,
        // forked) process.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the paths are NUL-terminated constants or a CString made before the fork;
        // null source/fstype/data are allowed for a propagation change and a bind.
        unsafe {
            if libc::mount(
                std::ptr::null(),
                ROOT.as_ptr().cast(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                self.source.as_ptr(),
                TARGET.as_ptr().cast(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
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

/// Runs `argv` (a program, looked up in PATH, then its arguments) inside namespace `name`
/// with this process's stdin, stdout, stderr and environment, and the namespace's own
/// resolv.conf as /etc/resolv.conf when it has one, waits for it, and returns its
/// exit code: 128 + N when signal N ended it, as a shell reports it. Only the child enters
/// the namespace (before its first instruction); the caller's threads stay where they are.
pub fn exec_in(name: &str, argv: &[String]) -> Result<i32, NetnsError> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let exec_error = |program: &str, e: &io::Error| {
        let text = e.to_string();
        let reason = match text.rfind(" (os error ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        NetnsError::Exec {
            name: name.to_string(),
            program: program.to_string(),
            reason,
        }
    };
    let Some(program) = argv.first() else {
        return Err(exec_error("", &io::Error::other("no command given")));
    };
    let file = File::open(path(name)).map_err(|source| NetnsError::Enter {
        name: name.to_string(),
        source,
    })?;
    let fd = file.as_raw_fd();
    let resolv = ResolvConfBind::for_netns(name);
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]);
    // SAFETY: setns is async-signal-safe and takes an fd that stays open until spawn returns;
    // the resolv.conf bind makes only async-signal-safe calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(bind) = &resolv {
                bind.apply()?;
            }
            Ok(())
        });
    }
    let status = cmd.status().map_err(|e| exec_error(program, &e))?;
    drop(file);
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_names_one_process_by_pid_and_start_time() {
        let me = std::process::id();
        let started = start_time(me).expect("this process runs");
        assert!(alive(me, Some(started)));
        assert!(
            !alive(me, Some(started + 1)),
            "the same pid started at another time"
        );
        assert!(alive(me, None), "an old marker: the pid alone");
        assert_eq!(
            parse_marker(&format!("{me} {started}\n")),
            Some((me, Some(started)))
        );
        assert_eq!(parse_marker("42\n"), Some((42, None)));
        assert_eq!(parse_marker("garbage"), None);
        // A pid that cannot exist (above the kernel's pid_max of 2^22).
        assert!(!alive(1 << 23, None));
    }
}
