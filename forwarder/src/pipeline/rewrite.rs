//! In-place header rewrites for the forwarding modes, with incremental
//! checksum updates (RFC 1624): address and port translation (NAT), TTL /
//! hop-limit decrement, and IP-in-IP / IPv6-in-IPv6 encapsulation (TUN).
//!
//! The functions take the frame and the offsets the classifier already
//! found, and trust them: they are only called on frames that passed the
//! packet views' length checks.

use std::net::IpAddr;

use crate::buffer::PacketBuf;
use crate::packet::checksum::{self, Incremental};
use crate::packet::ip_proto;

/// Which end of a packet to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Source address and port.
    Src,
    /// Destination address and port.
    Dst,
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
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
            .map(|p| (rd16(frame, p_off), p));
        let c_off = l4 + field;
        if c_off + 2 <= frame.len() {
            let old_c = rd16(frame, c_off);
            let inc = if proto == ip_proto::UDP {
                Incremental::new_udp(old_c)
            } else {
                Incremental::new(old_c)
            };
            let mut inc = inc.remove_bytes(old_a).add_bytes(new_a);
            if let Some((old_p, p)) = port {
                inc = inc.remove_u16(old_p).add_u16(p);
            }
            wr16(frame, c_off, inc.finish());
        }
        if let Some((_, p)) = port {
            wr16(frame, p_off, p);
        }
    }
    if !v6 {
        let old_c = rd16(frame, l3 + 10);
        let c = Incremental::new(old_c)
            .remove_bytes(old_a)
            .add_bytes(new_a)
            .finish();
        wr16(frame, l3 + 10, c);
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
    let mut inc = Incremental::new(rd16(frame, q.icmp + 2));
    for (o, &(at, n)) in old.iter().zip(&fields).filter(|(_, f)| f.1 > 0) {
        inc = inc.remove_bytes(&o[..n]).add_bytes(&frame[at..at + n]);
    }
    wr16(frame, q.icmp + 2, inc.finish());
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
        let old = rd16(frame, l3 + 8);
        frame[l3 + 8] = t - 1;
        let new = rd16(frame, l3 + 8);
        let c = Incremental::new(rd16(frame, l3 + 10))
            .remove_u16(old)
            .add_u16(new)
            .finish();
        wr16(frame, l3 + 10, c);
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
            40 + usize::from(rd16(d, 14 + 4))
        } else {
            usize::from(rd16(d, 14 + 2))
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
            // Copy TOS and DF from the inner header (RFC 2003 §3.1).
            let tos = f[14 + 20 + 1];
            let df = f[14 + 20 + 6] & 0x40;
            let o = &mut f[14..34];
            o.fill(0);
            o[0] = 0x45;
            o[1] = tos;
            o[2..4].copy_from_slice(&((inner_ip_len + 20) as u16).to_be_bytes());
            o[6] = df;
            o[8] = 64;
            o[9] = ip_proto::IPIP;
            o[12..16].copy_from_slice(&s.octets());
            o[16..20].copy_from_slice(&d.octets());
            let c = checksum::finish(checksum::sum_bytes(o));
            o[10..12].copy_from_slice(&c.to_be_bytes());
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
