//! Direct routing end to end, as an operator tests an appliance: one arm,
//! a client, ferrolb and three nginx real servers on one bridge.
//!
//! ```text
//!            [ns switch: br0]
//!   client 192.0.2.1 | ferrolb 192.0.2.2 (VIP 192.0.2.100, 2001:db8::100)
//!   reals 192.0.2.21-23 (VIPs on lo, arp_ignore=1, arp_announce=2)
//! ```

mod common;

on_one_and_two_workers!(
    dr_spreads_requests_answers_arp_alone_follows_weights_and_reports_status,
    persistence_keeps_a_slash_24_on_one_real,
    a_long_lived_connection_survives_200_others,
    tun_sends_ipip_with_the_right_outer_addresses,
    health_checks_take_a_dead_real_out_and_bring_it_back,
    drain_keeps_established_connections_and_steers_new_ones_away,
    reload_adds_and_removes_reals_without_breaking_established_connections,
    metrics_parse_as_prometheus_text_and_the_api_wants_its_token,
);

use std::time::Duration;

use common::*;

struct Lab {
    _sw: Switch,
    client: Netns,
    lb: Netns,
    reals: Vec<Netns>,
    nginx: Vec<Nginx>,
    id: String,
    port_mac: String,
    workers: u16,
}

fn lab(workers: u16) -> Lab {
    lab_with(workers, true)
}

/// The lab; `prepared`: the reals hold the VIPs (else they are plain hosts,
/// as `ferrolb real-setup` finds them).
fn lab_with(workers: u16, prepared: bool) -> Lab {
    let id = uid();
    let mut sw = Switch::new(&id);
    let client = Netns::new(&format!("flc{id}"));
    let lb = Netns::new(&format!("flb{id}"));
    sw.plug(&client, "eth0");
    sw.plug(&lb, "eth0");
    client.exec("ip addr add 192.0.2.1/24 dev eth0 && ip addr add 2001:db8::1/64 dev eth0 nodad");
    let mut reals = Vec::new();
    let mut nginx = Vec::new();
    for i in 1..=3 {
        let r = Netns::new(&format!("flr{i}{id}"));
        sw.plug(&r, "eth0");
        r.exec(&format!(
            "ip addr add 192.0.2.2{i}/24 dev eth0 && ip addr add 2001:db8::2{i}/64 dev eth0 nodad"
        ));
        if prepared {
            dr_real(&r, "eth0", &["192.0.2.100", "2001:db8::100"]);
        }
        nginx.push(Nginx::start(&r, &format!("real{i}"), 80));
        reals.push(r);
    }
    let port_mac = lb.mac("eth0");
    Lab {
        _sw: sw,
        client,
        lb,
        reals,
        nginx,
        id,
        port_mac,
        workers,
    }
}

