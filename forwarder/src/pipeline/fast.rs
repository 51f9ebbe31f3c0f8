//! The IPv4 fast path: the packet that makes up nearly all of a
//! balancer's traffic, a TCP segment or UDP datagram of an established
//! flow to an IPv4 VIP, handled in 32-bit arithmetic on the frame's bytes.
//!
//! [`Tables::fast_v4`] runs first for every frame. It either gives the
//! frame's final [`Outcome`], exactly as the general path would (same
//! bytes written, same counters, same table and sync-log changes), or
//! returns `None` having changed nothing, and the general path
//! ([`Tables::handle`]) decides. It answers only when every check the
//! general path makes holds on a cheap test:
//!
//! * Ethernet: unicast destination MAC, a unicast non-zero source, type
//!   IPv4 (so no VLAN tag);
//! * IPv4: a 20-byte header (no options) with a valid checksum, not a
//!   fragment (DF allowed), the whole packet in the frame, TCP or UDP;
//! * not martian: the source is not this port's own address or subnet
//!   broadcast, not 0/8, 127/8 or 224/3, not the destination; the
//!   destination is not the port's own address;
//! * L4: the header inside the IP packet, a sane TCP data offset and
//!   flag combination;
//! * a VIP service, and a live flow in the connection table whose real
//!   still takes it ([`Service::keeps_flow`](crate::service::Service::keeps_flow)),
//!   reached on an IPv4 route; for NAT the TTL allows a hop, for TUN the
//!   encapsulated packet fits the MTU.
//!
//! A frame past these checks that is not a plain hit (a new flow, an
//! expired one, a real gone, a TTL at its end, a tunnel too big) goes
//! straight to the general path's balancing step, without a second
//! parse. A frame that matches no service may be a NAT reply: see
//! [`fast_reply`](super::fast_reply). SNAT replies, fragments, ICMP,
//! IPv6, ARP and everything odd take the general path from the start.
//! The equivalence is tested frame by frame against the general path
//! (`tests::fast_path_*`) and fuzzed.

use std::net::{IpAddr, Ipv4Addr};

use super::{
    finish_send, ip_proto, rewrite, Ctx, DropReason, IpInfo, Outcome, Route, Snapshot, Tables,
};
use crate::buffer::PacketBuf;
use crate::conntrack::{Dir, FlowKeyV4, HitV4, Nat, TcpFlags, L4};
use crate::neigh::{Resolve, HOP_CACHE_MS};
use crate::service::{Mode, RealIdx, VipTable};

/// What the fast path needs of a port, precomputed per snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastPort {
    /// The port's own IPv4 addresses.
    pub(crate) own: Vec<u32>,
    /// Sources that make a frame martian besides the fixed ranges: the
    /// own addresses and the broadcast address of each subnet of /30 or
    /// shorter (sources no station uses).
    pub(crate) bad_src: Vec<u32>,
    /// The last bytes of `own` and of `bad_src`, as 256-bit sets: an
    /// address whose last byte is in neither needs no look at the lists.
    own_last: [u64; 4],
    bad_src_last: [u64; 4],
}

/// Adds `a`'s last byte to the 256-bit set `set`.
fn add_last(set: &mut [u64; 4], a: u32) {
    set[(a as usize >> 6) & 3] |= 1 << (a & 63);
}

/// Whether `a`'s last byte is in `set`.
#[inline(always)]
fn has_last(set: &[u64; 4], a: u32) -> bool {
    (set[(a as usize >> 6) & 3] >> (a & 63)) & 1 != 0
}

impl FastPort {
    pub(crate) fn of(p: &super::PortInfo) -> FastPort {
        let mut f = FastPort::default();
        for (a, len) in &p.addrs {
            if let IpAddr::V4(a) = a {
                let a = u32::from(*a);
                f.own.push(a);
                f.bad_src.push(a);
                if *len <= 30 {
                    f.bad_src.push(a | (u32::MAX >> u32::from(*len)));
                }
            }
        }
        for &a in &f.own {
            add_last(&mut f.own_last, a);
        }
        for &a in &f.bad_src {
            add_last(&mut f.bad_src_last, a);
        }
        f
    }

