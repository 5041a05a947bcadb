#!/usr/bin/env bash
# What a running `swarmnet capture` costs one TCP flow, end to end, measured in the same run:
# two daemons on loopback (127.88.1.1-2, unprivileged virtual tasks), a whoami task on node-2
# published on 18080, and `curl` fetching SIZE bytes through node-1's routing mesh (host TCP ->
# node-1's ingress sandbox -> VXLAN over loopback -> the task), RUNS times with no capture and
# RUNS times while `swarmnet capture ingress` on node-1 takes every frame of the flow (written
# to a file), in turns (farm-bench pairs them). Prints the figures and the ratio.
# With CAPTURE_FILTER (tcpdump words, e.g. "port 1"), the capture takes only what it matches:
# the cost of a capture that is open but takes nothing of the flow.
# Usage: [CAPTURE_FILTER=...] scripts/bench-capture.sh [RUNS [SIZE_MIB]]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-5}
mib=${2:-256}
filter=${CAPTURE_FILTER:-}
cargo build --quiet --release --bin swarmnet
bin=$PWD/target/release/swarmnet
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
for i in 1 2; do
    "$bin" -H "unix://$dir/n$i.sock" daemon --state-dir "$dir/n$i" --hostname "node-$i" \
        --publish-addr "127.88.1.$i" >"$dir/n$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2; do "$bin" -H "unix://$dir/n$i.sock" wait --timeout 20; done
s1="unix://$dir/n1.sock"
"$bin" -H "$s1" swarm init --advertise-addr 127.88.1.1 >/dev/null
"$bin" -H "unix://$dir/n2.sock" swarm join --advertise-addr 127.88.1.2 \
    --token "$("$bin" -H "$s1" swarm join-token -q worker)" 127.88.1.1:2377 >/dev/null
"$bin" -H "$s1" service create -d --name web --constraint node.hostname==node-2 \
    -p 18080:80 swarmnet/whoami >/dev/null
url="http://127.88.1.1:18080/data?size=$((mib * 1024 * 1024))"
deadline=$((SECONDS + 60))
until curl -sf -o /dev/null "http://127.88.1.1:18080/"; do
    ((SECONDS < deadline)) || { echo "the published port never answered" >&2; exit 1; }
    sleep 0.2
done
# With a capture: started, its pcap header seen (the daemon streams), the transfer, stopped.
cat >"$dir/with-capture.sh" <<EOS
#!/usr/bin/env bash
set -e
rm -f "$dir/cap.pcap"
"$bin" -H "$s1" capture ingress -w "$dir/cap.pcap" ${filter} 2>/dev/null &
c=\$!
until [ -s "$dir/cap.pcap" ]; do kill -0 \$c; sleep 0.01; done
curl -sf -o /dev/null "$url"
kill \$c; wait \$c || true
EOS
chmod +x "$dir/with-capture.sh"
echo "one TCP flow of $mib MiB through the routing mesh, with and without a capture of every frame"
farm-bench -n "$runs" --timeout 600 --vs "curl -sf -o /dev/null $url" -- "$dir/with-capture.sh"
ls -l "$dir/cap.pcap" | awk '{print "last capture file: " $5 " bytes"}'
