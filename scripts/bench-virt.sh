#!/usr/bin/env bash
# Virtual tasks and live port changes, measured on two namespaced hosts in one run:
#   1. TCP throughput from a namespaced task on host A to (a) a namespaced task on host B
#      (iperf3) and (b) a virtual `whoami` task on host B (curl of /data?size=N), same hosts,
#      same nodes, same run;
#   2. time to add a task to a running node (SIGHUP to the "reloaded" line): one namespaced
#      task, and 100 virtual tasks at once;
#   3. memory per virtual task: host B's node resident memory (VmRSS) before and after adding
#      N virtual whoami tasks (default 200), divided by N.
#
# Two "hosts" are network namespaces (snv-ha 192.0.2.10, snv-hb 192.0.2.11) joined by a veth
# underlay; each runs `swarmnet run --netns HOST` (release build) on network 10.0.9.0/24.
# Needs root. Every namespace and process it creates is removed on exit (also on failure or ^C).
# usage: scripts/bench-virt.sh [--duration S] [--workers N] [--tasks N]
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=10
WORKERS=2
TASKS=200
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --tasks) TASKS="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "--duration: seconds >= 1" >&2; exit 2; }
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 1 ]] || { echo "--workers: a number >= 1" >&2; exit 2; }
[[ "$TASKS" =~ ^[0-9]+$ && "$TASKS" -ge 100 && "$TASKS" -le 999 ]] || { echo "--tasks: 100 to 999" >&2; exit 2; }
if [[ $EUID -ne 0 ]]; then
    echo "needs root (creates network namespaces and veths)" >&2
    exit 1
fi

HA=snv-ha HB=snv-hb
ADDR_A=192.0.2.10 ADDR_B=192.0.2.11
BIN=target/release/swarmnet
WORK=$(mktemp -d /tmp/snv-bench.XXXXXX)
PIDS=()
CREATED_NS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    local ns
    for ns in "${CREATED_NS[@]}"; do
        [[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "== $*" >&2; }

need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
}
need_pkg iperf3 iperf3
need_pkg curl curl
need_pkg ping iputils-ping
need_pkg python3 python3
log "building swarmnet (release)"
nice -n 5 cargo build --quiet --release --bin swarmnet

for ns in "$HA" "$HB" snv-web1 snv-web2 snv-web3; do
    if [[ -e /run/netns/$ns ]]; then
        echo "namespace $ns exists already (another run of this script?); remove it first" >&2
        exit 1
    fi
done
add_ns() { ip netns add "$1"; CREATED_NS+=("$1"); ip -n "$1" link set lo up; }
add_ns "$HA"
add_ns "$HB"
CREATED_NS+=(snv-web1 snv-web2 snv-web3)   # made by the nodes; removed here if a node is killed
ip -n "$HA" link add ul0 type veth peer name ul0 netns "$HB"
ip -n "$HA" addr add "$ADDR_A/24" dev ul0
ip -n "$HB" addr add "$ADDR_B/24" dev ul0
ip -n "$HA" link set ul0 up
ip -n "$HB" link set ul0 up

# --- topologies ----------------------------------------------------------------------------------
# Network 10.0.8.0/21: the tasks on 10.0.9.x, the many virtual tasks on 10.0.12.x-10.0.15.x.
topo_head() { # head NAME ADDR
    printf '[node]\nname = "%s"\ndata_path_addr = "%s"\n\n[[network]]\nname = "bench"\nvni = 4097\nsubnet = "10.0.8.0/21"\ngateway = "10.0.8.1"\nmtu = 1450\n' "$1" "$2"
}
ep() { # ep NAME IP (local in netns snv-NAME) | ep NAME IP vtep ADDR | ep NAME IP app APP
    printf '\n[[endpoint]]\nname = "%s"\nnetwork = "bench"\nip = "%s"\n' "$1" "$2"
    case "${3:-}" in
        vtep) printf 'vtep = "%s"\n' "$4" ;;
        app) printf 'app = "%s"\n' "$4" ;;
        *) printf 'netns = "snv-%s"\n' "$1" ;;
    esac
}
many() { # many COUNT MODE ARG: COUNT endpoints v1.. at 10.0.12.x-10.0.15.x
    local i
    for i in $(seq "$1"); do
        ep "v$i" "10.0.$((12 + i / 250)).$((1 + i % 250))" "$2" "$3"
    done
}
topo_a() { # topo_a [extra...]
    topo_head node-a "$ADDR_A"
    ep web1 10.0.9.2
    ep web2 10.0.9.3 vtep "$ADDR_B"
    ep who 10.0.9.20 vtep "$ADDR_B"
    "$@"
}
topo_b() {
    topo_head node-b "$ADDR_B"
    ep web1 10.0.9.2 vtep "$ADDR_A"
    ep web2 10.0.9.3
    ep who 10.0.9.20 app whoami
    "$@"
}
none() { :; }

start_node() { # start_node HOST NAME TOPOFILE -> NODE_PID; stdout in $WORK/NAME.out
    "$BIN" run --netns "$1" --workers "$WORKERS" --topology "$3" \
        --counters "$WORK/$2/counters.json" --esp-sequence-file "$WORK/$2/esp.json" \
        >"$WORK/$2.out" 2>"$WORK/$2.err" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    for _ in $(seq 100); do
        grep -qx ready "$WORK/$2.out" 2>/dev/null && return 0
        kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/$2.err" >&2; return 1; }
        sleep 0.1
    done
    echo "node $2 did not get ready" >&2
    return 1
}

