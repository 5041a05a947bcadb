//! How `service ls`, `service ps` and `service inspect --pretty` lay out their output, as the
//! docker CLI does (its tabwriter, its task order, its pretty template).

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn since(ts: &str) -> u64 {
    OffsetDateTime::parse(ts, &Rfc3339)
        .map(|t| (now() - t).whole_seconds().max(0) as u64)
        .unwrap_or(0)
}

pub(super) fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// An image without its digest (`service ls` and `ps` show the tag only).
fn image_column(image: &str, no_trunc: bool) -> String {
    if no_trunc {
        return image.to_string();
    }
    image.split('@').next().unwrap_or(image).to_string()
}

/// Rows of `service ls`: Docker's columns, sorted by name.
pub fn ls_rows(services: &[Service]) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    sorted
        .into_iter()
        .map(|s| {
            let (mode, desired) = match s.spec.mode {
                ServiceMode::Replicated { replicas } => ("replicated", replicas),
                ServiceMode::Global {} => (
                    "global",
                    s.service_status
                        .as_ref()
                        .map(|st| st.desired_tasks)
                        .unwrap_or(0),
                ),
            };
            let running = s
                .service_status
                .as_ref()
                .map(|st| st.running_tasks)
                .unwrap_or(0);
            vec![
                short(&s.id, false),
                s.spec.name.clone(),
                mode.to_string(),
                format!("{running}/{desired}"),
                image_column(&s.spec.task_template.container_spec.image, false),
                ls_ports(&s.endpoint.ports),
            ]
        })
        .collect()
}

/// Columns as the docker CLI's tabwriter lays them out (minimum width 10, padding 3; cells
/// are padded even when empty, the last column is not).
pub fn docker_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let len = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| len(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(len(cell));
        }
    }
    let mut out = String::new();
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned());
    for row in all {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = (widths[i] + 3).max(10);
                out.push_str(&" ".repeat(width - len(cell)));
            }
        }
        out.push('\n');
    }
    out
}

/// `service ls` PORTS as the docker CLI prints it: ingress ports only, consecutive ones merged
/// into ranges (`*:9090-9091->80-81/tcp`).
pub fn ls_ports(ports: &[PortConfig]) -> String {
    let mut sorted: Vec<&PortConfig> = ports.iter().collect();
    sorted.sort_by(|a, b| (&a.protocol, a.published_port).cmp(&(&b.protocol, b.published_port)));
    // (published start, end, target start, end, protocol)
    let mut out = Vec::new();
    let mut cur: Option<(i64, i64, i64, i64, &str)> = None;
    let show = |r: (i64, i64, i64, i64, &str)| {
        let span = |a: i64, b: i64| {
            if b > a {
                format!("{a}-{b}")
            } else {
                a.to_string()
            }
        };
        format!("*:{}->{}/{}", span(r.0, r.1), span(r.2, r.3), r.4)
    };
    for p in sorted.into_iter().filter(|p| p.publish_mode == "ingress") {
        let (pp, tp) = (i64::from(p.published_port), i64::from(p.target_port));
        // Go's unsigned arithmetic: a smaller port also starts a new range.
        let apart = |d: i64| !(0..=1).contains(&d);
        let extends = |r: &(i64, i64, i64, i64, &str)| {
            let overlaps = r.3 != r.2 && tp <= r.3;
            r.4 == p.protocol && !apart(pp - r.1) && !apart(tp - r.3) && !overlaps
        };
        match cur.as_mut() {
            Some(r) if extends(r) => {
                r.1 = pp;
                r.3 = tp;
            }
            _ => {
                if let Some(r) = cur.take() {
                    out.push(show(r));
                }
                cur = Some((pp, pp, tp, tp, p.protocol.as_str()));
            }
        }
    }
    if let Some(r) = cur {
        out.push(show(r));
    }
    out.join(", ")
}

/// What `service ps` needs to know about nodes: hostname and whether it is up.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub hostname: String,
    pub down: bool,
}

