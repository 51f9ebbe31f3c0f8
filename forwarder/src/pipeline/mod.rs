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
//! * [`burst`]: the worker's entry, a whole received burst at a time:
//!   the frames that make up nearly all traffic (IPv4 TCP/UDP of
//!   established flows, and NAT flows' replies) decided in passes that prefetch the
//!   connection table, the others frame by frame through the fast path
//!   (`fast`: established IPv4 flows, NAT replies) and the general path.
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

pub mod burst;
mod fast;
mod fast_reply;
pub mod frag;
mod hairpin;
mod icmp;
pub mod limit;
mod local;
pub mod rewrite;
pub mod snat;

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

use frag::{Frag, FragFwd, FragKey, FragTable, FragValue};
use limit::{Limit, NodeLimits};
pub use local::handle_local_arp;
use rewrite::Side;
use snat::SnatPorts;

/// The IPv6 VRRP group (RFC 5798 §5.1.2.2), passed to the control plane.
pub const VRRP_GROUP_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Ticks per second of the connection and persistence tables (ms).
pub const TICK_HZ: u32 = 1000;

/// Why a frame was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Too short or inconsistent at some layer.
    Malformed = 0,
    /// 802.1Q/802.1ad tagged (no VLAN is configured).
    VlanTagged,
    /// An EtherType the balancer does not handle.
    UnknownEtherType,
    /// ARP / ND not about an address this node owns.
    ArpNotOurs,
    /// IP traffic for an address this node neither owns nor balances.
    NotOurs,
    /// The transmit queue refused the frame.
    TxFull,
    /// An mbuf chain (frames over one buffer are not supported).
    MultiSegment,
    /// A VIP with no real able to take a new flow, where no refusal could
    /// be sent (a TCP RST, or an ICMP error about an ICMP error...).
    NoReal,
    /// The connection table could not make room.
    ConnTableFull,
    /// The next hop's MAC is not known yet (a request was sent).
    NeighMiss,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// No port reaches the destination.
    NoRoute,
    /// An IP fragment the balancer cannot place.
    Fragment,
    /// A protocol or message the VIP does not serve.
    Unsupported,
    /// Not enough headroom to encapsulate.
    NoHeadroom,
    /// An ICMP error to a VIP about no tracked flow.
    IcmpNoFlow,
    /// A hairpin flow found no free source-NAT port.
    NoSnatPort,
    /// A datagram to the connection-sync port not from `[ha].sync_peer`.
    SyncBadSource,
    /// A connection-sync datagram with a bad header or length.
    SyncMalformed,
    /// An impossible source or addressing (RFC 1812 5.3.7 "martian"): a
    /// group or zero source MAC; an IP source that is unspecified,
    /// loopback, multicast, broadcast (limited or of a connected prefix),
    /// class E, one of this node's own addresses, or equal to the
    /// destination (land); or a unicast IP destination in a link-layer
    /// broadcast / multicast frame (RFC 1122 3.3.6).
    Martian,
    /// A TCP flag combination no TCP stack sends (no flags, SYN with FIN
    /// or RST, FIN without ACK, ...: netfilter's `tcp_valid_flags`).
    BadTcpFlags,
    /// A new flow over its VIP's `new_flow_rate_limit`.
    RateLimited,
    /// A frame for another worker ([`crate::steer`]) found its hand-off
    /// ring full.
    HandoffFull,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 23;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::VlanTagged,
        DropReason::UnknownEtherType,
        DropReason::ArpNotOurs,
        DropReason::NotOurs,
        DropReason::TxFull,
        DropReason::MultiSegment,
        DropReason::NoReal,
        DropReason::ConnTableFull,
        DropReason::NeighMiss,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::Fragment,
        DropReason::Unsupported,
        DropReason::NoHeadroom,
        DropReason::IcmpNoFlow,
        DropReason::NoSnatPort,
        DropReason::SyncBadSource,
        DropReason::SyncMalformed,
        DropReason::Martian,
        DropReason::BadTcpFlags,
        DropReason::RateLimited,
        DropReason::HandoffFull,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::ArpNotOurs => "arp_not_ours",
            DropReason::NotOurs => "not_ours",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::NoReal => "no_real",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NeighMiss => "neigh_miss",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::Fragment => "fragment",
            DropReason::Unsupported => "unsupported",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::IcmpNoFlow => "icmp_no_flow",
            DropReason::NoSnatPort => "no_snat_port",
            DropReason::SyncBadSource => "sync_bad_source",
            DropReason::SyncMalformed => "sync_malformed",
            DropReason::Martian => "martian",
            DropReason::BadTcpFlags => "bad_tcp_flags",
            DropReason::RateLimited => "rate_limited",
            DropReason::HandoffFull => "handoff_full",
        }
    }
}

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten in place as a reply: send it back out the port it came in.
    Answered,
    /// For the balancer itself: hand it to the kernel (exception path).
    ToKernel,
    /// Send out data port `port` (index into the snapshot's ports).
    Forward {
        /// Output port index.
        port: u16,
    },
    /// Dropped and counted.
    Dropped(DropReason),
    /// Taken in by the data plane itself (a connection-sync datagram,
    /// applied to the tables): free the buffer.
    Consumed,
    /// Another worker owns the frame's state ([`crate::steer`]): hand it
    /// over untouched, to be decided there.
    Handoff {
        /// The worker to hand it to.
        to: u16,
        /// For a plain reply (every check of the burst path passed): its
        /// reply hash, which spares the owner a second look
        /// ([`burst::RxFrames::reply_hint`]).
        reply_hash: Option<u32>,
    },
}

