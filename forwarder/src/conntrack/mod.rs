//! The per-worker connection table.
//!
//! One [`ConnTable`] per worker, never shared: no locks, no atomics. All
//! memory is allocated (and touched) by [`ConnTable::new`]; nothing
//! allocates afterwards, whatever the traffic.
//!
//! # Layout
//!
//! * A slab of `capacity` [`Entry`]s, 64 bytes each, cache-line aligned.
//!   Free entries form an intrusive free list. A [`FlowId`] is a slab slot.
//! * A forward index (client -> VIP) and a reply index (real -> client, NAT
//!   flows only), each a bucketed hash index ([`index`]) of 64-byte buckets
//!   of 10 ways sized for 8 flows per bucket: 8 bytes per flow each.
//!
//! Memory: 64 (entry) + 8 (forward) + 8 (reply) = 80 bytes per flow, plus
//! a few hundred bytes of table header: 10,000,000 flows take ~800 MB
//! (`memory_bytes`; the `bytes_per_flow_10m` test prints the measure).
//!
//! # Hashing and lookups
//!
//! Keys are hashed with a seeded multiply-xorshift over the key's fields
//! ([`ConnTable::hash`], [`ConnTable::hash_reply`]) to 32 bits. The forward
//! lookup accepts any caller-supplied 32-bit hash instead (e.g. the NIC's
//! RSS hash), provided the same key always comes with the same hash; the
//! entry stores the hash it was inserted with so that it can be removed
//! later. Lookups are hash-then-probe: a burst can hash all its packets
//! first and then probe. Probing is bounded (8 buckets); a hit usually
//! reads one bucket line and one entry line.
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

mod index;
mod v4;

pub use v4::{FlowKeyV4, HitV4};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::service::hash::{addr16, K_GOLDEN, K_MUR1};
use crate::service::RealIdx;
use index::{Index, NIL};

/// Whether a deadline `expiry` has passed at `now` (wrap-around safe).
#[inline]
pub const fn is_expired(expiry: u32, now: u32) -> bool {
    (now.wrapping_sub(expiry) as i32) >= 0
}

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP / ICMPv6 echo; the echo identifier goes in the port fields.
    Icmp,
}

impl L4 {
    #[inline]
    const fn code(self) -> u8 {
        match self {
            L4::Tcp => 0,
            L4::Udp => 1,
            L4::Icmp => 2,
        }
    }
    #[inline]
    const fn from_code(c: u8) -> Self {
        match c {
            0 => L4::Tcp,
            1 => L4::Udp,
            _ => L4::Icmp,
        }
    }
}

impl From<crate::service::Proto> for L4 {
    fn from(p: crate::service::Proto) -> Self {
        match p {
            crate::service::Proto::Tcp => L4::Tcp,
            crate::service::Proto::Udp => L4::Udp,
        }
    }
}

/// Connection state (TCP states as seen by a balancer, plus one state for
/// each connectionless protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Client SYN seen, handshake not finished (half-open).
    SynRecv = 0,
    /// Handshake finished (or flow picked up mid-stream).
    Established = 1,
    /// Client sent FIN.
    FinWait = 2,
    /// Real sent FIN first (NAT: reply side seen).
    CloseWait = 3,
    /// Both sides sent FIN.
    TimeWait = 4,
    /// RST seen.
    Close = 5,
    /// UDP flow.
    Udp = 6,
    /// ICMP flow.
    Icmp = 7,
}

/// Number of [`State`]s (size of [`ConnTable::by_state`]).
pub const N_STATES: usize = 8;

impl State {
    /// All states, in `repr` order.
    pub const ALL: [State; N_STATES] = [
        State::SynRecv,
        State::Established,
        State::FinWait,
        State::CloseWait,
        State::TimeWait,
        State::Close,
        State::Udp,
        State::Icmp,
    ];

    #[inline]
    const fn from_u8(v: u8) -> Self {
        Self::ALL[(v as usize) & 7]
    }

