//! Which worker owns a frame's state, and the rings that carry a frame to
//! its owner when it lands on another worker.
//!
//! # The problem
//!
//! Every worker keeps its own connection, fragment and source-NAT tables
//! (no locks on the hot path). The NIC (RSS) or the kernel (af_packet's
//! fanout) spreads frames over the workers' queues by a hash of their
//! addresses and ports. Both directions of a DR or TUN flow are not our
//! business (only client → VIP crosses the balancer), and every packet of
//! that direction carries the same tuple, so it lands on the same queue:
//! the worker it lands on owns it. A NAT flow is different: the request
//! `client:cport -> VIP:vport` and the reply `real:rport -> client:cport`
//! carry different tuples and land on different workers, and so do a
//! hairpin flow's reply to the balancer's own address, an ICMP error
//! quoting a flow, and a later fragment (no ports to hash).
//!
//! # The design
//!
//! An *owner function* computed from what both directions of a flow
//! share decides which worker holds the flow's state ([`Steer`]):
//!
//! | frame | owner |
//! |---|---|
//! | to a NAT service (`client:cport -> VIP:vport`) | [`Steer::client_owner`] of `client:cport` |
//! | a NAT reply (`real:rport -> client:cport`, to no VIP) | the same, of `client:cport` |
//! | a hairpin reply (`real:rport -> local:lport`) | the worker whose share of the source-NAT range holds `lport` ([`Steer::snat_owner`]) |
//! | an ICMP error quoting a NAT flow | the owner of the quoted `client:cport` |
//! | an ICMP error quoting a hairpin flow | the owner of the quoted `lport` |
//! | to a DR or TUN service | the worker it lands on (no hand-off) |
//! | an ICMP error quoting a DR or TUN flow | unknown: asked around (below) |
//! | a later fragment | where its first fragment went (below) |
//!
//! A frame that lands on another worker than its owner is handed to the
//! owner untouched ([`crate::pipeline::Outcome::Handoff`]) through a
//! bounded single-producer single-consumer [`Ring`] per ordered pair of
//! workers, and the owner decides it as if it had received it. A frame is
//! handed to a computed owner at most once: the owner decides whatever it
//! computes. A full ring drops the frame, counted.
//!
//! Two cases have no computable owner. The flow an ICMP error about a DR
//! or TUN flow quotes lives where the client's packets land, which only
//! the NIC knows; and a fragment without ports cannot be hashed like its
//! flow. Both are *asked around*: a worker that finds no state hands the
//! frame to the next worker, at most `workers - 1` times
//! ([`Steer::probe_next`]). A worker that hands a first fragment to its
//! owner remembers where it sent it, so the later fragments that land
//! with it (a NIC hashes every fragment of a datagram alike) follow in
//! order through the same ring.
//!
//! Hand-offs cost a ring slot write on one worker and a read on the
//! other, batched per pass, and the cache misses of a frame that moves
//! between cores. DR and TUN requests never pay them, nor does any frame
//! with one worker. Per-node limits that several workers share
//! (`new_flow_rate_limit`) live in atomics shared by the workers; source-IP
//! persistence is computed alike on every worker
//! ([`crate::service::persistence`]); connection sync hands each synced
//! NAT flow to its owner and every DR / TUN flow to every worker.
//!
//! # Hardware steering
//!
//! Where a NIC can hash the client-facing port on source fields only and
//! the real-facing port on destination fields only (Intel's
//! `L3_SRC_ONLY` / `L4_SRC_ONLY` RSS types), both directions of a NAT flow
//! could reach the same queue without a hand-off, if the owner function
//! were the NIC's (the Toeplitz hash of the client endpoint through the
//! redirection table). That is not programmed yet: the software path
//! above is what runs, on every NIC and virtual device.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::pipeline::snat::DEFAULT_SNAT_PORTS;

/// Most workers a node runs (a worker index fits the hand-off tag).
pub const MAX_WORKERS: u16 = 64;

/// Which worker owns what, as one worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steer {
    me: u16,
    workers: u16,
    /// The node's source-NAT range, shared out among the workers.
    snat_lo: u16,
    snat_hi: u16,
    /// Ports per worker's share (the last takes the rest).
    snat_span: u16,
}

