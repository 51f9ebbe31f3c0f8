//! The daemon's figures as an [`admin::Status`](crate::admin::Status):
//! the workers' counters summed for the snapshot in force, rates, the
//! checks, VRRP and connection sync.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use forwarder::pipeline::DropReason;
use forwarder::stats::{WorkerShared, WorkerStats};

use super::policy::RealKey;
use super::State;
use crate::admin::status::{
    AnnounceStatus, CheckStatus, Conntrack, FallbackStatus, HaStatus, Mbufs, Neighbour,
    OutboundRuleStatus, OutboundStatus, Persistence, PlacementStatus, PortStatus, RealStatus,
    RealTraffic, Status, SyncStatus, VipStatus, VipTraffic, WorkerCounters, WorkerStatus,
};
use crate::vrrp::driver::Ha;

/// One worker's rates, from two samples of its counters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WorkerRate {
    rx_pps: f64,
    tx_pps: f64,
    handoffs_out_pps: f64,
}

/// Samples the workers' counters about once a second and turns them into
/// rates.
pub(super) struct RateSampler {
    at: Instant,
    last: Vec<[u64; 3]>,
}

impl RateSampler {
    pub(super) fn new(workers: &[Arc<WorkerShared>]) -> RateSampler {
        RateSampler {
            at: Instant::now(),
            last: workers.iter().map(|w| Self::read(w)).collect(),
        }
    }

    fn read(w: &WorkerShared) -> [u64; 3] {
        let s = &w.stats;
        [load(&s.rx), load(&s.tx), load(&s.handoffs_out)]
    }

