#!/usr/bin/env bash
# Time from `service create --replicas 3` (swarmnet/whoami) to three tasks running and
# answering, across three daemons on loopback (127.78.1.1-3). Prints min/median/max over RUNS
# runs of: create -> `service ls` 3/3 (each node reports its task serving); and, as root,
# create -> each task answered an HTTP GET (curl, 1 s timeout, retried) from a program task on
# each of the three nodes (a global `/bin/sleep infinity` service, `swarmnet exec client`).
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
if [[ $(id -u) -eq 0 ]]; then
    # A program task on every node to ask from (root: tasks in network namespaces).
    sw 1 service create -d --mode global --name client --network bench /bin/sleep infinity >/dev/null
    until [[ $(sw 1 service ls -f name=client | grep -c ' 3/3 ') -eq 1 ]]; do sleep 0.1; done
fi
for ((r = 1; r <= runs; r++)); do
    t0=$(now_ms)
    sw 1 service create -d --replicas 3 --name web --network bench swarmnet/whoami >/dev/null
    deadline=$((t0 + 30000))
    until sw 1 service ls -f name=web | grep -q ' 3/3 '; do
        (($(now_ms) < deadline)) || { echo "run $r: not 3/3 within 30 s" >&2; exit 1; }
        sleep 0.02
    done
    t_ls=$(($(now_ms) - t0))
    t_answer=
    if [[ $(id -u) -eq 0 ]]; then
        mapfile -t ips < <(web_ips)
        ((${#ips[@]} == 3)) || { echo "run $r: nodes show ${#ips[@]} web tasks" >&2; exit 1; }
        # Each task asked from every node's client task, the nine at once.
        until (
            for i in 1 2 3; do
                for ip in "${ips[@]}"; do
                    sw "$i" exec client -- curl -s -o /dev/null --max-time 0.5 "http://$ip/" &
                done
            done
            for j in $(jobs -p); do wait "$j" || exit 1; done
        ); do
            (($(now_ms) < deadline)) || { echo "run $r: not every task answered within 30 s" >&2; exit 1; }
        done
        t_answer=$(($(now_ms) - t0))
    fi
    ls_times+=("$t_ls")
    [[ -n $t_answer ]] && answer_times+=("$t_answer")
    sw 1 service rm web >/dev/null
    until [[ -z $(web_ips) ]]; do sleep 0.1; done
done
stats() {
    sort -n | awk '{ v[NR] = $1 } END { printf "min %d ms, median %d ms, max %d ms (%d runs)\n", v[1], v[int((NR + 1) / 2)], v[NR], NR }'
}
echo "create -> service ls 3/3 (every node reports its task serving): $(printf '%s\n' "${ls_times[@]}" | stats)"
if ((${#answer_times[@]} > 0)); then
    echo "create -> each task answered HTTP from all three nodes:         $(printf '%s\n' "${answer_times[@]}" | stats)"
else
    echo "(as root it also times create -> each task answering HTTP from a program task on every node)"
fi
