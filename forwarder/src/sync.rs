//! Connection sync between the nodes of an HA pair: the wire format, the
//! per-worker outbox the pipeline appends to, and the counters.
//!
//! The MASTER's workers describe every flow they create, every TCP state
//! change and every flow they free as a fixed-size [`Record`], appended to
//! a preallocated [`SyncLog`] (no allocation, no lock, no syscall). The
//! worker sends the log in batches, one UDP datagram each, from its own
//! address on the `[ha]` port to `[ha].sync_peer:[ha].sync_port`, when a
//! batch is full or [`FLUSH_MS`] after the oldest waiting record. The
//! BACKUP's pipeline recognises those datagrams (its own address, the sync
//! port, the peer's source address), parses them defensively and installs
//! the flows in its tables (`pipeline::Tables::apply_sync`), so that after
//! a takeover the packets of those flows, in both directions, are handled
//! as on the old master.
//!
//! Both nodes also send a *hello*, a datagram without records, when they
//! have sent nothing for [`HELLO_MS`] (the BACKUP, which has no flows to
//! describe, sends only hellos). Every datagram carries the sender's
//! service-set fingerprint, so each node learns whether its peer balances
//! the same services the same way; the worker counts datagrams whose
//! fingerprint differs from its own and the control plane logs and shows
//! the mismatch.
//!
//! # Wire format (version 2)
//!
//! UDP payload, every integer big-endian:
//!
//! ```text
//! header, 24 bytes
//!   0  4  magic "FLBS" (0x46 0x4c 0x42 0x53)
//!   4  1  version (2)
//!   5  1  reserved, 0
//!   6  2  record count N (0 ..= MAX_RECORDS; 0 is a hello)
//!   8  4  sequence number of the datagram (per sending worker, wraps)
//!  12  2  sending worker
//!  14  2  record length (56): a receiver refuses any other
//!  16  8  the sender's service-set fingerprint
//! N records, 56 bytes each
//!   0  1  op: 1 add (new flow), 2 update (state change), 3 delete (freed)
//!   1  1  protocol: 6 TCP, 17 UDP, 1 ICMP
//!   2  1  state (conntrack::State as u8, 0 ..= 7)
//!   3  1  flags: bit 0 client IPv6, bit 1 real IPv6, bits 2-3 reply
//!         handling (0 DR/TUN, 1 NAT, 2 source NAT), bit 4 persistence
//!         entry (client group -> this real), bits 5-7 zero
//!   4  4  service id (stable: derived from VIP address, protocol, port)
//!   8 16  client address (IPv4 as ::ffff:a.b.c.d)
//!  24 16  real address (idem)
//!  40  2  client port       42  2  VIP port
//!  44  2  real port         46  2  source-NAT port (0 unless NAT kind 2)
//!  48  4  remaining idle timeout, ms (0 for delete)
//!  52  4  reserved, 0
//! ```
//!
//! The datagram length must be exactly `24 + 56 * N`. A receiver also
//! takes version 1 (the same without the fingerprint: a 16-byte header
//! and N >= 1), so a pair can be upgraded one node at a time. Timeouts
//! travel as
//! remaining milliseconds because the two nodes' clocks (ticks since each
//! worker started) have nothing in common. A persistence entry is not
//! carried as such: the receiver rebuilds the group from the client
//! address and its own copy of the service's netmask, and gives it the
//! service's persistence timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::conntrack::{FlowKey, Nat, State, L4};

/// Magic at the start of every sync datagram.
pub const MAGIC: [u8; 4] = *b"FLBS";
/// Wire format version sent.
pub const VERSION: u8 = 2;
/// Header length.
pub const HEADER_LEN: usize = 24;
/// Header length of version 1 (no fingerprint), still received.
pub const HEADER_LEN_V1: usize = 16;
/// Record length.
pub const RECORD_LEN: usize = 56;
/// Records per datagram: the largest count whose IPv4/UDP datagram fits a
/// 1500-byte MTU (20 + 8 + 24 + 25 * 56 = 1452).
pub const MAX_RECORDS: usize = 25;
/// A node that has sent nothing to its peer for this long sends a hello.
pub const HELLO_MS: u64 = 1000;
/// Largest sync payload.
pub const MAX_PAYLOAD: usize = HEADER_LEN + MAX_RECORDS * RECORD_LEN;
/// Default UDP port (`[ha].sync_port`).
pub const DEFAULT_PORT: u16 = 8848;
/// A partial batch leaves at most this long after its first record.
pub const FLUSH_MS: u64 = 50;
/// Records a worker's outbox holds (about 40 batches); beyond it records
/// are counted in [`SyncCounters::lost`] and dropped.
pub const LOG_CAPACITY: usize = 1024;