    /// State of a new flow from its first packet: SYN -> `SynRecv`; a TCP
    /// packet without SYN (a flow picked up mid-stream, e.g. after a
    /// failover) -> `Established` (`FinWait` / `Close` for FIN / RST).
    pub const fn initial(proto: L4, flags: TcpFlags) -> Self {
        match proto {
            L4::Udp => State::Udp,
            L4::Icmp => State::Icmp,
            L4::Tcp => {
                if flags.has(TcpFlags::RST) {
                    State::Close
                } else if flags.has(TcpFlags::SYN) {
                    State::SynRecv
                } else if flags.has(TcpFlags::FIN) {
                    State::FinWait
                } else {
                    State::Established
                }
            }
        }
    }

    /// The state after a packet with `flags` in direction `dir`.
    ///
    /// RST (either side) -> `Close`. Client: SYN after `Close`/`TimeWait`
    /// reopens (`SynRecv`); FIN -> `FinWait` (or `TimeWait` after the real's
    /// FIN); ACK in `SynRecv` -> `Established`. Reply (NAT): FIN ->
    /// `CloseWait` (or `TimeWait` after the client's FIN). UDP/ICMP never
    /// change.
    pub const fn next(self, dir: Dir, flags: TcpFlags) -> Self {
        use State::*;
        match self {
            Udp | Icmp => return self,
            _ => {}
        }
        if flags.has(TcpFlags::RST) {
            return Close;
        }
        match dir {
            Dir::Client => {
                if flags.has(TcpFlags::SYN) && !flags.has(TcpFlags::ACK) {
                    return match self {
                        Close | TimeWait => SynRecv,
                        s => s,
                    };
                }
                if flags.has(TcpFlags::FIN) {
                    return match self {
                        SynRecv | Established => FinWait,
                        CloseWait => TimeWait,
                        s => s,
                    };
                }
                if flags.has(TcpFlags::ACK) {
                    return match self {
                        SynRecv => Established,
                        s => s,
                    };
                }
                self
            }
            Dir::Reply => {
                if flags.has(TcpFlags::FIN) {
                    return match self {
                        SynRecv | Established => CloseWait,
                        FinWait => TimeWait,
                        s => s,
                    };
                }
                self
            }
        }
    }

    /// Whether this is one of the TCP states.
    pub const fn is_tcp(self) -> bool {
        (self as u8) <= State::Close as u8
    }

    /// Whether this is a half-open or closing TCP state (not active).
    pub const fn is_tcp_inactive(self) -> bool {
        !matches!(self, State::Established | State::Udp | State::Icmp)
    }
}

/// TCP flags byte as on the wire (offset 13 of the TCP header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// No flag (non-TCP packets).
    pub const NONE: TcpFlags = TcpFlags(0);

    /// Whether any of the bits in `mask` is set.
    #[inline]
    pub const fn has(self, mask: u8) -> bool {
        self.0 & mask != 0
    }
}

/// Direction of a packet relative to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client -> VIP.
    Client,
    /// Real -> client (NAT replies).
    Reply,
}

/// Idle timeouts per state, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `SynRecv`.
    pub syn_recv: u32,
    /// `Established`.
    pub established: u32,
    /// `FinWait`.
    pub fin_wait: u32,
    /// `CloseWait`.
    pub close_wait: u32,
    /// `TimeWait`.
    pub time_wait: u32,
    /// `Close`.
    pub close: u32,
    /// UDP.
    pub udp: u32,
    /// ICMP.
    pub icmp: u32,
}

impl Timeouts {
    /// IPVS-like defaults with `hz` ticks per second: SYN_RECV 30 s,
    /// ESTABLISHED 900 s, FIN_WAIT 120 s, CLOSE_WAIT 60 s, TIME_WAIT 120 s,
    /// CLOSE 10 s, UDP 300 s, ICMP 60 s.
    pub const fn ipvs(hz: u32) -> Self {
        Self {
            syn_recv: 30 * hz,
            established: 900 * hz,
            fin_wait: 120 * hz,
            close_wait: 60 * hz,
            time_wait: 120 * hz,
            close: 10 * hz,
            udp: 300 * hz,
            icmp: 60 * hz,
        }
    }

