//! Outbound source NAT (`[[outbound]]`): connections the reals open to
//! the outside (package updates, DNS, NTP) leave from one of the
//! balancer's own addresses, like Linux's MASQUERADE.
//!
//! In a two-arm NAT the reals' default gateway is the balancer, and their
//! own addresses mean nothing outside. A TCP SYN or a UDP datagram from a
//! source an [`OutboundRule`] covers, to an address that is no VIP and
//! matches no NAT flow, opens an outbound flow: the worker takes a local
//! port from its pool ([`OUTBOUND_PORTS`]), rewrites
//! `inside:iport -> remote:rport` to `address:lport -> remote:rport` and
//! routes it. The answer `remote:rport -> address:lport` arrives at an own
//! address; before such frames go to the kernel, a port of the range is
//! looked up here and, when the remote matches, rewritten back to
//! `remote:rport -> inside:iport`. Nothing else gets in: a frame to a port
//! without a flow, or from another remote, goes to the kernel as before,
//! and a TCP segment other than a SYN opens nothing.
//!
//! The table is the worker's own, apart from the connection table: an
//! entry per port of the pool (the port *is* the entry's index, so a reply
//! is one array read) and an open-addressed index of `u16`s for the
//! forward direction (linear probing, deletion by backward shift). Both
//! are allocated once; nothing on the packet path allocates. Flows expire
//! after [`Timeouts`]; expired entries are freed when met, a few per new
//! flow, and all at once (bounded by the pool) when the pool runs dry.
//!
//! With several workers, both directions are owned by the worker that
//! [`crate::steer::Steer::client_owner`] names for the remote endpoint:
//! the forward frame `inside -> remote:rport` is steered there like a NAT
//! reply (by its destination), the answer `remote:rport -> address` by its
//! source. Every worker uses the whole port range: two workers' flows
//! never share a remote endpoint, so the wire tuples stay distinct.
//!
//! Not translated: ICMP (ping from a real), ICMP errors about an outbound
//! flow (they go to the kernel), and fragmented datagrams (dropped).

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::rewrite::{self, Side};
use super::send::send_via;
use super::snapshot::same_prefix;
use super::snat::SnatPorts;
use super::{Ctx, DropReason, IpInfo, Outcome, Tables};
use crate::buffer::PacketBuf;
use crate::conntrack::TcpFlags;
use crate::packet::ip_proto;
use crate::service::hash::fmix64;

/// Local ports of outbound flows: above Linux's default ephemeral range
/// (32768..=60999, which the kernel's own connections from the same
/// address use) and disjoint from the hairpin source-NAT range.
pub const OUTBOUND_PORTS: RangeInclusive<u16> = 61000..=65535;

/// One `[[outbound]]`: its sources leave from `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// Prefixes of the inside addresses it translates.
    pub sources: Vec<(IpAddr, u8)>,
    /// The balancer's own address they leave from (same family).
    pub address: IpAddr,
}

impl OutboundRule {
    /// Whether the rule translates connections from `src`.
    #[inline]
    pub fn covers(&self, src: IpAddr) -> bool {
        self.address.is_ipv4() == src.is_ipv4()
            && self.sources.iter().any(|&(a, p)| same_prefix(a, src, p))
    }
}

/// Idle timeouts of outbound flows, in ticks (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP before the remote has answered the SYN.
    pub tcp_syn: u32,
    /// TCP once answered.
    pub tcp_established: u32,
    /// TCP after a FIN either way.
    pub tcp_fin: u32,
    /// TCP after a RST.
    pub tcp_close: u32,
    /// UDP until both sides have sent twice (a query and its answer).
    pub udp: u32,
    /// UDP after that (a stream).
    pub udp_stream: u32,
}

impl Timeouts {
    /// SYN 30 s, established 900 s, FIN 120 s, RST 10 s, UDP 30 s,
    /// UDP stream 180 s (Linux conntrack's and IPVS's order of magnitude),
    /// with `hz` ticks per second.
    pub const fn default_with(hz: u32) -> Timeouts {
        Timeouts {
            tcp_syn: 30 * hz,
            tcp_established: 900 * hz,
            tcp_fin: 120 * hz,
            tcp_close: 10 * hz,
            udp: 30 * hz,
            udp_stream: 180 * hz,
        }
    }
}

