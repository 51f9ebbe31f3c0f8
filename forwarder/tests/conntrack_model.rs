//! Model-based property test of the connection table: random sequences of
//! insert / lookup / reply lookup / touch / remove / sweep / time advance,
//! checked against a `HashMap` model after every step.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use forwarder::conntrack::{
    is_expired, Config, ConnTable, Dir, FlowKey, FlowValue, FreeReason, Freed, InsertError, Lookup,
    Nat, ReplyKey, State, TcpFlags, Timeouts, L4,
};
use forwarder::service::RealIdx;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert { k: u8, real: u8, nat: u8, flags: u8 },
    Lookup { k: u8 },
    LookupReply { k: u8, real: u8, nat: u8 },
    Touch { k: u8, reply: bool, flags: u8 },
    Remove { k: u8 },
    Sweep { budget: u32 },
    Advance { dt: u32 },
}

fn client(i: u8) -> IpAddr {
    match i % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        2 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        // v4-mapped form of client 0: must not be confused with it
        _ => IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped()),
    }
}

/// 32 keys: service {1,2} x client {4} x port {2} x proto {tcp,udp}.
fn key(k: u8) -> FlowKey {
    FlowKey {
        service: 1 + u32::from(k & 1),
        client: client(k >> 1),
        client_port: 1000 + u16::from((k >> 3) & 1),
        vport: 80,
        proto: if k & 16 == 0 { L4::Tcp } else { L4::Udp },
    }
}

fn real(r: u8) -> (IpAddr, u16) {
    let addr = if r & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
    };
    (addr, 8080 + u16::from((r >> 1) & 1))
}

fn nat(n: u8) -> Nat {
    match n % 4 {
        0 => Nat::None,
        1 => Nat::Nat,
        2 => Nat::Snat(5000),
        _ => Nat::Snat(5001),
    }
}

fn reply_key(k: &FlowKey, real: IpAddr, real_port: u16, n: Nat) -> Option<ReplyKey> {
    match n {
        Nat::None => None,
        Nat::Nat => Some(ReplyKey::Nat {
            real,
            real_port,
            client: k.client,
            client_port: k.client_port,
            proto: k.proto,
        }),
        Nat::Snat(p) => Some(ReplyKey::Snat {
            real,
            real_port,
            local_port: p,
            proto: k.proto,
        }),
    }
}

#[derive(Clone, Debug)]
struct M {
    val: FlowValue,
    expiry: u32,
}

impl M {
    fn reply(&self, k: &FlowKey) -> Option<ReplyKey> {
        reply_key(k, self.val.real, self.val.real_port, self.val.nat)
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..32, 0u8..4, 0u8..4, any::<u8>())
            .prop_map(|(k, real, nat, flags)| Op::Insert { k, real, nat, flags }),
        3 => (0u8..32).prop_map(|k| Op::Lookup { k }),
        2 => (0u8..32, 0u8..4, 0u8..4).prop_map(|(k, real, nat)| Op::LookupReply { k, real, nat }),
        2 => (0u8..32, any::<bool>(), any::<u8>())
            .prop_map(|(k, reply, flags)| Op::Touch { k, reply, flags }),
        1 => (0u8..32).prop_map(|k| Op::Remove { k }),
        1 => (0u32..40).prop_map(|budget| Op::Sweep { budget }),
        2 => prop_oneof![0u32..20, 0u32..400].prop_map(|dt| Op::Advance { dt }),
    ]
}

struct Harness {
    t: ConnTable,
    m: HashMap<FlowKey, M>,
    now: u32,
    to: Timeouts,
}

impl Harness {
    fn apply_freed(&mut self, f: &Freed) {
        let m = self
            .m
            .remove(&f.key)
            .unwrap_or_else(|| panic!("freed unknown {:?}", f.key));
        assert_eq!(
            (f.real, f.real_port, f.nat, f.state),
            (m.val.real, m.val.real_port, m.val.nat, m.val.state)
        );
        match f.reason {
            FreeReason::Expired => assert!(is_expired(m.expiry, self.now), "freed live as expired"),
            FreeReason::Evicted => assert!(!is_expired(m.expiry, self.now)),
            FreeReason::Removed => {}
        }
    }