    /// The timeout of `s` (capped at 2^31 - 1 for wrap-safe comparisons).
    #[inline]
    pub const fn for_state(&self, s: State) -> u32 {
        let t = match s {
            State::SynRecv => self.syn_recv,
            State::Established => self.established,
            State::FinWait => self.fin_wait,
            State::CloseWait => self.close_wait,
            State::TimeWait => self.time_wait,
            State::Close => self.close,
            State::Udp => self.udp,
            State::Icmp => self.icmp,
        };
        if t > i32::MAX as u32 {
            i32::MAX as u32
        } else {
            t
        }
    }
}

impl Default for Timeouts {
    /// [`Timeouts::ipvs`] with 1 tick = 1 second.
    fn default() -> Self {
        Self::ipvs(1)
    }
}

/// Construction parameters of a [`ConnTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Maximum number of flows (1 ..= 2^32 - 2).
    pub capacity: u32,
    /// Hash seed (pick a random one per process in production; fixed in
    /// tests).
    pub seed: u64,
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
}

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

const F_LIVE: u8 = 1;
const F_CLIENT_V6: u8 = 2;
const F_REAL_V6: u8 = 4;
const F_NAT: u8 = 8;
const F_SNAT: u8 = 16;

/// One flow: exactly one 64-byte cache line, IPv4 and IPv6 alike.
///
/// ```text
/// off size field
///   0  16  client address (IPv4 stored v4-mapped; family in `flags`)
///  16  16  real address   (idem)
///  32   4  service id     (next free slot while on the free list)
///  36   4  expiry (ticks)
///  40   4  forward hash the flow was inserted with
///  44   2  client port          46 2 VIP port
///  48   2  real port            50 2 SNAT port (hairpin)
///  52   2  real index hint      54 1 protocol   55 1 state
///  56   1  flags: live, client v6, real v6, NAT, SNAT
///  57   3  padding          60 4 tick of the last connection-sync record
/// ```
///
/// Full IPv6 addresses fit: the key (service, client, ports, protocol:
/// 25 bytes) and the value (real address and port, SNAT port, hint,
/// state, expiry, flags: 30 bytes) plus the stored hash need 59 bytes.
/// The real index is only a hint: after a snapshot swap the worker checks
/// it against the stored real address (`Service::resolve_real`), so no
/// generation number is needed.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Entry {
    client: [u8; 16],
    real: [u8; 16],
    service: u32,
    expiry: u32,
    hash: u32,
    client_port: u16,
    vport: u16,
    real_port: u16,
    snat_port: u16,
    real_hint: u16,
    proto: u8,
    state: u8,
    flags: u8,
    synced: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() <= 64);
const _: () = assert!(std::mem::size_of::<Entry>() == 64);

const FREE_ENTRY: Entry = Entry {
    client: [0; 16],
    real: [0; 16],
    service: NIL,
    expiry: 0,
    hash: 0,
    client_port: 0,
    vport: 0,
    real_port: 0,
    snat_port: 0,
    real_hint: 0,
    proto: 0,
    state: 0,
    flags: 0,
    synced: 0,
};

#[inline]
fn from16(b: [u8; 16], v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(b);
    if v6 {
        IpAddr::V6(a)
    } else {
        let o = b;
        IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    }
}

impl Entry {
    /// Client address.
    pub fn client(&self) -> IpAddr {
        from16(self.client, self.flags & F_CLIENT_V6 != 0)
    }
    /// Client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }
    /// VIP port.
    pub fn vport(&self) -> u16 {
        self.vport
    }
    /// Service id.
    pub fn service(&self) -> u32 {
        self.service
    }
    /// Protocol.
    pub fn proto(&self) -> L4 {
        L4::from_code(self.proto)
    }
    /// Forward key.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            service: self.service,
            client: self.client(),
            client_port: self.client_port,
            vport: self.vport,
            proto: self.proto(),
        }
    }
    /// Real address.
    pub fn real(&self) -> IpAddr {
        from16(self.real, self.flags & F_REAL_V6 != 0)
    }
    /// Real port.
    pub fn real_port(&self) -> u16 {
        self.real_port
    }
    /// Real index hint.
    pub fn real_hint(&self) -> RealIdx {
        RealIdx(self.real_hint)
    }
    /// Reply handling.
    pub fn nat(&self) -> Nat {
        if self.flags & F_SNAT != 0 {
            Nat::Snat(self.snat_port)
        } else if self.flags & F_NAT != 0 {
            Nat::Nat
        } else {
            Nat::None
        }
    }
    /// State.
    pub fn state(&self) -> State {
        State::from_u8(self.state)
    }
    /// Expiry (ticks).
    pub fn expiry(&self) -> u32 {
        self.expiry
    }
    /// When the flow was last described to the HA peer (ticks; the
    /// insert time until then).
    pub fn synced(&self) -> u32 {
        self.synced
    }
    #[inline]
    fn is_live(&self) -> bool {
        self.flags & F_LIVE != 0
    }
}

