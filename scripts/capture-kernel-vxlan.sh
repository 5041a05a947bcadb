#!/usr/bin/env bash
# Regenerates fixtures/kernel-vxlan/: VXLAN traffic produced by the Linux kernel's own VXLAN
# device, so swarmnet's decapsulation is checked against an implementation we did not write.
#
# Two network namespaces joined by a veth pair:
#   kern  192.0.2.11/24  kernel vxlan vx0 (VNI 4097, port 4789), 10.0.9.3/24, MAC 02:42:0a:00:09:03,
#                        peer 10.0.9.2 (02:42:0a:00:09:02) programmed statically behind 192.0.2.10,
#                        the way Docker swarm programs its peers (no learning, no flooding).
#   node  192.0.2.10/24  nothing listens here: it only stands where a swarmnet node would.
# From kern: 3 pings, one TCP SYN to :80, one UDP datagram to :5353, one 1400-byte ping.
#
# Output:
#   in/underlay.pcap    the encapsulated packets as seen on node's veth ('udp port 4789')
#   kernel-inner.pcap   the inner frames as the kernel saw them on vx0 (ground truth)
#   topology.toml       node-1's view: the network and both endpoints
#
# Checksum offload is turned off on vx0 and on kern's veth, so every checksum in the captures is the
# finished one a NIC would put on the wire (with offload on, veth delivers and tcpdump records them
# half-done: pseudo-header sum only).
#
# Needs root, iproute2, ethtool, tcpdump and ping (iputils). Sends traffic only inside the
# namespaces it creates and removes them on exit, also on failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $EUID -ne 0 ]]; then
    echo "capture-kernel-vxlan: needs root (network namespaces, tcpdump)" >&2
    exit 1
fi
for tool in ip bridge ethtool tcpdump ping timeout; do
    command -v "$tool" >/dev/null || { echo "capture-kernel-vxlan: $tool not found" >&2; exit 1; }
done

OUT=fixtures/kernel-vxlan
NS_KERN="snfx-kern-$$"
NS_NODE="snfx-node-$$"
TMP="$(mktemp -d)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_KERN" 2>/dev/null || true
    ip netns del "$NS_NODE" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

kern() { ip netns exec "$NS_KERN" "$@"; }
node() { ip netns exec "$NS_NODE" "$@"; }

# --- topology ---
ip netns add "$NS_KERN"
ip netns add "$NS_NODE"
for ns in "$NS_KERN" "$NS_NODE"; do
    # No IPv6: keeps router solicitations and MLD out of the captures.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
    ip -n "$ns" link set lo up
done

ip link add veth-kern netns "$NS_KERN" type veth peer name veth-node netns "$NS_NODE"
ip -n "$NS_KERN" addr add 192.0.2.11/24 dev veth-kern
ip -n "$NS_NODE" addr add 192.0.2.10/24 dev veth-node
ip -n "$NS_KERN" link set veth-kern up
ip -n "$NS_NODE" link set veth-node up

ip -n "$NS_KERN" link add vx0 type vxlan id 4097 dstport 4789 local 192.0.2.11 nolearning
ip -n "$NS_KERN" link set vx0 mtu 1450 address 02:42:0a:00:09:03
ip -n "$NS_KERN" addr add 10.0.9.3/24 dev vx0
ip -n "$NS_KERN" link set vx0 up
kern ethtool -K veth-kern tx off >/dev/null
kern ethtool -K vx0 tx off >/dev/null
ip -n "$NS_KERN" neigh add 10.0.9.2 lladdr 02:42:0a:00:09:02 dev vx0 nud permanent
kern bridge fdb add 02:42:0a:00:09:02 dev vx0 dst 192.0.2.10 self permanent

# --- capture ---
# start_capture NS IFACE FILE FILTER: runs tcpdump in NS and returns once it is capturing.
start_capture() {
    local ns=$1 iface=$2 file=$3 filter=$4 err="$TMP/$(basename "$3").err" i
    # --immediate-mode: without it packets still sitting in a TPACKET_V3 ring block are lost when
    # SIGINT arrives within the block timeout, which is the whole of this short capture.
    ip netns exec "$ns" tcpdump --immediate-mode -U -n -s 0 -Z root -i "$iface" -w "$file" "$filter" \
        2>"$err" &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        grep -qs "listening on" "$err" && return 0
        kill -0 "$!" 2>/dev/null || break
        sleep 0.05
    done
    echo "capture-kernel-vxlan: tcpdump on $iface did not start:" >&2
    cat "$err" >&2
    exit 1
}

start_capture "$NS_NODE" veth-node "$TMP/underlay.pcap" 'udp port 4789'
start_capture "$NS_KERN" vx0 "$TMP/kernel-inner.pcap" 'ip host 10.0.9.2'

# --- traffic (nothing answers: only what the kernel sends matters) ---
kern ping -n -q -c 3 -i 0.2 -W 1 10.0.9.2 >/dev/null || true
# One SYN: stop before the first retransmission (initial RTO is 1 s).
kern timeout 0.5 bash -c 'exec 3<>/dev/tcp/10.0.9.2/80' 2>/dev/null || true
kern bash -c 'echo swarmnet-fixture > /dev/udp/10.0.9.2/5353'
kern ping -n -q -c 1 -s 1400 -W 1 10.0.9.2 >/dev/null || true

for pid in "${PIDS[@]}"; do
    kill -INT "$pid"
    wait "$pid" || true
done
PIDS=()

# --- results ---
mkdir -p "$OUT/in"
mv "$TMP/underlay.pcap" "$OUT/in/underlay.pcap"
mv "$TMP/kernel-inner.pcap" "$OUT/kernel-inner.pcap"
cat >"$OUT/topology.toml" <<'EOF'
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "kernel-peer"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
EOF

echo "kernel $(uname -r), fixtures in $OUT/:"
for f in "$OUT/in/underlay.pcap" "$OUT/kernel-inner.pcap"; do
    if command -v capinfos >/dev/null; then
        echo "  $f: $(capinfos -M -c "$f" | awk -F': *' '/Number of packets/ {print $2}') packets"
    else
        echo "  $f: $(tcpdump -n -r "$f" 2>/dev/null | wc -l) packets"
    fi
done
