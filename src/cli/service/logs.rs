//! `service logs`: Docker's multiplexed frames with the task details, turned into the docker
//! CLI's `my-web.1.<task>@<node>    | ` lines; `-f` asks again every second.

use super::*;

pub(super) struct LogOptions {
    pub(super) tail: String,
    pub(super) no_task_ids: bool,
    pub(super) no_trunc: bool,
    pub(super) raw: bool,
    pub(super) timestamps: bool,
    pub(super) follow: bool,
}

/// Splits Docker's multiplexed stream into (stream, payload) frames.
pub fn frames(mut body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let end = (8 + len).min(body.len());
        out.push((body[0], &body[8..end]));
        body = &body[end..];
    }
    out
}

/// `k=v,k=v` details of a log line.
fn details(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn digits(n: u64) -> usize {
    n.max(1).to_string().len()
}

pub(super) async fn show_logs(client: &Client, key: &str, o: LogOptions) -> anyhow::Result<()> {
    // A service, or else one task (by ID), as the docker CLI looks them up.
    let (service, base) = match get_service(client, key, false).await {
        Ok(s) => {
            let base = service_route(&s.id);
            (s, base)
        }
        Err(ClientError::Api { status, .. }) if status == 404 => {
            let task: Task = client
                .get(&format!("/tasks/{}", path_segment(key)))
                .await
                .map_err(|_| anyhow::anyhow!("no such task or service: {key}"))?;
            let s = get_service(client, &task.service_id, false).await?;
            (s, format!("/tasks/{}", path_segment(&task.id)))
        }
        Err(e) => return Err(e.into()),
    };
    let padding = match service.spec.mode {
        ServiceMode::Replicated { replicas } => digits(replicas),
        ServiceMode::Global {} => 1,
    };
    let mut tasks: BTreeMap<String, Option<Task>> = BTreeMap::new();
    let mut nodes: BTreeMap<String, String> = BTreeMap::new();
    // With --follow, the kept lines are asked for again every second and the new ones printed
    // (the daemon keeps the last lines of each task; it does not stream them): lines are told
    // apart by task, timestamp and text, counted, so repeated lines print as often as they came.
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut tail = o.tail.clone();
    loop {
        let route = format!(
            "{base}/logs?details=1&stdout=1&stderr=1&tail={}&timestamps=1",
            crate::api::client::query_value(&tail),
        );
        let (_, body) = client.send(Method::GET, &versioned(&route), None).await?;
        let mut now: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        let mut out = Vec::new();
        let mut err = Vec::new();
        for (stream, payload) in frames(&body) {
            let text = String::from_utf8_lossy(payload);
            let mut parts = text.splitn(3, ' ');
            let (Some(ts), Some(ctx), Some(message)) = (parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("invalid context in log message: {text}");
            };
            let d = details(ctx);
            let task_id = d
                .get("com.docker.swarm.task.id")
                .cloned()
                .unwrap_or_default();
            let key = (task_id.clone(), ts.to_string(), message.to_string());
            let count = now.entry(key.clone()).or_default();
            *count += 1;
            if *count <= seen.get(&key).copied().unwrap_or(0) {
                continue;
            }
            let mut line = String::new();
            if o.timestamps {
                line.push_str(ts);
                line.push(' ');
            }
            if !o.raw {
                let node_id = d
                    .get("com.docker.swarm.node.id")
                    .cloned()
                    .unwrap_or_default();
                if !tasks.contains_key(&task_id) {
                    let t = client
                        .get::<Task>(&format!("/tasks/{}", path_segment(&task_id)))
                        .await
                        .ok();
                    tasks.insert(task_id.clone(), t);
                }
                if !nodes.contains_key(&node_id) {
                    let host = client
                        .get::<serde_json::Value>(&format!("/nodes/{}", path_segment(&node_id)))
                        .await
                        .ok()
                        .and_then(|n| n["Description"]["Hostname"].as_str().map(str::to_string))
                        .unwrap_or_else(|| node_id.clone());
                    nodes.insert(node_id.clone(), host);
                }
                let slot = tasks
                    .get(&task_id)
                    .and_then(|t| t.as_ref())
                    .map(|t| t.slot)
                    .unwrap_or(0);
                let id = short(&task_id, o.no_trunc);
                let name = if o.no_task_ids {
                    format!("{}.{slot}", service.spec.name)
                } else {
                    format!("{}.{slot}.{id}", service.spec.name)
                };
                let pad = " ".repeat(padding.saturating_sub(digits(slot)));
                line.push_str(&format!("{name}@{}{pad}    | ", nodes[&node_id]));
            }
            line.push_str(message);
            if stream == 2 {
                err.extend_from_slice(line.as_bytes());
            } else {
                out.extend_from_slice(line.as_bytes());
            }
        }
        let _ = std::io::stdout().write_all(&out);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&err);
        if !o.follow {
            return Ok(());
        }
        seen = now;
        tail = "all".into();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplexed_frames_split() {
        let body = [
            &[1u8, 0, 0, 0, 0, 0, 0, 3][..],
            b"ab\n",
            &[2u8, 0, 0, 0, 0, 0, 0, 2][..],
            b"c\n",
        ]
        .concat();
        assert_eq!(frames(&body), [(1, &b"ab\n"[..]), (2, &b"c\n"[..])]);
    }
}
