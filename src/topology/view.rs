//! A node view built in code (as the daemon will build it from its assignments) is checked by
//! the very rules that check a topology file: `validate` writes the view as TOML and reads it
//! back through the parser. So the two sources of views can never drift apart; an error names
//! the object and says what is wrong, without a file and line (there is no file).

use std::fmt::Write as _;

use super::*;

/// Why a node view was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct ViewError {
    pub object: ErrorObject,
    pub message: String,
}

/// A TOML string literal.
fn s(v: &str) -> String {
    toml::Value::String(v.to_string()).to_string()
}

impl App {
    /// The `app` value that reads back as this app.
    pub fn to_value(&self) -> String {
        match self {
            App::Whoami => "whoami".into(),
            App::Echo => "echo".into(),
            App::Fetch(t) => format!("fetch {t}"),
            App::Lookup(names) => format!("lookup {}", names.join(" ")),
            App::IngressSandbox => "ingress-sandbox".into(),
        }
    }
}

impl Topology {
    /// Checks a view built in code by the rules of `Topology::parse` (see the module doc).
    pub fn validate(&self) -> Result<(), ViewError> {
        match Topology::parse(&self.to_toml(), "view") {
            Ok(_) => Ok(()),
            Err(TopologyError::Invalid {
                object, message, ..
            }) => Err(ViewError {
                object,
                message: without_lines(&message),
            }),
            Err(e) => Err(ViewError {
                object: ErrorObject::File,
                message: e.to_string(),
            }),
        }
    }

    /// The view as a topology file that `Topology::parse` reads back as the same view.
    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let n = &self.node;
        let _ = writeln!(
            t,
            "[node]\nname = {}\ndata_path_addr = \"{}\"\ndata_path_port = {}",
            s(&n.name),
            n.data_path_addr,
            n.data_path_port
        );
        if n.remote_checksum_offload {
            t.push_str("remote_checksum_offload = true\n");
        }
        if let Some(e) = &self.encryption {
            let keys: Vec<String> = e
                .keys
                .iter()
                .map(|k| {
                    let hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{{ tag = {}, key = \"{hex}\" }}", k.tag)
                })
                .collect();
            let transport = match e.transport {
                EspTransport::Ip => "ip",
                EspTransport::Udp => "udp",
            };
            let _ = writeln!(
                t,
                "\n[encryption]\nkeys = [ {} ]\nprimary = {}\ntransport = \"{transport}\"\nudp_port = {}",
                keys.join(", "),
                e.primary,
                e.udp_port
            );
        }
        for net in &self.networks {
            let _ = writeln!(
                t,
                "\n[[network]]\nname = {}\nsubnet = \"{}\"\ngateway = \"{}\"\nmtu = {}\nencrypted = {}",
                s(&net.name),
                net.subnet,
                net.gateway,
                net.mtu,
                net.encrypted
            );
            match net.bridge {
                Some(b) => {
                    let _ = writeln!(t, "driver = \"bridge\"\nicc = {}", b.icc);
                }
                None => {
                    let _ = writeln!(t, "vni = {}", net.vni);
                }
            }
            if net.ingress {
                let _ = writeln!(t, "ingress = true");
            }
        }
        for ep in &self.endpoints {
            let _ = writeln!(
                t,
                "\n[[endpoint]]\nname = {}\nnetwork = {}\nip = \"{}\"\nmac = \"{}\"",
                s(&ep.name),
                s(&ep.network),
                ep.ip,
                ep.mac
            );
            if let Some(v) = ep.vtep {
                let _ = writeln!(t, "vtep = \"{v}\"");
            }
            if let Some(ns) = &ep.netns {
                let _ = writeln!(t, "netns = {}", s(ns));
            }
            if let Some(iface) = &ep.iface {
                let _ = writeln!(t, "iface = {}", s(iface));
            }
            if let Some(app) = &ep.app {
                let _ = writeln!(t, "app = {}", s(&app.to_value()));
            }
            if let Some(task) = &ep.task {
                let _ = writeln!(t, "task = {}", s(task));
            }
        }
        let list = |v: &[String]| v.iter().map(|x| s(x)).collect::<Vec<_>>().join(", ");
        for sv in &self.services {
            let _ = writeln!(
                t,
                "\n[[service]]\nname = {}\nnetwork = {}\naliases = [{}]\ntasks = [{}]",
                s(&sv.name),
                s(&sv.network),
                list(&sv.aliases),
                list(&sv.tasks)
            );
            if let Some(vip) = sv.vip {
                let _ = writeln!(t, "vip = \"{vip}\"");
            }
        }
        t
    }
}

