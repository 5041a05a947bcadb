#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 60), one after the other, one
# process each (-jobs=1 -workers=1), and prints a table of executions and findings.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`); without them it says so and exits 2. On stable the same bodies
# run over the checked-in seeds in `cargo test` (tests/robustness*.rs): that is the CI gate.
#
# Seeds: fuzz/seeds/TARGET/ (checked in, small; regression inputs are named regress-*).
# Working corpus: fuzz/corpus/TARGET/ (not checked in). Crashes: fuzz/artifacts/TARGET/.
# Logs and the summary: fuzz/logs/ (FUZZ_LOGS overrides).
# Builds with debug assertions (overflow checks included) and without a sanitizer: the crate
# has no unsafe code outside io/, which no target reaches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds < 1 || seconds > 86400 )); then
    echo "fuzz.sh: SECONDS must be a whole number from 1 to 86400, not '$seconds'" >&2
    exit 64
fi
shift || true

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly); on stable," >&2
    echo "         cargo test runs the fuzz bodies over fuzz/seeds/ instead" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs cargo-fuzz (cargo install cargo-fuzz); on stable," >&2
    echo "         cargo test runs the fuzz bodies over fuzz/seeds/ instead" >&2
    exit 2
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

logs="${FUZZ_LOGS:-logs}"
mkdir -p "$logs"
summary="$logs/summary.tsv"
[[ -f "$summary" ]] || printf 'target\tseconds\texecutions\tcrashes\tstarted (UTC)\n' >"$summary"

cargo +nightly fuzz build --debug-assertions --sanitizer none

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    started="$(date -u +%FT%TZ)"
    log="$logs/$t.log"
    echo "== $t: ${seconds}s (log: fuzz/$log)"
    set +e
    cargo +nightly fuzz run --debug-assertions --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    # With -jobs the fuzzing happens in a child that logs to fuzz-0.log.
    if [[ -f fuzz-0.log ]]; then
        cat fuzz-0.log >>"$log"
        rm -f fuzz-0.log
    fi
    execs="$(grep -oE '^(#[0-9]+|Done [0-9]+ runs)' "$log" | grep -oE '[0-9]+' | tail -1)"
    crashes="$(find "artifacts/$t" -type f -newermt "$started" | wc -l)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$seconds" "${execs:-?}" "$crashes" "$started" >>"$summary"
    echo "   executions: ${execs:-?}, new crash files: $crashes, exit $rc"
    if (( crashes > 0 )); then
        status=1
        find "artifacts/$t" -type f -newermt "$started" -printf '   %p\n'
    fi
done
echo "summary: fuzz/$summary"
exit $status
