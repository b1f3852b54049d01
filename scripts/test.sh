#!/usr/bin/env bash
# The one test command (README "Testing"). Runs on a fresh Debian 12 machine with the Rust
# toolchain: installs what else it needs (as root, or through sudo), then checks formatting,
# lints and every test. Everything it starts listens on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suites need. Installed only when missing.
PACKAGES=(pkg-config libssl-dev openssl gcc libc6-dev make perl valgrind curl nginx stunnel4 strace haproxy apache2 python3
          sbsigntool osslsigncode systemd-boot-efi linux-kbuild-6.1 dpkg-dev binutils)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # Packages such as nginx start their service when installed; the tests run their own
    # instances on loopback ports, so keep the system ones from starting (policy-rc.d).
    added_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [[ -n "$added_policy" ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# Incremental data is useless on a fresh machine and was a quarter of the build's size on disk
# (1.4 of 5.4 GB); a developer's own setting wins.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# The whole run needs about 3 GB under target/ (debug build and tests, the release build of
# the package) and 0.2 GB for the OpenSSL builds. Say so up front rather than fail with
# "No space left on device" half way through.
need_mb=3500
read -r free_mb mount < <(df -Pm . | awk 'NR == 2 { print $4, $6 }')
if [[ -n $free_mb && $free_mb -lt $need_mb ]]; then
    echo "!! only ${free_mb} MB free on ${mount}; this run needs about ${need_mb} MB" >&2
fi

# rustfmt and clippy are rustup components; a toolchain without them cannot fetch them here.
if cargo fmt --version >/dev/null 2>&1; then
    echo "== cargo fmt --check"
    cargo fmt --all -- --check
else
    echo "!! rustfmt is not installed: formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
    echo "== cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
else
    echo "!! clippy is not installed: lints not checked" >&2
fi

echo "== cargo build (the engine library must exist before the end-to-end tests run)"
cargo build --workspace --locked

echo "== OpenSSL 4.0.3 and 3.5.5 LTS for the version matrix (built once into a cache, a few minutes each)"
scripts/build-openssl.sh 4.0.3
scripts/build-openssl.sh 3.5.5

echo "== cargo test"
cargo test --workspace --locked

echo "== the Debian package: build, install, sign through the installed files, remove"
./scripts/check-package.sh

echo "== the demo (README), on the debug build just made"
DEMO_PROFILE=debug ./demo.sh

echo "== all tests passed"
