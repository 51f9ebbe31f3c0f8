//! Complete, checksummed frames as `Vec<u8>`, for tests, fuzzers and
//! benches (not for the data path: these allocate).
//!
//! Describe a frame with a [`FrameSpec`] (defaults are filled in by
//! `FrameSpec::default()`, per address family) and call a builder:
//!
//! ```
//! use forwarder::packet::builder::{self, FrameSpec};
//! use forwarder::packet::TcpFlags;
//! use std::net::Ipv4Addr;
//!
//! let frame = builder::tcp4(&FrameSpec {
//!     dst: Ipv4Addr::new(10, 0, 0, 100),
//!     dst_port: 443,
//!     tcp_flags: TcpFlags::SYN,
//!     ..FrameSpec::default()
//! });
//! assert_eq!(frame.len(), 60); // 14 + 20 + 20, padded to the Ethernet minimum
//! ```
//!
//! Frames shorter than 60 bytes are zero-padded to 60, as they arrive from
//! a NIC; the IP length fields exclude the padding.
//!
//! The frame builders panic if a packet would exceed 65535 bytes; the
//! fragmenters take arbitrary frames and return errors instead.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ethernet::{self, EtherType, EthernetFrame};
use super::{arp, icmp, icmpv6, ip_proto, ipv4, ipv6, tcp, udp};
use super::{malformed, Layer};
use super::{
    ArpOperation, ArpPacket, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, MacAddr, NaFlags,
    Result, TcpFlags, TcpPacket, UdpPacket,
};

/// What to put in a frame. `A` is [`Ipv4Addr`] or [`Ipv6Addr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec<A> {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// An 802.1Q tag with this VLAN id (PCP 0), if any.
    pub vlan: Option<u16>,
    /// IP source.
    pub src: A,
    /// IP destination.
    pub dst: A,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// TCP flags.
    pub tcp_flags: TcpFlags,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// TCP window.
    pub window: u16,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 Don't Fragment.
    pub dont_frag: bool,
    /// IPv6 flow label (ignored for IPv4).
    pub flow_label: u32,
    /// Transport payload (echo data for ICMP).
    pub payload: Vec<u8>,
}

const SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const DST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

impl Default for FrameSpec<Ipv4Addr> {
    /// 02:00:00:00:00:01 -> 02:00:00:00:00:02, 192.0.2.1:40000 ->
    /// 198.51.100.1:80, SYN, TTL 64, no payload.
    fn default() -> Self {
        FrameSpec {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlan: None,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 1),
            src_port: 40000,
            dst_port: 80,
            tcp_flags: TcpFlags::SYN,
            seq: 1,
            ack: 0,
            window: 65535,
            ttl: 64,
            ident: 1,
            dont_frag: false,
            flow_label: 0,
            payload: Vec::new(),
        }
    }
}

impl Default for FrameSpec<Ipv6Addr> {
    /// As for IPv4, with 2001:db8::1 -> 2001:db8::2.
    fn default() -> Self {
        FrameSpec {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlan: None,
            src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
            src_port: 40000,
            dst_port: 80,
            tcp_flags: TcpFlags::SYN,
            seq: 1,
            ack: 0,
            window: 65535,
            ttl: 64,
            ident: 1,
            dont_frag: false,
            flow_label: 0,
            payload: Vec::new(),
        }
    }
}

/// Ethernet header (with the optional tag) for `ethertype`.
fn push_ethernet<A>(out: &mut Vec<u8>, spec: &FrameSpec<A>, dst: MacAddr, ethertype: EtherType) {
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&spec.src_mac.0);
    if let Some(vid) = spec.vlan {
        out.extend_from_slice(&EtherType::VLAN.0.to_be_bytes());
        out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ethertype.0.to_be_bytes());
}

/// Length as a 16-bit field.
///
/// # Panics
/// If the packet would exceed 65535 bytes.
fn len16(len: usize) -> u16 {
    u16::try_from(len).expect("builder: packet longer than 65535 bytes")
}

