//! The verdict for each frame: pure Rust, no DPDK, unit-testable.
//!
//! A frame from a data port ends in exactly one [`Outcome`]: answered in
//! place (ARP for an owned address), handed to the kernel through the
//! exception path (anything addressed to the balancer itself), forwarded,
//! or dropped with a [`DropReason`]. The worker turns outcomes into TX
//! bursts and counters; nothing here touches a queue, a clock or a lock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::buffer::PacketBuf;
use crate::neigh::NeighTable;
use crate::packet::arp::{ArpOperation, ArpPacket};
use crate::packet::ethernet::{EtherType, EthernetFrame};
use crate::packet::ipv4::Ipv4Packet;
use crate::packet::ipv6::Ipv6Packet;
use crate::packet::MacAddr;

/// Why a frame was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Too short or inconsistent at some layer.
    Malformed = 0,
    /// 802.1Q/802.1ad tagged (no VLAN is configured).
    VlanTagged,
    /// An EtherType the balancer does not handle.
    UnknownEtherType,
    /// ARP not about an address this node owns.
    ArpNotOurs,
    /// IP traffic for an address this node neither owns nor balances.
    NotOurs,
    /// The transmit queue refused the frame.
    TxFull,
    /// An mbuf chain (frames over one buffer are not supported).
    MultiSegment,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 7;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::VlanTagged,
        DropReason::UnknownEtherType,
        DropReason::ArpNotOurs,
        DropReason::NotOurs,
        DropReason::TxFull,
        DropReason::MultiSegment,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::ArpNotOurs => "arp_not_ours",
            DropReason::NotOurs => "not_ours",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
        }
    }
}

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten in place as a reply: send it back out the port it came in.
    Answered,
    /// For the balancer itself: hand it to the kernel (exception path).
    ToKernel,
    /// Send out data port `port` (index into the worker's ports).
    Forward {
        /// Output port index.
        port: u16,
    },
    /// Dropped and counted.
    Dropped(DropReason),
}

/// The addresses one data port answers for.
#[derive(Debug, Clone)]
pub struct PortView {
    /// The port's MAC (also the exception TAP's MAC).
    pub mac: MacAddr,
    /// The balancer's own addresses on this port.
    pub addrs: Vec<IpAddr>,
}

impl PortView {
    #[inline]
    fn owns_v4(&self, ip: Ipv4Addr) -> bool {
        self.addrs.contains(&IpAddr::V4(ip))
    }

    #[inline]
    fn owns_v6(&self, ip: Ipv6Addr) -> bool {
        self.addrs.contains(&IpAddr::V6(ip))
    }

    /// ff02::1 (all nodes) or the solicited-node group of an owned address.
    #[inline]
    fn listens_v6(&self, ip: Ipv6Addr) -> bool {
        let o = ip.octets();
        if ip == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) {
            return true;
        }
        let sn_prefix = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        o[..13] == sn_prefix
            && self.addrs.iter().any(|a| match a {
                IpAddr::V6(a) => a.octets()[13..] == o[13..],
                IpAddr::V4(_) => false,
            })
    }
}

/// Decides the fate of one frame that arrived on a data port.
///
/// `now_ms` is the worker's clock, used to time-stamp neighbour entries
/// learnt from ARP.
pub fn handle_frame<B: PacketBuf>(
    buf: &mut B,
    port: &PortView,
    neigh: &NeighTable,
    now_ms: u64,
) -> Outcome {
    let frame = buf.data_mut();
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return Outcome::Dropped(DropReason::Malformed);
    };
    if eth.tag_count() > 0 {
        return Outcome::Dropped(DropReason::VlanTagged);
    }
    match eth.ethertype() {
        EtherType::ARP => handle_arp(&mut eth, port, neigh, now_ms),
        EtherType::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return Outcome::Dropped(DropReason::Malformed);
            };
            if port.owns_v4(ip.dst()) {
                Outcome::ToKernel
            } else {
                Outcome::Dropped(DropReason::NotOurs)
            }
        }
        EtherType::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                return Outcome::Dropped(DropReason::Malformed);
            };
            let dst = ip.dst();
            if port.owns_v6(dst) || port.listens_v6(dst) {
                Outcome::ToKernel
            } else {
                Outcome::Dropped(DropReason::NotOurs)
            }
        }
        _ => Outcome::Dropped(DropReason::UnknownEtherType),
    }
}

