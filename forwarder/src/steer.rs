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
//! The owner of a NAT flow is the queue a NIC would pick for the client
//! endpoint if it hashed that endpoint alone: the Toeplitz hash under
//! [`STEER_KEY`] (`0x6d5a` repeated) of the client's address and port,
//! looked up in a redirection table whose entry `i` names worker
//! `(i % 64) % workers` ([`Steer::reta`]). With that key the hash is the
//! same whether the NIC hashes the source or the destination fields, and
//! whether it packs them or leaves the other side's as zeros
//! ([`STEER_KEY`]). So where NAT clients and NAT reals arrive on different
//! ports (the two-arm layout), the data plane asks the client-facing port
//! to hash on source fields only (`L3_SRC_ONLY | L4_SRC_ONLY`) and the
//! real-facing port on destination fields only, programs the redirection
//! table and reads it back ([`crate::dpdk::Port::configure`],
//! [`crate::dpdk::Port::program_reta`]): a request and its reply then
//! reach the owner's queue with no hand-off. A device that lists the
//! one-side modifiers among its RSS offloads gets them as the port's
//! setting; one that offers them only through `rte_flow` (Intel's X710 and
//! E810 drivers) hashes whole flows as the port's setting, narrowed by a
//! flow rule per IPv4 / IPv6 TCP / UDP pattern
//! ([`crate::dpdk::Port::steer_by_flow_rules`]). Outbound NAT follows the same
//! rule with the remote endpoint: the sources' port hashes destinations,
//! the outside port sources.
//!
//! The software path above stays in place and runs on every frame the
//! NIC did not steer: a port whose device lacks one-sided RSS (the
//! virtual devices, the 82599), a port where clients and reals meet (one
//! arm: the NIC hashes one side per port), non-TCP/UDP frames. It
//! computes the same owner, so a mix of steering and non-steering ports is
//! still correct. `[dataplane].steering` chooses: `auto` (steer where the
//! device can, say why not elsewhere), `software` (never ask the NIC), or
//! `nic` (refuse to start where a port with NAT traffic cannot steer).
//! Ports without NAT traffic keep RSS over whole flows with the random
//! key, whose hash the connection table reuses; a steering port's hash is
//! not reusable (one side, a public key) and the table hashes in software.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::pipeline::snat::DEFAULT_SNAT_PORTS;

/// What a port carries that the steering cares about: the side of NAT
/// flows (and outbound NAT flows) whose frames arrive on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortRole {
    /// No NAT flow's frames: DR, TUN, or nothing. Hashed over whole flows.
    #[default]
    Other,
    /// The clients of NAT services (and the remote hosts of outbound
    /// NAT): the owner is in the source fields.
    Clients,
    /// NAT reals (and the sources of outbound NAT): the owner is in the
    /// destination fields.
    Reals,
    /// Both: no single side of the frame names the owner.
    Both,
}