fn config(l: &Lab, weights: [u32; 3], persistence: bool) -> String {
    let id = &l.id;
    let reals: String = (1..=3)
        .map(|i| {
            format!(
                "  [[vip.real]]\n  address = \"192.0.2.2{i}\"\n  weight = {}\n",
                weights[i - 1]
            )
        })
        .collect();
    let pers = if persistence {
        "  [vip.persistence]\n  timeout = \"300s\"\n  netmask = 24\n"
    } else {
        ""
    };
    let dp = dataplane(&format!("fl{id}"), &["eth0"], "100us");
    let c = format!(
        r#"
{dp}
[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24", "2001:db8::2/64"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
scheduler = "maglev"
{pers}{reals}
[[vip]]
name = "web6"
address = "2001:db8::100"
port = 80
mode = "dr"
  [[vip.real]]
  address = "2001:db8::21"
  [[vip.real]]
  address = "2001:db8::22"
"#
    );
    with_workers(&c, l.workers)
}

fn dr_spreads_requests_answers_arp_alone_follows_weights_and_reports_status(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], false));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    // The data plane resolves the reals before traffic arrives.
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));

    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 90, "");
    eprintln!("90 requests: {spread:?}, {failed} failed");
    assert_eq!(failed, 0, "{spread:?}\n{}", lb.log_text());
    // Each real's count is binomial (90, 1/3): mean 30, standard
    // deviation 4.5. Bounds of four deviations fail a fair split about
    // once in 10,000 runs, and any real left out every time.
    for i in 1..=3 {
        let n = spread.get(&format!("real{i}")).copied().unwrap_or(0);
        assert!((12..=48).contains(&n), "real{i} got {n} of 90: {spread:?}");
    }
    // The answers came from the reals directly, with the client's own address.
    let body = l.client.exec("curl -s -m 3 http://192.0.2.100/");
    assert!(body.contains("from 192.0.2.1"), "{body}");

    // ARP for the VIP: one answer per request, from ferrolb's port.
    l.client.exec("ip neigh flush dev eth0");
    let (ok, out) = l.client.try_exec("arping -c 3 -W 0.2 -i eth0 192.0.2.100");
    assert!(ok, "{out}");
    let replies: Vec<&str> = out
        .lines()
        .filter(|x| x.contains("bytes from") && x.contains("(192.0.2.100)"))
        .collect();
    assert_eq!(replies.len(), 3, "{out}");
    assert!(
        replies.iter().all(|r| r.contains(&l.port_mac)),
        "an answer not from ferrolb ({}):\n{out}",
        l.port_mac
    );

    // Status shows per-real packets and flows.
    let status = l.lb.exec(&format!("{} status", ferrolb_bin()));
    eprintln!("{status}");
    assert!(status.contains("192.0.2.100:80"), "{status}");
    for i in 1..=3 {
        let line = status
            .lines()
            .find(|x| x.contains(&format!("192.0.2.2{i}:80")))
            .expect("real listed");
        let cols: Vec<&str> = line.split_whitespace().collect();
        let packets: u64 = cols[6].parse().expect("packets column");
        let new_flows: u64 = cols[5].parse().expect("new flows column");
        assert!(packets > 0 && new_flows >= 12, "{line}");
    }
    // --json: the API's own JSON.
    let json: serde_json::Value =
        serde_json::from_str(&l.lb.exec(&format!("{} status --json", ferrolb_bin())))
            .expect("status --json is JSON");
    assert_eq!(json["vips"][0]["name"], "web", "{json}");
    assert!(json["vips"][0]["new_flows"].as_u64() >= Some(90), "{json}");
    // --rate under a bounded request loop: the VIP and its reals show
    // connections and packets per second; the idle IPv6 VIP shows none.
    let load = Proc::spawn(
        &l.client,
        "sh",
        &[
            "-c",
            "for i in $(seq 1 600); do curl -s -m 1 -o /dev/null http://192.0.2.100/; done",
        ],
    );
    let rates =
        l.lb.exec(&format!("{} status --rate --interval 2", ferrolb_bin()));
    eprintln!("{rates}");
    let row = |key: &str| -> Vec<u64> {
        let line = rates
            .lines()
            .find(|x| x.contains(key))
            .unwrap_or_else(|| panic!("{key} not in:\n{rates}"));
        line.split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    let web = row("192.0.2.100:80");
    assert!(web[0] >= 5 && web[1] >= 20, "CPS, InPPS: {web:?}\n{rates}");
    assert_eq!(row("[2001:db8::100]:80"), [0, 0, 0, 0, 0], "{rates}");
    let cps: u64 = (1..=3).map(|i| row(&format!("192.0.2.2{i}:80"))[0]).sum();
    assert!(cps >= 5, "{rates}");
    drop(load);

    // Weights 3:1:0 by reload: the split follows, weight 0 gets nothing.
    std::fs::write(&lb.config, config(&l, [3, 1, 0], false)).unwrap();
    run(&format!("kill -HUP {}", lb.pid()));
    lb.wait_log("reloaded", Duration::from_secs(5));
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 160, "");
    eprintln!("160 requests at 3:1:0: {spread:?}");
    assert_eq!(failed, 0);
    let n = |k: &str| spread.get(k).copied().unwrap_or(0);
    assert_eq!(n("real3"), 0, "{spread:?}");
    // real2's count is binomial (160, 1/4): mean 40, deviation 5.5; four
    // deviations either way. An even split (mean 80) lands there about
    // once in 500 runs.
    assert_eq!(n("real1") + n("real2"), 160, "{spread:?}");
    assert!((18..=62).contains(&n("real2")), "{spread:?}");

    // IPv6 DR: neighbour discovery for the VIP answered by ferrolb.
    let (spread6, failed6) = curl_spread(&l.client, "http://[2001:db8::100]/", 20, "-6");
    eprintln!("IPv6: {spread6:?}");
    assert_eq!(failed6, 0, "{}", lb.log_text());
    assert!(
        spread6.keys().all(|k| k == "real1" || k == "real2"),
        "{spread6:?}"
    );
    let n6 = l.client.exec("ip -6 neigh show 2001:db8::100");
    assert!(
        n6.contains(&l.port_mac),
        "VIP's neighbour entry {n6:?} is not ferrolb's {}",
        l.port_mac
    );

    check_workers(&l.lb, workers, false);
    lb.stop();
    drop(l.reals);
}

