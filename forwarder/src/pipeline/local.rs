//! Frames the balancer answers itself or passes to its kernel: ARP and
//! neighbour discovery for owned addresses and VIPs, echo requests to a
//! VIP, ICMP "too big" for tunnelled packets that would not fit, and the
//! refusal of a new flow no server can take (TCP RST, ICMP port
//! unreachable). Every answer is built in the received buffer.

use std::net::{IpAddr, Ipv6Addr};

use super::{DropReason, IpInfo, Outcome, PortInfo};
use crate::buffer::PacketBuf;
use crate::neigh::NeighTable;
use crate::packet::arp::{ArpOperation, ArpPacket};
use crate::packet::checksum;
use crate::packet::ethernet::EthernetFrame;
use crate::packet::icmp::Icmpv4Packet;
use crate::packet::icmpv6::{self, Icmpv6Packet, NaFlags};
use crate::packet::{ip_proto, MacAddr};

/// ARP: requests for an owned address or VIP of this port are answered in
/// place; replies to the kernel's own requests go to the kernel. Every
/// ARP aimed at us teaches the neighbour cache; a gratuitous ARP refreshes
/// an existing entry.
pub fn handle_local_arp(
    frame: &mut [u8],
    port: &PortInfo,
    neigh: &NeighTable,
    now_ms: u64,
) -> Outcome {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return Outcome::Dropped(DropReason::Malformed);
    };
    let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
        return Outcome::Dropped(DropReason::Malformed);
    };
    let sender_ip = arp.sender_proto_addr();
    let sender_mac = arp.sender_hw_addr();
    let target = IpAddr::V4(arp.target_proto_addr());
    let for_us = port.answers_for(target);
    if !sender_ip.is_unspecified() {
        neigh.learn(IpAddr::V4(sender_ip), sender_mac, now_ms, for_us);
    }
    if !for_us {
        return Outcome::Dropped(DropReason::ArpNotOurs);
    }
    match arp.operation() {
        ArpOperation::REQUEST => {
            if !arp.make_reply(port.mac) {
                return Outcome::Dropped(DropReason::Malformed);
            }
            eth.set_dst(sender_mac);
            eth.set_src(port.mac);
            Outcome::Answered
        }
        ArpOperation::REPLY if port.is_self(target) => Outcome::ToKernel,
        ArpOperation::REPLY => Outcome::Dropped(DropReason::ArpNotOurs),
        _ => Outcome::Dropped(DropReason::Malformed),
    }
}

/// Neighbour discovery and multicast for the port. Returns `None` when the
/// frame is ordinary ICMPv6 for the rest of the pipeline.
pub(super) fn handle_nd<B: PacketBuf>(
    buf: &mut B,
    ip: &IpInfo,
    port: &PortInfo,
    neigh: &NeighTable,
    now_ms: u64,
) -> Option<Outcome> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
        return None;
    };
    let l4 = ip.l4?;
    let frame = buf.data();
    let Ok(icmp) = Icmpv6Packet::new_checked(&frame[l4..]) else {
        return Some(Outcome::Dropped(DropReason::Malformed));
    };
    let ty = icmp.msg_type();
    if ty == icmpv6::NEIGHBOR_SOLICIT || ty == icmpv6::NEIGHBOR_ADVERT {
        let Some(target) = icmp.target_addr() else {
            return Some(Outcome::Dropped(DropReason::Malformed));
        };
        let ours = port.answers_for(IpAddr::V6(target));
        if ty == icmpv6::NEIGHBOR_SOLICIT {
            if let Some(mac) = icmp.source_lladdr() {
                if !src.is_unspecified() {
                    neigh.learn(IpAddr::V6(src), mac, now_ms, ours);
                }
            }
            if !ours {
                return Some(Outcome::Dropped(DropReason::ArpNotOurs));
            }
            if port.is_self(IpAddr::V6(target)) {
                return Some(Outcome::ToKernel);
            }
            return Some(answer_ns(buf, src, target, port.mac));
        }
        // An advertisement: learn it; the kernel wants those for itself.
        if let Some(mac) = icmp.target_lladdr() {
            neigh.learn(
                IpAddr::V6(target),
                mac,
                now_ms,
                port.is_self(IpAddr::V6(dst)),
            );
        }
        return Some(if port.is_self(IpAddr::V6(dst)) || dst.is_multicast() {
            Outcome::ToKernel
        } else {
            Outcome::Dropped(DropReason::ArpNotOurs)
        });
    }
    if dst.is_multicast() {
        // All-nodes and our solicited-node groups reach the kernel (router
        // advertisements, MLD queries); the rest is not for us.
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let ours = dst == all_nodes
            || port
                .addrs
                .iter()
                .any(|(a, _)| matches!(a, IpAddr::V6(a) if icmpv6::solicited_node(a) == dst));
        return Some(if ours {
            Outcome::ToKernel
        } else {
            Outcome::Dropped(DropReason::NotOurs)
        });
    }
    None
}

