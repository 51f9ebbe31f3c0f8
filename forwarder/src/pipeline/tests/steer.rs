//! Several workers ([`crate::steer`]): a frame whose state lives on
//! another worker is handed there untouched, whichever worker it lands
//! on, and N workers decide exactly what one worker decides (byte for
//! byte, frame by frame).

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::pipeline::limit::NodeLimits;
use crate::steer::Steer;

const REAL1: &str = "192.0.2.21";
const LB4: &str = "192.0.2.2";
const ROUTER4: &str = "198.51.100.1";

/// Where a frame ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Landed {
    outcome: Outcome,
    frame: Vec<u8>,
    /// The worker that decided it.
    worker: usize,
    /// Hand-offs on the way.
    hops: u8,
}

/// The workers of one node, over one snapshot and neighbour cache.
struct Node {
    snap: Snapshot,
    neigh: NeighTable,
    w: Vec<Tables>,
    reqs: NeighRequests,
    now: u64,
    /// Plain replies handed over with their reply hash.
    hinted: u32,
}

impl Node {
    fn new(specs: Vec<ServiceSpec>, n: u16) -> Node {
        let snap = snapshot(specs);
        let limits = Arc::new(NodeLimits::default());
        let w = (0..n)
            .map(|i| {
                let mut t = Tables::for_worker(1024, &snap, Steer::new(i, n));
                t.share_limits(Arc::clone(&limits), &snap);
                t
            })
            .collect();
        Node {
            snap,
            neigh: neigh(),
            w,
            reqs: NeighRequests::default(),
            now: 1000,
            hinted: 0,
        }
    }

    /// `frame` lands on worker `w` from port 0 and is decided frame by
    /// frame; hand-offs are followed as the worker's rings would carry
    /// them.
    fn land(&mut self, frame: &[u8], mut w: usize) -> Landed {
        let mut b = TestBuffer::new(frame);
        let mut hops = 0u8;
        for _ in 0..=self.w.len() {
            let before = b.to_vec();
            let mut ctx = Ctx {
                snap: &self.snap,
                neigh: &self.neigh,
                now_ms: self.now,
                requests: &mut self.reqs,
                hops,
            };
            match self.w[w].handle(&mut b, 0, &mut ctx) {
                Outcome::Handoff { to, .. } => {
                    assert_eq!(b.to_vec(), before, "a frame is handed off untouched");
                    assert_ne!(usize::from(to), w, "handed to itself");
                    w = usize::from(to);
                    hops += 1;
                }
                outcome => {
                    return Landed {
                        outcome,
                        frame: b.to_vec(),
                        worker: w,
                        hops,
                    }
                }
            }
        }
        panic!("a frame went round the workers without end");
    }

    /// `frames` land on worker `w` as one burst; frames handed off reach
    /// their worker as a burst of their own after it, as the rings carry
    /// them. Results in the order of `frames`.
    fn land_burst(&mut self, frames: &[Vec<u8>], w: usize) -> Vec<Landed> {
        let mut done: Vec<Option<Landed>> = vec![None; frames.len()];
        // (frame index, buffer, hops, reply hash) waiting per worker.
        type Waiting = (usize, TestBuffer, u8, Option<u32>);
        let mut queue: Vec<Vec<Waiting>> = vec![Vec::new(); self.w.len()];
        queue[w] = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (i, TestBuffer::new(f), 0, None))
            .collect();
        for _ in 0..=(self.w.len() * frames.len() + 1) {
            let Some(at) = queue.iter().position(|q| !q.is_empty()) else {
                break;
            };
            let batch = std::mem::take(&mut queue[at]);
            let idx: Vec<usize> = batch.iter().map(|b| b.0).collect();
            let hops: Vec<u8> = batch.iter().map(|b| b.2).collect();
            let hints: Vec<Option<u32>> = batch.iter().map(|b| b.3).collect();
            let mut bufs: Vec<TestBuffer> = batch.into_iter().map(|b| b.1).collect();
            let before: Vec<Vec<u8>> = bufs.iter().map(|b| b.to_vec()).collect();
            let mut out = [Outcome::Consumed; burst::BURST];
            let mut ctx = Ctx {
                snap: &self.snap,
                neigh: &self.neigh,
                now_ms: self.now,
                requests: &mut self.reqs,
                hops: 0,
            };
            let mut rx = Handed {
                bufs: &mut bufs,
                hops: &hops,
                hints: &hints,
            };
            self.w[at].handle_burst(&mut rx, 0, &mut ctx, &mut out);
            for (k, b) in bufs.into_iter().enumerate() {
                match out[k] {
                    Outcome::Handoff { to, reply_hash } => {
                        assert_eq!(b.to_vec(), before[k], "handed off untouched");
                        self.hinted += u32::from(reply_hash.is_some());
                        queue[usize::from(to)].push((idx[k], b, hops[k] + 1, reply_hash));
                    }
                    outcome => {
                        done[idx[k]] = Some(Landed {
                            outcome,
                            frame: b.to_vec(),
                            worker: at,
                            hops: hops[k],
                        })
                    }
                }
            }
        }
        done.into_iter()
            .map(|d| d.expect("every frame decided"))
            .collect()
    }
}

