#!/usr/bin/env bash
# The CI use case: builds swarmnet and replays a bundled capture
# (a ping across VXLAN in both directions between node-1's my-web.1 and node-2's my-web.3)
# through node-1's userspace data path, then prints what came out of each port.
# Outputs land in ./out/ (PORT.pcap and counters.json). Any `swarmnet replay` arguments given
# replace the default ones.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet --release --bin swarmnet
bin=target/release/swarmnet

if [[ $# -gt 0 ]]; then
    exec "$bin" replay "$@"
fi

case=fixtures/ping-vxlan
echo "\$ swarmnet replay --topology $case/topology.toml --in my-web.1=... --in underlay=... --out-dir out"
"$bin" replay --topology "$case/topology.toml" \
    --in "my-web.1=$case/in/my-web.1.pcap" \
    --in "underlay=$case/in/underlay.pcap" \
    --out-dir out
if command -v tshark >/dev/null; then
    for f in out/*.pcap; do
        echo
        echo "== $f"
        tshark -r "$f" 2>/dev/null
    done
fi