impl Outcome {
    /// [`Outcome::Handoff`] to worker `to`, without a hint.
    #[inline]
    pub const fn handoff(to: u16) -> Outcome {
        Outcome::Handoff {
            to,
            reply_hash: None,
        }
    }
}

/// One data port as the pipeline sees it.
#[derive(Debug, Clone, Default)]
pub struct PortInfo {
    /// The port's MAC (also its exception TAP's MAC).
    pub mac: MacAddr,
    /// The balancer's own addresses on this port, with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Next hop for IPv4 destinations outside every prefix.
    pub gateway_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 destinations outside every prefix.
    pub gateway_v6: Option<Ipv6Addr>,
    /// VIP addresses this port answers ARP / ND for (while active).
    pub vips: Vec<IpAddr>,
    /// Largest IP packet the port sends (tunnel MTU checks).
    pub mtu: u16,
}

impl PortInfo {
    /// Whether `ip` is one of the balancer's own addresses here.
    #[inline]
    pub fn is_self(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|(a, _)| *a == ip)
    }

    /// Whether the port answers ARP / ND for `ip` (own address or VIP).
    #[inline]
    pub fn answers_for(&self, ip: IpAddr) -> bool {
        self.is_self(ip) || self.vips.contains(&ip)
    }

    /// The own address whose prefix holds `ip`, if any.
    #[inline]
    pub fn connected(&self, ip: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .find(|(a, p)| same_prefix(*a, ip, *p))
            .map(|(a, _)| *a)
    }
}

/// Whether `a` and `b` share their first `prefix` bits.
#[inline]
pub fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

/// Where a packet to some address leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Output port index.
    pub port: u16,
    /// Next hop whose MAC the frame needs.
    pub next_hop: IpAddr,
    /// The balancer's own address on that port, of the same family (the
    /// source of tunnels and requests).
    pub src: IpAddr,
}

/// Everything the control plane decides, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every snapshot.
    pub generation: u64,
    /// Data ports.
    pub ports: Vec<PortInfo>,
    /// Services.
    pub vips: VipTable,
    /// Route to every target (the reals, then the fallback), per service
    /// index and real index.
    real_routes: Vec<Vec<Option<Route>>>,
    /// Connection sync with the HA peer, and the route to it.
    sync: Option<(SyncSpec, Option<Route>)>,
    /// A BACKUP's services: not balanced (`vips` is empty), only known, so
    /// that flows synced from the MASTER can be checked and installed.
    standby: Option<VipTable>,
    /// Per port, what the IPv4 fast path checks ([`fast`]).
    fast: Vec<fast::FastPort>,
    /// The services on IPv4 VIPs, for the fast path.
    fast_vips: fast::FastVips,
    /// Per service index, the flat index of its first target (the fast
    /// path's next-hop memo, [`Tables`]`::fast_hops`).
    fast_base: Vec<u32>,
    /// Per flat target index (as `fast_base`): an IPv4 target that keeps
    /// its flows, packed for the fast path's one-word check
    /// ([`fast::target_word`]); 0 for any other.
    fast_targets: Vec<u64>,
    /// Some service has a v4-mapped IPv6 VIP, which IPv4 packets reach
    /// but the fast path's VIP table does not hold ([`fast_reply`]).
    mapped_vips: bool,
    /// IPv4 routes, for the reply fast path.
    fast_routes: fast_reply::FastRoutes,
}

impl Snapshot {
    /// Builds a snapshot and precomputes the route to every real.
    pub fn new(generation: u64, ports: Vec<PortInfo>, vips: VipTable) -> Snapshot {
        let mut s = Snapshot {
            generation,
            ports,
            vips,
            real_routes: Vec::new(),
            sync: None,
            standby: None,
            fast: Vec::new(),
            fast_vips: fast::FastVips::default(),
            fast_base: Vec::new(),
            fast_targets: Vec::new(),
            mapped_vips: false,
            fast_routes: fast_reply::FastRoutes::default(),
        };
        s.fast_routes = fast_reply::FastRoutes::of(&s.ports);
        s.fast = s.ports.iter().map(fast::FastPort::of).collect();
        s.mapped_vips = s
            .vips
            .services()
            .iter()
            .any(|svc| matches!(svc.spec().vip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some()));
        s.fast_vips = fast::FastVips::build(&s.vips);
        let mut base = 0u32;
        for svc in s.vips.services() {
            s.fast_base.push(base);
            base += svc.targets().len() as u32;
            for (ri, t) in svc.targets().iter().enumerate() {
                let w = match t.addr {
                    IpAddr::V4(a) if svc.keeps_flow(RealIdx(ri as u16)) => {
                        fast::target_word(u32::from(a), t.port)
                    }
                    _ => 0,
                };
                s.fast_targets.push(w);
            }
        }
        s.real_routes = s
            .vips
            .services()
            .iter()
            .map(|svc| svc.targets().iter().map(|r| s.route(r.addr)).collect())
            .collect();
        s
    }

    /// Sets the connection sync (and precomputes the route to the peer).
    pub fn with_sync(mut self, sync: SyncSpec) -> Snapshot {
        let r = self.route(sync.peer);
        self.sync = Some((sync, r));
        self
    }

    /// Sets the services a BACKUP knows but does not balance.
    pub fn with_standby(mut self, standby: VipTable) -> Snapshot {
        self.standby = Some(standby);
        self
    }

    /// The connection sync, with the route to the peer.
    #[inline]
    pub fn sync(&self) -> Option<(SyncSpec, Option<Route>)> {
        self.sync
    }

    /// The service of id `id`: balanced here, or (on a BACKUP) known.
    pub fn known_service(&self, id: u32) -> Option<&service::Service> {
        self.vips
            .by_id(id)
            .or_else(|| self.standby.as_ref().and_then(|t| t.by_id(id)))
    }

