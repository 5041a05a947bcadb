//! Tasks that are programs: the process supervisor runs them inside a network namespace,
//! keeps their output, reports how they ended and stops them; `exec_in` runs a command in a
//! task's namespace. Needs root (CI is root); skips with a printed reason otherwise.

mod lab;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::prefix;
use swarmnet::io::netns::{self, OwnedNetns};
use swarmnet::io::process::{
    read_log_file, Exit, LogLine, ProcessSpec, Status, Stream, Supervisor, LOG_ROTATE_BYTES,
};

/// A namespace of this test's with an interface named `PREFIX` + "d0" in it (one end of a
/// veth pair whose other end is there too).
fn namespace(tag: &str) -> (OwnedNetns, String) {
    let p = prefix(tag);
    let ns = OwnedNetns::create(&format!("{p}-task")).expect("create namespace");
    let dummy = format!("{p}d0");
    let peer = format!("{p}d1");
    lab::ip(&[
        "-n",
        ns.name(),
        "link",
        "add",
        &dummy,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ]);
    (ns, dummy)
}

fn spec(ns: &OwnedNetns, dir: &Path, id: &str, argv: &[&str]) -> ProcessSpec {
    ProcessSpec {
        task_id: id.into(),
        name: format!("my-web.{id}"),
        netns: ns.name().into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        hostname: None,
        log_path: dir.join(format!("{id}.log")),
    }
}

/// Polls `f` until it returns `Some`, for at most `within`.
fn until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exit_of(sup: &Supervisor, id: &str) -> Exit {
    let mut seen = Vec::new();
    until(Duration::from_secs(10), || {
        seen.extend(sup.take_exits());
        seen.iter().find(|e| e.task_id == id).cloned()
    })
    .unwrap_or_else(|| panic!("task {id} did not end: {:?}", sup.status(id)))
}

/// The log's lines once it has at least `n` (the copying may trail the exit).
fn log_lines(sup: &Supervisor, id: &str, n: usize) -> Vec<LogLine> {
    until(Duration::from_secs(10), || {
        let lines = sup.read_log(id, None, None).expect("read log");
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("{id}: fewer than {n} log lines"))
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The processes of process group `pgid` that run (zombies left to init aside).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After "PID (COMM)": state, ppid, pgrp.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn output_and_exit_code_of_a_program_are_kept() {
    require_lab!();
    let (ns, _) = namespace("po");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    let script = "echo to-stdout; echo to-stderr >&2; exit 3";
    sup.start(spec(&ns, dir.path(), "a1", &["sh", "-c", script]))
        .expect("start");
    let exit = exit_of(&sup, "a1");
    assert_eq!(
        (exit.code, exit.signal, exit.stopped),
        (Some(3), None, false)
    );
    assert_eq!(exit.name, "my-web.a1");
    assert_eq!(
        exit.status().task_error().as_deref(),
        Some("task: non-zero exit (3)")
    );
    assert!(matches!(sup.status("a1"), Status::Exited(s) if s.code == Some(3)));
    let mut lines: Vec<(Stream, String)> = log_lines(&sup, "a1", 2)
        .into_iter()
        .map(|l| (l.stream, l.line))
        .collect();
    lines.sort_by_key(|l| l.1.clone());
    assert_eq!(
        lines,
        [
            (Stream::Stderr, "to-stderr".to_string()),
            (Stream::Stdout, "to-stdout".to_string())
        ]
    );
    // Each line of the file is a JSON object with its stream and time.
    let text = std::fs::read_to_string(dir.path().join("a1.log")).unwrap();
    assert!(text.lines().all(|l| l.starts_with("{\"t\":\"20")), "{text}");
    assert!(
        text.contains("\"stream\":\"stderr\",\"line\":\"to-stderr\""),
        "{text}"
    );
    // An exited task may run again under its ID; stopping an ended task is a no-op.
    assert_eq!(
        sup.stop("a1", Duration::ZERO).unwrap().unwrap().code,
        Some(3)
    );
    sup.start(spec(&ns, dir.path(), "a1", &["true"])).unwrap();
    assert_eq!(exit_of(&sup, "a1").code, Some(0));
    assert!(sup.forget("a1"));
    assert_eq!(sup.status("a1"), Status::Unknown);
}

#[test]
fn a_program_runs_inside_the_namespace_with_docker_s_environment() {
    require_lab!();
    let (ns, dummy) = namespace("pn");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    let mut s = spec(
        &ns,
        dir.path(),
        "0123456789abcdef",
        &["sh", "-c", "ip -o link; echo env=$HOSTNAME,$FOO,$HOME"],
    );
    s.env = vec![("FOO".into(), "bar baz".into())];
    sup.start(s).unwrap();
    assert_eq!(exit_of(&sup, "0123456789abcdef").code, Some(0));
    let lines: Vec<String> = log_lines(&sup, "0123456789abcdef", 3)
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(&dummy)),
        "`ip -o link` as a task lists the namespace's interfaces: {lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(": ul0") || l.contains("docker0")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"env=0123456789ab,bar baz,/root".to_string()),
        "HOSTNAME defaults to the ID's first 12 characters: {lines:?}"
    );

    // A given hostname is the UTS namespace's too (the daemon runs as root here).
    let mut s = spec(
        &ns,
        dir.path(),
        "h1",
        &["sh", "-c", "hostname; echo $HOSTNAME"],
    );
    s.hostname = Some("my-host".into());
    sup.start(s).unwrap();
    exit_of(&sup, "h1");
    let lines: Vec<String> = log_lines(&sup, "h1", 2)
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["my-host", "my-host"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "my-host", "the host's own name is untouched");
}

