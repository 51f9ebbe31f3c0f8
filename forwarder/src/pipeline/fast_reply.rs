//! The IPv4 fast path of NAT replies: a TCP segment or UDP datagram
//! `real:rport -> client:cport` of a NAT flow, translated back to
//! `VIP:vport -> client:cport` in 32-bit arithmetic.
//!
//! [`Tables::fast_reply_v4`] is called by [`Tables::fast_v4`] for a frame
//! that passed every check of the fast path (Ethernet, IPv4 header and
//! checksum, not a fragment, not martian, not to an own address, L4
//! header and TCP flags) but matches no service of the fast path's VIP
//! table. Its contract is the fast path's: the final [`Outcome`], exactly
//! as the general path (`Tables::handle_l4`, then
//! `Tables::reply_to_client`) would give it, or `None` with nothing
//! changed. It answers only for
//!
//! * no service on the destination at all (the VIP table of the fast
//!   path lacks services on v4-mapped IPv6 VIPs, which IPv4 packets
//!   reach: with any of those, the general lookup is asked too);
//! * a live, unexpired plain NAT flow (IPv4 client and real) of the
//!   reply key ([`ConnTable::find_reply_v4`](crate::conntrack::ConnTable::find_reply_v4))
//!   whose service is in the snapshot, on an IPv4 VIP;
//! * a TTL that allows a hop and a route to the client.
//!
//! Everything else takes the general path: a miss, an expired flow (the
//! general lookup frees it), a TTL at its end (the general path touches
//! the flow, then drops), no route. Replies of source-NAT (hairpin)
//! flows come to an own address, which the fast path leaves to the
//! general path before it gets here.

use std::net::{IpAddr, Ipv4Addr};

use super::{ip_proto, rewrite, send_via, Ctx, Outcome, PortInfo, Route, Tables};
use crate::buffer::PacketBuf;
use crate::conntrack::{Dir, TcpFlags, L4};
use crate::packet::be16;
use crate::service::Proto;

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

impl Tables {
    /// The reply fast path (see the module docs) for a frame [`Self::fast_v4`]
    /// checked: a TCP or UDP header at 34, source `s`, destination `d`
    /// (host order), `flags` its TCP flags, `hint` the reply hash from
    /// [`Self::reply_hash_v4`] if the worker computed it. `Some` outcome,
    /// or `None` with nothing changed.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fast_reply_v4<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        s: u32,
        d: u32,
        proto: u8,
        flags: TcpFlags,
        ctx: &mut Ctx<'_>,
        hint: Option<u32>,
    ) -> Option<Outcome> {
        let snap = ctx.snap;
        let f = buf.data();
        let (sport, dport) = (be16(f, 34), be16(f, 36));
        // The TTL must allow a hop (the general path touches the flow
        // before it drops the frame: its business).
        if f[22] <= 1 {
            return None;
        }
        let (real, client) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
        let (l4, p) = if proto == ip_proto::TCP {
            (L4::Tcp, Proto::Tcp)
        } else {
            (L4::Udp, Proto::Udp)
        };
        if snap.mapped_vips && snap.vips.lookup_idx(IpAddr::V4(client), p, dport).is_some() {
            return None;
        }
        let now = ctx.now_ms as u32;
        // A hint is only looked up with: a wrong one misses, and the
        // general path looks up again.
        let hash = match hint {
            Some(h) => h,
            None => self.conn.hash_reply_v4(real, sport, client, dport, l4),
        };
        let hit = self
            .conn
            .find_reply_v4(now, real, sport, client, dport, l4, hash)?;
        let si = snap.vips.idx_by_id(hit.service)?;
        let IpAddr::V4(vip) = snap.vips.services()[si].spec().vip else {
            return None;
        };
        let route = snap.fast_routes.route(d)?;

        // Committed: what `reply_to_client` does.
        let st = self.conn.touch(hit.id, now, Dir::Reply, flags);
        self.log_touched(ctx.now_ms, hit.id, hit.state, hit.synced, st);
        let f = buf.data_mut();
        // TTL down, source to VIP:vport.
        rewrite::nat_v4(f, 26, 34, u32::from(vip), hit.vport);
        let len = f.len() as u64;
        let c = &mut self.counters[si];
        c.packets_out += 1;
        c.bytes_out += len;
        Some(send_via(&mut self.hops, buf, route, snap, ctx))
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
