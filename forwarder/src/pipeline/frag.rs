//! The per-worker fragment table: later fragments follow the first.
//!
//! Only the first fragment of a datagram (offset 0) carries the TCP/UDP
//! header the balancer needs to find the flow. When it is balanced (or
//! translated back as a NAT reply), the decision is remembered here under
//! the datagram's identity, RFC 791's (source, destination, protocol,
//! identification) for IPv4 and RFC 8200's (source, destination,
//! identification) for IPv6; the later fragments look it up and are sent
//! the same way. The balancer never reassembles.
//!
//! * Fixed capacity, set associative (4 ways), allocated by
//!   [`FragTable::new`]; nothing allocates afterwards.
//! * An entry lives at most `timeout` ticks from its first fragment (not
//!   refreshed; 2 s in the pipeline), and is freed early once the
//!   fragment carrying the end of the datagram (MF clear) has been seen
//!   and as many payload bytes as the datagram holds have passed. A
//!   duplicated fragment counts twice, so it can end an entry before a
//!   genuine fragment arrives; that fragment is then dropped like any
//!   fragment without state. A full set evicts the entry closest to its
//!   deadline.
//! * Fragments that arrive before the first have no entry and are
//!   dropped (the balancer does not queue them; DPVS behaves the same
//!   without reassembly). The sender's retransmission, or the first
//!   fragment's arrival for the following datagrams, restores service.

use std::net::IpAddr;

use super::{hairpin, rewrite, send, Ctx, DropReason, IpInfo, Outcome, PortInfo, Tables};
use crate::buffer::PacketBuf;
use crate::conntrack::is_expired;
use crate::service::hash::{addr16, flow_hash, fmix64, fold};
use crate::service::RealIdx;

/// Entries per worker.
pub const FRAG_CAPACITY: usize = 4096;
/// Lifetime of an entry, in pipeline ticks (ms).
pub const FRAG_TIMEOUT_MS: u32 = 2000;

const WAYS: usize = 4;

/// What a fragment says about itself (from the classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frag {
    /// Identification (IPv4: 16 bits).
    pub(crate) ident: u32,
    /// Offset of this fragment's data in the datagram, in bytes.
    pub(crate) offset: u16,
    /// More fragments follow.
    pub(crate) more: bool,
    /// Bytes of fragmentable data this fragment carries.
    pub(crate) len: u16,
}

impl Frag {
    /// The fragment that starts the datagram (carries the L4 header).
    #[inline]
    pub(crate) fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// Identity of a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    ident: u32,
    proto: u8,
    v6: bool,
}

impl FragKey {
    /// The key of a datagram. IPv6 identifies fragments without the
    /// protocol (RFC 8200 §4.5), so `proto` is ignored there.
    #[inline]
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, ident: u32) -> FragKey {
        let (s, v6) = addr16(src);
        let (d, _) = addr16(dst);
        FragKey {
            src: s,
            dst: d,
            ident,
            proto: if v6 { 0 } else { proto },
            v6,
        }
    }

    #[inline]
    fn hash(&self, seed: u64) -> u64 {
        let src = IpAddr::from(self.src);
        let dst = IpAddr::from(self.dst);
        let h = flow_hash(src, 0, dst, 0, self.proto);
        fmix64(fold(
            seed ^ h,
            u64::from(self.ident) | (u64::from(self.v6) << 32),
        ))
    }
}

/// Where the later fragments of a datagram go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragFwd {
    /// Client → real, in the service's mode. NAT: the destination becomes
    /// the real; `snat`: the source becomes the balancer's address facing
    /// the real (hairpin flows).
    ToReal {
        /// Source-NAT the fragments too.
        snat: bool,
    },
    /// Real → client (NAT replies): the source becomes the VIP; for SNAT
    /// flows the destination becomes `client`.
    ToClient {
        /// The client, for SNAT flows.
        client: Option<IpAddr>,
    },
    /// This worker handed the first fragment to worker `to`, which owns
    /// the flow ([`crate::steer`]): the later fragments follow it there
    /// (`si` and `real` mean nothing).
    Handoff {
        /// The owner.
        to: u16,
    },
}

/// The decision taken for the first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragValue {
    /// Service index in the snapshot.
    pub si: u32,
    /// The real the flow is bound to.
    pub real: RealIdx,
    /// Direction and translation.
    pub fwd: FragFwd,
}

/// Event counters of a [`FragTable`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragCounters {
    /// First fragments recorded.
    pub inserts: u64,
    /// Later fragments that found their entry.
    pub hits: u64,
    /// Later fragments that found none (dropped).
    pub misses: u64,
    /// Entries freed because every byte of the datagram passed.
    pub completed: u64,
    /// Entries freed at their deadline.
    pub expired: u64,
    /// Live entries evicted by a full set.
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FragKey,
    value: FragValue,
    expiry: u32,
    /// Fragment payload bytes seen.
    seen: u32,
    /// End of the datagram (offset + length of the MF-clear fragment);
    /// 0 until that fragment is seen.
    end: u32,
    live: bool,
}

