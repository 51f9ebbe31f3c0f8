//! `tcp_reset_on_idle`: an established TCP flow of such a service that
//! expires gets a RST sent to both ends, so neither keeps a connection
//! the balancer has forgotten (Azure's "TCP reset on idle").
//!
//! A RST only resets a Linux (RFC 5961) connection when its sequence
//! number is exactly the receiver's next expected one; any other in the
//! window draws a challenge ACK. Both numbers are read off the client's
//! own segments, the only direction every mode sees:
//!
//! * to the real: the client's next sequence number (sequence + payload,
//!   SYN and FIN counting one), the highest seen;
//! * to the client: the acknowledgement number it last sent, which is
//!   the real's next sequence number once the client has acknowledged
//!   everything (it has, after an idle timeout).
//!
//! They are kept per flow in an array beside the connection table
//! ([`SeqMark`], 12 bytes per cell, allocated when a service first asks
//! for resets), tagged with the flow's ports so that a cell reused by a
//! flow whose numbers were never noted (a synced one) sends nothing. The
//! packets of these services go through the general path, which notes
//! them; the burst path never decides them itself.
//!
//! When the expiry sweep (or any lookup or insert) frees such a flow, the two RSTs
//! are described in the worker's bounded [`Resets`] queue: to the client
//! `VIP:vport -> client:cport`, to the real as the flow's packets go (DR:
//! to the VIP at the real's MAC; NAT: to the real's address and port;
//! TUN: inside IP-in-IP). The worker writes and sends them after the
//! sweep ([`Rst::write`]), when the next hop's MAC is known. Hairpin
//! (source-NAT) flows get none.

use std::net::IpAddr;

use super::*;
use crate::conntrack::{FreeReason, Freed, State, TcpFlags};
use crate::packet::checksum;

/// RSTs a worker holds until it sends them (more are dropped, counted).
/// The worker sweeps [`SWEEP_CHUNK`] cells at a time and sends what they
/// left before the next chunk: at most two RSTs per cell, so the queue
/// never overflows from the sweep.
pub const RESET_QUEUE: usize = 2 * SWEEP_CHUNK as usize;

/// Cells a worker sweeps before it sends the RSTs they left.
pub const SWEEP_CHUNK: u32 = 128;

/// The client's sequence numbers of one flow, as last seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqMark {
    /// [`tag`] of the flow they belong to; 0: none noted.
    tag: u32,
    /// The client's next sequence number.
    next: u32,
    /// The client's last acknowledgement number.
    ack: u32,
}

/// A nonzero tag of a flow key: the cell's marks belong to it.
fn tag(key: &FlowKey) -> u32 {
    let a = match key.client {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    };
    (a ^ (u32::from(key.client_port) << 16) ^ u32::from(key.vport) ^ key.service) | 1
}

/// Whether serial number `a` is after `b` (RFC 1982).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Notes the client's sequence numbers from TCP segment `f` (whose TCP
/// header starts at `l4`, IP packet `total_len` bytes from offset 14) of
/// flow `key` in cell `mark`.
pub(super) fn note(mark: &mut SeqMark, key: &FlowKey, f: &[u8], l4: usize, total_len: usize) {
    let Some(h) = f.get(l4..l4 + 20) else {
        return;
    };
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let doff = usize::from(h[12] >> 4) * 4;
    let flags = h[13];
    let payload = (14 + total_len).saturating_sub(l4 + doff) as u32;
    let next = seq
        .wrapping_add(payload)
        .wrapping_add(u32::from(flags & TcpFlags::SYN != 0))
        .wrapping_add(u32::from(flags & TcpFlags::FIN != 0));
    let t = tag(key);
    // A new flow in the cell, or a new connection on the same ports (a
    // SYN: its sequence numbers start afresh, anywhere).
    let syn = flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN;
    if mark.tag != t || syn {
        *mark = SeqMark { tag: t, next, ack };
    } else if after(next, mark.next) {
        mark.next = next;
    }
    if flags & TcpFlags::ACK != 0 && (mark.ack == 0 || !after(mark.ack, ack)) {
        mark.ack = ack;
    }
}

/// One RST to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rst {
    /// The port it leaves by.
    pub port: u16,
    /// The next hop whose MAC it needs.
    pub next_hop: IpAddr,
    /// Outer source and destination (TUN), if tunnelled.
    pub tunnel: Option<(IpAddr, IpAddr)>,
    /// Source address and port.
    pub src: (IpAddr, u16),
    /// Destination address and port.
    pub dst: (IpAddr, u16),
    /// Its sequence number.
    pub seq: u32,
}

impl Rst {
    /// The longest frame [`Self::write`] writes (IPv6 in IPv6).
    pub const MAX_LEN: usize = 14 + 40 + 40 + 20;

