#!/usr/bin/env bash
# Regenerates the replay goldens: fixtures/CASE/expected/ from fixtures/CASE/topology.toml and
# fixtures/CASE/in/PORT.pcap, with the current `swarmnet replay`. Run it only on purpose, after
# a deliberate change of behaviour, and read the diff (`git diff --stat fixtures/`) before
# committing: tests/replay_goldens.rs compares against these files byte for byte.
#   scripts/regen-goldens.sh            all cases
#   scripts/regen-goldens.sh --inputs   also rebuild the synthetic inputs first (make_fixtures)
#   scripts/regen-goldens.sh CASE...    only these cases
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "--inputs" ]]; then
    shift
    cargo run --quiet --example make_fixtures
fi
cargo build --quiet --bin swarmnet
bin=target/debug/swarmnet

cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
    for dir in fixtures/*/; do
        [[ -d "$dir/in" && -f "$dir/topology.toml" ]] && cases+=("$(basename "$dir")")
    done
fi

for case in "${cases[@]}"; do
    dir="fixtures/$case"
    args=()
    for input in "$dir"/in/*.pcap; do
        args+=(--in "$(basename "$input" .pcap)=$input")
    done
    rm -rf "$dir/expected"
    "$bin" replay --topology "$dir/topology.toml" "${args[@]}" --out-dir "$dir/expected" >/dev/null
    echo "$case: $(cd "$dir/expected" && ls | tr '\n' ' ')"
done