    /// Where packets to `ip` leave: a connected prefix first, else a
    /// port's gateway of the same family.
    pub fn route(&self, ip: IpAddr) -> Option<Route> {
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(src) = p.connected(ip) {
                return Some(Route {
                    port: i as u16,
                    next_hop: ip,
                    src,
                });
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let gw = match ip {
                IpAddr::V4(_) => p.gateway_v4.map(IpAddr::V4),
                IpAddr::V6(_) => p.gateway_v6.map(IpAddr::V6),
            };
            if let Some(gw) = gw {
                if let Some(src) = p.connected(gw) {
                    return Some(Route {
                        port: i as u16,
                        next_hop: gw,
                        src,
                    });
                }
            }
        }
        None
    }

    /// The precomputed route to target `r` (a real or the fallback) of
    /// service index `s`.
    #[inline]
    pub fn real_route(&self, s: usize, r: RealIdx) -> Option<Route> {
        self.real_routes
            .get(s)
            .and_then(|v| v.get(r.get()))
            .copied()
            .flatten()
    }

    /// Every next hop the data plane must keep resolved (reals and
    /// gateways), with the port and source address to ask from.
    pub fn next_hops(&self) -> Vec<Route> {
        let mut out: Vec<Route> = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            for gw in [p.gateway_v4.map(IpAddr::V4), p.gateway_v6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                if let Some(src) = p.connected(gw) {
                    out.push(Route {
                        port: i as u16,
                        next_hop: gw,
                        src,
                    });
                }
            }
        }
        let sync = self.sync.and_then(|(_, r)| r);
        for r in self
            .real_routes
            .iter()
            .flatten()
            .flatten()
            .chain(sync.iter())
        {
            if !out.iter().any(|o| o.next_hop == r.next_hop) {
                out.push(*r);
            }
        }
        out
    }
}

/// Neighbour requests the pipeline wants sent (bounded; overflow is
/// dropped, the next packet asks again).
#[derive(Debug, Default)]
pub struct NeighRequests {
    items: [Option<Route>; 8],
    len: usize,
}

impl NeighRequests {
    fn push(&mut self, r: Route) {
        if self.len < self.items.len() {
            self.items[self.len] = Some(r);
            self.len += 1;
        }
    }