fn persistence_keeps_a_slash_24_on_one_real(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    l.client
        .exec("ip addr add 192.0.2.51/24 dev eth0 && ip addr add 192.0.2.52/24 dev eth0");
    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], true));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    let (a, fa) = curl_spread(
        &l.client,
        "http://192.0.2.100/",
        15,
        "--interface 192.0.2.51",
    );
    let (b, fb) = curl_spread(
        &l.client,
        "http://192.0.2.100/",
        15,
        "--interface 192.0.2.52",
    );
    eprintln!("client .51: {a:?}; client .52: {b:?}");
    assert_eq!(fa + fb, 0);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{a:?} vs {b:?}"
    );
}

fn a_long_lived_connection_survives_200_others(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], false));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    // One keep-alive connection asks every 100 ms while 200 others come
    // and go; it must keep working and keep its real.
    let script = r#"
import socket, sys, time
s = socket.create_connection(("192.0.2.100", 80), timeout=3)
names = set(); ok = 0
for i in range(40):
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\n" not in data.split(b"\r\n\r\n", 1)[-1] or b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            print("CLOSED"); sys.exit(1)
        data += chunk
    names.add(data.split(b"\r\n\r\n", 1)[1].split()[0]); ok += 1
    time.sleep(0.1)
print("OK", ok, len(names))
"#;
    std::fs::write(std::env::temp_dir().join(format!("ll{}.py", l.id)), script).unwrap();
    let py = format!(
        "python3 {}",
        std::env::temp_dir()
            .join(format!("ll{}.py", l.id))
            .display()
    );
    // The churn runs in the background while the long-lived client runs.
    let churn = std::process::Command::new("ip")
        .args(["netns", "exec", &l.client.name, "sh", "-c", "for i in $(seq 1 200); do curl -s -m 3 -o /dev/null http://192.0.2.100/ || echo FAIL; done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = l.client.exec(&py);
    let churn = churn.wait_with_output().unwrap();
    let churn_out = String::from_utf8_lossy(&churn.stdout);
    eprintln!(
        "long-lived: {out}; churn failures: {}",
        churn_out.matches("FAIL").count()
    );
    assert!(out.trim() == "OK 40 1", "long-lived connection: {out}");
    assert_eq!(churn_out.matches("FAIL").count(), 0);
}

fn tun_sends_ipip_with_the_right_outer_addresses(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let cfg = config(&l, [1, 1, 1], false).replace(
        "mode = \"dr\"\nscheduler = \"maglev\"",
        "mode = \"tun\"\nscheduler = \"maglev\"",
    );
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    // This kernel has no ipip module: check the frames on the wire at
    // every real (a capture per real, bounded by count and time).
    let caps: Vec<_> = l
        .reals
        .iter()
        .map(|r| {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &r.name,
                    "timeout",
                    "8",
                    "tcpdump",
                    "-l",
                    "-n",
                    "-c",
                    "1",
                    "-i",
                    "eth0",
                    "ip proto 4",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = l
        .client
        // In parallel: the reals answer nothing (no ipip), so each curl
        // waits out its timeout, and all 30 SYNs must fall inside the
        // capture window (30 flows miss a real with p = 3 x (2/3)^30).
        .try_exec(
            "for i in $(seq 1 30); do curl -s -m 1 -o /dev/null http://192.0.2.100/ & done; wait",
        );
    let mut seen = 0;
    for (i, c) in caps.into_iter().enumerate() {
        let out = String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).to_string();
        eprintln!("real{}: {out}", i + 1);
        if out.contains(&format!("192.0.2.2 > 192.0.2.2{}: IP 192.0.2.1.", i + 1))
            && out.contains("> 192.0.2.100.80")
        {
            seen += 1;
        }
    }
    assert_eq!(
        seen, 3,
        "every real should get IP-in-IP from 192.0.2.2 with the client's packet inside"
    );
}

/// Plain hosts as reals: requests to the VIPs fail. Each real then runs
/// the commands `ferrolb real-setup` prints for each VIP (twice: they can be
/// run again), and both VIPs answer from every real while ARP for the VIP
/// is still answered by ferrolb alone.
#[test]
fn reals_prepared_by_real_setup_serve_the_vips() {
    require_root();
    let _g = serial();
    let l = lab_with(1, false);
    let dir = Scratch::new("realsetup");
    let cfg = dir.file("ferrolb.toml", &config(&l, [1, 1, 1], false));
    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], false));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 3, "--max-time 1");
    assert_eq!(failed, 3, "unprepared reals must not answer: {spread:?}");

    for vip in ["web", "web6"] {
        let script = run(&format!(
            "{} real-setup --vip {vip} --config {}",
            ferrolb_bin(),
            cfg.display()
        ));
        eprintln!("{script}");
        let file = dir.file(&format!("{vip}.sh"), &script);
        for r in &l.reals {
            for _ in 0..2 {
                r.exec(&format!("sh -e {}", file.display()));
            }
        }
    }
    let r1 = &l.reals[0];
    assert_eq!(
        r1.exec("sysctl -n net.ipv4.conf.all.arp_ignore").trim(),
        "1"
    );
    assert!(r1.exec("ip addr show dev lo").contains("192.0.2.100/32"));

    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 60, "");
    eprintln!("after real-setup: {spread:?}");
    assert_eq!(failed, 0, "{spread:?}");
    assert_eq!(spread.len(), 3, "every real answers: {spread:?}");
    let (spread6, failed6) = curl_spread(&l.client, "http://[2001:db8::100]/", 20, "-6");
    assert_eq!(failed6, 0, "{spread6:?}");
    assert_eq!(spread6.len(), 2, "{spread6:?}");
    // The reals stay out of ARP for the VIP.
    l.client.exec("ip neigh flush dev eth0");
    let out = l
        .client
        .exec("arping -c 3 -W 0.2 -i eth0 192.0.2.100 || true");
    let replies: Vec<&str> = out.lines().filter(|x| x.contains("bytes from")).collect();
    assert!(
        !replies.is_empty() && replies.iter().all(|r| r.contains(&l.port_mac)),
        "{out}"
    );
    // A VIP the file lacks is an error naming the VIPs it has.
    let (ok, out) = try_run(&format!(
        "{} real-setup --vip nope --config {}",
        ferrolb_bin(),
        cfg.display()
    ));
    assert!(
        !ok && out.contains("no VIP named \"nope\"") && out.contains("web, web6"),
        "{out}"
    );
    lb.stop();
}