/// What a record says happened to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A new flow.
    Add = 1,
    /// A flow changed state.
    Update = 2,
    /// A flow ended (freed).
    Delete = 3,
}

/// One flow, as synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub op: Op,
    /// The flow's forward key.
    pub key: FlowKey,
    /// Real address.
    pub real: IpAddr,
    /// Real port.
    pub real_port: u16,
    /// Reply handling (with the source-NAT port).
    pub nat: Nat,
    /// TCP state (or UDP / ICMP).
    pub state: State,
    /// Idle time left, ms.
    pub remaining_ms: u32,
    /// The flow's client group is persisted to this real.
    pub persist: bool,
}

/// Why a datagram was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Shorter than a header.
    #[error("shorter than the sync header")]
    Short,
    /// Not our magic.
    #[error("bad magic")]
    BadMagic,
    /// Another version.
    #[error("unsupported version")]
    BadVersion,
    /// Record length other than [`RECORD_LEN`].
    #[error("unexpected record length")]
    BadRecordLen,
    /// More than [`MAX_RECORDS`], a length that is not
    /// `24 + 56 * count`, or (version 1) zero records.
    #[error("record count does not match the length")]
    BadCount,
}

/// Why one record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Unknown op.
    #[error("unknown op")]
    Op,
    /// Unknown protocol.
    #[error("unknown protocol")]
    Proto,
    /// State out of range, or not one of the protocol's.
    #[error("bad state")]
    State,
    /// Unknown flag bits or reply kind, or a source-NAT port where none
    /// belongs.
    #[error("bad flags")]
    Flags,
    /// An IPv4 flag on an address that is not IPv4-mapped.
    #[error("bad address family")]
    Family,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Records that follow.
    pub count: usize,
    /// Batch sequence number.
    pub seq: u32,
    /// Sending worker.
    pub worker: u16,
    /// The sender's service-set fingerprint (`None` from a version 1
    /// sender).
    pub fingerprint: Option<u64>,
}

/// Checks a sync payload and returns its header and its records (each
/// still to be decoded with [`Record::decode`]). Never panics.
pub fn parse(payload: &[u8]) -> Result<(Header, std::slice::ChunksExact<'_, u8>), DatagramError> {
    if payload.len() < HEADER_LEN_V1 {
        return Err(DatagramError::Short);
    }
    if payload[0..4] != MAGIC {
        return Err(DatagramError::BadMagic);
    }
    let (header_len, least) = match payload[4] {
        1 => (HEADER_LEN_V1, 1),
        VERSION => (HEADER_LEN, 0),
        _ => return Err(DatagramError::BadVersion),
    };
    if payload.len() < header_len {
        return Err(DatagramError::Short);
    }
    if usize::from(be16(payload, 14)) != RECORD_LEN {
        return Err(DatagramError::BadRecordLen);
    }
    let count = usize::from(be16(payload, 6));
    if count < least || count > MAX_RECORDS || payload.len() != header_len + count * RECORD_LEN {
        return Err(DatagramError::BadCount);
    }
    let h = Header {
        count,
        seq: u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]),
        worker: be16(payload, 12),
        fingerprint: (header_len == HEADER_LEN).then(|| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[16..24]);
            u64::from_be_bytes(b)
        }),
    };
    Ok((h, payload[header_len..].chunks_exact(RECORD_LEN)))
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Writes a header for `count` records from a node whose service set has
/// `fingerprint` into `out[..HEADER_LEN]`.
pub fn write_header(out: &mut [u8], count: usize, seq: u32, worker: u16, fingerprint: u64) {
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = 0;
    out[6..8].copy_from_slice(&(count as u16).to_be_bytes());
    out[8..12].copy_from_slice(&seq.to_be_bytes());
    out[12..14].copy_from_slice(&worker.to_be_bytes());
    out[14..16].copy_from_slice(&(RECORD_LEN as u16).to_be_bytes());
    out[16..24].copy_from_slice(&fingerprint.to_be_bytes());
}

