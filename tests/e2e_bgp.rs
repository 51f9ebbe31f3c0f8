//! `[announce]` with real BGP daemons from Debian: a node's BGP daemon
//! exports the routes ferrolb keeps in its table to a router, through
//! ferrolb's exception path (the port's TAP), and the router follows
//! every change. The node runs BIRD 2 in one test and FRR in the other;
//! the router runs BIRD 2, which installs what it learns in its kernel.
//! The daemons' files (configurations, sockets, pid files) live in a
//! scratch directory; FRR's sockets in a path space of the test's own.
//!
//! ```text
//!            [ns switch: br0]
//!   router 192.0.2.254 (AS 65000) | ferrolb 192.0.2.2 (AS 65001, VIP 192.0.2.100)
//!   real 192.0.2.21 (nginx, VIP on lo), checked by TCP every 200 ms
//! ```

mod common;

use std::time::Duration;

use common::*;

struct Lab {
    ferrolb: Option<Ferrolb>,
    _daemons: Vec<Proc>,
    _nginx: Nginx,
    router: Netns,
    lb: Netns,
    real: Netns,
    _sw: Switch,
    dir: Scratch,
    /// FRR's socket directory (removed with the lab).
    frr_dir: Option<Scratch>,
    id: String,
}

fn lab() -> Lab {
    require_root();
    let id = uid();
    let mut sw = Switch::new(&id);
    let router = Netns::new(&format!("flt{id}"));
    let lb = Netns::new(&format!("flb{id}"));
    let real = Netns::new(&format!("flr{id}"));
    sw.plug(&router, "eth0");
    sw.plug(&lb, "eth0");
    sw.plug(&real, "eth0");
    router.exec("ip addr add 192.0.2.254/24 dev eth0 && ip link set lo up");
    lb.exec("ip link set lo up");
    real.exec("ip addr add 192.0.2.21/24 dev eth0");
    dr_real(&real, "eth0", &["192.0.2.100"]);
    let nginx = Nginx::start(&real, "real1", 80);
    Lab {
        ferrolb: None,
        _daemons: Vec::new(),
        _nginx: nginx,
        router,
        lb,
        real,
        _sw: sw,
        dir: Scratch::new("bgp"),
        frr_dir: None,
        id,
    }
}

/// The router: learns the VIPs by BGP from the node and installs them in
/// its kernel (ECMP when several nodes announce).
fn router_bird(l: &Lab) -> Proc {
    bird(
        &l.router,
        &l.dir,
        "router",
        r#"
router id 192.0.2.254;
protocol device { scan time 1; }
protocol kernel {
    merge paths on;
    ipv4 { import none; export all; };
}
protocol bgp node1 {
    local 192.0.2.254 as 65000;
    neighbor 192.0.2.2 as 65001;
    hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
    ipv4 { import all; export none; };
}
"#,
    )
}

/// The node's BIRD: takes ferrolb's routes from table 250 and exports
/// them, through the TAP, to the router.
fn node_bird(l: &Lab) -> Proc {
    bird(
        &l.lb,
        &l.dir,
        "node",
        r#"
router id 192.0.2.2;
protocol device { scan time 1; }
protocol kernel ferrolb {
    kernel table 250;
    learn;
    scan time 1;
    ipv4 { import all; export none; };
}
protocol bgp upstream {
    local 192.0.2.2 as 65001;
    neighbor 192.0.2.254 as 65000;
    hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
    ipv4 { import none; export where proto = "ferrolb"; next hop self; };
}
"#,
    )
}

/// Whether the router's kernel has the VIP via the node.
fn router_has_vip(l: &Lab) -> bool {
    l.router
        .exec("ip route show 192.0.2.100")
        .contains("via 192.0.2.2")
}

fn router_sees(l: &Lab, want: bool, limit: Duration) -> bool {
    wait_for(limit, || router_has_vip(l) == want)
}

/// Runs the drain / real-down / stop sequence against the router.
fn follow_the_node(mut l: Lab) {
    let mut p = Ferrolb::start(&l.lb, &announce_lab_node(&l.id));
    p.wait_log("ferrolb running", Duration::from_secs(30));
    p.wait_log("announce: VIP announced", Duration::from_secs(5));
    assert!(
        router_sees(&l, true, Duration::from_secs(20)),
        "the router never learned the VIP: {}\n{}",
        l.router.exec("ip route"),
        p.log_text()
    );

    l.lb.exec(&format!("{} node drain", ferrolb_bin()));
    assert!(
        router_sees(&l, false, Duration::from_secs(5)),
        "drain not followed"
    );
    l.lb.exec(&format!("{} node enable", ferrolb_bin()));
    assert!(
        router_sees(&l, true, Duration::from_secs(5)),
        "enable not followed"
    );

    l.real.exec("ip addr del 192.0.2.21/24 dev eth0");
    assert!(
        router_sees(&l, false, Duration::from_secs(5)),
        "a VIP without reals stayed announced"
    );
    l.real.exec("ip addr add 192.0.2.21/24 dev eth0");
    assert!(
        router_sees(&l, true, Duration::from_secs(5)),
        "the VIP did not come back with its real"
    );

    // SIGTERM: the router drops the VIP while ferrolb still forwards.
    p.signal("TERM");
    assert!(
        router_sees(&l, false, Duration::from_millis(1900)),
        "not withdrawn within the drain time"
    );
    assert!(p.running(), "stopped before the routers followed");
    p.stop();
    l.ferrolb = None;
}

/// The node's FRR: zebra imports table 250, bgpd redistributes it to the
/// router.
fn node_frr(l: &mut Lab) -> Vec<Proc> {
    let bgpd = r#"hostname node
router bgp 65001
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 neighbor 192.0.2.254 remote-as 65000
 neighbor 192.0.2.254 timers 1 3
 neighbor 192.0.2.254 timers connect 1
 address-family ipv4 unicast
  redistribute table 250
 exit-address-family
"#;
    let (procs, rundir) = frr(
        &l.lb,
        &l.dir,
        &format!("ferrolb{}", l.id),
        &[
            ("zebra", "hostname node\nip import-table 250\n"),
            ("bgpd", bgpd),
        ],
    );
    l.frr_dir = Some(rundir);
    procs
}

#[test]
fn frr_on_the_node_exports_the_vips_ferrolb_announces() {
    let _g = serial();
    let mut l = lab();
    let r = router_bird(&l);
    let mut d = node_frr(&mut l);
    d.insert(0, r);
    l._daemons = d;
    follow_the_node(l);
}

#[test]
fn bird_on_the_node_exports_the_vips_ferrolb_announces() {
    let _g = serial();
    let mut l = lab();
    let r = router_bird(&l);
    let n = node_bird(&l);
    l._daemons = vec![r, n];
    follow_the_node(l);
}
