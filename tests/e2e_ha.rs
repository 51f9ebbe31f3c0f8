//! An active/backup pair by VRRPv3 end to end: two ferrolb nodes, a client
//! and a direct-routing nginx real on one bridge.
//!
//! ```text
//!            [ns switch: br0]
//!   client 192.0.2.1 | lb A 192.0.2.2 (priority 150) | lb B 192.0.2.3 (100)
//!   VIP 192.0.2.100 (vrid 51, advert 1 s), real 192.0.2.21 (VIP on lo)
//! ```
//!
//! Also preemption (on and off) when A comes back, and keepalived (VRRPv3,
//! in B's namespace at 192.0.2.3, package `keepalived`) as the peer.

mod common;

on_one_and_two_workers!(
    kill_9_of_the_master_fails_over_to_the_backup,
    keepalived_interop_ferrolb_master_keepalived_takes_over_on_kill_9,
    ipv6_vrrp_pair_fails_over_and_the_client_follows_the_unsolicited_na,
    a_long_lived_dr_connection_survives_kill_9_of_the_master_without_sync,
    a_long_lived_nat_connection_survives_kill_9_of_the_master_with_sync,
    without_sync_the_same_nat_connection_breaks,
);

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Lab {
    _sw: Switch,
    client: Netns,
    a: Netns,
    b: Netns,
    _real: Netns,
    _nginx: Nginx,
    id: String,
    workers: u16,
}

fn lab(workers: u16) -> Lab {
    let id = uid();
    let mut sw = Switch::new(&id);
    let client = Netns::new(&format!("flc{id}"));
    let a = Netns::new(&format!("fla{id}"));
    let b = Netns::new(&format!("flb{id}"));
    let real = Netns::new(&format!("flr{id}"));
    for ns in [&client, &a, &b, &real] {
        sw.plug(ns, "eth0");
    }
    client.exec("ip addr add 192.0.2.1/24 dev eth0 && ip addr add 2001:db8::1/64 dev eth0 nodad");
    real.exec("ip addr add 192.0.2.21/24 dev eth0 && ip addr add 2001:db8::21/64 dev eth0 nodad");
    dr_real(&real, "eth0", &["192.0.2.100", "2001:db8::100"]);
    let nginx = Nginx::start(&real, "real1", 80);
    Lab {
        _sw: sw,
        client,
        a,
        b,
        _real: real,
        _nginx: nginx,
        id,
        workers,
    }
}

fn config(l: &Lab, node: &str, addr: &str, priority: u8) -> String {
    let (id, workers) = (&l.id, l.workers);
    let dp = dataplane(&format!("fl{id}{node}"), &["eth0"], "200us");
    let c = format!(
        r#"
{dp}
[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["{addr}/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
  [[vip.real]]
  address = "192.0.2.21"

[ha]
vrid = 51
priority = {priority}
advert_interval = "1s"
port_name = "lan"
garp_interval = "2s"
garp_elapse = "10s"
"#
    );
    with_workers(&c, workers)
}

const MASTER: &str = "VRRP transition to MASTER";

/// Starts A (150) and waits until it is MASTER, then B (100) as BACKUP;
/// checks the client reaches the VIP through A.
fn pair(l: &Lab) -> (Ferrolb, Ferrolb, String, String) {
    pair_with(l, "")
}

/// `pair` with `a_extra` appended to A's `[ha]` section (e.g. `preempt`).
fn pair_with(l: &Lab, a_extra: &str) -> (Ferrolb, Ferrolb, String, String) {
    let cfg_a = config(l, "a", "192.0.2.2", 150) + a_extra;
    let mut a = Ferrolb::start(&l.a, &cfg_a);
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &config(l, "b", "192.0.2.3", 100));
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    // B hears A's adverts and stays BACKUP past its Master_Down_Interval.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log_text().contains(MASTER), "{}", b.log_text());
    let sb = l.b.exec(&format!("{} status", ferrolb_bin()));
    eprintln!("B: {}", sb.lines().next().unwrap_or(""));
    assert!(sb.contains("BACKUP, master 192.0.2.2"), "{sb}");
    let sa = l.a.exec(&format!("{} status", ferrolb_bin()));
    assert!(sa.contains("MASTER (holding the VIPs)"), "{sa}");
    let (mac_a, mac_b) = (l.a.mac("eth0"), l.b.mac("eth0"));
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    let n = l.client.exec("ip neigh show 192.0.2.100");
    assert!(n.contains(&mac_a), "VIP entry {n:?} is not A's {mac_a}");
    (a, b, mac_a, mac_b)
}

/// A bounded request loop in the client: one curl every 100 ms, at most
/// `n`; each line `TIME ok|fail`.
fn start_client_loop(l: &Lab, n: u32) -> (std::process::Child, std::path::PathBuf) {
    let out = std::env::temp_dir().join(format!("ferrolb-ha-client-{}", uid()));
    let script = format!(
        "for i in $(seq 1 {n}); do t=$(date +%s.%N); \
         if curl -s -o /dev/null --connect-timeout 0.5 -m 1 http://192.0.2.100/; \
         then echo \"$t ok\"; else echo \"$t fail\"; fi; sleep 0.1; done > {}",
        out.display()
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &l.client.name, "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("client loop");
    (child, out)
}

/// Waits (bounded) for the loop; (ok, failed, longest gap between two
/// successful requests in s).
fn finish_client_loop(mut child: std::process::Child, out: &std::path::Path) -> (u32, u32, f64) {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let _ = std::fs::remove_file(out);
    let (mut ok, mut failed, mut gap, mut last_ok) = (0, 0, 0.0f64, None::<f64>);
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let t: f64 = w.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        if w.next() == Some("ok") {
            ok += 1;
            if let Some(p) = last_ok {
                gap = gap.max(t - p);
            }
            last_ok = Some(t);
        } else {
            failed += 1;
        }
    }
    (ok, failed, gap)
}

/// Polls `f`'s log until it contains `needle`; the time it took.
fn time_to_log(f: &mut Ferrolb, needle: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    f.wait_log(needle, limit);
    t0.elapsed()
}

fn kill_9_of_the_master_fails_over_to_the_backup(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, _mac_a, mac_b) = pair(&l);

    let (child, out) = start_client_loop(&l, 150);
    std::thread::sleep(Duration::from_secs(2));
    let (_, _) = a.signal_and_wait("KILL", Duration::from_secs(5));
    // Master_Down_Interval of B: 3 x 1 s + skew (156/256 s) = 3.61 s; + 1 s.
    let took = time_to_log(&mut b, MASTER, Duration::from_millis(4610));
    eprintln!("B became MASTER {took:?} after kill -9 of A");

    let (ok, failed, gap) = finish_client_loop(child, &out);
    eprintln!("client: {ok} ok, {failed} failed, longest gap {gap:.2} s");
    let n = l.client.exec("ip neigh show 192.0.2.100");
    assert!(n.contains(&mac_b), "VIP entry {n:?} is not B's {mac_b}");
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    assert!(ok >= 100, "{ok} ok, {failed} failed");
    assert!(gap < 6.0, "longest gap {gap:.2} s");
    let sb = l.b.exec(&format!("{} status", ferrolb_bin()));
    eprintln!("B: {}", sb.lines().nth(1).unwrap_or(""));
    assert!(sb.contains("MASTER (holding the VIPs)"), "{sb}");
    let m = l.b.exec("curl -s http://127.0.0.1:9080/metrics");
    assert!(
        m.contains("ferrolb_vrrp_state{vrid=\"51\",state=\"master\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferrolb_vrrp_transitions_total{vrid=\"51\",to=\"master\"} 1"),
        "{m}"
    );
    b.stop();
}

