//! How a flow is stored: 32-byte cells (a second one for IPv6
//! addresses), their flags, and the keys the indexes hash.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

pub(super) const F_LIVE: u8 = 1;
pub(super) const F_CLIENT_V6: u8 = 2;
pub(super) const F_REAL_V6: u8 = 4;
pub(super) const F_NAT: u8 = 8;
pub(super) const F_SNAT: u8 = 16;
/// An extension cell (the addresses of an IPv6 flow), never live itself.
pub(super) const F_EXT: u8 = 32;
/// The protocol code sits in the top two bits of `flags`.
pub(super) const PROTO_SHIFT: u8 = 6;

/// One 32-byte cell of the slab: two per cache line.
///
/// A flow whose client and real are both IPv4 is one **head** cell:
///
/// ```text
/// off size field
///   0   4  client IPv4 address        4  4  real IPv4 address
///   8   4  service id (next free cell while on the free list)
///  12   4  expiry (ticks)             16  4  tick of the last sync record
///  20   2  client port   22 2 VIP port   24 2 real port   26 2 SNAT port
///  28   2  real index hint            30  1  state
///  31   1  flags: live, client v6, real v6, NAT, SNAT, extension; protocol
/// ```
///
/// A flow with an IPv6 address (client or real) takes a second,
/// **extension** cell for its addresses: the head keeps the last four
/// bytes of the client's 16-byte form in `a` (a cheap first compare) and
/// the extension's index in `b`; the extension holds the client's first
/// 12 bytes and the real's 16 (28 bytes over the fields up to the SNAT
/// port) and is marked `F_EXT`, never `F_LIVE`. IPv4 addresses in an
/// IPv6 flow are kept v4-mapped, the family in `flags`.
///
/// The forward hash is not stored: it is the table's hash of the key,
/// recomputed when the flow is freed. The real index is only a hint:
/// after a snapshot swap the worker checks it against the stored real
/// address (`Service::resolve_target`).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub(super) struct Cell {
    pub(super) a: u32,
    pub(super) b: u32,
    pub(super) service: u32,
    pub(super) expiry: u32,
    pub(super) synced: u32,
    pub(super) client_port: u16,
    pub(super) vport: u16,
    pub(super) real_port: u16,
    pub(super) snat_port: u16,
    pub(super) real_hint: u16,
    pub(super) state: u8,
    pub(super) flags: u8,
}

const _: () = assert!(std::mem::size_of::<Cell>() == 32);

pub(super) const FREE_CELL: Cell = Cell {
    a: 0,
    b: 0,
    service: NIL,
    expiry: 0,
    synced: 0,
    client_port: 0,
    vport: 0,
    real_port: 0,
    snat_port: 0,
    real_hint: 0,
    state: 0,
    flags: 0,
};

impl Cell {
    #[inline]
    pub(super) fn is_live(&self) -> bool {
        self.flags & F_LIVE != 0
    }
    #[inline]
    pub(super) fn has_ext(&self) -> bool {
        self.flags & (F_CLIENT_V6 | F_REAL_V6) != 0
    }
    #[inline]
    pub(super) fn proto(&self) -> u8 {
        self.flags >> PROTO_SHIFT
    }
    #[inline]
    pub(super) fn state(&self) -> State {
        State::from_u8(self.state)
    }
    /// Cells the flow of this head takes.
    #[inline]
    pub(super) fn cells(&self) -> u32 {
        if self.has_ext() {
            2
        } else {
            1
        }
    }

    /// An extension cell holding `client[..12]` and `real`.
    pub(super) fn ext(client: &[u8; 16], real: &[u8; 16]) -> Cell {
        let w = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Cell {
            a: w(client, 0),
            b: w(client, 4),
            service: w(client, 8),
            expiry: w(real, 0),
            synced: w(real, 4),
            client_port: h(real, 8),
            vport: h(real, 10),
            real_port: h(real, 12),
            snat_port: h(real, 14),
            real_hint: 0,
            state: 0,
            flags: F_EXT,
        }
    }
}

/// The two addresses of a flow in their 16-byte forms.
#[inline]
pub(super) fn addrs16(cells: &[Cell], head: &Cell) -> ([u8; 16], [u8; 16]) {
    if !head.has_ext() {
        let c = Ipv4Addr::from(head.a).to_ipv6_mapped().octets();
        let r = Ipv4Addr::from(head.b).to_ipv6_mapped().octets();
        return (c, r);
    }
    let x = &cells[head.b as usize];
    let mut c = [0u8; 16];
    c[0..4].copy_from_slice(&x.a.to_be_bytes());
    c[4..8].copy_from_slice(&x.b.to_be_bytes());
    c[8..12].copy_from_slice(&x.service.to_be_bytes());
    c[12..16].copy_from_slice(&head.a.to_be_bytes());
    let mut r = [0u8; 16];
    r[0..4].copy_from_slice(&x.expiry.to_be_bytes());
    r[4..8].copy_from_slice(&x.synced.to_be_bytes());
    r[8..10].copy_from_slice(&x.client_port.to_be_bytes());
    r[10..12].copy_from_slice(&x.vport.to_be_bytes());
    r[12..14].copy_from_slice(&x.real_port.to_be_bytes());
    r[14..16].copy_from_slice(&x.snat_port.to_be_bytes());
    (c, r)
}

