#!/usr/bin/env bash
# One TCP flow through the overlay, kernel VXLAN against swarmnet, on the same two-host topology.
#
# Two "hosts" are network namespaces (snb-ha 192.0.2.10, snb-hb 192.0.2.11) joined by a veth
# underlay. Each run puts one task per host on network 10.0.9.0/24 (VNI 4097, MTU 1450):
#   (a) kernel: per host a bridge br0 with a vxlan device (id 4097, dstport 4789, nolearning)
#       and a veth into the task namespace, static FDB and neighbour entries, as Docker does;
#   (b) swarmnet: `swarmnet run --netns HOST` per host (release build), which creates the task
#       namespaces and TAPs itself;
#   (c) swarmnet on an encrypted network (ESP, AES-128-GCM, transport "ip"), same hosts.
# For each it measures one iperf3 TCP flow (client in host A's task, server in host B's) and the
# ping RTT, then prints a table, the swarmnet counters (drops), the kernel's drops on the TAPs and
# UDP sockets (losses the node cannot count), and host A's node resident memory (VmRSS). The table
# gives each flow's CPU per GiB: the two nodes' (from /proc/PID/stat) and the whole machine's
# (from /proc/stat: tasks, iperf3, the kernel's VXLAN and the nodes), with how busy its cores were.
# With --profile it records host A's node (--profile-node b: host B's, the receiver) with perf
# during a 5 s flow of the unencrypted network (--profile-path esp: the encrypted one), and
# prints the top symbols, the time by call path and syscall counts per datagram
# (BENCH_PERF_KEEP=FILE keeps perf.data).
#
# Needs root. Every namespace and process it creates is removed on exit (also on failure or ^C).
# usage: scripts/bench-overlay.sh [--duration S] [--flows N] [--workers N] [--profile [--profile-node a|b] [--profile-path plain|esp]] [--no-offload] [--no-rco] [--esp-transport ip|udp] [--check]
# (--check: compare this run's ratios to the kernel with the newest "figures:" line of the
#  same flows, ESP transport, offloads and RCO in BENCHMARKS.md, the first in the file (newest
#  sections come first); says which got worse by more than 15%, and exits 3 if any did; notes
#  when the kernel's own figure is more than 30% from that line's: another machine)
# (--flows N: N parallel TCP flows, iperf3 -P N; default 1)
# (--no-offload: swarmnet without the TAP offloads, TSO and checksums; UDP GSO/GRO stay on)
# (--no-rco: the nodes without VXLAN remote checksum offload, which a swarm's daemons use:
#  every TCP checksum computed by the sender and verified by the receiver)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=10
FLOWS=1
WORKERS=""
PROFILE=0
NO_OFFLOAD=0
ESP_TRANSPORT=ip
CHECK=0
PROFILE_SECS=5
PROFILE_NODE=a
RCO=true
PROFILE_PATH=plain
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --flows) FLOWS="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        --profile-node) PROFILE_NODE="$2"; shift 2 ;;
        --profile-path) PROFILE_PATH="$2"; shift 2 ;;
        --no-offload) NO_OFFLOAD=1; shift ;;
        --esp-transport) ESP_TRANSPORT="$2"; shift 2 ;;
        --check) CHECK=1; shift ;;
        --no-rco) RCO=false; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "--duration: seconds >= 1" >&2; exit 2; }
[[ "$FLOWS" =~ ^[0-9]+$ && "$FLOWS" -ge 1 && "$FLOWS" -le 32 ]] || { echo "--flows: 1 to 32" >&2; exit 2; }
[[ -z "$WORKERS" || "$WORKERS" =~ ^[0-9]+$ ]] || { echo "--workers: a number" >&2; exit 2; }
[[ "$PROFILE_NODE" == a || "$PROFILE_NODE" == b ]] || { echo "--profile-node: a or b" >&2; exit 2; }
[[ "$PROFILE_PATH" == plain || "$PROFILE_PATH" == esp ]] || { echo "--profile-path: plain or esp" >&2; exit 2; }
[[ "$ESP_TRANSPORT" == ip || "$ESP_TRANSPORT" == udp ]] || { echo "--esp-transport: ip or udp" >&2; exit 2; }
if [[ $EUID -ne 0 ]]; then
    echo "needs root (creates network namespaces, veths, bridges and vxlan devices)" >&2
    exit 1
fi

