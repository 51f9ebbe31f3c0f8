//! Packet-level tests of the pipeline: tables of {description, input frame,
//! expected output frame, expected outcome}. Expected frames are built
//! from scratch by the packet builder, so byte equality also proves the
//! incremental checksum updates equal a full recomputation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::buffer::TestBuffer;
use crate::packet::builder::{self, FrameSpec};
use crate::packet::tcp::TcpFlags as WireFlags;
use crate::packet::{EtherType, Icmpv4Packet, Icmpv6Packet};
use crate::service::{OnDown, Persistence, Real, RealState, SchedulerKind, ServiceSpec};

mod down;
mod fast;
mod flows;
mod outbound;
mod props;
mod steer;
mod sync;

const LB: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 2]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 1]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 1]);

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn real_mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x20 + i])
}

const VIP4: &str = "192.0.2.100";
const VIP6: &str = "2001:db8::100";
const CLIENT4: &str = "203.0.113.10"; // via the gateway
const CLIENT6: &str = "2001:db8:ffff::10";

fn port_info() -> PortInfo {
    PortInfo {
        mac: LB,
        addrs: vec![
            (IpAddr::V4(v4("192.0.2.2")), 24),
            (IpAddr::V6(v6("2001:db8::2")), 64),
        ],
        gateway_v4: Some(v4("192.0.2.1")),
        gateway_v6: Some(v6("2001:db8::1")),
        vips: vec![IpAddr::V4(v4(VIP4)), IpAddr::V6(v6(VIP6))],
        mtu: 1500,
    }
}

fn reals4(n: u8, port: u16) -> Vec<Real> {
    (1..=n)
        .map(|i| Real {
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20 + i)),
            port,
            weight: 1,
            state: RealState::Up,
            neigh: 0,
        })
        .collect()
}

fn svc(id: u32, vip: &str, proto: Proto, port: u16, mode: Mode, reals: Vec<Real>) -> ServiceSpec {
    ServiceSpec {
        id,
        name: format!("s{id}"),
        vip: vip.parse().unwrap(),
        proto,
        port,
        mode,
        scheduler: SchedulerKind::Maglev,
        persistence: None,
        reals,
        on_down: OnDown::Reschedule,
        fallback: None,
        new_flow_rate_limit: None,
        timeouts: None,
    }
}

fn snapshot(specs: Vec<ServiceSpec>) -> Snapshot {
    Snapshot::new(1, vec![port_info()], VipTable::build(specs, 1).unwrap())
}

/// A neighbour table that knows the gateways, the reals and nothing else.
fn neigh() -> NeighTable {
    let t = NeighTable::new(256);
    t.set_static(IpAddr::V4(v4("192.0.2.1")), GW_MAC);
    t.set_static(IpAddr::V6(v6("2001:db8::1")), GW_MAC);
    for i in 1..=5u8 {
        t.set_static(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20 + i)), real_mac(i));
        t.set_static(
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                0x20 + u16::from(i),
            )),
            real_mac(i),
        );
    }
    t
}

struct Rig {
    snap: Snapshot,
    neigh: NeighTable,
    tables: Tables,
    reqs: NeighRequests,
    now: u64,
}

impl Rig {
    fn new(specs: Vec<ServiceSpec>) -> Rig {
        let snap = snapshot(specs);
        let tables = Tables::new(65536, &snap);
        Rig {
            snap,
            neigh: neigh(),
            tables,
            reqs: NeighRequests::default(),
            now: 1000,
        }
    }

    /// A rig with a small connection table (cheap to build per case).
    fn small(specs: Vec<ServiceSpec>) -> Rig {
        let snap = snapshot(specs);
        let tables = Tables::new(1024, &snap);
        Rig {
            snap,
            neigh: neigh(),
            tables,
            reqs: NeighRequests::default(),
            now: 1000,
        }
    }

    fn run(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        self.run_on(frame, false)
    }

    /// [`Rig::run`] through the general path alone.
    fn run_general(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        self.run_on(frame, true)
    }

    fn run_on(&mut self, frame: &[u8], general: bool) -> (Outcome, Vec<u8>) {
        let mut b = TestBuffer::new(frame);
        let mut ctx = Ctx {
            snap: &self.snap,
            neigh: &self.neigh,
            now_ms: self.now,
            requests: &mut self.reqs,
            hops: 0,
        };
        let o = if general {
            self.tables.handle_general(&mut b, 0, &mut ctx)
        } else {
            self.tables.handle(&mut b, 0, &mut ctx)
        };
        (o, b.to_vec())
    }

