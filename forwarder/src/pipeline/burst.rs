//! The pipeline's entry: a whole burst, or one frame as a burst of one.
//!
//! [`Tables::handle_burst`] (the worker's entry) and [`Tables::handle`]
//! (one frame) decide every frame in order, with the same outcomes,
//! bytes, counters and table changes as [`Tables::handle_general`]
//! called frame after frame. They go over the burst three times, so that
//! what a frame needs from memory is on its way while the others are
//! looked at:
//!
//! 1. **Classify.** Each frame's headers are read once, as three 16-byte
//!    words. A frame of the kind that makes up nearly all of a
//!    balancer's traffic (IPv4 TCP or UDP to a service on an IPv4 VIP,
//!    passing every check the general path makes before balancing) is
//!    marked *plain*: its flow hash is
//!    computed (or taken from the NIC's RSS hash), its connection-table
//!    bucket prefetched, and what the last pass needs of its service kept
//!    with it. A frame that passes the same checks but goes to no service
//!    is a *plain reply* (perhaps a NAT flow's real answering its client):
//!    its reply hash, its reply-index bucket. Any other frame gets the
//!    hash of its first lookup as a hint, and a prefetch too.
//! 2. **Candidates.** The bucket of each frame with a forward (or plain
//!    reply) hash is scanned for the hash's tag, and the cell it names is
//!    prefetched.
//! 3. **Decide, in order.** A plain frame whose flow is a plain hit
//!    (live, unexpired, an IPv4 real that still takes it, no source NAT,
//!    its next hop remembered by this worker) is forwarded there and
//!    then: flow state and expiry updated, counts kept, frame rewritten
//!    (DR, NAT in one step, or IPv4-in-IPv4 for TUN when the packet and
//!    the outer header fit the port's MTU).
//!    A plain reply of a plain NAT flow is translated back and sent to
//!    its client. A plain frame that is not a plain hit (a new flow, an
//!    expired one, its next hop not remembered) goes to the general
//!    path's balancing step without a second parse; every other frame
//!    through [`Tables::handle_general`] at its turn. A candidate is only a hint, taken when its cell holds the
//!    frame's key: a flow is in the table at most once, so a table that
//!    an earlier frame of the burst changed cannot mislead a later one.
//!
//! The counts of plain frames wait per target until
//! [`Tables::counters`] reads them. Nothing allocates, locks or calls the
//! system. The equivalence is tested burst by burst against the general
//! path (`tests::fast`) and fuzzed.

use std::net::{IpAddr, Ipv4Addr};

use super::memo::FastHop;
use super::plan::{target_word, v4_src_ok, FastPort};
use super::{ip_proto, tcp_flags_valid, Ctx, DropReason, IpInfo, Outcome, Snapshot, Tables};
use crate::buffer::{PacketBuf, TestBuffer};
use crate::conntrack::{ConnTable, Dir, FlowKeyV4, PlainV4, TcpFlags, WireKeyV4, L4};
use crate::packet::checksum::fold;
use crate::service::{Mode, Service};

/// Frames in a burst (the worker's receive burst).
pub const BURST: usize = 64;

/// A received burst as the pipeline reads it: frames in order, each in
/// one buffer. The worker's is DPDK's (`crate::dpdk::Burst`), the tests'
/// a slice of [`TestBuffer`]s.
pub trait RxFrames {
    /// One frame's buffer.
    type Buf: PacketBuf;
    /// Frames in the burst.
    fn count(&self) -> usize;
    /// Frame `i`'s bytes (its first segment); empty past the burst.
    fn frame(&self, i: usize) -> &[u8];
    /// What the first pass reads of frame `i`: its bytes and its RSS hash
    /// (as [`Self::rss_hash`]), or `None` for a frame over several
    /// buffers (or past the burst).
    fn first_look(&self, i: usize) -> Option<(&[u8], Option<u32>)> {
        if i >= self.count() || !self.single_segment(i) {
            return None;
        }
        Some((self.frame(i), self.rss_hash(i)))
    }
    /// Frame `i`'s buffer.
    fn buf_mut(&mut self, i: usize) -> Option<&mut Self::Buf>;
    /// The NIC's RSS hash of frame `i`, where it is computed with the
    /// connection table's key ([`Tables::set_rss_key`]); else `None`.
    fn rss_hash(&self, i: usize) -> Option<u32>;
    /// Whether frame `i` is all in one buffer (frames that are not are
    /// dropped: [`DropReason::MultiSegment`]).
    fn single_segment(&self, _i: usize) -> bool {
        true
    }
    /// Starts loading the cache line at `p`, without waiting for it (a
    /// hint: any address, null included, is allowed).
    fn prefetch(&self, _p: *const u8) {}
    /// Hand-offs frame `i` has had ([`crate::steer`]): 0 for a frame
    /// received from a port.
    fn hops(&self, _i: usize) -> u8 {
        0
    }
    /// For a frame another worker handed over as a plain reply, checked
    /// against the same snapshot: its reply hash (the checks are not made
    /// again).
    fn reply_hint(&self, _i: usize) -> Option<u32> {
        None
    }
}

