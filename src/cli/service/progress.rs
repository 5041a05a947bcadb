//! The convergence progress of `service create|update|scale` without `-d`, as the docker CLI
//! draws it: its updater (one task per slot or node, states numbered for the bars) and its
//! jsonmessage rendering (a redrawn block on a terminal, plain lines elsewhere).

use super::*;

/// How long create/update/scale wait for the tasks to run before giving up (the service
/// keeps converging; `-d` does not wait at all). `SWARMNET_CONVERGE_TIMEOUT` (seconds) changes it.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(90);

fn converge_wait() -> Duration {
    std::env::var("SWARMNET_CONVERGE_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(CONVERGE_WAIT)
}
/// How long the tasks must keep running before the service counts as converged (Docker's
/// default update monitor).
pub const VERIFY: Duration = Duration::from_secs(5);

/// Task states in the order the docker CLI numbers them for its progress bars.
fn state_number(state: &str) -> u64 {
    match state {
        "new" => 1,
        "allocated" => 2,
        "pending" => 3,
        "assigned" => 4,
        "accepted" => 5,
        "preparing" => 6,
        "ready" => 7,
        "starting" => 8,
        "running" => 9,
        "complete" => 10,
        "shutdown" => 11,
        "failed" => 12,
        "rejected" => 13,
        _ => 0,
    }
}

fn terminal_state(state: &str) -> bool {
    state_number(state) > 9
}

/// One progress message: an ID (`overall progress`, `1/3`, `verify`), its text, and a bar
/// (`current` of 9) for a task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub id: String,
    pub action: String,
    pub bar: Option<u64>,
}

fn msg(id: &str, action: impl Into<String>) -> Progress {
    Progress {
        id: id.into(),
        action: action.into(),
        bar: None,
    }
}

/// The bar the docker CLI draws for `current` of 9 on a wide terminal.
fn bar(current: u64) -> String {
    let pct = ((current as f64 / 9.0 * 100.0) as usize / 2).min(50);
    format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct))
}