    fn live(&self, k: &FlowKey) -> bool {
        self.m
            .get(k)
            .is_some_and(|m| !is_expired(m.expiry, self.now))
    }

    fn check_hit(&self, k: &FlowKey, r: Lookup) {
        let m = &self.m[k];
        let id = r
            .hit()
            .unwrap_or_else(|| panic!("live {k:?} not found: {r:?}"));
        let e = self.t.entry(id);
        assert_eq!(e.key(), *k);
        assert_eq!(
            (e.real(), e.real_port(), e.nat(), e.state(), e.expiry()),
            (
                m.val.real,
                m.val.real_port,
                m.val.nat,
                m.val.state,
                m.expiry
            )
        );
    }

    fn lookup_expect(&mut self, k: &FlowKey) {
        let h = self.t.hash(k);
        let r = self.t.lookup(self.now, k, h);
        match self.m.get(k) {
            None => assert_eq!(r, Lookup::Miss),
            Some(_) if self.live(k) => self.check_hit(k, r),
            Some(_) => match r {
                Lookup::Expired(f) => {
                    assert_eq!(f.key, *k);
                    self.apply_freed(&f);
                }
                other => panic!("expired entry returned: {other:?}"),
            },
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Insert {
                k,
                real: r,
                nat: n,
                flags,
            } => {
                let k = key(k);
                let (ra, rp) = real(r);
                let state = State::initial(k.proto, TcpFlags(flags));
                let val = FlowValue {
                    real: ra,
                    real_port: rp,
                    real_hint: RealIdx(u16::from(r)),
                    nat: nat(n),
                    state,
                    profile: 0,
                };
                let h = self.t.hash(&k);
                let mut freed = vec![];
                let res = self.t.insert(self.now, &k, h, &val, |f| freed.push(*f));
                for f in &freed {
                    self.apply_freed(f);
                }
                let rk = reply_key(&k, ra, rp, val.nat);
                let conflict = self
                    .m
                    .iter()
                    .find(|(kk, m)| {
                        **kk != k
                            && rk.is_some()
                            && m.reply(kk) == rk
                            && !is_expired(m.expiry, self.now)
                    })
                    .map(|(kk, _)| *kk);
                match res {
                    Ok(id) => {
                        assert!(!self.m.contains_key(&k), "inserted over a live duplicate");
                        assert!(conflict.is_none(), "reply tuple reused");
                        assert_eq!(self.t.entry(id).key(), k);
                        self.m.insert(
                            k,
                            M {
                                val,
                                expiry: self.now.wrapping_add(self.to.for_state(state)),
                            },
                        );
                    }
                    Err(InsertError::Exists(id)) => {
                        assert!(self.live(&k));
                        assert_eq!(self.t.entry(id).key(), k);
                    }
                    Err(InsertError::ReplyConflict(id)) => {
                        assert_eq!(Some(self.t.entry(id).key()), conflict);
                    }
                    Err(InsertError::Full) => {
                        // Capacity is in cells: a flow with an IPv6
                        // address takes two.
                        let cells = |k: &FlowKey, v: &FlowValue| {
                            if k.client.is_ipv6() || v.real.is_ipv6() {
                                2
                            } else {
                                1
                            }
                        };
                        let used: usize = self.m.iter().map(|(kk, m)| cells(kk, &m.val)).sum();
                        assert_eq!(used, self.t.cells_used());
                        assert!(used + cells(&k, &val) > self.t.capacity());
                    }
                }
            }
            Op::Lookup { k } => self.lookup_expect(&key(k)),
            Op::LookupReply { k, real: r, nat: n } => {
                let k = key(k);
                let (ra, rp) = real(r);
                let Some(rk) = reply_key(&k, ra, rp, nat(n)) else {
                    return;
                };
                let owner = self
                    .m
                    .iter()
                    .find(|(kk, m)| m.reply(kk) == Some(rk))
                    .map(|(kk, _)| *kk);
                let h = self.t.hash_reply(&rk);
                let res = self.t.lookup_reply(self.now, &rk, h);
                match owner {
                    None => assert_eq!(res, Lookup::Miss),
                    Some(o) if self.live(&o) => self.check_hit(&o, res),
                    Some(o) => match res {
                        Lookup::Expired(f) => {
                            assert_eq!(f.key, o);
                            self.apply_freed(&f);
                        }
                        other => panic!("expired reply entry returned: {other:?}"),
                    },
                }
            }
            Op::Touch { k, reply, flags } => {
                let k = key(k);
                if !self.live(&k) {
                    return;
                }
                let h = self.t.hash(&k);
                let id = self.t.lookup(self.now, &k, h).hit().expect("live");
                let dir = if reply { Dir::Reply } else { Dir::Client };
                let st = self.t.touch(id, self.now, dir, TcpFlags(flags));
                let m = self.m.get_mut(&k).unwrap();
                m.val.state = m.val.state.next(dir, TcpFlags(flags));
                assert_eq!(st, m.val.state);
                m.expiry = self.now.wrapping_add(self.to.for_state(st));
            }
            Op::Remove { k } => {
                let k = key(k);
                let h = self.t.hash(&k);
                match self.t.lookup(self.now, &k, h) {
                    Lookup::Hit(id) => {
                        let f = self.t.remove(id).expect("live");
                        assert_eq!(f.reason, FreeReason::Removed);
                        self.apply_freed(&f);
                    }
                    Lookup::Expired(f) => self.apply_freed(&f),
                    Lookup::Miss => assert!(!self.m.contains_key(&k)),
                }
            }
            Op::Sweep { budget } => {
                let mut freed = vec![];
                let n = self.t.sweep(self.now, budget, |f| freed.push(*f));
                assert_eq!(n as usize, freed.len());
                assert!(n <= budget);
                for f in &freed {
                    assert_eq!(f.reason, FreeReason::Expired);
                    self.apply_freed(f);
                }
            }
            Op::Advance { dt } => self.now = self.now.wrapping_add(dt),
        }
    }

