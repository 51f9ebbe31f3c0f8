//! Every packet view of `forwarder::packet` on arbitrary bytes.
//!
//! The input is an Ethernet frame; it is parsed down the stack the way its
//! headers say (Ethernet with tags, ARP, IPv4, IPv6 with extension headers,
//! TCP, UDP, ICMP, ICMPv6 with NDP options, the packet an ICMP error
//! quotes), and each view is also tried on the raw bytes after the
//! Ethernet header. The module's contract: once `new_checked` (or
//! `new_quoted`) accepts a buffer, no accessor and no setter panics, and
//! payload slices stay inside the buffer and inside the packet's own
//! length. The checksum helpers are checked against a full recomputation.
#![no_main]

use forwarder::packet::checksum::{self, Incremental};
use forwarder::packet::ethernet::{EtherType, EthernetFrame};
use forwarder::packet::icmpv6::NaFlags;
use forwarder::packet::{
    arp, icmp, ip_proto, ArpOperation, ArpPacket, Icmpv4Packet, Icmpv6Packet, Ipv4Packet,
    Ipv6Packet, MacAddr, TcpFlags, TcpPacket, UdpPacket,
};
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);

fuzz_target!(|data: &[u8]| {
    checksums(data);
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    let hl = eth.header_len();
    assert!(matches!(hl, 14 | 18 | 22) && hl <= data.len());
    assert_eq!(eth.tag_count(), (hl - 14) / 4);
    assert_eq!(eth.vlan().is_some(), hl > 14);
    assert_eq!(eth.inner_vlan().is_some(), hl > 18);
    assert!(eth.vlan_pcp().is_none_or(|p| p < 8));
    black_box((eth.dst(), eth.src()));
    let payload = eth.payload();
    assert_eq!(payload.len(), data.len() - hl);

    // Setters on a copy, then the accessors again.
    let mut copy = data.to_vec();
    {
        let mut e = EthernetFrame::new_checked(&mut copy[..]).expect("accepted once");
        e.reply_addresses(MAC);
        assert_eq!(e.set_vlan(7), hl > 14);
        e.set_ethertype(EtherType(0x1234));
        assert_eq!(e.ethertype(), EtherType(0x1234));
        assert_eq!(e.dst(), eth.src());
        black_box(e.payload_mut().len());
    }

    match eth.ethertype() {
        EtherType::ARP => arp_view(payload),
        EtherType::IPV4 => ipv4(payload, false),
        EtherType::IPV6 => ipv6(payload, false),
        _ => {}
    }
    // Each view on the bytes as they are, whatever the EtherType says.
    arp_view(payload);
    ipv4(payload, true);
    ipv6(payload, true);
    transport4(payload, 0);
    transport6(payload, 0);

    // ARP answer in place (also for tagged frames).
    let mut copy = data.to_vec();
    if let Ok(true) = arp::reply_in_place(&mut copy, MAC) {
        let e = EthernetFrame::new_checked(&copy[..]).expect("reply keeps the header");
        let a = ArpPacket::new_checked(e.payload()).expect("reply keeps the body");
        assert_eq!(a.operation(), ArpOperation::REPLY);
        assert_eq!(a.sender_hw_addr(), MAC);
    }
});

fn arp_view(b: &[u8]) {
    let Ok(a) = ArpPacket::new_checked(b) else {
        return;
    };
    black_box((
        a.operation(),
        a.sender_hw_addr(),
        a.sender_proto_addr(),
        a.target_hw_addr(),
        a.target_proto_addr(),
        a.is_gratuitous(),
    ));
    let mut copy = b.to_vec();
    let mut m = ArpPacket::new_checked(&mut copy[..]).expect("accepted once");
    let was_request = m.operation() == ArpOperation::REQUEST;
    let asked = m.target_proto_addr();
    assert_eq!(m.make_reply(MAC), was_request);
    if was_request {
        assert_eq!(m.sender_proto_addr(), asked);
        assert_eq!(m.target_hw_addr(), a.sender_hw_addr());
    }
    m.set_ethernet_ipv4();
    m.set_sender_proto_addr(Ipv4Addr::LOCALHOST);
    m.set_target_hw_addr(MAC);
    assert!(ArpPacket::new_checked(&copy[..]).is_ok());
}

