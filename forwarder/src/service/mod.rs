//! Services (VIPs), their reals, schedulers and source-IP persistence.
//!
//! The control plane describes services as [`ServiceSpec`]s and builds a
//! [`VipTable`] once per configuration change; the table (with every
//! scheduler's immutable data, e.g. Maglev tables) is then published to the
//! workers as part of an immutable snapshot and never modified. What a
//! worker changes while it forwards lives in its own memory:
//! [`SchedState`] (rr/wrr cursors), the per-real active connection counts
//! it passes to [`Service::pick`] (lc/wlc), and its [`PersistTable`].
//!
//! Reals that fail: a flow whose real is `Down` is rescheduled on its next
//! packet ([`OnDown::Reschedule`], IPVS's `expire_nodest_conn`) or keeps
//! its real ([`OnDown::Keep`]); `Disabled` always reschedules, `Drain`
//! always keeps ([`Service::keeps_flow`]).
//!
//! Fallback ("sorry server"): a service may name one extra server that
//! takes new flows only when the scheduler finds no eligible real. It is
//! never scheduled and is not in [`Service::reals`]; it is the *target*
//! just past them, at [`Service::fallback_idx`] (`RealIdx(reals.len())`).
//! Everything indexed per target (routes in the snapshot, a worker's
//! per-real counters and active counts, connection entries) covers it:
//! [`Service::targets`], [`Service::target`], [`Service::resolve_target`].
//! Flows on the fallback stay there until they end, also once reals are
//! back (a sorry page does not move mid-connection).
//!
//! Lookup: [`VipTable::lookup`] is an exact `(address, protocol, port)` hash
//! lookup, then a wildcard `(address, protocol, 0)` lookup; both are O(1),
//! independent of the number of VIPs, and do not allocate.

pub mod hash;
pub mod maglev;
pub mod persistence;
pub mod scheduler;
mod vipindex;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

pub use maglev::{Backend, Maglev, MAGLEV_SIZE};
pub use persistence::PersistTable;
pub use scheduler::{SchedState, Scheduler, SchedulerKind};

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// From an IP protocol number.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// How packets reach the real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: rewrite the destination MAC only.
    Dr,
    /// Destination NAT (replies come back through the balancer).
    Nat,
    /// IP-in-IP / IPv6 tunnel to the real.
    Tun,
}

/// Administrative / health state of a real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealState {
    /// Healthy: gets new flows if its weight is positive.
    Up,
    /// Failed health checks: no new flows; existing flows are re-picked,
    /// or kept under [`OnDown::Keep`].
    Down,
    /// Draining: no new flows, existing flows continue.
    Drain,
    /// Administratively disabled: no new flows; existing flows are
    /// re-picked.
    Disabled,
}

/// What becomes of the established flows of a real that goes `Down`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDown {
    /// Rescheduled on their next packet (the default).
    #[default]
    Reschedule,
    /// Kept on the real until they end (the check may be wrong, or the
    /// real may still serve what it has).
    Keep,
}

/// Index of a real inside its [`Service`] (position in [`Service::reals`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealIdx(pub u16);

impl RealIdx {
    /// As a slice index.
    #[inline]
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

/// A backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Real {
    /// Address packets are sent to.
    pub addr: IpAddr,
    /// Port (NAT rewrites to it; DR/TUN ignore it except for identity).
    pub port: u16,
    /// Relative weight; 0 gets no new flows.
    pub weight: u32,
    /// Health / admin state.
    pub state: RealState,
    /// Opaque index the worker uses for its neighbour / MAC lookup.
    pub neigh: u32,
}

impl Real {
    /// Up and weight > 0.
    #[inline]
    pub fn is_eligible(&self) -> bool {
        self.state == RealState::Up && self.weight > 0
    }
}

/// Source-IP persistence ("sticky") options of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Idle time after which a client group may be re-balanced.
    pub timeout_secs: u32,
    /// IPv4 client addresses are grouped by this prefix length (0..=32).
    pub v4_prefix: u8,
    /// IPv6 client addresses are grouped by this prefix length (0..=128).
    pub v6_prefix: u8,
}

