#!/usr/bin/env python3
"""Writes the benchmark's captures: 64-byte TCP frames to the VIP.

  mkpcap.py est   N OUT   N established flows (ACK), one frame each
  mkpcap.py syn   N OUT   N unique clients sending a SYN, one frame each

Clients come from 198.51.100.0/24 and 203.0.113.0/24 with ports
1024-65535; the VIP is 192.0.2.100:80. Checksums are correct.
"""
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(i, flags):
    net = (198, 51, 100) if (i // 64512) % 2 == 0 else (203, 0, 113)
    host = (i // (64512 * 2)) % 254 + 1
    sport = 1024 + i % 64512
    src = bytes(net + (host,))
    dst = bytes((192, 0, 2, 100))
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1 + i, 1 if flags == 0x10 else 0, 0x50, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    f = eth + ip + tcp
    return f + b"\0" * (60 - len(f))


def main():
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    flags = {"est": 0x10, "syn": 0x02}[kind]
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII")
        for i in range(n):
            fr = frame(i, flags)
            f.write(rec.pack(0, 0, len(fr), len(fr)) + fr)


if __name__ == "__main__":
    main()
