//! The plan: what the burst path reads of a snapshot, precomputed beside
//! it in the forms its checks want (bit sets, packed words, an
//! open-addressed VIP index, flat target indexes). Built once per
//! snapshot by [`Plan::build`]; the control plane's view (services,
//! ports, routes) stays in [`Snapshot`](super::Snapshot).

use std::net::{IpAddr, Ipv4Addr};

use super::{PortInfo, Route};
use crate::service::{RealIdx, VipTable};

/// The plan of one snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Per port, its own addresses and martian sources.
    pub(crate) ports: Vec<FastPort>,
    /// The services on IPv4 VIPs.
    pub(crate) vips: FastVips,
    /// Per service index, the flat index of its first target (the
    /// worker's per-target memo, [`Tables`](super::Tables)`::fast_hops`).
    pub(crate) base: Vec<u32>,
    /// Per flat target index (as `base`): an IPv4 target that keeps its
    /// flows, packed for a one-word check ([`target_word`]); 0 for any
    /// other.
    pub(crate) targets: Vec<u64>,
    /// Some service has a v4-mapped IPv6 VIP, which IPv4 packets reach
    /// but [`FastVips`] does not hold.
    pub(crate) mapped_vips: bool,
    /// IPv4 routes.
    pub(crate) routes: FastRoutes,
}

impl Plan {
    /// The plan of `ports` and `vips`.
    pub(crate) fn build(ports: &[PortInfo], vips: &VipTable) -> Plan {
        let mut p = Plan {
            ports: ports.iter().map(FastPort::of).collect(),
            vips: FastVips::build(vips),
            routes: FastRoutes::of(ports),
            mapped_vips: vips
                .services()
                .iter()
                .any(|svc| matches!(svc.spec().vip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some())),
            ..Plan::default()
        };
        let mut base = 0u32;
        for svc in vips.services() {
            p.base.push(base);
            base += svc.targets().len() as u32;
            for (ri, t) in svc.targets().iter().enumerate() {
                let w = match t.addr {
                    IpAddr::V4(a) if svc.keeps_flow(RealIdx(ri as u16)) => {
                        target_word(u32::from(a), t.port)
                    }
                    _ => 0,
                };
                p.targets.push(w);
            }
        }
        p
    }
}

/// What the plain checks need of a port, precomputed per snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastPort {
    /// The port's own IPv4 addresses.
    pub(crate) own: Vec<u32>,
    /// Sources that make a frame martian besides the fixed ranges: the
    /// own addresses and the broadcast address of each subnet of /30 or
    /// shorter (sources no station uses).
    pub(crate) bad_src: Vec<u32>,
    /// The broadcast address of each subnet of /30 or shorter.
    pub(crate) broadcast: Vec<u32>,
    /// The last bytes of `own` and of `bad_src`, as 256-bit sets: an
    /// address whose last byte is in neither needs no look at the lists.
    own_last: [u64; 4],
    bad_src_last: [u64; 4],
}

/// Whether IPv4 source `s` may send to `d` as far as the addresses alone
/// tell: not 0/8, 127/8 or 224/3 (no station sends from them), not a land
/// packet (`s == d`). With [`FastPort::is_bad_src`], the whole IPv4
/// martian-source rule, for the plain checks and the general path alike.
#[inline(always)]
pub(crate) const fn v4_src_ok(s: u32, d: u32) -> bool {
    let o = s >> 24;
    (s != d) & (o != 0) & (o != 127) & (o < 224)
}

/// Adds `a`'s last byte to the 256-bit set `set`.
fn add_last(set: &mut [u64; 4], a: u32) {
    set[(a as usize >> 6) & 3] |= 1 << (a & 63);
}

/// Whether `a`'s last byte is in `set`.
#[inline(always)]
fn has_last(set: &[u64; 4], a: u32) -> bool {
    (set[(a as usize >> 6) & 3] >> (a & 63)) & 1 != 0
}

