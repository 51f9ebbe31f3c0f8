//! ICMP errors about tracked flows: path MTU discovery through the
//! balancer.
//!
//! An error quotes the start of the packet that caused it. Three cases
//! are handled (ICMPv4 destination unreachable, fragmentation needed
//! included, and time exceeded; ICMPv6 destination unreachable, packet
//! too big and time exceeded); other error types are not forwarded.
//!
//! * **To a VIP** (a router between the balancer's peers and a client
//!   could not deliver a reply `VIP:vport -> client:cport`, sent by a DR
//!   or TUN real, or translated back by NAT): the quote gives the flow's
//!   forward key (client = quoted destination, vport = quoted source
//!   port, service from the VIP table). The error goes to the flow's
//!   real: DR by MAC, TUN encapsulated, NAT translated as the real's own
//!   reply was before the balancer: outer destination VIP -> real, quoted
//!   source `VIP:vport -> real:rport` (and, for a source-NAT flow, quoted
//!   destination `client:cport -> local:lport`), with the quoted IPv4
//!   header checksum, the quoted TCP/UDP checksum when quoted, and the
//!   ICMP checksum updated incrementally. Errors about no flow are
//!   dropped ([`DropReason::IcmpNoFlow`]).
//! * **From a NAT real's side toward a client** (quoted `client:cport ->
//!   real:rport`): found by the reply key, translated back (quoted
//!   destination -> `VIP:vport`, outer source -> VIP, as IPVS does) and
//!   sent to the client.
//! * **To our own address about a source-NAT flow** (quoted `local:lport
//!   -> real:rport`): translated back to the client's view (quoted
//!   `client:cport -> VIP:vport`, outer `VIP -> client`).
//!
//! Errors never refresh a flow's timeout.

use std::net::IpAddr;

use super::rewrite::{self, Quote, Side};
use super::Tables;
use super::{hairpin, is_vip_addr, send, Ctx, DropReason, IpInfo, Outcome, PortInfo};
use crate::buffer::PacketBuf;
use crate::conntrack::{FlowKey, Lookup, Nat, ReplyKey, L4};
use crate::packet::ipv4::Ipv4Packet;
use crate::packet::ipv6::Ipv6Packet;
use crate::packet::{icmp, icmpv6, ip_proto};
use crate::service::{Mode, Proto};

