use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
const FIN: TcpFlags = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
const RST: TcpFlags = TcpFlags(TcpFlags::RST);
const NONE: TcpFlags = TcpFlags::NONE;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        service: 7,
        client: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        client_port: 1024 + (i % 50_000) as u16,
        vport: 80,
        proto: L4::Tcp,
    }
}

fn key6(i: u32) -> FlowKey {
    FlowKey {
        service: 9,
        client: IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        )),
        client_port: 40000,
        vport: 443,
        proto: L4::Tcp,
    }
}

fn val(state: State, nat: Nat) -> FlowValue {
    FlowValue {
        real: v4(10, 9, 0, 1),
        real_port: 8080,
        real_hint: RealIdx(3),
        nat,
        state,
        profile: 0,
    }
}

fn ins(t: &mut ConnTable, now: u32, k: &FlowKey, v: &FlowValue) -> Result<FlowId, InsertError> {
    let h = t.hash(k);
    t.insert(now, k, h, v, |_| {})
}

fn find(t: &mut ConnTable, now: u32, k: &FlowKey) -> Lookup {
    let h = t.hash(k);
    t.lookup(now, k, h)
}

fn find_reply(t: &mut ConnTable, now: u32, k: &ReplyKey) -> Lookup {
    let h = t.hash_reply(k);
    t.lookup_reply(now, k, h)
}

fn nat_reply(k: &FlowKey, v: &FlowValue) -> ReplyKey {
    ReplyKey::Nat {
        real: v.real,
        real_port: v.real_port,
        client: k.client,
        client_port: k.client_port,
        proto: k.proto,
    }
}

#[test]
fn cell_is_half_a_cache_line() {
    assert_eq!(std::mem::size_of::<Cell>(), 32);
    assert_eq!(std::mem::align_of::<Cell>(), 32);
}

#[test]
fn tcp_state_machine() {
    use Dir::*;
    use State::*;
    let table: &[(State, Dir, TcpFlags, State)] = &[
        (SynRecv, Client, SYN, SynRecv),
        (SynRecv, Client, ACK, Established),
        (SynRecv, Reply, SYNACK, SynRecv),
        (SynRecv, Client, FIN, FinWait),
        (SynRecv, Client, RST, Close),
        (Established, Client, ACK, Established),
        (Established, Client, NONE, Established),
        (Established, Client, SYN, Established),
        (Established, Client, FIN, FinWait),
        (Established, Reply, FIN, CloseWait),
        (Established, Reply, RST, Close),
        (Established, Client, RST, Close),
        (FinWait, Client, ACK, FinWait),
        (FinWait, Reply, FIN, TimeWait),
        (CloseWait, Client, FIN, TimeWait),
        (CloseWait, Reply, ACK, CloseWait),
        (TimeWait, Client, SYN, SynRecv),
        (TimeWait, Client, ACK, TimeWait),
        (Close, Client, SYN, SynRecv),
        (Close, Client, ACK, Close),
        (Udp, Client, RST, Udp),
        (Icmp, Reply, FIN, Icmp),
    ];
    for &(from, dir, flags, to) in table {
        assert_eq!(from.next(dir, flags), to, "{from:?} {dir:?} {flags:?}");
    }
    let initial: &[(L4, TcpFlags, State)] = &[
        (L4::Tcp, SYN, SynRecv),
        (L4::Tcp, ACK, Established),
        (L4::Tcp, FIN, FinWait),
        (L4::Tcp, RST, Close),
        (L4::Udp, NONE, Udp),
        (L4::Icmp, NONE, Icmp),
    ];
    for &(p, f, s) in initial {
        assert_eq!(State::initial(p, f), s);
    }
    assert_eq!(L4::from(crate::service::Proto::Udp), L4::Udp);
    assert_eq!(L4::from(crate::service::Proto::Tcp), L4::Tcp);
    assert!(SynRecv.is_tcp_inactive() && !Established.is_tcp_inactive() && !Udp.is_tcp_inactive());
}

