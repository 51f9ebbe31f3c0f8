//! `[[outbound]]`: a real's own connections leave from the balancer's
//! address and their answers come back to the real; nothing else gets in.

use super::*;
use crate::pipeline::outbound::{OutboundRule, OUTBOUND_PORTS};

const REAL: &str = "192.0.2.21";
const LB4: &str = "192.0.2.2";
const REMOTE: &str = "203.0.113.80";

fn rule() -> OutboundRule {
    OutboundRule {
        sources: vec![(IpAddr::V4(v4("192.0.2.0")), 24)],
        address: IpAddr::V4(v4(LB4)),
    }
}

fn rig(rules: Vec<OutboundRule>) -> Rig {
    let mut r = Rig::small(vec![svc(
        1,
        VIP4,
        Proto::Tcp,
        80,
        Mode::Nat,
        reals4(2, 8080),
    )]);
    let s = std::mem::replace(&mut r.snap, snapshot(Vec::new()));
    r.snap = s.with_outbound(rules);
    r
}

/// A frame from the real (on the LAN, its own MAC) to `dst`.
fn from_real(sport: u16, dst: &str, dport: u16, flags: WireFlags) -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        src_mac: real_mac(1),
        ..tcp4(REAL, sport, dst, dport, flags)
    }
}

#[test]
fn a_reals_connection_leaves_from_the_balancer_and_its_answers_come_back() {
    for general in [false, true] {
        let mut r = rig(vec![rule()]);
        let lport = *OUTBOUND_PORTS.start();
        let (o, out) = r.run_on(
            &builder::tcp4(&from_real(40000, REMOTE, 443, WireFlags::SYN)),
            general,
        );
        assert_eq!(o, Outcome::Forward { port: 0 });
        let want = builder::tcp4(&FrameSpec {
            src_mac: LB,
            dst_mac: GW_MAC,
            src: v4(LB4),
            src_port: lport,
            ttl: 63,
            ..from_real(40000, REMOTE, 443, WireFlags::SYN)
        });
        assert_eq!(out, want, "SYN out from {LB4}:{lport}, to the gateway");
        // The answer, to the balancer's address and that port.
        let answer = FrameSpec {
            src_mac: GW_MAC,
            ..tcp4(REMOTE, 443, LB4, lport, WireFlags::SYN | WireFlags::ACK)
        };
        let (o, out) = r.run_on(&builder::tcp4(&answer), general);
        assert_eq!(o, Outcome::Forward { port: 0 });
        let want = builder::tcp4(&FrameSpec {
            src_mac: LB,
            dst_mac: real_mac(1),
            dst: v4(REAL),
            dst_port: 40000,
            ttl: 63,
            ..answer.clone()
        });
        assert_eq!(out, want, "SYN-ACK back to the real");
        // Later segments of the flow keep its port.
        let (_, out) = r.run_on(
            &builder::tcp4(&from_real(40000, REMOTE, 443, WireFlags::ACK)),
            general,
        );
        assert_eq!(u16::from_be_bytes([out[34], out[35]]), lport);
        // UDP (DNS) too.
        let dns = FrameSpec {
            src_mac: real_mac(1),
            ..tcp4(REAL, 5000, "203.0.113.53", 53, WireFlags::SYN)
        };
        let (o, out) = r.run_on(&builder::udp4(&dns), general);
        assert_eq!(o, Outcome::Forward { port: 0 });
        assert_eq!(u16::from_be_bytes([out[34], out[35]]), lport + 1);
        let c = r.tables.outbound.counters;
        assert_eq!((c.new_flows, c.packets_out, c.packets_in), (2, 3, 1));
    }
}

