//! Topology parsing: the good example, every refusal with its line and message.

use super::*;

/// Nine lines: a node and network my-network (10.0.9.0/24, vni 4097). Cases append from line 10.
macro_rules! head {
    () => {
        r#"[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
"#
    };
}

/// Two endpoints on my-network after `head!()`: my-web.1 on lines 10-13, my-web.2 on 15-18.
macro_rules! two_endpoints {
    ($name2:literal, $ip2:literal, $extra2:literal) => {
        concat!(
            head!(),
            r#"[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = ""#,
            $name2,
            r#""
network = "my-network"
ip = ""#,
            $ip2,
            "\"\n",
            $extra2
        )
    };
}

fn refusal(text: &str) -> String {
    match Topology::parse(text, "t.toml") {
        Ok(t) => panic!("accepted: {t:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_example_with_defaults() {
    let text = r#"# a node's view
[node]
name = "node-1"
data_path_addr = "192.0.2.10"   # this node's VTEP address

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[network]]
name = "my-net2"
vni = 16777215
subnet = "10.0.10.0/30"
gateway = "10.0.10.2"
mtu = 9000

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"
netns = "web1"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.3"
mac = "02:00:00:00:00:07"
vtep = "192.0.2.11"

[[endpoint]]
name = "db.1"
network = "my-net2"
ip = "10.0.10.1"
mac = "02:00:00:00:00:07"   # the same MAC on another network is fine
"#;
    let t = Topology::parse(text, "t.toml").unwrap();
    assert_eq!(
        t.node,
        Node {
            name: "node-1".into(),
            data_path_addr: Ipv4Addr::new(192, 0, 2, 10),
            data_path_port: 4789,
            remote_checksum_offload: false,
        }
    );
    assert_eq!(
        t.networks,
        vec![
            Network {
                name: "my-network".into(),
                vni: 4097,
                subnet: "10.0.9.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 9, 1),
                mtu: 1450,
                encrypted: false,
                ingress: false,
                bridge: None,
            },
            Network {
                name: "my-net2".into(),
                vni: 16777215,
                subnet: "10.0.10.0/30".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 10, 2),
                mtu: 9000,
                encrypted: false,
                ingress: false,
                bridge: None,
            },
        ]
    );
    let mac7 = MacAddr([2, 0, 0, 0, 0, 7]);
    assert_eq!(
        t.endpoints,
        vec![
            Endpoint {
                name: "my-web.1".into(),
                network: "my-network".into(),
                ip: Ipv4Addr::new(10, 0, 9, 2),
                mac: MacAddr([0x02, 0x42, 10, 0, 9, 2]),
                vtep: None,
                netns: Some("web1".into()),
                iface: None,
                app: None,
                task: None,
            },
            Endpoint {
                name: "my-web.2".into(),
                network: "my-network".into(),
                ip: Ipv4Addr::new(10, 0, 9, 3),
                mac: mac7,
                vtep: Some(Ipv4Addr::new(192, 0, 2, 11)),
                netns: None,
                iface: None,
                app: None,
                task: None,
            },
            Endpoint {
                name: "db.1".into(),
                network: "my-net2".into(),
                ip: Ipv4Addr::new(10, 0, 10, 1),
                mac: mac7,
                vtep: None,
                netns: None,
                iface: None,
                app: None,
                task: None,
            },
        ]
    );
    let local: Vec<_> = t.local_endpoints().map(|e| e.name.as_str()).collect();
    assert_eq!(local, ["my-web.1", "db.1"]);
    assert_eq!(t.network("my-net2").map(|n| n.vni), Some(16777215));
}

#[test]
fn limits_are_inclusive_and_empty_lists_are_valid() {
    let text = r#"[node]
name = "n"
data_path_addr = "192.0.2.10"
data_path_port = 1024
"#;
    let t = Topology::parse(text, "t.toml").unwrap();
    assert_eq!(t.node.data_path_port, 1024);
    assert!(t.networks.is_empty() && t.endpoints.is_empty());

    let text = r#"[node]
name = "n"
data_path_addr = "192.0.2.10"
data_path_port = 49151
[[network]]
name = "a"
vni = 1
subnet = "10.0.0.0/8"
gateway = "10.255.255.254"
mtu = 576
[[network]]
name = "b"
vni = 2
subnet = "128.0.0.0/1"
gateway = "128.0.0.1"
mtu = 65485
"#;
    let t = Topology::parse(text, "t.toml").unwrap();
    assert_eq!(t.node.data_path_port, 49151);
    let mtus: Vec<u16> = t.networks.iter().map(|n| n.mtu).collect();
    assert_eq!(mtus, [576, 65485]);
}

