//! Connection sync through the pipeline: flows a MASTER logs, carried in
//! real sync datagrams to a BACKUP, are handled there after a takeover
//! exactly as on the MASTER (byte for byte); bad datagrams and records are
//! counted, never applied.

use super::*;
use crate::sync::{self, Record, SyncSpec};

const MASTER4: &str = "192.0.2.3";
const CLIENT_PORT: u16 = 40000;
/// The service-set fingerprint both test nodes carry.
const FINGERPRINT: u64 = 0x0123_4567_89ab_cdef;

fn sync_spec(send: bool) -> SyncSpec {
    SyncSpec {
        peer: IpAddr::V4(v4(MASTER4)),
        port: sync::DEFAULT_PORT,
        send,
        fingerprint: FINGERPRINT,
    }
}

/// NAT TCP and UDP services with round-robin (no agreement between nodes
/// without sync), and a persistent DR service.
fn specs() -> Vec<ServiceSpec> {
    let mut nat = svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(3, 8080));
    nat.scheduler = SchedulerKind::Rr;
    let mut dr = svc(2, VIP4, Proto::Tcp, 443, Mode::Dr, reals4(3, 443));
    dr.persistence = Some(Persistence {
        timeout_secs: 300,
        v4_prefix: 24,
        v6_prefix: 64,
    });
    vec![nat, dr]
}

fn master() -> Rig {
    let mut r = Rig::small(specs());
    r.snap = snapshot(specs()).with_sync(sync_spec(true));
    r.tables = Tables::new(1024, &r.snap);
    r
}

/// A BACKUP: no balanced service, the configured ones on standby.
fn backup_snapshot() -> Snapshot {
    Snapshot::new(
        1,
        vec![PortInfo {
            vips: Vec::new(),
            ..port_info()
        }],
        VipTable::build(Vec::new(), 1).unwrap(),
    )
    .with_standby(VipTable::build(specs(), 1).unwrap())
    .with_sync(sync_spec(false))
}

fn backup() -> Rig {
    let mut r = Rig::small(Vec::new());
    r.snap = backup_snapshot();
    r.tables = Tables::new(1024, &r.snap);
    r
}

/// The BACKUP takes over: it adopts the owner's snapshot.
fn take_over(r: &mut Rig) {
    let new = snapshot(specs()).with_sync(SyncSpec {
        send: true,
        ..sync_spec(false)
    });
    r.tables.adopt(&r.snap, &new);
    r.snap = new;
}

/// A sync datagram from `src` to the backup's own address.
fn sync_frame(payload: &[u8], src: &str) -> Vec<u8> {
    let mut f = vec![0u8; 42 + payload.len()];
    f[42..].copy_from_slice(payload);
    sync::write_udp4_frame(
        &mut f,
        LB.0,
        GW_MAC.0,
        (v4(src), sync::DEFAULT_PORT),
        (v4("192.0.2.2"), sync::DEFAULT_PORT),
        payload.len(),
        1,
    );
    f
}

/// Everything the master logged, as datagrams.
fn drain(m: &mut Rig) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; sync::MAX_PAYLOAD];
    loop {
        let n = m.tables.sync.take_batch(&mut buf, 0, m.now);
        if n == 0 {
            return out;
        }
        out.push(sync_frame(&buf[..n], MASTER4));
    }
}

fn reply4(real: u8, payload: &[u8]) -> Vec<u8> {
    builder::tcp4(&FrameSpec {
        src_mac: real_mac(real),
        dst_mac: LB,
        src: Ipv4Addr::new(192, 0, 2, 20 + real),
        dst: v4(CLIENT4),
        src_port: 8080,
        dst_port: CLIENT_PORT,
        tcp_flags: WireFlags::ACK,
        payload: payload.to_vec(),
        ..FrameSpec::default()
    })
}