impl Default for Persistence {
    fn default() -> Self {
        // IPVS's default persistence timeout is 300 s, per client address.
        Self {
            timeout_secs: 300,
            v4_prefix: 32,
            v6_prefix: 128,
        }
    }
}

/// What the control plane says about one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Stable id given by the control plane.
    pub id: u32,
    /// Human readable name.
    pub name: String,
    /// Virtual address.
    pub vip: IpAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Port; 0 matches every port of the VIP (an exact port wins).
    pub port: u16,
    /// Forwarding method.
    pub mode: Mode,
    /// Scheduler for new flows.
    pub scheduler: SchedulerKind,
    /// Source-IP persistence, if any.
    pub persistence: Option<Persistence>,
    /// Backends (at most 65535).
    pub reals: Vec<Real>,
    /// What a `Down` real does with its established flows.
    pub on_down: OnDown,
    /// A server for new flows when no real is eligible (never scheduled;
    /// takes new flows while its own state is `Up`, weight ignored).
    pub fallback: Option<Real>,
    /// New flows admitted per second (per worker), if limited: a token
    /// bucket holding one second's worth; packets of existing flows are
    /// never limited.
    pub new_flow_rate_limit: Option<u32>,
    /// Idle timeouts of its flows where they differ from the node's.
    pub timeouts: Option<ServiceTimeouts>,
}

/// A service's own idle timeouts (`[vip.timeouts]`), in milliseconds;
/// `None` keeps the node's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServiceTimeouts {
    /// Established TCP flows.
    pub tcp_ms: Option<u32>,
    /// TCP flows closing (FIN_WAIT, CLOSE_WAIT, TIME_WAIT).
    pub tcp_fin_ms: Option<u32>,
    /// UDP flows.
    pub udp_ms: Option<u32>,
    /// An established TCP flow that expires gets a RST sent to both ends
    /// (`tcp_reset_on_idle`).
    pub reset_on_idle: bool,
}

impl ServiceTimeouts {
    /// `base` with these overrides.
    pub fn apply(&self, base: crate::conntrack::Timeouts) -> crate::conntrack::Timeouts {
        let mut t = base;
        if let Some(v) = self.tcp_ms {
            t.established = v;
        }
        if let Some(v) = self.tcp_fin_ms {
            t.fin_wait = v;
            t.close_wait = v;
            t.time_wait = v;
        }
        if let Some(v) = self.udp_ms {
            t.udp = v;
        }
        t
    }
}