impl RxFrames for [TestBuffer] {
    type Buf = TestBuffer;
    fn count(&self) -> usize {
        self.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], |b| b.data())
    }
    fn buf_mut(&mut self, i: usize) -> Option<&mut TestBuffer> {
        self.get_mut(i)
    }
    fn rss_hash(&self, i: usize) -> Option<u32> {
        self.get(i).and_then(|b| b.rss_hash())
    }
}

/// One frame as a burst ([`Tables::handle`]), with the hand-offs it has
/// had.
struct One<'a, B> {
    buf: &'a mut B,
    hops: u8,
}

impl<B: PacketBuf> RxFrames for One<'_, B> {
    type Buf = B;
    fn count(&self) -> usize {
        1
    }
    fn frame(&self, i: usize) -> &[u8] {
        if i == 0 {
            self.buf.data()
        } else {
            &[]
        }
    }
    fn buf_mut(&mut self, i: usize) -> Option<&mut B> {
        (i == 0).then_some(&mut *self.buf)
    }
    fn rss_hash(&self, i: usize) -> Option<u32> {
        self.buf.rss_hash().filter(|_| i == 0)
    }
    fn hops(&self, _i: usize) -> u8 {
        self.hops
    }
}

/// What the burst path needs of a service, per service index of the
/// adopted snapshot, built with the table's hash key.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SvcFast {
    /// What turns the NIC's RSS hash of a frame to the service's IPv4
    /// VIP into the flow's table hash ([`ConnTable::rss_adjust`]; 0 for
    /// an IPv6 VIP).
    pub(super) adj: u32,
    /// The service's part of the table hash ([`ConnTable::service_part`]).
    pub(super) part: u32,
    /// `part` with the VIP port's part of the hash in (a service on one
    /// port: [`ConnTable::hash_v4_vport`]); `part` for every port.
    part_port: u32,
    /// Control-plane id.
    id: u32,
    /// Flat index of its first target (the snapshot's `fast_base`).
    pub(super) base: u32,
    /// Its targets (reals and fallback).
    targets: u16,
    /// A service on every port (port 0).
    every_port: bool,
    /// NAT mode.
    nat: bool,
    /// TUN mode.
    tun: bool,
    proto: L4,
}

impl SvcFast {
    fn of(conn: &ConnTable, svc: &Service, base: u32) -> SvcFast {
        let proto = L4::from(svc.spec().proto);
        let part = conn.service_part(svc.id(), proto);
        let adj = match svc.spec().vip {
            std::net::IpAddr::V4(vip) => conn.rss_adjust(vip, svc.id(), proto),
            std::net::IpAddr::V6(_) => 0,
        };
        let every_port = svc.spec().port == 0;
        let part_port = if every_port {
            part
        } else {
            part ^ conn.hash_v4_vport(svc.spec().port)
        };
        SvcFast {
            adj,
            part,
            part_port,
            id: svc.id(),
            base,
            // No target for a service whose every packet the general
            // path must see (`tcp_reset_on_idle` notes sequence numbers):
            // its plain frames are never plain hits.
            targets: if svc.reset_on_idle() {
                0
            } else {
                u16::try_from(svc.targets().len()).unwrap_or(u16::MAX)
            },
            every_port,
            nat: svc.mode() == Mode::Nat,
            tun: svc.mode() == Mode::Tun,
            proto,
        }
    }

    /// Per service index of `snap`.
    pub(super) fn all(conn: &ConnTable, snap: &Snapshot) -> Vec<SvcFast> {
        snap.vips
            .services()
            .iter()
            .zip(&snap.plan.base)
            .map(|(svc, &base)| SvcFast::of(conn, svc, base))
            .collect()
    }
}

/// What the first pass learnt of a frame.
#[derive(Clone, Copy, Default)]
struct Pre {
    /// The hash of the frame's first lookup (see `what`).
    hash: u32,
    /// A plain frame's source address (a plain reply's destination) ...
    client: u32,
    /// ... its service's id (a plain reply's source, the real) ...
    service: u32,
    /// ... and the flat index of the service's first target.
    base: u32,
    /// Source port (a plain reply's destination port).
    cport: u16,
    /// Destination port (a plain reply's source port, the real's).
    vport: u16,
    /// The service's targets.
    targets: u16,
    /// TCP flags (0 for UDP).
    flags: u8,
    /// [`Class::Handoff`]: the worker that owns the frame's flow.
    to: u16,
    /// NAT mode.
    nat: bool,
    /// TUN mode.
    tun: bool,
    proto: L4,
    what: Class,
}

/// What the first pass found a frame to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Class {
    /// Not an IPv4 TCP/UDP frame: no hint.
    #[default]
    Other,
    /// A frame to a service, not plain: `hash` is its forward hash.
    Fwd,
    /// An IPv4 TCP/UDP frame to no service (a NAT reply?): `hash` is its
    /// reply hash.
    Reply,
    /// A plain frame (see the module docs).
    Plain,
    /// A frame over several buffers.
    Multi,
    /// A plain reply: an IPv4 TCP/UDP frame to no service that passes
    /// every check of a plain frame, perhaps from a NAT flow's real to its
    /// client (`hash` is its reply hash).
    PlainReply,
    /// [`Tables::plain_frame`]'s verdict on a frame that passes every
    /// check but goes to no service (never a `Pre::what`).
    NoService,
    /// A plain NAT frame whose flow another worker owns
    /// ([`crate::steer`]): `to` is that worker.
    Handoff,
    /// A plain reply whose flow another worker owns: `to` is that worker,
    /// `hash` the reply hash it is handed over with.
    HandoffReply,
}