#[test]
fn timeouts_defaults_and_scaling() {
    let t = Timeouts::default();
    let want = [
        (State::SynRecv, 30),
        (State::Established, 900),
        (State::FinWait, 120),
        (State::CloseWait, 60),
        (State::TimeWait, 120),
        (State::Close, 10),
        (State::Udp, 300),
        (State::Icmp, 60),
    ];
    for (s, secs) in want {
        assert_eq!(t.for_state(s), secs);
        assert_eq!(Timeouts::ipvs(1000).for_state(s), secs * 1000);
    }
    let huge = Timeouts {
        established: u32::MAX,
        ..t
    };
    assert_eq!(huge.for_state(State::Established), i32::MAX as u32);
}

#[test]
fn insert_and_both_lookups_v4_v6() {
    let mut t = ConnTable::with_capacity(1000);
    let cases = [
        (key(1), val(State::SynRecv, Nat::Nat)),
        (key6(2), val(State::Established, Nat::Nat)),
        (key(3), val(State::Udp, Nat::None)),
        (
            key6(4),
            FlowValue {
                real: "2001:db8::99".parse().unwrap(),
                ..val(State::Established, Nat::Snat(61000))
            },
        ),
        (
            key(5),
            FlowValue {
                real: "2001:db8::98".parse().unwrap(),
                ..val(State::Established, Nat::Nat)
            },
        ),
    ];
    for (k, v) in &cases {
        let id = ins(&mut t, 0, k, v).unwrap();
        let e = t.entry(id);
        assert_eq!(e.key(), *k);
        assert_eq!(
            (e.real(), e.real_port(), e.real_hint(), e.nat(), e.state()),
            (v.real, v.real_port, v.real_hint, v.nat, v.state)
        );
        assert_eq!(e.expiry(), Timeouts::default().for_state(v.state));
    }
    assert_eq!(t.len(), 5);
    for (k, v) in &cases {
        let id = find(&mut t, 1, k).hit().unwrap();
        assert_eq!(t.entry(id).key(), *k);
        match v.nat {
            Nat::Nat => assert_eq!(find_reply(&mut t, 1, &nat_reply(k, v)), Lookup::Hit(id)),
            Nat::Snat(p) => {
                let rk = ReplyKey::Snat {
                    real: v.real,
                    real_port: v.real_port,
                    local_port: p,
                    proto: k.proto,
                };
                assert_eq!(find_reply(&mut t, 1, &rk), Lookup::Hit(id));
                // The NAT form of the tuple does not match an SNAT flow.
                assert_eq!(find_reply(&mut t, 1, &nat_reply(k, v)), Lookup::Miss);
            }
            Nat::None => assert_eq!(find_reply(&mut t, 1, &nat_reply(k, v)), Lookup::Miss),
        }
    }
    // Near misses.
    let mut k = key(1);
    k.vport = 81;
    assert_eq!(find(&mut t, 1, &k), Lookup::Miss);
    let mut k = key(1);
    k.service = 8;
    assert_eq!(find(&mut t, 1, &k), Lookup::Miss);
    let mut k = key(1);
    k.proto = L4::Udp;
    assert_eq!(find(&mut t, 1, &k), Lookup::Miss);
    // v4 vs its v4-mapped v6 form are different clients.
    let mut k = key(1);
    if let IpAddr::V4(a) = k.client {
        k.client = IpAddr::V6(a.to_ipv6_mapped());
    }
    assert_eq!(find(&mut t, 1, &k), Lookup::Miss);
    t.check_invariants();
}

