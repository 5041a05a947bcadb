//! What `service create|update` flags mean, as the docker CLI reads them: `--publish` in its short
//! (`8080:80/udp`) and long (`mode=host,published=8080,target=80`) forms, `--network` with
//! aliases, `--env`; and how `service ls|ps` print ports and ages. Pure, for the service
//! commands to use.

use crate::api::service::{NetworkAttachmentConfig, PortConfig};

/// Parses one `--publish`/`-p`.
pub fn parse_publish(s: &str) -> Result<PortConfig, String> {
    let bad = |why: &str| format!("invalid argument {s:?} for \"-p, --publish\" flag: {why}");
    if s.contains('=') {
        let mut p = PortConfig {
            protocol: "tcp".into(),
            publish_mode: "ingress".into(),
            ..Default::default()
        };
        let mut target = None;
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("invalid field '{field}' must be a key=value pair")))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "mode" => match v {
                    "ingress" | "host" => p.publish_mode = v.into(),
                    _ => {
                        return Err(bad(&format!(
                            "invalid publish mode value ({v}): must be either 'ingress' or 'host'"
                        )))
                    }
                },
                "target" => target = Some(port(v).map_err(|e| bad(&e))?),
                "published" => p.published_port = port(v).map_err(|e| bad(&e))?,
                "protocol" => p.protocol = protocol(v).map_err(|e| bad(&e))?,
                "name" => p.name = v.into(),
                "proxy-protocol" => match v {
                    "v2" => p.proxy_protocol = v.into(),
                    _ => {
                        return Err(bad(&format!(
                            "invalid proxy-protocol value ({v}): must be 'v2'"
                        )))
                    }
                },
                other => return Err(bad(&format!("invalid field key {other}"))),
            }
        }
        p.target_port = target.ok_or_else(|| bad("missing mandatory field \"target\""))?;
        return Ok(p);
    }
    let (ports, proto) = match s.split_once('/') {
        Some((ports, proto)) => (ports, protocol(proto).map_err(|e| bad(&e))?),
        None => (s, "tcp".to_string()),
    };
    let (published, target) = match ports.rsplit_once(':') {
        Some((publ, target)) => {
            // An address before the published port (`127.0.0.1:8080:80`) is Docker's for
            // containers; a swarm service publishes on every node.
            if publ.contains(':') {
                return Err(bad("a service publishes on every node of the swarm: give PUBLISHED:TARGET without an address"));
            }
            (
                port(publ).map_err(|e| bad(&e))?,
                port(target).map_err(|e| bad(&e))?,
            )
        }
        // `-p 80`: the managers choose a published port in 30000-32767.
        None => (0, port(ports).map_err(|e| bad(&e))?),
    };
    Ok(PortConfig {
        name: String::new(),
        protocol: proto,
        target_port: target,
        published_port: published,
        publish_mode: "ingress".into(),
        proxy_protocol: String::new(),
    })
}

fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "invalid port {s:?}: expected a number from 1 to 65535"
        )),
    }
}

fn protocol(s: &str) -> Result<String, String> {
    match s.to_ascii_lowercase().as_str() {
        p @ ("tcp" | "udp") => Ok(p.into()),
        "sctp" => Err("SCTP is not carried by swarmnet (TCP and UDP are)".into()),
        other => Err(format!("invalid protocol {other:?}: expected tcp or udp")),
    }
}

/// Parses one `--network`: `NET` or `name=NET,alias=A[,alias=B]`.
pub fn parse_network(s: &str) -> Result<NetworkAttachmentConfig, String> {
    if !s.contains('=') {
        return Ok(NetworkAttachmentConfig {
            target: s.to_string(),
            aliases: vec![],
        });
    }
    let mut out = NetworkAttachmentConfig::default();
    for field in s.split(',') {
        match field.split_once('=') {
            Some(("name", v)) | Some(("target", v)) => out.target = v.to_string(),
            Some(("alias", v)) if !v.is_empty() => out.aliases.push(v.to_string()),
            Some(("driver-opt", _)) => {}
            _ => {
                return Err(format!(
                    "invalid field {field:?} in --network {s:?}: expected name=NET and alias=A"
                ))
            }
        }
    }
    if out.target.is_empty() {
        return Err(format!("--network {s:?} names no network: give name=NET"));
    }
    Ok(out)
}

