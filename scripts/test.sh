#!/usr/bin/env bash
# Every test of ferrolb, on a fresh Debian machine, as root:
# installs dependencies, checks formatting and lints, runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test (unit, DPDK wrapper, end-to-end in network namespaces)"
# End-to-end tests serialise themselves; unit tests run in parallel.
cargo test --workspace --all-targets

echo "== pure-Rust data plane without DPDK (what fuzzers and benches build)"
cargo test -p forwarder --no-default-features --lib

echo "== the Debian package: build, install, systemd-analyze verify, man, check, remove"
bash scripts/package-test.sh

echo "== fuzzing: every cargo-fuzz target for 60 s from the checked-in corpus"
bash scripts/fuzz.sh 60
