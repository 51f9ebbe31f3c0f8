#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60), one
# after the other, starting from the checked-in corpus (copied into a
# scratch directory, so the checked-in corpus never grows).
#
#   bash scripts/fuzz.sh [SECONDS]        FUZZ_TARGETS="frame vrrp" to pick
#
# Exits non-zero if any target crashes; the crashing input is kept under
# fuzz/artifacts/<target>/ and its path printed, with the command that
# replays it. Run scripts/setup.sh first (it installs the C++ compiler
# libFuzzer builds with). There is no nightly toolchain here: cargo-fuzz's
# flags are allowed on stable through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
TARGETS=${FUZZ_TARGETS:-frame pipeline vrrp config http}
export RUSTC_BOOTSTRAP=1
# The harness is safe Rust: skip AddressSanitizer (twice the speed) and
# keep debug assertions and overflow checks on.
FLAGS=(--sanitizer none --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== fuzz: build ($(cargo fuzz --version))"
cargo fuzz build "${FLAGS[@]}"

scratch=$(mktemp -d -t ferrolb-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $TARGETS; do
    case $t in
        frame) max_len=2048 ;;
        pipeline) max_len=8192 ;;
        vrrp) max_len=4200 ;;
        config) max_len=8192 ;;
        http) max_len=4096 ;;
        *) echo "fuzz.sh: unknown target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$scratch/$t"
    cp fuzz/corpus/"$t"/* "$scratch/$t/"
    echo "== fuzz: $t for ${SECONDS_PER_TARGET}s ($(ls "$scratch/$t" | wc -l) seeds)"
    # One process (2-core machines); libFuzzer's own limits per input.
    if ! cargo fuzz run "${FLAGS[@]}" "$t" "$scratch/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" \
        -rss_limit_mb=1536 -timeout=10 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz.sh: FAILED: target $t crashed; input(s):" >&2
        # libFuzzer: "Test unit written to <path>" (crash-, timeout-, oom-).
        sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$scratch/$t.log" | while read -r c; do
            echo "  $c" >&2
            echo "  replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${FLAGS[*]} $t $c" >&2
        done
        failed+=("$t")
        continue
    fi
    grep -E "^(stat::|#[0-9]+[[:space:]]+DONE)" "$scratch/$t.log" || true
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${TARGETS// /, } (${SECONDS_PER_TARGET}s each)"