    /// Whether IPv4 source `s` is one of [`Self::bad_src`].
    #[inline(always)]
    pub(crate) fn is_bad_src(&self, s: u32) -> bool {
        has_last(&self.bad_src_last, s) && self.bad_src.contains(&s)
    }

    /// Whether IPv4 destination `d` is one of [`Self::own`].
    #[inline(always)]
    pub(crate) fn is_own(&self, d: u32) -> bool {
        has_last(&self.own_last, d) && self.own.contains(&d)
    }
}

/// The ones' complement sum of a 20-byte IPv4 header is 0xffff.
#[inline(always)]
fn header_sum_ok(h: &[u8; 20]) -> bool {
    let mut s = 0u64;
    for w in h.chunks_exact(4) {
        s += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    // Fold 64 -> 16 bits.
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

impl Tables {
    /// The fast path (see the module docs): `Some` outcome, or `None`
    /// with nothing changed.
    #[inline]
    pub(super) fn fast_v4<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        in_port: u16,
        ctx: &mut Ctx<'_>,
        hint: Option<u32>,
    ) -> Option<Outcome> {
        let snap: &Snapshot = ctx.snap;
        let fp = snap.fast.get(usize::from(in_port))?;
        let port = snap.ports.get(usize::from(in_port))?;
        let frame = buf.data();
        // The Ethernet and IPv4 headers and 8 bytes of L4 header, as an
        // array: its fixed offsets need no bounds checks.
        let f: &[u8; 42] = frame.first_chunk()?;
        // Unicast destination, unicast non-zero source, IPv4.
        if f[0] & 1 != 0 || f[6] & 1 != 0 || f[12] != 0x08 || f[13] != 0x00 {
            return None;
        }
        if u32::from_ne_bytes([f[6], f[7], f[8], f[9]]) == 0 && f[10] == 0 && f[11] == 0 {
            return None;
        }
        let h: &[u8; 20] = f[14..34].try_into().ok()?;
        // Version 4, no options; not a fragment (only DF may be set).
        if h[0] != 0x45 || h[6] & 0xbf != 0 || h[7] != 0 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let proto = h[9];
        let min = match proto {
            ip_proto::TCP => 20,
            ip_proto::UDP => 8,
            _ => return None,
        };
        let end = 14 + total;
        if total < 20 + min || end > frame.len() || !header_sum_ok(h) {
            return None;
        }
        let s = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let d = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let o = s >> 24;
        if s == d || o == 0 || o == 127 || o >= 224 {
            return None;
        }
        for &a in fp.bad_src.iter() {
            if a == s {
                return None;
            }
        }
        for &a in fp.own.iter() {
            if a == d {
                return None;
            }
        }
        let flags = if proto == ip_proto::TCP {
            // In the frame: the IP packet holds a 20-byte TCP header.
            let &[off, fl] = frame.get(34 + 12..34 + 14)? else {
                return None;
            };
            let doff = usize::from(off >> 4) * 4;
            if doff < 20 || 34 + doff > end || !super::tcp_flags_valid(fl) {
                return None;
            }
            TcpFlags(fl)
        } else {
            TcpFlags::NONE
        };
        let Some((si, key)) = key_v4(snap, f) else {
            // No service: a NAT reply (real -> client)?
            return self.fast_reply_v4(buf, s, d, proto, flags, ctx, hint);
        };
        let (src, dst, dport) = (key.client, Ipv4Addr::from(d), key.vport);
        let svc = &snap.vips.services()[si];
        let now = ctx.now_ms as u32;
        // The first pass over the burst hashed it already.
        let hash = match hint {
            Some(h) => h,
            None => self.hash_v4_of(si, f, &key),
        };
        let dont_frag = h[6] & 0x40 != 0;
        let ip = || IpInfo {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            proto,
            l4: Some(34),
            frag_later: false,
            total_len: total,
            dont_frag,
            frag: None,
        };
        let mode = svc.mode();
        // A plain hit: a live flow whose real takes it, and nothing the
        // mode must refuse. Anything else (a new flow, an expired one, a
        // real gone, a TTL at its end, a tunnel too big) is the general
        // path's `balance`, from the same point: every check before it
        // has been made above.
        let (hit, r) = match self.conn.probe_v4(now, &key, hash) {
            Ok(hit) => match plain_target(snap, si, mode, &hit, h[8], total, dont_frag) {
                Some(r) => (hit, r),
                None => {
                    let ip = ip();
                    let known = self.known(&key, hash, hint, false);
                    let sport = key.client_port;
                    return Some(self.balance(buf, &ip, si, sport, dport, flags, port, ctx, known));
                }
            },
            Err(absent) => {
                let ip = ip();
                let known = self.known(&key, hash, hint, absent);
                let sport = key.client_port;
                return Some(self.balance(buf, &ip, si, sport, dport, flags, port, ctx, known));
            }
        };
        let snat = match hit.nat {
            Nat::Snat(p) => Some(p),
            _ => None,
        };

        // A hit: what `balance` does for one, then `deliver`.
        if r != hit.real_hint {
            self.conn.set_real_hint(hit.id, r);
        }
        let st = self.conn.touch(hit.id, now, Dir::Client, flags);
        self.log_touched(ctx.now_ms, hit.id, hit.state, hit.synced, st);
        if mode == Mode::Tun {
            let ip = ip();
            return Some(self.deliver(buf, &ip, si, r, dport, snat, port, ctx));
        }
        Some(self.deliver_v4(buf, si, r, dport, snat, mode, ctx))
    }

    /// What `balance` may reuse of the fast path's probe: the key's hash
    /// (a hint is trusted for a lookup, where a wrong one can only miss,
    /// never for an insert) and whether the probe found no flow at all.
    #[inline]
    fn known(
        &self,
        key: &FlowKeyV4,
        hash: u32,
        hint: Option<u32>,
        absent: bool,
    ) -> Option<(u32, bool)> {
        let exact = match hint {
            Some(_) => self.conn.hash_v4(key),
            None => hash,
        };
        debug_assert_eq!(exact, self.conn.hash_v4(key));
        Some((exact, absent && exact == hash))
    }

    /// [`Tables::deliver`] of a DR or NAT packet the fast path checked.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_v4<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        si: usize,
        r: RealIdx,
        vport: u16,
        snat: Option<u16>,
        mode: Mode,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        let Some(rs) = svc.target(r) else {
            return Outcome::Dropped(DropReason::NoReal);
        };
        let len = buf.len() as u64;
        let c = &mut self.counters[si];
        c.packets_in += 1;
        c.bytes_in += len;
        if let Some(rc) = c.reals.get_mut(r.get()) {
            rc[0] += 1;
            rc[1] += len;
        }
        // The next hop's MAC, remembered per target for as long as the
        // worker's next-hop memo would (and only within one snapshot: a
        // memo implies the route).
        let t = snap.fast_base.get(si).map(|b| *b as usize + r.get());
        let memo = t
            .and_then(|t| self.fast_hops.get(t))
            .filter(|m| ctx.now_ms < m.until)
            .copied();
        let route = match memo {
            Some(_) => None,
            None => match snap.real_route(si, r) {
                Some(rt) => Some(rt),
                None => return Outcome::Dropped(DropReason::NoRoute),
            },
        };
        if mode == Mode::Nat {
            // Checked before committing: an IPv4 real, and for source NAT
            // an IPv4 route.
            let IpAddr::V4(ra) = rs.addr else {
                return Outcome::Dropped(DropReason::NoRoute);
            };
            let la = match snat {
                Some(p) => match route.or_else(|| snap.real_route(si, r)).map(|rt| rt.src) {
                    Some(IpAddr::V4(la)) => Some((u32::from(la), p)),
                    _ => return Outcome::Dropped(DropReason::NoRoute),
                },
                None => None,
            };
            let port = if rs.port != 0 { rs.port } else { vport };
            let f = buf.data_mut();
            rewrite::nat_v4(f, 30, 36, u32::from(ra), port);
            if let Some((a, p)) = la {
                // Hairpin: the source too (rare; the general rewrite).
                let a = IpAddr::V4(a.into());
                rewrite::translate(f, 14, Some(34), f[23], rewrite::Side::Src, a, Some(p));
            }
        }
        let route = match (memo, route) {
            (Some(m), _) => {
                let f = buf.data_mut();
                f[0..12].copy_from_slice(&m.macs);
                return Outcome::Forward { port: m.port };
            }
            (None, Some(rt)) => rt,
            (None, None) => return Outcome::Dropped(DropReason::NoRoute),
        };
        self.send_remembered(buf, t, route, None, ctx)
    }

    /// Sends `buf` to `route`'s next hop as the neighbour table knows it,
    /// and remembers that hop for target `t` (flat index) for as long as
    /// the worker's next-hop memo would: the fast and burst paths' memo.
    /// `tun`: the target is reached through an IPv4 tunnel from `route`'s
    /// (IPv4) source, out a port of that MTU, which the memo remembers too.
    #[inline]
    pub(super) fn send_remembered<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        t: Option<usize>,
        route: Route,
        tun: Option<(Ipv4Addr, Ipv4Addr, u16)>,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let res = ctx.neigh.resolve(route.next_hop, ctx.now_ms);
        if let Resolve::Known {
            mac,
            refresh: false,
        } = res
        {
            if let Some(m) = t.and_then(|t| self.fast_hops.get_mut(t)) {
                m.macs[..6].copy_from_slice(&mac.0);
                m.macs[6..].copy_from_slice(&snap.ports[usize::from(route.port)].mac.0);
                m.port = route.port;
                m.until = ctx.now_ms + HOP_CACHE_MS;
                if let Some((src, dst, mtu)) = tun {
                    m.tun_src = u32::from(src);
                    m.tun_sum = rewrite::tun_sum(u32::from(src), u32::from(dst));
                    m.tun_mtu = mtu;
                }
            }
        }
        finish_send(res, buf, route, snap, ctx)
    }
}