/// An IPv4 packet: `loose` also tries `new_quoted`.
fn ipv4(b: &[u8], loose: bool) {
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let tl = usize::from(p.total_len());
        assert!(tl <= b.len() && p.header_len() >= 20 && p.header_len() <= tl);
        assert_eq!(p.payload().len(), tl - p.header_len());
        assert_eq!(p.header().len(), p.header_len());
        ipv4_accessors(&p);
        if !p.is_fragment() {
            transport4(p.payload(), p.pseudo_header());
            if p.protocol() == ip_proto::ICMP {
                icmp4(p.payload());
            }
        } else if p.frag_offset() == 0 {
            transport4(p.payload(), 0);
        }
        ipv4_setters(b);
    }
    if loose {
        if let Ok(p) = Ipv4Packet::new_quoted(b) {
            ipv4_accessors(&p);
            assert!(p.payload().len() <= b.len());
            let (sp, dp) = icmp::quoted_ports(p.payload()).unwrap_or_default();
            black_box((sp, dp));
            ipv4_setters(b);
        }
    }
}

fn ipv4_accessors(p: &Ipv4Packet<&[u8]>) {
    black_box((
        p.version(),
        p.tos(),
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.ttl(),
        p.checksum(),
        p.src(),
        p.dst(),
        p.options().len(),
        p.verify_checksum(),
        p.pseudo_header(),
    ));
    assert_eq!(p.options().len() + 20, p.header().len());
}

fn ipv4_setters(b: &[u8]) {
    let mut copy = b.to_vec();
    let Ok(mut m) = Ipv4Packet::new_quoted(&mut copy[..]) else {
        return;
    };
    let valid = m.verify_checksum();
    let ttl = m.ttl();
    let after = m.decrement_ttl();
    assert_eq!(after, ttl.saturating_sub(1));
    if valid && ttl > 0 {
        assert!(
            m.verify_checksum(),
            "incremental TTL update broke the checksum"
        );
    }
    m.set_src(Ipv4Addr::new(10, 1, 2, 3));
    m.set_dst(Ipv4Addr::BROADCAST);
    m.fill_checksum();
    assert!(m.verify_checksum());
    m.set_tos(0xff);
    m.set_ident(7);
    m.set_dont_frag(true);
    m.set_more_frags(true);
    m.set_frag_offset(8 * 100);
    assert_eq!(m.frag_offset(), 800);
    m.set_protocol(ip_proto::UDP);
    // Length setters do not re-validate; the slices stay in the buffer.
    m.set_total_len(u16::MAX);
    m.set_header_len(60);
    black_box((m.options().len(), m.header().len(), m.payload().len()));
    black_box(m.payload_mut().len());
    m.set_header_len(20);
    m.set_total_len(0);
    black_box((m.payload().len(), m.pseudo_header()));
}

/// TCP and UDP views of an IPv4 payload (checksums against `pseudo`).
fn transport4(l4: &[u8], pseudo: u64) {
    tcp(l4, pseudo);
    if let Ok(u) = UdpPacket::new_checked(l4) {
        udp_accessors(&u);
        black_box(u.verify_checksum_v4(pseudo));
        udp_setters(l4, pseudo, true);
    }
}

fn transport6(l4: &[u8], pseudo: u64) {
    tcp(l4, pseudo);
    if let Ok(u) = UdpPacket::new_checked(l4) {
        udp_accessors(&u);
        black_box(u.verify_checksum_v6(pseudo));
        udp_setters(l4, pseudo, false);
    }
    icmp6(l4, pseudo);
}

