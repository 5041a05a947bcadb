#!/usr/bin/env bash
# The Docker Engine API of one daemon, on one core: the daemon pinned to CPU 0 (`taskset -c 0`),
# the clients on CPU 1. One daemon at 127.91.77.1 in a temporary state dir, swarm initialised.
# Measured RUNS times each, printed as min/median/max over the runs:
#   1. GET /v1.41/networks with 20 overlay networks, over 1 and over CONNS keep-alive connections
#      (examples/apiload.rs), SECS seconds a run: requests/s, latency p50, p99, max; and GET
#      /_ping over CONNS connections, the HTTP stack alone;
#   2. POST /v1.41/services/create (swarmnet/whoami, one replica), COUNT services into a fresh
#      swarm each run, without a network and on one overlay network, over CONNS connections;
#   3. with a docker CLI on PATH: `docker network ls` (20 networks), and `docker stack deploy -c`
#      of a generated 20-service compose file (two overlay networks, replicas 1-2, five published
#      ports), the time until its services converged, and `docker stack rm` (the services and
#      networks waited for until gone before the next run). Without a docker CLI this is
#      skipped, saying so.
# Bounded: every load run stops by time or count, every wait has a 60 s deadline. Everything
# started is stopped and the temporary directory removed on exit, failure or Ctrl-C.
#
#   scripts/bench-api.sh [RUNS [SECS [CONNS [COUNT]]]]   defaults 5 5 16 500
#   SWARMNET_BIN=path to use another daemon binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-5}
secs=${2:-5}
conns=${3:-16}
count=${4:-500}
if ! [[ $runs =~ ^[0-9]+$ && $secs =~ ^[0-9]+$ && $conns =~ ^[0-9]+$ && $count =~ ^[0-9]+$ ]] ||
    ((runs < 1 || runs > 20 || secs < 1 || secs > 60 || conns < 1 || conns > 64 || count < 1 || count > 5000)); then
    echo "bench-api.sh: RUNS must be 1-20, SECS 1-60, CONNS 1-64 and COUNT 1-5000" >&2
    exit 2
fi
bin=${SWARMNET_BIN:-target/release/swarmnet}
if [[ -z ${SWARMNET_BIN:-} ]]; then
    cargo build --release --quiet --bin swarmnet
fi
cargo build --release --quiet --example apiload
load=$PWD/target/release/examples/apiload

# The daemon on CPU 0, clients on CPU 1 (where the machine has two).
daemon_cpu=(taskset -c 0)
client_cpu=(taskset -c 1)
if (($(nproc) < 2)) || ! command -v taskset >/dev/null; then
    echo "bench-api.sh: fewer than 2 CPUs or no taskset: nothing pinned" >&2
    daemon_cpu=()
    client_cpu=()
fi

addr=127.91.77.1
dir=$(mktemp -d)
sock=$dir/api.sock
pid=
stop_daemon() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
cleanup() {
    stop_daemon
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sw() { "${client_cpu[@]}" "$bin" -H "unix://$sock" "$@"; }
# A fresh daemon (new state dir) with an initialised single-node swarm.
start_daemon() {
    stop_daemon
    local state=$dir/state.$1
    "${daemon_cpu[@]}" "$bin" -H "unix://$sock" daemon --state-dir "$state" --hostname bench \
        --publish-addr "$addr" >"$dir/daemon.$1.log" 2>&1 &
    pid=$!
    if ! sw wait --timeout 60 >/dev/null 2>&1; then
        echo "bench-api.sh: the daemon did not answer; its log:" >&2
        cat "$dir/daemon.$1.log" >&2
        exit 1
    fi
    sw swarm init --advertise-addr "$addr" >/dev/null
}
now_ms() { date +%s%3N; }
# Polls "$@" (a command that succeeds when the condition holds) every 50 ms, up to 60 s.
await() {
    local what=$1 deadline=$(($(now_ms) + 60000))
    shift
    until "$@"; do
        if (($(now_ms) > deadline)); then
            echo "bench-api.sh: not within 60 s: $what" >&2
            exit 1
        fi
        sleep 0.05
    done
}
# min/median/max of the numbers on stdin.
stats() {
    sort -n | awk -v unit="$1" '{ v[NR] = $1 } END {
        printf "min %s%s, median %s%s, max %s%s (%d runs)\n", v[1], unit, v[int((NR + 1) / 2)], unit, v[NR], unit, NR }'
}
# Runs apiload RUNS times; prints each figure as min/median/max over the runs.
load_runs() {
    local name=$1 out=$dir/load.txt
    shift
    : >"$out"
    for ((r = 1; r <= runs; r++)); do
        "${before_each_run[@]}"
        "${client_cpu[@]}" "$load" "$sock" "$@" >>"$out"
    done
    echo "$name"
    sed 's/^/    run: /' "$out"
    for key in req_per_s p50_us p99_us max_us; do
        printf '    %-9s %s\n' "$key" "$(grep -o " $key=[0-9]*" "$out" | cut -d= -f2 | stats '')"
    done
}

echo "# $(date -u '+%F %H:%M') UTC, $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# daemon on CPU 0, clients on CPU 1; $runs runs each"