#[test]
fn sigterm_of_the_master_hands_over_within_one_interval() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, _mac_a, mac_b) = pair(&l);

    let (child, out) = start_client_loop(&l, 60);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    run(&format!("kill -TERM {}", a.pid()));
    b.wait_log(MASTER, Duration::from_millis(1500));
    let took = t0.elapsed();
    eprintln!("B became MASTER {took:?} after SIGTERM to A");
    a.stop();
    assert!(
        a.log_text().contains("VRRP stopped was=master"),
        "{}",
        a.log_text()
    );

    let (ok, failed, gap) = finish_client_loop(child, &out);
    eprintln!("client: {ok} ok, {failed} failed, longest gap {gap:.2} s");
    let n = l.client.exec("ip neigh show 192.0.2.100");
    assert!(n.contains(&mac_b), "VIP entry {n:?} is not B's {mac_b}");
    assert!(ok >= 50, "{ok} ok, {failed} failed");
    b.stop();
}

const BACKUP: &str = "VRRP transition to BACKUP";

fn status(ns: &Netns) -> String {
    ns.exec(&format!("{} status", ferrolb_bin()))
}

/// Waits (bounded) until the client's neighbour entry for the VIP is `mac`.
fn client_vip_mac_is(l: &Lab, mac: &str, limit: Duration) -> bool {
    wait_for(limit, || {
        l.client
            .try_exec("ip neigh show 192.0.2.100")
            .1
            .contains(mac)
    })
}

/// SIGTERM to A (MASTER): B takes over, A exits cleanly.
fn stop_a(l: &Lab, a: &mut Ferrolb, b: &mut Ferrolb, mac_b: &str) {
    run(&format!("kill -TERM {}", a.pid()));
    b.wait_log(MASTER, Duration::from_millis(1500));
    a.stop();
    assert!(
        client_vip_mac_is(l, mac_b, Duration::from_secs(3)),
        "VIP entry {:?} is not B's {mac_b}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
}

#[test]
fn preempt_true_the_higher_priority_takes_the_vip_back() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, mac_a, mac_b) = pair_with(&l, "preempt = true\n");
    stop_a(&l, &mut a, &mut b, &mac_b);
    drop(a);

    let cfg_a = config(&l, "a", "192.0.2.2", 150) + "preempt = true\n";
    let mut a = Ferrolb::start(&l.a, &cfg_a);
    a.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    // A ignores B's lower adverts and takes over after its own
    // Master_Down_Interval: 3 x 1 s + (256-150)/256 s = 3.41 s; + 1 s.
    let took = time_to_log(&mut a, MASTER, Duration::from_millis(4410));
    eprintln!("restarted A became MASTER {took:?} after VRRP start");
    b.wait_log(BACKUP, Duration::from_secs(2));
    assert!(
        client_vip_mac_is(&l, &mac_a, Duration::from_secs(3)),
        "VIP entry {:?} is not A's {mac_a}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
    let sa = status(&l.a);
    assert!(sa.contains("MASTER (holding the VIPs)"), "{sa}");
    let sb = status(&l.b);
    assert!(sb.contains("BACKUP, master 192.0.2.2"), "{sb}");
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    for f in [&mut b, &mut a] {
        f.stop();
    }
}

