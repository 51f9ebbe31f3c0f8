#!/usr/bin/env bash
# The ferrolb demo, on a fresh Debian machine, as root: installs what it
# needs, builds, makes a one-arm direct-routing network in namespaces,
# runs ferrolb in front of three nginx real servers, shows requests spread
# over them and `ferrolb status`, and removes everything it made.
#
#                      [ns fldemo-sw: bridge br0]
#   fldemo-client 192.0.2.1  |  fldemo-lb 192.0.2.2 (ferrolb, VIP 192.0.2.100)
#   fldemo-real1..3 192.0.2.21-23 (nginx; VIP on lo, arp_ignore=1, arp_announce=2)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building ferrolb (release)"
cargo build --release --quiet
BIN=$PWD/target/release/ferrolb

WORK=$(mktemp -d /tmp/ferrolb-demo.XXXXXX)
NSS="fldemo-sw fldemo-client fldemo-lb fldemo-real1 fldemo-real2 fldemo-real3"
LB_PID=
cleanup() {
    set +e
    [ -n "$LB_PID" ] && kill -TERM "$LB_PID" 2>/dev/null && wait "$LB_PID" 2>/dev/null
    for i in 1 2 3; do
        [ -f "$WORK/real$i/nginx.pid" ] && kill -QUIT "$(cat "$WORK/real$i/nginx.pid")" 2>/dev/null
    done
    sleep 0.5
    for ns in $NSS; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
for ns in $NSS; do ip netns del "$ns" 2>/dev/null || true; done

echo "== topology: a bridge, a client, the balancer and three real servers"
ip netns add fldemo-sw
ip -n fldemo-sw link add br0 type bridge
ip -n fldemo-sw link set br0 up
n=0
plug() { # plug NS ADDR
    n=$((n + 1))
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip link add "sw-p$n" netns fldemo-sw type veth peer name eth0 netns "$1"
    ip -n fldemo-sw link set "sw-p$n" master br0 up
    ip -n "$1" link set eth0 up
    # Checksums computed by the sender (a packet socket forwards frames as they are).
    ip netns exec "$1" ethtool -K eth0 tx off >/dev/null 2>&1 || true
    [ -n "$2" ] && ip -n "$1" addr add "$2" dev eth0
    return 0
}
plug fldemo-client 192.0.2.1/24
plug fldemo-lb ""
for i in 1 2 3; do
    plug "fldemo-real$i" "192.0.2.2$i/24"
    ip netns exec "fldemo-real$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
    ip -n "fldemo-real$i" addr add 192.0.2.100/32 dev lo
    mkdir -p "$WORK/real$i"
    cat > "$WORK/real$i/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/real$i/nginx.pid;
error_log $WORK/real$i/error.log;
events { worker_connections 64; }
http {
    access_log $WORK/real$i/access.log;
    client_body_temp_path $WORK/real$i;
    proxy_temp_path $WORK/real$i;
    fastcgi_temp_path $WORK/real$i;
    uwsgi_temp_path $WORK/real$i;
    scgi_temp_path $WORK/real$i;
    server {
        listen 80;
        location / { default_type text/plain; return 200 "hello from real$i (192.0.2.2$i), you are \$remote_addr\n"; }
    }
}
NGINX
    ip netns exec "fldemo-real$i" nginx -c "$WORK/real$i/nginx.conf"
done

cat > "$WORK/ferrolb.toml" <<TOML
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fldemo",
            "--vdev=net_af_packet0,iface=eth0"]
workers = 1
idle_sleep = "100us"

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
scheduler = "maglev"
  [[vip.real]]
  address = "192.0.2.21"
  [[vip.real]]
  address = "192.0.2.22"
  [[vip.real]]
  address = "192.0.2.23"
TOML
echo "== configuration"
cat "$WORK/ferrolb.toml"
"$BIN" check --config "$WORK/ferrolb.toml"

echo "== starting ferrolb"
ip netns exec fldemo-lb "$BIN" run --config "$WORK/ferrolb.toml" > "$WORK/ferrolb.log" 2>&1 &
LB_PID=$!
for _ in $(seq 1 150); do
    grep -q "neighbour resolved ip=192.0.2.23" "$WORK/ferrolb.log" && break
    kill -0 "$LB_PID" 2>/dev/null || { cat "$WORK/ferrolb.log"; exit 1; }
    sleep 0.2
done
grep -q "ferrolb running" "$WORK/ferrolb.log" || { cat "$WORK/ferrolb.log"; exit 1; }

echo "== who has the VIP 192.0.2.100? only ferrolb answers"
ip netns exec fldemo-client arping -c 2 -i eth0 192.0.2.100
echo "== 30 requests from the client to http://192.0.2.100/"
for i in $(seq 1 30); do ip netns exec fldemo-client curl -s -m 3 http://192.0.2.100/; done | sort | uniq -c
echo "== ferrolb status"
ip netns exec fldemo-lb "$BIN" status
echo "== stopping ferrolb (SIGTERM)"
kill -TERM "$LB_PID"
wait "$LB_PID"
LB_PID=
grep -E "port up|running|stopped" "$WORK/ferrolb.log"
echo "== done: the demo removes every namespace and file it made"