/// Turns a neighbour solicitation for a VIP into the advertisement, in place.
fn answer_ns<B: PacketBuf>(
    buf: &mut B,
    asker: Ipv6Addr,
    target: Ipv6Addr,
    our_mac: MacAddr,
) -> Outcome {
    // Solicited NA: 40 (IPv6) + 24 (NA) + 8 (target link-layer option).
    const NA_LEN: usize = 14 + 40 + 32;
    let asker_mac = EthernetFrame::new_unchecked(buf.data()).src();
    let have = buf.len();
    let ok = if have < NA_LEN {
        buf.append(NA_LEN - have)
    } else {
        buf.trim(have - NA_LEN)
    };
    if !ok {
        return Outcome::Dropped(DropReason::NoHeadroom);
    }
    let (dst, flags) = if asker.is_unspecified() {
        // DAD probe: answer to all nodes, not solicited (RFC 4861 §7.2.4).
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            NaFlags(NaFlags::OVERRIDE.0),
        )
    } else {
        (asker, NaFlags(NaFlags::SOLICITED.0 | NaFlags::OVERRIDE.0))
    };
    let f = buf.data_mut();
    f[0..6].copy_from_slice(&asker_mac.0);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let h = &mut f[14..54];
    h.fill(0);
    h[0] = 0x60;
    h[4..6].copy_from_slice(&32u16.to_be_bytes());
    h[6] = ip_proto::ICMPV6;
    h[7] = 255; // ND messages must carry hop limit 255 (RFC 4861 §7.1.2)
    h[8..24].copy_from_slice(&target.octets());
    h[24..40].copy_from_slice(&dst.octets());
    if icmpv6::emit_neighbour_advertisement(
        &mut f[54..],
        &target,
        &dst,
        &target,
        flags,
        Some(our_mac),
    )
    .is_err()
    {
        return Outcome::Dropped(DropReason::Malformed);
    }
    Outcome::Answered
}

/// Answers an echo request to a VIP in place; other ICMP to a VIP is
/// dropped (errors about flows are handled before this).
pub(super) fn answer_echo<B: PacketBuf>(buf: &mut B, ip: &IpInfo, our_mac: MacAddr) -> Outcome {
    let Some(l4) = ip.l4 else {
        return Outcome::Dropped(DropReason::Fragment);
    };
    let total_end = (14 + ip.total_len).min(buf.len());
    let f = buf.data_mut();
    let ok = if ip.proto == ip_proto::ICMP {
        match Icmpv4Packet::new_checked(&mut f[l4..total_end]) {
            Ok(mut p) => p.echo_request_to_reply(),
            Err(_) => return Outcome::Dropped(DropReason::Malformed),
        }
    } else {
        match Icmpv6Packet::new_checked(&mut f[l4..total_end]) {
            Ok(mut p) => p.echo_request_to_reply(),
            Err(_) => return Outcome::Dropped(DropReason::Malformed),
        }
    };
    if !ok {
        return Outcome::Dropped(DropReason::Unsupported);
    }
    // Swap addresses (the pseudo-header sum does not change) and MACs.
    let (a, b, n) = if ip.src.is_ipv4() {
        (14 + 12, 14 + 16, 4)
    } else {
        (14 + 8, 14 + 24, 16)
    };
    let mut tmp = [0u8; 16];
    tmp[..n].copy_from_slice(&f[a..a + n]);
    f.copy_within(b..b + n, a);
    f[b..b + n].copy_from_slice(&tmp[..n]);
    let client_mac: [u8; 6] = [f[6], f[7], f[8], f[9], f[10], f[11]];
    f[0..6].copy_from_slice(&client_mac);
    f[6..12].copy_from_slice(&our_mac.0);
    Outcome::Answered
}

