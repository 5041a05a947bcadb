#!/usr/bin/env bash
# The egress engine against the host's own namespace, in one run (root): a task namespace on a
# TUN device served by the engine (in the test process), an outside namespace reached from the
# host's namespace through a veth pair (10.199.x.0/24), an HTTP server there.
#   1. one TCP flow outside -> task: curl of BYTES through the engine, and the same curl from
#      the host's namespace (the physical limit), three rounds, Gbit/s and the ratio;
#   2. connections per second, one after another (connect, GET, 11-byte answer, close), from
#      the host's namespace and from the task.
# For each variant given: the task TUN device's MTU, with ":gso" for TCP super-packets to the
# task behind a virtio-net header (Egress::with_gso). Default: 1500 1500:gso 65520. The
# harness is the ignored test `egress_throughput` of tests/egress_root.rs; its namespaces and links are removed when it ends.
#
#   scripts/bench-egress.sh [BYTES] [MTU[:gso]...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bytes=${1:-1073741824}
shift || true
mtus=("$@")
((${#mtus[@]})) || mtus=(1500 1500:gso 65520)
if ! [[ $bytes =~ ^[0-9]+$ ]] || ((bytes < 1000000 || bytes > 8589934592)); then
    echo "bench-egress.sh: BYTES must be 1000000-8589934592, got '$bytes'" >&2
    exit 2
fi
if [[ $(id -u) != 0 ]]; then
    echo "bench-egress.sh: needs root (namespaces, a TUN device, a veth pair)" >&2
    exit 2
fi
cargo test --release --quiet --test egress_root --no-run
for variant in "${mtus[@]}"; do
    mtu=${variant%:gso}
    gso=0
    [[ $variant == *:gso ]] && gso=1
    if ! [[ $mtu =~ ^[0-9]+$ ]] || ((mtu < 576 || mtu > 65520)); then
        echo "bench-egress.sh: MTU must be 576-65520, got '$variant'" >&2
        exit 2
    fi
    echo "== task MTU $mtu, GSO $gso"
    EGRESS_GSO=$gso EGRESS_MTU=$mtu EGRESS_BYTES=$bytes cargo test --release --quiet --test egress_root \
        egress_throughput -- --ignored --nocapture --test-threads=1 2>&1 |
        grep -E '^(round|connections|SKIPPED)|panicked'
done
