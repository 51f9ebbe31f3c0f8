//! An active/backup pair by VRRPv3 end to end: two ferrolb nodes, a client
//! and a direct-routing nginx real on one bridge.
//!
//! ```text
//!            [ns switch: br0]
//!   client 192.0.2.1 | lb A 192.0.2.2 (priority 150) | lb B 192.0.2.3 (100)
//!   VIP 192.0.2.100 (vrid 51, advert 1 s), real 192.0.2.21 (VIP on lo)
//! ```

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
    client.exec("ip addr add 192.0.2.1/24 dev eth0");
    real.exec("ip addr add 192.0.2.21/24 dev eth0");
    dr_real(&real, "eth0", &["192.0.2.100"]);
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
    let mut a = Ferrolb::start(&l.a, &config(&l.id, "a", "192.0.2.2", 150));
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
