#!/usr/bin/python3
"""Plots Mpps against active flows for DR and NAT (docs/perf-flows.png).

Input: the CSV that `scripts/bench.sh --sweep` writes (flows,
testpmd_io_mpps, dr_mpps, nat_mpps, ...). Usage: plot_flows.py CSV PNG [NOTE]
(NOTE, e.g. the memory the run used, goes under the title).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst, note=""):
    rows = list(csv.DictReader(open(src)))
    if not rows:
        sys.exit(f"{src}: no rows")
    flows = [int(r["flows"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(flows, [float(r["testpmd_io_mpps"]) for r in rows], "k--", marker="s",
            label="testpmd io (I/O floor)")
    ax.plot(flows, [float(r["dr_mpps"]) for r in rows], marker="o", label="ferrolb DR")
    ax.plot(flows, [float(r["nat_mpps"]) for r in rows], marker="^", label="ferrolb NAT")
    for r in rows:
        ax.annotate(r["dr_ratio"], (int(r["flows"]), float(r["dr_mpps"])),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("active flows (established TCP, one worker)")
    ax.set_ylabel("Mpps, 64-byte frames")
    ax.set_ylim(bottom=0)
    title = "ferrolb: throughput against active flows (labels: DR / testpmd io)"
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
