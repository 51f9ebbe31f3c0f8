//! Table tests of ICMP errors about flows, fragments and hairpin flows.
//! As in the parent module, expected frames are built from scratch by the
//! packet builder, so byte equality also proves every incremental
//! checksum update equal to a full recomputation.

use super::*;
use crate::packet::{TcpPacket, UdpPacket};

const ROUTER4: &str = "198.51.100.1";
const ROUTER6: &str = "2001:db8:ffff::1";
const LB4: &str = "192.0.2.2";
const REAL1: &str = "192.0.2.21";
const REAL1_6: &str = "2001:db8::21";

fn real6(i: u16, port: u16) -> Real {
    Real {
        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + i)),
        port,
        weight: 1,
        state: RealState::Up,
        neigh: 0,
    }
}

/// The IP packet of a frame, without Ethernet header or padding.
pub(super) fn ip_of(frame: &[u8]) -> &[u8] {
    let len = match frame[14] >> 4 {
        4 => usize::from(u16::from_be_bytes([frame[16], frame[17]])),
        _ => 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]])),
    };
    &frame[14..14 + len]
}

/// Whether every checksum of an Ethernet/IPv4|IPv6/TCP|UDP|ICMP frame
/// verifies by full recomputation.
pub(super) fn checksums_ok(frame: &[u8]) -> bool {
    let ip = ip_of(frame);
    if ip[0] >> 4 == 4 {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        let ph = p.pseudo_header();
        p.verify_checksum()
            && match p.protocol() {
                ip_proto::TCP => TcpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(ph),
                ip_proto::UDP => UdpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum_v4(ph),
                ip_proto::ICMP => Icmpv4Packet::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(),
                _ => true,
            }
    } else {
        let p = Ipv6Packet::new_checked(ip).unwrap();
        let up = p.upper_layer().unwrap();
        let ph = p.pseudo_header(&up);
        let l4 = p.upper_payload(&up);
        match up.protocol {
            ip_proto::TCP => TcpPacket::new_checked(l4).unwrap().verify_checksum(ph),
            ip_proto::UDP => UdpPacket::new_checked(l4).unwrap().verify_checksum_v6(ph),
            ip_proto::ICMPV6 => Icmpv6Packet::new_checked(l4).unwrap().verify_checksum(ph),
            _ => true,
        }
    }
}

/// Reassembles IPv4 fragment frames (any order) into the IP datagram.
fn reassemble_v4(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut header = None;
    let mut parts = Vec::new();
    for f in frames {
        let ip = Ipv4Packet::new_checked(ip_of(f)).unwrap();
        assert!(ip.verify_checksum(), "fragment header checksum");
        if ip.frag_offset() == 0 {
            header = Some(ip.header().to_vec());
        }
        parts.push((usize::from(ip.frag_offset()), ip.payload().to_vec()));
    }
    parts.sort();
    let mut out = header.expect("first fragment");
    let hl = out.len();
    for (off, p) in parts {
        assert_eq!(off, out.len() - hl, "fragments contiguous");
        out.extend_from_slice(&p);
    }
    let total = out.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
    ip.set_total_len(total);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.fill_checksum();
    out
}

/// Reassembles IPv6 fragment frames (Fragment header right after the
/// fixed header, as the builder makes them) into the IP datagram.
fn reassemble_v6(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = None;
    let mut parts = Vec::new();
    for f in frames {
        let ip = ip_of(f);
        assert_eq!(ip[6], ip_proto::FRAGMENT);
        let fo = u16::from_be_bytes([ip[42], ip[43]]);
        let off = usize::from(fo & 0xfff8);
        if off == 0 {
            let mut h = ip[..40].to_vec();
            h[6] = ip[40];
            fixed = Some(h);
        }
        parts.push((off, ip[48..].to_vec()));
    }
    parts.sort();
    let mut out = fixed.expect("first fragment");
    for (off, p) in parts {
        assert_eq!(off, out.len() - 40, "fragments contiguous");
        out.extend_from_slice(&p);
    }
    let plen = (out.len() - 40) as u16;
    out[4..6].copy_from_slice(&plen.to_be_bytes());
    out
}

fn nat_tcp4() -> ServiceSpec {
    svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(1, 8080))
}

fn nat_udp4() -> ServiceSpec {
    svc(2, VIP4, Proto::Udp, 53, Mode::Nat, reals4(1, 5353))
}

fn udp4s(src: &str, sport: u16, dst: &str, dport: u16, payload: Vec<u8>) -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        payload,
        ..tcp4(src, sport, dst, dport, WireFlags::ACK)
    }
}

/// The reply `VIP:80 -> client:40000` as the client sees it (DR: as the
/// real sent it; NAT: as the balancer translated it).
fn reply_seen_by_client4() -> Vec<u8> {
    builder::tcp4(&FrameSpec {
        ttl: 63,
        payload: vec![0x5a; 100],
        tcp_flags: WireFlags::ACK,
        ..tcp4(VIP4, 80, CLIENT4, 40000, WireFlags::ACK)
    })
}

/// The same reply as the NAT real sent it (TTL as the client saw it).
fn reply_sent_by_real4() -> Vec<u8> {
    builder::tcp4(&FrameSpec {
        ttl: 63,
        payload: vec![0x5a; 100],
        ..tcp4(REAL1, 8080, CLIENT4, 40000, WireFlags::ACK)
    })
}