/// `service ls` PORTS: `*:8080->80/tcp`, host mode as `8080->80/tcp` with its node, as Docker.
pub fn ports_column(ports: &[PortConfig]) -> String {
    ports
        .iter()
        .map(|p| {
            let star = if p.publish_mode == "host" { "" } else { "*:" };
            format!(
                "{star}{}->{}/{}",
                p.published_port, p.target_port, p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Docker's `units.HumanDuration`: "Less than a second", "12 seconds", "About a minute", ...
pub fn human_duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => plural(s, "second"),
        s if s < 120 => "About a minute".into(),
        s if s < 46 * 60 => plural(s / 60, "minute"),
        s if s < 90 * 60 => "About an hour".into(),
        s if s < 48 * 3600 => plural(s / 3600, "hour"),
        s if s < 7 * 86400 * 2 => plural(s / 86400, "day"),
        s if s < 30 * 86400 * 3 => plural(s / (7 * 86400), "week"),
        s if s < 365 * 86400 * 2 => plural(s / (30 * 86400), "month"),
        s => plural(s / (365 * 86400), "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_publish_forms() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!((p.published_port, p.target_port), (8080, 80));
        assert_eq!(
            (p.protocol.as_str(), p.publish_mode.as_str()),
            ("tcp", "ingress")
        );
        assert_eq!(parse_publish("53:53/udp").unwrap().protocol, "udp");
        assert_eq!(parse_publish("80").unwrap().published_port, 0);
        let p = parse_publish("mode=host,published=8080,target=80,protocol=udp").unwrap();
        assert_eq!(
            (
                p.publish_mode.as_str(),
                p.published_port,
                p.target_port,
                p.protocol.as_str()
            ),
            ("host", 8080, 80, "udp")
        );
    }

    #[test]
    fn bad_publish_values_say_what_is_wrong() {
        for (arg, part) in [
            ("8080:0", "invalid port \"0\""),
            ("99999:80", "invalid port \"99999\""),
            ("8080:80/sctp", "SCTP"),
            ("8080:80/icmp", "invalid protocol"),
            ("127.0.0.1:8080:80", "without an address"),
            ("mode=x,target=80", "must be either 'ingress' or 'host'"),
            ("published=8080", "missing mandatory field \"target\""),
            ("mode=host,bogus=1,target=80", "invalid field key bogus"),
            ("mode", "invalid port"),
        ] {
            let e = parse_publish(arg).unwrap_err();
            assert!(e.contains(part), "{arg}: {e}");
            assert!(e.starts_with("invalid argument"), "{arg}: {e}");
        }
    }

    #[test]
    fn network_with_aliases() {
        assert_eq!(parse_network("my-net").unwrap().target, "my-net");
        let n = parse_network("name=my-net,alias=web,alias=front").unwrap();
        assert_eq!(n.target, "my-net");
        assert_eq!(n.aliases, ["web", "front"]);
        assert!(parse_network("alias=web").is_err());
        assert!(parse_network("name=x,colour=red").is_err());
    }

    #[test]
    fn ports_and_ages_as_docker_prints_them() {
        let ports = [
            parse_publish("8080:80").unwrap(),
            parse_publish("mode=host,published=9000,target=90,protocol=udp").unwrap(),
        ];
        assert_eq!(ports_column(&ports), "*:8080->80/tcp, 9000->90/udp");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(12), "12 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(21 * 86400), "3 weeks");
        assert_eq!(human_duration(400 * 86400), "13 months");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
    }
}
