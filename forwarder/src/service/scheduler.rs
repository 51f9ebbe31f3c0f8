//! Schedulers: which real gets a new flow.
//!
//! [`Scheduler`] is an enum (no dynamic dispatch on the hot path) holding
//! only immutable data built from the service's reals; it lives in the
//! published snapshot. Mutable state is split out so that it stays in each
//! worker's own memory without atomics or locks:
//!
//! * `rr`: one cursor per service, in the snapshot, that every worker of
//!   the node advances (an atomic add per new flow): the node goes round
//!   its reals in turn, however many workers share the new flows.
//! * `wrr`: a [`SchedState`] per (worker, service), created with
//!   [`SchedState::new`] when the worker adopts a snapshot: each worker
//!   interleaves its own share of the new flows by weight.
//! * `lc`, `wlc`: the worker's per-real active connection counts, passed as
//!   `conns` (indexed by [`RealIdx`]; missing entries count as 0). Each
//!   worker balances its own share of the flows (RSS spreads clients over
//!   workers), which is how IPVS per-CPU or Katran-style designs behave too.
//! * `maglev`, `sh`: pure functions of the immutable Maglev table and the
//!   flow hash / source address; every worker and every node agrees.
//!
//! Only eligible reals (Up, weight > 0) are ever returned; every scheduler
//! returns `None` when there is none.

use std::net::IpAddr;

use super::hash::{hash_addr, SEED_SOURCE};
use super::maglev::Maglev;
use super::{Real, RealIdx};

/// Scheduler named in a service's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Maglev consistent hashing of the flow hash (weighted).
    Maglev,
    /// Smooth weighted round robin (nginx / IPVS-style interleaving).
    Wrr,
    /// Round robin over eligible reals.
    Rr,
    /// Weighted least connections: least `active / weight`.
    Wlc,
    /// Least connections.
    Lc,
    /// Source hashing: Maglev table indexed by a hash of the client address.
    Sh,
}

/// A built scheduler (immutable; part of the snapshot).
#[derive(Clone, Debug)]
pub enum Scheduler {
    /// Table indexed by the flow hash.
    Maglev(Maglev),
    /// Table indexed by a fixed hash of the source address.
    Sh(Maglev),
    /// Eligible reals in index order, and the node's cursor.
    Rr(Box<[RealIdx]>, RrCursor),
    /// Eligible reals with their weights, in index order.
    Wrr(Box<[(RealIdx, u32)]>),
    /// Eligible reals in index order.
    Lc(Box<[RealIdx]>),
    /// Eligible reals with their weights, in index order.
    Wlc(Box<[(RealIdx, u32)]>),
}

/// The next position of a round robin, shared by every worker that reads
/// the snapshot.
#[derive(Debug, Default)]
pub struct RrCursor(std::sync::atomic::AtomicU32);

impl Clone for RrCursor {
    fn clone(&self) -> Self {
        RrCursor(std::sync::atomic::AtomicU32::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// Per-worker mutable state of one service's scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedState {
    /// wrr: current weights (smooth WRR), one per eligible real.
    current: Box<[i64]>,
}

impl SchedState {
    /// State sized for `sched` (allocates; do it when adopting a snapshot).
    pub fn new(sched: &Scheduler) -> Self {
        let n = match sched {
            Scheduler::Wrr(v) => v.len(),
            _ => 0,
        };
        Self {
            current: vec![0; n].into_boxed_slice(),
        }
    }
}

fn eligible(reals: &[Real]) -> impl Iterator<Item = (RealIdx, u32)> + '_ {
    reals
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_eligible())
        .map(|(i, r)| (RealIdx(i as u16), r.weight))
}