#[test]
fn duplicates_and_reply_conflicts() {
    let mut t = ConnTable::with_capacity(100);
    let v = val(State::Established, Nat::Nat);
    let id = ins(&mut t, 0, &key(1), &v).unwrap();
    assert_eq!(ins(&mut t, 1, &key(1), &v), Err(InsertError::Exists(id)));
    // Same client tuple to another service, NAT'ed to the same real: the
    // real could not tell the replies apart.
    let mut other = key(1);
    other.service = 99;
    assert_eq!(
        ins(&mut t, 1, &other, &v),
        Err(InsertError::ReplyConflict(id))
    );
    assert_eq!(t.counters().reply_conflicts, 1);
    // ...fine without NAT, or to another real port.
    assert!(ins(
        &mut t,
        1,
        &other,
        &FlowValue {
            real_port: 8081,
            ..v
        }
    )
    .is_ok());
    let mut other2 = key(1);
    other2.service = 100;
    assert!(ins(&mut t, 1, &other2, &val(State::Established, Nat::None)).is_ok());
    // Expired duplicate is replaced and reported.
    let mut freed = vec![];
    let h = t.hash(&key(1));
    let id2 = t.insert(2000, &key(1), h, &v, |f| freed.push(*f)).unwrap();
    assert!(freed
        .iter()
        .any(|f| f.key == key(1) && f.reason == FreeReason::Expired));
    assert_eq!(find(&mut t, 2001, &key(1)), Lookup::Hit(id2));
    t.check_invariants();
}

