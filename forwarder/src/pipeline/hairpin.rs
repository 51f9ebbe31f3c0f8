//! Hairpin flows: a real server that connects to its own VIP.
//!
//! * NAT: if the real chosen for a new flow is the client itself, or the
//!   client sits on the real's own link, the real's replies would go
//!   straight to the client and never be translated back (a real sending
//!   to itself answers itself; a neighbour is answered directly, from the
//!   real's address, which the client does not expect). Such a flow is
//!   also source-NATed: `client:cport -> VIP:vport` leaves as
//!   `local:lport -> real:rport`, where `local` is the balancer's address
//!   on the port facing the real ([`Route::src`]) and `lport` comes from
//!   the worker's [`SnatPorts`](super::snat::SnatPorts). The flow is
//!   stored with [`Nat::Snat`]; the replies `real:rport -> local:lport`
//!   arrive at an own address and are matched by [`ReplyKey::Snat`]
//!   before such frames go to the kernel (only for ports of the SNAT
//!   range), then translated back to `VIP:vport -> client:cport`. The
//!   port returns to the pool when the flow is freed (expiry, eviction,
//!   removal).
//! * DR and TUN: the packet keeps its addresses, so a real sent its own
//!   flow answers itself from the VIP; the balancer rather picks another
//!   real while one is eligible ([`pick_other`]). When the sender is the
//!   only eligible real, it gets its own flow: that works when the VIP is
//!   configured on the real (as DR and TUN require), the connection then
//!   being served locally.

use std::net::IpAddr;

use super::{rewrite, Ctx, IpInfo, Outcome, Route, Snapshot, Tables};
use crate::buffer::PacketBuf;
use crate::conntrack::{Lookup, ReplyKey, TcpFlags, L4};
use crate::packet::ip_proto;
use crate::service::hash::{fmix64, K_GOLDEN};
use crate::service::{Proto, RealIdx, SchedState, Service};

/// Whether a new NAT flow from `client` to real `r` of service `si` needs
/// source NAT: the client is the real, or the real reaches the client
/// directly (both on a connected prefix of the port facing the real).
pub(super) fn needs_snat(snap: &Snapshot, si: usize, r: RealIdx, client: IpAddr) -> bool {
    let Some(rs) = snap.vips.services()[si].target(r) else {
        return false;
    };
    if rs.addr == client {
        return true;
    }
    match snap.real_route(si, r) {
        Some(Route { port, next_hop, .. }) if next_hop == rs.addr => snap
            .ports
            .get(usize::from(port))
            .is_some_and(|p| p.connected(client).is_some()),
        _ => false,
    }
}

/// A real other than `exclude` for a new flow of `svc` (DR / TUN hairpin),
/// or `None` when `exclude` is the only eligible real. The scheduler is
/// asked again with a few re-mixed flow hashes (keeps Maglev's weights);
/// schedulers that would answer the same (`sh`, `lc`, persistence) fall
/// back to the first eligible other real from a hash-chosen start.
pub(super) fn pick_other(
    svc: &Service,
    state: &mut SchedState,
    conns: &[u32],
    flow_hash: u64,
    exclude: IpAddr,
) -> Option<RealIdx> {
    for k in 1..=4u64 {
        let h = fmix64(flow_hash ^ k.wrapping_mul(K_GOLDEN));
        match svc.pick(h, exclude, state, conns) {
            Some(r) if svc.reals()[r.get()].addr != exclude => return Some(r),
            Some(_) => {}
            None => return None,
        }
    }
    let n = svc.reals().len();
    if n == 0 {
        return None;
    }
    let start = (flow_hash % n as u64) as usize;
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| {
            let r = &svc.reals()[i];
            r.is_eligible() && r.addr != exclude
        })
        .map(|i| RealIdx(i as u16))
}

impl Tables {
    /// A frame for one of our own addresses: a reply of a source-NAT flow
    /// (TCP/UDP to a port of the SNAT range, or an ICMP error about such
    /// a flow) is translated back to its client; `None` sends the frame
    /// to the kernel.
    pub(super) fn snat_reply<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        match ip.proto {
            ip_proto::TCP | ip_proto::UDP => {}
            ip_proto::ICMP | ip_proto::ICMPV6 => return self.icmp_snat_error(buf, ip, ctx),
            _ => return None,
        }
        let l4 = ip.l4?;
        let f = buf.data();
        let min = if ip.proto == ip_proto::TCP { 20 } else { 8 };
        if f.len() < l4 + min {
            return None;
        }
        let dport = u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]);
        // The port names the worker that allocated it, and owns the flow.
        if let Some(to) = self.steer.foreign_snat(ctx.hops, dport) {
            return Some(self.hand_off(ip, to, ctx.now_ms as u32));
        }
        if !self.snat.contains(dport) {
            return None;
        }
        let sport = u16::from_be_bytes([f[l4], f[l4 + 1]]);
        let flags = if ip.proto == ip_proto::TCP {
            TcpFlags(f[l4 + 13])
        } else {
            TcpFlags::NONE
        };
        let proto: L4 = Proto::from_number(ip.proto)?.into();
        let key = ReplyKey::Snat {
            real: ip.src,
            real_port: sport,
            local_port: dport,
            proto,
        };
        let now = ctx.now_ms as u32;
        let h = self.conn.hash_reply(&key);
        match self.conn.lookup_reply(now, &key, h) {
            Lookup::Hit(id) => Some(self.reply_to_client(buf, ip, id, flags, ctx)),
            Lookup::Expired(fr) => {
                self.release_flow(ctx.snap, ctx.now_ms, &fr);
                None
            }
            Lookup::Miss => None,
        }
    }
}

/// Rewrites the source of a frame to `addr` (no port; ICMP and later
/// fragments), with checksums; used by the reply paths.
pub(super) fn set_src(frame: &mut [u8], ip: &IpInfo, addr: IpAddr) {
    rewrite::translate(frame, 14, ip.l4, ip.proto, rewrite::Side::Src, addr, None);
}

/// [`set_src`] for the destination.
pub(super) fn set_dst(frame: &mut [u8], ip: &IpInfo, addr: IpAddr) {
    rewrite::translate(frame, 14, ip.l4, ip.proto, rewrite::Side::Dst, addr, None);
}
