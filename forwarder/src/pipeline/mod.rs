//! The verdict for each frame: pure Rust, no DPDK, unit-testable.
//!
//! A frame from a data port ends in exactly one [`Outcome`]: answered in
//! place (ARP / neighbour discovery for an owned address, ping to a VIP),
//! handed to the kernel through the exception path (anything addressed to
//! the balancer itself), forwarded to a real server or back to a client,
//! or dropped with a [`DropReason`]. The worker turns outcomes into TX
//! bursts and counters; nothing here touches a queue, a clock or a lock,
//! and nothing allocates.
//!
//! # One pipeline
//!
//! Every frame enters through [`burst`]: [`Tables::handle_burst`] for a
//! received burst (the worker's entry), [`Tables::handle`] for one frame
//! (the same passes over a burst of one). The first pass classifies each
//! frame; the kind that makes up nearly all traffic (IPv4 TCP / UDP of an
//! established flow, and NAT flows' replies) is decided in the last pass
//! from the prefetched table. Every other frame goes through the general
//! path, [`Tables::handle_general`], whose steps each return a verdict or
//! go on, in the order a packet meets them, each in its own module:
//!
//! 1. `classify`: parse the IP header, refuse martian sources and
//!    impossible TCP flags (the IPv4 rule is the plain checks' own, from
//!    the port's `plan`); ARP, neighbour discovery and ping are answered
//!    in `local`.
//! 2. A later fragment goes where its first went ([`frag`]).
//! 3. To the balancer's own address: a hairpin flow's reply (`hairpin`,
//!    [`snat`]), a connection-sync datagram from the HA peer
//!    (`sync_apply`), else the kernel.
//! 4. To a VIP: `balance` looks the flow up or schedules it (persistence,
//!    scheduler, fallback, rejection), [`rewrite`] rewrites it for DR, NAT
//!    or TUN (one IPv4 NAT and one tunnel header for every path), `send`
//!    finds the next hop; `memo` keeps it per target for the plain hits.
//! 5. A NAT flow's reply: translated back to its client
//!    (`reply_to_client`, here).
//! 6. An ICMP error about a tracked flow (PMTU discovery) reaches the
//!    flow's real or client, translated like the flow (`icmp`).
//! 7. Anything else is dropped with its reason.
//!
//! What the steps read: the [`Snapshot`] the control plane built (services,
//! scheduler tables, routes to reals, owned addresses) and the `plan`
//! precomputed beside it; what they return: [`Outcome`]; what a worker
//! learns lives in its own [`Tables`] (`tables`: connections,
//! persistence, scheduler cursors, per-real active counts), which survive
//! snapshot swaps ([`Tables::adopt`]).
//!
//! When reals fail: a flow whose real is `Down` is rescheduled on its next
//! packet, or kept under [`OnDown::Keep`](service::OnDown) (`Disabled`
//! always reschedules, `Drain` always keeps: [`Service::keeps_flow`](service::Service::keeps_flow)).
//! A new flow no real can take goes to the service's fallback (sorry
//! server, the target after its reals, routed and counted like one);
//! without one it is refused in place, so the client learns at once
//! instead of retrying into silence: TCP gets a RST from `VIP:vport`, UDP
//! an ICMP(v6) port unreachable from the VIP quoting the datagram
//! ([`Outcome::Answered`], counted in [`ServiceCounters::rejected`]).

mod balance;
pub mod burst;
mod classify;
pub mod frag;
mod hairpin;
mod icmp;
pub mod limit;
mod local;
mod memo;
pub mod outbound;
mod outcome;
mod plan;
pub mod reset;
pub mod rewrite;
mod send;
mod snapshot;
pub mod snat;
mod sync_apply;
mod tables;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::buffer::PacketBuf;
use crate::conntrack::{self, ConnTable, Dir, FlowKey, FlowValue, Lookup, Nat, ReplyKey, L4};
use crate::neigh::{HopCache, NeighTable, Resolve};
use crate::packet::ethernet::{EtherType, EthernetFrame};
use crate::packet::ipv4::Ipv4Packet;
use crate::packet::ipv6::Ipv6Packet;
use crate::packet::{ip_proto, MacAddr};
use crate::service::{self, Mode, PersistTable, Proto, RealIdx, SchedState, VipTable};
use crate::steer::Steer;
use crate::sync::{Inbox, Op, Record, SyncLog, SyncSpec};