impl FastPort {
    pub(crate) fn of(p: &PortInfo) -> FastPort {
        let mut f = FastPort::default();
        for (a, len) in &p.addrs {
            if let IpAddr::V4(a) = a {
                let a = u32::from(*a);
                f.own.push(a);
                f.bad_src.push(a);
                if *len <= 30 {
                    let b = a | (u32::MAX >> u32::from(*len));
                    f.bad_src.push(b);
                    f.broadcast.push(b);
                }
            }
        }
        for &a in &f.own {
            add_last(&mut f.own_last, a);
        }
        for &a in &f.bad_src {
            add_last(&mut f.bad_src_last, a);
        }
        f
    }

    /// Whether IPv4 source `s` is one of [`Self::bad_src`].
    #[inline(always)]
    pub(crate) fn is_bad_src(&self, s: u32) -> bool {
        has_last(&self.bad_src_last, s) && self.bad_src.contains(&s)
    }

    /// Whether IPv4 destination `d` is a subnet broadcast of the port.
    #[inline]
    pub(crate) fn is_broadcast(&self, d: u32) -> bool {
        self.broadcast.contains(&d)
    }

    /// Whether IPv4 destination `d` is one of [`Self::own`].
    #[inline(always)]
    pub(crate) fn is_own(&self, d: u32) -> bool {
        has_last(&self.own_last, d) && self.own.contains(&d)
    }
}

/// A packed IPv4 target that keeps its flows: address, port, and a mark
/// (bit 0) no other target's word has.
#[inline(always)]
pub(crate) const fn target_word(addr: u32, port: u16) -> u64 {
    ((addr as u64) << 32) | ((port as u64) << 16) | 1
}

/// The services on IPv4 VIPs by (VIP, protocol, port): an open-addressed
/// table of packed keys, for the plain checks. Services on IPv6 (or
/// v4-mapped) VIPs are not in it: their packets take the general path.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastVips {
    keys: Box<[u64]>,
    idx: Box<[u32]>,
    shift: u32,
    /// The last bytes of the VIP addresses, as a 256-bit set: an address
    /// whose last byte is not in it has no service (a NAT reply's client,
    /// mostly), without a probe.
    last: [u64; 4],
}

/// Marks a used key (bits 24..32 are otherwise 0).
const VIP_USED: u64 = 1 << 24;

#[inline(always)]
pub(crate) const fn vip_key(vip: u32, proto: u8, port: u16) -> u64 {
    ((vip as u64) << 32) | VIP_USED | ((proto as u64) << 16) | port as u64
}