/// `ferrolb ha takeover` on the BACKUP moves the VIP to it at once and
/// keeps it there though A (higher priority, preempt) lives on; `ha
/// release` hands it back within A's skew time and keeps B BACKUP; `ha
/// auto` returns to the election. A reload of A's `[ha]` priority applies
/// to the running router; a changed vrid is refused, naming the restart.
#[test]
fn manual_takeover_and_release_move_the_vip_and_ha_reloads_apply_or_are_refused() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, mac_a, mac_b) = pair_with(&l, "preempt = true\n");
    let ha = |ns: &Netns, action: &str| ns.exec(&format!("{} ha {action}", ferrolb_bin()));

    let out = ha(&l.b, "takeover");
    assert!(out.contains("takeover: BACKUP -> MASTER"), "{out}");
    b.wait_log(MASTER, Duration::from_secs(1));
    a.wait_log(BACKUP, Duration::from_secs(3));
    assert!(
        client_vip_mac_is(&l, &mac_b, Duration::from_secs(3)),
        "VIP entry {:?} is not B's {mac_b}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    // A (150, preempt) stays BACKUP: B advertises 254.
    std::thread::sleep(Duration::from_secs(5));
    let sa = status(&l.a);
    assert!(sa.contains("BACKUP, master 192.0.2.3"), "{sa}");
    let sb = status(&l.b);
    assert!(
        sb.contains("VRRP manual takeover: advertising priority 254"),
        "{sb}"
    );
    let jb = status_json(&l.b);
    assert_eq!(jb["ha"]["manual"], "takeover", "{jb}");
    assert_eq!(jb["ha"]["advertised_priority"], 254, "{jb}");

    // Release: A takes over at its skew time, B stays BACKUP.
    let out = ha(&l.b, "release");
    assert!(out.contains("release: MASTER -> BACKUP"), "{out}");
    a.wait_log_count(MASTER, 2, Duration::from_secs(2));
    assert!(
        client_vip_mac_is(&l, &mac_a, Duration::from_secs(3)),
        "VIP entry {:?} is not A's {mac_a}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
    assert!(status(&l.b).contains("VRRP manual release"));
    let out = ha(&l.b, "auto");
    assert!(out.contains("auto: BACKUP"), "{out}");
    assert_eq!(status_json(&l.b)["ha"]["manual"], "auto");

    // A reload lowers A's priority below B's: the running router takes
    // it, and B (preempt by default) takes the VIP.
    let cfg_a = config(&l, "a", "192.0.2.2", 150) + "preempt = true\n";
    std::fs::write(&a.config, cfg_a.replace("priority = 150", "priority = 50")).unwrap();
    let out = l.a.exec(&format!("{} reload", ferrolb_bin()));
    assert!(out.contains("reloaded"), "{out}");
    a.wait_log(
        "[ha] applied to the running VRRP instance",
        Duration::from_secs(2),
    );
    b.wait_log_count(MASTER, 2, Duration::from_secs(6));
    assert_eq!(status_json(&l.a)["ha"]["priority"], 50);
    // A new vrid needs a restart: refused, said, nothing changed.
    std::fs::write(&a.config, cfg_a.replace("vrid = 51", "vrid = 52")).unwrap();
    let (ok, out) = l.a.try_exec(&format!("{} reload 2>&1", ferrolb_bin()));
    assert!(!ok, "{out}");
    assert!(
        out.contains("[ha].vrid 51 -> 52 changed") && out.contains("restart"),
        "{out}"
    );
    let sa = status_json(&l.a);
    assert_eq!(sa["ha"]["vrid"], 51);
    assert_eq!(sa["ha"]["priority"], 50);
    for f in [&mut b, &mut a] {
        f.stop();
    }
}

#[test]
fn preempt_false_the_returning_node_stays_backup() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, _mac_a, mac_b) = pair_with(&l, "preempt = false\n");
    stop_a(&l, &mut a, &mut b, &mac_b);
    drop(a);

    let cfg_a = config(&l, "a", "192.0.2.2", 150) + "preempt = false\n";
    let mut a = Ferrolb::start(&l.a, &cfg_a);
    a.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    // Well past A's Master_Down_Interval (3.41 s): B's adverts keep it BACKUP.
    std::thread::sleep(Duration::from_secs(6));
    assert!(!a.log_text().contains(MASTER), "{}", a.log_text());
    assert!(!b.log_text().contains(BACKUP), "{}", b.log_text());
    let sa = status(&l.a);
    assert!(sa.contains("BACKUP, master 192.0.2.3"), "{sa}");
    let sb = status(&l.b);
    assert!(sb.contains("MASTER (holding the VIPs)"), "{sb}");
    let n = l.client.exec("ip neigh show 192.0.2.100");
    assert!(n.contains(&mac_b), "VIP entry {n:?} is not B's {mac_b}");
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    for f in [&mut a, &mut b] {
        f.stop();
    }
}

/// keepalived (VRRP only, foreground) in `ns` for vrid 51 / VIP
/// 192.0.2.100, VRRPv3, advert 1 s; stopped (and its VRRP child killed)
/// on drop.
struct Keepalived {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
}

impl Keepalived {
    fn start(ns: &Netns, priority: u8) -> Keepalived {
        let dir = std::env::temp_dir().join(format!("ferrolb-keepalived-{}", uid()));
        std::fs::create_dir_all(&dir).expect("keepalived dir");
        let conf = format!(
            "global_defs {{\n  router_id ferrolb_test\n  vrrp_version 3\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n\
             \x20 priority {priority}\n  advert_int 1\n  virtual_ipaddress {{\n    192.0.2.100/32\n  }}\n}}\n"
        );
        std::fs::write(dir.join("keepalived.conf"), conf).expect("keepalived conf");
        let log = std::fs::File::create(dir.join("keepalived.log")).expect("log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-G",
                "-P",
            ])
            .arg("-f")
            .arg(dir.join("keepalived.conf"))
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn keepalived (apt-get install keepalived)");
        Keepalived {
            child: Some(child),
            dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, limit: Duration) {
        assert!(
            wait_for(limit, || self.log_text().contains(needle)),
            "keepalived did not log {needle:?} within {limit:?}:\n{}",
            self.log_text()
        );
    }