use classify::*;
use frag::{Frag, FragFwd, FragKey, FragTable, FragValue};
use limit::{Limit, NodeLimits};
pub use local::handle_local_arp;
pub use outcome::{DropReason, Outcome};
use rewrite::Side;
use send::*;
pub use snapshot::{same_prefix, NeighRequests, PortInfo, Route, Snapshot};
use snat::SnatPorts;
pub use tables::ServiceCounters;

/// The IPv6 VRRP group (RFC 5798 §5.1.2.2), passed to the control plane.
pub const VRRP_GROUP_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Ticks per second of the connection and persistence tables (ms).
pub const TICK_HZ: u32 = 1000;

/// Per-time context of one burst.
pub struct Ctx<'a> {
    /// The snapshot in force.
    pub snap: &'a Snapshot,
    /// The shared neighbour cache.
    pub neigh: &'a NeighTable,
    /// Milliseconds since the worker started.
    pub now_ms: u64,
    /// Next hops to resolve, filled by the pipeline.
    pub requests: &'a mut NeighRequests,
    /// Hand-offs the frame being decided has had ([`crate::steer`]): 0
    /// for a frame from a port.
    pub hops: u8,
}

/// A worker's own tables; they outlive snapshots.
pub struct Tables {
    /// Connections.
    pub conn: ConnTable,
    /// Source-IP persistence cache.
    pub persist: PersistTable,
    sched: Vec<SchedState>,
    /// Active flows per service index and real index.
    pub active: Vec<Vec<u32>>,
    /// Counters per service index (the burst path's latest counts wait
    /// in `fast_hops` until [`Tables::counters`] adds them).
    counters: Vec<ServiceCounters>,
    /// Where the later fragments of datagrams in flight go.
    frags: FragTable,
    /// Per service index: where its `new_flow_rate_limit` is kept ...
    limits: Vec<Limit>,
    /// ... in the budgets this node's workers share.
    node_limits: std::sync::Arc<NodeLimits>,
    /// Local ports of source-NAT (hairpin) flows.
    snat: SnatPorts,
    /// Outbound source-NAT flows (`[[outbound]]`).
    pub outbound: outbound::OutboundTable,
    /// Per connection-table cell: the client's sequence numbers of
    /// `tcp_reset_on_idle` flows (empty while no service asks).
    marks: Vec<reset::SeqMark>,
    /// RSTs for expired `tcp_reset_on_idle` flows, for the worker to send.
    pub resets: reset::Resets,
    /// Next-hop MACs this worker read recently.
    hops: HopCache,
    /// The next hop per target (flat index, see
    /// [`Snapshot`]`::fast_base`), remembered as briefly as `hops`.
    fast_hops: Vec<memo::FastHop>,
    /// Records for the HA peer (logging only while MASTER with a peer).
    pub sync: SyncLog,
    /// The node's workers' inboxes, by worker index (`None` for this
    /// one): where records from the peer go ([`Self::set_fanout`]).
    fanout: Vec<Option<std::sync::Arc<Inbox>>>,
    generation: u64,
    /// Per service index: what the fast and burst paths need of it with
    /// this table's hash key (the NIC's RSS hash turned into the table's,
    /// the service's part of the hash, its targets).
    svc_fast: Vec<burst::SvcFast>,
    /// Which worker owns what ([`crate::steer`]).
    steer: Steer,
    /// Frames the burst path forwarded on its own (tests check that the
    /// comparison with the general path is not vacuous).
    #[cfg(test)]
    plain_hits: u64,
}