    /// `bufs` through [`Tables::handle_burst`] as one burst from port 0:
    /// the outcomes, and how many frames the burst path forwarded itself.
    fn run_burst(&mut self, bufs: &mut [TestBuffer]) -> ([Outcome; burst::BURST], u64) {
        let mut out = [Outcome::Consumed; burst::BURST];
        let mut ctx = Ctx {
            snap: &self.snap,
            neigh: &self.neigh,
            now_ms: self.now,
            requests: &mut self.reqs,
            hops: 0,
        };
        let before = self.tables.plain_hits;
        self.tables.handle_burst(bufs, 0, &mut ctx, &mut out);
        (out, self.tables.plain_hits - before)
    }

    /// The real (last octet - 20) a forwarded frame went to, by MAC.
    fn real_of(out: &[u8]) -> u8 {
        out[5] - 0x20
    }
}

fn tcp4(src: &str, sport: u16, dst: &str, dport: u16, flags: WireFlags) -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        src_mac: GW_MAC,
        dst_mac: LB,
        src: v4(src),
        dst: v4(dst),
        src_port: sport,
        dst_port: dport,
        tcp_flags: flags,
        payload: b"hello".to_vec(),
        ..FrameSpec::default()
    }
}

fn tcp6(src: &str, sport: u16, dst: &str, dport: u16) -> FrameSpec<Ipv6Addr> {
    FrameSpec {
        src_mac: GW_MAC,
        dst_mac: LB,
        src: v6(src),
        dst: v6(dst),
        src_port: sport,
        dst_port: dport,
        payload: b"hello6".to_vec(),
        ..FrameSpec::default()
    }
}

/// Builds a case's expected output from its input.
type Expect = Box<dyn Fn(&[u8]) -> Vec<u8>>;

