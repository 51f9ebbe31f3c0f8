"""Hostile frames for ferrolb's robustness test (tests/e2e_robust.rs).

Builds frames by hand (no scapy) and sends them from a raw AF_PACKET socket
on one interface, paced so that the receiving packet ring never overflows.
Prints one JSON object: per category, frames sent and frames the local
kernel refused (send() error; those never reach the wire).

Usage: hostile.py IFACE DST_MAC VIP4 VIP6 SELF4 CATEGORY[,CATEGORY...]|all ROUNDS

Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32), plus the special addresses the tests are
about (broadcast, multicast, loopback, unspecified).
"""

import json
import os
import socket
import struct
import sys
import time

IFACE, DST_MAC, VIP4, VIP6, SELF4, CATS, ROUNDS = sys.argv[1:8]
ROUNDS = int(ROUNDS)
DST = bytes.fromhex(DST_MAC.replace(":", ""))
SRC = bytes.fromhex("020000006601")  # the attacker's MAC (locally administered)
V4, V6 = socket.inet_aton(VIP4), socket.inet_pton(socket.AF_INET6, VIP6)
SELF = socket.inet_aton(SELF4)
ATT4 = socket.inet_aton("203.0.113.7")
ATT6 = socket.inet_pton(socket.AF_INET6, "2001:db8:66::7")
LB6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def eth(payload, etype=0x0800, dst=DST, src=SRC):
    return dst + src + struct.pack("!H", etype) + payload


def ip4(payload, proto=6, src=ATT4, dst=V4, ttl=64, ihl=5, opts=b"", tlen=None,
        frag=0, ident=0x1234, ver=4, good_sum=True):
    hlen = 20 + len(opts)
    total = hlen + len(payload) if tlen is None else tlen
    h = struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, total & 0xFFFF, ident,
                    frag, ttl, proto, 0, src, dst) + opts
    c = csum(h) if good_sum else 0xBEEF
    h = h[:10] + struct.pack("!H", c) + h[12:]
    return h + payload


def ip6(payload, nh=6, src=ATT6, dst=V6, hlim=64, plen=None, ver=6):
    pl = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", ver << 28, pl & 0xFFFF, nh, hlim, src, dst) + payload


