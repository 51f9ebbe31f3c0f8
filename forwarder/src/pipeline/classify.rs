//! Parsing and the checks every IP packet passes first: header sanity,
//! martian sources, TCP flag combinations, addresses of the balancer
//! and its VIPs.

use super::plan::{v4_src_ok, FastPort};
use super::*;

/// Whether a TCP flag byte is a combination TCP stacks send. PSH, ECE
/// and CWR may accompany any of them; URG only SYN, ACK and FIN+ACK.
#[inline]
pub(super) const fn tcp_flags_valid(flags: u8) -> bool {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    matches!(
        flags & (FIN | SYN | RST | ACK | URG),
        SYN | 0x22 // SYN, SYN+URG
            | 0x12 // SYN+ACK
            | RST
            | 0x14 // RST+ACK
            | 0x11 // FIN+ACK
            | 0x31 // FIN+ACK+URG
            | ACK
            | 0x30 // ACK+URG
    )
}

/// A source no station may use, a spoof of this node, a land packet, or a
/// unicast IP destination in a link-layer group frame (see
/// [`DropReason::Martian`]). IPv4 by the port's plan (`fp`), the rule the
/// burst path's plain checks apply.
#[inline]
pub(super) fn martian(ip: &IpInfo, port: &PortInfo, fp: &FastPort, link_group: bool) -> bool {
    let dst_group = match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (u32::from(s), u32::from(d));
            if !v4_src_ok(s, d) || fp.is_bad_src(s) {
                return true;
            }
            d >> 28 == 0xe || d == u32::MAX || fp.is_broadcast(d)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if s == d || port.is_self(ip.src) {
                return true;
            }
            if s.is_multicast()
                || s.is_loopback()
                || (s.is_unspecified() && ip.proto != ip_proto::ICMPV6)
            {
                return true;
            }
            d.is_multicast()
        }
        _ => return port.is_self(ip.src),
    };
    link_group && !dst_group
}

pub(super) fn is_vip_addr(snap: &Snapshot, ip: IpAddr) -> bool {
    snap.ports.iter().any(|p| p.vips.contains(&ip))
}

/// What the classifier learnt about an IP packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpInfo {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// Upper-layer protocol.
    pub(crate) proto: u8,
    /// Offset of the L4 header in the frame (None for later fragments).
    pub(crate) l4: Option<usize>,
    /// A fragment other than the first.
    pub(crate) frag_later: bool,
    /// Length of the IP packet (header + payload).
    pub(crate) total_len: usize,
    /// IPv4 DF (IPv6 never fragments in flight).
    pub(crate) dont_frag: bool,
    /// Fragment facts, for every fragment of a fragmented datagram (the
    /// first with MF set included; not for IPv6 atomic fragments).
    pub(crate) frag: Option<Frag>,
}

pub(super) fn parse_v4(frame: &[u8]) -> Result<IpInfo, DropReason> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).map_err(|_| DropReason::Malformed)?;
    // A corrupt header is dropped here (as a host's ip_rcv would), not
    // forwarded, translated (NAT keeps a bad sum bad) or tunnelled.
    if !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    let frag_later = ip.frag_offset() != 0;
    Ok(IpInfo {
        src: IpAddr::V4(ip.src()),
        dst: IpAddr::V4(ip.dst()),
        proto: ip.protocol(),
        l4: if frag_later {
            None
        } else {
            Some(14 + ip.header_len())
        },
        frag_later,
        total_len: usize::from(ip.total_len()),
        dont_frag: ip.dont_frag(),
        frag: ip.is_fragment().then(|| Frag {
            ident: u32::from(ip.ident()),
            offset: ip.frag_offset(),
            more: ip.more_frags(),
            len: ip.total_len() - ip.header_len() as u16,
        }),
    })
}

pub(super) fn parse_v6(frame: &[u8]) -> Result<IpInfo, DropReason> {
    let ip = Ipv6Packet::new_checked(&frame[14..]).map_err(|_| DropReason::Malformed)?;
    let up = ip.upper_layer().map_err(|_| DropReason::Malformed)?;
    let frag_later = up.fragment.is_some_and(|f| f.offset != 0);
    let total_len = 40 + usize::from(ip.payload_len());
    Ok(IpInfo {
        src: IpAddr::V6(ip.src()),
        dst: IpAddr::V6(ip.dst()),
        proto: up.protocol,
        l4: if frag_later {
            None
        } else {
            Some(14 + up.offset)
        },
        frag_later,
        total_len,
        dont_frag: true,
        // Data length counted from the upper-layer offset: with extension
        // headers after the Fragment header, the first fragment's data is
        // undercounted, so its entry lives to its deadline (never less).
        frag: up
            .fragment
            .filter(|f| f.offset != 0 || f.more)
            .map(|f| Frag {
                ident: f.ident,
                offset: f.offset,
                more: f.more,
                len: total_len.saturating_sub(up.offset) as u16,
            }),
    })
}