/// The state column of each real of `vip_addr` in `ferrolb status`.
fn real_states(lb: &Netns) -> Vec<String> {
    let (ok, out) = lb.try_exec(&format!("{} status", ferrolb_bin()));
    if !ok {
        return Vec::new();
    }
    out.lines()
        .filter(|l| l.contains("-> 192.0.2.2"))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

fn health_checks_take_a_dead_real_out_and_bring_it_back(workers: u16) {
    require_root();
    let _g = serial();
    let mut l = lab(workers);
    let cfg = config(&l, [1, 1, 1], false).replace(
        "scheduler = \"maglev\"\n",
        "scheduler = \"maglev\"\n  [vip.health]\n  type = \"http\"\n  path = \"/\"\n  expect_status = 200\n  expect_body = \"real\"\n  interval = \"500ms\"\n  timeout = \"300ms\"\n  rise = 2\n  fall = 2\n",
    );
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    let all_up = wait_for(Duration::from_secs(10), || {
        real_states(&l.lb) == ["up", "up", "up"]
    });
    assert!(
        all_up,
        "reals did not come up: {:?}\n{}",
        real_states(&l.lb),
        lb.log_text()
    );

    // Stop nginx on real3: down within interval x fall + one interval.
    let t0 = std::time::Instant::now();
    let n3 = l.nginx.pop().expect("three nginx");
    drop(n3);
    let down = wait_for(Duration::from_secs(6), || {
        real_states(&l.lb).get(2).map(String::as_str) == Some("down")
    });
    let took = t0.elapsed();
    eprintln!("real3 marked down {took:?} after its nginx stopped");
    assert!(down, "{:?}\n{}", real_states(&l.lb), lb.log_text());
    assert!(
        took < Duration::from_millis(1500 + 1000),
        "took {took:?} (limit 1.5 s + 1 s slack)"
    );
    assert!(
        lb.log_text().contains("real3") || lb.log_text().contains("192.0.2.23"),
        "state change not logged"
    );
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 30, "");
    eprintln!("with real3 down: {spread:?}");
    assert_eq!(failed, 0, "{spread:?}");
    assert!(!spread.contains_key("real3"), "{spread:?}");

    // Start it again: back after `rise` good checks.
    l.nginx.push(Nginx::start(&l.reals[2], "real3", 80));
    let up = wait_for(Duration::from_secs(6), || {
        real_states(&l.lb).get(2).map(String::as_str) == Some("up")
    });
    assert!(up, "{:?}", real_states(&l.lb));
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 45, "");
    eprintln!("with real3 back: {spread:?}");
    assert_eq!(failed, 0);
    assert!(spread.get("real3").copied().unwrap_or(0) > 0, "{spread:?}");
    lb.stop();
}

