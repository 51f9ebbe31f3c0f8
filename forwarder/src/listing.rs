//! Listing a worker's flows for the operator (`ferrolb conns`, `GET
//! /api/v1/conns`), like `ipvsadm -L -c -n`.
//!
//! The control plane writes a [`ConnQuery`] (filters, where to start, how
//! many rows, with room for them reserved) into the worker's shared slot
//! and raises its flag; the worker, between bursts, reads at most
//! [`SCAN_BUDGET`] cells of its table from there, appends the matching
//! flows and says where to go on. A table of millions of flows is listed
//! slice by slice, so no request stalls a worker for more than a
//! fraction of a millisecond, and the worker allocates nothing (the rows
//! fit the room reserved by the asker).

use std::net::IpAddr;

use crate::conntrack::{ConnTable, Entry, Nat, State, L4};

/// Cells a worker reads per answer.
pub const SCAN_BUDGET: u32 = 65_536;

/// Which flows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnFilter {
    /// Only these services (ids); empty: all.
    pub services: Vec<u32>,
    /// Only flows to this real.
    pub real: Option<IpAddr>,
    /// Only clients in this prefix (address, length).
    pub client: Option<(IpAddr, u8)>,
}

impl ConnFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Entry) -> bool {
        (self.services.is_empty() || self.services.contains(&e.service()))
            && self.real.is_none_or(|r| r == e.real())
            && self
                .client
                .is_none_or(|(net, len)| in_prefix(e.client(), net, len))
    }
}

/// Whether `a` is in `net/len` (families must match).
pub fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// One flow, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRow {
    /// Protocol.
    pub proto: L4,
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Service id.
    pub service: u32,
    /// The VIP port the client used.
    pub vport: u16,
    /// Real address and port.
    pub real: (IpAddr, u16),
    /// TCP state (or UDP / ICMP).
    pub state: State,
    /// Milliseconds until it expires unless a packet comes (flows already
    /// expired, waiting for the sweep, are not listed).
    pub expires_in_ms: u32,
    /// Reply handling: DR / TUN, NAT, or source NAT with its port.
    pub nat: Nat,
}

/// A request to one worker and its answer.
#[derive(Debug, Default)]
pub struct ConnQuery {
    /// The filters.
    pub filter: ConnFilter,
    /// The cell to start at.
    pub from: u32,
    /// Rows wanted at most (`rows` has room for them).
    pub limit: usize,
    /// The answer.
    pub rows: Vec<ConnRow>,
    /// Where to go on (`None`: the end of the table was reached).
    pub next: Option<u32>,
}

