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
//! One linear path of small steps, each returning a verdict or going on:
//! parse → later fragment? (fragment table) → own address? (hairpin
//! reply, connection-sync datagram from the HA peer, else kernel) → VIP? (connection table → persistence →
//! scheduler → rewrite for DR / NAT / TUN) → NAT reply? → ICMP error
//! about a flow? → drop.
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
//!
//! The stages, each in its module:
//!
//! * `classify`: parse the IP header, refuse martians and impossible TCP
//!   flags, tell the balancer's and the VIPs' addresses.
//! * `balance`: a packet to a VIP: look its flow up or schedule it, then
//!   rewrite it ([`rewrite`]) and send it; what a freed flow gives back.
//! * `send`: the next hop's MAC, or a resolution request.
//! * `sync_apply`: connection-sync records in and out.
//! * `snapshot` ([`Snapshot`], [`Route`], [`PortInfo`]) and `outcome`
//!   ([`Outcome`], [`DropReason`]): what the stages read and return.
//! * [`burst`]: the worker's entry, a whole received burst at a time:
//!   the frames that make up nearly all traffic (IPv4 TCP/UDP of
//!   established flows, and NAT flows' replies) decided in passes that prefetch the
//!   connection table, the others frame by frame through the general
//!   path; [`Tables::handle`] is the same passes over one frame.
//! * `plan`: what the burst path reads of a snapshot, precomputed beside
//!   it; `memo`: what a worker remembers per target (next hop, tunnel).
//! * [`frag`]: later fragments of a datagram go where its first went.
//! * [`icmp`]: ICMP errors about tracked flows (PMTU discovery) reach the
//!   flow's real, or its client, translated like the flow.
//! * [`hairpin`]: a real that connects to its own VIP (or a NAT client on
//!   a real's own link) is source-NATed so both legs cross the balancer;
//!   DR and TUN avoid sending a real its own flow.
//!
//! What the control plane decides lives in an immutable [`Snapshot`]
//! (services, scheduler tables, routes to reals, owned addresses); what a
//! worker learns lives in its own [`Tables`] (connections, persistence,
//! scheduler cursors, per-real active counts), which survive snapshot swaps
//! ([`Tables::adopt`]).

mod balance;
pub mod burst;
mod classify;
pub mod frag;
mod hairpin;
mod icmp;
pub mod limit;
mod local;
mod memo;
mod outcome;
mod plan;
pub mod rewrite;
mod send;
mod snapshot;
pub mod snat;
mod sync_apply;

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

use balance::*;
use classify::*;
use frag::{Frag, FragFwd, FragKey, FragTable, FragValue};
use limit::{Limit, NodeLimits};
pub use local::handle_local_arp;
pub use outcome::{DropReason, Outcome};
use rewrite::Side;
use send::*;
pub use snapshot::{same_prefix, NeighRequests, PortInfo, Route, Snapshot};
use snat::SnatPorts;

/// The IPv6 VRRP group (RFC 5798 §5.1.2.2), passed to the control plane.
pub const VRRP_GROUP_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Ticks per second of the connection and persistence tables (ms).
pub const TICK_HZ: u32 = 1000;

/// Per-service counters of one worker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Packets forwarded, client → real.
    pub packets_in: u64,
    /// Bytes forwarded, client → real.
    pub bytes_in: u64,
    /// Packets translated back, real → client (NAT).
    pub packets_out: u64,
    /// Bytes translated back (NAT).
    pub bytes_out: u64,
    /// New flows.
    pub new_flows: u64,
    /// New flows refused because no real (nor fallback) could take them:
    /// answered with a TCP RST or an ICMP port unreachable.
    pub rejected: u64,
    /// Per target (same index as the service's [`targets`](service::Service::targets):
    /// the reals, then the fallback): packets, bytes, new flows.
    pub reals: Vec<[u64; 3]>,
}

impl Clone for ServiceCounters {
    fn clone(&self) -> Self {
        let mut c = ServiceCounters::default();
        c.clone_from(self);
        c
    }

    /// Reuses `self`'s buffers: publishing counters allocates nothing once
    /// the shapes match.
    fn clone_from(&mut self, o: &Self) {
        self.packets_in = o.packets_in;
        self.bytes_in = o.bytes_in;
        self.packets_out = o.packets_out;
        self.bytes_out = o.bytes_out;
        self.new_flows = o.new_flows;
        self.rejected = o.rejected;
        self.reals.clone_from(&o.reals);
    }
}

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

/// [`Tables`]`::fast_hops` for `snap`: each target's word, nothing
/// remembered.
fn fast_targets(snap: &Snapshot) -> Vec<memo::FastHop> {
    snap.plan
        .targets
        .iter()
        .map(|&word| memo::FastHop {
            word,
            ..memo::FastHop::default()
        })
        .collect()
}

/// Persistence entries per worker.
const PERSIST_CAPACITY: usize = 65536;

