#!/usr/bin/env bash
# The fuzz targets' smoke run (CI runs it after the tests): every target for SECONDS
# (default 30) from its seeds, on the nightly toolchain, so a parser that starts to crash on
# what its seeds lead to is caught. A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/ (turn it into a regression test, then fix the parser).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/smoke.sh: installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz --locked
fi
cargo +nightly fuzz build -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo +nightly fuzz list); do
    mkdir -p "$work/$target"
    # New inputs go to the scratch corpus (first); the seeds are only read.
    if ! cargo +nightly fuzz run -O "$target" "$work/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 >"$work/$target.log" 2>&1; then
        tail -n 40 "$work/$target.log" >&2
        echo "fuzz/smoke.sh: $target FAILED" >&2
        exit 1
    fi
    echo "$target: $(grep -E '^Done [0-9]+ runs' "$work/$target.log" | tail -n 1)"
done
