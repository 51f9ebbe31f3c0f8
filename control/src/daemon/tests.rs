//! The daemon on a fake data plane, driven through its real admin API on
//! loopback: what it publishes after operator actions, reloads by API and
//! by signal, and refusals that leave everything as it was.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forwarder::service::RealState;
use forwarder::stats::{Placement, PortStats, WorkerShared};

use super::*;

/// A data plane that records what it is given.
struct FakeDp {
    macs: Vec<MacAddr>,
    published: Mutex<Vec<Arc<Snapshot>>>,
    neigh: Arc<NeighTable>,
    workers: Vec<Arc<WorkerShared>>,
}

impl Dataplane for FakeDp {
    fn macs(&self) -> &[MacAddr] {
        &self.macs
    }
    fn publish(&self, snap: Arc<Snapshot>) {
        self.published.lock().unwrap().push(snap);
    }
    fn neigh(&self) -> &Arc<NeighTable> {
        &self.neigh
    }
    fn workers(&self) -> &[Arc<WorkerShared>] {
        &self.workers
    }
    fn mbufs(&self) -> (u32, u32) {
        (10, 90)
    }
    fn port_stats(&self, _: usize) -> Option<PortStats> {
        Some(PortStats {
            rx_packets: 5,
            ..PortStats::default()
        })
    }
    fn link_up(&self, _: usize) -> Option<bool> {
        Some(true)
    }
    fn placement(&self) -> Placement {
        Placement {
            main_lcore: 0,
            control_cpus: vec![0],
            workers: vec![(1, Some(1)), (2, Some(0))],
            steering: vec![(
                "lan".into(),
                "software: net_af_packet0 does not hash IPv4 TCP and UDP frames (RSS)".into(),
            )],
        }
    }
}

const CFG: &str = r#"
[dataplane]
eal_args = ["--no-huge"]
workers = 2