def tcp(sport=40000, dport=80, flags=0x02, doff=5, data=b"", src=ATT4, dst=V4, v6=False):
    opts = b"\0" * max(0, (doff - 5) * 4)
    h = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, (doff & 15) << 4, flags,
                    65535, 0, 0) + opts
    seg = h + data
    if v6:
        ph = src + dst + struct.pack("!IxxxB", len(seg), 6)
    else:
        ph = src + dst + struct.pack("!xBH", 6, len(seg))
    c = csum(ph + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(sport=40000, dport=53, data=b"x", ulen=None):
    n = 8 + len(data) if ulen is None else ulen
    return struct.pack("!HHHH", sport, dport, n & 0xFFFF, 0) + data


def icmp(t, code, body):
    h = struct.pack("!BBHI", t, code, 0, 0) + body
    return h[:2] + struct.pack("!H", csum(h)) + h[4:]


def icmp6(t, code, body, src=ATT6, dst=V6):
    h = struct.pack("!BBHI", t, code, 0, 0) + body
    ph = src + dst + struct.pack("!IxxxB", len(h), 58)
    c = csum(ph + h)
    return h[:2] + struct.pack("!H", c) + h[4:]


def arp(htype=1, ptype=0x0800, hlen=6, plen=4, op=1, sha=SRC, spa=None, tha=b"\0" * 6,
        tpa=None, trunc=None):
    spa = socket.inet_aton("203.0.113.7") if spa is None else spa
    tpa = V4 if tpa is None else tpa
    b = struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + sha + spa + tha + tpa
    return b if trunc is None else b[:trunc]


def ext(nh, body_len8=0, fill=b"\x01\x00"):
    """An IPv6 options-style extension header (HBH / destination options)
    with a PadN option filling 8 * (body_len8 + 1) bytes."""
    total = 8 * (body_len8 + 1)
    pad = total - 2
    body = b"\x01" + bytes([pad - 2]) + b"\0" * (pad - 2) if pad >= 2 else b"\0" * pad
    return bytes([nh, body_len8]) + body


def frag6(nh, offset, more, ident):
    return struct.pack("!BBHI", nh, 0, (offset & 0x1FFF) << 3 | int(more), ident)


# ---------------------------------------------------------------- categories

def c_eth_trunc():
    full = eth(ip4(tcp()))
    return [full[:n] for n in range(0, 14)] + [eth(b"", 0x0800), eth(b"", 0x86DD),
                                               eth(b"", 0x0806), eth(b"", 0x8100)]


def c_ipv4_trunc():
    full = ip4(tcp())
    out = [eth(full[:n]) for n in range(1, 20)]
    withopt = ip4(tcp(), ihl=8, opts=b"\x01" * 12)
    out += [eth(withopt[:n]) for n in range(20, 32)]
    return out


def c_ipv4_bad_fields():
    out = []
    seg = tcp()
    for ihl in range(0, 5):  # IHL below the minimum
        out.append(eth(ip4(seg, ihl=ihl)))
    out.append(eth(ip4(seg, ihl=15)))  # header longer than the packet
    for tlen in (0, 1, 19, 20, 21, 39, 41, 1000, 65535):  # total length lies
        out.append(eth(ip4(seg, tlen=tlen)))
    for ver in (0, 1, 5, 6, 7, 15):  # wrong version in an IPv4 frame
        out.append(eth(ip4(seg, ver=ver)))
    out.append(eth(ip4(seg, good_sum=False)))  # bad header checksum
    out.append(eth(ip4(seg, frag=0x8000)))  # reserved (evil) bit
    return out


def c_ipv4_options():
    out = []
    seg = tcp(sport=41000, flags=0x02)
    optsets = [
        b"\x01\x01\x01\x00",  # NOP NOP NOP EOL
        b"\x07\x07\x04" + b"\0" * 4 + b"\0",  # record route
        b"\x44\x0c\x05\x00" + b"\0" * 8,  # timestamp
        b"\x83\x07\x04" + socket.inet_aton("198.51.100.9") + b"\0",  # LSRR
        b"\x89\x07\x04" + socket.inet_aton("198.51.100.9") + b"\0",  # SSRR
        b"\x94\x04\x00\x00",  # router alert
        b"\x07\x00\x00\x00",  # option length 0 (invalid)
        b"\x07\xff\x00\x00",  # option length past the header
        b"\x01" * 40,  # the longest header
    ]
    for i, o in enumerate(optsets):
        ihl = 5 + len(o) // 4
        out.append(eth(ip4(tcp(sport=41000 + i), ihl=ihl, opts=o)))
        out.append(eth(ip4(tcp(sport=41100 + i, src=ATT4, dst=SELF), dst=SELF, ihl=ihl, opts=o)))
    return out


def c_ttl():
    out = []
    for ttl in (0, 1):
        out.append(eth(ip4(tcp(sport=42000 + ttl), ttl=ttl)))
        out.append(eth(ip4(udp(), proto=17, ttl=ttl)))
        out.append(eth(ip4(icmp(8, 0, b"ping"), proto=1, ttl=ttl)))
        out.append(eth(ip4(tcp(sport=42010 + ttl, dst=SELF), dst=SELF, ttl=ttl)))
        out.append(eth(ip6(tcp(sport=42020 + ttl, src=ATT6, dst=V6, v6=True), hlim=ttl), 0x86DD))
    return out


def c_tcp_flags():
    return [eth(ip4(tcp(sport=43000 + f, flags=f))) for f in range(256)] + \
           [eth(ip6(tcp(sport=43000 + f, flags=f, src=ATT6, dst=V6, v6=True)), 0x86DD)
            for f in range(256)]


def c_tcp_malformed():
    out = []
    seg = tcp(sport=44000)
    for n in range(0, 20):  # TCP header cut at every length (IP length agrees)
        out.append(eth(ip4(seg[:n])))
    for doff in (0, 1, 4, 15):  # data offset below 5 or past the segment
        out.append(eth(ip4(tcp(sport=44100 + doff, doff=doff)[:20])))
    seg6 = tcp(sport=44300, src=ATT6, dst=V6, v6=True)
    for n in range(0, 20, 4):
        out.append(eth(ip6(seg6[:n]), 0x86DD))
    out.append(eth(ip4(tcp(sport=44200, dport=0))))  # port 0
    out.append(eth(ip4(tcp(sport=0, dport=80))))
    return out


def c_udp_malformed():
    out = []
    d = udp(data=b"hello")
    for n in range(0, 8):
        out.append(eth(ip4(d[:n], proto=17)))
        out.append(eth(ip4(d[:n], proto=17, dst=SELF)))
    for ulen in (0, 1, 7, 9, 200, 65535):
        out.append(eth(ip4(udp(data=b"hello", ulen=ulen), proto=17)))
        out.append(eth(ip4(udp(data=b"hello", ulen=ulen), proto=17, dst=SELF)))
    for n in range(0, 8, 2):
        out.append(eth(ip6(d[:n], nh=17), 0x86DD))
    out.append(eth(ip4(udp(data=b""), proto=17)))  # zero-length payload
    return out


def c_icmp():
    out = []
    ping = icmp(8, 0, b"\0\1\0\1abcdefgh")
    for n in range(0, 8):  # ICMP header cut short
        out.append(eth(ip4(ping[:n], proto=1)))
        out.append(eth(ip4(ping[:n], proto=1, dst=SELF)))
    out.append(eth(ip4(ping, proto=1)))  # echo to the VIP: answered
    garbage = bytes(range(64))
    for t, c in ((3, 4), (3, 3), (11, 0), (12, 0), (5, 1), (4, 0)):
        out.append(eth(ip4(icmp(t, c, garbage), proto=1)))  # quoting garbage
        out.append(eth(ip4(icmp(t, c, garbage[:3]), proto=1)))
        inner_trunc = ip4(tcp(), src=V4, dst=ATT4)[:12]
        out.append(eth(ip4(icmp(t, c, inner_trunc), proto=1)))
        # quoting a flow that does not exist: VIP:80 -> 203.0.113.9:1234
        ghost = ip4(tcp(sport=80, dport=1234, src=V4, dst=socket.inet_aton("203.0.113.9")),
                    src=V4, dst=socket.inet_aton("203.0.113.9"))[:28]
        out.append(eth(ip4(icmp(t, c, ghost), proto=1)))
        out.append(eth(ip4(icmp(t, c, ghost), proto=1, dst=SELF)))
    for t in (0, 9, 10, 13, 17, 40, 255):  # other types to the VIP
        out.append(eth(ip4(icmp(t, 0, b"abcd"), proto=1)))
    # ICMPv6 errors quoting garbage and ghosts; truncated ICMPv6
    ghost6 = ip6(tcp(sport=80, dport=1234, src=V6, dst=ATT6, v6=True), src=V6, dst=ATT6)[:48]
    for t, c in ((1, 4), (2, 0), (3, 0), (4, 1)):
        out.append(eth(ip6(icmp6(t, c, garbage), nh=58), 0x86DD))
        out.append(eth(ip6(icmp6(t, c, ghost6), nh=58), 0x86DD))
    for n in range(0, 8):
        out.append(eth(ip6(icmp6(128, 0, b"\0\1\0\1")[:n], nh=58), 0x86DD))
    out.append(eth(ip6(icmp6(128, 0, b"\0\1\0\1ping"), nh=58), 0x86DD))
    # neighbour discovery with garbage: NS too short, bad hop limit, bad code
    ns = icmp6(135, 0, V6)
    out.append(eth(ip6(ns[:10], nh=58, hlim=255), 0x86DD))
    out.append(eth(ip6(ns, nh=58, hlim=64), 0x86DD))
    out.append(eth(ip6(icmp6(135, 7, V6), nh=58, hlim=255), 0x86DD))
    return out


def c_ipv6_trunc():
    full = ip6(tcp(src=ATT6, dst=V6, v6=True))
    out = [eth(full[:n], 0x86DD) for n in range(1, 40)]
    for plen in (0, 1, 19, 21, 1000, 65535):
        out.append(eth(ip6(tcp(src=ATT6, dst=V6, v6=True), plen=plen), 0x86DD))
    for ver in (0, 4, 7, 15):
        out.append(eth(ip6(tcp(src=ATT6, dst=V6, v6=True), ver=ver), 0x86DD))
    return out


def c_ipv6_ext():
    out = []
    seg = lambda sp: tcp(sport=sp, src=ATT6, dst=V6, v6=True)
    # HBH, destination options, routing (type 0, deprecated), chains
    out.append(eth(ip6(ext(6) + seg(45000), nh=0), 0x86DD))
    out.append(eth(ip6(ext(6, 2) + seg(45001), nh=60), 0x86DD))
    rt0 = bytes([6, 2, 0, 1, 0, 0, 0, 0]) + V6
    out.append(eth(ip6(rt0 + seg(45002), nh=43), 0x86DD))
    out.append(eth(ip6(ext(60) + ext(6) + seg(45003), nh=0), 0x86DD))
    # a long chain: 30 destination options headers
    chain = b"".join(ext(60) for _ in range(29)) + ext(6)
    out.append(eth(ip6(chain + seg(45004), nh=60), 0x86DD))
    # a chain that fills the frame: 180 headers (1440 bytes)
    chain = b"".join(ext(60) for _ in range(179)) + ext(6)
    out.append(eth(ip6(chain[:1400], nh=60), 0x86DD))
    # HBH that is not first
    out.append(eth(ip6(ext(0) + ext(6) + seg(45005), nh=60), 0x86DD))
    # unknown next headers, and "no next header"
    for nh in (59, 143, 200, 253, 254, 255):
        out.append(eth(ip6(ext(nh) + b"\0" * 16, nh=60), 0x86DD))
        out.append(eth(ip6(b"\0" * 16, nh=nh), 0x86DD))
    # extension header length past the packet, and cut in the middle
    out.append(eth(ip6(bytes([6, 200]) + b"\0" * 6 + seg(45006), nh=60), 0x86DD))
    out.append(eth(ip6(ext(6, 3)[:12], nh=60), 0x86DD))
    out.append(eth(ip6(b"\x06", nh=0), 0x86DD))
    # AH and ESP to the VIP
    out.append(eth(ip6(bytes([6, 4, 0, 0]) + b"\0" * 20 + seg(45007), nh=51), 0x86DD))
    out.append(eth(ip6(b"\0" * 40, nh=50), 0x86DD))
    # two fragment headers
    out.append(eth(ip6(frag6(44, 0, True, 7) + frag6(6, 0, False, 7) + seg(45008), nh=44), 0x86DD))
    return out


def c_fragments():
    out = []
    seg = tcp(sport=46000, data=b"A" * 64)
    # IPv4 tiny first fragment: 8 bytes (TCP header cut), then the rest
    out.append(eth(ip4(seg[:8], frag=0x2000, ident=0x4001)))
    out.append(eth(ip4(seg[8:], frag=1, ident=0x4001)))
    # overlapping fragments: 0-23, 8-31 (overlap), 16-end
    out.append(eth(ip4(seg[:24], frag=0x2000, ident=0x4002)))
    out.append(eth(ip4(seg[8:32], frag=0x2000 | 1, ident=0x4002)))
    out.append(eth(ip4(seg[16:], frag=2, ident=0x4002)))
    # a later fragment without its first; one past 64 KiB
    out.append(eth(ip4(b"B" * 16, frag=0x2000 | 100, ident=0x4003)))
    out.append(eth(ip4(b"B" * 64, frag=0x1FFF, ident=0x4004)))
    # first fragment without TCP at all, and MF with a zero-length payload
    out.append(eth(ip4(b"", frag=0x2000, ident=0x4005)))
    out.append(eth(ip4(seg[:4], frag=0x2000, ident=0x4006, dst=SELF)))
    # the same first fragment twice (duplicate)
    for _ in range(2):
        out.append(eth(ip4(seg[:24], frag=0x2000, ident=0x4007)))
    # IPv6: tiny first fragment, overlapping, orphan later fragment
    s6 = tcp(sport=46100, src=ATT6, dst=V6, v6=True, data=b"C" * 64)
    out.append(eth(ip6(frag6(6, 0, True, 0x5001) + s6[:8], nh=44), 0x86DD))
    out.append(eth(ip6(frag6(6, 1, False, 0x5001) + s6[8:], nh=44), 0x86DD))
    out.append(eth(ip6(frag6(6, 0, True, 0x5002) + s6[:24], nh=44), 0x86DD))
    out.append(eth(ip6(frag6(6, 1, True, 0x5002) + s6[8:32], nh=44), 0x86DD))
    out.append(eth(ip6(frag6(6, 50, False, 0x5003) + b"D" * 16, nh=44), 0x86DD))
    out.append(eth(ip6(frag6(6, 0, False, 0x5004) + s6, nh=44), 0x86DD))  # atomic
    return out


def c_sizes():
    out = []
    out.append(eth(ip4(tcp(sport=47000, flags=0x10)), 0x0800))  # 54 bytes, unpadded
    out.append(eth(ip4(tcp(sport=47001, flags=0x10)) + b"\0" * 6))  # padded to 60
    out.append(eth(ip4(udp(data=b""), proto=17, dst=SELF)))  # zero-length UDP to self
    for n in (100, 1000, 1480):  # the largest frame the lab's MTU carries
        out.append(eth(ip4(tcp(sport=47100 + n, flags=0x10, data=b"Z" * (n - 20)))))
    for n in (1600, 2000, 2100, 4000, 8000, 8980):  # jumbo frames: past the
        out.append(eth(ip4(tcp(sport=47200 + n % 97, flags=0x10, data=b"Z" * (n - 20)))))
    out.append(eth(b"\0" * 8986, 0x0800))  # a jumbo of zeros
    return out


def c_vlan():
    out = []
    inner = ip4(tcp(sport=48000))
    out.append(eth(struct.pack("!HH", 100, 0x0800) + inner, 0x8100))  # 802.1Q
    out.append(eth(struct.pack("!HH", 0, 0x0800) + inner, 0x8100))  # priority tag
    out.append(eth(struct.pack("!HHHH", 10, 0x8100, 20, 0x0800) + inner, 0x88A8))  # QinQ
    out.append(eth(struct.pack("!HH", 100, 0x0806) + arp(), 0x8100))  # tagged ARP
    out.append(eth(struct.pack("!H", 100), 0x8100))  # a tag cut short
    out.append(eth(inner, 0x9100))  # old QinQ ethertype
    for et in (0x0000, 0x05DC, 0x88CC, 0x8847, 0x8863, 0xFFFF):  # other ethertypes
        out.append(eth(inner, et))
    return out


def c_arp():
    out = []
    for kw in (dict(hlen=0), dict(hlen=7), dict(hlen=255), dict(plen=0), dict(plen=6),
               dict(plen=16), dict(htype=6), dict(htype=0), dict(ptype=0x86DD),
               dict(op=0), dict(op=3), dict(op=0xFFFF), dict(trunc=7), dict(trunc=27),
               dict(trunc=0)):
        out.append(eth(arp(**kw), 0x0806, dst=b"\xff" * 6))
    out.append(eth(arp(sha=b"\xff" * 6), 0x0806, dst=b"\xff" * 6))  # broadcast sender
    out.append(eth(arp(sha=b"\0" * 6), 0x0806, dst=b"\xff" * 6))  # zero sender
    out.append(eth(arp(spa=b"\0\0\0\0"), 0x0806, dst=b"\xff" * 6))  # probe
    out.append(eth(arp(op=2, tpa=SELF), 0x0806))  # unsolicited reply to self
    out.append(eth(arp(op=2), 0x0806))  # unsolicited reply about the VIP
    out.append(eth(arp(tpa=socket.inet_aton("192.0.2.250")), 0x0806, dst=b"\xff" * 6))
    out.append(eth(arp(), 0x0806, dst=b"\xff" * 6))  # a good request for the VIP
    return out


def c_self_and_vip():
    out = []
    lb = DST
    # from the VIP to the VIP (land), from self to self, from the VIP to self
    out.append(eth(ip4(tcp(sport=80, src=V4, dst=V4), src=V4, dst=V4)))
    out.append(eth(ip4(tcp(sport=49001, src=SELF, dst=SELF), src=SELF, dst=SELF)))
    out.append(eth(ip4(tcp(sport=49002, src=V4, dst=SELF), src=V4, dst=SELF)))
    out.append(eth(ip4(udp(sport=53), proto=17, src=V4, dst=V4)))
    out.append(eth(ip4(icmp(8, 0, b"\0\1\0\1"), proto=1, src=V4, dst=V4)))
    out.append(eth(ip6(tcp(sport=80, src=V6, dst=V6, v6=True), src=V6, dst=V6), 0x86DD))
    # frames carrying the balancer's own MAC as source
    out.append(eth(ip4(tcp(sport=49003)), src=lb))
    out.append(eth(arp(sha=lb), 0x0806, dst=b"\xff" * 6, src=lb))
    # a frame to another host's MAC (promiscuous port)
    out.append(eth(ip4(tcp(sport=49004)), dst=bytes.fromhex("02aabbccddee")))
    return out


def c_bcast_mcast():
    out = []
    seg = lambda sp: tcp(sport=sp)
    for smac in (b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("333300000001"),
                 b"\0" * 6):
        out.append(eth(ip4(seg(49100)), src=smac))
    for src in ("255.255.255.255", "224.0.0.1", "0.0.0.0", "127.0.0.1", "192.0.2.255"):
        out.append(eth(ip4(seg(49200), src=socket.inet_aton(src))))
    for dst in ("255.255.255.255", "192.0.2.255", "224.0.0.1", "224.0.0.5", "239.1.1.1"):
        d = socket.inet_aton(dst)
        bmac = b"\xff" * 6 if dst.startswith(("255", "192")) else bytes.fromhex("01005e000001")
        out.append(eth(ip4(udp(), proto=17, dst=d), dst=bmac))
        out.append(eth(ip4(b"\0" * 20, proto=89, dst=d), dst=bmac))
    ff02 = socket.inet_pton(socket.AF_INET6, "ff02::1")
    out.append(eth(ip6(tcp(sport=49300, src=ff02, dst=V6, v6=True), src=ff02), 0x86DD))
    out.append(eth(ip6(udp(), nh=17, dst=ff02), 0x86DD, dst=bytes.fromhex("333300000001")))
    out.append(eth(ip4(seg(49400)), dst=b"\xff" * 6))  # broadcast MAC, VIP address
    return out


CATEGORIES = {
    "eth_trunc": c_eth_trunc,
    "ipv4_trunc": c_ipv4_trunc,
    "ipv4_bad_fields": c_ipv4_bad_fields,
    "ipv4_options": c_ipv4_options,
    "ttl": c_ttl,
    "tcp_flags": c_tcp_flags,
    "tcp_malformed": c_tcp_malformed,
    "udp_malformed": c_udp_malformed,
    "icmp": c_icmp,
    "ipv6_trunc": c_ipv6_trunc,
    "ipv6_ext": c_ipv6_ext,
    "fragments": c_fragments,
    "sizes": c_sizes,
    "vlan": c_vlan,
    "arp": c_arp,
    "self_and_vip": c_self_and_vip,
    "bcast_mcast": c_bcast_mcast,
}


def kernel_drops(f):
    """Frames the receiving kernel frees before any packet socket (hence
    the af_packet PMD) sees them: a VLAN tag cut short fails the kernel's
    software untagging (skb_vlan_untag) in __netif_receive_skb_core."""
    return len(f) >= 14 and f[12:14] in (b"\x81\x00", b"\x88\xa8") and len(f) < 18


def main():
    if CATS == "list":
        print(json.dumps({k: len(f()) for k, f in CATEGORIES.items()}))
        return
    cats = list(CATEGORIES) if CATS == "all" else CATS.split(",")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((IFACE, 0))
    report = {}
    deadline = time.time() + 60
    n = 0
    for _ in range(ROUNDS):
        for c in cats:
            r = report.setdefault(c, {"sent": 0, "refused": 0, "errors": {}, "kernel_drops": 0})
            for f in CATEGORIES[c]():
                try:
                    s.send(f)
                    r["sent"] += 1
                    if kernel_drops(f):
                        r["kernel_drops"] += 1
                except OSError as e:
                    r["refused"] += 1
                    r["errors"][os.strerror(e.errno)] = r["errors"].get(os.strerror(e.errno), 0) + 1
                n += 1
                if n % 32 == 0:
                    time.sleep(0.001)  # ~30k frames/s: the receiver's ring never overflows
            if time.time() > deadline:
                break
    print(json.dumps(report))


main()