impl Tables {
    /// The general path: every frame the burst path does not decide
    /// itself (see [`burst`]), and, for the tests and fuzzers that compare
    /// the two, any frame: the same verdicts, slower.
    pub fn handle_general<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        in_port: u16,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let Some(port) = ctx.snap.ports.get(usize::from(in_port)) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        let frame = buf.data();
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Outcome::Dropped(DropReason::Malformed);
        };
        if eth.tag_count() > 0 {
            return Outcome::Dropped(DropReason::VlanTagged);
        }
        // A group or all-zero source MAC is never a station's own.
        let src_mac = eth.src();
        if src_mac.0[0] & 1 == 1 || src_mac.0 == [0; 6] {
            return Outcome::Dropped(DropReason::Martian);
        }
        let link_group = frame[0] & 1 == 1;
        let ip = match eth.ethertype() {
            EtherType::ARP => {
                return local::handle_local_arp(buf.data_mut(), port, ctx.neigh, ctx.now_ms);
            }
            EtherType::IPV4 => match parse_v4(frame) {
                Ok(ip) => ip,
                Err(r) => return Outcome::Dropped(r),
            },
            EtherType::IPV6 => match parse_v6(frame) {
                Ok(ip) => ip,
                Err(r) => return Outcome::Dropped(r),
            },
            _ => return Outcome::Dropped(DropReason::UnknownEtherType),
        };

        // Neighbour discovery: answered for VIPs, passed up for own addresses.
        if ip.proto == ip_proto::ICMPV6 {
            if let Some(o) = local::handle_nd(buf, &ip, port, ctx.neigh, ctx.now_ms) {
                return o;
            }
        }
        let Some(fp) = ctx.snap.plan.ports.get(usize::from(in_port)) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        if martian(&ip, port, fp, link_group) {
            return Outcome::Dropped(DropReason::Martian);
        }
        // Later fragments go where their first fragment went.
        if ip.frag_later {
            return self.later_fragment(buf, &ip, port, ctx);
        }
        let own = match ip.dst {
            IpAddr::V4(d) => fp.is_own(u32::from(d)),
            IpAddr::V6(_) => port.is_self(ip.dst),
        };
        if own {
            // Replies of hairpin (source-NAT) flows come to our own address.
            if let Some(o) = self.snat_reply(buf, &ip, ctx) {
                return o;
            }
            if let Some(o) = self.outbound_reply(buf, &ip, ctx) {
                return o;
            }
            if let Some(o) = self.sync_datagram(buf, &ip, ctx) {
                return o;
            }
            return Outcome::ToKernel;
        }
        match ip.proto {
            ip_proto::TCP | ip_proto::UDP => self.handle_l4(buf, &ip, port, ctx),
            ip_proto::ICMP | ip_proto::ICMPV6 => {
                if let Some(o) = self.icmp_error(buf, &ip, port, ctx) {
                    return o;
                }
                if ctx.snap.ports.iter().any(|p| p.vips.contains(&ip.dst)) {
                    local::answer_echo(buf, &ip, port.mac)
                } else {
                    Outcome::Dropped(DropReason::NotOurs)
                }
            }
            // Link-local IPv4 multicast (VRRP adverts to 224.0.0.18, ...) and
            // the IPv6 VRRP group ff02::12 are for the control plane.
            _ if matches!(ip.dst, IpAddr::V4(d) if d.octets()[..3] == [224, 0, 0])
                || ip.dst == IpAddr::V6(VRRP_GROUP_V6) =>
            {
                Outcome::ToKernel
            }
            _ => Outcome::Dropped(if is_vip_addr(ctx.snap, ip.dst) {
                DropReason::Unsupported
            } else {
                DropReason::NotOurs
            }),
        }
    }

    fn handle_l4<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let f = buf.data();
        let Some(l4) = ip.l4 else {
            return Outcome::Dropped(DropReason::Malformed);
        };
        let min = if ip.proto == ip_proto::TCP { 20 } else { 8 };
        // The L4 header must fit in the IP packet, not merely in the frame
        // (Ethernet padding follows a short IP packet).
        let end = f.len().min(14 + ip.total_len);
        if end < l4 + min {
            return Outcome::Dropped(DropReason::Malformed);
        }
        // A TCP data offset below the header or past the segment.
        if ip.proto == ip_proto::TCP {
            let doff = usize::from(f[l4 + 12] >> 4) * 4;
            if doff < 20 || l4 + doff > end {
                return Outcome::Dropped(DropReason::Malformed);
            }
            if !tcp_flags_valid(f[l4 + 13]) {
                return Outcome::Dropped(DropReason::BadTcpFlags);
            }
        }
        let sport = u16::from_be_bytes([f[l4], f[l4 + 1]]);
        let dport = u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]);
        let flags = if ip.proto == ip_proto::TCP {
            conntrack::TcpFlags(f[l4 + 13])
        } else {
            conntrack::TcpFlags::NONE
        };
        let Some(proto) = Proto::from_number(ip.proto) else {
            return Outcome::Dropped(DropReason::Unsupported);
        };
        let snap = ctx.snap;
        if let Some(si) = snap.vips.lookup_idx(ip.dst, proto, dport) {
            return self.balance(buf, ip, si.0 as usize, sport, dport, flags, port, ctx, None);
        }
        // A reply from a real of a NAT service? Its client endpoint names
        // the worker that holds the flow.
        let now = ctx.now_ms as u32;
        if let Some(to) = self.steer.foreign_client(ctx.hops, ip.dst, dport) {
            return self.hand_off(ip, to, now);
        }
        let key = ReplyKey::Nat {
            real: ip.src,
            real_port: sport,
            client: ip.dst,
            client_port: dport,
            proto: proto.into(),
        };
        let h = self.conn.hash_reply(&key);
        match self.conn.lookup_reply(now, &key, h) {
            Lookup::Hit(id) => return self.reply_to_client(buf, ip, id, flags, ctx),
            Lookup::Expired(fr) => self.release_flow(snap, ctx.now_ms, &fr),
            Lookup::Miss => {}
        }
        // A real's own connection to the outside?
        self.outbound_forward(buf, ip, port, sport, dport, flags, ctx)
            .unwrap_or(Outcome::Dropped(DropReason::NotOurs))
    }

    /// Translates a reply of flow `id` (NAT: `real:rport -> client:cport`;
    /// SNAT: `real:rport -> local:lport`) back to `VIP:vport ->
    /// client:cport` and sends it to the client. Without an L4 header
    /// (not called so) only addresses would change.
    fn reply_to_client<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        id: conntrack::FlowId,
        flags: conntrack::TcpFlags,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let now = ctx.now_ms as u32;
        let e = self.conn.entry(id);
        let Some(si) = snap.vips.idx_by_id(e.service()) else {
            return Outcome::Dropped(DropReason::NotOurs);
        };
        let vip = snap.vips.services()[si].spec().vip;
        let st = self.conn.touch(id, now, Dir::Reply, flags);
        self.log_touched(ctx.now_ms, id, e.state(), e.synced(), st);
        let frame = buf.data_mut();
        if !rewrite::decrement_ttl(frame, 14) {
            return Outcome::Dropped(DropReason::TtlExceeded);
        }
        rewrite::translate(frame, 14, ip.l4, ip.proto, Side::Src, vip, Some(e.vport()));
        let snat_client = if let Nat::Snat(_) = e.nat() {
            let c = e.client();
            rewrite::translate(
                frame,
                14,
                ip.l4,
                ip.proto,
                Side::Dst,
                c,
                Some(e.client_port()),
            );
            Some(c)
        } else {
            None
        };
        if let Some(fr) = ip.frag.filter(Frag::is_first) {
            let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
            let fwd = FragFwd::ToClient {
                client: snat_client,
            };
            let v = FragValue {
                si: si as u32,
                real: e.real_hint(),
                fwd,
            };
            self.frags.insert(now, &key, v, u32::from(fr.len));
        }
        let c = &mut self.counters[si];
        c.packets_out += 1;
        c.bytes_out += frame.len() as u64;
        let Some(route) = snap.route(e.client()) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        send_via(&mut self.hops, buf, route, snap, ctx)
    }
}
#[cfg(test)]
mod tests;
