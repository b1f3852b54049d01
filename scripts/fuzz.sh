#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a bounded time each, with libFuzzer.
#
#   ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 seconds, all targets)
#
# Uses the nightly toolchain with AddressSanitizer when it is installed, else stable without
# a sanitizer (`-s none`). New inputs land in fuzz/corpus/<target>/, which the test command
# replays (akv-proto/tests/fuzz_corpus.rs); findings land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(key_id key_bundle op_result error_body www_authenticate token_response retry_after ecdsa driver token_fetch key_ref certificate_bundle h1_response)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=()
else
    fuzz=(cargo fuzz)
    sanitizer=(-s none)
fi

for target in "${targets[@]}"; do
    echo "== $target for ${seconds}s"
    "${fuzz[@]}" run "${sanitizer[@]}" "$target" -- \
        -max_total_time="$seconds" -dict=fuzz/dictionary.txt -print_final_stats=1 2>&1 |
        grep -E "stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|panicked|Done" || true
    if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
        echo "!! $target has findings in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
