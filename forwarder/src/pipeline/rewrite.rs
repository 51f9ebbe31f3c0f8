//! In-place header rewrites for the forwarding modes, with incremental
//! checksum updates (RFC 1624): address and port translation (NAT), TTL /
//! hop-limit decrement, and IP-in-IP / IPv6-in-IPv6 encapsulation (TUN).
//!
//! The functions take the frame and the offsets the classifier already
//! found, and trust them: they are only called on frames that passed the
//! packet views' length checks.

use std::net::IpAddr;

use crate::buffer::PacketBuf;
use crate::packet::checksum::{finish, udp_wire, Incremental};
use crate::packet::{be16, ip_proto, put16};

/// Which end of a packet to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Source address and port.
    Src,
    /// Destination address and port.
    Dst,
}

/// Offset of the transport checksum inside the L4 header.
#[inline]
fn l4_csum_field(proto: u8) -> Option<usize> {
    match proto {
        ip_proto::TCP => Some(16),
        ip_proto::UDP => Some(6),
        ip_proto::ICMPV6 => Some(2),
        _ => None,
    }
}

/// Translates the address (and, if `port` is given and the packet carries
/// a TCP/UDP header at `l4`, the port) of one side of an IP packet that
/// starts at `l3` in `frame`. `l4` is `None` for non-first fragments.
/// Checksums (IPv4 header, TCP/UDP/ICMPv6 pseudo-header) are updated
/// incrementally. Returns `false` (frame unchanged) on an address family
/// mismatch.
pub fn translate(
    frame: &mut [u8],
    l3: usize,
    l4: Option<usize>,
    proto: u8,
    side: Side,
    addr: IpAddr,
    port: Option<u16>,
) -> bool {
    let v6 = frame[l3] >> 4 == 6;
    if v6 != addr.is_ipv6() {
        return false;
    }
    let (a_off, a_len) = match (v6, side) {
        (false, Side::Src) => (l3 + 12, 4),
        (false, Side::Dst) => (l3 + 16, 4),
        (true, Side::Src) => (l3 + 8, 16),
        (true, Side::Dst) => (l3 + 24, 16),
    };
    let mut new_a = [0u8; 16];
    match addr {
        IpAddr::V4(a) => new_a[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => new_a.copy_from_slice(&a.octets()),
    }
    let mut old_a = [0u8; 16];
    old_a[..a_len].copy_from_slice(&frame[a_off..a_off + a_len]);
    let (old_a, new_a) = (&old_a[..a_len], &new_a[..a_len]);

    // Transport header: the pseudo-header covers the addresses, and the
    // port is part of the segment. The port changes even when the
    // checksum is not in the buffer (the 8 bytes of a TCP header that an
    // ICMP error quotes).
    if let (Some(l4), Some(field)) = (l4, l4_csum_field(proto)) {
        let p_off = l4 + if side == Side::Src { 0 } else { 2 };
        let port = port
            .filter(|_| proto != ip_proto::ICMPV6 && p_off + 2 <= frame.len())
            .map(|p| (be16(frame, p_off), p));
        let c_off = l4 + field;
        if c_off + 2 <= frame.len() {
            let old_c = be16(frame, c_off);
            let inc = if proto == ip_proto::UDP {
                Incremental::new_udp(old_c)
            } else {
                Incremental::new(old_c)
            };
            let mut inc = inc.remove_bytes(old_a).add_bytes(new_a);
            if let Some((old_p, p)) = port {
                inc = inc.remove_u16(old_p).add_u16(p);
            }
            put16(frame, c_off, inc.finish());
        }
        if let Some((_, p)) = port {
            put16(frame, p_off, p);
        }
    }
    if !v6 {
        let old_c = be16(frame, l3 + 10);
        let c = Incremental::new(old_c)
            .remove_bytes(old_a)
            .add_bytes(new_a)
            .finish();
        put16(frame, l3 + 10, c);
    }
    frame[a_off..a_off + a_len].copy_from_slice(new_a);
    true
}

/// Where an ICMP error and the packet it quotes sit in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Offset of the ICMP / ICMPv6 header.
    pub icmp: usize,
    /// End of the ICMP message (the end of the outer IP packet).
    pub end: usize,
    /// Offset of the quoted IP header.
    pub l3: usize,
    /// Offset of the quoted TCP / UDP header; its 4 port bytes are
    /// present, the rest may be cut off.
    pub l4: usize,
    /// The quoted protocol (TCP or UDP).
    pub proto: u8,
}