    /// Takes the requests out.
    pub fn drain(&mut self) -> impl Iterator<Item = Route> + '_ {
        let n = std::mem::take(&mut self.len);
        self.items[..n].iter_mut().filter_map(Option::take)
    }
}

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
    /// The fast path's next hop per target (flat index, see
    /// [`Snapshot`]`::fast_base`), remembered as briefly as `hops`.
    fast_hops: Vec<fast::FastHop>,
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
fn fast_targets(snap: &Snapshot) -> Vec<fast::FastHop> {
    snap.fast_targets
        .iter()
        .map(|&word| fast::FastHop {
            word,
            ..fast::FastHop::default()
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

    /// A connection-sync datagram to our own address: from the peer, it
    /// is applied record by record ([`Self::apply_sync`]) and consumed;
    /// from anyone else, or malformed, dropped and counted. `None`: not
    /// for the sync port (or no sync configured).
    fn sync_datagram<B: PacketBuf>(
        &mut self,
        buf: &B,
        ip: &IpInfo,
        ctx: &Ctx<'_>,
    ) -> Option<Outcome> {
        let (spec, _) = ctx.snap.sync()?;
        if ip.proto != ip_proto::UDP {
            return None;
        }
        let l4 = ip.l4?;
        let f = buf.data();
        if f.len() < l4 + 8 || u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]) != spec.port {
            return None;
        }
        if ip.src != spec.peer {
            return Some(Outcome::Dropped(DropReason::SyncBadSource));
        }
        let ulen = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
        let end = l4 + ulen;
        if ulen < 8 || end > f.len() || end > 14 + ip.total_len {
            return Some(Outcome::Dropped(DropReason::SyncMalformed));
        }
        let has_sum = f[l4 + 6] != 0 || f[l4 + 7] != 0;
        if has_sum {
            let pseudo = match (ip.src, ip.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    crate::packet::checksum::pseudo_header_v4(s, d, ip_proto::UDP, ulen as u16)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    crate::packet::checksum::pseudo_header_v6(&s, &d, ip_proto::UDP, ulen as u32)
                }
                _ => return Some(Outcome::Dropped(DropReason::SyncMalformed)),
            };
            if !crate::packet::checksum::verify(pseudo, &f[l4..end]) {
                return Some(Outcome::Dropped(DropReason::SyncMalformed));
            }
        }
        let Ok((header, records)) = crate::sync::parse(&f[l4 + 8..end]) else {
            return Some(Outcome::Dropped(DropReason::SyncMalformed));
        };
        self.sync.note_received(&header);
        let me = usize::from(self.steer.me());
        for r in records {
            self.sync.counters.records_received += 1;
            let rec = match Record::decode(r) {
                Ok(rec) => rec,
                Err(_) => {
                    self.sync.counters.rejected += 1;
                    continue;
                }
            };
            // A NAT flow goes to the worker that owns it; a DR or TUN
            // flow to every worker (whichever the NIC hands its packets
            // to after a takeover).
            match self.sync_owner(&rec) {
                Some(o) if o != me => match self.fanout.get(o) {
                    Some(Some(ib)) => {
                        if !ib.push(r) {
                            self.sync.counters.fanout_dropped += 1;
                        }
                    }
                    _ => self.apply_sync(ctx.snap, ctx.now_ms, &rec),
                },
                Some(_) => self.apply_sync(ctx.snap, ctx.now_ms, &rec),
                None => {
                    for ib in self.fanout.iter().flatten() {
                        if !ib.push(r) {
                            self.sync.counters.fanout_dropped += 1;
                        }
                    }
                    self.apply_sync(ctx.snap, ctx.now_ms, &rec);
                }
            }
        }
        Some(Outcome::Consumed)
    }

    /// The worker that owns a synced flow, or `None` for one every worker
    /// should know (DR and TUN: its packets land where the NIC puts
    /// them).
    fn sync_owner(&self, rec: &Record) -> Option<usize> {
        let st = self.steer;
        let o = match rec.nat {
            Nat::None => return None,
            Nat::Nat => st.client_owner(rec.key.client, rec.key.client_port),
            Nat::Snat(p) => st
                .snat_owner(p)
                .unwrap_or_else(|| st.client_owner(rec.key.client, rec.key.client_port)),
        };
        Some(usize::from(o))
    }

    /// The inboxes of the node's workers, by worker index (`None` for
    /// this one): records from the peer that this worker receives go to
    /// the worker that owns their flow, or to every worker (see
    /// [`Self::sync_owner`]); each drains its inboxes with
    /// [`Self::drain_inbox`].
    pub fn set_fanout(&mut self, inboxes: Vec<Option<std::sync::Arc<Inbox>>>) {
        self.fanout = inboxes;
    }

    /// Applies at most `budget` records another worker passed on through
    /// `inbox`; returns how many. Malformed ones were counted by the
    /// receiving worker and are skipped silently here.
    pub fn drain_inbox(
        &mut self,
        snap: &Snapshot,
        now_ms: u64,
        inbox: &Inbox,
        budget: usize,
    ) -> usize {
        let mut rec = [0u8; crate::sync::RECORD_LEN];
        let mut n = 0;
        while n < budget && inbox.pop(&mut rec) {
            n += 1;
            if let Ok(r) = Record::decode(&rec) {
                self.apply_sync(snap, now_ms, &r);
            }
        }
        n
    }

    /// Installs, updates or removes the flow a record from the HA peer
    /// describes, with its reply index entry (NAT), its source-NAT port and
    /// its persistence entry, so that this node handles the flow's packets
    /// as the peer did. The service must be known here (balanced, or a
    /// BACKUP's standby service), with the record's protocol, mode and
    /// real; the expiry is `now` + the time the flow had left there
    /// (at most this node's timeout for the state). Counted in
    /// [`SyncLog::counters`]; never panics.
    pub fn apply_sync(&mut self, snap: &Snapshot, now_ms: u64, rec: &Record) {
        let c = match self.apply_record(snap, now_ms, rec) {
            Ok(()) => &mut self.sync.counters.applied,
            Err(true) => &mut self.sync.counters.unknown_service,
            Err(false) => &mut self.sync.counters.rejected,
        };
        *c += 1;
    }

    /// `Err(true)`: unknown service; `Err(false)`: refused.
    fn apply_record(&mut self, snap: &Snapshot, now_ms: u64, rec: &Record) -> Result<(), bool> {
        let svc = snap.known_service(rec.key.service).ok_or(true)?;
        let proto: L4 = svc.spec().proto.into();
        let mode_ok = matches!(
            (svc.mode(), rec.nat),
            (Mode::Nat, Nat::Nat | Nat::Snat(_)) | (Mode::Dr | Mode::Tun, Nat::None)
        );
        let port_ok = svc.spec().port == 0 || svc.spec().port == rec.key.vport;
        if rec.key.proto != proto || !mode_ok || !port_ok {
            return Err(false);
        }
        let now = now_ms as u32;
        let h = self.conn.hash(&rec.key);
        let existing = match self.conn.lookup(now, &rec.key, h) {
            Lookup::Hit(id) => Some(id),
            Lookup::Expired(fr) => {
                self.release_flow(snap, now_ms, &fr);
                None
            }
            Lookup::Miss => None,
        };
        if rec.op == Op::Delete {
            if let Some(fr) = existing.and_then(|id| self.conn.remove(id)) {
                self.release_flow(snap, now_ms, &fr);
            }
            return Ok(());
        }
        // DR / TUN flows of a VIP on every port carry the client's port;
        // their reals are configured with port 0.
        let r = svc
            .resolve_target(RealIdx(0), rec.real, rec.real_port)
            .or_else(|| match svc.mode() {
                Mode::Nat => None,
                _ => svc.resolve_target(RealIdx(0), rec.real, 0),
            })
            .ok_or(false)?;
        let timeout = self.conn.config().timeouts.for_state(rec.state);
        let expiry = now.wrapping_add(rec.remaining_ms.min(timeout));
        if let Some(id) = existing {
            let e = self.conn.entry(id);
            if e.real() == rec.real && e.real_port() == rec.real_port && e.nat() == rec.nat {
                self.conn.restore(id, rec.state, expiry);
                if rec.persist {
                    self.persist.learn(now, svc, rec.key.client, r);
                }
                return Ok(());
            }
            // Bound elsewhere here: the peer's word wins.
            if let Some(fr) = self.conn.remove(id) {
                self.release_flow(snap, now_ms, &fr);
            }
        }
        if let Nat::Snat(p) = rec.nat {
            if !self.snat.reserve(p) {
                return Err(false);
            }
        }
        let value = FlowValue {
            real: rec.real,
            real_port: rec.real_port,
            real_hint: r,
            nat: rec.nat,
            state: rec.state,
        };
        let (active, pool, sync) = (&mut self.active, &mut self.snat, &mut self.sync);
        let inserted = self.conn.insert(now, &rec.key, h, &value, |fr| {
            release(snap, active, pool, sync, now_ms, fr)
        });
        let Ok(id) = inserted else {
            if let Nat::Snat(p) = rec.nat {
                self.snat.free(p);
            }
            return Err(false);
        };
        self.conn.restore(id, rec.state, expiry);
        if let Some(si) = snap.vips.idx_by_id(rec.key.service) {
            if let Some(a) = self.active.get_mut(si).and_then(|v| v.get_mut(r.get())) {
                *a += 1;
            }
        }
        if rec.persist {
            self.persist.learn(now, svc, rec.key.client, r);
        }
        Ok(())
    }

    /// After a packet of flow `id` (`before` its touch, now in state
    /// `st`): logs it for the HA peer if its state changed or the peer's
    /// copy needs refreshing ([`SyncLog::stale`]).
    #[inline]
    fn log_touched(
        &mut self,
        now_ms: u64,
        id: conntrack::FlowId,
        before_state: conntrack::State,
        before_synced: u32,
        st: conntrack::State,
    ) {
        if !self.sync.enabled() {
            return;
        }
        let timeout = self.conn.config().timeouts.for_state(st);
        if st != before_state || self.sync.stale(before_synced, now_ms as u32, timeout) {
            self.log_flow(now_ms, Op::Update, id, false);
        }
    }

    /// Logs flow `id` for the HA peer (while sync is on).
    #[inline]
    fn log_flow(&mut self, now_ms: u64, op: Op, id: conntrack::FlowId, persist: bool) {
        if !self.sync.enabled() {
            return;
        }
        self.conn.set_synced(id, now_ms as u32);
        let e = self.conn.entry(id);
        let remaining = e.expiry().wrapping_sub(now_ms as u32);
        self.sync.push(
            now_ms,
            &Record {
                op,
                key: e.key(),
                real: e.real(),
                real_port: e.real_port(),
                nat: e.nat(),
                state: e.state(),
                remaining_ms: remaining,
                persist,
            },
        );
    }

    /// Expires idle flows (at most `budget` slots examined).
    pub fn sweep(&mut self, snap: &Snapshot, now_ms: u64, budget: u32) -> u32 {
        let (active, snat, sync) = (&mut self.active, &mut self.snat, &mut self.sync);
        self.conn.sweep(now_ms as u32, budget, |f| {
            release(snap, active, snat, sync, now_ms, f)
        })
    }

    /// Decides the fate of one frame that arrived on data port `in_port`:
    /// the IPv4 fast path for an established flow's packet, else the
    /// general path.
    #[inline]
    pub fn handle<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        in_port: u16,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        self.handle_hinted(buf, in_port, ctx, None)
    }

    /// [`Self::handle`] with the hash of the frame's first table lookup,
    /// computed in a first pass over the burst: [`Self::flow_hash_v4`],
    /// or for a frame that has no service [`Self::reply_hash_v4`]. The
    /// hint is used for lookups only (a wrong one can only miss, and a
    /// miss is looked up again with the exact hash).
    #[inline]
    pub fn handle_hinted<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        in_port: u16,
        ctx: &mut Ctx<'_>,
        hint: Option<u32>,
    ) -> Outcome {
        match self.fast_v4(buf, in_port, ctx, hint) {
            Some(o) => o,
            None => self.handle_general(buf, in_port, ctx),
        }
    }

    /// [`Self::handle`] without the IPv4 fast path ([`fast`]): the same
    /// verdicts, slower. For the tests and fuzzers that compare the two.
    #[doc(hidden)]
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
        if martian(&ip, port, link_group) {
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

    #[allow(clippy::too_many_arguments)]
    fn balance<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        si: usize,
        sport: u16,
        dport: u16,
        flags: conntrack::TcpFlags,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
        known: Option<(u32, bool)>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        let now = ctx.now_ms as u32;
        // Both directions of a NAT flow are decided by the worker that
        // owns its client endpoint.
        if svc.mode() == Mode::Nat {
            if let Some(to) = self.steer.foreign_client(ctx.hops, ip.src, sport) {
                return self.hand_off(ip, to, now);
            }
        }
        let l4p: L4 = svc.spec().proto.into();
        let key = FlowKey {
            service: svc.id(),
            client: ip.src,
            client_port: sport,
            vport: dport,
            proto: l4p,
        };
        // From the fast path: the hash of the same key, and whether its
        // probe found the table without any flow of it.
        let (h, absent) = match known {
            Some(k) => k,
            None => (self.conn.hash(&key), false),
        };
        // The real, and the local port of a source-NAT flow.
        let mut bound: Option<(RealIdx, Option<u16>)> = None;
        let found = if absent {
            Lookup::Miss
        } else {
            self.conn.lookup(now, &key, h)
        };
        match found {
            Lookup::Hit(id) => {
                let e = self.conn.entry(id);
                match svc.resolve_target(e.real_hint(), e.real(), e.real_port()) {
                    Some(r) if svc.keeps_flow(r) => {
                        if r != e.real_hint() {
                            self.conn.set_real_hint(id, r);
                        }
                        let st = self.conn.touch(id, now, Dir::Client, flags);
                        self.log_touched(ctx.now_ms, id, e.state(), e.synced(), st);
                        let snat = match e.nat() {
                            Nat::Snat(p) => Some(p),
                            _ => None,
                        };
                        bound = Some((r, snat));
                    }
                    // The real went down (under OnDown::Reschedule), was
                    // disabled or removed: the flow is rescheduled on this
                    // packet.
                    _ => {
                        if let Some(fr) = self.conn.remove(id) {
                            self.release_flow(snap, ctx.now_ms, &fr);
                        }
                    }
                }
            }
            Lookup::Expired(fr) => self.release_flow(snap, ctx.now_ms, &fr),
            Lookup::Miss => {}
        }
        let (real, snat) = match bound {
            Some(b) => b,
            None => {
                if let Some(rate) = svc.spec().new_flow_rate_limit {
                    let workers = self.steer.workers();
                    if !self.limits[si].take(&self.node_limits, ctx.now_ms, rate, workers) {
                        return Outcome::Dropped(DropReason::RateLimited);
                    }
                }
                let fh = service::hash::flow_hash(ip.src, sport, ip.dst, dport, ip.proto);
                let picked = svc.select(
                    now,
                    fh,
                    ip.src,
                    &mut self.sched[si],
                    &self.active[si],
                    &mut self.persist,
                );
                // No eligible real: the fallback, else a refusal.
                let (mut r, scheduled) = match picked {
                    Some(r) => (r, true),
                    None => match svc.usable_fallback() {
                        Some(f) => (f, false),
                        None => {
                            let o = local::reject(buf, ip, in_port.mac);
                            if o == Outcome::Answered {
                                self.counters[si].rejected += 1;
                            }
                            return o;
                        }
                    },
                };
                let mode = svc.mode();
                // Hairpin. DR / TUN: a real is not sent its own flow while
                // another can take it. NAT: a flow whose replies would
                // bypass the balancer is source-NATed.
                if scheduled && mode != Mode::Nat && svc.reals()[r.get()].addr == ip.src {
                    if let Some(o) =
                        hairpin::pick_other(svc, &mut self.sched[si], &self.active[si], fh, ip.src)
                    {
                        r = o;
                    }
                }
                let snat = if mode == Mode::Nat && hairpin::needs_snat(snap, si, r, ip.src) {
                    match self.snat.alloc() {
                        Some(p) => Some(p),
                        None => return Outcome::Dropped(DropReason::NoSnatPort),
                    }
                } else {
                    None
                };
                let Some(rs) = svc.target(r) else {
                    return Outcome::Dropped(DropReason::NoReal);
                };
                let nat = match (mode, snat) {
                    (Mode::Nat, Some(p)) => Nat::Snat(p),
                    (Mode::Nat, None) => Nat::Nat,
                    _ => Nat::None,
                };
                let value = FlowValue {
                    real: rs.addr,
                    real_port: if mode == Mode::Nat && rs.port != 0 {
                        rs.port
                    } else {
                        dport
                    },
                    real_hint: r,
                    nat,
                    state: conntrack::State::initial(l4p, flags),
                };
                let (active, pool, sync) = (&mut self.active, &mut self.snat, &mut self.sync);
                let now_ms = ctx.now_ms;
                let on_free = |fr: &conntrack::Freed| release(snap, active, pool, sync, now_ms, fr);
                let inserted = if absent {
                    self.conn.insert_absent(now, &key, h, &value, on_free)
                } else {
                    self.conn.insert(now, &key, h, &value, on_free)
                };
                let Ok(id) = inserted else {
                    if let Some(p) = snat {
                        self.snat.free(p);
                    }
                    return Outcome::Dropped(DropReason::ConnTableFull);
                };
                // The group's persistence entry names this real unless the
                // hairpin rule moved the flow off it.
                let persisted = scheduled && svc.persistence().is_some() && Some(r) == picked;
                self.log_flow(now_ms, Op::Add, id, persisted);
                if let Some(a) = self.active[si].get_mut(r.get()) {
                    *a += 1;
                }
                let c = &mut self.counters[si];
                c.new_flows += 1;
                if let Some(rc) = c.reals.get_mut(r.get()) {
                    rc[2] += 1;
                }
                // NAT replies go back to the client: learn its MAC now (new
                // flows only) when it sits on a connected prefix.
                if nat != Nat::None && in_port.connected(ip.src).is_some() {
                    let src_mac = EthernetFrame::new_unchecked(buf.data()).src();
                    ctx.neigh.learn(ip.src, src_mac, ctx.now_ms, true);
                }
                (r, snat)
            }
        };
        // The first fragment of a datagram: its later fragments follow.
        if let Some(fr) = ip.frag.filter(Frag::is_first) {
            let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
            let fwd = FragFwd::ToReal {
                snat: snat.is_some(),
            };
            let v = FragValue {
                si: si as u32,
                real,
                fwd,
            };
            self.frags.insert(now, &key, v, u32::from(fr.len));
        }
        self.deliver(buf, ip, si, real, dport, snat, in_port, ctx)
    }

    /// Counts and sends a client → real packet of service `si` to `real`,
    /// in the service's mode. NAT: the destination becomes the real (and
    /// its port, or `vport` for a real without one); with `snat`, the
    /// source becomes the balancer's address facing the real (and that
    /// port). A packet without an L4 header (a later fragment) has only
    /// its addresses rewritten, and any `snat` port is ignored.
    #[allow(clippy::too_many_arguments)]
    fn deliver<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        si: usize,
        real: RealIdx,
        vport: u16,
        snat: Option<u16>,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        // DR of IPv4: the fast path's delivery (the same, with its
        // per-target next-hop memo).
        if svc.mode() == Mode::Dr && ip.src.is_ipv4() {
            return self.deliver_v4(buf, si, real, vport, snat, Mode::Dr, ctx);
        }
        let Some(rs) = svc.target(real) else {
            return Outcome::Dropped(DropReason::NoReal);
        };
        let len = buf.len() as u64;
        let c = &mut self.counters[si];
        c.packets_in += 1;
        c.bytes_in += len;
        if let Some(rc) = c.reals.get_mut(real.get()) {
            rc[0] += 1;
            rc[1] += len;
        }
        let Some(route) = snap.real_route(si, real) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        match svc.mode() {
            Mode::Dr => send_via(&mut self.hops, buf, route, snap, ctx),
            Mode::Nat => {
                let frame = buf.data_mut();
                if !rewrite::decrement_ttl(frame, 14) {
                    return Outcome::Dropped(DropReason::TtlExceeded);
                }
                let port = if rs.port != 0 { rs.port } else { vport };
                rewrite::translate(frame, 14, ip.l4, ip.proto, Side::Dst, rs.addr, Some(port));
                if let Some(lport) = snat {
                    rewrite::translate(
                        frame,
                        14,
                        ip.l4,
                        ip.proto,
                        Side::Src,
                        route.src,
                        Some(lport),
                    );
                }
                send_via(&mut self.hops, buf, route, snap, ctx)
            }
            Mode::Tun => {
                let mtu = usize::from(snap.ports[usize::from(route.port)].mtu);
                let outer = if rs.addr.is_ipv4() { 20 } else { 40 };
                // Never answer an ICMP error with an ICMP error (RFC 1122
                // 3.2.2): errors too big to tunnel go as they are.
                let is_icmp = matches!(ip.proto, ip_proto::ICMP | ip_proto::ICMPV6);
                if ip.total_len + outer > mtu && ip.dont_frag && !is_icmp {
                    return local::too_big(buf, ip, (mtu - outer) as u16, in_port.mac);
                }
                if !rewrite::encapsulate(buf, route.src, rs.addr) {
                    return Outcome::Dropped(DropReason::NoHeadroom);
                }
                // IPv4 in IPv4: through the per-target next-hop memo,
                // which the burst path's tunnel takes from.
                if let (IpAddr::V4(src), IpAddr::V4(dst)) = (route.src, rs.addr) {
                    let t = snap.fast_base.get(si).map(|b| *b as usize + real.get());
                    let memo = t
                        .and_then(|t| self.fast_hops.get(t))
                        .filter(|m| ctx.now_ms < m.until);
                    if let Some(m) = memo {
                        let f = buf.data_mut();
                        f[0..12].copy_from_slice(&m.macs);
                        return Outcome::Forward { port: m.port };
                    }
                    return self.send_remembered(buf, t, route, Some((src, dst, mtu as u16)), ctx);
                }
                send_via(&mut self.hops, buf, route, snap, ctx)
            }
        }
    }
}