# --- names (all prefixed snb-) --------------------------------------------------------------
HA=snb-ha HB=snb-hb               # host namespaces
KTA=snb-kt1 KTB=snb-kt2           # task namespaces of the kernel run
STA=snb-web1 STB=snb-web2         # task namespaces of the swarmnet run (created by swarmnet)
ADDR_A=192.0.2.10 ADDR_B=192.0.2.11
IP_A=10.0.9.2 IP_B=10.0.9.3
MAC_A=02:42:0a:00:09:02 MAC_B=02:42:0a:00:09:03
BIN=target/release/swarmnet

WORK=$(mktemp -d /tmp/snb-bench.XXXXXX)
PIDS=()          # background processes we started (iperf3 servers, swarmnet nodes, perf)
CREATED_NS=()    # namespaces we created

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        # swarmnet removes its task namespaces on SIGTERM; give it a moment.
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    local ns
    for ns in "${CREATED_NS[@]}"; do
        if [[ -e /run/netns/$ns ]]; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "== $*" >&2; }

# --- prerequisites ------------------------------------------------------------------------------
need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
}
need_pkg iperf3 iperf3
need_pkg ping iputils-ping
need_pkg python3 python3
if [[ $PROFILE -eq 1 ]]; then
    need_pkg perf linux-perf || log "linux-perf not installable; the profile will be skipped"
fi
log "building swarmnet (release)"
nice -n 5 cargo build --quiet --release --bin swarmnet

for ns in "$HA" "$HB" "$KTA" "$KTB" "$STA" "$STB"; do
    if [[ -e /run/netns/$ns ]]; then
        echo "namespace $ns exists already (another run of this script?); remove it first" >&2
        exit 1
    fi
done

# --- underlay: two hosts joined by a veth -----------------------------------------------------
add_ns() { ip netns add "$1"; CREATED_NS+=("$1"); ip -n "$1" link set lo up; }
add_ns "$HA"
add_ns "$HB"
ip -n "$HA" link add ul0 type veth peer name ul0 netns "$HB"
ip -n "$HA" addr add "$ADDR_A/24" dev ul0
ip -n "$HB" addr add "$ADDR_B/24" dev ul0
ip -n "$HA" link set ul0 up
ip -n "$HB" link set ul0 up

# --- measurement helpers ------------------------------------------------------------------------
wait_connect() { # wait_connect TASKNS IP: ARP/forwarding settle, fail loudly if nothing passes
    local i
    for i in $(seq 20); do
        ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    done
    echo "no connectivity from $1 to $2" >&2
    return 1
}

ping_avg() { # ping_avg TASKNS IP -> average RTT in ms
    ip netns exec "$1" ping -q -c 20 -i 0.05 "$2" \
        | sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p'
}

# rr_avg CLIENTNS SERVERNS SERVERIP -> mean round trip in ms of a 1-byte TCP request and its
# 1-byte answer (netperf TCP_RR's pattern: one connection, 2,000 transactions, Nagle off), as
# seen by the client; python3 on both ends, the same for every data path.
rr_avg() {
    ip netns exec "$2" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5202)); s.listen(1); print("up", flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (b := c.recv(1)):
    c.sendall(b)
' "$3" >"$WORK/rr-server.log" 2>&1 &
    local server=$! i
    PIDS+=("$server")
    for i in $(seq 50); do grep -q up "$WORK/rr-server.log" && break; sleep 0.1; done
    timeout 60 ip netns exec "$1" python3 -c '
import socket, sys, time
c = socket.create_connection((sys.argv[1], 5202)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(200):  # warm-up
    c.sendall(b"x"); c.recv(1)
n = 2000; t = time.perf_counter()
for _ in range(n):
    c.sendall(b"x"); c.recv(1)
print("%.3f" % ((time.perf_counter() - t) / n * 1000))
' "$3"
    wait "$server" 2>/dev/null || true
}

# CPU time (user + system) of processes, in seconds: cpu_secs PID...
cpu_secs() {
    local hz p total=0
    hz=$(getconf CLK_TCK)
    for p in "$@"; do
        total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
    done
    python3 -c 'import sys; print("%.3f" % (int(sys.argv[1]) / int(sys.argv[2])))' "$total" "$hz"
}
# CPU time of the whole machine, every core, in seconds: user, nice, system, irq and softirq
# from /proc/stat (the kernel's VXLAN, the tasks' TCP and iperf3 as well as the nodes)
machine_secs() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.3f\n", ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat
}
# machine_use CPU_BEFORE CPU_AFTER IPERF_JSON -> "S (B%)": the machine's CPU seconds per GiB
# received, and how busy its cores were over the flow, in % of all of them
machine_use() {
    echo "$(cpu_per_gib "$@") ($(python3 -c '
import json, os, sys
secs = json.load(open(sys.argv[3]))["end"]["sum_received"]["seconds"]
print("%.0f%%" % ((float(sys.argv[2]) - float(sys.argv[1])) / secs / os.cpu_count() * 100 if secs else 0))
' "$@"))"
}
# cpu_per_gib CPU_BEFORE CPU_AFTER IPERF_JSON -> CPU seconds per GiB received
cpu_per_gib() {
    python3 -c '
import json, sys
b, a = float(sys.argv[1]), float(sys.argv[2])
r = json.load(open(sys.argv[3]))
gib = r["end"]["sum_received"]["bytes"] / 2**30
print("%.2f" % ((a - b) / gib if gib else 0))
' "$1" "$2" "$3"
}