impl Tables {
    /// Tables for `conn_capacity` flows, shaped for `snap`, of a node's
    /// only worker (the whole source-NAT range, [`snat::DEFAULT_SNAT_PORTS`]).
    pub fn new(conn_capacity: u32, snap: &Snapshot) -> Tables {
        Self::for_worker(conn_capacity, snap, Steer::single())
    }

    /// Tables of the worker `steer` describes: its share of the
    /// source-NAT range, and hand-offs of what other workers own.
    pub fn for_worker(conn_capacity: u32, snap: &Snapshot, steer: Steer) -> Tables {
        let mut t = Self::with_snat_ports(conn_capacity, snap, steer.snat_range());
        t.steer = steer;
        t
    }

    /// Which worker owns what, as these tables see it.
    pub fn steer(&self) -> Steer {
        self.steer
    }

    /// Tables whose hairpin flows take local ports from `snat_ports`
    /// (give each worker sharing an address a disjoint range).
    pub fn with_snat_ports(
        conn_capacity: u32,
        snap: &Snapshot,
        snat_ports: std::ops::RangeInclusive<u16>,
    ) -> Tables {
        let mut cfg = conntrack::Config::new(conn_capacity);
        cfg.timeouts = conntrack::Timeouts::ipvs(TICK_HZ);
        let conn = ConnTable::new(cfg);
        let node_limits = std::sync::Arc::new(NodeLimits::default());
        Tables {
            limits: Self::limits_for(&node_limits, snap),
            node_limits,
            svc_fast: burst::SvcFast::all(&conn, snap),
            conn,
            persist: PersistTable::new(PERSIST_CAPACITY, TICK_HZ),
            sched: snap.vips.new_sched_states(),
            active: snap.vips.new_conn_counts(),
            counters: snap
                .vips
                .services()
                .iter()
                .map(|s| ServiceCounters {
                    reals: vec![[0; 3]; s.targets().len()],
                    ..Default::default()
                })
                .collect(),
            frags: FragTable::new(frag::FRAG_CAPACITY, frag::FRAG_TIMEOUT_MS),
            snat: SnatPorts::new(snat_ports),
            hops: HopCache::default(),
            fast_hops: fast_targets(snap),
            sync: Self::sync_log_for(snap),
            fanout: Vec::new(),
            generation: snap.generation,
            steer: Steer::single(),
            #[cfg(test)]
            plain_hits: 0,
        }
    }

    /// Hashes IPv4 flows with the Toeplitz key `key`, the RSS key the
    /// ports were given, so that the NIC's hash can stand for the
    /// table's ([`Self::flow_hash_v4`]). Only before the first flow:
    /// `false`, unchanged, after.
    pub fn set_rss_key(
        &mut self,
        key: [u8; conntrack::toeplitz::KEY_LEN],
        snap: &Snapshot,
    ) -> bool {
        if !self.conn.set_rss_key(key) {
            return false;
        }
        self.svc_fast = burst::SvcFast::all(&self.conn, snap);
        true
    }

    /// Keeps `new_flow_rate_limit` budgets in `node`, which the node's
    /// other workers share ([`limit`]): the limits hold per node. Before
    /// the first flow (budgets spent so far are forgotten).
    pub fn share_limits(&mut self, node: std::sync::Arc<NodeLimits>, snap: &Snapshot) {
        self.limits = Self::limits_for(&node, snap);
        self.node_limits = node;
    }

    fn limits_for(node: &NodeLimits, snap: &Snapshot) -> Vec<Limit> {
        snap.vips
            .services()
            .iter()
            .map(|s| Limit::of(node, s.id()))
            .collect()
    }

    fn sync_log_for(snap: &Snapshot) -> SyncLog {
        let mut l = SyncLog::default();
        l.set_enabled(snap.sync().is_some_and(|(s, _)| s.send));
        l
    }

    /// The fragment table (counters, occupancy).
    pub fn frags(&self) -> &FragTable {
        &self.frags
    }

    /// The source-NAT port pool.
    pub fn snat_ports(&self) -> &SnatPorts {
        &self.snat
    }

    /// Counters per service index of the adopted snapshot, with every
    /// packet forwarded so far counted.
    pub fn counters(&mut self) -> &[ServiceCounters] {
        self.settle_counters();
        &self.counters
    }

    /// Adds the burst path's waiting counts to the service counters.
    fn settle_counters(&mut self) {
        for (c, sv) in self.counters.iter_mut().zip(&self.svc_fast) {
            let base = sv.base as usize;
            for (r, rc) in c.reals.iter_mut().enumerate() {
                let Some(t) = self.fast_hops.get_mut(base + r) else {
                    break;
                };
                if t.packets != 0 {
                    c.packets_in += t.packets;
                    c.bytes_in += t.bytes;
                    rc[0] += t.packets;
                    rc[1] += t.bytes;
                    t.packets = 0;
                    t.bytes = 0;
                }
            }
        }
    }

