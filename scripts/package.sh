#!/usr/bin/env bash
# Builds the Debian package of ferrolb with cargo-deb (installed here if
# missing) and prints its path: target/debian/ferrolb_VERSION-1_ARCH.deb.
#
#   scripts/package.sh
#
# The package holds the release binary, the systemd unit
# (packaging/ferrolb.service), a default /etc/ferrolb/ferrolb.toml
# (packaging/ferrolb.toml), man pages and bash / zsh / fish completions
# generated from the command's definitions (`ferrolb gen-assets`), and the
# README and configuration reference. Its dependencies are Debian's DPDK
# runtime libraries (Cargo.toml, [package.metadata.deb]).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi
for tool in dpkg-shlibdeps gzip; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool is needed (scripts/setup.sh installs it)" >&2; exit 1; }
done
cargo build --release --bin ferrolb >&2
rm -rf target/assets
target/release/ferrolb gen-assets target/assets
gzip -9n target/assets/man/*.1
cargo deb --no-build --output target/debian/ >&2
ls -t target/debian/ferrolb_*.deb | head -1