#[test]
fn forwarding_table() {
    struct Case {
        desc: &'static str,
        specs: Vec<ServiceSpec>,
        input: Vec<u8>,
        expect: Expect,
        outcome: Outcome,
    }
    let syn = tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN);
    let cases = vec![
        Case {
            desc: "DR: only the MACs change",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))],
            input: builder::tcp4(&syn),
            expect: Box::new(|inp| {
                let mut e = inp.to_vec();
                e[0..6].copy_from_slice(&real_mac(1).0);
                e[6..12].copy_from_slice(&LB.0);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "NAT: VIP:80 becomes real:8080, TTL - 1, checksums updated",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(1, 8080))],
            input: builder::tcp4(&syn),
            expect: Box::new(|_| {
                builder::tcp4(&FrameSpec {
                    src_mac: LB,
                    dst_mac: real_mac(1),
                    dst: v4("192.0.2.21"),
                    dst_port: 8080,
                    ttl: 63,
                    ..tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN)
                })
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "NAT UDP: translated with its checksum",
            specs: vec![svc(2, VIP4, Proto::Udp, 53, Mode::Nat, reals4(1, 5353))],
            input: builder::udp4(&FrameSpec {
                dst_port: 53,
                ..syn.clone()
            }),
            expect: Box::new(|_| {
                builder::udp4(&FrameSpec {
                    src_mac: LB,
                    dst_mac: real_mac(1),
                    dst: v4("192.0.2.21"),
                    dst_port: 5353,
                    ttl: 63,
                    ..tcp4(CLIENT4, 40000, VIP4, 53, WireFlags::SYN)
                })
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "wildcard port service keeps the client's destination port",
            specs: vec![svc(1, VIP4, Proto::Tcp, 0, Mode::Dr, reals4(1, 0))],
            input: builder::tcp4(&FrameSpec {
                dst_port: 4433,
                ..syn.clone()
            }),
            expect: Box::new(|inp| {
                let mut e = inp.to_vec();
                e[0..6].copy_from_slice(&real_mac(1).0);
                e[6..12].copy_from_slice(&LB.0);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "TUN: IPv4-in-IPv4 from the port address to the real",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Tun, reals4(1, 80))],
            input: builder::tcp4(&FrameSpec {
                dont_frag: true,
                ..syn.clone()
            }),
            expect: Box::new(|inp| {
                let inner = &inp[14..];
                let inner_len = u16::from_be_bytes([inner[2], inner[3]]) as usize;
                let mut e = Vec::new();
                e.extend_from_slice(&real_mac(1).0);
                e.extend_from_slice(&LB.0);
                e.extend_from_slice(&[0x08, 0x00]);
                let mut h = [0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((inner_len + 20) as u16).to_be_bytes());
                h[6] = 0x40;
                h[8] = 64;
                h[9] = 4;
                h[12..16].copy_from_slice(&[192, 0, 2, 2]);
                h[16..20].copy_from_slice(&[192, 0, 2, 21]);
                let c = crate::packet::checksum::finish(crate::packet::checksum::sum_bytes(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                e.extend_from_slice(&h);
                e.extend_from_slice(&inner[..inner_len]);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "IPv6 DR",
            specs: vec![svc(
                3,
                VIP6,
                Proto::Tcp,
                80,
                Mode::Dr,
                vec![Real {
                    addr: "2001:db8::21".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    state: RealState::Up,
                    neigh: 0,
                }],
            )],
            input: builder::tcp6(&tcp6(CLIENT6, 40000, VIP6, 80)),
            expect: Box::new(|inp| {
                let mut e = inp.to_vec();
                e[0..6].copy_from_slice(&real_mac(1).0);
                e[6..12].copy_from_slice(&LB.0);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "IPv6 NAT: pseudo-header checksum follows the new address",
            specs: vec![svc(
                3,
                VIP6,
                Proto::Tcp,
                80,
                Mode::Nat,
                vec![Real {
                    addr: "2001:db8::21".parse().unwrap(),
                    port: 8080,
                    weight: 1,
                    state: RealState::Up,
                    neigh: 0,
                }],
            )],
            input: builder::tcp6(&tcp6(CLIENT6, 40000, VIP6, 80)),
            expect: Box::new(|_| {
                builder::tcp6(&FrameSpec {
                    src_mac: LB,
                    dst_mac: real_mac(1),
                    dst: v6("2001:db8::21"),
                    dst_port: 8080,
                    ttl: 63,
                    ..tcp6(CLIENT6, 40000, VIP6, 80)
                })
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "IPv6-in-IPv6 tunnel",
            specs: vec![svc(
                3,
                VIP6,
                Proto::Tcp,
                80,
                Mode::Tun,
                vec![Real {
                    addr: "2001:db8::21".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    state: RealState::Up,
                    neigh: 0,
                }],
            )],
            input: builder::tcp6(&tcp6(CLIENT6, 40000, VIP6, 80)),
            expect: Box::new(|inp| {
                let inner = &inp[14..];
                let inner_len = 40 + u16::from_be_bytes([inner[4], inner[5]]) as usize;
                let mut e = Vec::new();
                e.extend_from_slice(&real_mac(1).0);
                e.extend_from_slice(&LB.0);
                e.extend_from_slice(&[0x86, 0xdd]);
                let mut h = [0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
                h[6] = 41;
                h[7] = 64;
                h[8..24].copy_from_slice(&v6("2001:db8::2").octets());
                h[24..40].copy_from_slice(&v6("2001:db8::21").octets());
                e.extend_from_slice(&h);
                e.extend_from_slice(&inner[..inner_len]);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "TTL 1 through NAT is dropped",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(1, 8080))],
            input: builder::tcp4(&FrameSpec {
                ttl: 1,
                ..syn.clone()
            }),
            expect: Box::new(|inp| inp.to_vec()),
            outcome: Outcome::Dropped(DropReason::TtlExceeded),
        },
        Case {
            desc: "no eligible real: refused with a RST",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, {
                let mut r = reals4(2, 80);
                r[0].weight = 0;
                r[1].state = RealState::Down;
                r
            })],
            input: builder::tcp4(&syn),
            // Refused with a RST (see tests/down.rs for the details).
            expect: Box::new(|_| {
                builder::tcp4(&FrameSpec {
                    src_mac: LB,
                    dst_mac: GW_MAC,
                    tcp_flags: WireFlags::RST | WireFlags::ACK,
                    seq: 0,
                    ack: 1 + 1 + 5,
                    window: 0,
                    ident: 0,
                    payload: Vec::new(),
                    ..tcp4(VIP4, 80, CLIENT4, 40000, WireFlags::RST)
                })
            }),
            outcome: Outcome::Answered,
        },
        Case {
            desc: "a port the VIP does not serve is not ours",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))],
            input: builder::tcp4(&FrameSpec {
                dst_port: 81,
                ..syn.clone()
            }),
            expect: Box::new(|inp| inp.to_vec()),
            outcome: Outcome::Dropped(DropReason::NotOurs),
        },
        Case {
            desc: "ping to a VIP is answered",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))],
            input: builder::icmp4_echo(
                &FrameSpec {
                    src_mac: CLIENT_MAC,
                    ..syn.clone()
                },
                7,
                1,
            ),
            expect: Box::new(|inp| {
                let mut e = inp.to_vec();
                // Compare the meaningful parts below instead.
                e[0..6].copy_from_slice(&CLIENT_MAC.0);
                e
            }),
            outcome: Outcome::Answered,
        },
    ];
    for c in cases {
        let mut rig = Rig::new(c.specs);
        let (o, out) = rig.run(&c.input);
        assert_eq!(o, c.outcome, "{}", c.desc);
        if c.desc.starts_with("ping") {
            let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
            assert_eq!((ip.src(), ip.dst()), (v4(VIP4), v4(CLIENT4)), "{}", c.desc);
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert_eq!(icmp.msg_type(), crate::packet::icmp::ECHO_REPLY);
            assert!(icmp.verify_checksum() && ip.verify_checksum(), "{}", c.desc);
            assert_eq!(&out[0..6], &CLIENT_MAC.0);
            continue;
        }
        assert_eq!(out, (c.expect)(&c.input), "{}", c.desc);
    }
}

#[test]
fn nat_replies_are_translated_back_to_the_vip() {
    let mut rig = Rig::new(vec![svc(
        1,
        VIP4,
        Proto::Tcp,
        80,
        Mode::Nat,
        reals4(1, 8080),
    )]);
    let (o, _) = rig.run(&builder::tcp4(&tcp4(
        CLIENT4,
        40000,
        VIP4,
        80,
        WireFlags::SYN,
    )));
    assert_eq!(o, Outcome::Forward { port: 0 });
    // The real answers the client directly (its gateway is the balancer).
    let reply = FrameSpec {
        src_mac: real_mac(1),
        dst_mac: LB,
        src: v4("192.0.2.21"),
        dst: v4(CLIENT4),
        src_port: 8080,
        dst_port: 40000,
        tcp_flags: WireFlags(WireFlags::SYN.0 | WireFlags::ACK.0),
        payload: b"world".to_vec(),
        ..FrameSpec::default()
    };
    let (o, out) = rig.run(&builder::tcp4(&reply));
    assert_eq!(o, Outcome::Forward { port: 0 });
    let expected = builder::tcp4(&FrameSpec {
        src_mac: LB,
        dst_mac: GW_MAC, // the client is off-link: via the gateway
        src: v4(VIP4),
        src_port: 80,
        ttl: 63,
        ..reply.clone()
    });
    assert_eq!(out, expected);
    assert_eq!(rig.tables.counters[0].packets_out, 1);
    // A reply for a flow the balancer never saw is not ours.
    let stray = FrameSpec {
        dst_port: 40001,
        ..reply
    };
    assert_eq!(
        rig.run(&builder::tcp4(&stray)).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
}

#[test]
fn a_packet_too_big_to_tunnel_gets_fragmentation_needed() {
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Tun, reals4(1, 80))]);
    let big = FrameSpec {
        dont_frag: true,
        payload: vec![7u8; 1460],
        ..tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK)
    };
    let input = builder::tcp4(&big);
    let (o, out) = rig.run(&input);
    assert_eq!(o, Outcome::Answered);
    assert_eq!(&out[0..6], &GW_MAC.0, "back to the sender's MAC");
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol()),
        (v4(VIP4), v4(CLIENT4), 1)
    );
    assert!(usize::from(ip.total_len()) <= 576);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 4));
    assert_eq!(icmp.next_hop_mtu(), Some(1480));
    assert!(icmp.verify_checksum());
    assert_eq!(
        &icmp.data()[..20],
        &input[14..34],
        "quotes the original header"
    );
    // Without DF, it is tunnelled (the outer packet may be fragmented).
    let (o, _) = rig.run(&builder::tcp4(&FrameSpec {
        dont_frag: false,
        ..big
    }));
    assert_eq!(o, Outcome::Forward { port: 0 });
}

