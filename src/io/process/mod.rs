//! The process supervisor: tasks that are programs, run inside their network namespace.
//!
//! Each process gets, from its first instruction: the task's network namespace, its own
//! process group, stdin from /dev/null, stdout and stderr piped into the task's log, a
//! Docker-like environment (the daemon's PATH, `HOSTNAME`, `HOME=/root`, then the task's own
//! variables, which win), and its own UTS namespace whose hostname is `HOSTNAME` (entering
//! a network namespace needs CAP_SYS_ADMIN already; with it a UTS namespace is one `unshare`).
//! When the namespace has its own resolv.conf (`OwnedNetns::set_resolv_conf`: the node's
//! resolver, `options ndots:0`), the process also gets a mount namespace of its own in which
//! that file is bound over /etc/resolv.conf; the host's file is untouched.
//! A daemon without the capability gets a clear error from `start`.
//!
//! The supervisor never restarts anything: a process that ends by itself is reported by
//! [`Supervisor::take_exits`], and the managers decide, as swarmkit does. When a task's main
//! process ends, what is left of its process group is killed, as a container's processes end
//! with its first one.
//!
//! Threads: each process has one thread that forks it and waits for it, and one that copies its
//! output to the log. The forking thread lives until the child is reaped, which matters for
//! `PR_SET_PDEATHSIG`: the kernel sends the signal when the *thread* that forked the child
//! ends, not the process. So a daemon killed with SIGKILL takes its task processes with it
//! (each gets SIGKILL); their own children, if they forked any, are not covered by it and are
//! left to init. A supervisor that is dropped or shut down stops every process (SIGTERM to the
//! group, SIGKILL after the grace).
//!
//! The log (`output`): JSON lines `{"t":..., "stream":"stdout"|"stderr", "line":...}`, cut at
//! [`MAX_LINE`], rotated at [`LOG_ROTATE_BYTES`] keeping one old file; bounded in memory.
//!
//! The calls that wait ([`Supervisor::stop`], [`Supervisor::shutdown`]) block the calling
//! thread: from async code call them in `tokio::task::spawn_blocking` (share the supervisor in
//! an `Arc`). `start` returns once the program runs (a fork and an exec).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::netns;
use output::{pump, LogFile};
pub use output::{read_log_file, timestamp, LogLine, Stream, LOG_ROTATE_BYTES, MAX_LINE};

mod output;

/// Docker's default time between SIGTERM and SIGKILL when a task stops.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// PATH given to tasks when the daemon has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a SIGKILLed process may take to be reaped before `stop` gives up on it.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Longest hostname Linux takes (HOST_NAME_MAX).
const MAX_HOSTNAME: usize = 64;

/// What to run for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The task's ID: the key of every call.
    pub task_id: String,
    /// The task's name (`my-web.1`), for messages.
    pub name: String,
    /// The named network namespace (`ip netns`) the process runs in.
    pub netns: String,
    /// The program (IMAGE, looked up in PATH unless it has a '/') then its arguments.
    pub argv: Vec<String>,
    /// Variables set after PATH, HOSTNAME and HOME (and so overriding them).
    pub env: Vec<(String, String)>,
    /// The task's hostname; default: the first 12 characters of its ID (as Docker names a
    /// container's host after its ID).
    pub hostname: Option<String>,
    /// Where stdout and stderr go (JSON lines; see the module doc).
    pub log_path: PathBuf,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
}

impl ExitStatus {
    fn of(s: std::process::ExitStatus) -> ExitStatus {
        ExitStatus {
            code: s.code(),
            signal: s.signal(),
        }
    }

    /// The code a shell (and Docker) reports: the exit code, or 128 + the signal.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => -1,
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The task error Docker shows for it: `None` for exit 0, else `task: non-zero exit (N)`.
    pub fn task_error(&self) -> Option<String> {
        (!self.success()).then(|| format!("task: non-zero exit ({})", self.exit_code()))
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("ended"),
        }
    }
}

