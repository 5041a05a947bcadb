//! `/swarm`: inspect, init, join, leave, update (join-token rotation).

use hyper::Method;

use super::{
    availability, bad_request, body_json, out_of_sequence, unexpected, Answer, Backend, Query,
    Routed, Router,
};
use crate::api::docker;
use crate::api::{ApiError, Availability, InitRequest, JoinRequest, Reply, Request, Role};

impl<B: Backend> Router<B> {
    pub(super) async fn ca_pem(&self) -> Result<String, Answer> {
        match self.op(Request::SwarmCa).await? {
            Reply::Text(pem) => Ok(pem),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn docker_swarm(&self) -> Result<docker::Swarm, Answer> {
        let Reply::Swarm(swarm) = self.op(Request::SwarmInspect).await? else {
            return Err(unexpected());
        };
        Ok(docker::Swarm::from_swarm(&swarm, &self.ca_pem().await?))
    }

    pub(super) async fn swarm(
        &self,
        method: &Method,
        rest: &[&str],
        q: &Query,
        body: &[u8],
    ) -> Routed {
        match (method, rest) {
            (&Method::GET, []) => Ok(Answer::ok(&self.docker_swarm().await?)),
            (&Method::POST, ["init"]) => {
                let r: docker::SwarmInitRequest = body_json(body)?;
                if availability(&r.availability)? != Availability::Active {
                    return Err(bad_request(
                        "swarmnet starts a swarm's first manager as active; change it afterwards with node update",
                    ));
                }
                let opt = |s: String| (!s.is_empty()).then_some(s);
                let req = InitRequest {
                    advertise_addr: opt(r.advertise_addr),
                    listen_addr: opt(r.listen_addr).filter(|l| l != "0.0.0.0:2377"),
                    data_path_addr: opt(r.data_path_addr),
                    data_path_port: (r.data_path_port != 0).then_some(r.data_path_port),
                    default_addr_pool: r.default_addr_pool,
                    default_addr_pool_mask_length: (r.subnet_size != 0).then_some(r.subnet_size),
                    key_rotation_interval_secs: q
                        .get("keyRotationInterval")
                        .map(|v| {
                            v.parse().map_err(|_| {
                                bad_request(format!(
                                    "invalid keyRotationInterval {v:?}: expected seconds"
                                ))
                            })
                        })
                        .transpose()?,
                    force_new_cluster: r.force_new_cluster,
                };
                match self.op(Request::SwarmInit(req)).await? {
                    Reply::Init { node_id, .. } => Ok(Answer::ok(&node_id)),
                    _ => Err(unexpected()),
                }
            }
            (&Method::POST, ["join"]) => {
                let r: docker::SwarmJoinRequest = body_json(body)?;
                let opt = |s: String| (!s.is_empty()).then_some(s);
                let remote =
                    r.remote_addrs.first().cloned().ok_or_else(|| {
                        bad_request("RemoteAddrs is empty: name a manager's address")
                    })?;
                let req = JoinRequest {
                    token: r.join_token,
                    remote_addr: remote,
                    advertise_addr: opt(r.advertise_addr),
                    listen_addr: opt(r.listen_addr).filter(|l| l != "0.0.0.0:2377"),
                    data_path_addr: opt(r.data_path_addr),
                    availability: availability(&r.availability)?,
                };
                match self.op(Request::SwarmJoin(req)).await? {
                    Reply::Joined { .. } => Ok(Answer::empty()),
                    _ => Err(unexpected()),
                }
            }
            (&Method::POST, ["leave"]) => {
                self.op(Request::SwarmLeave {
                    force: q.flag("force"),
                })
                .await?;
                Ok(Answer::empty())
            }
            (&Method::POST, ["update"]) => self.swarm_update(q, body).await,
            // No autolock: no key, as dockerd answers for a swarm without one.
            (&Method::GET, ["unlockkey"]) => {
                self.docker_swarm().await?;
                Ok(Answer::ok(&serde_json::json!({"UnlockKey": ""})))
            }
            _ => Err(Answer::not_found_route()),
        }
    }

    /// `POST /swarm/update`: join-token rotation. Spec changes swarmnet cannot apply are
    /// refused by name rather than dropped.
    pub(super) async fn swarm_update(&self, q: &Query, body: &[u8]) -> Routed {
        let version = q.version()?;
        let spec: serde_json::Value = body_json(body)?;
        let current = serde_json::to_value(docker::SwarmSpec::current())
            .map_err(|e| Answer::from(ApiError::internal(e.to_string())))?;
        if let Some(field) = changed_field(&spec, Some(&current), "") {
            return Err(bad_request(format!(
                "swarmnet cannot change the swarm's {field}; only join-token rotation (rotateWorkerToken, rotateManagerToken) is supported"
            )));
        }
        if q.flag("rotateManagerUnlockKey") {
            return Err(bad_request(
                "swarmnet has no autolock, so there is no unlock key to rotate",
            ));
        }
        let swarm = self.docker_swarm().await?;
        if swarm.cluster.version.index != version {
            return Err(out_of_sequence());
        }
        for (param, role) in [
            ("rotateWorkerToken", Role::Worker),
            ("rotateManagerToken", Role::Manager),
        ] {
            if q.flag(param) {
                self.op(Request::JoinToken { role, rotate: true }).await?;
            }
        }
        Ok(Answer::empty())
    }
}

/// Go's zero values: what the docker CLI sends for a setting it leaves alone.
fn is_zero(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.values().all(is_zero),
    }
}

/// The first setting of `asked` (a swarm spec) that differs from `current`, as a dotted path;
/// settings left at their zero value where swarmnet has none count as unchanged.
fn changed_field(
    asked: &serde_json::Value,
    current: Option<&serde_json::Value>,
    path: &str,
) -> Option<String> {
    if let serde_json::Value::Object(fields) = asked {
        for (key, value) in fields {
            let sub = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if let Some(found) = changed_field(value, current.and_then(|c| c.get(key)), &sub) {
                return Some(found);
            }
        }
        return None;
    }
    match current {
        Some(c) if c == asked => None,
        None if is_zero(asked) => None,
        Some(c) if is_zero(asked) && is_zero(c) => None,
        _ => Some(format!("{path} (asked {asked})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_changes_of_the_spec_are_named() {
        let current = serde_json::to_value(docker::SwarmSpec::current()).unwrap();
        // What the docker CLI sends back for `join-token --rotate`: the spec as read.
        assert_eq!(changed_field(&current, Some(&current), ""), None);
        let mut asked = current.clone();
        asked["CAConfig"]["ForceRotate"] = serde_json::json!(1);
        assert_eq!(
            changed_field(&asked, Some(&current), "").as_deref(),
            Some("CAConfig.ForceRotate (asked 1)")
        );
        let mut asked = current.clone();
        asked["Orchestration"]["TaskHistoryRetentionLimit"] = serde_json::json!(3);
        assert!(changed_field(&asked, Some(&current), "")
            .unwrap()
            .starts_with("Orchestration.TaskHistoryRetentionLimit"));
        let mut asked = current.clone();
        asked["Labels"] = serde_json::json!({"a": "b"});
        assert!(changed_field(&asked, Some(&current), "")
            .unwrap()
            .starts_with("Labels.a"));
        let mut asked = current.clone();
        asked["CAConfig"]["ExternalCAs"] = serde_json::json!(null);
        asked["EncryptionConfig"]["AutoLockManagers"] = serde_json::json!(false);
        assert_eq!(changed_field(&asked, Some(&current), ""), None);
    }
}
