//! `new_flow_rate_limit`: new flows per second per VIP per node, however
//! many workers share the node.
//!
//! Each service's limit is a GCRA (generic cell rate algorithm, the
//! token bucket as one timestamp): a *theoretical arrival time* `tat` in
//! nanoseconds since the node's epoch, which every admitted flow pushes
//! `1 s / rate` further, and which may run at most one second ahead of
//! now. So a quiet service admits a burst of `rate` flows, then `rate` a
//! second: what a bucket of `rate` tokens refilled at `rate` per second
//! admits. One `AtomicU64` per service, updated by compare-and-swap,
//! shared by every worker: no lock, and a new flow on any worker counts
//! against the same budget.
//!
//! The slots live in a [`NodeLimits`] that the workers of a node share,
//! keyed by service id (stable across reloads: a reload keeps a
//! service's budget). A slot is claimed the first time a worker adopts a
//! snapshot with that service and kept for the life of the process. When
//! every slot is taken (more distinct limited services over the life of
//! the process than [`LIMIT_SLOTS`]) a worker falls back to a budget of
//! its own of `rate / workers`, which still holds the node to `rate`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Services whose limits a node shares.
pub const LIMIT_SLOTS: usize = 4096;

/// A second, in the GCRA's nanoseconds.
const SECOND_NS: u64 = 1_000_000_000;

/// How often a worker retries a compare-and-swap another worker won
/// before it refuses the flow (contention only between new flows of one
/// service on several workers in the same instant).
const CAS_TRIES: u32 = 8;

/// The rate-limit slots of one node's workers (see the module docs).
#[derive(Debug)]
pub struct NodeLimits {
    /// Service id + 1 per slot; 0: free.
    ids: Box<[AtomicU64]>,
    /// Theoretical arrival time per slot, ns since the node's epoch.
    tat: Box<[AtomicU64]>,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits::new(LIMIT_SLOTS)
    }
}

impl NodeLimits {
    /// `slots` limits (allocated once).
    pub fn new(slots: usize) -> NodeLimits {
        let n = slots.max(1);
        NodeLimits {
            ids: (0..n).map(|_| AtomicU64::new(0)).collect(),
            tat: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of service `id`, claimed if it has none; `None` when
    /// every slot belongs to another service. Off the hot path (a
    /// snapshot swap): O(slots) at worst.
    pub fn slot(&self, id: u32) -> Option<u32> {
        let want = u64::from(id) + 1;
        let n = self.ids.len();
        let start = (u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            let cur = self.ids[i].load(Ordering::Acquire);
            if cur == want {
                return Some(i as u32);
            }
            if cur == 0 {
                match self.ids[i].compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(i as u32),
                    Err(v) if v == want => return Some(i as u32),
                    Err(_) => {}
                }
            }
        }
        None
    }

    /// Admits one new flow of the service in `slot` at `now_ms` (ms since
    /// the node's epoch, the same clock on every worker) under `rate`
    /// flows a second.
    #[inline]
    pub fn take(&self, slot: u32, now_ms: u64, rate: u32) -> bool {
        let Some(tat) = self.tat.get(slot as usize) else {
            return true;
        };
        let cost = SECOND_NS / u64::from(rate.max(1));
        let now = now_ms.saturating_mul(1_000_000);
        let mut cur = tat.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            let next = cur.max(now) + cost;
            if next > now + SECOND_NS {
                return false;
            }
            match tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
        false
    }
}

/// Where one service's limit is kept, as a worker sees it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit {
    /// A slot of the node's [`NodeLimits`].
    Shared(u32),
    /// This worker's own budget (no slot was free): `rate / workers`.
    Local(LocalBucket),
}

/// A worker's own token bucket, in thousandths of a flow: refills at
/// `rate` per second up to one second's worth (at least one flow).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LocalBucket {
    milli: u64,
    /// When it was last refilled (ms); 0 = never (starts full).
    last_ms: u64,
}

impl LocalBucket {
    /// Takes one token at `now_ms`, refilling at `rate` per second first.
    #[inline]
    fn take(&mut self, now_ms: u64, rate: u32) -> bool {
        let cap = u64::from(rate.max(1)) * 1000;
        if self.last_ms == 0 {
            self.milli = cap;
        } else {
            let dt = now_ms.saturating_sub(self.last_ms);
            self.milli = (self.milli + dt.saturating_mul(u64::from(rate))).min(cap);
        }
        self.last_ms = now_ms.max(1);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

impl Limit {
    /// The limit of service `id` on a worker of `workers`.
    pub(super) fn of(node: &NodeLimits, id: u32) -> Limit {
        match node.slot(id) {
            Some(s) => Limit::Shared(s),
            None => Limit::Local(LocalBucket::default()),
        }
    }

    /// Admits one new flow at `now_ms` under `rate` a second per node.
    #[inline]
    pub(super) fn take(&mut self, node: &NodeLimits, now_ms: u64, rate: u32, workers: u16) -> bool {
        match self {
            Limit::Shared(s) => node.take(*s, now_ms, rate),
            Limit::Local(b) => b.take(now_ms, rate.div_ceil(u32::from(workers.max(1)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_quiet_service_admits_a_burst_of_rate_then_rate_a_second() {
        let l = NodeLimits::new(4);
        let s = l.slot(7).unwrap();
        let admitted = (0..20).filter(|_| l.take(s, 1000, 5)).count();
        assert_eq!(admitted, 5);
        // 400 ms later: two more.
        assert_eq!((0..20).filter(|_| l.take(s, 1400, 5)).count(), 2);
        // A second later: a full burst again, never more.
        assert_eq!((0..20).filter(|_| l.take(s, 3000, 5)).count(), 5);
    }

    #[test]
    fn slots_are_per_service_stable_and_run_out() {
        let l = NodeLimits::new(2);
        let a = l.slot(1).unwrap();
        let b = l.slot(2).unwrap();
        assert_ne!(a, b);
        assert_eq!(l.slot(1), Some(a));
        assert_eq!(l.slot(3), None);
        // Separate budgets.
        assert_eq!((0..10).filter(|_| l.take(a, 10, 3)).count(), 3);
        assert_eq!((0..10).filter(|_| l.take(b, 10, 3)).count(), 3);
        // Without a slot, a worker keeps its share of the node's rate.
        let mut local = Limit::of(&l, 3);
        assert!(matches!(local, Limit::Local(_)));
        assert_eq!((0..10).filter(|_| local.take(&l, 10, 4, 2)).count(), 2);
    }

    #[test]
    fn workers_on_two_threads_share_one_budget() {
        let l = Arc::new(NodeLimits::new(8));
        let s = l.slot(42).unwrap();
        let rate = 1000;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || (0..5000).filter(|_| l.take(s, 50, rate)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // One burst for the node, not one per worker (a failed CAS may
        // refuse a flow the budget had room for, never admit more).
        assert!(
            (rate as usize - 20..=rate as usize).contains(&total),
            "{total}"
        );
    }
}
