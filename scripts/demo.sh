#!/usr/bin/env bash
# The ferrolb demo, on a fresh Debian machine, as root: installs what it
# needs, builds, builds a small network in namespaces, runs the balancer on
# it, shows it working, and removes everything it made.
#
#   [ns fldemo-client] ── veth ── [ns fldemo-lb: ferrolb on net_af_packet]
#     192.0.2.1/24                  192.0.2.2/24 (kernel side: TAP fl-demo)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building ferrolb (release)"
cargo build --release --quiet
BIN=$PWD/target/release/ferrolb

WORK=$(mktemp -d /tmp/ferrolb-demo.XXXXXX)
LB_PID=
cleanup() {
    set +e
    [ -n "$LB_PID" ] && kill -TERM "$LB_PID" 2>/dev/null && wait "$LB_PID" 2>/dev/null
    ip netns del fldemo-client 2>/dev/null
    ip netns del fldemo-lb 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
cleanup_quiet() { ip netns del fldemo-client 2>/dev/null || true; ip netns del fldemo-lb 2>/dev/null || true; }
cleanup_quiet

echo "== topology: client and balancer namespaces joined by a veth"
ip netns add fldemo-client
ip netns add fldemo-lb
ip link add vc-demo netns fldemo-client type veth peer name vb-demo netns fldemo-lb
ip -n fldemo-client addr add 192.0.2.1/24 dev vc-demo
ip -n fldemo-client link set vc-demo up
ip -n fldemo-lb link set vb-demo up

cat > "$WORK/ferrolb.toml" <<TOML
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fldemo",
            "--vdev=net_af_packet0,iface=vb-demo"]
workers = 1
idle_sleep = "100us"

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
gateway = "192.0.2.1"
tap = "fl-demo"
TOML
echo "== configuration"
cat "$WORK/ferrolb.toml"
"$BIN" check --config "$WORK/ferrolb.toml"

echo "== starting ferrolb"
ip netns exec fldemo-lb "$BIN" run --config "$WORK/ferrolb.toml" > "$WORK/ferrolb.log" 2>&1 &
LB_PID=$!
for _ in $(seq 1 100); do
    grep -q "ferrolb running" "$WORK/ferrolb.log" && break
    kill -0 "$LB_PID" 2>/dev/null || { cat "$WORK/ferrolb.log"; exit 1; }
    sleep 0.2
done
grep -q "ferrolb running" "$WORK/ferrolb.log" || { cat "$WORK/ferrolb.log"; exit 1; }

echo "== the client asks who has 192.0.2.2: ferrolb's data plane answers"
ip netns exec fldemo-client arping -c 3 -i vc-demo 192.0.2.2
echo "== the client pings the balancer: the kernel answers through the TAP exception path"
ip netns exec fldemo-client ping -c 3 -i 0.3 192.0.2.2
echo "== the balancer's kernel side"
ip -n fldemo-lb -br addr show fl-demo

echo "== stopping ferrolb (SIGTERM)"
kill -TERM "$LB_PID"
wait "$LB_PID"
LB_PID=
grep -E "port up|running|neighbour resolved|stopped" "$WORK/ferrolb.log"
echo "== done: everything the demo made is removed"