    /// SIGTERM; waits (bounded) for the parent to exit.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = try_run(&format!("kill -TERM {}", c.id()));
        let done = wait_for(Duration::from_secs(5), || {
            matches!(c.try_wait(), Ok(Some(_)))
        });
        if !done {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The VRRP child, should it outlive its parent.
        let pid = std::fs::read_to_string(self.dir.join("vrrp.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<u32>() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.contains("keepalived") {
                let _ = try_run(&format!("kill -9 {pid}"));
            }
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- keepalived log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn keepalived_holds_vip(ns: &Netns) -> bool {
    ns.try_exec("ip -4 -o addr show dev eth0")
        .1
        .contains("192.0.2.100/")
}

/// Samples both nodes a few times (bounded): exactly one holds the VIP,
/// and it is the expected one.
fn exactly_one_holder(ferrolb_ns: &Netns, ka_ns: &Netns, ferrolb_master: bool) {
    for _ in 0..6 {
        let s = status(ferrolb_ns);
        let f = s.contains("MASTER (holding the VIPs)");
        let k = keepalived_holds_vip(ka_ns);
        assert!(!(f && k), "both hold the VIP:\n{s}");
        assert_eq!((f, k), (ferrolb_master, !ferrolb_master), "{s}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn keepalived_interop_ferrolb_master_keepalived_takes_over_on_kill_9(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let mut f = Ferrolb::start(&l.a, &config(&l, "a", "192.0.2.2", 150));
    f.wait_log("ferrolb running", Duration::from_secs(30));
    f.wait_log(MASTER, Duration::from_secs(6));
    l.b.exec("ip addr add 192.0.2.3/24 dev eth0");
    let ka = Keepalived::start(&l.b, 100);
    ka.wait_log("Entering BACKUP STATE", Duration::from_secs(10));
    // Past keepalived's Master_Down_Interval (3.61 s): ferrolb's adverts
    // keep it BACKUP.
    std::thread::sleep(Duration::from_secs(5));
    exactly_one_holder(&l.a, &l.b, true);
    assert!(
        !ka.log_text().contains("Entering MASTER STATE"),
        "{}",
        ka.log_text()
    );
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");

    let t0 = Instant::now();
    let _ = f.signal_and_wait("KILL", Duration::from_secs(5));
    // 3 x 1 s + skew (156/256 s) + 1 s.
    let ok = wait_for(Duration::from_millis(4610), || keepalived_holds_vip(&l.b));
    let took = t0.elapsed();
    assert!(ok, "keepalived did not take the VIP:\n{}", ka.log_text());
    eprintln!("keepalived holds the VIP {took:?} after kill -9 of ferrolb");
    ka.wait_log("Entering MASTER STATE", Duration::from_secs(2));
}

#[test]
fn keepalived_interop_keepalived_master_ferrolb_takes_over_on_stop() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    l.b.exec("ip addr add 192.0.2.3/24 dev eth0");
    let mut ka = Keepalived::start(&l.b, 150);
    ka.wait_log("Entering MASTER STATE", Duration::from_secs(10));
    assert!(
        wait_for(Duration::from_secs(3), || keepalived_holds_vip(&l.b)),
        "{}",
        ka.log_text()
    );
    let mut f = Ferrolb::start(&l.a, &config(&l, "a", "192.0.2.2", 100));
    f.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    // Past ferrolb's Master_Down_Interval (3.61 s).
    std::thread::sleep(Duration::from_secs(5));
    assert!(!f.log_text().contains(MASTER), "{}", f.log_text());
    let s = status(&l.a);
    assert!(s.contains("BACKUP, master 192.0.2.3"), "{s}");
    exactly_one_holder(&l.a, &l.b, false);

    let t0 = Instant::now();
    ka.stop();
    // keepalived sends priority 0 on stop (then Skew_Time 0.61 s); bound by
    // the full Master_Down_Interval + 1 s anyway.
    f.wait_log(MASTER, Duration::from_millis(4610));
    let took = t0.elapsed();
    eprintln!("ferrolb became MASTER {took:?} after SIGTERM to keepalived");
    assert!(!keepalived_holds_vip(&l.b));
    let s = status(&l.a);
    assert!(s.contains("MASTER (holding the VIPs)"), "{s}");
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    f.stop();
}

/// `config` for an IPv6 pair: VRRP over IPv6 (`family = "ipv6"`, adverts
/// from link-local addresses to ff02::12), VIP 2001:db8::100.
fn config6(l: &Lab, node: &str, addr: &str, priority: u8) -> String {
    let (id, workers) = (&l.id, l.workers);
    let dp = dataplane(&format!("fl{id}{node}"), &["eth0"], "200us");
    let c = format!(
        r#"
{dp}
[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["{addr}/64"]

[[vip]]
name = "web6"
address = "2001:db8::100"
protocol = "tcp"
port = 80
mode = "dr"
  [[vip.real]]
  address = "2001:db8::21"

[ha]
vrid = 52
priority = {priority}
advert_interval = "1s"
port_name = "lan"
family = "ipv6"
garp_interval = "2s"
garp_elapse = "10s"
"#
    );
    with_workers(&c, workers)
}

fn ipv6_vrrp_pair_fails_over_and_the_client_follows_the_unsolicited_na(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let mut a = Ferrolb::start(&l.a, &config6(&l, "a", "2001:db8::2", 150));
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &config6(&l, "b", "2001:db8::3", 100));
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log_text().contains(MASTER), "{}", b.log_text());
    let (mac_a, mac_b) = (l.a.mac("eth0"), l.b.mac("eth0"));
    // The master is named by its EUI-64 link-local address.
    let sb = status(&l.b);
    eprintln!("B: {}", sb.lines().next().unwrap_or(""));
    assert!(sb.contains("BACKUP, master fe80::"), "{sb}");
    let body = l.client.exec("curl -6 -s -m 3 http://[2001:db8::100]/");
    assert!(body.contains("real1 from 2001:db8::1"), "{body}");
    let n = l.client.exec("ip -6 neigh show 2001:db8::100");
    assert!(n.contains(&mac_a), "VIP entry {n:?} is not A's {mac_a}");

    let (_, _) = a.signal_and_wait("KILL", Duration::from_secs(5));
    // 3 x 1 s + skew (156/256 s) + 1 s.
    let took = time_to_log(&mut b, MASTER, Duration::from_millis(4610));
    eprintln!("B became MASTER {took:?} after kill -9 of A (IPv6 VRRP)");
    // The unsolicited NA (override) moves the client's existing entry.
    assert!(
        wait_for(Duration::from_secs(3), || l
            .client
            .try_exec("ip -6 neigh show 2001:db8::100")
            .1
            .contains(&mac_b)),
        "VIP entry {:?} is not B's {mac_b}",
        l.client.try_exec("ip -6 neigh show 2001:db8::100").1
    );
    let body = l.client.exec("curl -6 -s -m 3 http://[2001:db8::100]/");
    assert!(body.contains("real1 from 2001:db8::1"), "{body}");
    let m = l.b.exec("curl -s http://127.0.0.1:9080/metrics");
    assert!(
        m.contains("ferrolb_vrrp_state{vrid=\"52\",state=\"master\"} 1"),
        "{m}"
    );
    b.stop();
}

#[test]
fn unicast_peers_and_a_tracked_link_that_goes_down_gives_master_up() {
    let workers = 1;
    require_root();
    let _g = serial();
    let l = lab(workers);
    let extra =
        |peer: &str| format!("unicast_peers = [\"{peer}\"]\ntrack = [\"lan\"]\npreempt = true\n");
    let mut a = Ferrolb::start(
        &l.a,
        &(config(&l, "a", "192.0.2.2", 150) + &extra("192.0.2.3")),
    );
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(
        &l.b,
        &(config(&l, "b", "192.0.2.3", 100) + &extra("192.0.2.2")),
    );
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    // B hears A's unicast adverts and stays BACKUP.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log_text().contains(MASTER), "{}", b.log_text());
    let sb = status(&l.b);
    assert!(sb.contains("BACKUP, master 192.0.2.2"), "{sb}");
    // A's adverts reach B addressed to B, not to the multicast group.
    let cap =
        l.b.exec("timeout 4 tcpdump -c 2 -nn -i eth0 'ip proto 112' 2>/dev/null || true");
    eprintln!("B sees VRRP: {cap:?}");
    assert!(cap.contains("192.0.2.2 > 192.0.2.3: VRRP"), "{cap}");
    assert!(!cap.contains("224.0.0.18"), "{cap}");

    // The client has A's MAC for the VIP: the announcements must move it.
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    let mac_a = l.a.mac("eth0");
    assert!(client_vip_mac_is(&l, &mac_a, Duration::from_secs(1)));

    // Cut A's data link at the switch: A enters FAULT and releases the
    // VIP; B takes over after its Master_Down_Interval.
    let a_port = format!("s{}p2", l.id);
    let t0 = Instant::now();
    l._sw.ns.exec(&format!("ip link set {a_port} down"));
    a.wait_log(BACKUP, Duration::from_secs(2));
    b.wait_log(MASTER, Duration::from_millis(4610));
    eprintln!("link cut: B became MASTER {:?} later", t0.elapsed());
    let sa = status(&l.a);
    assert!(sa.contains("FAULT"), "{sa}");
    let mac_b = l.b.mac("eth0");
    assert!(
        client_vip_mac_is(&l, &mac_b, Duration::from_secs(3)),
        "VIP entry {:?} is not B's {mac_b}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");

    // The link comes back: A goes BACKUP, then (preempt) takes over again.
    let t0 = Instant::now();
    l._sw.ns.exec(&format!("ip link set {a_port} up"));
    a.wait_log_count(MASTER, 2, Duration::from_secs(8));
    eprintln!("link back: A MASTER again {:?} later", t0.elapsed());
    assert!(client_vip_mac_is(&l, &mac_a, Duration::from_secs(3)));
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("real1 from 192.0.2.1"), "{body}");
    for f in [&mut a, &mut b] {
        f.stop();
    }
}

// ------------------------------------------------------------------
// Long-lived connections across a failover (issue 6, item 5).

/// One TCP connection kept alive across a failover: opens `conns`
/// connections one after the other (each pinned by a first request, so a
/// round-robin scheduler puts them on successive reals), then sends `n`
/// requests on the last one, 100 ms apart, never reconnecting. Lines:
/// `pin I LOCALPORT BODY`, then `END_TIME ok LOCALPORT REALNAME` or
/// `START_TIME fail ERROR` (the connection is broken: stop), then `done`.
const LONG_LIVED: &str = r#"
import socket, sys, time
host, port, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def req(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError("closed")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:20])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        d = s.recv(4096)
        if not d:
            raise EOFError("closed")
        body += d
    return body[:length].decode().strip()
socks = []
for i in range(conns):
    s = socket.create_connection((host, port), timeout=3)
    print("pin", i, s.getsockname()[1], req(s), flush=True)
    socks.append(s)
s = socks[-1]
s.settimeout(20)
for i in range(n):
    t = time.time()
    try:
        body = req(s)
        print("%.3f ok %d %s" % (time.time(), s.getsockname()[1], body.split()[0]), flush=True)
    except Exception as e:
        print("%.3f fail %s" % (t, type(e).__name__), flush=True)
        break
    time.sleep(0.1)
print("done", flush=True)
"#;

/// What the long-lived client saw.
#[derive(Debug)]
struct LongLived {
    ok: u32,
    failed: u32,
    /// Longest time between two answers, s.
    gap: f64,
    /// Every answer came on one local port, from one real.
    one_connection: bool,
    reals: Vec<String>,
    pins: Vec<String>,
}

/// Starts [`LONG_LIVED`] in `ns` against `host:port`.
fn start_long_lived(
    ns: &Netns,
    host: &str,
    port: u16,
    n: u32,
    conns: u32,
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let id = uid();
    let script = std::env::temp_dir().join(format!("ferrolb-ll-{id}.py"));
    let out = std::env::temp_dir().join(format!("ferrolb-ll-{id}.out"));
    std::fs::write(&script, LONG_LIVED).expect("script");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3"])
        .arg(&script)
        .args([host, &port.to_string(), &n.to_string(), &conns.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    (child, script, out)
}

/// Waits until the client has answers (bounded).
fn long_lived_running(out: &std::path::Path, answers: usize) -> bool {
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" ok "))
            .count()
            >= answers
    })
}

