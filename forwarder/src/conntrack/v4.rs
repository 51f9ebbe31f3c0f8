//! The table as the burst path sees it: IPv4 flows without the
//! address-family agnostic [`FlowKey`].
//!
//! * [`ConnTable::hash_v4`] and its parts ([`ConnTable::hash_v4_wire`],
//!   [`ConnTable::hash_v4_client`], [`ConnTable::hash_v4_vport`]): the
//!   same 32-bit hash [`ConnTable::hash`] gives the equivalent
//!   [`FlowKey`], so flows inserted by either path are found by both;
//! * [`ConnTable::candidate`] and [`ConnTable::plain_v4`]: the cell a
//!   lookup will most likely compare (to prefetch), then a live,
//!   unexpired flow whose real is IPv4, read-only, so that a frame that is
//!   not a plain hit goes to the general path untouched (an expired flow
//!   is left for [`ConnTable::lookup`] to free);
//! * [`ConnTable::probe_v4`]: the same lookup by key, telling a table
//!   without the flow from an expired one;
//! * for a NAT reply (`real -> client`, both IPv4):
//!   [`ConnTable::hash_reply_v4`], [`ConnTable::reply_candidate`] and
//!   [`ConnTable::plain_reply_v4`].

use std::net::Ipv4Addr;

use super::{is_expired, F_NAT, F_REAL_V6, F_SNAT, PROTO_SHIFT};
use super::{ConnTable, FlowId, FlowKey, Nat, State, F_CLIENT_V6, F_LIVE, L4};
use crate::service::RealIdx;

/// Forward key of an IPv4 flow (client -> VIP); see [`FlowKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    /// Control-plane id of the service.
    pub service: u32,
    /// Client address.
    pub client: Ipv4Addr,
    /// Client port.
    pub client_port: u16,
    /// Destination port on the VIP.
    pub vport: u16,
    /// Protocol.
    pub proto: L4,
}

impl FlowKeyV4 {
    /// The general form of this key.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            service: self.service,
            client: self.client.into(),
            client_port: self.client_port,
            vport: self.vport,
            proto: self.proto,
        }
    }
}

/// What the fast path needs of a live IPv4 flow (a copy: valid until
/// the next call that can free entries, like [`FlowId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HitV4 {
    /// The flow.
    pub id: FlowId,
    /// Real address.
    pub real: Ipv4Addr,
    /// Real port.
    pub real_port: u16,
    /// Real index hint.
    pub real_hint: RealIdx,
    /// Reply handling.
    pub nat: Nat,
    /// State.
    pub state: State,
    /// When the flow was last described to the HA peer (ticks).
    pub synced: u32,
}

impl ConnTable {
    /// [`Self::hash`] of `k.key()`, without the 16-byte address form.
    #[inline(always)]
    pub fn hash_v4(&self, k: &FlowKeyV4) -> u32 {
        self.hash_v4_parts(
            u32::from(k.client),
            k.service,
            k.client_port,
            k.vport,
            k.proto.code(),
        )
    }

    /// [`Self::hash_v4`], with the service's part precomputed
    /// ([`Self::service_part`]), of the key of an IPv4 TCP/UDP frame to a
    /// service's VIP: `client` its source address, `ports` its source and
    /// destination ports, as on the wire.
    #[inline(always)]
    pub fn hash_v4_wire(&self, client: &[u8; 4], ports: &[u8; 4], service_part: u32) -> u32 {
        self.tz.v4_src_ports_bytes(client, ports) ^ service_part
    }

    /// [`Self::hash_v4_wire`] in two parts: this one of the client's
    /// address and port, [`Self::hash_v4_vport`] of the VIP's port (the
    /// hash is linear: `hash_v4_wire(client, ports, part)` is
    /// `hash_v4_client(..) ^ hash_v4_vport(k.vport) ^ part`).
    #[inline(always)]
    pub fn hash_v4_client(&self, client: u32, client_port: u16) -> u32 {
        self.tz.v4_src_sport(client, client_port)
    }

    /// The VIP port's part of the hash (see [`Self::hash_v4_client`]).
    #[inline(always)]
    pub fn hash_v4_vport(&self, vport: u16) -> u32 {
        self.tz.v4_dport(vport)
    }