const F_CLIENT_V6: u8 = 1;
const F_REAL_V6: u8 = 2;
const NAT_SHIFT: u8 = 2;
const F_PERSIST: u8 = 16;

fn addr16(a: IpAddr) -> ([u8; 16], bool) {
    match a {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), false),
        IpAddr::V6(v6) => (v6.octets(), true),
    }
}

fn from16(b: &[u8], v6: bool) -> Result<IpAddr, RecordError> {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    let a = Ipv6Addr::from(o);
    if v6 {
        Ok(IpAddr::V6(a))
    } else if o[..10] == [0; 10] && o[10..12] == [0xff, 0xff] {
        Ok(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])))
    } else {
        Err(RecordError::Family)
    }
}

impl Record {
    /// Writes the record into `out[..RECORD_LEN]`.
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..RECORD_LEN];
        let (client, cv6) = addr16(self.key.client);
        let (real, rv6) = addr16(self.real);
        let (kind, snat) = match self.nat {
            Nat::None => (0u8, 0u16),
            Nat::Nat => (1, 0),
            Nat::Snat(p) => (2, p),
        };
        out[0] = self.op as u8;
        out[1] = match self.key.proto {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Icmp => 1,
        };
        out[2] = self.state as u8;
        let bit = |on: bool, f: u8| if on { f } else { 0 };
        out[3] = bit(cv6, F_CLIENT_V6)
            | bit(rv6, F_REAL_V6)
            | (kind << NAT_SHIFT)
            | bit(self.persist, F_PERSIST);
        out[4..8].copy_from_slice(&self.key.service.to_be_bytes());
        out[8..24].copy_from_slice(&client);
        out[24..40].copy_from_slice(&real);
        out[40..42].copy_from_slice(&self.key.client_port.to_be_bytes());
        out[42..44].copy_from_slice(&self.key.vport.to_be_bytes());
        out[44..46].copy_from_slice(&self.real_port.to_be_bytes());
        out[46..48].copy_from_slice(&snat.to_be_bytes());
        out[48..52].copy_from_slice(&self.remaining_ms.to_be_bytes());
        out[52..56].copy_from_slice(&[0; 4]);
    }

    /// Decodes one record (`b` shorter than [`RECORD_LEN`] is refused as
    /// [`RecordError::Flags`]). Never panics.
    pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
        let Some(b) = b.get(..RECORD_LEN) else {
            return Err(RecordError::Flags);
        };
        let op = match b[0] {
            1 => Op::Add,
            2 => Op::Update,
            3 => Op::Delete,
            _ => return Err(RecordError::Op),
        };
        let proto = match b[1] {
            6 => L4::Tcp,
            17 => L4::Udp,
            1 => L4::Icmp,
            _ => return Err(RecordError::Proto),
        };
        let state = match State::ALL.get(usize::from(b[2])) {
            Some(s) => *s,
            None => return Err(RecordError::State),
        };
        let fits = match proto {
            L4::Tcp => state.is_tcp(),
            L4::Udp => state == State::Udp,
            L4::Icmp => state == State::Icmp,
        };
        if !fits {
            return Err(RecordError::State);
        }
        let flags = b[3];
        if flags & 0xe0 != 0 || b[52..56] != [0; 4] {
            return Err(RecordError::Flags);
        }
        let snat = u16::from_be_bytes([b[46], b[47]]);
        let nat = match (flags >> NAT_SHIFT) & 3 {
            0 => Nat::None,
            1 => Nat::Nat,
            2 => Nat::Snat(snat),
            _ => return Err(RecordError::Flags),
        };
        if snat != 0 && !matches!(nat, Nat::Snat(_)) {
            return Err(RecordError::Flags);
        }
        let client = from16(&b[8..24], flags & F_CLIENT_V6 != 0)?;
        let real = from16(&b[24..40], flags & F_REAL_V6 != 0)?;
        Ok(Record {
            op,
            key: FlowKey {
                service: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                client,
                client_port: u16::from_be_bytes([b[40], b[41]]),
                vport: u16::from_be_bytes([b[42], b[43]]),
                proto,
            },
            real,
            real_port: u16::from_be_bytes([b[44], b[45]]),
            nat,
            state,
            remaining_ms: u32::from_be_bytes([b[48], b[49], b[50], b[51]]),
            persist: flags & F_PERSIST != 0,
        })
    }
}

