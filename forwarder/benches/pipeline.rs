//! Per-packet cost of the pipeline (`Tables::handle`), DR and NAT, on the
//! hit path (an established flow) and the new-flow path (scheduler +
//! insert), with 4,096 and 1,000,000 established flows in the table.
//!
//! `cargo bench -p forwarder --no-default-features --bench pipeline --
//!  --warm-up-time 1 --measurement-time 3`
//!
//! Method. The flows are inserted first (one ACK each, so they start
//! established). Each measured packet is one of 4,096 pre-built frames
//! held in `TestBuffer`s, used in rotation; the hit frames belong to
//! flows spread at random over the whole table, so with a million flows
//! the table's memory misses the cache as under real traffic. Handling
//! rewrites a frame in place, so each one's pristine bytes are copied back
//! before it is handled: `restore_copy` measures that copy alone, over the
//! same rotation, to be subtracted from the other figures. The new-flow
//! frames come from 4,096 clients not in the table; after every 4,096
//! packets (outside the timed region) their flows are removed again and
//! the frames are rebuilt for the next 4,096 of a million new clients,
//! so every timed packet creates a flow in a cold index bucket and the
//! table stays at its size. (The slab slots freed by the removal are
//! reused at once, so they are warmer than under real churn.) Time per
//! iteration is time per packet.

// criterion_group! defines public functions it does not document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use forwarder::buffer::{PacketBuf, TestBuffer};
use forwarder::conntrack::{FlowKey, Lookup, L4};
use forwarder::neigh::NeighTable;
use forwarder::packet::builder::{self, FrameSpec};
use forwarder::packet::{MacAddr, TcpFlags};
use forwarder::pipeline::burst::BURST;
use forwarder::pipeline::{Ctx, NeighRequests, Outcome, PortInfo, Snapshot, Tables};
use forwarder::service::{
    Mode, OnDown, Proto, Real, RealState, SchedulerKind, ServiceSpec, VipTable,
};

const LB: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 2]);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const REALS: u8 = 16;
/// Frames in rotation (and packets per untimed clean-up).
const ROT: usize = 4096;
const NOW: u64 = 1_000;

fn snapshot(mode: Mode) -> Snapshot {
    let port = PortInfo {
        mac: LB,
        addrs: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        gateway_v4: Some(GW),
        gateway_v6: None,
        vips: vec![IpAddr::V4(VIP)],
        mtu: 1500,
    };
    let reals = (1..=REALS)
        .map(|i| Real {
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + i)),
            port: if mode == Mode::Nat { 8080 } else { 80 },
            weight: 1,
            state: RealState::Up,
            neigh: 0,
        })
        .collect();
    let spec = ServiceSpec {
        id: 1,
        name: "web".into(),
        vip: IpAddr::V4(VIP),
        proto: Proto::Tcp,
        port: 80,
        mode,
        scheduler: SchedulerKind::Maglev,
        persistence: None,
        reals,
        on_down: OnDown::Reschedule,
        fallback: None,
        new_flow_rate_limit: None,
        timeouts: None,
    };
    Snapshot::new(1, vec![port], VipTable::build(vec![spec], 1).unwrap())
}

fn neigh() -> NeighTable {
    let t = NeighTable::new(256);
    t.set_static(IpAddr::V4(GW), MacAddr([0x02, 0x99, 0, 0, 0, 1]));
    for i in 1..=REALS {
        t.set_static(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + i)),
            MacAddr([0x02, 0, 0, 0, 0, i]),
        );
    }
    t
}

/// Client `i` of the established set (`base` 10/8) or of the new set
/// (`base` 11/8): an address and a port.
fn client(base: u32, i: u32) -> (Ipv4Addr, u16) {
    let i = i % (1 << 20);
    (Ipv4Addr::from(base + (i >> 4)), 20_000 + (i & 15) as u16)
}

fn frame(c: (Ipv4Addr, u16), flags: TcpFlags) -> Vec<u8> {
    builder::tcp4(&FrameSpec {
        src_mac: MacAddr([0x02, 0x99, 0, 0, 0, 1]),
        dst_mac: LB,
        src: c.0,
        src_port: c.1,
        dst: VIP,
        dst_port: 80,
        tcp_flags: flags,
        ..FrameSpec::default()
    })
}