/// Translates one side (address and port) of the packet quoted by an ICMP
/// error, in place: the quoted IPv4 header checksum and the quoted TCP/UDP
/// checksum (when the quote reaches it) are updated as for a packet on the
/// wire, and the ICMP checksum, which covers all of those bytes, is
/// updated for each changed field. Returns `false`, unchanged, on a family
/// mismatch.
pub fn translate_quoted(frame: &mut [u8], q: &Quote, side: Side, addr: IpAddr, port: u16) -> bool {
    let v6 = frame[q.l3] >> 4 == 6;
    let a_len = if v6 { 16 } else { 4 };
    let a_off = q.l3
        + match (v6, side) {
            (false, Side::Src) => 12,
            (false, Side::Dst) => 16,
            (true, Side::Src) => 8,
            (true, Side::Dst) => 24,
        };
    let c_off = q.l4 + l4_csum_field(q.proto).unwrap_or(0);
    // Every 16-bit field translate may change (all at even offsets of
    // the ICMP message, as the quote starts 8 bytes into it).
    let fields: [(usize, usize); 4] = [
        (a_off, a_len),
        (q.l3 + 10, if v6 { 0 } else { 2 }),
        (q.l4 + if side == Side::Src { 0 } else { 2 }, 2),
        (c_off, if c_off + 2 <= q.end { 2 } else { 0 }),
    ];
    let mut old = [[0u8; 16]; 4];
    for (o, &(at, n)) in old.iter_mut().zip(&fields).filter(|(_, f)| f.1 > 0) {
        o[..n].copy_from_slice(&frame[at..at + n]);
    }
    if !translate(
        &mut frame[..q.end],
        q.l3,
        Some(q.l4),
        q.proto,
        side,
        addr,
        Some(port),
    ) {
        return false;
    }
    let mut inc = Incremental::new(be16(frame, q.icmp + 2));
    for (o, &(at, n)) in old.iter().zip(&fields).filter(|(_, f)| f.1 > 0) {
        inc = inc.remove_bytes(&o[..n]).add_bytes(&frame[at..at + n]);
    }
    put16(frame, q.icmp + 2, inc.finish());
    true
}

/// Decrements the IPv4 TTL / IPv6 hop limit of the packet at `l3`,
/// updating the IPv4 header checksum. Returns `false`, unchanged, when the
/// packet must not be forwarded (TTL 0 or 1).
pub fn decrement_ttl(frame: &mut [u8], l3: usize) -> bool {
    if frame[l3] >> 4 == 6 {
        let h = frame[l3 + 7];
        if h <= 1 {
            return false;
        }
        frame[l3 + 7] = h - 1;
    } else {
        let t = frame[l3 + 8];
        if t <= 1 {
            return false;
        }
        let old = be16(frame, l3 + 8);
        frame[l3 + 8] = t - 1;
        let new = be16(frame, l3 + 8);
        let c = Incremental::new(be16(frame, l3 + 10))
            .remove_u16(old)
            .add_u16(new)
            .finish();
        put16(frame, l3 + 10, c);
    }
    true
}

/// Encapsulates the IP packet that follows a 14-byte Ethernet header in an
/// outer IPv4 (IP-in-IP, protocol 4) or IPv6 (protocol 41) header from
/// `src` to `dst`, in place (the Ethernet header moves into the headroom).
/// Returns `false`, unchanged, when there is no headroom or the families
/// of inner and outer differ.
pub fn encapsulate<B: PacketBuf>(buf: &mut B, src: IpAddr, dst: IpAddr) -> bool {
    let inner_v6 = buf.data().get(14).is_some_and(|b| b >> 4 == 6);
    let (outer_len, inner_len) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) if !inner_v6 => (20usize, buf.len() - 14),
        (IpAddr::V6(_), IpAddr::V6(_)) if inner_v6 => (40usize, buf.len() - 14),
        _ => return false,
    };
    // Inner length from the inner header, not the frame (Ethernet padding).
    let inner_ip_len = {
        let d = buf.data();
        if inner_v6 {
            40 + usize::from(be16(d, 14 + 4))
        } else {
            usize::from(be16(d, 14 + 2))
        }
    }
    .min(inner_len);
    if !buf.prepend(outer_len) {
        return false;
    }
    let f = buf.data_mut();
    f.copy_within(outer_len..outer_len + 14, 0);
    let o = &mut f[14..14 + outer_len];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // TOS and DF from the inner header (RFC 2003 §3.1).
            let (tos, df) = (f[14 + 20 + 1], f[14 + 20 + 6] & 0x40);
            let (s, d) = (u32::from(s), u32::from(d));
            f[14..34].copy_from_slice(&ipip_header(tos, df, inner_ip_len, s, d, tun_sum(s, d)));
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            o.fill(0);
            o[0] = 0x60;
            o[4..6].copy_from_slice(&(inner_ip_len as u16).to_be_bytes());
            o[6] = ip_proto::IPV6;
            o[7] = 64;
            o[8..24].copy_from_slice(&s.octets());
            o[24..40].copy_from_slice(&d.octets());
        }
        _ => unreachable!("families checked above"),
    }
    // Drop Ethernet padding that was inside the frame after the inner packet.
    let want = 14 + outer_len + inner_ip_len;
    let have = buf.len();
    if have > want {
        buf.trim(have - want);
    }
    true
}

