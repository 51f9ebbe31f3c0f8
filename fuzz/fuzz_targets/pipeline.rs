//! The whole pipeline as the worker drives it (`Tables::handle_burst`) on
//! sequences of arbitrary frames, with a fixed balancer of DR, NAT and TUN
//! services over IPv4 and IPv6 (persistence, fallbacks, a snapshot with
//! reals down and removed), a clock the input advances, and a sweep after
//! every burst (the frames of one port between two clock advances).
//!
//! Checks: no panic; every frame sent is a well-formed, untagged frame
//! whose checksums are right where the input's were (see
//! `ferrolb_fuzz::check`); frames to the kernel are untouched; the
//! per-real active counts add up to the flows in the table (until a
//! snapshot swap forgets removed reals); the connection table's invariants
//! hold; and once every flow has expired, no real counts an active flow
//! and no source-NAT port is in use. A twin of the tables gets every frame
//! through the general path alone (`Tables::handle_general`), frame by
//! frame: outcomes, output bytes, neighbour requests, counters and flows
//! must be the same as through the burst path (plain frames forwarded on
//! their own, the others by the general path),
//! with an arbitrary RSS hash on some frames.
#![no_main]

use ferrolb_fuzz::{check, neigh, records, snapshots, Record, CONN_CAPACITY};
use forwarder::buffer::{PacketBuf, TestBuffer};
use forwarder::neigh::NeighTable;
use forwarder::pipeline::burst::BURST;
use forwarder::pipeline::{Ctx, NeighRequests, Outcome, Snapshot, Tables};
use libfuzzer_sys::fuzz_target;

/// Slots a sweep may examine: the whole table, as the worker's sweep
/// (every poll) covers it many times over between two packets.
const SWEEP_BUDGET: u32 = 4 * CONN_CAPACITY;

fuzz_target!(|data: &[u8]| {
    let snaps = snapshots();
    let mut cur = 0usize;
    let neigh = neigh();
    let mut tables = Tables::new(CONN_CAPACITY, &snaps[cur]);
    let mut general = Tables::new(CONN_CAPACITY, &snaps[cur]);
    let mut reqs = NeighRequests::default();
    let mut general_reqs = NeighRequests::default();
    let mut now: u64 = 1000;
    let mut swapped = false;
    // Frames of one port with no clock advance between them form a burst
    // (up to BURST), as the worker receives them.
    let mut burst: Vec<(u16, &[u8])> = Vec::with_capacity(BURST);

    let mut records = records(data).peekable();
    while let Some(rec) = records.next() {
        match rec {
            Record::Swap { advance_ms } => {
                now += advance_ms;
                let next = 1 - cur;
                tables.adopt(&snaps[cur], &snaps[next]);
                general.adopt(&snaps[cur], &snaps[next]);
                cur = next;
                swapped = true;
            }
            Record::Frame {
                advance_ms,
                port,
                frame,
            } => {
                now += advance_ms;
                burst.push((port, frame));
                let more = matches!(
                    records.peek(),
                    Some(Record::Frame { advance_ms: 0, port: p, .. }) if *p == port
                );
                if more && burst.len() < BURST {
                    continue;
                }
                run_burst(
                    &snaps[cur],
                    &neigh,
                    now,
                    &burst,
                    (&mut tables, &mut reqs),
                    (&mut general, &mut general_reqs),
                );
                burst.clear();
                let snap = &snaps[cur];
                tables.sweep(snap, now, SWEEP_BUDGET);
                general.sweep(snap, now, SWEEP_BUDGET);
                // Every flow counts once on its real (or fallback) until
                // freed. (A swap forgets the counts of removed reals.)
                if !swapped {
                    let active: u32 = tables.active.iter().flatten().sum();
                    assert_eq!(active as usize, tables.conn.len(), "active counts vs flows");
                }
            }
        }
    }

    tables.conn.check_invariants();
    assert_eq!(
        tables.counters(),
        general.counters(),
        "burst path vs general: counters"
    );
    assert_eq!(
        tables.active, general.active,
        "fast path vs general: active"
    );
    assert_eq!(tables.conn.counters(), general.conn.counters());
    assert_eq!(tables.conn.by_state(), general.conn.by_state());
    // Let every flow expire (the longest timeout is well under an hour).
    now += 3_600_000;
    tables.sweep(&snaps[cur], now, SWEEP_BUDGET);
    tables.conn.check_invariants();
    assert_eq!(tables.conn.len(), 0, "flows left after every timeout");
    for (si, counts) in tables.active.iter().enumerate() {
        assert!(
            counts.iter().all(|&c| c == 0),
            "service index {si}: active counts {counts:?} with no flow"
        );
    }
    assert_eq!(tables.snat_ports().in_use(), 0, "source-NAT ports leaked");
});