/// A process that ended, as `take_exits` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub task_id: String,
    pub name: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: SystemTime,
    /// True when it ended after `stop` (or shutdown) asked it to; false when it ended by
    /// itself.
    pub stopped: bool,
}

impl Exit {
    pub fn status(&self) -> ExitStatus {
        ExitStatus {
            code: self.code,
            signal: self.signal,
        }
    }
}

/// What the supervisor knows of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running {
        pid: u32,
    },
    Exited(ExitStatus),
    /// Never started here, or forgotten.
    Unknown,
}

/// Why a process could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("task {name}: cannot run {program:?}: {reason}")]
    Spawn {
        name: String,
        program: String,
        reason: String,
    },
    #[error("task {name}: no program to run")]
    NoProgram { name: String },
    #[error("task {name}: a program task runs in its own network namespace, which needs CAP_SYS_ADMIN and CAP_NET_ADMIN (run the daemon as root); without them only virtual tasks run")]
    NeedPrivilege { name: String },
    #[error("task {name}: network namespace {netns}: {reason}")]
    Netns {
        name: String,
        netns: String,
        reason: String,
    },
    #[error("task {name}: cannot open its log {path}: {reason}")]
    Log {
        name: String,
        path: String,
        reason: String,
    },
    #[error("task {name}: hostname {hostname:?} {problem}")]
    Hostname {
        name: String,
        hostname: String,
        problem: String,
    },
    #[error("task {name} ({task_id}) is already running")]
    AlreadyRunning { name: String, task_id: String },
    #[error("task {name}: process {pid} did not end within {waited:?} of SIGKILL")]
    Unkillable {
        name: String,
        pid: u32,
        waited: Duration,
    },
    #[error("no task {0} in the process supervisor")]
    Unknown(String),
    #[error("task {name}: cannot read its log {path}: {reason}")]
    ReadLog {
        name: String,
        path: String,
        reason: String,
    },
    #[error("the process supervisor is shut down")]
    Shutdown,
}

/// An OS error's text without Rust's " (os error N)" suffix.
fn os_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[derive(Debug)]
enum State {
    Running,
    Exited(ExitStatus),
}

#[derive(Debug)]
struct Proc {
    name: String,
    /// Also the process group's id.
    pid: i32,
    log_path: PathBuf,
    state: State,
    stop_requested: bool,
}

#[derive(Default)]
struct Shared {
    procs: Mutex<HashMap<String, Proc>>,
    /// Notified whenever a process is reaped.
    reaped: Condvar,
    exits: Mutex<Vec<Exit>>,
    closed: AtomicBool,
}