/// A VIP on every port (`port = 0`) is checked on a readiness port of
/// its own: nginx serves `/ready.txt` on 9010 only, apart from the
/// service on 80. A real whose readiness server is away takes no new
/// flows though its service answers.
#[test]
fn health_checks_on_a_readiness_port_cover_an_all_ports_vip() {
    require_root();
    let _g = serial();
    let l = lab(1);
    let base = config(&l, [1, 1, 1], false);
    let cfg = base.replacen(
        "port = 80\nmode = \"dr\"\nscheduler = \"maglev\"\n",
        "port = 0\nmode = \"dr\"\nscheduler = \"maglev\"\n  [vip.health]\n  type = \"http\"\n  port = 9010\n  path = \"/ready.txt\"\n  expect_body = \"ready\"\n  interval = \"200ms\"\n  timeout = \"150ms\"\n  rise = 1\n  fall = 2\n",
        1,
    );
    assert_ne!(cfg, base);
    let mut ready: Vec<Option<Nginx>> = l.reals[..2]
        .iter()
        .map(|r| Some(Nginx::readiness(r, 9010)))
        .collect();
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    assert!(
        wait_for(Duration::from_secs(10), || real_states(&l.lb)
            == ["up", "up", "down"]),
        "{:?}\n{}",
        real_states(&l.lb),
        lb.log_text()
    );
    // real3 starts down (not checked yet); its first check is refused.
    let refused = |s: &serde_json::Value| {
        s["vips"][0]["reals"][2]["health"]["last_reason"]
            .as_str()
            .is_some_and(|r| r.contains("refused"))
    };
    wait_for(Duration::from_secs(5), || refused(&status_json(&l.lb)));
    let s = status_json(&l.lb);
    let reals = &s["vips"][0]["reals"];
    assert_eq!(s["vips"][0]["port"], 0, "{s}");
    assert_eq!(reals[0]["health"]["target"], "192.0.2.21:9010", "{reals}");
    assert!(refused(&s), "{reals}");
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 30, "");
    eprintln!("real3 not ready: {spread:?}");
    assert_eq!(failed, 0, "{spread:?}");
    assert!(!spread.contains_key("real3"), "{spread:?}");

    // real3 gets ready: it takes new flows.
    ready.push(Some(Nginx::readiness(&l.reals[2], 9010)));
    assert!(
        wait_for(Duration::from_secs(5), || real_states(&l.lb)
            == ["up", "up", "up"]),
        "{:?}",
        real_states(&l.lb)
    );
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 45, "");
    eprintln!("all ready: {spread:?}");
    assert_eq!(failed, 0, "{spread:?}");
    assert!(spread.get("real3").copied().unwrap_or(0) > 0, "{spread:?}");

    // real1's readiness server stops, its service on 80 still answers:
    // out all the same.
    ready[0] = None;
    assert!(
        wait_for(Duration::from_secs(5), || real_states(&l.lb)
            == ["down", "up", "up"]),
        "{:?}",
        real_states(&l.lb)
    );
    let direct = l.client.exec("curl -s -m 3 http://192.0.2.21/");
    assert!(direct.contains("real1"), "{direct:?}");
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 30, "");
    assert_eq!(failed, 0, "{spread:?}");
    assert!(!spread.contains_key("real1"), "{spread:?}");
    lb.stop();
}

/// Holds keep-alive connections to the VIP, opened 400 ms apart, each
/// asked once for its real's name (one per line); then `HELD`, and holds
/// them until `stop` exists (at most 30 s).
const HOLD_CONNECTIONS: &str = r#"
import os, socket, sys, time
n, stop = int(sys.argv[1]), sys.argv[2]
held = []
for i in range(n):
    s = socket.create_connection(("192.0.2.100", 80), timeout=3)
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or b"\n" not in data.split(b"\r\n\r\n", 1)[1]:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.split(b"\r\n\r\n", 1)[1].split()[0].decode(), flush=True)
    held.append(s)
    time.sleep(0.4)
print("HELD", flush=True)
end = time.time() + 30
while not os.path.exists(stop) and time.time() < end:
    time.sleep(0.1)
"#;

