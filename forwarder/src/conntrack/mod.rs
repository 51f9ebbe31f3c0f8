//! The per-worker connection table.
//!
//! One [`ConnTable`] per worker, never shared: no locks, no atomics. All
//! memory is allocated (and touched) by [`ConnTable::new`]; nothing
//! allocates afterwards, whatever the traffic.
//!
//! # Layout
//!
//! * A slab of `capacity` 32-byte cells, two per cache line. A flow whose
//!   client and real are both IPv4 is one cell (addresses as 32-bit
//!   words); a flow with an IPv6 address takes a second cell for its
//!   16-byte addresses, linked from the first (see `Cell`). Capacity
//!   counts cells: `capacity` IPv4 flows, or half as many IPv6 ones.
//!   Free cells form an intrusive free list. A [`FlowId`] is the slot of
//!   a flow's first cell.
//! * A forward index (client -> VIP) and a reply index (real -> client,
//!   NAT flows only), each a bucketed hash index ([`index`]) of 64-byte
//!   buckets of 10 ways sized for 8 flows per bucket: 8 bytes per flow
//!   each.
//!
//! Memory: 32 (cell) + 8 (forward) + 8 (reply) = 48 bytes per IPv4 flow,
//! 80 per IPv6 flow, plus a few hundred bytes of table header: 10,000,000
//! IPv4 flows take 480 MB (`memory_bytes`; the `bytes_per_flow_10m` test
//! prints the measure).
//!
//! # Hashing and lookups
//!
//! Keys are hashed to 32 bits ([`ConnTable::hash`],
//! [`ConnTable::hash_reply`]). A flow with an IPv4 client is hashed with
//! the Toeplitz hash of the table's RSS key ([`toeplitz`]) over the
//! tuple its frames carry, plus a seeded mix of the service, so that the
//! NIC's RSS hash of a frame gives the table's hash with one xor
//! ([`ConnTable::rss_adjust`], [`ConnTable::rss_reply_adjust`]); IPv6
//! keys with a seeded multiply-xorshift over the key's fields. Callers
//! pass that hash to lookups and inserts (so a burst can hash all its
//! packets first, prefetch, then probe). The hash is not stored: freeing
//! a flow recomputes it from the key. Probing is bounded (8 buckets); an
//! IPv4 hit usually reads one bucket line and one cell.
//!
//! # Time
//!
//! `now` is passed in by the caller, in ticks of any unit (the table never
//! reads a clock); [`Timeouts`] are in the same ticks. Expiry comparisons
//! are wrap-around safe (serial arithmetic), so a millisecond tick that
//! wraps after 49 days works as long as every timeout is below 2^31 ticks
//! and [`ConnTable::sweep`] visits every slot more often than every 2^31
//! ticks. An entry is expired when `now >= expiry`.
//!
//! # Freeing
//!
//! Entries are freed lazily by lookups that find them expired
//! ([`Lookup::Expired`]), by the incremental [`ConnTable::sweep`], by
//! [`ConnTable::remove`], and by eviction when an insert finds the table
//! full. Every freed entry is reported as a [`Freed`] so the caller can
//! decrement its per-real active connection counts.
//!
//! # Eviction
//!
//! When an insert finds no free entry (or a full index probe window) it
//! examines a bounded neighbourhood (the next `evict_scan` slab slots after
//! a rotating cursor, or the index window) and frees the best victim:
//! expired first, then half-open (`SynRecv`), then closing TCP states, then
//! UDP/ICMP, then (only if [`Config::evict_established`], and only while
//! the whole table holds no half-open flow) established TCP; within a
//! class, the one closest to expiry (least recently seen). An established
//! flow is therefore never evicted while any half-open one exists: under a
//! SYN flood a new flow whose neighbourhood holds only established flows is
//! refused rather than let the flood push out a working connection. If
//! nothing may be evicted the insert fails with [`InsertError::Full`] and
//! `insert_failures` counts it. Evictions are counted by class
//! ([`Counters::evictions_half_open`], [`Counters::evictions_established`]).

mod cell;
mod evict;
mod hash;
mod index;
mod state;
pub mod toeplitz;
mod v4;

pub use cell::Entry;
pub use state::{is_expired, Dir, State, TcpFlags, Timeouts, L4, N_STATES};
pub use toeplitz::Toeplitz;
pub use v4::{FlowKeyV4, HitV4, PlainV4, WireKeyV4};

use cell::*;
use evict::*;
use hash::*;

use std::net::{IpAddr, Ipv4Addr};

use crate::service::hash::{addr16, K_GOLDEN, K_MUR1};
use crate::service::RealIdx;
use index::{Index, NIL};