    /// Writes the frame into `buf` (at least [`Self::MAX_LEN`] bytes):
    /// its length, or `None` for mixed address families.
    pub fn write(&self, buf: &mut [u8], src_mac: MacAddr, dst_mac: MacAddr) -> Option<usize> {
        let (outer_len, v6_outer) = match self.tunnel {
            None => (0, self.src.0.is_ipv6()),
            Some((IpAddr::V4(_), IpAddr::V4(_))) => (20, false),
            Some((IpAddr::V6(_), IpAddr::V6(_))) => (40, true),
            Some(_) => return None,
        };
        let inner_v6 = match (self.src.0, self.dst.0) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return None,
        };
        if self.tunnel.is_some() && inner_v6 != v6_outer {
            return None;
        }
        let inner_len = if inner_v6 { 40 + 20 } else { 20 + 20 };
        let len = 14 + outer_len + inner_len;
        let buf = buf.get_mut(..len)?;
        buf[0..6].copy_from_slice(&dst_mac.0);
        buf[6..12].copy_from_slice(&src_mac.0);
        let ethertype: u16 = if v6_outer { 0x86dd } else { 0x0800 };
        buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if let Some((os, od)) = self.tunnel {
            let proto = if inner_v6 {
                ip_proto::IPV6
            } else {
                ip_proto::IPIP
            };
            ip_header(&mut buf[14..], os, od, proto, inner_len);
        }
        let l3 = 14 + outer_len;
        ip_header(&mut buf[l3..], self.src.0, self.dst.0, ip_proto::TCP, 20);
        let ip_hdr = if inner_v6 { 40 } else { 20 };
        let t = &mut buf[l3 + ip_hdr..l3 + ip_hdr + 20];
        t.fill(0);
        t[0..2].copy_from_slice(&self.src.1.to_be_bytes());
        t[2..4].copy_from_slice(&self.dst.1.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = TcpFlags::RST;
        let pseudo = match (self.src.0, self.dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, ip_proto::TCP, 20),
            (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(&s, &d, ip_proto::TCP, 20),
            _ => return None,
        };
        let c = checksum::transport_checksum(pseudo, t, checksum::TCP_FIELD);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        Some(len)
    }
}

/// An IPv4 (20 bytes, DF, TTL 64) or IPv6 (40 bytes, hop limit 64)
/// header for `payload` bytes of `proto` at the start of `b`.
fn ip_header(b: &mut [u8], src: IpAddr, dst: IpAddr, proto: u8, payload: usize) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let h = &mut b[..20];
            h.fill(0);
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum::ipv4_header_checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = &mut b[..40];
            h.fill(0);
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
        }
        _ => {}
    }
}

/// The RSTs a worker has yet to send: a fixed array, nothing allocated.
#[derive(Debug)]
pub struct Resets {
    items: [Option<Rst>; RESET_QUEUE],
    len: usize,
    /// RSTs described: queued ...
    pub queued: u64,
    /// ... and dropped because the queue was full.
    pub dropped: u64,
}

impl Default for Resets {
    fn default() -> Self {
        Resets {
            items: [None; RESET_QUEUE],
            len: 0,
            queued: 0,
            dropped: 0,
        }
    }
}

impl Resets {
    fn push(&mut self, r: Rst) {
        if self.len == RESET_QUEUE {
            self.dropped += 1;
            return;
        }
        self.items[self.len] = Some(r);
        self.len += 1;
        self.queued += 1;
    }

    /// Takes the last queued RST.
    pub fn pop(&mut self) -> Option<Rst> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.items[self.len].take()
    }

    /// RSTs waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// For a freed flow `f` (freed by any path): if it expired established,
