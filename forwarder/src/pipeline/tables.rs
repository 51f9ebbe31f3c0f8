//! A worker's own tables: how they are built for a snapshot, take a new
//! one without losing flows, expire idle flows, and hand the counters
//! out; and the per-service counters themselves.

use super::*;

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

/// [`Tables`]`::fast_hops` for `snap`: each target's word, nothing
/// remembered.
pub(super) fn fast_targets(snap: &Snapshot) -> Vec<memo::FastHop> {
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
pub(super) const PERSIST_CAPACITY: usize = 65536;

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
        t.sync
            .set_peer(snap.sync().map(|(s, _)| s.fingerprint), steer.me() == 0);
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
        let mut conn = ConnTable::new(cfg);
        conn.set_profiles(&Self::profiles(snap));
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
            outbound: super::outbound::OutboundTable::new(
                super::outbound::OUTBOUND_PORTS,
                super::outbound::Timeouts::default_with(TICK_HZ),
            ),
            marks: Vec::new(),
            resets: super::reset::Resets::default(),
            hops: HopCache::default(),
            fast_hops: fast_targets(snap),
            sync: Self::sync_log_for(snap),
            fanout: Vec::new(),
            generation: snap.generation,
            steer: Steer::single(),
            #[cfg(test)]
            plain_hits: 0,
        }
        .with_marks_for(snap)
    }

    /// Tables whose connection table has room for the sequence numbers of
    /// `tcp_reset_on_idle` flows, when a service of `snap` asks for them
    /// (once; kept after).
    fn with_marks_for(mut self, snap: &Snapshot) -> Tables {
        self.make_marks(snap);
        self
    }

    fn make_marks(&mut self, snap: &Snapshot) {
        if self.marks.is_empty() && snap.vips.services().iter().any(|s| s.reset_on_idle()) {
            self.marks = vec![super::reset::SeqMark::default(); self.conn.capacity()];
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

    pub(super) fn limits_for(node: &NodeLimits, snap: &Snapshot) -> Vec<Limit> {
        snap.vips
            .services()
            .iter()
            .map(|s| Limit::of(node, s.id()))
            .collect()
    }

    /// The connection tables' timeout profiles 1.. for `snap`'s services.
    pub(super) fn profiles(snap: &Snapshot) -> Vec<conntrack::Timeouts> {
        let base = conntrack::Timeouts::ipvs(TICK_HZ);
        snap.service_timeouts()
            .iter()
            .map(|t| t.apply(base))
            .collect()
    }

    pub(super) fn sync_log_for(snap: &Snapshot) -> SyncLog {
        let mut l = SyncLog::default();
        l.set_enabled(snap.sync().is_some_and(|(s, _)| s.send));
        l.set_peer(snap.sync().map(|(s, _)| s.fingerprint), true);
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
    pub(super) fn settle_counters(&mut self) {
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
        self.make_marks(new);
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
        // Timeouts per service: new numbers for the profiles move every
        // flow to its service's (one scan of the table, only then).
        let renumbered = old.service_timeouts() != new.service_timeouts()
            || new
                .vips
                .services()
                .iter()
                .chain(new.standby.iter().flat_map(|t| t.services()))
                .any(|s| {
                    old.known_service(s.id())
                        .is_some_and(|o| o.profile() != s.profile())
                });
        if renumbered {
            self.conn.set_profiles(&Self::profiles(new));
            if !self.conn.is_empty() {
                self.conn
                    .remap_profiles(|id| new.known_service(id).map_or(0, |s| s.profile()));
            }
        }
        self.sync
            .set_enabled_at(new.sync().is_some_and(|(s, _)| s.send), now_ms);
        self.sync
            .set_peer(new.sync().map(|(s, _)| s.fingerprint), self.steer.me() == 0);
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
        // The outbound table too, a few entries each time (it holds a few
        // thousand): expired outbound flows leave within a second.
        self.outbound.expire(now_ms as u32, 8);
        let (conn, mut freeing) = self.freeing();
        conn.sweep(now_ms as u32, budget, |f| freeing.release(snap, now_ms, f))
    }

    /// Whether a service asks for `tcp_reset_on_idle` (its flows' RSTs
    /// come out of the sweep: sweep in [`super::reset::SWEEP_CHUNK`]s and
    /// send them in between).
    pub fn resets_wanted(&self) -> bool {
        !self.marks.is_empty()
    }
}