#[test]
fn a_synced_nat_flow_is_rewritten_on_the_backup_as_on_the_master() {
    let mut m = master();
    // Round robin: a first flow takes real 1, ours takes real 2.
    let other = builder::tcp4(&tcp4(CLIENT4, 1111, VIP4, 80, WireFlags::SYN));
    assert!(matches!(m.run(&other).0, Outcome::Forward { .. }));
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::SYN));
    let (o, out) = m.run(&syn);
    assert_eq!(o, Outcome::Forward { port: 0 });
    let real = Rig::real_of(&out);
    assert_eq!(real, 2);
    let ack = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::ACK));
    m.run(&ack);
    // Two adds and one update (SynRecv -> Established) wait.
    assert_eq!(m.tables.sync.len(), 3);

    let data = builder::tcp4(&tcp4(
        CLIENT4,
        CLIENT_PORT,
        VIP4,
        80,
        WireFlags::ACK | WireFlags::PSH,
    ));
    let (mo, m_fwd) = m.run(&data);
    let reply = reply4(real, b"answer");
    let (ro, m_back) = m.run(&reply);
    assert_eq!(
        (mo, ro),
        (Outcome::Forward { port: 0 }, Outcome::Forward { port: 0 })
    );

    // Without sync, a BACKUP that takes over knows nothing of the flow:
    // the real's next segment is dropped, and round robin would send the
    // client's to real 1.
    let mut cold = backup();
    take_over(&mut cold);
    assert_eq!(cold.run(&reply).0, Outcome::Dropped(DropReason::NotOurs));
    assert_eq!(Rig::real_of(&cold.run(&data).1), 1);

    // With sync.
    let mut b = backup();
    let frames = drain(&mut m);
    assert_eq!(frames.len(), 1);
    b.now = 777_000; // clocks differ: only remaining times travel
    for f in &frames {
        assert_eq!(b.run(f).0, Outcome::Consumed);
    }
    let c = b.tables.sync.counters;
    assert_eq!((c.records_received, c.applied, c.rejected), (3, 3, 0));
    assert_eq!(b.tables.conn.len(), 2);
    // Still BACKUP: nothing is balanced.
    assert_eq!(b.run(&data).0, Outcome::Dropped(DropReason::NotOurs));
    take_over(&mut b);
    assert_eq!(b.tables.active[0], vec![1, 1, 0], "synced flows counted");
    let (bo, b_fwd) = b.run(&data);
    assert_eq!(bo, mo);
    assert_eq!(b_fwd, m_fwd, "client -> real rewritten as on the master");
    let (bo, b_back) = b.run(&reply);
    assert_eq!(bo, ro);
    assert_eq!(b_back, m_back, "real -> client rewritten as on the master");
    let e = b
        .tables
        .conn
        .live()
        .find(|e| e.client_port() == CLIENT_PORT)
        .unwrap();
    assert_eq!(e.state(), conntrack::State::Established);
    let left = e.expiry().wrapping_sub(b.now as u32);
    assert!(left > 899_000 && left <= 900_000, "{left}");
}

#[test]
fn deletes_persistence_and_counters() {
    let mut m = master();
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 443, WireFlags::SYN));
    let (_, out) = m.run(&syn);
    let real = Rig::real_of(&out);
    let mut b = backup();
    for f in drain(&mut m) {
        assert_eq!(b.run(&f).0, Outcome::Consumed);
    }
    assert_eq!(b.tables.conn.len(), 1);
    take_over(&mut b);
    // Another client of the same /24 follows the synced persistence entry.
    let mut picked = std::collections::BTreeSet::new();
    for p in 0..20u16 {
        let s = builder::tcp4(&tcp4("203.0.113.99", 2000 + p, VIP4, 443, WireFlags::SYN));
        picked.insert(Rig::real_of(&b.run(&s).1));
    }
    assert_eq!(picked.into_iter().collect::<Vec<_>>(), vec![real]);
    assert!(b.tables.persist.counters().hits >= 20);

    // An RST ends the flow on the master; the delete reaches the backup.
    let mut b = backup();
    let mut m = master();
    m.run(&syn);
    let rst = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 443, WireFlags::RST));
    m.run(&rst);
    let id = m.tables.conn.live().next().map(|e| e.key()).unwrap();
    let h = m.tables.conn.hash(&id);
    let fid = m.tables.conn.lookup(m.now as u32, &id, h).hit().unwrap();
    let fr = m.tables.conn.remove(fid).unwrap();
    let (snap, t) = (&m.snap, &mut m.tables);
    t.release_flow(snap, m.now, &fr);
    for f in drain(&mut m) {
        assert_eq!(b.run(&f).0, Outcome::Consumed);
    }
    let c = b.tables.sync.counters;
    assert_eq!(
        (c.records_received, c.applied),
        (3, 3),
        "add, update, delete"
    );
    assert!(b.tables.conn.is_empty());
}