/// Frames handed over by another worker, with their hand-off counts and
/// reply hashes.
struct Handed<'a> {
    bufs: &'a mut [TestBuffer],
    hops: &'a [u8],
    hints: &'a [Option<u32>],
}

impl burst::RxFrames for Handed<'_> {
    type Buf = TestBuffer;
    fn count(&self) -> usize {
        self.bufs.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.bufs.get(i).map_or(&[], |b| b.data())
    }
    fn buf_mut(&mut self, i: usize) -> Option<&mut TestBuffer> {
        self.bufs.get_mut(i)
    }
    fn rss_hash(&self, i: usize) -> Option<u32> {
        self.bufs.get(i).and_then(|b| b.rss_hash())
    }
    fn hops(&self, i: usize) -> u8 {
        self.hops.get(i).copied().unwrap_or(0)
    }
    fn reply_hint(&self, i: usize) -> Option<u32> {
        self.hints.get(i).copied().flatten()
    }
}

fn nat_tcp() -> ServiceSpec {
    svc(1, VIP4, Proto::Tcp, 80, Mode::Nat, reals4(3, 8080))
}

fn nat_udp() -> ServiceSpec {
    svc(2, VIP4, Proto::Udp, 53, Mode::Nat, reals4(3, 5353))
}

fn dr_tcp() -> ServiceSpec {
    svc(3, VIP4, Proto::Tcp, 443, Mode::Dr, reals4(3, 443))
}

