//! Shared pieces of ferrolb's fuzz targets: the fixed balancer the
//! `pipeline` target drives, the input format it reads, and the checks it
//! makes on every frame that leaves. `examples/gen_corpus.rs` builds the
//! checked-in seeds from the same addresses.
//!
//! # The `pipeline` input
//!
//! A sequence of records, each `[ctl] [len_hi] [len_lo] [frame bytes]`:
//!
//! * `ctl` bits 7..6 pick the unit of a clock advance taken *before* the
//!   frame (none, ms, s, h) and bits 5..0 its amount, so connections,
//!   persistence entries and fragment entries expire (and, over many
//!   records, the 32-bit millisecond clock of the tables wraps);
//! * the length, big-endian, is clamped to the bytes left and to the
//!   2048 bytes a test buffer holds; the frame arrives on port `len_hi >> 7`
//!   (0 = wan, 1 = lan);
//! * a zero-length record with `ctl` odd swaps the snapshot (all reals up
//!   ↔ some reals down, drained, removed, re-weighted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use forwarder::neigh::NeighTable;
use forwarder::packet::MacAddr;
use forwarder::pipeline::{PortInfo, Snapshot};
use forwarder::service::{
    Mode, OnDown, Persistence, Proto, Real, RealState, SchedulerKind, ServiceSpec, VipTable,
};

pub mod check;

/// MAC of the wan port (clients arrive here, through the gateway).
pub const WAN_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 1]);
/// MAC of the lan port (the reals live here).
pub const LAN_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 2]);
/// MAC of the wan gateway.
pub const GW_MAC: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 1]);

/// Wan: own address, gateway, IPv4 VIP.
pub const WAN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Wan IPv4 gateway.
pub const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The IPv4 VIP.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// Lan: own IPv4 address (reals are 10.0.0.21..=24).
pub const LAN4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// A client behind the gateway.
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Wan own IPv6 address.
pub const WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Wan IPv6 gateway.
pub const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// Lan own IPv6 address (reals are fd00::21..=24).
pub const LAN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// A client behind the gateway.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);

/// Real `i` (1..=4), IPv4.
pub fn real4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 20 + i)
}

/// Real `i` (1..=4), IPv6.
pub fn real6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x20 + u16::from(i))
}

/// MAC of real `i`.
pub fn real_mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x20 + i])
}

/// The sorry server of the services that have one (real 5).
pub fn sorry4() -> Ipv4Addr {
    real4(5)
}

/// Connection table size: small, so the table fills and evicts.
pub const CONN_CAPACITY: u32 = 256;

/// Services: (id, VIP, proto, port, mode, scheduler, persistence,
/// real port, fallback, on_down). Every mode in both families.
pub fn services(degraded: bool) -> Vec<ServiceSpec> {
    let v4 = IpAddr::V4(VIP4);
    let v6 = IpAddr::V6(VIP6);
    let reals4 = |port: u16| -> Vec<Real> {
        (1..=4)
            .map(|i| real(IpAddr::V4(real4(i)), port, i, degraded))
            .filter(|r| !(degraded && r.addr == IpAddr::V4(real4(4))))
            .collect()
    };
    let reals6 = |port: u16| -> Vec<Real> {
        (1..=4)
            .map(|i| real(IpAddr::V6(real6(i)), port, i, degraded))
            .filter(|r| !(degraded && r.addr == IpAddr::V6(real6(4))))
            .collect()
    };
    let persist = Some(Persistence {
        timeout_secs: 300,
        v4_prefix: 24,
        v6_prefix: 64,
    });
    let sorry = |port: u16| Real {
        addr: IpAddr::V4(sorry4()),
        port,
        weight: 1,
        state: RealState::Up,
        neigh: 0,
    };
    let spec =
        |id: u32, vip: IpAddr, proto: Proto, port: u16, mode: Mode, reals: Vec<Real>| ServiceSpec {
            id,
            name: format!("s{id}"),
            vip,
            proto,
            port,
            mode,
            scheduler: SchedulerKind::Maglev,
            persistence: None,
            reals,
            on_down: OnDown::Reschedule,
            fallback: None,
            // One service limits its new flows, so the limiter is fuzzed.
            new_flow_rate_limit: (id == 1).then_some(50),
            timeouts: (id == 2).then_some(forwarder::service::ServiceTimeouts {
                udp_ms: Some(3000),
                ..Default::default()
            }),
        };
    vec![
        // DR, TCP 80, Maglev, persistence by /24.
        ServiceSpec {
            persistence: persist,
            ..spec(1, v4, Proto::Tcp, 80, Mode::Dr, reals4(80))
        },
        // NAT, TCP 443 -> 8443, weighted least connections, a fallback,
        // established flows kept on a down real.
        ServiceSpec {
            scheduler: SchedulerKind::Wlc,
            fallback: Some(sorry(8443)),
            on_down: OnDown::Keep,
            ..spec(2, v4, Proto::Tcp, 443, Mode::Nat, reals4(8443))
        },
        // NAT, UDP 53, round robin, persistence, a fallback.
        ServiceSpec {
            scheduler: SchedulerKind::Rr,
            persistence: persist,
            fallback: Some(sorry(53)),
            ..spec(3, v4, Proto::Udp, 53, Mode::Nat, reals4(53))
        },
        // TUN, TCP, every port; source hashing.
        ServiceSpec {
            scheduler: SchedulerKind::Sh,
            ..spec(4, v4, Proto::Tcp, 0, Mode::Tun, reals4(0))
        },
        // DR, IPv6, TCP 80, weighted round robin.
        ServiceSpec {
            scheduler: SchedulerKind::Wrr,
            ..spec(5, v6, Proto::Tcp, 80, Mode::Dr, reals6(80))
        },
        // NAT, IPv6, TCP 443 (no port translation), least connections,
        // persistence by /64.
        ServiceSpec {
            scheduler: SchedulerKind::Lc,
            persistence: persist,
            ..spec(6, v6, Proto::Tcp, 443, Mode::Nat, reals6(0))
        },
        // NAT, IPv6, UDP every port.
        spec(7, v6, Proto::Udp, 0, Mode::Nat, reals6(0)),
        // TUN, IPv6, UDP 4789.
        spec(8, v6, Proto::Udp, 4789, Mode::Tun, reals6(4789)),
    ]
}