impl Default for Steer {
    fn default() -> Self {
        Steer::single()
    }
}

impl Steer {
    /// The only worker of a node: owns everything.
    pub const fn single() -> Steer {
        Steer::with_snat(0, 1, *DEFAULT_SNAT_PORTS.start(), *DEFAULT_SNAT_PORTS.end())
    }

    /// Worker `me` of `workers` (at least 1, at most [`MAX_WORKERS`]),
    /// sharing the default source-NAT range.
    pub fn new(me: u16, workers: u16) -> Steer {
        let workers = workers.clamp(1, MAX_WORKERS);
        Steer::with_snat(
            me.min(workers - 1),
            workers,
            *DEFAULT_SNAT_PORTS.start(),
            *DEFAULT_SNAT_PORTS.end(),
        )
    }

    const fn with_snat(me: u16, workers: u16, lo: u16, hi: u16) -> Steer {
        let ports = (hi - lo) as u32 + 1;
        let span = ports / workers as u32;
        Steer {
            me,
            workers,
            snat_lo: lo,
            snat_hi: hi,
            snat_span: if span == 0 { 1 } else { span as u16 },
        }
    }

    /// This worker's index.
    #[inline]
    pub fn me(&self) -> u16 {
        self.me
    }

    /// Workers of the node.
    #[inline]
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// This worker's share of the source-NAT range: disjoint from every
    /// other worker's, so that a hairpin reply's port names its owner.
    pub fn snat_range(&self) -> RangeInclusive<u16> {
        let lo = self.snat_lo + self.me * self.snat_span;
        let hi = if self.me + 1 == self.workers {
            self.snat_hi
        } else {
            lo + self.snat_span - 1
        };
        lo..=hi
    }

    /// The worker whose share of the source-NAT range holds `port`, or
    /// `None` for a port outside the range.
    #[inline]
    pub fn snat_owner(&self, port: u16) -> Option<u16> {
        if port < self.snat_lo || port > self.snat_hi {
            return None;
        }
        Some(((port - self.snat_lo) / self.snat_span).min(self.workers - 1))
    }

    /// The owner of the flows of IPv4 client `addr:port` (NAT flows, in
    /// both directions). One multiply: the high half of the product mixes
    /// every input bit, and Lemire's reduction maps it onto the workers.
    #[inline(always)]
    pub fn client_owner_v4(&self, addr: u32, port: u16) -> u16 {
        owner_of((u64::from(addr) << 16) | u64::from(port), self.workers)
    }

    /// [`Self::client_owner_v4`] for any address (the same value for an
    /// IPv4 one).
    #[inline]
    pub fn client_owner(&self, addr: IpAddr, port: u16) -> u16 {
        match addr {
            IpAddr::V4(a) => self.client_owner_v4(u32::from(a), port),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                let folded = ((x >> 64) as u64).wrapping_mul(K_MIX) ^ x as u64;
                owner_of(folded ^ (u64::from(port) << 48), self.workers)
            }
        }
    }

    /// The owner of `addr:port`'s flows if it is another worker and the
    /// frame may still be handed to it (`hops`: hand-offs it has had).
    #[inline(always)]
    pub fn foreign_client(&self, hops: u8, addr: IpAddr, port: u16) -> Option<u16> {
        self.foreign(hops, || self.client_owner(addr, port))
    }

    /// [`Self::foreign_client`] for an IPv4 address in host order.
    #[inline(always)]
    pub fn foreign_client_v4(&self, hops: u8, addr: u32, port: u16) -> Option<u16> {
        self.foreign(hops, || self.client_owner_v4(addr, port))
    }

    /// `owner()` if the frame may still be handed to a computed owner and
    /// it is another worker (computed only then: one worker pays a
    /// compare).
    #[inline(always)]
    fn foreign(&self, hops: u8, owner: impl FnOnce() -> u16) -> Option<u16> {
        if self.workers == 1 || hops != 0 {
            return None;
        }
        let o = owner();
        (o != self.me).then_some(o)
    }

    /// The owner of source-NAT port `port` if it is another worker and the
    /// frame may still be handed to it.
    #[inline]
    pub fn foreign_snat(&self, hops: u8, port: u16) -> Option<u16> {
        if self.workers == 1 || hops != 0 {
            return None;
        }
        self.snat_owner(port).filter(|&o| o != self.me)
    }

    /// For a frame this worker found no state for, after `hops`
    /// hand-offs: the next worker to ask, or `None` when every worker has
    /// been asked.
    #[inline]
    pub fn probe_next(&self, hops: u8) -> Option<u16> {
        (u16::from(hops) + 1 < self.workers).then(|| (self.me + 1) % self.workers)
    }

    /// Whether a frame that has had `hops` hand-offs may have one more
    /// (to follow a first fragment): every chain ends.
    #[inline]
    pub fn may_hand_on(&self, hops: u8) -> bool {
        u16::from(hops) + 1 < self.workers
    }
}