#[test]
fn lazy_expiry_on_lookup() {
    let mut t = ConnTable::with_capacity(10);
    let k = key(1);
    let v = val(State::SynRecv, Nat::Nat);
    let id = ins(&mut t, 100, &k, &v).unwrap();
    assert_eq!(find(&mut t, 129, &k), Lookup::Hit(id));
    assert_eq!(find_reply(&mut t, 129, &nat_reply(&k, &v)), Lookup::Hit(id));
    match find(&mut t, 130, &k) {
        Lookup::Expired(f) => {
            assert_eq!(
                (f.key, f.state, f.reason, f.real_hint),
                (k, State::SynRecv, FreeReason::Expired, RealIdx(3))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(find(&mut t, 130, &k), Lookup::Miss);
    assert_eq!(find_reply(&mut t, 130, &nat_reply(&k, &v)), Lookup::Miss);
    assert_eq!(t.len(), 0);
    assert_eq!(t.counters().expiries, 1);
    // Expiry through the reply lookup too.
    let id = ins(&mut t, 200, &k, &v).unwrap();
    assert_eq!(find_reply(&mut t, 229, &nat_reply(&k, &v)), Lookup::Hit(id));
    assert!(matches!(
        find_reply(&mut t, 230, &nat_reply(&k, &v)),
        Lookup::Expired(_)
    ));
    t.check_invariants();
}

#[test]
fn touch_follows_the_state_machine_for_every_state_direction_and_flags() {
    // `touch` takes a shortcut for steady states: it must agree with
    // `State::next` and the timeouts everywhere.
    let mut t = ConnTable::with_capacity(10);
    let k = key(1);
    let id = ins(&mut t, 0, &k, &val(State::SynRecv, Nat::Nat)).unwrap();
    let timeouts = Timeouts::default();
    let mut now = 1;
    for old in State::ALL {
        for dir in [Dir::Client, Dir::Reply] {
            for f in 0..=255u8 {
                t.restore(id, old, now);
                now += 1;
                let want = old.next(dir, TcpFlags(f));
                assert_eq!(
                    t.touch(id, now, dir, TcpFlags(f)),
                    want,
                    "{old:?} {dir:?} {f:#x}"
                );
                assert_eq!(t.entry(id).state(), want);
                assert_eq!(t.entry(id).expiry(), now + timeouts.for_state(want));
                assert_eq!(t.by_state()[want as usize], 1);
                assert_eq!(t.by_state().iter().sum::<u32>(), 1);
            }
        }
    }
}

#[test]
fn touch_drives_state_and_expiry() {
    let mut t = ConnTable::with_capacity(10);
    let k = key(1);
    let id = ins(&mut t, 0, &k, &val(State::SynRecv, Nat::Nat)).unwrap();
    assert_eq!(t.by_state()[State::SynRecv as usize], 1);
    let steps: &[(u32, Dir, TcpFlags, State, u32)] = &[
        (5, Dir::Reply, SYNACK, State::SynRecv, 35),
        (6, Dir::Client, ACK, State::Established, 906),
        (500, Dir::Client, NONE, State::Established, 1400),
        (600, Dir::Reply, FIN, State::CloseWait, 660),
        (610, Dir::Client, FIN, State::TimeWait, 730),
        (700, Dir::Client, SYN, State::SynRecv, 730),
        (701, Dir::Client, RST, State::Close, 711),
    ];
    for &(now, dir, flags, st, exp) in steps {
        assert_eq!(t.touch(id, now, dir, flags), st);
        assert_eq!(t.entry(id).expiry(), exp);
        assert_eq!(t.by_state()[st as usize], 1);
        assert_eq!(t.by_state().iter().sum::<u32>(), 1);
    }
    assert!(find(&mut t, 710, &k).hit().is_some());
    assert!(matches!(find(&mut t, 711, &k), Lookup::Expired(_)));
}

#[test]
fn sweep_is_incremental_and_reports() {
    let mut t = ConnTable::with_capacity(100);
    for i in 0..100 {
        let st = if i % 2 == 0 {
            State::Udp
        } else {
            State::Established
        };
        ins(&mut t, 0, &key(i), &val(st, Nat::Nat)).unwrap();
    }
    // Nothing expired yet.
    assert_eq!(t.sweep(299, 1000, |_| panic!("nothing expired")), 0);
    // UDP (300) expired, TCP (900) not: a budget of 10 examines 10 slots.
    let mut freed = vec![];
    assert_eq!(t.sweep(300, 10, |f| freed.push(*f)), 5);
    assert!(freed
        .iter()
        .all(|f| f.state == State::Udp && f.reason == FreeReason::Expired));
    let mut total = 5;
    while total < 50 {
        let n = t.sweep(300, 10, |_| {});
        assert!(n <= 10);
        total += n;
    }
    assert_eq!(t.len(), 50);
    assert_eq!(t.counters().expiries, 50);
    assert_eq!(t.sweep(300, 1000, |_| {}), 0);
    assert_eq!(t.sweep(900, 1000, |_| {}), 50);
    assert!(t.is_empty());
    t.check_invariants();
}

fn fill(t: &mut ConnTable, n: u32, now: u32, state: State) {
    for i in 0..n {
        ins(t, now, &key(i), &val(state, Nat::Nat)).unwrap();
    }
}

fn small(cap: u32, evict_established: bool) -> ConnTable {
    ConnTable::new(Config {
        evict_scan: cap,
        evict_established,
        ..Config::new(cap)
    })
}

#[test]
fn eviction_prefers_half_open_then_oldest() {
    let mut t = small(16, true);
    fill(&mut t, 16, 0, State::Established);
    // Replace three flows with half-open ones of different ages.
    for (i, now) in [(3u32, 10u32), (7, 5), (11, 20)] {
        let id = find(&mut t, now, &key(i)).hit().unwrap();
        t.remove(id).unwrap();
        ins(&mut t, now, &key(i), &val(State::SynRecv, Nat::Nat)).unwrap();
    }
    // Refresh every established flow except key 0 (the oldest).
    for i in 1..16 {
        if let Some(id) = find(&mut t, 25, &key(i)).hit() {
            if t.entry(id).state() == State::Established {
                t.touch(id, 25, Dir::Client, ACK);
            }
        }
    }
    let mut order = vec![];
    for n in 0..4 {
        let mut freed = vec![];
        let h = t.hash(&key(100 + n));
        t.insert(
            26,
            &key(100 + n),
            h,
            &val(State::Established, Nat::Nat),
            |f| freed.push(*f),
        )
        .unwrap();
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].reason, FreeReason::Evicted);
        order.push((freed[0].key, freed[0].state));
    }
    assert_eq!(
        order,
        vec![
            (key(7), State::SynRecv), // oldest half-open
            (key(3), State::SynRecv),
            (key(11), State::SynRecv),
            (key(0), State::Established), // then the least recently seen
        ]
    );
    assert_eq!(t.counters().evictions, 4);
    assert_eq!(t.counters().evictions_established, 1);
    assert_eq!(t.len(), 16);
    t.check_invariants();
}

#[test]
fn eviction_class_order() {
    // Expired < SynRecv < closing < UDP < established.
    let states = [
        State::Established,
        State::Udp,
        State::TimeWait,
        State::SynRecv,
    ];
    let mut t = small(5, true);
    for (i, s) in states.iter().enumerate() {
        ins(&mut t, 0, &key(i as u32), &val(*s, Nat::None)).unwrap();
    }
    // An entry that is already expired at the time of the insert, though
    // it sorts last by state.
    let mut k = key(4);
    k.proto = L4::Udp;
    ins(&mut t, 0, &k, &val(State::Established, Nat::None)).unwrap();
    let id = find(&mut t, 0, &k).hit().unwrap();
    t.touch(id, 0, Dir::Client, RST); // Close, 10 s
    let mut order = vec![];
    for n in 0..5u32 {
        let mut freed = vec![];
        let kk = key(50 + n);
        let h = t.hash(&kk);
        t.insert(11, &kk, h, &val(State::Established, Nat::None), |f| {
            freed.push(*f)
        })
        .unwrap();
        order.push((freed[0].state, freed[0].reason));
    }
    assert_eq!(
        order,
        vec![
            (State::Close, FreeReason::Expired),
            (State::SynRecv, FreeReason::Evicted),
            (State::TimeWait, FreeReason::Evicted),
            (State::Udp, FreeReason::Evicted),
            (State::Established, FreeReason::Evicted),
        ]
    );
}

#[test]
fn full_of_established_fails_when_protected() {
    let mut t = small(8, false);
    fill(&mut t, 8, 0, State::Established);
    let k = key(100);
    assert_eq!(
        ins(&mut t, 1, &k, &val(State::SynRecv, Nat::Nat)),
        Err(InsertError::Full)
    );
    assert_eq!(t.counters().insert_failures, 1);
    assert_eq!(t.len(), 8);
    // One half-open in the neighbourhood: it goes, established ones stay.
    let id = find(&mut t, 1, &key(5)).hit().unwrap();
    t.remove(id);
    ins(&mut t, 1, &key(5), &val(State::SynRecv, Nat::Nat)).unwrap();
    ins(&mut t, 2, &k, &val(State::SynRecv, Nat::Nat)).unwrap();
    assert_eq!(find(&mut t, 2, &key(5)), Lookup::Miss);
    assert_eq!(t.counters().evictions_established, 0);
    // Expired established flows can always go.
    assert!(ins(&mut t, 901, &key(101), &val(State::Established, Nat::Nat)).is_ok());
    t.check_invariants();
}

#[test]
fn established_never_evicted_while_half_open_exist() {
    // Scan window 4 in a table of 64: the neighbourhood of the cursor
    // holds only established flows, a half-open one lives elsewhere.
    let mut t = ConnTable::new(Config {
        evict_scan: 4,
        evict_established: true,
        ..Config::new(64)
    });
    fill(&mut t, 64, 0, State::Established);
    let id = find(&mut t, 0, &key(40)).hit().unwrap();
    t.remove(id);
    ins(&mut t, 0, &key(40), &val(State::SynRecv, Nat::None)).unwrap();
    // Refused rather than evicting an established flow...
    assert_eq!(
        ins(&mut t, 1, &key(200), &val(State::SynRecv, Nat::None)),
        Err(InsertError::Full)
    );
    assert_eq!(t.counters().evictions_established, 0);
    assert_eq!(t.counters().insert_failures, 1);
    // ... until the cursor reaches the half-open flow.
    let mut n = 0;
    while ins(&mut t, 1, &key(300 + n), &val(State::SynRecv, Nat::None)).is_err() {
        n += 1;
        assert!(n < 16);
    }
    assert_eq!(t.counters().evictions_half_open, 1);
    assert_eq!(t.counters().evictions_established, 0);
    // The new flow is half-open itself: still no established eviction.
    assert_eq!(
        ins(&mut t, 1, &key(400), &val(State::Established, Nat::None)),
        Err(InsertError::Full)
    );
    assert_eq!(t.counters().evictions_established, 0);
    // Once no half-open flow is left, established ones are the last resort.
    let id = find(&mut t, 1, &key(300 + n)).hit().unwrap();
    t.touch(id, 1, Dir::Client, ACK);
    ins(&mut t, 2, &key(401), &val(State::Established, Nat::None)).unwrap();
    assert_eq!(t.counters().evictions_established, 1);
    t.check_invariants();
}

#[test]
fn bounded_neighbourhood_scan() {
    // A big table, full, scan window 4: only 4 candidates are examined.
    let mut t = ConnTable::new(Config {
        evict_scan: 4,
        evict_established: false,
        ..Config::new(64)
    });
    fill(&mut t, 64, 0, State::Established);
    // A half-open far from the cursor is not found.
    let id = find(&mut t, 0, &key(40)).hit().unwrap();
    t.remove(id);
    let id = ins(&mut t, 0, &key(40), &val(State::SynRecv, Nat::None)).unwrap();
    assert_eq!(id.0, 40); // LIFO free list reuses the slot
    assert_eq!(
        ins(&mut t, 1, &key(200), &val(State::SynRecv, Nat::None)),
        Err(InsertError::Full)
    );
    // The cursor advances by the window each time: it gets there.
    let mut ok = false;
    for n in 0..16 {
        if ins(&mut t, 1, &key(201 + n), &val(State::SynRecv, Nat::None)).is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    assert_eq!(find(&mut t, 1, &key(40)), Lookup::Miss);
}

#[test]
fn index_window_full_evicts_in_window() {
    // 82 keys whose hashes all have the same home bucket (found by
    // search): the 8-bucket probe window (80 ways) fills before the slab
    // does.
    let mut t = ConnTable::new(Config {
        evict_established: false,
        ..Config::new(10_000)
    });
    let buckets = t.fwd.bytes() as u64 / 64;
    let home = |t: &ConnTable, k: &FlowKey| (u64::from(t.hash(k)) * buckets) >> 32;
    let keys: Vec<FlowKey> = (0..2_000_000)
        .map(key)
        .filter(|k| home(&t, k) == 7)
        .take(82)
        .collect();
    assert_eq!(keys.len(), 82);
    let key = |i: u32| keys[i as usize];
    let v = val(State::Established, Nat::None);
    for i in 0..80 {
        let st = if i == 33 {
            State::SynRecv
        } else {
            State::Established
        };
        let h = t.hash(&key(i));
        t.insert(0, &key(i), h, &FlowValue { state: st, ..v }, |_| panic!())
            .unwrap();
    }
    let mut freed = vec![];
    let h = t.hash(&key(80));
    t.insert(1, &key(80), h, &v, |f| freed.push(*f)).unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].key, key(33));
    let h = t.hash(&key(81));
    assert_eq!(t.insert(1, &key(81), h, &v, |_| {}), Err(InsertError::Full));
    for i in (0..81).filter(|&i| i != 33) {
        let h = t.hash(&key(i));
        assert!(t.lookup(1, &key(i), h).hit().is_some(), "{i}");
    }
    t.check_invariants();
}