fn frag_needed4(from_mac: MacAddr, src: &str, dst: &str, ttl: u8, quote: &[u8]) -> Vec<u8> {
    builder::icmp4_error(
        &FrameSpec {
            src_mac: from_mac,
            dst_mac: LB,
            src: v4(src),
            dst: v4(dst),
            ttl,
            ..FrameSpec::default()
        },
        3,
        4,
        1400,
        quote,
    )
}

#[test]
fn icmp_errors_about_flows_table() {
    struct Case {
        desc: &'static str,
        specs: Vec<ServiceSpec>,
        /// Frames that set up the flow first (each must be forwarded).
        setup: Vec<Vec<u8>>,
        input: Vec<u8>,
        expect: Vec<u8>,
        outcome: Outcome,
    }
    let syn4 = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    let seen = reply_seen_by_client4();
    let sent = reply_sent_by_real4();
    let with_macs = |f: &[u8], dst: MacAddr| {
        let mut e = f.to_vec();
        e[0..6].copy_from_slice(&dst.0);
        e[6..12].copy_from_slice(&LB.0);
        e
    };
    let dr_err = frag_needed4(GW_MAC, ROUTER4, VIP4, 60, ip_of(&seen));
    let tun_err = dr_err.clone();
    // IPv6: a packet too big about a NAT flow.
    let syn6 = builder::tcp6(&tcp6(CLIENT6, 40000, VIP6, 80));
    let seen6 = builder::tcp6(&FrameSpec {
        ttl: 63,
        payload: vec![7; 1300],
        ..tcp6(VIP6, 80, CLIENT6, 40000)
    });
    let sent6 = builder::tcp6(&FrameSpec {
        ttl: 63,
        payload: vec![7; 1300],
        ..tcp6(REAL1_6, 8080, CLIENT6, 40000)
    });
    let ptb = |src_mac, dst_mac, dst: &str, ttl, quote: &[u8]| {
        builder::icmp6_error(
            &FrameSpec {
                src_mac,
                dst_mac,
                src: v6(ROUTER6),
                dst: v6(dst),
                ttl,
                ..FrameSpec::default()
            },
            2,
            0,
            1400,
            quote,
        )
    };
    // What ICMPv6 may quote: as much as fits in 1280 bytes.
    let q6 = &ip_of(&seen6)[..1280 - 48];
    let q6_sent = &ip_of(&sent6)[..1280 - 48];
    // UDP: the real's port unreachable toward the client.
    let udp_q = builder::udp4(&udp4s(CLIENT4, 5000, VIP4, 53, b"query".to_vec()));
    let udp_fwd = builder::udp4(&FrameSpec {
        ttl: 63,
        ..udp4s(CLIENT4, 5000, REAL1, 5353, b"query".to_vec())
    });
    let udp_orig = builder::udp4(&FrameSpec {
        ttl: 63,
        ..udp4s(CLIENT4, 5000, VIP4, 53, b"query".to_vec())
    });
    let port_unreach = |src_mac, dst_mac, src: &str, dst: &str, ttl, quote: &[u8]| {
        builder::icmp4_error(
            &FrameSpec {
                src_mac,
                dst_mac,
                src: v4(src),
                dst: v4(dst),
                ttl,
                ..FrameSpec::default()
            },
            3,
            3,
            0,
            quote,
        )
    };
    let cases = vec![
        Case {
            desc: "DR: frag-needed to the VIP goes to the flow's real by MAC",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(3, 80))],
            setup: vec![syn4.clone()],
            input: dr_err.clone(),
            expect: Vec::new(), // MACs of the flow's real: checked below
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "TUN: frag-needed is encapsulated to the flow's real",
            specs: vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Tun, reals4(1, 80))],
            setup: vec![syn4.clone()],
            input: tun_err.clone(),
            expect: {
                let inner = ip_of(&tun_err);
                let mut e = Vec::new();
                e.extend_from_slice(&real_mac(1).0);
                e.extend_from_slice(&LB.0);
                e.extend_from_slice(&[0x08, 0x00]);
                let mut h = [0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((inner.len() + 20) as u16).to_be_bytes());
                h[8] = 64;
                h[9] = 4;
                h[12..16].copy_from_slice(&v4(LB4).octets());
                h[16..20].copy_from_slice(&v4(REAL1).octets());
                let c = crate::packet::checksum::ipv4_header_checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                e.extend_from_slice(&h);
                e.extend_from_slice(inner);
                e
            },
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "NAT: whole quote translated back to real:8080 (IP, TCP and ICMP checksums)",
            specs: vec![nat_tcp4()],
            setup: vec![syn4.clone()],
            input: frag_needed4(GW_MAC, ROUTER4, VIP4, 60, ip_of(&seen)),
            expect: with_macs(
                &frag_needed4(GW_MAC, ROUTER4, REAL1, 59, ip_of(&sent)),
                real_mac(1),
            ),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "NAT: an RFC 792 quote (IP header + 8 bytes) still gets its port translated",
            specs: vec![nat_tcp4()],
            setup: vec![syn4.clone()],
            input: frag_needed4(GW_MAC, ROUTER4, VIP4, 60, &ip_of(&seen)[..28]),
            expect: with_macs(
                &frag_needed4(GW_MAC, ROUTER4, REAL1, 59, &ip_of(&sent)[..28]),
                real_mac(1),
            ),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "NAT IPv6: packet too big, ICMPv6 pseudo-header and quote updated",
            specs: vec![svc(
                3,
                VIP6,
                Proto::Tcp,
                80,
                Mode::Nat,
                vec![real6(1, 8080)],
            )],
            setup: vec![syn6.clone()],
            input: ptb(GW_MAC, LB, VIP6, 60, q6),
            expect: ptb(LB, real_mac(1), REAL1_6, 59, q6_sent),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "an error about a flow the balancer does not know is dropped",
            specs: vec![nat_tcp4()],
            setup: vec![],
            input: frag_needed4(GW_MAC, ROUTER4, VIP4, 60, ip_of(&seen)),
            expect: Vec::new(),
            outcome: Outcome::Dropped(DropReason::IcmpNoFlow),
        },
        Case {
            desc: "an error quoting another address than the VIP it was sent to is dropped",
            specs: vec![nat_tcp4()],
            setup: vec![syn4.clone()],
            input: frag_needed4(GW_MAC, ROUTER4, VIP4, 60, ip_of(&sent)),
            expect: Vec::new(),
            outcome: Outcome::Dropped(DropReason::IcmpNoFlow),
        },
        Case {
            desc: "a redirect to a VIP is not forwarded",
            specs: vec![nat_tcp4()],
            setup: vec![syn4.clone()],
            input: builder::icmp4_error(
                &FrameSpec {
                    src: v4(ROUTER4),
                    dst: v4(VIP4),
                    ..FrameSpec::default()
                },
                5,
                1,
                0,
                ip_of(&seen),
            ),
            expect: Vec::new(),
            outcome: Outcome::Dropped(DropReason::Unsupported),
        },
        Case {
            desc: "NAT: the real's port unreachable toward the client is translated back",
            specs: vec![nat_udp4()],
            setup: vec![udp_q.clone()],
            input: port_unreach(real_mac(1), LB, REAL1, CLIENT4, 64, ip_of(&udp_fwd)),
            expect: port_unreach(LB, GW_MAC, VIP4, CLIENT4, 63, ip_of(&udp_orig)),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "an error from a real about a flow the balancer does not know is not ours",
            specs: vec![nat_udp4()],
            setup: vec![],
            input: port_unreach(real_mac(1), LB, REAL1, CLIENT4, 64, ip_of(&udp_fwd)),
            expect: Vec::new(),
            outcome: Outcome::Dropped(DropReason::NotOurs),
        },
    ];
    for c in cases {
        let mut rig = Rig::new(c.specs);
        for s in &c.setup {
            assert_eq!(
                rig.run(s).0,
                Outcome::Forward { port: 0 },
                "{}: setup",
                c.desc
            );
        }
        let flow_real = if c.setup.is_empty() {
            None
        } else {
            Some(Rig::real_of(&rig.run(&c.setup[0]).1))
        };
        let (o, out) = rig.run(&c.input);
        assert_eq!(o, c.outcome, "{}", c.desc);
        if c.desc.starts_with("DR") {
            let expect = with_macs(&c.input, real_mac(flow_real.unwrap()));
            assert_eq!(out, expect, "{}", c.desc);
        } else if matches!(o, Outcome::Forward { .. }) {
            assert_eq!(out, c.expect, "{}", c.desc);
            assert!(checksums_ok(&out), "{}", c.desc);
        }
    }
}