impl Tables {
    /// Hands the frame, untouched, to worker `to`, which owns its state
    /// ([`crate::steer`]). A first fragment leaves a note here, so that
    /// the later fragments that land on this worker follow it, in order,
    /// through the same ring.
    #[cold]
    pub(crate) fn hand_off(&mut self, ip: &IpInfo, to: u16, now: u32) -> Outcome {
        if let Some(fr) = ip.frag.filter(Frag::is_first) {
            let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
            let v = FragValue {
                si: 0,
                real: RealIdx(0),
                fwd: FragFwd::Handoff { to },
            };
            self.frags.insert(now, &key, v, u32::from(fr.len));
        }
        Outcome::handoff(to)
    }
}

/// Lowers the active count of a freed flow's real and returns its
/// source-NAT port to the pool.
impl Tables {
    /// [`release`] on this worker's own counts, port pool and sync log.
    #[inline]
    pub(crate) fn release_flow(&mut self, snap: &Snapshot, now_ms: u64, f: &conntrack::Freed) {
        release(
            snap,
            &mut self.active,
            &mut self.snat,
            &mut self.sync,
            now_ms,
            f,
        );
    }
}

fn release(
    snap: &Snapshot,
    active: &mut [Vec<u32>],
    snat: &mut SnatPorts,
    sync: &mut SyncLog,
    now_ms: u64,
    f: &conntrack::Freed,
) {
    if sync.enabled() {
        sync.push(
            now_ms,
            &Record {
                op: Op::Delete,
                key: f.key,
                real: f.real,
                real_port: f.real_port,
                nat: f.nat,
                state: f.state,
                remaining_ms: 0,
                persist: false,
            },
        );
    }
    if let Nat::Snat(p) = f.nat {
        snat.free(p);
    }
    if let Some(si) = snap.vips.idx_by_id(f.key.service) {
        let svc = &snap.vips.services()[si];
        if let Some(r) = svc.resolve_target(f.real_hint, f.real, f.real_port) {
            if let Some(a) = active.get_mut(si).and_then(|v| v.get_mut(r.get())) {
                *a = a.saturating_sub(1);
            }
        }
    }
}