fn tcp(l4: &[u8], pseudo: u64) {
    let Ok(t) = TcpPacket::new_checked(l4) else {
        return;
    };
    let hl = t.header_len();
    assert!(hl >= 20 && hl <= l4.len());
    assert_eq!(t.options().len(), hl - 20);
    assert_eq!(t.payload().len(), l4.len() - hl);
    assert_eq!(t.len(), l4.len());
    black_box((
        t.src_port(),
        t.dst_port(),
        t.seq_number(),
        t.ack_number(),
        t.flags(),
        t.window(),
        t.checksum(),
        t.urgent_ptr(),
        t.is_empty(),
        format!("{:?}", t.flags()).len(),
    ));
    let valid = t.verify_checksum(pseudo);
    let mut copy = l4.to_vec();
    let mut m = TcpPacket::new_checked(&mut copy[..]).expect("accepted once");
    // An incremental port rewrite keeps a right checksum right.
    let old = m.dst_port();
    let c = Incremental::new(m.checksum())
        .remove_u16(old)
        .add_u16(8080)
        .finish();
    m.set_dst_port(8080);
    m.set_checksum(c);
    if valid {
        assert!(m.verify_checksum(pseudo), "incremental port update");
    }
    m.set_src_port(1);
    m.set_seq_number(2);
    m.set_ack_number(3);
    m.set_flags(TcpFlags::SYN | TcpFlags::ACK);
    m.set_window(4);
    m.set_urgent_ptr(5);
    m.fill_checksum(pseudo);
    assert!(m.verify_checksum(pseudo));
    m.set_header_len(60);
    black_box((m.options().len(), m.payload().len(), m.payload_mut().len()));
}

fn udp_accessors(u: &UdpPacket<&[u8]>) {
    let len = usize::from(u.length());
    assert!(len >= 8 && len <= u.datagram().len().max(len));
    assert_eq!(u.payload().len(), len - 8);
    black_box((u.src_port(), u.dst_port(), u.checksum(), u.has_checksum()));
}

fn udp_setters(l4: &[u8], pseudo: u64, v4: bool) {
    let mut copy = l4.to_vec();
    let mut m = UdpPacket::new_checked(&mut copy[..]).expect("accepted once");
    let valid = if v4 {
        m.verify_checksum_v4(pseudo)
    } else {
        m.verify_checksum_v6(pseudo)
    };
    let had = m.has_checksum();
    let old = m.src_port();
    m.update_checksum(|i| i.remove_u16(old).add_u16(53));
    m.set_src_port(53);
    if valid && (had || !v4) {
        let ok = if v4 {
            m.verify_checksum_v4(pseudo)
        } else {
            m.verify_checksum_v6(pseudo)
        };
        assert!(ok, "incremental UDP update");
    }
    if !had {
        assert!(!m.has_checksum(), "an absent UDP checksum appeared");
    }
    m.set_dst_port(9);
    m.fill_checksum(pseudo);
    assert!(m.has_checksum(), "a computed UDP checksum is never 0");
    m.set_checksum(0);
    m.set_length(u16::MAX);
    black_box((m.payload().len(), m.payload_mut().len()));
}

