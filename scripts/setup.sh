#!/usr/bin/env bash
# Installs what ferrolb needs to build, run and test on Debian 12 (as root),
# and reserves hugepages when the kernel allows it. Idempotent: run it as
# often as you like.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs packages and configures hugepages)" >&2
    exit 1
fi

PACKAGES=(
    # build: DPDK headers and libraries, bindgen's libclang, pkg-config
    libdpdk-dev dpdk dpdk-dev pkg-config clang libclang-dev build-essential
    # tests and demo: namespaces, captures, real servers and clients
    iproute2 iputils-ping arping ethtool tcpdump nginx-light curl python3 procps
    python3-prometheus-client chromium
    # outbound NAT test: a name server outside and a resolver client
    dnsmasq-base bind9-dnsutils
    # the Debian package: cargo-deb's dependency scan, its test's unit check and man
    dpkg-dev systemd man-db
    # the admin API over HTTPS test: a throw-away CA
    openssl
    # load under reloads: wrk
    wrk
    # HA interop test: a keepalived VRRPv3 peer
    keepalived
    # active/active test: BGP daemons on the nodes and the router
    bird2 frr
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup.sh: cargo not found: install a Rust toolchain (rustup, Rust >= 1.80) first" >&2
    exit 1
fi

# nginx from the package starts a system instance; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
    # Likewise BIRD and FRR: the tests run theirs in namespaces.
    systemctl disable --now bird frr >/dev/null 2>&1 || true
fi

# Hugepages: 2 MiB pages for DPDK's memory. Tests and the demo pass
# --no-huge and do not need them; benchmarks use them when present.
HUGEPAGES=${FERROLB_HUGEPAGES:-512}
if [ -w /proc/sys/vm/nr_hugepages ]; then
    have=$(cat /proc/sys/vm/nr_hugepages)
    if [ "$have" -lt "$HUGEPAGES" ]; then
        echo "$HUGEPAGES" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
    fi
fi
if ! mount | grep -q "type hugetlbfs"; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
fi
got=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if mount | grep -q "type hugetlbfs" && [ "$got" -gt 0 ]; then
    echo "setup.sh: hugepages: $got x 2 MiB, hugetlbfs mounted"
else
    echo "setup.sh: hugepages: unavailable here (ferrolb runs with --no-huge)"
fi
echo "setup.sh: ready ($(pkg-config --modversion libdpdk | sed 's/^/DPDK /'), $(cargo --version))"