impl ConnQuery {
    /// Answers from `table` at tick `now`: reads at most [`SCAN_BUDGET`]
    /// cells from `from`, appends up to `limit` matching flows without
    /// growing `rows` beyond its capacity, and sets `next`.
    pub fn answer(&mut self, table: &ConnTable, now: u32) {
        let room = self.limit.min(self.rows.capacity());
        let (filter, rows) = (&self.filter, &mut self.rows);
        self.next = table.scan(self.from, SCAN_BUDGET, |e| {
            let left = e.expiry().wrapping_sub(now) as i32;
            // Expired, not swept yet: gone as far as anyone can tell.
            if left <= 0 || !filter.matches(&e) {
                return true;
            }
            if rows.len() >= room {
                // This one comes first on the next page.
                return false;
            }
            rows.push(ConnRow {
                proto: e.proto(),
                client: (e.client(), e.client_port()),
                service: e.service(),
                vport: e.vport(),
                real: (e.real(), e.real_port()),
                state: e.state(),
                expires_in_ms: left as u32,
                nat: e.nat(),
            });
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{Config, FlowKey, FlowValue, Lookup};
    use crate::service::RealIdx;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            service: if i.is_multiple_of(2) { 1 } else { 2 },
            client: IpAddr::from([198, 51, 100, (i % 200) as u8 + 1]),
            client_port: 10_000 + i as u16,
            vport: 80,
            proto: L4::Tcp,
        }
    }

    fn table(n: u32) -> ConnTable {
        let mut cfg = Config::new(4096);
        cfg.timeouts = crate::conntrack::Timeouts::ipvs(1000);
        let mut t = ConnTable::new(cfg);
        for i in 0..n {
            let k = key(i);
            let h = t.hash(&k);
            assert!(matches!(t.lookup(0, &k, h), Lookup::Miss));
            let v = FlowValue {
                real: IpAddr::from([192, 0, 2, 21 + (i % 3) as u8]),
                real_port: 8080,
                real_hint: RealIdx(0),
                nat: Nat::Nat,
                state: State::Established,
                profile: 0,
            };
            t.insert(0, &k, h, &v, |_| {}).unwrap();
        }
        t
    }

    /// Lists everything in pages of `limit`, as the control plane does.
    fn pages(t: &ConnTable, filter: &ConnFilter, limit: usize) -> (Vec<ConnRow>, usize) {
        let mut all = Vec::new();
        let mut from = Some(0);
        let mut asks = 0;
        while let Some(f) = from {
            asks += 1;
            assert!(asks < 10_000);
            let mut q = ConnQuery {
                filter: filter.clone(),
                from: f,
                limit,
                rows: Vec::with_capacity(limit),
                next: None,
            };
            q.answer(t, 1000);
            assert!(q.rows.len() <= limit);
            all.extend(q.rows);
            from = q.next;
        }
        (all, asks)
    }

    #[test]
    fn pages_list_every_matching_flow_exactly_once() {
        let t = table(1000);
        let everything = ConnFilter::default();
        for limit in [1, 7, 100, 5000] {
            let (rows, _) = pages(&t, &everything, limit);
            assert_eq!(rows.len(), 1000, "limit {limit}");
            let mut ports: Vec<u16> = rows.iter().map(|r| r.client.1).collect();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 1000, "limit {limit}: a flow listed twice");
        }
        let r = pages(&t, &everything, 5).0[0];
        assert_eq!(r.state, State::Established);
        assert!(r.expires_in_ms > 0 && r.expires_in_ms <= 900_000, "{r:?}");
        // Filters: a service, a real, a client prefix.
        let svc = ConnFilter {
            services: vec![1],
            ..ConnFilter::default()
        };
        assert_eq!(pages(&t, &svc, 50).0.len(), 500);
        let real = ConnFilter {
            real: Some(IpAddr::from([192, 0, 2, 21])),
            ..ConnFilter::default()
        };
        assert!(pages(&t, &real, 50)
            .0
            .iter()
            .all(|r| r.real.0 == IpAddr::from([192, 0, 2, 21])));
        let one = ConnFilter {
            client: Some((IpAddr::from([198, 51, 100, 7]), 32)),
            ..ConnFilter::default()
        };
        assert_eq!(pages(&t, &one, 50).0.len(), 5, "i % 200 == 6: 5 of 1000");
        let none = ConnFilter {
            client: Some(("2001:db8::".parse().unwrap(), 32)),
            ..ConnFilter::default()
        };
        assert!(pages(&t, &none, 50).0.is_empty());
    }

    #[test]
    fn an_answer_reads_a_bounded_slice_and_never_grows_its_rows() {
        let mut cfg = Config::new(1 << 18);
        cfg.timeouts = crate::conntrack::Timeouts::ipvs(1000);
        let mut t = ConnTable::new(cfg);
        let k = key(1);
        let h = t.hash(&k);
        let v = FlowValue {
            real: IpAddr::from([192, 0, 2, 21]),
            real_port: 80,
            real_hint: RealIdx(0),
            nat: Nat::None,
            state: State::Established,
            profile: 0,
        };
        t.insert(0, &k, h, &v, |_| {}).unwrap();
        let (rows, asks) = pages(&t, &ConnFilter::default(), 10);
        assert_eq!(rows.len(), 1);
        // Once expired (not swept yet) it is not listed.
        let mut late = ConnQuery {
            limit: 10,
            rows: Vec::with_capacity(10),
            ..ConnQuery::default()
        };
        late.answer(&t, 900_001);
        assert!(late.rows.is_empty(), "{:?}", late.rows);
        // Every answer read at most SCAN_BUDGET cells.
        assert!(
            asks as u64 >= t.capacity() as u64 / u64::from(SCAN_BUDGET),
            "{asks}"
        );
        let mut q = ConnQuery {
            limit: 10,
            rows: Vec::with_capacity(0),
            ..ConnQuery::default()
        };
        q.answer(&t, 0);
        assert!(
            q.rows.is_empty() && q.rows.capacity() == 0,
            "no room, no rows"
        );
        assert!(in_prefix(
            IpAddr::from([10, 1, 2, 3]),
            IpAddr::from([10, 0, 0, 0]),
            8
        ));
        assert!(!in_prefix(
            IpAddr::from([11, 1, 2, 3]),
            IpAddr::from([10, 0, 0, 0]),
            8
        ));
        assert!(in_prefix(
            IpAddr::from([11, 1, 2, 3]),
            IpAddr::from([10, 0, 0, 0]),
            0
        ));
    }
}