#[test]
fn arp_and_nd_for_vips_are_answered_by_the_data_plane() {
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))]);
    let ask = |target: &str| {
        builder::arp_request(&FrameSpec {
            src_mac: CLIENT_MAC,
            src: v4("192.0.2.9"),
            dst: v4(target),
            ..FrameSpec::default()
        })
    };
    for (target, want) in [
        (VIP4, Outcome::Answered),
        ("192.0.2.2", Outcome::Answered),
        ("192.0.2.77", Outcome::Dropped(DropReason::ArpNotOurs)),
    ] {
        let (o, out) = rig.run(&ask(target));
        assert_eq!(o, want, "ARP for {target}");
        if o == Outcome::Answered {
            let arp = crate::packet::ArpPacket::new_checked(&out[14..]).unwrap();
            assert_eq!(arp.sender_hw_addr(), LB);
            assert_eq!(arp.sender_proto_addr(), v4(target));
            assert_eq!(&out[0..6], &CLIENT_MAC.0);
        }
    }
    // Neighbour solicitation for the IPv6 VIP: answered with an NA.
    let ns = builder::neighbour_solicitation(&FrameSpec {
        src_mac: CLIENT_MAC,
        src: v6("2001:db8::9"),
        dst: v6(VIP6),
        ..FrameSpec::default()
    });
    let (o, out) = rig.run(&ns);
    assert_eq!(o, Outcome::Answered);
    let ip = Ipv6Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), ip.hop_limit()),
        (v6(VIP6), v6("2001:db8::9"), 255)
    );
    let up = ip.upper_layer().unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.upper_payload(&up)).unwrap();
    assert_eq!(icmp.msg_type(), crate::packet::icmpv6::NEIGHBOR_ADVERT);
    assert_eq!(icmp.target_addr(), Some(v6(VIP6)));
    assert_eq!(icmp.target_lladdr(), Some(LB));
    assert!(icmp.na_flags().is_some_and(|f| f.is_solicited()));
    assert!(icmp.verify_checksum(ip.pseudo_header(&up)));
    assert_eq!(&out[0..6], &CLIENT_MAC.0);
    // For the port's own IPv6 address the kernel answers.
    let ns_self = builder::neighbour_solicitation(&FrameSpec {
        src_mac: CLIENT_MAC,
        src: v6("2001:db8::9"),
        dst: v6("2001:db8::2"),
        ..FrameSpec::default()
    });
    assert_eq!(rig.run(&ns_self).0, Outcome::ToKernel);
}