/// `max_conns = 5` on the real weighted 100 of 102: the first five of
/// ten long-lived connections go to it, it shows as overloaded, and the
/// sixth and later go to the other reals.
#[test]
fn max_conns_sends_the_sixth_connection_to_the_other_reals() {
    require_root();
    let _g = serial();
    let l = lab(1);
    let base = config(&l, [100, 1, 1], false);
    let cfg = base
        .replacen("scheduler = \"maglev\"", "scheduler = \"wrr\"", 1)
        .replacen(
            "address = \"192.0.2.21\"\n  weight = 100\n",
            "address = \"192.0.2.21\"\n  weight = 100\n  max_conns = 5\n",
            1,
        );
    assert!(cfg.contains("max_conns = 5") && cfg.contains("\"wrr\""));
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    let dir = Scratch::new("maxconns");
    let script = dir.file("hold.py", HOLD_CONNECTIONS);
    let stop = dir.0.join("stop");
    let out = dir.0.join("out.txt");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &l.client.name, "python3"])
        .arg(&script)
        .arg("10")
        .arg(&stop)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut client = Proc::from_child(child);
    let held = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("HELD")
    });
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(held, "{text}");
    let reals: Vec<&str> = text.lines().filter(|l| *l != "HELD").collect();
    eprintln!("10 connections went to {reals:?}");
    assert_eq!(reals.len(), 10, "{text}");
    assert!(reals[..5].iter().all(|r| *r == "real1"), "{reals:?}");
    assert!(reals[5..].iter().all(|r| *r != "real1"), "{reals:?}");
    let s = status_json(&l.lb);
    let r1 = &s["vips"][0]["reals"][0];
    assert_eq!(r1["state"], "overloaded", "{r1}");
    assert_eq!(r1["active_flows"], 5, "{r1}");
    assert_eq!(
        (r1["max_conns"].as_u64(), r1["min_conns"].as_u64()),
        (Some(5), Some(5))
    );
    let table = l.lb.exec(&format!("{} status", ferrolb_bin()));
    assert!(table.contains("overloaded"), "{table}");
    let m = l.lb.exec("curl -s http://127.0.0.1:9080/metrics");
    assert!(
        m.contains("state=\"overloaded\"} 1"),
        "{}",
        m.lines()
            .filter(|l| l.contains("real_state"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        lb.log_text().contains("real overloaded"),
        "{}",
        lb.log_text()
    );
    std::fs::write(&stop, "").unwrap();
    assert!(wait_for(Duration::from_secs(10), || client
        .get()
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    lb.stop();
}

/// A keep-alive HTTP connection from the client through the VIP: it makes
/// one request at start (its real's name is `first`), then, on `go`, 20
/// more 100 ms apart, and reports `OK <answers> <distinct reals>`.
struct LongLived {
    child: std::process::Child,
    first: String,
}

const LONG_LIVED: &str = r#"
import socket, sys, time
s = socket.create_connection(("192.0.2.100", 80), timeout=3)
def ask():
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or b"\n" not in data.split(b"\r\n\r\n", 1)[1]:
        chunk = s.recv(4096)
        if not chunk:
            print("CLOSED", flush=True); sys.exit(1)
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1].split()[0].decode()
names = [ask()]
print(names[0], flush=True)
sys.stdin.readline()
for i in range(20):
    names.append(ask()); time.sleep(0.1)
print("OK", len(names), len(set(names)), flush=True)
"#;

impl LongLived {
    fn start(client: &Netns) -> LongLived {
        use std::io::BufRead;
        let script = std::env::temp_dir().join(format!("longlived{}.py", uid()));
        std::fs::write(&script, LONG_LIVED).unwrap();
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &client.name, "python3"])
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let out = child.stdout.as_mut().unwrap();
        std::io::BufReader::new(out).read_line(&mut first).unwrap();
        LongLived {
            child,
            first: first.trim().to_string(),
        }
    }

    fn finish(mut self) -> String {
        use std::io::Write;
        let _ = self.child.stdin.as_mut().unwrap().write_all(b"go\n");
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn cli(lb: &Netns, args: &str) -> (bool, String) {
    lb.try_exec(&format!("{} {args}", ferrolb_bin()))
}

fn drain_keeps_established_connections_and_steers_new_ones_away(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], false));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    let ll = LongLived::start(&l.client);
    let n: usize = ll
        .first
        .trim_start_matches("real")
        .parse()
        .expect("a real's name");
    let (ok, out) = cli(&l.lb, &format!("real drain web 192.0.2.2{n}"));
    assert!(ok, "{out}");
    assert!(out.contains("drained"), "{out}");
    let status = cli(&l.lb, "status").1;
    assert!(
        status
            .lines()
            .any(|x| x.contains(&format!("192.0.2.2{n}:80")) && x.contains("drain")),
        "{status}"
    );
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 30, "");
    eprintln!("real{n} drained: new connections went {spread:?}");
    assert_eq!(failed, 0);
    assert!(!spread.contains_key(&ll.first), "{spread:?}");
    let done = ll.finish();
    assert_eq!(
        done, "OK 21 1",
        "the established connection must keep its real"
    );
    // Enable: it takes new flows again.
    assert!(cli(&l.lb, &format!("real enable web 192.0.2.2{n}")).0);
    let (spread, _) = curl_spread(&l.client, "http://192.0.2.100/", 45, "");
    assert!(spread.contains_key(&format!("real{n}")), "{spread:?}");
    // Errors name what is wrong.
    let (ok, out) = cli(&l.lb, "real drain nosuch 192.0.2.21");
    assert!(!ok && out.contains("no VIP named \"nosuch\""), "{out}");
    let (ok, out) = cli(&l.lb, "real disable web 192.0.2.99");
    assert!(!ok && out.contains("has no real 192.0.2.99"), "{out}");
    let (ok, out) = cli(&l.lb, "status --admin 127.0.0.1:9");
    assert!(!ok && out.contains("no ferrolb daemon"), "{out}");
    assert!(
        lb.log_text().contains("action=\"drained\""),
        "drain not logged"
    );
}