/// Renders progress messages as the docker CLI's jsonmessage stream does: on a terminal each
/// ID keeps its line (the cursor moves back up to redraw it); elsewhere messages with a bar are
/// left out and the others printed one per line.
pub struct Renderer<W: Write> {
    out: W,
    tty: bool,
    lines: Vec<String>,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, tty: bool) -> Self {
        Renderer {
            out,
            tty,
            lines: Vec::new(),
        }
    }

    pub fn write(&mut self, p: &Progress) {
        if !self.tty {
            if p.bar.is_none() {
                let _ = writeln!(self.out, "{}: {}", p.id, p.action);
            }
            return;
        }
        let line = match self.lines.iter().position(|l| *l == p.id) {
            Some(i) => i,
            None => {
                self.lines.push(p.id.clone());
                let _ = writeln!(self.out);
                self.lines.len() - 1
            }
        };
        let diff = self.lines.len() - line;
        let _ = write!(self.out, "\x1b[{diff}A\x1b[2K\r{}: {} ", p.id, p.action);
        if let Some(cur) = p.bar {
            let _ = write!(self.out, "{}", bar(cur));
        }
        let _ = write!(self.out, "\r\x1b[{diff}B");
        let _ = self.out.flush();
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The docker CLI's progress updater for one service, fed each poll's service, up-to-date tasks
/// and nodes.
#[derive(Debug, Default)]
pub struct Updater {
    initialized: bool,
    done: bool,
    slot_map: BTreeMap<u64, u64>,
}

const MAX_PROGRESS_BARS: u64 = 20;

fn trunc_error(err: &str) -> String {
    let e = err.replace('\n', " ");
    if e.chars().count() > 50 {
        format!("{}…", e.chars().take(49).collect::<String>())
    } else {
        e
    }
}

fn task_progress(t: &Task, id: String) -> Option<Progress> {
    if !t.status.err.is_empty() {
        return Some(msg(&id, trunc_error(&t.status.err)));
    }
    if !terminal_state(&t.desired_state) && !terminal_state(&t.status.state) {
        return Some(Progress {
            id,
            action: format!("{:<9}", t.status.state),
            bar: Some(state_number(&t.status.state)),
        });
    }
    None
}

impl Updater {
    /// One poll: the messages to write and whether every task runs.
    pub fn update(
        &mut self,
        service: &Service,
        tasks: &[Task],
        nodes: &BTreeMap<String, NodeView>,
    ) -> (Vec<Progress>, bool) {
        let active =
            |t: &Task| t.node_id.is_empty() || nodes.get(&t.node_id).is_some_and(|n| !n.down);
        let mut out = Vec::new();
        let overall = |running: u64, total: u64| {
            msg(
                "overall progress",
                format!("{running} out of {total} tasks"),
            )
        };
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                if !self.initialized {
                    out.push(overall(0, replicas));
                    if replicas <= MAX_PROGRESS_BARS {
                        for i in 1..=replicas {
                            out.push(msg(&format!("{i}/{replicas}"), " "));
                        }
                    }
                    self.initialized = true;
                }
                // One task per slot: the lowest desired state, then the lowest observed one.
                let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
                for t in tasks {
                    if state_number(&t.desired_state) == 0 || state_number(&t.status.state) == 0 {
                        continue;
                    }
                    if let Some(e) = by_slot.get(&t.slot) {
                        let (ed, td) = (
                            state_number(&e.desired_state),
                            state_number(&t.desired_state),
                        );
                        if ed < td
                            || (ed == td
                                && state_number(&e.status.state) <= state_number(&t.status.state))
                        {
                            continue;
                        }
                    }
                    if !active(t) {
                        continue;
                    }
                    by_slot.insert(t.slot, t);
                }
                if self.done && by_slot.values().any(|t| t.status.state != "running") {
                    self.done = false;
                }
                let mut running = 0;
                for (slot, t) in &by_slot {
                    let next = self.slot_map.len() as u64 + 1;
                    let mapped = *self.slot_map.entry(*slot).or_insert(next);
                    if !terminal_state(&t.desired_state) && t.status.state == "running" {
                        running += 1;
                    }
                    if !self.done && replicas <= MAX_PROGRESS_BARS && mapped <= replicas {
                        out.extend(task_progress(t, format!("{mapped}/{replicas}")));
                    }
                }
                if !self.done {
                    out.push(overall(running, replicas));
                    if running == replicas {
                        self.done = true;
                    }
                }
                (out, running == replicas)
            }
            ServiceMode::Global {} => {
                let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
                for t in tasks {
                    if state_number(&t.desired_state) == 0 || state_number(&t.status.state) == 0 {
                        continue;
                    }
                    if let Some(e) = by_node.get(t.node_id.as_str()) {
                        if state_number(&e.desired_state) <= state_number(&t.desired_state) {
                            continue;
                        }
                    }
                    by_node.insert(&t.node_id, t);
                }
                let count = by_node.len() as u64;
                if !self.initialized {
                    if count == 0 {
                        out.push(msg("overall progress", "waiting for new tasks"));
                        return (out, false);
                    }
                    out.push(overall(0, count));
                    self.initialized = true;
                }
                if self.done && by_node.values().any(|t| t.status.state != "running") {
                    self.done = false;
                }
                let mut running = 0;
                for t in by_node.values().filter(|t| active(t)) {
                    if !self.done && count <= MAX_PROGRESS_BARS {
                        out.extend(task_progress(t, short(&t.node_id, false)));
                    }
                    if !terminal_state(&t.desired_state) && t.status.state == "running" {
                        running += 1;
                    }
                }
                if !self.done {
                    out.push(overall(running, count));
                    if running == count {
                        self.done = true;
                    }
                }
                (out, running == count)
            }
        }
    }
}

fn tasks_query(service_id: &str, up_to_date: bool) -> String {
    let mut f = vec![("service".to_string(), service_id.to_string())];
    if up_to_date {
        f.push(("_up-to-date".into(), "true".into()));
    }
    format!("/tasks{}", filters_query(&f))
}