/// An ICMP error and the flow tuple it quotes.
#[derive(Debug, Clone, Copy)]
struct Quoted {
    at: Quote,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

/// What an ICMP message is to this module.
enum Parsed {
    /// Not an error message (echo and friends): someone else's.
    NotError,
    /// An error that cannot be about a flow.
    Bad(DropReason),
    /// An error quoting a TCP / UDP packet.
    Error(Quoted),
}

/// Parses the ICMP message of `ip` and the packet it quotes.
fn parse(frame: &[u8], ip: &IpInfo) -> Parsed {
    let Some(at) = ip.l4 else {
        return Parsed::NotError;
    };
    let end = (14 + ip.total_len).min(frame.len());
    if end < at + 8 {
        return Parsed::Bad(DropReason::Malformed);
    }
    let ty = frame[at];
    let v6 = ip.proto == ip_proto::ICMPV6;
    let (is_error, handled) = if v6 {
        (
            ty < 128,
            matches!(
                ty,
                icmpv6::DEST_UNREACHABLE | icmpv6::PACKET_TOO_BIG | icmpv6::TIME_EXCEEDED
            ),
        )
    } else {
        (
            icmp::is_error_type(ty),
            matches!(ty, icmp::DEST_UNREACHABLE | icmp::TIME_EXCEEDED),
        )
    };
    if !is_error {
        return Parsed::NotError;
    }
    if !handled {
        return Parsed::Bad(DropReason::Unsupported);
    }
    let l3 = at + 8;
    let quote = &frame[l3..end];
    let (src, dst, proto, l4) = if v6 {
        let Ok(q) = Ipv6Packet::new_quoted(quote) else {
            return Parsed::Bad(DropReason::Malformed);
        };
        let Ok(up) = q.upper_layer() else {
            return Parsed::Bad(DropReason::Malformed);
        };
        if up.fragment.is_some_and(|f| !f.is_first()) {
            return Parsed::Bad(DropReason::Fragment);
        }
        (
            IpAddr::V6(q.src()),
            IpAddr::V6(q.dst()),
            up.protocol,
            l3 + up.offset,
        )
    } else {
        let Ok(q) = Ipv4Packet::new_quoted(quote) else {
            return Parsed::Bad(DropReason::Malformed);
        };
        if q.frag_offset() != 0 {
            return Parsed::Bad(DropReason::Fragment);
        }
        (
            IpAddr::V4(q.src()),
            IpAddr::V4(q.dst()),
            q.protocol(),
            l3 + q.header_len(),
        )
    };
    if !matches!(proto, ip_proto::TCP | ip_proto::UDP) {
        return Parsed::Bad(DropReason::Unsupported);
    }
    let Some((sport, dport)) = frame.get(l4..end).and_then(icmp::quoted_ports) else {
        return Parsed::Bad(DropReason::Malformed);
    };
    Parsed::Error(Quoted {
        at: Quote {
            icmp: at,
            end,
            l3,
            l4,
            proto,
        },
        src,
        dst,
        sport,
        dport,
    })
}

impl Tables {
    /// An ICMP message not addressed to us: an error about a flow is
    /// forwarded (to a VIP: to the real; otherwise from a NAT real's side:
    /// to the client) or dropped; `None` if it is not an error.
    pub(super) fn icmp_error<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        let q = match parse(buf.data(), ip) {
            Parsed::NotError => return None,
            Parsed::Bad(r) => {
                return Some(Outcome::Dropped(if is_vip_addr(ctx.snap, ip.dst) {
                    r
                } else {
                    DropReason::NotOurs
                }))
            }
            Parsed::Error(q) => q,
        };
        Some(if is_vip_addr(ctx.snap, ip.dst) {
            self.icmp_to_real(buf, ip, &q, in_port, ctx)
        } else {
            self.icmp_to_client(buf, ip, &q, ctx)
        })
    }