/// Construction parameters of a [`ConnTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Maximum number of flows (1 ..= 2^32 - 2).
    pub capacity: u32,
    /// Hash seed (pick a random one per process in production; fixed in
    /// tests).
    pub seed: u64,
    /// The Toeplitz key of IPv4 flows' hashes: the RSS key the NICs are
    /// given, so that their hash can stand in for the table's
    /// ([`toeplitz::random_key`] in production; fixed in tests).
    pub rss_key: [u8; toeplitz::KEY_LEN],
    /// Per-state timeouts in ticks.
    pub timeouts: Timeouts,
    /// Slab slots examined for a victim when the table is full.
    pub evict_scan: u32,
    /// Whether established TCP flows may be evicted as a last resort (when
    /// the neighbourhood holds nothing else and the table holds no
    /// half-open flow). Katran-like LRU behaviour;
    /// with Maglev the evicted flow most likely re-hashes to the same real.
    pub evict_established: bool,
}

impl Config {
    /// Defaults for `capacity` flows: seconds ticks, scan 16, evict
    /// established flows as a last resort.
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            seed: 0x636f_6e6e_7472_6b30,
            rss_key: TEST_RSS_KEY,
            timeouts: Timeouts::default(),
            evict_scan: 16,
            evict_established: true,
        }
    }
}

/// Forward key of a flow (client -> VIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Control-plane id of the service (stands for VIP + protocol).
    pub service: u32,
    /// Client address.
    pub client: IpAddr,
    /// Client port (ICMP: echo id).
    pub client_port: u16,
    /// Destination port on the VIP (matters for wildcard services).
    pub vport: u16,
    /// Protocol.
    pub proto: L4,
}

/// How replies of a flow reach the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nat {
    /// DR / TUN: replies bypass the balancer; no reply index entry.
    None,
    /// NAT: replies are `real:port -> client:port`.
    Nat,
    /// Hairpin / full NAT: the balancer replaced the client's source with
    /// its local address and this port; replies are
    /// `real:port -> local:port`. The local port must be unique per
    /// (real, real port, protocol) among a worker's live flows.
    Snat(u16),
}

/// Reply key: what a packet from a real carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKey {
    /// NAT reply `real:real_port -> client:client_port`.
    Nat {
        /// Real address (source of the reply).
        real: IpAddr,
        /// Real port.
        real_port: u16,
        /// Client address (destination of the reply).
        client: IpAddr,
        /// Client port.
        client_port: u16,
        /// Protocol.
        proto: L4,
    },
    /// SNAT reply `real:real_port -> local:local_port`.
    Snat {
        /// Real address.
        real: IpAddr,
        /// Real port.
        real_port: u16,
        /// The balancer's SNAT port.
        local_port: u16,
        /// Protocol.
        proto: L4,
    },
}

/// What a new flow is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowValue {
    /// Real address.
    pub real: IpAddr,
    /// Real port.
    pub real_port: u16,
    /// Index of the real in its service at insert time (re-validate with
    /// [`crate::service::Service::resolve_real`] after a snapshot swap).
    pub real_hint: RealIdx,
    /// Reply handling (and reply index entry).
    pub nat: Nat,
    /// Initial state (see [`State::initial`]).
    pub state: State,
    /// Timeout profile (0: the table's timeouts; see
    /// [`ConnTable::set_profiles`]).
    pub profile: u8,
}

/// Timeout profiles a table holds: the table's own (0) and up to
/// `MAX_PROFILES - 1` more (per-service timeouts).
pub const MAX_PROFILES: usize = 32;
/// The state byte of a cell: the state in the low bits, the timeout
/// profile above.
const PROFILE_SHIFT: u8 = 3;
const STATE_MASK: u8 = (1 << PROFILE_SHIFT) - 1;

/// Slab slot of a flow. Valid until the next call that can free entries
/// (`insert`, `sweep`, `remove`, a lookup returning `Expired`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub u32);

/// Why an entry was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeReason {
    /// Its timeout passed (lookup, sweep or insert found it).
    Expired,
    /// Sacrificed to make room for a new flow.
    Evicted,
    /// [`ConnTable::remove`].
    Removed,
}

/// A freed flow, reported so the caller can fix its per-real counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freed {
    /// Its forward key.
    pub key: FlowKey,
    /// Real address.
    pub real: IpAddr,
    /// Real port.
    pub real_port: u16,
    /// Real index hint as last stored.
    pub real_hint: RealIdx,
    /// Reply handling.
    pub nat: Nat,
    /// State when freed.
    pub state: State,
    /// Why.
    pub reason: FreeReason,
    /// The head cell it held (free again now).
    pub id: FlowId,
}

/// Result of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live flow.
    Hit(FlowId),
    /// No flow.
    Miss,
    /// The flow had expired and was freed now: treat as a miss.
    Expired(Freed),
}