/// Sync counters of one worker (plain integers; the worker publishes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Records sent to the peer.
    pub records_sent: u64,
    /// Datagrams sent to the peer.
    pub batches_sent: u64,
    /// Records logged but never sent (outbox full, no mbuf, peer's MAC
    /// unknown for too long).
    pub lost: u64,
    /// Records received in well-formed datagrams from the peer.
    pub records_received: u64,
    /// Records installed, updated or removed in the tables.
    pub applied: u64,
    /// Records refused: malformed, a real or mode the service does not
    /// have, no room, a reply tuple or source-NAT port in use.
    pub rejected: u64,
    /// Records for services this node does not know (skipped).
    pub unknown_service: u64,
    /// Records this worker could not hand to another worker (its inbox
    /// was full): that worker lacks the flow.
    pub fanout_dropped: u64,
    /// Datagrams from the peer that never arrived, from gaps in each
    /// sending worker's sequence numbers (a sender that restarts from 0
    /// is not counted).
    pub batches_missed: u64,
    /// Well-formed datagrams received from the peer, hellos included.
    pub datagrams_received: u64,
    /// The service-set fingerprint of the last datagram from the peer
    /// that carried one (0: none yet).
    pub peer_fingerprint: u64,
    /// Datagrams from the peer whose fingerprint differs from this
    /// node's.
    pub config_differs: u64,
}

/// A worker's outbox of encoded records, allocated once (see module docs).
pub struct SyncLog {
    buf: Box<[u8]>,
    len: usize,
    enabled: bool,
    /// Tick (ms) of the oldest record waiting.
    since: u64,
    /// Tick (ms) sending last started: flows not described since are
    /// described again on their next packet.
    epoch: u32,
    seq: u32,
    /// The node's service-set fingerprint, while it has a peer (hellos
    /// are sent and fingerprints compared only then).
    fingerprint: Option<u64>,
    /// This log sends hellos.
    hellos: bool,
    /// Tick (ms) of the last datagram sent (or of the last hello skipped
    /// for want of a route).
    sent_at: u64,
    /// Receiving: the last sequence number seen from each sending worker
    /// (by worker id modulo 64), valid where `seen` has its bit.
    last_seq: [u32; 64],
    seen: u64,
    /// Counters.
    pub counters: SyncCounters,
}

impl std::fmt::Debug for SyncLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLog")
            .field("len", &self.len)
            .field("enabled", &self.enabled)
            .field("counters", &self.counters)
            .finish()
    }
}

impl Default for SyncLog {
    fn default() -> Self {
        Self::new(LOG_CAPACITY)
    }
}

impl SyncLog {
    /// An outbox of `capacity` records (disabled until [`Self::set_enabled`]).
    pub fn new(capacity: usize) -> SyncLog {
        SyncLog {
            buf: vec![0u8; capacity.max(1) * RECORD_LEN].into_boxed_slice(),
            len: 0,
            enabled: false,
            since: 0,
            epoch: 0,
            seq: 0,
            fingerprint: None,
            hellos: false,
            sent_at: 0,
            last_seq: [0; 64],
            seen: 0,
            counters: SyncCounters::default(),
        }
    }

    /// Whether records are logged (this node is the MASTER and has a peer).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts or stops logging; stopping forgets what waits.
    pub fn set_enabled(&mut self, on: bool) {
        self.set_enabled_at(on, 0);
    }

    /// [`Self::set_enabled`] at tick `now_ms`: starting marks every flow
    /// seen before as not yet described (see [`Self::stale`]).
    pub fn set_enabled_at(&mut self, on: bool, now_ms: u64) {
        if on && !self.enabled {
            self.epoch = now_ms as u32;
        }
        self.enabled = on;
        if !on {
            self.len = 0;
        }
    }

    /// Whether a flow last described at tick `synced`, whose state has a
    /// `timeout`, should be described again now: it was described before
    /// this node started sending (a takeover: the peer, back as BACKUP,
    /// has not heard of it), or longer ago than half its timeout (the
    /// peer's copy, which nothing else refreshes, would expire while the
    /// flow lives on here).
    #[inline]
    pub fn stale(&self, synced: u32, now: u32, timeout: u32) -> bool {
        (synced.wrapping_sub(self.epoch) as i32) < 0 || now.wrapping_sub(synced) >= timeout / 2
    }