const EMPTY: Slot = Slot {
    key: FragKey {
        src: [0; 16],
        dst: [0; 16],
        ident: 0,
        proto: 0,
        v6: false,
    },
    value: FragValue {
        si: 0,
        real: RealIdx(0),
        fwd: FragFwd::ToReal { snat: false },
    },
    expiry: 0,
    seen: 0,
    end: 0,
    live: false,
};

/// A fixed-size table of fragmented datagrams in flight.
#[derive(Debug)]
pub struct FragTable {
    slots: Box<[Slot]>,
    set_mask: usize,
    timeout: u32,
    seed: u64,
    counters: FragCounters,
}

impl FragTable {
    /// A table of at least `capacity` entries (rounded up to a power of
    /// two, at least one set), whose entries live `timeout` ticks.
    pub fn new(capacity: usize, timeout: u32) -> FragTable {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        FragTable {
            slots: vec![EMPTY; sets * WAYS].into_boxed_slice(),
            set_mask: sets - 1,
            timeout,
            seed: 0x6672_6167_7461_626c, // "fragtabl"
            counters: FragCounters::default(),
        }
    }

    /// Entries the table holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Live (possibly expired, not yet freed) entries; O(capacity).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count()
    }

    /// Whether no entry is live; O(capacity).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event counters.
    pub fn counters(&self) -> FragCounters {
        self.counters
    }

    #[inline]
    fn set(&self, key: &FragKey) -> usize {
        (key.hash(self.seed) as usize & self.set_mask) * WAYS
    }

    /// Records the decision for a datagram whose first fragment (carrying
    /// `first_len` bytes of data) was just sent. Replaces an entry of the
    /// same key (a new datagram reusing the identification).
    pub fn insert(&mut self, now: u32, key: &FragKey, value: FragValue, first_len: u32) {
        let base = self.set(key);
        let ways = &mut self.slots[base..base + WAYS];
        let i = ways
            .iter()
            .position(|s| s.live && s.key == *key)
            .or_else(|| {
                ways.iter()
                    .position(|s| !s.live || is_expired(s.expiry, now))
            })
            .unwrap_or_else(|| {
                self.counters.evicted += 1;
                (0..WAYS)
                    .min_by_key(|&i| ways[i].expiry.wrapping_sub(now) as i32)
                    .unwrap_or(0)
            });
        if ways[i].live && ways[i].key != *key && is_expired(ways[i].expiry, now) {
            self.counters.expired += 1;
        }
        ways[i] = Slot {
            key: *key,
            value,
            expiry: now.wrapping_add(self.timeout),
            seen: first_len,
            end: 0,
            live: true,
        };
        self.counters.inserts += 1;
    }

    /// The decision for a later fragment (`offset`, `len` bytes, `more`),
    /// or `None`. Accounts its bytes and frees the entry when the
    /// datagram is complete.
    pub fn lookup(
        &mut self,
        now: u32,
        key: &FragKey,
        offset: u32,
        len: u32,
        more: bool,
    ) -> Option<FragValue> {
        let base = self.set(key);
        let Some(i) = self.slots[base..base + WAYS]
            .iter()
            .position(|s| s.live && s.key == *key)
        else {
            self.counters.misses += 1;
            return None;
        };
        let s = &mut self.slots[base + i];
        if is_expired(s.expiry, now) {
            s.live = false;
            self.counters.expired += 1;
            self.counters.misses += 1;
            return None;
        }
        s.seen = s.seen.saturating_add(len);
        if !more {
            s.end = offset + len;
        }
        let value = s.value;
        if s.end != 0 && s.seen >= s.end {
            s.live = false;
            self.counters.completed += 1;
        }
        self.counters.hits += 1;
        Some(value)
    }

    /// Rewrites every live entry with `f` (after a snapshot swap: service
    /// and real indexes move); entries for which `f` returns `None` are
    /// freed. Off the hot path.
    pub fn remap(&mut self, mut f: impl FnMut(&FragValue) -> Option<FragValue>) {
        for s in self.slots.iter_mut().filter(|s| s.live) {
            match f(&s.value) {
                Some(v) => s.value = v,
                None => s.live = false,
            }
        }
    }
}