/// The last VIP lookup of a pass (frames of a burst mostly go to one).
struct VipMemo {
    key: u64,
    /// `usize::MAX`: no service.
    si: usize,
}

/// Little-endian 16 bytes at `o` of the first 48 bytes of a frame.
#[inline(always)]
fn le128(f: &[u8; 48], o: usize) -> u128 {
    let mut w = [0u8; 16];
    w.copy_from_slice(&f[o..o + 16]);
    u128::from_le_bytes(w)
}

/// Byte `i` of a little-endian word holding `v`.
const fn at(i: u32, v: u8) -> u128 {
    (v as u128) << (8 * i)
}

/// Bytes `0..16` and `16..32` of a frame as little-endian words: the bits
/// a plain frame has fixed (the group bits of both MACs, EtherType,
/// version and IHL; the fragment field but DF, the protocol) ...
const FIXED_MASK: (u128, u128) = (
    at(0, 1) | at(6, 1) | at(12, 0xff) | at(13, 0xff) | at(14, 0xff),
    at(4, 0xbf) | at(5, 0xff) | at(7, 0xff),
);
/// ... and their values in a TCP frame: unicast MACs, IPv4 (0x0800) with
/// a 20-byte header (0x45), not a fragment, protocol 6.
const FIXED_TCP: (u128, u128) = (at(12, 0x08) | at(14, 0x45), at(7, ip_proto::TCP));
/// What a UDP frame (protocol 17) differs in from [`FIXED_TCP`].
const FIXED_UDP_DIFF: u128 = at(7, ip_proto::TCP ^ ip_proto::UDP);

/// Whether the ones' complement sum of `words` (16-bit words in either
/// byte order, spread over 64-bit lanes and two loose words) is 0xffff:
/// an IPv4 header's checksum holds. The sum is the same for either byte
/// order of the words, up to a swap of its two bytes (RFC 1071), and
/// 0xffff is its own swap.
#[inline(always)]
fn ones_sum_ok(a: u64, b: u64, loose: u64) -> bool {
    let (s, c1) = a.overflowing_add(b);
    let (s, c2) = s.overflowing_add(loose);
    fold((s & 0xffff_ffff) + (s >> 32) + u64::from(c1) + u64::from(c2)) == 0xffff
}

/// IPv4-in-IPv4 of a plain frame (its IP packet `total` bytes long, all
/// in the frame) from `src` to `dst`, with `sum` the constant part of
/// the outer header's sum ([`super::rewrite::tun_sum`]), and `macs` as its
/// first 12 bytes: the bytes of [`super::rewrite::encapsulate`] then the
/// next hop's MACs, written at once. No headroom: dropped, as there.
#[inline(never)]
fn tunnel_v4<B: PacketBuf>(
    buf: &mut B,
    macs: [u8; 12],
    src: u32,
    sum: u32,
    dst: u32,
    total: usize,
    port: u16,
) -> Outcome {
    let (tos, df) = match buf.data().first_chunk::<21>() {
        Some(h) => (h[15], h[20] & 0x40),
        None => return Outcome::Dropped(DropReason::Malformed),
    };
    let have = buf.len();
    if !buf.prepend(20) {
        return Outcome::Dropped(DropReason::NoHeadroom);
    }
    // Ethernet padding after the inner packet goes.
    if have > 14 + total {
        buf.trim(have - 14 - total);
    }
    let mut h = [0u8; 34];
    h[..12].copy_from_slice(&macs);
    h[12] = 0x08;
    h[14..].copy_from_slice(&super::rewrite::ipip_header(tos, df, total, src, dst, sum));
    match buf.data_mut().first_chunk_mut::<34>() {
        Some(f) => {
            *f = h;
            Outcome::Forward { port }
        }
        None => Outcome::Dropped(DropReason::Malformed),
    }
}

impl Tables {
    /// The first look at a frame of a burst: the connection-table hash of
    /// the flow a lookup of it would use, from the IPv4 header and ports
    /// alone (no other check), so that its bucket
    /// ([`ConnTable::bucket_addr`](crate::conntrack::ConnTable::bucket_addr))
    /// and entry are prefetched while the rest of the burst is looked at.
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
    /// of the reply-index lookup of a NAT reply, to prefetch its bucket
    /// ([`ConnTable::reply_bucket_addr`](crate::conntrack::ConnTable::reply_bucket_addr));
    /// from the IPv4 header and ports alone. `rss` as for [`Self::flow_hash_v4`].
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
    let si = snap.plan.vips.lookup(d, proto, dport)?;
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

impl Tables {
    /// Decides every frame of `rx`, which arrived on data port `in_port`,
    /// into `out` (frame `i`'s outcome at `i`): see the module docs. The
    /// caller turns the outcomes into TX bursts and counters, as for
    /// [`Tables::handle`]. Frames past [`BURST`] are not looked at.
    pub fn handle_burst<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        in_port: u16,
        ctx: &mut Ctx<'_>,
        out: &mut [Outcome; BURST],
    ) {
        self.passes(rx, in_port, ctx, out);
    }