fn reload_adds_and_removes_reals_without_breaking_established_connections(workers: u16) {
    require_root();
    let _g = serial();
    let mut l = lab(workers);
    // A fourth real on the lab's bridge, not in the first configuration.
    let r4 = Netns::new(&format!("flr4{}", l.id));
    l._sw.plug(&r4, "eth0");
    r4.exec("ip addr add 192.0.2.24/24 dev eth0");
    dr_real(&r4, "eth0", &["192.0.2.100"]);
    l.nginx.push(Nginx::start(&r4, "real4", 80));

    let mut lb = Ferrolb::start(&l.lb, &config(&l, [1, 1, 1], false));
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    // The reload removes the real of a long-lived connection: with
    // on_remove = "keep" (the default) it takes no new flow, and the
    // connection goes on to it.
    let ll = LongLived::start(&l.client);
    let removed: usize = ll.first.trim_start_matches("real").parse().unwrap();
    let reals: String = [1, 2, 3, 4]
        .iter()
        .filter(|i| **i != removed)
        .map(|i| format!("  [[vip.real]]\n  address = \"192.0.2.2{i}\"\n"))
        .collect();
    let base = config(&l, [1, 1, 1], false);
    let head = &base[..base.find("  [[vip.real]]").unwrap()];
    let tail = &base[base.find("[[vip]]\nname = \"web6\"").unwrap()..];
    std::fs::write(&lb.config, format!("{head}{reals}\n{tail}")).unwrap();
    let (ok, out) = cli(&l.lb, "reload");
    assert!(ok && out.contains("reloaded"), "{out}\n{}", lb.log_text());
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 45, "");
    eprintln!("after reload (removed real{removed}, added real4): {spread:?}");
    assert_eq!(failed, 0);
    assert!(
        !spread.contains_key(&format!("real{removed}")),
        "{spread:?}"
    );
    assert!(spread.contains_key("real4"), "{spread:?}");
    let s = status_json(&l.lb);
    let gone = s["vips"][0]["reals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == format!("192.0.2.2{removed}"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gone["state"], "removed", "{s}");
    assert_eq!(gone["active_flows"], 1, "{gone}");
    assert!(lb.log_text().contains("reload removed a real"));
    assert_eq!(
        ll.finish(),
        "OK 21 1",
        "the established connection to the removed real broke"
    );

    // An invalid file: nothing changes, the CLI and the log say why.
    std::fs::write(
        &lb.config,
        "[dataplane]\neal_args = [\"x\"]\nworkers = \"many\"\n",
    )
    .unwrap();
    let (ok, out) = cli(&l.lb, "reload");
    assert!(!ok, "{out}");
    assert!(
        out.contains("reload rejected") && out.contains("invalid type"),
        "{out}"
    );
    assert!(lb.log_text().contains("reload rejected"));
    let status = cli(&l.lb, "status").1;
    assert!(
        status.contains("192.0.2.24:80") && status.contains("last reload failed"),
        "{status}"
    );
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 10, "");
    assert_eq!(failed, 0, "{spread:?}");
}