impl Tables {
    /// The first look at a frame of a burst: the connection-table hash of
    /// the flow the fast path would look up for it, from the IPv4 header
    /// and ports alone (no other check), so that the worker can prefetch
    /// its bucket ([`ConnTable::bucket_addr`](crate::conntrack::ConnTable::bucket_addr))
    /// and entry while it looks at the rest of the burst, then pass the
    /// hash to [`Tables::handle_hinted`].
    ///
    /// `rss` is the NIC's RSS hash of the frame, if it computed one over
    /// addresses and ports with the key the table hashes with
    /// ([`Tables::set_rss_key`]): the hash is then one xor away, and is
    /// not computed. The NIC hashes a fragment by its addresses alone, so
    /// for a fragment `rss` is not used.
    #[inline]
    pub fn flow_hash_v4(&self, frame: &[u8], snap: &Snapshot, rss: Option<u32>) -> Option<u32> {
        let frame: &[u8; 42] = frame.first_chunk()?;
        if frame[12] != 0x08 || frame[13] != 0 || frame[14] != 0x45 {
            return None;
        }
        let (si, key) = key_v4(snap, frame)?;
        if let Some(h) = rss.filter(|_| frame[20] & 0x3f == 0 && frame[21] == 0) {
            if let Some(sv) = self.svc_fast.get(si) {
                return Some(h ^ sv.adj);
            }
        }
        Some(self.hash_v4_of(si, frame, &key))
    }

