//! Property tests of the pipeline: NAT round trips mirror the original
//! and keep every checksum valid, DR touches nothing past the MACs, and
//! no byte string makes it panic.

use proptest::prelude::*;

use super::flows::{checksums_ok, ip_of};
use super::*;

/// A client address that is neither the balancer's nor a VIP (it may sit
/// on the reals' link: such flows are source-NATed, and the round trip
/// must still mirror).
fn client4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        3 => any::<u32>().prop_map(Ipv4Addr::from),
        // On the reals' link, the reals themselves included (hairpin).
        1 => (3u8..=254).prop_map(|x| Ipv4Addr::new(192, 0, 2, x)),
    ]
    .prop_filter("unicast, not martian, not ours", |a| {
        let o = a.octets()[0];
        !(o == 0
            || o == 127
            || o >= 224
            || *a == v4("192.0.2.255")
            || *a == v4("192.0.2.2")
            || *a == v4(VIP4))
    })
}

fn client6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        3 => any::<u128>().prop_map(Ipv6Addr::from),
        1 => (3u16..=0x1ff).prop_map(|x| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x)),
    ]
    .prop_filter("unicast, not ours", |a| {
        !(a.is_multicast()
            || a.is_unspecified()
            || a.is_loopback()
            || *a == v6("2001:db8::2")
            || *a == v6(VIP6))
    })
}

fn nat_specs() -> Vec<ServiceSpec> {
    vec![
        svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(3, 8080)),
        svc(2, VIP4, Proto::Udp, 53, Mode::Nat, reals4(3, 5353)),
        svc(
            3,
            VIP6,
            Proto::Tcp,
            80,
            Mode::Nat,
            (1..=3)
                .map(|i| Real {
                    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + i)),
                    port: 8080,
                    weight: 1,
                    state: RealState::Up,
                    neigh: 0,
                })
                .collect(),
        ),
        svc(
            4,
            VIP6,
            Proto::Udp,
            53,
            Mode::Nat,
            (1..=3)
                .map(|i| Real {
                    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + i)),
                    port: 5353,
                    weight: 1,
                    state: RealState::Up,
                    neigh: 0,
                })
                .collect(),
        ),
    ]
}

/// The addresses and ports of a frame's IP / TCP|UDP headers.
fn tuple(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let ip = ip_of(frame);
    let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = if ip[0] >> 4 == 4 {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        (p.src().into(), p.dst().into(), &ip[p.header_len()..])
    } else {
        let p = Ipv6Packet::new_checked(ip).unwrap();
        (p.src().into(), p.dst().into(), &ip[40..])
    };
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    (src, port(0), dst, port(2))
}

