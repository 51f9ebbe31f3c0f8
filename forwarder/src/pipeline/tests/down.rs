//! Table tests of what happens when reals fail: `on_down = keep`, the
//! fallback ("sorry") server, and the refusal of new flows no server can
//! take (TCP RST, ICMP port unreachable). Expected frames are built from
//! scratch by the packet builder, and every checksum is verified.

use super::flows::{checksums_ok, ip_of};
use super::*;

const FALLBACK4: &str = "192.0.2.25"; // real_mac(5) in the neighbour table
const FALLBACK6: &str = "2001:db8::25";

fn fallback4(port: u16) -> Real {
    Real {
        addr: FALLBACK4.parse().unwrap(),
        port,
        weight: 1,
        state: RealState::Up,
        neigh: 0,
    }
}

/// Two reals, none eligible (one weight 0, one down).
fn none_eligible(port: u16) -> Vec<Real> {
    let mut r = reals4(2, port);
    r[0].weight = 0;
    r[1].state = RealState::Down;
    r
}

fn with_fallback(mut s: ServiceSpec, f: Real) -> ServiceSpec {
    s.fallback = Some(f);
    s
}

fn udp4f(src: &str, sport: u16, dst: &str, dport: u16, payload: Vec<u8>) -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        payload,
        ..tcp4(src, sport, dst, dport, WireFlags::NONE)
    }
}

fn udp6f(src: &str, sport: u16, dst: &str, dport: u16, payload: Vec<u8>) -> FrameSpec<Ipv6Addr> {
    FrameSpec {
        payload,
        ..tcp6(src, sport, dst, dport)
    }
}

/// The RST the balancer sends `VIP4:vport -> CLIENT4:cport`.
fn rst4(vport: u16, cport: u16, seq: u32, ack: u32, flags: WireFlags) -> Vec<u8> {
    builder::tcp4(&FrameSpec {
        src_mac: LB,
        dst_mac: GW_MAC,
        src: v4(VIP4),
        dst: v4(CLIENT4),
        src_port: vport,
        dst_port: cport,
        tcp_flags: flags,
        seq,
        ack,
        window: 0,
        ttl: 64,
        ident: 0,
        dont_frag: false,
        flow_label: 0,
        payload: Vec::new(),
        vlan: None,
    })
}

/// The RST the balancer sends `VIP6:vport -> CLIENT6:cport`.
fn rst6(vport: u16, cport: u16, seq: u32, ack: u32, flags: WireFlags) -> Vec<u8> {
    builder::tcp6(&FrameSpec {
        src_mac: LB,
        dst_mac: GW_MAC,
        src: v6(VIP6),
        dst: v6(CLIENT6),
        src_port: vport,
        dst_port: cport,
        tcp_flags: flags,
        seq,
        ack,
        window: 0,
        ttl: 64,
        flow_label: 0,
        payload: Vec::new(),
        ..FrameSpec::default()
    })
}

/// ICMP port unreachable from VIP4 to CLIENT4 quoting `quote`.
fn unreach4(quote: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_mac: LB,
        dst_mac: GW_MAC,
        src: v4(VIP4),
        dst: v4(CLIENT4),
        ttl: 64,
        ident: 0,
        ..FrameSpec::default()
    };
    builder::icmp4_error(&spec, 3, 3, 0, quote)
}

/// ICMPv6 port unreachable from VIP6 to CLIENT6 quoting `quote`.
fn unreach6(quote: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_mac: LB,
        dst_mac: GW_MAC,
        src: v6(VIP6),
        dst: v6(CLIENT6),
        ttl: 64,
        ..FrameSpec::default()
    };
    builder::icmp6_error(&spec, 1, 4, 0, quote)
}

/// The input as a DR real `i` receives it (MACs only).
fn dr_to(i: u8) -> Expect {
    Box::new(move |inp| {
        let mut e = inp.to_vec();
        e[0..6].copy_from_slice(&real_mac(i).0);
        e[6..12].copy_from_slice(&LB.0);
        e
    })
}