reload_ms() { # reload_ms PID NAME TOPOFILE -> ms from SIGHUP to the node's "reloaded" line
    local before t0 t1
    before=$(grep -c '^reloaded' "$WORK/$2.out" || true)
    t0=$(date +%s%N)
    kill -HUP "$1"
    for _ in $(seq 2000); do
        if (( $(grep -c '^reloaded' "$WORK/$2.out" || true) > before )); then
            t1=$(date +%s%N)
            echo $(( (t1 - t0) / 1000000 ))
            return 0
        fi
        grep -q '^reload failed' "$WORK/$2.out" && { cat "$WORK/$2.err" >&2; return 1; }
        sleep 0.005
    done
    echo "no reload answer from $2" >&2
    return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

mkdir -p "$WORK/node-a" "$WORK/node-b"
topo_a none >"$WORK/a.toml"
topo_b none >"$WORK/b.toml"
start_node "$HA" node-a "$WORK/a.toml"; PID_A=$NODE_PID
start_node "$HB" node-b "$WORK/b.toml"; PID_B=$NODE_PID
wait_ping() { # wait_ping IP: the first echo may be lost while a stack resolves the sender
    for _ in $(seq 20); do ip netns exec snv-web1 ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0; done
    echo "no answer from $1" >&2
    return 1
}
wait_ping 10.0.9.3
wait_ping 10.0.9.20

# --- 1. throughput ----------------------------------------------------------------------------------
log "namespaced -> namespaced (iperf3, ${DURATION}s)"
ip netns exec snv-web2 iperf3 -s -B 10.0.9.3 -1 >"$WORK/iperf3-server.log" 2>&1 &
SERVER=$!; PIDS+=("$SERVER")
for _ in $(seq 50); do ip netns exec snv-web2 ss -Htln "sport = :5201" | grep -q . && break; sleep 0.1; done
timeout $((DURATION + 20)) ip netns exec snv-web1 iperf3 -c 10.0.9.3 -t "$DURATION" -J >"$WORK/iperf3.json"
wait "$SERVER" 2>/dev/null || true
NS_GBPS=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.3f" % (r["end"]["sum_received"]["bits_per_second"]/1e9))' "$WORK/iperf3.json")

log "namespaced -> virtual whoami (curl /data, about ${DURATION}s)"
# Size the body from a 1 s probe so the transfer lasts about DURATION seconds.
PROBE=$(ip netns exec snv-web1 curl -s -o /dev/null -w '%{speed_download}' --max-time 30 "http://10.0.9.20/data?size=$((32 << 20))")
SIZE=$(python3 -c "print(min(1 << 30, max(1 << 20, int(float('$PROBE') * $DURATION))))")
VIRT_BPS=$(ip netns exec snv-web1 curl -s -o /dev/null -w '%{speed_download}' --max-time $((DURATION * 4 + 30)) "http://10.0.9.20/data?size=$SIZE")
VIRT_GBPS=$(python3 -c "print('%.3f' % (float('$VIRT_BPS') * 8 / 1e9))")

# --- 2. time to add a task ---------------------------------------------------------------------------
log "adding and removing one namespaced task on node A, 5 times"
ADD_MS=()
for _ in 1 2 3 4 5; do
    topo_a ep web3 10.0.9.4 >"$WORK/a.toml"
    ADD_MS+=("$(reload_ms "$PID_A" node-a "$WORK/a.toml")")
    topo_a none >"$WORK/a.toml"
    reload_ms "$PID_A" node-a "$WORK/a.toml" >/dev/null
done

# --- 3. virtual tasks: time to add, memory each ------------------------------------------------------
RSS0=$(rss_kib "$PID_B")
topo_b many 100 app whoami >"$WORK/b.toml"
VIRT100_MS=$(reload_ms "$PID_B" node-b "$WORK/b.toml")
topo_b many "$TASKS" app whoami >"$WORK/b.toml"
reload_ms "$PID_B" node-b "$WORK/b.toml" >/dev/null
# (RSS counts touched pages: socket buffers never written stay uncharged; benches/virt.rs gives
# the heap bytes a task allocates.)
RSS1=$(rss_kib "$PID_B")
PER_TASK=$(( (RSS1 - RSS0) / TASKS ))

python3 - "$NS_GBPS" "$VIRT_GBPS" "$SIZE" "${ADD_MS[*]}" "$VIRT100_MS" "$RSS0" "$RSS1" "$TASKS" "$PER_TASK" "$WORKERS" <<'PY'
import sys
ns, virt, size, adds, v100, rss0, rss1, tasks, per, workers = sys.argv[1:]
adds = sorted(int(a) for a in adds.split())
print(f"workers per node: {workers}")
print(f"{'TCP throughput, host A task ->':<44}{'Gbit/s':>8}")
print(f"{'  namespaced task on host B (iperf3)':<44}{ns:>8}")
print(f"{'  virtual whoami on host B (curl /data)':<44}{virt:>8}   ({int(size) >> 20} MiB)")
print(f"time to add one namespaced task (SIGHUP to 'reloaded'): median {adds[len(adds)//2]} ms, min {adds[0]} ms, max {adds[-1]} ms")
print(f"time to add 100 virtual tasks in one reload: {v100} ms")
print(f"node B VmRSS: {rss0} KiB with 1 virtual task, {rss1} KiB with {int(tasks)+1}: {per} KiB per virtual task")
PY