/// xorshift64: a fixed pseudo-random order of flows.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (((self.0 >> 32) * u64::from(n)) >> 32) as u32
    }
}

struct Setup {
    snap: Snapshot,
    neigh: NeighTable,
    tables: Tables,
    reqs: NeighRequests,
}

impl Setup {
    fn new(mode: Mode, flows: u32) -> Setup {
        let snap = snapshot(mode);
        // Twice the flows, as a deployment would size it: the bounded
        // index probe then (almost) never has to evict while populating.
        let tables = Tables::new(2 * flows + 2 * ROT as u32, &snap);
        let mut s = Setup {
            snap,
            neigh: neigh(),
            tables,
            reqs: NeighRequests::default(),
        };
        for i in 0..flows {
            let f = frame(client(0x0a00_0000, i), TcpFlags::ACK);
            let o = s.handle(&mut TestBuffer::new(&f));
            assert!(matches!(o, Outcome::Forward { .. }), "populate: {o:?}");
        }
        let n = s.tables.conn.len();
        assert!(
            n + (flows as usize) / 10_000 >= flows as usize,
            "{n} of {flows} flows"
        );
        s
    }

    fn handle(&mut self, b: &mut TestBuffer) -> Outcome {
        let mut ctx = Ctx {
            snap: &self.snap,
            neigh: &self.neigh,
            now_ms: NOW,
            requests: &mut self.reqs,
            hops: 0,
        };
        self.tables.handle(b, 0, &mut ctx)
    }

    /// Removes the flow of new-set client `i` (outside the timed region).
    fn forget(&mut self, i: u32) {
        let i = i % (1 << 20);
        let (addr, port) = client(0x0b00_0000, i);
        let key = FlowKey {
            service: 1,
            client: IpAddr::V4(addr),
            client_port: port,
            vport: 80,
            proto: L4::Tcp,
        };
        let h = self.tables.conn.hash(&key);
        if let Lookup::Hit(id) = self.tables.conn.lookup(NOW as u32, &key, h) {
            if let Some(fr) = self.tables.conn.remove(id) {
                let a = &mut self.tables.active[0][fr.real_hint.get()];
                *a = a.saturating_sub(1);
            }
        }
    }
}

/// Pristine frames and their working buffers.
struct Rotation {
    pristine: Vec<Vec<u8>>,
    bufs: Vec<TestBuffer>,
}

impl Rotation {
    fn new(frames: Vec<Vec<u8>>) -> Rotation {
        let bufs = frames.iter().map(|f| TestBuffer::new(f)).collect();
        Rotation {
            pristine: frames,
            bufs,
        }
    }

    /// Copies frame `i`'s pristine bytes back (DR and NAT rewrite in
    /// place without changing the length).
    #[inline]
    fn restore(&mut self, i: usize) -> &mut TestBuffer {
        let b = &mut self.bufs[i];
        b.data_mut().copy_from_slice(&self.pristine[i]);
        b
    }
}