const K_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn owner_of(x: u64, workers: u16) -> u16 {
    let h = x.wrapping_mul(K_MIX) >> 32;
    ((h * u64::from(workers)) >> 32) as u16
}

/// Frames (or anything a pair of words can name) from one worker to
/// another: a bounded single-producer single-consumer ring.
///
/// Each slot is two 64-bit atomics (a handle and its tag). The producer
/// writes a batch of slots with relaxed stores and publishes them with
/// one release store of the tail; the consumer reads the tail with one
/// acquire load, reads the slots, and hands them back with one release
/// store of the head. Head and tail sit on their own cache lines. The
/// ring is safe Rust: a second producer or consumer would lose or repeat
/// items, never touch memory it should not; the typed ends that carry
/// frames ([`crate::dpdk::HandoffTx`], [`crate::dpdk::HandoffRx`]) exist
/// once per ring.
pub struct Ring {
    slots: Box<[[AtomicU64; 2]]>,
    mask: usize,
    /// Next slot to read (written by the consumer).
    head: Padded,
    /// Next slot to write (written by the producer).
    tail: Padded,
}

#[repr(align(64))]
struct Padded(AtomicUsize);

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.slots.len())
            .field("len", &self.len())
            .finish()
    }
}

/// Slots of a hand-off ring (a power of two): 16 bursts of 64 frames.
pub const RING_CAPACITY: usize = 1024;

