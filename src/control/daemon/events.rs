//! The swarm's events on a manager: networks and services created, updated and removed, task
//! state changes, nodes joining, leaving, going down and coming back.
//!
//! Source: this manager's own replica of the cluster tables (what Raft applied), compared with
//! the previous look each time the applied index moves; node liveness, which lives only in the
//! leader's memory (heartbeats), is read from the leader: here when this manager leads, else
//! asked of it while a client follows the events. Comparing states rather than hooking each
//! Raft command keeps the state machine untouched and gives every manager the same events;
//! the price is that changes applied within one look (`TICK`) are seen as one (a task that
//! went from pending to running between two looks shows one update, pending -> running).
//!
//! Workers keep no tables and answer `GET /events` with an error that names a manager's
//! role: Docker reports swarm events on managers only, for the same reason.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::Daemon;
use crate::api::events::{Event, EventFeed};
use crate::api::service::ServiceMode;
use crate::api::{ApiError, NodeState, Reply, Request, Role};

/// How often the tables are looked at (besides each time Raft applies entries).
const TICK: Duration = Duration::from_millis(200);
/// The least time between two looks woken by Raft.
const MIN_GAP: Duration = Duration::from_millis(20);
/// How often a follower asks the leader for the nodes' liveness (while a client follows).
const NODES_EVERY: Duration = Duration::from_secs(1);
/// Past events kept for `--since` (Docker keeps 256 too).
const KEPT: usize = 256;
/// Live events buffered for a slow client before it misses some.
const LIVE: usize = 1024;

/// The events of this node: the recent past and the live stream.
pub struct EventHub {
    recent: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
    /// When this node's Raft node last started (Unix nanoseconds): objects created since are
    /// news to the first look at the tables, older ones are its baseline.
    raft_started: Mutex<Option<i64>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            recent: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LIVE).0,
            raft_started: Mutex::new(None),
        }
    }
}

impl EventHub {
    /// The kept events and the live ones after them (none lost or repeated between the two).
    pub fn subscribe(&self) -> EventFeed {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        EventFeed {
            past: recent.iter().cloned().collect(),
            live: self.live.subscribe(),
        }
    }

    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            tracing::debug!("event: {}", e.line());
            recent.push_back(e.clone());
            if recent.len() > KEPT {
                recent.pop_front();
            }
            // No subscriber is no error.
            let _ = self.live.send(e);
        }
    }

    /// Notes that this node's Raft node starts now.
    pub fn raft_starts(&self) {
        *self.raft_started.lock().unwrap_or_else(|e| e.into_inner()) = Some(now_nanos());
    }

    fn raft_started(&self) -> Option<i64> {
        *self.raft_started.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn followed(&self) -> bool {
        self.live.receiver_count() > 0
    }
}