start_server() { # start_server TASKNS IP
    ip netns exec "$1" iperf3 -s -B "$2" -1 >"$WORK/iperf3-server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 50); do
        ip netns exec "$1" ss -Htln "sport = :5201" | grep -q . && return 0
        sleep 0.1
    done
    echo "iperf3 server did not start in $1" >&2
    return 1
}

iperf_run() { # iperf_run CLIENTNS SERVERNS SERVERIP SECONDS JSONFILE -> GBPS (Gbit/s received)
    start_server "$2" "$3"
    # In the background and waited for, so a signal to this script acts at once.
    timeout $(($4 + 20)) ip netns exec "$1" iperf3 -c "$3" -t "$4" -P "$FLOWS" -J >"$5" &
    local client=$!
    PIDS+=("$client")
    wait "$client"
    wait "$SERVER_PID" 2>/dev/null || true
    GBPS=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
if "error" in r:
    sys.exit("iperf3: " + r["error"])
print("%.3f" % (r["end"]["sum_received"]["bits_per_second"] / 1e9))
' "$5")
}

# --- (a) kernel VXLAN, as Docker builds it ------------------------------------------------------
kernel_host() { # kernel_host HOSTNS TASKNS LOCAL_ADDR TASK_IP TASK_MAC PEER_ADDR PEER_IP PEER_MAC
    local h=$1 t=$2
    add_ns "$t"
    ip -n "$h" link add br0 type bridge
    ip -n "$h" link add vxlan0 type vxlan id 4097 dstport 4789 local "$3" nolearning
    ip -n "$h" link set vxlan0 mtu 1450 master br0
    ip -n "$h" link add veth0 mtu 1450 type veth peer name eth0 netns "$t"
    ip -n "$h" link set veth0 master br0
    ip -n "$h" link set br0 up
    ip -n "$h" link set vxlan0 up
    ip -n "$h" link set veth0 up
    ip -n "$t" link set eth0 address "$5" mtu 1450 up
    ip -n "$t" addr add "$4/24" dev eth0
    bridge -n "$h" fdb add "$8" dev vxlan0 dst "$6" self permanent
    ip -n "$t" neigh add "$7" lladdr "$8" dev eth0 nud permanent
}
kernel_teardown() {
    local h t
    for h in "$HA" "$HB"; do
        ip -n "$h" link del veth0 2>/dev/null || true
        ip -n "$h" link del vxlan0 2>/dev/null || true
        ip -n "$h" link del br0 2>/dev/null || true
    done
    for t in "$KTA" "$KTB"; do
        ip netns del "$t" 2>/dev/null || true
    done
}

log "kernel VXLAN: setting up"
kernel_host "$HA" "$KTA" "$ADDR_A" "$IP_A" "$MAC_A" "$ADDR_B" "$IP_B" "$MAC_B"
kernel_host "$HB" "$KTB" "$ADDR_B" "$IP_B" "$MAC_B" "$ADDR_A" "$IP_A" "$MAC_A"
wait_connect "$KTA" "$IP_B"
K_RTT=$(ping_avg "$KTA" "$IP_B")
K_RR=$(rr_avg "$KTA" "$KTB" "$IP_B")
log "kernel VXLAN: iperf3 ${DURATION}s"
M0=$(machine_secs)
iperf_run "$KTA" "$KTB" "$IP_B" "$DURATION" "$WORK/kernel.json"
K_MACHINE=$(machine_use "$M0" "$(machine_secs)" "$WORK/kernel.json")
K_GBPS=$GBPS
kernel_teardown