    /// The table's hash of `key`, the flow of `frame` (an IPv4 TCP/UDP
    /// frame with a 20-byte header) to service index `si` of the adopted
    /// snapshot: from the frame's bytes, with the service's part kept
    /// per service.
    #[inline(always)]
    fn hash_v4_of(&self, si: usize, frame: &[u8; 42], key: &FlowKeyV4) -> u32 {
        let (Some(part), Ok(client), Ok(ports)) = (
            self.svc_fast.get(si).map(|sv| sv.part),
            <&[u8; 4]>::try_from(&frame[26..30]),
            <&[u8; 4]>::try_from(&frame[34..38]),
        ) else {
            return self.conn.hash_v4(key);
        };
        self.conn.hash_v4_wire(client, ports, part)
    }

    /// For a frame [`Self::flow_hash_v4`] found no service for: the hash
    /// of the reply-index lookup the NAT reply fast path would make, for
    /// the worker to prefetch its bucket
    /// ([`ConnTable::reply_bucket_addr`](crate::conntrack::ConnTable::reply_bucket_addr))
    /// and pass to [`Tables::handle_hinted`]; from the IPv4 header and
    /// ports alone. `rss` as for [`Self::flow_hash_v4`].
    #[inline]
    pub fn reply_hash_v4(&self, frame: &[u8], rss: Option<u32>) -> Option<u32> {
        let frame: &[u8; 42] = frame.first_chunk()?;
        if frame[12] != 0x08 || frame[13] != 0 || frame[14] != 0x45 {
            return None;
        }
        let l4 = match frame[23] {
            ip_proto::TCP => L4::Tcp,
            ip_proto::UDP => L4::Udp,
            _ => return None,
        };
        if let Some(h) = rss.filter(|_| frame[20] & 0x3f == 0 && frame[21] == 0) {
            return Some(h ^ self.conn.rss_reply_adjust(l4));
        }
        let real = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let client = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        let rport = u16::from_be_bytes([frame[34], frame[35]]);
        let cport = u16::from_be_bytes([frame[36], frame[37]]);
        Some(self.conn.hash_reply_v4(real, rport, client, cport, l4))
    }
}