/// The reply a NAT real sends for the request it received (`to_real`):
/// addresses and ports swapped, from the real's MAC.
fn reply_to(to_real: &[u8], flags: WireFlags) -> Vec<u8> {
    let ip = Ipv4Packet::new_checked(&to_real[14..]).unwrap();
    let (src, dst) = (ip.src(), ip.dst());
    let l4 = &to_real[14 + ip.header_len()..];
    let (sport, dport) = (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    let spec = FrameSpec {
        src_mac: MacAddr(to_real[0..6].try_into().unwrap()),
        dst_mac: LB,
        src: dst,
        dst: src,
        src_port: dport,
        dst_port: sport,
        tcp_flags: flags,
        payload: b"answer".to_vec(),
        ..FrameSpec::default()
    };
    if ip.protocol() == crate::packet::ip_proto::UDP {
        builder::udp4(&spec)
    } else {
        builder::tcp4(&spec)
    }
}

/// A client port whose flows worker `owner` of `n` owns.
fn port_owned_by(client: &str, owner: u16, n: u16, from: u16) -> u16 {
    let s = Steer::new(0, n);
    (from..u16::MAX)
        .find(|&p| s.client_owner_v4(u32::from(v4(client)), p) == owner)
        .unwrap()
}

#[test]
fn nat_requests_and_replies_reach_their_owner_wherever_they_land() {
    let mut node = Node::new(vec![nat_tcp(), nat_udp()], 2);
    let mut one = Rig::small(vec![nat_tcp(), nat_udp()]);
    let st = Steer::new(0, 2);
    let (mut handed_req, mut handed_rep) = (0, 0);
    for k in 0..40u16 {
        let cport = 40_000 + k;
        let owner = usize::from(st.client_owner_v4(u32::from(v4(CLIENT4)), cport));
        for (i, syn) in [
            builder::tcp4(&tcp4(CLIENT4, cport, VIP4, 80, WireFlags::SYN)),
            builder::udp4(&FrameSpec {
                payload: b"q".to_vec(),
                ..tcp4(CLIENT4, cport, VIP4, 53, WireFlags::NONE)
            }),
        ]
        .into_iter()
        .enumerate()
        {
            // Requests land on worker k % 2, whatever their owner.
            let got = node.land(&syn, usize::from(k % 2));
            let (o, want) = one.run(&syn);
            assert_eq!((got.outcome, &got.frame), (o, &want), "request {k}/{i}");
            assert_eq!(got.worker, owner, "decided by its owner");
            handed_req += usize::from(got.hops);
            // The reply lands on the worker that does not own it.
            let rep = reply_to(&want, WireFlags(0x12));
            let got = node.land(&rep, 1 - owner);
            let (o, want) = one.run(&rep);
            assert_eq!(o, Outcome::Forward { port: 0 }, "reply {k}/{i}");
            assert_eq!((got.outcome, &got.frame), (o, &want), "reply {k}/{i}");
            assert_eq!((got.worker, got.hops), (owner, 1));
            handed_rep += 1;
        }
    }
    assert!(handed_req >= 20, "requests handed off: {handed_req}");
    assert_eq!(handed_rep, 80);
    // Every flow is in exactly one worker's table.
    let flows: usize = node.w.iter().map(|t| t.conn.len()).sum();
    assert_eq!(flows, one.tables.conn.len());
}

#[test]
fn plain_frames_and_replies_are_handed_off_in_the_burst_path_too() {
    let n = 2;
    let mut node = Node::new(vec![nat_tcp(), dr_tcp()], n);
    let mut one = Rig::small(vec![nat_tcp(), dr_tcp()]);
    // Established flows: SYNs through the per-frame path first.
    let ports: Vec<u16> = (0..21).map(|k| 30_000 + k * 7).collect();
    let mut replies = Vec::new();
    for &p in &ports {
        let syn = builder::tcp4(&tcp4(CLIENT4, p, VIP4, 80, WireFlags::SYN));
        let owner = Steer::new(0, n).client_owner_v4(u32::from(v4(CLIENT4)), p);
        let got = node.land(&syn, usize::from(owner));
        let (_, want) = one.run(&syn);
        assert_eq!(got.frame, want);
        replies.push(reply_to(&want, WireFlags::ACK));
        let dr = builder::tcp4(&tcp4(CLIENT4, p, VIP4, 443, WireFlags::SYN));
        let got = node.land(&dr, 0);
        assert_eq!(got.frame, one.run(&dr).1);
    }
    // Then one burst on worker 0 of data, replies and DR frames mixed.
    let mut burst = Vec::new();
    for (k, &p) in ports.iter().enumerate() {
        burst.push(builder::tcp4(&tcp4(CLIENT4, p, VIP4, 80, WireFlags::ACK)));
        burst.push(replies[k].clone());
        burst.push(builder::tcp4(&tcp4(CLIENT4, p, VIP4, 443, WireFlags::ACK)));
    }
    let got = node.land_burst(&burst, 0);
    let hits: u64 = node.w.iter().map(|t| t.plain_hits).sum();
    assert!(hits > 0, "the burst path decided frames itself");
    for (k, f) in burst.iter().enumerate() {
        let (o, want) = one.run(f);
        assert_eq!((got[k].outcome, &got[k].frame), (o, &want), "frame {k}");
        if k % 3 == 2 {
            assert_eq!(got[k].hops, 0, "DR frames are never handed off");
        }
    }
    assert!(got.iter().any(|l| l.hops == 1 && l.worker == 1));
    assert!(node.hinted > 0, "plain replies travel with their hash");
}

#[test]
fn hairpin_replies_follow_their_source_nat_port_to_its_worker() {
    let n = 2;
    let mut node = Node::new(vec![nat_tcp()], n);
    for k in 0..8u16 {
        // A real calling its own VIP is source-NATed.
        let syn = builder::tcp4(&FrameSpec {
            src_mac: real_mac(1),
            ..tcp4(REAL1, 50_000 + k, VIP4, 80, WireFlags::SYN)
        });
        let got = node.land(&syn, 0);
        assert_eq!(got.outcome, Outcome::Forward { port: 0 });
        let ip = Ipv4Packet::new_checked(&got.frame[14..]).unwrap();
        assert_eq!(ip.src(), v4(LB4), "source-NATed");
        let lport = u16::from_be_bytes([got.frame[34], got.frame[35]]);
        let owner = Steer::new(0, n).snat_owner(lport).unwrap();
        assert_eq!(usize::from(owner), got.worker, "the port is its owner's");
        assert!(Steer::new(owner, n).snat_range().contains(&lport));
        // The reply to our address lands on the other worker.
        let rep = reply_to(&got.frame, WireFlags(0x12));
        let back = node.land(&rep, 1 - got.worker);
        assert_eq!(back.outcome, Outcome::Forward { port: 0 }, "{k}");
        assert_eq!((back.worker, back.hops), (got.worker, 1));
        let ip = Ipv4Packet::new_checked(&back.frame[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (v4(VIP4), v4(REAL1)));
    }
    // A port of the range without a flow still goes to the kernel, from
    // the worker that owns the port.
    let stray = builder::tcp4(&FrameSpec {
        src_mac: real_mac(1),
        ..tcp4(REAL1, 8080, LB4, 32_000, WireFlags::ACK)
    });
    let got = node.land(&stray, 0);
    assert_eq!((got.outcome, got.worker), (Outcome::ToKernel, 1));
}

#[test]
fn outbound_flows_are_owned_by_the_remote_endpoints_worker_both_ways() {
    use crate::pipeline::outbound::OutboundRule;
    let n = 2;
    let mut node = Node::new(vec![nat_tcp()], n);
    let s = std::mem::replace(&mut node.snap, snapshot(Vec::new()));
    node.snap = s.with_outbound(vec![OutboundRule {
        sources: vec![(IpAddr::V4(v4("192.0.2.0")), 24)],
        address: IpAddr::V4(v4(LB4)),
    }]);
    let mut owners = [0; 2];
    for k in 0..16u16 {
        let remote_port = 440 + k;
        let syn = builder::tcp4(&FrameSpec {
            src_mac: real_mac(1),
            ..tcp4(REAL1, 45_000 + k, ROUTER4, remote_port, WireFlags::SYN)
        });
        let owner =
            usize::from(Steer::new(0, n).client_owner_v4(u32::from(v4(ROUTER4)), remote_port));
        owners[owner] += 1;
        let got = node.land(&syn, usize::from(k % 2));
        assert_eq!(
            (got.outcome, got.worker),
            (Outcome::Forward { port: 0 }, owner)
        );
        let ip = Ipv4Packet::new_checked(&got.frame[14..]).unwrap();
        assert_eq!(ip.src(), v4(LB4), "leaves from the balancer");
        let out = got.frame.clone();
        // The answer lands on either worker and reaches the owner, in the
        // per-frame and in the burst path.
        let rep = reply_to(&got.frame, WireFlags(0x12));
        let back = node.land(&rep, usize::from(k / 2 % 2));
        assert_eq!(
            (back.outcome, back.worker),
            (Outcome::Forward { port: 0 }, owner),
            "{k}"
        );
        let ip = Ipv4Packet::new_checked(&back.frame[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (v4(ROUTER4), v4(REAL1)));
        let ack = builder::tcp4(&FrameSpec {
            src_mac: real_mac(1),
            ..tcp4(REAL1, 45_000 + k, ROUTER4, remote_port, WireFlags::ACK)
        });
        let answer = reply_to(&out, WireFlags::ACK);
        let got = node.land_burst(&[ack, answer], 1 - owner);
        for g in &got {
            assert_eq!((g.outcome, g.worker), (Outcome::Forward { port: 0 }, owner));
        }
        let ip = Ipv4Packet::new_checked(&got[1].frame[14..]).unwrap();
        assert_eq!(ip.dst(), v4(REAL1));
    }
    assert!(
        owners[0] > 0 && owners[1] > 0,
        "both workers own some: {owners:?}"
    );
}

/// A router's "fragmentation needed" to the VIP about the DR reply
/// `VIP:443 -> client:cport`.
fn frag_needed_to_vip(cport: u16) -> Vec<u8> {
    let quote = builder::tcp4(&tcp4(VIP4, 443, CLIENT4, cport, WireFlags::ACK));
    builder::icmp4_error(
        &FrameSpec {
            src_mac: GW_MAC,
            dst_mac: LB,
            src: v4(ROUTER4),
            dst: v4(VIP4),
            ttl: 64,
            ..FrameSpec::default()
        },
        3,
        4,
        1400,
        &quote[14..],
    )
}

#[test]
fn icmp_errors_reach_the_worker_that_holds_the_flow_they_quote() {
    let mut node = Node::new(vec![nat_tcp(), dr_tcp()], 3);
    let mut one = Rig::small(vec![nat_tcp(), dr_tcp()]);
    for k in 0..6u16 {
        // NAT: an error from the real's side quoting client -> real.
        let cport = port_owned_by(CLIENT4, k % 3, 3, 41_000 + k * 100);
        let syn = builder::tcp4(&tcp4(CLIENT4, cport, VIP4, 80, WireFlags::SYN));
        let to_real = node.land(&syn, 0).frame;
        assert_eq!(to_real, one.run(&syn).1);
        let err = builder::icmp4_error(
            &FrameSpec {
                src_mac: real_mac(1),
                dst_mac: LB,
                src: v4(REAL1),
                dst: v4(CLIENT4),
                ttl: 64,
                ..FrameSpec::default()
            },
            3,
            4,
            1400,
            &to_real[14..],
        );
        let lands = usize::from((k + 1) % 3);
        let got = node.land(&err, lands);
        let (o, want) = one.run(&err);
        assert_eq!(o, Outcome::Forward { port: 0 });
        assert_eq!((got.outcome, &got.frame), (o, &want), "NAT error {k}");
        assert_eq!(got.worker, usize::from(k % 3));

        // DR: the flow lives where the client's packets landed; an error
        // to the VIP quoting VIP -> client lands elsewhere and asks
        // around.
        let dport = 42_000 + k;
        let syn = builder::tcp4(&tcp4(CLIENT4, dport, VIP4, 443, WireFlags::SYN));
        let home = usize::from(k % 3);
        let fwd = node.land(&syn, home);
        assert_eq!(fwd.frame, one.run(&syn).1);
        let err = frag_needed_to_vip(dport);
        let got = node.land(&err, (home + 1) % 3);
        let (o, want) = one.run(&err);
        assert_eq!(o, Outcome::Forward { port: 0 }, "DR error {k}");
        assert_eq!((got.outcome, &got.frame), (o, &want), "DR error {k}");
        assert_eq!(got.worker, home);
    }
    // An error about no flow at all: every worker is asked once.
    let got = node.land(&frag_needed_to_vip(9), 2);
    assert_eq!(got.outcome, Outcome::Dropped(DropReason::IcmpNoFlow));
    assert_eq!(got.hops, 2);
}

#[test]
fn later_fragments_follow_their_first_to_its_owner() {
    for n in [2u16, 3] {
        let mut node = Node::new(vec![nat_udp()], n);
        let mut one = Rig::small(vec![nat_udp()]);
        for k in 0..6u16 {
            let cport = port_owned_by(CLIENT4, k % n, n, 20_000 + k * 50);
            let owner = usize::from(k % n);
            let spec = FrameSpec {
                ident: 0x4000 + k,
                payload: (0..3000).map(|i| (i * 7) as u8).collect(),
                ..tcp4(CLIENT4, cport, VIP4, 53, WireFlags::NONE)
            };
            let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
            assert_eq!(frags.len(), 3);
            // The first lands on a worker that does not own the flow;
            // the later ones with it (a NIC hashes every fragment of a
            // datagram alike), or on yet another worker.
            let first_at = (owner + 1) % usize::from(n);
            let later_at = if k % 2 == 0 {
                first_at
            } else {
                (owner + 2) % usize::from(n)
            };
            for (i, f) in frags.iter().enumerate() {
                let at = if i == 0 { first_at } else { later_at };
                let got = node.land(f, at);
                let (o, want) = one.run(f);
                assert_eq!(o, Outcome::Forward { port: 0 }, "{n}: {k}/{i}");
                assert_eq!((got.outcome, &got.frame), (o, &want), "{n}: {k}/{i}");
                assert_eq!(got.worker, owner, "{n}: {k}/{i}");
            }
        }
        // A later fragment nobody knows: asked around, then dropped.
        let spec = FrameSpec {
            ident: 0x7777,
            payload: vec![1; 3000],
            ..tcp4(CLIENT4, 999, VIP4, 53, WireFlags::NONE)
        };
        let frags = builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap();
        let got = node.land(&frags[1], 0);
        assert_eq!(got.outcome, Outcome::Dropped(DropReason::Fragment));
        assert_eq!(u16::from(got.hops), n - 1);
    }
}

#[test]
fn rate_limits_hold_per_node_not_per_worker() {
    let mut spec = dr_tcp();
    spec.new_flow_rate_limit = Some(5);
    let mut node = Node::new(vec![spec], 2);
    let admitted = (0..20u16)
        .filter(|&k| {
            let syn = builder::tcp4(&tcp4(CLIENT4, 1000 + k, VIP4, 443, WireFlags::SYN));
            node.land(&syn, usize::from(k % 2)).outcome == Outcome::Forward { port: 0 }
        })
        .count();
    assert_eq!(admitted, 5, "one budget for the node");
}

/// One event of a traffic script.
#[derive(Debug, Clone)]
enum Ev {
    /// A client packet (SYN first time) of flow `flow` to service `svc`.
    Request { flow: u8, svc: u8, flags: u8 },
    /// The real's reply to flow `flow` (NAT services only).
    Reply { flow: u8 },
    /// A fragmented UDP datagram of flow `flow` (NAT UDP).
    Fragmented { flow: u8, len: u16 },
    /// An ICMP error from the real's side about flow `flow` (NAT).
    Error { flow: u8 },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (0u8..24, 0u8..4, 0u8..3).prop_map(|(flow, svc, flags)| Ev::Request { flow, svc, flags }),
        3 => (0u8..24).prop_map(|flow| Ev::Reply { flow }),
        1 => (0u8..24, 1600u16..4000).prop_map(|(flow, len)| Ev::Fragmented { flow, len }),
        1 => (0u8..24).prop_map(|flow| Ev::Error { flow }),
    ]
}

fn diff_specs() -> Vec<ServiceSpec> {
    let mut tun = svc(4, VIP4, Proto::Tcp, 8443, Mode::Tun, reals4(3, 0));
    tun.persistence = Some(Persistence {
        timeout_secs: 60,
        v4_prefix: 24,
        v6_prefix: 64,
    });
    vec![nat_tcp(), nat_udp(), dr_tcp(), tun]
}

/// Where a frame lands: a hash of its addresses and ports, as RSS.
fn rss_like(frame: &[u8], n: usize) -> usize {
    let h = frame[26..38].iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h as usize % n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same traffic through one worker and through N workers with
    /// hand-offs: the same outcome and the same bytes for every frame.
    #[test]
    fn n_workers_decide_what_one_worker_decides(
        n in 2u16..=4,
        script in proptest::collection::vec(ev(), 1..80),
    ) {
        let mut node = Node::new(diff_specs(), n);
        let mut one = Rig::small(diff_specs());
        // The last frame each NAT flow's real received (for replies).
        let mut to_real: Vec<Option<Vec<u8>>> = vec![None; 24];
        let vports = [80u16, 53, 443, 8443];
        let mut hops = 0u32;
        for (step, e) in script.iter().enumerate() {
            node.now += 3;
            one.now += 3;
            let frames: Vec<Vec<u8>> = match *e {
                Ev::Request { flow, svc, flags } => {
                    let svc = usize::from(svc);
                    let spec = FrameSpec {
                        ident: step as u16,
                        payload: vec![flow; 20],
                        ..tcp4(CLIENT4, 10_000 + u16::from(flow), VIP4, vports[svc],
                            [WireFlags::SYN, WireFlags::ACK, WireFlags(0x11)][usize::from(flags)])
                    };
                    vec![if svc == 1 { builder::udp4(&spec) } else { builder::tcp4(&spec) }]
                }
                Ev::Reply { flow } => match &to_real[usize::from(flow)] {
                    Some(f) => vec![reply_to(f, WireFlags::ACK)],
                    None => continue,
                },
                Ev::Fragmented { flow, len } => {
                    let spec = FrameSpec {
                        ident: 0x100 + step as u16,
                        payload: vec![flow; usize::from(len)],
                        ..tcp4(CLIENT4, 10_000 + u16::from(flow), VIP4, 53, WireFlags::NONE)
                    };
                    builder::ipv4_fragments(&builder::udp4(&spec), 1500).unwrap()
                }
                Ev::Error { flow } => match &to_real[usize::from(flow)] {
                    Some(f) => {
                        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
                        vec![builder::icmp4_error(
                            &FrameSpec {
                                src_mac: real_mac(1),
                                dst_mac: LB,
                                src: ip.dst(),
                                dst: ip.src(),
                                ttl: 64,
                                ..FrameSpec::default()
                            },
                            3, 4, 1400, &f[14..],
                        )]
                    }
                    None => continue,
                },
            };
            // Fragments of one datagram land together (hashed on their
            // first); anything else where its own tuple says.
            let at = rss_like(&frames[0], usize::from(n));
            for f in &frames {
                let got = node.land(f, at);
                let (o, want) = one.run(f);
                prop_assert_eq!(got.outcome, o, "step {} {:?}", step, e);
                prop_assert_eq!(&got.frame, &want, "step {} {:?}", step, e);
                prop_assert!(usize::from(got.hops) < usize::from(n));
                hops += u32::from(got.hops);
                if o == (Outcome::Forward { port: 0 }) && matches!(e, Ev::Request { svc: 0 | 1, .. } | Ev::Fragmented { .. }) {
                    let ip = Ipv4Packet::new_checked(&want[14..]).unwrap();
                    if ip.frag_offset() == 0 {
                        let flow = match *e {
                            Ev::Request { flow, .. } | Ev::Fragmented { flow, .. } => flow,
                            _ => unreachable!(),
                        };
                        to_real[usize::from(flow)] = Some(want.clone());
                    }
                }
            }
        }
        let flows: usize = node.w.iter().map(|t| t.conn.len()).sum();
        prop_assert_eq!(flows, one.tables.conn.len(), "every flow held once");
        // Not vacuous: a long script crosses workers (a NAT frame lands on
        // its owner with odds 1/n).
        if script.len() >= 40 {
            prop_assert!(hops > 0, "no frame was handed off");
        }
    }
}

/// The queue a NIC that steers puts an IPv4 TCP or UDP `frame` on: the
/// Toeplitz hash by its definition, under the steering key, of the
/// frame's addresses and ports with the other side's left as zeros (a NIC
/// that keeps the fields in place), through a 512-entry redirection
/// table written as [`Steer::reta`] says.
fn nic_queue(frame: &[u8], by_source: bool, workers: u16) -> usize {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let l4 = &frame[14 + ip.header_len()..];
    let mut input = [0u8; 12];
    if by_source {
        input[0..4].copy_from_slice(&ip.src().octets());
        input[8..10].copy_from_slice(&l4[0..2]);
    } else {
        input[4..8].copy_from_slice(&ip.dst().octets());
        input[10..12].copy_from_slice(&l4[2..4]);
    }
    let key: [u8; crate::conntrack::toeplitz::KEY_LEN] =
        std::array::from_fn(|i| crate::steer::STEER_KEY[i]);
    let h = crate::conntrack::Toeplitz::new(key).hash(&input) as usize;
    usize::from(Steer::reta(512, workers)[h & 511])
}

#[test]
fn where_the_nics_steer_by_one_side_no_nat_frame_is_handed_over() {
    use crate::pipeline::outbound::OutboundRule;
    for n in [2u16, 3, 4] {
        let mut node = Node::new(vec![nat_tcp(), nat_udp()], n);
        let s = std::mem::replace(&mut node.snap, snapshot(Vec::new()));
        node.snap = s.with_outbound(vec![OutboundRule {
            sources: vec![(IpAddr::V4(v4("192.0.2.0")), 24)],
            address: IpAddr::V4(v4(LB4)),
        }]);
        let mut one = Rig::small(vec![nat_tcp(), nat_udp()]);
        let mut queues = vec![0u32; usize::from(n)];
        for k in 0..48u16 {
            let client = ["198.51.100.10", "198.51.100.77", "203.0.113.5"][usize::from(k % 3)];
            let cport = 33_000 + k * 131;
            for req in [
                builder::tcp4(&tcp4(client, cport, VIP4, 80, WireFlags::SYN)),
                builder::udp4(&FrameSpec {
                    payload: b"q".to_vec(),
                    ..tcp4(client, cport, VIP4, 53, WireFlags::NONE)
                }),
            ] {
                // The client port hashes source fields ...
                let q = nic_queue(&req, true, n);
                queues[q] += 1;
                let got = node.land(&req, q);
                let (o, want) = one.run(&req);
                assert_eq!(
                    (got.outcome, &got.frame, got.hops),
                    (o, &want, 0),
                    "n={n} {k}"
                );
                // ... the reals' port destination fields: the reply
                // reaches the same worker.
                let rep = reply_to(&want, WireFlags(0x12));
                let got = node.land(&rep, nic_queue(&rep, false, n));
                let (o, want) = one.run(&rep);
                assert_eq!(o, Outcome::Forward { port: 0 });
                assert_eq!(
                    (got.outcome, &got.frame, got.hops),
                    (o, &want, 0),
                    "n={n} {k}"
                );
                assert_eq!(got.worker, q);
            }
            // Outbound NAT: a real's connection hashed on destination
            // fields where it arrives, the answer on source fields.
            let syn = builder::tcp4(&FrameSpec {
                src_mac: real_mac(1),
                ..tcp4(REAL1, 45_000 + k, ROUTER4, 440 + k, WireFlags::SYN)
            });
            let got = node.land(&syn, nic_queue(&syn, false, n));
            assert_eq!((got.outcome, got.hops), (Outcome::Forward { port: 0 }, 0));
            let answer = reply_to(&got.frame, WireFlags(0x12));
            let back = node.land(&answer, nic_queue(&answer, true, n));
            assert_eq!((back.outcome, back.hops), (Outcome::Forward { port: 0 }, 0));
            assert_eq!(back.worker, got.worker);
        }
        assert!(
            queues.iter().all(|&c| c > 0),
            "every queue used: {queues:?}"
        );
    }
}