impl Scheduler {
    /// Builds the immutable data of `kind` over `reals`.
    pub fn build(kind: SchedulerKind, reals: &[Real]) -> Self {
        match kind {
            SchedulerKind::Maglev => Scheduler::Maglev(Maglev::from_reals(reals)),
            SchedulerKind::Sh => Scheduler::Sh(Maglev::from_reals(reals)),
            SchedulerKind::Rr => Scheduler::Rr(
                eligible(reals).map(|(i, _)| i).collect(),
                RrCursor::default(),
            ),
            SchedulerKind::Lc => Scheduler::Lc(eligible(reals).map(|(i, _)| i).collect()),
            SchedulerKind::Wrr => Scheduler::Wrr(eligible(reals).collect()),
            SchedulerKind::Wlc => Scheduler::Wlc(eligible(reals).collect()),
        }
    }

    /// The kind this was built from.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            Scheduler::Maglev(_) => SchedulerKind::Maglev,
            Scheduler::Sh(_) => SchedulerKind::Sh,
            Scheduler::Rr(..) => SchedulerKind::Rr,
            Scheduler::Wrr(_) => SchedulerKind::Wrr,
            Scheduler::Lc(_) => SchedulerKind::Lc,
            Scheduler::Wlc(_) => SchedulerKind::Wlc,
        }
    }

    /// The Maglev table of `maglev` and `sh`.
    pub fn maglev(&self) -> Option<&Maglev> {
        match self {
            Scheduler::Maglev(t) | Scheduler::Sh(t) => Some(t),
            _ => None,
        }
    }

    /// Picks a real for a new flow.
    ///
    /// * `flow_hash`: used by `maglev`; must be the same on every worker
    ///   for the same flow (e.g. [`super::hash::flow_hash`]).
    /// * `src`: client address, used by `sh`.
    /// * `state`: this worker's state for this service (wrr). A state
    ///   of the wrong size (built for another snapshot) is reset, which
    ///   allocates: create states with [`SchedState::new`].
    /// * `conns`: this worker's active connections per real (lc, wlc).
    ///
    /// Does not allocate (given a matching `state`).
    #[inline]
    pub fn pick(
        &self,
        flow_hash: u64,
        src: IpAddr,
        state: &mut SchedState,
        conns: &[u32],
    ) -> Option<RealIdx> {
        match self {
            Scheduler::Maglev(t) => t.lookup(flow_hash),
            Scheduler::Sh(t) => t.lookup(hash_addr(SEED_SOURCE, src)),
            Scheduler::Rr(v, cursor) => {
                if v.is_empty() {
                    return None;
                }
                let n = cursor.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(v[n as usize % v.len()])
            }
            Scheduler::Wrr(v) => smooth_wrr(v, state),
            Scheduler::Lc(v) => {
                // Least active; ties go to the lowest index.
                v.iter()
                    .copied()
                    .min_by_key(|r| (conns.get(r.get()).copied().unwrap_or(0), r.0))
            }
            Scheduler::Wlc(v) => {
                let mut best: Option<(RealIdx, u64, u64)> = None;
                for &(r, w) in v.iter() {
                    let c = u64::from(conns.get(r.get()).copied().unwrap_or(0));
                    let w = u64::from(w);
                    best = match best {
                        // c/w < bc/bw  <=>  c*bw < bc*w (no division, exact
                        // in u64). Ties: higher weight, then lower index.
                        Some((_, bc, bw)) if c * bw < bc * w || (c * bw == bc * w && w > bw) => {
                            Some((r, c, w))
                        }
                        None => Some((r, c, w)),
                        keep => keep,
                    };
                }
                best.map(|(r, _, _)| r)
            }
        }
    }
}