    /// The generation of the snapshot these tables are shaped for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reshapes the tables for `new` (called between bursts, when the
    /// control plane publishes a snapshot; allocates). Connections are
    /// kept: each remembers its real by address, so it keeps that real if
    /// the real is still in its service.
    pub fn adopt(&mut self, old: &Snapshot, new: &Snapshot) {
        self.adopt_at(old, new, 0);
    }

    /// [`Self::adopt`] at tick `now_ms`: when this node starts sending
    /// connection sync (it took over), every flow it holds is described to
    /// the peer again on its next packet.
    pub fn adopt_at(&mut self, old: &Snapshot, new: &Snapshot, now_ms: u64) {
        self.settle_counters();
        let mut active = Vec::with_capacity(new.vips.services().len());
        let mut limits = Vec::with_capacity(new.vips.services().len());
        let mut counters = Vec::with_capacity(new.vips.services().len());
        for svc in new.vips.services() {
            let old_idx = old.vips.services().iter().position(|o| o.id() == svc.id());
            match old_idx {
                Some(oi) => {
                    limits.push(self.limits[oi]);
                    let o = &old.vips.services()[oi];
                    active.push(svc.remap_counts(o, &self.active[oi]));
                    let oc = &self.counters[oi];
                    let mut c = ServiceCounters {
                        reals: vec![[0; 3]; svc.targets().len()],
                        ..oc.clone()
                    };
                    for (ri, r) in o.targets().iter().enumerate() {
                        if let Some(nj) = svc.resolve_target(RealIdx(ri as u16), r.addr, r.port) {
                            c.reals[nj.get()] = oc.reals[ri];
                        }
                    }
                    counters.push(c);
                }
                None => {
                    limits.push(Limit::of(&self.node_limits, svc.id()));
                    active.push(vec![0; svc.targets().len()]);
                    counters.push(ServiceCounters {
                        reals: vec![[0; 3]; svc.targets().len()],
                        ..Default::default()
                    });
                }
            }
        }
        self.active = active;
        self.counters = counters;
        self.svc_fast = burst::SvcFast::all(&self.conn, new);
        // Services this snapshot brings in (a BACKUP taking over) may
        // already have flows, synced from the old MASTER: count them, so
        // least-connection schedulers and status see them. One scan of
        // the table, only then.
        let fresh: Vec<usize> = new
            .vips
            .services()
            .iter()
            .enumerate()
            .filter(|(_, s)| old.vips.by_id(s.id()).is_none())
            .map(|(i, _)| i)
            .collect();
        if !fresh.is_empty() && !self.conn.is_empty() {
            for e in self.conn.live() {
                let Some(si) = new.vips.idx_by_id(e.service()) else {
                    continue;
                };
                if !fresh.contains(&si) {
                    continue;
                }
                let svc = &new.vips.services()[si];
                if let Some(r) = svc.resolve_target(e.real_hint(), e.real(), e.real_port()) {
                    self.active[si][r.get()] += 1;
                }
            }
        }
        self.sync
            .set_enabled_at(new.sync().is_some_and(|(s, _)| s.send), now_ms);
        self.limits = limits;
        // Fragments in flight follow their service and real to their new
        // indexes (or are forgotten with them).
        let (olds, news) = (old.vips.services(), new.vips.services());
        self.frags.remap(|v| {
            if let FragFwd::Handoff { .. } = v.fwd {
                return Some(*v);
            }
            let o = olds.get(v.si as usize)?;
            let r = o.targets().get(v.real.get())?;
            let ni = news.iter().position(|s| s.id() == o.id())?;
            let nr = news[ni].resolve_target(v.real, r.addr, r.port)?;
            Some(FragValue {
                si: ni as u32,
                real: nr,
                fwd: v.fwd,
            })
        });
        self.sched = new.vips.new_sched_states();
        // Targets and routes may have changed: the memo starts afresh.
        self.fast_hops = fast_targets(new);
        self.generation = new.generation;
    }

    /// Expires idle flows (at most `budget` slots examined).
    pub fn sweep(&mut self, snap: &Snapshot, now_ms: u64, budget: u32) -> u32 {
        let (active, snat, sync) = (&mut self.active, &mut self.snat, &mut self.sync);
        self.conn.sweep(now_ms as u32, budget, |f| {
            release(snap, active, snat, sync, now_ms, f)
        })
    }

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
        if port.is_self(ip.dst) {
            // Replies of hairpin (source-NAT) flows come to our own address.
            if let Some(o) = self.snat_reply(buf, &ip, ctx) {
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
            Lookup::Hit(id) => self.reply_to_client(buf, ip, id, flags, ctx),
            Lookup::Expired(fr) => {
                self.release_flow(snap, ctx.now_ms, &fr);
                Outcome::Dropped(DropReason::NotOurs)
            }
            Lookup::Miss => Outcome::Dropped(DropReason::NotOurs),
        }
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