impl Lookup {
    /// The flow id of a hit.
    #[inline]
    pub fn hit(&self) -> Option<FlowId> {
        match self {
            Lookup::Hit(id) => Some(*id),
            _ => None,
        }
    }
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// A live flow with this key exists.
    #[error("flow exists")]
    Exists(FlowId),
    /// A live NAT flow already owns this reply key.
    #[error("reply tuple in use by another flow")]
    ReplyConflict(FlowId),
    /// Full, and nothing in the neighbourhood may be evicted.
    #[error("connection table full")]
    Full,
}

/// Event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful inserts.
    pub inserts: u64,
    /// Live entries evicted for room.
    pub evictions: u64,
    /// Of which established TCP.
    pub evictions_established: u64,
    /// Of which half-open TCP (`SynRecv`).
    pub evictions_half_open: u64,
    /// Entries freed because they expired.
    pub expiries: u64,
    /// Entries removed by the caller.
    pub removals: u64,
    /// Inserts that failed with `Full`.
    pub insert_failures: u64,
    /// Inserts that failed with `ReplyConflict`.
    pub reply_conflicts: u64,
}

/// The per-worker flow table. See the module docs.
pub struct ConnTable {
    cells: Box<[Cell]>,
    /// Cells on the free list.
    free_cells: u32,
    fwd: Index,
    rev: Index,
    free_head: u32,
    len: u32,
    by_state: [u32; N_STATES],
    /// Per profile, `timeouts.for_state(s)` by `s as usize`; profile 0
    /// is `cfg.timeouts`.
    timeout: [[u32; N_STATES]; MAX_PROFILES],
    sweep_pos: u32,
    evict_pos: u32,
    cfg: Config,
    /// The hash of IPv4 flows (of `cfg.rss_key`).
    tz: Toeplitz,
    counters: Counters,
}

/// The key of [`Config::new`]: any fixed bytes do for tests.
const TEST_RSS_KEY: [u8; toeplitz::KEY_LEN] = *b"ferrolb connection table test RSS key 40";

/// Seed offset of reply hashes.
const REPLY_SEED: u64 = 0x0072_6570_6c79;

impl ConnTable {
    /// The forward hash of a stored key: Toeplitz for an IPv4 client.
    #[inline]
    fn fwd_hash(&self, k: &PKey) -> u32 {
        if k.v6 == 0 {
            self.hash_v4_parts(low32(&k.client), k.service, k.client_port, k.vport, k.proto)
        } else {
            fwd_hash_wide(self.cfg.seed, k)
        }
    }

    /// The forward hash of an IPv4 client's flow: the Toeplitz hash of the
    /// 4-tuple with destination 0.0.0.0, xor a seeded mix of the service
    /// and protocol (which stands in for the VIP, see [`Self::rss_adjust`]).
    #[inline(always)]
    pub(crate) fn hash_v4_parts(
        &self,
        client: u32,
        service: u32,
        client_port: u16,
        vport: u16,
        proto: u8,
    ) -> u32 {
        self.tz.v4_src_ports(client, client_port, vport) ^ self.service_mix(service, proto)
    }

    #[inline(always)]
    fn service_mix(&self, service: u32, proto: u8) -> u32 {
        fin32(mx(
            self.cfg.seed,
            (u64::from(service) << 8) | u64::from(proto),
        ))
    }

    /// The part of [`Self::hash_v4`] that depends on the service alone,
    /// for a caller to keep per service: `hash_v4(k)` is
    /// `hash_v4_wire(client, ports, service_part(k.service, k.proto))`.
    pub fn service_part(&self, service: u32, proto: L4) -> u32 {
        self.service_mix(service, proto.code())
    }

    /// What turns the NIC's RSS hash of a frame from an IPv4 client to
    /// `vip` (a TCP or UDP frame, hashed over addresses and ports with
    /// this table's [`Config::rss_key`]) into [`Self::hash_v4`] of its
    /// flow of `service`: `rss ^ rss_adjust(..)`.
    pub fn rss_adjust(&self, vip: Ipv4Addr, service: u32, proto: L4) -> u32 {
        self.tz.v4_dst(u32::from(vip)) ^ self.service_mix(service, proto.code())
    }

    /// The reply hash of a stored key: Toeplitz for plain NAT between
    /// IPv4 addresses (the tuple the reply frame carries), else wide.
    #[inline]
    fn reply_hash(&self, k: &PReply) -> u32 {
        if k.flags == F_NAT {
            self.hash_reply_v4_parts(
                low32(&k.real),
                k.real_port,
                low32(&k.client),
                k.port,
                k.proto,
            )
        } else {
            k.hash_wide(self.cfg.seed)
        }
    }