# --- (b) swarmnet -------------------------------------------------------------------------------
write_topology() { # write_topology FILE NODE LOCAL_ADDR LOCAL_EP LOCAL_IP LOCAL_NS REMOTE_EP REMOTE_IP REMOTE_ADDR [encrypted]
    local enc_net="" enc=""
    if [[ "${10:-}" == encrypted ]]; then
        # Fixed test keys, ESP as IP protocol 50 (what kernel IPsec puts on the wire).
        enc_net="encrypted = true"
        enc='[encryption]
keys = [ { tag = 1, key = "000102030405060708090a0b0c0d0e0f" }, { tag = 2, key = "101112131415161718191a1b1c1d1e1f" } ]
primary = 2
transport = "'"$ESP_TRANSPORT"'"'
    fi
    cat >"$1" <<EOF
[node]
name = "$2"
data_path_addr = "$3"
remote_checksum_offload = $RCO

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
$enc_net

$enc

[[endpoint]]
name = "$4"
network = "my-network"
ip = "$5"
netns = "$6"

[[endpoint]]
name = "$7"
network = "my-network"
ip = "$8"
vtep = "$9"
EOF
}
write_topology "$WORK/node-a.toml" node-a "$ADDR_A" web1 "$IP_A" "$STA" web2 "$IP_B" "$ADDR_B"
write_topology "$WORK/node-b.toml" node-b "$ADDR_B" web2 "$IP_B" "$STB" web1 "$IP_A" "$ADDR_A"

start_node() { # start_node HOSTNS TOPOLOGY NAME -> sets NODE_PID
    # A directory per node: a run holds a lock beside its counters file.
    mkdir -p "$WORK/$3"
    local args=(run --netns "$1" --topology "$2" --counters "$WORK/$3/counters.json"
                --esp-sequence-file "$WORK/$3/esp-sequence.json")
    [[ -n "$WORKERS" ]] && args+=(--workers "$WORKERS")
    [[ $NO_OFFLOAD -eq 1 ]] && args+=(--no-offload)
    "$BIN" "${args[@]}" >"$WORK/$3.out" 2>"$WORK/$3.err" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    local i
    for i in $(seq 100); do
        grep -qx ready "$WORK/$3.out" && return 0
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "swarmnet $3 did not become ready:" >&2
    cat "$WORK/$3.out" "$WORK/$3.err" >&2
    return 1
}
stop_node() { # stop_node PID NAME: SIGTERM, wait, print its last line (drops)
    kill -TERM "$1"
    wait "$1" || echo "swarmnet $2 exited with status $?" >&2
}
rss() { sed -n 's/^VmRSS:[[:space:]]*//p' "/proc/$1/status"; }

