//! State machine tests: unit checks of the timing, then scenarios of two or
//! three routers on a simulated clock, exchanging encoded adverts over a
//! fake wire (optional delay, can be cut, routers can die).
//!
//! Times in the scenarios are exact. With the default 1 s interval:
//!
//! | priority | Skew_Time = (256 - p) / 256 s | Master_Down_Interval |
//! |----------|-------------------------------|----------------------|
//! | 200      | 56/256  = 0.218750 s          | 3.218750 s           |
//! | 150      | 106/256 = 0.4140625 s         | 3.4140625 s          |
//! | 100      | 156/256 = 0.609375 s          | 3.609375 s           |
//! | 50       | 206/256 = 0.8046875 s         | 3.8046875 s          |

use super::*;

use std::collections::VecDeque;

/// Nanoseconds after the scenario's time zero.
const fn ns(v: u64) -> Duration {
    Duration::from_nanos(v)
}
const fn s(v: u64) -> Duration {
    Duration::from_secs(v)
}

const MDI_200: u64 = 3_218_750_000;
const MDI_150: u64 = 3_414_062_500;
const MDI_100: u64 = 3_609_375_000;
const MDI_50: u64 = 3_804_687_500;
const SKEW_100: u64 = 609_375_000;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn vips() -> Vec<IpAddr> {
    vec![
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    ]
}

fn cfg(priority: u8, last: u8, preempt: bool) -> VrrpConfig {
    VrrpConfig {
        vrid: 51,
        priority,
        advert_interval: s(1),
        preempt,
        primary: ip(last),
        addresses: vips(),
        garp_interval: s(60),
        garp_elapse: s(1200),
    }
}

// ------------------------------------------------------------- unit checks

#[test]
fn timing_formulas() {
    assert_eq!(skew_time(100, 100), ns(SKEW_100));
    assert_eq!(master_down_interval(200, 100), ns(MDI_200));
    assert_eq!(master_down_interval(150, 100), ns(MDI_150));
    assert_eq!(master_down_interval(100, 100), ns(MDI_100));
    assert_eq!(master_down_interval(50, 100), ns(MDI_50));
    // Extremes: priority 254 at 10 ms; priority 1 at 40.95 s.
    assert_eq!(skew_time(254, 1), ns(2 * 10_000_000 / 256));
    assert_eq!(
        master_down_interval(1, 4095),
        Duration::from_millis(3 * 40_950) + ns(255 * 40_950_000_000 / 256)
    );
}

#[test]
fn config_validation() {
    let ok = cfg(100, 1, true);
    assert!(Vrrp::new(ok.clone()).is_ok());
    let cases: Vec<(VrrpConfig, ConfigError)> = vec![
        (
            VrrpConfig {
                vrid: 0,
                ..ok.clone()
            },
            ConfigError::Vrid,
        ),
        (
            VrrpConfig {
                priority: 0,
                ..ok.clone()
            },
            ConfigError::Priority(0),
        ),
        (
            VrrpConfig {
                priority: 255,
                ..ok.clone()
            },
            ConfigError::Priority(255),
        ),
        (
            VrrpConfig {
                advert_interval: Duration::from_millis(9),
                ..ok.clone()
            },
            ConfigError::Interval(Duration::from_millis(9)),
        ),
        (
            VrrpConfig {
                advert_interval: Duration::from_millis(40_960),
                ..ok.clone()
            },
            ConfigError::Interval(Duration::from_millis(40_960)),
        ),
        (
            VrrpConfig {
                addresses: vec!["2001:db8::1".parse().unwrap()],
                ..ok.clone()
            },
            ConfigError::Family("2001:db8::1".parse().unwrap()),
        ),
        (
            VrrpConfig {
                addresses: vec![ip(9); 256],
                ..ok.clone()
            },
            ConfigError::TooManyAddresses(256),
        ),
    ];
    for (c, want) in cases {
        assert_eq!(Vrrp::new(c).unwrap_err(), want);
    }
    // 1.005 s is truncated to 100 cs, on the wire and in the timers.
    let v = Vrrp::new(VrrpConfig {
        advert_interval: Duration::from_millis(1005),
        ..ok
    })
    .unwrap();
    assert_eq!(v.advert(100).interval_cs, 100);
    assert_eq!(v.master_down_interval(), ns(MDI_100));
}