    #[inline(always)]
    pub(crate) fn hash_reply_v4_parts(
        &self,
        real: u32,
        real_port: u16,
        client: u32,
        client_port: u16,
        proto: u8,
    ) -> u32 {
        self.tz.v4(real, client, real_port, client_port) ^ self.reply_mix(proto)
    }

    #[inline(always)]
    fn reply_mix(&self, proto: u8) -> u32 {
        fin32(mx(self.cfg.seed ^ REPLY_SEED, u64::from(proto)))
    }

    /// What turns the NIC's RSS hash of a NAT reply frame (IPv4, real ->
    /// client, TCP or UDP, hashed over addresses and ports) into its
    /// reply hash: `rss ^ rss_reply_adjust(..)`.
    #[inline(always)]
    pub fn rss_reply_adjust(&self, proto: L4) -> u32 {
        self.reply_mix(proto.code())
    }

    /// The Toeplitz key of IPv4 hashes ([`Config::rss_key`]).
    pub fn rss_key(&self) -> &[u8; toeplitz::KEY_LEN] {
        self.tz.key()
    }

    /// Replaces the RSS key (to the one the ports were given). Only an
    /// empty table can: `false`, unchanged, once it holds a flow.
    pub fn set_rss_key(&mut self, key: [u8; toeplitz::KEY_LEN]) -> bool {
        if self.len != 0 {
            return false;
        }
        self.cfg.rss_key = key;
        self.tz = Toeplitz::new(key);
        true
    }
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("capacity", &self.cells.len())
            .field("len", &self.len)
            .field("counters", &self.counters)
            .finish()
    }
}

impl ConnTable {
    /// Allocates and initialises the whole table.
    ///
    /// # Panics
    /// If `capacity` is 0 or `u32::MAX`.
    pub fn new(cfg: Config) -> Self {
        assert!(
            cfg.capacity > 0 && cfg.capacity < NIL,
            "capacity out of range"
        );
        let cap = cfg.capacity as usize;
        let mut cells = vec![FREE_CELL; cap].into_boxed_slice();
        for (i, e) in cells.iter_mut().enumerate() {
            e.service = if i + 1 < cap { i as u32 + 1 } else { NIL };
        }
        Self {
            cells,
            free_cells: cap as u32,
            fwd: Index::for_flows(cap),
            rev: Index::for_flows(cap),
            free_head: 0,
            len: 0,
            by_state: [0; N_STATES],
            timeout: [State::ALL.map(|st| cfg.timeouts.for_state(st)); MAX_PROFILES],
            sweep_pos: 0,
            evict_pos: 0,
            cfg: Config {
                evict_scan: cfg.evict_scan.max(1),
                ..cfg
            },
            tz: Toeplitz::new(cfg.rss_key),
            counters: Counters::default(),
        }
    }

    /// A table with [`Config::new`] defaults.
    pub fn with_capacity(capacity: u32) -> Self {
        Self::new(Config::new(capacity))
    }