/// A frame for `(src, sport) -> (dst, dport)`, IPv4 or IPv6.
fn frame(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    udp: bool,
    flags: WireFlags,
    payload: Vec<u8>,
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let spec = FrameSpec {
                src_mac: GW_MAC,
                dst_mac: LB,
                src: s,
                dst: d,
                src_port: sport,
                dst_port: dport,
                tcp_flags: flags,
                payload,
                ..FrameSpec::default()
            };
            if udp {
                builder::udp4(&spec)
            } else {
                builder::tcp4(&spec)
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let spec = FrameSpec {
                src_mac: GW_MAC,
                dst_mac: LB,
                src: s,
                dst: d,
                src_port: sport,
                dst_port: dport,
                tcp_flags: flags,
                payload,
                ..FrameSpec::default()
            };
            if udp {
                builder::udp6(&spec)
            } else {
                builder::tcp6(&spec)
            }
        }
        _ => unreachable!("one family per frame"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn nat_forward_then_reply_mirrors_the_original(
        c4 in client4(),
        c6 in client6(),
        ipv6 in any::<bool>(),
        udp in any::<bool>(),
        cport in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..300),
        reply in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut rig = Rig::small(nat_specs());
        let (client, vip) = if ipv6 {
            (IpAddr::V6(c6), IpAddr::V6(v6(VIP6)))
        } else {
            (IpAddr::V4(c4), IpAddr::V4(v4(VIP4)))
        };
        let vport = if udp { 53 } else { 80 };
        let rport = if udp { 5353 } else { 8080 };
        let input = frame(client, cport, vip, vport, udp, WireFlags::SYN, payload);
        let (o, fwd) = rig.run(&input);
        prop_assert_eq!(o, Outcome::Forward { port: 0 });
        prop_assert!(checksums_ok(&fwd), "forward checksums");
        let (fs, fsp, fd, fdp) = tuple(&fwd);
        prop_assert_eq!(fdp, rport);
        let r = Rig::real_of(&fwd);
        let real: IpAddr = if ipv6 {
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + u16::from(r)).into()
        } else {
            Ipv4Addr::new(192, 0, 2, 20 + r).into()
        };
        prop_assert_eq!(fd, real);
        // The source is the client, unless the flow had to be source-NATed.
        if (fs, fsp) != (client, cport) {
            prop_assert!(rig.snap.ports[0].is_self(fs), "SNAT to our address");
            prop_assert_eq!(rig.tables.snat_ports().in_use(), 1);
        }
        // The real answers whoever the packet came from.
        let answer = frame(fd, fdp, fs, fsp, udp, WireFlags(0x12), reply);
        let (o, back) = rig.run(&answer);
        prop_assert_eq!(o, Outcome::Forward { port: 0 });
        prop_assert!(checksums_ok(&back), "reply checksums");
        prop_assert_eq!(tuple(&back), (vip, vport, client, cport));
    }

    #[test]
    fn dr_changes_nothing_but_the_mac_header(
        c4 in client4(),
        c6 in client6(),
        ipv6 in any::<bool>(),
        udp in any::<bool>(),
        cport in 1u16..,
        // Any flag byte a TCP stack sends (invalid ones are dropped:
        // corrupt_ip_and_tcp_headers_are_dropped_as_malformed).
        flags in prop::sample::select(vec![0x02u8, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30])
            .prop_flat_map(|f| (0u8..8).prop_map(move |x| f | ((x & 1) << 3) | ((x >> 1) << 6))),
        ttl in 1u8..,
        payload in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        let dr6: Vec<Real> = (1..=3)
            .map(|i| Real {
                addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20 + i)),
                port: 80,
                weight: 1,
                state: RealState::Up,
                neigh: 0,
            })
            .collect();
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        let mut rig = Rig::small(vec![
            svc(1, VIP4, proto, 80, Mode::Dr, reals4(3, 80)),
            svc(2, VIP6, proto, 80, Mode::Dr, dr6),
        ]);
        let (client, vip) = if ipv6 {
            (IpAddr::V6(c6), IpAddr::V6(v6(VIP6)))
        } else {
            (IpAddr::V4(c4), IpAddr::V4(v4(VIP4)))
        };
        let mut input = frame(client, cport, vip, 80, udp, WireFlags(flags), payload);
        // TTL / hop limit (and the IPv4 header checksum) as drawn.
        if ipv6 {
            input[14 + 7] = ttl;
        } else {
            input[14 + 8] = ttl;
            let mut ip = Ipv4Packet::new_unchecked(&mut input[14..]);
            ip.fill_checksum();
        }
        let (o, out) = rig.run(&input);
        prop_assert_eq!(o, Outcome::Forward { port: 0 });
        prop_assert_eq!(&out[12..], &input[12..]);
        prop_assert_eq!(&out[6..12], &LB.0);
    }

    #[test]
    fn random_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..1600),
        shape in 0u8..4,
    ) {
        // Shape some inputs so they get past the Ethernet / IP version
        // checks and reach the deeper steps.
        match shape {
            1 if bytes.len() > 14 => {
                bytes[12..14].copy_from_slice(&[0x08, 0x00]);
                bytes[14] = 0x45;
            }
            2 if bytes.len() > 14 => {
                bytes[12..14].copy_from_slice(&[0x86, 0xdd]);
                bytes[14] = 0x60;
            }
            _ => {}
        }
        let mut specs = nat_specs();
        specs.push(svc(5, "192.0.2.101", Proto::Tcp, 0, Mode::Dr, reals4(2, 0)));
        specs.push(svc(6, "192.0.2.101", Proto::Udp, 0, Mode::Tun, reals4(2, 0)));
        let mut rig = Rig::small(specs);
        rig.snap.ports[0].vips.push(IpAddr::V4(v4("192.0.2.101")));
        let _ = rig.run(&bytes);
        rig.tables.conn.check_invariants();
    }

    #[test]
    fn mutated_flow_frames_never_panic(
        which in 0usize..8,
        flips in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
    ) {
        let mut rig = Rig::small(nat_specs());
        // A flow, so that errors and fragments find state.
        let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
        let _ = rig.run(&syn);
        let seen = builder::tcp4(&tcp4(VIP4, 80, CLIENT4, 40000, WireFlags::ACK));
        let big = builder::udp4(&FrameSpec {
            payload: vec![3; 2500],
            dst_port: 53,
            ..tcp4(CLIENT4, 5, VIP4, 53, WireFlags::SYN)
        });
        let frags = builder::ipv4_fragments(&big, 1000).unwrap();
        let big6 = builder::tcp6(&FrameSpec {
            payload: vec![4; 2500],
            ..tcp6(CLIENT6, 5, VIP6, 80)
        });
        let frags6 = builder::ipv6_fragments(&big6, 1000, 1).unwrap();
        let spec = FrameSpec {
            src: v4("198.51.100.1"),
            dst: v4(VIP4),
            ..FrameSpec::default()
        };
        let candidates = [
            builder::icmp4_error(&spec, 3, 4, 1400, ip_of(&seen)),
            builder::icmp4_error(&spec, 11, 0, 0, &ip_of(&seen)[..28]),
            builder::icmp6_error(
                &FrameSpec {
                    src: v6("2001:db8:ffff::1"),
                    dst: v6(VIP6),
                    ..FrameSpec::default()
                },
                2,
                0,
                1280,
                &ip_of(&big6)[..1232],
            ),
            frags[0].clone(),
            frags[1].clone(),
            frags6[0].clone(),
            frags6[1].clone(),
            syn.clone(),
        ];
        // The first fragments go through untouched first, so that the
        // mutated later ones find their entry.
        let _ = rig.run(&frags[0]);
        let _ = rig.run(&frags6[0]);
        let mut f = candidates[which].clone();
        for (at, v) in flips {
            let n = f.len();
            f[usize::from(at) % n] ^= v;
        }
        let keep = usize::from(cut) % (f.len() + 1);
        let _ = rig.run(&f[..keep.max(f.len() / 2)]);
        let _ = rig.run(&f);
        rig.tables.conn.check_invariants();
    }
}