/// Replaces a packet that is too big to tunnel with an ICMP
/// "fragmentation needed" (IPv4) / "packet too big" (IPv6) to its sender,
/// from the address it was sent to, quoting as much of it as fits in the
/// minimum MTU. Built in place.
pub(super) fn too_big<B: PacketBuf>(
    buf: &mut B,
    ip: &IpInfo,
    mtu: u16,
    our_mac: MacAddr,
) -> Outcome {
    // v4: type 3 code 4, the MTU in the low half of the rest-of-header;
    // v6: type 2 code 0, the MTU in all of it.
    let kind = if ip.src.is_ipv6() {
        (icmpv6::PACKET_TOO_BIG, 0)
    } else {
        (3, 4)
    };
    icmp_error(buf, ip, kind, u32::from(mtu), our_mac)
}

/// Refuses a new flow no server can take: a TCP segment is answered with
/// a RST ([`tcp_reset`]), a UDP datagram with an ICMP port unreachable
/// (IPv4 type 3 code 3, IPv6 type 1 code 4) from the VIP, quoting it.
/// What must not be answered (a RST, a datagram from an address that is
/// no single host) is dropped as [`DropReason::NoReal`].
pub(super) fn reject<B: PacketBuf>(buf: &mut B, ip: &IpInfo, our_mac: MacAddr) -> Outcome {
    match ip.proto {
        ip_proto::TCP => tcp_reset(buf, ip, our_mac),
        ip_proto::UDP => {
            // RFC 1122 3.2.2 / RFC 4443 2.4(e): no errors to non-unicast sources.
            let unicast = match ip.src {
                IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
                IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
            };
            if !unicast {
                return Outcome::Dropped(DropReason::NoReal);
            }
            let kind = if ip.src.is_ipv6() {
                (icmpv6::DEST_UNREACHABLE, 4)
            } else {
                (3, 3)
            };
            icmp_error(buf, ip, kind, 0, our_mac)
        }
        _ => Outcome::Dropped(DropReason::NoReal),
    }
}

/// Replaces a TCP segment with the RST that refuses it (RFC 9293 3.10.7.1,
/// "closed" state), from `VIP:vport` to `client:cport`, in place: to a
/// segment with ACK, `seq = its ack`, flags RST; otherwise (a SYN)
/// `seq = 0`, `ack = its seq + its length` (SYN and FIN count one),
/// flags RST|ACK. No options, window 0, TTL 64; padded to the Ethernet
/// minimum. A RST is never answered.
pub(super) fn tcp_reset<B: PacketBuf>(buf: &mut B, ip: &IpInfo, our_mac: MacAddr) -> Outcome {
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const SYN: u8 = 0x02;
    const FIN: u8 = 0x01;
    let Some(l4) = ip.l4 else {
        return Outcome::Dropped(DropReason::Malformed);
    };
    let f = buf.data();
    let end = (14 + ip.total_len).min(f.len());
    if end < l4 + 20 {
        return Outcome::Dropped(DropReason::Malformed);
    }
    let t = &f[l4..end];
    let doff = usize::from(t[12] >> 4) * 4;
    if doff < 20 || doff > t.len() {
        return Outcome::Dropped(DropReason::Malformed);
    }
    let flags = t[13];
    if flags & RST != 0 {
        return Outcome::Dropped(DropReason::NoReal);
    }
    let (cport, vport) = ([t[0], t[1]], [t[2], t[3]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let (rseq, rack, rflags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        let len =
            (t.len() - doff) as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        (0, seq.wrapping_add(len), RST | ACK)
    };
    let peer_mac: [u8; 6] = [f[6], f[7], f[8], f[9], f[10], f[11]];
    let v6 = ip.src.is_ipv6();
    let ip_len = if v6 { 40 } else { 20 };
    let len = 14 + ip_len + 20;
    let want = len.max(60);
    let have = buf.len();
    let ok = if have < want {
        buf.append(want - have)
    } else {
        buf.trim(have - want)
    };
    if !ok {
        return Outcome::Dropped(DropReason::NoHeadroom);
    }
    let f = buf.data_mut();
    f[0..6].copy_from_slice(&peer_mac);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800u16 }).to_be_bytes());
    f[14..].fill(0);
    let pseudo = match (ip.src, ip.dst) {
        (IpAddr::V4(client), IpAddr::V4(vip)) => {
            let h = &mut f[14..34];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&40u16.to_be_bytes());
            h[8] = 64;
            h[9] = ip_proto::TCP;
            h[12..16].copy_from_slice(&vip.octets());
            h[16..20].copy_from_slice(&client.octets());
            let c = checksum::finish(checksum::sum_bytes(h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            checksum::pseudo_header_v4(vip, client, ip_proto::TCP, 20)
        }
        (IpAddr::V6(client), IpAddr::V6(vip)) => {
            let h = &mut f[14..54];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&20u16.to_be_bytes());
            h[6] = ip_proto::TCP;
            h[7] = 64;
            h[8..24].copy_from_slice(&vip.octets());
            h[24..40].copy_from_slice(&client.octets());
            checksum::pseudo_header_v6(&vip, &client, ip_proto::TCP, 20)
        }
        _ => return Outcome::Dropped(DropReason::Malformed),
    };
    let t = &mut f[14 + ip_len..len];
    t[0..2].copy_from_slice(&vport);
    t[2..4].copy_from_slice(&cport);
    t[4..8].copy_from_slice(&rseq.to_be_bytes());
    t[8..12].copy_from_slice(&rack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = rflags;
    let c = checksum::transport_checksum(pseudo, t, checksum::TCP_FIELD);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    Outcome::Answered
}

