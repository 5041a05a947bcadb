//! `swarmnet events`: the swarm's events as a manager sees them, streamed like `docker events`
//! (from `GET /events`, the route the docker CLI uses too).

use std::io::Write;

use crate::api::client::{query_value, versioned};
use crate::api::events::{cli_time, Event};

/// `swarmnet events` arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only these events: `type=network|service|node|task`, `event=create|update|remove`,
    /// `id=ID`, `name=NAME` (repeat to allow several values).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show events since then (Unix seconds, RFC 3339, or a duration before now: 30s, 10m,
    /// 2h), among those the manager still keeps (its last 256).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop streaming then (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// `json`: one JSON object per line, Docker's fields (`{{json .}}` works too).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// The `filters` parameter of `--filter KEY=VALUE` flags: `{"type":["service"],...}`.
fn filters_json(flags: &[String]) -> anyhow::Result<String> {
    let mut map: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in flags {
        let Some((k, v)) = f.split_once('=') else {
            anyhow::bail!("bad format of filter {f:?} (expected name=value)");
        };
        map.entry(k.trim()).or_default().push(v.trim());
    }
    Ok(serde_json::to_string(&map)?)
}

/// The route with its query.
fn route(args: &EventsArgs, now_nanos: i64) -> anyhow::Result<String> {
    let mut params = Vec::new();
    for (name, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(v) = value {
            let t = cli_time(v, now_nanos).map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
            params.push(format!("{name}={}", query_value(&t)));
        }
    }
    if !args.filter.is_empty() {
        params.push(format!(
            "filters={}",
            query_value(&filters_json(&args.filter)?)
        ));
    }
    let mut route = versioned("/events");
    if !params.is_empty() {
        route.push('?');
        route.push_str(&params.join("&"));
    }
    Ok(route)
}

/// Streams the events until the daemon ends the answer (`--until`) or the command is stopped.
pub fn run(host: Option<&str>, args: EventsArgs) -> anyhow::Result<()> {
    let json = match args.format.as_deref() {
        None => false,
        Some("json" | "{{json .}}") => true,
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use json"),
    };
    let now =
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let route = route(&args, now)?;
    let client = super::daemon::client(host)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut out = std::io::stdout();
    super::daemon::block_on(client.stream(&route, |data| {
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let shown = if json {
                text.to_string()
            } else {
                match serde_json::from_str::<Event>(text) {
                    Ok(e) => e.line(),
                    Err(_) => text.to_string(),
                }
            };
            if writeln!(out, "{shown}").and_then(|_| out.flush()).is_err() {
                return false;
            }
        }
        true
    }))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_route_query() {
        let args = EventsArgs {
            filter: vec!["type=service".into(), "type=node".into()],
            since: Some("10".into()),
            until: None,
            format: None,
        };
        assert_eq!(
            route(&args, 0).unwrap(),
            format!(
                "{}?since=10.000000000&filters=%7B%22type%22%3A%5B%22service%22%2C%22node%22%5D%7D",
                versioned("/events")
            )
        );
        let bad = EventsArgs {
            filter: vec!["type".into()],
            since: None,
            until: None,
            format: None,
        };
        assert!(route(&bad, 0).is_err());
    }
}