fn handle_arp(
    eth: &mut EthernetFrame<&mut [u8]>,
    port: &PortView,
    neigh: &NeighTable,
    now_ms: u64,
) -> Outcome {
    let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
        return Outcome::Dropped(DropReason::Malformed);
    };
    let sender_ip = arp.sender_proto_addr();
    let sender_mac = arp.sender_hw_addr();
    let for_us = port.owns_v4(arp.target_proto_addr());
    // Learn like Linux: create entries only from ARP aimed at us; refresh
    // existing ones from any ARP (a gratuitous ARP announces a move).
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
        // Replies to the kernel's own requests: it needs them too.
        ArpOperation::REPLY => Outcome::ToKernel,
        _ => Outcome::Dropped(DropReason::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::TestBuffer;
    use crate::neigh::Resolve;
    use crate::packet::builder;

    const OUR: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 2]);
    const CLIENT: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 1]);

    fn view() -> PortView {
        PortView {
            mac: OUR,
            addrs: vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
        }
    }

    fn arp(op: u16, sender_ip: &str, target_ip: &str) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        let n = crate::neigh::write_arp_request(
            &mut f,
            CLIENT,
            sender_ip.parse().unwrap(),
            target_ip.parse().unwrap(),
        )
        .unwrap();
        f.truncate(n);
        f[20..22].copy_from_slice(&op.to_be_bytes());
        if op == 2 {
            f[0..6].copy_from_slice(&OUR.0);
            f[32..38].copy_from_slice(&OUR.0);
        }
        f
    }

    #[test]
    fn table_of_frames() {
        let mut reply = arp(1, "192.0.2.1", "192.0.2.2");
        // Expected reply, built by hand from the request.
        {
            let r = &mut reply;
            r[0..6].copy_from_slice(&CLIENT.0);
            r[6..12].copy_from_slice(&OUR.0);
            r[20..22].copy_from_slice(&2u16.to_be_bytes());
            r[22..28].copy_from_slice(&OUR.0);
            r[28..32].copy_from_slice(&[192, 0, 2, 2]);
            r[32..38].copy_from_slice(&CLIENT.0);
            r[38..42].copy_from_slice(&[192, 0, 2, 1]);
        }
        let spec = |dst: &str| builder::FrameSpec {
            src_mac: CLIENT,
            dst_mac: OUR,
            src: "192.0.2.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            ..builder::FrameSpec::default()
        };
        let spec6 = |dst: &str| builder::FrameSpec {
            src_mac: CLIENT,
            dst_mac: OUR,
            src: "2001:db8::1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            ..builder::FrameSpec::default()
        };
        let ping = builder::icmp4_echo(&spec("192.0.2.2"), 1, 1);
        let stranger = builder::icmp4_echo(&spec("192.0.2.77"), 1, 1);
        let ping6 = builder::icmp6_echo(&spec6("2001:db8::2"), 1, 1);
        let ns_group = builder::icmp6_echo(&spec6("ff02::1:ff00:2"), 1, 1);
        let other_group = builder::icmp6_echo(&spec6("ff02::1:ff00:9"), 1, 1);
        let mut tagged = ping.clone();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        let mut bad_ihl = ping.clone();
        bad_ihl[14] = 0x44;

        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<u8>, Option<Vec<u8>>, Outcome)> = vec![
            (
                "ARP request for our address is answered in place",
                arp(1, "192.0.2.1", "192.0.2.2"),
                Some(reply),
                Outcome::Answered,
            ),
            (
                "ARP request for another address is dropped",
                arp(1, "192.0.2.1", "192.0.2.9"),
                None,
                Outcome::Dropped(DropReason::ArpNotOurs),
            ),
            (
                "ARP reply to our request goes to the kernel",
                arp(2, "192.0.2.1", "192.0.2.2"),
                None,
                Outcome::ToKernel,
            ),
            (
                "ping to our address goes to the kernel",
                ping.clone(),
                Some(ping),
                Outcome::ToKernel,
            ),
            (
                "IPv4 for a stranger is dropped",
                stranger,
                None,
                Outcome::Dropped(DropReason::NotOurs),
            ),
            (
                "IPv6 to our address goes to the kernel",
                ping6,
                None,
                Outcome::ToKernel,
            ),
            (
                "our solicited-node group goes to the kernel",
                ns_group,
                None,
                Outcome::ToKernel,
            ),
            (
                "another solicited-node group is dropped",
                other_group,
                None,
                Outcome::Dropped(DropReason::NotOurs),
            ),
            (
                "VLAN-tagged frames are dropped",
                tagged,
                None,
                Outcome::Dropped(DropReason::VlanTagged),
            ),
            (
                "bad IHL is malformed",
                bad_ihl,
                None,
                Outcome::Dropped(DropReason::Malformed),
            ),
            (
                "runt frame is malformed",
                vec![0u8; 10],
                None,
                Outcome::Dropped(DropReason::Malformed),
            ),
            (
                "truncated ARP is malformed",
                arp(1, "192.0.2.1", "192.0.2.2")[..30].to_vec(),
                None,
                Outcome::Dropped(DropReason::Malformed),
            ),
            (
                "unknown EtherType is dropped",
                {
                    let mut f = vec![0u8; 60];
                    f[12] = 0x88;
                    f[13] = 0xcc;
                    f
                },
                None,
                Outcome::Dropped(DropReason::UnknownEtherType),
            ),
        ];
        for (desc, input, expected, outcome) in cases {
            let neigh = NeighTable::new(64);
            let mut b = TestBuffer::new(&input);
            assert_eq!(handle_frame(&mut b, &view(), &neigh, 1), outcome, "{desc}");
            if let Some(exp) = expected {
                assert_eq!(b.data(), &exp[..], "{desc}");
            }
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_handled_without_panic() {
        let neigh = NeighTable::new(64);
        let frames = [
            arp(1, "192.0.2.1", "192.0.2.2"),
            builder::icmp4_echo(
                &builder::FrameSpec {
                    dst: "192.0.2.2".parse().unwrap(),
                    ..builder::FrameSpec::default()
                },
                1,
                1,
            ),
        ];
        for f in frames {
            for n in 0..f.len() {
                let mut b = TestBuffer::new(&f[..n]);
                let _ = handle_frame(&mut b, &view(), &neigh, 1);
            }
        }
    }

    #[test]
    fn arp_for_us_teaches_the_neighbour_table_and_strangers_do_not() {
        let neigh = NeighTable::new(64);
        let mut b = TestBuffer::new(&arp(1, "192.0.2.1", "192.0.2.2"));
        handle_frame(&mut b, &view(), &neigh, 5);
        assert_eq!(
            neigh.resolve("192.0.2.1".parse().unwrap(), 6),
            Resolve::Known {
                mac: CLIENT,
                refresh: false
            }
        );
        let mut b = TestBuffer::new(&arp(1, "192.0.2.3", "192.0.2.9"));
        handle_frame(&mut b, &view(), &neigh, 7);
        assert_eq!(
            neigh.resolve("192.0.2.3".parse().unwrap(), 8),
            Resolve::Request
        );
    }
}