/// Smooth weighted round robin: every pick adds each real's weight to its
/// current value, takes the real with the largest current value (lowest
/// index on ties) and subtracts the total weight from it. Over a cycle of
/// `sum(w)` picks each real is chosen exactly `w` times, evenly spread
/// (weights 5,1,1 give a a b a c a a, not a a a a a b c).
fn smooth_wrr(v: &[(RealIdx, u32)], state: &mut SchedState) -> Option<RealIdx> {
    if v.is_empty() {
        return None;
    }
    if state.current.len() != v.len() {
        state.current = vec![0; v.len()].into_boxed_slice();
    }
    let mut total: i64 = 0;
    let mut best = 0usize;
    let mut best_val = i64::MIN;
    for (i, (&(_, w), cur)) in v.iter().zip(state.current.iter_mut()).enumerate() {
        *cur += i64::from(w);
        total += i64::from(w);
        // Strictly greater: the first maximum wins (deterministic).
        if *cur > best_val {
            best_val = *cur;
            best = i;
        }
    }
    state.current[best] -= total;
    Some(v[best].0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::real;
    use crate::service::RealState::{self, *};
    use std::net::Ipv4Addr;

    fn reals(spec: &[(u32, RealState)]) -> Vec<Real> {
        spec.iter()
            .enumerate()
            .map(|(i, &(w, s))| real(i as u8 + 1, w, s))
            .collect()
    }

    fn seq(s: &Scheduler, n: usize, conns: &[u32]) -> Vec<u16> {
        let mut st = SchedState::new(s);
        let src = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        (0..n)
            .map(|i| s.pick(i as u64, src, &mut st, conns).unwrap().0)
            .collect()
    }

    #[test]
    fn no_eligible_real_gives_none() {
        let rs = reals(&[(0, Up), (3, Down), (3, Drain), (3, Disabled)]);
        let src = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        for k in [
            SchedulerKind::Maglev,
            SchedulerKind::Sh,
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
        ] {
            let s = Scheduler::build(k, &rs);
            assert_eq!(s.kind(), k);
            let mut st = SchedState::new(&s);
            for h in 0..100 {
                assert_eq!(s.pick(h, src, &mut st, &[0; 4]), None, "{k:?}");
            }
        }
    }

    #[test]
    fn only_eligible_reals_are_picked() {
        // index:       0        1          2        3          4
        let rs = reals(&[(1, Up), (0, Up), (2, Drain), (3, Up), (1, Down)]);
        for k in [
            SchedulerKind::Maglev,
            SchedulerKind::Sh,
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
        ] {
            let s = Scheduler::build(k, &rs);
            let mut st = SchedState::new(&s);
            let mut conns = [0u32; 5];
            for h in 0..2000u64 {
                let src = IpAddr::V4(Ipv4Addr::from(h as u32));
                let r = s
                    .pick(h.wrapping_mul(0x9E37_79B9_7F4A_7C15), src, &mut st, &conns)
                    .unwrap();
                assert!(r.0 == 0 || r.0 == 3, "{k:?} picked {r:?}");
                conns[r.get()] += 1;
            }
            // Both eligible reals get traffic.
            assert!(conns[0] > 0 && conns[3] > 0, "{k:?}: {conns:?}");
        }
    }

    #[test]
    fn rr_cycles() {
        let s = Scheduler::build(
            SchedulerKind::Rr,
            &reals(&[(1, Up), (5, Down), (1, Up), (9, Up)]),
        );
        assert_eq!(seq(&s, 7, &[]), vec![0, 2, 3, 0, 2, 3, 0]);
    }

    #[test]
    fn wrr_is_smooth_and_exact() {
        let table: &[(&[u32], &[u16])] = &[
            (&[5, 1, 1], &[0, 0, 1, 0, 2, 0, 0]),
            (&[1, 1, 1], &[0, 1, 2]),
            (&[2, 1], &[0, 1, 0]),
            (&[3, 0, 2], &[0, 2, 0, 2, 0]),
        ];
        for &(weights, want) in table {
            let spec: Vec<(u32, RealState)> = weights.iter().map(|&w| (w, Up)).collect();
            let s = Scheduler::build(SchedulerKind::Wrr, &reals(&spec));
            let total: u32 = weights.iter().sum();
            let got = seq(&s, total as usize * 3, &[]);
            assert_eq!(&got[..want.len()], want, "weights {weights:?}");
            // Exact shares per cycle, and the cycle repeats.
            for (i, &w) in weights.iter().enumerate() {
                let n = got.iter().filter(|&&x| x as usize == i).count();
                assert_eq!(n, w as usize * 3, "weights {weights:?} real {i}");
            }
            assert_eq!(
                got[..total as usize],
                got[total as usize..2 * total as usize]
            );
        }
    }

    #[test]
    fn wrr_resets_mismatched_state() {
        let s = Scheduler::build(SchedulerKind::Wrr, &reals(&[(1, Up), (1, Up)]));
        let mut st = SchedState::default();
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(s.pick(0, src, &mut st, &[]), Some(RealIdx(0)));
        assert_eq!(s.pick(0, src, &mut st, &[]), Some(RealIdx(1)));
    }

    #[test]
    fn lc_and_wlc_table() {
        let rs = reals(&[(1, Up), (2, Up), (4, Up), (4, Drain)]);
        let lc = Scheduler::build(SchedulerKind::Lc, &rs);
        let wlc = Scheduler::build(SchedulerKind::Wlc, &rs);
        // conns, lc pick, wlc pick
        let table: &[([u32; 4], u16, u16)] = &[
            ([0, 0, 0, 0], 0, 2), // all idle: lc lowest index, wlc heaviest
            ([1, 0, 0, 0], 1, 2),
            ([1, 1, 1, 0], 0, 2),  // 1/1, 1/2, 1/4: wlc -> 2
            ([1, 2, 4, 0], 0, 2),  // all ratios 1: tie -> heaviest
            ([2, 2, 5, 0], 0, 1),  // 2, 1, 1.25
            ([3, 6, 11, 0], 0, 2), // 3, 3, 2.75
            ([5, 5, 5, 0], 0, 2),  // draining real with 0 conns never chosen
            ([9, 3, 12, 0], 1, 1), // 9, 1.5, 3
        ];
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (conns, want_lc, want_wlc) in table {
            let mut st = SchedState::default();
            assert_eq!(
                lc.pick(0, src, &mut st, conns),
                Some(RealIdx(*want_lc)),
                "lc {conns:?}"
            );
            assert_eq!(
                wlc.pick(0, src, &mut st, conns),
                Some(RealIdx(*want_wlc)),
                "wlc {conns:?}"
            );
        }
        // Missing counts are 0.
        assert_eq!(
            lc.pick(0, src, &mut SchedState::default(), &[5]),
            Some(RealIdx(1))
        );
    }

    #[test]
    fn wlc_converges_to_weights() {
        let rs = reals(&[(1, Up), (3, Up), (6, Up)]);
        let s = Scheduler::build(SchedulerKind::Wlc, &rs);
        let mut conns = [0u32; 3];
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..1000 {
            let r = s.pick(0, src, &mut SchedState::default(), &conns).unwrap();
            conns[r.get()] += 1;
        }
        assert_eq!(conns, [100, 300, 600]);
    }

    #[test]
    fn maglev_and_sh_are_pure() {
        let rs = reals(&[(1, Up), (1, Up), (1, Up)]);
        let mg = Scheduler::build(SchedulerKind::Maglev, &rs);
        let sh = Scheduler::build(SchedulerKind::Sh, &rs);
        let mut a = SchedState::new(&mg);
        let mut b = SchedState::new(&mg);
        let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        for h in 0..500u64 {
            assert_eq!(
                mg.pick(h, src, &mut a, &[]),
                mg.pick(h, src, &mut b, &[9, 9, 9])
            );
            assert_eq!(mg.pick(h, src, &mut a, &[]), mg.maglev().unwrap().lookup(h));
        }
        // sh ignores the flow hash.
        let first = sh.pick(0, src, &mut a, &[]);
        for h in 0..100 {
            assert_eq!(sh.pick(h, src, &mut a, &[]), first);
        }
    }
}