    /// The live, unexpired flow of `k` if its real is IPv4; `None` for a
    /// miss, an expired flow (left for [`Self::lookup`] to free) or an
    /// IPv6 real. `hash` as for [`Self::lookup`]. Reads only.
    #[cfg(test)]
    pub fn find_v4(&self, now: u32, k: &FlowKeyV4, hash: u32) -> Option<HitV4> {
        self.probe_v4(now, k, hash).ok()
    }

    /// `find_v4`, telling apart why there is no hit: `Err(true)`
    /// when the table holds no flow of `k` at all (an insert needs no
    /// lookup first), `Err(false)` for an expired flow or an IPv6 real.
    #[inline(always)]
    pub fn probe_v4(&self, now: u32, k: &FlowKeyV4, hash: u32) -> Result<HitV4, bool> {
        let client = u32::from(k.client);
        let proto = k.proto.code();
        let cells = &self.cells;
        // An IPv4 client is all in `a` (the family bit tells it apart).
        let Some(s) = self.fwd.find(
            hash,
            #[inline(always)]
            |s| {
                let e = &cells[s as usize];
                e.flags & (F_LIVE | F_CLIENT_V6) == F_LIVE
                    && e.a == client
                    && e.service == k.service
                    && e.client_port == k.client_port
                    && e.vport == k.vport
                    && e.proto() == proto
            },
        ) else {
            return Err(true);
        };
        let e = &self.cells[s as usize];
        if is_expired(e.expiry, now) || e.flags & F_REAL_V6 != 0 {
            return Err(false);
        }
        // No IPv6 address: no extension, the real is in `b`.
        let r = e.b;
        Ok(HitV4 {
            id: FlowId(s),
            real: Ipv4Addr::from(r),
            real_port: e.real_port,
            real_hint: RealIdx(e.real_hint),
            nat: if e.flags & F_SNAT != 0 {
                Nat::Snat(e.snat_port)
            } else if e.flags & F_NAT != 0 {
                Nat::Nat
            } else {
                Nat::None
            },
            state: e.state(),
            synced: e.synced,
        })
    }
}

/// The forward key of an IPv4 flow in the words the burst path reads off
/// the frame (see [`ConnTable::plain_v4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireKeyV4 {
    /// Client address.
    pub client: u32,
    /// Control-plane id of the service.
    pub service: u32,
    /// Client port.
    pub client_port: u16,
    /// Destination port on the VIP.
    pub vport: u16,
    /// Protocol.
    pub proto: L4,
}

/// A flow the burst path may forward on its own: live, unexpired, both
/// addresses IPv4, no source NAT (see [`ConnTable::plain_v4`]). A copy,
/// valid as [`HitV4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainV4 {
    /// The flow.
    pub id: FlowId,
    /// Real address.
    pub real: u32,
    /// Real port.
    pub real_port: u16,
    /// Real index hint.
    pub real_hint: u16,
    /// State.
    pub state: State,
    /// When the flow was last described to the HA peer (ticks).
    pub synced: u32,
}

impl ConnTable {
    /// The head cell of the first entry in the home bucket of `hash`
    /// whose tag matches, or `u32::MAX`: where the flow most likely is,
    /// to prefetch ([`Self::cell_addr`]) and to try first
    /// ([`Self::plain_v4`]). Reads the bucket, nothing else.
    #[inline(always)]
    pub fn candidate(&self, hash: u32) -> u32 {
        self.fwd.first_candidate_swar(hash)
    }

    /// The address of cell `slot` (for a prefetch; null past the slab).
    #[inline(always)]
    pub fn cell_addr(&self, slot: u32) -> *const u8 {
        match self.cells.get(slot as usize) {
            Some(c) => std::ptr::from_ref(c).cast(),
            None => std::ptr::null(),
        }
    }