/// Appends an IPv4 header (no options) for `payload_len` bytes of
/// `protocol`, with its checksum.
fn push_ipv4(out: &mut Vec<u8>, spec: &FrameSpec<Ipv4Addr>, protocol: u8, payload_len: usize) {
    let start = out.len();
    out.resize(start + ipv4::HEADER_LEN, 0);
    let mut ip = Ipv4Packet::new_unchecked(&mut out[start..]);
    ip.set_header_len(ipv4::HEADER_LEN);
    ip.set_total_len(len16(ipv4::HEADER_LEN + payload_len));
    ip.set_ident(spec.ident);
    ip.set_dont_frag(spec.dont_frag);
    ip.set_ttl(spec.ttl);
    ip.set_protocol(protocol);
    ip.set_src(spec.src);
    ip.set_dst(spec.dst);
    ip.fill_checksum();
}

/// Appends an IPv6 header for `payload_len` bytes after it.
fn push_ipv6(out: &mut Vec<u8>, spec: &FrameSpec<Ipv6Addr>, next: u8, payload_len: usize) {
    let start = out.len();
    out.resize(start + ipv6::HEADER_LEN, 0);
    let mut ip = Ipv6Packet::new_unchecked(&mut out[start..]);
    ip.set_version_tc_flow(0, spec.flow_label);
    ip.set_payload_len(len16(payload_len));
    ip.set_next_header(next);
    ip.set_hop_limit(spec.ttl);
    ip.set_src(spec.src);
    ip.set_dst(spec.dst);
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ethernet::MIN_FRAME_LEN {
        frame.resize(ethernet::MIN_FRAME_LEN, 0);
    }
    frame
}

/// Appends a TCP segment (no options) carrying `spec.payload`; returns its
/// offset. The checksum is left for the caller.
fn push_tcp<A>(out: &mut Vec<u8>, spec: &FrameSpec<A>) -> usize {
    let start = out.len();
    out.resize(start + tcp::HEADER_LEN, 0);
    out.extend_from_slice(&spec.payload);
    let mut t = TcpPacket::new_unchecked(&mut out[start..]);
    t.set_src_port(spec.src_port);
    t.set_dst_port(spec.dst_port);
    t.set_seq_number(spec.seq);
    t.set_ack_number(spec.ack);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(spec.tcp_flags);
    t.set_window(spec.window);
    start
}

/// Appends a UDP datagram carrying `spec.payload`; returns its offset.
fn push_udp<A>(out: &mut Vec<u8>, spec: &FrameSpec<A>) -> usize {
    let start = out.len();
    out.resize(start + udp::HEADER_LEN, 0);
    out.extend_from_slice(&spec.payload);
    let len = len16(out.len() - start);
    let mut u = UdpPacket::new_unchecked(&mut out[start..]);
    u.set_src_port(spec.src_port);
    u.set_dst_port(spec.dst_port);
    u.set_length(len);
    start
}

/// Appends an ICMP(v6) message: type, code, 4 bytes of rest-of-header,
/// then `data`; returns its offset. Checksum left for the caller.
fn push_icmp(out: &mut Vec<u8>, msg_type: u8, code: u8, rest: u32, data: &[u8]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[msg_type, code, 0, 0]);
    out.extend_from_slice(&rest.to_be_bytes());
    out.extend_from_slice(data);
    start
}

fn echo_rest(ident: u16, seq: u16) -> u32 {
    (u32::from(ident) << 16) | u32::from(seq)
}

fn ip4_frame(spec: &FrameSpec<Ipv4Addr>, protocol: u8, l4_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + ipv4::HEADER_LEN + l4_len);
    push_ethernet(&mut out, spec, spec.dst_mac, EtherType::IPV4);
    push_ipv4(&mut out, spec, protocol, l4_len);
    out
}

fn ip6_frame(spec: &FrameSpec<Ipv6Addr>, next: u8, l4_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + ipv6::HEADER_LEN + l4_len);
    push_ethernet(&mut out, spec, spec.dst_mac, EtherType::IPV6);
    push_ipv6(&mut out, spec, next, l4_len);
    out
}

/// Ethernet / IPv4 carrying `spec.payload` as protocol `protocol`, the
/// payload as is (e.g. a VRRP message with its own checksum).
pub fn ip4_raw(spec: &FrameSpec<Ipv4Addr>, protocol: u8) -> Vec<u8> {
    let mut out = ip4_frame(spec, protocol, spec.payload.len());
    out.extend_from_slice(&spec.payload);
    pad(out)
}

