//! What must hold for a frame the pipeline sends.

use forwarder::packet::ethernet::{EtherType, EthernetFrame};
use forwarder::packet::{
    ip_proto, ArpPacket, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Which checksums of an IP packet are right (`None`: not present or not
/// checkable, e.g. a fragment, or an IPv6 packet for the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sums {
    /// IPv4 header checksum.
    pub header: Option<bool>,
    /// TCP / UDP / ICMP / ICMPv6 checksum (whole datagrams only).
    pub transport: Option<bool>,
    /// The upper-layer protocol.
    pub proto: u8,
    /// ICMP(v6) type, when `proto` is ICMP(v6).
    pub icmp_type: Option<u8>,
}

impl Sums {
    /// Every checksum present that was right in `before` is right here.
    pub fn preserves(&self, before: &Sums) -> bool {
        let kept = |b: Option<bool>, a: Option<bool>| b != Some(true) || a == Some(true);
        kept(before.header, self.header) && kept(before.transport, self.transport)
    }
}

/// The checksums of the IP packet at the start of `ip` (`None` if it does
/// not parse).
pub fn ip_sums(ip: &[u8]) -> Option<Sums> {
    match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            let mut s = Sums {
                header: Some(p.verify_checksum()),
                proto: p.protocol(),
                ..Sums::default()
            };
            if !p.is_fragment() {
                let pseudo = p.pseudo_header();
                let l4 = p.payload();
                s.transport = match p.protocol() {
                    ip_proto::TCP => TcpPacket::new_checked(l4)
                        .ok()
                        .map(|t| t.verify_checksum(pseudo)),
                    ip_proto::UDP => UdpPacket::new_checked(l4)
                        .ok()
                        .filter(|u| u.has_checksum())
                        .map(|u| u.verify_checksum_v4(pseudo)),
                    ip_proto::ICMP => Icmpv4Packet::new_checked(l4).ok().map(|i| {
                        s.icmp_type = Some(i.msg_type());
                        i.verify_checksum()
                    }),
                    _ => None,
                };
            }
            Some(s)
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            let up = p.upper_layer().ok()?;
            let mut s = Sums {
                proto: up.protocol,
                ..Sums::default()
            };
            if up.fragment.is_none() {
                let pseudo = p.pseudo_header(&up);
                let l4 = p.upper_payload(&up);
                s.transport = match up.protocol {
                    ip_proto::TCP => TcpPacket::new_checked(l4)
                        .ok()
                        .map(|t| t.verify_checksum(pseudo)),
                    ip_proto::UDP => UdpPacket::new_checked(l4)
                        .ok()
                        .map(|u| u.verify_checksum_v6(pseudo)),
                    ip_proto::ICMPV6 => Icmpv6Packet::new_checked(l4).ok().map(|i| {
                        s.icmp_type = Some(i.msg_type());
                        i.verify_checksum(pseudo)
                    }),
                    _ => None,
                };
            }
            Some(s)
        }
        _ => None,
    }
}

/// The IP packet of an untagged IPv4 / IPv6 Ethernet frame.
pub fn frame_ip(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.tag_count() != 0 || !matches!(eth.ethertype(), EtherType::IPV4 | EtherType::IPV6) {
        return None;
    }
    Some(eth.into_payload())
}

/// Checks a frame the pipeline sends, given the frame that came in.
/// `answered`: the frame goes back out the port it came in (a reply built
/// from it), else it is forwarded (rewritten, or tunnelled). Panics with a
/// description of what is wrong.
pub fn sent_frame(input: &[u8], output: &[u8], answered: bool) {
    assert!(
        output.len() <= (input.len() + 48).max(60),
        "output grew from {} to {} bytes",
        input.len(),
        output.len()
    );
    let eth = EthernetFrame::new_checked(output).expect("output Ethernet header");
    assert_eq!(eth.tag_count(), 0, "output is VLAN tagged");
    assert!(
        !eth.src().is_multicast(),
        "output source MAC {} is a group address",
        eth.src()
    );
    match eth.ethertype() {
        EtherType::ARP => {
            assert!(answered, "forwarded ARP");
            let arp = ArpPacket::new_checked(eth.payload()).expect("answered ARP parses");
            assert_eq!(arp.sender_hw_addr(), eth.src(), "ARP reply sender MAC");
            return;
        }
        EtherType::IPV4 | EtherType::IPV6 => {}
        t => panic!("sent a frame of EtherType {:#06x}", t.0),
    }
    let ip = eth.payload();
    let v_eth = if eth.ethertype() == EtherType::IPV4 {
        4
    } else {
        6
    };
    assert_eq!(ip.first().map(|b| b >> 4), Some(v_eth), "IP version");
    let out = ip_sums(ip).expect("sent IP packet parses");
    let Some(inp) = frame_ip(input).and_then(ip_sums) else {
        return;
    };
    // A tunnel: the outer header is fresh and right; the inner packet
    // keeps its checksums.
    if matches!(out.proto, ip_proto::IPIP | ip_proto::IPV6) && !answered {
        if v_eth == 4 {
            assert_eq!(out.header, Some(true), "tunnel outer header checksum");
        }
        let inner = match v_eth {
            4 => Ipv4Packet::new_checked(ip).expect("outer").into_payload(),
            _ => {
                let o = Ipv6Packet::new_checked(ip).expect("outer");
                let up = o.upper_layer().expect("outer upper layer");
                o.into_upper_payload(&up)
            }
        };
        // The inner packet may itself be IP-in-IP (a packet to a TUN VIP
        // that was already tunnelled); compare with the input either way.
        if let Some(inner) = ip_sums(inner) {
            if inner.proto == inp.proto {
                assert!(
                    inner.preserves(&inp),
                    "tunnelled packet's checksums: {inp:?} -> {inner:?}"
                );
                return;
            }
        }
    }
    // An answer of another kind (a RST, an ICMP error about the input) is
    // built from scratch and must be right whatever came in.
    let fresh = answered && (out.proto != inp.proto || out.proto == ip_proto::TCP);
    if fresh {
        assert_ne!(
            out.header,
            Some(false),
            "fresh answer's IPv4 header checksum"
        );
        assert_ne!(out.transport, Some(false), "fresh answer's checksum");
    } else {
        assert!(out.preserves(&inp), "checksums broken: {inp:?} -> {out:?}");
    }
}
