//! NAT end to end, two arms: clients on one port, reals on the other with
//! their default gateway at the balancer's internal address.
//!
//! ```text
//!  client 198.51.100.1 ── wan ─ [ferrolb 198.51.100.2 | 192.0.2.2] ─ lan ── [switch] ── reals 192.0.2.21-22
//!                         VIP 198.51.100.100:80 -> reals :8080, VIP :53/udp -> reals :5353
//! ```

mod common;

on_one_and_two_workers!(
    nat_tcp_with_port_translation,
    nat_udp,
    nat_hairpin,
    reals_reach_the_outside_through_outbound_nat_and_nothing_gets_in,
);

use std::time::Duration;

use common::*;

const UDP_ECHO: &str = r#"
import socket, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
s.settimeout(1.0)
end = time.time() + 120
while time.time() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(name.encode() + b" " + data + b" from " + peer[0].encode(), peer)
"#;

const UDP_CLIENT: &str = r#"
import socket
ok = 0; names = set()
for i in range(20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    s.sendto(b"ping%d" % i, ("198.51.100.100", 53))
    data, peer = s.recvfrom(2048)
    assert peer == ("198.51.100.100", 53), peer
    assert (b"ping%d" % i) in data, data
    assert data.endswith(b"from 198.51.100.1"), data
    names.add(data.split()[0]); ok += 1
    s.close()
print("OK", ok, b",".join(sorted(names)).decode())
"#;

/// The two-arm lab: a client on `wan`, two reals (nginx on 8080, a UDP
/// echo on 5353) on `lan` with ferrolb as their default gateway.
struct Lab {
    // Dropped in this order: processes first, then the namespaces.
    p: Ferrolb,
    _echoes: Vec<Proc>,
    _nginx: Vec<Nginx>,
    client: Netns,
    lb: Netns,
    reals: Vec<Netns>,
    _sw: Switch,
    dir: Scratch,
    workers: u16,
}

impl Lab {
    fn start(workers: u16) -> Lab {
        Lab::start_with(workers, "")
    }

    /// The lab with `extra` appended to ferrolb's configuration.
    fn start_with(workers: u16, extra: &str) -> Lab {
        require_root();
        let id = uid();
        let mut sw = Switch::new(&id);
        let client = Netns::new(&format!("flc{id}"));
        let lb = Netns::new(&format!("flb{id}"));
        veth(&client, "eth0", &lb, "wan0");
        sw.plug(&lb, "lan0");
        client.exec("ip addr add 198.51.100.1/24 dev eth0");
        let dir = Scratch::new("nat");
        let echo = dir.file("echo.py", UDP_ECHO);
        dir.file("client.py", UDP_CLIENT);
        let (mut reals, mut nginx, mut echoes) = (Vec::new(), Vec::new(), Vec::new());
        for i in 1..=2 {
            let r = Netns::new(&format!("flr{i}{id}"));
            sw.plug(&r, "eth0");
            r.exec(&format!(
                "ip addr add 192.0.2.2{i}/24 dev eth0 && ip route add default via 192.0.2.2"
            ));
            nginx.push(Nginx::start(&r, &format!("real{i}"), 8080));
            let echo = echo.display().to_string();
            echoes.push(Proc::spawn(&r, "python3", &[&echo, &format!("real{i}")]));
            reals.push(r);
        }
        let dp = dataplane(&format!("fl{id}"), &["wan0", "lan0"], "100us");
        let config = format!(
            r#"
{dp}
[[port]]
name = "wan"
device = "net_af_packet0"
addresses = ["198.51.100.2/24"]

[[port]]
name = "lan"
device = "net_af_packet1"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "198.51.100.100"
port = 80
mode = "nat"
port_name = "wan"
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080

[[vip]]
name = "dns"
address = "198.51.100.100"
protocol = "udp"
port = 53
mode = "nat"
port_name = "wan"
  [vip.timeouts]
  udp = "4s"
  [[vip.real]]
  address = "192.0.2.21"
  port = 5353
  [[vip.real]]
  address = "192.0.2.22"
  port = 5353
{extra}"#
        );
        let config = with_workers(&config, workers);
        let mut p = Ferrolb::start(&lb, &config);
        p.wait_log("ferrolb running", Duration::from_secs(30));
        p.wait_log("neighbour resolved ip=192.0.2.22", Duration::from_secs(5));
        Lab {
            client,
            lb,
            reals,
            p,
            workers,
            dir,
            _echoes: echoes,
            _nginx: nginx,
            _sw: sw,
        }
    }

    /// Both directions of NAT flows landed on different workers and were
    /// handed to their owner; ferrolb stops cleanly.
    fn finish(mut self) {
        check_workers(&self.lb, self.workers, true);
        self.check_steering();
        self.p.stop();
    }

    /// Each port says how frames reach their owners: af_packet has no
    /// RSS (the kernel's fanout spreads whole flows), so the client port
    /// (wan) and the reals' port (lan) hand over in software, and say why.
    fn check_steering(&self) {
        let st = status_json(&self.lb);
        let steering = |port: &str| {
            st["ports"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == port))
                .and_then(|p| p["steering"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (wan, lan) = (steering("wan"), steering("lan"));
        if self.workers == 1 {
            assert_eq!((wan.as_str(), lan.as_str()), ("one worker", "one worker"));
            return;
        }
        assert_eq!(
            wan,
            "software: net_af_packet0 does not hash IPv4 TCP and UDP frames (RSS)"
        );
        assert_eq!(
            lan,
            "software: net_af_packet1 does not hash IPv4 TCP and UDP frames (RSS)"
        );
        let log = self.p.log_text();
        assert!(
            log.contains("port wan: steering software: net_af_packet0 does not hash"),
            "{log}"
        );
        let text = self.lb.exec(&format!("{} status", ferrolb_bin()));
        assert!(
            text.contains("port lan: steering software: net_af_packet1 does not hash IPv4 TCP and UDP frames (RSS)"),
            "{text}"
        );
        let metrics = self.lb.exec("curl -s http://127.0.0.1:9080/metrics");
        assert!(
            metrics.contains("ferrolb_port_steering_nic{port=\"wan\"} 0"),
            "{metrics}"
        );
    }
}

/// TCP: the client talks to the VIP only, port 80 is translated to the
/// reals' 8080, the reals see the client's address, and the replies are
/// translated back.
fn nat_tcp_with_port_translation(workers: u16) {
    let _g = serial();
    let l = Lab::start(workers);
    let (spread, failed) = curl_spread(&l.client, "http://198.51.100.100/", 40, "");
    eprintln!("NAT TCP: {spread:?}, {failed} failed");
    assert_eq!(failed, 0, "{}", l.p.log_text());
    assert_eq!(spread.len(), 2, "{spread:?}");
    let body = l.client.exec("curl -s -m 3 http://198.51.100.100/");
    assert!(
        body.ends_with("from 198.51.100.1\n"),
        "the real did not see the client's address: {body:?}"
    );
    let route = l.client.exec("ip route");
    assert!(
        !route.contains("192.0.2."),
        "the client must not know the real network: {route}"
    );
    let status = l.lb.exec(&format!("{} status", ferrolb_bin()));
    eprintln!("{status}");
    if workers > 1 {
        assert!(status.contains("worker 1:"), "per-worker load: {status}");
    }
    let web = status
        .lines()
        .find(|l| l.contains("198.51.100.100:80 "))
        .expect("web listed");
    let cols: Vec<&str> = web.split_whitespace().collect();
    let out_pkts: u64 = cols[6].parse().unwrap();
    assert!(out_pkts > 0, "no replies translated: {web}");
    l.finish();
}

/// UDP: replies come back from the VIP and the port the client asked.
fn nat_udp(workers: u16) {
    let _g = serial();
    let l = Lab::start(workers);
    let out = l
        .client
        .exec(&format!("python3 {}", l.dir.0.join("client.py").display()));
    eprintln!("NAT UDP: {out}");
    assert!(out.starts_with("OK 20"), "{out}");
    l.finish();
}

/// Hairpin: a real connects to its own VIP. Whether it is balanced to
/// itself or to its neighbour, both legs pass through the balancer
/// (source NAT to the balancer's internal address) and it gets answers.
fn nat_hairpin(workers: u16) {
    let _g = serial();
    let l = Lab::start(workers);
    let (hair, failed) = curl_spread(&l.reals[0], "http://198.51.100.100/", 20, "");
    eprintln!("hairpin from real1: {hair:?}, {failed} failed");
    assert_eq!(failed, 0, "{}", l.p.log_text());
    let body = l.reals[0].exec("curl -s -m 3 http://198.51.100.100/");
    assert!(
        body.ends_with("from 192.0.2.2\n"),
        "hairpin flows are source-NATed: {body:?}"
    );
    l.finish();
}

const OUTBOUND: &str = r#"
[[outbound]]
name = "reals"
sources = ["192.0.2.0/24"]
port_name = "wan"
address = "198.51.100.2"
"#;

/// A name server's answers for the real's resolver, while it lives: `ip
/// netns exec` mounts `/etc/netns/NS/resolv.conf` over `/etc/resolv.conf`.
struct Resolver(std::path::PathBuf);

impl Resolver {
    fn new(ns: &Netns, server: &str) -> Resolver {
        let dir = std::path::PathBuf::from(format!("/etc/netns/{}", ns.name));
        std::fs::create_dir_all(&dir).expect("/etc/netns");
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {server}\n")).unwrap();
        Resolver(dir)
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `[[outbound]]`: the reals, whose default gateway is ferrolb, resolve a
/// name at a DNS server on the client side (dnsmasq) and fetch from a web
/// server there (nginx), which sees ferrolb's outside address; a client
/// reaches neither a real's address nor a real through the outbound ports.
fn reals_reach_the_outside_through_outbound_nat_and_nothing_gets_in(workers: u16) {
    let _g = serial();
    let l = Lab::start_with(workers, OUTBOUND);
    let _web = Nginx::start(&l.client, "outside", 8081);
    let _dns = Proc::spawn(
        &l.client,
        "dnsmasq",
        &[
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=198.51.100.1",
            "--address=/outside.test/198.51.100.1",
            "--pid-file=",
        ],
    );
    assert!(
        wait_for(Duration::from_secs(5), || l
            .client
            .try_exec("ss -lun | grep -q 198.51.100.1:53")
            .0),
        "dnsmasq did not start"
    );
    let mut resolvers = Vec::new();
    for r in &l.reals {
        resolvers.push(Resolver::new(r, "198.51.100.1"));
    }
    // A name server query from each real (dig, then the system resolver).
    // The first datagram towards a next hop not yet resolved is dropped
    // (neigh_miss) while ferrolb asks for its MAC: resolvers retry.
    for r in &l.reals {
        let a = r.exec("dig +short +time=1 +tries=3 @198.51.100.1 outside.test");
        assert_eq!(a.lines().last(), Some("198.51.100.1"), "{a}");
        let h = r.exec("getent hosts outside.test");
        assert!(h.starts_with("198.51.100.1"), "{h}");
    }
    // Fetches by name: the web server outside sees the balancer's address.
    for r in &l.reals {
        let (spread, failed) = curl_spread(r, "http://outside.test:8081/", 15, "");
        assert_eq!(failed, 0, "{spread:?}\n{}", l.p.log_text());
        let body = r.exec("curl -s -m 3 http://outside.test:8081/");
        assert_eq!(
            body.trim(),
            "outside from 198.51.100.2",
            "source NAT to [[outbound]].address"
        );
    }
    // The VIP still works beside it.
    let (spread, failed) = curl_spread(&l.client, "http://198.51.100.100/", 10, "");
    assert_eq!(failed, 0, "{spread:?}");
    // Nothing gets in: a client routing to the reals' network, and one
    // knocking on the outbound ports of the balancer's address.
    l.client.exec("ip route add 192.0.2.0/24 via 198.51.100.2");
    for url in [
        "http://192.0.2.21:8080/",
        "http://198.51.100.2:61000/",
        "http://198.51.100.2:61001/",
    ] {
        let (ok, out) = l.client.try_exec(&format!("curl -s -m 2 {url}"));
        assert!(!ok && !out.contains("real"), "{url} answered: {out}");
    }
    let st = status_json(&l.lb);
    let ob = &st["outbound"];
    eprintln!("outbound: {ob}");
    assert!(ob["new_flows"].as_u64() >= Some(2 * 16 + 4), "{ob}");
    assert!(ob["packets_in"].as_u64() >= Some(2 * 16 * 3), "{ob}");
    assert!(ob["flows"].as_u64() >= Some(1), "{ob}");
    assert_eq!(ob["rules"][0]["address"], "198.51.100.2");
    let table = l.lb.exec(&format!("{} status", ferrolb_bin()));
    assert!(
        table.contains("outbound: ") && table.contains("reals 192.0.2.0/24 -> 198.51.100.2 (wan)"),
        "{table}"
    );
    let metrics = l.lb.exec("curl -s -m 3 http://127.0.0.1:9080/metrics");
    assert!(
        metrics
            .lines()
            .any(|x| x.starts_with("ferrolb_outbound_new_flows_total ")),
        "{metrics}"
    );
    drop(resolvers);
    l.finish();
}

/// `ferrolb conns` and `GET /api/v1/conns` list the NAT flows of both
/// workers' tables, filtered by VIP, real and client prefix, and paged.
#[test]
fn conns_lists_the_flows_of_every_worker_filtered_and_paged() {
    let _g = serial();
    let l = Lab::start(2);
    let (_, failed) = curl_spread(&l.client, "http://198.51.100.100/", 40, "");
    assert_eq!(failed, 0);
    let out = l
        .client
        .exec(&format!("python3 {}", l.dir.0.join("client.py").display()));
    assert!(out.starts_with("OK 20"), "{out}");
    let conns = |args: &str| l.lb.exec(&format!("{} conns {args}", ferrolb_bin()));
    let rows = |t: &str| -> Vec<String> { conn_rows(t) };

    let all = conns("");
    eprintln!("{}", all.lines().take(4).collect::<Vec<_>>().join("\n"));
    assert!(all.starts_with("Pro  Expire  State"), "{all}");
    let all_rows = rows(&all);
    let tcp = all_rows.iter().filter(|r| r.starts_with("TCP ")).count();
    let udp = all_rows.iter().filter(|r| r.starts_with("UDP ")).count();
    assert!(tcp >= 40 && udp >= 20, "tcp {tcp}, udp {udp}:\n{all}");
    assert!(
        all_rows
            .iter()
            .all(|r| r.contains(" 198.51.100.1:") && r.contains("198.51.100.100:")),
        "{all}"
    );
    let workers: std::collections::BTreeSet<&str> = all_rows
        .iter()
        .filter_map(|r| r.split_whitespace().last())
        .collect();
    assert_eq!(workers.len(), 2, "flows of both workers: {workers:?}");

    let web = rows(&conns("--vip web"));
    assert_eq!(web.len(), tcp);
    assert!(
        web.iter().all(|r| r.contains("198.51.100.100:80 ")),
        "{web:?}"
    );
    assert!(web.iter().any(|r| r.contains(" TIME_WAIT ")), "{web:?}");
    let dns = rows(&conns("--vip dns"));
    assert!(
        dns.len() == udp && dns.iter().all(|r| r.starts_with("UDP ")),
        "{dns:?}"
    );
    let one_real = rows(&conns("--real 192.0.2.21"));
    assert!(!one_real.is_empty() && one_real.len() < all_rows.len());
    assert!(
        one_real.iter().all(|r| r.contains(" 192.0.2.21:")),
        "{one_real:?}"
    );
    assert_eq!(
        rows(&conns("--client 198.51.100.0/24")).len(),
        all_rows.len()
    );
    assert!(rows(&conns("--client 203.0.113.0/24")).is_empty());
    assert_eq!(rows(&conns("--limit 5")).len(), 5);
    let (ok, err) =
        l.lb.try_exec(&format!("{} conns --vip nope 2>&1", ferrolb_bin()));
    assert!(!ok && err.contains("no VIP named \"nope\""), "{err}");

    // The API pages with a cursor; every flow comes exactly once.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = String::from("0:0");
    for page in 0.. {
        assert!(page < 100, "too many pages");
        let body = l.lb.exec(&format!(
            "curl -s 'http://127.0.0.1:9080/api/v1/conns?limit=7&cursor={cursor}'"
        ));
        let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
        let list = v["conns"].as_array().expect("conns");
        assert!(list.len() <= 7);
        for c in list {
            assert!(c["expires_in_ms"].as_u64().unwrap() > 0, "{c}");
            assert_eq!(c["reply"], "nat", "{c}");
            assert!(
                seen.insert((c["protocol"].to_string(), c["client"].to_string())),
                "twice: {c}"
            );
        }
        match v["next"].as_str() {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), all_rows.len());
    let bad = l.lb.exec(
        "curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:9080/api/v1/conns?limit=0'",
    );
    assert_eq!(bad, "400");
    l.finish();
}

/// `[vip.timeouts] udp = "4s"` on the DNS VIP: its flows go 4 s after
/// their last datagram, while the TCP VIP beside it keeps the node's
/// timeouts.
#[test]
fn a_vip_udp_timeout_takes_its_flows_out() {
    let _g = serial();
    let l = Lab::start(1);
    let (_, failed) = curl_spread(&l.client, "http://198.51.100.100/", 5, "");
    assert_eq!(failed, 0);
    let out = l
        .client
        .exec(&format!("python3 {}", l.dir.0.join("client.py").display()));
    assert!(out.starts_with("OK 20"), "{out}");
    let conns = |args: &str| conn_rows(&l.lb.exec(&format!("{} conns {args}", ferrolb_bin())));
    let dns = conns("--vip dns");
    assert!(dns.len() >= 20, "{dns:?}");
    // mm:ss of at most 4 s.
    assert!(dns.iter().all(|r| r.contains(" 00:0")), "{dns:?}");
    let web = conns("--vip web");
    assert!(
        web.iter()
            .all(|r| r.contains(" 01:5") || r.contains(" 02:00")),
        "{web:?}"
    );
    let t0 = std::time::Instant::now();
    assert!(
        wait_for(Duration::from_secs(8), || conns("--vip dns").is_empty()),
        "{:?}",
        conns("--vip dns")
    );
    eprintln!("UDP flows gone {:?} after the last query", t0.elapsed());
    assert!(t0.elapsed() >= Duration::from_secs(2), "gone too early");
    assert_eq!(conns("--vip web").len(), web.len(), "the TCP flows stay");
    l.finish();
}

/// The flow lines of `ferrolb conns` output (without the header).
fn conn_rows(out: &str) -> Vec<String> {
    out.lines().skip(1).map(str::to_string).collect()
}

/// Reals without a default route cannot answer the clients; the commands
/// `ferrolb real-setup` prints for the VIP give them the balancer as their
/// gateway, and requests pass.
#[test]
fn nat_reals_prepared_by_real_setup_route_through_the_balancer() {
    let _g = serial();
    let l = Lab::start(1);
    for r in &l.reals {
        r.exec("ip route del default");
    }
    let (spread, failed) = curl_spread(&l.client, "http://198.51.100.100/", 3, "--max-time 1");
    assert_eq!(
        failed, 3,
        "reals without a route back must fail: {spread:?}"
    );
    let script = run(&format!(
        "{} real-setup --vip web --config {}",
        ferrolb_bin(),
        l.p.config.display()
    ));
    eprintln!("{script}");
    assert!(
        script.contains("ip route replace default via 192.0.2.2\n"),
        "{script}"
    );
    let file = l.dir.file("web.sh", &script);
    for r in &l.reals {
        r.exec(&format!("sh -e {}", file.display()));
    }
    let (spread, failed) = curl_spread(&l.client, "http://198.51.100.100/", 20, "");
    assert_eq!(failed, 0, "{spread:?}");
    assert_eq!(spread.len(), 2, "{spread:?}");
    l.finish();
}

/// `tcp_reset_on_idle` on a NAT VIP with two workers: the idle keep-alive
/// connection is reset at the client and at the real's nginx by the
/// worker that owns the flow.
#[test]
fn reset_on_idle_resets_both_ends_of_an_idle_nat_connection_on_two_workers() {
    let _g = serial();
    let idle = r#"
[[vip]]
name = "idle"
address = "198.51.100.101"
port = 80
mode = "nat"
port_name = "wan"
  [vip.timeouts]
  tcp = "3s"
  tcp_reset_on_idle = true
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
"#;
    let l = Lab::start_with(2, idle);
    let py = l.dir.file("idle.py", IDLE_CLIENT);
    let out = l
        .client
        .exec(&format!("python3 {} 198.51.100.101 10", py.display()));
    eprintln!("reset on idle (NAT): {out}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!((f[0], f[1]), ("RST", "real1"), "{out}");
    let waited: f64 = f[2].parse().unwrap();
    assert!((2.5..=5.0).contains(&waited), "reset after {waited} s");
    let held = l.reals[0].exec("ss -Htn state established '( sport = :8080 )'");
    assert!(
        !held.contains("198.51.100.1:"),
        "the real's end was reset too: {held}"
    );
    assert_eq!(idle_resets_sent(&l.lb, 2), 2, "one RST to each end");
    // The other VIPs are untouched by it.
    let (_, failed) = curl_spread(&l.client, "http://198.51.100.100/", 10, "");
    assert_eq!(failed, 0);
    l.finish();
}

/// wrk through the NAT VIP (20 connections, 20 s) while, every 200 ms,
/// ferrolb gets SIGHUP with, in turn: a file that takes real2 out and
/// weighs real1 3, a file cut mid-write, and the lab's file again. The
/// valid ones are taken (real2's connections go on while it is out:
/// `on_remove = "keep"`), the broken ones refused, and not one request
/// fails.
#[test]
fn reloads_and_broken_files_every_200ms_under_wrk_through_the_nat_vip_fail_nothing() {
    let _g = serial();
    let l = Lab::start(1);
    let path = l.p.config.clone();
    let full = std::fs::read_to_string(&path).unwrap();
    let real2 = "  [[vip.real]]\n  address = \"192.0.2.22\"\n  port = 8080\n";
    let real1 = "  [[vip.real]]\n  address = \"192.0.2.21\"\n  port = 8080\n";
    let one = full
        .replacen(real2, "", 1)
        .replacen(real1, &format!("{real1}  weight = 3\n"), 1);
    assert_ne!(one, full);
    let cut = full.find("\"192.0.2.22\"").unwrap() + 5;
    let broken = &full[..cut];
    let out = l.dir.0.join("wrk.txt");
    let w = wrk(&l.client, "http://198.51.100.100/", &out, 20, 20);
    std::thread::sleep(Duration::from_secs(1));
    let pid = l.p.pid();
    let t0 = std::time::Instant::now();
    let (mut valid, mut bad) = (0u32, 0u32);
    let mut k = 0u32;
    while t0.elapsed() < Duration::from_secs(18) {
        match k % 3 {
            0 => {
                std::fs::write(&path, &one).unwrap();
                valid += 1;
            }
            1 => {
                std::fs::write(&path, broken).unwrap();
                bad += 1;
            }
            _ => {
                std::fs::write(&path, &full).unwrap();
                valid += 1;
            }
        }
        run(&format!("kill -HUP {pid}"));
        k += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = wrk_wait(w, &out, Duration::from_secs(15));
    let log = l.p.log_text();
    let (taken, refused) = (
        log.matches("reloaded").count(),
        log.matches("reload rejected").count(),
    );
    eprintln!(
        "{k} reloads ({valid} valid, {bad} broken) under wrk through the NAT VIP: {taken} taken, {refused} refused\n{}",
        r.report
    );
    assert!(r.requests > 3_000, "{}", r.report);
    assert_eq!((r.errors, r.non_2xx), (0, 0), "{}", r.report);
    assert_eq!(refused as u32, bad, "every broken file refused");
    // Signals that arrive during a reload are merged: most, not all, are
    // separate reloads.
    assert!(
        taken as u32 >= valid / 2,
        "{taken} of {valid} valid files taken"
    );
    std::fs::write(&path, &full).unwrap();
    l.finish();
}

/// The pids of the nginx processes in `ns` (master and workers).
fn nginx_pids(ns: &Netns) -> Vec<String> {
    run(&format!("ip netns pids {}", ns.name))
        .split_whitespace()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "nginx")
        })
        .map(str::to_string)
        .collect()
}

/// A NAT VIP with HTTP checks (500 ms, fall 2, rise 2) under wrk, and
/// real2's nginx killed with kill -9: real2 is taken out within fall ×
/// interval (+ one interval and a check's timeout); a second wrk run from
/// then on, through real2's restart and rise, fails nothing, and new
/// connections reach real2 again.
#[test]
fn a_nat_real_killed_under_wrk_is_taken_out_and_comes_back() {
    let _g = serial();
    let checked = r#"
[[vip]]
name = "checked"
address = "198.51.100.102"
port = 80
mode = "nat"
port_name = "wan"
  [vip.health]
  type = "http"
  path = "/"
  interval = "500ms"
  timeout = "300ms"
  rise = 2
  fall = 2
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080
"#;
    let mut l = Lab::start_with(1, checked);
    let state = |l: &Lab| -> String {
        status_json(&l.lb)["vips"][2]["reals"][1]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        wait_for(Duration::from_secs(10), || state(&l) == "up"),
        "real2 not up"
    );
    let url = "http://198.51.100.102/";
    let out1 = l.dir.0.join("wrk1.txt");
    let w1 = wrk(&l.client, url, &out1, 6, 20);
    std::thread::sleep(Duration::from_secs(2));
    let pids = nginx_pids(&l.reals[1]);
    assert!(!pids.is_empty(), "nginx runs in real2");
    let killed = std::time::Instant::now();
    run(&format!("kill -9 {}", pids.join(" ")));
    assert!(
        wait_for(Duration::from_secs(5), || state(&l) == "down"),
        "real2 not taken out"
    );
    let detect = killed.elapsed();
    let r1 = wrk_wait(w1, &out1, Duration::from_secs(15));
    eprintln!(
        "NAT real2 killed; taken out after {detect:?}; wrk across the kill:\n{}",
        r1.report
    );
    assert!(detect <= Duration::from_millis(2200), "{detect:?}");
    assert_eq!(r1.non_2xx, 0, "{}", r1.report);
    let out2 = l.dir.0.join("wrk2.txt");
    let w2 = wrk(&l.client, url, &out2, 8, 20);
    std::thread::sleep(Duration::from_secs(2));
    l._nginx[1] = Nginx::start(&l.reals[1], "real2", 8080);
    assert!(
        wait_for(Duration::from_secs(5), || state(&l) == "up"),
        "real2 did not come back"
    );
    let r2 = wrk_wait(w2, &out2, Duration::from_secs(20));
    eprintln!(
        "wrk after the take-out, through the restart:\n{}",
        r2.report
    );
    assert!(r2.requests > 2_000, "{}", r2.report);
    assert_eq!((r2.errors, r2.non_2xx), (0, 0), "{}", r2.report);
    let (spread, failed) = curl_spread(&l.client, url, 30, "");
    eprintln!("30 new connections after the restart: {spread:?}");
    assert_eq!(failed, 0, "{spread:?}");
    assert!(spread.contains_key("real2"), "{spread:?}");
    l.finish();
}