#[test]
fn own_addresses_go_to_the_kernel_and_strangers_are_dropped() {
    let mut rig = Rig::new(vec![]);
    let to = |dst: &str| {
        builder::icmp4_echo(
            &FrameSpec {
                dst: v4(dst),
                ..FrameSpec::default()
            },
            1,
            1,
        )
    };
    assert_eq!(rig.run(&to("192.0.2.2")).0, Outcome::ToKernel);
    assert_eq!(
        rig.run(&to("192.0.2.77")).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
    let mut tagged = to("192.0.2.2");
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(rig.run(&tagged).0, Outcome::Dropped(DropReason::VlanTagged));
    let mut bad_ihl = to("192.0.2.2");
    bad_ihl[14] = 0x44;
    assert_eq!(rig.run(&bad_ihl).0, Outcome::Dropped(DropReason::Malformed));
    let mut other = vec![0u8; 60];
    other[6..12].copy_from_slice(&GW_MAC.0);
    other[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(
        rig.run(&other).0,
        Outcome::Dropped(DropReason::UnknownEtherType)
    );
    // IPv6: all-nodes goes up, another node's solicited group does not.
    let m = |dst: &str| {
        builder::icmp6_echo(
            &FrameSpec {
                dst: v6(dst),
                ..FrameSpec::default()
            },
            1,
            1,
        )
    };
    assert_eq!(rig.run(&m("ff02::1")).0, Outcome::ToKernel);
    assert_eq!(rig.run(&m("ff02::1:ff00:2")).0, Outcome::ToKernel);
    // VRRP adverts to ff02::12 and 224.0.0.18 go up to the control plane.
    let vrrp6 = builder::ip6_raw(
        &FrameSpec {
            dst: v6("ff02::12"),
            ttl: 255,
            payload: vec![0x31, 51, 100, 1, 0, 100, 0, 0],
            ..FrameSpec::default()
        },
        112,
    );
    assert_eq!(rig.run(&vrrp6).0, Outcome::ToKernel);
    let vrrp4 = builder::ip4_raw(
        &FrameSpec {
            dst: "224.0.0.18".parse().unwrap(),
            ttl: 255,
            payload: vec![0x31, 51, 100, 1, 0, 100, 0, 0],
            ..FrameSpec::default()
        },
        112,
    );
    assert_eq!(rig.run(&vrrp4).0, Outcome::ToKernel);
    let other6 = builder::ip6_raw(
        &FrameSpec {
            dst: v6("ff02::13"),
            payload: vec![0; 8],
            ..FrameSpec::default()
        },
        112,
    );
    assert_eq!(rig.run(&other6).0, Outcome::Dropped(DropReason::NotOurs));
    assert_eq!(
        rig.run(&m("ff02::1:ff00:99")).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
}

#[test]
fn martian_sources_and_link_broadcast_unicast_are_dropped() {
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(2, 80))]);
    let ok = tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN);
    assert_eq!(rig.run(&builder::tcp4(&ok)).0, Outcome::Forward { port: 0 });
    let martian = Outcome::Dropped(DropReason::Martian);
    for src in [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.255", // the connected prefix's broadcast
        "192.0.2.2",   // our own address
        VIP4,          // land: source = destination
    ] {
        let f = builder::tcp4(&FrameSpec {
            src: v4(src),
            ..ok.clone()
        });
        assert_eq!(rig.run(&f).0, martian, "source {src}");
    }
    for mac in [[0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], [0; 6]] {
        let f = builder::tcp4(&FrameSpec {
            src_mac: MacAddr(mac),
            ..ok.clone()
        });
        assert_eq!(rig.run(&f).0, martian, "source MAC {mac:?}");
    }
    // A unicast destination in a broadcast frame; a broadcast one is fine.
    let f = builder::tcp4(&FrameSpec {
        dst_mac: MacAddr([0xff; 6]),
        ..ok.clone()
    });
    assert_eq!(rig.run(&f).0, martian);
    let f = builder::udp4(&FrameSpec {
        dst_mac: MacAddr([0xff; 6]),
        dst: v4("192.0.2.255"),
        ..ok.clone()
    });
    assert_eq!(rig.run(&f).0, Outcome::Dropped(DropReason::NotOurs));
    let six = tcp6(CLIENT6, 1, VIP6, 80);
    for src in ["ff02::1", "::1", "::", "2001:db8::2"] {
        let f = builder::tcp6(&FrameSpec {
            src: v6(src),
            ..six.clone()
        });
        assert_eq!(rig.run(&f).0, martian, "source {src}");
    }
}