/// Times `iters` packets in chunks of [`ROT`]; `after_chunk` runs untimed.
fn timed<S>(
    iters: u64,
    state: &mut S,
    mut packet: impl FnMut(&mut S, usize),
    mut after_chunk: impl FnMut(&mut S, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let n = (iters - done).min(ROT as u64) as usize;
        let t = Instant::now();
        for i in 0..n {
            packet(state, i);
        }
        total += t.elapsed();
        after_chunk(state, n);
        done += n as u64;
    }
    total
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    // The copy that restores a frame, alone.
    {
        let frames = (0..ROT as u32)
            .map(|i| frame(client(0x0a00_0000, i), TcpFlags::ACK))
            .collect();
        let mut rot = Rotation::new(frames);
        g.bench_function("restore_copy", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    &mut rot,
                    |rot, i| {
                        black_box(rot.restore(i));
                    },
                    |_, _| {},
                )
            })
        });
    }
    for flows in [4_096u32, 1_000_000] {
        for (mode, name) in [(Mode::Dr, "dr"), (Mode::Nat, "nat")] {
            let s = Setup::new(mode, flows);
            let populated = s.tables.conn.len();
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let hits = (0..ROT)
                .map(|_| frame(client(0x0a00_0000, rng.below(flows)), TcpFlags::ACK))
                .collect();
            let hit_rot = Rotation::new(hits);
            let news = (0..ROT as u32)
                .map(|i| frame(client(0x0b00_0000, i), TcpFlags::SYN))
                .collect();
            let new_rot = Rotation::new(news);
            // Which 4,096 of the new clients the new-flow frames are.
            let epoch = 0u32;
            let mut st = (s, hit_rot, new_rot, epoch);
            g.bench_with_input(
                BenchmarkId::new(format!("{name}_hit"), flows),
                &flows,
                |b, _| {
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            &mut st,
                            |(s, rot, _, _), i| {
                                let o = s.handle(rot.restore(i));
                                debug_assert!(matches!(o, Outcome::Forward { .. }));
                                black_box(o);
                            },
                            |_, _| {},
                        )
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}_new"), flows),
                &flows,
                |b, _| {
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            &mut st,
                            |(s, _, rot, _), i| {
                                let o = s.handle(rot.restore(i));
                                debug_assert!(matches!(o, Outcome::Forward { .. }));
                                black_box(o);
                            },
                            |(s, _, rot, epoch), n| {
                                let base = epoch.wrapping_mul(ROT as u32);
                                for i in 0..n as u32 {
                                    s.forget(base + i);
                                }
                                *epoch = epoch.wrapping_add(1);
                                let base = epoch.wrapping_mul(ROT as u32);
                                for (i, p) in rot.pristine.iter_mut().enumerate() {
                                    *p = frame(client(0x0b00_0000, base + i as u32), TcpFlags::SYN);
                                }
                            },
                        )
                    })
                },
            );
            let s = &mut st.0;
            let base = st.3.wrapping_mul(ROT as u32);
            for i in 0..ROT as u32 {
                s.forget(base + i);
            }
            // New flows were removed again (a hit frame of a flow evicted
            // while populating, if any, re-inserted it).
            let n = s.tables.conn.len();
            assert!((populated..populated + 64).contains(&n), "{n} flows");
        }
    }
    g.finish();
}

/// `PIPELINE_COUNT=N`: instead of criterion, handle N DR (or, with
/// `PIPELINE_MODE=nat`, NAT) hit packets over 4,096 established flows in
/// [`count_hits`], for `valgrind --tool=callgrind
/// --toggle-collect=*count_hits*`: instructions per packet, repeatable
/// whatever else the machine runs (scripts/instr.sh).
fn count_mode(n: u64) {
    let mode = match std::env::var("PIPELINE_MODE").as_deref() {
        Ok("nat") => Mode::Nat,
        Ok("new") => return count_new_mode(n),
        Ok("burst_new") => return count_new_burst_mode(n),
        Ok("new_evict") => return count_evict_mode(n),
        Ok("natreply") => return count_reply_mode(n, false),
        Ok("burst_natreply") => return count_reply_mode(n, true),
        Ok("burst") => return count_burst_mode(n, Mode::Dr),
        Ok("burst_nat") => return count_burst_mode(n, Mode::Nat),
        _ => Mode::Dr,
    };
    let (mut s, mut rot) = hit_setup(mode);
    // Warm the tables, then count.
    count_hits(&mut s, &mut rot, ROT as u64);
    count_hits(&mut s, &mut rot, n);
    println!("handled {n} hit packets");
}

/// `PIPELINE_MODE=new`: N SYNs from N clients not in the table (DR,
/// 4,096 established flows, room for all of them), in [`count_hits`].
fn count_new_mode(n: u64) {
    let mut s = Setup::new(Mode::Dr, 4_096);
    // Room for every new flow without eviction.
    s.tables = Tables::new(4 * (n as u32 + ROT as u32), &s.snap);
    let frames: Vec<Vec<u8>> = (0..n as u32 + ROT as u32)
        .map(|i| frame(client(0x0b00_0000, i), TcpFlags::SYN))
        .collect();
    let mut rot = Rotation::new(frames);
    count_news(&mut s, &mut rot, 0, ROT as u64);
    count_hits_new(&mut s, &mut rot, n);
    println!("handled {n} new-flow packets");
}