fn icmp4(b: &[u8]) {
    let Ok(i) = Icmpv4Packet::new_checked(b) else {
        return;
    };
    black_box((
        i.msg_type(),
        i.code(),
        i.checksum(),
        i.rest_of_header(),
        i.echo_ident(),
        i.echo_seq_no(),
        i.next_hop_mtu(),
        i.pointer(),
        i.gateway(),
        i.data().len(),
    ));
    assert_eq!(i.is_error(), icmp::is_error_type(i.msg_type()));
    if let Some(q) = i.invoking_packet() {
        // The quoted packet: header first, possibly cut short.
        if let Ok(p) = Ipv4Packet::new_quoted(q) {
            ipv4_accessors(&p);
            black_box(icmp::quoted_ports(p.payload()));
        }
    }
    let valid = i.verify_checksum();
    let mut copy = b.to_vec();
    let mut m = Icmpv4Packet::new_checked(&mut copy[..]).expect("accepted once");
    if m.echo_request_to_reply() {
        assert_eq!(m.msg_type(), icmp::ECHO_REPLY);
        if valid {
            assert!(m.verify_checksum(), "echo reply checksum");
        }
    }
    m.set_msg_type(icmp::DEST_UNREACHABLE);
    m.set_code(icmp::CODE_FRAG_NEEDED);
    m.set_rest_of_header(0);
    m.set_next_hop_mtu(1400);
    assert_eq!(m.next_hop_mtu(), Some(1400));
    m.set_echo_ident(1);
    m.set_echo_seq_no(2);
    m.fill_checksum();
    assert!(m.verify_checksum());
    black_box(m.data_mut().len());
}

fn ipv6(b: &[u8], loose: bool) {
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let end = 40 + usize::from(p.payload_len());
        assert!(end <= b.len());
        assert_eq!(p.payload().len(), end - 40);
        assert_eq!(p.packet().len(), end);
        ipv6_accessors(&p, true);
        ipv6_setters(b);
    }
    if loose {
        if let Ok(p) = Ipv6Packet::new_quoted(b) {
            ipv6_accessors(&p, false);
            ipv6_setters(b);
        }
    }
}

fn ipv6_accessors(p: &Ipv6Packet<&[u8]>, whole: bool) {
    black_box((
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.next_header(),
        p.hop_limit(),
        p.src(),
        p.dst(),
    ));
    let Ok(up) = p.upper_layer() else {
        return;
    };
    let pkt = p.packet().len();
    assert!(
        up.offset >= 40 && up.offset <= pkt,
        "upper layer at {} of {pkt}",
        up.offset
    );
    let l4 = p.upper_payload(&up);
    assert_eq!(l4.len(), pkt - up.offset);
    let pseudo = p.pseudo_header(&up);
    if let Some(f) = up.fragment {
        black_box((f.is_first(), f.more, f.ident));
        if !f.is_first() {
            return;
        }
    }
    if whole {
        transport6(l4, pseudo);
    } else {
        black_box(icmp::quoted_ports(l4));
    }
}

fn ipv6_setters(b: &[u8]) {
    let mut copy = b.to_vec();
    let Ok(mut m) = Ipv6Packet::new_quoted(&mut copy[..]) else {
        return;
    };
    m.set_traffic_class(0xab);
    m.set_flow_label(0xfffff);
    assert_eq!((m.traffic_class(), m.flow_label()), (0xab, 0xfffff));
    m.set_version_tc_flow(1, 2);
    m.set_hop_limit(1);
    m.set_src(Ipv6Addr::LOCALHOST);
    m.set_dst(Ipv6Addr::UNSPECIFIED);
    m.set_next_header(ip_proto::FRAGMENT);
    if let Ok(up) = m.upper_layer() {
        black_box(m.upper_payload_mut(&up).len());
    }
    m.set_payload_len(u16::MAX);
    black_box((m.payload().len(), m.payload_mut().len(), m.packet().len()));
}

