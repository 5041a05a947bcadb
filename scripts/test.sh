#!/usr/bin/env bash
# Runs the test suite. As root, installs the tools some tests use first if they are missing;
# otherwise those tests are skipped, and said so.
# Extra arguments go to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The tools tests use as independent peers: tshark (decoding), dig (DNS over UDP and TCP from
# inside tasks), python3 (a kernel-TCP HTTP server task), docker-py (python3-docker) and the
# docker CLI (clients of the daemon's Docker API). Installed as root when missing; otherwise
# the tests that need them skip, saying so.
missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v dig >/dev/null || missing+=(dnsutils)
[[ -x /usr/bin/python3 ]] || missing+=(python3)   # an HTTP server task in tests/mesh_root.rs
python3 -c 'import docker' 2>/dev/null || missing+=(python3-docker)
need_docker=0
command -v docker >/dev/null || need_docker=1
if [[ ${#missing[@]} -gt 0 || $need_docker -eq 1 ]]; then
    if [[ $EUID -eq 0 ]]; then
        apt-get update -qq
        if [[ ${#missing[@]} -gt 0 ]]; then
            echo "test.sh: installing ${missing[*]}"
            echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
        if [[ $need_docker -eq 1 ]]; then
            # Only the docker CLI of Debian's docker.io: the package is unpacked aside, not
            # installed, so no dockerd is ever installed or started.
            echo "test.sh: installing the docker CLI (from Debian's docker.io) as /usr/local/bin/docker"
            deb=$(mktemp -d)
            (cd "$deb" && apt-get download -qq docker.io 2>/dev/null) &&
                dpkg-deb -x "$deb"/docker.io_*.deb "$deb/x" &&
                install -m 0755 "$deb/x/usr/bin/docker" /usr/local/bin/docker ||
                echo "test.sh: could not get the docker CLI: the tests that use it will be skipped"
            rm -rf "$deb"
        fi
    else
        [[ $need_docker -eq 1 ]] && missing+=(docker)
        echo "test.sh: ${missing[*]} not found and not root: the tests that need them will be skipped"
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