#[test]
fn new_flows_nobody_can_take_are_refused_or_go_to_the_fallback() {
    struct Case {
        desc: &'static str,
        spec: ServiceSpec,
        input: Vec<u8>,
        expect: Expect,
        outcome: Outcome,
        /// (rejected, new flows) counted for the service.
        counted: (u64, u64),
    }
    let syn = FrameSpec {
        seq: 1000,
        payload: Vec::new(),
        ..tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN)
    };
    let big_udp4 = builder::udp4(&udp4f(CLIENT4, 5000, VIP4, 53, vec![0x33; 1400]));
    let big_udp6 = builder::udp6(&udp6f(CLIENT6, 5000, VIP6, 53, vec![0x66; 1400]));
    let small_udp6 = builder::udp6(&udp6f(CLIENT6, 5000, VIP6, 53, b"query".to_vec()));
    let dr = |reals| svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals);
    let cases = vec![
        Case {
            desc: "SYN, no real: RST|ACK, seq 0, ack = seq + 1",
            spec: dr(none_eligible(80)),
            input: builder::tcp4(&syn),
            expect: Box::new(|_| rst4(80, 40000, 0, 1001, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "SYN with data (fast open): the data is acknowledged too",
            spec: dr(none_eligible(80)),
            input: builder::tcp4(&FrameSpec {
                payload: b"hello".to_vec(),
                ..syn.clone()
            }),
            expect: Box::new(|_| rst4(80, 40000, 0, 1006, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "a segment with ACK: RST, seq = its ack",
            spec: dr(none_eligible(80)),
            input: builder::tcp4(&FrameSpec {
                tcp_flags: WireFlags::ACK | WireFlags::PSH,
                ack: 0xdead_beef,
                payload: vec![1; 300],
                ..syn.clone()
            }),
            expect: Box::new(|_| rst4(80, 40000, 0xdead_beef, 0, WireFlags::RST)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "NAT and TUN refuse the same way",
            spec: svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, none_eligible(8080)),
            input: builder::tcp4(&syn),
            expect: Box::new(|_| rst4(80, 40000, 0, 1001, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "TUN on every port: the RST comes from the port asked",
            spec: svc(1, VIP4, Proto::Tcp, 0, Mode::Tun, none_eligible(0)),
            input: builder::tcp4(&FrameSpec {
                dst_port: 8443,
                ..syn.clone()
            }),
            expect: Box::new(|_| rst4(8443, 40000, 0, 1001, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "IPv6 SYN: RST|ACK",
            spec: svc(
                1,
                VIP6,
                Proto::Tcp,
                80,
                Mode::Dr,
                vec![Real {
                    addr: "2001:db8::21".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    state: RealState::Drain,
                    neigh: 0,
                }],
            ),
            input: builder::tcp6(&FrameSpec {
                tcp_flags: WireFlags::SYN,
                seq: u32::MAX,
                ..tcp6(CLIENT6, 40001, VIP6, 80)
            }),
            // seq + 1 + 6 bytes of data, wrapping.
            expect: Box::new(|_| rst6(80, 40001, 0, 6, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "a RST is never answered",
            spec: dr(none_eligible(80)),
            input: builder::tcp4(&FrameSpec {
                tcp_flags: WireFlags::RST | WireFlags::ACK,
                ..syn.clone()
            }),
            expect: Box::new(|inp| inp.to_vec()),
            outcome: Outcome::Dropped(DropReason::NoReal),
            counted: (0, 0),
        },
        Case {
            desc: "UDP, no real: ICMP port unreachable quoting the datagram",
            spec: svc(2, VIP4, Proto::Udp, 53, Mode::Dr, none_eligible(53)),
            input: builder::udp4(&udp4f(CLIENT4, 5000, VIP4, 53, b"query".to_vec())),
            expect: Box::new(|inp| unreach4(ip_of(inp))),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "UDP: the quote stops at 576 bytes of ICMP packet",
            spec: svc(2, VIP4, Proto::Udp, 53, Mode::Nat, none_eligible(5353)),
            input: big_udp4.clone(),
            expect: Box::new(|inp| unreach4(&ip_of(inp)[..576 - 28])),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "UDP over IPv6: ICMPv6 port unreachable (1/4)",
            spec: svc(2, VIP6, Proto::Udp, 53, Mode::Dr, vec![]),
            input: small_udp6,
            expect: Box::new(|inp| unreach6(ip_of(inp))),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "UDP over IPv6: the quote stops at 1280 bytes of ICMPv6 packet",
            spec: svc(2, VIP6, Proto::Udp, 53, Mode::Dr, vec![]),
            input: big_udp6,
            expect: Box::new(|inp| unreach6(&ip_of(inp)[..1280 - 48])),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
        Case {
            desc: "DR fallback takes the flow unchanged",
            spec: with_fallback(dr(none_eligible(80)), fallback4(80)),
            input: builder::tcp4(&syn),
            expect: dr_to(5),
            outcome: Outcome::Forward { port: 0 },
            counted: (0, 1),
        },
        Case {
            desc: "NAT fallback: translated to its own port",
            spec: with_fallback(
                svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, none_eligible(8080)),
                fallback4(8081),
            ),
            input: builder::tcp4(&syn),
            expect: Box::new(|_| {
                builder::tcp4(&FrameSpec {
                    src_mac: LB,
                    dst_mac: real_mac(5),
                    dst: v4(FALLBACK4),
                    dst_port: 8081,
                    ttl: 63,
                    seq: 1000,
                    payload: Vec::new(),
                    ..tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN)
                })
            }),
            outcome: Outcome::Forward { port: 0 },
            counted: (0, 1),
        },
        Case {
            desc: "UDP NAT fallback",
            spec: with_fallback(
                svc(2, VIP4, Proto::Udp, 53, Mode::Nat, none_eligible(5353)),
                fallback4(5300),
            ),
            input: builder::udp4(&udp4f(CLIENT4, 5000, VIP4, 53, b"query".to_vec())),
            expect: Box::new(|_| {
                builder::udp4(&FrameSpec {
                    src_mac: LB,
                    dst_mac: real_mac(5),
                    dst: v4(FALLBACK4),
                    dst_port: 5300,
                    ttl: 63,
                    ..udp4f(CLIENT4, 5000, VIP4, 53, b"query".to_vec())
                })
            }),
            outcome: Outcome::Forward { port: 0 },
            counted: (0, 1),
        },
        Case {
            desc: "TUN fallback: encapsulated to it",
            spec: with_fallback(
                svc(1, VIP6, Proto::Tcp, 80, Mode::Tun, vec![]),
                Real {
                    addr: FALLBACK6.parse().unwrap(),
                    ..fallback4(80)
                },
            ),
            input: builder::tcp6(&tcp6(CLIENT6, 40000, VIP6, 80)),
            expect: Box::new(|inp| {
                let inner = ip_of(inp);
                let mut e = Vec::new();
                e.extend_from_slice(&real_mac(5).0);
                e.extend_from_slice(&LB.0);
                e.extend_from_slice(&[0x86, 0xdd]);
                let mut h = [0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
                h[6] = 41;
                h[7] = 64;
                h[8..24].copy_from_slice(&v6("2001:db8::2").octets());
                h[24..40].copy_from_slice(&v6(FALLBACK6).octets());
                e.extend_from_slice(&h);
                e.extend_from_slice(inner);
                e
            }),
            outcome: Outcome::Forward { port: 0 },
            counted: (0, 1),
        },
        Case {
            desc: "the fallback waits while a real is eligible",
            spec: with_fallback(dr(reals4(1, 80)), fallback4(80)),
            input: builder::tcp4(&syn),
            expect: dr_to(1),
            outcome: Outcome::Forward { port: 0 },
            counted: (0, 1),
        },
        Case {
            desc: "a fallback that is not up is no fallback",
            spec: with_fallback(
                dr(none_eligible(80)),
                Real {
                    state: RealState::Down,
                    ..fallback4(80)
                },
            ),
            input: builder::tcp4(&syn),
            expect: Box::new(|_| rst4(80, 40000, 0, 1001, WireFlags::RST | WireFlags::ACK)),
            outcome: Outcome::Answered,
            counted: (1, 0),
        },
    ];
    for c in cases {
        let mut rig = Rig::small(vec![c.spec]);
        let (o, out) = rig.run(&c.input);
        assert_eq!(o, c.outcome, "{}", c.desc);
        let want = (c.expect)(&c.input);
        assert_eq!(out, want, "{}", c.desc);
        if o != Outcome::Dropped(DropReason::NoReal) {
            assert!(checksums_ok(&out), "{}: checksums", c.desc);
        }
        let k = &rig.tables.counters[0];
        assert_eq!((k.rejected, k.new_flows), c.counted, "{}", c.desc);
        // A refusal leaves no state behind.
        if o == Outcome::Answered {
            assert_eq!(rig.tables.active[0].iter().sum::<u32>(), 0, "{}", c.desc);
        }
    }
}

/// Replaces the rig's snapshot by one of `spec` (a reload or a health
/// change), keeping the worker's tables.
fn swap(rig: &mut Rig, spec: ServiceSpec, generation: u64) {
    let new = Snapshot::new(
        generation,
        vec![port_info()],
        VipTable::build(vec![spec], generation).unwrap(),
    );
    rig.tables.adopt(&rig.snap, &new);
    rig.snap = new;
}

#[test]
fn established_flows_follow_on_down_and_the_real_state() {
    // (on_down, state of the flow's real, flow stays on it)
    let table = [
        (OnDown::Reschedule, RealState::Up, true),
        (OnDown::Reschedule, RealState::Drain, true),
        (OnDown::Reschedule, RealState::Down, false),
        (OnDown::Reschedule, RealState::Disabled, false),
        (OnDown::Keep, RealState::Up, true),
        (OnDown::Keep, RealState::Drain, true),
        (OnDown::Keep, RealState::Down, true),
        (OnDown::Keep, RealState::Disabled, false),
    ];
    for (on_down, state, stays) in table {
        let desc = format!("{on_down:?} / {state:?}");
        let spec = |reals| ServiceSpec {
            on_down,
            ..svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals)
        };
        let mut rig = Rig::small(vec![spec(reals4(3, 8080))]);
        let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
        let ack = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK));
        let (_, out) = rig.run(&syn);
        let first = Rig::real_of(&out);
        let mut reals = reals4(3, 8080);
        reals[usize::from(first) - 1].state = state;
        swap(&mut rig, spec(reals), 2);
        let (o, out) = rig.run(&ack);
        assert_eq!(o, Outcome::Forward { port: 0 }, "{desc}");
        assert!(checksums_ok(&out), "{desc}");
        assert_eq!(Rig::real_of(&out) == first, stays, "{desc}");
        let active = &rig.tables.active[0];
        assert_eq!(active.iter().sum::<u32>(), 1, "{desc}: one flow");
        assert_eq!(active[usize::from(first) - 1] == 1, stays, "{desc}");
        // Replies of a kept flow still come back translated.
        if stays {
            let reply = builder::tcp4(&FrameSpec {
                src_mac: real_mac(first),
                dst_mac: LB,
                ..tcp4(
                    &format!("192.0.2.{}", 20 + first),
                    8080,
                    CLIENT4,
                    40000,
                    WireFlags::ACK,
                )
            });
            assert_eq!(rig.run(&reply).0, Outcome::Forward { port: 0 }, "{desc}");
        }
    }
}

#[test]
fn with_every_real_down_keep_serves_old_flows_and_refuses_new_ones() {
    let spec = |state, on_down| ServiceSpec {
        on_down,
        ..svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, {
            let mut r = reals4(1, 80);
            r[0].state = state;
            r
        })
    };
    let ack = FrameSpec {
        ack: 777,
        ..tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK)
    };
    for on_down in [OnDown::Keep, OnDown::Reschedule] {
        let mut rig = Rig::small(vec![spec(RealState::Up, on_down)]);
        let (o, _) = rig.run(&builder::tcp4(&tcp4(
            CLIENT4,
            40000,
            VIP4,
            80,
            WireFlags::SYN,
        )));
        assert_eq!(o, Outcome::Forward { port: 0 });
        swap(&mut rig, spec(RealState::Down, on_down), 2);
        let (o, out) = rig.run(&builder::tcp4(&ack));
        match on_down {
            OnDown::Keep => {
                assert_eq!(o, Outcome::Forward { port: 0 });
                assert_eq!(Rig::real_of(&out), 1);
            }
            OnDown::Reschedule => {
                // Rescheduled to nobody: the client learns at once.
                assert_eq!(o, Outcome::Answered);
                assert_eq!(out, rst4(80, 40000, 777, 0, WireFlags::RST));
                assert_eq!(rig.tables.conn.len(), 0, "the flow is gone");
            }
        }
        // A new flow is refused either way.
        let (o, out) = rig.run(&builder::tcp4(&FrameSpec {
            seq: 9,
            payload: Vec::new(),
            ..tcp4(CLIENT4, 40001, VIP4, 80, WireFlags::SYN)
        }));
        assert_eq!(o, Outcome::Answered, "{on_down:?}");
        assert_eq!(out, rst4(80, 40001, 0, 10, WireFlags::RST | WireFlags::ACK));
    }
}

#[test]
fn fallback_flows_stay_there_until_they_end_and_are_counted_apart() {
    let spec = |reals| with_fallback(svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals), fallback4(80));
    let mut rig = Rig::small(vec![spec(none_eligible(80))]);
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    let ack = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::ACK));
    let (o, out) = rig.run(&syn);
    assert_eq!((o, Rig::real_of(&out)), (Outcome::Forward { port: 0 }, 5));
    let fb = rig.snap.vips.services()[0].fallback_idx().unwrap().get();
    assert_eq!(fb, 2);
    assert_eq!(rig.tables.active[0], vec![0, 0, 1]);
    assert_eq!(rig.tables.counters[0].reals[fb], [1, syn.len() as u64, 1]);
    // The reals come back: the sorry flow stays; new flows go to reals.
    swap(&mut rig, spec(reals4(2, 80)), 2);
    assert_eq!(Rig::real_of(&rig.run(&ack).1), 5);
    assert_eq!(rig.tables.active[0], vec![0, 0, 1], "follows the fallback");
    let (_, out) = rig.run(&builder::tcp4(&tcp4(
        CLIENT4,
        40001,
        VIP4,
        80,
        WireFlags::SYN,
    )));
    assert_ne!(Rig::real_of(&out), 5);
    assert_eq!(rig.tables.counters[0].reals[fb][0], 2);
    // The fallback is removed by a reload: its flow is rescheduled.
    swap(
        &mut rig,
        svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(2, 80)),
        3,
    );
    let (o, out) = rig.run(&ack);
    assert_eq!(o, Outcome::Forward { port: 0 });
    assert_ne!(Rig::real_of(&out), 5);
    assert_eq!(rig.tables.active[0].iter().sum::<u32>(), 2);
    // Its route went with it.
    assert!(rig
        .snap
        .next_hops()
        .iter()
        .all(|r| r.next_hop != FALLBACK4.parse::<IpAddr>().unwrap()));
}

#[test]
fn the_fallback_needs_a_route_and_a_neighbour_like_a_real() {
    let spec = with_fallback(
        svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, none_eligible(8080)),
        Real {
            addr: "192.0.2.99".parse().unwrap(), // no static MAC
            ..fallback4(8080)
        },
    );
    let mut rig = Rig::small(vec![spec]);
    let hops = rig.snap.next_hops();
    assert!(hops
        .iter()
        .any(|r| r.next_hop == "192.0.2.99".parse::<IpAddr>().unwrap()));
    let syn = builder::tcp4(&tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN));
    assert_eq!(rig.run(&syn).0, Outcome::Dropped(DropReason::NeighMiss));
    let asked: Vec<_> = rig.reqs.drain().collect();
    assert_eq!(asked[0].next_hop, "192.0.2.99".parse::<IpAddr>().unwrap());
}