/// Waits (bounded) for the client to end; parses what it saw.
fn finish_long_lived(
    mut child: std::process::Child,
    script: &std::path::Path,
    out: &std::path::Path,
) -> LongLived {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(script);
    let mut r = LongLived {
        ok: 0,
        failed: 0,
        gap: 0.0,
        one_connection: true,
        reals: Vec::new(),
        pins: Vec::new(),
    };
    let (mut last, mut port) = (None::<f64>, None::<String>);
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["pin", _, _, rest @ ..] => r.pins.push(rest.join(" ")),
            [t, "ok", p, real] => {
                r.ok += 1;
                let t: f64 = t.parse().unwrap_or(0.0);
                if let Some(l) = last {
                    r.gap = r.gap.max(t - l);
                }
                last = Some(t);
                if port.get_or_insert_with(|| p.to_string()) != p {
                    r.one_connection = false;
                }
                if !r.reals.iter().any(|x| x == real) {
                    r.reals.push(real.to_string());
                }
            }
            [_, "fail", ..] => r.failed += 1,
            _ => {}
        }
    }
    if r.reals.len() > 1 {
        r.one_connection = false;
    }
    r
}

fn a_long_lived_dr_connection_survives_kill_9_of_the_master_without_sync(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let (mut a, mut b, _mac_a, mac_b) = pair(&l);
    assert!(status_json(&l.a)["sync"].is_null(), "no sync configured");

    let (child, script, out) = start_long_lived(&l.client, "192.0.2.100", 80, 100, 1);
    assert!(long_lived_running(&out, 10), "the client got no answers");
    let _ = a.signal_and_wait("KILL", Duration::from_secs(5));
    let took = time_to_log(&mut b, MASTER, Duration::from_millis(4610));
    eprintln!("B became MASTER {took:?} after kill -9 of A");
    let r = finish_long_lived(child, &script, &out);
    eprintln!(
        "DR long-lived connection across kill -9: {} ok, {} failed, longest gap {:.2} s, one connection: {}, reals {:?}",
        r.ok, r.failed, r.gap, r.one_connection, r.reals
    );
    assert_eq!(r.failed, 0, "the connection broke: {r:?}");
    assert_eq!(r.ok, 100, "{r:?}");
    assert!(r.one_connection, "{r:?}");
    assert_eq!(r.reals, vec!["real1".to_string()]);
    assert!(r.gap > 1.0 && r.gap < 15.0, "gap {:.2} s", r.gap);
    assert!(client_vip_mac_is(&l, &mac_b, Duration::from_secs(1)));
    // B picked the flow up mid-stream (no sync: a new flow from a segment
    // without SYN) and sent it to the same real by Maglev.
    let sb = status_json(&l.b);
    assert_eq!(sb["vips"][0]["new_flows"], 1, "{sb}");
    b.stop();
}

