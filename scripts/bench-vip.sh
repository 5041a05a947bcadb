#!/usr/bin/env bash
# The VIP load balancer and the embedded DNS on a live node (root: the client is a task in a
# network namespace on a TAP). One node (`swarmnet run`) with a client task, three whoami tasks
# (virtual) and service web with a VIP over them. Measured in the same run, RUNS times each:
#   - new TCP connections per second (one HTTP GET each, sequential) to a task's own address
#     (the direct path) and to the VIP (the balancer), with median and p99 latency;
#   - DNS queries per second from the task to its resolver (the node), 32 in flight.
# Bounded: RUNS (default 3) runs of COUNT (default 2000) connections and 50,000 queries.
#
#   scripts/bench-vip.sh [RUNS] [COUNT]      SWARMNET_BIN=path to use another binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-3}
count=${2:-2000}
if ! [[ $runs =~ ^[0-9]+$ && $count =~ ^[0-9]+$ ]] || ((runs < 1 || runs > 20 || count < 1 || count > 100000)); then
    echo "bench-vip.sh: RUNS must be 1-20 and COUNT 1-100000" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "bench-vip.sh: needs root (the client task runs in a network namespace)" >&2
    exit 2
fi
bin=${SWARMNET_BIN:-target/release/swarmnet}
if [[ -z ${SWARMNET_BIN:-} ]]; then
    cargo build --release --quiet --bin swarmnet
fi
cargo build --release --quiet --example loadgen
load=$PWD/target/release/examples/loadgen
dir=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
cat >"$dir/topology.toml" <<TOML
[node]
name = "bench"
data_path_addr = "127.78.9.1"

[[network]]
name = "bench"
vni = 4242
subnet = "10.78.9.0/24"
gateway = "10.78.9.1"

[[endpoint]]
name = "vipbench-client"
network = "bench"
ip = "10.78.9.2"

[[endpoint]]
name = "web.1"
network = "bench"
ip = "10.78.9.11"
app = "whoami"

[[endpoint]]
name = "web.2"
network = "bench"
ip = "10.78.9.12"
app = "whoami"

[[endpoint]]
name = "web.3"
network = "bench"
ip = "10.78.9.13"
app = "whoami"

[[service]]
name = "web"
network = "bench"
vip = "10.78.9.100"
tasks = ["web.1", "web.2", "web.3"]
TOML
"$bin" run --topology "$dir/topology.toml" >"$dir/run.log" 2>&1 &
pid=$!
in_task() { "$bin" exec --topology "$dir/topology.toml" vipbench-client -- "$@"; }
for _ in $(seq 100); do
    in_task true 2>/dev/null && break
    sleep 0.1
done
# Warm the paths (ARP, first connections).
in_task "$load" http 10.78.9.11:80 20 >/dev/null
in_task "$load" http 10.78.9.100:80 20 >/dev/null
echo "# $(date -u +%F) $(uname -r), $count connections per run"
for ((r = 1; r <= runs; r++)); do
    echo "run $r direct task IP: $(in_task "$load" http 10.78.9.11:80 "$count")"
    echo "run $r VIP:            $(in_task "$load" http 10.78.9.100:80 "$count")"
    echo "run $r DNS (web):      $(in_task "$load" dns 10.78.9.1:53 web 50000)"
done