/// A network as the events see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NetworkView {
    name: String,
    driver: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceView {
    name: String,
    version: u64,
    replicas: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskView {
    service_id: String,
    /// `web.1`, or `web.<node id>` in global mode.
    slot_name: String,
    node_id: String,
    state: &'static str,
    desired: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeView {
    hostname: String,
    role: &'static str,
    availability: &'static str,
    /// `ready` or `down`; `None` while unknown (a new leader not yet heard from it).
    state: Option<&'static str>,
}

/// One look at the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    networks: BTreeMap<String, NetworkView>,
    services: BTreeMap<String, ServiceView>,
    tasks: BTreeMap<String, TaskView>,
    nodes: BTreeMap<String, NodeView>,
    /// Creation times (Unix nanoseconds) by object ID, where the tables have one.
    created: BTreeMap<String, i64>,
}

impl Snapshot {
    /// These objects and those of `next` they lack that were created before `since` (or at
    /// an unknown time): such objects are no news but tables catching up, as a manager that
    /// joins receives the swarm's objects from the leader, or its first look after a start.
    fn known_with(&self, next: &Snapshot, since: i64) -> Snapshot {
        let old = |id: &String| next.created.get(id).is_none_or(|t| *t < since);
        let mut out = self.clone();
        fn add<V: Clone>(
            into: &mut BTreeMap<String, V>,
            from: &BTreeMap<String, V>,
            old: impl Fn(&String) -> bool,
        ) {
            for (id, v) in from {
                if !into.contains_key(id) && old(id) {
                    into.insert(id.clone(), v.clone());
                }
            }
        }
        add(&mut out.networks, &next.networks, old);
        add(&mut out.services, &next.services, old);
        add(&mut out.tasks, &next.tasks, old);
        add(&mut out.nodes, &next.nodes, old);
        out
    }
}

/// An RFC 3339 time of the tables as Unix nanoseconds.
fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

fn attrs<const N: usize>(pairs: [(&str, &str); N]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// With `.old`/`.new` attributes of a field that changed.
fn changed(out: &mut Vec<(String, String)>, field: &str, old: &str, new: &str) {
    if old != new {
        out.push((format!("{field}.old"), old.to_string()));
        out.push((format!("{field}.new"), new.to_string()));
    }
}

/// The events that lead from `old` to `new`, at `now` (Unix nanoseconds): networks and
/// services created first, then nodes, tasks, and removals of services and networks last.
pub fn diff(old: &Snapshot, new: &Snapshot, now: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for (id, n) in &new.networks {
        match old.networks.get(id) {
            None => out.push(Event::new(
                "network",
                "create",
                id,
                attrs([("name", &n.name), ("type", &n.driver)]),
                now,
            )),
            Some(o) if o != n => out.push(Event::new(
                "network",
                "update",
                id,
                attrs([("name", &n.name), ("type", &n.driver)]),
                now,
            )),
            Some(_) => {}
        }
    }
    for (id, s) in &new.services {
        match old.services.get(id) {
            None => out.push(Event::new(
                "service",
                "create",
                id,
                attrs([("name", &s.name)]),
                now,
            )),
            Some(o) if o.version != s.version || o.name != s.name => {
                let mut a = attrs([("name", &s.name)]);
                if let (Some(or), Some(nr)) = (o.replicas, s.replicas) {
                    changed(&mut a, "replicas", &or.to_string(), &nr.to_string());
                }
                out.push(Event::new("service", "update", id, a, now));
            }
            Some(_) => {}
        }
    }
    for (id, n) in &new.nodes {
        match old.nodes.get(id) {
            None => out.push(Event::new(
                "node",
                "create",
                id,
                attrs([("name", &n.hostname)]),
                now,
            )),
            Some(o) => {
                let mut a = Vec::new();
                if let (Some(os), Some(ns)) = (o.state, n.state) {
                    changed(&mut a, "state", os, ns);
                }
                changed(&mut a, "role", o.role, n.role);
                changed(&mut a, "availability", o.availability, n.availability);
                if !a.is_empty() {
                    a.push(("name".into(), n.hostname.clone()));
                    out.push(Event::new("node", "update", id, a, now));
                }
            }
        }
    }
    for (id, n) in &old.nodes {
        if !new.nodes.contains_key(id) {
            out.push(Event::new(
                "node",
                "remove",
                id,
                attrs([("name", &n.hostname)]),
                now,
            ));
        }
    }
    let service_name = |sid: &str| {
        new.services
            .get(sid)
            .or_else(|| old.services.get(sid))
            .map(|s| s.name.clone())
            .unwrap_or_default()
    };
    let task_attrs = |t: &TaskView| {
        attrs([
            ("name", &t.slot_name),
            ("service", &service_name(&t.service_id)),
            ("node.id", &t.node_id),
            ("desired-state", t.desired),
        ])
    };
    for (id, t) in &new.tasks {
        match old.tasks.get(id) {
            None => {
                let mut a = task_attrs(t);
                a.push(("state".into(), t.state.into()));
                out.push(Event::new("task", "create", id, a, now));
            }
            Some(o) if o != t => {
                let mut a = task_attrs(t);
                changed(&mut a, "state", o.state, t.state);
                changed(&mut a, "node", &o.node_id, &t.node_id);
                if o.desired != t.desired {
                    a.push(("desired-state.old".into(), o.desired.into()));
                }
                out.push(Event::new("task", "update", id, a, now));
            }
            Some(_) => {}
        }
    }
    for (id, t) in &old.tasks {
        if !new.tasks.contains_key(id) {
            out.push(Event::new("task", "remove", id, task_attrs(t), now));
        }
    }
    for (id, s) in &old.services {
        if !new.services.contains_key(id) {
            out.push(Event::new(
                "service",
                "remove",
                id,
                attrs([("name", &s.name)]),
                now,
            ));
        }
    }
    for (id, n) in &old.networks {
        if !new.networks.contains_key(id) {
            out.push(Event::new(
                "network",
                "remove",
                id,
                attrs([("name", &n.name), ("type", &n.driver)]),
                now,
            ));
        }
    }
    out
}

fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Manager => "manager",
        Role::Worker => "worker",
    }
}