    /// Decides one frame that arrived on data port `in_port`: the burst
    /// path over a burst of one (the same passes, checks and rewrites).
    #[inline]
    pub fn handle<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        in_port: u16,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let mut out = [Outcome::Consumed];
        let hops = ctx.hops;
        self.passes(&mut One { buf, hops }, in_port, ctx, &mut out);
        out[0]
    }

    /// The three passes over the first `N` frames of `rx` (see the module
    /// docs).
    #[inline(always)]
    fn passes<R: RxFrames + ?Sized, const N: usize>(
        &mut self,
        rx: &mut R,
        in_port: u16,
        ctx: &mut Ctx<'_>,
        out: &mut [Outcome; N],
    ) {
        let n = rx.count().min(N);
        let mut pre = [Pre::default(); N];
        self.classify_burst(rx, n, in_port, ctx.snap, &mut pre);
        let mut cand = [u32::MAX; N];
        self.candidates(rx, &pre[..n], &mut cand);
        self.decide(rx, n, in_port, ctx, &pre, &cand, out);
    }

    /// The first pass: every frame classified, its first lookup's bucket
    /// prefetched.
    #[inline(never)]
    fn classify_burst<R: RxFrames + ?Sized, const N: usize>(
        &self,
        rx: &R,
        n: usize,
        in_port: u16,
        snap: &Snapshot,
        pre: &mut [Pre; N],
    ) {
        let fp = snap.plan.ports.get(usize::from(in_port));
        let mut memo = VipMemo {
            key: 0,
            si: usize::MAX,
        };
        for (i, p) in pre.iter_mut().enumerate().take(n) {
            let Some((frame, rss)) = rx.first_look(i) else {
                p.what = Class::Multi;
                continue;
            };
            if let Some(h) = rx.reply_hint(i) {
                if Self::hinted_reply(frame, h, p) {
                    rx.prefetch(self.conn.reply_bucket_addr(p.hash));
                    continue;
                }
            }
            let hops = rx.hops(i);
            let look = match fp {
                Some(fp) => self.plain_frame(snap, fp, frame, rss, hops, &mut memo, p),
                None => Class::Other,
            };
            if look == Class::Plain {
                rx.prefetch(self.conn.bucket_addr(p.hash));
                continue;
            }
            if look == Class::Handoff {
                continue;
            }
            if look == Class::NoService && self.reply_frame(frame, rss, hops, p) {
                if p.what == Class::PlainReply {
                    rx.prefetch(self.conn.reply_bucket_addr(p.hash));
                }
                continue;
            }
            *p = self.classify(snap, frame, rss);
            match p.what {
                Class::Fwd => rx.prefetch(self.conn.bucket_addr(p.hash)),
                Class::Reply => rx.prefetch(self.conn.reply_bucket_addr(p.hash)),
                _ => {}
            }
        }
    }

    /// The second pass: the cell each forward lookup will most likely
    /// compare, found in its bucket and prefetched.
    #[inline(never)]
    fn candidates<R: RxFrames + ?Sized, const N: usize>(
        &self,
        rx: &R,
        pre: &[Pre],
        cand: &mut [u32; N],
    ) {
        for (p, c) in pre.iter().zip(cand.iter_mut()) {
            if p.what == Class::Plain || p.what == Class::Fwd {
                *c = self.conn.candidate(p.hash);
            } else if p.what == Class::PlainReply {
                *c = self.conn.reply_candidate(p.hash);
            } else {
                continue;
            }
            rx.prefetch(self.conn.cell_addr(*c));
        }
    }

    /// The third pass: each frame's outcome, in order.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn decide<R: RxFrames + ?Sized, const N: usize>(
        &mut self,
        rx: &mut R,
        n: usize,
        in_port: u16,
        ctx: &mut Ctx<'_>,
        pre: &[Pre; N],
        cand: &[u32; N],
        out: &mut [Outcome; N],
    ) {
        for i in 0..n {
            let p = &pre[i];
            let plain = match p.what {
                Class::Plain if p.tun => self.plain_tun(rx, i, p, cand[i], ctx),
                Class::Plain => self.plain(rx, i, p, cand[i], ctx),
                Class::PlainReply => self.plain_reply(rx, i, p, cand[i], ctx),
                Class::Handoff => Some(Outcome::handoff(p.to)),
                Class::HandoffReply => Some(Outcome::Handoff {
                    to: p.to,
                    reply_hash: Some(p.hash),
                }),
                _ => None,
            };
            out[i] = match plain {
                Some(o) => o,
                None if p.what == Class::Plain => self.plain_miss(rx, i, in_port, ctx),
                None => self.one(rx, i, p, in_port, ctx),
            };
        }
    }

    /// A plain frame that is not a plain hit (a new flow, an expired
    /// one, a real gone, its next hop not remembered, a tunnel too big):
    /// the general path's balancing step, from what the plain checks
    /// established (every check the general path makes before it), with
    /// the flow's exact hash and whether the table holds no flow of it.
    #[inline(never)]
    fn plain_miss<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        i: usize,
        in_port: u16,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        ctx.hops = rx.hops(i);
        let Some(buf) = rx.buf_mut(i) else {
            return Outcome::Dropped(DropReason::Malformed);
        };
        let Some(f) = buf.data().first_chunk::<48>() else {
            return Outcome::Dropped(DropReason::Malformed);
        };
        let (Some(head), Some(port)) = (
            f.first_chunk::<42>()
                .and_then(|h| key_v4(snap, h).map(|k| (k, h))),
            snap.ports.get(usize::from(in_port)),
        ) else {
            return self.handle_general(buf, in_port, ctx);
        };
        let ((si, key), h) = head;
        let hash = self.hash_v4_of(si, h, &key);
        let ip = IpInfo {
            src: IpAddr::V4(key.client),
            dst: IpAddr::V4(Ipv4Addr::new(f[30], f[31], f[32], f[33])),
            proto: f[23],
            l4: Some(34),
            frag_later: false,
            total_len: usize::from(u16::from_be_bytes([f[16], f[17]])),
            dont_frag: f[20] & 0x40 != 0,
            frag: None,
        };
        let flags = TcpFlags(if f[23] == ip_proto::TCP { f[47] } else { 0 });
        let absent = matches!(self.conn.probe_v4(ctx.now_ms as u32, &key, hash), Err(true));
        let (sport, dport) = (key.client_port, key.vport);
        let known = Some((hash, absent));
        self.balance(buf, &ip, si, sport, dport, flags, port, ctx, known)
    }

    /// Frame `i` through the general path (the first pass's prefetches
    /// are on their way).
    #[inline(never)]
    fn one<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        i: usize,
        p: &Pre,
        in_port: u16,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        if p.what == Class::Multi {
            return Outcome::Dropped(DropReason::MultiSegment);
        }
        ctx.hops = rx.hops(i);
        match rx.buf_mut(i) {
            Some(b) => self.handle_general(b, in_port, ctx),
            None => Outcome::Dropped(DropReason::Malformed),
        }
    }

    /// Whether a frame is plain (see the module docs), on three 16-byte
    /// words of its first 48 bytes; if so, fills `p`. A frame that is not
    /// is left to [`Self::classify`].
    ///
    /// Every check the general path makes before balancing holds (the
    /// same rules; `classify` and `plan` hold them once): unicast destination MAC,
    /// unicast non-zero source MAC, IPv4 with a 20-byte header and a
    /// valid checksum, not a fragment (DF allowed), the packet in the
    /// frame, TCP with a 20-byte or longer header inside it and valid
    /// flags, or UDP; no martian source (0/8, 127/8, 224/3, this port's
    /// own or broadcast addresses, the destination), not to an own
    /// address; a service on the IPv4 VIP, and for NAT a TTL that
    /// allows a hop. A NAT frame another worker owns is [`Class::Handoff`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plain_frame(
        &self,
        snap: &Snapshot,
        fp: &FastPort,
        frame: &[u8],
        rss: Option<u32>,
        hops: u8,
        memo: &mut VipMemo,
        p: &mut Pre,
    ) -> Class {
        let Some(f) = frame.first_chunk::<48>() else {
            return Class::Other;
        };
        let w0 = le128(f, 0); // MACs, EtherType, version + IHL, TOS
        let w1 = le128(f, 16); // length .. protocol, checksum, source, destination (half)
        let w2 = le128(f, 32); // destination (half), ports, TCP header to the flags
                               // The fixed bytes, as a TCP frame: any difference is set in `x`.
        let x = ((w0 & FIXED_MASK.0) ^ FIXED_TCP.0) | ((w1 & FIXED_MASK.1) ^ FIXED_TCP.1);
        let total = usize::from((w1 as u16).swap_bytes());
        let fl = (w2 >> 120) as u8;
        let l4_ok = if x == 0 {
            // TCP: a data offset of 20 bytes or more, inside the packet;
            // valid flags.
            let doff = usize::from((w2 >> 116) as u8 & 0x0f) * 4;
            doff >= 20 && 20 + doff <= total && tcp_flags_valid(fl)
        } else {
            x == FIXED_UDP_DIFF && total >= 28
        };
        let src_mac = (w0 >> 48) as u64 & 0xffff_ffff_ffff;
        let s = ((w1 >> 80) as u32).swap_bytes();
        let d = (((w1 >> 112) as u32) | ((w2 as u32) << 16)).swap_bytes();
        let ok = v4_src_ok(s, d) & l4_ok & (src_mac != 0) & (14 + total <= frame.len());
        let loose = ((w0 >> 112) as u64) + ((w2 as u64) & 0xffff);
        if !ok || !ones_sum_ok(w1 as u64, (w1 >> 64) as u64, loose) {
            return Class::Other;
        }
        if fp.is_bad_src(s) || fp.is_own(d) {
            return Class::Other;
        }
        let proto = (w1 >> 56) as u8;
        let vport = ((w2 >> 32) as u16).swap_bytes();
        let key = super::plan::vip_key(d, proto, vport);
        if key != memo.key {
            memo.key = key;
            memo.si = snap.plan.vips.lookup(d, proto, vport).unwrap_or(usize::MAX);
        }
        let cport = ((w2 >> 16) as u16).swap_bytes();
        let ttl = (w1 >> 48) as u8;
        // The VIP table holds services on IPv4 VIPs only: whatever it
        // finds, in any mode, may be plain.
        let Some(sv) = self.svc_fast.get(memo.si) else {
            // No service: perhaps a NAT reply (see `reply_frame`).
            return Class::NoService;
        };
        if sv.nat {
            if let Some(to) = self.steer.foreign_client_v4(hops, s, cport) {
                p.to = to;
                p.what = Class::Handoff;
                return Class::Handoff;
            }
            if ttl <= 1 {
                return Class::Other;
            }
        }
        p.hash = match rss {
            Some(h) => h ^ sv.adj,
            None if sv.every_port => {
                self.conn.hash_v4_client(s, cport) ^ self.conn.hash_v4_vport(vport) ^ sv.part
            }
            None => self.conn.hash_v4_client(s, cport) ^ sv.part_port,
        };
        p.client = s;
        p.service = sv.id;
        p.base = sv.base;
        p.cport = cport;
        p.vport = vport;
        p.targets = sv.targets;
        p.flags = if x == 0 { fl } else { 0 };
        p.nat = sv.nat;
        p.tun = sv.tun;
        p.proto = sv.proto;
        p.what = Class::Plain;
        Class::Plain
    }

    /// A frame [`Self::plain_frame`] checked and found no service for: a
    /// plain reply `s:sport -> d:dport` if its TTL allows a hop, as the
    /// the general path would answer it (`p` filled), or [`Class::HandoffReply`] when
    /// another worker owns `d:dport`'s flows. Out of line: the forward
    /// frames' loop stays tight.
    #[inline(never)]
    fn reply_frame(&self, frame: &[u8], rss: Option<u32>, hops: u8, p: &mut Pre) -> bool {
        let Some(f) = frame.first_chunk::<48>() else {
            return false;
        };
        if f[22] <= 1 {
            return false;
        }
        let tcp = f[23] == ip_proto::TCP;
        let l4 = if tcp { L4::Tcp } else { L4::Udp };
        let s = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
        let sport = u16::from_be_bytes([f[34], f[35]]);
        let d = u32::from_be_bytes([f[30], f[31], f[32], f[33]]);
        let dport = u16::from_be_bytes([f[36], f[37]]);
        p.hash = match rss {
            Some(h) => h ^ self.conn.rss_reply_adjust(l4),
            None => self.conn.hash_reply_v4(
                std::net::Ipv4Addr::from(s),
                sport,
                std::net::Ipv4Addr::from(d),
                dport,
                l4,
            ),
        };
        if let Some(to) = self.steer.foreign_client_v4(hops, d, dport) {
            p.to = to;
            p.what = Class::HandoffReply;
            return true;
        }
        Self::fill_reply(f, p);
        true
    }

    /// `p` for the plain reply `f`, whose reply hash is in `p.hash`.
    #[inline(always)]
    fn fill_reply(f: &[u8; 48], p: &mut Pre) {
        let tcp = f[23] == ip_proto::TCP;
        p.client = u32::from_be_bytes([f[30], f[31], f[32], f[33]]);
        p.service = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
        p.cport = u16::from_be_bytes([f[36], f[37]]);
        p.vport = u16::from_be_bytes([f[34], f[35]]);
        p.flags = if tcp { f[47] } else { 0 };
        p.proto = if tcp { L4::Tcp } else { L4::Udp };
        p.what = Class::PlainReply;
    }

    /// A plain reply another worker checked and handed over with its
    /// reply hash `hash` (`p` filled); `false` for a frame too short to be
    /// one (never, from a worker of this node).
    #[inline(always)]
    fn hinted_reply(frame: &[u8], hash: u32, p: &mut Pre) -> bool {
        let Some(f) = frame.first_chunk::<48>() else {
            return false;
        };
        p.hash = hash;
        Self::fill_reply(f, p);
        true
    }

    /// The first pass's look at a frame that is not plain: the hash of
    /// its first lookup, where [`Self::flow_hash_v4`] or
    /// [`Self::reply_hash_v4`] gives one (the same values).
    #[inline(never)]
    fn classify(&self, snap: &Snapshot, frame: &[u8], rss: Option<u32>) -> Pre {
        let mut p = Pre {
            what: Class::Other,
            ..Pre::default()
        };
        if let Some(h) = self.flow_hash_v4(frame, snap, rss) {
            p.what = Class::Fwd;
            p.hash = h;
        } else if let Some(h) = self.reply_hash_v4(frame, rss) {
            p.what = Class::Reply;
            p.hash = h;
        }
        p
    }

    /// A plain DR or NAT frame (`p`) of a flow that is a plain hit,
    /// forwarded; `None`, nothing changed, for any other (see the module
    /// docs): what the general path does for it, with the next hop the
    /// worker remembers for its target.
    #[inline(always)]
    fn plain<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        i: usize,
        p: &Pre,
        cand: u32,
        ctx: &Ctx<'_>,
    ) -> Option<Outcome> {
        let (hit, t, tf) = self.plain_hit(p, cand, ctx)?;
        let (w, macs, port) = (tf.word, tf.macs, tf.port);
        let f = rx.buf_mut(i)?.data_mut();
        let len = f.len() as u64;
        // Committed from here on.
        self.commit_plain(&hit, t, len, p, ctx);
        if p.nat {
            let rport = match (w >> 16) as u16 {
                0 => p.vport,
                rp => rp,
            };
            super::rewrite::nat_v4(f, 30, 36, (w >> 32) as u32, rport);
        }
        if let Some(m) = f.first_chunk_mut::<12>() {
            *m = macs;
        }
        Some(Outcome::Forward { port })
    }

    /// The flow of plain frame `p` if it is a plain hit: live, unexpired,
    /// its remembered target (flat index `t`, with its memo) still its
    /// real and keeping its flows (one word of the plan says so), the
    /// next hop remembered.
    #[inline(always)]
    fn plain_hit(&self, p: &Pre, cand: u32, ctx: &Ctx<'_>) -> Option<(PlainV4, usize, FastHop)> {
        let now = ctx.now_ms as u32;
        let key = WireKeyV4 {
            client: p.client,
            service: p.service,
            client_port: p.cport,
            vport: p.vport,
            proto: p.proto,
        };
        let hit = self.conn.plain_v4(now, cand, p.hash, &key)?;
        if hit.real_hint >= p.targets {
            return None;
        }
        let t = p.base as usize + usize::from(hit.real_hint);
        let tf = self.fast_hops.get(t)?;
        let w = tf.word;
        if w != target_word(hit.real, hit.real_port) && w != target_word(hit.real, 0) {
            return None;
        }
        if ctx.now_ms >= tf.until {
            return None;
        }
        Some((hit, t, *tf))
    }

    /// [`Self::plain`] of a frame to a TUN service: also the tunnel's
    /// memo, and room for the packet and the outer header (a bigger one
    /// the general path refuses or tunnels); the frame tunnelled. Out of
    /// line: DR and NAT stay tight.
    #[inline(never)]
    fn plain_tun<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        i: usize,
        p: &Pre,
        cand: u32,
        ctx: &Ctx<'_>,
    ) -> Option<Outcome> {
        let (hit, t, tf) = self.plain_hit(p, cand, ctx)?;
        let buf = rx.buf_mut(i)?;
        let f = buf.data();
        let total = usize::from(u16::from_be_bytes([*f.get(16)?, *f.get(17)?]));
        if tf.tun_mtu == 0 || total + 20 > usize::from(tf.tun_mtu) {
            return None;
        }
        let len = f.len() as u64;
        // Committed from here on.
        self.commit_plain(&hit, t, len, p, ctx);
        let dst = (tf.word >> 32) as u32;
        Some(tunnel_v4(
            buf, tf.macs, tf.tun_src, tf.tun_sum, dst, total, tf.port,
        ))
    }

    /// What every plain hit to target `t` changes, `len` bytes: the
    /// flow's state and expiry, the sync log, the target's counts.
    #[inline(always)]
    fn commit_plain(&mut self, hit: &PlainV4, t: usize, len: u64, p: &Pre, ctx: &Ctx<'_>) {
        let st = self
            .conn
            .touch(hit.id, ctx.now_ms as u32, Dir::Client, TcpFlags(p.flags));
        self.log_touched(ctx.now_ms, hit.id, hit.state, hit.synced, st);
        if let Some(tf) = self.fast_hops.get_mut(t) {
            tf.packets += 1;
            tf.bytes += len;
        }
        #[cfg(test)]
        {
            self.plain_hits += 1;
        }
    }

    /// A plain reply (`p`) of a plain NAT flow, translated back to
    /// `VIP:vport` and sent to its client; `None`, nothing changed, for
    /// any other frame. It answers for a live, unexpired NAT flow with
    /// both addresses IPv4 whose service is in the snapshot on an IPv4
    /// VIP, and a route to the client, as the general path's
    /// `reply_to_client` would.
    #[inline(always)]
    fn plain_reply<R: RxFrames + ?Sized>(
        &mut self,
        rx: &mut R,
        i: usize,
        p: &Pre,
        cand: u32,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        let now = ctx.now_ms as u32;
        let snap = ctx.snap;
        // A v4-mapped IPv6 VIP may be the destination: its service's, then.
        if snap.plan.mapped_vips {
            let proto = match p.proto {
                L4::Udp => crate::service::Proto::Udp,
                _ => crate::service::Proto::Tcp,
            };
            let client = std::net::IpAddr::V4(std::net::Ipv4Addr::from(p.client));
            if snap.vips.lookup_idx(client, proto, p.cport).is_some() {
                return None;
            }
        }
        let hit = self.conn.plain_reply_v4(
            now, cand, p.hash, p.service, p.vport, p.client, p.cport, p.proto,
        )?;
        let si = snap.vips.idx_by_id(hit.service)?;
        let std::net::IpAddr::V4(vip) = snap.vips.services().get(si)?.spec().vip else {
            return None;
        };
        let route = snap.plan.routes.route(p.client)?;
        let buf = rx.buf_mut(i)?;
        // Committed from here on: what `reply_to_client` does.
        let st = self.conn.touch(hit.id, now, Dir::Reply, TcpFlags(p.flags));
        self.log_touched(ctx.now_ms, hit.id, hit.state, hit.synced, st);
        let f = buf.data_mut();
        super::rewrite::nat_v4(f, 26, 34, u32::from(vip), hit.vport);
        let len = f.len() as u64;
        if let Some(c) = self.counters.get_mut(si) {
            c.packets_out += 1;
            c.bytes_out += len;
        }
        #[cfg(test)]
        {
            self.plain_hits += 1;
        }
        Some(super::send_via(&mut self.hops, buf, route, snap, ctx))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::builder::{self, FrameSpec};
    use crate::packet::tcp::TcpFlags;
    use crate::pipeline::rewrite::{decrement_ttl, nat_v4, translate, Side};

    fn frame(udp: bool, sport: u16, payload: usize, ttl: u8) -> Vec<u8> {
        let spec = FrameSpec {
            src: Ipv4Addr::new(203, 0, 113, 7),
            dst: Ipv4Addr::new(192, 0, 2, 100),
            src_port: sport,
            dst_port: 80,
            tcp_flags: TcpFlags::ACK,
            ttl,
            payload: vec![0x3c; payload],
            ..FrameSpec::default()
        };
        if udp {
            builder::udp4(&spec)
        } else {
            builder::tcp4(&spec)
        }
    }

    /// The general path's TTL and address / port rewrites, one after the
    /// other.
    fn general(f: &mut [u8], side: Side, addr: u32, port: u16) {
        assert!(decrement_ttl(f, 14));
        let proto = f[23];
        let a = std::net::IpAddr::V4(addr.into());
        assert!(translate(f, 14, Some(34), proto, side, a, Some(port)));
    }

    /// The one-step IPv4 NAT of the fast and burst paths writes the bytes
    /// the general path's step-by-step rewrite writes, for TCP and UDP,
    /// destination and source,
    /// for every port (so also where a UDP checksum computes to 0 and is
    /// sent as 0xffff), and leaves an absent UDP checksum absent.
    #[test]
    fn one_step_nat_writes_the_general_paths_bytes() {
        let mut zero_results = 0;
        for (udp, sport, payload, ttl) in [
            (false, 40_000, 0, 64),
            (false, 1, 5, 2),
            (true, 53, 0, 64),
            (true, 65_535, 33, 255),
        ] {
            let f = frame(udp, sport, payload, ttl);
            for dport in 0..=u16::MAX {
                let dst = 0xc000_0215 ^ u32::from(dport).rotate_left(7);
                let (mut a, mut b) = (f.clone(), f.clone());
                nat_v4(&mut a, 30, 36, dst, dport);
                general(&mut b, Side::Dst, dst, dport);
                // The source side, as replies are translated.
                let (mut c, mut d) = (f.clone(), f.clone());
                nat_v4(&mut c, 26, 34, dst, dport);
                general(&mut d, Side::Src, dst, dport);
                assert_eq!(c, d, "source, udp {udp}, port {dport}");
                assert_eq!(a, b, "udp {udp}, dport {dport}");
                if udp && a[40..42] == [0xff, 0xff] {
                    zero_results += 1;
                }
            }
        }
        assert!(zero_results > 0, "no UDP checksum computed to 0");
        let mut f = frame(true, 53, 8, 64);
        f[40..42].fill(0);
        let mut g = f.clone();
        nat_v4(&mut f, 30, 36, 0xc000_0216, 8053);
        general(&mut g, Side::Dst, 0xc000_0216, 8053);
        assert_eq!(f, g);
        assert_eq!(f[40..42], [0, 0], "an absent UDP checksum stays absent");
    }

    /// The word-wide header sum agrees with the plain 16-bit one on
    /// valid headers, headers with one bit changed, and the all-zero
    /// header (whose sum, 0, is not 0xffff).
    #[test]
    fn the_word_wide_header_sum_is_the_header_sum() {
        let f = frame(false, 40_000, 0, 64);
        let check = |h: &[u8]| {
            let mut s = 0u32;
            for w in h.chunks_exact(2) {
                s += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s == 0xffff
        };
        let words = |f: &[u8]| {
            let f: &[u8; 48] = f.first_chunk().unwrap();
            let (w0, w1, w2) = (le128(f, 0), le128(f, 16), le128(f, 32));
            ones_sum_ok(
                w1 as u64,
                (w1 >> 64) as u64,
                ((w0 >> 112) as u64) + ((w2 as u64) & 0xffff),
            )
        };
        assert!(check(&f[14..34]) && words(&f));
        for bit in 0..160 {
            let mut g = f.clone();
            g[14 + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(words(&g), check(&g[14..34]), "bit {bit}");
        }
        let mut z = f.clone();
        z[14..34].fill(0);
        assert!(!words(&z) && !check(&z[14..34]));
    }
}