#[test]
fn node_refusals() {
    let cases = [
        (
            "[[network]]\nname = \"x\"\n",
            "t.toml:1: node: missing [node] table",
        ),
        ("", "t.toml:1: node: missing [node] table"),
        (
            "[node]\nname = \"n\"\n",
            "t.toml:1: node: missing field `data_path_addr`",
        ),
        (
            "[node]\nname = \"\"\ndata_path_addr = \"192.0.2.10\"\n",
            "t.toml:2: node: name must not be empty",
        ),
        (
            "[node]\nname = \"../../x\"\ndata_path_addr = \"192.0.2.10\"\n",
            "t.toml:2: node: name \"../../x\" must not contain '/': it is used as a file name",
        ),
        (
            "[node]\nname = \"..\"\ndata_path_addr = \"192.0.2.10\"\n",
            "t.toml:2: node: name \"..\" must not be . or ..: it is used as a file name",
        ),
        (
            "[node]\nname = \"a\\nb\"\ndata_path_addr = \"192.0.2.10\"\n",
            "t.toml:2: node: name \"a\\nb\" must not contain control characters \
             (newlines, tabs, ...): it is used as a file name",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2\"\n",
            "t.toml:3: node: data_path_addr \"192.0.2\" is not an IPv4 address",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"0.0.0.0\"\n",
            "t.toml:3: node: data_path_addr 0.0.0.0 is not a unicast address",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = 1023\n",
            "t.toml:4: node: data_path_port 1023 is outside 1024-49151",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = 49152\n",
            "t.toml:4: node: data_path_port 49152 is outside 1024-49151",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\ndata_path_port = \"4789\"\n",
            "t.toml:4: node: data_path_port must be an integer, not a string",
        ),
        (
            "[node]\nname = \"n\"\ndata_path_addr = \"192.0.2.10\"\n\ndata_path = 4789\n",
            "t.toml:5: node: unknown field `data_path`, expected one of `name`, \
             `data_path_addr`, `data_path_port`, `remote_checksum_offload`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

#[test]
fn network_refusals() {
    let cases = [
        (
            concat!(head!(), "\n[[network]]\nname = \"my-network\"\n"),
            "t.toml:12: network my-network: duplicate network name my-network \
             (first defined on line 6)",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4097\n"),
            "t.toml:13: network my-net2: vni 4097 is already used by network my-network",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 0\n"),
            "t.toml:13: network my-net2: vni 0 is outside 1-16777215",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 16777216\n"
            ),
            "t.toml:13: network my-net2: vni 16777216 is outside 1-16777215",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4098.0\n"),
            "t.toml:13: network my-net2: vni must be an integer, not a float",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvni = 4098\n"),
            "t.toml:11: network my-net2: missing field `subnet`",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.8.0/22\"\n"
            ),
            "t.toml:14: network my-net2: subnet 10.0.8.0/22 overlaps network my-network \
             (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.9.128/25\"\n"
            ),
            "t.toml:14: network my-net2: subnet 10.0.9.128/25 overlaps network my-network \
             (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.1/24\"\n"
            ),
            "t.toml:14: network my-net2: subnet 10.0.10.1/24 has host bits set \
             (network address: 10.0.10.0/24)",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/31\"\n"
            ),
            "t.toml:14: network my-net2: subnet 10.0.10.0/31 has no room for hosts; \
             the prefix must be /30 or shorter",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0\"\n"
            ),
            "t.toml:14: network my-net2: subnet \"10.0.10.0\" is not an IPv4 prefix \
             like 10.0.9.0/24",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.11.1\"\n"
            ),
            "t.toml:15: network my-net2: gateway 10.0.11.1 is outside subnet 10.0.10.0/24",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.10.0\"\n"
            ),
            "t.toml:15: network my-net2: gateway 10.0.10.0 is the network address of \
             10.0.10.0/24",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.10.255\"\n"
            ),
            "t.toml:15: network my-net2: gateway 10.0.10.255 is the broadcast address of \
             10.0.10.0/24",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.10.1\"\nmtu = 575\n"
            ),
            "t.toml:16: network my-net2: mtu 575 is outside 576-65485",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.10.1\"\nmtu = 65486\n"
            ),
            "t.toml:16: network my-net2: mtu 65486 is outside 576-65485",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = \"my-net2\"\nvnii = 4098\n"),
            "t.toml:13: network my-net2: unknown field `vnii`, expected one of `name`, \
             `vni`, `subnet`, `gateway`, `mtu`, `encrypted`, `ingress`, `driver`, `icc`",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"gw\"\ndriver = \"bridge\"\nvni = 4098\n",
                "subnet = \"172.18.0.0/16\"\ngateway = \"172.18.0.1\"\n"
            ),
            "t.toml:14: network gw: a bridge network has no vni (it never leaves the node)",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"gw\"\ndriver = \"macvlan\"\n",
                "subnet = \"172.18.0.0/16\"\ngateway = \"172.18.0.1\"\n"
            ),
            "t.toml:13: network gw: driver \"macvlan\" must be \"overlay\" or \"bridge\"",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"my-net2\"\nvni = 4098\nsubnet = \"10.0.10.0/24\"\n",
                "gateway = \"10.0.10.1\"\nicc = true\n"
            ),
            "t.toml:16: network my-net2: icc is a bridge network's setting (driver = \"bridge\")",
        ),
        (
            concat!(
                head!(),
                "\n[[network]]\nname = \"gw\"\ndriver = \"bridge\"\ningress = true\n",
                "subnet = \"172.18.0.0/16\"\ngateway = \"172.18.0.1\"\n"
            ),
            "t.toml:13: network gw: a bridge network cannot be encrypted or the ingress network",
        ),
        (
            concat!(head!(), "\n[[network]]\nname = 7\n"),
            "t.toml:12: network #2: name must be a string, not an integer",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

#[test]
fn endpoint_refusals() {
    let cases = [
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.8.2\"\n"
            ),
            "t.toml:13: endpoint my-web.1: ip 10.0.8.2 is outside network my-network \
             (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.1\"\n"
            ),
            "t.toml:13: endpoint my-web.1: ip 10.0.9.1 is the gateway of network my-network \
             (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.0\"\n"
            ),
            "t.toml:13: endpoint my-web.1: ip 10.0.9.0 is the network address of network \
             my-network (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\n",
                "ip = \"10.0.9.255\"\n"
            ),
            "t.toml:13: endpoint my-web.1: ip 10.0.9.255 is the broadcast address of network \
             my-network (10.0.9.0/24)",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9\"\n"
            ),
            "t.toml:13: endpoint my-web.1: ip \"10.0.9\" is not an IPv4 address",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-net\"\nip = \"10.0.9.2\"\n"
            ),
            "t.toml:12: endpoint my-web.1: unknown network my-net",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\n"
            ),
            "t.toml:10: endpoint my-web.1: missing field `ip`",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nvlan = 3\n"
            ),
            "t.toml:13: endpoint my-web.1: unknown field `vlan`, expected one of `name`, \
             `network`, `ip`, `mac`, `vtep`, `netns`, `iface`, `app`, `task`",
        ),
        (
            two_endpoints!("my-web.1", "10.0.9.3", ""),
            "t.toml:16: endpoint my-web.1: duplicate endpoint name my-web.1 \
             (first defined on line 11)",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.2", ""),
            "t.toml:18: endpoint my-web.2: ip 10.0.9.2 is already used by endpoint my-web.1 \
             on network my-network",
        ),
        (
            // my-web.1 derives 02:42:0a:00:09:02.
            two_endpoints!("my-web.2", "10.0.9.3", "mac = \"02:42:0a:00:09:02\"\n"),
            "t.toml:19: endpoint my-web.2: mac 02:42:0a:00:09:02 is already used by endpoint \
             my-web.1 on network my-network",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
                "mac = \"02:42:0a:00:09:03\"\n\n",
                "[[endpoint]]\nname = \"my-web.2\"\nnetwork = \"my-network\"\nip = \"10.0.9.3\"\n"
            ),
            "t.toml:19: endpoint my-web.2: mac 02:42:0a:00:09:03 (derived from ip 10.0.9.3) \
             is already used by endpoint my-web.1 on network my-network",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "mac = \"01:00:5e:00:00:01\"\n"),
            "t.toml:19: endpoint my-web.2: mac 01:00:5e:00:00:01 is a multicast address",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "mac = \"ff:ff:ff:ff:ff:ff\"\n"),
            "t.toml:19: endpoint my-web.2: mac ff:ff:ff:ff:ff:ff is the broadcast address",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "mac = \"00:00:00:00:00:00\"\n"),
            "t.toml:19: endpoint my-web.2: mac 00:00:00:00:00:00 is all zeros",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "mac = \"02:42:0a\"\n"),
            "t.toml:19: endpoint my-web.2: mac \"02:42:0a\" is not a MAC address like \
             02:42:0a:00:09:02",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "vtep = \"192.0.2.10\"\n"),
            "t.toml:19: endpoint my-web.2: vtep 192.0.2.10 is this node's data_path_addr; \
             an endpoint on this node must omit vtep",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "vtep = \"224.0.0.1\"\n"),
            "t.toml:19: endpoint my-web.2: vtep 224.0.0.1 is not a unicast address",
        ),
        (
            two_endpoints!(
                "my-web.2",
                "10.0.9.3",
                "vtep = \"192.0.2.11\"\nnetns = \"web2\"\n"
            ),
            "t.toml:20: endpoint my-web.2: netns is only for local endpoints; \
             this one lives on vtep 192.0.2.11",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "netns = \"../web2\"\n"),
            "t.toml:19: endpoint my-web.2: netns \"../web2\" must not contain '/': \
             it is used as a file name",
        ),
        (
            two_endpoints!("my-web.2", "10.0.9.3", "netns = \"my-web.1\"\n"),
            "t.toml:19: endpoint my-web.2: interface eth0 of network namespace my-web.1 is \
             already endpoint my-web.1's (line 11); give one of them another `iface` or `netns`",
        ),
        (
            concat!(
                head!(),
                "[[endpoint]]\nname = \"my-web.1\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
                "netns = \"web\"\n\n",
                "[[endpoint]]\nname = \"web\"\nnetwork = \"my-network\"\nip = \"10.0.9.3\"\n"
            ),
            "t.toml:17: endpoint web: interface eth0 of network namespace web is already \
             endpoint my-web.1's (line 11); give one of them another `iface` or `netns`",
        ),
        (
            two_endpoints!("", "10.0.9.3", ""),
            "t.toml:16: endpoint #2: name \"\" must not be empty: it is used as a file name",
        ),
        (
            two_endpoints!("web/2", "10.0.9.3", ""),
            "t.toml:16: endpoint web/2: name \"web/2\" must not contain '/': \
             it is used as a file name",
        ),
        (
            two_endpoints!("web\\u00002", "10.0.9.3", ""),
            "t.toml:16: endpoint #2: name \"web\\02\" must not contain NUL: \
             it is used as a file name",
        ),
        (
            two_endpoints!(".", "10.0.9.3", ""),
            "t.toml:16: endpoint .: name \".\" must not be . or ..: it is used as a file name",
        ),
        (
            two_endpoints!("..", "10.0.9.3", ""),
            "t.toml:16: endpoint ..: name \"..\" must not be . or ..: \
             it is used as a file name",
        ),
        (
            two_endpoints!("underlay", "10.0.9.3", ""),
            "t.toml:16: endpoint underlay: name \"underlay\" is reserved for the underlay \
             capture of replay",
        ),
        (
            two_endpoints!("egress", "10.0.9.3", ""),
            "t.toml:16: endpoint egress: name \"egress\" is reserved for the egress \
             capture of replay",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

/// `head!()` with my-network encrypted (line 10) and an `[encryption]` table from line 12.
macro_rules! encrypted {
    ($($enc:literal),+) => {
        concat!(head!(), "encrypted = true\n\n[encryption]\n", $($enc),+)
    };
}

const KEYS: &str = "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" }, \
                    { tag = 2, key = \"101112131415161718191a1b1c1d1e1f\" }, \
                    { tag = 3, key = \"202122232425262728292a2b2c2d2e2f\" } ]\n";

#[test]
fn encryption_as_the_issue_gives_it() {
    let text = format!(
        "{}encrypted = true\n\n[encryption]\n{KEYS}primary = 2\n\
         transport = \"ip\"      # \"ip\": ESP as IP protocol 50 (raw sockets)\n\
         udp_port = 4500       # for transport = \"udp\"\n",
        head!()
    );
    let t = Topology::parse(&text, "t.toml").unwrap();
    let e = t.encryption.as_ref().unwrap();
    assert_eq!(e.keys.iter().map(|k| k.tag).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(e.keys[1].key[0], 0x10);
    assert_eq!(e.keys[1].key[15], 0x1f);
    assert_eq!(e.primary, 2);
    assert_eq!(e.transport, EspTransport::Ip);
    assert_eq!(e.udp_port, 4500);
    assert!(t.networks[0].encrypted);
    assert_eq!(t.networks[0].mtu, 1416, "1500 - 50 - 34, a multiple of 4");
    assert!(
        !format!("{e:?}").contains("16"),
        "Debug never shows keys: {e:?}"
    );

    let udp = text.replace("\"ip\"      #", "\"udp\"      #");
    let t = Topology::parse(&udp, "t.toml").unwrap();
    assert_eq!(t.encryption.as_ref().unwrap().transport, EspTransport::Udp);
    assert_eq!(
        t.networks[0].mtu, 1408,
        "1500 - 50 - 42 with the UDP header"
    );

    // An explicit mtu wins; the [encryption] table alone encrypts nothing.
    let explicit = text.replace("encrypted = true", "encrypted = true\nmtu = 1300");
    assert_eq!(
        Topology::parse(&explicit, "t.toml").unwrap().networks[0].mtu,
        1300
    );
    let plain = text.replace("encrypted = true", "encrypted = false");
    let t = Topology::parse(&plain, "t.toml").unwrap();
    assert!(!t.networks[0].encrypted && t.encryption.is_some());
    assert_eq!(t.networks[0].mtu, 1450);

    // Defaults: transport "ip", udp_port 4500; a single key is a valid ring.
    let min = concat!(
        head!(),
        "encrypted = true\n[encryption]\n",
        "keys = [ { tag = 7, key = \"00112233445566778899AABBCCDDEEFF\" } ]\nprimary = 7\n"
    );
    let e = Topology::parse(min, "t.toml").unwrap().encryption.unwrap();
    assert_eq!((e.transport, e.udp_port), (EspTransport::Ip, 4500));
    assert_eq!(e.keys[0].key[15], 0xff);
    assert_eq!(encrypted_mtu(9000, EspTransport::Ip), 8916);
    assert_eq!(encrypted_mtu(1499, EspTransport::Ip), 1412);
}

#[test]
fn encryption_refusals() {
    let cases = [
        (
            concat!(head!(), "encrypted = true\n"),
            "t.toml:10: network my-network: encrypted = true needs an [encryption] table \
             with the swarm's keys",
        ),
        (
            concat!(head!(), "encrypted = 1\n"),
            "t.toml:10: network my-network: encrypted must be a boolean, not an integer",
        ),
        (
            encrypted!("primary = 1\n"),
            "t.toml:12: encryption: missing field `keys`",
        ),
        (
            encrypted!("keys = []\nprimary = 1\n"),
            "t.toml:13: encryption: keys must hold 1 to 3 keys, not 0",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                "  { tag = 2, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                "  { tag = 3, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                "  { tag = 4, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n"
            ),
            "t.toml:13: encryption: keys must hold 1 to 3 keys, not 4",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" },\n",
                "  { tag = 1, key = \"101112131415161718191a1b1c1d1e1f\" } ]\nprimary = 1\n"
            ),
            "t.toml:14: encryption: key tag 1 is given twice (first on line 13)",
        ),
        (
            encrypted!("keys = [ { tag = 1, key = \"0001\" } ]\nprimary = 1\n"),
            "t.toml:13: encryption: key of tag 1 must be 32 hex digits (a 16-byte AES-128 \
             key); it has 4 characters",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"00010203040506070809g0b0c0d0e0f0\" } ]\nprimary = 1\n"
            ),
            "t.toml:13: encryption: key of tag 1 must be 32 hex digits (a 16-byte AES-128 \
             key); character 21 is not a hex digit",
        ),
        (
            encrypted!("keys = [ { tag = -1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
            "t.toml:13: encryption: tag -1 is outside 0-4294967295",
        ),
        (
            encrypted!("keys = [ { key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
            "t.toml:13: encryption: missing field `tag`",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\", x = 1 } ]\n"
            ),
            "t.toml:13: encryption: unknown field `x`, expected `tag` or `key`",
        ),
        (
            encrypted!("keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\n"),
            "t.toml:12: encryption: missing field `primary`",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 2\n"
            ),
            "t.toml:14: encryption: primary 2 is not the tag of any key (tags: 1)",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                "transport = \"tcp\"\n"
            ),
            "t.toml:15: encryption: transport \"tcp\" must be \"ip\" (ESP as IP protocol 50, \
             raw sockets) or \"udp\" (ESP in UDP, RFC 3948)",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                "udp_port = 4789\n"
            ),
            "t.toml:15: encryption: udp_port 4789 is the node's data_path_port; ESP in UDP \
             needs a port of its own",
        ),
        (
            encrypted!(
                "keys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\n",
                "udp_port = 80\n"
            ),
            "t.toml:15: encryption: udp_port 80 is outside 1024-49151",
        ),
        (
            encrypted!("keys = 3\nprimary = 1\n"),
            "t.toml:13: encryption: invalid type: integer `3`, expected a sequence",
        ),
        (
            encrypted!("cipher = \"aes\"\n"),
            "t.toml:13: encryption: unknown field `cipher`, expected one of `keys`, \
             `primary`, `transport`, `udp_port`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

#[test]
fn toml_refusals() {
    let cases = [
        (
            "[node]\nname = \"node-1\"\ndata_path_addr = \n",
            "t.toml:3: topology: invalid TOML: invalid string; expected `\"`, `'`",
        ),
        (
            "[node]\nname = \"node-1\"\n\n[node]\n",
            "t.toml:4: topology: invalid TOML: invalid table header; \
             duplicate key `node` in document root",
        ),
        (
            "[node]\nname = \"node-1\"\ndata_path_addr = \"192.0.2.10\"\n[nodes]\n",
            "t.toml:4: topology: unknown field `nodes`, expected one of `node`, `network`, \
             `endpoint`, `service`, `encryption`",
        ),
        (
            "[node]\nname = \"node-1\"\ndata_path_addr = \"192.0.2.10\"\n[network]\n",
            "t.toml:4: topology: invalid type: map, expected a sequence",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

#[test]
fn names_used_as_paths_have_a_bounded_length() {
    let long = "n".repeat(1 << 20);
    let text = format!("[node]\nname = \"{long}\"\ndata_path_addr = \"192.0.2.10\"\n");
    assert_eq!(
        refusal(&text),
        format!(
            "t.toml:2: node: name \"{}\"... is 1048576 bytes long, more than 128: \
             it is used as a file name",
            "n".repeat(40)
        )
    );
    let ok = format!(
        "[node]\nname = \"{}\"\ndata_path_addr = \"192.0.2.10\"\n",
        "n".repeat(MAX_FILE_NAME)
    );
    assert!(Topology::parse(&ok, "t.toml").is_ok());
    let text = format!(
        "{}[[endpoint]]\nname = \"{}\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
        head!(),
        "e".repeat(MAX_FILE_NAME + 1)
    );
    assert_eq!(
        refusal(&text),
        format!(
            "t.toml:11: endpoint #1: name \"{}\"... is 129 bytes long, more than 128: \
             it is used as a file name",
            "e".repeat(40)
        )
    );
    let text = concat!(
        head!(),
        "[[endpoint]]\nname = \"web\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
        "netns = \"a\\tb\"\n"
    );
    assert_eq!(
        refusal(text),
        "t.toml:14: endpoint web: netns \"a\\tb\" must not contain control characters \
         (newlines, tabs, ...): it is used as a file name"
    );
}

#[test]
fn virtual_tasks_name_their_app() {
    let text = concat!(
        head!(),
        "[[endpoint]]\nname = \"who\"\nnetwork = \"my-network\"\nip = \"10.0.9.2\"\n",
        "app = \"whoami\"\n\n",
        "[[endpoint]]\nname = \"get\"\nnetwork = \"my-network\"\nip = \"10.0.9.3\"\n",
        "app = \"fetch http://10.0.9.2/data?size=10\"\n"
    );
    let t = Topology::parse(text, "t.toml").unwrap();
    assert_eq!(t.endpoints[0].app, Some(App::Whoami));
    assert_eq!(
        t.endpoints[1].app,
        Some(App::Fetch(FetchTarget {
            host: FetchHost::Ip(Ipv4Addr::new(10, 0, 9, 2)),
            port: 80,
            path: "/data?size=10".into()
        }))
    );
    assert!(t.endpoints.iter().all(Endpoint::is_virtual));
    assert_eq!(t.namespaced_endpoints().count(), 0);
    let app = App::parse("lookup my-web  tasks.my-web").unwrap();
    assert_eq!(
        app,
        App::Lookup(vec!["my-web".into(), "tasks.my-web".into()])
    );
    assert_eq!(App::parse(&app.to_value()), Ok(app));
    let cases = [
        (
            two_endpoints!("web", "10.0.9.3", "app = \"nginx\"\n"),
            "t.toml:19: endpoint web: app must be \"whoami\", \"echo\", \
             \"fetch http://HOST[:PORT]/PATH\" or \"lookup NAME [NAME...]\", not \"nginx\"",
        ),
        (
            two_endpoints!("web", "10.0.9.3", "app = \"fetch ftp://x\"\n"),
            "t.toml:19: endpoint web: app must be \"whoami\", \"echo\", \
             \"fetch http://HOST[:PORT]/PATH\" or \"lookup NAME [NAME...]\": \"ftp://x\" is not an http://HOST[:PORT]/PATH URL (HOST: an IPv4 address or a name)",
        ),
        (
            two_endpoints!("web", "10.0.9.3", "app = \"lookup web tasks..web\"\n"),
            "t.toml:19: endpoint web: app must be \"whoami\", \"echo\", \
             \"fetch http://HOST[:PORT]/PATH\" or \"lookup NAME [NAME...]\": lookup name \
             \"tasks..web\" has an empty label or one longer than 63 bytes",
        ),
        (
            two_endpoints!("web", "10.0.9.3", "app = \"lookup  \"\n"),
            "t.toml:19: endpoint web: app must be \"whoami\", \"echo\", \
             \"fetch http://HOST[:PORT]/PATH\" or \"lookup NAME [NAME...]\": lookup takes 1 \
             to 16 names, not 0",
        ),
        (
            two_endpoints!("web", "10.0.9.3", "vtep = \"192.0.2.11\"\napp = \"echo\"\n"),
            "t.toml:20: endpoint web: app is only for local endpoints; this one lives on vtep \
             192.0.2.11",
        ),
        (
            two_endpoints!("web", "10.0.9.3", "netns = \"x\"\napp = \"echo\"\n"),
            "t.toml:20: endpoint web: a virtual task (app) has no network namespace: give \
             either app or netns",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(text), want, "{text}");
    }
}

#[test]
fn line_index_matches_a_count_of_newlines() {
    let text = "a\nbb\n\nccc\nd";
    let index = parse::LineIndex::new(text);
    for offset in 0..text.len() + 3 {
        let want = 1 + text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        assert_eq!(index.line(offset), want, "offset {offset}");
    }
    assert_eq!(parse::LineIndex::new("").line(0), 1);
}

#[test]
fn non_utf8_topology_names_its_line() {
    let dir = std::env::temp_dir().join(format!("swarmnet-topology-u8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("topology.toml");
    let mut bytes = b"[node]\nname = \"n".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"\"\ndata_path_addr = \"192.0.2.10\"\n");
    std::fs::write(&file, bytes).unwrap();
    let err = Topology::load(&file).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.line(), Some(2));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: topology: not UTF-8 text: byte 10 of the line (0xff) starts no UTF-8 \
             character; TOML files are UTF-8",
            file.display()
        )
    );
}

#[test]
fn load_names_the_path() {
    let path = std::env::temp_dir().join(format!("swarmnet-topology-{}", std::process::id()));
    let missing = path.join("absent.toml");
    let err = Topology::load(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read topology: {}",
            missing.display(),
            std::io::Error::from_raw_os_error(2)
        )
    );
    assert_eq!(err.line(), None);

    std::fs::create_dir_all(&path).unwrap();
    let file = path.join("topology.toml");
    std::fs::write(&file, concat!(head!(), "mtu = 1\n")).unwrap();
    let err = Topology::load(&file).unwrap_err();
    std::fs::remove_dir_all(&path).unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:10: network my-network: mtu 1 is outside 576-65485",
            file.display()
        )
    );
    assert_eq!(err.line(), Some(10));
}