    /// The flow of `k` when it is a live, unexpired flow with an IPv4
    /// real and no source NAT: what [`Self::probe_v4`] finds as a hit,
    /// less source-NAT flows. Looks at `candidate` first (from
    /// [`Self::candidate`], possibly stale: it counts only if its cell
    /// holds `k`), then probes with `hash`. `None` for a miss, an
    /// expired flow, an IPv6 real or a source-NAT flow. Reads only.
    #[inline(always)]
    pub fn plain_v4(&self, now: u32, candidate: u32, hash: u32, k: &WireKeyV4) -> Option<PlainV4> {
        let cells = &self.cells;
        let proto = k.proto.code() << PROTO_SHIFT;
        let ports = u32::from(k.client_port) | (u32::from(k.vport) << 16);
        // Live, an IPv4 client, the protocol: one compare of the flags.
        let is_key = |e: &super::Cell| {
            (e.flags & (F_LIVE | F_CLIENT_V6 | 0xc0) == F_LIVE | proto)
                & (e.a == k.client)
                & (e.service == k.service)
                & ((u32::from(e.client_port) | (u32::from(e.vport) << 16)) == ports)
        };
        let (s, e) = match cells.get(candidate as usize) {
            Some(e) if is_key(e) => (candidate, e),
            _ => {
                let s = self.fwd.find(hash, |s| is_key(&cells[s as usize]))?;
                (s, &cells[s as usize])
            }
        };
        if e.flags & (F_REAL_V6 | F_SNAT) != 0 || is_expired(e.expiry, now) {
            return None;
        }
        Some(PlainV4 {
            id: FlowId(s),
            real: e.b,
            real_port: e.real_port,
            real_hint: e.real_hint,
            state: e.state(),
            synced: e.synced,
        })
    }
}

/// What the fast path needs of a live IPv4 NAT flow found by a reply
/// (a copy, valid as [`HitV4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyV4 {
    /// The flow.
    pub id: FlowId,
    /// Control-plane id of its service.
    pub service: u32,
    /// Destination port on the VIP (the reply's new source port).
    pub vport: u16,
    /// State.
    pub state: State,
    /// When the flow was last described to the HA peer (ticks).
    pub synced: u32,
}

/// The reply side of the fast path: a NAT reply `real:real_port ->
/// client:client_port` with both addresses IPv4, without building the
/// [`ReplyKey`](super::ReplyKey). Self-contained: it reads the reply
/// index and the entries as [`ConnTable::lookup_reply`] does.
impl ConnTable {
    /// [`Self::hash_reply`] of the [`ReplyKey::Nat`](super::ReplyKey::Nat)
    /// of these IPv4 values.
    #[inline]
    pub fn hash_reply_v4(
        &self,
        real: Ipv4Addr,
        real_port: u16,
        client: Ipv4Addr,
        client_port: u16,
        proto: L4,
    ) -> u32 {
        self.hash_reply_v4_parts(
            u32::from(real),
            real_port,
            u32::from(client),
            client_port,
            proto.code(),
        )
    }

    /// The live, unexpired plain-NAT flow (IPv4 client and real) whose
    /// replies are `real:real_port -> client:client_port`; `None` for a
    /// miss or an expired flow (left for [`Self::lookup_reply`] to free).
    /// `hash` as for [`Self::lookup_reply`]. Reads only.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub fn find_reply_v4(
        &self,
        now: u32,
        real: Ipv4Addr,
        real_port: u16,
        client: Ipv4Addr,
        client_port: u16,
        proto: L4,
        hash: u32,
    ) -> Option<ReplyV4> {
        let (real, client) = (u32::from(real), u32::from(client));
        let proto = proto.code();
        let cells = &self.cells;
        // The same match as `PReply::matches` of an IPv4 NAT key: no IPv6
        // address, so no extension; client in `a`, real in `b`.
        let s = self.rev.find(
            hash,
            #[inline(always)]
            |s| {
                let e = &cells[s as usize];
                e.flags & (F_LIVE | F_NAT | F_SNAT | F_REAL_V6 | F_CLIENT_V6) == F_LIVE | F_NAT
                    && e.b == real
                    && e.a == client
                    && e.real_port == real_port
                    && e.client_port == client_port
                    && e.proto() == proto
            },
        )?;
        reply_hit(s, &self.cells[s as usize], now)
    }

    /// [`Self::candidate`] for the reply index.
    #[inline(always)]
    pub fn reply_candidate(&self, hash: u32) -> u32 {
        self.rev.first_candidate_swar(hash)
    }

    /// `find_reply_v4` that looks at `candidate` first (from
    /// [`Self::reply_candidate`], possibly stale: it counts only if its
    /// cell is the reply key's flow), then probes with `hash`. Reads only.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn plain_reply_v4(
        &self,
        now: u32,
        candidate: u32,
        hash: u32,
        real: u32,
        real_port: u16,
        client: u32,
        client_port: u16,
        proto: L4,
    ) -> Option<ReplyV4> {
        let proto = proto.code() << PROTO_SHIFT;
        let cells = &self.cells;
        // `find_reply_v4`'s match, in one compare of the flags.
        let is_key = |e: &super::Cell| {
            (e.flags & (F_LIVE | F_NAT | F_SNAT | F_REAL_V6 | F_CLIENT_V6 | 0xc0)
                == F_LIVE | F_NAT | proto)
                & (e.b == real)
                & (e.a == client)
                & (e.real_port == real_port)
                & (e.client_port == client_port)
        };
        let (s, e) = match cells.get(candidate as usize) {
            Some(e) if is_key(e) => (candidate, e),
            _ => {
                let s = self.rev.find(hash, |s| is_key(&cells[s as usize]))?;
                (s, &cells[s as usize])
            }
        };
        reply_hit(s, e, now)
    }
}

