//! Active/active behind an ECMP router, with the real daemons from
//! Debian: two ferrolb nodes announce the same DR VIP by BGP (one through
//! BIRD 2, the other through FRR), a router spreads the clients' flows
//! over both (`fib_multipath_hash_policy = 1`: by ports), and BFD tells it
//! at once when a node dies. The router runs FRR (`maximum-paths`,
//! `bgp bestpath as-path multipath-relax`) in the full scenario, and BIRD 2
//! (`merge paths`) without BFD, to measure what a dead node costs then.
//!
//! ```text
//!   client 198.51.100.1 ── router 198.51.100.254 | 192.0.2.254 (AS 65000, ECMP, BFD)
//!                                     [ns switch: br0]
//!   node1 ferrolb 192.0.2.2 + BIRD (AS 65001) | node2 ferrolb 192.0.2.3 + FRR (AS 65002)
//!   reals 192.0.2.21-23 (nginx, VIP 192.0.2.100 on lo, default via the router)
//! ```

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Holds `conns` keep-alive connections to the VIP and asks each for a
/// page every 200 ms, `rounds` times; prints each connection's real at
/// the start, then one line per failure or change, then a summary.
const LONG_LIVED: &str = r#"
import socket, sys, time
host, conns, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ask(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError("closed")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        d = s.recv(4096)
        if not d:
            raise EOFError("closed")
        body += d
    return body[:n].split()[0].decode()
socks, reals = [], []
for i in range(conns):
    s = socket.create_connection((host, 80), timeout=5)
    socks.append(s)
    reals.append(ask(s))
print("READY", flush=True)
ok = fail = changed = 0
for r in range(rounds):
    for i, s in enumerate(socks):
        if s is None:
            continue
        try:
            real = ask(s)
            ok += 1
            if real != reals[i]:
                changed += 1
                print("CHANGED", i, reals[i], real, flush=True)
        except Exception as e:
            fail += 1
            socks[i] = None
            print("FAIL", i, type(e).__name__, flush=True)
    time.sleep(0.2)
print("DONE ok=%d fail=%d changed=%d" % (ok, fail, changed), flush=True)
"#;

struct Node {
    p: Option<Ferrolb>,
    ns: Netns,
    addr: &'static str,
}

/// The router's BGP daemon.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Router {
    Frr,
    Bird,
}

struct Lab {
    nodes: Vec<Node>,
    daemons: Vec<Vec<Proc>>,
    router_daemons: Vec<Proc>,
    router_kind: Router,
    bfd: bool,
    _nginx: Vec<Nginx>,
    client: Netns,
    router: Netns,
    _reals: Vec<Netns>,
    _sw: Switch,
    dir: Scratch,
    /// FRR's files: node2's and the router's.
    frr_files: [Scratch; 2],
    frr_dirs: Vec<Scratch>,
    id: String,
}

fn config(id: &str, node: usize, addr: &str) -> String {
    let reals = ["192.0.2.21", "192.0.2.22", "192.0.2.23"];
    announce_node(
        &format!("fl{id}n{node}"),
        addr,
        Some("192.0.2.254"),
        &reals,
        false,
    )
}

const TIMERS: &str =
    "hold time 9; keepalive time 3; connect retry time 1; connect delay time 1; error wait time 1, 2;";