pub(super) async fn node_views(client: &Client) -> Result<BTreeMap<String, NodeView>, ClientError> {
    let nodes: Vec<serde_json::Value> = client.get("/nodes").await?;
    Ok(nodes
        .iter()
        .map(|n| {
            (
                n["ID"].as_str().unwrap_or("").to_string(),
                NodeView {
                    hostname: n["Description"]["Hostname"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    down: n["Status"]["State"].as_str() == Some("down"),
                },
            )
        })
        .collect())
}

/// Docker's ERROR column: quoted, cut at 30 characters unless `no_trunc`.
pub(super) fn error_column(err: &str, no_trunc: bool) -> String {
    if err.is_empty() {
        return String::new();
    }
    let text = if !no_trunc && err.chars().count() > 30 {
        format!("{}…", err.chars().take(29).collect::<String>())
    } else {
        err.to_string()
    };
    format!("\"{text}\"")
}

/// Natural order of names as the docker CLI sorts tasks: runs of digits compare as numbers,
/// and a digit sorts before any other character.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if !da {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let by_len = (i - si).cmp(&(j - sj));
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_digits = a[si..i].cmp(&b[sj..j]);
        if by_digits != Ordering::Equal {
            return by_digits;
        }
        if si != sj {
            return si.cmp(&sj);
        }
    }
    a.len().cmp(&b.len())
}

/// Rows of `service ps`: tasks by slot (node in global mode), newest first within one, older
/// ones named ` \_ NAME` as Docker shows history.
pub fn ps_rows(
    tasks: &[Task],
    names: &BTreeMap<String, String>,
    nodes: &BTreeMap<String, NodeView>,
    no_trunc: bool,
) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Task> = tasks.iter().collect();
    let name_of = |t: &Task| {
        let service = names.get(&t.service_id).cloned().unwrap_or_default();
        if t.slot != 0 {
            format!("{service}.{}", t.slot)
        } else {
            format!("{service}.{}", t.node_id)
        }
    };
    // The docker CLI's order: names in natural order (my-web.2 before my-web.10, digits
    // before other characters), newest first within one name.
    sorted.sort_by(|a, b| {
        natural_cmp(&name_of(a), &name_of(b)).then_with(|| b.created_at.cmp(&a.created_at))
    });
    let mut prev = String::new();
    let mut rows = Vec::new();
    for t in sorted {
        let name = name_of(t);
        let mut shown = name.clone();
        if name == prev {
            shown = format!(" \\_ {shown}");
        }
        prev = name;
        let node = nodes
            .get(&t.node_id)
            .map(|n| n.hostname.clone())
            .unwrap_or_default();
        let ago = human_duration(since(&t.status.timestamp)).to_lowercase();
        rows.push(vec![
            short(&t.id, no_trunc),
            shown,
            image_column(&t.spec.container_spec.image, no_trunc),
            node,
            title(&t.desired_state),
            format!("{} {ago} ago", title(&t.status.state)),
            error_column(&t.status.err, no_trunc),
            String::new(),
        ]);
    }
    rows
}