/// Ethernet / IPv6 carrying `spec.payload` with next header `next`, the
/// payload as is.
pub fn ip6_raw(spec: &FrameSpec<Ipv6Addr>, next: u8) -> Vec<u8> {
    let mut out = ip6_frame(spec, next, spec.payload.len());
    out.extend_from_slice(&spec.payload);
    pad(out)
}

/// Ethernet / IPv4 / TCP with `spec.payload`.
pub fn tcp4(spec: &FrameSpec<Ipv4Addr>) -> Vec<u8> {
    let l4_len = tcp::HEADER_LEN + spec.payload.len();
    let mut out = ip4_frame(spec, ip_proto::TCP, l4_len);
    let off = push_tcp(&mut out, spec);
    let ph = checksum::pseudo_header_v4(spec.src, spec.dst, ip_proto::TCP, len16(l4_len));
    TcpPacket::new_unchecked(&mut out[off..]).fill_checksum(ph);
    pad(out)
}

/// Ethernet / IPv4 / UDP with `spec.payload` and a checksum.
pub fn udp4(spec: &FrameSpec<Ipv4Addr>) -> Vec<u8> {
    let l4_len = udp::HEADER_LEN + spec.payload.len();
    let mut out = ip4_frame(spec, ip_proto::UDP, l4_len);
    let off = push_udp(&mut out, spec);
    let ph = checksum::pseudo_header_v4(spec.src, spec.dst, ip_proto::UDP, len16(l4_len));
    UdpPacket::new_unchecked(&mut out[off..]).fill_checksum(ph);
    pad(out)
}

/// Ethernet / IPv4 / ICMP echo request with `spec.payload` as data.
pub fn icmp4_echo(spec: &FrameSpec<Ipv4Addr>, ident: u16, seq: u16) -> Vec<u8> {
    icmp4_message(
        spec,
        icmp::ECHO_REQUEST,
        0,
        echo_rest(ident, seq),
        &spec.payload,
    )
}

/// Ethernet / IPv4 / ICMP error (`msg_type`, `code`, rest-of-header
/// `rest`, e.g. the next-hop MTU for fragmentation needed) quoting
/// `invoking` (an IPv4 packet, header first; pass as much as it should
/// quote).
pub fn icmp4_error(
    spec: &FrameSpec<Ipv4Addr>,
    msg_type: u8,
    code: u8,
    rest: u32,
    invoking: &[u8],
) -> Vec<u8> {
    icmp4_message(spec, msg_type, code, rest, invoking)
}

fn icmp4_message(
    spec: &FrameSpec<Ipv4Addr>,
    msg_type: u8,
    code: u8,
    rest: u32,
    data: &[u8],
) -> Vec<u8> {
    let l4_len = icmp::HEADER_LEN + data.len();
    let mut out = ip4_frame(spec, ip_proto::ICMP, l4_len);
    let off = push_icmp(&mut out, msg_type, code, rest, data);
    Icmpv4Packet::new_unchecked(&mut out[off..]).fill_checksum();
    pad(out)
}

/// Ethernet / IPv6 / TCP with `spec.payload`.
pub fn tcp6(spec: &FrameSpec<Ipv6Addr>) -> Vec<u8> {
    let l4_len = tcp::HEADER_LEN + spec.payload.len();
    let mut out = ip6_frame(spec, ip_proto::TCP, l4_len);
    let off = push_tcp(&mut out, spec);
    let ph = checksum::pseudo_header_v6(&spec.src, &spec.dst, ip_proto::TCP, l4_len as u32);
    TcpPacket::new_unchecked(&mut out[off..]).fill_checksum(ph);
    pad(out)
}

/// Ethernet / IPv6 / UDP with `spec.payload`.
pub fn udp6(spec: &FrameSpec<Ipv6Addr>) -> Vec<u8> {
    let l4_len = udp::HEADER_LEN + spec.payload.len();
    let mut out = ip6_frame(spec, ip_proto::UDP, l4_len);
    let off = push_udp(&mut out, spec);
    let ph = checksum::pseudo_header_v6(&spec.src, &spec.dst, ip_proto::UDP, l4_len as u32);
    UdpPacket::new_unchecked(&mut out[off..]).fill_checksum(ph);
    pad(out)
}

