//! `[announce]` end to end: the host routes ferrolb keeps in a kernel
//! routing table (what a BGP daemon on the node exports), against its
//! real states, `ferrolb node drain` / `enable`, a stop and a crash.
//!
//! ```text
//!            [ns switch: br0]
//!   client 192.0.2.1 | ferrolb 192.0.2.2 (VIP 192.0.2.100, DR, table 250)
//!   real 192.0.2.21 (nginx, VIP on lo), checked by TCP every 200 ms
//! ```

mod common;

use std::time::{Duration, Instant};

use common::*;

struct Lab {
    p: Option<Ferrolb>,
    _nginx: Nginx,
    client: Netns,
    lb: Netns,
    real: Netns,
    _sw: Switch,
    id: String,
}

fn lab() -> Lab {
    let id = uid();
    let mut sw = Switch::new(&id);
    let client = Netns::new(&format!("flc{id}"));
    let lb = Netns::new(&format!("flb{id}"));
    let real = Netns::new(&format!("flr{id}"));
    sw.plug(&client, "eth0");
    sw.plug(&lb, "eth0");
    sw.plug(&real, "eth0");
    client.exec("ip addr add 192.0.2.1/24 dev eth0");
    real.exec("ip addr add 192.0.2.21/24 dev eth0");
    dr_real(&real, "eth0", &["192.0.2.100"]);
    let nginx = Nginx::start(&real, "real1", 80);
    Lab {
        p: None,
        _nginx: nginx,
        client,
        lb,
        real,
        _sw: sw,
        id,
    }
}

/// Table 250 of the balancer's namespace, as `ip route` shows it.
fn table(l: &Lab) -> String {
    l.lb.exec("ip route show table 250")
}

/// Waits (at most `limit`) until the VIP's route is there (`want`) or not.
fn route_is(l: &Lab, want: bool, limit: Duration) -> bool {
    wait_for(limit, || {
        let t = table(l);
        t.contains("192.0.2.100 dev fl-lan proto 251") == want
    })
}

fn announced(l: &Lab) -> serde_json::Value {
    status_json(&l.lb)["announce"].clone()
}

