//! A packet to a VIP: its flow looked up or scheduled (persistence,
//! scheduler, fallback, rejection), then rewritten and sent to its real;
//! and what a freed flow gives back.

use super::*;

impl Tables {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn balance<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        si: usize,
        sport: u16,
        dport: u16,
        flags: conntrack::TcpFlags,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
        known: Option<(u32, bool)>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        let now = ctx.now_ms as u32;
        // Both directions of a NAT flow are decided by the worker that
        // owns its client endpoint.
        if svc.mode() == Mode::Nat {
            if let Some(to) = self.steer.foreign_client(ctx.hops, ip.src, sport) {
                return self.hand_off(ip, to, now);
            }
        }
        let l4p: L4 = svc.spec().proto.into();
        let key = FlowKey {
            service: svc.id(),
            client: ip.src,
            client_port: sport,
            vport: dport,
            proto: l4p,
        };
        // From the burst path: the hash of the same key, and whether its
        // probe found the table without any flow of it.
        let (h, absent) = match known {
            Some(k) => k,
            None => (self.conn.hash(&key), false),
        };
        // The real, and the local port of a source-NAT flow.
        let mut bound: Option<(RealIdx, Option<u16>)> = None;
        let found = if absent {
            Lookup::Miss
        } else {
            self.conn.lookup(now, &key, h)
        };
        // The flow's cell, for `tcp_reset_on_idle`'s sequence numbers.
        let mut flow = None;
        match found {
            Lookup::Hit(id) => {
                flow = Some(id);
                let e = self.conn.entry(id);
                match svc.resolve_target(e.real_hint(), e.real(), e.real_port()) {
                    Some(r) if svc.keeps_flow(r) => {
                        if r != e.real_hint() {
                            self.conn.set_real_hint(id, r);
                        }
                        let st = self.conn.touch(id, now, Dir::Client, flags);
                        self.log_touched(ctx.now_ms, id, e.state(), e.synced(), st);
                        let snat = match e.nat() {
                            Nat::Snat(p) => Some(p),
                            _ => None,
                        };
                        bound = Some((r, snat));
                    }
                    // The real went down (under OnDown::Reschedule), was
                    // disabled or removed: the flow is rescheduled on this
                    // packet.
                    _ => {
                        if let Some(fr) = self.conn.remove(id) {
                            self.release_flow(snap, ctx.now_ms, &fr);
                        }
                    }
                }
            }
            Lookup::Expired(fr) => self.release_flow(snap, ctx.now_ms, &fr),
            Lookup::Miss => {}
        }
        let (real, snat) = match bound {
            Some(b) => b,
            None => {
                if let Some(rate) = svc.spec().new_flow_rate_limit {
                    let workers = self.steer.workers();
                    if !self.limits[si].take(&self.node_limits, ctx.now_ms, rate, workers) {
                        return Outcome::Dropped(DropReason::RateLimited);
                    }
                }
                let fh = service::hash::flow_hash(ip.src, sport, ip.dst, dport, ip.proto);
                let picked = svc.select(
                    now,
                    fh,
                    ip.src,
                    &mut self.sched[si],
                    &self.active[si],
                    &mut self.persist,
                );
                // No eligible real: the fallback, else a refusal.
                let (mut r, scheduled) = match picked {
                    Some(r) => (r, true),
                    None => match svc.usable_fallback() {
                        Some(f) => (f, false),
                        None => {
                            let o = local::reject(buf, ip, in_port.mac);
                            if o == Outcome::Answered {
                                self.counters[si].rejected += 1;
                            }
                            return o;
                        }
                    },
                };
                let mode = svc.mode();
                // Hairpin. DR / TUN: a real is not sent its own flow while
                // another can take it. NAT: a flow whose replies would
                // bypass the balancer is source-NATed.
                if scheduled && mode != Mode::Nat && svc.reals()[r.get()].addr == ip.src {
                    if let Some(o) =
                        hairpin::pick_other(svc, &mut self.sched[si], &self.active[si], fh, ip.src)
                    {
                        r = o;
                    }
                }
                let snat = if mode == Mode::Nat && hairpin::needs_snat(snap, si, r, ip.src) {
                    match self.snat.alloc() {
                        Some(p) => Some(p),
                        None => return Outcome::Dropped(DropReason::NoSnatPort),
                    }
                } else {
                    None
                };
                let Some(rs) = svc.target(r) else {
                    return Outcome::Dropped(DropReason::NoReal);
                };
                let nat = match (mode, snat) {
                    (Mode::Nat, Some(p)) => Nat::Snat(p),
                    (Mode::Nat, None) => Nat::Nat,
                    _ => Nat::None,
                };
                let value = FlowValue {
                    real: rs.addr,
                    real_port: if mode == Mode::Nat && rs.port != 0 {
                        rs.port
                    } else {
                        dport
                    },
                    real_hint: r,
                    nat,
                    state: conntrack::State::initial(l4p, flags),
                    profile: svc.profile(),
                };
                let now_ms = ctx.now_ms;
                let (conn, mut freeing) = self.freeing();
                let on_free = |fr: &conntrack::Freed| freeing.release(snap, now_ms, fr);
                let inserted = if absent {
                    conn.insert_absent(now, &key, h, &value, on_free)
                } else {
                    conn.insert(now, &key, h, &value, on_free)
                };
                let Ok(id) = inserted else {
                    if let Some(p) = snat {
                        self.snat.free(p);
                    }
                    return Outcome::Dropped(DropReason::ConnTableFull);
                };
                flow = Some(id);
                // The group's persistence entry names this real unless the
                // hairpin rule moved the flow off it.
                let persisted = scheduled && svc.persistence().is_some() && Some(r) == picked;
                self.log_flow(now_ms, Op::Add, id, persisted);
                if let Some(a) = self.active[si].get_mut(r.get()) {
                    *a += 1;
                }
                let c = &mut self.counters[si];
                c.new_flows += 1;
                if let Some(rc) = c.reals.get_mut(r.get()) {
                    rc[2] += 1;
                }
                // NAT replies go back to the client, and so does a
                // `tcp_reset_on_idle` RST: learn its MAC now (new flows
                // only) when it sits on a connected prefix.
                if (nat != Nat::None || svc.reset_on_idle()) && in_port.connected(ip.src).is_some()
                {
                    let src_mac = EthernetFrame::new_unchecked(buf.data()).src();
                    ctx.neigh.learn(ip.src, src_mac, ctx.now_ms, true);
                }
                (r, snat)
            }
        };
        if let (Some(id), Some(l4), true) = (flow, ip.l4, svc.reset_on_idle()) {
            if let Some(m) = self.marks.get_mut(id.0 as usize) {
                reset::note(m, &key, buf.data(), l4, ip.total_len);
            }
        }
        // The first fragment of a datagram: its later fragments follow.
        if let Some(fr) = ip.frag.filter(Frag::is_first) {
            let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
            let fwd = FragFwd::ToReal {
                snat: snat.is_some(),
            };
            let v = FragValue {
                si: si as u32,
                real,
                fwd,
            };
            self.frags.insert(now, &key, v, u32::from(fr.len));
        }
        self.deliver(buf, ip, si, real, dport, snat, in_port, ctx)
    }

    /// Counts and sends a client → real packet of service `si` to `real`,
    /// in the service's mode. NAT: the destination becomes the real (and
    /// its port, or `vport` for a real without one); with `snat`, the
    /// source becomes the balancer's address facing the real (and that
    /// port). A packet without an L4 header (a later fragment) has only
    /// its addresses rewritten, and any `snat` port is ignored.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        ip: &IpInfo,
        si: usize,
        real: RealIdx,
        vport: u16,
        snat: Option<u16>,
        in_port: &PortInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let snap = ctx.snap;
        let svc = &snap.vips.services()[si];
        // DR of IPv4, and NAT of a whole IPv4 TCP / UDP packet with a
        // 20-byte header to an IPv4 real: the delivery that fills the
        // per-target next-hop memo the burst path takes its plain hits
        // from (the same bytes and counts as below).
        if ip.src.is_ipv4() {
            match svc.mode() {
                Mode::Dr => return self.deliver_v4(buf, si, real, vport, snat, Mode::Dr, ctx),
                Mode::Nat if plain_nat(buf.data(), ip, svc.target(real)) => {
                    return self.deliver_v4(buf, si, real, vport, snat, Mode::Nat, ctx)
                }
                _ => {}
            }
        }
        let Some(rs) = svc.target(real) else {
            return Outcome::Dropped(DropReason::NoReal);
        };
        let len = buf.len() as u64;
        let c = &mut self.counters[si];
        c.packets_in += 1;
        c.bytes_in += len;
        if let Some(rc) = c.reals.get_mut(real.get()) {
            rc[0] += 1;
            rc[1] += len;
        }
        let Some(route) = snap.real_route(si, real) else {
            return Outcome::Dropped(DropReason::NoRoute);
        };
        match svc.mode() {
            Mode::Dr => send_via(&mut self.hops, buf, route, snap, ctx),
            Mode::Nat => {
                let frame = buf.data_mut();
                if !rewrite::decrement_ttl(frame, 14) {
                    return Outcome::Dropped(DropReason::TtlExceeded);
                }
                let port = if rs.port != 0 { rs.port } else { vport };
                rewrite::translate(frame, 14, ip.l4, ip.proto, Side::Dst, rs.addr, Some(port));
                if let Some(lport) = snat {
                    rewrite::translate(
                        frame,
                        14,
                        ip.l4,
                        ip.proto,
                        Side::Src,
                        route.src,
                        Some(lport),
                    );
                }
                send_via(&mut self.hops, buf, route, snap, ctx)
            }
            Mode::Tun => {
                let mtu = usize::from(snap.ports[usize::from(route.port)].mtu);
                let outer = if rs.addr.is_ipv4() { 20 } else { 40 };
                // Never answer an ICMP error with an ICMP error (RFC 1122
                // 3.2.2): errors too big to tunnel go as they are.
                let is_icmp = matches!(ip.proto, ip_proto::ICMP | ip_proto::ICMPV6);
                if ip.total_len + outer > mtu && ip.dont_frag && !is_icmp {
                    return local::too_big(buf, ip, (mtu - outer) as u16, in_port.mac);
                }
                if !rewrite::encapsulate(buf, route.src, rs.addr) {
                    return Outcome::Dropped(DropReason::NoHeadroom);
                }
                // IPv4 in IPv4: through the per-target next-hop memo,
                // which the burst path's tunnel takes from.
                if let (IpAddr::V4(src), IpAddr::V4(dst)) = (route.src, rs.addr) {
                    let t = snap.plan.base.get(si).map(|b| *b as usize + real.get());
                    let memo = t
                        .and_then(|t| self.fast_hops.get(t))
                        .filter(|m| ctx.now_ms < m.until);
                    if let Some(m) = memo {
                        let f = buf.data_mut();
                        f[0..12].copy_from_slice(&m.macs);
                        return Outcome::Forward { port: m.port };
                    }
                    return self.send_remembered(buf, t, route, Some((src, dst, mtu as u16)), ctx);
                }
                send_via(&mut self.hops, buf, route, snap, ctx)
            }
        }
    }
}