// Entry state bits.
const LIVE: u8 = 1;
/// The remote has sent (TCP: answered the SYN; UDP: answered).
const ANSWERED: u8 = 2;
/// UDP: the inside sent again after an answer.
const STREAM: u8 = 4;
/// TCP: a FIN went either way.
const FIN: u8 = 8;
/// TCP: a RST went either way.
const RST: u8 = 16;

/// One outbound flow; its local port is its index in the pool.
#[derive(Debug, Clone, Copy)]
struct Entry {
    inside: IpAddr,
    remote: IpAddr,
    local: IpAddr,
    inside_port: u16,
    remote_port: u16,
    expiry: u32,
    proto: u8,
    state: u8,
}

const EMPTY: Entry = Entry {
    inside: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    remote: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    local: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    inside_port: 0,
    remote_port: 0,
    expiry: 0,
    proto: 0,
    state: 0,
};

/// A frame's side of an outbound flow, as the forward direction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The real's address (source).
    pub inside: IpAddr,
    /// Its port.
    pub inside_port: u16,
    /// The destination outside.
    pub remote: IpAddr,
    /// Its port.
    pub remote_port: u16,
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    pub proto: u8,
}

/// A frame from the outside to an outbound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Its source.
    pub remote: IpAddr,
    /// Its source port.
    pub remote_port: u16,
    /// The own address it is for.
    pub local: IpAddr,
    /// The local port it is for.
    pub port: u16,
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    pub proto: u8,
}

/// Why a forward frame was not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No flow, and the frame may not open one (TCP without SYN).
    NoFlow,
    /// Every local port is held by a live flow.
    NoPort,
}

/// Counters of a worker's outbound flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundCounters {
    /// Flows opened.
    pub new_flows: u64,
    /// Frames translated from the reals to the outside ...
    pub packets_out: u64,
    /// ... their bytes ...
    pub bytes_out: u64,
    /// ... frames translated back to the reals ...
    pub packets_in: u64,
    /// ... and their bytes.
    pub bytes_in: u64,
    /// New flows refused: no local port left.
    pub no_port: u64,
}

/// A worker's outbound flows.
pub struct OutboundTable {
    ports: SnatPorts,
    lo: u16,
    entries: Box<[Entry]>,
    /// Forward index: `port - lo + 1`, 0 empty.
    index: Box<[u16]>,
    live: usize,
    sweep: usize,
    timeouts: Timeouts,
    /// What happened.
    pub counters: OutboundCounters,
}

impl OutboundTable {
    /// A table over every port of `range` (allocates).
    pub fn new(range: RangeInclusive<u16>, timeouts: Timeouts) -> OutboundTable {
        let lo = *range.start();
        let ports = SnatPorts::new(range);
        let n = ports.available();
        let slots = (n * 2).next_power_of_two().max(2);
        OutboundTable {
            lo,
            entries: vec![EMPTY; n].into_boxed_slice(),
            index: vec![0u16; slots].into_boxed_slice(),
            ports,
            live: 0,
            sweep: 0,
            timeouts,
            counters: OutboundCounters::default(),
        }
    }