    fn check(&mut self) {
        assert!(self.t.len() <= self.t.capacity());
        assert_eq!(self.t.len(), self.m.len());
        self.t.check_invariants();
        let live: Vec<FlowKey> = self.m.keys().copied().filter(|k| self.live(k)).collect();
        for k in live {
            let h = self.t.hash(&k);
            let r = self.t.lookup(self.now, &k, h);
            self.check_hit(&k, r);
            if let Some(rk) = self.m[&k].reply(&k) {
                let h = self.t.hash_reply(&rk);
                let rr = self.t.lookup_reply(self.now, &rk, h);
                assert_eq!(rr, r, "reply lookup of {k:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn conntrack_matches_model(
        cap in prop_oneof![Just(1u32), Just(4), Just(8), Just(32)],
        evict_scan in 1u32..10,
        evict_established in any::<bool>(),
        start in prop_oneof![Just(0u32), Just(u32::MAX - 500)],
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        // Short timeouts so that time advances expire things.
        let to = Timeouts { syn_recv: 30, established: 900, fin_wait: 120, close_wait: 60, time_wait: 120, close: 10, udp: 300, icmp: 60 };
        let cfg = Config { capacity: cap, seed: 0x1234, timeouts: to, evict_scan, evict_established, ..Config::new(cap) };
        let mut h = Harness { t: ConnTable::new(cfg), m: HashMap::new(), now: start, to };
        for op in &ops {
            h.step(op);
            h.check();
        }
    }
}