/// Whether [`rewrite::nat_v4`] may translate `frame` to `real`: a whole
/// IPv4 TCP or UDP packet (no fragment) with a 20-byte header, a TTL
/// that allows a hop, at least 54 bytes of frame, to an IPv4 real.
fn plain_nat(frame: &[u8], ip: &IpInfo, real: Option<&service::Real>) -> bool {
    ip.l4 == Some(34)
        && ip.frag.is_none()
        && !ip.frag_later
        && matches!(ip.proto, ip_proto::TCP | ip_proto::UDP)
        && frame.len() >= 54
        && frame[14] == 0x45
        && frame[22] > 1
        && real.is_some_and(|r| r.addr.is_ipv4())
}

impl Tables {
    /// Hands the frame, untouched, to worker `to`, which owns its state
    /// ([`crate::steer`]). A first fragment leaves a note here, so that
    /// the later fragments that land on this worker follow it, in order,
    /// through the same ring.
    #[cold]
    pub(crate) fn hand_off(&mut self, ip: &IpInfo, to: u16, now: u32) -> Outcome {
        if let Some(fr) = ip.frag.filter(Frag::is_first) {
            let key = FragKey::new(ip.src, ip.dst, ip.proto, fr.ident);
            let v = FragValue {
                si: 0,
                real: RealIdx(0),
                fwd: FragFwd::Handoff { to },
            };
            self.frags.insert(now, &key, v, u32::from(fr.len));
        }
        Outcome::handoff(to)
    }
}