/// Ethernet / IPv6 / ICMPv6 echo request with `spec.payload` as data.
pub fn icmp6_echo(spec: &FrameSpec<Ipv6Addr>, ident: u16, seq: u16) -> Vec<u8> {
    icmp6_message(
        spec,
        icmpv6::ECHO_REQUEST,
        0,
        echo_rest(ident, seq),
        &spec.payload,
    )
}

/// Ethernet / IPv6 / ICMPv6 error (`msg_type`, `code`, `param` = MTU for
/// packet too big, pointer for parameter problem, else 0) quoting
/// `invoking` (an IPv6 packet, header first).
pub fn icmp6_error(
    spec: &FrameSpec<Ipv6Addr>,
    msg_type: u8,
    code: u8,
    param: u32,
    invoking: &[u8],
) -> Vec<u8> {
    icmp6_message(spec, msg_type, code, param, invoking)
}

fn icmp6_message(
    spec: &FrameSpec<Ipv6Addr>,
    msg_type: u8,
    code: u8,
    rest: u32,
    data: &[u8],
) -> Vec<u8> {
    let l4_len = icmpv6::HEADER_LEN + data.len();
    let mut out = ip6_frame(spec, ip_proto::ICMPV6, l4_len);
    let off = push_icmp(&mut out, msg_type, code, rest, data);
    let ph = checksum::pseudo_header_v6(&spec.src, &spec.dst, ip_proto::ICMPV6, l4_len as u32);
    Icmpv6Packet::new_unchecked(&mut out[off..]).fill_checksum(ph);
    pad(out)
}

fn arp_frame(
    spec: &FrameSpec<Ipv4Addr>,
    eth_dst: MacAddr,
    op: ArpOperation,
    target_hw: MacAddr,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ethernet::MIN_FRAME_LEN);
    push_ethernet(&mut out, spec, eth_dst, EtherType::ARP);
    let start = out.len();
    out.resize(start + arp::PACKET_LEN, 0);
    let mut a = ArpPacket::new_unchecked(&mut out[start..]);
    a.set_ethernet_ipv4();
    a.set_operation(op);
    a.set_sender_hw_addr(spec.src_mac);
    a.set_sender_proto_addr(spec.src);
    a.set_target_hw_addr(target_hw);
    a.set_target_proto_addr(spec.dst);
    pad(out)
}

/// ARP request "who has `spec.dst`? tell `spec.src`", from `spec.src_mac`
/// to broadcast (`spec.dst_mac` is ignored).
pub fn arp_request(spec: &FrameSpec<Ipv4Addr>) -> Vec<u8> {
    arp_frame(
        spec,
        MacAddr::BROADCAST,
        ArpOperation::REQUEST,
        MacAddr::ZERO,
    )
}

/// ARP reply "`spec.src` is at `spec.src_mac`", to `spec.dst` at
/// `spec.dst_mac`.
pub fn arp_reply(spec: &FrameSpec<Ipv4Addr>) -> Vec<u8> {
    arp_frame(spec, spec.dst_mac, ArpOperation::REPLY, spec.dst_mac)
}

fn nd_frame(
    spec: &FrameSpec<Ipv6Addr>,
    eth_dst: MacAddr,
    ip_dst: Ipv6Addr,
    emit: impl FnOnce(&mut [u8], &Ipv6Addr) -> Result<usize>,
) -> Vec<u8> {
    let spec = FrameSpec {
        dst_mac: eth_dst,
        dst: ip_dst,
        ttl: icmpv6::ND_HOP_LIMIT,
        payload: Vec::new(),
        ..spec.clone()
    };
    let mut body = [0u8; icmpv6::ND_LEN + icmpv6::LLADDR_OPTION_LEN];
    let n = emit(&mut body, &ip_dst).expect("builder: ND body buffer fits the option");
    let mut out = ip6_frame(&spec, ip_proto::ICMPV6, n);
    out.extend_from_slice(&body[..n]);
    pad(out)
}

