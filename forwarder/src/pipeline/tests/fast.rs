//! The burst path against the general path, frame by frame and burst by
//! burst: two rigs built alike get the same frames at the same times, one
//! through [`Tables::handle`] (the burst path over one frame) or
//! [`Tables::handle_burst`], the other through
//! [`Tables::handle_general`] alone. Every outcome, every output byte,
//! every neighbour request, the connection table, the per-service and
//! per-real counters, the active counts and the connection-sync records
//! must be the same, over traffic that reaches every check of the fast
//! path: new and established flows, DR / NAT (with hairpin source NAT) /
//! TUN, UDP, wildcard ports, expiries, reals going down and drained, and
//! frames with random bytes changed; and the replies of the NAT flows
//! (real -> client: plain replies), to clients with and without a
//! flow, from the flow's real and from others, of every TCP flag
//! combination, changed and after expiry.

use super::*;
use crate::conntrack::{FlowKeyV4, L4};
use crate::sync::{self, SyncSpec};

const VIP4B: &str = "192.0.2.101";

fn specs(down: Option<RealState>) -> Vec<ServiceSpec> {
    let mut dr = svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(3, 80));
    let mut nat = svc(2, VIP4, Proto::Tcp, 8080, Mode::Nat, reals4(3, 8000));
    let nat_udp = svc(3, VIP4, Proto::Udp, 53, Mode::Nat, reals4(3, 0));
    let tun = svc(4, VIP4, Proto::Tcp, 443, Mode::Tun, reals4(2, 443));
    let mut wild = svc(5, VIP4B, Proto::Tcp, 0, Mode::Dr, reals4(3, 0));
    wild.scheduler = SchedulerKind::Rr;
    nat.on_down = OnDown::Keep;
    if let Some(st) = down {
        dr.reals[0].state = st;
        nat.reals[0].state = st;
        wild.reals[1].state = st;
    }
    // On the v4-mapped form of a client's address: IPv4 packets to that
    // client (replies of its NAT flows too) are this service's.
    let mapped = svc(
        6,
        "::ffff:203.0.113.7",
        Proto::Tcp,
        0,
        Mode::Dr,
        reals4(2, 0),
    );
    vec![dr, nat, nat_udp, tun, wild, mapped]
}

fn snap_of(down: Option<RealState>, sync_on: bool, generation: u64) -> Snapshot {
    snap_shaped(down, Shape::Plain, sync_on, generation)
}

/// How a snapshot of the mix differs from the first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    /// The reals of every service in reverse order: the flows' remembered
    /// target indexes name other reals.
    Reversed,
    /// The port also owns 203.0.113.3/24: that client's source is now
    /// the balancer's own, and 203.0.113.255 a broadcast.
    OwnsClient,
    /// The DR service on port 80 loses its last real, which becomes the
    /// first of the next service, on the same port: a flow's remembered
    /// index then names another service's target.
    Shrunk,
    /// The port also owns the wildcard service's VIP: frames to it are
    /// the balancer's own, whatever flows that service has.
    OwnsVip,
}

fn snap_shaped(down: Option<RealState>, shape: Shape, sync_on: bool, generation: u64) -> Snapshot {
    let mut specs = specs(down);
    let mut port = port_info();
    match shape {
        Shape::Plain => {}
        Shape::Reversed => specs.iter_mut().for_each(|s| s.reals.reverse()),
        Shape::OwnsClient => port.addrs.push((IpAddr::V4(v4("203.0.113.3")), 24)),
        Shape::OwnsVip => port.addrs.push((IpAddr::V4(v4(VIP4B)), 24)),
        Shape::Shrunk => {
            if let Some(last) = specs[0].reals.pop() {
                specs[1].reals.insert(0, Real { port: 80, ..last });
            }
        }
    }
    let s = Snapshot::new(
        generation,
        vec![port],
        VipTable::build(specs, generation).unwrap(),
    );
    if sync_on {
        s.with_sync(SyncSpec {
            peer: IpAddr::V4(v4("192.0.2.3")),
            port: sync::DEFAULT_PORT,
            send: true,
            fingerprint: 7,
        })
    } else {
        s
    }
}

/// xorshift64*: the same sequence on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Pair {
    fast: Rig,
    general: Rig,
    /// Frames the burst path decided as plain hits.
    hits: u64,
    /// Frames handled.
    frames: u64,
    /// NAT replies it decided as plain replies.
    reply_hits: u64,
}

