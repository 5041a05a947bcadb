#!/usr/bin/env bash
# docker_gwbridge's way out, end to end through a daemon (root): one daemon on loopback
# (127.96.0.1), an overlay network and a program task (`/bin/sleep`) in its own namespace, whose
# default route is docker_gwbridge; an "outside world" namespace reached from the host through a
# veth pair (10.197.1.0/24) runs iperf3 -s. One TCP flow, RUNS rounds each way, in turns:
#   host -> outside and task -> outside (upload), outside -> host and outside -> task (-R);
# then connections per second (a python3 server there answers a line and closes; CONNS, 2000).
# The host's own namespace is the physical limit: the ratio is task / host, same run.
# Usage: scripts/bench-gwbridge.sh [RUNS [SECONDS]]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
secs=${2:-5}
if [[ $(id -u) != 0 ]]; then
    echo "bench-gwbridge.sh: needs root (a program task's namespace, a veth pair)" >&2
    exit 2
fi
command -v iperf3 >/dev/null || { echo "bench-gwbridge.sh: needs iperf3 (apt-get install iperf3)" >&2; exit 2; }
cargo build --quiet --release --bin swarmnet
bin=$PWD/target/release/swarmnet
dir=$(mktemp -d)
ns=sngw-out
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip link del sngw-h 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
ip netns del "$ns" 2>/dev/null || true
ip link del sngw-h 2>/dev/null || true
ip netns add "$ns"
ip link add sngw-h type veth peer name sngw-o
ip link set sngw-o netns "$ns"
ip addr add 10.197.1.1/24 dev sngw-h
ip link set sngw-h up
ip -n "$ns" addr add 10.197.1.2/24 dev sngw-o
ip -n "$ns" link set sngw-o up
ip -n "$ns" link set lo up
ip netns exec "$ns" iperf3 -s -B 10.197.1.2 >/dev/null 2>&1 &
pids+=($!)
# For connections per second: a server that answers one line and closes.
ip netns exec "$ns" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.197.1.2", 7000)); s.listen(1024)
while True:
    c, _ = s.accept(); c.sendall(b"hi\n"); c.close()
' &
pids+=($!)

s="unix://$dir/n.sock"
"$bin" -H "$s" daemon --state-dir "$dir/state" --hostname gw-bench >"$dir/daemon.log" 2>&1 &
pids+=($!)
"$bin" -H "$s" wait --timeout 20
"$bin" -H "$s" swarm init --advertise-addr 127.96.0.1 >/dev/null
"$bin" -H "$s" network create -d overlay gw-bench-net >/dev/null
"$bin" -H "$s" service create -d --name gw-client --network gw-bench-net /bin/sleep 3600 >/dev/null
task=""
deadline=$((SECONDS + 60))
until [[ -n $task ]]; do
    ((SECONDS < deadline)) || { echo "the task never started" >&2; tail "$dir/daemon.log" >&2; exit 1; }
    task=$(ip netns list | awk '$1 ~ /^gw-client\.1\./ {print $1}' | head -1)
    sleep 0.2
done
until ip netns exec "$task" ip -4 route show default | grep -q eth1; do
    ((SECONDS < deadline)) || { echo "the task got no docker_gwbridge route" >&2; exit 1; }
    sleep 0.2
done
until iperf3 -c 10.197.1.2 -t 1 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "iperf3 -s never answered" >&2; exit 1; }
    sleep 0.2
done

# Gbit/s of one iperf3 run (the receiver's figure); $1: namespace ("" for the host), rest: flags.
rate() {
    local where=$1
    shift
    local cmd=(iperf3 -c 10.197.1.2 -t "$secs" -f m "$@")
    [[ -n $where ]] && cmd=(ip netns exec "$where" "${cmd[@]}")
    "${cmd[@]}" | awk '/receiver/ {for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") r = $i} END {printf "%.2f", r / 1000}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

for dir_name in upload download; do
    flags=()
    [[ $dir_name == download ]] && flags=(-R)
    host=() via=()
    for ((i = 0; i < runs; i++)); do
        host+=("$(rate "" "${flags[@]}")")
        via+=("$(rate "$task" "${flags[@]}")")
    done
    h=$(median "${host[@]}")
    t=$(median "${via[@]}")
    echo "$dir_name (one TCP flow, ${secs}s, $runs rounds in turns): host ${host[*]} Gbit/s (median $h), task through docker_gwbridge ${via[*]} (median $t), ratio $(awk -v t="$t" -v h="$h" 'BEGIN {printf "%.2f", t / h}')x"
done

# Connections per second, one after another (connect, read the line, close), CONNS of them.
conns=${CONNS:-2000}
cps() {
    local where=$1 start end
    local loop="for ((i = 0; i < $conns; i++)); do exec 3<>/dev/tcp/10.197.1.2/7000; read -r _ <&3; exec 3<&-; done"
    start=$(date +%s.%N)
    if [[ -n $where ]]; then ip netns exec "$where" bash -c "$loop"; else bash -c "$loop"; fi
    end=$(date +%s.%N)
    awk -v n="$conns" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n / (e - s)}'
}
host=() via=()
for ((i = 0; i < runs; i++)); do
    host+=("$(cps "")")
    via+=("$(cps "$task")")
done
h=$(median "${host[@]}")
t=$(median "${via[@]}")
echo "connections per second ($conns sequential, $runs rounds in turns): host ${host[*]} (median $h), task through docker_gwbridge ${via[*]} (median $t), ratio $(awk -v t="$t" -v h="$h" 'BEGIN {printf "%.2f", t / h}')x"