    /// Maximum number of flows: cells, each IPv4 flow taking one and
    /// each flow with an IPv6 address two.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }
    /// Live flows (including expired ones not freed yet).
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether no flow is stored.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Cells in use (an IPv4 flow takes one, a flow with an IPv6
    /// address two); [`Self::capacity`] counts cells.
    #[inline]
    pub fn cells_used(&self) -> usize {
        self.cells.len() - self.free_cells as usize
    }
    /// Flows per state, indexed by `State as usize`.
    #[inline]
    pub fn by_state(&self) -> [u32; N_STATES] {
        self.by_state
    }
    /// Event counters.
    #[inline]
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// The configuration.
    #[inline]
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Bytes of memory held (slab, both indexes, header).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.cells)
            + self.fwd.bytes()
            + self.rev.bytes()
            + std::mem::size_of::<Self>()
    }

    /// The table's large arrays (slab, forward index, reply index) as
    /// (address, bytes): for the worker to ask the kernel to back them
    /// with huge pages (fewer TLB misses on random lookups).
    pub fn memory_regions(&self) -> [(*const u8, usize); 3] {
        [
            (
                self.cells.as_ptr().cast(),
                std::mem::size_of_val(&*self.cells),
            ),
            self.fwd.region(),
            self.rev.region(),
        ]
    }

    /// The table's hash of a forward key.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u32 {
        self.fwd_hash(&PKey::new(key))
    }

    /// The table's hash of a reply key.
    #[inline]
    pub fn hash_reply(&self, key: &ReplyKey) -> u32 {
        self.reply_hash(&PReply::new(key))
    }

    /// The address of the forward index bucket a lookup of `hash` reads
    /// first, for a prefetch instruction (the worker's, in
    /// `crate::dpdk`): the first pass over a burst.
    #[inline]
    pub fn bucket_addr(&self, hash: u32) -> *const u8 {
        self.fwd.bucket_addr(hash)
    }

    /// [`Self::bucket_addr`] for the reply index.
    #[inline]
    pub fn reply_bucket_addr(&self, hash: u32) -> *const u8 {
        self.rev.bucket_addr(hash)
    }

    /// The flow of `id` (a decoded copy).
    #[inline]
    pub fn entry(&self, id: FlowId) -> Entry {
        Entry::decode(&self.cells, &self.cells[id.0 as usize])
    }

    /// Forward lookup. `hash` is [`Self::hash`] of `key` or the caller's
    /// own hash (the one used at insert). An expired flow is freed and
    /// returned as [`Lookup::Expired`]. Does not refresh the expiry (use
    /// [`Self::touch`]).
    #[inline]
    pub fn lookup(&mut self, now: u32, key: &FlowKey, hash: u32) -> Lookup {
        let pk = PKey::new(key);
        let cells = &self.cells;
        match self.fwd.find(
            hash,
            #[inline(always)]
            |s| pk.matches(cells, s),
        ) {
            None => Lookup::Miss,
            Some(s) => self.hit_or_expire(s, now),
        }
    }

    /// Reply lookup (NAT flows only). `hash` must be
    /// [`Self::hash_reply`] of `key`.
    #[inline]
    pub fn lookup_reply(&mut self, now: u32, key: &ReplyKey, hash: u32) -> Lookup {
        let pr = PReply::new(key);
        let cells = &self.cells;
        match self.rev.find(
            hash,
            #[inline(always)]
            |s| pr.matches(cells, s),
        ) {
            None => Lookup::Miss,
            Some(s) => self.hit_or_expire(s, now),
        }
    }

    #[inline]
    fn hit_or_expire(&mut self, s: u32, now: u32) -> Lookup {
        if is_expired(self.cells[s as usize].expiry, now) {
            Lookup::Expired(self.free(s, FreeReason::Expired))
        } else {
            Lookup::Hit(FlowId(s))
        }
    }

    /// Records a packet of flow `id`: advances the TCP state with `flags`
    /// seen in direction `dir` and restarts the state's timeout. Returns
    /// the new state.
    #[inline]
    pub fn touch(&mut self, id: FlowId, now: u32, dir: Dir, flags: TcpFlags) -> State {
        let e = &mut self.cells[id.0 as usize];
        let old = e.state();
        // Nearly every packet: an established flow's segment without
        // SYN, FIN or RST, or a UDP / ICMP flow's, which keeps the state
        // whatever the direction ([`State::next`]).
        let steady = match old {
            State::Established => flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0,
            State::Udp | State::Icmp => true,
            _ => false,
        };
        let new = if steady { old } else { old.next(dir, flags) };
        if new != old {
            self.by_state[old as usize] -= 1;
            self.by_state[new as usize] += 1;
            e.state = new as u8 | (e.state & !STATE_MASK);
        }
        let profile = usize::from(e.state >> PROFILE_SHIFT);
        e.expiry = now.wrapping_add(self.timeout[profile][new as usize]);
        new
    }

    /// Sets the timeout profiles 1.. (profile 0 stays the table's own);
    /// profiles beyond `profiles` fall back to the table's. At most
    /// `MAX_PROFILES - 1` are taken. Flows keep their profile number:
    /// renumber them with [`Self::remap_profiles`] when the numbering
    /// changes.
    pub fn set_profiles(&mut self, profiles: &[Timeouts]) {
        let base = self.timeout[0];
        for (i, t) in self.timeout.iter_mut().enumerate().skip(1) {
            *t = match profiles.get(i - 1) {
                Some(p) => State::ALL.map(|st| p.for_state(st)),
                None => base,
            };
        }
    }

    /// The timeout of flow `id` in `state` (its profile's).
    #[inline]
    pub fn timeout_of(&self, id: FlowId, state: State) -> u32 {
        let p = self.cells[id.0 as usize].state >> PROFILE_SHIFT;
        self.timeout[usize::from(p) % MAX_PROFILES][state as usize]
    }

    /// The timeout of a flow of `profile` in `state`.
    #[inline]
    pub fn timeout(&self, profile: u8, state: State) -> u32 {
        self.timeout[usize::from(profile) % MAX_PROFILES][state as usize]
    }

    /// Gives every live flow the profile `of(service id)` says. O(capacity):
    /// only when a snapshot renumbers the profiles.
    pub fn remap_profiles(&mut self, of: impl Fn(u32) -> u8) {
        for c in self.cells.iter_mut().filter(|c| c.is_live()) {
            let p = of(c.service) % MAX_PROFILES as u8;
            c.state = (c.state & STATE_MASK) | (p << PROFILE_SHIFT);
        }
    }

    /// Sets a flow's state and expiry as another node reported them
    /// (connection sync): `expiry` = `now` + the time it had left there.
    pub fn restore(&mut self, id: FlowId, state: State, expiry: u32) {
        let e = &mut self.cells[id.0 as usize];
        let old = e.state();
        if old != state {
            self.by_state[old as usize] -= 1;
            self.by_state[state as usize] += 1;
            e.state = state as u8 | (e.state & !STATE_MASK);
        }
        e.expiry = expiry;
    }

    /// Records that flow `id` was described to the HA peer at `now`.
    #[inline]
    pub fn set_synced(&mut self, id: FlowId, now: u32) {
        self.cells[id.0 as usize].synced = now;
    }

    /// Every live flow (expired ones not freed yet included), in slab
    /// order. O(capacity): for snapshot changes and tests, not per packet.
    pub fn live(&self) -> impl Iterator<Item = Entry> + '_ {
        self.cells
            .iter()
            .filter(|e| e.is_live())
            .map(|e| Entry::decode(&self.cells, e))
    }

    /// Visits the live flows whose head cell is in `from..from + budget`
    /// (expired ones not freed yet included), in slab order, until `f`
    /// says stop (`false`). Returns the cell to go on from (the one `f`
    /// stopped at, or the first not read), or `None` at the end of the
    /// table. Bounded: at most `budget` cells are read, so a listing of a
    /// large table goes by slices.
    pub fn scan(&self, from: u32, budget: u32, mut f: impl FnMut(Entry) -> bool) -> Option<u32> {
        let end = (from as usize)
            .saturating_add(budget as usize)
            .min(self.cells.len());
        for i in from as usize..end {
            let c = &self.cells[i];
            if c.is_live() && !f(Entry::decode(&self.cells, c)) {
                return Some(i as u32);
            }
        }
        (end < self.cells.len()).then_some(end as u32)
    }

    /// Updates the real index hint of a flow (after re-resolving it
    /// against a new snapshot).
    #[inline]
    pub fn set_real_hint(&mut self, id: FlowId, hint: RealIdx) {
        self.cells[id.0 as usize].real_hint = hint.0;
    }

    /// Inserts a new flow; its expiry is `now` + the timeout of
    /// `value.state`. `hash` must be [`Self::hash`] of `key` (it is not
    /// stored: freeing recomputes it). Entries freed to make room (or
    /// found expired on the way) are passed to `on_free`.
    pub fn insert(
        &mut self,
        now: u32,
        key: &FlowKey,
        hash: u32,
        value: &FlowValue,
        on_free: impl FnMut(&Freed),
    ) -> Result<FlowId, InsertError> {
        self.insert_inner(now, key, hash, value, on_free, true)
    }

    /// [`Self::insert`] of a key a lookup with the same hash has just
    /// found absent (a miss, not an expired flow), with no change to the
    /// table since: the duplicate check is skipped.
    pub fn insert_absent(
        &mut self,
        now: u32,
        key: &FlowKey,
        hash: u32,
        value: &FlowValue,
        on_free: impl FnMut(&Freed),
    ) -> Result<FlowId, InsertError> {
        self.insert_inner(now, key, hash, value, on_free, false)
    }

    #[inline]
    fn insert_inner(
        &mut self,
        now: u32,
        key: &FlowKey,
        hash: u32,
        value: &FlowValue,
        mut on_free: impl FnMut(&Freed),
        check_duplicate: bool,
    ) -> Result<FlowId, InsertError> {
        let pk = PKey::new(key);
        // 1. Same key already present?
        let cells = &self.cells;
        let dup = if check_duplicate {
            self.fwd.find(
                hash,
                #[inline(always)]
                |s| pk.matches(cells, s),
            )
        } else {
            debug_assert!(self
                .fwd
                .find(
                    hash,
                    #[inline(always)]
                    |s| pk.matches(cells, s)
                )
                .is_none());
            None
        };
        if let Some(s) = dup {
            if !is_expired(self.cells[s as usize].expiry, now) {
                return Err(InsertError::Exists(FlowId(s)));
            }
            on_free(&self.free(s, FreeReason::Expired));
        }

        // 2. The flow, decoded.
        let (real, rv6) = addr16(value.real);
        let (flags_nat, snat_port) = match value.nat {
            Nat::None => (0, 0),
            Nat::Nat => (F_NAT, 0),
            Nat::Snat(p) => (F_SNAT, p),
        };
        let e = Entry {
            client: pk.client,
            real,
            service: pk.service,
            expiry: now.wrapping_add(self.timeout(value.profile, value.state)),
            synced: now,
            client_port: pk.client_port,
            vport: pk.vport,
            real_port: value.real_port,
            snat_port,
            real_hint: value.real_hint.0,
            proto: pk.proto,
            state: value.state as u8 | ((value.profile % MAX_PROFILES as u8) << PROFILE_SHIFT),
            flags: F_LIVE | pk.v6 | fam(rv6, F_REAL_V6) | flags_nat,
        };
        let need = if e.flags & (F_CLIENT_V6 | F_REAL_V6) != 0 {
            2
        } else {
            1
        };

        // 3. Reply tuple owned by another live flow?
        let rev = if flags_nat != 0 {
            let pr = PReply::of_entry(&e);
            let rh = self.reply_hash(&pr);
            let cells = &self.cells;
            if let Some(s) = self.rev.find(rh, |s| pr.matches(cells, s)) {
                if !is_expired(self.cells[s as usize].expiry, now) {
                    self.counters.reply_conflicts += 1;
                    return Err(InsertError::ReplyConflict(FlowId(s)));
                }
                on_free(&self.free(s, FreeReason::Expired));
            }
            Some(rh)
        } else {
            None
        };

        // 4. Make room: choose every victim first, so that a failure
        //    leaves the table untouched.
        // Established flows are a last resort, and never while a half-open
        // flow exists anywhere in the table (a SYN flood must not push out
        // working connections).
        let ev = self.cfg.evict_established && self.by_state[State::SynRecv as usize] == 0;
        let mut victims: [Option<u32>; 4] = [None; 4];
        let mut gained = 0u32;
        if !self.fwd.has_room(hash) {
            let mut best = None;
            self.fwd
                .window(hash, |s| consider(&mut best, &self.cells, s, now, ev, &[]));
            match best {
                Some((s, _)) => gained += take(&mut victims, &self.cells, s),
                None => return Err(self.fail()),
            }
        }
        if let Some(rh) = rev {
            if !self.rev.has_room(rh) {
                let mut best = None;
                self.rev
                    .window(rh, |s| consider(&mut best, &self.cells, s, now, ev, &[]));
                match best {
                    Some((s, _)) => gained += take(&mut victims, &self.cells, s),
                    None => return Err(self.fail()),
                }
            }
        }
        // Cells: an IPv6 flow needs two, and may take two victims.
        let cap = self.cells.len() as u32;
        while self.free_cells + gained < need {
            let mut best = None;
            let mut s = self.evict_pos;
            // Victims already chosen are skipped (most inserts have none).
            let taken = victims.iter().take_while(|v| v.is_some()).count();
            for _ in 0..self.cfg.evict_scan.min(cap) {
                consider(&mut best, &self.cells, s, now, ev, &victims[..taken]);
                s = if s + 1 == cap { 0 } else { s + 1 };
            }
            self.evict_pos = s;
            match best {
                Some((s, _)) => gained += take(&mut victims, &self.cells, s),
                None => return Err(self.fail()),
            }
        }
        for v in victims.into_iter().flatten() {
            if self.cells[v as usize].is_live() {
                let reason = if is_expired(self.cells[v as usize].expiry, now) {
                    FreeReason::Expired
                } else {
                    FreeReason::Evicted
                };
                on_free(&self.free(v, reason));
            }
        }

        // 5. Store: the head, and the extension of a flow with an IPv6
        //    address.
        let slot = self.pop_free();
        let mut head = Cell {
            a: low32(&e.client),
            b: low32(&e.real),
            service: e.service,
            expiry: e.expiry,
            synced: e.synced,
            client_port: e.client_port,
            vport: e.vport,
            real_port: e.real_port,
            snat_port: e.snat_port,
            real_hint: e.real_hint,
            state: e.state,
            flags: e.flags | (e.proto << PROTO_SHIFT),
        };
        if need == 2 {
            let x = self.pop_free();
            self.cells[x as usize] = Cell::ext(&e.client, &e.real);
            head.b = x;
        }
        self.cells[slot as usize] = head;
        let ok = self.fwd.insert(hash, slot);
        debug_assert!(ok);
        if let Some(rh) = rev {
            let ok = self.rev.insert(rh, slot);
            debug_assert!(ok);
        }
        self.len += 1;
        self.by_state[value.state as usize] += 1;
        self.counters.inserts += 1;
        Ok(FlowId(slot))
    }

    /// Takes a cell off the free list (the caller made sure there is one).
    #[inline]
    fn pop_free(&mut self) -> u32 {
        let slot = self.free_head;
        debug_assert_ne!(slot, NIL);
        self.free_head = self.cells[slot as usize].service;
        self.free_cells -= 1;
        slot
    }

    /// Puts cell `s` on the free list.
    #[inline]
    fn push_free(&mut self, s: u32) {
        let c = &mut self.cells[s as usize];
        c.flags = 0;
        c.service = self.free_head;
        self.free_head = s;
        self.free_cells += 1;
    }

    #[cold]
    fn fail(&mut self) -> InsertError {
        self.counters.insert_failures += 1;
        InsertError::Full
    }

    /// Removes a flow (e.g. after an RST the caller wants gone at once).
    pub fn remove(&mut self, id: FlowId) -> Option<Freed> {
        if !self.cells.get(id.0 as usize)?.is_live() {
            return None;
        }
        Some(self.free(id.0, FreeReason::Removed))
    }

    /// Examines at most `budget` cells (continuing where the previous call
    /// stopped) and frees the expired flows, passing each to `on_free`.
    /// Returns how many were freed. Call it every burst with a small budget.
    pub fn sweep(&mut self, now: u32, budget: u32, mut on_free: impl FnMut(&Freed)) -> u32 {
        let cap = self.cells.len() as u32;
        let mut freed = 0;
        let mut s = self.sweep_pos;
        for _ in 0..budget.min(cap) {
            let e = &self.cells[s as usize];
            if e.is_live() && is_expired(e.expiry, now) {
                on_free(&self.free(s, FreeReason::Expired));
                freed += 1;
            }
            s = if s + 1 == cap { 0 } else { s + 1 };
        }
        self.sweep_pos = s;
        freed
    }

    /// Unlinks the flow of head cell `s` from both indexes, puts its
    /// cells on the free list and reports it.
    fn free(&mut self, s: u32, reason: FreeReason) -> Freed {
        let head = self.cells[s as usize];
        debug_assert!(head.is_live());
        let e = Entry::decode(&self.cells, &head);
        let ok = self.fwd.remove(self.fwd_hash(&PKey::of_entry(&e)), s);
        debug_assert!(ok);
        if e.flags & (F_NAT | F_SNAT) != 0 {
            let ok = self.rev.remove(self.reply_hash(&PReply::of_entry(&e)), s);
            debug_assert!(ok);
        }
        let state = e.state();
        self.len -= 1;
        self.by_state[state as usize] -= 1;
        match reason {
            FreeReason::Expired => self.counters.expiries += 1,
            FreeReason::Removed => self.counters.removals += 1,
            FreeReason::Evicted => {
                self.counters.evictions += 1;
                match state {
                    State::Established => self.counters.evictions_established += 1,
                    State::SynRecv => self.counters.evictions_half_open += 1,
                    _ => {}
                }
            }
        }
        if head.has_ext() {
            self.push_free(head.b);
        }
        self.push_free(s);
        Freed {
            key: e.key(),
            real: e.real(),
            real_port: e.real_port,
            real_hint: e.real_hint(),
            nat: e.nat(),
            state,
            reason,
            id: FlowId(s),
        }
    }

    /// Checks internal invariants (tests): counts, cells, free list,
    /// indexes.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let live = self.cells.iter().filter(|e| e.is_live()).count();
        assert_eq!(live, self.len as usize);
        let mut by_state = [0u32; N_STATES];
        let mut used = 0usize;
        let mut ext_owned = vec![false; self.cells.len()];
        for e in self.cells.iter().filter(|e| e.is_live()) {
            by_state[(e.state & STATE_MASK) as usize] += 1;
            used += e.cells() as usize;
            if e.has_ext() {
                let x = e.b as usize;
                assert_eq!(self.cells[x].flags, F_EXT, "extension cell {x}");
                assert!(!ext_owned[x], "extension cell {x} shared");
                ext_owned[x] = true;
            }
        }
        let exts = self.cells.iter().filter(|e| e.flags == F_EXT).count();
        assert_eq!(
            exts,
            ext_owned.iter().filter(|&&o| o).count(),
            "orphan extension"
        );
        assert_eq!(by_state, self.by_state);
        let mut free = 0;
        let mut f = self.free_head;
        while f != NIL {
            let c = &self.cells[f as usize];
            assert!(!c.is_live() && c.flags & F_EXT == 0);
            free += 1;
            f = c.service;
            assert!(free <= self.cells.len());
        }
        assert_eq!(free, self.free_cells as usize);
        assert_eq!(free + used, self.cells.len());
        for (s, c) in self.cells.iter().enumerate() {
            if c.is_live() {
                let e = Entry::decode(&self.cells, c);
                let h = self.fwd_hash(&PKey::of_entry(&e));
                assert_eq!(self.fwd.find(h, |x| x == s as u32), Some(s as u32));
                if e.flags & (F_NAT | F_SNAT) != 0 {
                    let rh = self.reply_hash(&PReply::of_entry(&e));
                    assert_eq!(self.rev.find(rh, |x| x == s as u32), Some(s as u32));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