    /// Live flows (expired ones not yet freed included).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether `port` is one of the table's local ports.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.ports.contains(port)
    }

    fn hash(f: &Forward) -> u64 {
        let fold = |a: IpAddr| -> u64 {
            match a {
                IpAddr::V4(a) => u64::from(u32::from(a)),
                IpAddr::V6(a) => {
                    let x = u128::from(a);
                    fmix64((x >> 64) as u64) ^ x as u64
                }
            }
        };
        let ports = (u64::from(f.inside_port) << 32)
            | (u64::from(f.remote_port) << 16)
            | u64::from(f.proto);
        fmix64(fold(f.inside) ^ fmix64(fold(f.remote) ^ fmix64(ports)))
    }

    fn key_of(e: &Entry) -> Forward {
        Forward {
            inside: e.inside,
            inside_port: e.inside_port,
            remote: e.remote,
            remote_port: e.remote_port,
            proto: e.proto,
        }
    }

    fn home(&self, f: &Forward) -> usize {
        Self::hash(f) as usize & (self.index.len() - 1)
    }

    /// The index slot holding `f`'s entry, if any.
    fn find(&self, f: &Forward) -> Option<usize> {
        let mask = self.index.len() - 1;
        let mut i = self.home(f);
        for _ in 0..self.index.len() {
            let v = self.index[i];
            if v == 0 {
                return None;
            }
            if Self::key_of(&self.entries[usize::from(v - 1)]) == *f {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Frees the flow in index slot `slot`: its port back to the pool, its
    /// slot emptied and the probe chain behind it shifted back.
    fn remove_slot(&mut self, mut slot: usize) {
        let mask = self.index.len() - 1;
        let v = self.index[slot];
        let e = usize::from(v - 1);
        self.entries[e].state = 0;
        self.ports.free(self.lo + e as u16);
        self.live -= 1;
        self.index[slot] = 0;
        let mut j = slot;
        loop {
            j = (j + 1) & mask;
            let w = self.index[j];
            if w == 0 {
                return;
            }
            let k = self.home(&Self::key_of(&self.entries[usize::from(w - 1)]));
            // Stays if its home lies cyclically in (slot, j].
            let stays = if slot <= j {
                slot < k && k <= j
            } else {
                slot < k || k <= j
            };
            if !stays {
                self.index[slot] = w;
                self.index[j] = 0;
                slot = j;
            }
        }
    }

    /// Frees entry `e` (live) through its index slot.
    fn free_entry(&mut self, e: usize) {
        let key = Self::key_of(&self.entries[e]);
        if let Some(slot) = self.find(&key) {
            self.remove_slot(slot);
        }
    }

    /// Looks at up to `n` entries from the sweep cursor, freeing expired
    /// ones (the worker's expiry sweep calls it with a few).
    pub fn expire(&mut self, now: u32, n: usize) {
        self.sweep(now, n);
    }

    fn sweep(&mut self, now: u32, n: usize) {
        let len = self.entries.len();
        for _ in 0..n.min(len) {
            let e = self.sweep;
            self.sweep = (self.sweep + 1) % len;
            let x = &self.entries[e];
            if x.state & LIVE != 0 && expired(now, x.expiry) {
                self.free_entry(e);
            }
        }
    }

    fn timeout(&self, e: &Entry) -> u32 {
        let t = &self.timeouts;
        if e.proto == ip_proto::TCP {
            if e.state & RST != 0 {
                t.tcp_close
            } else if e.state & FIN != 0 {
                t.tcp_fin
            } else if e.state & ANSWERED != 0 {
                t.tcp_established
            } else {
                t.tcp_syn
            }
        } else if e.state & STREAM != 0 {
            t.udp_stream
        } else {
            t.udp
        }
    }

    fn see(&mut self, e: usize, now: u32, flags: TcpFlags, from_remote: bool) {
        let mut x = self.entries[e];
        if x.proto == ip_proto::TCP {
            if flags.has(TcpFlags::RST) {
                x.state |= RST;
            }
            if flags.has(TcpFlags::FIN) {
                x.state |= FIN;
            }
            if from_remote {
                x.state |= ANSWERED;
            }
        } else if from_remote {
            x.state |= ANSWERED;
        } else if x.state & ANSWERED != 0 {
            x.state |= STREAM;
        }
        x.expiry = now.wrapping_add(self.timeout(&x));
        self.entries[e] = x;
    }

    /// A frame from the inside: the local address and port it leaves
    /// from. A new flow is opened for a UDP datagram or a TCP SYN without
    /// ACK, leaving from `local`.
    pub fn forward(
        &mut self,
        now: u32,
        f: &Forward,
        flags: TcpFlags,
        local: IpAddr,
    ) -> Result<(IpAddr, u16), Refused> {
        if let Some(slot) = self.find(f) {
            let e = usize::from(self.index[slot] - 1);
            if !expired(now, self.entries[e].expiry) {
                // A new connection on the same ports (a SYN) starts with
                // a clean state: no FIN or RST of the one before.
                if f.proto == ip_proto::TCP && flags.has(TcpFlags::SYN) && !flags.has(TcpFlags::ACK)
                {
                    self.entries[e].state = LIVE;
                }
                self.see(e, now, flags, false);
                return Ok((self.entries[e].local, self.lo + e as u16));
            }
            self.remove_slot(slot);
        }
        let opens = f.proto == ip_proto::UDP
            || (f.proto == ip_proto::TCP
                && flags.has(TcpFlags::SYN)
                && !flags.has(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN));
        if !opens {
            return Err(Refused::NoFlow);
        }
        self.sweep(now, 4);
        let port = match self.ports.alloc() {
            Some(p) => p,
            None => {
                self.sweep(now, self.entries.len());
                match self.ports.alloc() {
                    Some(p) => p,
                    None => {
                        self.counters.no_port += 1;
                        return Err(Refused::NoPort);
                    }
                }
            }
        };
        let e = usize::from(port - self.lo);
        self.entries[e] = Entry {
            inside: f.inside,
            remote: f.remote,
            local,
            inside_port: f.inside_port,
            remote_port: f.remote_port,
            expiry: 0,
            proto: f.proto,
            state: LIVE,
        };
        let mask = self.index.len() - 1;
        let mut i = self.home(f);
        while self.index[i] != 0 {
            i = (i + 1) & mask;
        }
        self.index[i] = (e + 1) as u16;
        self.live += 1;
        self.counters.new_flows += 1;
        self.see(e, now, flags, false);
        Ok((local, port))
    }

    /// A frame `remote:remote_port -> local:port` (`a`): the inside
    /// endpoint of its flow, or `None` (no such flow: the frame is not
    /// ours).
    pub fn reply(&mut self, now: u32, a: &Answer, flags: TcpFlags) -> Option<(IpAddr, u16)> {
        let Answer {
            remote,
            remote_port,
            local,
            port,
            proto,
        } = *a;
        if !self.ports.contains(port) {
            return None;
        }
        let e = usize::from(port - self.lo);
        let x = self.entries[e];
        if x.state & LIVE == 0
            || x.remote != remote
            || x.remote_port != remote_port
            || x.local != local
            || x.proto != proto
        {
            return None;
        }
        if expired(now, x.expiry) {
            self.free_entry(e);
            return None;
        }
        self.see(e, now, flags, true);
        Some((x.inside, x.inside_port))
    }
}

impl Tables {
    /// A TCP / UDP frame from an inside address to no VIP and no NAT flow:
    /// translated out if an [`OutboundRule`] covers its source; `None`
    /// when none does or the frame opens no flow (it is not ours).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn outbound_forward<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        in_port: &super::PortInfo,
        sport: u16,
        dport: u16,
        flags: TcpFlags,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        let snap = ctx.snap;
        let rule = snap.outbound_rule(ip.src)?;
        // Only from where the source lives: a frame that claims an inside
        // source but arrives on another port (spoofed from outside) opens
        // nothing.
        let home = snap.route(ip.src)?;
        if !snap
            .ports
            .get(usize::from(home.port))
            .is_some_and(|p| std::ptr::eq(p, in_port))
        {
            return None;
        }
        if ip.frag.is_some() {
            return Some(Outcome::Dropped(DropReason::Fragment));
        }
        let f = Forward {
            inside: ip.src,
            inside_port: sport,
            remote: ip.dst,
            remote_port: dport,
            proto: ip.proto,
        };
        let (local, lport) = match self
            .outbound
            .forward(ctx.now_ms as u32, &f, flags, rule.address)
        {
            Ok(x) => x,
            Err(Refused::NoFlow) => return None,
            Err(Refused::NoPort) => return Some(Outcome::Dropped(DropReason::OutboundNoPort)),
        };
        let frame = buf.data_mut();
        if !rewrite::decrement_ttl(frame, 14) {
            return Some(Outcome::Dropped(DropReason::TtlExceeded));
        }
        rewrite::translate(frame, 14, ip.l4, ip.proto, Side::Src, local, Some(lport));
        let c = &mut self.outbound.counters;
        c.packets_out += 1;
        c.bytes_out += frame.len() as u64;
        let Some(route) = snap.route(ip.dst) else {
            return Some(Outcome::Dropped(DropReason::NoRoute));
        };
        Some(send_via(&mut self.hops, buf, route, snap, ctx))
    }

    /// A TCP / UDP frame to an own address and a port of
    /// [`OUTBOUND_PORTS`]: the answer of an outbound flow, translated back
    /// to its real; `None` sends the frame on (to the kernel).
    pub(super) fn outbound_reply<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        if ctx.snap.outbound.is_empty() || !matches!(ip.proto, ip_proto::TCP | ip_proto::UDP) {
            return None;
        }
        let l4 = ip.l4?;
        let f = buf.data();
        let min = if ip.proto == ip_proto::TCP { 20 } else { 8 };
        if f.len() < l4 + min {
            return None;
        }
        let sport = u16::from_be_bytes([f[l4], f[l4 + 1]]);
        let dport = u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]);
        if !self.outbound.contains(dport) {
            return None;
        }
        let now = ctx.now_ms as u32;
        // The remote endpoint names the owner, as for the forward frames.
        if let Some(to) = self.steer.foreign_client(ctx.hops, ip.src, sport) {
            return Some(self.hand_off(ip, to, now));
        }
        let flags = if ip.proto == ip_proto::TCP {
            TcpFlags(f[l4 + 13])
        } else {
            TcpFlags::NONE
        };
        let answer = Answer {
            remote: ip.src,
            remote_port: sport,
            local: ip.dst,
            port: dport,
            proto: ip.proto,
        };
        let (inside, iport) = self.outbound.reply(now, &answer, flags)?;
        if ip.frag.is_some() {
            return Some(Outcome::Dropped(DropReason::Fragment));
        }
        let frame = buf.data_mut();
        if !rewrite::decrement_ttl(frame, 14) {
            return Some(Outcome::Dropped(DropReason::TtlExceeded));
        }
        rewrite::translate(frame, 14, ip.l4, ip.proto, Side::Dst, inside, Some(iport));
        let c = &mut self.outbound.counters;
        c.packets_in += 1;
        c.bytes_in += frame.len() as u64;
        let snap = ctx.snap;
        let Some(route) = snap.route(inside) else {
            return Some(Outcome::Dropped(DropReason::NoRoute));
        };
        Some(send_via(&mut self.hops, buf, route, snap, ctx))
    }
}