/// of a service with `tcp_reset_on_idle`, and its numbers were noted in
/// `marks`, the RSTs to its client and its real go into `out`. Its cell's
/// notes are forgotten either way.
pub(super) fn on_free(snap: &Snapshot, marks: &mut [SeqMark], out: &mut Resets, f: &Freed) {
    let Some(slot) = marks.get_mut(f.id.0 as usize) else {
        return;
    };
    let m = std::mem::take(slot);
    if f.reason != FreeReason::Expired || f.state != State::Established || f.key.proto != L4::Tcp {
        return;
    }
    let Some(si) = snap.vips.idx_by_id(f.key.service) else {
        return;
    };
    let svc = &snap.vips.services()[si];
    if !svc.reset_on_idle() {
        return;
    }
    if m.tag != tag(&f.key) {
        return;
    }
    let vip = svc.spec().vip;
    let (client, cport, vport) = (f.key.client, f.key.client_port, f.key.vport);
    if let Some(route) = snap.route(client) {
        out.push(Rst {
            port: route.port,
            next_hop: route.next_hop,
            tunnel: None,
            src: (vip, vport),
            dst: (client, cport),
            seq: m.ack,
        });
    }
    let Some(r) = svc.resolve_target(f.real_hint, f.real, f.real_port) else {
        return;
    };
    let Some(route) = snap.real_route(si, r) else {
        return;
    };
    let (dst, tunnel) = match (svc.mode(), f.nat) {
        (Mode::Dr, _) => ((vip, vport), None),
        (Mode::Tun, _) => ((vip, vport), Some((route.src, f.real))),
        (Mode::Nat, Nat::Nat) => ((f.real, f.real_port), None),
        _ => return,
    };
    out.push(Rst {
        port: route.port,
        next_hop: route.next_hop,
        tunnel,
        src: (client, cport),
        dst,
        seq: m.next,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::builder::{self, FrameSpec};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn written_rsts_are_the_frames_the_builder_makes() {
        let mut buf = [0u8; Rst::MAX_LEN];
        let (c4, v4): (Ipv4Addr, Ipv4Addr) = (
            "203.0.113.9".parse().unwrap(),
            "192.0.2.100".parse().unwrap(),
        );
        let r = Rst {
            port: 0,
            next_hop: IpAddr::V4(c4),
            tunnel: None,
            src: (IpAddr::V4(v4), 80),
            dst: (IpAddr::V4(c4), 40000),
            seq: 0xdead_beef,
        };
        let n = r.write(&mut buf, A, B).unwrap();
        let want = builder::tcp4(&FrameSpec {
            src_mac: A,
            dst_mac: B,
            src: v4,
            dst: c4,
            src_port: 80,
            dst_port: 40000,
            tcp_flags: crate::packet::TcpFlags::RST,
            seq: 0xdead_beef,
            ack: 0,
            window: 0,
            payload: Vec::new(),
            ttl: 64,
            ..FrameSpec::default()
        });
        let ip = crate::packet::Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            &buf[14 + 20..n],
            &want[14 + 20..14 + 40],
            "the TCP header and its checksum"
        );
        // IPv6, and IPv4 tunnelled to a real.
        let (c6, v6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:ff::9".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
        );
        let r6 = Rst {
            src: (IpAddr::V6(c6), 40000),
            dst: (IpAddr::V6(v6), 443),
            next_hop: IpAddr::V6(v6),
            seq: 7,
            ..r
        };
        let n = r6.write(&mut buf, A, B).unwrap();
        assert_eq!(n, 14 + 40 + 20);
        let pseudo = checksum::pseudo_header_v6(&c6, &v6, ip_proto::TCP, 20);
        assert!(checksum::verify(pseudo, &buf[54..n]));
        let tun = Rst {
            tunnel: Some(("192.0.2.2".parse().unwrap(), "192.0.2.21".parse().unwrap())),
            ..r
        };
        let n = tun.write(&mut buf, A, B).unwrap();
        assert_eq!(n, 14 + 20 + 40);
        assert_eq!(buf[23], ip_proto::IPIP);
        let outer = crate::packet::Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(usize::from(outer.total_len()), 60);
        let mixed = Rst {
            dst: (IpAddr::V6(v6), 1),
            ..r
        };
        assert_eq!(mixed.write(&mut buf, A, B), None);
    }

    #[test]
    fn notes_keep_the_highest_next_sequence_and_the_last_ack() {
        let key = FlowKey {
            service: 1,
            client: "203.0.113.9".parse().unwrap(),
            client_port: 40000,
            vport: 80,
            proto: L4::Tcp,
        };
        let seg = |seq: u32, ack: u32, flags: crate::packet::TcpFlags, payload: &[u8]| {
            builder::tcp4(&FrameSpec {
                seq,
                ack,
                tcp_flags: flags,
                payload: payload.to_vec(),
                ..FrameSpec::default()
            })
        };
        use crate::packet::TcpFlags as W;
        let mut m = SeqMark::default();
        let syn = seg(1000, 0, W::SYN, b"");
        note(&mut m, &key, &syn, 34, 40);
        assert_eq!((m.next, m.ack), (1001, 0), "SYN counts one; no ACK yet");
        let data = seg(1001, 5000, W::ACK | W::PSH, b"GET / HTTP/1.1\r\n\r\n");
        note(&mut m, &key, &data, 34, 40 + 18);
        assert_eq!((m.next, m.ack), (1019, 5000));
        // A retransmission of older data keeps the highest; a later ACK moves on.
        let old = seg(1001, 5200, W::ACK, b"GET");
        note(&mut m, &key, &old, 34, 43);
        assert_eq!((m.next, m.ack), (1019, 5200));
        // Wrapping sequence numbers.
        let mut w = SeqMark::default();
        note(&mut w, &key, &seg(u32::MAX - 1, 1, W::ACK, b"abcd"), 34, 44);
        assert_eq!(w.next, 2);
        // A new connection on the same ports (a SYN, its own initial
        // sequence number, maybe "before" the old one) starts afresh.
        let again = seg(50, 0, W::SYN, b"");
        note(&mut m, &key, &again, 34, 40);
        assert_eq!((m.next, m.ack), (51, 0));
        note(&mut m, &key, &seg(51, 9000, W::ACK, b""), 34, 40);
        assert_eq!((m.next, m.ack), (51, 9000));
        // Another flow in the same cell starts afresh.
        let other = FlowKey {
            client_port: 40001,
            ..key
        };
        note(&mut m, &other, &seg(9, 10, W::ACK, b""), 34, 40);
        assert_eq!((m.next, m.ack, m.tag), (9, 10, tag(&other)));
        assert_ne!(tag(&key), tag(&other));
    }
}