#[test]
fn from_ha_keeps_the_primary_family() {
    let ha = HaConf {
        vrid: 51,
        priority: 150,
        advert_interval: s(1),
        preempt: false,
        port_name: "lan".into(),
        floating: vec![],
        garp_interval: s(60),
        garp_elapse: s(1200),
        family: crate::config::Family::V4,
        unicast_peers: vec![],
        track: vec![],
        sync_peer: None,
        sync_port: 8848,
    };
    let addrs: Vec<IpAddr> = vec![
        "198.51.100.1".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    let c4 = VrrpConfig::from_ha(&ha, ip(1), &addrs);
    assert_eq!(c4.addresses, vec![addrs[0]]);
    assert!(!c4.preempt);
    let c6 = VrrpConfig::from_ha(&ha, "fe80::1".parse().unwrap(), &addrs);
    assert_eq!(c6.addresses, vec![addrs[1]]);
    assert!(Vrrp::new(c6).is_ok());
}

#[test]
fn garp_schedule() {
    let t0 = Instant::now();
    let g = Garp {
        start: t0,
        interval: s(60),
        elapse: s(1200),
    };
    let times: Vec<Instant> = g.times().collect();
    assert_eq!(times.len(), 20);
    assert_eq!(times[0], t0 + s(60));
    assert_eq!(times[19], t0 + s(1200));
    assert_eq!(g.next_after(t0), Some(t0 + s(60)));
    assert_eq!(g.next_after(t0 + s(60)), Some(t0 + s(120)));
    assert_eq!(g.next_after(t0 + s(61)), Some(t0 + s(120)));
    assert_eq!(g.next_after(t0 + s(1199)), Some(t0 + s(1200)));
    assert_eq!(g.next_after(t0 + s(1200)), None);
    let odd = Garp {
        elapse: s(150),
        ..g
    };
    assert_eq!(odd.times().collect::<Vec<_>>(), [t0 + s(60), t0 + s(120)]);
    for none in [
        Garp {
            interval: Duration::ZERO,
            ..g
        },
        Garp {
            elapse: Duration::ZERO,
            ..g
        },
        Garp { elapse: s(59), ..g },
    ] {
        assert_eq!(none.count(), 0);
        assert_eq!(none.times().count(), 0);
        assert_eq!(none.next_after(t0), None);
    }
}

#[test]
fn start_timer_and_master_adverts() {
    let t0 = Instant::now();
    let mut v = Vrrp::new(cfg(100, 1, true)).unwrap();
    assert_eq!(v.state(), State::Initialize);
    assert_eq!(v.next_deadline(), None);
    assert_eq!(v.on_timer(t0), vec![]);
    assert_eq!(v.on_start(t0), vec![Action::BecomeBackup]);
    assert_eq!(v.on_start(t0), vec![], "a second start is ignored");
    assert_eq!(v.next_deadline(), Some(t0 + ns(MDI_100)));
    assert_eq!(v.on_timer(t0 + ns(MDI_100 - 1)), vec![], "early: no-op");
    let t1 = t0 + ns(MDI_100);
    assert_eq!(
        v.on_timer(t1),
        vec![
            Action::SendAdvert { priority: 100 },
            Action::BecomeMaster,
            Action::GarpSchedule(Garp {
                start: t1,
                interval: s(60),
                elapse: s(1200)
            }),
        ]
    );
    assert_eq!(v.state(), State::Master);
    assert_eq!(v.master(), Some(ip(1)));
    // Drift-free: woken 300 ms late, the next advert is still on the grid.
    assert_eq!(v.next_deadline(), Some(t1 + s(1)));
    let late = t1 + Duration::from_millis(1300);
    assert_eq!(v.on_timer(late), vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(v.next_deadline(), Some(t1 + s(2)));
    // Woken more than an interval late: one advert, then a full interval.
    let very_late = t1 + s(5);
    v.on_timer(very_late);
    assert_eq!(v.next_deadline(), Some(very_late + s(1)));
    let c = v.counters();
    assert_eq!((c.to_backup, c.to_master, c.adverts_sent), (1, 1, 3));
    // Shutdown from Master: priority 0, release, Initialize.
    assert_eq!(
        v.on_shutdown(very_late),
        vec![Action::SendAdvert { priority: 0 }, Action::BecomeBackup]
    );
    assert_eq!(v.state(), State::Initialize);
    assert_eq!(v.next_deadline(), None);
    assert_eq!(v.master(), None);
    assert_eq!(v.counters().priority_zero_sent, 1);
    // Shutdown from Initialize / Backup sends nothing.
    assert_eq!(v.on_shutdown(very_late), vec![]);
    v.on_start(very_late);
    assert_eq!(v.on_shutdown(very_late), vec![]);
}

fn adv(priority: u8) -> Advert {
    Advert {
        vrid: 51,
        priority,
        interval_cs: 100,
        addresses: vips(),
    }
}

#[test]
fn master_answers_priority_zero_at_once() {
    let t0 = Instant::now();
    let mut v = Vrrp::new(cfg(100, 1, true)).unwrap();
    v.on_start(t0);
    v.on_timer(t0 + ns(MDI_100));
    let t = t0 + s(4);
    assert_eq!(
        v.on_advert(t, &adv(0), ip(2)),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(v.next_deadline(), Some(t + s(1)));
    assert_eq!(v.state(), State::Master);
    // Lower priority, and equal priority from a lower address: ignored.
    let mut low = Vrrp::new(cfg(100, 5, true)).unwrap();
    low.on_start(t0);
    low.on_timer(t0 + ns(MDI_100));
    assert_eq!(low.on_advert(t, &adv(99), ip(9)), vec![]);
    assert_eq!(low.on_advert(t, &adv(100), ip(4)), vec![]);
    assert_eq!(low.state(), State::Master);
    // Equal priority from a higher address: yield.
    assert_eq!(
        low.on_advert(t, &adv(100), ip(6)),
        vec![Action::BecomeBackup]
    );
    assert_eq!(low.master(), Some(ip(6)));
    assert_eq!(low.next_deadline(), Some(t + ns(MDI_100)));
}

#[test]
fn backup_learns_interval_and_counts_mismatched_addresses() {
    let t0 = Instant::now();
    let mut v = Vrrp::new(cfg(100, 1, true)).unwrap();
    v.on_start(t0);
    let a = Advert {
        interval_cs: 200,
        addresses: vec![ip(100)],
        ..adv(150)
    };
    assert_eq!(v.on_advert(t0 + s(1), &a, ip(2)), vec![]);
    assert_eq!(v.master_adver_interval(), s(2));
    // 3 * 2 s + 156/256 * 2 s = 7.21875 s.
    assert_eq!(v.next_deadline(), Some(t0 + s(1) + ns(7_218_750_000)));
    assert_eq!(v.master(), Some(ip(2)));
    assert_eq!(v.counters().address_mismatch, 1);
    assert_eq!(v.counters().adverts_invalid, 0);
}

// ------------------------------------------------------------ fake wire

struct Node {
    vrrp: Vrrp,
    alive: bool,
    holds: bool,
}

/// Routers on one segment. Packets are encoded, delivered after `delay`
/// to every other live router unless the wire is cut, and decoded there.
struct Net {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    delay: Duration,
    cut: bool,
    in_flight: VecDeque<(Instant, usize, Vec<u8>, IpAddr)>,
    /// (time since t0, node, new state) for every state change.
    changes: Vec<(Duration, usize, State)>,
    /// (time since t0, node, action) for every action.
    actions: Vec<(Duration, usize, Action)>,
}

impl Net {
    fn new(cfgs: Vec<VrrpConfig>) -> Net {
        let t0 = Instant::now();
        Net {
            t0,
            now: t0,
            nodes: cfgs
                .into_iter()
                .map(|c| Node {
                    vrrp: Vrrp::new(c).unwrap(),
                    alive: false,
                    holds: false,
                })
                .collect(),
            delay: Duration::ZERO,
            cut: false,
            in_flight: VecDeque::new(),
            changes: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn pair(a: (u8, u8, bool), b: (u8, u8, bool)) -> Net {
        Net::new(vec![cfg(a.0, a.1, a.2), cfg(b.0, b.1, b.2)])
    }

    fn since(&self) -> Duration {
        self.now - self.t0
    }

    /// Runs the event `f` on node `i` at the current time.
    fn event(&mut self, i: usize, f: impl FnOnce(&mut Vrrp, Instant) -> Vec<Action>) {
        let before = self.nodes[i].vrrp.state();
        let acts = f(&mut self.nodes[i].vrrp, self.now);
        let after = self.nodes[i].vrrp.state();
        if before != after {
            self.changes.push((self.since(), i, after));
        }
        for a in acts {
            self.actions.push((self.since(), i, a.clone()));
            match a {
                Action::SendAdvert { priority } => {
                    let msg = self.nodes[i].vrrp.encode_advert(priority);
                    let src = self.nodes[i].vrrp.config().primary;
                    if !self.cut {
                        for j in 0..self.nodes.len() {
                            if j != i {
                                self.in_flight.push_back((
                                    self.now + self.delay,
                                    j,
                                    msg.clone(),
                                    src,
                                ));
                            }
                        }
                    }
                }
                Action::BecomeMaster => self.nodes[i].holds = true,
                Action::BecomeBackup => self.nodes[i].holds = false,
                Action::GarpSchedule(_) => {}
            }
        }
        // Zero delay: deliver now, before any timer at this instant.
        self.deliver_due();
    }

    fn deliver_due(&mut self) {
        let mut guard = 0;
        while let Some(pos) = self.in_flight.iter().position(|p| p.0 <= self.now) {
            guard += 1;
            assert!(guard < 10_000, "delivery storm");
            let (_, j, msg, src) = self.in_flight.remove(pos).unwrap();
            if self.nodes[j].alive && !self.cut {
                let dst = if src.is_ipv4() {
                    IpAddr::V4(MCAST_V4)
                } else {
                    IpAddr::V6(MCAST_V6)
                };
                self.event(j, |v, now| v.on_packet(now, &msg, src, dst));
            }
        }
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].alive = true;
        self.event(i, |v, now| v.on_start(now));
    }

    /// The router stops dead: no shutdown advert, no timers.
    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    /// Advances the clock to `until` (offset from t0), firing timers and
    /// deliveries in time order (deliveries first at equal times).
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        for _ in 0..100_000 {
            let next_pkt = self.in_flight.iter().map(|p| p.0).min();
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive)
                .filter_map(|(i, n)| n.vrrp.next_deadline().map(|d| (d, i)))
                .min();
            match (next_pkt, next_timer) {
                (Some(p), t) if p <= end && !matches!(t, Some((d, _)) if d < p) => {
                    self.now = p;
                    self.deliver_due();
                }
                (_, Some((d, i))) if d <= end => {
                    self.now = d;
                    self.event(i, |v, now| v.on_timer(now));
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("run_until: too many events");
    }

    fn state(&self, i: usize) -> State {
        self.nodes[i].vrrp.state()
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].holds)
            .collect()
    }

    /// State changes at or after `from`.
    fn changes_from(&self, from: Duration) -> Vec<(Duration, usize, State)> {
        self.changes
            .iter()
            .filter(|c| c.0 >= from)
            .copied()
            .collect()
    }
}

use State::{Backup, Fault, Master};

// -------------------------------------------------------------- scenarios

/// Higher priority wins, whichever starts first. Node 0: priority 200 at
/// .1; node 1: priority 100 at .2.
#[test]
fn higher_priority_wins_both_start_orders() {
    type Case = (&'static str, [Duration; 2], Vec<(Duration, usize, State)>);
    let cases: Vec<Case> = vec![
        (
            "together",
            [s(0), s(0)],
            vec![
                (s(0), 0, Backup),
                (s(0), 1, Backup),
                (ns(MDI_200), 0, Master),
            ],
        ),
        (
            "high first",
            [s(0), s(5)],
            vec![
                (s(0), 0, Backup),
                (ns(MDI_200), 0, Master),
                (s(5), 1, Backup),
            ],
        ),
        (
            // Low becomes master alone; high starts at 5 s, ignores the
            // lower adverts (preempt) and takes over after its own
            // Master_Down_Interval; low yields on that first advert.
            "low first",
            [s(5), s(0)],
            vec![
                (s(0), 1, Backup),
                (ns(MDI_100), 1, Master),
                (s(5), 0, Backup),
                (s(5) + ns(MDI_200), 0, Master),
                (s(5) + ns(MDI_200), 1, Backup),
            ],
        ),
    ];
    for (name, starts, want) in cases {
        let mut net = Net::pair((200, 1, true), (100, 2, true));
        let mut order = [0usize, 1];
        order.sort_by_key(|&i| starts[i]);
        for i in order {
            net.run_until(starts[i]);
            net.start(i);
        }
        net.run_until(s(30));
        assert_eq!(net.changes, want, "{name}");
        assert_eq!(net.holders(), vec![0], "{name}");
        assert_eq!(net.nodes[1].vrrp.master(), Some(ip(1)), "{name}");
        assert_eq!(net.nodes[0].vrrp.master(), Some(ip(1)), "{name}");
    }
}

/// The master dies without a word: the backup takes over exactly
/// Master_Down_Interval after the last advert it heard.
#[test]
fn master_dies_backup_takes_over_after_master_down_interval() {
    // (name, master's interval, backup's takeover offset after the kill
    // time of 20 s)
    let cases = [
        // Master at 3.21875 s, adverts every 1 s: last at 19.21875 s;
        // +3.609375 s = 22.828125 s.
        ("1s", s(1), ns(19_218_750_000 + MDI_100)),
        // Master (200) at 2 s interval: its own Master_Down is 6 + 56/256*2
        // = 6.4375 s, but the backup (1 s) is master from 3.609375 s until
        // then. Master adverts at 6.4375 + 2k: last before 20 s is
        // 18.4375 s; the backup learned 2 s: 6 + 156/256*2 = 7.21875 s;
        // takeover at 25.65625 s.
        ("learned 2s", s(2), ns(18_437_500_000 + 7_218_750_000)),
    ];
    for (name, interval, takeover) in cases {
        let mut net = Net::new(vec![
            VrrpConfig {
                advert_interval: interval,
                ..cfg(200, 1, true)
            },
            cfg(100, 2, true),
        ]);
        net.start(0);
        net.start(1);
        net.run_until(s(20));
        assert_eq!(net.holders(), vec![0], "{name}");
        net.kill(0);
        net.run_until(s(40));
        assert_eq!(
            net.changes_from(s(20)),
            vec![(takeover, 1, Master)],
            "{name}"
        );
        assert_eq!(net.nodes[1].vrrp.master(), Some(ip(2)));
    }
}

/// A clean shutdown sends priority 0: the backup takes over after
/// Skew_Time, not Master_Down_Interval.
#[test]
fn clean_shutdown_takeover_within_skew_time() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    net.run_until(s(20));
    net.event(0, |v, now| v.on_shutdown(now));
    net.kill(0);
    assert_eq!(net.nodes[1].vrrp.master(), None, "master left");
    net.run_until(s(30));
    assert_eq!(
        net.changes_from(s(20)),
        vec![
            (s(20), 0, State::Initialize),
            (s(20) + ns(SKEW_100), 1, Master)
        ]
    );
    assert_eq!(net.holders(), vec![1]);
    assert_eq!(net.nodes[1].vrrp.counters().priority_zero_received, 1);
}

/// The higher priority node comes back while the lower one is master.
#[test]
fn preempt_true_and_false() {
    for (preempt, want) in [
        (
            true,
            vec![
                (s(10), 0, Backup),
                (s(10) + ns(MDI_200), 0, Master),
                (s(10) + ns(MDI_200), 1, Backup),
            ],
        ),
        (false, vec![(s(10), 0, Backup)]),
    ] {
        let mut net = Net::pair((200, 1, preempt), (100, 2, true));
        net.start(1);
        net.run_until(s(10));
        assert_eq!(net.state(1), Master);
        net.start(0);
        net.run_until(s(60));
        assert_eq!(net.changes_from(s(10)), want, "preempt {preempt}");
        let holder = if preempt { 0 } else { 1 };
        assert_eq!(net.holders(), vec![holder], "preempt {preempt}");
        assert_eq!(
            net.nodes[0].vrrp.master(),
            Some(ip(holder as u8 + 1)),
            "preempt {preempt}"
        );
    }
}

/// Equal priorities: when both contend (start together, adverts cross on
/// a wire with 1 ms delay), the higher primary address wins, whatever the
/// node order. A Backup accepts an equal master whatever its address, so
/// a node that starts later does not displace a live equal master.
#[test]
fn equal_priority_higher_address_wins_contention() {
    let cases = [
        // (addresses of node 0 and 1, start times, wanted holder)
        ([1u8, 2], [s(0), s(0)], 1usize),
        ([2, 1], [s(0), s(0)], 0),
        ([1, 2], [s(0), s(10)], 0),
        ([2, 1], [s(10), s(0)], 1),
    ];
    for (addrs, starts, holder) in cases {
        let mut net = Net::pair((100, addrs[0], true), (100, addrs[1], true));
        net.delay = Duration::from_millis(1);
        let mut order = [0usize, 1];
        order.sort_by_key(|&i| starts[i]);
        for i in order {
            net.run_until(starts[i]);
            net.start(i);
        }
        net.run_until(s(40));
        assert_eq!(net.holders(), vec![holder], "{addrs:?} {starts:?}");
        if starts[0] == starts[1] {
            // Both became master at 3.609375 s; the lower yields when the
            // other's advert lands 1 ms later.
            let loser = 1 - holder;
            let yielded = ns(MDI_100) + Duration::from_millis(1);
            assert!(net.changes.contains(&(yielded, loser, Backup)));
            assert!(net.changes.contains(&(ns(MDI_100), holder, Master)));
        }
    }
}

/// Three routers: the highest wins; when it dies the next one takes over
/// exactly, and the lowest never becomes master.
#[test]
fn three_routers_next_in_line_takes_over() {
    let mut net = Net::new(vec![cfg(150, 1, true), cfg(100, 2, true), cfg(50, 3, true)]);
    for i in 0..3 {
        net.start(i);
    }
    net.run_until(s(20));
    assert_eq!(net.holders(), vec![0]);
    net.kill(0);
    net.run_until(s(60));
    // Last advert of node 0: 3.4140625 + 16 = 19.4140625 s.
    let last = ns(MDI_150) + s(16);
    assert_eq!(
        net.changes_from(s(20)),
        vec![(last + ns(MDI_100), 1, Master)]
    );
    assert!(net.changes.iter().all(|c| !(c.1 == 2 && c.2 == Master)));
    assert_eq!(net.nodes[2].vrrp.master(), Some(ip(2)));
}

/// Adverts that are wrong in any way are counted and change nothing: the
/// backup still takes over at its original deadline.
#[test]
fn invalid_adverts_counted_and_ignored() {
    let src = ip(1);
    let dst = IpAddr::V4(MCAST_V4);
    let good = encode(&adv(200), src, dst).unwrap();
    let with = |a: Advert| encode(&a, src, dst).unwrap();
    let mut bad_ck = good.clone();
    bad_ck[7] ^= 0x40;
    let mut v2 = good.clone();
    v2[0] = 0x21;
    // (name, message, its IP source, what the counters must say)
    type Case = (&'static str, Vec<u8>, IpAddr, fn(&Invalid) -> bool);
    let cases: Vec<Case> = vec![
        (
            "wrong vrid",
            with(Advert {
                vrid: 52,
                ..adv(200)
            }),
            src,
            |e| *e == Invalid::Vrid { got: 52, want: 51 },
        ),
        (
            "zero interval",
            with(Advert {
                interval_cs: 0,
                ..adv(200)
            }),
            src,
            |e| *e == Invalid::ZeroInterval,
        ),
        ("bad checksum", bad_ck, src, |e| {
            matches!(e, Invalid::Packet(PacketError::Checksum { .. }))
        }),
        ("version 2", v2, src, |e| {
            *e == Invalid::Packet(PacketError::Version { got: 2 })
        }),
        ("truncated", good[..10].to_vec(), src, |e| {
            matches!(e, Invalid::Packet(PacketError::Length { .. }))
        }),
        (
            "own advert",
            encode(&adv(200), ip(5), dst).unwrap(),
            ip(5),
            |e| *e == Invalid::Own,
        ),
    ];
    for (name, msg, from, check) in cases {
        let t0 = Instant::now();
        let mut v = Vrrp::new(cfg(100, 5, true)).unwrap();
        v.on_start(t0);
        assert_eq!(v.on_packet(t0 + s(1), &msg, from, dst), vec![], "{name}");
        let c = v.counters();
        assert_eq!((c.adverts_received, c.adverts_invalid), (1, 1), "{name}");
        assert!(check(c.last_invalid.as_ref().unwrap()), "{name}: {c:?}");
        assert_eq!(v.next_deadline(), Some(t0 + ns(MDI_100)), "{name}");
        assert_eq!(v.master(), None, "{name}");
        assert!(
            v.on_timer(t0 + ns(MDI_100)).contains(&Action::BecomeMaster),
            "{name}"
        );
        // And as Master, the same advert does not make us yield.
        assert_eq!(v.on_packet(t0 + s(4), &msg, from, dst), vec![], "{name}");
        assert_eq!(v.state(), Master, "{name}");
        assert_eq!(v.counters().adverts_invalid, 2, "{name}");
    }
    // Contrast: the valid advert resets the timer.
    let t0 = Instant::now();
    let mut v = Vrrp::new(cfg(100, 5, true)).unwrap();
    v.on_start(t0);
    v.on_packet(t0 + s(1), &good, src, dst);
    assert_eq!(v.next_deadline(), Some(t0 + s(1) + ns(MDI_100)));
    assert_eq!(v.master(), Some(src));
    assert_eq!(v.counters().adverts_invalid, 0);
    // An IPv6 source for an IPv4 router.
    let v6 = IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1u16]);
    v.on_advert(t0 + s(2), &adv(200), v6);
    assert_eq!(v.counters().last_invalid, Some(Invalid::Family(v6)));
}

/// The tracked link goes down on the master: it sends priority 0 and
/// yields at once; the peer takes over in Skew_Time. When the link comes
/// back, the higher priority takes MASTER back (preempt).
#[test]
fn link_tracking() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    net.run_until(s(20));
    net.event(0, |v, now| v.on_link(now, false));
    assert!(net
        .actions
        .contains(&(s(20), 0, Action::SendAdvert { priority: 0 })));
    net.run_until(s(30));
    net.event(0, |v, now| v.on_link(now, true));
    net.run_until(s(60));
    assert_eq!(
        net.changes_from(s(20)),
        vec![
            (s(20), 0, Fault),
            (s(20) + ns(SKEW_100), 1, Master),
            (s(30), 0, Backup),
            (s(30) + ns(MDI_200), 0, Master),
            (s(30) + ns(MDI_200), 1, Backup),
        ]
    );
    assert_eq!(net.holders(), vec![0]);
    let c = net.nodes[0].vrrp.counters();
    assert_eq!((c.to_fault, c.to_master, c.to_backup), (1, 2, 2));

    // Link down before start: start in Fault; link up: Backup.
    let t0 = Instant::now();
    let mut v = Vrrp::new(cfg(100, 1, true)).unwrap();
    assert_eq!(v.on_link(t0, false), vec![]);
    assert_eq!(v.on_start(t0), vec![]);
    assert_eq!(v.state(), Fault);
    assert_eq!(v.next_deadline(), None);
    assert_eq!(v.on_advert(t0, &adv(200), ip(2)), vec![]);
    assert_eq!(v.master(), None);
    assert_eq!(v.on_link(t0 + s(1), true), vec![]);
    assert_eq!(v.state(), Backup);
    assert_eq!(v.next_deadline(), Some(t0 + s(1) + ns(MDI_100)));
    // Link down in Backup: Fault, no actions.
    assert_eq!(v.on_link(t0 + s(2), false), vec![]);
    assert_eq!(v.state(), Fault);
}

/// Split brain: the wire is cut but both live. Both become MASTER (as
/// keepalived does); once the wire heals, the lower priority yields on
/// the first advert it hears.
#[test]
fn split_brain_and_heal() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    net.run_until(s(20));
    net.cut = true;
    net.run_until(s(30));
    assert_eq!(net.holders(), vec![0, 1], "both hold the addresses");
    net.cut = false;
    net.run_until(s(40));
    // Node 0 adverts at 3.21875 + k s: first after the heal is 30.21875 s.
    assert_eq!(
        net.changes_from(s(20)),
        vec![
            (ns(19_218_750_000 + MDI_100), 1, Master),
            (ns(30_218_750_000), 1, Backup),
        ]
    );
    assert_eq!(net.holders(), vec![0]);
}

