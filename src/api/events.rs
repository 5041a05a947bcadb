//! Events as Docker's `GET /events` streams them: one JSON object per line (`Type`, `Action`,
//! `Actor{ID, Attributes}`, `scope`, `time`, `timeNano`), and the line `docker events` prints
//! for each (`2026-12-04T09:00:00.000000000Z service create ID (name=web)`).
//!
//! Sans-IO: [`EventQuery::parse`] reads the route's parameters (`since`, `until`, `filters`),
//! [`EventQuery::wants`] decides per event. Where the events come from is the daemon's
//! business (its [`super::routes::Backend::events`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::docker::Filters;

/// The object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, with Docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `network`, `service`, `node`, `task`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `update`, `remove`.
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// `swarm` for the swarm's objects.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The kinds of event a manager reports.
pub const EVENT_TYPES: &[&str] = &["network", "service", "node", "task"];

impl Event {
    /// An event of the swarm at `time_nano`.
    pub fn new(
        kind: &str,
        action: &str,
        id: &str,
        attributes: impl IntoIterator<Item = (String, String)>,
        time_nano: i64,
    ) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: attributes.into_iter().collect(),
            },
            scope: "swarm".into(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        }
    }

    /// `docker events`' line: time with nanoseconds, type, action, ID, `(k=v, ...)`.
    pub fn line(&self) -> String {
        let when = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.time_nano))
            .ok()
            .map(|t| {
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.nanosecond()
                )
            })
            .unwrap_or_else(|| self.time_nano.to_string());
        let mut line = format!("{when} {} {} {}", self.kind, self.action, self.actor.id);
        if !self.actor.attributes.is_empty() {
            let attrs: Vec<String> = self
                .actor
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line.push_str(&format!(" ({})", attrs.join(", ")));
        }
        line
    }
}

/// What a subscriber gets: the events the node still keeps, then the live ones.
pub struct EventFeed {
    pub past: Vec<Event>,
    pub live: tokio::sync::broadcast::Receiver<Event>,
}

/// What a client asked of `GET /events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Unix nanoseconds: events from then on, the past ones the node still keeps included.
    pub since: Option<i64>,
    /// Unix nanoseconds: the stream ends then.
    pub until: Option<i64>,
    pub filters: Filters,
}

/// The filters `GET /events` takes.
const FILTERS: &[&str] = &["type", "event", "id", "name", "scope"];