#[test]
fn time_wraps_around() {
    let mut t = ConnTable::with_capacity(10);
    let start = u32::MAX - 10;
    let id = ins(&mut t, start, &key(1), &val(State::Close, Nat::None)).unwrap();
    assert_eq!(t.entry(id).expiry(), start.wrapping_add(10));
    assert!(find(&mut t, start.wrapping_add(9), &key(1)).hit().is_some());
    assert_eq!(t.sweep(start.wrapping_add(9), 10, |_| {}), 0);
    assert_eq!(t.sweep(start.wrapping_add(10), 10, |_| {}), 1);
}

#[test]
fn no_allocation_after_creation() {
    // By construction: the slab and indexes are boxed slices allocated in
    // `new`; nothing ever replaces them. Check their addresses and sizes
    // survive heavy churn at full load.
    let mut t = small(512, true);
    let p = (t.cells.as_ptr(), t.memory_bytes());
    for round in 0..20u32 {
        for i in 0..600 {
            let k = key(round * 1000 + i);
            let _ = ins(
                &mut t,
                round * 40,
                &k,
                &val(State::SynRecv, Nat::Snat(i as u16)),
            );
        }
        t.sweep(round * 40, 64, |_| {});
        assert!(t.len() <= 512);
    }
    assert_eq!((t.cells.as_ptr(), t.memory_bytes()), p);
    t.check_invariants();
}