    /// Sets the peer's side: `Some(fingerprint)` while a peer is
    /// configured (datagrams carry it, received fingerprints are compared
    /// with it), `None` without one; `hellos`: this log sends them (one
    /// worker of the node does).
    pub fn set_peer(&mut self, fingerprint: Option<u64>, hellos: bool) {
        self.fingerprint = fingerprint;
        self.hellos = hellos;
    }

    /// Records waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a record at tick `now_ms` (no-op while disabled; counted as
    /// lost when full).
    #[inline]
    pub fn push(&mut self, now_ms: u64, r: &Record) {
        if !self.enabled {
            return;
        }
        let cap = self.buf.len() / RECORD_LEN;
        if self.len == cap {
            self.counters.lost += 1;
            return;
        }
        if self.len == 0 {
            self.since = now_ms;
        }
        let off = self.len * RECORD_LEN;
        r.encode(&mut self.buf[off..off + RECORD_LEN]);
        self.len += 1;
    }

    /// Whether a datagram should leave now: a full batch waits, the
    /// oldest record has waited [`FLUSH_MS`], or a hello is due (a peer is
    /// configured and nothing left for [`HELLO_MS`]).
    #[inline]
    pub fn due(&self, now_ms: u64) -> bool {
        self.len >= MAX_RECORDS
            || (self.len > 0 && now_ms.wrapping_sub(self.since) >= FLUSH_MS)
            || self.hello_due(now_ms)
    }

    #[inline]
    fn hello_due(&self, now_ms: u64) -> bool {
        self.hellos && self.fingerprint.is_some() && now_ms.wrapping_sub(self.sent_at) >= HELLO_MS
    }

    /// Writes the next datagram's payload (header and up to
    /// [`MAX_RECORDS`] of the oldest records, or a hello when no record
    /// waits and one is due) into `out` (at least [`MAX_PAYLOAD`] bytes)
    /// and removes those records; returns the payload length (0 when
    /// nothing is to be sent).
    pub fn take_batch(&mut self, out: &mut [u8], worker: u16, now_ms: u64) -> usize {
        let n = self.len.min(MAX_RECORDS);
        if (n == 0 && !self.hello_due(now_ms)) || out.len() < HEADER_LEN + n * RECORD_LEN {
            return 0;
        }
        write_header(out, n, self.seq, worker, self.fingerprint.unwrap_or(0));
        self.seq = self.seq.wrapping_add(1);
        let bytes = n * RECORD_LEN;
        out[HEADER_LEN..HEADER_LEN + bytes].copy_from_slice(&self.buf[..bytes]);
        self.buf.copy_within(bytes..self.len * RECORD_LEN, 0);
        self.len -= n;
        self.since = now_ms;
        self.sent_at = now_ms;
        self.counters.records_sent += n as u64;
        self.counters.batches_sent += 1;
        HEADER_LEN + bytes
    }

    /// The peer cannot be reached at tick `now_ms` (its MAC is not
    /// known yet): the next hello waits [`HELLO_MS`]; records keep
    /// waiting.
    pub fn defer_hello(&mut self, now_ms: u64) {
        self.sent_at = now_ms;
    }

    /// Receiving: notes the header of a datagram from the peer, counts the
    /// datagrams its sequence number says were missed, and compares the
    /// peer's fingerprint with this node's.
    pub fn note_received(&mut self, h: &Header) {
        self.counters.datagrams_received += 1;
        if let Some(fp) = h.fingerprint {
            self.counters.peer_fingerprint = fp;
            if self.fingerprint.is_some_and(|ours| ours != fp) {
                self.counters.config_differs += 1;
            }
        }
        let w = usize::from(h.worker % 64);
        let bit = 1u64 << w;
        if self.seen & bit != 0 {
            let gap = h.seq.wrapping_sub(self.last_seq[w].wrapping_add(1)) as i32;
            // Small forward jumps are losses; anything else (a duplicate,
            // a sender that restarted) is not.
            if gap > 0 && gap < 1 << 20 {
                self.counters.batches_missed += gap as u64;
            }
        }
        self.seen |= bit;
        self.last_seq[w] = h.seq;
    }