/// Whether tick `expiry` has passed at `now` (wrapping clock).
#[inline]
fn expired(now: u32, expiry: u32) -> bool {
    (now.wrapping_sub(expiry) as i32) >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timeouts {
        Timeouts::default_with(1000)
    }

    fn fwd(inside_port: u16, remote: &str, remote_port: u16, proto: u8) -> Forward {
        Forward {
            inside: "192.0.2.21".parse().unwrap(),
            inside_port,
            remote: remote.parse().unwrap(),
            remote_port,
            proto,
        }
    }

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);

    fn local() -> IpAddr {
        "198.51.100.2".parse().unwrap()
    }

    fn ans(remote: IpAddr, remote_port: u16, local: IpAddr, port: u16, proto: u8) -> Answer {
        Answer {
            remote,
            remote_port,
            local,
            port,
            proto,
        }
    }

    #[test]
    fn a_syn_opens_a_flow_that_both_directions_find() {
        let mut o = OutboundTable::new(OUTBOUND_PORTS, t());
        let f = fwd(40000, "203.0.113.80", 80, ip_proto::TCP);
        assert_eq!(o.forward(0, &f, ACK, local()), Err(Refused::NoFlow));
        let (l, p) = o.forward(0, &f, SYN, local()).unwrap();
        assert_eq!(l, local());
        assert!(OUTBOUND_PORTS.contains(&p));
        assert_eq!(o.forward(10, &f, ACK, local()), Ok((l, p)), "same flow");
        let r = f.remote;
        assert_eq!(
            o.reply(20, &ans(r, 80, l, p, ip_proto::TCP), SYNACK),
            Some((f.inside, 40000))
        );
        // Another remote, port or local address: not this flow.
        let other: IpAddr = "203.0.113.81".parse().unwrap();
        assert_eq!(o.reply(20, &ans(other, 80, l, p, ip_proto::TCP), ACK), None);
        assert_eq!(o.reply(20, &ans(r, 81, l, p, ip_proto::TCP), ACK), None);
        assert_eq!(
            o.reply(20, &ans(r, 80, f.inside, p, ip_proto::TCP), ACK),
            None
        );
        assert_eq!(o.reply(20, &ans(r, 80, l, p, ip_proto::UDP), ACK), None);
        assert_eq!(o.reply(20, &ans(r, 80, l, 1000, ip_proto::TCP), ACK), None);
        assert_eq!(o.len(), 1);
        assert_eq!(o.counters.new_flows, 1);
    }

    #[test]
    fn flows_expire_by_state_and_free_their_ports() {
        let mut o = OutboundTable::new(61000..=61001, t());
        let a = fwd(1, "203.0.113.53", 53, ip_proto::UDP);
        let b = fwd(2, "203.0.113.53", 53, ip_proto::UDP);
        let c = fwd(3, "203.0.113.53", 53, ip_proto::UDP);
        let (_, pa) = o.forward(0, &a, TcpFlags::NONE, local()).unwrap();
        let (_, pb) = o.forward(0, &b, TcpFlags::NONE, local()).unwrap();
        assert_ne!(pa, pb);
        assert_eq!(
            o.forward(1000, &c, TcpFlags::NONE, local()),
            Err(Refused::NoPort)
        );
        assert_eq!(o.counters.no_port, 1);
        // b answered and used again: a stream, kept 180 s.
        o.reply(
            1000,
            &ans(b.remote, 53, local(), pb, ip_proto::UDP),
            TcpFlags::NONE,
        )
        .unwrap();
        o.forward(2000, &b, TcpFlags::NONE, local()).unwrap();
        // At 31 s a (30 s) has expired and gives its port to c.
        let (_, pc) = o.forward(31_000, &c, TcpFlags::NONE, local()).unwrap();
        assert_eq!(pc, pa);
        assert_eq!(
            o.reply(
                31_000,
                &ans(a.remote, 53, local(), pa, ip_proto::UDP),
                TcpFlags::NONE
            ),
            Some((a.inside, 3)),
            "the port carries c's flow now, not a's"
        );
        let b_answer = ans(b.remote, 53, local(), pb, ip_proto::UDP);
        assert!(o.reply(150_000, &b_answer, TcpFlags::NONE).is_some());
        // TCP: 30 s unanswered, 900 s established, 10 s after a RST.
        let mut o = OutboundTable::new(61000..=61010, t());
        let f = fwd(5, "203.0.113.80", 443, ip_proto::TCP);
        let (_, p) = o.forward(0, &f, SYN, local()).unwrap();
        assert!(o.forward(29_000, &f, ACK, local()).is_ok());
        assert_eq!(o.forward(60_000, &f, ACK, local()), Err(Refused::NoFlow));
        let (_, p2) = o.forward(60_000, &f, SYN, local()).unwrap();
        assert_ne!(p, p2, "FIFO: the freed port waits");
        o.reply(
            60_001,
            &ans(f.remote, 443, local(), p2, ip_proto::TCP),
            SYNACK,
        )
        .unwrap();
        assert!(o.forward(800_000, &f, ACK, local()).is_ok());
        o.forward(800_001, &f, TcpFlags(TcpFlags::RST), local())
            .unwrap();
        assert_eq!(
            o.reply(
                811_000,
                &ans(f.remote, 443, local(), p2, ip_proto::TCP),
                ACK
            ),
            None
        );
        assert!(o.is_empty());
        // A new connection on the ports of one that ended with a RST
        // starts clean: established, it has 900 s, not the RST's 10 s.
        let g = fwd(6, "203.0.113.80", 443, ip_proto::TCP);
        let (_, p3) = o.forward(900_000, &g, SYN, local()).unwrap();
        o.forward(900_001, &g, TcpFlags(TcpFlags::RST), local())
            .unwrap();
        assert!(o.forward(900_002, &g, SYN, local()).is_ok());
        let a3 = ans(g.remote, 443, local(), p3, ip_proto::TCP);
        o.reply(900_003, &a3, SYNACK).unwrap();
        assert!(o.reply(1_000_000, &a3, ACK).is_some(), "not the RST's 10 s");
    }

    /// Many flows in, then freed in a scattered order: every remaining one
    /// is still found (backward-shift deletion keeps the probe chains).
    #[test]
    fn the_forward_index_survives_scattered_removals() {
        let mut o = OutboundTable::new(61000..=61999, t());
        let flows: Vec<Forward> = (0..1000u16)
            .map(|i| fwd(i, "203.0.113.9", 53, ip_proto::UDP))
            .collect();
        let ports: Vec<u16> = flows
            .iter()
            .map(|f| o.forward(0, f, TcpFlags::NONE, local()).unwrap().1)
            .collect();
        assert_eq!(o.len(), 1000);
        for i in (0..1000).filter(|i| i % 3 != 1) {
            o.free_entry(usize::from(ports[i] - 61000));
        }
        for (i, f) in flows.iter().enumerate() {
            let found = o.find(f).is_some();
            assert_eq!(found, i % 3 == 1, "flow {i}");
        }
        assert_eq!(o.len(), 1000 - 667);
        assert_eq!(o.ports.available(), 667);
    }

    #[test]
    fn rules_cover_their_prefixes_in_their_family() {
        let r = OutboundRule {
            sources: vec![("192.0.2.0".parse().unwrap(), 24)],
            address: local(),
        };
        assert!(r.covers("192.0.2.21".parse().unwrap()));
        assert!(!r.covers("192.0.3.21".parse().unwrap()));
        assert!(!r.covers("2001:db8::21".parse().unwrap()));
    }
}