/// `PIPELINE_MODE=burst_new`: [`count_new_mode`]'s SYNs in bursts of
/// `BURST` through `Tables::handle_burst`, in [`count_hits_new_burst`].
fn count_new_burst_mode(n: u64) {
    let n = n / BURST as u64 * BURST as u64;
    let mut s = Setup::new(Mode::Dr, 4_096);
    let total = n as u32 + ROT as u32;
    s.tables = Tables::new(4 * total, &s.snap);
    let frames: Vec<Vec<u8>> = (0..total)
        .map(|i| frame(client(0x0b00_0000, i), TcpFlags::SYN))
        .collect();
    let mut rot = Rotation::new(frames);
    new_bursts(&mut s, &mut rot, 0, ROT as u64);
    count_hits_new_burst(&mut s, &mut rot, n);
    println!("handled {n} new-flow packets in bursts");
}

/// One burst through `Tables::handle_burst`; every frame must be
/// forwarded.
#[inline(always)]
fn forward_burst(s: &mut Setup, bufs: &mut [TestBuffer], out: &mut [Outcome; BURST]) {
    let mut ctx = Ctx {
        snap: &s.snap,
        neigh: &s.neigh,
        now_ms: NOW,
        requests: &mut s.reqs,
        hops: 0,
    };
    s.tables.handle_burst(bufs, 0, &mut ctx, out);
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Forward { .. })),
        "{out:?}"
    );
    black_box(&out);
}

/// Frames `from..from + n` of `rot` (new flows, each once) in bursts.
fn new_bursts(s: &mut Setup, rot: &mut Rotation, from: u64, n: u64) {
    let mut out = [Outcome::Consumed; BURST];
    for at in (from..from + n).step_by(BURST) {
        let at = at as usize;
        forward_burst(s, &mut rot.bufs[at..at + BURST], &mut out);
    }
}

/// The counted part of [`count_new_burst_mode`].
#[inline(never)]
fn count_hits_new_burst(s: &mut Setup, rot: &mut Rotation, n: u64) {
    new_bursts(s, rot, ROT as u64, n);
}

/// Clients of [`count_evict_mode`], four per flow its table holds.
const EVICT_CLIENTS: u32 = 65_536;

/// `PIPELINE_MODE=new_evict`: SYNs from [`EVICT_CLIENTS`] clients in
/// turn into a table of a quarter as many flows, as in the bench's SYN
/// run: past the first round most SYNs are new flows that evict a
/// half-open one (the others find their flow still there).
fn count_evict_mode(n: u64) {
    let mut s = Setup::new(Mode::Dr, 4_096);
    s.tables = Tables::new(EVICT_CLIENTS / 4, &s.snap);
    let frames: Vec<Vec<u8>> = (0..EVICT_CLIENTS)
        .map(|i| frame(client(0x0b00_0000, i), TcpFlags::SYN))
        .collect();
    let mut rot = Rotation::new(frames);
    count_cycled(&mut s, &mut rot, 0, u64::from(EVICT_CLIENTS));
    let before = s.tables.conn.counters().evictions;
    count_hits_evict(&mut s, &mut rot, n);
    let evicted = s.tables.conn.counters().evictions - before;
    assert!(evicted > n / 2, "{evicted} evictions for {n} SYNs");
    println!("handled {n} SYNs, {evicted} of them new flows evicting one");
}

/// `n` frames of `rot` from frame `from` on, in turn, each restored.
fn count_cycled(s: &mut Setup, rot: &mut Rotation, from: u64, n: u64) {
    let len = rot.bufs.len() as u64;
    for k in from..from + n {
        let o = s.handle(rot.restore((k % len) as usize));
        assert!(matches!(o, Outcome::Forward { .. }), "{o:?}");
        black_box(o);
    }
}

/// The counted part of [`count_evict_mode`].
#[inline(never)]
fn count_hits_evict(s: &mut Setup, rot: &mut Rotation, n: u64) {
    count_cycled(s, rot, u64::from(EVICT_CLIENTS), n);
}