#[test]
fn icmp_errors_about_flows_are_counted_and_do_not_refresh_them() {
    let mut rig = Rig::new(vec![nat_tcp4()]);
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    rig.run(&syn);
    let before = rig.tables.counters[0].packets_in;
    let err = frag_needed4(GW_MAC, ROUTER4, VIP4, 60, ip_of(&reply_seen_by_client4()));
    rig.now += 29_000; // SYN_RECV lasts 30 s
    assert_eq!(rig.run(&err).0, Outcome::Forward { port: 0 });
    assert_eq!(rig.tables.counters[0].packets_in, before + 1);
    rig.now += 2_000;
    assert_eq!(
        rig.run(&err).0,
        Outcome::Dropped(DropReason::IcmpNoFlow),
        "the error did not keep the half-open flow alive"
    );
    assert_eq!(rig.tables.active[0][0], 0, "expired flow released");
}

/// Runs every fragment and returns the outputs; all must be forwarded.
fn run_all(rig: &mut Rig, frags: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frags
        .iter()
        .map(|f| {
            let (o, out) = rig.run(f);
            assert_eq!(o, Outcome::Forward { port: 0 });
            out
        })
        .collect()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn nat_fragments_reassemble_at_the_real_with_a_valid_l4_checksum() {
    // IPv4 UDP: the port and pseudo-header change is carried by the first
    // fragment's checksum, which covers the whole datagram.
    let mut rig = Rig::new(vec![nat_udp4()]);
    let spec = FrameSpec {
        ident: 0x1234,
        ..udp4s(CLIENT4, 5000, VIP4, 53, pattern(3000))
    };
    let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
    assert_eq!(frags.len(), 3);
    let outs = run_all(&mut rig, &frags);
    assert!(outs.iter().all(|o| o[0..6] == real_mac(1).0));
    for (i, o) in outs.iter().enumerate().skip(1) {
        // Later fragments: the destination address (and TTL) only.
        let mut e = frags[i].clone();
        e[0..6].copy_from_slice(&real_mac(1).0);
        e[6..12].copy_from_slice(&LB.0);
        e[14 + 8] = 63;
        e[14 + 16..14 + 20].copy_from_slice(&v4(REAL1).octets());
        let mut ip = Ipv4Packet::new_unchecked(&mut e[14..]);
        ip.fill_checksum();
        assert_eq!(o, &e, "fragment {i}");
    }
    let got = reassemble_v4(&outs);
    let want = builder::udp4(&FrameSpec {
        ttl: 63,
        dst: v4(REAL1),
        dst_port: 5353,
        ..spec.clone()
    });
    assert_eq!(got, ip_of(&want));
    let ip = Ipv4Packet::new_checked(&got[..]).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum_v4(ip.pseudo_header()), "full recompute");
    assert_eq!(rig.tables.frags().counters().completed, 1);
    assert!(rig.tables.frags().is_empty());

    // IPv6 TCP, through the Fragment header.
    let mut rig = Rig::new(vec![svc(
        3,
        VIP6,
        Proto::Tcp,
        80,
        Mode::Nat,
        vec![real6(1, 8080)],
    )]);
    let spec = FrameSpec {
        payload: pattern(4000),
        ..tcp6(CLIENT6, 40000, VIP6, 80)
    };
    let frags = builder::ipv6_fragments(&builder::tcp6(&spec), 1500, 0xdead_beef).unwrap();
    assert_eq!(frags.len(), 3);
    let outs = run_all(&mut rig, &frags);
    assert!(outs.iter().all(|o| o[0..6] == real_mac(1).0));
    let got = reassemble_v6(&outs);
    let want = builder::tcp6(&FrameSpec {
        ttl: 63,
        dst: v6(REAL1_6),
        dst_port: 8080,
        ..spec
    });
    assert_eq!(got, ip_of(&want));
    let ip = Ipv6Packet::new_checked(&got[..]).unwrap();
    let up = ip.upper_layer().unwrap();
    let tcp = TcpPacket::new_checked(ip.upper_payload(&up)).unwrap();
    assert!(tcp.verify_checksum(ip.pseudo_header(&up)), "full recompute");
}