log "swarmnet: starting nodes"
CREATED_NS+=("$STA" "$STB")   # swarmnet creates them; removed here too should a node die
start_node "$HA" "$WORK/node-a.toml" node-a
PID_A=$NODE_PID
start_node "$HB" "$WORK/node-b.toml" node-b
PID_B=$NODE_PID
sleep 1
RSS_IDLE=$(rss "$PID_A")
wait_connect "$STA" "$IP_B"
S_RTT=$(ping_avg "$STA" "$IP_B")
S_RR=$(rr_avg "$STA" "$STB" "$IP_B")
# Idle: both nodes' CPU over 3 s with no traffic.
CPU0=$(cpu_secs "$PID_A" "$PID_B")
sleep 3
S_IDLE=$(python3 -c 'import sys; print("%.1f" % ((float(sys.argv[2]) - float(sys.argv[1])) / 3 * 100))' "$CPU0" "$(cpu_secs "$PID_A" "$PID_B")")
log "swarmnet: iperf3 ${DURATION}s"
CPU0=$(cpu_secs "$PID_A" "$PID_B")
M0=$(machine_secs)
iperf_run "$STA" "$STB" "$IP_B" "$DURATION" "$WORK/swarmnet.json"
S_MACHINE=$(machine_use "$M0" "$(machine_secs)" "$WORK/swarmnet.json")
S_CPU=$(cpu_per_gib "$CPU0" "$(cpu_secs "$PID_A" "$PID_B")" "$WORK/swarmnet.json")
S_GBPS=$GBPS
RSS_AFTER=$(rss "$PID_A")
# Losses outside swarmnet's own counters: the TAP's queue (frames the node did not read in time
# are dropped by the kernel as "tx dropped" on the task's eth0) and the underlay UDP sockets'
# receive buffers (RcvbufErrors in the host namespace).
kernel_losses() {
    local ns
    for ns in "$STA" "$STB"; do
        ip -n "$ns" -s -s link show eth0 | awk -v ns="$ns" '
            /qlen/ {for (i = 1; i < NF; i++) if ($i == "qlen") q = $(i + 1)}
            /^ *RX:/ {getline; rx=$4}
            /^ *TX:/ {getline; tx=$4}
            END {printf "  %s eth0 (TAP, qlen %s): rx dropped %s, tx dropped %s\n", ns, q, rx, tx}'
    done
    for ns in "$HA" "$HB"; do
        ip netns exec "$ns" awk -v ns="$ns" '
            $1 == "Udp:" && !h {for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next}
            $1 == "Udp:" {printf "  %s UDP: RcvbufErrors %s, SndbufErrors %s, InErrors %s\n",
                ns, $col["RcvbufErrors"], $col["SndbufErrors"], $col["InErrors"]}' /proc/net/snmp
    done
}
KLOSS=$(kernel_losses)
S_RETR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"].get("retransmits","?"))' "$WORK/swarmnet.json")
K_RETR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"].get("retransmits","?"))' "$WORK/kernel.json")

PERF_OK=0
# Records the running pair of nodes (see --profile) during a flow of its own.
run_profile() {
    if command -v perf >/dev/null; then
        if [[ $PROFILE_NODE == a ]]; then PERF_PID=$PID_A PERF_HOST=$HA; else PERF_PID=$PID_B PERF_HOST=$HB; fi
        log "profile: perf on node-$PROFILE_NODE (pid $PERF_PID) during a ${PROFILE_SECS}s flow"
        start_server "$STB" "$IP_B"
        ip netns exec "$STA" iperf3 -c "$IP_B" -t $((PROFILE_SECS + 5)) -J >"$WORK/profile-iperf.json" &
        CLIENT_PID=$!
        PIDS+=("$CLIENT_PID")
        sleep 1
        for ev in "" "-e cpu-clock"; do
            # shellcheck disable=SC2086
            if perf record $ev -g -F 999 -p "$PERF_PID" -o "$WORK/perf.data" -- sleep "$PROFILE_SECS" \
                >"$WORK/perf.log" 2>&1; then
                PERF_OK=1
                PERF_EVENT=$(perf evlist -i "$WORK/perf.data" 2>/dev/null | head -n1)
                break
            fi
            log "perf record ${ev:-(default event)} failed: $(tail -n 2 "$WORK/perf.log" | tr '\n' ' ')"
        done
        # Syscall counts over 2 s of the same flow, against the datagrams that left the host:
        # how well the batching works (datagrams per sendmmsg, reads per frame).
        # The interface counters are read by the command perf stat runs, so both cover the same
        # window (perf enables the counters before it starts the command).
        ul="/sys/class/net/ul0/statistics"
        if perf stat -x, -o "$WORK/perf-stat.csv" -p "$PERF_PID" \
            -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev \
            -e syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvmmsg \
            -e syscalls:sys_enter_epoll_wait -- \
            ip netns exec "$PERF_HOST" sh -c "cat $ul/tx_packets $ul/rx_packets; sleep 2; cat $ul/tx_packets $ul/rx_packets" \
            >"$WORK/ul-stat.txt" 2>/dev/null; then
            mapfile -t ulc <"$WORK/ul-stat.txt"
            STAT_TX=$((ulc[2] - ulc[0])) STAT_RX=$((ulc[3] - ulc[1]))
        else
            STAT_TX=""
        fi
        wait "$CLIENT_PID" || true
        wait "$SERVER_PID" 2>/dev/null || true
    else
        log "perf is not available; no profile"
    fi
}
if [[ $PROFILE -eq 1 && $PROFILE_PATH == plain ]]; then
    run_profile
fi

stop_node "$PID_A" node-a
stop_node "$PID_B" node-b