start_daemon list
for i in $(seq -w 1 20); do sw network create -d overlay "net-$i" >/dev/null; done
before_each_run=(true)
# A short warm-up, not counted.
"${client_cpu[@]}" "$load" "$sock" -c "$conns" -d 1 get /v1.41/networks >/dev/null
# The HTTP stack's floor: Docker's ping, which reads no state.
load_runs "GET /_ping, $conns connections, $secs s a run" -c "$conns" -d "$secs" get /_ping
load_runs "GET /v1.41/networks (20 networks), 1 connection, $secs s a run" \
    -c 1 -d "$secs" get /v1.41/networks
load_runs "GET /v1.41/networks (20 networks), $conns connections, $secs s a run" \
    -c "$conns" -d "$secs" get /v1.41/networks

# Service creates: a fresh swarm for every run, so that each run starts from no services.
run_no=0
fresh_swarm() {
    run_no=$((run_no + 1))
    start_daemon "create.$run_no"
    # A /16: each service takes a VIP and its task an address.
    sw network create -d overlay --subnet 10.91.0.0/16 bench >/dev/null
}
before_each_run=(fresh_swarm)
load_runs "POST /v1.41/services/create, no network, $count services a run, 1 connection" \
    -c 1 -d 120 -n "$count" create-services svc
load_runs "POST /v1.41/services/create, no network, $count services a run, $conns connections" \
    -c "$conns" -d 120 -n "$count" create-services svc
load_runs "POST /v1.41/services/create, overlay network, $count services a run, $conns connections" \
    -c "$conns" -d 120 -n "$count" create-services svc --network bench

if ! command -v docker >/dev/null; then
    echo "docker CLI: skipped (no docker on PATH; Debian's docker.io package provides one)"
    exit 0
fi
start_daemon cli
for i in $(seq -w 1 20); do sw network create -d overlay "net-$i" >/dev/null; done
export DOCKER_HOST=unix://$sock DOCKER_CONFIG=$dir/docker
unset DOCKER_CONTEXT DOCKER_API_VERSION DOCKER_TLS_VERIFY DOCKER_CERT_PATH
dk() { "${client_cpu[@]}" docker "$@"; }
echo "docker CLI: $(docker version --format '{{.Client.Version}}' 2>/dev/null) against API $(dk version --format '{{.Server.APIVersion}}')"
dk network ls >/dev/null
times=()
for ((r = 1; r <= runs * 4; r++)); do
    t0=$(now_ms)
    dk network ls >/dev/null
    times+=($(($(now_ms) - t0)))
done
echo "docker network ls (20 networks), whole command: $(printf '%s\n' "${times[@]}" | stats ' ms')"

compose=$dir/stack.yml
{
    echo 'version: "3.8"'
    echo 'services:'
    for i in $(seq -w 1 20); do
        echo "  s$i:"
        echo "    image: swarmnet/whoami"
        if ((10#$i <= 4)); then
            echo "    networks: [front, back]"
        elif ((10#$i % 2 == 0)); then
            echo "    networks: [front]"
        else
            echo "    networks: [back]"
        fi
        echo "    deploy:"
        echo "      replicas: $((10#$i % 2 + 1))"
        if ((10#$i <= 5)); then
            echo "    ports:"
            echo "      - \"$((29100 + 10#$i)):80\""
        fi
    done
    echo 'networks:'
    echo '  front:'
    echo '    driver: overlay'
    echo '  back:'
    echo '    driver: overlay'
    echo '    attachable: true'
} >"$compose"
stack_services() { dk service ls -q --filter label=com.docker.stack.namespace=bench; }
stack_networks() { dk network ls -q --filter label=com.docker.stack.namespace=bench; }
converged() {
    local reps
    reps=$(dk service ls --filter label=com.docker.stack.namespace=bench --format '{{.Replicas}}')
    [[ $(wc -l <<<"$reps") -eq 20 ]] && ! grep -qv '^\([0-9]*\)/\1$' <<<"$reps"
}
gone() { [[ -z $(stack_services) && -z $(stack_networks) ]]; }
deploy=() ready=() rm=()
for ((r = 1; r <= runs; r++)); do
    t0=$(now_ms)
    # (The docker CLI 26 and later warn on stderr that it deploys detached.)
    if ! dk stack deploy -c "$compose" bench >"$dir/deploy.txt" 2>"$dir/deploy.err"; then
        cat "$dir/deploy.err" >&2
        exit 1
    fi
    t1=$(now_ms)
    await "stack bench converged (run $r)" converged
    t2=$(now_ms)
    dk stack rm bench >/dev/null
    t3=$(now_ms)
    await "stack bench removed (run $r)" gone
    deploy+=($((t1 - t0)))
    ready+=($((t2 - t0)))
    rm+=($((t3 - t2)))
done
echo "docker stack deploy: $(grep -c '^Creating service' "$dir/deploy.txt" || true) services created in the last run"
echo "docker stack deploy -c (20 services, 2 networks), whole command: $(printf '%s\n' "${deploy[@]}" | stats ' ms')"
echo "  deploy -> every service N/N in docker service ls:             $(printf '%s\n' "${ready[@]}" | stats ' ms')"
echo "docker stack rm, whole command:                                 $(printf '%s\n' "${rm[@]}" | stats ' ms')"
