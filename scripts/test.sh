#!/usr/bin/env bash
# Runs the test suite. As root, installs tshark first if it is missing (the tests that compare
# our output with tshark's decoding need it); otherwise those tests are skipped, and said so.
# Extra arguments go to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v tshark >/dev/null; then
    if [[ $EUID -eq 0 ]]; then
        echo "test.sh: installing tshark"
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null
    else
        echo "test.sh: tshark not found and not root: tshark-based tests will be skipped"
    fi
fi

# The last `test result` line cargo prints belongs to whichever target ran last (often one with
# no tests), so close with the sum over every target.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) s += $i
        }
    }
    END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
