#!/usr/bin/env bash
# Time from `service create --replicas 3` to three tasks running and answering, across three
# daemons on loopback (127.78.1.1-3, unprivileged: virtual tasks). Prints min/median/max over
# RUNS runs of: create -> `service ls` 3/3 (each node reports its task serving), and create ->
# each task answered an HTTP GET from each of the three nodes (probe services, `swarmnet/fetch`
# in global mode, created once the addresses are known).
# Bounded: RUNS (default 5) runs of at most 30 s each; the daemons are killed on exit.
#
#   scripts/bench-service-start.sh [RUNS]      SWARMNET_BIN=path to use another binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-5}
if ! [[ $runs =~ ^[0-9]+$ ]] || ((runs < 1 || runs > 50)); then
    echo "bench-service-start.sh: RUNS must be 1-50, got '$runs'" >&2
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
net=127.78.1
sw() { local n=$1; shift; "$bin" -H "unix://$dir/n$n.sock" "$@"; }
for i in 1 2 3; do
    "$bin" -H "unix://$dir/n$i.sock" daemon --state-dir "$dir/s$i" --hostname "node-$i" \
        2>"$dir/d$i.log" &
    pids+=($!)
done
for i in 1 2 3; do sw "$i" wait >/dev/null; done
sw 1 swarm init --advertise-addr $net.1 >/dev/null
token=$(sw 1 swarm join-token -q manager)
for i in 2 3; do sw "$i" swarm join --advertise-addr $net.$i --token "$token" $net.1:2377 >/dev/null; done
sw 1 network create -d overlay bench >/dev/null
now_ms() { date +%s%3N; }
# The web tasks' addresses, as the nodes show them in `network inspect`.
web_ips() {
    for i in 1 2 3; do
        sw "$i" network inspect -f '{{json .Containers}}' bench
    done | grep -o '"Name":"web\.[^"]*","EndpointID":"[^"]*","MacAddress":"[^"]*","IPv4Address":"[0-9.]*' \
        | sed 's/.*"IPv4Address":"//' | sort -u
}
ls_times=()
answer_times=()
for ((r = 1; r <= runs; r++)); do
    t0=$(now_ms)
    sw 1 service create -d --replicas 3 --name web --network bench swarmnet/whoami >/dev/null
    deadline=$((t0 + 30000))
    t_ls=
    until sw 1 service ls -f name=web | grep -q ' 3/3 '; do
        (($(now_ms) < deadline)) || { echo "run $r: not 3/3 within 30 s" >&2; exit 1; }
        sleep 0.02
    done
    t_ls=$(($(now_ms) - t0))
    mapfile -t ips < <(web_ips)
    ((${#ips[@]} == 3)) || { echo "run $r: nodes show ${#ips[@]} web tasks" >&2; exit 1; }
    # One probe per node for each task: every task is asked from the two other nodes too.
    for ip in "${ips[@]}"; do
        sw 1 service create -d --mode global --name "probe-${ip//./-}" --network bench \
            swarmnet/fetch "http://$ip/" >/dev/null
    done
    until (
        for ip in "${ips[@]}"; do
            [[ $(sw 1 service logs "probe-${ip//./-}" 2>/dev/null | grep ': 200,' | cut -d@ -f2 \
                | cut -d' ' -f1 | sort -u | wc -l) -eq 3 ]] || exit 1
        done
    ); do
        (($(now_ms) < deadline)) || { echo "run $r: not every probe answered within 30 s" >&2; exit 1; }
        sleep 0.02
    done
    ls_times+=("$t_ls")
    answer_times+=("$(($(now_ms) - t0))")
    for ip in "${ips[@]}"; do sw 1 service rm "probe-${ip//./-}" >/dev/null; done
    sw 1 service rm web >/dev/null
    until [[ -z $(web_ips) ]]; do sleep 0.1; done
done
stats() {
    sort -n | awk '{ v[NR] = $1 } END { printf "min %d ms, median %d ms, max %d ms (%d runs)\n", v[1], v[int((NR + 1) / 2)], v[NR], NR }'
}
echo "create -> service ls 3/3 (tasks serving):          $(printf '%s\n' "${ls_times[@]}" | stats)"
echo "create -> each task answered from all three nodes:  $(printf '%s\n' "${answer_times[@]}" | stats)"
echo "(the second includes starting 9 probe tasks after the first figure, so it is an upper bound)"