/// A long run with the master flapping: never two holders once settled,
/// and the counters add up.
#[test]
fn counters_add_up() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    for round in 0..5u64 {
        net.run_until(s(20 + 40 * round));
        net.event(0, |v, now| v.on_shutdown(now));
        net.run_until(s(30 + 40 * round));
        assert_eq!(net.holders(), vec![1]);
        net.event(0, |v, now| v.on_start(now));
        net.run_until(s(40 + 40 * round));
        assert_eq!(net.holders(), vec![0]);
    }
    let (a, b) = (net.nodes[0].vrrp.counters(), net.nodes[1].vrrp.counters());
    assert_eq!(a.to_master, 6);
    assert_eq!(b.to_master, 5);
    assert_eq!(b.to_backup, 6);
    assert_eq!(a.priority_zero_sent, 5);
    assert_eq!(b.priority_zero_received, 5);
    assert_eq!(a.adverts_sent, b.adverts_received);
    assert_eq!(b.adverts_sent, a.adverts_received);
    assert_eq!(a.adverts_invalid + b.adverts_invalid, 0);
}

/// The same election over IPv6 (link-local primaries, ff02::12): equal
/// priorities contend, the higher address wins; it dies, the other takes
/// over after Master_Down_Interval.
#[test]
fn ipv6_pair() {
    let c = |last: u16| VrrpConfig {
        primary: IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, last]),
        addresses: vec!["2001:db8::100".parse().unwrap()],
        ..cfg(100, 1, true)
    };
    let mut net = Net::new(vec![c(2), c(1)]);
    net.delay = Duration::from_millis(1);
    net.start(0);
    net.start(1);
    net.run_until(s(20));
    assert_eq!(net.holders(), vec![0]);
    assert_eq!(net.nodes[1].vrrp.master(), Some(c(2).primary));
    net.kill(0);
    net.run_until(s(40));
    // Node 0 adverts at 3.609375 + k s; the last, sent at 19.609375 s,
    // lands at 19.610375 s.
    let last_heard = ns(MDI_100) + s(16) + Duration::from_millis(1);
    assert_eq!(
        net.changes_from(s(20)),
        vec![(last_heard + ns(MDI_100), 1, Master)]
    );
    assert_eq!(net.nodes[1].vrrp.counters().adverts_invalid, 0);
}