    /// An error to a VIP about `VIP:vport -> client:cport`.
    fn icmp_to_real<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        q: &Quoted,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let no_flow = Outcome::Dropped(DropReason::IcmpNoFlow);
        let Some(proto) = Proto::from_number(q.at.proto) else {
            return no_flow;
        };
        if q.src != ip.dst {
            return no_flow;
        }
        let Some(si) = snap.vips.lookup_idx(q.src, proto, q.sport) else {
            return no_flow;
        };
        let si = si.0 as usize;
        let svc = &snap.vips.services()[si];
        if svc.mode() == Mode::Nat {
            if let Some(to) = self.steer.foreign_client(ctx.hops, q.dst, q.dport) {
                return Outcome::handoff(to);
            }
        }
        let key = FlowKey {
            service: svc.id(),
            client: q.dst,
            client_port: q.dport,
            vport: q.sport,
            proto: proto.into(),
        };
        let now = ctx.now_ms as u32;
        let h = self.conn.hash(&key);
        // A DR or TUN flow lives where the client's packets land, which
        // only the NIC knows: a worker without it asks the next.
        let no_flow = match (svc.mode(), self.steer.probe_next(ctx.hops)) {
            (Mode::Dr | Mode::Tun, Some(to)) => Outcome::handoff(to),
            _ => no_flow,
        };
        let e = match self.conn.lookup(now, &key, h) {
            Lookup::Hit(id) => self.conn.entry(id),
            Lookup::Expired(fr) => {
                self.release_flow(snap, ctx.now_ms, &fr);
                return no_flow;
            }
            Lookup::Miss => return no_flow,
        };
        let Some(real) = svc
            .resolve_target(e.real_hint(), e.real(), e.real_port())
            .filter(|r| svc.keeps_flow(*r))
        else {
            return no_flow;
        };
        if svc.mode() != Mode::Nat {
            return self.deliver(buf, ip, si, real, 0, None, in_port, ctx);
        }
        // NAT: make it the error the real would get about its own reply.
        let Some(route) = snap.real_route(si, real) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        let frame = buf.data_mut();
        if !rewrite::decrement_ttl(frame, 14) {
            return Outcome::Dropped(DropReason::TtlExceeded);
        }
        rewrite::translate_quoted(frame, &q.at, Side::Src, e.real(), e.real_port());
        if let Nat::Snat(lport) = e.nat() {
            rewrite::translate_quoted(frame, &q.at, Side::Dst, route.src, lport);
        }
        hairpin::set_dst(frame, ip, e.real());
        let len = frame.len() as u64;
        let c = &mut self.counters[si];
        c.packets_in += 1;
        c.bytes_in += len;
        if let Some(rc) = c.reals.get_mut(real.get()) {
            rc[0] += 1;
            rc[1] += len;
        }
        send(buf, route, snap, ctx)
    }

    /// An error from a NAT real's side about `client:cport -> real:rport`,
    /// on its way to the client.
    fn icmp_to_client<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        q: &Quoted,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let not_ours = Outcome::Dropped(DropReason::NotOurs);
        let Some(proto) = Proto::from_number(q.at.proto) else {
            return not_ours;
        };
        // The error goes to the quoted packet's source: the client.
        if q.src != ip.dst {
            return not_ours;
        }
        if let Some(to) = self.steer.foreign_client(ctx.hops, q.src, q.sport) {
            return Outcome::handoff(to);
        }
        let key = ReplyKey::Nat {
            real: q.dst,
            real_port: q.dport,
            client: q.src,
            client_port: q.sport,
            proto: proto.into(),
        };
        self.icmp_back(buf, ip, q, &key, ctx).unwrap_or(not_ours)
    }

    /// An ICMP message to our own address: an error about a source-NAT
    /// flow (quoted `local:lport -> real:rport`) goes to the client;
    /// `None` leaves it to the kernel.
    pub(super) fn icmp_snat_error<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        let Parsed::Error(q) = parse(buf.data(), ip) else {
            return None;
        };
        if q.src != ip.dst {
            return None;
        }
        if let Some(to) = self.steer.foreign_snat(ctx.hops, q.sport) {
            return Some(Outcome::handoff(to));
        }
        if !self.snat.contains(q.sport) {
            return None;
        }
        let proto: L4 = Proto::from_number(q.at.proto)?.into();
        let key = ReplyKey::Snat {
            real: q.dst,
            real_port: q.dport,
            local_port: q.sport,
            proto,
        };
        self.icmp_back(buf, ip, &q, &key, ctx)
    }

    /// Translates an error about the real's leg of a NAT / SNAT flow back
    /// to the client's view and sends it to the client; `None` when no
    /// flow owns `key`.
    fn icmp_back<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        q: &Quoted,
        key: &ReplyKey,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outcome> {
        let snap = ctx.snap;
        let now = ctx.now_ms as u32;
        let h = self.conn.hash_reply(key);
        let e = match self.conn.lookup_reply(now, key, h) {
            Lookup::Hit(id) => self.conn.entry(id),
            Lookup::Expired(fr) => {
                self.release_flow(snap, ctx.now_ms, &fr);
                return None;
            }
            Lookup::Miss => return None,
        };
        let si = snap.vips.idx_by_id(e.service())?;
        let vip = snap.vips.services()[si].spec().vip;
        let client = e.client();
        let frame = buf.data_mut();
        if !rewrite::decrement_ttl(frame, 14) {
            return Some(Outcome::Dropped(DropReason::TtlExceeded));
        }
        rewrite::translate_quoted(frame, &q.at, Side::Dst, vip, e.vport());
        hairpin::set_src(frame, ip, vip);
        if let Nat::Snat(_) = e.nat() {
            rewrite::translate_quoted(frame, &q.at, Side::Src, client, e.client_port());
            hairpin::set_dst(frame, ip, client);
        }
        let len = frame.len() as u64;
        let c = &mut self.counters[si];
        c.packets_out += 1;
        c.bytes_out += len;
        let Some(route) = snap.route(client) else {
            return Some(Outcome::Dropped(DropReason::NoRoute));
        };
        Some(send(buf, route, snap, ctx))
    }
}
