//! Source-IP persistence: all flows of one client group go to one real.
//!
//! A client group is `(service id, client address masked to the service's
//! v4/v6 prefix)`.
//!
//! # Design: deterministic choice + per-worker cache
//!
//! RSS spreads one client's flows over several workers (different source
//! ports hash differently), and an HA pair has two nodes; yet all of them
//! must send the group to the same real, and the hot path must take no
//! lock. So the choice for a group is not remembered centrally: it is
//! *computed*. A group without a live entry goes to
//! `consistent_table[hash(service id, masked address)]`, where the hash is
//! [`super::hash::hash_addr`] under a fixed seed and the table is the
//! service's Maglev table over its eligible reals
//! ([`super::Service::consistent_table`]). Every worker of every node that
//! runs the same snapshot computes the same real without talking to the
//! others. Note: with persistence on, the service's own scheduler is not
//! used for new groups (rr/wrr/lc/wlc cannot be agreed on without shared
//! state); the weights still apply through the weighted Maglev table.
//!
//! Each worker keeps a [`PersistTable`]: a fixed-capacity, 4-way
//! set-associative cache (allocated once, never grows) of
//! `group -> real (address, port, index hint), expiry`. It makes a group
//! *sticky* across configuration changes for `timeout` after its last
//! flow: while the entry lives the group stays on its real even if a new
//! snapshot's Maglev table would now map it elsewhere. A lookup refreshes
//! the expiry. When a set is full the entry closest to expiry is replaced
//! (safe: the group just falls back to the computed choice).
//!
//! A persisted real that is no longer eligible (Down, Drain, Disabled,
//! weight 0) or no longer in the service is replaced by a re-pick from the
//! current table, and the entry is updated.
//!
//! # Edge: changes while entries live
//!
//! When reals are added or weights change, the Maglev table moves a few
//! groups. A worker that holds a live entry for such a group keeps the old
//! real; a worker (or node) without one computes the new real. The group
//! is then split until the entries expire (at most `timeout` after the
//! group's last flow on that worker). Removals and failures do not split
//! groups: every worker replaces the dead real with the same re-pick. For
//! strict stickiness across weight changes, change weights by draining
//! (state `Drain`) instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::hash::{addr16, fold, hash_addr, SEED_PERSIST};
use super::{RealIdx, Service};
use crate::conntrack::is_expired;

const WAYS: usize = 4;
const LIVE: u8 = 1;
const GROUP_V6: u8 = 2;
const REAL_V6: u8 = 4;

#[derive(Clone, Copy, Debug, Default)]
struct PEntry {
    group: [u8; 16],
    real: [u8; 16],
    service: u32,
    expiry: u32,
    real_port: u16,
    hint: u16,
    flags: u8,
}

/// Counters of a [`PersistTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistCounters {
    /// Picks answered from a live entry.
    pub hits: u64,
    /// Picks computed from the consistent table (new or expired group).
    pub misses: u64,
    /// Live entries whose real had become ineligible or was removed.
    pub repicks: u64,
    /// Live entries replaced because their set was full.
    pub evictions: u64,
}

/// A worker's persistence cache (see the module docs).
#[derive(Debug)]
pub struct PersistTable {
    entries: Box<[PEntry]>,
    sets: usize,
    tick_hz: u32,
    counters: PersistCounters,
}