/// One burst (frames of one port, the same clock) through
/// `Tables::handle_burst` on `fast`, frame by frame through the general
/// path alone on `general`; outcomes, bytes and requests compared, every
/// frame sent checked.
fn run_burst(
    snap: &Snapshot,
    neigh: &NeighTable,
    now: u64,
    burst: &[(u16, &[u8])],
    fast: (&mut Tables, &mut NeighRequests),
    general: (&mut Tables, &mut NeighRequests),
) {
    let (tables, reqs) = fast;
    let (general, general_reqs) = general;
    let port = burst[0].0;
    // As a NIC would: some frames carry an RSS hash (here arbitrary, so
    // mostly wrong, which the tables must survive).
    let mut bufs: Vec<TestBuffer> = burst
        .iter()
        .map(|&(_, frame)| {
            let b = TestBuffer::new(frame);
            if frame.len() % 3 == 1 {
                let t = &frame[frame.len().saturating_sub(4)..];
                b.with_rss(t.iter().fold(0u32, |h, &x| (h << 8) | u32::from(x)))
            } else {
                b
            }
        })
        .collect();
    let mut out = [Outcome::Consumed; BURST];
    let mut ctx = Ctx {
        snap,
        neigh,
        now_ms: now,
        requests: reqs,
        hops: 0,
    };
    tables.handle_burst(&mut bufs[..], port, &mut ctx, &mut out);
    for (i, &(_, frame)) in burst.iter().enumerate() {
        let outcome = out[i];
        let mut general_buf = TestBuffer::new(frame);
        let mut general_ctx = Ctx {
            snap,
            neigh,
            now_ms: now,
            requests: general_reqs,
            hops: 0,
        };
        let general_outcome = general.handle_general(&mut general_buf, port, &mut general_ctx);
        assert_eq!(outcome, general_outcome, "burst path vs general path");
        let out = bufs[i].data();
        assert_eq!(out, general_buf.data(), "burst path vs general: bytes");
        match outcome {
            Outcome::Forward { port: p } => {
                let p = usize::from(p);
                assert!(p < snap.ports.len(), "forwarded to port {p}");
                check::sent_frame(frame, out, false);
                assert_eq!(&out[6..12], &snap.ports[p].mac.0, "source MAC");
                assert!(out[0] & 1 == 0, "forwarded to a group MAC");
            }
            Outcome::Answered => {
                check::sent_frame(frame, out, true);
                assert_eq!(
                    &out[6..12],
                    &snap.ports[usize::from(port)].mac.0,
                    "answer's source MAC"
                );
            }
            Outcome::ToKernel => assert_eq!(out, frame, "frame to the kernel changed"),
            // A sync datagram from the HA peer, taken in.
            Outcome::Handoff { .. } => panic!("a single worker handed a frame off"),
            Outcome::Consumed | Outcome::Dropped(_) => {}
        }
    }
    let asked: Vec<_> = reqs.drain().collect();
    let general_asked: Vec<_> = general_reqs.drain().collect();
    assert_eq!(asked, general_asked, "burst path vs general: requests");
    for r in asked {
        assert!(usize::from(r.port) < snap.ports.len());
    }
}