impl Pair {
    fn new(sync_on: bool) -> Pair {
        let rig = || {
            let mut r = Rig::small(Vec::new());
            r.snap = snap_of(None, sync_on, 1);
            r.tables = Tables::new(1024, &r.snap);
            r
        };
        Pair {
            fast: rig(),
            general: rig(),
            hits: 0,
            frames: 0,
            reply_hits: 0,
        }
    }

    /// Handles `frame` on both rigs, compares; whether the per-frame
    /// entry ([`Tables::handle`], the burst path over one frame) decided
    /// it as a plain hit.
    fn step(&mut self, frame: &[u8], what: &str) -> bool {
        let (a, b) = (&mut self.fast, &mut self.general);
        // Frames in turn: no NIC hash; the RSS hash a NIC given the
        // table's key computes; a wrong one.
        self.frames += 1;
        let mut fa = match self.frames % 3 {
            0 => TestBuffer::new(frame),
            1 => match nic_rss(&a.tables, frame) {
                Some(h) => TestBuffer::new(frame).with_rss(h),
                None => TestBuffer::new(frame),
            },
            _ => TestBuffer::new(frame).with_rss((self.frames as u32).wrapping_mul(0x9E37_79B1)),
        };
        let mut ca = Ctx {
            snap: &a.snap,
            neigh: &a.neigh,
            now_ms: a.now,
            requests: &mut a.reqs,
            hops: 0,
        };
        let before = a.tables.plain_hits;
        let oa = a.tables.handle(&mut fa, 0, &mut ca);
        let answered = a.tables.plain_hits > before;
        self.hits += u64::from(answered);
        let (ob, bytes) = b.run_general(frame);
        assert_eq!(oa, ob, "{what}: outcome");
        assert_eq!(fa.to_vec(), bytes, "{what}: output bytes");
        self.compare_requests_and_sync(what);
        answered
    }

    /// The neighbour requests both rigs made since the last call, and the
    /// sync records either has due.
    fn compare_requests_and_sync(&mut self, what: &str) {
        let ra: Vec<_> = self.fast.reqs.drain().collect();
        let rb: Vec<_> = self.general.reqs.drain().collect();
        assert_eq!(ra, rb, "{what}: neighbour requests");
        let (a, b) = (&self.fast, &self.general);
        if a.tables.sync.due(a.now) || b.tables.sync.due(b.now) {
            self.compare_sync(what);
        }
    }

    fn compare_sync(&mut self, what: &str) {
        let mut xa = vec![0u8; 2048];
        let mut xb = vec![0u8; 2048];
        let na = self.fast.tables.sync.take_batch(&mut xa, 0, self.fast.now);
        let nb = self
            .general
            .tables
            .sync
            .take_batch(&mut xb, 0, self.general.now);
        assert_eq!(xa[..na], xb[..nb], "{what}: sync records");
    }

    fn advance(&mut self, ms: u64) {
        self.fast.now += ms;
        self.general.now += ms;
    }

    fn adopt(&mut self, new: impl Fn() -> Snapshot) {
        for r in [&mut self.fast, &mut self.general] {
            let n = new();
            r.tables.adopt_at(&r.snap, &n, r.now);
            r.snap = n;
        }
    }