#[test]
fn fragmented_nat_replies_are_translated_back_whole() {
    let mut rig = Rig::new(vec![nat_udp4()]);
    let q = builder::udp4(&udp4s(CLIENT4, 5000, VIP4, 53, b"q".to_vec()));
    assert_eq!(rig.run(&q).0, Outcome::Forward { port: 0 });
    let spec = FrameSpec {
        src_mac: real_mac(1),
        ident: 77,
        ..udp4s(REAL1, 5353, CLIENT4, 5000, pattern(4000))
    };
    let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
    // Reordered: the last fragment after the first, the middle ones last.
    let order = [0, 2, 1];
    let outs: Vec<Vec<u8>> = order
        .iter()
        .map(|&i| {
            let (o, out) = rig.run(&frags[i]);
            assert_eq!(o, Outcome::Forward { port: 0 }, "fragment {i}");
            assert_eq!(&out[0..6], &GW_MAC.0);
            out
        })
        .collect();
    let got = reassemble_v4(&outs);
    let want = builder::udp4(&FrameSpec {
        ttl: 63,
        src: v4(VIP4),
        src_port: 53,
        ..spec
    });
    assert_eq!(got, ip_of(&want));
    assert_eq!(rig.tables.counters[0].packets_out, 3);
}

#[test]
fn every_fragment_follows_the_first_to_its_real() {
    for mode in [Mode::Dr, Mode::Tun, Mode::Nat] {
        let mut rig = Rig::new(vec![svc(2, VIP4, Proto::Udp, 53, mode, reals4(4, 53))]);
        let mut reals = std::collections::HashSet::new();
        for c in 0..40u32 {
            let client = Ipv4Addr::from(0xCB00_7100 + c).to_string();
            let spec = FrameSpec {
                ident: c as u16,
                ..udp4s(&client, 1000 + c as u16, VIP4, 53, pattern(2000))
            };
            let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1000).unwrap();
            // A later fragment before the first: dropped, not misrouted.
            assert_eq!(
                rig.run(&frags[1]).0,
                Outcome::Dropped(DropReason::Fragment),
                "{mode:?}"
            );
            let outs = run_all(&mut rig, &frags);
            let first = Rig::real_of(&outs[0]);
            reals.insert(first);
            for o in &outs {
                assert_eq!(Rig::real_of(o), first, "{mode:?} client {client}");
                if mode == Mode::Tun {
                    let outer = Ipv4Packet::new_checked(&o[14..]).unwrap();
                    assert_eq!(outer.protocol(), ip_proto::IPIP);
                    assert_eq!(outer.dst(), Ipv4Addr::new(192, 0, 2, 20 + first));
                    assert!(outer.verify_checksum());
                }
            }
        }
        assert!(reals.len() > 1, "{mode:?}: flows spread over reals");
    }
}