/// Waits, as the docker CLI does without `-d`, until every task of the service runs and has
/// kept running for [`VERIFY`]; draws the progress (nothing with `quiet`). Fails after
/// [`CONVERGE_WAIT`] naming what the tasks say.
pub async fn wait_converged(client: &Client, key: &str, quiet: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut r = Renderer::new(stdout.lock(), tty && !quiet);
    let write = |r: &mut Renderer<_>, p: &Progress| {
        if !quiet {
            r.write(p);
        }
    };
    let mut updater = Updater::default();
    let mut converged_at: Option<Instant> = None;
    let wait = converge_wait();
    let deadline = Instant::now() + wait;
    loop {
        let service = get_service(client, key, false).await?;
        if let Some(at) = converged_at {
            if at.elapsed() >= VERIFY {
                write(&mut r, &msg("verify", format!("Service {key} converged")));
                return Ok(());
            }
        }
        let tasks: Vec<Task> = client.get(&tasks_query(&service.id, true)).await?;
        let nodes = node_views(client).await?;
        let (messages, converged) = updater.update(&service, &tasks, &nodes);
        for m in &messages {
            write(&mut r, m);
        }
        if converged {
            let at = *converged_at.get_or_insert_with(Instant::now);
            let left = VERIFY.saturating_sub(at.elapsed());
            write(
                &mut r,
                &msg(
                    "verify",
                    format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        left.as_secs() + 1
                    ),
                ),
            );
        } else {
            if converged_at.is_some() {
                write(&mut r, &msg("verify", "Detected task failure"));
            }
            converged_at = None;
            if Instant::now() >= deadline {
                let why: Vec<String> = tasks
                    .iter()
                    .filter(|t| !terminal_state(&t.desired_state))
                    .filter(|t| t.status.state != "running")
                    .map(|t| {
                        let text = if t.status.err.is_empty() {
                            &t.status.message
                        } else {
                            &t.status.err
                        };
                        format!("task {} is {}: {text}", short(&t.id, false), t.status.state)
                    })
                    .collect();
                anyhow::bail!(
                    "service {key} did not converge within {}s{}; it keeps converging in the background (see `service ps {key}`)",
                    wait.as_secs(),
                    if why.is_empty() {
                        String::from(" (no tasks yet)")
                    } else {
                        format!(" ({})", why.join("; "))
                    }
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{service, task};
    use super::*;

    #[test]
    fn progress_is_dockers_without_a_terminal() {
        let nodes = BTreeMap::from([("n1".to_string(), NodeView::default())]);
        let mut u = Updater::default();
        let mut r = Renderer::new(Vec::new(), false);
        let (m, done) = u.update(&service(2), &[], &nodes);
        assert!(!done);
        for p in &m {
            r.write(p);
        }
        let tasks = [
            task(1, "running", "running", "2026-12-03T16:44:00Z"),
            task(2, "starting", "running", "2026-12-03T16:44:00Z"),
        ];
        let (m, done) = u.update(&service(2), &tasks, &nodes);
        assert!(!done);
        for p in &m {
            r.write(p);
        }
        let tasks = [
            task(1, "running", "running", "2026-12-03T16:44:00Z"),
            task(2, "running", "running", "2026-12-03T16:44:00Z"),
        ];
        let (m, done) = u.update(&service(2), &tasks, &nodes);
        assert!(done);
        for p in &m {
            r.write(p);
        }
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            text,
            "overall progress: 0 out of 2 tasks\n1/2:  \n2/2:  \noverall progress: 0 out of 2 tasks\noverall progress: 1 out of 2 tasks\noverall progress: 2 out of 2 tasks\n"
        );
        // On a terminal each line keeps its place and running tasks get a full bar.
        let mut u = Updater::default();
        let mut r = Renderer::new(Vec::new(), true);
        let (m, _) = u.update(&service(2), &tasks, &nodes);
        for p in &m {
            r.write(p);
        }
        let text = String::from_utf8(r.into_inner()).unwrap();
        assert!(
            text.contains("1/2: running   [==================================================>] ")
        );
    }
}