    /// Handles `frames` as one burst on the fast rig
    /// ([`Tables::handle_burst`], some frames carrying the NIC's RSS hash
    /// or a wrong one) and frame by frame on the general rig, compares.
    fn step_burst(&mut self, frames: &[Vec<u8>], what: &str) {
        let (a, b) = (&mut self.fast, &mut self.general);
        let mut bufs: Vec<TestBuffer> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let buf = TestBuffer::new(f);
                match (self.frames + i as u64) % 4 {
                    1 => match nic_rss(&a.tables, f) {
                        Some(h) => buf.with_rss(h),
                        None => buf,
                    },
                    2 => buf.with_rss((self.frames as u32 + i as u32).wrapping_mul(0x9E37_79B1)),
                    _ => buf,
                }
            })
            .collect();
        self.frames += frames.len() as u64;
        let (out, plain) = a.run_burst(&mut bufs);
        self.hits += plain;
        for (i, f) in frames.iter().enumerate() {
            let (ob, bytes) = b.run_general(f);
            assert_eq!(out[i], ob, "{what}, frame {i}: outcome");
            assert_eq!(bufs[i].to_vec(), bytes, "{what}, frame {i}: output bytes");
        }
        self.compare_requests_and_sync(what);
    }

    /// Installs on both rigs, as a sync record from the HA peer would, an
    /// established DR flow of service 1 (VIP4:80) from `client:port`.
    fn sync_flow(&mut self, client: &str, port: u16) {
        let rec = crate::sync::Record {
            op: crate::sync::Op::Update,
            key: FlowKeyV4 {
                service: 1,
                client: v4(client),
                client_port: port,
                vport: 80,
                proto: L4::Tcp,
            }
            .key(),
            real: IpAddr::V4(v4("192.0.2.21")),
            real_port: 80,
            nat: crate::conntrack::Nat::None,
            state: crate::conntrack::State::Established,
            remaining_ms: 60_000,
            persist: false,
        };
        for r in [&mut self.fast, &mut self.general] {
            r.tables.apply_sync(&r.snap, r.now, &rec);
        }
    }

    fn compare_state(&mut self, what: &str) {
        let ca = self.fast.tables.counters().to_vec();
        let cb = self.general.tables.counters().to_vec();
        assert_eq!(ca, cb, "{what}: service counters");
        let (a, b) = (&self.fast.tables, &self.general.tables);
        assert_eq!(a.active, b.active, "{what}: active counts");
        assert_eq!(a.conn.counters(), b.conn.counters(), "{what}: conntrack");
        assert_eq!(a.conn.by_state(), b.conn.by_state(), "{what}: states");
        let flows = |t: &Tables| {
            t.conn
                .live()
                .map(|e| {
                    (
                        e.key(),
                        e.real(),
                        e.real_port(),
                        e.real_hint(),
                        e.nat(),
                        e.state(),
                        e.expiry(),
                        e.synced(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(flows(a), flows(b), "{what}: flows");
        self.compare_sync(what);
    }
}

/// One frame of the traffic mix: a client (off-link, or on the reals'
/// link so NAT flows are source-NATed), a service port, flags.
fn traffic(rng: &mut Rng) -> Vec<u8> {
    let client = client_of(rng);
    let sport = 30_000 + rng.below(6) as u16;
    let (dst, dport, udp) = match rng.below(12) {
        0..=3 => (VIP4, 80, false),
        4..=6 => (VIP4, 8080, false),
        7 => (VIP4, 53, true),
        8 => (VIP4, 443, false),
        9 | 10 => (VIP4B, 1000 + rng.below(3) as u16, false),
        _ => (VIP4, 81 + rng.below(3) as u16, false),
    };
    let flags = match rng.below(20) {
        0..=2 => WireFlags::SYN,
        3 => WireFlags::FIN | WireFlags::ACK,
        4 => WireFlags::RST,
        5 => WireFlags::SYN | WireFlags::FIN,
        _ => WireFlags::ACK | WireFlags::PSH,
    };
    let mut spec = tcp4(&client, sport, dst, dport, flags);
    match rng.below(12) {
        0 | 1 => spec.payload = vec![0x5a; 1400],
        // Around what a tunnel of the 1500-byte port takes (a TCP
        // packet of 1480 bytes), with DF or without.
        2 => {
            spec.payload = vec![0x5b; 1438 + rng.below(5) as usize];
            spec.dont_frag = rng.below(2) == 0;
        }
        _ => {}
    }
    if udp {
        builder::udp4(&spec)
    } else {
        builder::tcp4(&spec)
    }
}

/// A client of the traffic mix: off-link (NAT), or on the reals' link
/// (source NAT: its replies come to our address, not to it).
fn client_of(rng: &mut Rng) -> String {
    if rng.below(8) == 0 {
        format!("192.0.2.{}", 50 + rng.below(8))
    } else {
        format!("203.0.113.{}", 1 + rng.below(24))
    }
}

/// A reply from a real of a NAT service (TCP 8080 -> real port 8000, UDP
/// 53 -> the client's vport) to a client of the mix: mostly from the
/// real and port of the client's flow (as the general rig holds it, even
/// expired), else from another real or port.
fn nat_reply(rng: &mut Rng, general: &Rig) -> Vec<u8> {
    let client = client_of(rng);
    let cport = 30_000 + rng.below(6) as u16;
    let udp = rng.below(4) == 0;
    let key = FlowKeyV4 {
        service: if udp { 3 } else { 2 },
        client: v4(&client),
        client_port: cport,
        vport: if udp { 53 } else { 8080 },
        proto: if udp { L4::Udp } else { L4::Tcp },
    }
    .key();
    let flow = general
        .tables
        .conn
        .live()
        .find(|e| e.key() == key)
        .map(|e| (e.real(), e.real_port()));
    let (real, rport) = match flow {
        Some((IpAddr::V4(r), p)) if rng.below(8) != 0 => (r, p),
        _ => (
            Ipv4Addr::new(192, 0, 2, 21 + rng.below(3) as u8),
            [8000, 53, 8001, 80][rng.below(4) as usize],
        ),
    };
    let flags = match rng.below(16) {
        0 => WireFlags::SYN | WireFlags::ACK,
        1 => WireFlags::FIN | WireFlags::ACK,
        2 => WireFlags::RST,
        3 => WireFlags::RST | WireFlags::ACK,
        4 => WireFlags::SYN,
        _ => WireFlags::ACK | WireFlags::PSH,
    };
    let mut spec = tcp4(&real.to_string(), rport, &client, cport, flags);
    spec.src_mac = real_mac(real.octets()[3] - 20);
    if rng.below(6) == 0 {
        spec.payload = vec![0xa5; 1400];
    }
    if udp {
        builder::udp4(&spec)
    } else {
        builder::tcp4(&spec)
    }
}

/// Recomputes the IPv4 header checksum of a frame (so that a changed
/// byte reaches the checks after it).
fn fix_ip_sum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if ihl < 20 || f.len() < 14 + ihl {
        return;
    }
    f[24] = 0;
    f[25] = 0;
    let mut s = 0u32;
    for w in f[14..14 + ihl].chunks_exact(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let c = !(s as u16);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Changes what a frame's checks look at: one random byte of the
/// headers, a TTL of 0 or 1, fragment bits, a cut, a longer total length,
/// a group MAC, a martian or own source, an own destination.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(12) {
        0..=3 => {
            let at = rng.below(60.min(f.len() as u64)) as usize;
            f[at] = rng.next() as u8;
        }
        4 => f[22] = rng.below(2) as u8,
        5 => f[20] = [0x20, 0x40, 0x80, 0x01][rng.below(4) as usize],
        6 => {
            let keep = 14 + rng.below(60) as usize;
            f.truncate(keep.min(f.len()));
        }
        7 => {
            let tl = u16::from_be_bytes([f[16], f[17]]) + 1 + rng.below(4) as u16;
            f[16..18].copy_from_slice(&tl.to_be_bytes());
        }
        8 => {
            let a = [
                [192, 0, 2, 2],
                [192, 0, 2, 255],
                [127, 0, 0, 1],
                [0, 1, 2, 3],
                [224, 0, 0, 5],
                [192, 0, 2, 100],
            ][rng.below(6) as usize];
            let at = if rng.below(2) == 0 { 26 } else { 30 };
            f[at..at + 4].copy_from_slice(&a);
        }
        9 => {
            let at = if rng.below(2) == 0 { 0 } else { 6 };
            f[at] |= 1;
        }
        10 => f[6..12].fill(0),
        // An IP length that cuts the L4 header (the frame keeps its
        // bytes: Ethernet padding).
        _ => f[16..18].copy_from_slice(&(20 + rng.below(24) as u16).to_be_bytes()),
    }
    if f.len() >= 34 && rng.below(3) != 0 {
        fix_ip_sum(f);
    }
}

fn run_mix(sync_on: bool, seed: u64, frames: usize) -> Pair {
    let mut p = Pair::new(sync_on);
    let mut rng = Rng(seed);
    for i in 0..frames {
        // A third of the frames are replies of the NAT services.
        let reply = rng.below(3) == 0;
        let mut f = if reply {
            nat_reply(&mut rng, &p.general)
        } else {
            traffic(&mut rng)
        };
        if rng.below(4) == 0 {
            mutate(&mut rng, &mut f);
        }
        let fast = p.step(&f, &format!("frame {i}"));
        p.reply_hits += u64::from(reply && fast);
        p.advance(rng.below(40));
        match rng.below(2000) {
            // Past the SYN timeout (half-open flows expire) ...
            0..=2 => p.advance(31_000),
            // ... and past every timeout.
            3 => p.advance(1_000_000),
            // A real goes down, is drained, comes back (snapshot swaps).
            4 => p.adopt(|| snap_of(Some(RealState::Down), sync_on, 2)),
            5 => p.adopt(|| snap_of(Some(RealState::Drain), sync_on, 3)),
            6 => p.adopt(|| snap_of(Some(RealState::Disabled), sync_on, 4)),
            7 => p.adopt(|| snap_of(None, sync_on, 5)),
            _ => {}
        }
        if i % 997 == 0 {
            p.compare_state(&format!("after frame {i}"));
        }
    }
    p.compare_state("at the end");
    p
}

/// [`run_mix`] in bursts of 1 to `BURST` frames (the clock moves between
/// bursts), through [`Tables::handle_burst`] on the fast rig.
fn run_mix_bursts(sync_on: bool, seed: u64, frames: usize) -> Pair {
    let mut p = Pair::new(sync_on);
    let mut rng = Rng(seed);
    let mut done = 0;
    let mut bursts = 0;
    while done < frames {
        let n = 1 + rng.below(burst::BURST as u64) as usize;
        let mut burst = Vec::with_capacity(n);
        for _ in 0..n {
            let mut f = if rng.below(3) == 0 {
                nat_reply(&mut rng, &p.general)
            } else {
                traffic(&mut rng)
            };
            if rng.below(4) == 0 {
                mutate(&mut rng, &mut f);
            }
            burst.push(f);
        }
        // Established flows send more than one segment per burst.
        if n > 4 && rng.below(2) == 0 {
            let k = rng.below(n as u64) as usize;
            let again = burst[k].clone();
            burst[n - 1] = again;
        }
        p.step_burst(&burst, &format!("burst {bursts}"));
        done += n;
        bursts += 1;
        p.advance(rng.below(30));
        let g = 10 + bursts as u64;
        match rng.below(200) {
            0..=2 => p.advance(31_000),
            3 => p.advance(1_000_000),
            4 => p.adopt(|| snap_of(Some(RealState::Down), sync_on, g)),
            5 => p.adopt(|| snap_of(Some(RealState::Drain), sync_on, g)),
            6 => p.adopt(|| snap_of(Some(RealState::Disabled), sync_on, g)),
            7 => p.adopt(|| snap_of(None, sync_on, g)),
            8 => p.adopt(|| snap_shaped(None, Shape::Reversed, sync_on, g)),
            9 => p.adopt(|| snap_shaped(None, Shape::OwnsClient, sync_on, g)),
            13 => p.adopt(|| snap_shaped(None, Shape::Shrunk, sync_on, g)),
            14 => p.adopt(|| snap_shaped(None, Shape::OwnsVip, sync_on, g)),
            // A flow from a source no host may use, as a peer's sync
            // record can install one: its frames must still be dropped.
            10..=12 => {
                let src = [
                    "127.0.0.9",
                    "0.1.2.3",
                    "224.0.0.9",
                    "203.0.113.3",
                    "203.0.113.255",
                    "192.0.2.100",
                ][rng.below(6) as usize];
                let port = 31_000 + rng.below(3) as u16;
                p.sync_flow(src, port);
                let mut spec = tcp4(src, port, VIP4, 80, WireFlags::ACK);
                spec.payload = vec![1; 10];
                let f = builder::tcp4(&spec);
                p.step_burst(&[f.clone(), f], &format!("martian source {src}"));
            }
            _ => {}
        }
        if bursts % 61 == 0 {
            p.compare_state(&format!("after burst {bursts}"));
        }
    }
    p.compare_state("at the end");
    p
}

#[test]
fn burst_path_matches_the_general_path() {
    let p = run_mix_bursts(false, 0x0b0b_5eed_0000_0001, 40_000);
    // Most frames of established flows are forwarded by the burst path
    // itself: the comparison is not vacuous.
    assert!(p.hits > 3_000, "plain frames: {}", p.hits);
}

#[test]
fn burst_path_matches_the_general_path_with_connection_sync() {
    let p = run_mix_bursts(true, 0x0b0b_5eed_0000_0002, 25_000);
    assert!(p.hits > 1_500, "plain frames: {}", p.hits);
}

/// Deterministic (seeded) traffic; the plain hits counted are frames the
/// burst path decided itself. Its next-hop memo lasts 50 ms of a clock
/// that moves 20 ms a frame here, so most frames of a target refresh it
/// through the general path: the comparison covers both.
#[test]
fn per_frame_entry_matches_the_general_path() {
    let p = run_mix(false, 0x5eed_f00d_1234_5678, 30_000);
    assert!(p.hits > 1_500, "plain hits: {}", p.hits);
    assert!(p.reply_hits > 1_200, "plain reply hits: {}", p.reply_hits);
}

#[test]
fn per_frame_entry_matches_the_general_path_with_connection_sync() {
    let p = run_mix(true, 0x0bad_cafe_8765_4321, 20_000);
    assert!(p.hits > 1_000, "plain hits: {}", p.hits);
    assert!(p.reply_hits > 900, "plain reply hits: {}", p.reply_hits);
}

/// The RSS hash a NIC given the table's key writes for an IPv4 frame:
/// Toeplitz over addresses and ports, or the addresses alone for a
/// fragment (by the definition, bit by bit).
fn nic_rss(t: &Tables, f: &[u8]) -> Option<u32> {
    if f.len() < 38 || f[12..14] != [8, 0] || f[14] >> 4 != 4 {
        return None;
    }
    let tz = crate::conntrack::Toeplitz::new(*t.conn.rss_key());
    let l4 = (f[23] == 6 || f[23] == 17) && f[20] & 0x3f == 0 && f[21] == 0;
    let ihl = usize::from(f[14] & 15) * 4;
    let mut input = f[26..34].to_vec();
    if l4 && f.len() >= 14 + ihl + 4 {
        input.extend_from_slice(&f[14 + ihl..14 + ihl + 4]);
    }
    Some(tz.hash(&input))
}

#[test]
fn first_pass_hashes_and_buckets_are_the_lookups_own() {
    let mut r = Rig::small(Vec::new());
    r.snap = snap_of(None, false, 1);
    r.tables = Tables::new(1024, &r.snap);
    // A NAT flow: the client's SYN to VIP:8080.
    let syn = builder::tcp4(&tcp4("203.0.113.9", 40_000, VIP4, 8080, WireFlags::SYN));
    assert!(matches!(r.run(&syn).0, Outcome::Forward { .. }));
    let e = r.tables.conn.live().next().unwrap();
    let (IpAddr::V4(real), real_port) = (e.real(), e.real_port()) else {
        panic!("IPv4 real expected")
    };
    // The forward hash of the first pass is the table's hash of the key,
    // computed or from the NIC's RSS hash.
    let h = r.tables.flow_hash_v4(&syn, &r.snap, None).unwrap();
    assert_eq!(h, r.tables.conn.hash(&e.key()));
    let rss = nic_rss(&r.tables, &syn);
    assert_eq!(r.tables.flow_hash_v4(&syn, &r.snap, rss), Some(h));
    assert_eq!(
        r.tables.conn.bucket_addr(h),
        r.tables.conn.bucket_addr(r.tables.conn.hash(&e.key()))
    );
    // The reply's bucket is the one the reply lookup reads.
    let reply = builder::tcp4(&FrameSpec {
        src_mac: real_mac(1),
        ..tcp4(
            &real.to_string(),
            real_port,
            "203.0.113.9",
            40_000,
            WireFlags::ACK,
        )
    });
    assert_eq!(r.tables.flow_hash_v4(&reply, &r.snap, None), None);
    let key = ReplyKey::Nat {
        real: IpAddr::V4(real),
        real_port,
        client: IpAddr::V4(v4("203.0.113.9")),
        client_port: 40_000,
        proto: L4::Tcp,
    };
    let want = r.tables.conn.hash_reply(&key);
    assert_eq!(r.tables.reply_hash_v4(&reply, None), Some(want));
    let rss = nic_rss(&r.tables, &reply);
    assert_eq!(r.tables.reply_hash_v4(&reply, rss), Some(want));
    // Not IPv4 TCP/UDP: no hash.
    let arp = vec![0u8; 60];
    assert_eq!(r.tables.flow_hash_v4(&arp, &r.snap, Some(1)), None);
    assert_eq!(r.tables.reply_hash_v4(&arp, Some(1)), None);
}

#[test]
fn rss_hashes_stand_for_the_tables_hash_under_any_key() {
    // Random keys, random clients and ports, every IPv4 service of the
    // rig (TCP and UDP, exact and wildcard ports): the NIC's hash of the
    // frame, adjusted, is the table's hash of the flow; for a fragment
    // the NIC's (address-only) hash is not used.
    let mut rng = Rng(0x5eed_0f7e_0b11_7500);
    for round in 0..20 {
        let mut r = Rig::small(Vec::new());
        r.snap = snap_of(None, false, 1);
        r.tables = Tables::new(1024, &r.snap);
        let mut key = [0u8; crate::conntrack::toeplitz::KEY_LEN];
        key.iter_mut().for_each(|b| *b = rng.next() as u8);
        assert!(r.tables.set_rss_key(key, &r.snap));
        assert_eq!(r.tables.conn.rss_key(), &key);
        for _ in 0..200 {
            let client = Ipv4Addr::from(0xcb00_7100 | rng.below(256) as u32);
            let cport = rng.below(65536) as u16;
            let (vip, dport, udp) = match rng.below(5) {
                0 => (VIP4, 80, false),
                1 => (VIP4, 8080, false),
                2 => (VIP4, 53, true),
                3 => (VIP4, 443, false),
                _ => (VIP4B, rng.below(65536) as u16, false),
            };
            let spec = tcp4(&client.to_string(), cport, vip, dport, WireFlags::ACK);
            let mut f = if udp {
                builder::udp4(&spec)
            } else {
                builder::tcp4(&spec)
            };
            let soft = r.tables.flow_hash_v4(&f, &r.snap, None).unwrap();
            let (si, fk) =
                crate::pipeline::burst::key_v4(&r.snap, f.first_chunk().unwrap()).unwrap();
            assert_eq!(soft, r.tables.conn.hash(&fk.key()), "round {round}");
            assert_eq!(si, r.snap.vips.idx_by_id(fk.service).unwrap());
            let rss = nic_rss(&r.tables, &f);
            assert_eq!(
                r.tables.flow_hash_v4(&f, &r.snap, rss),
                Some(soft),
                "round {round}"
            );
            // More fragments: the NIC hashed the addresses only.
            f[20] |= 0x20;
            let rss = nic_rss(&r.tables, &f);
            assert_eq!(
                r.tables.flow_hash_v4(&f, &r.snap, rss),
                Some(soft),
                "fragment"
            );
        }
        // Once the table holds a flow, the key stays.
        let syn = builder::tcp4(&tcp4("203.0.113.9", 40_000, VIP4, 80, WireFlags::SYN));
        assert!(matches!(r.run(&syn).0, Outcome::Forward { .. }));
        assert!(!r.tables.set_rss_key([0; 40], &r.snap));
        assert_eq!(r.tables.conn.rss_key(), &key);
    }
}

/// The burst path forwards with the next hop it remembers for a target
/// only as long as the per-frame path would (`HOP_CACHE_MS`): a real's
/// new MAC reaches its flow's frames by then.
#[test]
fn burst_path_takes_a_new_next_hop_within_the_memo_time() {
    let mut r = Rig::small(vec![svc(1, VIP4, Proto::Tcp, 80, Mode::Dr, reals4(1, 80))]);
    let f = builder::tcp4(&tcp4("203.0.113.10", 40_000, VIP4, 80, WireFlags::ACK));
    let burst = |r: &mut Rig| {
        let mut bufs = [TestBuffer::new(&f), TestBuffer::new(&f)];
        let (out, plain) = r.run_burst(&mut bufs);
        assert_eq!(out[..2], [Outcome::Forward { port: 0 }; 2]);
        let macs: Vec<[u8; 6]> = bufs
            .iter()
            .map(|b| b.data()[0..6].try_into().unwrap())
            .collect();
        (macs, plain)
    };
    // The first frame creates the flow and remembers the next hop; the
    // second is a plain hit.
    let (macs, plain) = burst(&mut r);
    assert_eq!(macs, vec![real_mac(1).0; 2]);
    assert_eq!(plain, 1);
    let new_mac = MacAddr([0x02, 0x77, 0, 0, 0, 1]);
    r.neigh.set_static(IpAddr::V4(v4("192.0.2.21")), new_mac);
    // Within the memo time the old MAC may still be used ...
    r.now += crate::neigh::HOP_CACHE_MS - 1;
    let (macs, plain) = burst(&mut r);
    assert_eq!((macs, plain), (vec![real_mac(1).0; 2], 2));
    // ... after it, never: the per-frame path resolves it again and the
    // burst path remembers the new one.
    r.now += 1;
    let (macs, plain) = burst(&mut r);
    assert_eq!(macs, vec![new_mac.0; 2]);
    assert_eq!(plain, 1);
    assert_eq!(r.tables.counters()[0].packets_in, 6);
    assert_eq!(r.tables.counters()[0].reals[0][0], 6);
}