/// `[dataplane].steering`: whether ports steer frames to their owners in
/// the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SteeringMode {
    /// In the NIC where the device can, in software elsewhere.
    #[default]
    Auto,
    /// In software only (RSS over whole flows, with the random key).
    Software,
    /// In the NIC, on every port with NAT traffic, or refuse to start.
    Nic,
}

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
    /// The owner of each low 6 bits of a client endpoint's hash: one
    /// period of the NIC's redirection table ([`Steer::reta`]).
    owners: [u8; RETA_PERIOD],
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
        let mut owners = [0u8; RETA_PERIOD];
        let mut i = 0;
        while i < RETA_PERIOD {
            owners[i] = (i % workers as usize) as u8;
            i += 1;
        }
        Steer {
            owners,
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
    /// both directions): what a NIC steering with [`STEER_KEY`] and
    /// [`Steer::reta`] computes for the client endpoint ([`nic_hash`]).
    #[inline(always)]
    pub fn client_owner_v4(&self, addr: u32, port: u16) -> u16 {
        let fold = (addr >> 16) ^ addr ^ u32::from(port);
        self.reta_owner(word_hash(fold as u16))
    }

    /// [`Self::client_owner_v4`] for any address (the same value for an
    /// IPv4 one).
    #[inline]
    pub fn client_owner(&self, addr: IpAddr, port: u16) -> u16 {
        match addr {
            IpAddr::V4(a) => self.client_owner_v4(u32::from(a), port),
            IpAddr::V6(a) => self.reta_owner(word_hash(fold_v6(u128::from(a)) ^ port)),
        }
    }

    /// The worker the redirection table names for a hash.
    #[inline(always)]
    fn reta_owner(&self, hash: u32) -> u16 {
        u16::from(self.owners[hash as usize % RETA_PERIOD])
    }

    /// The redirection table a NIC is given for `queues` queues (one per
    /// worker) so that it steers as [`Self::client_owner`] does: entry
    /// `i` names queue `(i % 64) % queues`. `size` must be a multiple of
    /// 64 (every Intel NIC's is: 128, 512, 2,048); the NIC indexes it
    /// with the low bits of the hash, so that only the low 6 bits count.
    pub fn reta(size: usize, queues: u16) -> Vec<u16> {
        let q = usize::from(queues.max(1));
        (0..size).map(|i| (i % RETA_PERIOD % q) as u16).collect()
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

/// Entries of the redirection table after which it repeats
/// ([`Steer::reta`]).
pub const RETA_PERIOD: usize = 64;

/// The 16-bit pattern of [`STEER_KEY`].
const STEER_WORD: u16 = 0x6d5a;

/// The RSS key ferrolb programs into a NIC that steers by one side of
/// the flow: the 16-bit word `0x6d5a` repeated (52 bytes, the longest an
/// Intel NIC takes; shorter keys are its first bytes).
///
/// With a key that repeats every 16 bits, the Toeplitz window of an input
/// bit depends only on the bit's position modulo 16, so the hash of any
/// input is the hash of the xor of its 16-bit words ([`nic_hash`]). Two
/// things follow. A NIC that hashes the source fields only and one that
/// hashes the destination fields only give the same hash for the same
/// address and port, whether they pack the chosen fields or leave the
/// others zero: every field starts on a 16-bit boundary. And the hash
/// cannot be the connection table's (it ignores the other side, and its
/// key is public), which keeps its own random key.
pub const STEER_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = (STEER_WORD >> (8 * (1 - i % 2))) as u8;
        i += 1;
    }
    k
};

/// The Toeplitz hash under [`STEER_KEY`] of a 16-bit word that starts on
/// a 16-bit boundary: for each set bit, most significant first, the key's
/// 32-bit window at that bit.
const fn word_hash_slow(w: u16) -> u32 {
    let pattern = ((STEER_WORD as u32) << 16) | STEER_WORD as u32;
    let mut h = 0u32;
    let mut j = 0;
    while j < 16 {
        if w & (0x8000 >> j) != 0 {
            h ^= pattern.rotate_left(j);
        }
        j += 1;
    }
    h
}

/// [`word_hash_slow`] of every byte value in the high and in the low
/// byte of a word.
const WORD_TABLES: [[u32; 256]; 2] = {
    let mut t = [[0u32; 256]; 2];
    let mut b = 0;
    while b < 256 {
        t[0][b] = word_hash_slow((b as u16) << 8);
        t[1][b] = word_hash_slow(b as u16);
        b += 1;
    }
    t
};

/// [`word_hash_slow`] by two lookups (the hash is linear).
#[inline(always)]
fn word_hash(w: u16) -> u32 {
    WORD_TABLES[0][usize::from(w >> 8)] ^ WORD_TABLES[1][usize::from(w & 0xff)]
}