/// `ferrolb ha takeover` on the lower-priority BACKUP: MASTER at once,
/// and it stays MASTER (its adverts carry 254, the preempting peer
/// yields); `auto` gives the addresses back to the preempting peer;
/// `release` on a MASTER hands over within the peer's skew time and
/// stays BACKUP even when the peer dies.
#[test]
fn manual_takeover_release_and_auto() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    net.run_until(s(10));
    assert_eq!(net.holders(), vec![0]);

    // Takeover on node 1.
    net.event(1, |v, now| v.set_manual(now, Manual::Takeover));
    assert_eq!(net.state(1), Master, "at once");
    assert_eq!(net.nodes[1].vrrp.priority(), TAKEOVER_PRIORITY);
    net.run_until(s(30));
    assert_eq!(net.holders(), vec![1], "the peer yielded and stays BACKUP");
    assert_eq!(net.state(0), Backup);
    assert_eq!(net.nodes[0].vrrp.master(), Some(ip(2)));

    // Back to the election: node 0 (200, preempt) takes the addresses
    // back once node 1 advertises 100 again.
    net.event(1, |v, now| v.set_manual(now, Manual::Auto));
    assert_eq!(net.nodes[1].vrrp.priority(), 100);
    net.run_until(s(40));
    assert_eq!(net.holders(), vec![0]);

    // Release on the MASTER (node 0): node 1 takes over within its skew
    // time, and node 0 stays BACKUP (preempt notwithstanding).
    net.event(0, |v, now| v.set_manual(now, Manual::Release));
    assert_eq!(net.state(0), Backup, "at once");
    net.run_until(s(40) + ns(SKEW_100) + ns(1));
    assert_eq!(net.holders(), vec![1]);
    net.run_until(s(60));
    assert_eq!(net.holders(), vec![1]);
    // The peer dies: a released node still stays BACKUP.
    net.kill(1);
    net.run_until(s(80));
    assert_eq!(net.state(0), Backup);
    assert!(net.holders().is_empty());
    // Until the operator says otherwise.
    net.event(0, |v, now| v.set_manual(now, Manual::Auto));
    net.run_until(s(80) + ns(MDI_200) + ns(1));
    assert_eq!(net.holders(), vec![0]);
}

/// A reload changes the priority and interval of a running router: the
/// state stays, the next adverts carry the new values, and bad values are
/// refused with the running ones kept.
#[test]
fn reconfigure_keeps_the_state_and_refuses_bad_values() {
    let mut net = Net::pair((200, 1, true), (100, 2, true));
    net.start(0);
    net.start(1);
    net.run_until(s(10));
    let v = &mut net.nodes[0].vrrp;
    assert_eq!(
        v.reconfigure(0, true, s(1), s(60), s(1200)),
        Err(ConfigError::Priority(0))
    );
    assert_eq!(
        v.reconfigure(150, true, Duration::from_millis(5), s(60), s(1200)),
        Err(ConfigError::Interval(Duration::from_millis(5)))
    );
    assert_eq!(v.priority(), 200, "kept");
    v.reconfigure(50, true, Duration::from_millis(500), s(60), s(1200))
        .unwrap();
    assert_eq!(v.state(), Master, "state kept");
    assert_eq!(v.advert(v.priority()).priority, 50);
    assert_eq!(v.advert(50).interval_cs, 50);
    // Node 1 (100, preempt) now outranks node 0 and takes over.
    net.run_until(s(20));
    assert_eq!(net.holders(), vec![1]);
}