/// Why a [`VipTable`] could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    /// More distinct service timeouts than the tables hold.
    #[error("more than {} distinct [vip.timeouts] settings", crate::conntrack::MAX_PROFILES - 1)]
    TooManyTimeouts,
    /// Two services with the same (vip, proto, port).
    #[error("duplicate VIP {vip} {proto:?} port {port}")]
    DuplicateVip {
        /// Address.
        vip: IpAddr,
        /// Protocol.
        proto: Proto,
        /// Port.
        port: u16,
    },
    /// Two services with the same id.
    #[error("duplicate service id {0}")]
    DuplicateId(u32),
    /// Two reals of one service with the same (address, port).
    #[error("service {service}: duplicate real {addr} port {port}")]
    DuplicateReal {
        /// Service id.
        service: u32,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// More than 65535 reals.
    #[error("service {0}: more than 65535 reals")]
    TooManyReals(u32),
    /// Persistence prefix longer than the address.
    #[error("service {0}: persistence prefix out of range")]
    BadPrefix(u32),
    /// The fallback is also one of the reals.
    #[error("service {service}: fallback {addr} port {port} is also a real")]
    FallbackIsReal {
        /// Service id.
        service: u32,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
}

/// A built service: its spec, its scheduler's immutable data and, when
/// persistence is on, the Maglev table persistence groups are hashed over.
#[derive(Debug)]
pub struct Service {
    spec: ServiceSpec,
    /// The reals, then the fallback if any.
    targets: Vec<Real>,
    scheduler: Scheduler,
    /// Built only when persistence is on and the scheduler has no Maglev
    /// table of its own.
    persist_table: Option<Maglev>,
    /// Its flows' timeout profile in the connection tables (0: the
    /// node's timeouts; see [`VipTable::timeout_profiles`]).
    profile: u8,
}

impl Service {
    /// Validates a spec and builds its scheduler (and persistence table).
    pub fn build(spec: ServiceSpec) -> Result<Self, ServiceError> {
        if spec.reals.len() > usize::from(u16::MAX) {
            return Err(ServiceError::TooManyReals(spec.id));
        }
        if let Some(p) = spec.persistence {
            if p.v4_prefix > 32 || p.v6_prefix > 128 {
                return Err(ServiceError::BadPrefix(spec.id));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for r in &spec.reals {
            if !seen.insert((r.addr, r.port)) {
                return Err(ServiceError::DuplicateReal {
                    service: spec.id,
                    addr: r.addr,
                    port: r.port,
                });
            }
        }
        if let Some(f) = &spec.fallback {
            if seen.contains(&(f.addr, f.port)) {
                return Err(ServiceError::FallbackIsReal {
                    service: spec.id,
                    addr: f.addr,
                    port: f.port,
                });
            }
        }
        let scheduler = Scheduler::build(spec.scheduler, &spec.reals);
        let persist_table = match (&spec.persistence, scheduler.maglev()) {
            (Some(_), None) => Some(Maglev::from_reals(&spec.reals)),
            _ => None,
        };
        let mut targets = spec.reals.clone();
        targets.extend(spec.fallback.iter().cloned());
        Ok(Self {
            spec,
            targets,
            scheduler,
            persist_table,
            profile: 0,
        })
    }

    /// Whether its established TCP flows get a RST to both ends when they
    /// expire (`tcp_reset_on_idle`).
    #[inline]
    pub fn reset_on_idle(&self) -> bool {
        self.spec.timeouts.is_some_and(|t| t.reset_on_idle)
    }

    /// Its flows' timeout profile (see [`VipTable::timeout_profiles`]).
    #[inline]
    pub fn profile(&self) -> u8 {
        self.profile
    }

    /// The spec this service was built from.
    #[inline]
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }
    /// Stable id.
    #[inline]
    pub fn id(&self) -> u32 {
        self.spec.id
    }
    /// Forwarding method.
    #[inline]
    pub fn mode(&self) -> Mode {
        self.spec.mode
    }
    /// Backends; a [`RealIdx`] indexes this slice.
    #[inline]
    pub fn reals(&self) -> &[Real] {
        &self.spec.reals
    }
    /// The real at `idx`, if in range.
    #[inline]
    pub fn real(&self, idx: RealIdx) -> Option<&Real> {
        self.spec.reals.get(idx.get())
    }
    /// What a `Down` real does with its established flows.
    #[inline]
    pub fn on_down(&self) -> OnDown {
        self.spec.on_down
    }
    /// The fallback's index among the targets (`reals().len()`), if any.
    #[inline]
    pub fn fallback_idx(&self) -> Option<RealIdx> {
        self.spec
            .fallback
            .as_ref()
            .map(|_| RealIdx(self.spec.reals.len() as u16))
    }
    /// Every server a flow may be bound to: the reals, then the fallback.
    /// Per-real tables (routes, counters, active counts) follow this shape.
    #[inline]
    pub fn targets(&self) -> &[Real] {
        &self.targets
    }
    /// The target (real or fallback) at `idx`, if in range.
    #[inline]
    pub fn target(&self, idx: RealIdx) -> Option<&Real> {
        self.targets.get(idx.get())
    }
    /// The fallback for a new flow, when it may take one (state `Up`).
    #[inline]
    pub fn usable_fallback(&self) -> Option<RealIdx> {
        self.fallback_idx()
            .filter(|&f| self.targets[f.get()].state == RealState::Up)
    }
    /// Whether an established flow bound to target `idx` goes on there:
    /// `Up` and `Drain` keep their flows, `Disabled` never does, `Down`
    /// does under [`OnDown::Keep`]. `false` for an index out of range.
    #[inline]
    pub fn keeps_flow(&self, idx: RealIdx) -> bool {
        match self.target(idx).map(|r| r.state) {
            Some(RealState::Up | RealState::Drain) => true,
            Some(RealState::Down) => self.spec.on_down == OnDown::Keep,
            Some(RealState::Disabled) | None => false,
        }
    }
    /// Persistence options.
    #[inline]
    pub fn persistence(&self) -> Option<Persistence> {
        self.spec.persistence
    }
    /// The built scheduler.
    #[inline]
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The Maglev table over the eligible reals used for consistent
    /// choices: the scheduler's own (maglev, sh) or the one built for
    /// persistence. `None` for a non-persistent rr/wrr/lc/wlc service.
    #[inline]
    pub fn consistent_table(&self) -> Option<&Maglev> {
        self.scheduler.maglev().or(self.persist_table.as_ref())
    }

    /// Re-resolves a real after a snapshot swap: `hint` if it still names
    /// `(addr, port)`, else a linear search by address (slow path, only
    /// taken when the real list changed).
    ///
    /// A flow records the port it reaches its server on; a server without
    /// a port (0: the flow keeps the VIP port it came to, as on a VIP of
    /// every port) matches any port at its address.
    pub fn resolve_real(&self, hint: RealIdx, addr: IpAddr, port: u16) -> Option<RealIdx> {
        resolve_in(&self.spec.reals, hint, addr, port)
    }

    /// [`Self::resolve_real`] over the targets: a flow's server is found
    /// among the reals, then as the fallback.
    pub fn resolve_target(&self, hint: RealIdx, addr: IpAddr, port: u16) -> Option<RealIdx> {
        resolve_in(&self.targets, hint, addr, port)
    }

    /// Carries a worker's per-target active connection counts over to
    /// this (new) version of a service: each count follows its server by
    /// address and port; new ones start at 0. Allocates: call it when
    /// adopting a snapshot, not per packet.
    pub fn remap_counts(&self, old: &Service, old_counts: &[u32]) -> Vec<u32> {
        let mut counts = vec![0u32; self.targets.len()];
        for (i, r) in old.targets().iter().enumerate() {
            let c = old_counts.get(i).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            if let Some(j) = self.resolve_target(RealIdx(i as u16), r.addr, r.port) {
                counts[j.get()] += c;
            }
        }
        counts
    }

    /// Picks a real for a new flow with the service's scheduler (ignoring
    /// persistence). See [`Scheduler::pick`].
    #[inline]
    pub fn pick(
        &self,
        flow_hash: u64,
        src: IpAddr,
        state: &mut SchedState,
        conns: &[u32],
    ) -> Option<RealIdx> {
        self.scheduler.pick(flow_hash, src, state, conns)
    }

    /// Picks a real for a new flow: through `persist` when the service has
    /// persistence, else through the scheduler.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn select(
        &self,
        now: u32,
        flow_hash: u64,
        src: IpAddr,
        state: &mut SchedState,
        conns: &[u32],
        persist: &mut PersistTable,
    ) -> Option<RealIdx> {
        if self.spec.persistence.is_some() {
            persist.pick(now, self, src)
        } else {
            self.pick(flow_hash, src, state, conns)
        }
    }
}

/// The server of `list` a flow to `(addr, port)` is on: `hint` if it
/// still serves it, else the first with that address and port, else the
/// first with that address and no port (port 0 carries the flow's port).
fn resolve_in(list: &[Real], hint: RealIdx, addr: IpAddr, port: u16) -> Option<RealIdx> {
    let serves = |r: &Real| r.addr == addr && (r.port == port || r.port == 0);
    match list.get(hint.get()) {
        Some(r) if serves(r) => Some(hint),
        _ => list
            .iter()
            .position(|r| r.addr == addr && r.port == port)
            .or_else(|| list.iter().position(serves))
            .map(|i| RealIdx(i as u16)),
    }
}

/// A deterministic, fast `Hasher` for the VIP map (fixed seed; keys are
/// operator-configured, not attacker controlled).
#[derive(Default)]
pub struct VipHasher(u64);

impl Hasher for VipHasher {
    #[inline]
    fn finish(&self) -> u64 {
        hash::fmix64(self.0)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = hash::fold(self.0, u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = hash::fold(self.0, u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.0 = hash::fold(self.0, u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0 = hash::fold(self.0, u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = hash::fold(self.0, i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = hash::fold(self.0, i as u64);
    }
}

/// Index of a service inside a [`VipTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceIdx(pub u32);

/// The immutable VIP table of one snapshot.
#[derive(Debug)]
pub struct VipTable {
    services: Vec<Service>,
    /// The distinct service timeouts, profile 1 first.
    profiles: Vec<ServiceTimeouts>,
    by_key: vipindex::VipIndex,
    by_id: HashMap<u32, u32, BuildHasherDefault<VipHasher>>,
    generation: u64,
}

impl VipTable {
    /// Builds the table (validating every service). `generation` is the
    /// snapshot's number, for the workers' bookkeeping.
    pub fn build(specs: Vec<ServiceSpec>, generation: u64) -> Result<Self, ServiceError> {
        let mut services = Vec::with_capacity(specs.len());
        let mut by_key = vipindex::VipIndex::with_capacity(specs.len());
        let mut by_id = HashMap::with_capacity_and_hasher(specs.len(), Default::default());
        for spec in specs {
            let i = services.len() as u32;
            if !by_key.insert(spec.vip, spec.proto, spec.port, i) {
                return Err(ServiceError::DuplicateVip {
                    vip: spec.vip,
                    proto: spec.proto,
                    port: spec.port,
                });
            }
            if by_id.insert(spec.id, i).is_some() {
                return Err(ServiceError::DuplicateId(spec.id));
            }
            services.push(Service::build(spec)?);
        }
        // Profiles in order of first use: the same specs give the same
        // numbers (a BACKUP's standby table and its table after a
        // takeover agree).
        let mut profiles: Vec<ServiceTimeouts> = Vec::new();
        for s in &mut services {
            let Some(t) = s.spec.timeouts.filter(|t| *t != ServiceTimeouts::default()) else {
                continue;
            };
            let p = match profiles.iter().position(|x| *x == t) {
                Some(p) => p,
                None => {
                    if profiles.len() + 1 >= crate::conntrack::MAX_PROFILES {
                        return Err(ServiceError::TooManyTimeouts);
                    }
                    profiles.push(t);
                    profiles.len() - 1
                }
            };
            s.profile = (p + 1) as u8;
        }
        Ok(Self {
            services,
            profiles,
            by_key,
            by_id,
            generation,
        })
    }

    /// The distinct service timeouts: profile `i + 1` is `[i]`.
    pub fn timeout_profiles(&self) -> &[ServiceTimeouts] {
        &self.profiles
    }

    /// The service for a packet to `addr:port` over `proto`: the exact port
    /// first, then the VIP's wildcard (port 0) service.
    #[inline]
    pub fn lookup(&self, addr: IpAddr, proto: Proto, port: u16) -> Option<&Service> {
        self.lookup_idx(addr, proto, port)
            .map(|i| &self.services[i.0 as usize])
    }

    /// Like [`Self::lookup`], returning the service's index.
    #[inline]
    pub fn lookup_idx(&self, addr: IpAddr, proto: Proto, port: u16) -> Option<ServiceIdx> {
        if let Some(i) = self.by_key.get(addr, proto, port) {
            return Some(ServiceIdx(i));
        }
        if port == 0 {
            return None;
        }
        self.by_key.get(addr, proto, 0).map(ServiceIdx)
    }

    /// The service at an index from [`Self::lookup_idx`].
    #[inline]
    pub fn get(&self, idx: ServiceIdx) -> Option<&Service> {
        self.services.get(idx.0 as usize)
    }

    /// The service with a control-plane id (e.g. from a conntrack entry).
    #[inline]
    pub fn by_id(&self, id: u32) -> Option<&Service> {
        self.by_id.get(&id).map(|&i| &self.services[i as usize])
    }

    /// The index of the service with control-plane id `id`.
    #[inline]
    pub fn idx_by_id(&self, id: u32) -> Option<usize> {
        self.by_id.get(&id).map(|&i| i as usize)
    }

    /// All services, in spec order ([`ServiceIdx`] order).
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Snapshot generation given at build time.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Fresh per-worker scheduler state for every service, in
    /// [`ServiceIdx`] order (allocate once per snapshot, off the hot path).
    pub fn new_sched_states(&self) -> Vec<SchedState> {
        self.services
            .iter()
            .map(|s| SchedState::new(s.scheduler()))
            .collect()
    }

    /// Zeroed per-worker active connection counts (lc/wlc), one vector per
    /// service in [`ServiceIdx`] order, one count per target (the reals,
    /// then the fallback).
    pub fn new_conn_counts(&self) -> Vec<Vec<u32>> {
        self.services
            .iter()
            .map(|s| vec![0; s.targets().len()])
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) fn real(last: u8, weight: u32, state: RealState) -> Real {
        Real {
            addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, last)),
            port: 8080,
            weight,
            state,
            neigh: u32::from(last),
        }
    }

    pub(crate) fn spec(id: u32, vip: IpAddr, port: u16, sched: SchedulerKind) -> ServiceSpec {
        ServiceSpec {
            id,
            name: format!("svc{id}"),
            vip,
            proto: Proto::Tcp,
            port,
            mode: Mode::Nat,
            scheduler: sched,
            persistence: None,
            reals: (1..=4).map(|i| real(i, 1, RealState::Up)).collect(),
            on_down: OnDown::Reschedule,
            fallback: None,
            new_flow_rate_limit: None,
            timeouts: None,
        }
    }

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    #[test]
    fn exact_port_wins_over_wildcard() {
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let mut udp = spec(5, v4(1), 53, SchedulerKind::Rr);
        udp.proto = Proto::Udp;
        let t = VipTable::build(
            vec![
                spec(1, v4(1), 0, SchedulerKind::Maglev),
                spec(2, v4(1), 443, SchedulerKind::Wrr),
                spec(3, v4(2), 80, SchedulerKind::Rr),
                spec(4, v6, 0, SchedulerKind::Sh),
                udp,
            ],
            7,
        )
        .unwrap();
        let cases: &[(IpAddr, Proto, u16, Option<u32>)] = &[
            (v4(1), Proto::Tcp, 443, Some(2)),
            (v4(1), Proto::Tcp, 80, Some(1)),
            (v4(1), Proto::Tcp, 0, Some(1)),
            (v4(1), Proto::Udp, 443, None),
            (v4(1), Proto::Udp, 53, Some(5)),
            (v4(2), Proto::Tcp, 80, Some(3)),
            (v4(2), Proto::Tcp, 81, None),
            (v4(3), Proto::Tcp, 80, None),
            (v6, Proto::Tcp, 1, Some(4)),
            (v6, Proto::Udp, 1, None),
        ];
        for &(addr, proto, port, want) in cases {
            assert_eq!(
                t.lookup(addr, proto, port).map(|s| s.id()),
                want,
                "{addr} {proto:?} {port}"
            );
        }
        assert_eq!(t.by_id(3).unwrap().spec().port, 80);
        assert_eq!(t.generation(), 7);
        assert_eq!(t.new_sched_states().len(), 5);
        assert_eq!(t.new_conn_counts()[0], vec![0; 4]);
        assert_eq!(
            t.get(t.lookup_idx(v4(2), Proto::Tcp, 80).unwrap())
                .unwrap()
                .id(),
            3
        );
    }

    #[test]
    fn build_errors() {
        let dup_vip = vec![
            spec(1, v4(1), 80, SchedulerKind::Rr),
            spec(2, v4(1), 80, SchedulerKind::Rr),
        ];
        assert!(matches!(
            VipTable::build(dup_vip, 0),
            Err(ServiceError::DuplicateVip { .. })
        ));
        let dup_id = vec![
            spec(1, v4(1), 80, SchedulerKind::Rr),
            spec(1, v4(1), 81, SchedulerKind::Rr),
        ];
        assert_eq!(
            VipTable::build(dup_id, 0).unwrap_err(),
            ServiceError::DuplicateId(1)
        );
        let mut s = spec(1, v4(1), 80, SchedulerKind::Rr);
        s.reals.push(s.reals[0].clone());
        assert!(matches!(
            VipTable::build(vec![s], 0),
            Err(ServiceError::DuplicateReal { .. })
        ));
        let mut s = spec(1, v4(1), 80, SchedulerKind::Rr);
        s.persistence = Some(Persistence {
            timeout_secs: 1,
            v4_prefix: 33,
            v6_prefix: 64,
        });
        assert_eq!(
            VipTable::build(vec![s], 0).unwrap_err(),
            ServiceError::BadPrefix(1)
        );
        let mut s = spec(1, v4(1), 80, SchedulerKind::Rr);
        s.reals = (0..=u16::MAX as u32)
            .map(|i| Real {
                addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                port: 1,
                weight: 1,
                state: RealState::Up,
                neigh: 0,
            })
            .collect();
        assert_eq!(
            VipTable::build(vec![s], 0).unwrap_err(),
            ServiceError::TooManyReals(1)
        );
    }

    #[test]
    fn eligibility() {
        assert!(real(1, 1, RealState::Up).is_eligible());
        assert!(!real(1, 0, RealState::Up).is_eligible());
        for st in [RealState::Down, RealState::Drain, RealState::Disabled] {
            assert!(!real(1, 5, st).is_eligible());
        }
    }

    #[test]
    fn resolve_real_after_reorder() {
        let mut s = spec(1, v4(1), 80, SchedulerKind::Rr);
        let svc = Service::build(s.clone()).unwrap();
        let r2 = svc.reals()[2].clone();
        assert_eq!(
            svc.resolve_real(RealIdx(2), r2.addr, r2.port),
            Some(RealIdx(2))
        );
        s.reals.swap(0, 2);
        let svc2 = Service::build(s.clone()).unwrap();
        assert_eq!(
            svc2.resolve_real(RealIdx(2), r2.addr, r2.port),
            Some(RealIdx(0))
        );
        s.reals.remove(0);
        let svc3 = Service::build(s).unwrap();
        assert_eq!(svc3.resolve_real(RealIdx(2), r2.addr, r2.port), None);
    }

    /// Found by the `pipeline` fuzzer: a flow to a real without a port
    /// (a VIP of every port) records the port it came to, and must still
    /// resolve to that real, or every packet re-schedules the flow and
    /// leaks an active count.
    #[test]
    fn a_real_without_a_port_serves_every_port() {
        let mut s = spec(1, v4(1), 0, SchedulerKind::Rr);
        for r in &mut s.reals {
            r.port = 0;
        }
        s.fallback = Some(Real {
            port: 0,
            ..real(9, 1, RealState::Up)
        });
        let svc = Service::build(s).unwrap();
        let r2 = svc.reals()[2].addr;
        for hint in [RealIdx(2), RealIdx(0), RealIdx(99)] {
            assert_eq!(svc.resolve_real(hint, r2, 8443), Some(RealIdx(2)));
            assert_eq!(svc.resolve_target(hint, r2, 8443), Some(RealIdx(2)));
        }
        let fb = svc.targets()[4].addr;
        assert_eq!(svc.resolve_target(RealIdx(0), fb, 22), Some(RealIdx(4)));
        assert_eq!(svc.resolve_real(RealIdx(0), fb, 22), None);
        // An exact port still wins over a real without one.
        let mut s = spec(2, v4(1), 443, SchedulerKind::Rr);
        s.reals[0].port = 0;
        s.reals[3].addr = s.reals[0].addr;
        s.reals[3].port = 443;
        let svc = Service::build(s).unwrap();
        let a = svc.reals()[0].addr;
        assert_eq!(svc.resolve_real(RealIdx(1), a, 443), Some(RealIdx(3)));
        assert_eq!(svc.resolve_real(RealIdx(1), a, 80), Some(RealIdx(0)));
    }

    #[test]
    fn counts_follow_reals_across_snapshots() {
        let mut s = spec(1, v4(1), 80, SchedulerKind::Wlc);
        let old = Service::build(s.clone()).unwrap();
        s.reals.swap(0, 3);
        s.reals.remove(1);
        s.reals.push(real(9, 1, RealState::Up));
        let new = Service::build(s).unwrap();
        // old reals: .1 .2 .3 .4 -> new: .4 .3 .1 .9
        assert_eq!(
            new.remap_counts(&old, &[10, 20, 30, 40]),
            vec![40, 30, 10, 0]
        );
        assert_eq!(new.remap_counts(&old, &[]), vec![0; 4]);
    }

    #[test]
    fn the_fallback_is_the_target_after_the_reals() {
        let mut s = spec(1, v4(1), 80, SchedulerKind::Wlc);
        assert_eq!(Service::build(s.clone()).unwrap().fallback_idx(), None);
        s.fallback = Some(real(9, 1, RealState::Up));
        let svc = Service::build(s.clone()).unwrap();
        let f = svc.fallback_idx().unwrap();
        assert_eq!(f, RealIdx(4));
        assert_eq!(svc.reals().len(), 4, "never scheduled");
        assert_eq!(svc.targets().len(), 5);
        assert_eq!(svc.target(f).unwrap().addr, real(9, 1, RealState::Up).addr);
        assert_eq!(svc.usable_fallback(), Some(f));
        let fb = real(9, 1, RealState::Up);
        assert_eq!(svc.resolve_target(RealIdx(0), fb.addr, fb.port), Some(f));
        assert_eq!(svc.resolve_real(RealIdx(0), fb.addr, fb.port), None);
        // Counts follow the fallback across versions too.
        s.reals.remove(0);
        let new = Service::build(s.clone()).unwrap();
        assert_eq!(new.remap_counts(&svc, &[1, 2, 3, 4, 5]), vec![2, 3, 4, 5]);
        // A fallback that is down takes nothing; one that is a real is refused.
        s.fallback = Some(real(9, 1, RealState::Down));
        assert_eq!(Service::build(s.clone()).unwrap().usable_fallback(), None);
        s.fallback = Some(s.reals[0].clone());
        assert!(matches!(
            Service::build(s),
            Err(ServiceError::FallbackIsReal { service: 1, .. })
        ));
    }

    #[test]
    fn which_states_keep_their_flows() {
        let states = [
            RealState::Up,
            RealState::Drain,
            RealState::Down,
            RealState::Disabled,
        ];
        // (on_down, keeps for Up, Drain, Down, Disabled)
        for (on_down, want) in [
            (OnDown::Reschedule, [true, true, false, false]),
            (OnDown::Keep, [true, true, true, false]),
        ] {
            let mut s = spec(1, v4(1), 80, SchedulerKind::Rr);
            s.on_down = on_down;
            for (r, st) in s.reals.iter_mut().zip(states) {
                r.state = st;
            }
            let svc = Service::build(s).unwrap();
            let got: Vec<bool> = (0..4).map(|i| svc.keeps_flow(RealIdx(i))).collect();
            assert_eq!(got, want, "{on_down:?}");
            assert!(!svc.keeps_flow(RealIdx(4)), "out of range");
        }
    }

    #[test]
    fn consistent_table_presence() {
        let rr = Service::build(spec(1, v4(1), 80, SchedulerKind::Rr)).unwrap();
        assert!(rr.consistent_table().is_none());
        let mut p = spec(1, v4(1), 80, SchedulerKind::Wlc);
        p.persistence = Some(Persistence::default());
        assert!(Service::build(p).unwrap().consistent_table().is_some());
        let mg = Service::build(spec(1, v4(1), 80, SchedulerKind::Maglev)).unwrap();
        assert!(mg.consistent_table().is_some());
    }
}