/// A key in the stored form.
struct PKey {
    client: [u8; 16],
    service: u32,
    client_port: u16,
    vport: u16,
    proto: u8,
    v6: u8,
}

impl PKey {
    #[inline]
    fn new(k: &FlowKey) -> Self {
        let (client, v6) = addr16(k.client);
        Self {
            client,
            service: k.service,
            client_port: k.client_port,
            vport: k.vport,
            proto: k.proto.code(),
            v6: if v6 { F_CLIENT_V6 } else { 0 },
        }
    }
    #[inline]
    fn matches(&self, e: &Entry) -> bool {
        e.flags & (F_LIVE | F_CLIENT_V6) == F_LIVE | self.v6
            && e.client == self.client
            && e.service == self.service
            && e.client_port == self.client_port
            && e.vport == self.vport
            && e.proto == self.proto
    }
}

/// A reply key in the stored form.
struct PReply {
    real: [u8; 16],
    client: [u8; 16],
    real_port: u16,
    /// Client port (NAT) or SNAT port.
    port: u16,
    proto: u8,
    /// F_SNAT or F_NAT, plus family bits.
    flags: u8,
}

impl PReply {
    #[inline]
    fn new(k: &ReplyKey) -> Self {
        match *k {
            ReplyKey::Nat {
                real,
                real_port,
                client,
                client_port,
                proto,
            } => {
                let (r, rv6) = addr16(real);
                let (c, cv6) = addr16(client);
                Self {
                    real: r,
                    client: c,
                    real_port,
                    port: client_port,
                    proto: proto.code(),
                    flags: F_NAT | fam(rv6, F_REAL_V6) | fam(cv6, F_CLIENT_V6),
                }
            }
            ReplyKey::Snat {
                real,
                real_port,
                local_port,
                proto,
            } => {
                let (r, rv6) = addr16(real);
                Self {
                    real: r,
                    client: [0; 16],
                    real_port,
                    port: local_port,
                    proto: proto.code(),
                    flags: F_SNAT | fam(rv6, F_REAL_V6),
                }
            }
        }
    }

    #[inline]
    fn of_entry(e: &Entry) -> Self {
        if e.flags & F_SNAT != 0 {
            Self {
                real: e.real,
                client: [0; 16],
                real_port: e.real_port,
                port: e.snat_port,
                proto: e.proto,
                flags: F_SNAT | (e.flags & F_REAL_V6),
            }
        } else {
            Self {
                real: e.real,
                client: e.client,
                real_port: e.real_port,
                port: e.client_port,
                proto: e.proto,
                flags: F_NAT | (e.flags & (F_REAL_V6 | F_CLIENT_V6)),
            }
        }
    }

    #[inline]
    fn matches(&self, e: &Entry) -> bool {
        if !e.is_live() || e.flags & (F_NAT | F_SNAT) == 0 {
            return false;
        }
        if self.flags & F_SNAT != 0 {
            e.flags & (F_SNAT | F_REAL_V6) == self.flags
                && e.real == self.real
                && e.real_port == self.real_port
                && e.snat_port == self.port
                && e.proto == self.proto
        } else {
            e.flags & (F_NAT | F_SNAT | F_REAL_V6 | F_CLIENT_V6) == self.flags
                && e.real == self.real
                && e.client == self.client
                && e.real_port == self.real_port
                && e.client_port == self.port
                && e.proto == self.proto
        }
    }

