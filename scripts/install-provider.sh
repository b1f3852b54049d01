#!/usr/bin/env bash
# Builds the akv provider in release mode and installs it as akv.so where OpenSSL looks for
# provider modules (`openssl version -m`), or into the folder given as the first argument.
# The same module serves OpenSSL 3 and OpenSSL 4; OPENSSL names the `openssl` to ask.
#
#   sudo ./scripts/install-provider.sh           # into OpenSSL's modules folder
#   ./scripts/install-provider.sh ~/providers    # elsewhere; then -provider-path ~/providers
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p akv-provider
lib="target/release/libakv.so"
openssl=${OPENSSL:-openssl}

dest="${1:-}"
if [[ -z "$dest" ]]; then
    dest=$("$openssl" version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')
    [[ -n "$dest" ]] || { echo "cannot find OpenSSL's modules folder ($openssl version -m)" >&2; exit 1; }
fi
mkdir -p "$dest"
install -m 0644 "$lib" "$dest/akv.so"
echo "installed $dest/akv.so"
if [[ -n "${1:-}" ]]; then
    echo "use it with: -provider-path $dest -provider default -provider akv"
fi
