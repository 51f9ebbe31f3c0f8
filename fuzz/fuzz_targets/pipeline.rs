//! The whole pipeline (`Tables::handle`) on sequences of arbitrary frames,
//! with a fixed balancer of DR, NAT and TUN services over IPv4 and IPv6
//! (persistence, fallbacks, a snapshot with reals down and removed), a
//! clock the input advances, and a sweep after every frame.
//!
//! Checks: no panic; every frame sent is a well-formed, untagged frame
//! whose checksums are right where the input's were (see
//! `ferrolb_fuzz::check`); frames to the kernel are untouched; the
//! per-real active counts add up to the flows in the table (until a
//! snapshot swap forgets removed reals); the connection table's invariants
//! hold; and once every flow has expired, no real counts an active flow
//! and no source-NAT port is in use. A twin of the tables gets every frame
//! through the general path alone (`Tables::handle_general`): outcomes,
//! output bytes, neighbour requests, counters and flows must be the same
//! as with the IPv4 fast path in front, given the first pass's hint (of
//! an arbitrary RSS hash, on some frames) as the worker gives it.
#![no_main]

use ferrolb_fuzz::{check, neigh, records, snapshots, Record, CONN_CAPACITY};
use forwarder::buffer::{PacketBuf, TestBuffer};
use forwarder::pipeline::{Ctx, NeighRequests, Outcome, Tables};
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

    for rec in records(data) {
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
                let snap = &snaps[cur];
                let mut buf = TestBuffer::new(frame);
                let mut ctx = Ctx {
                    snap,
                    neigh: &neigh,
                    now_ms: now,
                    requests: &mut reqs,
                };
                // As the worker: a first pass's hint, computed or from an
                // RSS hash (here arbitrary, so mostly wrong), or none.
                let rss = (frame.len() % 3 == 1).then(|| {
                    let t = &frame[frame.len().saturating_sub(4)..];
                    t.iter().fold(0u32, |h, &b| (h << 8) | u32::from(b))
                });
                let hint = (frame.len() % 3 != 0)
                    .then(|| {
                        tables
                            .flow_hash_v4(frame, snap, rss)
                            .or_else(|| tables.reply_hash_v4(frame, rss))
                    })
                    .flatten();
                let outcome = tables.handle_hinted(&mut buf, port, &mut ctx, hint);
                let mut general_buf = TestBuffer::new(frame);
                let mut general_ctx = Ctx {
                    snap,
                    neigh: &neigh,
                    now_ms: now,
                    requests: &mut general_reqs,
                };
                let general_outcome =
                    general.handle_general(&mut general_buf, port, &mut general_ctx);
                assert_eq!(outcome, general_outcome, "fast path vs general path");
                assert_eq!(
                    buf.data(),
                    general_buf.data(),
                    "fast path vs general: bytes"
                );
                let out = buf.data();
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
                    Outcome::Consumed | Outcome::Dropped(_) => {}
                }
                let asked: Vec<_> = reqs.drain().collect();
                let general_asked: Vec<_> = general_reqs.drain().collect();
                assert_eq!(asked, general_asked, "fast path vs general: requests");
                for r in asked {
                    assert!(usize::from(r.port) < snap.ports.len());
                }
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
        tables.counters, general.counters,
        "fast path vs general: counters"
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
