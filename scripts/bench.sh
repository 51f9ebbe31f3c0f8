#!/usr/bin/env bash
# The pktgen-style dataplane benchmark (shared/DESIGN.md, Performance method).
#
# DPDK's pcap PMD replays captures of 64-byte TCP frames in a loop
# (infinite_rx=1) into the program under test, which transmits to a
# net_null port (no-rx=1: one direction only). In the same run and on the
# same worker core, dpdk-testpmd forwards the same capture (io and macswap):
# that is this machine's I/O floor, and ferrolb's figures are quoted as a
# ratio to testpmd io. ferrolb's figures come from its own counters (GET
# /api/v1/status: frames received and forwarded, TSC cycles in busy passes).
#
#   sudo scripts/bench.sh            # BENCH_SECONDS=5 per measurement
#   sudo scripts/bench.sh --sweep    # Mpps against active flows, DR and NAT:
#                                    # docs/perf-flows.csv and docs/perf-flows.png
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-5}
SWEEP=0
[ "${1:-}" = "--sweep" ] && SWEEP=1

bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/ferrolb
W=$(mktemp -d /tmp/ferrolb-bench.XXXXXX)
NS=flbench$$
LB=
cleanup() {
    set +e
    [ -n "$LB" ] && kill -TERM "$LB" 2>/dev/null && wait "$LB" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up

if [ "$SWEEP" = 1 ]; then
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
        { apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null; }
fi

# Sized for a capture of $1 frames: the pcap PMD holds every frame in an
# mbuf, and the rings (TAP, null) need theirs: 8,192 more, to 2^k - 1.
mbufs_for() { python3 -c "n = $1 + 8192; print((1 << (n - 1).bit_length()) - 1)"; }
mem_for() { if [ "$1" -le 65536 ]; then echo 1024; elif [ "$1" -le 262144 ]; then echo 4096; else echo 8192; fi; }
cap_for() { python3 -c "print(max(65536, 2 * $1))"; }

# testpmd MODE PCAP [MBUFS MEM] -> Mpps (best 1 s figure after the first)
testpmd() {
    local mbufs=${3:-}
    # Loading a large capture into mbufs takes a while before forwarding.
    timeout $((SECS + 4 + ${mbufs:-0} / 100000)) dpdk-testpmd -l 0-1 --no-huge -m "${4:-1024}" --no-pci --file-prefix=flbtpm$$ \
        --vdev="net_pcap0,rx_pcap=$2,infinite_rx=1" --vdev=net_null0,no-rx=1 -- \
        ${mbufs:+--total-num-mbufs=$mbufs} \
        --forward-mode="$1" --stats-period=1 --nb-cores=1 > "$W/testpmd-$1.log" 2>&1 || true
    grep -o "Rx-pps: *[0-9]*" "$W/testpmd-$1.log" | awk '{print $2}' | sort -n | tail -1 |
        awk '{printf "%.2f", $1 / 1e6}'
}

# ferrolb MODE PCAP CAPACITY MBUFS MEM -> "mpps cycles_per_packet new_flows_per_s"
ferrolb() {
    local mode=$1 pcap=$2 cap=$3 mbufs=$4 mem=$5 rport=80
    [ "$mode" = nat ] && rport=8080
    cat > "$W/lb.toml" <<TOML
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "$mem", "--no-pci", "--file-prefix=flb$$",
            "--vdev=net_pcap0,rx_pcap=$pcap,infinite_rx=1", "--vdev=net_null0,no-rx=1"]
workers = 1
conn_table_capacity = $cap
mbufs = $mbufs

[[port]]
name = "in"
device = "net_pcap0"
addresses = ["203.0.113.2/24"]

[[port]]
name = "out"
device = "net_null0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "bench"
address = "192.0.2.100"
port = 80
mode = "$mode"
port_name = "in"
TOML
    for i in 1 2 3 4; do
        printf '  [[vip.real]]\n  address = "192.0.2.2%s"\n  port = %s\n  mac = "02:00:00:00:00:2%s"\n' "$i" "$rport" "$i" >> "$W/lb.toml"
    done
    FERROLB_LOG=warn ip netns exec "$NS" "$BIN" run --config "$W/lb.toml" > "$W/lb.log" 2>&1 &
    LB=$!
    for _ in $(seq 1 300); do
        ip netns exec "$NS" curl -s -m 1 -o /dev/null http://127.0.0.1:9080/api/v1/status && break
        kill -0 "$LB" 2>/dev/null || { cat "$W/lb.log" >&2; return 1; }
        sleep 0.2
    done
    sleep 2
    ip netns exec "$NS" curl -s http://127.0.0.1:9080/api/v1/status > "$W/s0.json"
    local t0; t0=$(date +%s.%N)
    sleep "$SECS"
    ip netns exec "$NS" curl -s http://127.0.0.1:9080/api/v1/status > "$W/s1.json"
    local t1; t1=$(date +%s.%N)
    kill -TERM "$LB"; wait "$LB" || true; LB=
    python3 - "$W/s0.json" "$W/s1.json" "$t0" "$t1" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
dt = float(sys.argv[4]) - float(sys.argv[3])
w0, w1 = a["workers"][0], b["workers"][0]
fwd = w1["forwarded"] - w0["forwarded"]
rx = w1["rx"] - w0["rx"]
cyc = w1["busy_cycles"] - w0["busy_cycles"]
new = b["vips"][0]["new_flows"] - a["vips"][0]["new_flows"]
print(f"{fwd / dt / 1e6:.2f} {cyc / max(rx, 1):.0f} {new / dt:.0f}")
PY
}