#[test]
fn fragment_state_is_short_lived_and_survives_a_snapshot_swap() {
    let mut rig = Rig::new(vec![svc(2, VIP4, Proto::Udp, 53, Mode::Dr, reals4(3, 53))]);
    let spec = FrameSpec {
        ident: 9,
        ..udp4s(CLIENT4, 1, VIP4, 53, pattern(3000))
    };
    let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
    let (_, out) = rig.run(&frags[0]);
    let first = Rig::real_of(&out);
    // Reals listed in reverse order: indexes move, the decision follows.
    let mut rev = reals4(3, 53);
    rev.reverse();
    let new = Snapshot::new(
        2,
        vec![port_info()],
        VipTable::build(vec![svc(2, VIP4, Proto::Udp, 53, Mode::Dr, rev)], 2).unwrap(),
    );
    rig.tables.adopt(&rig.snap, &new);
    rig.snap = new;
    let (o, out) = rig.run(&frags[1]);
    assert_eq!(o, Outcome::Forward { port: 0 });
    assert_eq!(Rig::real_of(&out), first);
    // 2 s after the first fragment the entry is gone.
    rig.now += u64::from(frag::FRAG_TIMEOUT_MS);
    assert_eq!(rig.run(&frags[2]).0, Outcome::Dropped(DropReason::Fragment));
}

#[test]
fn fragments_for_our_own_addresses_go_to_the_kernel() {
    let mut rig = Rig::new(vec![]);
    let spec = udp4s(CLIENT4, 1, LB4, 9999, pattern(3000));
    let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
    for f in &frags {
        assert_eq!(rig.run(f).0, Outcome::ToKernel);
    }
}

/// Hairpin: real 1 (192.0.2.21) connects to the VIP from port 50000.
fn hairpin_syn() -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        src_mac: real_mac(1),
        ..tcp4(REAL1, 50000, VIP4, 80, WireFlags::SYN)
    }
}

#[test]
fn hairpin_nat_flows_are_source_natted_both_ways() {
    struct Case {
        desc: &'static str,
        input: Vec<u8>,
        expect: Vec<u8>,
        outcome: Outcome,
    }
    let mut rig = Rig::new(vec![nat_tcp4()]);
    let lport = *snat::DEFAULT_SNAT_PORTS.start();
    let to_real = |flags| {
        builder::tcp4(&FrameSpec {
            src_mac: LB,
            dst_mac: real_mac(1),
            src: v4(LB4),
            src_port: lport,
            dst: v4(REAL1),
            dst_port: 8080,
            ttl: 63,
            tcp_flags: flags,
            ..hairpin_syn()
        })
    };
    let reply = FrameSpec {
        src_mac: real_mac(1),
        payload: b"world".to_vec(),
        ..tcp4(REAL1, 8080, LB4, lport, WireFlags::ACK)
    };
    let cases = vec![
        Case {
            desc: "SYN: the real picked is the sender: source-NATed to the port's address",
            input: builder::tcp4(&hairpin_syn()),
            expect: to_real(WireFlags::SYN),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "reply to local:lport goes back to the client as VIP:80",
            input: builder::tcp4(&reply),
            expect: builder::tcp4(&FrameSpec {
                src_mac: LB,
                dst_mac: real_mac(1),
                src: v4(VIP4),
                src_port: 80,
                dst: v4(REAL1),
                dst_port: 50000,
                ttl: 63,
                ..reply.clone()
            }),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "the flow's next packets keep the same source port",
            input: builder::tcp4(&FrameSpec {
                tcp_flags: WireFlags::ACK,
                ..hairpin_syn()
            }),
            expect: to_real(WireFlags::ACK),
            outcome: Outcome::Forward { port: 0 },
        },
        Case {
            desc: "to our own address, a port of the SNAT range without a flow: kernel",
            input: builder::tcp4(&FrameSpec {
                dst_port: lport + 1,
                ..reply.clone()
            }),
            expect: Vec::new(),
            outcome: Outcome::ToKernel,
        },
        Case {
            desc: "to our own address outside the SNAT range (health check reply): kernel",
            input: builder::tcp4(&FrameSpec {
                dst_port: 40000,
                ..reply.clone()
            }),
            expect: Vec::new(),
            outcome: Outcome::ToKernel,
        },
        Case {
            desc: "a client on the reals' link is source-NATed too (replies would bypass us)",
            input: builder::tcp4(&FrameSpec {
                src_mac: CLIENT_MAC,
                ..tcp4("192.0.2.9", 33000, VIP4, 80, WireFlags::SYN)
            }),
            expect: builder::tcp4(&FrameSpec {
                src_mac: LB,
                dst_mac: real_mac(1),
                src: v4(LB4),
                src_port: lport + 1,
                dst: v4(REAL1),
                dst_port: 8080,
                ttl: 63,
                ..tcp4("192.0.2.9", 33000, VIP4, 80, WireFlags::SYN)
            }),
            outcome: Outcome::Forward { port: 0 },
        },
    ];
    for c in cases {
        let (o, out) = rig.run(&c.input);
        assert_eq!(o, c.outcome, "{}", c.desc);
        if !c.expect.is_empty() {
            assert_eq!(out, c.expect, "{}", c.desc);
        }
    }
    assert_eq!(rig.tables.snat_ports().in_use(), 2);
    // Off-link clients keep their address (plain NAT).
    let (_, out) = rig.run(&builder::tcp4(&tcp4(CLIENT4, 1, VIP4, 80, WireFlags::SYN)));
    assert_eq!(&out[14 + 12..14 + 16], &v4(CLIENT4).octets());
    assert_eq!(rig.tables.snat_ports().in_use(), 2);
    // Flows expire: their ports return to the pool.
    rig.now += 901_000;
    let snap = &rig.snap;
    for _ in 0..100 {
        rig.tables.sweep(snap, rig.now, 4096);
    }
    assert_eq!(rig.tables.snat_ports().in_use(), 0);
    assert_eq!(rig.tables.active[0][0], 0);
}