# --- (c) swarmnet, encrypted network (ESP with AES-128-GCM over IP protocol 50) -----------------
write_topology "$WORK/esp-a.toml" node-a "$ADDR_A" web1 "$IP_A" "$STA" web2 "$IP_B" "$ADDR_B" encrypted
write_topology "$WORK/esp-b.toml" node-b "$ADDR_B" web2 "$IP_B" "$STB" web1 "$IP_A" "$ADDR_A" encrypted
log "swarmnet encrypted: starting nodes"
start_node "$HA" "$WORK/esp-a.toml" esp-a
PID_A=$NODE_PID
start_node "$HB" "$WORK/esp-b.toml" esp-b
PID_B=$NODE_PID
wait_connect "$STA" "$IP_B"
E_RTT=$(ping_avg "$STA" "$IP_B")
E_RR=$(rr_avg "$STA" "$STB" "$IP_B")
log "swarmnet encrypted: iperf3 ${DURATION}s"
CPU0=$(cpu_secs "$PID_A" "$PID_B")
M0=$(machine_secs)
iperf_run "$STA" "$STB" "$IP_B" "$DURATION" "$WORK/esp.json"
E_MACHINE=$(machine_use "$M0" "$(machine_secs)" "$WORK/esp.json")
E_CPU=$(cpu_per_gib "$CPU0" "$(cpu_secs "$PID_A" "$PID_B")" "$WORK/esp.json")
E_GBPS=$GBPS
E_RETR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"].get("retransmits","?"))' "$WORK/esp.json")
if [[ $PROFILE -eq 1 && $PROFILE_PATH == esp ]]; then
    run_profile
fi
stop_node "$PID_A" esp-a
stop_node "$PID_B" esp-b

# --- report -------------------------------------------------------------------------------------
ratio() { python3 -c 'import sys; k, s = map(float, sys.argv[1:]); print("%.3f" % (s / k if k else 0))' "$1" "$2"; }
RATIO=$(ratio "$K_GBPS" "$S_GBPS")
E_RATIO=$(ratio "$K_GBPS" "$E_GBPS")
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "flows:   $FLOWS TCP flow(s), iperf3 ${DURATION}s, MTU 1450; workers: ${WORKERS:-default}; offloads: $([[ $NO_OFFLOAD -eq 1 ]] && echo off || echo on); remote checksum offload: $RCO"
echo
printf '| %-14s | %8s | %9s | %9s | %8s | %10s | %12s |\n' "data path" "Gbit/s" "RTT (ms)" "TCP_RR ms" "retrans" "node CPU s/GiB" "machine CPU s/GiB (busy)"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "----------------" "----------" "-----------" "-----------" "----------" "------------" "--------------"
printf '| %-14s | %8s | %9s | %9s | %8s | %10s | %12s |\n' "kernel VXLAN" "$K_GBPS" "$K_RTT" "$K_RR" "$K_RETR" "(softirq)" "$K_MACHINE"
printf '| %-14s | %8s | %9s | %9s | %8s | %10s | %12s |\n' "swarmnet" "$S_GBPS" "$S_RTT" "$S_RR" "$S_RETR" "$S_CPU" "$S_MACHINE"
printf '| %-14s | %8s | %9s | %9s | %8s | %10s | %12s |\n' "swarmnet ESP" "$E_GBPS" "$E_RTT" "$E_RR" "$E_RETR" "$E_CPU" "$E_MACHINE"
echo
echo "ratio swarmnet/kernel: $RATIO; encrypted swarmnet/kernel (unencrypted): $E_RATIO"
echo "RTT swarmnet/kernel: ping $(ratio "$K_RTT" "$S_RTT"), TCP_RR $(ratio "$K_RR" "$S_RR")"
echo "both nodes' CPU while idle: ${S_IDLE}% of one core (busy poll ${SWARMNET_BUSY_POLL_US:-50} us)"
# What one cross-thread wake-up costs here, the floor of a userspace hop: a pipe round trip
# between threads on two cores, from idle (50 ms apart) and back to back.
python3 - <<'EOF_WAKE' || true
import os, select, statistics, threading, time
r1, w1 = os.pipe(); r2, w2 = os.pipe()
def echo():
    os.sched_setaffinity(0, {1})
    while os.read(r1, 1) == b"x":
        os.write(w2, b"x")
t = threading.Thread(target=echo); t.start()
os.sched_setaffinity(0, {0})
def rtt(gap, n):
    v = []
    for _ in range(n):
        time.sleep(gap)
        t0 = time.perf_counter_ns(); os.write(w1, b"x"); os.read(r2, 1)
        v.append((time.perf_counter_ns() - t0) / 1000)
    return statistics.median(v)