/// Neighbour solicitation for the target `spec.dst`, from `spec.src` with
/// a source link-layer address option (`spec.src_mac`), to the target's
/// solicited-node multicast group (IPv6 and Ethernet); hop limit 255.
pub fn neighbour_solicitation(spec: &FrameSpec<Ipv6Addr>) -> Vec<u8> {
    let target = spec.dst;
    let group = icmpv6::solicited_node(&target);
    nd_frame(spec, MacAddr::ipv6_multicast(&group), group, |buf, dst| {
        icmpv6::emit_neighbour_solicitation(buf, &spec.src, dst, &target, Some(spec.src_mac))
    })
}

/// Neighbour advertisement for the target `spec.src` ("`spec.src` is at
/// `spec.src_mac`", as a target link-layer address option), to `spec.dst`
/// at `spec.dst_mac`; hop limit 255.
pub fn neighbour_advertisement(spec: &FrameSpec<Ipv6Addr>, flags: NaFlags) -> Vec<u8> {
    nd_frame(spec, spec.dst_mac, spec.dst, |buf, dst| {
        icmpv6::emit_neighbour_advertisement(
            buf,
            &spec.src,
            dst,
            &spec.src,
            flags,
            Some(spec.src_mac),
        )
    })
}

/// Splits an Ethernet/IPv4 frame into fragments whose IPv4 packets are at
/// most `mtu` bytes. Each fragment repeats the Ethernet header and the IPv4
/// header (options included) with its own total length, MF flag, offset
/// and checksum. A frame that fits is returned as the only fragment.
/// Fragmenting a fragment keeps its offset and MF. DF is not honoured.
pub fn ipv4_fragments(frame: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != EtherType::IPV4 {
        return malformed(Layer::Ethernet, "not IPv4");
    }
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let hl = ip.header_len();
    if usize::from(ip.total_len()) <= mtu {
        return Ok(vec![frame.to_vec()]);
    }
    let chunk = mtu.saturating_sub(hl) / 8 * 8;
    if chunk == 0 {
        return malformed(Layer::Ipv4, "MTU too small to fragment");
    }
    let eth_hdr = &frame[..eth.header_len()];
    let payload = ip.payload();
    let base = usize::from(ip.frag_offset());
    let mut frags = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, part) in payload.chunks(chunk).enumerate() {
        let last = (i + 1) * chunk >= payload.len();
        let mut out = Vec::with_capacity(eth_hdr.len() + hl + part.len());
        out.extend_from_slice(eth_hdr);
        out.extend_from_slice(ip.header());
        out.extend_from_slice(part);
        let offset = base + i * chunk;
        // The largest offset the 13-bit field (in 8-byte units) can hold.
        if offset > 0xfff8 {
            return malformed(Layer::Ipv4, "fragment offset beyond 65528");
        }
        let mut f = Ipv4Packet::new_unchecked(&mut out[eth_hdr.len()..]);
        f.set_total_len(len16(hl + part.len()));
        f.set_more_frags(!last || ip.more_frags());
        f.set_frag_offset(len16(offset));
        f.fill_checksum();
        frags.push(pad(out));
    }
    Ok(frags)
}