/// Replaces the packet in `buf` with an ICMP(v6) error `(type, code)`
/// about it, to its sender, from the address it was sent to, with `rest`
/// as the rest-of-header word, quoting as much of the original as fits
/// in 576 (IPv4) / 1280 (IPv6) bytes. Built in place: the quote stays
/// where it is, the new headers go into the headroom.
fn icmp_error<B: PacketBuf>(
    buf: &mut B,
    ip: &IpInfo,
    (ty, code): (u8, u8),
    rest: u32,
    our_mac: MacAddr,
) -> Outcome {
    let v6 = ip.src.is_ipv6();
    let (hdr, limit) = if v6 { (40 + 8, 1280) } else { (20 + 8, 576) };
    let quoted = ip.total_len.min(buf.len() - 14).min(limit - hdr);
    // Keep only the quoted part of the original, then make room in front.
    let have = buf.len();
    if !buf.trim(have - (14 + quoted)) || !buf.prepend(hdr) {
        return Outcome::Dropped(DropReason::NoHeadroom);
    }
    let f = buf.data_mut();
    let client_mac: [u8; 6] = [
        f[hdr + 6],
        f[hdr + 7],
        f[hdr + 8],
        f[hdr + 9],
        f[hdr + 10],
        f[hdr + 11],
    ];
    f[0..6].copy_from_slice(&client_mac);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800u16 }).to_be_bytes());
    let total = hdr + quoted;
    let icmp_at = if v6 { 14 + 40 } else { 14 + 20 };
    {
        let h = &mut f[14..icmp_at];
        h.fill(0);
        match (ip.src, ip.dst) {
            (IpAddr::V4(client), IpAddr::V4(vip)) => {
                h[0] = 0x45;
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                h[8] = 64;
                h[9] = ip_proto::ICMP;
                h[12..16].copy_from_slice(&vip.octets());
                h[16..20].copy_from_slice(&client.octets());
                let c = checksum::finish(checksum::sum_bytes(h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(client), IpAddr::V6(vip)) => {
                h[0] = 0x60;
                h[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
                h[6] = ip_proto::ICMPV6;
                h[7] = 64;
                h[8..24].copy_from_slice(&vip.octets());
                h[24..40].copy_from_slice(&client.octets());
            }
            _ => return Outcome::Dropped(DropReason::Malformed),
        }
    }
    let icmp = &mut f[icmp_at..14 + total];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    let pseudo = match (ip.src, ip.dst) {
        (IpAddr::V6(client), IpAddr::V6(vip)) => {
            checksum::pseudo_header_v6(&vip, &client, ip_proto::ICMPV6, icmp.len() as u32)
        }
        _ => 0,
    };
    let c = checksum::transport_checksum(pseudo, icmp, 2);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Outcome::Answered
}
