#!/usr/bin/env bash
# Builds the e_akv engine in release mode and installs it as e_akv.so where OpenSSL looks
# for engines (`openssl version -e`), or into the folder given as the first argument.
#
#   sudo ./scripts/install-engine.sh            # into OpenSSL's engines folder
#   ./scripts/install-engine.sh ~/engines       # elsewhere; then export OPENSSL_ENGINES=~/engines
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p akv-engine
lib="target/release/libe_akv.so"

dest="${1:-}"
if [[ -z "$dest" ]]; then
    dest=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
    [[ -n "$dest" ]] || { echo "cannot find OpenSSL's engines folder (openssl version -e)" >&2; exit 1; }
fi
mkdir -p "$dest"
install -m 0644 "$lib" "$dest/e_akv.so"
echo "installed $dest/e_akv.so"
if [[ -n "${1:-}" ]]; then
    echo "use it with: export OPENSSL_ENGINES=$dest"
fi
openssl engine -t e_akv >/dev/null 2>&1 && echo "openssl loads it: openssl engine -t e_akv" || true