#[test]
fn corrupt_ip_and_tcp_headers_are_dropped_as_malformed() {
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(2, 80))]);
    let good = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    assert_eq!(rig.run(&good).0, Outcome::Forward { port: 0 });
    let malformed = Outcome::Dropped(DropReason::Malformed);
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    assert_eq!(rig.run(&bad_sum).0, malformed);
    // Total length 39: the TCP header ends past the IP packet (the frame
    // still holds its bytes, as Ethernet padding would).
    let mut short = good.clone();
    short[16..18].copy_from_slice(&39u16.to_be_bytes());
    let sum = crate::packet::checksum::ipv4_header_checksum(&short[14..34]);
    short[24..26].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(rig.run(&short).0, malformed);
    // Of the 256 flag bytes, those no TCP stack sends are dropped.
    let mut valid = 0;
    for flags in 0..=255u8 {
        let mut f = good.clone();
        f[34 + 13] = flags;
        match rig.run(&f).0 {
            Outcome::Forward { .. } => valid += 1,
            Outcome::Dropped(DropReason::BadTcpFlags) => {}
            o => panic!("flags {flags:#04x}: {o:?}"),
        }
    }
    // 9 combinations of FIN/SYN/RST/ACK/URG, each with any PSH/ECE/CWR.
    assert_eq!(valid, 9 * 8);
    for doff in [0u8, 4, 15] {
        let mut f = good.clone();
        f[34 + 12] = doff << 4;
        assert_eq!(rig.run(&f).0, malformed, "data offset {doff}");
    }
}

#[test]
fn new_flows_over_the_rate_limit_are_dropped_and_established_ones_pass() {
    let mut spec = svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(2, 80));
    spec.new_flow_rate_limit = Some(5);
    let mut rig = Rig::new(vec![spec]);
    let syn = |port: u16| builder::tcp4(&tcp4(CLIENT4, port, VIP4, 80, WireFlags::SYN));
    let outcomes: Vec<Outcome> = (0..10).map(|p| rig.run(&syn(40000 + p)).0).collect();
    let ok = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Forward { .. }))
        .count();
    assert_eq!(ok, 5, "{outcomes:?}");
    assert_eq!(
        outcomes[9],
        Outcome::Dropped(DropReason::RateLimited),
        "{outcomes:?}"
    );
    // The admitted flows keep flowing.
    let ack = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK));
    for _ in 0..20 {
        assert_eq!(rig.run(&ack).0, Outcome::Forward { port: 0 });
    }
    // 400 ms later: two more new flows.
    rig.now += 400;
    let ok = (20..30)
        .filter(|p| matches!(rig.run(&syn(40000 + p)).0, Outcome::Forward { .. }))
        .count();
    assert_eq!(ok, 2);
}