    /// New rates once a second has passed since the last sample.
    pub(super) fn sample(&mut self, workers: &[Arc<WorkerShared>]) -> Option<Vec<WorkerRate>> {
        let dt = self.at.elapsed().as_secs_f64();
        if dt < 1.0 {
            return None;
        }
        self.at = Instant::now();
        let now: Vec<[u64; 3]> = workers.iter().map(|w| Self::read(w)).collect();
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let rates = now
            .iter()
            .zip(&self.last)
            .map(|(n, l)| WorkerRate {
                rx_pps: per(n[0], l[0]),
                tx_pps: per(n[1], l[1]),
                handoffs_out_pps: per(n[2], l[2]),
            })
            .collect();
        self.last = now;
        Some(rates)
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn worker_counters(w: &WorkerStats) -> WorkerCounters {
    WorkerCounters {
        rx: load(&w.rx),
        tx: load(&w.tx),
        forwarded: load(&w.forwarded),
        answered: load(&w.answered),
        to_kernel: load(&w.to_kernel),
        from_kernel: load(&w.from_kernel),
        polls: load(&w.polls),
        idle_polls: load(&w.idle_polls),
        busy_cycles: load(&w.busy_cycles),
        handoffs_out: load(&w.handoffs_out),
        handoffs_in: load(&w.handoffs_in),
        sync_records_sent: load(&w.sync_records_sent),
        sync_batches_sent: load(&w.sync_batches_sent),
        sync_records_lost: load(&w.sync_records_lost),
        sync_records_received: load(&w.sync_records_received),
        sync_records_applied: load(&w.sync_records_applied),
        sync_records_rejected: load(&w.sync_records_rejected),
        sync_records_unknown_service: load(&w.sync_records_unknown_service),
        sync_records_fanout_dropped: load(&w.sync_records_fanout_dropped),
        sync_batches_missed: load(&w.sync_batches_missed),
        sync_datagrams_received: load(&w.sync_datagrams_received),
        sync_config_differs: load(&w.sync_config_differs),
        idle_resets: load(&w.idle_resets),
        idle_resets_unsent: load(&w.idle_resets_unsent),
    }
}

fn conntrack(w: &WorkerStats) -> Conntrack {
    Conntrack {
        capacity: load(&w.conn.capacity),
        flows: load(&w.flows),
        half_open: load(&w.conn.half_open),
        inserts: load(&w.conn.inserts),
        evictions_half_open: load(&w.conn.evictions_half_open),
        evictions_established: load(&w.conn.evictions_established),
        evictions_other: load(&w.conn.evictions_other),
        insert_failures: load(&w.conn.insert_failures),
    }
}

impl std::ops::AddAssign for Conntrack {
    fn add_assign(&mut self, o: Conntrack) {
        self.capacity += o.capacity;
        self.flows += o.flows;
        self.half_open += o.half_open;
        self.inserts += o.inserts;
        self.evictions_half_open += o.evictions_half_open;
        self.evictions_established += o.evictions_established;
        self.evictions_other += o.evictions_other;
        self.insert_failures += o.insert_failures;
    }
}

/// Active flows per real on the node, summed over every worker; `None`
/// while some worker has not reported on the snapshot in force yet (just
/// after a change, the counts would read low).
pub(super) fn real_active(s: &State) -> Option<HashMap<RealKey, u64>> {
    let services = s.snap.vips.services();
    let mut out: HashMap<RealKey, u64> = HashMap::new();
    for w in &s.workers {
        let r = w.services.lock().unwrap_or_else(|e| e.into_inner());
        if r.generation != s.snap.generation {
            return None;
        }
        for (sv, a) in services.iter().zip(&r.active) {
            for (real, n) in sv.reals().iter().zip(a) {
                *out.entry((sv.spec().name.clone(), real.addr, real.port))
                    .or_default() += u64::from(*n);
            }
        }
    }
    Some(out)
}

/// Per service: its traffic, and per target (the reals, then the
/// fallback) its traffic; summed over the workers that run the snapshot
/// in force.
fn service_traffic(s: &State) -> Vec<(VipTraffic, Vec<RealTraffic>)> {
    let services = s.snap.vips.services();
    let mut t: Vec<(VipTraffic, Vec<RealTraffic>)> = services
        .iter()
        .map(|sv| {
            let targets = sv.reals().len() + usize::from(sv.spec().fallback.is_some());
            (VipTraffic::default(), vec![RealTraffic::default(); targets])
        })
        .collect();
    for w in &s.workers {
        let r = w.services.lock().unwrap_or_else(|e| e.into_inner());
        if r.generation != s.snap.generation {
            continue;
        }
        for ((vt, rt), c) in t.iter_mut().zip(&r.counters) {
            vt.packets_in += c.packets_in;
            vt.bytes_in += c.bytes_in;
            vt.packets_out += c.packets_out;
            vt.bytes_out += c.bytes_out;
            vt.new_flows += c.new_flows;
            vt.rejected += c.rejected;
            for (d, rc) in rt.iter_mut().zip(&c.reals) {
                d.packets += rc[0];
                d.bytes += rc[1];
                d.new_flows += rc[2];
            }
        }
        for ((_, rt), a) in t.iter_mut().zip(&r.active) {
            for (d, n) in rt.iter_mut().zip(a) {
                d.active_flows += u64::from(*n);
            }
        }
    }
    t
}

fn lower(d: impl std::fmt::Debug) -> String {
    format!("{d:?}").to_lowercase()
}

fn vips(s: &State) -> Vec<VipStatus> {
    let traffic = service_traffic(s);
    s.snap
        .vips
        .services()
        .iter()
        .zip(traffic)
        .map(|(sv, (vt, rt))| {
            let spec = sv.spec();
            let cfgv = s.cfg.vips.iter().find(|v| v.name == spec.name);
            let nreals = sv.reals().len();
            let reals = sv
                .reals()
                .iter()
                .zip(&rt)
                .map(|(r, t)| {
                    let key = (spec.name.clone(), r.addr, r.port);
                    let limit = cfgv
                        .and_then(|v| {
                            v.reals
                                .iter()
                                .find(|c| c.address == r.addr && c.port == r.port)
                        })
                        .and_then(|c| c.max_conns.map(|m| (m, c.min_conns.unwrap_or(m))));
                    (r, t, key, limit)
                })
                .map(|(r, t, key, limit)| RealStatus {
                    address: r.addr.to_string(),
                    port: r.port,
                    weight: r.weight,
                    state: if s.reals.is_removed(&key) {
                        "removed".to_string()
                    } else if r.state == forwarder::service::RealState::Drain
                        && s.reals.is_overloaded(&key)
                        && s.reals.admin(&key).is_none()
                    {
                        "overloaded".to_string()
                    } else {
                        lower(r.state)
                    },
                    max_conns: limit.map(|l| l.0),
                    min_conns: limit.map(|l| l.1),
                    admin: s
                        .reals
                        .admin(&(spec.name.clone(), r.addr, r.port))
                        .map(|a| a.name().to_string()),
                    health: s
                        .reals
                        .check(&spec.name, SocketAddr::new(r.addr, r.port))
                        .map(|h| CheckStatus {
                            kind: lower(h.kind),
                            target: h.probe.to_string(),
                            state: h.state.to_string(),
                            pending: h.pending,
                            last_ok: h.last_ok,
                            last_reason: h.last_reason.clone(),
                            last_latency_ms: h.last_latency.map(|d| d.as_secs_f64() * 1000.0),
                            consecutive_successes: h.consecutive_successes,
                            consecutive_failures: h.consecutive_failures,
                            total_checks: h.total_checks,
                            total_failures: h.total_failures,
                        }),
                    traffic: *t,
                })
                .collect();
            let fb = rt.get(nreals).copied().unwrap_or_default();
            VipStatus {
                name: spec.name.clone(),
                address: spec.vip.to_string(),
                protocol: lower(spec.proto),
                port: spec.port,
                mode: lower(sv.mode()),
                scheduler: lower(spec.scheduler),
                persistence: cfgv.and_then(|v| v.persistence).map(|p| Persistence {
                    timeout_s: p.timeout.as_secs(),
                    netmask: p.netmask,
                }),
                traffic: vt,
                on_down: cfgv.map(|v| lower(v.on_down)),
                new_flow_rate_limit: cfgv.and_then(|v| v.new_flow_rate_limit),
                fallback: spec.fallback.as_ref().map(|f| FallbackStatus {
                    address: f.addr.to_string(),
                    port: f.port,
                    packets: fb.packets,
                    new_flows: fb.new_flows,
                    active_flows: fb.active_flows,
                }),
                active_flows: rt.iter().map(|r| r.active_flows).sum(),
                announced: s.announce.as_ref().map(|a| a.announced.contains(&spec.vip)),
                reals,
            }
        })
        .collect()
}

/// The status of the daemon in `s`.
pub(super) fn status(s: &State) -> Status {
    let mut drops = [0u64; DropReason::COUNT];
    let mut conn_total = Conntrack::default();
    let workers: Vec<WorkerStatus> = s
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let st = &w.stats;
            for (d, a) in drops.iter_mut().zip(&st.drops) {
                *d += load(a);
            }
            let conn = conntrack(st);
            conn_total += conn;
            let rate = s.rates.get(i).copied().unwrap_or_default();
            let (lcore, cpu) = s.placement.workers.get(i).copied().unwrap_or_default();
            WorkerStatus {
                worker: i,
                lcore,
                cpu,
                flows: load(&st.flows),
                generation: load(&st.generation),
                rx_pps: rate.rx_pps.round() as u64,
                tx_pps: rate.tx_pps.round() as u64,
                handoffs_out_pps: rate.handoffs_out_pps.round() as u64,
                counters: worker_counters(st),
                conntrack: conn,
            }
        })
        .collect();
    let sum = |f: fn(&WorkerCounters) -> u64| workers.iter().map(|w| f(&w.counters)).sum::<u64>();
    let sync = s
        .cfg
        .ha
        .as_ref()
        .filter(|h| h.sync_peer.is_some())
        .map(|h| SyncStatus {
            peer: h.sync_peer.map(|p| p.to_string()),
            port: h.sync_port,
            sending: s.snap.sync().is_some_and(|(x, _)| x.send),
            records_sent: sum(|c| c.sync_records_sent),
            batches_sent: sum(|c| c.sync_batches_sent),
            records_lost: sum(|c| c.sync_records_lost),
            records_received: sum(|c| c.sync_records_received),
            records_applied: sum(|c| c.sync_records_applied),
            records_rejected: sum(|c| c.sync_records_rejected),
            records_unknown_service: sum(|c| c.sync_records_unknown_service),
            records_fanout_dropped: sum(|c| c.sync_records_fanout_dropped),
            batches_missed: sum(|c| c.sync_batches_missed),
            datagrams_received: sum(|c| c.sync_datagrams_received),
            config_differs: sum(|c| c.sync_config_differs),
            peer_config: s.peer.verdict().name().to_string(),
            peer_fingerprint: s.peer.peer().map(|fp| format!("{fp:016x}")),
        });
    Status {
        generation: s.snap.generation,
        reloads: s.reloads,
        fingerprint: format!("{:016x}", s.cfg.fingerprint()),
        last_reload_error: s.last_reload_error.clone(),
        flows: conn_total.flows,
        vips: vips(s),
        workers,
        placement: PlacementStatus {
            main_lcore: s.placement.main_lcore,
            control_cpus: s.placement.control_cpus.clone(),
            workers_sharing_control_cpus: s.placement.shared(),
        },
        drops: DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), drops[*r as usize]))
            .collect(),
        mbufs: Mbufs {
            in_use: s.mbufs.0,
            available: s.mbufs.1,
            capacity: s.mbufs.0 + s.mbufs.1,
        },
        conntrack: conn_total,
        ports: s
            .ports
            .iter()
            .map(|(name, p)| PortStatus {
                name: name.clone(),
                steering: s
                    .placement
                    .steering
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, how)| how.clone())
                    .unwrap_or_default(),
                rx_packets: p.rx_packets,
                tx_packets: p.tx_packets,
                rx_missed: p.rx_missed,
                rx_nombuf: p.rx_nombuf,
                rx_errors: p.rx_errors,
                tx_errors: p.tx_errors,
            })
            .collect(),
        ha: s.ha.clone(),
        sync,
        neighbours: s
            .neigh
            .entries()
            .iter()
            .map(|e| Neighbour {
                ip: e.ip.to_string(),
                mac: e.mac.map(|m| m.to_string()),
                permanent: e.permanent,
            })
            .collect(),
        announce: s.announce.as_ref().map(|a| AnnounceStatus {
            table: a.table,
            drained: a.drained,
            announced: a.announced.iter().map(ToString::to_string).collect(),
        }),
        outbound: outbound(s, drops[DropReason::OutboundNoPort as usize]),
    }
}

