//! Micro-benchmarks of the balancing tables.
//!
//! `cargo bench -p forwarder --no-default-features --bench tables`

// criterion_group! defines public functions it does not document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forwarder::conntrack::{ConnTable, FlowKey, FlowValue, Nat, State, L4};
use forwarder::service::{
    Backend, Maglev, Mode, OnDown, PersistTable, Persistence, Proto, Real, RealIdx, RealState,
    SchedState, SchedulerKind, Service, ServiceSpec,
};

fn key(i: u32) -> FlowKey {
    FlowKey {
        service: 1 + (i & 3),
        client: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i >> 2))),
        client_port: 1024 + (i & 0x7fff) as u16,
        vport: 443,
        proto: L4::Tcp,
    }
}

fn val(i: u32) -> FlowValue {
    FlowValue {
        real: IpAddr::V4(Ipv4Addr::new(10, 200, 0, (i % 200) as u8)),
        real_port: 8443,
        real_hint: RealIdx((i % 200) as u16),
        nat: Nat::Nat,
        state: State::Established,
        profile: 0,
    }
}

/// xorshift index generator: random order defeats the prefetcher like real
/// traffic over a large table does.
struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (((self.0 >> 32) * u64::from(n)) >> 32) as u32
    }
}

fn populated(n: u32, extra: u32) -> ConnTable {
    let mut t = ConnTable::with_capacity(n + extra);
    for i in 0..n {
        let k = key(i);
        let h = t.hash(&k);
        t.insert(0, &k, h, &val(i), |_| {}).unwrap();
    }
    t
}

fn conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    for n in [4_096u32, 1_000_000] {
        let mut t = populated(n, n / 4);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // The key is computed, not loaded from an array: a packet's key is
        // in cache (just parsed); only table memory should miss.
        g.bench_with_input(BenchmarkId::new("lookup_hit", n), &n, |b, &n| {
            b.iter(|| {
                let k = key(rng.next(n));
                let h = t.hash(&k);
                black_box(t.lookup(1, &k, h))
            })
        });
        // Burst style: hash 32 keys first, then probe (lets the CPU overlap
        // the cache misses of independent lookups). Time is per 32.
        g.bench_with_input(BenchmarkId::new("lookup_hit_burst32", n), &n, |b, &n| {
            let mut ks = [key(0); 32];
            let mut hs = [0u32; 32];
            b.iter(|| {
                for (k, h) in ks.iter_mut().zip(hs.iter_mut()) {
                    *k = key(rng.next(n));
                    *h = t.hash(k);
                }
                for (k, h) in ks.iter().zip(hs.iter()) {
                    black_box(t.lookup(1, k, *h).hit());
                }
            })
        });
        // Insert into a table holding `n` flows: time CHUNK inserts, then
        // remove them untimed, so the load stays at n.
        const CHUNK: u32 = 1024;
        let mut t = populated(n, CHUNK);
        let fresh: Vec<FlowKey> = (0..CHUNK).map(|i| key(n + 10 + i)).collect();
        g.bench_with_input(BenchmarkId::new("insert", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                let mut ids = Vec::with_capacity(CHUNK as usize);
                while done < iters {
                    let m = (iters - done).min(u64::from(CHUNK)) as usize;
                    let start = Instant::now();
                    for (i, k) in fresh[..m].iter().enumerate() {
                        let h = t.hash(k);
                        ids.push(t.insert(1, k, h, &val(i as u32), |_| {}).unwrap());
                    }
                    total += start.elapsed();
                    for id in ids.drain(..) {
                        t.remove(id);
                    }
                    done += m as u64;
                }
                total
            })
        });
    }
    g.finish();
}

fn reals(n: u16) -> Vec<Real> {
    (0..n)
        .map(|i| Real {
            addr: IpAddr::V4(Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8)),
            port: 80,
            weight: 1 + u32::from(i % 4),
            state: RealState::Up,
            neigh: u32::from(i),
        })
        .collect()
}

fn service(kind: SchedulerKind, n: u16, persistence: Option<Persistence>) -> Service {
    Service::build(ServiceSpec {
        id: 1,
        name: "bench".into(),
        vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        proto: Proto::Tcp,
        port: 80,
        mode: Mode::Dr,
        scheduler: kind,
        persistence,
        reals: reals(n),
        on_down: OnDown::Reschedule,
        fallback: None,
        new_flow_rate_limit: None,
        timeouts: None,
    })
    .unwrap()
}

fn schedulers(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev");
    let backends: Vec<Backend> = reals(100)
        .iter()
        .enumerate()
        .map(|(i, r)| Backend {
            idx: RealIdx(i as u16),
            addr: r.addr,
            port: r.port,
            weight: r.weight,
        })
        .collect();
    g.bench_function("build_100_reals", |b| {
        b.iter(|| black_box(Maglev::new(black_box(&backends))))
    });
    let svc = service(SchedulerKind::Maglev, 100, None);
    let mut st = SchedState::new(svc.scheduler());
    let src = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let mut h = 0u64;
    g.bench_function("pick", |b| {
        b.iter(|| {
            h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
            black_box(svc.pick(black_box(h), src, &mut st, &[]))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sched");
    for kind in [SchedulerKind::Wrr, SchedulerKind::Wlc] {
        let svc = service(kind, 16, None);
        let mut st = SchedState::new(svc.scheduler());
        let mut conns = vec![0u32; 16];
        g.bench_function(format!("{kind:?}_pick_16").to_lowercase(), |b| {
            b.iter(|| {
                let r = svc.pick(0, src, &mut st, &conns).unwrap();
                conns[r.get()] = conns[r.get()].wrapping_add(1) & 0xff;
                black_box(r)
            })
        });
    }
    let svc = service(SchedulerKind::Rr, 100, Some(Persistence::default()));
    let mut p = PersistTable::new(65_536, 1);
    let mut i = 0u32;
    g.bench_function("persist_pick", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let src = IpAddr::V4(Ipv4Addr::from(0xc633_0000 | (i & 0x7fff)));
            black_box(p.pick(1, &svc, src))
        })
    });
    g.finish();
}

criterion_group!(benches, conntrack, schedulers);
criterion_main!(benches);