/// `addr` with all bits after the prefix cleared (`v4_prefix` ≤ 32,
/// `v6_prefix` ≤ 128; larger values keep the whole address).
pub fn mask_addr(addr: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let p = u32::from(v4_prefix.min(32));
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let p = u32::from(v6_prefix.min(128));
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// The fixed hash of a client group: identical on every worker and node.
#[inline]
pub fn group_hash(service_id: u32, masked: IpAddr) -> u64 {
    hash_addr(fold(SEED_PERSIST, u64::from(service_id)), masked)
}

impl PersistTable {
    /// A table of at least `capacity` entries (rounded up to whole 4-way
    /// sets); `tick_hz` is how many `now` ticks make a second.
    pub fn new(capacity: usize, tick_hz: u32) -> Self {
        let sets = capacity.div_ceil(WAYS).max(1);
        Self {
            entries: vec![PEntry::default(); sets * WAYS].into_boxed_slice(),
            sets,
            tick_hz: tick_hz.max(1),
            counters: PersistCounters::default(),
        }
    }

    /// Number of entries (fixed).
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Live (unexpired at `now`) entries; O(capacity), for tests/stats.
    pub fn live(&self, now: u32) -> usize {
        self.entries
            .iter()
            .filter(|e| e.flags & LIVE != 0 && !is_expired(e.expiry, now))
            .count()
    }

    /// Counters.
    pub fn counters(&self) -> PersistCounters {
        self.counters
    }

    /// Forgets every entry (e.g. on an operator request).
    pub fn clear(&mut self) {
        self.entries.iter_mut().for_each(|e| *e = PEntry::default());
    }

    /// The real for a new flow of `src` on persistent service `svc`, or
    /// `None` if the service has no eligible real (or no persistence).
    /// Does not allocate.
    pub fn pick(&mut self, now: u32, svc: &Service, src: IpAddr) -> Option<RealIdx> {
        let p = svc.persistence()?;
        let table = svc.consistent_table()?;
        let masked = mask_addr(src, p.v4_prefix, p.v6_prefix);
        let h = group_hash(svc.id(), masked);
        let (group, v6) = addr16(masked);
        let gflags = LIVE | if v6 { GROUP_V6 } else { 0 };
        let timeout = p
            .timeout_secs
            .saturating_mul(self.tick_hz)
            .min(i32::MAX as u32);
        let set = (h % self.sets as u64) as usize * WAYS;
        let ways = &mut self.entries[set..set + WAYS];

        // 1. A live entry for the group?
        let mut slot = None;
        for (i, e) in ways.iter().enumerate() {
            if e.flags & (LIVE | GROUP_V6) == gflags && e.service == svc.id() && e.group == group {
                slot = Some(i);
                break;
            }
        }
        if let Some(i) = slot {
            let e = &mut ways[i];
            if !is_expired(e.expiry, now) {
                let real = from16(e.real, e.flags & REAL_V6 != 0);
                match svc.resolve_real(RealIdx(e.hint), real, e.real_port) {
                    Some(idx) if svc.reals()[idx.get()].is_eligible() => {
                        e.hint = idx.0;
                        e.expiry = now.wrapping_add(timeout);
                        self.counters.hits += 1;
                        return Some(idx);
                    }
                    _ => self.counters.repicks += 1,
                }
            } else {
                self.counters.misses += 1;
            }
        } else {
            self.counters.misses += 1;
        }

        // 2. Compute the group's real.
        let Some(idx) = table.lookup(h) else {
            if let Some(i) = slot {
                ways[i].flags = 0;
            }
            return None;
        };
        let i = match slot {
            Some(i) => i,
            None => {
                // A free or expired way, else the one closest to expiry.
                let free = ways
                    .iter()
                    .position(|e| e.flags & LIVE == 0 || is_expired(e.expiry, now));
                free.unwrap_or_else(|| {
                    self.counters.evictions += 1;
                    (0..WAYS)
                        .min_by_key(|&i| ways[i].expiry.wrapping_sub(now) as i32)
                        .unwrap_or(0)
                })
            }
        };
        let r = &svc.reals()[idx.get()];
        let (real, rv6) = addr16(r.addr);
        ways[i] = PEntry {
            group,
            real,
            service: svc.id(),
            expiry: now.wrapping_add(timeout),
            real_port: r.port,
            hint: idx.0,
            flags: gflags | if rv6 { REAL_V6 } else { 0 },
        };
        Some(idx)
    }
}

impl PersistTable {
    /// Records that `src`'s group on persistent service `svc` goes to
    /// target `idx` for the service's timeout from `now` (connection sync:
    /// the other node chose it). Overwrites the group's entry, else takes a
    /// free or expired way, else the one closest to expiry. Returns
    /// whether the service has persistence and `idx` is one of its reals.
    pub fn learn(&mut self, now: u32, svc: &Service, src: IpAddr, idx: RealIdx) -> bool {
        let (Some(p), Some(r)) = (svc.persistence(), svc.reals().get(idx.get())) else {
            return false;
        };
        let masked = mask_addr(src, p.v4_prefix, p.v6_prefix);
        let h = group_hash(svc.id(), masked);
        let (group, v6) = addr16(masked);
        let gflags = LIVE | if v6 { GROUP_V6 } else { 0 };
        let timeout = p
            .timeout_secs
            .saturating_mul(self.tick_hz)
            .min(i32::MAX as u32);
        let set = (h % self.sets as u64) as usize * WAYS;
        let ways = &mut self.entries[set..set + WAYS];
        let same = ways.iter().position(|e| {
            e.flags & (LIVE | GROUP_V6) == gflags && e.service == svc.id() && e.group == group
        });
        let i = same
            .or_else(|| {
                ways.iter()
                    .position(|e| e.flags & LIVE == 0 || is_expired(e.expiry, now))
            })
            .unwrap_or_else(|| {
                self.counters.evictions += 1;
                (0..WAYS)
                    .min_by_key(|&i| ways[i].expiry.wrapping_sub(now) as i32)
                    .unwrap_or(0)
            });
        let (real, rv6) = addr16(r.addr);
        ways[i] = PEntry {
            group,
            real,
            service: svc.id(),
            expiry: now.wrapping_add(timeout),
            real_port: r.port,
            hint: idx.0,
            flags: gflags | if rv6 { REAL_V6 } else { 0 },
        };
        true
    }
}

fn from16(b: [u8; 16], v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(b);
    if v6 {
        IpAddr::V6(a)
    } else {
        IpAddr::V4(a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{real, spec};
    use crate::service::{Persistence, RealState, SchedulerKind};

    fn svc_with(reals: Vec<crate::service::Real>, sched: SchedulerKind) -> Service {
        let mut s = spec(42, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 443, sched);
        s.persistence = Some(Persistence {
            timeout_secs: 10,
            v4_prefix: 24,
            v6_prefix: 64,
        });
        s.reals = reals;
        Service::build(s).unwrap()
    }

    fn four_up() -> Vec<crate::service::Real> {
        (1..=4).map(|i| real(i, 1, RealState::Up)).collect()
    }

    fn client(c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, c, d))
    }

    #[test]
    fn masking_table() {
        let a4 = IpAddr::V4(Ipv4Addr::new(10, 20, 30, 40));
        let a6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let cases: &[(IpAddr, u8, u8, &str)] = &[
            (a4, 32, 128, "10.20.30.40"),
            (a4, 24, 128, "10.20.30.0"),
            (a4, 13, 128, "10.16.0.0"),
            (a4, 0, 128, "0.0.0.0"),
            (a6, 32, 128, "2001:db8:1:2:3:4:5:6"),
            (a6, 32, 64, "2001:db8:1:2::"),
            (a6, 32, 56, "2001:db8:1::"),
            (a6, 32, 0, "::"),
        ];
        for &(a, p4, p6, want) in cases {
            assert_eq!(
                mask_addr(a, p4, p6),
                want.parse::<IpAddr>().unwrap(),
                "{a}/{p4}/{p6}"
            );
        }
    }

    #[test]
    fn group_sticks_across_workers_and_nodes() {
        // Persistence over a non-consistent scheduler still agrees.
        for sched in [SchedulerKind::Rr, SchedulerKind::Wlc, SchedulerKind::Maglev] {
            let node_a = svc_with(four_up(), sched);
            let node_b = svc_with(four_up(), sched); // HA peer, same config
            let mut w1 = PersistTable::new(64, 1);
            let mut w2 = PersistTable::new(64, 1);
            let mut w3 = PersistTable::new(1024, 1000);
            let mut seen = std::collections::HashSet::new();
            for c in 0..50u8 {
                let first = w1.pick(0, &node_a, client(c, 1)).unwrap();
                seen.insert(first);
                for d in [1u8, 2, 77, 254] {
                    assert_eq!(w1.pick(1, &node_a, client(c, d)), Some(first));
                    assert_eq!(w2.pick(1, &node_a, client(c, d)), Some(first));
                    assert_eq!(w3.pick(5, &node_b, client(c, d)), Some(first));
                }
            }
            assert!(
                seen.len() >= 3,
                "{sched:?}: groups spread over reals: {seen:?}"
            );
        }
    }

    #[test]
    fn ineligible_or_removed_real_is_replaced() {
        let base = svc_with(four_up(), SchedulerKind::Rr);
        let mut w = PersistTable::new(64, 1);
        let c = client(9, 9);
        let r = w.pick(0, &base, c).unwrap();
        for st in [RealState::Down, RealState::Drain, RealState::Disabled] {
            let mut reals = four_up();
            reals[r.get()].state = st;
            let next = svc_with(reals, SchedulerKind::Rr);
            let mut w = PersistTable::new(64, 1);
            assert_eq!(w.pick(0, &base, c), Some(r));
            let n = w.pick(1, &next, c).unwrap();
            assert_ne!(n, r, "{st:?}");
            assert!(next.reals()[n.get()].is_eligible());
            assert_eq!(w.counters().repicks, 1);
            // Sticks to the replacement afterwards.
            assert_eq!(w.pick(2, &next, c), Some(n));
        }
        // Weight 0 also stops new flows.
        let mut reals = four_up();
        reals[r.get()].weight = 0;
        let next = svc_with(reals, SchedulerKind::Rr);
        assert_ne!(w.pick(1, &next, c), Some(r));
        // Removed: the remaining reals shift index; the re-pick resolves.
        let mut reals = four_up();
        let gone = reals.remove(r.get());
        let next = svc_with(reals, SchedulerKind::Rr);
        let mut w = PersistTable::new(64, 1);
        w.pick(0, &base, c);
        let n = w.pick(1, &next, c).unwrap();
        assert_ne!(next.reals()[n.get()].addr, gone.addr);
    }

    #[test]
    fn reorder_keeps_real_by_address() {
        let base = svc_with(four_up(), SchedulerKind::Maglev);
        let mut w = PersistTable::new(64, 1);
        let c = client(1, 2);
        let r = w.pick(0, &base, c).unwrap();
        let addr = base.reals()[r.get()].addr;
        let mut reals = four_up();
        reals.reverse();
        let next = svc_with(reals, SchedulerKind::Maglev);
        let n = w.pick(1, &next, c).unwrap();
        assert_eq!(next.reals()[n.get()].addr, addr);
    }

    #[test]
    fn sticky_across_weight_change_until_timeout() {
        let base = svc_with(four_up(), SchedulerKind::Maglev);
        let mut reals = four_up();
        reals[0].weight = 50; // real 0 now takes most groups
        let heavy = svc_with(reals, SchedulerKind::Maglev);
        let mut w = PersistTable::new(4096, 1);
        // Find groups that the new table maps elsewhere.
        let mut moved = vec![];
        for c in 0..200u8 {
            let before = w.pick(0, &base, client(c, 1)).unwrap();
            let h = group_hash(42, mask_addr(client(c, 1), 24, 64));
            let after = heavy.consistent_table().unwrap().lookup(h).unwrap();
            if before != after {
                moved.push((c, before, after));
            }
        }
        assert!(!moved.is_empty());
        for &(c, before, after) in &moved {
            // live entry (timeout 10 s, refreshed at 9): old real kept
            assert_eq!(w.pick(9, &heavy, client(c, 1)), Some(before));
            assert_eq!(w.pick(18, &heavy, client(c, 1)), Some(before));
            // idle past the timeout: re-balanced
            assert_eq!(w.pick(28, &heavy, client(c, 1)), Some(after));
        }
    }

    #[test]
    fn fixed_capacity_and_no_eligible() {
        let svc = svc_with(four_up(), SchedulerKind::Rr);
        let mut w = PersistTable::new(8, 1);
        assert_eq!(w.capacity(), 8);
        for c in 0..=255u8 {
            assert!(w.pick(0, &svc, client(c, 0)).is_some());
        }
        assert_eq!(w.capacity(), 8);
        assert!(w.live(0) <= 8);
        assert!(w.counters().evictions > 0);
        // Evicted groups still map to the same (computed) real.
        let mut fresh = PersistTable::new(8, 1);
        for c in 0..=255u8 {
            assert_eq!(
                w.pick(1, &svc, client(c, 0)),
                fresh.pick(1, &svc, client(c, 0))
            );
        }
        let down: Vec<_> = (1..=4).map(|i| real(i, 1, RealState::Down)).collect();
        let dead = svc_with(down, SchedulerKind::Rr);
        assert_eq!(w.pick(2, &dead, client(0, 0)), None);
        // Not a persistent service.
        let plain = Service::build(spec(1, client(0, 1), 80, SchedulerKind::Rr)).unwrap();
        assert_eq!(w.pick(0, &plain, client(0, 0)), None);
        w.clear();
        assert_eq!(w.live(0), 0);
    }

    #[test]
    fn ipv6_groups() {
        let svc = svc_with(four_up(), SchedulerKind::Sh);
        let mut w = PersistTable::new(64, 1);
        let a: IpAddr = "2001:db8:aa:bb:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:aa:bb:ffff::9".parse().unwrap();
        let r = w.pick(0, &svc, a);
        assert!(r.is_some());
        assert_eq!(w.pick(0, &svc, b), r); // same /64
        assert_eq!(w.counters().hits, 1);
    }
}