/// A parser message without its references to lines of the (generated) text.
fn without_lines(message: &str) -> String {
    let mut out = message.to_string();
    for open in [" (first defined on line ", " (first on line ", " (line "] {
        while let Some(at) = out.find(open) {
            let Some(close) = out[at..].find(')') else {
                break;
            };
            out.replace_range(at..at + close + 1, "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[encryption]
keys = [ { tag = 7, key = "000102030405060708090a0b0c0d0e0f" } ]
primary = 7
transport = "udp"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true

[[endpoint]]
name = "web1"
network = "my-network"
ip = "10.0.9.2"
netns = "ns-web1"

[[endpoint]]
name = "who"
network = "my-network"
ip = "10.0.9.3"
app = "fetch http://10.0.9.2:8080/x?y=1"

[[endpoint]]
name = "web2"
network = "my-network"
ip = "10.0.9.4"
mac = "02:00:00:00:00:09"
vtep = "192.0.2.11"
"#;

    #[test]
    fn a_view_reads_back_as_itself() {
        let t = Topology::parse(TEXT, "t.toml").unwrap();
        assert_eq!(Topology::parse(&t.to_toml(), "again").unwrap(), t);
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn a_bridge_reads_back_as_itself_and_keeps_its_endpoints_local() {
        let mut t = Topology::parse(TEXT, "t.toml").unwrap();
        t.networks.push(Network {
            name: "docker_gwbridge".into(),
            vni: 0,
            subnet: "172.18.0.0/16".parse().unwrap(),
            gateway: "172.18.0.1".parse().unwrap(),
            mtu: 1500,
            encrypted: false,
            ingress: false,
            bridge: Some(crate::topology::Bridge { icc: true }),
        });
        let mut e = t.endpoints[0].clone();
        e.name = "gw-local".into();
        e.network = "docker_gwbridge".into();
        e.ip = "172.18.0.2".parse().unwrap();
        e.mac = MacAddr([2, 0x42, 172, 18, 0, 2]);
        e.vtep = None;
        e.netns = Some("gw-local".into());
        t.endpoints.push(e.clone());
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(Topology::parse(&t.to_toml(), "again").unwrap(), t);
        e.name = "gw-remote".into();
        e.ip = "172.18.0.3".parse().unwrap();
        e.mac = MacAddr([2, 0x42, 172, 18, 0, 3]);
        e.netns = None;
        e.vtep = Some("192.0.2.99".parse().unwrap());
        t.endpoints.push(e);
        let err = t.validate().unwrap_err();
        assert!(
            err.message.contains("is a bridge, the node's own"),
            "{err:?}"
        );
    }

    #[test]
    fn a_view_built_in_code_is_refused_by_the_file_rules() {
        let good = Topology::parse(TEXT, "t.toml").unwrap();
        let mut t = good.clone();
        t.endpoints[1].ip = t.endpoints[0].ip;
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "endpoint who: ip 10.0.9.2 is already used by endpoint web1 on network my-network"
        );
        let mut t = good.clone();
        t.endpoints.push(t.endpoints[0].clone());
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "endpoint web1: duplicate endpoint name web1"
        );
        let mut t = good.clone();
        t.node.name = "../../x".into();
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "node: name \"../../x\" must not contain '/': it is used as a file name"
        );
        let mut t = good;
        t.endpoints[2].vtep = Some(t.node.data_path_addr);
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "endpoint web2: vtep 192.0.2.10 is this node's data_path_addr; an endpoint on this \
             node must omit vtep"
        );
    }

    /// A view of one task (namespace `t1`) on two networks, as the daemon builds it.
    fn two_networks() -> Topology {
        let mut t = Topology::parse(TEXT, "t.toml").unwrap();
        t.networks.push(Network {
            name: "other".into(),
            vni: 4098,
            subnet: "10.0.10.0/24".parse().unwrap(),
            gateway: "10.0.10.1".parse().unwrap(),
            mtu: 1450,
            encrypted: false,
            ingress: false,
            bridge: None,
        });
        t.endpoints[0].netns = Some("t1".into());
        let mut second = t.endpoints[0].clone();
        second.name = "web1@other".into();
        second.network = "other".into();
        second.ip = "10.0.10.2".parse().unwrap();
        second.mac = MacAddr::from_ipv4(second.ip);
        second.iface = Some("eth1".into());
        t.endpoints.push(second);
        t
    }

    #[test]
    fn a_task_on_two_networks_shares_its_namespace() {
        let t = two_networks();
        assert_eq!(t.validate(), Ok(()));
        assert!(t.to_toml().contains("iface = \"eth1\"\n"));
        assert_eq!(Topology::parse(&t.to_toml(), "again").unwrap(), t);
        let ifaces: Vec<(&str, &str)> = t
            .namespaced_endpoints()
            .map(|e| (e.netns_name(), e.iface_name()))
            .collect();
        assert_eq!(ifaces, [("t1", "eth0"), ("t1", "eth1")]);
    }

    #[test]
    fn interfaces_are_unique_per_namespace_and_named_as_linux_names_them() {
        let good = two_networks();
        let refusal = |f: &dyn Fn(&mut Topology)| {
            let mut t = good.clone();
            f(&mut t);
            t.validate().unwrap_err().to_string()
        };
        assert_eq!(
            refusal(&|t| t.endpoints[3].iface = None),
            "endpoint web1@other: interface eth0 of network namespace t1 is already endpoint \
             web1's; give one of them another `iface` or `netns`"
        );
        assert_eq!(
            refusal(&|t| t.endpoints[0].iface = Some("eth1".into())),
            "endpoint web1@other: interface eth1 of network namespace t1 is already endpoint \
             web1's; give one of them another `iface` or `netns`"
        );
        assert_eq!(
            refusal(&|t| {
                t.endpoints[3].network = "my-network".into();
                t.endpoints[3].ip = "10.0.9.20".parse().unwrap();
                t.endpoints[3].mac = MacAddr::from_ipv4(t.endpoints[3].ip);
            }),
            "endpoint web1@other: network namespace t1 is already on network my-network \
             through endpoint web1; a task joins a network once"
        );
        for (name, problem) in [
            ("", "must not be empty"),
            ("eth0123456789012", "is 16 bytes long, more than 15"),
            ("eth/1", "must not contain '/'"),
            ("eth:1", "must not contain ':'"),
            ("eth 1", "must not contain ' '"),
            ("..", "must not be . or .."),
            ("lo", "is the namespace's loopback interface"),
        ] {
            assert_eq!(
                refusal(&|t| t.endpoints[3].iface = Some(name.into())),
                format!(
                    "endpoint web1@other: iface {name:?} {problem}: it is a Linux interface \
                     name (1-15 bytes, no '/', ':' or whitespace)"
                )
            );
        }
        assert_eq!(
            refusal(&|t| t.endpoints[2].iface = Some("eth1".into())),
            "endpoint web2: iface is only for local endpoints; this one lives on vtep 192.0.2.11"
        );
        assert_eq!(
            refusal(&|t| t.endpoints[1].iface = Some("eth1".into())),
            "endpoint who: a virtual task (app) has no interface in a network namespace: give \
             either app or iface"
        );
        // The longest name Linux takes, and another namespace's eth0, are fine.
        let mut t = good.clone();
        t.endpoints[3].iface = Some("eth-012345678.a".into());
        assert_eq!(t.validate(), Ok(()));
        t.endpoints[3].iface = None;
        t.endpoints[3].netns = Some("t2".into());
        assert_eq!(t.validate(), Ok(()));
    }
}