#[test]
fn a_missing_program_is_the_task_s_error() {
    require_lab!();
    let (ns, _) = namespace("pm");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    let mut s = spec(&ns, dir.path(), "m1", &["nosuch"]);
    s.name = "my-web.1".into();
    let err = sup.start(s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "task my-web.1: cannot run \"nosuch\": No such file or directory"
    );
    assert_eq!(sup.status("m1"), Status::Unknown);
    let data = dir.path().join("not-a-program");
    std::fs::write(&data, "text").unwrap();
    let mut s = spec(&ns, dir.path(), "m2", &[data.to_str().unwrap()]);
    s.name = "my-web.2".into();
    assert_eq!(
        sup.start(s).unwrap_err().to_string(),
        format!(
            "task my-web.2: cannot run {:?}: Permission denied",
            data.display().to_string()
        )
    );
}

#[test]
fn stop_terms_then_kills_after_the_grace_and_is_idempotent() {
    require_lab!();
    let (ns, _) = namespace("ps");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    // A program that stops on SIGTERM, with a child in its group.
    let pid = sup
        .start(spec(
            &ns,
            dir.path(),
            "t1",
            &["sh", "-c", "sleep 100 & wait"],
        ))
        .unwrap();
    assert_eq!(sup.status("t1"), Status::Running { pid });
    let started = Instant::now();
    let s = sup.stop("t1", Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(s.signal, Some(libc::SIGTERM), "{s}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // One that ignores SIGTERM (and so do its children) is killed after the grace.
    let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let pid = sup
        .start(spec(&ns, dir.path(), "t2", &["sh", "-c", script]))
        .unwrap();
    log_lines(&sup, "t2", 1);
    let grace = Duration::from_millis(500);
    let started = Instant::now();
    let s = sup.stop("t2", grace).unwrap().unwrap();
    let took = started.elapsed();
    assert_eq!(s.signal, Some(libc::SIGKILL), "{s}");
    assert_eq!(s.exit_code(), 137);
    assert!(
        took >= grace && took < grace + Duration::from_secs(5),
        "{took:?}"
    );
    // SIGKILL is delivered at once but a process exits on its next run: the group's other
    // members (its `sleep`) may take a moment on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !group_members(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        group_members(pid),
        Vec::<u32>::new(),
        "nothing of the task's process group is left running 2 s after the stop"
    );
    assert_eq!(sup.stop("t2", grace).unwrap(), Some(s), "idempotent");
    let exits = sup.take_exits();
    assert_eq!(exits.len(), 2);
    assert!(exits.iter().all(|e| e.stopped));
    assert_eq!(sup.running(), Vec::<String>::new());
}

#[test]
fn a_chatty_program_s_log_stays_within_two_files() {
    require_lab!();
    let (ns, _) = namespace("pc");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    // About 3 MiB of log: rotated more than once.
    sup.start(spec(&ns, dir.path(), "c1", &["seq", "1", "45000"]))
        .unwrap();
    assert_eq!(exit_of(&sup, "c1").code, Some(0));
    let last = until(Duration::from_secs(20), || {
        let tail = sup.read_log("c1", None, Some(1)).unwrap();
        tail.first()
            .filter(|l| l.line == "45000")
            .map(|l| l.line.clone())
    });
    assert_eq!(last.as_deref(), Some("45000"));
    let path = dir.path().join("c1.log");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let old = dir.path().join("c1.log.1");
    assert!(size(&path) <= LOG_ROTATE_BYTES);
    assert!(size(&old) > LOG_ROTATE_BYTES / 2 && size(&old) <= LOG_ROTATE_BYTES);
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 2, "the log and one old file");
    let all = read_log_file(&path, None, None).unwrap();
    assert!(all.len() < 45000 && all.len() > 10000, "{}", all.len());
    assert!(all.windows(2).all(|w| w[0].t <= w[1].t));
}