#[test]
fn remove_and_hint_update() {
    let mut t = ConnTable::with_capacity(4);
    let id = ins(&mut t, 0, &key(1), &val(State::Established, Nat::Nat)).unwrap();
    t.set_real_hint(id, RealIdx(9));
    assert_eq!(t.entry(id).real_hint(), RealIdx(9));
    let f = t.remove(id).unwrap();
    assert_eq!((f.reason, f.real_hint), (FreeReason::Removed, RealIdx(9)));
    assert_eq!(t.remove(id), None);
    assert_eq!(t.counters().removals, 1);
    assert_eq!(find(&mut t, 0, &key(1)), Lookup::Miss);
}

#[test]
fn bytes_per_flow_10m() {
    let n = 10_000_000u32;
    let t = ConnTable::with_capacity(n);
    let bytes = t.memory_bytes();
    let per_flow = bytes as f64 / f64::from(n);
    println!(
        "conntrack memory for {n} IPv4 flows: {bytes} bytes ({:.1} MiB), {per_flow:.2} bytes/flow all-in \
         (cell 32 + forward index {:.2} + reply index {:.2}); a flow with an IPv6 address takes a second cell",
        bytes as f64 / (1 << 20) as f64,
        t.fwd.bytes() as f64 / f64::from(n),
        t.rev.bytes() as f64 / f64::from(n),
    );
    assert!(bytes <= 1 << 30, "{bytes}");
    assert!(per_flow <= 64.0, "{per_flow} bytes per flow");
}

