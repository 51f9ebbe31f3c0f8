#!/usr/bin/env bash
# Instructions per packet of the pipeline's hit path (DR and NAT, 4,096
# established flows; NAT replies; new flows), counted by callgrind: the same figure on every run of
# the same build, whatever else the machine does. For A/B of the pipeline.
#
#   scripts/instr.sh [PACKETS]       # default 200000
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
BIN=$(cargo bench -p forwarder --no-default-features --bench pipeline --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "pipeline" and m.get("executable"):
        print(m["executable"])')
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for mode in ${INSTR_MODES:-dr nat new new_evict natreply burst burst_nat burst_natreply burst_new}; do
    # Twice: N packets and 2N, so setup and warm-up cancel out.
    for k in 1 2; do
        PIPELINE_MODE=$mode PIPELINE_COUNT=$((N * k)) valgrind --tool=callgrind \
            --toggle-collect='*count_hits*' --callgrind-out-file="$OUT/$mode$k" "$BIN" >/dev/null 2>"$OUT/$mode$k.log"
    done
    a=$(grep -o 'refs: *[0-9,]*' "$OUT/${mode}1.log" | tr -dc 0-9)
    b=$(grep -o 'refs: *[0-9,]*' "$OUT/${mode}2.log" | tr -dc 0-9)
    case $mode in
        new) what="dr new flow (SYN from a new client)" ;;
        new_evict) what="dr new flow evicting a half-open one (table full)" ;;
        natreply) what="nat reply (real -> client), 4,096 flows" ;;
        burst) what="dr hit in bursts of 64 (handle_burst), 4,096 flows" ;;
        burst_nat) what="nat hit in bursts of 64 (handle_burst), 4,096 flows" ;;
        burst_natreply) what="nat reply in bursts of 64 (handle_burst), 4,096 flows" ;;
        burst_new) what="dr new flow in bursts of 64 (handle_burst)" ;;
        *) what="$mode hit, 4,096 flows" ;;
    esac
    python3 -c "print(f'$what: {($b - $a) / $N:.1f} instructions per packet')"
done