/// Two-arm NAT pair:
///
/// ```text
///  client 198.51.100.10 ─ [wan switch] ─ A wan 198.51.100.2 / B wan 198.51.100.3
///                                        A lan 192.0.2.2    / B lan 192.0.2.3 ─ [lan switch] ─ real1 192.0.2.21, real2 192.0.2.22
///  VIP 198.51.100.100:80 (nat, rr) -> reals :8080; the reals' default gateway is
///  the floating 192.0.2.1; VRRP (vrid 52) and the sync run on lan.
/// ```
struct NatLab {
    _wan: Switch,
    _lan: Switch,
    client: Netns,
    a: Netns,
    b: Netns,
    _reals: Vec<Netns>,
    _nginx: Vec<Nginx>,
    id: String,
    workers: u16,
}

fn nat_lab(workers: u16) -> NatLab {
    let id = uid();
    let mut wan = Switch::new(&format!("{id}w"));
    let mut lan = Switch::new(&format!("{id}l"));
    let client = Netns::new(&format!("flc{id}"));
    let a = Netns::new(&format!("fla{id}"));
    let b = Netns::new(&format!("flb{id}"));
    wan.plug(&client, "eth0");
    for n in [&a, &b] {
        wan.plug(n, "wan0");
        lan.plug(n, "lan0");
    }
    client.exec("ip addr add 198.51.100.10/24 dev eth0");
    // No ARP tuning on the client: the new MASTER announces the VIP on
    // the wan port, where the VIP lives, and the client's existing entry
    // follows that gratuitous ARP.
    let mut reals = Vec::new();
    let mut nginx = Vec::new();
    for i in 1..=2 {
        let r = Netns::new(&format!("flr{i}{id}"));
        lan.plug(&r, "eth0");
        r.exec(&format!(
            "ip addr add 192.0.2.2{i}/24 dev eth0 && ip route add default via 192.0.2.1"
        ));
        nginx.push(Nginx::start(&r, &format!("real{i}"), 8080));
        reals.push(r);
    }
    NatLab {
        _wan: wan,
        _lan: lan,
        client,
        a,
        b,
        _reals: reals,
        _nginx: nginx,
        id,
        workers,
    }
}

fn nat_config(l: &NatLab, node: &str, me: u8, peer: u8, priority: u8, sync: bool) -> String {
    let (id, workers) = (&l.id, l.workers);
    let sync = if sync {
        format!("sync_peer = \"192.0.2.{peer}\"\n")
    } else {
        String::new()
    };
    let dp = dataplane(&format!("fl{id}{node}"), &["wan0", "lan0"], "200us");
    let c = format!(
        r#"
{dp}
[[port]]
name = "wan"
device = "net_af_packet0"
addresses = ["198.51.100.{me}/24"]

[[port]]
name = "lan"
device = "net_af_packet1"
addresses = ["192.0.2.{me}/24"]

[[vip]]
name = "web"
address = "198.51.100.100"
protocol = "tcp"
port = 80
mode = "nat"
scheduler = "rr"
port_name = "wan"
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080

[ha]
vrid = 52
priority = {priority}
advert_interval = "1s"
port_name = "lan"
floating = ["192.0.2.1"]
garp_interval = "2s"
garp_elapse = "10s"
{sync}"#
    );
    with_workers(&c, workers)
}