#[test]
fn hairpin_icmp_errors_and_fragments_are_translated() {
    let mut rig = Rig::new(vec![nat_udp4()]);
    let lport = *snat::DEFAULT_SNAT_PORTS.start();
    let q = FrameSpec {
        src_mac: real_mac(1),
        ..udp4s(REAL1, 5000, VIP4, 53, b"query".to_vec())
    };
    let (o, fwd) = rig.run(&builder::udp4(&q));
    assert_eq!(o, Outcome::Forward { port: 0 });
    let err = |src_mac, dst_mac, src: &str, dst: &str, ttl, quote: &[u8]| {
        builder::icmp4_error(
            &FrameSpec {
                src_mac,
                dst_mac,
                src: v4(src),
                dst: v4(dst),
                ttl,
                ..FrameSpec::default()
            },
            3,
            3,
            0,
            quote,
        )
    };
    // The real (as server) rejects local:lport -> real:5353: the error
    // reaches the client (the same real) about client:5000 -> VIP:53.
    let (o, out) = rig.run(&err(real_mac(1), LB, REAL1, LB4, 64, ip_of(&fwd)));
    assert_eq!(o, Outcome::Forward { port: 0 });
    let orig = builder::udp4(&FrameSpec {
        ttl: 63,
        ..q.clone()
    });
    assert_eq!(
        out,
        err(LB, real_mac(1), VIP4, REAL1, 63, ip_of(&orig)),
        "SNAT error back to the client"
    );
    // The client rejects the translated reply VIP:53 -> client:5000: the
    // error reaches the real about real:5353 -> local:lport.
    let seen = builder::udp4(&FrameSpec {
        ttl: 63,
        ..udp4s(VIP4, 53, REAL1, 5000, b"answer".to_vec())
    });
    let sent = builder::udp4(&FrameSpec {
        ttl: 63,
        ..udp4s(REAL1, 5353, LB4, lport, b"answer".to_vec())
    });
    let (o, out) = rig.run(&err(real_mac(1), LB, REAL1, VIP4, 64, ip_of(&seen)));
    assert_eq!(o, Outcome::Forward { port: 0 });
    assert_eq!(out, err(LB, real_mac(1), REAL1, REAL1, 63, ip_of(&sent)));
    // A fragmented reply real:5353 -> local:lport reaches the client whole.
    let big = FrameSpec {
        src_mac: real_mac(1),
        ident: 5,
        ..udp4s(REAL1, 5353, LB4, lport, pattern(3000))
    };
    let frags = builder::ipv4_fragments(&builder::udp4(&big), 1500).unwrap();
    let outs = run_all(&mut rig, &frags);
    let got = reassemble_v4(&outs);
    let want = builder::udp4(&FrameSpec {
        ttl: 63,
        src: v4(VIP4),
        src_port: 53,
        dst: v4(REAL1),
        dst_port: 5000,
        ..big
    });
    assert_eq!(got, ip_of(&want));
}

#[test]
fn hairpin_dr_and_tun_pick_another_real_unless_the_sender_is_alone() {
    for mode in [Mode::Dr, Mode::Tun] {
        for sched in [SchedulerKind::Maglev, SchedulerKind::Sh, SchedulerKind::Lc] {
            let mut spec = svc(1, VIP4, Proto::Tcp, 80, mode, reals4(3, 80));
            spec.scheduler = sched;
            let mut rig = Rig::new(vec![spec]);
            let mut seen = std::collections::HashSet::new();
            for p in 0..200u16 {
                let (o, out) = rig.run(&builder::tcp4(&FrameSpec {
                    src_port: 40000 + p,
                    ..hairpin_syn()
                }));
                assert_eq!(o, Outcome::Forward { port: 0 }, "{mode:?} {sched:?}");
                let r = Rig::real_of(&out);
                assert_ne!(r, 1, "{mode:?} {sched:?}: sender got its own flow");
                seen.insert(r);
            }
            if sched == SchedulerKind::Maglev {
                assert_eq!(seen.len(), 2, "{mode:?}: both other reals used");
            }
        }
        // The sender is the only real: it gets the flow.
        let mut rig = Rig::new(vec![svc(1, VIP4, Proto::Tcp, 80, mode, reals4(1, 80))]);
        let (o, out) = rig.run(&builder::tcp4(&hairpin_syn()));
        assert_eq!(o, Outcome::Forward { port: 0 });
        assert_eq!(Rig::real_of(&out), 1);
        assert_eq!(rig.tables.snat_ports().in_use(), 0, "no SNAT outside NAT");
    }
}

