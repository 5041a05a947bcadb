#!/usr/bin/env bash
# The main job on a default that needs no set-up and no privilege: builds swarmnet (release) and
# runs `swarmnet demo`: a three-node swarm on 127.0.0.1-127.0.0.3 (daemons as child processes),
# an overlay network, a replicated service published on 8080, the routing mesh, DNS, the VIP
# and a node failure, each step with its command and output; then it stops and removes
# everything. Arguments go to `swarmnet demo` (--nodes N, --keep, --encrypted, --down).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet --release --bin swarmnet
exec target/release/swarmnet demo "$@"