#[test]
fn bad_sync_datagrams_and_records_are_counted_never_applied() {
    let mut m = master();
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::SYN));
    m.run(&syn);
    let mut buf = [0u8; sync::MAX_PAYLOAD];
    let n = m.tables.sync.take_batch(&mut buf, 0, m.now);
    let good = buf[..n].to_vec();
    let mut b = backup();

    // Not from the peer.
    let f = sync_frame(&good, "192.0.2.66");
    assert_eq!(b.run(&f).0, Outcome::Dropped(DropReason::SyncBadSource));
    // Bad magic; a payload one byte short; a UDP length beyond the IP
    // packet; a bad checksum.
    let mut bad = good.clone();
    bad[0] ^= 1;
    let f = sync_frame(&bad, MASTER4);
    assert_eq!(b.run(&f).0, Outcome::Dropped(DropReason::SyncMalformed));
    let f = sync_frame(&good[..good.len() - 1], MASTER4);
    assert_eq!(b.run(&f).0, Outcome::Dropped(DropReason::SyncMalformed));
    let mut f = sync_frame(&good, MASTER4);
    let ulen = u16::from_be_bytes([f[38], f[39]]) + 1;
    f[38..40].copy_from_slice(&ulen.to_be_bytes());
    f.push(0);
    assert_eq!(b.run(&f).0, Outcome::Dropped(DropReason::SyncMalformed));
    let f = sync_frame(&good, MASTER4);
    let mut flipped = f.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x40;
    assert_eq!(
        b.run(&flipped).0,
        Outcome::Dropped(DropReason::SyncMalformed)
    );
    assert!(b.tables.conn.is_empty());

    // Records: an unknown service is skipped; a mode that does not match
    // the service, a real it does not have, and garbage are refused.
    let mut r = Record::decode(&good[sync::HEADER_LEN..]).unwrap();
    let mut recs = Vec::new();
    r.key.service = 99;
    recs.push(r);
    r.key.service = 1;
    r.nat = Nat::None;
    recs.push(r);
    r.nat = Nat::Nat;
    r.real = IpAddr::V4(v4("192.0.2.99"));
    recs.push(r);
    let mut log = SyncLog::new(8);
    log.set_enabled(true);
    for x in &recs {
        log.push(0, x);
    }
    let n = log.take_batch(&mut buf, 0, 0);
    buf[sync::HEADER_LEN + 2 * sync::RECORD_LEN] = 9; // third record: bad op
    assert_eq!(b.run(&sync_frame(&buf[..n], MASTER4)).0, Outcome::Consumed);
    let c = b.tables.sync.counters;
    assert_eq!(
        (c.records_received, c.applied, c.unknown_service, c.rejected),
        (3, 0, 1, 2)
    );
    assert!(b.tables.conn.is_empty());
    // And the good one applies.
    assert_eq!(b.run(&sync_frame(&good, MASTER4)).0, Outcome::Consumed);
    assert_eq!(b.tables.sync.counters.applied, 1);
    // Without [ha].sync_peer the port is nothing special: the kernel's.
    let mut plain = Rig::small(specs());
    assert_eq!(plain.run(&sync_frame(&good, MASTER4)).0, Outcome::ToKernel);
}

#[test]
fn a_backup_logs_nothing_and_a_master_logs_only_with_a_peer() {
    let mut b = backup();
    take_over(&mut b);
    assert!(b.tables.sync.enabled());
    let mut plain = Rig::small(specs());
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::SYN));
    plain.run(&syn);
    assert!(plain.tables.sync.is_empty() && !plain.tables.sync.enabled());
    let back = snapshot(specs());
    b.tables.adopt(&b.snap, &back);
    assert!(!b.tables.sync.enabled());
}

/// Worker `w` of `n` of a BACKUP.
fn backup_worker(w: u16, n: u16) -> Rig {
    let mut r = backup();
    r.tables = Tables::for_worker(1024, &r.snap, crate::steer::Steer::new(w, n));
    r
}