#[test]
fn hairpin_without_a_free_port_is_dropped_and_counted() {
    let snap = snapshot(vec![nat_tcp4()]);
    let mut rig = Rig {
        tables: Tables::with_snat_ports(1024, &snap, 2000..=2000),
        snap,
        neigh: neigh(),
        reqs: NeighRequests::default(),
        now: 1000,
    };
    let syn = |p| {
        builder::tcp4(&FrameSpec {
            src_port: p,
            ..hairpin_syn()
        })
    };
    assert_eq!(rig.run(&syn(1)).0, Outcome::Forward { port: 0 });
    assert_eq!(rig.run(&syn(2)).0, Outcome::Dropped(DropReason::NoSnatPort));
    assert_eq!(rig.tables.conn.len(), 1, "no flow without a port");
    rig.now += 31_000; // the half-open flow expires
    let snap = &rig.snap;
    for _ in 0..10 {
        rig.tables.sweep(snap, rig.now, 4096);
    }
    assert_eq!(rig.run(&syn(3)).0, Outcome::Forward { port: 0 });
    let (_, out) = rig.run(&syn(3));
    assert_eq!(&out[14 + 20..14 + 22], &2000u16.to_be_bytes());
}

/// `[vip.timeouts]`: a service's flows expire on its own timeout, a TCP
/// service beside it keeps the node's; a reload that changes the
/// timeouts moves existing flows to the new ones.
#[test]
fn a_services_own_timeouts_apply_to_its_flows_and_follow_a_reload() {
    use crate::service::ServiceTimeouts;
    let short = |udp_ms| {
        let mut s = nat_udp4();
        s.timeouts = Some(ServiceTimeouts {
            udp_ms: Some(udp_ms),
            ..ServiceTimeouts::default()
        });
        s
    };
    let specs = vec![nat_tcp4(), short(3000)];
    let mut r = Rig::small(specs.clone());
    assert_eq!(r.snap.vips.services()[0].profile(), 0);
    assert_eq!(r.snap.vips.services()[1].profile(), 1);
    let q = builder::udp4(&udp4s(CLIENT4, 5000, VIP4, 53, b"q".to_vec()));
    assert!(matches!(r.run(&q).0, Outcome::Forward { .. }));
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    r.run(&syn);
    let ack = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK));
    r.run(&ack);
    let expiries = |r: &Rig| -> Vec<(L4, u32)> {
        let mut v: Vec<_> = r
            .tables
            .conn
            .live()
            .map(|e| (e.proto(), e.expiry().wrapping_sub(r.now as u32)))
            .collect();
        v.sort_by_key(|x| x.1);
        v
    };
    assert_eq!(expiries(&r), vec![(L4::Udp, 3000), (L4::Tcp, 900_000)]);
    // 3 s later the UDP flow is gone: the same query is a new flow.
    r.now += 3000;
    let before = r.tables.conn.counters().inserts;
    r.run(&q);
    assert_eq!(
        r.tables.conn.counters().inserts,
        before + 1,
        "expired, new flow"
    );
    r.tables.conn.check_invariants();

    // A reload gives the UDP service 60 s and the TCP one 10 s: flows
    // already there take them at their next packet.
    let mut tcp = nat_tcp4();
    tcp.timeouts = Some(ServiceTimeouts {
        tcp_ms: Some(10_000),
        ..ServiceTimeouts::default()
    });
    let new = snapshot(vec![tcp, short(60_000)]);
    r.tables.adopt(&r.snap, &new);
    r.snap = new;
    r.run(&q);
    r.run(&ack);
    assert_eq!(expiries(&r), vec![(L4::Tcp, 10_000), (L4::Udp, 60_000)]);
    r.tables.conn.check_invariants();
}