fn node_state(s: NodeState) -> Option<&'static str> {
    match s {
        NodeState::Ready => Some("ready"),
        NodeState::Down => Some("down"),
        NodeState::Unknown => None,
    }
}

fn availability_name(a: crate::api::Availability) -> &'static str {
    match a {
        crate::api::Availability::Active => "active",
        crate::api::Availability::Pause => "pause",
        crate::api::Availability::Drain => "drain",
    }
}

impl Daemon {
    /// The tables of this manager's replica, nodes as the store has them (no liveness).
    fn tables_snapshot(&self) -> Result<Snapshot, ApiError> {
        let mut s = Snapshot::default();
        for n in self.store.networks()? {
            s.created
                .extend(parse_time(&n.created_at).map(|t| (n.id.clone(), t)));
            s.networks.insert(
                n.id.clone(),
                NetworkView {
                    name: n.name.clone(),
                    driver: n.driver.clone(),
                },
            );
        }
        for svc in self.store.services()? {
            s.created
                .extend(parse_time(&svc.created_at).map(|t| (svc.id.clone(), t)));
            let replicas = match svc.spec.mode {
                ServiceMode::Replicated { replicas } => Some(replicas),
                ServiceMode::Global {} => None,
            };
            s.services.insert(
                svc.id.clone(),
                ServiceView {
                    name: svc.spec.name.clone(),
                    version: svc.version,
                    replicas,
                },
            );
        }
        for t in self.store.tasks()? {
            s.created
                .extend(parse_time(&t.created_at).map(|c| (t.id.clone(), c)));
            let svc = s
                .services
                .get(&t.service_id)
                .map(|v| v.name.clone())
                .unwrap_or_default();
            let slot = if t.slot > 0 {
                t.slot.to_string()
            } else {
                t.node_id.clone()
            };
            s.tasks.insert(
                t.id.clone(),
                TaskView {
                    service_id: t.service_id.clone(),
                    slot_name: format!("{svc}.{slot}"),
                    node_id: t.node_id.clone(),
                    state: super::metrics::task_state_name(t.state),
                    desired: super::metrics::task_state_name(t.desired),
                },
            );
        }
        for n in self.store.nodes()? {
            s.created
                .extend(parse_time(&n.created_at).map(|t| (n.id.clone(), t)));
            s.nodes.insert(
                n.id.clone(),
                NodeView {
                    hostname: n.hostname.clone(),
                    role: role_name(n.role),
                    availability: availability_name(n.availability),
                    state: None,
                },
            );
        }
        Ok(s)
    }

