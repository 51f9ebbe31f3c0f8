//! What a worker remembers per target (flat index of the snapshot's
//! [`Plan`](super::plan::Plan)): its packed word, its next hop as last
//! resolved, a tunnel's outer header, and the burst path's counts not
//! yet added to the service counters. The general path fills it when it
//! sends to an IPv4 target; the burst path reads it for every plain hit.

use std::net::{IpAddr, Ipv4Addr};

use super::{finish_send, rewrite, Ctx, DropReason, Outcome, Route, Tables};
use crate::buffer::PacketBuf;
use crate::neigh::{Resolve, HOP_CACHE_MS};
use crate::service::{Mode, RealIdx};

/// What a worker keeps per target (flat index, as the snapshot's
/// `fast_base`) for the fast and burst paths: the target's packed word,
/// its next hop as last resolved, and the burst path's counts not yet
/// added to the service counters ([`Tables::counters`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHop {
    /// The snapshot's [`target_word`] of the target (0: not an IPv4
    /// target that keeps its flows).
    pub(super) word: u64,
    /// The next hop's MAC, then the output port's: the frame's first 12
    /// bytes.
    pub(super) macs: [u8; 12],
    /// The output port.
    pub(super) port: u16,
    /// The next hop is valid while `now_ms` is below (0: never filled).
    pub(super) until: u64,
    /// A tunnel target's outer source (the route's IPv4 source), the
    /// constant part of its outer header's sum ([`tun_sum`]) and the
    /// output port's MTU, remembered with the next hop (`tun_mtu` 0: not
    /// a tunnel's memo).
    pub(super) tun_src: u32,
    pub(super) tun_sum: u32,
    pub(super) tun_mtu: u16,
    /// Packets and bytes forwarded by the burst path, to add to the
    /// service's and the target's counters.
    pub(super) packets: u64,
    pub(super) bytes: u64,
}

impl Tables {
    /// [`Tables::deliver`] of a DR or NAT packet to an IPv4 real: the
    /// rewrite, and the next hop remembered per target for the burst path.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_v4<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        si: usize,
        r: RealIdx,
        vport: u16,
        snat: Option<u16>,
        mode: Mode,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        let Some(rs) = svc.target(r) else {
            return Outcome::Dropped(DropReason::NoReal);
        };
        let len = buf.len() as u64;
        let c = &mut self.counters[si];
        c.packets_in += 1;
        c.bytes_in += len;
        if let Some(rc) = c.reals.get_mut(r.get()) {
            rc[0] += 1;
            rc[1] += len;
        }
        // The next hop's MAC, remembered per target for as long as the
        // worker's next-hop memo would (and only within one snapshot: a
        // memo implies the route).
        let t = snap.plan.base.get(si).map(|b| *b as usize + r.get());
        let memo = t
            .and_then(|t| self.fast_hops.get(t))
            .filter(|m| ctx.now_ms < m.until)
            .copied();
        let route = match memo {
            Some(_) => None,
            None => match snap.real_route(si, r) {
                Some(rt) => Some(rt),
                None => return Outcome::Dropped(DropReason::NoRoute),
            },
        };
        if mode == Mode::Nat {
            // Checked before committing: an IPv4 real, and for source NAT
            // an IPv4 route.
            let IpAddr::V4(ra) = rs.addr else {
                return Outcome::Dropped(DropReason::NoRoute);
            };
            let la = match snat {
                Some(p) => match route.or_else(|| snap.real_route(si, r)).map(|rt| rt.src) {
                    Some(IpAddr::V4(la)) => Some((u32::from(la), p)),
                    _ => return Outcome::Dropped(DropReason::NoRoute),
                },
                None => None,
            };
            let port = if rs.port != 0 { rs.port } else { vport };
            let f = buf.data_mut();
            rewrite::nat_v4(f, 30, 36, u32::from(ra), port);
            if let Some((a, p)) = la {
                // Hairpin: the source too (rare; the general rewrite).
                let a = IpAddr::V4(a.into());
                rewrite::translate(f, 14, Some(34), f[23], rewrite::Side::Src, a, Some(p));
            }
        }
        let route = match (memo, route) {
            (Some(m), _) => {
                let f = buf.data_mut();
                f[0..12].copy_from_slice(&m.macs);
                return Outcome::Forward { port: m.port };
            }
            (None, Some(rt)) => rt,
            (None, None) => return Outcome::Dropped(DropReason::NoRoute),
        };
        self.send_remembered(buf, t, route, None, ctx)
    }

    /// Sends `buf` to `route`'s next hop as the neighbour table knows it,
    /// and remembers that hop for target `t` (flat index) for as long as
    /// the worker's next-hop memo would: the fast and burst paths' memo.
    /// `tun`: the target is reached through an IPv4 tunnel from `route`'s
    /// (IPv4) source, out a port of that MTU, which the memo remembers too.
    #[inline]
    pub(super) fn send_remembered<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        t: Option<usize>,
        route: Route,
        tun: Option<(Ipv4Addr, Ipv4Addr, u16)>,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let res = ctx.neigh.resolve(route.next_hop, ctx.now_ms);
        if let Resolve::Known {
            mac,
            refresh: false,
        } = res
        {
            if let Some(m) = t.and_then(|t| self.fast_hops.get_mut(t)) {
                m.macs[..6].copy_from_slice(&mac.0);
                m.macs[6..].copy_from_slice(&snap.ports[usize::from(route.port)].mac.0);
                m.port = route.port;
                m.until = ctx.now_ms + HOP_CACHE_MS;
                if let Some((src, dst, mtu)) = tun {
                    m.tun_src = u32::from(src);
                    m.tun_sum = rewrite::tun_sum(u32::from(src), u32::from(dst));
                    m.tun_mtu = mtu;
                }
            }
        }
        finish_send(res, buf, route, snap, ctx)
    }
}