/// The service index and the forward key of an IPv4 TCP/UDP frame with a
/// 20-byte header and at least 8 bytes after it (the caller checked).
#[inline(always)]
pub(super) fn key_v4(snap: &Snapshot, f: &[u8; 42]) -> Option<(usize, FlowKeyV4)> {
    let proto = f[23];
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return None;
    }
    let d = u32::from_be_bytes([f[30], f[31], f[32], f[33]]);
    let dport = u16::from_be_bytes([f[36], f[37]]);
    let si = snap.fast_vips.lookup(d, proto, dport)?;
    let svc = &snap.vips.services()[si];
    Some((
        si,
        FlowKeyV4 {
            service: svc.id(),
            client: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
            client_port: u16::from_be_bytes([f[34], f[35]]),
            vport: dport,
            proto: L4::from(svc.spec().proto),
        },
    ))
}

/// The target a flow's packet goes to when the fast path may send it: the
/// flow's real still takes it (`keeps_flow`), and NAT (TTL left, IPv4 on
/// both sides) or TUN (fits the MTU, or may be fragmented) allows it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plain_target(
    snap: &Snapshot,
    si: usize,
    mode: Mode,
    hit: &HitV4,
    ttl: u8,
    total: usize,
    dont_frag: bool,
) -> Option<RealIdx> {
    let svc = &snap.vips.services()[si];
    // Most often the flow's remembered target is still its real, IPv4,
    // and keeps its flows: one word says so. Otherwise, the general test.
    let (r, v4) = if hinted_target_holds(snap, si, hit) {
        (hit.real_hint, true)
    } else {
        let r = svc.resolve_target(hit.real_hint, IpAddr::V4(hit.real), hit.real_port)?;
        if !svc.keeps_flow(r) {
            return None;
        }
        (r, false)
    };
    match mode {
        Mode::Dr => {}
        Mode::Nat => {
            if ttl <= 1 || !(v4 || svc.target(r)?.addr.is_ipv4()) {
                return None;
            }
            if matches!(hit.nat, Nat::Snat(_)) && !snap.real_route(si, r)?.src.is_ipv4() {
                return None;
            }
        }
        Mode::Tun => {
            let route = snap.real_route(si, r)?;
            let rs = svc.target(r)?;
            let mtu = usize::from(snap.ports.get(usize::from(route.port))?.mtu);
            let outer = if rs.addr.is_ipv4() { 20 } else { 40 };
            if total + outer > mtu && dont_frag {
                return None;
            }
        }
    }
    Some(r)
}

/// A packed IPv4 target that keeps its flows: address, port, and a mark
/// (bit 0) no other target's word has.
#[inline(always)]
pub(super) const fn target_word(addr: u32, port: u16) -> u64 {
    ((addr as u64) << 32) | ((port as u64) << 16) | 1
}

