//! What the control plane decides, read-only for the workers: the
//! [`Snapshot`] of services, ports, owned addresses and routes.

use super::plan::Plan;
use super::*;

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
    pub(super) real_routes: Vec<Vec<Option<Route>>>,
    /// Connection sync with the HA peer, and the route to it.
    pub(super) sync: Option<(SyncSpec, Option<Route>)>,
    /// A BACKUP's services: not balanced (`vips` is empty), only known, so
    /// that flows synced from the MASTER can be checked and installed.
    pub(super) standby: Option<VipTable>,
    /// What the burst path reads, precomputed beside the rest.
    pub(super) plan: Plan,
    /// `[[outbound]]`: the reals' own connections to the outside.
    pub outbound: Vec<super::outbound::OutboundRule>,
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
            plan: Plan::default(),
            outbound: Vec::new(),
        };
        s.plan = Plan::build(&s.ports, &s.vips);
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

    /// Sets the outbound source-NAT rules.
    pub fn with_outbound(mut self, rules: Vec<super::outbound::OutboundRule>) -> Snapshot {
        self.outbound = rules;
        self
    }

    /// The outbound rule covering connections from `src`, if any.
    #[inline]
    pub fn outbound_rule(&self, src: IpAddr) -> Option<&super::outbound::OutboundRule> {
        self.outbound.iter().find(|r| r.covers(src))
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

    /// The distinct service timeouts (profile `i + 1` is `[i]`): those of
    /// every configured service (a BACKUP's standby services included).
    pub fn service_timeouts(&self) -> &[crate::service::ServiceTimeouts] {
        match &self.standby {
            Some(t) if !t.services().is_empty() => t.timeout_profiles(),
            _ => self.vips.timeout_profiles(),
        }
    }

    /// The ids of the services named `name`, balanced here or (on a
    /// BACKUP) known.
    pub fn service_ids_named(&self, name: &str) -> Vec<u32> {
        self.vips
            .services()
            .iter()
            .chain(self.standby.iter().flat_map(|t| t.services()))
            .filter(|s| s.spec().name == name)
            .map(|s| s.id())
            .collect()
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
    pub(super) items: [Option<Route>; 8],
    pub(super) len: usize,
}

impl NeighRequests {
    pub(super) fn push(&mut self, r: Route) {
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