impl Tables {
    /// A fragment other than the first: sent as its datagram's first
    /// fragment was, else dropped ([`DropReason::Fragment`]; fragments of
    /// the kernel's own traffic go to the kernel).
    pub(super) fn later_fragment<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let Some(fr) = ip.frag else {
            return Outcome::Dropped(DropReason::Fragment);
        };
        let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
        let now = ctx.now_ms as u32;
        let found = self
            .frags
            .lookup(now, &key, u32::from(fr.offset), u32::from(fr.len), fr.more);
        let Some(v) = found else {
            // Its first fragment may have landed on another worker: ask
            // the next one, until every worker has been asked.
            if let Some(to) = self.steer.probe_next(ctx.hops) {
                return Outcome::handoff(to);
            }
            return if in_port.is_self(ip.dst) {
                Outcome::ToKernel
            } else {
                Outcome::Dropped(DropReason::Fragment)
            };
        };
        if let FragFwd::Handoff { to } = v.fwd {
            return if self.steer.may_hand_on(ctx.hops) {
                Outcome::handoff(to)
            } else {
                Outcome::Dropped(DropReason::Fragment)
            };
        }
        let snap = ctx.snap;
        let si = v.si as usize;
        let Some(svc) = snap.vips.services().get(si) else {
            return Outcome::Dropped(DropReason::Fragment);
        };
        match v.fwd {
            // No L4 header: only addresses change; the port carried by
            // the first fragment needs no repeat (0 is ignored).
            FragFwd::ToReal { snat } => {
                self.deliver(buf, ip, si, v.real, 0, snat.then_some(0), in_port, ctx)
            }
            FragFwd::Handoff { .. } => Outcome::Dropped(DropReason::Fragment),
            FragFwd::ToClient { client } => {
                let vip = svc.spec().vip;
                let frame = buf.data_mut();
                if !rewrite::decrement_ttl(frame, 14) {
                    return Outcome::Dropped(DropReason::TtlExceeded);
                }
                hairpin::set_src(frame, ip, vip);
                if let Some(c) = client {
                    hairpin::set_dst(frame, ip, c);
                }
                let len = frame.len() as u64;
                let c = &mut self.counters[si];
                c.packets_out += 1;
                c.bytes_out += len;
                let Some(route) = snap.route(client.unwrap_or(ip.dst)) else {
                    return Outcome::Dropped(DropReason::NoRoute);
                };
                send(buf, route, snap, ctx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(i: u32) -> FragKey {
        FragKey::new(
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
            17,
            i,
        )
    }

    fn val(r: u16) -> FragValue {
        FragValue {
            si: 0,
            real: RealIdx(r),
            fwd: FragFwd::ToReal { snat: false },
        }
    }

    #[test]
    fn later_fragments_find_the_first_until_the_datagram_is_complete() {
        let mut t = FragTable::new(64, 2000);
        t.insert(0, &key(1), val(3), 1480);
        assert_eq!(t.lookup(1, &key(2), 1480, 1480, true), None);
        assert_eq!(t.lookup(1, &key(1), 2960, 40, false), Some(val(3)));
        // The middle one arrives last (reordered): it completes the entry.
        assert_eq!(t.lookup(2, &key(1), 1480, 1480, true), Some(val(3)));
        assert!(t.is_empty());
        assert_eq!(t.lookup(3, &key(1), 1480, 1480, true), None);
        let c = t.counters();
        assert_eq!((c.inserts, c.hits, c.misses, c.completed), (1, 2, 2, 1));
    }

    #[test]
    fn entries_expire_and_full_sets_evict_the_oldest() {
        let mut t = FragTable::new(4, 2000);
        assert_eq!(t.capacity(), 4);
        t.insert(0, &key(1), val(1), 8);
        assert_eq!(t.lookup(1999, &key(1), 8, 8, true), Some(val(1)));
        assert_eq!(t.lookup(2000, &key(1), 16, 8, true), None);
        for i in 0..4 {
            t.insert(10 + i, &key(10 + i), val(i as u16), 8);
        }
        t.insert(20, &key(99), val(9), 8);
        assert_eq!(t.counters().evicted, 1);
        assert_eq!(t.lookup(21, &key(10), 8, 8, true), None, "oldest evicted");
        assert_eq!(t.lookup(21, &key(99), 8, 8, true), Some(val(9)));
        assert_eq!(t.lookup(21, &key(13), 8, 8, true), Some(val(3)));
    }

    #[test]
    fn ipv6_keys_ignore_the_protocol_and_remap_moves_or_frees() {
        let s: IpAddr = "2001:db8::1".parse().unwrap();
        let d: IpAddr = "2001:db8::100".parse().unwrap();
        assert_eq!(FragKey::new(s, d, 6, 7), FragKey::new(s, d, 44, 7));
        assert_ne!(key(1), FragKey::new(s, d, 17, 1));
        let mut t = FragTable::new(16, 2000);
        t.insert(0, &key(1), val(1), 8);
        t.insert(0, &key(2), val(2), 8);
        t.remap(|v| (v.real.0 == 1).then_some(val(5)));
        assert_eq!(t.lookup(1, &key(1), 8, 8, true), Some(val(5)));
        assert_eq!(t.lookup(1, &key(2), 8, 8, true), None);
    }
}