#[test]
fn with_several_workers_nat_flows_go_to_their_owner_and_dr_flows_to_every_worker() {
    let st = crate::steer::Steer::new(0, 2);
    // Client ports whose NAT flows worker 0, then worker 1, owns.
    let ports: Vec<u16> = (0..2u16)
        .map(|o| {
            (CLIENT_PORT..u16::MAX)
                .find(|&p| st.client_owner(IpAddr::V4(v4(CLIENT4)), p) == o)
                .unwrap()
        })
        .collect();
    let mut m = master();
    let mut sent = Vec::new();
    for &p in &ports {
        for vport in [80, 443] {
            let syn = builder::tcp4(&tcp4(CLIENT4, p, VIP4, vport, WireFlags::SYN));
            let (_, fwd) = m.run(&syn);
            sent.push((syn, fwd, p, vport));
        }
    }
    let frames = drain(&mut m);
    // Worker 0 receives every datagram.
    let mut w = [backup_worker(0, 2), backup_worker(1, 2)];
    let to1 = std::sync::Arc::new(sync::Inbox::new(16));
    w[0].tables
        .set_fanout(vec![None, Some(std::sync::Arc::clone(&to1))]);
    for f in &frames {
        assert_eq!(w[0].run(f).0, Outcome::Consumed);
    }
    let snap = backup_snapshot();
    // Worker 1 gets its NAT flow and both DR flows; worker 0 applied its
    // own NAT flow and both DR flows.
    assert_eq!(w[1].tables.drain_inbox(&snap, 5000, &to1, 64), 3);
    assert_eq!(w[1].tables.drain_inbox(&snap, 5000, &to1, 64), 0);
    assert_eq!(w[0].tables.sync.counters.applied, 3);
    assert_eq!(w[1].tables.sync.counters.applied, 3);
    for r in &mut w {
        take_over(r);
    }
    for (syn, fwd, p, vport) in &sent {
        let owner = usize::from(st.client_owner(IpAddr::V4(v4(CLIENT4)), *p));
        let holders: Vec<usize> = if *vport == 80 {
            vec![owner]
        } else {
            vec![0, 1]
        };
        for h in holders {
            assert_eq!(
                &w[h].run(syn).1,
                fwd,
                "worker {h} handles {p}->{vport} as the master did"
            );
        }
    }
    // A full inbox is counted on the receiving worker.
    let tiny = std::sync::Arc::new(sync::Inbox::new(1));
    let mut w0 = backup_worker(0, 2);
    w0.tables.set_fanout(vec![None, Some(tiny)]);
    let mut log = SyncLog::new(4);
    log.set_enabled(true);
    let mut buf = [0u8; sync::MAX_PAYLOAD];
    // The DR record (every worker) twice: the second finds the inbox full.
    let dr = frames
        .iter()
        .flat_map(|f| {
            f[42 + sync::HEADER_LEN..]
                .chunks(sync::RECORD_LEN)
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
        })
        .map(|c| Record::decode(&c).unwrap())
        .find(|r| r.key.vport == 443)
        .unwrap();
    log.push(0, &dr);
    log.push(0, &dr);
    let n = log.take_batch(&mut buf, 0, 0);
    w0.run(&sync_frame(&buf[..n], MASTER4));
    assert_eq!(w0.tables.sync.counters.fanout_dropped, 1);
}

#[test]
fn long_lived_flows_are_described_again_and_all_of_them_after_a_takeover() {
    let mut m = master();
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::SYN));
    let ack = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::ACK));
    m.run(&syn);
    m.run(&ack);
    drain(&mut m);
    // Packets of an established flow log nothing ...
    m.now += 1000;
    m.run(&ack);
    assert!(m.tables.sync.is_empty());
    // ... until half its timeout (900 s) has passed since it was logged.
    m.now += 450_000;
    m.run(&ack);
    assert_eq!(m.tables.sync.len(), 1);
    m.run(&ack);
    assert_eq!(m.tables.sync.len(), 1, "once");

    // A BACKUP that took over describes the flows it holds on their next
    // packet, so the old master, back as BACKUP, learns them.
    let mut b = backup();
    for f in drain(&mut m) {
        b.run(&f);
    }
    b.now = 50_000;
    let new = snapshot(specs()).with_sync(SyncSpec {
        send: true,
        ..sync_spec(false)
    });
    b.tables.adopt_at(&b.snap, &new, b.now);
    b.snap = new;
    b.now += 10;
    b.run(&ack);
    assert_eq!(b.tables.sync.len(), 1);
    b.run(&ack);
    assert_eq!(b.tables.sync.len(), 1, "once");
}