idle, busy = rtt(0.05, 40), rtt(0, 400)
os.write(w1, b"q"); t.join()
print(f"thread wake-up round trip (pipe, two cores): {idle:.0f} us from idle, {busy:.0f} us back to back")
EOF_WAKE
# One line a later run's --check compares with (kept in BENCHMARKS.md).
FIGURES="figures: flows=$FLOWS esp=$ESP_TRANSPORT offload=$([[ $NO_OFFLOAD -eq 1 ]] && echo off || echo on) rco=$RCO ratio=$RATIO esp_ratio=$E_RATIO ping_ratio=$(ratio "$K_RTT" "$S_RTT") rr_ratio=$(ratio "$K_RR" "$S_RR") cpu_s_per_gib=$S_CPU esp_cpu_s_per_gib=$E_CPU kernel_gbps=$K_GBPS"
echo "$FIGURES"
echo "node-a resident memory (VmRSS): idle after set-up $RSS_IDLE, after the run $RSS_AFTER"
echo
echo "swarmnet counters after the run:"
for n in node-a node-b esp-a esp-b; do
    echo "  $(grep 'stopped' "$WORK/$n.out" || echo "$n: no summary line")"
done
python3 - "$WORK"/{node-a,node-b,esp-a,esp-b}/counters.json <<'EOF'
import json, sys
for path in sys.argv[1:]:
    c = json.load(open(path))
    name = path.rsplit("/", 2)[-2]
    ports = " ".join(
        f"{p}: rx {v.get('rx_packets')} tx {v.get('tx_packets')}" for p, v in c.get("ports", {}).items()
    )
    print(f"  {name}: drops {c.get('drops') or 'none'}; {ports}")
EOF
echo "kernel-side losses on the swarmnet path (not in swarmnet's counters):"
echo "$KLOSS"
for n in node-a node-b; do
    if [[ -s "$WORK/$n.err" ]]; then
        echo "  $n stderr:"
        sed 's/^/    /' "$WORK/$n.err" | tail -n 20
    fi
done

if [[ $PERF_OK -eq 1 ]]; then
    echo
    echo "profile of node-$PROFILE_NODE (perf, event $PERF_EVENT, ${PROFILE_SECS}s, flat, self time):"
    perf report -i "$WORK/perf.data" --no-children -g none --percent-limit 0.7 \
        --sort dso,sym --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -n 40
    echo
    echo "inclusive (children) time, top entries:"
    perf report -i "$WORK/perf.data" --children -g none --percent-limit 3 \
        --sort sym --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -n 40
    echo
    echo "where the time goes (share of samples whose stack holds the function):"
    perf script -i "$WORK/perf.data" 2>/dev/null | python3 -c '
import sys
samples, cur = [], None
for line in sys.stdin:
    if not line.strip():
        continue
    if not line[0].isspace():
        if cur is not None:
            samples.append(set(cur))
        cur = []
    elif cur is not None and len(line.split()) >= 2:
        cur.append(line.split()[1].split("+")[0])
if cur is not None:
    samples.append(set(cur))
n = len(samples) or 1
def row(label, *need, without=None):
    k = sum(1 for s in samples if all(f in s for f in need) and not (without and without in s))
    print(f"  {100 * k / n:5.1f}%  {label}")
row("sendmmsg to the underlay", "__sys_sendmmsg")
row("  building the skb (ip_make_skb: alloc, copy from user, checksum)", "__sys_sendmmsg", "ip_make_skb")
row("  route lookup per datagram (ip_route_output_flow)", "__sys_sendmmsg", "ip_route_output_flow")
row("  transmit (udp_send_skb: ip_output, qdisc, veth)", "__sys_sendmmsg", "udp_send_skb")
row("    of which the peer host receive run inline (net_rx_action)", "__sys_sendmmsg", "net_rx_action")
row("read from the TAP", "ksys_read")
row("  copy to user (_copy_to_iter)", "ksys_read", "_copy_to_iter")
row("write to the TAP (writev)", "do_writev")
row("  task TCP stack run inline (tcp_v4_rcv)", "do_writev", "tcp_v4_rcv")
row("recvmmsg from the underlay", "__x64_sys_recvmmsg")
row("epoll_wait", "do_epoll_wait")
row("scheduling (__schedule, anywhere)", "__schedule")
row("outside syscalls (swarmnet, libc)", without="do_syscall_64")
'
    echo
    echo "by object (kernel, swarmnet, libc):"
    perf report -i "$WORK/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null \
        | grep '%' | grep -v '^#' | head -n 6
    if [[ -n "${STAT_TX:-}" ]]; then
        echo
        echo "syscalls of node-$PROFILE_NODE in 2 s of the flow; underlay datagrams of its host in that window:" \
            "sent $STAT_TX, received $STAT_RX"
        python3 - "$WORK/perf-stat.csv" "$STAT_TX" "$STAT_RX" <<'EOF'