impl Ring {
    /// A ring of `capacity` slots, rounded up to a power of two.
    pub fn new(capacity: usize) -> Ring {
        let n = capacity.max(2).next_power_of_two();
        Ring {
            slots: (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            mask: n - 1,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// Slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Items waiting (a snapshot; exact only for an idle ring).
    pub fn len(&self) -> usize {
        let t = self.tail.0.load(Ordering::Acquire);
        let h = self.head.0.load(Ordering::Acquire);
        t.wrapping_sub(h)
    }

    /// Whether nothing waits (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer: appends the items `next` yields while there is room, at
    /// most `max`; returns how many it took (`next` is not called once
    /// the ring is full).
    #[inline]
    pub fn push_with(&self, max: usize, mut next: impl FnMut() -> Option<(u64, u64)>) -> usize {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let head = self.head.0.load(Ordering::Acquire);
        let room = self.slots.len() - tail.wrapping_sub(head);
        let mut n = 0;
        while n < room.min(max) {
            let Some((a, b)) = next() else {
                break;
            };
            let s = &self.slots[tail.wrapping_add(n) & self.mask];
            s[0].store(a, Ordering::Relaxed);
            s[1].store(b, Ordering::Relaxed);
            n += 1;
        }
        if n != 0 {
            self.tail.0.store(tail.wrapping_add(n), Ordering::Release);
        }
        n
    }

    /// Consumer: takes up to `max` items, oldest first, giving each to
    /// `take`; returns how many.
    #[inline]
    pub fn pop_with(&self, max: usize, mut take: impl FnMut(u64, u64)) -> usize {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(max);
        for i in 0..n {
            let s = &self.slots[head.wrapping_add(i) & self.mask];
            take(s[0].load(Ordering::Relaxed), s[1].load(Ordering::Relaxed));
        }
        if n != 0 {
            self.head.0.store(head.wrapping_add(n), Ordering::Release);
        }
        n
    }
}

/// The tag a handed-off frame travels with: the data port it arrived on,
/// how many hand-offs it has had, and for a plain reply the sender
/// checked, its reply hash and the snapshot it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tag {
    /// Index of the data port the frame arrived on (below 256: a node has
    /// at most `RTE_MAX_ETHPORTS` / 2 data ports).
    pub port: u8,
    /// Hand-offs so far (at least 1 once handed off; below 128).
    pub hops: u8,
    /// A plain reply's reply hash ([`crate::pipeline::Outcome::Handoff`]).
    pub reply_hash: Option<u32>,
    /// The low 16 bits of the generation of the snapshot the sender
    /// checked the frame against (the hash is only trusted on the same).
    pub generation: u16,
}

impl Tag {
    /// As a ring word: port (8 bits), hops (7), hinted (1), generation
    /// (16), hash (32).
    #[inline]
    pub fn word(self) -> u64 {
        let hinted = self.reply_hash.is_some();
        u64::from(self.port)
            | (u64::from(self.hops & 0x7f) << 8)
            | (u64::from(hinted) << 15)
            | (u64::from(self.generation) << 16)
            | (u64::from(self.reply_hash.unwrap_or(0)) << 32)
    }

    /// From a ring word.
    #[inline]
    pub fn of(w: u64) -> Tag {
        Tag {
            port: w as u8,
            hops: (w >> 8) as u8 & 0x7f,
            reply_hash: (w & (1 << 15) != 0).then_some((w >> 32) as u32),
            generation: (w >> 16) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn one_worker_owns_everything_and_never_hands_off() {
        let s = Steer::single();
        for p in [0u16, 1, 80, 1024, 40000, 65535] {
            assert_eq!(s.client_owner_v4(0xc000_0201, p), 0);
            assert_eq!(s.foreign_client_v4(0, 0xc000_0201, p), None);
            assert_eq!(s.foreign_snat(0, p), None);
        }
        assert_eq!(s.snat_range(), DEFAULT_SNAT_PORTS);
        assert_eq!(s.probe_next(0), None);
    }

    #[test]
    fn owners_spread_evenly_and_agree_between_the_v4_and_generic_forms() {
        for workers in [2u16, 3, 4, 7, 8] {
            let s = Steer::new(0, workers);
            let mut seen = vec![0u32; usize::from(workers)];
            for i in 0..20_000u32 {
                let addr = 0xc633_6400 | (i % 251);
                let port = (i.wrapping_mul(7919) % 64_511 + 1024) as u16;
                let o = s.client_owner_v4(addr, port);
                assert_eq!(o, s.client_owner(IpAddr::V4(Ipv4Addr::from(addr)), port));
                seen[usize::from(o)] += 1;
            }
            let fair = 20_000 / u32::from(workers);
            for &n in &seen {
                // Within 10 % of a fair share (about 14 deviations).
                assert!(n.abs_diff(fair) < fair / 10, "{workers}: {seen:?}");
            }
            // IPv6 clients spread too.
            let mut seen6 = vec![0u32; usize::from(workers)];
            for i in 0..8_000u32 {
                let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
                seen6[usize::from(s.client_owner(IpAddr::V6(a), 40_000 + (i % 7) as u16))] += 1;
            }
            assert!(
                seen6.iter().all(|&n| n > 8_000 / u32::from(workers) / 2),
                "{seen6:?}"
            );
        }
    }

    #[test]
    fn a_frame_is_handed_to_a_computed_owner_only_on_its_first_landing() {
        let s = Steer::new(1, 2);
        let (addr, port) = (
            0xc000_0201,
            (0..u16::MAX)
                .find(|&p| Steer::new(0, 2).client_owner_v4(0xc000_0201, p) == 0)
                .unwrap(),
        );
        assert_eq!(s.foreign_client_v4(0, addr, port), Some(0));
        assert_eq!(s.foreign_client_v4(1, addr, port), None);
        assert_eq!(
            s.foreign_client(0, IpAddr::V4(Ipv4Addr::from(addr)), port),
            Some(0)
        );
    }

    #[test]
    fn snat_shares_are_disjoint_cover_the_range_and_name_their_owner() {
        for workers in [1u16, 2, 3, 5, 64] {
            let mut covered = 0usize;
            let mut last_end: Option<u16> = None;
            for w in 0..workers {
                let s = Steer::new(w, workers);
                let r = s.snat_range();
                if let Some(e) = last_end {
                    assert_eq!(*r.start(), e + 1);
                }
                last_end = Some(*r.end());
                covered += r.clone().count();
                for p in [*r.start(), *r.end()] {
                    assert_eq!(s.snat_owner(p), Some(w), "{workers} {w} {p}");
                    assert_eq!(s.foreign_snat(0, p), None);
                }
            }
            assert_eq!(covered, DEFAULT_SNAT_PORTS.count());
            let s = Steer::new(0, workers);
            assert_eq!(s.snat_owner(1023), None);
            assert_eq!(s.snat_owner(32768), None);
        }
    }

    #[test]
    fn asking_around_visits_every_other_worker_once() {
        let n = 4u16;
        let mut w = 2u16;
        let mut visited = vec![w];
        let mut hops = 0u8;
        while let Some(next) = Steer::new(w, n).probe_next(hops) {
            w = next;
            hops += 1;
            visited.push(w);
        }
        visited.sort_unstable();
        assert_eq!(visited, vec![0, 1, 2, 3]);
        assert!(!Steer::new(0, n).may_hand_on(3));
        assert!(Steer::new(0, n).may_hand_on(2));
    }

    #[test]
    fn the_ring_keeps_order_refuses_when_full_and_wraps() {
        let r = Ring::new(8);
        assert_eq!(r.capacity(), 8);
        let mut next = 0u64;
        let pushed = r.push_with(100, || {
            next += 1;
            Some((next, next * 10))
        });
        assert_eq!(pushed, 8);
        assert_eq!(r.push_with(1, || Some((99, 99))), 0);
        let mut got = Vec::new();
        assert_eq!(r.pop_with(5, |a, b| got.push((a, b))), 5);
        assert_eq!(got, (1..=5).map(|i| (i, i * 10)).collect::<Vec<_>>());
        // Wraps around the end.
        let mut more = 100u64;
        assert_eq!(
            r.push_with(10, || {
                more += 1;
                Some((more, 0))
            }),
            5
        );
        got.clear();
        assert_eq!(r.pop_with(64, |a, _| got.push((a, 0))), 8);
        let firsts: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(firsts, vec![6, 7, 8, 101, 102, 103, 104, 105]);
        assert!(r.is_empty());
    }

    #[test]
    fn the_ring_carries_every_item_once_between_two_threads() {
        let r = std::sync::Arc::new(Ring::new(64));
        let total = 200_000u64;
        let p = std::sync::Arc::clone(&r);
        let producer = std::thread::spawn(move || {
            let mut i = 0u64;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while i < total && std::time::Instant::now() < deadline {
                p.push_with(32, || {
                    (i < total).then(|| {
                        i += 1;
                        (i, !i)
                    })
                });
            }
            i
        });
        let mut expect = 1u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while expect <= total && std::time::Instant::now() < deadline {
            r.pop_with(64, |a, b| {
                assert_eq!(a, expect);
                assert_eq!(b, !expect);
                expect += 1;
            });
        }
        assert_eq!(producer.join().unwrap(), total);
        assert_eq!(expect, total + 1);
    }

    #[test]
    fn tags_round_trip() {
        for t in [
            Tag {
                port: 3,
                hops: 7,
                reply_hash: None,
                generation: 0xfffe,
            },
            Tag {
                port: 255,
                hops: 127,
                reply_hash: Some(0xdead_beef),
                generation: 1,
            },
            Tag {
                port: 0,
                hops: 1,
                reply_hash: Some(0),
                generation: 0,
            },
        ] {
            assert_eq!(Tag::of(t.word()), t);
        }
    }
}