    /// Forgets what waits, counting it as lost, and skips the hello due
    /// at tick `now_ms` (there is no way to the peer).
    pub fn discard(&mut self, now_ms: u64) {
        self.counters.lost += self.len as u64;
        self.len = 0;
        self.sent_at = now_ms;
    }
}

/// Words per record in an [`Inbox`] slot.
const WORDS: usize = RECORD_LEN / 8;
const _: () = assert!(WORDS * 8 == RECORD_LEN);

/// A bounded single-producer single-consumer queue of encoded records
/// between two workers, lock-free and allocation-free after
/// [`Inbox::new`], in safe Rust: a slot is `RECORD_LEN / 8` atomic words
/// written with relaxed stores and published by a release store of the
/// tail (the consumer's acquire load of the tail makes them visible; its
/// release store of the head hands the slots back).
///
/// Used when a node runs several workers: the worker that receives a sync
/// datagram applies each record to its own tables and pushes it to every
/// other worker's inbox; each worker drains its inboxes between bursts.
/// So every worker's table holds every synced flow, whichever worker the
/// NIC's RSS hands the flow's packets to after a takeover (both directions
/// of a NAT flow may even reach different workers).
pub struct Inbox {
    slots: Box<[[std::sync::atomic::AtomicU64; WORDS]]>,
    /// Next slot to read (consumer).
    head: std::sync::atomic::AtomicUsize,
    /// Next slot to write (producer).
    tail: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("capacity", &self.slots.len())
            .finish()
    }
}

/// Records an inbox holds.
pub const INBOX_CAPACITY: usize = 2048;

impl Inbox {
    /// An inbox of `capacity` records.
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            slots: (0..capacity.max(1))
                .map(|_| std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)))
                .collect(),
            head: std::sync::atomic::AtomicUsize::new(0),
            tail: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Producer: queues one encoded record (`rec` of at least
    /// [`RECORD_LEN`] bytes); `false` when full (or `rec` is short).
    pub fn push(&self, rec: &[u8]) -> bool {
        use std::sync::atomic::Ordering;
        let Some(rec) = rec.get(..RECORD_LEN) else {
            return false;
        };
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= self.slots.len() {
            return false;
        }
        let slot = &self.slots[tail % self.slots.len()];
        for (w, chunk) in slot.iter().zip(rec.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: takes the oldest record into `out`; `false` when empty.
    pub fn pop(&self, out: &mut [u8; RECORD_LEN]) -> bool {
        use std::sync::atomic::Ordering;
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return false;
        }
        let slot = &self.slots[head % self.slots.len()];
        for (w, chunk) in slot.iter().zip(out.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }
}

/// Where and how this node syncs, as the snapshot tells the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSpec {
    /// The peer's address on the `[ha]` port.
    pub peer: IpAddr,
    /// UDP port, both ends.
    pub port: u16,
    /// Whether this node sends flow records (it is the MASTER). Every
    /// node receives, and sends hellos.
    pub send: bool,
    /// This node's service-set fingerprint, carried by every datagram.
    pub fingerprint: u64,
}

/// Writes an Ethernet + IPv4 + UDP frame around `payload` (already at
/// `frame[42..42 + len]`) into `frame[..42]`; returns the frame length.
/// `frame` must hold at least `42 + len` bytes.
pub fn write_udp4_frame(
    frame: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    len: usize,
    ident: u16,
) -> usize {
    use crate::packet::checksum;
    let total = 20 + 8 + len;
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = crate::packet::ip_proto::UDP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&src.0.octets());
    ip[16..20].copy_from_slice(&dst.0.octets());
    let c = checksum::ipv4_header_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp_len = (8 + len) as u16;
    {
        let u = &mut frame[34..42];
        u[0..2].copy_from_slice(&src.1.to_be_bytes());
        u[2..4].copy_from_slice(&dst.1.to_be_bytes());
        u[4..6].copy_from_slice(&udp_len.to_be_bytes());
        u[6..8].copy_from_slice(&[0, 0]);
    }
    let pseudo = checksum::pseudo_header_v4(src.0, dst.0, crate::packet::ip_proto::UDP, udp_len);
    let mut c = checksum::transport_checksum(pseudo, &frame[34..42 + len], 6);
    if c == 0 {
        c = 0xffff;
    }
    frame[40..42].copy_from_slice(&c.to_be_bytes());
    14 + total
}

#[cfg(test)]
mod tests;