#[test]
fn a_dropped_supervisor_leaves_no_process_behind() {
    require_lab!();
    let (ns, _) = namespace("pd");
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new();
    let a = sup
        .start(spec(&ns, dir.path(), "d1", &["sleep", "100"]))
        .unwrap();
    let b = sup
        .start(spec(
            &ns,
            dir.path(),
            "d2",
            &["sh", "-c", "trap '' TERM; echo r; sleep 100"],
        ))
        .unwrap();
    log_lines(&sup, "d2", 1);
    sup.shutdown(Duration::from_millis(200));
    assert!(!alive(a) && !alive(b));
    assert!(sup
        .start(spec(&ns, dir.path(), "d3", &["true"]))
        .unwrap_err()
        .to_string()
        .contains("shut down"));
    let c = {
        let sup = Supervisor::new();
        sup.start(spec(&ns, dir.path(), "d4", &["sleep", "100"]))
            .unwrap()
    };
    assert!(!alive(c), "drop stopped it");
}

const HELPER_ENV: &str = "SWARMNET_TEST_SUPERVISOR_NETNS";

/// Run as a child of itself: the child starts a task process and is killed with SIGKILL;
/// PDEATHSIG must take the task process with it.
#[test]
fn a_daemon_killed_with_sigkill_takes_its_task_processes() {
    if let Ok(ns) = std::env::var(HELPER_ENV) {
        // The child: a "daemon" with one task, waiting to be killed (for at most 60 s).
        let sup = Supervisor::new();
        let dir = std::env::temp_dir();
        let spec = ProcessSpec {
            task_id: "k1".into(),
            name: "my-web.1".into(),
            netns: ns,
            argv: vec!["sleep".into(), "100".into()],
            env: vec![],
            hostname: None,
            log_path: dir.join(format!("swarmnet-k1-{}.log", std::process::id())),
        };
        let pid = sup.start(spec).expect("start");
        println!("task-pid {pid}");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    require_lab!();
    let (ns, _) = namespace("pk");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_daemon_killed_with_sigkill_takes_its_task_processes",
            "--nocapture",
        ])
        .env(HELPER_ENV, ns.name())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let pid: u32 = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("task-pid ").map(|p| p.parse().unwrap()))
        .expect("the child started its task");
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = until(Duration::from_secs(5), || (!alive(pid)).then_some(()));
    assert!(gone.is_some(), "task process {pid} outlived its daemon");
    let _ =
        std::fs::remove_file(std::env::temp_dir().join(format!("swarmnet-k1-{}.log", child.id())));
}

#[test]
fn exec_in_runs_a_command_in_the_namespace_and_returns_its_code() {
    require_lab!();
    let (ns, dummy) = namespace("pe");
    let argv = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // (Its output would go to the test's own stdout: the interface is looked for in it.)
    let check = format!("ip -o link | grep -q ' {dummy}@'");
    assert_eq!(
        netns::exec_in(ns.name(), &argv(&["sh", "-c", &check])).unwrap(),
        0
    );
    // The host's namespace has no such interface: the command really ran inside.
    let out = Command::new("sh").args(["-c", &check]).status().unwrap();
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        netns::exec_in(ns.name(), &argv(&["sh", "-c", "exit 7"])).unwrap(),
        7
    );
    assert_eq!(
        netns::exec_in(ns.name(), &argv(&["sh", "-c", "kill -9 $$"])).unwrap(),
        137
    );
    assert_eq!(
        netns::exec_in(ns.name(), &argv(&["nosuch"]))
            .unwrap_err()
            .to_string(),
        format!(
            "cannot run \"nosuch\" in network namespace {}: No such file or directory",
            ns.name()
        )
    );
    assert!(netns::exec_in("swarmnet-no-such-ns", &argv(&["true"]))
        .unwrap_err()
        .to_string()
        .starts_with("cannot enter network namespace swarmnet-no-such-ns"));
}

const UNPRIVILEGED_ENV: &str = "SWARMNET_TEST_SUPERVISOR_UNPRIVILEGED_NETNS";

/// Run again as user nobody: a daemon without CAP_SYS_ADMIN is told why a program task
/// cannot run.
#[test]
fn without_privilege_start_says_what_it_needs() {
    if let Ok(ns) = std::env::var(UNPRIVILEGED_ENV) {
        let sup = Supervisor::new();
        let err = sup
            .start(ProcessSpec {
                task_id: "u1".into(),
                name: "my-web.1".into(),
                netns: ns,
                argv: vec!["true".into()],
                env: vec![],
                hostname: None,
                log_path: std::env::temp_dir().join("swarmnet-never-written.log"),
            })
            .unwrap_err();
        println!("error: {err}");
        return;
    }
    require_lab!();
    use std::os::unix::process::CommandExt;
    let (ns, _) = namespace("pu");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "without_privilege_start_says_what_it_needs",
            "--nocapture",
        ])
        .env(UNPRIVILEGED_ENV, ns.name())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "error: task my-web.1: a program task runs in its own network namespace, which \
             needs CAP_SYS_ADMIN and CAP_NET_ADMIN (run the daemon as root); without them only \
             virtual tasks run"
        ),
        "{text}"
    );
    assert!(!std::env::temp_dir()
        .join("swarmnet-never-written.log")
        .exists());
}