/// Splits an Ethernet/IPv6 frame into fragments of at most `mtu` bytes of
/// IPv6 packet, inserting a Fragment header (identification `ident`)
/// right after the fixed header; everything after the fixed header is the
/// fragmentable part. A frame that fits is returned as the only fragment.
pub fn ipv6_fragments(frame: &[u8], mtu: usize, ident: u32) -> Result<Vec<Vec<u8>>> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != EtherType::IPV6 {
        return malformed(Layer::Ethernet, "not IPv6");
    }
    let ip = Ipv6Packet::new_checked(eth.payload())?;
    if ipv6::HEADER_LEN + usize::from(ip.payload_len()) <= mtu {
        return Ok(vec![frame.to_vec()]);
    }
    let chunk = mtu.saturating_sub(ipv6::HEADER_LEN + ipv6::FRAGMENT_HEADER_LEN) / 8 * 8;
    if chunk == 0 {
        return malformed(Layer::Ipv6, "MTU too small to fragment");
    }
    let eth_hdr = &frame[..eth.header_len()];
    let fixed = &ip.packet()[..ipv6::HEADER_LEN];
    let payload = ip.payload();
    let mut frags = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, part) in payload.chunks(chunk).enumerate() {
        let more = (i + 1) * chunk < payload.len();
        let offset = len16(i * chunk);
        let mut out = Vec::with_capacity(eth_hdr.len() + 48 + part.len());
        out.extend_from_slice(eth_hdr);
        out.extend_from_slice(fixed);
        out.push(ip.next_header());
        out.push(0);
        out.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
        out.extend_from_slice(&ident.to_be_bytes());
        out.extend_from_slice(part);
        let mut f = Ipv6Packet::new_unchecked(&mut out[eth_hdr.len()..]);
        f.set_next_header(ip_proto::FRAGMENT);
        f.set_payload_len(len16(ipv6::FRAGMENT_HEADER_LEN + part.len()));
        frags.push(pad(out));
    }
    Ok(frags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Error, Ipv6Fragment};

    /// Parses a frame down to the transport layer the way the pipeline
    /// will, returning the first error.
    fn parse_stack(frame: &[u8]) -> Result<()> {
        let eth = EthernetFrame::new_checked(frame)?;
        match eth.ethertype() {
            EtherType::ARP => {
                ArpPacket::new_checked(eth.payload())?;
            }
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(eth.payload())?;
                let pseudo = ip.pseudo_header();
                match ip.protocol() {
                    ip_proto::TCP => {
                        assert!(TcpPacket::new_checked(ip.payload())?.verify_checksum(pseudo))
                    }
                    ip_proto::UDP => {
                        assert!(UdpPacket::new_checked(ip.payload())?.verify_checksum_v4(pseudo))
                    }
                    ip_proto::ICMP => {
                        assert!(Icmpv4Packet::new_checked(ip.payload())?.verify_checksum())
                    }
                    p => panic!("unexpected protocol {p}"),
                }
                assert!(ip.verify_checksum());
            }
            EtherType::IPV6 => {
                let ip = Ipv6Packet::new_checked(eth.payload())?;
                let up = ip.upper_layer()?;
                let pseudo = ip.pseudo_header(&up);
                let l4 = ip.upper_payload(&up);
                match up.protocol {
                    ip_proto::TCP => {
                        assert!(TcpPacket::new_checked(l4)?.verify_checksum(pseudo))
                    }
                    ip_proto::UDP => {
                        assert!(UdpPacket::new_checked(l4)?.verify_checksum_v6(pseudo))
                    }
                    ip_proto::ICMPV6 => {
                        assert!(Icmpv6Packet::new_checked(l4)?.verify_checksum(pseudo))
                    }
                    p => panic!("unexpected protocol {p}"),
                }
            }
            t => panic!("unexpected ethertype {t:?}"),
        }
        Ok(())
    }

    fn all_frames() -> Vec<(&'static str, Vec<u8>)> {
        let v4 = FrameSpec::<Ipv4Addr> {
            payload: b"hello, load balancer".to_vec(),
            ..FrameSpec::default()
        };
        let v6 = FrameSpec::<Ipv6Addr> {
            payload: b"hello, load balancer".to_vec(),
            ..FrameSpec::default()
        };
        let tagged4 = FrameSpec {
            vlan: Some(42),
            ..v4.clone()
        };
        let tagged6 = FrameSpec {
            vlan: Some(42),
            ..v6.clone()
        };
        let inner4 = tcp4(&v4);
        let inner6 = tcp6(&v6);
        vec![
            ("tcp4", tcp4(&v4)),
            ("udp4", udp4(&v4)),
            ("icmp4", icmp4_echo(&v4, 7, 8)),
            ("tcp4 vlan", tcp4(&tagged4)),
            ("udp4 vlan", udp4(&tagged4)),
            ("tcp6", tcp6(&v6)),
            ("udp6", udp6(&v6)),
            ("icmp6", icmp6_echo(&v6, 7, 8)),
            ("udp6 vlan", udp6(&tagged6)),
            (
                "frag-needed",
                icmp4_error(
                    &v4,
                    icmp::DEST_UNREACHABLE,
                    icmp::CODE_FRAG_NEEDED,
                    1400,
                    &inner4[14..62],
                ),
            ),
            (
                "packet-too-big",
                icmp6_error(&v6, icmpv6::PACKET_TOO_BIG, 0, 1280, &inner6[14..82]),
            ),
            ("ns", neighbour_solicitation(&v6)),
            ("na", neighbour_advertisement(&tagged6, NaFlags::SOLICITED)),
        ]
    }

    #[test]
    fn every_builder_output_parses_with_valid_checksums() {
        for (name, f) in all_frames() {
            parse_stack(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(f.len() >= 60, "{name} padded");
        }
        let v4 = FrameSpec::<Ipv4Addr>::default();
        for f in [arp_request(&v4), arp_reply(&v4)] {
            parse_stack(&f).unwrap();
            assert_eq!(f.len(), 60);
        }
    }

    #[test]
    fn every_prefix_of_every_frame_fails_cleanly() {
        for (name, f) in all_frames() {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let hl = eth.header_len();
            // Where each layer starts and how long the real packet is.
            let ip_len = match eth.ethertype() {
                EtherType::IPV4 => {
                    Ipv4Packet::new_checked(eth.payload()).unwrap().total_len() as usize
                }
                _ => {
                    40 + Ipv6Packet::new_checked(eth.payload())
                        .unwrap()
                        .payload_len() as usize
                }
            };
            for n in 0..hl + ip_len {
                let err = parse_stack(&f[..n]).unwrap_err();
                let expect = if n < hl {
                    Error::Truncated {
                        layer: Layer::Ethernet,
                        required: if n < 14 { 14 } else { hl },
                        len: n,
                    }
                } else {
                    let layer = if eth.ethertype() == EtherType::IPV4 {
                        Layer::Ipv4
                    } else {
                        Layer::Ipv6
                    };
                    let fixed = if layer == Layer::Ipv4 { 20 } else { 40 };
                    Error::Truncated {
                        layer,
                        required: if n - hl < fixed { fixed } else { ip_len },
                        len: n - hl,
                    }
                };
                assert_eq!(err, expect, "{name} cut at {n}");
            }
            // Cutting only padding is harmless.
            for n in hl + ip_len..=f.len() {
                parse_stack(&f[..n]).unwrap_or_else(|e| panic!("{name} at {n}: {e}"));
            }
        }
    }

    #[test]
    fn tcp4_fields() {
        let spec = FrameSpec::<Ipv4Addr> {
            vlan: Some(7),
            tcp_flags: TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR,
            seq: 0xdead_beef,
            ack: 17,
            ttl: 3,
            ident: 0x4242,
            dont_frag: true,
            payload: vec![1; 100],
            ..FrameSpec::default()
        };
        let f = tcp4(&spec);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (eth.src(), eth.dst(), eth.vlan()),
            (spec.src_mac, spec.dst_mac, Some(7))
        );
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            (ip.src(), ip.dst(), ip.ttl(), ip.ident()),
            (spec.src, spec.dst, 3, 0x4242)
        );
        assert!(ip.dont_frag());
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (40000, 80));
        assert_eq!(
            (t.seq_number(), t.ack_number(), t.flags()),
            (0xdead_beef, 17, spec.tcp_flags)
        );
        assert_eq!(t.payload(), &[1; 100][..]);
    }

    #[test]
    fn arp_frames() {
        let spec = FrameSpec::<Ipv4Addr>::default();
        let req = arp_request(&spec);
        let eth = EthernetFrame::new_checked(&req[..]).unwrap();
        assert_eq!(eth.dst(), MacAddr::BROADCAST);
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(a.operation(), ArpOperation::REQUEST);
        assert_eq!(
            (a.sender_proto_addr(), a.target_proto_addr()),
            (spec.src, spec.dst)
        );
        let rep = arp_reply(&spec);
        let eth = EthernetFrame::new_checked(&rep[..]).unwrap();
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(a.operation(), ArpOperation::REPLY);
        assert_eq!(a.target_hw_addr(), spec.dst_mac);
        // Answering the request in place yields the builder's reply from the
        // other side.
        let mut answered = req.clone();
        let ours = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
        assert_eq!(arp::reply_in_place(&mut answered, ours), Ok(true));
        let other = FrameSpec::<Ipv4Addr> {
            src_mac: ours,
            dst_mac: spec.src_mac,
            src: spec.dst,
            dst: spec.src,
            ..FrameSpec::default()
        };
        assert_eq!(answered, arp_reply(&other));
    }

    #[test]
    fn nd_frames() {
        let spec = FrameSpec::<Ipv6Addr>::default();
        let ns = neighbour_solicitation(&spec);
        let eth = EthernetFrame::new_checked(&ns[..]).unwrap();
        assert_eq!(eth.dst(), MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.dst(), "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.target_addr(), Some(spec.dst));
        assert_eq!(m.source_lladdr(), Some(spec.src_mac));

        let na = neighbour_advertisement(&spec, NaFlags::SOLICITED | NaFlags::OVERRIDE);
        let eth = EthernetFrame::new_checked(&na[..]).unwrap();
        assert_eq!(eth.dst(), spec.dst_mac);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            (ip.src(), ip.dst(), ip.hop_limit()),
            (spec.src, spec.dst, 255)
        );
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.target_addr(), Some(spec.src));
        assert_eq!(m.target_lladdr(), Some(spec.src_mac));
        assert_eq!(m.na_flags(), Some(NaFlags::SOLICITED | NaFlags::OVERRIDE));
    }

    #[test]
    fn ipv4_fragments_reassemble() {
        let spec = FrameSpec::<Ipv4Addr> {
            vlan: Some(5),
            payload: (0..1000u32).map(|i| i as u8).collect(),
            ..FrameSpec::default()
        };
        let whole = udp4(&spec);
        let frags = ipv4_fragments(&whole, 300).unwrap();
        assert_eq!(frags.len(), 4); // 1008 bytes of UDP in 280-byte pieces
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(eth.vlan(), Some(5));
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            assert!(ip.total_len() <= 300);
            assert!(ip.is_fragment());
            assert_eq!(ip.more_frags(), i + 1 < frags.len());
            assert_eq!(usize::from(ip.frag_offset()), data.len());
            assert_eq!(ip.ident(), spec.ident);
            data.extend_from_slice(ip.payload());
        }
        let eth = EthernetFrame::new_checked(&whole[..]).unwrap();
        assert_eq!(
            data,
            Ipv4Packet::new_checked(eth.payload()).unwrap().payload()
        );
        // Fits: unchanged. Too small: error.
        assert_eq!(ipv4_fragments(&whole, 1500).unwrap(), vec![whole.clone()]);
        assert!(matches!(
            ipv4_fragments(&whole, 27),
            Err(Error::Malformed {
                layer: Layer::Ipv4,
                ..
            })
        ));
        assert!(ipv4_fragments(&tcp6(&FrameSpec::default()), 100).is_err());
        // Re-fragmenting a fragment near the top of the offset range.
        let mut late = frags[0].clone();
        {
            let mut eth = EthernetFrame::new_checked(&mut late[..]).unwrap();
            let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).unwrap();
            ip.set_frag_offset(65528);
            ip.fill_checksum();
        }
        assert_eq!(
            ipv4_fragments(&late, 100),
            Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "fragment offset beyond 65528"
            })
        );
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let spec = FrameSpec::<Ipv6Addr> {
            payload: (0..1000u32).map(|i| (i * 7) as u8).collect(),
            ..FrameSpec::default()
        };
        let whole = tcp6(&spec);
        let frags = ipv6_fragments(&whole, 400, 0xabcd_0001).unwrap();
        assert_eq!(frags.len(), 3); // 1020 bytes in 352-byte pieces
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            assert!(40 + usize::from(ip.payload_len()) <= 400);
            let up = ip.upper_layer().unwrap();
            let frag = up.fragment.unwrap();
            assert_eq!(
                frag,
                Ipv6Fragment {
                    offset: frag.offset,
                    more: i + 1 < frags.len(),
                    ident: 0xabcd_0001
                }
            );
            assert_eq!(usize::from(frag.offset), data.len());
            assert_eq!(up.protocol, ip_proto::TCP);
            assert_eq!(up.offset, 48);
            data.extend_from_slice(ip.upper_payload(&up));
        }
        let eth = EthernetFrame::new_checked(&whole[..]).unwrap();
        assert_eq!(
            data,
            Ipv6Packet::new_checked(eth.payload()).unwrap().payload()
        );
        assert_eq!(
            ipv6_fragments(&whole, 1500, 1).unwrap(),
            vec![whole.clone()]
        );
        assert!(ipv6_fragments(&whole, 55, 1).is_err());
    }
}