/// `[[outbound]]`'s rules and figures, summed over the workers.
fn outbound(s: &State, no_port: u64) -> Option<OutboundStatus> {
    if s.cfg.outbound.is_empty() {
        return None;
    }
    let sum = |f: fn(&forwarder::stats::OutboundStats) -> &AtomicU64| {
        s.workers.iter().map(|w| load(f(&w.stats.outbound))).sum()
    };
    Some(OutboundStatus {
        rules: s
            .cfg
            .outbound
            .iter()
            .map(|o| OutboundRuleStatus {
                name: o.name.clone(),
                sources: o.sources.iter().map(ToString::to_string).collect(),
                port_name: o.port_name.clone(),
                address: o.address.to_string(),
            })
            .collect(),
        flows: sum(|o| &o.flows),
        new_flows: sum(|o| &o.new_flows),
        packets_out: sum(|o| &o.packets_out),
        bytes_out: sum(|o| &o.bytes_out),
        packets_in: sum(|o| &o.packets_in),
        bytes_in: sum(|o| &o.bytes_in),
        no_port,
    })
}

/// What the status shows of the VRRP instance.
pub(super) fn ha_status(h: &Ha, owner: bool, last: Option<SystemTime>) -> HaStatus {
    let v = h.vrrp();
    let c = v.counters();
    HaStatus {
        state: v.state().to_string(),
        master: v.master().map(|m| m.to_string()),
        owner,
        priority: v.config().priority,
        advertised_priority: v.priority(),
        manual: v.manual().name().to_string(),
        vrid: v.config().vrid,
        advert_interval_ms: v.config().advert_interval.as_millis() as u64,
        master_down_interval_ms: v.master_down_interval().as_millis() as u64,
        transitions_to_master: c.to_master,
        transitions_to_backup: c.to_backup,
        transitions_to_fault: c.to_fault,
        adverts_sent: c.adverts_sent,
        priority_zero_sent: c.priority_zero_sent,
        adverts_received: c.adverts_received,
        adverts_invalid: c.adverts_invalid,
        adverts_dropped_ttl: h.dropped_ttl,
        priority_zero_received: c.priority_zero_received,
        address_mismatch: c.address_mismatch,
        last_invalid: c.last_invalid.map(|e| e.to_string()),
        garp_rounds_sent: h.garps_sent,
        last_transition_unix: last
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
    }
}