/// Whether a TCP flag byte is a combination TCP stacks send. PSH, ECE
/// and CWR may accompany any of them; URG only SYN, ACK and FIN+ACK.
#[inline]
const fn tcp_flags_valid(flags: u8) -> bool {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    matches!(
        flags & (FIN | SYN | RST | ACK | URG),
        SYN | 0x22 // SYN, SYN+URG
            | 0x12 // SYN+ACK
            | RST
            | 0x14 // RST+ACK
            | 0x11 // FIN+ACK
            | 0x31 // FIN+ACK+URG
            | ACK
            | 0x30 // ACK+URG
    )
}

/// A source no station may use, a spoof of this node, a land packet, or a
/// unicast IP destination in a link-layer group frame (see
/// [`DropReason::Martian`]). Cheap: the port's own addresses only.
#[inline]
fn martian(ip: &IpInfo, port: &PortInfo, link_group: bool) -> bool {
    let dst_group = match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // One pass over the port's addresses, in 32-bit arithmetic: the
            // hot path of every IPv4 frame.
            let (s, d) = (u32::from(s), u32::from(d));
            let o = s >> 24;
            if s == d || o == 0 || o == 127 || o >= 224 {
                return true;
            }
            let mut group = d >> 28 == 0xe || d == u32::MAX;
            for (a, p) in &port.addrs {
                let IpAddr::V4(a) = a else { continue };
                let a = u32::from(*a);
                if a == s {
                    return true;
                }
                if *p <= 30 {
                    let bcast = a | (u32::MAX >> u32::from(*p));
                    if s == bcast {
                        return true;
                    }
                    group |= d == bcast;
                }
            }
            group
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if s == d || port.is_self(ip.src) {
                return true;
            }
            if s.is_multicast()
                || s.is_loopback()
                || (s.is_unspecified() && ip.proto != ip_proto::ICMPV6)
            {
                return true;
            }
            d.is_multicast()
        }
        _ => return port.is_self(ip.src),
    };
    link_group && !dst_group
}