/// Real `i`; in the degraded snapshot real 1 is down, 2 draining, 3
/// re-weighted (and 4 removed by the caller).
fn real(addr: IpAddr, port: u16, i: u8, degraded: bool) -> Real {
    let (state, weight) = match (degraded, i) {
        (true, 1) => (RealState::Down, 1),
        (true, 2) => (RealState::Drain, 1),
        (true, 3) => (RealState::Up, 5),
        _ => (RealState::Up, u32::from(i)),
    };
    Real {
        addr,
        port,
        weight,
        state,
        neigh: 0,
    }
}

/// The two data ports.
pub fn ports() -> Vec<PortInfo> {
    vec![
        PortInfo {
            mac: WAN_MAC,
            addrs: vec![(IpAddr::V4(WAN4), 24), (IpAddr::V6(WAN6), 64)],
            gateway_v4: Some(GW4),
            gateway_v6: Some(GW6),
            vips: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
            mtu: 1500,
        },
        PortInfo {
            mac: LAN_MAC,
            addrs: vec![(IpAddr::V4(LAN4), 24), (IpAddr::V6(LAN6), 64)],
            gateway_v4: None,
            gateway_v6: None,
            vips: Vec::new(),
            mtu: 1500,
        },
    ]
}

/// The two snapshots (all up; degraded), built once: a Maglev table per
/// service is too costly to build per input.
pub fn snapshots() -> &'static [Snapshot; 2] {
    static SNAPS: OnceLock<[Snapshot; 2]> = OnceLock::new();
    SNAPS.get_or_init(|| {
        let build = |generation, degraded| {
            let vips = VipTable::build(services(degraded), generation).expect("valid services");
            // Connection sync with a peer on the lan port: the first
            // snapshot is a MASTER (logs and sends), the degraded one a
            // BACKUP that takes the peer's datagrams in, with the full
            // service set on standby.
            let peer = IpAddr::V4(std::net::Ipv4Addr::from(u32::from(LAN4) + 1));
            let snap =
                Snapshot::new(generation, ports(), vips).with_sync(forwarder::sync::SyncSpec {
                    peer,
                    port: 8848,
                    send: !degraded,
                    fingerprint: 0xf1,
                });
            if degraded {
                let all = VipTable::build(services(false), generation).expect("valid services");
                snap.with_standby(all)
            } else {
                snap
            }
        };
        [build(1, false), build(2, true)]
    })
}

/// A neighbour cache that knows the gateway and the reals (static), so
/// forwarding does not stop at a neighbour miss; anything else is learnt.
pub fn neigh() -> NeighTable {
    let t = NeighTable::new(64);
    t.set_static(IpAddr::V4(GW4), GW_MAC);
    t.set_static(IpAddr::V6(GW6), GW_MAC);
    for i in 1..=5 {
        t.set_static(IpAddr::V4(real4(i)), real_mac(i));
        t.set_static(IpAddr::V6(real6(i)), real_mac(i));
    }
    t
}

/// One record of a `pipeline` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// Advance the clock by `advance_ms`, then hand `frame` to port `port`.
    Frame {
        /// Clock advance before the frame.
        advance_ms: u64,
        /// Input port (0 wan, 1 lan).
        port: u16,
        /// The frame.
        frame: &'a [u8],
    },
    /// Advance the clock, then swap to the other snapshot.
    Swap {
        /// Clock advance before the swap.
        advance_ms: u64,
    },
}

/// Largest frame a record carries (a [`forwarder::buffer::TestBuffer`]'s room).
pub const MAX_FRAME: usize = 2048;

/// Splits a `pipeline` input into records (see the crate docs).
pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&ctl, rest) = data.split_first()?;
        let advance_ms = u64::from(ctl & 0x3f)
            * match ctl >> 6 {
                0 => 0,
                1 => 1,
                2 => 1000,
                _ => 3_600_000,
            };
        let [hi, lo, ..] = *rest else {
            data = &[];
            return None;
        };
        let rest = &rest[2..];
        let len = (usize::from(hi & 0x7f) << 8 | usize::from(lo))
            .min(rest.len())
            .min(MAX_FRAME);
        let (frame, tail) = rest.split_at(len);
        data = tail;
        if len == 0 && ctl & 1 == 1 {
            return Some(Record::Swap { advance_ms });
        }
        Some(Record::Frame {
            advance_ms,
            port: u16::from(hi >> 7),
            frame,
        })
    })
}

/// Encodes one frame record (the inverse of [`records`]).
pub fn encode_frame(out: &mut Vec<u8>, advance_ctl: u8, port: u16, frame: &[u8]) {
    assert!(frame.len() <= MAX_FRAME && port <= 1);
    out.push(advance_ctl);
    out.push(((frame.len() >> 8) as u8) | ((port as u8) << 7));
    out.push(frame.len() as u8);
    out.extend_from_slice(frame);
}

/// Encodes a snapshot swap.
pub fn encode_swap(out: &mut Vec<u8>) {
    out.extend_from_slice(&[1, 0, 0]);
}