fn v6real(i: u32) -> FlowValue {
    FlowValue {
        real: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i as u16)),
        ..val(State::Established, Nat::Nat)
    }
}

#[test]
fn ipv6_flows_take_two_cells_and_give_both_back() {
    // 10 cells: 4 IPv6 flows (8 cells) and 2 IPv4 flows fill it.
    let mut t = ConnTable::new(Config {
        evict_established: false,
        ..Config::new(10)
    });
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(ins(&mut t, 0, &key6(i), &v6real(i)).unwrap());
    }
    for i in 0..2 {
        ins(&mut t, 0, &key(i), &val(State::Established, Nat::Nat)).unwrap();
    }
    t.check_invariants();
    assert_eq!(t.len(), 6);
    // Every address and the reply tuple come back whole.
    for i in 0..4 {
        let e = t.entry(ids[i as usize]);
        assert_eq!(e.key(), key6(i));
        assert_eq!(e.real(), v6real(i).real);
        let r = nat_reply(&key6(i), &v6real(i));
        assert_eq!(find_reply(&mut t, 1, &r).hit(), Some(ids[i as usize]));
    }
    // Full (protected established flows): nothing fits.
    assert_eq!(
        ins(&mut t, 0, &key(9), &val(State::Established, Nat::None)),
        Err(InsertError::Full)
    );
    // Freeing an IPv6 flow returns two cells: two IPv4 flows fit.
    t.remove(ids[0]).unwrap();
    t.check_invariants();
    ins(&mut t, 0, &key(10), &val(State::Established, Nat::None)).unwrap();
    ins(&mut t, 0, &key(11), &val(State::Established, Nat::None)).unwrap();
    assert_eq!(
        ins(&mut t, 0, &key(12), &val(State::Established, Nat::None)),
        Err(InsertError::Full)
    );
    t.check_invariants();
}