#[test]
fn every_prefix_of_every_frame_is_handled_without_panic() {
    let specs = vec![
        svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(2, 8080)),
        svc(2, VIP4, Proto::Udp, 53, Mode::Tun, reals4(2, 53)),
    ];
    let mut rig = Rig::new(specs);
    let syn = tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN);
    let frames = vec![
        builder::tcp4(&syn),
        builder::udp4(&FrameSpec {
            dst_port: 53,
            ..syn.clone()
        }),
        builder::tcp6(&tcp6(CLIENT6, 1, VIP6, 80)),
        builder::icmp4_echo(&syn, 1, 1),
        builder::arp_request(&FrameSpec::default()),
        builder::neighbour_solicitation(&FrameSpec {
            dst: v6(VIP6),
            ..FrameSpec::default()
        }),
    ];
    for f in frames {
        for n in 0..=f.len() {
            let _ = rig.run(&f[..n]);
        }
    }
}

#[test]
fn later_fragments_without_state_are_dropped_not_misrouted() {
    let mut rig = Rig::new(vec![svc(2, VIP4, Proto::Udp, 53, Mode::Dr, reals4(2, 53))]);
    let dgram = builder::udp4(&FrameSpec {
        dst_port: 53,
        payload: vec![1; 3000],
        ..tcp4(CLIENT4, 1, VIP4, 53, WireFlags::SYN)
    });
    let frags = builder::ipv4_fragments(&dgram, 1500).unwrap();
    assert!(frags.len() >= 2);
    assert_eq!(rig.run(&frags[1]).0, Outcome::Dropped(DropReason::Fragment));
}

#[test]
fn weights_shape_the_split_and_weight_zero_gets_nothing() {
    let mut reals = reals4(3, 80);
    reals[0].weight = 3;
    reals[1].weight = 1;
    reals[2].weight = 0;
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals)]);
    let mut hits = [0u32; 4];
    for i in 0..4000u32 {
        let client = Ipv4Addr::from(0xCB00_7100 + (i % 200));
        let f = builder::tcp4(&tcp4(
            &client.to_string(),
            10000 + (i / 200) as u16,
            VIP4,
            80,
            WireFlags::SYN,
        ));
        let (o, out) = rig.run(&f);
        assert_eq!(o, Outcome::Forward { port: 0 });
        hits[usize::from(Rig::real_of(&out))] += 1;
    }
    assert_eq!(hits[3], 0, "weight 0 took flows: {hits:?}");
    let ratio = f64::from(hits[1]) / f64::from(hits[2]);
    assert!((2.5..3.5).contains(&ratio), "3:1 weights gave {hits:?}");
    assert_eq!(rig.tables.active[0].iter().sum::<u32>(), 4000);
}

#[test]
fn persistence_keeps_a_client_group_on_one_real() {
    let mut spec = svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(5, 80));
    spec.persistence = Some(Persistence {
        timeout_secs: 300,
        v4_prefix: 24,
        v6_prefix: 64,
    });
    let mut rig = Rig::new(vec![spec]);
    let mut seen = std::collections::HashSet::new();
    for i in 0..100u16 {
        let client = if i % 2 == 0 {
            "203.0.113.10"
        } else {
            "203.0.113.77"
        };
        let (o, out) = rig.run(&builder::tcp4(&tcp4(
            client,
            20000 + i,
            VIP4,
            80,
            WireFlags::SYN,
        )));
        assert_eq!(o, Outcome::Forward { port: 0 });
        seen.insert(Rig::real_of(&out));
    }
    assert_eq!(seen.len(), 1, "one /24 went to {seen:?}");
}

#[test]
fn established_flows_keep_their_real_across_snapshots_and_follow_admin_states() {
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(2, 80))]);
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    let ack = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK));
    let (_, out) = rig.run(&syn);
    let first = Rig::real_of(&out);

    let swap = |rig: &mut Rig, reals: Vec<Real>, generation: u64| {
        let new = Snapshot::new(
            generation,
            vec![port_info()],
            VipTable::build(
                vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals)],
                generation,
            )
            .unwrap(),
        );
        rig.tables.adopt(&rig.snap, &new);
        rig.snap = new;
    };
    // Add three reals: the flow stays where it is.
    swap(&mut rig, reals4(5, 80), 2);
    for _ in 0..10 {
        let (o, out) = rig.run(&ack);
        assert_eq!(o, Outcome::Forward { port: 0 });
        assert_eq!(Rig::real_of(&out), first);
    }
    // Drain it: established flows continue.
    let mut r = reals4(5, 80);
    r[usize::from(first) - 1].state = RealState::Drain;
    swap(&mut rig, r.clone(), 3);
    assert_eq!(Rig::real_of(&rig.run(&ack).1), first);
    // New flows avoid it.
    for p in 0..50 {
        let (_, out) = rig.run(&builder::tcp4(&tcp4(
            CLIENT4,
            41000 + p,
            VIP4,
            80,
            WireFlags::SYN,
        )));
        assert_ne!(Rig::real_of(&out), first);
    }
    // Down: the flow is rescheduled on its next packet.
    r[usize::from(first) - 1].state = RealState::Down;
    swap(&mut rig, r, 4);
    let (o, out) = rig.run(&ack);
    assert_eq!(o, Outcome::Forward { port: 0 });
    assert_ne!(Rig::real_of(&out), first);
}