    /// The nodes' liveness from the leader: here if this manager leads, else asked of it
    /// (`None`: not known now).
    async fn liveness(&self) -> Option<BTreeMap<String, Option<&'static str>>> {
        let nodes = if self.holds_state() {
            self.manager.nodes().ok()?
        } else {
            let identity = self.identity()?;
            let ask = self.forward(&identity, Request::NodeList);
            match tokio::time::timeout(Duration::from_secs(2), ask).await {
                Ok(Ok(Reply::Nodes(nodes))) => nodes,
                _ => return None,
            }
        };
        Some(
            nodes
                .into_iter()
                .map(|n| (n.id, node_state(n.status.state)))
                .collect(),
        )
    }

    /// Follows the tables while this node is a manager and publishes what changed.
    pub(super) async fn watch_events(self: Arc<Self>) {
        let mut last: Option<Snapshot> = None;
        let mut last_applied: Option<u64> = None;
        let mut live: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut last_liveness = tokio::time::Instant::now() - NODES_EVERY;
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A look per tick, and at once when Raft applied something (so the states of a
            // task between two ticks are seen more often than not).
            let raft = self.manager.raft();
            let applied_moved = async {
                match &raft {
                    Some(h) => {
                        let mut metrics = h.raft.metrics();
                        let seen = metrics.borrow_and_update().last_applied;
                        let _ = metrics.wait_for(|m| m.last_applied != seen).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticks.tick() => {}
                _ = applied_moved => {
                    // A burst of writes costs one look per MIN_GAP, not one each.
                    tokio::time::sleep(MIN_GAP).await;
                }
            }
            let manager = self.identity().is_some_and(|i| i.role == Role::Manager)
                && self.manager.raft().is_some();
            if !manager {
                last = None;
                last_applied = None;
                live.clear();
                continue;
            }
            let applied = self.manager.raft_progress().0;
            let leader = self.holds_state();
            let ask_liveness = (leader || self.events.followed())
                && last_liveness.elapsed() >= if leader { TICK } else { NODES_EVERY };
            if applied == last_applied && !ask_liveness && last.is_some() {
                continue;
            }
            let mut next = if applied == last_applied {
                match &last {
                    Some(s) => s.clone(),
                    None => continue,
                }
            } else {
                let daemon = self.clone();
                match tokio::task::spawn_blocking(move || daemon.tables_snapshot()).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(err)) => {
                        tracing::debug!("events: cannot read the tables: {err}");
                        continue;
                    }
                    Err(err) => {
                        tracing::debug!("events: cannot read the tables: {err}");
                        continue;
                    }
                }
            };
            if ask_liveness {
                last_liveness = tokio::time::Instant::now();
                if let Some(states) = self.liveness().await {
                    for (id, state) in states {
                        // Unknown keeps what was known: a new leader has not heard from the
                        // node yet.
                        if let Some(s) = state {
                            live.insert(id, s);
                        }
                    }
                }
            }
            live.retain(|id, _| next.nodes.contains_key(id));
            for (id, n) in next.nodes.iter_mut() {
                n.state = live.get(id).copied();
            }
            last_applied = applied;
            // What existed when Raft started is no event, whenever this manager's tables
            // receive it (the first look, or a joining manager's catching up).
            if let Some(since) = self.events.raft_started() {
                let prev = last.take().unwrap_or_default().known_with(&next, since);
                self.events.publish(diff(&prev, &next, now_nanos()));
            }
            last = Some(next);
        }
    }

    /// `GET /events` on this node: managers only.
    pub(super) fn event_feed(&self) -> Result<EventFeed, ApiError> {
        let identity = self.identity().ok_or_else(ApiError::not_in_swarm)?;
        if identity.role != Role::Manager {
            return Err(ApiError::unavailable(
                "this node is a worker: the swarm's events are reported by managers only (they hold the cluster tables); run `swarmnet events` against a manager",
            ));
        }
        Ok(self.events.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &'static str) -> TaskView {
        TaskView {
            service_id: "s1".into(),
            slot_name: "web.1".into(),
            node_id: "n1".into(),
            state,
            desired: "running",
        }
    }

    fn node(state: Option<&'static str>) -> NodeView {
        NodeView {
            hostname: "node-1".into(),
            role: "manager",
            availability: "active",
            state,
        }
    }

    #[test]
    fn creations_changes_and_removals_become_events_in_order() {
        let mut a = Snapshot::default();
        a.networks.insert(
            "net1".into(),
            NetworkView {
                name: "my-net".into(),
                driver: "overlay".into(),
            },
        );
        a.nodes.insert("n1".into(), node(Some("ready")));
        let mut b = a.clone();
        b.services.insert(
            "s1".into(),
            ServiceView {
                name: "web".into(),
                version: 1,
                replicas: Some(1),
            },
        );
        b.tasks.insert("t1".into(), task("pending"));
        let lines: Vec<String> = diff(&a, &b, 0).iter().map(Event::line).collect();
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000000Z service create s1 (name=web)",
                "1970-01-01T00:00:00.000000000Z task create t1 (desired-state=running, name=web.1, node.id=n1, service=web, state=pending)",
            ]
        );
        let mut c = b.clone();
        c.tasks.insert("t1".into(), task("running"));
        c.nodes.insert("n1".into(), node(Some("down")));
        c.services.get_mut("s1").unwrap().version = 2;
        c.services.get_mut("s1").unwrap().replicas = Some(3);
        let lines: Vec<String> = diff(&b, &c, 0).iter().map(Event::line).collect();
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000000Z service update s1 (name=web, replicas.new=3, replicas.old=1)",
                "1970-01-01T00:00:00.000000000Z node update n1 (name=node-1, state.new=down, state.old=ready)",
                "1970-01-01T00:00:00.000000000Z task update t1 (desired-state=running, name=web.1, node.id=n1, service=web, state.new=running, state.old=pending)",
            ]
        );
        let lines: Vec<String> = diff(&c, &a, 0).iter().map(Event::line).collect();
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000000Z node update n1 (name=node-1, state.new=ready, state.old=down)",
                "1970-01-01T00:00:00.000000000Z task remove t1 (desired-state=running, name=web.1, node.id=n1, service=web)",
                "1970-01-01T00:00:00.000000000Z service remove s1 (name=web)",
            ]
        );
        assert!(diff(&c, &c, 0).is_empty());
    }

    #[test]
    fn what_was_created_before_raft_started_is_no_news() {
        let mut s = Snapshot::default();
        s.services.insert(
            "old".into(),
            ServiceView {
                name: "a".into(),
                version: 1,
                replicas: Some(1),
            },
        );
        s.services.insert(
            "new".into(),
            ServiceView {
                name: "b".into(),
                version: 1,
                replicas: Some(1),
            },
        );
        s.created.insert("old".into(), 5);
        s.created.insert("new".into(), 10);
        let events = diff(&Snapshot::default().known_with(&s, 10), &s, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].line(),
            "1970-01-01T00:00:00.000000000Z service create new (name=b)"
        );
    }

    #[test]
    fn an_unknown_liveness_is_no_change() {
        let mut a = Snapshot::default();
        a.nodes.insert("n1".into(), node(Some("ready")));
        let mut b = a.clone();
        b.nodes.insert("n1".into(), node(None));
        assert!(diff(&a, &b, 0).is_empty());
    }

    #[test]
    fn subscribers_get_the_kept_past_then_the_live_events() {
        let hub = EventHub::default();
        hub.publish(vec![Event::new("node", "create", "a", [], 1)]);
        let mut feed = hub.subscribe();
        hub.publish(vec![Event::new("node", "remove", "a", [], 2)]);
        assert_eq!(feed.past.len(), 1);
        assert_eq!(feed.live.try_recv().unwrap().action, "remove");
        for i in 0..(KEPT + 10) {
            hub.publish(vec![Event::new("node", "update", "a", [], i as i64)]);
        }
        assert_eq!(hub.subscribe().past.len(), KEPT);
    }
}