fn node1_bird(l: &Lab) -> Vec<Proc> {
    let bfd = if l.bfd { "bfd on;" } else { "" };
    vec![bird(
        &l.nodes[0].ns,
        &l.dir,
        "node1",
        &format!(
            r#"
router id 192.0.2.2;
protocol device {{ scan time 1; }}
protocol bfd {{ interface "fl-lan" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}
protocol kernel ferrolb {{
    kernel table 250; learn; scan time 1;
    ipv4 {{ import all; export none; }};
}}
protocol bgp upstream {{
    local 192.0.2.2 as 65001; neighbor 192.0.2.254 as 65000; {bfd}
    {TIMERS}
    ipv4 {{ import none; export where proto = "ferrolb"; next hop self; }};
}}
"#
        ),
    )]
}

/// FRR's BFD profile: 100 ms both ways, three missed = down.
const FRR_BFDD: &str =
    "bfd\n profile fast\n  transmit-interval 100\n  receive-interval 100\n !\n!\n";

/// FRR's neighbour lines for `peer` in AS `asn`: short timers, BFD when
/// the lab has it.
fn frr_neighbour(peer: &str, asn: u32, bfd: bool) -> String {
    let mut s = format!(
        " neighbor {peer} remote-as {asn}\n neighbor {peer} timers 3 9\n neighbor {peer} timers connect 1\n"
    );
    if bfd {
        s += &format!(" neighbor {peer} bfd profile fast\n");
    }
    s
}

fn node2_frr(l: &mut Lab) -> Vec<Proc> {
    let bgpd = format!(
        "hostname node2\nrouter bgp 65002\n bgp router-id 192.0.2.3\n no bgp ebgp-requires-policy\n{}\
         address-family ipv4 unicast\n  redistribute table 250\n exit-address-family\n",
        frr_neighbour("192.0.2.254", 65000, l.bfd)
    );
    let ns = l.nodes[1].ns.name.clone();
    frr_with_bfd(l, &ns, 0, "hostname node2\nip import-table 250\n", &bgpd)
}

/// zebra, bfdd and bgpd of FRR in namespace `ns`, their files in
/// `frr_files[files]`, in a path space of their own.
fn frr_with_bfd(l: &mut Lab, ns: &str, files: usize, zebra: &str, bgpd: &str) -> Vec<Proc> {
    let host = if ns == l.router.name {
        &l.router
    } else {
        &l.nodes[1].ns
    };
    let (procs, rundir) = frr(
        host,
        &l.frr_files[files],
        &format!("ferrolb{files}{}", l.id),
        &[("zebra", zebra), ("bfdd", FRR_BFDD), ("bgpd", bgpd)],
    );
    l.frr_dirs.push(rundir);
    procs
}

/// The router on FRR: ECMP over up to 4 paths, across the nodes'
/// different AS numbers (`multipath-relax`); the nodes' daemons differ
/// (BIRD says origin IGP, FRR incomplete with a MED), so a route map makes
/// their routes equal.
fn router_frr(l: &mut Lab) -> Vec<Proc> {
    let bgpd = format!(
        "hostname router\nrouter bgp 65000\n bgp router-id 192.0.2.254\n no bgp ebgp-requires-policy\n\
         bgp bestpath as-path multipath-relax\n{}{}\
         address-family ipv4 unicast\n  maximum-paths 4\n  neighbor 192.0.2.2 route-map nodes in\n\
         neighbor 192.0.2.3 route-map nodes in\n exit-address-family\n!\n\
         route-map nodes permit 10\n set origin igp\n set metric 0\n!\n",
        frr_neighbour("192.0.2.2", 65001, l.bfd),
        frr_neighbour("192.0.2.3", 65002, l.bfd),
    );
    let ns = l.router.name.clone();
    frr_with_bfd(l, &ns, 1, "hostname router\n", &bgpd)
}

/// The router on BIRD 2: `merge paths` makes ECMP routes of equal BGP
/// routes; the import filter makes the nodes' routes equal.
fn router_bird(l: &Lab) -> Vec<Proc> {
    let bfd = if l.bfd { "bfd on;" } else { "" };
    vec![bird(
        &l.router,
        &l.dir,
        "router",
        &format!(
            r#"
router id 192.0.2.254;
protocol device {{ scan time 1; }}
protocol bfd {{ interface "eth0" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}
protocol kernel {{ merge paths on; ipv4 {{ import none; export all; }}; }}
filter nodes {{ bgp_origin = ORIGIN_IGP; bgp_med = 0; accept; }}
protocol bgp node1 {{
    local 192.0.2.254 as 65000; neighbor 192.0.2.2 as 65001; {bfd}
    {TIMERS}
    ipv4 {{ import filter nodes; export none; }};
}}
protocol bgp node2 {{
    local 192.0.2.254 as 65000; neighbor 192.0.2.3 as 65002; {bfd}
    {TIMERS}
    ipv4 {{ import filter nodes; export none; }};
}}
"#
        ),
    )]
}

fn lab(router_kind: Router, bfd: bool) -> Lab {
    require_root();
    let id = uid();
    let dir = Scratch::new("ecmp");
    let mut sw = Switch::new(&id);
    let client = Netns::new(&format!("flc{id}"));
    let router = Netns::new(&format!("flt{id}"));
    veth(&client, "eth0", &router, "c0");
    sw.plug(&router, "eth0");
    client.exec("ip addr add 198.51.100.1/24 dev eth0 && ip route add default via 198.51.100.254");
    router.exec(
        "ip addr add 198.51.100.254/24 dev c0 && ip addr add 192.0.2.254/24 dev eth0 && ip link set lo up \
         && sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv4.fib_multipath_hash_policy=1",
    );
    let mut reals = Vec::new();
    let mut nginx = Vec::new();
    for i in 1..=3 {
        let r = Netns::new(&format!("flr{i}{id}"));
        sw.plug(&r, "eth0");
        r.exec(&format!(
            "ip addr add 192.0.2.2{i}/24 dev eth0 && ip route add default via 192.0.2.254"
        ));
        dr_real(&r, "eth0", &["192.0.2.100"]);
        nginx.push(Nginx::start(&r, &format!("real{i}"), 80));
        reals.push(r);
    }
    let mut nodes = Vec::new();
    for (i, addr) in ["192.0.2.2", "192.0.2.3"].into_iter().enumerate() {
        let ns = Netns::new(&format!("flb{i}{id}"));
        sw.plug(&ns, "eth0");
        ns.exec("ip link set lo up");
        nodes.push(Node { p: None, ns, addr });
    }
    let mut l = Lab {
        nodes,
        daemons: Vec::new(),
        router_daemons: Vec::new(),
        router_kind,
        bfd,
        _nginx: nginx,
        client,
        router,
        _reals: reals,
        _sw: sw,
        dir,
        frr_files: [Scratch::new("ecmp-node2"), Scratch::new("ecmp-router")],
        frr_dirs: Vec::new(),
        id,
    };
    l.router_daemons = match router_kind {
        Router::Frr => router_frr(&mut l),
        Router::Bird => router_bird(&l),
    };
    let d1 = node1_bird(&l);
    let d2 = node2_frr(&mut l);
    l.daemons = vec![d1, d2];
    l
}

impl Lab {
    fn start(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let mut p = Ferrolb::start(&node.ns, &config(&self.id, n, node.addr));
        p.wait_log("ferrolb running", Duration::from_secs(30));
        node.p = Some(p);
    }

    /// Starts both nodes and waits until the router has both as next hops.
    fn start_both(&mut self) {
        self.start(0);
        self.start(1);
        assert!(
            self.wait_hops(&["192.0.2.2", "192.0.2.3"], Duration::from_secs(30)),
            "the router has no ECMP route to the VIP: {}\n{}",
            self.router.exec("ip route"),
            self.diagnose()
        );
    }

    /// The router's next hops for the VIP.
    fn next_hops(&self) -> Vec<String> {
        let r = self.router.exec("ip route show 192.0.2.100");
        ["192.0.2.2", "192.0.2.3"]
            .into_iter()
            .filter(|a| r.contains(&format!("via {a} ")))
            .map(String::from)
            .collect()
    }

    fn wait_hops(&self, want: &[&str], limit: Duration) -> bool {
        wait_for(limit, || self.next_hops() == want)
    }

    /// The BGP sessions as the router sees them, node2's FRR logs and
    /// table 250 on each node: for a failure message.
    fn diagnose(&self) -> String {
        let mut s = match self.router_kind {
            Router::Bird => {
                let ctl = self.dir.0.join("router.ctl").display().to_string();
                self.router.exec(&format!(
                    "birdc -s {ctl} show protocols; birdc -s {ctl} show route all"
                ))
            }
            Router::Frr => {
                try_run(&format!(
                "vtysh -N ferrolb1{} -c 'show bgp summary' -c 'show ip bgp' -c 'show bfd peers'",
                self.id
            ))
                .1
            }
        };
        for (who, dir) in ["node2", "router"].iter().zip(&self.frr_files) {
            for f in ["zebra.log", "bfdd.log", "bgpd.log"] {
                let p = dir.0.join(f);
                if let Ok(t) = std::fs::read_to_string(&p) {
                    s += &format!("\n--- {who} {f}\n{t}");
                }
            }
        }
        for n in &self.nodes {
            s += &format!("\n--- {} table 250\n", n.ns.name);
            s += &n.ns.exec("ip route show table 250");
            s += &n.ns.exec("ip route show proto 250 2>/dev/null; true");
        }
        s
    }

    fn packets_in(&self, n: usize) -> u64 {
        status_json(&self.nodes[n].ns)["vips"][0]["packets_in"]
            .as_u64()
            .unwrap_or(0)
    }
}

#[test]
fn two_nodes_share_a_vip_by_ecmp_and_lose_one_without_breaking_flows() {
    let _g = serial();
    let mut l = lab(Router::Frr, true);
    l.start_both();

    // Both nodes pick reals from the same service set.
    let (f1, f2) = (
        status_json(&l.nodes[0].ns)["fingerprint"].clone(),
        status_json(&l.nodes[1].ns)["fingerprint"].clone(),
    );
    assert!(f1.as_str().is_some_and(|f| f.len() == 16), "{f1}");
    assert_eq!(f1, f2, "the nodes' service sets differ");

    // 200 connections from distinct ports: spread over both nodes.
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 200, "");
    eprintln!("200 requests over two nodes: {spread:?}, {failed} failed");
    assert_eq!(failed, 0, "{spread:?}");
    let (a, b) = (l.packets_in(0), l.packets_in(1));
    eprintln!("packets in: node1 {a}, node2 {b}");
    assert!(a > 50 && b > 50, "not spread over both nodes: {a} / {b}");

    // A graceful stop of node2 under a request loop: no request fails.
    let loop_out = l.dir.0.join("loop.txt");
    let script = format!(
        "for i in $(seq 1 60); do curl -s -m 3 -o /dev/null http://192.0.2.100/ && echo OK || echo FAILED; sleep 0.05; done > {}",
        loop_out.display()
    );
    let mut req = Proc::spawn(&l.client, "sh", &["-c", &script]);
    std::thread::sleep(Duration::from_millis(500));
    let mut p2 = l.nodes[1].p.take().expect("node2");
    let (st, took) = p2.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(st.success(), "{}", p2.log_text());
    eprintln!("node2 stopped {took:?} after SIGTERM");
    assert!(wait_for(Duration::from_secs(10), || req
        .get()
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    let out = std::fs::read_to_string(&loop_out).unwrap_or_default();
    assert_eq!(
        out.matches("FAILED").count(),
        0,
        "requests failed during a graceful stop:\n{out}"
    );
    assert!(out.matches("OK").count() >= 60, "{out}");
    assert_eq!(l.next_hops(), ["192.0.2.2"], "node2 still a next hop");
    l.start(1);
    assert!(
        l.wait_hops(&["192.0.2.2", "192.0.2.3"], Duration::from_secs(30)),
        "node2 not back: {}",
        l.diagnose()
    );

    // kill -9 of node1 under long-lived connections: BFD has the router
    // drop it within a second; the flows node1 carried go on through
    // node2, to the same real (Maglev on both nodes).
    let script = l.dir.file("long.py", LONG_LIVED);
    let out_path = l.dir.0.join("long.txt");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &l.client.name, "python3"])
        .arg(&script)
        .args(["192.0.2.100", "24", "40"])
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("long-lived client");
    let mut long = Proc::from_child(child);
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("READY")
    }));
    std::thread::sleep(Duration::from_secs(1));
    let before = l.packets_in(0);
    assert!(before > 0);
    let t0 = Instant::now();
    l.nodes[0].p.take().expect("node1").kill9();
    assert!(
        l.wait_hops(&["192.0.2.3"], Duration::from_secs(5)),
        "node1 never withdrawn: {}",
        l.router.exec("ip route show 192.0.2.100")
    );
    let took = t0.elapsed();
    eprintln!("router dropped node1 {took:?} after kill -9");
    assert!(took < Duration::from_secs(1), "BFD took {took:?}");
    let (_, failed) = curl_spread(&l.client, "http://192.0.2.100/", 50, "");
    assert_eq!(failed, 0, "new requests failed after node1 was withdrawn");
    assert!(wait_for(Duration::from_secs(30), || long
        .get()
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    eprintln!("{}", out.lines().last().unwrap_or(""));
    assert!(out.contains("DONE"), "{out}");
    assert!(
        out.contains("fail=0 changed=0"),
        "long-lived connections broke:\n{out}"
    );
}

/// The same pair behind a BIRD router, without BFD: ECMP works the same,
/// but a node that dies is bypassed only when the router's BGP hold time
/// runs out (9 s here, 90 s by default): the figure BFD saves.
#[test]
fn without_bfd_a_bird_router_bypasses_a_dead_node_at_the_hold_time() {
    let _g = serial();
    let mut l = lab(Router::Bird, false);
    l.start_both();
    let (spread, failed) = curl_spread(&l.client, "http://192.0.2.100/", 100, "");
    assert_eq!(failed, 0, "{spread:?}");
    let (a, b) = (l.packets_in(0), l.packets_in(1));
    assert!(a > 20 && b > 20, "not spread over both nodes: {a} / {b}");

    let t0 = Instant::now();
    l.nodes[0].p.take().expect("node1").kill9();
    assert!(
        l.wait_hops(&["192.0.2.3"], Duration::from_secs(15)),
        "node1 never withdrawn: {}",
        l.diagnose()
    );
    let took = t0.elapsed();
    eprintln!("without BFD: the router dropped node1 {took:?} after kill -9 (hold time 9 s)");
    // node1's BGP daemon lives on but cannot reach the router (its path
    // was ferrolb's TAP): only the hold timer ends the session.
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(12),
        "{took:?}"
    );
    let (_, failed) = curl_spread(&l.client, "http://192.0.2.100/", 50, "");
    assert_eq!(failed, 0, "new requests failed after node1 was withdrawn");
}
