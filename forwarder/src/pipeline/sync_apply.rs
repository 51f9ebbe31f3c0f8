//! Connection sync inside a worker: datagrams from the HA peer, records
//! routed to the worker that owns the flow, records applied to the tables,
//! and the flows this worker logs for the peer.

use super::*;

impl Tables {
    /// A connection-sync datagram to our own address: from the peer, it
    /// is applied record by record ([`Self::apply_sync`]) and consumed;
    /// from anyone else, or malformed, dropped and counted. `None`: not
    /// for the sync port (or no sync configured).
    pub(super) fn sync_datagram<B: PacketBuf>(
        &mut self,
        buf: &B,
        ip: &IpInfo,
        ctx: &Ctx<'_>,
    ) -> Option<Outcome> {
        let (spec, _) = ctx.snap.sync()?;
        if ip.proto != ip_proto::UDP {
            return None;
        }
        let l4 = ip.l4?;
        let f = buf.data();
        if f.len() < l4 + 8 || u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]) != spec.port {
            return None;
        }
        if ip.src != spec.peer {
            return Some(Outcome::Dropped(DropReason::SyncBadSource));
        }
        let ulen = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
        let end = l4 + ulen;
        if ulen < 8 || end > f.len() || end > 14 + ip.total_len {
            return Some(Outcome::Dropped(DropReason::SyncMalformed));
        }
        let has_sum = f[l4 + 6] != 0 || f[l4 + 7] != 0;
        if has_sum {
            let pseudo = match (ip.src, ip.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    crate::packet::checksum::pseudo_header_v4(s, d, ip_proto::UDP, ulen as u16)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    crate::packet::checksum::pseudo_header_v6(&s, &d, ip_proto::UDP, ulen as u32)
                }
                _ => return Some(Outcome::Dropped(DropReason::SyncMalformed)),
            };
            if !crate::packet::checksum::verify(pseudo, &f[l4..end]) {
                return Some(Outcome::Dropped(DropReason::SyncMalformed));
            }
        }
        let Ok((header, records)) = crate::sync::parse(&f[l4 + 8..end]) else {
            return Some(Outcome::Dropped(DropReason::SyncMalformed));
        };
        self.sync.note_received(&header);
        let me = usize::from(self.steer.me());
        for r in records {
            self.sync.counters.records_received += 1;
            let rec = match Record::decode(r) {
                Ok(rec) => rec,
                Err(_) => {
                    self.sync.counters.rejected += 1;
                    continue;
                }
            };
            // A NAT flow goes to the worker that owns it; a DR or TUN
            // flow to every worker (whichever the NIC hands its packets
            // to after a takeover).
            match self.sync_owner(&rec) {
                Some(o) if o != me => match self.fanout.get(o) {
                    Some(Some(ib)) => {
                        if !ib.push(r) {
                            self.sync.counters.fanout_dropped += 1;
                        }
                    }
                    _ => self.apply_sync(ctx.snap, ctx.now_ms, &rec),
                },
                Some(_) => self.apply_sync(ctx.snap, ctx.now_ms, &rec),
                None => {
                    for ib in self.fanout.iter().flatten() {
                        if !ib.push(r) {
                            self.sync.counters.fanout_dropped += 1;
                        }
                    }
                    self.apply_sync(ctx.snap, ctx.now_ms, &rec);
                }
            }
        }
        Some(Outcome::Consumed)
    }

    /// The worker that owns a synced flow, or `None` for one every worker
    /// should know (DR and TUN: its packets land where the NIC puts
    /// them).
    pub(super) fn sync_owner(&self, rec: &Record) -> Option<usize> {
        let st = self.steer;
        let o = match rec.nat {
            Nat::None => return None,
            Nat::Nat => st.client_owner(rec.key.client, rec.key.client_port),
            Nat::Snat(p) => st
                .snat_owner(p)
                .unwrap_or_else(|| st.client_owner(rec.key.client, rec.key.client_port)),
        };
        Some(usize::from(o))
    }

    /// The inboxes of the node's workers, by worker index (`None` for
    /// this one): records from the peer that this worker receives go to
    /// the worker that owns their flow, or to every worker (see
    /// `sync_owner`); each drains its inboxes with
    /// [`Self::drain_inbox`].
    pub fn set_fanout(&mut self, inboxes: Vec<Option<std::sync::Arc<Inbox>>>) {
        self.fanout = inboxes;
    }

    /// Applies at most `budget` records another worker passed on through
    /// `inbox`; returns how many. Malformed ones were counted by the
    /// receiving worker and are skipped silently here.
    pub fn drain_inbox(
        &mut self,
        snap: &Snapshot,
        now_ms: u64,
        inbox: &Inbox,
        budget: usize,
    ) -> usize {
        let mut rec = [0u8; crate::sync::RECORD_LEN];
        let mut n = 0;
        while n < budget && inbox.pop(&mut rec) {
            n += 1;
            if let Ok(r) = Record::decode(&rec) {
                self.apply_sync(snap, now_ms, &r);
            }
        }
        n
    }

    /// Installs, updates or removes the flow a record from the HA peer
    /// describes, with its reply index entry (NAT), its source-NAT port and
    /// its persistence entry, so that this node handles the flow's packets
    /// as the peer did. The service must be known here (balanced, or a
    /// BACKUP's standby service), with the record's protocol, mode and
    /// real; the expiry is `now` + the time the flow had left there
    /// (at most this node's timeout for the state). Counted in
    /// [`SyncLog::counters`]; never panics.
    pub fn apply_sync(&mut self, snap: &Snapshot, now_ms: u64, rec: &Record) {
        let c = match self.apply_record(snap, now_ms, rec) {
            Ok(()) => &mut self.sync.counters.applied,
            Err(true) => &mut self.sync.counters.unknown_service,
            Err(false) => &mut self.sync.counters.rejected,
        };
        *c += 1;
    }

    /// `Err(true)`: unknown service; `Err(false)`: refused.
    pub(super) fn apply_record(
        &mut self,
        snap: &Snapshot,
        now_ms: u64,
        rec: &Record,
    ) -> Result<(), bool> {
        let svc = snap.known_service(rec.key.service).ok_or(true)?;
        let proto: L4 = svc.spec().proto.into();
        let mode_ok = matches!(
            (svc.mode(), rec.nat),
            (Mode::Nat, Nat::Nat | Nat::Snat(_)) | (Mode::Dr | Mode::Tun, Nat::None)
        );
        let port_ok = svc.spec().port == 0 || svc.spec().port == rec.key.vport;
        if rec.key.proto != proto || !mode_ok || !port_ok {
            return Err(false);
        }
        let now = now_ms as u32;
        let h = self.conn.hash(&rec.key);
        let existing = match self.conn.lookup(now, &rec.key, h) {
            Lookup::Hit(id) => Some(id),
            Lookup::Expired(fr) => {
                self.release_flow(snap, now_ms, &fr);
                None
            }
            Lookup::Miss => None,
        };
        if rec.op == Op::Delete {
            if let Some(fr) = existing.and_then(|id| self.conn.remove(id)) {
                self.release_flow(snap, now_ms, &fr);
            }
            return Ok(());
        }
        // DR / TUN flows of a VIP on every port carry the client's port;
        // their reals are configured with port 0.
        let r = svc
            .resolve_target(RealIdx(0), rec.real, rec.real_port)
            .or_else(|| match svc.mode() {
                Mode::Nat => None,
                _ => svc.resolve_target(RealIdx(0), rec.real, 0),
            })
            .ok_or(false)?;
        let timeout = self.conn.timeout(svc.profile(), rec.state);
        let expiry = now.wrapping_add(rec.remaining_ms.min(timeout));
        if let Some(id) = existing {
            let e = self.conn.entry(id);
            if e.real() == rec.real && e.real_port() == rec.real_port && e.nat() == rec.nat {
                self.conn.restore(id, rec.state, expiry);
                if rec.persist {
                    self.persist.learn(now, svc, rec.key.client, r);
                }
                return Ok(());
            }
            // Bound elsewhere here: the peer's word wins.
            if let Some(fr) = self.conn.remove(id) {
                self.release_flow(snap, now_ms, &fr);
            }
        }
        if let Nat::Snat(p) = rec.nat {
            if !self.snat.reserve(p) {
                return Err(false);
            }
        }
        let value = FlowValue {
            real: rec.real,
            real_port: rec.real_port,
            real_hint: r,
            nat: rec.nat,
            state: rec.state,
            profile: svc.profile(),
        };
        let (conn, mut freeing) = self.freeing();
        let inserted = conn.insert(now, &rec.key, h, &value, |fr| {
            freeing.release(snap, now_ms, fr)
        });
        let Ok(id) = inserted else {
            if let Nat::Snat(p) = rec.nat {
                self.snat.free(p);
            }
            return Err(false);
        };
        self.conn.restore(id, rec.state, expiry);
        if let Some(si) = snap.vips.idx_by_id(rec.key.service) {
            if let Some(a) = self.active.get_mut(si).and_then(|v| v.get_mut(r.get())) {
                *a += 1;
            }
        }
        if rec.persist {
            self.persist.learn(now, svc, rec.key.client, r);
        }
        Ok(())
    }

    /// After a packet of flow `id` (`before` its touch, now in state
    /// `st`): logs it for the HA peer if its state changed or the peer's
    /// copy needs refreshing ([`SyncLog::stale`]).
    #[inline]
    pub(super) fn log_touched(
        &mut self,
        now_ms: u64,
        id: conntrack::FlowId,
        before_state: conntrack::State,
        before_synced: u32,
        st: conntrack::State,
    ) {
        if !self.sync.enabled() {
            return;
        }
        let timeout = self.conn.timeout_of(id, st);
        if st != before_state || self.sync.stale(before_synced, now_ms as u32, timeout) {
            self.log_flow(now_ms, Op::Update, id, false);
        }
    }

    /// Logs flow `id` for the HA peer (while sync is on).
    #[inline]
    pub(super) fn log_flow(&mut self, now_ms: u64, op: Op, id: conntrack::FlowId, persist: bool) {
        if !self.sync.enabled() {
            return;
        }
        self.conn.set_synced(id, now_ms as u32);
        let e = self.conn.entry(id);
        let remaining = e.expiry().wrapping_sub(now_ms as u32);
        self.sync.push(
            now_ms,
            &Record {
                op,
                key: e.key(),
                real: e.real(),
                real_port: e.real_port(),
                nat: e.nat(),
                state: e.state(),
                remaining_ms: remaining,
                persist,
            },
        );
    }
}