    #[inline]
    fn hash(&self, seed: u64) -> u32 {
        let r = u128::from_be_bytes(self.real);
        let mut h = mx(seed ^ 0x0072_6570_6c79, (r >> 64) as u64);
        h = mx(h, r as u64);
        if self.flags & F_NAT != 0 {
            let c = u128::from_be_bytes(self.client);
            h = mx(h, (c >> 64) as u64);
            h = mx(h, c as u64);
        }
        h = mx(
            h,
            (u64::from(self.flags) << 40)
                | (u64::from(self.proto) << 32)
                | (u64::from(self.real_port) << 16)
                | u64::from(self.port),
        );
        fin32(h)
    }
}

#[inline]
const fn fam(v6: bool, bit: u8) -> u8 {
    if v6 {
        bit
    } else {
        0
    }
}

/// Multiply-xorshift step.
#[inline]
const fn mx(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(K_GOLDEN);
    x ^ (x >> 32)
}

#[inline]
const fn fin32(h: u64) -> u32 {
    let x = h.wrapping_mul(K_MUR1);
    ((x >> 32) ^ x) as u32
}

#[inline]
fn fwd_hash(seed: u64, k: &PKey) -> u32 {
    let c = u128::from_be_bytes(k.client);
    let mut h = mx(seed, (c >> 64) as u64);
    h = mx(h, c as u64);
    h = mx(
        h,
        (u64::from(k.service) << 32) | (u64::from(k.client_port) << 16) | u64::from(k.vport),
    );
    h = mx(h, u64::from(k.proto) | (u64::from(k.v6) << 8));
    fin32(h)
}

/// The per-worker flow table. See the module docs.
pub struct ConnTable {
    entries: Box<[Entry]>,
    fwd: Index,
    rev: Index,
    free_head: u32,
    len: u32,
    by_state: [u32; N_STATES],
    sweep_pos: u32,
    evict_pos: u32,
    cfg: Config,
    counters: Counters,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("capacity", &self.entries.len())
            .field("len", &self.len)
            .field("counters", &self.counters)
            .finish()
    }
}