/// The reply lookups' answer for the flow at cell `s` (`e`), unless it
/// has expired.
#[inline(always)]
fn reply_hit(s: u32, e: &super::Cell, now: u32) -> Option<ReplyV4> {
    if is_expired(e.expiry, now) {
        return None;
    }
    Some(ReplyV4 {
        id: FlowId(s),
        service: e.service,
        vport: e.vport,
        state: e.state(),
        synced: e.synced,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::conntrack::{FlowValue, Lookup, ReplyKey};

    fn key(i: u32) -> FlowKeyV4 {
        FlowKeyV4 {
            service: 7 + i % 3,
            client: Ipv4Addr::from(0xc633_6400 + i),
            client_port: 1024 + i as u16,
            vport: 80 + (i & 1) as u16,
            proto: if i & 3 == 0 { L4::Udp } else { L4::Tcp },
        }
    }

    fn value(i: u32, nat: Nat) -> FlowValue {
        FlowValue {
            real: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + (i % 8) as u8)),
            real_port: 8080,
            real_hint: RealIdx((i % 8) as u16),
            nat,
            state: State::Established,
            profile: 0,
        }
    }

    #[test]
    fn same_hash_and_flow_as_the_general_path() {
        let mut t = ConnTable::with_capacity(4096);
        for i in 0..2000 {
            let k = key(i);
            assert_eq!(t.hash_v4(&k), t.hash(&k.key()), "{k:?}");
            let nat = match i % 3 {
                0 => Nat::None,
                1 => Nat::Nat,
                _ => Nat::Snat(40_000 + i as u16),
            };
            let h = t.hash(&k.key());
            t.insert(10, &k.key(), h, &value(i, nat), |_| {}).unwrap();
        }
        for i in 0..2000 {
            let k = key(i);
            let h = t.hash_v4(&k);
            let hit = t.find_v4(10, &k, h).unwrap();
            let id = t.lookup(10, &k.key(), h).hit().unwrap();
            let e = t.entry(id);
            assert_eq!(hit.id, id);
            assert_eq!(IpAddr::V4(hit.real), e.real());
            assert_eq!(hit.real_port, e.real_port());
            assert_eq!(hit.real_hint, e.real_hint());
            assert_eq!(hit.nat, e.nat());
            assert_eq!(hit.state, e.state());
            assert_eq!(hit.synced, e.synced());
        }
        // Another client, port or service: a miss, and known absent.
        let mut k = key(5);
        k.client_port ^= 1;
        assert_eq!(t.find_v4(10, &k, t.hash_v4(&k)), None);
        assert_eq!(t.probe_v4(10, &k, t.hash_v4(&k)), Err(true));
        t.check_invariants();
    }

    #[test]
    fn expired_flows_and_ipv6_reals_are_left_to_the_general_path() {
        let mut t = ConnTable::with_capacity(64);
        let k = key(1);
        let h = t.hash_v4(&k);
        t.insert(0, &k.key(), h, &value(1, Nat::None), |_| {})
            .unwrap();
        let timeout = t.config().timeouts.established;
        assert!(t.find_v4(timeout - 1, &k, h).is_some());
        // Expired: not reported, not freed, not absent.
        assert_eq!(t.find_v4(timeout, &k, h), None);
        assert_eq!(t.probe_v4(timeout, &k, h), Err(false));
        assert_eq!(t.len(), 1);
        assert!(matches!(t.lookup(timeout, &k.key(), h), Lookup::Expired(_)));
        assert_eq!(t.len(), 0);

        let k = key(2);
        let h = t.hash_v4(&k);
        let v6 = FlowValue {
            real: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
            ..value(2, Nat::None)
        };
        t.insert(0, &k.key(), h, &v6, |_| {}).unwrap();
        assert_eq!(t.find_v4(1, &k, h), None);
        assert_eq!(t.probe_v4(1, &k, h), Err(false));
        assert!(t.lookup(1, &k.key(), h).hit().is_some());
    }

    #[test]
    fn reply_hash_and_flow_as_the_general_path() {
        let mut t = ConnTable::with_capacity(4096);
        let rkey = |e: &crate::conntrack::Entry| ReplyKey::Nat {
            real: e.real(),
            real_port: e.real_port(),
            client: e.client(),
            client_port: e.client_port(),
            proto: e.proto(),
        };
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        };
        for i in 0..2000 {
            let k = key(i);
            let nat = match i % 3 {
                0 => Nat::None,
                1 => Nat::Nat,
                _ => Nat::Snat(40_000 + i as u16),
            };
            let h = t.hash(&k.key());
            t.insert(10, &k.key(), h, &value(i, nat), |_| {}).unwrap();
        }
        let mut found = 0;
        for i in 0..2000 {
            let k = key(i);
            let id = t.lookup(10, &k.key(), t.hash(&k.key())).hit().unwrap();
            let e = t.entry(id);
            let rk = rkey(&e);
            let (real, client) = (v4(e.real()), v4(e.client()));
            let (rp, cp, proto) = (e.real_port(), e.client_port(), e.proto());
            let h = t.hash_reply_v4(real, rp, client, cp, proto);
            assert_eq!(h, t.hash_reply(&rk), "{rk:?}");
            let fast = t.find_reply_v4(10, real, rp, client, cp, proto, h);
            // Found by both for a NAT flow; by neither for DR (no reply
            // index entry) or SNAT (replies come to the local port).
            match t.lookup_reply(10, &rk, h) {
                Lookup::Hit(gid) => {
                    let hit = fast.unwrap();
                    found += 1;
                    assert_eq!(hit.id, gid);
                    assert_eq!(e.nat(), Nat::Nat);
                    assert_eq!(hit.service, e.service());
                    assert_eq!(hit.vport, e.vport());
                    assert_eq!(hit.state, e.state());
                    assert_eq!(hit.synced, e.synced());
                }
                Lookup::Miss => assert_eq!(fast, None, "{rk:?}"),
                Lookup::Expired(_) => unreachable!(),
            }
            // Another port or address: a miss on both.
            for (r, c, p) in [
                (real, client, cp ^ 1),
                (real, Ipv4Addr::from(u32::from(client) ^ 1), cp),
                (Ipv4Addr::from(u32::from(real) ^ 1), client, cp),
            ] {
                let h = t.hash_reply_v4(r, rp, c, p, proto);
                assert_eq!(t.find_reply_v4(10, r, rp, c, p, proto, h), None);
            }
        }
        assert_eq!(found, 667);
        t.check_invariants();
    }

    #[test]
    fn expired_replies_are_left_to_the_general_path() {
        let mut t = ConnTable::with_capacity(64);
        let k = key(1);
        t.insert(0, &k.key(), t.hash(&k.key()), &value(1, Nat::Nat), |_| {})
            .unwrap();
        let real = Ipv4Addr::new(192, 0, 2, 11);
        let rk = ReplyKey::Nat {
            real: IpAddr::V4(real),
            real_port: 8080,
            client: IpAddr::V4(k.client),
            client_port: k.client_port,
            proto: k.proto,
        };
        let h = t.hash_reply_v4(real, 8080, k.client, k.client_port, k.proto);
        assert_eq!(h, t.hash_reply(&rk));
        let timeout = t.config().timeouts.established;
        assert!(t
            .find_reply_v4(timeout - 1, real, 8080, k.client, k.client_port, k.proto, h)
            .is_some());
        // Expired: not reported, not freed.
        assert_eq!(
            t.find_reply_v4(timeout, real, 8080, k.client, k.client_port, k.proto, h),
            None
        );
        assert_eq!(t.len(), 1);
        assert!(matches!(
            t.lookup_reply(timeout, &rk, h),
            Lookup::Expired(_)
        ));
        assert_eq!(t.len(), 0);
    }
}