/// A NAT pair, A MASTER, B BACKUP; a long-lived connection (the second
/// of two, so round robin puts it on real2) runs across kill -9 of A.
fn nat_failover(workers: u16, sync: bool) -> (LongLived, serde_json::Value, serde_json::Value) {
    let l = nat_lab(workers);
    let mut a = Ferrolb::start(&l.a, &nat_config(&l, "a", 2, 3, 150, sync));
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &nat_config(&l, "b", 3, 2, 100, sync));
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    assert!(!b.log_text().contains(MASTER), "{}", b.log_text());

    let (child, script, out) = start_long_lived(&l.client, "198.51.100.100", 80, 100, 2);
    assert!(long_lived_running(&out, 10), "the client got no answers");
    // Past one flush period: the sync of the established flows has left.
    std::thread::sleep(Duration::from_millis(300));
    let sa = status_json(&l.a);
    let sb = status_json(&l.b);
    let _ = a.signal_and_wait("KILL", Duration::from_secs(5));
    let took = time_to_log(&mut b, MASTER, Duration::from_millis(4610));
    eprintln!("B became MASTER {took:?} after kill -9 of A (sync {sync})");
    let r = finish_long_lived(child, &script, &out);
    eprintln!(
        "NAT long-lived connection across kill -9, sync {}: {} ok, {} failed, longest gap {:.2} s, one connection: {}, pinned {:?}, answered by {:?}",
        if sync { "on" } else { "off" }, r.ok, r.failed, r.gap, r.one_connection, r.pins, r.reals
    );
    let after = status_json(&l.b);
    eprintln!("A before the kill: sync {}", sa["sync"]);
    eprintln!("B before the kill: sync {}", sb["sync"]);
    eprintln!(
        "B after the takeover: sync {}, drops {}",
        after["sync"], after["drops"]
    );
    b.stop();
    (r, sa, sb)
}

fn a_long_lived_nat_connection_survives_kill_9_of_the_master_with_sync(workers: u16) {
    require_root();
    let _g = serial();
    let (r, sa, sb) = nat_failover(workers, true);
    assert_eq!(r.pins.len(), 2);
    assert!(r.pins[1].starts_with("real2"), "{r:?}");
    assert_eq!(r.failed, 0, "the connection broke: {r:?}");
    assert_eq!(r.ok, 100, "{r:?}");
    assert!(r.one_connection, "{r:?}");
    assert_eq!(r.reals, vec!["real2".to_string()], "{r:?}");
    assert!(r.gap < 15.0, "gap {:.2} s", r.gap);
    // A sent both flows (add + established update each) in batches; B
    // applied every record and refused none.
    let (ya, yb) = (&sa["sync"], &sb["sync"]);
    assert_eq!(ya["sending"], true);
    assert_eq!(yb["sending"], false);
    let sent = ya["records_sent"].as_u64().unwrap();
    assert!(sent >= 4, "{ya}");
    assert!(ya["batches_sent"].as_u64().unwrap() >= 1, "{ya}");
    assert_eq!(ya["records_lost"], 0, "{ya}");
    assert_eq!(yb["records_received"].as_u64(), Some(sent), "{yb}");
    assert_eq!(yb["records_applied"].as_u64(), Some(sent), "{yb}");
    assert_eq!(yb["records_rejected"], 0, "{yb}");
    assert_eq!(yb["records_unknown_service"], 0, "{yb}");
    assert_eq!(yb["batches_missed"], 0, "{yb}");
    assert_eq!(sb["flows"], 2, "both flows installed on the BACKUP: {sb}");
    // Both nodes heard the other's service set (hellos from the BACKUP,
    // batches and hellos from the MASTER): the same.
    for (me, other) in [(&sa, &sb), (&sb, &sa)] {
        let y = &me["sync"];
        assert_eq!(y["peer_config"], "same", "{y}");
        assert_eq!(y["peer_fingerprint"], other["fingerprint"], "{y}");
        assert_eq!(y["config_differs"], 0, "{y}");
        assert!(y["datagrams_received"].as_u64().unwrap() >= 2, "{y}");
    }
}