#[test]
fn nothing_else_gets_in() {
    let mut r = rig(vec![rule()]);
    let lport = *OUTBOUND_PORTS.start();
    assert_eq!(
        r.run(&builder::tcp4(&from_real(
            40000,
            REMOTE,
            443,
            WireFlags::SYN
        )))
        .0,
        Outcome::Forward { port: 0 }
    );
    // Another remote, or another port of the range, to the same address:
    // the kernel's business (it answers with a RST), never the real's.
    for (src, sport, dport) in [
        ("203.0.113.81", 443, lport),
        (REMOTE, 444, lport),
        (REMOTE, 443, lport + 1),
    ] {
        let f = tcp4(src, sport, LB4, dport, WireFlags::SYN);
        assert_eq!(
            r.run(&builder::tcp4(&f)).0,
            Outcome::ToKernel,
            "{src}:{sport} -> {dport}"
        );
    }
    // A client straight to a real's address: not routed.
    let f = tcp4(CLIENT4, 50000, REAL, 22, WireFlags::SYN);
    assert_eq!(
        r.run(&builder::tcp4(&f)).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
    // A real's segment that is no SYN opens nothing (a late NAT reply, say).
    let f = from_real(8080, CLIENT4, 40001, WireFlags::ACK);
    assert_eq!(
        r.run(&builder::tcp4(&f)).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
    assert_eq!(r.tables.outbound.len(), 1);
    // Sources outside the rule, and no rule at all: not translated.
    let mut r = rig(vec![OutboundRule {
        sources: vec![(IpAddr::V4(v4("192.0.2.128")), 25)],
        ..rule()
    }]);
    let f = from_real(40000, REMOTE, 443, WireFlags::SYN);
    assert_eq!(
        r.run(&builder::tcp4(&f)).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
    let mut r = rig(Vec::new());
    assert_eq!(
        r.run(&builder::tcp4(&f)).0,
        Outcome::Dropped(DropReason::NotOurs)
    );
}

#[test]
fn nat_replies_are_not_mistaken_for_outbound_connections() {
    let mut r = rig(vec![rule()]);
    let syn = tcp4(CLIENT4, 40000, VIP4, 80, WireFlags::SYN);
    let (o, out) = r.run(&builder::tcp4(&syn));
    assert_eq!(o, Outcome::Forward { port: 0 });
    let real = Rig::real_of(&out);
    let reply = FrameSpec {
        src_mac: real_mac(real),
        ..tcp4(
            &format!("192.0.2.2{real}"),
            8080,
            CLIENT4,
            40000,
            WireFlags::SYN | WireFlags::ACK,
        )
    };
    let (o, out) = r.run(&builder::tcp4(&reply));
    assert_eq!(o, Outcome::Forward { port: 0 });
    assert_eq!(
        &out[26..30],
        &v4(VIP4).octets(),
        "translated as the NAT reply it is"
    );
    assert!(r.tables.outbound.is_empty());
}

/// A frame that claims an inside source but arrives on the outside port
/// (spoofed) opens no outbound flow; expired outbound flows leave with the
/// worker's expiry sweep, without new flows to push them out.
#[test]
fn spoofed_inside_sources_open_nothing_and_the_sweep_expires_outbound_flows() {
    let wan = PortInfo {
        mac: LB,
        addrs: vec![(IpAddr::V4(v4("198.51.100.2")), 24)],
        gateway_v4: None,
        gateway_v6: None,
        vips: Vec::new(),
        mtu: 1500,
    };
    let snap = Snapshot::new(
        1,
        vec![port_info(), wan],
        VipTable::build(Vec::new(), 1).unwrap(),
    )
    .with_outbound(vec![rule()]);
    let mut tables = Tables::new(1024, &snap);
    let neigh = neigh();
    let mut reqs = NeighRequests::default();
    let mut on = |tables: &mut Tables, frame: &[u8], port: u16, now: u64| {
        let mut b = TestBuffer::new(frame);
        let mut ctx = Ctx {
            snap: &snap,
            neigh: &neigh,
            now_ms: now,
            requests: &mut reqs,
            hops: 0,
        };
        tables.handle_general(&mut b, port, &mut ctx)
    };
    let dns = builder::udp4(&FrameSpec {
        src_mac: real_mac(1),
        ..tcp4(REAL, 5000, "203.0.113.53", 53, WireFlags::SYN)
    });
    // From outside (port 1): nothing opened.
    assert_eq!(
        on(&mut tables, &dns, 1, 1000),
        Outcome::Dropped(DropReason::NotOurs)
    );
    assert!(tables.outbound.is_empty());
    // From inside (port 0): a flow.
    assert!(matches!(
        on(&mut tables, &dns, 0, 1000),
        Outcome::Forward { .. }
    ));
    assert_eq!(tables.outbound.len(), 1);
    // 31 s later the sweep alone frees it (8 entries a call over 4,536).
    for _ in 0..600 {
        tables.sweep(&snap, 32_000, 16);
    }
    assert!(tables.outbound.is_empty());
}
