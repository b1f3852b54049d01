#!/usr/bin/env bash
# The benchmark command: builds in release mode, runs akv-bench against the local emulator
# (HTTPS on 127.0.0.1, signatures cached so the emulator's own crypto is not measured) with
# wrk as the floor and strace counting system calls, and writes BENCHMARKS.md: the machine, the command, the figures. A hand-written analysis below
# the marker line in BENCHMARKS.md is kept across runs.
#
#   ./scripts/bench.sh            # full run, a few minutes
#   ./scripts/bench.sh --quick    # smaller counts
set -euo pipefail
cd "$(dirname "$0")/.."

# Two invocations: `--bin` would otherwise restrict the library packages to a binary they lack.
# The provider too: the HAProxy and code-signing sections load it (a stale one would measure
# old code).
cargo build --release --locked -p akv-engine -p akv-provider
cargo build --release --locked -p akv-tests --bin akv-bench --bin akv-h1-floor
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx)" >&2; exit 1; }
for tool in wrk strace valgrind osslsigncode; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install $tool)" >&2; exit 1; }
done
[[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] || { echo "systemd-boot's EFI image is needed (apt-get install systemd-boot-efi)" >&2; exit 1; }

out=BENCHMARKS.md
marker='<!-- analysis: kept across runs -->'
analysis=""
if [[ -f "$out" ]] && grep -qF "$marker" "$out"; then
    analysis=$(sed -n "/$marker/,\$p" "$out")
fi

report=$(./target/release/akv-bench "$@")

cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
    echo "# Benchmarks"
    echo
    echo "Measured by \`./scripts/bench.sh $*\` on $(date -u +%Y-%m-%d): $(nproc) CPU(s) ($cpu),"
    echo "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr), $(openssl version | cut -d' ' -f1-2), release build."
    echo "The vault is the local emulator over HTTPS on 127.0.0.1, answering repeated signatures from"
    echo "a cache; client and server share the same few cores, so absolute figures are only"
    echo "indicative: compare the ratios, which are measured in the same run."
    echo
    echo "$report"
    echo
    if [[ -n "$analysis" ]]; then echo "$analysis"; else echo "$marker"; fi
} > "$out"
echo "wrote $out"