impl EventQuery {
    /// Reads `since`, `until` (Unix seconds, with a fraction, as the docker CLI sends them) and
    /// `filters` (`type`, `event`, `id`, `name`, `scope`).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        filters: &str,
    ) -> Result<EventQuery, String> {
        let filters = Filters::parse(filters)?;
        filters.only(FILTERS)?;
        for t in filters.values("type") {
            if !EVENT_TYPES.contains(&t) {
                return Err(format!(
                    "invalid filter 'type={t}': a swarmnet manager reports {}",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        let time = |name: &str, v: Option<&str>| -> Result<Option<i64>, String> {
            match v.filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => unix_nanos(v).map(Some).ok_or_else(|| {
                    format!("invalid {name} {v:?}: expected Unix seconds, e.g. 1764838800 or 1764838800.5")
                }),
            }
        };
        Ok(EventQuery {
            since: time("since", since)?,
            until: time("until", until)?,
            filters,
        })
    }

    /// Whether `e` passes the filters and the time bounds.
    pub fn wants(&self, e: &Event) -> bool {
        let f = &self.filters;
        self.since.is_none_or(|s| e.time_nano >= s)
            && self.until.is_none_or(|u| e.time_nano <= u)
            && f.matches("type", |v| v == e.kind)
            && f.matches("event", |v| v == e.action)
            && f.matches("id", |v| v == e.actor.id)
            && f.matches("name", |v| {
                e.actor.attributes.get("name").map(String::as_str) == Some(v)
            })
            && f.matches("scope", |v| v == e.scope)
    }
}

/// `1764838800`, `1764838800.5` (seconds and a fraction) as Unix nanoseconds.
pub fn unix_nanos(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// What the CLI takes for `--since`/`--until`: Unix seconds, RFC 3339, or a duration before
/// `now_nanos` (`30s`, `10m`, `2h`); the answer is Unix seconds with nanoseconds, as the route
/// takes them.
pub fn cli_time(s: &str, now_nanos: i64) -> Result<String, String> {
    if let Some(n) = unix_nanos(s) {
        return Ok(format_nanos(n));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos())
            .map(format_nanos)
            .map_err(|_| format!("{s:?} is out of range"));
    }
    let Some(unit) = s.chars().last() else {
        return Err("an empty time: give Unix seconds, RFC 3339 or a duration".into());
    };
    let scale: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => 0,
    };
    if let Some(n) = s[..s.len() - unit.len_utf8()]
        .parse::<i64>()
        .ok()
        .filter(|_| scale > 0)
    {
        let back = n
            .checked_mul(scale)
            .and_then(|v| v.checked_mul(1_000_000_000))
            .ok_or_else(|| format!("{s:?} is too long ago"))?;
        return Ok(format_nanos(now_nanos - back));
    }
    Err(format!(
        "{s:?} is no time: give Unix seconds (1764838800), RFC 3339 (2026-12-04T09:00:00Z) or a duration before now (30s, 10m, 2h)"
    ))
}

fn format_nanos(n: i64) -> String {
    format!(
        "{}.{:09}",
        n.div_euclid(1_000_000_000),
        n.rem_euclid(1_000_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        Event::new(
            "service",
            "create",
            "abc",
            [("name".to_string(), "web".to_string())],
            1_764_838_800_000_000_123,
        )
    }

    #[test]
    fn the_line_is_docker_events_line() {
        assert_eq!(
            ev().line(),
            "2025-12-04T09:00:00.000000123Z service create abc (name=web)"
        );
        let json = serde_json::to_value(ev()).unwrap();
        assert_eq!(json["Type"], "service");
        assert_eq!(json["Actor"]["Attributes"]["name"], "web");
        assert_eq!(json["timeNano"], 1_764_838_800_000_000_123i64);
        assert_eq!(json["time"], 1_764_838_800i64);
        assert_eq!(json["scope"], "swarm");
    }

    #[test]
    fn queries_filter_by_type_action_and_time() {
        let q = EventQuery::parse(None, None, r#"{"type":["service"]}"#).unwrap();
        assert!(q.wants(&ev()));
        let q = EventQuery::parse(None, None, r#"{"type":["node"]}"#).unwrap();
        assert!(!q.wants(&ev()));
        let q = EventQuery::parse(None, None, r#"{"event":["remove"]}"#).unwrap();
        assert!(!q.wants(&ev()));
        let q = EventQuery::parse(Some("1764838800.000000124"), None, "").unwrap();
        assert!(!q.wants(&ev()));
        let q = EventQuery::parse(Some("1764838800"), Some("1764838801"), "").unwrap();
        assert!(q.wants(&ev()));
        assert!(EventQuery::parse(None, None, r#"{"type":["container"]}"#).is_err());
        assert!(EventQuery::parse(None, None, r#"{"label":["x"]}"#).is_err());
        assert!(EventQuery::parse(Some("yesterday"), None, "").is_err());
    }

    #[test]
    fn cli_times_become_unix_seconds() {
        let now = 1_000_000_000_000_000_000;
        assert_eq!(cli_time("10", now).unwrap(), "10.000000000");
        assert_eq!(cli_time("10.5", now).unwrap(), "10.500000000");
        assert_eq!(cli_time("30s", now).unwrap(), "999999970.000000000");
        assert_eq!(cli_time("2m", now).unwrap(), "999999880.000000000");
        assert_eq!(
            cli_time("1970-01-01T00:00:01Z", now).unwrap(),
            "1.000000000"
        );
        assert!(cli_time("soon", now).is_err());
        assert!(cli_time("", now).is_err());
    }
}
