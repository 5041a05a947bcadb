#!/usr/bin/env bash
# Chaos run: five managers and two workers (daemons on 127.77.50.x, each with its own state dir
# under a temporary directory), a random minority of the managers killed with SIGKILL and
# restarted every 3 s while a client keeps writing through random live managers; at the end
# every acknowledged write must be present, nothing twice, and the five managers' stores equal.
# The logic lives in tests/chaos.rs (its 30 s form runs in the test suite); this runs the long
# form and prints its figures. Bounded: it stops by itself after SECONDS plus start-up and the
# final checks, and the test's guards kill every daemon it started.
#
#   scripts/chaos.sh [SECONDS]     (default 300)   CHAOS_SEED=N to repeat a run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-300}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 5 || secs > 3600)); then
    echo "chaos.sh: SECONDS must be a number between 5 and 3600, got '$secs'" >&2
    exit 2
fi
# The chaos phase, plus time to start the cluster, converge and read the stores.
limit=$((secs + 300))
exec env CHAOS_SECS="$secs" timeout --signal=INT --kill-after=30 "$limit" \
    cargo test --locked --test chaos -- --nocapture