[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
  [[vip.real]]
  address = "192.0.2.21"
  [[vip.real]]
  address = "192.0.2.22"

[admin]
listen = "127.0.0.1:0"
"#;

/// A scratch configuration file, removed on drop.
struct File(std::path::PathBuf);

impl File {
    fn new(text: &str) -> File {
        let p = std::env::temp_dir().join(format!(
            "ferrolb-daemon-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, text).unwrap();
        File(p)
    }
    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn states(s: &Snapshot) -> Vec<RealState> {
    s.vips.services()[0]
        .reals()
        .iter()
        .map(|r| r.state)
        .collect()
}

fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    crate::api::request_with(&addr.to_string(), None, method, path).unwrap()
}

fn status(addr: SocketAddr) -> Status {
    let (code, body) = call(addr, "GET", "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `f` every 20 ms for at most 5 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn operator_actions_and_reloads_reach_the_data_plane_and_refusals_change_nothing() {
    let file = File::new(CFG);
    let cfg = config::parse("daemon.toml", CFG).unwrap();
    let dp = FakeDp {
        macs: vec![MacAddr([2, 0, 0, 0, 0, 2])],
        published: Mutex::new(Vec::new()),
        neigh: Arc::new(NeighTable::new(64)),
        workers: vec![Arc::default(), Arc::default()],
    };
    let first = Arc::new(first_snapshot(&cfg, dp.macs()).unwrap());
    assert_eq!(first.generation, 1);
    let d = Daemon::start(&file.0, cfg, &dp, first).unwrap();
    let addr = d.admin_addr();
    let stop = AtomicBool::new(false);
    let reload = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let client = sc.spawn(|| {
            let guard = StopOnDrop(&stop);
            // Reals of a VIP without checks are declared up by the checker
            // at once: one new generation.
            eventually("the checker's first verdicts", || {
                dp.published.lock().unwrap().len() == 1
            });
            let s = status(addr);
            assert_eq!((s.generation, s.vips.len(), s.workers.len()), (2, 1, 2));
            assert_eq!(s.workers[1].cpu, Some(0));
            assert_eq!(s.placement.workers_sharing_control_cpus, vec![2]);
            assert_eq!(s.mbufs.capacity, 100);
            // Each port's steering, found by its name.
            let lan = s.ports.iter().find(|p| p.name == "lan").expect("port lan");
            assert_eq!(
                lan.steering,
                "software: net_af_packet0 does not hash IPv4 TCP and UDP frames (RSS)"
            );

            // Drain one real: a new generation with that real draining.
            let (code, body) = call(addr, "POST", "/api/v1/vips/web/reals/192.0.2.21/drain");
            assert_eq!((code, body.trim()), (200, "web: 192.0.2.21 drained"));
            let last = dp.published.lock().unwrap().last().cloned().unwrap();
            assert_eq!(last.generation, 3);
            assert_eq!(states(&last), vec![RealState::Drain, RealState::Up]);
            let s = status(addr);
            assert_eq!(s.vips[0].reals[0].admin.as_deref(), Some("drain"));
            assert_eq!(s.vips[0].reals[0].state, "drain");

            // Refusals: named, and nothing published.
            let n = dp.published.lock().unwrap().len();
            let (code, body) = call(addr, "POST", "/api/v1/vips/mail/reals/192.0.2.21/drain");
            assert_eq!(code, 404);
            assert!(body.contains("no VIP named \"mail\" (VIPs: web)"), "{body}");
            let (code, _) = call(addr, "POST", "/api/v1/vips/web/reals/not-an-ip/drain");
            assert_eq!(code, 400);
            file.write(&CFG.replace("port = 80", "port = 99999"));
            let (code, body) = call(addr, "POST", "/api/v1/reload");
            assert_eq!(code, 400);
            assert!(
                body.contains("reload rejected") && body.contains("port"),
                "{body}"
            );
            assert_eq!(dp.published.lock().unwrap().len(), n);
            let s = status(addr);
            assert_eq!(s.generation, 3);
            assert!(s.last_reload_error.is_some());

            // A valid reload by signal: one real removed; the action on the
            // remaining real follows it. The removed real stays (no new
            // flows, on_remove = "keep") until the workers report that it
            // holds no flow.
            file.write(&CFG.replace("  [[vip.real]]\n  address = \"192.0.2.22\"\n", ""));
            reload.store(true, Ordering::Relaxed);
            eventually("the reload", || status(addr).reloads == 1);
            let s = status(addr);
            assert_eq!((s.generation, s.last_reload_error.clone()), (4, None));
            assert_eq!(s.vips[0].reals.len(), 2);
            assert_eq!(s.vips[0].reals[1].state, "removed");
            assert_eq!(s.vips[0].reals[1].weight, 0);
            let last = dp.published.lock().unwrap().last().cloned().unwrap();
            assert_eq!(states(&last), vec![RealState::Drain, RealState::Drain]);
            for w in &dp.workers {
                let mut r = w.services.lock().unwrap();
                r.generation = 4;
                r.active = vec![vec![1, 0]];
            }
            eventually("the removed real's end", || {
                status(addr).vips[0].reals.len() == 1
            });
            let last = dp.published.lock().unwrap().last().cloned().unwrap();
            assert_eq!(
                (last.generation, states(&last)),
                (5, vec![RealState::Drain])
            );

            let (code, _) = call(addr, "POST", "/api/v1/vips/web/reals/192.0.2.21/enable");
            assert_eq!(code, 200);
            let last = dp.published.lock().unwrap().last().cloned().unwrap();
            assert_eq!((last.generation, states(&last)), (6, vec![RealState::Up]));

            // No [ha]: no manual failover; adding [ha] needs a restart,
            // and the reload says so without changing anything.
            let (code, body) = call(addr, "POST", "/api/v1/ha/takeover");
            assert_eq!(code, 409, "{body}");
            assert!(body.contains("no [ha]"), "{body}");
            let (code, _) = call(addr, "POST", "/api/v1/ha/sideways");
            assert_eq!(code, 404);
            file.write(&format!(
                "{CFG}\n[ha]\nvrid = 51\npriority = 100\nport_name = \"lan\"\n"
            ));
            let n = dp.published.lock().unwrap().len();
            let (code, body) = call(addr, "POST", "/api/v1/reload");
            assert_eq!(code, 409, "{body}");
            assert!(
                body.contains("[ha] was added") && body.contains("restart"),
                "{body}"
            );
            assert_eq!(dp.published.lock().unwrap().len(), n);
            let s = status(addr);
            assert!(s.ha.is_none());
            assert!(
                s.last_reload_error
                    .as_deref()
                    .is_some_and(|e| e.contains("restart")),
                "{s:?}"
            );
            drop(guard);
        });
        d.run(&stop, &reload);
        client.join().unwrap();
    });
}

/// Stops the daemon when the client ends, also when an assertion fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn ha_changes_a_running_router_cannot_take_are_named() {
    let with = |extra: &str| {
        let text = format!("{CFG}\n[ha]\nvrid = 51\npriority = 100\nport_name = \"lan\"\n{extra}");
        config::parse("ha.toml", &text).unwrap().ha.unwrap()
    };
    let base = with("");
    assert_eq!(ha_needs_restart(Some(&base), Some(&base)), None);
    // Live: priority, preempt, timers, floating addresses, sync.
    for live in [
        "preempt = false\n",
        "advert_interval = \"500ms\"\n",
        "garp_interval = \"5s\"\n",
        "floating = [\"192.0.2.1\"]\n",
        "sync_peer = \"192.0.2.3\"\n",
    ] {
        assert_eq!(
            ha_needs_restart(Some(&base), Some(&with(live))),
            None,
            "{live}"
        );
    }
    let mut p = base.clone();
    p.priority = 200;
    assert_eq!(ha_needs_restart(Some(&base), Some(&p)), None);
    // At a restart only.
    let mut v = base.clone();
    v.vrid = 52;
    let why = ha_needs_restart(Some(&base), Some(&v)).unwrap();
    assert!(why.contains("[ha].vrid 51 -> 52"), "{why}");
    let u = with("unicast_peers = [\"192.0.2.3\"]\n");
    let why = ha_needs_restart(Some(&base), Some(&u)).unwrap();
    assert!(why.contains("unicast_peers"), "{why}");
    assert_eq!(
        ha_needs_restart(Some(&base), None).as_deref(),
        Some("[ha] was removed")
    );
    assert_eq!(
        ha_needs_restart(None, Some(&base)).as_deref(),
        Some("[ha] was added")
    );
}