#[test]
fn dr_and_tun_flows_need_no_sync_maglev_agrees_on_both_nodes() {
    for mode in [Mode::Dr, Mode::Tun] {
        let specs = vec![svc(3, VIP4, Proto::Tcp, 80, mode, reals4(5, 80))];
        let mut m = Rig::small(specs.clone());
        // Another node with the same configuration, which never saw the
        // flows: it picks each up from a mid-stream segment.
        let mut b = Rig::small(specs);
        b.now = 99_000;
        let mut reals = std::collections::BTreeSet::new();
        for p in 0..64u16 {
            let syn = builder::tcp4(&tcp4(CLIENT4, 30000 + p, VIP4, 80, WireFlags::SYN));
            let data = builder::tcp4(&tcp4(
                CLIENT4,
                30000 + p,
                VIP4,
                80,
                WireFlags::ACK | WireFlags::PSH,
            ));
            m.run(&syn);
            let (mo, m_out) = m.run(&data);
            let (bo, b_out) = b.run(&data);
            assert_eq!(
                (mo, bo),
                (Outcome::Forward { port: 0 }, Outcome::Forward { port: 0 })
            );
            assert_eq!(b_out, m_out, "{mode:?} flow {p}: same real, same frame");
            reals.insert(Rig::real_of(&m_out));
        }
        assert!(reals.len() >= 4, "{mode:?}: flows spread over {reals:?}");
        assert_eq!(
            b.tables.conn.by_state()[conntrack::State::Established as usize],
            64,
            "picked up mid-stream as established"
        );
    }
}

#[test]
fn an_idle_node_sends_hellos_and_each_side_compares_fingerprints() {
    // A BACKUP logs no flow, but says hello once a second with its
    // fingerprint; the MASTER's pipeline takes the hello in.
    let mut b = backup();
    let mut buf = [0u8; sync::MAX_PAYLOAD];
    assert!(b.tables.sync.due(b.now), "first hello at once");
    let n = b.tables.sync.take_batch(&mut buf, 0, b.now);
    assert_eq!(n, sync::HEADER_LEN, "a hello: a header, no record");
    let (h, recs) = sync::parse(&buf[..n]).unwrap();
    assert_eq!((h.count, h.fingerprint), (0, Some(FINGERPRINT)));
    assert_eq!(recs.count(), 0);
    assert!(!b.tables.sync.due(b.now + sync::HELLO_MS - 1));
    assert!(b.tables.sync.due(b.now + sync::HELLO_MS));
    let hello = buf[..n].to_vec();

    let mut m = master();
    assert_eq!(
        m.run(&sync_frame(&hello, MASTER4)).0,
        Outcome::Consumed,
        "a hello from the peer is consumed"
    );
    let c = m.tables.sync.counters;
    assert_eq!(
        (c.datagrams_received, c.peer_fingerprint, c.config_differs),
        (1, FINGERPRINT, 0)
    );
    assert_eq!(c.records_received, 0);

    // A peer with another service set: counted on every datagram.
    let mut other = buf;
    sync::write_header(&mut other, 0, 1, 0, 0xbad);
    for _ in 0..3 {
        m.run(&sync_frame(&other[..sync::HEADER_LEN], MASTER4));
    }
    let c = m.tables.sync.counters;
    assert_eq!(
        (c.datagrams_received, c.peer_fingerprint, c.config_differs),
        (4, 0xbad, 3)
    );

    // A version 1 peer (no fingerprint) is still understood: its records
    // apply, and it says nothing about its service set.
    let syn = builder::tcp4(&tcp4(CLIENT4, CLIENT_PORT, VIP4, 80, WireFlags::SYN));
    let mut m2 = master();
    m2.run(&syn);
    let n = m2.tables.sync.take_batch(&mut buf, 0, m2.now);
    assert_eq!(n, sync::HEADER_LEN + sync::RECORD_LEN);
    let mut v1 = buf[..sync::HEADER_LEN_V1].to_vec();
    v1[4] = 1;
    v1.extend_from_slice(&buf[sync::HEADER_LEN..n]);
    let mut b = backup();
    assert_eq!(b.run(&sync_frame(&v1, MASTER4)).0, Outcome::Consumed);
    let c = b.tables.sync.counters;
    assert_eq!(
        (
            c.applied,
            c.datagrams_received,
            c.peer_fingerprint,
            c.config_differs
        ),
        (1, 1, 0, 0)
    );

    // Only one worker of a node says hello; every worker compares.
    let snap = backup_snapshot();
    let mut second = Tables::for_worker(1024, &snap, Steer::new(1, 2));
    assert!(!second.sync.due(10_000), "worker 1 sends no hello");
    let mut first = Tables::for_worker(1024, &snap, Steer::new(0, 2));
    assert!(first.sync.due(10_000));
    assert_eq!(first.sync.take_batch(&mut buf, 0, 10_000), sync::HEADER_LEN);
    let _ = &mut second;
}