/// Two endpoints (lines 10-18) and a service after them, from line 20.
macro_rules! service {
    ($body:literal) => {
        concat!(
            two_endpoints!("my-web.2", "10.0.9.3", "task = \"my-web.2.xyz\"\n"),
            "\n[[service]]\n",
            $body
        )
    };
}

#[test]
fn services_name_their_tasks_and_vip() {
    let t = Topology::parse(
        service!(
            "name = \"my-web\"\nnetwork = \"my-network\"\nvip = \"10.0.9.100\"\n\
             aliases = [\"web\"]\ntasks = [\"my-web.1\", \"my-web.2\"]\n"
        ),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        t.services,
        vec![Service {
            name: "my-web".into(),
            network: "my-network".into(),
            vip: Some(Ipv4Addr::new(10, 0, 9, 100)),
            aliases: vec!["web".into()],
            tasks: vec!["my-web.1".into(), "my-web.2".into()],
        }]
    );
    assert_eq!(t.endpoints[0].task_name(), "my-web.1");
    assert_eq!(t.endpoints[1].task_name(), "my-web.2.xyz");
    // Written and read back, a view with services is the same view.
    assert_eq!(Topology::parse(&t.to_toml(), "view").unwrap(), t);
    // dnsrr: no vip; no tasks yet.
    let t = Topology::parse(
        service!("name = \"db\"\nnetwork = \"my-network\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!((t.services[0].vip, t.services[0].tasks.len()), (None, 0));
}

#[test]
fn service_refusals() {
    let cases = [
        ("network = \"my-network\"\n", "t.toml:21: service #1: missing field `name`"),
        (
            "name = \"a b\"\nnetwork = \"my-network\"\n",
            "t.toml:22: service a b: name \"a b\" must not contain ' ' (letters, digits, '-', '_' and '.' only)",
        ),
        ("name = \"w\"\nnetwork = \"nope\"\n", "t.toml:23: service w: unknown network nope"),
        (
            "name = \"w\"\nnetwork = \"my-network\"\nvip = \"10.0.9.2\"\n",
            "t.toml:24: service w: vip 10.0.9.2 is endpoint my-web.1's address on network my-network (10.0.9.0/24)",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\nvip = \"10.0.9.1\"\n",
            "t.toml:24: service w: vip 10.0.9.1 is the gateway of network my-network (10.0.9.0/24)",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\nvip = \"10.1.9.1\"\n",
            "t.toml:24: service w: vip 10.1.9.1 is outside network my-network (10.0.9.0/24)",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\ntasks = [\"my-web.9\"]\n",
            "t.toml:24: service w: tasks: unknown endpoint my-web.9",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\ntasks = [\"my-web.1\", \"my-web.1\"]\n",
            "t.toml:24: service w: tasks: endpoint my-web.1 is listed twice",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\naliases = [\"W\"]\n",
            "t.toml:22: service w: alias W is already a name of service w",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\naliases = 3\n",
            "t.toml:24: service w: aliases must be an array of strings, not an integer",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\n\n[[service]]\nname = \"W\"\nnetwork = \"my-network\"\n",
            "t.toml:26: service W: service W is already on network my-network",
        ),
        (
            "name = \"w\"\nnetwork = \"my-network\"\n\n[[service]]\nname = \"v\"\nnetwork = \"my-network\"\naliases = [\"W\"]\n",
            "t.toml:26: service v: name W is already service w's on network my-network",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{}{body}", service!(""));
        assert_eq!(refusal(&text), want, "{body}");
    }
}

#[test]
fn remote_checksum_offload_is_a_node_setting_off_by_default() {
    assert!(
        !Topology::parse(head!(), "t.toml")
            .unwrap()
            .node
            .remote_checksum_offload
    );
    let text = head!().replace(
        "data_path_addr = \"192.0.2.10\"\n",
        "data_path_addr = \"192.0.2.10\"\nremote_checksum_offload = true\n",
    );
    let t = Topology::parse(&text, "t.toml").unwrap();
    assert!(t.node.remote_checksum_offload);
    assert_eq!(Topology::parse(&t.to_toml(), "view").unwrap(), t);
    let bad = text.replace("= true\n", "= \"yes\"\n");
    let err = Topology::parse(&bad, "t.toml").unwrap_err().to_string();
    assert!(
        err.contains("remote_checksum_offload must be a boolean, not a string"),
        "{err}"
    );
}
