#!/usr/bin/env bash
# The ingress routing mesh against the same backend reached directly, in one run, across three
# daemons on loopback (127.96.1.1-3, each publishing on its own address with --publish-addr):
# one `swarmnet/whoami` task on node-1, published as 18080:80 and on overlay network `bench`.
#   1. sequential HTTP requests (curl, a new connection each, N of them): requests/s and the
#      latency median/p99, (a) through the mesh of node-2 (client on the host -> node-2's
#      published port -> its ingress sandbox -> VIP -> overlay -> the task on node-1) and, as
#      root, (b) directly on the task's IP from a program task on node-2 on `bench` (client in
#      a namespace -> TAP -> overlay -> the task); also (c) through node-1's own mesh;
#   2. one TCP flow's throughput (curl of /data?size=BYTES) through the mesh and, as root,
#      directly over the overlay, same nodes.
# Bounded: N requests (default 2000) and BYTES (default 500000000) per path; the daemons are
# killed on exit. Without root only the mesh is measured (the direct path needs a namespaced
# client) and the script says so.
#
#   scripts/bench-mesh.sh [N] [BYTES]      SWARMNET_BIN=path to use another binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

n=${1:-2000}
bytes=${2:-500000000}
if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 10 || n > 100000)); then
    echo "bench-mesh.sh: N must be 10-100000, got '$n'" >&2
    exit 2
fi
if ! [[ $bytes =~ ^[0-9]+$ ]] || ((bytes < 1000000 || bytes > 1000000000)); then
    echo "bench-mesh.sh: BYTES must be 1000000-1000000000, got '$bytes'" >&2
    exit 2
fi
bin=${SWARMNET_BIN:-target/release/swarmnet}
if [[ -z ${SWARMNET_BIN:-} ]]; then
    cargo build --release --quiet --bin swarmnet
fi
dir=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
net=127.96.1
port=18080
sw() { local i=$1; shift; "$bin" -H "unix://$dir/n$i.sock" "$@"; }
for i in 1 2 3; do
    "$bin" -H "unix://$dir/n$i.sock" daemon --state-dir "$dir/s$i" --hostname "node-$i" \
        --publish-addr "$net.$i" 2>"$dir/d$i.log" &
    pids+=($!)
done
for i in 1 2 3; do sw "$i" wait >/dev/null 2>&1; done
sw 1 swarm init --advertise-addr $net.1 >/dev/null
token=$(sw 1 swarm join-token -q manager)
for i in 2 3; do sw "$i" swarm join --advertise-addr $net.$i --token "$token" $net.1:2377 >/dev/null; done
sw 1 network create -d overlay bench >/dev/null
sw 1 service create -d --name web --network bench --constraint node.hostname==node-1 \
    -p $port:80 swarmnet/whoami >/dev/null
root=0
[[ $(id -u) -eq 0 ]] && root=1
if ((root)); then
    sw 1 service create -d --name client --network bench --constraint node.hostname==node-2 \
        /bin/sleep infinity >/dev/null
fi
deadline=$(($(date +%s) + 60))
until curl -s -o /dev/null --max-time 1 "http://$net.2:$port/" && curl -s -o /dev/null --max-time 1 "http://$net.1:$port/"; do
    (($(date +%s) < deadline)) || { echo "the published port never answered" >&2; tail -5 "$dir"/d*.log >&2; exit 1; }
    sleep 0.2
done
task_ip=$(sw 1 network inspect -f '{{json .Containers}}' bench \
    | grep -o '"Name":"web\.[^"]*","EndpointID":"[^"]*","MacAddress":"[^"]*","IPv4Address":"[0-9.]*' \
    | sed 's/.*"IPv4Address":"//' | head -1)
if ((root)); then
    until sw 2 exec client -- curl -s -o /dev/null --max-time 1 "http://$task_ip/"; do
        (($(date +%s) < deadline)) || { echo "the task never answered directly" >&2; exit 1; }
        sleep 0.2
    done
fi

# Prints "R req/s, median M us, p99 P us" for N sequential requests given as one curl command.
requests() {
    local t0 t1 out
    t0=$(date +%s%N)
    out=$("$@")
    t1=$(date +%s%N)
    printf '%s\n' "$out" | sort -n | awk -v n="$n" -v ns=$((t1 - t0)) '
        { v[NR] = $1 }
        END {
            if (NR != n) { printf "only %d of %d requests answered\n", NR, n; exit 1 }
            printf "%.0f req/s, median %.0f us, p99 %.0f us\n", n / (ns / 1e9), v[int(NR * 0.5)] * 1e6, v[int(NR * 0.99)] * 1e6
        }'
}
curl_n() { echo curl -s --fail -o /dev/null -w '%{time_total}\n' "http://$1/?[1-$n]"; }
echo "HTTP, $n sequential requests, a new connection each (curl):"
# shellcheck disable=SC2046
echo "  mesh, node-2 -> task on node-1:   $(requests $(curl_n "$net.2:$port"))"
# shellcheck disable=SC2046
echo "  mesh, node-1 -> task on node-1:   $(requests $(curl_n "$net.1:$port"))"
if ((root)); then
    # shellcheck disable=SC2046
    echo "  direct, node-2 task -> task IP:   $(requests sw 2 exec client -- $(curl_n "$task_ip"))"
fi
speed() { awk '{ printf "%.0f Mbit/s", $1 * 8 / 1e6 }'; }
url="/data?size=$bytes"
echo "One TCP flow, $bytes bytes (curl of $url):"
echo "  mesh, node-2 -> task on node-1:   $(curl -s --fail -o /dev/null -w '%{speed_download}' "http://$net.2:$port$url" | speed)"
if ((root)); then
    echo "  direct, node-2 task -> task IP:   $(sw 2 exec client -- curl -s --fail -o /dev/null -w '%{speed_download}' "http://$task_ip$url" | speed)"
else
    echo "(as root it also measures the same backend reached directly from a namespaced task)"
fi