/// `tcp_reset_on_idle`: an established flow that expires leaves two RSTs
/// for the worker to send, with the sequence numbers each end expects;
/// the burst path leaves such a service's packets to the general path,
/// which notes them; a flow that only half opened, or of a service
/// without the key, leaves none.
#[test]
fn an_idle_flow_of_a_reset_on_idle_service_leaves_a_rst_for_each_end() {
    use crate::pipeline::reset::Rst;
    use crate::service::ServiceTimeouts;
    let with_reset = |mut s: ServiceSpec| {
        s.timeouts = Some(ServiceTimeouts {
            tcp_ms: Some(5000),
            reset_on_idle: true,
            ..ServiceTimeouts::default()
        });
        s
    };
    let client = IpAddr::V4(v4(CLIENT4));
    let vip = IpAddr::V4(v4(VIP4));
    let real = IpAddr::V4(v4("192.0.2.21"));
    for mode in [Mode::Dr, Mode::Nat, Mode::Tun] {
        let rport = if mode == Mode::Nat { 8080 } else { 80 };
        let mut r = Rig::small(vec![with_reset(svc(
            1,
            VIP4,
            Proto::Tcp,
            80,
            mode,
            reals4(1, rport),
        ))]);
        let seg = |seq: u32, ack: u32, flags: WireFlags, payload: &[u8]| {
            builder::tcp4(&FrameSpec {
                seq,
                ack,
                payload: payload.to_vec(),
                ..tcp4(CLIENT4, 40000, VIP4, 80, flags)
            })
        };
        r.run(&seg(100, 0, WireFlags::SYN, b""));
        // The handshake's last ACK and a request, through a whole burst
        // (the burst path must not keep them from the general path).
        let mut bufs = vec![
            TestBuffer::new(&seg(101, 7000, WireFlags::ACK, b"")),
            TestBuffer::new(&seg(
                101,
                7000,
                WireFlags::ACK | WireFlags::PSH,
                b"GET / HTTP/1.1\r\n\r\n",
            )),
        ];
        let (out, plain) = r.run_burst(&mut bufs);
        assert!(
            matches!(out[1], Outcome::Forward { .. }),
            "{mode:?}: {:?}",
            out[1]
        );
        assert_eq!(plain, 0, "{mode:?}: no plain hits for this service");
        // The real answered; the client acknowledged it all.
        r.run(&seg(119, 7300, WireFlags::ACK, b""));
        assert!(r.tables.resets.is_empty());
        r.now += 5001;
        let snap = &r.snap;
        r.tables.sweep(snap, r.now, 4096);
        assert_eq!(r.tables.conn.len(), 0);
        let mut got = Vec::new();
        while let Some(x) = r.tables.resets.pop() {
            got.push(x);
        }
        got.sort_by_key(|x| x.dst.1);
        let to_real = Rst {
            port: 0,
            next_hop: real,
            tunnel: (mode == Mode::Tun).then_some((IpAddr::V4(v4("192.0.2.2")), real)),
            src: (client, 40000),
            dst: match mode {
                Mode::Nat => (real, 8080),
                _ => (vip, 80),
            },
            seq: 119,
        };
        let to_client = Rst {
            port: 0,
            next_hop: IpAddr::V4(v4("192.0.2.1")),
            tunnel: None,
            src: (vip, 80),
            dst: (client, 40000),
            seq: 7300,
        };
        let mut want = vec![to_real, to_client];
        want.sort_by_key(|x| x.dst.1);
        assert_eq!(got, want, "{mode:?}");
    }
    // Half open: nothing to reset. Without the key: nothing either.
    for spec in [
        with_reset(svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))),
        svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80)),
    ] {
        let reset = spec.timeouts.is_some();
        let mut r = Rig::small(vec![spec]);
        r.run(&builder::tcp4(&tcp4(
            CLIENT4,
            40001,
            VIP4,
            80,
            WireFlags::SYN,
        )));
        r.now += 31_000;
        let snap = &r.snap;
        r.tables.sweep(snap, r.now, 4096);
        assert!(r.tables.resets.is_empty(), "half open, reset {reset}");
        r.run(&builder::tcp4(&tcp4(
            CLIENT4,
            40002,
            VIP4,
            80,
            WireFlags::SYN,
        )));
        r.run(&builder::tcp4(&tcp4(
            CLIENT4,
            40002,
            VIP4,
            80,
            WireFlags::ACK,
        )));
        r.now += 1_000_000;
        let snap = &r.snap;
        r.tables.sweep(snap, r.now, 4096);
        assert_eq!(r.tables.resets.len(), if reset { 2 } else { 0 });
    }
}

/// A `tcp_reset_on_idle` NAT flow found expired by its real's reply (not
/// by the sweep) leaves its two RSTs too; a flow freed otherwise (a RST
/// from the client) leaves none.
#[test]
fn an_idle_flow_freed_by_a_reply_lookup_leaves_its_rsts_too() {
    use crate::service::ServiceTimeouts;
    let mut s = svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(1, 8080));
    s.timeouts = Some(ServiceTimeouts {
        tcp_ms: Some(5000),
        reset_on_idle: true,
        ..ServiceTimeouts::default()
    });
    let mut r = Rig::small(vec![s]);
    let seg = |flags: WireFlags| {
        builder::tcp4(&FrameSpec {
            seq: 100,
            ack: 7000,
            ..tcp4(CLIENT4, 40000, VIP4, 80, flags)
        })
    };
    let (_, to_real) = r.run(&seg(WireFlags::SYN));
    r.run(&seg(WireFlags::ACK));
    r.now += 6000;
    // The real's late segment finds the flow expired.
    let reply = builder::tcp4(&FrameSpec {
        src_mac: real_mac(1),
        dst_mac: LB,
        src: v4("192.0.2.21"),
        dst: v4(CLIENT4),
        src_port: 8080,
        dst_port: 40000,
        tcp_flags: WireFlags::ACK,
        ..FrameSpec::default()
    });
    assert_eq!(to_real[30..34], v4("192.0.2.21").octets());
    r.run(&reply);
    assert_eq!(r.tables.conn.len(), 0);
    assert_eq!(r.tables.resets.len(), 2, "one RST to each end");
    // A flow the client resets itself leaves none.
    while r.tables.resets.pop().is_some() {}
    let other = |flags: WireFlags| builder::tcp4(&tcp4(CLIENT4, 40001, VIP4, 80, flags));
    r.run(&other(WireFlags::SYN));
    r.run(&other(WireFlags::ACK));
    r.run(&other(WireFlags::RST));
    r.now += 60_000;
    let snap = &r.snap;
    r.tables.sweep(snap, r.now, 4096);
    assert!(r.tables.resets.is_empty());
}