#[test]
fn an_ipv6_insert_into_a_full_table_evicts_until_two_cells_are_free() {
    // 8 cells of IPv4 half-open flows; an IPv6 flow needs two: two
    // victims, the oldest half-open ones.
    let mut t = ConnTable::with_capacity(8);
    for i in 0..8 {
        ins(&mut t, i, &key(i), &val(State::SynRecv, Nat::None)).unwrap();
    }
    let mut freed = Vec::new();
    let h = t.hash(&key6(1));
    let id = t
        .insert(20, &key6(1), h, &v6real(1), |f| freed.push(f.key))
        .unwrap();
    freed.sort_by_key(|k| k.client_port);
    assert_eq!(freed, vec![key(0), key(1)]);
    assert_eq!(t.entry(id).key(), key6(1));
    assert_eq!(t.len(), 7);
    t.check_invariants();
    // Mixed churn: everything expires and is swept; the cells all return.
    for i in 0..50u32 {
        let k = if i % 3 == 0 {
            key6(100 + i)
        } else {
            key(100 + i)
        };
        let v = if i % 3 == 0 {
            v6real(i)
        } else {
            val(State::SynRecv, Nat::Nat)
        };
        let h = t.hash(&k);
        t.insert(30 + i, &k, h, &v, |_| {}).unwrap();
        t.check_invariants();
    }
    t.sweep(1_000_000, 100, |_| {});
    assert_eq!(t.len(), 0);
    t.check_invariants();
}

#[test]
fn insert_absent_is_insert_without_the_duplicate_check() {
    let mut t = ConnTable::with_capacity(64);
    for i in 0..20 {
        let k = if i % 2 == 0 { key(i) } else { key6(i) };
        let h = t.hash(&k);
        assert_eq!(find(&mut t, 0, &k), Lookup::Miss);
        let id = t
            .insert_absent(0, &k, h, &val(State::SynRecv, Nat::Nat), |_| {})
            .unwrap();
        assert_eq!(find(&mut t, 0, &k), Lookup::Hit(id));
        assert_eq!(
            ins(&mut t, 0, &k, &val(State::SynRecv, Nat::Nat)),
            Err(InsertError::Exists(id))
        );
    }
    t.check_invariants();
}

#[test]
fn timeout_profiles_follow_each_flow_through_state_changes_and_renumbering() {
    let mut cfg = Config::new(256);
    cfg.timeouts = Timeouts::ipvs(1000);
    let mut t = ConnTable::new(cfg);
    let mut short = Timeouts::ipvs(1000);
    short.established = 5_000;
    short.fin_wait = 1_000;
    t.set_profiles(&[short]);
    let k = |port: u16| FlowKey {
        service: u32::from(port),
        client: "198.51.100.1".parse().unwrap(),
        client_port: port,
        vport: 80,
        proto: L4::Tcp,
    };
    let v = |profile| FlowValue {
        real: "192.0.2.21".parse().unwrap(),
        real_port: 80,
        real_hint: RealIdx(0),
        nat: Nat::None,
        state: State::SynRecv,
        profile,
    };
    let (a, b) = (k(1), k(2));
    let ia = t.insert(0, &a, t.hash(&a), &v(0), |_| {}).unwrap();
    let ib = t.insert(0, &b, t.hash(&b), &v(1), |_| {}).unwrap();
    assert_eq!((t.entry(ia).profile(), t.entry(ib).profile()), (0, 1));
    let ack = TcpFlags(TcpFlags::ACK);
    assert_eq!(t.touch(ia, 10, Dir::Client, ack), State::Established);
    assert_eq!(t.touch(ib, 10, Dir::Client, ack), State::Established);
    assert_eq!(t.entry(ia).expiry(), 10 + 900_000);
    assert_eq!(t.entry(ib).expiry(), 10 + 5_000);
    assert_eq!(t.timeout_of(ib, State::FinWait), 1_000);
    let fin = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
    t.touch(ib, 20, Dir::Client, fin);
    assert_eq!(t.entry(ib).profile(), 1, "a state change keeps the profile");
    assert_eq!(t.entry(ib).expiry(), 20 + 1_000);
    t.check_invariants();
    // Renumbering: flow a's service now uses profile 1, b's the node's.
    t.remap_profiles(|svc| u8::from(svc == 1));
    assert_eq!((t.entry(ia).profile(), t.entry(ib).profile()), (1, 0));
    assert_eq!(t.entry(ib).state(), State::FinWait, "the state is kept");
    t.touch(ia, 30, Dir::Client, ack);
    assert_eq!(t.entry(ia).expiry(), 30 + 5_000);
    t.check_invariants();
    // Profiles beyond those set fall back to the table's.
    assert_eq!(t.timeout(7, State::Established), 900_000);
}