impl FastVips {
    pub(crate) fn build(vips: &VipTable) -> FastVips {
        let n = vips.services().len();
        let size = (n * 2).max(8).next_power_of_two();
        let mut t = FastVips {
            keys: vec![0; size].into_boxed_slice(),
            idx: vec![0; size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
            last: [0; 4],
        };
        for (i, svc) in vips.services().iter().enumerate() {
            let spec = svc.spec();
            let IpAddr::V4(a) = spec.vip else { continue };
            add_last(&mut t.last, u32::from(a));
            let k = vip_key(u32::from(a), spec.proto.number(), spec.port);
            let mut at = t.slot(k);
            while t.keys[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            t.keys[at] = k;
            t.idx[at] = i as u32;
        }
        t
    }

    #[inline(always)]
    fn slot(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline(always)]
    fn get(&self, k: u64) -> Option<usize> {
        let mask = self.keys.len().checked_sub(1)?;
        let mut at = self.slot(k);
        for _ in 0..self.keys.len() {
            let x = self.keys[at];
            if x == k {
                return Some(self.idx[at] as usize);
            }
            if x == 0 {
                return None;
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// As [`VipTable::lookup_idx`]: the exact port, else the VIP's
    /// wildcard service.
    #[inline(always)]
    pub(crate) fn lookup(&self, vip: u32, proto: u8, port: u16) -> Option<usize> {
        if !has_last(&self.last, vip) {
            return None;
        }
        match self.get(vip_key(vip, proto, port)) {
            Some(i) => Some(i),
            None if port != 0 => self.get(vip_key(vip, proto, 0)),
            None => None,
        }
    }
}

/// [`Snapshot::route`](super::Snapshot::route) of IPv4 addresses,
/// precomputed per snapshot: the connected IPv4 prefixes in the order
/// `route` tries them, then the gateway route (the same for every
/// address outside them).
#[derive(Debug, Clone, Default)]
pub(crate) struct FastRoutes {
    /// (network, mask, port, own address).
    nets: Vec<(u32, u32, u16, u32)>,
    gateway: Option<Route>,
}

impl FastRoutes {
    pub(crate) fn of(ports: &[PortInfo]) -> FastRoutes {
        let mut t = FastRoutes::default();
        for (i, p) in ports.iter().enumerate() {
            for (a, len) in &p.addrs {
                if let IpAddr::V4(a) = a {
                    // As `same_prefix`.
                    let m = match *len {
                        0 => 0,
                        l => u32::MAX << (32 - u32::from(l.min(32))),
                    };
                    t.nets.push((u32::from(*a) & m, m, i as u16, u32::from(*a)));
                }
            }
        }
        t.gateway = ports.iter().enumerate().find_map(|(i, p)| {
            let gw = IpAddr::V4(p.gateway_v4?);
            Some(Route {
                port: i as u16,
                next_hop: gw,
                src: p.connected(gw)?,
            })
        });
        t
    }

    /// `Snapshot::route(IpAddr::V4(d))`.
    #[inline]
    pub(crate) fn route(&self, d: u32) -> Option<Route> {
        for &(net, mask, port, src) in self.nets.iter() {
            if d & mask == net {
                return Some(Route {
                    port,
                    next_hop: IpAddr::V4(Ipv4Addr::from(d)),
                    src: IpAddr::V4(Ipv4Addr::from(src)),
                });
            }
        }
        self.gateway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::MacAddr;
    use std::net::Ipv6Addr;

    #[test]
    fn routes_as_the_snapshot() {
        let a4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let port = |addrs: Vec<(IpAddr, u8)>, gw: Option<&str>| PortInfo {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs,
            gateway_v4: gw.map(|g| g.parse().unwrap()),
            gateway_v6: None,
            vips: Vec::new(),
            mtu: 1500,
        };
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        let layouts = vec![
            vec![port(
                vec![(a4("192.0.2.2"), 24), (v6, 64)],
                Some("192.0.2.1"),
            )],
            vec![
                // A gateway not on a prefix of its port; another's is.
                port(vec![(a4("10.0.0.2"), 8)], Some("192.0.2.1")),
                port(
                    vec![(a4("192.0.2.2"), 25), (a4("192.0.2.130"), 32)],
                    Some("192.0.2.1"),
                ),
                port(vec![(a4("198.51.100.2"), 0)], None),
            ],
            vec![port(vec![(a4("203.0.113.9"), 31)], None)],
            vec![port(vec![(v6, 64)], Some("192.0.2.1"))],
            Vec::new(),
        ];
        let mut x = 0x1234_5678u32;
        for ports in layouts {
            let snap = crate::pipeline::Snapshot::new(
                1,
                ports,
                crate::service::VipTable::build(Vec::new(), 1).unwrap(),
            );
            let t = FastRoutes::of(&snap.ports);
            let mut addrs = vec![
                0xc000_0201,
                0xc000_0282,
                0xc000_0282,
                0x0a01_0203,
                0xcb00_7109,
                0xcb00_7108,
            ];
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                addrs.push(x);
                addrs.push(0xc000_0200 | (x & 0xff));
            }
            for d in addrs {
                assert_eq!(
                    t.route(d),
                    snap.route(IpAddr::V4(Ipv4Addr::from(d))),
                    "{d:#x}"
                );
            }
        }
    }
}