#[test]
fn an_unresolved_next_hop_is_asked_for_and_counted() {
    let mut reals = reals4(1, 80);
    reals[0].addr = "192.0.2.99".parse().unwrap(); // no static MAC
    let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals)]);
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    assert_eq!(rig.run(&syn).0, Outcome::Dropped(DropReason::NeighMiss));
    let asked: Vec<_> = rig.reqs.drain().collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].next_hop, "192.0.2.99".parse::<IpAddr>().unwrap());
    assert_eq!(asked[0].src, "192.0.2.2".parse::<IpAddr>().unwrap());
    // Once the real answers ARP, the flow goes through.
    rig.neigh
        .learn("192.0.2.99".parse().unwrap(), real_mac(5), rig.now, true);
    assert_eq!(rig.run(&syn).0, Outcome::Forward { port: 0 });
}

#[test]
fn flows_expire_and_release_their_real() {
    let mut rig = Rig::new(vec![svc(2, VIP4, Proto::Udp, 53, Mode::Dr, reals4(1, 53))]);
    let q = builder::udp4(&FrameSpec {
        dst_port: 53,
        ..tcp4(CLIENT4, 5000, VIP4, 53, WireFlags::SYN)
    });
    rig.run(&q);
    assert_eq!(rig.tables.active[0][0], 1);
    rig.now += 301_000; // past the UDP timeout
    let snap = &rig.snap;
    let mut freed = 0;
    for _ in 0..100 {
        freed += rig.tables.sweep(snap, rig.now, 4096);
    }
    assert_eq!(freed, 1);
    assert_eq!(rig.tables.active[0][0], 0);
    assert_eq!(EtherType::IPV4, EtherType(0x0800));
}

/// Found by the `pipeline` fuzzer (seed `tcp4_tun8080`): on a VIP of every
/// port, whose reals have no port, each packet of an established flow was
/// taken for a flow whose real had gone, rescheduled as a new flow, and
/// left its real's active count behind (RR sent it to another real).
#[test]
fn flows_to_reals_without_a_port_stay_put_and_release_their_count() {
    for mode in [Mode::Dr, Mode::Nat, Mode::Tun] {
        let mut s = svc(4, VIP4, Proto::Tcp, 0, mode, reals4(3, 0));
        s.scheduler = SchedulerKind::Rr;
        let mut rig = Rig::small(vec![s]);
        let mut reals = Vec::new();
        for flags in [
            WireFlags::SYN,
            WireFlags::ACK,
            WireFlags::FIN | WireFlags::ACK,
        ] {
            let f = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 8080, flags));
            let (o, out) = rig.run(&f);
            assert_eq!(o, Outcome::Forward { port: 0 }, "{mode:?}");
            reals.push(Rig::real_of(&out));
        }
        assert!(reals.iter().all(|r| *r == reals[0]), "{mode:?}: {reals:?}");
        assert_eq!(rig.tables.counters[0].new_flows, 1, "{mode:?}");
        assert_eq!(rig.tables.active[0].iter().sum::<u32>(), 1, "{mode:?}");
        rig.now += 3_600_000;
        rig.tables.sweep(&rig.snap, rig.now, 4096);
        assert_eq!(rig.tables.conn.len(), 0, "{mode:?}");
        assert_eq!(rig.tables.active[0], vec![0; 3], "{mode:?}");
    }
}

/// Found by the `pipeline` fuzzer: a ping to a VIP with identifier 0,
/// sequence 0 and no data got a reply whose checksum (0x0000) no client
/// accepts.
#[test]
fn an_all_zero_ping_to_a_vip_gets_a_valid_reply() {
    let mut rig = Rig::small(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))]);
    let spec = FrameSpec {
        payload: Vec::new(),
        ..tcp4(CLIENT4, 0, VIP4, 0, WireFlags::NONE)
    };
    let ping = builder::icmp4_echo(&spec, 0, 0);
    let (o, out) = rig.run(&ping);
    assert_eq!(o, Outcome::Answered);
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (v4(VIP4), v4(CLIENT4)));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), crate::packet::icmp::ECHO_REPLY);
    assert!(icmp.verify_checksum(), "checksum {:#06x}", icmp.checksum());
}