/// The last four bytes of a 16-byte address form.
#[inline]
pub(super) fn low32(b: &[u8; 16]) -> u32 {
    u32::from_be_bytes([b[12], b[13], b[14], b[15]])
}

#[inline]
pub(super) fn from16(b: [u8; 16], v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(b);
    if v6 {
        IpAddr::V6(a)
    } else {
        let o = b;
        IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    }
}

/// A flow as stored (a decoded copy of its cells).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub(super) client: [u8; 16],
    pub(super) real: [u8; 16],
    pub(super) service: u32,
    pub(super) expiry: u32,
    pub(super) synced: u32,
    pub(super) client_port: u16,
    pub(super) vport: u16,
    pub(super) real_port: u16,
    pub(super) snat_port: u16,
    pub(super) real_hint: u16,
    pub(super) proto: u8,
    pub(super) state: u8,
    pub(super) flags: u8,
}

impl Entry {
    pub(super) fn decode(cells: &[Cell], head: &Cell) -> Entry {
        let (client, real) = addrs16(cells, head);
        Entry {
            client,
            real,
            service: head.service,
            expiry: head.expiry,
            synced: head.synced,
            client_port: head.client_port,
            vport: head.vport,
            real_port: head.real_port,
            snat_port: head.snat_port,
            real_hint: head.real_hint,
            proto: head.proto(),
            state: head.state,
            flags: head.flags,
        }
    }
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
    /// Timeout profile (see `ConnTable::set_profiles`).
    pub fn profile(&self) -> u8 {
        self.state >> 3
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
}

/// A key in the stored form.
pub(super) struct PKey {
    pub(super) client: [u8; 16],
    pub(super) service: u32,
    pub(super) client_port: u16,
    pub(super) vport: u16,
    pub(super) proto: u8,
    pub(super) v6: u8,
}

impl PKey {
    #[inline]
    pub(super) fn new(k: &FlowKey) -> Self {
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
    pub(super) fn of_entry(e: &Entry) -> Self {
        Self {
            client: e.client,
            service: e.service,
            client_port: e.client_port,
            vport: e.vport,
            proto: e.proto,
            v6: e.flags & F_CLIENT_V6,
        }
    }

    #[inline]
    pub(super) fn matches(&self, cells: &[Cell], s: u32) -> bool {
        let e = &cells[s as usize];
        if e.flags & (F_LIVE | F_CLIENT_V6) != F_LIVE | self.v6
            || e.a != low32(&self.client)
            || e.service != self.service
            || e.client_port != self.client_port
            || e.vport != self.vport
            || e.proto() != self.proto
        {
            return false;
        }
        // The rest of the client's address: in the extension cell of a
        // flow that has one (IPv4 clients of IPv4 flows match on `a`).
        !e.has_ext() || addrs16(cells, e).0 == self.client
    }
}

/// A reply key in the stored form.
pub(super) struct PReply {
    pub(super) real: [u8; 16],
    pub(super) client: [u8; 16],
    pub(super) real_port: u16,
    /// Client port (NAT) or SNAT port.
    pub(super) port: u16,
    pub(super) proto: u8,
    /// F_SNAT or F_NAT, plus family bits.
    pub(super) flags: u8,
}

impl PReply {
    #[inline]
    pub(super) fn new(k: &ReplyKey) -> Self {
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
    pub(super) fn of_entry(e: &Entry) -> Self {
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
    pub(super) fn matches(&self, cells: &[Cell], s: u32) -> bool {
        let e = &cells[s as usize];
        if !e.is_live() || e.flags & (F_NAT | F_SNAT) == 0 {
            return false;
        }
        if self.flags & F_SNAT != 0 {
            if e.flags & (F_SNAT | F_REAL_V6) != self.flags
                || e.real_port != self.real_port
                || e.snat_port != self.port
                || e.proto() != self.proto
            {
                return false;
            }
            if e.has_ext() {
                addrs16(cells, e).1 == self.real
            } else {
                e.b == low32(&self.real)
            }
        } else {
            if e.flags & (F_NAT | F_SNAT | F_REAL_V6 | F_CLIENT_V6) != self.flags
                || e.real_port != self.real_port
                || e.client_port != self.port
                || e.proto() != self.proto
            {
                return false;
            }
            if e.has_ext() {
                addrs16(cells, e) == (self.client, self.real)
            } else {
                e.a == low32(&self.client) && e.b == low32(&self.real)
            }
        }
    }

    /// The hash of a key [`ConnTable::reply_hash`] does not give to
    /// Toeplitz.
    #[inline]
    pub(super) fn hash_wide(&self, seed: u64) -> u32 {
        let r = u128::from_be_bytes(self.real);
        let mut h = mx(seed ^ REPLY_SEED, (r >> 64) as u64);
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
