//! The flows of every worker's table, a page at a time (`GET
//! /api/v1/conns`): each worker is asked in turn through its query slot
//! (`forwarder::listing`) and answers between bursts, a bounded slice of
//! its table at a time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forwarder::conntrack::{Nat, L4};
use forwarder::listing::{ConnFilter, ConnQuery};
use forwarder::pipeline::Snapshot;
use forwarder::stats::WorkerShared;

use crate::admin::conns::{ConnStatus, ConnsPage, ConnsRequest, REQUEST_BUDGET};
use crate::admin::CommandError;

/// How long one worker may take to answer one slice.
const SLICE_WAIT: Duration = Duration::from_secs(1);

/// An address and port, IPv6 in brackets.
fn endpoint(a: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(a, port).to_string()
}

/// `TimeWait` -> `time_wait`.
fn snake(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            o.push('_');
        }
        o.push(c.to_ascii_lowercase());
    }
    o
}

/// Lists the flows `filter` passes, from `req.cursor`, at most
/// `req.limit`, reading for at most [`REQUEST_BUDGET`].
pub(super) fn list(
    workers: &[Arc<WorkerShared>],
    snap: &Snapshot,
    filter: ConnFilter,
    req: &ConnsRequest,
) -> Result<ConnsPage, CommandError> {
    let start = Instant::now();
    let (mut w, mut from) = req.cursor;
    let mut conns = Vec::new();
    while w < workers.len() {
        if conns.len() >= req.limit || start.elapsed() >= REQUEST_BUDGET {
            break;
        }
        let want = req.limit - conns.len();
        let shared = &workers[w];
        {
            let mut q = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            *q = ConnQuery {
                filter: filter.clone(),
                from,
                limit: want,
                rows: Vec::with_capacity(want),
                next: None,
            };
        }
        shared.conns_asked.store(true, Ordering::Release);
        let asked = Instant::now();
        while shared.conns_asked.load(Ordering::Acquire) {
            if asked.elapsed() > SLICE_WAIT {
                shared.conns_asked.store(false, Ordering::Release);
                return Err(CommandError::WorkerSilent(w));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut q = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        for r in q.rows.drain(..) {
            let svc = snap.known_service(r.service);
            conns.push(ConnStatus {
                protocol: match r.proto {
                    L4::Tcp => "tcp",
                    L4::Udp => "udp",
                    L4::Icmp => "icmp",
                }
                .into(),
                client: endpoint(r.client.0, r.client.1),
                vip: svc.map(|s| s.spec().name.clone()).unwrap_or_default(),
                virtual_address: svc
                    .map(|s| endpoint(s.spec().vip, r.vport))
                    .unwrap_or_default(),
                real: endpoint(r.real.0, r.real.1),
                state: snake(&format!("{:?}", r.state)),
                expires_in_ms: r.expires_in_ms,
                worker: w,
                reply: match r.nat {
                    Nat::None => "dr",
                    Nat::Nat => "nat",
                    Nat::Snat(_) => "snat",
                }
                .into(),
            });
        }
        match q.next {
            Some(n) => from = n,
            None => {
                w += 1;
                from = 0;
            }
        }
    }
    let next = (w < workers.len()).then(|| format!("{w}:{from}"));
    Ok(ConnsPage { conns, next })
}