/// Eviction rank: lower is evicted first; `None` = never.
#[inline]
fn victim_rank(e: &Entry, now: u32, evict_established: bool) -> Option<(u8, i32)> {
    let remaining = e.expiry.wrapping_sub(now) as i32;
    if is_expired(e.expiry, now) {
        return Some((0, remaining));
    }
    let class = match e.state() {
        State::SynRecv => 1,
        State::FinWait | State::CloseWait | State::TimeWait | State::Close => 2,
        State::Udp | State::Icmp => 3,
        State::Established if evict_established => 4,
        State::Established => return None,
    };
    Some((class, remaining))
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
        let mut entries = vec![FREE_ENTRY; cap].into_boxed_slice();
        for (i, e) in entries.iter_mut().enumerate() {
            e.service = if i + 1 < cap { i as u32 + 1 } else { NIL };
        }
        Self {
            entries,
            fwd: Index::for_flows(cap),
            rev: Index::for_flows(cap),
            free_head: 0,
            len: 0,
            by_state: [0; N_STATES],
            sweep_pos: 0,
            evict_pos: 0,
            cfg: Config {
                evict_scan: cfg.evict_scan.max(1),
                ..cfg
            },
            counters: Counters::default(),
        }
    }

    /// A table with [`Config::new`] defaults.
    pub fn with_capacity(capacity: u32) -> Self {
        Self::new(Config::new(capacity))
    }

    /// Maximum number of flows.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.entries.len()
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
        std::mem::size_of_val(&*self.entries)
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
                self.entries.as_ptr().cast(),
                std::mem::size_of_val(&*self.entries),
            ),
            self.fwd.region(),
            self.rev.region(),
        ]
    }

    /// The table's hash of a forward key.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u32 {
        fwd_hash(self.cfg.seed, &PKey::new(key))
    }

    /// The table's hash of a reply key.
    #[inline]
    pub fn hash_reply(&self, key: &ReplyKey) -> u32 {
        PReply::new(key).hash(self.cfg.seed)
    }

    /// Starts loading the forward index bucket of `hash` without waiting
    /// for it (a plain load the CPU overlaps with other work; no `unsafe`
    /// prefetch intrinsic). For a burst: hash + `prefetch` every packet,
    /// then `prefetch_entry` every packet, then `lookup` every packet.
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        self.fwd.touch(hash);
    }

    /// Starts loading the entry a forward lookup of `hash` will most likely
    /// compare (the first tag match in the home bucket). Best after
    /// [`Self::prefetch`] of the same hash has had time to complete.
    #[inline]
    pub fn prefetch_entry(&self, hash: u32) {
        if let Some(s) = self.fwd.first_candidate(hash) {
            std::hint::black_box(self.entries[s as usize].expiry);
        }
    }

    /// The address of the forward index bucket a lookup of `hash` reads
    /// first, for a prefetch instruction (the worker's, in
    /// `crate::dpdk`): the first pass over a burst.
    #[inline]
    pub fn bucket_addr(&self, hash: u32) -> *const u8 {
        self.fwd.bucket_addr(hash)
    }

    /// The address of the entry a forward lookup of `hash` will most
    /// likely compare (reads the bucket): the second pass over a burst.
    #[inline]
    pub fn entry_addr(&self, hash: u32) -> Option<*const u8> {
        let s = self.fwd.first_candidate(hash)?;
        Some(std::ptr::from_ref(&self.entries[s as usize]).cast())
    }

    /// [`Self::bucket_addr`] for the reply index.
    #[inline]
    pub fn reply_bucket_addr(&self, hash: u32) -> *const u8 {
        self.rev.bucket_addr(hash)
    }

    /// [`Self::prefetch`] for the reply index.
    #[inline]
    pub fn prefetch_reply(&self, hash: u32) {
        self.rev.touch(hash);
    }

    /// [`Self::prefetch_entry`] for the reply index.
    #[inline]
    pub fn prefetch_reply_entry(&self, hash: u32) {
        if let Some(s) = self.rev.first_candidate(hash) {
            std::hint::black_box(self.entries[s as usize].expiry);
        }
    }

    /// The flow of `id`.
    #[inline]
    pub fn entry(&self, id: FlowId) -> &Entry {
        &self.entries[id.0 as usize]
    }

    /// Forward lookup. `hash` is [`Self::hash`] of `key` or the caller's
    /// own hash (the one used at insert). An expired flow is freed and
    /// returned as [`Lookup::Expired`]. Does not refresh the expiry (use
    /// [`Self::touch`]).
    #[inline]
    pub fn lookup(&mut self, now: u32, key: &FlowKey, hash: u32) -> Lookup {
        let pk = PKey::new(key);
        let entries = &self.entries;
        match self.fwd.find(hash, |s| pk.matches(&entries[s as usize])) {
            None => Lookup::Miss,
            Some(s) => self.hit_or_expire(s, now),
        }
    }

    /// Reply lookup (NAT flows only). `hash` must be
    /// [`Self::hash_reply`] of `key`.
    #[inline]
    pub fn lookup_reply(&mut self, now: u32, key: &ReplyKey, hash: u32) -> Lookup {
        let pr = PReply::new(key);
        let entries = &self.entries;
        match self.rev.find(hash, |s| pr.matches(&entries[s as usize])) {
            None => Lookup::Miss,
            Some(s) => self.hit_or_expire(s, now),
        }
    }

    #[inline]
    fn hit_or_expire(&mut self, s: u32, now: u32) -> Lookup {
        if is_expired(self.entries[s as usize].expiry, now) {
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
        let e = &mut self.entries[id.0 as usize];
        let old = e.state();
        let new = old.next(dir, flags);
        if new != old {
            self.by_state[old as usize] -= 1;
            self.by_state[new as usize] += 1;
            e.state = new as u8;
        }
        e.expiry = now.wrapping_add(self.cfg.timeouts.for_state(new));
        new
    }

    /// Sets a flow's state and expiry as another node reported them
    /// (connection sync): `expiry` = `now` + the time it had left there.
    pub fn restore(&mut self, id: FlowId, state: State, expiry: u32) {
        let e = &mut self.entries[id.0 as usize];
        let old = e.state();
        if old != state {
            self.by_state[old as usize] -= 1;
            self.by_state[state as usize] += 1;
            e.state = state as u8;
        }
        e.expiry = expiry;
    }

    /// Records that flow `id` was described to the HA peer at `now`.
    #[inline]
    pub fn set_synced(&mut self, id: FlowId, now: u32) {
        self.entries[id.0 as usize].synced = now;
    }

    /// Every live flow (expired ones not freed yet included), in slab
    /// order. O(capacity): for snapshot changes and tests, not per packet.
    pub fn live(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| e.is_live())
    }

    /// Updates the real index hint of a flow (after re-resolving it
    /// against a new snapshot).
    #[inline]
    pub fn set_real_hint(&mut self, id: FlowId, hint: RealIdx) {
        self.entries[id.0 as usize].real_hint = hint.0;
    }

    /// Inserts a new flow; its expiry is `now` + the timeout of
    /// `value.state`. `hash` as for [`Self::lookup`]. Entries freed to make
    /// room (or found expired on the way) are passed to `on_free`.
    pub fn insert(
        &mut self,
        now: u32,
        key: &FlowKey,
        hash: u32,
        value: &FlowValue,
        mut on_free: impl FnMut(&Freed),
    ) -> Result<FlowId, InsertError> {
        let pk = PKey::new(key);
        // 1. Same key already present?
        let entries = &self.entries;
        if let Some(s) = self.fwd.find(hash, |s| pk.matches(&entries[s as usize])) {
            if !is_expired(self.entries[s as usize].expiry, now) {
                return Err(InsertError::Exists(FlowId(s)));
            }
            on_free(&self.free(s, FreeReason::Expired));
        }

        // 2. Build the entry.
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
            expiry: now.wrapping_add(self.cfg.timeouts.for_state(value.state)),
            hash,
            client_port: pk.client_port,
            vport: pk.vport,
            real_port: value.real_port,
            snat_port,
            real_hint: value.real_hint.0,
            proto: pk.proto,
            state: value.state as u8,
            flags: F_LIVE | pk.v6 | fam(rv6, F_REAL_V6) | flags_nat,
            synced: now,
        };

        // 3. Reply tuple owned by another live flow?
        let rev = if flags_nat != 0 {
            let pr = PReply::of_entry(&e);
            let rh = pr.hash(self.cfg.seed);
            let entries = &self.entries;
            if let Some(s) = self.rev.find(rh, |s| pr.matches(&entries[s as usize])) {
                if !is_expired(self.entries[s as usize].expiry, now) {
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
        let v_fwd = if self.fwd.has_room(hash) {
            None
        } else {
            let mut best = None;
            self.fwd
                .window(hash, |s| consider(&mut best, &self.entries, s, now, ev));
            match best {
                Some((s, _)) => Some(s),
                None => return Err(self.fail()),
            }
        };
        let v_rev = match rev {
            Some(rh) if !self.rev.has_room(rh) => {
                let mut best = None;
                self.rev
                    .window(rh, |s| consider(&mut best, &self.entries, s, now, ev));
                match best {
                    Some((s, _)) => Some(s),
                    None => return Err(self.fail()),
                }
            }
            _ => None,
        };
        let v_slab = if self.free_head == NIL && v_fwd.is_none() && v_rev.is_none() {
            let cap = self.entries.len() as u32;
            let mut best = None;
            let mut s = self.evict_pos;
            for _ in 0..self.cfg.evict_scan.min(cap) {
                consider(&mut best, &self.entries, s, now, ev);
                s = if s + 1 == cap { 0 } else { s + 1 };
            }
            self.evict_pos = s;
            match best {
                Some((s, _)) => Some(s),
                None => return Err(self.fail()),
            }
        } else {
            None
        };
        for v in [v_fwd, v_rev, v_slab].into_iter().flatten() {
            if self.entries[v as usize].is_live() {
                let reason = if is_expired(self.entries[v as usize].expiry, now) {
                    FreeReason::Expired
                } else {
                    FreeReason::Evicted
                };
                on_free(&self.free(v, reason));
            }
        }

        // 5. Store.
        let slot = self.free_head;
        debug_assert_ne!(slot, NIL);
        self.free_head = self.entries[slot as usize].service;
        self.entries[slot as usize] = e;
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

    #[cold]
    fn fail(&mut self) -> InsertError {
        self.counters.insert_failures += 1;
        InsertError::Full
    }

    /// Removes a flow (e.g. after an RST the caller wants gone at once).
    pub fn remove(&mut self, id: FlowId) -> Option<Freed> {
        if !self.entries.get(id.0 as usize)?.is_live() {
            return None;
        }
        Some(self.free(id.0, FreeReason::Removed))
    }

    /// Examines at most `budget` slots (continuing where the previous call
    /// stopped) and frees the expired flows, passing each to `on_free`.
    /// Returns how many were freed. Call it every burst with a small budget.
    pub fn sweep(&mut self, now: u32, budget: u32, mut on_free: impl FnMut(&Freed)) -> u32 {
        let cap = self.entries.len() as u32;
        let mut freed = 0;
        let mut s = self.sweep_pos;
        for _ in 0..budget.min(cap) {
            let e = &self.entries[s as usize];
            if e.is_live() && is_expired(e.expiry, now) {
                on_free(&self.free(s, FreeReason::Expired));
                freed += 1;
            }
            s = if s + 1 == cap { 0 } else { s + 1 };
        }
        self.sweep_pos = s;
        freed
    }

    /// Unlinks slot `s` from both indexes, puts it on the free list and
    /// reports it.
    fn free(&mut self, s: u32, reason: FreeReason) -> Freed {
        let e = self.entries[s as usize];
        debug_assert!(e.is_live());
        let ok = self.fwd.remove(e.hash, s);
        debug_assert!(ok);
        if e.flags & (F_NAT | F_SNAT) != 0 {
            let ok = self.rev.remove(PReply::of_entry(&e).hash(self.cfg.seed), s);
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
        let slot = &mut self.entries[s as usize];
        slot.flags = 0;
        slot.service = self.free_head;
        self.free_head = s;
        Freed {
            key: e.key(),
            real: e.real(),
            real_port: e.real_port,
            real_hint: e.real_hint(),
            nat: e.nat(),
            state,
            reason,
        }
    }

    /// Checks internal invariants (tests): counts, free list, indexes.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let live = self.entries.iter().filter(|e| e.is_live()).count();
        assert_eq!(live, self.len as usize);
        let mut by_state = [0u32; N_STATES];
        for e in self.entries.iter().filter(|e| e.is_live()) {
            by_state[e.state as usize] += 1;
        }
        assert_eq!(by_state, self.by_state);
        let mut free = 0;
        let mut f = self.free_head;
        while f != NIL {
            assert!(!self.entries[f as usize].is_live());
            free += 1;
            f = self.entries[f as usize].service;
            assert!(free <= self.entries.len());
        }
        assert_eq!(free + live, self.entries.len());
        for (s, e) in self.entries.iter().enumerate() {
            if e.is_live() {
                assert_eq!(self.fwd.find(e.hash, |x| x == s as u32), Some(s as u32));
                if e.flags & (F_NAT | F_SNAT) != 0 {
                    let rh = PReply::of_entry(e).hash(self.cfg.seed);
                    assert_eq!(self.rev.find(rh, |x| x == s as u32), Some(s as u32));
                }
            }
        }
    }
}

#[inline]
fn consider(best: &mut Option<(u32, (u8, i32))>, entries: &[Entry], s: u32, now: u32, ev: bool) {
    let e = &entries[s as usize];
    if !e.is_live() {
        return;
    }
    if let Some(rank) = victim_rank(e, now, ev) {
        let better = match best {
            None => true,
            Some((_, r)) => rank < *r,
        };
        if better {
            *best = Some((s, rank));
        }
    }
}

#[cfg(test)]
mod tests;