fn is_vip_addr(snap: &Snapshot, ip: IpAddr) -> bool {
    snap.ports.iter().any(|p| p.vips.contains(&ip))
}

/// Sets the Ethernet addresses for `route` and picks the output port;
/// asks for the next hop's MAC if it is unknown.
#[inline]
fn send<B: PacketBuf>(buf: &mut B, route: Route, snap: &Snapshot, ctx: &mut Ctx<'_>) -> Outcome {
    let r = ctx.neigh.resolve(route.next_hop, ctx.now_ms);
    finish_send(r, buf, route, snap, ctx)
}

/// [`send`] through the worker's next-hop memo (the per-flow paths).
#[inline]
fn send_via<B: PacketBuf>(
    hops: &mut HopCache,
    buf: &mut B,
    route: Route,
    snap: &Snapshot,
    ctx: &mut Ctx<'_>,
) -> Outcome {
    let r = hops.resolve(ctx.neigh, route.next_hop, ctx.now_ms);
    finish_send(r, buf, route, snap, ctx)
}

#[inline]
fn finish_send<B: PacketBuf>(
    r: Resolve,
    buf: &mut B,
    route: Route,
    snap: &Snapshot,
    ctx: &mut Ctx<'_>,
) -> Outcome {
    let mac = match r {
        Resolve::Known { mac, refresh } => {
            if refresh {
                ctx.requests.push(route);
            }
            mac
        }
        Resolve::Request => {
            ctx.requests.push(route);
            return Outcome::Dropped(DropReason::NeighMiss);
        }
        Resolve::Pending => return Outcome::Dropped(DropReason::NeighMiss),
    };
    let our = snap.ports[usize::from(route.port)].mac;
    let f = buf.data_mut();
    f[0..6].copy_from_slice(&mac.0);
    f[6..12].copy_from_slice(&our.0);
    Outcome::Forward { port: route.port }
}