/// `PIPELINE_MODE=natreply`: N replies (real:8080 -> client:cport, ACK)
/// of the 4,096 established NAT flows, in [`count_hits`]
/// (`burst_natreply`: in bursts, in [`count_hits_burst`]).
fn count_reply_mode(n: u64, bursts: bool) {
    let mut s = Setup::new(Mode::Nat, 4_096);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let replies = (0..ROT)
        .map(|_| {
            let c = client(0x0a00_0000, rng.below(4_096));
            let key = FlowKey {
                service: 1,
                client: IpAddr::V4(c.0),
                client_port: c.1,
                vport: 80,
                proto: L4::Tcp,
            };
            let h = s.tables.conn.hash(&key);
            let id = s.tables.conn.lookup(NOW as u32, &key, h).hit().unwrap();
            let e = s.tables.conn.entry(id);
            let IpAddr::V4(real) = e.real() else {
                unreachable!("IPv4 reals")
            };
            builder::tcp4(&FrameSpec {
                src_mac: MacAddr([0x02, 0, 0, 0, 0, real.octets()[3] - 100]),
                dst_mac: LB,
                src: real,
                src_port: e.real_port(),
                dst: c.0,
                dst_port: c.1,
                tcp_flags: TcpFlags::ACK,
                ..FrameSpec::default()
            })
        })
        .collect();
    let mut rot = Rotation::new(replies);
    if bursts {
        count_hits_burst(&mut s, &mut rot, ROT as u64);
        count_hits_burst(&mut s, &mut rot, n);
    } else {
        count_hits(&mut s, &mut rot, ROT as u64);
        count_hits(&mut s, &mut rot, n);
    }
    println!("handled {n} NAT replies");
}

/// 4,096 established flows of `mode`, and a rotation of ACKs of them in
/// a fixed random order.
fn hit_setup(mode: Mode) -> (Setup, Rotation) {
    let s = Setup::new(mode, 4_096);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let hits = (0..ROT)
        .map(|_| frame(client(0x0a00_0000, rng.below(4_096)), TcpFlags::ACK))
        .collect();
    (s, Rotation::new(hits))
}

/// `PIPELINE_MODE=burst` (DR) or `burst_nat`: N hit packets over 4,096
/// established flows, in bursts of `BURST` through `Tables::handle_burst` (the
/// worker's entry), in [`count_hits_burst`].
fn count_burst_mode(n: u64, mode: Mode) {
    let (mut s, mut rot) = hit_setup(mode);
    count_hits_burst(&mut s, &mut rot, ROT as u64);
    count_hits_burst(&mut s, &mut rot, n);
    println!("handled {n} hit packets in bursts");
}

#[inline(never)]
fn count_hits_burst(s: &mut Setup, rot: &mut Rotation, n: u64) {
    let mut out = [Outcome::Consumed; BURST];
    for k in 0..n / BURST as u64 {
        let at = (k as usize * BURST) % ROT;
        for i in at..at + BURST {
            rot.restore(i);
        }
        forward_burst(s, &mut rot.bufs[at..at + BURST], &mut out);
    }
}

#[inline(never)]
fn count_news(s: &mut Setup, rot: &mut Rotation, from: u64, n: u64) {
    for k in from..from + n {
        let o = s.handle(&mut rot.bufs[k as usize]);
        assert!(matches!(o, Outcome::Forward { .. }), "{o:?}");
        black_box(o);
    }
}

/// The counted part of [`count_new_mode`] (its name matches
/// `--toggle-collect=*count_hits*`).
#[inline(never)]
fn count_hits_new(s: &mut Setup, rot: &mut Rotation, n: u64) {
    count_news(s, rot, ROT as u64, n);
}

#[inline(never)]
fn count_hits(s: &mut Setup, rot: &mut Rotation, n: u64) {
    for k in 0..n {
        let i = (k % ROT as u64) as usize;
        let o = s.handle(rot.restore(i));
        assert!(matches!(o, Outcome::Forward { .. }), "{o:?}");
        black_box(o);
    }
}

criterion_group!(benches, pipeline);

fn main() {
    if let Some(n) = std::env::var("PIPELINE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return count_mode(n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