fn icmp6(b: &[u8], pseudo: u64) {
    let Ok(i) = Icmpv6Packet::new_checked(b) else {
        return;
    };
    black_box((
        i.msg_type(),
        i.code(),
        i.checksum(),
        i.echo_ident(),
        i.echo_seq_no(),
        i.mtu(),
        i.pointer(),
        i.target_addr(),
        i.na_flags(),
        i.ndp_options().len(),
        i.source_lladdr(),
        i.target_lladdr(),
        i.data().len(),
    ));
    for kind in 0..=5 {
        if let Some(o) = i.ndp_option(kind) {
            assert!(o.len() >= 8 && o.len() % 8 == 0 && o[0] == kind);
        }
    }
    if let Some(q) = i.invoking_packet() {
        if let Ok(p) = Ipv6Packet::new_quoted(q) {
            ipv6_accessors(&p, false);
        }
    }
    let valid = i.verify_checksum(pseudo);
    let mut copy = b.to_vec();
    let mut m = Icmpv6Packet::new_checked(&mut copy[..]).expect("accepted once");
    if m.echo_request_to_reply() && valid {
        assert!(m.verify_checksum(pseudo), "echo reply checksum");
    }
    m.set_msg_type(2);
    m.set_code(0);
    m.set_param(1280);
    assert_eq!(m.mtu(), Some(1280));
    m.set_echo_ident(1);
    m.set_echo_seq_no(2);
    m.fill_checksum(pseudo);
    assert!(m.verify_checksum(pseudo));
    black_box((m.data_mut().len(), NaFlags::SOLICITED));
}

/// Full sums, pseudo-headers and the incremental updater on the raw bytes.
fn checksums(data: &[u8]) {
    let full = checksum::sum_bytes(data);
    black_box((checksum::fold(full), checksum::finish(full)));
    // A skipped word counts as zero.
    if data.len() >= 2 {
        let skip = (usize::from(data[0]) * 2) % (data.len() & !1).max(2);
        let mut z = data.to_vec();
        z[skip] = 0;
        z[skip + 1] = 0;
        assert_eq!(
            checksum::fold(checksum::sum_bytes_skipping(data, skip)),
            checksum::fold(checksum::sum_bytes(&z))
        );
    }
    // Fill a checksum field, then change one word and update it
    // incrementally: the result must verify like a full recomputation.
    if data.len() >= 8 {
        let mut m = data.to_vec();
        let field = 2;
        let c = checksum::transport_checksum(0, &m, field);
        m[field..field + 2].copy_from_slice(&c.to_be_bytes());
        assert!(checksum::verify(0, &m), "filled checksum verifies");
        let at = 4 + (usize::from(data[1]) % ((m.len() - 4) / 2)) * 2;
        let old = u16::from_be_bytes([m[at], m[at + 1]]);
        let new = u16::from_be_bytes([data[2], data[3]]);
        let inc = Incremental::new(c).remove_u16(old).add_u16(new).finish();
        m[at..at + 2].copy_from_slice(&new.to_be_bytes());
        m[field..field + 2].copy_from_slice(&inc.to_be_bytes());
        // (Where every other word is zero, RFC 1624's update gives the
        // other zero, 0x0000 for 0xFFFF; no real header is all zeros.)
        let zero = checksum::sum_bytes_skipping(&m, field) == 0;
        assert!(
            zero || checksum::verify(0, &m),
            "incremental update verifies"
        );
        // Four bytes at once, as for an IPv4 address.
        if m.len() >= at + 4 {
            let old: [u8; 4] = m[at..at + 4].try_into().unwrap();
            let new = [data[4], data[5], data[6], data[7]];
            let inc2 = Incremental::new(inc)
                .remove_bytes(&old)
                .add_bytes(&new)
                .finish();
            m[at..at + 4].copy_from_slice(&new);
            m[field..field + 2].copy_from_slice(&inc2.to_be_bytes());
            let zero = checksum::sum_bytes_skipping(&m, field) == 0;
            assert!(
                zero || checksum::verify(0, &m),
                "incremental 4-byte update verifies"
            );
        }
    }
    let a = Ipv4Addr::new(data.first().copied().unwrap_or(0), 0, 0, 1);
    black_box(checksum::pseudo_header_v4(a, a, 6, data.len() as u16));
    black_box(checksum::pseudo_header_v6(
        &Ipv6Addr::LOCALHOST,
        &Ipv6Addr::UNSPECIFIED,
        17,
        data.len() as u32,
    ));
    black_box(checksum::ipv4_header_checksum(&data[..data.len().min(60)]));
    black_box(checksum::udp_wire(checksum::finish(full)));
}