impl Shared {
    fn procs(&self) -> MutexGuard<'_, HashMap<String, Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends `sig` to the process group led by `pid`. Called only with the lock held and the
/// leader not yet reaped (a zombie at worst), so the group id cannot name anyone else.
fn signal_group(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a negative pid names a process group.
    unsafe { libc::kill(-pid, sig) };
}

/// The supervisor of a node's task processes (see the module doc). Drop stops them all.
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            shared: Arc::new(Shared::default()),
        }
    }

    /// Starts `spec`'s program in its namespace; returns its pid once it runs. A program that
    /// cannot run is an error here (`task my-web.1: cannot run "nosuch": No such file or
    /// directory`), never a panic; a task ID that has exited may be started again.
    pub fn start(&self, spec: ProcessSpec) -> Result<u32, ProcessError> {
        let name = spec.name.clone();
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(ProcessError::Shutdown);
        }
        let Some(program) = spec.argv.first().cloned() else {
            return Err(ProcessError::NoProgram { name });
        };
        let hostname = spec
            .hostname
            .clone()
            .unwrap_or_else(|| spec.task_id.chars().take(12).collect());
        let bad_hostname = |problem: &str| ProcessError::Hostname {
            name: name.clone(),
            hostname: hostname.clone(),
            problem: problem.to_string(),
        };
        if hostname.len() > MAX_HOSTNAME {
            return Err(bad_hostname("is longer than 64 bytes"));
        }
        let c_hostname =
            CString::new(hostname.clone()).map_err(|_| bad_hostname("contains NUL"))?;
        let ns = File::open(netns::path(&spec.netns)).map_err(|e| ProcessError::Netns {
            name: name.clone(),
            netns: spec.netns.clone(),
            reason: os_reason(&e),
        })?;
        // Entering a network namespace needs CAP_SYS_ADMIN (and with it, a UTS namespace is
        // one unshare more).
        if !have_sys_admin() {
            return Err(ProcessError::NeedPrivilege { name });
        }
        let log =
            LogFile::open(&spec.log_path, LOG_ROTATE_BYTES).map_err(|e| ProcessError::Log {
                name: name.clone(),
                path: spec.log_path.display().to_string(),
                reason: os_reason(&e),
            })?;

        let mut procs = self.shared.procs();
        if let Some(Proc {
            state: State::Running,
            ..
        }) = procs.get(&spec.task_id)
        {
            return Err(ProcessError::AlreadyRunning {
                name,
                task_id: spec.task_id,
            });
        }

        let mut cmd = Command::new(&program);
        cmd.args(&spec.argv[1..])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            )
            .env("HOSTNAME", &hostname)
            .env("HOME", "/root")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        let ns_fd = ns.as_raw_fd();
        // The namespace's own resolv.conf (the node's resolver), if it was given one.
        let resolv = netns::ResolvConfBind::for_netns(&spec.netns);
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe system calls (prctl, getppid, setns, unshare, sethostname, mount)
        // on values prepared before the fork; `ns` stays open until `spawn` returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The daemon died between fork and prctl: the signal would never come.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(bind) = &resolv {
                    bind.apply()?;
                }
                let h = c_hostname.as_bytes();
                if libc::sethostname(h.as_ptr().cast(), h.len()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }

        // The thread that forks the child lives until it is reaped (PDEATHSIG, module doc).
        let (started_tx, started_rx) = mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let task_id = spec.task_id.clone();
        let thread_name = format!("task-{}", spec.name);
        let spawned = std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let child = cmd.spawn();
                drop(ns);
                let mut child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
                    unreachable!("both outputs are piped");
                };
                let pump = std::thread::Builder::new()
                    .name(format!("{thread_name}-log"))
                    .spawn(move || pump(out.into(), err.into(), log));
                if let Err(e) = pump {
                    // No log: the process is not left running unobserved.
                    // SAFETY: kill has no memory effects; the child is not reaped yet.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    let _ = started_tx.send(Err(e));
                    return;
                }
                let _ = started_tx.send(Ok(child.id()));
                reap(&shared, &task_id, child);
            });
        if let Err(e) = spawned {
            return Err(ProcessError::Spawn {
                name,
                program,
                reason: format!("cannot start its thread: {}", os_reason(&e)),
            });
        }
        match started_rx.recv() {
            Ok(Ok(pid)) => {
                procs.insert(
                    spec.task_id.clone(),
                    Proc {
                        name: spec.name.clone(),
                        pid: pid as i32,
                        log_path: spec.log_path.clone(),
                        state: State::Running,
                        stop_requested: false,
                    },
                );
                tracing::info!(task = %spec.name, task_id = %spec.task_id, pid, netns = %spec.netns, program = %program, "task process started");
                Ok(pid)
            }
            Ok(Err(e)) => Err(ProcessError::Spawn {
                name,
                program,
                reason: os_reason(&e),
            }),
            Err(_) => Err(ProcessError::Spawn {
                name,
                program,
                reason: "its thread ended before it started".into(),
            }),
        }
    }

    /// Stops a task: SIGTERM to its process group, SIGKILL after `grace`, and waits for the
    /// exit. Returns how it ended (`None`: no such task). Stopping a task that has ended
    /// returns how it ended: the call is idempotent.
    pub fn stop(&self, task_id: &str, grace: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let mut procs = self.shared.procs();
        let Some(p) = procs.get_mut(task_id) else {
            return Ok(None);
        };
        if let State::Exited(s) = p.state {
            return Ok(Some(s));
        }
        p.stop_requested = true;
        signal_group(p.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        procs = self.wait_exit(procs, task_id, deadline);
        let Some(p) = procs.get_mut(task_id) else {
            return Ok(None);
        };
        if let State::Exited(s) = p.state {
            return Ok(Some(s));
        }
        tracing::info!(task = %p.name, pid = p.pid, ?grace, "task did not stop on SIGTERM: killing it");
        signal_group(p.pid, libc::SIGKILL);
        procs = self.wait_exit(procs, task_id, Instant::now() + KILL_WAIT);
        match procs.get(task_id) {
            None => Ok(None),
            Some(Proc {
                state: State::Exited(s),
                ..
            }) => Ok(Some(*s)),
            Some(p) => Err(ProcessError::Unkillable {
                name: p.name.clone(),
                pid: p.pid as u32,
                waited: KILL_WAIT,
            }),
        }
    }

    /// Waits with `procs` locked-then-released until `task_id` is no longer running or the
    /// deadline passes.
    fn wait_exit<'a>(
        &'a self,
        mut procs: MutexGuard<'a, HashMap<String, Proc>>,
        task_id: &str,
        deadline: Instant,
    ) -> MutexGuard<'a, HashMap<String, Proc>> {
        loop {
            let running = matches!(
                procs.get(task_id),
                Some(Proc {
                    state: State::Running,
                    ..
                })
            );
            let now = Instant::now();
            if !running || now >= deadline {
                return procs;
            }
            procs = self
                .shared
                .reaped
                .wait_timeout(procs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The processes that ended since the last call, in the order they ended.
    pub fn take_exits(&self) -> Vec<Exit> {
        std::mem::take(&mut *self.shared.exits.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn status(&self, task_id: &str) -> Status {
        match self.shared.procs().get(task_id) {
            None => Status::Unknown,
            Some(Proc {
                state: State::Running,
                pid,
                ..
            }) => Status::Running { pid: *pid as u32 },
            Some(Proc {
                state: State::Exited(s),
                ..
            }) => Status::Exited(*s),
        }
    }

    /// The task IDs of the processes that run.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .shared
            .procs()
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Running))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Forgets an ended task (its log file stays). Returns false for a running or unknown one.
    pub fn forget(&self, task_id: &str) -> bool {
        let mut procs = self.shared.procs();
        if matches!(
            procs.get(task_id),
            Some(Proc {
                state: State::Exited(_),
                ..
            })
        ) {
            procs.remove(task_id);
            return true;
        }
        false
    }

    /// A task's log lines (see [`read_log_file`]).
    pub fn read_log(
        &self,
        task_id: &str,
        since: Option<SystemTime>,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, ProcessError> {
        let (name, path) = match self.shared.procs().get(task_id) {
            Some(p) => (p.name.clone(), p.log_path.clone()),
            None => return Err(ProcessError::Unknown(task_id.to_string())),
        };
        read_log_file(&path, since, tail).map_err(|e| ProcessError::ReadLog {
            name,
            path: path.display().to_string(),
            reason: os_reason(&e),
        })
    }

    /// Stops every process (SIGTERM to each group, SIGKILL to those left after `grace`) and
    /// refuses new ones. Returns when all have been reaped (or `grace` plus 10 s have passed:
    /// the stragglers are then logged).
    pub fn shutdown(&self, grace: Duration) {
        self.shared.closed.store(true, Ordering::Relaxed);
        let mut procs = self.shared.procs();
        let signal_all = |procs: &mut HashMap<String, Proc>, sig| {
            for p in procs.values_mut() {
                if matches!(p.state, State::Running) {
                    p.stop_requested = true;
                    signal_group(p.pid, sig);
                }
            }
        };
        signal_all(&mut procs, libc::SIGTERM);
        procs = self.wait_all(procs, Instant::now() + grace);
        signal_all(&mut procs, libc::SIGKILL);
        procs = self.wait_all(procs, Instant::now() + KILL_WAIT);
        for p in procs.values() {
            if matches!(p.state, State::Running) {
                tracing::error!(task = %p.name, pid = p.pid, "task process did not end on SIGKILL");
            }
        }
    }

    /// Waits with `procs` locked-then-released until no process runs or the deadline passes.
    fn wait_all<'a>(
        &'a self,
        mut procs: MutexGuard<'a, HashMap<String, Proc>>,
        deadline: Instant,
    ) -> MutexGuard<'a, HashMap<String, Proc>> {
        loop {
            let running = procs.values().any(|p| matches!(p.state, State::Running));
            let now = Instant::now();
            if !running || now >= deadline {
                return procs;
            }
            procs = self
                .shared
                .reaped
                .wait_timeout(procs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown(DEFAULT_STOP_GRACE);
    }
}

/// Waits for `child` to end, then, under the lock, kills what is left of its group, reaps it
/// and records the exit.
fn reap(shared: &Shared, task_id: &str, mut child: Child) {
    let pid = child.id();
    loop {
        // SAFETY: waitid writes only into `info`, which we own. WNOWAIT leaves the child a
        // zombie, so its pid (and group id) stay its own until it is reaped below.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut procs = shared.procs();
    signal_group(pid as i32, libc::SIGKILL);
    let status = match child.wait() {
        Ok(s) => ExitStatus::of(s),
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot reap a task process");
            ExitStatus {
                code: None,
                signal: None,
            }
        }
    };
    let at = SystemTime::now();
    // `start` holds the lock from before the fork until it has inserted this child's entry,
    // so the entry is there (unless the task was started again since: then it is not ours).
    let Some(p) = procs.get_mut(task_id).filter(|p| p.pid == pid as i32) else {
        return;
    };
    p.state = State::Exited(status);
    tracing::info!(task = %p.name, task_id, pid, %status, stopped = p.stop_requested, "task process ended");
    let exit = Exit {
        task_id: task_id.to_string(),
        name: p.name.clone(),
        code: status.code,
        signal: status.signal,
        at,
        stopped: p.stop_requested,
    };
    shared
        .exits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(exit);
    shared.reaped.notify_all();
}

/// True when this process holds CAP_SYS_ADMIN (needed for a UTS namespace of its own).
fn have_sys_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_as_docker_reports_them() {
        let exited = |c| ExitStatus {
            code: Some(c),
            signal: None,
        };
        assert_eq!(exited(0).task_error(), None);
        assert_eq!(
            exited(3).task_error().as_deref(),
            Some("task: non-zero exit (3)")
        );
        let killed = ExitStatus {
            code: None,
            signal: Some(9),
        };
        assert_eq!(killed.exit_code(), 137);
        assert_eq!(killed.to_string(), "killed by signal 9");
        assert_eq!(
            killed.task_error().as_deref(),
            Some("task: non-zero exit (137)")
        );
    }

    #[test]
    fn a_missing_namespace_or_program_is_an_error_not_a_panic() {
        let sup = Supervisor::new();
        let dir = tempfile::tempdir().unwrap();
        let spec = ProcessSpec {
            task_id: "0123456789abcdef".into(),
            name: "my-web.1".into(),
            netns: "swarmnet-no-such-namespace".into(),
            argv: vec!["true".into()],
            env: vec![],
            hostname: None,
            log_path: dir.path().join("log"),
        };
        assert_eq!(
            sup.start(spec.clone()).unwrap_err().to_string(),
            "task my-web.1: network namespace swarmnet-no-such-namespace: No such file or \
             directory"
        );
        let empty = ProcessSpec {
            argv: vec![],
            ..spec.clone()
        };
        assert_eq!(
            sup.start(empty).unwrap_err().to_string(),
            "task my-web.1: no program to run"
        );
        assert_eq!(sup.status("0123456789abcdef"), Status::Unknown);
        assert_eq!(sup.stop("0123456789abcdef", Duration::ZERO).unwrap(), None);
        assert!(sup.take_exits().is_empty());
    }
}