/// Lowers the active count of a freed flow's real and returns its
/// source-NAT port to the pool.
impl Tables {
    /// [`release`] on this worker's own counts, port pool and sync log.
    #[inline]
    pub(crate) fn release_flow(&mut self, snap: &Snapshot, now_ms: u64, f: &conntrack::Freed) {
        self.freeing().1.release(snap, now_ms, f);
    }

    /// The connection table, and apart from it what a flow it frees gives
    /// back to ([`Freeing`]).
    pub(super) fn freeing(&mut self) -> (&mut ConnTable, Freeing<'_>) {
        (
            &mut self.conn,
            Freeing {
                active: &mut self.active,
                snat: &mut self.snat,
                sync: &mut self.sync,
                marks: &mut self.marks,
                resets: &mut self.resets,
            },
        )
    }
}

/// What a freed flow gives back to: its real's active count, its
/// source-NAT port, the sync log, and its `tcp_reset_on_idle` notes.
pub(super) struct Freeing<'a> {
    active: &'a mut [Vec<u32>],
    snat: &'a mut SnatPorts,
    sync: &'a mut SyncLog,
    marks: &'a mut [reset::SeqMark],
    resets: &'a mut reset::Resets,
}

impl Freeing<'_> {
    /// [`release`], and the RSTs of an idle `tcp_reset_on_idle` flow.
    pub(super) fn release(&mut self, snap: &Snapshot, now_ms: u64, f: &conntrack::Freed) {
        reset::on_free(snap, self.marks, self.resets, f);
        release(snap, self.active, self.snat, self.sync, now_ms, f);
    }
}

fn release(
    snap: &Snapshot,
    active: &mut [Vec<u32>],
    snat: &mut SnatPorts,
    sync: &mut SyncLog,
    now_ms: u64,
    f: &conntrack::Freed,
) {
    if sync.enabled() {
        sync.push(
            now_ms,
            &Record {
                op: Op::Delete,
                key: f.key,
                real: f.real,
                real_port: f.real_port,
                nat: f.nat,
                state: f.state,
                remaining_ms: 0,
                persist: false,
            },
        );
    }
    if let Nat::Snat(p) = f.nat {
        snat.free(p);
    }
    if let Some(si) = snap.vips.idx_by_id(f.key.service) {
        let svc = &snap.vips.services()[si];
        if let Some(r) = svc.resolve_target(f.real_hint, f.real, f.real_port) {
            if let Some(a) = active.get_mut(si).and_then(|v| v.get_mut(r.get())) {
                *a = a.saturating_sub(1);
            }
        }
    }
}