import sys
tx, rx = int(sys.argv[2]), int(sys.argv[3])
per = {"read": (tx, "frames sent on per read"), "sendmmsg": (tx, "datagrams per sendmmsg"),
       "recvmmsg": (rx, "datagrams per recvmmsg"), "write": (rx, "datagrams per TAP write"),
       "writev": (rx, "datagrams per TAP write")}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0].strip().isdigit():
        continue
    n, name = int(f[0]), f[2].split(":")[-1].replace("sys_enter_", "")
    note = f"{per[name][0] / n:.1f} {per[name][1]}" if n and name in per else ""
    print(f"  {name:<11} {n:>9}  {note}")
EOF
    fi
    echo
    echo "by thread/command:"
    perf report -i "$WORK/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null \
        | grep '%' | grep -v '^#' | head -n 10
    if [[ -n "${BENCH_PERF_KEEP:-}" ]]; then
        cp "$WORK/perf.data" "$BENCH_PERF_KEEP"
        echo "perf data kept in $BENCH_PERF_KEEP"
    fi
fi

if [[ $CHECK -eq 1 ]]; then
    echo
    python3 - "$FIGURES" BENCHMARKS.md <<'EOF' || exit $?
import sys
now_line, path = sys.argv[1], sys.argv[2]
def parse(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
now = parse(now_line)
key = ("flows", "esp", "offload", "rco")
last = None
for line in open(path, encoding="utf-8"):
    line = line.strip()
    if line.startswith("figures: "):
        f = parse(line)
        f.setdefault("rco", "false")  # lines from before remote checksum offload
        if all(f.get(k) == now.get(k) for k in key):
            last = f
            break  # the newest: BENCHMARKS.md puts newer sections first
if last is None:
    print("--check: BENCHMARKS.md has no figures line for "
          + " ".join(f"{k}={now.get(k)}" for k in key) + "; add this run's line to start one")
    sys.exit(0)
TOL = 0.15  # the run-to-run spread of these ratios on this machine
# (name, higher is better)
metrics = [("ratio", True), ("esp_ratio", True), ("ping_ratio", False), ("rr_ratio", False),
           ("cpu_s_per_gib", False), ("esp_cpu_s_per_gib", False)]
worse = []
print("--check against the newest figures in BENCHMARKS.md (%s):" % " ".join(f"{k}={last[k]}" for k in key))
# The ratios hold on one machine: another one's kernel VXLAN may gain more from its hardware
# than a userspace path does. Say so when the baseline moved (lines since kernel_gbps= only).
try:
    was_k, now_k = float(last["kernel_gbps"]), float(now["kernel_gbps"])
    if not (1 - 2 * TOL) * was_k <= now_k <= (1 + 2 * TOL) * was_k:
        print(f"  note: the kernel's VXLAN ran at {now_k} Gbit/s here against {was_k} in that "
              "line's runs: another machine, so a changed ratio may be the machine's, not the code's")
except (KeyError, ValueError):
    pass
for name, higher in metrics:
    try:
        was, cur = float(last[name]), float(now[name])
    except (KeyError, ValueError):
        print(f"  {name}: not in both lines, not compared")
        continue
    bad = cur < was * (1 - TOL) if higher else cur > was * (1 + TOL)
    better = cur > was * (1 + TOL) if higher else cur < was * (1 - TOL)
    verdict = "WORSE" if bad else ("better" if better else "same (within 15%)")
    print(f"  {name}: was {was}, now {cur}: {verdict}")
    if bad:
        worse.append(name)
if worse:
    print("--check: worse than BENCHMARKS.md: " + ", ".join(worse))
    sys.exit(3)
print("--check: nothing worse than BENCHMARKS.md by more than 15%")
EOF
fi