fn metrics_parse_as_prometheus_text_and_the_api_wants_its_token(workers: u16) {
    require_root();
    let _g = serial();
    let l = lab(workers);
    let cfg = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:9080\"\ntoken = \"s3cret\"\n",
        config(&l, [1, 1, 1], false)
    );
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));

    // Without the token: 401, and the CLI says so.
    let (ok, out) = cli(&l.lb, "status");
    assert!(!ok && out.contains("401"), "{out}");
    let code =
        l.lb.exec("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9080/metrics");
    assert_eq!(code.trim(), "401");
    let (ok, out) = cli(&l.lb, "status --token s3cret");
    assert!(ok, "{out}");
    // The status page is served at / (the browser test is in control/tests).
    let page =
        l.lb.exec("curl -s -H 'Authorization: Bearer s3cret' http://127.0.0.1:9080/");
    assert!(
        page.contains("<html") && page.contains("/api/v1/status"),
        "{}",
        &page[..page.len().min(200)]
    );
    // A non-loopback API without a token is refused at load time.
    let open = config(&l, [1, 1, 1], false) + "\n[admin]\nlisten = \"0.0.0.0:9080\"\n";
    let f = std::env::temp_dir().join(format!("open{}.toml", l.id));
    std::fs::write(&f, open).unwrap();
    let (ok, out) = try_run(&format!("{} check --config {}", ferrolb_bin(), f.display()));
    assert!(
        !ok && out.contains("admin.listen") && out.contains("token"),
        "{out}"
    );

    // /metrics parses with the Prometheus project's strict OpenMetrics
    // parser and moves with traffic.
    let read = || {
        // The strict OpenMetrics parser first (it refuses a text that
        // breaks the format), then the samples.
        let py = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  t = sys.stdin.read()\nv = {}\n\
                  for fam in p(t):\n  for s in fam.samples:\n    if s.name == 'ferrolb_vip_packets_in_total' and s.labels['vip'] == 'web': v['in'] = s.value\n    \
                  if s.name == 'ferrolb_real_state' and s.value == 1: v.setdefault('states', []).append(s.labels['state'])\n\
                  print(int(v['in']), ','.join(sorted(v['states'])))\n";
        let f = std::env::temp_dir().join(format!("prom{}.py", uid()));
        std::fs::write(&f, py).unwrap();
        l.lb.exec(&format!(
            "curl -s -H 'Authorization: Bearer s3cret' http://127.0.0.1:9080/metrics | /usr/bin/python3 {}",
            f.display()
        ))
    };
    let before = read();
    let (_, failed) = curl_spread(&l.client, "http://192.0.2.100/", 20, "");
    assert_eq!(failed, 0);
    std::thread::sleep(Duration::from_millis(500));
    let after = read();
    eprintln!("metrics before: {before:?}, after 20 requests: {after:?}");
    let n = |s: &str| s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
    assert!(n(&after) >= n(&before) + 20 * 3, "{before} -> {after}");
    assert!(after.trim().ends_with("up,up,up,up,up"), "{after}");
}

/// `[vip.timeouts] tcp_reset_on_idle`: an idle keep-alive connection
/// through a DR VIP with a 3 s TCP timeout is reset at both ends once the
/// balancer forgets it (the client's recv fails with ECONNRESET, the
/// real's nginx no longer holds it); without the key the same connection
/// stays open on both.
#[test]
fn reset_on_idle_resets_both_ends_of_an_idle_connection() {
    require_root();
    let _g = serial();
    let l = lab(1);
    let dir = Scratch::new("idle");
    let client_py = dir.file("idle.py", IDLE_CLIENT);
    let timeouts = "scheduler = \"maglev\"\n  [vip.timeouts]\n  tcp = \"3s\"\n";
    let cfg = config(&l, [1, 1, 1], false).replacen(
        "scheduler = \"maglev\"\n",
        &format!("{timeouts}  tcp_reset_on_idle = true\n"),
        1,
    );
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    let established = |real: &str| -> usize {
        let i: usize = real.trim_start_matches("real").parse().expect("real name");
        l.reals[i - 1]
            .exec("ss -Htn state established '( sport = :80 )'")
            .lines()
            .filter(|x| x.contains("192.0.2.1:"))
            .count()
    };
    let out = l
        .client
        .exec(&format!("python3 {} 192.0.2.100 10", client_py.display()));
    eprintln!("reset on idle: {out}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f[0], "RST", "{out}\n{}", lb.log_text());
    let waited: f64 = f[2].parse().unwrap();
    // The flow expires 3 s after the last segment; the sweep goes over
    // the table once a second.
    assert!((2.5..=5.0).contains(&waited), "reset after {waited} s");
    assert_eq!(established(f[1]), 0, "the real's end was reset too");
    assert_eq!(idle_resets_sent(&l.lb, 2), 2, "one RST to each end");
    lb.stop();

    // Without tcp_reset_on_idle: both ends keep the connection.
    let cfg = config(&l, [1, 1, 1], false).replacen("scheduler = \"maglev\"\n", timeouts, 1);
    let mut lb = Ferrolb::start(&l.lb, &cfg);
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    lb.wait_log("neighbour resolved ip=192.0.2.23", Duration::from_secs(5));
    let c = std::process::Command::new("ip")
        .args(["netns", "exec", &l.client.name, "python3"])
        .arg(&client_py)
        .args(["192.0.2.100", "6"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let c = Proc::from_child(c);
    std::thread::sleep(Duration::from_secs(5));
    let held: usize = (1..=3).map(|i| established(&format!("real{i}"))).sum();
    assert_eq!(held, 1, "the real still holds the idle connection");
    let out = c.take().wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.starts_with("TIMEOUT"), "{out}");
    lb.stop();
}