/// Whether the flow's remembered target (`real_hint`) is, in this
/// snapshot, an IPv4 target that serves the flow's real (same address,
/// same port or any port) and keeps its flows: what
/// `resolve_target(real_hint, ..) == Some(real_hint) && keeps_flow(..)`
/// says, in one word.
#[inline(always)]
fn hinted_target_holds(snap: &Snapshot, si: usize, hit: &HitV4) -> bool {
    let Some(&base) = snap.fast_base.get(si) else {
        return false;
    };
    let Some(&w) = snap.fast_targets.get(base as usize + hit.real_hint.get()) else {
        return false;
    };
    // A base past the service's targets would name another service's:
    // the hint must be within this one.
    let in_service = hit.real_hint.get() < snap.vips.services()[si].targets().len();
    let real = u32::from(hit.real);
    in_service && (w == target_word(real, hit.real_port) || w == target_word(real, 0))
}

/// What a worker keeps per target (flat index, as the snapshot's
/// `fast_base`) for the fast and burst paths: the target's packed word,
/// its next hop as last resolved, and the burst path's counts not yet
/// added to the service counters ([`Tables::counters`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHop {
    /// The snapshot's [`target_word`] of the target (0: not an IPv4
    /// target that keeps its flows).
    pub(super) word: u64,
    /// The next hop's MAC, then the output port's: the frame's first 12
    /// bytes.
    pub(super) macs: [u8; 12],
    /// The output port.
    pub(super) port: u16,
    /// The next hop is valid while `now_ms` is below (0: never filled).
    pub(super) until: u64,
    /// A tunnel target's outer source (the route's IPv4 source), the
    /// constant part of its outer header's sum ([`tun_sum`]) and the
    /// output port's MTU, remembered with the next hop (`tun_mtu` 0: not
    /// a tunnel's memo).
    pub(super) tun_src: u32,
    pub(super) tun_sum: u32,
    pub(super) tun_mtu: u16,
    /// Packets and bytes forwarded by the burst path, to add to the
    /// service's and the target's counters.
    pub(super) packets: u64,
    pub(super) bytes: u64,
}

/// The services on IPv4 VIPs by (VIP, protocol, port): an open-addressed
/// table of packed keys, for the fast path. Services on IPv6 (or
/// v4-mapped) VIPs are not in it: their packets take the general path.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastVips {
    keys: Box<[u64]>,
    idx: Box<[u32]>,
    shift: u32,
    /// The last bytes of the VIP addresses, as a 256-bit set: an address
    /// whose last byte is not in it has no service (a NAT reply's client,
    /// mostly), without a probe.
    last: [u64; 4],
}

/// Marks a used key (bits 24..32 are otherwise 0).
const VIP_USED: u64 = 1 << 24;

#[inline(always)]
pub(super) const fn vip_key(vip: u32, proto: u8, port: u16) -> u64 {
    ((vip as u64) << 32) | VIP_USED | ((proto as u64) << 16) | port as u64
}

impl FastVips {
    pub(crate) fn build(vips: &VipTable) -> FastVips {
        let n = vips.services().len();
        let size = (n * 2).max(8).next_power_of_two();
        let mut t = FastVips {
            keys: vec![0; size].into_boxed_slice(),
            idx: vec![0; size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
            last: [0; 4],
        };
        for (i, svc) in vips.services().iter().enumerate() {
            let spec = svc.spec();
            let IpAddr::V4(a) = spec.vip else { continue };
            add_last(&mut t.last, u32::from(a));
            let k = vip_key(u32::from(a), spec.proto.number(), spec.port);
            let mut at = t.slot(k);
            while t.keys[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            t.keys[at] = k;
            t.idx[at] = i as u32;
        }
        t
    }

    #[inline(always)]
    fn slot(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline(always)]
    fn get(&self, k: u64) -> Option<usize> {
        let mask = self.keys.len().checked_sub(1)?;
        let mut at = self.slot(k);
        for _ in 0..self.keys.len() {
            let x = self.keys[at];
            if x == k {
                return Some(self.idx[at] as usize);
            }
            if x == 0 {
                return None;
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// As [`VipTable::lookup_idx`]: the exact port, else the VIP's
    /// wildcard service.
    #[inline(always)]
    pub(crate) fn lookup(&self, vip: u32, proto: u8, port: u16) -> Option<usize> {
        if !has_last(&self.last, vip) {
            return None;
        }
        match self.get(vip_key(vip, proto, port)) {
            Some(i) => Some(i),
            None if port != 0 => self.get(vip_key(vip, proto, 0)),
            None => None,
        }
    }
}