/// The ones' complement sum of the words of an IPv4-in-IPv4 outer header
/// from `src` to `dst` that are the same in every packet of the tunnel:
/// version and IHL, TTL 64 and protocol 4, the addresses (all but TOS,
/// length and DF). Computed once per tunnel by the paths that remember
/// it.
#[inline]
pub const fn tun_sum(src: u32, dst: u32) -> u32 {
    0x4500
        + (64 << 8 | ip_proto::IPIP as u32)
        + (src >> 16)
        + (src & 0xffff)
        + (dst >> 16)
        + (dst & 0xffff)
}

/// The outer IPv4 header of IP-in-IP around an inner packet of `inner`
/// bytes with TOS `tos` and DF bit `df` (0 or 0x40), from `src` to `dst`,
/// `sum` being [`tun_sum`]`(src, dst)`: TTL 64, protocol 4, no options.
#[inline(always)]
pub fn ipip_header(tos: u8, df: u8, inner: usize, src: u32, dst: u32, sum: u32) -> [u8; 20] {
    let len = (inner + 20) as u16;
    let s = u64::from(sum) + u64::from(tos) + u64::from(len) + (u64::from(df) << 8);
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[6] = df;
    h[8] = 64;
    h[9] = ip_proto::IPIP;
    h[10..12].copy_from_slice(&finish(s).to_be_bytes());
    h[12..16].copy_from_slice(&src.to_be_bytes());
    h[16..20].copy_from_slice(&dst.to_be_bytes());
    h
}

/// NAT of a plain frame (IPv4, 20-byte header, TCP or UDP; at least 48
/// bytes, a TCP one at least 54): TTL down by one, and the address at
/// `a_off` (30: destination, 26: source) and the port at `p_off` (36, 34)
/// to `addr:port`, checksums updated incrementally (RFC 1624), each in one
/// step: the IPv4 NAT of the fast and burst paths. The bytes are those of
/// [`decrement_ttl`] then [`translate`] (a ones' complement sum of the
/// same words, of which only an all-zero sum folds to 0 either way).
#[inline(always)]
pub fn nat_v4(f: &mut [u8], a_off: usize, p_off: usize, addr: u32, port: u16) {
    let Some(h) = f.first_chunk_mut::<48>() else {
        return;
    };
    let (Some(old_a), Some(old_p)) = (h.get(a_off..a_off + 4), h.get(p_off..p_off + 2)) else {
        return;
    };
    let old_a = u32::from_be_bytes([old_a[0], old_a[1], old_a[2], old_a[3]]);
    let old_p = u16::from_be_bytes([old_p[0], old_p[1]]);
    let old_tp = u16::from_be_bytes([h[22], h[23]]);
    let ip = u16::from_be_bytes([h[24], h[25]]);
    let new_tp = old_tp.wrapping_sub(0x100);
    let ip = finish(
        u64::from(!ip)
            + u64::from(!old_tp)
            + u64::from(new_tp)
            + u64::from(!old_a)
            + u64::from(addr),
    );
    let tcp = h[23] == ip_proto::TCP;
    h[22] = (new_tp >> 8) as u8;
    h[24..26].copy_from_slice(&ip.to_be_bytes());
    h[a_off..a_off + 4].copy_from_slice(&addr.to_be_bytes());
    h[p_off..p_off + 2].copy_from_slice(&port.to_be_bytes());
    let moved = u64::from(!old_a) + u64::from(addr) + u64::from(!old_p) + u64::from(port);
    if tcp {
        if let Some(c) = f.get_mut(50..52) {
            let old = u16::from_be_bytes([c[0], c[1]]);
            c.copy_from_slice(&finish(u64::from(!old) + moved).to_be_bytes());
        }
    } else {
        let c = &mut h[40..42];
        let old = u16::from_be_bytes([c[0], c[1]]);
        // No checksum (0) stays none; a computed 0 is sent as 0xffff.
        if old != 0 {
            let new = udp_wire(finish(u64::from(!old) + moved));
            c.copy_from_slice(&new.to_be_bytes());
        }
    }
}