if [ "$SWEEP" = 1 ]; then
    echo "== sweep: Mpps against active flows (DR, NAT), ratio to testpmd io on the same capture size"
    CSV=docs/perf-flows.csv
    echo "flows,testpmd_io_mpps,dr_mpps,nat_mpps,dr_ratio,nat_ratio,dr_cycles,nat_cycles" > "$CSV.tmp"
    for n in 4096 16384 65536 262144 1000000; do
        python3 scripts/mkpcap.py est "$n" "$W/sweep.pcap" >/dev/null
        IO=$(testpmd io "$W/sweep.pcap" "$(mbufs_for $n)" "$(mem_for $n)")
        read -r D DC _ < <(ferrolb dr "$W/sweep.pcap" "$(cap_for $n)" "$(mbufs_for $n)" "$(mem_for $n)")
        read -r N NC _ < <(ferrolb nat "$W/sweep.pcap" "$(cap_for $n)" "$(mbufs_for $n)" "$(mem_for $n)")
        DR_R=$(python3 -c "print(f'{$D / $IO:.2f}')")
        NAT_R=$(python3 -c "print(f'{$N / $IO:.2f}')")
        printf '   %8s flows: testpmd io %6s, DR %6s (%s, %s cycles), NAT %6s (%s, %s cycles)\n' \
            "$n" "$IO" "$D" "$DR_R" "$DC" "$N" "$NAT_R" "$NC"
        echo "$n,$IO,$D,$N,$DR_R,$NAT_R,$DC,$NC" >> "$CSV.tmp"
        rm -f "$W/sweep.pcap"
    done
    mv "$CSV.tmp" "$CSV"
    /usr/bin/python3 scripts/plot_flows.py "$CSV" docs/perf-flows.png
    echo "wrote $CSV and docs/perf-flows.png"
    exit 0
fi

echo "== captures (64-byte TCP frames to 192.0.2.100:80)"
python3 scripts/mkpcap.py est 4096 "$W/est4k.pcap"
python3 scripts/mkpcap.py est 1000000 "$W/est1m.pcap"
python3 scripts/mkpcap.py syn 262144 "$W/syn.pcap"
ls -la "$W"/*.pcap | awk '{print "   ", $5, $9}'

echo "== testpmd (I/O floor)"
IO=$(testpmd io "$W/est4k.pcap")
MS=$(testpmd macswap "$W/est4k.pcap")
echo "   io $IO Mpps, macswap $MS Mpps"
echo "== ferrolb"
read -r DR4 DR4C _ < <(ferrolb dr "$W/est4k.pcap" 65536 16383 1024)
read -r NAT4 NAT4C _ < <(ferrolb nat "$W/est4k.pcap" 65536 16383 1024)
read -r TUN4 TUN4C _ < <(ferrolb tun "$W/est4k.pcap" 65536 16383 1024)
read -r DR1M DR1MC _ < <(ferrolb dr "$W/est1m.pcap" 2097152 1100000 8192)
read -r NAT1M NAT1MC _ < <(ferrolb nat "$W/est1m.pcap" 2097152 1100000 8192)
read -r SYN SYNC SYNR < <(ferrolb dr "$W/syn.pcap" 65536 300000 1536)

ratio() { python3 -c "print(f'{float($1) / float($2):.2f}')"; }
echo
echo "ferrolb dataplane benchmark: one worker core, 64-byte frames, ${SECS}s per run, hugepages: not used (--no-huge)"
printf '%-34s %8s %10s %12s %14s\n' "case" "Mpps" "ratio/io" "cycles/pkt" "new flows/s"
printf '%-34s %8s %10s %12s %14s\n' "testpmd io (floor)" "$IO" "1.00" "-" "-"
printf '%-34s %8s %10s %12s %14s\n' "testpmd macswap" "$MS" "$(ratio "$MS" "$IO")" "-" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb DR, 4,096 flows" "$DR4" "$(ratio "$DR4" "$IO")" "$DR4C" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb NAT, 4,096 flows" "$NAT4" "$(ratio "$NAT4" "$IO")" "$NAT4C" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb TUN, 4,096 flows" "$TUN4" "$(ratio "$TUN4" "$IO")" "$TUN4C" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb DR, 1,000,000 flows" "$DR1M" "$(ratio "$DR1M" "$IO")" "$DR1MC" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb NAT, 1,000,000 flows" "$NAT1M" "$(ratio "$NAT1M" "$IO")" "$NAT1MC" "-"
printf '%-34s %8s %10s %12s %14s\n' "ferrolb DR, SYNs from new clients" "$SYN" "$(ratio "$SYN" "$IO")" "$SYNC" "$SYNR"