/// The xor of an IPv6 address's eight 16-bit words.
#[inline(always)]
fn fold_v6(x: u128) -> u16 {
    let x = (x >> 64) as u64 ^ x as u64;
    let x = (x >> 32) as u32 ^ x as u32;
    ((x >> 16) ^ x) as u16
}

/// The hash a NIC programmed with [`STEER_KEY`] computes over the address
/// and port of one side of a TCP or UDP frame (that side's fields only,
/// packed or in their places).
pub fn nic_hash(addr: IpAddr, port: u16) -> u32 {
    match addr {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            word_hash(((a >> 16) ^ a) as u16 ^ port)
        }
        IpAddr::V6(a) => word_hash(fold_v6(u128::from(a)) ^ port),
    }
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

    /// The Toeplitz hash by its definition (bit by bit) under the first
    /// 40 bytes of [`STEER_KEY`].
    fn toeplitz(input: &[u8]) -> u32 {
        let key: [u8; crate::conntrack::toeplitz::KEY_LEN] = std::array::from_fn(|i| STEER_KEY[i]);
        crate::conntrack::Toeplitz::new(key).hash(input)
    }

    fn endpoints() -> Vec<(IpAddr, u16)> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..400)
            .map(|i| {
                let r = next();
                let addr = if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::from(r as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from((u128::from(r) << 64) | u128::from(next())))
                };
                (addr, (r >> 40) as u16)
            })
            .collect()
    }

    #[test]
    fn the_nic_hash_is_toeplitz_of_either_side_packed_or_in_place() {
        for (addr, port) in endpoints() {
            let a = match addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let zero = vec![0u8; a.len()];
            let p = port.to_be_bytes();
            let packed = [&a[..], &p].concat();
            let as_source = [&a[..], &zero, &p, &[0, 0]].concat();
            let as_destination = [&zero[..], &a, &[0, 0], &p].concat();
            let h = nic_hash(addr, port);
            assert_eq!(h, toeplitz(&packed), "{addr}:{port} packed");
            assert_eq!(h, toeplitz(&as_source), "{addr}:{port} as the source");
            assert_eq!(
                h,
                toeplitz(&as_destination),
                "{addr}:{port} as the destination"
            );
        }
    }

    #[test]
    fn the_owner_is_the_worker_the_nic_redirection_table_names() {
        for workers in [1u16, 2, 3, 4, 5, 8, 64] {
            let s = Steer::new(0, workers);
            for size in [64usize, 128, 512, 2048] {
                let reta = Steer::reta(size, workers);
                for (addr, port) in endpoints() {
                    let h = nic_hash(addr, port) as usize;
                    assert_eq!(s.client_owner(addr, port), reta[h & (size - 1)]);
                }
            }
        }
    }

    #[test]
    fn the_bench_capture_writer_computes_the_same_owners() {
        // scripts/mkpcap.py's owner() of 203.0.113.1:40000..40010, two
        // workers (its natmix captures put each reply on the other one).
        let s = Steer::new(0, 2);
        let owners: Vec<u16> = (40_000..40_010)
            .map(|p| s.client_owner_v4(0xcb00_7101, p))
            .collect();
        assert_eq!(owners, [0, 1, 0, 1, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn the_low_six_bits_of_the_nic_hash_cover_every_table_entry_alike() {
        let mut seen = [0u32; RETA_PERIOD];
        for w in 0..=u16::MAX {
            seen[word_hash(w) as usize % RETA_PERIOD] += 1;
            assert_eq!(word_hash(w), word_hash_slow(w));
        }
        assert!(seen.iter().all(|&n| n == 1024), "{seen:?}");
        // One client's consecutive ports go round the workers.
        let s = Steer::new(0, 4);
        let mut per = [0u32; 4];
        for p in 40_000u16..40_256 {
            per[usize::from(s.client_owner_v4(0xcb00_7101, p))] += 1;
        }
        assert!(per.iter().all(|&n| n == 64), "{per:?}");
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