/// What the classifier learnt about an IP packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpInfo {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// Upper-layer protocol.
    pub(crate) proto: u8,
    /// Offset of the L4 header in the frame (None for later fragments).
    pub(crate) l4: Option<usize>,
    /// A fragment other than the first.
    pub(crate) frag_later: bool,
    /// Length of the IP packet (header + payload).
    pub(crate) total_len: usize,
    /// IPv4 DF (IPv6 never fragments in flight).
    pub(crate) dont_frag: bool,
    /// Fragment facts, for every fragment of a fragmented datagram (the
    /// first with MF set included; not for IPv6 atomic fragments).
    pub(crate) frag: Option<Frag>,
}

fn parse_v4(frame: &[u8]) -> Result<IpInfo, DropReason> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).map_err(|_| DropReason::Malformed)?;
    // A corrupt header is dropped here (as a host's ip_rcv would), not
    // forwarded, translated (NAT keeps a bad sum bad) or tunnelled.
    if !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    let frag_later = ip.frag_offset() != 0;
    Ok(IpInfo {
        src: IpAddr::V4(ip.src()),
        dst: IpAddr::V4(ip.dst()),
        proto: ip.protocol(),
        l4: if frag_later {
            None
        } else {
            Some(14 + ip.header_len())
        },
        frag_later,
        total_len: usize::from(ip.total_len()),
        dont_frag: ip.dont_frag(),
        frag: ip.is_fragment().then(|| Frag {
            ident: u32::from(ip.ident()),
            offset: ip.frag_offset(),
            more: ip.more_frags(),
            len: ip.total_len() - ip.header_len() as u16,
        }),
    })
}

fn parse_v6(frame: &[u8]) -> Result<IpInfo, DropReason> {
    let ip = Ipv6Packet::new_checked(&frame[14..]).map_err(|_| DropReason::Malformed)?;
    let up = ip.upper_layer().map_err(|_| DropReason::Malformed)?;
    let frag_later = up.fragment.is_some_and(|f| f.offset != 0);
    let total_len = 40 + usize::from(ip.payload_len());
    Ok(IpInfo {
        src: IpAddr::V6(ip.src()),
        dst: IpAddr::V6(ip.dst()),
        proto: up.protocol,
        l4: if frag_later {
            None
        } else {
            Some(14 + up.offset)
        },
        frag_later,
        total_len,
        dont_frag: true,
        // Data length counted from the upper-layer offset: with extension
        // headers after the Fragment header, the first fragment's data is
        // undercounted, so its entry lives to its deadline (never less).
        frag: up
            .fragment
            .filter(|f| f.offset != 0 || f.more)
            .map(|f| Frag {
                ident: f.ident,
                offset: f.offset,
                more: f.more,
                len: total_len.saturating_sub(up.offset) as u16,
            }),
    })
}

#[cfg(test)]
mod tests;