/// `service inspect --pretty`, byte for byte in the docker CLI's layout.
pub fn pretty_text(s: &Service, networks: &[serde_json::Value]) -> String {
    let mut o = String::from("\n");
    o.push_str(&format!("ID:\t\t{}\nName:\t\t{}\n", s.id, s.spec.name));
    if !s.spec.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &s.spec.labels {
            o.push_str(&format!(" {k}={v}\n"));
        }
    }
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => o.push_str(&format!(
            "Service Mode:\tReplicated\n Replicas:\t{replicas}\n"
        )),
        ServiceMode::Global {} => o.push_str("Service Mode:\tGlobal\n"),
    }
    let tt = &s.spec.task_template;
    o.push_str("Placement:\n");
    if !tt.placement.constraints.is_empty() {
        o.push_str(&format!(
            " Constraints:\t[{}]\n",
            tt.placement.constraints.join(" ")
        ));
    }
    let secs = |ns: u64| {
        let d = Duration::from_nanos(ns);
        if d.subsec_nanos() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{d:?}")
        }
    };
    for (title_, cfg, order) in [
        ("UpdateConfig", &s.spec.update_config, "Update order:     "),
        (
            "RollbackConfig",
            &s.spec.rollback_config,
            "Rollback order:   ",
        ),
    ] {
        if let Some(c) = cfg {
            o.push_str(&format!("{title_}:\n Parallelism:\t{}\n", c.parallelism));
            if c.delay != 0 {
                o.push_str(&format!(" Delay:\t\t{}\n", secs(c.delay)));
            }
            o.push_str(&format!(
                " On failure:\t{}\n Monitoring Period: {}\n Max failure ratio: {}\n {order} {}\n",
                c.failure_action,
                secs(c.monitor),
                c.max_failure_ratio,
                c.order
            ));
        }
    }
    o.push_str(&format!(
        "ContainerSpec:\n Image:\t\t{}\n",
        tt.container_spec.image
    ));
    if !tt.container_spec.args.is_empty() {
        o.push_str(&format!(
            " Args:\t\t{} \n",
            tt.container_spec.args.join(" ")
        ));
    }
    if !tt.container_spec.env.is_empty() {
        o.push_str(&format!(" Env:\t\t{} \n", tt.container_spec.env.join(" ")));
    }
    o.push_str(&format!(
        " Init:\t\t{}\nResources:\n",
        tt.container_spec.init
    ));
    if !tt.networks.is_empty() {
        o.push_str("Networks:");
        for n in &tt.networks {
            let name = networks
                .iter()
                .find(|x| x["Id"].as_str() == Some(n.target.as_str()))
                .and_then(|x| x["Name"].as_str())
                .unwrap_or(&n.target);
            o.push_str(&format!(" {name}"));
        }
        o.push_str(" \n");
    }
    o.push_str(&format!("Endpoint Mode:\t{}\n", s.endpoint.spec.mode));
    if !s.endpoint.ports.is_empty() {
        o.push_str("Ports:\n");
        for p in &s.endpoint.ports {
            o.push_str(&format!(
                " PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {} \n",
                p.published_port, p.protocol, p.target_port, p.publish_mode
            ));
        }
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::super::tests::task;
    use super::*;

    #[test]
    fn ps_shows_history_under_its_slot_newest_first() {
        let tasks = [
            task(1, "shutdown", "shutdown", "2026-12-03T16:44:00Z"),
            task(1, "running", "running", "2026-12-03T16:44:10Z"),
            task(2, "running", "running", "2026-12-03T16:44:05Z"),
        ];
        let names = BTreeMap::from([("s".to_string(), "my-web".to_string())]);
        let nodes = BTreeMap::from([(
            "n1".to_string(),
            NodeView {
                hostname: "vm".into(),
                down: false,
            },
        )]);
        let rows = ps_rows(&tasks, &names, &nodes, false);
        let got: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("my-web.1", "swarmnet/whoami:latest", "vm", "Running"),
                (" \\_ my-web.1", "swarmnet/whoami:latest", "vm", "Shutdown"),
                ("my-web.2", "swarmnet/whoami:latest", "vm", "Running"),
            ]
        );
        assert!(rows[0][5].starts_with("Running "), "{}", rows[0][5]);
        assert!(rows[0][5].ends_with(" ago"), "{}", rows[0][5]);
        assert_eq!(
            error_column(
                "no suitable node (scheduling constraints not satisfied)",
                false
            ),
            "\"no suitable node (scheduling …\""
        );
    }

    #[test]
    fn ls_ports_merge_ranges_as_the_docker_cli() {
        let ports: Vec<PortConfig> = [
            "9091:81",
            "9090:80",
            "53:53/udp",
            "mode=host,published=7000,target=70",
            "8000:80",
        ]
        .iter()
        .map(|p| parse_publish(p).unwrap())
        .collect();
        assert_eq!(
            ls_ports(&ports),
            "*:8000->80/tcp, *:9090-9091->80-81/tcp, *:53->53/udp"
        );
    }

    #[test]
    fn task_names_sort_naturally_as_the_docker_cli() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("my-web.2", "my-web.10"), Less);
        assert_eq!(natural_cmp("g2.abc", "g.abc"), Less);
        assert_eq!(natural_cmp("a.1", "a.1"), Equal);
        assert_eq!(natural_cmp("a.01", "a.1"), Greater);
        assert_eq!(natural_cmp("r.1", "g.1"), Greater);
    }
}