/// B's copy of the service set lacks a real: both nodes log, count and
/// show the difference from the sync traffic (hellos and batches), and
/// both see it cleared once B reloads the same set as A.
#[test]
fn a_pair_whose_service_sets_differ_says_so_until_a_reload_makes_them_equal() {
    require_root();
    let _g = serial();
    let l = nat_lab(1);
    let full = nat_config(&l, "b", 3, 2, 100, true);
    let short = full.replacen(
        "  [[vip.real]]\n  address = \"192.0.2.22\"\n  port = 8080\n",
        "",
        1,
    );
    assert_ne!(short, full);
    let mut a = Ferrolb::start(&l.a, &nat_config(&l, "a", 2, 3, 150, true));
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &short);
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    let differs = "the HA peer's service set differs from ours";
    let t0 = Instant::now();
    a.wait_log(differs, Duration::from_secs(10));
    b.wait_log(differs, Duration::from_secs(10));
    eprintln!(
        "both nodes logged the difference {:?} after B started",
        t0.elapsed()
    );
    let (sa, sb) = (status_json(&l.a), status_json(&l.b));
    assert_ne!(sa["fingerprint"], sb["fingerprint"]);
    for (me, other) in [(&sa, &sb), (&sb, &sa)] {
        let y = &me["sync"];
        assert_eq!(y["peer_config"], "differs", "{y}");
        assert_eq!(y["peer_fingerprint"], other["fingerprint"], "{y}");
        assert!(y["config_differs"].as_u64().unwrap() >= 1, "{y}");
    }
    let table = status(&l.b);
    let want = format!(
        "config: differs from peer 192.0.2.2 (ours {}, the peer's {})",
        sb["fingerprint"].as_str().unwrap(),
        sa["fingerprint"].as_str().unwrap()
    );
    assert!(table.contains(&want), "{table}");
    let metrics =
        l.a.exec("curl -s --max-time 5 http://127.0.0.1:9080/metrics");
    assert!(
        metrics.contains("ferrolb_peer_config_differs 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferrolb_sync_config_differs_total{worker=\"0\"} "),
        "{metrics}"
    );

    // B reloads the full set: both sides see the same set again.
    std::fs::write(&b.config, &full).unwrap();
    b.signal("HUP");
    let same = "the HA peer's service set is the same as ours";
    b.wait_log(same, Duration::from_secs(10));
    a.wait_log(same, Duration::from_secs(10));
    let (sa, sb) = (status_json(&l.a), status_json(&l.b));
    assert_eq!(sa["fingerprint"], sb["fingerprint"]);
    assert_eq!(sa["sync"]["peer_config"], "same", "{sa}");
    assert_eq!(sb["sync"]["peer_config"], "same", "{sb}");
    let metrics =
        l.a.exec("curl -s --max-time 5 http://127.0.0.1:9080/metrics");
    assert!(
        metrics.contains("ferrolb_peer_config_differs 0"),
        "{metrics}"
    );

    // B stops: A no longer hears it, and says its set is unknown.
    b.stop();
    a.wait_log("no word from the HA peer", Duration::from_secs(10));
    assert_eq!(status_json(&l.a)["sync"]["peer_config"], "unknown");
    a.stop();
}

fn without_sync_the_same_nat_connection_breaks(workers: u16) {
    require_root();
    let _g = serial();
    let (r, sa, _) = nat_failover(workers, false);
    assert!(sa["sync"].is_null());
    assert!(r.pins[1].starts_with("real2"), "{r:?}");
    // B schedules the mid-stream segment as a new flow: round robin on a
    // fresh node picks real1, which knows no such connection (RST).
    assert_eq!(r.failed, 1, "the connection should have broken: {r:?}");
    assert!(r.ok < 100, "{r:?}");
}

/// The NAT pair with connection sync under wrk (10 keep-alive
/// connections) and a loop of new connections (one every 100 ms), and
/// `kill -9` of the MASTER: wrk's connections all survive (synced to the
/// BACKUP; they wait out the takeover), and new connections fail only
/// between the kill and the takeover (plus one request's timeout).
#[test]
fn kill_9_of_the_nat_master_under_wrk_with_sync_fails_only_new_connections_until_the_takeover() {
    require_root();
    let _g = serial();
    let l = nat_lab(1);
    let mut a = Ferrolb::start(&l.a, &nat_config(&l, "a", 2, 3, 150, true));
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &nat_config(&l, "b", 3, 2, 100, true));
    b.wait_log("VRRP started: BACKUP", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let dir = Scratch::new("hawrk");
    let report = dir.0.join("wrk.txt");
    let wrk = Command::new("ip")
        .args(["netns", "exec", &l.client.name])
        .args([
            "wrk",
            "-t1",
            "-c10",
            "-d16s",
            "--timeout",
            "8s",
            "--latency",
        ])
        .arg("http://198.51.100.100/")
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk (package wrk)");
    let mut wrk = Proc::from_child(wrk);
    let loop_out = dir.0.join("loop.txt");
    let script = format!(
        "for i in $(seq 1 140); do t=$(date +%s.%N); \
         if curl -s -o /dev/null --connect-timeout 0.5 -m 1 http://198.51.100.100/; \
         then echo \"$t ok\"; else echo \"$t fail\"; fi; sleep 0.1; done > {}",
        loop_out.display()
    );
    let curls = Command::new("ip")
        .args(["netns", "exec", &l.client.name, "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("client loop");
    let curls = Proc::from_child(curls);
    std::thread::sleep(Duration::from_secs(4));
    let on_a = status_json(&l.a)["flows"].as_u64().unwrap_or(0);
    let synced_to_b = status_json(&l.b)["flows"].as_u64().unwrap_or(0);
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let _ = a.signal_and_wait("KILL", Duration::from_secs(5));
    let took = time_to_log(&mut b, MASTER, Duration::from_millis(4610));
    assert!(
        wait_for(Duration::from_secs(20), || wrk
            .get()
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "wrk did not finish"
    );
    let _ = curls.take().wait();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let lines = std::fs::read_to_string(&loop_out).unwrap_or_default();
    let fails: Vec<f64> = lines
        .lines()
        .filter(|x| x.ends_with(" fail"))
        .filter_map(|x| x.split_whitespace().next()?.parse().ok())
        .collect();
    let oks = lines.lines().filter(|x| x.ends_with(" ok")).count();
    let window = fails.iter().map(|t| t - killed_at).fold(0.0f64, f64::max);
    eprintln!(
        "A held {on_a} flow(s), B had {synced_to_b} synced; B MASTER {took:?} after kill -9 of A; \
         new connections: {oks} ok, {} failed, the last failure began {window:.2} s after the kill\n{text}",
        fails.len()
    );
    let run = WrkRun::parse(text.clone());
    let (requests, errors) = (run.requests, run.errors);
    assert!(requests > 1_000, "{text}");
    assert_eq!(errors, 0, "wrk's connections broke:\n{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(synced_to_b >= 10, "wrk's flows synced to B: {synced_to_b}");
    // New connections: failures start after the kill and stop within the
    // takeover plus one request's timeout (1 s) and the loop's period.
    assert!(fails.iter().all(|t| *t >= killed_at - 1.2), "{lines}");
    assert!(
        window <= took.as_secs_f64() + 1.2,
        "failures {window:.2} s after the kill, takeover {took:?}\n{lines}"
    );
    assert!(oks >= 80, "{lines}");
    b.stop();
}