#[test]
fn vips_are_announced_while_they_can_take_new_flows() {
    require_root();
    let _g = serial();
    let mut l = lab();
    // What a crashed run left behind (ferrolb's protocol number), and a
    // route of someone else's in the same table.
    l.lb.exec("ip link set lo up && ip route add 203.0.113.77/32 dev lo table 250 proto 251");
    l.lb.exec("ip route add 203.0.113.78/32 dev lo table 250 proto static");
    let mut p = Ferrolb::start(&l.lb, &announce_lab_node(&l.id));
    p.wait_log("ferrolb running", Duration::from_secs(30));
    p.wait_log(
        "removed routes a previous run left behind",
        Duration::from_secs(1),
    );

    // The real passes its first check: the VIP is announced.
    assert!(
        route_is(&l, true, Duration::from_secs(5)),
        "{}\n{}",
        table(&l),
        p.log_text()
    );
    let t = table(&l);
    assert!(!t.contains("203.0.113.77"), "a leftover stayed: {t}");
    assert!(t.contains("203.0.113.78"), "someone else's route went: {t}");
    let a = announced(&l);
    assert_eq!(a["table"], 250, "{a}");
    assert_eq!(a["announced"], serde_json::json!(["192.0.2.100"]), "{a}");
    let s = status_json(&l.lb);
    assert_eq!(s["vips"][0]["announced"], true, "{s}");
    let metrics = l.lb.exec("curl -s http://127.0.0.1:9080/metrics");
    assert!(
        metrics.contains(
            "ferrolb_vip_announced{vip=\"web\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\"} 1"
        ),
        "{metrics}"
    );
    let st = l.lb.exec(&format!("{} status", ferrolb_bin()));
    assert!(st.contains("announce (table 250): 192.0.2.100"), "{st}");
    p.wait_log("announce: VIP announced", Duration::from_secs(1));

    // Drained: withdrawn, and traffic that still arrives is served.
    let out = l.lb.exec(&format!("{} node drain", ferrolb_bin()));
    assert!(out.contains("node drained"), "{out}");
    assert!(route_is(&l, false, Duration::from_secs(2)), "{}", table(&l));
    assert_eq!(announced(&l)["drained"], true);
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(
        body.contains("real1"),
        "a drained node still forwards: {body:?}"
    );
    let st = l.lb.exec(&format!("{} status", ferrolb_bin()));
    assert!(
        st.contains("announce (table 250): nothing (node drained)"),
        "{st}"
    );
    l.lb.exec(&format!("{} node enable", ferrolb_bin()));
    assert!(route_is(&l, true, Duration::from_secs(2)), "{}", table(&l));

    // The only real fails its checks: withdrawn; back when it recovers.
    l.real.exec("ip addr del 192.0.2.21/24 dev eth0");
    assert!(route_is(&l, false, Duration::from_secs(5)), "{}", table(&l));
    let m = l.lb.exec("curl -s http://127.0.0.1:9080/metrics");
    assert!(m.contains("ferrolb_vip_announced{vip=\"web\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\"} 0"), "{m}");
    l.real.exec("ip addr add 192.0.2.21/24 dev eth0");
    assert!(route_is(&l, true, Duration::from_secs(5)), "{}", table(&l));

    // SIGTERM: withdrawn at once, forwarding for the drain time, then gone.
    let at = Instant::now();
    p.signal("TERM");
    assert!(
        route_is(&l, false, Duration::from_millis(1500)),
        "{}",
        table(&l)
    );
    assert!(p.running(), "stopped before the drain time");
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(
        body.contains("real1"),
        "forwarding during the drain time: {body:?}"
    );
    p.stop();
    assert!(
        at.elapsed() >= Duration::from_secs(2),
        "left before the drain time"
    );
    assert!(
        p.log_text().contains("every VIP withdrawn"),
        "{}",
        p.log_text()
    );

    // kill -9: the route goes with the TAP it points through (the kernel
    // removes it), so a crashed node is withdrawn at once; the next start
    // announces again.
    let mut p = Ferrolb::start(&l.lb, &announce_lab_node(&l.id));
    p.wait_log("ferrolb running", Duration::from_secs(30));
    assert!(route_is(&l, true, Duration::from_secs(5)), "{}", table(&l));
    p.kill9();
    assert!(route_is(&l, false, Duration::from_secs(2)), "{}", table(&l));
    let mut p = Ferrolb::start(&l.lb, &announce_lab_node(&l.id));
    p.wait_log("ferrolb running", Duration::from_secs(30));
    assert!(route_is(&l, true, Duration::from_secs(5)), "{}", table(&l));
    l.p = Some(p);
}

#[test]
fn announce_errors_name_the_key() {
    let dir = Scratch::new("announce");
    let base = r#"
[dataplane]
eal_args = ["--no-huge"]

[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]
"#;
    let web = "\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.100\"\nport = 80\n  [[vip.real]]\n  address = \"192.0.2.21\"\n";
    for (text, want) in [
        (
            format!("{base}{web}\n[announce]\ntable = 254\n"),
            "announce.table: 254 is a table the kernel keeps",
        ),
        (
            format!("{base}{web}\n[announce]\ntable = 0\n"),
            "announce.table: 0 is a table the kernel keeps",
        ),
        (
            format!("{base}\n[announce]\ntable = 250\n"),
            "announce: there is no [[vip]] to announce",
        ),
    ] {
        let f = dir.file("a.toml", &text);
        let out = std::process::Command::new(ferrolb_bin())
            .args(["check", "--config"])
            .arg(&f)
            .output()
            .expect("ferrolb check");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(want), "{err}");
    }
}
