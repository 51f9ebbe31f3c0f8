#!/usr/bin/env python3
"""Writes the benchmark's captures: 64-byte TCP frames to the VIP.

  mkpcap.py est    N OUT [K/P]   N established flows (ACK), one frame each
  mkpcap.py syn    N OUT [K/P]   N unique clients sending a SYN, one frame each
  mkpcap.py natmix N OUT [Q/W]   N NAT flows: each a request (client -> VIP)
                                 and its reply (real 192.0.2.21:8080 -> client)
  mkpcap.py natsteer N OUT Q/W   the same flows, as a NIC that steers delivers
                                 them: queue Q gets requests and replies of
                                 the flows worker Q owns

Clients come from 198.51.100.0/24 and 203.0.113.0/24 with ports
1024-65535; the VIP is 192.0.2.100:80. Checksums are correct.

K/P keeps the flows i with i % P == K: one capture per receive queue of a
multi-worker run. For natmix, Q/W writes what lands on queue Q of W
workers when replies land on the wrong worker: the requests of the flows
worker Q owns and the replies of the flows worker Q+1 owns (ferrolb's
owner function of the client endpoint, forwarder/src/steer.rs), so that
every reply is handed to another worker. natsteer writes what lands on
queue Q when the NICs hash the client side only (hardware steering):
both directions of the flows worker Q owns. natmix clients are
203.0.113.1-250 (connected to the bench's client port: the balancer
learns their MACs from the requests and sends the replies back to them).
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
    return tcp_frame(i, bytes(net + (host,)), sport, bytes((192, 0, 2, 100)), 80, flags)


def nat_client(i):
    return bytes((203, 0, 113, 1 + i % 250)), 1024 + i


def owner(addr, port, workers):
    """ferrolb's owner worker of a client endpoint (Steer::client_owner_v4):
    the Toeplitz hash under the key 0x6d5a repeated, of the xor of the
    endpoint's 16-bit words, through one period of the redirection table."""
    a = int.from_bytes(addr, "big")
    fold = ((a >> 16) ^ a ^ port) & 0xFFFF
    pattern, h = 0x6D5A6D5A, 0
    for j in range(16):
        if fold & (0x8000 >> j):
            h ^= ((pattern << j) | (pattern >> (32 - j))) & 0xFFFFFFFF
    return (h % 64) % workers


def tcp_frame(i, src, sport, dst, dport, flags):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1 + i, 1 if flags == 0x10 else 0, 0x50, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    f = eth + ip + tcp
    return f + b"\0" * (60 - len(f))


def frames(kind, n, part):
    k, p = part
    if kind in ("est", "syn"):
        flags = {"est": 0x10, "syn": 0x02}[kind]
        for i in range(n):
            if i % p == k:
                yield frame(i, flags)
        return
    vip, real = bytes((192, 0, 2, 100)), bytes((192, 0, 2, 21))
    for i in range(n):
        client, cport = nat_client(i)
        o = owner(client, cport, p)
        reply_on = o if kind == "natsteer" else (o + p - 1) % p
        if p == 1 or o == k:
            yield tcp_frame(i, client, cport, vip, 80, 0x10)
        if p == 1 or reply_on == k:
            yield tcp_frame(i, real, 8080, client, cport, 0x10)


def main():
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    part = (0, 1)
    if len(sys.argv) > 4:
        k, p = sys.argv[4].split("/")
        part = (int(k), int(p))
    if kind not in ("est", "syn", "natmix", "natsteer"):
        sys.exit(f"mkpcap.py: unknown kind {kind!r} (est, syn, natmix, natsteer)")
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII")
        for fr in frames(kind, n, part):
            f.write(rec.pack(0, 0, len(fr), len(fr)) + fr)


if __name__ == "__main__":
    main()
