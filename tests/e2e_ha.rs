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
}

fn lab() -> Lab {
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
    }
}

fn config(id: &str, node: &str, addr: &str, priority: u8) -> String {
    format!(
        r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fl{id}{node}",
            "--vdev=net_af_packet0,iface=eth0"]
workers = 1
idle_sleep = "200us"

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
    )
}

const MASTER: &str = "VRRP transition to MASTER";

/// Starts A (150) and waits until it is MASTER, then B (100) as BACKUP;
/// checks the client reaches the VIP through A.
fn pair(l: &Lab) -> (Ferrolb, Ferrolb, String, String) {
    pair_with(l, "")
}

/// `pair` with `a_extra` appended to A's `[ha]` section (e.g. `preempt`).
fn pair_with(l: &Lab, a_extra: &str) -> (Ferrolb, Ferrolb, String, String) {
    let cfg_a = config(&l.id, "a", "192.0.2.2", 150) + a_extra;
    let mut a = Ferrolb::start(&l.a, &cfg_a);
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &config(&l.id, "b", "192.0.2.3", 100));
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

#[test]
fn kill_9_of_the_master_fails_over_to_the_backup() {
    require_root();
    let _g = serial();
    let l = lab();
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
    let (st, _) = b.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", b.log_text());
}

#[test]
fn sigterm_of_the_master_hands_over_within_one_interval() {
    require_root();
    let _g = serial();
    let l = lab();
    let (mut a, mut b, _mac_a, mac_b) = pair(&l);

    let (child, out) = start_client_loop(&l, 60);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    run(&format!("kill -TERM {}", a.pid()));
    b.wait_log(MASTER, Duration::from_millis(1500));
    let took = t0.elapsed();
    eprintln!("B became MASTER {took:?} after SIGTERM to A");
    let (st, _) = a.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", a.log_text());
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
    let (st, _) = b.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", b.log_text());
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
    let (st, _) = a.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", a.log_text());
    assert!(
        client_vip_mac_is(l, mac_b, Duration::from_secs(3)),
        "VIP entry {:?} is not B's {mac_b}",
        l.client.try_exec("ip neigh show 192.0.2.100").1
    );
}

#[test]
fn preempt_true_the_higher_priority_takes_the_vip_back() {
    require_root();
    let _g = serial();
    let l = lab();
    let (mut a, mut b, mac_a, mac_b) = pair_with(&l, "preempt = true\n");
    stop_a(&l, &mut a, &mut b, &mac_b);
    drop(a);

    let cfg_a = config(&l.id, "a", "192.0.2.2", 150) + "preempt = true\n";
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
        let (st, _) = f.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(st.success(), "{}", f.log_text());
    }
}

#[test]
fn preempt_false_the_returning_node_stays_backup() {
    require_root();
    let _g = serial();
    let l = lab();
    let (mut a, mut b, _mac_a, mac_b) = pair_with(&l, "preempt = false\n");
    stop_a(&l, &mut a, &mut b, &mac_b);
    drop(a);

    let cfg_a = config(&l.id, "a", "192.0.2.2", 150) + "preempt = false\n";
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
        let (st, _) = f.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(st.success(), "{}", f.log_text());
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

#[test]
fn keepalived_interop_ferrolb_master_keepalived_takes_over_on_kill_9() {
    require_root();
    let _g = serial();
    let l = lab();
    let mut f = Ferrolb::start(&l.a, &config(&l.id, "a", "192.0.2.2", 150));
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
    require_root();
    let _g = serial();
    let l = lab();
    l.b.exec("ip addr add 192.0.2.3/24 dev eth0");
    let mut ka = Keepalived::start(&l.b, 150);
    ka.wait_log("Entering MASTER STATE", Duration::from_secs(10));
    assert!(
        wait_for(Duration::from_secs(3), || keepalived_holds_vip(&l.b)),
        "{}",
        ka.log_text()
    );
    let mut f = Ferrolb::start(&l.a, &config(&l.id, "a", "192.0.2.2", 100));
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
    let (st, _) = f.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", f.log_text());
}

/// `config` for an IPv6 pair: VRRP over IPv6 (`family = "ipv6"`, adverts
/// from link-local addresses to ff02::12), VIP 2001:db8::100.
fn config6(id: &str, node: &str, addr: &str, priority: u8) -> String {
    format!(
        r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fl{id}{node}",
            "--vdev=net_af_packet0,iface=eth0"]
workers = 1
idle_sleep = "200us"

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
    )
}

#[test]
fn ipv6_vrrp_pair_fails_over_and_the_client_follows_the_unsolicited_na() {
    require_root();
    let _g = serial();
    let l = lab();
    let mut a = Ferrolb::start(&l.a, &config6(&l.id, "a", "2001:db8::2", 150));
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(&l.b, &config6(&l.id, "b", "2001:db8::3", 100));
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
    let (st, _) = b.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", b.log_text());
}

#[test]
fn unicast_peers_and_a_tracked_link_that_goes_down_gives_master_up() {
    require_root();
    let _g = serial();
    let l = lab();
    let extra =
        |peer: &str| format!("unicast_peers = [\"{peer}\"]\ntrack = [\"lan\"]\npreempt = true\n");
    let mut a = Ferrolb::start(
        &l.a,
        &(config(&l.id, "a", "192.0.2.2", 150) + &extra("192.0.2.3")),
    );
    a.wait_log("ferrolb running", Duration::from_secs(30));
    a.wait_log(MASTER, Duration::from_secs(6));
    let mut b = Ferrolb::start(
        &l.b,
        &(config(&l.id, "b", "192.0.2.3", 100) + &extra("192.0.2.2")),
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
        let (st, _) = f.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(st.success(), "{}", f.log_text());
    }
}
